/*
 * tly_client.h — the producer client library.
 *
 * A client holds one DEALER connection to the ledger's ingest socket and up
 * to `window` requests in flight. Each request is kept, encoded, until its
 * reply arrives. When no reply comes within the ack timeout the client drops
 * the connection, opens a new one and resends every request in flight with
 * the same bytes — the same (source, id) pairs — which is safe because the
 * ledger acknowledges a resend as a duplicate (SPEC section 3). Whole-request
 * errors that mean "try later" (`storage`, `unavailable`) are resent after a
 * backoff; every other outcome is final and handed to the caller.
 *
 * Requests on one connection are appended in the order they were submitted
 * unless a retry intervenes.
 */
#ifndef TLY_CLIENT_H
#define TLY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_limits.h"
#include "tly_wire.h"

typedef struct tly_client_opts {
    const char *endpoint;    /* ingest endpoint, or several separated by commas (at most
                                TLY_CLIENT_ENDPOINTS_MAX): a request that times out or is
                                answered `unavailable` goes to the next one (SPEC [N5]) */
    const char *server_key;  /* Z85 public key of the ledger; NULL: no CURVE */
    const char *secret_file; /* with server_key: this producer's secret key file */
    int ack_timeout_ms;      /* 0: TLY_ACK_TIMEOUT_MS */
    uint32_t window;         /* 0: 1; at most TLY_CLIENT_WINDOW_MAX */
    uint32_t retries_max;    /* resends of one request before giving up; 0: unlimited */
    int64_t give_up_ms;      /* no reply at all this long with requests in flight: give
                                up (tly_client_gave_up); 0: never */
    bool verbose;            /* log reconnects and retries on stderr */
} tly_client_opts;

typedef struct tly_client tly_client;

/*
 * Called once per request when it is complete. whole is TLY_OK when results
 * holds count per-event results (in order), else the whole-request error
 * (msg says why; TLY_TIMEOUT when retries_max ran out). results and msg live
 * only during the call.
 */
typedef void (*tly_client_done_fn)(void *ctx, uint64_t tag, tly_err whole,
                                   const tly_ingest_result *results, uint32_t count,
                                   const char *msg);

/* True when list is what opts.endpoint takes: 1 to TLY_CLIENT_ENDPOINTS_MAX
 * non-empty endpoints of at most TLY_PATH_BYTES_MAX bytes, separated by
 * commas (tly_client_open refuses any other with TLY_USAGE). A command
 * checks its option with it, so that a bad list is a usage error before
 * anything is read or sent. */
bool tly_client_endpoints_ok(const char *list);

/* The usage error of a command's --ingest that tly_client_endpoints_ok
 * refuses (a printf format of TLY_CLIENT_ENDPOINTS_MAX). */
#define TLY_CLIENT_ENDPOINTS_USAGE "--ingest takes 1 to %u endpoints separated by commas"

/* Connects (lazily: ZeroMQ connects in the background). */
tly_err tly_client_open(const tly_client_opts *opts, tly_client **out, char *msg, size_t cap);
void tly_client_close(tly_client *c);

/*
 * Submits one request of count (1..TLY_BATCH_EVENTS_MAX) encoded events with
 * the declared source (NULL with CURVE: the key's name is the source). The
 * event bytes are copied. Blocks, processing replies, while the window is
 * full. done is called for this request from inside a later submit, poll or
 * drain call. Returns TLY_OK, TLY_TOO_LARGE (the encoded request exceeds
 * TLY_FRAME_BYTES_MAX), TLY_TIMEOUT (the client has given up: see
 * tly_client_gave_up; nothing sent), TLY_USAGE or TLY_NOMEM.
 */
tly_err tly_client_submit(tly_client *c, const char *source, const tly_span *events, uint32_t count,
                          bool atomic, uint64_t tag, tly_client_done_fn done, void *ctx);

/*
 * Encoded size in bytes of the request the next tly_client_submit on c would
 * send with these arguments and count events of event_bytes bytes in all:
 * the envelope (map, "req" with the request number it will get, "source",
 * "atomic", the "events" array header) plus the events. A request is
 * accepted by the ledger only up to TLY_FRAME_BYTES_MAX.
 */
size_t tly_client_request_bytes(const tly_client *c, const char *source, bool atomic,
                                uint32_t count, size_t event_bytes);

/*
 * How many of events[0..count) the next request can carry: the longest
 * prefix of at most TLY_BATCH_EVENTS_MAX events whose request stays within
 * TLY_FRAME_BYTES_MAX. 0 when events[0] does not fit even alone (or count
 * is 0). Submitting prefixes of this length splits any list of events into
 * requests the ledger accepts by size.
 */
uint32_t tly_client_fit(const tly_client *c, const char *source, bool atomic,
                        const tly_span *events, uint32_t count);

/*
 * Asks the ledger's log-read endpoint (with c's CURVE keys, if any) for the
 * log head: the seq of the last acknowledged record, 0 for an empty log.
 * Waits up to c's ack timeout. Returns TLY_OK, TLY_TIMEOUT (no answer),
 * TLY_USAGE (bad endpoint) or the error the ledger answered (e.g.
 * TLY_FORBIDDEN), with msg set on failure.
 */
tly_err tly_client_log_head(tly_client *c, const char *log_read, uint64_t *head, char *msg,
                            size_t cap);

/* Processes replies and timeouts for up to wait_ms; returns the number of
 * requests still in flight. */
uint32_t tly_client_poll(tly_client *c, int wait_ms);

/* Waits until no request is in flight. */
void tly_client_drain(tly_client *c);

/* True once c has given up (opts.give_up_ms passed without a reply while
 * requests were in flight): every request then in flight was completed with
 * TLY_TIMEOUT, and every later submit returns TLY_TIMEOUT unsent. */
bool tly_client_gave_up(const tly_client *c);

#endif
