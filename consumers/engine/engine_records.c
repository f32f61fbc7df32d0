/*
 * engine_records.c — floor 4 of the engine (see engine_internal.h): the
 * stored records (engine_records.h lists them). Packing writes what the
 * flush stores; unpacking reads a record back into the data model, every
 * string an owned copy (or, for global tier names, interned), so the
 * bytes may go as soon as it returns.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_records.h"
#include "tly_assert.h"
#include "tly_mp.h"

/* ---- packing ---- */

static void pk_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (s == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str_with_body(pk, s, len);
}

static void pk_name(msgpack_packer *pk, eng_name n)
{
    pk_str(pk, n.ptr, n.len);
}

static void pk_bin(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_bin_with_body(pk, s, len);
}

static void pk_liab(msgpack_packer *pk, const eng_liab *l)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_int64(pk, l->available);
    msgpack_pack_int64(pk, l->pending);
    msgpack_pack_int64(pk, l->approved);
    msgpack_pack_int64(pk, l->open);
    msgpack_pack_int64(pk, l->payable);
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
static void pk_figures_body(msgpack_packer *pk, const eng_act *a)
{
    uint32_t mask = 0;
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        if (a->v[f] != 0)
            mask |= 1u << f;
    msgpack_pack_uint32(pk, mask);
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        if (a->v[f] != 0)
            msgpack_pack_int64(pk, a->v[f]);
}

static void pk_figures(msgpack_packer *pk, const eng_act *a)
{
    msgpack_pack_array(pk, 2 + act_nonzero(a));
    msgpack_pack_int32(pk, a->period);
    pk_figures_body(pk, a);
}

/* What took effect per period: [[period, mask, figures...]...]. */
static void pk_acts(msgpack_packer *pk, const eng_act *v, uint32_t n)
{
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        pk_figures(pk, &v[i]);
}

void eng_pack_journal(msgpack_packer *pk, const char *partner, size_t len, const eng_act *a)
{
    msgpack_pack_array(pk, 2 + act_nonzero(a));
    pk_str(pk, partner, len);
    pk_figures_body(pk, a);
}

/* Amounts by period: [[period, amount]...]. */
static void pk_shares(msgpack_packer *pk, const eng_share *v, uint32_t n)
{
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, v[i].period);
        msgpack_pack_int64(pk, v[i].amount);
    }
}

/* The program record: rules, periods, and the shard's liability sums. */
void eng_pack_program(msgpack_packer *pk, const eng_program *g)
{
    const eng_rules *r = &g->rules;
    msgpack_pack_array(pk, 23);
    msgpack_pack_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, g->name, g->name_len);
    pk_str(pk, g->currency, 3);
    msgpack_pack_int(pk, g->kind);
    msgpack_pack_int64(pk, r->version);
    msgpack_pack_array(pk, r->tier_count);
    for (uint32_t i = 0; i < r->tier_count; i++) {
        const eng_tier *t = &r->tiers[i];
        msgpack_pack_array(pk, 7);
        pk_name(pk, t->name);
        msgpack_pack_int64(pk, t->min_revenue);
        msgpack_pack_int64(pk, t->min_certs);
        msgpack_pack_int32(pk, t->mdf_bps);
        msgpack_pack_int32(pk, t->rebate_bonus_bps);
        msgpack_pack_int32(pk, t->referral_bps);
        msgpack_pack_array(pk, t->benefit_count);
        for (uint32_t b = 0; b < t->benefit_count; b++)
            pk_name(pk, t->benefits[b]);
    }
    msgpack_pack_int(pk, r->mode);
    msgpack_pack_array(pk, r->bracket_count);
    for (uint32_t i = 0; i < r->bracket_count; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int64(pk, r->brackets[i].from);
        msgpack_pack_int32(pk, r->brackets[i].bps);
    }
    msgpack_pack_int32(pk, r->expiry_n);
    msgpack_pack_int32(pk, r->window_w);
    msgpack_pack_int(pk, r->basis);
    msgpack_pack_int32(pk, r->baseline_k);
    msgpack_pack_int64(pk, r->rebate_min);
    msgpack_pack_int64(pk, r->rebate_cap);
    msgpack_pack_int64(pk, r->mdf_cap);
    msgpack_pack_int(pk, r->moves);
    msgpack_pack_int32(pk, r->grace);
    msgpack_pack_int32(pk, g->first_period);
    msgpack_pack_int32(pk, g->eop);
    msgpack_pack_int32(pk, g->expired_upto);
    pk_liab(pk, &g->liab);
    pk_acts(pk, g->rep, g->rep_count);
    pk_shares(pk, g->open_rebate, g->open_count);
}

