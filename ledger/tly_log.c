/*
 * tly_log.c — the log environment: open, close, head, lookup, and the LMDB
 * edge (error mapping, read transactions that survive a growing map).
 *
 * The append path is in tly_log_append.c, the reader in tly_log_reader.c,
 * the raw snapshot scan (for the audit) in tly_log_scan.c,
 * the record format and chain hash in tly_log_record.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log_internal.h"
#include "tly_assert.h"
#include "tly_layout.h"
#include "tly_os.h"

/* Named databases in the environment: "log" and "ids". Two spare slots cost
 * nothing and let a later version add an index without a format change. */
#define LOG_DBS_MAX 4u

tly_err tly__log_mdb_err(int rc, const char *what)
{
    TLY_ASSERT(rc != MDB_SUCCESS);
    if (rc == MDB_NOTFOUND)
        return TLY_NOT_FOUND;
    tly_logf(TLY_LOG_ERROR, NULL, "log: %s: %s", what, mdb_strerror(rc));
    switch (rc) {
    case ENOMEM:
        return TLY_NOMEM;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        return TLY_CORRUPT;
    default:
        /* MDB_MAP_FULL at the maximum, MDB_PANIC, EIO, ENOSPC, EFBIG, ... */
        return TLY_STORAGE;
    }
}

size_t tly__log_ids_key(tly_str source, tly_str id, uint8_t key[TLY_LOG_IDS_KEY_BYTES_MAX])
{
    TLY_ASSERT(source.len <= TLY_SOURCE_BYTES_MAX && id.len <= TLY_ID_BYTES_MAX);
    key[0] = (uint8_t)(source.len >> 8);
    key[1] = (uint8_t)source.len;
    memcpy(key + 2, source.ptr, source.len);
    memcpy(key + 2 + source.len, id.ptr, id.len);
    return 2u + source.len + id.len;
}

/* Deadline TLY_LOG_GROW_WAIT_MS from now, for pthread_rwlock_timedwrlock. */
static struct timespec grow_deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += TLY_LOG_GROW_WAIT_MS / 1000u;
    ts.tv_nsec += (long)(TLY_LOG_GROW_WAIT_MS % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Sets the map size as tly__log_set_mapsize does, or with grow, to twice
 * the size it finds under the lock, up to map_bytes_max: a reader thread
 * of the handle may adopt another process's size meanwhile
 * (tly__log_read_begin), so map_bytes is read under the lock only. */
static tly_err resize(tly_log *log, size_t bytes, bool grow)
{
    struct timespec deadline = grow_deadline();
    int prc = pthread_rwlock_timedwrlock(&log->map_lock, &deadline);
    if (prc != 0) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: map resize: readers of this process stay open: %s",
                 strerror(prc));
        return TLY_STORAGE;
    }
    if (grow && log->map_bytes >= log->map_bytes_max) {
        pthread_rwlock_unlock(&log->map_lock);
        tly_logf(TLY_LOG_ERROR, NULL, "log: the map is full at its maximum of %zu bytes",
                 log->map_bytes_max);
        return TLY_STORAGE;
    }
    if (grow)
        bytes = log->map_bytes > log->map_bytes_max / 2 ? log->map_bytes_max : log->map_bytes * 2;
    int rc = mdb_env_set_mapsize(log->env, bytes);
    MDB_envinfo info;
    if (rc == MDB_SUCCESS)
        rc = mdb_env_info(log->env, &info);
    if (rc == MDB_SUCCESS)
        log->map_bytes = info.me_mapsize;
    pthread_rwlock_unlock(&log->map_lock);
    return rc == MDB_SUCCESS ? TLY_OK : tly__log_mdb_err(rc, "mdb_env_set_mapsize");
}

tly_err tly__log_set_mapsize(tly_log *log, size_t bytes)
{
    return resize(log, bytes, false);
}

tly_err tly__log_grow_map(tly_log *log)
{
    return resize(log, 0, true);
}

void tly__log_clear_stale_readers(tly_log *log)
{
    int dead = 0;
    int rc = mdb_reader_check(log->env, &dead);
    if (rc != MDB_SUCCESS)
        tly__log_mdb_err(rc, "mdb_reader_check");
    else if (dead > 0)
        tly_logf(TLY_LOG_WARN, NULL, "log: freed %d reader slot(s) of dead processes", dead);
}

