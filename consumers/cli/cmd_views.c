/*
 * cmd_views.c — the finance queries: `tally balance | rebate | tier | claims
 * PARTNER`, `tally liabilities`, `tally exceptions` (SPEC sections 7, 8).
 *
 * Each command sends one request to the query service (--query) or, with
 * --views DIR, answers it directly from the shard stores DIR/K-of-N through
 * the same code the service runs (tly_query.c). --json prints the section 8
 * object on one line, keys in SPEC order; otherwise a table for people:
 * money as decimal amounts of the currency (minor units / 10^exponent,
 * integer arithmetic), columns aligned, bold headings only on a terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_asof.h"
#include "cli_fields.h"
#include "cli_table.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_limits.h"
#include "tly_money.h"
#include "tly_query.h"
#include "tly_xkind.h"

typedef struct view_opts {
    tly_common_opts common;
    const char *views;            /* --views DIR: answer from the stores, no service */
    uint32_t shards;              /* --shards N with --views */
    const char *partner;          /* PARTNER, or --partner for exceptions */
    const char *kind;             /* --kind for exceptions */
    uint64_t from_seq;            /* --from-seq for exceptions */
    const char *curve_server_key; /* --curve-server-key: the service's key */
    const char *curve_secret;     /* --curve-secret: this client's key file */
    const char *as_of;            /* --as-of-close PERIOD */
    const char *program;          /* --program P with --as-of-close */
} view_opts;

/* Where answers come from during one command: the service or a store. */
typedef struct source {
    const char *cmd;
    const view_opts *o;
    tly_query_store *store; /* non-NULL with --views */
} source;

/* ------------------------------------------------------------------------ */
/* Field formatting                                                          */

static const char *int_of(const json_t *o, const char *key, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    return buf;
}

/* The heading block: label/value pairs, values aligned. */
static void print_head(const json_t *reply, const char *partner, const char *currency)
{
    cli_table t;
    cli_table_init(&t, "ll");
    char seq[32];
    if (partner)
        cli_table_row(&t, "Partner", partner);
    if (currency)
        cli_table_row(&t, "Currency", currency);
    snprintf(seq, sizeof seq, "seq %s", int_of(reply, "seq", (char[24]){0}, 24));
    cli_table_row(&t, "As of", seq);
    cli_table_print(&t, false);
}

/* [D8] A cross-shard answer whose shards were at different positions. */
static void print_differ_note(const json_t *reply)
{
    if (!json_is_true(json_object_get(reply, "shards_differ")))
        return;
    char seq[24];
    printf("\nNote: the shards had applied different log positions; figures reflect at least\n"
           "seq %s. Run 'tally wait --seq N' first for an answer as of one position.\n",
           int_of(reply, "seq", seq, sizeof seq));
}

/* ------------------------------------------------------------------------ */
/* Human output per query                                                    */

typedef struct money_ctx {
    const char *currency; /* NULL when unknown */
    int exp;
} money_ctx;

static void print_balance(const json_t *r, const money_ctx *m)
{
    cli_table t;
    cli_table_init(&t, "ll");
    cli_table_row(&t, "Partner", cli_str_of(r, "partner", "-"));
    cli_table_row(&t, "Program", cli_str_of(r, "program", "-"));
    cli_table_row(&t, "Tier", cli_str_of(r, "tier", "-"));
    cli_table_row(&t, "Currency", cli_str_of(r, "currency", "-"));
    char seq[48], num[24];
    snprintf(seq, sizeof seq, "seq %s", int_of(r, "seq", num, sizeof num));
    cli_table_row(&t, "As of", seq);
    cli_table_print(&t, false);
    static const char *const keys[] = {"accrued",  "clawed_back", "adjusted", "expired",  "pending",
                                       "approved", "paid",        "deficit",  "available"};
    static const char *const labels[] = {"Accrued",     "Clawed back",    "Adjusted",
                                         "Expired",     "Pending claims", "Approved, unpaid",
                                         "Paid claims", "Deficit",        "Available"};
    cli_table_init(&t, "lr");
    cli_table_row(&t, "MDF", "Amount");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char b[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, labels[i], cli_money_of(r, keys[i], m->exp, b, sizeof b));
    }
    printf("\n");
    cli_table_print(&t, true);
    json_t *buckets = json_object_get(r, "buckets");
    printf("\n");
    if (json_array_size(buckets) == 0) {
        printf("No live MDF buckets.\n");
        return;
    }
    cli_table_init(&t, "lrl");
    cli_table_row(&t, "Bucket", "Remaining", "Expires after");
    size_t i;
    json_t *b;
    json_array_foreach(buckets, i, b)
    {
        char a[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, cli_str_of(b, "period", "-"),
                      cli_money_of(b, "remaining", m->exp, a, sizeof a),
                      cli_str_of(b, "expires_after", "-"));
    }
    cli_table_print(&t, true);
}

