#include "service.h"

#include <errno.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

static const char *const state_names[SERVICE_STATE_COUNT] = {
        [SERVICE_PROVISIONING] = "provisioning",     [SERVICE_RUNNING] = "running",
        [SERVICE_STOPPED] = "stopped",               [SERVICE_SUSPENDED] = "suspended",
        [SERVICE_REMOVAL_QUEUED] = "removal-queued", [SERVICE_TERMINATED] = "terminated",
};

const char *service_state_name(enum service_state state)
{
        return (unsigned)state < SERVICE_STATE_COUNT ? state_names[state] : "?";
}

int service_state_parse(const char *name, enum service_state *ret_state)
{
        for (unsigned i = 0; i < SERVICE_STATE_COUNT; i++)
                if (strcmp(name, state_names[i]) == 0) {
                        *ret_state = (enum service_state)i;
                        return 0;
                }
        return -EINVAL;
}

int service_count_by_state(struct store *store, unsigned counts[SERVICE_STATE_COUNT], struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        memset(counts, 0, sizeof(unsigned) * SERVICE_STATE_COUNT);
        r = store_prepare(store, "SELECT state, count(*) FROM services GROUP BY state", &stmt, err);
        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                enum service_state s;
                if (service_state_parse((const char *)sqlite3_column_text(stmt, 0), &s) == 0)
                        counts[s] = (unsigned)sqlite3_column_int(stmt, 1);
        }
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "count services: %s", sqlite3_errmsg(store_db(store)));
        return 0;
}

static void add_text(struct json_object *o, const char *key, sqlite3_stmt *stmt, int col)
{
        const unsigned char *t = sqlite3_column_text(stmt, col);

        json_object_object_add(o, key, t ? json_object_new_string((const char *)t) : NULL);
}

static void add_int(struct json_object *o, const char *key, sqlite3_stmt *stmt, int col)
{
        json_object_object_add(o, key, sqlite3_column_type(stmt, col) == SQLITE_NULL
                                               ? NULL
                                               : json_object_new_int64(sqlite3_column_int64(stmt, col)));
}

#define SERVICE_COLUMNS                                                                                     \
        "id, uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, port_speed_mbit, traffic_gib, " \
        "template, mac, paid_until, suspend_reason, busy_operation, busy_step, busy_since, created_at, "    \
        "updated_at, paused, cdrom_tray_open, booted_at"

/* The summary form: what `service list` shows. */
static struct json_object *row_summary(sqlite3_stmt *stmt)
{
        struct json_object *o = json_object_new_object(), *busy = NULL;

        add_text(o, "uuid", stmt, 1);
        add_text(o, "account_id", stmt, 2);
        add_text(o, "hostname", stmt, 3);
        add_text(o, "state", stmt, 4);
        add_int(o, "paid_until", stmt, 12);
        json_object_object_add(o, "paused", json_object_new_boolean(sqlite3_column_int(stmt, 19)));
        if (sqlite3_column_type(stmt, 14) != SQLITE_NULL) {
                busy = json_object_new_object();
                add_text(busy, "operation", stmt, 14);
                add_text(busy, "step", stmt, 15);
                add_int(busy, "since", stmt, 16);
        }
        json_object_object_add(o, "busy", busy);
        return o;
}

int service_list_json(struct store *store, bool include_terminated, struct json_object **ret_list,
                      struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *list = json_object_new_array();
        int r;

        r = store_prepare(store,
                          "SELECT " SERVICE_COLUMNS " FROM services WHERE ?1 OR state != 'terminated' ORDER BY id",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int(stmt, 1, include_terminated);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW)
                json_object_array_add(list, row_summary(stmt));
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "list services: %s", sqlite3_errmsg(store_db(store)));
        *ret_list = steal_pointer(&list);
        return 0;
}

