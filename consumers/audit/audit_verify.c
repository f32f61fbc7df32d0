/*
 * audit_verify.c — `tally audit verify` [D14]: one pass over the log in one
 * read snapshot.
 *
 * The log is read through the ledger's raw scan (tly_log_scan) rather than
 * through tly_log_reader: the audit must name exactly what is wrong with a
 * record (a gap, a key that differs from the seq inside, a value that does
 * not decode), where the reader only says "corrupt", and an audit should not
 * lean on the code it audits more than it must: the scan hands over the
 * stored bytes unchecked. The chain hash and the record and event decoders
 * are shared on purpose: they are the definitions being checked, and the
 * export test recomputes the chain independently of them.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "tly_audit.h"
#include "tly_event.h"
#include "tly_log.h"

/* Everything one verification pass carries from record to record. */
typedef struct verify_state {
    tly_log_scan *scan; /* the snapshot being verified */
    uint64_t expect;    /* the seq the next record must have */
    uint8_t prev_hash[TLY_HASH_BYTES];
    int64_t prev_ms;
    tly_event ev; /* reused: it is large */
    tly_audit_verdict *out;
} verify_state;

/* Marks the verdict bad at seq with a formatted reason. Returns false so
 * callers can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static bool fail(verify_state *st, uint64_t seq,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    st->out->ok = false;
    st->out->bad_seq = seq;
    vsnprintf(st->out->error, sizeof st->out->error, fmt, ap);
    va_end(ap);
    return false;
}

/* Length of the UTF-8 sequence a lead byte starts; 0 for a bad lead. */
static size_t utf8_seq_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        return 2;
    if ((c & 0xf0) == 0xe0)
        return 3;
    return (c & 0xf8) == 0xf0 ? 4 : 0;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t len)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(s[i]);
        if (n == 0 || n > len - i)
            return false;
        uint32_t cp = n == 1 ? s[i] : s[i] & (0x7fu >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

/* The key and the seq inside the value must be the next seq [D14]. */
static bool check_key(verify_state *st, const tly_log_raw *raw)
{
    if (raw->key_len != 8)
        return fail(st, st->expect, "stored key is %zu bytes, not 8", raw->key_len);
    uint64_t k = tly_audit_get_be64(raw->key);
    if (k > st->expect)
        return fail(st, st->expect, "missing (gap: the next stored seq is %llu)",
                    (unsigned long long)k);
    if (k < st->expect)
        return fail(st, k, "out of order (expected seq %llu)", (unsigned long long)st->expect);
    return true;
}

/* The stored record: shape, seq inside, source, chain hash, recorded_ms. */
static bool check_record(verify_state *st, const tly_log_raw *raw, tly_record *rec)
{
    uint64_t seq = st->expect;
    if (tly_record_decode(raw->val, raw->val_len, rec) != TLY_OK)
        return fail(st, seq, "record does not decode");
    if (rec->seq != seq)
        return fail(st, seq, "record says seq %llu", (unsigned long long)rec->seq);
    if (rec->source.len < 1 || rec->source.len > TLY_SOURCE_BYTES_MAX ||
        !utf8_valid((const uint8_t *)rec->source.ptr, rec->source.len))
        return fail(st, seq, "source is not 1..%u bytes of UTF-8", TLY_SOURCE_BYTES_MAX);
    uint8_t h[TLY_HASH_BYTES];
    tly_chain_hash(st->prev_hash, seq, rec->recorded_ms, rec->source, rec->event, rec->event_len,
                   h);
    if (memcmp(h, rec->hash, TLY_HASH_BYTES) != 0)
        return fail(st, seq, "hash mismatch");
    if (rec->recorded_ms < st->prev_ms)
        return fail(st, seq, "recorded_ms %lld is before the previous %lld",
                    (long long)rec->recorded_ms, (long long)st->prev_ms);
    return true;
}

/* The event validates with the record's recorded time [D14]. */
static bool check_event(verify_state *st, const tly_record *rec)
{
    tly_field_error fe = {{0}, {0}};
    tly_err err = tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, &st->ev, &fe);
    if (err == TLY_OK)
        return true;
    return fail(st, rec->seq, "event invalid: %s%s%s%s%s", tly_err_name(err),
                fe.field[0] ? " " : "", fe.field, fe.message[0] ? ": " : "", fe.message);
}