/* What the basis of a period's figure is, in words: net revenue
 * (floored at 0), or its growth over the baseline [R11]. */
static void baseline_text(const json_t *p, const money_ctx *m, char *out, size_t cap)
{
    char b[TLY_QUERY_MONEY_CHARS];
    if (json_is_integer(json_object_get(p, "baseline")))
        snprintf(out, cap, "growth over baseline %s",
                 cli_money_of(p, "baseline", m->exp, b, sizeof b));
    else
        snprintf(out, cap, "net revenue");
}

/* The rate reached, and beside it the effective rate (the figure over the
 * basis, in hundredths of a percent, rounded half to even) when they
 * differ: an incremental rebate's slices, a cap or an adjustment. */
static void rate_text(const json_t *p, int64_t bps, char *out, size_t cap)
{
    char top[16], eff[16];
    tly_query_format_bps(bps, top, sizeof top);
    json_int_t basis = json_integer_value(json_object_get(p, "basis"));
    json_int_t rebate = json_integer_value(json_object_get(p, "rebate"));
    /* rebate ≤ basis × 10000 bps, so rebate × 10000 fits int64 for any
     * amount under 9.2e14; a larger one shows the reached rate alone */
    if (basis <= 0 || rebate < 0 || rebate > INT64_MAX / 10000) {
        snprintf(out, cap, "%s", top);
        return;
    }
    int64_t e = tly_round_half_even((int64_t)rebate * 10000, (int64_t)basis);
    if (e == bps) {
        snprintf(out, cap, "%s", top);
        return;
    }
    tly_query_format_bps(e, eff, sizeof eff);
    snprintf(out, cap, "%s (eff. %s)", top, eff);
}

/* One rebate period: revenue, basis, rate, figure, referral fees [Q3]. */
static void rebate_row(cli_table *t, const json_t *p, const money_ctx *m)
{
    char rev[TLY_QUERY_MONEY_CHARS], x[TLY_QUERY_MONEY_CHARS], reb[TLY_QUERY_MONEY_CHARS],
        ref[TLY_QUERY_MONEY_CHARS], paid[TLY_QUERY_MONEY_CHARS], rate[48] = "-",
                                                                 base[TLY_QUERY_MONEY_CHARS + 32];
    json_t *bps = json_object_get(p, "rate_bps");
    if (json_is_integer(bps))
        rate_text(p, (int64_t)json_integer_value(bps), rate, sizeof rate);
    baseline_text(p, m, base, sizeof base);
    cli_table_row(t, cli_str_of(p, "period", "-"),
                  cli_money_of(p, "revenue", m->exp, rev, sizeof rev),
                  cli_money_of(p, "basis", m->exp, x, sizeof x), base, rate,
                  cli_money_of(p, "rebate", m->exp, reb, sizeof reb),
                  cli_money_of(p, "referral", m->exp, ref, sizeof ref),
                  cli_str_of(p, "status", "-"), cli_money_of(p, "paid", m->exp, paid, sizeof paid));
}

