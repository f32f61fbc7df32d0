/*
 * cmd_explain.c — `tally explain PARTNER [--period P] [--json] [--data DIR]
 * [--to SEQ]`: every MDF and rebate figure of a partner traced to the
 * events that made it (issue "Audit, replay and explainable balances").
 *
 * Reads DIR/log read-only and folds it from seq 1 into a fresh one-shard
 * engine with the trace hook set for PARTNER (tly_explain.h), up to --to
 * or the head; folding is about a million events a second, so no view
 * store is needed and the answer does not depend on the consumers. Then
 * prints the lines, their sums next to the balance fields, and per rebate
 * period the revenue lines, bracket, adjustments and payouts.
 *
 * Exit codes: 0 the lines match the balance and rebate views; 1 they do
 * not (the difference is named on stderr), an unknown partner, or an
 * unreadable log; 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_engine.h"
#include "tly_explain.h"
#include "tly_query.h"

#define CMD "explain"

typedef struct explain_opts {
    const char *partner;
    const char *period; /* --period P, NULL: every period */
    const char *data;
    uint64_t to_seq; /* --to SEQ, UINT64_MAX: the head */
    bool json;
} explain_opts;

static const char usage_text[] =
    "Usage: tally explain PARTNER [--period P] [--json] [--data DIR] [--to SEQ]\n"
    "\n"
    "Traces every MDF and rebate figure of PARTNER to the events that moved it:\n"
    "accruals (sale, tier, rate, the exchange rate of a foreign sale, the part an\n"
    "MDF cap cut), clawbacks, adjustments, bucket credits and debits, deficit, claim\n"
    "reservations, releases, approvals and payments, expiries; per rebate period the\n"
    "revenue lines, basis (growth over the baseline periods), bracket, tier bonus,\n"
    "minimum and cap, adjustments, referral fees and payouts; and each tier grace\n"
    "decision. The sums of the lines are checked against the balance and rebate\n"
    "figures, payable and accrued_open included.\n"
    "\n"
    "Options:\n"
    "  --period P  show only the lines of effective period P (2026-Q3, 2026-07);\n"
    "              the check against the balance still covers every line\n"
    "  --json      one JSON object (see consumers/engine/tly_explain.h)\n"
    "  --data DIR  data directory (default $TALLY_DATA, else ./tally-data);\n"
    "              DIR/log is read, never written\n"
    "  --to SEQ    explain the figures as of seq SEQ\n"
    "\n"
    "Exit codes: 0 the lines match, 1 they do not / unknown partner / error, 2 usage.\n";

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */

enum { OPT_PERIOD = 1, OPT_TO };

static const tly_opt explain_opts_table[] = {{"--period", OPT_PERIOD, true},
                                             {"--to", OPT_TO, true}};

