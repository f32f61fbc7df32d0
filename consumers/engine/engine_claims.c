/*
 * engine_claims.c — floor 2 (see engine_internal.h): the events that move
 * a partner's money by hand: claims, payouts and adjustments (SPEC section
 * 6 and 9 [C*] [M5] [M8] [R6] [R7] [R8] [E7]).
 */
#include <string.h>

#include "engine_rules.h"
#include "tly_assert.h"
#include "tly_currency.h"

#define CLAIM_ARGS(ev) (int)(ev)->claim.len, (ev)->claim.ptr

/* minor units of p's program's currency as "1,234.56 USD" [section 11]. */
static void money_text(const tly_engine *e, uint32_t p, int64_t minor, char *out)
{
    const char *cur = e->programs[e->partners[p].program].currency;
    tly_money_text_cur(minor, cur, out, TLY_MONEY_TEXT_BYTES);
}

/* An action on a claim over its limit: "approve 12.00 USD > requested
 * 10.00 USD of claim 'c1'". */
static tly_err over(tly_engine *e, eng_pos pos, tly_xkind kind, uint32_t p, const tly_event *ev,
                    const char *limit, int64_t room)
{
    char a[TLY_MONEY_TEXT_BYTES], b[TLY_MONEY_TEXT_BYTES];
    money_text(e, p, ev->amount, a);
    money_text(e, p, room, b);
    return eng_raise(e, pos, kind, p, "%s %s > %s %s of claim '%.*s'", tly_action_name(ev->action),
                     a, limit, b, CLAIM_ARGS(ev));
}
/* ---- claims ---- */

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
static tly_err claim_release(eng_program *g, eng_pstate *st, eng_claim *c, int64_t x,
                             int32_t period)
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
        if (gone) /* reported in the release's period [RP3] */
            TRY(tly_money_addto(&st->expired, give));
        if (gone)
            TRY(eng_book(g, st, period, ENG_ACT_EXPIRED, give));
        else
            TRY(eng_credit(st, sh->period, give));
    }
    TLY_ASSERT(x == 0);
    return TLY_OK;
}

/* Registers a new pending claim of p, last in p's submit order [C8]; *out
 * is its index among p's claims. */
static tly_err claim_new(tly_engine *e, uint32_t p, const tly_event *ev, uint32_t *out)
{
    eng_pstate *st = e->partners[p].st;
    eng_claim c = {.ordinal = st->claim_total,
                   .bucket = eng_claim_bucket_of(e->cur_seq),
                   .requested = ev->amount,
                   .dirty = true,
                   .loaded = true};
    TRY(eng_name_copy(&c.id, ev->claim.ptr, ev->claim.len));
    tly_err err = ENG_PUSH(st->claims, st->claim_count, st->claim_cap, c);
    if (err != TLY_OK) {
        eng_claim_clear(&c);
        return err;
    }
    st->claim_total++;
    eng_claim_filter_add(st, ev->claim.ptr, ev->claim.len);
    eng_claim_bucket_add(st, c.bucket);
    *out = st->claim_count - 1;
    return TLY_OK;
}

/* Claim c is denied; its reason is the code of the exception that denied
 * it [C7]. */
static tly_err deny(eng_claim *c, tly_xkind kind)
{
    const char *code = tly_xkind_name(kind);
    c->status = ENG_CLAIM_DENIED;
    eng_name_free(&c->reason);
    return eng_name_copy(&c->reason, code, (uint32_t)strlen(code));
}

/* Claims of an unenrolled partner are unknown_partner, not held [E7]; a
 * submit still records the claim as denied so that later actions on it are
 * invalid transitions [C6]. */
static tly_err claim_unknown_partner(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    if (ev->action == TLY_ACT_SUBMIT) {
        TRY(eng_raise(e, pos, TLY_X_UNKNOWN_PARTNER, p, "claim denied: unknown partner"));
        uint32_t ci;
        TRY(eng_claim_lookup(e, p, ev->claim, &ci));
        if (ci != ENG_NONE)
            return TLY_OK;
        TRY(claim_new(e, p, ev, &ci));
        return deny(&e->partners[p].st->claims[ci], TLY_X_UNKNOWN_PARTNER);
    }
    return eng_raise(e, pos, TLY_X_UNKNOWN_PARTNER, p, "%s of claim '%.*s': unknown partner",
                     tly_action_name(ev->action), CLAIM_ARGS(ev));
}

