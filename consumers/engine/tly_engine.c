/*
 * tly_engine.c — the fold: dispatch of the nine event types, programs,
 * enrollment, held events, sales, returns, certifications, closes, payouts
 * and adjustments (SPEC section 6 and 9). Buckets, claims and rebate
 * figures are in engine_mdf.c; JSON in engine_views.c; persistence in
 * engine_store.c.
 */
#include <stdarg.h>
#include <stdio.h>
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

/* Longest exception detail; details quote at most a few names. */
#define ENG_DETAIL_BYTES_MAX 512

/* The exception kinds of [D6], in enum order. Only folded events raise
 * them; duplicates and rejected events never reach the engine [D11]. */
static const char *const exc_kind_names[ENG_X_COUNT] = {"held",
                                                        "late",
                                                        "currency_mismatch",
                                                        "unknown_sale",
                                                        "return_partner_mismatch",
                                                        "over_return",
                                                        "unknown_partner",
                                                        "insufficient_funds",
                                                        "unknown_claim",
                                                        "duplicate_claim",
                                                        "invalid_transition",
                                                        "approve_exceeds_requested",
                                                        "pay_exceeds_approved",
                                                        "payout_not_final",
                                                        "overpayment",
                                                        "stale_version",
                                                        "program_change_rejected",
                                                        "unknown_program",
                                                        "close_out_of_order",
                                                        "partner_program_change",
                                                        "cert_not_active"};

const char *eng_exc_kind_name(uint32_t kind)
{
    TLY_ASSERT(kind < ENG_X_COUNT);
    return exc_kind_names[kind];
}

uint32_t eng_exc_kind_parse(const char *s, size_t len)
{
    for (uint32_t i = 0; i < ENG_X_COUNT; i++)
        if (strlen(exc_kind_names[i]) == len && memcmp(exc_kind_names[i], s, len) == 0)
            return i;
    return ENG_X_COUNT;
}

uint32_t tly_engine_shard_of(const char *partner, size_t len, uint32_t shard_count)
{
    TLY_ASSERT(shard_count >= 1);
    return (uint32_t)(eng_hash(partner, len) % shard_count);
}

/* ---- lifecycle ---- */

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

eng_pstate *eng_pstate_new(void)
{
    return calloc(1, sizeof(eng_pstate));
}

void eng_pstate_free(eng_pstate *st)
{
    if (st == NULL)
        return;
    free(st->buckets);
    free(st->rows);
    free(st->hist);
    free(st->certs);
    free(st->claims);
    free(st->held);
    free(st);
}

void tly_engine_free(tly_engine *e)
{
    if (e == NULL)
        return;
    for (uint32_t i = 0; i < e->program_count; i++)
        free(e->programs[i].members);
    for (uint32_t i = 0; i < e->partner_count; i++) {
        free(e->partners[i].held_sales);
        eng_pstate_free(e->partners[i].st);
    }
    for (uint32_t i = 0; i < e->claim_count; i++)
        free(e->claims[i].shares);
    free(e->programs);
    free(e->partners);
    free(e->sales);
    free(e->details);
    free(e->claims);
    free(e->excs);
    free(e->dirty_partners);
    free(e->dirty_sales);
    free(e->dirty_claims);
    free(e->touched);
    eng_map_free(&e->program_map);
    eng_map_free(&e->partner_map);
    eng_map_free(&e->sale_map);
    eng_map_free(&e->claim_map);
    eng_map_free(&e->pair_map);
    eng_trace_free(e->trace);
    eng_arena_free(&e->arena);
    free(e);
}

uint64_t tly_engine_seq(const tly_engine *e)
{
    return e->seq;
}

void tly_engine_set_seq(tly_engine *e, uint64_t seq)
{
    e->seq = seq;
}

/* ---- shared helpers ---- */

bool eng_owned(const tly_engine *e, const char *id, size_t len)
{
    return tly_engine_shard_of(id, len, e->shard_count) == e->shard;
}

uint32_t eng_program_find(const tly_engine *e, const char *name, size_t len)
{
    return eng_map_get(&e->program_map, name, len, eng_hash(name, len));
}

tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out)
{
    uint64_t h = eng_hash(id, len);
    uint32_t p = eng_map_get(&e->partner_map, id, len, h);
    if (p != ENG_NONE) {
        *out = p;
        return TLY_OK;
    }
    char *key = eng_arena_copy(&e->arena, id, len);
    if (key == NULL)
        return TLY_NOMEM;
    eng_partner rec = {
        .id = key, .id_len = (uint32_t)len, .program = ENG_NONE, .owned = eng_owned(e, id, len)};
    if (rec.owned && (rec.st = eng_pstate_new()) == NULL)
        return TLY_NOMEM;
    if (rec.st != NULL)
        eng_trace_attach(e, rec.st, id, len);
    tly_err err = ENG_PUSH(e->partners, e->partner_count, e->partner_cap, rec);
    if (err != TLY_OK) {
        eng_pstate_free(rec.st);
        return err;
    }
    p = e->partner_count - 1;
    TRY(eng_map_put(&e->partner_map, key, (uint32_t)len, h, p));
    *out = p;
    return TLY_OK;
}

tly_err eng_partner_dirty(tly_engine *e, uint32_t p)
{
    eng_partner *pp = &e->partners[p];
    if (pp->owned && pp->touch_seq != e->cur_seq) {
        pp->touch_seq = e->cur_seq;
        TRY(ENG_PUSH(e->touched, e->touched_count, e->touched_cap, p));
    }
    if (pp->dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_partners, e->dirty_partner_count, e->dirty_partner_cap, p));
    pp->dirty = true;
    return TLY_OK;
}

tly_err eng_sale_dirty(tly_engine *e, uint32_t s)
{
    if (e->sales[s].dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_sales, e->dirty_sale_count, e->dirty_sale_cap, s));
    e->sales[s].dirty = true;
    return TLY_OK;
}

tly_err eng_claim_dirty(tly_engine *e, uint32_t c)
{
    if (e->claims[c].dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_claims, e->dirty_claim_count, e->dirty_claim_cap, c));
    e->claims[c].dirty = true;
    return TLY_OK;
}

tly_err eng_exc_add(tly_engine *e, const eng_exc *x)
{
    return ENG_PUSH(e->excs, e->exc_count, e->exc_cap, *x);
}

tly_err eng_raise(tly_engine *e, eng_pos pos, eng_exc_kind kind, uint32_t partner, const char *fmt,
                  ...)
{
    char buf[ENG_DETAIL_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    if ((size_t)len >= sizeof buf)
        len = (int)sizeof buf - 1; /* truncated: details are for people */
    eng_exc x = {.seq = pos.seq, .n = (*pos.n)++, .kind = kind, .partner = partner};
    x.detail.ptr = eng_arena_copy(&e->arena, buf, (size_t)len);
    x.detail.len = (uint32_t)len;
    if (x.detail.ptr == NULL)
        return TLY_NOMEM;
    return eng_exc_add(e, &x);
}

tly_err eng_pair_intern(tly_engine *e, const char *key, size_t len, eng_name *out)
{
    uint64_t h = eng_hash(key, len);
    uint32_t v = eng_map_get(&e->pair_map, key, len, h);
    if (v != ENG_NONE) {
        /* the map value is unused: the slot's key pointer is the identity */
        uint32_t mask = e->pair_map.cap - 1;
        for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
            const eng_slot *s = &e->pair_map.slots[i];
            if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
                *out = (eng_name){s->key, s->len};
                return TLY_OK;
            }
        }
    }
    char *k = eng_arena_copy(&e->arena, key, len);
    if (k == NULL)
        return TLY_NOMEM;
    TRY(eng_map_put(&e->pair_map, k, (uint32_t)len, h, 0));
    *out = (eng_name){k, (uint32_t)len};
    return TLY_OK;
}

/* Keys are u8 length ‖ first ‖ second: unambiguous for any bytes. */
static uint32_t key2(char *buf, const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    TLY_ASSERT(alen <= 255);
    buf[0] = (char)(unsigned char)alen;
    memcpy(buf + 1, a, alen);
    memcpy(buf + 1 + alen, b, blen);
    return 1 + alen + blen;
}

uint32_t eng_sale_key(char *buf, const char *src, uint32_t src_len, const char *id, uint32_t id_len)
{
    return key2(buf, src, src_len, id, id_len);
}

uint32_t eng_claim_key(char *buf, const char *partner, uint32_t plen, const char *claim,
                       uint32_t clen)
{
    return key2(buf, partner, plen, claim, clen);
}

