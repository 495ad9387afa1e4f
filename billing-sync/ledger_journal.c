/* The store's side of the sync endpoint (docs/sync-protocol.md): a node's
 * key and sequences, its command journal read back for sending and acked,
 * and its events stored once each and applied: the node-side state of a
 * service, the one-time root password (sealed), traffic buckets, the
 * removal schedule, the inventory and customer ISOs. */
#include "ledger_private.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64url.h"
#include "common/util.h"

int ledger_node_key(struct ledger *ledger, const char *node, uint8_t key[SYNC_KEY_SIZE], struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        const char *text;
        int r = ledger_sql(ledger, &stmt, err, "SELECT sync_key FROM nodes WHERE id = ?", "t", node);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%.64s`: no such node", node);
        text = (const char *)sqlite3_column_text(stmt, 0);
        if (base64url_decode(text, strlen(text), key, SYNC_KEY_SIZE) != SYNC_KEY_SIZE)
                return error_set(err, -EIO, "node `%.64s`: the stored key does not decode", node);
        return 0;
}

int ledger_node_seqs(struct ledger *ledger, const char *node, struct ledger_node_seqs *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT last_command_seq, acked_command_seq, last_event_seq FROM nodes WHERE id = ?", "t",
                           node);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%.64s`: no such node", node);
        ret->last_command_seq = sqlite3_column_int64(stmt, 0);
        ret->acked_command_seq = sqlite3_column_int64(stmt, 1);
        ret->last_event_seq = sqlite3_column_int64(stmt, 2);
        return 0;
}

/* Every command up to seq acked (cumulative), never backwards. */
static int ack_upto(struct ledger *ledger, const char *node, int64_t seq, int64_t now, struct error *err)
{
        int r = ledger_exec(ledger, NULL, err,
                            "UPDATE nodes SET acked_command_seq = ?2 WHERE id = ?1 AND acked_command_seq < ?2", "ti",
                            node, seq);

        if (r == 0)
                r = ledger_exec(ledger, NULL, err,
                                "UPDATE commands SET acked_at = ?3 WHERE node_id = ?1 AND seq <= ?2 AND acked_at IS NULL",
                                "tii", node, seq, now);
        return r;
}

int ledger_node_connected(struct ledger *ledger, const char *node, int64_t applied, int64_t now, struct error *err)
{
        struct ledger_node_seqs seqs;
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = ledger_node_seqs(ledger, node, &seqs, err);
        /* A node that says it applied more than was ever queued for it
         * talks of another ledger's journal (or this one restored from an
         * old backup): nothing of it is believed. */
        if (r == 0 && applied > seqs.last_command_seq)
                r = error_set(err, -ERANGE, "node `%s`: says it applied command %lld, the journal ends at %lld", node,
                              (long long)applied, (long long)seqs.last_command_seq);
        if (r == 0 && applied > 0)
                r = ack_upto(ledger, node, applied, now, err);
        return ledger_end(ledger, r, err);
}

int ledger_command_load(struct ledger *ledger, const char *node, int64_t seq, struct sync_msg *ret,
                        struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err, "SELECT body FROM commands WHERE node_id = ? AND seq = ?", "ti", node,
                           seq);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "node `%s`: no command %lld", node, (long long)seq);
        r = sync_msg_from_body((const char *)sqlite3_column_text(stmt, 0), ret, err);
        return r < 0 ? error_prefix(err, "node `%s`: command %lld", node, (long long)seq) : 0;
}

int ledger_command_ack(struct ledger *ledger, const char *node, const struct sync_msg *ack, int64_t now,
                       struct error *err)
{
        struct ledger_node_seqs seqs;
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = ledger_node_seqs(ledger, node, &seqs, err);
        if (r == 0 && ack->seq > seqs.last_command_seq)
                r = error_set(err, -ERANGE, "command-ack %lld: the journal ends at %lld", (long long)ack->seq,
                              (long long)seqs.last_command_seq);
        if (r == 0)
                r = ack_upto(ledger, node, ack->seq, now, err);
        /* The result of the command named; an ack sent again keeps the first. */
        if (r == 0)
                r = ledger_exec(ledger, NULL, err,
                                "UPDATE commands SET result = ?3, error = nullif(?4, '') WHERE node_id = ?1 AND seq = ?2"
                                " AND result IS NULL",
                                "tit" "t", node, ack->seq, ack->result, ack->error);
        return ledger_end(ledger, r, err);
}

/* Whether service is one the ledger placed on node: a node speaks only
 * for its own services. */
static bool service_on_node(struct ledger *ledger, const char *node, const char *service)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (!service[0] || ledger_sql(ledger, &stmt, NULL, "SELECT 1 FROM services WHERE uuid = ? AND node_id = ?",
                                      "tt", service, node) < 0)
                return false;
        return sqlite3_step(stmt) == SQLITE_ROW;
}

