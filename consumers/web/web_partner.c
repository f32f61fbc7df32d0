/*
 * web_partner.c — a partner's page: the section 8 answers (balance with its
 * buckets, claims, rebate and referral rows, tier with benefits and what
 * the next tier needs), the chart, the explain lines with their seqs
 * (folded from DATA/log as `tally explain` folds them) and the links to
 * the partner's statement. ?format=json: {"partner","balance","rebate",
 * "tier","claims","explain"} — the service's four objects as it answers
 * them and the explain report (null when the log cannot be read).
 */
#include <stdio.h>
#include <string.h>

#include "tly_audit.h"
#include "tly_engine.h"
#include "tly_explain.h"
#include "web_internal.h"

/* The four partner queries of section 8, in the page's order. */
static const char *const partner_queries[] = {"balance", "rebate", "tier", "claims"};
#define PARTNER_QUERIES 4u

/* The explain report of partner as of DATA/log's head, or NULL with why in
 * msg (a log that cannot be read: the page still shows the views). */
static json_t *explain_of(const web_req *r, const char *partner, char *msg, size_t cap)
{
    tly_engine *e = NULL;
    tly_explain *x = NULL;
    json_t *rep = NULL;
    bool matches = false;
    tly_err err = tly_engine_new(0, 1, &e);
    if (err == TLY_OK)
        err = tly_explain_new(e, partner, &x);
    if (err == TLY_OK)
        err = tly_audit_explain_fold(r->cfg->data, UINT64_MAX, e, x, msg, cap);
    if (err == TLY_OK)
        err = tly_explain_report(x, NULL, &rep, &matches);
    if (err != TLY_OK && !msg[0])
        snprintf(msg, cap, "%s", tly_strerror(err));
    tly_explain_free(x);
    tly_engine_free(e);
    return err == TLY_OK ? rep : NULL;
}

/* The row of partner in a partners answer (name, kind, region), or NULL. */
static json_t *row_of(const json_t *list, const char *partner)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(list, "partners"), i,
                       p) if (strcmp(web_sget(p, "partner"), partner) == 0) return p;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Sections                                                                  */

static void kv_money(web_buf *b, const char *label, const char *id, const json_t *o,
                     const char *key, const char *cur)
{
    web_printf(b, "<tr><th>%s</th><td class=\"n\" id=\"%s\">", label, id);
    web_money_of(b, o, key, cur);
    web_put(b, "</td></tr>");
}

static void balance_section(web_buf *b, const json_t *bal, const char *cur)
{
    static const char *const keys[] = {"accrued",  "clawed_back", "adjusted", "expired",  "pending",
                                       "approved", "paid",        "deficit",  "available"};
    static const char *const labels[] = {"Accrued",     "Clawed back",    "Adjusted",
                                         "Expired",     "Pending claims", "Approved, unpaid",
                                         "Paid claims", "Deficit",        "Available"};
    web_put(b, "<section><h2>MDF balance</h2><table class=\"kv\" id=\"balance\">");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "balance-%s", keys[i]);
        kv_money(b, labels[i], id, bal, keys[i], cur);
    }
    web_put(b, "</table><h3>Buckets</h3><table id=\"buckets\"><tr><th>Period</th>"
               "<th class=\"n\">Remaining</th><th>Expires after</th></tr>\n");
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(bal, "buckets"), i, k)
    {
        web_put(b, "<tr><td>");
        web_str_of(b, k, "period");
        web_put(b, "</td><td class=\"n\">");
        web_money_of(b, k, "remaining", cur);
        web_put(b, "</td><td>");
        web_str_of(b, k, "expires_after");
        web_put(b, "</td></tr>\n");
    }
    web_put(b, "</table></section>\n");
}

static void claims_section(web_buf *b, const json_t *claims, const char *cur)
{
    web_put(b, "<section><h2>Claims</h2><table id=\"claims\"><tr><th>Claim</th><th>Status</th>"
               "<th class=\"n\">Requested</th><th class=\"n\">Approved</th><th class=\"n\">Paid"
               "</th><th>Reason</th></tr>\n");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(claims, "claims"), i, c)
    {
        web_put(b, "<tr><td>");
        web_str_of(b, c, "claim");
        web_put(b, "</td><td>");
        web_str_of(b, c, "status");
        static const char *const keys[] = {"requested", "approved", "paid"};
        for (int k = 0; k < 3; k++) {
            web_put(b, "</td><td class=\"n\">");
            web_money_of(b, c, keys[k], cur);
        }
        web_put(b, "</td><td>");
        web_str_of(b, c, "reason");
        web_put(b, "</td></tr>\n");
    }
    web_put(b, "</table></section>\n");
}

