/*
 * engine_sales.c — floor 2 (see engine_internal.h): enrollment and held
 * events, sales, returns and certifications (SPEC section 6 and 9 [E*]
 * [S*] [T4]). Every shard registers every sale (its partner and currency)
 * and every partner's enrollment; only the owner of a partner books its
 * money and keeps its sales' money facts.
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
 * key. */
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

/* Folds registered sale s of enrolled owned partner p: a sale in the
 * program's currency gets its money facts (it moved money), any other is
 * an exception and moves nothing. */
static tly_err fold_sale(tly_engine *e, uint32_t p, uint32_t s, eng_pos pos, int64_t at_ms,
                         int64_t amount)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    eng_sale *sale = &e->sales[s];
    TRY(eng_partner_dirty(e, p));
    if (memcmp(sale->currency, g->currency, 3) != 0)
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p, "sale in %.3s, program %.*s is %.3s",
                         sale->currency, (int)g->name_len, g->name, g->currency);
    eng_pstate *st = e->partners[p].st;
    bool late;
    int32_t eff = effective_period(g, at_ms, &late);
    int32_t bps = g->rules.tiers[st->tier].mdf_bps;
    sale->has_detail = true;
    sale->d =
        (eng_sale_detail){.amount = amount, .accrual = tly_money_bps(amount, bps), .bps = bps};
    TRY(eng_sale_dirty(e, s));
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "sale", eff, late);
    if (st->trace != NULL)
        trace_accrual(st, sale, &sale->d, g->rules.tiers[st->tier].name);
    TRY(eng_credit(st, eff, sale->d.accrual));
    TRY(tly_money_addto(&st->accrued, sale->d.accrual));
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    /* revenue counts even when the accrual rounds to 0 [M7] */
    TRY(tly_money_addto(&row->revenue, amount));
    ENG_TRACE(st, TLY_TRACE_REVENUE, eff, amount);
    return late ? exc_late(e, pos, p, g, "sale", eff) : TLY_OK;
}

/* The id part of a sale key (source, id); *len its length. */
static const char *sale_id_of_key(const char *key, uint32_t *len, uint32_t key_len)
{
    uint32_t src = (unsigned char)key[0];
    *len = key_len - 1 - src;
    return key + 1 + src;
}

/* Whether registered sale s moved money. The owner of its partner knows
 * from the sale's money facts; another shard derives it from what every
 * shard registers: the partner is enrolled and the sale is in its
 * program's currency (the owner folds it at the sale or at the
 * enrollment, in that currency or not at all) [S2]. */
