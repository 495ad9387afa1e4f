/* node/store: numbered migrations (one transaction each, refused when the
 * database is newer), the shipped schema, and the file's mode. Every test
 * works in its own temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "node/store.h"

struct tmp {
        char dir[64];
        char db[128];
};

static int tmp_setup(void **state)
{
        struct tmp *t = calloc(1, sizeof(*t));

        if (!t)
                return -1;
        strcpy(t->dir, "/tmp/test-store-XXXXXX");
        if (!mkdtemp(t->dir)) {
                free(t);
                return -1;
        }
        snprintf(t->db, sizeof(t->db), "%s/vpsd.db", t->dir);
        *state = t;
        return 0;
}

/* Removes the database and whatever SQLite left beside it (-wal, -shm). */
static int tmp_teardown(void **state)
{
        struct tmp *t = *state;
        DIR *d = opendir(t->dir);
        struct dirent *e;
        char path[512];

        if (d) {
                while ((e = readdir(d))) {
                        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
                        unlink(path);
                }
                closedir(d);
        }
        rmdir(t->dir);
        free(t);
        return 0;
}

/* A second, raw connection: sees only what was committed. */
static sqlite3 *raw_open(const char *path)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        return db;
}

static int query_int(sqlite3 *db, const char *sql)
{
        sqlite3_stmt *stmt = NULL;
        int v;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        return v;
}

