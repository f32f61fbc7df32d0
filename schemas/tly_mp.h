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
static inline void tly_mp_init(tly_mp_reader *r, const void *buf, size_t len)
{
    r->p = (const uint8_t *)buf;
    r->end = r->p + len;
}

/* Bytes not yet consumed. */
static inline size_t tly_mp_remaining(const tly_mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Type of the next value, without consuming it. */
tly_mp_type tly_mp_peek(const tly_mp_reader *r);

bool tly_mp_read_nil(tly_mp_reader *r);
bool tly_mp_read_bool(tly_mp_reader *r, bool *out);
/* Any integer encoding whose value fits int64. */
static inline bool tly_mp_read_int(tly_mp_reader *r, int64_t *out);
/* Any non-negative integer encoding. */
bool tly_mp_read_uint(tly_mp_reader *r, uint64_t *out);
/* float 32 or float 64 (addition: used by tly_json_from_mp; never for money). */
bool tly_mp_read_float(tly_mp_reader *r, double *out);
static inline bool tly_mp_read_str(tly_mp_reader *r, const char **out, uint32_t *len);
static inline bool tly_mp_read_bin(tly_mp_reader *r, const uint8_t **out, uint32_t *len);
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
static inline bool tly_mp_skip_at(tly_mp_reader *r, unsigned depth, const uint8_t **start,
                                  size_t *len);

/* True when buf[0..len) is exactly one well-formed value (no trailing bytes). */
bool tly_mp_is_single_value(const void *buf, size_t len);

/* ---- inline fast paths ----
 *
 * An event is mostly keys, short strings and small integers, read a few
 * dozen times per event by every reader of the log: fixstr, fixint, the
 * int forms and bin 8/16 are read here, in the caller, and every other
 * form by the general functions in tly_mp.c (tly__mp_*), with the same
 * outcome (tests/test_schemas.c reads every first byte both ways). Event
 * decoding of the 1M-event `bench fold` log took 2.76G instructions
 * before these were inlined and 2.23G after (callgrind).
 */
/* The big-endian unsigned integer of n (at most 8) bytes at p. */
static inline uint64_t tly__mp_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

bool tly__mp_read_str(tly_mp_reader *r, const char **out, uint32_t *len);
bool tly__mp_read_bin(tly_mp_reader *r, const uint8_t **out, uint32_t *len);
bool tly__mp_skip_at(tly_mp_reader *r, unsigned depth, const uint8_t **start, size_t *len);

/* The encoded size of the value at r when its first byte shows it: fixint,
 * nil, bool, fixstr and the int forms; 0 for any other form and for an
 * empty input. A value of these forms is well-formed exactly when its
 * bytes are there. */
static inline size_t tly__mp_fast_size(const tly_mp_reader *r)
{
    if (r->p >= r->end)
        return 0;
    uint8_t b = r->p[0];
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 1;
    if (b >= 0xa0 && b <= 0xbf)
        return 1 + (size_t)(b & 0x1f);
    if (b >= 0xcc && b <= 0xd3)
        return 1 + ((size_t)1 << ((b - 0xcc) & 3));
    return 0;
}

/* Reads any integer encoding: *neg is true for a negative value held in
 * *sv, else the value is *uv. Consumes nothing on failure. */
static inline bool tly__mp_read_integer(tly_mp_reader *r, bool *neg, int64_t *sv, uint64_t *uv)
{
    if (r->p >= r->end)
        return false;
    uint8_t b = r->p[0];
    if (b <= 0x7f || b >= 0xe0) { /* a fixint */
        *neg = b >= 0xe0;
        *sv = (int8_t)b;
        *uv = b;
        r->p += 1;
        return true;
    }
    /* 0xcc..0xcf: uint 8/16/32/64; 0xd0..0xd3: int 8/16/32/64. */
    if (b < 0xcc || b > 0xd3)
        return false;
    unsigned n = 1u << ((b - 0xcc) & 3);
    if (tly_mp_remaining(r) - 1 < n)
        return false;
    uint64_t raw = tly__mp_be(r->p + 1, n);
    if (b >= 0xd0 && n < 8) { /* extend the n-byte two's complement sign */
        uint64_t sign = UINT64_C(1) << (8 * n - 1);
        raw = (raw ^ sign) - sign;
    }
    /* Two's complement: the bits of an int64 (C11 leaves the conversion of
     * a value beyond INT64_MAX to the implementation; every target Tally
     * builds for wraps). */
    int64_t v = (int64_t)raw;
    *neg = b >= 0xd0 && v < 0;
    *sv = v;
    *uv = raw;
    r->p += 1 + n;
    return true;
}

static inline bool tly_mp_read_int(tly_mp_reader *r, int64_t *out)
{
    tly_mp_reader t = *r; /* r moves only on success */
    bool neg;
    int64_t sv;
    uint64_t uv;
    if (!tly__mp_read_integer(&t, &neg, &sv, &uv) || (!neg && uv > (uint64_t)INT64_MAX))
        return false;
    *out = neg ? sv : (int64_t)uv;
    *r = t;
    return true;
}

static inline bool tly_mp_read_str(tly_mp_reader *r, const char **out, uint32_t *len)
{
    if (r->p < r->end && r->p[0] >= 0xa0 && r->p[0] <= 0xbf) { /* a fixstr */
        uint32_t n = r->p[0] & 0x1f;
        if (tly_mp_remaining(r) - 1 < n)
            return false;
        *out = (const char *)r->p + 1;
        *len = n;
        r->p += 1 + n;
        return true;
    }
    return tly__mp_read_str(r, out, len);
}

/* A bin 8 or bin 16 (a record's event and hash) is read inline. */
static inline bool tly_mp_read_bin(tly_mp_reader *r, const uint8_t **out, uint32_t *len)
{
    size_t left = tly_mp_remaining(r);
    if (left < 2 || (r->p[0] != 0xc4 && r->p[0] != 0xc5))
        return tly__mp_read_bin(r, out, len);
    size_t hdr = r->p[0] == 0xc4 ? 2 : 3;
    if (left < hdr)
        return false;
    uint32_t n = (uint32_t)tly__mp_be(r->p + 1, (unsigned)hdr - 1);
    if (left - hdr < n)
        return false;
    *out = r->p + hdr;
    *len = n;
    r->p += hdr + n;
    return true;
}

static inline bool tly_mp_skip_at(tly_mp_reader *r, unsigned depth, const uint8_t **start,
                                  size_t *len)
{
    size_t n = tly__mp_fast_size(r);
    if (n == 0)
        return tly__mp_skip_at(r, depth, start, len);
    if (tly_mp_remaining(r) < n)
        return false;
    if (start)
        *start = r->p;
    if (len)
        *len = n;
    r->p += n;
    return true;
}

#endif
