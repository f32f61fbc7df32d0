/*
 * tly_log_append.c — group commit: resolve a batch against the idempotency
 * index, append the accepted events to the chain, commit once.
 *
 * A batch goes through two phases inside one write transaction:
 *   1. resolve, group by group: every item becomes NEW (tentative seq),
 *      DUP_STORED, DUP_BATCH or failed. Items accepted earlier in the batch
 *      are found through a small open-addressing table, since they are not in
 *      "ids" yet. An atomic group with a failure is rolled back: its NEW
 *      items leave the table and its tentative seqs are reused.
 *   2. write the NEW items in order: chain hash, record, "ids" entry.
 * Then one commit. The in-memory head changes only after the commit. A call
 * whose events exceed TLY_LOG_COMMIT_BYTES_MAX runs this once per run of
 * whole groups that fits; a later run finds the earlier ones in "ids".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "tly_assert.h"
#include "tly_os.h"

enum log_kind {
    K_PENDING = 0, /* not resolved yet (this attempt) */
    K_SKIP,        /* failed: on input, by a limit, conflict or atomic abort */
    K_NEW,         /* to be appended, with a tentative seq */
    K_DUP_STORED,  /* dup of a committed record */
    K_DUP_BATCH    /* dup of an earlier NEW item of this batch */
};

/* Commits between two sweeps for reader slots of dead processes. A sweep
 * reads the 126-slot table and probes a lock per process: at a commit every
 * few milliseconds, 1,024 commits is a few seconds, and the cost vanishes. */
#define LOG_READER_CHECK_COMMITS 1024u

/* One commit: the items [lo, hi) of the call (indexes are the call's, so
 * log->slots and items line up). */
typedef struct batch {
    tly_log *log;
    MDB_txn *txn;
    /* One cursor per table for the whole attempt, closed by LMDB with the
     * transaction: a key next to the last one a cursor visited is found on
     * its leaf page without a search from the root (mdb_cursor_set), and a
     * request's ids follow each other in "ids". */
    MDB_cursor *ids_cur, *log_cur;
    tly_log_item *items;
    uint32_t lo, hi;
    uint32_t table_mask;
    uint64_t next_seq; /* the tentative seq of the next NEW item */
} batch;

void tly__log_scratch_free(tly_log *log)
{
    free(log->slots);
    free(log->table);
    log->slots = NULL;
    log->table = NULL;
    log->slots_cap = log->table_cap = 0;
}

/* Slots of the batch table for count items: a power of two, load factor
 * at most 1/2, which keeps linear probes short. */
static uint32_t table_size_for(uint32_t count)
{
    uint32_t cap = 16;
    while (cap < 2u * count)
        cap *= 2;
    return cap;
}

/* Grows the scratch space to hold count items; it never shrinks, so a
 * steady stream of batches allocates nothing. */
static tly_err scratch_reserve(tly_log *log, uint32_t count)
{
    if (count > log->slots_cap) {
        log_slot *s = realloc(log->slots, (size_t)count * sizeof *s);
        if (!s)
            return TLY_NOMEM;
        log->slots = s;
        log->slots_cap = count;
    }
    uint32_t cap = table_size_for(count);
    if (cap > log->table_cap) {
        uint32_t *t = realloc(log->table, (size_t)cap * sizeof *t);
        if (!t)
            return TLY_NOMEM;
        log->table = t;
        log->table_cap = cap;
    }
    return TLY_OK;
}

/* FNV-1a over source, a separator and id: cheap, and inputs are short. */
static uint64_t key_hash(tly_str source, tly_str id)
{
    uint64_t h = 1469598103934665603u;
    for (uint32_t i = 0; i < source.len; i++)
        h = (h ^ (uint8_t)source.ptr[i]) * 1099511628211u;
    h = (h ^ 0xffu) * 1099511628211u;
    for (uint32_t i = 0; i < id.len; i++)
        h = (h ^ (uint8_t)id.ptr[i]) * 1099511628211u;
    return h ^ (h >> 29);
}

static bool same_key(const tly_log_item *a, const tly_log_item *b)
{
    return a->source.len == b->source.len && a->id.len == b->id.len &&
           memcmp(a->source.ptr, b->source.ptr, a->source.len) == 0 &&
           memcmp(a->id.ptr, b->id.ptr, a->id.len) == 0;
}

