/*
 * engine_records.c — floor 4 of the engine (see engine_internal.h): the
 * stored records (engine_records.h lists them). Packing writes what the
 * flush stores; unpacking reads a record back into the data model, every
 * string an owned copy (or, for global tier names, interned), so the
 * bytes may go as soon as it returns. It also keeps the block of a
 * partner's active certifications (eng_cert), which its record lists.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_records.h"
#include "tly_assert.h"
#include "tly_mp.h"
#include "tly_mpw.h"

/* ---- a partner's active certifications ---- */

uint32_t eng_cert_at(const eng_pstate *st, uint32_t off, eng_cert *c)
{
    TLY_ASSERT(off + ENG_CERT_HEAD <= st->cert_bytes);
    const char *at = st->certs + off;
    uint16_t len;
    memcpy(&c->expires_ms, at, 8);
    memcpy(&len, at + 8, 2);
    c->key = at + ENG_CERT_HEAD;
    c->key_len = len;
    return off + ENG_CERT_HEAD + len;
}

uint32_t eng_cert_find(const eng_pstate *st, const char *key, uint32_t len)
{
    eng_cert c;
    for (uint32_t off = 0, next; off < st->cert_bytes; off = next) {
        next = eng_cert_at(st, off, &c);
        if (c.key_len == len && memcmp(c.key, key, len) == 0)
            return off;
    }
    return ENG_NONE;
}

uint32_t eng_cert_count(const eng_pstate *st)
{
    uint32_t n = 0;
    eng_cert c;
    for (uint32_t off = 0; off < st->cert_bytes; off = eng_cert_at(st, off, &c))
        n++;
    return n;
}

/* Writes entry (key, expires_ms) at at. */
static void cert_put(char *at, const char *key, uint32_t len, int64_t expires_ms)
{
    uint16_t len16 = (uint16_t)len;
    memcpy(at, &expires_ms, 8);
    memcpy(at + 8, &len16, 2);
    memcpy(at + ENG_CERT_HEAD, key, len);
}

tly_err eng_cert_add(eng_pstate *st, const char *key, uint32_t len, int64_t expires_ms)
{
    TLY_ASSERT(len <= ENG_PAIR_KEY_BYTES_MAX);
    uint32_t need = st->cert_bytes + ENG_CERT_HEAD + len;
    if (need < st->cert_bytes)
        return TLY_NOMEM;
    TRY(eng_pstate_grow(st, (void **)&st->certs, &st->cert_cap, need, 1));
    cert_put(st->certs + st->cert_bytes, key, len, expires_ms);
    st->cert_bytes = need;
    return TLY_OK;
}

void eng_cert_set_expires(eng_pstate *st, uint32_t off, int64_t expires_ms)
{
    TLY_ASSERT(off + ENG_CERT_HEAD <= st->cert_bytes);
    memcpy(st->certs + off, &expires_ms, 8);
}

void eng_cert_remove(eng_pstate *st, uint32_t off)
{
    eng_cert c;
    uint32_t next = eng_cert_at(st, off, &c);
    memmove(st->certs + off, st->certs + next, st->cert_bytes - next);
    st->cert_bytes -= next - off;
}

/* ---- packing ---- */

static void pk_str(tly_mpw *pk, const char *s, size_t len)
{
    if (s == NULL) {
        tly_mpw_nil(pk);
        return;
    }
    tly_mpw_str(pk, s, len);
}

static void pk_name(tly_mpw *pk, eng_name n)
{
    pk_str(pk, n.ptr, n.len);
}

static void pk_liab(tly_mpw *pk, const eng_liab *l)
{
    tly_mpw_array(pk, 5);
    tly_mpw_int(pk, l->available);
    tly_mpw_int(pk, l->pending);
    tly_mpw_int(pk, l->approved);
    tly_mpw_int(pk, l->open);
    tly_mpw_int(pk, l->payable);
}

/* How many of a's figures are not 0. */
static uint32_t act_nonzero(const eng_act *a)
{
    uint32_t k = 0;
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        k += a->v[f] != 0;
    return k;
}

/* The figures of one period, sparse: [mask, the figures whose bit of mask
 * is set, in eng_act_field order] (most periods move 2-3 of the ten; a
 * pack call per figure was a measurable share of the flush). */
static void pk_figures_body(tly_mpw *pk, const eng_act *a)
{
    uint32_t mask = 0;
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        if (a->v[f] != 0)
            mask |= 1u << f;
    tly_mpw_uint(pk, mask);
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        if (a->v[f] != 0)
            tly_mpw_int(pk, a->v[f]);
}

static void pk_figures(tly_mpw *pk, const eng_act *a)
{
    tly_mpw_array(pk, 2 + act_nonzero(a));
    tly_mpw_int(pk, a->period);
    pk_figures_body(pk, a);
}

/* What took effect per period: [[period, mask, figures...]...]. */
static void pk_acts(tly_mpw *pk, const eng_act *v, uint32_t n)
{
    tly_mpw_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        pk_figures(pk, &v[i]);
}

void eng_pack_journal(tly_mpw *pk, const char *partner, size_t len, const eng_act *a)
{
    tly_mpw_array(pk, 2 + act_nonzero(a));
    pk_str(pk, partner, len);
    pk_figures_body(pk, a);
}

/* Amounts by period: [[period, amount]...]. */
static void pk_shares(tly_mpw *pk, const eng_share *v, uint32_t n)
{
    tly_mpw_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        tly_mpw_array(pk, 2);
        tly_mpw_int(pk, v[i].period);
        tly_mpw_int(pk, v[i].amount);
    }
}

/* The program record: rules, periods, and the shard's liability sums. */
void eng_pack_program(tly_mpw *pk, const eng_program *g)
{
    const eng_rules *r = &g->rules;
    tly_mpw_array(pk, ENG_PROGRAM_FIELDS);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, g->name, g->name_len);
    pk_str(pk, g->currency, 3);
    tly_mpw_int(pk, g->kind);
    tly_mpw_int(pk, r->version);
    tly_mpw_array(pk, r->tier_count);
    for (uint32_t i = 0; i < r->tier_count; i++) {
        const eng_tier *t = &r->tiers[i];
        tly_mpw_array(pk, 7);
        pk_name(pk, t->name);
        tly_mpw_int(pk, t->min_revenue);
        tly_mpw_int(pk, t->min_certs);
        tly_mpw_int(pk, t->mdf_bps);
        tly_mpw_int(pk, t->rebate_bonus_bps);
        tly_mpw_int(pk, t->referral_bps);
        tly_mpw_array(pk, t->benefit_count);
        for (uint32_t b = 0; b < t->benefit_count; b++)
            pk_name(pk, t->benefits[b]);
    }
    tly_mpw_int(pk, r->mode);
    tly_mpw_array(pk, r->bracket_count);
    for (uint32_t i = 0; i < r->bracket_count; i++) {
        tly_mpw_array(pk, 2);
        tly_mpw_int(pk, r->brackets[i].from);
        tly_mpw_int(pk, r->brackets[i].bps);
    }
    tly_mpw_int(pk, r->expiry_n);
    tly_mpw_int(pk, r->window_w);
    tly_mpw_int(pk, r->basis);
    tly_mpw_int(pk, r->baseline_k);
    tly_mpw_int(pk, r->rebate_min);
    tly_mpw_int(pk, r->rebate_cap);
    tly_mpw_int(pk, r->mdf_cap);
    tly_mpw_int(pk, r->moves);
    tly_mpw_int(pk, r->grace);
    tly_mpw_int(pk, g->first_period);
    tly_mpw_int(pk, g->eop);
    tly_mpw_int(pk, g->expired_upto);
    pk_liab(pk, &g->liab);
    pk_acts(pk, g->rep, g->rep_count);
    pk_shares(pk, g->open_rebate, g->open_count);
    tly_mpw_int(pk, g->arch_h);
}

/* ---- sale records ----
 *
 * One "S/2/" record per sale is most of a flush's puts: its bytes are
 * written straight into the flush's reused buffer, a bounded record with
 * no check of room per value. */

