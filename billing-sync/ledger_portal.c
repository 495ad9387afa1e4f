/* What a provider's portal does beyond money (docs/ledger.md, "HTTP
 * API"): power and reinstall commands, the one-time root password, the
 * traffic a node reported, console and ISO upload tickets for a
 * service's owner, and the drift between a node's inventory and the
 * ledger's records. */
#include "ledger_private.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/ticket.h"
#include "common/util.h"

#define TICKET_LIFETIME 60 /* seconds: a ticket is for a click, not for keeping */

int ledger_ticket_public_pem(struct ledger *ledger, char **ret_pem, struct error *err)
{
        return ed25519_key_public_pem(ledger->ticket_key, ret_pem, err);
}

/* Queues msg (its service set) for the service's node, in one transaction,
 * if the service is active. */
static int queue_for_active(struct ledger *ledger, struct sync_msg *msg, int64_t now, struct error *err)
{
        struct ledger_service s;
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = ledger_service_load(ledger, msg->service, &s, err);
        if (r == 0 && s.lease.state != LEASE_ACTIVE)
                r = error_set(err, -EPERM, "the service is not active");
        if (r == 0)
                r = ledger_queue(ledger, s.node, msg, now, err);
        r = ledger_end(ledger, r, err);
        return r < 0 ? error_prefix(err, "service %.64s: %s", msg->service, sync_kind_name(msg->kind)) : 0;
}

static int set_service(struct sync_msg *msg, const char *uuid, struct error *err)
{
        if (!uuid_valid(uuid))
                return error_set(err, -ENOENT, "service `%.64s`: no such service", uuid);
        memcpy(msg->service, uuid, sizeof(msg->service));
        return 0;
}

int ledger_power(struct ledger *ledger, const char *uuid, const char *action, int64_t now, struct error *err)
{
        static const char *const actions[] = { "start", "stop", "restart", "force-off" };
        struct sync_msg msg = { .kind = SYNC_POWER };
        bool known = false;
        int r;

        for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
                known = known || strcmp(action, actions[i]) == 0;
        if (!known)
                return error_set(err, -EINVAL, "power: the action is start, stop, restart or force-off");
        r = set_service(&msg, uuid, err);
        if (r < 0)
                return r;
        str_copy(msg.action, sizeof(msg.action), action);
        return queue_for_active(ledger, &msg, now, err);
}

int ledger_reinstall(struct ledger *ledger, const char *uuid, const char *template_name, const char *const *ssh_keys,
                     size_t n_ssh_keys, int64_t now, struct error *err)
{
        struct sync_msg msg = { .kind = SYNC_REINSTALL };
        size_t len = strlen(template_name);
        int r = set_service(&msg, uuid, err);

        if (r < 0)
                return r;
        if (len == 0 || len > SYNC_NAME_MAX ||
            strspn(template_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
                return error_set(err, -EINVAL, "template: 1 to %d of [A-Za-z0-9._-]", SYNC_NAME_MAX);
        if (n_ssh_keys > SYNC_SSH_KEYS_MAX)
                return error_set(err, -EINVAL, "reinstall: at most %d SSH keys", SYNC_SSH_KEYS_MAX);
        str_copy(msg.template_name, sizeof(msg.template_name), template_name);
        for (size_t i = 0; r == 0 && i < n_ssh_keys; i++)
                r = sync_msg_add_ssh_key(&msg, ssh_keys[i], err);
        if (r == 0)
                r = queue_for_active(ledger, &msg, now, err);
        sync_msg_clear(&msg);
        return r;
}

static int password_take_locked(struct ledger *ledger, const char *uuid, char **ret_password, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err, "SELECT sealed FROM service_secrets WHERE service_uuid = ?", "t", uuid);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %.64s: no root password to hand out", uuid);
        r = ledger_unseal(ledger, uuid, sqlite3_column_blob(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0),
                          ret_password, err);
        if (r < 0)
                return r;
        /* Once: gone from the store in the transaction that hands it out. */
        r = ledger_exec(ledger, NULL, err, "DELETE FROM service_secrets WHERE service_uuid = ?", "t", uuid);
        if (r < 0) {
                OPENSSL_cleanse(*ret_password, strlen(*ret_password));
                free(*ret_password);
                *ret_password = NULL;
        }
        return r;
}

int ledger_root_password_take(struct ledger *ledger, const char *uuid, char **ret_password, struct error *err)
{
        char *password = NULL;
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = password_take_locked(ledger, uuid, &password, err);
        r = ledger_end(ledger, r, err);
        if (r < 0) {
                if (password) {
                        OPENSSL_cleanse(password, strlen(password));
                        free(password);
                }
                return r;
        }
        *ret_password = password;
        return 0;
}

int ledger_traffic(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct ledger_service s;
        struct json_object *buckets = NULL;
        int r = ledger_service_load(ledger, uuid, &s, err);

        if (r == 0)
                r = ledger_sql(ledger, &stmt, err,
                               "SELECT start, size, in_bytes, in_packets, out_bytes, out_packets FROM usage"
                               " WHERE service_uuid = ? ORDER BY size, start",
                               "t", uuid);
        if (r == 0)
                r = ledger_rows_json(ledger, stmt, &buckets, err);
        if (r < 0)
                return r;
        *ret = json_object_new_object();
        json_object_object_add(*ret, "service", json_object_new_string(s.uuid));
        json_object_object_add(*ret, "buckets", buckets);
        return 0;
}

static int node_console_url(struct ledger *ledger, const char *node, char *out, size_t size)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        out[0] = '\0';
        if (ledger_sql(ledger, &stmt, NULL, "SELECT console_url FROM nodes WHERE id = ?", "t", node) < 0)
                return -EIO;
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
                str_copy(out, size, (const char *)sqlite3_column_text(stmt, 0));
        return 0;
}

