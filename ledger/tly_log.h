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
 * Threads: a handle's append, head and lookup are for one thread at a time;
 * readers (tly_log_reader_*) may be opened and used from any thread, each
 * reader by one thread at a time.
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
#include "tly_limits.h"
#include "tly_record.h"

/* --- limits of the log store (kept here rather than in tly_limits.h because
 * only the ledger, the single writer, is bound by them) --- */

typedef struct tly_log tly_log;

enum {
    TLY_LOG_READ = 0,   /* read-only; the directory must exist */
    TLY_LOG_WRITE = 1,  /* the single writer; creates the directory */
    TLY_LOG_NO_SYNC = 2 /* with WRITE: do not fsync commits (--no-sync) */
};

/*
 * Opens the log environment in dir.
 *
 * TLY_LOG_WRITE creates dir (and missing parents) and the two databases,
 * loads the head (seq, hash, recorded_ms) from the last record and checks
 * that it decodes. Only one writer may hold a log: a second gets
 * TLY_UNAVAILABLE (an flock on dir/writer.lock, released at close or exit).
 *
 * TLY_LOG_READ never creates anything: a missing dir, a dir without
 * data.mdb or without the "log" database is TLY_NOT_FOUND.
 *
 * LMDB allows one environment per process per path: open a directory at
 * most once per process (the daemon reads through its writer handle).
 *
 * Returns TLY_OK, TLY_NOT_FOUND, TLY_UNAVAILABLE, TLY_STORAGE (LMDB or I/O
 * failure, logged on stderr), TLY_CORRUPT (the head record does not decode)
 * or TLY_NOMEM. *out is written only on success. Close with tly_log_close.
 */
tly_err tly_log_open(const char *dir, int flags, tly_log **out);

/* Options of tly_log_open_opts; a zero field takes its default. */
typedef struct tly_log_opts {
    /* WRITE: map size a new environment starts with; an existing one keeps
     * its own size if larger. Default TLY_LOG_MAP_BYTES_INIT. */
    size_t map_bytes_init;
    /* WRITE: the map never grows beyond this; an append that does not fit
     * is TLY_STORAGE. Default: $TALLY_LOG_MAP_MAX_BYTES when set (a decimal
     * byte count, meant for tests that simulate a full disk through the
     * tally binary), else TLY_LOG_MAP_BYTES_MAX. */
    size_t map_bytes_max;
} tly_log_opts;

/* tly_log_open with options (NULL: all defaults). */
tly_err tly_log_open_opts(const char *dir, int flags, const tly_log_opts *opts, tly_log **out);

/* Closes the environment; a writer first syncs it to disk (this makes a
 * TLY_LOG_NO_SYNC log durable at a clean stop). Every reader of this
 * handle must be closed first. NULL is a no-op. */
void tly_log_close(tly_log *log);

/* Current map size in bytes (it grows by doubling when full). */
size_t tly_log_map_bytes(tly_log *log);

/* Last seq (0 for an empty log) and its hash (zeros for an empty log). For a
 * writer this is the in-memory head; for a reader it is read fresh from the
 * environment (TLY_CORRUPT if the last record does not decode). hash may be
 * NULL. Outputs are written only on TLY_OK. */
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
 * durable before returning (unless TLY_LOG_NO_SYNC). A batch whose events
 * exceed TLY_LOG_COMMIT_BYTES_MAX is committed in several transactions,
 * each holding whole groups. Groups are resolved in
 * order; items within a batch see each other (a second copy of an id in the
 * same batch is a dup, or a conflict if its bytes differ). recorded_ms of the
 * batch is max(now_ms, previous recorded_ms) [D12].
 *
 * groups must partition items in order: groups[0].first == 0, each group
 * starts where the previous one ended, and the counts sum to item_count
 * (asserted). groups may be NULL with group_count 0: one non-atomic group.
 *
 * Per item (err TLY_OK on input): source 1..TLY_SOURCE_BYTES_MAX and id
 * 1..TLY_ID_BYTES_MAX bytes, else TLY_BAD_FIELD; event 1..TLY_FRAME_BYTES_MAX
 * bytes, else TLY_TOO_LARGE (or TLY_MALFORMED when empty). Then TLY_OK with
 * its new seq, TLY_OK with dup and the original seq, TLY_CONFLICT, or
 * TLY_ATOMIC_ABORTED. In an atomic group a dup of a record stored before
 * (or appended by an earlier group) stays a dup; a dup of an item of the
 * same aborted group is aborted with it.
 *
 * Grows the map and retries when LMDB reports it full. Returns:
 * - TLY_OK: the transaction committed (or there was nothing to append);
 *   each item's err says its own outcome.
 * - TLY_TOO_LARGE: item_count > TLY_LOG_BATCH_ITEMS_MAX or one group's
 *   events exceed TLY_LOG_COMMIT_BYTES_MAX (impossible for a group built
 *   from one frame); nothing was done, items are untouched.
 * - TLY_STORAGE (disk full, I/O, map at its maximum), TLY_CORRUPT (a
 *   stored record needed for a dup check does not decode) or TLY_NOMEM: a
 *   commit failed. Nothing of it was appended and the log and the
 *   in-memory head are as after the previous commit; every item that was
 *   to be appended by it or a later one, or was a dup of such an item, has
 *   err TLY_STORAGE. Outcomes decided against the committed log (dup of a
 *   stored record, conflict, aborted) are kept. Only a batch split into
 *   several commits can have appended part of its groups (their items have
 *   their seqs); the head tells. The next call may succeed.
 * After a fatal LMDB error (MDB_PANIC: a failed write of the meta page, an
 * I/O error) every later append fails with TLY_STORAGE until the handle is
 * closed and reopened; the log on disk is the last committed state. So
 * does every append once DIR/writer.lock is no longer the file the writer
 * locked (the log removed, or removed and made anew by another writer):
 * nothing is acknowledged into a file that is gone.
 *
 * Writer only, one thread at a time. No allocation per event: scratch space
 * is kept in the handle and grows to the largest batch seen.
 */
