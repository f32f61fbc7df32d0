/*
 * fuzz_engine_load.c — libFuzzer target: a consumer's engine folding on
 * from a view store, as tally consume does after a restart: the programs
 * loaded (tly_engine_load of "S/0/" and "S/1/"), the rest read from the
 * store when an event names it (tly_engine_set_store): the unpacking of a
 * stored partner ("S/4/", partner_lookup, partner_read and pstate_read in
 * consumers/engine/engine_state.c) into the scratch state and its copy
 * into one allocation (eng_pstate_settle, engine_records.c), its tier
 * history ("S/6/", eng_partner_cold), its archive chunks ("S/7/" along the
 * chain, "S/5/" in the older form), its claims ("S/3/") and the sales a
 * return names ("S/2/"); a flush with drops, tly_engine_read_back of what
 * it dropped, and the fold going on from there. fuzz_state covers the
 * query side (tly_view_reader, engine_reader.c); this one the engine's own
 * reads. A corrupt or hostile store must give an error code, never a
 * crash, hang or leak.
 *
 * The store: LLVMFuzzerInitialize folds the stream of fuzz_store.h (two
 * programs, a quarterly one and a monthly growth one; enrolled partners
 * with sales, a return, certifications, claims in every state, closes, a
 * payout, adjustments, a referral; an unenrolled partner with held events;
 * an enrolled one with nothing) through a tly_engine for shard 0 of 1 and
 * keeps what tly_engine_flush writes in a small sorted key/value array;
 * then p4's record is rewritten in the form written before "S/7/" (its
 * last element, the head of its chain, left out) and its chunk moved to
 * "S/5/" in that form, so that stores of both forms are read. Each input
 * changes one record of a copy of it (the others stay valid); then a
 * fresh engine (shard 0 of 1) loads the programs, binds to the copy with
 * a cache of two partners and two sales, flush drops and read-back on,
 * and resumes after the fold's checkpoint:
 *   1 it folds a tail of events that names every partner of the stream:
 *     sales of p1, p2, p4 and of unenrolled p3, returns of an archived
 *     sale of p1 ("S/7/") and of p4 ("S/5/"), a claim approved and one
 *     submitted, payouts into archived periods, a certification, a
 *     referral, an adjustment;
 *   2 it flushes into the copy (as a commit would) and reads back what
 *     the flush dropped: with tly_engine_read_back for an input of even
 *     length, split in two for an odd one (tly_engine_read_back_begin,
 *     _split_decode and _finish, in turn on this thread: the second half's
 *     records decoded apart from the engine, eng_read_job_* in
 *     engine_state.c);
 *   3 it folds on: a sale, a claim resubmitted, the next close of both
 *     programs (every member read, its history and archive with it);
 *   4 it renders views 'b', 'r', 't' and 'c' of every partner under
 *     "S/4/" (an added one included) and the partner list, and flushes
 *     once more, into a scratch copy; then it is freed.
 * Before the first input the same run on the unchanged store must give
 * TLY_OK everywhere and read partners back (else the target aborts: the
 * paths above would go unfuzzed).
 *
 * Input: byte 0 selects, the rest is the payload. The low six bits pick
 * one of the stored program, claim, partner, history and archive records
 * and the two sales the tail returns, in key order (modulo their count);
 * the top two bits say what to do with it:
 *   00, 11  replace its value with the payload
 *   01      delete it (the payload is not read)
 *   10      add a record under the same prefix ("S/1/", "S/2/", "S/3/",
 *           "S/4/", "S/5/", "S/6/" or "S/7/"):
 *           the payload's bytes up to its first NUL are the rest of the key,
 *           the bytes after it the value (an existing key is replaced)
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - a load returns TLY_OK, TLY_CORRUPT or TLY_NOMEM; after a failed one
 *   the engine is freed (tally consume stops there);
 * - every apply and flush returns TLY_OK, TLY_CORRUPT, TLY_NOT_FOUND or
 *   TLY_NOMEM; an apply also TLY_OVERFLOW (a stored figure near int64's
 *   end: tly_engine.h) and, for a sale, TLY_USAGE (an added "S/2/" record
 *   under its key makes it a repeated sale). After an error the engine is
 *   used on (later events, the read-back, the flushes; tly_engine_intact
 *   may be false), and each call must again give one of those codes;
 * - a view is NULL or one JSON object, the partner list NULL or an array.
 *
 * Seeds: with FUZZ_ENGINE_LOAD_SEEDS=DIR in the environment the target
 * writes its seed corpus into DIR instead of fuzzing (each selectable
 * record under its selector, five deletions, two additions) and exits; the
 * output is committed in fuzz/corpus/fuzz_engine_load/. Regenerate it (run
 * by hand) when the engine's record format changes:
 *   FUZZ_ENGINE_LOAD_SEEDS=fuzz/corpus/fuzz_engine_load BUILD/fuzz/fuzz_engine_load
 * The regress-* files beside them are inputs that once failed (kept, not
 * written by the target): regress-claim-shares-* change claim c3's
 * requested amount away from its shares, which aborted the consumer
 * before 5ac59e8.
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

/* The tail the fresh engine folds after the checkpoint, in two parts
 * around the first flush (see the top). 2026-10-02 is 1790985600000,
 * 2027-01-02 1798848000000. */