/* A submit reserves the amount from the buckets oldest first, or is
 * denied (insufficient_funds) or refused (duplicate_claim) [C2] [M5]. */
static tly_err claim_submit(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    eng_pstate *st = e->partners[p].st;
    /* [C2] also when the existing claim was denied: a submit names an id,
     * and the id exists ([C6] covers the other actions). */
    uint32_t ci;
    TRY(eng_claim_lookup(e, p, ev->claim, &ci));
    if (ci != ENG_NONE)
        return eng_raise(e, pos, TLY_X_DUPLICATE_CLAIM, p, "claim '%.*s' exists", CLAIM_ARGS(ev));
    int64_t avail;
    TRY(eng_available(st, &avail));
    TRY(claim_new(e, p, ev, &ci));
    eng_claim *c = &st->claims[ci];
    if (avail < ev->amount) {
        TRY(deny(c, TLY_X_INSUFFICIENT_FUNDS));
        char a[TLY_MONEY_TEXT_BYTES], b[TLY_MONEY_TEXT_BYTES];
        money_text(e, p, avail, a);
        money_text(e, p, ev->amount, b);
        return eng_raise(e, pos, TLY_X_INSUFFICIENT_FUNDS, p,
                         "claim '%.*s' denied: available %s < %s", CLAIM_ARGS(ev), a, b);
    }
    TRY(claim_reserve(st, c, ev->amount));
    return tly_money_addto(&st->pending, ev->amount);
}

/* An action the claim's status does not allow [C6]. */
static tly_err claim_invalid(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev,
                             const eng_claim *c)
{
    return eng_raise(e, pos, TLY_X_INVALID_TRANSITION, p, "%s of %s claim '%.*s'",
                     tly_action_name(ev->action), eng_claim_status_name(c->status), CLAIM_ARGS(ev));
}

/* Approval of a pending claim: the unapproved part is released [C4]. */
static tly_err claim_approve(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev,
                             eng_claim *c)
{
    eng_pstate *st = e->partners[p].st;
    if (ev->amount > c->requested)
        return over(e, pos, TLY_X_APPROVE_EXCEEDS_REQUESTED, p, ev, "requested", c->requested);
    eng_program *g = &e->programs[e->partners[p].program];
    int32_t period = eng_event_period(g, ev->at_ms);
    TRY(claim_release(g, st, c, c->requested - ev->amount, period));
    TRY(tly_money_sub(st->pending, ev->amount, &st->pending));
    TRY(tly_money_addto(&st->approved, ev->amount));
    TRY(eng_book(g, st, period, ENG_ACT_APPROVED, ev->amount));
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
        return over(e, pos, TLY_X_PAY_EXCEEDS_APPROVED, p, ev, "approved unpaid", unpaid);
    TRY(tly_money_sub(st->approved, ev->amount, &st->approved));
    TRY(tly_money_addto(&st->paid, ev->amount));
    eng_program *g = &e->programs[e->partners[p].program];
    TRY(eng_book(g, st, eng_event_period(g, ev->at_ms), ENG_ACT_PAID, ev->amount));
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
    eng_program *g = &e->programs[e->partners[p].program];
    TRY(claim_release(g, st, c, c->requested, eng_event_period(g, ev->at_ms)));
    if (ev->action == TLY_ACT_REJECT) {
        c->status = ENG_CLAIM_REJECTED;
        eng_name_free(&c->reason);
        TRY(eng_name_copy(&c->reason, ev->reason.ptr, ev->reason.len));
    } else {
        c->status = ENG_CLAIM_CANCELLED;
    }
    return TLY_OK;
}

