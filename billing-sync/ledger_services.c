/* Services: order, renewal (single, bulk, and what is due at a tick),
 * plan changes, promise to pay, transfer. The rules are the pure ones of
 * money.h, ledger_lease.h and ipam.h; this file reads and writes the store and
 * journals the commands each change sends to the service's node. */
#include "ledger_private.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/ipam.h"
#include "billing-sync/money.h"
#include "common/json.h"
#include "common/util.h"

#define SETTLE_STEPS_MAX 120 /* renewals at one tick for one service: ten years of months */

static int read_used(struct ledger *ledger, int64_t pool_id, int family, uint8_t (**ret)[16], size_t *ret_n,
                     struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        uint8_t(*used)[16] = NULL;
        size_t n = 0, cap = 0;
        int r = ledger_sql(ledger, &stmt, err, "SELECT address FROM addresses WHERE pool_id = ?", "i", pool_id);

        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                if (array_reserve(&used, &cap, n, sizeof(*used)) < 0)
                        r = error_set(err, -ENOMEM, "out of memory");
                else if (ipam_address_parse(family, (const char *)sqlite3_column_text(stmt, 0), used[n++]) < 0)
                        r = error_set(err, -EIO, "pool %lld: a stored address does not parse", (long long)pool_id);
        }
        if (r < 0) {
                free(used);
                return r;
        }
        *ret = used;
        *ret_n = n;
        return 0;
}

/* The lowest free address of the node's first pool of family that has
 * one; given to service when it is not NULL, only looked for otherwise. */
static int pool_allocate(struct ledger *ledger, const char *node, int family, const char *service,
                         struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT id, network, prefix, gateway FROM pools WHERE node_id = ? AND family = ? ORDER BY id",
                           "ti", node, (int64_t)family);

        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                cleanup_free uint8_t(*used)[16] = NULL;
                char cidr[IPAM_TEXT_SIZE + 8], text[IPAM_TEXT_SIZE];
                struct ipam_pool pool;
                uint8_t address[16];
                size_t n = 0;

                snprintf(cidr, sizeof(cidr), "%s/%d", sqlite3_column_text(stmt, 1), sqlite3_column_int(stmt, 2));
                r = ipam_pool_parse(cidr, (const char *)sqlite3_column_text(stmt, 3), &pool, err);
                if (r == 0)
                        r = read_used(ledger, sqlite3_column_int64(stmt, 0), family, &used, &n, err);
                if (r < 0)
                        return r;
                if (ipam_allocate(&pool, (const uint8_t(*)[16])used, n, address, NULL) < 0)
                        continue;
                if (!service)
                        return 0;
                ipam_address_format(family, address, text);
                return ledger_exec(ledger, NULL, err,
                                   "INSERT INTO addresses (address, pool_id, service_uuid) VALUES (?, ?, ?)", "tit",
                                   text, sqlite3_column_int64(stmt, 0), service);
        }
        return r < 0 ? r : error_set(err, -ENOSPC, "node `%s`: no free IPv%d address", node, family);
}

/* The node with room for plan (billing-sync/ipam.h: placement_choose). */
static int choose_node(struct ledger *ledger, const struct ledger_plan *plan, char node[LEDGER_NAME_MAX + 1],
                       struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_free struct placement_node *nodes = NULL;
        cleanup_free char(*ids)[LEDGER_NAME_MAX + 1] = NULL;
        size_t n = 0, cap = 0, id_cap = 0;
        struct placement_need need = { plan->vcpus, plan->memory_mib, plan->disk_gib, true, false };
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT n.id, n.vcpus - coalesce(sum(p.vcpus), 0), n.memory_mib - coalesce(sum(p.memory_mib), 0),"
                           " n.disk_gib - coalesce(sum(p.disk_gib), 0) FROM nodes n"
                           " LEFT JOIN services s ON s.node_id = n.id AND s.state != 'terminated'"
                           " LEFT JOIN plans p ON p.name = s.plan GROUP BY n.id ORDER BY n.id",
                           "");

        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                if (array_reserve(&nodes, &cap, n, sizeof(*nodes)) < 0 ||
                    array_reserve(&ids, &id_cap, n, sizeof(*ids)) < 0)
                        return error_set(err, -ENOMEM, "out of memory");
                str_copy(ids[n], sizeof(ids[n]), (const char *)sqlite3_column_text(stmt, 0));
                nodes[n] = (struct placement_node){ sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2),
                                                    sqlite3_column_int64(stmt, 3), false, false };
                nodes[n].free_ipv4 = pool_allocate(ledger, ids[n], 4, NULL, NULL) == 0;
                n++;
        }
        if (r < 0)
                return r;
        r = placement_choose(nodes, n, &need, err);
        if (r < 0)
                return r;
        memcpy(node, ids[r], sizeof(ids[r]));
        return 0;
}

