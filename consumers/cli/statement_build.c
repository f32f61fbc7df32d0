/*
 * statement_build.c — the statement object of tly_report.h from the query
 * service's answers at seq S and the explain fold of DATA/log to S.
 *
 * Choices (README "Partner statements"):
 *  - Opening and closing balance are the available MDF by effective period:
 *    the opening sums what every explain line of an earlier period did to
 *    `available`, the closing adds the period's own lines. Over all
 *    periods the closing is the balance's `available`, which is checked.
 *  - The chart's available MDF is that closing per period; its revenue is
 *    the cumulative net revenue of the rebate rows (SPEC [R3]), the same
 *    rows the statement lists. Periods run from the program's first to the
 *    later of its earliest open period and its latest period with a figure.
 *  - Claims, payable, tier and expiring funds are as of S (a claim has no
 *    period); the rebate rows are those up to the statement's period.
 *  - The lines are explain's JSON lines of the period (MDF lines, revenue,
 *    referral, adjustment and payout lines of its rebate row, grace
 *    lines): every array of objects with a "seq" and a "kind" in explain's
 *    report, so lines explain adds later are listed too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statement.h"
#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_engine.h"
#include "tly_explain.h"
#include "tly_limits.h"
#include "tly_period.h"

/* Nesting explain's report has at most where lines are found. */
#define LINES_DEPTH_MAX 4

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static bool period_of(const json_t *o, const char *k, tly_period_kind *kind, int32_t *p)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL && tly_period_parse(s, strlen(s), kind, p) == TLY_OK;
}

/* ---- the program's periods ---- */

typedef struct span {
    tly_period_kind kind;
    int32_t first, open, last; /* first period, earliest open, latest with a figure */
    const json_t *expiring;    /* the program's row of the expiring answer */
} span;

static int program_span(const char *cmd, const stmt_answers *a, span *s)
{
    const char *program = json_string_value(json_object_get(a->balance, "program"));
    size_t i;
    json_t *row;
    s->expiring = NULL;
    json_array_foreach(json_object_get(a->expiring, "programs"), i, row)
    {
        const char *name = json_string_value(json_object_get(row, "program"));
        if (name != NULL && strcmp(name, program) == 0)
            s->expiring = row;
    }
    if (s->expiring == NULL || !period_of(s->expiring, "period", &s->kind, &s->open)) {
        tly_errorf(cmd, "the expiring answer lists no open period of program %s", program);
        return TLY_EXIT_FAIL;
    }
    const json_t *ps = json_object_get(a->report, "periods");
    tly_period_kind k;
    s->first = s->last = s->open;
    if (json_array_size(ps) > 0 &&
        (!period_of(json_array_get(ps, 0), "period", &k, &s->first) ||
         !period_of(json_array_get(ps, json_array_size(ps) - 1), "period", &k, &s->last))) {
        tly_errorf(cmd, "the report of program %s has a bad period", program);
        return TLY_EXIT_FAIL;
    }
    s->last = s->last > s->open ? s->last : s->open;
    s->first = s->first < s->open ? s->first : s->open;
    return TLY_EXIT_OK;
}

