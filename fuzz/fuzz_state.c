/*
 * fuzz_state.c — libFuzzer target: a partner's four documents and its
 * row of the partner list rendered from a view store's state
 * (tly_view_reader_bind, tly_view_reader_doc and tly_view_reader_row,
 * consumers/engine/engine_reader.c), what the query service runs on every
 * partner query and partner list: the unpacking of the stored program ("S/1/"), partner
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
 * keeps what tly_engine_flush writes in a small sorted key/value array.
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
 *   (json_loadb).
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

#include "tly_engine.h"
#include "tly_json.h"
#include "tly_mp.h"

/* recorded_ms of every record: 2100-01-01, after every `at` below. */
#define REC_MS INT64_C(4102444800000)

/* The events folded into the store, JSON as `tally send` reads it, each
 * after its source. Times: 2025-01-01 is 1735689600000, a day 86400000. */
static const char *const stream[][2] = {
    {"finance", "{\"type\":\"program\",\"id\":\"F1\",\"at\":1735689600000,\"program\":\"apex\","
                "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
                "{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100,"
                "\"benefits\":[],\"rebate_bonus_bps\":0,\"referral_bps\":300},"
                "{\"name\":\"Silver\",\"min_revenue\":2100000,\"min_certs\":1,\"mdf_bps\":150,"
                "\"benefits\":[\"NFR licenses\"],\"rebate_bonus_bps\":10,\"referral_bps\":400},"
                "{\"name\":\"Gold\",\"min_revenue\":6300000,\"min_certs\":3,\"mdf_bps\":200,"
                "\"benefits\":[\"NFR licenses\",\"beta access\"],\"rebate_bonus_bps\":25,"
                "\"referral_bps\":500}],"
                "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
                "{\"from\":2600000,\"bps\":200}],\"min\":10000,\"cap\":310000},"
                "\"mdf_expiry_periods\":2,\"tier_window_periods\":2,\"mdf_cap_per_period\":390000,"
                "\"tier_moves\":\"one_step\",\"tier_grace_periods\":1}"},
    {"finance", "{\"type\":\"program\",\"id\":\"F2\",\"at\":1735689660000,\"program\":\"nimbus\","
                "\"version\":1,\"currency\":\"EUR\",\"period\":\"month\",\"tiers\":["
                "{\"name\":\"Registered\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":80,"
                "\"benefits\":[],\"rebate_bonus_bps\":0,\"referral_bps\":300},"
                "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":150,"
                "\"benefits\":[\"partner account manager\"],\"rebate_bonus_bps\":25,"
                "\"referral_bps\":500}],"
                "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,\"bps\":50},"
                "{\"from\":870000,\"bps\":150}],\"basis\":\"growth\",\"baseline_periods\":3,"
                "\"min\":100000,\"cap\":2500000},"
                "\"mdf_expiry_periods\":3,\"tier_window_periods\":3,\"mdf_cap_per_period\":43000,"
                "\"tier_moves\":\"any\",\"tier_grace_periods\":2}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F3\",\"at\":1735776000000,\"partner\":\"p1\","
                "\"name\":\"Acme VAR\",\"program\":\"apex\",\"kind\":\"var\",\"region\":\"EMEA\"}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F4\",\"at\":1735776000000,\"partner\":\"p2\","
                "\"name\":\"Margie\",\"program\":\"nimbus\",\"kind\":\"consultant\"}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F5\",\"at\":1735776000000,\"partner\":\"p4\","
                "\"name\":\"Quiet OEM\",\"program\":\"apex\",\"kind\":\"oem\"}"},
    /* p3 never enrolls: these two are held in its record */
    {"pos", "{\"type\":\"sale\",\"id\":\"S0\",\"at\":1735862400000,\"partner\":\"p3\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":120000,\"currency\":\"USD\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C0\",\"at\":1735862400000,"
              "\"partner\":\"p3\",\"person\":\"eve\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C1\",\"at\":1735862400000,"
              "\"partner\":\"p1\",\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C2\",\"at\":1735862400000,"
              "\"partner\":\"p1\",\"person\":\"bob\",\"cert\":\"net-pro\",\"action\":\"earned\","
              "\"expires\":1798761600000}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S1\",\"at\":1735862400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":2,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S2\",\"at\":1735948800000,\"partner\":\"p1\","
            "\"sku\":\"Y\",\"qty\":1,\"amount\":400000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"return\",\"id\":\"R1\",\"at\":1736035200000,\"partner\":\"p1\","
            "\"sale\":\"S1\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K1\",\"at\":1736121600000,\"partner\":\"p1\","
               "\"claim\":\"c1\",\"action\":\"submit\",\"amount\":20000,\"activity\":\"webinar\"}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K2\",\"at\":1736208000000,\"partner\":\"p1\","
                "\"claim\":\"c1\",\"action\":\"approve\",\"amount\":15000}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K3\",\"at\":1736294400000,\"partner\":\"p1\","
                "\"claim\":\"c1\",\"action\":\"pay\",\"amount\":15000}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K4\",\"at\":1736294400000,\"partner\":\"p1\","
               "\"claim\":\"c2\",\"action\":\"submit\",\"amount\":5000}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K5\",\"at\":1736380800000,\"partner\":\"p1\","
                "\"claim\":\"c2\",\"action\":\"reject\",\"reason\":\"no receipts\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K6\",\"at\":1736380800000,\"partner\":\"p1\","
               "\"claim\":\"c3\",\"action\":\"submit\",\"amount\":1000}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S3\",\"at\":1736467200000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":900000,\"currency\":\"EUR\"}"},
    {"crm", "{\"type\":\"referral\",\"id\":\"D1\",\"at\":1736467200000,\"partner\":\"p2\","
            "\"deal\":\"DEAL-1\",\"amount\":50000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L1\",\"at\":1738454400000,\"program\":\"nimbus\","
                "\"period\":\"2025-01\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S4\",\"at\":1739145600000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":700000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L2\",\"at\":1740873600000,\"program\":\"nimbus\","
                "\"period\":\"2025-02\"}"},
    /* an open month of the incremental growth program: two slices */
    {"pos", "{\"type\":\"sale\",\"id\":\"S6\",\"at\":1741564800000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":1900000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L3\",\"at\":1743552000000,\"program\":\"apex\","
                "\"period\":\"2025-Q1\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S5\",\"at\":1743638400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":250000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"payout\",\"id\":\"Y1\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"period\":\"2025-Q1\",\"amount\":1000}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A1\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"account\":\"mdf\",\"amount\":-2500,\"reason\":\"duplicate invoice\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A2\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"account\":\"rebate\",\"amount\":100,\"reason\":\"goodwill\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A3\",\"at\":1743638400000,\"partner\":\"p2\","
                "\"account\":\"mdf\",\"amount\":300,\"reason\":\"event\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C3\",\"at\":1743724800000,"
              "\"partner\":\"p1\",\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"revoked\"}"},
    /* six more quarters of apex: p1's first four and p4's first four final
     * rows go to the archive, a chunk each ("S/7/") */
    {"pos", "{\"type\":\"sale\",\"id\":\"S7\",\"at\":1747267200000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L4\",\"at\":1751414400000,\"program\":\"apex\","
                "\"period\":\"2025-Q2\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S8\",\"at\":1755216000000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S9\",\"at\":1755302400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":500000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L5\",\"at\":1759363200000,\"program\":\"apex\","
                "\"period\":\"2025-Q3\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S10\",\"at\":1763164800000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S11\",\"at\":1763251200000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":500000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L6\",\"at\":1767312000000,\"program\":\"apex\","
                "\"period\":\"2025-Q4\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S12\",\"at\":1771113600000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L7\",\"at\":1775088000000,\"program\":\"apex\","
                "\"period\":\"2026-Q1\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S13\",\"at\":1778803200000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L8\",\"at\":1782950400000,\"program\":\"apex\","
                "\"period\":\"2026-Q2\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S14\",\"at\":1786752000000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L9\",\"at\":1790899200000,\"program\":\"apex\","
                "\"period\":\"2026-Q3\"}"},
};

