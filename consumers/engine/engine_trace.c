/*
 * engine_trace.c — floor 5 (see engine_internal.h): the trace hook behind
 * `tally explain`: every money movement of a partner reported as it
 * happens, from the exact places in the rules (floor 2) and the accounts
 * (engine_mdf.c) where the money moves.
 *
 * Why a hook rather than a second calculation: an explanation computed
 * apart from the fold could agree with itself and still differ from the
 * balance. Lines reported by the fold itself add up to the balance by
 * construction, so a mismatch means a movement the hook misses — which
 * `tally explain` and tests/test_explain.c check for.
 *
 * The hook never writes engine state. When no trace is set each movement
 * costs one test of a NULL pointer (pstate->trace, or e->trace).
 */
#include <stdlib.h>
#include <string.h>

#include "engine_trace.h"
#include "tly_assert.h"

static const char *const trace_kind_names[TLY_TRACE_KIND_COUNT] = {
    "accrual",      "clawback",     "adjust_mdf",  "credit",  "deficit_payoff",
    "debit",        "deficit",      "reserve",     "release", "release_expired",
    "approve",      "pay",          "expiry",      "revenue", "adjust_rebate",
    "rebate_slice", "rebate_final", "rebate_open", "payout",  "capped",
    "referral",     "grace"};

/* The name table entry of kind; kind must be in range. */
const char *tly_trace_kind_name(tly_trace_kind kind)
{
    TLY_ASSERT(kind < TLY_TRACE_KIND_COUNT);
    return trace_kind_names[kind];
}

/* True when t traces partner id (t->partner NULL: every partner). */
static bool trace_wants(const eng_trace *t, const char *id, size_t len)
{
    return t->partner == NULL || (t->partner_len == len && memcmp(t->partner, id, len) == 0);
}

/* Points st at the engine's trace when it wants partner id. */
void eng_trace_attach(tly_engine *e, eng_pstate *st, const char *id, size_t len)
{
    if (e->trace != NULL && trace_wants(e->trace, id, len))
        st->trace = e->trace;
}

/* Frees t and its partner name; t may be NULL. */
void eng_trace_free(eng_trace *t)
{
    if (t == NULL)
        return;
    free(t->partner);
    free(t);
}

/* Points every owned pstate in memory at t when t wants it (t NULL
 * detaches all); one read back later is attached as it is read. */
static void trace_attach_all(tly_engine *e, eng_trace *t)
{
    for (uint32_t i = 0; i < e->partner_slots.count; i++) {
        eng_partner *pp = &e->partners[i];
        if (pp->id != NULL && pp->st != NULL)
            pp->st->trace = t != NULL && trace_wants(t, pp->id, pp->id_len) ? t : NULL;
    }
}

/* Replaces the engine's trace (fn NULL: none) and re-points every owned
 * pstate (tly_engine.h). */
tly_err tly_engine_set_trace(tly_engine *e, const char *partner, tly_engine_trace_fn fn, void *ctx)
{
    eng_trace *t = NULL;
    if (fn != NULL) {
        t = calloc(1, sizeof *t);
        if (t == NULL)
            return TLY_NOMEM;
        if (partner != NULL) {
            t->partner_len = strlen(partner);
            t->partner = malloc(t->partner_len + 1);
            if (t->partner == NULL) {
                free(t);
                return TLY_NOMEM;
            }
            memcpy(t->partner, partner, t->partner_len + 1);
        }
        t->fn = fn;
        t->ctx = ctx;
    }
    trace_attach_all(e, t);
    eng_trace_free(e->trace);
    e->trace = t;
    return TLY_OK;
}

/* Source and id of a held event come from what the engine kept: a held
 * sale's key is (source, id); a held return's key names its sale, so only
 * its source is known. */
static void trace_held_ids(tly_trace_line *l, tly_str key, bool is_sale)
{
    uint32_t slen = (unsigned char)key.ptr[0];
    l->source = (tly_str){key.ptr + 1, slen};
    if (is_sale)
        l->id = (tly_str){key.ptr + 1 + slen, key.len - 1 - slen};
}

/* The context of p's next lines in t->cur; the record's source and id
 * only when seq is the record being applied. */
void eng_trace_begin(tly_engine *e, uint32_t p, uint64_t seq, const char *cause, int32_t period,
                     bool late)
{
    const eng_partner *pp = &e->partners[p];
    eng_trace *t = pp->st != NULL ? pp->st->trace : NULL;
    if (t == NULL)
        return;
    TLY_ASSERT(pp->program != ENG_NONE);
    const eng_program *g = &e->programs[pp->program];
    t->cur = (tly_trace_line){.seq = seq,
                              .cause = cause,
                              .partner = {pp->id, pp->id_len},
                              .period_kind = g->kind,
                              .period = period,
                              .late = late};
    if (e->trace_rec != NULL && e->trace_rec->seq == seq) {
        t->cur.source = e->trace_rec->source;
        t->cur.id = e->trace_ev->id;
    }
}

/* Fills source (and a sale's id) from key when begin found no record. */
void eng_trace_held(eng_pstate *st, const char *key, uint32_t key_len, bool is_sale)
{
    if (st->trace != NULL && st->trace->cur.source.len == 0)
        trace_held_ids(&st->trace->cur, (tly_str){key, key_len}, is_sale);
}

/* Hands line to the trace's callback. */
void eng_trace_line(eng_trace *t, const tly_trace_line *line)
{
    t->fn(t->ctx, line);
}

/* One line of kind from the current context: bucket and amount set. */
void eng_trace_emit(eng_trace *t, tly_trace_kind kind, int32_t bucket, int64_t amount)
{
    tly_trace_line l = t->cur;
    l.kind = kind;
    l.bucket = bucket;
    l.amount = amount;
    t->fn(t->ctx, &l);
}