/* Signs t (its type's own fields set) for node, valid from now, into
 * *ret: {"ticket", "expires_at", "url"}, the URL the node's console URL +
 * path + the ticket (null when the node has none). */
static int ticket_answer(struct ledger *ledger, struct ticket *t, const char *node, const char *path, int64_t now,
                         struct json_object **ret, struct error *err)
{
        char text[EDGE_TICKET_MAX + 1], base[256], url[EDGE_TICKET_MAX + 300];
        int r;

        t->issued_at = now;
        t->expires_at = now + TICKET_LIFETIME;
        r = ticket_nonce_new(t, err);
        if (r == 0)
                r = ticket_sign(t, ledger->ticket_key, text, sizeof(text), err);
        if (r == 0)
                r = node_console_url(ledger, node, base, sizeof(base));
        if (r < 0)
                return error_set(err, -EIO, "ticket: cannot sign");
        *ret = json_object_new_object();
        json_object_object_add(*ret, "ticket", json_object_new_string(text));
        json_object_object_add(*ret, "expires_at", json_object_new_int64(t->expires_at));
        if (base[0]) {
                snprintf(url, sizeof(url), "%s%s%s", base, path, text);
                json_object_object_add(*ret, "url", json_object_new_string(url));
        } else {
                json_object_object_add(*ret, "url", NULL);
        }
        return 0;
}

int ledger_console_ticket(struct ledger *ledger, const char *uuid, const char *account, const char *kind,
                          int64_t now, struct json_object **ret, struct error *err)
{
        struct ticket t = { .type = TICKET_CONSOLE };
        struct ledger_service s;
        char path[32];
        int r;

        if (strcmp(kind, "vnc") != 0 && strcmp(kind, "serial") != 0)
                return error_set(err, -EINVAL, "console ticket: kind is vnc or serial");
        /* One answer whatever the reason (no such service, another owner,
         * not active): a caller learns nothing of services not its own. */
        if (!uuid_valid(uuid) || ledger_service_load(ledger, uuid, &s, NULL) < 0 || strcmp(s.account, account) != 0 ||
            s.lease.state != LEASE_ACTIVE)
                return error_set(err, -EACCES, "console refused");
        memcpy(t.service, s.uuid, sizeof(t.service));
        str_copy(t.account, sizeof(t.account), s.account);
        t.kind = strcmp(kind, "vnc") == 0 ? CONSOLE_VNC : CONSOLE_SERIAL;
        snprintf(path, sizeof(path), "/%s.html#ticket=", kind);
        r = ticket_answer(ledger, &t, s.node, path, now, ret, err);
        if (r < 0)
                return r;
        json_object_object_add(*ret, "service", json_object_new_string(s.uuid));
        json_object_object_add(*ret, "kind", json_object_new_string(kind));
        return 0;
}