/* Largest sale record: fixarray, 11 integers of ≤ 9 bytes, two names. */
#define SALE_RECORD_BYTES_MAX (1 + 11 * 9 + 2 * (2 + UINT8_MAX))

/* The sale record: [fmt, partner, currency, seq, at] and, with its money
 * facts, [amount, returned, accrual, clawed, bps, fx units, fx scale, fx
 * ediff]. */
bool eng_pack_sale(eng_buf *b, const eng_sale *s)
{
    _Static_assert(TLY_NAME_BYTES_MAX <= UINT8_MAX, "partner id is str8");
    b->len = 0;
    if (b->cap < SALE_RECORD_BYTES_MAX) {
        char *d = realloc(b->data, SALE_RECORD_BYTES_MAX);
        if (d == NULL)
            return false;
        b->data = d;
        b->cap = SALE_RECORD_BYTES_MAX;
    }
    char *at = tly_mpw_put_array(b->data, s->has_detail ? 13 : 5);
    at = tly_mpw_put_int(at, ENG_RECORD_FORMAT);
    at = tly_mpw_put_str_head(at, s->partner_len);
    memcpy(at, ENG_SALE_PARTNER(s), s->partner_len);
    at = tly_mpw_put_str_head(at + s->partner_len, 3);
    memcpy(at, s->currency, 3);
    at = tly_mpw_put_uint(at + 3, s->seq);
    at = tly_mpw_put_int(at, s->at_ms);
    if (s->has_detail) {
        const int64_t v[8] = {s->d.amount, s->d.returned, s->d.accrual,  s->d.clawed,
                              s->d.bps,    s->d.fx.units, s->d.fx.scale, s->d.fx.ediff};
        for (int i = 0; i < 8; i++)
            at = tly_mpw_put_int(at, v[i]);
    }
    b->len = (size_t)(at - b->data);
    TLY_ASSERT(b->len <= SALE_RECORD_BYTES_MAX);
    return true;
}

void eng_pack_claim(tly_mpw *pk, const eng_claim *c)
{
    TLY_ASSERT(c->ordinal != ENG_NO_ORDINAL);
    tly_mpw_array(pk, ENG_CLAIM_FIELDS);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    tly_mpw_int(pk, c->status);
    tly_mpw_int(pk, c->requested);
    tly_mpw_int(pk, c->approved);
    tly_mpw_int(pk, c->paid);
    pk_name(pk, c->reason);
    tly_mpw_array(pk, c->share_count);
    for (uint32_t i = 0; i < c->share_count; i++) {
        tly_mpw_array(pk, 2);
        tly_mpw_int(pk, c->shares[i].period);
        tly_mpw_int(pk, c->shares[i].amount);
    }
    tly_mpw_uint(pk, c->ordinal);
}

static void pk_row(tly_mpw *pk, const eng_row *r)
{
    tly_mpw_array(pk, 13);
    tly_mpw_int(pk, r->period);
    tly_mpw_bool(pk, r->final);
    tly_mpw_int(pk, r->rate_bps);
    const int64_t v[6] = {r->revenue, r->adj, r->figure, r->paid, r->basis, r->baseline};
    for (int k = 0; k < 6; k++)
        tly_mpw_int(pk, v[k]);
    tly_mpw_bool(pk, r->has_baseline);
    tly_mpw_int(pk, r->referral);
    tly_mpw_int(pk, r->referred);
    tly_mpw_int(pk, r->mdf_gross);
}

/* Buckets, and the rows from index first (those before go to the archive). */
static void pack_accounts(tly_mpw *pk, const eng_pstate *st, uint32_t first)
{
    tly_mpw_array(pk, st->bucket_count);
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        tly_mpw_array(pk, 2);
        tly_mpw_int(pk, st->buckets[i].period);
        tly_mpw_int(pk, st->buckets[i].remaining);
    }
    tly_mpw_array(pk, st->row_count - first);
    for (uint32_t i = first; i < st->row_count; i++)
        pk_row(pk, &st->rows[i]);
}

void eng_pack_arch_chunk(tly_mpw *pk, const eng_row *rows)
{
    bool old = rows[0].chunk_prev == ENG_ARCH_OLD;
    tly_mpw_array(pk, old ? 2 : 3);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    if (!old)
        tly_mpw_int(pk, rows[0].chunk_prev);
    tly_mpw_array(pk, ENG_ARCH_CHUNK_ROWS);
    for (uint32_t i = 0; i < ENG_ARCH_CHUNK_ROWS; i++)
        pk_row(pk, &rows[i]);
}

void eng_pack_cold(tly_mpw *pk, const eng_pstate *st)
{
    TLY_ASSERT(st->cold);
    tly_mpw_array(pk, 2);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    tly_mpw_array(pk, st->hist_count);
    for (uint32_t i = 0; i < st->hist_count; i++) {
        tly_mpw_array(pk, 4);
        tly_mpw_uint(pk, st->hist[i].seq);
        tly_mpw_int(pk, st->hist[i].period);
        pk_name(pk, st->hist[i].from);
        pk_name(pk, st->hist[i].to);
    }
}

static void pack_lists(tly_mpw *pk, const eng_pstate *st)
{
    tly_mpw_array(pk, 0); /* the history: the cold record's (eng_pack_cold) */
    tly_mpw_array(pk, eng_cert_count(st));
    eng_cert c;
    for (uint32_t off = 0; off < st->cert_bytes;) {
        off = eng_cert_at(st, off, &c);
        tly_mpw_array(pk, 2);
        tly_mpw_bin(pk, c.key, c.key_len);
        tly_mpw_int(pk, c.expires_ms);
    }
    /* the claims are found by their records' ordinals (claim_total) */
    TLY_ASSERT(!st->claims_legacy);
    tly_mpw_array(pk, 0);
    tly_mpw_array(pk, st->held_count);
    for (uint32_t i = 0; i < st->held_count; i++) {
        const eng_held *h = &st->held[i];
        tly_mpw_array(pk, 10);
        tly_mpw_int(pk, h->type);
        tly_mpw_uint(pk, h->seq);
        tly_mpw_int(pk, h->at_ms);
        tly_mpw_int(pk, h->amount);
        tly_mpw_uint(pk, h->next_n);
        tly_mpw_bin(pk, h->key, h->key_len);
        tly_mpw_int(pk, h->action);
        pk_str(pk, h->currency, 3);
        tly_mpw_int(pk, h->expires_ms);
        tly_mpw_bin(pk, h->ref, h->ref_len);
    }
}

bool eng_rev_walk(const eng_pstate *st, uint32_t n, int32_t from, uint32_t *at, eng_rev *out)
{
    while (*at < st->rev_count + n) {
        uint32_t i = (*at)++;
        const eng_row *row = i >= st->rev_count ? &st->rows[i - st->rev_count] : NULL;
        eng_rev v = row != NULL ? (eng_rev){row->period, row->revenue, row->referred} : st->rev[i];
        if (v.period >= from) {
            *out = v;
            return true;
        }
    }
    return false;
}

uint32_t eng_rev_count(const eng_pstate *st, uint32_t n, int32_t from)
{
    uint32_t count = 0, at = 0;
    eng_rev v;
    while (eng_rev_walk(st, n, from, &at, &v))
        count++;
    return count;
}

/* The archive's revenue the partner keeps once the flush under way has
 * archived plan->n rows: [from, [[period, revenue, referred]...]]
 * (eng_rev_walk; eng_arch_commit keeps the same in memory). */
static void pack_rev(tly_mpw *pk, const eng_pstate *st, const eng_arch_plan *plan)
{
    tly_mpw_array(pk, 2);
    tly_mpw_int(pk, plan->from);
    tly_mpw_array(pk, plan->rev_count);
    uint32_t at = 0, packed = 0;
    eng_rev v;
    while (eng_rev_walk(st, plan->n, plan->from, &at, &v)) {
        tly_mpw_array(pk, 3);
        tly_mpw_int(pk, v.period);
        tly_mpw_int(pk, v.revenue);
        tly_mpw_int(pk, v.referred);
        packed++;
    }
    TLY_ASSERT(packed == plan->rev_count); /* eng_arch_plan_of counted them */
}