static bool same_bytes(const void *a, size_t a_len, const void *b, size_t b_len)
{
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* Finds item i's key among the NEW items of the batch. Returns the earlier
 * item's index, or UINT32_MAX and the empty position where i would go. */
static uint32_t table_find(const batch *b, uint32_t i, uint32_t *pos)
{
    const tly_log_item *it = &b->items[i];
    uint32_t p = (uint32_t)key_hash(it->source, it->id) & b->table_mask;
    for (;;) {
        uint32_t v = b->log->table[p];
        if (v == 0) {
            *pos = p;
            return UINT32_MAX;
        }
        if (same_key(&b->items[v - 1], it))
            return v - 1;
        p = (p + 1) & b->table_mask;
    }
}

/* Checks the limits this module relies on; sets the item's err when one is
 * broken. The ids key must fit LMDB's key size, the event a frame. */
static bool item_within_limits(tly_log_item *it)
{
    if (it->source.len == 0 || it->source.len > TLY_SOURCE_BYTES_MAX || it->id.len == 0 ||
        it->id.len > TLY_ID_BYTES_MAX) {
        it->err = TLY_BAD_FIELD;
        return false;
    }
    if (it->event_len == 0 || it->event_len > TLY_FRAME_BYTES_MAX) {
        it->err = it->event_len == 0 ? TLY_MALFORMED : TLY_TOO_LARGE;
        return false;
    }
    TLY_ASSERT(it->event && it->source.ptr && it->id.ptr);
    return true;
}

/* Compares item i with the committed record at seq: dup or conflict. */
static tly_err resolve_stored(batch *b, uint32_t i, uint64_t seq)
{
    tly_log_item *it = &b->items[i];
    uint8_t key[8];
    tly_be64_put(key, seq);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(b->txn, b->log->dbi_log, &k, &v);
    tly_record rec;
    if (rc == MDB_NOTFOUND ||
        (rc == MDB_SUCCESS && tly_record_decode(v.mv_data, v.mv_size, &rec) != TLY_OK)) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: ids points to seq %llu, which does not decode",
                 (unsigned long long)seq);
        return TLY_CORRUPT;
    }
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_get (log)");
    if (same_bytes(rec.event, rec.event_len, it->event, it->event_len)) {
        b->log->slots[i].kind = K_DUP_STORED;
        it->seq = seq;
        it->dup = true;
    } else {
        b->log->slots[i].kind = K_SKIP;
        it->err = TLY_CONFLICT;
    }
    return TLY_OK;
}

/* Resolves an item that is not in the batch table: look up "ids". */
static tly_err resolve_index(batch *b, uint32_t i, uint32_t pos)
{
    tly_log_item *it = &b->items[i];
    uint8_t key[TLY_LOG_IDS_KEY_BYTES_MAX];
    MDB_val k = {tly__log_ids_key(it->source, it->id, key), key}, v;
    int rc = mdb_cursor_get(b->ids_cur, &k, &v, MDB_SET_KEY);
    if (rc == MDB_SUCCESS) {
        if (v.mv_size != 8) {
            tly_logf(TLY_LOG_ERROR, NULL, "log: an ids value is not 8 bytes");
            return TLY_CORRUPT;
        }
        return resolve_stored(b, i, tly_be64_get(v.mv_data));
    }
    if (rc != MDB_NOTFOUND)
        return tly__log_mdb_err(rc, "mdb_get (ids)");
    log_slot *s = &b->log->slots[i];
    s->kind = K_NEW;
    s->table_pos = pos;
    b->log->table[pos] = i + 1;
    it->seq = b->next_seq++;
    return TLY_OK;
}

static tly_err resolve_item(batch *b, uint32_t i)
{
    tly_log_item *it = &b->items[i];
    log_slot *s = &b->log->slots[i];
    if (it->err != TLY_OK || !item_within_limits(it)) {
        s->kind = K_SKIP;
        return TLY_OK;
    }
    uint32_t pos;
    uint32_t o = table_find(b, i, &pos);
    if (o == UINT32_MAX)
        return resolve_index(b, i, pos);
    const tly_log_item *orig = &b->items[o];
    if (same_bytes(orig->event, orig->event_len, it->event, it->event_len)) {
        s->kind = K_DUP_BATCH;
        s->dup_of = o;
        it->seq = orig->seq;
        it->dup = true;
    } else {
        s->kind = K_SKIP;
        it->err = TLY_CONFLICT;
    }
    return TLY_OK;
}

/* Undoes an atomic group that had a failure. Its NEW items leave the table
 * newest first: with linear probing, removing entries in reverse order of
 * insertion leaves exactly the table as it was before them. */
