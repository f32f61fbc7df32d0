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
 *   - a consumer killed with SIGKILL is restarted by `tally up`;
 *   - tu_stack_up (testutil.h), which every suite's stack starts with: a
 *     try that loses a port (one it names, or a metrics port `tally up`
 *     derives) to another process is started again on fresh ports, up to
 *     TU_STACK_TRIES, then it gives up saying why; tu_wait_listener tells
 *     a listener that is not the child's, and a child that exited, at once.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_limits.h"

/* Children one test looks for in the supervisor's log. */
#define PIDS_MAX 64

_Static_assert(TU_STACK_METRICS_OFFSET == TLY_UP_METRICS_PORT_OFFSET,
               "tu_stack_up picks the metrics ports `tally up` derives from --ingest");

static void stack_up(tu_stack *s, int shards)
{
    tu_stack_opts o = {.shards = shards};
    ck_assert_msg(tu_stack_up(s, &o), "%s", s->why);
}

/* The pids `tally up` logged for a child name ("consume 0/2"), in start
 * order. */
static int child_pids(const tu_stack *s, const char *name, pid_t *pids, int max)
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

static bool log_has(const tu_stack *s, const char *text)
{
    char *log = tu_read_file(s->log, NULL);
    bool found = log && strstr(log, text);
    free(log);
    return found;
}

/* Sends the vector: consecutive records of one source as one `tally send
 * --source S` run, in file order. Returns the number of runs. */
static int send_vector(const tu_stack *s)
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
            int rc = tu_run_tally(NULL, err, "send", "--source", source, "--ingest", s->ingest,
                                  group, NULL);
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
static json_t *query_json(const tu_stack *s, const char *a, const char *b)
{
    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/q.out", s->dir);
    snprintf(err, sizeof err, "%s/q.err", s->dir);
    int rc = b ? tu_run_tally(out, err, a, b, "--query", s->query, "--json", NULL)
               : tu_run_tally(out, err, a, "--query", s->query, "--json", NULL);
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

static void check_answers(const tu_stack *s)
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
static void assert_children_gone(const tu_stack *s)
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
    tu_stack s;
    stack_up(&s, 2);
    ck_assert_int_eq(send_vector(&s), 543);
    char wait_err[1200];
    snprintf(wait_err, sizeof wait_err, "%s/wait.err", s.dir);
    ck_assert_int_eq(tu_run_tally(NULL, wait_err, "wait", "--seq", "3074", "--timeout", "120",
                                  "--query", s.query, NULL),
                     0);
    check_answers(&s);

    /* A second supervisor on the same data directory refuses to start. */
    char err[1200];
    snprintf(err, sizeof err, "%s/second.err", s.dir);
    ck_assert_int_eq(tu_run_tally(NULL, err, "up", "--data", s.dir, "--shards", "1", NULL), 1);
    char *etext = tu_read_file(err, NULL);
    ck_assert_ptr_nonnull(strstr(etext, "another 'tally up'"));
    free(etext);

    ck_assert_int_eq(tu_stack_stop(&s, SIGTERM), 0);
    ck_assert(log_has(&s, "tally up: all children stopped"));
    /* No child died on its own during the run, and each stopped cleanly. */
    ck_assert(!log_has(&s, "restarting in"));
    ck_assert(!log_has(&s, "was killed by signal"));
    ck_assert(!log_has(&s, "still running, sending SIGKILL"));
    assert_children_gone(&s);
    char pidfile[1200];
    snprintf(pidfile, sizeof pidfile, "%s/tally.pid", s.dir);
    ck_assert_int_eq(access(pidfile, F_OK), -1);
    tu_stack_down(&s);
}
END_TEST

/* Polls the supervisor's log until the child has been started `times`
 * times (bounded: 15 s). */
static bool await_starts(const tu_stack *s, const char *name, int times, pid_t *pids)
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
    tu_stack s;
    stack_up(&s, 2);
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
        tu_run_tally(NULL, NULL, "send", "--source", "finance", "--ingest", s.ingest, ev, NULL), 0);
    ck_assert_int_eq(
        tu_run_tally(NULL, NULL, "wait", "--seq", "1", "--timeout", "60", "--query", s.query, NULL),
        0);
    /* SIGINT (Ctrl-C) stops the stack as SIGTERM does. */
    ck_assert_int_eq(tu_stack_stop(&s, SIGINT), 0);
    ck_assert(log_has(&s, "SIGINT received"));
    assert_children_gone(&s);
    tu_stack_down(&s);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* tu_stack_up and tu_wait_listener                                          */