/* [JN4]-like: a period of the program's kind within its span, else 1. */
static int check_period(const char *cmd, const stmt_answers *a, const span *s, const char *text,
                        int32_t *p)
{
    tly_period_kind kind;
    char first[TLY_PERIOD_TEXT_BYTES], last[TLY_PERIOD_TEXT_BYTES];
    const char *program = json_string_value(json_object_get(a->balance, "program"));
    (void)tly_period_parse(text, strlen(text), &kind, p); /* parsed by the option already */
    tly_period_format(s->kind, s->first, first);
    tly_period_format(s->kind, s->last, last);
    if (kind != s->kind) {
        tly_errorf(cmd, "--period %s is not a period of program %s: its periods are %s", text,
                   program, s->kind == TLY_PERIOD_QUARTER ? "quarters" : "months");
        return TLY_EXIT_FAIL;
    }
    if (*p < s->first || *p > s->last) {
        tly_errorf(cmd, "--period %s is not a period of program %s: it runs from %s to %s", text,
                   program, first, last);
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}

/* ---- the fold ---- */

/* Folds DATA/log to a->seq with the explain trace; the two reports. */
static int fold(const char *cmd, const char *data, const char *partner, const char *period,
                const stmt_answers *a, json_t **all, json_t **per)
{
    tly_engine *e = NULL;
    tly_explain *x = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    bool ok_all = false, ok_per = false;
    tly_err err = tly_engine_new(0, 1, &e);
    err = err == TLY_OK ? tly_explain_new(e, partner, &x) : err;
    if (err == TLY_OK &&
        (err = tly_audit_explain_fold(data, a->seq, e, x, msg, sizeof msg)) == TLY_NOT_FOUND)
        snprintf(msg, sizeof msg,
                 "the log under %s ends before seq %llu of the query service's answers: is "
                 "--data the stack's data directory?",
                 data, (unsigned long long)a->seq);
    err = err == TLY_OK ? tly_explain_report(x, NULL, all, &ok_all) : err;
    err = err == TLY_OK ? tly_explain_report(x, period, per, &ok_per) : err;
    tly_explain_free(x);
    tly_engine_free(e);
    /* The balances are built from the MDF lines: they must match. The
     * rebate figures are the service's; lines that explain them otherwise
     * are named, and the statement is still written. */
    bool mdf_ok = err == TLY_OK &&
                  json_is_true(json_object_get(json_object_get(*all, "mdf"), "matches_balance"));
    if (err == TLY_OK && !mdf_ok)
        snprintf(msg, sizeof msg, "the MDF lines of %s do not match its balance at seq %llu",
                 partner, (unsigned long long)a->seq);
    if (err != TLY_OK || !mdf_ok) {
        tly_errorf(cmd, "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    if (!ok_all || !ok_per)
        fprintf(stderr,
                "tally %s: warning: the rebate lines of %s differ from its rebate view at "
                "seq %llu (see 'tally explain'); the statement shows the view's figures\n",
                cmd, partner, (unsigned long long)a->seq);
    return TLY_EXIT_OK;
}

/* ---- lines ---- */

static bool is_line(const json_t *v)
{
    return json_is_object(v) && json_is_integer(json_object_get(v, "seq")) &&
           json_is_string(json_object_get(v, "kind"));
}

/* Appends every line under v (arrays of lines, at any depth up to
 * LINES_DEPTH_MAX) to out. */
static void collect(const json_t *v, json_t *out, int depth)
{
    if (depth > LINES_DEPTH_MAX)
        return;
    if (json_is_array(v) && json_array_size(v) > 0 && is_line(json_array_get(v, 0))) {
        size_t i;
        json_t *l;
        json_array_foreach(v, i, l) if (is_line(l)) json_array_append(out, l);
        return;
    }
    size_t i;
    json_t *c;
    const char *k;
    if (json_is_array(v))
        json_array_foreach(v, i, c) collect(c, out, depth + 1);
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, c) collect(c, out, depth + 1);
}

typedef struct ord_line {
    json_t *l;
    size_t at;
} ord_line;

static int by_seq(const void *a, const void *b)
{
    const ord_line *x = a, *y = b;
    int64_t s = iget(x->l, "seq"), t = iget(y->l, "seq");
    return s != t ? (s > t) - (s < t) : (x->at > y->at) - (x->at < y->at);
}

/* The period's lines in log order (stable within one seq). */
static json_t *period_lines(const json_t *per)
{
    json_t *raw = json_array(), *out = json_array();
    collect(per, raw, 0);
    size_t n = json_array_size(raw);
    ord_line *v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL || raw == NULL || out == NULL) {
        free(v);
        json_decref(raw);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (ord_line){json_array_get(raw, i), i};
    qsort(v, n, sizeof *v, by_seq);
    for (size_t i = 0; i < n; i++)
        json_array_append(out, v[i].l);
    free(v);
    json_decref(raw);
    return out;
}

/* ---- balances per period ---- */

/* What a line does to `available` = Σ bucket remainders − deficit (SPEC
 * section 6), as explain sums it (tly_explain.c add_line). */
static int64_t available_effect(const json_t *l)
{
    static const struct {
        const char *kind;
        int sign;
    } effects[] = {{"credit", 1},  {"debit", -1},   {"reserve", -1},
                   {"expiry", -1}, {"deficit", -1}, {"deficit_payoff", 1}};
    const char *kind = json_string_value(json_object_get(l, "kind"));
    for (size_t i = 0; kind != NULL && i < sizeof effects / sizeof effects[0]; i++)
        if (strcmp(kind, effects[i].kind) == 0)
            return effects[i].sign * iget(l, "amount");
    return 0;
}

/* Per period of s: the available MDF at its end and the cumulative
 * revenue, as the "chart" array; *opening and *closing of period p. */
static int chart(const char *cmd, const json_t *all, const stmt_answers *a, span *s, int32_t p,
                 json_t *out, int64_t *opening, int64_t *closing)
{
    const json_t *lines = json_object_get(json_object_get(all, "mdf"), "lines");
    size_t i;
    json_t *l;
    int32_t q;
    tly_period_kind k;
    json_array_foreach(lines, i, l) if (period_of(l, "period", &k, &q) && q > s->last) s->last = q;
    size_t n = (size_t)(s->last - s->first + 1);
    int64_t *avail = calloc(n, sizeof *avail), *rev = calloc(n, sizeof *rev), base = 0;
    if (avail == NULL || rev == NULL) {
        free(avail);
        free(rev);
        tly_errorf(cmd, "out of memory");
        return TLY_EXIT_FAIL;
    }
    json_array_foreach(lines, i, l) if (period_of(l, "period", &k, &q))
    {
        int64_t *slot = q < s->first ? &base : &avail[q - s->first];
        *slot += available_effect(l); /* bounded: the balance's own totals */
    }
    json_array_foreach(json_object_get(a->rebate, "periods"), i,
                       l) if (period_of(l, "period", &k, &q) && q >= s->first && q <= s->last)
        rev[q - s->first] += iget(l, "revenue");
    int64_t av = base, cum = 0;
    for (size_t j = 0; j < n; j++) {
        char text[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(s->kind, s->first + (int32_t)j, text);
        *opening = s->first + (int32_t)j == p ? av : *opening;
        av += avail[j];
        cum += rev[j];
        *closing = s->first + (int32_t)j == p ? av : *closing;
        json_array_append_new(out, json_pack("{s:s, s:I, s:I}", "period", text, "available",
                                             (json_int_t)av, "revenue", (json_int_t)cum));
    }
    free(avail);
    free(rev);
    if (av != iget(a->balance, "available")) {
        tly_errorf(cmd, "the explain lines sum to an available MDF other than the balance's");
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}

/* ---- the statement ---- */

/* The rebate rows of periods up to p. */
static json_t *rows_until(const json_t *rebate, int32_t p)
{
    json_t *out = json_array();
    size_t i;
    json_t *r;
    int32_t q;
    tly_period_kind k;
    json_array_foreach(json_object_get(rebate, "periods"), i,
                       r) if (period_of(r, "period", &k, &q) && q <= p) json_array_append(out, r);
    return out;
}

/* {"period","amount"}: what the next close expires of the partner's. */
static json_t *expiring(const span *s, const char *partner)
{
    json_int_t amount = 0;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(s->expiring, "partners"), i, r)
    {
        const char *id = json_string_value(json_object_get(r, "partner"));
        if (id != NULL && strcmp(id, partner) == 0)
            amount = json_integer_value(json_object_get(r, "amount"));
    }
    return json_pack("{s:O, s:I}", "period", json_object_get(s->expiring, "period"), "amount",
                     amount);
}

static json_t *assemble(const stmt_answers *a, const span *s, const char *period, int32_t p,
                        const json_t *per)
{
    const json_t *b = a->balance;
    json_t *lines = period_lines(per);
    json_t *mv = json_deep_copy(json_object_get(json_object_get(per, "mdf"), "period_totals"));
    json_object_del(mv, "available");
    json_t *st = json_pack(
        "{s:O, s:O, s:O, s:s, s:s, s:I, s:b, s:o, s:o, s:O, s:o, s:O, s:O, s:O, s:o}", "partner",
        json_object_get(b, "partner"), "program", json_object_get(b, "program"), "currency",
        json_object_get(b, "currency"), "period", period, "status", p < s->open ? "closed" : "open",
        "seq", (json_int_t)a->seq, "activity", json_array_size(lines) > 0, "movements", mv, "lines",
        lines, "claims", json_object_get(a->claims, "claims"), "rebates", rows_until(a->rebate, p),
        "payable", json_object_get(a->rebate, "payable"), "accrued_open",
        json_object_get(a->rebate, "accrued_open"), "tier", a->tier, "expiring",
        expiring(s, json_string_value(json_object_get(b, "partner"))));
    if (st != NULL && json_is_string(a->name))
        json_object_set(st, "name", a->name);
    return st;
}

int stmt_build(const char *cmd, const char *data, const char *partner, const char *period,
               const stmt_answers *a, json_t **out)
{
    span s;
    int32_t p;
    int rc = program_span(cmd, a, &s);
    if (rc == TLY_EXIT_OK)
        rc = check_period(cmd, a, &s, period, &p);
    json_t *all = NULL, *per = NULL, *points = json_array();
    if (rc == TLY_EXIT_OK)
        rc = fold(cmd, data, partner, period, a, &all, &per);
    int64_t opening = 0, closing = 0;
    if (rc == TLY_EXIT_OK)
        rc = chart(cmd, all, a, &s, p, points, &opening, &closing);
    json_t *st = rc == TLY_EXIT_OK ? assemble(a, &s, period, p, per) : NULL;
    if (rc == TLY_EXIT_OK && st == NULL) {
        tly_errorf(cmd, "out of memory");
        rc = TLY_EXIT_FAIL;
    }
    if (rc == TLY_EXIT_OK &&
        json_array_size(json_object_get(st, "lines")) > TLY_STATEMENT_LINES_MAX) {
        tly_errorf(cmd, "%s has more than %u lines in %s", partner, TLY_STATEMENT_LINES_MAX,
                   period);
        rc = TLY_EXIT_FAIL;
    }
    if (rc == TLY_EXIT_OK) {
        json_object_set_new(st, "opening", json_integer(opening));
        json_object_set_new(st, "closing", json_integer(closing));
        json_object_set(st, "chart", points);
        *out = st;
    } else {
        json_decref(st);
    }
    json_decref(points);
    json_decref(all);
    json_decref(per);
    return rc;
}
