/* tly_send.c — streaming import for `tally send`; see tly_send.h. */
#include "tly_send.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_csv.h"
#include "tly_import.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_os.h"

/*
 * What this run has appended. The ledger's log head is read before the
 * first request is sent; every record this run appends gets a seq above it.
 * After a ledger crash the resend of a request whose acknowledgement was
 * lost comes back `dup` with the seqs the first attempt got: a dup above the
 * head is this run's own and counts as sent, unless its seq was already
 * counted (the same event twice in the input). bits[i] is seq head+1+i.
 */
typedef struct send_run {
    tly_send_stats *stats;
    tly_client *client;
    FILE *report, *receipts;
    uint64_t line;   /* where the event being added starts in the input */
    bool head_known; /* false: every dup counts as a duplicate */
    uint64_t head;
    uint8_t *bits;
    size_t bits_bytes;
} send_run;

/* What a request carries besides its bytes, to report outcomes per line. */
typedef struct batch_meta {
    send_run *run;
    uint32_t count;
    uint64_t *lines;
    char (*ids)[TLY_ID_BYTES_MAX + 1];
} batch_meta;

/* The batch being filled. */
typedef struct batch {
    char source[TLY_SOURCE_BYTES_MAX + 1];
    msgpack_sbuffer buf; /* the events, back to back */
    msgpack_sbuffer ev;  /* the line being added, before it joins buf */
    tly_span spans[TLY_BATCH_EVENTS_MAX];
    size_t offsets[TLY_BATCH_EVENTS_MAX];
    uint64_t lines[TLY_BATCH_EVENTS_MAX];
    char ids[TLY_BATCH_EVENTS_MAX][TLY_ID_BYTES_MAX + 1];
    uint32_t count;
} batch;

static void report_reject(FILE *out, uint64_t line, const char *id, tly_err err, const char *field,
                          const char *message)
{
    if (!out)
        return;
    tly_progress_end();
    fprintf(out, "line %llu (id %s): %s", (unsigned long long)line, id[0] ? id : "?",
            tly_err_name(err));
    if (field && field[0])
        fprintf(out, " [%s]", field);
    fprintf(out, ": %s\n", message && message[0] ? message : tly_strerror(err));
}

/* Marks seq as counted by this run. True when it is above the head and was
 * not counted before; false when it was, or cannot be tracked (at or below
 * the head, unknown head, beyond TLY_SEND_RUN_SEQS_MAX, out of memory). */
static bool run_claim(send_run *r, uint64_t seq)
{
    if (!r->head_known || seq <= r->head || seq - r->head > TLY_SEND_RUN_SEQS_MAX)
        return false;
    uint64_t bit = seq - r->head - 1;
    if (bit / 8 >= r->bits_bytes) {
        size_t want = r->bits_bytes ? r->bits_bytes : 4096;
        while (want <= bit / 8)
            want *= 2;
        uint8_t *grown = realloc(r->bits, want);
        if (!grown)
            return false;
        memset(grown + r->bits_bytes, 0, want - r->bits_bytes);
        r->bits = grown;
        r->bits_bytes = want;
    }
    uint8_t mask = (uint8_t)(1u << (bit % 8));
    if (r->bits[bit / 8] & mask)
        return false;
    r->bits[bit / 8] |= mask;
    return true;
}

/* Counts one acknowledged event: new is sent; dup is sent when this run
 * appended it (see send_run), else a duplicate; and writes its receipt. */
static void count_ack(send_run *r, const tly_ingest_result *res, uint64_t line, const char *id)
{
    bool appended = true;
    if (!res->dup) {
        run_claim(r, res->seq);
        r->stats->sent++;
    } else if (run_claim(r, res->seq)) {
        r->stats->sent++;
        r->stats->recovered++;
    } else {
        r->stats->duplicates++;
        appended = false;
    }
    if (r->receipts)
        fprintf(r->receipts, "%llu %s %llu %s\n", (unsigned long long)line, id,
                (unsigned long long)res->seq, appended ? "appended" : "duplicate");
}

