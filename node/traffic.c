#include "traffic.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/util.h"

/* Bucket sizes in seconds, as stored in traffic_buckets.size. */
static const int64_t bucket_sizes[] = { 300, 3600, 86400 };

#define DAY 86400
#define HOUR 3600

static int fail(struct store *store, struct error *err, const char *what)
{
        sqlite3 *db = store_db(store);
        int r = error_set(err, -EIO, "traffic: %s: %s", what, sqlite3_errmsg(db));

        if (!sqlite3_get_autocommit(db))
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
        return r;
}

/* What the counters grew by since last; all of now when they were reset. */
static struct traffic_counters growth(const struct traffic_counters *last, const struct traffic_counters *now)
{
        if (now->in_bytes < last->in_bytes || now->in_packets < last->in_packets ||
            now->out_bytes < last->out_bytes || now->out_packets < last->out_packets)
                return *now;
        return (struct traffic_counters){
                .in_bytes = now->in_bytes - last->in_bytes,
                .in_packets = now->in_packets - last->in_packets,
                .out_bytes = now->out_bytes - last->out_bytes,
                .out_packets = now->out_packets - last->out_packets,
        };
}

static void bind_counters(sqlite3_stmt *stmt, int first, const struct traffic_counters *c)
{
        sqlite3_bind_int64(stmt, first, (int64_t)c->in_bytes);
        sqlite3_bind_int64(stmt, first + 1, (int64_t)c->in_packets);
        sqlite3_bind_int64(stmt, first + 2, (int64_t)c->out_bytes);
        sqlite3_bind_int64(stmt, first + 3, (int64_t)c->out_packets);
}

static int last_sample(struct store *store, int64_t service_id, struct traffic_counters *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(store,
                              "SELECT in_bytes, in_packets, out_bytes, out_packets FROM traffic_counters "
                              "WHERE service_id = ?1",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        r = sqlite3_step(stmt);
        if (r == SQLITE_DONE) {
                *ret = (struct traffic_counters){ 0 };
                return 0;
        }
        if (r != SQLITE_ROW)
                return -EIO;
        *ret = (struct traffic_counters){
                .in_bytes = (uint64_t)sqlite3_column_int64(stmt, 0),
                .in_packets = (uint64_t)sqlite3_column_int64(stmt, 1),
                .out_bytes = (uint64_t)sqlite3_column_int64(stmt, 2),
                .out_packets = (uint64_t)sqlite3_column_int64(stmt, 3),
        };
        return 0;
}

static int add_to_buckets(struct store *store, int64_t service_id, const struct traffic_counters *d, int64_t at)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(store,
                          "INSERT INTO traffic_buckets (service_id, size, start, in_bytes, in_packets, out_bytes, "
                          "out_packets) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                          "ON CONFLICT (service_id, size, start) DO UPDATE SET "
                          "in_bytes = in_bytes + excluded.in_bytes, in_packets = in_packets + excluded.in_packets, "
                          "out_bytes = out_bytes + excluded.out_bytes, "
                          "out_packets = out_packets + excluded.out_packets",
                          &stmt, NULL) < 0)
                return -EIO;
        for (size_t i = 0; i < ARRAY_SIZE(bucket_sizes); i++) {
                sqlite3_reset(stmt);
                sqlite3_bind_int64(stmt, 1, service_id);
                sqlite3_bind_int64(stmt, 2, bucket_sizes[i]);
                sqlite3_bind_int64(stmt, 3, at - at % bucket_sizes[i]);
                bind_counters(stmt, 4, d);
                if (sqlite3_step(stmt) != SQLITE_DONE)
                        return -EIO;
        }
        return 0;
}

int traffic_record(struct store *store, int64_t service_id, const struct traffic_counters *now, int64_t at,
                   struct error *err)
{
        sqlite3 *db = store_db(store);
        cleanup_stmt sqlite3_stmt *keep = NULL;
        struct traffic_counters last, d;
        bool own = sqlite3_get_autocommit(db); /* else the caller's transaction holds this */

