/*
 * tly_views.h — the view store of one shard (SPEC section 2).
 *
 * Layout: the LMDB environment DIR/views/K-of-N (a directory holding
 * data.mdb and lock.mdb) with one named database "views". Its keys:
 *   "S/...", "V/...", "X/..."  written by the program engine through
 *                              tly_engine_flush (layout: tly_engine.h); a
 *                              partner's section 8 documents are rendered
 *                              from its "S/" state (tly_views_doc)
 *   "M/checkpoint"             u64be seq of the last record applied
 *   "M/shard"                  the text "K/N", written when the store is
 *                              created and checked at every open
 *   "M/sales"                  "own/Z" when the store registers its own
 *                              partners' sales only, keyed by seq under
 *                              "Z/" (TLY_ENGINE_SEQ_SALE_PREFIX), and
 *                              reads the others' from the log
 *                              (tly_engine_set_sale_source); "own" the same
 *                              with the sales under "S/2/<seq>" (stores
 *                              written before "Z/"); absent: every sale,
 *                              keyed by (source, id) (written before any
 *                              record is folded, never changed after)
 * The checkpoint is written in the same transaction as the view changes of
 * the records up to it, so a crash at any moment leaves the views and the
 * checkpoint consistent: folding resumes at checkpoint + 1, exactly once.
 * The engine's state lives here too, read on demand (tly_views_load): a
 * consumer's memory and restart time do not grow with the log.
 *
 * Processes: one writer per shard (the consumer, TLY_VIEWS_WRITE) and any
 * number of readers (query service, status, bench; TLY_VIEWS_READ), also in
 * other processes while the writer commits. LMDB allows one environment per
 * path per process: open a shard at most once per process.
 *
 * Errors: TLY_NOT_FOUND, TLY_USAGE (shard mismatch), TLY_CORRUPT (a runtime
 * key of the wrong size), TLY_STORAGE (any LMDB or I/O failure; the LMDB
 * code is logged on stderr), TLY_NOMEM. Outputs are written only on success.
 */
#ifndef TLY_VIEWS_H
#define TLY_VIEWS_H

#include <stddef.h>
#include <stdint.h>

#include "tly_engine.h"
#include "tly_err.h"

typedef struct tly_views tly_views;

enum {
    TLY_VIEWS_READ = 0,  /* read-only (MDB_RDONLY); never creates anything */
    TLY_VIEWS_WRITE = 1, /* the shard's consumer; creates the directory */
};

/* Runtime keys, for tools that read the database directly. */
#define TLY_VIEWS_KEY_CHECKPOINT "M/checkpoint"
#define TLY_VIEWS_KEY_SHARD "M/shard"
#define TLY_VIEWS_KEY_SALES "M/sales"
#define TLY_VIEWS_SALES_VALUE_OWN "own/Z"

/* Which sales a store registers (tly_views_sales). */
typedef enum tly_views_sales_mode {
    TLY_VIEWS_SALES_UNSET, /* nothing folded yet: the first commit decides */
    TLY_VIEWS_SALES_ALL,   /* every sale of the log */
    TLY_VIEWS_SALES_OWN,   /* its partners' only: the others' from the log */
} tly_views_sales_mode;

/* Writes "DATA/views/K-of-N" into buf (cap bytes). TLY_OK, or TLY_USAGE when
 * it does not fit or shard ≥ shard_count. */
tly_err tly_views_path(const char *data_dir, uint32_t shard, uint32_t shard_count, char *buf,
                       size_t cap);

/*
 * Opens the view store of shard `shard` of `shard_count` under data_dir.
 *
 * TLY_VIEWS_WRITE creates DATA/views/K-of-N (and missing parents), the
 * "views" database and "M/shard" when new. A new map starts at
 * TLY_VIEWS_MAP_BYTES_INIT ($TALLY_VIEWS_MAP_INIT_BYTES overrides it, for
 * tests of growth) and doubles when full. TLY_VIEWS_READ creates nothing:
 * a missing directory, data.mdb or "views" database is TLY_NOT_FOUND (the
 * consumer has not started yet: retry later).
 * Either way an existing "M/shard" naming another K/N is TLY_USAGE: the
 * directory was renamed or copied, and folding into it would mix shards.
 * One writer per store: WRITE takes an flock on K-of-N/consumer.lock (held
 * until close or process exit); while another holds it, TLY_UNAVAILABLE.
 *
 * Returns TLY_OK, TLY_NOT_FOUND, TLY_USAGE, TLY_UNAVAILABLE, TLY_CORRUPT,
 * TLY_STORAGE or TLY_NOMEM. Close with tly_views_close.
 */