static void on_done(void *ctx, uint64_t tag, tly_err whole, const tly_ingest_result *results,
                    uint32_t count, const char *msg)
{
    (void)tag;
    batch_meta *m = ctx;
    tly_send_stats *st = m->run->stats;
    /* Given up: these events may or may not be in the log. */
    if (whole == TLY_TIMEOUT && tly_client_gave_up(m->run->client))
        st->unconfirmed += m->count;
    for (uint32_t i = 0; i < m->count && !tly_client_gave_up(m->run->client); i++) {
        if (whole != TLY_OK || i >= count) {
            st->rejected++;
            report_reject(m->run->report, m->lines[i], m->ids[i],
                          whole == TLY_OK ? TLY_MALFORMED : whole, NULL,
                          whole == TLY_OK ? "no result for this event" : msg);
        } else if (results[i].err != TLY_OK) {
            st->rejected++;
            report_reject(m->run->report, m->lines[i], m->ids[i], results[i].err, results[i].field,
                          results[i].message);
        } else {
            count_ack(m->run, &results[i], m->lines[i], m->ids[i]);
        }
    }
    free(m->lines);
    free(m->ids);
    free(m);
}

/* The source a request of events from src declares: none with CURVE when
 * the line named none (the key's name is the source). */
static const char *wire_source(const tly_send_config *cfg, const char *src)
{
    return cfg->client.server_key && !src[0] ? NULL : src;
}

/* Submits the batch as one request (when it holds any event) and empties it. */
static tly_err flush_batch(tly_client *c, const tly_send_config *cfg, batch *b, send_run *run)
{
    if (b->count == 0)
        return TLY_OK;
    batch_meta *m = calloc(1, sizeof *m);
    if (!m)
        return TLY_NOMEM;
    m->run = run;
    m->count = b->count;
    m->lines = malloc(b->count * sizeof *m->lines);
    m->ids = malloc(b->count * sizeof *m->ids);
    if (!m->lines || !m->ids) {
        free(m->lines);
        free(m->ids);
        free(m);
        return TLY_NOMEM;
    }
    memcpy(m->lines, b->lines, b->count * sizeof *m->lines);
    memcpy(m->ids, b->ids, b->count * sizeof *m->ids);
    for (uint32_t i = 0; i < b->count; i++) {
        b->spans[i].ptr = (const uint8_t *)b->buf.data + b->offsets[i];
        b->spans[i].len = (i + 1 < b->count ? b->offsets[i + 1] : b->buf.size) - b->offsets[i];
    }
    tly_err err = tly_client_submit(c, wire_source(cfg, b->source), b->spans, b->count, cfg->atomic,
                                    0, on_done, m);
    if (err != TLY_OK) {
        on_done(m, 0, err, NULL, 0, tly_strerror(err));
    }
    msgpack_sbuffer_clear(&b->buf);
    b->count = 0;
    return tly_client_gave_up(c) ? TLY_TIMEOUT : TLY_OK;
}

/* ---- lines ---- */

/* Turns one JSON line into (source, event). Returns the event (new
 * reference) or NULL with fe set; *source borrows from *holder. */
static json_t *line_event(const tly_send_config *cfg, const char *line, json_t **holder,
                          const char **source, tly_field_error *fe)
{
    *source = cfg->source;
    const char *record_source = NULL;
    json_t *ev = tly_import_json_line(line, holder, &record_source, fe);
    if (!*source)
        *source = record_source;
    return ev;
}

static void id_of(json_t *ev, char *out)
{
    const char *id = json_string_value(json_object_get(ev, "id"));
    snprintf(out, TLY_ID_BYTES_MAX + 1, "%s", id ? id : "");
}

