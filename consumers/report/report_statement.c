/*
 * report_statement.c — a statement (tly_report.h) as blocks, in the order
 * a partner reads it: the header (partner, program, period, tier,
 * benefits), the MDF bridge from the opening to the closing balance, every
 * explain line of the period, the claims, the rebate and referral rows,
 * the next tier, what the next close expires, and the chart with its
 * figures as a table. A period without activity gets the header, the
 * balance and a sentence that says so.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "tly_query.h"

typedef char money_buf[TLY_QUERY_MONEY_CHARS];

/* ---- fields ---- */

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "-";
}

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* A money field as text; "-" when it is not an integer. */
static const char *mget(const rb_doc *d, const json_t *o, const char *k, char *buf)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? rb_money(d, (int64_t)json_integer_value(v), buf, sizeof(money_buf))
                              : "-";
}

static const char *bps_text(const json_t *o, const char *k, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        return "-";
    tly_query_format_bps((int64_t)json_integer_value(v), buf, cap);
    return buf;
}

/* A list of strings joined with ", " ("none" when empty). */
static void joined(const json_t *arr, char *buf, size_t cap)
{
    size_t i, o = 0;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        int n = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", json_string_value(v));
        if (n < 0 || (size_t)n >= cap - o)
            break;
        o += (size_t)n;
    }
    if (o == 0)
        snprintf(buf, cap, "none");
}

/* ---- header and balance ---- */

static void header(rb_doc *d, const json_t *st)
{
    const json_t *tier = json_object_get(st, "tier");
    char benefits[1024], seq[32];
    rb_add_block(d, RB_TITLE, d->title);
    rb_add_textf(d, RB_TEXT, "Statement of %s for %s (%s), as of log seq %lld. Amounts in %s.",
                 sget(st, "partner"), sget(st, "period"), sget(st, "status"),
                 (long long)iget(st, "seq"), d->currency);
    size_t t = rb_add_table(d, RB_FACTS, "ll", 1);
    rb_add_row(d, t, "Partner", sget(st, "partner"));
    if (json_is_string(json_object_get(st, "name")))
        rb_add_row(d, t, "Name", sget(st, "name"));
    rb_add_row(d, t, "Program", sget(st, "program"));
    rb_add_row(d, t, "Period", sget(st, "period"));
    rb_add_row(d, t, "Tier", sget(tier, "tier"));
    joined(json_object_get(tier, "benefits"), benefits, sizeof benefits);
    rb_add_row(d, t, "Benefits", benefits);
    rb_add_row(d, t, "Currency", d->currency);
    snprintf(seq, sizeof seq, "seq %lld", (long long)iget(st, "seq"));
    rb_add_row(d, t, "As of", seq);
}

/* The bridge: opening + accrued - clawed back + adjusted - expired -
 * claims (reserved net of releases: pending + approved + paid moved) =
 * closing, SPEC section 6's invariant over one period. */
static void balance(rb_doc *d, const json_t *st)
{
    const json_t *m = json_object_get(st, "movements");
    money_buf a, b;
    rb_add_block(d, RB_HEADING, "MDF balance");
    size_t t = rb_add_table(d, RB_FACTS, "lr", 0);
    rb_add_row(d, t, "Opening available", mget(d, st, "opening", a));
    if (json_is_true(json_object_get(st, "activity"))) {
        int64_t claims = iget(m, "pending") + iget(m, "approved") + iget(m, "paid");
        rb_add_row(d, t, "Accrued", mget(d, m, "accrued", a));
        rb_add_row(d, t, "Clawed back", rb_money(d, -iget(m, "clawed_back"), a, sizeof a));
        rb_add_row(d, t, "Adjusted", mget(d, m, "adjusted", a));
        rb_add_row(d, t, "Expired", rb_money(d, -iget(m, "expired"), a, sizeof a));
        rb_add_row(d, t, "Claimed (net of releases)", rb_money(d, -claims, b, sizeof b));
    }
    rb_add_row(d, t, "Closing available", mget(d, st, "closing", a));
    if (!json_is_true(json_object_get(st, "activity")))
        return;
    /* approvals move pending to approved, payments approved to paid */
    t = rb_add_table(d, RB_FACTS, "lr", 0);
    rb_add_row(d, t, "Claims approved in the period",
               rb_money(d, iget(m, "approved") + iget(m, "paid"), a, sizeof a));
    rb_add_row(d, t, "Claims paid in the period", mget(d, m, "paid", a));
}

