#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

struct store {
        sqlite3 *db;
        unsigned schema_version;
};

/* Long enough to ride out a checkpoint or a reader holding the lock, short
 * enough that a stuck one shows as an error. */
#define STORE_BUSY_TIMEOUT_MS 5000

static int sql_error(struct store *store, struct error *err, const char *what)
{
        return error_set(err, -EIO, "%s: %s", what, sqlite3_errmsg(store->db));
}

static int read_user_version(struct store *store, unsigned *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(store, "PRAGMA user_version", &stmt, err);

        if (r < 0)
                return r;
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return sql_error(store, err, "read schema version");
        *ret = (unsigned)sqlite3_column_int(stmt, 0);
        return 0;
}

static int apply_migration(struct store *store, const struct migration *m, struct error *err)
{
        char *msg = NULL;
        char set_version[64];

        if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
                goto fail;
        if (sqlite3_exec(store->db, m->sql, NULL, NULL, &msg) != SQLITE_OK)
                goto fail;
        /* user_version lives in the database header, written by the same
         * transaction: a migration and its number commit together. */
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %u", m->version);
        if (sqlite3_exec(store->db, set_version, NULL, NULL, &msg) != SQLITE_OK)
                goto fail;
        if (sqlite3_exec(store->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
                goto fail;
        return 0;
fail:
        error_set(err, -EIO, "migration %04u (%s): %s", m->version, m->name, msg ? msg : "unknown error");
        sqlite3_free(msg);
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return err ? err->code : -EIO;
}

static int migrate(struct store *store, const char *path, const struct migration *migrations, size_t count,
                   struct error *err)
{
        unsigned current = 0;
        int r;

        for (size_t i = 0; i < count; i++)
                if (migrations[i].version != i + 1)
                        return error_set(err, -EINVAL, "migration list: entry %zu has version %u", i,
                                         migrations[i].version);
        r = read_user_version(store, &current, err);
        if (r < 0)
                return r;
        if (current > count)
                return error_set(err, -EPROTONOSUPPORT,
                                 "database `%s` has schema version %u, newer than the %zu this vpsd knows: "
                                 "run a newer vpsd, or restore a backup made by this version",
                                 path, current, count);
        for (size_t i = current; i < count; i++) {
                r = apply_migration(store, &migrations[i], err);
                if (r < 0)
                        return error_prefix(err, "database `%s`", path);
        }
        store->schema_version = (unsigned)count;
        return 0;
}

int store_open_with(const char *path, const struct migration *migrations, size_t count, struct store **ret_store,
                    struct error *err)
{
        struct store *store;
        mode_t old_umask;
        char *msg = NULL;
        int r;

        store = calloc(1, sizeof(*store));
        if (!store)
                return error_set(err, -ENOMEM, "out of memory");
        /* The database holds account ids and password hashes: owner only. */
        old_umask = umask(077);
        r = sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            NULL);
        umask(old_umask);
        if (r != SQLITE_OK) {
                error_set(err, -EIO, "open database `%s`: %s", path,
                          store->db ? sqlite3_errmsg(store->db) : "out of memory");
                goto fail;
        }
        sqlite3_extended_result_codes(store->db, 1);
        sqlite3_busy_timeout(store->db, STORE_BUSY_TIMEOUT_MS);
        if (sqlite3_exec(store->db,
                         "PRAGMA journal_mode = WAL;"
                         "PRAGMA synchronous = NORMAL;"
                         "PRAGMA foreign_keys = ON;",
                         NULL, NULL, &msg) != SQLITE_OK) {
                error_set(err, -EIO, "database `%s`: %s", path, msg ? msg : "cannot set pragmas");
                sqlite3_free(msg);
                goto fail;
        }
        r = migrate(store, path, migrations, count, err);
        if (r < 0)
                goto fail;
        *ret_store = store;
        return 0;
fail:
        r = err ? err->code : -EIO;
        store_close(store);
        return r < 0 ? r : -EIO;
}

int store_open(const char *path, struct store **ret_store, struct error *err)
{
        return store_open_with(path, store_migrations, store_migrations_count, ret_store, err);
}

#define CACHE_MAX 48

static struct cached {
        sqlite3 *db;
        const char *sql;
        sqlite3_stmt *stmt;
        bool in_use;
} cache[CACHE_MAX];

int store_prepare_cached(struct store *store, const char *sql, sqlite3_stmt **ret_stmt, struct error *err)
{
        struct cached *free_slot = NULL;

        for (size_t i = 0; i < CACHE_MAX; i++) {
                struct cached *e = &cache[i];
                if (e->db == store->db && e->sql == sql && !e->in_use) {
                        e->in_use = true;
                        *ret_stmt = e->stmt;
                        return 0;
                }
                if (!e->db && !free_slot)
                        free_slot = e;
        }
        if (sqlite3_prepare_v3(store->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, ret_stmt, NULL) !=
            SQLITE_OK)
                return sql_error(store, err, "prepare statement");
        if (free_slot)
                *free_slot = (struct cached){ .db = store->db, .sql = sql, .stmt = *ret_stmt, .in_use = true };
        return 0;
}

void store_stmt_release(sqlite3_stmt **stmt)
{
        if (!*stmt)
                return;
        for (size_t i = 0; i < CACHE_MAX; i++)
                if (cache[i].stmt == *stmt) {
                        sqlite3_reset(*stmt);
                        sqlite3_clear_bindings(*stmt);
                        cache[i].in_use = false;
                        *stmt = NULL;
                        return;
                }
        sqlite3_finalize(*stmt);
        *stmt = NULL;
}

struct store *store_close(struct store *store)
{
        if (!store)
                return NULL;
        for (size_t i = 0; i < CACHE_MAX; i++)
                if (cache[i].db == store->db) {
                        sqlite3_finalize(cache[i].stmt);
                        cache[i] = (struct cached){ 0 };
                }
        sqlite3_close_v2(store->db);
        free(store);
        return NULL;
}

sqlite3 *store_db(struct store *store) { return store->db; }
unsigned store_schema_version(struct store *store) { return store->schema_version; }

int store_prepare(struct store *store, const char *sql, sqlite3_stmt **ret_stmt, struct error *err)
{
        if (sqlite3_prepare_v2(store->db, sql, -1, ret_stmt, NULL) != SQLITE_OK)
                return sql_error(store, err, "prepare statement");
        return 0;
}
