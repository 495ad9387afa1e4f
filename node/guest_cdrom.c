/* The service's CD drive (domain.c: an empty SATA cdrom, `sda`): an ISO
 * inserted or ejected live through vpsd's QMP monitor while the guest
 * runs, recorded in services.iso_id so that every later start defines the
 * domain with it; and whether the guest boots from it first
 * (services.boot_iso, at its next start). Not a long operation: no busy
 * lock, but one that holds the service refuses it. */
#include "guest_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/logbook.h"
#include "node/monitor.h"

/* libvirt's name for the drive at target sda on the SATA bus (controller
 * 0, bus 0, unit 0): the qdev id QMP addresses it by. */
#define CDROM_QDEV_ID "sata0-0-0"

struct cdrom_call {
        struct guests *g;
        int64_t service_id;
        char uuid[SPEC_UUID_SIZE];
        char iso_id[65]; /* empty: eject */
        char actor[96];
        guest_done_fn done;
        void *userdata;
};

static int cdrom_record(struct guests *g, int64_t id, const char *iso_id)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(g->store, "UPDATE services SET iso_id = ?2, updated_at = ?3 WHERE id = ?1", &stmt, NULL);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        if (iso_id[0])
                sqlite3_bind_text(stmt, 2, iso_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        return sqlite3_step(stmt) == SQLITE_DONE ? 0 : -EIO;
}

static void cdrom_end(struct cdrom_call *c, const struct error *failed, bool live)
{
        const char *action = c->iso_id[0] ? "iso.mount" : "iso.eject";
        struct json_object *result;
        struct error err = { 0 };

        if (!failed && cdrom_record(c->g, c->service_id, c->iso_id) < 0)
                failed = &err, error_set(&err, -EIO, "service %s: cannot record the CD drive", c->uuid);
        if (failed) {
                logbook_audit(c->g->store, c->actor, action, c->uuid, failed->msg, c->iso_id);
                c->done(failed->code, failed, NULL, c->userdata);
                free(c);
                return;
        }
        logbook_activity(c->g->store, c->service_id, c->actor, c->iso_id[0] ? "ISO inserted" : "ISO ejected");
        logbook_audit(c->g->store, c->actor, action, c->uuid, "ok", c->iso_id);
        log_info("guest CD drive", "service=%s iso=%s live=%s", c->uuid, c->iso_id[0] ? c->iso_id : "(none)",
                 live ? "yes" : "no");
        result = json_object_new_object();
        json_object_object_add(result, "uuid", json_object_new_string(c->uuid));
        json_object_object_add(result, "iso", c->iso_id[0] ? json_object_new_string(c->iso_id) : NULL);
        json_object_object_add(result, "live", json_object_new_boolean(live));
        c->done(0, NULL, result, c->userdata);
        json_object_put(result);
        free(c);
}

static void cdrom_replied(struct qmp *qmp, struct json_object *reply, const struct error *qmp_err, void *userdata)
{
        struct cdrom_call *c = userdata;
        struct error err = { 0 };

        (void)qmp;
        (void)reply;
        c->g->ops_running--;
        if (qmp_err)
                error_set(&err, qmp_err->code, "service %s: %s: %s", c->uuid, c->iso_id[0] ? "mount" : "eject",
                          qmp_err->msg);
        cdrom_end(c, qmp_err ? &err : NULL, true);
}

static struct json_object *cdrom_arguments(const char *path)
{
        struct json_object *a = json_object_new_object();

        json_object_object_add(a, "id", json_object_new_string(CDROM_QDEV_ID));
        if (path) {
                /* Always raw: QEMU never probes a customer's file. */
                json_object_object_add(a, "filename", json_object_new_string(path));
                json_object_object_add(a, "format", json_object_new_string("raw"));
                json_object_object_add(a, "read-only-mode", json_object_new_string("read-only"));
        } else {
                /* A guest that locked its tray is overruled. */
                json_object_object_add(a, "force", json_object_new_boolean(1));
        }
        return a;
}

/* The service's account must be account (when given). */
static int account_check(struct guests *g, int64_t id, const char *uuid, const char *account, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        if (!account)
                return 0;
        r = store_prepare(g->store, "SELECT account_id FROM services WHERE id = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(stmt, 0), account) != 0)
                return error_set(err, -EPERM, "service %s belongs to another account than the ISO", uuid);
        return 0;
}

int guest_cdrom_set(struct guests *g, const char *uuid, const char *account, const char *iso_id, const char *path,
                    const char *actor, guest_done_fn done, void *userdata, struct error *err)
{
        struct cdrom_call *c;
        char state[32];
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r == 0)
                r = account_check(g, id, uuid, account, err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        c = calloc(1, sizeof(*c));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        *c = (struct cdrom_call){ .g = g, .service_id = id, .done = done, .userdata = userdata };
        str_copy(c->uuid, sizeof(c->uuid), uuid);
        snprintf(c->iso_id, sizeof(c->iso_id), "%s", iso_id ? iso_id : "");
        snprintf(c->actor, sizeof(c->actor), "%s", actor);
        /* Stopped: the domain has it from the next start on. */
        if (strcmp(state, "stopped") == 0) {
                cdrom_end(c, NULL, false);
                return 0;
        }
        if (!g->monitors) {
                free(c);
                return error_set(err, -ENOTCONN, "service %s: no QMP monitor", uuid);
        }
        r = monitor_execute(g->monitors, uuid, iso_id ? "blockdev-change-medium" : "eject",
                            cdrom_arguments(iso_id ? path : NULL), cdrom_replied, c, err);
        if (r < 0) {
                free(c);
                return r;
        }
        g->ops_running++;
        return 0;
}

int guest_cdrom_get(struct guests *g, const char *uuid, char *iso_id, size_t size, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        if (!uuid_valid(uuid))
                return error_set(err, -EINVAL, "`%.64s` is not a service UUID", uuid);
        r = store_prepare(g->store, "SELECT iso_id FROM services WHERE uuid = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, uuid, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %s: not found", uuid);
        snprintf(iso_id, size, "%s", sqlite3_column_text(stmt, 0) ? (const char *)sqlite3_column_text(stmt, 0) : "");
        return 0;
}

int guest_boot_iso_set(struct guests *g, const char *uuid, bool from_iso, const char *actor, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char state[32];
        int64_t id;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r == 0)
                r = store_prepare(g->store, "UPDATE services SET boot_iso = ?2, updated_at = ?3 WHERE id = ?1", &stmt,
                                  err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_int(stmt, 2, from_iso);
        sqlite3_bind_int64(stmt, 3, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "service %s: %s", uuid, sqlite3_errmsg(store_db(g->store)));
        logbook_audit(g->store, actor, "iso.boot", uuid, "ok", from_iso ? "cdrom" : "disk");
        return 0;
}