tly_err eng_program_add_member(eng_program *g, uint32_t p)
{
    return ENG_PUSH(g->members, g->member_count, g->member_cap, p);
}

static bool currency_is(const char cur[3], tly_str s)
{
    return s.len == 3 && memcmp(cur, s.ptr, 3) == 0;
}

#define STR_ARGS(s) (int)(s).len, (s).ptr

/* ---- programs [G1] [G2] [G3] [G8] ---- */

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
    TRY(ENG_PUSH(e->programs, e->program_count, e->program_cap, g));
    uint32_t gi = e->program_count - 1;
    return eng_map_put(&e->program_map, name, ev->program.len, eng_hash(name, ev->program.len), gi);
}

static int32_t tier_by_name(const eng_rules *r, eng_name name)
{
    for (uint32_t i = 0; i < r->tier_count; i++)
        if (r->tiers[i].name.len == name.len &&
            memcmp(r->tiers[i].name.ptr, name.ptr, name.len) == 0)
            return (int32_t)i;
    return -1;
}

/* A partner keeps its tier name if the new rules have it, else drops to
 * the lowest, with a history entry at the program event's seq and the
 * earliest open period [G3]. */
static tly_err program_retier(tly_engine *e, eng_program *g, const eng_rules *nr, uint64_t seq)
{
    for (uint32_t i = 0; i < g->member_count; i++) {
        uint32_t p = g->members[i];
        eng_pstate *st = e->partners[p].st;
        eng_name old = g->rules.tiers[st->tier].name;
        int32_t t = tier_by_name(nr, old);
        if (t < 0) {
            eng_hist h = {.seq = seq, .period = g->eop, .from = old, .to = nr->tiers[0].name};
            TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
            t = 0;
        }
        st->tier = (uint32_t)t;
        /* open rebate figures follow the rules in force now [G4] */
        TRY(eng_partner_dirty(e, p));
    }
    return TLY_OK;
}

static tly_err on_program(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    if (gi == ENG_NONE)
        return program_create(e, ev);
    eng_program *g = &e->programs[gi];
    bool keeps = e->shard == 0; /* partner-less exceptions live in shard 0 */
    if (ev->version <= g->rules.version)
        return keeps ? eng_raise(e, pos, ENG_X_STALE_VERSION, ENG_NONE,
                                 "program %.*s version %lld <= %lld", STR_ARGS(ev->program),
                                 (long long)ev->version, (long long)g->rules.version)
                     : TLY_OK;
    if (!currency_is(g->currency, ev->currency) || ev->period_kind != g->kind)
        return keeps ? eng_raise(e, pos, ENG_X_PROGRAM_CHANGE_REJECTED, ENG_NONE,
                                 "program %.*s version %lld changes currency or period; ignored",
                                 STR_ARGS(ev->program), (long long)ev->version)
                     : TLY_OK;
    eng_rules nr;
    TRY(rules_from_event(e, ev, &nr));
    TRY(program_retier(e, g, &nr, pos.seq));
    g->rules = nr;
    g->dirty = true;
    return TLY_OK;
}

/* ---- sales, returns, certifications ---- */

/* Effective period = max(period(at), earliest open period); *late when
 * period(at) is before it [P2] [P3]. */
static int32_t effective_period(const eng_program *g, int64_t at_ms, bool *late)
{
    int32_t p = tly_period_of(g->kind, at_ms);
    *late = p < g->eop;
    return *late ? g->eop : p;
}

static tly_err exc_late(tly_engine *e, eng_pos pos, uint32_t p, const eng_program *g,
                        const char *what, int32_t period)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(g->kind, period, text);
    return eng_raise(e, pos, ENG_X_LATE, p, "%s lands in %s", what, text);
}

/* The accrual line of a traced sale; a held sale's ids come from its
 * registry key. */
static void trace_accrual(eng_pstate *st, const eng_sale *sale, const eng_sale_detail *d,
                          eng_name tier)
{
    eng_trace_held(st, sale->key, sale->key_len, true);
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_ACCRUAL;
    l.bucket = l.period;
    l.amount = d->accrual;
    l.basis = d->amount;
    l.bps = d->bps;
    l.tier = (tly_str){tier.ptr, tier.len};
    eng_trace_line(st->trace, &l);
}

/* Folds a registered sale of an enrolled partner. Every shard decides
 * whether it moved money (the registry); the owner books the money. */
