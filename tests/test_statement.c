/*
 * test_statement.c — `tally statement` against a real `tally up` stack
 * (two shards, random loopback ports) holding seed102-v2, sent group by
 * group of source as test_up sends seed101:
 *
 *   - PDF and HTML statements of partners of both programs (quarters in
 *     USD, months in EUR), periods closed and open: `pdftotext` of the PDF
 *     holds the figures of the query service's JSON answers at the seq the
 *     statement names (balance, each rebate row up to the period and
 *     payable, each claim, the tier, the funds the next close expires,
 *     the chart's last point = available and the rows' cumulative revenue),
 *     as many explain lines as `tally explain --json --period` has, the
 *     period's status (closed before the earliest open period), an MDF
 *     bridge whose opening plus movements is the closing, the chart's
 *     point of the period, and the claims approved and paid in it as
 *     explain's approve and pay lines sum; the HTML holds the same
 *     figures, the lines in log order and an inline <svg> chart;
 *   - a partner without activity in the period: an empty statement that
 *     says so;
 *   - a period of the other kind, before the program's first or after its
 *     open one, an unknown partner: exit 1; a file that is neither .pdf
 *     nor .html, or no --period: exit 2.
 *
 * The limits at their edge, on a second stack of programs written here
 * (case "limits") and in-process (case "pages"):
 *   - TLY_STATEMENT_LINES_MAX lines in a period stated whole, one more
 *     refused (exit 1, the bound named);
 *   - TLY_STATEMENT_CHART_PERIODS_MAX periods charted whole; one more
 *     close and the chart shows the latest ones;
 *   - a PDF of TLY_STATEMENT_PAGES_MAX pages written, one line more
 *     refused by the report room (TLY_TOO_LARGE) with no file left.
 *
 * In-process too: the next tier's line when both needs are met, when one
 * is not, and at the top tier.
 *
 * Each stack is started once for its case (an unchecked fixture); every
 * test writes into its own temporary directory.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_limits.h"
#include "tly_query.h"
#include "tly_report.h"

#define VECTOR "seed102-v2-events.jsonl"

static tu_stack g;      /* the stack of the suite */
static long long g_seq; /* the vector's head */

/* ---- running tally ---- */

/* Sends the vector: consecutive records of one source as one `tally send
 * --source S` run, in file order. */
static void send_vector(void)
{
    char *path = tu_vector(VECTOR);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char group[1200], line[65536], source[128] = "";
    snprintf(group, sizeof group, "%s/group.jsonl", g.dir);
    FILE *gf = NULL;
    for (bool eof = false; !eof;) {
        eof = !fgets(line, sizeof line, f);
        json_t *rec = eof ? NULL : json_loads(line, 0, NULL);
        const char *src = rec ? json_string_value(json_object_get(rec, "source")) : NULL;
        ck_assert(eof || src);
        if (gf && (eof || strcmp(src, source) != 0)) {
            fclose(gf);
            gf = NULL;
            ck_assert_int_eq(tu_run_tally(NULL, NULL, "send", "--source", source, "--ingest",
                                          g.ingest, group, NULL),
                             0);
        }
        if (!eof) {
            if (!gf) {
                snprintf(source, sizeof source, "%s", src);
                gf = fopen(group, "w");
            }
            fputs(line, gf);
        }
        json_decref(rec);
    }
    fclose(f);
    free(path);
}

static void stack_up(void)
{
    tu_stack_opts o = {.shards = 2};
    ck_assert_msg(tu_stack_up(&g, &o), "%s", g.why);
    send_vector();
    char *vp = tu_vector("seed102-v2-expected.json");
    json_t *vec = json_load_file(vp, 0, NULL);
    free(vp);
    ck_assert_ptr_nonnull(vec);
    g_seq = (long long)json_integer_value(json_object_get(vec, "seq"));
    json_decref(vec);
    char seq[32];
    snprintf(seq, sizeof seq, "%lld", g_seq);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "wait", "--seq", seq, "--timeout", "120", "--query",
                                  g.query, NULL),
                     0);
}

static void stack_down(void)
{
    ck_assert_int_eq(tu_stack_down(&g), 0);
}

/* ---- text of the files ---- */

/* The file's text with every run of blanks made one space. */
static char *squeezed(const char *path)
{
    char *t = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(t);
    size_t o = 0;
    for (size_t i = 0; t[i]; i++) {
        bool blank = t[i] == ' ' || t[i] == '\t';
        if (blank && o > 0 && (t[o - 1] == ' ' || t[o - 1] == '\n'))
            continue;
        t[o++] = blank ? ' ' : t[i];
    }
    t[o] = '\0';
    return t;
}

static void assert_has(const char *text, const char *what, const char *where)
{
    ck_assert_msg(strstr(text, what) != NULL, "%s lacks \"%s\"", where, what);
}

