/* Accounts and wallets, plans, nodes and their command journals. */
#include "ledger_private.h"

#include <errno.h>
#include <openssl/rand.h>
#include <string.h>

#include "billing-sync/ipam.h"
#include "billing-sync/money.h"
#include "common/base64url.h"
#include "common/util.h"

static bool printable(const char *s, size_t max)
{
        size_t len = strlen(s);

        if (len == 0 || len > max)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] < 0x20 || s[i] > 0x7e)
                        return false;
        return true;
}

static bool node_id_ok(const char *s)
{
        size_t len = strlen(s);

        return len > 0 && len <= LEDGER_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

int ledger_account_create(struct ledger *ledger, const char *id, const char *name, int64_t now, struct error *err)
{
        int r;

        if (!printable(id, LEDGER_ID_MAX))
                return error_set(err, -EINVAL, "account id: 1 to %d printable ASCII characters", LEDGER_ID_MAX);
        r = ledger_exec(ledger, NULL, err, "INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)", "tti", id,
                        name ? name : "", now);
        return r < 0 ? error_prefix(err, "account `%s`", id) : 0;
}

int ledger_top_up(struct ledger *ledger, const char *account, int64_t cents, const char *memo, int64_t now,
                  struct json_object **ret, struct error *err)
{
        struct json_object *actions = json_object_new_array();
        int r;

        if (cents <= 0) {
                json_object_put(actions);
                return error_set(err, -EINVAL, "top-up: the amount must be positive");
        }
        r = ledger_begin(ledger, err);
        if (r == 0)
                r = ledger_wallet_move(ledger, account, cents, "top-up", NULL, memo, now, err);
        /* Funds during retention renew and unsuspend at once. */
        if (r == 0)
                r = ledger_settle(ledger, account, now, actions, err);
        r = ledger_end(ledger, r, err);
        if (r < 0) {
                json_object_put(actions);
                return r;
        }
        *ret = json_object_new_object();
        json_object_object_add(*ret, "actions", actions);
        return 0;
}

int ledger_account_show(struct ledger *ledger, const char *account, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL, *log = NULL;
        cleanup_free struct money_log_entry *entries = NULL;
        size_t n = 0, cap = 0;
        struct json_object *obj, *list;
        int64_t balance;
        int r = ledger_sql(ledger, &stmt, err, "SELECT name, balance FROM accounts WHERE id = ?", "t", account);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "account `%s`: no such account", account);
        balance = sqlite3_column_int64(stmt, 1);
        r = ledger_sql(ledger, &log, err,
                       "SELECT id, at, amount, balance_after, kind, service_uuid, memo FROM credit_log"
                       " WHERE account_id = ? ORDER BY id",
                       "t", account);
        if (r < 0)
                return r;
        obj = json_object_new_object();
        list = json_object_new_array();
        json_object_object_add(obj, "id", json_object_new_string(account));
        json_object_object_add(obj, "name", json_object_new_string((const char *)sqlite3_column_text(stmt, 0)));
        json_object_object_add(obj, "balance", json_object_new_int64(balance));
        json_object_object_add(obj, "log", list);
        while (sqlite3_step(log) == SQLITE_ROW) {
                struct json_object *e = json_object_new_object();

                if (array_reserve(&entries, &cap, n, sizeof(*entries)) < 0) {
                        json_object_put(obj);
                        return error_set(err, -ENOMEM, "out of memory");
                }
                entries[n++] = (struct money_log_entry){ sqlite3_column_int64(log, 2), sqlite3_column_int64(log, 3) };
                json_object_object_add(e, "at", json_object_new_int64(sqlite3_column_int64(log, 1)));
                json_object_object_add(e, "amount", json_object_new_int64(sqlite3_column_int64(log, 2)));
                json_object_object_add(e, "balance_after", json_object_new_int64(sqlite3_column_int64(log, 3)));
                json_object_object_add(e, "kind", json_object_new_string((const char *)sqlite3_column_text(log, 4)));
                json_object_object_add(e, "service", sqlite3_column_type(log, 5) == SQLITE_NULL ? NULL :
                                       json_object_new_string((const char *)sqlite3_column_text(log, 5)));
                json_object_object_add(e, "memo", json_object_new_string((const char *)sqlite3_column_text(log, 6)));
                json_object_array_add(list, e);
        }
        /* The balance is the sum of its log, or the store is damaged. */
        r = money_log_verify(entries, n, balance, err);
        if (r < 0) {
                json_object_put(obj);
                return error_prefix(err, "account `%s`", account);
        }
        *ret = obj;
        return 0;
}

