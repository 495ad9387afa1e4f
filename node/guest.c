/* The operations and their steps. An operation is a chain of steps; each
 * step starts one piece of asynchronous work (qemu-img, genisoimage, a
 * libvirt call) whose completion records the next step in the store before
 * starting it. So after a crash the store says exactly how far it got. */
#include "guest_private.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "node/command.h"
#include "node/domain.h"
#include "node/logbook.h"
#include "node/monitor.h"
#include "node/network.h"
#include "node/secret.h"
#include "node/seed.h"
#include "node/service.h"
#include "node/template.h"

#define COMMAND_TIMEOUT_MS (10 * 60 * 1000)

static const char *const op_names[] = {
        [OP_PROVISION] = "provision", [OP_START] = "start",         [OP_STOP] = "stop",
        [OP_RESTART] = "restart",     [OP_FORCE_OFF] = "force-off", [OP_TERMINATE] = "terminate",
        [OP_REINSTALL] = "reinstall",
};

/* The activity log's words for a finished operation. */
static const char *const op_done_words[] = {
        [OP_PROVISION] = "provisioned", [OP_START] = "started",        [OP_STOP] = "stopped",
        [OP_RESTART] = "restarted",     [OP_FORCE_OFF] = "forced off", [OP_TERMINATE] = "terminated",
        [OP_REINSTALL] = "reinstalled",
};

const char *guest_op_name(enum op_kind kind) { return op_names[kind]; }

int guest_op_kind_parse(const char *name, enum op_kind *ret_kind)
{
        for (size_t i = 0; i < ARRAY_SIZE(op_names); i++)
                if (strcmp(name, op_names[i]) == 0) {
                        *ret_kind = (enum op_kind)i;
                        return 0;
                }
        return -EINVAL;
}

const char *guest_power_name(enum guest_power action)
{
        static const char *const names[] = { "start", "stop", "restart", "force-off" };

        return names[action];
}

void guest_instance_id_new(char *buf, size_t size)
{
        snprintf(buf, size, "i-%08llx%08llx", (unsigned long long)time_now_wall(),
                 (unsigned long long)time_now_mono_ms());
}

void guest_paths_init(const struct guests *g, const char *uuid, struct guest_paths *p)
{
        snprintf(p->domain, sizeof(p->domain), "vpsd-%s", uuid);
        service_port_name(uuid, p->tap);
        snprintf(p->disk, sizeof(p->disk), "%s/disks/%s.qcow2", g->state_dir, uuid);
        snprintf(p->seed, sizeof(p->seed), "%s/seeds/%s.iso", g->state_dir, uuid);
        snprintf(p->seed_dir, sizeof(p->seed_dir), "%s/seeds/%s.d", g->state_dir, uuid);
        snprintf(p->run, sizeof(p->run), "%s/%s", g->run_dir, uuid);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        if (remove(path) < 0 && errno != ENOENT)
                log_warn("cannot remove", "path=%s error=\"%s\"", path, strerror(errno));
        return 0;
}