/*
 * Moves the encoded event in b->ev (of source src, id id, from the current
 * input line) into the batch. The batch is sent first when the event would not join
 * it: the batch holds cfg->batch events, has another source, or its request
 * would outgrow TLY_FRAME_BYTES_MAX with the event (tly_client_request_bytes
 * counts the envelope exactly). An event whose request would outgrow the
 * frame even alone is refused: TLY_TOO_LARGE with fe->message saying so.
 */
static tly_err batch_append(tly_client *c, const tly_send_config *cfg, batch *b, const char *src,
                            send_run *run, tly_field_error *fe, const char *id)
{
    const char *ws = wire_source(cfg, src);
    size_t len = b->ev.size;
    tly_err err = TLY_OK;
    if (b->count > 0 && (b->count == cfg->batch || strcmp(b->source, src) != 0 ||
                         tly_client_request_bytes(c, ws, cfg->atomic, b->count + 1,
                                                  b->buf.size + len) > TLY_FRAME_BYTES_MAX))
        err = flush_batch(c, cfg, b, run);
    if (err != TLY_OK)
        return err;
    size_t alone = tly_client_request_bytes(c, ws, cfg->atomic, 1, len);
    if (alone > TLY_FRAME_BYTES_MAX) {
        fe->field[0] = '\0';
        snprintf(fe->message, sizeof fe->message,
                 "event is %zu bytes, at most %zu fit one request (frame limit %u bytes): "
                 "not sent",
                 len, len - (alone - TLY_FRAME_BYTES_MAX), TLY_FRAME_BYTES_MAX);
        return TLY_TOO_LARGE;
    }
    if (msgpack_sbuffer_write(&b->buf, b->ev.data, len) != 0)
        return TLY_NOMEM;
    snprintf(b->source, sizeof b->source, "%s", src);
    b->offsets[b->count] = b->buf.size - len;
    b->lines[b->count] = run->line;
    memcpy(b->ids[b->count], id, TLY_ID_BYTES_MAX + 1);
    b->count++;
    return TLY_OK;
}

/*
 * Adds the event of input line run->line to the batch (see batch_append):
 * ev with its source and id, or, when ev is NULL, the error err with fe
 * that converting the line gave. A line that cannot be sent is reported and
 * counted as rejected; only TLY_NOMEM stops the import.
 */
static tly_err add_event(tly_client *c, const tly_send_config *cfg, batch *b, send_run *run,
                         json_t *ev, tly_err err, const char *source, tly_field_error *fe,
                         const char *id)
{
    tly_send_stats *st = run->stats;
    if (ev && !source && !cfg->client.server_key) {
        err = TLY_MALFORMED;
        snprintf(fe->message, sizeof fe->message, "no source: give --source NAME");
    }
    if (ev && source && !tly_source_valid(source, strlen(source))) {
        err = TLY_MALFORMED;
        snprintf(fe->message, sizeof fe->message,
                 "source must be 1..%u bytes of UTF-8 without control characters",
                 TLY_SOURCE_BYTES_MAX);
    }
    msgpack_sbuffer_clear(&b->ev);
    if (err == TLY_OK)
        err = tly_json_event_to_mp(ev, &b->ev, fe);
    if (err == TLY_OK)
        err = batch_append(c, cfg, b, source ? source : "", run, fe, id);
    if (err != TLY_OK && err != TLY_NOMEM && err != TLY_TIMEOUT) {
        st->rejected++;
        report_reject(cfg->report, run->line, id, err, fe->field, fe->message);
        err = TLY_OK;
    }
    return err;
}

/* Adds one JSON line (see add_event). A line that is not a JSON object is
 * malformed. */
