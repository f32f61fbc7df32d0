/*
 * test_up.c — the whole stack under `tally up`, end to end: real processes,
 * real ZeroMQ on loopback ports, real LMDB.
 *
 *   - seed101 sent group by group with `tally send --source S`, `tally wait
 *     --seq 3074`, then every query of every partner (--json) equal to
 *     tests/vectors/seed101-expected.json, liabilities too, and exceptions
 *     by (seq, kind, partner);
 *   - a second `tally up` on the same data directory refuses to start;
 *   - SIGTERM (and SIGINT) stop `tally up` with exit 0 and no child left;
 *   - a consumer killed with SIGKILL is restarted by `tally up`.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* Children one test looks for in the supervisor's log. */
#define PIDS_MAX 64

typedef struct stack {
    char *dir;
    char ingest[64], events[64], log_read[64], query[64];
    char log[1200];
    pid_t pid;
} stack;

static void stack_up(stack *s, const char *shards)
{
    s->dir = tu_tmpdir();
    tu_endpoint(s->ingest, sizeof s->ingest);
    tu_endpoint(s->events, sizeof s->events);
    tu_endpoint(s->log_read, sizeof s->log_read);
    tu_endpoint(s->query, sizeof s->query);
    snprintf(s->log, sizeof s->log, "%s/up.log", s->dir);
    char web[32]; /* the console's port: stacks run side by side */
    snprintf(web, sizeof web, "127.0.0.1:%d", tu_free_port());
    char *const argv[] = {
        (char *)tu_tally(), "up",           "--web",    web,       "--data",    s->dir,
        "--shards",         (char *)shards, "--ingest", s->ingest, "--events",  s->events,
        "--log-read",       s->log_read,    "--query",  s->query,  "--no-sync", NULL};
    s->pid = tu_spawn(argv, s->log);
    ck_assert(tu_wait_listening(s->ingest, 15000));
    ck_assert(tu_wait_listening(s->query, 15000));
}

static void stack_free(stack *s)
{
    tu_rmtree(s->dir);
    s->dir = NULL;
}

/* The pids `tally up` logged for a child name ("consume 0/2"), in start
 * order. */
static int child_pids(const stack *s, const char *name, pid_t *pids, int max)
{
    char *log = tu_read_file(s->log, NULL);
    char pat[96];
    snprintf(pat, sizeof pat, "tally up: started %s (pid ", name);
    int n = 0;
    for (char *p = log; p && n < max && (p = strstr(p, pat)); p += strlen(pat))
        pids[n++] = (pid_t)atoi(p + strlen(pat));
    free(log);
    return n;
}

static bool log_has(const stack *s, const char *text)
{
    char *log = tu_read_file(s->log, NULL);
    bool found = log && strstr(log, text);
    free(log);
    return found;
}

static int run_quiet(const char *out, const char *err, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *));)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return tu_run(argv, NULL, out, err);
}

/* Sends the vector: consecutive records of one source as one `tally send
 * --source S` run, in file order. Returns the number of runs. */
static int send_vector(const stack *s)
{
    char *path = tu_vector("seed101-events.jsonl");
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char group[1200], err[1200];
    snprintf(group, sizeof group, "%s/group.jsonl", s->dir);
    snprintf(err, sizeof err, "%s/send.err", s->dir);
    char line[65536], source[128] = "";
    FILE *g = NULL;
    int runs = 0;
    for (bool eof = false; !eof;) {
        eof = !fgets(line, sizeof line, f);
        json_t *rec = eof ? NULL : json_loads(line, 0, NULL);
        const char *src = rec ? json_string_value(json_object_get(rec, "source")) : NULL;
        ck_assert(eof || src);
        if (g && (eof || strcmp(src, source) != 0)) {
            fclose(g);
            g = NULL;
            int rc = run_quiet(NULL, err, "send", "--source", source, "--ingest", s->ingest, group,
                               NULL);
            ck_assert_msg(rc == 0, "send of group %d (%s) exit %d", runs, source, rc);
            runs++;
        }
        if (!eof) {
            if (!g) {
                snprintf(source, sizeof source, "%s", src);
                g = fopen(group, "w");
            }
            fputs(line, g);
        }
        json_decref(rec);
    }
    fclose(f);
    free(path);
    return runs;
}

