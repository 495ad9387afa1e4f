/* The node's truth: one SQLite database (WAL) whose schema is a list of
 * numbered migrations (node/migrations.c), applied at open, one
 * transaction each. */
#pragma once

#include <sqlite3.h>
#include <stddef.h>

#include "common/error.h"

struct store;

struct migration {
        unsigned version; /* 1, 2, 3 … with no gap */
        const char *name;
        const char *sql;
};

/* The migrations this vpsd knows, in order. */
extern const struct migration store_migrations[];
extern const size_t store_migrations_count;

/* Opens (creating it 0600 if absent) and migrates to the newest schema.
 * Refuses a database whose schema is newer than this vpsd knows. */
int store_open(const char *path, struct store **ret_store, struct error *err);

/* Same with another list of migrations: what the unit tests use. */
int store_open_with(const char *path, const struct migration *migrations, size_t count, struct store **ret_store,
                    struct error *err);

/* Accepts NULL; returns NULL. */
struct store *store_close(struct store *store);

sqlite3 *store_db(struct store *store);
unsigned store_schema_version(struct store *store);

/* A transaction that nests: a savepoint, which is the transaction itself
 * when none is open, and a part of the caller's when one is (the sync
 * client applies a batch of ledger commands in one). vpsd is the database's
 * only writer, so a deferred start never waits for a lock. */
#define STORE_TX_BEGIN "SAVEPOINT tx"
#define STORE_TX_COMMIT "RELEASE tx"
#define STORE_TX_ROLLBACK "ROLLBACK TO tx; RELEASE tx"

/* A statement for the store's database, finalized by cleanup_stmt. */
int store_prepare(struct store *store, const char *sql, sqlite3_stmt **ret_stmt, struct error *err);

static inline void sqlite3_finalizep(sqlite3_stmt **s) { sqlite3_finalize(*s); }
#define cleanup_stmt __attribute__((cleanup(sqlite3_finalizep)))

/* The same, kept prepared for the store's life and only reset after use:
 * for the few statements that run for every ledger command of a batch.
 * sql must be a string literal (it is looked up by address). A statement
 * already in use (a nested call) is prepared afresh and finalized after.
 * The loop's thread only. Release with cleanup_cached. */
int store_prepare_cached(struct store *store, const char *sql, sqlite3_stmt **ret_stmt, struct error *err);
void store_stmt_release(sqlite3_stmt **stmt);
#define cleanup_cached __attribute__((cleanup(store_stmt_release)))
