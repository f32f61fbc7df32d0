/*
 * web_internal.h — what the console's files share: the page buffer with its
 * HTML escaping, one request's arguments, the reply, and the page renderers.
 * Internal to consumers/web/.
 */
#ifndef WEB_INTERNAL_H
#define WEB_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_limits.h"
#include "tly_web.h"

/* ---- the page buffer (web_buf.c) ---- */

/* A growing text, at most TLY_WEB_PAGE_BYTES_MAX bytes; a write beyond that
 * or out of memory sets failed and writes nothing more. */
typedef struct web_buf {
    char *data;
    size_t len, cap;
    bool failed;
} web_buf;

void web_buf_free(web_buf *b);
void web_put(web_buf *b, const char *s);
void web_putn(web_buf *b, const char *s, size_t n);
void web_printf(web_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s with & < > " ' escaped for text and attribute values; NULL as "". */
void web_esc(web_buf *b, const char *s);
/* s percent-encoded for a path segment or a query value (all but
 * unreserved characters). */
void web_url(web_buf *b, const char *s);
/* Minor units as a decimal amount of the currency (tly_money_text). */
void web_money(web_buf *b, int64_t minor, const char *currency);
/* An integer field of o as money; "–" when it is not an integer. */
void web_money_of(web_buf *b, const json_t *o, const char *key, const char *currency);
/* A string field of o escaped; "–" when absent or null. */
void web_str_of(web_buf *b, const json_t *o, const char *key);

const char *web_sget(const json_t *o, const char *key);
int64_t web_iget(const json_t *o, const char *key);

/* ---- one request (web_server.c) ---- */

typedef struct web_arg {
    const char *name, *value; /* the library's, live for the request */
} web_arg;

typedef struct web_req {
    const tly_web_config *cfg;
    const char *path;
    web_arg args[TLY_WEB_ARGS_MAX];
    uint32_t nargs;
    size_t bytes;  /* of the headers' and arguments' names and values */
    bool too_many; /* more than TLY_WEB_ARGS_MAX arguments were added */
    bool json;     /* ?format=json */
} web_req;

typedef struct web_reply {
    int status;
    bool json;            /* body is JSON, else HTML */
    const char *location; /* a redirect's target (static) */
    const char *type;     /* the content type when neither HTML nor JSON (static) */
    web_buf body;
} web_reply;

/* Adds one header (arg false) or query argument (arg true) of the request
 * to r as the server reads them: its name's and value's bytes count toward
 * TLY_WEB_REQUEST_BYTES_MAX, an argument goes to r->args (one past
 * TLY_WEB_ARGS_MAX sets r->too_many instead). value NULL is an argument
 * without "=", taken as "". name and value are borrowed for the request. */
void web_req_add(web_req *r, const char *name, const char *value, bool arg);

/*
 * Answers one request into out (status 200 on entry): r with cfg and path
 * (decoded, as the library hands it) set and its headers and arguments
 * added, method the HTTP method, body whether the request announces a
 * body. The checks every page shares (method, size, arguments, format)
 * come first, then the page of the path. A body that failed (out->body.
 * failed) is answered as a 500 by the server. The server calls this for
 * every request, and fuzz/fuzz_web.c runs it on hostile ones.
 */
void web_serve(web_req *r, const char *method, bool body, web_reply *out);

/* The value of argument name, or NULL (also when it is empty). */
const char *web_arg_get(const web_req *r, const char *name);

/*
 * Checks the request's arguments against the names a page takes ("format"
 * is always taken): none unknown, none given twice (an empty value is no
 * filter: a form sends its empty fields). On a bad
 * one fills out with a 400 page and returns false.
 */
bool web_args_check(const web_req *r, const char *const *names, size_t n, web_reply *out);

/*
 * Asks the query service req (stolen). Returns the answer (new reference),
 * or NULL with out filled with the error page: 404 not_found, 400
 * bad_field / missing_field, 503 no answer, 502 another error.
 */
json_t *web_ask(const web_req *r, json_t *req, web_reply *out);

/* Fills out with an error page (HTML or the JSON error object). detail:
 * the service's error object, or NULL. */
void web_error(const web_req *r, web_reply *out, int status, const char *code, const char *message,
               const json_t *detail);

/* Fills out with obj as JSON (compact, keys in order): ?format=json. */
void web_json(web_reply *out, const json_t *obj);

/* The page frame around a body: head with the stylesheet and title, the
 * navigation, and a footer naming the seq and the JSON link of the page. */
void web_page_open(web_buf *b, const web_req *r, const char *title);
void web_page_close(web_buf *b, const web_req *r, const json_t *answer);

/* ---- pages (web_pages.c, web_partner.c) ---- */

void web_page_partners(const web_req *r, web_reply *out);
void web_page_partner(const web_req *r, const char *id, web_reply *out);
/* /partners/ID/statement.html|pdf [?period=P] (web_statement.c). */
void web_page_statement(const web_req *r, const char *id, const char *what, web_reply *out);
/* The reply to the statement `tally statement` wrote into path, rc its
 * exit code and errpath its stderr: the file as the body (a PDF when pdf),
 * or an error page: 404 not_found when rc is 1 (no such partner or
 * period), 500 io otherwise, with the first line of errpath or, for a file
 * larger than TLY_WEB_STATEMENT_BYTES_MAX, a message naming that bound. */
void web_statement_reply(const web_req *r, int rc, const char *path, const char *errpath, bool pdf,
                         web_reply *out);
void web_page_report(const web_req *r, const char *program, web_reply *out);
void web_page_liabilities(const web_req *r, web_reply *out);
void web_page_expiring(const web_req *r, web_reply *out);
void web_page_exceptions(const web_req *r, web_reply *out);

/* The chart of a partner (web_chart.c): available MDF at the end of each
 * period (from the explain report's lines) and cumulative revenue (from
 * the rebate rows), as an inline SVG with id "chart". */
void web_chart(web_buf *b, const json_t *rebate, const json_t *explain, const char *currency);

#endif
