/*
 * engine_sales.c — floor 2 (see engine_internal.h): enrollment and held
 * events, sales, returns and certifications (SPEC section 6 and 9 [E*]
 * [S*] [T4]). Every shard keeps the registry of all sales; only the owner
 * of a partner books its money.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"

/* ---- sales, returns, certifications [S*] [T4] ---- */

/* Effective period = max(period(at), earliest open period); *late when
 * period(at) is before it [P2] [P3]. */
static int32_t effective_period(const eng_program *g, int64_t at_ms, bool *late)
{
    int32_t p = tly_period_of(g->kind, at_ms);
    *late = p < g->eop;
    return *late ? g->eop : p;
}

/* The late exception of a sale or return folded into period [P2]. */
static tly_err exc_late(tly_engine *e, eng_pos pos, uint32_t p, const eng_program *g,
                        const char *what, int32_t period)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(g->kind, period, text);
    return eng_raise(e, pos, TLY_X_LATE, p, "%s lands in %s", what, text);
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
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p, "sale in %.3s, program %.*s is %.3s",
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

/* The id part of a registry key (source, id); *len its length. */
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
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p, "return in %.3s, program %.*s is %.3s",
                         cur, (int)g->name_len, g->name, g->currency);
    uint32_t s = eng_map_get(&e->sale_map, key, klen, eng_hash(key, klen));
    /* A sale that moved no money is unknown [S2]. */
    if (s == ENG_NONE || e->sales[s].state != ENG_SALE_MOVED)
        return eng_raise(e, pos, TLY_X_UNKNOWN_SALE, p, "return of unknown sale '%.*s'", (int)idlen,
                         id);
    if (e->sales[s].partner != p) { /* [S1] */
        const eng_partner *o = &e->partners[e->sales[s].partner];
        return eng_raise(e, pos, TLY_X_RETURN_PARTNER_MISMATCH, p,
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
    return eng_raise(e, pos, TLY_X_OVER_RETURN, p,
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

/* Folds a return of an enrolled owned partner: the capped amount claws
 * back at the sale's rate and reduces revenue of the return's own
 * effective period [S3] [S6] [S7]. */
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
    return eng_raise(e, pos, TLY_X_CERT_NOT_ACTIVE, p, "%s of inactive %.*s/%.*s",
                     tly_action_name((tly_action)action), plen, pair.ptr + 1,
                     (int)pair.len - 1 - plen, pair.ptr + 1 + plen);
}

/* Keeps event h of unenrolled owned partner p until enrollment, with a
 * held exception; h keeps its seq and exception counter [E3] [D7]. */
static tly_err hold(tly_engine *e, uint32_t p, eng_pos pos, eng_held h, const char *what)
{
    const eng_partner *pp = &e->partners[p];
    TRY(eng_raise(e, pos, TLY_X_HELD, p, "%s held until partner '%.*s' is enrolled", what,
                  (int)pp->id_len, pp->id));
    h.seq = pos.seq;
    h.next_n = *pos.n;
    eng_pstate *st = pp->st;
    TRY(ENG_PUSH(st->held, st->held_count, st->held_cap, h));
    return eng_partner_dirty(e, p);
}

/* Registers the sale in every shard, then folds it (enrolled), remembers
 * it (not owned) or holds it (owned, unenrolled) [E3]. */
tly_err eng_on_sale(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
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

/* A return, folded or held by the partner's owner only. qty is
 * informational [S4]: money follows amount only. */
tly_err eng_on_return(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
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

/* A certification, folded or held by the partner's owner only; the pair
 * key is interned so active pairs compare by pointer. */
tly_err eng_on_cert(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    uint32_t klen = eng_pair_key(key, ev->person.ptr, ev->person.len, ev->cert.ptr, ev->cert.len);
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

/* Name, kind and region of an owned partner from its partner event. */
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

/* First enrollment of p in program gi: the owner sets identity and the
 * lowest tier and folds the held events; other shards settle the
 * registry [E1] [E3]. */
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

/* Enrollment [E1] [E2]: unknown program or a change of program are
 * exceptions; re-enrollment in the same program updates identity only. */
tly_err eng_on_partner(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    bool owned = eng_owned(e, ev->partner.ptr, ev->partner.len);
    uint32_t gi = eng_program_find(e, ev->program.ptr, ev->program.len);
    uint32_t p;
    if (gi == ENG_NONE) { /* the partner stays unenrolled [E2] */
        if (!owned)
            return TLY_OK;
        TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
        return eng_raise(e, pos, TLY_X_UNKNOWN_PROGRAM, p,
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
    return eng_raise(e, pos, TLY_X_PARTNER_PROGRAM_CHANGE, p,
                     "partner '%.*s' is in program %.*s; enrollment in %.*s ignored",
                     STR_ARGS(ev->partner), (int)cur->name_len, cur->name, STR_ARGS(ev->program));
}

/* ---- closes [L1] [L2] [T7] ---- */
