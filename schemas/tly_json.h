/*
 * tly_json.h — JSON lines <-> MessagePack for events.
 *
 * JSON events use the same keys and types as MessagePack events (SPEC
 * sections 5 and 10); `at`, and a certification's `expires`, may also be
 * an ISO-8601 string, converted to Unix ms. A `rate` is a string in both.
 * Conversion keeps the JSON object's key order, so the same JSON text always
 * gives the same bytes: a producer that resends a line resends the same
 * event bytes, which the ledger's idempotency relies on.
 */
#ifndef TLY_JSON_H
#define TLY_JSON_H

#include <jansson.h>
#include <msgpack.h>

#include "tly_err.h"
#include "tly_event.h"

/*
 * Converts one JSON event object into MessagePack, appended to out.
 * Integers stay integers; a JSON real (1.5) anywhere is TLY_BAD_FIELD, since
 * no event field is fractional (a rate is a decimal string); `at` (and a
 * certification's `expires`) given as a string is parsed with
 * tly_time_parse; a value nested deeper than TLY_EVENT_DEPTH_MAX levels (the
 * event object is level 1) is TLY_BAD_FIELD naming its innermost key, as
 * tly_event_decode names it. The result is not validated beyond that: pass
 * it to tly_event_decode. On error nothing is appended and fe (may be NULL)
 * says why. Returns TLY_OK, TLY_MALFORMED (not an object), TLY_BAD_FIELD or
 * TLY_NOMEM.
 */
tly_err tly_json_event_to_mp(const json_t *event, msgpack_sbuffer *out, tly_field_error *fe);

/*
 * Converts any MessagePack value to JSON: str -> string, int -> integer,
 * bin -> base64 string, map -> object (keys must be str), array -> array.
 * Returns a new reference the caller must json_decref, or NULL on malformed
 * input (floats become JSON reals; NaN, infinities and ext are malformed, as
 * are values nested deeper than TLY_EVENT_DEPTH_MAX levels, the outermost
 * value being level 1). Every event tly_event_decode accepts converts.
 */
json_t *tly_json_from_mp(const void *buf, size_t len);

/* Standard base64 (RFC 4648, with padding). tly_b64_encode writes
 * 4*ceil(len/3) characters plus NUL into out (caller sizes it) and returns
 * the length written. */
size_t tly_b64_encode(const void *buf, size_t len, char *out);

/* Addition: decodes standard padded base64 s[0..len) into out (cap bytes).
 * Returns TLY_OK and *out_len, TLY_BAD_FIELD on bad text, TLY_TOO_LARGE when
 * out is too small. 3*len/4 bytes always suffice. */
tly_err tly_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Lowercase hex; writes 2*len characters plus NUL. */
void tly_hex_encode(const void *buf, size_t len, char *out);

/* Why a file did not load as a JSON object (j: what it loaded as, if
 * anything, and jerr jansson's error): "not a JSON object", or jansson's
 * text, which quotes the file near the error (and may end inside a
 * character), with its control bytes, and its non-ASCII bytes unless it
 * is UTF-8, made '?' in place, so the file's bytes never reach a terminal
 * raw. */
const char *tly_json_load_why(const json_t *j, json_error_t *jerr);

#endif
