/*
 * test_import.c — `tally send` input to events, without a ledger: JSON
 * lines (producers/tly_import.h: bare events and {"source", "event"}
 * records; the public v2 vectors through that path) and CSV files
 * (producers/tly_csv.h [D18]): the reader (BOM, CRLF, quotes, line numbers,
 * bad rows and going on after them), the header's columns (any order, other
 * names, --columns), rows of each type to events and their errors, and each
 * CSV limit at its edge (TLY_CSV_ROW_BYTES_MAX, TLY_CSV_COLUMNS_MAX,
 * TLY_CSV_COLUMN_NAME_BYTES_MAX, TLY_CSV_ROW_FILE_BYTES_MAX).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_csv.h"
#include "tly_import.h"
#include "tly_json.h"
#include "tly_limits.h"

START_TEST(test_json_line_shapes)
{
    json_t *holder = (json_t *)1;
    const char *source = "x";
    tly_field_error fe = {"?", "?"};
    json_t *ev = tly_import_json_line("{\"type\":\"sale\",\"id\":\"a\"}", &holder, &source, &fe);
    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_null(holder);
    ck_assert_ptr_null(source);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), "a");
    json_decref(ev);
    /* a record: the event, and its source borrowed from the holder */
    ev = tly_import_json_line("{\"source\":\"dist-a\",\"event\":{\"id\":\"b\"}}", &holder, &source,
                              &fe);
    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_nonnull(holder);
    ck_assert_str_eq(source, "dist-a");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), "b");
    json_decref(ev);
    json_decref(holder);
    /* an event that has a key named "event" stays an event (it has a type) */
    ev = tly_import_json_line("{\"type\":\"sale\",\"event\":{}}", &holder, &source, &fe);
    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_null(holder);
    ck_assert_ptr_nonnull(json_object_get(ev, "type"));
    json_decref(ev);
    /* not an object, not JSON, duplicate keys: malformed, no field */
    static const char *const bad[] = {
        "[1]", "17", "{\"a\":", "", "{\"a\":1,\"a\":2}", "{\"a\":\"\\u0000\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(tly_import_json_line(bad[i], &holder, &source, &fe));
        ck_assert_ptr_null(holder);
        ck_assert_str_eq(fe.field, "");
        ck_assert_str_eq(fe.message, "line is not a JSON object");
    }
}
END_TEST

/* Every record of the public v2 vectors (SPEC section 10: rate, referral,
 * certification expires, program rules v2) goes through `tally send`'s
 * JSON-lines path, tly_import_json_line and tly_json_event_to_mp, and the
 * ledger's MessagePack decoder without an error. */
START_TEST(test_json_lines_v2_vectors)
{
    char *path = tu_vector("seed102-v2-events.jsonl");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    char line[65536];
    size_t lines = 0, by_type[TLY_EV_COUNT] = {0};
    while (fgets(line, sizeof line, f)) {
        json_t *holder = NULL;
        const char *source = NULL;
        tly_field_error fe = {"", ""};
        json_t *ev = tly_import_json_line(line, &holder, &source, &fe);
        ck_assert_msg(ev != NULL && source != NULL, "line %zu: %s", lines + 1, fe.message);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        tly_err err = tly_json_event_to_mp(ev, &sb, &fe);
        tly_event dec;
        if (err == TLY_OK) /* recorded 2027-01-01, after every event */
            err = tly_event_decode(sb.data, sb.size, INT64_C(1798761600000), &dec, &fe);
        ck_assert_msg(err == TLY_OK, "line %zu: %s %s", lines + 1, tly_err_name(err), fe.message);
        by_type[dec.type]++;
        msgpack_sbuffer_destroy(&sb);
        json_decref(ev);
        json_decref(holder);
        lines++;
    }
    fclose(f);
    free(path);
    ck_assert_uint_eq(lines, 3017);
    ck_assert_uint_eq(by_type[TLY_EV_RATE], 520);
    ck_assert_uint_eq(by_type[TLY_EV_REFERRAL], 41);
    ck_assert_uint_eq(by_type[TLY_EV_CERTIFICATION], 81);
}
END_TEST

