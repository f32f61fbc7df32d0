/*
 * web_server.c — the console's HTTP server (libmicrohttpd): limits, one
 * request's arguments, routing, error pages and the page frame.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): a page waits
 * on the query service and, for a partner, folds the log for its explain
 * lines; a thread of its own keeps a slow page from holding up others.
 * Connections are bounded by TLY_WEB_CONNECTIONS_MAX (the library closes
 * one over the limit unanswered), each one's memory by
 * TLY_WEB_CONNECTION_MEMORY_BYTES, a request by TLY_WEB_REQUEST_BYTES_MAX
 * (counted here: 413) and an idle connection by TLY_WEB_IDLE_TIMEOUT_S.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_event.h"
#include "tly_limits.h"
#include "tly_mhd.h"
#include "tly_os.h"
#include "tly_query.h"
#include "web_internal.h"

/* The pages the console counts requests of (README "Metrics"). */
static const char *const web_pages[] = {"partners",    "partner",  "statement",  "report",
                                        "liabilities", "expiring", "exceptions", "other"};
#define WEB_PAGES (sizeof web_pages / sizeof web_pages[0])

struct tly_web {
    struct MHD_Daemon *daemon;
    tly_web_config cfg;
    tly_metric *requests[WEB_PAGES]; /* NULL without metrics */
    tly_metric *seconds;
};

/* The page of a path, for the request counter. */
static size_t page_of(const char *p)
{
    if (strncmp(p, "/partners/", 10) == 0)
        return strchr(p + 10, '/') ? 2 : 1;
    if (strncmp(p, "/reports/", 9) == 0)
        return 3;
    static const char *const exact[] = {"/partners",    NULL,        NULL,         NULL,
                                        "/liabilities", "/expiring", "/exceptions"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (exact[i] && strcmp(p, exact[i]) == 0)
            return i;
    return WEB_PAGES - 1;
}

static void register_metrics(tly_web *w)
{
    for (size_t k = 0; k < WEB_PAGES; k++)
        w->requests[k] =
            tly_metrics_counter(w->cfg.metrics, "tally_web_requests_total",
                                "Console requests answered, by page.", "page", web_pages[k]);
    w->seconds = tly_metrics_histogram(w->cfg.metrics, "tally_web_request_duration_seconds",
                                       "Time to render a console page (its queries included).",
                                       NULL, NULL, &tly_metrics_seconds);
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

/* "HOST:PORT" split at the last colon; an IPv6 host in brackets. */
static bool split_addr(const char *text, char *host, size_t cap, uint64_t *port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return false;
    const char *h = text;
    size_t n = (size_t)(colon - text);
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']')
            return false;
        h++;
        n -= 2;
    }
    if (n >= cap || !tly_parse_u64(colon + 1, 1, 65535, port))
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    return true;
}