tly_err tly_log_append(tly_log *log, int64_t now_ms, tly_log_item *items, uint32_t item_count,
                       const tly_log_group *groups, uint32_t group_count);

/* A replica of the log (SPEC section 12, [N2]): what tly_log_append hands
 * every record it writes to before it commits. Each attempt at a commit
 * calls begin, then record for each new record in seq order (raw: its
 * stored bytes, borrowed for the call), then, once all are written,
 * commit: the LMDB transaction commits only when commit returns TLY_OK.
 * Any other return aborts it: the items that were to be appended get that
 * error (TLY_UNAVAILABLE for a replica that did not acknowledge) and
 * tly_log_append returns it. A transaction that fails after commit
 * returned TLY_OK leaves the replica ahead of the log (the caller catches
 * up, see tly_log_append_stored). The callbacks run on the appending
 * thread; ctx is theirs. */
typedef struct tly_log_replica {
    void *ctx;
    void (*begin)(void *ctx);
    tly_err (*record)(void *ctx, uint64_t seq, const uint8_t *raw, size_t raw_len);
    tly_err (*commit)(void *ctx);
} tly_log_replica;

/* Sets (replica non-NULL, copied) or clears (NULL) the writer's replica.
 * Writer only, not during an append. */
void tly_log_set_replica(tly_log *log, const tly_log_replica *replica);

/* One stored record as a replica holds it: the bytes of section 3. */
typedef struct tly_log_stored {
    const uint8_t *raw;
    size_t raw_len;
} tly_log_stored;

/*
 * Appends records exactly as a replica holds them (SPEC section 12, [N3]
 * [N4]), in one durable transaction, without calling the replica. Each must
 * decode, carry seq head + 1 (then + 2, ...), a recorded_ms not below the
 * one before and the chain hash of its content after the one before, and an
 * event whose (source, id) is not stored yet: the records then extend the
 * verified chain, and the ids index learns them as tly_log_append would.
 * count ≤ TLY_LOG_BATCH_ITEMS_MAX and the bytes ≤ TLY_LOG_COMMIT_BYTES_MAX,
 * else TLY_TOO_LARGE. Returns TLY_OK, TLY_CORRUPT (the first record that is
 * not so: *bad_seq gets its position's seq and why into msg; nothing is
 * appended), TLY_STORAGE or TLY_NOMEM. Writer only, one thread at a time.
 */
tly_err tly_log_append_stored(tly_log *log, const tly_log_stored *recs, uint32_t count,
                              uint64_t *bad_seq, char *msg, size_t cap);

/* Seq of the record appended for (source, id): TLY_OK, TLY_NOT_FOUND, or
 * TLY_STORAGE. Works on writer and reader handles (committed records only). */
tly_err tly_log_lookup(tly_log *log, tly_str source, tly_str id, uint64_t *seq);

/* A read cursor over records in seq order, in one LMDB read transaction
 * (a consistent snapshot). Use from any process; reopen to see new records.
 * An open reader pins the pages of its snapshot: keep it short-lived (read,
 * close, reopen later), and close it before tly_log_close. On a writer
 * handle a reader open from another thread delays map growth (up to
 * TLY_LOG_GROW_WAIT_MS, then that append fails with TLY_STORAGE). */
typedef struct tly_log_reader tly_log_reader;

/* Starts reading at from_seq (0 reads from 1, like 1). Returns TLY_OK,
 * TLY_STORAGE or TLY_NOMEM; *out only on success. */
