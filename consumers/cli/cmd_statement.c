/*
 * cmd_statement.c — `tally statement PARTNER --period P --out FILE.html|
 * FILE.pdf` (SPEC section 11, issue 11 item 2): a statement a partner
 * manager can send as it is.
 *
 * The figures are the query service's answers (balance, rebate, tier,
 * claims; the program's report and expiring funds), read again until all
 * of them reflect the same log position, and the period's lines come from
 * `tally explain`'s fold of DATA/log to exactly that seq
 * (statement_build.c). consumers/report draws the file with cairo and
 * pango: a vector A4 PDF, or one self-contained HTML file with the chart
 * as inline SVG.
 *
 * Exit codes: 0 written; 1 unknown partner, a period that is not one of
 * the program's, no service, a log that does not match it, a file that
 * cannot be written; 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "statement.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_limits.h"
#include "tly_period.h"
#include "tly_query.h"
#include "tly_report.h"

#define CMD "statement"

typedef struct stmt_opts {
    tly_common_opts common;
    const char *partner, *period, *out;
    tly_report_format format;
} stmt_opts;

static const char usage_text[] =
    "Usage: tally statement PARTNER --period P --out FILE.pdf|FILE.html\n"
    "                       [--data DIR] [--query EP]\n"
    "\n"
    "Writes PARTNER's statement for period P: partner, program, tier and benefits;\n"
    "the opening and closing available MDF and what moved it; every explain line of\n"
    "the period; claims and their states; rebate and referral rows up to P with what\n"
    "is payable; what the next tier needs; the funds the next close expires; and a\n"
    "chart of available MDF and cumulative revenue over the program's periods.\n"
    "A period without activity gets a short statement that says so.\n"
    "\n"
    "  --period P    a period of the partner's program (2026-Q3, 2026-07), from\n"
    "                its first period to its earliest open one\n"
    "  --out FILE    FILE.pdf: A4 PDF; FILE.html: one self-contained HTML file\n"
    "                (inline CSS, the chart as inline SVG). Replaced whole.\n"
    "  --data DIR    data directory of the stack (default $TALLY_DATA, else\n"
    "                ./tally-data): DIR/log is folded read-only for the lines,\n"
    "                and the query endpoint 'tally up' recorded there is used\n"
    "  --query EP    query service endpoint (default: DIR's, else " TLY_DEFAULT_QUERY ")\n"
    "\n"
    "Every figure is as of one log position, printed on the statement: the\n"
    "answers are read again (up to 50 times) until they agree on it.\n"
    "Exit codes: 0 written, 1 error (unknown partner, a period that is not the\n"
    "program's, service not reachable, file not written), 2 usage.\n";

/* ---- arguments ---- */

enum { OPT_PERIOD = 1, OPT_OUT };

static const tly_opt stmt_opts_table[] = {{"--period", OPT_PERIOD, true},
                                          {"--out", OPT_OUT, TLY_OPT_PATH}};