tly_err tly_web_addr_parse(const char *text, tly_web_addr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    uint64_t port;
    if (!text || !split_addr(text, host, sizeof host, &port))
        return TLY_BAD_FIELD;
    *out = (tly_web_addr){0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof *v4;
        out->loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
        return TLY_OK;
    }
    if (text[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *v6;
        out->loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
        return TLY_OK;
    }
    return TLY_BAD_FIELD;
}

/* ------------------------------------------------------------------------ */
/* Arguments and errors                                                      */

const char *web_arg_get(const web_req *r, const char *name)
{
    for (uint32_t i = 0; i < r->nargs; i++)
        if (strcmp(r->args[i].name, name) == 0 && r->args[i].value[0])
            return r->args[i].value;
    return NULL;
}

static bool name_in(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return strcmp(name, "format") == 0;
}

bool web_args_check(const web_req *r, const char *const *names, size_t n, web_reply *out)
{
    char msg[TLY_NAME_BYTES_MAX + 128];
    for (uint32_t i = 0; i < r->nargs; i++) {
        const web_arg *a = &r->args[i];
        /* An empty value is no filter: a form sends its empty fields. */
        const char *why = name_in(a->name, names, n) ? NULL : "is not a filter of this page";
        for (uint32_t k = 0; !why && a->value[0] && k < i; k++)
            why = strcmp(r->args[k].name, a->name) == 0 && r->args[k].value[0] ? "is given twice"
                                                                               : NULL;
        if (why) {
            snprintf(msg, sizeof msg, "'%.*s' %s", (int)TLY_NAME_BYTES_MAX, a->name, why);
            json_t *d = json_pack("{s:s}", "field", a->name);
            web_error(r, out, 400, "bad_field", msg, d);
            json_decref(d);
            return false;
        }
    }
    return true;
}

/* The HTTP status of a service error code. */
static int status_of(const char *code)
{
    if (strcmp(code, "not_found") == 0)
        return 404;
    if (strcmp(code, "bad_field") == 0 || strcmp(code, "missing_field") == 0)
        return 400;
    return 502;
}

json_t *web_ask(const web_req *r, json_t *req, web_reply *out)
{
    json_t *ans = NULL;
    tly_err err = req ? tly_query_call(r->cfg->query, req, TLY_QUERY_TIMEOUT_MS, &ans) : TLY_NOMEM;
    json_decref(req);
    if (err != TLY_OK) {
        char msg[TLY_PATH_BYTES_MAX + 96];
        snprintf(msg, sizeof msg, "the query service at %s did not answer (%s)", r->cfg->query,
                 tly_err_name(err));
        web_error(r, out, err == TLY_NOMEM ? 500 : 503, tly_err_name(err), msg, NULL);
        return NULL;
    }
    const char *code = json_string_value(json_object_get(ans, "error"));
    if (!code)
        return ans;
    web_error(r, out, status_of(code), code, web_sget(ans, "message"), ans);
    json_decref(ans);
    return NULL;
}

void web_json(web_reply *out, const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    out->json = true;
    if (!text) {
        out->body.failed = true;
        return;
    }
    web_put(&out->body, text);
    web_put(&out->body, "\n");
    free(text);
}

static const char *reason_of(int status)
{
    switch (status) {
    case 400:
        return "Bad request";
    case 404:
        return "Not found";
    case 405:
        return "Method not allowed";
    case 413:
        return "Request too large";
    case 502:
        return "The query service refused";
    case 503:
        return "The query service is not answering";
    default:
        return "Server error";
    }
}

/* The error page's suggestions (an unknown partner's nearest ids). */
static void suggestions(web_buf *b, const json_t *detail)
{
    const json_t *s = json_object_get(detail, "suggestions");
    if (json_array_size(s) == 0)
        return;
    web_put(b, "<p>Did you mean:</p><ul class=\"suggest\">");
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v)
    {
        web_put(b, "<li><a href=\"/partners/");
        web_url(b, json_string_value(v));
        web_put(b, "\">");
        web_esc(b, json_string_value(v));
        web_put(b, "</a></li>");
    }
    web_put(b, "</ul>");
}

/* A copy of s without the bytes that are not UTF-8 text (NULL: out of
 * memory): a message cut at a bound ("%.*s", snprintf) may cut a
 * character, which JSON text cannot hold. */
static char *text_of(const char *s)
{
    size_t n = strlen(s), len = 0;
    char *t = malloc(n + 1);
    for (size_t i = 0; t && i < n;) {
        size_t k = 1;
        while (k < 4 && i + k < n && !tly_utf8_valid(s + i, k))
            k++;
        if (tly_utf8_valid(s + i, k)) {
            memcpy(t + len, s + i, k);
            len += k;
            i += k;
        } else {
            i++;
        }
    }
    if (t)
        t[len] = '\0';
    return t;
}

void web_error(const web_req *r, web_reply *out, int status, const char *code, const char *message,
               const json_t *detail)
{
    web_buf_free(&out->body);
    out->status = status;
    char *text = text_of(message);
    if (!text) {
        out->body.failed = true;
        return;
    }
    message = text;
    if (r->json) {
        json_t *e = json_pack("{s:s, s:s}", "error", code, "message", message);
        const char *field = json_string_value(json_object_get(detail, "field"));
        if (e && field)
            json_object_set_new(e, "field", json_string(field));
        if (e && json_object_get(detail, "suggestions"))
            json_object_set(e, "suggestions", json_object_get(detail, "suggestions"));
        web_json(out, e);
        json_decref(e);
        free(text);
        return;
    }
    out->json = false;
    web_page_open(&out->body, r, reason_of(status));
    web_printf(&out->body, "<h1>%d %s</h1><p class=\"error\" data-code=\"", status,
               reason_of(status));
    web_esc(&out->body, code);
    web_put(&out->body, "\">");
    web_esc(&out->body, message);
    web_put(&out->body, "</p>");
    suggestions(&out->body, detail);
    web_page_close(&out->body, r, NULL);
    free(text);
}

/* ------------------------------------------------------------------------ */
/* The page frame                                                            */