static void remove_tree(const char *path)
{
        /* Depth first, never following symlinks out of the folder. */
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void guest_files_remove(const struct guest_paths *p)
{
        if (unlink(p->disk) < 0 && errno != ENOENT)
                log_warn("cannot remove disk", "path=%s error=\"%s\"", p->disk, strerror(errno));
        if (unlink(p->seed) < 0 && errno != ENOENT)
                log_warn("cannot remove seed", "path=%s error=\"%s\"", p->seed, strerror(errno));
        remove_tree(p->seed_dir);
        remove_tree(p->run);
}

/* --- the engine --- */

/* This state dir's node id: made once, kept in node_facts. Its domains
 * carry it, so that reconcile touches only what this vpsd made. */
static int owner_load(struct guests *g, struct error *err)
{
        cleanup_stmt sqlite3_stmt *get = NULL, *put = NULL;
        unsigned char raw[16];
        int r;

        r = store_prepare(g->store, "SELECT value FROM node_facts WHERE key = 'node_id'", &get, err);
        if (r < 0)
                return r;
        if (sqlite3_step(get) == SQLITE_ROW && sqlite3_column_bytes(get, 0) == 32)
                return str_copy(g->owner, sizeof(g->owner), (const char *)sqlite3_column_text(get, 0));
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
                return error_set_errno(err, -errno, "node id: getrandom");
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(g->owner + 2 * i, 3, "%02x", raw[i]);
        r = store_prepare(g->store,
                          "INSERT OR REPLACE INTO node_facts (key, value, updated_at) VALUES ('node_id', ?1, ?2)",
                          &put, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(put, 1, g->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 2, time_now_wall());
        if (sqlite3_step(put) != SQLITE_DONE)
                return error_set(err, -EIO, "node id: %s", sqlite3_errmsg(store_db(g->store)));
        return 0;
}

int guests_new(uv_loop_t *loop, struct store *store, struct virt *virt, const struct guests_config *config,
               struct guests **ret_guests, struct error *err)
{
        struct guests *g = calloc(1, sizeof(*g));
        const char *dirs[] = { "disks", "seeds" };
        struct passwd *pw;
        int r;

        if (!g)
                return error_set(err, -ENOMEM, "out of memory");
        g->loop = loop;
        g->store = store;
        g->virt = virt;
        g->config = *config;
        if (str_copy(g->state_dir, sizeof(g->state_dir), config->state_dir) < 0 ||
            str_copy(g->run_dir, sizeof(g->run_dir), config->run_dir) < 0 ||
            str_copy(g->bridge, sizeof(g->bridge), config->bridge) < 0 ||
            str_copy(g->qemu_img, sizeof(g->qemu_img), config->qemu_img) < 0 ||
            str_copy(g->genisoimage, sizeof(g->genisoimage), config->genisoimage) < 0 ||
            str_copy(g->iso_dir, sizeof(g->iso_dir), config->iso_dir ? config->iso_dir : "") < 0 ||
            str_copy(g->crash_at, sizeof(g->crash_at), config->crash_at ? config->crash_at : "") < 0) {
                free(g);
                return error_set(err, -ENAMETOOLONG, "guest paths too long");
        }
        /* QEMU runs as libvirt's QEMU user; without one (a node set up
         * for tests), it runs as root. */
        r = owner_load(g, err);
        if (r < 0) {
                free(g);
                return r;
        }
        pw = getpwnam("libvirt-qemu");
        g->qemu_uid = pw ? pw->pw_uid : 0;
        g->qemu_gid = pw ? pw->pw_gid : 0;
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                char path[PATH_MAX + 16];
                snprintf(path, sizeof(path), "%s/%s", g->state_dir, dirs[i]);
                /* QEMU's user must reach the files below, not list them. */
                if ((mkdir(path, 0711) < 0 && errno != EEXIST) || chmod(path, 0711) < 0) {
                        r = error_set_errno(err, -errno, "create `%s`", path);
                        free(g);
                        return r;
                }
        }
        if ((mkdir(g->run_dir, 0711) < 0 && errno != EEXIST) || chmod(g->run_dir, 0711) < 0) {
                r = error_set_errno(err, -errno, "create `%s`", g->run_dir);
                free(g);
                return r;
        }
        /* Templates live in the state dir too: its own 0700 would hide them
         * from QEMU's user. Reaching (not listing) is all it takes. */
        if (chmod(g->state_dir, 0711) < 0) {
                r = error_set_errno(err, -errno, "chmod `%s`", g->state_dir);
                free(g);
                return r;
        }
        *ret_guests = g;
        return 0;
}

void guests_set_kvm(struct guests *g, bool kvm) { g->kvm = kvm; }

void guests_set_monitors(struct guests *g, struct monitors *monitors) { g->monitors = monitors; }

void guests_set_network(struct guests *g, struct network *network) { g->network = network; }

int guest_network_apply(struct guests *g, int64_t service_id, struct error *err)
{
        return g->network ? network_guest_apply(g->network, service_id, err) : 0;
}

/* The port leaves the filter with its service (its last traffic counted). */
static void network_remove(struct guests *g, int64_t service_id, const char *uuid)
{
        struct error err = { 0 };

        if (g->network && network_guest_remove(g->network, service_id, &err) < 0)
                log_error("cannot remove a guest port from the filter", "service=%s error=\"%s\"", uuid, err.msg);
}

void guests_set_lock_hook(struct guests *g, guest_lock_hook_fn fn, void *userdata)
{
        g->lock_hook = fn;
        g->lock_hook_data = userdata;
}

void guest_monitor_watch(struct guests *g, int64_t service_id, const char *uuid)
{
        struct guest_paths p;
        char socket[PATH_MAX + 16];

        if (!g->monitors)
                return;
        guest_paths_init(g, uuid, &p);
        snprintf(socket, sizeof(socket), "%s/" DOMAIN_QMP_SOCKET, p.run);
        monitor_watch(g->monitors, service_id, uuid, socket);
}

void guest_monitor_unwatch(struct guests *g, const char *uuid)
{
        if (g->monitors)
                monitor_unwatch(g->monitors, uuid);
}

struct guests *guests_free(struct guests *g)
{
        free(g);
        return NULL;
}

/* --- the busy lock --- */

/* Takes the service's lock for op, or says what holds it. */
int guest_lock_take(struct guests *g, int64_t id, const char *uuid, const char *operation, const char *step,
                     struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(g->store,
                              "UPDATE services SET busy_operation = ?2, busy_step = ?3, busy_since = ?4, "
                              "updated_at = ?4 WHERE id = ?1 AND busy_operation IS NULL",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, operation, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, step, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 4, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "service %s: lock: %s", uuid, sqlite3_errmsg(store_db(g->store)));
        if (sqlite3_changes(store_db(g->store)) == 0) {
                cleanup_stmt sqlite3_stmt *q = NULL;
                const char *holder = "another operation";
                if (store_prepare(g->store, "SELECT busy_operation FROM services WHERE id = ?1", &q, NULL) == 0) {
                        sqlite3_bind_int64(q, 1, id);
                        if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
                                holder = (const char *)sqlite3_column_text(q, 0);
                }
                return error_set(err, -EBUSY, "busy: %s", holder);
        }
        if (g->lock_hook)
                g->lock_hook(uuid, operation, g->lock_hook_data);
        return 0;
}

static void lock_step(struct op *op, const char *step)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(op->g->store, "UPDATE services SET busy_step = ?2 WHERE id = ?1", &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, op->service_id);
        sqlite3_bind_text(stmt, 2, step, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE)
                log_error("cannot record an operation's step", "service=%s step=%s error=\"%s\"", op->uuid, step,
                          sqlite3_errmsg(store_db(op->g->store)));
}

