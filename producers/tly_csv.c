/* tly_csv.c — reading CSV rows with libcsv; see tly_csv.h. */
#include "tly_csv.h"

#include <csv.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tly_assert.h"

/* Bytes read from the file at a time: a buffer size, not a limit (a row
 * may span chunks). */
#define CSV_CHUNK_BYTES 65536u

/* libcsv's options: strict RFC 4180 (a quote inside an unquoted field, or
 * anything but a separator after a closing quote, is an error, as is a
 * quote still open at the end of the input). */
#define CSV_OPTIONS (CSV_STRICT | CSV_STRICT_FINI)

/* Why a row could not be read. */
typedef enum row_problem {
    ROW_FINE = 0,
    ROW_QUOTE,     /* libcsv's strict parse error */
    ROW_UNCLOSED,  /* a quote open at the end of the input */
    ROW_FIELDS,    /* more than TLY_CSV_COLUMNS_MAX fields */
    ROW_BYTES,     /* fields over TLY_CSV_ROW_BYTES_MAX */
    ROW_FILE_BYTES /* over TLY_CSV_ROW_FILE_BYTES_MAX in the file */
} row_problem;

struct tly_csv_reader {
    FILE *in;
    struct csv_parser p;
    bool at_start; /* nothing read yet: a byte order mark may come */
    bool eof;      /* the input ended (or cannot be read further) */
    bool skipping; /* dropping the rest of the line of a bad row */
    bool prev_cr;  /* the last byte consumed was a CR (CRLF is one line end) */
    bool partial;  /* bytes consumed since the last line end */
    uint64_t line; /* the line the next byte is on */
    /* the row being read */
    bool in_row, row_done;
    row_problem problem;
    uint64_t row_line, row_line_last;
    size_t row_file_bytes;
    uint32_t count;
    size_t used;
    size_t off[TLY_CSV_COLUMNS_MAX];
    size_t len[TLY_CSV_COLUMNS_MAX];
    char storage[TLY_CSV_ROW_BYTES_MAX];
    size_t chunk_len, chunk_pos;
    unsigned char chunk[CSV_CHUNK_BYTES];
};

static const char *const field_names[TLY_CSV_FIELD_COUNT] = {
    "type", "id", "partner", "sku", "qty", "amount", "currency", "at", "sale", "deal"};

const char *tly_csv_field_name(tly_csv_field f)
{
    TLY_ASSERT(f < TLY_CSV_FIELD_COUNT);
    return field_names[f];
}

/* Values are taken as written: libcsv trims nothing. */
static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static void parser_start(tly_csv_reader *r)
{
    /* csv_init fails only for a NULL parser. */
    int rc = csv_init(&r->p, CSV_OPTIONS);
    TLY_ASSERT(rc == 0);
    csv_set_space_func(&r->p, no_space);
}

tly_err tly_csv_reader_open(FILE *in, tly_csv_reader **out)
{
    tly_csv_reader *r = calloc(1, sizeof *r);
    if (!r)
        return TLY_NOMEM;
    r->in = in;
    r->at_start = true;
    r->line = 1;
    parser_start(r);
    *out = r;
    return TLY_OK;
}

void tly_csv_reader_free(tly_csv_reader *r)
{
    if (!r)
        return;
    csv_free(&r->p);
    free(r);
}

uint64_t tly_csv_reader_lines(const tly_csv_reader *r)
{
    return r->line - 1 + (r->partial ? 1 : 0);
}

/* libcsv's end of a field: kept in the row's storage, within the limits. */
static void on_field(void *s, size_t len, void *data)
{
    tly_csv_reader *r = data;
    if (r->problem != ROW_FINE)
        return;
    if (r->count == TLY_CSV_COLUMNS_MAX) {
        r->problem = ROW_FIELDS;
        return;
    }
    if (len >= sizeof r->storage - r->used) {
        r->problem = ROW_BYTES;
        return;
    }
    if (len > 0)
        memcpy(r->storage + r->used, s, len);
    r->storage[r->used + len] = '\0';
    r->off[r->count] = r->used;
    r->len[r->count] = len;
    r->count++;
    r->used += len + 1;
}

