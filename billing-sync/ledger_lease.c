#include "ledger_lease.h"

#include <errno.h>

/* Days since 1970-01-01 <-> civil date, proleptic Gregorian (H. Hinnant,
 * "chrono-Compatible Low-Level Date Algorithms"): exact for every year,
 * leap years included, with no time zone or libc involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
        int64_t era, doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
        *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
        *y = yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
        static const unsigned days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

        return m == 2 && leap ? 29 : days[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

unsigned ledger_lease_day_of_month(int64_t t)
{
        int64_t y;
        unsigned m, d;

        civil_from_days(floor_div(t, 86400), &y, &m, &d);
        return d;
}

int64_t ledger_lease_add_months(int64_t t, unsigned months, unsigned anchor_day)
{
        int64_t day = floor_div(t, 86400), second = t - day * 86400, y;
        unsigned m, d, index;

        civil_from_days(day, &y, &m, &d);
        index = m - 1 + months;
        y += index / 12;
        m = index % 12 + 1;
        d = anchor_day < days_in_month(y, m) ? anchor_day : days_in_month(y, m);
        return days_from_civil(y, m, d) * 86400 + second;
}

void ledger_lease_start(struct lease *l, int64_t now, unsigned cycle_months, int64_t price, bool auto_renew)
{
        *l = (struct lease){ .state = LEASE_ACTIVE,
                             .period_start = now,
                             .cycle_months = cycle_months,
                             .anchor_day = ledger_lease_day_of_month(now),
                             .price = price,
                             .auto_renew = auto_renew };
        l->paid_until = ledger_lease_add_months(now, cycle_months, l->anchor_day);
}

int64_t ledger_lease_end(const struct lease *l)
{
        return l->promised_until > l->paid_until ? l->promised_until : l->paid_until;
}

enum lease_action ledger_lease_decide(const struct lease *l, int64_t balance, int64_t now, int64_t retention)
{
        int64_t end = ledger_lease_end(l);
        bool can_renew = l->auto_renew && balance >= l->price;

        if (l->state == LEASE_TERMINATED || now < end)
                return LEASE_KEEP;
        if (l->state == LEASE_ACTIVE)
                return can_renew ? LEASE_RENEW : LEASE_SUSPEND;
        if (now >= end + retention)
                return LEASE_TERMINATE;
        return can_renew ? LEASE_RENEW : LEASE_KEEP;
}

void ledger_lease_renew(struct lease *l)
{
        l->period_start = l->paid_until;
        l->paid_until = ledger_lease_add_months(l->paid_until, l->cycle_months, l->anchor_day);
        l->promised_until = 0;
}

int ledger_lease_promise(struct lease *l, int64_t now, struct error *err)
{
        if (l->state != LEASE_ACTIVE)
                return error_set(err, -EPERM, "promise to pay: the service is not active");
        if (l->promised_until != 0)
                return error_set(err, -EPERM, "promise to pay: already made in this cycle");
        if (now >= l->paid_until)
                return error_set(err, -EPERM, "promise to pay: the cycle has ended");
        if (now < l->paid_until - LEASE_PROMISE_WINDOW)
                return error_set(err, -EPERM, "promise to pay: only in the last 3 days of the cycle");
        l->promised_until = l->paid_until + LEASE_PROMISE_EXTENSION;
        return 0;
}