static void rebate_row(web_buf *b, const json_t *p, const char *cur)
{
    static const char *const keys[] = {"revenue", "basis",    "baseline", "rate_bps",
                                       "rebate",  "referral", "paid"};
    web_put(b, "<tr><td>");
    web_str_of(b, p, "period");
    web_put(b, "</td><td>");
    web_str_of(b, p, "status");
    web_put(b, "</td>");
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        web_put(b, "<td class=\"n\">");
        if (strcmp(keys[k], "rate_bps") == 0)
            web_printf(b, "%lld.%02lld%%", (long long)(web_iget(p, keys[k]) / 100),
                       (long long)(web_iget(p, keys[k]) % 100));
        else
            web_money_of(b, p, keys[k], cur);
        web_put(b, "</td>");
    }
    web_put(b, "</tr>\n");
}

static void rebate_section(web_buf *b, const json_t *reb, const char *cur)
{
    web_put(b, "<section><h2>Rebates and referrals</h2><table class=\"kv\">");
    kv_money(b, "Payable", "rebate-payable", reb, "payable", cur);
    kv_money(b, "Accrued, open periods", "rebate-accrued-open", reb, "accrued_open", cur);
    web_put(b, "</table><table id=\"rebate\"><tr><th>Period</th><th>Status</th>"
               "<th class=\"n\">Revenue</th><th class=\"n\">Basis</th><th class=\"n\">Baseline"
               "</th><th class=\"n\">Rate</th><th class=\"n\">Rebate</th><th class=\"n\">Referral"
               "</th><th class=\"n\">Paid</th></tr>\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(reb, "periods"), i, p) rebate_row(b, p, cur);
    web_put(b, "</table></section>\n");
}

static void benefits(web_buf *b, const json_t *list)
{
    web_put(b, "<ul>");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        web_put(b, "<li>");
        web_esc(b, json_string_value(v));
        web_put(b, "</li>");
    }
    web_put(b, "</ul>");
}

static void tier_next(web_buf *b, const json_t *next, const char *cur)
{
    if (!json_is_object(next)) {
        web_put(b, "<p id=\"tier-next\">The top tier: no next tier.</p>");
        return;
    }
    web_put(b, "<h3>Next tier: ");
    web_str_of(b, next, "tier");
    web_put(b, "</h3><table class=\"kv\" id=\"tier-next\">");
    kv_money(b, "Revenue needed", "tier-revenue-needed", next, "revenue_needed", cur);
    web_printf(b, "<tr><th>Certifications needed</th><td class=\"n\">%lld</td></tr></table>",
               (long long)web_iget(next, "certs_needed"));
    web_put(b, "<p>Its benefits:</p>");
    benefits(b, json_object_get(next, "benefits"));
}

static void tier_section(web_buf *b, const json_t *t, const char *cur)
{
    web_put(b, "<section><h2>Tier <span id=\"tier\">");
    web_str_of(b, t, "tier");
    web_put(b, "</span></h2><table class=\"kv\">");
    kv_money(b, "Window revenue", "tier-window-revenue", t, "window_revenue", cur);
    web_printf(b, "<tr><th>Active certifications</th><td class=\"n\">%lld</td></tr>",
               (long long)web_iget(t, "active_certs"));
    if (json_is_integer(json_object_get(t, "grace_left")))
        web_printf(b, "<tr><th>Grace periods left</th><td class=\"n\">%lld</td></tr>",
                   (long long)web_iget(t, "grace_left"));
    web_put(b, "</table><p>Benefits:</p>");
    benefits(b, json_object_get(t, "benefits"));
    tier_next(b, json_object_get(t, "next"), cur);
    web_put(b, "<h3>History</h3><table><tr><th class=\"n\">Seq</th><th>Period</th><th>From</th>"
               "<th>To</th></tr>");
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(t, "history"), i, h)
    {
        web_printf(b, "<tr><td class=\"n\">%lld</td><td>", (long long)web_iget(h, "seq"));
        web_str_of(b, h, "period");
        web_put(b, "</td><td>");
        web_str_of(b, h, "from");
        web_put(b, "</td><td>");
        web_str_of(b, h, "to");
        web_put(b, "</td></tr>");
    }
    web_put(b, "</table></section>\n");
}

/* ------------------------------------------------------------------------ */
/* Explain lines                                                             */

/* One line: seq, period, kind, amount, its event and what it names. */
static void explain_line(web_buf *b, const json_t *l, const char *cur)
{
    web_printf(b, "<tr><td class=\"n\">%lld</td><td>", (long long)web_iget(l, "seq"));
    web_str_of(b, l, "period");
    web_put(b, "</td><td>");
    web_str_of(b, l, "kind");
    web_put(b, "</td><td class=\"n\">");
    web_money_of(b, l, "amount", cur);
    web_put(b, "</td><td>");
    web_esc(b, web_sget(l, "source"));
    web_put(b, "/");
    web_esc(b, web_sget(l, "id"));
    static const char *const names[] = {"claim", "bucket", "sale", "tier"};
    for (int k = 0; k < 4; k++) {
        if (!json_is_string(json_object_get(l, names[k])))
            continue;
        web_printf(b, " · %s ", names[k]);
        web_esc(b, web_sget(l, names[k]));
    }
    web_put(b, "</td></tr>\n");
}

