/*
 * engine_mdf.c — MDF buckets and deficit, claims, rebate figures and the
 * per-partner part of a close (SPEC section 6, section 9 [M*] [C*] [R*] [T*]).
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "tly_assert.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        tly_err err_ = (x);                                                                        \
        if (err_ != TLY_OK)                                                                        \
            return err_;                                                                           \
    } while (0)

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

tly_err eng_available(const eng_pstate *st, int64_t *out)
{
    int64_t sum = 0;
    for (uint32_t i = 0; i < st->bucket_count; i++)
        TRY(tly_money_addto(&sum, st->buckets[i].remaining));
    return tly_money_sub(sum, st->deficit, out);
}

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

eng_row *eng_row_find(const eng_pstate *st, int32_t period)
{
    uint32_t i = row_pos(st, period);
    return i < st->row_count && st->rows[i].period == period ? &st->rows[i] : NULL;
}

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
uint32_t eng_bracket_top(const eng_rules *r, int64_t base)
{
    uint32_t top = 0;
    for (uint32_t i = 1; i < r->bracket_count; i++)
        if (base >= r->brackets[i].from)
            top = i;
    return top;
}

tly_err eng_rebate_calc(const eng_rules *r, int64_t revenue, int64_t *rebate, int32_t *bps)
{
    int64_t base = revenue > 0 ? revenue : 0;
    uint32_t top = eng_bracket_top(r, base);
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

tly_err eng_row_figure(const eng_rules *r, const eng_row *row, int64_t *fig, int32_t *bps)
{
    if (row->final) {
        *fig = row->figure;
        *bps = row->rate_bps;
        return TLY_OK;
    }
    int64_t calc;
    TRY(eng_rebate_calc(r, row->revenue, &calc, bps));
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

tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out)
{
    int64_t sum = 0;
    for (uint32_t i = row_pos(st, from); i < st->row_count && st->rows[i].period <= to; i++)
        TRY(tly_money_addto(&sum, st->rows[i].revenue));
    *out = sum;
    return TLY_OK;
}

/* ---- close ---- */

/* The highest tier is the last in list order whose two conditions hold
 * [G7]; the first always qualifies [T5]. */
static uint32_t tier_for(const eng_rules *r, int64_t revenue, int64_t certs)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < r->tier_count; i++)
        if (r->tiers[i].min_revenue <= revenue && r->tiers[i].min_certs <= certs)
            best = i;
    return best;
}

static tly_err close_tier(eng_program *g, eng_pstate *st, uint64_t seq)
{
    const eng_rules *r = &g->rules;
    int32_t p = g->eop;
    int64_t window;
    TRY(eng_window_revenue(st, p - r->window_w + 1, p, &window));
    uint32_t t = tier_for(r, window, st->cert_count);
    if (t == st->tier)
        return TLY_OK;
    /* History holds changes only; period is the closed period [T1]. */
    eng_hist h = {.seq = seq, .period = p, .from = r->tiers[st->tier].name, .to = r->tiers[t].name};
    TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
    st->tier = t;
    return TLY_OK;
}

/* Buckets of period A with A + N - 1 ≤ P move their remainder to expired
 * [G5]; the deficit never expires [M2]. */
static tly_err close_expire(eng_program *g, eng_pstate *st)
{
    int32_t last = g->eop - g->rules.expiry_n + 1;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        eng_bucket *b = &st->buckets[i];
        if (b->period > last) {
            st->buckets[keep++] = *b;
            continue;
        }
        TRY(tly_money_addto(&st->expired, b->remaining));
        if (b->remaining > 0)
            ENG_TRACE(st, TLY_TRACE_EXPIRY, b->period, b->remaining);
    }
    st->bucket_count = keep;
    return TLY_OK;
}

