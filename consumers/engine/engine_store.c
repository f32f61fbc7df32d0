/*
 * engine_store.c — floor 1 of the engine (see engine_internal.h): flush
 * (state, views, exceptions through the sink) and load (state back from
 * the view store). The documents come from engine_views.c (floor 2), the
 * tables from engine_state.c (floor 3).
 *
 * State keys, in the order load needs them (LMDB returns keys sorted):
 *   "S/1/<program>"            program rules and periods
 *   "S/2/<u8 len src><src><id>" one registered sale (every shard)
 *   "S/3/<u8 len p><p><claim>" one claim (owning shard)
 *   "S/4/<partner>"            a partner: enrollment (every shard), money
 *                              state, rows, history, certs, claim order and
 *                              held events (owning shard)
 * Values are MessagePack arrays whose first element is a format number.
 * Programs come first because sales, claims and partners name them; sales
 * and claims before partners because a partner refers to its held sales and
 * its claims by key.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"
#include "tly_assert.h"
#include "tly_mp.h"

#define STORE_FORMAT 1

/* Longest key: "S/3/" + 1 + 128 + 128. */
#define STORE_KEY_BYTES_MAX 300

/* One flush: the sink, and the two buffers every record and document of
 * the flush is built in (reused, so a document costs no allocation). */
typedef struct flush_ctx {
    tly_engine *e;
    tly_kv_put_fn fn;
    void *ctx;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    eng_buf json; /* the document being written; also a sale record */
} flush_ctx;

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

static tly_err put(tly_kv_put_fn fn, void *ctx, const char *key, size_t klen, const void *val,
                   size_t vlen)
{
    return fn(ctx, key, klen, val, vlen);
}

/* key = prefix ‖ body */
static size_t mkkey(char *buf, const char *prefix, const char *body, size_t len)
{
    size_t pl = strlen(prefix);
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, body, len);
    return pl + len;
}

static tly_err put_packed(tly_kv_put_fn fn, void *ctx, const char *prefix, const char *body,
                          size_t len, msgpack_sbuffer *sb)
{
    char key[STORE_KEY_BYTES_MAX];
    size_t klen = mkkey(key, prefix, body, len);
    if (sb->data == NULL)
        return TLY_NOMEM;
    return put(fn, ctx, key, klen, sb->data, sb->size);
}

/* Starts a document in f->json, emptied (it may hold a sale record). */
static void json_begin(flush_ctx *f, eng_jw *w)
{
    f->json.len = 0;
    eng_jw_init_text(w, &f->json);
}

/* Stores the document f->json holds (one view or exception, written by
 * the text back end) under prefix ‖ body, and empties the buffer. */
static tly_err put_json(flush_ctx *f, const char *prefix, const char *body, size_t len)
{
    if (f->json.failed)
        return TLY_NOMEM;
    char key[STORE_KEY_BYTES_MAX];
    size_t klen = mkkey(key, prefix, body, len);
    tly_err err = put(f->fn, f->ctx, key, klen, f->json.data, f->json.len);
    f->json.len = 0;
    return err;
}

