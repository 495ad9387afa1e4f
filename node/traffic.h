/* Per-service traffic in SQLite: samples of a guest port's counters become
 * 5-minute, hourly and daily buckets (UTC), so that totals survive restarts
 * of the guest, of vpsd and of the node. Counters only grow while their
 * port lives; a sample lower than the last one means they were made anew
 * (a rebuilt table, a rebooted node), and its whole value is new traffic:
 * a reset is detected, never subtracted. */
#pragma once

#include <json-c/json.h>
#include <stdint.h>

#include "common/error.h"
#include "node/store.h"

/* As the customer sees it: in = to the guest, out = from the guest. */
struct traffic_counters {
        uint64_t in_bytes, in_packets;
        uint64_t out_bytes, out_packets;
};

/* Adds what the counters grew by since this service's last sample into
 * its buckets for time `at`, and keeps them as the new last sample. One
 * transaction (its own, or the caller's when one is open): a crash never
 * counts a sample twice. */
int traffic_record(struct store *store, int64_t service_id, const struct traffic_counters *now, int64_t at,
                   struct error *err);

/* Drops buckets past their use: 5-minute ones after 2 days, hourly ones
 * after 90 days. Daily ones stay for the service's life. */
int traffic_prune(struct store *store, int64_t now, struct error *err);

enum traffic_period {
        TRAFFIC_DAY,   /* the last 24 hours, hour by hour */
        TRAFFIC_WEEK,  /* the last 7 days, day by day */
        TRAFFIC_MONTH, /* the last 30 days, day by day */
        TRAFFIC_YEAR,  /* the last 12 months, month by month */
};

/* "day", "week", "month", "year"; -EINVAL for anything else. */
int traffic_period_parse(const char *name, enum traffic_period *ret_period);

/* {"period", "from", "to", "rows": [{"start", "in_bytes", "out_bytes",
 * "in_packets", "out_packets"}…], "total": {…}} for the period that ends
 * at now; rows only where there was traffic. */
int traffic_report_json(struct store *store, int64_t service_id, enum traffic_period period, int64_t now,
                        struct json_object **ret_report, struct error *err);
