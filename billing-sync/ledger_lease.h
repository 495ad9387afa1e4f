/* A service's lease at the ledger, pure: billing cycles of calendar
 * months, what is due at a given time (renew, suspend, terminate), and
 * the promise to pay (docs/ledger.md, "Money rules").
 *
 * A cycle of N months runs from period_start to paid_until. Its end keeps
 * the order's day of the month (anchor_day) where the month has it and is
 * the month's last day where it has not: ordered on 31 January, a monthly
 * service is due on 28 (or 29) February, 31 March, 30 April … always at
 * the order's time of day (UTC). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

#define LEASE_PROMISE_WINDOW (3 * 86400)    /* a promise only in the cycle's last 3 days */
#define LEASE_PROMISE_EXTENSION (7 * 86400) /* and it gives 7 days more */
#define LEASE_RETENTION_DEFAULT (3 * 86400) /* suspended this long, then terminated */
#define LEASE_CYCLE_MONTHS_MAX 36

enum lease_state {
        LEASE_ACTIVE,
        LEASE_SUSPENDED,
        LEASE_TERMINATED,
};

struct lease {
        enum lease_state state;
        int64_t period_start;   /* the paid cycle */
        int64_t paid_until;
        int64_t promised_until; /* 0, or paid_until + 7 days once promised in this cycle */
        unsigned cycle_months;  /* 1 .. LEASE_CYCLE_MONTHS_MAX */
        unsigned anchor_day;    /* 1 .. 31 */
        int64_t price;          /* cents a cycle */
        bool auto_renew;
};

enum lease_action {
        LEASE_KEEP,      /* nothing is due */
        LEASE_RENEW,     /* charge price, then ledger_lease_renew() (and unsuspend if it ends after now) */
        LEASE_SUSPEND,   /* the lease ended unpaid */
        LEASE_TERMINATE, /* suspended through the whole retention */
};

/* t plus months calendar months, on anchor_day or the month's last day,
 * at t's time of day. */
int64_t ledger_lease_add_months(int64_t t, unsigned months, unsigned anchor_day);
/* The day of the month of t (UTC), 1 .. 31. */
unsigned ledger_lease_day_of_month(int64_t t);

/* A new lease whose first cycle starts at now. */
void ledger_lease_start(struct lease *l, int64_t now, unsigned cycle_months, int64_t price, bool auto_renew);

/* When service stops: the promise's end if one was made, else paid_until. */
int64_t ledger_lease_end(const struct lease *l);

/* What is due at now, with balance in the wallet and retention seconds
 * from the end of a lease to its termination. */
enum lease_action ledger_lease_decide(const struct lease *l, int64_t balance, int64_t now, int64_t retention);

/* Moves the lease one cycle on (the new cycle starts where the paid one
 * ended, so time spent suspended is not given back) and clears the
 * promise. */
void ledger_lease_renew(struct lease *l);

/* A promise to pay at now: refused (-EPERM, saying why) unless the lease
 * is active, has no promise in this cycle yet, and now is within the last
 * LEASE_PROMISE_WINDOW seconds before paid_until. */
int ledger_lease_promise(struct lease *l, int64_t now, struct error *err);