static void pack_program(msgpack_packer *pk, const eng_program *g)
{
    const eng_rules *r = &g->rules;
    msgpack_pack_array(pk, 13);
    msgpack_pack_int(pk, STORE_FORMAT);
    pk_str(pk, g->name, g->name_len);
    pk_str(pk, g->currency, 3);
    msgpack_pack_int(pk, g->kind);
    msgpack_pack_int64(pk, r->version);
    msgpack_pack_array(pk, r->tier_count);
    for (uint32_t i = 0; i < r->tier_count; i++) {
        msgpack_pack_array(pk, 4);
        pk_name(pk, r->tiers[i].name);
        msgpack_pack_int64(pk, r->tiers[i].min_revenue);
        msgpack_pack_int64(pk, r->tiers[i].min_certs);
        msgpack_pack_int32(pk, r->tiers[i].mdf_bps);
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
    msgpack_pack_int32(pk, g->first_period);
    msgpack_pack_int32(pk, g->eop);
    msgpack_pack_int32(pk, g->expired_upto);
}

/* ---- sale records, packed by hand ----
 *
 * One "S/2/" record per sale is most of a flush's puts, so sale records
 * skip msgpack-c's per-element callback: the bytes are msgpack-c's own
 * (smallest integer form, as msgpack_pack_int64 picks it; str8/bin8 for
 * the short strings a sale has), written into the flush's reused buffer. */

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

/* str or bin of at most 255 bytes (a sale's names are shorter). */
static void mp_bytes(uint8_t **at, bool bin, const char *s, uint32_t len)
{
    TLY_ASSERT(len <= UINT8_MAX);
    if (bin)
        mp_be(at, 0xc4, len, 1);
    else if (len < 32)
        mp_byte(at, (uint8_t)(0xa0 | len));
    else
        mp_be(at, 0xd9, len, 1);
    memcpy(*at, s, len);
    *at += len;
}

/* Largest sale record: fixarray, 6 integers of ≤ 9 bytes, three names. */
#define SALE_RECORD_BYTES_MAX (1 + 6 * 9 + 3 * (2 + UINT8_MAX))

/* The record into b (emptied first); false when out of memory. */
static bool pack_sale(eng_buf *b, const tly_engine *e, const eng_sale *s)
{
    _Static_assert(1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX <= UINT8_MAX, "sale key is bin8");
    _Static_assert(TLY_NAME_BYTES_MAX <= UINT8_MAX, "partner id is str8");
    b->len = 0;
    if (b->cap < SALE_RECORD_BYTES_MAX) {
        char *d = realloc(b->data, SALE_RECORD_BYTES_MAX);
        if (d == NULL)
            return false;
        b->data = d;
        b->cap = SALE_RECORD_BYTES_MAX;
    }
    const eng_partner *pp = &e->partners[s->partner];
    bool detail = s->detail != ENG_NONE;
    uint8_t *at = (uint8_t *)b->data;
    mp_byte(&at, detail ? 0x9a : 0x95); /* fixarray of 10 or 5 */
    mp_int(&at, STORE_FORMAT);
    mp_bytes(&at, true, s->key, s->key_len);
    mp_bytes(&at, false, pp->id, pp->id_len);
    mp_int(&at, s->state);
    mp_bytes(&at, false, s->currency, 3);
    if (detail) {
        const eng_sale_detail *d = &e->details[s->detail];
        const int64_t v[5] = {d->amount, d->returned, d->accrual, d->clawed, d->bps};
        for (int i = 0; i < 5; i++)
            mp_int(&at, v[i]);
    }
    b->len = (size_t)(at - (uint8_t *)b->data);
    TLY_ASSERT(b->len <= SALE_RECORD_BYTES_MAX);
    return true;
}

static void pack_claim(msgpack_packer *pk, const tly_engine *e, const eng_claim *c)
{
    const eng_partner *pp = &e->partners[c->partner];
    msgpack_pack_array(pk, 9);
    msgpack_pack_int(pk, STORE_FORMAT);
    pk_str(pk, pp->id, pp->id_len);
    pk_str(pk, c->id, c->id_len);
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

static void pack_lists(msgpack_packer *pk, const tly_engine *e, const eng_pstate *st)
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
        msgpack_pack_array(pk, 7);
        msgpack_pack_int32(pk, r->period);
        r->final ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        msgpack_pack_int32(pk, r->rate_bps);
        msgpack_pack_int64(pk, r->revenue);
        msgpack_pack_int64(pk, r->adj);
        msgpack_pack_int64(pk, r->figure);
        msgpack_pack_int64(pk, r->paid);
    }
    msgpack_pack_array(pk, st->hist_count);
    for (uint32_t i = 0; i < st->hist_count; i++) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint64(pk, st->hist[i].seq);
        msgpack_pack_int32(pk, st->hist[i].period);
        pk_name(pk, st->hist[i].from);
        pk_name(pk, st->hist[i].to);
    }
    msgpack_pack_array(pk, st->cert_count);
    for (uint32_t i = 0; i < st->cert_count; i++)
        pk_bin(pk, st->certs[i].ptr, st->certs[i].len);
    msgpack_pack_array(pk, st->claim_count);
    for (uint32_t i = 0; i < st->claim_count; i++) {
        const eng_claim *c = &e->claims[st->claims[i]];
        pk_str(pk, c->id, c->id_len);
    }
}

