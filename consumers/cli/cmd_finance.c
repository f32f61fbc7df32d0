/*
 * cmd_finance.c — the finance outputs of SPEC section 11 on the command
 * line: `tally partners`, `tally report --program P`, `tally expiring` and
 * `tally journal --program P --period P [--accounts FILE]`.
 *
 * As the partner views (cmd_views.c): one request to the query service
 * (--query, or the stack `tally up` runs on --data DIR), or with --views
 * DIR the same answer straight from the shard stores through the code the
 * service runs. --json prints the section 11 object on one line, keys in
 * SPEC order, as the service answers it; --csv the answer's list (one
 * header row, money in minor units); otherwise tables (finance_out.c).
 * The partner list and the expiring funds do not name a currency: their
 * tables ask the liabilities answer for each program's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_asof.h"
#include "cli_fields.h"
#include "finance_out.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_limits.h"
#include "tly_query.h"

/* What a command takes beyond the shared flags. */
enum {
    FIN_FILTERS = 1u << 0,  /* --tier --kind --search */
    FIN_PROGRAM = 1u << 1,  /* --program P */
    FIN_PERIOD = 1u << 2,   /* --period P (required) */
    FIN_ACCOUNTS = 1u << 3, /* --accounts FILE */
};

typedef struct fin_cmd {
    const char *name;
    unsigned takes;
    bool program_required;
    const char *synopsis; /* after "tally NAME" */
    const char *what;
} fin_cmd;

typedef struct fin_opts {
    tly_common_opts common;
    bool csv;
    const char *views; /* --views DIR: answer from the stores, no service */
    uint32_t shards;   /* --shards N with --views */
    const char *program, *tier, *kind, *search, *period, *accounts;
    const char *curve_server_key, *curve_secret;
    const char *as_of; /* --as-of-close PERIOD */
    bool narrowable;   /* takes the partner filters: a too large answer says so */
} fin_opts;

/* Where the answers of one command come from. */
typedef struct source {
    const char *cmd;
    const fin_opts *o;
    tly_query_store *store; /* non-NULL with --views */
} source;

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

enum {
    OPT_CSV = 1,
    OPT_VIEWS,
    OPT_SHARDS,
    OPT_CURVE_SERVER_KEY,
    OPT_CURVE_SECRET,
    OPT_AS_OF,
    OPT_PROGRAM,
    OPT_TIER,
    OPT_KIND,
    OPT_SEARCH,
    OPT_PERIOD,
    OPT_ACCOUNTS,
};

