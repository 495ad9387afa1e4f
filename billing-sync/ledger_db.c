/* The ledger's database plumbing: opening, transactions, statements, and
 * the few writes every operation shares (a wallet movement, a journaled
 * command, a service's lease). */
#include "ledger_private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/money.h"
#include "common/util.h"

int ledger_open(const char *path, struct ledger **ret_ledger, struct error *err)
{
        struct ledger *ledger = calloc(1, sizeof(*ledger));
        int r;

        if (!ledger)
                return error_set(err, -ENOMEM, "out of memory");
        r = store_open_with(path, ledger_migrations, ledger_migrations_count, &ledger->store, err);
        if (r == 0)
                r = ledger_keys_open(ledger, path, err);
        if (r < 0) {
                ledger_close(ledger);
                return r;
        }
        *ret_ledger = ledger;
        return 0;
}

struct ledger *ledger_close(struct ledger *ledger)
{
        if (ledger) {
                ledger_keys_close(ledger);
                store_close(ledger->store);
                free(ledger);
        }
        return NULL;
}

int ledger_sql_error(struct ledger *ledger, struct error *err, const char *what)
{
        return error_set(err, -EIO, "%s: %s", what, sqlite3_errmsg(store_db(ledger->store)));
}

static int bind_all(sqlite3_stmt *stmt, const char *types, va_list ap)
{
        for (int i = 0; types[i]; i++) {
                int r;

                if (types[i] == 'i') {
                        r = sqlite3_bind_int64(stmt, i + 1, va_arg(ap, int64_t));
                } else {
                        const char *s = va_arg(ap, const char *);
                        r = s ? sqlite3_bind_text(stmt, i + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(stmt, i + 1);
                }
                if (r != SQLITE_OK)
                        return -EIO;
        }
        return 0;
}

int ledger_sql(struct ledger *ledger, sqlite3_stmt **ret_stmt, struct error *err, const char *sql,
               const char *types, ...)
{
        sqlite3_stmt *stmt = NULL;
        va_list ap;
        int r = store_prepare(ledger->store, sql, &stmt, err);

        if (r < 0)
                return r;
        va_start(ap, types);
        r = bind_all(stmt, types, ap);
        va_end(ap);
        if (r < 0) {
                sqlite3_finalize(stmt);
                return ledger_sql_error(ledger, err, "bind");
        }
        *ret_stmt = stmt;
        return 0;
}

int ledger_exec(struct ledger *ledger, int *ret_changes, struct error *err, const char *sql, const char *types, ...)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        va_list ap;
        int r = store_prepare(ledger->store, sql, &stmt, err);

        if (r < 0)
                return r;
        va_start(ap, types);
        r = bind_all(stmt, types, ap);
        va_end(ap);
        if (r < 0)
                return ledger_sql_error(ledger, err, "bind");
        r = sqlite3_step(stmt);
        if (r == SQLITE_CONSTRAINT_PRIMARYKEY || r == SQLITE_CONSTRAINT_UNIQUE)
                return error_set(err, -EEXIST, "already exists");
        if (r != SQLITE_DONE)
                return ledger_sql_error(ledger, err, "write");
        if (ret_changes)
                *ret_changes = sqlite3_changes(store_db(ledger->store));
        return 0;
}

