/*
 * tly_mpw.h — MessagePack written by hand into a msgpack_sbuffer: exactly
 * the bytes msgpack-c's msgpack_pack_* calls give for the same values
 * (integers in the smallest form msgpack_pack_real_int64 / _uint64 pick,
 * str8 from 32 bytes, bin8, fixarray and fixmap), without a call through
 * the packer's write callback per piece.
 *
 * For the hot paths that pack many small values: the engine's records at
 * every flush (a partner's record is a few hundred values, and msgpack-c's
 * per-value callback was most of packing it) and the query service's list
 * answers. Everything else packs with msgpack-c; test_schemas checks that
 * both give the same bytes, edges of every form included.
 *
 * Two levels. The tly_mpw_put_* functions write one value's head at p,
 * which the caller made room for (TLY_MPW_HEAD_BYTES_MAX per head), and
 * return its end. The tly_mpw writer makes the room itself and remembers
 * a failure to grow (failed is sticky; the buffer then holds an incomplete
 * value that the caller must not use).
 */
#ifndef TLY_MPW_H
#define TLY_MPW_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest head: a marker and 8 bytes of integer. */
#define TLY_MPW_HEAD_BYTES_MAX 9u

/* Room for n more bytes in b (grown by doubling); false when it cannot
 * grow, b unchanged. */
bool tly_mpw_grow(msgpack_sbuffer *b, size_t n);

static inline bool tly_mpw_room(msgpack_sbuffer *b, size_t n)
{
    return b->alloc - b->size >= n || tly_mpw_grow(b, n);
}

/* Marker m, then the low n bytes of v big-endian. */
static inline char *tly_mpw_put_be(char *p, unsigned m, uint64_t v, int n)
{
    *p++ = (char)m;
    for (int i = n - 1; i >= 0; i--)
        *p++ = (char)(uint8_t)(v >> (8 * i));
    return p;
}

/* An integer as msgpack_pack_int64 (and _int, _int32) writes it. */
static inline char *tly_mpw_put_int(char *p, int64_t d)
{
    if (d < -(INT64_C(1) << 5)) {
        if (d < -(INT64_C(1) << 31))
            return tly_mpw_put_be(p, 0xd3, (uint64_t)d, 8);
        if (d < -(INT64_C(1) << 15))
            return tly_mpw_put_be(p, 0xd2, (uint64_t)d, 4);
        if (d < -(INT64_C(1) << 7))
            return tly_mpw_put_be(p, 0xd1, (uint64_t)d, 2);
        return tly_mpw_put_be(p, 0xd0, (uint64_t)d, 1);
    }
    if (d < (INT64_C(1) << 7)) { /* positive or negative fixint */
        *p = (char)(uint8_t)d;
        return p + 1;
    }
    if (d < (INT64_C(1) << 8))
        return tly_mpw_put_be(p, 0xcc, (uint64_t)d, 1);
    if (d < (INT64_C(1) << 16))
        return tly_mpw_put_be(p, 0xcd, (uint64_t)d, 2);
    if (d < (INT64_C(1) << 32))
        return tly_mpw_put_be(p, 0xce, (uint64_t)d, 4);
    return tly_mpw_put_be(p, 0xcf, (uint64_t)d, 8);
}

/* An unsigned integer as msgpack_pack_uint64 (and _uint32) writes it: the
 * same bytes as tly_mpw_put_int for every value up to INT64_MAX. */
static inline char *tly_mpw_put_uint(char *p, uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? tly_mpw_put_int(p, (int64_t)v)
                                    : tly_mpw_put_be(p, 0xcf, v, 8);
}

/* The head of a str, bin, array or map of n: fix | n below fix_lim (fix 0:
 * none), c8 (0: none) below 256, c16 below 65536, else c16 + 1 (32 bits). */
static inline char *tly_mpw_put_head(char *p, size_t n, unsigned fix, size_t fix_lim, unsigned c8,
                                     unsigned c16)
{
    if (n < fix_lim) {
        *p = (char)(fix | n);
        return p + 1;
    }
    if (c8 && n < 256)
        return tly_mpw_put_be(p, c8, n, 1);
    if (n < 65536)
        return tly_mpw_put_be(p, c16, n, 2);
    return tly_mpw_put_be(p, c16 + 1, n, 4);
}

static inline char *tly_mpw_put_str_head(char *p, size_t n)
{
    return tly_mpw_put_head(p, n, 0xa0, 32, 0xd9, 0xda);
}

static inline char *tly_mpw_put_bin_head(char *p, size_t n)
{
    return tly_mpw_put_head(p, n, 0, 0, 0xc4, 0xc5);
}

static inline char *tly_mpw_put_array(char *p, size_t n)
{
    return tly_mpw_put_head(p, n, 0x90, 16, 0, 0xdc);
}

static inline char *tly_mpw_put_map(char *p, size_t n)
{
    return tly_mpw_put_head(p, n, 0x80, 16, 0, 0xde);
}

/* ---- the writer: room made per value ---- */

typedef struct tly_mpw {
    msgpack_sbuffer *b;
    bool failed; /* a value did not fit: what b holds is incomplete */
} tly_mpw;

/* Reserves n bytes and returns where they start, or NULL (failed set). */
static inline char *tly_mpw_at(tly_mpw *w, size_t n)
{
    if (w->failed || !tly_mpw_room(w->b, n)) {
        w->failed = true;
        return NULL;
    }
    return w->b->data + w->b->size;
}

static inline void tly_mpw_end(tly_mpw *w, const char *end)
{
    w->b->size = (size_t)(end - w->b->data);
}

static inline void tly_mpw_int(tly_mpw *w, int64_t v)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX);
    if (p)
        tly_mpw_end(w, tly_mpw_put_int(p, v));
}

static inline void tly_mpw_uint(tly_mpw *w, uint64_t v)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX);
    if (p)
        tly_mpw_end(w, tly_mpw_put_uint(p, v));
}

static inline void tly_mpw_array(tly_mpw *w, size_t n)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX);
    if (p)
        tly_mpw_end(w, tly_mpw_put_array(p, n));
}

static inline void tly_mpw_map(tly_mpw *w, size_t n)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX);
    if (p)
        tly_mpw_end(w, tly_mpw_put_map(p, n));
}

static inline void tly_mpw_bool(tly_mpw *w, bool v)
{
    char *p = tly_mpw_at(w, 1);
    if (p) {
        *p = (char)(v ? 0xc3 : 0xc2);
        tly_mpw_end(w, p + 1);
    }
}

static inline void tly_mpw_nil(tly_mpw *w)
{
    char *p = tly_mpw_at(w, 1);
    if (p) {
        *p = (char)0xc0;
        tly_mpw_end(w, p + 1);
    }
}

static inline void tly_mpw_str(tly_mpw *w, const char *s, size_t len)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX + len);
    if (p) {
        p = tly_mpw_put_str_head(p, len);
        memcpy(p, s, len);
        tly_mpw_end(w, p + len);
    }
}

static inline void tly_mpw_bin(tly_mpw *w, const void *s, size_t len)
{
    char *p = tly_mpw_at(w, TLY_MPW_HEAD_BYTES_MAX + len);
    if (p) {
        p = tly_mpw_put_bin_head(p, len);
        if (len)
            memcpy(p, s, len);
        tly_mpw_end(w, p + len);
    }
}

#endif