static int explain_opt(void *ctx, int id, const char *val)
{
    explain_opts *o = ctx;
    tly_period_kind kind;
    int32_t p;
    if (id == OPT_PERIOD && tly_period_parse(val, strlen(val), &kind, &p) != TLY_OK)
        return tly_usagef(CMD, "--period: '%s' is not a period like 2026-Q3 or 2026-07", val);
    if (id == OPT_TO && !tly_parse_u64(val, 1, UINT64_MAX - 1, &o->to_seq))
        return tly_usagef(CMD, "--to: '%s' is not a seq (1 or more)", val);
    if (id == TLY_OPT_ARG && o->partner)
        return tly_usagef(CMD, "one partner only ('%s' and '%s')", o->partner, val);
    o->period = id == OPT_PERIOD ? val : o->period;
    o->partner = id == TLY_OPT_ARG ? val : o->partner;
    return TLY_EXIT_OK;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(explain_opts *o, int argc, char **argv)
{
    tly_common_opts common;
    tly_common_defaults(&common);
    *o = (explain_opts){.to_seq = UINT64_MAX};
    const tly_cli_spec spec = {CMD, TLY_CO_DATA | TLY_CO_JSON, explain_opts_table, 2, explain_opt,
                               o};
    int rc = tly_cli_parse(&spec, &common, argc, argv);
    if (rc == TLY_CLI_HELP) {
        fputs(usage_text, stdout);
        return TLY_EXIT_OK;
    }
    if (rc != TLY_EXIT_OK)
        return rc;
    o->data = common.data;
    o->json = common.json;
    if (o->partner == NULL)
        return tly_usagef(CMD, "PARTNER is required");
    return -1;
}

/* Folds DIR/log to min(--to, head) through tly_audit_explain_fold. Returns
 * -1 to go on, else the exit code. */
static int fold_data(const explain_opts *o, tly_engine *e, tly_explain *x)
{
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_explain_fold(o->data, o->to_seq, e, x, msg, sizeof msg);
    if (err == TLY_OK)
        return -1;
    if (err == TLY_USAGE)
        return tly_usagef(CMD, "%s", msg);
    tly_errorf(CMD, "%s", msg[0] ? msg : tly_strerror(err));
    return TLY_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* Human output                                                              */

/* The program's currency, for every amount of a report. */
typedef struct xmoney {
    const char *cur;
    int exp;
} xmoney;

/* Money text in one of a few rotating buffers, so a printf can hold
 * several amounts. */
#define MONEY_BUFS 8
static const char *money(int64_t minor, int exp)
{
    static char bufs[MONEY_BUFS][TLY_QUERY_MONEY_CHARS];
    static unsigned next;
    char *b = bufs[next++ % MONEY_BUFS];
    tly_query_format_money(minor, exp, b, TLY_QUERY_MONEY_CHARS);
    return b;
}

static const char *rate(int64_t bps)
{
    static char bufs[4][16];
    static unsigned next;
    char *b = bufs[next++ % 4];
    tly_query_format_bps(bps, b, 16);
    return b;
}

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "?";
}

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* "source/id" of a line's event. */
static void event_name(const json_t *l, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", sget(l, "source"), sget(l, "id"));
}

/* An amount in the program's currency, and for a converted line the
 * conversion that made it: "EUR 1,000.00 at 1.0823 = USD 1,082.30" [F2]. */
static void amount_text(const json_t *l, int64_t amount, const xmoney *m, char *buf, size_t cap)
{
    const char *fc = json_string_value(json_object_get(l, "currency"));
    if (fc == NULL) {
        snprintf(buf, cap, "%s", money(amount, m->exp));
        return;
    }
    snprintf(buf, cap, "%s %s at %s = %s %s", fc,
             money(iget(l, "foreign_amount"), tly_query_currency_exponent(fc)), sget(l, "rate"),
             m->cur, money(amount, m->exp));
}

/* An accrual, and what the MDF cap of its period cut off [K1]. */
static void accrual_detail(const json_t *l, const char *ev, const xmoney *m, char *buf, size_t cap)
{
    char amount[160];
    const char *kind = sget(l, "kind");
    if (strcmp(kind, "capped") == 0) {
        const json_t *c = json_object_get(l, "cap");
        snprintf(buf, cap, "sale %s: capped at %s for %s (accrual %s before the cap)", ev,
                 json_is_integer(c) ? money(json_integer_value(c), m->exp) : "?", sget(l, "period"),
                 money(iget(l, "accrual_uncapped"), m->exp));
        return;
    }
    amount_text(l, iget(l, "sale_amount"), m, amount, sizeof amount);
    snprintf(buf, cap, "sale %s: %s at %s (tier %s)%s", ev, amount, rate(iget(l, "bps")),
             sget(l, "tier"), json_is_true(json_object_get(l, "late")) ? ", late" : "");
}

/* The right-hand description of an MDF line. */
static void mdf_detail(const json_t *l, const xmoney *m, char *buf, size_t cap)
{
    const char *kind = sget(l, "kind");
    char ev[160], amount[160];
    event_name(l, ev, sizeof ev);
    if (strcmp(kind, "accrual") == 0 || strcmp(kind, "capped") == 0) {
        accrual_detail(l, ev, m, buf, cap);
    } else if (strcmp(kind, "clawback") == 0) {
        amount_text(l, iget(l, "returned"), m, amount, sizeof amount);
        snprintf(buf, cap, "return %s of sale %s: returned %s at %s%s", ev, sget(l, "sale"), amount,
                 rate(iget(l, "bps")),
                 json_is_true(json_object_get(l, "capped")) ? ", capped at the accrual left" : "");
    } else if (strcmp(kind, "adjust_mdf") == 0) {
        snprintf(buf, cap, "adjust %s", ev);
    } else if (strcmp(kind, "expiry") == 0) {
        snprintf(buf, cap, "close %s: bucket %s expired", ev, sget(l, "bucket"));
    } else if (json_object_get(l, "claim") != NULL) {
        snprintf(buf, cap, "claim %s (%s %s)%s%s", sget(l, "claim"), sget(l, "cause"), ev,
                 json_object_get(l, "bucket") ? ", bucket " : "",
                 json_object_get(l, "bucket") ? sget(l, "bucket") : "");
    } else if (json_object_get(l, "bucket") != NULL) {
        snprintf(buf, cap, "bucket %s", sget(l, "bucket"));
    } else {
        snprintf(buf, cap, "%s", "");
    }
}

/* Bucket-level lines are indented under the movement that caused them,
 * and so is the part of an accrual its cap cut. */
static bool is_sub_line(const char *kind)
{
    return strcmp(kind, "credit") == 0 || strcmp(kind, "debit") == 0 ||
           strcmp(kind, "deficit") == 0 || strcmp(kind, "deficit_payoff") == 0 ||
           strcmp(kind, "capped") == 0;
}

static void print_mdf_lines(const json_t *lines, const xmoney *m)
{
    printf("  %8s  %-8s  %-18s %16s  %s\n", "seq", "period", "movement", "amount", "detail");
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        char detail[512], kind[40];
        const char *k = sget(l, "kind");
        snprintf(kind, sizeof kind, "%s%s", is_sub_line(k) ? "  " : "", k);
        mdf_detail(l, m, detail, sizeof detail);
        printf("  %8lld  %-8s  %-18s %16s  %s\n", (long long)iget(l, "seq"), sget(l, "period"),
               kind, money(iget(l, "amount"), m->exp), detail);
    }
}

