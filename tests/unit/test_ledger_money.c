/* The ledger's money core, pure (billing-sync/money.h, ledger_lease.h, ipam.h):
 * wallet and credit log, pro-rata to the cent with its rounding in the
 * provider's favour, calendar cycles (month ends, leap years), renewal
 * decisions, the promise to pay, address pools and node choice. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "billing-sync/ipam.h"
#include "billing-sync/ledger_lease.h"
#include "billing-sync/money.h"
#include "common/util.h"

#define FEB_2024 INT64_C(1706745600) /* 2024-02-01 00:00 UTC: a 29-day month */
#define MAR_2024 INT64_C(1709251200)
#define FEB_2023 INT64_C(1675209600) /* 28 days */
#define MAR_2023 INT64_C(1677628800)
#define JAN_2025 INT64_C(1735689600) /* 31 days */
#define FEB_2025 INT64_C(1738368000)
#define DAY 86400

static void test_wallet(void **state)
{
        struct error err = { 0 };
        int64_t b = -1;

        (void)state;
        assert_int_equal(money_wallet_apply(0, 2500, &b, &err), 0);
        assert_int_equal(b, 2500);
        assert_int_equal(money_wallet_apply(b, -2500, &b, &err), 0);
        assert_int_equal(b, 0);
        /* Never below zero, not by a cent; a refusal leaves the result alone. */
        assert_int_equal(money_wallet_apply(1000, -1001, &b, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "insufficient balance"));
        assert_int_equal(b, 0);
        assert_int_equal(money_wallet_apply(0, 0, &b, &err), -ERANGE);
        assert_int_equal(money_wallet_apply(0, MONEY_AMOUNT_MAX + 1, &b, &err), -ERANGE);
        assert_int_equal(money_wallet_apply(MONEY_BALANCE_MAX, 1, &b, &err), -ERANGE);
        assert_int_equal(money_wallet_apply(-5, 10, &b, &err), -ERANGE);
}

static void test_credit_log(void **state)
{
        struct money_log_entry log[] = { { 5000, 5000 }, { -1999, 3001 }, { -3001, 0 }, { 250, 250 } };
        struct error err = { 0 };

        (void)state;
        assert_int_equal(money_log_verify(log, ARRAY_SIZE(log), 250, &err), 0);
        assert_int_equal(money_log_verify(log, 0, 0, &err), 0);
        assert_int_equal(money_log_verify(log, ARRAY_SIZE(log), 251, &err), -EBADMSG);
        log[1].balance_after = 3000;
        assert_int_equal(money_log_verify(log, ARRAY_SIZE(log), 250, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "entry 2"));
        log[1] = (struct money_log_entry){ -6000, -1000 };
        assert_int_equal(money_log_verify(log, 2, -1000, &err), -ENOSPC);
}

static int64_t prorata(int64_t old_price, int64_t new_price, int64_t start, int64_t end, int64_t now)
{
        struct error err = { 0 };
        int64_t amount = INT64_MIN;

        assert_int_equal(money_prorata(old_price, new_price, start, end, now, &amount, &err), 0);
        return amount;
}

