/* tly_err.c — names and messages generated from TLY_ERR_LIST; see tly_err.h. */
#include "tly_err.h"

#include <string.h>

static const char *const err_names[] = {
#define TLY_ERR_NAME_(id, name, text) name,
    TLY_ERR_LIST(TLY_ERR_NAME_)
#undef TLY_ERR_NAME_
};

static const char *const err_texts[] = {
#define TLY_ERR_TEXT_(id, name, text) text,
    TLY_ERR_LIST(TLY_ERR_TEXT_)
#undef TLY_ERR_TEXT_
};

_Static_assert(sizeof err_names / sizeof err_names[0] == TLY_ERR_COUNT, "one name per error code");

const char *tly_err_name(tly_err err)
{
    if ((unsigned)err >= TLY_ERR_COUNT)
        return "unknown";
    return err_names[err];
}

const char *tly_strerror(tly_err err)
{
    if ((unsigned)err >= TLY_ERR_COUNT)
        return "unknown error";
    return err_texts[err];
}

tly_err tly_err_from_name(const char *name, tly_err *out)
{
    for (int i = 0; i < TLY_ERR_COUNT; i++) {
        if (strcmp(err_names[i], name) == 0) {
            *out = (tly_err)i;
            return TLY_OK;
        }
    }
    return TLY_NOT_FOUND;
}