/* Releases the lock, setting the state when state is not NULL. */
static int lock_release(struct op *op, const char *state)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(op->g->store,
                          "UPDATE services SET busy_operation = NULL, busy_step = NULL, busy_since = NULL, "
                          "state = coalesce(?2, state), updated_at = ?3, "
                          "paused = CASE WHEN ?2 IN ('stopped', 'terminated') THEN 0 ELSE paused END "
                          "WHERE id = ?1",
                          &stmt, NULL) < 0)
                return -EIO;
        sqlite3_bind_int64(stmt, 1, op->service_id);
        if (state)
                sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE) {
                log_error("cannot release a service's lock", "service=%s error=\"%s\"", op->uuid,
                          sqlite3_errmsg(store_db(op->g->store)));
                return -EIO;
        }
        return 0;
}

/* --- operations --- */

struct op *guest_op_new(struct guests *g, enum op_kind kind, int64_t service_id, const char *uuid,
                        const char *actor, guest_done_fn done, void *userdata)
{
        struct op *op = calloc(1, sizeof(*op));

        if (!op)
                return NULL;
        op->g = g;
        op->kind = kind;
        op->service_id = service_id;
        str_copy(op->uuid, sizeof(op->uuid), uuid);
        snprintf(op->actor, sizeof(op->actor), "%s", actor);
        op->done = done;
        op->userdata = userdata;
        guest_paths_init(g, uuid, &op->paths);
        g->ops_running++;
        return op;
}

void guest_op_free(struct op *op)
{
        op->g->ops_running--;
        spec_free(op->spec);
        explicit_bzero(op->password, sizeof(op->password));
        free(op);
}

static void timer_closed(uv_handle_t *h) { guest_op_free(h->data); }

