/*
 * teststream.h — record streams shared by the engine and explain suites.
 *
 * A stream is a list of (source, event bytes) records; record i has seq
 * i + 1 when folded. Functions abort the running Check test on failure.
 */
#ifndef TESTSTREAM_H
#define TESTSTREAM_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rec_buf {
    char *source;
    uint8_t *bytes;
    size_t len;
} rec_buf;

typedef struct stream {
    rec_buf *recs;
    size_t count, cap;
} stream;

/* Frees every record (the stream may be reused afterwards). */
void stream_free(stream *s);
/* Appends a copy of (source, bytes). */
void stream_push(stream *s, const char *source, const void *bytes, size_t len);
/* Converts a JSON event to MessagePack into sb (cleared first). */
void to_mp(json_t *ev, msgpack_sbuffer *sb);
/* Converts JSON event text to MessagePack into sb (cleared first); a bad
 * text fails the test. */
void to_mp_text(const char *json, msgpack_sbuffer *sb);
/* Appends the MessagePack form of JSON event text json from source. */
void stream_push_json(stream *st, const char *source, const char *json);
/* Appends the {"source","event"} records of a JSON-lines file, dropping
 * resends of an accepted (source, id) as the ledger does (a resend with
 * other bytes fails the test). */
void load_jsonl(stream *st, const char *path);
/* The conformance vectors (tests/vectors/seed101-events.jsonl), resends of
 * an accepted (source, id) with the same bytes dropped as the ledger does. */
void load_vector_stream(stream *st);
/* The events of vector file name (tests/vectors/), as load_jsonl reads them. */
void load_vector_named(stream *st, const char *name);
/* A stream of about `events` events over two programs and `partners`
 * partners, deterministic for a seed: every event type, every exception
 * kind. */
void gen_stream(stream *out, uint64_t seed, size_t events, int partners);

#endif
