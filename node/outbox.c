#include "outbox.h"

#include <errno.h>

#include "common/util.h"

int outbox_add(struct store *store, const char *kind, const char *uuid, struct json_object *body,
               struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(store,
                              "INSERT INTO outbox (kind, service_uuid, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
        if (uuid)
                sqlite3_bind_text(stmt, 2, uuid, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN), -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 4, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "outbox: %s", sqlite3_errmsg(store_db(store)));
        return 0;
}