/* Reports and frees: the last thing an operation does. */
static void op_end(struct op *op, int status, struct json_object *result)
{
        const char *verdict = status < 0 ? op->error.msg : "ok";

        logbook_audit(op->g->store, op->actor, op_names[op->kind], op->uuid, verdict,
                      op->recovering ? "finished after a restart" : "");
        if (status == 0 && op->kind != OP_PROVISION && op->kind != OP_REINSTALL)
                logbook_activity(op->g->store, op->service_id, op->actor, op_done_words[op->kind]);
        log_info("operation finished", "service=%s operation=%s result=\"%s\"", op->uuid, op_names[op->kind],
                 verdict);
        if (op->done)
                op->done(status, status < 0 ? &op->error : NULL, result, op->userdata);
        json_object_put(result);
        if (op->timer_used)
                uv_close((uv_handle_t *)&op->timer, timer_closed);
        else
                guest_op_free(op);
}

static void provision_rollback(struct op *op);
static void provision_started(int status, enum virt_state state, const char *message, void *userdata);
static void finish_running(struct op *op);
static int build_xml(struct op *op, char **ret_xml, struct error *err);
static void define_start(struct op *op, virt_done_fn cb);

/* A step failed: provision rolls back; the others release the lock and
 * leave the service as it was, ready for the operation to be asked again. */
void guest_op_fail(struct op *op, int code, const char *message)
{
        if (!op->error.code)
                error_set(&op->error, code < 0 ? code : -EIO, "%s", message);
        log_warn("operation failed", "service=%s operation=%s error=\"%s\"", op->uuid, op_names[op->kind],
                 op->error.msg);
        if (op->kind == OP_PROVISION) {
                provision_rollback(op);
                return;
        }
        /* A reinstall that failed has no usable disk: the service is off
         * until the reinstall is asked again. */
        lock_release(op, op->kind == OP_REINSTALL ? "stopped" : NULL);
        op_end(op, op->error.code, NULL);
}

static void step_shutdown(struct op *op);
static void step_start(struct op *op);
static void step_force_off(struct op *op);
static void step_disk(struct op *op);
static void step_seed(struct op *op);
static void step_domain(struct op *op);
static void step_undefine(struct op *op);
static void step_files(struct op *op);
static void step_release(struct op *op);

static const struct {
        const char *name;
        void (*fn)(struct op *op);
} steps[] = {
        { "disk", step_disk },           { "seed", step_seed },   { "domain", step_domain },
        { "shutdown", step_shutdown },   { "start", step_start }, { "force-off", step_force_off },
        { "undefine", step_undefine },   { "files", step_files }, { "release", step_release },
};

/* The crash tests' hook: with VPSD_CRASH_AT=<operation>:<step> in its
 * environment, vpsd stops itself (SIGSTOP) the moment that step is on
 * disk, before any of its work, so that a test can kill -9 it exactly
 * there and check what the next start makes of it. */
static void crash_point(struct op *op, const char *step)
{
        char here[64];

        if (!op->g->crash_at[0])
                return;
        snprintf(here, sizeof(here), "%s:%s", op_names[op->kind], step);
        if (strcmp(here, op->g->crash_at) != 0)
                return;
        log_warn("crash point reached; stopping for the test to kill", "service=%s at=%s", op->uuid, here);
        raise(SIGSTOP);
}

/* Records the step, then starts it. */
static void op_next(struct op *op, const char *step)
{
        for (size_t i = 0; i < ARRAY_SIZE(steps); i++)
                if (strcmp(steps[i].name, step) == 0) {
                        lock_step(op, step);
                        log_debug("operation step", "service=%s operation=%s step=%s", op->uuid,
                                  op_names[op->kind], step);
                        crash_point(op, step);
                        steps[i].fn(op);
                        return;
                }
        guest_op_fail(op, -EINVAL, "unknown step");
}

void guest_op_resume(struct op *op, const char *step) { op_next(op, step); }

static void submit(struct op *op, enum virt_op vop, const char *arg, virt_done_fn cb)
{
        struct error err = { 0 };

        if (virt_submit(op->g->virt, vop, arg, cb, op, &err) < 0)
                guest_op_fail(op, err.code, err.msg);
}

/* A libvirt call whose failure fails the operation and whose success goes
 * on with then(op). */
static void then_done(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;

        (void)state;
        if (status < 0)
                guest_op_fail(op, status, message);
        else
                op->then(op);
}

static void submit_then(struct op *op, enum virt_op vop, const char *arg, void (*then)(struct op *op))
{
        op->then = then;
        submit(op, vop, arg, then_done);
}

