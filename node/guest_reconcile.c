/* Reconcile at start: SQLite is the truth; libvirt and the files are made
 * to match it, one thing at a time, before vpsd serves requests.
 *   1. operations a crash cut short: provision is rolled back, terminate
 *      finished, power operations brought to their target;
 *   2. domains: one without a live service is reported and removed; a
 *      service that should run and does not is started, one that should
 *      not run is stopped;
 *   3. disks, seeds and run folders of no live service are removed. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "guest_private.h"
#include "node/service.h"

struct task {
        enum { TASK_RECOVER, TASK_UNDEFINE, TASK_POWER } kind;
        int64_t service_id;
        char uuid[SPEC_UUID_SIZE];
        enum op_kind op;
        char step[32];
};

struct reconcile {
        struct guests *g;
        struct task *tasks;
        size_t n, next, cap;
        bool listed;
        guest_done_fn done;
        void *userdata;
};

static void reconcile_next(struct reconcile *rc);

static int task_add(struct reconcile *rc, const struct task *t)
{
        if (rc->n == rc->cap) {
                size_t cap = rc->cap ? rc->cap * 2 : 16;
                struct task *p = realloc(rc->tasks, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                rc->tasks = p;
                rc->cap = cap;
        }
        rc->tasks[rc->n++] = *t;
        return 0;
}

/* A service's id and state, or false when there is no live one. */
static bool live_service(struct guests *g, const char *uuid, int64_t *ret_id, char *state, size_t size)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (!uuid_valid(uuid) ||
            store_prepare(g->store, "SELECT id, state FROM services WHERE uuid = ?1 AND state != 'terminated'",
                          &stmt, NULL) < 0)
                return false;
        sqlite3_bind_text(stmt, 1, uuid, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return false;
        *ret_id = sqlite3_column_int64(stmt, 0);
        snprintf(state, size, "%s", (const char *)sqlite3_column_text(stmt, 1));
        return true;
}

static void task_done(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct reconcile *rc = userdata;

        (void)result;
        if (status < 0)
                log_error("reconcile: could not bring a service in line", "error=\"%s\"", err->msg);
        reconcile_next(rc);
}

static void undefined(int status, enum virt_state state, const char *message, void *userdata)
{
        struct reconcile *rc = userdata;

        (void)state;
        if (status < 0)
                log_error("reconcile: cannot remove a domain", "error=\"%s\"", message);
        reconcile_next(rc);
}

static void run_task(struct reconcile *rc, struct task *t)
{
        struct guests *g = rc->g;
        struct error err = { 0 };
        struct op *op;

        if (t->kind == TASK_UNDEFINE) {
                struct guest_paths p;
                guest_paths_init(g, t->uuid, &p);
                log_warn("reconcile: removing a domain that belongs to no live service", "domain=%s", p.domain);
                if (virt_submit(g->virt, VIRT_UNDEFINE, p.domain, undefined, rc, &err) < 0)
                        undefined(err.code, VIRT_STATE_ABSENT, err.msg, rc);
                return;
        }
        op = guest_op_new(g, t->op, t->service_id, t->uuid, "node reconcile", task_done, rc);
        if (!op) {
                reconcile_next(rc);
                return;
        }
        op->recovering = true;
        /* Take the lock as a request would, recorded like one. */
        if (t->kind == TASK_POWER &&
            guest_lock_take(g, t->service_id, t->uuid, guest_op_name(t->op), t->step, &err) < 0) {
                log_warn("reconcile: service is locked; left alone", "service=%s error=\"%s\"", t->uuid, err.msg);
                guest_op_free(op);
                reconcile_next(rc);
                return;
        }
        log_info("reconcile: finishing an operation", "service=%s operation=%s step=%s", t->uuid,
                 guest_op_name(t->op), t->step);
        if (t->op == OP_PROVISION)
                guest_provision_rollback(op);
        else if (t->op == OP_REINSTALL)
                guest_reinstall_resume(op);
        else
                guest_op_resume(op, t->step);
}

/* Phase 1: what a crash cut short. The step to resume at is where the
 * operation's target is reached from whatever state the crash left. */
