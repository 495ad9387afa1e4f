#include "sync_journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "node/outbox.h"

static int db_error(struct store *store, struct error *err, const char *what)
{
        return error_set(err, -EIO, "%s: %s", what, sqlite3_errmsg(store_db(store)));
}

static int single_int(struct store *store, const char *sql, int64_t *ret, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store, sql, &stmt, err);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return db_error(store, err, "journal");
        *ret = sqlite3_column_int64(stmt, 0);
        return 0;
}

int journal_last(struct store *store, int64_t *ret_seq, struct error *err)
{
        return single_int(store, "SELECT coalesce(max(seq), 0) FROM command_journal", ret_seq, err);
}

int journal_finished_upto(struct store *store, int64_t *ret_seq, struct error *err)
{
        /* Below the first open command, or everything when none is open. */
        return single_int(store,
                          "SELECT coalesce((SELECT min(seq) - 1 FROM command_journal WHERE state IN "
                          "('received', 'applying')), (SELECT coalesce(max(seq), 0) FROM command_journal))",
                          ret_seq, err);
}

int journal_add(struct store *store, const struct sync_msg *cmd, int64_t now, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        cleanup_free char *body = NULL;
        int r = sync_msg_to_body(cmd, &body, err);

        if (r == 0)
                r = store_prepare_cached(store,
                                  "INSERT INTO command_journal (seq, kind, service_uuid, body, state, received_at) "
                                  "VALUES (?1, ?2, ?3, ?4, 'received', ?5)",
                                  &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, cmd->seq);
        sqlite3_bind_text(stmt, 2, sync_kind_name(cmd->kind), -1, SQLITE_STATIC);
        if (cmd->service[0])
                sqlite3_bind_text(stmt, 3, cmd->service, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, body, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 5, now);
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return db_error(store, err, "journal");
        return 0;
}

int journal_outcome(struct store *store, int64_t seq, bool *ret_finished, char result[16],
                    char error[SYNC_TEXT_MAX + 1], struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store, "SELECT state, coalesce(result, '') FROM command_journal WHERE seq = ?1", &stmt,
                              err);
        const char *state;

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, seq);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "command %" PRId64 " is not in the journal", seq);
        state = (const char *)sqlite3_column_text(stmt, 0);
        *ret_finished = strcmp(state, "applied") == 0 || strcmp(state, "failed") == 0;
        snprintf(result, 16, "%s", *ret_finished ? state : "");
        snprintf(error, SYNC_TEXT_MAX + 1, "%s", (const char *)sqlite3_column_text(stmt, 1));
        return 0;
}

int journal_open_each(struct store *store, journal_open_fn fn, void *userdata, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store,
                              "SELECT seq, state, body FROM command_journal WHERE state IN ('received', 'applying') "
                              "ORDER BY seq",
                              &stmt, err);

        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                struct sync_msg cmd;
                bool go_on;

                if (sync_msg_from_body((const char *)sqlite3_column_text(stmt, 2), &cmd, err) < 0)
                        return error_prefix(err, "journal: command %" PRId64, (int64_t)sqlite3_column_int64(stmt, 0));
                go_on = fn(sqlite3_column_int64(stmt, 0), strcmp((const char *)sqlite3_column_text(stmt, 1),
                                                                   "applying") == 0, &cmd, userdata);
                sync_msg_clear(&cmd);
                if (!go_on)
                        return 0;
        }
        return r == SQLITE_DONE ? 0 : db_error(store, err, "journal");
}

int journal_mark_applying(struct store *store, int64_t seq, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store, "UPDATE command_journal SET state = 'applying' WHERE seq = ?1", &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, seq);
        return sqlite3_step(stmt) == SQLITE_DONE ? 0 : db_error(store, err, "journal");
}

void journal_actor(int64_t seq, char buf[40])
{
        snprintf(buf, 40, "ledger command %" PRId64, seq);
}

int journal_audit_outcome(struct store *store, int64_t seq, bool *ret_found, bool *ret_ok,
                          char error[SYNC_TEXT_MAX + 1], struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        char actor[40];
        int r = store_prepare_cached(store, "SELECT result FROM audit_log WHERE actor = ?1 ORDER BY id DESC LIMIT 1", &stmt,
                              err);

        if (r < 0)
                return r;
        journal_actor(seq, actor);
        sqlite3_bind_text(stmt, 1, actor, -1, SQLITE_TRANSIENT);
        *ret_found = sqlite3_step(stmt) == SQLITE_ROW;
        *ret_ok = *ret_found && strcmp((const char *)sqlite3_column_text(stmt, 0), "ok") == 0;
        snprintf(error, SYNC_TEXT_MAX + 1, "%s",
                 *ret_found && !*ret_ok ? (const char *)sqlite3_column_text(stmt, 0) : "");
        return 0;
}

int journal_finish(struct store *store, const struct sync_msg *cmd, bool ok, const char *error,
                   const char *root_password, const uint8_t seal_key[SEAL_KEY_SIZE], int64_t now,
                   struct error *err)
{
        struct sync_msg event = { .kind = SYNC_RESULT, .at = now, .command_seq = cmd->seq, .ok = ok };
        cleanup_cached sqlite3_stmt *update = NULL, *secret = NULL;
        cleanup_free char *sealed = NULL;
        sqlite3 *db = store_db(store);
        int r;

