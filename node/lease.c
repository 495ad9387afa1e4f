#include "lease.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "node/logbook.h"
#include "node/service.h"
#include "node/spec.h"

/* The scheduler looks at least this often, so that a clock that jumped
 * forward is noticed within a tick. */
#define TICK_MS 1000
#define KICK_MIN_MS 10 /* looks asked for (leases_kick) come at most this often */

void lease_policy_default(struct lease_policy *ret)
{
        *ret = (struct lease_policy){ .grace_s = 0, .retention_s = 3 * 86400, .autonomous_removal = false };
}

int64_t lease_suspend_at(int64_t paid_until, const struct lease_policy *p) { return paid_until + p->grace_s; }

int64_t lease_removal_at(int64_t suspended_at, const struct lease_policy *p) { return suspended_at + p->retention_s; }

struct json_object *lease_policy_json(const struct lease_policy *p)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "grace_s", json_object_new_int64(p->grace_s));
        json_object_object_add(o, "retention_s", json_object_new_int64(p->retention_s));
        json_object_object_add(o, "autonomous_removal", json_object_new_boolean(p->autonomous_removal));
        return o;
}

/* Applies changes onto *p; refuses unknown keys, wrong types and values
 * out of range, leaving *p as it was. */
static int policy_apply(struct lease_policy *p, struct json_object *changes, struct error *err)
{
        struct lease_policy next = *p;

        if (!json_object_is_type(changes, json_type_object))
                return error_set(err, -EINVAL, "policy: an object is expected");
        json_object_object_foreach(changes, key, value)
        {
                if (strcmp(key, "grace_s") == 0 || strcmp(key, "retention_s") == 0) {
                        int64_t n, max = key[0] == 'g' ? LEASE_GRACE_MAX_S : LEASE_RETENTION_MAX_S;
                        if (!json_object_is_type(value, json_type_int))
                                return error_set(err, -EINVAL, "policy: %s: a whole number of seconds is expected",
                                                 key);
                        n = json_object_get_int64(value);
                        if (n < 0 || n > max)
                                return error_set(err, -EINVAL, "policy: %s: %lld is not within 0..%lld", key,
                                                 (long long)n, (long long)max);
                        *(key[0] == 'g' ? &next.grace_s : &next.retention_s) = n;
                } else if (strcmp(key, "autonomous_removal") == 0) {
                        if (!json_object_is_type(value, json_type_boolean))
                                return error_set(err, -EINVAL, "policy: autonomous_removal: true or false");
                        next.autonomous_removal = json_object_get_boolean(value);
                } else
                        return error_set(err, -EINVAL, "policy: unknown key `%.64s`", key);
        }
        *p = next;
        return 0;
}

int lease_policy_load(struct store *store, struct lease_policy *ret, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *stored = NULL;
        struct lease_policy p;
        int r;

        lease_policy_default(&p);
        r = store_prepare_cached(store, "SELECT value FROM node_facts WHERE key = 'lease_policy'", &stmt, err);
        if (r < 0)
                return r;
        if (sqlite3_step(stmt) == SQLITE_ROW) {
                stored = json_tokener_parse((const char *)sqlite3_column_text(stmt, 0));
                if (!stored || policy_apply(&p, stored, err) < 0)
                        return error_set(err, -EIO, "the stored lease policy is damaged");
        }
        *ret = p;
        return 0;
}

int lease_policy_update(struct store *store, struct json_object *changes, struct lease_policy *ret,
                        struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *o = NULL;
        struct lease_policy p;
        int r;

        r = lease_policy_load(store, &p, err);
        if (r < 0)
                return r;
        r = policy_apply(&p, changes, err);
        if (r < 0)
                return r;
        o = lease_policy_json(&p);
        r = store_prepare(store,
                          "INSERT OR REPLACE INTO node_facts (key, value, updated_at) VALUES ('lease_policy', ?1, ?2)",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 2, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "policy: %s", sqlite3_errmsg(store_db(store)));
        *ret = p;
        return 0;
}

int lease_annotate(struct store *store, struct json_object *service, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *next = NULL;
        struct lease_policy p;
        const char *uuid = json_object_get_string(json_object_object_get(service, "uuid"));
        int r = lease_policy_load(store, &p, err);

        if (r < 0)
                return r;
        r = store_prepare(store,
                          "SELECT state, paid_until, suspend_kind, suspended_at FROM services WHERE uuid = ?1", &stmt,
                          err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, uuid ? uuid : "", -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
                const char *state = (const char *)sqlite3_column_text(stmt, 0);
                const char *kind = (const char *)sqlite3_column_text(stmt, 2);
                if ((strcmp(state, "running") == 0 || strcmp(state, "stopped") == 0) &&
                    sqlite3_column_type(stmt, 1) != SQLITE_NULL) {
                        next = json_object_new_object();
                        json_object_object_add(next, "event", json_object_new_string("suspend"));
                        json_object_object_add(next, "at", json_object_new_int64(lease_suspend_at(
                                                                   sqlite3_column_int64(stmt, 1), &p)));
                } else if (strcmp(state, "suspended") == 0 && kind && strcmp(kind, "lease") == 0) {
                        next = json_object_new_object();
                        json_object_object_add(next, "event", json_object_new_string("removal-queued"));
                        json_object_object_add(next, "at", json_object_new_int64(lease_removal_at(
                                                                   sqlite3_column_int64(stmt, 3), &p)));
                } else if (strcmp(state, "removal-queued") == 0 && p.autonomous_removal) {
                        next = json_object_new_object();
                        json_object_object_add(next, "event", json_object_new_string("terminate"));
                        json_object_object_add(next, "at", json_object_new_int64(time_now_wall()));
                }
                if (sqlite3_column_text(stmt, 2))
                        json_object_object_add(service, "suspend_kind", json_object_new_string(kind));
                if (sqlite3_column_type(stmt, 3) != SQLITE_NULL)
                        json_object_object_add(service, "suspended_at",
                                               json_object_new_int64(sqlite3_column_int64(stmt, 3)));
        }
        json_object_object_add(service, "next", next);
        return 0;
}