/* ---- sale records, packed by hand ----
 *
 * One "S/2/" record per sale is most of a flush's puts, so sale records
 * skip msgpack-c's per-element callback: the bytes are msgpack-c's own
 * (smallest integer form, as msgpack_pack_int64 picks it; str8 for the
 * short strings a sale has), written into the flush's reused buffer. */

static void mp_byte(uint8_t **at, uint8_t b)
{
    *(*at)++ = b;
}

/* The big-endian n bytes of v after marker m. */
static void mp_be(uint8_t **at, uint8_t m, uint64_t v, int n)
{
    mp_byte(at, m);
    for (int i = n - 1; i >= 0; i--)
        mp_byte(at, (uint8_t)(v >> (8 * i)));
}

/* msgpack-c's choice (pack_template.h, msgpack_pack_real_int64). */
static void mp_int(uint8_t **at, int64_t d)
{
    if (d < -(INT64_C(1) << 5)) {
        if (d < -(INT64_C(1) << 31))
            mp_be(at, 0xd3, (uint64_t)d, 8);
        else if (d < -(INT64_C(1) << 15))
            mp_be(at, 0xd2, (uint64_t)d, 4);
        else if (d < -(INT64_C(1) << 7))
            mp_be(at, 0xd1, (uint64_t)d, 2);
        else
            mp_be(at, 0xd0, (uint64_t)d, 1);
    } else if (d < (INT64_C(1) << 7)) {
        mp_byte(at, (uint8_t)d); /* positive or negative fixint */
    } else if (d < (INT64_C(1) << 16)) {
        mp_be(at, d < 256 ? 0xcc : 0xcd, (uint64_t)d, d < 256 ? 1 : 2);
    } else {
        bool big = d >= (INT64_C(1) << 32);
        mp_be(at, big ? 0xcf : 0xce, (uint64_t)d, big ? 8 : 4);
    }
}

/* str of at most 255 bytes (a sale's names are shorter). */
static void mp_str(uint8_t **at, const char *s, uint32_t len)
{
    TLY_ASSERT(len <= UINT8_MAX);
    if (len < 32)
        mp_byte(at, (uint8_t)(0xa0 | len));
    else
        mp_be(at, 0xd9, len, 1);
    memcpy(*at, s, len);
    *at += len;
}

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
    uint8_t *at = (uint8_t *)b->data;
    mp_byte(&at, s->has_detail ? 0x9d : 0x95); /* fixarray of 13 or 5 */
    mp_int(&at, ENG_RECORD_FORMAT);
    mp_str(&at, ENG_SALE_PARTNER(s), s->partner_len);
    mp_str(&at, s->currency, 3);
    mp_int(&at, (int64_t)s->seq);
    mp_int(&at, s->at_ms);
    if (s->has_detail) {
        const int64_t v[8] = {s->d.amount, s->d.returned, s->d.accrual,  s->d.clawed,
                              s->d.bps,    s->d.fx.units, s->d.fx.scale, s->d.fx.ediff};
        for (int i = 0; i < 8; i++)
            mp_int(&at, v[i]);
    }
    b->len = (size_t)(at - (uint8_t *)b->data);
    TLY_ASSERT(b->len <= SALE_RECORD_BYTES_MAX);
    return true;
}

void eng_pack_claim(msgpack_packer *pk, const eng_partner *pp, const eng_claim *c)
{
    msgpack_pack_array(pk, 9);
    msgpack_pack_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, pp->id, pp->id_len);
    pk_name(pk, c->id);
    msgpack_pack_int(pk, c->status);
    msgpack_pack_int64(pk, c->requested);
    msgpack_pack_int64(pk, c->approved);
    msgpack_pack_int64(pk, c->paid);
    pk_name(pk, c->reason);
    msgpack_pack_array(pk, c->share_count);
    for (uint32_t i = 0; i < c->share_count; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, c->shares[i].period);
        msgpack_pack_int64(pk, c->shares[i].amount);
    }
}

static void pack_accounts(msgpack_packer *pk, const eng_pstate *st)
{
    msgpack_pack_array(pk, st->bucket_count);
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, st->buckets[i].period);
        msgpack_pack_int64(pk, st->buckets[i].remaining);
    }
    msgpack_pack_array(pk, st->row_count);
    for (uint32_t i = 0; i < st->row_count; i++) {
        const eng_row *r = &st->rows[i];
        msgpack_pack_array(pk, 13);
        msgpack_pack_int32(pk, r->period);
        r->final ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        msgpack_pack_int32(pk, r->rate_bps);
        const int64_t v[6] = {r->revenue, r->adj, r->figure, r->paid, r->basis, r->baseline};
        for (int k = 0; k < 6; k++)
            msgpack_pack_int64(pk, v[k]);
        r->has_baseline ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        msgpack_pack_int64(pk, r->referral);
        msgpack_pack_int64(pk, r->referred);
        msgpack_pack_int64(pk, r->mdf_gross);
    }
}