static void print_totals(const json_t *mdf, const json_t *bal_totals, int exp, const char *period)
{
    static const char *const keys[] = {"accrued",  "clawed_back", "adjusted", "expired",  "pending",
                                       "approved", "paid",        "deficit",  "available"};
    const json_t *t = json_object_get(mdf, "totals"), *pt = json_object_get(mdf, "period_totals");
    printf("\n  %-12s %16s %16s", "total", "sum of lines", "balance");
    char in_period[32];
    snprintf(in_period, sizeof in_period, "its %s lines", period ? period : "");
    if (pt != NULL) /* what the shown lines moved; the check covers them all */
        printf(" %16s", in_period);
    printf("\n");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        printf("  %-12s %16s %16s", keys[i], money(iget(t, keys[i]), exp),
               money(iget(bal_totals, keys[i]), exp));
        if (pt != NULL)
            printf(" %16s", money(iget(pt, keys[i]), exp));
        printf("\n");
    }
    size_t i;
    json_t *b;
    printf("  buckets:");
    json_array_foreach(json_object_get(mdf, "buckets"), i, b)
        printf(" %s %s", sget(b, "period"), money(iget(b, "remaining"), exp));
    printf("%s\n", json_array_size(json_object_get(mdf, "buckets")) == 0 ? " none" : "");
}

static void print_rebate_line(const json_t *l, int exp, const char *label)
{
    char ev[160];
    event_name(l, ev, sizeof ev);
    const json_t *sale = json_object_get(l, "sale");
    printf("    %8lld  %-10s %16s  %s%s%s%s\n", (long long)iget(l, "seq"), label,
           money(iget(l, "amount"), exp), ev, sale ? " of sale " : "",
           sale ? json_string_value(sale) : "",
           json_is_true(json_object_get(l, "late")) ? ", late" : "");
}