static const char *money(int64_t minor, int exp)
{
    static char bufs[8][TLY_QUERY_MONEY_CHARS];
    static unsigned next;
    char *b = bufs[next++ % 8];
    tly_query_format_money(minor, exp, b, TLY_QUERY_MONEY_CHARS);
    return b;
}

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

/* The service's JSON answer to {"q": q, key: value}, at the vector's head. */
static json_t *ask(const char *q, const char *key, const char *value)
{
    json_t *req = json_pack("{s:s, s:s}", "q", q, key, value), *r = NULL;
    ck_assert_int_eq(tly_query_call(g.query, req, 5000, &r), 0);
    json_decref(req);
    ck_assert_msg(json_object_get(r, "error") == NULL, "%s %s: error", q, value);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), g_seq);
    return r;
}

/* Explain's lines: every array of objects with a "seq" and a "kind". */
static size_t count_lines(const json_t *v)
{
    size_t n = 0, i;
    json_t *c;
    const char *k;
    if (json_is_array(v))
        json_array_foreach(v, i, c)
        {
            if (json_is_object(c) && json_object_get(c, "seq") && json_object_get(c, "kind"))
                n++;
            else
                n += count_lines(c);
        }
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, c) n += count_lines(c);
    return n;
}

static size_t explain_lines(const tu_stack *st, const char *dir, const char *partner,
                            const char *period)
{
    char out[1200];
    snprintf(out, sizeof out, "%s/explain.json", dir);
    /* exit 1 only says a rebate row differs from its view: the lines stand */
    int rc = tu_run_tally(out, NULL, "explain", partner, "--period", period, "--data", st->dir,
                          "--json", NULL);
    ck_assert_int_le(rc, 1);
    json_t *j = json_load_file(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    size_t n = count_lines(j);
    json_decref(j);
    return n;
}

/* Writes the statement as FILE.ext under dir; returns its text (the PDF's
 * through pdftotext -layout), blanks squeezed. */
static char *statement(const char *dir, const char *partner, const char *period, const char *ext)
{
    char file[1200], out[1200], err[1200], txt[1300];
    snprintf(file, sizeof file, "%s/%s-%s.%s", dir, partner, period, ext);
    snprintf(out, sizeof out, "%s/statement.out", dir);
    snprintf(err, sizeof err, "%s/statement.err", dir);
    int rc = tu_run_tally(out, err, "statement", partner, "--period", period, "--out", file,
                          "--data", g.dir, "--query", g.query, NULL);
    char *etext = rc != 0 ? tu_read_file(err, NULL) : NULL;
    ck_assert_msg(rc == 0, "statement %s %s %s: exit %d: %.2000s", partner, period, ext, rc,
                  etext ? etext : "");
    if (strcmp(ext, "html") == 0)
        return squeezed(file);
    snprintf(txt, sizeof txt, "%s.txt", file);
    char *const argv[] = {"pdftotext", "-layout", file, txt, NULL};
    ck_assert_msg(tu_run(argv, NULL, NULL, NULL) == 0,
                  "pdftotext failed (scripts/deps.sh installs poppler-utils)");
    return squeezed(txt);
}

typedef struct answers {
    json_t *bal, *reb, *tier, *claims, *report, *exp;
    int exp_digits;
    const char *program;
} answers;

static void answers_get(answers *a, const char *partner)
{
    a->bal = ask("balance", "partner", partner);
    a->reb = ask("rebate", "partner", partner);
    a->tier = ask("tier", "partner", partner);
    a->claims = ask("claims", "partner", partner);
    a->program = sget(a->bal, "program");
    a->report = ask("report", "program", a->program);
    a->exp = ask("expiring", "program", a->program);
    a->exp_digits = tly_query_currency_exponent(sget(a->bal, "currency"));
}

static void answers_free(answers *a)
{
    json_decref(a->bal);
    json_decref(a->reb);
    json_decref(a->tier);
    json_decref(a->claims);
    json_decref(a->report);
    json_decref(a->exp);
}

/* Rebate rows up to the period, payable, and the chart's last point. */
static void check_rebates(const char *t, const answers *a, const char *period, const char *where)
{
    char want[512];
    int64_t cum = 0;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(a->reb, "periods"), i, r)
    {
        cum += iget(r, "revenue");
        if (strcmp(sget(r, "period"), period) > 0)
            continue;
        char rate[16];
        tly_query_format_bps(iget(r, "rate_bps"), rate, sizeof rate);
        int e = a->exp_digits;
        snprintf(want, sizeof want, "%s %s %s %s %s %s %s %s", sget(r, "period"),
                 money(iget(r, "revenue"), e), money(iget(r, "basis"), e), rate,
                 money(iget(r, "rebate"), e), money(iget(r, "referral"), e), sget(r, "status"),
                 money(iget(r, "paid"), e));
        assert_has(t, want, where);
    }
    snprintf(want, sizeof want, "Payable now (final periods) %s",
             money(iget(a->reb, "payable"), a->exp_digits));
    assert_has(t, want, where);
    /* the chart runs to the later of the open period and the report's last */
    const json_t *ps = json_object_get(a->report, "periods");
    const char *last = sget(json_array_get(ps, json_array_size(ps) - 1), "period");
    const json_t *row = NULL;
    json_array_foreach(json_object_get(a->exp, "programs"), i,
                       r) if (strcmp(sget(r, "program"), a->program) == 0) row = r;
    ck_assert_ptr_nonnull(row);
    if (strcmp(sget(row, "period"), last) > 0)
        last = sget(row, "period");
    snprintf(want, sizeof want, "\n%s %s %s\n", last,
             money(iget(a->bal, "available"), a->exp_digits), money(cum, a->exp_digits));
    assert_has(t, want, where);
}

