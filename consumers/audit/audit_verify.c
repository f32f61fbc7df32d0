/*
 * audit_verify.c — `tally audit verify` [D14]: one pass over the log in one
 * LMDB read snapshot.
 *
 * The log is read with LMDB directly rather than through tly_log_reader:
 * the audit must name exactly what is wrong with a record (a gap, a key that
 * differs from the seq inside, a value that does not decode), where the
 * reader only says "corrupt", and an audit should not lean on the code it
 * audits more than it must. The chain hash and the record and event
 * decoders are shared on purpose: they are the definitions being checked,
 * and the export test recomputes the chain independently of them.
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
    MDB_txn *txn;
    MDB_dbi ids;
    uint64_t expect; /* the seq the next record must have */
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
static bool check_key(verify_state *st, const MDB_val *key)
{
    if (key->mv_size != 8)
        return fail(st, st->expect, "stored key is %zu bytes, not 8", key->mv_size);
    uint64_t k = tly_audit_get_be64(key->mv_data);
    if (k > st->expect)
        return fail(st, st->expect, "missing (gap: the next stored seq is %llu)",
                    (unsigned long long)k);
    if (k < st->expect)
        return fail(st, k, "out of order (expected seq %llu)", (unsigned long long)st->expect);
    return true;
}

/* The stored record: shape, seq inside, source, chain hash, recorded_ms. */
static bool check_record(verify_state *st, const MDB_val *val, tly_record *rec)
{
    uint64_t seq = st->expect;
    if (tly_record_decode(val->mv_data, val->mv_size, rec) != TLY_OK)
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
    uint8_t key[2 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX];
    tly_str id = st->ev.id;
    key[0] = (uint8_t)(rec->source.len >> 8);
    key[1] = (uint8_t)rec->source.len;
    memcpy(key + 2, rec->source.ptr, rec->source.len);
    memcpy(key + 2 + rec->source.len, id.ptr, id.len);
    MDB_val k = {2 + rec->source.len + id.len, key}, v;
    int rc = mdb_get(st->txn, st->ids, &k, &v);
    if (rc == MDB_NOTFOUND)
        return fail(st, rec->seq, "(source, id) missing from the idempotency index");
    if (rc != 0)
        return fail(st, rec->seq, "idempotency index: %s", mdb_strerror(rc));
    if (v.mv_size != 8)
        return fail(st, rec->seq, "idempotency index value is not 8 bytes");
    uint64_t at = tly_audit_get_be64(v.mv_data);
    if (at != rec->seq)
        return fail(st, rec->seq, "(source, id) is also at seq %llu (duplicate id)",
                    (unsigned long long)at);
    return true;
}

/* Checks one stored record and advances the state. */
static bool check_one(verify_state *st, const MDB_val *key, const MDB_val *val)
{
    tly_record rec;
    if (!check_key(st, key) || !check_record(st, val, &rec) || !check_event(st, &rec) ||
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

/* Seq of the last key, for the progress total (0 for an empty log). */
static uint64_t last_seq(MDB_cursor *cur)
{
    MDB_val k, v;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) != 0 || k.mv_size != 8)
        return 0;
    return tly_audit_get_be64(k.mv_data);
}

/* Every index entry belongs to one record: more entries than records means
 * the index knows identities the log does not hold. */
static void check_ids_count(verify_state *st)
{
    MDB_stat ms;
    int rc = mdb_stat(st->txn, st->ids, &ms);
    if (rc != 0)
        fail(st, 0, "idempotency index: %s", mdb_strerror(rc));
    else if (ms.ms_entries != st->out->records)
        fail(st, 0, "idempotency index holds %llu entries for %llu records",
             (unsigned long long)ms.ms_entries, (unsigned long long)st->out->records);
}

/* Walks the whole log with a cursor. */
static tly_err walk(verify_state *st, MDB_dbi log, tly_audit_progress_fn progress, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(st->txn, log, &cur);
    if (rc != 0)
        return tly_audit_lmdb_err(rc, "log cursor");
    uint64_t total = last_seq(cur);
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && check_one(st, &k, &v)) {
        if (progress && st->out->records % TLY_AUDIT_PROGRESS_RECORDS == 0)
            progress(ctx, st->out->records, total);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return tly_audit_lmdb_err(rc, "log cursor");
    if (progress)
        progress(ctx, st->out->records, total);
    if (st->out->ok)
        check_ids_count(st);
    return TLY_OK;
}

/* Opens both databases of the log inside txn. */
static tly_err open_dbis(MDB_txn *txn, MDB_dbi *log, MDB_dbi *ids)
{
    int rc = mdb_dbi_open(txn, "log", 0, log);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "ids", 0, ids);
    return rc == 0 ? TLY_OK : tly_audit_lmdb_err(rc, "log databases");
}

tly_err tly_audit_verify(const char *log_dir, tly_audit_progress_fn progress, void *ctx,
                         tly_audit_verdict *out)
{
    MDB_env *env;
    tly_err err = tly_audit_env_open(log_dir, 4, &env);
    if (err != TLY_OK)
        return err;
    verify_state *st = calloc(1, sizeof *st);
    if (!st) {
        mdb_env_close(env);
        return TLY_NOMEM;
    }
    MDB_dbi log;
    err = tly_audit_txn_begin(env, &st->txn);
    if (err == TLY_OK) {
        err = open_dbis(st->txn, &log, &st->ids);
        if (err == TLY_OK) {
            tly_audit_verdict v = {.ok = true};
            st->out = &v;
            st->expect = 1;
            err = walk(st, log, progress, ctx);
            if (err == TLY_OK)
                *out = v;
        }
        mdb_txn_abort(st->txn);
    }
    free(st);
    mdb_env_close(env);
    return err;
}