static tly_err fold_sale(tly_engine *e, uint32_t p, uint32_t s, eng_pos pos, int64_t at_ms,
                         int64_t amount)
{
    eng_partner *pp = &e->partners[p];
    const eng_program *g = &e->programs[pp->program];
    eng_sale *sale = &e->sales[s];
    TRY(eng_sale_dirty(e, s));
    if (memcmp(sale->currency, g->currency, 3) != 0) {
        sale->state = ENG_SALE_NO_MONEY;
        if (!pp->owned)
            return TLY_OK;
        TRY(eng_partner_dirty(e, p));
        return eng_raise(e, pos, ENG_X_CURRENCY_MISMATCH, p, "sale in %.3s, program %.*s is %.3s",
                         sale->currency, (int)g->name_len, g->name, g->currency);
    }
    sale->state = ENG_SALE_MOVED;
    if (!pp->owned)
        return TLY_OK;
    eng_pstate *st = pp->st;
    bool late;
    int32_t eff = effective_period(g, at_ms, &late);
    int32_t bps = g->rules.tiers[st->tier].mdf_bps;
    eng_sale_detail d = {.amount = amount, .accrual = tly_money_bps(amount, bps), .bps = bps};
    TRY(ENG_PUSH(e->details, e->detail_count, e->detail_cap, d));
    e->sales[s].detail = e->detail_count - 1;
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "sale", eff, late);
    if (st->trace != NULL)
        trace_accrual(st, &e->sales[s], &d, g->rules.tiers[st->tier].name);
    TRY(eng_credit(st, eff, d.accrual));
    TRY(tly_money_addto(&st->accrued, d.accrual));
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    /* revenue counts even when the accrual rounds to 0 [M7] */
    TRY(tly_money_addto(&row->revenue, amount));
    ENG_TRACE(st, TLY_TRACE_REVENUE, eff, amount);
    TRY(eng_partner_dirty(e, p));
    return late ? exc_late(e, pos, p, g, "sale", eff) : TLY_OK;
}

static const char *sale_id_of_key(const char *key, uint32_t *len, uint32_t key_len)
{
    uint32_t src = (unsigned char)key[0];
    *len = key_len - 1 - src;
    return key + 1 + src;
}

/* Returns the capped amount that applies, 0 when nothing does. Checks run
 * in the order currency, unknown sale, partner mismatch, over-return [S9]. */
static tly_err return_check(tly_engine *e, uint32_t p, eng_pos pos, const char *key, uint32_t klen,
                            int64_t amount, const char cur[3], int64_t *apply, uint32_t *sale_out)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    uint32_t idlen;
    const char *id = sale_id_of_key(key, &idlen, klen);
    *apply = 0;
    if (memcmp(cur, g->currency, 3) != 0)
        return eng_raise(e, pos, ENG_X_CURRENCY_MISMATCH, p, "return in %.3s, program %.*s is %.3s",
                         cur, (int)g->name_len, g->name, g->currency);
    uint32_t s = eng_map_get(&e->sale_map, key, klen, eng_hash(key, klen));
    /* A sale that moved no money is unknown [S2]. */
    if (s == ENG_NONE || e->sales[s].state != ENG_SALE_MOVED)
        return eng_raise(e, pos, ENG_X_UNKNOWN_SALE, p, "return of unknown sale '%.*s'", (int)idlen,
                         id);
    if (e->sales[s].partner != p) { /* [S1] */
        const eng_partner *o = &e->partners[e->sales[s].partner];
        return eng_raise(e, pos, ENG_X_RETURN_PARTNER_MISMATCH, p,
                         "return of sale '%.*s' which belongs to partner '%.*s'", (int)idlen, id,
                         (int)o->id_len, o->id);
    }
    const eng_sale_detail *d = &e->details[e->sales[s].detail];
    int64_t unreturned = d->amount - d->returned;
    *sale_out = s;
    if (amount <= unreturned) {
        *apply = amount;
        return TLY_OK;
    }
    /* The capped part applies; a wholly excess return only raises
     * over_return [S8] [S9]. */
    *apply = unreturned;
    return eng_raise(e, pos, ENG_X_OVER_RETURN, p,
                     "returned %lld, unreturned %lld, excess %lld ignored", (long long)amount,
                     (long long)unreturned, (long long)(amount - unreturned));
}

