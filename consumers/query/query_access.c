/*
 * query_access.c — which queries a reader may ask (read-side authorization
 * of the query service; the roles come from the service's authorized keys).
 */
#include <string.h>

#include "tly_query.h"

/* Queries about one partner: the only ones a partner:ID key may ask. */
static bool is_partner_query(const char *q)
{
    static const char *const qs[] = {"balance", "rebate", "tier", "claims", "statement"};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        if (strcmp(q, qs[i]) == 0)
            return true;
    return false;
}

tly_err tly_query_permits(const json_t *req, bool everything, const char *partner)
{
    if (everything)
        return TLY_OK;
    if (!partner)
        return TLY_FORBIDDEN;
    const char *q = json_string_value(json_object_get(req, "q"));
    const char *who = json_string_value(json_object_get(req, "partner"));
    if (!q || !who || !is_partner_query(q) || strcmp(who, partner) != 0)
        return TLY_FORBIDDEN;
    return TLY_OK;
}
