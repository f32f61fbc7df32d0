/*
 * test_finance_fast.c — the fast way of the `partners` and `expiring`
 * answers (consumers/query/query_finance_fast.c) against the reference
 * (tly_query_answer + tly_query_reply_encode) on generated stores: the
 * same bytes for filters, searches, every page with the page limit at its
 * edge, cursors, ties, one shard and two; and for what the fast way does
 * not read (escapes, odd types, duplicates, corrupt documents, a reply over
 * the frame) it gives up and the reference answers.
 *
 * The partner list's rows are rendered from the partners' records, so
 * their stores are folded by the real engine from generated events
 * (tly_views_commit). The expiring stores are real view stores
 * (tly_views_open on an empty engine) whose report documents
 * ("V/R/<program>") and expiring documents ("E/<u8 length><program><id>")
 * this test writes itself with LMDB, odd ones too.
 */
#include <check.h>
#include <jansson.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_internal.h"
#include "teststream.h"
#include "testutil.h"
#include "tly_engine.h"
#include "tly_limits.h"
#include "tly_query.h"
#include "tly_views.h"

#define PAGE TLY_QUERY_PARTNERS_PAGE_MAX
/* Rows of the generated store: programs "edge" (exactly a page), "over" (a
 * page and one) and "alpha"/"beta" (the rest). */
#define GEN_ROWS (2u * PAGE + 1u + 60u)

/* A data directory with n empty shard stores; dirs[k] is shard k's. */
typedef struct gstore {
    char *data;
    uint32_t n;
    char dirs[2][1200];
    MDB_env *env[2];
    MDB_txn *txn[2];
    MDB_dbi dbi[2];
} gstore;

static void gstore_new(gstore *g, uint32_t n)
{
    *g = (gstore){.data = tu_tmpdir(), .n = n};
    for (uint32_t k = 0; k < n; k++) {
        tly_engine *e = NULL;
        tly_views *v = NULL;
        ck_assert_int_eq(tly_engine_new(k, n, &e), TLY_OK);
        ck_assert_int_eq(tly_views_open(g->data, k, n, TLY_VIEWS_WRITE, &v), TLY_OK);
        ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
        snprintf(g->dirs[k], sizeof g->dirs[k], "%s", tly_views_dir(v));
        tly_views_close(v);
        tly_engine_free(e);
    }
}

/* Opens a write transaction on every shard. */
static void gstore_begin(gstore *g)
{
    for (uint32_t k = 0; k < g->n; k++) {
        ck_assert_int_eq(mdb_env_create(&g->env[k]), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(g->env[k], 8), 0);
        ck_assert_int_eq(mdb_env_set_mapsize(g->env[k], (size_t)256 << 20), 0);
        ck_assert_int_eq(mdb_env_open(g->env[k], g->dirs[k], 0, 0644), 0);
        ck_assert_int_eq(mdb_txn_begin(g->env[k], NULL, 0, &g->txn[k]), 0);
        ck_assert_int_eq(mdb_dbi_open(g->txn[k], "views", 0, &g->dbi[k]), 0);
    }
}

static void gstore_put(gstore *g, uint32_t k, const void *key, size_t klen, const char *val,
                       size_t vlen)
{
    MDB_val kv = {klen, (void *)key}, dv = {vlen, (void *)val};
    ck_assert_int_eq(mdb_put(g->txn[k], g->dbi[k], &kv, &dv, 0), 0);
}

static void gstore_commit(gstore *g)
{
    for (uint32_t k = 0; k < g->n; k++) {
        ck_assert_int_eq(mdb_txn_commit(g->txn[k]), 0);
        mdb_env_close(g->env[k]);
    }
}

static void gstore_free(gstore *g)
{
    tu_rmtree(g->data); /* frees it */
}

static tly_query_store *gstore_query(const gstore *g)
{
    char views[1200];
    snprintf(views, sizeof views, "%s/views", g->data);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, g->n, &store), TLY_OK);
    return store;
}