/* Runs a query command with --json and parses its one line. */
static json_t *query_json(const stack *s, const char *a, const char *b)
{
    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/q.out", s->dir);
    snprintf(err, sizeof err, "%s/q.err", s->dir);
    int rc = b ? run_quiet(out, err, a, b, "--query", s->query, "--json", NULL)
               : run_quiet(out, err, a, "--query", s->query, "--json", NULL);
    char *text = tu_read_file(out, NULL);
    char *etext = tu_read_file(err, NULL);
    ck_assert_msg(rc == 0, "%s %s: exit %d: %s", a, b ? b : "", rc, etext);
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_msg(j != NULL, "%s %s: not JSON: %s", a, b ? b : "", text);
    free(text);
    free(etext);
    return j;
}

/* got equals want on want's keys (the section 8 fields of seed101). */
static void assert_json_eq(json_t *got, json_t *want, const char *what)
{
    json_t *p = tu_json_project(got, want);
    bool same = json_equal(p, want);
    json_decref(p);
    if (same)
        return;
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    ck_abort_msg("%s:\n got  %s\n want %s", what, g, w);
}

static void check_answers(const stack *s)
{
    char *vp = tu_vector("seed101-expected.json");
    json_t *vec = json_load_file(vp, 0, NULL);
    free(vp);
    ck_assert_ptr_nonnull(vec);
    const char *id;
    json_t *views;
    json_object_foreach(json_object_get(vec, "partners"), id, views)
    {
        const char *name;
        json_t *want;
        json_object_foreach(views, name, want)
        {
            json_t *got = query_json(s, name, id);
            char what[256];
            snprintf(what, sizeof what, "%s %s", name, id);
            assert_json_eq(got, want, what);
            json_decref(got);
        }
    }
    json_t *got = query_json(s, "liabilities", NULL);
    assert_json_eq(got, json_object_get(vec, "liabilities"), "liabilities");
    json_decref(got);
    got = query_json(s, "exceptions", NULL);
    json_t *gx = json_object_get(got, "exceptions");
    json_t *vx = json_object_get(json_object_get(vec, "exceptions"), "exceptions");
    ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), 3074);
    ck_assert_uint_eq(json_array_size(gx), json_array_size(vx));
    for (size_t i = 0; i < json_array_size(vx); i++) {
        json_t *a = json_array_get(gx, i), *b = json_array_get(vx, i);
        static const char *const keys[] = {"seq", "kind", "partner"};
        for (int k = 0; k < 3; k++)
            ck_assert_msg(json_equal(json_object_get(a, keys[k]), json_object_get(b, keys[k])),
                          "exception %zu differs in %s", i, keys[k]);
    }
    json_decref(got);
    json_decref(vec);
}

/* Every pid `tally up` started is gone after it exited. */
static void assert_children_gone(const stack *s)
{
    static const char *const names[] = {"ledger", "consume 0/2", "consume 1/2", "query"};
    for (int i = 0; i < 4; i++) {
        pid_t pids[PIDS_MAX];
        int n = child_pids(s, names[i], pids, PIDS_MAX);
        ck_assert_int_ge(n, 1);
        for (int k = 0; k < n; k++)
            ck_assert_msg(kill(pids[k], 0) == -1 && errno == ESRCH, "%s pid %d still alive",
                          names[i], (int)pids[k]);
    }
}

