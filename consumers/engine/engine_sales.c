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
#include "tly_currency.h"

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

/* The conversion fields of a trace line: amount in currency cur at fx
 * (none when fx converts nothing) [F2]. */
static void trace_fx(tly_trace_line *l, const eng_fx *fx, const char *cur, int64_t amount)
{
    if (fx->units == 1 && fx->scale == 0 && fx->ediff == 0)
        return;
    l->fx_currency = (tly_str){cur, 3};
    l->fx_amount = amount;
    l->fx_units = fx->units;
    l->fx_scale = fx->scale;
}

/* The accrual line of a traced sale (basis: the amount in the program's
 * currency) and, when the MDF cap cut it, the capped line [K1]; a held
 * sale's ids come from its key. */
static void trace_accrual(eng_pstate *st, const eng_sale *sale, int64_t amount_k, int64_t raw,
                          eng_name tier, int64_t cap)
{
    const eng_sale_detail *d = &sale->d;
    eng_trace_held(st, sale->key, sale->key_len, true);
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_ACCRUAL;
    l.bucket = l.period;
    l.amount = d->accrual;
    l.basis = amount_k;
    l.bps = d->bps;
    l.tier = (tly_str){tier.ptr, tier.len};
    trace_fx(&l, &d->fx, sale->currency, d->amount);
    eng_trace_line(st->trace, &l);
    if (raw > d->accrual) {
        l.kind = TLY_TRACE_CAPPED;
        l.amount = raw - d->accrual;
        l.basis = raw;
        l.cap = cap;
        eng_trace_line(st->trace, &l);
    }
}

/* Converts amount in cur into program g's currency at business time at
 * with the rates folded so far [F2]; false (and a currency_mismatch of
 * what) when no rate is in force or the result leaves the amount range. */
static tly_err convert(tly_engine *e, uint32_t p, eng_pos pos, const char *what, const char cur[3],
                       int64_t at_ms, int64_t amount, eng_fx *fx, int64_t *amount_k, bool *ok)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    *ok = false;
    if (!eng_fx_for(e, cur, g->currency, at_ms, UINT64_MAX, fx))
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p,
                         "%s in %.3s, program %.*s is %.3s, no rate in force", what, cur,
                         (int)g->name_len, g->name, g->currency);
    if (eng_fx_apply(fx, amount, amount_k) != TLY_OK || *amount_k > TLY_AMOUNT_MAX) {
        char text[TLY_MONEY_TEXT_BYTES]; /* only here: formatting costs every sale */
        tly_money_text_cur(amount, cur, text, sizeof text);
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p,
                         "%s of %s converts beyond the largest amount", what, text);
    }
    *ok = true;
    return TLY_OK;
}

/* The accrual of a sale of amount_k at bps, cut to what the MDF cap of the
 * sale's period leaves [K1] [K4] [K5]. */
static int64_t capped_accrual(const eng_rules *r, const eng_row *row, int64_t raw)
{
    if (r->mdf_cap == ENG_NO_CAP)
        return raw;
    int64_t room = r->mdf_cap - row->mdf_gross;
    if (room < 0)
        room = 0;
    return raw < room ? raw : room;
}

/* Folds registered sale s of enrolled owned partner p: converted into the
 * program's currency it gets its money facts (it moved money); without a
 * rate in force it is an exception and moves nothing [F2]. */
