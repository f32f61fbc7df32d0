/*
 * fuzz_import.h — what fuzz_jsonl and fuzz_csv check of an event `tally
 * send` made from one line: it goes through the same steps as in the real
 * import (tly_json_event_to_mp, then the ledger's tly_event_decode), and
 * - JSON import never produces MessagePack the ledger calls malformed;
 * - a refusal names its field (bad_field, missing_field, bad_type);
 * - what JSON import produces, export converts (tly_json_from_mp, and
 *   JSON prints it), and converting that back gives the same bytes: import
 *   and export agree.
 */
#ifndef FUZZ_IMPORT_H
#define FUZZ_IMPORT_H

#include <stdlib.h>
#include <string.h>

#include "tly_json.h"
#include "tly_mp.h"

/* 2026-01-01T00:00:00Z: a fixed recorded time keeps runs reproducible. */
#define FUZZ_RECORDED_MS INT64_C(1767225600000)

static void fuzz_named(tly_err err, const tly_field_error *fe)
{
    bool needs = err == TLY_BAD_FIELD || err == TLY_MISSING_FIELD || err == TLY_BAD_TYPE;
    if (needs && (fe->field[0] == '\0' || !tly_utf8_valid(fe->field, strlen(fe->field))))
        abort();
}

/* Export of bytes the import made, and back: the same bytes. */
static void fuzz_round_trip(const msgpack_sbuffer *sb)
{
    json_t *back = tly_json_from_mp(sb->data, sb->size);
    char *text = back ? json_dumps(back, JSON_COMPACT) : NULL;
    if (!text)
        abort();
    free(text);
    msgpack_sbuffer again;
    msgpack_sbuffer_init(&again);
    if (tly_json_event_to_mp(back, &again, NULL) != TLY_OK || again.size != sb->size ||
        memcmp(again.data, sb->data, sb->size) != 0)
        abort();
    msgpack_sbuffer_destroy(&again);
    json_decref(back);
}

/* Runs one imported event (a JSON object) through the rest of the path. */
static void fuzz_check_event(const json_t *ev)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tly_field_error fe = {"", ""};
    tly_err err = tly_json_event_to_mp(ev, &sb, &fe);
    fuzz_named(err, &fe);
    if (err == TLY_OK) {
        if (!tly_mp_is_single_value(sb.data, sb.size))
            abort();
        tly_event e;
        err = tly_event_decode(sb.data, sb.size, FUZZ_RECORDED_MS, &e, &fe);
        if (err == TLY_MALFORMED)
            abort();
        fuzz_named(err, &fe);
        fuzz_round_trip(&sb);
    } else if (sb.size != 0) {
        abort(); /* nothing appended on error */
    }
    msgpack_sbuffer_destroy(&sb);
}

/* The input as one NUL-terminated line (a copy: libFuzzer's data is not). */
static char *fuzz_line(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        abort();
    memcpy(line, data, size);
    line[size] = '\0';
    return line;
}

#endif
