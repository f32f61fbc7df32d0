/*
 * fuzz_csv.c — libFuzzer target: a CSV file as `tally send --csv` imports
 * it (tly_csv.h: libcsv's reading with the row limits, line numbers and
 * going on after a bad row; the header's columns; each row to a sale,
 * return or referral, decimal amounts in the currency's minor units
 * [D18]), then JSON -> MessagePack and the ledger's validation; see
 * fuzz_import.h for the properties checked of each event. An input that
 * starts with "--columns " takes the rest of its first line as that
 * option's text. Checked besides: rows keep within TLY_CSV_COLUMNS_MAX and
 * TLY_CSV_ROW_BYTES_MAX and come in line order; every refusal has a
 * message, a malformed row no field, any other refusal a known field; an
 * event has its type's keys.
 */
#include <stdint.h>
#include <stdio.h>

#include "fuzz_import.h"
#include "tly_csv.h"

static void check_row(const tly_csv_row *row, uint64_t *last_line)
{
    size_t bytes = 0;
    if (row->count < 1 || row->count > TLY_CSV_COLUMNS_MAX)
        abort();
    for (uint32_t i = 0; i < row->count; i++) {
        if (row->fields[i][row->len[i]] != '\0')
            abort();
        bytes += row->len[i] + 1;
    }
    if (bytes > TLY_CSV_ROW_BYTES_MAX || row->line <= *last_line || row->line_last < row->line)
        abort();
    *last_line = row->line_last;
}

static void check_refusal(tly_err err, const tly_field_error *fe)
{
    bool known = false;
    for (int f = 0; f < TLY_CSV_FIELD_COUNT; f++)
        known |= strcmp(fe->field, tly_csv_field_name((tly_csv_field)f)) == 0;
    if (fe->message[0] == '\0')
        abort();
    if (err == TLY_MALFORMED ? fe->field[0] != '\0'
                             : !known || (err != TLY_BAD_FIELD && err != TLY_MISSING_FIELD))
        abort();
}

static void check_event(const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    size_t keys = type && strcmp(type, "referral") == 0 ? 7 : 8;
    if (!type || json_object_size(ev) != keys)
        abort();
    fuzz_check_event(ev);
}

/* One data row: an event or a refusal. */
static void convert(const tly_csv_map *map, const tly_csv_row *row)
{
    tly_err err = TLY_OK;
    tly_field_error fe = {"", ""};
    json_t *ev = tly_csv_row_event(map, row, &err, &fe);
    if (ev)
        check_event(ev);
    else
        check_refusal(err, &fe);
    json_decref(ev);
}

/* Maps the header, then converts every row after it. */
static void import(tly_csv_reader *r, const tly_csv_names *names)
{
    tly_csv_row *row = malloc(sizeof *row);
    tly_csv_map map;
    char msg[256] = "";
    uint64_t last_line = 0;
    tly_err err = tly_csv_reader_next(r, row, msg, sizeof msg);
    if (err == TLY_OK) {
        check_row(row, &last_line);
        err = tly_csv_map_header(names, row, &map, msg, sizeof msg);
    }
    if (err == TLY_MALFORMED && msg[0] == '\0')
        abort();
    while (err == TLY_OK) {
        tly_field_error fe = {"", ""};
        tly_err read = tly_csv_reader_next(r, row, fe.message, sizeof fe.message);
        if (read == TLY_MALFORMED) {
            if (row->line <= last_line || row->line_last < row->line)
                abort();
            last_line = row->line_last;
            check_refusal(read, &fe);
        } else if (read == TLY_OK) {
            check_row(row, &last_line);
            convert(&map, row);
        } else {
            break;
        }
    }
    free(row);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_line(data, size);
    const char *spec = NULL;
    size_t skip = 0;
    if (strncmp(text, "--columns ", 10) == 0) {
        skip = strcspn(text, "\n");
        text[skip] = '\0';
        spec = text + 10;
        skip += skip < size ? 1 : 0;
    }
    tly_csv_names names;
    char msg[256];
    FILE *in = fmemopen((char *)data + skip, size - skip, "r");
    tly_csv_reader *r = NULL;
    if (in && tly_csv_names_parse(spec, &names, msg, sizeof msg) == TLY_OK &&
        tly_csv_reader_open(in, &r) == TLY_OK)
        import(r, &names);
    tly_csv_reader_free(r);
    if (in)
        fclose(in);
    free(text);
    return 0;
}
