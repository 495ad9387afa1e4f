#include "monitor.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/logbook.h"

/* QEMU creates its monitor socket as it starts; libvirt reports the domain
 * running slightly before that on a loaded node. */
#define RETRY_MS 500
#define RETRIES 40
#define QMP_TIMEOUT_MS 10000

struct monitor {
        struct monitors *m;
        int64_t service_id;
        char uuid[37];
        char socket[PATH_MAX];
        struct qmp *qmp;
        uv_timer_t retry;
        unsigned retries;
        bool gone;        /* unwatched */
        bool closed;      /* its timer has closed */
        unsigned pending; /* libvirt calls in flight that will call back */
        struct monitor *next;
};

struct monitors {
        uv_loop_t *loop;
        struct store *store;
        struct virt *virt;
        struct monitor *list;
};

int monitors_new(uv_loop_t *loop, struct store *store, struct virt *virt, struct monitors **ret, struct error *err)
{
        struct monitors *m = calloc(1, sizeof(*m));

        if (!m)
                return error_set(err, -ENOMEM, "out of memory");
        m->loop = loop;
        m->store = store;
        m->virt = virt;
        *ret = m;
        return 0;
}

static struct monitor *find(struct monitors *m, const char *uuid)
{
        for (struct monitor *w = m->list; w; w = w->next)
                if (!w->gone && strcmp(w->uuid, uuid) == 0)
                        return w;
        return NULL;
}

/* True when no operation holds the service's lock: only then does an
 * event speak for the guest's state. */
static bool service_idle(struct monitors *m, int64_t id, char *state, size_t size)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(m->store, "SELECT state, busy_operation FROM services WHERE id = ?1", &stmt, NULL) < 0)
                return false;
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) != SQLITE_ROW || sqlite3_column_type(stmt, 1) != SQLITE_NULL)
                return false;
        snprintf(state, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
        return true;
}

static void set_stopped(struct monitor *w, const char *why)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(w->m->store,
                          "UPDATE services SET state = 'stopped', paused = 0, updated_at = ?2 "
                          "WHERE id = ?1 AND state = 'running' AND busy_operation IS NULL",
                          &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, w->service_id);
        sqlite3_bind_int64(stmt, 2, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE || sqlite3_changes(store_db(w->m->store)) == 0)
                return;
        log_info("guest powered off from inside; service stopped", "service=%s event=%s", w->uuid, why);
        logbook_activity(w->m->store, w->service_id, "guest", "stopped from inside the guest");
        logbook_audit(w->m->store, "guest", "stop", w->uuid, "ok", why);
}

static bool service_suspended(struct monitors *m, int64_t id)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(m->store, "SELECT 1 FROM services WHERE id = ?1 AND state IN ('suspended', 'removal-queued')",
                          &stmt, NULL) < 0)
                return false;
        sqlite3_bind_int64(stmt, 1, id);
        return sqlite3_step(stmt) == SQLITE_ROW;
}

static void paused_again(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        struct monitor *w = userdata;

        (void)qmp;
        (void)result;
        if (err)
                log_warn("cannot pause a suspended guest", "service=%s error=\"%s\"", w->uuid, err->msg);
}

/* A suspended service's vCPUs stay paused, whatever happened meanwhile
 * (vpsd restarted, someone resumed the guest around vpsd). */
static void enforce_suspension(struct monitor *w, const char *why)
{
        if (!w->qmp || !service_suspended(w->m, w->service_id))
                return;
        log_info("pausing a suspended guest", "service=%s why=\"%s\"", w->uuid, why);
        if (qmp_simple(w->qmp, QMP_STOP, QMP_TIMEOUT_MS, paused_again, w, NULL) < 0)
                log_warn("cannot pause a suspended guest", "service=%s", w->uuid);
}

/* A fact about the running guest (paused, tray, boot time), whoever
 * caused it: true even while an operation holds the service. sql sets one
 * column from ?2 for the service ?1. */
