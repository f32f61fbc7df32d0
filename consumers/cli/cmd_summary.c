/*
 * cmd_summary.c — `tally summary`: the finance summary of the demo.
 *
 * Reads the view stores of DIR directly (read-only, like `--views`): the
 * liabilities per program, the partners with the most available MDF, how
 * many partners hold each tier, and the exceptions by kind. Everything comes
 * from the same answers `tally liabilities`, `tally exceptions` and the
 * balance views give, so the figures agree with them.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_query.h"
#include "tly_views.h"

typedef struct summary_opts {
    const char *data;
    uint32_t top;
    bool json;
} summary_opts;

static void usage(FILE *out)
{
    fprintf(out, "Usage: tally summary [--data DIR] [--top N] [--json]\n\n"
                 "The finance summary of the views in DIR: liabilities per program, the\n"
                 "partners with the most available MDF, the tier distribution and the\n"
                 "exceptions by kind. Reads DIR/views directly (read-only).\n\n"
                 "  --data DIR   data directory (default $TALLY_DATA, else ./tally-data)\n"
                 "  --top N      partners in the top list (default 10)\n"
                 "  --json       one JSON object {seq, liabilities, top, tiers, exceptions}\n\n"
                 "Exit codes: 0 success, 1 no views in DIR, 2 usage.\n");
}

enum { OPT_TOP = 1 };

static const tly_opt summary_opts_table[] = {{"--top", OPT_TOP, true}};

static int summary_opt(void *ctx, int id, const char *v)
{
    summary_opts *o = ctx;
    uint64_t n = 0;
    if (id != OPT_TOP)
        return tly_usagef("summary", "unexpected argument '%s'", v);
    if (!tly_parse_u64(v, 1, TLY_SUMMARY_TOP_MAX, &n))
        return tly_usagef("summary", "--top must be 1..%u", TLY_SUMMARY_TOP_MAX);
    o->top = (uint32_t)n;
    return TLY_EXIT_OK;
}

static int parse_args(int argc, char **argv, summary_opts *o)
{
    tly_common_opts c;
    tly_common_defaults(&c);
    o->top = TLY_SUMMARY_TOP_DEFAULT;
    const tly_cli_spec spec = {
        "summary", TLY_CO_DATA | TLY_CO_JSON, summary_opts_table, 1, summary_opt, o};
    int rc = tly_cli_parse(&spec, &c, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    o->data = c.data;
    o->json = c.json;
    return rc;
}

static json_t *ask(tly_query_store *s, const char *q, json_t *args)
{
    json_t *req = args ? args : json_object();
    json_object_set_new(req, "q", json_string(q));
    json_t *reply = NULL;
    tly_query_answer(s, req, &reply);
    json_decref(req);
    return reply;
}

/* Exceptions counted per kind, over every page. */
static json_t *exception_counts(tly_query_store *s, json_int_t *total)
{
    json_t *counts = json_object();
    json_int_t from = 0;
    *total = 0;
    for (uint32_t page = 0; page < TLY_SUMMARY_EXCEPTION_PAGES_MAX; page++) {
        json_t *args = json_object();
        json_object_set_new(args, "from_seq", json_integer(from));
        json_t *r = ask(s, "exceptions", args);
        json_t *list = json_object_get(r, "exceptions");
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x)
        {
            const char *kind = json_string_value(json_object_get(x, "kind"));
            json_t *c = json_object_get(counts, kind ? kind : "?");
            json_object_set_new(counts, kind ? kind : "?",
                                json_integer(c ? json_integer_value(c) + 1 : 1));
            (*total)++;
        }
        json_t *next = json_object_get(r, "next_seq");
        from = next ? json_integer_value(next) : 0;
        json_decref(r);
        if (!next)
            break;
    }
    return counts;
}

/* Collects every partner's balance view from every shard. */
typedef struct collect_ctx {
    json_t *balances;
} collect_ctx;

