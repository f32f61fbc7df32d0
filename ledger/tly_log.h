/*
 * tly_log.h — the append-only, hash-chained event log on LMDB (SPEC section 3).
 *
 * Layout of the LMDB environment DIR (a directory):
 *   named database "log": key u64be seq (1, 2, ... no gaps, MDB_APPEND),
 *     value MessagePack [seq, recorded_ms, source, event(bin), hash(bin 32)].
 *   named database "ids": key u16be(len(source)) ‖ source ‖ id, value u64be seq.
 *     The idempotency index on (source, event id).
 *
 * One process writes (tly_log_open with TLY_LOG_WRITE: the ledger); any number
 * of processes read (consumers, audit), also while the ledger runs.
 *
 * hash[n] = SHA-256(hash[n-1] ‖ u64be(seq) ‖ u64be(recorded_ms) ‖
 *                   u16be(len(source)) ‖ source ‖ event), hash[0] = 32 zero bytes.
 */
#ifndef TLY_LOG_H
#define TLY_LOG_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_event.h"

#define TLY_HASH_BYTES 32u

/* One stored record, decoded. Pointers borrow from the buffer it was decoded
 * from (for a reader: valid until the next tly_log_reader_next or close). */
typedef struct tly_record {
    uint64_t seq;
    int64_t recorded_ms;
    tly_str source;
    const uint8_t *event; /* the event's MessagePack bytes exactly as accepted */
    size_t event_len;
    const uint8_t *hash;  /* TLY_HASH_BYTES */
    const uint8_t *raw;   /* the whole stored value */
    size_t raw_len;
} tly_record;

/* Decodes a stored value: exactly [seq, recorded_ms, source, bin, bin32].
 * Returns TLY_OK or TLY_CORRUPT. */
tly_err tly_record_decode(const void *buf, size_t len, tly_record *rec);

/* Appends the stored encoding of a record to out. */
tly_err tly_record_encode(msgpack_sbuffer *out, uint64_t seq, int64_t recorded_ms,
                          tly_str source, const void *event, size_t event_len,
                          const uint8_t hash[TLY_HASH_BYTES]);

/* Computes the chain hash of a record from the previous hash. */
void tly_chain_hash(const uint8_t prev[TLY_HASH_BYTES], uint64_t seq, int64_t recorded_ms,
                    tly_str source, const void *event, size_t event_len,
                    uint8_t out[TLY_HASH_BYTES]);

typedef struct tly_log tly_log;

enum {
    TLY_LOG_READ = 0,     /* read-only; the directory must exist */
    TLY_LOG_WRITE = 1,    /* the single writer; creates the directory */
    TLY_LOG_NO_SYNC = 2   /* with WRITE: do not fsync commits (--no-sync) */
};

/* Opens the log environment in dir. Returns TLY_OK, TLY_NOT_FOUND (no log
 * there, READ), TLY_STORAGE or TLY_CORRUPT (the head record does not decode).
 * Close with tly_log_close. */
tly_err tly_log_open(const char *dir, int flags, tly_log **out);
void tly_log_close(tly_log *log);

/* Last seq (0 for an empty log) and its hash (zeros for an empty log). For a
 * reader this is read fresh from the environment. */
tly_err tly_log_head(tly_log *log, uint64_t *seq, uint8_t hash[TLY_HASH_BYTES]);

/* One event offered for append. Inputs: source, id, event bytes, and err:
 * an item whose err is not TLY_OK on input is skipped (already rejected by
 * validation) but still counts for its atomic group. Outputs: err, seq, dup. */
typedef struct tly_log_item {
    tly_str source;
    tly_str id;
    const uint8_t *event;
    size_t event_len;
    tly_err err;  /* in: TLY_OK to append; out: result */
    uint64_t seq; /* out: the seq assigned, or the original seq for a dup */
    bool dup;     /* out: (source, id) was accepted before with the same bytes */
} tly_log_item;

/* A run of items items[first .. first+count) from one request. When atomic,
 * either every item of the group that is not a dup is appended, or none is:
 * a failure of one marks the others TLY_ATOMIC_ABORTED. */
typedef struct tly_log_group {
    uint32_t first;
    uint32_t count;
    bool atomic;
} tly_log_group;

/*
 * Appends a batch in one write transaction (group commit) and makes it
 * durable before returning (unless TLY_LOG_NO_SYNC). Groups are resolved in
 * order; items within a batch see each other (a second copy of an id in the
 * same batch is a dup, or a conflict if its bytes differ). recorded_ms of the
 * batch is max(now_ms, previous recorded_ms) [D12].
 *
 * Grows the map and retries when LMDB reports it full. Returns TLY_OK when
 * the transaction committed (each item's err says its own outcome), or
 * TLY_STORAGE when it could not commit: then nothing was appended and every
 * item that was to be appended has err TLY_STORAGE.
 */
tly_err tly_log_append(tly_log *log, int64_t now_ms, tly_log_item *items, uint32_t item_count,
                       const tly_log_group *groups, uint32_t group_count);

/* Seq of the record appended for (source, id), or TLY_NOT_FOUND. */
tly_err tly_log_lookup(tly_log *log, tly_str source, tly_str id, uint64_t *seq);

/* A read cursor over records in seq order, in one LMDB read transaction
 * (a consistent snapshot). Use from any process; reopen to see new records. */
typedef struct tly_log_reader tly_log_reader;

/* Starts reading at from_seq (≥ 1). */
tly_err tly_log_reader_open(tly_log *log, uint64_t from_seq, tly_log_reader **out);
/* Next record: TLY_OK, TLY_NOT_FOUND at the end of the snapshot, TLY_CORRUPT
 * when a stored value does not decode or its key differs from its seq. */
tly_err tly_log_reader_next(tly_log_reader *rd, tly_record *rec);
void tly_log_reader_close(tly_log_reader *rd);

#endif