static void fact_record(struct monitor *w, const char *sql, int64_t value)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(w->m->store, sql, &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, w->service_id);
        sqlite3_bind_int64(stmt, 2, value);
        if (sqlite3_step(stmt) != SQLITE_DONE)
                log_warn("cannot record a guest event", "service=%s", w->uuid);
}

static void on_event(struct qmp *qmp, const char *name, struct json_object *data, int64_t timestamp_us,
                     void *userdata)
{
        struct monitor *w = userdata;
        struct json_object *field = NULL;
        char state[32];
        bool idle;

        (void)qmp;
        (void)timestamp_us;
        log_debug("qmp event", "service=%s event=%s", w->uuid, name);
        /* What vpsd's own operations cause is theirs to record; an event
         * with no operation on the service came from inside the guest or
         * from someone who went around vpsd. */
        idle = service_idle(w->m, w->service_id, state, sizeof(state));
        if (strcmp(name, "SHUTDOWN") == 0) {
                if (idle)
                        set_stopped(w, "SHUTDOWN");
        } else if (strcmp(name, "STOP") == 0) {
                fact_record(w, "UPDATE services SET paused = ?2 WHERE id = ?1", 1);
        } else if (strcmp(name, "RESUME") == 0) {
                fact_record(w, "UPDATE services SET paused = ?2 WHERE id = ?1", 0);
                enforce_suspension(w, "resumed while suspended");
        } else if (strcmp(name, "RESET") == 0) {
                const char *reason = json_object_object_get_ex(data, "reason", &field) &&
                                                     json_object_is_type(field, json_type_string)
                                             ? json_object_get_string(field)
                                             : "unknown";
                fact_record(w, "UPDATE services SET booted_at = ?2 WHERE id = ?1", time_now_wall());
                if (idle) {
                        log_info("guest rebooted", "service=%s reason=%s", w->uuid, reason);
                        logbook_activity(w->m->store, w->service_id, "guest", "rebooted");
                        logbook_audit(w->m->store, "guest", "reboot", w->uuid, "ok", reason);
                }
        } else if (strcmp(name, "POWERDOWN") == 0) {
                if (idle) {
                        log_info("guest power button pressed", "service=%s", w->uuid);
                        logbook_audit(w->m->store, "guest", "power button", w->uuid, "ok", "POWERDOWN");
                }
        } else if (strcmp(name, "DEVICE_TRAY_MOVED") == 0) {
                if (!json_object_object_get_ex(data, "tray-open", &field) ||
                    !json_object_is_type(field, json_type_boolean))
                        return;
                fact_record(w, "UPDATE services SET cdrom_tray_open = ?2 WHERE id = ?1",
                            json_object_get_boolean(field));
                logbook_audit(w->m->store, "guest", json_object_get_boolean(field) ? "cd tray opened" : "cd tray closed",
                              w->uuid, "ok", "DEVICE_TRAY_MOVED");
        }
}

static void connect_now(struct monitor *w);

static void on_retry(uv_timer_t *t) { connect_now(t->data); }

/* A monitor's memory goes when nothing can call back into it any more. */
static void maybe_free(struct monitor *w)
{
        if (w->gone && w->closed && w->pending == 0)
                free(w);
}

static void state_checked(int status, enum virt_state state, const char *message, void *userdata)
{
        struct monitor *w = userdata;
        char service_state[32];

        (void)message;
        w->pending--;
        if (w->gone) {
                maybe_free(w);
                return;
        }
        /* QEMU is gone without an operation of ours: the guest ended itself
         * (poweroff with on_poweroff=destroy, or a crash). */
        if (status == 0 && state != VIRT_STATE_RUNNING &&
            service_idle(w->m, w->service_id, service_state, sizeof(service_state)))
                set_stopped(w, "QEMU exited");
        else if (status == 0 && state == VIRT_STATE_RUNNING && w->retries < RETRIES) {
                w->retries++;
                uv_timer_start(&w->retry, on_retry, RETRY_MS, 0);
        }
}

