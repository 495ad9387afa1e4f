#include "logbook.h"

#include <string.h>

#include "common/log.h"
#include "common/util.h"

static const char *actor_kind(const char *actor)
{
        static const char *const kinds[] = { "operator", "ledger", "customer" };

        for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
                if (strncmp(actor, kinds[i], strlen(kinds[i])) == 0)
                        return kinds[i];
        return "node";
}

/* The logs are records, not control flow: a failure to write one is
 * reported to the operator and does not undo the action. */
static void run(struct store *store, const char *sql, const char *what, const char *const *texts, size_t n,
                const int64_t *ints, size_t n_ints)
{
        cleanup_cached sqlite3_stmt *stmt = NULL;
        int col = 1;

        if (store_prepare_cached(store, sql, &stmt, NULL) < 0)
                goto fail;
        for (size_t i = 0; i < n_ints; i++)
                sqlite3_bind_int64(stmt, col++, ints[i]);
        for (size_t i = 0; i < n; i++)
                sqlite3_bind_text(stmt, col++, texts[i] ? texts[i] : "", -1, SQLITE_TRANSIENT);
        if (sqlite3_step(stmt) == SQLITE_DONE)
                return;
fail:
        log_error("cannot write a log record", "log=%s error=\"%s\"", what, sqlite3_errmsg(store_db(store)));
}

void logbook_activity(struct store *store, int64_t service_id, const char *actor, const char *action)
{
        const char *texts[] = { actor_kind(actor), action };
        const int64_t ints[] = { service_id, time_now_wall() };

        run(store, "INSERT INTO activity_log (service_id, at, actor, action) VALUES (?1, ?2, ?3, ?4)", "activity",
            texts, ARRAY_SIZE(texts), ints, ARRAY_SIZE(ints));
}

void logbook_audit(struct store *store, const char *actor, const char *action, const char *target,
                   const char *result, const char *detail)
{
        const char *texts[] = { actor, action, target, result, detail };
        const int64_t ints[] = { time_now_wall() };

        run(store,
            "INSERT INTO audit_log (at, actor, action, target, result, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            "audit", texts, ARRAY_SIZE(texts), ints, ARRAY_SIZE(ints));
}
