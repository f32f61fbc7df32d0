/*
 * tly_engine.c — floor 1 of the engine (see engine_internal.h): the
 * engine's lifecycle and apply: the dispatch of the nine event types to
 * the rules of floor 2 (engine_program.c, engine_sales.c,
 * engine_claims.c), then the checks every folded event must pass.
 * Persistence is engine_store.c, beside it on floor 1.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"
#include "tly_assert.h"

/* ---- lifecycle ---- */

/* A zeroed engine (calloc) for shard of shard_count, without a store;
 * TLY_USAGE when shard is out of range. */
tly_err tly_engine_new(uint32_t shard, uint32_t shard_count, tly_engine **out)
{
    if (shard_count == 0 || shard >= shard_count)
        return TLY_USAGE;
    tly_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return TLY_NOMEM;
    e->shard = shard;
    e->shard_count = shard_count;
    *out = e;
    return TLY_OK;
}

void tly_engine_set_sale_source(tly_engine *e, tly_engine_sale_fn fn, void *ctx)
{
    e->sale_fn = fn;
    e->sale_ctx = ctx;
}

/* The cache limits of store s (0: the defaults). */
void tly_engine_set_store(tly_engine *e, const tly_engine_store *s)
{
    e->store = s != NULL ? *s : (tly_engine_store){0};
    e->partners_max = e->store.partners_cached_max ? e->store.partners_cached_max
                                                   : TLY_ENGINE_PARTNERS_CACHED_MAX;
    e->sales_max =
        e->store.sales_cached_max ? e->store.sales_cached_max : TLY_ENGINE_SALES_CACHED_MAX;
}

void tly_engine_set_flush_drops(tly_engine *e, bool on)
{
    e->flush_drops = on;
}

/* What tly_engine_prefetch loads, by how many records ahead it is told
 * of the event: each step reads what the one before loaded. */
enum prefetch_step {
    PREFETCH_LATEST = 1, /* the state's latest bucket, row and act */
    PREFETCH_STATE = 2,  /* the partner's money state */
    PREFETCH_ENTRY = 3,  /* the partner's id and entry */
    PREFETCH_SLOT = 4    /* the partner map's slot */
};
_Static_assert(PREFETCH_SLOT == TLY_ENGINE_PREFETCH_AHEAD, "a step for every distance");

uint64_t tly_engine_partner_hash(const tly_event *ev)
{
    return ev->partner.ptr == NULL ? 0 : eng_hash(ev->partner.ptr, ev->partner.len);
}

void tly_engine_prefetch(const tly_engine *e, const tly_event *ev, uint64_t partner_hash,
                         uint32_t ahead)
{
    if (ev->partner.ptr == NULL || ahead == 0 || ahead > TLY_ENGINE_PREFETCH_AHEAD)
        return;
    uint32_t p = eng_map_prefetch(&e->partner_map, partner_hash, ahead < PREFETCH_SLOT);
    /* p is the slot of the first entry with ev's hash, its id not
     * compared: the apply compares the ids */
    if (p == ENG_NONE || p >= e->partner_slots.count)
        return;
    if (ahead == PREFETCH_ENTRY) {
        __builtin_prefetch(&e->partners[p]);
        return;
    }
    const eng_pstate *st = e->partners[p].st; /* its entry loaded a record ago */
    if (st == NULL)
        return;
    if (ahead == PREFETCH_LATEST) { /* the state loaded a record ago */
        eng_prefetch_latest(st);
        return;
    }
    for (size_t at = 0; at < sizeof *st; at += ENG_CACHE_LINE_BYTES)
        __builtin_prefetch((const char *)st + at);
}

void tly_engine_set_read_back(tly_engine *e, uint32_t max)
{
    e->read_back_max = max;
}

bool tly_engine_intact(const tly_engine *e)
{
    return !e->broken;
}

/* Changed partners and sales, and exceptions not written yet. */
uint32_t tly_engine_dirty(const tly_engine *e)
{
    return e->dirty_partner_count + e->dirty_sale_count + (e->exc_count - e->exc_flushed) +
           e->read_back_idle;
}