/* libcsv's end of a row. */
static void on_row(int c, void *data)
{
    (void)c;
    tly_csv_reader *r = data;
    r->row_done = true;
}

/* A bad row: it ends here, libcsv starts afresh (dropping what it holds,
 * without calling back), and the rest of the line is skipped. */
static void row_fail(tly_csv_reader *r, row_problem why, bool line_ends)
{
    if (r->problem == ROW_FINE)
        r->problem = why;
    r->row_done = true;
    r->row_line_last = r->line;
    csv_free(&r->p);
    parser_start(r);
    r->skipping = !line_ends;
}

/* Consumes n bytes of the chunk, the last of them c; counts a line end
 * (CRLF once: an LF alone right after a CR does not count). */
static void consume(tly_csv_reader *r, size_t n, bool line_ends)
{
    unsigned char c = r->chunk[r->chunk_pos + n - 1];
    r->chunk_pos += n;
    if (!line_ends) {
        r->prev_cr = false;
        r->partial = true;
        return;
    }
    if (!(c == '\n' && n == 1 && r->prev_cr))
        r->line++;
    r->prev_cr = c == '\r';
    r->partial = false;
}

/* Reads the next chunk; at the start of the input, skips a UTF-8 byte
 * order mark and refuses UTF-16. Returns TLY_OK (chunk_len 0 at the end). */
static tly_err refill(tly_csv_reader *r, char *msg, size_t cap)
{
    r->chunk_pos = 0;
    r->chunk_len = fread(r->chunk, 1, sizeof r->chunk, r->in);
    if (r->chunk_len == 0 && ferror(r->in)) {
        snprintf(msg, cap, "cannot read the input");
        return TLY_IO;
    }
    if (!r->at_start || r->chunk_len == 0)
        return TLY_OK;
    r->at_start = false;
    const unsigned char *c = r->chunk;
    if (r->chunk_len >= 3 && c[0] == 0xef && c[1] == 0xbb && c[2] == 0xbf)
        r->chunk_pos = 3;
    if (r->chunk_len >= 2 && ((c[0] == 0xff && c[1] == 0xfe) || (c[0] == 0xfe && c[1] == 0xff))) {
        snprintf(msg, cap, "the file is UTF-16 (its byte order mark): save it as CSV UTF-8");
        r->eof = true;
        return TLY_MALFORMED;
    }
    return TLY_OK;
}

/* The end of the input: libcsv ends the last row (or finds a quote still
 * open). */
static void finish_input(tly_csv_reader *r)
{
    r->eof = true;
    if (csv_fini(&r->p, on_field, on_row, r) != 0) {
        r->row_line_last = r->line - (r->partial ? 0 : 1);
        r->problem = ROW_UNCLOSED;
        r->row_done = true;
    } else if (r->row_done) {
        r->row_line_last = r->line - (r->partial ? 0 : 1);
    }
}

/* Length of the next segment of the chunk: up to and including its next
 * CR or LF (a row can only end there), or to the chunk's end. */
static size_t segment(const tly_csv_reader *r, bool *line_ends)
{
    const unsigned char *s = r->chunk + r->chunk_pos;
    size_t n = r->chunk_len - r->chunk_pos;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r') {
            *line_ends = true;
            return i + 1;
        }
    *line_ends = false;
    return n;
}

/* Feeds one segment to libcsv, which ends at most one row with it. */
static tly_err feed(tly_csv_reader *r, char *msg, size_t cap)
{
    bool ends = false;
    size_t n = segment(r, &ends);
    const unsigned char *s = r->chunk + r->chunk_pos;
    if (r->skipping) {
        r->skipping = !ends;
        consume(r, n, ends);
        return TLY_OK;
    }
    if (!r->in_row && n > (ends ? 1u : 0u)) {
        r->in_row = true;
        r->row_line = r->line;
        r->row_file_bytes = 0;
    }
    if (r->in_row && n > TLY_CSV_ROW_FILE_BYTES_MAX - r->row_file_bytes) {
        row_fail(r, ROW_FILE_BYTES, ends);
        consume(r, n, ends);
        return TLY_OK;
    }
    r->row_file_bytes += r->in_row ? n : 0;
    if (csv_parse(&r->p, s, n, on_field, on_row, r) < n) {
        int e = csv_error(&r->p);
        if (e != CSV_EPARSE) {
            snprintf(msg, cap, "CSV parser: %s", csv_strerror(e));
            return TLY_NOMEM;
        }
        row_fail(r, ROW_QUOTE, ends);
    } else if (r->row_done) {
        r->row_line_last = r->line;
    }
    consume(r, n, ends);
    return TLY_OK;
}