static const char style[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#fff}"
    "header{background:#1d2f4f;padding:.6em 1.5em}header a{color:#fff;margin-right:1.4em;"
    "text-decoration:none;font-weight:600}main{padding:1em 1.5em;max-width:1200px}"
    "table{border-collapse:collapse;margin:.4em 0 1.2em}th,td{padding:.25em .7em;"
    "border-bottom:1px solid #dde2ea;text-align:left}th{background:#f2f4f8}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".error{color:#a01818;font-weight:600}.muted{color:#667}"
    "form.filters input{margin-right:.6em}footer{padding:1em 1.5em;color:#667}"
    "section{margin-bottom:1.5em}.kv th{width:14em}";

void web_page_open(web_buf *b, const web_req *r, const char *title)
{
    (void)r;
    web_put(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    web_esc(b, title);
    web_put(b, " — Tally</title><style>");
    web_put(b, style);
    web_put(b, "</style></head><body><header><nav><a href=\"/partners\">Partners</a>"
               "<a href=\"/liabilities\">Liabilities</a><a href=\"/expiring\">Expiring</a>"
               "<a href=\"/exceptions\">Exceptions</a></nav></header><main>\n");
}

/* The page's own URL with format=json added (its other arguments kept). */
static void json_link(web_buf *b, const web_req *r)
{
    web_esc(b, r->path);
    web_put(b, "?format=json");
    for (uint32_t i = 0; i < r->nargs; i++) {
        if (strcmp(r->args[i].name, "format") == 0)
            continue;
        web_put(b, "&amp;");
        web_url(b, r->args[i].name);
        web_put(b, "=");
        web_url(b, r->args[i].value);
    }
}

void web_page_close(web_buf *b, const web_req *r, const json_t *answer)
{
    web_put(b, "</main><footer>");
    if (json_is_integer(json_object_get(answer, "seq")))
        web_printf(b, "As of log seq <span id=\"seq\">%lld</span> · ",
                   (long long)web_iget(answer, "seq"));
    web_put(b, "<a href=\"");
    json_link(b, r);
    web_put(b, "\">JSON</a> · Tally console, read-only</footer></body></html>\n");
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

void web_req_add(web_req *r, const char *name, const char *value, bool arg)
{
    r->bytes += strlen(name) + (value ? strlen(value) : 0);
    if (!arg)
        return;
    if (r->nargs == TLY_WEB_ARGS_MAX) {
        r->too_many = true;
        return;
    }
    r->args[r->nargs++] = (web_arg){name, value ? value : ""};
}

/* The library's callback over a request's headers and arguments. */
static enum MHD_Result count_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    web_req_add(cls, key, value, kind == MHD_GET_ARGUMENT_KIND);
    return MHD_YES;
}

/* Serves one page into out by the request's path. */
static void route(const web_req *r, web_reply *out)
{
    const char *p = r->path;
    const char *id = strncmp(p, "/partners/", 10) == 0 ? p + 10 : NULL;
    const char *program = strncmp(p, "/reports/", 9) == 0 ? p + 9 : NULL;
    if (strcmp(p, "/") == 0) {
        out->status = 302;
        out->location = "/partners";
        web_put(&out->body, "<a href=\"/partners\">/partners</a>\n");
    } else if (strcmp(p, "/partners") == 0) {
        web_page_partners(r, out);
    } else if (id && *id && !strchr(id, '/')) {
        web_page_partner(r, id, out);
    } else if (id && *id && strchr(id, '/') && !strchr(strchr(id, '/') + 1, '/')) {
        char pid[TLY_NAME_BYTES_MAX + 1];
        size_t len = (size_t)(strchr(id, '/') - id);
        if (len > TLY_NAME_BYTES_MAX) {
            web_error(r, out, 404, "not_found", "no such page", NULL);
            return;
        }
        memcpy(pid, id, len);
        pid[len] = '\0';
        web_page_statement(r, pid, id + len + 1, out);
    } else if (program && *program && !strchr(program, '/')) {
        web_page_report(r, program, out);
    } else if (strcmp(p, "/liabilities") == 0) {
        web_page_liabilities(r, out);
    } else if (strcmp(p, "/expiring") == 0) {
        web_page_expiring(r, out);
    } else if (strcmp(p, "/exceptions") == 0) {
        web_page_exceptions(r, out);
    } else {
        web_error(r, out, 404, "not_found", "no such page", NULL);
    }
}

/* Whether s is UTF-8 text (tly_utf8_valid). */
static bool is_text(const char *s)
{
    return tly_utf8_valid(s, strlen(s));
}

/*
 * Refuses a request whose path or an argument is not UTF-8 text: no page,
 * partner or program has such a name, and the questions to the service
 * and the JSON replies are JSON text, which cannot hold it (a filter would
 * be dropped, a question not asked). A path is a 404 page, an argument a
 * 400 naming it (when its name is text). Returns true when it refused.
 */
static bool refuse_bytes(const web_req *r, web_reply *out)
{
    if (!is_text(r->path)) {
        web_error(r, out, 404, "not_found", "no such page", NULL);
        return true;
    }
    for (uint32_t i = 0; i < r->nargs; i++) {
        const web_arg *a = &r->args[i];
        if (is_text(a->name) && is_text(a->value))
            continue;
        char msg[TLY_NAME_BYTES_MAX + 64] = "an argument's name is not UTF-8 text";
        json_t *d = NULL;
        if (is_text(a->name)) {
            snprintf(msg, sizeof msg, "'%.*s' is not UTF-8 text", (int)TLY_NAME_BYTES_MAX, a->name);
            d = json_pack("{s:s}", "field", a->name);
        }
        web_error(r, out, 400, "bad_field", msg, d);
        json_decref(d);
        return true;
    }
    return false;
}

/* The request's checks before its page (method, size, arguments, format,
 * text), then the page. */
void web_serve(web_req *r, const char *method, bool body, web_reply *out)
{
    size_t bytes = strlen(r->path) + r->bytes;
    const char *format = web_arg_get(r, "format");
    r->json = format && strcmp(format, "json") == 0;
    char msg[160];
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        web_error(r, out, 405, "usage", "the console is read-only: GET and HEAD only", NULL);
    } else if (body) {
        web_error(r, out, 413, "too_large", "no page takes a request body", NULL);
    } else if (bytes > TLY_WEB_REQUEST_BYTES_MAX) {
        snprintf(msg, sizeof msg,
                 "the request has %zu bytes of path, arguments and headers "
                 "(at most %u)",
                 bytes, TLY_WEB_REQUEST_BYTES_MAX);
        web_error(r, out, 413, "too_large", msg, NULL);
    } else if (r->too_many) {
        snprintf(msg, sizeof msg, "more than %u arguments", TLY_WEB_ARGS_MAX);
        web_error(r, out, 400, "bad_field", msg, NULL);
    } else if (format && strcmp(format, "json") != 0 && strcmp(format, "html") != 0) {
        json_t *d = json_pack("{s:s}", "field", "format");
        web_error(r, out, 400, "bad_field", "'format' is html or json", d);
        json_decref(d);
    } else if (!refuse_bytes(r, out)) {
        route(r, out);
    }
}

/* Queues out as the response; a failed body is a 500 of its own. */
static enum MHD_Result respond(struct MHD_Connection *conn, web_reply *out)
{
    static const char too_big[] = "500 the page is too large or memory ran out\n";
    struct MHD_Response *resp;
    int status = out->status;
    if (out->body.failed) {
        web_buf_free(&out->body);
        status = 500;
        resp = MHD_create_response_from_buffer(sizeof too_big - 1, (void *)too_big,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        resp =
            MHD_create_response_from_buffer_with_free_callback(out->body.len, out->body.data, free);
        out->body = (web_buf){0};
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            out->type   ? out->type
                            : out->json ? "application/json"
                                        : "text/html; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (out->location)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, out->location);
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* True when the request announces a body (no page takes one). */
static bool has_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    return (cl && strcmp(cl, "0") != 0) ||
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
}

/*
 * The library calls this once with the headers read, then again after the
 * body. A plain GET or HEAD is answered at the second call, which keeps its
 * connection alive; anything with a body is answered at once (the library
 * then closes the connection rather than read a body nobody wants).
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static char pending, answered; /* the request's state in *con_cls */
    (void)version;
    (void)upload_data;
    if (*con_cls == &answered) {
        *upload_data_size = 0; /* a body's leftovers, dropped */
        return MHD_YES;
    }
    bool body = has_body(conn);
    if (*con_cls == NULL && !body) {
        *con_cls = &pending;
        return MHD_YES;
    }
    *con_cls = &answered;
    const tly_web *w = cls;
    web_req r = {.cfg = &w->cfg, .path = url};
    web_reply out = {.status = 200};
    uint64_t t0 = tly_mono_ns();
    MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, count_value, &r);
    web_serve(&r, method, body, &out);
    tly_metric_add(w->requests[page_of(url)], 1);
    tly_metric_observe(w->seconds, tly_mono_ns() - t0);
    return respond(conn, &out);
}

/* libmicrohttpd's own complaints, on stderr with the log line's prefix. */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    tly_logf(TLY_LOG_WARN, "web", "http: %s", line);
}

tly_err tly_web_start(const tly_web_config *c, tly_web **out, char *msg, size_t cap)
{
    tly_err err = tly_mhd_load(msg, cap);
    if (err != TLY_OK)
        return err;
    tly_web *w = calloc(1, sizeof *w);
    if (!w)
        return TLY_NOMEM;
    w->cfg = *c;
    register_metrics(w);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (c->addr.sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    w->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, w, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&c->addr.sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)TLY_WEB_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)TLY_WEB_CONNECTION_MEMORY_BYTES, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)TLY_WEB_IDLE_TIMEOUT_S, MHD_OPTION_END);
    if (!w->daemon) {
        snprintf(msg, cap,
                 "cannot listen on the console's address (in use, or not this "
                 "machine's?)");
        free(w);
        return TLY_IO;
    }
    *out = w;
    return TLY_OK;
}

void tly_web_stop(tly_web *w)
{
    if (!w)
        return;
    MHD_stop_daemon(w->daemon);
    free(w);
}
