/*
 * engine_program.c — floor 2 (see engine_internal.h): programs and closes
 * (SPEC section 6 and 9 [G*] [L*] [T*]). A program event creates a program
 * or replaces its rules; a close fixes the rebate figures, the tiers and
 * the expiries of every owned member for the earliest open period.
 */
#include <string.h>

#include "engine_rules.h"

/* True when s is the 3-letter currency cur. */
static bool currency_is(const char cur[3], tly_str s)
{
    return s.len == 3 && memcmp(cur, s.ptr, 3) == 0;
}

/* ---- programs [G1] [G2] [G3] [G8] ---- */

/* A name copied into the arena. */
static tly_err arena_name(tly_engine *e, tly_str s, eng_name *out)
{
    char *c = eng_arena_copy(&e->arena, s.ptr, s.len);
    if (c == NULL)
        return TLY_NOMEM;
    *out = (eng_name){c, s.len};
    return TLY_OK;
}

/* A tier of a program event, its names copied into the arena. */
static tly_err tier_from_event(tly_engine *e, const tly_tier *t, eng_tier *out)
{
    *out = (eng_tier){.min_revenue = t->min_revenue,
                      .min_certs = t->min_certs,
                      .mdf_bps = t->mdf_bps,
                      .rebate_bonus_bps = t->rebate_bonus_bps,
                      .referral_bps = t->referral_bps,
                      .benefit_count = t->benefit_count};
    TRY(arena_name(e, t->name, &out->name));
    for (uint32_t i = 0; i < t->benefit_count; i++)
        TRY(arena_name(e, t->benefits[i], &out->benefits[i]));
    return TLY_OK;
}

/* The section 10 rules of a program event; absent fields keep v1's
 * meaning. */
static void rules_v2_from_event(const tly_event *ev, eng_rules *r)
{
    r->basis = ev->rebate_basis;
    r->baseline_k = ev->rebate_basis == TLY_BASIS_GROWTH ? (int32_t)ev->baseline_periods : 0;
    r->rebate_min = ev->rebate_min;
    r->rebate_cap = ev->has_rebate_cap ? ev->rebate_cap : ENG_NO_CAP;
    r->mdf_cap = ev->has_mdf_cap ? ev->mdf_cap_per_period : ENG_NO_CAP;
    r->moves = ev->tier_moves;
    r->grace = (int32_t)ev->tier_grace_periods;
}

/* Rules of a program event, tier names copied into the arena. */
static tly_err rules_from_event(tly_engine *e, const tly_event *ev, eng_rules *r)
{
    memset(r, 0, sizeof *r);
    r->version = ev->version;
    r->tier_count = ev->tier_count;
    for (uint32_t i = 0; i < ev->tier_count; i++)
        TRY(tier_from_event(e, &ev->tiers[i], &r->tiers[i]));
    rules_v2_from_event(ev, r);
    r->mode = ev->rebate_mode;
    r->bracket_count = ev->bracket_count;
    memcpy(r->brackets, ev->brackets, ev->bracket_count * sizeof ev->brackets[0]);
    r->expiry_n = (int32_t)ev->mdf_expiry_periods;
    r->window_w = (int32_t)ev->tier_window_periods;
    return TLY_OK;
}

/* The first event of a program creates it; its periods start at the
 * event's. */
static tly_err program_create(tly_engine *e, const tly_event *ev)
{
    eng_program g = {.kind = ev->period_kind};
    char *name = eng_arena_copy(&e->arena, ev->program.ptr, ev->program.len);
    if (name == NULL)
        return TLY_NOMEM;
    g.name = name;
    g.name_len = ev->program.len;
    memcpy(g.currency, ev->currency.ptr, 3);
    TRY(rules_from_event(e, ev, &g.rules));
    /* The first period is that of the first program event, whatever its
     * version [P5] [G1]. */
    g.first_period = tly_period_of(g.kind, ev->at_ms);
    g.eop = g.first_period;
    g.expired_upto = INT32_MIN;
    g.dirty = true;
    uint32_t gi;
    return eng_program_add(e, &g, &gi);
}

/* Index of the tier called name in r, or -1. */
static int32_t tier_by_name(const eng_rules *r, eng_name name)
{
    for (uint32_t i = 0; i < r->tier_count; i++)
        if (r->tiers[i].name.len == name.len &&
            memcmp(r->tiers[i].name.ptr, name.ptr, name.len) == 0)
            return (int32_t)i;
    return -1;
}

/* A version bump's walk over the members: the program, its new rules and
 * the program event's seq. */
typedef struct retier_ctx {
    const eng_program *g;
    const eng_rules *nr;
    uint64_t seq;
} retier_ctx;

/* A partner keeps its tier name if the new rules have it, else drops to
 * the lowest, with a history entry at the program event's seq and the
 * earliest open period [G3]. */
