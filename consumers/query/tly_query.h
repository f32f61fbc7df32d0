/*
 * tly_query.h — answering the queries of SPEC section 8 from the shard view
 * stores, the query wire client, and the money formatting the CLI shares.
 *
 * The query logic lives here once and serves two callers: the query service
 * (`tally query`, which receives requests over ZeroMQ) and the CLI's
 * `--views DIR` mode (which answers directly from the stores, e.g. over a
 * replay written by `tally audit replay`).
 *
 * A request is a JSON object {"q": name, ...args} (the service converts the
 * MessagePack map it receives). Names and arguments:
 *   "balance" | "rebate" | "tier" | "claims"   "partner": str
 *   "liabilities"
 *   "exceptions"   "partner"?: str, "kind"?: str, "from_seq"?: uint
 *   "status"
 * A reply is the section 8 object with its keys in the SPEC order and "seq"
 * set [D8], {"head","shards":[{"shard","checkpoint","lag"}]} for status,
 * or {"error": code, "message": str, "field"?: str} where code is a
 * tly_err_name: not_found (unknown partner), missing_field / bad_field (a
 * bad argument, "field" names it), malformed (not an object), unavailable
 * (a shard has no view store yet), corrupt, storage.
 *
 * Additions beyond section 8, all optional for a client:
 *   "shards_differ": true   on a cross-shard answer (liabilities, exceptions)
 *                           whose shards were at different checkpoints; the
 *                           key is absent otherwise.
 *   "next_seq": uint        on an exceptions reply cut after
 *                           TLY_QUERY_EXCEPTIONS_PAGE_MAX entries: ask again
 *                           with "from_seq" = next_seq for the rest.
 *
 * View store layout: see tly_engine.h ("V/...", "X/...") and the consumer
 * runtime's "M/checkpoint" (u64be, the last applied seq). Shard K of N lives
 * in VIEWS/K-of-N, an LMDB environment with one named database "views".
 */
#ifndef TLY_QUERY_H
#define TLY_QUERY_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

typedef struct tly_query_store tly_query_store;

/*
 * Prepares read-only access to the shard stores under views_dir (DIR/views)
 * and, when log_dir is not NULL, to the log's head (DIR/log) for "status".
 *
 * shard_count N > 0 expects exactly the shards 0-of-N .. (N-1)-of-N. With 0
 * the stores are discovered: the complete set K-of-N whose data was written
 * most recently, else the most recent incomplete one. Stores that do not
 * exist yet are looked for again on each request, so the service may start
 * before the consumers; once a complete set is open it stays (restart the
 * service to change N).
 *
 * Returns TLY_OK (even when no store exists yet), TLY_USAGE (a path longer
 * than TLY_PATH_BYTES_MAX or shard_count above TLY_SHARDS_MAX) or
 * TLY_NOMEM. Close with tly_query_store_close (NULL is a no-op).
 */
tly_err tly_query_store_open(const char *views_dir, const char *log_dir, uint32_t shard_count,
                             tly_query_store **out);

/* Names the data directory the store serves (an absolute path, at most
 * TLY_PATH_BYTES_MAX - 1 bytes; a longer one is ignored): the status answer
 * carries it as "data", so `tally status` can say which directory the
 * answering stack serves. The string is copied. */
void tly_query_store_set_data(tly_query_store *s, const char *data_dir);
void tly_query_store_close(tly_query_store *s);

/*
 * Answers one request. *reply receives a new reference the caller must
 * json_decref: the answer or an error object (a bad request is an error
 * object, not a failure). Each shard the answer reads is read in one LMDB
 * read transaction, so a shard's views and its checkpoint agree.
 * Returns TLY_OK, or TLY_NOMEM when no reply could be built.
 */
tly_err tly_query_answer(tly_query_store *s, const json_t *req, json_t **reply);

/*
 * tly_query_answer and tly_query_reply_encode in one, into out (empty on
 * entry): the same bytes, faster. A partner query (balance, rebate, tier,
 * claims) whose document is the plain JSON the engine writes, and a
 * partners or expiring answer whose rows all are, are encoded straight
 * from the stored text, without a jansson tree; everything else takes
 * those two functions. Returns TLY_OK, or TLY_NOMEM (out empty) when
 * tly_query_answer built no reply.
 */
