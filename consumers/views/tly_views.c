/* tly_views.c — the view store of one shard; see tly_views.h. */
#include "tly_views.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "tly_assert.h"
#include "tly_be.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_os.h"

/* The database inside the environment; the engine and the runtime share it
 * so one transaction covers both. */
#define VIEWS_DB_NAME "views"

/* The engine's state records a load hands over: the exchange rates and
 * the programs; the rest the engine reads when it needs it (tly_engine.h). */
#define TLY_VIEWS_PREFIX_RATES "S/0/"
#define TLY_VIEWS_PREFIX_PROGRAMS "S/1/"

/* Returns from the calling function with the error of x, if any. */
#define TRY_VIEWS(x)                                                                               \
    do {                                                                                           \
        tly_err err_ = (x);                                                                        \
        if (err_ != TLY_OK)                                                                        \
            return err_;                                                                           \
    } while (0)

/* "K/N" with K, N < TLY_SHARDS_MAX fits easily. */
#define SHARD_TEXT_BYTES 24u

_Static_assert(TLY_VIEWS_MAP_BYTES_INIT <= TLY_VIEWS_MAP_BYTES_MAX, "map init within max");
_Static_assert((TLY_VIEWS_MAP_BYTES_MAX / TLY_VIEWS_MAP_BYTES_INIT) <=
                   ((size_t)1u << TLY_VIEWS_GROW_RETRIES_MAX),
               "enough doublings to reach the maximum map");

struct tly_views {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *snap;  /* the engine's reads (tly_views_load); NULL until the first */
    bool snap_live; /* snap holds a snapshot (else it is reset) */
    /* What the engine's reads may have made resident of the map since it
     * was last released: a value's bytes, and a leaf page per look-up
     * (mapped_read). */
    size_t snap_touched;
    int lock_fd; /* WRITE: flock held on consumer.lock; -1 otherwise */
    bool writable;
    size_t map_bytes;
    size_t grew_last; /* bytes the file's used part grew by in the last commit */
    /* An address in the map (a value read after the last commit), to find
     * the mapping by; NULL until then and after the map moved (grow). */
    const void *map_addr;
    char shard_text[SHARD_TEXT_BYTES];
    uint32_t shard, shard_count;
    tly_view_reader *reader; /* tly_views_doc(s); NULL until the first */
    tly_views_txn doc_txn;   /* the snapshot reader is bound to (its store's ctx) */
    char dir[TLY_PATH_BYTES_MAX];
    tly_views_sales_mode sales; /* as loaded, or as set for the first commit */
    bool sales_unwritten;       /* set: the next commit writes "M/sales" */
    bool sales_in_s2;           /* "M/sales" is "own": own sales under "S/2/" */
    bool old_docs_checked;      /* this process's first commit dropped them */
    tly_views_stats stats;      /* tly_views_stats_of */
};

/* True when d holds exactly the bytes of text. */
static bool value_is(const MDB_val *d, const char *text)
{
    size_t n = strlen(text);
    return d->mv_size == n && memcmp(d->mv_data, text, n) == 0;
}

/* Maps an LMDB failure to tly_err at the module edge and logs the original. */
static tly_err mdb_fail(const char *what, const char *dir, int rc)
{
    tly_logf(TLY_LOG_ERROR, "views", "%s (%s): %s", what, dir, mdb_strerror(rc));
    if (rc == ENOMEM)
        return TLY_NOMEM;
    return TLY_STORAGE;
}

tly_err tly_views_path(const char *data_dir, uint32_t shard, uint32_t shard_count, char *buf,
                       size_t cap)
{
    if (shard_count == 0 || shard >= shard_count)
        return TLY_USAGE;
    char views[TLY_PATH_BYTES_MAX + 32];
    tly_err err = tly_layout_views(data_dir, views, sizeof views);
    if (err != TLY_OK) {
        if (cap > 0)
            buf[0] = '\0';
        return err;
    }
    return tly_layout_shard(views, shard, shard_count, buf, cap);
}

/* mkdir -p: creates dir and its missing parents (v->dir is shorter than
 * TLY_PATH_BYTES_MAX, so tly_mkdirs takes it whole). */
static tly_err mkdir_p(const char *dir)
{
    size_t failed_len = 0;
    tly_err err = tly_mkdirs(dir, &failed_len);
    if (err == TLY_STORAGE)
        tly_logf(TLY_LOG_ERROR, "views", "mkdir %.*s: %s", (int)failed_len, dir, strerror(errno));
    return err;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[TLY_PATH_BYTES_MAX + 16];
    struct stat st;
    return tly_layout_join(dir, name, path, sizeof path) == TLY_OK && stat(path, &st) == 0 &&
           S_ISREG(st.st_mode);
}

/* Begins a read transaction. Another process may have grown the map since
 * we mapped it: LMDB then says MDB_MAP_RESIZED, and adopting the new size
 * (set_mapsize 0) and retrying is the documented answer. */
static int begin_read(tly_views *v, MDB_txn **txn)
{
    if (v->env == NULL) /* its reopening failed (reopen_env) */
        return EINVAL;
    int rc = MDB_MAP_RESIZED;
    for (unsigned i = 0; i < TLY_VIEWS_RESIZE_RETRIES_MAX && rc == MDB_MAP_RESIZED; i++) {
        rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED) {
            v->map_addr = NULL; /* the map moves */
            mdb_env_set_mapsize(v->env, 0);
        }
    }
    return rc;
}

static void refresh_map_bytes(tly_views *v)
{
    MDB_envinfo info;
    if (mdb_env_info(v->env, &info) == 0)
        v->map_bytes = info.me_mapsize;
}

/* Checks "M/shard" against v->shard_text; writes it when absent and the
 * transaction can write. */