/* A referral fee: the deal, the referred amount (converted) and the rate
 * of the tier [Q1]. */
static void print_referral_line(const json_t *l, const xmoney *m)
{
    char ev[160], amount[160];
    event_name(l, ev, sizeof ev);
    amount_text(l, iget(l, "referred"), m, amount, sizeof amount);
    printf("    %8lld  %-10s %16s  deal '%s' (%s): %s referred at %s (tier %s)%s\n",
           (long long)iget(l, "seq"), "referral", money(iget(l, "amount"), m->exp), sget(l, "deal"),
           ev, amount, rate(iget(l, "bps")), sget(l, "tier"),
           json_is_true(json_object_get(l, "late")) ? ", late" : "");
}

/* The basis the brackets apply to: net revenue, or its growth over the
 * mean of the baseline periods, each listed [R11]; under the minimum
 * nothing is earned [K2]. */
static void print_basis(const json_t *r, int exp)
{
    const json_t *b = json_object_get(r, "baseline");
    if (json_is_integer(b)) {
        printf("    %8s  %-10s %16s  growth over baseline %s, the mean of", "", "basis",
               money(iget(r, "basis"), exp), money(json_integer_value(b), exp));
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(r, "baseline_periods"), i, p)
            printf("%s %s %s", i ? "," : "", sget(p, "period"), money(iget(p, "revenue"), exp));
        printf("\n");
    } else {
        printf("    %8s  %-10s %16s  net revenue%s\n", "", "basis", money(iget(r, "basis"), exp),
               iget(r, "revenue") < 0 ? " below 0 counts 0" : "");
    }
    if (iget(r, "basis") < iget(r, "minimum"))
        printf("    %8s  %-10s %16s  under the minimum %s: rate 0\n", "", "", "",
               money(iget(r, "minimum"), exp));
}

/* The bracket reached, with the tier bonus its rate includes [R14], and
 * the rebate cap when it cut the figure [K3]. */
static void print_calculated(const json_t *r, int exp)
{
    const json_t *br = json_object_get(r, "bracket"), *bonus = json_object_get(r, "bonus");
    char with_bonus[200] = "";
    if (json_is_object(bonus) && iget(br, "bps") > 0) /* none under the minimum [K2] */
        snprintf(with_bonus, sizeof with_bonus, " incl. %s bonus %s", sget(bonus, "tier"),
                 rate(iget(bonus, "bps")));
    printf("    %8s  %-10s %16s  bracket from %s at %s%s\n", "", "calculated",
           money(iget(r, "calculated"), exp), money(iget(br, "from"), exp), rate(iget(br, "bps")),
           with_bonus);
    if (json_is_true(json_object_get(r, "capped")))
        printf("    %8s  %-10s %16s  capped at %s for %s (rebate cap)\n", "", "capped",
               money(iget(r, "cap"), exp), money(iget(r, "cap"), exp), sget(r, "period"));
}