int ledger_plan_create(struct ledger *ledger, const struct ledger_plan *p, struct error *err)
{
        int r;

        if (!node_id_ok(p->name))
                return error_set(err, -EINVAL, "plan name: 1 to %d of [a-z0-9._-]", LEDGER_NAME_MAX);
        if (p->price < 0 || p->price > MONEY_AMOUNT_MAX)
                return error_set(err, -EINVAL, "plan `%s`: price out of range", p->name);
        r = ledger_exec(ledger, NULL, err,
                        "INSERT INTO plans (name, vcpus, memory_mib, disk_gib, port_speed_mbit, traffic_gib,"
                        " cycle_months, price) VALUES (?, ?, ?, ?, ?, nullif(?, 0), ?, ?)",
                        "tiiii" "iii", p->name, p->vcpus, p->memory_mib, p->disk_gib, p->port_speed_mbit,
                        p->traffic_gib, p->cycle_months, p->price);
        if (r == -EIO && strstr(err->msg, "CHECK"))
                r = error_set(err, -EINVAL, "a value is out of range (vcpus 1-64, memory 128-1048576 MiB, "
                              "disk 1-16384 GiB, port speed 1-100000 Mbit/s, cycle 1-36 months)");
        return r < 0 ? error_prefix(err, "plan `%s`", p->name) : 0;
}

/* Rows of a query as JSON objects keyed by column name. */
int ledger_rows_json(struct ledger *ledger, sqlite3_stmt *stmt, struct json_object **ret, struct error *err)
{
        struct json_object *list = json_object_new_array();
        int r;

        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                struct json_object *row = json_object_new_object();

                for (int i = 0; i < sqlite3_column_count(stmt); i++) {
                        struct json_object *v = NULL;

                        if (sqlite3_column_type(stmt, i) == SQLITE_INTEGER)
                                v = json_object_new_int64(sqlite3_column_int64(stmt, i));
                        else if (sqlite3_column_type(stmt, i) != SQLITE_NULL)
                                v = json_object_new_string((const char *)sqlite3_column_text(stmt, i));
                        json_object_object_add(row, sqlite3_column_name(stmt, i), v);
                }
                json_object_array_add(list, row);
        }
        if (r != SQLITE_DONE) {
                json_object_put(list);
                return ledger_sql_error(ledger, err, "read");
        }
        *ret = list;
        return 0;
}

void ledger_rows_parse_column(struct json_object *rows, const char *column)
{
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
                struct json_object *row = json_object_array_get_idx(rows, i), *text = NULL;

                if (json_object_object_get_ex(row, column, &text) && json_object_is_type(text, json_type_string))
                        json_object_object_add(row, column, json_tokener_parse(json_object_get_string(text)));
        }
}

int ledger_plan_list(struct ledger *ledger, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT name, vcpus, memory_mib, disk_gib, port_speed_mbit, traffic_gib, cycle_months, price"
                           " FROM plans ORDER BY name",
                           "");

        return r < 0 ? r : ledger_rows_json(ledger, stmt, ret, err);
}

static int add_pool(struct ledger *ledger, const char *node, const char *spec, struct error *err)
{
        char cidr[IPAM_TEXT_SIZE + 8], network[IPAM_TEXT_SIZE + 4], gateway[IPAM_TEXT_SIZE];
        const char *comma = strchr(spec, ',');
        struct ipam_pool pool;
        int r;

        if (!comma || (size_t)(comma - spec) >= sizeof(cidr) || str_copy(gateway, sizeof(gateway), comma + 1) < 0)
                return error_set(err, -EINVAL, "pool `%.80s`: not CIDR,GATEWAY", spec);
        memcpy(cidr, spec, (size_t)(comma - spec));
        cidr[comma - spec] = '\0';
        r = ipam_pool_parse(cidr, gateway, &pool, err);
        if (r < 0)
                return r;
        ipam_address_format(pool.family, pool.network, network);
        ipam_address_format(pool.family, pool.gateway, gateway);
        r = ledger_exec(ledger, NULL, err,
                        "INSERT INTO pools (node_id, family, network, prefix, gateway) VALUES (?, ?, ?, ?, ?)",
                        "titit", node, (int64_t)pool.family, network, (int64_t)pool.prefix, gateway);
        return r == -EEXIST ? error_set(err, r, "pool %s: already added", cidr) : r;
}

