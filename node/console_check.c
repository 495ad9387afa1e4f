#include "console_check.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "node/service.h"

int ticket_nonce_use(struct store *store, const struct ticket *t, int64_t now, struct error *err)
{
        cleanup_stmt sqlite3_stmt *purge = NULL, *count = NULL, *insert = NULL;
        int r;

        r = store_prepare(store, "DELETE FROM console_nonces WHERE expires_at < ?1", &purge, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(purge, 1, now);
        if (sqlite3_step(purge) != SQLITE_DONE)
                return error_set(err, -EIO, "nonces: %s", sqlite3_errmsg(store_db(store)));
        r = store_prepare(store, "SELECT count(*) FROM console_nonces", &count, err);
        if (r < 0)
                return r;
        if (sqlite3_step(count) != SQLITE_ROW || sqlite3_column_int64(count, 0) >= CONSOLE_NONCES_MAX)
                return error_set(err, -EAGAIN, "%d nonces remembered: no more until some expire", CONSOLE_NONCES_MAX);
        r = store_prepare(store, "INSERT OR IGNORE INTO console_nonces (nonce, expires_at) VALUES (?1, ?2)", &insert,
                          err);
        if (r < 0)
                return r;
        sqlite3_bind_text(insert, 1, t->nonce, -1, SQLITE_STATIC);
        sqlite3_bind_int64(insert, 2, t->expires_at + TICKET_CLOCK_SKEW);
        if (sqlite3_step(insert) != SQLITE_DONE)
                return error_set(err, -EIO, "nonces: %s", sqlite3_errmsg(store_db(store)));
        if (sqlite3_changes(store_db(store)) == 0)
                return error_set(err, -EALREADY, "replayed: nonce already used");
        return 0;
}

int console_ticket_check(struct store *store, struct ed25519_key *const *keys, size_t n_keys, const char *text,
                         enum console_kind kind, int64_t now, struct ticket *ret_ticket, int64_t *ret_service_id,
                         struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct ticket t;
        const char *state;
        int r;

        r = ticket_verify(text, strlen(text), keys, n_keys, now, &t, err);
        if (r < 0)
                return r;
        r = ticket_nonce_use(store, &t, now, err);
        if (r < 0)
                return r;
        if (t.type != TICKET_CONSOLE)
                return error_set(err, -EINVAL, "an ISO upload ticket used for a console");
        if (t.kind != kind)
                return error_set(err, -EINVAL, "service %s: a %s ticket used for a %s console", t.service,
                                 console_kind_name(t.kind), console_kind_name(kind));
        r = store_prepare(store, "SELECT id, account_id, state, busy_operation FROM services WHERE uuid = ?1", &stmt,
                          err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, t.service, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %s: not on this node", t.service);
        if (strcmp((const char *)sqlite3_column_text(stmt, 1), t.account) != 0)
                return error_set(err, -EPERM, "service %s: account `%s` does not own it", t.service, t.account);
        state = (const char *)sqlite3_column_text(stmt, 2);
        if (strcmp(state, "running") != 0)
                return error_set(err, -EBADFD, "service %s: %s", t.service, state);
        if (sqlite3_column_type(stmt, 3) != SQLITE_NULL)
                return error_set(err, -EBUSY, "service %s: busy: %s", t.service, sqlite3_column_text(stmt, 3));
        *ret_service_id = sqlite3_column_int64(stmt, 0);
        *ret_ticket = t;
        return 0;
}

int console_ticket_mint(struct store *store, const struct ed25519_key *key, const char *uuid,
                        enum console_kind kind, int64_t now, unsigned lifetime, char *out, size_t size,
                        struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct ticket t = { .kind = kind, .issued_at = now, .expires_at = now + lifetime };
        int r;

        if (!uuid_valid(uuid))
                return error_set(err, -EINVAL, "`%.64s` is not a service UUID", uuid);
        r = store_prepare(store, "SELECT account_id FROM services WHERE uuid = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, uuid, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %s: not found", uuid);
        memcpy(t.service, uuid, sizeof(t.service));
        if (snprintf(t.account, sizeof(t.account), "%s", (const char *)sqlite3_column_text(stmt, 0)) >=
            (int)sizeof(t.account))
                return error_set(err, -EINVAL, "service %s: account id too long for a ticket", uuid);
        r = ticket_nonce_new(&t, err);
        if (r < 0)
                return r;
        return ticket_sign(&t, key, out, size, err);
}