static const char *const tail_first[][2] = {
    {"pos", "{\"type\":\"sale\",\"id\":\"S20\",\"at\":1790985600000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":300000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S21\",\"at\":1790985600000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":200000,\"currency\":\"EUR\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S22\",\"at\":1790985600000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S23\",\"at\":1790985600000,\"partner\":\"p3\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":50000,\"currency\":\"USD\"}"},
    /* an archived sale of each form: p1's under "S/7/", p4's under "S/5/" */
    {"pos", "{\"type\":\"return\",\"id\":\"R20\",\"at\":1791072000000,\"partner\":\"p1\","
            "\"sale\":\"S1\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"return\",\"id\":\"R21\",\"at\":1791072000000,\"partner\":\"p4\","
            "\"sale\":\"S7\",\"qty\":1,\"amount\":500000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K20\",\"at\":1791072000000,\"partner\":\"p1\","
                "\"claim\":\"c3\",\"action\":\"approve\",\"amount\":1000}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K21\",\"at\":1791072000000,\"partner\":\"p1\","
               "\"claim\":\"c4\",\"action\":\"submit\",\"amount\":2000,\"activity\":\"fair\"}"},
    {"finance", "{\"type\":\"payout\",\"id\":\"Y20\",\"at\":1791072000000,\"partner\":\"p1\","
                "\"period\":\"2025-Q1\",\"amount\":500}"},
    {"finance", "{\"type\":\"payout\",\"id\":\"Y21\",\"at\":1791072000000,\"partner\":\"p4\","
                "\"period\":\"2025-Q2\",\"amount\":100}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C20\",\"at\":1791072000000,"
              "\"partner\":\"p4\",\"person\":\"dan\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"crm", "{\"type\":\"referral\",\"id\":\"D20\",\"at\":1791072000000,\"partner\":\"p2\","
            "\"deal\":\"DEAL-2\",\"amount\":30000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A20\",\"at\":1791072000000,\"partner\":\"p4\","
                "\"account\":\"mdf\",\"amount\":100,\"reason\":\"fix\"}"},
};

static const char *const tail_then[][2] = {
    {"pos", "{\"type\":\"sale\",\"id\":\"S24\",\"at\":1791158400000,\"partner\":\"p1\","
            "\"sku\":\"Y\",\"qty\":1,\"amount\":200000,\"currency\":\"USD\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K22\",\"at\":1791158400000,\"partner\":\"p1\","
               "\"claim\":\"c2\",\"action\":\"submit\",\"amount\":100}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L20\",\"at\":1798848000000,\"program\":\"apex\","
                "\"period\":\"2026-Q4\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L21\",\"at\":1798848000000,\"program\":\"nimbus\","
                "\"period\":\"2025-03\"}"},
};

/* The tail decoded once: each event borrows from its MessagePack. */
typedef struct tail_event {
    const char *source;
    msgpack_sbuffer sb;
    tly_event ev;
} tail_event;

#define TAIL_FIRST (sizeof tail_first / sizeof tail_first[0])
#define TAIL_THEN (sizeof tail_then / sizeof tail_then[0])
static tail_event tail[TAIL_FIRST + TAIL_THEN];

/* Cache limits of the fresh engine: nearly every lookup a read, every
 * flush a trim (and with drops, partners to read back). */
#define CACHED_PARTNERS 2u
#define CACHED_SALES 2u
#define READ_BACK_MAX 16u

/* The copies one input makes (added keys, what its flushes write), freed
 * after it: a flush's bytes stay valid until the next flush and beyond. */
static uint8_t **pool;
static size_t pool_count, pool_cap;

static uint8_t *pool_dup(const void *p, size_t len)
{
    if (pool_count == pool_cap) {
        pool_cap = pool_cap ? pool_cap * 2 : 256;
        pool = realloc(pool, pool_cap * sizeof *pool);
        if (pool == NULL)
            abort();
    }
    return pool[pool_count++] = dup_bytes(p, len);
}

static void pool_free(void)
{
    for (size_t i = 0; i < pool_count; i++)
        free(pool[i]);
    pool_count = 0;
}

/* tly_kv_put_fn of an input's flushes: copies into the pool. */
static tly_err pool_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    kv *s = ctx;
    kv_reserve(s, 1);
    kv_set(s, pool_dup(key, klen), klen, pool_dup(val, vlen), vlen);
    return TLY_OK;
}