/* ---- the explain lines ---- */

static const char *const kind_labels[][2] = {
    {"accrual", "MDF accrual"},
    {"clawback", "clawback"},
    {"adjust_mdf", "MDF adjustment"},
    {"credit", "bucket credit"},
    {"debit", "bucket debit"},
    {"deficit", "deficit"},
    {"deficit_payoff", "deficit paid"},
    {"reserve", "claim reserved"},
    {"release", "claim released"},
    {"release_expired", "released, expired"},
    {"approve", "claim approved"},
    {"pay", "claim paid"},
    {"expiry", "expiry"},
    {"revenue", "revenue"},
    {"adjust_rebate", "rebate adjustment"},
    {"payout", "rebate payout"},
    {"capped", "MDF cap"},
    {"referral", "referral fee"},
    {"grace", "tier grace"},
};

static const char *kind_label(const char *kind)
{
    for (size_t i = 0; i < sizeof kind_labels / sizeof kind_labels[0]; i++)
        if (strcmp(kind, kind_labels[i][0]) == 0)
            return kind_labels[i][1];
    return kind;
}

/* Appends ", label value" for a string field of l. */
static size_t extra(char *buf, size_t o, size_t cap, const json_t *l, const char *k,
                    const char *label)
{
    const char *s = json_string_value(json_object_get(l, k));
    if (s == NULL || o >= cap)
        return o;
    int n = snprintf(buf + o, cap - o, ", %s %s", label, s);
    return n < 0 ? o : o + (size_t)n;
}

/* What moved and why, from the line's fields alone (never explain's
 * human wording, which is free to change). */
static void line_detail(const rb_doc *d, const json_t *l, char *buf, size_t cap)
{
    money_buf m;
    char bps[16];
    int n = snprintf(buf, cap, "%s %s/%s", sget(l, "cause"), sget(l, "source"), sget(l, "id"));
    size_t o = n < 0 ? 0 : (size_t)n;
    o = extra(buf, o, cap, l, "sale", "of sale");
    o = extra(buf, o, cap, l, "claim", "claim");
    o = extra(buf, o, cap, l, "bucket", "bucket");
    o = extra(buf, o, cap, l, "deal", "deal");
    o = extra(buf, o, cap, l, "tier", "tier");
    if (json_is_integer(json_object_get(l, "sale_amount")) && o < cap)
        o += (size_t)snprintf(buf + o, cap - o, ", sale %s at %s", mget(d, l, "sale_amount", m),
                              bps_text(l, "bps", bps, sizeof bps));
    if (json_is_string(json_object_get(l, "rate")) && o < cap)
        o += (size_t)snprintf(buf + o, cap - o, ", %s at rate %s", sget(l, "currency"),
                              sget(l, "rate"));
    if (json_is_true(json_object_get(l, "late")) && o < cap)
        snprintf(buf + o, cap - o, ", late");
}

static void lines(rb_doc *d, const json_t *st)
{
    const json_t *ls = json_object_get(st, "lines");
    rb_add_textf(d, RB_HEADING, "Activity in %s", sget(st, "period"));
    if (!json_is_true(json_object_get(st, "activity"))) {
        rb_add_textf(d, RB_TEXT,
                     "No activity in %s: no MDF movement, claim or rebate line of %s took "
                     "effect in this period.",
                     sget(st, "period"), sget(st, "partner"));
        return;
    }
    rb_add_textf(d, RB_TEXT,
                 "Every line of 'tally explain' whose effective period is %s, in log order: "
                 "%zu lines.",
                 sget(st, "period"), json_array_size(ls));
    size_t t = rb_add_table(d, RB_TABLE, "rllr", 2);
    rb_add_row(d, t, "Seq", "Movement", "Event and detail", "Amount");
    size_t i;
    json_t *l;
    json_array_foreach(ls, i, l)
    {
        char seq[24], detail[512];
        money_buf m;
        bool count = strcmp(sget(l, "kind"), "grace") == 0; /* its amount is a count */
        snprintf(seq, sizeof seq, "%lld", (long long)iget(l, "seq"));
        line_detail(d, l, detail, sizeof detail);
        rb_add_row(d, t, seq, kind_label(sget(l, "kind")), detail,
                   count ? "-" : mget(d, l, "amount", m));
    }
}