static int new_uuid(char out[37], struct error *err)
{
        uint8_t b[16];

        if (RAND_bytes(b, sizeof(b)) != 1)
                return error_set(err, -EIO, "no random bytes for a UUID");
        b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
        b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

static struct json_object *plan_json(const struct ledger_plan *p)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "vcpus", json_object_new_int64(p->vcpus));
        json_object_object_add(o, "memory_mib", json_object_new_int64(p->memory_mib));
        json_object_object_add(o, "disk_gib", json_object_new_int64(p->disk_gib));
        json_object_object_add(o, "port_speed_mbit", json_object_new_int64(p->port_speed_mbit));
        json_object_object_add(o, "traffic_gib", p->traffic_gib ? json_object_new_int64(p->traffic_gib) : NULL);
        return o;
}

/* docs/service.md's input form, from what the store now holds. */
static int queue_provision(struct ledger *ledger, const struct ledger_service *s, const struct ledger_order *order,
                           const struct ledger_plan *plan, int64_t now, struct error *err)
{
        cleanup_json struct json_object *service = NULL, *spec = json_object_new_object();
        struct json_object *addresses, *keys = json_object_new_array(), *list = NULL;
        struct sync_msg msg = { .kind = SYNC_PROVISION };
        int r = ledger_service_json(ledger, s->uuid, &service, err);

        if (r < 0) {
                json_object_put(keys);
                return r;
        }
        json_object_object_get_ex(service, "addresses", &addresses);
        list = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(addresses); i++) {
                struct json_object *a = json_object_array_get_idx(addresses, i), *out = json_object_new_object();

                json_object_object_add(out, "address", json_object_get(json_object_object_get(a, "address")));
                json_object_object_add(out, "prefix", json_object_get(json_object_object_get(a, "prefix")));
                json_object_object_add(out, "gateway", json_object_get(json_object_object_get(a, "gateway")));
                json_object_array_add(list, out);
        }
        for (size_t i = 0; i < order->n_ssh_keys; i++)
                json_object_array_add(keys, json_object_new_string(order->ssh_keys[i]));
        json_object_object_add(spec, "uuid", json_object_new_string(s->uuid));
        json_object_object_add(spec, "account_id", json_object_new_string(s->account));
        json_object_object_add(spec, "hostname", json_object_new_string(order->hostname));
        json_object_object_add(spec, "plan", plan_json(plan));
        json_object_object_add(spec, "template", json_object_new_string(order->template_name));
        json_object_object_add(spec, "addresses", list);
        json_object_object_add(spec, "ssh_keys", keys);
        json_object_object_add(spec, "paid_until", json_object_new_int64(ledger_lease_end(&s->lease)));
        memcpy(msg.service, s->uuid, sizeof(msg.service));
        r = sync_msg_set_json(&msg.spec, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN), err);
        if (r == 0)
                r = ledger_queue(ledger, s->node, &msg, now, err);
        sync_msg_clear(&msg);
        return r;
}

