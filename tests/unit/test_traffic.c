/* node/traffic: counter samples into buckets, resets detected (never
 * subtracted), reports per period, pruning. Each test on its own database. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "node/store.h"
#include "node/traffic.h"
#include "store_fixture.h"

/* 2026-11-23 10:02:30 UTC */
#define T0 1795428150

struct fixture {
        struct store_fixture base;
        struct store *store;
        int64_t id;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f || store_fixture_open(&f->base, "traffic") < 0)
                return -1;
        f->store = f->base.store;
        if (sqlite3_exec(store_db(f->store),
                         "INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, "
                         "port_speed_mbit, template, mac, created_at, updated_at) VALUES "
                         "('1b4e28ba-2fa1-41d2-883f-0016d3cca427', 'a', 'h', 'running', 1, 256, 1, 100, 't', "
                         "'52:54:00:00:00:01', 0, 0)",
                         NULL, NULL, NULL) != SQLITE_OK)
                return -1;
        f->id = sqlite3_last_insert_rowid(store_db(f->store));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        int r = store_fixture_close(&f->base);

        free(f);
        return r;
}

static void sample(struct fixture *f, uint64_t in_bytes, uint64_t out_bytes, int64_t at)
{
        const struct traffic_counters c = { .in_bytes = in_bytes, .in_packets = in_bytes / 100,
                                            .out_bytes = out_bytes, .out_packets = out_bytes / 100 };
        struct error err = { 0 };

        assert_int_equal(traffic_record(f->store, f->id, &c, at, &err), 0);
}

static int64_t bucket(struct fixture *f, int64_t size, int64_t start, const char *column)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char sql[160];

        snprintf(sql, sizeof(sql), "SELECT %s FROM traffic_buckets WHERE service_id = ?1 AND size = ?2 AND start = ?3",
                 column);
        assert_int_equal(store_prepare(f->store, sql, &stmt, NULL), 0);
        sqlite3_bind_int64(stmt, 1, f->id);
        sqlite3_bind_int64(stmt, 2, size);
        sqlite3_bind_int64(stmt, 3, start);
        return sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
}

static struct json_object *report(struct fixture *f, const char *period, int64_t now)
{
        enum traffic_period p;
        struct json_object *r = NULL;
        struct error err = { 0 };

        assert_int_equal(traffic_period_parse(period, &p), 0);
        assert_int_equal(traffic_report_json(f->store, f->id, p, now, &r, &err), 0);
        return r;
}

static int64_t total(struct json_object *r, const char *key)
{
        return json_object_get_int64(json_object_object_get(json_object_object_get(r, "total"), key));
}

static void test_growth_lands_in_every_bucket_size(void **state)
{
        struct fixture *f = *state;

        sample(f, 1000, 500, T0);          /* a new port: all of it is traffic */
        sample(f, 1600, 500, T0 + 60);     /* +600 in */
        sample(f, 1600, 900, T0 + 300);    /* +400 out, the next 5-minute bucket */
        assert_int_equal(bucket(f, 300, T0 - T0 % 300, "in_bytes"), 1600);
        assert_int_equal(bucket(f, 300, T0 - T0 % 300, "out_bytes"), 500);
        assert_int_equal(bucket(f, 300, T0 + 300 - (T0 + 300) % 300, "out_bytes"), 400);
        assert_int_equal(bucket(f, 3600, T0 - T0 % 3600, "in_bytes"), 1600);
        assert_int_equal(bucket(f, 3600, T0 - T0 % 3600, "out_bytes"), 900);
        assert_int_equal(bucket(f, 86400, T0 - T0 % 86400, "in_packets"), 16);
}

