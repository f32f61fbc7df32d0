/*
 * test_finance_cli.c — `tally partners | report | expiring | journal` (SPEC
 * section 11, issue 11 item 1) against a real stack: `tally up --shards 2`
 * on free loopback ports, seed102-v2 sent with `tally send --source S`
 * group by group as test_up does, `tally wait --seq 2910`, then the real
 * binary as a finance analyst runs it:
 *
 *   - --json of every query of the vector's "finance" answers equal to it
 *     (partners by each FLAGS, report per program, expiring, the journal of
 *     every program and period), keys in SPEC order;
 *   - --csv row for row equal to the --json answer (money in minor units);
 *   - the tables show the key figures as decimals of the currency;
 *   - --views DIR and --data DIR reach the same answers; --as-of-close
 *     PERIOD gives what a replay to that close's seq gives;
 *   - journal --accounts FILE maps accounts to GL codes (unmapped keys stay);
 *     a bad accounts file, an unknown program and a period of the wrong kind
 *     are exit 1 with one line; a flag the command does not take, a missing
 *     --program or --period and --json with --csv are exit 2.
 */
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_limits.h"

/* The vector: 3,017 records that append 2,910 events. */
#define VECTOR_SEQ "2910"
#define ARGS_MAX 32

/* The stack the runner starts once, before the (forked) tests. */
static tu_stack g_stack;
static json_t *g_want; /* the vector's "finance" answers */

/* The fixture runs in the runner, where a failed check would not say
 * where: need prints the condition and aborts. */
#define need(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fixture: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Running tally                                                             */

/* Runs tally with args (NULL-terminated); stdout and stderr into *out and
 * *err (malloc'd, may be NULL to discard). Returns the exit code. */
static int run_args(char **out, char **err, const char *const *args)
{
    char *argv[ARGS_MAX];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    for (int i = 0; args[i] && n < ARGS_MAX - 1; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char opath[1200], epath[1200];
    snprintf(opath, sizeof opath, "%s/cmd.out", g_stack.dir);
    snprintf(epath, sizeof epath, "%s/cmd.err", g_stack.dir);
    int rc = tu_run(argv, NULL, opath, epath);
    if (out)
        *out = tu_read_file(opath, NULL);
    if (err)
        *err = tu_read_file(epath, NULL);
    return rc;
}

static int run(char **out, char **err, ...)
{
    const char *args[ARGS_MAX];
    int n = 0;
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < ARGS_MAX - 1 && (a = va_arg(ap, const char *));)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return run_args(out, err, args);
}

/* `tally CMD FLAGS... --query Q EXTRA` where flags is one string of words
 * ("--program apex --kind msp"); stdout, exit 0 asserted. */
static char *ask(const char *cmd, const char *flags, const char *extra)
{
    const char *args[ARGS_MAX] = {cmd};
    int n = 1;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        args[n++] = t;
    args[n++] = "--query";
    args[n++] = g_stack.query;
    if (extra)
        args[n++] = extra;
    args[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = run_args(&out, &err, args);
    ck_assert_msg(rc == 0, "tally %s %s %s: exit %d: %s", cmd, flags, extra ? extra : "", rc,
                  err ? err : "");
    ck_assert_ptr_nonnull(out);
    free(err);
    return out;
}

static json_t *ask_json(const char *cmd, const char *flags)
{
    char *out = ask(cmd, flags, "--json");
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "tally %s %s --json: not JSON (%s): %.200s", cmd, flags, je.text, out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "one line");
    free(out);
    return j;
}

/* The first difference of got and want, for the failure message. */
static void expect_same(json_t *got, const json_t *want, const char *what)
{
    if (json_equal(got, want))
        return;
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    size_t at = 0;
    while (g[at] && g[at] == w[at])
        at++;
    size_t from = at > 200 ? at - 200 : 0;
    ck_abort_msg("%s differs at byte %zu:\n got  ...%.400s\n want ...%.400s", what, at, g + from,
                 w + from);
}

/* The keys of o in order equal the comma-separated list keys. */
static void expect_keys(const json_t *o, const char *keys, const char *what)
{
    char got[512] = "";
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", n ? "," : "", k);
    }
    ck_assert_msg(strcmp(got, keys) == 0, "%s: keys %s, want %s", what, got, keys);
}

/* ------------------------------------------------------------------------ */
/* The fixture                                                               */

static void stack_up(void)
{
    tu_stack_opts o = {.shards = 2};
    bool up = tu_stack_up(&g_stack, &o);
    if (!up)
        fprintf(stderr, "fixture: %s\n", g_stack.why);
    need(up);
}

