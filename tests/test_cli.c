/*
 * test_cli.c — the command line every command shares (issue 12 items 3-5),
 * with the real binary, real processes and loopback ports:
 *
 *   - every command and subcommand (the list `tally --help`, `tally audit
 *     --help` and `tally bench --help` print, so a new one without a row
 *     here fails) refuses a flag it does not take: exit 2, the command named;
 *     a shared flag a command does not take is refused the same way;
 *   - every bounded option of the table below is refused one past its
 *     limit (exit 2, the command and the option named, the limit in the
 *     message) and taken at the limit itself;
 *   - `tally ledger promote` names itself in every error (a flag only the
 *     daemon takes, a missing value, --name, --replicate or --stream out of
 *     bounds: exit 2; a cluster that does not answer: exit 1);
 *   - `tally up` records its endpoints in DATA/endpoints.json; with two
 *     stacks on different ports, send, wait, status and a view command given
 *     --data talk to the stack of that directory;
 *   - status names the directory the answering stack serves and warns when
 *     it is not the one asked for;
 *   - an empty path option ("--out ''") and an empty element of a comma
 *     list ("--batches 1,,2") are exit 2 naming the option;
 *   - a client whose query service does not answer names the --data
 *     directory too when that does not exist (exit 1);
 *   - `tally up` fails fast (exit 1, one line, no child started) when a port
 *     is taken and when the data directory is locked by another ledger, and
 *     refuses a --web or --replicate its child would refuse (exit 2);
 *   - `tally send --timeout` gives up against a ledger that never answers;
 *   - daemon log lines: ISO-8601 timestamp and level; colour on a terminal
 *     only, never with NO_COLOR set (even empty); a client's error line
 *     stays plain.
 */
#include <check.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pty.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_limits.h"

static bool file_has(const char *path, const char *text)
{
    char *t = tu_read_file(path, NULL);
    bool found = t && strstr(t, text);
    free(t);
    return found;
}

static int file_lines(const char *path)
{
    char *t = tu_read_file(path, NULL);
    int n = 0;
    for (char *p = t; p && *p; p++)
        n += *p == '\n';
    free(t);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Unknown flags                                                             */

/* Every command line that names one command, and a shared flag it does not
 * take (NULL: none to try). */
typedef struct cmd_row {
    const char *name; /* as `tally --help` lists it, or "audit verify" */
    const char *foreign;
} cmd_row;

static const cmd_row rows[] = {
    {"up", "--json"},
    {"ledger", "--query"},
    {"consume", "--ingest"},
    {"query", "--events"},
    {"web", "--ingest"},
    {"send", "--query"},
    {"gen", "--data"},
    {"status", "--ingest"},
    {"wait", "--json"},
    {"balance", "--events"},
    {"rebate", "--ingest"},
    {"tier", "--log-read"},
    {"claims", "--events"},
    {"liabilities", "--ingest"},
    {"exceptions", "--log-read"},
    {"partners", "--ingest"},
    {"report", "--events"},
    {"expiring", "--log-read"},
    {"journal", "--ingest"},
    {"summary", "--query"},
    {"explain", "--query"},
    {"statement", "--ingest"},
    {"audit verify", "--query"},
    {"audit export", "--json"},
    {"audit digest", "--ingest"},
    {"audit replay", "--query"},
    {"audit diff", "--json"},
    {"bench ingest", "--data"},
    {"bench fold", "--query"},
    {"bench query", "--ingest"},
    {"version", "--json"},
};

static const cmd_row *row_of(const char *name)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

/* Runs "tally <name> <flag>" (name may be "audit verify"); the exit code,
 * stderr in err. */
static int run_flag(const char *name, const char *flag, const char *err)
{
    char first[32], second[32] = "";
    if (sscanf(name, "%31s %31s", first, second) < 1)
        ck_abort_msg("bad row %s", name);
    char *argv[] = {(char *)tu_tally(), first, second[0] ? second : (char *)flag,
                    second[0] ? (char *)flag : NULL, NULL};
    return tu_run(argv, NULL, NULL, err);
}

/* The command names a help text lists under "Commands:" ("  name  text"),
 * each checked against the table; prefix names a command group. */
static int check_listed(const char *help_path, const char *prefix)
{
    char *help = tu_read_file(help_path, NULL);
    ck_assert_ptr_nonnull(help);
    char *p = strstr(help, "Commands:");
    ck_assert_ptr_nonnull(p);
    int seen = 0;
    for (char *line = strchr(p, '\n'); line && line[1] == ' '; line = strchr(line + 1, '\n')) {
        char word[32], name[80];
        if (line[3] == ' ')
            continue; /* the summary's second line */
        if (sscanf(line + 1, "%31s", word) != 1)
            break;
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? " " : "", word);
        if (!prefix[0] && (strcmp(word, "audit") == 0 || strcmp(word, "bench") == 0))
            continue; /* groups: their subcommands are listed by their own help */
        ck_assert_msg(row_of(name) != NULL, "command '%s' has no row in test_cli", name);
        seen++;
    }
    free(help);
    return seen;
}

START_TEST(test_every_command_listed)
{
    char *dir = tu_tmpdir();
    char out[1200];
    snprintf(out, sizeof out, "%s/help", dir);
    ck_assert_int_eq(tu_run_tally(out, NULL, "--help", NULL), 0);
    int n = check_listed(out, "");
    ck_assert_int_eq(tu_run_tally(out, NULL, "audit", "--help", NULL), 0);
    n += check_listed(out, "audit");
    ck_assert_int_eq(tu_run_tally(out, NULL, "bench", "--help", NULL), 0);
    n += check_listed(out, "bench");
    ck_assert_int_eq(n, (int)(sizeof rows / sizeof rows[0]));
    tu_rmtree(dir);
}
END_TEST

/* A flag no command takes, and a shared flag this one does not: exit 2,
 * one usage error naming the command and the flag. */
