/*
 * tly_csv.h — CSV files as distributors send them, to events (`tally send
 * --csv`).
 *
 * Three steps, each usable alone (the fuzz target fuzz/fuzz_csv.c runs all
 * three on arbitrary bytes, tests/test_import.c each at its limits):
 *
 * 1. tly_csv_reader: the rows of a file, read with libcsv (RFC 4180: quoted
 *    fields with doubled quotes, commas and line ends inside quotes; LF,
 *    CRLF or CR line ends; a UTF-8 byte order mark is skipped). Each row
 *    carries the line it starts on. Values are taken as written: no spaces
 *    are trimmed. A row that cannot be read (a stray quote, an unclosed
 *    quote, too long, too many fields) is returned as an error with its
 *    line, and reading goes on at the next line.
 * 2. tly_csv_map: the header row names the columns. Every column Tally
 *    reads (tly_csv_field) is found by name, ASCII case and surrounding
 *    spaces ignored, in any order; other columns are ignored. tly_csv_names
 *    holds the name looked for per field: the field's own name unless
 *    `--columns FIELD=NAME,...` gives another.
 * 3. tly_csv_row_event: one row to one event (sale, return or referral, by
 *    the optional `type` column), with an error that names the field, the
 *    column and the value ("JPY has 0 decimals: 12.5").
 */
#ifndef TLY_CSV_H
#define TLY_CSV_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "tly_err.h"
#include "tly_event.h"
#include "tly_limits.h"

/* The columns Tally reads. */
typedef enum tly_csv_field {
    TLY_CSV_TYPE = 0, /* sale (empty or absent too), return, referral */
    TLY_CSV_ID,
    TLY_CSV_PARTNER,
    TLY_CSV_SKU,      /* sale */
    TLY_CSV_QTY,      /* sale, return; an absent column is qty 1 */
    TLY_CSV_AMOUNT,   /* decimal in major units, the currency's digits [D18] */
    TLY_CSV_CURRENCY, /* ISO 4217 */
    TLY_CSV_AT,       /* ISO-8601 date or time; a date is midnight UTC */
    TLY_CSV_SALE,     /* return: the original sale's id */
    TLY_CSV_DEAL,     /* referral [Q1] */
    TLY_CSV_FIELD_COUNT
} tly_csv_field;

/* The field's name ("amount"), also the column it reads by default. */
const char *tly_csv_field_name(tly_csv_field f);

/* ---- 1. reading rows ---- */

typedef struct tly_csv_reader tly_csv_reader;

/* One row as read. fields[i] points at len[i] bytes followed by a NUL
 * (a field may hold NUL bytes of its own: len says where it ends); both
 * belong to the reader and live until the next tly_csv_reader_next. */
typedef struct tly_csv_row {
    uint64_t line;      /* the line the row starts on, from 1 */
    uint64_t line_last; /* the line it ends on (a quoted line end continues it) */
    uint32_t count;     /* fields, 1..TLY_CSV_COLUMNS_MAX */
    const char *fields[TLY_CSV_COLUMNS_MAX];
    size_t len[TLY_CSV_COLUMNS_MAX];
} tly_csv_row;

/* Opens a reader of `in` (borrowed; read from its current position, which
 * should be the start of the file for the byte order mark to be seen).
 * Returns TLY_OK or TLY_NOMEM. tly_csv_reader_free(NULL) is a no-op. */
tly_err tly_csv_reader_open(FILE *in, tly_csv_reader **out);
void tly_csv_reader_free(tly_csv_reader *r);

/*
 * The next row that is not blank (a blank row: only line ends, or every
 * field empty or spaces, as a spreadsheet writes for an empty line).
 * Returns
 * - TLY_OK: *row is filled;
 * - TLY_NOT_FOUND: the end of the input;
 * - TLY_MALFORMED: a row that cannot be read; row->line and
 *   row->line_last say where it is (row->count is 0), msg why. The next
 *   call goes on at the line after it;
 * - TLY_IO (a read error), TLY_NOMEM: reading stops, msg says why.
 */
tly_err tly_csv_reader_next(tly_csv_reader *r, tly_csv_row *row, char *msg, size_t cap);

/* Lines read so far (all of them once TLY_NOT_FOUND was returned). */
uint64_t tly_csv_reader_lines(const tly_csv_reader *r);

/* ---- 2. the header ---- */

/* The column name looked for per field ("" for none: the field's name). */
typedef struct tly_csv_names {
    char name[TLY_CSV_FIELD_COUNT][TLY_CSV_COLUMN_NAME_BYTES_MAX + 1];
} tly_csv_names;

/*
 * Parses `--columns` text: FIELD=NAME pairs separated by commas
 * ("id=InvoiceNo,amount=Net Amount"). FIELD is a tly_csv_field name; NAME
 * is a column heading of 1..TLY_CSV_COLUMN_NAME_BYTES_MAX bytes once its
 * surrounding spaces are trimmed (it cannot hold a comma). A field given
 * twice is an error. spec NULL: every field reads the column of its own
 * name. Returns TLY_OK and *out, or TLY_USAGE with msg set.
 */
tly_err tly_csv_names_parse(const char *spec, tly_csv_names *out, char *msg, size_t cap);

/* Where each field is in a row: col[f] is its column index, or -1. */
typedef struct tly_csv_map {
    int col[TLY_CSV_FIELD_COUNT];
    uint32_t columns; /* the header's column count */
    char heading[TLY_CSV_FIELD_COUNT][TLY_CSV_COLUMN_NAME_BYTES_MAX + 1]; /* as found */
} tly_csv_map;

/*
 * Maps the header row. Every field is looked for by its name in `names`;
 * two columns of one field, a name `--columns` gave that is not there, or
 * a missing required column is an error: id, partner, amount, currency and
 * at always; sku too when there is no type column (every row a sale).
 * Returns TLY_OK and *map, or TLY_MALFORMED with msg set (the caller adds
 * the line).
 */
tly_err tly_csv_map_header(const tly_csv_names *names, const tly_csv_row *header, tly_csv_map *map,
                           char *msg, size_t cap);

/* ---- 3. rows to events ---- */

/*
 * Converts one data row into an event (JSON, the keys in the order the
 * JSON-lines form writes them, so a row sends the bytes it always did).
 * Returns a new reference, or NULL with *err and fe set: TLY_MALFORMED
 * (fe->field empty) when the row's shape is wrong (fewer fields than the
 * header, or more that are not empty); TLY_MISSING_FIELD when a column the
 * row's type needs is absent or its cell empty; TLY_BAD_FIELD when a value
 * is wrong; TLY_NOMEM. fe->field is the event field; the message names the
 * column when its heading differs, and the value.
 */
json_t *tly_csv_row_event(const tly_csv_map *map, const tly_csv_row *row, tly_err *err,
                          tly_field_error *fe);

/* The row's id cell (for reports), cut to TLY_ID_BYTES_MAX bytes; "" when
 * there is none. out: TLY_ID_BYTES_MAX + 1 bytes. */
void tly_csv_row_id(const tly_csv_map *map, const tly_csv_row *row, char *out);

#endif