tly_err tly_query_answer_encode(tly_query_store *s, const json_t *req, msgpack_sbuffer *out);

/* How many answers tly_query_answer_encode gave the fast way since the
 * store was opened (tests check that it takes the plain cases). */
uint64_t tly_query_store_fast_answers(const tly_query_store *s);

/*
 * Appends the MessagePack encoding of a JSON value to out: object -> map
 * (insertion order kept), array, string, integer, true/false, null -> nil.
 * Returns TLY_OK, TLY_BAD_FIELD (a real: no query field is fractional),
 * TLY_TOO_LARGE (deeper than TLY_MP_DEPTH_MAX) or TLY_NOMEM.
 */
tly_err tly_query_pack(const json_t *v, msgpack_sbuffer *out);

/*
 * Sends one request to the query service at endpoint and waits at most
 * timeout_ms for the reply, converted to JSON into *reply (new reference).
 * Returns TLY_OK (the reply may be an error object), TLY_TIMEOUT (no reply:
 * nothing is listening, or the service is stuck), TLY_MALFORMED (the reply
 * is not a MessagePack map), TLY_USAGE (an endpoint ZeroMQ cannot parse) or
 * TLY_IO / TLY_NOMEM.
 */
tly_err tly_query_call(const char *endpoint, const json_t *req, int timeout_ms, json_t **reply);

/* Minor-unit digits of an ISO 4217 currency (tly_currency_exponent: 0 for
 * JPY, 3 for KWD, ...); 2 for a code that table does not know. */
int tly_query_currency_exponent(const char *currency);

/*
 * Writes minor units as a decimal amount with thousands separators,
 * "-1,234.56" for (-123456, 2). Integer arithmetic only. out must hold at
 * least TLY_QUERY_MONEY_CHARS bytes; exponent is clamped to 0..4.
 */
#define TLY_QUERY_MONEY_CHARS 40u
void tly_query_format_money(int64_t minor, int exponent, char *out, size_t cap);

/* "2.50%" for 250 basis points, into out (at least 16 bytes). */
void tly_query_format_bps(int64_t bps, char *out, size_t cap);

/*
 * Read-side authorization: TLY_OK when a reader may ask req, else
 * TLY_FORBIDDEN. everything: a finance or auditor key, which may ask any
 * query. Otherwise partner names the one partner the key answers for (its
 * partner:ID role; NULL: none), and only balance, rebate, tier, claims and
 * statement about exactly that partner are permitted.
 */
tly_err tly_query_permits(const json_t *req, bool everything, const char *partner);

/*
 * The query service's reading of one request frame, without sockets (and
 * the fuzz target fuzz/fuzz_query.c's entry): a body over
 * TLY_QUERY_REQUEST_BYTES_MAX is too_large without being decoded; a body
 * that is not one MessagePack map tly_json_from_mp converts (nested at most
 * TLY_EVENT_DEPTH_MAX levels, no ext, no NaN) is malformed. Returns the
 * request object (new reference), or NULL with *error set to the error
 * reply (new reference; NULL only when out of memory).
 */
json_t *tly_query_request_decode(const void *body, size_t len, json_t **error);

/*
 * Encodes reply into out (empty on entry) as the service sends it; a reply
 * that does not pack (tly_query_pack) or does not fit TLY_FRAME_BYTES_MAX
 * becomes an error reply, so a client always hears back. out stays empty
 * only when even that cannot be encoded (out of memory).
 */
void tly_query_reply_encode(const json_t *reply, msgpack_sbuffer *out);

/*
 * Makes every later tly_query_call of this process a CURVE client of a
 * query service with Z85 public key server_key, using the secret key in
 * secret_file. Returns TLY_OK, TLY_USAGE (a bad server key), TLY_IO or
 * TLY_BAD_FIELD (the key file), with a sentence in msg on error.
 */
tly_err tly_query_client_curve(const char *server_key, const char *secret_file, char *msg,
                               size_t cap);

#endif