/* A socket of this process listening on 127.0.0.1:port (close-on-exec:
 * no child holds it); -1 when the port cannot be had. */
static int squat(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* What on_try takes from each try: up to `tries` of them lose a port. */
typedef struct squatter {
    int tries; /* tries that lose a port (from the first) */
    int fds[TU_STACK_TRIES];
    int n;
} squatter;

/* Takes a port the try was given: the query endpoint's on odd tries, the
 * first consumer's metrics port (one `tally up` derives) on even ones. */
static void take_port(const tu_stack *s, int attempt, void *arg)
{
    squatter *q = arg;
    if (attempt > q->tries)
        return;
    int port = attempt % 2 ? atoi(strrchr(s->query, ':') + 1)
                           : s->metrics + TU_STACK_METRICS_SLOT_CONSUMER;
    int fd = squat(port);
    ck_assert_msg(fd >= 0, "try %d: cannot take port %d", attempt, port);
    q->fds[q->n++] = fd;
}

static void squatter_free(squatter *q)
{
    for (int i = 0; i < q->n; i++)
        close(q->fds[i]);
}

/* Two tries lose a port: a later one comes up, on none of their ports. */
START_TEST(test_stack_retries_lost_port)
{
    squatter q = {.tries = 2};
    tu_stack_opts o = {.on_try = take_port, .arg = &q};
    tu_stack s;
    ck_assert_msg(tu_stack_up(&s, &o), "%s", s.why);
    ck_assert_int_ge(s.tries, 3); /* more when a port went by itself too */
    ck_assert_int_eq(q.n, 2);
    ck_assert(kill(s.pid, 0) == 0);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "status", "--query", s.query, NULL), 0);
    ck_assert_int_eq(tu_stack_down(&s), 0);
    squatter_free(&q);
}
END_TEST

/* Every try loses a port: false after TU_STACK_TRIES, the last try's log
 * in why, nothing left running. */
START_TEST(test_stack_gives_up)
{
    squatter q = {.tries = TU_STACK_TRIES};
    tu_stack_opts o = {.shards = 2, .on_try = take_port, .arg = &q};
    tu_stack s;
    ck_assert(!tu_stack_up(&s, &o));
    ck_assert_int_eq(s.tries, TU_STACK_TRIES);
    ck_assert_int_eq(q.n, TU_STACK_TRIES);
    char want[64];
    snprintf(want, sizeof want, "try %d of %d: tally up exited (status 1)", TU_STACK_TRIES,
             TU_STACK_TRIES);
    ck_assert_msg(strstr(s.why, want), "%s", s.why);
    ck_assert_msg(strstr(s.why, "the port is in use"), "%s", s.why);
    ck_assert_int_eq(s.pid, 0);
    ck_assert_ptr_null(s.dir);
    ck_assert_int_eq(tu_stack_down(&s), -1);
    squatter_free(&q);
}
END_TEST

/* A listener that is not the child's is told at once, as is a child that
 * exited; a child's own listener is its. */
START_TEST(test_wait_listener)
{
    /* The child starts before the socket is made: no copy of it, even
     * between its fork and its exec, holds the listener. */
    char *const sleeper[] = {"sleep", "60", NULL};
    pid_t pid = tu_spawn(sleeper, NULL);
    int port = tu_free_port(), fd = squat(port);
    ck_assert_int_ge(fd, 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    ck_assert_int_eq(tu_wait_listener(ep, pid, 15000, NULL), TU_LISTEN_FOREIGN);
    tu_kill_wait(pid, SIGKILL);
    close(fd); /* nobody listens now */
    char *const quitter[] = {"sh", "-c", "exit 3", NULL};
    pid = tu_spawn(quitter, NULL);
    int status = -1;
    ck_assert_int_eq(tu_wait_listener(ep, pid, 15000, &status), TU_LISTEN_EXITED);
    ck_assert_int_eq(status, 3);
    tu_stack s;
    tu_stack_opts o = {.wait = TU_WAIT_QUERY};
    ck_assert_msg(tu_stack_up(&s, &o), "%s", s.why);
    ck_assert_int_eq(tu_wait_listener(s.ingest, s.pid, 15000, NULL), TU_LISTEN_OURS);
    ck_assert_int_eq(tu_stack_down(&s), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("up");
    TCase *tc = tu_tcase(s, "stack", 600);
    tu_add_tests(tc, TU_TESTS(test_stack_end_to_end, test_consumer_restarted));
    TCase *helper = tu_tcase(s, "tu_stack", 300);
    tu_add_tests(helper,
                 TU_TESTS(test_stack_retries_lost_port, test_stack_gives_up, test_wait_listener));
    return tu_run_suite(s);
}
