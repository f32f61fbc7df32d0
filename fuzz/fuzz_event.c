/*
 * fuzz_event.c — libFuzzer target: tly_event_decode and tly_json_from_mp on
 * arbitrary bytes.
 *
 * Beyond "no crash, no sanitizer report", it checks these properties:
 * - a decoded event obeys the limits the decoder promises (so a consumer
 *   can rely on them without re-checking);
 * - every accepted event converts to JSON and prints (what `tally audit
 *   export` does with every record: the ledger accepts nothing it cannot
 *   export);
 * - an accepted event survives MessagePack -> JSON -> MessagePack and
 *   decodes to the same type, id, time and amount (what `tally audit export`
 *   and `tally send` rely on);
 * - a refusal with bad_field, missing_field or bad_type names its field,
 *   in printable UTF-8.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tly_event.h"
#include "tly_json.h"

/* 2026-01-01T00:00:00Z: a fixed recorded time keeps runs reproducible. */
#define FUZZ_RECORDED_MS INT64_C(1767225600000)

static void check_limits(const tly_event *ev)
{
    if (ev->id.len < 1 || ev->id.len > TLY_ID_BYTES_MAX)
        abort();
    if (ev->at_ms < TLY_AT_MIN_MS || ev->at_ms > FUZZ_RECORDED_MS + TLY_AT_FUTURE_MS)
        abort();
    if (ev->has_amount &&
        (ev->amount == 0 || ev->amount > TLY_AMOUNT_MAX || ev->amount < -TLY_AMOUNT_MAX))
        abort();
    if (ev->type == TLY_EV_PROGRAM) {
        if (ev->tier_count < 1 || ev->tier_count > TLY_TIERS_MAX)
            abort();
        if (ev->bracket_count < 1 || ev->bracket_count > TLY_BRACKETS_MAX)
            abort();
        if (ev->tiers[0].min_revenue != 0 || ev->brackets[0].from != 0)
            abort();
    }
}

/* JSON round trip of an accepted event. */
static void check_json_round_trip(const tly_event *ev, json_t *j)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* Unknown keys may hold floats, which the JSON side refuses: skip those. */
    if (tly_json_event_to_mp(j, &sb, NULL) == TLY_OK) {
        tly_event back;
        if (tly_event_decode(sb.data, sb.size, FUZZ_RECORDED_MS, &back, NULL) != TLY_OK)
            abort();
        if (back.type != ev->type || back.at_ms != ev->at_ms || back.amount != ev->amount ||
            back.id.len != ev->id.len || memcmp(back.id.ptr, ev->id.ptr, ev->id.len) != 0)
            abort();
    }
    msgpack_sbuffer_destroy(&sb);
}

/* True when j (an event converted from MessagePack) prints as JSON. */
static bool exports(const json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    bool ok = text != NULL;
    free(text);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tly_event ev;
    tly_field_error fe;
    tly_err err = tly_event_decode(data, size, FUZZ_RECORDED_MS, &ev, &fe);
    if (err == TLY_OK) {
        check_limits(&ev);
        tly_ev_type t;
        tly_str id;
        if (tly_event_peek_id(data, size, &t, &id) != TLY_OK || t != ev.type)
            abort();
    } else if (memchr(fe.field, '\0', sizeof fe.field) == NULL ||
               memchr(fe.message, '\0', sizeof fe.message) == NULL) {
        abort(); /* reports are always terminated */
    } else if ((err == TLY_BAD_FIELD || err == TLY_MISSING_FIELD || err == TLY_BAD_TYPE) &&
               (fe.field[0] == '\0' || !tly_utf8_valid(fe.field, strlen(fe.field)))) {
        abort(); /* a per-event error names its field */
    }
    json_t *j = tly_json_from_mp(data, size);
    if (err == TLY_OK && !exports(j))
        abort();
    if (j && err == TLY_OK)
        check_json_round_trip(&ev, j);
    json_decref(j);
    return 0;
}