/* ---- claims, rebates, tier, expiring ---- */

static void claims(rb_doc *d, const json_t *st)
{
    const json_t *cs = json_object_get(st, "claims");
    rb_add_block(d, RB_HEADING, "MDF claims");
    if (json_array_size(cs) == 0) {
        rb_add_block(d, RB_TEXT, "No claims.");
        return;
    }
    size_t t = rb_add_table(d, RB_TABLE, "llrrrl", 0);
    rb_add_row(d, t, "Claim", "Status", "Requested", "Approved", "Paid", "Reason");
    size_t i;
    json_t *c;
    json_array_foreach(cs, i, c)
    {
        money_buf a, b, e;
        rb_add_row(d, t, sget(c, "claim"), sget(c, "status"), mget(d, c, "requested", a),
                   mget(d, c, "approved", b), mget(d, c, "paid", e), sget(c, "reason"));
    }
}

static void rebates(rb_doc *d, const json_t *st)
{
    const json_t *rows = json_object_get(st, "rebates");
    money_buf a, b, c, e, f;
    rb_add_block(d, RB_HEADING, "Rebates and referral fees");
    if (json_array_size(rows) == 0) {
        rb_add_block(d, RB_TEXT, "No rebate periods up to this one.");
    } else {
        size_t t = rb_add_table(d, RB_TABLE, "lrrrrrlr", 0);
        rb_add_row(d, t, "Period", "Revenue", "Basis", "Rate", "Rebate", "Referral", "Status",
                   "Paid");
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r)
        {
            char bps[16];
            rb_add_row(d, t, sget(r, "period"), mget(d, r, "revenue", a), mget(d, r, "basis", b),
                       bps_text(r, "rate_bps", bps, sizeof bps), mget(d, r, "rebate", c),
                       mget(d, r, "referral", e), sget(r, "status"), mget(d, r, "paid", f));
        }
    }
    size_t t = rb_add_table(d, RB_FACTS, "lr", 0);
    rb_add_row(d, t, "Payable now (final periods)", mget(d, st, "payable", a));
    rb_add_row(d, t, "Accrued, open periods", mget(d, st, "accrued_open", a));
}

static void next_tier(rb_doc *d, const json_t *tier)
{
    const json_t *next = json_object_get(tier, "next");
    money_buf a, w;
    char text[1200], benefits[1024];
    rb_add_block(d, RB_HEADING, "Tier");
    size_t t = rb_add_table(d, RB_FACTS, "ll", 1);
    rb_add_row(d, t, "Current tier", sget(tier, "tier"));
    rb_add_row(d, t, "Revenue in the tier window", mget(d, tier, "window_revenue", w));
    snprintf(text, sizeof text, "%lld", (long long)iget(tier, "active_certs"));
    rb_add_row(d, t, "Active certifications", text);
    if (json_is_integer(json_object_get(tier, "grace_left"))) {
        snprintf(text, sizeof text, "%lld", (long long)iget(tier, "grace_left"));
        rb_add_row(d, t, "Closes of grace left", text);
    }
    if (!json_is_object(next)) {
        rb_add_row(d, t, "Next tier", "none: this is the top tier");
        return;
    }
    if (iget(next, "revenue_needed") <= 0 && iget(next, "certs_needed") <= 0)
        snprintf(text, sizeof text, "%s: qualifies at the next close", sget(next, "tier"));
    else
        snprintf(text, sizeof text, "%s: needs %s more revenue and %lld more certifications",
                 sget(next, "tier"), mget(d, next, "revenue_needed", a),
                 (long long)iget(next, "certs_needed"));
    rb_add_row(d, t, "Next tier", text);
    joined(json_object_get(next, "benefits"), benefits, sizeof benefits);
    rb_add_row(d, t, "Its benefits", benefits);
}

static void expiring(rb_doc *d, const json_t *st)
{
    const json_t *x = json_object_get(st, "expiring");
    money_buf a;
    rb_add_block(d, RB_HEADING, "Funds expiring at the next close");
    if (iget(x, "amount") == 0)
        rb_add_textf(d, RB_TEXT, "Nothing expires at the close of %s.", sget(x, "period"));
    else
        rb_add_textf(d, RB_TEXT, "%s %s of available MDF expires at the close of %s.",
                     mget(d, x, "amount", a), d->currency, sget(x, "period"));
}