/* ---- CSV ---- */

/* A CSV text being read: the reader over a memory stream, its header's
 * columns and the row last read. */
typedef struct tcsv {
    char *text;
    FILE *in;
    tly_csv_reader *r;
    tly_csv_map map;
    tly_csv_row row;
    char msg[256];
} tcsv;

static void tcsv_open(tcsv *t, const char *text, size_t len)
{
    memset(t, 0, sizeof *t);
    t->text = malloc(len + 1);
    ck_assert_ptr_nonnull(t->text);
    memcpy(t->text, text, len);
    t->in = fmemopen(t->text, len, "r");
    ck_assert_ptr_nonnull(t->in);
    ck_assert_int_eq(tly_csv_reader_open(t->in, &t->r), TLY_OK);
}

static void tcsv_close(tcsv *t)
{
    tly_csv_reader_free(t->r);
    fclose(t->in);
    free(t->text);
}

static tly_err tcsv_next(tcsv *t)
{
    t->msg[0] = '\0';
    return tly_csv_reader_next(t->r, &t->row, t->msg, sizeof t->msg);
}

/* Opens text and maps its header with --columns text `columns`. */
static tly_err tcsv_header(tcsv *t, const char *text, const char *columns)
{
    tcsv_open(t, text, strlen(text));
    tly_csv_names names;
    ck_assert_int_eq(tly_csv_names_parse(columns, &names, t->msg, sizeof t->msg), TLY_OK);
    ck_assert_int_eq(tcsv_next(t), TLY_OK);
    return tly_csv_map_header(&names, &t->row, &t->map, t->msg, sizeof t->msg);
}

/* The next row's event (NULL with *err and fe on an error). */
static json_t *tcsv_event(tcsv *t, tly_err *err, tly_field_error *fe)
{
    memset(fe, 0, sizeof *fe);
    *err = tcsv_next(t);
    if (*err != TLY_OK)
        return NULL;
    return tly_csv_row_event(&t->map, &t->row, err, fe);
}

static void assert_field(const tly_csv_row *row, uint32_t i, const char *want)
{
    ck_assert_uint_gt(row->count, i);
    ck_assert_uint_eq(row->len[i], strlen(want));
    ck_assert_mem_eq(row->fields[i], want, strlen(want));
}

/* MessagePack of a JSON event. */
static void to_mp(const json_t *ev, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(ev, sb, &fe), TLY_OK);
}

/* RFC 4180 as distributors' tools write it: a UTF-8 BOM, CRLF, quoted
 * fields holding commas, doubled quotes and line ends; blank lines and
 * spreadsheet blank rows skipped; each row numbered by its first line; LF,
 * CR and CRLF each end one line; the last row needs no line end. */