/* ---- the base store, folded once ---- */

/* Elements of an owned partner's record and of an archive chunk under
 * "S/7/" (engine_records.h: ENG_PARTNER_FIELDS_OWNED, [fmt, prev, rows]). */
#define PARTNER_FIELDS 36u
#define CHUNK7_FIELDS 3u

static kv base;             /* what the flush wrote, p4 in the older form */
static uint64_t checkpoint; /* the engine's seq after the fold */
static size_t targets[64];  /* indexes in base of the records an input picks */
static size_t target_count;
static kv work;     /* per input: base with one record changed, the engine's store */
static kv after;    /* per input: work and what a flush wrote into it */
static bool sanity; /* the run on the unchanged store: TLY_OK everywhere */

/* The sales the tail returns: "S/2/" ‖ u8 length ‖ source ‖ id. */
static const char *const returned_sales[] = {"S/2/\003posS1", "S/2/\003posS7"};

static bool is_target(const kv_entry *x)
{
    for (size_t i = 0; i < sizeof returned_sales / sizeof returned_sales[0]; i++)
        if (x->klen == strlen(returned_sales[i]) && memcmp(x->key, returned_sales[i], x->klen) == 0)
            return true;
    return x->klen > PREFIX_BYTES && memcmp(x->key, "S/", 2) == 0 && x->key[3] == '/' &&
           x->key[2] >= '1' && x->key[2] <= '7' && x->key[2] != '2';
}

/* Decodes the tail once, for every input. */
static void decode_tail(void)
{
    for (size_t i = 0; i < TAIL_FIRST + TAIL_THEN; i++) {
        const char *const *t = i < TAIL_FIRST ? tail_first[i] : tail_then[i - TAIL_FIRST];
        tail[i].source = t[0];
        decode_event("fuzz_engine_load", t[1], &tail[i].sb, &tail[i].ev);
    }
}

/* The MessagePack array x->val (of `want` elements, else abort) without
 * its element `drop`, in a new allocation of *len bytes. */
static uint8_t *mp_drop(const kv_entry *x, uint32_t want, uint32_t drop, size_t *len)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, (const char *)x->val, x->vlen, NULL) != MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_ARRAY || up.data.via.array.size != want)
        abort();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, want - 1);
    for (uint32_t i = 0; i < want; i++)
        if (i != drop)
            msgpack_pack_object(&pk, up.data.via.array.ptr[i]);
    uint8_t *out = dup_bytes(sb.data, sb.size);
    *len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&up);
    return out;
}

/* Rewrites owned partner id's record (one without claims) and archive in
 * the form written before "S/7/": the record without its last three
 * elements (its claims' buckets, the archive's revenue, the chain's head),
 * each chunk "S/7/<be32 period, u8 len, id>" [fmt, prev, rows] as
 * "S/5/<u8 len, id, be32 period>" [fmt, rows]. */