/* An expiring document under "E/<u8 length><program><id>" of shard k. */
static void put_expiring(gstore *g, uint32_t k, const char *program, const char *id,
                         const char *doc)
{
    char key[600];
    size_t pl = strlen(program), il = strlen(id);
    memcpy(key, "E/", 2);
    key[2] = (char)(unsigned char)pl;
    memcpy(key + 3, program, pl);
    memcpy(key + 3 + pl, id, il);
    gstore_put(g, k, key, 3 + pl + il, doc, strlen(doc));
}

/* A report document of program with its earliest open period. */
static void put_report(gstore *g, uint32_t k, const char *program, const char *open)
{
    char key[300], doc[600];
    int klen = snprintf(key, sizeof key, "V/R/%s", program);
    int dlen = snprintf(doc, sizeof doc,
                        "{\"program\":\"%s\",\"currency\":\"USD\",\"first\":\"2025-Q1\","
                        "\"open\":\"%s\",\"periods\":[]}",
                        program, open);
    gstore_put(g, k, key, (size_t)klen, doc, (size_t)dlen);
}

/* The bytes of req both ways (the request is consumed); true when the fast
 * way gave them. */
static bool same_bytes(tly_query_store *store, json_t *req, const char *what)
{
    uint64_t before = tly_query_store_fast_answers(store);
    msgpack_sbuffer fast, slow;
    msgpack_sbuffer_init(&fast);
    msgpack_sbuffer_init(&slow);
    ck_assert_int_eq(tly_query_answer_encode(store, req, &fast), TLY_OK);
    bool was_fast = tly_query_store_fast_answers(store) > before;
    json_t *reply = NULL;
    ck_assert_int_eq(tly_query_answer(store, req, &reply), TLY_OK);
    tly_query_reply_encode(reply, &slow);
    size_t at = 0;
    while (at < fast.size && at < slow.size && fast.data[at] == slow.data[at])
        at++;
    ck_assert_msg(fast.size == slow.size && at == fast.size,
                  "%s: %zu bytes the fast way, %zu the jansson way, first difference at %zu", what,
                  fast.size, slow.size, at);
    json_decref(reply);
    msgpack_sbuffer_destroy(&fast);
    msgpack_sbuffer_destroy(&slow);
    json_decref(req);
    return was_fast;
}

/* {"q": q} and the members of the JSON object text more (may be NULL). */
static json_t *request(const char *q, const char *more)
{
    json_t *req = more ? json_loads(more, 0, NULL) : json_object();
    ck_assert_ptr_nonnull(req);
    json_object_set_new(req, "q", json_string(q));
    return req;
}

/* Every page of a partners request (more: its other members), each the
 * same bytes both ways and the fast way's, at most 100 pages; the rows
 * and pages seen. */
static void every_page(tly_query_store *store, const char *more, size_t *rows, int *pages)
{
    json_t *base = request("partners", more);
    char *after = NULL;
    *rows = 0;
    for (*pages = 1; *pages < 100; (*pages)++) {
        json_t *req = json_deep_copy(base);
        if (after)
            json_object_set_new(req, "after", json_string(after));
        json_t *page = NULL;
        ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
        ck_assert_ptr_null(json_object_get(page, "error"));
        *rows += json_array_size(json_object_get(page, "partners"));
        char what[400];
        snprintf(what, sizeof what, "partners %s after %s", more ? more : "", after);
        ck_assert_msg(same_bytes(store, req, what), "%s: not the fast way", what);
        json_t *next = json_object_get(page, "next");
        free(after);
        after = next ? strdup(json_string_value(next)) : NULL;
        json_decref(page);
        if (after == NULL)
            break;
    }
    free(after); /* small pages of many rows: the first 100 pages */
    json_decref(base);
}

/* ---- the generated partners: records folded by the engine ---- */

static const char *const KINDS[] = {"var", "msp", "si", "distributor"};

static const char *program_of(uint32_t i)
{
    return i < PAGE ? "edge" : i < 2 * PAGE + 1 ? "over" : i % 2 ? "alpha" : "beta";
}