tly_err eng_close_partner(tly_engine *e, eng_program *g, uint32_t p, uint64_t seq)
{
    eng_pstate *st = e->partners[p].st;
    ENG_TRACE_BEGIN(st, e, p, seq, "close", g->eop, false);
    eng_row *row = eng_row_find(st, g->eop);
    if (row != NULL && !row->final) {
        /* The close fixes the figure with the rules then in force [G4]. */
        TRY(eng_row_figure(&g->rules, row, &row->figure, &row->rate_bps));
        row->final = true;
        if (st->trace != NULL)
            eng_trace_rebate(st->trace, &g->rules, row, TLY_TRACE_REBATE_FINAL, row->figure);
    }
    TRY(close_tier(g, st, seq));
    TRY(close_expire(g, st));
    return eng_partner_dirty(e, p);
}

/* ---- claims ---- */

static const char *const claim_status_names[] = {"pending",  "approved",  "paid",
                                                 "rejected", "cancelled", "denied"};

const char *eng_claim_status_name(uint8_t s)
{
    TLY_ASSERT(s <= ENG_CLAIM_DENIED);
    return claim_status_names[s];
}

uint8_t eng_claim_status_parse(const char *s, size_t len)
{
    for (uint8_t i = 0; i <= ENG_CLAIM_DENIED; i++)
        if (strlen(claim_status_names[i]) == len && memcmp(claim_status_names[i], s, len) == 0)
            return i;
    return 0xff;
}

/* Reserves amount from buckets oldest first, recording each share [M5]. */
static tly_err claim_reserve(eng_pstate *st, eng_claim *c, int64_t amount)
{
    for (uint32_t i = 0; i < st->bucket_count && amount > 0; i++) {
        eng_bucket *b = &st->buckets[i];
        int64_t take = b->remaining < amount ? b->remaining : amount;
        if (take <= 0)
            continue;
        eng_share sh = {.period = b->period, .amount = take};
        TRY(ENG_PUSH(c->shares, c->share_count, c->share_cap, sh));
        b->remaining -= take;
        amount -= take;
        ENG_TRACE(st, TLY_TRACE_RESERVE, b->period, take);
    }
    /* available ≥ amount and deficit ≥ 0 imply the buckets cover it. */
    TLY_ASSERT(amount == 0);
    return TLY_OK;
}

/* Gives x back to the claim's buckets newest first, each up to what it
 * gave. A live bucket gets a credit (deficit first [M1]); a share whose
 * bucket has expired goes to expired instead. */
static tly_err claim_release(const eng_program *g, eng_pstate *st, eng_claim *c, int64_t x)
{
    TRY(tly_money_sub(st->pending, x, &st->pending));
    for (uint32_t i = c->share_count; i-- > 0 && x > 0;) {
        eng_share *sh = &c->shares[i];
        int64_t give = sh->amount < x ? sh->amount : x;
        sh->amount -= give;
        x -= give;
        if (give == 0)
            continue;
        bool gone = sh->period <= g->expired_upto;
        ENG_TRACE(st, gone ? TLY_TRACE_RELEASE_EXPIRED : TLY_TRACE_RELEASE, sh->period, give);
        if (gone)
            TRY(tly_money_addto(&st->expired, give));
        else
            TRY(eng_credit(st, sh->period, give));
    }
    TLY_ASSERT(x == 0);
    return TLY_OK;
}

static tly_err claim_new(tly_engine *e, uint32_t p, const tly_event *ev, uint32_t *out)
{
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    const eng_partner *pp = &e->partners[p];
    uint32_t klen = eng_claim_key(key, pp->id, pp->id_len, ev->claim.ptr, ev->claim.len);
    char *k = eng_arena_copy(&e->arena, key, klen);
    char *id = eng_arena_copy(&e->arena, ev->claim.ptr, ev->claim.len);
    if (k == NULL || id == NULL)
        return TLY_NOMEM;
    eng_claim c = {.id = id, .id_len = ev->claim.len, .partner = p, .requested = ev->amount};
    TRY(ENG_PUSH(e->claims, e->claim_count, e->claim_cap, c));
    uint32_t ci = e->claim_count - 1;
    TRY(eng_map_put(&e->claim_map, k, klen, eng_hash(k, klen), ci));
    eng_pstate *st = pp->st;
    TRY(ENG_PUSH(st->claims, st->claim_count, st->claim_cap, ci));
    *out = ci;
    return eng_claim_dirty(e, ci);
}