tly_err tly_views_open(const char *data_dir, uint32_t shard, uint32_t shard_count, int flags,
                       tly_views **out);

/* Closes the store. NULL is a no-op. */
void tly_views_close(tly_views *v);

/* Path of the environment directory (owned by v, lives until close). */
const char *tly_views_dir(const tly_views *v);

/* Reads the checkpoint (0 for a store that has applied nothing). */
tly_err tly_views_checkpoint(tly_views *v, uint64_t *seq);

/*
 * Restores engine e (new, nothing applied yet) from the store and binds it
 * to the store: the programs ("S/1/" entries) through tly_engine_load, then
 * tly_engine_set_seq with the checkpoint, in one read transaction so state
 * and checkpoint match; then tly_engine_set_store, so that the engine
 * reads everything else (partners, claims, sales) when an event needs it,
 * from a read snapshot of the last commit that tly_views_commit ends and
 * the next read renews. The time it takes does not grow with the log. v
 * must stay open while e may read (until e is freed). Any error of
 * tly_engine_load is returned as is; the engine is then unusable (free
 * it). An empty store loads nothing: a fresh engine is bound all the same.
 * $TALLY_ENGINE_CACHE_ENTRIES (tests) sets the engine's cache limits.
 */
tly_err tly_views_load(tly_views *v, tly_engine *e);

/* The sales this store registers, as tly_views_load found it. */
tly_views_sales_mode tly_views_sales(const tly_views *v);

/* Decides the sales of a store with nothing folded yet (UNSET), written
 * with its first commit; TLY_USAGE for a store that is decided already
 * or read-only. */
tly_err tly_views_set_sales(tly_views *v, tly_views_sales_mode mode);

/*
 * Commits what engine e changed since its last flush, and the checkpoint
 * tly_engine_seq(e), in one write transaction (WRITE stores only).
 *
 * When the map fills, the transaction is aborted, the map doubled and the
 * flush redone (the engine keeps its changes marked when a flush fails),
 * up to TLY_VIEWS_MAP_BYTES_MAX. If the commit itself fails after a
 * successful flush the engine has forgotten changes that were not stored:
 * the function then returns TLY_STORAGE and the caller must discard e and
 * load a fresh engine with tly_views_load (the store still holds the
 * previous checkpoint and its views, consistently).
 *
 * A batch whose changes outgrow one LMDB transaction (MDB_TXN_FULL, the
 * dirty-page limit) is TLY_TOO_LARGE: nothing was written; reload the
 * engine and fold fewer records per commit.
 *
 * A store whose DIR/consumer.lock is no longer the file this handle locked
 * (the directory was removed, or removed and made anew by another
 * consumer) is TLY_USAGE, before anything is written, and so is one
 * replaced while the commit reopened it: the caller must stop, not retry.
 *
 * Returns TLY_OK, TLY_STORAGE, TLY_TOO_LARGE, TLY_USAGE, TLY_NOMEM or an
 * error of the engine's flush.
 */
tly_err tly_views_commit(tly_views *v, tly_engine *e);

/*
 * Reads one value, e.g. the key "V/l/<program>". On TLY_OK *val is a
 * malloc'd copy, NUL-terminated for convenience (the NUL is not counted in
 * *val_len), which the caller frees; *checkpoint (may be NULL) receives the
 * checkpoint of the same snapshot, i.e. the seq the value reflects.
 * Returns TLY_OK, TLY_NOT_FOUND (no such key), TLY_STORAGE or TLY_NOMEM.
 */
tly_err tly_views_get(tly_views *v, const void *key, size_t key_len, char **val, size_t *val_len,
                      uint64_t *checkpoint);

/* Visitor of tly_views_scan. key and val point into the LMDB map and live
 * only during the call. Returning anything but TLY_OK stops the scan, and
 * tly_views_scan returns that value. */
typedef tly_err (*tly_views_visit_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                                      size_t val_len);