/* --- the scheduler --- */

struct leases {
        uv_loop_t *loop;
        struct store *store;
        struct guests *guests;
        uv_timer_t timer;
        unsigned in_flight; /* suspensions and terminations not yet answered */
        uint64_t last_tick_ms; /* loop time of the last look */
        bool closing;
};

static void leases_maybe_free(struct leases *l);

static void acted(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct leases *l = userdata;

        (void)result;
        l->in_flight--;
        if (l->closing) {
                leases_maybe_free(l);
                return;
        }
        /* A failure is tried again at the next tick, never at once: an
         * action that keeps failing must not spin. */
        if (status < 0)
                log_warn("lease enforcement: an action failed; it is tried again", "error=\"%s\"", err->msg);
        else
                leases_kick(l);
}

/* Leases that ended past their grace: suspended now. */
static void suspend_due(struct leases *l, const struct lease_policy *p, int64_t now)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(l->store,
                          /* By the paid_until index: only the due rows are read
                           * (`+state`: not by the state index, which holds
                           * every live service). */
                          "SELECT uuid FROM services WHERE paid_until IS NOT NULL AND paid_until <= ?1 - ?2 "
                          "AND +state IN ('running', 'stopped') AND busy_operation IS NULL",
                          &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, now);
        sqlite3_bind_int64(stmt, 2, p->grace_s);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                struct error err = { 0 };
                const char *uuid = (const char *)sqlite3_column_text(stmt, 0);
                log_info("lease ended: suspending", "service=%s", uuid);
                l->in_flight++;
                if (guest_suspend(l->guests, uuid, GUEST_SUSPEND_LEASE, "lease ended", "node", acted, l, &err) < 0) {
                        l->in_flight--;
                        log_write(err.code == -EBUSY ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
                                  "lease ended but the service cannot be suspended now; tried again each second",
                                  "service=%s error=\"%s\"", uuid, err.msg);
                }
        }
}

/* Lease suspensions past retention: removal-queued (and terminated when
 * the operator opted in). */
static void queue_due(struct leases *l, const struct lease_policy *p, int64_t now)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(l->store,
                          "SELECT id, uuid FROM services WHERE state IN ('suspended', 'removal-queued') "
                          "AND busy_operation IS NULL AND ((state = 'suspended' AND suspend_kind = 'lease' "
                          "AND suspended_at <= ?1 - ?2) OR (state = 'removal-queued' AND ?3))",
                          &stmt, NULL) < 0)
                return;
        sqlite3_bind_int64(stmt, 1, now);
        sqlite3_bind_int64(stmt, 2, p->retention_s);
        sqlite3_bind_int(stmt, 3, p->autonomous_removal);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                struct error err = { 0 };
                int64_t id = sqlite3_column_int64(stmt, 0);
                const char *uuid = (const char *)sqlite3_column_text(stmt, 1);
                if (guest_removal_queue(l->guests, id, uuid, &err) < 0 && err.code != -EBUSY)
                        log_warn("cannot queue a service for removal", "service=%s error=\"%s\"", uuid, err.msg);
                if (!p->autonomous_removal)
                        continue;
                log_info("autonomous removal: terminating", "service=%s", uuid);
                l->in_flight++;
                if (guest_terminate(l->guests, uuid, "node", acted, l, &err) < 0) {
                        l->in_flight--;
                        log_warn("cannot terminate a removal-queued service", "service=%s error=\"%s\"", uuid,
                                 err.msg);
                }
        }
}