static tly_err fold_sale(tly_engine *e, uint32_t p, uint32_t s, eng_pos pos, int64_t at_ms,
                         int64_t amount)
{
    eng_program *g = &e->programs[e->partners[p].program];
    eng_prefetch_latest(e->partners[p].st);
    TRY(eng_partner_dirty(e, p));
    eng_fx fx;
    int64_t amount_k;
    bool ok;
    TRY(convert(e, p, pos, "sale", e->sales[s].currency, at_ms, amount, &fx, &amount_k, &ok));
    if (!ok)
        return TLY_OK;
    eng_sale *sale = &e->sales[s];
    eng_pstate *st = e->partners[p].st;
    bool late;
    int32_t eff = effective_period(g, at_ms, &late);
    int32_t bps = g->rules.tiers[st->tier].mdf_bps;
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    int64_t raw = tly_money_bps(amount_k, bps);
    sale->has_detail = true;
    sale->d = (eng_sale_detail){
        .amount = amount, .accrual = capped_accrual(&g->rules, row, raw), .bps = bps, .fx = fx};
    TRY(tly_money_addto(&row->mdf_gross, sale->d.accrual));
    TRY(eng_sale_dirty(e, s));
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "sale", eff, late);
    if (st->trace != NULL)
        trace_accrual(st, sale, amount_k, raw, g->rules.tiers[st->tier].name, g->rules.mdf_cap);
    /* revenue counts even when the accrual rounds to 0 [M7] */
    TRY(tly_money_addto(&row->revenue, amount_k));
    TRY(eng_credit(st, eff, sale->d.accrual));
    TRY(tly_money_addto(&st->accrued, sale->d.accrual));
    TRY(eng_book2(g, st, eff, ENG_ACT_REVENUE, amount_k, ENG_ACT_ACCRUED, sale->d.accrual));
    ENG_TRACE(st, TLY_TRACE_REVENUE, eff, amount_k);
    return late ? exc_late(e, pos, p, g, "sale", eff) : TLY_OK;
}

/* The id part of a sale key (source, id); *len its length. */
static const char *sale_id_of_key(const char *key, uint32_t *len, uint32_t key_len)
{
    tly_str source, id;
    eng_key2_split(key, key_len, &source, &id);
    *len = id.len;
    return id.ptr;
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
    if (qp == NULL || qp->program == ENG_NONE)
        return TLY_OK;
    /* the owner converted it with the rates folded before the sale, or
     * before the enrollment that folded it [F2] [F7] */
    sale = &e->sales[s];
    uint64_t by = sale->seq > qp->enroll_seq ? sale->seq : qp->enroll_seq;
    eng_fx fx;
    *moved = eng_fx_for(e, sale->currency, e->programs[qp->program].currency, sale->at_ms, by, &fx);
    return TLY_OK;
}

/* Returns the capped amount that applies, 0 when nothing does. Checks run
 * in the order currency, unknown sale, partner mismatch, over-return [S9]:
 * a return of this partner's sale must be in the sale's currency [F4],
 * any other in the program's [F5]. */
static tly_err return_check(tly_engine *e, uint32_t p, eng_pos pos, const char *key, uint32_t klen,
                            int64_t amount, const char cur[3], int64_t *apply, uint32_t *sale_out)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    uint32_t idlen;
    const char *id = sale_id_of_key(key, &idlen, klen);
    *apply = 0;
    uint32_t s;
    bool moved = false;
    TRY(eng_sale_find(e, key, klen, &s));
    if (s != ENG_NONE)
        TRY(sale_moved(e, s, &moved));
    const eng_sale *sale = s == ENG_NONE ? NULL : &e->sales[s];
    const eng_partner *pp = &e->partners[p];
    bool same = moved && sale->partner_len == pp->id_len &&
                memcmp(ENG_SALE_PARTNER(sale), pp->id, pp->id_len) == 0;
    const char *want = same ? sale->currency : g->currency;
    if (memcmp(cur, want, 3) != 0)
        return eng_raise(e, pos, TLY_X_CURRENCY_MISMATCH, p, "return in %.3s, %s %.3s", cur,
                         same ? "its sale was in" : "the program's currency is", want);
    /* A sale that moved no money is unknown [S2]. */
    if (!moved)
        return eng_raise(e, pos, TLY_X_UNKNOWN_SALE, p, "return of unknown sale '%.*s'", (int)idlen,
                         id);
    if (!same)
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
    char a[TLY_MONEY_TEXT_BYTES], u[TLY_MONEY_TEXT_BYTES], x[TLY_MONEY_TEXT_BYTES];
    tly_money_text_cur(amount, cur, a, sizeof a); /* the sale's currency [F8] */
    tly_money_text_cur(unreturned, cur, u, sizeof u);
    tly_money_text_cur(amount - unreturned, cur, x, sizeof x);
    return eng_raise(e, pos, TLY_X_OVER_RETURN, p, "returned %s, unreturned %s, excess %s ignored",
                     a, u, x);
}

/* The clawback line of a traced return: ref is the sale it names; a held
 * return keeps only its sale's key, hence only its source. basis is the
 * revenue reduction in the program's currency. */