/* Frees the caches' entries and vectors. */
static void free_caches(tly_engine *e)
{
    for (uint32_t i = 0; i < e->partner_slots.count; i++) {
        free(e->partners[i].id);
        eng_pstate_free(e->partners[i].st);
    }
    for (uint32_t i = 0; i < e->sale_slots.count; i++)
        if (e->sales[i].key != NULL)
            eng_pool_put(&e->sale_blocks, e->sales[i].key, ENG_SALE_BLOCK_BYTES(&e->sales[i]));
    eng_pool_free(&e->sale_blocks);
    for (uint32_t i = 0; i < e->loose_count; i++) {
        free(e->loose[i].key);
        eng_claim_clear(&e->loose[i].c);
    }
    for (uint32_t i = 0; i < e->exc_count; i++)
        free(e->excs[i].text);
    free(e->partners);
    free(e->partner_slots.free);
    free(e->sales);
    free(e->sale_slots.free);
    free(e->loose);
    free(e->excs);
}

/* Frees every table, map, the trace and the arena; e may be NULL. */
void tly_engine_free(tly_engine *e)
{
    if (e == NULL)
        return;
    free_caches(e);
    eng_pstate_free(e->scratch);
    for (uint32_t i = 0; i < e->program_count; i++) {
        free(e->programs[i].rep);
        free(e->programs[i].open_rebate);
    }
    free(e->programs);
    for (uint32_t i = 0; i < e->pair_count; i++)
        free(e->pairs[i].rates);
    free(e->pairs);
    free(e->dirty_partners);
    free(e->dirty_sales);
    free(e->read_back_ids);
    free(e->touched);
    eng_map_free(&e->program_map);
    eng_map_free(&e->partner_map);
    eng_map_free(&e->sale_map);
    eng_map_free(&e->loose_map);
    eng_map_free(&e->loose_partner_map);
    eng_map_free(&e->names);
    eng_trace_free(e->trace);
    eng_arena_free(&e->arena);
    free(e);
}

/* Seq of the last record folded (or set after a load). */
uint64_t tly_engine_seq(const tly_engine *e)
{
    return e->seq;
}

/* The checkpoint seq a load resumes after. */
void tly_engine_set_seq(tly_engine *e, uint64_t seq)
{
    e->seq = seq;
}

/* ---- apply ---- */

/* Hands ev to the rule of its type (floor 2); TLY_USAGE for a type no
 * rule knows. */
static tly_err dispatch(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    switch (ev->type) {
    case TLY_EV_PROGRAM:
        return eng_on_program(e, pos, ev);
    case TLY_EV_PARTNER:
        return eng_on_partner(e, pos, ev);
    case TLY_EV_SALE:
        return eng_on_sale(e, rec, pos, ev);
    case TLY_EV_RETURN:
        return eng_on_return(e, rec, pos, ev);
    case TLY_EV_CERTIFICATION:
        return eng_on_cert(e, pos, ev);
    case TLY_EV_CLOSE:
        return eng_on_close(e, pos, ev);
    case TLY_EV_RATE:
        return eng_on_rate(e, pos, ev);
    case TLY_EV_REFERRAL:
        return eng_on_referral(e, rec, pos, ev);
    case TLY_EV_CLAIM:
    case TLY_EV_PAYOUT:
    case TLY_EV_ADJUST:
        return eng_on_partner_money(e, pos, ev);
    default:
        return TLY_USAGE;
    }
}

/* After every event: every figure a view of a touched partner shows must
 * fit int64 (else TLY_OVERFLOW stops the consumer), and the MDF invariant
 * of SPEC section 6 must hold (TLY_ASSERT: in every build type; a broken
 * invariant stops the process before the batch is flushed). The final
 * rows' sum (payable) changes only at a close, which freezes figures, and
 * at a payout; after any other event only the open rows are summed again
 * (they are few, where the final ones grow with the partner's history). */
static tly_err check_touched(const tly_engine *e, tly_ev_type type)
{
    bool finals = type == TLY_EV_CLOSE || type == TLY_EV_PAYOUT;
    for (uint32_t i = 0; i < e->touched_count; i++) {
        const eng_partner *pp = &e->partners[e->touched[i]];
        if (pp->program == ENG_NONE)
            continue;
        const eng_rules *r = &e->programs[pp->program].rules;
        int64_t open, payable, avail;
        if (finals)
            TRY(eng_rebate_totals(r, pp->st, &open, &payable));
        else
            TRY(eng_rebate_open(r, pp->st, &open));
        TRY(eng_available(pp->st, &avail));
        TLY_ASSERT(eng_invariant_ok(pp->st));
    }
    return TLY_OK;
}