/* The next deadline after now, or now + TICK_MS at the latest. */
static uint64_t next_wait_ms(struct leases *l, const struct lease_policy *p, int64_t now)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int64_t next = now + TICK_MS / 1000;

        if (store_prepare(l->store,
                          /* The first live lease in paid_until order, read off
                           * its index, and the suspensions' (few) by state. */
                          "SELECT min(t) FROM (SELECT * FROM (SELECT paid_until + ?1 AS t FROM services "
                          "WHERE paid_until IS NOT NULL AND +state IN ('running', 'stopped') AND busy_operation IS NULL "
                          "ORDER BY paid_until LIMIT 1) UNION ALL SELECT min(suspended_at) + ?2 "
                          "FROM services WHERE state = 'suspended' AND suspend_kind = 'lease' AND busy_operation IS NULL)",
                          &stmt, NULL) == 0) {
                sqlite3_bind_int64(stmt, 1, p->grace_s);
                sqlite3_bind_int64(stmt, 2, p->retention_s);
                if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL &&
                    sqlite3_column_int64(stmt, 0) < next)
                        next = sqlite3_column_int64(stmt, 0);
        }
        /* Past due and not busy: an action just failed; the next tick
         * tries again. (A service an operation holds is left out above: it
         * is looked at again each tick, not in a tight loop.) */
        if (next <= now)
                return TICK_MS;
        /* Deadlines are whole seconds: wake just after the second turns. */
        {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                return (uint64_t)(next - now) * 1000 - (uint64_t)(ts.tv_nsec / 1000000) + 5;
        }
}

static void on_tick(uv_timer_t *t)
{
        struct leases *l = t->data;
        struct lease_policy p;
        struct error err = { 0 };
        int64_t now = time_now_wall();

        l->last_tick_ms = uv_now(l->loop);
        if (lease_policy_load(l->store, &p, &err) < 0) {
                log_error("lease enforcement: cannot read the policy; using the default", "error=\"%s\"", err.msg);
                lease_policy_default(&p);
        }
        suspend_due(l, &p, now);
        queue_due(l, &p, now);
        uv_timer_start(&l->timer, on_tick, next_wait_ms(l, &p, now), 0);
}

/* At once, but at most one look per KICK_MIN_MS: a stream of renews
 * (a ledger catching up) costs one look per window, not one each. */
void leases_kick(struct leases *l)
{
        uint64_t now, due;

        if (!l || l->closing)
                return;
        now = uv_now(l->loop);
        due = l->last_tick_ms + KICK_MIN_MS > now ? l->last_tick_ms + KICK_MIN_MS - now : 0;
        if (!uv_is_active((uv_handle_t *)&l->timer) || uv_timer_get_due_in(&l->timer) > due)
                uv_timer_start(&l->timer, on_tick, due, 0);
}

int leases_new(uv_loop_t *loop, struct store *store, struct guests *guests, struct leases **ret,
               struct error *err)
{
        struct leases *l = calloc(1, sizeof(*l));

        if (!l)
                return error_set(err, -ENOMEM, "out of memory");
        l->loop = loop;
        l->store = store;
        l->guests = guests;
        uv_timer_init(loop, &l->timer);
        l->timer.data = l;
        leases_kick(l);
        *ret = l;
        return 0;
}

int lease_renew(struct leases *l, const char *uuid, int64_t paid_until, const char *actor, guest_done_fn done,
                void *userdata, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        struct lease_policy p;
        bool lease_suspended;
        char detail[48];
        int64_t id;
        int r;

        if (paid_until < 0 || paid_until > SPEC_PAID_UNTIL_MAX)
                return error_set(err, -EINVAL, "paid_until: %lld is not a time", (long long)paid_until);
        r = lease_policy_load(l->store, &p, err);
        if (r < 0)
                return r;
        r = service_id_find(l->store, uuid, &id, err);
        if (r < 0)
                return r;
        r = store_prepare_cached(l->store,
                          "UPDATE services SET paid_until = ?2, updated_at = ?3 WHERE id = ?1 AND state != "
                          "'terminated' RETURNING state, suspend_kind",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_int64(stmt, 2, paid_until);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -EBADFD, "service %s is terminated", uuid);
        lease_suspended = sqlite3_column_text(stmt, 1) &&
                          strcmp((const char *)sqlite3_column_text(stmt, 1), "lease") == 0;
        sqlite3_reset(stmt);
        snprintf(detail, sizeof(detail), "paid_until=%lld", (long long)paid_until);
        logbook_audit(l->store, actor, "renew", uuid, "ok", detail);
        leases_kick(l);
        /* A suspension the ended lease caused ends with the new lease. */
        if (lease_suspended && lease_suspend_at(paid_until, &p) > time_now_wall())
                return guest_unsuspend(l->guests, uuid, actor, done, userdata, err);
        {
                struct json_object *result = json_object_new_object();
                json_object_object_add(result, "uuid", json_object_new_string(uuid));
                json_object_object_add(result, "paid_until", json_object_new_int64(paid_until));
                done(0, NULL, result, userdata);
                json_object_put(result);
        }
        return 0;
}

static void timer_closed(uv_handle_t *h)
{
        struct leases *l = h->data;

        l->timer.data = NULL;
        leases_maybe_free(l);
}

static void leases_maybe_free(struct leases *l)
{
        if (l->closing && l->in_flight == 0 && !l->timer.data)
                free(l);
}

struct leases *leases_free(struct leases *l)
{
        if (!l)
                return NULL;
        l->closing = true;
        uv_close((uv_handle_t *)&l->timer, timer_closed);
        return NULL;
}
