/*
 * tly_assert.c — the failure path of TLY_ASSERT.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tly_assert.h"

void tly__panic(const char *cond, const char *file, int line)
{
    fprintf(stderr, "tally: %s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}