/*
 * Visits every entry whose key starts with prefix (prefix_len 0: all), in
 * key order, in one read transaction; *checkpoint (may be NULL) receives
 * that snapshot's checkpoint. For "X/" this is the exceptions in log order.
 * Returns TLY_OK, TLY_STORAGE or the visitor's error.
 */
tly_err tly_views_scan(tly_views *v, const void *prefix, size_t prefix_len,
                       tly_views_visit_fn visit, void *ctx, uint64_t *checkpoint);

/*
 * A partner's balance, rebate, tier or claims document (view 'b', 'r', 't'
 * or 'c'): the store holds the state it is rendered from (tly_view_reader,
 * tly_engine.h), not the document. tly_views_doc reads one in one read
 * snapshot, as a malloc'd NUL-terminated copy like tly_views_get, with that
 * snapshot's checkpoint; TLY_NOT_FOUND when the partner is not an enrolled
 * partner of this shard. tly_views_docs visits every such partner's
 * document in partner id order in one snapshot (key: the partner id).
 * Either returns the reader's or the visitor's errors, TLY_STORAGE or
 * TLY_NOMEM.
 */
tly_err tly_views_doc(tly_views *v, char view, const char *partner, size_t len, char **doc,
                      size_t *doc_len, uint64_t *checkpoint);
tly_err tly_views_docs(tly_views *v, char view, tly_views_visit_fn visit, void *ctx,
                       uint64_t *checkpoint);

/* A read transaction on a store's "views" database: txn an MDB_txn *, dbi
 * its MDB_dbi. */
typedef struct tly_views_txn {
    void *txn;
    unsigned int dbi;
} tly_views_txn;

/* Binds a reader (tly_view_reader, tly_engine.h) to the state of the read
 * transaction txn on database dbi, whose checkpoint is checkpoint: *r is
 * made first, for shard k of n, when it is NULL (the caller frees it). *t
 * is where the reader's store finds the transaction: it must stay in place
 * while the reader is bound to it, and what the reader hands out lives as
 * long as the transaction. For the consumer's store (tly_views_doc), the
 * query service and the audit, each of which opens its own transactions. */
tly_err tly_views_reader_bind(tly_view_reader **r, uint32_t k, uint32_t n, tly_views_txn *t,
                              void *txn, unsigned int dbi, uint64_t checkpoint);

/* Drops the pages of the store that this process has read since the last
 * commit from its address space (they stay in the page cache), so a long
 * batch's reads (a partner or an old sale not in the engine's cache each
 * touch a page of a store that may hold GBs) stop counting in its RSS.
 * Ends the engine's snapshot; its next read begins another, which sees
 * the same (nothing was committed since). Between commits only, WRITE
 * stores only (a no-op otherwise). */
void tly_views_release(tly_views *v);

/* Current map size in bytes (grows by doubling; for tests and status). */
size_t tly_views_map_bytes(const tly_views *v);

/* What the commits of a WRITE handle did, for tests and measurement. The
 * last_ fields are of the last commit that succeeded (0 before one). */
typedef struct tly_views_stats {
    uint32_t last_puts; /* keys written */
    /* write cursors opened: one per region of the store its puts reached
     * (TLY_VIEWS_PUT_REGION_BYTES), and one more each time a region came
     * back after its cursor had made room for another (more than
     * TLY_VIEWS_PUT_CURSORS regions) */
    uint32_t last_cursors;
    /* releases of the map during its puts, one every
     * TLY_VIEWS_RELEASE_PUTS (the one after the commit not counted) */
    uint32_t last_map_releases;
    /* how far the process's resident anonymous memory rose above what it
     * was at the flush's start, at most, read at each of those releases and
     * at the flush's end (LMDB's copies of the pages the commit writes,
     * the engine's packed records, less what the flush freed); 0 when it
     * fell or could not be read (tly_os_anon_resident) */
    uint64_t last_anon_rise;
    /* commits of at least TLY_VIEWS_REOPEN_PUTS puts that closed and
     * opened the environment again, to give LMDB's copies of the pages
     * they changed back to the heap. A handle whose reopening failed
     * answers every call with an error (TLY_STORAGE) and can only be
     * closed. */
    uint64_t reopens;
} tly_views_stats;

tly_views_stats tly_views_stats_of(const tly_views *v);

#endif