void eng_pack_partner(tly_mpw *pk, const eng_partner *pp, const eng_program *g,
                      const eng_arch_plan *plan)
{
    tly_mpw_array(pk, pp->owned ? ENG_PARTNER_FIELDS_OWNED : ENG_PARTNER_FIELDS_FOREIGN);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, pp->id, pp->id_len);
    pk_str(pk, g ? g->name : NULL, g ? g->name_len : 0);
    tly_mpw_bool(pk, pp->owned);
    tly_mpw_uint(pk, pp->enroll_seq);
    if (!pp->owned)
        return;
    const eng_pstate *st = pp->st;
    pk_name(pk, st->name);
    tly_mpw_int(pk, st->kind);
    pk_name(pk, st->region);
    tly_mpw_uint(pk, st->tier);
    tly_mpw_uint(pk, st->fails);
    const int64_t totals[8] = {st->accrued, st->clawed_back, st->adjusted, st->expired,
                               st->pending, st->approved,    st->paid,     st->deficit};
    for (int i = 0; i < 8; i++)
        tly_mpw_int(pk, totals[i]);
    pack_accounts(pk, st, plan->n);
    pack_lists(pk, st);
    pk_liab(pk, &pp->liab);
    uint32_t live = eng_acts_closed(st, g); /* the rest is in the journal rows */
    pk_acts(pk, live < st->act_count ? &st->acts[live] : NULL, st->act_count - live);
    pk_shares(pk, st->opens, st->open_count);
    tly_mpw_uint(pk, plan->count);
    tly_mpw_int(pk, plan->last);
    tly_mpw_int(pk, plan->payable);
    tly_mpw_uint(pk, st->claim_total);
    char filter[ENG_CLAIM_FILTER_WORDS * 8];
    for (uint32_t w = 0; w < ENG_CLAIM_FILTER_WORDS; w++)
        tly_be64_put(filter + 8 * w, st->claim_filter[w]);
    tly_mpw_bin(pk, filter, sizeof filter);
    tly_mpw_uint(pk, st->cold ? st->hist_count : st->cold_hist);
    tly_mpw_int(pk, plan->head);
    pack_rev(pk, st, plan);
    tly_mpw_array(pk, 4);
    tly_mpw_bool(pk, st->claims_unbucketed);
    tly_mpw_uint(pk, st->claim_hi);
    tly_mpw_uint(pk, st->claim_lo);
    tly_mpw_uint(pk, st->claim_mask);
}

/* The rates of one pair: [fmt, from, to, [[at, seq, units, scale]...]]. */
void eng_pack_rates(tly_mpw *pk, const eng_rate_pair *rp)
{
    tly_mpw_array(pk, 4);
    tly_mpw_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, rp->from, 3);
    pk_str(pk, rp->to, 3);
    tly_mpw_array(pk, rp->count);
    for (uint32_t i = 0; i < rp->count; i++) {
        tly_mpw_array(pk, 4);
        tly_mpw_int(pk, rp->rates[i].at_ms);
        tly_mpw_uint(pk, rp->rates[i].seq);
        tly_mpw_int(pk, rp->rates[i].units);
        tly_mpw_int(pk, rp->rates[i].scale);
    }
}

/* ---- unpacking ---- */

/* Each reader step either succeeds or the entry is corrupt. */
#define RD(x)                                                                                      \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return TLY_CORRUPT;                                                                    \
    } while (0)

static bool rd_i64(tly_mp_reader *r, int64_t *v)
{
    return tly_mp_read_int(r, v);
}

static bool rd_i32(tly_mp_reader *r, int32_t *v)
{
    int64_t x;
    if (!tly_mp_read_int(r, &x) || x < INT32_MIN || x > INT32_MAX)
        return false;
    *v = (int32_t)x;
    return true;
}

static bool rd_u32(tly_mp_reader *r, uint32_t *v)
{
    uint64_t x;
    if (!tly_mp_read_uint(r, &x) || x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

/* A str or bin, or nil (ptr NULL) when nullable. */
static bool rd_bytes(tly_mp_reader *r, const char **p, uint32_t *len, bool nullable)
{
    if (nullable && tly_mp_peek(r) == TLY_MP_NIL) {
        *p = NULL;
        *len = 0;
        return tly_mp_read_nil(r);
    }
    if (tly_mp_peek(r) == TLY_MP_BIN)
        return tly_mp_read_bin(r, (const uint8_t **)p, len);
    return tly_mp_read_str(r, p, len);
}

static bool rd_str(tly_mp_reader *r, tly_str *s, bool nullable)
{
    return rd_bytes(r, &s->ptr, &s->len, nullable);
}

/* Whether s[0..len) is text as events carry it: UTF-8 without NUL
 * (tly_event.c). A stored name or text that is not came from no event, and
 * would reach a document as "\u0000", which strict JSON readers refuse. */
static bool text_ok(const char *s, uint32_t len)
{
    return memchr(s, '\0', len) == NULL && tly_utf8_valid(s, len);
}

/* A stored string that must be text (or nil, when nullable). */
static bool rd_text(tly_mp_reader *r, tly_str *s, bool nullable)
{
    return rd_str(r, s, nullable) && (s->ptr == NULL || text_ok(s->ptr, s->len));
}

/* Text (or nil) as an owned name. */
static tly_err rd_owned(tly_mp_reader *r, eng_name *out, bool nullable)
{
    tly_str s;
    RD(rd_text(r, &s, nullable));
    return eng_name_copy(out, s.ptr, s.len);
}

/* Text as a global name in the arena (interned when names is given). */
static tly_err rd_global(tly_mp_reader *r, eng_map *names, eng_arena *a, eng_name *out)
{
    tly_str s;
    RD(rd_text(r, &s, false));
    if (names != NULL)
        return eng_intern(names, a, s.ptr, s.len, out);
    char *c = eng_arena_copy(a, s.ptr, s.len);
    if (c == NULL)
        return TLY_NOMEM;
    *out = (eng_name){c, s.len};
    return TLY_OK;
}

static bool rd_head(tly_mp_reader *r, uint32_t *count)
{
    int64_t fmt;
    return tly_mp_read_array(r, count) && *count >= 1 && rd_i64(r, &fmt) &&
           fmt == ENG_RECORD_FORMAT;
}

/* The whole value was read. */
static tly_err rd_end(const tly_mp_reader *r)
{
    return tly_mp_remaining(r) == 0 ? TLY_OK : TLY_CORRUPT;
}

static tly_err rd_liab(tly_mp_reader *r, eng_liab *l)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n) && n == 5);
    RD(rd_i64(r, &l->available) && rd_i64(r, &l->pending) && rd_i64(r, &l->approved));
    RD(rd_i64(r, &l->open) && rd_i64(r, &l->payable));
    return TLY_OK;
}

static bool rd_bps(tly_mp_reader *r, int32_t *v)
{
    return rd_i32(r, v) && *v >= 0 && *v <= TLY_BPS_MAX;
}

/* A stored period: an index of a year 0..TLY_YEAR_MAX. Every period the
 * engine stores comes from an event's time (years TLY_YEAR_MIN..MAX), so
 * a store that says otherwise is corrupt; bounding it here keeps every
 * period sum a document computes (a bucket's expiry, a tier window, a
 * growth baseline, a period's start instant) far from overflow. */
static bool rd_period(tly_mp_reader *r, int32_t *v)
{
    return rd_i32(r, v) && *v >= 0 && *v <= TLY_PERIOD_INDEX_MAX;
}

/* A money amount or threshold the events bound to 0..max. */
static bool rd_range(tly_mp_reader *r, int64_t *v, int64_t max)
{
    return rd_i64(r, v) && *v >= 0 && *v <= max;
}