static void rollback_group(batch *b, const tly_log_group *g, uint64_t seq0)
{
    for (uint32_t n = g->count; n-- > 0;) {
        uint32_t i = g->first + n;
        log_slot *s = &b->log->slots[i];
        tly_log_item *it = &b->items[i];
        bool own_dup = s->kind == K_DUP_BATCH && s->dup_of >= g->first;
        if (s->kind == K_NEW)
            b->log->table[s->table_pos] = 0;
        if (s->kind == K_NEW || own_dup) {
            s->kind = K_SKIP;
            it->err = TLY_ATOMIC_ABORTED;
            it->seq = 0;
            it->dup = false;
        }
    }
    b->next_seq = seq0;
}

static tly_err resolve_group(batch *b, const tly_log_group *g)
{
    uint64_t seq0 = b->next_seq;
    bool failed = false;
    for (uint32_t i = g->first; i < g->first + g->count; i++) {
        tly_err err = resolve_item(b, i);
        if (err != TLY_OK)
            return err;
        failed |= b->items[i].err != TLY_OK;
    }
    if (g->atomic && failed)
        rollback_group(b, g, seq0);
    return TLY_OK;
}

/* Result of writing: an LMDB code, with ENOMEM for an encoder failure and
 * MDB_KEYEXIST when the store disagrees with the in-memory head. */
static int write_item(batch *b, const tly_log_item *it, int64_t recorded_ms,
                      uint8_t hash[TLY_HASH_BYTES])
{
    tly_log *log = b->log;
    tly_chain_hash(hash, it->seq, recorded_ms, it->source, it->event, it->event_len, hash);
    log->sbuf.size = 0; /* reuse the buffer: no allocation once it is large enough */
    if (tly_record_encode(&log->sbuf, it->seq, recorded_ms, it->source, it->event, it->event_len,
                          hash) != TLY_OK)
        return ENOMEM;
    uint8_t seq_key[8];
    tly_be64_put(seq_key, it->seq);
    MDB_val k = {8, seq_key}, v = {log->sbuf.size, log->sbuf.data};
    int rc = mdb_cursor_put(b->log_cur, &k, &v, MDB_APPEND);
    if (rc != MDB_SUCCESS)
        return rc;
    if (log->has_replica &&
        log->replica.record(log->replica.ctx, it->seq, (const uint8_t *)log->sbuf.data,
                            log->sbuf.size) != TLY_OK)
        return ENOMEM;
    uint8_t id_key[TLY_LOG_IDS_KEY_BYTES_MAX];
    MDB_val ik = {tly__log_ids_key(it->source, it->id, id_key), id_key}, iv = {8, seq_key};
    return mdb_cursor_put(b->ids_cur, &ik, &iv, MDB_NOOVERWRITE);
}

