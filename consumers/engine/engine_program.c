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

/* Rules of a program event, tier names copied into the arena. */
static tly_err rules_from_event(tly_engine *e, const tly_event *ev, eng_rules *r)
{
    memset(r, 0, sizeof *r);
    r->version = ev->version;
    r->tier_count = ev->tier_count;
    for (uint32_t i = 0; i < ev->tier_count; i++) {
        const tly_tier *t = &ev->tiers[i];
        char *name = eng_arena_copy(&e->arena, t->name.ptr, t->name.len);
        if (name == NULL)
            return TLY_NOMEM;
        r->tiers[i] = (eng_tier){.name = {name, t->name.len},
                                 .min_revenue = t->min_revenue,
                                 .min_certs = t->min_certs,
                                 .mdf_bps = t->mdf_bps};
    }
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
        TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
        t = 0;
    }
    st->tier = (uint32_t)t;
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

/* The tier for the window ending at the closed period, with a history
 * entry when it changes [T1] [T2]. */
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
    /* Every partner enrolled in the program is evaluated [T7]; each shard
     * closes the members it owns (read from the store when not in memory). */
    close_ctx cc = {g, pos.seq};
    TRY(eng_members_each(e, gi, close_member, &cc));
    int32_t last = g->eop - g->rules.expiry_n + 1;
    if (last > g->expired_upto)
        g->expired_upto = last;
    g->eop += 1;
    g->dirty = true;
    return TLY_OK;
}
