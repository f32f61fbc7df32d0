/*
 * query_wire.c — the query service's request and reply frames without
 * sockets: what `tally query` runs on every frame, in a form the fuzz
 * target links. See tly_query.h.
 */
#include <stdio.h>

#include "tly_json.h"
#include "tly_limits.h"
#include "tly_query.h"

/* {"error": code, "message": text}, a new reference (NULL: no memory). */
static json_t *error_reply(tly_err err, const char *text)
{
    return json_pack("{s:s, s:s}", "error", tly_err_name(err), "message", text);
}

json_t *tly_query_request_decode(const void *body, size_t len, json_t **error)
{
    *error = NULL;
    if (len > TLY_QUERY_REQUEST_BYTES_MAX) {
        char m[128];
        snprintf(m, sizeof m, "a query request is at most %u bytes; this one is %zu",
                 TLY_QUERY_REQUEST_BYTES_MAX, len);
        *error = error_reply(TLY_TOO_LARGE, m);
        return NULL;
    }
    json_t *req = tly_json_from_mp(body, len);
    if (json_is_object(req))
        return req;
    json_decref(req);
    *error =
        error_reply(TLY_MALFORMED, "a query is a single-frame MessagePack map {\"q\": name, ...}");
    return NULL;
}

void tly_query_reply_encode(const json_t *reply, msgpack_sbuffer *out)
{
    tly_err err = tly_query_pack(reply, out);
    if (err == TLY_OK && out->size <= TLY_FRAME_BYTES_MAX)
        return;
    out->size = 0;
    json_t *e = error_reply(err == TLY_OK ? TLY_TOO_LARGE : err,
                            "the answer does not fit in one reply frame");
    if (!e || tly_query_pack(e, out) != TLY_OK)
        out->size = 0;
    json_decref(e);
}