static tly_err unpack_tier(eng_arena *a, tly_mp_reader *r, eng_tier *t)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n) && n == 7);
    TRY(rd_global(r, NULL, a, &t->name));
    RD(rd_range(r, &t->min_revenue, TLY_AMOUNT_MAX) && rd_range(r, &t->min_certs, TLY_CERTS_MAX));
    RD(rd_bps(r, &t->mdf_bps));
    RD(rd_bps(r, &t->rebate_bonus_bps) && rd_bps(r, &t->referral_bps));
    RD(tly_mp_read_array(r, &t->benefit_count) && t->benefit_count <= TLY_BENEFITS_MAX);
    for (uint32_t b = 0; b < t->benefit_count; b++)
        TRY(rd_global(r, NULL, a, &t->benefits[b]));
    return TLY_OK;
}

/* The section 10 rules after window_w. */
static tly_err unpack_rules_v2(tly_mp_reader *r, eng_rules *ru)
{
    int64_t basis, moves;
    RD(rd_i64(r, &basis) && rd_i32(r, &ru->baseline_k) && rd_i64(r, &ru->rebate_min));
    RD(rd_i64(r, &ru->rebate_cap) && rd_i64(r, &ru->mdf_cap) && rd_i64(r, &moves));
    RD(rd_i32(r, &ru->grace) && ru->grace >= 0 && ru->grace <= TLY_GRACE_PERIODS_MAX);
    RD(basis == TLY_BASIS_REVENUE || (basis == TLY_BASIS_GROWTH && ru->baseline_k >= 1 &&
                                      ru->baseline_k <= TLY_BASELINE_PERIODS_MAX));
    ru->basis = (tly_rebate_basis)basis;
    ru->moves = moves == TLY_MOVES_ONE_STEP ? TLY_MOVES_ONE_STEP : TLY_MOVES_ANY;
    return TLY_OK;
}

/* The mask and figures of pk_figures, m elements of its array left:
 * every set bit one nonzero figure, no bit beyond ENG_ACT_COUNT. */
static tly_err rd_figures(tly_mp_reader *r, uint32_t m, eng_act *a)
{
    uint64_t mask;
    RD(m >= 1 && tly_mp_read_uint(r, &mask) && mask < (UINT64_C(1) << ENG_ACT_COUNT) &&
       (uint32_t)__builtin_popcountll(mask) == m - 1);
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        if (mask & (UINT64_C(1) << f))
            RD(rd_i64(r, &a->v[f]) && a->v[f] != 0);
    return TLY_OK;
}

/* One act of pk_figures, [period, mask, figures], into *a (zeroed). */
static tly_err rd_act(tly_mp_reader *r, eng_act *a)
{
    uint32_t m;
    *a = (eng_act){0};
    RD(tly_mp_read_array(r, &m) && m >= 2 && rd_period(r, &a->period));
    return rd_figures(r, m - 1, a);
}

static tly_err unpack_acts(tly_mp_reader *r, eng_act **v, uint32_t *n, uint32_t *cap)
{
    uint32_t count;
    RD(tly_mp_read_array(r, &count));
    for (uint32_t i = 0; i < count; i++) {
        eng_act a;
        TRY(rd_act(r, &a));
        RD(i == 0 || (*v)[i - 1].period < a.period);
        TRY(ENG_PUSH(*v, *n, *cap, a));
    }
    return TLY_OK;
}

tly_err eng_journal_each(const void *val, size_t len, eng_journal_fn fn, void *ctx)
{
    tly_mp_reader r;
    uint32_t n, m;
    tly_str last = {NULL, 0};
    tly_mp_init(&r, val, len);
    RD(tly_mp_read_array(&r, &n) && n >= 1 && n <= ENG_JOURNAL_CHUNK_ROWS);
    for (uint32_t i = 0; i < n; i++) {
        eng_act a = {0};
        tly_str id;
        RD(tly_mp_read_array(&r, &m) && m >= 2 && rd_str(&r, &id, false) && id.len >= 1 &&
           id.len <= TLY_NAME_BYTES_MAX);
        /* partner ids strictly ascending */
        if (last.ptr != NULL) {
            int c = memcmp(last.ptr, id.ptr, last.len < id.len ? last.len : id.len);
            RD(c < 0 || (c == 0 && last.len < id.len));
        }
        TRY(rd_figures(&r, m - 1, &a));
        TRY(fn(ctx, id.ptr, id.len, &a));
        last = id;
    }
    return rd_end(&r);
}

tly_err eng_unpack_open_act(const void *val, size_t len, const char *program, size_t program_len,
                            int32_t period, tly_str *partner, eng_act *out)
{
    tly_mp_reader r;
    eng_partner_rec rec;
    TRY(eng_peek_partner(val, len, &rec));
    if (!rec.owned || rec.program.len != program_len ||
        memcmp(rec.program.ptr, program, program_len) != 0)
        return TLY_NOT_FOUND;
    /* The acts are element ENG_PARTNER_FIELDS_OWNED_V5 - 2 of an owned
     * record (eng_pack_partner; the archive's summary came after them):
     * skip every element before them. */
    tly_mp_init(&r, val, len);
    uint32_t fields;
    RD(tly_mp_read_array(&r, &fields));
    for (uint32_t i = 0; i < ENG_PARTNER_FIELDS_OWNED_V5 - 2; i++)
        RD(tly_mp_skip_at(&r, 1, NULL, NULL));
    uint32_t count;
    RD(tly_mp_read_array(&r, &count));
    bool found = false;
    int32_t before = 0;
    for (uint32_t i = 0; i < count; i++) {
        eng_act a;
        TRY(rd_act(&r, &a));
        RD(i == 0 || before < a.period); /* ascending, as unpack_acts checks */
        before = a.period;
        if (a.period == period) {
            *out = a;
            found = true;
        }
    }
    /* the shares, the archive's summary, and nothing after them: the
     * whole record is checked */
    for (uint32_t i = ENG_PARTNER_FIELDS_OWNED_V5 - 1; i < fields; i++)
        RD(tly_mp_skip_at(&r, 1, NULL, NULL));
    TRY(rd_end(&r));
    *partner = rec.id;
    return found ? TLY_OK : TLY_NOT_FOUND;
}

static tly_err unpack_shares_by_period(tly_mp_reader *r, eng_share **v, uint32_t *n)
{
    uint32_t count, m, cap = 0;
    RD(tly_mp_read_array(r, &count));
    for (uint32_t i = 0; i < count; i++) {
        eng_share sh;
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_period(r, &sh.period) && rd_i64(r, &sh.amount));
        TRY(ENG_PUSH(*v, *n, cap, sh));
    }
    return TLY_OK;
}

static tly_err unpack_rules(eng_arena *a, tly_mp_reader *r, eng_rules *ru)
{
    int64_t mode;
    RD(rd_i64(r, &ru->version) && tly_mp_read_array(r, &ru->tier_count));
    RD(ru->tier_count >= 1 && ru->tier_count <= TLY_TIERS_MAX);
    for (uint32_t i = 0; i < ru->tier_count; i++)
        TRY(unpack_tier(a, r, &ru->tiers[i]));
    RD(rd_i64(r, &mode) && tly_mp_read_array(r, &ru->bracket_count));
    RD(ru->bracket_count >= 1 && ru->bracket_count <= TLY_BRACKETS_MAX);
    ru->mode = mode == TLY_REBATE_INCREMENTAL ? TLY_REBATE_INCREMENTAL : TLY_REBATE_RETROACTIVE;
    for (uint32_t i = 0; i < ru->bracket_count; i++) {
        uint32_t n;
        RD(tly_mp_read_array(r, &n) && n == 2);
        RD(rd_range(r, &ru->brackets[i].from, TLY_AMOUNT_MAX) && rd_bps(r, &ru->brackets[i].bps));
        RD(i == 0 ? ru->brackets[0].from == 0 : ru->brackets[i - 1].from < ru->brackets[i].from);
    }
    RD(rd_i32(r, &ru->expiry_n) && ru->expiry_n >= 1 && ru->expiry_n <= TLY_PERIODS_SPAN_MAX);
    RD(rd_i32(r, &ru->window_w) && ru->window_w >= 1 && ru->window_w <= TLY_PERIODS_SPAN_MAX);
    return unpack_rules_v2(r, ru);
}

