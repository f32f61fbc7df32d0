/* tly_metrics_http.c — the --metrics HTTP endpoint; see tly_metrics_http.h. */
#include "tly_metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tly_limits.h"
#include "tly_mhd.h"
#include "tly_os.h"

/* The exposition format's content type (Prometheus text format 0.0.4). */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Pending connections the listening socket queues. */
#define LISTEN_BACKLOG 16

struct tly_metrics_http {
    struct MHD_Daemon *daemon;
    tly_metrics *reg;
};

/* A parsed ADDR. */
typedef struct addr {
    struct sockaddr_storage sa;
    socklen_t len;
    bool loopback;
} addr;

static bool parse_port(const char *s, uint16_t *port)
{
    uint64_t n;
    if (!tly_parse_u64(s, 1, 65535, &n))
        return false;
    *port = (uint16_t)n;
    return true;
}

/* HOST (without brackets) and PORT into a: IPv4, IPv6, localhost, '*'. */
static bool parse_host(const char *host, bool v6, uint16_t port, addr *a)
{
    memset(a, 0, sizeof *a);
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        a->len = sizeof *s6;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return false;
        a->loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
        return true;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    a->len = sizeof *s4;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "*") == 0)
        host = "0.0.0.0";
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return false;
    a->loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    return true;
}

/* Parses ADDR into a; TLY_USAGE with msg as tly_metrics_addr_check. */
static tly_err parse_addr(const char *text, bool insecure, addr *a, char *msg, size_t cap)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    size_t hlen = colon ? (size_t)(colon - text) : 0;
    uint16_t port = 0;
    bool v6 = hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']';
    bool ok = colon && hlen > 0 && hlen < sizeof host && parse_port(colon + 1, &port);
    if (ok) {
        memcpy(host, text + (v6 ? 1 : 0), hlen - (v6 ? 2 : 0));
        host[hlen - (v6 ? 2 : 0)] = '\0';
        ok = parse_host(host, v6, port, a);
    }
    if (!ok) {
        snprintf(msg, cap,
                 "--metrics wants HOST:PORT (127.0.0.1:7420, localhost:7420, [::1]:7420), "
                 "not '%s'",
                 text);
        return TLY_USAGE;
    }
    if (!a->loopback && !insecure) {
        snprintf(msg, cap,
                 "refusing to serve metrics on %s: not a loopback address (metrics travel in "
                 "the clear; pass --insecure to allow it)",
                 text);
        return TLY_USAGE;
    }
    return TLY_OK;
}

tly_err tly_metrics_addr_check(const char *text, bool insecure, char *msg, size_t cap)
{
    addr a;
    return parse_addr(text, insecure, &a, msg, cap);
}

/* A response of static text with status code. */
static enum MHD_Result reply_static(struct MHD_Connection *conn, unsigned code, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* libmicrohttpd's request handler: answers on the first call (no request
 * of ours has a body worth reading). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
    tly_metrics_http *h = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") != 0)
        return reply_static(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    char *text = NULL;
    size_t len = 0;
    if (tly_metrics_render(h->reg, &text, &len) != TLY_OK)
        return reply_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* The listening socket, bound here so that a bind error has its own
 * message. Returns the fd, or -1 with msg set. */
static int listen_on(const addr *a, const char *text, char *msg, size_t cap)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, (const struct sockaddr *)&a->sa, a->len) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
        return fd;
    snprintf(msg, cap, "cannot serve metrics on %s: %s", text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

tly_err tly_metrics_http_start(const char *text, bool insecure, tly_metrics *reg,
                               tly_metrics_http **out, char *msg, size_t cap)
{
    addr a;
    tly_err err = parse_addr(text, insecure, &a, msg, cap);
    if (err == TLY_OK)
        err = tly_mhd_load(msg, cap);
    if (err != TLY_OK)
        return err;
    tly_metrics_http *h = calloc(1, sizeof *h);
    if (!h)
        return TLY_NOMEM;
    h->reg = reg;
    int fd = listen_on(&a, text, msg, cap);
    if (fd < 0) {
        free(h);
        return TLY_UNAVAILABLE;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (a.sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)TLY_METRICS_CONNECTIONS_MAX,
                                 MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)TLY_METRICS_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(msg, cap, "cannot serve metrics on %s: the HTTP server did not start", text);
        close(fd);
        free(h);
        return TLY_UNAVAILABLE;
    }
    *out = h;
    return TLY_OK;
}

void tly_metrics_http_stop(tly_metrics_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon); /* closes the listening socket too */
    free(h);
}
