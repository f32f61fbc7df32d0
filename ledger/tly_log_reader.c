/*
 * tly_log_reader.c — reading records in seq order from one snapshot, in any
 * process, while the writer appends.
 */
#include <stdio.h>
#include <stdlib.h>

#include "log_internal.h"
#include "tly_assert.h"
#include "tly_os.h"

struct tly_log_reader {
    tly_log *log;
    MDB_txn *txn; /* read-only: the snapshot */
    MDB_cursor *cur;
    uint64_t next_seq; /* the seq the next record must carry */
    bool started;
    bool corrupt;         /* sticky: a reader never skips a bad record */
    const void *last_val; /* the last value read: an address in the map */
};

tly_err tly_log_reader_open(tly_log *log, uint64_t from_seq, tly_log_reader **out)
{
    TLY_ASSERT(log && out);
    tly_log_reader *rd = calloc(1, sizeof *rd);
    if (!rd)
        return TLY_NOMEM;
    tly_err err = tly__log_read_begin(log, &rd->txn);
    if (err != TLY_OK) {
        free(rd);
        return err;
    }
    int rc = mdb_cursor_open(rd->txn, log->dbi_log, &rd->cur);
    if (rc != MDB_SUCCESS) {
        tly__log_read_end(log, rd->txn);
        free(rd);
        return tly__log_mdb_err(rc, "mdb_cursor_open");
    }
    rd->log = log;
    rd->next_seq = from_seq == 0 ? 1 : from_seq;
    *out = rd;
    return TLY_OK;
}

/* Moves the cursor to the next record and checks that it carries the
 * seq expected next (sticky corrupt otherwise); *v is its stored value. */
static tly_err next_value(tly_log_reader *rd, MDB_val *v)
{
    if (rd->corrupt)
        return TLY_CORRUPT;
    uint8_t key[8];
    MDB_val k = {8, key};
    int rc;
    if (rd->started) {
        rc = mdb_cursor_get(rd->cur, &k, v, MDB_NEXT);
    } else {
        tly_be64_put(key, rd->next_seq);
        rc = mdb_cursor_get(rd->cur, &k, v, MDB_SET_RANGE);
    }
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_cursor_get (log)");
    rd->started = true;
    rd->last_val = v->mv_data;
    if (k.mv_size != 8 || tly_be64_get(k.mv_data) != rd->next_seq) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: seq %llu is missing", (unsigned long long)rd->next_seq);
        rd->corrupt = true;
        return TLY_CORRUPT;
    }
    return TLY_OK;
}

tly_err tly_log_reader_next(tly_log_reader *rd, tly_record *rec)
{
    MDB_val v;
    tly_err err = next_value(rd, &v);
    if (err != TLY_OK)
        return err;
    tly_record r;
    if (tly_record_decode(v.mv_data, v.mv_size, &r) != TLY_OK || r.seq != rd->next_seq) {
        tly_logf(TLY_LOG_ERROR, NULL, "log: record %llu does not decode",
                 (unsigned long long)rd->next_seq);
        rd->corrupt = true;
        return TLY_CORRUPT;
    }
    *rec = r;
    rd->next_seq++;
    return TLY_OK;
}

tly_err tly_log_reader_next_raw(tly_log_reader *rd, uint64_t *seq, const uint8_t **raw,
                                size_t *raw_len)
{
    MDB_val v;
    tly_err err = next_value(rd, &v);
    if (err != TLY_OK)
        return err;
    *seq = rd->next_seq++;
    *raw = v.mv_data;
    *raw_len = v.mv_size;
    return TLY_OK;
}

void tly_log_reader_close(tly_log_reader *rd)
{
    if (!rd)
        return;
    mdb_cursor_close(rd->cur);
    tly__log_read_end(rd->log, rd->txn);
    free(rd);
}

/*
 * Why dropping the page-table entries is safe while readers are open: LMDB
 * maps data.mdb MAP_SHARED, and without MDB_WRITEMAP read-only (PROT_READ;
 * the writer uses pwrite), so the map holds no data of its own: the page
 * cache does. MADV_DONTNEED on such a mapping only unmaps; the next access
 * to an address faults in the page cache's page, and LMDB never rewrites a
 * page that a live snapshot can reach, so that is the same bytes the
 * reader saw. tly_os_release_file_map checks the mapping is read-only and
 * shared and does nothing otherwise (MDB_WRITEMAP maps it writable). This
 * open reader holds map_lock for reading, so no growth moves the map
 * meanwhile.
 */
void tly_log_reader_release(tly_log_reader *rd)
{
    (void)tly_os_release_file_map(rd->last_val);
}