static void pack_lists(msgpack_packer *pk, const eng_pstate *st)
{
    msgpack_pack_array(pk, st->hist_count);
    for (uint32_t i = 0; i < st->hist_count; i++) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint64(pk, st->hist[i].seq);
        msgpack_pack_int32(pk, st->hist[i].period);
        pk_name(pk, st->hist[i].from);
        pk_name(pk, st->hist[i].to);
    }
    msgpack_pack_array(pk, st->cert_count);
    for (uint32_t i = 0; i < st->cert_count; i++) {
        msgpack_pack_array(pk, 2);
        pk_bin(pk, st->certs[i].key.ptr, st->certs[i].key.len);
        msgpack_pack_int64(pk, st->certs[i].expires_ms);
    }
    msgpack_pack_array(pk, st->claim_count);
    for (uint32_t i = 0; i < st->claim_count; i++)
        pk_name(pk, st->claims[i].id);
    msgpack_pack_array(pk, st->held_count);
    for (uint32_t i = 0; i < st->held_count; i++) {
        const eng_held *h = &st->held[i];
        msgpack_pack_array(pk, 10);
        msgpack_pack_int(pk, h->type);
        msgpack_pack_uint64(pk, h->seq);
        msgpack_pack_int64(pk, h->at_ms);
        msgpack_pack_int64(pk, h->amount);
        msgpack_pack_uint32(pk, h->next_n);
        pk_bin(pk, h->key, h->key_len);
        msgpack_pack_int(pk, h->action);
        pk_str(pk, h->currency, 3);
        msgpack_pack_int64(pk, h->expires_ms);
        pk_bin(pk, h->ref, h->ref_len);
    }
}

void eng_pack_partner(msgpack_packer *pk, const eng_partner *pp, const eng_program *g)
{
    msgpack_pack_array(pk, pp->owned ? ENG_PARTNER_FIELDS_OWNED : ENG_PARTNER_FIELDS_FOREIGN);
    msgpack_pack_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, pp->id, pp->id_len);
    pk_str(pk, g ? g->name : NULL, g ? g->name_len : 0);
    pp->owned ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    msgpack_pack_uint64(pk, pp->enroll_seq);
    if (!pp->owned)
        return;
    const eng_pstate *st = pp->st;
    pk_name(pk, st->name);
    msgpack_pack_int(pk, st->kind);
    pk_name(pk, st->region);
    msgpack_pack_uint32(pk, st->tier);
    msgpack_pack_uint32(pk, st->fails);
    const int64_t totals[8] = {st->accrued, st->clawed_back, st->adjusted, st->expired,
                               st->pending, st->approved,    st->paid,     st->deficit};
    for (int i = 0; i < 8; i++)
        msgpack_pack_int64(pk, totals[i]);
    pack_accounts(pk, st);
    pack_lists(pk, st);
    pk_liab(pk, &pp->liab);
    uint32_t live = eng_acts_closed(st, g); /* the rest is in the journal rows */
    pk_acts(pk, live < st->act_count ? &st->acts[live] : NULL, st->act_count - live);
    pk_shares(pk, st->opens, st->open_count);
}

/* The rates of one pair: [fmt, from, to, [[at, seq, units, scale]...]]. */
void eng_pack_rates(msgpack_packer *pk, const eng_rate_pair *rp)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, ENG_RECORD_FORMAT);
    pk_str(pk, rp->from, 3);
    pk_str(pk, rp->to, 3);
    msgpack_pack_array(pk, rp->count);
    for (uint32_t i = 0; i < rp->count; i++) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_int64(pk, rp->rates[i].at_ms);
        msgpack_pack_uint64(pk, rp->rates[i].seq);
        msgpack_pack_int64(pk, rp->rates[i].units);
        msgpack_pack_int32(pk, rp->rates[i].scale);
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

/* Bytes (or nil) as an owned name. */
static tly_err rd_owned(tly_mp_reader *r, eng_name *out, bool nullable)
{
    tly_str s;
    RD(rd_str(r, &s, nullable));
    return eng_name_copy(out, s.ptr, s.len);
}