static int stmt_opt(void *ctx, int id, const char *val)
{
    stmt_opts *o = ctx;
    tly_period_kind kind;
    int32_t p;
    if (id == OPT_PERIOD && tly_period_parse(val, strlen(val), &kind, &p) != TLY_OK)
        return tly_usagef(CMD, "--period: '%s' is not a period like 2026-Q3 or 2026-07", val);
    if (id == OPT_OUT && tly_report_format_of(val, &o->format) != TLY_OK)
        return tly_usagef(CMD, "--out: '%s' does not end in .pdf or .html", val);
    if (id == TLY_OPT_ARG && o->partner)
        return tly_usagef(CMD, "one partner only ('%s' and '%s')", o->partner, val);
    o->period = id == OPT_PERIOD ? val : o->period;
    o->out = id == OPT_OUT ? val : o->out;
    o->partner = id == TLY_OPT_ARG ? val : o->partner;
    return TLY_EXIT_OK;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(stmt_opts *o, int argc, char **argv)
{
    *o = (stmt_opts){0};
    tly_common_defaults(&o->common);
    const tly_cli_spec spec = {CMD, TLY_CO_DATA | TLY_CO_QUERY, stmt_opts_table, 2, stmt_opt, o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP) {
        fputs(usage_text, stdout);
        return TLY_EXIT_OK;
    }
    if (rc != TLY_EXIT_OK)
        return rc;
    if (o->partner == NULL)
        return tly_usagef(CMD, "PARTNER is required");
    if (o->period == NULL)
        return tly_usagef(CMD, "--period is required");
    if (o->out == NULL)
        return tly_usagef(CMD, "--out is required");
    return tly_common_endpoints(CMD, &o->common) == TLY_EXIT_OK ? -1 : TLY_EXIT_FAIL;
}

/* ---- the answers ---- */

/* One request to the service; an error reply is printed and fails. */
static int ask(const stmt_opts *o, json_t *req, json_t **reply)
{
    json_t *r = NULL;
    tly_err err =
        req == NULL ? TLY_NOMEM : tly_query_call(o->common.query, req, TLY_QUERY_TIMEOUT_MS, &r);
    json_decref(req);
    if (err == TLY_TIMEOUT || err == TLY_IO)
        return tly_cli_unreachable(CMD, &o->common);
    if (err == TLY_USAGE)
        return tly_usagef(CMD, "bad query endpoint '%s'", o->common.query);
    if (err != TLY_OK) {
        tly_errorf(CMD, "query failed: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    const char *code = json_string_value(json_object_get(r, "error"));
    if (code != NULL) {
        const char *m = json_string_value(json_object_get(r, "message"));
        tly_errorf(CMD, "%s", m != NULL ? m : code);
        json_decref(r);
        return TLY_EXIT_FAIL;
    }
    *reply = r;
    return TLY_EXIT_OK;
}

static json_t *partner_req(const char *q, const char *partner)
{
    return json_pack("{s:s, s:s}", "q", q, "partner", partner);
}

void stmt_answers_free(stmt_answers *a)
{
    json_t *all[] = {a->balance, a->rebate, a->tier, a->claims, a->report, a->expiring, a->name};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]);
    *a = (stmt_answers){0};
}

static uint64_t seq_of(const json_t *r)
{
    return (uint64_t)json_integer_value(json_object_get(r, "seq"));
}

/* Reads every answer once; *same tells whether they share one seq. */
static int ask_all(const stmt_opts *o, stmt_answers *a, bool *same)
{
    int rc = ask(o, partner_req("balance", o->partner), &a->balance);
    if (rc != TLY_EXIT_OK)
        return rc;
    const char *program = json_string_value(json_object_get(a->balance, "program"));
    if (program == NULL) {
        tly_errorf(CMD, "the balance of %s names no program", o->partner);
        return TLY_EXIT_FAIL;
    }
    if ((rc = ask(o, partner_req("rebate", o->partner), &a->rebate)) != TLY_EXIT_OK ||
        (rc = ask(o, partner_req("tier", o->partner), &a->tier)) != TLY_EXIT_OK ||
        (rc = ask(o, partner_req("claims", o->partner), &a->claims)) != TLY_EXIT_OK ||
        (rc = ask(o, json_pack("{s:s, s:s}", "q", "report", "program", program), &a->report)) !=
            TLY_EXIT_OK ||
        (rc = ask(o, json_pack("{s:s, s:s}", "q", "expiring", "program", program), &a->expiring)) !=
            TLY_EXIT_OK)
        return rc;
    a->seq = seq_of(a->balance);
    const json_t *all[] = {a->rebate, a->tier, a->claims, a->report, a->expiring};
    *same = true;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        *same = *same && seq_of(all[i]) == a->seq;
    return TLY_EXIT_OK;
}

/* The partner's name from the partner list (absent when the list does
 * not have it: the statement then shows the id alone). */
static void ask_name(const stmt_opts *o, stmt_answers *a)
{
    json_t *r = NULL;
    if (ask(o, json_pack("{s:s, s:s}", "q", "partners", "search", o->partner), &r) != TLY_EXIT_OK)
        return;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r, "partners"), i, p)
    {
        const char *id = json_string_value(json_object_get(p, "partner"));
        if (id != NULL && strcmp(id, o->partner) == 0)
            a->name = json_incref(json_object_get(p, "name"));
    }
    json_decref(r);
}

/* Every answer at one seq: read again while a shard moves between them. */
static int gather(const stmt_opts *o, stmt_answers *a)
{
    for (uint32_t attempt = 0; attempt < TLY_STATEMENT_ATTEMPTS_MAX; attempt++) {
        bool same = false;
        int rc = ask_all(o, a, &same);
        if (rc != TLY_EXIT_OK || same) {
            if (rc == TLY_EXIT_OK)
                ask_name(o, a);
            return rc;
        }
        stmt_answers_free(a);
        struct timespec ts = {0, (long)TLY_STATEMENT_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    tly_errorf(CMD,
               "the shards kept applying records: no %u answers in a row agreed on one "
               "seq; try again when the ledger is quieter",
               TLY_STATEMENT_ATTEMPTS_MAX);
    return TLY_EXIT_FAIL;
}

int tly_cmd_statement(int argc, char **argv)
{
    stmt_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc >= 0)
        return rc;
    stmt_answers a = {0};
    json_t *st = NULL;
    rc = gather(&o, &a);
    if (rc == TLY_EXIT_OK)
        rc = stmt_build(CMD, o.common.data, o.partner, o.period, &a, &st);
    char msg[512] = "";
    if (rc == TLY_EXIT_OK &&
        tly_report_statement_write(st, o.format, o.out, msg, sizeof msg) != TLY_OK) {
        tly_errorf(CMD, "cannot write %s: %s", o.out, msg);
        rc = TLY_EXIT_FAIL;
    }
    if (rc == TLY_EXIT_OK)
        printf("wrote %s: %s, %s, as of seq %llu%s\n", o.out, o.partner, o.period,
               (unsigned long long)a.seq,
               json_is_true(json_object_get(st, "activity")) ? "" : " (no activity)");
    json_decref(st);
    stmt_answers_free(&a);
    if (rc == TLY_EXIT_OK && fflush(stdout) != 0)
        rc = TLY_EXIT_FAIL;
    return rc;
}
