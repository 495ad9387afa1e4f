/* The ledger's money arithmetic, pure: wallet movements in integer cents
 * and the pro-rata of a plan change (docs/ledger.md, "Money rules").
 *
 * Rounding, always in the provider's favour, to the cent: a pro-rata
 * charge rounds up, a pro-rata credit rounds down. So a change and its
 * reverse never pay the customer, and each amount is exact to the cent
 * against the formula
 *     amount = |new price - old price| * seconds left / seconds of the cycle
 * where the cycle is the current one as it really is (a calendar month has
 * 28 to 31 days). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define MONEY_AMOUNT_MAX INT64_C(100000000000)     /* one movement: 1e9 currency units */
#define MONEY_BALANCE_MAX INT64_C(1000000000000000) /* one wallet */

/* The balance after adding amount (negative: a debit). -ENOSPC when the
 * balance would go below zero ("insufficient balance"), -ERANGE when
 * amount or the result is beyond the limits above. */
int money_wallet_apply(int64_t balance, int64_t amount, int64_t *ret_balance, struct error *err);

struct money_log_entry {
        int64_t amount;        /* signed cents */
        int64_t balance_after;
};

/* The credit log of a wallet, oldest first, against its balance: every
 * entry follows from the one before (starting at 0), none is negative or
 * zero, and the last one's balance is the wallet's. */
int money_log_verify(const struct money_log_entry *entries, size_t n, int64_t balance, struct error *err);

/* The signed amount of changing the price of a cycle [start, end) at now:
 * positive, a charge (rounded up); negative, a credit (rounded down in
 * size). 0 when the prices are equal or now is at or after end. -EINVAL
 * for a cycle that is empty or a now before its start. */
int money_prorata(int64_t old_price, int64_t new_price, int64_t start, int64_t end, int64_t now,
                  int64_t *ret_amount, struct error *err);

/* "12.34" (the currency's major unit, two decimals) into buf. */
void money_format(char *buf, size_t size, int64_t cents);
/* "12", "12.3", "12.34" -> cents; -EINVAL for anything else. */
int money_parse(const char *text, int64_t *ret_cents);