static tly_err check_shard(tly_views *v, MDB_txn *txn)
{
    MDB_val k = {strlen(TLY_VIEWS_KEY_SHARD), TLY_VIEWS_KEY_SHARD};
    MDB_val d;
    size_t want = strlen(v->shard_text);
    int rc = mdb_get(txn, v->dbi, &k, &d);
    if (rc == MDB_NOTFOUND && v->writable) {
        d.mv_size = want;
        d.mv_data = v->shard_text;
        rc = mdb_put(txn, v->dbi, &k, &d, 0);
        return rc == 0 ? TLY_OK : mdb_fail("write M/shard", v->dir, rc);
    }
    if (rc == MDB_NOTFOUND) {
        tly_logf(TLY_LOG_ERROR, "views", "%s has no M/shard key", v->dir);
        return TLY_CORRUPT;
    }
    if (rc != 0)
        return mdb_fail("read M/shard", v->dir, rc);
    if (!value_is(&d, v->shard_text)) {
        tly_logf(TLY_LOG_ERROR, "views", "%s belongs to shard %.*s, not %s", v->dir,
                 (int)(d.mv_size < SHARD_TEXT_BYTES ? d.mv_size : SHARD_TEXT_BYTES),
                 (const char *)d.mv_data, v->shard_text);
        return TLY_USAGE;
    }
    return TLY_OK;
}

/* Opens the "views" database and checks the shard, in one transaction that
 * is committed so the dbi handle stays valid for the life of the env. */
static tly_err open_db(tly_views *v)
{
    MDB_txn *txn;
    int rc = v->writable ? mdb_txn_begin(v->env, NULL, 0, &txn) : begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin", v->dir, rc);
    rc = mdb_dbi_open(txn, VIEWS_DB_NAME, v->writable ? MDB_CREATE : 0, &v->dbi);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? TLY_NOT_FOUND : mdb_fail("open database", v->dir, rc);
    }
    tly_err err = check_shard(v, txn);
    if (err != TLY_OK) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? TLY_OK : mdb_fail("commit open", v->dir, rc);
}

/* Map size of a new environment: TLY_VIEWS_MAP_BYTES_INIT, or
 * $TALLY_VIEWS_MAP_INIT_BYTES when set (tests start tiny to drive the
 * growth path through the real binary). */
static size_t map_bytes_init(void)
{
    return (size_t)tly_env_u64("TALLY_VIEWS_MAP_INIT_BYTES", (uint64_t)1 << 16,
                               TLY_VIEWS_MAP_BYTES_MAX, TLY_VIEWS_MAP_BYTES_INIT);
}

/* Opens v->dir's environment; a writer's map starts at map_bytes (0:
 * map_bytes_init). */
static tly_err open_env(tly_views *v, size_t map_bytes)
{
    int rc = mdb_env_create(&v->env);
    if (rc != 0)
        return mdb_fail("create env", v->dir, rc);
    mdb_env_set_maxdbs(v->env, 2);
    /* MDB_NOTLS: read transactions are not tied to threads, so a query
     * service may use a pool. MDB_NOMETASYNC: a system crash can undo the
     * last commit, never corrupt; the consumer then refolds those records
     * from the log, so views and checkpoint stay consistent. */
    unsigned flags = MDB_NOTLS;
    if (v->writable) {
        flags |= MDB_NOMETASYNC;
        mdb_env_set_mapsize(v->env, map_bytes ? map_bytes : map_bytes_init());
    } else {
        flags |= MDB_RDONLY;
    }
    rc = mdb_env_open(v->env, v->dir, flags, TLY_FILE_MODE);
    if (rc != 0)
        return rc == ENOENT ? TLY_NOT_FOUND : mdb_fail("open env", v->dir, rc);
    refresh_map_bytes(v);
    return TLY_OK;
}

/*
 * TLY_OK while DIR/consumer.lock is still the file this writer locked. An
 * operator who removes a running consumer's store (to refold it) and starts
 * another consumer for the shard gets a new directory, and the new
 * consumer's flock is on the new consumer.lock: without this check the old
 * consumer would go on folding into the removed file and, at its next
 * reopen_env, open the new store and write into it beside its owner, two
 * states under one checkpoint. Checked before every commit and after every
 * reopening (tly_os_same_file); otherwise TLY_USAGE, and nothing more is
 * written.
 */
static tly_err same_store(const tly_views *v)
{
    char path[TLY_PATH_BYTES_MAX + 16];
    if (tly_layout_join(v->dir, TLY_LAYOUT_CONSUMER_LOCK, path, sizeof path) == TLY_OK &&
        tly_os_same_file(path, v->lock_fd))
        return TLY_OK;
    tly_logf(TLY_LOG_ERROR, "views",
             "%s: the store was removed or replaced while this consumer ran; stopping (restart "
             "the consumer to fold into what is there now)",
             v->dir);
    return TLY_USAGE;
}

/* One writer per shard: two consumers folding into one store would each
 * flush only what their own batches changed, leaving a mix of two states
 * under one checkpoint. The flock dies with the process, kill -9 included. */
static tly_err lock_writer(tly_views *v)
{
    char path[TLY_PATH_BYTES_MAX + 16];
    if (tly_layout_join(v->dir, TLY_LAYOUT_CONSUMER_LOCK, path, sizeof path) != TLY_OK)
        return TLY_USAGE;
    v->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, TLY_FILE_MODE);
    if (v->lock_fd < 0) {
        tly_logf(TLY_LOG_ERROR, "views", "open %s: %s", path, strerror(errno));
        return TLY_STORAGE;
    }
    if (flock(v->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        tly_logf(TLY_LOG_ERROR, "views", "%s is in use by another consumer", v->dir);
        return TLY_UNAVAILABLE;
    }
    return TLY_OK;
}

