#include "money.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int money_wallet_apply(int64_t balance, int64_t amount, int64_t *ret_balance, struct error *err)
{
        if (amount == 0 || amount > MONEY_AMOUNT_MAX || amount < -MONEY_AMOUNT_MAX)
                return error_set(err, -ERANGE, "amount %" PRId64 ": must be non-zero and at most %" PRId64
                                 " cents", amount, MONEY_AMOUNT_MAX);
        if (balance < 0 || balance > MONEY_BALANCE_MAX)
                return error_set(err, -ERANGE, "balance %" PRId64 ": out of range", balance);
        if (balance + amount < 0)
                return error_set(err, -ENOSPC, "insufficient balance: %" PRId64 " cents, %" PRId64 " needed",
                                 balance, -amount);
        if (balance + amount > MONEY_BALANCE_MAX)
                return error_set(err, -ERANGE, "the balance would exceed %" PRId64 " cents", MONEY_BALANCE_MAX);
        *ret_balance = balance + amount;
        return 0;
}

int money_log_verify(const struct money_log_entry *entries, size_t n, int64_t balance, struct error *err)
{
        int64_t running = 0;

        for (size_t i = 0; i < n; i++) {
                int64_t next;
                int r = money_wallet_apply(running, entries[i].amount, &next, err);

                if (r < 0)
                        return error_prefix(err, "credit log entry %zu", i + 1);
                if (next != entries[i].balance_after)
                        return error_set(err, -EBADMSG, "credit log entry %zu: balance %" PRId64 ", the sum says %"
                                         PRId64, i + 1, entries[i].balance_after, next);
                running = next;
        }
        if (running != balance)
                return error_set(err, -EBADMSG, "balance %" PRId64 " is not the sum of its log, %" PRId64, balance,
                                 running);
        return 0;
}

int money_prorata(int64_t old_price, int64_t new_price, int64_t start, int64_t end, int64_t now,
                  int64_t *ret_amount, struct error *err)
{
        __int128 diff, product;
        int64_t cycle, left;

        if (end <= start)
                return error_set(err, -EINVAL, "empty cycle");
        if (now < start)
                return error_set(err, -EINVAL, "the change is before the cycle starts");
        if (old_price < 0 || new_price < 0 || old_price > MONEY_AMOUNT_MAX || new_price > MONEY_AMOUNT_MAX)
                return error_set(err, -ERANGE, "price out of range");
        cycle = end - start;
        left = now >= end ? 0 : end - now;
        diff = (__int128)new_price - old_price;
        product = (diff < 0 ? -diff : diff) * left;
        if (diff > 0)
                *ret_amount = (int64_t)((product + cycle - 1) / cycle); /* a charge: up */
        else
                *ret_amount = -(int64_t)(product / cycle); /* a credit: down */
        return 0;
}

void money_format(char *buf, size_t size, int64_t cents)
{
        uint64_t abs = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;

        snprintf(buf, size, "%s%" PRIu64 ".%02" PRIu64, cents < 0 ? "-" : "", abs / 100, abs % 100);
}

int money_parse(const char *text, int64_t *ret_cents)
{
        const char *dot = strchr(text, '.');
        size_t whole_len = dot ? (size_t)(dot - text) : strlen(text);
        size_t frac_len = dot ? strlen(dot + 1) : 0;
        int64_t cents = 0;

        if (whole_len == 0 || whole_len > 12 || (dot && (frac_len == 0 || frac_len > 2)))
                return -EINVAL;
        for (size_t i = 0; i < whole_len; i++) {
                if (text[i] < '0' || text[i] > '9')
                        return -EINVAL;
                cents = cents * 10 + (text[i] - '0');
        }
        cents *= 100;
        for (size_t i = 0; i < 2; i++) {
                char c = i < frac_len ? dot[1 + i] : '0';

                if (c < '0' || c > '9')
                        return -EINVAL;
                cents += (c - '0') * (i == 0 ? 10 : 1);
        }
        *ret_cents = cents;
        return 0;
}