/* Each program has one tier, its own name ("tier" filters a program's
 * partners or none) and MDF at 100 %, so that a partner's "available" is
 * what it sold. */
static const char *tier_of(const char *program)
{
    return strcmp(program, "edge") == 0   ? "Gold"
           : strcmp(program, "over") == 0 ? "Silver"
                                          : "Registered";
}

/* Sale amounts (and so "available" figures) at MessagePack's integer
 * bounds; 0: no sale. */
static const long long AMOUNTS[] = {0,     1,     127,        128,        255,          256,
                                    65535, 65536, 4294967295, 4294967296, 9999999999999};
#define AMOUNT_COUNT (sizeof AMOUNTS / sizeof AMOUNTS[0])

static void push_program(stream *st, const char *name, int n)
{
    char ev[1024];
    snprintf(ev, sizeof ev,
             "{\"type\":\"program\",\"id\":\"G-%d\",\"at\":1735689600000,\"program\":\"%s\","
             "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\","
             "\"mdf_expiry_periods\":2,\"tier_window_periods\":2,"
             "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
             "\"tiers\":[{\"name\":\"%s\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":10000,"
             "\"rebate_bonus_bps\":0,\"referral_bps\":0,\"benefits\":[]}]}",
             n, name, tier_of(name));
    stream_push_json(st, "finance", ev);
}

/* Partner i: names in mixed case and UTF-8; regions absent or not. */
static void push_partner(stream *st, uint32_t i, const char *name_fmt)
{
    char id[16], name[64], ev[512];
    snprintf(id, sizeof id, "g%05u", i);
    snprintf(name, sizeof name, name_fmt, i);
    snprintf(ev, sizeof ev,
             "{\"type\":\"partner\",\"id\":\"P-%05u\",\"at\":%lld,\"partner\":\"%s\","
             "\"name\":\"%s\",\"program\":\"%s\",\"kind\":\"%s\"%s}",
             i, 1735689700000LL + i, id, name, program_of(i), KINDS[i % 4],
             i % 3 ? "" : ",\"region\":\"EMEA\"");
    stream_push_json(st, "finance", ev);
    long long amount = AMOUNTS[i % AMOUNT_COUNT];
    if (amount == 0)
        return;
    snprintf(ev, sizeof ev,
             "{\"type\":\"sale\",\"id\":\"S-%05u\",\"at\":%lld,\"partner\":\"%s\","
             "\"amount\":%lld,\"currency\":\"USD\",\"sku\":\"SKU-1\",\"qty\":1}",
             i, 1735800000000LL + i, id, amount);
    stream_push_json(st, "dist", ev);
}

/* Folds st into shard k of n of data's stores (one commit). */
static void fold_into(const char *data, const stream *st, uint32_t k, uint32_t n)
{
    tly_engine *e = NULL;
    tly_views *v = NULL;
    ck_assert_int_eq(tly_engine_new(k, n, &e), TLY_OK);
    ck_assert_int_eq(tly_views_open(data, k, n, TLY_VIEWS_WRITE, &v), TLY_OK);
    ck_assert_int_eq(tly_views_load(v, e), TLY_OK);
    for (size_t i = 0; i < st->count; i++) {
        const rec_buf *r = &st->recs[i];
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(r->bytes, r->len, 1893456000000LL, &ev, NULL), TLY_OK);
        tly_record rec = {.seq = i + 1,
                          .recorded_ms = 1893456000000LL,
                          .source = {r->source, (uint32_t)strlen(r->source)},
                          .event = r->bytes,
                          .event_len = r->len};
        ck_assert_int_eq(tly_engine_apply(e, &rec, &ev), TLY_OK);
    }
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    tly_views_close(v);
    tly_engine_free(e);
}

/* A data directory of n shards whose stores hold partners g00000.. of the
 * names in names (cycled; NULL: the generated ones) folded from events. */
