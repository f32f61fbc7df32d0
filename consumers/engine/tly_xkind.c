/* tly_xkind.c — names generated from TLY_XKIND_LIST; see tly_xkind.h. */
#include "tly_xkind.h"

#include <string.h>

#include "tly_assert.h"

static const char *const xkind_names[] = {
#define TLY_XKIND_NAME_(id, name) name,
    TLY_XKIND_LIST(TLY_XKIND_NAME_)
#undef TLY_XKIND_NAME_
};

_Static_assert(sizeof xkind_names / sizeof xkind_names[0] == TLY_X_COUNT,
               "one name per exception kind");

/* The name table entry of kind; kind must be in range. */
const char *tly_xkind_name(tly_xkind kind)
{
    TLY_ASSERT((unsigned)kind < TLY_X_COUNT);
    return xkind_names[kind];
}

/* Linear search: the list is short and only load and filters parse. */
tly_xkind tly_xkind_parse(const char *s, size_t len)
{
    for (unsigned i = 0; i < TLY_X_COUNT; i++)
        if (strlen(xkind_names[i]) == len && memcmp(xkind_names[i], s, len) == 0)
            return (tly_xkind)i;
    return TLY_X_COUNT;
}
