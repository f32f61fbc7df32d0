/*
 * audit_export.c — `tally audit export`: the log as JSON lines an outside
 * tool can recompute the chain from (SPEC section 7).
 *
 * Each line carries everything the chain hash covers: seq, recorded_ms,
 * source and the stored event bytes (base64), plus the stored hash to
 * compare with and the event as JSON for people. The key order is fixed
 * (jansson keeps insertion order), so two exports of one log are equal
 * byte for byte.
 */
#include <jansson.h>
#include <stdlib.h>

#include "tly_audit.h"
#include "tly_json.h"
#include "tly_log.h"

/* A growable text buffer for the base64 of one event. */
typedef struct text_buf {
    char *ptr;
    size_t cap;
} text_buf;

static bool text_reserve(text_buf *b, size_t need)
{
    if (need <= b->cap)
        return true;
    char *p = realloc(b->ptr, need);
    if (!p)
        return false;
    b->ptr = p;
    b->cap = need;
    return true;
}

/* Builds the export object of one record; NULL when the event is not
 * MessagePack that converts to JSON (or out of memory). */
static json_t *record_json(const tly_record *rec, text_buf *b64)
{
    char hex[2 * TLY_HASH_BYTES + 1];
    tly_hex_encode(rec->hash, TLY_HASH_BYTES, hex);
    if (!text_reserve(b64, 4 * ((rec->event_len + 2) / 3) + 1))
        return NULL;
    tly_b64_encode(rec->event, rec->event_len, b64->ptr);
    json_t *event = tly_json_from_mp(rec->event, rec->event_len);
    if (!event)
        return NULL;
    /* "s%" takes the source with its length: it is not NUL-terminated. */
    return json_pack("{s:I, s:I, s:s%, s:s, s:s, s:o}", "seq", (json_int_t)rec->seq, "recorded_ms",
                     (json_int_t)rec->recorded_ms, "source", rec->source.ptr,
                     (size_t)rec->source.len, "hash", hex, "event_b64", b64->ptr, "event", event);
}

/* Writes one line; TLY_CORRUPT when the record cannot be shown as JSON,
 * TLY_IO when out fails. The line is built in line (reused) and written
 * with one fwrite: json_dumpf writes piece by piece, which cost a quarter
 * of the export's time. */
static tly_err write_line(const tly_record *rec, text_buf *b64, text_buf *line, FILE *out)
{
    json_t *o = record_json(rec, b64);
    if (!o)
        return TLY_CORRUPT;
    size_t n = json_dumpb(o, line->ptr, line->cap, JSON_COMPACT);
    if (n + 1 > line->cap && n > 0) {
        if (!text_reserve(line, n + 1)) {
            json_decref(o);
            return TLY_NOMEM;
        }
        n = json_dumpb(o, line->ptr, line->cap, JSON_COMPACT);
    }
    json_decref(o);
    if (n == 0)
        return TLY_NOMEM;
    line->ptr[n] = '\n';
    return fwrite(line->ptr, 1, n + 1, out) == n + 1 ? TLY_OK : TLY_IO;
}

/* Streams the records of one snapshot from rd. */
static tly_err export_records(tly_log_reader *rd, uint64_t first, uint64_t to_seq, uint64_t total,
                              FILE *out, tly_audit_progress_fn progress, void *ctx, uint64_t *count,
                              uint64_t *bad_seq)
{
    text_buf b64 = {NULL, 0}, line = {NULL, 0};
    tly_record rec;
    tly_err err;
    uint64_t n = 0;
    uint64_t expect = first;
    while ((err = tly_log_reader_next(rd, &rec)) == TLY_OK) {
        if (to_seq && rec.seq > to_seq)
            break;
        expect = rec.seq + 1;
        err = write_line(&rec, &b64, &line, out);
        if (err != TLY_OK) {
            *bad_seq = rec.seq;
            break;
        }
        if (++n % TLY_AUDIT_PROGRESS_RECORDS == 0 && progress)
            progress(ctx, n, total);
    }
    free(b64.ptr);
    free(line.ptr);
    if (err == TLY_CORRUPT && *bad_seq == 0)
        *bad_seq = expect; /* the reader refused the record after the last good one */
    *count = n;
    return err == TLY_NOT_FOUND ? TLY_OK : err;
}

tly_err tly_audit_export(const char *log_dir, uint64_t from_seq, uint64_t to_seq, FILE *out,
                         tly_audit_progress_fn progress, void *ctx, uint64_t *count,
                         uint64_t *bad_seq)
{
    uint64_t n = 0, bad = 0, head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    tly_log *log;
    tly_err err = tly_log_open(log_dir, TLY_LOG_READ, &log);
    if (err != TLY_OK)
        return err;
    tly_log_reader *rd;
    err = tly_log_head(log, &head, hash);
    if (err == TLY_OK && from_seq <= head)
        err = tly_log_reader_open(log, from_seq ? from_seq : 1, &rd);
    else if (err == TLY_OK)
        rd = NULL; /* nothing to export past the head */
    if (err == TLY_OK && rd) {
        uint64_t last = to_seq && to_seq < head ? to_seq : head;
        uint64_t first = from_seq ? from_seq : 1;
        uint64_t total = last >= first ? last - first + 1 : 0;
        err = export_records(rd, first, to_seq, total, out, progress, ctx, &n, &bad);
        tly_log_reader_close(rd);
        if (err == TLY_OK && progress)
            progress(ctx, n, total);
    }
    tly_log_close(log);
    if (err == TLY_OK && fflush(out) != 0)
        err = TLY_IO;
    if (count)
        *count = n;
    if (bad_seq)
        *bad_seq = bad;
    return err;
}