static void print_row(const json_t *r, const xmoney *m)
{
    int exp = m->exp;
    bool final = strcmp(sget(r, "status"), "final") == 0;
    printf("\n  %s  %s", sget(r, "period"), sget(r, "status"));
    if (final)
        printf(" (closed at seq %lld)", (long long)iget(r, "final_seq"));
    printf(", %s\n", sget(r, "mode"));
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(r, "revenue_lines"), i, l)
        print_rebate_line(l, exp, iget(l, "amount") < 0 ? "return" : "sale");
    printf("    %8s  %-10s %16s\n", "", "revenue", money(iget(r, "revenue"), exp));
    print_basis(r, exp);
    json_array_foreach(json_object_get(r, "slices"), i, l)
        printf("    %8s  %-10s %16s  from %s at %s\n", "", "slice", money(iget(l, "amount"), exp),
               money(iget(l, "from"), exp), rate(iget(l, "bps")));
    print_calculated(r, exp);
    json_array_foreach(json_object_get(r, "adjustments"), i, l) print_rebate_line(l, exp, "adjust");
    printf("    %8s  %-10s %16s\n", "", "rebate", money(iget(r, "rebate"), exp));
    json_array_foreach(json_object_get(r, "referral_lines"), i, l) print_referral_line(l, m);
    if (json_array_size(json_object_get(r, "referral_lines")) > 0)
        printf("    %8s  %-10s %16s\n", "", "referrals", money(iget(r, "referral"), exp));
    json_array_foreach(json_object_get(r, "payouts"), i, l) print_rebate_line(l, exp, "payout");
    printf("    %8s  %-10s %16s%s\n", "", "paid", money(iget(r, "paid"), exp),
           json_is_true(json_object_get(r, "matches")) ? "" : "   DIFFERS from the rebate view");
}

/* "1 more failing close", "no more failing closes". */
static void closes_left(int64_t n, char *buf, size_t cap)
{
    if (n <= 0)
        snprintf(buf, cap, "no more failing closes");
    else
        snprintf(buf, cap, "%lld more failing close%s", (long long)n, n == 1 ? "" : "s");
}

/* One grace decision of a close, in words [T9]. */
static void grace_text(const json_t *l, char *buf, size_t cap)
{
    int64_t now = iget(l, "amount"), before = iget(l, "failing_closes_before");
    char left[64];
    if (now > 0) {
        closes_left(iget(l, "grace") - now, left, sizeof left);
        snprintf(buf, cap, "kept %s by grace: %s", sget(l, "tier"), left);
    } else if (strcmp(sget(l, "move"), "down") == 0) {
        snprintf(buf, cap, "grace used up after %lld failing close%s: %s -> %s",
                 (long long)before + 1, before == 0 ? "" : "s", sget(l, "tier_before"),
                 sget(l, "tier"));
    } else {
        snprintf(buf, cap, "passing close: failing closes back to 0 (%s%s%s)",
                 sget(l, "tier_before"), strcmp(sget(l, "move"), "up") == 0 ? " -> " : "",
                 strcmp(sget(l, "move"), "up") == 0 ? sget(l, "tier") : "");
    }
}

static void print_grace(const json_t *lines)
{
    if (json_array_size(lines) == 0)
        return;
    printf("\nTier grace\n  %8s  %-8s  %s\n", "seq", "period", "decision");
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        char text[400];
        grace_text(l, text, sizeof text);
        printf("  %8lld  %-8s  %s\n", (long long)iget(l, "seq"), sget(l, "period"), text);
    }
}

/* What is owed on rebates: final periods (rebate + referral fees − paid)
 * and the open estimate [R10] [Q3] [P4]. */
static void print_dues(const json_t *rebates, int exp)
{
    printf("\n  %-44s %16s\n", "payable (final: rebate + referrals - paid)",
           money(iget(rebates, "payable"), exp));
    printf("  %-44s %16s\n", "accrued in open periods (rebate + referrals)",
           money(iget(rebates, "accrued_open"), exp));
}

static void print_report(const json_t *rep, const json_t *bal_totals)
{
    xmoney m = {sget(rep, "currency"), tly_query_currency_exponent(sget(rep, "currency"))};
    const char *period = json_string_value(json_object_get(rep, "period"));
    printf("Partner   %s\nProgram   %s\nCurrency  %s\nAs of     seq %lld\n", sget(rep, "partner"),
           sget(rep, "program"), sget(rep, "currency"), (long long)iget(rep, "seq"));
    if (period != NULL)
        printf("Period    %s\n", period);
    const json_t *mdf = json_object_get(rep, "mdf");
    printf("\nMDF\n");
    print_mdf_lines(json_object_get(mdf, "lines"), &m);
    print_totals(mdf, bal_totals, m.exp, period);
    printf("\nRebates\n");
    const json_t *rebates = json_object_get(rep, "rebates");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rebates, "periods"), i, r) print_row(r, &m);
    if (json_array_size(json_object_get(rebates, "periods")) == 0)
        printf("  no rebate periods\n");
    print_dues(rebates, m.exp);
    print_grace(json_object_get(rep, "grace"));
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* The verdict                                                               */

