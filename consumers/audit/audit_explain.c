/*
 * audit_explain.c — the log side of `tally explain`: folds DIR/log from seq 1
 * through an engine with an explain trace attached (tly_explain.h). The
 * report itself is built by the engine room; the command prints it.
 */
#include <stdio.h>

#include "audit_int.h"
#include "tly_audit.h"
#include "tly_layout.h"
#include "tly_log.h"
#include "tly_os.h"

/* Records between two progress updates: tly_progress rate-limits itself,
 * this only keeps the clock reads out of the fold's way. */
#define EXPLAIN_PROGRESS_RECORDS 4096u

static tly_err fold_one(tly_engine *e, tly_explain *x, const tly_record *rec, char *msg, size_t cap)
{
    tly_event ev;
    tly_field_error fe = {{0}, {0}};
    tly_err err = tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, &ev, &fe);
    if (err != TLY_OK) {
        tly_audit_msgf(msg, cap, "seq %llu does not decode (%s %s); run 'tally audit verify'",
                       (unsigned long long)rec->seq, fe.field, fe.message);
        return err;
    }
    err = tly_engine_apply(e, rec, &ev);
    if (err != TLY_OK) {
        tly_audit_msgf(msg, cap, "seq %llu: the engine stopped: %s", (unsigned long long)rec->seq,
                       tly_strerror(err));
        return err;
    }
    tly_explain_note(x, rec, &ev);
    return TLY_OK;
}

/* Folds records 1..last of the open log. */
static tly_err fold_log(tly_log *log, uint64_t last, tly_engine *e, tly_explain *x, char *msg,
                        size_t cap)
{
    tly_log_reader *rd = NULL;
    tly_err err = tly_log_reader_open(log, 1, &rd);
    tly_record rec;
    while (err == TLY_OK && tly_engine_seq(e) < last) {
        err = tly_log_reader_next(rd, &rec);
        if (err != TLY_OK) {
            tly_audit_msgf(msg, cap, "reading seq %llu: %s",
                           (unsigned long long)tly_engine_seq(e) + 1, tly_strerror(err));
            break;
        }
        err = fold_one(e, x, &rec, msg, cap);
        if (rec.seq % EXPLAIN_PROGRESS_RECORDS == 0)
            tly_progress("explain: folding", rec.seq, last);
    }
    tly_progress_end();
    tly_log_reader_close(rd);
    return err;
}

tly_err tly_audit_explain_fold(const char *data, uint64_t to_seq, tly_engine *e, tly_explain *x,
                               char *msg, size_t cap)
{
    char dir[TLY_PATH_BYTES_MAX];
    if (tly_layout_log(data, dir, sizeof dir) != TLY_OK) {
        tly_audit_msgf(msg, cap, "path too long: %s", data);
        return TLY_USAGE;
    }
    tly_log *log = NULL;
    tly_err err = tly_log_open(dir, TLY_LOG_READ, &log);
    if (err != TLY_OK) {
        tly_audit_msgf(msg, cap, "cannot open the log %s: %s", dir, tly_strerror(err));
        return err;
    }
    uint64_t head = 0;
    err = tly_log_head(log, &head, NULL);
    if (err == TLY_OK && to_seq != UINT64_MAX && to_seq > head) {
        tly_audit_msgf(msg, cap, "--to %llu is beyond the log head %llu",
                       (unsigned long long)to_seq, (unsigned long long)head);
        err = TLY_NOT_FOUND;
    } else if (err == TLY_OK) {
        err = fold_log(log, to_seq < head ? to_seq : head, e, x, msg, cap);
    } else {
        tly_audit_msgf(msg, cap, "log head: %s", tly_strerror(err));
    }
    tly_log_close(log);
    return err;
}