static void pack_held(msgpack_packer *pk, const tly_engine *e, const eng_pstate *st)
{
    msgpack_pack_array(pk, st->held_count);
    for (uint32_t i = 0; i < st->held_count; i++) {
        const eng_held *h = &st->held[i];
        msgpack_pack_array(pk, 8);
        msgpack_pack_int(pk, h->type);
        msgpack_pack_uint64(pk, h->seq);
        msgpack_pack_int64(pk, h->at_ms);
        msgpack_pack_int64(pk, h->amount);
        msgpack_pack_uint32(pk, h->next_n);
        if (h->type == TLY_EV_SALE)
            pk_bin(pk, e->sales[h->sale].key, e->sales[h->sale].key_len);
        else
            pk_bin(pk, h->key, h->key_len);
        msgpack_pack_int(pk, h->action);
        pk_str(pk, h->currency, 3);
    }
}

static void pack_partner(msgpack_packer *pk, const tly_engine *e, const eng_partner *pp)
{
    const eng_program *g = pp->program == ENG_NONE ? NULL : &e->programs[pp->program];
    msgpack_pack_array(pk, pp->owned ? 22 : 4);
    msgpack_pack_int(pk, STORE_FORMAT);
    pk_str(pk, pp->id, pp->id_len);
    pk_str(pk, g ? g->name : NULL, g ? g->name_len : 0);
    pp->owned ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    if (!pp->owned)
        return;
    const eng_pstate *st = pp->st;
    pk_name(pk, st->name);
    msgpack_pack_int(pk, st->kind);
    pk_name(pk, st->region);
    msgpack_pack_uint32(pk, st->tier);
    const int64_t totals[8] = {st->accrued, st->clawed_back, st->adjusted, st->expired,
                               st->pending, st->approved,    st->paid,     st->deficit};
    for (int i = 0; i < 8; i++)
        msgpack_pack_int64(pk, totals[i]);
    pack_lists(pk, e, st);
    pack_held(pk, e, st);
}

/* ---- flush ---- */

static void fc_reset(flush_ctx *f)
{
    msgpack_sbuffer_clear(&f->sb);
}

static tly_err flush_programs(flush_ctx *f, bool *liab)
{
    tly_engine *e = f->e;
    for (uint32_t i = 0; i < e->program_count; i++) {
        const eng_program *g = &e->programs[i];
        if (g->dirty) {
            fc_reset(f);
            pack_program(&f->pk, g);
            TRY(put_packed(f->fn, f->ctx, "S/1/", g->name, g->name_len, &f->sb));
        }
        if (g->dirty || liab[i]) {
            eng_jw w;
            json_begin(f, &w);
            TRY(eng_liability_write(&w, e, g)); /* TLY_OVERFLOW: not stored */
            TRY(put_json(f, "V/l/", g->name, g->name_len));
        }
    }
    return TLY_OK;
}

static tly_err flush_records(flush_ctx *f)
{
    tly_engine *e = f->e;
    for (uint32_t i = 0; i < e->dirty_sale_count; i++) {
        const eng_sale *s = &e->sales[e->dirty_sales[i]];
        if (!pack_sale(&f->json, e, s))
            return TLY_NOMEM;
        char key[STORE_KEY_BYTES_MAX];
        size_t klen = mkkey(key, "S/2/", s->key, s->key_len);
        TRY(put(f->fn, f->ctx, key, klen, f->json.data, f->json.len));
    }
    for (uint32_t i = 0; i < e->dirty_claim_count; i++) {
        const eng_claim *c = &e->claims[e->dirty_claims[i]];
        const eng_partner *pp = &e->partners[c->partner];
        char key[1 + 2 * TLY_NAME_BYTES_MAX];
        uint32_t klen = eng_claim_key(key, pp->id, pp->id_len, c->id, c->id_len);
        fc_reset(f);
        pack_claim(&f->pk, e, c);
        TRY(put_packed(f->fn, f->ctx, "S/3/", key, klen, &f->sb));
    }
    return TLY_OK;
}