/* The clawback line of a traced return: ref is the sale it names; a held
 * return keeps only its sale's key, hence only its source. */
static void trace_clawback(eng_pstate *st, const char *key, uint32_t klen, int64_t c, int64_t apply,
                           int32_t bps)
{
    eng_trace_held(st, key, klen, false);
    uint32_t idlen;
    const char *id = sale_id_of_key(key, &idlen, klen);
    st->trace->cur.ref = (tly_str){id, idlen};
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_CLAWBACK;
    l.amount = c;
    l.basis = apply;
    l.bps = bps;
    eng_trace_line(st->trace, &l);
}

static tly_err fold_return(tly_engine *e, uint32_t p, eng_pos pos, int64_t at_ms, const char *key,
                           uint32_t klen, int64_t amount, const char cur[3])
{
    int64_t apply;
    uint32_t s = ENG_NONE;
    TRY(eng_partner_dirty(e, p));
    TRY(return_check(e, p, pos, key, klen, amount, cur, &apply, &s));
    if (apply == 0)
        return TLY_OK;
    eng_pstate *st = e->partners[p].st;
    const eng_program *g = &e->programs[e->partners[p].program];
    eng_sale_detail *d = &e->details[e->sales[s].detail];
    /* Clawback on the capped amount at the sale's own rate, capped at the
     * accrual not yet clawed back [S3] [S7]. */
    int64_t c = tly_money_bps(apply, d->bps);
    if (c > d->accrual - d->clawed)
        c = d->accrual - d->clawed;
    d->returned += apply;
    d->clawed += c;
    TRY(eng_sale_dirty(e, s));
    bool late;
    int32_t eff = effective_period(g, at_ms, &late);
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "return", eff, late);
    if (st->trace != NULL)
        trace_clawback(st, key, klen, c, apply, d->bps);
    TRY(tly_money_addto(&st->clawed_back, c));
    TRY(eng_debit(st, c));
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    /* A return reduces its own effective period, which may go negative [S6]. */
    TRY(tly_money_sub(row->revenue, apply, &row->revenue));
    ENG_TRACE(st, TLY_TRACE_REVENUE, eff, -apply);
    return late ? exc_late(e, pos, p, g, "return", eff) : TLY_OK;
}

/* Active certifications are distinct (person, cert) pairs; earning an
 * active pair again changes nothing, ending an inactive one is
 * cert_not_active [T4]. */
static tly_err fold_cert(tly_engine *e, uint32_t p, eng_pos pos, eng_name pair, uint8_t action)
{
    eng_pstate *st = e->partners[p].st;
    uint32_t i = 0;
    while (i < st->cert_count && st->certs[i].ptr != pair.ptr)
        i++;
    TRY(eng_partner_dirty(e, p));
    if (action == TLY_ACT_EARNED)
        return i < st->cert_count ? TLY_OK
                                  : ENG_PUSH(st->certs, st->cert_count, st->cert_cap, pair);
    if (i < st->cert_count) {
        memmove(&st->certs[i], &st->certs[i + 1], (st->cert_count - i - 1) * sizeof *st->certs);
        st->cert_count--;
        return TLY_OK;
    }
    int plen = (unsigned char)pair.ptr[0];
    return eng_raise(e, pos, ENG_X_CERT_NOT_ACTIVE, p, "%s of inactive %.*s/%.*s",
                     tly_action_name((tly_action)action), plen, pair.ptr + 1,
                     (int)pair.len - 1 - plen, pair.ptr + 1 + plen);
}

static tly_err hold(tly_engine *e, uint32_t p, eng_pos pos, eng_held h, const char *what)
{
    const eng_partner *pp = &e->partners[p];
    TRY(eng_raise(e, pos, ENG_X_HELD, p, "%s held until partner '%.*s' is enrolled", what,
                  (int)pp->id_len, pp->id));
    h.seq = pos.seq;
    h.next_n = *pos.n;
    eng_pstate *st = pp->st;
    TRY(ENG_PUSH(st->held, st->held_count, st->held_cap, h));
    return eng_partner_dirty(e, p);
}

