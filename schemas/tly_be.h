/*
 * tly_be.h — big-endian integers as Tally's keys and records store them
 * (the log's seq keys and ids values, the chain hash's input, the view
 * store's checkpoint, exception and sale keys and claim filters), so that
 * keys sort as numbers.
 */
#ifndef TLY_BE_H
#define TLY_BE_H

#include <stdint.h>

/* The big-endian u32 at p[0..4). */
static inline uint32_t tly_be32_get(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Writes v into p[0..4) big-endian. */
static inline void tly_be32_put(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

/* The big-endian u64 at p[0..8). */
static inline uint64_t tly_be64_get(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* Writes v into p[0..8) big-endian. */
static inline void tly_be64_put(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

#endif