/* Bytes as a global name in the arena (interned when names is given). */
static tly_err rd_global(tly_mp_reader *r, eng_map *names, eng_arena *a, eng_name *out)
{
    tly_str s;
    RD(rd_str(r, &s, false));
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

static tly_err unpack_tier(eng_arena *a, tly_mp_reader *r, eng_tier *t)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n) && n == 7);
    TRY(rd_global(r, NULL, a, &t->name));
    RD(rd_i64(r, &t->min_revenue) && rd_i64(r, &t->min_certs) && rd_bps(r, &t->mdf_bps));
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
    RD(tly_mp_read_array(r, &m) && m >= 2 && rd_i32(r, &a->period));
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
    /* The acts are the owned record's last element but one (eng_pack_partner):
     * skip every element before them. */
    tly_mp_init(&r, val, len);
    uint32_t count;
    RD(tly_mp_read_array(&r, &count));
    for (uint32_t i = 0; i < ENG_PARTNER_FIELDS_OWNED - 2; i++)
        RD(tly_mp_skip_at(&r, 1, NULL, NULL));
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
    /* the shares, and nothing after them: the whole record is checked */
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
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_i32(r, &sh.period) && rd_i64(r, &sh.amount));
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
        RD(rd_i64(r, &ru->brackets[i].from) && rd_i32(r, &ru->brackets[i].bps));
    }
    RD(rd_i32(r, &ru->expiry_n) && rd_i32(r, &ru->window_w));
    return unpack_rules_v2(r, ru);
}

tly_err eng_unpack_program(eng_arena *a, const void *val, size_t len, eng_program *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    tly_str name, cur;
    int64_t kind;
    RD(rd_head(&r, &count) && count == 23);
    RD(rd_str(&r, &name, false) && rd_str(&r, &cur, false) && cur.len == 3);
    RD(rd_i64(&r, &kind));
    eng_program g = {.kind = kind == TLY_PERIOD_MONTH ? TLY_PERIOD_MONTH : TLY_PERIOD_QUARTER,
                     .name_len = name.len};
    memcpy(g.currency, cur.ptr, 3);
    TRY(unpack_rules(a, &r, &g.rules));
    RD(rd_i32(&r, &g.first_period) && rd_i32(&r, &g.eop) && rd_i32(&r, &g.expired_upto));
    TRY(rd_liab(&r, &g.liab));
    tly_err err = unpack_acts(&r, &g.rep, &g.rep_count, &g.rep_cap);
    if (err == TLY_OK)
        err = unpack_shares_by_period(&r, &g.open_rebate, &g.open_count);
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
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_i32(r, &sh.period));
        RD(rd_i64(r, &sh.amount));
        TRY(ENG_PUSH(c->shares, c->share_count, c->share_cap, sh));
    }
    return TLY_OK;
}

/* The fields after the head; what it copied stays in c on error. */
static tly_err unpack_claim_body(tly_mp_reader *r, tly_str *partner, eng_claim *c)
{
    uint32_t count;
    int64_t status;
    RD(rd_head(r, &count) && count == 9);
    RD(rd_str(r, partner, false) && partner->len <= TLY_NAME_BYTES_MAX);
    TRY(rd_owned(r, &c->id, false));
    RD(c->id.len <= TLY_NAME_BYTES_MAX);
    RD(rd_i64(r, &status) && status >= 0 && status <= ENG_CLAIM_DENIED);
    c->status = (uint8_t)status;
    RD(rd_i64(r, &c->requested) && rd_i64(r, &c->approved) && rd_i64(r, &c->paid));
    TRY(rd_owned(r, &c->reason, true));
    TRY(unpack_shares(r, c));
    return rd_end(r);
}

tly_err eng_unpack_claim(const void *val, size_t len, tly_str *partner, eng_claim *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    *out = (eng_claim){0};
    tly_err err = unpack_claim_body(&r, partner, out);
    if (err != TLY_OK)
        eng_claim_clear(out);
    out->loaded = err == TLY_OK;
    return err;
}

tly_err eng_peek_partner(const void *val, size_t len, eng_partner_rec *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, val, len);
    uint32_t count;
    RD(rd_head(&r, &count));
    RD(count == ENG_PARTNER_FIELDS_FOREIGN || count == ENG_PARTNER_FIELDS_OWNED);
    RD(rd_str(&r, &out->id, false) && out->id.len <= TLY_NAME_BYTES_MAX);
    RD(rd_str(&r, &out->program, true) && tly_mp_read_bool(&r, &out->owned));
    RD((count == ENG_PARTNER_FIELDS_OWNED) == out->owned);
    RD(tly_mp_read_uint(&r, &out->enroll_seq));
    return out->owned ? TLY_OK : rd_end(&r);
}