START_TEST(test_csv_reader_shapes)
{
    static const char text[] = "\xef\xbb\xbf"
                               "id,sku\r\n"
                               "A,\"HW-7, rack\"\r\n"
                               "\r\n"
                               ",,\r\n"
                               "B,\"12\"\" rack\"\r\n"
                               "C,\"two\r\nlines\"\r\n"
                               "D, spaced \r"
                               "E,\"\"\n"
                               "  \n"
                               "F,last";
    tcsv t;
    tcsv_open(&t, text, sizeof text - 1);
    static const struct {
        uint64_t line, line_last;
        const char *f0, *f1;
    } want[] = {{1, 1, "id", "sku"},         {2, 2, "A", "HW-7, rack"}, {5, 5, "B", "12\" rack"},
                {6, 7, "C", "two\r\nlines"}, {8, 8, "D", " spaced "},   {9, 9, "E", ""},
                {11, 11, "F", "last"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_int_eq(tcsv_next(&t), TLY_OK);
        ck_assert_uint_eq(t.row.count, 2);
        ck_assert_uint_eq(t.row.line, want[i].line);
        ck_assert_uint_eq(t.row.line_last, want[i].line_last);
        assert_field(&t.row, 0, want[i].f0);
        assert_field(&t.row, 1, want[i].f1);
    }
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    ck_assert_uint_eq(tly_csv_reader_lines(t.r), 11);
    tcsv_close(&t);
}
END_TEST

/* A row that cannot be read is malformed with its line and why, and the
 * next line is read as the next row: nothing after it is lost. */
START_TEST(test_csv_reader_bad_rows)
{
    static const char text[] = "a,b\n"
                               "x,12\" rack\n"    /* 2: a quote in an unquoted field */
                               "y,\"ok\"z,w\n"    /* 3: text after a closing quote */
                               "c,d\n"            /* 4 */
                               "e,\"open\nf,g\n"; /* 5: a quote never closed */
    tcsv t;
    tcsv_open(&t, text, sizeof text - 1);
    ck_assert_int_eq(tcsv_next(&t), TLY_OK);
    ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
    ck_assert_uint_eq(t.row.line, 2);
    ck_assert_uint_eq(t.row.count, 0);
    ck_assert_msg(strstr(t.msg, "stray quote") != NULL, "%s", t.msg);
    ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
    ck_assert_uint_eq(t.row.line, 3);
    ck_assert_int_eq(tcsv_next(&t), TLY_OK);
    ck_assert_uint_eq(t.row.line, 4);
    assert_field(&t.row, 1, "d");
    ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
    ck_assert_uint_eq(t.row.line, 5);
    ck_assert_uint_eq(t.row.line_last, 6);
    ck_assert_msg(strstr(t.msg, "not closed") && strstr(t.msg, "runs to line 6"), "%s", t.msg);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    tcsv_close(&t);

    /* UTF-16 (Excel's "Unicode text") is refused at once, saying so. */
    static const char utf16[] = "\xff\xfei\0d\0";
    tcsv_open(&t, utf16, sizeof utf16 - 1);
    ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
    ck_assert_msg(strstr(t.msg, "UTF-16") != NULL, "%s", t.msg);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    tcsv_close(&t);
    /* nothing at all, or only a BOM and blank lines: no rows */
    tcsv_open(&t, "", 0);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    tcsv_close(&t);
    tcsv_open(&t, "\xef\xbb\xbf\n\r\n", 5);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    tcsv_close(&t);
}
END_TEST

/* A row of `fields` fields, the first of `first` bytes, the others "k"; a
 * line end. */
static char *wide_row(size_t fields, size_t first, char fill)
{
    char *row = malloc(first + 2 * fields + 2);
    memset(row, fill, first);
    size_t w = first;
    for (size_t i = 1; i < fields; i++) {
        row[w++] = ',';
        row[w++] = 'k';
    }
    row[w++] = '\n';
    row[w] = '\0';
    return row;
}

/* TLY_CSV_ROW_BYTES_MAX counts a row's fields, each with its NUL: a
 * seven-column row of exactly that converts, a byte more is malformed (and
 * the next row is read). TLY_CSV_COLUMNS_MAX fields are a row, one more
 * is not. */
START_TEST(test_csv_row_limits)
{
    const char *header = "id,partner,sku,qty,amount,currency,at\n";
    const char *head = "I,p,";
    const char *tail = ",1,1,USD,2026-07-14\n";
    /* storage: I\0 p\0 sku\0 1\0 1\0 USD\0 2026-07-14\0 */
    size_t fixed = 2 + 2 + 2 + 2 + 4 + 11 + 1; /* everything but the sku's bytes */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t sku = TLY_CSV_ROW_BYTES_MAX - fixed + extra;
        size_t len = strlen(header) + strlen(head) + sku + strlen(tail) +
                     strlen("J,p,s,1,1,USD,2026-07-14\n");
        char *text = malloc(len + 1);
        int w = sprintf(text, "%s%s", header, head);
        memset(text + w, 'k', sku);
        sprintf(text + w + sku, "%sJ,p,s,1,1,USD,2026-07-14\n", tail);
        tcsv t;
        ck_assert_int_eq(tcsv_header(&t, text, NULL), TLY_OK);
        tly_err err;
        tly_field_error fe;
        json_t *ev = tcsv_event(&t, &err, &fe);
        if (extra == 0) {
            ck_assert_msg(ev != NULL, "row of %zu sku bytes refused: %s", sku, fe.message);
            ck_assert_uint_eq(json_string_length(json_object_get(ev, "sku")), sku);
        } else {
            ck_assert_ptr_null(ev);
            ck_assert_int_eq(err, TLY_MALFORMED);
            ck_assert_msg(strstr(t.msg, "longer than 4096 bytes") != NULL, "%s", t.msg);
        }
        json_decref(ev);
        ev = tcsv_event(&t, &err, &fe);
        ck_assert_ptr_nonnull(ev);
        ck_assert_uint_eq(t.row.line, 3);
        json_decref(ev);
        tcsv_close(&t);
        free(text);
    }
    for (size_t extra = 0; extra < 2; extra++) {
        char *row = wide_row(TLY_CSV_COLUMNS_MAX + extra, 1, 'a');
        tcsv t;
        tcsv_open(&t, row, strlen(row));
        if (extra == 0) {
            ck_assert_int_eq(tcsv_next(&t), TLY_OK);
            ck_assert_uint_eq(t.row.count, TLY_CSV_COLUMNS_MAX);
        } else {
            ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
            ck_assert_msg(strstr(t.msg, "more than 256 fields") != NULL, "%s", t.msg);
        }
        tcsv_close(&t);
        free(row);
    }
}
END_TEST
/* TLY_CSV_ROW_FILE_BYTES_MAX: a row of exactly that many bytes in the file
 * is read (and, being over the split bound, refused as too long); a byte
 * more is cut off there, as is a quote left open: the lines after the cut
 * are rows again. */
