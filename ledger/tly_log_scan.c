/*
 * tly_log_scan.c — the raw snapshot scan of tly_log.h: the stored bytes of
 * the "log" database and the "ids" index, read in one transaction, checked
 * by nothing (the auditor does the checking).
 */
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "tly_assert.h"

struct tly_log_scan {
    tly_log *log;
    MDB_txn *txn; /* read-only: the snapshot */
    MDB_cursor *cur;
    MDB_cursor *ids_cur; /* opened by the first ids lookup */
    bool ids_on;         /* ids_cur is on the entry the last lookup found */
    bool started;
};

tly_err tly_log_scan_open(tly_log *log, tly_log_scan **out)
{
    TLY_ASSERT(log && out);
    tly_log_scan *sc = calloc(1, sizeof *sc);
    if (!sc)
        return TLY_NOMEM;
    tly_err err = tly__log_read_begin(log, &sc->txn);
    if (err != TLY_OK) {
        free(sc);
        return err;
    }
    int rc = mdb_cursor_open(sc->txn, log->dbi_log, &sc->cur);
    if (rc != MDB_SUCCESS) {
        tly__log_read_end(log, sc->txn);
        free(sc);
        return tly__log_mdb_err(rc, "mdb_cursor_open");
    }
    sc->log = log;
    *out = sc;
    return TLY_OK;
}

tly_err tly_log_scan_open_twin(tly_log_scan *sc, tly_log_scan **out)
{
    TLY_ASSERT(sc && out);
    tly_log_scan *tw = NULL;
    tly_err err = tly_log_scan_open(sc->log, &tw);
    if (err != TLY_OK)
        return err;
    /* A read transaction's id is the id of the snapshot it reads. */
    if (mdb_txn_id(tw->txn) != mdb_txn_id(sc->txn)) {
        tly_log_scan_close(tw);
        return TLY_UNAVAILABLE;
    }
    *out = tw;
    return TLY_OK;
}

tly_err tly_log_scan_next(tly_log_scan *sc, tly_log_raw *raw)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(sc->cur, &k, &v, sc->started ? MDB_NEXT : MDB_FIRST);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_cursor_get (log)");
    sc->started = true;
    *raw = (tly_log_raw){k.mv_data, k.mv_size, v.mv_data, v.mv_size};
    return TLY_OK;
}

/* A cursor of its own, so that the scan's position stays where it is. */
uint64_t tly_log_scan_last_seq(tly_log_scan *sc)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(sc->txn, sc->log->dbi_log, &cur);
    if (rc != MDB_SUCCESS) {
        tly__log_mdb_err(rc, "mdb_cursor_open");
        return 0;
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        tly__log_mdb_err(rc, "mdb_cursor_get (last)");
    if (rc != MDB_SUCCESS || k.mv_size != 8)
        return 0;
    return tly_be64_get(k.mv_data);
}

tly_err tly_log_scan_ids_get(tly_log_scan *sc, tly_str source, tly_str id, const uint8_t **val,
                             size_t *val_len)
{
    if (source.len > TLY_SOURCE_BYTES_MAX || id.len > TLY_ID_BYTES_MAX)
        return TLY_NOT_FOUND; /* could never have been appended */
    if (!sc->ids_cur) {
        int rc = mdb_cursor_open(sc->txn, sc->log->dbi_ids, &sc->ids_cur);
        if (rc != MDB_SUCCESS) {
            sc->ids_cur = NULL;
            return tly__log_mdb_err(rc, "mdb_cursor_open (ids)");
        }
    }
    uint8_t key[TLY_LOG_IDS_KEY_BYTES_MAX];
    MDB_val k = {tly__log_ids_key(source, id, key), key}, v;
    /* Sources mostly number their ids in order, so the entry after the last
     * one found is often the one asked for: one step and one comparison
     * (keys are unique, so an equal key is that entry). Else one cursor for
     * every lookup: when the key lies in the leaf page the cursor is on,
     * LMDB searches that page alone instead of descending from the root. */
    MDB_val nk;
    if (sc->ids_on && mdb_cursor_get(sc->ids_cur, &nk, &v, MDB_NEXT) == MDB_SUCCESS &&
        nk.mv_size == k.mv_size && memcmp(nk.mv_data, k.mv_data, k.mv_size) == 0) {
        *val = v.mv_data;
        *val_len = v.mv_size;
        return TLY_OK;
    }
    int rc = mdb_cursor_get(sc->ids_cur, &k, &v, MDB_SET);
    sc->ids_on = rc == MDB_SUCCESS;
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_cursor_get (ids)");
    *val = v.mv_data;
    *val_len = v.mv_size;
    return TLY_OK;
}

tly_err tly_log_scan_ids_count(tly_log_scan *sc, uint64_t *count)
{
    MDB_stat ms;
    int rc = mdb_stat(sc->txn, sc->log->dbi_ids, &ms);
    if (rc != MDB_SUCCESS)
        return tly__log_mdb_err(rc, "mdb_stat (ids)");
    *count = ms.ms_entries;
    return TLY_OK;
}

void tly_log_scan_close(tly_log_scan *sc)
{
    if (!sc)
        return;
    if (sc->ids_cur)
        mdb_cursor_close(sc->ids_cur);
    mdb_cursor_close(sc->cur);
    tly__log_read_end(sc->log, sc->txn);
    free(sc);
}
