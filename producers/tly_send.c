/* tly_send.c — streaming import for `tally send`; see tly_send.h. */
#include "tly_send.h"

#include <stdlib.h>
#include <string.h>

#include "tly_currency.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_period.h"

/* Encoded bytes per request before it is sent early: headroom under
 * TLY_FRAME_BYTES_MAX for the request envelope. */
#define TLY_SEND_BATCH_BYTES_MAX (TLY_FRAME_BYTES_MAX - 64u * 1024u)
/* CSV columns of a POS file [D18]. */
#define TLY_CSV_COLUMNS 7u
static const char csv_header[] = "id,partner,sku,qty,amount,currency,at";

/* What a request carries besides its bytes, to report outcomes per line. */
typedef struct batch_meta {
    tly_send_stats *stats;
    FILE *report;
    uint32_t count;
    uint64_t *lines;
    char (*ids)[TLY_ID_BYTES_MAX + 1];
} batch_meta;

/* The batch being filled. */
typedef struct batch {
    char source[TLY_SOURCE_BYTES_MAX + 1];
    msgpack_sbuffer buf;
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

static void on_done(void *ctx, uint64_t tag, tly_err whole, const tly_ingest_result *results,
                    uint32_t count, const char *msg)
{
    (void)tag;
    batch_meta *m = ctx;
    for (uint32_t i = 0; i < m->count; i++) {
        if (whole != TLY_OK || i >= count) {
            m->stats->rejected++;
            report_reject(m->report, m->lines[i], m->ids[i],
                          whole == TLY_OK ? TLY_MALFORMED : whole, NULL,
                          whole == TLY_OK ? "no result for this event" : msg);
        } else if (results[i].err != TLY_OK) {
            m->stats->rejected++;
            report_reject(m->report, m->lines[i], m->ids[i], results[i].err, results[i].field,
                          results[i].message);
        } else if (results[i].dup) {
            m->stats->duplicates++;
        } else {
            m->stats->sent++;
        }
    }
    free(m->lines);
    free(m->ids);
    free(m);
}

static tly_err flush_batch(tly_client *c, const tly_send_config *cfg, batch *b,
                           tly_send_stats *stats)
{
    if (b->count == 0)
        return TLY_OK;
    batch_meta *m = calloc(1, sizeof *m);
    if (!m)
        return TLY_NOMEM;
    m->stats = stats;
    m->report = cfg->report;
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
    const char *source = cfg->client.server_key && !b->source[0] ? NULL : b->source;
    tly_err err = tly_client_submit(c, source, b->spans, b->count, cfg->atomic, 0, on_done, m);
    if (err != TLY_OK) {
        on_done(m, 0, err, NULL, 0, tly_strerror(err));
    }
    msgpack_sbuffer_clear(&b->buf);
    b->count = 0;
    return TLY_OK;
}

/* ---- CSV ---- */

/* Splits one CSV line into fields (RFC 4180 quoting). Fields are written
 * NUL-terminated into storage; returns the field count or -1. */
static int csv_split(const char *line, char *storage, size_t cap, char **fields, int max)
{
    int n = 0;
    size_t w = 0;
    const char *p = line;
    for (;;) {
        if (n >= max || w >= cap)
            return -1;
        fields[n++] = storage + w;
        bool quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && (quoted || (*p != ',' && *p != '\r' && *p != '\n'))) {
            if (quoted && *p == '"') {
                if (p[1] != '"') {
                    quoted = false;
                    p++;
                    continue;
                }
                p++;
            }
            if (w + 1 >= cap)
                return -1;
            storage[w++] = *p++;
        }
        if (quoted)
            return -1;
        storage[w++] = '\0';
        if (*p != ',')
            return n;
        p++;
    }
}

static json_t *csv_fail(tly_field_error *fe, const char *field, const char *message)
{
    snprintf(fe->field, sizeof fe->field, "%s", field);
    snprintf(fe->message, sizeof fe->message, "%s", message);
    return NULL;
}

json_t *tly_send_csv_row(const char *line, tly_field_error *fe)
{
    char storage[4096];
    char *f[TLY_CSV_COLUMNS + 1];
    int n = csv_split(line, storage, sizeof storage, f, (int)TLY_CSV_COLUMNS + 1);
    if (n != (int)TLY_CSV_COLUMNS)
        return csv_fail(fe, "", "expected 7 columns: id,partner,sku,qty,amount,currency,at");
    uint64_t qty = 0;
    if (!tly_parse_u64(f[3], 1, (uint64_t)TLY_QTY_MAX, &qty))
        return csv_fail(fe, "qty", "qty must be an integer from 1");
    int exp = 0;
    if (tly_currency_exponent(f[5], &exp) != TLY_OK)
        return csv_fail(fe, "currency", "unknown ISO 4217 currency");
    int64_t amount = 0;
    if (tly_decimal_to_minor(f[4], strlen(f[4]), exp, &amount) != TLY_OK)
        return csv_fail(fe, "amount",
                        "amount must be a decimal with at most the currency's "
                        "minor-unit digits");
    int64_t at = 0;
    if (tly_time_parse(f[6], strlen(f[6]), &at) != TLY_OK)
        return csv_fail(fe, "at", "at must be an ISO-8601 date or time");
    json_t *ev = json_object();
    json_object_set_new(ev, "type", json_string("sale"));
    json_object_set_new(ev, "id", json_string(f[0]));
    json_object_set_new(ev, "at", json_integer(at));
    json_object_set_new(ev, "partner", json_string(f[1]));
    json_object_set_new(ev, "sku", json_string(f[2]));
    json_object_set_new(ev, "qty", json_integer((json_int_t)qty));
    json_object_set_new(ev, "amount", json_integer(amount));
    json_object_set_new(ev, "currency", json_string(f[5]));
    return ev;
}

