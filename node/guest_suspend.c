/* Suspend and unsuspend. The record is the truth and comes first; what
 * follows from it is derived and enforced wherever it could be lost: the
 * filter (rebuilt from the store at start) passes nothing for a suspended
 * port, the monitor pauses a suspended guest whenever it connects or sees
 * it resumed, and console sessions end. So a crash at any point leaves a
 * suspended service suspended, with no lock to recover. */
#include "guest_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/lease.h"
#include "node/logbook.h"
#include "node/monitor.h"
#include "node/outbox.h"
#include "node/service.h"

#define QMP_SUSPEND_TIMEOUT_MS 10000

static const char *const kind_names[] = {
        [GUEST_SUSPEND_LEASE] = "lease", [GUEST_SUSPEND_LEDGER] = "ledger", [GUEST_SUSPEND_OPERATOR] = "operator"
};

struct suspend_call {
        struct guests *g;
        int64_t service_id;
        char uuid[SPEC_UUID_SIZE];
        char state[24]; /* the state the reply tells */
        guest_done_fn done;
        void *userdata;
};

static void reply(struct suspend_call *c, const char *note)
{
        struct json_object *result = json_object_new_object();

        json_object_object_add(result, "uuid", json_object_new_string(c->uuid));
        json_object_object_add(result, "state", json_object_new_string(c->state));
        if (note)
                json_object_object_add(result, "note", json_object_new_string(note));
        c->g->ops_running--;
        c->done(0, NULL, result, c->userdata);
        json_object_put(result);
        free(c);
}

static void qmp_replied(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        struct suspend_call *c = userdata;

        (void)qmp;
        (void)result;
        /* The record holds either way; the monitor enforces it when the
         * guest's monitor comes back. */
        if (err)
                log_warn("suspend/unsuspend: QMP failed; the monitor will enforce it", "service=%s error=\"%s\"",
                         c->uuid, err->msg);
        reply(c, NULL);
}

/* The two logs (the ledger's `state` event comes from the store itself:
 * migration 8's trigger). */
static void tell(struct guests *g, int64_t id, const char *uuid, const char *state, const char *actor,
                 const char *activity, const char *action, const char *detail)
{
        logbook_activity(g->store, id, actor, activity);
        logbook_audit(g->store, actor, action, uuid, "ok", detail ? detail : "");
        log_info("service state", "service=%s state=%s action=%s", uuid, state, action);
}

static struct suspend_call *call_new(struct guests *g, int64_t id, const char *uuid, const char *state,
                                     guest_done_fn done, void *userdata)
{
        struct suspend_call *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        *c = (struct suspend_call){ .g = g, .service_id = id, .done = done, .userdata = userdata };
        str_copy(c->uuid, sizeof(c->uuid), uuid);
        str_copy(c->state, sizeof(c->state), state);
        g->ops_running++;
        return c;
}

/* The filter passes what the record now says; a failure is told, and the
 * next start's rebuild puts it right. */
static const char *filter_apply(struct guests *g, int64_t id, const char *uuid)
{
        struct error err = { 0 };

        if (guest_network_apply(g, id, &err) == 0)
                return NULL;
        log_error("cannot apply a service's port to the filter", "service=%s error=\"%s\"", uuid, err.msg);
        return "the filter could not be changed now; it is at vpsd's next start";
}

int guest_suspend(struct guests *g, const char *uuid, enum guest_suspend_kind kind, const char *reason,
                  const char *actor, guest_done_fn done, void *userdata, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct suspend_call *c;
        const char *note;
        char state[32];
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "suspended") == 0 || strcmp(state, "removal-queued") == 0) {
                c = call_new(g, id, uuid, state, done, userdata);
                if (!c)
                        return error_set(err, -ENOMEM, "out of memory");
                reply(c, "already suspended");
                return 0;
        }
        if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        r = store_prepare(g->store,
                          "UPDATE services SET state = 'suspended', suspend_reason = ?3, suspend_kind = ?4, "
                          "suspended_at = ?5, resume_state = ?2, updated_at = ?5 "
                          "WHERE id = ?1 AND state = ?2 AND busy_operation IS NULL",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, kind_names[kind], -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 5, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE || sqlite3_changes(store_db(g->store)) != 1)
                return error_set(err, -EBUSY, "busy: another operation");
        c = call_new(g, id, uuid, "suspended", done, userdata);
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        note = filter_apply(g, id, uuid);
        if (g->lock_hook)
                g->lock_hook(uuid, "suspend", g->lock_hook_data);
        tell(g, id, uuid, "suspended", actor, kind == GUEST_SUSPEND_LEASE ? "suspended for non-payment" : "suspended",
             "suspend", reason);
        if (strcmp(state, "running") == 0 && g->monitors && !note &&
            monitor_simple(g->monitors, uuid, QMP_STOP, qmp_replied, c, NULL) == 0)
                return 0;
        reply(c, note);
        return 0;
}

static void started(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct suspend_call *c = userdata;

        (void)result;
        if (status < 0) {
                log_warn("unsuspend: the guest did not start", "service=%s error=\"%s\"", c->uuid, err->msg);
                reply(c, "lifted, but the guest did not start; start it again");
                return;
        }
        reply(c, NULL);
}