/* Sends the group in path as one `tally send --source S` run. */
static void send_group(const char *path, const char *source)
{
    char err[1200];
    snprintf(err, sizeof err, "%s/send.err", g_stack.dir);
    char *const argv[] = {(char *)tu_tally(), "send",         "--source",   (char *)source,
                          "--ingest",         g_stack.ingest, (char *)path, NULL};
    int rc = tu_run(argv, NULL, NULL, err);
    if (rc != 0)
        fprintf(stderr, "fixture: send of a %s group: exit %d\n", source, rc);
    need(rc == 0);
}

/* Sends the vector: consecutive records of one source as one run. */
static void send_vector(void)
{
    char *path = tu_vector("seed102-v2-events.jsonl");
    FILE *f = fopen(path, "r");
    need(f != NULL);
    char group[1200], line[65536], source[128] = "";
    snprintf(group, sizeof group, "%s/group.jsonl", g_stack.dir);
    FILE *g = NULL;
    for (bool eof = false; !eof;) {
        eof = !fgets(line, sizeof line, f);
        json_t *rec = eof ? NULL : json_loads(line, 0, NULL);
        const char *src = rec ? json_string_value(json_object_get(rec, "source")) : NULL;
        need(eof || src);
        if (g && (eof || strcmp(src, source) != 0)) {
            fclose(g);
            g = NULL;
            send_group(group, source);
        }
        if (!eof && !g) {
            snprintf(source, sizeof source, "%s", src);
            g = fopen(group, "w");
            need(g != NULL);
        }
        if (!eof)
            fputs(line, g);
        json_decref(rec);
    }
    fclose(f);
    free(path);
}

static void setup(void)
{
    char *path = tu_vector("seed102-v2-expected.json");
    json_t *all = json_load_file(path, 0, NULL);
    free(path);
    need(all != NULL);
    g_want = json_incref(json_object_get(all, "finance"));
    json_decref(all);
    stack_up();
    send_vector();
    need(run(NULL, NULL, "wait", "--seq", VECTOR_SEQ, "--timeout", "120", "--query", g_stack.query,
             NULL) == 0);
}

static void teardown(void)
{
    tu_stack_down(&g_stack);
    json_decref(g_want);
    g_want = NULL;
}

/* ------------------------------------------------------------------------ */
/* --json against the vector                                                 */

#define PARTNER_KEYS "partner,name,program,kind,region,tier,available,rebate_payable"
static const char REPORT_ROW_KEYS[] =
    "period,status,revenue,mdf_accrued,mdf_clawed_back,mdf_adjusted,mdf_expired,mdf_approved,"
    "mdf_paid,rebate,referral,rebate_paid";

START_TEST(test_partners_json)
{
    const char *flags;
    json_t *want;
    int seen = 0;
    json_object_foreach(json_object_get(g_want, "partners"), flags, want)
    {
        json_t *got = ask_json("partners", flags);
        char what[300];
        snprintf(what, sizeof what, "partners %s", flags);
        expect_same(got, want, what);
        expect_keys(got, "seq,partners", what);
        json_t *first = json_array_get(json_object_get(got, "partners"), 0);
        if (first)
            expect_keys(first, PARTNER_KEYS, what);
        json_decref(got);
        seen++;
    }
    ck_assert_int_eq(seen, 6);
}
END_TEST

START_TEST(test_report_json)
{
    const char *program;
    json_t *want;
    json_object_foreach(json_object_get(g_want, "report"), program, want)
    {
        char flags[160];
        snprintf(flags, sizeof flags, "--program %s", program);
        json_t *got = ask_json("report", flags);
        expect_same(got, want, flags);
        expect_keys(got, "seq,program,currency,periods", flags);
        expect_keys(json_array_get(json_object_get(got, "periods"), 0), REPORT_ROW_KEYS, flags);
        json_decref(got);
    }
}
END_TEST

START_TEST(test_expiring_json)
{
    json_t *got = ask_json("expiring", "");
    expect_same(got, json_object_get(g_want, "expiring"), "expiring");
    expect_keys(got, "seq,programs", "expiring");
    json_t *apex = json_array_get(json_object_get(got, "programs"), 0);
    expect_keys(apex, "program,period,total,partners", "expiring program");
    expect_keys(json_array_get(json_object_get(apex, "partners"), 0), "partner,amount",
                "expiring partner");
    json_decref(got);
    /* --program: that program's entry alone */
    got = ask_json("expiring", "--program nimbus");
    json_t *progs = json_object_get(got, "programs");
    ck_assert_uint_eq(json_array_size(progs), 1);
    expect_same(json_array_get(progs, 0),
                json_array_get(json_object_get(json_object_get(g_want, "expiring"), "programs"), 1),
                "expiring --program nimbus");
    json_decref(got);
}
END_TEST

