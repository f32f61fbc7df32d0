/*
 * fuzz_store.h — what fuzz_state and fuzz_engine_load share: the view
 * store both fuzz a corrupt copy of, built the same way in each.
 * - The stream: the fixed stream of events of fuzz_stream.h, folded once
 *   through a tly_engine for shard 0 of 1 (fold_stream); what
 *   tly_engine_flush writes is the base store.
 * - The store: a small sorted key/value array (kv) with the engine's
 *   tly_kv_get_fn and tly_kv_scan_fn over it (kv_get, kv_scan).
 * - The input: byte 0 selects, the rest is the payload. The low six bits
 *   pick one of the target's records (pick_targets: its is_target in key
 *   order, modulo their count); the top two bits say what to do with it
 *   (apply_input):
 *     00, 11  replace its value with the payload
 *     01      delete it (the payload is not read)
 *     10      add a record under the same prefix: the payload's bytes up
 *             to its first NUL are the rest of the key, the bytes after it
 *             the value (an existing key is replaced)
 * - The seeds: one file a seed, the selector byte then the payload, named
 *   after the record it changes (write_seed, seed_name).
 */
#ifndef FUZZ_STORE_H
#define FUZZ_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "fuzz_stream.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_mp.h"

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

/* Makes room for n more entries. */
static void kv_reserve(kv *s, size_t n)
{
    if (s->count + n <= s->cap)
        return;
    while (s->cap < s->count + n)
        s->cap = s->cap ? s->cap * 2 : 64;
    s->e = realloc(s->e, s->cap * sizeof *s->e);
    if (s->e == NULL)
        abort();
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

/* Removes entry i. */
static void kv_del(kv *s, size_t i)
{
    memmove(&s->e[i], &s->e[i + 1], (s->count - i - 1) * sizeof *s->e);
    s->count--;
}

/* s becomes a copy of from's entries (the bytes borrowed), with room for
 * one more. */
static void kv_copy(kv *s, const kv *from)
{
    s->count = 0;
    kv_reserve(s, from->count + 1);
    memcpy(s->e, from->e, from->count * sizeof *from->e);
    s->count = from->count;
}

/* Copies of a buffer, each in an allocation of its exact size (so ASan
 * sees a read past a value's end). */
static uint8_t *dup_bytes(const void *p, size_t len)
{
    uint8_t *d = malloc(len ? len : 1);
    if (d == NULL)
        abort();
    memcpy(d, p, len);
    return d;
}

/* tly_kv_put_fn of the fold's flush: the base store keeps copies, never
 * freed (they are the base store). */
static tly_err base_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    kv *s = ctx;
    kv_reserve(s, 1);
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

/* Applies ev (decoded from sb) as the engine's next record. */
static tly_err apply_next(tly_engine *e, const char *source, const msgpack_sbuffer *sb,
                          const tly_event *ev)
{
    tly_record rec = {.seq = tly_engine_seq(e) + 1,
                      .recorded_ms = REC_MS,
                      .source = {source, (uint32_t)strlen(source)},
                      .event = (const uint8_t *)sb->data,
                      .event_len = sb->size};
    return tly_engine_apply(e, &rec, ev);
}

/* Folds the stream through an engine for shard 0 of 1 and flushes it into
 * base; returns the engine's seq after the fold (the checkpoint). Aborts if
 * an event does not decode or fold (the stream is fixed). */
static uint64_t fold_stream(const char *who, kv *base)
{
    tly_engine *e;
    if (tly_engine_new(0, 1, &e) != TLY_OK)
        abort();
    size_t n = sizeof stream / sizeof stream[0];
    for (size_t i = 0; i < n; i++) {
        msgpack_sbuffer sb;
        tly_event ev;
        decode_event(who, stream[i][1], &sb, &ev);
        tly_err err = apply_next(e, stream[i][0], &sb, &ev);
        if (err != TLY_OK) {
            fprintf(stderr, "%s: apply %zu: %s\n", who, i + 1, tly_err_name(err));
            abort();
        }
        msgpack_sbuffer_destroy(&sb);
    }
    if (tly_engine_flush(e, base_put, base) != TLY_OK)
        abort();
    uint64_t checkpoint = tly_engine_seq(e);
    tly_engine_free(e);
    return checkpoint;
}

/* Fills targets (of cap) with the indexes in base of the records an input
 * picks, in key order; returns how many (aborts when none). */
static size_t pick_targets(const kv *base, bool (*is_target)(const kv_entry *), size_t *targets,
                           size_t cap)
{
    size_t count = 0;
    for (size_t i = 0; i < base->count && count < cap; i++)
        if (is_target(&base->e[i]))
            targets[count++] = i;
    if (count == 0)
        abort();
    return count;
}

/* ---- one input ---- */

/* Makes work a copy of base with entry i changed as the top two bits of
 * data[0] say (see the top; data[1...] is the payload): an added record's
 * key is keep's copy, returned (else NULL). */
static uint8_t *apply_input(kv *work, const kv *base, size_t i, const uint8_t *data, size_t size,
                            uint8_t *(*keep)(const void *p, size_t len))
{
    kv_copy(work, base);
    const uint8_t *payload = data + 1;
    size_t plen = size - 1;
    switch (data[0] >> 6) {
    case 1: /* delete */
        kv_del(work, i);
        return NULL;
    case 2: { /* add under the same prefix: key body, NUL, value */
        const uint8_t *nul = memchr(payload, 0, plen);
        size_t blen = nul ? (size_t)(nul - payload) : plen;
        size_t vstart = nul ? blen + 1 : plen;
        if (blen > ADD_KEY_BODY_MAX)
            blen = ADD_KEY_BODY_MAX;
        uint8_t key[PREFIX_BYTES + ADD_KEY_BODY_MAX];
        memcpy(key, base->e[i].key, PREFIX_BYTES);
        memcpy(key + PREFIX_BYTES, payload, blen);
        uint8_t *added = keep(key, PREFIX_BYTES + blen);
        kv_set(work, added, PREFIX_BYTES + blen, payload + vstart, plen - vstart);
        return added;
    }
    default: /* replace */
        work->e[i].val = payload;
        work->e[i].vlen = plen;
        return NULL;
    }
}

/* ---- seeds ---- */

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

/* The be32 at p. */
static unsigned be32_at(const uint8_t *p)
{
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

/* A file name for the record x, after what: "program-apex", "sale-pos-S1",
 * "claim-p1-c1", "partner-p1", "old-archive-p4-8101", "history-p1",
 * "archive-p1-8100" (sale and claim keys are u8 len ‖ first ‖ second). */
static void seed_name(const kv_entry *x, const char *what, char *out, size_t cap)
{
    const char *body = (const char *)x->key + PREFIX_BYTES;
    const uint8_t *ub = x->key + PREFIX_BYTES;
    int blen = (int)(x->klen - PREFIX_BYTES);
    switch (x->key[2]) {
    case '1':
        snprintf(out, cap, "%sprogram-%.*s", what, blen, body);
        break;
    case '3':
        if (blen > 5 && ub[0] == 0) { /* 0, be32 bucket, then as a sale's */
            body += 5;
            ub += 5;
            blen -= 5;
        }
        /* fall through */
    case '2':
        snprintf(out, cap, "%s%s-%.*s-%.*s", what, x->key[2] == '2' ? "sale" : "claim", ub[0],
                 body + 1, blen - 1 - ub[0], body + 1 + ub[0]);
        break;
    case '5': /* u8 len, partner, be32 period */
        snprintf(out, cap, "%sold-archive-%.*s-%u", what, ub[0], body + 1, be32_at(ub + blen - 4));
        break;
    case '6':
        snprintf(out, cap, "%shistory-%.*s", what, blen, body);
        break;
    case '7': /* be32 period, u8 len, partner */
        snprintf(out, cap, "%sarchive-%.*s-%u", what, blen - 5, body + 5, be32_at(ub));
        break;
    default:
        snprintf(out, cap, "%spartner-%.*s", what, blen, body);
        break;
    }
}

/* Index in targets (count of them, in base) of the first record whose key
 * starts with key (a claim's: its key without its bucket), or abort. */
static size_t target_of(const kv *base, const size_t *targets, size_t count, const char *key)
{
    size_t n = strlen(key);
    for (size_t t = 0; t < count; t++) {
        const kv_entry *x = &base->e[targets[t]];
        /* a claim's key without its bucket (0, be32) */
        size_t skip = x->klen > 9 && memcmp(x->key, "S/3/", 4) == 0 && x->key[4] == 0 ? 5 : 0;
        if (x->klen - skip >= n && memcmp(x->key, key, n < 4 ? n : 4) == 0 &&
            (n <= 4 || memcmp(x->key + 4 + skip, key + 4, n - 4) == 0))
            return t;
    }
    abort();
}

/* Writes each record of targets (count of them, in base) as it is, under
 * its selector, and deleted, for each key of gone (n of them: the first
 * record whose key starts with it). */
static void write_record_seeds(const char *dir, const kv *base, const size_t *targets, size_t count,
                               const char *const *gone, size_t n)
{
    char name[512];
    for (size_t t = 0; t < count; t++) {
        const kv_entry *x = &base->e[targets[t]];
        seed_name(x, "", name, sizeof name);
        write_seed(dir, name, (uint8_t)t, x->val, x->vlen, "", 0);
    }
    for (size_t i = 0; i < n; i++) {
        size_t t = target_of(base, targets, count, gone[i]);
        seed_name(&base->e[targets[t]], "delete-", name, sizeof name);
        write_seed(dir, name, (uint8_t)(0x40 | t), "", 0, "", 0);
    }
}

#endif