/* The partners of the stream, asked for by id on every input. */
static const char *const partner_ids[] = {"p1", "p2", "p3", "p4"};

/* ---- a sorted in-memory key/value store ---- */

typedef struct kv_entry {
    const uint8_t *key, *val;
    size_t klen, vlen;
} kv_entry;

typedef struct kv {
    kv_entry *e;
    size_t count, cap;
} kv;

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* First index whose key is not below key; *found when it is key. */
static size_t kv_find(const kv *s, const void *key, size_t klen, bool *found)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(s->e[mid].key, s->e[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->count && key_cmp(s->e[lo].key, s->e[lo].klen, key, klen) == 0;
    return lo;
}

/* Sets key to val (borrowed, not copied); s->cap must leave room. */
static void kv_set(kv *s, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    if (!found) {
        if (s->count == s->cap)
            abort();
        memmove(&s->e[i + 1], &s->e[i], (s->count - i) * sizeof *s->e);
        s->count++;
    }
    s->e[i] = (kv_entry){key, val, klen, vlen};
}

/* Copies of a buffer, each in an allocation of its exact size (so ASan
 * sees a read past a value's end); never freed: they are the base store. */
static uint8_t *dup_bytes(const void *p, size_t len)
{
    uint8_t *d = malloc(len ? len : 1);
    if (d == NULL)
        abort();
    memcpy(d, p, len);
    return d;
}

/* tly_kv_put_fn of the flush: the base store keeps copies. */
static tly_err base_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    kv *s = ctx;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->e = realloc(s->e, s->cap * sizeof *s->e);
        if (s->e == NULL)
            abort();
    }
    kv_set(s, dup_bytes(key, klen), klen, dup_bytes(val, vlen), vlen);
    return TLY_OK;
}