static tly_err collect(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    (void)key;
    (void)key_len;
    collect_ctx *c = ctx;
    json_t *doc = json_loadb(val, val_len, 0, NULL);
    if (doc)
        json_array_append_new(c->balances, doc);
    return TLY_OK;
}

static uint32_t shard_count_of(json_t *status)
{
    json_t *shards = json_object_get(status, "shards");
    const char *first = json_string_value(json_object_get(json_array_get(shards, 0), "shard"));
    const char *slash = first ? strchr(first, '/') : NULL;
    return slash ? (uint32_t)strtoul(slash + 1, NULL, 10) : 0;
}

static json_t *all_balances(const char *data, uint32_t n)
{
    collect_ctx c = {json_array()};
    for (uint32_t k = 0; k < n; k++) {
        tly_views *v = NULL;
        if (tly_views_open(data, k, n, TLY_VIEWS_READ, &v) != TLY_OK)
            continue;
        tly_views_docs(v, 'b', collect, &c, NULL);
        tly_views_close(v);
    }
    return c.balances;
}

static json_int_t int_of(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Largest available first; ties by partner id, so the list is stable. */
static int by_available(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t ax = int_of(x, "available"), ay = int_of(y, "available");
    if (ax != ay)
        return ax > ay ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "partner")),
                  json_string_value(json_object_get(y, "partner")));
}