static char *partners_store(uint32_t n, uint32_t partners, const char *const *names)
{
    static const char *const gen_names[] = {
        "Acme Corp %u",   "ACME Holdings",
        "caf\xc3\xa9 %u", "\303\234ber acme", /* Über, octal: ends at 3 digits */
        "North-%u",       "x"};
    const char *const *use = names ? names : gen_names;
    size_t count = 0;
    while (count < 6 && use[count])
        count++;
    stream st = {0};
    push_program(&st, "edge", 1);
    push_program(&st, "over", 2);
    push_program(&st, "alpha", 3);
    push_program(&st, "beta", 4);
    for (uint32_t i = 0; i < partners; i++)
        push_partner(&st, i, use[i % count]);
    char *data = tu_tmpdir();
    for (uint32_t k = 0; k < n; k++)
        fold_into(data, &st, k, n);
    stream_free(&st);
    return data;
}

static tly_query_store *data_query(const char *data, uint32_t n)
{
    char views[1200];
    snprintf(views, sizeof views, "%s/views", data);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, n, &store), TLY_OK);
    return store;
}

/* Filters, searches and pages of the generated partners give the
 * reference's bytes the fast way; the page limit at its edge. */
START_TEST(test_generated_partners)
{
    uint32_t n = (uint32_t)_i + 1;
    char *data = partners_store(n, GEN_ROWS, NULL);
    tly_query_store *store = data_query(data, n);
    size_t rows;
    int pages;
    every_page(store, NULL, &rows, &pages);
    ck_assert_uint_eq(rows, GEN_ROWS);
    ck_assert_int_eq(pages, (int)((GEN_ROWS + PAGE - 1) / PAGE));
    every_page(store, "{\"program\":\"edge\"}", &rows, &pages); /* exactly a page */
    ck_assert_uint_eq(rows, PAGE);
    ck_assert_int_eq(pages, 1);
    every_page(store, "{\"program\":\"over\"}", &rows, &pages); /* a page and one */
    ck_assert_uint_eq(rows, PAGE + 1);
    ck_assert_int_eq(pages, 2);
    every_page(store, "{\"tier\":\"Gold\"}", &rows, &pages); /* edge's tier */
    ck_assert_uint_eq(rows, PAGE);
    every_page(store, "{\"kind\":\"msp\",\"program\":\"over\"}", &rows, &pages);
    size_t msp = 0;
    for (uint32_t i = PAGE; i <= 2 * PAGE; i++)
        msp += i % 4 == 1;
    ck_assert_uint_eq(rows, msp);
    /* searches, filtered on the record before the row is rendered: the
     * names of i % 6 = 0, 1 and 3 hold "acme" in some case, the ids
     * g00010..g00019 "G0001" */
    every_page(store, "{\"search\":\"aCmE\"}", &rows, &pages);
    size_t acme = 0;
    for (uint32_t i = 0; i < GEN_ROWS; i++)
        acme += i % 6 == 0 || i % 6 == 1 || i % 6 == 3;
    ck_assert_uint_eq(rows, acme);
    every_page(store, "{\"search\":\"G0001\"}", &rows, &pages);
    ck_assert_uint_eq(rows, 10);
    static const char *const more[] = {
        "{\"program\":\"alpha\"}",
        "{\"tier\":\"Registered\"}",
        "{\"kind\":\"msp\",\"tier\":\"Silver\"}",
        "{\"program\":\"over\",\"kind\":\"var\",\"tier\":\"Gold\"}",
        "{\"search\":\"acme\"}",
        "{\"search\":\"ACME\",\"program\":\"beta\"}",
        "{\"search\":\"G0001\"}",
        "{\"search\":\"caf\xc3\xa9\"}",
        "{\"search\":\"CAF\xc3\xa9\"}",
        "{\"search\":\"\xc3\xbc\"}",
        "{\"search\":\"-8\"}",
        "{\"search\":\"zzz\"}",
        "{\"program\":\"nope\"}",
        "{\"max\":1}",
        "{\"max\":4095,\"program\":\"edge\"}",
        "{\"max\":4096,\"program\":\"over\"}",
        "{\"max\":7,\"search\":\"north\"}",
        "{\"max\":3,\"after\":\"g00005\"}",
        "{\"max\":3,\"after\":\"g0000\"}",
        "{\"after\":\"a\"}",
        "{\"after\":\"h\"}",
        "{\"after\":\"g08192\",\"program\":\"over\"}",
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        every_page(store, more[i], &rows, &pages);
    /* a page of exactly the rows left after the cursor has no "next" */
    char after[64];
    snprintf(after, sizeof after, "{\"after\":\"g%05u\"}", GEN_ROWS - PAGE - 1);
    every_page(store, after, &rows, &pages);
    ck_assert_uint_eq(rows, PAGE);
    ck_assert_int_eq(pages, 1);
    tly_query_store_close(store);
    tu_rmtree(data);
}
END_TEST

/* ---- the generated expiring documents ---- */

/* Expiring documents in shard i % n with ties, zeros and a negative;
 * reports of edge, over, alpha and gamma (none for beta: its rows are
 * skipped), shard 1's edge report with another open period (the first
 * shard's wins). */
static void gen_store(gstore *g, uint32_t n)
{
    gstore_new(g, n);
    gstore_begin(g);
    for (uint32_t i = 0; i < GEN_ROWS; i++) {
        char id[16], doc[128];
        snprintf(id, sizeof id, "g%05u", i);
        long long amount = i % 7 == 0 ? 0 : i % 11 == 0 ? -5 : (long long)(i % 13) * 100;
        snprintf(doc, sizeof doc, "{\"partner\":\"%s\",\"amount\":%lld}", id, amount);
        put_expiring(g, i % n, program_of(i), id, doc);
    }
    for (uint32_t k = 0; k < n; k++) {
        put_report(g, k, "edge", k == 0 ? "2026-Q2" : "2026-Q3");
        put_report(g, k, "over", "2026-05");
        put_report(g, k, "alpha", "2026-Q1");
        put_report(g, k, "gamma", "2027-Q1");
    }
    gstore_commit(g);
}

START_TEST(test_generated_expiring)
{
    gstore g;
    gen_store(&g, (uint32_t)_i + 1);
    tly_query_store *store = gstore_query(&g);
    static const char *const more[] = {NULL, "{\"program\":\"edge\"}", "{\"program\":\"over\"}",
                                       "{\"program\":\"gamma\"}"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        ck_assert_msg(same_bytes(store, request("expiring", more[i]), more[i] ? more[i] : "all"),
                      "%s: not the fast way", more[i]);
    /* a program without a report is unknown: the reference's error */
    ck_assert(!same_bytes(store, request("expiring", "{\"program\":\"beta\"}"), "beta"));
    json_t *a = NULL, *req = request("expiring", NULL);
    ck_assert_int_eq(tly_query_answer(store, req, &a), TLY_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(a, "programs")), 4);
    json_decref(a);
    json_decref(req);
    tly_query_store_close(store);
    gstore_free(&g);
}
END_TEST

/* ---- documents the engine never writes ---- */

/* One odd entry beside three plain expiring documents. */
typedef struct odd {
    const char *what;
    char kind;        /* 'E' an expiring document, 'R' a report */
    const char *name; /* program (R), program:id (E) */
    const char *doc;
    bool fast; /* whether the fast way still answers everything asked */
} odd;

static const odd ODDS[] = {
    {"no amount", 'E', "alpha:zz", "{\"partner\":\"zz\"}", 1},
    {"an amount that is a string", 'E', "alpha:zz", "{\"partner\":\"zz\",\"amount\":\"5\"}", 1},
    {"an amount that is a real", 'E', "alpha:zz", "{\"partner\":\"zz\",\"amount\":1.5}", 0},
    {"an amount without partner", 'E', "alpha:zz", "{\"amount\":5}", 0},
    {"a partner that is a number", 'E', "alpha:zz", "{\"partner\":7,\"amount\":5}", 0},
    {"an amount of a program without report", 'E', "delta:zz", "{\"partner\":\"zz\",\"amount\":5}",
     1},
    {"an expiring document that is not JSON", 'E', "alpha:zz", "{\"partner\"", 0},
    {"an escape", 'E', "alpha:z\"z", "{\"partner\":\"z\\\"z\",\"amount\":5}", 0},
    {"whitespace", 'E', "alpha:zz", "{\"partner\": \"zz\",\"amount\":5}", 0},
    {"19 digits", 'E', "alpha:zz", "{\"partner\":\"zz\",\"amount\":1234567890123456789}", 0},
    {"a report without open period", 'R', "delta", "{\"program\":\"delta\"}", 0},
    {"a report that is not JSON", 'R', "delta", "{{", 0},
    {"a program that is not UTF-8", 'R', "d\xff", "{\"open\":\"2026-Q1\"}", 0},
};

static void put_odd(gstore *g, const odd *o)
{
    if (o->kind == 'R') {
        char key[300];
        int klen = snprintf(key, sizeof key, "V/R/%s", o->name);
        gstore_put(g, 0, key, (size_t)klen, o->doc, strlen(o->doc));
    } else {
        char program[64];
        snprintf(program, sizeof program, "%s", o->name);
        char *colon = strchr(program, ':');
        *colon = '\0';
        put_expiring(g, 0, program, colon + 1, o->doc);
    }
}

/* The plain part of an odd store: three documents of alpha and its report. */
static void put_plain(gstore *g)
{
    for (uint32_t i = 0; i < 3; i++) {
        char id[16], doc[128];
        snprintf(id, sizeof id, "g%05u", i * 2 + 1);
        snprintf(doc, sizeof doc, "{\"partner\":\"%s\",\"amount\":%u}", id, 100 + i);
        put_expiring(g, 0, "alpha", id, doc);
    }
    put_report(g, 0, "alpha", "2026-Q2");
}

START_TEST(test_odd_rows)
{
    const odd *o = &ODDS[_i];
    gstore g;
    gstore_new(&g, 1);
    gstore_begin(&g);
    put_plain(&g);
    put_odd(&g, o);
    gstore_commit(&g);
    tly_query_store *store = gstore_query(&g);
    bool fast = same_bytes(store, request("expiring", NULL), o->what);
    ck_assert_msg(fast == o->fast, "%s: the fast way %s", o->what, fast ? "answered" : "gave up");
    static const char *const more[] = {"{\"program\":\"alpha\"}", "{\"program\":\"delta\"}"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        same_bytes(store, request("expiring", more[i]), more[i]);
    tly_query_store_close(store);
    gstore_free(&g);
}
END_TEST

/* A partner whose name the engine writes with an escape: a page that
 * holds its row (or whose scan reads it: a page and one more) is the
 * reference's (the fast way gives up), a page before it the fast way's. */
START_TEST(test_escaped_name)
{
    static const char *const names[] = {"plain %u", "plain", "x %u", "a \\\"quoted\\\" name", NULL};
    char *data = partners_store(1, 6, names);
    tly_query_store *store = data_query(data, 1);
    ck_assert(!same_bytes(store, request("partners", NULL), "with g00003"));
    ck_assert(same_bytes(store, request("partners", "{\"max\":1}"), "before it"));
    ck_assert(!same_bytes(store, request("partners", "{\"search\":\"quoted\"}"), "it alone"));
    ck_assert(same_bytes(store, request("partners", "{\"after\":\"g00003\"}"), "after it"));
    json_t *page = NULL, *req = request("partners", "{\"search\":\"quoted\"}");
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    json_t *rows = json_object_get(page, "partners");
    ck_assert_uint_eq(json_array_size(rows), 1); /* g00003 */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "name")),
                     "a \"quoted\" name");
    json_decref(page);
    json_decref(req);
    tly_query_store_close(store);
    tu_rmtree(data);
}
END_TEST