/* A claim is identified by (partner, claim) [C1]. */
static uint32_t claim_find(const tly_engine *e, uint32_t p, const tly_event *ev)
{
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    const eng_partner *pp = &e->partners[p];
    uint32_t klen = eng_claim_key(key, pp->id, pp->id_len, ev->claim.ptr, ev->claim.len);
    return eng_map_get(&e->claim_map, key, klen, eng_hash(key, klen));
}

#define CLAIM_ARGS(ev) (int)(ev)->claim.len, (ev)->claim.ptr

/* Claims of an unenrolled partner are unknown_partner, not held [E7]; a
 * submit still records the claim as denied so that later actions on it are
 * invalid transitions [C6]. */
static tly_err claim_unknown_partner(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    if (ev->action == TLY_ACT_SUBMIT) {
        TRY(eng_raise(e, pos, ENG_X_UNKNOWN_PARTNER, p, "claim denied: unknown partner"));
        if (claim_find(e, p, ev) != ENG_NONE)
            return TLY_OK;
        uint32_t ci;
        TRY(claim_new(e, p, ev, &ci));
        e->claims[ci].status = ENG_CLAIM_DENIED;
        e->claims[ci].reason = (eng_name){"unknown_partner", 15};
        return TLY_OK;
    }
    return eng_raise(e, pos, ENG_X_UNKNOWN_PARTNER, p, "%s of claim '%.*s': unknown partner",
                     tly_action_name(ev->action), CLAIM_ARGS(ev));
}

static tly_err claim_submit(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    eng_pstate *st = e->partners[p].st;
    /* [C2] also when the existing claim was denied: a submit names an id,
     * and the id exists ([C6] covers the other actions). */
    if (claim_find(e, p, ev) != ENG_NONE)
        return eng_raise(e, pos, ENG_X_DUPLICATE_CLAIM, p, "claim '%.*s' exists", CLAIM_ARGS(ev));
    int64_t avail;
    TRY(eng_available(st, &avail));
    uint32_t ci;
    TRY(claim_new(e, p, ev, &ci));
    eng_claim *c = &e->claims[ci];
    if (avail < ev->amount) {
        c->status = ENG_CLAIM_DENIED;
        c->reason = (eng_name){"insufficient_funds", 18};
        return eng_raise(e, pos, ENG_X_INSUFFICIENT_FUNDS, p,
                         "claim '%.*s' denied: available %lld < %lld", CLAIM_ARGS(ev),
                         (long long)avail, (long long)ev->amount);
    }
    TRY(claim_reserve(st, c, ev->amount));
    return tly_money_addto(&st->pending, ev->amount);
}

static tly_err claim_invalid(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev,
                             const eng_claim *c)
{
    return eng_raise(e, pos, ENG_X_INVALID_TRANSITION, p, "%s of %s claim '%.*s'",
                     tly_action_name(ev->action), eng_claim_status_name(c->status), CLAIM_ARGS(ev));
}

/* Approval of a pending claim: the unapproved part is released [C4]. */
static tly_err claim_approve(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev,
                             eng_claim *c)
{
    eng_pstate *st = e->partners[p].st;
    if (ev->amount > c->requested)
        return eng_raise(e, pos, ENG_X_APPROVE_EXCEEDS_REQUESTED, p,
                         "approve %lld > requested %lld of claim '%.*s'", (long long)ev->amount,
                         (long long)c->requested, CLAIM_ARGS(ev));
    const eng_program *g = &e->programs[e->partners[p].program];
    TRY(claim_release(g, st, c, c->requested - ev->amount));
    TRY(tly_money_sub(st->pending, ev->amount, &st->pending));
    TRY(tly_money_addto(&st->approved, ev->amount));
    ENG_TRACE(st, TLY_TRACE_APPROVE, 0, ev->amount);
    c->approved = ev->amount;
    c->status = ENG_CLAIM_APPROVED;
    return TLY_OK;
}