START_TEST(test_journal_json)
{
    const char *program, *period;
    json_t *periods, *want;
    int seen = 0;
    json_object_foreach(json_object_get(g_want, "journal"), program, periods)
    {
        json_object_foreach(periods, period, want)
        {
            char flags[300];
            snprintf(flags, sizeof flags, "--program %s --period %s", program, period);
            json_t *got = ask_json("journal", flags);
            expect_same(got, want, flags);
            expect_keys(got, "seq,program,period,currency,entries", flags);
            json_t *e = json_array_get(json_object_get(got, "entries"), 0);
            if (e)
                expect_keys(e, "partner,kind,debit,credit,amount", flags);
            json_decref(got);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 24);
}
END_TEST

/* --views DIR (the stores, no service) and --data DIR (the stack's
 * recorded endpoint, no --query) give the service's answer. */
START_TEST(test_views_and_data)
{
    char views[1200];
    snprintf(views, sizeof views, "%s/views", g_stack.dir);
    char *out = NULL;
    ck_assert_int_eq(
        run(&out, NULL, "report", "--program", "apex", "--views", views, "--json", NULL), 0);
    json_t *got = json_loads(out, 0, NULL);
    expect_same(got, json_object_get(json_object_get(g_want, "report"), "apex"), "--views");
    json_decref(got);
    free(out);
    ck_assert_int_eq(run(&out, NULL, "expiring", "--data", g_stack.dir, "--json", NULL), 0);
    got = json_loads(out, 0, NULL);
    expect_same(got, json_object_get(g_want, "expiring"), "--data");
    json_decref(got);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* --csv against --json                                                      */

/* Splits CSV text (RFC 4180 quotes) into a JSON array of rows, each an
 * array of strings. */
static json_t *csv_parse(const char *text)
{
    json_t *rows = json_array(), *row = json_array();
    char field[4096];
    size_t n = 0;
    bool quoted = false;
    for (const char *p = text; *p; p++) {
        if (quoted && *p == '"' && p[1] == '"') {
            field[n++] = *p++;
        } else if (*p == '"') {
            quoted = !quoted;
        } else if (!quoted && (*p == ',' || *p == '\n')) {
            json_array_append_new(row, json_stringn(field, n));
            n = 0;
            if (*p == '\n') {
                json_array_append_new(rows, row);
                row = json_array();
            }
        } else {
            ck_assert(n < sizeof field - 1);
            field[n++] = *p;
        }
    }
    ck_assert_msg(json_array_size(row) == 0 && n == 0 && !quoted, "CSV ends with a line end");
    json_decref(row);
    return rows;
}

/* A JSON value as its CSV field: a string as is, an integer in decimal. */
static void csv_text(const json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else
        snprintf(buf, cap, "%s", "");
}

/* The CSV of `tally CMD FLAGS --csv` holds one header row (the element
 * keys) and the elements of the --json answer's list, in order. */
static void check_csv(const char *cmd, const char *flags, const char *list, const char *keys)
{
    json_t *j = ask_json(cmd, flags);
    char *text = ask(cmd, flags, "--csv");
    json_t *rows = csv_parse(text);
    json_t *elems = json_object_get(j, list);
    ck_assert_uint_eq(json_array_size(rows), json_array_size(elems) + 1);
    char header[512] = "";
    size_t n = 0;
    size_t i, k;
    json_t *h, *e;
    json_array_foreach(json_array_get(rows, 0), k, h)
    {
        n += (size_t)snprintf(header + n, sizeof header - n, "%s%s", k ? "," : "",
                              json_string_value(h));
    }
    ck_assert_str_eq(header, keys);
    json_array_foreach(elems, i, e)
    {
        json_t *row = json_array_get(rows, i + 1);
        json_array_foreach(json_array_get(rows, 0), k, h)
        {
            char want[512];
            csv_text(json_object_get(e, json_string_value(h)), want, sizeof want);
            ck_assert_msg(strcmp(json_string_value(json_array_get(row, k)), want) == 0,
                          "%s %s --csv row %zu column %s: '%s', want '%s'", cmd, flags, i + 1,
                          json_string_value(h), json_string_value(json_array_get(row, k)), want);
        }
    }
    json_decref(rows);
    free(text);
    json_decref(j);
}

START_TEST(test_csv)
{
    check_csv("partners", "", "partners", PARTNER_KEYS);
    check_csv("partners", "--program nimbus --kind var", "partners", PARTNER_KEYS);
    check_csv("report", "--program apex", "periods", REPORT_ROW_KEYS);
    check_csv("report", "--program nimbus", "periods", REPORT_ROW_KEYS);
    check_csv("journal", "--program apex --period 2025-Q3", "entries",
              "partner,kind,debit,credit,amount");
    /* expiring: one row per program and partner, the program's fields first */
    json_t *j = ask_json("expiring", "");
    char *text = ask("expiring", "", "--csv");
    json_t *rows = csv_parse(text), *flat = json_array();
    size_t i, k;
    json_t *prog, *p;
    json_array_foreach(json_object_get(j, "programs"), i, prog)
    {
        json_array_foreach(json_object_get(prog, "partners"), k, p)
        {
            char amount[32];
            csv_text(json_object_get(p, "amount"), amount, sizeof amount);
            json_array_append_new(flat, json_pack("[O, O, O, s]", json_object_get(prog, "program"),
                                                  json_object_get(prog, "period"),
                                                  json_object_get(p, "partner"), amount));
        }
    }
    json_array_insert_new(flat, 0,
                          json_pack("[s, s, s, s]", "program", "period", "partner", "amount"));
    expect_same(rows, flat, "expiring --csv");
    json_decref(flat);
    json_decref(rows);
    free(text);
    json_decref(j);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Tables                                                                    */

/* minor as a decimal of exp digits with thousands separators ("-1,234.56"),
 * computed here independently of the CLI's helper. */
static void money_text(long long minor, int exp, char *buf, size_t cap)
{
    unsigned long long mag =
        minor < 0 ? 0ull - (unsigned long long)minor : (unsigned long long)minor;
    unsigned long long scale = 1;
    for (int i = 0; i < exp; i++)
        scale *= 10;
    char whole[32], grouped[48];
    int n = snprintf(whole, sizeof whole, "%llu", mag / scale), o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            grouped[o++] = ',';
        grouped[o++] = whole[i];
    }
    grouped[o] = '\0';
    /* the fraction with its leading zeros: scale + rest without the "1" */
    char frac[24];
    snprintf(frac, sizeof frac, "%llu", scale + mag % scale);
    if (exp > 0)
        snprintf(buf, cap, "%s%s.%s", minor < 0 ? "-" : "", grouped, frac + 1);
    else
        snprintf(buf, cap, "%s%s", minor < 0 ? "-" : "", grouped);
}

static void expect_text(const char *text, const char *want, const char *what)
{
    ck_assert_msg(strstr(text, want) != NULL, "%s: no \"%s\" in:\n%s", what, want, text);
}

static void expect_money(const char *text, const json_t *o, const char *key, int exp,
                         const char *what)
{
    char m[64];
    money_text((long long)json_integer_value(json_object_get(o, key)), exp, m, sizeof m);
    expect_text(text, m, what);
}

/* No line of text ends in a space (a table pads no cell after the last),
 * and the lines of the table whose heading line starts with heading, up to
 * the next empty line, are all as long: its last column is right-aligned,
 * so every row ends where the headings end. */
static void expect_table_layout(const char *text, const char *heading, const char *what)
{
    for (const char *l = text; *l;) {
        size_t n = strcspn(l, "\n");
        ck_assert_msg(n == 0 || l[n - 1] != ' ', "%s: a line ends in a space: \"%.*s\"", what,
                      (int)n, l);
        l += n + (l[n] == '\n');
    }
    const char *l = strstr(text, heading);
    ck_assert_msg(l != NULL && (l == text || l[-1] == '\n'), "%s: no table under \"%s\"", what,
                  heading);
    size_t width = strcspn(l, "\n"), rows = 0;
    for (; *l && *l != '\n'; rows++) {
        size_t n = strcspn(l, "\n");
        ck_assert_msg(n == width, "%s: row %zu is %zu wide, the headings %zu: \"%.*s\"", what, rows,
                      n, width, (int)n, l);
        l += n + (l[n] == '\n');
    }
    ck_assert_msg(rows >= 3, "%s: headings, rows and a total", what);
}

/* The blank-separated fields of the line of text that starts with word
 * and a blank, as an array of strings. */
static json_t *line_fields(const char *text, const char *word)
{
    char start[128];
    snprintf(start, sizeof start, "\n%s ", word);
    const char *l = strstr(text, start);
    ck_assert_msg(l != NULL, "no line starts with \"%s\" in:\n%s", word, text);
    l++;
    size_t n = strcspn(l, "\n");
    char line[512];
    ck_assert_uint_lt(n, sizeof line);
    memcpy(line, l, n);
    line[n] = '\0';
    json_t *fields = json_array();
    for (char *tok = strtok(line, " "); tok != NULL; tok = strtok(NULL, " "))
        json_array_append_new(fields, json_string(tok));
    return fields;
}

/* Field i of the line that starts with word, counted from the end when i
 * is negative. */
static const char *field_of(json_t *fields, int i)
{
    size_t n = json_array_size(fields);
    size_t at = i < 0 ? n - (size_t)-i : (size_t)i;
    ck_assert_uint_lt(at, n);
    return json_string_value(json_array_get(fields, at));
}

START_TEST(test_tables)
{
    json_t *rep = json_object_get(json_object_get(g_want, "report"), "apex");
    char *t = ask("report", "--program apex", NULL);
    expect_text(t, "As of     seq " VECTOR_SEQ, "report");
    expect_text(t, "USD", "report");
    json_t *q3 = json_array_get(json_object_get(rep, "periods"), 2);
    static const char *const keys[] = {"revenue", "mdf_accrued", "mdf_expired", "rebate",
                                       "rebate_paid"};
    long long revenue = 0;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(rep, "periods"), i, row)
    {
        revenue += (long long)json_integer_value(json_object_get(row, "revenue"));
    }
    for (int k = 0; k < 5; k++)
        expect_money(t, q3, keys[k], 2, "report 2025-Q3");
    char total[64];
    money_text(revenue, 2, total, sizeof total);
    expect_text(t, "Total", "report");
    expect_text(t, total, "report total revenue");
    expect_table_layout(t, "Period", "report");
    json_array_foreach(json_object_get(rep, "periods"), i, row)
    {
        json_t *fields = line_fields(t, json_string_value(json_object_get(row, "period")));
        ck_assert_str_eq(field_of(fields, 1), json_string_value(json_object_get(row, "status")));
        json_decref(fields);
    }
    free(t);

    t = ask("partners", "--search NORTH", NULL);
    json_t *p = json_array_get(
        json_object_get(json_object_get(json_object_get(g_want, "partners"), "--search NORTH"),
                        "partners"),
        1);
    expect_text(t, json_string_value(json_object_get(p, "partner")), "partners");
    expect_text(t, json_string_value(json_object_get(p, "name")), "partners");
    expect_money(t, p, "available", 2, "partners");
    expect_money(t, p, "rebate_payable", 2, "partners");
    expect_text(t, "2 partners", "partners");
    /* each row ends in its program's currency (the report names it) */
    json_array_foreach(
        json_object_get(json_object_get(json_object_get(g_want, "partners"), "--search NORTH"),
                        "partners"),
        i, p)
    {
        json_t *fields = line_fields(t, json_string_value(json_object_get(p, "partner")));
        json_t *report = json_object_get(json_object_get(g_want, "report"),
                                         json_string_value(json_object_get(p, "program")));
        ck_assert_str_eq(field_of(fields, -1),
                         json_string_value(json_object_get(report, "currency")));
        json_decref(fields);
    }
    free(t);
    t = ask("partners", "--search zzz-none", NULL);
    expect_text(t, "No partners match.", "partners, none");
    free(t);
}
END_TEST

START_TEST(test_tables_expiring_journal)
{
    json_t *exp = json_object_get(g_want, "expiring");
    json_t *apex = json_array_get(json_object_get(exp, "programs"), 0);
    char *t = ask("expiring", "", NULL);
    char line[256], total[64];
    money_text((long long)json_integer_value(json_object_get(apex, "total")), 2, total,
               sizeof total);
    snprintf(line, sizeof line, "apex: the close of %s expires %s USD",
             json_string_value(json_object_get(apex, "period")), total);
    expect_text(t, line, "expiring");
    json_t *top = json_array_get(json_object_get(apex, "partners"), 0);
    expect_text(t, json_string_value(json_object_get(top, "partner")), "expiring top");
    expect_money(t, top, "amount", 2, "expiring top");
    expect_text(t, "EUR", "expiring nimbus");
    free(t);

    /* the journal: every entry's amount, and debits = credits in total */
    json_t *j =
        json_object_get(json_object_get(json_object_get(g_want, "journal"), "nimbus"), "2025-06");
    t = ask("journal", "--program nimbus --period 2025-06", NULL);
    long long sum = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        expect_money(t, e, "amount", 2, "journal entry");
        sum += (long long)json_integer_value(json_object_get(e, "amount"));
    }
    money_text(sum, 2, total, sizeof total);
    snprintf(line, sizeof line, "  %s  %s\n", total, total);
    expect_text(t, line, "journal total: debits = credits");
    /* each account's row: what the entries debit and credit it */
    json_t *sums = json_object();
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        static const char *const sides[] = {"debit", "credit"};
        for (size_t s = 0; s < 2; s++) {
            const char *account = json_string_value(json_object_get(e, sides[s]));
            json_t *pair = json_object_get(sums, account);
            if (pair == NULL) {
                pair = json_pack("[I, I]", (json_int_t)0, (json_int_t)0);
                json_object_set_new(sums, account, pair);
            }
            json_array_set_new(pair, s,
                               json_integer(json_integer_value(json_array_get(pair, s)) +
                                            json_integer_value(json_object_get(e, "amount"))));
        }
    }
    ck_assert_uint_ge(json_object_size(sums), 2);
    const char *account;
    json_t *pair;
    json_object_foreach(sums, account, pair)
    {
        char debit[64], credit[64], got_debit[64], got_credit[64];
        money_text((long long)json_integer_value(json_array_get(pair, 0)), 2, debit, sizeof debit);
        money_text((long long)json_integer_value(json_array_get(pair, 1)), 2, credit,
                   sizeof credit);
        json_t *fields = line_fields(t, account);
        snprintf(got_debit, sizeof got_debit, "%s", field_of(fields, -2));
        snprintf(got_credit, sizeof got_credit, "%s", field_of(fields, -1));
        json_decref(fields);
        ck_assert_msg(strcmp(got_debit, debit) == 0 && strcmp(got_credit, credit) == 0,
                      "journal account %s: debit %s credit %s, want %s and %s", account, got_debit,
                      got_credit, debit, credit);
    }
    json_decref(sums);
    expect_text(t, "EUR", "journal");
    free(t);
}
END_TEST