int guest_unsuspend(struct guests *g, const char *uuid, const char *actor, guest_done_fn done, void *userdata,
                    struct error *err)
{
        cleanup_stmt sqlite3_stmt *get = NULL, *put = NULL;
        struct suspend_call *c;
        struct error start_err = { 0 };
        char state[32], back[16] = "stopped";
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") == 0 || strcmp(state, "stopped") == 0) {
                c = call_new(g, id, uuid, state, done, userdata);
                if (!c)
                        return error_set(err, -ENOMEM, "out of memory");
                reply(c, "not suspended");
                return 0;
        }
        if (strcmp(state, "suspended") != 0 && strcmp(state, "removal-queued") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        if (store_prepare(g->store, "SELECT resume_state FROM services WHERE id = ?1", &get, err) < 0)
                return err->code;
        sqlite3_bind_int64(get, 1, id);
        if (sqlite3_step(get) == SQLITE_ROW && sqlite3_column_text(get, 0))
                str_copy(back, sizeof(back), (const char *)sqlite3_column_text(get, 0));
        r = store_prepare(g->store,
                          "UPDATE services SET state = ?2, suspend_reason = NULL, suspend_kind = NULL, "
                          "suspended_at = NULL, resume_state = NULL, updated_at = ?3 "
                          "WHERE id = ?1 AND state = ?4 AND busy_operation IS NULL",
                          &put, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(put, 1, id);
        sqlite3_bind_text(put, 2, back, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 3, time_now_wall());
        sqlite3_bind_text(put, 4, state, -1, SQLITE_STATIC);
        if (sqlite3_step(put) != SQLITE_DONE || sqlite3_changes(store_db(g->store)) != 1)
                return error_set(err, -EBUSY, "busy: another operation");
        c = call_new(g, id, uuid, back, done, userdata);
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        filter_apply(g, id, uuid);
        tell(g, id, uuid, back, actor, "unsuspended", "unsuspend", "");
        if (strcmp(back, "running") != 0) {
                reply(c, NULL);
                return 0;
        }
        /* In place: the paused vCPUs go on. A guest whose QEMU is gone
         * (the node rebooted meanwhile) is started. */
        if (g->monitors && monitor_simple(g->monitors, uuid, QMP_CONT, qmp_replied, c, NULL) == 0)
                return 0;
        if (guest_power(g, uuid, GUEST_START, actor, started, c, &start_err) < 0)
                started(start_err.code, &start_err, NULL, c);
        return 0;
}

int guest_removal_queue(struct guests *g, int64_t id, const char *uuid, struct error *err)
{
        struct sync_msg event = { .kind = SYNC_REMOVAL_QUEUED };
        struct lease_policy policy;
        struct error perr = { 0 };
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(g->store,
                              "UPDATE services SET state = 'removal-queued', updated_at = ?2 "
                              "WHERE id = ?1 AND state = 'suspended' AND busy_operation IS NULL",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_int64(stmt, 2, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE || sqlite3_changes(store_db(g->store)) != 1)
                return error_set(err, -EBUSY, "service %s: not suspended, or busy", uuid);
        tell(g, id, uuid, "removal-queued", "node", "queued for removal", "removal-queued", "retention ended");
        if (lease_policy_load(g->store, &policy, &perr) == 0)
                event.remove_after = policy.autonomous_removal ? time_now_wall() : 0;
        str_copy(event.service, sizeof(event.service), uuid);
        if (outbox_add(g->store, &event, &perr) < 0)
                log_error("cannot queue an event for the ledger", "service=%s error=\"%s\"", uuid, perr.msg);
        return 0;
}

int guest_transfer(struct guests *g, const char *uuid, const char *account_id, const char *actor, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int64_t id;
        int r = spec_account_id_check("account_id", account_id, err);

        if (r == 0)
                r = service_id_find(g->store, uuid, &id, err);
        if (r == 0)
                r = store_prepare(g->store,
                                  "UPDATE services SET account_id = ?2, updated_at = ?3 "
                                  "WHERE id = ?1 AND state != 'terminated' AND busy_operation IS NULL",
                                  &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, account_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "transfer: %s", sqlite3_errmsg(store_db(g->store)));
        if (sqlite3_changes(store_db(g->store)) != 1) {
                cleanup_stmt sqlite3_stmt *why = NULL;

                if (store_prepare(g->store, "SELECT busy_operation FROM services WHERE id = ?1", &why, err) < 0)
                        return -EIO;
                sqlite3_bind_int64(why, 1, id);
                if (sqlite3_step(why) == SQLITE_ROW && sqlite3_column_type(why, 0) != SQLITE_NULL)
                        return error_set(err, -EBUSY, "busy: %s", (const char *)sqlite3_column_text(why, 0));
                return error_set(err, -EPERM, "service %s is terminated", uuid);
        }
        /* The old owner's consoles end with the ownership. */
        if (g->lock_hook)
                g->lock_hook(uuid, "transfer", g->lock_hook_data);
        logbook_activity(g->store, id, actor, "transferred to another account");
        logbook_audit(g->store, actor, "transfer", uuid, "ok", account_id);
        log_info("service transferred", "service=%s actor=\"%s\"", uuid, actor);
        return 0;
}