/* Stores partner pp's state and, when owned and enrolled, its four views.
 * What is stored keeps the MDF invariant (TLY_ASSERT, every build type). */
static tly_err flush_partner(flush_ctx *f, const eng_partner *pp, uint32_t p)
{
    TLY_ASSERT(pp->st == NULL || eng_invariant_ok(pp->st));
    fc_reset(f);
    pack_partner(&f->pk, f->e, pp);
    TRY(put_packed(f->fn, f->ctx, "S/4/", pp->id, pp->id_len, &f->sb));
    if (!pp->owned || pp->program == ENG_NONE)
        return TLY_OK;
    static const char views[4] = {'b', 'r', 't', 'c'};
    for (int v = 0; v < 4; v++) {
        char prefix[5] = {'V', '/', views[v], '/', '\0'};
        eng_jw w;
        json_begin(f, &w);
        eng_view_write(&w, f->e, views[v], p, false);
        TRY(put_json(f, prefix, pp->id, pp->id_len));
    }
    return TLY_OK;
}

static tly_err flush_excs(flush_ctx *f)
{
    tly_engine *e = f->e;
    for (uint32_t i = e->exc_flushed; i < e->exc_count; i++) {
        const eng_exc *x = &e->excs[i];
        char body[12];
        for (int b = 0; b < 8; b++)
            body[b] = (char)(x->seq >> (56 - 8 * b));
        for (int b = 0; b < 4; b++)
            body[8 + b] = (char)(x->n >> (24 - 8 * b));
        eng_jw w;
        json_begin(f, &w);
        eng_exc_write(&w, e, x);
        TRY(put_json(f, "X/", body, sizeof body));
    }
    return TLY_OK;
}

static tly_err flush_all(flush_ctx *f)
{
    tly_engine *e = f->e;
    bool *liab = calloc(e->program_count + 1, sizeof *liab);
    if (liab == NULL)
        return TLY_NOMEM;
    tly_err err = TLY_OK;
    for (uint32_t i = 0; i < e->dirty_partner_count && err == TLY_OK; i++) {
        const eng_partner *pp = &e->partners[e->dirty_partners[i]];
        if (pp->owned && pp->program != ENG_NONE)
            liab[pp->program] = true;
        err = flush_partner(f, pp, e->dirty_partners[i]);
    }
    if (err == TLY_OK)
        err = flush_programs(f, liab);
    free(liab);
    TRY(err);
    TRY(flush_records(f));
    return flush_excs(f);
}

static void clear_dirty(tly_engine *e)
{
    for (uint32_t i = 0; i < e->program_count; i++)
        e->programs[i].dirty = false;
    for (uint32_t i = 0; i < e->dirty_partner_count; i++)
        e->partners[e->dirty_partners[i]].dirty = false;
    for (uint32_t i = 0; i < e->dirty_sale_count; i++)
        e->sales[e->dirty_sales[i]].dirty = false;
    for (uint32_t i = 0; i < e->dirty_claim_count; i++)
        e->claims[e->dirty_claims[i]].dirty = false;
    e->dirty_partner_count = e->dirty_sale_count = e->dirty_claim_count = 0;
    e->exc_flushed = e->exc_count;
}

tly_err tly_engine_flush(tly_engine *e, tly_kv_put_fn put_fn, void *ctx)
{
    flush_ctx f = {.e = e, .fn = put_fn, .ctx = ctx};
    msgpack_sbuffer_init(&f.sb);
    msgpack_packer_init(&f.pk, &f.sb, msgpack_sbuffer_write);
    tly_err err = flush_all(&f);
    msgpack_sbuffer_destroy(&f.sb);
    eng_buf_free(&f.json);
    if (err == TLY_OK)
        clear_dirty(e);
    return err;
}

/* ---- load ---- */

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

