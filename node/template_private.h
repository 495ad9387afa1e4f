/* What node/template.c and node/template_import.c share: the store, and
 * the jobs (imports and removals) in flight. Nothing else includes this. */
#pragma once

#include <stdatomic.h>

#include "node/command.h"
#include "node/template.h"

struct template_store {
        uv_loop_t *loop;
        struct store *store;
        char dir[PATH_MAX];
        char qemu_img[PATH_MAX];
        int dir_fd;
        struct job *jobs; /* imports and removals in flight */
        unsigned n_imports;
        bool shutting_down;
};

enum job_kind { JOB_IMPORT, JOB_REMOVE };

/* One import or removal. An import goes: qemu-img info on the source →
 * copy (pool) → qemu-img info on the copy → rename (pool) → row; any
 * failure goes to discard (pool), which removes what the job made. */
struct job {
        struct template_store *ts;
        struct job *prev, *next;
        enum job_kind kind;
        char name[TEMPLATE_NAME_MAX + 1];
        char os_name[TEMPLATE_OS_NAME_MAX + 1];
        char source[PATH_MAX];
        unsigned min_disk_gib;
        int src_fd;
        uint64_t src_size, src_allocated;
        struct template_image image;
        char tmp_name[TEMPLATE_NAME_MAX + 16], final_name[TEMPLATE_NAME_MAX + 16];
        char remove_path[PATH_MAX];
        struct command *command;
        uv_work_t work;
        void (*work_fn)(struct job *j);
        void (*after_fn)(struct job *j);
        atomic_bool cancel;
        /* Set by the worker, read on the loop after the work is done. */
        int work_r;
        struct error work_err;
        bool tmp_made, final_made;
        char sha256[65];
        uint64_t size_bytes;
        /* The outcome, once known. */
        int r;
        struct error err;
        template_import_fn import_done;
        template_remove_fn remove_done;
        void *userdata;
};

/* Rows. */
int template_sql_fail(struct template_store *ts, struct error *err, const char *what);
struct json_object *template_info_json(const struct template_info *t);

/* Jobs: one per name at a time (an import and a removal of one name never
 * overlap). A job ends with template_job_finish(), which calls its done
 * with j->r, j->err and frees it. */
struct job *template_job_find(struct template_store *ts, const char *name);
struct job *template_job_new(struct template_store *ts, enum job_kind kind, const char *name);
void template_job_free(struct job *j);
void template_job_finish(struct job *j, struct json_object *result);
/* Runs work_fn on the thread pool, then after_fn on the loop. */
void template_job_queue(struct job *j, void (*work_fn)(struct job *), void (*after_fn)(struct job *));

/* An import waiting for qemu-img when vpsd stops: kills qemu-img and ends
 * the import with -ECANCELED, after removing what it made. */
void template_import_cancel(struct job *j);