int ledger_iso_upload_ticket(struct ledger *ledger, const char *account, const char *node, int64_t max_bytes,
                             int64_t now, struct json_object **ret, struct error *err)
{
        struct ticket t = { .type = TICKET_ISO_UPLOAD, .max_bytes = (uint64_t)max_bytes };

        if (max_bytes < 1 || max_bytes > LEDGER_ISO_UPLOAD_MAX)
                return error_set(err, -EINVAL, "max_bytes: 1 to %lld", (long long)LEDGER_ISO_UPLOAD_MAX);
        /* Only for an account the node serves now; one answer whatever the
         * reason (no such account or node, no active service there). */
        if (!ledger_account_on_node(ledger, account, node, true) ||
            str_copy(t.account, sizeof(t.account), account) < 0)
                return error_set(err, -EACCES, LEDGER_ISO_UPLOAD_REFUSED);
        /* docs/iso.md: PUT /iso/upload?ticket=T on the node's edge. */
        return ticket_answer(ledger, &t, node, "/iso/upload?ticket=", now, ret, err);
}

static void add_drift(struct json_object *list, const char *service, const char *issue, struct json_object *ledger_side,
                      struct json_object *node_side)
{
        struct json_object *d = json_object_new_object();

        json_object_object_add(d, "service", json_object_new_string(service));
        json_object_object_add(d, "issue", json_object_new_string(issue));
        json_object_object_add(d, "ledger", ledger_side);
        json_object_object_add(d, "node", node_side);
        json_object_array_add(list, d);
}

static struct json_object *side(const char *state, int64_t paid_until)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "paid_until", json_object_new_int64(paid_until));
        return o;
}

/* Whether the node's state of a service agrees with the ledger's. */
static bool states_agree(const char *ledger_state, const char *node_state)
{
        bool node_held = strcmp(node_state, "suspended") == 0 || strcmp(node_state, "removal-queued") == 0;

        if (strcmp(ledger_state, "active") == 0)
                return !node_held && strcmp(node_state, "terminated") != 0;
        if (strcmp(ledger_state, "suspended") == 0)
                return node_held;
        return strcmp(node_state, "terminated") == 0;
}

int ledger_node_drift(struct ledger *ledger, const char *node, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL, *at = NULL;
        struct json_object *out, *list;
        int r = ledger_sql(ledger, &at, err, "SELECT inventory_at FROM nodes WHERE id = ?", "t", node);

        if (r < 0)
                return r;
        if (sqlite3_step(at) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%.64s`: no such node", node);
        list = json_object_new_array();
        out = json_object_new_object();
        json_object_object_add(out, "node", json_object_new_string(node));
        json_object_object_add(out, "inventory_at", sqlite3_column_type(at, 0) == SQLITE_NULL ? NULL :
                               json_object_new_int64(sqlite3_column_int64(at, 0)));
        json_object_object_add(out, "drift", list);
        if (sqlite3_column_type(at, 0) == SQLITE_NULL) {
                *ret = out;
                return 0;
        }
        /* Both sides joined on the service: what the ledger placed there
         * (terminated or not) and what the node holds. */
        r = ledger_sql(ledger, &stmt, err,
                       "SELECT s.uuid, s.state, max(s.paid_until, s.promised_until), NULL, NULL FROM services s"
                       " WHERE s.node_id = ?1 AND s.state != 'terminated'"
                       " AND s.uuid NOT IN (SELECT service_uuid FROM inventory WHERE node_id = ?1)"
                       " UNION ALL SELECT i.service_uuid, s.state, max(s.paid_until, s.promised_until), i.state,"
                       " i.paid_until FROM inventory i LEFT JOIN services s ON s.uuid = i.service_uuid AND s.node_id = ?1"
                       " WHERE i.node_id = ?1 ORDER BY 1",
                       "t", node);
        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                const char *uuid = (const char *)sqlite3_column_text(stmt, 0);
                const char *ls = (const char *)sqlite3_column_text(stmt, 1);
                const char *ns = (const char *)sqlite3_column_text(stmt, 3);
                int64_t lp = sqlite3_column_int64(stmt, 2), np = sqlite3_column_int64(stmt, 4);

                if (!ns)
                        add_drift(list, uuid, "missing-on-node", side(ls, lp), NULL);
                else if (!ls)
                        add_drift(list, uuid, "unknown-to-ledger", NULL, side(ns, np));
                else if (!states_agree(ls, ns))
                        add_drift(list, uuid, "state", side(ls, lp), side(ns, np));
                else if (strcmp(ls, "terminated") != 0 && lp != np)
                        add_drift(list, uuid, "paid-until", side(ls, lp), side(ns, np));
        }
        if (r < 0) {
                json_object_put(out);
                return r;
        }
        *ret = out;
        return 0;
}