static tly_err on_sale(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->id.ptr, ev->id.len);
    uint64_t h = eng_hash(key, klen);
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    char *k = eng_arena_copy(&e->arena, key, klen);
    if (k == NULL)
        return TLY_NOMEM;
    eng_sale sale = {
        .key = k, .key_len = klen, .partner = p, .detail = ENG_NONE, .state = ENG_SALE_HELD};
    memcpy(sale.currency, ev->currency.ptr, 3);
    TRY(ENG_PUSH(e->sales, e->sale_count, e->sale_cap, sale));
    uint32_t s = e->sale_count - 1;
    TRY(eng_map_put(&e->sale_map, k, klen, h, s));
    TRY(eng_sale_dirty(e, s));
    eng_partner *pp = &e->partners[p];
    if (pp->program != ENG_NONE)
        return fold_sale(e, p, s, pos, ev->at_ms, ev->amount);
    if (!pp->owned) /* remembered to settle the registry at enrollment */
        return ENG_PUSH(pp->held_sales, pp->held_sale_count, pp->held_sale_cap, s);
    eng_held hd = {.at_ms = ev->at_ms, .amount = ev->amount, .sale = s, .type = TLY_EV_SALE};
    return hold(e, p, pos, hd, "sale");
}

/* qty is informational [S4]: money follows amount only. */
static tly_err on_return(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_NAME_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->sale.ptr, ev->sale.len);
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    if (e->partners[p].program != ENG_NONE)
        return fold_return(e, p, pos, ev->at_ms, key, klen, ev->amount, ev->currency.ptr);
    char *k = eng_arena_copy(&e->arena, key, klen);
    if (k == NULL)
        return TLY_NOMEM;
    eng_held hd = {
        .at_ms = ev->at_ms, .amount = ev->amount, .key = k, .key_len = klen, .type = TLY_EV_RETURN};
    memcpy(hd.currency, ev->currency.ptr, 3);
    return hold(e, p, pos, hd, "return");
}

static tly_err on_cert(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    uint32_t klen = key2(key, ev->person.ptr, ev->person.len, ev->cert.ptr, ev->cert.len);
    eng_name pair;
    TRY(eng_pair_intern(e, key, klen, &pair));
    if (e->partners[p].program != ENG_NONE)
        return fold_cert(e, p, pos, pair, (uint8_t)ev->action);
    eng_held hd = {.at_ms = ev->at_ms,
                   .key = pair.ptr,
                   .key_len = klen,
                   .type = TLY_EV_CERTIFICATION,
                   .action = (uint8_t)ev->action};
    return hold(e, p, pos, hd, "certification");
}

/* ---- enrollment [E1] [E2] [E3] ---- */

/* Folds the held events in their log order, each at its own seq [D7]. */
static tly_err fold_held(tly_engine *e, uint32_t p)
{
    eng_pstate *st = e->partners[p].st;
    for (uint32_t i = 0; i < st->held_count; i++) {
        eng_held *h = &st->held[i];
        eng_pos hpos = {.seq = h->seq, .n = &h->next_n};
        tly_err err = TLY_OK;
        if (h->type == TLY_EV_SALE)
            err = fold_sale(e, p, h->sale, hpos, h->at_ms, h->amount);
        else if (h->type == TLY_EV_RETURN)
            err = fold_return(e, p, hpos, h->at_ms, h->key, h->key_len, h->amount, h->currency);
        else
            err = fold_cert(e, p, hpos, (eng_name){h->key, h->key_len}, h->action);
        TRY(err);
    }
    free(st->held);
    st->held = NULL;
    st->held_count = st->held_cap = 0;
    return TLY_OK;
}

/* A shard that does not own the partner only settles the registry. */
static tly_err settle_held_sales(tly_engine *e, uint32_t p)
{
    eng_partner *pp = &e->partners[p];
    const eng_program *g = &e->programs[pp->program];
    for (uint32_t i = 0; i < pp->held_sale_count; i++) {
        eng_sale *s = &e->sales[pp->held_sales[i]];
        s->state = memcmp(s->currency, g->currency, 3) == 0 ? ENG_SALE_MOVED : ENG_SALE_NO_MONEY;
        TRY(eng_sale_dirty(e, pp->held_sales[i]));
    }
    free(pp->held_sales);
    pp->held_sales = NULL;
    pp->held_sale_count = pp->held_sale_cap = 0;
    return TLY_OK;
}