tly_err tly_views_open(const char *data_dir, uint32_t shard, uint32_t shard_count, int flags,
                       tly_views **out)
{
    if (shard_count == 0 || shard_count > TLY_SHARDS_MAX || shard >= shard_count)
        return TLY_USAGE;
    tly_views *v = calloc(1, sizeof *v);
    if (!v)
        return TLY_NOMEM;
    v->writable = (flags & TLY_VIEWS_WRITE) != 0;
    v->lock_fd = -1;
    snprintf(v->shard_text, sizeof v->shard_text, "%u/%u", shard, shard_count);
    v->shard = shard;
    v->shard_count = shard_count;
    tly_err err = tly_views_path(data_dir, shard, shard_count, v->dir, sizeof v->dir);
    if (err == TLY_OK && v->writable)
        err = mkdir_p(v->dir);
    if (err == TLY_OK && v->writable)
        err = lock_writer(v);
    /* A reader must not create lock.mdb or data.mdb, which mdb_env_open would. */
    if (err == TLY_OK && !v->writable &&
        (!file_exists(v->dir, TLY_LAYOUT_LMDB_DATA) || !file_exists(v->dir, TLY_LAYOUT_LMDB_LOCK)))
        err = TLY_NOT_FOUND;
    if (err == TLY_OK)
        err = open_env(v, 0);
    if (err == TLY_OK)
        err = open_db(v);
    if (err != TLY_OK) {
        tly_views_close(v);
        return err;
    }
    *out = v;
    return TLY_OK;
}

void tly_views_close(tly_views *v)
{
    if (!v)
        return;
    if (v->snap)
        mdb_txn_abort(v->snap);
    tly_view_reader_free(v->reader);
    if (v->env)
        mdb_env_close(v->env);
    if (v->lock_fd >= 0)
        close(v->lock_fd); /* releases the flock */
    free(v);
}

const char *tly_views_dir(const tly_views *v)
{
    return v->dir;
}

size_t tly_views_map_bytes(const tly_views *v)
{
    return v->map_bytes;
}

/* Reads the checkpoint inside txn; 0 when absent (nothing applied yet). */
static tly_err read_checkpoint(tly_views *v, MDB_txn *txn, uint64_t *seq)
{
    MDB_val k = {strlen(TLY_VIEWS_KEY_CHECKPOINT), TLY_VIEWS_KEY_CHECKPOINT};
    MDB_val d;
    int rc = mdb_get(txn, v->dbi, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *seq = 0;
        return TLY_OK;
    }
    if (rc != 0)
        return mdb_fail("read checkpoint", v->dir, rc);
    if (d.mv_size != 8) {
        tly_logf(TLY_LOG_ERROR, "views", "%s: checkpoint of %zu bytes", v->dir, d.mv_size);
        return TLY_CORRUPT;
    }
    *seq = tly_be64_get(d.mv_data);
    return TLY_OK;
}

tly_err tly_views_checkpoint(tly_views *v, uint64_t *seq)
{
    MDB_txn *txn;
    int rc = begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin read", v->dir, rc);
    uint64_t s;
    tly_err err = read_checkpoint(v, txn, &s);
    mdb_txn_abort(txn);
    if (err == TLY_OK)
        *seq = s;
    return err;
}

tly_err tly_views_get(tly_views *v, const void *key, size_t key_len, char **val, size_t *val_len,
                      uint64_t *checkpoint)
{
    MDB_txn *txn;
    int rc = begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin read", v->dir, rc);
    MDB_val k = {key_len, (void *)key};
    MDB_val d;
    uint64_t seq = 0;
    tly_err err = read_checkpoint(v, txn, &seq);
    if (err == TLY_OK) {
        rc = mdb_get(txn, v->dbi, &k, &d);
        if (rc == MDB_NOTFOUND)
            err = TLY_NOT_FOUND;
        else if (rc != 0)
            err = mdb_fail("get", v->dir, rc);
    }
    char *copy = NULL;
    if (err == TLY_OK) {
        copy = malloc(d.mv_size + 1);
        if (!copy)
            err = TLY_NOMEM;
        else {
            memcpy(copy, d.mv_data, d.mv_size);
            copy[d.mv_size] = '\0';
        }
    }
    mdb_txn_abort(txn); /* d dies here; copy survives */
    if (err != TLY_OK)
        return err;
    *val = copy;
    *val_len = d.mv_size;
    if (checkpoint)
        *checkpoint = seq;
    return TLY_OK;
}

/* Walks the entries with the given prefix inside txn. */
/* Visits the entries of database dbi in txn whose key starts with prefix,
 * in key order (dir names the store in a failure's log line). */
static tly_err scan_dbi(MDB_txn *txn, MDB_dbi dbi, const char *dir, const void *prefix,
                        size_t prefix_len, tly_views_visit_fn visit, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return mdb_fail("cursor", dir, rc);
    MDB_val k = {prefix_len, (void *)prefix};
    MDB_val d;
    tly_err err = TLY_OK;
    rc = prefix_len ? mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE)
                    : mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    /* Bounded by the entries of the snapshot: each step moves forward. */
    while (rc == 0) {
        if (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0)
            break;
        err = visit(ctx, k.mv_data, k.mv_size, d.mv_data, d.mv_size);
        if (err != TLY_OK)
            break;
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    if (err == TLY_OK && rc != 0 && rc != MDB_NOTFOUND)
        err = mdb_fail("cursor walk", dir, rc);
    mdb_cursor_close(cur);
    return err;
}

static tly_err scan_txn(tly_views *v, MDB_txn *txn, const void *prefix, size_t prefix_len,
                        tly_views_visit_fn visit, void *ctx)
{
    return scan_dbi(txn, v->dbi, v->dir, prefix, prefix_len, visit, ctx);
}

/* The value of key in database dbi of txn, living as long as txn. */
static tly_err get_dbi(MDB_txn *txn, MDB_dbi dbi, const char *dir, const void *key, size_t key_len,
                       const void **val, size_t *val_len)
{
    MDB_val k = {key_len, (void *)key};
    MDB_val d;
    int rc = mdb_get(txn, dbi, &k, &d);
    if (rc == MDB_NOTFOUND)
        return TLY_NOT_FOUND;
    if (rc != 0)
        return mdb_fail("get", dir, rc);
    *val = d.mv_data;
    *val_len = d.mv_size;
    return TLY_OK;
}

tly_err tly_views_scan(tly_views *v, const void *prefix, size_t prefix_len,
                       tly_views_visit_fn visit, void *ctx, uint64_t *checkpoint)
{
    MDB_txn *txn;
    int rc = begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin read", v->dir, rc);
    uint64_t seq = 0;
    tly_err err = read_checkpoint(v, txn, &seq);
    if (err == TLY_OK)
        err = scan_txn(v, txn, prefix, prefix_len, visit, ctx);
    mdb_txn_abort(txn);
    if (err == TLY_OK && checkpoint)
        *checkpoint = seq;
    return err;
}

