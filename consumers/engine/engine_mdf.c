/*
 * engine_mdf.c — floor 3 (see engine_internal.h): one partner's accounts.
 * MDF buckets and deficit, rebate rows and figures, the partner's share of
 * its program's liabilities, and the MDF invariant (SPEC section 6,
 * section 9 [M*] [R*]); the rebate figure's trace lines sit beside the
 * calculation they report. Reads and writes an eng_pstate; calls the trace
 * hook (floor 5) and the base (floor 6) only.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_state.h"
#include "tly_assert.h"

/* ---- buckets ---- */

/* Index of the bucket of period, or where it would be inserted. */
static uint32_t bucket_pos(const eng_pstate *st, int32_t period)
{
    uint32_t lo = 0, hi = st->bucket_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->buckets[mid].period < period)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The bucket of period, inserted (empty) in period order when absent. */
static tly_err bucket_get(eng_pstate *st, int32_t period, eng_bucket **out)
{
    uint32_t i = bucket_pos(st, period);
    if (i == st->bucket_count || st->buckets[i].period != period) {
        TRY(eng_grow((void **)&st->buckets, &st->bucket_cap, st->bucket_count + 1,
                     sizeof *st->buckets));
        memmove(&st->buckets[i + 1], &st->buckets[i], (st->bucket_count - i) * sizeof *st->buckets);
        st->buckets[i] = (eng_bucket){.period = period, .remaining = 0};
        st->bucket_count++;
    }
    *out = &st->buckets[i];
    return TLY_OK;
}

/* A credit pays off the deficit first, the rest goes to the bucket of
 * period [M1] [M8]. The caller books x to accrued/adjusted/pending. */
tly_err eng_credit(eng_pstate *st, int32_t period, int64_t x)
{
    TLY_ASSERT(x >= 0);
    int64_t pay = x < st->deficit ? x : st->deficit;
    st->deficit -= pay;
    if (pay > 0)
        ENG_TRACE(st, TLY_TRACE_DEFICIT_PAYOFF, period, pay);
    if (x - pay == 0)
        return TLY_OK;
    eng_bucket *b;
    TRY(bucket_get(st, period, &b));
    TRY(tly_money_addto(&b->remaining, x - pay));
    ENG_TRACE(st, TLY_TRACE_CREDIT, period, x - pay);
    return TLY_OK;
}

/* Debits take buckets strictly oldest first, future ones included; what
 * is left adds to the deficit [M6]. */
tly_err eng_debit(eng_pstate *st, int64_t x)
{
    TLY_ASSERT(x >= 0);
    for (uint32_t i = 0; i < st->bucket_count && x > 0; i++) {
        eng_bucket *b = &st->buckets[i];
        int64_t take = b->remaining < x ? b->remaining : x;
        if (take > 0) {
            b->remaining -= take;
            x -= take;
            ENG_TRACE(st, TLY_TRACE_DEBIT, b->period, take);
        }
    }
    TRY(tly_money_addto(&st->deficit, x));
    if (x > 0)
        ENG_TRACE(st, TLY_TRACE_DEFICIT, 0, x);
    return TLY_OK;
}

/* available = Σ bucket remainders − deficit (SPEC section 6). */
tly_err eng_available(const eng_pstate *st, int64_t *out)
{
    int64_t sum = 0;
    for (uint32_t i = 0; i < st->bucket_count; i++)
        TRY(tly_money_addto(&sum, st->buckets[i].remaining));
    return tly_money_sub(sum, st->deficit, out);
}

/* accrued − clawed_back + adjusted − expired − pending − approved − paid
 * = available, every step in int64 (SPEC section 6). */
bool eng_invariant_ok(const eng_pstate *st)
{
    int64_t lhs = st->accrued, avail;
    if (tly_money_sub(lhs, st->clawed_back, &lhs) != TLY_OK ||
        tly_money_add(lhs, st->adjusted, &lhs) != TLY_OK ||
        tly_money_sub(lhs, st->expired, &lhs) != TLY_OK ||
        tly_money_sub(lhs, st->pending, &lhs) != TLY_OK ||
        tly_money_sub(lhs, st->approved, &lhs) != TLY_OK ||
        tly_money_sub(lhs, st->paid, &lhs) != TLY_OK || eng_available(st, &avail) != TLY_OK)
        return false;
    return lhs == avail;
}

