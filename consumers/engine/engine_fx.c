/*
 * engine_fx.c — floor 3 (see engine_internal.h): exchange rates and
 * currency conversion (SPEC section 10 [F1] [F2] [F3] [F6]). Every shard
 * keeps every rate, by pair, in (at, seq) order; the rate in force for
 * business time t is the one with the greatest at ≤ t, of equal at the
 * one folded last. A lookup may be limited to the rates folded before a
 * seq: what the owner of a sale had when it folded it. Rates are never
 * inverted or chained [F3].
 */
#include <string.h>

#include "engine_state.h"
#include "tly_currency.h"

/* The pair from → to, or NULL. */
static eng_rate_pair *pair_find(const tly_engine *e, const char from[3], const char to[3])
{
    for (uint32_t i = 0; i < e->pair_count; i++)
        if (memcmp(e->pairs[i].from, from, 3) == 0 && memcmp(e->pairs[i].to, to, 3) == 0)
            return &e->pairs[i];
    return NULL;
}

/* The pair from → to, created (empty) when absent. */
static tly_err pair_get(tly_engine *e, const char from[3], const char to[3], eng_rate_pair **out)
{
    eng_rate_pair *p = pair_find(e, from, to);
    if (p == NULL) {
        eng_rate_pair fresh = {0};
        memcpy(fresh.from, from, 3);
        memcpy(fresh.to, to, 3);
        TRY(ENG_PUSH(e->pairs, e->pair_count, e->pair_cap, fresh));
        p = &e->pairs[e->pair_count - 1];
    }
    *out = p;
    return TLY_OK;
}

static bool rate_before(const eng_rate *a, const eng_rate *b)
{
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->seq < b->seq);
}

tly_err eng_rate_add(tly_engine *e, const char from[3], const char to[3], eng_rate r)
{
    eng_rate_pair *p;
    TRY(pair_get(e, from, to, &p));
    TRY(eng_grow((void **)&p->rates, &p->cap, p->count + 1, sizeof *p->rates));
    uint32_t i = p->count;
    while (i > 0 && rate_before(&r, &p->rates[i - 1]))
        i--;
    memmove(&p->rates[i + 1], &p->rates[i], (p->count - i) * sizeof *p->rates);
    p->rates[i] = r;
    p->count++;
    p->dirty = true;
    return TLY_OK;
}

bool eng_rate_find(const tly_engine *e, const char from[3], const char to[3], int64_t t,
                   uint64_t before_seq, eng_rate *out)
{
    const eng_rate_pair *p = pair_find(e, from, to);
    if (p == NULL)
        return false;
    /* the first rate after t, then back to one folded before before_seq */
    uint32_t lo = 0, hi = p->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->rates[mid].at_ms <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i > 0; i--) {
        if (p->rates[i - 1].seq < before_seq) {
            *out = p->rates[i - 1];
            return true;
        }
    }
    return false;
}

bool eng_fx_for(const tly_engine *e, const char from[3], const char to[3], int64_t t,
                uint64_t before_seq, eng_fx *out)
{
    if (memcmp(from, to, 3) == 0) {
        *out = ENG_FX_SAME;
        return true;
    }
    int ef, et;
    eng_rate r;
    /* a code without a minor-unit exponent converts nowhere [F6] */
    if (tly_currency_exponent(from, &ef) != TLY_OK || tly_currency_exponent(to, &et) != TLY_OK ||
        !eng_rate_find(e, from, to, t, before_seq, &r))
        return false;
    *out = (eng_fx){.units = r.units, .scale = r.scale, .ediff = et - ef};
    return true;
}

tly_err eng_fx_apply(const eng_fx *fx, int64_t amount, int64_t *out)
{
    return tly_money_convert(amount, fx->units, fx->scale, fx->ediff, out);
}

/* Cumulative conversion of a return [F4]: rhe(after × r') − rhe(before ×
 * r'), so that a full return nets its sale to exactly 0. */
tly_err eng_fx_reduction(const eng_fx *fx, int64_t before, int64_t after, int64_t *out)
{
    int64_t a, b;
    TRY(eng_fx_apply(fx, after, &a));
    TRY(eng_fx_apply(fx, before, &b));
    return tly_money_sub(a, b, out);
}
