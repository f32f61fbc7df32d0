/*
 * query_finance_fast.c — the fast way to the two list answers of SPEC
 * section 11 that read a row per partner: `partners` and `expiring`. Each
 * row (stored, or rendered from the partner's record) is read by the fast
 * path's reader (query_fast.c: no
 * allocation, no jansson tree), filtered on what it read and, when kept,
 * packed straight into the reply's MessagePack. The reply must be the
 * bytes query_finance.c's answer gives through tly_query_reply_encode (the
 * reference, kept as it was); whatever this way does not read exactly as
 * that one would (a row outside the reader's subset, a missing or odd
 * field, two rows of one id, an error answer, a reply over the frame) makes
 * it give up with out empty, and the jansson way answers.
 */
#include <stdlib.h>
#include <string.h>

#include "query_internal.h"
#include "tly_engine.h"
#include "tly_event.h"
#include "tly_limits.h"
#include "tly_mpw.h"

/* ---- helpers ---- */

/* The error that stops a scan when this way gives up (never answered). */
#define GIVE_UP TLY_CORRUPT

/* strcmp of two strings without NUL given by length. */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : al < bl ? -1 : al > bl;
}

static bool bytes_is(const char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive substring [PA1], as query_finance.c's
 * contains_ci over a string without NUL; the needle is in lower case. */
static bool contains_lower(const char *hay, size_t hlen, const char *needle, size_t n)
{
    if (n == 0)
        return true;
    for (size_t h = 0; h + n <= hlen; h++) {
        if (lower((unsigned char)hay[h]) != (unsigned char)needle[0])
            continue;
        size_t i = 1;
        while (i < n && lower((unsigned char)hay[h + i]) == (unsigned char)needle[i])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

void tly__pfilter_init(tly__pfilter *f, const char *program, const char *tier, const char *kind,
                       const char *search)
{
    *f = (tly__pfilter){.program = program, .tier = tier, .kind = kind};
    if (search == NULL)
        return;
    f->search_len = strlen(search); /* ≤ TLY_NAME_BYTES_MAX: tly__qopt_str */
    for (size_t i = 0; i < f->search_len; i++)
        f->lowered[i] = (char)lower((unsigned char)search[i]);
    f->search = f->lowered;
}

static bool str_is(tly_str s, const char *want)
{
    return want == NULL || bytes_is(s.ptr, s.len, want);
}

bool tly__pfilter_keeps(void *ctx, const tly_view_row_head *h)
{
    const tly__pfilter *f = ctx;
    return f == NULL ||
           (str_is(h->program, f->program) && str_is(h->tier, f->tier) &&
            str_is(h->kind, f->kind) &&
            (f->search == NULL ||
             contains_lower(h->partner.ptr, h->partner.len, f->search, f->search_len) ||
             contains_lower(h->name.ptr, h->name.len, f->search, f->search_len)));
}

static void put_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void put_lit(msgpack_packer *pk, const char *s)
{
    put_str(pk, s, strlen(s));
}

/* The reply's map header and its "seq" (and "shards_differ"), as
 * tly__qreply starts it, with `more` members to follow. */
static void put_head(msgpack_packer *pk, const tly__qsnaps *ss, uint32_t more)
{
    uint64_t seq;
    bool differ;
    tly__qsnaps_seq(ss, &seq, &differ);
    msgpack_pack_map(pk, 1 + differ + more);
    put_lit(pk, "seq");
    msgpack_pack_int64(pk, (int64_t)seq);
    if (differ) {
        put_lit(pk, "shards_differ");
        msgpack_pack_true(pk);
    }
}

/* Room for one more element of size sz in *v (count used of *cap). */
static bool grow(void **v, size_t *cap, size_t count, size_t sz)
{
    if (count < *cap)
        return true;
    size_t n = *cap ? *cap * 2 : 1024;
    void *p = realloc(*v, n * sz);
    if (p == NULL)
        return false;
    *v = p;
    *cap = n;
    return true;
}

/* ---- partners ---- */

/* A kept row: its id (its record's key, inside the store's map, valid
 * while the snapshot is) and its packed bytes in the rows buffer. */
typedef struct prow {
    const char *id;
    size_t id_len;
    size_t off, len;
} prow;

typedef struct pfast {
    tly__qfast *f;
    tly__pfilter pf;
    msgpack_sbuffer buf; /* the kept rows, packed */
    prow *rows;
    size_t count, cap;
    uint32_t kept; /* rows kept from the shard being scanned */
} pfast;

/* As query_finance.c's str_is: member k is a string equal to want. */
static bool member_is(const tly__qfast *f, uint32_t row, const char *k, const char *want)
{
    const char *s;
    size_t len;
    return want == NULL ||
           (tly__qfast_str(f, tly__qfast_member(f, row, k), &s, &len) && bytes_is(s, len, want));
}

static bool row_matches(const pfast *x, uint32_t row)
{
    const tly__qfast *f = x->f;
    const tly__pfilter *pf = &x->pf;
    if (!member_is(f, row, "program", pf->program) || !member_is(f, row, "tier", pf->tier) ||
        !member_is(f, row, "kind", pf->kind))
        return false;
    if (pf->search == NULL)
        return true;
    const char *s;
    size_t len;
    return (tly__qfast_str(f, tly__qfast_member(f, row, "partner"), &s, &len) &&
            contains_lower(s, len, pf->search, pf->search_len)) ||
           (tly__qfast_str(f, tly__qfast_member(f, row, "name"), &s, &len) &&
            contains_lower(s, len, pf->search, pf->search_len));
}

/* A row rendered from the partner record under key: its id is the key's
 * (the row, the reader's, goes with the next one rendered). */
static tly_err partner_row(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    pfast *x = ctx;
    uint32_t row = tly__qfast_read(x->f, val, vlen);
    if (row == 0)
        return GIVE_UP;
    if (!row_matches(x, row))
        return TLY_OK;
    const char *id;
    size_t id_len, plen = strlen(TLY_ENGINE_PARTNER_PREFIX);
    prow r = {.id = (const char *)key + plen, .id_len = klen - plen, .off = x->buf.size};
    if (!tly__qfast_str(x->f, tly__qfast_member(x->f, row, "partner"), &id, &id_len) ||
        bytes_cmp(id, id_len, r.id, r.id_len) != 0 ||
        !grow((void **)&x->rows, &x->cap, x->count, sizeof *x->rows))
        return GIVE_UP; /* a row without its key's id: the jansson way sorts it */
    if (!tly__qfast_put(x->f, row, &x->buf))
        return GIVE_UP;
    r.len = x->buf.size - r.off;
    x->rows[x->count++] = r;
    x->kept++;
    return x->buf.size <= TLY_FRAME_BYTES_MAX ? TLY_OK : GIVE_UP;
}

static int prow_cmp(const void *a, const void *b)
{
    const prow *x = a, *y = b;
    return bytes_cmp(x->id, x->id_len, y->id, y->id_len);
}

static bool in_order(const prow *rows, size_t count)
{
    for (size_t i = 1; i < count; i++)
        if (prow_cmp(&rows[i - 1], &rows[i]) > 0)
            return false;
    return true;
}

/* The request's filters; false when one is bad (the jansson way says so). */
static bool partner_filters(pfast *x, const json_t *req)
{
    json_t *bad = NULL;
    const char *program = tly__qopt_str(req, "program", &bad);
    const char *tier = tly__qopt_str(req, "tier", &bad);
    const char *kind = tly__qopt_str(req, "kind", &bad);
    const char *search = tly__qopt_str(req, "search", &bad);
    if (bad) {
        json_decref(bad);
        return false;
    }
    tly__pfilter_init(&x->pf, program, tier, kind, search);
    return true;
}

/* The reply: the first max rows (sorted), "next" when more follow. */
static bool partners_put(const pfast *x, const tly__qsnaps *ss, uint32_t max, msgpack_sbuffer *out)
{
    /* No id twice: a shard renders the rows of its own partners only
     * (tly__qscan_partners), and the shards own disjoint sets. */
    size_t n = x->count < max ? x->count : max, need = 32;
    bool next = x->count > max;
    for (size_t i = 0; i < n; i++)
        need += x->rows[i].len;
    if (!tly_mpw_room(out, need + (next ? x->rows[max - 1].id_len : 0)))
        return false;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    put_head(&pk, ss, 1 + next);
    put_lit(&pk, "partners");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_sbuffer_write(out, x->buf.data + x->rows[i].off, x->rows[i].len);
    if (next) {
        put_lit(&pk, "next");
        put_str(&pk, x->rows[max - 1].id, x->rows[max - 1].id_len);
    }
    return out->size <= TLY_FRAME_BYTES_MAX;
}

bool tly__qfast_partners(tly__qfast *f, const tly__qsnaps *ss, const json_t *req,
                         msgpack_sbuffer *out)
{
    pfast x = {.f = f};
    json_t *bad = NULL;
    const char *after = tly__qopt_str(req, "after", &bad);
    uint32_t max = tly__qpage_max(req, &bad);
    if (bad) {
        json_decref(bad);
        return false;
    }
    if (!partner_filters(&x, req))
        return false;
    msgpack_sbuffer_init(&x.buf);
    /* as the jansson way: up to a page and one more from each shard */
    tly_err err = tly__qscan_partners(ss, &x.pf, after, &x.kept, max + 1, partner_row, &x);
    if (err == TLY_OK && !in_order(x.rows, x.count)) /* one shard's rows are in order */
        qsort(x.rows, x.count, sizeof *x.rows, prow_cmp);
    bool ok = err == TLY_OK && partners_put(&x, ss, max, out);
    msgpack_sbuffer_destroy(&x.buf);
    free(x.rows);
    if (!ok)
        out->size = 0;
    return ok;
}

/* ---- expiring ---- */

/* A program of the answer, from its report document "V/R/<name>". */
typedef struct xprog {
    const char *name; /* inside the store's map */
    size_t name_len;
    json_t *open; /* the document's "open" (a string) */
    int64_t total;
} xprog;

/* A partner's amount to expire, of program prog (an index of progs, which
 * are in name order by then). */
typedef struct xrow {
    const char *id;
    size_t id_len;
    int64_t amount;
    size_t prog;
} xrow;

typedef struct xfast {
    tly__qfast *f;
    const char *only; /* --program, or NULL */
    xprog *progs;
    size_t prog_count, prog_cap;
    xrow *rows;
    size_t count, cap;
    size_t last; /* the program of the last row, a guess for the next */
} xfast;

/* The program named name[0..len), or prog_count. */
static size_t prog_find(const xfast *x, const char *name, size_t len)
{
    if (x->last < x->prog_count && x->progs[x->last].name_len == len &&
        memcmp(x->progs[x->last].name, name, len) == 0)
        return x->last;
    for (size_t i = 0; i < x->prog_count; i++)
        if (x->progs[i].name_len == len && memcmp(x->progs[i].name, name, len) == 0)
            return i;
    return x->prog_count;
}

/* As query_finance.c's expiring_program: the first shard's document of
 * each program (or of --program only) gives its period. */
static tly_err expiring_program(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen)
{
    xfast *x = ctx;
    const char *name = (const char *)key + 4;
    size_t len = klen - 4;
    if (len > TLY_NAME_BYTES_MAX || memchr(name, '\0', len) || !tly_utf8_valid(name, len))
        return GIVE_UP;
    if ((x->only && !bytes_is(name, len, x->only)) || prog_find(x, name, len) < x->prog_count)
        return TLY_OK;
    json_t *doc = json_loadb(val, vlen, 0, NULL); /* one per program: jansson's reading */
    json_t *open = json_object_get(doc, "open");
    if (!json_is_string(open) ||
        !grow((void **)&x->progs, &x->prog_cap, x->prog_count, sizeof *x->progs)) {
        json_decref(doc);
        return GIVE_UP;
    }
    x->progs[x->prog_count++] = (xprog){.name = name, .name_len = len, .open = json_incref(open)};
    json_decref(doc);
    return TLY_OK;
}

/* As query_finance.c's expiring_partner: a nonzero amount under
 * "E/<program key><partner>" of a listed program. */
static tly_err expiring_row(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    xfast *x = ctx;
    const char *k = key;
    size_t plen = klen >= 3 ? (unsigned char)k[2] : 0;
    if (klen < 3 + plen || memchr(k + 3, '\0', plen))
        return GIVE_UP;
    size_t g = prog_find(x, k + 3, plen);
    if (g == x->prog_count) /* filtered out, or a program without a report yet */
        return TLY_OK;
    x->last = g;
    uint32_t doc = tly__qfast_read(x->f, val, vlen);
    if (doc == 0)
        return GIVE_UP;
    int64_t amount = tly__qfast_int(x->f, tly__qfast_member(x->f, doc, "amount"));
    if (amount == 0)
        return TLY_OK;
    xrow r = {.amount = amount, .prog = g};
    if (__builtin_add_overflow(x->progs[g].total, amount, &x->progs[g].total) ||
        !tly__qfast_str(x->f, tly__qfast_member(x->f, doc, "partner"), &r.id, &r.id_len) ||
        !grow((void **)&x->rows, &x->cap, x->count, sizeof *x->rows))
        return GIVE_UP;
    x->rows[x->count++] = r;
    return TLY_OK;
}

static int xprog_cmp(const void *a, const void *b)
{
    const xprog *x = a, *y = b;
    return bytes_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* Program (in name order), then largest first, ties by partner id [EX1]. */
static int xrow_cmp(const void *a, const void *b)
{
    const xrow *x = a, *y = b;
    if (x->prog != y->prog)
        return x->prog < y->prog ? -1 : 1;
    if (x->amount != y->amount)
        return x->amount > y->amount ? -1 : 1;
    return bytes_cmp(x->id, x->id_len, y->id, y->id_len);
}

/* One program's entry: {"program","period","total","partners"}; rows
 * [*at..) of it (sorted) are its partners. */
static void expiring_put_program(const xfast *x, size_t g, size_t *at, msgpack_packer *pk)
{
    size_t end = *at;
    while (end < x->count && x->rows[end].prog == g)
        end++;
    msgpack_pack_map(pk, 4);
    put_lit(pk, "program");
    put_str(pk, x->progs[g].name, x->progs[g].name_len);
    put_lit(pk, "period");
    put_str(pk, json_string_value(x->progs[g].open), json_string_length(x->progs[g].open));
    put_lit(pk, "total");
    msgpack_pack_int64(pk, x->progs[g].total);
    put_lit(pk, "partners");
    msgpack_pack_array(pk, end - *at);
    for (; *at < end; (*at)++) {
        msgpack_pack_map(pk, 2);
        put_lit(pk, "partner");
        put_str(pk, x->rows[*at].id, x->rows[*at].id_len);
        put_lit(pk, "amount");
        msgpack_pack_int64(pk, x->rows[*at].amount);
    }
}

static bool expiring_put(xfast *x, const tly__qsnaps *ss, msgpack_sbuffer *out)
{
    if (x->count > 1)
        qsort(x->rows, x->count, sizeof *x->rows, xrow_cmp);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    put_head(&pk, ss, 1);
    put_lit(&pk, "programs");
    msgpack_pack_array(&pk, x->prog_count);
    size_t at = 0;
    for (size_t g = 0; g < x->prog_count; g++)
        expiring_put_program(x, g, &at, &pk);
    return out->size <= TLY_FRAME_BYTES_MAX;
}

bool tly__qfast_expiring(tly__qfast *f, const tly__qsnaps *ss, const json_t *req,
                         msgpack_sbuffer *out)
{
    json_t *bad = NULL;
    xfast x = {.f = f, .only = tly__qopt_str(req, "program", &bad)};
    if (bad) {
        json_decref(bad);
        return false;
    }
    tly_err err = tly__qscan(ss, "V/R/", 4, expiring_program, &x);
    if (err == TLY_OK && x.only && x.prog_count == 0)
        err = GIVE_UP;                     /* unknown program: the jansson way's error */
    if (err == TLY_OK && x.prog_count > 1) /* in name order: an index is a rank */
        qsort(x.progs, x.prog_count, sizeof *x.progs, xprog_cmp);
    if (err == TLY_OK)
        err = tly__qscan(ss, "E/", 2, expiring_row, &x);
    bool ok = err == TLY_OK && expiring_put(&x, ss, out);
    for (size_t i = 0; i < x.prog_count; i++)
        json_decref(x.progs[i].open);
    free(x.progs);
    free(x.rows);
    if (!ok)
        out->size = 0;
    return ok;
}