tly_err eng_unpack_program(eng_arena *a, const void *val, size_t len, eng_program *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    tly_str name, cur;
    int64_t kind;
    RD(rd_head(&r, &count) && (count == ENG_PROGRAM_FIELDS || count == ENG_PROGRAM_FIELDS_V5));
    RD(rd_str(&r, &name, false) && rd_str(&r, &cur, false) && cur.len == 3);
    RD(rd_i64(&r, &kind));
    eng_program g = {.kind = kind == TLY_PERIOD_MONTH ? TLY_PERIOD_MONTH : TLY_PERIOD_QUARTER,
                     .name_len = name.len};
    memcpy(g.currency, cur.ptr, 3);
    TRY(unpack_rules(a, &r, &g.rules));
    RD(rd_period(&r, &g.first_period) && rd_period(&r, &g.eop));
    RD(rd_i32(&r, &g.expired_upto) &&
       (g.expired_upto == INT32_MIN || /* none expired yet */
        (g.expired_upto >= 0 && g.expired_upto <= TLY_PERIOD_INDEX_MAX)));
    TRY(rd_liab(&r, &g.liab));
    tly_err err = unpack_acts(&r, &g.rep, &g.rep_count, &g.rep_cap);
    if (err == TLY_OK)
        err = unpack_shares_by_period(&r, &g.open_rebate, &g.open_count);
    if (err == TLY_OK && count == ENG_PROGRAM_FIELDS && !rd_period(&r, &g.arch_h))
        err = TLY_CORRUPT;
    if (err == TLY_OK)
        err = rd_end(&r);
    if (err != TLY_OK) {
        free(g.rep);
        free(g.open_rebate);
        return err;
    }
    g.open_cap = g.open_count;
    g.name = eng_arena_copy(a, name.ptr, name.len);
    if (g.name == NULL)
        return TLY_NOMEM;
    *out = g;
    return TLY_OK;
}

tly_err eng_unpack_rates(const void *val, size_t len, eng_rate_pair *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count, n;
    tly_str from, to;
    RD(rd_head(&r, &count) && count == 4);
    RD(rd_str(&r, &from, false) && from.len == 3 && rd_str(&r, &to, false) && to.len == 3);
    RD(tly_mp_read_array(&r, &n));
    *out = (eng_rate_pair){0};
    memcpy(out->from, from.ptr, 3);
    memcpy(out->to, to.ptr, 3);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m;
        eng_rate x;
        tly_err err = TLY_CORRUPT;
        if (tly_mp_read_array(&r, &m) && m == 4 && rd_i64(&r, &x.at_ms) &&
            tly_mp_read_uint(&r, &x.seq) && rd_i64(&r, &x.units) && x.units > 0 &&
            rd_i32(&r, &x.scale) && x.scale >= 0 && x.scale <= TLY_RATE_FRAC_DIGITS_MAX)
            err = ENG_PUSH(out->rates, out->count, out->cap, x);
        if (err != TLY_OK) {
            free(out->rates);
            return err;
        }
    }
    return rd_end(&r);
}

tly_err eng_unpack_sale(const void *val, size_t len, eng_sale_rec *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    tly_str cur;
    RD(rd_head(&r, &count) && (count == 5 || count == 13));
    RD(rd_str(&r, &out->partner, false) && out->partner.len <= TLY_NAME_BYTES_MAX);
    RD(rd_str(&r, &cur, false) && cur.len == 3);
    memcpy(out->currency, cur.ptr, 3);
    int64_t seq;
    RD(rd_i64(&r, &seq) && seq >= 0 && rd_i64(&r, &out->at_ms));
    out->seq = (uint64_t)seq;
    out->has_detail = count == 13;
    out->d = (eng_sale_detail){0};
    if (out->has_detail) {
        eng_sale_detail *d = &out->d;
        RD(rd_i64(&r, &d->amount) && rd_i64(&r, &d->returned) && rd_i64(&r, &d->accrual));
        RD(rd_i64(&r, &d->clawed) && rd_bps(&r, &d->bps));
        RD(rd_i64(&r, &d->fx.units) && d->fx.units > 0 && rd_i32(&r, &d->fx.scale));
        RD(d->fx.scale >= 0 && d->fx.scale <= TLY_RATE_FRAC_DIGITS_MAX);
        RD(rd_i32(&r, &d->fx.ediff) && d->fx.ediff >= -9 && d->fx.ediff <= 9);
        /* as the fold leaves them: a return claws back at most what is
         * left of the accrual (fold_return), and debits never below 0 */
        RD(d->amount >= 0 && d->returned >= 0 && d->returned <= d->amount);
        RD(d->accrual >= 0 && d->clawed >= 0 && d->clawed <= d->accrual);
    }
    return rd_end(&r);
}

static tly_err unpack_shares(tly_mp_reader *r, eng_claim *c)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m;
        eng_share sh;
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_period(r, &sh.period));
        RD(rd_i64(r, &sh.amount));
        TRY(ENG_PUSH(c->shares, c->share_count, c->share_cap, sh));
    }
    return TLY_OK;
}

/* Whether claim c's figures agree with its status as the fold leaves
 * them (engine_claims.c): 0 ≤ paid ≤ approved ≤ requested, no share
 * below 0, and its shares holding what it reserves: a pending claim its
 * requested amount, an approved or paid one its approved amount, any other
 * nothing. The fold relies on it (claim_release gives back from the
 * shares exactly what it releases), so a record that breaks it is corrupt
 * rather than a reason to stop the process. */
static bool claim_sound(const eng_claim *c)
{
    if (c->requested < 0 || c->approved < 0 || c->approved > c->requested || c->paid < 0 ||
        c->paid > c->approved)
        return false;
    int64_t held = 0;
    for (uint32_t i = 0; i < c->share_count; i++)
        if (c->shares[i].amount < 0 || tly_money_addto(&held, c->shares[i].amount) != TLY_OK)
            return false;
    switch (c->status) {
    case ENG_CLAIM_PENDING:
        return held == c->requested && c->approved == 0 && c->paid == 0;
    case ENG_CLAIM_APPROVED:
    case ENG_CLAIM_PAID:
        return held == c->approved;
    default:
        return held == 0 && c->approved == 0 && c->paid == 0;
    }
}

/* The fields after the head; what it copied stays in c on error. The
 * partner and claim id are the key's (partner, id); a record that repeats
 * them (V5, V6) must repeat those. */
static tly_err unpack_claim_body(tly_mp_reader *r, tly_str partner, tly_str id, eng_claim *c)
{
    uint32_t count;
    int64_t status;
    RD(rd_head(r, &count));
    RD(count == ENG_CLAIM_FIELDS || count == ENG_CLAIM_FIELDS_V6 || count == ENG_CLAIM_FIELDS_V5);
    if (count != ENG_CLAIM_FIELDS) {
        tly_str p, i;
        RD(rd_str(r, &p, false) && rd_str(r, &i, false));
        RD(p.len == partner.len && memcmp(p.ptr, partner.ptr, p.len) == 0);
        RD(i.len == id.len && memcmp(i.ptr, id.ptr, i.len) == 0);
    }
    TRY(eng_name_copy(&c->id, id.ptr, id.len));
    RD(rd_i64(r, &status) && status >= 0 && status <= ENG_CLAIM_DENIED);
    c->status = (uint8_t)status;
    RD(rd_i64(r, &c->requested) && rd_i64(r, &c->approved) && rd_i64(r, &c->paid));
    TRY(rd_owned(r, &c->reason, true));
    TRY(unpack_shares(r, c));
    RD(claim_sound(c));
    c->ordinal = ENG_NO_ORDINAL;
    if (count != ENG_CLAIM_FIELDS_V5)
        RD(tly_mp_read_uint(r, &c->ordinal) && c->ordinal != ENG_NO_ORDINAL);
    return rd_end(r);
}

