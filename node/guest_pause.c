/* Pause and resume: a running guest's vCPUs stop (QMP `stop`) or go on
 * (`cont`) through vpsd's own QMP monitor. Memory, disks and network stay
 * as they are. Not a long operation, so no busy lock is taken, but one
 * that holds the service refuses it. */
#include "guest_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/logbook.h"
#include "node/monitor.h"

#define QMP_PAUSE_TIMEOUT_MS 10000

struct pause_call {
        struct guests *g;
        int64_t service_id;
        char uuid[SPEC_UUID_SIZE];
        char actor[96];
        bool pause;
        guest_done_fn done;
        void *userdata;
};

static int paused_record(struct guests *g, int64_t id, bool paused)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(g->store, "UPDATE services SET paused = ?2, updated_at = ?3 WHERE id = ?1", &stmt,
                              NULL);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_int(stmt, 2, paused);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        return sqlite3_step(stmt) == SQLITE_DONE ? 0 : -EIO;
}

static struct json_object *pause_result(const char *uuid, bool paused)
{
        struct json_object *result = json_object_new_object();

        json_object_object_add(result, "uuid", json_object_new_string(uuid));
        json_object_object_add(result, "state", json_object_new_string("running"));
        json_object_object_add(result, "paused", json_object_new_boolean(paused));
        return result;
}

static void pause_replied(struct qmp *qmp, struct json_object *reply, const struct error *qmp_err, void *userdata)
{
        struct pause_call *c = userdata;
        const char *action = c->pause ? "pause" : "resume";
        struct json_object *result;
        struct error err = { 0 };

        (void)qmp;
        (void)reply;
        c->g->ops_running--;
        if (qmp_err) {
                error_set(&err, qmp_err->code, "service %s: %s: %s", c->uuid, action, qmp_err->msg);
                logbook_audit(c->g->store, c->actor, action, c->uuid, err.msg, "");
                c->done(err.code, &err, NULL, c->userdata);
                free(c);
                return;
        }
        /* The STOP or RESUME event records the same; recording it here
         * too makes the answer true at once, whichever arrives first. */
        if (paused_record(c->g, c->service_id, c->pause) < 0)
                log_warn("cannot record a guest's pause", "service=%s", c->uuid);
        logbook_activity(c->g->store, c->service_id, c->actor, c->pause ? "paused" : "resumed");
        logbook_audit(c->g->store, c->actor, action, c->uuid, "ok", "");
        log_info("guest vCPUs", "service=%s action=%s", c->uuid, action);
        result = pause_result(c->uuid, c->pause);
        c->done(0, NULL, result, c->userdata);
        json_object_put(result);
        free(c);
}

int guest_pause(struct guests *g, const char *uuid, bool pause, const char *actor, guest_done_fn done,
                void *userdata, struct error *err)
{
        struct pause_call *c;
        char state[32];
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        if (!g->monitors)
                return error_set(err, -ENOTCONN, "service %s: no QMP monitor", uuid);
        /* Already so (the monitor's events keep the record true): nothing
         * to do, and nothing for the customer's log. */
        if (guest_paused(g, id) == pause) {
                struct json_object *result = pause_result(uuid, pause);
                done(0, NULL, result, userdata);
                json_object_put(result);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        *c = (struct pause_call){ .g = g, .service_id = id, .pause = pause, .done = done, .userdata = userdata };
        str_copy(c->uuid, sizeof(c->uuid), uuid);
        snprintf(c->actor, sizeof(c->actor), "%s", actor);
        r = monitor_simple(g->monitors, uuid, pause ? QMP_STOP : QMP_CONT, pause_replied, c, err);
        if (r < 0) {
                free(c);
                return r;
        }
        g->ops_running++;
        return 0;
}

bool guest_paused(struct guests *g, int64_t id)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(g->store, "SELECT paused FROM services WHERE id = ?1", &stmt, NULL) < 0)
                return false;
        sqlite3_bind_int64(stmt, 1, id);
        return sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_int(stmt, 0) == 1;
}