/* Every option of the finance commands and who takes it (0: all). */
static const struct {
    tly_opt opt;
    unsigned needs;
} fin_options[] = {
    {{"--csv", OPT_CSV, false}, 0},
    {{"--views", OPT_VIEWS, TLY_OPT_PATH}, 0},
    {{"--shards", OPT_SHARDS, true}, 0},
    {{"--curve-server-key", OPT_CURVE_SERVER_KEY, true}, 0},
    {{"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH}, 0},
    {{"--as-of-close", OPT_AS_OF, true}, 0},
    {{"--program", OPT_PROGRAM, true}, FIN_PROGRAM},
    {{"--tier", OPT_TIER, true}, FIN_FILTERS},
    {{"--kind", OPT_KIND, true}, FIN_FILTERS},
    {{"--search", OPT_SEARCH, true}, FIN_FILTERS},
    {{"--period", OPT_PERIOD, true}, FIN_PERIOD},
    {{"--accounts", OPT_ACCOUNTS, TLY_OPT_PATH}, FIN_ACCOUNTS},
};
#define FIN_OPTIONS (sizeof fin_options / sizeof fin_options[0])

typedef struct fin_parse {
    const fin_cmd *c;
    fin_opts *o;
} fin_parse;

/* A name-like value: 1..TLY_NAME_BYTES_MAX bytes, as the service wants. */
static int name_value(const char *cmd, const char *flag, const char *v, const char **out)
{
    if (strlen(v) == 0 || strlen(v) > TLY_NAME_BYTES_MAX)
        return tly_usagef(cmd, "%s takes 1 to %u bytes", flag, TLY_NAME_BYTES_MAX);
    *out = v;
    return TLY_EXIT_OK;
}

static int fin_opt(void *ctx, int id, const char *v)
{
    const fin_parse *p = ctx;
    fin_opts *o = p->o;
    const char *cmd = p->c->name;
    uint64_t n = 0;
    switch (id) {
    case OPT_CSV:
        o->csv = true;
        return TLY_EXIT_OK;
    case OPT_SHARDS:
        if (!tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n))
            return tly_usagef(cmd, "--shards takes 1..%u", TLY_SHARDS_MAX);
        o->shards = (uint32_t)n;
        return TLY_EXIT_OK;
    case OPT_PROGRAM:
        return name_value(cmd, "--program", v, &o->program);
    case OPT_TIER:
        return name_value(cmd, "--tier", v, &o->tier);
    case OPT_KIND:
        return name_value(cmd, "--kind", v, &o->kind);
    case OPT_SEARCH:
        return name_value(cmd, "--search", v, &o->search);
    case OPT_PERIOD:
        return name_value(cmd, "--period", v, &o->period);
    case OPT_AS_OF:
        o->as_of = v;
        return tly_asof_check_period(cmd, v);
    default:
        break;
    }
    if (id == TLY_OPT_ARG)
        return tly_usagef(cmd, "unexpected argument '%s'", v);
    o->views = id == OPT_VIEWS ? v : o->views;
    o->accounts = id == OPT_ACCOUNTS ? v : o->accounts;
    o->curve_server_key = id == OPT_CURVE_SERVER_KEY ? v : o->curve_server_key;
    o->curve_secret = id == OPT_CURVE_SECRET ? v : o->curve_secret;
    return TLY_EXIT_OK;
}

static void usage(const fin_cmd *c, FILE *out)
{
    fprintf(out,
            "Usage: tally %s %s\n"
            "       %*s [--json | --csv] [--query EP | --data DIR | --views DIR [--shards N]]\n"
            "       %*s [--as-of-close PERIOD]\n"
            "\n%s\n\n",
            c->name, c->synopsis, (int)strlen(c->name) + 6, "", (int)strlen(c->name) + 6, "",
            c->what);
    if (c->takes & FIN_PROGRAM)
        fprintf(out, "  --program P     %s\n",
                c->program_required ? "the program" : "only partners of program P");
    if (c->takes & FIN_FILTERS)
        fprintf(out, "  --tier T        only partners in tier T\n"
                     "  --kind K        only partners of kind K (var, msp, ...)\n"
                     "  --search TEXT   only partners whose id or name holds TEXT (ASCII\n"
                     "                  letters in any case)\n");
    if (c->takes & FIN_PERIOD)
        fprintf(out, "  --period P      the period, of the program's kind (2025-Q1, 2025-07)\n");
    if (c->takes & FIN_ACCOUNTS)
        fprintf(out, "  --accounts FILE a JSON object mapping account keys (contra_revenue_mdf,\n"
                     "                  mdf_liability, cash, contra_revenue_rebate,\n"
                     "                  rebate_liability, referral_expense) to GL codes;\n"
                     "                  accounts it does not name keep their key\n");
    fprintf(out,
            "  --json          print the SPEC section 11 object on one line (keys in SPEC\n"
            "                  order; money in minor units)\n"
            "  --csv           print the answer's list as CSV: one header row, one row\n"
            "                  per element, money in minor units\n"
            "  --query EP      query service endpoint (default %s)\n"
            "  --data DIR      ask the stack 'tally up' runs on DIR: the query endpoint\n"
            "                  it recorded in DIR/endpoints.json (default $TALLY_DATA,\n"
            "                  else ./tally-data; --query wins)\n"
            "  --views DIR     answer directly from the shard stores DIR/K-of-N (e.g. a\n"
            "                  replay from 'tally audit replay'), without the service\n"
            "  --shards N      with --views: expect the shards 0-of-N .. (N-1)-of-N\n"
            "  --curve-server-key KEY, --curve-secret FILE\n"
            "                  ask a CURVE query service (its public key, this client's\n"
            "                  secret key file)\n"
            "%s"
            "\nAmounts in tables are in the currency's units (minor units / 10^digits of\n"
            "ISO 4217). 'As of seq N' is the log position the answer reflects [D8].\n"
            "Exit codes: 0 success (an empty answer too), 1 error (unknown program, a\n"
            "period of the wrong kind, a bad accounts file, service not reachable),\n"
            "2 usage.\n",
            TLY_DEFAULT_QUERY, TLY_ASOF_HELP);
}

static int parse(const fin_cmd *c, fin_opts *o, int argc, char **argv)
{
    tly_common_defaults(&o->common);
    tly_opt table[FIN_OPTIONS];
    size_t n = 0;
    for (size_t i = 0; i < FIN_OPTIONS; i++)
        if ((fin_options[i].needs & ~c->takes) == 0)
            table[n++] = fin_options[i].opt;
    fin_parse p = {c, o};
    const tly_cli_spec spec = {c->name, TLY_CO_DATA | TLY_CO_QUERY | TLY_CO_JSON, table, n, fin_opt,
                               &p};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(c, stdout);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (c->program_required && !o->program)
        return tly_usagef(c->name, "--program is required");
    if ((c->takes & FIN_PERIOD) && !o->period)
        return tly_usagef(c->name, "--period is required");
    o->narrowable = (c->takes & FIN_FILTERS) != 0;
    if (o->csv && o->common.json)
        return tly_usagef(c->name, "--json and --csv exclude each other");
    if (o->shards && !o->views)
        return tly_usagef(c->name, "--shards goes with --views");
    if (o->as_of && !o->program)
        return tly_usagef(c->name, "--as-of-close needs --program P (the program whose close)");
    if (o->as_of && o->views)
        return tly_usagef(c->name, "--as-of-close and --views exclude each other");
    if (!o->curve_server_key != !o->curve_secret)
        return tly_usagef(c->name, "--curve-server-key and --curve-secret go together");
    return o->views ? TLY_EXIT_OK : tly_common_endpoints(c->name, &o->common);
}

/* ------------------------------------------------------------------------ */
/* Asking                                                                    */

/* Sends req to the service or answers it from the store. On success
 * *reply holds the answer (never an error object). Otherwise prints one
 * line on stderr (quiet: nothing) and returns the exit code. */
static int fetch(const source *src, const json_t *req, json_t **reply, bool quiet)
{
    json_t *r = NULL;
    const char *ep = src->o->common.query;
    tly_err err = src->store ? tly_query_answer(src->store, req, &r)
                             : tly_query_call(ep, req, TLY_QUERY_TIMEOUT_MS, &r);
    const char *code = err == TLY_OK ? json_string_value(json_object_get(r, "error")) : NULL;
    if (err == TLY_OK && !code) {
        *reply = r;
        return TLY_EXIT_OK;
    }
    int rc = TLY_EXIT_FAIL;
    if (quiet)
        ;
    else if (err == TLY_TIMEOUT || err == TLY_IO)
        tly_cli_unreachable(src->cmd, &src->o->common);
    else if (err == TLY_USAGE)
        rc = tly_usagef(src->cmd, "bad query endpoint '%s'", ep);
    else if (err != TLY_OK)
        tly_errorf(src->cmd, "query failed: %s", tly_strerror(err));
    else /* a refusal names itself, so a script can tell it from a failure */
        tly_errorf(src->cmd, "%s%s%s",
                   strcmp(code, tly_err_name(TLY_FORBIDDEN)) == 0 ? "forbidden: " : "",
                   json_string_value(json_object_get(r, "message"))
                       ? json_string_value(json_object_get(r, "message"))
                       : code,
                   strcmp(code, tly_err_name(TLY_TOO_LARGE)) == 0 && src->o->narrowable
                       ? " (narrow it with --program, --tier, --kind or --search)"
                       : "");
    json_decref(r);
    return rc;
}

/* program -> currency from the liabilities answer, for the tables whose
 * answer does not name it; NULL when it cannot be had (the table then
 * shows 2 decimals and no code). */
static json_t *currencies(const source *src)
{
    json_t *req = json_pack("{s:s}", "q", "liabilities"), *r = NULL;
    json_t *map = req && fetch(src, req, &r, true) == TLY_EXIT_OK ? json_object() : NULL;
    size_t i;
    json_t *p;
    json_array_foreach(map ? json_object_get(r, "programs") : NULL, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "program"));
        json_t *cur = json_object_get(p, "currency");
        if (name && json_is_string(cur))
            json_object_set(map, name, cur);
    }
    json_decref(r);
    json_decref(req);
    return map;
}