START_TEST(test_csv_row_file_bytes_limit)
{
    for (size_t extra = 0; extra < 2; extra++) {
        /* "xxx...x"\n: the content plus two quotes and the line end */
        size_t content = TLY_CSV_ROW_FILE_BYTES_MAX - 3 + extra;
        char *text = malloc(content + 16);
        text[0] = '"';
        memset(text + 1, 'x', content);
        strcpy(text + 1 + content, "\"\nc,d\n");
        tcsv t;
        tcsv_open(&t, text, strlen(text));
        ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
        ck_assert_msg(strstr(t.msg, extra ? "bytes in the file" : "(its fields") != NULL, "%s",
                      t.msg);
        ck_assert_int_eq(tcsv_next(&t), TLY_OK);
        ck_assert_uint_eq(t.row.line, 2);
        tcsv_close(&t);
        free(text);
    }
    /* a quote opened on line 2 and never closed: cut where the row outgrows
     * the bound, then every later line is read as a row */
    size_t lines = TLY_CSV_ROW_FILE_BYTES_MAX / 4 + 10;
    char *text = malloc(16 + lines * 4);
    size_t w = (size_t)sprintf(text, "a,b\nq,\"open\n");
    for (size_t i = 0; i < lines; i++)
        w += (size_t)sprintf(text + w, "x,y\n");
    tcsv t;
    tcsv_open(&t, text, w);
    ck_assert_int_eq(tcsv_next(&t), TLY_OK);
    ck_assert_int_eq(tcsv_next(&t), TLY_MALFORMED);
    ck_assert_uint_eq(t.row.line, 2);
    uint64_t cut = t.row.line_last;
    ck_assert_uint_gt(cut, 2);
    uint64_t rows = 0;
    while (tcsv_next(&t) == TLY_OK) {
        ck_assert_uint_eq(t.row.line, cut + 1 + rows);
        assert_field(&t.row, 0, "x");
        rows++;
    }
    ck_assert_uint_eq(2 + lines, cut + rows); /* every line accounted for */
    tcsv_close(&t);
    free(text);
}
END_TEST