static int apply_result(struct ledger *ledger, const struct sync_msg *e, int64_t now, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_free uint8_t *sealed = NULL;
        size_t len = 0;
        int r;

        if (!e->ok || !e->root_password[0] || (strcmp(e->op, "provision") != 0 && strcmp(e->op, "reinstall") != 0))
                return 0;
        r = ledger_seal(ledger, e->service, e->root_password, &sealed, &len, err);
        if (r == 0)
                r = ledger_sql(ledger, &stmt, err,
                               "INSERT OR REPLACE INTO service_secrets (service_uuid, command_seq, sealed, created_at)"
                               " VALUES (?, ?, ?, ?)",
                               "ti" "ti", e->service, e->command_seq, "", now);
        if (r < 0)
                return r;
        if (sqlite3_bind_blob(stmt, 3, sealed, (int)len, SQLITE_TRANSIENT) != SQLITE_OK ||
            sqlite3_step(stmt) != SQLITE_DONE)
                return ledger_sql_error(ledger, err, "store the sealed password");
        return 0;
}

static int apply_usage(struct ledger *ledger, const struct sync_msg *e, struct error *err)
{
        int r = 0;

        for (size_t i = 0; r == 0 && i < e->n_buckets; i++) {
                const struct sync_bucket *b = &e->buckets[i];

                r = ledger_exec(ledger, NULL, err,
                                "INSERT OR REPLACE INTO usage (service_uuid, size, start, in_bytes, in_packets, out_bytes,"
                                " out_packets) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                "tii" "iiii", e->service, b->size, b->start, b->in_bytes, b->in_packets, b->out_bytes,
                                b->out_packets);
        }
        return r;
}

static int apply_inventory(struct ledger *ledger, const char *node, const struct sync_msg *e, int64_t now,
                           struct error *err)
{
        int r = ledger_exec(ledger, NULL, err, "DELETE FROM inventory WHERE node_id = ?", "t", node);

        for (size_t i = 0; r == 0 && i < e->n_services; i++)
                r = ledger_exec(ledger, NULL, err,
                                "INSERT OR REPLACE INTO inventory (node_id, service_uuid, state, paid_until)"
                                " VALUES (?, ?, ?, ?)",
                                "ttti", node, e->services[i].service, e->services[i].state, e->services[i].paid_until);
        if (r == 0)
                r = ledger_exec(ledger, NULL, err, "UPDATE nodes SET inventory_at = ? WHERE id = ?", "it", now, node);
        return r;
}

/* What an event means for the ledger's records. A kind without a meaning
 * here (one a later codec adds) is stored and acked all the same. */
static int apply_event(struct ledger *ledger, const char *node, const struct sync_msg *e, int64_t now,
                       struct error *err)
{
        bool own = service_on_node(ledger, node, e->service);

        switch (e->kind) {
        case SYNC_STATE:
                return !own ? 0 :
                       ledger_exec(ledger, NULL, err,
                                   "UPDATE services SET node_state = ?, node_state_at = ? WHERE uuid = ?", "tit",
                                   e->state, e->at, e->service);
        case SYNC_RESULT:
                return own ? apply_result(ledger, e, now, err) : 0;
        case SYNC_USAGE:
                return own ? apply_usage(ledger, e, err) : 0;
        case SYNC_REMOVAL_QUEUED:
                return !own ? 0 :
                       ledger_exec(ledger, NULL, err, "UPDATE services SET node_remove_after = ? WHERE uuid = ?",
                                   "it", e->remove_after, e->service);
        case SYNC_INVENTORY:
                return apply_inventory(ledger, node, e, now, err);
        case SYNC_ISO:
                return ledger_iso_event(ledger, node, e, err);
        default:
                return 0;
        }
}

static int store_event(struct ledger *ledger, const char *node, const struct sync_msg *e, int64_t now,
                       struct error *err)
{
        cleanup_free char *body = NULL;
        struct sync_msg copy = *e;
        int r;

        /* The password goes sealed into service_secrets, never into the
         * event's stored form. */
        copy.root_password[0] = '\0';
        r = sync_msg_to_body(&copy, &body, err);
        OPENSSL_cleanse(copy.root_password, sizeof(copy.root_password));
        if (r < 0)
                return r;
        r = ledger_exec(ledger, NULL, err,
                        "INSERT INTO events (node_id, seq, kind, service_uuid, at, body, received_at)"
                        " VALUES (?, ?, ?, nullif(?, ''), ?, ?, ?)",
                        "tit" "tit" "i", node, e->seq, sync_kind_name(e->kind), e->service, e->at, body, now);
        if (r == 0)
                r = ledger_exec(ledger, NULL, err, "UPDATE nodes SET last_event_seq = ? WHERE id = ?", "it", e->seq,
                                node);
        return r;
}

int ledger_event_receive(struct ledger *ledger, const char *node, const struct sync_msg *event, int64_t now,
                         struct error *err)
{
        struct ledger_node_seqs seqs;
        int r = ledger_begin(ledger, err);

        if (r == 0)
                r = ledger_node_seqs(ledger, node, &seqs, err);
        if (r == 0)
                r = sync_seq_check(seqs.last_event_seq, event->seq, err);
        if (r == 0)
                r = store_event(ledger, node, event, now, err);
        if (r == 0)
                r = apply_event(ledger, node, event, now, err);
        /* Stored already (1): nothing to write, the ack goes out again. */
        if (r == 1)
                return ledger_end(ledger, 0, err) < 0 ? -EIO : 1;
        return ledger_end(ledger, r, err);
}
