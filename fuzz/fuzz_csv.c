/*
 * fuzz_csv.c — libFuzzer target: one POS CSV row as `tally send --csv`
 * imports it (tly_import_csv_row: RFC 4180 split, UTF-8 columns, qty,
 * decimal amount in the currency's minor units [D18], ISO time), then
 * JSON -> MessagePack and the ledger's validation; see fuzz_import.h for
 * the properties checked. A row that converts is a sale of eight keys; one
 * that does not is refused naming its column, or malformed (no field) when
 * it does not have the seven columns.
 */
#include <stdint.h>

#include "fuzz_import.h"
#include "tly_import.h"

static const char *const columns[] = {"",    "id",     "partner",  "sku",
                                      "qty", "amount", "currency", "at"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_line(data, size);
    tly_field_error fe = {"", ""};
    json_t *ev = tly_import_csv_row(line, &fe);
    if (!ev) {
        bool known = false;
        for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
            known |= strcmp(fe.field, columns[i]) == 0;
        if (!known || fe.message[0] == '\0')
            abort();
    } else {
        if (json_object_size(ev) != 8)
            abort();
        fuzz_check_event(ev);
    }
    json_decref(ev);
    free(line);
    return 0;
}