        if (at < 0)
                return error_set(err, -EINVAL, "traffic: a sample before 1970");
        if (own && sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return fail(store, err, "begin");
        if (last_sample(store, service_id, &last, NULL) < 0)
                return fail(store, err, "last sample");
        d = growth(&last, now);
        if ((d.in_bytes || d.in_packets || d.out_bytes || d.out_packets) &&
            add_to_buckets(store, service_id, &d, at) < 0)
                return fail(store, err, "buckets");
        if (store_prepare(store,
                          "INSERT OR REPLACE INTO traffic_counters (service_id, in_bytes, in_packets, out_bytes, "
                          "out_packets, sampled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                          &keep, NULL) < 0)
                return fail(store, err, "prepare");
        sqlite3_bind_int64(keep, 1, service_id);
        bind_counters(keep, 2, now);
        sqlite3_bind_int64(keep, 6, at);
        if (sqlite3_step(keep) != SQLITE_DONE)
                return fail(store, err, "keep the sample");
        if (own && sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK)
                return fail(store, err, "commit");
        return 0;
}

int traffic_prune(struct store *store, int64_t now, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(store,
                              "DELETE FROM traffic_buckets WHERE (size = 300 AND start < ?1) "
                              "OR (size = 3600 AND start < ?2)",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, now - 2 * DAY);
        sqlite3_bind_int64(stmt, 2, now - 90 * DAY);
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return fail(store, err, "prune");
        return 0;
}

static const char *const period_names[] = {
        [TRAFFIC_DAY] = "day", [TRAFFIC_WEEK] = "week", [TRAFFIC_MONTH] = "month", [TRAFFIC_YEAR] = "year"
};

int traffic_period_parse(const char *name, enum traffic_period *ret_period)
{
        for (size_t i = 0; i < ARRAY_SIZE(period_names); i++)
                if (strcmp(name, period_names[i]) == 0) {
                        *ret_period = (enum traffic_period)i;
                        return 0;
                }
        return -EINVAL;
}

static struct json_object *counters_json(int64_t in_bytes, int64_t out_bytes, int64_t in_packets,
                                         int64_t out_packets)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "in_bytes", json_object_new_int64(in_bytes));
        json_object_object_add(o, "out_bytes", json_object_new_int64(out_bytes));
        json_object_object_add(o, "in_packets", json_object_new_int64(in_packets));
        json_object_object_add(o, "out_packets", json_object_new_int64(out_packets));
        return o;
}

int traffic_report_json(struct store *store, int64_t service_id, enum traffic_period period, int64_t now,
                        struct json_object **ret_report, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *report = json_object_new_object();
        struct json_object *rows = json_object_new_array();
        int64_t size = period == TRAFFIC_DAY ? HOUR : DAY, from, total[4] = { 0 };
        int r;

        switch (period) {
        case TRAFFIC_DAY:
                from = now - now % HOUR - 23 * HOUR;
                break;
        case TRAFFIC_WEEK:
                from = now - now % DAY - 6 * DAY;
                break;
        case TRAFFIC_MONTH:
                from = now - now % DAY - 29 * DAY;
                break;
        default: {
                /* The first day of the month eleven months back, UTC. */
                struct tm tm;
                time_t t = (time_t)now;
                gmtime_r(&t, &tm);
                tm.tm_mday = 1;
                tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                tm.tm_mon -= 11;
                from = (int64_t)timegm(&tm);
        }
        }
        json_object_object_add(report, "period", json_object_new_string(period_names[period]));
        json_object_object_add(report, "from", json_object_new_int64(from));
        json_object_object_add(report, "to", json_object_new_int64(now));
        json_object_object_add(report, "rows", rows);
        /* A year is the daily buckets summed by calendar month. */
        r = store_prepare(store,
                          "SELECT CASE WHEN ?4 THEN CAST(strftime('%s', start, 'unixepoch', 'start of month') "
                          "AS INTEGER) ELSE start END AS key, "
                          "sum(in_bytes), sum(out_bytes), sum(in_packets), sum(out_packets) "
                          "FROM traffic_buckets WHERE service_id = ?1 AND size = ?2 AND start >= ?3 AND start <= ?5 "
                          "GROUP BY key ORDER BY key",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        sqlite3_bind_int64(stmt, 2, size);
        sqlite3_bind_int64(stmt, 3, from);
        sqlite3_bind_int(stmt, 4, period == TRAFFIC_YEAR);
        sqlite3_bind_int64(stmt, 5, now);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                struct json_object *row;
                int64_t v[4];
                for (int i = 0; i < 4; i++) {
                        v[i] = sqlite3_column_int64(stmt, i + 1);
                        total[i] += v[i];
                }
                row = counters_json(v[0], v[1], v[2], v[3]);
                json_object_object_add(row, "start", json_object_new_int64(sqlite3_column_int64(stmt, 0)));
                json_object_array_add(rows, row);
        }
        if (r != SQLITE_DONE)
                return fail(store, err, "report");
        json_object_object_add(report, "total", counters_json(total[0], total[1], total[2], total[3]));
        *ret_report = steal_pointer(&report);
        return 0;
}
