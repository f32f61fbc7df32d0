/*
 * log_internal.h — what the files of the log store (tly_log*.c) share and
 * nobody else may see: the handle, the batch scratch space and the LMDB
 * edge helpers.
 */
#ifndef TLY_LOG_INTERNAL_H
#define TLY_LOG_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tly_be.h"
#include "tly_log.h"

/* ids key: u16be(len(source)) ‖ source ‖ id. */
#define TLY_LOG_IDS_KEY_BYTES_MAX (2u + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX)
_Static_assert(TLY_LOG_IDS_KEY_BYTES_MAX <= 511, "LMDB's default maximum key size is 511");

/* Doublings of the map one append may do. The map size is a size_t, so it
 * cannot double more than 64 times; the real bound is map_bytes_max. */
#define TLY_LOG_GROW_ATTEMPTS_MAX 64u

/* Per-item state during one append; lives in the handle and is reused. */
typedef struct log_slot {
    tly_err in_err;     /* the item's err on input, restored before a retry */
    uint32_t dup_of;    /* DUP_BATCH: index of the earlier item */
    uint32_t table_pos; /* NEW: its position in the batch table */
    uint8_t kind;       /* enum log_kind in tly_log_append.c */
} log_slot;

struct tly_log {
    MDB_env *env;
    MDB_dbi dbi_log;
    MDB_dbi dbi_ids;
    bool writer;
    bool env_opened; /* mdb_env_open succeeded */
    int lock_fd;     /* writer: flock'd dir/writer.lock; -1 for a reader */

    /* Growth remaps the file: it takes this lock for writing, every reader
     * and short read transaction of this handle holds it for reading. */
    pthread_rwlock_t map_lock;
    size_t map_bytes;
    size_t map_bytes_max;

    /* Writer: the head, changed only after a successful commit. */
    uint64_t head_seq;
    uint8_t head_hash[TLY_HASH_BYTES];
    int64_t head_recorded_ms;

    uint32_t commits_since_reader_check;

    /* Writer: the path of the lock_fd's file (tly__log_same_file). */
    char lock_path[TLY_PATH_BYTES_MAX + 32];
    bool replaced_logged;

    /* Writer: the replica every commit is handed to first (has_replica). */
    tly_log_replica replica;
    bool has_replica;

    /* Writer scratch, reused across appends (no allocation per event). */
    msgpack_sbuffer sbuf;
    log_slot *slots;
    uint32_t slots_cap;
    uint32_t *table;    /* open addressing: item index + 1, 0 = empty */
    uint32_t table_cap; /* a power of two */
};

/* Maps an LMDB return code to a tly_err and logs the original on stderr as
 * one line ("tally: log: <what>: <mdb_strerror>"). MDB_NOTFOUND is not
 * logged and maps to TLY_NOT_FOUND. */
tly_err tly__log_mdb_err(int rc, const char *what);

/* Begins a read transaction on the handle, holding map_lock for reading
 * until tly__log_read_end. Adopts a map grown by another process
 * (MDB_MAP_RESIZED) and retries. TLY_OK or TLY_STORAGE. */
tly_err tly__log_read_begin(tly_log *log, MDB_txn **txn);
void tly__log_read_end(tly_log *log, MDB_txn *txn);

/* Builds the ids key of (source, id) into key; returns its length. The
 * lengths must be within TLY_SOURCE_BYTES_MAX / TLY_ID_BYTES_MAX (asserted). */
size_t tly__log_ids_key(tly_str source, tly_str id, uint8_t key[TLY_LOG_IDS_KEY_BYTES_MAX]);

/* Sets the map size (0: adopt the size another process gave the
 * environment) once no reader of this handle is open, waiting at most
 * TLY_LOG_GROW_WAIT_MS. No write transaction may be active. TLY_OK or
 * TLY_STORAGE. */
tly_err tly__log_set_mapsize(tly_log *log, size_t bytes);

/* Reads the last record of the "log" database in txn: seq 0 when empty.
 * TLY_OK, TLY_CORRUPT or TLY_STORAGE. */
tly_err tly__log_last(tly_log *log, MDB_txn *txn, tly_record *rec, bool *empty);

/* Frees the reader slots of processes that died with a read transaction
 * open (a crashed consumer). Such a slot pins the pages of its old snapshot,
 * so the file would grow without bound, and a few of them fill the table. */
void tly__log_clear_stale_readers(tly_log *log);

/* Grows the map by doubling up to its maximum (TLY_STORAGE at it), as
 * tly__log_set_mapsize sets it. */
tly_err tly__log_grow_map(tly_log *log);

/* TLY_OK while DIR/writer.lock is still the file the writer locked; else
 * TLY_STORAGE (logged once): the log was removed or replaced under the
 * writer (tly_log_append, tly_log_append_stored). */
tly_err tly__log_same_file(tly_log *log);

/* Frees the writer's scratch space (tly_log_append.c). */
void tly__log_scratch_free(tly_log *log);

#endif