static bool rd_bool(tly_mp_reader *r, bool *v)
{
    return tly_mp_read_bool(r, v);
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

/* Copies bytes (or nil) into the arena as a name. */
static tly_err rd_name(tly_engine *e, tly_mp_reader *r, eng_name *out, bool nullable)
{
    const char *p;
    uint32_t len;
    RD(rd_bytes(r, &p, &len, nullable));
    if (p == NULL) {
        *out = (eng_name){NULL, 0};
        return TLY_OK;
    }
    char *c = eng_arena_copy(&e->arena, p, len);
    if (c == NULL)
        return TLY_NOMEM;
    *out = (eng_name){c, len};
    return TLY_OK;
}

static bool rd_head(tly_mp_reader *r, uint32_t *count)
{
    int64_t fmt;
    return tly_mp_read_array(r, count) && *count >= 1 && rd_i64(r, &fmt) && fmt == STORE_FORMAT;
}

static tly_err load_rules(tly_engine *e, tly_mp_reader *r, eng_rules *ru)
{
    int64_t mode;
    RD(rd_i64(r, &ru->version) && tly_mp_read_array(r, &ru->tier_count));
    RD(ru->tier_count >= 1 && ru->tier_count <= TLY_TIERS_MAX);
    for (uint32_t i = 0; i < ru->tier_count; i++) {
        uint32_t n;
        eng_tier *t = &ru->tiers[i];
        RD(tly_mp_read_array(r, &n) && n == 4);
        TRY(rd_name(e, r, &t->name, false));
        RD(rd_i64(r, &t->min_revenue) && rd_i64(r, &t->min_certs) && rd_i32(r, &t->mdf_bps));
    }
    RD(rd_i64(r, &mode) && tly_mp_read_array(r, &ru->bracket_count));
    RD(ru->bracket_count >= 1 && ru->bracket_count <= TLY_BRACKETS_MAX);
    ru->mode = mode == TLY_REBATE_INCREMENTAL ? TLY_REBATE_INCREMENTAL : TLY_REBATE_RETROACTIVE;
    for (uint32_t i = 0; i < ru->bracket_count; i++) {
        uint32_t n;
        RD(tly_mp_read_array(r, &n) && n == 2);
        RD(rd_i64(r, &ru->brackets[i].from) && rd_i32(r, &ru->brackets[i].bps));
    }
    RD(rd_i32(r, &ru->expiry_n) && rd_i32(r, &ru->window_w));
    return TLY_OK;
}

static tly_err load_program(tly_engine *e, tly_mp_reader *r)
{
    uint32_t count, nlen, clen;
    const char *name, *cur;
    int64_t kind;
    RD(rd_head(r, &count) && count == 13);
    RD(rd_bytes(r, &name, &nlen, false) && rd_bytes(r, &cur, &clen, false) && clen == 3);
    RD(rd_i64(r, &kind));
    RD(eng_program_find(e, name, nlen) == ENG_NONE);
    eng_program g = {.kind = kind == TLY_PERIOD_MONTH ? TLY_PERIOD_MONTH : TLY_PERIOD_QUARTER,
                     .name_len = nlen};
    memcpy(g.currency, cur, 3);
    TRY(load_rules(e, r, &g.rules));
    RD(rd_i32(r, &g.first_period) && rd_i32(r, &g.eop) && rd_i32(r, &g.expired_upto));
    char *k = eng_arena_copy(&e->arena, name, nlen);
    if (k == NULL)
        return TLY_NOMEM;
    g.name = k;
    TRY(ENG_PUSH(e->programs, e->program_count, e->program_cap, g));
    return eng_map_put(&e->program_map, k, nlen, eng_hash(k, nlen), e->program_count - 1);
}

static tly_err load_sale(tly_engine *e, tly_mp_reader *r)
{
    uint32_t count, klen, plen, clen;
    const char *key, *pid, *cur;
    int64_t state;
    RD(rd_head(r, &count) && (count == 5 || count == 10));
    RD(rd_bytes(r, &key, &klen, false) && rd_bytes(r, &pid, &plen, false));
    RD(rd_i64(r, &state) && state >= ENG_SALE_HELD && state <= ENG_SALE_NO_MONEY);
    RD(rd_bytes(r, &cur, &clen, false) && clen == 3 && klen >= 1);
    uint64_t h = eng_hash(key, klen);
    RD(eng_map_get(&e->sale_map, key, klen, h) == ENG_NONE);
    uint32_t p;
    TRY(eng_partner_get(e, pid, plen, &p));
    char *k = eng_arena_copy(&e->arena, key, klen);
    if (k == NULL)
        return TLY_NOMEM;
    eng_sale s = {
        .key = k, .key_len = klen, .partner = p, .detail = ENG_NONE, .state = (uint8_t)state};
    memcpy(s.currency, cur, 3);
    if (count == 10) {
        eng_sale_detail d;
        RD(rd_i64(r, &d.amount) && rd_i64(r, &d.returned) && rd_i64(r, &d.accrual));
        RD(rd_i64(r, &d.clawed) && rd_i32(r, &d.bps) && d.bps >= 0 && d.bps <= TLY_BPS_MAX);
        TRY(ENG_PUSH(e->details, e->detail_count, e->detail_cap, d));
        s.detail = e->detail_count - 1;
    }
    TRY(ENG_PUSH(e->sales, e->sale_count, e->sale_cap, s));
    uint32_t si = e->sale_count - 1;
    TRY(eng_map_put(&e->sale_map, k, klen, h, si));
    eng_partner *pp = &e->partners[p];
    if (s.state == ENG_SALE_HELD && !pp->owned)
        return ENG_PUSH(pp->held_sales, pp->held_sale_count, pp->held_sale_cap, si);
    return TLY_OK;
}

static tly_err load_shares(tly_mp_reader *r, eng_claim *c)
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

static tly_err load_claim(tly_engine *e, tly_mp_reader *r)
{
    uint32_t count, plen, clen;
    const char *pid, *cid;
    int64_t status;
    RD(rd_head(r, &count) && count == 9);
    RD(rd_bytes(r, &pid, &plen, false) && rd_bytes(r, &cid, &clen, false));
    RD(rd_i64(r, &status) && status >= 0 && status <= ENG_CLAIM_DENIED);
    RD(plen <= TLY_NAME_BYTES_MAX && clen <= TLY_NAME_BYTES_MAX);
    uint32_t p;
    TRY(eng_partner_get(e, pid, plen, &p));
    char key[1 + 2 * TLY_NAME_BYTES_MAX];
    uint32_t klen = eng_claim_key(key, pid, plen, cid, clen);
    uint64_t h = eng_hash(key, klen);
    RD(eng_map_get(&e->claim_map, key, klen, h) == ENG_NONE);
    char *k = eng_arena_copy(&e->arena, key, klen);
    if (k == NULL)
        return TLY_NOMEM;
    eng_claim c = {.id = k + 1 + plen, .id_len = clen, .partner = p, .status = (uint8_t)status};
    RD(rd_i64(r, &c.requested) && rd_i64(r, &c.approved) && rd_i64(r, &c.paid));
    TRY(rd_name(e, r, &c.reason, true));
    tly_err err = load_shares(r, &c);
    if (err == TLY_OK)
        err = ENG_PUSH(e->claims, e->claim_count, e->claim_cap, c);
    if (err != TLY_OK) {
        free(c.shares);
        return err;
    }
    return eng_map_put(&e->claim_map, k, klen, h, e->claim_count - 1);
}

static tly_err load_buckets_rows(tly_mp_reader *r, eng_pstate *st)
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
        RD(tly_mp_read_array(r, &m) && m == 7 && rd_i32(r, &w.period));
        RD(rd_bool(r, &w.final) && rd_i32(r, &w.rate_bps) && rd_i64(r, &w.revenue));
        RD(rd_i64(r, &w.adj) && rd_i64(r, &w.figure) && rd_i64(r, &w.paid));
        RD(i == 0 || st->rows[i - 1].period < w.period);
        TRY(ENG_PUSH(st->rows, st->row_count, st->row_cap, w));
    }
    return TLY_OK;
}