static void to_old_form(const char *id)
{
    size_t idlen = strlen(id), len;
    char key[PREFIX_BYTES + 16];
    snprintf(key, sizeof key, "S/4/%s", id);
    bool found;
    size_t i = kv_find(&base, key, strlen(key), &found);
    if (!found || idlen > 16)
        abort();
    uint8_t *v10 = mp_drop(&base.e[i], PARTNER_FIELDS, PARTNER_FIELDS - 1, &len);
    kv_entry without_buckets = {.val = v10, .vlen = len};
    uint8_t *v9 = mp_drop(&without_buckets, PARTNER_FIELDS - 1, PARTNER_FIELDS - 2, &len);
    free(v10);
    kv_entry without_rev = {.val = v9, .vlen = len};
    uint8_t *val = mp_drop(&without_rev, PARTNER_FIELDS - 2, PARTNER_FIELDS - 3, &len);
    free(v9);
    free((void *)base.e[i].val);
    base.e[i].val = val;
    base.e[i].vlen = len;
    size_t moved = 0;
    for (size_t j = 0; j < base.count; j++) {
        const kv_entry *x = &base.e[j];
        if (x->klen != PREFIX_BYTES + 5 + idlen || memcmp(x->key, "S/7/", PREFIX_BYTES) != 0 ||
            x->key[8] != idlen || memcmp(x->key + 9, id, idlen) != 0)
            continue;
        uint8_t k5[PREFIX_BYTES + 1 + 16 + 4];
        memcpy(k5, "S/5/", PREFIX_BYTES);
        k5[PREFIX_BYTES] = (uint8_t)idlen;
        memcpy(k5 + PREFIX_BYTES + 1, id, idlen);
        memcpy(k5 + PREFIX_BYTES + 1 + idlen, x->key + PREFIX_BYTES, 4);
        size_t klen = x->klen;
        val = mp_drop(x, CHUNK7_FIELDS, 1, &len);
        free((void *)x->key);
        free((void *)x->val);
        kv_del(&base, j); /* "S/5/" sorts first: entry j is then one seen */
        kv_reserve(&base, 1);
        kv_set(&base, dup_bytes(k5, klen), klen, val, len);
        moved++;
    }
    if (moved == 0)
        abort();
}

/* ---- seeds (FUZZ_ENGINE_LOAD_SEEDS=DIR) ---- */

static void write_seeds(const char *dir)
{
    /* each record as it is; p1's record, history and newest chunk, p4's old
     * chunk, the claim the tail approves: each deleted */
    static const char *const gone[] = {"S/4/p1", "S/6/p1", "S/7/", "S/5/\002p4", "S/3/\002p1c3"};
    write_record_seeds(dir, &base, targets, target_count, gone, sizeof gone / sizeof gone[0]);
    /* p1's record under another partner's key; S1's record under the key
     * of the tail's first sale, which is then a repeated sale */
    size_t p1 = target_of(&base, targets, target_count, "S/4/p1");
    size_t s1 = target_of(&base, targets, target_count, returned_sales[0]);
    const kv_entry *x = &base.e[targets[p1]];
    write_seed(dir, "add-partner-p9", (uint8_t)(0x80 | p1), "p9", 3, x->val, x->vlen);
    x = &base.e[targets[s1]];
    write_seed(dir, "add-sale-pos-S20", (uint8_t)(0x80 | s1), "\003posS20", 8, x->val, x->vlen);
}

/* ---- one input ---- */

#define ALLOW(err) (1u << (err))
/* What a load may give on a corrupt store; a flush; an apply (a sale's
 * also TLY_USAGE). */
#define LOAD_ALLOWED (ALLOW(TLY_CORRUPT) | ALLOW(TLY_NOMEM))
#define FLUSH_ALLOWED (LOAD_ALLOWED | ALLOW(TLY_NOT_FOUND))
#define APPLY_ALLOWED (FLUSH_ALLOWED | ALLOW(TLY_OVERFLOW))

/* Aborts unless err is TLY_OK or (but in the sanity run) one of allowed. */
static void check_err(const char *what, size_t n, tly_err err, unsigned allowed)
{
    if (err == TLY_OK || (!sanity && (unsigned)err < 32 && (allowed >> err & 1u) != 0))
        return;
    fprintf(stderr, "fuzz_engine_load: %s %zu: %s\n", what, n, tly_err_name(err));
    abort();
}

static tly_err load_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    return tly_engine_load(ctx, key, klen, val, vlen);
}

/* A fresh engine bound to work as tally consume restarts one (the rates
 * and programs loaded, the rest read on demand), or NULL when a program
 * does not load (checked: the consumer stops there). */
static tly_engine *engine_on_work(void)
{
    tly_engine *e;
    if (tly_engine_new(0, 1, &e) != TLY_OK)
        abort();
    tly_engine_set_flush_drops(e, true);
    tly_engine_set_read_back(e, READ_BACK_MAX);
    tly_err err = kv_scan(&work, "S/0/", PREFIX_BYTES, load_visit, e);
    if (err == TLY_OK)
        err = kv_scan(&work, "S/1/", PREFIX_BYTES, load_visit, e);
    check_err("load", 0, err, LOAD_ALLOWED);
    if (err != TLY_OK) {
        tly_engine_free(e);
        return NULL;
    }
    tly_engine_set_seq(e, checkpoint);
    tly_engine_store store = {.get = kv_get,
                              .scan = kv_scan,
                              .ctx = &work,
                              .partners_cached_max = CACHED_PARTNERS,
                              .sales_cached_max = CACHED_SALES};
    tly_engine_set_store(e, &store);
    return e;
}

