/*
 * web_pages.c — the console's list pages: partners (search and filters as
 * `tally partners`), a program's period report, liabilities, expiring
 * funds and exceptions. Each asks the query service once (and liabilities
 * for the programs' currencies where the answer has none) and renders the
 * answer; ?format=json is the answer itself.
 */
#include <stdio.h>
#include <string.h>

#include "tly_os.h"
#include "tly_xkind.h"
#include "web_internal.h"

/* The currency of program in a liabilities answer; NULL when unknown. */
static const char *currency_of(const json_t *liab, const char *program)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(liab, "programs"), i,
                       p) if (strcmp(web_sget(p, "program"), program) ==
                              0) return json_string_value(json_object_get(p, "currency"));
    return NULL;
}

/* A request {"q": q} with the page's given filters copied in. */
static json_t *request(const web_req *r, const char *q, const char *const *filters, size_t n)
{
    json_t *req = json_pack("{s:s}", "q", q);
    for (size_t i = 0; req && i < n; i++) {
        const char *v = web_arg_get(r, filters[i]);
        if (v)
            json_object_set_new(req, filters[i], json_string(v));
    }
    return req;
}

static void partner_link(web_buf *b, const char *id)
{
    web_put(b, "<a href=\"/partners/");
    web_url(b, id);
    web_put(b, "\">");
    web_esc(b, id);
    web_put(b, "</a>");
}

static void td_money(web_buf *b, const json_t *o, const char *key, const char *currency)
{
    web_put(b, "<td class=\"n\">");
    web_money_of(b, o, key, currency);
    web_put(b, "</td>");
}

static void td_str(web_buf *b, const json_t *o, const char *key)
{
    web_put(b, "<td>");
    web_str_of(b, o, key);
    web_put(b, "</td>");
}

/* ------------------------------------------------------------------------ */
/* Partners                                                                  */

/* "after": the service answers a page at a time; its "next" is the link. */
static const char *const partner_filters[] = {"program", "tier", "kind", "search", "after"};
#define PARTNER_FILTERS (sizeof partner_filters / sizeof partner_filters[0])

static void partners_form(web_buf *b, const web_req *r)
{
    web_put(b, "<form class=\"filters\" method=\"get\" action=\"/partners\">");
    for (size_t i = 0; i + 1 < PARTNER_FILTERS; i++) {
        web_printf(b, "<label>%s <input name=\"%s\" value=\"", partner_filters[i],
                   partner_filters[i]);
        web_esc(b, web_arg_get(r, partner_filters[i]));
        web_put(b, "\"></label>");
    }
    web_put(b, "<button>Search</button></form>\n");
}

static void partners_table(web_buf *b, const web_req *r, const json_t *ans, const json_t *liab)
{
    web_printf(b, "<p><span id=\"count\">%zu</span> partners</p>",
               json_array_size(json_object_get(ans, "partners")));
    web_put(b, "<table id=\"partners\"><tr><th>Partner</th><th>Name</th><th>Program</th>"
               "<th>Kind</th><th>Region</th><th>Tier</th><th class=\"n\">Available MDF</th>"
               "<th class=\"n\">Rebate payable</th></tr>\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ans, "partners"), i, p)
    {
        const char *cur = currency_of(liab, web_sget(p, "program"));
        web_put(b, "<tr><td>");
        partner_link(b, web_sget(p, "partner"));
        web_put(b, "</td>");
        td_str(b, p, "name");
        td_str(b, p, "program");
        td_str(b, p, "kind");
        td_str(b, p, "region");
        td_str(b, p, "tier");
        td_money(b, p, "available", cur);
        td_money(b, p, "rebate_payable", cur);
        web_put(b, "</tr>\n");
    }
    web_put(b, "</table>\n");
    if (!json_is_string(json_object_get(ans, "next")))
        return;
    web_put(b, "<p><a id=\"next\" href=\"/partners?after=");
    web_url(b, web_sget(ans, "next"));
    for (size_t k = 0; k + 1 < PARTNER_FILTERS; k++) {
        const char *v = web_arg_get(r, partner_filters[k]);
        if (v) {
            web_printf(b, "&amp;%s=", partner_filters[k]);
            web_url(b, v);
        }
    }
    web_put(b, "\">More</a></p>\n");
}

/* Links to each program's report and expiring funds. */
static void program_links(web_buf *b, const json_t *liab)
{
    web_put(b, "<p>Period reports:");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(liab, "programs"), i, p)
    {
        web_put(b, " <a href=\"/reports/");
        web_url(b, web_sget(p, "program"));
        web_put(b, "\">");
        web_esc(b, web_sget(p, "program"));
        web_put(b, "</a>");
    }
    web_put(b, "</p>\n");
}