/* --- the engine's reads --- */

/* Ends the engine's snapshot (before a write transaction, or a growth of
 * the map, which needs no transaction of this process active); the next
 * read takes a fresh one, which sees the commit. */
static void snap_end(tly_views *v)
{
    if (v->snap_live)
        mdb_txn_reset(v->snap);
    v->snap_live = false;
}

/* The engine's snapshot, renewed when it was ended. */
static tly_err snap_begin(tly_views *v)
{
    if (v->snap_live)
        return TLY_OK;
    int rc = v->snap ? mdb_txn_renew(v->snap) : begin_read(v, &v->snap);
    if (rc == MDB_MAP_RESIZED) { /* another process grew the map: adopt it */
        mdb_txn_abort(v->snap);
        v->snap = NULL;
        v->map_addr = NULL; /* the map moves */
        mdb_env_set_mapsize(v->env, 0);
        rc = begin_read(v, &v->snap);
    }
    if (rc != 0) {
        if (v->snap && !v->snap_live)
            mdb_txn_abort(v->snap);
        v->snap = NULL;
        return mdb_fail("begin the engine's read", v->dir, rc);
    }
    v->snap_live = true;
    return TLY_OK;
}

/*
 * Counts what a read of the engine may have made resident of the map (n
 * bytes, at val) and drops the map's pages every
 * TLY_VIEWS_RESIDENT_BYTES_MAX of it. A close walks every member of its
 * program: the scan shows their records, and each member's close looks
 * up more of its state (claims; archived rows when its rules reach back
 * before the revenue it keeps of them), a leaf page each
 * (tly_limits.h has the figures). Here the engine's
 * snapshot is open, and dropping is safe too: LMDB never changes a page
 * that a live snapshot can reach, and this process, the only writer,
 * writes nothing until its commit, so every page the snapshot, its cursor
 * or the engine's values point to faults back in with the same bytes at
 * the same address (release_map says why dropping is safe at all).
 */
static void mapped_read(tly_views *v, const void *val, size_t n)
{
    v->snap_touched += n;
    if (v->snap_touched >= TLY_VIEWS_RESIDENT_BYTES_MAX) {
        (void)tly_os_release_file_map(val);
        v->snap_touched = 0;
    }
}

/* tly_kv_get_fn: the value lives until the snapshot ends (the commit). */
static tly_err snap_get(void *ctx, const void *key, size_t key_len, const void **val,
                        size_t *val_len)
{
    tly_views *v = ctx;
    TRY_VIEWS(snap_begin(v));
    tly_err err = get_dbi(v->snap, v->dbi, v->dir, key, key_len, val, val_len);
    if (err == TLY_OK)
        mapped_read(v, *val, *val_len + TLY_VIEWS_PAGE_BYTES);
    return err;
}

/* The engine's visitor of one scan over the views. */
typedef struct scan_ctx {
    tly_views *v;
    tly_kv_put_fn visit;
    void *visit_ctx;
} scan_ctx;

/* A scan can read a large part of the store at once (a close visits every
 * member of its program): its entries count as they are shown
 * (mapped_read). */
static tly_err scan_visit(void *ctx, const void *key, size_t key_len, const void *val,
                          size_t val_len)
{
    scan_ctx *s = ctx;
    mapped_read(s->v, val, key_len + val_len);
    return s->visit(s->visit_ctx, key, key_len, val, val_len);
}

/* tly_kv_scan_fn over the same snapshot. */
static tly_err snap_scan(void *ctx, const void *prefix, size_t prefix_len, tly_kv_put_fn visit,
                         void *visit_ctx)
{
    tly_views *v = ctx;
    TRY_VIEWS(snap_begin(v));
    scan_ctx s = {v, visit, visit_ctx};
    return scan_txn(v, v->snap, prefix, prefix_len, scan_visit, &s);
}

/* The engine's cache limit (partners and sales alike) from
 * $TALLY_ENGINE_CACHE_ENTRIES, for tests that make it tiny to drive
 * every read and trim through the real store; 0 (the engine's defaults)
 * when unset. */
static uint32_t cache_entries_env(void)
{
    return (uint32_t)tly_env_u64("TALLY_ENGINE_CACHE_ENTRIES", 1, UINT32_MAX, 0);
}

static tly_err load_visit(void *ctx, const void *key, size_t key_len, const void *val,
                          size_t val_len)
{
    return tly_engine_load(ctx, key, key_len, val, val_len);
}

/* "M/sales" of a store written before "Z/": own sales under "S/2/<seq>". */
#define SALES_VALUE_OWN_S2 "own"

/* "M/sales": "own/Z" or "own", or absent (every sale; UNSET while nothing is folded,
 * which the first commit decides). */
static tly_err read_sales(tly_views *v, MDB_txn *txn, uint64_t checkpoint)
{
    MDB_val k = {strlen(TLY_VIEWS_KEY_SALES), TLY_VIEWS_KEY_SALES};
    MDB_val d;
    int rc = mdb_get(txn, v->dbi, &k, &d);
    v->sales_unwritten = false;
    v->sales_in_s2 = false;
    if (rc == MDB_NOTFOUND) {
        v->sales = checkpoint == 0 ? TLY_VIEWS_SALES_UNSET : TLY_VIEWS_SALES_ALL;
        return TLY_OK;
    }
    if (rc != 0)
        return mdb_fail("read the sales mode", v->dir, rc);
    bool own = value_is(&d, TLY_VIEWS_SALES_VALUE_OWN);
    v->sales_in_s2 = value_is(&d, SALES_VALUE_OWN_S2);
    if (!own && !v->sales_in_s2) {
        tly_logf(TLY_LOG_ERROR, "views", "%s: %s is neither \"%s\" nor \"%s\"", v->dir,
                 TLY_VIEWS_KEY_SALES, TLY_VIEWS_SALES_VALUE_OWN, SALES_VALUE_OWN_S2);
        return TLY_CORRUPT;
    }
    v->sales = TLY_VIEWS_SALES_OWN;
    return TLY_OK;
}