static int write_batch(batch *b, int64_t recorded_ms, uint8_t hash[TLY_HASH_BYTES])
{
    memcpy(hash, b->log->head_hash, TLY_HASH_BYTES);
    uint64_t expect = b->log->head_seq + 1;
    for (uint32_t i = b->lo; i < b->hi; i++) {
        if (b->log->slots[i].kind != K_NEW)
            continue;
        TLY_ASSERT(b->items[i].seq == expect);
        expect++;
        int rc = write_item(b, &b->items[i], recorded_ms, hash);
        if (rc != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/* Puts items back to their input state before an attempt. */
static void reset_items(batch *b)
{
    for (uint32_t i = b->lo; i < b->hi; i++) {
        b->items[i].err = b->log->slots[i].in_err;
        b->items[i].seq = 0;
        b->items[i].dup = false;
        b->log->slots[i].kind = K_PENDING;
    }
    memset(b->log->table, 0, ((size_t)b->table_mask + 1) * sizeof *b->log->table);
    b->next_seq = b->log->head_seq + 1;
}

/* After a failed attempt: whatever depended on the aborted transaction
 * gets code (TLY_STORAGE, or TLY_UNAVAILABLE when the replica did not
 * acknowledge); outcomes decided against the committed log stay. */
static void mark_failed(batch *b, tly_err code)
{
    for (uint32_t i = b->lo; i < b->hi; i++) {
        uint8_t kind = b->log->slots[i].kind;
        bool pending = kind == K_PENDING && b->items[i].err == TLY_OK;
        if (kind == K_NEW || kind == K_DUP_BATCH || pending) {
            b->items[i].err = code;
            b->items[i].seq = 0;
            b->items[i].dup = false;
        }
    }
}

static uint32_t count_new(const batch *b)
{
    return (uint32_t)(b->next_seq - (b->log->head_seq + 1));
}

/* Maps the LMDB code of a failed write phase, logging it. */
static tly_err write_error(int rc)
{
    if (rc == MDB_KEYEXIST) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: seq or id already stored: the head in memory is stale");
        return TLY_CORRUPT;
    }
    return rc == ENOMEM ? TLY_NOMEM : tly__log_mdb_err(rc, "mdb_put");
}

void tly_log_set_replica(tly_log *log, const tly_log_replica *replica)
{
    TLY_ASSERT(log && log->writer);
    log->has_replica = replica != NULL;
    if (replica)
        log->replica = *replica;
}

/* One attempt: resolve, write, commit. *map_full is set when LMDB ran out
 * of map; the transaction is then gone and the caller grows and retries. */
static tly_err attempt(batch *b, const tly_log_group *groups, uint32_t group_count,
                       int64_t recorded_ms, uint8_t hash[TLY_HASH_BYTES], bool *map_full)
{
    reset_items(b);
    if (b->log->has_replica)
        b->log->replica.begin(b->log->replica.ctx);
    int rc = mdb_txn_begin(b->log->env, NULL, 0, &b->txn);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_txn_begin (write)");
    if ((rc = mdb_cursor_open(b->txn, b->log->dbi_ids, &b->ids_cur)) != MDB_SUCCESS ||
        (rc = mdb_cursor_open(b->txn, b->log->dbi_log, &b->log_cur)) != MDB_SUCCESS) {
        mdb_txn_abort(b->txn);
        return tly__log_mdb_err(rc, "mdb_cursor_open (write)");
    }
    tly_err err = TLY_OK;
    for (uint32_t g = 0; g < group_count && err == TLY_OK; g++)
        err = resolve_group(b, &groups[g]);
    if (err != TLY_OK || count_new(b) == 0) {
        /* Nothing to write (all dups or failures): no commit, no fsync. */
        mdb_txn_abort(b->txn);
        return err;
    }
    rc = write_batch(b, recorded_ms, hash);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(b->txn); /* never commit after an LMDB error */
        *map_full = rc == MDB_MAP_FULL;
        return *map_full ? TLY_OK : write_error(rc);
    }
    /* [N2] the replica acknowledges every record before the commit. */
    err = b->log->has_replica ? b->log->replica.commit(b->log->replica.ctx) : TLY_OK;
    if (err != TLY_OK) {
        mdb_txn_abort(b->txn);
        return err;
    }
    rc = mdb_txn_commit(b->txn); /* frees the transaction, also on failure */
    *map_full = rc == MDB_MAP_FULL;
    if (rc != MDB_SUCCESS && !*map_full)
        return tly__log_mdb_err(rc, "mdb_txn_commit");
    return TLY_OK;
}

static void assert_partition(const tly_log_group *groups, uint32_t group_count, uint32_t count)
{
    uint32_t next = 0;
    for (uint32_t g = 0; g < group_count; g++) {
        TLY_ASSERT(groups[g].first == next);
        TLY_ASSERT(groups[g].count <= count - next);
        next += groups[g].count;
    }
    TLY_ASSERT(next == count);
}

/* Event bytes of a group that count against TLY_LOG_COMMIT_BYTES_MAX: items
 * still to append and within the frame limit (the others are rejected). */
static size_t group_bytes(const tly_log_item *items, const tly_log_group *g)
{
    size_t bytes = 0;
    for (uint32_t i = g->first; i < g->first + g->count; i++)
        if (items[i].err == TLY_OK && items[i].event_len <= TLY_FRAME_BYTES_MAX)
            bytes += items[i].event_len;
    return bytes;
}

/* Checks the call's limits; TLY_OK or TLY_TOO_LARGE. */
static tly_err check_batch(const tly_log_item *items, uint32_t count, const tly_log_group *groups,
                           uint32_t group_count)
{
    if (count > TLY_LOG_BATCH_ITEMS_MAX)
        return TLY_TOO_LARGE;
    for (uint32_t g = 0; g < group_count; g++)
        if (group_bytes(items, &groups[g]) > TLY_LOG_COMMIT_BYTES_MAX)
            return TLY_TOO_LARGE;
    return TLY_OK;
}

/* End of the commit that starts at group g: as many whole groups as fit
 * TLY_LOG_COMMIT_BYTES_MAX, at least one. */
static uint32_t chunk_end(const tly_log_item *items, const tly_log_group *groups,
                          uint32_t group_count, uint32_t g)
{
    size_t bytes = group_bytes(items, &groups[g]);
    uint32_t h = g + 1;
    while (h < group_count) {
        size_t more = group_bytes(items, &groups[h]);
        if (more > TLY_LOG_COMMIT_BYTES_MAX - bytes)
            break;
        bytes += more;
        h++;
    }
    return h;
}

static void commit_head(tly_log *log, const batch *b, int64_t recorded_ms,
                        const uint8_t hash[TLY_HASH_BYTES])
{
    if (count_new(b) == 0)
        return;
    if (++log->commits_since_reader_check >= LOG_READER_CHECK_COMMITS) {
        log->commits_since_reader_check = 0;
        tly__log_clear_stale_readers(log);
    }
    log->head_seq = b->next_seq - 1;
    memcpy(log->head_hash, hash, TLY_HASH_BYTES);
    log->head_recorded_ms = recorded_ms;
}

/* Runs attempts until one commits, fails, or the map cannot grow. */
static tly_err run(batch *b, const tly_log_group *groups, uint32_t group_count, int64_t now_ms)
{
    tly_log *log = b->log;
    /* [D12] recorded_ms never decreases along the log. */
    int64_t recorded_ms = now_ms > log->head_recorded_ms ? now_ms : log->head_recorded_ms;
    uint8_t hash[TLY_HASH_BYTES];
    for (uint32_t n = 0; n < TLY_LOG_GROW_ATTEMPTS_MAX; n++) {
        bool map_full = false;
        tly_err err = attempt(b, groups, group_count, recorded_ms, hash, &map_full);
        if (err == TLY_OK && !map_full) {
            commit_head(log, b, recorded_ms, hash);
            return TLY_OK;
        }
        if (err == TLY_OK)
            err = tly__log_grow_map(log);
        if (err != TLY_OK)
            return err;
    }
    return TLY_STORAGE;
}

/* After a failure: items of later commits that were to be appended. */
static void mark_rest(tly_log_item *items, uint32_t from, uint32_t count, tly_err code)
{
    for (uint32_t i = from; i < count; i++)
        if (items[i].err == TLY_OK)
            items[i].err = code;
}

/* Commits the groups in runs of at most TLY_LOG_COMMIT_BYTES_MAX; stops at
 * the first failure. */
static tly_err append_chunks(tly_log *log, int64_t now_ms, tly_log_item *items, uint32_t item_count,
                             const tly_log_group *groups, uint32_t group_count)
{
    for (uint32_t g = 0; g < group_count;) {
        uint32_t h = chunk_end(items, groups, group_count, g);
        uint32_t lo = groups[g].first, hi = groups[h - 1].first + groups[h - 1].count;
        batch b = {log, NULL, NULL, NULL, items, lo, hi, table_size_for(hi - lo) - 1, 0};
        tly_err err = run(&b, groups + g, h - g, now_ms);
        if (err != TLY_OK) {
            tly_err code = err == TLY_UNAVAILABLE ? TLY_UNAVAILABLE : TLY_STORAGE;
            mark_failed(&b, code);
            mark_rest(items, hi, item_count, code);
            return err == TLY_CORRUPT || err == TLY_NOMEM || err == TLY_UNAVAILABLE ? err
                                                                                    : TLY_STORAGE;
        }
        g = h;
    }
    return TLY_OK;
}

tly_err tly_log_append(tly_log *log, int64_t now_ms, tly_log_item *items, uint32_t item_count,
                       const tly_log_group *groups, uint32_t group_count)
{
    TLY_ASSERT(log && log->writer && (items || item_count == 0));
    tly_log_group whole = {0, item_count, false};
    if (group_count == 0) {
        groups = &whole;
        group_count = 1;
    }
    assert_partition(groups, group_count, item_count);
    if (item_count == 0)
        return TLY_OK;
    tly_err err = check_batch(items, item_count, groups, group_count);
    if (err != TLY_OK)
        return err;
    if (scratch_reserve(log, item_count) != TLY_OK) {
        mark_rest(items, 0, item_count, TLY_STORAGE);
        return TLY_NOMEM;
    }
    if (tly__log_same_file(log) != TLY_OK) {
        mark_rest(items, 0, item_count, TLY_STORAGE);
        return TLY_STORAGE;
    }
    for (uint32_t i = 0; i < item_count; i++)
        log->slots[i].in_err = items[i].err;
    return append_chunks(log, now_ms, items, item_count, groups, group_count);
}