/* tly_kv_get_fn over a kv: exact key. */
static tly_err kv_get(void *ctx, const void *key, size_t klen, const void **val, size_t *vlen)
{
    const kv *s = ctx;
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    if (!found)
        return TLY_NOT_FOUND;
    *val = s->e[i].val;
    *vlen = s->e[i].vlen;
    return TLY_OK;
}

/* tly_kv_scan_fn over a kv: every key with the prefix, in byte order. */
static tly_err kv_scan(void *ctx, const void *prefix, size_t plen, tly_kv_put_fn visit, void *vctx)
{
    const kv *s = ctx;
    bool found;
    for (size_t i = kv_find(s, prefix, plen, &found); i < s->count; i++) {
        const kv_entry *x = &s->e[i];
        if (x->klen < plen || memcmp(x->key, prefix, plen) != 0)
            break;
        tly_err err = visit(vctx, x->key, x->klen, x->val, x->vlen);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

/* ---- the base store, folded once ---- */

#define PREFIX_BYTES 4u
/* Longest key body an added record gets (the engine's keys are shorter). */
#define ADD_KEY_BODY_MAX 300u

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

/* Folds the stream through an engine for shard 0 of 1 and flushes it into
 * base; aborts if an event does not decode or fold (the stream is fixed). */
static void fold_stream(void)
{
    tly_engine *e;
    if (tly_engine_new(0, 1, &e) != TLY_OK)
        abort();
    size_t n = sizeof stream / sizeof stream[0];
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loads(stream[i][1], 0, &je);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        tly_field_error fe = {{0}, {0}};
        tly_event ev;
        if (j == NULL || tly_json_event_to_mp(j, &sb, &fe) != TLY_OK ||
            tly_event_decode(sb.data, sb.size, REC_MS, &ev, &fe) != TLY_OK) {
            fprintf(stderr, "fuzz_state: event %zu: %s %s %s\n", i + 1, j ? "" : je.text, fe.field,
                    fe.message);
            abort();
        }
        const char *source = stream[i][0];
        tly_record rec = {.seq = i + 1,
                          .recorded_ms = REC_MS,
                          .source = {source, (uint32_t)strlen(source)},
                          .event = (const uint8_t *)sb.data,
                          .event_len = sb.size};
        tly_err err = tly_engine_apply(e, &rec, &ev);
        if (err != TLY_OK) {
            fprintf(stderr, "fuzz_state: apply %zu: %s\n", i + 1, tly_err_name(err));
            abort();
        }
        msgpack_sbuffer_destroy(&sb);
        json_decref(j);
    }
    if (tly_engine_flush(e, base_put, &base) != TLY_OK)
        abort();
    checkpoint = tly_engine_seq(e);
    tly_engine_free(e);
    for (size_t i = 0; i < base.count && target_count < sizeof targets / sizeof targets[0]; i++)
        if (is_target(&base.e[i]))
            targets[target_count++] = i;
    if (target_count == 0)
        abort();
    work.cap = base.count + 1;
    work.e = malloc(work.cap * sizeof *work.e);
    if (work.e == NULL)
        abort();
}

/* ---- seeds (FUZZ_STATE_SEEDS=DIR) ---- */

static void write_seed(const char *dir, const char *name, uint8_t sel, const void *a, size_t alen,
                       const void *b, size_t blen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fputc(sel, f) == EOF || fwrite(a, 1, alen, f) != alen ||
        fwrite(b, 1, blen, f) != blen || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A file name for target t: "program-apex", "claim-p1-c1", "partner-p1",
 * "history-p1" (a claim key is "S/3/" <u8 len><partner><claim>). */
static void seed_name(size_t t, const char *what, char *out, size_t cap)
{
    const kv_entry *x = &base.e[targets[t]];
    const char *body = (const char *)x->key + PREFIX_BYTES;
    int blen = (int)(x->klen - PREFIX_BYTES);
    switch (x->key[2]) {
    case '1':
        snprintf(out, cap, "%sprogram-%.*s", what, blen, body);
        break;
    case '3':
        snprintf(out, cap, "%sclaim-%.*s-%.*s", what, (int)(uint8_t)body[0], body + 1,
                 blen - 1 - (int)(uint8_t)body[0], body + 1 + (uint8_t)body[0]);
        break;
    case '6':
        snprintf(out, cap, "%shistory-%.*s", what, blen, body);
        break;
    case '7': /* be32 period, u8 len, partner */
        snprintf(out, cap, "%sarchive-%.*s-%u", what, blen - 5, body + 5,
                 (unsigned)((uint8_t)body[0] << 24 | (uint8_t)body[1] << 16 |
                            (uint8_t)body[2] << 8 | (uint8_t)body[3]));
        break;
    default:
        snprintf(out, cap, "%spartner-%.*s", what, blen, body);
        break;
    }
}

/* Target index of the record under key, or abort. */
static size_t target_of(const char *key)
{
    for (size_t t = 0; t < target_count; t++) {
        const kv_entry *x = &base.e[targets[t]];
        if (x->klen == strlen(key) && memcmp(x->key, key, x->klen) == 0)
            return t;
    }
    abort();
}

static void write_seeds(const char *dir)
{
    char name[512];
    for (size_t t = 0; t < target_count; t++) { /* each record as it is */
        const kv_entry *x = &base.e[targets[t]];
        seed_name(t, "", name, sizeof name);
        write_seed(dir, name, (uint8_t)t, x->val, x->vlen, "", 0);
    }
    size_t apex = target_of("S/1/apex"), p1 = target_of("S/4/p1");
    seed_name(apex, "delete-", name, sizeof name);
    write_seed(dir, name, (uint8_t)(0x40 | apex), "", 0, "", 0);
    for (size_t t = 0; t < target_count; t++)
        if (base.e[targets[t]].key[2] == '3') { /* the first claim */
            seed_name(t, "delete-", name, sizeof name);
            write_seed(dir, name, (uint8_t)(0x40 | t), "", 0, "", 0);
            break;
        }
    /* p1's record under another partner's key; apex's renamed "zeta" (its
     * name is the record's first str) under the key of zeta */
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
    fold_stream();
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

/* Every view of partner (len bytes) through r. */
static void render_all(tly_view_reader *r, const char *partner, size_t len)
{
    for (const char *v = "brtcP"; *v; v++) {
        const char *doc = NULL;
        size_t dlen = 0;
        check_doc(tly_view_reader_doc(r, *v, partner, len, &doc, &dlen), doc, dlen);
    }
}

/* Applies the input to work (a copy of base); *added is the key of an
 * added record, to free after the input. */
static void apply_input(const uint8_t *data, size_t size, uint8_t **added)
{
    memcpy(work.e, base.e, base.count * sizeof *base.e);
    work.count = base.count;
    size_t i = targets[(data[0] & 0x3f) % target_count];
    const uint8_t *payload = data + 1;
    size_t plen = size - 1;
    switch (data[0] >> 6) {
    case 1: /* delete */
        memmove(&work.e[i], &work.e[i + 1], (work.count - i - 1) * sizeof *work.e);
        work.count--;
        break;
    case 2: { /* add under the same prefix: key body, NUL, value */
        const uint8_t *nul = memchr(payload, 0, plen);
        size_t blen = nul ? (size_t)(nul - payload) : plen;
        size_t vstart = nul ? blen + 1 : plen;
        if (blen > ADD_KEY_BODY_MAX)
            blen = ADD_KEY_BODY_MAX;
        uint8_t *key = malloc(PREFIX_BYTES + blen);
        if (key == NULL)
            abort();
        memcpy(key, base.e[i].key, PREFIX_BYTES);
        memcpy(key + PREFIX_BYTES, payload, blen);
        kv_set(&work, key, PREFIX_BYTES + blen, payload + vstart, plen - vstart);
        *added = key;
        break;
    }
    default: /* replace */
        work.e[i].val = payload;
        work.e[i].vlen = plen;
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t *added = NULL;
    apply_input(data, size, &added);

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
        /* every partner record, as tly_views_docs walks them */
        bool found;
        for (size_t i = kv_find(&work, "S/4/", PREFIX_BYTES, &found); i < work.count; i++) {
            const kv_entry *x = &work.e[i];
            if (x->klen < PREFIX_BYTES || memcmp(x->key, "S/4/", PREFIX_BYTES) != 0)
                break;
            render_all(r, (const char *)x->key + PREFIX_BYTES, x->klen - PREFIX_BYTES);
            /* its list row from the record alone, as the query's scan asks */
            const char *doc = NULL;
            size_t dlen = 0;
            check_doc(tly_view_reader_row(r, x->val, x->vlen, NULL, NULL, &doc, &dlen), doc, dlen);
        }
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