START_TEST(test_stack_end_to_end)
{
    stack s;
    stack_up(&s, "2");
    ck_assert_int_eq(send_vector(&s), 543);
    char wait_err[1200];
    snprintf(wait_err, sizeof wait_err, "%s/wait.err", s.dir);
    ck_assert_int_eq(run_quiet(NULL, wait_err, "wait", "--seq", "3074", "--timeout", "120",
                               "--query", s.query, NULL),
                     0);
    check_answers(&s);

    /* A second supervisor on the same data directory refuses to start. */
    char err[1200];
    snprintf(err, sizeof err, "%s/second.err", s.dir);
    ck_assert_int_eq(run_quiet(NULL, err, "up", "--data", s.dir, "--shards", "1", NULL), 1);
    char *etext = tu_read_file(err, NULL);
    ck_assert_ptr_nonnull(strstr(etext, "another 'tally up'"));
    free(etext);

    ck_assert_int_eq(tu_kill_wait(s.pid, SIGTERM), 0);
    ck_assert(log_has(&s, "tally up: all children stopped"));
    /* No child died on its own during the run, and each stopped cleanly. */
    ck_assert(!log_has(&s, "restarting in"));
    ck_assert(!log_has(&s, "was killed by signal"));
    ck_assert(!log_has(&s, "still running, sending SIGKILL"));
    assert_children_gone(&s);
    char pidfile[1200];
    snprintf(pidfile, sizeof pidfile, "%s/tally.pid", s.dir);
    ck_assert_int_eq(access(pidfile, F_OK), -1);
    stack_free(&s);
}
END_TEST

/* Polls the supervisor's log until the child has been started `times`
 * times (bounded: 15 s). */
static bool await_starts(const stack *s, const char *name, int times, pid_t *pids)
{
    for (int waited = 0; waited < 15000; waited += 50) {
        if (child_pids(s, name, pids, PIDS_MAX) >= times)
            return true;
        tu_sleep_ms(50);
    }
    return false;
}

START_TEST(test_consumer_restarted)
{
    stack s;
    stack_up(&s, "2");
    pid_t pids[PIDS_MAX];
    ck_assert(await_starts(&s, "consume 1/2", 1, pids));
    ck_assert_int_eq(kill(pids[0], SIGKILL), 0);
    ck_assert(await_starts(&s, "consume 1/2", 2, pids));
    ck_assert_int_ne(pids[1], pids[0]);
    ck_assert_int_eq(kill(pids[1], 0), 0); /* the new one runs */
    ck_assert(log_has(&s, "consume 1/2 (pid"));
    ck_assert(log_has(&s, "was killed by signal 9"));
    /* The restarted stack still folds: one event in, every shard applies it. */
    char ev[1200];
    snprintf(ev, sizeof ev, "%s/ev.jsonl", s.dir);
    const char *line = "{\"type\":\"program\",\"id\":\"P1\",\"at\":1735689600000,"
                       "\"program\":\"apex\",\"version\":1,\"currency\":\"USD\","
                       "\"period\":\"quarter\",\"tiers\":[{\"name\":\"A\",\"min_revenue\":0,"
                       "\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{\"mode\":\"retroactive\","
                       "\"brackets\":[{\"from\":0,\"bps\":100}]},\"mdf_expiry_periods\":2,"
                       "\"tier_window_periods\":2}\n";
    ck_assert(tu_write_file(ev, line, strlen(line)));
    ck_assert_int_eq(
        run_quiet(NULL, NULL, "send", "--source", "finance", "--ingest", s.ingest, ev, NULL), 0);
    ck_assert_int_eq(
        run_quiet(NULL, NULL, "wait", "--seq", "1", "--timeout", "60", "--query", s.query, NULL),
        0);
    /* SIGINT (Ctrl-C) stops the stack as SIGTERM does. */
    ck_assert_int_eq(tu_kill_wait(s.pid, SIGINT), 0);
    ck_assert(log_has(&s, "SIGINT received"));
    assert_children_gone(&s);
    stack_free(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("up");
    TCase *tc = tu_tcase(s, "stack", 600);
    tu_add_tests(tc, TU_TESTS(test_stack_end_to_end, test_consumer_restarted));
    return tu_run_suite(s);
}