tly_err tly_log_reader_open(tly_log *log, uint64_t from_seq, tly_log_reader **out);
/* Next record: TLY_OK, TLY_NOT_FOUND at the end of the snapshot, TLY_CORRUPT
 * when a stored value does not decode, its key differs from its seq, or a
 * seq is missing (the first record returned must be from_seq unless the
 * snapshot ends before it). rec borrows from the snapshot: valid until
 * tly_log_reader_close. After TLY_CORRUPT every further call returns
 * TLY_CORRUPT: a reader never skips a bad record. */
tly_err tly_log_reader_next(tly_log_reader *rd, tly_record *rec);
/* The next record's seq and stored bytes, not decoded: for the writer's
 * own records on their way out (the ledger publishes each batch it just
 * appended, and every subscriber decodes and checks what it receives).
 * The same as tly_log_reader_next otherwise, seq checks included; a value
 * that does not decode is not noticed. */
tly_err tly_log_reader_next_raw(tly_log_reader *rd, uint64_t *seq, const uint8_t **raw,
                                size_t *raw_len);
void tly_log_reader_close(tly_log_reader *rd);

/* Drops this process's page-table entries for the whole map of the log
 * (madvise MADV_DONTNEED), so the records a long sequential read has passed
 * stop counting in its resident memory; the file's pages stay in the page
 * cache, and reading one again faults it back in with the same bytes. The
 * reader and every record it returned stay valid. Meant for a reader that
 * walks far more of the log than it keeps (a consumer folding from
 * scratch), every few MB. Does nothing on a map written through (never the
 * case: the log is not opened with MDB_WRITEMAP). Same thread rules as
 * tly_log_reader_next. */
void tly_log_reader_release(tly_log_reader *rd);

/* A raw scan of one read snapshot, for an auditor that must name exactly
 * what is wrong with the stored bytes (tly_log_reader only says "corrupt"):
 * the "log" database's entries as stored, in key order, checked by nothing,
 * and the "ids" index of the same snapshot. Same rules as a reader: any
 * thread, one thread at a time per scan, keep it short-lived, close it
 * before tly_log_close. Failures of LMDB are logged on stderr. */
typedef struct tly_log_scan tly_log_scan;

/* One entry of the "log" database as stored: key (u64be(seq) when sound)
 * and value (a record when sound). The bytes belong to the snapshot. */
typedef struct tly_log_raw {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val;
    size_t val_len;
} tly_log_raw;

/* Opens one read snapshot of log (a reader or writer handle). Returns
 * TLY_OK, TLY_STORAGE or TLY_NOMEM; *out only on success. */
tly_err tly_log_scan_open(tly_log *log, tly_log_scan **out);

/* Opens another scan of sc's snapshot, for another thread to read the ids
 * index of the same state (each scan is for one thread at a time; the
 * entries sc returned stay readable from any thread). LMDB opens only the
 * newest snapshot: when the writer has committed since sc was opened this
 * is TLY_UNAVAILABLE (open sc and its twins again, or do without); else
 * TLY_OK, TLY_STORAGE or TLY_NOMEM. *out only on success; close it with
 * tly_log_scan_close. */
tly_err tly_log_scan_open_twin(tly_log_scan *sc, tly_log_scan **out);

/* The next entry in key order (the first entry on the first call): TLY_OK,
 * TLY_NOT_FOUND after the last, or TLY_STORAGE / TLY_CORRUPT / TLY_NOMEM
 * (LMDB failed). raw's pointers stay valid until tly_log_scan_close. */
tly_err tly_log_scan_next(tly_log_scan *sc, tly_log_raw *raw);

/* The seq in the snapshot's last key: 0 when the log is empty, its last key
 * is not 8 bytes or LMDB fails. Does not move tly_log_scan_next. */
uint64_t tly_log_scan_last_seq(tly_log_scan *sc);

/* The ids index's raw value for (source, id) in the snapshot (u64be(seq)
 * when sound): TLY_OK with *val / *val_len set (valid until
 * tly_log_scan_close), TLY_NOT_FOUND (also for a source or id longer than
 * any appended one), or TLY_STORAGE / TLY_CORRUPT / TLY_NOMEM. */
tly_err tly_log_scan_ids_get(tly_log_scan *sc, tly_str source, tly_str id, const uint8_t **val,
                             size_t *val_len);

/* Entries in the snapshot's ids index into *count: TLY_OK, or TLY_STORAGE
 * / TLY_CORRUPT / TLY_NOMEM. */
tly_err tly_log_scan_ids_count(tly_log_scan *sc, uint64_t *count);

/* Ends the snapshot; NULL is a no-op. */
void tly_log_scan_close(tly_log_scan *sc);

#endif