static void test_reset_is_detected_not_subtracted(void **state)
{
        struct fixture *f = *state;
        struct json_object *r;

        sample(f, 10000, 10000, T0);
        sample(f, 300, 200, T0 + 60); /* the table was rebuilt: counters from 0 */
        sample(f, 400, 200, T0 + 120);
        r = report(f, "day", T0 + 200);
        assert_int_equal(total(r, "in_bytes"), 10000 + 300 + 100);
        assert_int_equal(total(r, "out_bytes"), 10000 + 200);
        json_object_put(r);
}

static void test_same_sample_twice_adds_nothing(void **state)
{
        struct fixture *f = *state;
        struct json_object *r;

        sample(f, 5000, 7000, T0);
        sample(f, 5000, 7000, T0 + 60);
        r = report(f, "week", T0 + 60);
        assert_int_equal(total(r, "in_bytes"), 5000);
        assert_int_equal(total(r, "out_bytes"), 7000);
        assert_int_equal(json_object_array_length(json_object_object_get(r, "rows")), 1);
        json_object_put(r);
}

static void test_periods(void **state)
{
        struct fixture *f = *state;
        struct json_object *r;
        uint64_t in = 0;

        /* One sample a day for 400 days back, 1000 bytes each. */
        for (int d = 400; d >= 0; d--) {
                in += 1000;
                sample(f, in, 0, T0 - (int64_t)d * 86400);
        }
        r = report(f, "day", T0);
        assert_int_equal(total(r, "in_bytes"), 1000);
        assert_string_equal(json_object_get_string(json_object_object_get(r, "period")), "day");
        json_object_put(r);
        r = report(f, "week", T0);
        assert_int_equal(total(r, "in_bytes"), 7000);
        assert_int_equal(json_object_array_length(json_object_object_get(r, "rows")), 7);
        json_object_put(r);
        r = report(f, "month", T0);
        assert_int_equal(total(r, "in_bytes"), 30000);
        json_object_put(r);
        /* From 2025-12-01 to 2026-11-23: 358 days. */
        r = report(f, "year", T0);
        assert_int_equal(json_object_array_length(json_object_object_get(r, "rows")), 12);
        assert_int_equal(total(r, "in_bytes"), 358000);
        assert_int_equal(json_object_get_int64(json_object_object_get(r, "from")), 1764547200);
        json_object_put(r);
}

static void test_unknown_period_refused(void **state)
{
        enum traffic_period p = TRAFFIC_DAY;

        (void)state;
        assert_int_equal(traffic_period_parse("fortnight", &p), -EINVAL);
        assert_int_equal(traffic_period_parse("", &p), -EINVAL);
        assert_int_equal(p, TRAFFIC_DAY);
}

static void test_prune_keeps_daily(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        int64_t old = T0 - 100 * 86400;

        sample(f, 1000, 0, old);
        sample(f, 2000, 0, T0);
        assert_int_equal(traffic_prune(f->store, T0, &err), 0);
        assert_int_equal(bucket(f, 300, old - old % 300, "in_bytes"), -1);
        assert_int_equal(bucket(f, 3600, old - old % 3600, "in_bytes"), -1);
        assert_int_equal(bucket(f, 86400, old - old % 86400, "in_bytes"), 1000);
        assert_int_equal(bucket(f, 300, T0 - T0 % 300, "in_bytes"), 1000);
}

static void test_counters_go_with_the_service(void **state)
{
        struct fixture *f = *state;
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        sample(f, 1000, 0, T0);
        assert_int_equal(sqlite3_exec(store_db(f->store), "DELETE FROM services", NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(store_prepare(f->store, "SELECT (SELECT count(*) FROM traffic_buckets) + "
                                                 "(SELECT count(*) FROM traffic_counters)", &stmt, NULL), 0);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(stmt, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_growth_lands_in_every_bucket_size, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset_is_detected_not_subtracted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_same_sample_twice_adds_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_periods, setup, teardown),
                cmocka_unit_test(test_unknown_period_refused),
                cmocka_unit_test_setup_teardown(test_prune_keeps_daily, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counters_go_with_the_service, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