static void test_prorata_to_the_cent(void **state)
{
        (void)state;
        /* Half of February 2024 (15 of 29 days left): 1000 * 15/29 = 517.24. */
        assert_int_equal(prorata(1000, 2000, FEB_2024, MAR_2024, FEB_2024 + 14 * DAY), 518);
        assert_int_equal(prorata(2000, 1000, FEB_2024, MAR_2024, FEB_2024 + 14 * DAY), -517);
        /* The same date in 2023, a 28-day February: exactly half. */
        assert_int_equal(prorata(1000, 2000, FEB_2023, MAR_2023, FEB_2023 + 14 * DAY), 500);
        assert_int_equal(prorata(2000, 1000, FEB_2023, MAR_2023, FEB_2023 + 14 * DAY), -500);
        /* Same day as the order, an hour in, in a 31-day month: 998.66. */
        assert_int_equal(prorata(1000, 2000, JAN_2025, FEB_2025, JAN_2025 + 3600), 999);
        assert_int_equal(prorata(2000, 1000, JAN_2025, FEB_2025, JAN_2025 + 3600), -998);
        /* At the very start: the whole difference. */
        assert_int_equal(prorata(1000, 2999, JAN_2025, FEB_2025, JAN_2025), 1999);
        assert_int_equal(prorata(2999, 1000, JAN_2025, FEB_2025, JAN_2025), -1999);
        /* The last second: a charge is at least a cent, a credit is nothing. */
        assert_int_equal(prorata(1000, 2000, JAN_2025, FEB_2025, FEB_2025 - 1), 1);
        assert_int_equal(prorata(2000, 1000, JAN_2025, FEB_2025, FEB_2025 - 1), 0);
        /* At or after the end, and equal prices: nothing. */
        assert_int_equal(prorata(1000, 2000, JAN_2025, FEB_2025, FEB_2025), 0);
        assert_int_equal(prorata(1000, 2000, JAN_2025, FEB_2025, FEB_2025 + DAY), 0);
        assert_int_equal(prorata(1500, 1500, JAN_2025, FEB_2025, JAN_2025 + DAY), 0);
        /* Large prices do not overflow: 1e11 cents over a year. */
        assert_int_equal(prorata(0, MONEY_AMOUNT_MAX, 0, 365 * DAY, 365 * DAY - 1), 3171);
}

static void test_prorata_refusals(void **state)
{
        struct error err = { 0 };
        int64_t amount = 7;

        (void)state;
        assert_int_equal(money_prorata(1, 2, 100, 100, 100, &amount, &err), -EINVAL);
        assert_int_equal(money_prorata(1, 2, 100, 200, 99, &amount, &err), -EINVAL);
        assert_int_equal(money_prorata(-1, 2, 100, 200, 150, &amount, &err), -ERANGE);
        assert_int_equal(amount, 7);
}

static void test_money_text(void **state)
{
        char buf[32];
        int64_t c = 0;

        (void)state;
        money_format(buf, sizeof(buf), 123456);
        assert_string_equal(buf, "1234.56");
        money_format(buf, sizeof(buf), -5);
        assert_string_equal(buf, "-0.05");
        assert_int_equal(money_parse("12", &c), 0);
        assert_int_equal(c, 1200);
        assert_int_equal(money_parse("12.3", &c), 0);
        assert_int_equal(c, 1230);
        assert_int_equal(money_parse("0.07", &c), 0);
        assert_int_equal(c, 7);
        assert_int_equal(money_parse("1.234", &c), -EINVAL);
        assert_int_equal(money_parse("-1", &c), -EINVAL);
        assert_int_equal(money_parse("1.", &c), -EINVAL);
        assert_int_equal(money_parse(".5", &c), -EINVAL);
        assert_int_equal(money_parse("1e3", &c), -EINVAL);
}

static void test_calendar_months(void **state)
{
        (void)state;
        /* Ordered on 31 January 2024 at noon: month ends, leap February. */
        assert_int_equal(ledger_lease_day_of_month(1706702400), 31);
        assert_int_equal(ledger_lease_add_months(1706702400, 1, 31), 1709208000);  /* 2024-02-29 12:00 */
        assert_int_equal(ledger_lease_add_months(1709208000, 1, 31), 1711886400);  /* 2024-03-31: the anchor holds */
        assert_int_equal(ledger_lease_add_months(1711886400, 1, 31), 1714478400);  /* 2024-04-30 */
        assert_int_equal(ledger_lease_add_months(1675166400, 1, 31), 1677585600);  /* 2023-01-31 -> 2023-02-28 */
        /* Century rules: 2000 is a leap year, 2100 is not. */
        assert_int_equal(ledger_lease_add_months(949190400, 1, 30), 951782400);    /* 2000-01-30 -> 2000-02-29 */
        assert_int_equal(ledger_lease_add_months(4104950400, 1, 30), 4107456000);  /* 2100-01-30 -> 2100-02-28 */
        /* Across a year, and a year at once. */
        assert_int_equal(ledger_lease_add_months(1734220800, 1, 15), 1736899200);  /* 2024-12-15 -> 2025-01-15 */
        assert_int_equal(ledger_lease_add_months(1734220800, 12, 15), 1765756800); /* -> 2025-12-15 */
}

