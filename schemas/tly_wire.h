/*
 * tly_wire.h — the request and reply messages of SPEC section 4.
 *
 * Decoders are strict and never trust lengths: they are the fuzz targets of
 * fuzz/. Encoders append to a msgpack_sbuffer through msgpack-c's packer.
 */
#ifndef TLY_WIRE_H
#define TLY_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_event.h"
#include "tly_limits.h"

/* The byte span of one encoded value inside a larger buffer. */
typedef struct tly_span {
    const uint8_t *ptr;
    size_t len;
} tly_span;

/* An ingest request: {"req": uint, "source": str?, "events": [...], "atomic": bool?}.
 * events[i] is the exact byte span of the i-th event inside the frame. The
 * struct is large (TLY_BATCH_EVENTS_MAX spans): allocate it on the heap. */
typedef struct tly_ingest_req {
    bool has_req;
    uint64_t req;
    tly_str source; /* ptr NULL when absent */
    bool atomic;
    uint32_t event_count;
    tly_span events[TLY_BATCH_EVENTS_MAX];
} tly_ingest_req;

/*
 * Decodes an ingest request frame. On success every event span is one
 * complete MessagePack value (not yet validated as an event). On failure
 * returns TLY_MALFORMED (not MessagePack, not a map, `events` missing or
 * not an array, `req`/`source`/`atomic` mistyped), TLY_TOO_LARGE (frame over
 * TLY_FRAME_BYTES_MAX, more than TLY_BATCH_EVENTS_MAX events, or 0 events is
 * TLY_MALFORMED) and still sets req->has_req/req->req when `req` could be
 * read, so the error reply can echo it. msg (may be NULL, cap bytes) gets a
 * sentence. Spans borrow from buf.
 */
tly_err tly_wire_ingest_decode(const void *buf, size_t len, tly_ingest_req *req, char *msg,
                               size_t cap);

/* Encodes an ingest request (used by producers). events[i] are encoded events. */
tly_err tly_wire_ingest_encode(msgpack_sbuffer *out, uint64_t req, const char *source, bool atomic,
                               const tly_span *events, uint32_t count);

/* Bytes tly_wire_ingest_encode writes besides the events themselves (map
 * header, req, source, atomic, events array header) for these arguments:
 * a request's encoded size is this plus the sum of its events' lengths.
 * Producers use it to close a request before it outgrows the frame. */
size_t tly_wire_ingest_envelope_bytes(uint64_t req, const char *source, bool atomic,
                                      uint32_t count);

/* One result of an ingest reply. */
typedef struct tly_ingest_result {
    tly_err err;    /* TLY_OK when accepted */
    uint64_t seq;   /* when accepted */
    bool dup;       /* accepted earlier with the same bytes */
    char field[64]; /* for TLY_MISSING_FIELD / TLY_BAD_FIELD, else "" */
    char message[160];
} tly_ingest_result;

/* Starts a reply {"req": req, "results": [ ... count ... ]}; then call
 * tly_wire_reply_result count times. */
void tly_wire_reply_begin(msgpack_packer *pk, uint64_t req, uint32_t count);
void tly_wire_reply_result(msgpack_packer *pk, const tly_ingest_result *res);

/* Encodes a whole-request error {"req"?: req, "error": code, "message": msg}. */
void tly_wire_reply_error(msgpack_packer *pk, bool has_req, uint64_t req, tly_err err,
                          const char *msg);

/*
 * Decodes an ingest reply (producers). results must hold max entries;
 * *count receives the number of results. A whole-request error is returned
 * as the function's value with *count = 0 and msg filled; TLY_MALFORMED when
 * the reply cannot be read.
 */
tly_err tly_wire_reply_decode(const void *buf, size_t len, uint64_t *req,
                              tly_ingest_result *results, uint32_t max, uint32_t *count, char *msg,
                              size_t cap);

/* Log-read request {"from": seq, "max": n}. */
tly_err tly_wire_logread_decode(const void *buf, size_t len, uint64_t *from, uint32_t *max);
void tly_wire_logread_encode(msgpack_packer *pk, uint64_t from, uint32_t max);

#endif
