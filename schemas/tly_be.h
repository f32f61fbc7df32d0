/*
 * tly_be.h — big-endian integers as Tally's keys store them (the log's
 * seq keys and ids values, the view store's exception keys and claim
 * filters), so that keys sort as numbers.
 */
#ifndef TLY_BE_H
#define TLY_BE_H

#include <stdint.h>

/* The big-endian u64 at p[0..8). */
static inline uint64_t tly_be64_get(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

#endif