tly_err eng_unpack_claim(const void *key, size_t klen, const void *val, size_t len,
                         tly_str *partner, eng_claim *out)
{
    *out = (eng_claim){0};
    /* the key body: [0 ‖ be32 bucket ≥ 1 ‖] u8 length ‖ partner ‖ claim,
     * both 1-TLY_NAME_BYTES_MAX */
    const char *k = key;
    if (klen > 0 && k[0] == 0) {
        if (klen < ENG_CLAIM_BUCKET_BYTES || (out->bucket = tly_be32_get(k + 1)) == 0 ||
            out->bucket == UINT32_MAX)
            return TLY_CORRUPT;
        k += ENG_CLAIM_BUCKET_BYTES;
        klen -= ENG_CLAIM_BUCKET_BYTES;
    }
    size_t plen = klen > 0 ? (unsigned char)k[0] : 0;
    if (plen == 0 || plen > TLY_NAME_BYTES_MAX || klen <= 1 + plen ||
        klen - 1 - plen > TLY_NAME_BYTES_MAX)
        return TLY_CORRUPT;
    *partner = (tly_str){k + 1, (uint32_t)plen};
    tly_str id = {k + 1 + plen, (uint32_t)(klen - 1 - plen)};
    if (!text_ok(partner->ptr, partner->len) || !text_ok(id.ptr, id.len))
        return TLY_CORRUPT;
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t bucket = out->bucket;
    tly_err err = unpack_claim_body(&r, *partner, id, out);
    if (err != TLY_OK)
        eng_claim_clear(out);
    out->loaded = err == TLY_OK;
    out->bucket = err == TLY_OK ? bucket : 0;
    return err;
}

tly_err eng_peek_partner(const void *val, size_t len, eng_partner_rec *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    RD(rd_head(&r, &count));
    bool owned_count = count == ENG_PARTNER_FIELDS_OWNED || count == ENG_PARTNER_FIELDS_OWNED_V10 ||
                       count == ENG_PARTNER_FIELDS_OWNED_V9 ||
                       count == ENG_PARTNER_FIELDS_OWNED_V8 ||
                       count == ENG_PARTNER_FIELDS_OWNED_V7 ||
                       count == ENG_PARTNER_FIELDS_OWNED_V6 || count == ENG_PARTNER_FIELDS_OWNED_V5;
    RD(count == ENG_PARTNER_FIELDS_FOREIGN || owned_count);
    RD(rd_text(&r, &out->id, false) && out->id.len <= TLY_NAME_BYTES_MAX);
    RD(rd_text(&r, &out->program, true) && tly_mp_read_bool(&r, &out->owned));
    RD(owned_count == out->owned);
    RD(tly_mp_read_uint(&r, &out->enroll_seq));
    out->cold_apart = count == ENG_PARTNER_FIELDS_OWNED || count == ENG_PARTNER_FIELDS_OWNED_V10 ||
                      count == ENG_PARTNER_FIELDS_OWNED_V9 || count == ENG_PARTNER_FIELDS_OWNED_V8;
    return out->owned ? TLY_OK : rd_end(&r);
}

tly_err eng_peek_member(const void *val, size_t len, eng_member_head *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count, fails;
    tly_str skip;
    bool owned;
    uint64_t enrolled;
    int64_t kind;
    RD(rd_head(&r, &count) && rd_str(&r, &skip, false) && rd_str(&r, &skip, true));
    RD(tly_mp_read_bool(&r, &owned) && owned && tly_mp_read_uint(&r, &enrolled));
    RD(rd_str(&r, &out->name, true) && rd_i64(&r, &kind) && kind >= 0 && kind < TLY_KIND_COUNT);
    out->kind = (tly_partner_kind)kind;
    RD(rd_str(&r, &skip, true) && rd_u32(&r, &out->tier) && rd_u32(&r, &fails));
    return TLY_OK;
}

static tly_err unpack_row(tly_mp_reader *r, eng_row *w)
{
    uint32_t m;
    *w = (eng_row){0};
    RD(tly_mp_read_array(r, &m) && m == 13 && rd_period(r, &w->period));
    RD(tly_mp_read_bool(r, &w->final) && rd_i32(r, &w->rate_bps) && rd_i64(r, &w->revenue));
    RD(rd_i64(r, &w->adj) && rd_i64(r, &w->figure) && rd_i64(r, &w->paid));
    RD(rd_i64(r, &w->basis) && rd_i64(r, &w->baseline) && tly_mp_read_bool(r, &w->has_baseline));
    RD(rd_i64(r, &w->referral) && rd_i64(r, &w->referred) && rd_i64(r, &w->mdf_gross));
    return TLY_OK;
}

tly_err eng_unpack_arch_chunk(const void *val, size_t len, eng_row *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count, n;
    int32_t prev = ENG_ARCH_OLD;
    RD(rd_head(&r, &count) && (count == 2 || count == 3));
    if (count == 3)
        RD(rd_i32(&r, &prev) && prev >= ENG_ARCH_NONE);
    RD(tly_mp_read_array(&r, &n) && n == ENG_ARCH_CHUNK_ROWS);
    for (uint32_t i = 0; i < n; i++) {
        TRY(unpack_row(&r, &out[i]));
        RD(out[i].final && (i == 0 || out[i - 1].period < out[i].period));
    }
    /* the chunk before it lies before it */
    RD(prev == ENG_ARCH_OLD || prev == ENG_ARCH_NONE || prev < out[0].period);
    out[0].chunk_prev = prev;
    return rd_end(&r);
}

static tly_err unpack_buckets_rows(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n, m;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_bucket b;
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_period(r, &b.period));
        RD(rd_i64(r, &b.remaining) && b.remaining >= 0); /* debits stop at 0 (eng_debit) */
        RD(i == 0 || st->buckets[i - 1].period < b.period);
        TRY(ENG_PUSH(st->buckets, st->bucket_count, st->bucket_cap, b));
    }
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_row w;
        TRY(unpack_row(r, &w));
        RD(i == 0 || st->rows[i - 1].period < w.period);
        TRY(ENG_PUSH(st->rows, st->row_count, st->row_cap, w));
    }
    return TLY_OK;
}

/* The archive's revenue (pack_rev): periods ascending, from rev_from on,
 * archived ones only. */
static tly_err unpack_rev(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n, m;
    RD(tly_mp_read_array(r, &m) && m == 2 && rd_period(r, &st->rev_from));
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_rev v;
        RD(tly_mp_read_array(r, &m) && m == 3 && rd_period(r, &v.period));
        RD(rd_i64(r, &v.revenue) && rd_i64(r, &v.referred));
        RD(v.period >= st->rev_from && st->arch_count > 0 && v.period <= st->arch_last);
        RD(i == 0 || st->rev[i - 1].period < v.period);
        TRY(ENG_PUSH(st->rev, st->rev_count, st->rev_cap, v));
    }
    return TLY_OK;
}

static tly_err unpack_hist(tly_mp_reader *r, eng_map *names, eng_arena *a, eng_pstate *st)
{
    TLY_ASSERT(st->hist_count == 0);
    uint32_t n, m;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_hist h;
        uint64_t seq;
        RD(tly_mp_read_array(r, &m) && m == 4 && tly_mp_read_uint(r, &seq));
        RD(rd_period(r, &h.period));
        h.seq = seq;
        TRY(rd_global(r, names, a, &h.from));
        TRY(rd_global(r, names, a, &h.to));
        TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
    }
    return TLY_OK;
}

/* One active pair: [pair key, expires]. */
static tly_err rd_cert(tly_mp_reader *r, tly_str *key, int64_t *expires_ms)
{
    uint32_t m;
    RD(tly_mp_read_array(r, &m) && m == 2);
    RD(rd_str(r, key, false) && key->len >= 1 && key->len <= ENG_PAIR_KEY_BYTES_MAX);
    RD((unsigned char)key->ptr[0] < key->len && rd_i64(r, expires_ms));
    return TLY_OK;
}

/* Active pairs, into a block of exactly their size: a first pass checks
 * them and sums their bytes, a second copies them (a partner read back is
 * mostly only read and written again; the fold grows the block if it adds
 * to it). */