static void print_rebate(const json_t *r, const money_ctx *m)
{
    print_head(r, cli_str_of(r, "partner", "-"), m->currency);
    printf("\n");
    json_t *periods = json_object_get(r, "periods");
    cli_table t;
    if (json_array_size(periods) == 0) {
        printf("No rebate periods yet.\n");
    } else {
        cli_table_init(&t, "lrrlrrrlr");
        cli_table_row(&t, "Period", "Net revenue", "Basis", "Baseline", "Rate", "Rebate",
                      "Referral fees", "Status", "Paid");
        size_t i;
        json_t *p;
        json_array_foreach(periods, i, p) rebate_row(&t, p, m);
        cli_table_print(&t, true);
    }
    char a[TLY_QUERY_MONEY_CHARS], b[TLY_QUERY_MONEY_CHARS];
    cli_table_init(&t, "lr");
    cli_table_row(&t, "Payable (final periods, rebate and referral fees, unpaid)",
                  cli_money_of(r, "payable", m->exp, a, sizeof a));
    cli_table_row(&t, "Accrued in open periods (rebate and referral fees)",
                  cli_money_of(r, "accrued_open", m->exp, b, sizeof b));
    printf("\n");
    cli_table_print(&t, false);
}

/* A tier's benefits, comma separated; "none" without any. */
static void benefits_text(const json_t *o, char *out, size_t cap)
{
    const json_t *list = json_object_get(o, "benefits");
    size_t i, n = 0;
    json_t *b;
    out[0] = '\0';
    json_array_foreach(list, i, b)
    {
        const char *s = json_string_value(b);
        int w = snprintf(out + n, cap - n, "%s%s", i ? ", " : "", s ? s : "?");
        if (w < 0 || (size_t)w >= cap - n)
            break; /* cut at the buffer: a table cell, not data */
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(out, cap, "none");
}

/* "kept Gold by grace: 1 more failing close" while a grace is in use;
 * false when none is [T9]. */
static bool grace_text(const json_t *r, char *out, size_t cap)
{
    const json_t *left = json_object_get(r, "grace_left");
    if (!json_is_integer(left))
        return false;
    long long n = (long long)json_integer_value(left);
    if (n <= 0)
        snprintf(out, cap, "kept %s by grace: no more failing closes", cli_str_of(r, "tier", "-"));
    else
        snprintf(out, cap, "kept %s by grace: %lld more failing close%s",
                 cli_str_of(r, "tier", "-"), n, n == 1 ? "" : "s");
    return true;
}

static void next_text(const json_t *next, const money_ctx *m, char *out, size_t cap)
{
    if (!json_is_object(next)) {
        snprintf(out, cap, "none (top tier)");
        return;
    }
    char rev[TLY_QUERY_MONEY_CHARS], certs[24];
    json_int_t need_rev = json_integer_value(json_object_get(next, "revenue_needed"));
    json_int_t need_certs = json_integer_value(json_object_get(next, "certs_needed"));
    const char *tier = cli_str_of(next, "tier", "-");
    cli_money_of(next, "revenue_needed", m->exp, rev, sizeof rev);
    int_of(next, "certs_needed", certs, sizeof certs);
    if (need_rev == 0 && need_certs == 0)
        snprintf(out, cap, "qualifies for %s at the next close", tier);
    else if (need_certs == 0)
        snprintf(out, cap, "%s: needs %s more revenue", tier, rev);
    else if (need_rev == 0)
        snprintf(out, cap, "%s: needs %s more certification%s", tier, certs,
                 need_certs == 1 ? "" : "s");
    else
        snprintf(out, cap, "%s: needs %s more revenue and %s more certifications", tier, rev,
                 certs);
}

static void print_tier(const json_t *r, const money_ctx *m)
{
    cli_table t;
    cli_table_init(&t, "ll");
    char rev[TLY_QUERY_MONEY_CHARS], certs[24], next[512], seq[48], num[24];
    char benefits[1024], grace[256];
    cli_table_row(&t, "Partner", cli_str_of(r, "partner", "-"));
    cli_table_row(&t, "Tier", cli_str_of(r, "tier", "-"));
    benefits_text(r, benefits, sizeof benefits);
    cli_table_row(&t, "Benefits", benefits);
    if (grace_text(r, grace, sizeof grace))
        cli_table_row(&t, "Grace", grace);
    cli_table_row(&t, "Currency", m->currency ? m->currency : "-");
    cli_table_row(&t, "Window revenue", cli_money_of(r, "window_revenue", m->exp, rev, sizeof rev));
    cli_table_row(&t, "Active certs", int_of(r, "active_certs", certs, sizeof certs));
    next_text(json_object_get(r, "next"), m, next, sizeof next);
    cli_table_row(&t, "Next tier", next);
    if (json_is_object(json_object_get(r, "next"))) {
        benefits_text(json_object_get(r, "next"), benefits, sizeof benefits);
        cli_table_row(&t, "Next benefits", benefits);
    }
    snprintf(seq, sizeof seq, "seq %s", int_of(r, "seq", num, sizeof num));
    cli_table_row(&t, "As of", seq);
    cli_table_print(&t, false);
    json_t *hist = json_object_get(r, "history");
    printf("\n");
    if (json_array_size(hist) == 0) {
        printf("No tier changes yet.\n");
        return;
    }
    cli_table_init(&t, "rlll");
    cli_table_row(&t, "Seq", "Closed period", "From", "To");
    size_t i;
    json_t *h;
    json_array_foreach(hist, i, h)
    {
        char s[24];
        cli_table_row(&t, int_of(h, "seq", s, sizeof s), cli_str_of(h, "period", "-"),
                      cli_str_of(h, "from", "-"), cli_str_of(h, "to", "-"));
    }
    cli_table_print(&t, true);
}

static void print_claims(const json_t *r, const money_ctx *m)
{
    print_head(r, cli_str_of(r, "partner", "-"), m->currency);
    printf("\n");
    json_t *claims = json_object_get(r, "claims");
    if (json_array_size(claims) == 0) {
        printf("No claims.\n");
        return;
    }
    cli_table t;
    cli_table_init(&t, "llrrrl");
    cli_table_row(&t, "Claim", "Status", "Requested", "Approved", "Paid", "Reason");
    size_t i;
    json_t *c;
    json_array_foreach(claims, i, c)
    {
        char a[TLY_QUERY_MONEY_CHARS], b[TLY_QUERY_MONEY_CHARS], d[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, cli_str_of(c, "claim", "-"), cli_str_of(c, "status", "-"),
                      cli_money_of(c, "requested", m->exp, a, sizeof a),
                      cli_money_of(c, "approved", m->exp, b, sizeof b),
                      cli_money_of(c, "paid", m->exp, d, sizeof d), cli_str_of(c, "reason", ""));
    }
    cli_table_print(&t, true);
}

static void print_liabilities(const json_t *r, const money_ctx *unused)
{
    (void)unused;
    print_head(r, NULL, NULL);
    printf("\n");
    json_t *progs = json_object_get(r, "programs");
    if (json_array_size(progs) == 0) {
        printf("No programs yet.\n");
    } else {
        static const char *const keys[] = {"mdf_available", "mdf_pending", "mdf_approved",
                                           "rebate_accrued_open", "rebate_payable"};
        cli_table t;
        cli_table_init(&t, "llrrrrr");
        cli_table_row(&t, "Program", "Currency", "MDF available", "MDF pending", "MDF approved",
                      "Rebate accrued (open)", "Rebate payable");
        size_t i;
        json_t *p;
        json_array_foreach(progs, i, p)
        {
            int exp = tly_query_currency_exponent(cli_str_of(p, "currency", NULL));
            char v[5][TLY_QUERY_MONEY_CHARS];
            for (int k = 0; k < 5; k++)
                cli_money_of(p, keys[k], exp, v[k], sizeof v[k]);
            cli_table_row(&t, cli_str_of(p, "program", "-"), cli_str_of(p, "currency", "-"),
                          json_is_integer(json_object_get(p, keys[0])) ? v[0] : "-",
                          json_is_integer(json_object_get(p, keys[1])) ? v[1] : "-",
                          json_is_integer(json_object_get(p, keys[2])) ? v[2] : "-",
                          json_is_integer(json_object_get(p, keys[3])) ? v[3] : "-",
                          json_is_integer(json_object_get(p, keys[4])) ? v[4] : "-");
        }
        cli_table_print(&t, true);
    }
    print_differ_note(r);
}

static void print_exceptions(const json_t *r, const money_ctx *unused)
{
    (void)unused;
    print_head(r, NULL, NULL);
    printf("\n");
    json_t *xs = json_object_get(r, "exceptions");
    size_t count = json_array_size(xs);
    if (count == 0) {
        printf("No exceptions.\n");
    } else {
        cli_table t;
        cli_table_init(&t, "rlll");
        cli_table_row(&t, "Seq", "Kind", "Partner", "Detail");
        size_t i;
        json_t *x;
        json_array_foreach(xs, i, x)
        {
            char s[24];
            cli_table_row(&t, int_of(x, "seq", s, sizeof s), cli_str_of(x, "kind", "-"),
                          cli_str_of(x, "partner", "-"), cli_str_of(x, "detail", ""));
        }
        cli_table_print(&t, true);
        printf("\n%zu exception%s\n", count, count == 1 ? "" : "s");
    }
    print_differ_note(r);
}

/* ------------------------------------------------------------------------ */
/* Fetching                                                                  */

/* Sends req to the service or answers it from the store. On success
 * *reply holds the answer (never an error object). Otherwise prints one line
 * on stderr and returns the exit code. */
static int fetch(const source *src, json_t *req, json_t **reply)
{
    json_t *r = NULL;
    tly_err err = src->store ? tly_query_answer(src->store, req, &r)
                             : tly_query_call(src->o->common.query, req, TLY_QUERY_TIMEOUT_MS, &r);
    if (err == TLY_TIMEOUT || err == TLY_IO)
        return tly_cli_unreachable(src->cmd, &src->o->common);
    if (err == TLY_USAGE)
        return tly_usagef(src->cmd, "bad query endpoint '%s'", src->o->common.query);
    if (err != TLY_OK) {
        tly_errorf(src->cmd, "query failed: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    const char *code = json_string_value(json_object_get(r, "error"));
    if (code) {
        /* A refusal names itself, so a script can tell it from a failure. */
        bool refused = strcmp(code, tly_err_name(TLY_FORBIDDEN)) == 0;
        tly_errorf(src->cmd, "%s%s", refused ? "forbidden: " : "", cli_str_of(r, "message", code));
        json_decref(r);
        return TLY_EXIT_FAIL;
    }
    *reply = r;
    return TLY_EXIT_OK;
}

/* The partner's currency, for the tables of views that do not carry it. */
static void partner_money(const source *src, const char *partner, char *cur, size_t cap,
                          money_ctx *m)
{
    m->currency = NULL;
    m->exp = 2;
    json_t *req = json_pack("{s:s, s:s}", "q", "balance", "partner", partner);
    json_t *bal = NULL;
    tly_err err = !req ? TLY_NOMEM
                  : src->store
                      ? tly_query_answer(src->store, req, &bal)
                      : tly_query_call(src->o->common.query, req, TLY_QUERY_TIMEOUT_MS, &bal);
    const char *c = err == TLY_OK ? json_string_value(json_object_get(bal, "currency")) : NULL;
    if (c) {
        snprintf(cur, cap, "%s", c);
        m->currency = cur;
        m->exp = tly_query_currency_exponent(cur);
    }
    json_decref(bal);
    json_decref(req);
}

/* Appends the page's exceptions to all and folds its seq and flags in. */
static void merge_page(json_t *all, json_t *page)
{
    json_array_extend(json_object_get(all, "exceptions"), json_object_get(page, "exceptions"));
    json_t *s_all = json_object_get(all, "seq"), *s_page = json_object_get(page, "seq");
    if (json_integer_value(s_page) < json_integer_value(s_all))
        json_object_set(all, "seq", s_page);
    if (json_is_true(json_object_get(page, "shards_differ")))
        json_object_set_new(all, "shards_differ", json_true());
}

/* [D16] The complete list: follows "next_seq" cursors page by page. */
static int fetch_exceptions(const source *src, json_t *req, json_t **reply)
{
    json_t *all = NULL;
    for (uint32_t page = 0; page < TLY_QUERY_EXCEPTIONS_PAGES_MAX; page++) {
        json_t *r = NULL;
        int rc = fetch(src, req, &r);
        if (rc != TLY_EXIT_OK) {
            json_decref(all);
            return rc;
        }
        json_t *next = json_incref(json_object_get(r, "next_seq"));
        json_object_del(r, "next_seq");
        if (!all)
            all = r;
        else {
            merge_page(all, r);
            json_decref(r);
        }
        if (!next) {
            *reply = all;
            return TLY_EXIT_OK;
        }
        json_object_set_new(req, "from_seq", next);
    }
    json_decref(all);
    tly_errorf(src->cmd, "more than %u pages of exceptions", TLY_QUERY_EXCEPTIONS_PAGES_MAX);
    return TLY_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */

typedef void (*print_fn)(const json_t *reply, const money_ctx *m);

typedef struct view_cmd {
    const char *name;
    bool partner; /* takes PARTNER */
    bool filters; /* takes --partner/--kind/--from-seq */
    print_fn print;
    const char *what;
} view_cmd;

/* Every exception kind (tly_xkind.h), wrapped under --kind's help. */
static void kinds_help(FILE *out)
{
    size_t col = 0;
    for (int k = 0; k < TLY_X_COUNT; k++) {
        const char *name = tly_xkind_name((tly_xkind)k);
        size_t len = strlen(name) + (k + 1 < TLY_X_COUNT ? 1 : 0);
        if (col > 0 && col + 1 + len > 58) {
            fputc('\n', out);
            col = 0;
        }
        fprintf(out, "%s%s%s", col == 0 ? "                    " : " ", name,
                k + 1 < TLY_X_COUNT ? "," : "");
        col += (col == 0 ? 0 : 1) + len;
    }
    fputc('\n', out);
}

static void usage(const view_cmd *c, FILE *out)
{
    fprintf(out,
            "Usage: tally %s%s [--json] [--query EP | --data DIR | --views DIR [--shards N]]\n"
            "         [--as-of-close PERIOD [--program P]]%s\n\n%s\n\n",
            c->name, c->partner ? " PARTNER" : "",
            c->filters ? "\n         [--partner P] [--kind KIND] [--from-seq SEQ]" : "", c->what);
    fprintf(out,
            "  --json          print the SPEC section 8 object on one line (keys in SPEC\n"
            "                  order; money in minor units)\n"
            "  --query EP      query service endpoint (default %s)\n"
            "  --data DIR      ask the stack 'tally up' runs on DIR: the query endpoint\n"
            "                  it recorded in DIR/endpoints.json (default $TALLY_DATA,\n"
            "                  else ./tally-data; --query wins)\n"
            "  --views DIR     answer directly from the shard stores DIR/K-of-N (e.g. a\n"
            "                  replay from 'tally audit replay'), without the service\n"
            "  --shards N      with --views: expect the shards 0-of-N .. (N-1)-of-N\n"
            "  --curve-server-key KEY, --curve-secret FILE\n"
            "                  ask a CURVE query service (its public key, this client's\n"
            "                  secret key file; the key's role decides what it may ask)\n"
            "%s"
            "  --program P     with --as-of-close: the program whose close (needed when\n"
            "                  there is no PARTNER; else the partner's program)\n",
            TLY_DEFAULT_QUERY, TLY_ASOF_HELP);
    if (c->filters) {
        fprintf(out, "  --partner P     only exceptions naming partner P\n"
                     "  --kind KIND     only exceptions of this kind, one of:\n");
        kinds_help(out);
        fprintf(out, "  --from-seq SEQ  only exceptions at log positions >= SEQ\n");
    }
    fprintf(out, "\nAmounts are shown in the currency's units (minor units / 10^digits of\n"
                 "ISO 4217). 'As of seq N' is the log position the answer reflects: the\n"
                 "lowest checkpoint of the shards read [D8]; a cross-shard answer\n"
                 "(liabilities, exceptions) whose shards were at different positions\n"
                 "says so: \"shards_differ\": true in --json, a note under the table.\n"
                 "Exit codes: 0 success, 1 error (unknown partner, service not reachable),"
                 " 2 usage.\n");
}

enum {
    OPT_VIEWS = 1,
    OPT_CURVE_SERVER_KEY,
    OPT_CURVE_SECRET,
    OPT_SHARDS,
    OPT_AS_OF,
    OPT_PROGRAM,
    OPT_PARTNER,
    OPT_KIND,
    OPT_FROM_SEQ,
};

/* The options of every view command; the exceptions filters come last. */
static const tly_opt view_opts_table[] = {
    {"--views", OPT_VIEWS, TLY_OPT_PATH},
    {"--curve-server-key", OPT_CURVE_SERVER_KEY, true},
    {"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH},
    {"--shards", OPT_SHARDS, true},
    {"--as-of-close", OPT_AS_OF, true},
    {"--program", OPT_PROGRAM, true},
    {"--partner", OPT_PARTNER, true},
    {"--kind", OPT_KIND, true},
    {"--from-seq", OPT_FROM_SEQ, true},
};
#define VIEW_OPTS_COMMON 6u /* the entries before the filters */

typedef struct view_parse {
    const view_cmd *c;
    view_opts *o;
} view_parse;

/* --kind names no exception kind: a usage error listing them all. */
static int unknown_kind(const char *cmd, const char *kind)
{
    char list[TLY_X_COUNT * 32] = "";
    size_t used = 0;
    for (int k = 0; k < TLY_X_COUNT && used < sizeof list; k++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                                 tly_xkind_name((tly_xkind)k));
    return tly_usagef(cmd, "unknown kind '%s'; the kinds are %s", kind, list);
}

static int view_opt(void *ctx, int id, const char *v)
{
    const view_parse *p = ctx;
    view_opts *o = p->o;
    uint64_t n = 0;
    if (id == OPT_SHARDS && !tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n))
        return tly_usagef(p->c->name, "--shards takes 1..%u", TLY_SHARDS_MAX);
    if (id == OPT_FROM_SEQ && !tly_parse_u64(v, 0, TLY_SEQ_ARG_MAX, &o->from_seq))
        return tly_usagef(p->c->name, "--from-seq takes a log position, 0..%llu",
                          (unsigned long long)TLY_SEQ_ARG_MAX);
    if (id == OPT_KIND && tly_xkind_parse(v, strlen(v)) == TLY_X_COUNT)
        return unknown_kind(p->c->name, v);
    if (id == TLY_OPT_ARG && (!p->c->partner || o->partner))
        return tly_usagef(p->c->name, "unexpected argument '%s'", v);
    if (id == OPT_AS_OF && tly_asof_check_period(p->c->name, v) != TLY_EXIT_OK)
        return TLY_EXIT_USAGE;
    o->as_of = id == OPT_AS_OF ? v : o->as_of;
    o->program = id == OPT_PROGRAM ? v : o->program;
    o->shards = id == OPT_SHARDS ? (uint32_t)n : o->shards;
    o->views = id == OPT_VIEWS ? v : o->views;
    o->curve_server_key = id == OPT_CURVE_SERVER_KEY ? v : o->curve_server_key;
    o->curve_secret = id == OPT_CURVE_SECRET ? v : o->curve_secret;
    o->partner = id == OPT_PARTNER || id == TLY_OPT_ARG ? v : o->partner;
    o->kind = id == OPT_KIND ? v : o->kind;
    return TLY_EXIT_OK;
}

static int parse(const view_cmd *c, view_opts *o, int argc, char **argv)
{
    tly_common_defaults(&o->common);
    view_parse p = {c, o};
    const tly_cli_spec spec = {
        c->name,
        TLY_CO_DATA | TLY_CO_QUERY | TLY_CO_JSON,
        view_opts_table,
        c->filters ? sizeof view_opts_table / sizeof view_opts_table[0] : VIEW_OPTS_COMMON,
        view_opt,
        &p};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(c, stdout);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (c->partner && !o->partner)
        return tly_usagef(c->name, "PARTNER is required");
    if (o->partner && (strlen(o->partner) == 0 || strlen(o->partner) > TLY_NAME_BYTES_MAX))
        return tly_usagef(c->name, "a partner id is 1 to %u bytes", TLY_NAME_BYTES_MAX);
    if (o->shards && !o->views)
        return tly_usagef(c->name, "--shards goes with --views");
    if (o->program && !o->as_of)
        return tly_usagef(c->name, "--program goes with --as-of-close");
    if (o->as_of && !c->partner && !o->program)
        return tly_usagef(c->name, "--as-of-close needs --program P (the program whose close)");
    return o->views ? TLY_EXIT_OK : tly_common_endpoints(c->name, &o->common);
}

static json_t *build_request(const view_cmd *c, const view_opts *o)
{
    json_t *req = json_pack("{s:s}", "q", c->name);
    if (req && o->partner)
        json_object_set_new(req, "partner", json_string(o->partner));
    if (req && o->kind)
        json_object_set_new(req, "kind", json_string(o->kind));
    if (req && o->from_seq)
        json_object_set_new(req, "from_seq", json_integer((json_int_t)o->from_seq));
    return req;
}

static void print_reply(const view_cmd *c, const source *src, const json_t *reply)
{
    if (src->o->common.json) {
        json_dumpf(reply, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("\n");
        return;
    }
    char cur[16];
    money_ctx m = {NULL, 2};
    const char *own = json_string_value(json_object_get(reply, "currency"));
    if (own) {
        m.currency = own;
        m.exp = tly_query_currency_exponent(own);
    } else if (c->partner) {
        partner_money(src, src->o->partner, cur, sizeof cur, &m);
    }
    c->print(reply, &m);
}

/* The store to answer from: --views DIR, or with --as-of-close the replay
 * at the close (the partner's program asked of --views or the service);
 * none for the service. */
static int open_source(const view_cmd *c, const view_opts *o, source *src)
{
    if (o->views) {
        tly_err err = tly_query_store_open(o->views, NULL, o->shards, &src->store);
        if (err != TLY_OK) {
            tly_errorf(c->name, "cannot open view stores under %s: %s", o->views,
                       tly_strerror(err));
            return TLY_EXIT_FAIL;
        }
    }
    if (!o->as_of)
        return TLY_EXIT_OK;
    char program[TLY_NAME_BYTES_MAX + 1];
    int rc = TLY_EXIT_OK;
    if (o->program)
        snprintf(program, sizeof program, "%s", o->program);
    else
        rc = tly_asof_partner_program(c->name, src->store, &o->common, o->partner, program,
                                      sizeof program);
    tly_query_store_close(src->store);
    src->store = NULL;
    if (rc == TLY_EXIT_OK)
        rc = tly_asof_store(c->name, o->common.data, program, o->as_of, &src->store, NULL);
    return rc;
}

static int run_view(const view_cmd *c, int argc, char **argv)
{
    view_opts o = {0};
    int rc = parse(c, &o, argc, argv);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    source src = {c->name, &o, NULL};
    if ((rc = cli_use_curve(c->name, o.curve_server_key, o.curve_secret)) != TLY_EXIT_OK)
        return rc;
    if ((rc = open_source(c, &o, &src)) != TLY_EXIT_OK)
        return rc;
    json_t *req = build_request(c, &o), *reply = NULL;
    rc = !req         ? TLY_EXIT_FAIL
         : c->filters ? fetch_exceptions(&src, req, &reply)
                      : fetch(&src, req, &reply);
    if (rc == TLY_EXIT_OK)
        print_reply(c, &src, reply);
    json_decref(reply);
    json_decref(req);
    tly_query_store_close(src.store);
    if (rc == TLY_EXIT_OK && fflush(stdout) != 0)
        rc = TLY_EXIT_FAIL;
    return rc;
}

static const view_cmd BALANCE = {"balance", true, false, print_balance,
                                 "The MDF balance of a partner: totals and live buckets."};
static const view_cmd REBATE = {
    "rebate", true, false, print_rebate,
    "The rebate periods of a partner: revenue, basis, rate, rebate, referral fees, paid."};
static const view_cmd TIER = {
    "tier", true, false, print_tier,
    "The tier of a partner, its benefits and grace, the next tier, and history."};
static const view_cmd CLAIMS = {"claims", true, false, print_claims,
                                "The MDF claims of a partner, in submit order."};
static const view_cmd LIABILITIES = {"liabilities", false, false, print_liabilities,
                                     "MDF and rebate liabilities per program, all partners."};
static const view_cmd EXCEPTIONS = {
    "exceptions", false, true, print_exceptions,
    "Business exceptions recorded by the engine, in log order (the complete list)."};

int tly_cmd_balance(int argc, char **argv)
{
    return run_view(&BALANCE, argc, argv);
}

int tly_cmd_rebate(int argc, char **argv)
{
    return run_view(&REBATE, argc, argv);
}

int tly_cmd_tier(int argc, char **argv)
{
    return run_view(&TIER, argc, argv);
}

int tly_cmd_claims(int argc, char **argv)
{
    return run_view(&CLAIMS, argc, argv);
}

int tly_cmd_liabilities(int argc, char **argv)
{
    return run_view(&LIABILITIES, argc, argv);
}

int tly_cmd_exceptions(int argc, char **argv)
{
    return run_view(&EXCEPTIONS, argc, argv);
}