int ledger_begin(struct ledger *ledger, struct error *err)
{
        if (sqlite3_exec(store_db(ledger->store), "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
                return ledger_sql_error(ledger, err, "begin");
        return 0;
}

int ledger_end(struct ledger *ledger, int r, struct error *err)
{
        sqlite3 *db = store_db(ledger->store);

        if (r >= 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                r = ledger_sql_error(ledger, err, "commit");
        if (r < 0)
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

int ledger_account_balance(struct ledger *ledger, const char *account, int64_t *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err, "SELECT balance FROM accounts WHERE id = ?", "t", account);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "account `%s`: no such account", account);
        *ret = sqlite3_column_int64(stmt, 0);
        return 0;
}

int ledger_wallet_move(struct ledger *ledger, const char *account, int64_t amount, const char *kind,
                       const char *service, const char *memo, int64_t now, struct error *err)
{
        int64_t balance, after;
        int r = ledger_account_balance(ledger, account, &balance, err);

        if (r < 0)
                return r;
        if (amount == 0) /* a free plan moves no money and logs nothing */
                return 0;
        r = money_wallet_apply(balance, amount, &after, err);
        if (r < 0)
                return error_prefix(err, "account `%s`", account);
        r = ledger_exec(ledger, NULL, err, "UPDATE accounts SET balance = ? WHERE id = ?", "it", after, account);
        if (r == 0)
                r = ledger_exec(ledger, NULL, err,
                                "INSERT INTO credit_log (account_id, at, amount, balance_after, kind, service_uuid, memo) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                "tiiitt" "t", account, now, amount, after, kind, service, memo ? memo : "");
        return r;
}

int ledger_queue(struct ledger *ledger, const char *node, struct sync_msg *msg, int64_t now, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_free char *body = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "UPDATE nodes SET last_command_seq = last_command_seq + 1 WHERE id = ? "
                           "RETURNING last_command_seq",
                           "t", node);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%s`: no such node", node);
        msg->seq = sqlite3_column_int64(stmt, 0);
        while (sqlite3_step(stmt) == SQLITE_ROW)
                ;
        r = sync_msg_to_body(msg, &body, err);
        if (r < 0)
                return error_prefix(err, "node `%s`: command", node);
        return ledger_exec(ledger, NULL, err,
                           "INSERT INTO commands (node_id, seq, kind, service_uuid, body, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           "titt" "ti", node, msg->seq, sync_kind_name(msg->kind), msg->service[0] ? msg->service : NULL,
                           body, now);
}

int ledger_queue_lease(struct ledger *ledger, const struct ledger_service *s, enum sync_kind kind, int64_t now,
                       struct error *err)
{
        struct sync_msg msg = { .kind = kind };
        int r;

        memcpy(msg.service, s->uuid, sizeof(msg.service));
        if (kind == SYNC_RENEW)
                msg.paid_until = ledger_lease_end(&s->lease);
        if (kind == SYNC_SUSPEND)
                str_copy(msg.reason, sizeof(msg.reason), "unpaid");
        r = ledger_queue(ledger, s->node, &msg, now, err);
        sync_msg_clear(&msg);
        return r;
}

static const char *const state_names[] = { [LEASE_ACTIVE] = "active", [LEASE_SUSPENDED] = "suspended",
                                           [LEASE_TERMINATED] = "terminated" };

int ledger_service_load(struct ledger *ledger, const char *uuid, struct ledger_service *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct ledger_service s = { 0 };
        const char *state;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT uuid, account_id, node_id, plan, state, period_start, paid_until, promised_until,"
                           " cycle_months, anchor_day, price, auto_renew FROM services WHERE uuid = ?",
                           "t", uuid);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service `%.64s`: no such service", uuid);
        str_copy(s.uuid, sizeof(s.uuid), (const char *)sqlite3_column_text(stmt, 0));
        str_copy(s.account, sizeof(s.account), (const char *)sqlite3_column_text(stmt, 1));
        str_copy(s.node, sizeof(s.node), (const char *)sqlite3_column_text(stmt, 2));
        str_copy(s.plan, sizeof(s.plan), (const char *)sqlite3_column_text(stmt, 3));
        state = (const char *)sqlite3_column_text(stmt, 4);
        for (unsigned i = 0; i < ARRAY_SIZE(state_names); i++)
                if (strcmp(state, state_names[i]) == 0)
                        s.lease.state = (enum lease_state)i;
        s.lease.period_start = sqlite3_column_int64(stmt, 5);
        s.lease.paid_until = sqlite3_column_int64(stmt, 6);
        s.lease.promised_until = sqlite3_column_int64(stmt, 7);
        s.lease.cycle_months = (unsigned)sqlite3_column_int(stmt, 8);
        s.lease.anchor_day = (unsigned)sqlite3_column_int(stmt, 9);
        s.lease.price = sqlite3_column_int64(stmt, 10);
        s.lease.auto_renew = sqlite3_column_int(stmt, 11) != 0;
        *ret = s;
        return 0;
}

int ledger_service_save(struct ledger *ledger, const struct ledger_service *s, int64_t now, struct error *err)
{
        const struct lease *l = &s->lease;

        return ledger_exec(ledger, NULL, err,
                           "UPDATE services SET account_id = ?, plan = ?, state = ?, period_start = ?, paid_until = ?,"
                           " promised_until = ?, price = ?, auto_renew = ?, updated_at = ? WHERE uuid = ?",
                           "ttti" "iiiii" "t", s->account, s->plan, state_names[l->state], l->period_start,
                           l->paid_until, l->promised_until, l->price, (int64_t)l->auto_renew, now, s->uuid);
}

static struct json_object *column_json(sqlite3_stmt *stmt, int i)
{
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER: return json_object_new_int64(sqlite3_column_int64(stmt, i));
        case SQLITE_NULL: return NULL;
        default: return json_object_new_string((const char *)sqlite3_column_text(stmt, i));
        }
}

int ledger_service_json(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL, *addresses = NULL;
        struct json_object *obj, *list;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT uuid, account_id, node_id AS node, plan, hostname, template, state, period_start,"
                           " paid_until, promised_until, price, auto_renew, created_at, node_state, node_remove_after"
                           " FROM services WHERE uuid = ?",
                           "t", uuid);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service `%.64s`: no such service", uuid);
        obj = json_object_new_object();
        for (int i = 0; i < sqlite3_column_count(stmt); i++) {
                const char *name = sqlite3_column_name(stmt, i);

                if (strcmp(name, "auto_renew") == 0)
                        json_object_object_add(obj, name, json_object_new_boolean(sqlite3_column_int(stmt, i)));
                else
                        json_object_object_add(obj, name, column_json(stmt, i));
        }
        r = ledger_sql(ledger, &addresses, err,
                       "SELECT a.address, p.family, p.prefix, p.gateway FROM addresses a JOIN pools p ON p.id = a.pool_id"
                       " WHERE a.service_uuid = ? ORDER BY p.family, a.address",
                       "t", uuid);
        list = json_object_new_array();
        json_object_object_add(obj, "addresses", list);
        while (r == 0 && sqlite3_step(addresses) == SQLITE_ROW) {
                struct json_object *a = json_object_new_object();

                json_object_object_add(a, "family", column_json(addresses, 1));
                json_object_object_add(a, "address", column_json(addresses, 0));
                json_object_object_add(a, "prefix", column_json(addresses, 2));
                json_object_object_add(a, "gateway", column_json(addresses, 3));
                json_object_array_add(list, a);
        }
        if (r < 0) {
                json_object_put(obj);
                return r;
        }
        *ret = obj;
        return 0;
}

int ledger_plan_load(struct ledger *ledger, const char *name, struct ledger_plan *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct ledger_plan p = { 0 };
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT vcpus, memory_mib, disk_gib, port_speed_mbit, coalesce(traffic_gib, 0), cycle_months,"
                           " price FROM plans WHERE name = ?",
                           "t", name);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "plan `%.64s`: no such plan", name);
        if (str_copy(p.name, sizeof(p.name), name) < 0)
                return error_set(err, -EINVAL, "plan name too long");
        p.vcpus = sqlite3_column_int64(stmt, 0);
        p.memory_mib = sqlite3_column_int64(stmt, 1);
        p.disk_gib = sqlite3_column_int64(stmt, 2);
        p.port_speed_mbit = sqlite3_column_int64(stmt, 3);
        p.traffic_gib = sqlite3_column_int64(stmt, 4);
        p.cycle_months = sqlite3_column_int64(stmt, 5);
        p.price = sqlite3_column_int64(stmt, 6);
        *ret = p;
        return 0;
}