static json_t *build_request(const fin_cmd *c, const fin_opts *o)
{
    json_t *req = json_pack("{s:s}", "q", c->name);
    const struct {
        const char *key, *value;
    } fields[] = {{"program", o->program},
                  {"tier", o->tier},
                  {"kind", o->kind},
                  {"search", o->search},
                  {"period", o->period}};
    for (size_t i = 0; req && i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i].value &&
            json_object_set_new(req, fields[i].key, json_string(fields[i].value)) != 0) {
            json_decref(req);
            return NULL;
        }
    return req;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */

typedef void (*table_fn)(const json_t *reply, const json_t *currencies);
typedef void (*csv_fn)(const json_t *reply);

/* How each command shows its answer. */
typedef struct fin_show {
    table_fn table;
    csv_fn csv;
    bool currencies; /* the table needs the programs' currencies */
} fin_show;

static void table_report(const json_t *reply, const json_t *unused)
{
    (void)unused;
    tly_fin_table_report(reply);
}

static void table_journal(const json_t *reply, const json_t *unused)
{
    (void)unused;
    tly_fin_table_journal(reply);
}

static void show(const source *src, const fin_show *s, const json_t *reply)
{
    if (src->o->common.json) {
        json_dumpf(reply, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("\n");
    } else if (src->o->csv) {
        s->csv(reply);
    } else {
        json_t *cur = s->currencies ? currencies(src) : NULL;
        s->table(reply, cur);
        json_decref(cur);
    }
}

/* The pages after the first of a partners answer ("next" names the last
 * id given): each asked "after" it and appended to reply's list; the
 * answer's seq is the lowest of the pages'. */
static int follow_pages(source *src, json_t *req, json_t *reply)
{
    json_t *list = json_object_get(reply, "partners");
    int rc = TLY_EXIT_OK;
    while (rc == TLY_EXIT_OK && json_is_string(json_object_get(reply, "next"))) {
        json_object_set(req, "after", json_object_get(reply, "next"));
        json_object_del(reply, "next");
        json_t *page = NULL;
        rc = fetch(src, req, &page, false);
        if (rc != TLY_EXIT_OK)
            break;
        json_array_extend(list, json_object_get(page, "partners"));
        json_t *seq = json_object_get(page, "seq"), *next = json_object_get(page, "next");
        if (json_integer_value(seq) < json_integer_value(json_object_get(reply, "seq")))
            json_object_set(reply, "seq", seq);
        if (next)
            json_object_set(reply, "next", next);
        json_decref(page);
    }
    return rc;
}

/* Asks and shows; accounts (or NULL) maps the journal's accounts. */
static int ask(const fin_cmd *c, const fin_show *s, source *src, const json_t *accounts)
{
    json_t *req = build_request(c, src->o), *reply = NULL;
    int rc = req ? fetch(src, req, &reply, false) : TLY_EXIT_FAIL;
    if (rc == TLY_EXIT_OK && strcmp(c->name, "partners") == 0)
        rc = follow_pages(src, req, reply);
    if (rc == TLY_EXIT_OK) {
        if (accounts)
            tly_fin_accounts_apply(reply, accounts);
        show(src, s, reply);
    }
    json_decref(reply);
    json_decref(req);
    return rc;
}

/* The store to answer from: --views DIR, or with --as-of-close the replay
 * at the close of --program's PERIOD (kept under --data); none for the
 * service. */
static int open_source(const fin_cmd *c, const fin_opts *o, source *src)
{
    if (o->as_of)
        return tly_asof_store(c->name, o->common.data, o->program, o->as_of, &src->store, NULL);
    tly_err err = o->views ? tly_query_store_open(o->views, NULL, o->shards, &src->store) : TLY_OK;
    if (err == TLY_OK)
        return TLY_EXIT_OK;
    tly_errorf(c->name, "cannot open view stores under %s: %s", o->views, tly_strerror(err));
    return TLY_EXIT_FAIL;
}

static int run_fin(const fin_cmd *c, const fin_show *s, int argc, char **argv)
{
    fin_opts o = {0};
    int rc = parse(c, &o, argc, argv);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    if ((rc = cli_use_curve(c->name, o.curve_server_key, o.curve_secret)) != TLY_EXIT_OK)
        return rc;
    json_t *accounts = NULL;
    char msg[512];
    if (o.accounts && tly_fin_accounts_load(o.accounts, &accounts, msg, sizeof msg) != TLY_OK) {
        tly_errorf(c->name, "%s", msg);
        return TLY_EXIT_FAIL;
    }
    source src = {c->name, &o, NULL};
    rc = open_source(c, &o, &src);
    if (rc == TLY_EXIT_OK)
        rc = ask(c, s, &src, accounts);
    tly_query_store_close(src.store);
    json_decref(accounts);
    if (rc == TLY_EXIT_OK && fflush(stdout) != 0)
        rc = TLY_EXIT_FAIL;
    return rc;
}

static const fin_cmd PARTNERS = {
    "partners", FIN_PROGRAM | FIN_FILTERS, false,
    "[--program P] [--tier T] [--kind K] [--search TEXT]",
    "The partners, by id: name, program, kind, region, tier, MDF available and\n"
    "rebate payable. No match is an empty list (exit 0)."};
static const fin_cmd REPORT = {
    "report", FIN_PROGRAM, true, "--program P",
    "The program's period report, oldest period first: revenue, MDF accrued,\n"
    "clawed back, adjusted, expired, approved and paid, the rebate figure,\n"
    "referral fees and rebate paid, by the period they took effect in; the\n"
    "table adds the totals, which equal the partner views'."};
static const fin_cmd EXPIRING = {
    "expiring", FIN_PROGRAM, false, "[--program P]",
    "What the next close of each program (its earliest open period) will\n"
    "expire, partner by partner, largest first; a program with nothing to\n"
    "expire is listed with 0."};
static const fin_cmd JOURNAL = {
    "journal", FIN_PROGRAM | FIN_PERIOD | FIN_ACCOUNTS, true,
    "--program P --period P [--accounts FILE]",
    "Balanced double-entry lines of one period for the general ledger, one per\n"
    "partner and kind (mdf_accrual, mdf_expiry, mdf_payment, rebate_accrual,\n"
    "referral_accrual, rebate_payment); they tie to the period's report."};

int tly_cmd_partners(int argc, char **argv)
{
    static const fin_show s = {tly_fin_table_partners, tly_fin_csv_partners, true};
    return run_fin(&PARTNERS, &s, argc, argv);
}

int tly_cmd_report(int argc, char **argv)
{
    static const fin_show s = {table_report, tly_fin_csv_report, false};
    return run_fin(&REPORT, &s, argc, argv);
}

int tly_cmd_expiring(int argc, char **argv)
{
    static const fin_show s = {tly_fin_table_expiring, tly_fin_csv_expiring, true};
    return run_fin(&EXPIRING, &s, argc, argv);
}

int tly_cmd_journal(int argc, char **argv)
{
    static const fin_show s = {table_journal, tly_fin_csv_journal, false};
    return run_fin(&JOURNAL, &s, argc, argv);
}