/* Columns are found by name in any order, ASCII case and surrounding
 * spaces ignored; other columns are ignored; --columns names others. */
START_TEST(test_csv_header)
{
    tcsv t;
    ck_assert_int_eq(tcsv_header(&t, "Note,AT, Currency ,amount,SKU,partner,id,Qty\n", NULL),
                     TLY_OK);
    ck_assert_int_eq(t.map.col[TLY_CSV_AT], 1);
    ck_assert_int_eq(t.map.col[TLY_CSV_ID], 6);
    ck_assert_int_eq(t.map.col[TLY_CSV_TYPE], -1);
    ck_assert_uint_eq(t.map.columns, 8);
    tcsv_close(&t);
    ck_assert_int_eq(tcsv_header(&t, "InvoiceNo,partner,sku,Net,currency,at,amount\n",
                                 "id=InvoiceNo, amount = Net "),
                     TLY_OK);
    ck_assert_int_eq(t.map.col[TLY_CSV_ID], 0);
    ck_assert_int_eq(t.map.col[TLY_CSV_AMOUNT], 3); /* the column named amount is ignored */
    tcsv_close(&t);
    /* with a type column, sku is needed only by sale rows */
    ck_assert_int_eq(tcsv_header(&t, "type,id,partner,deal,amount,currency,at\n", NULL), TLY_OK);
    tcsv_close(&t);
    static const struct {
        const char *header, *columns, *msg;
    } bad[] = {
        {"id,partner,sku,amount,currency\n", NULL, "no column 'at'"},
        {"id,partner,amount,currency,at\n", NULL, "no column 'sku' (every row is a sale"},
        {"id,partner,sku,amount,currency,at,ID\n", NULL, "columns 1 and 7 are both named 'id'"},
        {"id,partner,sku,amount,currency,at\n", "amount=Net", "no column 'Net' (--columns"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(tcsv_header(&t, bad[i].header, bad[i].columns), TLY_MALFORMED);
        ck_assert_msg(strstr(t.msg, bad[i].msg) != NULL, "header %zu: %s", i, t.msg);
        tcsv_close(&t);
    }
}
END_TEST

/* --columns text: FIELD=NAME pairs; a NAME of TLY_CSV_COLUMN_NAME_BYTES_MAX
 * bytes maps, one byte more is a usage error, as are unknown fields, a
 * field twice and an empty name. */
START_TEST(test_csv_columns_option)
{
    tly_csv_names names;
    char msg[256];
    char spec[TLY_CSV_COLUMN_NAME_BYTES_MAX + 16];
    char header[TLY_CSV_COLUMN_NAME_BYTES_MAX + 64];
    for (size_t extra = 0; extra < 2; extra++) {
        size_t len = TLY_CSV_COLUMN_NAME_BYTES_MAX + extra;
        int w = sprintf(spec, "sku=");
        memset(spec + w, 'N', len);
        spec[w + (int)len] = '\0';
        tly_err err = tly_csv_names_parse(spec, &names, msg, sizeof msg);
        if (extra) {
            ck_assert_int_eq(err, TLY_USAGE);
            ck_assert_msg(strstr(msg, "1..64 bytes") != NULL, "%s", msg);
            continue;
        }
        ck_assert_int_eq(err, TLY_OK);
        sprintf(header, "id,partner,amount,currency,at,%s\n", spec + 4);
        tcsv t;
        ck_assert_int_eq(tcsv_header(&t, header, spec), TLY_OK);
        ck_assert_int_eq(t.map.col[TLY_CSV_SKU], 5);
        tcsv_close(&t);
    }
    static const char *const bad[] = {"", "id", "price=Net", "id=A,id=B", "id=", "id= ,x=y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = '\0';
        ck_assert_int_eq(tly_csv_names_parse(bad[i], &names, msg, sizeof msg), TLY_USAGE);
        ck_assert_uint_gt(strlen(msg), 0);
    }
    ck_assert_int_eq(tly_csv_names_parse(NULL, &names, msg, sizeof msg), TLY_OK);
}
END_TEST

/* A row of the old fixed header sends the bytes the fixed-header importer
 * sent (the JSON-lines key order): a resend of an old file is a
 * duplicate, not a conflict. */
START_TEST(test_csv_old_header_bytes)
{
    tcsv t;
    ck_assert_int_eq(tcsv_header(&t,
                                 "id,partner,sku,qty,amount,currency,at\n"
                                 "INV-1,acme,\"HW-7,rack\",2,1234.5,USD,2026-07-14\n",
                                 NULL),
                     TLY_OK);
    tly_err err;
    tly_field_error fe;
    json_t *ev = tcsv_event(&t, &err, &fe);
    ck_assert_ptr_nonnull(ev);
    json_t *want = json_loads("{\"type\":\"sale\",\"id\":\"INV-1\",\"at\":1783987200000,"
                              "\"partner\":\"acme\",\"sku\":\"HW-7,rack\",\"qty\":2,"
                              "\"amount\":123450,\"currency\":\"USD\"}",
                              0, NULL);
    msgpack_sbuffer a, b;
    to_mp(ev, &a);
    to_mp(want, &b);
    ck_assert_uint_eq(a.size, b.size);
    ck_assert_mem_eq(a.data, b.data, a.size);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    json_decref(ev);
    json_decref(want);
    tcsv_close(&t);
}
END_TEST

static void assert_event(json_t *ev, const char *json)
{
    json_t *want = json_loads(json, 0, NULL);
    ck_assert_ptr_nonnull(want);
    char *got = json_dumps(ev, JSON_COMPACT);
    ck_assert_msg(json_equal(ev, want), "got %s", got);
    /* the same keys in the same order */
    char *w = json_dumps(want, JSON_COMPACT);
    ck_assert_str_eq(got, w);
    free(got);
    free(w);
    json_decref(want);
}

/* The type column: sale (or empty), return naming its sale, referral
 * naming its deal [Q1]; case is ignored; columns another type reads are
 * ignored; a header without qty gives qty 1. */
START_TEST(test_csv_row_types)
{
    tcsv t;
    ck_assert_int_eq(tcsv_header(&t,
                                 "Type,id,partner,sku,sale,deal,amount,currency,at,extra\n"
                                 ",S1,acme,SKU-1,,,10,USD,2026-07-14,x\n"
                                 "Return,R1,acme,SKU-1,S1,,2.50,USD,2026-07-15,\n"
                                 "referral,F1,acme,,,Big deal,1000,JPY,2026-07-16T10:00:00Z,\n",
                                 NULL),
                     TLY_OK);
    tly_err err;
    tly_field_error fe;
    json_t *ev = tcsv_event(&t, &err, &fe);
    assert_event(ev, "{\"type\":\"sale\",\"id\":\"S1\",\"at\":1783987200000,\"partner\":\"acme\","
                     "\"sku\":\"SKU-1\",\"qty\":1,\"amount\":1000,\"currency\":\"USD\"}");
    json_decref(ev);
    ev = tcsv_event(&t, &err, &fe);
    assert_event(ev, "{\"type\":\"return\",\"id\":\"R1\",\"at\":1784073600000,\"partner\":"
                     "\"acme\",\"sale\":\"S1\",\"qty\":1,\"amount\":250,\"currency\":\"USD\"}");
    json_decref(ev);
    ev = tcsv_event(&t, &err, &fe);
    assert_event(ev, "{\"type\":\"referral\",\"id\":\"F1\",\"at\":1784196000000,\"partner\":"
                     "\"acme\",\"deal\":\"Big deal\",\"amount\":1000,\"currency\":\"JPY\"}");
    /* a referral is the event the ledger decodes [Q1] */
    msgpack_sbuffer sb;
    to_mp(ev, &sb);
    tly_event dec;
    ck_assert_int_eq(tly_event_decode(sb.data, sb.size, INT64_C(1798761600000), &dec, &fe), TLY_OK);
    ck_assert_int_eq(dec.type, TLY_EV_REFERRAL);
    ck_assert(tly_str_eq(dec.deal, "Big deal"));
    ck_assert_int_eq(dec.amount, 1000);
    msgpack_sbuffer_destroy(&sb);
    json_decref(ev);
    ck_assert_int_eq(tcsv_next(&t), TLY_NOT_FOUND);
    tcsv_close(&t);
}
END_TEST
/* Every error names its code, field and, where it helps, the column and
 * the value; rows after a bad one still convert. */
START_TEST(test_csv_row_errors)
{
    static const char header[] = "type,id,partner,sku,Qty,Net,currency,at,sale,deal\n";
    static const struct {
        const char *row;
        tly_err code;
        const char *field, *msg;
    } bad[] = {
        {",I,p,s,1,12.5,JPY,2026-07-14,,", TLY_BAD_FIELD, "amount",
         "JPY has 0 decimals: 12.5 (column 'Net')"},
        {",I,p,s,1,1.234,USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "USD has 2 decimals: 1.234"},
        {",I,p,s,1,12.340,USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "USD has 2 decimals"},
        {",I,p,s,1,\"1,234.50\",USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "has a comma"},
        {",I,p,s,1,1e3,USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "not a decimal number"},
        {",I,p,s,1, 12,USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "like 1234.50:  12 (column"},
        {",I,p,s,1,99999999999999,JPY,2026-07-14,,", TLY_BAD_FIELD, "amount", "more than"},
        {"return,I,p,s,1,-5,USD,2026-07-14,S,", TLY_BAD_FIELD, "amount",
         "positive (a return gives the amount returned): -5"},
        {",I,p,s,1,0.00,USD,2026-07-14,,", TLY_BAD_FIELD, "amount", "positive: 0.00"},
        {",I,p,s,1,,USD,2026-07-14,,", TLY_MISSING_FIELD, "amount", "amount is empty"},
        {",I,p,s,1,1,US$,2026-07-14,,", TLY_BAD_FIELD, "currency",
         "unknown ISO 4217 currency: US$"},
        {",I,p,s,1,1,XXX,2026-07-14,,", TLY_BAD_FIELD, "currency", "XXX"},
        {",I,p,s,1,1,USD,14/07/2026,,", TLY_BAD_FIELD, "at", "ISO-8601 date or time"},
        {",I,p,s,1,1,USD,2026-02-30,,", TLY_BAD_FIELD, "at", "2026-02-30"},
        {",I,p,s,0,1,USD,2026-07-14,,", TLY_BAD_FIELD, "qty", "from 1 to 1000000000: 0"},
        {",I,p,s,2.5,1,USD,2026-07-14,,", TLY_BAD_FIELD, "qty", "from 1 to 1000000000: 2.5"},
        {",I,p,s,,1,USD,2026-07-14,,", TLY_MISSING_FIELD, "qty", "qty is empty"},
        {"refund,I,p,s,1,1,USD,2026-07-14,,", TLY_BAD_FIELD, "type", "sale, return or referral"},
        {",,p,s,1,1,USD,2026-07-14,,", TLY_MISSING_FIELD, "id", "id is empty"},
        {",I,p,,1,1,USD,2026-07-14,,", TLY_MISSING_FIELD, "sku", "sku is empty"},
        {"return,I,p,s,1,1,USD,2026-07-14,,", TLY_MISSING_FIELD, "sale", "sale is empty"},
        {"referral,I,p,,,1,USD,2026-07-14,,", TLY_MISSING_FIELD, "deal", "deal is empty"},
        {",I-\xff,p,s,1,1,USD,2026-07-14,,", TLY_BAD_FIELD, "id", "not valid UTF-8"},
        {",I,ac\xc3,s,1,1,USD,2026-07-14,,", TLY_BAD_FIELD, "partner", "not valid UTF-8"},
        {",I,p,\"S\xed\xa0\x80\",1,1,USD,2026-07-14,,", TLY_BAD_FIELD, "sku", "UTF-8"},
        {",I,p,s,1,1,USD,2026-07-14", TLY_MALFORMED, "", "row has 8 fields, the header 10"},
        {",I,p,s,1,1,USD,2026-07-14,,,x", TLY_MALFORMED, "", "extra ones are not empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s\n,OK,p,s,1,1,USD,2026-07-14,,,,\n", header, bad[i].row);
        tcsv t;
        ck_assert_int_eq(tcsv_header(&t, text, "amount=Net"), TLY_OK);
        tly_err err;
        tly_field_error fe;
        ck_assert_msg(tcsv_event(&t, &err, &fe) == NULL, "row %zu accepted", i);
        ck_assert_msg(err == bad[i].code, "row %zu: %s", i, tly_err_name(err));
        ck_assert_msg(strcmp(fe.field, bad[i].field) == 0, "row %zu: field '%s'", i, fe.field);
        ck_assert_msg(strstr(fe.message, bad[i].msg) != NULL, "row %zu: '%s'", i, fe.message);
        json_t *ev = tcsv_event(&t, &err, &fe);
        ck_assert_msg(ev != NULL, "the row after %zu: %s", i, fe.message);
        json_decref(ev);
        tcsv_close(&t);
    }
}
END_TEST

/* A column the row's type needs that the header lacks; a NUL in a cell. */
START_TEST(test_csv_row_needs)
{
    static const char nodeal[] = "type,id,partner,sku,amount,currency,at\n"
                                 "referral,I,p,,1,USD,2026-07-14\n"
                                 ",I,p,s\0x,1,USD,2026-07-14\n";
    tcsv t;
    tcsv_open(&t, nodeal, sizeof nodeal - 1);
    tly_csv_names names;
    ck_assert_int_eq(tly_csv_names_parse(NULL, &names, t.msg, sizeof t.msg), TLY_OK);
    ck_assert_int_eq(tcsv_next(&t), TLY_OK);
    ck_assert_int_eq(tly_csv_map_header(&names, &t.row, &t.map, t.msg, sizeof t.msg), TLY_OK);
    tly_err err;
    tly_field_error fe;
    ck_assert_ptr_null(tcsv_event(&t, &err, &fe));
    ck_assert_int_eq(err, TLY_MISSING_FIELD);
    ck_assert_str_eq(fe.message, "a referral row needs deal: the header has no 'deal' column");
    ck_assert_ptr_null(tcsv_event(&t, &err, &fe));
    ck_assert_int_eq(err, TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "sku");
    tcsv_close(&t);
}
END_TEST

static Suite *import_suite(void)
{
    Suite *s = suite_create("import");
    TCase *v2 = tu_tcase(s, "v2", 120);
    tu_add_tests(v2, TU_TESTS(test_json_lines_v2_vectors));
    TCase *tc = tu_tcase(s, "lines", 0);
    tu_add_tests(tc,
                 TU_TESTS(test_json_line_shapes, test_csv_reader_shapes, test_csv_reader_bad_rows,
                          test_csv_row_limits, test_csv_row_file_bytes_limit, test_csv_header,
                          test_csv_columns_option, test_csv_old_header_bytes, test_csv_row_types,
                          test_csv_row_errors, test_csv_row_needs));
    return s;
}

int main(void)
{
    return tu_run_suite(import_suite());
}
