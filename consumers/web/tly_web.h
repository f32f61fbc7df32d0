/*
 * tly_web.h — the read-only web console (`tally web`, issue 12 item 1).
 *
 * An HTTP server (libmicrohttpd, one thread per connection) whose pages are
 * rendered on the server from the query service's answers (SPEC sections
 * 8 and 11): nothing is computed here that the service does not answer,
 * except a partner's explain lines, which are folded from DATA/log as
 * `tally explain` folds them, and the chart drawn from those lines and the
 * rebate rows. No page writes anything.
 *
 * Pages (GET or HEAD; every one also answers ?format=json with the
 * service's objects, and an error as the service's {"error","message",
 * "field"?,"suggestions"?}):
 *   /                         redirects to /partners
 *   /partners                 search and list: program, tier, kind, search
 *   /partners/ID              balance, buckets, claims, rebate and referral
 *                             rows, tier, chart, explain lines, statements
 *   /reports/PROGRAM          the program's period report
 *   /liabilities              per program
 *   /expiring                 program
 *   /exceptions               partner, kind, from_seq
 * Status codes: 200; 302 for /; 400 a bad filter (an argument the page does
 * not take, given twice or empty, or one the service refuses); 404 an
 * unknown path, partner or program; 405 a method other than GET and HEAD;
 * 413 a request over TLY_WEB_REQUEST_BYTES_MAX; 500 a page over
 * TLY_WEB_PAGE_BYTES_MAX or out of memory; 502 the service answered with an
 * error of its own; 503 the service did not answer.
 */
#ifndef TLY_WEB_H
#define TLY_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "tly_err.h"
#include "tly_metrics.h"

/* The listening address of the console: IPv4 or IPv6 and a port. */
typedef struct tly_web_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    bool loopback; /* 127.0.0.0/8 or ::1: only this machine reaches it */
} tly_web_addr;

/*
 * Parses "HOST:PORT" (HOST an IPv4 address, "localhost", or an IPv6
 * address in brackets, "[::1]:7414"; PORT 1..65535) into out. No name is
 * resolved other than localhost. Returns TLY_OK or TLY_BAD_FIELD.
 */
tly_err tly_web_addr_parse(const char *text, tly_web_addr *out);

typedef struct tly_web_config {
    const char *query; /* the query service's endpoint; borrowed for the server's life */
    const char *data;  /* the data directory: DATA/log for the explain lines; borrowed */
    tly_web_addr addr;
    tly_metrics *metrics; /* NULL: none; else the console's series are registered in it */
} tly_web_config;

typedef struct tly_web tly_web;

/*
 * Starts serving on c->addr in threads of its own and returns at once.
 * Returns TLY_OK, TLY_IO (the address cannot be bound: msg says why, e.g.
 * in use) or TLY_NOMEM. Stop with tly_web_stop (NULL is a no-op), which
 * closes the socket and waits for the requests being served.
 */
tly_err tly_web_start(const tly_web_config *c, tly_web **out, char *msg, size_t cap);
void tly_web_stop(tly_web *w);

#endif