tly_err tly__log_read_begin(tly_log *log, MDB_txn **txn)
{
    bool checked = false;
    for (uint32_t attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&log->map_lock);
        int rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_SUCCESS)
            return TLY_OK;
        pthread_rwlock_unlock(&log->map_lock);
        if (rc == MDB_READERS_FULL && !checked) {
            checked = true; /* perhaps dead processes hold the slots */
            tly__log_clear_stale_readers(log);
            continue;
        }
        if (rc != MDB_MAP_RESIZED || attempt >= TLY_LOG_RESIZE_RETRIES_MAX)
            return tly__log_mdb_err(rc, "mdb_txn_begin (read)");
        /* Another process grew the map: adopt its size (0 = the size in the
         * environment's meta page) and try again. */
        tly_err err = tly__log_set_mapsize(log, 0);
        if (err != TLY_OK)
            return err;
    }
}

void tly__log_read_end(tly_log *log, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&log->map_lock);
}

tly_err tly__log_last(tly_log *log, MDB_txn *txn, tly_record *rec, bool *empty)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, log->dbi_log, &cur);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_cursor_open");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        *empty = true;
        return TLY_OK;
    }
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_cursor_get (last)");
    tly_record r;
    if (k.mv_size != 8 || tly_record_decode(v.mv_data, v.mv_size, &r) != TLY_OK ||
        r.seq != tly_be64_get(k.mv_data)) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: the last record does not decode");
        return TLY_CORRUPT;
    }
    *rec = r;
    *empty = false;
    return TLY_OK;
}

/* mkdir -p: creates dir and its missing parents. */
static tly_err make_dirs(const char *dir)
{
    size_t failed_len = 0;
    tly_err err = tly_mkdirs(dir, &failed_len);
    if (err == TLY_STORAGE)
        tly_logf(TLY_LOG_ERROR, NULL, "log: mkdir %.*s: %s", (int)failed_len, dir, strerror(errno));
    return err;
}

/* Takes the single-writer lock: an flock on dir/writer.lock. LMDB's own
 * writer mutex only serialises transactions; two ledgers would both keep a
 * head in memory and fight over the next seq. */
static tly_err lock_writer(tly_log *log, const char *dir)
{
    char path[TLY_PATH_BYTES_MAX + 32];
    if (tly_layout_join(dir, TLY_LAYOUT_WRITER_LOCK, path, sizeof path) != TLY_OK)
        return TLY_USAGE;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, TLY_FILE_MODE);
    if (fd < 0) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: open %s: %s", path, strerror(errno));
        return TLY_STORAGE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        tly_logf(TLY_LOG_ERROR, NULL, "log: %s: %s", path,
                 e == EWOULDBLOCK ? "another writer holds the log" : strerror(e));
        return e == EWOULDBLOCK ? TLY_UNAVAILABLE : TLY_STORAGE;
    }
    log->lock_fd = fd;
    snprintf(log->lock_path, sizeof log->lock_path, "%s", path);
    return TLY_OK;
}

static tly_err env_create(tly_log *log, size_t map_bytes)
{
    int rc = mdb_env_create(&log->env);
    if (rc != MDB_SUCCESS) {
        log->env = NULL;
        return tly__log_mdb_err(rc, "mdb_env_create");
    }
    rc = mdb_env_set_maxdbs(log->env, LOG_DBS_MAX);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_maxreaders(log->env, TLY_LOG_READERS_MAX);
    if (rc == MDB_SUCCESS && map_bytes != 0)
        rc = mdb_env_set_mapsize(log->env, map_bytes);
    return rc == MDB_SUCCESS ? TLY_OK : tly__log_mdb_err(rc, "mdb_env_set_*");
}

static tly_err env_open(tly_log *log, const char *dir, unsigned flags)
{
    /* MDB_NOTLS: read transactions belong to the handle, not the thread, so
     * a thread may hold several readers and hand them to another thread. */
    int rc = mdb_env_open(log->env, dir, flags | MDB_NOTLS, TLY_FILE_MODE);
    MDB_envinfo info;
    if (rc == MDB_SUCCESS)
        rc = mdb_env_info(log->env, &info);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_env_open");
    log->map_bytes = info.me_mapsize;
    log->env_opened = true;
    return TLY_OK;
}