/* A row with every MessagePack form the fast way writes at its bounds:
 * integers, strings (fix, 8, 16 and 32-bit lengths), maps and arrays of
 * 15 and 16; packed straight from what the fast way read
 * (tly__qfast_put), it must be the bytes the reference packs the parsed
 * row into (tly_query_reply_encode). */
START_TEST(test_row_encodings)
{
    static const char *const ints[] = {"0",
                                       "-1",
                                       "-32",
                                       "-33",
                                       "-128",
                                       "-129",
                                       "-32768",
                                       "-32769",
                                       "-2147483648",
                                       "-2147483649",
                                       "127",
                                       "128",
                                       "255",
                                       "256",
                                       "65535",
                                       "65536",
                                       "4294967295",
                                       "4294967296",
                                       "999999999999999999",
                                       "-999999999999999999"};
    static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    size_t cap = 200000;
    char *row = malloc(cap), *p = row;
    p += sprintf(p, "{\"partner\":\"zz\",\"ints\":[");
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        p += sprintf(p, "%s%s", i ? "," : "", ints[i]);
    p += sprintf(p, "],\"strs\":[");
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        p += sprintf(p, "%s\"", i ? "," : "");
        memset(p, 's', lens[i]);
        p += lens[i];
        *p++ = '"';
    }
    for (int n = 15; n <= 16; n++) {
        p += sprintf(p, "],\"map%d\":{", n);
        for (int i = 0; i < n; i++)
            p += sprintf(p, "%s\"k%d\":%s", i ? "," : "", i, i % 2 ? "true" : "null");
        p += sprintf(p, "},\"arr%d\":[", n);
        for (int i = 0; i < n; i++)
            p += sprintf(p, "%s%s", i ? "," : "", i % 2 ? "false" : "{}");
    }
    sprintf(p, "]}");
    tly__qfast f;
    ck_assert(tly__qfast_init(&f));
    uint32_t top = tly__qfast_read(&f, row, strlen(row));
    ck_assert_uint_ne(top, 0);
    msgpack_sbuffer fast, slow;
    msgpack_sbuffer_init(&fast);
    msgpack_sbuffer_init(&slow);
    ck_assert(tly__qfast_put(&f, top, &fast));
    json_t *parsed = json_loads(row, 0, NULL);
    ck_assert_ptr_nonnull(parsed);
    tly_query_reply_encode(parsed, &slow);
    ck_assert_uint_eq(fast.size, slow.size);
    ck_assert(memcmp(fast.data, slow.data, fast.size) == 0);
    json_decref(parsed);
    msgpack_sbuffer_destroy(&fast);
    msgpack_sbuffer_destroy(&slow);
    tly__qfast_free(&f);
    free(row);
}
END_TEST