void web_page_partners(const web_req *r, web_reply *out)
{
    if (!web_args_check(r, partner_filters, PARTNER_FILTERS, out))
        return;
    json_t *ans = web_ask(r, request(r, "partners", partner_filters, PARTNER_FILTERS), out);
    if (!ans)
        return;
    json_t *liab = r->json ? NULL : web_ask(r, json_pack("{s:s}", "q", "liabilities"), out);
    if (r->json) {
        web_json(out, ans);
    } else if (liab) {
        web_page_open(&out->body, r, "Partners");
        web_put(&out->body, "<h1>Partners</h1>");
        partners_form(&out->body, r);
        partners_table(&out->body, r, ans, liab);
        program_links(&out->body, liab);
        web_page_close(&out->body, r, ans);
    }
    json_decref(liab);
    json_decref(ans);
}

/* ------------------------------------------------------------------------ */
/* A program's period report                                                 */

static const char *const report_keys[] = {
    "revenue",      "mdf_accrued", "mdf_clawed_back", "mdf_adjusted", "mdf_expired",
    "mdf_approved", "mdf_paid",    "rebate",          "referral",     "rebate_paid"};
#define REPORT_KEYS (sizeof report_keys / sizeof report_keys[0])

void web_page_report(const web_req *r, const char *program, web_reply *out)
{
    if (!web_args_check(r, NULL, 0, out))
        return;
    json_t *ans = web_ask(r, json_pack("{s:s, s:s}", "q", "report", "program", program), out);
    if (!ans)
        return;
    if (r->json) {
        web_json(out, ans);
        json_decref(ans);
        return;
    }
    web_buf *b = &out->body;
    const char *cur = web_sget(ans, "currency");
    web_page_open(b, r, program);
    web_put(b, "<h1>Period report: ");
    web_esc(b, program);
    web_put(b, "</h1><p>Currency ");
    web_esc(b, cur);
    web_put(b, "</p><table id=\"report\"><tr><th>Period</th><th>Status</th>");
    for (size_t k = 0; k < REPORT_KEYS; k++)
        web_printf(b, "<th class=\"n\">%s</th>", report_keys[k]);
    web_put(b, "</tr>\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ans, "periods"), i, p)
    {
        web_put(b, "<tr>");
        td_str(b, p, "period");
        td_str(b, p, "status");
        for (size_t k = 0; k < REPORT_KEYS; k++)
            td_money(b, p, report_keys[k], cur);
        web_put(b, "</tr>\n");
    }
    web_put(b, "</table>\n");
    web_page_close(b, r, ans);
    json_decref(ans);
}

/* ------------------------------------------------------------------------ */
/* Liabilities                                                               */

static const char *const liab_keys[] = {"mdf_available", "mdf_pending", "mdf_approved",
                                        "rebate_accrued_open", "rebate_payable"};

void web_page_liabilities(const web_req *r, web_reply *out)
{
    if (!web_args_check(r, NULL, 0, out))
        return;
    json_t *ans = web_ask(r, json_pack("{s:s}", "q", "liabilities"), out);
    if (!ans)
        return;
    if (r->json) {
        web_json(out, ans);
        json_decref(ans);
        return;
    }
    web_buf *b = &out->body;
    web_page_open(b, r, "Liabilities");
    web_put(b, "<h1>Liabilities</h1><table id=\"liabilities\"><tr><th>Program</th>"
               "<th>Currency</th>");
    for (size_t k = 0; k < 5; k++)
        web_printf(b, "<th class=\"n\">%s</th>", liab_keys[k]);
    web_put(b, "<th></th></tr>\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ans, "programs"), i, p)
    {
        web_put(b, "<tr>");
        td_str(b, p, "program");
        td_str(b, p, "currency");
        for (size_t k = 0; k < 5; k++)
            td_money(b, p, liab_keys[k], web_sget(p, "currency"));
        web_put(b, "<td><a href=\"/reports/");
        web_url(b, web_sget(p, "program"));
        web_put(b, "\">report</a> · <a href=\"/expiring?program=");
        web_url(b, web_sget(p, "program"));
        web_put(b, "\">expiring</a></td></tr>\n");
    }
    web_put(b, "</table>\n");
    if (json_is_true(json_object_get(ans, "shards_differ")))
        web_put(b, "<p class=\"muted\">The shards had applied different log positions.</p>");
    web_page_close(b, r, ans);
    json_decref(ans);
}

/* ------------------------------------------------------------------------ */
/* Expiring funds                                                            */

static void expiring_program(web_buf *b, const json_t *p, const json_t *liab)
{
    const char *cur = currency_of(liab, web_sget(p, "program"));
    web_put(b, "<section><h2>");
    web_esc(b, web_sget(p, "program"));
    web_put(b, " · ");
    web_str_of(b, p, "period");
    web_put(b, "</h2><p>Total <span class=\"total\">");
    web_money_of(b, p, "total", cur);
    web_put(b, "</span> ");
    web_esc(b, cur);
    web_put(b, "</p><table><tr><th>Partner</th><th class=\"n\">Amount</th></tr>\n");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(p, "partners"), i, e)
    {
        web_put(b, "<tr><td>");
        partner_link(b, web_sget(e, "partner"));
        web_put(b, "</td>");
        td_money(b, e, "amount", cur);
        web_put(b, "</tr>\n");
    }
    web_put(b, "</table></section>\n");
}

void web_page_expiring(const web_req *r, web_reply *out)
{
    static const char *const filters[] = {"program"};
    if (!web_args_check(r, filters, 1, out))
        return;
    json_t *ans = web_ask(r, request(r, "expiring", filters, 1), out);
    if (!ans)
        return;
    json_t *liab = r->json ? NULL : web_ask(r, json_pack("{s:s}", "q", "liabilities"), out);
    if (r->json) {
        web_json(out, ans);
    } else if (liab) {
        web_page_open(&out->body, r, "Expiring");
        web_put(&out->body, "<h1>Expiring at the next close</h1>");
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(ans, "programs"), i, p)
            expiring_program(&out->body, p, liab);
        web_page_close(&out->body, r, ans);
    }
    json_decref(liab);
    json_decref(ans);
}

