#include "outbox.h"

#include <errno.h>
#include <stdlib.h>

#include "common/util.h"

int outbox_add(struct store *store, struct sync_msg *event, struct error *err)
{
        cleanup_cached sqlite3_stmt *insert = NULL, *update = NULL;
        sqlite3 *db = store_db(store);
        char *body = NULL;
        int r;

        if (!sync_kind_is_event(event->kind))
                return error_set(err, -EINVAL, "outbox: `%s` is not an event", sync_kind_name(event->kind));
        if (event->at == 0)
                event->at = time_now_wall();
        /* The seq is the row's: insert, then write the body that names it,
         * both or neither. */
        if (sqlite3_exec(db, "SAVEPOINT outbox_add", NULL, NULL, NULL) != SQLITE_OK)
                return error_set(err, -EIO, "outbox: %s", sqlite3_errmsg(db));
        r = store_prepare_cached(store, "INSERT INTO outbox (kind, service_uuid, body, created_at) VALUES (?1, ?2, '', ?3)",
                          &insert, err);
        if (r == 0) {
                sqlite3_bind_text(insert, 1, sync_kind_name(event->kind), -1, SQLITE_STATIC);
                if (event->service[0])
                        sqlite3_bind_text(insert, 2, event->service, -1, SQLITE_STATIC);
                sqlite3_bind_int64(insert, 3, event->at);
                if (sqlite3_step(insert) != SQLITE_DONE)
                        r = error_set(err, -EIO, "outbox: %s", sqlite3_errmsg(db));
        }
        if (r == 0) {
                event->seq = sqlite3_last_insert_rowid(db);
                r = sync_msg_to_body(event, &body, err);
        }
        if (r == 0)
                r = store_prepare_cached(store, "UPDATE outbox SET body = ?1 WHERE seq = ?2", &update, err);
        if (r == 0) {
                sqlite3_bind_text(update, 1, body, -1, SQLITE_STATIC);
                sqlite3_bind_int64(update, 2, event->seq);
                if (sqlite3_step(update) != SQLITE_DONE)
                        r = error_set(err, -EIO, "outbox: %s", sqlite3_errmsg(db));
        }
        free(body);
        sqlite3_exec(db, r == 0 ? "RELEASE outbox_add" : "ROLLBACK TO outbox_add; RELEASE outbox_add", NULL, NULL,
                     NULL);
        return r;
}