static tly_err retier_member(tly_engine *e, uint32_t p, void *ctx)
{
    const retier_ctx *c = ctx;
    eng_pstate *st = e->partners[p].st;
    eng_name old = c->g->rules.tiers[st->tier].name;
    int32_t t = tier_by_name(c->nr, old);
    if (t < 0) {
        eng_hist h = {.seq = c->seq, .period = c->g->eop, .from = old, .to = c->nr->tiers[0].name};
        TRY(eng_partner_cold(e, p));
        TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
        st->cold_dirty = true;
        t = 0;
    }
    st->tier = (uint32_t)t;
    st->fails = 0; /* a new version restarts every grace count [T9] */
    /* a longer window or baseline reads back into the archive */
    if (eng_arch_needed(st, c->nr, c->g->eop, c->g->arch_h))
        TRY(eng_arch_fill(e, p));
    /* open rebate figures follow the rules in force now [G4] */
    return eng_partner_dirty(e, p);
}

/* Creates the program, or replaces its rules with a newer version of the
 * same currency and period kind; else stale_version or
 * program_change_rejected (shard 0 keeps those) [G8]. */
tly_err eng_on_program(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    if (gi == ENG_NONE)
        return program_create(e, ev);
    eng_program *g = &e->programs[gi];
    bool keeps = e->shard == 0; /* partner-less exceptions live in shard 0 */
    if (ev->version <= g->rules.version)
        return keeps ? eng_raise(e, pos, TLY_X_STALE_VERSION, ENG_NONE,
                                 "program %.*s version %lld <= %lld", STR_ARGS(ev->program),
                                 (long long)ev->version, (long long)g->rules.version)
                     : TLY_OK;
    if (!currency_is(g->currency, ev->currency) || ev->period_kind != g->kind)
        return keeps ? eng_raise(e, pos, TLY_X_PROGRAM_CHANGE_REJECTED, ENG_NONE,
                                 "program %.*s version %lld changes currency or period; ignored",
                                 STR_ARGS(ev->program), (long long)ev->version)
                     : TLY_OK;
    eng_rules nr;
    TRY(rules_from_event(e, ev, &nr));
    /* Every member is retiered, read from the store when not in memory
     * (and kept until the flush, which settles its liability share under
     * the new rules). */
    retier_ctx rc = {g, &nr, pos.seq};
    TRY(eng_members_each(e, gi, retier_member, &rc));
    g = &e->programs[gi];
    g->rules = nr;
    eng_program_arch_advance(g, &g->rules);
    g->dirty = true;
    return TLY_OK;
}

/* ---- closes [L1] [L2] [T7] ---- */

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

/* The tier a close moves to from cur toward evaluated, one position at
 * most under one_step [T8]. */
static uint32_t tier_step(const eng_rules *r, uint32_t cur, uint32_t evaluated)
{
    if (r->moves != TLY_MOVES_ONE_STEP)
        return evaluated;
    if (evaluated > cur)
        return cur + 1;
    return evaluated < cur ? cur - 1 : cur;
}

/* The tier after the close of g->eop: at or above the current tier the
 * partner moves (clamped) and its failing count restarts; below, the count
 * grows and the partner moves down only past the grace [T9] [T11]. */
static uint32_t close_decide(const eng_rules *r, eng_pstate *st, uint32_t evaluated)
{
    if (evaluated >= st->tier) {
        st->fails = 0;
        return tier_step(r, st->tier, evaluated);
    }
    st->fails++;
    if ((int64_t)st->fails <= r->grace)
        return st->tier;
    st->fails = 0;
    return tier_step(r, st->tier, evaluated);
}

/* The grace line of a close that counted a failing close or restarted
 * the count: the tier before and after, the counts [T9]. */
static void trace_grace(eng_pstate *st, const eng_rules *r, uint32_t before, uint32_t t)
{
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_GRACE;
    l.bucket = l.period;
    l.amount = (int64_t)st->fails;
    l.grace = r->grace;
    l.fails_before = (int64_t)before;
    l.ref = (tly_str){r->tiers[st->tier].name.ptr, r->tiers[st->tier].name.len};
    l.tier = (tly_str){r->tiers[t].name.ptr, r->tiers[t].name.len};
    l.move = t < st->tier ? -1 : t > st->tier ? 1 : 0;
    eng_trace_line(st->trace, &l);
}

/* The tier for the window ending at the closed period, with a history
 * entry when it changes [T1] [T2]. Certifications count when their
 * latest earned has not expired before the next period starts [T10]. */
static tly_err close_tier(tly_engine *e, uint32_t p_index, eng_program *g, uint64_t seq)
{
    eng_pstate *st = e->partners[p_index].st;
    const eng_rules *r = &g->rules;
    int32_t p = g->eop;
    int64_t window;
    TRY(eng_window_revenue(st, p - r->window_w + 1, p, &window));
    int64_t certs = eng_active_certs(st, tly_period_start_ms(g->kind, p + 1));
    uint32_t before = st->fails;
    uint32_t t = close_decide(r, st, tier_for(r, window, certs));
    if (st->trace != NULL && (st->fails != 0 || before != 0))
        trace_grace(st, r, before, t);
    if (t == st->tier)
        return TLY_OK;
    /* History holds changes only; period is the closed period [T1]. */
    eng_hist h = {.seq = seq, .period = p, .from = r->tiers[st->tier].name, .to = r->tiers[t].name};
    TRY(eng_partner_cold(e, p_index));
    TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
    st->cold_dirty = true;
    st->tier = t;
    return TLY_OK;
}