tly_views_sales_mode tly_views_sales(const tly_views *v)
{
    return v->sales;
}

tly_err tly_views_set_sales(tly_views *v, tly_views_sales_mode mode)
{
    if (!v->writable || v->sales != TLY_VIEWS_SALES_UNSET || mode == TLY_VIEWS_SALES_UNSET)
        return TLY_USAGE;
    v->sales = mode;
    v->sales_unwritten = mode == TLY_VIEWS_SALES_OWN;
    return TLY_OK;
}

tly_err tly_views_load(tly_views *v, tly_engine *e)
{
    MDB_txn *txn;
    int rc = begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin read", v->dir, rc);
    uint64_t seq = 0;
    tly_err err = read_checkpoint(v, txn, &seq);
    if (err == TLY_OK)
        err =
            scan_txn(v, txn, TLY_VIEWS_PREFIX_RATES, strlen(TLY_VIEWS_PREFIX_RATES), load_visit, e);
    if (err == TLY_OK)
        err = scan_txn(v, txn, TLY_VIEWS_PREFIX_PROGRAMS, strlen(TLY_VIEWS_PREFIX_PROGRAMS),
                       load_visit, e);
    if (err == TLY_OK)
        err = read_sales(v, txn, seq);
    mdb_txn_abort(txn);
    if (err != TLY_OK)
        return err;
    tly_engine_set_seq(e, seq);
    uint32_t cache = cache_entries_env();
    tly_engine_store store = {.get = snap_get,
                              .scan = snap_scan,
                              .ctx = v,
                              .partners_cached_max = cache,
                              .sales_cached_max = cache,
                              .seq_sales_in_s2 = v->sales_in_s2};
    tly_engine_set_store(e, &store);
    return TLY_OK;
}

/* --- writing --- */

/* One write cursor per region of the store: a region is a key's first
 * TLY_VIEWS_PUT_REGION_BYTES bytes ("S/4/", "S/3/", "E/" and a program's
 * first bytes, "Z/" and a seq's top bytes...). A flush writes each region
 * in key order but the regions interleaved (a partner's state, then its
 * claims, then its documents), and a cursor left where its region's last
 * put landed finds the next key on the same leaf page without a search
 * from the root (LMDB's mdb_cursor_set, when the key falls between the
 * page's first and last). */
typedef struct put_cursor {
    char region[TLY_VIEWS_PUT_REGION_BYTES];
    MDB_cursor *cur; /* NULL: a free slot */
} put_cursor;

typedef struct put_ctx {
    tly_views *v;
    MDB_txn *txn;
    int mdb_rc;     /* the LMDB code of the first failed put, 0 if none */
    uint32_t puts;  /* since the map was last released */
    uint32_t total; /* in this transaction */
    put_cursor cursors[TLY_VIEWS_PUT_CURSORS];
    uint32_t next_evict; /* the slot a new region takes when all are used */
    uint32_t opened;     /* cursors opened in this transaction */
    uint32_t releases;   /* of the map, in this transaction */
    /* the process's resident anonymous memory at the flush's start and the
     * most seen since, read at each release of the map (0: unknown) */
    uint64_t anon_start, anon_max;
} put_ctx;

/* Notes the process's resident anonymous memory now in c->anon_max. */
static void note_anon(put_ctx *c)
{
    uint64_t anon;
    if (tly_os_anon_resident(&anon) && anon > c->anon_max)
        c->anon_max = anon;
}

/* Closes every cursor of c; before its transaction ends (LMDB frees a
 * write transaction's cursors itself at its end, so none may outlive it). */
static void put_cursors_close(put_ctx *c)
{
    for (uint32_t i = 0; i < TLY_VIEWS_PUT_CURSORS; i++) {
        if (c->cursors[i].cur != NULL)
            mdb_cursor_close(c->cursors[i].cur);
        c->cursors[i].cur = NULL;
    }
}

/* The cursor of key's region: the one that put its last key, or a new one
 * (in a free slot, else in place of the oldest region's). NULL when LMDB
 * cannot open one: the caller puts without it. */
static MDB_cursor *put_cursor_of(put_ctx *c, const void *key, size_t key_len)
{
    char region[TLY_VIEWS_PUT_REGION_BYTES] = {0};
    memcpy(region, key, key_len < sizeof region ? key_len : sizeof region);
    put_cursor *slot = NULL;
    for (uint32_t i = 0; i < TLY_VIEWS_PUT_CURSORS; i++) {
        put_cursor *pc = &c->cursors[i];
        if (pc->cur != NULL && memcmp(pc->region, region, sizeof region) == 0)
            return pc->cur;
        if (pc->cur == NULL && slot == NULL)
            slot = pc;
    }
    if (slot == NULL) {
        slot = &c->cursors[c->next_evict++ % TLY_VIEWS_PUT_CURSORS];
        mdb_cursor_close(slot->cur);
        slot->cur = NULL;
    }
    if (mdb_cursor_open(c->txn, c->v->dbi, &slot->cur) != 0)
        return slot->cur = NULL;
    c->opened++;
    memcpy(slot->region, region, sizeof region);
    return slot->cur;
}

/* mdb_put through the region's cursor when there is one. */
static int put_one(put_ctx *c, MDB_cursor *cur, MDB_val *k, MDB_val *d, unsigned flags)
{
    return cur != NULL ? mdb_cursor_put(cur, k, d, flags) : mdb_put(c->txn, c->v->dbi, k, d, flags);
}