static void trace_clawback(eng_pstate *st, const char *key, uint32_t klen, int64_t c,
                           int64_t reduction, const eng_sale *sale, int64_t apply)
{
    eng_trace_held(st, key, klen, false);
    uint32_t idlen;
    const char *id = sale_id_of_key(key, &idlen, klen);
    st->trace->cur.ref = (tly_str){id, idlen};
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_CLAWBACK;
    l.amount = c;
    l.basis = reduction;
    l.bps = sale->d.bps;
    trace_fx(&l, &sale->d.fx, sale->currency, apply);
    eng_trace_line(st->trace, &l);
}

/* Folds a return of an enrolled owned partner: the capped amount, at the
 * rate its sale used, reduces revenue of the return's own effective
 * period and claws back at the sale's rate [S3] [S6] [S7] [F4]. */
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
    eng_program *g = &e->programs[e->partners[p].program];
    eng_sale_detail *d = &e->sales[s].d;
    /* The reduction converts cumulatively, so a full return nets the sale
     * to 0; the clawback is on it at the sale's own rate, capped at the
     * accrual not yet clawed back [S3] [S7] [F4]. */
    int64_t reduction;
    TRY(eng_fx_reduction(&d->fx, d->returned, d->returned + apply, &reduction));
    int64_t c = tly_money_bps(reduction, d->bps);
    if (c > d->accrual - d->clawed)
        c = d->accrual - d->clawed;
    d->returned += apply;
    d->clawed += c;
    TRY(eng_sale_dirty(e, s));
    bool late;
    int32_t eff = effective_period(g, at_ms, &late);
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "return", eff, late);
    if (st->trace != NULL)
        trace_clawback(st, key, klen, c, reduction, &e->sales[s], apply);
    TRY(tly_money_addto(&st->clawed_back, c));
    TRY(eng_debit(st, c));
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    /* A return reduces its own effective period, which may go negative [S6]. */
    TRY(tly_money_sub(row->revenue, reduction, &row->revenue));
    TRY(eng_book2(g, st, eff, ENG_ACT_REVENUE, -reduction, ENG_ACT_CLAWED, c));
    ENG_TRACE(st, TLY_TRACE_REVENUE, eff, -reduction);
    return late ? exc_late(e, pos, p, g, "return", eff) : TLY_OK;
}

/* Active certifications are distinct (person, cert) pairs; earning an
 * active pair again replaces its expiry [T14], ending an inactive one is
 * cert_not_active, judged by the log alone [T4] [T10]. */
static tly_err fold_cert(tly_engine *e, uint32_t p, eng_pos pos, tly_str pair, uint8_t action,
                         int64_t expires_ms)
{
    eng_pstate *st = e->partners[p].st;
    uint32_t at = eng_cert_find(st, pair.ptr, pair.len);
    TRY(eng_partner_dirty(e, p));
    if (action == TLY_ACT_EARNED) {
        if (at == ENG_NONE)
            return eng_cert_add(st, pair.ptr, pair.len, expires_ms);
        eng_cert_set_expires(st, at, expires_ms);
        return TLY_OK;
    }
    if (at != ENG_NONE) {
        eng_cert_remove(st, at);
        return TLY_OK;
    }
    int plen = (unsigned char)pair.ptr[0];
    return eng_raise(e, pos, TLY_X_CERT_NOT_ACTIVE, p, "%s of inactive %.*s/%.*s",
                     tly_action_name((tly_action)action), plen, pair.ptr + 1,
                     (int)pair.len - 1 - plen, pair.ptr + 1 + plen);
}

/* The referral line of a traced referral; a held one's source comes from
 * its key (source, deal). */
static void trace_referral(eng_pstate *st, const char *key, uint32_t klen, int64_t fee,
                           int64_t amount_k, int32_t bps, eng_name tier, const eng_fx *fx,
                           const char cur[3], int64_t amount)
{
    eng_trace_held(st, key, klen, false);
    uint32_t dlen;
    const char *deal = sale_id_of_key(key, &dlen, klen);
    st->trace->cur.ref = (tly_str){deal, dlen};
    tly_trace_line l = st->trace->cur;
    l.kind = TLY_TRACE_REFERRAL;
    l.amount = fee;
    l.basis = amount_k;
    l.bps = bps;
    l.tier = (tly_str){tier.ptr, tier.len};
    trace_fx(&l, fx, cur, amount);
    eng_trace_line(st->trace, &l);
}

