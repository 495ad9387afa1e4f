/* Customer ISOs at the ledger (docs/iso.md, docs/ledger.md): the records
 * a node's iso events keep, the lists, and the commands that act on an
 * ISO: mount, eject and delete for its owner, approve and reject for the
 * provider. The node is the truth of an ISO's state: the ledger records
 * what the node reports and queues what it is asked for, each command
 * for the ISO's own node. */
#include "ledger_private.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"

struct iso_record {
        char node[LEDGER_NAME_MAX + 1];
        char account[LEDGER_ID_MAX + 1];
        char state[16];
        bool mounted; /* in a service that is not terminated */
};

/* What an owner's request may name: the same refusal for an ISO or a
 * service that does not exist, is another account's, or is gone. */
struct iso_request {
        const char *iso, *account, *service, *reason;
};

bool ledger_account_on_node(struct ledger *ledger, const char *account, const char *node, bool active_only)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (ledger_sql(ledger, &stmt, NULL,
                       "SELECT 1 FROM services WHERE account_id = ? AND node_id = ? AND (NOT ? OR state = 'active')",
                       "tti", account, node, (int64_t)active_only) < 0)
                return false;
        return sqlite3_step(stmt) == SQLITE_ROW;
}

static int iso_load(struct ledger *ledger, const char *id, struct iso_record *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = ledger_sql(ledger, &stmt, err,
                           "SELECT node_id, account_id, state, EXISTS (SELECT 1 FROM iso_mounts m JOIN services s"
                           " ON s.uuid = m.service_uuid WHERE m.iso_id = isos.id AND s.state != 'terminated')"
                           " FROM isos WHERE id = ?",
                           "t", id);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "iso `%.64s`: no such ISO", id);
        str_copy(ret->node, sizeof(ret->node), (const char *)sqlite3_column_text(stmt, 0));
        str_copy(ret->account, sizeof(ret->account), (const char *)sqlite3_column_text(stmt, 1));
        str_copy(ret->state, sizeof(ret->state), (const char *)sqlite3_column_text(stmt, 2));
        ret->mounted = sqlite3_column_int(stmt, 3) != 0;
        return 0;
}

/* The service is on node and account's. */
static bool service_of(struct ledger *ledger, const char *uuid, const char *node, const char *account)
{
        struct ledger_service s;

        return uuid[0] && ledger_service_load(ledger, uuid, &s, NULL) == 0 && strcmp(s.node, node) == 0 &&
               strcmp(s.account, account) == 0;
}

static int record_upload(struct ledger *ledger, const char *node, const struct sync_msg *e, struct error *err)
{
        if (!ledger_account_on_node(ledger, e->account_id, node, false))
                return 0;
        return ledger_exec(ledger, NULL, err,
                           "INSERT INTO isos (id, node_id, account_id, label, size, sha256, state, uploaded_at,"
                           " updated_at) VALUES (?, ?, ?, ?, nullif(?, 0), nullif(?, ''), 'pending', ?, ?)",
                           "tttt" "itii", e->iso, node, e->account_id, e->label, e->size, e->sha256, e->at, e->at);
}

int ledger_iso_event(struct ledger *ledger, const char *node, const struct sync_msg *e, struct error *err)
{
        static const char *const final[] = { "approved", "rejected", "deleted" };
        struct iso_record rec;
        int r = iso_load(ledger, e->iso, &rec, err);

        if (r == -ENOENT)
                return strcmp(e->state, "uploaded") == 0 ? record_upload(ledger, node, e, err) : 0;
        if (r < 0)
                return r;
        /* A node speaks for its own ISOs, of the account that uploaded them. */
        if (strcmp(rec.node, node) != 0 || strcmp(rec.account, e->account_id) != 0)
                return 0;
        if (strcmp(e->state, "mounted") == 0)
                return !service_of(ledger, e->service, node, rec.account) ? 0 :
                       ledger_exec(ledger, NULL, err,
                                   "INSERT OR REPLACE INTO iso_mounts (service_uuid, iso_id, at) VALUES (?, ?, ?)",
                                   "tti", e->service, e->iso, e->at);
        if (strcmp(e->state, "ejected") == 0)
                return ledger_exec(ledger, NULL, err, "DELETE FROM iso_mounts WHERE service_uuid = ? AND iso_id = ?",
                                   "tt", e->service, e->iso);
        for (size_t i = 0; i < ARRAY_SIZE(final); i++) {
                if (strcmp(e->state, final[i]) != 0)
                        continue;
                r = ledger_exec(ledger, NULL, err, "UPDATE isos SET state = ?, updated_at = ? WHERE id = ?", "tit",
                                e->state, e->at, e->iso);
                /* Only an approved ISO stays in a drive. */
                if (r == 0 && i > 0)
                        r = ledger_exec(ledger, NULL, err, "DELETE FROM iso_mounts WHERE iso_id = ?", "t", e->iso);
                return r;
        }
        return 0; /* uploaded again: the first report stands */
}

