/*
 * fuzz_query.c — libFuzzer target: the query service's reading of one
 * request frame, as `tally query` runs it on every frame it receives:
 * tly_query_request_decode (size limit, MessagePack -> JSON object), the
 * read-side authorization (tly_query_permits, for a partner:ID key and a
 * finance key), tly_query_answer over a store that has no shard yet (every
 * argument is validated before a store is read) and tly_query_reply_encode.
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - exactly one of request and error reply comes out of the decoder;
 * - every reply encodes into a frame that is one MessagePack map, within
 *   TLY_FRAME_BYTES_MAX, holding either "error" (a known code) or an answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tly_json.h"
#include "tly_limits.h"
#include "tly_query.h"

/* A views directory that does not exist: the store has no shard, so each
 * answer stops at "unavailable" after its arguments are checked. */
#define FUZZ_VIEWS "/nonexistent/tally-fuzz-query/views"

static tly_query_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (tly_query_store_open(FUZZ_VIEWS, NULL, 0, &store) != TLY_OK)
        abort();
    return 0;
}

/* The frame sent back must be one map, with a known code if an error. */
static void check_frame(const msgpack_sbuffer *out)
{
    if (out->size == 0 || out->size > TLY_FRAME_BYTES_MAX)
        abort();
    json_t *back = tly_json_from_mp(out->data, out->size);
    if (!json_is_object(back))
        abort();
    json_t *code = json_object_get(back, "error");
    tly_err err;
    if (code && (!json_is_string(code) ||
                 tly_err_from_name(json_string_value(code), &err) != TLY_OK || err == TLY_OK))
        abort();
    json_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *reply = NULL;
    json_t *req = tly_query_request_decode(data, size, &reply);
    if ((req == NULL) == (reply == NULL))
        abort();
    if (req) {
        tly_err a = tly_query_permits(req, false, "acme");
        tly_err b = tly_query_permits(req, true, NULL);
        if ((a != TLY_OK && a != TLY_FORBIDDEN) || b != TLY_OK)
            abort();
        if (tly_query_answer(store, req, &reply) != TLY_OK || !reply)
            abort();
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    tly_query_reply_encode(reply, &out);
    check_frame(&out);
    msgpack_sbuffer_destroy(&out);
    json_decref(reply);
    json_decref(req);
    return 0;
}