static void check_rest(const char *t, const answers *a, const char *partner, const char *where)
{
    char want[512];
    int e = a->exp_digits;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(a->claims, "claims"), i, c)
    {
        snprintf(want, sizeof want, "%s %s %s %s %s", sget(c, "claim"), sget(c, "status"),
                 money(iget(c, "requested"), e), money(iget(c, "approved"), e),
                 money(iget(c, "paid"), e));
        assert_has(t, want, where);
    }
    snprintf(want, sizeof want, "Current tier %s", sget(a->tier, "tier"));
    assert_has(t, want, where);
    json_t *r, *p;
    json_array_foreach(json_object_get(a->exp, "programs"), i, r)
    {
        if (strcmp(sget(r, "program"), a->program) != 0)
            continue;
        int64_t amount = 0;
        size_t k;
        json_array_foreach(json_object_get(r, "partners"), k,
                           p) if (strcmp(sget(p, "partner"), partner) == 0) amount =
            iget(p, "amount");
        if (amount == 0)
            snprintf(want, sizeof want, "Nothing expires at the close of %s.", sget(r, "period"));
        else
            snprintf(want, sizeof want, "%s %s of available MDF expires at the close of %s.",
                     money(amount, e), sget(a->bal, "currency"), sget(r, "period"));
        assert_has(t, want, where);
    }
}

/* The amount after label and a blank in text, in minor units (exp
 * digits after the point; thousands separators skipped). */
static int64_t money_after(const char *text, const char *label, const char *where)
{
    const char *p = strstr(text, label);
    ck_assert_msg(p != NULL, "%s lacks \"%s\"", where, label);
    p += strlen(label);
    ck_assert_msg(*p == ' ', "%s: no amount after \"%s\"", where, label);
    p++;
    bool neg = *p == '-';
    p += neg;
    int64_t v = 0;
    int digits = 0;
    for (; (*p >= '0' && *p <= '9') || *p == ',' || *p == '.'; p++)
        if (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            digits++;
        }
    ck_assert_msg(digits > 0, "%s: no amount after \"%s\"", where, label);
    return neg ? -v : v;
}

/* The header's status (closed before the program's earliest open period,
 * else open) and the MDF bridge: the opening plus the period's movements,
 * each with the sign it has on `available`, is the closing, which is the
 * chart's point of the period. */
static void check_balance(const char *t, const answers *a, const char *period, const char *where)
{
    char want[512];
    const char *open = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(a->exp, "programs"), i,
                       r) if (strcmp(sget(r, "program"), a->program) == 0) open = sget(r, "period");
    ck_assert_ptr_nonnull(open);
    snprintf(want, sizeof want, "for %s (%s)", period,
             strcmp(period, open) < 0 ? "closed" : "open");
    assert_has(t, want, where);
    static const char *const moves[] = {"Accrued", "Clawed back", "Adjusted", "Expired",
                                        "Claimed (net of releases)"};
    int64_t opening = money_after(t, "Opening available", where), sum = opening;
    for (size_t k = 0; k < sizeof moves / sizeof moves[0]; k++)
        sum += money_after(t, moves[k], where);
    int64_t closing = money_after(t, "Closing available", where);
    ck_assert_msg(sum == closing,
                  "%s: opening %lld and the movements make %lld, not the closing %lld", where,
                  (long long)opening, (long long)sum, (long long)closing);
    ck_assert_msg(sum != opening, "%s: the period moves no MDF", where);
    snprintf(want, sizeof want, "\n%s %s ", period, money(closing, a->exp_digits));
    assert_has(t, want, where);
}