static json_t *top_partners(json_t *balances, uint32_t top)
{
    size_t n = json_array_size(balances);
    json_t **v = malloc((n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(balances, i);
    qsort(v, n, sizeof *v, by_available);
    json_t *out = json_array();
    for (size_t i = 0; i < n && i < top; i++) {
        json_t *row = json_object();
        static const char *const keys[] = {"partner",   "program", "currency", "tier",
                                           "available", "pending", "deficit"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            json_object_set(row, keys[k], json_object_get(v[i], keys[k]));
        json_array_append_new(out, row);
    }
    free(v);
    return out;
}

/* {"program": {"tier": partners}} in the order tiers are first seen. */
static json_t *tier_distribution(json_t *balances)
{
    json_t *out = json_object();
    size_t i;
    json_t *b;
    json_array_foreach(balances, i, b)
    {
        const char *prog = json_string_value(json_object_get(b, "program"));
        const char *tier = json_string_value(json_object_get(b, "tier"));
        if (!prog || !tier)
            continue;
        json_t *p = json_object_get(out, prog);
        if (!p) {
            p = json_object();
            json_object_set_new(out, prog, p);
        }
        json_t *c = json_object_get(p, tier);
        json_object_set_new(p, tier, json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    return out;
}

static void money(json_t *o, const char *key, const char *currency, char *buf)
{
    tly_query_format_money(int_of(o, key), tly_query_currency_exponent(currency), buf,
                           TLY_QUERY_MONEY_CHARS);
}

static void print_liabilities(json_t *liab)
{
    printf("Liabilities by program\n");
    printf("  %-12s %-4s %18s %16s %16s %20s %18s\n", "program", "ccy", "MDF available",
           "MDF pending", "MDF approved", "rebate accrued open", "rebate payable");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(liab, "programs"), i, p)
    {
        const char *ccy = json_string_value(json_object_get(p, "currency"));
        char a[TLY_QUERY_MONEY_CHARS], b[TLY_QUERY_MONEY_CHARS], c[TLY_QUERY_MONEY_CHARS],
            d[TLY_QUERY_MONEY_CHARS], e[TLY_QUERY_MONEY_CHARS];
        money(p, "mdf_available", ccy, a);
        money(p, "mdf_pending", ccy, b);
        money(p, "mdf_approved", ccy, c);
        money(p, "rebate_accrued_open", ccy, d);
        money(p, "rebate_payable", ccy, e);
        printf("  %-12s %-4s %18s %16s %16s %20s %18s\n",
               json_string_value(json_object_get(p, "program")), ccy ? ccy : "", a, b, c, d, e);
    }
}

static void print_top(json_t *top)
{
    printf("\nPartners with the most available MDF\n");
    printf("  %-32s %-10s %-12s %18s %16s\n", "partner", "program", "tier", "available",
           "pending claims");
    size_t i;
    json_t *r;
    json_array_foreach(top, i, r)
    {
        const char *ccy = json_string_value(json_object_get(r, "currency"));
        char a[TLY_QUERY_MONEY_CHARS], p[TLY_QUERY_MONEY_CHARS];
        money(r, "available", ccy, a);
        money(r, "pending", ccy, p);
        printf("  %-32s %-10s %-12s %14s %-3s %16s\n",
               json_string_value(json_object_get(r, "partner")),
               json_string_value(json_object_get(r, "program")),
               json_string_value(json_object_get(r, "tier")), a, ccy ? ccy : "", p);
    }
}

static void print_tiers(json_t *tiers)
{
    printf("\nTier distribution (partners per tier)\n");
    const char *prog;
    json_t *p;
    json_object_foreach(tiers, prog, p)
    {
        printf("  %-12s", prog);
        const char *tier;
        json_t *c;
        json_object_foreach(p, tier, c) printf("  %s %lld", tier, (long long)json_integer_value(c));
        printf("\n");
    }
}

static void print_exceptions(json_t *counts, json_int_t total)
{
    printf("\nExceptions: %lld in total\n", (long long)total);
    const char *kind;
    json_t *c;
    json_object_foreach(counts, kind, c)
        printf("  %-28s %8lld\n", kind, (long long)json_integer_value(c));
}

int tly_cmd_summary(int argc, char **argv)
{
    summary_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;
    char views[TLY_PATH_BYTES_MAX], log[TLY_PATH_BYTES_MAX];
    tly_query_store *s = NULL;
    if (tly_layout_views(o.data, views, sizeof views) != TLY_OK ||
        tly_layout_log(o.data, log, sizeof log) != TLY_OK ||
        tly_query_store_open(views, log, 0, &s) != TLY_OK) {
        tly_errorf("summary", "cannot read the views in %s", views);
        return TLY_EXIT_FAIL;
    }
    json_t *status = ask(s, "status", NULL);
    json_t *liab = ask(s, "liabilities", NULL);
    uint32_t n = shard_count_of(status);
    if (n == 0 || json_object_get(liab, "error")) {
        /* "unavailable" is no store yet; any other error says what is wrong
         * (a views directory past its entries, a corrupt store) */
        const json_t *bad = json_object_get(liab, "error") ? liab : status;
        const char *code = json_string_value(json_object_get(bad, "error"));
        const char *text = json_string_value(json_object_get(bad, "message"));
        if (code != NULL && strcmp(code, "unavailable") != 0)
            tly_errorf("summary", "%s", text != NULL ? text : code);
        else
            tly_errorf("summary", "no views in %s yet (is 'tally consume' running?)", views);
        json_decref(status);
        json_decref(liab);
        tly_query_store_close(s);
        return TLY_EXIT_FAIL;
    }
    json_int_t total = 0;
    json_t *counts = exception_counts(s, &total);
    json_t *balances = all_balances(o.data, n);
    json_t *top = top_partners(balances, o.top);
    json_t *tiers = tier_distribution(balances);
    json_int_t seq = int_of(liab, "seq");
    if (o.json) {
        json_t *out = json_pack("{s:I,s:O,s:O,s:O,s:{s:I,s:O}}", "seq", (json_int_t)seq,
                                "liabilities", json_object_get(liab, "programs"), "top", top,
                                "tiers", tiers, "exceptions", "total", total, "by_kind", counts);
        char *text = json_dumps(out, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(out);
    } else {
        printf("Tally finance summary, as of log position %lld (%u shard%s, %zu partners)\n\n",
               (long long)seq, n, n == 1 ? "" : "s", json_array_size(balances));
        print_liabilities(liab);
        print_top(top);
        print_tiers(tiers);
        print_exceptions(counts, total);
    }
    json_decref(top);
    json_decref(tiers);
    json_decref(counts);
    json_decref(balances);
    json_decref(status);
    json_decref(liab);
    tly_query_store_close(s);
    return TLY_EXIT_OK;
}