/* --as-of-close PERIOD (issue 11 item 3): the answer of a replay to that
 * close's seq, kept under --data; here report and journal equal what
 * `tally audit replay --to SEQ` and --views give at the same seq. */
START_TEST(test_as_of_close)
{
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(run(&out, &err, "report", "--program", "apex", "--as-of-close", "2025-Q2",
                         "--data", g_stack.dir, "--json", NULL),
                     0);
    json_t *asof = json_loads(out, 0, NULL);
    free(out);
    free(err);
    ck_assert_ptr_nonnull(asof);
    json_int_t seq = json_integer_value(json_object_get(asof, "seq"));
    ck_assert(seq > 0 && seq < 2910);
    json_t *periods = json_object_get(asof, "periods");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(periods, 1), "status")),
                     "closed");
    char seqtext[24], replay[1200];
    snprintf(seqtext, sizeof seqtext, "%lld", (long long)seq);
    snprintf(replay, sizeof replay, "%s/replay-%s", g_stack.dir, seqtext);
    ck_assert_int_eq(run(NULL, NULL, "audit", "replay", "--data", g_stack.dir, "--to", seqtext,
                         "--out", replay, NULL),
                     0);
    static const char *const lines[][8] = {
        {"report", "--program", "apex", NULL},
        {"journal", "--program", "apex", "--period", "2025-Q2", NULL},
        {"expiring", "--program", "apex", NULL},
        {"partners", "--program", "apex", "--tier", "Gold", NULL},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        const char *a[16], *b[16];
        size_t n = 0;
        for (; lines[i][n]; n++)
            a[n] = b[n] = lines[i][n];
        const char *ta[] = {"--as-of-close", "2025-Q2", "--data", g_stack.dir, "--json", NULL};
        const char *tb[] = {"--views", replay, "--json", NULL};
        memcpy(a + n, ta, sizeof ta);
        memcpy(b + n, tb, sizeof tb);
        char *x = NULL, *y = NULL;
        ck_assert_int_eq(run_args(&x, NULL, a), 0);
        ck_assert_int_eq(run_args(&y, NULL, b), 0);
        json_t *jx = json_loads(x, 0, NULL), *jy = json_loads(y, 0, NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(jx, "seq")), seq);
        expect_same(jx, jy, lines[i][0]);
        json_decref(jx);
        json_decref(jy);
        free(x);
        free(y);
    }
    json_decref(asof);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* --accounts                                                                */