/* The amounts of explain's lines of kind under v (dir/explain.json). */
static int64_t kind_sum(const json_t *v, const char *kind)
{
    int64_t n = 0;
    size_t i;
    json_t *c;
    const char *k;
    if (json_is_object(v) && json_object_get(v, "seq") && strcmp(sget(v, "kind"), kind) == 0)
        return iget(v, "amount");
    if (json_is_array(v))
        json_array_foreach(v, i, c) n += kind_sum(c, kind);
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, c) n += kind_sum(c, kind);
    return n;
}

/* The claims approved and paid in the period, as explain's approve and
 * pay lines of it (explain_lines wrote them to dir/explain.json) sum. */
static void check_claims_moved(const char *t, const answers *a, const char *dir, const char *where)
{
    char path[1200], want[256];
    snprintf(path, sizeof path, "%s/explain.json", dir);
    json_t *x = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(x);
    snprintf(want, sizeof want, "Claims approved in the period %s",
             money(kind_sum(x, "approve"), a->exp_digits));
    assert_has(t, want, where);
    snprintf(want, sizeof want, "Claims paid in the period %s",
             money(kind_sum(x, "pay"), a->exp_digits));
    assert_has(t, want, where);
    json_decref(x);
}

/* The HTML's table of the period's lines: as many rows as explain has
 * lines, in log order (their seqs never decrease). */
static void check_lines_order(const char *html, size_t lines, const char *where)
{
    const char *p = strstr(html, ">Seq</th>");
    ck_assert_msg(p != NULL, "%s: no table of lines", where);
    const char *end = strstr(p, "</table>");
    ck_assert_ptr_nonnull(end);
    static const char row[] = "<tr><td class=\"r\">";
    size_t rows = 0;
    long long prev = 0;
    for (p = strstr(p, row); p != NULL && p < end; p = strstr(p, row)) {
        p += strlen(row);
        long long seq = strtoll(p, NULL, 10);
        ck_assert_msg(seq >= prev, "%s: line of seq %lld after seq %lld", where, seq, prev);
        prev = seq;
        rows++;
    }
    ck_assert_uint_eq(rows, lines);
}

static const struct {
    const char *partner, *period;
} cases[] = {
    {"graphic-msp-522", "2025-Q3"},         /* apex, quarters, USD: closed */
    {"litware-distributor-304", "2026-Q2"}, /* open, funds expiring */
    {"nod-var-856", "2025-06"},             /* nimbus, months, EUR */
    {"graphic-consultant-718", "2026-06"},  /* the open month */
};

START_TEST(test_figures_equal_answers)
{
    char *dir = tu_tmpdir();
    answers a = {0};
    answers_get(&a, cases[_i].partner);
    char seq[64], where[160], lines[80];
    snprintf(seq, sizeof seq, "as of log seq %lld.", g_seq);
    size_t count = explain_lines(&g, dir, cases[_i].partner, cases[_i].period);
    snprintf(lines, sizeof lines, "in log order: %zu lines.", count);
    for (int k = 0; k < 2; k++) {
        const char *ext = k ? "html" : "pdf";
        char *t = statement(dir, cases[_i].partner, cases[_i].period, ext);
        snprintf(where, sizeof where, "the %s of %s %s", ext, cases[_i].partner, cases[_i].period);
        assert_has(t, seq, where);
        assert_has(t, lines, where);
        if (k == 0) {
            check_rebates(t, &a, cases[_i].period, where);
            check_rest(t, &a, cases[_i].partner, where);
            check_balance(t, &a, cases[_i].period, where);
            check_claims_moved(t, &a, dir, where);
        } else {
            assert_has(t, "<svg", where);
            check_lines_order(t, count, where);
            assert_has(t, money(iget(a.reb, "payable"), a.exp_digits), where);
            assert_has(t, money(iget(a.bal, "available"), a.exp_digits), where);
        }
        free(t);
    }
    answers_free(&a);
    tu_rmtree(dir);
}
END_TEST

/* No line in the period: a statement that says so and has no line table,
 * but every other part SPEC section 11 lists (claims, rebate rows, tier,
 * the next close's expiring funds as of the seq, the chart): a quiet
 * partner is the one most in need of its funds' expiry. */