int ledger_iso_list(struct ledger *ledger, const char *account, bool admin, struct json_object **ret,
                    struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int64_t balance;
        int r = account ? ledger_account_balance(ledger, account, &balance, err) : 0;

        /* The customer's view names no node: where an ISO lives is the
         * provider's business. */
        if (r == 0)
                r = ledger_sql(ledger, &stmt, err,
                               admin ? "SELECT i.id, i.node_id AS node, i.account_id, i.label, i.size, i.sha256, i.state,"
                                       " (SELECT json_group_array(m.service_uuid) FROM iso_mounts m JOIN services s"
                                       " ON s.uuid = m.service_uuid WHERE m.iso_id = i.id AND s.state != 'terminated')"
                                       " AS mounted_in, i.uploaded_at, i.updated_at FROM isos i"
                                       " WHERE (?1 IS NULL OR i.account_id = ?1) ORDER BY i.uploaded_at, i.id" :
                                       "SELECT i.id, i.label, i.size, i.sha256, i.state,"
                                       " (SELECT json_group_array(m.service_uuid) FROM iso_mounts m JOIN services s"
                                       " ON s.uuid = m.service_uuid WHERE m.iso_id = i.id AND s.state != 'terminated')"
                                       " AS mounted_in FROM isos i WHERE i.account_id = ?1 AND i.state != 'deleted'"
                                       " ORDER BY i.uploaded_at, i.id",
                               "t", account);
        if (r == 0)
                r = ledger_rows_json(ledger, stmt, ret, err);
        if (r == 0)
                ledger_rows_parse_column(*ret, "mounted_in");
        return r;
}

/* The ISO, when account owns it and it still exists on its node. */
static int owned_iso(struct ledger *ledger, const struct iso_request *q, struct iso_record *rec, struct error *err)
{
        if (iso_load(ledger, q->iso, rec, NULL) < 0 || strcmp(rec->account, q->account) != 0 ||
            strcmp(rec->state, "rejected") == 0 || strcmp(rec->state, "deleted") == 0)
                return error_set(err, -EACCES, LEDGER_ISO_REFUSED);
        return 0;
}

/* The service, when account owns it and it is active. */
static int owned_service(struct ledger *ledger, const struct iso_request *q, struct ledger_service *s,
                         struct error *err)
{
        if (!uuid_valid(q->service) || ledger_service_load(ledger, q->service, s, NULL) < 0 ||
            strcmp(s->account, q->account) != 0 || s->lease.state != LEASE_ACTIVE)
                return error_set(err, -EACCES, LEDGER_ISO_REFUSED);
        return 0;
}

static int check_mount(struct ledger *ledger, const struct iso_request *q, struct sync_msg *msg, char *node,
                       struct error *err)
{
        struct iso_record rec;
        struct ledger_service s;
        int r = owned_iso(ledger, q, &rec, err);

        if (r == 0)
                r = owned_service(ledger, q, &s, err);
        if (r == 0 && strcmp(s.node, rec.node) != 0)
                r = error_set(err, -EACCES, LEDGER_ISO_REFUSED);
        if (r == 0 && strcmp(rec.state, "approved") != 0)
                r = error_set(err, -EPERM, "the ISO is not approved yet");
        if (r < 0)
                return r;
        memcpy(msg->service, s.uuid, sizeof(msg->service));
        str_copy(node, LEDGER_NAME_MAX + 1, rec.node);
        return 0;
}

static int check_eject(struct ledger *ledger, const struct iso_request *q, struct sync_msg *msg, char *node,
                       struct error *err)
{
        struct ledger_service s;
        int r = owned_service(ledger, q, &s, err);