/* Folds a referral of an enrolled owned partner: converted like a sale, it
 * earns the fee of the partner's current tier in its effective period,
 * fixed now, and counts toward tier revenue; it moves no MDF and no
 * rebate revenue [Q1] [Q2] [Q5]. key is (source, deal). */
static tly_err fold_referral(tly_engine *e, uint32_t p, eng_pos pos, const eng_held *h)
{
    eng_program *g = &e->programs[e->partners[p].program];
    eng_prefetch_latest(e->partners[p].st);
    TRY(eng_partner_dirty(e, p));
    eng_fx fx;
    int64_t amount_k;
    bool ok;
    TRY(convert(e, p, pos, "referral", h->currency, h->at_ms, h->amount, &fx, &amount_k, &ok));
    if (!ok)
        return TLY_OK;
    eng_pstate *st = e->partners[p].st;
    bool late;
    int32_t eff = effective_period(g, h->at_ms, &late);
    const eng_tier *tier = &g->rules.tiers[st->tier];
    int64_t fee = tly_money_bps(amount_k, tier->referral_bps);
    eng_row *row;
    TRY(eng_row_get(st, eff, &row));
    TRY(tly_money_addto(&row->referral, fee));
    TRY(tly_money_addto(&row->referred, amount_k));
    TRY(eng_book(g, st, eff, ENG_ACT_REFERRAL, fee));
    ENG_TRACE_BEGIN(st, e, p, pos.seq, "referral", eff, late);
    if (st->trace != NULL)
        trace_referral(st, h->key, h->key_len, fee, amount_k, tier->referral_bps, tier->name, &fx,
                       h->currency, h->amount);
    return late ? exc_late(e, pos, p, g, "referral", eff) : TLY_OK;
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
    char ref[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    h.ref_len = eng_sale_key(ref, e->about.source.ptr, e->about.source.len, e->about.id.ptr,
                             e->about.id.len);
    h.key = eng_copy(key, h.key_len);
    h.ref = eng_copy(ref, h.ref_len);
    if (h.key == NULL || h.ref == NULL) {
        free(h.key);
        free(h.ref);
        return TLY_NOMEM;
    }
    eng_pstate *st = pp->st;
    tly_err err = ENG_PUSH(st->held, st->held_count, st->held_cap, h);
    if (err != TLY_OK) {
        free(h.key);
        free(h.ref);
        return err;
    }
    return eng_partner_dirty(e, p);
}

/* Registers the sale (what a return needs to know of it): in every shard,
 * or in its partner's only when the others read it from the log (a sale
 * source); its owner folds it (enrolled) or holds it (unenrolled) [E3]. */
tly_err eng_on_sale(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    bool owned = eng_owned(e, ev->partner.ptr, ev->partner.len);
    if (!owned && e->sale_fn != NULL)
        return TLY_OK;
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->id.ptr, ev->id.len);
    uint32_t s, p;
    TRY(eng_sale_add(e, key, klen, ev->partner, ev->currency.ptr, ev->at_ms, &s));
    if (!owned)
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
    char key[ENG_PAIR_KEY_BYTES_MAX];
    uint32_t klen = eng_pair_key(key, ev->person.ptr, ev->person.len, ev->cert.ptr, ev->cert.len);
    int64_t expires = ev->has_expires ? ev->expires_ms : ENG_NO_EXPIRY;
    if (e->partners[p].program != ENG_NONE)
        return fold_cert(e, p, pos, (tly_str){key, klen}, (uint8_t)ev->action, expires);
    eng_held hd = {.at_ms = ev->at_ms,
                   .key_len = klen,
                   .type = TLY_EV_CERTIFICATION,
                   .action = (uint8_t)ev->action,
                   .expires_ms = expires};
    return hold(e, p, pos, hd, key, "certification");
}

/* A referral, folded or held by the partner's owner only [Q1]. */
tly_err eng_on_referral(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev)
{
    if (!eng_owned(e, ev->partner.ptr, ev->partner.len))
        return TLY_OK;
    uint32_t p;
    TRY(eng_partner_get(e, ev->partner.ptr, ev->partner.len, &p));
    char key[1 + TLY_SOURCE_BYTES_MAX + TLY_NAME_BYTES_MAX];
    uint32_t klen = eng_sale_key(key, rec->source.ptr, rec->source.len, ev->deal.ptr, ev->deal.len);
    eng_held hd = {.at_ms = ev->at_ms,
                   .amount = ev->amount,
                   .key = key,
                   .key_len = klen,
                   .type = TLY_EV_REFERRAL,
                   .expires_ms = ENG_NO_EXPIRY};
    memcpy(hd.currency, ev->currency.ptr, 3);
    if (e->partners[p].program != ENG_NONE)
        return fold_referral(e, p, pos, &hd);
    return hold(e, p, pos, hd, key, "referral");
}