/* One partner's record in two shards (the owner's copied over the other
 * shard's record of it, which no fold writes): that shard's reader refuses
 * it, so a list that reaches it is `corrupt` both ways (the fast way gives
 * up), and a list after it is the fast way's. */
START_TEST(test_foreign_copy)
{
    char *data = partners_store(2, 12, NULL);
    tly_query_store *store = data_query(data, 2);
    json_t *page = NULL, *req = request("partners", NULL);
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    json_decref(req);
    tly_query_store_close(store);
    /* the fourth partner of the list, and which shard holds it */
    const char *fourth = json_string_value(
        json_object_get(json_array_get(json_object_get(page, "partners"), 3), "partner"));
    ck_assert_ptr_nonnull(fourth);
    char key[64], id[32];
    snprintf(id, sizeof id, "%s", fourth);
    int klen = snprintf(key, sizeof key, "%s%s", TLY_ENGINE_PARTNER_PREFIX, id);
    gstore g = {.data = data, .n = 2};
    for (uint32_t k = 0; k < 2; k++) {
        char dir[1200];
        ck_assert_int_eq(tly_views_path(data, k, 2, dir, sizeof dir), TLY_OK);
        snprintf(g.dirs[k], sizeof g.dirs[k], "%s", dir);
    }
    gstore_begin(&g);
    /* every shard has a record of every partner; the owner's is a member's */
    MDB_val kv = {(size_t)klen, key}, val;
    bool member = false;
    uint32_t from = 0;
    for (; from < 2 && !member; from++) {
        ck_assert_int_eq(mdb_get(g.txn[from], g.dbi[from], &kv, &val), 0);
        ck_assert_int_eq(tly_engine_partner_member(val.mv_data, val.mv_size, &member), TLY_OK);
    }
    ck_assert(member);
    from--;
    char copy[1024];
    ck_assert_uint_le(val.mv_size, sizeof copy);
    memcpy(copy, val.mv_data, val.mv_size);
    gstore_put(&g, 1 - from, key, (size_t)klen, copy, val.mv_size);
    gstore_commit(&g);
    json_decref(page);
    store = data_query(data, 2);
    ck_assert(!same_bytes(store, request("partners", NULL), "the copy"));
    json_t *err = NULL;
    req = request("partners", NULL);
    ck_assert_int_eq(tly_query_answer(store, req, &err), TLY_OK);
    ck_assert_str_eq(json_string_value(json_object_get(err, "error")), "corrupt");
    json_decref(err);
    json_decref(req);
    char after[96];
    snprintf(after, sizeof after, "{\"after\":\"%s\"}", id);
    ck_assert(same_bytes(store, request("partners", after), "after it"));
    tly_query_store_close(store);
    tu_rmtree(data);
}
END_TEST

