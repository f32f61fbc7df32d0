/*
 * fuzz_ingest.c — libFuzzer target: the ledger's view of an ingest frame.
 * tly_wire_ingest_decode, then tly_event_decode on every event span, as the
 * ledger does; also the reply and log-read decoders, which read replies
 * from the network on the producer and consumer side.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tly_wire.h"

#define FUZZ_RECORDED_MS INT64_C(1767225600000)

/* Large (TLY_BATCH_EVENTS_MAX spans): static, not on the stack. */
static tly_ingest_req req;
static tly_ingest_result results[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[160];
    tly_err err = tly_wire_ingest_decode(data, size, &req, msg, sizeof msg);
    if (err == TLY_OK) {
        if (req.event_count < 1 || req.event_count > TLY_BATCH_EVENTS_MAX)
            abort();
        for (uint32_t i = 0; i < req.event_count; i++) {
            tly_span s = req.events[i];
            /* every span lies inside the frame */
            if (s.ptr < data || s.ptr + s.len > data + size || s.len == 0)
                abort();
            tly_event ev;
            tly_field_error fe;
            (void)tly_event_decode(s.ptr, s.len, FUZZ_RECORDED_MS, &ev, &fe);
        }
    }
    uint64_t r;
    uint32_t count, max;
    (void)tly_wire_reply_decode(data, size, &r, results, 64, &count, msg, sizeof msg);
    (void)tly_wire_logread_decode(data, size, &r, &max);
    return 0;
}