static tly_err add_line(tly_client *c, const tly_send_config *cfg, batch *b, const char *line,
                        send_run *run)
{
    tly_field_error fe = {{0}, {0}};
    json_t *holder = NULL;
    const char *source = NULL;
    char id[TLY_ID_BYTES_MAX + 1] = "";
    json_t *ev = line_event(cfg, line, &holder, &source, &fe);
    if (ev)
        id_of(ev, id);
    run->line = run->stats->lines;
    tly_err err = add_event(c, cfg, b, run, ev, ev ? TLY_OK : TLY_MALFORMED, source, &fe, id);
    json_decref(ev);
    json_decref(holder);
    return err;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/*
 * Learns the log head before anything is sent (see send_run), from the
 * ledger's log-read endpoint cfg->log_read. Without it (no endpoint, no
 * answer, forbidden) the run goes on and every dup counts as a duplicate;
 * why is kept in why[] for the note at the end.
 */
static void learn_head(tly_client *c, const tly_send_config *cfg, send_run *run, char *why,
                       size_t cap)
{
    if (!cfg->log_read) {
        snprintf(why, cap, "no log-read endpoint (give --log-read)");
        return;
    }
    run->head_known = tly_client_log_head(c, cfg->log_read, &run->head, why, cap) == TLY_OK;
}

/* The notes at the end of a run: events recovered as sent, or duplicates
 * counted without knowing the head. */
static void note_head(const send_run *run, const char *why)
{
    if (!run->report)
        return;
    tly_progress_end();
    if (run->stats->recovered > 0)
        fprintf(run->report,
                "tally send: %llu events acknowledged as duplicates were appended by this run "
                "(above the log head %llu at its start) and count as sent\n",
                (unsigned long long)run->stats->recovered, (unsigned long long)run->head);
    if (run->head_known || run->stats->duplicates == 0)
        return;
    fprintf(run->report,
            "tally send: note: the log head at the start was not known (%s), so events this "
            "run appended before a ledger crash count as duplicates\n",
            why);
}

static void progress(const tly_send_stats *st)
{
    tly_progress("sending", st->sent + st->duplicates + st->rejected, 0);
}

/* Sends the JSON lines of `in`; blank lines count in the line numbers.
 * getline's -1 is the end of the input or a read error (an I/O error, a
 * directory given as FILE): the error is TLY_IO with msg set, never taken
 * for the end, so a run that could not read its input does not say "sent". */
static tly_err send_lines(tly_client *c, const tly_send_config *cfg, batch *b, send_run *run,
                          FILE *in, char *msg, size_t cap)
{
    char *line = NULL;
    size_t linecap = 0;
    tly_err err = TLY_OK;
    errno = 0;
    while (err == TLY_OK && getline(&line, &linecap, in) > 0) {
        run->stats->lines++;
        if (blank(line))
            continue;
        err = add_line(c, cfg, b, line, run);
        progress(run->stats);
        errno = 0;
    }
    if (err == TLY_OK && ferror(in)) {
        snprintf(msg, cap, "cannot read the input after line %llu: %s",
                 (unsigned long long)run->stats->lines, strerror(errno ? errno : EIO));
        err = TLY_IO;
    }
    free(line);
    return err;
}

/* A CSV import: the reader and the header's columns. */
typedef struct csv_input {
    tly_csv_reader *reader;
    tly_csv_map map;
    tly_csv_row row;
} csv_input;

/*
 * Reads the CSV header of `in` and maps its columns (cfg->columns). Nothing
 * has been sent when it fails: TLY_USAGE for bad --columns text,
 * TLY_MALFORMED for a file without a usable header, TLY_IO, TLY_NOMEM;
 * msg says why, with the header's line.
 */
static tly_err csv_start(const tly_send_config *cfg, FILE *in, csv_input *ci, char *msg, size_t cap)
{
    tly_csv_names names;
    char why[200] = "";
    tly_err err = tly_csv_names_parse(cfg->columns, &names, why, sizeof why);
    if (err != TLY_OK) {
        snprintf(msg, cap, "--columns: %s", why);
        return err;
    }
    if ((err = tly_csv_reader_open(in, &ci->reader)) != TLY_OK)
        return err;
    err = tly_csv_reader_next(ci->reader, &ci->row, why, sizeof why);
    if (err == TLY_NOT_FOUND) {
        snprintf(msg, cap, "empty CSV: the first row must name the columns (%s)",
                 "id,partner,sku,qty,amount,currency,at");
        return TLY_MALFORMED;
    }
    if (err == TLY_OK)
        err = tly_csv_map_header(&names, &ci->row, &ci->map, why, sizeof why);
    if (err == TLY_MALFORMED)
        snprintf(msg, cap, "CSV line %llu: %s", (unsigned long long)ci->row.line, why);
    else if (err != TLY_OK)
        snprintf(msg, cap, "%s", why);
    return err;
}

/* Sends the CSV rows after the header, each reported by the line it
 * starts on. A row the reader cannot read is malformed, and reading goes
 * on with the next line. */
static tly_err send_rows(tly_client *c, const tly_send_config *cfg, batch *b, send_run *run,
                         csv_input *ci, char *msg, size_t cap)
{
    tly_err err = TLY_OK;
    while (err == TLY_OK) {
        tly_field_error fe = {{0}, {0}};
        tly_err read = tly_csv_reader_next(ci->reader, &ci->row, fe.message, sizeof fe.message);
        run->stats->lines = tly_csv_reader_lines(ci->reader);
        if (read == TLY_NOT_FOUND)
            break;
        if (read != TLY_OK && read != TLY_MALFORMED) {
            snprintf(msg, cap, "%s", fe.message);
            return read;
        }
        char id[TLY_ID_BYTES_MAX + 1] = "";
        tly_err conv = read;
        json_t *ev = NULL;
        if (read == TLY_OK) {
            tly_csv_row_id(&ci->map, &ci->row, id);
            ev = tly_csv_row_event(&ci->map, &ci->row, &conv, &fe);
        }
        run->line = ci->row.line;
        err = conv == TLY_NOMEM ? conv : add_event(c, cfg, b, run, ev, conv, cfg->source, &fe, id);
        json_decref(ev);
        progress(run->stats);
    }
    return err;
}

tly_err tly_send_stream(const tly_send_config *cfg, FILE *in, tly_send_stats *st, char *msg,
                        size_t cap)
{
    tly_client *c = NULL;
    tly_err err = tly_client_open(&cfg->client, &c, msg, cap);
    if (err != TLY_OK)
        return err;
    batch *b = calloc(1, sizeof *b);
    csv_input *ci = cfg->csv ? calloc(1, sizeof *ci) : NULL;
    send_run run = {.stats = st, .client = c, .report = cfg->report, .receipts = cfg->receipts};
    char why[256] = "";
    if (!b || (cfg->csv && !ci))
        err = TLY_NOMEM;
    if (b) {
        msgpack_sbuffer_init(&b->buf);
        msgpack_sbuffer_init(&b->ev);
    }
    if (err == TLY_OK && ci)
        err = csv_start(cfg, in, ci, msg, cap);
    if (err == TLY_OK)
        learn_head(c, cfg, &run, why, sizeof why);
    if (err == TLY_OK)
        err = ci ? send_rows(c, cfg, b, &run, ci, msg, cap)
                 : send_lines(c, cfg, b, &run, in, msg, cap);
    if (err == TLY_OK)
        err = flush_batch(c, cfg, b, &run);
    tly_client_drain(c);
    if (tly_client_gave_up(c)) {
        st->unconfirmed += b->count; /* read, never sent */
        err = TLY_TIMEOUT;
        snprintf(msg, cap, "no acknowledgement from %s for %lld s", cfg->client.endpoint,
                 (long long)(cfg->client.give_up_ms / 1000));
    }
    note_head(&run, why);
    free(run.bits);
    if (b) {
        msgpack_sbuffer_destroy(&b->buf);
        msgpack_sbuffer_destroy(&b->ev);
    }
    free(b);
    if (ci)
        tly_csv_reader_free(ci->reader);
    free(ci);
    tly_client_close(c);
    return err;
}