/* The idempotency index maps this record's (source, id) to its seq: a
 * second record with the same identity, or an index that lost one, shows
 * here. */
static bool check_ids(verify_state *st, const tly_record *rec)
{
    const uint8_t *v;
    size_t len;
    tly_err err = tly_log_scan_ids_get(st->scan, rec->source, st->ev.id, &v, &len);
    if (err == TLY_NOT_FOUND)
        return fail(st, rec->seq, "(source, id) missing from the idempotency index");
    if (err != TLY_OK)
        return fail(st, rec->seq, "idempotency index: %s", tly_strerror(err));
    if (len != 8)
        return fail(st, rec->seq, "idempotency index value is not 8 bytes");
    uint64_t at = tly_audit_get_be64(v);
    if (at != rec->seq)
        return fail(st, rec->seq, "(source, id) is also at seq %llu (duplicate id)",
                    (unsigned long long)at);
    return true;
}

/* Checks one stored record and advances the state. */
static bool check_one(verify_state *st, const tly_log_raw *raw)
{
    tly_record rec;
    if (!check_key(st, raw) || !check_record(st, raw, &rec) || !check_event(st, &rec) ||
        !check_ids(st, &rec))
        return false;
    memcpy(st->prev_hash, rec.hash, TLY_HASH_BYTES);
    st->prev_ms = rec.recorded_ms;
    st->out->records++;
    st->out->head_seq = rec.seq;
    memcpy(st->out->head_hash, rec.hash, TLY_HASH_BYTES);
    st->expect++;
    return true;
}

/* Every index entry belongs to one record: more entries than records means
 * the index knows identities the log does not hold. */
static void check_ids_count(verify_state *st)
{
    uint64_t entries;
    tly_err err = tly_log_scan_ids_count(st->scan, &entries);
    if (err != TLY_OK)
        fail(st, 0, "idempotency index: %s", tly_strerror(err));
    else if (entries != st->out->records)
        fail(st, 0, "idempotency index holds %llu entries for %llu records",
             (unsigned long long)entries, (unsigned long long)st->out->records);
}

/* Walks the whole log in the scan's snapshot; the progress total is the
 * last key's seq. TLY_OK (the verdict says the rest), or the scan's error. */
static tly_err walk(verify_state *st, tly_audit_progress_fn progress, void *ctx)
{
    uint64_t total = tly_log_scan_last_seq(st->scan);
    tly_log_raw raw;
    tly_err err = tly_log_scan_next(st->scan, &raw);
    while (err == TLY_OK && check_one(st, &raw)) {
        if (progress && st->out->records % TLY_AUDIT_PROGRESS_RECORDS == 0)
            progress(ctx, st->out->records, total);
        err = tly_log_scan_next(st->scan, &raw);
    }
    if (err != TLY_OK && err != TLY_NOT_FOUND)
        return err;
    if (progress)
        progress(ctx, st->out->records, total);
    if (st->out->ok)
        check_ids_count(st);
    return TLY_OK;
}

tly_err tly_audit_verify(const char *log_dir, tly_audit_progress_fn progress, void *ctx,
                         tly_audit_verdict *out)
{
    tly_log *log;
    tly_err err = tly_log_open(log_dir, TLY_LOG_READ, &log);
    if (err != TLY_OK)
        return err;
    verify_state *st = calloc(1, sizeof *st);
    if (!st) {
        tly_log_close(log);
        return TLY_NOMEM;
    }
    err = tly_log_scan_open(log, &st->scan);
    if (err == TLY_OK) {
        tly_audit_verdict v = {.ok = true};
        st->out = &v;
        st->expect = 1;
        err = walk(st, progress, ctx);
        if (err == TLY_OK)
            *out = v;
        tly_log_scan_close(st->scan);
    }
    free(st);
    tly_log_close(log);
    return err;
}