static void on_state(struct qmp *qmp, enum qmp_state state, const struct error *reason, void *userdata)
{
        struct monitor *w = userdata;
        char domain[48];

        (void)qmp;
        if (state == QMP_RUNNING) {
                w->retries = 0;
                log_debug("qmp monitor connected", "service=%s", w->uuid);
                enforce_suspension(w, "monitor connected");
                return;
        }
        if (state != QMP_DISCONNECTED || w->gone)
                return;
        log_debug("qmp monitor disconnected", "service=%s reason=\"%s\"", w->uuid, reason ? reason->msg : "");
        w->qmp = qmp_close(w->qmp); /* safe from inside its own callback */
        snprintf(domain, sizeof(domain), "vpsd-%s", w->uuid);
        if (virt_submit(w->m->virt, VIRT_STATE, domain, state_checked, w, NULL) < 0)
                log_warn("cannot ask libvirt for a guest's state", "service=%s", w->uuid);
        else
                w->pending++;
}

static void connect_now(struct monitor *w)
{
        const struct qmp_config config = { .on_event = on_event, .on_state = on_state, .userdata = w };
        struct error err = { 0 };

        w->qmp = qmp_close(w->qmp);
        if (qmp_connect(w->m->loop, w->socket, &config, &w->qmp, &err) < 0)
                log_warn("cannot connect to a guest's QMP monitor", "service=%s error=\"%s\"", w->uuid, err.msg);
}

void monitor_watch(struct monitors *m, int64_t service_id, const char *uuid, const char *qmp_socket)
{
        struct monitor *w = find(m, uuid);

        if (!w) {
                w = calloc(1, sizeof(*w));
                if (!w)
                        return;
                w->m = m;
                uv_timer_init(m->loop, &w->retry);
                w->retry.data = w;
                w->next = m->list;
                m->list = w;
        }
        w->service_id = service_id;
        str_copy(w->uuid, sizeof(w->uuid), uuid);
        str_copy(w->socket, sizeof(w->socket), qmp_socket);
        w->retries = 0;
        connect_now(w);
}

static void retry_closed(uv_handle_t *h)
{
        struct monitor *w = h->data;

        w->closed = true;
        maybe_free(w);
}

static void drop(struct monitors *m, struct monitor *w)
{
        struct monitor **p;

        for (p = &m->list; *p && *p != w; p = &(*p)->next)
                ;
        if (*p)
                *p = w->next;
        w->gone = true;
        w->qmp = qmp_close(w->qmp);
        uv_close((uv_handle_t *)&w->retry, retry_closed);
}

void monitor_unwatch(struct monitors *m, const char *uuid)
{
        struct monitor *w = find(m, uuid);

        if (w)
                drop(m, w);
}

int monitor_simple(struct monitors *m, const char *uuid, enum qmp_verb verb, qmp_reply_fn done, void *userdata,
                   struct error *err)
{
        struct monitor *w = find(m, uuid);

        if (!w || !w->qmp)
                return error_set(err, -ENOTCONN, "service %s: no QMP monitor", uuid);
        return qmp_simple(w->qmp, verb, QMP_TIMEOUT_MS, done, userdata, err);
}

int monitor_execute(struct monitors *m, const char *uuid, const char *command, struct json_object *arguments,
                    qmp_reply_fn done, void *userdata, struct error *err)
{
        struct monitor *w = find(m, uuid);

        if (!w || !w->qmp) {
                json_object_put(arguments);
                return error_set(err, -ENOTCONN, "service %s: no QMP monitor", uuid);
        }
        return qmp_execute(w->qmp, command, arguments, QMP_TIMEOUT_MS, done, userdata, err);
}

struct monitors *monitors_free(struct monitors *m)
{
        if (!m)
                return NULL;
        while (m->list)
                drop(m, m->list);
        free(m);
        return NULL;
}