static tly_err put_kv(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    put_ctx *c = ctx;
    MDB_val k = {key_len, (void *)key};
    MDB_val d = {val_len, (void *)val};
    const size_t zl = sizeof TLY_ENGINE_SEQ_SALE_PREFIX - 1;
    bool seq_sale = key_len > zl && memcmp(key, TLY_ENGINE_SEQ_SALE_PREFIX, zl) == 0;
    MDB_cursor *cur = put_cursor_of(c, key, key_len);
    /* A new sale is the store's last key, appended; LMDB refuses to append
     * any other key (a sale a return changed) with MDB_KEYEXIST before
     * changing a thing, and that one is put as every other key is. */
    int rc = seq_sale ? put_one(c, cur, &k, &d, MDB_APPEND) : MDB_KEYEXIST;
    if (rc == MDB_KEYEXIST)
        rc = put_one(c, cur, &k, &d, 0);
    c->total++;
    if (++c->puts >= TLY_VIEWS_RELEASE_PUTS) {
        /* LMDB found each page these puts changed through the map, copied it
         * into its own memory and reads it from there from now on: the map's
         * pages are needed no more (release_map says why this is safe). */
        (void)tly_os_release_file_map(c->v->map_addr);
        c->puts = 0;
        c->releases++;
        note_anon(c);
    }
    if (rc == 0)
        return TLY_OK;
    c->mdb_rc = rc;
    if (rc == MDB_MAP_FULL) /* handled by the caller, quietly */
        return TLY_STORAGE;
    if (rc == MDB_TXN_FULL) /* too many dirty pages: the caller halves its batch */
        return TLY_TOO_LARGE;
    return mdb_fail("put", c->v->dir, rc);
}

/* Doubles the map. Only between transactions of this process. */
static tly_err grow(tly_views *v)
{
    if (v->map_bytes >= TLY_VIEWS_MAP_BYTES_MAX) {
        tly_logf(TLY_LOG_ERROR, "views", "%s: map full at its maximum of %zu bytes", v->dir,
                 v->map_bytes);
        return TLY_STORAGE;
    }
    size_t want = v->map_bytes * 2;
    if (want > TLY_VIEWS_MAP_BYTES_MAX)
        want = TLY_VIEWS_MAP_BYTES_MAX;
    v->map_addr = NULL; /* the map moves */
    int rc = mdb_env_set_mapsize(v->env, want);
    if (rc != 0)
        return mdb_fail("grow map", v->dir, rc);
    refresh_map_bytes(v);
    return TLY_OK;
}

/* Bytes of the map in use (up to the last page), 0 when unknown. */
static size_t map_used(tly_views *v)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(v->env, &info) != 0 || mdb_env_stat(v->env, &st) != 0)
        return 0;
    return ((size_t)info.me_last_pgno + 1) * st.ms_psize;
}

/* Grows ahead of need when over half of the map is in use, or when the
 * next commit, growing the file as much again as the last one did (twice
 * that, for margin), would not fit: a commit that meets a full map is
 * aborted and the whole flush redone (once a commit by a fold from
 * scratch: 30-40 % of its flush time at 1M events). */
static tly_err grow_ahead(tly_views *v)
{
    size_t used = map_used(v);
    tly_err err = TLY_OK;
    for (unsigned i = 0; i < TLY_VIEWS_GROW_RETRIES_MAX && err == TLY_OK; i++) {
        if (used <= v->map_bytes / 2 && used + 2 * v->grew_last <= v->map_bytes)
            break;
        if (v->map_bytes >= TLY_VIEWS_MAP_BYTES_MAX)
            break; /* a full map at the maximum is the commit's to report */
        err = grow(v);
    }
    return err;
}

static tly_err put_checkpoint(put_ctx *c, uint64_t seq)
{
    uint8_t b[8];
    tly_be64_put(b, seq);
    return put_kv(c, TLY_VIEWS_KEY_CHECKPOINT, strlen(TLY_VIEWS_KEY_CHECKPOINT), b, sizeof b);
}

/* Sets v->map_addr to the checkpoint's value as txn sees it: an address
 * in the map while that page is clean (at the start of a transaction), or
 * one in LMDB's own memory, which tly_os_release_file_map then leaves
 * alone; NULL in an empty store. */
static void find_map(tly_views *v, MDB_txn *txn)
{
    MDB_val k = {strlen(TLY_VIEWS_KEY_CHECKPOINT), TLY_VIEWS_KEY_CHECKPOINT};
    MDB_val d = {0, NULL};
    v->map_addr = mdb_get(txn, v->dbi, &k, &d) == 0 ? d.mv_data : NULL;
}

/* The partner documents an older Tally stored beside the state (now
 * rendered from it when read: the balance, rebate, tier and claims
 * documents, and the rows of the partner list): left alone they would stay, never updated,
 * for any tool reading the store directly. The first commit of a process
 * deletes whatever there is of them (nothing, on a store this Tally
 * folded: one look-up per prefix). */
static tly_err drop_old_docs(put_ctx *c)
{
    static const char *const prefixes[] = {"V/b/", "V/r/", "V/t/", "V/c/", "V/P/"};
    MDB_cursor *cur;
    int rc = mdb_cursor_open(c->txn, c->v->dbi, &cur);
    if (rc != 0)
        return mdb_fail("cursor", c->v->dir, rc);
    uint64_t dropped = 0;
    for (size_t i = 0; rc == 0 && i < sizeof prefixes / sizeof prefixes[0]; i++) {
        /* Bounded by the store's entries: each round deletes one. */
        for (;;) {
            MDB_val k = {4, (void *)prefixes[i]}, d;
            rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
            if (rc != 0 || k.mv_size < 4 || memcmp(k.mv_data, prefixes[i], 4) != 0)
                break;
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0)
                break;
            dropped++;
        }
        if (rc == MDB_NOTFOUND) /* nothing at or after the prefix */
            rc = 0;
    }
    mdb_cursor_close(cur);
    if (rc != 0) {
        c->mdb_rc = rc;
        return rc == MDB_MAP_FULL ? TLY_STORAGE : mdb_fail("drop old documents", c->v->dir, rc);
    }
    if (dropped > 0)
        tly_logf(TLY_LOG_INFO, "views",
                 "%s: dropped %llu partner documents an older Tally stored (now rendered from the "
                 "state when read)",
                 c->v->dir, (unsigned long long)dropped);
    return TLY_OK;
}

