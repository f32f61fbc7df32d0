/*
 * tly_metrics_http.h — serves a metrics registry (schemas/tly_metrics.h) in
 * the Prometheus text format over HTTP, on `--metrics ADDR`.
 *
 * One libmicrohttpd daemon with its own thread answers GET (and HEAD)
 * /metrics with the registry rendered at that moment, 404 for another
 * path and 405 for another method. The thread only reads the registry's
 * atomics: the daemon that counts never waits for a scrape. At most
 * TLY_METRICS_CONNECTIONS_MAX connections at once, each closed after
 * TLY_METRICS_CONNECTION_TIMEOUT_S idle; one more waits in the listen
 * backlog, unanswered, until one of them goes.
 *
 * ADDR is HOST:PORT: an IPv4 address, "localhost" (127.0.0.1) or "*"
 * (every IPv4 interface), or an IPv6 address in brackets ("[::1]:7420");
 * PORT 1..65535. Loopback (127.0.0.0/8, ::1) only, unless the caller allows
 * others (--insecure): metrics name the event types and volumes a ledger
 * takes, and they travel in the clear.
 *
 * Only the command layer includes this header (ledger/cli, consumers/cli
 * and `tally web`): the rooms that count see tly_metrics.h alone.
 */
#ifndef TLY_METRICS_HTTP_H
#define TLY_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "tly_err.h"
#include "tly_metrics.h"

typedef struct tly_metrics_http tly_metrics_http;

/* Checks ADDR as tly_metrics_http_start would, without binding: TLY_OK, or
 * TLY_USAGE with a sentence in msg (not HOST:PORT, or not loopback while
 * insecure is false). */
tly_err tly_metrics_addr_check(const char *addr, bool insecure, char *msg, size_t cap);

/*
 * Binds ADDR and serves reg there until tly_metrics_http_stop. reg must
 * outlive the server. Returns TLY_OK with *out set, TLY_USAGE (ADDR, as
 * tly_metrics_addr_check), TLY_UNAVAILABLE (the bind failed: the port is
 * taken, the address is not this machine's) or TLY_NOMEM, with a sentence
 * in msg on error.
 */
tly_err tly_metrics_http_start(const char *addr, bool insecure, tly_metrics *reg,
                               tly_metrics_http **out, char *msg, size_t cap);

/* Stops serving (waits for the HTTP thread) and frees h. NULL is a no-op. */
void tly_metrics_http_stop(tly_metrics_http *h);

#endif