/* Reads the head from the last record into the writer's memory. */
static tly_err load_head(tly_log *log, MDB_txn *txn)
{
    tly_record rec;
    bool empty;
    tly_err err = tly__log_last(log, txn, &rec, &empty);
    if (err != TLY_OK)
        return err;
    if (empty) {
        log->head_seq = 0;
        memset(log->head_hash, 0, TLY_HASH_BYTES);
        log->head_recorded_ms = INT64_MIN;
        return TLY_OK;
    }
    log->head_seq = rec.seq;
    memcpy(log->head_hash, rec.hash, TLY_HASH_BYTES);
    log->head_recorded_ms = rec.recorded_ms;
    return TLY_OK;
}

/* Opens (creating) both databases in one write transaction and loads the head. */
static tly_err open_dbs_writer(tly_log *log)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(log->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_txn_begin");
    rc = mdb_dbi_open(txn, "log", MDB_CREATE, &log->dbi_log);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &log->dbi_ids);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return tly__log_mdb_err(rc, "mdb_dbi_open");
    }
    tly_err err = load_head(log, txn);
    if (err != TLY_OK) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    return rc == MDB_SUCCESS ? TLY_OK : tly__log_mdb_err(rc, "mdb_txn_commit (open)");
}

/* Opens both databases without creating them; a missing one is TLY_NOT_FOUND.
 * A read transaction that opened handles must commit to keep them. */
static tly_err open_dbs_reader(tly_log *log)
{
    MDB_txn *txn;
    tly_err err = tly__log_read_begin(log, &txn);
    if (err != TLY_OK)
        return err;
    int rc = mdb_dbi_open(txn, "log", 0, &log->dbi_log);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "ids", 0, &log->dbi_ids);
    if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&log->map_lock);
    return rc == MDB_SUCCESS ? TLY_OK : tly__log_mdb_err(rc, "mdb_dbi_open");
}

/* Map ceiling: the option, else $TALLY_LOG_MAP_MAX_BYTES, else the default. */
static size_t map_max(const tly_log_opts *opts)
{
    if (opts && opts->map_bytes_max)
        return opts->map_bytes_max;
    return (size_t)tly_env_u64("TALLY_LOG_MAP_MAX_BYTES", 1, TLY_LOG_MAP_BYTES_MAX,
                               TLY_LOG_MAP_BYTES_MAX);
}

/*
 * A writer whose log was removed under it (an operator wiping DATA/log
 * while the ledger runs, and maybe starting another ledger there, whose
 * flock is on the new writer.lock) would otherwise go on appending into
 * the removed file and acknowledge events that vanish when it exits. The
 * lock file it holds, stat'd at every commit (tly_os_same_file), tells.
 */
tly_err tly__log_same_file(tly_log *log)
{
    if (tly_os_same_file(log->lock_path, log->lock_fd))
        return TLY_OK;
    if (!log->replaced_logged)
        tly_logf(TLY_LOG_ERROR, NULL,
                 "log: the log of %s was removed or replaced while this writer ran; every "
                 "append is refused (restart the ledger)",
                 log->lock_path);
    log->replaced_logged = true;
    return TLY_STORAGE;
}

static tly_err open_writer(tly_log *log, const char *dir, int flags, const tly_log_opts *opts)
{
    size_t init = opts && opts->map_bytes_init ? opts->map_bytes_init : TLY_LOG_MAP_BYTES_INIT;
    log->writer = true;
    log->map_bytes_max = map_max(opts);
    if (init > log->map_bytes_max)
        init = log->map_bytes_max;
    tly_err err = make_dirs(dir);
    if (err == TLY_OK)
        err = lock_writer(log, dir);
    /* No map size before the open: LMDB would impose it on an existing
     * environment, shrinking a map that has grown. Open with the stored
     * size, then raise it to init if smaller. */
    if (err == TLY_OK)
        err = env_create(log, 0);
    if (err == TLY_OK)
        err = env_open(log, dir, (flags & TLY_LOG_NO_SYNC) ? MDB_NOSYNC : 0);
    if (err == TLY_OK && log->map_bytes < init)
        err = tly__log_set_mapsize(log, init);
    if (err == TLY_OK)
        tly__log_clear_stale_readers(log);
    if (err == TLY_OK)
        err = open_dbs_writer(log);
    if (err == TLY_OK && log->map_bytes > log->map_bytes_max)
        log->map_bytes_max = log->map_bytes;
    return err;
}

