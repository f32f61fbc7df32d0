/* tly_money.c — rounding and checked money arithmetic; see tly_money.h. */
#include "tly_money.h"
#include "tly_assert.h"

int64_t tly_round_half_even(int64_t num, int64_t den)
{
    TLY_ASSERT(den > 0);
    int64_t q = num / den;
    int64_t r = num % den;
    /* C division truncates toward zero; move to floor so that 0 ≤ r < den
     * and the tie test below is the same for negative numbers. q - 1 cannot
     * overflow: r < 0 implies num < 0 and den ≥ 2, so q > INT64_MIN / 2. */
    if (r < 0) {
        q -= 1;
        r += den;
    }
    int64_t rest = den - r; /* distance to the upper neighbour, > 0 */
    /* q + 1 cannot overflow: r > 0 implies den ≥ 2, so q ≤ INT64_MAX / 2. */
    if (r > rest || (r == rest && (q & 1) != 0))
        q += 1;
    return q;
}

tly_err tly_money_add(int64_t a, int64_t b, int64_t *out)
{
    int64_t v;
    if (__builtin_add_overflow(a, b, &v))
        return TLY_OVERFLOW;
    *out = v;
    return TLY_OK;
}

tly_err tly_money_sub(int64_t a, int64_t b, int64_t *out)
{
    int64_t v;
    if (__builtin_sub_overflow(a, b, &v))
        return TLY_OVERFLOW;
    *out = v;
    return TLY_OK;
}

tly_err tly_money_mul(int64_t a, int64_t b, int64_t *out)
{
    int64_t v;
    if (__builtin_mul_overflow(a, b, &v))
        return TLY_OVERFLOW;
    *out = v;
    return TLY_OK;
}

tly_err tly_money_addto(int64_t *acc, int64_t x)
{
    return tly_money_add(*acc, x, acc);
}

tly_err tly_bps_sum_add(tly_bps_sum *s, int64_t x, int32_t bps)
{
    TLY_ASSERT(bps >= 0 && bps <= 10000);
    /* x = q × 10000 + r with |r| < 10000 and r of x's sign: q × bps has
     * |q × bps| ≤ |x| and r × bps < 10^8, so neither product overflows. */
    int64_t q = x / TLY_BPS_DENOM;
    int64_t r = x % TLY_BPS_DENOM;
    int64_t whole, frac;
    if (tly_money_add(s->whole, q * bps, &whole) != TLY_OK ||
        tly_money_add(s->frac, r * bps, &frac) != TLY_OK)
        return TLY_OVERFLOW;
    s->whole = whole;
    s->frac = frac;
    return TLY_OK;
}

tly_err tly_bps_sum_round(const tly_bps_sum *s, int64_t *out)
{
    /* value = whole + frac / 10000. Move whole units out of frac (floor), so
     * value = base + fr / 10000 with 0 ≤ fr < 10000. A tie rounds to the
     * even neighbour of the whole value, so base's parity matters: keep it
     * in the numerator and add the even rest outside, which cannot change
     * the rounding. */
    int64_t fq = s->frac / TLY_BPS_DENOM;
    int64_t fr = s->frac % TLY_BPS_DENOM;
    if (fr < 0) {
        fq -= 1;
        fr += TLY_BPS_DENOM;
    }
    int64_t base;
    if (tly_money_add(s->whole, fq, &base) != TLY_OK)
        return TLY_OVERFLOW;
    int64_t parity = base & 1;
    return tly_money_add(base - parity,
                         tly_round_half_even(parity * TLY_BPS_DENOM + fr, TLY_BPS_DENOM), out);
}

int64_t tly_money_bps(int64_t x, int32_t bps)
{
    tly_bps_sum s = {0, 0};
    int64_t out = 0;
    /* One term cannot overflow: |result| ≤ |x|. */
    tly_err err = tly_bps_sum_add(&s, x, bps);
    if (err == TLY_OK)
        err = tly_bps_sum_round(&s, &out);
    TLY_ASSERT(err == TLY_OK);
    return out;
}

/* rhe(num / 10^k) for a 128-bit num ≥ 0 and 0 ≤ k ≤ 18. */
static unsigned __int128 rhe_pow10(unsigned __int128 num, int k)
{
    unsigned __int128 den = 1;
    for (int i = 0; i < k; i++)
        den *= 10;
    unsigned __int128 q = num / den, r = num % den, rest = den - r;
    if (r > rest || (r == rest && (q & 1) != 0))
        q += 1;
    return q;
}

tly_err tly_money_convert(int64_t amount, int64_t units, int32_t scale, int32_t ediff, int64_t *out)
{
    TLY_ASSERT(amount >= 0 && units > 0 && scale >= 0 && scale <= 9 && ediff >= -9 && ediff <= 9);
    /* amount ≤ 2^63 and units ≤ 2^63: the product fits 126 bits; a
     * positive exponent of at most 9 more would not, so it is checked. */
    unsigned __int128 v = (unsigned __int128)amount * (unsigned __int128)units;
    int32_t shift = ediff - scale; /* v × 10^shift */
    if (shift < 0) {
        v = rhe_pow10(v, -shift);
    } else {
        for (int32_t i = 0; i < shift; i++) {
            if (v > ((unsigned __int128)INT64_MAX))
                return TLY_OVERFLOW;
            v *= 10;
        }
    }
    if (v > (unsigned __int128)INT64_MAX)
        return TLY_OVERFLOW;
    *out = (int64_t)v;
    return TLY_OK;
}