static int collect_interrupted(struct reconcile *rc, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(rc->g->store,
                              "SELECT id, uuid, busy_operation, busy_step FROM services "
                              "WHERE busy_operation IS NOT NULL ORDER BY id",
                              &stmt, err);

        if (r < 0)
                return r;
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                struct task t = { .kind = TASK_RECOVER, .service_id = sqlite3_column_int64(stmt, 0) };
                const char *step = (const char *)sqlite3_column_text(stmt, 3);

                snprintf(t.uuid, sizeof(t.uuid), "%s", (const char *)sqlite3_column_text(stmt, 1));
                if (guest_op_kind_parse((const char *)sqlite3_column_text(stmt, 2), &t.op) < 0) {
                        log_error("reconcile: unknown operation in a lock; releasing it", "service=%s", t.uuid);
                        continue;
                }
                switch (t.op) {
                case OP_TERMINATE:
                        snprintf(t.step, sizeof(t.step), "%s", step ? step : "undefine");
                        break;
                case OP_START:
                case OP_RESTART:
                        snprintf(t.step, sizeof(t.step), "start");
                        break;
                case OP_STOP:
                case OP_FORCE_OFF:
                        snprintf(t.step, sizeof(t.step), "force-off");
                        break;
                case OP_PROVISION:
                case OP_REINSTALL:
                        break;
                }
                if (task_add(rc, &t) < 0)
                        return error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Phase 2: domains against services. */
static void listed(int status, const char *message, char **names, const enum virt_state *states, size_t n,
                   size_t n_foreign, void *userdata)
{
        struct reconcile *rc = userdata;
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        rc->listed = true;
        if (status < 0) {
                log_error("reconcile: cannot list domains", "error=\"%s\"", message);
                reconcile_next(rc);
                return;
        }
        if (n_foreign)
                log_warn("reconcile: domains of another vpsd on this libvirtd are left alone", "count=%zu",
                         n_foreign);
        for (size_t i = 0; i < n; i++) {
                struct task t = { 0 };
                char state[32];
                const char *uuid = names[i] + strlen("vpsd-");

                snprintf(t.uuid, sizeof(t.uuid), "%s", uuid);
                if (!live_service(rc->g, uuid, &t.service_id, state, sizeof(state))) {
                        t.kind = TASK_UNDEFINE;
                        task_add(rc, &t);
                        continue;
                }
                t.kind = TASK_POWER;
                if (strcmp(state, "running") == 0 && states[i] != VIRT_STATE_RUNNING) {
                        t.op = OP_START;
                        snprintf(t.step, sizeof(t.step), "start");
                        task_add(rc, &t);
                } else if (strcmp(state, "running") == 0 ||
                           (states[i] == VIRT_STATE_RUNNING &&
                            (strcmp(state, "suspended") == 0 || strcmp(state, "removal-queued") == 0))) {
                        /* Running as it should (a suspended guest keeps its
                         * memory): vpsd watches it again, and its monitor
                         * keeps a suspended one paused. */
                        guest_monitor_watch(rc->g, t.service_id, t.uuid);
                } else if (strcmp(state, "stopped") == 0 && states[i] == VIRT_STATE_RUNNING) {
                        t.op = OP_FORCE_OFF;
                        snprintf(t.step, sizeof(t.step), "force-off");
                        task_add(rc, &t);
                }
        }
        /* A service that should run but has no domain at all cannot be
         * started from here: the operator is told. */
        if (store_prepare(rc->g->store, "SELECT uuid FROM services WHERE state = 'running'", &stmt, NULL) == 0)
                while (sqlite3_step(stmt) == SQLITE_ROW) {
                        const char *uuid = (const char *)sqlite3_column_text(stmt, 0);
                        bool found = false;
                        for (size_t i = 0; i < n && !found; i++)
                                found = strcmp(names[i] + strlen("vpsd-"), uuid) == 0;
                        if (!found)
                                log_error("reconcile: service should run but has no domain", "service=%s", uuid);
                }
        reconcile_next(rc);
}

/* Phase 3: files named after a UUID that has no live service. */
static void sweep(struct guests *g, const char *dir, const char *suffix)
{
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                char uuid[SPEC_UUID_SIZE], state[32];
                struct guest_paths p;
                int64_t id;
                size_t len = strlen(de->d_name);

                if (de->d_name[0] == '.' || len < 36 || strcmp(de->d_name + 36, suffix) != 0)
                        continue;
                memcpy(uuid, de->d_name, 36);
                uuid[36] = '\0';
                if (!uuid_valid(uuid) || live_service(g, uuid, &id, state, sizeof(state)))
                        continue;
                log_warn("reconcile: removing files of no live service", "dir=%s name=%s", dir, de->d_name);
                guest_paths_init(g, uuid, &p);
                guest_files_remove(&p);
        }
        closedir(d);
}

static void reconcile_next(struct reconcile *rc)
{
        struct error err = { 0 };

        if (rc->next < rc->n) {
                run_task(rc, &rc->tasks[rc->next++]);
                return;
        }
        if (!rc->listed) {
                if (virt_list(rc->g->virt, "vpsd-", rc->g->owner, listed, rc, &err) < 0)
                        listed(err.code, err.msg, NULL, NULL, 0, 0, rc);
                return;
        }
        {
                char dir[PATH_MAX + 16];
                snprintf(dir, sizeof(dir), "%s/disks", rc->g->state_dir);
                sweep(rc->g, dir, ".qcow2");
                snprintf(dir, sizeof(dir), "%s/seeds", rc->g->state_dir);
                sweep(rc->g, dir, ".iso");
                sweep(rc->g, dir, ".d");
                sweep(rc->g, rc->g->run_dir, "");
        }
        log_info("reconcile: done", "tasks=%zu", rc->n);
        rc->done(0, NULL, NULL, rc->userdata);
        free(rc->tasks);
        free(rc);
}

int guests_reconcile(struct guests *g, guest_done_fn done, void *userdata, struct error *err)
{
        struct reconcile *rc = calloc(1, sizeof(*rc));
        int r;

        if (!rc)
                return error_set(err, -ENOMEM, "out of memory");
        rc->g = g;
        rc->done = done;
        rc->userdata = userdata;
        r = collect_interrupted(rc, err);
        if (r < 0) {
                free(rc->tasks);
                free(rc);
                return r;
        }
        reconcile_next(rc);
        return 0;
}
