/*
 * tly_money.h — integer money: the one rounding helper of Tally and
 * overflow-checked arithmetic.
 *
 * Money is int64_t minor units, rates are basis points (1/10000). Every
 * rounding in the project goes through tly_round_half_even ("rhe" in SPEC
 * section 6); every sum or product of money goes through the checked helpers
 * below, which return TLY_OVERFLOW instead of wrapping (signed overflow is
 * undefined behaviour in C). No floating point anywhere.
 */
#ifndef TLY_MONEY_H
#define TLY_MONEY_H

#include <stdint.h>

#include "tly_err.h"

/* One basis point is 1/10000. */
#define TLY_BPS_DENOM INT64_C(10000)

/*
 * rhe(num / den): the exact quotient rounded to the nearest integer, ties to
 * the even neighbour (banker's rounding), for any num and den > 0 (den ≤ 0
 * is a programmer error). Examples: 5/2 → 2, 7/2 → 4, -5/2 → -2, -7/2 → -4,
 * 5/3 → 2. Never overflows.
 */
int64_t tly_round_half_even(int64_t num, int64_t den);

/* *out = a + b, a - b, a * b. TLY_OK, or TLY_OVERFLOW (then *out is left
 * unchanged). out may alias a or b's storage. */
tly_err tly_money_add(int64_t a, int64_t b, int64_t *out);
tly_err tly_money_sub(int64_t a, int64_t b, int64_t *out);
tly_err tly_money_mul(int64_t a, int64_t b, int64_t *out);

/* *acc += x, checked: the common accumulate step. */
tly_err tly_money_addto(int64_t *acc, int64_t x);

/*
 * An exact sum of products x_i × bps_i / 10000, kept as whole units plus a
 * numerator of ten-thousandths, so that a sum of slices at different rates
 * is rounded once (SPEC section 6, incremental rebates) and no product ever
 * needs more than 64 bits. Start from {0, 0}.
 */
typedef struct tly_bps_sum {
    int64_t whole; /* Σ trunc(x_i / 10000) × bps_i */
    int64_t frac;  /* Σ (x_i mod 10000) × bps_i, in 1/10000 units */
} tly_bps_sum;

/* Adds x × bps / 10000 exactly; bps in 0..10000 (else programmer error). */
tly_err tly_bps_sum_add(tly_bps_sum *s, int64_t x, int32_t bps);

/* rhe of the exact sum. */
tly_err tly_bps_sum_round(const tly_bps_sum *s, int64_t *out);

/* rhe(x × bps / 10000) for one term; |result| ≤ |x|, so it cannot overflow. */
int64_t tly_money_bps(int64_t x, int32_t bps);

/*
 * Currency conversion [F2]: *out = rhe(amount × units / 10^scale × 10^ediff)
 * exactly, for amount ≥ 0, a rate units / 10^scale > 0 (scale 0..9) and
 * the difference of the minor-unit exponents ediff = e_to − e_from
 * (−9..9). TLY_OVERFLOW when the result leaves int64.
 */
tly_err tly_money_convert(int64_t amount, int64_t units, int32_t scale, int32_t ediff,
                          int64_t *out);

#endif