/* ------------------------------------------------------------------------ */
/* Exceptions                                                                */

static const char *const exception_filters[] = {"partner", "kind", "from_seq"};

/* 400 for a kind no exception has or a from_seq that is not a seq (the
 * CLI refuses both as usage errors). */
static bool exception_args(const web_req *r, web_reply *out, json_t **req)
{
    const char *kind = web_arg_get(r, "kind");
    const char *from = web_arg_get(r, "from_seq");
    uint64_t seq = 0;
    const char *field = NULL;
    if (kind && tly_xkind_parse(kind, strlen(kind)) == TLY_X_COUNT)
        field = "kind";
    else if (from && !tly_parse_u64(from, 0, INT64_MAX, &seq))
        field = "from_seq";
    if (field) {
        char msg[TLY_NAME_BYTES_MAX * 2 + 64];
        snprintf(msg, sizeof msg, "'%s' is not a %s", strcmp(field, "kind") ? from : kind,
                 strcmp(field, "kind") ? "seq" : "kind of exception");
        json_t *d = json_pack("{s:s}", "field", field);
        web_error(r, out, 400, "bad_field", msg, d);
        json_decref(d);
        return false;
    }
    *req = request(r, "exceptions", exception_filters, 2);
    if (*req && from)
        json_object_set_new(*req, "from_seq", json_integer((json_int_t)seq));
    return true;
}

static void exceptions_form(web_buf *b, const web_req *r)
{
    web_put(b, "<form class=\"filters\" method=\"get\" action=\"/exceptions\">"
               "<label>partner <input name=\"partner\" value=\"");
    web_esc(b, web_arg_get(r, "partner"));
    web_put(b, "\"></label><label>kind <select name=\"kind\"><option value=\"\"></option>");
    for (int k = 0; k < TLY_X_COUNT; k++) {
        const char *name = tly_xkind_name((tly_xkind)k);
        const char *sel = web_arg_get(r, "kind");
        web_printf(b, "<option%s>%s</option>", sel && !strcmp(sel, name) ? " selected" : "", name);
    }
    web_put(b, "</select></label><button>Filter</button></form>\n");
}

static void exceptions_table(web_buf *b, const web_req *r, const json_t *ans)
{
    web_put(b, "<table id=\"exceptions\"><tr><th class=\"n\">Seq</th><th>Kind</th><th>Partner"
               "</th><th>Detail</th></tr>\n");
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(ans, "exceptions"), i, x)
    {
        web_printf(b, "<tr><td class=\"n\">%lld</td>", (long long)web_iget(x, "seq"));
        td_str(b, x, "kind");
        web_put(b, "<td>");
        partner_link(b, web_sget(x, "partner"));
        web_put(b, "</td>");
        td_str(b, x, "detail");
        web_put(b, "</tr>\n");
    }
    web_put(b, "</table>\n");
    if (!json_is_integer(json_object_get(ans, "next_seq")))
        return;
    web_printf(b, "<p><a id=\"next\" href=\"/exceptions?from_seq=%lld",
               (long long)web_iget(ans, "next_seq"));
    for (size_t k = 0; k < 2; k++) {
        const char *v = web_arg_get(r, exception_filters[k]);
        if (v) {
            web_printf(b, "&amp;%s=", exception_filters[k]);
            web_url(b, v);
        }
    }
    web_put(b, "\">More</a></p>");
}

void web_page_exceptions(const web_req *r, web_reply *out)
{
    json_t *req = NULL;
    if (!web_args_check(r, exception_filters, 3, out) || !exception_args(r, out, &req))
        return;
    json_t *ans = web_ask(r, req, out);
    if (!ans)
        return;
    if (r->json) {
        web_json(out, ans);
    } else {
        web_page_open(&out->body, r, "Exceptions");
        web_put(&out->body, "<h1>Exceptions</h1>");
        exceptions_form(&out->body, r);
        exceptions_table(&out->body, r, ans);
        web_page_close(&out->body, r, ans);
    }
    json_decref(ans);
}