        str_copy(event.op, sizeof(event.op), sync_kind_name(cmd->kind));
        str_copy(event.service, sizeof(event.service), cmd->service);
        if (error)
                snprintf(event.error, sizeof(event.error), "%s", error);
        if (root_password && root_password[0]) {
                r = seal_text(seal_key, SYNC_SEAL_LABEL, root_password, &sealed, err);
                if (r < 0)
                        return r;
        }
        /* A savepoint: the caller may hold a transaction with the
         * command's own effect in it. */
        if (sqlite3_exec(db, "SAVEPOINT journal_finish", NULL, NULL, NULL) != SQLITE_OK)
                return db_error(store, err, "journal");
        r = store_prepare_cached(store,
                          "UPDATE command_journal SET state = ?2, result = ?3, finished_at = ?4 WHERE seq = ?1",
                          &update, err);
        if (r == 0) {
                sqlite3_bind_int64(update, 1, cmd->seq);
                sqlite3_bind_text(update, 2, ok ? "applied" : "failed", -1, SQLITE_STATIC);
                sqlite3_bind_text(update, 3, event.error, -1, SQLITE_STATIC);
                sqlite3_bind_int64(update, 4, now);
                if (sqlite3_step(update) != SQLITE_DONE)
                        r = db_error(store, err, "journal");
        }
        if (r == 0)
                r = outbox_add(store, &event, err);
        if (r == 0 && sealed) {
                r = store_prepare_cached(store, "UPDATE outbox SET sealed_secret = ?2 WHERE seq = ?1", &secret, err);
                if (r == 0) {
                        sqlite3_bind_int64(secret, 1, event.seq);
                        sqlite3_bind_text(secret, 2, sealed, -1, SQLITE_STATIC);
                        if (sqlite3_step(secret) != SQLITE_DONE)
                                r = db_error(store, err, "outbox");
                }
        }
        if (r == 0 && sqlite3_exec(db, "RELEASE journal_finish", NULL, NULL, NULL) != SQLITE_OK)
                r = db_error(store, err, "journal");
        if (r < 0)
                sqlite3_exec(db, "ROLLBACK TO journal_finish; RELEASE journal_finish", NULL, NULL, NULL);
        return r;
}

/* A stored body with its row's seq (a trigger's body has none). */
static int pending_msg(const char *body, int64_t seq, struct sync_msg *ret, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        int r = json_parse_object(body, strlen(body), &obj, err);

        if (r < 0)
                return r;
        json_object_object_add(obj, "seq", json_object_new_int64(seq));
        return sync_msg_from_body(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN), ret, err);
}

int outbox_each_pending(struct store *store, int64_t after, unsigned max, const uint8_t seal_key[SEAL_KEY_SIZE],
                        outbox_pending_fn fn, void *userdata, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store,
                              "SELECT seq, body, sealed_secret FROM outbox WHERE acked_at IS NULL AND seq > ?1 "
                              "ORDER BY seq LIMIT ?2",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, after);
        sqlite3_bind_int64(stmt, 2, max);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                int64_t seq = sqlite3_column_int64(stmt, 0);
                struct sync_msg event;
                bool go_on;

                if (pending_msg((const char *)sqlite3_column_text(stmt, 1), seq, &event, err) < 0)
                        return error_prefix(err, "outbox: event %" PRId64, seq);
                if (sqlite3_column_type(stmt, 2) != SQLITE_NULL) {
                        char *plain = NULL;

                        if (unseal_text(seal_key, SYNC_SEAL_LABEL, (const char *)sqlite3_column_text(stmt, 2),
                                        &plain, err) < 0) {
                                sync_msg_clear(&event);
                                return error_prefix(err, "outbox: event %" PRId64, seq);
                        }
                        snprintf(event.root_password, sizeof(event.root_password), "%s", plain);
                        explicit_bzero(plain, strlen(plain));
                        free(plain);
                }
                go_on = fn(&event, userdata);
                explicit_bzero(event.root_password, sizeof(event.root_password));
                sync_msg_clear(&event);
                if (!go_on)
                        return 0;
        }
        return r == SQLITE_DONE ? 0 : db_error(store, err, "outbox");
}

int outbox_acked(struct store *store, int64_t seq, int64_t now, struct error *err)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int r = store_prepare_cached(store,
                              "UPDATE outbox SET acked_at = ?2, sealed_secret = NULL WHERE seq <= ?1 AND acked_at IS NULL",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_int64(stmt, 2, now);
        return sqlite3_step(stmt) == SQLITE_DONE ? 0 : db_error(store, err, "outbox");
}

int journal_make_durable(struct store *store, struct error *err)
{
        sqlite3 *db = store_db(store);
        int rc;

        /* A commit under synchronous=FULL syncs the WAL, and with it every
         * frame appended before it. */
        if (sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK)
                return db_error(store, err, "journal");
        rc = sqlite3_exec(db,
                          "INSERT OR REPLACE INTO node_facts (key, value, updated_at) "
                          "VALUES ('sync_durable', '', unixepoch())",
                          NULL, NULL, NULL);
        sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : db_error(store, err, "journal");
}

int outbox_unacked_count(struct store *store, int64_t *ret_count, struct error *err)
{
        return single_int(store, "SELECT count(*) FROM outbox WHERE acked_at IS NULL", ret_count, err);
}
