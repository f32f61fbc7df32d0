/*
 * tcpproxy.h — a TCP proxy for fault tests: a client reaches its servers
 * through it, and the test decides when their connections stop moving,
 * break, and move again (test_replicate puts one route in front of each
 * JetStream server and hands the ledger the routes' URLs).
 *
 * One thread serves every route. A route listens on 127.0.0.1 at a free
 * port and forwards each connection it accepts to its target, byte for
 * byte, both ways. The controls act on every route at once and return once
 * the thread has applied them, so the test knows the state it set:
 *
 *   tp_freeze  Data from clients is no longer read: their sends fill the
 *              socket buffers, then block or stay in the client library's
 *              own buffers. Data from the targets still reaches the
 *              clients, and the connections stay open. A new connection
 *              is refused (accepted and aborted at once) and counted,
 *              so a client cannot get through until tp_thaw.
 *   tp_cut     Every proxied connection is aborted on both sides (an RST:
 *              what either kernel still held of it is dropped, as when a
 *              machine dies).
 *   tp_thaw    Data moves again; new connections are forwarded again.
 *
 * A connection one side of which closes or fails is aborted on both sides,
 * with what the proxy had not passed on yet. Only the thread touches the
 * sockets; the controls hand it a command through a pipe and wait for it
 * to be done. Every limit is a named constant in tcpproxy.c: a connection
 * beyond TP_CONNS_MAX is refused (not counted), and one whose target does
 * not answer is aborted.
 */
#ifndef TCPPROXY_H
#define TCPPROXY_H

#include <stdbool.h>
#include <stdint.h>

/* Routes one proxy serves: one per server of test_replicate's cluster
 * (three) and one to spare. */
#define TP_ROUTES_MAX 4

/* Where a route forwards to: a numeric IPv4 address and a port. */
typedef struct tp_target {
    const char *host;
    int port;
} tp_target;

typedef struct tp_proxy tp_proxy;

/* Starts a proxy with n routes (1..TP_ROUTES_MAX), route i forwarding to
 * targets[i]; the thread runs until tp_stop. NULL when a socket, the pipe
 * or the thread cannot be had (errno tells), or on a bad argument. */
tp_proxy *tp_start(const tp_target *targets, int n);

/* The 127.0.0.1 port route i listens on. */
int tp_port(const tp_proxy *p, int route);

/* The controls described above; each returns once applied. */
void tp_freeze(tp_proxy *p);
void tp_cut(tp_proxy *p);
void tp_thaw(tp_proxy *p);

/* Waits until at least n connections were refused since the last
 * tp_freeze, or timeout_ms passed; true in the first case. */
bool tp_wait_refused(tp_proxy *p, uint32_t n, int timeout_ms);

/* Aborts every connection, closes the listeners, joins the thread and
 * frees p. NULL is a no-op. */
void tp_stop(tp_proxy *p);

#endif
