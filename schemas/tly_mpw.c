/* tly_mpw.c — the growth of a hand-written MessagePack buffer; see tly_mpw.h. */
#include "tly_mpw.h"

#include <stdlib.h>

/* The first allocation: a partner's record and a list answer's first rows
 * fit without growing again. */
#define MPW_FIRST_BYTES 8192u

bool tly_mpw_grow(msgpack_sbuffer *b, size_t n)
{
    if (b->alloc - b->size >= n)
        return true;
    size_t cap = b->alloc ? b->alloc : MPW_FIRST_BYTES;
    while (cap - b->size < n) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return false;
    b->data = p;
    b->alloc = cap;
    return true;
}