static bool table_exists(sqlite3 *db, const char *name)
{
        sqlite3_stmt *stmt = NULL;
        bool found;

        assert_int_equal(sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1,
                                            &stmt, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_finalize(stmt);
        return found;
}

static void test_fresh_database(void **state)
{
        static const char *const tables[] = { "services", "addresses",       "ssh_keys", "activity_log",
                                              "audit_log", "command_journal", "outbox",   "node_facts" };
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        assert_true(store_migrations_count >= 1);
        for (size_t i = 0; i < store_migrations_count; i++) {
                assert_int_equal(store_migrations[i].version, i + 1);
                assert_non_null(store_migrations[i].name);
                assert_non_null(store_migrations[i].sql);
        }

        assert_int_equal(store_open(t->db, &store, &err), 0);
        assert_non_null(store);
        assert_int_equal(store_schema_version(store), store_migrations_count);
        assert_int_equal(query_int(store_db(store), "PRAGMA user_version"), (int)store_migrations_count);
        for (size_t i = 0; i < ARRAY_SIZE(tables); i++)
                assert_true(table_exists(store_db(store), tables[i]));
        assert_int_equal(query_int(store_db(store), "PRAGMA foreign_keys"), 1);

        assert_int_equal(store_prepare(store, "PRAGMA journal_mode", &stmt, &err), 0);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
        sqlite3_finalize(stmt);
        stmt = NULL;
        store = store_close(store);
        assert_null(store);

        /* Opening again migrates nothing and keeps the version. */
        assert_int_equal(store_open(t->db, &store, &err), 0);
        assert_int_equal(store_schema_version(store), store_migrations_count);
        store_close(store);
}

static void test_file_mode(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        struct stat st;
        mode_t old = umask(022);

        assert_int_equal(store_open(t->db, &store, &err), 0);
        /* The caller's umask is given back. */
        assert_int_equal(umask(old), 022);
        assert_int_equal(stat(t->db, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        store_close(store);
}

static const char v1_sql[] = "CREATE TABLE t (a INTEGER NOT NULL);";
static const char v2_sql[] = "ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'two';"
                             "CREATE TABLE u (x INTEGER);";

static const struct migration two[] = {
        { 1, "table t", v1_sql },
        { 2, "t.b and table u", v2_sql },
};

static void test_upgrade(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        assert_int_equal(store_open_with(t->db, two, 1, &store, &err), 0);
        assert_int_equal(store_schema_version(store), 1);
        assert_false(table_exists(store_db(store), "u"));
        assert_int_equal(sqlite3_exec(store_db(store), "INSERT INTO t (a) VALUES (41)", NULL, NULL, NULL), SQLITE_OK);
        store = store_close(store);

        assert_int_equal(store_open_with(t->db, two, 2, &store, &err), 0);
        assert_int_equal(store_schema_version(store), 2);
        assert_int_equal(query_int(store_db(store), "PRAGMA user_version"), 2);
        assert_true(table_exists(store_db(store), "u"));
        assert_int_equal(store_prepare(store, "SELECT a, b FROM t", &stmt, &err), 0);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(stmt, 0), 41);
        assert_string_equal((const char *)sqlite3_column_text(stmt, 1), "two");
        assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
        sqlite3_finalize(stmt);
        stmt = NULL;
        store_close(store);
}

static void test_bad_migration_rolls_back(void **state)
{
        /* The first statement works; the second does not: the whole
         * migration, and its number, must go. */
        static const struct migration bad[] = {
                { 1, "table t", v1_sql },
                { 2, "broken on purpose", "CREATE TABLE u (x INTEGER); INSERT INTO t (a) VALUES (1); NOT SQL AT ALL;" },
        };
        struct tmp *t = *state;
        struct store *store = NULL, *sentinel = (struct store *)0x1;
        struct error err = { 0 };
        char prefix[256];
        sqlite3 *db;

        assert_int_equal(store_open_with(t->db, bad, 1, &store, &err), 0);
        store = store_close(store);

        store = sentinel;
        assert_int_equal(store_open_with(t->db, bad, 2, &store, &err), -EIO);
        assert_ptr_equal(store, sentinel);
        assert_int_equal(err.code, -EIO);
        snprintf(prefix, sizeof(prefix), "database `%s`: migration 0002 (broken on purpose): ", t->db);
        assert_true(strncmp(err.msg, prefix, strlen(prefix)) == 0);
        assert_non_null(strstr(err.msg, "syntax error"));

        db = raw_open(t->db);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
        assert_false(table_exists(db, "u"));
        assert_true(table_exists(db, "t"));
        assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 0);
        sqlite3_close(db);

        /* Fixed, it applies. */
        assert_int_equal(store_open_with(t->db, two, 2, &store, &err), 0);
        assert_int_equal(store_schema_version(store), 2);
        store_close(store);
}

/* On a fresh file the migrations before the broken one stay applied: each
 * is its own transaction. */
static void test_bad_migration_fresh(void **state)
{
        static const struct migration bad[] = {
                { 1, "table t", v1_sql },
                { 2, "t again", "CREATE TABLE t (a INTEGER);" },
        };
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        sqlite3 *db;

        assert_int_equal(store_open_with(t->db, bad, 2, &store, &err), -EIO);
        assert_non_null(strstr(err.msg, "migration 0002 (t again): table t already exists"));
        db = raw_open(t->db);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
        assert_true(table_exists(db, "t"));
        sqlite3_close(db);
}

static void test_newer_database(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL, *sentinel = (struct store *)0x1;
        struct error err = { 0 };
        char msg[512];
        sqlite3 *db;

        assert_int_equal(store_open_with(t->db, two, 2, &store, &err), 0);
        store = store_close(store);

        store = sentinel;
        assert_int_equal(store_open_with(t->db, two, 1, &store, &err), -EPROTONOSUPPORT);
        assert_ptr_equal(store, sentinel);
        snprintf(msg, sizeof(msg),
                 "database `%s` has schema version 2, newer than the 1 this vpsd knows: "
                 "run a newer vpsd, or restore a backup made by this version",
                 t->db);
        assert_string_equal(err.msg, msg);

        /* The same against the shipped list, with a far newer number. */
        db = raw_open(t->db);
        assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 9999", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        assert_int_equal(store_open(t->db, &store, &err), -EPROTONOSUPPORT);
        assert_non_null(strstr(err.msg, "has schema version 9999, newer than"));
        assert_ptr_equal(store, sentinel);

        /* Nothing was touched. */
        db = raw_open(t->db);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 9999);
        assert_true(table_exists(db, "u"));
        sqlite3_close(db);
}

static void test_list_gap(void **state)
{
        static const struct migration gap[] = {
                { 1, "table t", v1_sql },
                { 3, "table u", "CREATE TABLE u (x INTEGER);" },
        };
        static const struct migration zero[] = {
                { 0, "table t", v1_sql },
        };
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        sqlite3 *db;

        assert_int_equal(store_open_with(t->db, gap, 2, &store, &err), -EINVAL);
        assert_string_equal(err.msg, "migration list: entry 1 has version 3");
        assert_null(store);
        assert_int_equal(store_open_with(t->db, zero, 1, &store, &err), -EINVAL);
        assert_string_equal(err.msg, "migration list: entry 0 has version 0");

        /* Refused before any was applied. */
        db = raw_open(t->db);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
        assert_false(table_exists(db, "t"));
        sqlite3_close(db);
}