/* One attempt: checkpoint first (a full map there costs nothing to redo),
 * then the engine's changes, then commit. *redo is set when the attempt
 * failed on a full map before the engine forgot anything
 * (tly_engine_intact: a flush that drops what it wrote cannot be redone,
 * and the caller reloads the engine instead, as after a failed commit). */
static tly_err commit_once(tly_views *v, tly_engine *e, bool *redo)
{
    *redo = false;
    put_ctx c = {.v = v};
    int rc = mdb_txn_begin(v->env, NULL, 0, &c.txn);
    if (rc != 0)
        return mdb_fail("begin write", v->dir, rc);
    find_map(v, c.txn); /* the map may have grown since the last commit */
    tly_err err = put_checkpoint(&c, tly_engine_seq(e));
    if (err == TLY_OK && v->sales_unwritten)
        err = put_kv(&c, TLY_VIEWS_KEY_SALES, strlen(TLY_VIEWS_KEY_SALES),
                     TLY_VIEWS_SALES_VALUE_OWN, strlen(TLY_VIEWS_SALES_VALUE_OWN));
    if (err == TLY_OK && !v->old_docs_checked)
        err = drop_old_docs(&c);
    if (!tly_os_anon_resident(&c.anon_start))
        c.anon_start = 0;
    if (err == TLY_OK)
        err = tly_engine_flush(e, put_kv, &c);
    put_cursors_close(&c);
    note_anon(&c); /* LMDB holds its copies of every page the commit writes */
    if (err != TLY_OK) {
        mdb_txn_abort(c.txn);
        *redo = c.mdb_rc == MDB_MAP_FULL && tly_engine_intact(e);
        if (c.mdb_rc == MDB_MAP_FULL && !*redo) {
            /* the refold after the caller's reload meets a larger map */
            tly_err gerr = grow(v);
            if (gerr != TLY_OK)
                return gerr;
        }
        return err;
    }
    rc = mdb_txn_commit(c.txn);
    if (rc == MDB_MAP_FULL) {
        /* LMDB can still run out of map while saving its free list at commit,
         * after the engine forgot its changes: the caller must reload and
         * refold. Grow now (the failed commit ended the transaction), so that
         * refold meets a larger map instead of the same wall every time. */
        tly_err gerr = grow(v);
        if (gerr != TLY_OK)
            return gerr;
    }
    if (rc != 0)
        return mdb_fail("commit (the engine must be reloaded)", v->dir, rc);
    v->sales_unwritten = false;
    v->old_docs_checked = true;
    v->stats.last_puts = c.total;
    v->stats.last_cursors = c.opened;
    v->stats.last_map_releases = c.releases;
    v->stats.last_anon_rise =
        c.anon_start > 0 && c.anon_max > c.anon_start ? c.anon_max - c.anon_start : 0;
    return TLY_OK;
}

/* Closes the environment and opens it again, with the map it had: the
 * only way to make LMDB free its copies of the pages the last write
 * transaction changed (TLY_VIEWS_REOPEN_PUTS). Nothing of this process
 * holds a transaction of it here: the engine's snapshot is ended (and its
 * handle, bound to the environment, freed), and every other read of this
 * handle ends its transaction before it returns. */
static tly_err reopen_env(tly_views *v)
{
    TLY_ASSERT(!v->snap_live);
    TRY_VIEWS(same_store(v));
    if (v->snap)
        mdb_txn_abort(v->snap);
    v->snap = NULL;
    size_t map = v->map_bytes;
    mdb_env_close(v->env);
    v->env = NULL;
    v->map_addr = NULL;
    tly_err err = open_env(v, map);
    if (err == TLY_OK)
        err = same_store(v); /* replaced between the check and the opening */
    if (err == TLY_OK)
        err = open_db(v);
    if (err == TLY_OK) {
        v->stats.reopens++;
        return TLY_OK;
    }
    if (v->env)
        mdb_env_close(v->env);
    v->env = NULL; /* every call but close now fails (begin_read) */
    if (err == TLY_USAGE)
        return err;
    tly_logf(TLY_LOG_ERROR, "views", "%s: cannot open the environment again after a commit",
             v->dir);
    return TLY_STORAGE;
}

tly_views_stats tly_views_stats_of(const tly_views *v)
{
    return v->stats;
}

/*
 * Drops this process's page-table entries for the whole map after a
 * commit, so the pages a fold read (the engine's reads, and the write
 * transaction, which finds every page it changes through the map) stop
 * counting in its resident memory: over a long catch-up that is most of
 * the store. The pages stay in the page cache. The map is found by an
 * address in it, the checkpoint's value, read in a transaction that ends
 * first; put_kv releases it again every TLY_VIEWS_RELEASE_PUTS puts of a
 * commit, the engine's reads every TLY_VIEWS_RESIDENT_BYTES_MAX (mapped_read).
 *
 * Why this is safe: LMDB maps data.mdb MAP_SHARED, and without
 * MDB_WRITEMAP (open_env never sets it) read-only, writing through pwrite:
 * the map holds no data of its own, only the page cache's pages.
 * MADV_DONTNEED unmaps them, and the next access to an address faults in
 * the page cache's current page (tly_os_release_file_map checks that the
 * mapping is read-only and shared, and leaves any other alone). That page
 * holds the same bytes as before for every page a transaction of this
 * process can reach: no read transaction is open here or in put_kv (the
 * engine's snapshot ends before the write transaction, snap_end); the
 * write transaction changes pages only in copies in its own memory, which
 * reach the file at the commit (or a spill) under page numbers that no
 * page it can reach has. A reader in another process has its own mapping.
 */
static void release_map(tly_views *v)
{
    TLY_ASSERT(!v->snap_live);
    MDB_txn *txn;
    if (begin_read(v, &txn) != 0)
        return; /* only an optimisation */
    find_map(v, txn);
    mdb_txn_abort(txn);
    (void)tly_os_release_file_map(v->map_addr);
    v->snap_touched = 0;
}

/* Between two commits the engine's snapshot may end at any time: only
 * this process writes the store (lock_writer), and it has committed
 * nothing since, so the snapshot the engine's next read begins sees the
 * same pages, and every value the engine was handed still holds the same
 * bytes at the same address (tly_engine_store: until the next flush). */
