/* The template store: read-only OS images that guest disks are overlays
 * on. An import checks the file with `qemu-img info`, copies it into
 * template_dir on the thread pool (hashing it with SHA-256 on the way),
 * checks the copy again, makes it 0444 and only then names it and records
 * it, so a failed or interrupted import leaves nothing: no row, no file
 * (a crash leaves a NAME.FORMAT.tmp that the next start removes).
 * A template's file is template_dir/NAME.FORMAT; its row in `templates`
 * is the truth, and a file without a row is garbage. */
#pragma once

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "node/store.h"

#define TEMPLATE_NAME_MAX 64
#define TEMPLATE_OS_NAME_MAX 64
#define TEMPLATE_MIN_VIRTUAL_SIZE (1ULL << 20)
#define TEMPLATE_MAX_VIRTUAL_SIZE (16ULL << 40)
#define TEMPLATE_MAX_MIN_DISK_GIB 65536
#define TEMPLATE_MAX_IMPORTS 2 /* at once: each holds a thread of the pool */

struct template_store;

/* What a guest layer needs to know of one template. */
struct template_info {
        char name[TEMPLATE_NAME_MAX + 1];
        char os_name[TEMPLATE_OS_NAME_MAX + 1];
        char format[8]; /* "qcow2" or "raw": always given explicitly to QEMU, never probed */
        uint64_t virtual_size;
        unsigned min_disk_gib;
        char sha256[65];
        uint64_t size_bytes;
        int64_t imported_at;
        char path[PATH_MAX];
};

/* [a-z0-9][a-z0-9._-]{0,63} */
bool template_name_valid(const char *name);

/* 1 to 64 printable ASCII characters. */
bool template_os_name_valid(const char *os_name);

/* What an image must be to become a template, from the JSON of
 * `qemu-img info --output=json` and the file's size: qcow2 or raw; no
 * backing file and no external data file (either could make a guest read
 * any file on the node); not encrypted, corrupt or dirty; a virtual size
 * from 1 MiB to 16 TiB. qemu-img calls any file it does not recognise
 * "raw", so a raw image must also be a whole number of 512-byte sectors,
 * at least 1 MiB. */
struct template_image {
        char format[8];
        uint64_t virtual_size;
};
int template_image_check(const char *json, size_t len, uint64_t file_size, struct template_image *ret_image,
                         struct error *err);

/* Opens the store on dir (which must exist): removes *.tmp files left by
 * an interrupted import and files no row names, and warns about rows whose
 * file is missing. qemu_img is the qemu-img binary's absolute path. */
int template_store_open(uv_loop_t *loop, struct store *store, const char *dir, const char *qemu_img,
                        struct template_store **ret_ts, struct error *err);

/* Imports in flight end soon with -ECANCELED (their done is still called,
 * on the loop). Call before the loop's last run. */
void template_store_shutdown(struct template_store *ts);

/* After the loop has run out: nothing may be in flight. Accepts NULL;
 * returns NULL. */
struct template_store *template_store_free(struct template_store *ts);

struct template_import_request {
        const char *name;
        const char *path;    /* absolute; the file itself, not a symlink, nor through one */
        const char *os_name; /* NULL: the name */
        unsigned min_disk_gib; /* 0: the virtual size rounded up to GiB; else at least that */
};

/* Called once with 0 and the template's JSON (ownership passed), or a
 * negative errno and err: -EINVAL (not an acceptable image or request),
 * -ENOENT, -EEXIST, -EBUSY, -ENOSPC, -ECANCELED (vpsd is stopping), -EIO. */
typedef void (*template_import_fn)(int r, const struct error *err, struct json_object *template, void *userdata);

/* Starts an import. Refusals it can tell at once return < 0 and done is
 * not called; otherwise done is called later, on the loop. */
int template_import(struct template_store *ts, const struct template_import_request *req, template_import_fn done,
                    void *userdata, struct error *err);

/* A JSON array of templates, by name. */
int template_list_json(struct template_store *ts, struct json_object **ret_list, struct error *err);

/* Removes the row, then the file; done as for an import. Refused with
 * -EBUSY "template NAME: busy: used by N services (UUID, …)" while a
 * service that is not terminated uses it, -ENOENT when there is none. */
typedef void (*template_remove_fn)(int r, const struct error *err, void *userdata);
int template_remove(struct template_store *ts, const char *name, template_remove_fn done, void *userdata,
                    struct error *err);

/* One template by name; -ENOENT "template NAME: not found". */
int template_lookup(struct store *store, const char *name, struct template_info *ret_info, struct error *err);