static void test_lease_decisions(void **state)
{
        struct lease l;
        int64_t end, ret = LEASE_RETENTION_DEFAULT;

        (void)state;
        ledger_lease_start(&l, JAN_2025, 1, 1000, true);
        end = l.paid_until;
        assert_int_equal(end, FEB_2025);
        assert_int_equal(ledger_lease_decide(&l, 0, end - 1, ret), LEASE_KEEP);
        /* Due: renew from the wallet if it can, else suspend. */
        assert_int_equal(ledger_lease_decide(&l, 1000, end, ret), LEASE_RENEW);
        assert_int_equal(ledger_lease_decide(&l, 999, end, ret), LEASE_SUSPEND);
        l.auto_renew = false;
        assert_int_equal(ledger_lease_decide(&l, 5000, end, ret), LEASE_SUSPEND);
        /* Suspended: funds during retention renew (auto-renew on), then it ends. */
        l.state = LEASE_SUSPENDED;
        l.auto_renew = true;
        assert_int_equal(ledger_lease_decide(&l, 999, end + ret - 1, ret), LEASE_KEEP);
        assert_int_equal(ledger_lease_decide(&l, 1000, end + ret - 1, ret), LEASE_RENEW);
        assert_int_equal(ledger_lease_decide(&l, 1000, end + ret, ret), LEASE_TERMINATE);
        l.state = LEASE_TERMINATED;
        assert_int_equal(ledger_lease_decide(&l, 1000, end + 100 * DAY, ret), LEASE_KEEP);
        /* A renewal starts where the paid cycle ended. */
        l.state = LEASE_ACTIVE;
        ledger_lease_renew(&l);
        assert_int_equal(l.period_start, FEB_2025);
        assert_int_equal(l.paid_until, ledger_lease_add_months(FEB_2025, 1, 1));
}

static void test_promise_to_pay(void **state)
{
        struct error err = { 0 };
        struct lease l;
        int64_t end;

        (void)state;
        ledger_lease_start(&l, JAN_2025, 1, 1000, true);
        end = l.paid_until;
        /* Only within the last 3 days before the end. */
        assert_int_equal(ledger_lease_promise(&l, end - 3 * DAY - 1, &err), -EPERM);
        assert_non_null(strstr(err.msg, "last 3 days"));
        assert_int_equal(ledger_lease_promise(&l, end, &err), -EPERM);
        assert_int_equal(ledger_lease_promise(&l, end - 3 * DAY, &err), 0);
        assert_int_equal(ledger_lease_end(&l), end + 7 * DAY);
        /* Once per cycle. */
        assert_int_equal(ledger_lease_promise(&l, end - 1, &err), -EPERM);
        assert_non_null(strstr(err.msg, "already"));
        /* Nothing is due until the promise ends; then the cycle is charged
         * from the original due date. */
        assert_int_equal(ledger_lease_decide(&l, 0, end + 7 * DAY - 1, LEASE_RETENTION_DEFAULT), LEASE_KEEP);
        assert_int_equal(ledger_lease_decide(&l, 0, end + 7 * DAY, LEASE_RETENTION_DEFAULT), LEASE_SUSPEND);
        assert_int_equal(ledger_lease_decide(&l, 1000, end + 7 * DAY, LEASE_RETENTION_DEFAULT), LEASE_RENEW);
        ledger_lease_renew(&l);
        assert_int_equal(l.period_start, end);
        assert_int_equal(l.promised_until, 0);
        /* A new cycle allows a new promise; a suspended lease none. */
        assert_int_equal(ledger_lease_promise(&l, l.paid_until - DAY, &err), 0);
        l.promised_until = 0;
        l.state = LEASE_SUSPENDED;
        assert_int_equal(ledger_lease_promise(&l, l.paid_until - DAY, &err), -EPERM);
}

