/*
 * fuzz_jsonl.c — libFuzzer target: one JSON line as `tally send` imports
 * it (tly_import_json_line: a bare event or a {"source", "event"} record),
 * then JSON -> MessagePack and the ledger's validation; see fuzz_import.h
 * for the properties checked.
 */
#include <stdint.h>

#include "fuzz_import.h"
#include "tly_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_line(data, size);
    json_t *holder = NULL;
    const char *source = NULL;
    tly_field_error fe = {"", ""};
    json_t *ev = tly_import_json_line(line, &holder, &source, &fe);
    if (!ev) {
        if (holder || fe.field[0] != '\0')
            abort();
    } else {
        if (!json_is_object(ev) || (source && !holder))
            abort();
        if (source)
            (void)tly_source_valid(source, strlen(source));
        fuzz_check_event(ev);
    }
    json_decref(ev);
    json_decref(holder);
    free(line);
    return 0;
}