static tly_err set_identity(tly_engine *e, eng_pstate *st, const tly_event *ev)
{
    char *name = eng_arena_copy(&e->arena, ev->name.ptr, ev->name.len);
    if (name == NULL)
        return TLY_NOMEM;
    st->name = (eng_name){name, ev->name.len};
    st->kind = ev->kind;
    st->region = (eng_name){NULL, 0};
    if (ev->region.ptr != NULL) {
        char *region = eng_arena_copy(&e->arena, ev->region.ptr, ev->region.len);
        if (region == NULL)
            return TLY_NOMEM;
        st->region = (eng_name){region, ev->region.len};
    }
    return TLY_OK;
}

static tly_err enroll(tly_engine *e, uint32_t p, uint32_t gi, const tly_event *ev)
{
    eng_partner *pp = &e->partners[p];
    pp->program = gi;
    TRY(eng_partner_dirty(e, p));
    if (!pp->owned)
        return settle_held_sales(e, p);
    TRY(set_identity(e, pp->st, ev));
    pp->st->tier = 0; /* a new partner starts at the lowest tier */
    TRY(eng_program_add_member(&e->programs[gi], p));
    return fold_held(e, p);
}

static tly_err on_partner(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    bool owned = eng_owned(e, ev->partner.ptr, ev->partner.len);
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    uint32_t p;
    if (gi == ENG_NONE) { /* the partner stays unenrolled [E2] */
        if (!owned)
            return TLY_OK;
        TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
        return eng_raise(e, pos, ENG_X_UNKNOWN_PROGRAM, p,
                         "partner '%.*s' enrolls in unknown program %.*s", STR_ARGS(ev->partner),
                         STR_ARGS(ev->program));
    }
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    eng_partner *pp = &e->partners[p];
    if (pp->program == ENG_NONE)
        return enroll(e, p, gi, ev);
    if (!owned)
        return TLY_OK;
    if (pp->program == gi) { /* re-enrollment updates identity only [E1] */
        TRY(eng_partner_dirty(e, p));
        return set_identity(e, pp->st, ev);
    }
    const eng_program *cur = &e->programs[pp->program];
    return eng_raise(e, pos, ENG_X_PARTNER_PROGRAM_CHANGE, p,
                     "partner '%.*s' is in program %.*s; enrollment in %.*s ignored",
                     STR_ARGS(ev->partner), (int)cur->name_len, cur->name, STR_ARGS(ev->program));
}

/* ---- closes [L1] [L2] [T7] ---- */

static tly_err on_close(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    bool keeps = e->shard == 0;
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    if (gi == ENG_NONE)
        return keeps ? eng_raise(e, pos, ENG_X_UNKNOWN_PROGRAM, ENG_NONE,
                                 "close of unknown program %.*s", STR_ARGS(ev->program))
                     : TLY_OK;
    eng_program *g = &e->programs[gi];
    if (ev->period_text_kind != g->kind || ev->period != g->eop) {
        if (!keeps)
            return TLY_OK;
        char want[TLY_PERIOD_TEXT_BYTES], got[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(g->kind, g->eop, want);
        tly_period_format(ev->period_text_kind, ev->period, got);
        return eng_raise(e, pos, ENG_X_CLOSE_OUT_OF_ORDER, ENG_NONE,
                         "close %s of %.*s, earliest open is %s", got, STR_ARGS(ev->program), want);
    }
    /* Every partner enrolled in the program is evaluated [T7]; each shard
     * closes the members it owns. */
    for (uint32_t i = 0; i < g->member_count; i++)
        TRY(eng_close_partner(e, g, g->members[i], pos.seq));
    int32_t last = g->eop - g->rules.expiry_n + 1;
    if (last > g->expired_upto)
        g->expired_upto = last;
    g->eop += 1;
    g->dirty = true;
    return TLY_OK;
}

/* ---- payouts [R6] [R7] and adjustments [M8] [R8] ---- */

static tly_err on_payout(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    eng_pstate *st = e->partners[p].st;
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(ev->period_text_kind, ev->period, text);
    /* Periods before the earliest open one are closed, hence final. A
     * period text of the other kind names no period of this program. */
    if (ev->period_text_kind != g->kind || ev->period >= g->eop)
        return eng_raise(e, pos, ENG_X_PAYOUT_NOT_FINAL, p, "payout for %s which is not final",
                         text);
    /* A closed period without a row had no revenue: its payable is 0. */
    eng_row *row = eng_row_find(st, ev->period);
    int64_t payable = row == NULL ? 0 : row->figure - row->paid;
    if (ev->amount > payable)
        return eng_raise(e, pos, ENG_X_OVERPAYMENT, p, "payout %lld > payable %lld for %s",
                         (long long)ev->amount, (long long)payable, text);
    TRY(tly_money_addto(&row->paid, ev->amount));
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "payout", ev->period, false);
    ENG_TRACE(st, TLY_TRACE_PAYOUT, 0, ev->amount);
    return TLY_OK;
}

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
    ENG_TRACE(st, TLY_TRACE_ADJUST_MDF, 0, ev->amount);
    if (ev->amount > 0)
        return eng_credit(st, g->eop, ev->amount);
    return eng_debit(st, -ev->amount);
}