/* ---- enrollment [E1] [E2] [E3] ---- */

/* What the exceptions of held event h are about: its own source, id and
 * amount (a sale's currency is its registered one). */
static eng_about held_about(const eng_held *h)
{
    uint32_t src = (unsigned char)h->ref[0];
    eng_about a = {.source = {h->ref + 1, src},
                   .id = {h->ref + 1 + src, h->ref_len - 1 - src},
                   .has_amount = h->type != TLY_EV_CERTIFICATION,
                   .amount = h->amount};
    if (h->type == TLY_EV_RETURN || h->type == TLY_EV_REFERRAL)
        memcpy(a.currency, h->currency, 3);
    return a;
}

static tly_err fold_held_event(tly_engine *e, uint32_t p, eng_held *h);

/* One held event of p, at its own seq [D7], its exceptions about it. */
static tly_err fold_held_one(tly_engine *e, uint32_t p, eng_held *h)
{
    eng_about outer = e->about;
    e->about = held_about(h);
    tly_err err = fold_held_event(e, p, h);
    e->about = outer;
    return err;
}

/* Folds held event h; a held sale is registered. */
static tly_err fold_held_event(tly_engine *e, uint32_t p, eng_held *h)
{
    eng_pos hpos = {.seq = h->seq, .n = &h->next_n};
    if (h->type == TLY_EV_RETURN)
        return fold_return(e, p, hpos, h->at_ms, h->key, h->key_len, h->amount, h->currency);
    if (h->type == TLY_EV_CERTIFICATION)
        return fold_cert(e, p, hpos, (tly_str){h->key, h->key_len}, h->action, h->expires_ms);
    if (h->type == TLY_EV_REFERRAL)
        return fold_referral(e, p, hpos, h);
    uint32_t s;
    TRY(eng_sale_find(e, h->key, h->key_len, &s));
    if (s == ENG_NONE)
        return TLY_CORRUPT;
    memcpy(e->about.currency, e->sales[s].currency, 3);
    return fold_sale(e, p, s, hpos, h->at_ms, h->amount);
}

/* Folds the held events in their log order, each at its own seq [D7]. */
static tly_err fold_held(tly_engine *e, uint32_t p)
{
    eng_pstate *st = e->partners[p].st;
    for (uint32_t i = 0; i < st->held_count; i++)
        TRY(fold_held_one(e, p, &st->held[i]));
    for (uint32_t i = 0; i < st->held_count; i++) {
        free(st->held[i].key);
        free(st->held[i].ref);
    }
    free(st->held);
    st->held = NULL;
    st->held_count = st->held_cap = 0;
    return TLY_OK;
}

/* Name, kind and region of an owned partner from its partner event; a
 * re-enrollment without a region keeps the one it had [E1]. */
static tly_err set_identity(eng_pstate *st, const tly_event *ev)
{
    eng_pstate_name_free(st, &st->name);
    st->kind = ev->kind;
    TRY(eng_name_copy(&st->name, ev->name.ptr, ev->name.len));
    if (ev->region.ptr == NULL && st->region.ptr != NULL)
        return TLY_OK;
    eng_pstate_name_free(st, &st->region);
    return eng_name_copy(&st->region, ev->region.ptr, ev->region.len);
}

/* First enrollment of p in program gi: the owner sets identity and the
 * lowest tier and folds the held events; other shards record the
 * enrollment, which decides whether p's sales moved money [E1] [E3]. */
static tly_err enroll(tly_engine *e, uint32_t p, uint32_t gi, const tly_event *ev)
{
    eng_partner *pp = &e->partners[p];
    pp->program = gi;
    pp->enroll_seq = e->cur_seq;
    TRY(eng_partner_dirty(e, p));
    if (!pp->owned)
        return TLY_OK;
    TRY(set_identity(pp->st, ev));
    pp->st->tier = 0; /* a new partner starts at the lowest tier */
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