static tly_err sale_moved(tly_engine *e, uint32_t s, bool *moved)
{
    const eng_sale *sale = &e->sales[s];
    *moved = sale->has_detail;
    if (eng_owned(e, ENG_SALE_PARTNER(sale), sale->partner_len))
        return TLY_OK;
    uint32_t q;
    TRY(eng_partner_find(e, ENG_SALE_PARTNER(sale), sale->partner_len, &q));
    const eng_partner *qp = q == ENG_NONE ? NULL : &e->partners[q];
    *moved = qp != NULL && qp->program != ENG_NONE &&
             memcmp(sale->currency, e->programs[qp->program].currency, 3) == 0;
    return TLY_OK;
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
    uint32_t s;
    bool moved = false;
    TRY(eng_sale_find(e, key, klen, &s));
    if (s != ENG_NONE)
        TRY(sale_moved(e, s, &moved));
    /* A sale that moved no money is unknown [S2]. */
    if (!moved)
        return eng_raise(e, pos, TLY_X_UNKNOWN_SALE, p, "return of unknown sale '%.*s'", (int)idlen,
                         id);
    const eng_sale *sale = &e->sales[s];
    const eng_partner *pp = &e->partners[p];
    if (sale->partner_len != pp->id_len || memcmp(ENG_SALE_PARTNER(sale), pp->id, pp->id_len) != 0)
        return eng_raise(e, pos, TLY_X_RETURN_PARTNER_MISMATCH, p, /* [S1] */
                         "return of sale '%.*s' which belongs to partner '%.*s'", (int)idlen, id,
                         (int)sale->partner_len, ENG_SALE_PARTNER(sale));
    int64_t unreturned = sale->d.amount - sale->d.returned;
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
    eng_sale_detail *d = &e->sales[s].d;
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
static tly_err fold_cert(tly_engine *e, uint32_t p, eng_pos pos, tly_str pair, uint8_t action)
{
    eng_pstate *st = e->partners[p].st;
    uint32_t i = 0;
    while (i < st->cert_count &&
           (st->certs[i].len != pair.len || memcmp(st->certs[i].ptr, pair.ptr, pair.len) != 0))
        i++;
    TRY(eng_partner_dirty(e, p));
    if (action == TLY_ACT_EARNED) {
        if (i < st->cert_count)
            return TLY_OK;
        eng_name copy;
        TRY(eng_name_copy(&copy, pair.ptr, pair.len));
        tly_err err = ENG_PUSH(st->certs, st->cert_count, st->cert_cap, copy);
        if (err != TLY_OK)
            eng_name_free(&copy);
        return err;
    }
    if (i < st->cert_count) {
        eng_name_free(&st->certs[i]);
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
 * held exception; h keeps its seq and exception counter [E3] [D7]. h
 * takes a copy of key. */
static tly_err hold(tly_engine *e, uint32_t p, eng_pos pos, eng_held h, const char *key,
                    const char *what)
{
    const eng_partner *pp = &e->partners[p];
    TRY(eng_raise(e, pos, TLY_X_HELD, p, "%s held until partner '%.*s' is enrolled", what,
                  (int)pp->id_len, pp->id));
    h.seq = pos.seq;
    h.next_n = *pos.n;
    h.key = eng_copy(key, h.key_len);
    if (h.key == NULL)
        return TLY_NOMEM;
    eng_pstate *st = pp->st;
    tly_err err = ENG_PUSH(st->held, st->held_count, st->held_cap, h);
    if (err != TLY_OK) {
        free(h.key);
        return err;
    }
    return eng_partner_dirty(e, p);
}

/* Registers the sale in every shard (what a return needs to know of it);
 * its owner folds it (enrolled) or holds it (unenrolled) [E3]. */
tly_err eng_on_sale(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->id.ptr, ev->id.len);
    uint32_t s, p;
    TRY(eng_sale_add(e, key, klen, ev->partner, ev->currency.ptr, &s));
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    if (e->partners[p].program != ENG_NONE)
        return fold_sale(e, p, s, pos, ev->at_ms, ev->amount);
    eng_held hd = {.at_ms = ev->at_ms, .amount = ev->amount, .key_len = klen, .type = TLY_EV_SALE};
    return hold(e, p, pos, hd, key, "sale");
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
    eng_held hd = {
        .at_ms = ev->at_ms, .amount = ev->amount, .key_len = klen, .type = TLY_EV_RETURN};
    memcpy(hd.currency, ev->currency.ptr, 3);
    return hold(e, p, pos, hd, key, "return");
}

/* A certification, folded or held by the partner's owner only. */
tly_err eng_on_cert(tly_engine *e, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    uint32_t klen = eng_pair_key(key, ev->person.ptr, ev->person.len, ev->cert.ptr, ev->cert.len);
    if (e->partners[p].program != ENG_NONE)
        return fold_cert(e, p, pos, (tly_str){key, klen}, (uint8_t)ev->action);
    eng_held hd = {.at_ms = ev->at_ms,
                   .key_len = klen,
                   .type = TLY_EV_CERTIFICATION,
                   .action = (uint8_t)ev->action};
    return hold(e, p, pos, hd, key, "certification");
}

/* ---- enrollment [E1] [E2] [E3] ---- */

/* One held event of p, at its own seq [D7]; a held sale is registered. */
static tly_err fold_held_one(tly_engine *e, uint32_t p, eng_held *h)
{
    eng_pos hpos = {.seq = h->seq, .n = &h->next_n};
    if (h->type == TLY_EV_RETURN)
        return fold_return(e, p, hpos, h->at_ms, h->key, h->key_len, h->amount, h->currency);
    if (h->type == TLY_EV_CERTIFICATION)
        return fold_cert(e, p, hpos, (tly_str){h->key, h->key_len}, h->action);
    uint32_t s;
    TRY(eng_sale_find(e, h->key, h->key_len, &s));
    if (s == ENG_NONE)
        return TLY_CORRUPT;
    return fold_sale(e, p, s, hpos, h->at_ms, h->amount);
}

/* Folds the held events in their log order, each at its own seq [D7]. */
static tly_err fold_held(tly_engine *e, uint32_t p)
{
    eng_pstate *st = e->partners[p].st;
    for (uint32_t i = 0; i < st->held_count; i++)
        TRY(fold_held_one(e, p, &st->held[i]));
    for (uint32_t i = 0; i < st->held_count; i++)
        free(st->held[i].key);
    free(st->held);
    st->held = NULL;
    st->held_count = st->held_cap = 0;
    return TLY_OK;
}

/* Name, kind and region of an owned partner from its partner event. */
static tly_err set_identity(eng_pstate *st, const tly_event *ev)
{
    eng_name_free(&st->name);
    eng_name_free(&st->region);
    st->kind = ev->kind;
    TRY(eng_name_copy(&st->name, ev->name.ptr, ev->name.len));
    return eng_name_copy(&st->region, ev->region.ptr, ev->region.len);
}

/* First enrollment of p in program gi: the owner sets identity and the
 * lowest tier and folds the held events; other shards record the
 * enrollment, which decides whether p's sales moved money [E1] [E3]. */
static tly_err enroll(tly_engine *e, uint32_t p, uint32_t gi, const tly_event *ev)
{
    eng_partner *pp = &e->partners[p];
    pp->program = gi;
    pp->claims_changed = true; /* its first views */
    TRY(eng_partner_dirty(e, p));
    if (!pp->owned)
        return TLY_OK;
    TRY(set_identity(pp->st, ev));
    pp->st->tier = 0;           /* a new partner starts at the lowest tier */
    TRY(eng_claims_fill(e, p)); /* denied claims of before, for its claims view */
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
        return set_identity(pp->st, ev);
    }
    const eng_program *cur = &e->programs[pp->program];
    return eng_raise(e, pos, TLY_X_PARTNER_PROGRAM_CHANGE, p,
                     "partner '%.*s' is in program %.*s; enrollment in %.*s ignored",
                     STR_ARGS(ev->partner), (int)cur->name_len, cur->name, STR_ARGS(ev->program));
}

/* ---- closes [L1] [L2] [T7] ---- */
