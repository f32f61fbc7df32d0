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
    uint32_t i;
    ENG_LOWER_BOUND(st->buckets, st->bucket_count, period, period, i);
    return i;
}

/* The bucket of period, inserted (empty) in period order when absent. */
static tly_err bucket_get(eng_pstate *st, int32_t period, eng_bucket **out)
{
    uint32_t i = bucket_pos(st, period);
    if (i == st->bucket_count || st->buckets[i].period != period) {
        TRY(eng_pstate_grow(st, (void **)&st->buckets, &st->bucket_cap, st->bucket_count + 1,
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

int64_t eng_active_certs(const eng_pstate *st, int64_t start_ms)
{
    int64_t n = 0;
    eng_cert c;
    for (uint32_t off = 0; off < st->cert_bytes;) {
        off = eng_cert_at(st, off, &c);
        n += c.expires_ms >= start_ms;
    }
    return n;
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

/* Index of the row of period in v[0..n) (period ascending), or where it
 * would be inserted: the partner's rows and its archived ones. */
static uint32_t rows_pos(const eng_row *v, uint32_t n, int32_t period)
{
    uint32_t i;
    ENG_LOWER_BOUND(v, n, period, period, i);
    return i;
}

static uint32_t row_pos(const eng_pstate *st, int32_t period)
{
    return rows_pos(st->rows, st->row_count, period);
}

/* Binary search of the rows (period ascending). */
eng_row *eng_row_find(const eng_pstate *st, int32_t period)
{
    uint32_t i = row_pos(st, period);
    return i < st->row_count && st->rows[i].period == period ? &st->rows[i] : NULL;
}

void eng_prefetch_latest(const eng_pstate *st)
{
    if (st->row_count > 0)
        __builtin_prefetch(&st->rows[st->row_count - 1], 1);
    if (st->bucket_count > 0)
        __builtin_prefetch(&st->buckets[st->bucket_count - 1], 1);
    if (st->act_count > 0)
        __builtin_prefetch(&st->acts[st->act_count - 1], 1);
}

/* The row of period, inserted (zero) in period order when absent. */
tly_err eng_row_get(eng_pstate *st, int32_t period, eng_row **out)
{
    uint32_t i = row_pos(st, period);
    if (i == st->row_count || st->rows[i].period != period) {
        TRY(eng_pstate_grow(st, (void **)&st->rows, &st->row_cap, st->row_count + 1,
                            sizeof *st->rows));
        memmove(&st->rows[i + 1], &st->rows[i], (st->row_count - i) * sizeof *st->rows);
        st->rows[i] = (eng_row){.period = period};
        st->row_count++;
    }
    *out = &st->rows[i];
    return TLY_OK;
}

/* Retroactive: the whole of X at the rate of the bracket it reaches.
 * Incremental: each bracket's slice at its own rate, summed exactly and
 * rounded once. A bracket is reached when X ≥ from [R1]; the rate shown is
 * the rate of the highest bracket reached [R2]. */
static uint32_t bracket_top(const eng_rules *r, int64_t base)
{
    uint32_t top = 0;
    for (uint32_t i = 1; i < r->bracket_count; i++)
        if (base >= r->brackets[i].from)
            top = i;
    return top;
}

/* A bracket's bps plus the tier's bonus, capped at 10000 [R14]. */
static int32_t bracket_bps(const eng_rules *r, uint32_t i, int32_t bonus)
{
    int32_t b = r->brackets[i].bps + bonus;
    return b > (int32_t)TLY_BPS_DENOM ? (int32_t)TLY_BPS_DENOM : b;
}

/* The bonus of the tier the partner holds now [R14]. */
static int32_t tier_bonus(const eng_rules *r, const eng_pstate *st)
{
    return st->tier < r->tier_count ? r->tiers[st->tier].rebate_bonus_bps : 0;
}

/* Rebate of basis x ≥ 0 under rules r with bonus, and the rate reached
 * [R13]. */
static tly_err rebate_calc(const eng_rules *r, int64_t x, int32_t bonus, int64_t *rebate,
                           int32_t *bps)
{
    uint32_t top = bracket_top(r, x);
    *bps = bracket_bps(r, top, bonus);
    if (r->mode == TLY_REBATE_RETROACTIVE) {
        *rebate = tly_money_bps(x, *bps);
        return TLY_OK;
    }
    tly_bps_sum sum = {0, 0};
    for (uint32_t i = 0; i <= top; i++) {
        int64_t end = i == top ? x : r->brackets[i + 1].from;
        TRY(tly_bps_sum_add(&sum, end - r->brackets[i].from, bracket_bps(r, i, bonus)));
    }
    return tly_bps_sum_round(&sum, rebate);
}

/* Basis X and baseline B of an open row [R11] [R15]: revenue, or growth
 * over the mean of the k periods before (missing ones count as 0). */
static tly_err row_basis(const eng_rules *r, const eng_pstate *st, const eng_row *row,
                         eng_figure *f)
{
    f->has_baseline = r->basis == TLY_BASIS_GROWTH;
    f->baseline = 0;
    int64_t x = row->revenue;
    if (f->has_baseline) {
        int64_t sum;
        TRY(eng_window_sum(st, row->period - r->baseline_k, row->period - 1, false, &sum));
        f->baseline = tly_round_half_even(sum, r->baseline_k);
        TRY(tly_money_sub(x, f->baseline, &x));
    }
    f->basis = x > 0 ? x : 0;
    return TLY_OK;
}

/* Final rows keep their frozen figure, rate, basis and baseline; open rows
 * follow the rules in force now and the tier held now, plus their
 * adjustments [G4] [R8] [R11] [K2] [R13] [R14] [K3]. */
tly_err eng_row_figure(const eng_rules *r, const eng_pstate *st, const eng_row *row, eng_figure *f)
{
    if (row->final) {
        *f = (eng_figure){.figure = row->figure,
                          .bps = row->rate_bps,
                          .basis = row->basis,
                          .baseline = row->baseline,
                          .has_baseline = row->has_baseline};
        return TLY_OK;
    }
    TRY(row_basis(r, st, row, f));
    int64_t calc = 0;
    f->bps = 0;
    if (f->basis >= r->rebate_min) /* below the minimum: 0 at rate 0 [K2] */
        TRY(rebate_calc(r, f->basis, tier_bonus(r, st), &calc, &f->bps));
    if (calc > r->rebate_cap)
        calc = r->rebate_cap; /* [K3] */
    return tly_money_add(calc, row->adj, &f->figure);
}

/* Freezes an open row's figure, rate, basis and baseline: the close of its
 * period [G4] [R17]. */
tly_err eng_row_finalize(const eng_rules *r, const eng_pstate *st, eng_row *row)
{
    eng_figure f;
    TRY(eng_row_figure(r, st, row, &f));
    row->figure = f.figure;
    row->rate_bps = f.bps;
    row->basis = f.basis;
    row->baseline = f.baseline;
    row->has_baseline = f.has_baseline;
    row->final = true;
    return TLY_OK;
}

/* accrued_open sums every open row's rebate and referral fees, future
 * periods included [P4] [Q4]; payable = Σ over final rows of (figure +
 * referral − paid) [R10] [Q3]. */
tly_err eng_rebate_totals(const eng_rules *r, const eng_pstate *st, int64_t *open, int64_t *payable)
{
    int64_t o = 0, p = st->arch_payable;
    for (uint32_t i = 0; i < st->row_count; i++) {
        const eng_row *row = &st->rows[i];
        eng_figure f;
        int64_t due;
        TRY(eng_row_figure(r, st, row, &f));
        TRY(tly_money_add(f.figure, row->referral, &due));
        if (row->final) {
            TRY(tly_money_sub(due, row->paid, &due));
            TRY(tly_money_addto(&p, due));
        } else {
            TRY(tly_money_addto(&o, due));
        }
    }
    *open = o;
    *payable = p;
    return TLY_OK;
}

tly_err eng_rebate_open(const eng_rules *r, const eng_pstate *st, int64_t *open)
{
    int64_t o = 0;
    for (uint32_t i = st->row_count; i-- > 0 && !st->rows[i].final;) {
        eng_figure f;
        int64_t due;
        TRY(eng_row_figure(r, st, &st->rows[i], &f));
        TRY(tly_money_add(f.figure, st->rows[i].referral, &due));
        TRY(tly_money_addto(&o, due));
    }
    *open = o;
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

/* Adds to *sum the revenue of the rows v[first..n) of periods from..to
 * (missing rows are 0), with the referred amounts when referred [Q2]. */
static tly_err rows_sum(const eng_row *v, uint32_t first, uint32_t n, int32_t from, int32_t to,
                        bool referred, int64_t *sum)
{
    for (uint32_t i = first; i < n; i++) {
        if (v[i].period < from || v[i].period > to)
            continue;
        TRY(tly_money_addto(sum, v[i].revenue));
        if (referred)
            TRY(tly_money_addto(sum, v[i].referred));
    }
    return TLY_OK;
}

/* The same over the revenue st keeps of its archive (eng_pstate's rev). */
static tly_err rev_sum(const eng_pstate *st, int32_t from, int32_t to, bool referred, int64_t *sum)
{
    for (uint32_t i = 0; i < st->rev_count; i++) {
        const eng_rev *v = &st->rev[i];
        if (v->period < from || v->period > to)
            continue;
        TRY(tly_money_addto(sum, v->revenue));
        if (referred)
            TRY(tly_money_addto(sum, v->referred));
    }
    return TLY_OK;
}

/* Archived rows count too: from rev, or from the rows themselves when the
 * sum reaches before rev_from (a version with a longer window or
 * baseline: eng_arch_needed has them read first). */
tly_err eng_window_sum(const eng_pstate *st, int32_t from, int32_t to, bool referred, int64_t *out)
{
    int64_t sum = 0;
    if (st->arch_count > 0 && from <= st->arch_last) {
        TLY_ASSERT(from >= st->rev_from || st->arch_all);
        TRY(from >= st->rev_from ? rev_sum(st, from, to, referred, &sum)
                                 : rows_sum(st->arch, 0, st->arch_n, from, to, referred, &sum));
    }
    TRY(rows_sum(st->rows, row_pos(st, from), st->row_count, from, to, referred, &sum));
    *out = sum;
    return TLY_OK;
}

/* ---- the archive (engine_internal.h, eng_pstate) ---- */

int32_t eng_rules_reach(const eng_rules *r, int32_t eop)
{
    int32_t back = r->window_w > r->baseline_k ? r->window_w : r->baseline_k;
    return eop - back;
}

void eng_program_arch_advance(eng_program *g, const eng_rules *r)
{
    int32_t h = eng_rules_reach(r, g->eop);
    if (h > g->arch_h)
        g->arch_h = h;
}

bool eng_arch_needed(const eng_pstate *st, const eng_rules *r, int32_t eop, int32_t arch_h)
{
    int32_t reach = eng_rules_reach(r, eop);
    return (st->arch_count > 0 && st->arch_last >= reach && reach < st->rev_from) || reach < arch_h;
}

/* What a row owes: its figure and referral fees less what was paid
 * [R10] [Q3]. */
static tly_err row_due(const eng_row *row, int64_t *out)
{
    TRY(tly_money_add(row->figure, row->referral, out));
    return tly_money_sub(*out, row->paid, out);
}

tly_err eng_arch_plan_of(const eng_pstate *st, const eng_program *g, eng_arch_plan *out)
{
    eng_arch_plan a = {.count = st->arch_count,
                       .last = st->arch_last,
                       .head = st->arch_head,
                       .payable = st->arch_payable,
                       .from = g->arch_h};
    uint32_t n = 0;
    while (n < st->row_count && st->rows[n].final)
        n++;
    n -= n % ENG_ARCH_CHUNK_ROWS; /* whole chunks only */
    for (; a.n < n; a.n++, a.count++) {
        int64_t due;
        TRY(row_due(&st->rows[a.n], &due));
        TRY(tly_money_addto(&a.payable, due));
        a.last = st->rows[a.n].period;
    }
    if (n > 0)
        a.head = st->rows[n - ENG_ARCH_CHUNK_ROWS].period;
    a.rev_count = eng_rev_count(st, n, a.from);
    *out = a;
    return TLY_OK;
}

tly_err eng_arch_paid(eng_pstate *st, eng_row *row, int64_t amount)
{
    int64_t payable;
    TRY(tly_money_sub(st->arch_payable, amount, &payable));
    TRY(tly_money_addto(&row->paid, amount));
    st->arch_payable = payable;
    row->dirty = true;
    return TLY_OK;
}

uint32_t eng_arch_pos(const eng_pstate *st, int32_t period)
{
    return rows_pos(st->arch, st->arch_n, period);
}

tly_err eng_arch_insert(eng_pstate *st, const eng_row *chunk)
{
    const uint32_t k = ENG_ARCH_CHUNK_ROWS;
    uint32_t i = eng_arch_pos(st, chunk[0].period);
    /* chunks cover disjoint runs of periods: anything else is a store's
     * corruption */
    if (i % k != 0 || (i < st->arch_n && st->arch[i].period <= chunk[k - 1].period))
        return TLY_CORRUPT;
    TRY(eng_grow((void **)&st->arch, &st->arch_cap, st->arch_n + k, sizeof *st->arch));
    memmove(&st->arch[i + k], &st->arch[i], (st->arch_n - i) * sizeof *st->arch);
    memcpy(&st->arch[i], chunk, k * sizeof *chunk);
    st->arch_n += k;
    return TLY_OK;
}

void eng_arch_commit(eng_pstate *st, bool keep, int32_t from)
{
    uint32_t n = st->arch_pending;
    /* rev as the flush stored it (eng_pack_partner): each entry is read
     * before it is overwritten, since none moves up */
    uint32_t kept = 0, at = 0;
    eng_rev v;
    while (eng_rev_walk(st, n, from, &at, &v)) {
        TLY_ASSERT(kept < st->rev_cap); /* reserved by the flush */
        st->rev[kept++] = v;
    }
    st->rev_count = kept;
    st->rev_from = from;
    for (uint32_t i = 0; i < st->arch_n; i++)
        st->arch[i].dirty = false;
    if (keep && n > 0) {
        TLY_ASSERT(st->arch_n + n <= st->arch_cap); /* reserved by the flush */
        memcpy(&st->arch[st->arch_n], st->rows, n * sizeof *st->rows);
        st->arch_n += n;
    }
    for (uint32_t i = 0; i < n; i++) {
        int64_t due;
        tly_err err = row_due(&st->rows[i], &due);
        TLY_ASSERT(err == TLY_OK); /* eng_arch_plan summed the same rows */
        st->arch_payable += due;
    }
    if (n > 0) {
        st->arch_last = st->rows[n - 1].period;
        st->arch_head = st->rows[n - ENG_ARCH_CHUNK_ROWS].period;
        st->arch_count += n;
        memmove(st->rows, st->rows + n, (st->row_count - n) * sizeof *st->rows);
        st->row_count -= n;
    }
    st->arch_pending = 0;
    if (!keep) {
        free(st->arch);
        st->arch = NULL;
        st->arch_n = st->arch_cap = 0;
    }
    st->arch_all = st->arch_n == st->arch_count;
}

/* The tier window's revenue: sales net of returns plus referred amounts
 * [T1] [Q2]. */
tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out)
{
    return eng_window_sum(st, from, to, true, out);
}

/* ---- rebate trace lines ---- */

/* The slices of rebate_calc, then the figure: retroactive is one slice
 * (the whole of X at the rate reached), incremental one per bracket
 * reached [R1] [R2]; each slice's rate includes the tier's bonus [R14].
 * Slices carry amount 0: the figure rounds their exact sum once, so
 * per-slice roundings would not add up. A basis under the minimum has no
 * slices [K2]. */
void eng_trace_rebate(eng_trace *t, const eng_rules *r, const eng_pstate *st, const eng_row *row,
                      tly_trace_kind kind)
{
    eng_figure f;
    if (eng_row_figure(r, st, row, &f) != TLY_OK) /* checked after every apply */
        return;
    /* traced when the figure is made: at the close, before the tiers
     * move, or open; either way with the tier held now */
    int64_t base = f.basis;
    int32_t bonus = tier_bonus(r, st);
    uint32_t top = bracket_top(r, base);
    tly_trace_line l = t->cur;
    l.period = row->period;
    l.mode = r->mode;
    l.kind = TLY_TRACE_REBATE_SLICE;
    l.bonus_bps = bonus;
    if (st->tier < r->tier_count)
        l.tier = (tly_str){r->tiers[st->tier].name.ptr, r->tiers[st->tier].name.len};
    uint32_t first = r->mode == TLY_REBATE_RETROACTIVE ? top : 0;
    for (uint32_t i = first; i <= top && base >= r->rebate_min; i++) {
        int64_t end = i == top ? base : r->brackets[i + 1].from;
        int64_t start = r->mode == TLY_REBATE_RETROACTIVE ? 0 : r->brackets[i].from;
        l.from = r->brackets[i].from;
        l.bps = bracket_bps(r, i, bonus);
        l.basis = end - start;
        t->fn(t->ctx, &l);
    }
    l.kind = kind;
    l.amount = f.figure;
    l.basis = row->revenue;
    l.from = r->brackets[top].from;
    l.bps = f.bps;
    l.rebate_basis = f.basis; /* [R11] */
    l.baseline = f.baseline;
    l.has_baseline = f.has_baseline;
    l.baseline_periods = f.has_baseline ? r->baseline_k : 0;
    l.rebate_min = r->rebate_min; /* [K2] */
    l.cap = r->rebate_cap;        /* [K3] */
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
            if (row->final)
                continue;
            eng_trace_begin(e, p, e->seq, "open", row->period, false);
            eng_trace_rebate(pp->st->trace, r, pp->st, row, TLY_TRACE_REBATE_OPEN);
        }
    }
}

/* ---- what took effect per period (SPEC section 11) ---- */

/* The entry of period in the ascending vector *v, inserted (zero) when
 * absent: a partner st's acts, or its program's sums (st NULL). */
static tly_err act_at(const eng_pstate *st, eng_act **v, uint32_t *n, uint32_t *cap, int32_t period,
                      eng_act **out)
{
    if (*n > 0 && (*v)[*n - 1].period == period) { /* most events: the latest period */
        *out = &(*v)[*n - 1];
        return TLY_OK;
    }
    uint32_t lo;
    ENG_LOWER_BOUND(*v, *n, period, period, lo);
    if (lo == *n || (*v)[lo].period != period) {
        TRY(eng_pstate_grow(st, (void **)v, cap, *n + 1, sizeof **v));
        memmove(&(*v)[lo + 1], &(*v)[lo], (*n - lo) * sizeof **v);
        (*v)[lo] = (eng_act){.period = period};
        (*n)++;
    }
    *out = &(*v)[lo];
    return TLY_OK;
}

tly_err eng_book2(eng_program *g, eng_pstate *st, int32_t period, enum eng_act_field f, int64_t x,
                  enum eng_act_field f2, int64_t x2)
{
    if (x == 0 && x2 == 0)
        return TLY_OK;
    eng_act *mine, *sum;
    TRY(act_at(st, &st->acts, &st->act_count, &st->act_cap, period, &mine));
    TRY(act_at(NULL, &g->rep, &g->rep_count, &g->rep_cap, period, &sum));
    int64_t m1, m2, t1, t2; /* both fields or neither */
    TRY(tly_money_add(mine->v[f], x, &m1));
    TRY(tly_money_add(sum->v[f], x, &t1));
    mine->v[f] = m1;
    sum->v[f] = t1;
    if (tly_money_add(mine->v[f2], x2, &m2) != TLY_OK ||
        tly_money_add(sum->v[f2], x2, &t2) != TLY_OK) {
        mine->v[f] -= x; /* undone: it fitted before */
        sum->v[f] -= x;
        return TLY_OVERFLOW;
    }
    mine->v[f2] = m2;
    sum->v[f2] = t2;
    g->dirty = true;
    return TLY_OK;
}

tly_err eng_book(eng_program *g, eng_pstate *st, int32_t period, enum eng_act_field f, int64_t x)
{
    return eng_book2(g, st, period, f, x, f, 0);
}

tly_err eng_open_figures(const eng_rules *r, const eng_pstate *st, eng_share **out, uint32_t *n)
{
    eng_share *v = NULL;
    uint32_t count = 0, cap = 0;
    for (uint32_t i = 0; i < st->row_count; i++) {
        eng_figure f;
        tly_err err = st->rows[i].final ? TLY_OK : eng_row_figure(r, st, &st->rows[i], &f);
        if (err == TLY_OK && !st->rows[i].final && f.figure != 0)
            err = ENG_PUSH(v, count, cap, ((eng_share){st->rows[i].period, f.figure}));
        if (err != TLY_OK) {
            free(v);
            return err;
        }
    }
    *out = v;
    *n = count;
    return TLY_OK;
}

int32_t eng_event_period(const eng_program *g, int64_t at_ms)
{
    int32_t p = tly_period_of(g->kind, at_ms);
    return p < g->eop ? g->eop : p;
}
