/*
 * test_import.c — one line of `tally send` input to one event
 * (producers/tly_import.h): JSON lines (bare events and {"source",
 * "event"} records) and POS CSV rows [D18], including the row size limit
 * TLY_CSV_ROW_BYTES_MAX at its edge and text columns that are not UTF-8;
 * the public v2 vectors through the JSON-lines path.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
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

START_TEST(test_csv_row)
{
    tly_field_error fe;
    json_t *ev = tly_import_csv_row("INV-1,acme,\"HW-7,rack\",2,1234.5,USD,2026-07-14\n", &fe);
    ck_assert_ptr_nonnull(ev);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "sku")), "HW-7,rack");
    ck_assert_int_eq(json_integer_value(json_object_get(ev, "amount")), 123450);
    ck_assert_int_eq(json_integer_value(json_object_get(ev, "at")), INT64_C(1783987200000));
    json_decref(ev);
    static const struct {
        const char *row;
        const char *field;
    } bad[] = {
        {"INV-1,acme,SKU,2,1234.5,USD", ""},
        {"INV-1,acme,SKU,2,1234.5,USD,2026-07-14,extra", ""},
        {"INV-1,acme,\"SKU,2,1234.5,USD,2026-07-14", ""},
        {"INV-1,acme,SKU,0,1234.5,USD,2026-07-14", "qty"},
        {"INV-1,acme,SKU,2,12.345,USD,2026-07-14", "amount"},
        {"INV-1,acme,SKU,2,12,XXX,2026-07-14", "currency"},
        {"INV-1,acme,SKU,2,12,USD,2026-02-30", "at"},
        {"INV-\xff,acme,SKU,2,12,USD,2026-07-14", "id"},
        {"INV-1,ac\xc3,SKU,2,12,USD,2026-07-14", "partner"},
        {"INV-1,acme,\"S\xed\xa0\x80\",2,12,USD,2026-07-14", "sku"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&fe, 0, sizeof fe);
        ck_assert_msg(tly_import_csv_row(bad[i].row, &fe) == NULL, "row %zu accepted", i);
        ck_assert_msg(strcmp(fe.field, bad[i].field) == 0, "row %zu: field '%s'", i, fe.field);
        ck_assert_uint_gt(strlen(fe.message), 0);
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

/* A row whose split fields (each with its NUL) take exactly
 * TLY_CSV_ROW_BYTES_MAX bytes converts; one byte more does not. */
START_TEST(test_csv_row_bytes_limit)
{
    const char *head = "I,p,";
    const char *tail = ",1,1,USD,2026-07-14";
    /* storage: I\0 p\0 sku\0 1\0 1\0 USD\0 2026-07-14\0 */
    size_t fixed = 2 + 2 + 2 + 2 + 4 + 11 + 1; /* everything but the sku's bytes */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t sku = TLY_CSV_ROW_BYTES_MAX - fixed + extra;
        size_t len = strlen(head) + sku + strlen(tail);
        char *row = malloc(len + 1);
        memcpy(row, head, strlen(head));
        memset(row + strlen(head), 'k', sku);
        memcpy(row + strlen(head) + sku, tail, strlen(tail) + 1);
        tly_field_error fe = {"", ""};
        json_t *ev = tly_import_csv_row(row, &fe);
        if (extra == 0) {
            ck_assert_msg(ev != NULL, "row of %zu bytes refused: %s", len, fe.message);
            ck_assert_uint_eq(json_string_length(json_object_get(ev, "sku")), sku);
        } else {
            ck_assert_ptr_null(ev);
            ck_assert_str_eq(fe.field, "");
        }
        json_decref(ev);
        free(row);
    }
}
END_TEST

static Suite *import_suite(void)
{
    Suite *s = suite_create("import");
    TCase *v2 = tu_tcase(s, "v2", 120);
    tu_add_tests(v2, TU_TESTS(test_json_lines_v2_vectors));
    TCase *tc = tu_tcase(s, "lines", 0);
    tu_add_tests(tc, TU_TESTS(test_json_line_shapes, test_csv_row, test_csv_row_bytes_limit));
    return s;
}

int main(void)
{
    return tu_run_suite(import_suite());
}