static void problem_text(const tly_csv_reader *r, char *msg, size_t cap)
{
    int w = 0;
    switch (r->problem) {
    case ROW_QUOTE:
        w = snprintf(msg, cap,
                     "a stray quote: a field that holds a quote must be quoted "
                     "as a whole, its quotes doubled (\"12\"\" rack\")");
        break;
    case ROW_UNCLOSED:
        w = snprintf(msg, cap, "a quoted field is not closed before the end of the file");
        break;
    case ROW_FIELDS:
        w = snprintf(msg, cap, "row has more than %u fields", TLY_CSV_COLUMNS_MAX);
        break;
    case ROW_BYTES:
        w = snprintf(msg, cap, "row is longer than %u bytes (its fields, each with a NUL)",
                     TLY_CSV_ROW_BYTES_MAX);
        break;
    default:
        w = snprintf(msg, cap, "row is longer than %u bytes in the file (a quote not closed?)",
                     TLY_CSV_ROW_FILE_BYTES_MAX);
        break;
    }
    if (r->row_line_last > r->row_line && w >= 0 && (size_t)w < cap)
        snprintf(msg + w, cap - (size_t)w, "; the row runs to line %llu",
                 (unsigned long long)r->row_line_last);
}

/* A row of nothing but empty or all-space fields (a spreadsheet's empty
 * line is ",,,,"). */
static bool row_blank(const tly_csv_reader *r)
{
    for (uint32_t i = 0; i < r->count; i++) {
        const char *f = r->storage + r->off[i];
        if (strspn(f, " \t") != r->len[i])
            return false;
    }
    return true;
}

/* Hands the finished row out (or its problem) and readies the next one.
 * Returns TLY_OK, TLY_MALFORMED, or TLY_NOT_FOUND for a blank row. */
static tly_err take_row(tly_csv_reader *r, tly_csv_row *row, char *msg, size_t cap)
{
    tly_err err = TLY_OK;
    row->line = r->row_line;
    row->line_last = r->row_line_last < r->row_line ? r->row_line : r->row_line_last;
    row->count = 0;
    if (r->problem != ROW_FINE) {
        problem_text(r, msg, cap);
        err = TLY_MALFORMED;
    } else if (r->count == 0 || row_blank(r)) {
        err = TLY_NOT_FOUND;
    } else {
        row->count = r->count;
        for (uint32_t i = 0; i < r->count; i++) {
            row->fields[i] = r->storage + r->off[i];
            row->len[i] = r->len[i];
        }
    }
    r->in_row = r->row_done = false;
    r->problem = ROW_FINE;
    r->count = 0;
    r->used = 0;
    return err;
}

tly_err tly_csv_reader_next(tly_csv_reader *r, tly_csv_row *row, char *msg, size_t cap)
{
    for (;;) {
        if (r->row_done) {
            tly_err err = take_row(r, row, msg, cap);
            if (err != TLY_NOT_FOUND)
                return err;
            continue;
        }
        if (r->eof)
            return TLY_NOT_FOUND;
        tly_err err = TLY_OK;
        if (r->chunk_pos == r->chunk_len)
            err = refill(r, msg, cap);
        if (err == TLY_MALFORMED) {
            row->line = row->line_last = r->line;
            row->count = 0;
        }
        if (err != TLY_OK)
            return err;
        if (r->chunk_len == 0)
            finish_input(r);
        else if (r->chunk_pos < r->chunk_len)
            err = feed(r, msg, cap);
        if (err != TLY_OK)
            return err;
    }
}