static tly_err unpack_buckets_rows(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n, m;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_bucket b;
        RD(tly_mp_read_array(r, &m) && m == 2 && rd_i32(r, &b.period));
        RD(rd_i64(r, &b.remaining));
        RD(i == 0 || st->buckets[i - 1].period < b.period);
        TRY(ENG_PUSH(st->buckets, st->bucket_count, st->bucket_cap, b));
    }
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_row w;
        RD(tly_mp_read_array(r, &m) && m == 13 && rd_i32(r, &w.period));
        RD(tly_mp_read_bool(r, &w.final) && rd_i32(r, &w.rate_bps) && rd_i64(r, &w.revenue));
        RD(rd_i64(r, &w.adj) && rd_i64(r, &w.figure) && rd_i64(r, &w.paid));
        RD(rd_i64(r, &w.basis) && rd_i64(r, &w.baseline) && tly_mp_read_bool(r, &w.has_baseline));
        RD(rd_i64(r, &w.referral) && rd_i64(r, &w.referred) && rd_i64(r, &w.mdf_gross));
        RD(i == 0 || st->rows[i - 1].period < w.period);
        TRY(ENG_PUSH(st->rows, st->row_count, st->row_cap, w));
    }
    return TLY_OK;
}

static tly_err unpack_hist(tly_mp_reader *r, eng_map *names, eng_arena *a, eng_pstate *st)
{
    uint32_t n, m;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_hist h;
        uint64_t seq;
        RD(tly_mp_read_array(r, &m) && m == 4 && tly_mp_read_uint(r, &seq));
        RD(rd_i32(r, &h.period));
        h.seq = seq;
        TRY(rd_global(r, names, a, &h.from));
        TRY(rd_global(r, names, a, &h.to));
        TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
    }
    return TLY_OK;
}

/* Active pairs, then the claim ids in submit order. */
static tly_err unpack_certs_claims(tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        tly_str k;
        uint32_t m;
        eng_cert c = {0};
        RD(tly_mp_read_array(r, &m) && m == 2);
        RD(rd_str(r, &k, false) && k.len >= 1 && (unsigned char)k.ptr[0] < k.len);
        RD(rd_i64(r, &c.expires_ms));
        TRY(eng_grow((void **)&st->certs, &st->cert_cap, st->cert_count + 1, sizeof *st->certs));
        TRY(eng_name_copy(&c.key, k.ptr, k.len));
        st->certs[st->cert_count++] = c;
    }
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        tly_str id;
        RD(rd_str(r, &id, false) && id.len <= TLY_NAME_BYTES_MAX);
        TRY(eng_grow((void **)&st->claims, &st->claim_cap, st->claim_count + 1,
                     sizeof *st->claims));
        st->claims[st->claim_count] = (eng_claim){0};
        TRY(eng_name_copy(&st->claims[st->claim_count].id, id.ptr, id.len));
        st->claim_count++;
    }
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
    TRY(unpack_buckets_rows(&r, st));
    TRY(unpack_hist(&r, names, a, st));
    TRY(unpack_certs_claims(&r, st));
    TRY(unpack_held(&r, st));
    TRY(rd_liab(&r, liab));
    TRY(unpack_acts(&r, &st->acts, &st->act_count, &st->act_cap));
    TRY(unpack_shares_by_period(&r, &st->opens, &st->open_count));
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

eng_pstate *eng_pstate_new(void)
{
    return calloc(1, sizeof(eng_pstate));
}

void eng_claim_clear(eng_claim *c)
{
    eng_name_free(&c->id);
    eng_name_free(&c->reason);
    free(c->shares);
    *c = (eng_claim){0};
}

/* Frees st's owned strings and vectors, and st; history names are global. */
void eng_pstate_free(eng_pstate *st)
{
    if (st == NULL)
        return;
    eng_name_free(&st->name);
    eng_name_free(&st->region);
    for (uint32_t i = 0; i < st->cert_count; i++)
        eng_name_free(&st->certs[i].key);
    for (uint32_t i = 0; i < st->claim_count; i++)
        eng_claim_clear(&st->claims[i]);
    for (uint32_t i = 0; i < st->held_count; i++) {
        free(st->held[i].key);
        free(st->held[i].ref);
    }
    free(st->buckets);
    free(st->rows);
    free(st->hist);
    free(st->certs);
    free(st->claims);
    free(st->held);
    free(st->acts);
    free(st->opens);
    free(st);
}