/* Payment of an approved claim, possibly partial [C5]. */
static tly_err claim_pay(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev, eng_claim *c)
{
    eng_pstate *st = e->partners[p].st;
    int64_t unpaid = c->approved - c->paid;
    if (ev->amount > unpaid)
        return eng_raise(e, pos, ENG_X_PAY_EXCEEDS_APPROVED, p,
                         "pay %lld > approved unpaid %lld of claim '%.*s'", (long long)ev->amount,
                         (long long)unpaid, CLAIM_ARGS(ev));
    TRY(tly_money_sub(st->approved, ev->amount, &st->approved));
    TRY(tly_money_addto(&st->paid, ev->amount));
    ENG_TRACE(st, TLY_TRACE_PAY, 0, ev->amount);
    c->paid += ev->amount;
    if (c->paid == c->approved)
        c->status = ENG_CLAIM_PAID;
    return TLY_OK;
}

/* Reject or cancel of a pending claim gives everything back. */
static tly_err claim_end(tly_engine *e, uint32_t p, const tly_event *ev, eng_claim *c)
{
    eng_pstate *st = e->partners[p].st;
    const eng_program *g = &e->programs[e->partners[p].program];
    TRY(claim_release(g, st, c, c->requested));
    if (ev->action == TLY_ACT_REJECT) {
        c->status = ENG_CLAIM_REJECTED;
        if (ev->reason.ptr != NULL) {
            c->reason.ptr = eng_arena_copy(&e->arena, ev->reason.ptr, ev->reason.len);
            if (c->reason.ptr == NULL)
                return TLY_NOMEM;
            c->reason.len = ev->reason.len;
        }
    } else {
        c->status = ENG_CLAIM_CANCELLED;
    }
    return TLY_OK;
}

static tly_err claim_act(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev, uint32_t ci)
{
    eng_claim *c = &e->claims[ci];
    bool pending = c->status == ENG_CLAIM_PENDING;
    switch (ev->action) {
    case TLY_ACT_APPROVE:
        if (pending)
            return claim_approve(e, p, pos, ev, c);
        break;
    case TLY_ACT_PAY:
        if (c->status == ENG_CLAIM_APPROVED)
            return claim_pay(e, p, pos, ev, c);
        break;
    case TLY_ACT_REJECT:
    case TLY_ACT_CANCEL:
        if (pending)
            return claim_end(e, p, ev, c);
        break;
    default:
        break;
    }
    /* Any other transition, including every action on a denied claim [C6],
     * is recorded and moves no money. */
    return claim_invalid(e, p, pos, ev, c);
}

/* A claim's lines sit in its effective period, max(period(at), earliest
 * open period), like any event's (SPEC section 6). */
static void trace_claim(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    eng_pstate *st = e->partners[p].st;
    if (st->trace == NULL)
        return;
    const eng_program *g = &e->programs[e->partners[p].program];
    int32_t at = tly_period_of(g->kind, ev->at_ms);
    /* not flagged late: lateness is an exception of sales and returns [P2] */
    eng_trace_begin(e, p, pos.seq, tly_action_name(ev->action), at < g->eop ? g->eop : at, false);
    st->trace->cur.ref = ev->claim;
}

/* [C3] the decoder guarantees amount for submit, approve and pay; the
 * other actions ignore it. */
tly_err eng_claim_event(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    if (e->partners[p].program == ENG_NONE)
        return claim_unknown_partner(e, p, pos, ev);
    trace_claim(e, p, pos, ev);
    if (ev->action == TLY_ACT_SUBMIT)
        return claim_submit(e, p, pos, ev);
    uint32_t ci = claim_find(e, p, ev);
    if (ci == ENG_NONE)
        return eng_raise(e, pos, ENG_X_UNKNOWN_CLAIM, p, "%s of unknown claim '%.*s'",
                         tly_action_name(ev->action), CLAIM_ARGS(ev));
    TRY(claim_act(e, p, pos, ev, ci));
    return eng_claim_dirty(e, ci);
}