static void test_ipam(void **state)
{
        struct ipam_pool p4, p6;
        struct error err = { 0 };
        uint8_t used[8][16], got[16];
        char text[IPAM_TEXT_SIZE];

        (void)state;
        assert_int_equal(ipam_pool_parse("192.0.2.0/29", "192.0.2.1", &p4, &err), 0);
        /* .1 is the gateway: .2 to .6 are for services, .7 is broadcast. */
        for (int i = 0; i < 5; i++) {
                assert_int_equal(ipam_allocate(&p4, (const uint8_t(*)[16])used, (size_t)i, got, &err), 0);
                ipam_address_format(4, got, text);
                assert_int_equal(text[8], '2' + i);
                memcpy(used[i], got, 16);
        }
        assert_int_equal(ipam_allocate(&p4, (const uint8_t(*)[16])used, 5, got, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "192.0.2.0/29"));
        /* Freeing .4 makes it the next one. */
        memcpy(used[2], used[4], 16);
        assert_int_equal(ipam_allocate(&p4, (const uint8_t(*)[16])used, 4, got, &err), 0);
        ipam_address_format(4, got, text);
        assert_string_equal(text, "192.0.2.4");

        assert_int_equal(ipam_pool_parse("2001:db8:1::/64", "2001:db8:1::1", &p6, &err), 0);
        assert_int_equal(ipam_allocate(&p6, NULL, 0, got, &err), 0);
        ipam_address_format(6, got, text);
        assert_string_equal(text, "2001:db8:1::2");
        assert_int_equal(ipam_address_parse(6, "2001:db8:1::3", used[0]), 0);
        assert_int_equal(ipam_address_parse(6, "2001:db8:1::2", used[1]), 0);
        assert_int_equal(ipam_allocate(&p6, (const uint8_t(*)[16])used, 2, got, &err), 0);
        ipam_address_format(6, got, text);
        assert_string_equal(text, "2001:db8:1::4");

        assert_int_equal(ipam_pool_parse("192.0.2.1/24", "192.0.2.2", &p4, &err), -EINVAL); /* host bits */
        assert_int_equal(ipam_pool_parse("192.0.2.0/24", "192.0.3.1", &p4, &err), -EINVAL);
        assert_int_equal(ipam_pool_parse("192.0.2.0/24", "192.0.2.255", &p4, &err), -EINVAL);
        assert_int_equal(ipam_pool_parse("192.0.2.0/31", "192.0.2.1", &p4, &err), -EINVAL);
        assert_int_equal(ipam_pool_parse("2001:db8::/32", "2001:db8::1", &p6, &err), -EINVAL);
        assert_int_equal(ipam_pool_parse("192.0.2.0/+24", "192.0.2.1", &p4, &err), -EINVAL);
        assert_int_equal(ipam_pool_parse("nonsense", "192.0.2.1", &p4, &err), -EINVAL);
}

static void test_placement(void **state)
{
        struct placement_node nodes[] = {
                { 4, 4096, 100, true, true },
                { 16, 8192, 50, true, false },
                { 16, 8192, 500, true, true },
        };
        struct placement_need need = { 2, 2048, 40, true, true };
        struct error err = { 0 };

        (void)state;
        assert_int_equal(placement_choose(nodes, 3, &need, &err), 2);    /* node 1 has no IPv6 */
        need.ipv6 = false;
        assert_int_equal(placement_choose(nodes, 3, &need, &err), 1);    /* most free memory, first of equals */
        need.disk_gib = 200;
        assert_int_equal(placement_choose(nodes, 3, &need, &err), 2);
        need.memory_mib = 8193;
        assert_int_equal(placement_choose(nodes, 3, &need, &err), -ENOSPC);
        assert_int_equal(placement_choose(nodes, 0, &need, &err), -ENOSPC);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wallet),
                cmocka_unit_test(test_credit_log),
                cmocka_unit_test(test_prorata_to_the_cent),
                cmocka_unit_test(test_prorata_refusals),
                cmocka_unit_test(test_money_text),
                cmocka_unit_test(test_calendar_months),
                cmocka_unit_test(test_lease_decisions),
                cmocka_unit_test(test_promise_to_pay),
                cmocka_unit_test(test_ipam),
                cmocka_unit_test(test_placement),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