/* A reply at TLY_FRAME_BYTES_MAX the fast way gives; a byte over, the
 * reference's too_large error. The period of the report document is the
 * knob: a str8 of 40 bytes at first, longer by what the frame has left. */
START_TEST(test_expiring_frame_edge)
{
    gstore g;
    gstore_new(&g, 1);
    gstore_begin(&g);
    char id[80], doc[160];
    /* a row is 83 bytes with a 64-byte id; the rest of the reply ~110 */
    uint32_t rows = (TLY_FRAME_BYTES_MAX - 150u) / 83u;
    for (uint32_t i = 0; i < rows; i++) {
        snprintf(id, sizeof id, "%064u", i);
        snprintf(doc, sizeof doc, "{\"partner\":\"%s\",\"amount\":%u}", id, 1 + i % 100);
        put_expiring(&g, 0, "alpha", id, doc);
    }
    char open[300];
    memset(open, 'q', 40);
    open[40] = '\0';
    put_report(&g, 0, "alpha", open);
    gstore_commit(&g);
    tly_query_store *store = gstore_query(&g);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    json_t *req = request("expiring", NULL);
    ck_assert_int_eq(tly_query_answer_encode(store, req, &out), TLY_OK);
    json_decref(req);
    size_t room = TLY_FRAME_BYTES_MAX - out.size;
    ck_assert_uint_lt(room, 200); /* the answer, not an error: the period stays a str8 */
    msgpack_sbuffer_destroy(&out);
    for (size_t extra = 0; extra <= 1; extra++) {
        memset(open, 'q', 40 + room + extra);
        open[40 + room + extra] = '\0';
        gstore_begin(&g);
        put_report(&g, 0, "alpha", open);
        gstore_commit(&g);
        ck_assert_msg(same_bytes(store, request("expiring", NULL), "frame") == (extra == 0),
                      "%zu over the frame", extra);
    }
    tly_query_store_close(store);
    gstore_free(&g);
}
END_TEST

static Suite *fast_suite(void)
{
    Suite *s = suite_create("finance_fast");
    TCase *tc = tu_tcase(s, "fast", 600);
    tcase_add_loop_test(tc, test_generated_partners, 0, 2);
    tcase_add_loop_test(tc, test_generated_expiring, 0, 2);
    tcase_add_loop_test(tc, test_odd_rows, 0, (int)(sizeof ODDS / sizeof ODDS[0]));
    tcase_add_test(tc, test_escaped_name);
    tcase_add_test(tc, test_row_encodings);
    tcase_add_test(tc, test_foreign_copy);
    tcase_add_test(tc, test_expiring_frame_edge);
    return s;
}

int main(void)
{
    return tu_run_suite(fast_suite());
}