static tly_err load_hist_certs(tly_engine *e, tly_mp_reader *r, eng_pstate *st)
{
    uint32_t n, m;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_hist h;
        uint64_t seq;
        RD(tly_mp_read_array(r, &m) && m == 4 && tly_mp_read_uint(r, &seq));
        RD(rd_i32(r, &h.period));
        h.seq = seq;
        TRY(rd_name(e, r, &h.from, false));
        TRY(rd_name(e, r, &h.to, false));
        TRY(ENG_PUSH(st->hist, st->hist_count, st->hist_cap, h));
    }
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        eng_name pair;
        RD(rd_bytes(r, &k, &klen, false) && klen >= 1 && (unsigned char)k[0] < klen);
        TRY(eng_pair_intern(e, k, klen, &pair));
        TRY(ENG_PUSH(st->certs, st->cert_count, st->cert_cap, pair));
    }
    return TLY_OK;
}

static tly_err load_claim_order(tly_engine *e, tly_mp_reader *r, const eng_partner *pp)
{
    uint32_t n;
    eng_pstate *st = pp->st;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *cid;
        uint32_t clen;
        char key[1 + 2 * TLY_NAME_BYTES_MAX];
        RD(rd_bytes(r, &cid, &clen, false) && clen <= TLY_NAME_BYTES_MAX);
        uint32_t klen = eng_claim_key(key, pp->id, pp->id_len, cid, clen);
        uint32_t ci = eng_map_get(&e->claim_map, key, klen, eng_hash(key, klen));
        RD(ci != ENG_NONE);
        TRY(ENG_PUSH(st->claims, st->claim_count, st->claim_cap, ci));
    }
    return TLY_OK;
}