/* The balance fields as the differences see them: totals with the
 * balance's value where the lines differ. */
static json_t *balance_totals(const json_t *mdf)
{
    json_t *t = json_deep_copy(json_object_get(mdf, "totals"));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(mdf, "differences"), i,
                       d) if (strcmp(sget(d, "field"), "buckets") != 0)
        json_object_set(t, sget(d, "field"), json_object_get(d, "balance"));
    return t;
}

/* Names the first difference on stderr. */
static void report_mismatch(const json_t *rep, int exp)
{
    const json_t *mdf = json_object_get(rep, "mdf");
    const json_t *d = json_array_get(json_object_get(mdf, "differences"), 0);
    if (d != NULL && strcmp(sget(d, "field"), "buckets") != 0) {
        tly_errorf(CMD, "%s: the lines sum to %s, the balance says %s (difference %s) at seq %lld",
                   sget(d, "field"), money(iget(d, "lines"), exp), money(iget(d, "balance"), exp),
                   money(iget(d, "lines") - iget(d, "balance"), exp), (long long)iget(rep, "seq"));
        return;
    }
    if (d != NULL) {
        tly_errorf(CMD, "bucket remainders of the lines differ from the balance at seq %lld",
                   (long long)iget(rep, "seq"));
        return;
    }
    tly_errorf(CMD, "a rebate period's lines differ from the rebate view at seq %lld",
               (long long)iget(rep, "seq"));
}

static int print_result(const explain_opts *o, const json_t *rep, bool matches)
{
    int exp = tly_query_currency_exponent(sget(rep, "currency"));
    if (o->json) {
        char *text = json_dumps(rep, JSON_COMPACT);
        if (text == NULL) {
            tly_errorf(CMD, "out of memory");
            return TLY_EXIT_FAIL;
        }
        puts(text);
        free(text);
    } else {
        json_t *bt = balance_totals(json_object_get(rep, "mdf"));
        print_report(rep, bt);
        json_decref(bt);
        if (matches)
            printf("matches balance at seq %lld\n", (long long)iget(rep, "seq"));
    }
    if (!matches)
        report_mismatch(rep, exp);
    return matches ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}

static int report(const explain_opts *o, tly_engine *e, tly_explain *x)
{
    json_t *rep = NULL;
    bool matches = false;
    tly_err err = tly_explain_report(x, o->period, &rep, &matches);
    if (err == TLY_NOT_FOUND) {
        tly_errorf(CMD, "unknown partner '%s' at seq %llu", o->partner,
                   (unsigned long long)tly_engine_seq(e));
        return TLY_EXIT_FAIL;
    }
    if (err == TLY_BAD_FIELD) {
        tly_errorf(CMD, "--period %s is not a period of the partner's program", o->period);
        return TLY_EXIT_FAIL;
    }
    if (err != TLY_OK) {
        tly_errorf(CMD, "%s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    int rc = print_result(o, rep, matches);
    json_decref(rep);
    return rc;
}

int tly_cmd_explain(int argc, char **argv)
{
    explain_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc >= 0)
        return rc;
    tly_engine *e = NULL;
    tly_explain *x = NULL;
    if (tly_engine_new(0, 1, &e) != TLY_OK || tly_explain_new(e, o.partner, &x) != TLY_OK) {
        tly_engine_free(e);
        tly_errorf(CMD, "out of memory");
        return TLY_EXIT_FAIL;
    }
    rc = fold_data(&o, e, x);
    if (rc < 0)
        rc = report(&o, e, x);
    tly_explain_free(x);
    tly_engine_free(e);
    return rc;
}