/* ---- the chart ---- */

/* The chart's points: the latest TLY_STATEMENT_CHART_PERIODS_MAX of st's
 * "chart", and the one of the statement's period marked. */
static tly_err chart_points(rb_doc *d, const json_t *st)
{
    const json_t *ch = json_object_get(st, "chart");
    size_t n = json_array_size(ch);
    size_t first = n > TLY_STATEMENT_CHART_PERIODS_MAX ? n - TLY_STATEMENT_CHART_PERIODS_MAX : 0;
    d->mark = SIZE_MAX;
    if (n == first)
        return TLY_OK;
    d->points = calloc(n - first, sizeof *d->points);
    if (d->points == NULL)
        return TLY_NOMEM;
    for (size_t i = first; i < n; i++) {
        const json_t *p = json_array_get(ch, i);
        rb_point *pt = &d->points[d->npoints++];
        snprintf(pt->period, sizeof pt->period, "%s", sget(p, "period"));
        pt->available = iget(p, "available");
        pt->revenue = iget(p, "revenue");
        if (strcmp(pt->period, sget(st, "period")) == 0)
            d->mark = d->npoints - 1;
    }
    return TLY_OK;
}

static void chart(rb_doc *d)
{
    if (d->npoints == 0)
        return;
    rb_add_block(d, RB_HEADING, "Available MDF and cumulative revenue by period");
    rb_add_block(d, RB_CHART, NULL);
    size_t t = rb_add_table(d, RB_TABLE, "lrr", 0);
    rb_add_row(d, t, "Period", "Available MDF", "Cumulative revenue");
    for (size_t i = 0; i < d->npoints; i++) {
        money_buf a, r;
        rb_add_row(d, t, d->points[i].period, rb_money(d, d->points[i].available, a, sizeof a),
                   rb_money(d, d->points[i].revenue, r, sizeof r));
    }
}

/* ---- the document ---- */

/* The fields every statement has, and their JSON types. */
static const struct {
    const char *key;
    int type;
} required[] = {
    {"partner", JSON_STRING},  {"program", JSON_STRING},  {"currency", JSON_STRING},
    {"period", JSON_STRING},   {"status", JSON_STRING},   {"seq", JSON_INTEGER},
    {"opening", JSON_INTEGER}, {"closing", JSON_INTEGER}, {"movements", JSON_OBJECT},
    {"lines", JSON_ARRAY},     {"claims", JSON_ARRAY},    {"rebates", JSON_ARRAY},
    {"tier", JSON_OBJECT},     {"expiring", JSON_OBJECT}, {"chart", JSON_ARRAY},
};

static tly_err check_fields(const json_t *st, char *msg, size_t cap)
{
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const json_t *v = json_object_get(st, required[i].key);
        if (v == NULL || (int)json_typeof(v) != required[i].type) {
            snprintf(msg, cap, "the statement's '%s' is missing or of the wrong type",
                     required[i].key);
            return TLY_BAD_FIELD;
        }
    }
    return TLY_OK;
}

tly_err rb_doc_build(rb_doc *d, const void *statement, char *msg, size_t cap)
{
    const json_t *st = statement;
    tly_err err = check_fields(st, msg, cap);
    if (err != TLY_OK)
        return err;
    snprintf(d->currency, sizeof d->currency, "%s", sget(st, "currency"));
    d->exp = tly_query_currency_exponent(d->currency);
    snprintf(d->title, sizeof d->title, "Partner statement %s, %s", sget(st, "partner"),
             sget(st, "period"));
    if ((err = chart_points(d, st)) != TLY_OK)
        return err;
    header(d, st);
    balance(d, st);
    /* A quiet period still gets the whole statement (SPEC section 11): its
     * claims, tier and the funds the next close expires are as of the seq,
     * and a partner with no activity is the one most in need of them. */
    lines(d, st);
    claims(d, st);
    rebates(d, st);
    next_tier(d, json_object_get(st, "tier"));
    expiring(d, st);
    chart(d);
    return d->nomem ? TLY_NOMEM : TLY_OK;
}