static tly_err load_held_one(tly_engine *e, tly_mp_reader *r, eng_held *h)
{
    uint32_t m, klen, clen;
    int64_t type, action;
    uint64_t seq;
    const char *key, *cur;
    RD(tly_mp_read_array(r, &m) && m == 8 && rd_i64(r, &type) && tly_mp_read_uint(r, &seq));
    RD(rd_i64(r, &h->at_ms) && rd_i64(r, &h->amount) && rd_u32(r, &h->next_n));
    RD(rd_bytes(r, &key, &klen, false) && rd_i64(r, &action) && action >= 0);
    RD(action < TLY_ACT_COUNT && rd_bytes(r, &cur, &clen, false) && clen == 3 && klen >= 1);
    h->seq = seq;
    h->type = (uint8_t)type;
    h->action = (uint8_t)action;
    memcpy(h->currency, cur, 3);
    h->key_len = klen;
    if (type == TLY_EV_SALE) {
        h->sale = eng_map_get(&e->sale_map, key, klen, eng_hash(key, klen));
        RD(h->sale != ENG_NONE);
        h->key = NULL;
        return TLY_OK;
    }
    if (type == TLY_EV_CERTIFICATION) {
        eng_name pair;
        TRY(eng_pair_intern(e, key, klen, &pair));
        h->key = pair.ptr;
        return TLY_OK;
    }
    RD(type == TLY_EV_RETURN);
    h->key = eng_arena_copy(&e->arena, key, klen);
    return h->key == NULL ? TLY_NOMEM : TLY_OK;
}

static tly_err load_owned(tly_engine *e, tly_mp_reader *r, eng_partner *pp)
{
    eng_pstate *st = pp->st;
    int64_t kind;
    TRY(rd_name(e, r, &st->name, true));
    RD(rd_i64(r, &kind) && kind >= 0 && kind < TLY_KIND_COUNT);
    st->kind = (tly_partner_kind)kind;
    TRY(rd_name(e, r, &st->region, true));
    RD(rd_u32(r, &st->tier));
    int64_t *totals[8] = {&st->accrued, &st->clawed_back, &st->adjusted, &st->expired,
                          &st->pending, &st->approved,    &st->paid,     &st->deficit};
    for (int i = 0; i < 8; i++)
        RD(rd_i64(r, totals[i]));
    TRY(load_buckets_rows(r, st));
    TRY(load_hist_certs(e, r, st));
    TRY(load_claim_order(e, r, pp));
    uint32_t n;
    RD(tly_mp_read_array(r, &n));
    for (uint32_t i = 0; i < n; i++) {
        eng_held h = {0};
        TRY(load_held_one(e, r, &h));
        TRY(ENG_PUSH(st->held, st->held_count, st->held_cap, h));
    }
    return TLY_OK;
}

