/*
 * fuzz_state.c — libFuzzer target: a partner's four documents and its
 * row of the partner list rendered from a view store's state
 * (tly_view_reader_bind, tly_view_reader_doc, tly_view_reader_canonical
 * and tly_view_reader_row, consumers/engine/engine_reader.c), what the
 * query service runs on every partner query and partner list and
 * `tally audit digest` on every partner: the unpacking of the stored program ("S/1/"), partner
 * ("S/4/"), claim ("S/3/"), tier history ("S/6/") and archive chunk
 * ("S/7/") records and the rendering of views 'b', 'r', 't', 'c' and 'P' from
 * whatever they hold. A corrupt or hostile store must give
 * an error code, never a crash, hang or leak.
 *
 * The store: LLVMFuzzerInitialize folds a fixed stream of events (two
 * programs, a quarterly one and a monthly growth one; enrolled partners
 * with sales, a return, certifications, claims in every state, closes, a
 * payout, adjustments, a referral; an unenrolled partner with held events;
 * an enrolled one with nothing) through a tly_engine for shard 0 of 1 and
 * keeps what tly_engine_flush writes in a small sorted key/value array
 * (both in fuzz_store.h, shared with fuzz_engine_load).
 * Each input then changes one record of a copy of it (the others stay
 * valid) and a fresh reader bound to it with the engine's checkpoint
 * renders every view of every partner.
 *
 * Input: byte 0 selects, the rest is the payload. The low six bits pick
 * one of the stored program, claim and partner records in key order
 * (modulo their count); the top two bits say what to do with it:
 *   00, 11  replace its value with the payload
 *   01      delete it (the payload is not read)
 *   10      add a record under the same prefix ("S/1/", "S/3/", "S/4/",
 *           "S/6/" or "S/7/"):
 *           the payload's bytes up to its first NUL are the rest of the key,
 *           the bytes after it the value (an existing key is replaced)
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - the bind returns TLY_OK, TLY_CORRUPT or TLY_NOMEM; after a failed bind
 *   every document is TLY_USAGE;
 * - every document is TLY_OK, TLY_NOT_FOUND, TLY_CORRUPT or TLY_NOMEM, and
 *   a TLY_OK one is NUL-terminated at doc[len] and is one JSON object
 *   (json_loadb);
 * - the query service's reply to each partner view (tly_view_reader_reply)
 *   is that document with its "seq", as tly_query_pack packs it, and an error
 *   where the document is one;
 * - the canonical text of each document (tly_view_reader_canonical, what
 *   `tally audit digest` hashes) is json_dumps(JSON_COMPACT |
 *   JSON_SORT_KEYS) of the document read back with json_loadb, "seq"
 *   deleted, as the audit computed it before; the document's error where
 *   the document is one.
 * Documents are asked for every key under "S/4/" (as tly_views_docs walks
 * them) and for the partners of the stream by id (as a query names one).
 *
 * Seeds: with FUZZ_STATE_SEEDS=DIR in the environment the target writes
 * its seed corpus into DIR instead of fuzzing (each stored record under its
 * selector, two deletions, two additions) and exits; the output is
 * committed in fuzz/corpus/fuzz_state/. Regenerate it (run by hand) when
 * the engine's record format changes:
 *   FUZZ_STATE_SEEDS=fuzz/corpus/fuzz_state BUILD/fuzz/fuzz_state
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "fuzz_store.h"
#include "tly_engine.h"
#include "tly_query.h"

/* The partners of the stream, asked for by id on every input. */
static const char *const partner_ids[] = {"p1", "p2", "p3", "p4"};

/* ---- the base store, folded once ---- */

static kv base;             /* what the flush wrote */
static uint64_t checkpoint; /* the engine's seq after the fold */
static size_t targets[64];  /* indexes in base of the S/1/, S/3/, S/4/, S/6/, S/7/ records */
static size_t target_count;
static kv work; /* per input: base with one record changed */

static bool is_target(const kv_entry *x)
{
    return x->klen > PREFIX_BYTES &&
           (memcmp(x->key, "S/1/", 4) == 0 || memcmp(x->key, "S/3/", 4) == 0 ||
            memcmp(x->key, "S/4/", 4) == 0 || memcmp(x->key, "S/6/", 4) == 0 ||
            memcmp(x->key, "S/7/", 4) == 0);
}

