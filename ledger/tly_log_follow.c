/*
 * tly_log_follow.c — appending records exactly as a replica holds them
 * (SPEC section 12): the catch-up of a writer on restart [N3] and a
 * standby following the stream [N4]. Unlike tly_log_append nothing is
 * decided here: each record must already be the next link of the chain,
 * and anything else is refused whole.
 */
#include <stdio.h>
#include <string.h>

#include "log_internal.h"
#include "tly_assert.h"

/* The chain state a run of records is checked against. */
typedef struct follow {
    tly_log *log;
    MDB_txn *txn;
    uint64_t seq; /* of the last record checked */
    int64_t recorded_ms;
    uint8_t hash[TLY_HASH_BYTES];
} follow;

/* Checks that raw is the record after f's state; on success moves f on
 * and returns its decoded form in *rec. */
static tly_err check_next(follow *f, const tly_log_stored *s, tly_record *rec, tly_str *id,
                          char *msg, size_t cap)
{
    if (tly_record_decode(s->raw, s->raw_len, rec) != TLY_OK) {
        snprintf(msg, cap, "the record does not decode");
        return TLY_CORRUPT;
    }
    if (rec->seq != f->seq + 1) {
        snprintf(msg, cap, "it carries seq %llu", (unsigned long long)rec->seq);
        return TLY_CORRUPT;
    }
    if (rec->recorded_ms < f->recorded_ms) {
        snprintf(msg, cap, "its recorded time goes back");
        return TLY_CORRUPT;
    }
    uint8_t hash[TLY_HASH_BYTES];
    tly_chain_hash(f->hash, rec->seq, rec->recorded_ms, rec->source, rec->event, rec->event_len,
                   hash);
    if (memcmp(hash, rec->hash, TLY_HASH_BYTES) != 0) {
        snprintf(msg, cap, "its hash does not chain to the record before");
        return TLY_CORRUPT;
    }
    tly_ev_type type;
    if (rec->source.len == 0 || rec->source.len > TLY_SOURCE_BYTES_MAX ||
        tly_event_peek_id(rec->event, rec->event_len, &type, id) != TLY_OK || id->len == 0 ||
        id->len > TLY_ID_BYTES_MAX) {
        snprintf(msg, cap, "its source or event id is not one the ledger accepts");
        return TLY_CORRUPT;
    }
    f->seq = rec->seq;
    f->recorded_ms = rec->recorded_ms;
    memcpy(f->hash, hash, TLY_HASH_BYTES);
    return TLY_OK;
}

/* Writes one checked record; an LMDB code (MDB_KEYEXIST: its (source, id)
 * is stored already). */
static int put_record(follow *f, const tly_log_stored *s, const tly_record *rec, tly_str id)
{
    uint8_t seq_key[8];
    tly_be64_put(seq_key, rec->seq);
    MDB_val k = {8, seq_key}, v = {s->raw_len, (void *)s->raw};
    int rc = mdb_put(f->txn, f->log->dbi_log, &k, &v, MDB_APPEND);
    if (rc != MDB_SUCCESS)
        return rc;
    uint8_t id_key[TLY_LOG_IDS_KEY_BYTES_MAX];
    MDB_val ik = {tly__log_ids_key(rec->source, id, id_key), id_key}, iv = {8, seq_key};
    return mdb_put(f->txn, f->log->dbi_ids, &ik, &iv, MDB_NOOVERWRITE);
}

/* One attempt in one transaction. *map_full when LMDB ran out of map (the
 * transaction is gone; grow and retry). */
static tly_err attempt(follow *f, const tly_log_stored *recs, uint32_t count, uint64_t *bad_seq,
                       char *msg, size_t cap, bool *map_full)
{
    int rc = mdb_txn_begin(f->log->env, NULL, 0, &f->txn);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_txn_begin (write)");
    for (uint32_t i = 0; i < count && rc == MDB_SUCCESS; i++) {
        tly_record rec;
        tly_str id;
        tly_err err = check_next(f, &recs[i], &rec, &id, msg, cap);
        rc = err == TLY_OK ? put_record(f, &recs[i], &rec, id) : MDB_SUCCESS;
        if (err != TLY_OK || rc == MDB_KEYEXIST) {
            if (rc == MDB_KEYEXIST)
                snprintf(msg, cap, "its (source, id) is stored already at another seq");
            *bad_seq = f->seq + (err == TLY_OK ? 0 : 1);
            mdb_txn_abort(f->txn);
            return TLY_CORRUPT;
        }
    }
    if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(f->txn); /* frees the transaction, also on failure */
    else
        mdb_txn_abort(f->txn);
    *map_full = rc == MDB_MAP_FULL;
    if (rc != MDB_SUCCESS && !*map_full)
        return tly__log_mdb_err(rc, "append of stored records");
    return TLY_OK;
}

static tly_err check_size(const tly_log_stored *recs, uint32_t count)
{
    if (count > TLY_LOG_BATCH_ITEMS_MAX)
        return TLY_TOO_LARGE;
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (recs[i].raw_len > TLY_LOG_COMMIT_BYTES_MAX - bytes)
            return TLY_TOO_LARGE;
        bytes += recs[i].raw_len;
    }
    return TLY_OK;
}

tly_err tly_log_append_stored(tly_log *log, const tly_log_stored *recs, uint32_t count,
                              uint64_t *bad_seq, char *msg, size_t cap)
{
    TLY_ASSERT(log && log->writer && (recs || count == 0));
    tly_err err = check_size(recs, count);
    if (err == TLY_OK && count > 0)
        err = tly__log_same_file(log);
    if (err != TLY_OK || count == 0)
        return err;
    for (uint32_t n = 0; n < TLY_LOG_GROW_ATTEMPTS_MAX; n++) {
        follow f = {log, NULL, log->head_seq, log->head_recorded_ms, {0}};
        memcpy(f.hash, log->head_hash, TLY_HASH_BYTES);
        bool map_full = false;
        err = attempt(&f, recs, count, bad_seq, msg, cap, &map_full);
        if (err == TLY_OK && !map_full) {
            log->head_seq = f.seq;
            log->head_recorded_ms = f.recorded_ms;
            memcpy(log->head_hash, f.hash, TLY_HASH_BYTES);
            return TLY_OK;
        }
        if (err == TLY_OK)
            err = tly__log_grow_map(log);
        if (err != TLY_OK)
            return err;
    }
    return TLY_STORAGE;
}