/* --- power --- */

static void finish_state(struct op *op, const char *state)
{
        struct json_object *result = json_object_new_object();

        lock_release(op, state);
        json_object_object_add(result, "uuid", json_object_new_string(op->uuid));
        json_object_object_add(result, "state", json_object_new_string(state));
        op_end(op, 0, result);
}

/* The guest runs: vpsd watches its monitor, and when this op started
 * it, a fresh QEMU booted now with its vCPUs running. */
static void guest_running(struct op *op)
{
        if (op->booted) {
                cleanup_stmt sqlite3_stmt *stmt = NULL;
                /* A fresh QEMU: it booted now, and its vCPUs run. */
                if (store_prepare(op->g->store, "UPDATE services SET booted_at = ?2, paused = 0 WHERE id = ?1",
                                  &stmt, NULL) == 0) {
                        sqlite3_bind_int64(stmt, 1, op->service_id);
                        sqlite3_bind_int64(stmt, 2, time_now_wall());
                        sqlite3_step(stmt);
                }
        }
        guest_monitor_watch(op->g, op->service_id, op->uuid);
}

static void finish_running(struct op *op)
{
        guest_running(op);
        finish_state(op, "running");
}

static void start_disk_grown(int r, const struct error *err, const struct command_result *result,
                             void *userdata)
{
        struct op *op = userdata;

        (void)result;
        if (r < 0) {
                guest_op_fail(op, r, err->msg);
                return;
        }
        /* The domain is defined anew from the current plan: a resize's
         * vCPUs and memory take effect at this boot. */
        op->then = finish_running;
        define_start(op, then_done);
}

static void start_state_known(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;
        char size[32];
        const char *argv[] = { op->g->qemu_img, "resize", "-q", "-f", "qcow2", op->paths.disk, size, NULL };
        const struct command_options opts = { .name = "qemu-img resize", .timeout_ms = COMMAND_TIMEOUT_MS };
        struct command *cmd;
        struct error err = { 0 };

        if (status < 0) {
                guest_op_fail(op, status, message);
                return;
        }
        if (state == VIRT_STATE_RUNNING) {
                finish_running(op);
                return;
        }
        /* A disk the plan grew is grown while the guest is off; qemu-img
         * never shrinks without --shrink, so a disk is never cut here. */
        snprintf(size, sizeof(size), "%uG", op->spec->plan.disk_gib);
        if (command_start(op->g->loop, argv, &opts, start_disk_grown, op, &cmd, &err) < 0)
                guest_op_fail(op, err.code, err.msg);
}

static void step_start(struct op *op)
{
        struct error err = { 0 };

        if (!op->spec && guest_spec_load(op->g, op->service_id, &op->spec, &err) < 0) {
                guest_op_fail(op, err.code, err.msg);
                return;
        }
        submit(op, VIRT_STATE, op->paths.domain, start_state_known);
}

/* Off: a restart goes on to start, the others are done. */
static void off(struct op *op)
{
        if (op->kind == OP_RESTART)
                op_next(op, "start");
        else if (op->kind == OP_REINSTALL)
                op_next(op, "disk");
        else
                finish_state(op, "stopped");
}

static void step_force_off(struct op *op)
{
        submit_then(op, VIRT_DESTROY, op->paths.domain, off);
}

static void poll_state(uv_timer_t *t);

static void shutdown_polled(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;

        if (status < 0) {
                guest_op_fail(op, status, message);
                return;
        }
        if (state != VIRT_STATE_RUNNING) {
                off(op);
                return;
        }
        if (op->waited >= op->g->config.stop_timeout) {
                log_info("ACPI shutdown timed out; forcing off", "service=%s timeout=%u", op->uuid,
                         op->g->config.stop_timeout);
                op_next(op, "force-off");
                return;
        }
        /* No sleeping on the loop: poll the domain's state once a second. */
        op->waited++;
        uv_timer_start(&op->timer, poll_state, 1000, 0);
}

static void poll_state(uv_timer_t *t)
{
        struct op *op = t->data;

        submit(op, VIRT_STATE, op->paths.domain, shutdown_polled);
}

static void shutdown_sent(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;

        /* A guest that is already off has nothing to shut down. */
        if (status < 0 && state != VIRT_STATE_OFF) {
                guest_op_fail(op, status, message);
                return;
        }
        shutdown_polled(0, state, "", op);
}