/* An approve, pay, reject or cancel of p's existing claim ci. */
static tly_err claim_act(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev, uint32_t ci)
{
    eng_claim *c = &e->partners[p].st->claims[ci];
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
static tly_err claim_event(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    if (e->partners[p].program == ENG_NONE)
        return claim_unknown_partner(e, p, pos, ev);
    trace_claim(e, p, pos, ev);
    if (ev->action == TLY_ACT_SUBMIT)
        return claim_submit(e, p, pos, ev);
    uint32_t ci;
    TRY(eng_claim_lookup(e, p, ev->claim, &ci));
    if (ci == ENG_NONE)
        return eng_raise(e, pos, TLY_X_UNKNOWN_CLAIM, p, "%s of unknown claim '%.*s'",
                         tly_action_name(ev->action), CLAIM_ARGS(ev));
    TRY(eng_claim_fill(e, p, ci));
    TRY(claim_act(e, p, pos, ev, ci));
    e->partners[p].st->claims[ci].dirty = true; /* p is dirty: the flush writes it */
    return TLY_OK;
}

/* ---- payouts [R6] [R7] and adjustments [M8] [R8] ---- */

/* A payout of a final rebate period, up to its payable [R6] [R7]. */
static tly_err on_payout(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    eng_pstate *st = e->partners[p].st;
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(ev->period_text_kind, ev->period, text);
    /* Periods before the earliest open one are closed, hence final. A
     * period text of the other kind names no period of this program. */
    if (ev->period_text_kind != g->kind || ev->period >= g->eop)
        return eng_raise(e, pos, TLY_X_PAYOUT_NOT_FINAL, p, "payout for %s which is not final",
                         text);
    /* A closed period without a row had no revenue: its payable is 0. */
    eng_row *row = eng_row_find(st, ev->period);
    bool archived = row == NULL;
    if (archived)
        TRY(eng_arch_row(e, p, ev->period, &row));
    /* a payout pays the rebate and the referral fees [Q3] */
    int64_t payable = row == NULL ? 0 : row->figure + row->referral - row->paid;
    if (ev->amount > payable) {
        char a[TLY_MONEY_TEXT_BYTES], b[TLY_MONEY_TEXT_BYTES];
        money_text(e, p, ev->amount, a);
        money_text(e, p, payable, b);
        return eng_raise(e, pos, TLY_X_OVERPAYMENT, p, "payout %s > payable %s for %s", a, b, text);
    }
    if (archived)
        TRY(eng_arch_paid(st, row, ev->amount));
    else
        TRY(tly_money_addto(&row->paid, ev->amount));
    eng_program *gm = &e->programs[e->partners[p].program];
    TRY(eng_book(gm, st, eng_event_period(gm, ev->at_ms), ENG_ACT_PAYOUT, ev->amount));
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "payout", ev->period, false);
    ENG_TRACE(st, TLY_TRACE_PAYOUT, 0, ev->amount);
    return TLY_OK;
}

/* An adjustment of the MDF (a credit or debit) or of the rebate of the
 * earliest open period [M8] [R8]. */
static tly_err on_adjust(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    eng_pstate *st = e->partners[p].st;
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "adjust", g->eop, false);
    if (ev->account == TLY_ACCOUNT_REBATE) {
        eng_row *row;
        TRY(eng_row_get(st, g->eop, &row));
        TRY(tly_money_addto(&row->adj, ev->amount));
        ENG_TRACE(st, TLY_TRACE_ADJUST_REBATE, 0, ev->amount);
        return TLY_OK;
    }
    TRY(tly_money_addto(&st->adjusted, ev->amount));
    /* reported in the period it lands in [RP1] */
    TRY(eng_book(&e->programs[e->partners[p].program], st, g->eop, ENG_ACT_ADJUSTED, ev->amount));
    ENG_TRACE(st, TLY_TRACE_ADJUST_MDF, 0, ev->amount);
    if (ev->amount > 0)
        return eng_credit(st, g->eop, ev->amount);
    return eng_debit(st, -ev->amount);
}

/* Claims, payouts and adjustments of an unenrolled partner are
 * unknown_partner, not held [E7]. */
tly_err eng_on_partner_money(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    TRY(eng_partner_dirty(e, p));
    if (ev->type == TLY_EV_CLAIM)
        return claim_event(e, p, pos, ev);
    if (e->partners[p].program == ENG_NONE)
        return eng_raise(e, pos, TLY_X_UNKNOWN_PARTNER, p, "%s %s unknown partner",
                         ev->type == TLY_EV_PAYOUT ? "payout" : "adjust",
                         ev->type == TLY_EV_PAYOUT ? "to" : "of");
    if (ev->type == TLY_EV_PAYOUT)
        return on_payout(e, p, pos, ev);
    return on_adjust(e, p, pos, ev);
}