/* ---- lines ---- */

/* Turns one input line into (source, event). Returns the event (new
 * reference) or NULL with fe set; *source borrows from *holder. */
static json_t *line_event(const tly_send_config *cfg, const char *line, json_t **holder,
                          const char **source, tly_field_error *fe)
{
    *holder = NULL;
    *source = cfg->source;
    if (cfg->csv)
        return tly_send_csv_row(line, fe);
    json_error_t jerr;
    json_t *root = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return csv_fail(fe, "", "line is not a JSON object");
    }
    json_t *ev = json_object_get(root, "event");
    if (json_is_object(ev) && !json_object_get(root, "type")) {
        *holder = root;
        if (!*source)
            *source = json_string_value(json_object_get(root, "source"));
        return json_incref(ev);
    }
    return root;
}

/* The id column of a CSV row that could not be converted, for the report. */
static void csv_first_field(const char *line, char *out)
{
    size_t n = strcspn(line, ",\r\n");
    if (n > TLY_ID_BYTES_MAX)
        n = TLY_ID_BYTES_MAX;
    memcpy(out, line, n);
    out[n] = '\0';
}

static void id_of(json_t *ev, char *out)
{
    const char *id = json_string_value(json_object_get(ev, "id"));
    snprintf(out, TLY_ID_BYTES_MAX + 1, "%s", id ? id : "");
}

/* Adds one line to the batch, flushing first when it must. */
static tly_err add_line(tly_client *c, const tly_send_config *cfg, batch *b, const char *line,
                        tly_send_stats *st)
{
    tly_field_error fe = {{0}, {0}};
    json_t *holder = NULL;
    const char *source = NULL;
    char id[TLY_ID_BYTES_MAX + 1] = "";
    json_t *ev = line_event(cfg, line, &holder, &source, &fe);
    /* A CSV row with a bad value is bad_field on that column; a line that is
     * not a row or not a JSON object is malformed. */
    tly_err err = ev ? TLY_OK : fe.field[0] ? TLY_BAD_FIELD : TLY_MALFORMED;
    if (ev)
        id_of(ev, id);
    else if (cfg->csv)
        csv_first_field(line, id);
    if (ev && !source && !cfg->client.server_key) {
        err = TLY_MALFORMED;
        snprintf(fe.message, sizeof fe.message, "no source: give --source NAME");
    }
    if (ev && source && strlen(source) > TLY_SOURCE_BYTES_MAX) {
        err = TLY_MALFORMED;
        snprintf(fe.message, sizeof fe.message, "source longer than %u bytes",
                 TLY_SOURCE_BYTES_MAX);
    }
    const char *src = source ? source : "";
    if (err == TLY_OK && (b->count == cfg->batch || strcmp(b->source, src) != 0 ||
                          b->buf.size > TLY_SEND_BATCH_BYTES_MAX))
        err = flush_batch(c, cfg, b, st);
    size_t before = b->buf.size;
    if (err == TLY_OK)
        err = tly_json_event_to_mp(ev, &b->buf, &fe);
    if (err == TLY_OK) {
        snprintf(b->source, sizeof b->source, "%s", src);
        b->offsets[b->count] = before;
        b->lines[b->count] = st->lines;
        memcpy(b->ids[b->count], id, sizeof id);
        b->count++;
    } else if (err != TLY_NOMEM) {
        st->rejected++;
        report_reject(cfg->report, st->lines, id, err, fe.field, fe.message);
        err = TLY_OK;
    }
    json_decref(ev);
    json_decref(holder);
    return err;
}

static tly_err check_csv_header(FILE *in, tly_send_stats *st, char *msg, size_t cap)
{
    char line[256];
    if (!fgets(line, sizeof line, in)) {
        snprintf(msg, cap, "empty CSV: expected the header '%s'", csv_header);
        return TLY_MALFORMED;
    }
    st->lines++;
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, csv_header) != 0) {
        snprintf(msg, cap, "CSV header must be '%s'", csv_header);
        return TLY_MALFORMED;
    }
    return TLY_OK;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

tly_err tly_send_stream(const tly_send_config *cfg, FILE *in, tly_send_stats *st, char *msg,
                        size_t cap)
{
    tly_client *c = NULL;
    tly_err err = tly_client_open(&cfg->client, &c, msg, cap);
    if (err != TLY_OK)
        return err;
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        tly_client_close(c);
        return TLY_NOMEM;
    }
    msgpack_sbuffer_init(&b->buf);
    if (cfg->csv)
        err = check_csv_header(in, st, msg, cap);
    char *line = NULL;
    size_t linecap = 0;
    while (err == TLY_OK && getline(&line, &linecap, in) > 0) {
        st->lines++;
        if (blank(line))
            continue;
        err = add_line(c, cfg, b, line, st);
        tly_progress("sending", st->sent + st->duplicates + st->rejected, 0);
    }
    if (err == TLY_OK)
        err = flush_batch(c, cfg, b, st);
    tly_client_drain(c);
    free(line);
    msgpack_sbuffer_destroy(&b->buf);
    free(b);
    tly_client_close(c);
    return err;
}