        if (r < 0)
                return r;
        memcpy(msg->service, s.uuid, sizeof(msg->service));
        str_copy(node, LEDGER_NAME_MAX + 1, s.node);
        return 0;
}

static int check_delete(struct ledger *ledger, const struct iso_request *q, struct sync_msg *msg, char *node,
                        struct error *err)
{
        struct iso_record rec;
        int r = owned_iso(ledger, q, &rec, err);

        (void)msg; /* iso-delete names the ISO only */
        if (r == 0 && rec.mounted)
                r = error_set(err, -EPERM, "the ISO is mounted: eject it first");
        if (r < 0)
                return r;
        str_copy(node, LEDGER_NAME_MAX + 1, rec.node);
        return 0;
}

/* The provider's decisions: the ISO named, whoever owns it. */
static int check_decision(struct ledger *ledger, const struct iso_request *q, struct sync_msg *msg, char *node,
                          struct error *err)
{
        struct iso_record rec;
        bool reject = msg->kind == SYNC_ISO_REJECT;
        int r = iso_load(ledger, q->iso, &rec, err);

        if (r < 0)
                return r;
        if (strcmp(rec.state, "pending") != 0 && (!reject || strcmp(rec.state, "approved") != 0))
                return error_set(err, -EPERM, "iso `%.64s` is %s", q->iso, rec.state);
        if (reject && rec.mounted)
                return error_set(err, -EPERM, "iso `%.64s` is mounted", q->iso);
        str_copy(msg->account_id, sizeof(msg->account_id), rec.account);
        if (reject && q->reason && str_copy(msg->reason, sizeof(msg->reason), q->reason) < 0)
                return error_set(err, -EINVAL, "reason: at most %d characters", SYNC_TEXT_MAX);
        if (reject)
                msg->account_id[0] = '\0'; /* iso-reject carries no account */
        str_copy(node, LEDGER_NAME_MAX + 1, rec.node);
        return 0;
}

/* check (which fills the command and its node) and the command queued,
 * in one transaction. */
static int iso_queue(struct ledger *ledger,
                     int (*check)(struct ledger *, const struct iso_request *, struct sync_msg *, char *,
                                  struct error *),
                     enum sync_kind kind, const struct iso_request *q, int64_t now, struct error *err)
{
        struct sync_msg msg = { .kind = kind };
        char node[LEDGER_NAME_MAX + 1];
        int r = ledger_begin(ledger, err);

        if (q->iso)
                str_copy(msg.iso, sizeof(msg.iso), q->iso);
        if (r == 0)
                r = check(ledger, q, &msg, node, err);
        if (r == 0)
                r = ledger_queue(ledger, node, &msg, now, err);
        return ledger_end(ledger, r, err);
}

int ledger_iso_mount(struct ledger *ledger, const char *iso, const char *account, const char *service, int64_t now,
                     struct error *err)
{
        const struct iso_request q = { .iso = iso, .account = account, .service = service };

        return iso_queue(ledger, check_mount, SYNC_ISO_MOUNT, &q, now, err);
}

int ledger_iso_eject(struct ledger *ledger, const char *service, const char *account, int64_t now,
                     struct error *err)
{
        const struct iso_request q = { .account = account, .service = service };

        return iso_queue(ledger, check_eject, SYNC_ISO_EJECT, &q, now, err);
}

int ledger_iso_delete(struct ledger *ledger, const char *iso, const char *account, int64_t now, struct error *err)
{
        const struct iso_request q = { .iso = iso, .account = account };

        return iso_queue(ledger, check_delete, SYNC_ISO_DELETE, &q, now, err);
}

int ledger_iso_approve(struct ledger *ledger, const char *iso, int64_t now, struct error *err)
{
        const struct iso_request q = { .iso = iso };

        return iso_queue(ledger, check_decision, SYNC_ISO_APPROVE, &q, now, err);
}

int ledger_iso_reject(struct ledger *ledger, const char *iso, const char *reason, int64_t now, struct error *err)
{
        const struct iso_request q = { .iso = iso, .reason = reason };

        return iso_queue(ledger, check_decision, SYNC_ISO_REJECT, &q, now, err);
}