/* ---- rebate rows ---- */

/* Index of the row of period, or where it would be inserted. */
static uint32_t row_pos(const eng_pstate *st, int32_t period)
{
    uint32_t lo = 0, hi = st->row_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->rows[mid].period < period)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Binary search of the rows (period ascending). */
eng_row *eng_row_find(const eng_pstate *st, int32_t period)
{
    uint32_t i = row_pos(st, period);
    return i < st->row_count && st->rows[i].period == period ? &st->rows[i] : NULL;
}

/* The row of period, inserted (zero) in period order when absent. */
tly_err eng_row_get(eng_pstate *st, int32_t period, eng_row **out)
{
    uint32_t i = row_pos(st, period);
    if (i == st->row_count || st->rows[i].period != period) {
        TRY(eng_grow((void **)&st->rows, &st->row_cap, st->row_count + 1, sizeof *st->rows));
        memmove(&st->rows[i + 1], &st->rows[i], (st->row_count - i) * sizeof *st->rows);
        st->rows[i] = (eng_row){.period = period};
        st->row_count++;
    }
    *out = &st->rows[i];
    return TLY_OK;
}

/* Retroactive: the whole of max(R,0) at the rate of the bracket it
 * reaches. Incremental: each bracket's slice at its own rate, summed
 * exactly and rounded once. A bracket is reached when R ≥ from [R1]; the
 * rate shown is the rate of the highest bracket reached [R2]. */
static uint32_t bracket_top(const eng_rules *r, int64_t base)
{
    uint32_t top = 0;
    for (uint32_t i = 1; i < r->bracket_count; i++)
        if (base >= r->brackets[i].from)
            top = i;
    return top;
}

/* Rebate of net revenue R under rules r, and the rate reached. */
static tly_err rebate_calc(const eng_rules *r, int64_t revenue, int64_t *rebate, int32_t *bps)
{
    int64_t base = revenue > 0 ? revenue : 0;
    uint32_t top = bracket_top(r, base);
    *bps = r->brackets[top].bps;
    if (r->mode == TLY_REBATE_RETROACTIVE) {
        *rebate = tly_money_bps(base, r->brackets[top].bps);
        return TLY_OK;
    }
    tly_bps_sum sum = {0, 0};
    for (uint32_t i = 0; i <= top; i++) {
        int64_t end = i == top ? base : r->brackets[i + 1].from;
        TRY(tly_bps_sum_add(&sum, end - r->brackets[i].from, r->brackets[i].bps));
    }
    return tly_bps_sum_round(&sum, rebate);
}

/* Final rows keep their frozen figure and rate; open rows follow the
 * rules in force now plus their adjustments [G4] [R8]. */
tly_err eng_row_figure(const eng_rules *r, const eng_row *row, int64_t *fig, int32_t *bps)
{
    if (row->final) {
        *fig = row->figure;
        *bps = row->rate_bps;
        return TLY_OK;
    }
    int64_t calc;
    TRY(rebate_calc(r, row->revenue, &calc, bps));
    return tly_money_add(calc, row->adj, fig);
}

/* accrued_open sums every open row, future periods included [P4];
 * payable = Σ over final rows of (figure − paid) [R10]. */
tly_err eng_rebate_totals(const eng_rules *r, const eng_pstate *st, int64_t *open, int64_t *payable)
{
    int64_t o = 0, p = 0;
    for (uint32_t i = 0; i < st->row_count; i++) {
        const eng_row *row = &st->rows[i];
        int64_t fig, due;
        int32_t bps;
        TRY(eng_row_figure(r, row, &fig, &bps));
        if (row->final) {
            TRY(tly_money_sub(fig, row->paid, &due));
            TRY(tly_money_addto(&p, due));
        } else {
            TRY(tly_money_addto(&o, fig));
        }
    }
    *open = o;
    *payable = p;
    return TLY_OK;
}