START_TEST(test_empty_period)
{
    char *dir = tu_tmpdir();
    const char *partner = "graphic-consultant-718", *period = "2025-02";
    ck_assert_int_eq(explain_lines(&g, dir, partner, period), 0);
    answers a = {0};
    answers_get(&a, partner);
    for (int k = 0; k < 2; k++) {
        char *t = statement(dir, partner, period, k ? "html" : "pdf");
        const char *where = k ? "the empty statement's html" : "the empty statement's pdf";
        assert_has(t, "No activity in 2025-02", where);
        ck_assert_ptr_null(strstr(t, "Seq"));
        assert_has(t, "MDF claims", where);
        assert_has(t, "Funds expiring at the next close", where);
        if (k == 0) {
            check_rebates(t, &a, period, where);
            check_rest(t, &a, partner, where);
        } else {
            assert_has(t, "<svg", where);
        }
        free(t);
    }
    answers_free(&a);
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_bad_periods)
{
    char *dir = tu_tmpdir();
    char file[1200];
    snprintf(file, sizeof file, "%s/s.pdf", dir);
    static const char *const bad[][2] = {
        {"graphic-msp-522", "2025-07"}, /* months for a quarterly program */
        {"graphic-msp-522", "2024-Q4"}, /* before the program's first */
        {"graphic-msp-522", "2027-Q1"}, /* after its open period */
        {"nod-var-856", "2025-Q2"},     /* quarters for a monthly one */
        {"no-such-partner", "2025-Q2"}, /* [D15] */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tu_run_tally(NULL, NULL, "statement", bad[i][0], "--period", bad[i][1], "--out",
                              file, "--data", g.dir, "--query", g.query, NULL);
        ck_assert_msg(rc == 1, "%s %s: exit %d, want 1", bad[i][0], bad[i][1], rc);
    }
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "statement", "graphic-msp-522", "--period", "2025-Q3",
                                  "--out", "s.txt", "--query", g.query, NULL),
                     2);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "statement", "graphic-msp-522", "--out", file,
                                  "--query", g.query, NULL),
                     2);
    tu_rmtree(dir);
}
END_TEST

/* ---- the limits: a second stack of programs built here ---- */

static tu_stack big;     /* the stack of the limits' case */
static long long big_ok; /* its head: every event sent to it so far */

/* The month m months after 2010-01, as "2010-01". */
static void month(int m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%04d-%02d", 2010 + m / 12, m % 12 + 1);
}

/* Sends the n events of the JSON-lines file path to the big stack and
 * waits until the query service has folded them. */
static void big_send(const char *path, long long n)
{
    ck_assert_int_eq(
        tu_run_tally(NULL, NULL, "send", "--source", "finance", "--ingest", big.ingest, path, NULL),
        0);
    big_ok += n;
    char seq[32];
    snprintf(seq, sizeof seq, "%lld", big_ok);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "wait", "--seq", seq, "--timeout", "120", "--query",
                                  big.query, NULL),
                     0);
}

/* The events of one line written into dir/name.jsonl and sent. */
static void big_send_one(const char *dir, const char *event)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/one.jsonl", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", event);
    ck_assert_int_eq(fclose(f), 0);
    big_send(path, 1);
}

/* Program "lines" (quarters from 2025-Q1, one tier) and its partner busy,
 * with exactly TLY_STATEMENT_LINES_MAX explain lines in 2025-Q1: a sale
 * makes three (accrual, credit, revenue), an MDF adjustment two
 * (adjust_mdf, credit), a rebate adjustment one. */