static void step_shutdown(struct op *op)
{
        if (!op->timer_used) {
                uv_timer_init(op->g->loop, &op->timer);
                op->timer.data = op;
                op->timer_used = true;
        }
        op->waited = 0;
        submit(op, VIRT_SHUTDOWN, op->paths.domain, shutdown_sent);
}

/* The service row's id and state by UUID; -ENOENT if none, -EBUSY
 * "busy: <operation>" while an operation holds its lock: the lock speaks
 * first, whatever the state. */
int guest_service_find(struct guests *g, const char *uuid, int64_t *ret_id, char *state, size_t state_size,
                        struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        if (!uuid_valid(uuid))
                return error_set(err, -EINVAL, "`%.64s` is not a service UUID", uuid);
        r = store_prepare(g->store, "SELECT id, state, busy_operation FROM services WHERE uuid = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, uuid, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %s: not found", uuid);
        if (sqlite3_column_type(stmt, 2) != SQLITE_NULL)
                return error_set(err, -EBUSY, "busy: %s", (const char *)sqlite3_column_text(stmt, 2));
        *ret_id = sqlite3_column_int64(stmt, 0);
        snprintf(state, state_size, "%s", (const char *)sqlite3_column_text(stmt, 1));
        return 0;
}

int guest_power(struct guests *g, const char *uuid, enum guest_power action, const char *actor, guest_done_fn done,
                void *userdata, struct error *err)
{
        static const enum op_kind kinds[] = { OP_START, OP_STOP, OP_RESTART, OP_FORCE_OFF };
        static const char *const first_steps[] = { "start", "shutdown", "shutdown", "force-off" };
        char state[32];
        struct op *op;
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        /* Paused vCPUs cannot answer the ACPI power button. */
        if ((action == GUEST_STOP || action == GUEST_RESTART) && guest_paused(g, id))
                return error_set(err, -EBADFD, "service %s is paused: resume it first, or force it off", uuid);
        op = guest_op_new(g, kinds[action], id, uuid, actor, done, userdata);
        if (!op)
                return error_set(err, -ENOMEM, "out of memory");
        r = guest_lock_take(g, id, uuid, op_names[kinds[action]], first_steps[action], err);
        if (r < 0) {
                guest_op_free(op);
                return r;
        }
        op_next(op, first_steps[action]);
        return 0;
}

/* --- terminate --- */

static void next_files(struct op *op) { op_next(op, "files"); }

static void step_undefine(struct op *op)
{
        guest_monitor_unwatch(op->g, op->uuid);
        submit_then(op, VIRT_UNDEFINE, op->paths.domain, next_files);
}

static void step_files(struct op *op)
{
        guest_files_remove(&op->paths);
        op_next(op, "release");
}

static void step_release(struct op *op)
{
        sqlite3 *db = store_db(op->g->store);
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        network_remove(op->g, op->service_id, op->uuid);
        /* The addresses go back to the node's pool; the record stays. */
        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK ||
            store_prepare(op->g->store,
                          "DELETE FROM addresses WHERE service_id = ?1", &stmt, NULL) < 0) {
                guest_op_fail(op, -EIO, sqlite3_errmsg(db));
                return;
        }
        sqlite3_bind_int64(stmt, 1, op->service_id);
        if (sqlite3_step(stmt) != SQLITE_DONE || lock_release(op, "terminated") < 0 ||
            sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK) {
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
                guest_op_fail(op, -EIO, sqlite3_errmsg(db));
                return;
        }
        {
                struct json_object *result = json_object_new_object();
                json_object_object_add(result, "uuid", json_object_new_string(op->uuid));
                json_object_object_add(result, "state", json_object_new_string("terminated"));
                op_end(op, 0, result);
        }
}

int guest_terminate(struct guests *g, const char *uuid, const char *actor, guest_done_fn done, void *userdata,
                    struct error *err)
{
        char state[32];
        struct op *op;
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "terminated") == 0)
                return error_set(err, -EBADFD, "service %s is terminated", uuid);
        op = guest_op_new(g, OP_TERMINATE, id, uuid, actor, done, userdata);
        if (!op)
                return error_set(err, -ENOMEM, "out of memory");
        r = guest_lock_take(g, id, uuid, "terminate", "undefine", err);
        if (r < 0) {
                guest_op_free(op);
                return r;
        }
        op_next(op, "undefine");
        return 0;
}