static int check_order(const struct ledger_order *o, struct error *err)
{
        size_t len = strlen(o->hostname);

        if (len == 0 || len > 253 || strspn(o->hostname, "abcdefghijklmnopqrstuvwxyz0123456789.-") != len)
                return error_set(err, -EINVAL, "hostname: 1 to 253 of [a-z0-9.-]");
        len = strlen(o->template_name);
        if (len == 0 || len > LEDGER_NAME_MAX ||
            strspn(o->template_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
                return error_set(err, -EINVAL, "template: 1 to %d of [A-Za-z0-9._-]", LEDGER_NAME_MAX);
        return 0;
}

static int order_locked(struct ledger *ledger, const struct ledger_order *order, int64_t now,
                        struct ledger_service *s, struct error *err)
{
        struct ledger_plan plan;
        int r = ledger_plan_load(ledger, order->plan, &plan, err);

        if (r < 0)
                return r;
        /* No balance, no order: the debit comes first and refuses. */
        r = new_uuid(s->uuid, err);
        if (r == 0)
                r = ledger_wallet_move(ledger, order->account, -plan.price, "order", s->uuid, order->plan, now, err);
        if (r == 0)
                r = choose_node(ledger, &plan, s->node, err);
        if (r < 0)
                return r;
        str_copy(s->account, sizeof(s->account), order->account);
        str_copy(s->plan, sizeof(s->plan), plan.name);
        ledger_lease_start(&s->lease, now, (unsigned)plan.cycle_months, plan.price, order->auto_renew);
        r = ledger_exec(ledger, NULL, err,
                        "INSERT INTO services (uuid, account_id, node_id, plan, hostname, template, state, period_start,"
                        " paid_until, cycle_months, anchor_day, price, auto_renew, created_at, updated_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tttttt" "iiiiiiii", s->uuid, s->account, s->node, s->plan, order->hostname,
                        order->template_name, s->lease.period_start, s->lease.paid_until,
                        (int64_t)s->lease.cycle_months, (int64_t)s->lease.anchor_day, s->lease.price,
                        (int64_t)s->lease.auto_renew, now, now);
        if (r == 0)
                r = pool_allocate(ledger, s->node, 4, s->uuid, err);
        if (r == 0 && pool_allocate(ledger, s->node, 6, NULL, NULL) == 0)
                r = pool_allocate(ledger, s->node, 6, s->uuid, err);
        if (r == 0)
                r = queue_provision(ledger, s, order, &plan, now, err);
        return r;
}

int ledger_order(struct ledger *ledger, const struct ledger_order *order, int64_t now, struct json_object **ret,
                 struct error *err)
{
        struct ledger_service s = { 0 };
        int r = check_order(order, err);

        if (r == 0)
                r = ledger_begin(ledger, err);
        if (r < 0)
                return error_prefix(err, "order");
        r = order_locked(ledger, order, now, &s, err);
        if (r == 0)
                r = ledger_service_json(ledger, s.uuid, ret, err);
        r = ledger_end(ledger, r, err);
        return r < 0 ? error_prefix(err, "order") : 0;
}

/* One cycle paid from the wallet: the lease moves on, the node hears of
 * it, and a suspended service whose lease now reaches past now runs. */
static int renew_one(struct ledger *ledger, struct ledger_service *s, int64_t now, struct json_object *actions,
                     struct error *err)
{
        bool unsuspend;
        int r;

        if (s->lease.state == LEASE_TERMINATED)
                return error_set(err, -EPERM, "service %s: terminated", s->uuid);
        r = ledger_wallet_move(ledger, s->account, -s->lease.price, "renewal", s->uuid, NULL, now, err);
        if (r < 0)
                return r;
        ledger_lease_renew(&s->lease);
        unsuspend = s->lease.state == LEASE_SUSPENDED && ledger_lease_end(&s->lease) > now;
        if (unsuspend)
                s->lease.state = LEASE_ACTIVE;
        r = ledger_service_save(ledger, s, now, err);
        if (r == 0)
                r = ledger_queue_lease(ledger, s, SYNC_RENEW, now, err);
        if (r == 0 && unsuspend)
                r = ledger_queue_lease(ledger, s, SYNC_UNSUSPEND, now, err);
        if (r == 0 && actions) {
                struct json_object *a = json_object_new_object();

                json_object_object_add(a, "service", json_object_new_string(s->uuid));
                json_object_object_add(a, "action", json_object_new_string(unsuspend ? "renew+unsuspend" : "renew"));
                json_object_object_add(a, "paid_until", json_object_new_int64(s->lease.paid_until));
                json_object_object_add(a, "amount", json_object_new_int64(s->lease.price));
                json_object_array_add(actions, a);
        }
        return r;
}

int ledger_renew(struct ledger *ledger, const char *const *uuids, size_t n, int64_t now, struct json_object **ret,
                 struct error *err)
{
        struct json_object *actions;
        int r;

        if (n == 0 || n > LEDGER_BULK_MAX)
                return error_set(err, -EINVAL, "renew: 1 to %d services at once", LEDGER_BULK_MAX);
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < i; k++)
                        if (strcmp(uuids[i], uuids[k]) == 0)
                                return error_set(err, -EINVAL, "renew: service %.64s named twice", uuids[i]);
        r = ledger_begin(ledger, err);
        if (r < 0)
                return r;
        actions = json_object_new_array();
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct ledger_service s;

                r = ledger_service_load(ledger, uuids[i], &s, err);
                if (r == 0)
                        r = renew_one(ledger, &s, now, actions, err);
        }
        /* All or none: one that cannot be paid leaves every one unpaid. */
        r = ledger_end(ledger, r, err);
        if (r < 0) {
                json_object_put(actions);
                return error_prefix(err, "renew");
        }
        *ret = json_object_new_object();
        json_object_object_add(*ret, "actions", actions);
        return 0;
}