/* Folds tail[from, from + n) on, whatever the earlier applies gave. */
static void fold_tail(tly_engine *e, size_t from, size_t n)
{
    for (size_t i = from; i < from + n; i++) {
        const tail_event *t = &tail[i];
        unsigned allowed = APPLY_ALLOWED | (t->ev.type == TLY_EV_SALE ? ALLOW(TLY_USAGE) : 0);
        check_err("tail apply", i + 1, apply_next(e, t->source, &t->sb, &t->ev), allowed);
    }
}

/* Flushes into a copy of work; commit: on success the copy becomes work,
 * as a committed transaction (a failed one is aborted: work stays). */
static void flush_copy(tly_engine *e, bool commit)
{
    kv_copy(&after, &work);
    tly_err err = tly_engine_flush(e, pool_put, &after);
    check_err("flush", commit ? 1 : 2, err, FLUSH_ALLOWED);
    if (err == TLY_OK && commit) {
        kv swap = work;
        work = after;
        after = swap;
    }
}

/* A view is NULL or one JSON object. */
static void check_view(json_t *j)
{
    if (j != NULL && !json_is_object(j))
        abort();
    json_decref(j);
}

/* tly_kv_put_fn over the partner records: views 'b', 'r', 't' and 'c' of
 * the partner through the engine ctx. */
static tly_err view_record(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val;
    (void)vlen;
    char id[ADD_KEY_BODY_MAX + 1];
    size_t len = klen - PREFIX_BYTES;
    if (len > ADD_KEY_BODY_MAX || memchr((const uint8_t *)key + PREFIX_BYTES, 0, len) != NULL)
        return TLY_OK; /* not a C string: no view names it */
    memcpy(id, (const uint8_t *)key + PREFIX_BYTES, len);
    id[len] = '\0';
    for (const char *v = "brtc"; *v; v++)
        check_view(tly_engine_view(ctx, *v, id));
    return TLY_OK;
}

/* Views 'b', 'r', 't' and 'c' of every partner under "S/4/" and the
 * partner list; in the sanity run the list must be there. */
static void check_views(tly_engine *e)
{
    kv_scan(&work, "S/4/", PREFIX_BYTES, view_record, e);
    json_t *list = tly_engine_partners(e);
    if ((list != NULL && !json_is_array(list)) || (sanity && list == NULL))
        abort();
    json_decref(list);
}

/* Step 2's read-back, split in two or not. */
static uint32_t read_back(tly_engine *e, bool split)
{
    tly_engine_read_split *s = split ? tly_engine_read_back_begin(e, 1) : NULL;
    if (s == NULL)
        return tly_engine_read_back(e);
    tly_engine_read_split_decode(s);
    return tly_engine_read_back_finish(e, s, NULL, NULL);
}

/* Steps 1 to 4 of the top on work, the read-back split or not; returns
 * how many partners the read-back read. */
static uint32_t run_engine(bool split)
{
    tly_engine *e = engine_on_work();
    if (e == NULL)
        return 0;
    fold_tail(e, 0, TAIL_FIRST);
    flush_copy(e, true);
    uint32_t read = read_back(e, split);
    fold_tail(e, TAIL_FIRST, TAIL_THEN);
    check_views(e);
    flush_copy(e, false);
    if (sanity && !tly_engine_intact(e))
        abort();
    tly_engine_free(e);
    return read;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    checkpoint = fold_stream("fuzz_engine_load", &base);
    to_old_form("p4");
    target_count = pick_targets(&base, is_target, targets, sizeof targets / sizeof targets[0]);
    decode_tail();
    /* the unchanged store reads clean, partners read back included, by
     * either read-back, the same partners */
    sanity = true;
    uint32_t read[2];
    for (int split = 0; split < 2; split++) {
        kv_copy(&work, &base);
        read[split] = run_engine(split == 1);
        pool_free();
    }
    sanity = false;
    if (read[0] == 0 || read[1] != read[0]) {
        fprintf(stderr, "fuzz_engine_load: the unchanged store read back %u and %u partners\n",
                read[0], read[1]);
        abort();
    }
    const char *dir = getenv("FUZZ_ENGINE_LOAD_SEEDS");
    if (dir != NULL) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    apply_input(&work, &base, targets[(data[0] & 0x3f) % target_count], data, size, pool_dup);
    run_engine(size % 2 == 1);
    pool_free();
    return 0;
}