/* A log that repeats (source, id) for a sale is not one the ledger wrote
 * (it enforces idempotency [SPEC 3]); refuse it (TLY_USAGE) before
 * changing anything. The lookup reads the store, which registers every
 * sale without a sale source; with one, the log answers for itself. */
static tly_err repeated_sale(tly_engine *e, const tly_record *rec, const tly_event *ev)
{
    if (ev->type != TLY_EV_SALE || e->sale_fn != NULL)
        return TLY_OK; /* with a sale source, the log is the registry */
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->id.ptr, ev->id.len);
    uint32_t s;
    TRY(eng_sale_find(e, key, klen, &s));
    return s == ENG_NONE ? TLY_OK : TLY_USAGE;
}

/* Folds one record (tly_engine.h): order and idempotency checked first,
 * then the rule, then the after-event checks; seq advances only when all
 * pass. */
tly_err tly_engine_apply(tly_engine *e, const tly_record *rec, const tly_event *ev)
{
    if (rec->seq != e->seq + 1 || rec->source.len > TLY_SOURCE_BYTES_MAX)
        return TLY_USAGE;
    e->cur_seq = rec->seq;
    TRY(repeated_sale(e, rec, ev));
    uint32_t n = 0;
    eng_pos pos = {.seq = rec->seq, .n = &n};
    e->touched_count = 0;
    e->raised = 0;
    e->about = (eng_about){
        .source = rec->source, .id = ev->id, .has_amount = ev->has_amount, .amount = ev->amount};
    if (ev->currency.len == 3 && ev->type != TLY_EV_PROGRAM && ev->type != TLY_EV_RATE)
        memcpy(e->about.currency, ev->currency.ptr, 3);
    if (e->trace != NULL) { /* source and id of this record's trace lines */
        e->trace_rec = rec;
        e->trace_ev = ev;
    }
    tly_err err = dispatch(e, rec, pos, ev);
    e->trace_rec = NULL;
    e->trace_ev = NULL;
    TRY(err);
    TRY(check_touched(e, ev->type));
    e->seq = rec->seq;
    return TLY_OK;
}

/* The invariant of every owned partner in memory, enrolled or not (an
 * unenrolled one holds zeros). */
bool tly_engine_invariant_ok(const tly_engine *e)
{
    for (uint32_t i = 0; i < e->partner_slots.count; i++)
        if (e->partners[i].id != NULL && e->partners[i].st != NULL &&
            !eng_invariant_ok(e->partners[i].st))
            return false;
    return true;
}

_Static_assert(TLY_ENGINE_ACT_FIELDS == ENG_ACT_COUNT, "the public count is the engine's");

typedef struct journal_call {
    tly_engine_journal_fn fn;
    void *ctx;
} journal_call;

static tly_err journal_one(void *ctx, const char *partner, size_t len, const eng_act *a)
{
    const journal_call *c = ctx;
    return c->fn(c->ctx, partner, len, a->v);
}

tly_err tly_engine_journal_each(const void *val, size_t len, tly_engine_journal_fn fn, void *ctx)
{
    journal_call c = {fn, ctx};
    return eng_journal_each(val, len, journal_one, &c);
}

tly_err tly_engine_open_journal(const void *val, size_t len, const char *program,
                                size_t program_len, int32_t period, const char **partner,
                                size_t *partner_len, int64_t out[TLY_ENGINE_ACT_FIELDS])
{
    eng_act a;
    tly_str id;
    TRY(eng_unpack_open_act(val, len, program, program_len, period, &id, &a));
    *partner = id.ptr;
    *partner_len = id.len;
    memcpy(out, a.v, sizeof a.v);
    return TLY_OK;
}

tly_err tly_engine_partner_member(const void *val, size_t len, bool *member)
{
    eng_partner_rec rec;
    TRY(eng_peek_partner(val, len, &rec));
    *member = rec.owned && rec.program.len > 0;
    return TLY_OK;
}