static int add_addresses(struct store *store, int64_t service_id, struct json_object *o, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *list = json_object_new_array();
        int r;

        json_object_object_add(o, "addresses", list);
        r = store_prepare(store,
                          "SELECT family, address, prefix, gateway FROM addresses WHERE service_id = ?1 "
                          "ORDER BY position",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                struct json_object *a = json_object_new_object();
                add_int(a, "family", stmt, 0);
                add_text(a, "address", stmt, 1);
                add_int(a, "prefix", stmt, 2);
                add_text(a, "gateway", stmt, 3);
                json_object_array_add(list, a);
        }
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "read addresses: %s", sqlite3_errmsg(store_db(store)));
        return 0;
}

static int add_ssh_keys(struct store *store, int64_t service_id, struct json_object *o, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *list = json_object_new_array();
        int r;

        json_object_object_add(o, "ssh_keys", list);
        r = store_prepare(store, "SELECT public_key, fingerprint FROM ssh_keys WHERE service_id = ?1 ORDER BY position",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                struct json_object *k = json_object_new_object();
                add_text(k, "public_key", stmt, 0);
                add_text(k, "fingerprint", stmt, 1);
                json_object_array_add(list, k);
        }
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "read ssh keys: %s", sqlite3_errmsg(store_db(store)));
        return 0;
}

/* Steps sql (a query with ?1 = the UUID) to its row: -EINVAL for a
 * malformed UUID, -ENOENT when no service has it. */
static int row_by_uuid(struct store *store, const char *sql, const char *uuid, sqlite3_stmt **ret_stmt,
                       struct error *err)
{
        int r;

        if (!uuid_valid(uuid))
                return error_set(err, -EINVAL, "`%.64s` is not a service UUID (36 lower-case hex digits and dashes)",
                                 uuid);
        r = store_prepare(store, sql, ret_stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(*ret_stmt, 1, uuid, -1, SQLITE_STATIC);
        r = sqlite3_step(*ret_stmt);
        if (r == SQLITE_DONE)
                return error_set(err, -ENOENT, "service %s: not found", uuid);
        if (r != SQLITE_ROW)
                return error_set(err, -EIO, "service %s: %s", uuid, sqlite3_errmsg(store_db(store)));
        return 0;
}

int service_show_json(struct store *store, const char *uuid, struct json_object **ret_service, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *o = NULL;
        struct json_object *plan;
        int64_t id;
        int r;

        r = row_by_uuid(store, "SELECT " SERVICE_COLUMNS " FROM services WHERE uuid = ?1", uuid, &stmt, err);
        if (r < 0)
                return r;
        id = sqlite3_column_int64(stmt, 0);
        o = row_summary(stmt);
        plan = json_object_new_object();
        add_int(plan, "vcpus", stmt, 5);
        add_int(plan, "memory_mib", stmt, 6);
        add_int(plan, "disk_gib", stmt, 7);
        add_int(plan, "port_speed_mbit", stmt, 8);
        add_int(plan, "traffic_gib", stmt, 9);
        json_object_object_add(o, "plan", plan);
        add_text(o, "template", stmt, 10);
        add_text(o, "mac", stmt, 11);
        add_text(o, "suspend_reason", stmt, 13);
        add_int(o, "created_at", stmt, 17);
        add_int(o, "updated_at", stmt, 18);
        json_object_object_add(o, "cdrom_tray_open", json_object_new_boolean(sqlite3_column_int(stmt, 20)));
        add_int(o, "booted_at", stmt, 21);

        r = add_addresses(store, id, o, err);
        if (r < 0)
                return r;
        r = add_ssh_keys(store, id, o, err);
        if (r < 0)
                return r;
        *ret_service = steal_pointer(&o);
        return 0;
}

int service_id_find(struct store *store, const char *uuid, int64_t *ret_id, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = row_by_uuid(store, "SELECT id FROM services WHERE uuid = ?1", uuid, &stmt, err);

        if (r < 0)
                return r;
        *ret_id = sqlite3_column_int64(stmt, 0);
        return 0;
}

void service_port_name(const char *uuid, char buf[SERVICE_PORT_NAME_SIZE])
{
        snprintf(buf, SERVICE_PORT_NAME_SIZE, "vps%.8s%.4s", uuid, uuid + 9);
}