static tly_err unpack_certs(tly_mp_reader *r, eng_pstate *st)
{
    TLY_ASSERT(st->cert_bytes == 0);
    uint32_t n;
    RD(tly_mp_read_array(r, &n));
    tly_mp_reader again = *r;
    tly_str k;
    int64_t expires;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        TRY(rd_cert(r, &k, &expires));
        bytes += ENG_CERT_HEAD + k.len;
    }
    if (bytes == 0)
        return TLY_OK;
    if (bytes > UINT32_MAX)
        return TLY_NOMEM;
    TRY(eng_grow((void **)&st->certs, &st->cert_cap, (uint32_t)bytes, 1));
    for (uint32_t i = 0; i < n; i++) {
        TRY(rd_cert(&again, &k, &expires));
        cert_put(st->certs + st->cert_bytes, k.ptr, k.len, expires);
        st->cert_bytes += ENG_CERT_HEAD + k.len;
    }
    return TLY_OK;
}

tly_err eng_unpack_cold(const void *val, size_t len, eng_map *names, eng_arena *a, eng_pstate *st)
{
    TLY_ASSERT(!st->cold);
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    RD(rd_head(&r, &count) && count == 2);
    TRY(unpack_hist(&r, names, a, st));
    RD(st->hist_count == st->cold_hist);
    TRY(rd_end(&r));
    st->cold = true;
    return TLY_OK;
}

/* The claim ids in submit order: every claim's in a record written before
 * ordinals (legacy), none in a newer one. */
static tly_err unpack_claim_ids(tly_mp_reader *r, bool legacy, eng_pstate *st)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n) && (legacy || n == 0));
    for (uint32_t i = 0; i < n; i++) {
        tly_str id;
        RD(rd_str(r, &id, false) && id.len <= TLY_NAME_BYTES_MAX);
        TRY(eng_grow((void **)&st->claims, &st->claim_cap, st->claim_count + 1,
                     sizeof *st->claims));
        st->claims[st->claim_count] = (eng_claim){.ordinal = i};
        TRY(eng_name_copy(&st->claims[st->claim_count].id, id.ptr, id.len));
        st->claim_count++;
    }
    st->claim_total = n;
    st->claims_legacy = n > 0;
    return TLY_OK;
}

static tly_err unpack_held_one(tly_mp_reader *r, eng_held *h)
{
    uint32_t m;
    int64_t type, action;
    uint64_t seq;
    tly_str key, cur;
    RD(tly_mp_read_array(r, &m) && m == 10 && rd_i64(r, &type) && tly_mp_read_uint(r, &seq));
    RD(rd_i64(r, &h->at_ms) && rd_i64(r, &h->amount) && rd_u32(r, &h->next_n));
    RD(rd_str(r, &key, false) && rd_i64(r, &action) && action >= 0);
    RD(action < TLY_ACT_COUNT && rd_str(r, &cur, false) && cur.len == 3 && key.len >= 1);
    RD(type == TLY_EV_SALE || type == TLY_EV_RETURN || type == TLY_EV_CERTIFICATION ||
       type == TLY_EV_REFERRAL);
    RD(rd_i64(r, &h->expires_ms));
    tly_str ref;
    RD((unsigned char)key.ptr[0] < key.len);
    RD(type != TLY_EV_CERTIFICATION || key.len <= ENG_PAIR_KEY_BYTES_MAX);
    h->seq = seq;
    h->type = (uint8_t)type;
    h->action = (uint8_t)action;
    memcpy(h->currency, cur.ptr, 3);
    RD(rd_str(r, &ref, false) && ref.len >= 1 && (unsigned char)ref.ptr[0] < ref.len);
    h->key_len = key.len;
    h->key = eng_copy(key.ptr, key.len);
    h->ref_len = ref.len;
    h->ref = eng_copy(ref.ptr, ref.len);
    return h->key == NULL || h->ref == NULL ? TLY_NOMEM : TLY_OK;
}

static tly_err unpack_held(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        TRY(eng_grow((void **)&st->held, &st->held_cap, st->held_count + 1, sizeof *st->held));
        eng_held *h = &st->held[st->held_count];
        *h = (eng_held){0};
        tly_err err = unpack_held_one(r, h);
        if (err != TLY_OK) {
            free(h->key);
            free(h->ref);
            return err;
        }
        st->held_count++;
    }
    return TLY_OK;
}

/* The claims ever filed and their filter (big-endian words). */
static tly_err unpack_claim_count(tly_mp_reader *r, eng_pstate *st)
{
    const uint8_t *f;
    uint32_t n;
    RD(tly_mp_read_uint(r, &st->claim_total) && st->claim_total != ENG_NO_ORDINAL);
    RD(tly_mp_read_bin(r, &f, &n) && n == ENG_CLAIM_FILTER_WORDS * 8);
    for (uint32_t w = 0; w < ENG_CLAIM_FILTER_WORDS; w++)
        st->claim_filter[w] = tly_be64_get(f + 8 * w);
    return TLY_OK;
}

/* Which buckets hold the claims: [unbucketed, hi, lo, mask], hi 0 with
 * no bucket (then lo and mask 0), else lo ≤ hi and bit 0 of mask set;
 * none without claims. */
static tly_err unpack_claim_buckets(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t m;
    RD(tly_mp_read_array(r, &m) && m == 4 && tly_mp_read_bool(r, &st->claims_unbucketed));
    RD(rd_u32(r, &st->claim_hi) && rd_u32(r, &st->claim_lo) && st->claim_hi < UINT32_MAX);
    RD(tly_mp_read_uint(r, &st->claim_mask));
    bool none = st->claim_hi == 0 && st->claim_lo == 0 && st->claim_mask == 0;
    RD(none || (st->claim_lo >= 1 && st->claim_lo <= st->claim_hi && (st->claim_mask & 1) != 0));
    RD(st->claim_total > 0 || (none && !st->claims_unbucketed));
    return TLY_OK;
}

/* The elements newer records end with (a record of count elements): the
 * newest archive chunk's period (V9 on), the archive's revenue (V10 on),
 * the claims' buckets (V11). */
static tly_err unpack_newer(tly_mp_reader *r, uint32_t count, eng_pstate *st)
{
    st->arch_head = ENG_ARCH_NONE; /* older records: every chunk under "S/5/" */
    bool revs = count == ENG_PARTNER_FIELDS_OWNED || count == ENG_PARTNER_FIELDS_OWNED_V10;
    if (revs || count == ENG_PARTNER_FIELDS_OWNED_V9) {
        RD(rd_i32(r, &st->arch_head));
        RD(st->arch_head == ENG_ARCH_NONE ||
           (st->arch_count > 0 && st->arch_head >= 0 && st->arch_head <= st->arch_last));
    }
    /* Older records archived only rows the rules no longer read, and keep
     * none of their revenue: from after the newest on. */
    st->rev_from = st->arch_count > 0 ? st->arch_last + 1 : 0;
    if (revs)
        TRY(unpack_rev(r, st));
    /* every claim of an older record is under the partner's own keys */
    st->claims_unbucketed = st->claim_total > 0;
    return count == ENG_PARTNER_FIELDS_OWNED ? unpack_claim_buckets(r, st) : TLY_OK;
}