/* Claims, payouts and adjustments of an unenrolled partner are
 * unknown_partner, not held [E7]. */
static tly_err on_partner_money(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    TRY(eng_partner_dirty(e, p));
    if (ev->type == TLY_EV_CLAIM)
        return eng_claim_event(e, p, pos, ev);
    if (e->partners[p].program == ENG_NONE)
        return eng_raise(e, pos, ENG_X_UNKNOWN_PARTNER, p, "%s %s unknown partner",
                         ev->type == TLY_EV_PAYOUT ? "payout" : "adjust",
                         ev->type == TLY_EV_PAYOUT ? "to" : "of");
    if (ev->type == TLY_EV_PAYOUT)
        return on_payout(e, p, pos, ev);
    return on_adjust(e, p, pos, ev);
}

/* ---- apply ---- */

static tly_err dispatch(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    switch (ev->type) {
    case TLY_EV_PROGRAM:
        return on_program(e, pos, ev);
    case TLY_EV_PARTNER:
        return on_partner(e, pos, ev);
    case TLY_EV_SALE:
        return on_sale(e, rec, pos, ev);
    case TLY_EV_RETURN:
        return on_return(e, rec, pos, ev);
    case TLY_EV_CERTIFICATION:
        return on_cert(e, pos, ev);
    case TLY_EV_CLOSE:
        return on_close(e, pos, ev);
    case TLY_EV_CLAIM:
    case TLY_EV_PAYOUT:
    case TLY_EV_ADJUST:
        return on_partner_money(e, pos, ev);
    default:
        return TLY_USAGE;
    }
}

/* After every event: every figure a view of a touched partner shows must
 * fit int64 (else TLY_OVERFLOW stops the consumer), and in debug builds
 * the MDF invariant of SPEC section 6 must hold. */
static tly_err check_touched(const tly_engine *e)
{
    for (uint32_t i = 0; i < e->touched_count; i++) {
        const eng_partner *pp = &e->partners[e->touched[i]];
        if (pp->program == ENG_NONE)
            continue;
        int64_t open, payable, avail;
        TRY(eng_rebate_totals(&e->programs[pp->program].rules, pp->st, &open, &payable));
        TRY(eng_available(pp->st, &avail));
        TLY_ASSERT(eng_invariant_ok(pp->st));
    }
    return TLY_OK;
}

/* A log that repeats (source, id) for a sale is not one the ledger wrote
 * (it enforces idempotency [SPEC 3]); refuse it before changing anything. */
static bool repeated_sale(const tly_engine *e, const tly_record *rec, const tly_event *ev)
{
    if (ev->type != TLY_EV_SALE)
        return false;
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->id.ptr, ev->id.len);
    return eng_map_get(&e->sale_map, key, klen, eng_hash(key, klen)) != ENG_NONE;
}

tly_err tly_engine_apply(tly_engine *e, const tly_record *rec, const tly_event *ev)
{
    if (rec->seq != e->seq + 1 || rec->source.len > TLY_SOURCE_BYTES_MAX ||
        repeated_sale(e, rec, ev))
        return TLY_USAGE;
    uint32_t n = 0;
    eng_pos pos = {.seq = rec->seq, .n = &n};
    e->cur_seq = rec->seq;
    e->touched_count = 0;
    if (e->trace != NULL) { /* source and id of this record's trace lines */
        e->trace_rec = rec;
        e->trace_ev = ev;
    }
    tly_err err = dispatch(e, rec, pos, ev);
    e->trace_rec = NULL;
    e->trace_ev = NULL;
    TRY(err);
    TRY(check_touched(e));
    e->seq = rec->seq;
    return TLY_OK;
}