/* --- provision --- */

static void provision_disk_done(int r, const struct error *err, const struct command_result *result,
                                void *userdata)
{
        struct op *op = userdata;

        (void)result;
        if (r < 0) {
                guest_op_fail(op, r, err->msg);
                return;
        }
        if (chmod(op->paths.disk, 0600) < 0) {
                guest_op_fail(op, -errno, "chmod disk");
                return;
        }
        op_next(op, "seed");
}

static void step_disk(struct op *op)
{
        char size[32], backing[PATH_MAX + 32];
        const char *argv[] = { op->g->qemu_img, "create", "-q", "-f", "qcow2", "-F", op->template_format, "-b",
                               backing, op->paths.disk, size, NULL };
        const struct command_options opts = { .name = "qemu-img create", .timeout_ms = COMMAND_TIMEOUT_MS };
        struct command *cmd;
        struct error err = { 0 };

        snprintf(backing, sizeof(backing), "%s", op->template_path);
        /* A reinstall's old disk goes: the new one starts from the template. */
        if (unlink(op->paths.disk) < 0 && errno != ENOENT) {
                guest_op_fail(op, -errno, "remove the old disk");
                return;
        }
        snprintf(size, sizeof(size), "%uG", op->spec->plan.disk_gib);
        if (command_start(op->g->loop, argv, &opts, provision_disk_done, op, &cmd, &err) < 0)
                guest_op_fail(op, err.code, err.msg);
}

static void provision_seed_done(int r, const struct error *err, const struct command_result *result,
                                void *userdata)
{
        struct op *op = userdata;

        (void)result;
        remove_tree(op->paths.seed_dir);
        if (r < 0) {
                guest_op_fail(op, r, err->msg);
                return;
        }
        /* It holds the root password's hash: QEMU's user only. */
        if (chown(op->paths.seed, op->g->qemu_uid, op->g->qemu_gid) < 0 || chmod(op->paths.seed, 0400) < 0) {
                guest_op_fail(op, -errno, "chmod seed");
                return;
        }
        op_next(op, "domain");
}

static void step_seed(struct op *op)
{
        const char *argv[] = { op->g->genisoimage, "-quiet", "-V", "cidata", "-J", "-r", "-o", op->paths.seed,
                               op->paths.seed_dir, NULL };
        const struct command_options opts = { .name = "genisoimage", .timeout_ms = COMMAND_TIMEOUT_MS };
        char hash[SECRET_HASH_SIZE];
        struct seed_params params = { .instance_id = op->instance_id, .password_hash = hash };
        struct command *cmd;
        struct error err = { 0 };
        int r;

        remove_tree(op->paths.seed_dir);
        if (mkdir(op->paths.seed_dir, 0700) < 0) {
                guest_op_fail(op, -errno, "create the seed folder");
                return;
        }
        r = secret_password_hash(op->password, hash, &err);
        if (r == 0)
                r = seed_write_dir(op->paths.seed_dir, op->spec, &params, &err);
        explicit_bzero(hash, sizeof(hash));
        if (r < 0) {
                guest_op_fail(op, r, err.msg);
                return;
        }
        if (command_start(op->g->loop, argv, &opts, provision_seed_done, op, &cmd, &err) < 0)
                guest_op_fail(op, err.code, err.msg);
}

static void provision_started(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;
        struct json_object *result;

        (void)state;
        if (status < 0) {
                guest_op_fail(op, status, message);
                return;
        }
        lock_release(op, "running");
        guest_running(op);
        logbook_activity(op->g->store, op->service_id, op->actor, op_done_words[op->kind]);
        result = json_object_new_object();
        json_object_object_add(result, "uuid", json_object_new_string(op->uuid));
        json_object_object_add(result, "state", json_object_new_string("running"));
        /* The one time the password leaves the node: to the caller, for the
         * customer's welcome email. */
        json_object_object_add(result, "root_password", json_object_new_string(op->password));
        explicit_bzero(op->password, sizeof(op->password));
        op_end(op, 0, result);
}

/* The ISO in the service's CD drive (ISO_DIR/ID.iso), if any, and
 * whether it boots from it first. */