static int node_has_room(struct ledger *ledger, const char *node, const struct ledger_plan *old,
                         const struct ledger_plan *new, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT n.vcpus - coalesce(sum(p.vcpus), 0), n.memory_mib - coalesce(sum(p.memory_mib), 0),"
                           " n.disk_gib - coalesce(sum(p.disk_gib), 0) FROM nodes n"
                           " LEFT JOIN services s ON s.node_id = n.id AND s.state != 'terminated'"
                           " LEFT JOIN plans p ON p.name = s.plan WHERE n.id = ? GROUP BY n.id",
                           "t", node);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%s`: no such node", node);
        if (sqlite3_column_int64(stmt, 0) + old->vcpus < new->vcpus ||
            sqlite3_column_int64(stmt, 1) + old->memory_mib < new->memory_mib ||
            sqlite3_column_int64(stmt, 2) + old->disk_gib < new->disk_gib)
                return error_set(err, -ENOSPC, "the service's node has no room for plan `%s`", new->name);
        return 0;
}

static int change_plan_locked(struct ledger *ledger, struct ledger_service *s, const char *plan_name,
                              bool confirm_disk_shrink, int64_t now, int64_t *ret_amount, struct error *err)
{
        struct ledger_plan old, new;
        struct sync_msg msg = { .kind = SYNC_RESIZE };
        cleanup_json struct json_object *plan = NULL;
        int64_t amount;
        int r;

        if ((r = ledger_plan_load(ledger, s->plan, &old, err)) < 0 ||
            (r = ledger_plan_load(ledger, plan_name, &new, err)) < 0)
                return r;
        if (s->lease.state != LEASE_ACTIVE)
                return error_set(err, -EPERM, "the service is not active");
        if (now >= s->lease.paid_until)
                return error_set(err, -EPERM, "the paid cycle has ended: renew first");
        if (strcmp(old.name, new.name) == 0)
                return error_set(err, -EINVAL, "the service has plan `%s` already", new.name);
        if (new.cycle_months != (int64_t)s->lease.cycle_months)
                return error_set(err, -EPERM, "plan `%s` has another billing cycle", new.name);
        if (new.disk_gib < old.disk_gib && !confirm_disk_shrink)
                return error_set(err, -EPERM, "plan `%s` has a smaller disk (%lld GiB, now %lld GiB): the data "
                                 "beyond it is lost; confirm the disk shrink to go on", new.name,
                                 (long long)new.disk_gib, (long long)old.disk_gib);
        r = node_has_room(ledger, s->node, &old, &new, err);
        if (r == 0)
                r = money_prorata(s->lease.price, new.price, s->lease.period_start, s->lease.paid_until, now,
                                  &amount, err);
        if (r == 0 && amount != 0)
                r = ledger_wallet_move(ledger, s->account, -amount, amount > 0 ? "upgrade" : "downgrade", s->uuid,
                                       new.name, now, err);
        if (r < 0)
                return r;
        str_copy(s->plan, sizeof(s->plan), new.name);
        s->lease.price = new.price;
        r = ledger_service_save(ledger, s, now, err);
        if (r < 0)
                return r;
        plan = plan_json(&new);
        memcpy(msg.service, s->uuid, sizeof(msg.service));
        msg.confirm_disk_shrink = new.disk_gib < old.disk_gib;
        r = sync_msg_set_json(&msg.plan, json_object_to_json_string_ext(plan, JSON_C_TO_STRING_PLAIN), err);
        if (r == 0)
                r = ledger_queue(ledger, s->node, &msg, now, err);
        sync_msg_clear(&msg);
        *ret_amount = amount;
        return r;
}

/* Loads the service, runs step on it inside one transaction, and answers
 * with the service as it is then. */
static int with_service(struct ledger *ledger, const char *uuid, int64_t now, struct json_object **ret,
                        struct error *err,
                        int (*step)(struct ledger *, struct ledger_service *, int64_t, const void *, struct error *),
                        const void *arg)
{
        struct ledger_service s;
        int r = ledger_begin(ledger, err);

        if (r < 0)
                return r;
        r = ledger_service_load(ledger, uuid, &s, err);
        if (r == 0)
                r = step(ledger, &s, now, arg, err);
        if (r == 0 && ret)
                r = ledger_service_json(ledger, s.uuid, ret, err);
        r = ledger_end(ledger, r, err);
        return r < 0 ? error_prefix(err, "service %.64s", uuid) : 0;
}

struct change_args {
        const char *plan;
        bool confirm;
        int64_t amount;
};

static int change_step(struct ledger *ledger, struct ledger_service *s, int64_t now, const void *arg,
                       struct error *err)
{
        struct change_args *a = (struct change_args *)arg;

        return change_plan_locked(ledger, s, a->plan, a->confirm, now, &a->amount, err);
}

int ledger_change_plan(struct ledger *ledger, const char *uuid, const char *plan, bool confirm_disk_shrink,
                       int64_t now, struct json_object **ret, struct error *err)
{
        struct change_args args = { plan, confirm_disk_shrink, 0 };
        struct json_object *service = NULL;
        int r = with_service(ledger, uuid, now, &service, err, change_step, &args);

        if (r < 0)
                return r;
        *ret = json_object_new_object();
        json_object_object_add(*ret, "amount", json_object_new_int64(args.amount));
        json_object_object_add(*ret, "service", service);
        return 0;
}

static int promise_step(struct ledger *ledger, struct ledger_service *s, int64_t now, const void *arg,
                        struct error *err)
{
        int r = ledger_lease_promise(&s->lease, now, err);

        (void)arg;
        if (r == 0)
                r = ledger_service_save(ledger, s, now, err);
        /* The node enforces paid_until: it learns of the promise as a renew. */
        return r < 0 ? r : ledger_queue_lease(ledger, s, SYNC_RENEW, now, err);
}

int ledger_promise(struct ledger *ledger, const char *uuid, int64_t now, struct json_object **ret,
                   struct error *err)
{
        return with_service(ledger, uuid, now, ret, err, promise_step, NULL);
}

static int paid_until_step(struct ledger *ledger, struct ledger_service *s, int64_t now, const void *arg,
                           struct error *err)
{
        int64_t until = *(const int64_t *)arg;
        int r;

        if (s->lease.state != LEASE_ACTIVE)
                return error_set(err, -EPERM, "only an active service's lease can be set");
        if (until <= now || until <= s->lease.period_start || until > SYNC_TIME_MAX)
                return error_set(err, -EINVAL, "paid_until must be after now and after the period's start");
        s->lease.paid_until = until;
        s->lease.promised_until = 0;
        r = ledger_service_save(ledger, s, now, err);
        return r < 0 ? r : ledger_queue_lease(ledger, s, SYNC_RENEW, now, err);
}

int ledger_set_paid_until(struct ledger *ledger, const char *uuid, int64_t paid_until, int64_t now,
                          struct json_object **ret, struct error *err)
{
        return with_service(ledger, uuid, now, ret, err, paid_until_step, &paid_until);
}

static int transfer_step(struct ledger *ledger, struct ledger_service *s, int64_t now, const void *arg,
                         struct error *err)
{
        struct sync_msg msg = { .kind = SYNC_TRANSFER };
        const char *account = arg;
        int64_t balance;
        int r;

        if (s->lease.state == LEASE_TERMINATED)
                return error_set(err, -EPERM, "terminated");
        if (strcmp(s->account, account) == 0)
                return error_set(err, -EINVAL, "account `%s` owns it already", account);
        r = ledger_account_balance(ledger, account, &balance, err);
        if (r < 0)
                return r;
        str_copy(s->account, sizeof(s->account), account);
        r = ledger_service_save(ledger, s, now, err);
        memcpy(msg.service, s->uuid, sizeof(msg.service));
        str_copy(msg.account_id, sizeof(msg.account_id), account);
        return r < 0 ? r : ledger_queue(ledger, s->node, &msg, now, err);
}

int ledger_transfer(struct ledger *ledger, const char *uuid, const char *account, int64_t now, struct error *err)
{
        return with_service(ledger, uuid, now, NULL, err, transfer_step, account);
}

static int auto_renew_step(struct ledger *ledger, struct ledger_service *s, int64_t now, const void *arg,
                           struct error *err)
{
        s->lease.auto_renew = *(const bool *)arg;
        return ledger_service_save(ledger, s, now, err);
}

int ledger_set_auto_renew(struct ledger *ledger, const char *uuid, bool on, int64_t now, struct error *err)
{
        return with_service(ledger, uuid, now, NULL, err, auto_renew_step, &on);
}

int ledger_service_show(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err)
{
        return ledger_service_json(ledger, uuid, ret, err);
}

int ledger_service_list(struct ledger *ledger, const char *account, bool all, struct json_object **ret,
                        struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *list;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT uuid FROM services WHERE (?1 IS NULL OR account_id = ?1)"
                           " AND (?2 OR state != 'terminated') ORDER BY created_at, uuid",
                           "ti", account, (int64_t)all);

        if (r < 0)
                return r;
        list = json_object_new_array();
        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                struct json_object *s = NULL;

                r = ledger_service_json(ledger, (const char *)sqlite3_column_text(stmt, 0), &s, err);
                if (r == 0)
                        json_object_array_add(list, s);
        }
        if (r < 0) {
                json_object_put(list);
                return r;
        }
        *ret = list;
        return 0;
}

static void add_action(struct json_object *actions, const char *uuid, const char *what)
{
        struct json_object *a = json_object_new_object();

        json_object_object_add(a, "service", json_object_new_string(uuid));
        json_object_object_add(a, "action", json_object_new_string(what));
        json_object_array_add(actions, a);
}

static int settle_one(struct ledger *ledger, const char *uuid, int64_t now, struct json_object *actions,
                      struct error *err)
{
        struct ledger_service s;
        int r = ledger_service_load(ledger, uuid, &s, err);

        for (int step = 0; r == 0 && step < SETTLE_STEPS_MAX; step++) {
                int64_t balance = 0;

                r = ledger_account_balance(ledger, s.account, &balance, err);
                if (r < 0)
                        break;
                switch (ledger_lease_decide(&s.lease, balance, now, LEASE_RETENTION_DEFAULT)) {
                case LEASE_KEEP:
                        return 0;
                case LEASE_RENEW:
                        r = renew_one(ledger, &s, now, actions, err);
                        break;
                case LEASE_SUSPEND:
                        s.lease.state = LEASE_SUSPENDED;
                        r = ledger_service_save(ledger, &s, now, err);
                        if (r == 0)
                                r = ledger_queue_lease(ledger, &s, SYNC_SUSPEND, now, err);
                        add_action(actions, s.uuid, "suspend");
                        break;
                case LEASE_TERMINATE:
                        s.lease.state = LEASE_TERMINATED;
                        r = ledger_service_save(ledger, &s, now, err);
                        if (r == 0) /* its addresses are free for the next order */
                                r = ledger_exec(ledger, NULL, err, "DELETE FROM addresses WHERE service_uuid = ?", "t",
                                                s.uuid);
                        if (r == 0)
                                r = ledger_queue_lease(ledger, &s, SYNC_TERMINATE, now, err);
                        add_action(actions, s.uuid, "terminate");
                        break;
                }
        }
        return r;
}

int ledger_settle(struct ledger *ledger, const char *account, int64_t now, struct json_object *actions,
                  struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT uuid FROM services WHERE state != 'terminated' AND (?1 IS NULL OR account_id = ?1)"
                           " AND max(paid_until, promised_until) <= ?2 ORDER BY paid_until, uuid",
                           "ti", account, now);
        char (*due)[37] = NULL;
        size_t n = 0, cap = 0;

        /* Collected first: settling writes the rows this query reads. */
        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                if (array_reserve(&due, &cap, n, sizeof(*due)) < 0)
                        r = error_set(err, -ENOMEM, "out of memory");
                else
                        str_copy(due[n++], sizeof(*due), (const char *)sqlite3_column_text(stmt, 0));
        }
        for (size_t i = 0; r == 0 && i < n; i++)
                r = settle_one(ledger, due[i], now, actions, err);
        free(due);
        return r;
}

int ledger_tick(struct ledger *ledger, int64_t now, struct json_object **ret, struct error *err)
{
        struct json_object *actions = json_object_new_array();
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = ledger_settle(ledger, NULL, now, actions, err);
        r = ledger_end(ledger, r, err);
        if (r < 0) {
                json_object_put(actions);
                return error_prefix(err, "tick");
        }
        *ret = json_object_new_object();
        json_object_object_add(*ret, "actions", actions);
        return 0;
}