/* Buckets of period A with A + N - 1 ≤ P move their remainder to expired
 * [G5]; the deficit never expires [M2]. */
static tly_err close_expire(eng_program *g, eng_pstate *st)
{
    int64_t gone = 0;
    int32_t last = g->eop - g->rules.expiry_n + 1;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        eng_bucket *b = &st->buckets[i];
        if (b->period > last) {
            st->buckets[keep++] = *b;
            continue;
        }
        TRY(tly_money_addto(&st->expired, b->remaining));
        TRY(tly_money_addto(&gone, b->remaining));
        if (b->remaining > 0)
            ENG_TRACE(st, TLY_TRACE_EXPIRY, b->period, b->remaining);
    }
    st->bucket_count = keep;
    /* reported in the closed period [section 11] */
    return eng_book(g, st, g->eop, ENG_ACT_EXPIRED, gone);
}

/* A close's walk over the members: the program and the close's seq. */
typedef struct close_ctx {
    eng_program *g;
    uint64_t seq;
} close_ctx;

/* Close of g->eop for owned member p: the rebate figure is fixed, the
 * tier evaluated, expired buckets moved [T1] [G4] [G5] [M4]. */
static tly_err close_member(tly_engine *e, uint32_t p, void *ctx)
{
    const close_ctx *c = ctx;
    eng_program *g = c->g;
    uint64_t seq = c->seq;
    eng_pstate *st = e->partners[p].st;
    ENG_TRACE_BEGIN(st, e, p, seq, "close", g->eop, false);
    eng_row *row = eng_row_find(st, g->eop);
    if (row != NULL && !row->final) {
        /* The close fixes the figure with the rules then in force and the
         * tier held just before it [G4] [R14]; referral fees are fixed
         * already [Q5]. */
        TRY(eng_row_finalize(&g->rules, st, row));
        TRY(eng_book(g, st, g->eop, ENG_ACT_REBATE, row->figure));
        if (st->trace != NULL)
            eng_trace_rebate(st->trace, &g->rules, st, row, TLY_TRACE_REBATE_FINAL);
    }
    /* then expiry, then tiers [L4] */
    TRY(close_expire(g, st));
    TRY(close_tier(e, p, g, seq));
    return eng_partner_dirty(e, p);
}

/* A close of the earliest open period closes every owned member and
 * opens the next; any other close is close_out_of_order, of an unknown
 * program unknown_program (shard 0 keeps both). */
tly_err eng_on_close(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    bool keeps = e->shard == 0;
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    if (gi == ENG_NONE)
        return keeps ? eng_raise(e, pos, TLY_X_UNKNOWN_PROGRAM, ENG_NONE,
                                 "close of unknown program %.*s", STR_ARGS(ev->program))
                     : TLY_OK;
    eng_program *g = &e->programs[gi];
    if (ev->period_text_kind != g->kind || ev->period != g->eop) {
        if (!keeps)
            return TLY_OK;
        char want[TLY_PERIOD_TEXT_BYTES], got[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(g->kind, g->eop, want);
        tly_period_format(ev->period_text_kind, ev->period, got);
        return eng_raise(e, pos, TLY_X_CLOSE_OUT_OF_ORDER, ENG_NONE,
                         "close %s of %.*s, earliest open is %s", got, STR_ARGS(ev->program), want);
    }
    /* Before the period has ended it changes nothing [L3]; at its first
     * millisecond the next period has begun [L7]. */
    int64_t ends = tly_period_start_ms(g->kind, g->eop + 1);
    if (ev->at_ms < ends) {
        if (!keeps)
            return TLY_OK;
        char text[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(g->kind, g->eop, text);
        return eng_raise(e, pos, TLY_X_EARLY_CLOSE, ENG_NONE,
                         "close %s of %.*s dated before the period ended; ignored", text,
                         STR_ARGS(ev->program));
    }
    /* Every partner enrolled in the program is evaluated [T7]; each shard
     * closes the members it owns (read from the store when not in memory). */
    close_ctx cc = {g, pos.seq};
    TRY(eng_members_each(e, gi, close_member, &cc));
    int32_t last = g->eop - g->rules.expiry_n + 1;
    if (last > g->expired_upto)
        g->expired_upto = last;
    g->eop += 1;
    eng_program_arch_advance(g, &g->rules);
    g->dirty = true;
    return TLY_OK;
}

/* ---- exchange rates [F1] ---- */

/* A rate of its pair from its at on; every shard keeps it. A rate folded
 * later never changes what was already folded: it only joins the table. */
tly_err eng_on_rate(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    eng_rate r = {
        .at_ms = ev->at_ms, .seq = pos.seq, .units = ev->rate.units, .scale = ev->rate.scale};
    return eng_rate_add(e, ev->currency.ptr, ev->to.ptr, r);
}