static tly_err open_reader(tly_log *log, const char *dir)
{
    /* Check first: mdb_env_open would create lock.mdb even when it then
     * fails to find data.mdb, and a reader must leave no trace. */
    char path[TLY_PATH_BYTES_MAX + 32];
    struct stat st;
    if (tly_layout_join(dir, TLY_LAYOUT_LMDB_DATA, path, sizeof path) != TLY_OK)
        return TLY_USAGE;
    if (stat(path, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR ? TLY_NOT_FOUND : TLY_STORAGE;
    tly_err err = env_create(log, 0);
    if (err == TLY_OK)
        err = env_open(log, dir, MDB_RDONLY);
    if (err == TLY_OK)
        err = open_dbs_reader(log);
    log->map_bytes_max = log->map_bytes;
    return err;
}

tly_err tly_log_open_opts(const char *dir, int flags, const tly_log_opts *opts, tly_log **out)
{
    TLY_ASSERT(dir && out);
    tly_log *log = calloc(1, sizeof *log);
    if (!log)
        return TLY_NOMEM;
    log->lock_fd = -1;
    msgpack_sbuffer_init(&log->sbuf);
    if (pthread_rwlock_init(&log->map_lock, NULL) != 0) {
        free(log);
        return TLY_NOMEM;
    }
    tly_err err =
        (flags & TLY_LOG_WRITE) ? open_writer(log, dir, flags, opts) : open_reader(log, dir);
    if (err != TLY_OK) {
        tly_log_close(log);
        return err;
    }
    *out = log;
    return TLY_OK;
}

tly_err tly_log_open(const char *dir, int flags, tly_log **out)
{
    return tly_log_open_opts(dir, flags, NULL, out);
}

void tly_log_close(tly_log *log)
{
    if (!log)
        return;
    /* A --no-sync ledger that stops cleanly still leaves a durable log;
     * for a durable writer this costs nothing (nothing is unsynced). */
    if (log->env_opened && log->writer && mdb_env_sync(log->env, 1) != MDB_SUCCESS)
        tly_logf(TLY_LOG_ERROR, NULL, "log: final sync failed");
    if (log->env)
        mdb_env_close(log->env);
    if (log->lock_fd >= 0)
        close(log->lock_fd);
    pthread_rwlock_destroy(&log->map_lock);
    msgpack_sbuffer_destroy(&log->sbuf);
    tly__log_scratch_free(log);
    free(log);
}

size_t tly_log_map_bytes(tly_log *log)
{
    pthread_rwlock_rdlock(&log->map_lock);
    size_t bytes = log->map_bytes;
    pthread_rwlock_unlock(&log->map_lock);
    return bytes;
}

tly_err tly_log_head(tly_log *log, uint64_t *seq, uint8_t hash[TLY_HASH_BYTES])
{
    if (log->writer) {
        *seq = log->head_seq;
        if (hash)
            memcpy(hash, log->head_hash, TLY_HASH_BYTES);
        return TLY_OK;
    }
    MDB_txn *txn;
    tly_err err = tly__log_read_begin(log, &txn);
    if (err != TLY_OK)
        return err;
    tly_record rec;
    bool empty;
    err = tly__log_last(log, txn, &rec, &empty);
    if (err == TLY_OK) {
        *seq = empty ? 0 : rec.seq;
        if (hash && empty)
            memset(hash, 0, TLY_HASH_BYTES);
        else if (hash)
            memcpy(hash, rec.hash, TLY_HASH_BYTES);
    }
    tly__log_read_end(log, txn);
    return err;
}

tly_err tly_log_lookup(tly_log *log, tly_str source, tly_str id, uint64_t *seq)
{
    if (source.len > TLY_SOURCE_BYTES_MAX || id.len > TLY_ID_BYTES_MAX)
        return TLY_NOT_FOUND; /* could never have been appended */
    uint8_t key[TLY_LOG_IDS_KEY_BYTES_MAX];
    MDB_val k = {tly__log_ids_key(source, id, key), key}, v;
    MDB_txn *txn;
    tly_err err = tly__log_read_begin(log, &txn);
    if (err != TLY_OK)
        return err;
    int rc = mdb_get(txn, log->dbi_ids, &k, &v);
    if (rc != MDB_SUCCESS)
        err = tly__log_mdb_err(rc, "mdb_get (ids)");
    else if (v.mv_size != 8)
        err = TLY_CORRUPT;
    else
        *seq = tly_be64_get(v.mv_data);
    tly__log_read_end(log, txn);
    return err;
}