static void test_open_fails(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        char path[256], prefix[300];

        snprintf(path, sizeof(path), "%s/no/such/dir/vpsd.db", t->dir);
        assert_int_equal(store_open(path, &store, &err), -EIO);
        snprintf(prefix, sizeof(prefix), "open database `%s`: ", path);
        assert_true(strncmp(err.msg, prefix, strlen(prefix)) == 0);
        assert_null(store);
        assert_null(store_close(NULL));
}

static void test_prepare_error(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        sqlite3_stmt *stmt = NULL;

        assert_int_equal(store_open(t->db, &store, &err), 0);
        assert_int_equal(store_prepare(store, "SELECT nope FROM nowhere", &stmt, &err), -EIO);
        assert_string_equal(err.msg, "prepare statement: no such table: nowhere");
        assert_null(stmt);
        store_close(store);
}

static int insert_service(sqlite3 *db, const char *uuid, const char *state, const char *mac)
{
        sqlite3_stmt *stmt = NULL;
        int r;

        assert_int_equal(sqlite3_prepare_v2(db,
                                            "INSERT INTO services (uuid, account_id, hostname, state, vcpus, "
                                            "memory_mib, disk_gib, port_speed_mbit, template, mac, created_at, "
                                            "updated_at) VALUES (?, 'acct-1', 'web-1', ?, 1, 512, 10, 100, "
                                            "'debian-12', ?, 1700000000, 1700000000)",
                                            -1, &stmt, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(stmt, 1, uuid, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, mac, -1, SQLITE_STATIC);
        r = sqlite3_step(stmt);
        sqlite3_finalize(stmt);
        return r;
}

static void test_check_constraints(void **state)
{
        struct tmp *t = *state;
        struct store *store = NULL;
        struct error err = { 0 };
        sqlite3 *db;

        assert_int_equal(store_open(t->db, &store, &err), 0);
        db = store_db(store);
        /* The row is good apart from what each case breaks. */
        assert_int_equal(insert_service(db, "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "running", "52:54:00:00:00:01"),
                         SQLITE_DONE);
        assert_int_equal(insert_service(db, "2b4e28ba-2fa1-11d2-883f-0016d3cca427", "exploded", "52:54:00:00:00:02"),
                         SQLITE_CONSTRAINT_CHECK);
        assert_non_null(strstr(sqlite3_errmsg(db), "CHECK constraint failed"));
        assert_int_equal(insert_service(db, "2b4e28ba-2fa1-11d2-883f-0016d3cca427", "Running", "52:54:00:00:00:02"),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(insert_service(db, "short-uuid", "running", "52:54:00:00:00:02"), SQLITE_CONSTRAINT_CHECK);
        /* Same MAC, same UUID. */
        assert_int_equal(insert_service(db, "2b4e28ba-2fa1-11d2-883f-0016d3cca427", "running", "52:54:00:00:00:01"),
                         SQLITE_CONSTRAINT_UNIQUE);
        assert_int_equal(insert_service(db, "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "stopped", "52:54:00:00:00:03"),
                         SQLITE_CONSTRAINT_UNIQUE);
        assert_int_equal(query_int(db, "SELECT count(*) FROM services"), 1);

        /* Foreign keys are on: an address needs its service. */
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO addresses (service_id, family, address, prefix, position) "
                                      "VALUES (999, 4, '192.0.2.10', 32, 0)",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_FOREIGNKEY);
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO addresses (service_id, family, address, prefix, position) "
                                      "VALUES (1, 5, '192.0.2.10', 32, 0)",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO command_journal (seq, kind, body, state, received_at) "
                                      "VALUES (1, 'suspend', '{}', 'done', 1)",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        store_close(store);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_fresh_database, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_file_mode, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_upgrade, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_bad_migration_rolls_back, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_bad_migration_fresh, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_newer_database, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_list_gap, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_open_fails, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_prepare_error, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_check_constraints, tmp_setup, tmp_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