/* Writes text to DIR/name; the path in buf. */
static const char *write_file(const char *name, const char *text, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", g_stack.dir, name);
    ck_assert(tu_write_file(buf, text, strlen(text)));
    return buf;
}

START_TEST(test_accounts)
{
    char path[1200];
    write_file("gl.json",
               "{\"cash\": \"1000-Bank\", \"mdf_liability\": \"2100\", \"rebate_liability\":"
               " \"2200 Rebates, accrued\"}",
               path, sizeof path);
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(run(&out, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--json", "--query", g_stack.query, NULL),
                     0);
    json_t *got = json_loads(out, 0, NULL);
    json_t *want = json_deep_copy(
        json_object_get(json_object_get(json_object_get(g_want, "journal"), "apex"), "2025-Q2"));
    static const char *const from[] = {"cash", "mdf_liability", "rebate_liability"};
    static const char *const to[] = {"1000-Bank", "2100", "2200 Rebates, accrued"};
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(want, "entries"), i, e)
    {
        for (int s = 0; s < 2; s++) {
            const char *side = s ? "credit" : "debit";
            for (int k = 0; k < 3; k++)
                if (strcmp(json_string_value(json_object_get(e, side)), from[k]) == 0) {
                    json_object_set_new(e, side, json_string(to[k]));
                    break;
                }
        }
    }
    expect_same(got, want, "journal --accounts");
    json_decref(got);
    free(out);
    free(err);
    /* the same codes in the CSV (quoted where they hold a comma) and the table */
    ck_assert_int_eq(run(&out, NULL, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--csv", "--query", g_stack.query, NULL),
                     0);
    expect_text(out, ",contra_revenue_mdf,2100,", "csv");
    expect_text(out, ",\"2200 Rebates, accrued\",", "csv");
    ck_assert_ptr_null(strstr(out, "rebate_liability"));
    free(out);
    ck_assert_int_eq(run(&out, NULL, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--query", g_stack.query, NULL),
                     0);
    expect_text(out, "1000-Bank", "table");
    expect_text(out, "contra_revenue_rebate", "table: unmapped keys stay");
    free(out);
    json_decref(want);
}
END_TEST

/* A bad accounts file: exit 1, one line saying what is wrong, nothing on
 * stdout, and the service never asked. */
START_TEST(test_accounts_bad)
{
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"{\"cash\": \"1000\", \"bank\": \"1010\"}", "unknown account 'bank'"},
        {"[\"cash\"]", "not a JSON object"},
        {"{\"cash\": 1000}", "'cash' must map to a GL code"},
        {"{\"cash\": \"\"}", "'cash' must map to a GL code"},
        {"{\"cash\": ", "accounts file"},
    };
    char path[1200];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("bad.json", bad[i].text, path, sizeof path);
        char *out = NULL, *err = NULL;
        int rc = run(&out, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                     "--accounts", path, "--query", g_stack.query, NULL);
        ck_assert_msg(rc == 1, "%s: exit %d", bad[i].text, rc);
        expect_text(err, "tally journal: ", bad[i].text);
        expect_text(err, bad[i].says, bad[i].text);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
    }
    char *err = NULL;
    /* jansson's text quotes the file: a terminal escape in it is shown as
     * '?', never written to the terminal (tly_json_load_why) */
    write_file("bad.json", "{\"cash\": \x1b[2J}", path, sizeof path);
    ck_assert_int_eq(run(NULL, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--query", g_stack.query, NULL),
                     1);
    expect_text(err, "accounts file", "escape");
    ck_assert_msg(strchr(err, 0x1b) == NULL, "raw escape on stderr: %s", err);
    free(err);
    err = NULL;
    snprintf(path, sizeof path, "%s/no-such.json", g_stack.dir);
    ck_assert_int_eq(run(NULL, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--query", g_stack.query, NULL),
                     1);
    expect_text(err, "cannot read accounts file", "missing file");
    free(err);
    /* over TLY_ACCOUNTS_FILE_BYTES_MAX (64 KiB): refused before it is parsed */
    size_t big = 64u * 1024u + 1u;
    char *text = malloc(big + 1);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    text[big] = '\0';
    write_file("big.json", text, path, sizeof path);
    free(text);
    ck_assert_int_eq(run(NULL, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                         "--accounts", path, "--query", g_stack.query, NULL),
                     1);
    expect_text(err, "is over 65536 bytes", "big file");
    free(err);
}
END_TEST

/* TLY_GL_CODE_BYTES_MAX: a GL code of that many bytes maps (the journal
 * shows it); one byte more is exit 1 naming the bound, nothing on stdout. */
START_TEST(test_accounts_gl_code_max)
{
    char code[TLY_GL_CODE_BYTES_MAX + 2], text[TLY_GL_CODE_BYTES_MAX + 64], path[1200];
    for (size_t over = 0; over < 2; over++) {
        memset(code, 'G', TLY_GL_CODE_BYTES_MAX + over);
        code[TLY_GL_CODE_BYTES_MAX + over] = '\0';
        snprintf(text, sizeof text, "{\"cash\": \"%s\"}", code);
        write_file("gl-max.json", text, path, sizeof path);
        char *out = NULL, *err = NULL;
        int rc = run(&out, &err, "journal", "--program", "apex", "--period", "2025-Q2",
                     "--accounts", path, "--json", "--query", g_stack.query, NULL);
        if (!over) {
            ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
            char quoted[TLY_GL_CODE_BYTES_MAX + 4];
            snprintf(quoted, sizeof quoted, "\"%s\"", code);
            expect_text(out, quoted, "a GL code at the bound");
        } else {
            char says[80];
            snprintf(says, sizeof says, "'cash' must map to a GL code of 1 to %u bytes",
                     TLY_GL_CODE_BYTES_MAX);
            ck_assert_int_eq(rc, 1);
            expect_text(err, says, "a GL code one byte over");
            ck_assert_str_eq(out, "");
        }
        free(out);
        free(err);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Bad inputs                                                                */

/* One command line, its exit code and what stderr says. */
typedef struct bad_line {
    const char *args[12];
    int rc;
    const char *says;
} bad_line;

static const bad_line bad_lines[] = {
    {{"report", "--program", "nope"}, 1, "tally report: unknown program 'nope'"},
    {{"journal", "--program", "nope", "--period", "2025-Q1"}, 1, "unknown program 'nope'"},
    {{"expiring", "--program", "nope"}, 1, "tally expiring: unknown program 'nope'"},
    /* [JN4] a period of the wrong kind for the program */
    {{"journal", "--program", "apex", "--period", "2025-07"}, 1, "tally journal: '2025-07'"},
    {{"journal", "--program", "nimbus", "--period", "2025-Q1"}, 1, "tally journal: '2025-Q1'"},
    {{"journal", "--program", "apex", "--period", "soon"}, 1, "tally journal: "},
    {{"partners", "--period", "2025-Q1"}, 2, "tally partners: unknown option '--period'"},
    {{"report", "--tier", "Gold"}, 2, "tally report: unknown option '--tier'"},
    {{"expiring", "--accounts", "x.json"}, 2, "tally expiring: unknown option '--accounts'"},
    {{"report"}, 2, "tally report: --program is required"},
    {{"journal", "--program", "apex"}, 2, "tally journal: --period is required"},
    {{"partners", "--json", "--csv"}, 2, "--json and --csv exclude each other"},
    {{"partners", "--shards", "2"}, 2, "--shards goes with --views"},
    {{"report", "apex"}, 2, "tally report: unexpected argument 'apex'"},
    {{"partners", "--search"}, 2, "tally partners: "},
    {{"partners", "--as-of-close", "2025-Q1"}, 2, "--as-of-close needs --program P"},
    {{"report", "--program", "apex", "--as-of-close", "soon"}, 2, "tally report: "},
    {{"report", "--program", "apex", "--as-of-close", "2030-Q1"}, 1, "is not closed yet"},
};

START_TEST(test_bad_inputs)
{
    const bad_line *b = &bad_lines[_i];
    const char *args[16];
    int n = 0;
    for (; b->args[n]; n++)
        args[n] = b->args[n];
    args[n++] = "--query";
    args[n++] = g_stack.query;
    args[n++] = "--data"; /* for --as-of-close: the log it replays */
    args[n++] = g_stack.dir;
    args[n] = NULL;
    if (strcmp(b->args[0], "partners") == 0 && strcmp(b->args[1], "--search") == 0)
        args[2] = NULL; /* the flag's value missing */
    char *out = NULL, *err = NULL;
    int rc = run_args(&out, &err, args);
    ck_assert_msg(rc == b->rc, "tally %s %s: exit %d, want %d (%s)", b->args[0],
                  b->args[1] ? b->args[1] : "", rc, b->rc, err);
    expect_text(err, b->says, b->args[0]);
    ck_assert_str_eq(out, "");
    if (rc == 1)
        ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "one line: %s", err);
    free(out);
    free(err);
}
END_TEST

/* No match is an empty list and exit 0. */
START_TEST(test_empty_answers)
{
    json_t *got = ask_json("partners", "--search zzz-none");
    ck_assert_uint_eq(json_array_size(json_object_get(got, "partners")), 0);
    json_decref(got);
    char *csv = ask("partners", "--tier Nonesuch", "--csv");
    ck_assert_str_eq(csv, PARTNER_KEYS "\n");
    free(csv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("finance_cli");
    TCase *tc = tu_tcase(s, "stack", 900);
    /* one stack for every test, started by the runner before the forks */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tu_add_tests(tc, TU_TESTS(test_partners_json, test_report_json, test_expiring_json,
                              test_journal_json, test_views_and_data, test_as_of_close, test_csv,
                              test_tables, test_tables_expiring_journal, test_accounts,
                              test_accounts_bad, test_accounts_gl_code_max, test_empty_answers));
    tcase_add_loop_test(tc, test_bad_inputs, 0, (int)(sizeof bad_lines / sizeof bad_lines[0]));
    return tu_run_suite(s);
}