/* available, pending, approved, accrued_open and payable: what the
 * partner adds to its program's liabilities [M9] [P4] [R10]. */
tly_err eng_liab_of(const eng_rules *r, const eng_pstate *st, eng_liab *out)
{
    eng_liab l = {.pending = st->pending, .approved = st->approved};
    TRY(eng_available(st, &l.available));
    TRY(eng_rebate_totals(r, st, &l.open, &l.payable));
    *out = l;
    return TLY_OK;
}

/* Field by field, checked; *acc changes only when every field fits. */
tly_err eng_liab_add(eng_liab *acc, const eng_liab *x, bool sub)
{
    tly_err (*op)(int64_t, int64_t, int64_t *) = sub ? tly_money_sub : tly_money_add;
    eng_liab t;
    TRY(op(acc->available, x->available, &t.available));
    TRY(op(acc->pending, x->pending, &t.pending));
    TRY(op(acc->approved, x->approved, &t.approved));
    TRY(op(acc->open, x->open, &t.open));
    TRY(op(acc->payable, x->payable, &t.payable));
    *acc = t;
    return TLY_OK;
}

/* Σ revenue of the rows of periods from..to (missing rows are 0). */
tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out)
{
    int64_t sum = 0;
    for (uint32_t i = row_pos(st, from); i < st->row_count && st->rows[i].period <= to; i++)
        TRY(tly_money_addto(&sum, st->rows[i].revenue));
    *out = sum;
    return TLY_OK;
}

/* ---- rebate trace lines ---- */

/* The slices of rebate_calc, then the figure: retroactive is one slice
 * (the whole of max(R,0) at the rate reached), incremental one per
 * bracket reached [R1] [R2]. Slices carry amount 0: the figure rounds
 * their exact sum once, so per-slice roundings would not add up. */
void eng_trace_rebate(eng_trace *t, const eng_rules *r, const eng_row *row, tly_trace_kind kind,
                      int64_t figure)
{
    int64_t base = row->revenue > 0 ? row->revenue : 0;
    uint32_t top = bracket_top(r, base);
    tly_trace_line l = t->cur;
    l.period = row->period;
    l.mode = r->mode;
    l.kind = TLY_TRACE_REBATE_SLICE;
    uint32_t first = r->mode == TLY_REBATE_RETROACTIVE ? top : 0;
    for (uint32_t i = first; i <= top; i++) {
        int64_t end = i == top ? base : r->brackets[i + 1].from;
        int64_t start = r->mode == TLY_REBATE_RETROACTIVE ? 0 : r->brackets[i].from;
        l.from = r->brackets[i].from;
        l.bps = r->brackets[i].bps;
        l.basis = end - start;
        t->fn(t->ctx, &l);
    }
    l.kind = kind;
    l.amount = figure;
    l.basis = row->revenue;
    l.from = r->brackets[top].from;
    l.bps = r->brackets[top].bps;
    t->fn(t->ctx, &l);
}

/* REBATE_SLICE and REBATE_OPEN lines for the open rows of every traced
 * partner in memory (tly_engine.h). */
void tly_engine_trace_open(tly_engine *e)
{
    if (e->trace == NULL)
        return;
    for (uint32_t p = 0; p < e->partner_slots.count; p++) {
        eng_partner *pp = &e->partners[p];
        if (pp->id == NULL || pp->st == NULL || pp->st->trace == NULL || pp->program == ENG_NONE)
            continue;
        const eng_rules *r = &e->programs[pp->program].rules;
        for (uint32_t i = 0; i < pp->st->row_count; i++) {
            const eng_row *row = &pp->st->rows[i];
            int64_t fig;
            int32_t bps;
            /* checked after every apply: it fits int64 */
            if (row->final || eng_row_figure(r, row, &fig, &bps) != TLY_OK)
                continue;
            eng_trace_begin(e, p, e->seq, "open", row->period, false);
            eng_trace_rebate(pp->st->trace, r, row, TLY_TRACE_REBATE_OPEN, fig);
        }
    }
}