static tly_err load_partner(tly_engine *e, tly_mp_reader *r)
{
    uint32_t count, plen, glen;
    const char *pid, *gname;
    bool owned;
    RD(rd_head(r, &count) && (count == 4 || count == 22));
    RD(rd_bytes(r, &pid, &plen, false) && rd_bytes(r, &gname, &glen, true));
    RD(rd_bool(r, &owned));
    uint32_t p;
    TRY(eng_partner_get(e, pid, plen, &p));
    eng_partner *pp = &e->partners[p];
    /* A state written by another shard layout is not this shard's. */
    RD(pp->owned == owned && (count == 22) == owned && pp->program == ENG_NONE);
    if (gname != NULL) {
        pp->program = eng_program_find(e, gname, glen);
        RD(pp->program != ENG_NONE);
    }
    if (!owned)
        return TLY_OK;
    TRY(load_owned(e, r, pp));
    if (pp->program == ENG_NONE)
        return TLY_OK;
    RD(pp->st->tier < e->programs[pp->program].rules.tier_count);
    return eng_program_add_member(&e->programs[pp->program], p);
}

/* "X/" entries restore the in-memory exception list (optional: the query
 * service reads them from the store; tly_engine_exceptions needs them). */
static tly_err load_exception(tly_engine *e, const uint8_t *k, const void *val, size_t vlen)
{
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    RD(doc != NULL);
    eng_exc x = {.partner = ENG_NONE};
    for (int b = 0; b < 8; b++)
        x.seq = (x.seq << 8) | k[b];
    for (int b = 0; b < 4; b++)
        x.n = (x.n << 8) | k[8 + b];
    json_t *kind = json_object_get(doc, "kind"), *partner = json_object_get(doc, "partner");
    json_t *detail = json_object_get(doc, "detail");
    tly_err err = TLY_CORRUPT;
    if (json_is_string(kind) && json_is_string(detail) && partner != NULL) {
        x.kind = tly_xkind_parse(json_string_value(kind), json_string_length(kind));
        x.detail.len = (uint32_t)json_string_length(detail);
        x.detail.ptr = eng_arena_copy(&e->arena, json_string_value(detail), x.detail.len);
        err = x.kind == TLY_X_COUNT ? TLY_CORRUPT : x.detail.ptr == NULL ? TLY_NOMEM : TLY_OK;
    }
    if (err == TLY_OK && json_is_string(partner))
        err =
            eng_partner_get(e, json_string_value(partner), json_string_length(partner), &x.partner);
    json_decref(doc);
    TRY(err);
    TRY(eng_exc_add(e, &x));
    e->exc_flushed = e->exc_count;
    return TLY_OK;
}

tly_err tly_engine_load(tly_engine *e, const void *key, size_t key_len, const void *val,
                        size_t val_len)
{
    const char *k = key;
    if (key_len == 2 + 12 && memcmp(k, "X/", 2) == 0)
        return load_exception(e, (const uint8_t *)k + 2, val, val_len);
    if (key_len < 5 || memcmp(k, "S/", 2) != 0 || k[3] != '/')
        return TLY_CORRUPT;
    tly_mp_reader r;
    tly_mp_init(&r, val, val_len);
    tly_err err;
    switch (k[2]) {
    case '1':
        err = load_program(e, &r);
        break;
    case '2':
        err = load_sale(e, &r);
        break;
    case '3':
        err = load_claim(e, &r);
        break;
    case '4':
        err = load_partner(e, &r);
        break;
    default:
        return TLY_CORRUPT;
    }
    if (err == TLY_OK && tly_mp_remaining(&r) != 0)
        err = TLY_CORRUPT;
    return err;
}
