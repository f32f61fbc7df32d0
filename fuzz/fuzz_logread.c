/*
 * fuzz_logread.c — libFuzzer target: the ledger's log-read request decoder
 * (tly_wire_logread_decode, what `tally ledger` runs on every log-read
 * frame) and the stored record decoder (tly_record_decode, what a remote
 * consumer runs on every record a log-read reply carries).
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - a request either decodes, and then re-encodes and decodes to the same
 *   from/max, or is refused with one of the codes the ledger answers;
 * - a decoded record's spans lie inside the input, its source is within
 *   its limit and its hash has TLY_HASH_BYTES; re-encoding it gives a value
 *   that decodes to the same fields.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tly_record.h"
#include "tly_wire.h"

static void check_request(const uint8_t *data, size_t size)
{
    uint64_t from = 0;
    uint32_t max = 0;
    tly_err err = tly_wire_logread_decode(data, size, &from, &max);
    if (err != TLY_OK) {
        if (err != TLY_MALFORMED && err != TLY_BAD_FIELD && err != TLY_MISSING_FIELD)
            abort();
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, from, max);
    uint64_t from2 = 0;
    uint32_t max2 = 0;
    if (tly_wire_logread_decode(sb.data, sb.size, &from2, &max2) != TLY_OK || from2 != from ||
        max2 != max)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static bool inside(const void *p, size_t len, const uint8_t *data, size_t size)
{
    const uint8_t *q = p;
    return q >= data && len <= size && q - data <= (ptrdiff_t)(size - len);
}

static void check_record(const uint8_t *data, size_t size)
{
    tly_record rec;
    if (tly_record_decode(data, size, &rec) != TLY_OK)
        return;
    if (rec.seq == 0 || rec.source.len < 1 || rec.source.len > TLY_SOURCE_BYTES_MAX ||
        !inside(rec.source.ptr, rec.source.len, data, size) ||
        !inside(rec.event, rec.event_len, data, size) ||
        !inside(rec.hash, TLY_HASH_BYTES, data, size) || rec.raw != data || rec.raw_len != size)
        abort();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (tly_record_encode(&sb, rec.seq, rec.recorded_ms, rec.source, rec.event, rec.event_len,
                          rec.hash) != TLY_OK)
        abort();
    tly_record back;
    if (tly_record_decode(sb.data, sb.size, &back) != TLY_OK || back.seq != rec.seq ||
        back.recorded_ms != rec.recorded_ms || back.event_len != rec.event_len ||
        memcmp(back.event, rec.event, rec.event_len) != 0 ||
        memcmp(back.hash, rec.hash, TLY_HASH_BYTES) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request(data, size);
    check_record(data, size);
    return 0;
}