START_TEST(test_unknown_flag)
{
    const cmd_row *r = &rows[_i];
    char *dir = tu_tmpdir();
    char err[1200], want[160];
    snprintf(err, sizeof err, "%s/err", dir);
    const char *flags[] = {"--no-such-flag", r->foreign};
    for (int k = 0; k < 2 && flags[k]; k++) {
        int rc = run_flag(r->name, flags[k], err);
        ck_assert_msg(rc == 2, "tally %s %s: exit %d, want 2", r->name, flags[k], rc);
        snprintf(want, sizeof want, "tally %s: unknown option '%s'", r->name, flags[k]);
        ck_assert_msg(file_has(err, want), "tally %s %s: stderr lacks \"%s\"", r->name, flags[k],
                      want);
    }
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Option limits                                                             */

/* How a limit row spells its value for n: the number n, n endpoints or n
 * batch sizes separated by commas, n bytes. */
typedef enum lim_kind { LIM_NUMBER, LIM_ENDPOINTS, LIM_SIZES, LIM_BYTES } lim_kind;

/* An option bounded by a limit of tly_limits.h, and how a command line
 * that takes the option at its limit stops at once, before any network or
 * disk: tail follows the option (NULL: an unknown flag, which the parser
 * reaches only when it took the option: exit 2, "unknown option"). */
typedef struct limit_row {
    const char *cmd; /* "wait", "bench ingest" */
    const char *option;
    lim_kind kind;
    unsigned long long max;
    const char *const *tail;
    int ok_exit;         /* with tail: the exit at the limit */
    const char *ok_says; /* with tail: on stderr at the limit */
} limit_row;

/* send checks its endpoints once its options are parsed: at the limit it
 * goes on to its input, which does not exist. */
static const char *const send_tail[] = {"--source", "finance", "/nonexistent/ev.jsonl", NULL};

static const limit_row limit_rows[] = {
    {"wait", "--timeout", LIM_NUMBER, TLY_WAIT_TIMEOUT_S_MAX, NULL, 0, NULL},
    {"wait", "--seq", LIM_NUMBER, TLY_SEQ_ARG_MAX, NULL, 0, NULL},
    {"exceptions", "--from-seq", LIM_NUMBER, TLY_SEQ_ARG_MAX, NULL, 0, NULL},
    {"send", "--timeout", LIM_NUMBER, TLY_SEND_TIMEOUT_S_MAX, NULL, 0, NULL},
    {"send", "--ack-timeout-ms", LIM_NUMBER, TLY_ACK_TIMEOUT_MS_MAX, NULL, 0, NULL},
    {"send", "--window", LIM_NUMBER, TLY_CLIENT_WINDOW_MAX, NULL, 0, NULL},
    {"send", "--ingest", LIM_ENDPOINTS, TLY_CLIENT_ENDPOINTS_MAX, send_tail, 1, "cannot open"},
    {"ledger", "--takeover-after", LIM_NUMBER, TLY_TAKEOVER_AFTER_S_MAX, NULL, 0, NULL},
    {"ledger", "--replicas", LIM_NUMBER, TLY_REPL_REPLICAS_MAX, NULL, 0, NULL},
    {"ledger", "--name", LIM_BYTES, TLY_LEASE_NAME_BYTES_MAX, NULL, 0, NULL},
    {"ledger promote", "--name", LIM_BYTES, TLY_LEASE_NAME_BYTES_MAX, NULL, 0, NULL},
    {"summary", "--top", LIM_NUMBER, TLY_SUMMARY_TOP_MAX, NULL, 0, NULL},
    {"gen", "--events", LIM_NUMBER, TLY_GEN_EVENTS_MAX, NULL, 0, NULL},
    {"gen", "--months", LIM_NUMBER, TLY_GEN_MONTHS_MAX, NULL, 0, NULL},
    {"bench ingest", "--events", LIM_NUMBER, TLY_BENCH_EVENTS_MAX, NULL, 0, NULL},
    {"bench ingest", "--producers", LIM_NUMBER, TLY_BENCH_PRODUCERS_MAX, NULL, 0, NULL},
    {"bench ingest", "--window", LIM_NUMBER, TLY_CLIENT_WINDOW_MAX, NULL, 0, NULL},
    {"bench ingest", "--batches", LIM_SIZES, TLY_BENCH_BATCHES_MAX, NULL, 0, NULL},
    {"bench ingest", "--ingest", LIM_ENDPOINTS, TLY_CLIENT_ENDPOINTS_MAX, NULL, 0, NULL},
    {"bench query", "--events", LIM_NUMBER, TLY_BENCH_EVENTS_MAX, NULL, 0, NULL},
    {"bench query", "--clients", LIM_NUMBER, TLY_BENCH_QUERY_CLIENTS_MAX, NULL, 0, NULL},
    {"bench query", "--seconds", LIM_NUMBER, TLY_BENCH_QUERY_SECONDS_MAX, NULL, 0, NULL},
    {"bench fold", "--events", LIM_NUMBER, TLY_BENCH_EVENTS_MAX, NULL, 0, NULL},
    {"bench fold", "--growth-max", LIM_NUMBER, TLY_BENCH_EVENTS_MAX, NULL, 0, NULL},
};

/* The value of r's option for n into buf (cap bytes). */
static void limit_value(const limit_row *r, unsigned long long n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    if (r->kind == LIM_NUMBER)
        len = (size_t)snprintf(buf, cap, "%llu", n);
    for (unsigned long long k = 0; r->kind == LIM_ENDPOINTS && k < n; k++)
        len +=
            (size_t)snprintf(buf + len, cap - len, "%stcp://127.0.0.1:%llu", k ? "," : "", k + 1);
    for (unsigned long long k = 0; r->kind == LIM_SIZES && k < n; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%llu", k ? "," : "", k + 1);
    for (unsigned long long k = 0; r->kind == LIM_BYTES && k < n; k++)
        buf[len++] = 'n';
    if (r->kind == LIM_BYTES)
        buf[len] = '\0';
    ck_assert_msg(len < cap, "%s %s: value too long for the buffer", r->cmd, r->option);
}

/* Runs "tally <cmd> <option> <value for n> <tail>"; the exit code, stderr
 * in err. */
static int run_limit(const limit_row *r, unsigned long long n, const char *err)
{
    static const char *const unknown[] = {"--no-such-flag", NULL};
    char first[32], second[32] = "", value[1024];
    if (sscanf(r->cmd, "%31s %31s", first, second) < 1)
        ck_abort_msg("bad row %s", r->cmd);
    limit_value(r, n, value, sizeof value);
    char *argv[12] = {(char *)tu_tally(), first};
    int k = 2;
    if (second[0])
        argv[k++] = second;
    argv[k++] = (char *)r->option;
    argv[k++] = value;
    for (const char *const *t = r->tail ? r->tail : unknown; *t; t++)
        argv[k++] = (char *)*t;
    argv[k] = NULL;
    return tu_run(argv, NULL, NULL, err);
}

/* One past the limit: exit 2, one usage error naming the command, the
 * option and the limit. At the limit: not refused for the option, the
 * command line goes on to stop where the row says. */
START_TEST(test_option_limit)
{
    const limit_row *r = &limit_rows[_i];
    char *dir = tu_tmpdir();
    char err[1200], refused[160], max[32];
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(refused, sizeof refused, "tally %s: %s", r->cmd, r->option);
    snprintf(max, sizeof max, "%llu", r->max);
    int rc = run_limit(r, r->max + 1, err);
    char *said = tu_read_file(err, NULL);
    ck_assert_msg(rc == 2, "tally %s %s %llu: exit %d, want 2", r->cmd, r->option, r->max + 1, rc);
    ck_assert_msg(said && strstr(said, refused) && strstr(said, max),
                  "tally %s %s %llu: want \"%s\" and %s, said: %s", r->cmd, r->option, r->max + 1,
                  refused, max, said);
    free(said);
    rc = run_limit(r, r->max, err);
    said = tu_read_file(err, NULL);
    const char *ok_says = r->tail ? r->ok_says : "unknown option '--no-such-flag'";
    int ok_exit = r->tail ? r->ok_exit : 2;
    ck_assert_msg(rc == ok_exit && said && strstr(said, ok_says) && !strstr(said, refused),
                  "tally %s %s %llu: exit %d, want %d with \"%s\", said: %s", r->cmd, r->option,
                  r->max, rc, ok_exit, ok_says, said);
    free(said);
    tu_rmtree(dir);
}
END_TEST

/* --batches longer than bench ingest's old 128-byte copy: a ninth size
 * past the cut is seen and refused, not dropped. */
START_TEST(test_batches_long_list)
{
    char *dir = tu_tmpdir();
    char err[1200], list[512];
    snprintf(err, sizeof err, "%s/err", dir);
    size_t len = 0;
    for (unsigned k = 0; k < TLY_BENCH_BATCHES_MAX; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%u,", k + 1);
    while (len < 300)
        list[len++] = ',';
    snprintf(list + len, sizeof list - len, "1");
    ck_assert_int_eq(
        tu_run_tally(NULL, err, "bench", "ingest", "--batches", list, "--no-such-flag", NULL), 2);
    ck_assert_msg(file_has(err, "tally bench ingest: --batches"), "stderr lacks the refusal");
    tu_rmtree(dir);
}
END_TEST

/* An empty element of a comma-separated list (also a leading or trailing
 * comma) is exit 2 naming the option: bench ingest --batches skipped it
 * and ran other sizes than asked, audit verify and consume --nats named
 * --replicate, bench ingest --replicate was refused by a ledger after the
 * first runs. checked_later: the command checks it after parsing (the
 * row gives --data DIR, no unknown flag behind it). */
static const struct {
    const char *cmd, *opt, *value;
    bool checked_later;
} empty_elements[] = {
    {"bench ingest", "--batches", "1,,2", false},
    {"bench ingest", "--batches", ",1", false},
    {"bench ingest", "--batches", "1,", false},
    {"bench ingest", "--ingest", "tcp://127.0.0.1:1,,tcp://127.0.0.1:2", false},
    {"bench ingest", "--replicate", "nats://127.0.0.1:1,", false},
    {"send", "--ingest", ",tcp://127.0.0.1:1", false},
    {"ledger", "--replicate", "nats://127.0.0.1:1,,nats://127.0.0.1:2", true},
    {"audit verify", "--nats", ",nats://127.0.0.1:1", true},
    {"consume", "--nats", "nats://127.0.0.1:1,", true},
};

START_TEST(test_list_empty_element)
{
    char *dir = tu_tmpdir();
    char err[1200], first[32], second[32] = "", want[96];
    snprintf(err, sizeof err, "%s/err", dir);
    ck_assert(sscanf(empty_elements[_i].cmd, "%31s %31s", first, second) >= 1);
    char *argv[12] = {(char *)tu_tally(), first};
    int k = 2;
    if (second[0])
        argv[k++] = second;
    argv[k++] = (char *)empty_elements[_i].opt;
    argv[k++] = (char *)empty_elements[_i].value;
    if (empty_elements[_i].checked_later) {
        argv[k++] = "--data";
        argv[k++] = dir;
    } else {
        argv[k++] = "--no-such-flag";
    }
    int rc = tu_run(argv, NULL, NULL, err);
    char *said = tu_read_file(err, NULL);
    snprintf(want, sizeof want, "tally %s: %s", empty_elements[_i].cmd, empty_elements[_i].opt);
    ck_assert_msg(rc == 2 && said && strstr(said, want),
                  "tally %s %s '%s': exit %d, want 2 and \"%s\"; said: %s", empty_elements[_i].cmd,
                  empty_elements[_i].opt, empty_elements[_i].value, rc, want, said);
    free(said);
    tu_rmtree(dir);
}
END_TEST

/* The query service not reachable and the data directory named by --data
 * missing: the one line says both (exit 1), since DIR is where a client
 * finds the stack 'tally up' records; it named the endpoint only. */
static const char *const unreachable_lines[][7] = {
    {"balance", "acme"},
    {"liabilities"},
    {"partners"},
    {"statement", "acme", "--period", "2026-Q1", "--out", "/nonexistent/s.html"},
    {"balance", "acme", "--as-of-close", "2026-Q1"}, /* asks the service for the program */
};

START_TEST(test_unreachable_names_data)
{
    char *dir = tu_tmpdir();
    char err[1200], none[1200], query[64], want[1400];
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(none, sizeof none, "%s/none", dir);
    tu_endpoint(query, sizeof query);
    char *argv[16] = {(char *)tu_tally()};
    int k = 1;
    for (int a = 0; a < 7 && unreachable_lines[_i][a]; a++)
        argv[k++] = (char *)unreachable_lines[_i][a];
    argv[k++] = "--data";
    argv[k++] = none;
    argv[k++] = "--query";
    argv[k++] = query;
    int rc = tu_run(argv, NULL, NULL, err);
    snprintf(want, sizeof want,
             "tally %s: query service not reachable at %s, and data directory %s: No such file "
             "or directory",
             unreachable_lines[_i][0], query, none);
    char *said = tu_read_file(err, NULL);
    ck_assert_msg(rc == 1 && said && strstr(said, want), "exit %d, want 1 and \"%s\"; said: %s", rc,
                  want, said);
    free(said);
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* ledger promote                                                            */

/* Values the rows below point at, filled by promote_values: a --name one
 * byte past TLY_LEASE_NAME_BYTES_MAX, a URL one byte past
 * TLY_REPL_URL_BYTES_MAX, one URL more than TLY_REPL_URLS_MAX, and a NATS
 * URL on a loopback port nothing listens on. */
static char long_name[TLY_LEASE_NAME_BYTES_MAX + 2];
static char long_url[TLY_REPL_URL_BYTES_MAX + 2];
static char many_urls[(TLY_REPL_URLS_MAX + 1) * 32];
static char nats_url[64];

static void promote_values(void)
{
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    int len = snprintf(long_url, sizeof long_url, "nats://127.0.0.1:4222/");
    memset(long_url + len, 'u', sizeof long_url - 1 - (size_t)len);
    long_url[sizeof long_url - 1] = '\0';
    size_t at = 0;
    for (unsigned k = 0; k <= TLY_REPL_URLS_MAX; k++)
        at += (size_t)snprintf(many_urls + at, sizeof many_urls - at, "%snats://127.0.0.1:%u",
                               k ? "," : "", 4222 + k);
    ck_assert_uint_lt(at, sizeof many_urls);
    snprintf(nats_url, sizeof nats_url, "nats://127.0.0.1:%d", tu_free_port());
}

/* A `tally ledger promote` command line that fails before it changes
 * anything: the arguments after "promote", its exit, what stderr says. */
typedef struct promote_row {
    const char *args[5];
    int exit;
    const char *says;
} promote_row;

static const promote_row promote_rows[] = {
    {{"--no-such-flag"}, 2, "unknown option '--no-such-flag'"},
    {{"--replicate", nats_url, "--no-sync"}, 2, "unknown option '--no-sync'"},
    {{"--replicate", nats_url, "--replicas", "3"}, 2, "unknown option '--replicas'"},
    {{"--replicate"}, 2, "option --replicate needs a value"},
    {{"--replicate", nats_url, "--name"}, 2, "option --name needs a value"},
    {{"--replicate", nats_url, "--name="}, 2, "--name takes 1 to"},
    {{"--replicate", nats_url, "--name", long_name}, 2, "--name takes 1 to"},
    {{"--replicate", nats_url, "stray"}, 2, "unexpected argument 'stray'"},
    {{"--name", "A"}, 2, "--replicate URL[,URL...] is required"},
    {{"--replicate", ""}, 2, "--replicate takes 1 to"},
    {{"--replicate", long_url}, 2, "--replicate takes 1 to"},
    {{"--replicate", many_urls}, 2, "--replicate takes 1 to"},
    {{"--replicate", nats_url, "--stream", "no spaces"}, 2, "--stream takes 1 to"},
    {{"--replicate", nats_url}, 1, "cannot connect"},
};

/* Every way `tally ledger promote` fails on its own command line or an
 * unreachable cluster: each line of stderr names "tally ledger promote"
 * (never the daemon's "tally ledger"), a usage error exits 2. */
START_TEST(test_promote_errors)
{
    const promote_row *r = &promote_rows[_i];
    promote_values();
    char *dir = tu_tmpdir();
    char err[1200];
    snprintf(err, sizeof err, "%s/err", dir);
    char *argv[9] = {(char *)tu_tally(), "ledger", "promote"};
    for (int k = 0; k < 5 && r->args[k]; k++)
        argv[3 + k] = (char *)r->args[k];
    int rc = tu_run(argv, NULL, NULL, err);
    char *said = tu_read_file(err, NULL);
    ck_assert_msg(rc == r->exit && said && strstr(said, r->says),
                  "row %d: exit %d, want %d with \"%s\", said: %s", _i, rc, r->exit, r->says, said);
    for (char *line = said; *line; line = strchr(line, '\n') + 1) {
        bool named = strncmp(line, "tally ledger promote: ", 22) == 0 ||
                     strncmp(line, "Try 'tally ledger promote --help'.\n", 35) == 0;
        ck_assert_msg(named, "row %d: a line not of tally ledger promote: %s", _i, line);
        ck_assert_ptr_nonnull(strchr(line, '\n'));
    }
    free(said);
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Stacks                                                                    */

/* A one-shard stack (tu_stack_up) and its stop: exit 0. */
static void stack_up(tu_stack *s)
{
    ck_assert_msg(tu_stack_up(s, NULL), "%s", s->why);
}

static void stack_down(tu_stack *s)
{
    ck_assert_int_eq(tu_stack_down(s), 0);
}

/* `status --json` with args; the reply object. */
static json_t *status_json(const char *dir, const char *a, const char *b, const char *c,
                           const char *d)
{
    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/status.out", dir);
    snprintf(err, sizeof err, "%s/status.err", dir);
    int rc = tu_run_tally(out, err, "status", "--json", a, b, c, d, NULL);
    ck_assert_msg(rc == 0, "status exit %d", rc);
    json_t *j = json_load_file(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

static const char program_line[] =
    "{\"type\":\"program\",\"id\":\"P1\",\"at\":1735689600000,"
    "\"program\":\"apex\",\"version\":1,\"currency\":\"USD\","
    "\"period\":\"quarter\",\"tiers\":[{\"name\":\"A\",\"min_revenue\":0,"
    "\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{\"mode\":\"retroactive\","
    "\"brackets\":[{\"from\":0,\"bps\":100}]},\"mdf_expiry_periods\":2,"
    "\"tier_window_periods\":2}\n";

static void check_routing(const tu_stack *a, const tu_stack *b)
{
    char ev[1200], path[1200], out[1200];
    snprintf(ev, sizeof ev, "%s/ev.jsonl", a->dir);
    ck_assert(tu_write_file(ev, program_line, strlen(program_line)));
    /* The endpoints file names A's ports. */
    snprintf(path, sizeof path, "%s/endpoints.json", a->dir);
    json_t *eps = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(eps);
    ck_assert_str_eq(json_string_value(json_object_get(eps, "ingest")), a->ingest);
    ck_assert_str_eq(json_string_value(json_object_get(eps, "query")), a->query);
    json_decref(eps);
    /* send and wait with --data alone reach A. */
    ck_assert_int_eq(
        tu_run_tally(NULL, NULL, "send", "--data", a->dir, "--source", "finance", ev, NULL), 0);
    ck_assert_int_eq(
        tu_run_tally(NULL, NULL, "wait", "--data", a->dir, "--seq", "1", "--timeout", "60", NULL),
        0);
    /* status --data A is A's, --data B is B's, each from its service. */
    char ra[4096], rb[4096];
    json_t *sa = status_json(a->dir, "--data", a->dir, NULL, NULL);
    json_t *sb = status_json(b->dir, "--data", b->dir, NULL, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(sa, "head")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(sb, "head")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sa, "source")), "service");
    ck_assert_str_eq(json_string_value(json_object_get(sb, "source")), "service");
    ck_assert_ptr_nonnull(realpath(a->dir, ra));
    ck_assert_ptr_nonnull(realpath(b->dir, rb));
    ck_assert_str_eq(json_string_value(json_object_get(sa, "data")), ra);
    ck_assert_str_eq(json_string_value(json_object_get(sb, "data")), rb);
    json_decref(sa);
    json_decref(sb);
    /* A view command given --data asks that stack: A's answer is as of seq
     * 1, B's as of 0. */
    snprintf(out, sizeof out, "%s/liab.out", b->dir);
    ck_assert_int_eq(tu_run_tally(out, NULL, "liabilities", "--data", a->dir, "--json", NULL), 0);
    json_t *la = json_load_file(out, 0, NULL);
    ck_assert_int_eq(tu_run_tally(out, NULL, "liabilities", "--data", b->dir, "--json", NULL), 0);
    json_t *lb = json_load_file(out, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(la, "seq")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(lb, "seq")), 0);
    json_decref(la);
    json_decref(lb);
}

/* status --data B answered by A's service (--query names it): a warning
 * naming both directories, exit 0, the answer still printed. */
static void check_mismatch(const tu_stack *a, const tu_stack *b)
{
    char out[1200], err[1200], ra[4096];
    snprintf(out, sizeof out, "%s/mm.out", b->dir);
    snprintf(err, sizeof err, "%s/mm.err", b->dir);
    ck_assert_int_eq(tu_run_tally(out, err, "status", "--data", b->dir, "--query", a->query, NULL),
                     0);
    ck_assert_ptr_nonnull(realpath(a->dir, ra));
    ck_assert(file_has(err, "warning: the query service at"));
    ck_assert(file_has(err, ra));
    ck_assert(file_has(out, "Data         "));
    ck_assert(file_has(out, ra));
    /* No warning when the stack is the one asked for. */
    ck_assert_int_eq(tu_run_tally(out, err, "status", "--data", a->dir, NULL), 0);
    ck_assert(!file_has(err, "warning"));
}

/* wait --shards N on a stack of another count: the timeout says so, not
 * a shard's checkpoint (already past the seq waited for). A --timeout of 0
 * probed the service for 1 ms, and the data directory's fallback then
 * listed the 2-shard layout asked for ("shard 0/2 is at 0"): a flake under
 * load. With 3 s the service answers, and its answer is what the timeout
 * explains even when a later probe falls back. */
static void check_wait_shards(const tu_stack *a)
{
    char err[1200];
    snprintf(err, sizeof err, "%s/ws.err", a->dir);
    ck_assert_int_eq(tu_run_tally(NULL, err, "wait", "--data", a->dir, "--seq", "1", "--shards",
                                  "2", "--timeout", "3", NULL),
                     1);
    char *said = tu_read_file(err, NULL);
    ck_assert_msg(said && strstr(said, "waiting for seq 1: the stack has 1 shard, not the 2 "
                                       "--shards expects"),
                  "wait said: %s", said);
    free(said);
}

START_TEST(test_data_routing)
{
    tu_stack a, b;
    stack_up(&a);
    stack_up(&b);
    check_routing(&a, &b);
    check_mismatch(&a, &b);
    check_wait_shards(&a);
    stack_down(&a);
    stack_down(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The endpoints file                                                        */

/* An endpoints file that is not a JSON object refuses a client command
 * (exit 1) with one plain line that says why. jansson's message quotes the
 * file near the error: its control bytes (an escape sequence would reach
 * the terminal) and a character it cuts in two are shown as '?'; a file of
 * JSON but no object is said to be one (the message ended in ": "). Found
 * by fuzz_endpoints. */
START_TEST(test_endpoints_file_refused)
{
    static const struct {
        const char *text;
        const char *says;
    } files[] = {
        {"{\"query\": \x1b[2J}\n", "writes: invalid token near '?'\n"},
        {"\"\\\xcd\x80\"\n", "writes: invalid escape near '\"\\?'\n"},
        {"[1]\n", "writes: not a JSON object\n"},
    };
    char *dir = tu_tmpdir();
    char path[1200], err[1200];
    snprintf(path, sizeof path, "%s/endpoints.json", dir);
    snprintf(err, sizeof err, "%s/status.err", dir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ck_assert(tu_write_file(path, files[i].text, strlen(files[i].text)));
        ck_assert_int_eq(tu_run_tally(NULL, err, "status", "--data", dir, NULL), 1);
        char *text = tu_read_file(err, NULL);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(strncmp(text, "tally status: ", 14) == 0 && strstr(text, files[i].says),
                      "file %zu: %s", i, text);
        size_t len = strlen(text);
        for (size_t k = 0; k + 1 < len; k++)
            ck_assert_msg(text[k] >= 0x20 && text[k] < 0x7f, "file %zu byte %zu: %s", i, k, text);
        free(text);
    }
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Bad input                                                                 */

/* Every path-valued option (TLY_OPT_PATH), first in its row, and a
 * command line that takes it with everything else it needs. --data is
 * the shared one: an empty DIR would put the log and the views at the
 * root of the file system ("/log", "/views": a consumer created /views
 * so); the others gave messages with the path missing ("no view store
 * under  yet", "no log in ./tally-data/log" for replay --out ''). */
static const char *const path_lines[][6] = {
    {"--data", "status"},
    {"--data", "wait", "--seq", "1"},
    {"--data", "balance", "acme"},
    {"--data", "consume"},
    {"--data", "ledger"},
    {"--data", "up"},
    {"--data", "query"},
    {"--data", "explain", "acme"},
    {"--data", "audit", "verify"},
    {"--data", "audit", "diff"},
    {"--data", "audit", "replay", "--out", "/nonexistent/out"},
    {"--out", "audit", "replay"},
    {"--program", "audit", "replay", "--out", "/nonexistent/out"},
    {"--views", "audit", "diff"},
    {"--views", "balance", "acme"},
    {"--curve-secret", "balance", "acme"},
    {"--views", "partners"},
    {"--curve-secret", "partners"},
    {"--accounts", "journal"},
    {"--out", "statement", "acme"},
    {"--curve-secret", "consume"},
    {"--curve-secret", "query"},
    {"--authorized-keys", "query"},
    {"--curve-secret", "ledger"},
    {"--authorized-keys", "ledger"},
    {"--curve-secret", "send"},
    {"--receipts", "send"},
    {"--out", "gen"},
    {"--dir", "bench", "ingest"},
};

/* An empty path is exit 2 naming the option ("--out: empty path"), in
 * both spellings, before any file or directory is touched. An unknown
 * flag follows it, so a command that took it stops there (bench ingest
 * --dir '' ran its benchmark in /tally-bench-XXXXXX). */
START_TEST(test_path_empty)
{
    char *dir = tu_tmpdir();
    char err[1200], want[64];
    snprintf(err, sizeof err, "%s/err", dir);
    const char *const *line = path_lines[_i];
    snprintf(want, sizeof want, ": %s: empty path", line[0]);
    for (int form = 0; form < 2; form++) {
        char *argv[12] = {(char *)tu_tally()}, joined[64];
        int k = 1;
        for (int a = 1; a < 6 && line[a]; a++)
            argv[k++] = (char *)line[a];
        snprintf(joined, sizeof joined, "%s=", line[0]);
        if (form == 0) {
            argv[k++] = (char *)line[0];
            argv[k++] = "";
        } else {
            argv[k++] = joined;
        }
        argv[k++] = "--no-such-flag";
        int rc = tu_run(argv, NULL, NULL, err);
        char *said = tu_read_file(err, NULL);
        ck_assert_msg(rc == 2 && said && strstr(said, want),
                      "tally %s %s %s '': exit %d, want 2 and \"%s\"; said: %s", line[1],
                      line[2] ? line[2] : "", line[0], rc, want, said);
        free(said);
    }
    tu_rmtree(dir);
}
END_TEST

/* send's input: a directory (a read error) is exit 1 naming it, never
 * "sent 0"; an empty file operand is exit 2; --receipts naming the input itself (or a hard link to
 * it) is refused before it is opened, which would have emptied the input. No ledger is needed: each
 * stops before the first request. */
START_TEST(test_send_bad_input)
{
    char *dir = tu_tmpdir();
    char ingest[64], ev[1200], link_path[1200], out[1200], err[1200];
    tu_endpoint(ingest, sizeof ingest);
    snprintf(ev, sizeof ev, "%s/ev.jsonl", dir);
    snprintf(link_path, sizeof link_path, "%s/receipts", dir);
    snprintf(out, sizeof out, "%s/send.out", dir);
    snprintf(err, sizeof err, "%s/send.err", dir);
    ck_assert_int_eq(
        tu_run_tally(out, err, "send", "--ingest", ingest, "--timeout", "5", dir, NULL), 1);
    ck_assert_msg(file_has(err, "tally send: cannot read the input after line 0: Is a directory"),
                  "stderr lacks the read error");
    /* an empty file operand (an unset "$FILE") is a usage error naming it */
    ck_assert_int_eq(tu_run_tally(out, err, "send", "--ingest", ingest, "--timeout", "5", "", NULL),
                     2);
    ck_assert_msg(file_has(err, "tally send: FILE: empty path"), "stderr lacks the empty path");
    ck_assert_int_eq(file_lines(out), 0);
    ck_assert(tu_write_file(ev, program_line, strlen(program_line)));
    ck_assert_int_eq(link(ev, link_path), 0);
    const char *const receipts[] = {ev, link_path};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(tu_run_tally(out, err, "send", "--ingest", ingest, "--timeout", "5",
                                      "--receipts", receipts[i], ev, NULL),
                         2);
        ck_assert(file_has(err, "tally send: --receipts "));
        ck_assert(file_has(err, " is the input file"));
        ck_assert_msg(file_has(ev, program_line), "the input was changed");
    }
    tu_rmtree(dir);
}
END_TEST

/* An endpoint option's value must name a transport (tcp://, ipc://,
 * inproc://) and something after it, each element of a list too: anything
 * else is a usage error naming the option, where the ledger said
 * "refusing to bind bogus without CURVE" and the others failed later. */
static const struct {
    const char *cmd, *opt, *value;
} bad_endpoints[] = {
    {"ledger", "--ingest", "bogus"},
    {"ledger", "--log-read", ""},
    {"query", "--query", "tcp://"},
    {"consume", "--events", "ipc://"},
    {"send", "--ingest", "tcp://127.0.0.1:1,bogus"},
    {"send", "--ingest", "tcp://127.0.0.1:1,"},
    {"status", "--query", "127.0.0.1:7413"},
};

START_TEST(test_endpoint_syntax)
{
    char *dir = tu_tmpdir();
    char err[1200], want[256];
    snprintf(err, sizeof err, "%s/err", dir);
    const char *cmd = bad_endpoints[_i].cmd, *opt = bad_endpoints[_i].opt;
    const char *value = bad_endpoints[_i].value;
    ck_assert_int_eq(tu_run_tally(NULL, err, cmd, "--data", dir, opt, value, NULL), 2);
    snprintf(want, sizeof want, "tally %s: %s: '%s' is not a ZeroMQ endpoint", cmd, opt, value);
    ck_assert_msg(file_has(err, want), "%s %s '%s'", cmd, opt, value);
    /* The shortest accepted: parsed, then not reachable (exit 1, not 2). */
    ck_assert_int_eq(tu_run_tally(NULL, err, "status", "--data", dir, "--query", "ipc://x", NULL),
                     1);
    ck_assert(!file_has(err, "is not a ZeroMQ endpoint"));
    tu_rmtree(dir);
}
END_TEST

/* A --query endpoint ZeroMQ cannot parse: status and wait say so (exit 2)
 * at once; wait does not poll it until --timeout runs out. */
START_TEST(test_bad_query_endpoint)
{
    char *dir = tu_tmpdir();
    char err[1200];
    snprintf(err, sizeof err, "%s/err", dir);
    ck_assert_int_eq(
        tu_run_tally(NULL, err, "status", "--data", dir, "--query", "tcp://bogus", NULL), 2);
    ck_assert(file_has(err, "tally status: bad query endpoint 'tcp://bogus'"));
    ck_assert_int_eq(tu_run_tally(NULL, err, "wait", "--data", dir, "--query", "tcp://bogus",
                                  "--seq", "1", "--timeout", "20", NULL),
                     2);
    ck_assert(file_has(err, "tally wait: bad query endpoint 'tcp://bogus'"));
    tu_rmtree(dir);
}
END_TEST

/* wait --shards N answered from the data directory (no service there):
 * the shards it asked for that have no store are named as missing, not
 * as "at 0". */
START_TEST(test_wait_missing_store)
{
    char *dir = tu_tmpdir();
    char err[1200], views[1200], want[1400];
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(views, sizeof views, "%s/views", dir);
    ck_assert_int_eq(mkdir(views, 0700), 0);
    ck_assert_int_eq(tu_run_tally(NULL, err, "wait", "--data", dir, "--query", "tcp://127.0.0.1:1",
                                  "--seq", "1", "--shards", "2", "--timeout", "0", NULL),
                     1);
    snprintf(want, sizeof want, "waiting for seq 1: shard 0/2 has no view store under %s/views",
             dir);
    ck_assert_msg(file_has(err, want), "wait said something else");
    tu_rmtree(dir);
}
END_TEST

/* A --log-read endpoint ZeroMQ cannot parse stops a remote consumer
 * (exit 1, the endpoint named): it asked again for ever before. */
START_TEST(test_consume_bad_log_read)
{
    char *dir = tu_tmpdir();
    char log[1200];
    snprintf(log, sizeof log, "%s/consume.log", dir);
    char *const argv[] = {(char *)tu_tally(), "consume",    "--data",      dir,
                          "--remote",         "--log-read", "tcp://bogus", NULL};
    pid_t pid = tu_spawn(argv, log);
    int status = -1;
    for (int waited = 0; waited < 15000 && waitpid(pid, &status, WNOHANG) == 0; waited += 50)
        tu_sleep_ms(50);
    if (status == -1) {
        tu_kill_wait(pid, SIGKILL);
        ck_abort_msg("consume with --log-read tcp://bogus did not stop within 15 s");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
    ck_assert(file_has(log, "log-read socket tcp://bogus: "));
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Failing fast                                                              */

/* A socket listening on a free loopback port (never accepting); its port. */
static int listen_port(int *fd_out)
{
    for (int tries = 0; tries < 20; tries++) {
        int port = tu_free_port();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0) {
            *fd_out = fd;
            return port;
        }
        if (fd >= 0)
            close(fd);
    }
    ck_abort_msg("no port to listen on");
    return 0;
}

/* `tally up` as up_once, with one more option and its value after the
 * others (opt NULL: none), so a --web given there wins over up_once's. */
static int up_with(const char *dir, const char *ingest, const char *opt, const char *value,
                   const char *out)
{
    char ev[64], lr[64], q[64], web[32];
    tu_endpoint(ev, sizeof ev);
    tu_endpoint(lr, sizeof lr);
    tu_endpoint(q, sizeof q);
    snprintf(web, sizeof web, "127.0.0.1:%d", tu_free_port());
    return tu_run_tally(out, out, "up", "--data", dir, "--shards", "1", "--ingest", ingest,
                        "--events", ev, "--log-read", lr, "--query", q, "--web", web, "--no-sync",
                        "--no-metrics", opt, value, NULL);
}

/* `tally up` on dir with the given ingest endpoint and free others: exit
 * code, its output (stdout and stderr) in out. Without metrics: their
 * ports follow --ingest's, and a test beside this one may hold one (under
 * `ctest -j2` test_up_data_locked failed so: "metrics of web on
 * 127.0.0.1:11461: the port is in use by another process", before the
 * lock it checks was reached). */
static int up_once(const char *dir, const char *ingest, const char *out)
{
    return up_with(dir, ingest, NULL, NULL, out);
}

/* [up] A value up hands on to a child that the child would refuse is
 * refused by up itself (exit 2, the option named, no child started): up
 * started every child, the one refused it, and up stopped the others and
 * exited 1. */
static const struct {
    const char *opt, *value;
} up_bad_values[] = {
    {"--web", "bogus"},
    {"--web", "127.0.0.1"},
    {"--web", "127.0.0.1:0"},
    {"--web", "192.0.2.1:7414"},
    {"--replicate", "nats://127.0.0.1:1,"},
};

START_TEST(test_up_bad_value)
{
    char *dir = tu_tmpdir();
    char ingest[64], out[1200], want[64];
    tu_endpoint(ingest, sizeof ingest);
    snprintf(out, sizeof out, "%s/up.out", dir);
    snprintf(want, sizeof want, "tally up: %s", up_bad_values[_i].opt);
    int rc = up_with(dir, ingest, up_bad_values[_i].opt, up_bad_values[_i].value, out);
    ck_assert_msg(rc == 2 && file_has(out, want), "up %s %s: exit %d, want 2 naming it",
                  up_bad_values[_i].opt, up_bad_values[_i].value, rc);
    ck_assert_msg(!file_has(out, "started"), "a child was started");
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_up_port_taken)
{
    char *dir = tu_tmpdir();
    int fd;
    char ingest[64], out[1200];
    snprintf(ingest, sizeof ingest, "tcp://127.0.0.1:%d", listen_port(&fd));
    snprintf(out, sizeof out, "%s/up.out", dir);
    ck_assert_int_eq(up_once(dir, ingest, out), 1);
    ck_assert_msg(file_lines(out) == 1, "want one line");
    ck_assert(file_has(out, "ERROR tally up: --ingest "));
    ck_assert(file_has(out, "the port is in use"));
    ck_assert(!file_has(out, "started"));
    close(fd);
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_up_data_locked)
{
    char *dir = tu_tmpdir();
    char in[64], ev[64], lr[64], ingest[64], out[1200], log[1200];
    tu_endpoint(in, sizeof in);
    tu_endpoint(ev, sizeof ev);
    tu_endpoint(lr, sizeof lr);
    snprintf(log, sizeof log, "%s/ledger.log", dir);
    char *const argv[] = {(char *)tu_tally(), "ledger", "--data",     dir, "--ingest",  in,
                          "--events",         ev,       "--log-read", lr,  "--no-sync", NULL};
    pid_t ledger = tu_spawn(argv, log);
    ck_assert_int_eq(tu_wait_listener(in, ledger, 15000, NULL), TU_LISTEN_OURS);
    tu_endpoint(ingest, sizeof ingest);
    snprintf(out, sizeof out, "%s/up.out", dir);
    ck_assert_int_eq(up_once(dir, ingest, out), 1);
    char *said = tu_read_file(out, NULL);
    ck_assert_msg(file_lines(out) == 1, "want one line: %s", said);
    ck_assert_msg(file_has(out, "is locked: another ledger writes its log"), "tally up said: %s",
                  said);
    free(said);
    ck_assert(!file_has(out, "started"));
    ck_assert_int_eq(tu_kill_wait(ledger, SIGTERM), 0);
    tu_rmtree(dir);
}
END_TEST

/* A "ledger" that accepts TCP connections (the kernel's backlog) and never
 * answers: send gives up after --timeout, exit 1, no summary on stdout. */
START_TEST(test_send_timeout)
{
    char *dir = tu_tmpdir();
    int fd;
    char ingest[64], ev[1200], out[1200], err[1200];
    snprintf(ingest, sizeof ingest, "tcp://127.0.0.1:%d", listen_port(&fd));
    snprintf(ev, sizeof ev, "%s/ev.jsonl", dir);
    snprintf(out, sizeof out, "%s/send.out", dir);
    snprintf(err, sizeof err, "%s/send.err", dir);
    ck_assert(tu_write_file(ev, program_line, strlen(program_line)));
    ck_assert_int_eq(tu_run_tally(out, err, "send", "--source", "finance", "--ingest", ingest,
                                  "--ack-timeout-ms", "200", "--timeout", "1", ev, NULL),
                     1);
    ck_assert(file_has(err, "tally send: gave up after 1 s"));
    ck_assert(file_has(err, "1 events without an outcome"));
    ck_assert_int_eq(file_lines(out), 0);
    close(fd);
    tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Log lines                                                                 */

/* Runs tally on a terminal (a pty) with NO_COLOR unset (no_color NULL) or
 * set to no_color; the terminal's output into buf. */
static void run_on_pty(const char *no_color, char *const argv[], char *buf, size_t cap)
{
    int master;
    fflush(NULL);
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid == 0) { /* no assertion in the child (see tl_spawn_env) */
        if (no_color)
            setenv("NO_COLOR", no_color, 1);
        else
            unsetenv("NO_COLOR");
        execv(argv[0], argv);
        _exit(127);
    }
    ck_assert_int_ge(pid, 0);
    size_t n = 0;
    for (ssize_t r; n + 1 < cap && (r = read(master, buf + n, cap - 1 - n)) > 0;)
        n += (size_t)r;
    buf[n] = '\0';
    close(master);
    int st;
    waitpid(pid, &st, 0);
}

/* The query service refusing a taken port logs one ERROR line. */
START_TEST(test_log_lines)
{
    char *dir = tu_tmpdir();
    int fd;
    char q[64], err[1200], buf[4096];
    snprintf(q, sizeof q, "tcp://127.0.0.1:%d", listen_port(&fd));
    snprintf(err, sizeof err, "%s/query.err", dir);
    ck_assert_int_eq(tu_run_tally(NULL, err, "query", "--data", dir, "--query", q, NULL), 1);
    char *text = tu_read_file(err, NULL);
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "ERROR tally query: cannot bind ",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "log line: %s", text);
    ck_assert_ptr_null(strchr(text, '\033')); /* not a terminal: no colour */
    free(text);
    char *const argv[] = {(char *)tu_tally(), "query", "--data", dir, "--query", q, NULL};
    run_on_pty(NULL, argv, buf, sizeof buf);
    ck_assert_msg(strstr(buf, "\033[31mERROR\033[0m tally query: cannot bind"), "tty: %s", buf);
    run_on_pty("1", argv, buf, sizeof buf);
    ck_assert_msg(strstr(buf, "Z ERROR tally query: cannot bind") && !strchr(buf, '\033'),
                  "NO_COLOR=1: %s", buf);
    run_on_pty("", argv, buf, sizeof buf);
    ck_assert_msg(!strchr(buf, '\033'), "NO_COLOR set empty: %s", buf);
    /* A client command's error stays one plain line. */
    ck_assert_int_eq(tu_run_tally(NULL, err, "balance", "acme", "--query", q, NULL), 1);
    text = tu_read_file(err, NULL);
    ck_assert_msg(strncmp(text, "tally balance: ", 15) == 0, "client line: %s", text);
    free(text);
    regfree(&re);
    close(fd);
    tu_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *flags = tu_tcase(s, "flags", 60);
    tu_add_tests(flags, TU_TESTS(test_every_command_listed));
    tcase_add_loop_test(flags, test_unknown_flag, 0, (int)(sizeof rows / sizeof rows[0]));
    tcase_add_loop_test(flags, test_option_limit, 0,
                        (int)(sizeof limit_rows / sizeof limit_rows[0]));
    tu_add_tests(flags, TU_TESTS(test_batches_long_list, test_endpoints_file_refused));
    tu_add_tests(flags, TU_TESTS(test_send_bad_input, test_bad_query_endpoint,
                                 test_wait_missing_store, test_consume_bad_log_read));
    tcase_add_loop_test(flags, test_path_empty, 0, (int)(sizeof path_lines / sizeof path_lines[0]));
    tcase_add_loop_test(flags, test_list_empty_element, 0,
                        (int)(sizeof empty_elements / sizeof empty_elements[0]));
    tcase_add_loop_test(flags, test_unreachable_names_data, 0,
                        (int)(sizeof unreachable_lines / sizeof unreachable_lines[0]));
    tcase_add_loop_test(flags, test_endpoint_syntax, 0,
                        (int)(sizeof bad_endpoints / sizeof bad_endpoints[0]));
    tcase_add_loop_test(flags, test_promote_errors, 0,
                        (int)(sizeof promote_rows / sizeof promote_rows[0]));
    TCase *stacks = tu_tcase(s, "stacks", 300);
    tu_add_tests(stacks, TU_TESTS(test_data_routing, test_up_port_taken, test_up_data_locked,
                                  test_send_timeout, test_log_lines));
    tcase_add_loop_test(stacks, test_up_bad_value, 0,
                        (int)(sizeof up_bad_values / sizeof up_bad_values[0]));
    return tu_run_suite(s);
}