static void cdrom_load(struct op *op, char *path, size_t size, bool *boot_iso)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        const unsigned char *id;

        path[0] = '\0';
        *boot_iso = false;
        if (!op->g->iso_dir[0] ||
            store_prepare(op->g->store, "SELECT iso_id, boot_iso FROM services WHERE id = ?1", &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, op->service_id);
        if (sqlite3_step(stmt) != SQLITE_ROW || !(id = sqlite3_column_text(stmt, 0)))
                return;
        if ((size_t)snprintf(path, size, "%s/%s.iso", op->g->iso_dir, (const char *)id) >= size)
                path[0] = '\0';
        *boot_iso = path[0] && sqlite3_column_int(stmt, 1) == 1;
}

/* The domain's XML from op->spec; its run folder is made ready for QEMU. */
static int build_xml(struct op *op, char **ret_xml, struct error *err)
{
        char cdrom[PATH_MAX];
        bool boot_cdrom;

        struct domain_params params = {
                .name = op->paths.domain,
                .uuid = op->uuid,
                .kvm = op->g->kvm,
                .vcpus = op->spec->plan.vcpus,
                .memory_mib = op->spec->plan.memory_mib,
                .disk_path = op->paths.disk,
                .seed_path = op->paths.seed,
                .mac = op->spec->mac,
                .bridge = op->g->bridge,
                .tap = op->paths.tap,
                .run_dir = op->paths.run,
                .owner = op->g->owner,
                .cdrom_path = cdrom,
                .boot_cdrom = false,
        };

        cdrom_load(op, cdrom, sizeof(cdrom), &boot_cdrom);
        params.boot_cdrom = boot_cdrom;
        /* QEMU creates the guest's sockets here, as its own user. */
        if ((mkdir(op->paths.run, 0750) < 0 && errno != EEXIST) ||
            chown(op->paths.run, op->g->qemu_uid, op->g->qemu_gid) < 0)
                return error_set_errno(err, -errno, "create the run folder");
        return domain_xml(&params, ret_xml, err);
}

/* Defines the domain from op->spec (anew, if it exists) and starts it. */
static void define_start(struct op *op, virt_done_fn cb)
{
        cleanup_free char *xml = NULL;
        struct error err = { 0 };

        if (build_xml(op, &xml, &err) < 0) {
                guest_op_fail(op, err.code, err.msg);
                return;
        }
        /* The port is filtered as the store says before the guest can
         * send its first frame: the filter is keyed by the port's name, so
         * it holds before libvirt creates the tap. */
        if (guest_network_apply(op->g, op->service_id, &err) < 0) {
                guest_op_fail(op, err.code, err.msg);
                return;
        }
        op->booted = true;
        submit(op, VIRT_DEFINE_START, xml, cb);
}

static void step_domain(struct op *op) { define_start(op, provision_started); }

static void provision_rolled_back(int status, enum virt_state state, const char *message, void *userdata)
{
        struct op *op = userdata;
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        (void)state;
        if (status < 0)
                log_error("provision rollback: cannot remove the domain", "service=%s error=\"%s\"", op->uuid,
                          message);
        guest_files_remove(&op->paths);
        network_remove(op->g, op->service_id, op->uuid);
        /* The service never existed for the customer: its rows go (the
         * addresses and keys with them), the audit log keeps the story. */
        if (store_prepare(op->g->store, "DELETE FROM services WHERE id = ?1", &stmt, NULL) == 0) {
                sqlite3_bind_int64(stmt, 1, op->service_id);
                if (sqlite3_step(stmt) != SQLITE_DONE)
                        log_error("provision rollback: cannot delete the record", "service=%s", op->uuid);
        }
        if (!op->error.code)
                error_set(&op->error, -EINTR, "service %s: provision: interrupted, rolled back", op->uuid);
        op_end(op, op->error.code, NULL);
}

static void provision_rollback(struct op *op)
{
        struct error err = { 0 };

        if (virt_submit(op->g->virt, VIRT_UNDEFINE, op->paths.domain, provision_rolled_back, op, &err) < 0)
                provision_rolled_back(err.code, VIRT_STATE_ABSENT, err.msg, op);
}

void guest_provision_rollback(struct op *op) { provision_rollback(op); }