/* ---- seeds (FUZZ_STATE_SEEDS=DIR) ---- */

static void write_seeds(const char *dir)
{
    /* each record as it is; apex and the first claim deleted */
    static const char *const gone[] = {"S/1/apex", "S/3/"};
    write_record_seeds(dir, &base, targets, target_count, gone, sizeof gone / sizeof gone[0]);
    /* p1's record under another partner's key; apex's renamed "zeta" (its
     * name is the record's first str) under the key of zeta */
    size_t apex = target_of(&base, targets, target_count, "S/1/apex");
    size_t p1 = target_of(&base, targets, target_count, "S/4/p1");
    const kv_entry *x = &base.e[targets[p1]];
    write_seed(dir, "add-partner-p9", (uint8_t)(0x80 | p1), "p9", 3, x->val, x->vlen);
    x = &base.e[targets[apex]];
    uint8_t *zeta = dup_bytes(x->val, x->vlen);
    static const uint8_t apex_name[5] = {0xa4, 'a', 'p', 'e', 'x'}; /* fixstr 4 */
    size_t at = 0;
    while (at + 5 <= x->vlen && memcmp(zeta + at, apex_name, 5) != 0)
        at++;
    if (at + 5 > x->vlen)
        abort();
    memcpy(zeta + at + 1, "zeta", 4);
    write_seed(dir, "add-program-zeta", (uint8_t)(0x80 | apex), "zeta", 5, zeta, x->vlen);
    free(zeta);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    checkpoint = fold_stream("fuzz_state", &base);
    target_count = pick_targets(&base, is_target, targets, sizeof targets / sizeof targets[0]);
    const char *dir = getenv("FUZZ_STATE_SEEDS");
    if (dir != NULL) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

/* ---- one input ---- */

/* Checks what one document call gave. */
static void check_doc(tly_err err, const char *doc, size_t len)
{
    if (err == TLY_NOT_FOUND || err == TLY_CORRUPT || err == TLY_NOMEM)
        return;
    if (err != TLY_OK || doc == NULL || doc[len] != '\0')
        abort();
    json_error_t je;
    json_t *j = json_loadb(doc, len, 0, &je);
    if (!json_is_object(j)) {
        fprintf(stderr, "fuzz_state: not a JSON object (%s): %.*s\n", je.text, (int)len, doc);
        abort();
    }
    json_decref(j);
}

/* The reply to view of partner (tly_view_reader_reply) is the document doc
 * (TLY_OK from tly_view_reader_doc) with "seq" after "tier" (balance) or
 * "partner" (the others), as the service packs a jansson tree
 * (tly_query_pack); an error where the document was not. */
static void check_reply(tly_view_reader *r, char view, const char *partner, size_t len,
                        tly_err doc_err, const char *doc, size_t dlen)
{
    msgpack_sbuffer got;
    msgpack_sbuffer_init(&got);
    tly_err err = tly_view_reader_reply(r, view, partner, len, &got);
    if (err != TLY_OK && got.size != 0)
        abort();
    if (doc_err != TLY_OK) {
        if (err == TLY_OK)
            abort();
        msgpack_sbuffer_destroy(&got);
        return;
    }
    if (err != TLY_OK) { /* out of memory only: a stored name holds no NUL */
        if (err != TLY_NOMEM && err != TLY_BAD_FIELD)
            abort();
        msgpack_sbuffer_destroy(&got);
        return;
    }
    json_t *d = json_loadb(doc, dlen, 0, NULL);
    json_t *want = json_object();
    const char *after = view == 'b' ? "tier" : "partner";
    const char *k;
    json_t *m;
    json_object_foreach(d, k, m)
    {
        json_object_set(want, k, m);
        if (strcmp(k, after) == 0)
            json_object_set_new(want, "seq", json_integer((json_int_t)checkpoint));
    }
    msgpack_sbuffer ref;
    msgpack_sbuffer_init(&ref);
    if (tly_query_pack(want, &ref) != TLY_OK)
        abort();
    if (ref.size != got.size || memcmp(ref.data, got.data, ref.size) != 0) {
        fprintf(stderr, "fuzz_state: reply %c of %.*s is not its document: %.*s\n", view, (int)len,
                partner, (int)dlen, doc);
        abort();
    }
    msgpack_sbuffer_destroy(&ref);
    msgpack_sbuffer_destroy(&got);
    json_decref(want);
    json_decref(d);
}

/* The canonical text of view of partner is what json_dumps(JSON_COMPACT |
 * JSON_SORT_KEYS) writes for the document doc (TLY_OK from
 * tly_view_reader_doc) read back, "seq" deleted; doc_err where the
 * document was not. */
static void check_canonical(tly_view_reader *r, char view, const char *partner, size_t len,
                            tly_err doc_err, const char *doc, size_t dlen)
{
    const char *got = NULL;
    size_t glen = 0;
    tly_err err = tly_view_reader_canonical(r, view, partner, len, &got, &glen);
    if (err == TLY_NOMEM || doc_err == TLY_NOMEM)
        return;
    if (doc_err != TLY_OK) {
        if (err != doc_err)
            abort();
        return;
    }
    json_t *d = json_loadb(doc, dlen, JSON_REJECT_DUPLICATES, NULL);
    if (err == TLY_BAD_FIELD && d == NULL) /* a NUL byte: the text way refuses it */
        return;
    if (err != TLY_OK || d == NULL || got[glen] != '\0')
        abort();
    json_object_del(d, "seq");
    char *want = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    if (want == NULL)
        return; /* out of memory */
    if (strlen(want) != glen || memcmp(want, got, glen) != 0) {
        fprintf(stderr, "fuzz_state: canonical %c of %.*s: %.*s\n  jansson: %s\n", view, (int)len,
                partner, (int)glen, got, want);
        abort();
    }
    free(want);
}

/* Every view of partner (len bytes) through r, its canonical text, and
 * the reply of each partner view. */
static void render_all(tly_view_reader *r, const char *partner, size_t len)
{
    for (const char *v = "brtcP"; *v; v++) {
        const char *doc = NULL;
        size_t dlen = 0;
        tly_err err = tly_view_reader_doc(r, *v, partner, len, &doc, &dlen);
        check_doc(err, doc, dlen);
        char *copy = err == TLY_OK ? strndup(doc, dlen) : NULL;
        if (err == TLY_OK && copy == NULL)
            abort();
        check_canonical(r, *v, partner, len, err, copy, dlen);
        if (*v != 'P')
            check_reply(r, *v, partner, len, err, copy, dlen);
        free(copy);
    }
}

/* tly_kv_put_fn over the partner records, as tly_views_docs walks them:
 * every view of the partner through the reader ctx, and its list row from
 * the record alone, as the query's scan asks. */
static tly_err render_record(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    tly_view_reader *r = ctx;
    render_all(r, (const char *)key + PREFIX_BYTES, klen - PREFIX_BYTES);
    const char *doc = NULL;
    size_t dlen = 0;
    check_doc(tly_view_reader_row(r, val, vlen, NULL, NULL, &doc, &dlen), doc, dlen);
    return TLY_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t i = targets[(data[0] & 0x3f) % target_count];
    uint8_t *added = apply_input(&work, &base, i, data, size, dup_bytes);

    tly_view_reader *r;
    if (tly_view_reader_new(0, 1, &r) != TLY_OK)
        abort();
    tly_engine_store store = {.get = kv_get, .scan = kv_scan, .ctx = &work};
    tly_err err = tly_view_reader_bind(r, &store, checkpoint);
    if (err != TLY_OK) {
        const char *doc;
        size_t dlen;
        if ((err != TLY_CORRUPT && err != TLY_NOMEM) ||
            tly_view_reader_doc(r, 'b', "p1", 2, &doc, &dlen) != TLY_USAGE)
            abort();
    } else {
        /* every partner record */
        kv_scan(&work, "S/4/", PREFIX_BYTES, render_record, r);
        /* the stream's partners by id, after binding again to the same
         * checkpoint (the reader keeps its programs), as queries do */
        if (tly_view_reader_bind(r, &store, checkpoint) != TLY_OK)
            abort();
        for (size_t p = 0; p < sizeof partner_ids / sizeof partner_ids[0]; p++)
            render_all(r, partner_ids[p], strlen(partner_ids[p]));
    }
    tly_view_reader_free(r);
    free(added);
    return 0;
}