void tly_views_release(tly_views *v)
{
    if (!v->writable)
        return;
    snap_end(v);
    release_map(v);
}

/* The engine's snapshot ends before the write transaction and again after
 * it: whatever the engine reads next sees this commit. */
tly_err tly_views_commit(tly_views *v, tly_engine *e)
{
    if (!v->writable)
        return TLY_USAGE;
    if (v->env == NULL) /* its reopening failed (reopen_env) */
        return TLY_STORAGE;
    TRY_VIEWS(same_store(v));
    snap_end(v);
    tly_err err = grow_ahead(v);
    size_t before = map_used(v);
    for (unsigned attempt = 0; attempt <= TLY_VIEWS_GROW_RETRIES_MAX && err == TLY_OK; attempt++) {
        bool redo;
        err = commit_once(v, e, &redo);
        snap_end(v);
        if (err == TLY_OK) {
            size_t after = map_used(v);
            v->grew_last = after > before ? after - before : 0;
            release_map(v);
            if (v->stats.last_puts >= TLY_VIEWS_REOPEN_PUTS) {
                err = reopen_env(v);
                /* LMDB's copies of the pages, freed by the reopening, and
                 * what the engine freed in its flush: free memory that
                 * would stay counted while the next batch folds. */
                tly_os_release_free_heap();
            }
        }
        if (!redo)
            return err;
        err = grow(v);
    }
    if (err != TLY_OK)
        return err;
    tly_logf(TLY_LOG_ERROR, "views", "%s: map still full after %u doublings", v->dir,
             TLY_VIEWS_GROW_RETRIES_MAX);
    return TLY_STORAGE;
}

/* --- partner documents, rendered from the state (tly_view_reader) --- */

/* The engine store over one read transaction on a "views" database. */
static tly_err txn_get(void *ctx, const void *key, size_t key_len, const void **val,
                       size_t *val_len)
{
    const tly_views_txn *t = ctx;
    return get_dbi(t->txn, (MDB_dbi)t->dbi, "a view store", key, key_len, val, val_len);
}

static tly_err txn_scan(void *ctx, const void *prefix, size_t prefix_len, tly_kv_put_fn visit,
                        void *visit_ctx)
{
    const tly_views_txn *t = ctx;
    return scan_dbi(t->txn, (MDB_dbi)t->dbi, "a view store", prefix, prefix_len, visit, visit_ctx);
}

tly_err tly_views_reader_bind(tly_view_reader **r, uint32_t k, uint32_t n, tly_views_txn *t,
                              void *txn, unsigned int dbi, uint64_t checkpoint)
{
    if (*r == NULL)
        TRY_VIEWS(tly_view_reader_new(k, n, r));
    *t = (tly_views_txn){txn, dbi};
    tly_engine_store store = {.get = txn_get, .scan = txn_scan, .ctx = t};
    return tly_view_reader_bind(*r, &store, checkpoint);
}

/* Begins a read snapshot of v in v->doc_txn (where the reader's store
 * finds it for as long as the reader is bound to it) and binds v's reader
 * to it; *checkpoint is the snapshot's. */
static tly_err doc_begin(tly_views *v, uint64_t *checkpoint)
{
    MDB_txn *txn;
    int rc = begin_read(v, &txn);
    if (rc != 0)
        return mdb_fail("begin read", v->dir, rc);
    tly_err err = read_checkpoint(v, txn, checkpoint);
    if (err == TLY_OK)
        err = tly_views_reader_bind(&v->reader, v->shard, v->shard_count, &v->doc_txn, txn, v->dbi,
                                    *checkpoint);
    if (err != TLY_OK)
        mdb_txn_abort(txn);
    return err;
}

tly_err tly_views_doc(tly_views *v, char view, const char *partner, size_t len, char **doc,
                      size_t *doc_len, uint64_t *checkpoint)
{
    uint64_t seq;
    TRY_VIEWS(doc_begin(v, &seq));
    const char *d;
    size_t dlen;
    tly_err err = tly_view_reader_doc(v->reader, view, partner, len, &d, &dlen);
    char *copy = NULL;
    if (err == TLY_OK && (copy = malloc(dlen + 1)) == NULL)
        err = TLY_NOMEM;
    mdb_txn_abort(v->doc_txn.txn);
    if (err != TLY_OK)
        return err;
    memcpy(copy, d, dlen + 1);
    *doc = copy;
    *doc_len = dlen;
    if (checkpoint)
        *checkpoint = seq;
    return TLY_OK;
}

/* A walk of every partner record of a snapshot, rendering one document. */
typedef struct docs_walk {
    tly_views *v;
    char view;
    tly_views_visit_fn visit;
    void *ctx;
} docs_walk;

static tly_err docs_visit(void *ctx, const void *key, size_t key_len, const void *val,
                          size_t val_len)
{
    (void)val;
    (void)val_len;
    docs_walk *w = ctx;
    size_t plen = strlen(TLY_ENGINE_PARTNER_PREFIX);
    const char *partner = (const char *)key + plen;
    const char *d;
    size_t dlen;
    tly_err err = tly_view_reader_doc(w->v->reader, w->view, partner, key_len - plen, &d, &dlen);
    if (err == TLY_NOT_FOUND) /* another shard's partner, or not enrolled */
        return TLY_OK;
    return err == TLY_OK ? w->visit(w->ctx, partner, key_len - plen, d, dlen) : err;
}

tly_err tly_views_docs(tly_views *v, char view, tly_views_visit_fn visit, void *ctx,
                       uint64_t *checkpoint)
{
    uint64_t seq;
    TRY_VIEWS(doc_begin(v, &seq));
    docs_walk w = {v, view, visit, ctx};
    tly_err err = scan_txn(v, v->doc_txn.txn, TLY_ENGINE_PARTNER_PREFIX,
                           strlen(TLY_ENGINE_PARTNER_PREFIX), docs_visit, &w);
    mdb_txn_abort(v->doc_txn.txn);
    if (err == TLY_OK && checkpoint)
        *checkpoint = seq;
    return err;
}
