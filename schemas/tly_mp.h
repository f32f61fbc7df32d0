/*
 * tly_mp.h — a strict, zero-copy MessagePack reader.
 *
 * Tally writes MessagePack with msgpack-c's packer (msgpack.h) and reads it
 * with this cursor. The reader exists because the ledger must store each
 * event's bytes exactly as the producer sent them, which needs the byte span
 * of a nested value (tly_mp_skip), and because hostile input must be bounded
 * (depth TLY_MP_DEPTH_MAX, every length checked against the buffer end).
 *
 * Every read function either consumes one complete value, writes its outputs
 * and returns true, or returns false and leaves the reader and the outputs
 * untouched (wrong type, truncated input). Strings and bins are returned as
 * pointers into the buffer: they live as long as the buffer does.
 */
#ifndef TLY_MP_H
#define TLY_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tly_mp_reader {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
} tly_mp_reader;

typedef enum tly_mp_type {
    TLY_MP_INVALID = 0, /* truncated, reserved byte 0xc1, or end of input */
    TLY_MP_NIL,
    TLY_MP_BOOL,
    TLY_MP_INT,    /* any integer that fits int64 */
    TLY_MP_UINT64, /* an unsigned integer above INT64_MAX */
    TLY_MP_FLOAT,
    TLY_MP_STR,
    TLY_MP_BIN,
    TLY_MP_ARRAY,
    TLY_MP_MAP,
    TLY_MP_EXT
} tly_mp_type;

/* Starts a reader over buf[0..len). */
void tly_mp_init(tly_mp_reader *r, const void *buf, size_t len);

/* Bytes not yet consumed. */
size_t tly_mp_remaining(const tly_mp_reader *r);

/* Type of the next value, without consuming it. */
tly_mp_type tly_mp_peek(const tly_mp_reader *r);

bool tly_mp_read_nil(tly_mp_reader *r);
bool tly_mp_read_bool(tly_mp_reader *r, bool *out);
/* Any integer encoding whose value fits int64. */
bool tly_mp_read_int(tly_mp_reader *r, int64_t *out);
/* Any non-negative integer encoding. */
bool tly_mp_read_uint(tly_mp_reader *r, uint64_t *out);
/* float 32 or float 64 (addition: used by tly_json_from_mp; never for money). */
bool tly_mp_read_float(tly_mp_reader *r, double *out);
bool tly_mp_read_str(tly_mp_reader *r, const char **out, uint32_t *len);
bool tly_mp_read_bin(tly_mp_reader *r, const uint8_t **out, uint32_t *len);
/* Reads an array or map header; the elements (pairs) follow. */
bool tly_mp_read_array(tly_mp_reader *r, uint32_t *count);
bool tly_mp_read_map(tly_mp_reader *r, uint32_t *count);

/* Skips one complete value of any type, nested at most TLY_MP_DEPTH_MAX
 * levels, and returns its encoded span through start/len (either may be NULL).
 * Returns false on truncated, reserved or too deeply nested input. */
bool tly_mp_skip(tly_mp_reader *r, const uint8_t **start, size_t *len);

/* tly_mp_skip for a value that lies inside depth containers (0: the
 * outermost value, as tly_mp_skip): it may nest TLY_MP_DEPTH_MAX - depth
 * levels. Reading a container's elements with it at depth 1 accepts
 * exactly what tly_mp_skip of the whole container accepts. */
bool tly_mp_skip_at(tly_mp_reader *r, unsigned depth, const uint8_t **start, size_t *len);

/* True when buf[0..len) is exactly one well-formed value (no trailing bytes). */
bool tly_mp_is_single_value(const void *buf, size_t len);

#endif