static long long write_lines_program(FILE *f)
{
    long long n = 2;
    fputs("{\"type\":\"program\",\"id\":\"LP\",\"at\":\"2025-01-01T00:00:00Z\",\"program\":"
          "\"lines\",\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":[{"
          "\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{"
          "\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
          "\"mdf_expiry_periods\":4,\"tier_window_periods\":1}\n"
          "{\"type\":\"partner\",\"id\":\"LB\",\"at\":\"2025-01-01T00:00:01Z\",\"partner\":"
          "\"busy\",\"name\":\"Busy\",\"program\":\"lines\",\"kind\":\"var\"}\n",
          f);
    for (unsigned i = 0; i < TLY_STATEMENT_LINES_MAX / 3; i++, n++)
        fprintf(f,
                "{\"type\":\"sale\",\"id\":\"LS-%u\",\"at\":\"2025-01-02T00:00:00Z\",\"partner\":"
                "\"busy\",\"sku\":\"X\",\"qty\":1,\"amount\":1000,\"currency\":\"USD\"}\n",
                i);
    if (TLY_STATEMENT_LINES_MAX % 3 != 0) {
        fprintf(f,
                "{\"type\":\"adjust\",\"id\":\"LA-0\",\"at\":\"2025-01-03T00:00:00Z\","
                "\"partner\":\"busy\",\"account\":\"%s\",\"amount\":5,\"reason\":\"edge\"}\n",
                TLY_STATEMENT_LINES_MAX % 3 == 2 ? "mdf" : "rebate");
        n++;
    }
    return n;
}

/* Program "long" (months from 2010-01) and its partner steady, a sale in
 * the first month, TLY_STATEMENT_CHART_PERIODS_MAX - 1 closes and a sale
 * in the open month: the program has exactly that many periods. */
static long long write_long_program(FILE *f)
{
    long long n = 3;
    char p[16], next[16];
    fputs("{\"type\":\"program\",\"id\":\"MP\",\"at\":\"2010-01-01T00:00:00Z\",\"program\":"
          "\"long\",\"version\":1,\"currency\":\"USD\",\"period\":\"month\",\"tiers\":[{"
          "\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{"
          "\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
          "\"mdf_expiry_periods\":12,\"tier_window_periods\":1}\n"
          "{\"type\":\"partner\",\"id\":\"MS\",\"at\":\"2010-01-01T00:00:01Z\",\"partner\":"
          "\"steady\",\"name\":\"Steady\",\"program\":\"long\",\"kind\":\"var\"}\n"
          "{\"type\":\"sale\",\"id\":\"MS-0\",\"at\":\"2010-01-15T00:00:00Z\",\"partner\":"
          "\"steady\",\"sku\":\"X\",\"qty\":1,\"amount\":1000,\"currency\":\"USD\"}\n",
          f);
    for (int m = 0; m + 1 < (int)TLY_STATEMENT_CHART_PERIODS_MAX; m++, n++) {
        month(m, p, sizeof p);
        month(m + 1, next, sizeof next);
        fprintf(f,
                "{\"type\":\"close\",\"id\":\"MC-%s\",\"at\":\"%s-01T00:00:00Z\",\"program\":"
                "\"long\",\"period\":\"%s\"}\n",
                p, next, p);
    }
    month((int)TLY_STATEMENT_CHART_PERIODS_MAX - 1, p, sizeof p);
    fprintf(f,
            "{\"type\":\"sale\",\"id\":\"MS-1\",\"at\":\"%s-15T00:00:00Z\",\"partner\":"
            "\"steady\",\"sku\":\"X\",\"qty\":1,\"amount\":1000,\"currency\":\"USD\"}\n",
            p);
    return n + 1;
}

static void big_up(void)
{
    tu_stack_opts o = {.shards = 1};
    ck_assert_msg(tu_stack_up(&big, &o), "%s", big.why);
    char *dir = tu_tmpdir(), path[1200];
    snprintf(path, sizeof path, "%s/limits.jsonl", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    long long n = write_lines_program(f);
    n += write_long_program(f);
    ck_assert_int_eq(fclose(f), 0);
    big_send(path, n);
    tu_rmtree(dir);
}

static void big_down(void)
{
    ck_assert_int_eq(tu_stack_down(&big), 0);
}

/* Runs `tally statement` on the big stack into dir/file; the exit code,
 * and its stderr in *err (malloc'd). */
static int big_statement(const char *dir, const char *partner, const char *period, const char *file,
                         char **err)
{
    char path[1200], errpath[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(errpath, sizeof errpath, "%s/statement.err", dir);
    int rc = tu_run_tally(NULL, errpath, "statement", partner, "--period", period, "--out", path,
                          "--data", big.dir, "--query", big.query, NULL);
    *err = tu_read_file(errpath, NULL);
    ck_assert_ptr_nonnull(*err);
    return rc;
}

static size_t occurrences(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *at = text; (at = strstr(at, what)) != NULL; at += strlen(what))
        n++;
    return n;
}

/* TLY_STATEMENT_LINES_MAX: a partner with exactly that many lines in the
 * period gets them all (HTML: no page bound in the way); one line more is
 * refused with exit 1, the bound named, and no file written. */
START_TEST(test_lines_at_max)
{
    char *dir = tu_tmpdir(), *err, want[160], path[1200];
    ck_assert_uint_eq(explain_lines(&big, dir, "busy", "2025-Q1"), TLY_STATEMENT_LINES_MAX);
    int rc = big_statement(dir, "busy", "2025-Q1", "max.html", &err);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    snprintf(path, sizeof path, "%s/max.html", dir);
    char *t = squeezed(path);
    snprintf(want, sizeof want, "in log order: %u lines.", TLY_STATEMENT_LINES_MAX);
    assert_has(t, want, "the statement at the bound");
    /* a line's row is the only one whose first cell is right-aligned (seq) */
    ck_assert_uint_eq(occurrences(t, "<tr><td class=\"r\">"), TLY_STATEMENT_LINES_MAX);
    free(t);

    big_send_one(dir, "{\"type\":\"adjust\",\"id\":\"LA-1\",\"at\":\"2025-01-03T00:00:00Z\","
                      "\"partner\":\"busy\",\"account\":\"rebate\",\"amount\":5,\"reason\":"
                      "\"one more line\"}");
    rc = big_statement(dir, "busy", "2025-Q1", "over.html", &err);
    snprintf(want, sizeof want, "busy has more than %u lines in 2025-Q1", TLY_STATEMENT_LINES_MAX);
    ck_assert_msg(rc == 1, "exit %d, want 1: %s", rc, err);
    assert_has(err, want, "stderr of one line more");
    free(err);
    snprintf(path, sizeof path, "%s/over.html", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    tu_rmtree(dir);
}
END_TEST

/* The chart's table in the HTML statement at path: its data rows, the
 * period of the first and the last. */
static void chart_rows(const char *path, size_t *rows, char *first, char *last, size_t cap)
{
    char *t = squeezed(path);
    const char *h = strstr(t, "by period</h2>");
    const char *table = h ? strstr(h, "<table") : NULL;
    char *end = table ? strstr(table, "</table>") : NULL;
    ck_assert_msg(end != NULL, "%s has no chart table", path);
    *end = '\0';
    ck_assert_uint_gt(occurrences(table, "<tr><td>"), 0);
    *rows = occurrences(table, "<tr><td>");
    const char *a = strstr(table, "<tr><td>") + strlen("<tr><td>"), *b = a;
    for (const char *at = a; (at = strstr(at, "<tr><td>")) != NULL; at += strlen("<tr><td>"))
        b = at + strlen("<tr><td>");
    snprintf(first, cap, "%.*s", (int)strcspn(a, "<"), a);
    snprintf(last, cap, "%.*s", (int)strcspn(b, "<"), b);
    free(t);
}

/* TLY_STATEMENT_CHART_PERIODS_MAX: a program of exactly that many periods
 * is charted whole, from its first; after one more close the chart shows
 * the latest that many, its first period left out. */
START_TEST(test_chart_periods_at_max)
{
    char *dir = tu_tmpdir(), *err, path[1200], first[16], last[16], next[16], got0[16], got1[16];
    char event[300];
    size_t rows;
    month(0, first, sizeof first);
    month((int)TLY_STATEMENT_CHART_PERIODS_MAX - 1, last, sizeof last);
    month((int)TLY_STATEMENT_CHART_PERIODS_MAX, next, sizeof next);
    snprintf(path, sizeof path, "%s/chart.html", dir);
    for (int k = 0; k < 2; k++) {
        int rc = big_statement(dir, "steady", last, "chart.html", &err);
        ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
        free(err);
        chart_rows(path, &rows, got0, got1, sizeof got0);
        ck_assert_uint_eq(rows, TLY_STATEMENT_CHART_PERIODS_MAX);
        if (k == 0) {
            ck_assert_str_eq(got0, first);
            ck_assert_str_eq(got1, last);
            snprintf(event, sizeof event,
                     "{\"type\":\"close\",\"id\":\"MC-%s\",\"at\":\"%s-01T00:00:00Z\","
                     "\"program\":\"long\",\"period\":\"%s\"}",
                     last, next, last);
            big_send_one(dir, event);
        } else {
            month(1, first, sizeof first);
            ck_assert_str_eq(got0, first);
            ck_assert_str_eq(got1, next);
        }
    }
    tu_rmtree(dir);
}
END_TEST

/* ---- the page bound, drawn in-process ---- */

/* A statement of n identical explain lines (identical rows keep the
 * columns' widths, so every full page holds the same number of them). */
static json_t *paged_statement(size_t n)
{
    json_t *lines = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(lines, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i}", "seq", 100000,
                                               "kind", "accrual", "cause", "sale", "source", "shop",
                                               "id", "S-1", "period", "2025-Q1", "amount", 10));
    json_t *st = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:i, s:i, s:{}, s:o, s:[], s:[], s:{s:s}, "
        "s:{s:s, s:i}, s:[{s:s, s:i, s:i}]}",
        "partner", "paged", "program", "lines", "currency", "USD", "period", "2025-Q1", "status",
        "open", "seq", 1, "activity", 1, "opening", 0, "closing", 0, "movements", "lines", lines,
        "claims", "rebates", "tier", "tier", "Base", "expiring", "period", "2025-Q1", "amount", 0,
        "chart", "period", "2025-Q1", "available", 0, "revenue", 0);
    ck_assert_ptr_nonnull(st);
    return st;
}

/* Writes the statement of n lines as dir/file; its pages (pdfinfo), 0
 * when it was refused (*err and msg say why). */
static unsigned pdf_pages(const char *dir, const char *file, size_t n, tly_err *err, char *msg,
                          size_t cap)
{
    char path[1200], info[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(info, sizeof info, "%s/pdfinfo.txt", dir);
    json_t *st = paged_statement(n);
    *err = tly_report_statement_write(st, TLY_REPORT_PDF, path, msg, cap);
    json_decref(st);
    if (*err != TLY_OK)
        return 0;
    char *const argv[] = {"pdfinfo", path, NULL};
    ck_assert_msg(tu_run(argv, NULL, info, NULL) == 0,
                  "pdfinfo failed (scripts/deps.sh installs poppler-utils)");
    char *t = tu_read_file(info, NULL);
    const char *p = t ? strstr(t, "Pages:") : NULL;
    ck_assert_ptr_nonnull(p);
    unsigned pages = (unsigned)strtoul(p + strlen("Pages:"), NULL, 10);
    free(t);
    return pages;
}

/* The most lines that fit on k pages. */
static size_t lines_on(const char *dir, unsigned k)
{
    char msg[512];
    tly_err err;
    size_t lo = 0, hi = 1024; /* a page holds far fewer than 1024 / k rows */
    ck_assert_uint_gt(pdf_pages(dir, "probe.pdf", hi, &err, msg, sizeof msg), k);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        unsigned pages = pdf_pages(dir, "probe.pdf", mid, &err, msg, sizeof msg);
        ck_assert_msg(err == TLY_OK, "%zu lines: %s", mid, msg);
        *(pages <= k ? &lo : &hi) = mid;
    }
    return lo;
}

/* TLY_STATEMENT_PAGES_MAX: a statement of exactly that many pages is
 * written; one line more, which starts the next page, is refused
 * (TLY_TOO_LARGE, "more than N pages") and leaves no file behind. The
 * line count of the edge follows from the rows one more page holds. */
START_TEST(test_pages_at_max)
{
    char *dir = tu_tmpdir(), msg[512] = "", want[64];
    tly_err err;
    size_t three = lines_on(dir, 3), per_page = lines_on(dir, 4) - three;
    size_t edge = three + (TLY_STATEMENT_PAGES_MAX - 3) * per_page;
    unsigned pages = pdf_pages(dir, "max.pdf", edge, &err, msg, sizeof msg);
    ck_assert_msg(err == TLY_OK, "%zu lines: %s", edge, msg);
    ck_assert_uint_eq(pages, TLY_STATEMENT_PAGES_MAX);
    ck_assert_uint_eq(pdf_pages(dir, "over.pdf", edge + 1, &err, msg, sizeof msg), 0);
    ck_assert_int_eq(err, TLY_TOO_LARGE);
    snprintf(want, sizeof want, "more than %u pages", TLY_STATEMENT_PAGES_MAX);
    ck_assert_str_eq(msg, want);
    /* neither the file nor its temporary sibling (over.pdf.XXXXXX) */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        ck_assert_msg(strncmp(e->d_name, "over.pdf", strlen("over.pdf")) != 0, "%s left behind",
                      e->d_name);
    closedir(d);
    tu_rmtree(dir);
}
END_TEST

/* The next tier's line, drawn in-process: a partner whose needs are both
 * met (the tier answer floors them at 0) qualifies at the next close; one
 * short of a cent or of a certification is told what it needs; at the top
 * tier ("next" null) there is none. */
START_TEST(test_next_tier_text)
{
    static const struct {
        json_int_t revenue, certs;
        const char *want;
    } rows[] = {
        {0, 0, "Gold: qualifies at the next close"},
        {1, 0, "Gold: needs 0.01 more revenue and 0 more certifications"},
        {0, 1, "Gold: needs 0.00 more revenue and 1 more certifications"},
        {-1, -1, "none: this is the top tier"},
    };
    char *dir = tu_tmpdir(), path[1200], msg[512] = "";
    snprintf(path, sizeof path, "%s/tier.html", dir);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        json_t *st = paged_statement(1);
        json_t *next = rows[i].revenue < 0
                           ? json_null()
                           : json_pack("{s:s, s:I, s:I, s:[]}", "tier", "Gold", "revenue_needed",
                                       rows[i].revenue, "certs_needed", rows[i].certs, "benefits");
        json_object_set_new(json_object_get(st, "tier"), "next", next);
        ck_assert_int_eq(tly_report_statement_write(st, TLY_REPORT_HTML, path, msg, sizeof msg),
                         TLY_OK);
        char *t = squeezed(path);
        assert_has(t, rows[i].want, "the next tier");
        free(t);
        json_decref(st);
    }
    tu_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("statement");
    TCase *tc = tu_tcase(s, "stack", 600);
    tcase_add_unchecked_fixture(tc, stack_up, stack_down);
    tcase_add_loop_test(tc, test_figures_equal_answers, 0, (int)(sizeof cases / sizeof cases[0]));
    tu_add_tests(tc, TU_TESTS(test_empty_period, test_bad_periods));
    tc = tu_tcase(s, "limits", 600);
    tcase_add_unchecked_fixture(tc, big_up, big_down);
    tu_add_tests(tc, TU_TESTS(test_lines_at_max, test_chart_periods_at_max));
    tc = tu_tcase(s, "pages", 300);
    tu_add_tests(tc, TU_TESTS(test_pages_at_max, test_next_tier_text));
    return tu_run_suite(s);
}