tly_err eng_unpack_pstate(const void *val, size_t len, eng_map *names, eng_arena *a, eng_pstate *st,
                          eng_liab *liab)
{
    eng_partner_rec head;
    TRY(eng_peek_partner(val, len, &head));
    RD(head.owned);
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    tly_str skip;
    bool owned;
    int64_t kind;
    uint64_t enrolled;
    RD(rd_head(&r, &count) && rd_str(&r, &skip, false) && rd_str(&r, &skip, true));
    RD(tly_mp_read_bool(&r, &owned) && tly_mp_read_uint(&r, &enrolled));
    TRY(rd_owned(&r, &st->name, true));
    RD(rd_i64(&r, &kind) && kind >= 0 && kind < TLY_KIND_COUNT);
    st->kind = (tly_partner_kind)kind;
    TRY(rd_owned(&r, &st->region, true));
    RD(rd_u32(&r, &st->tier) && rd_u32(&r, &st->fails));
    int64_t *totals[8] = {&st->accrued, &st->clawed_back, &st->adjusted, &st->expired,
                          &st->pending, &st->approved,    &st->paid,     &st->deficit};
    for (int i = 0; i < 8; i++)
        RD(rd_i64(&r, totals[i]));
    RD(st->deficit >= 0); /* what a debit could not take (eng_debit) */
    TRY(unpack_buckets_rows(&r, st));
    bool cold_apart = head.cold_apart;
    if (cold_apart) {
        uint32_t n; /* the history is read from "S/6/" when needed */
        RD(tly_mp_read_array(&r, &n) && n == 0);
    } else {
        /* a record written before "S/6/": the next flush writes it there */
        TLY_ASSERT(a != NULL); /* eng_read_job_prepare leaves these to the engine */
        TRY(unpack_hist(&r, names, a, st));
        st->cold = true;
        st->cold_dirty = st->hist_count > 0;
    }
    TRY(unpack_certs(&r, st));
    bool ordinals = cold_apart || count == ENG_PARTNER_FIELDS_OWNED_V7;
    TRY(unpack_claim_ids(&r, !ordinals, st));
    TRY(unpack_held(&r, st));
    TRY(rd_liab(&r, liab));
    TRY(unpack_acts(&r, &st->acts, &st->act_count, &st->act_cap));
    TRY(unpack_shares_by_period(&r, &st->opens, &st->open_count));
    if (count != ENG_PARTNER_FIELDS_OWNED_V5) {
        RD(rd_u32(&r, &st->arch_count) && rd_i32(&r, &st->arch_last) &&
           rd_i64(&r, &st->arch_payable));
        /* every archived row lies before every row kept */
        RD(st->arch_count == 0 || st->row_count == 0 || st->arch_last < st->rows[0].period);
        RD(st->arch_count == 0 || st->arch_last >= 0);
    }
    if (ordinals)
        TRY(unpack_claim_count(&r, st));
    if (cold_apart) {
        RD(rd_u32(&r, &st->cold_hist));
        st->cold = st->cold_hist == 0;
    }
    TRY(unpack_newer(&r, count, st));
    st->arch_all = st->arch_count == 0;
    st->claims_all = st->claim_count == st->claim_total;
    return rd_end(&r);
}

/* ---- what records hold ---- */

uint32_t eng_acts_closed(const eng_pstate *st, const eng_program *g)
{
    uint32_t n = 0;
    while (g != NULL && n < st->act_count && st->acts[n].period < g->eop)
        n++;
    return n;
}

void eng_claim_clear(eng_claim *c)
{
    eng_name_free(&c->id);
    eng_name_free(&c->reason);
    free(c->shares);
    *c = (eng_claim){0};
}

tly_err eng_pstate_grow(const eng_pstate *st, void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return TLY_OK;
    if (st == NULL || !eng_pstate_inline(st, *v))
        return eng_grow(v, cap, need, elem);
    void *out = NULL;
    uint32_t ncap = *cap; /* grown from the block's size, as eng_grow would */
    TRY(eng_grow(&out, &ncap, need, elem));
    memcpy(out, *v, (size_t)*cap * elem);
    *v = out;
    *cap = ncap;
    return TLY_OK;
}

void eng_pstate_release(const eng_pstate *st, void *p)
{
    if (!eng_pstate_inline(st, p))
        free(p);
}

void eng_pstate_name_free(const eng_pstate *st, eng_name *n)
{
    eng_pstate_release(st, (void *)(uintptr_t)n->ptr);
    *n = (eng_name){NULL, 0};
}

static size_t align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

/* An empty state: an empty archive, no claims, no history. */
static void pstate_init(eng_pstate *st)
{
    st->arch_all = st->claims_all = st->cold = true;
    st->arch_head = ENG_ARCH_NONE;
}

eng_pstate *eng_pstate_new(void)
{
    eng_pstate *st = calloc(1, sizeof(eng_pstate));
    if (st != NULL)
        pstate_init(st);
    return st;
}

/* Copies n elements of elem bytes from src to block + off and returns
 * where they went; NULL for none (src may then be NULL). */
static void *settle_put(char *block, size_t off, const void *src, size_t n, size_t elem)
{
    if (n > 0)
        memcpy(block + off, src, n * elem);
    return n > 0 ? block + off : NULL;
}

eng_pstate *eng_pstate_settle(eng_pstate *s)
{
    TLY_ASSERT(s->block_bytes == 0);
    /* The block's layout: the 8-byte aligned vectors first, then the
     * certifications' bytes and the names with their NULs. */
    uint32_t nb = s->bucket_count + ENG_SETTLE_SPARE, nr = s->row_count + ENG_SETTLE_SPARE,
             na = s->act_count + ENG_SETTLE_SPARE;
    size_t o_row = align8((size_t)nb * sizeof(eng_bucket));
    size_t o_act = o_row + align8((size_t)nr * sizeof(eng_row));
    size_t o_open = o_act + align8((size_t)na * sizeof(eng_act));
    size_t o_rev = o_open + (size_t)s->open_count * sizeof(eng_share);
    size_t o_cert = o_rev + (size_t)s->rev_count * sizeof(eng_rev);
    size_t o_name = o_cert + s->cert_bytes;
    size_t o_region = o_name + (s->name.ptr != NULL ? s->name.len + 1u : 0);
    size_t total = o_region + (s->region.ptr != NULL ? s->region.len + 1u : 0);
    if (total > UINT32_MAX)
        return NULL;
    eng_pstate *st = malloc(sizeof *st + total);
    if (st == NULL)
        return NULL;
    char *b = (char *)(st + 1);
    *st = *s; /* the claims, held events, history and archive move over */
    st->block_bytes = (uint32_t)total;
    /* buckets, rows and acts lie in the block even when empty: their spare */
    settle_put(b, 0, s->buckets, s->bucket_count, sizeof(eng_bucket));
    st->buckets = (eng_bucket *)(void *)b;
    st->bucket_cap = nb;
    settle_put(b, o_row, s->rows, s->row_count, sizeof(eng_row));
    st->rows = (eng_row *)(void *)(b + o_row);
    st->row_cap = nr;
    settle_put(b, o_act, s->acts, s->act_count, sizeof(eng_act));
    st->acts = (eng_act *)(void *)(b + o_act);
    st->act_cap = na;
    st->opens = settle_put(b, o_open, s->opens, s->open_count, sizeof(eng_share));
    st->rev = settle_put(b, o_rev, s->rev, s->rev_count, sizeof(eng_rev));
    st->rev_cap = s->rev_count;
    st->certs = settle_put(b, o_cert, s->certs, s->cert_bytes, 1);
    st->cert_cap = s->cert_bytes;
    if (s->name.ptr != NULL)
        st->name.ptr = settle_put(b, o_name, s->name.ptr, s->name.len + 1u, 1);
    if (s->region.ptr != NULL)
        st->region.ptr = settle_put(b, o_region, s->region.ptr, s->region.len + 1u, 1);
    /* s: empty for the next read, keeping the vectors it grew */
    eng_name_free(&s->name);
    eng_name_free(&s->region);
    free(s->opens);
    *s = (eng_pstate){.buckets = s->buckets,
                      .bucket_cap = s->bucket_cap,
                      .rows = s->rows,
                      .row_cap = s->row_cap,
                      .acts = s->acts,
                      .act_cap = s->act_cap,
                      .certs = s->certs,
                      .cert_cap = s->cert_cap,
                      .rev = s->rev,
                      .rev_cap = s->rev_cap};
    pstate_init(s);
    return st;
}

/* Frees st's owned strings and vectors, and st; history names are global. */
void eng_pstate_free(eng_pstate *st)
{
    if (st == NULL)
        return;
    eng_pstate_name_free(st, &st->name);
    eng_pstate_name_free(st, &st->region);
    for (uint32_t i = 0; i < st->claim_count; i++)
        eng_claim_clear(&st->claims[i]);
    for (uint32_t i = 0; i < st->held_count; i++) {
        free(st->held[i].key);
        free(st->held[i].ref);
    }
    eng_pstate_release(st, st->buckets);
    eng_pstate_release(st, st->rows);
    free(st->hist);
    eng_pstate_release(st, st->certs);
    free(st->claims);
    free(st->held);
    eng_pstate_release(st, st->acts);
    eng_pstate_release(st, st->opens);
    eng_pstate_release(st, st->rev);
    free(st->arch);
    free(st);
}