/* Appends lines up to the page's bound; false once it is reached. */
static bool explain_lines(web_buf *b, const json_t *lines, const char *cur, size_t *shown)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (*shown >= TLY_WEB_EXPLAIN_LINES_MAX)
            return false;
        explain_line(b, l, cur);
        (*shown)++;
    }
    return true;
}

static void explain_section(web_buf *b, const json_t *rep, const char *why, const char *cur)
{
    web_put(b, "<section><h2>Explain</h2>");
    if (!rep) {
        web_put(b, "<p class=\"muted\">The lines are not available: ");
        web_esc(b, why);
        web_put(b, "</p></section>\n");
        return;
    }
    web_printf(b, "<p>Every figure traced to its event, as of log seq %lld.</p>",
               (long long)web_iget(rep, "seq"));
    web_put(b, "<table id=\"explain\"><tr><th class=\"n\">Seq</th><th>Period</th><th>Kind</th>"
               "<th class=\"n\">Amount</th><th>Event</th></tr>\n");
    size_t shown = 0;
    bool all = explain_lines(b, json_object_get(json_object_get(rep, "mdf"), "lines"), cur, &shown);
    static const char *const groups[] = {"revenue_lines", "adjustments", "payouts"};
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(json_object_get(rep, "rebates"), "periods"), i, p)
    {
        for (int g = 0; all && g < 3; g++)
            all = explain_lines(b, json_object_get(p, groups[g]), cur, &shown);
    }
    web_put(b, "</table>");
    if (!all)
        web_printf(b, "<p class=\"muted\">The first %u lines; ?format=json has them all.</p>",
                   TLY_WEB_EXPLAIN_LINES_MAX);
    web_put(b, "</section>\n");
}

/* ------------------------------------------------------------------------ */
/* The page                                                                  */

static void heading(web_buf *b, const char *id, const json_t *row, const json_t *bal)
{
    web_put(b, "<h1>");
    web_esc(b, id);
    web_put(b, "</h1><p><span id=\"name\">");
    web_esc(b, row ? web_sget(row, "name") : "");
    web_put(b, "</span> · program ");
    web_str_of(b, bal, "program");
    web_put(b, " · kind ");
    web_esc(b, row ? web_sget(row, "kind") : "–");
    web_put(b, " · region ");
    web_esc(b, row ? web_sget(row, "region") : "–");
    web_put(b, " · currency ");
    web_str_of(b, bal, "currency");
    web_put(b, "</p><p>Statement: <a id=\"statement-html\" href=\"/partners/");
    web_url(b, id);
    web_put(b, "/statement.html\">HTML</a> · <a id=\"statement-pdf\" href=\"/partners/");
    web_url(b, id);
    web_put(b, "/statement.pdf\">PDF</a></p>\n");
}

static void render(web_buf *b, const web_req *r, const char *id, json_t *const ans[],
                   const json_t *row, const json_t *rep, const char *why)
{
    const char *cur = web_sget(ans[0], "currency");
    web_page_open(b, r, id);
    heading(b, id, row, ans[0]);
    web_put(b, "<section><h2>Available MDF and cumulative revenue</h2>");
    web_chart(b, ans[1], rep, cur);
    web_put(b, "</section>\n");
    balance_section(b, ans[0], cur);
    claims_section(b, ans[3], cur);
    rebate_section(b, ans[1], cur);
    tier_section(b, ans[2], cur);
    explain_section(b, rep, why, cur);
    web_page_close(b, r, ans[0]);
}

/* The page as JSON: the four answers and the explain report. */
static void render_json(web_reply *out, const char *id, json_t *const ans[], json_t *rep)
{
    json_t *o = json_pack("{s:s}", "partner", id);
    for (size_t q = 0; o && q < PARTNER_QUERIES; q++)
        json_object_set(o, partner_queries[q], ans[q]);
    if (o)
        json_object_set(o, "explain", rep ? rep : json_null());
    if (o)
        web_json(out, o);
    else
        out->body.failed = true;
    json_decref(o);
}

void web_page_partner(const web_req *r, const char *id, web_reply *out)
{
    if (!web_args_check(r, NULL, 0, out))
        return;
    json_t *ans[PARTNER_QUERIES] = {0};
    bool ok = true;
    for (size_t q = 0; ok && q < PARTNER_QUERIES; q++) {
        ans[q] = web_ask(r, json_pack("{s:s, s:s}", "q", partner_queries[q], "partner", id), out);
        ok = ans[q] != NULL;
    }
    json_t *list = ok && !r->json
                       ? web_ask(r, json_pack("{s:s, s:s}", "q", "partners", "search", id), out)
                       : NULL;
    char why[TLY_AUDIT_ERROR_BYTES] = "";
    json_t *rep = ok && (r->json || list) ? explain_of(r, id, why, sizeof why) : NULL;
    if (ok && r->json)
        render_json(out, id, ans, rep);
    else if (ok && list)
        render(&out->body, r, id, ans, row_of(list, id), rep, why);
    json_decref(rep);
    json_decref(list);
    for (size_t q = 0; q < PARTNER_QUERIES; q++)
        json_decref(ans[q]);
}