/* https://HOST[:PORT], no path: the pages' paths are added to it. */
static bool console_url_ok(const char *url)
{
        size_t len = strlen(url);

        return len > 8 && len <= 200 && strncmp(url, "https://", 8) == 0 && !strchr(url + 8, '/') &&
               strspn(url + 8, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == len - 8;
}

int ledger_node_add(struct ledger *ledger, const struct ledger_node *node, int64_t now, struct json_object **ret,
                    struct error *err)
{
        uint8_t key[SYNC_KEY_SIZE];
        char key_text[BASE64URL_ENCODED_LEN(SYNC_KEY_SIZE) + 1];
        int r;

        if (!node_id_ok(node->id))
                return error_set(err, -EINVAL, "node id: 1 to %d of [a-z0-9._-]", LEDGER_NAME_MAX);
        if (node->vcpus <= 0 || node->memory_mib <= 0 || node->disk_gib <= 0)
                return error_set(err, -EINVAL, "node `%s`: capacity must be positive", node->id);
        if (node->console_url && !console_url_ok(node->console_url))
                return error_set(err, -EINVAL, "node `%s`: console URL: https://HOST[:PORT], no path", node->id);
        if (RAND_bytes(key, sizeof(key)) != 1)
                return error_set(err, -EIO, "no random bytes for a key");
        base64url_encode(key, sizeof(key), key_text, sizeof(key_text));
        r = ledger_begin(ledger, err);
        if (r == 0)
                r = ledger_exec(ledger, NULL, err,
                                "INSERT INTO nodes (id, sync_key, vcpus, memory_mib, disk_gib, created_at, console_url)"
                                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                                "ttiiii" "t", node->id, key_text, node->vcpus, node->memory_mib, node->disk_gib, now,
                                node->console_url);
        for (size_t i = 0; r == 0 && i < node->n_pools; i++)
                r = add_pool(ledger, node->id, node->pools[i], err);
        r = ledger_end(ledger, r, err);
        if (r < 0)
                return error_prefix(err, "node `%s`", node->id);
        *ret = json_object_new_object();
        json_object_object_add(*ret, "id", json_object_new_string(node->id));
        json_object_object_add(*ret, "sync_key", json_object_new_string(key_text));
        return 0;
}

int ledger_node_list(struct ledger *ledger, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT n.id, n.vcpus, n.memory_mib, n.disk_gib,"
                           " coalesce(sum(p.vcpus), 0) AS used_vcpus, coalesce(sum(p.memory_mib), 0) AS used_memory_mib,"
                           " coalesce(sum(p.disk_gib), 0) AS used_disk_gib, count(s.uuid) AS services,"
                           " n.last_command_seq, n.acked_command_seq, n.last_event_seq, n.console_url,"
                           " CASE WHEN n.policy_at IS NULL THEN NULL ELSE json_object("
                           "  'grace_seconds', n.policy_grace_seconds, 'retention_seconds', n.policy_retention_seconds,"
                           "  'autonomous_removal', json(CASE n.policy_autonomous_removal WHEN 1 THEN 'true' ELSE 'false' END),"
                           "  'iso_quota_bytes', n.policy_iso_quota_bytes, 'at', n.policy_at) END AS policy"
                           " FROM nodes n LEFT JOIN services s ON s.node_id = n.id AND s.state != 'terminated'"
                           " LEFT JOIN plans p ON p.name = s.plan GROUP BY n.id ORDER BY n.id",
                           "");

        if (r == 0)
                r = ledger_rows_json(ledger, stmt, ret, err);
        if (r == 0)
                ledger_rows_parse_column(*ret, "policy");
        return r;
}

static int policy_locked(struct ledger *ledger, const char *node, const struct ledger_policy *p, int64_t now,
                         struct error *err)
{
        struct sync_msg msg = { .kind = SYNC_SET_POLICY, .grace_seconds = p->grace_seconds,
                                .retention_seconds = p->retention_seconds,
                                .autonomous_removal = p->autonomous_removal, .iso_quota_bytes = p->iso_quota_bytes };
        int changes = 0;
        /* A quota not given is unchanged on the node: the one kept stays. */
        int r = ledger_exec(ledger, &changes, err,
                            "UPDATE nodes SET policy_grace_seconds = ?2, policy_retention_seconds = ?3,"
                            " policy_autonomous_removal = ?4, policy_iso_quota_bytes = coalesce(nullif(?5, 0),"
                            " policy_iso_quota_bytes), policy_at = ?6 WHERE id = ?1",
                            "tii" "iii", node, p->grace_seconds, p->retention_seconds, (int64_t)p->autonomous_removal,
                            p->iso_quota_bytes, now);

        if (r == 0 && changes == 0)
                r = error_set(err, -ENOENT, "node `%.64s`: no such node", node);
        return r < 0 ? r : ledger_queue(ledger, node, &msg, now, err);
}

int ledger_node_policy(struct ledger *ledger, const char *node, const struct ledger_policy *p, int64_t now,
                       struct error *err)
{
        int r;

        if (p->grace_seconds < 0 || p->grace_seconds > SYNC_POLICY_SECONDS_MAX || p->retention_seconds < 0 ||
            p->retention_seconds > SYNC_POLICY_SECONDS_MAX)
                return error_set(err, -EINVAL, "policy: grace and retention are 0 to %d seconds",
                                 SYNC_POLICY_SECONDS_MAX);
        if (p->iso_quota_bytes < 0 || p->iso_quota_bytes > SYNC_INT_MAX)
                return error_set(err, -EINVAL, "policy: the ISO quota is 1 to %lld bytes", (long long)SYNC_INT_MAX);
        r = ledger_begin(ledger, err);
        if (r == 0)
                r = policy_locked(ledger, node, p, now, err);
        return ledger_end(ledger, r, err);
}

int ledger_node_commands(struct ledger *ledger, const char *node, int64_t after, struct json_object **ret,
                         struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT seq, kind, service_uuid AS service, body, created_at, acked_at, result, error FROM commands"
                           " WHERE node_id = ? AND seq > ? ORDER BY seq",
                           "ti", node, after);

        return r < 0 ? r : ledger_rows_json(ledger, stmt, ret, err);
}
