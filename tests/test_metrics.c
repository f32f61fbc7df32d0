/*
 * test_metrics.c — the Prometheus metrics of --metrics, scraped from real
 * processes on loopback with a plain HTTP/1.0 GET over a TCP socket:
 *
 *   - `tally up --metrics` gives the ledger, the query service and each
 *     consumer a port, prints them and records them in DIR/endpoints.json;
 *     every scrape passes `promtool check metrics` (Debian's prometheus
 *     package; without promtool that check alone is skipped, said on
 *     stderr); after `tally send` (new events, the same again, bad ones),
 *     a fold and queries, the counters moved by exactly what was sent:
 *     events appended by type, duplicates, rejects by error code, the head,
 *     the group-commit and commit-latency histograms, each consumer's
 *     checkpoint, lag and records folded, the query service's requests by
 *     kind and its latency histogram;
 *   - a non-loopback --metrics without --insecure is a usage error (exit 2)
 *     for every daemon and for `tally up`, as is a malformed ADDR; with
 *     --insecure a wildcard address serves; another path is 404 and another
 *     method 405; `tally up` exits 1 when a metrics port is taken;
 *   - a ledger maps libmicrohttpd only with --metrics, and cairo never.
 */
#include <arpa/inet.h>
#include <check.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_limits.h"

/* A scrape's bytes at most (ours are a few tens of KiB). */
#define SCRAPE_BYTES_MAX (1u << 20)

/* Records of seed101 sent (two programs, then partners and their events). */
#define SENT_RECORDS 40

/* How long a condition the stack reaches by itself is polled for. */
#define WAIT_MS 30000

/* Sends "METHOD PATH HTTP/1.0" to 127.0.0.1:port and reads the whole
 * reply. Returns the body (malloc'd) and the status in *status; NULL when
 * nothing answered. */
static char *http_get(int port, const char *method, const char *path, int *status)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int len = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    ck_assert_int_eq(write(fd, req, (size_t)len), len);
    char *buf = malloc(SCRAPE_BYTES_MAX + 1);
    size_t n = 0;
    for (ssize_t got; n < SCRAPE_BYTES_MAX && (got = read(fd, buf + n, SCRAPE_BYTES_MAX - n)) > 0;)
        n += (size_t)got;
    close(fd);
    buf[n] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body && sscanf(buf, "HTTP/1.%*d %d", status) == 1, "not HTTP: %.200s", buf);
    char *out = strdup(body + 4);
    free(buf);
    return out;
}

static char *scrape(int port)
{
    int status = 0;
    char *body = http_get(port, "GET", "/metrics", &status);
    ck_assert_msg(body, "nothing answers on metrics port %d", port);
    ck_assert_int_eq(status, 200);
    return body;
}

/* The value of one series ("name{label=\"v\"}" exactly as rendered);
 * -1 when the scrape has no such line. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* `promtool check metrics` on text (stdin): exit 0 and no lint line. */
static void promtool_check(const char *dir, const char *text, const char *what)
{
    static int warned;
    if (access("/usr/bin/promtool", X_OK) != 0 && system("command -v promtool >/dev/null") != 0) {
        if (!warned++)
            fprintf(stderr, "test_metrics: promtool not found (scripts/deps.sh installs "
                            "prometheus): the format check is SKIPPED\n");
        return;
    }
    char in[1200], out[1200];
    snprintf(in, sizeof in, "%s/scrape.txt", dir);
    snprintf(out, sizeof out, "%s/promtool.out", dir);
    ck_assert(tu_write_file(in, text, strlen(text)));
    char *const argv[] = {"promtool", "check", "metrics", NULL};
    int rc = tu_run(argv, in, out, out);
    char *said = tu_read_file(out, NULL);
    ck_assert_msg(rc == 0 && (!said || !said[0]), "promtool on the %s metrics: exit %d: %s", what,
                  rc, said ? said : "");
    free(said);
}

/* Polls the scrape of port until series reaches at least want. */
static double await_value(int port, const char *series, double want)
{
    double v = -1;
    for (int waited = 0; waited <= WAIT_MS; waited += 50) {
        char *text = scrape(port);
        v = value_of(text, series);
        free(text);
        if (v >= want)
            return v;
        tu_sleep_ms(50);
    }
    ck_abort_msg("%s stayed at %g below %g", series, v, want);
    return v;
}

/* A one-shard stack with --metrics (tu_stack_up): s->metrics is the
 * ledger's port; the query service's +1, the console's +2, consumer 0's
 * +3. It waits for every port, the metrics ones too. */
static void stack_up(tu_stack *s)
{
    tu_stack_opts o = {.metrics = true};
    ck_assert_msg(tu_stack_up(s, &o), "%s", s->why);
}

/* The first SENT_RECORDS records of seed101 into DIR/ev.jsonl; counts[t]
 * the records of each type (by name, in types[]). Returns a partner id. */
static char *write_events(const tu_stack *s, json_t *counts)
{
    char *path = tu_vector("seed101-events.jsonl");
    FILE *f = fopen(path, "r");
    char out[1200], line[65536];
    snprintf(out, sizeof out, "%s/ev.jsonl", s->dir);
    FILE *g = fopen(out, "w");
    ck_assert(f && g);
    char *partner = NULL;
    for (int i = 0; i < SENT_RECORDS && fgets(line, sizeof line, f); i++) {
        fputs(line, g);
        json_t *rec = json_loads(line, 0, NULL);
        json_t *ev = json_object_get(rec, "event");
        const char *type = json_string_value(json_object_get(ev, "type"));
        ck_assert_ptr_nonnull(type);
        json_int_t n = json_integer_value(json_object_get(counts, type));
        json_object_set_new(counts, type, json_integer(n + 1));
        if (!partner && strcmp(type, "partner") == 0)
            partner = strdup(json_string_value(json_object_get(ev, "partner")));
        json_decref(rec);
    }
    fclose(f);
    fclose(g);
    free(path);
    return partner;
}

/* Every series of family name with label type: counts[type] (0 when
 * absent); at_least: the value may be higher (a resent event counts
 * again). */
static void assert_by_type(const char *text, const char *name, json_t *counts, bool at_least)
{
    const char *types[] = {"program", "partner", "sale",   "return", "certification", "claim",
                           "close",   "payout",  "adjust", "rate",   "referral"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char series[160];
        snprintf(series, sizeof series, "%s{type=\"%s\"}", name, types[i]);
        double want = (double)json_integer_value(json_object_get(counts, types[i]));
        double got = value_of(text, series);
        ck_assert_msg(at_least ? got >= want : got == want, "%s = %g, want %s%g", series, got,
                      at_least ? ">= " : "", want);
    }
}

/* tally up printed each child's metrics address and recorded it. */
static void assert_recorded(const tu_stack *s)
{
    char path[1200], want[64], line[160];
    snprintf(path, sizeof path, "%s/endpoints.json", s->dir);
    json_t *j = json_load_file(path, 0, NULL);
    json_t *m = json_object_get(j, "metrics");
    const char *names[] = {"ledger", "query", "consume 0/1", "web"};
    int slots[] = {0, 1, 3, 2};
    char *log = tu_read_file(s->log, NULL);
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof want, "127.0.0.1:%d", s->metrics + slots[i]);
        const char *got = json_string_value(json_object_get(m, names[i]));
        ck_assert_msg(got && strcmp(got, want) == 0, "endpoints.json metrics.%s: %s", names[i],
                      got ? got : "(none)");
        snprintf(line, sizeof line, "metrics http://%s/metrics", want);
        ck_assert_msg(log && strstr(log, line), "up.log lacks '%s'", line);
    }
    free(log);
    json_decref(j);
}

/* Every process's scrape before any traffic: valid, zero counts. */
static void assert_fresh(const tu_stack *s)
{
    const char *what[] = {"ledger", "query", "consumer", "console"};
    int ports[] = {s->metrics, s->metrics + 1, s->metrics + 3, s->metrics + 2};
    for (int i = 0; i < 4; i++) {
        char *text = scrape(ports[i]);
        promtool_check(s->dir, text, what[i]);
        free(text);
    }
    char *text = scrape(s->metrics);
    ck_assert(value_of(text, "tally_ledger_events_appended_total{type=\"sale\"}") == 0);
    ck_assert(value_of(text, "tally_ledger_head_seq") == 0);
    free(text);
}

/* Sends the records, the same again, and two bad events. */
static void send_traffic(const tu_stack *s)
{
    char ev[1200], bad[1200], err[1200];
    snprintf(ev, sizeof ev, "%s/ev.jsonl", s->dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", s->dir);
    snprintf(err, sizeof err, "%s/send.err", s->dir);
    ck_assert_int_eq(tu_run_tally(NULL, err, "send", "--ingest", s->ingest, ev, NULL), 0);
    char *text = scrape(s->metrics);
    ck_assert(value_of(text, "tally_ledger_head_seq") == SENT_RECORDS);
    free(text);
    ck_assert_int_eq(tu_run_tally(NULL, err, "send", "--ingest", s->ingest, ev, NULL), 0);
    const char *lines = "{\"type\":\"sale\",\"id\":\"BAD-1\",\"at\":1735689901000}\n"
                        "{\"type\":\"nope\",\"id\":\"BAD-2\",\"at\":1735689901000}\n";
    ck_assert(tu_write_file(bad, lines, strlen(lines)));
    ck_assert_int_eq(
        tu_run_tally(NULL, err, "send", "--source", "erp", "--ingest", s->ingest, bad, NULL), 1);
}

static void assert_ledger(const tu_stack *s, json_t *counts)
{
    char *text = scrape(s->metrics);
    promtool_check(s->dir, text, "ledger");
    assert_by_type(text, "tally_ledger_events_appended_total", counts, false);
    assert_by_type(text, "tally_ledger_events_duplicate_total", counts, true);
    ck_assert(value_of(text, "tally_ledger_events_rejected_total{code=\"missing_field\"}") >= 1);
    ck_assert(value_of(text, "tally_ledger_events_rejected_total{code=\"bad_type\"}") >= 1);
    ck_assert(value_of(text, "tally_ledger_events_rejected_total{code=\"conflict\"}") == 0);
    ck_assert(value_of(text, "tally_ledger_head_seq") == SENT_RECORDS);
    ck_assert(value_of(text, "tally_ledger_requests_total") >= 3);
    /* Every event the ledger took went through a group commit. */
    ck_assert(value_of(text, "tally_ledger_group_commit_events_sum") >= 2 * SENT_RECORDS + 2);
    ck_assert(value_of(text, "tally_ledger_group_commit_events_count") >= 3);
    ck_assert(value_of(text, "tally_ledger_group_commit_events_bucket{le=\"+Inf\"}") ==
              value_of(text, "tally_ledger_group_commit_events_count"));
    ck_assert(value_of(text, "tally_ledger_commit_duration_seconds_count") >= 3);
    ck_assert(value_of(text, "tally_ledger_commit_duration_seconds_sum") > 0);
    free(text);
}

static void assert_consumer(const tu_stack *s)
{
    int port = s->metrics + 3;
    await_value(port, "tally_consumer_checkpoint_seq{shard=\"0/1\"}", SENT_RECORDS);
    /* The lag falls to 0 once the loop has seen the head it folded to. */
    for (int waited = 0; waited <= WAIT_MS; waited += 50) {
        char *text = scrape(port);
        double lag = value_of(text, "tally_consumer_lag_records{shard=\"0/1\"}");
        free(text);
        if (lag == 0)
            break;
        ck_assert_msg(waited < WAIT_MS, "lag stays at %g", lag);
        tu_sleep_ms(50);
    }
    char *text = scrape(port);
    promtool_check(s->dir, text, "consumer");
    ck_assert(value_of(text, "tally_consumer_checkpoint_seq{shard=\"0/1\"}") == SENT_RECORDS);
    ck_assert(value_of(text, "tally_consumer_head_seq{shard=\"0/1\"}") == SENT_RECORDS);
    ck_assert(value_of(text, "tally_consumer_records_folded_total{shard=\"0/1\"}") == SENT_RECORDS);
    ck_assert(value_of(text, "tally_consumer_batch_records_sum{shard=\"0/1\"}") == SENT_RECORDS);
    ck_assert(value_of(text, "tally_consumer_commit_duration_seconds_count{shard=\"0/1\"}") >= 1);
    ck_assert(value_of(text, "tally_consumer_commit_failures_total{shard=\"0/1\"}") == 0);
    /* the stack's partners fit the engine's cache: none dropped, none read back */
    ck_assert(value_of(text, "tally_consumer_partners_read_back_total{shard=\"0/1\"}") == 0);
    ck_assert(value_of(text, "tally_consumer_fold_records_per_second{shard=\"0/1\"}") >= 0);
    free(text);
}

/* A balance and a status query move their kinds' counters by one each. */
static void assert_query(const tu_stack *s, const char *partner)
{
    int port = s->metrics + 1;
    char *text = scrape(port);
    double balance = value_of(text, "tally_query_requests_total{kind=\"balance\"}");
    double status = value_of(text, "tally_query_requests_total{kind=\"status\"}");
    double count = value_of(text, "tally_query_request_duration_seconds_count");
    free(text);
    ck_assert(balance == 0 && status >= 0 && count >= 0);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "balance", partner, "--query", s->query, NULL), 0);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "status", "--query", s->query, NULL), 0);
    text = scrape(port);
    promtool_check(s->dir, text, "query");
    ck_assert(value_of(text, "tally_query_requests_total{kind=\"balance\"}") == balance + 1);
    ck_assert(value_of(text, "tally_query_requests_total{kind=\"status\"}") == status + 1);
    ck_assert(value_of(text, "tally_query_requests_total{kind=\"other\"}") == 0);
    ck_assert(value_of(text, "tally_query_request_duration_seconds_count") == count + 2);
    free(text);
}

/* Two console pages: the console's counters move by page, its
 * histogram by two, and its scrape passes promtool. */
static void assert_console(const tu_stack *s)
{
    char *before = scrape(s->metrics + 2);
    double partners0 = value_of(before, "tally_web_requests_total{page=\"partners\"}");
    double liab0 = value_of(before, "tally_web_requests_total{page=\"liabilities\"}");
    double count0 = value_of(before, "tally_web_request_duration_seconds_count");
    free(before);
    int status = 0;
    free(http_get(s->web_port, "GET", "/partners", &status));
    ck_assert_int_eq(status, 200);
    free(http_get(s->web_port, "GET", "/liabilities", &status));
    ck_assert_int_eq(status, 200);
    char *text = scrape(s->metrics + 2);
    promtool_check(s->dir, text, "console");
    ck_assert(value_of(text, "tally_web_requests_total{page=\"partners\"}") == partners0 + 1);
    ck_assert(value_of(text, "tally_web_requests_total{page=\"liabilities\"}") == liab0 + 1);
    ck_assert(value_of(text, "tally_web_request_duration_seconds_count") == count0 + 2);
    free(text);
}

START_TEST(test_counters_move_with_traffic)
{
    tu_stack s;
    stack_up(&s);
    assert_recorded(&s);
    assert_fresh(&s);
    json_t *counts = json_object();
    char *partner = write_events(&s, counts);
    ck_assert_ptr_nonnull(partner);
    send_traffic(&s);
    assert_ledger(&s, counts);
    assert_consumer(&s);
    assert_query(&s, partner);
    assert_console(&s);
    ck_assert_int_eq(tu_stack_down(&s), 0);
    free(partner);
    json_decref(counts);
}
END_TEST

/* A non-loopback --metrics without --insecure, and a malformed one, are
 * usage errors of every daemon and of tally up; a client command has no
 * --metrics. */
START_TEST(test_non_loopback_refused)
{
    char *dir = tu_tmpdir();
    char err[1200];
    snprintf(err, sizeof err, "%s/err", dir);
    const char *cmds[] = {"ledger", "consume", "query", "up"};
    const char *addrs[] = {"192.0.2.1:9100", "0.0.0.0:9100", "*:9100", "[2001:db8::1]:9100"};
    for (size_t c = 0; c < 4; c++) {
        for (size_t a = 0; a < 4; a++) {
            int rc = tu_run_tally(NULL, err, cmds[c], "--data", dir, "--metrics", addrs[a], NULL);
            ck_assert_msg(rc == 2, "tally %s --metrics %s: exit %d", cmds[c], addrs[a], rc);
            char *said = tu_read_file(err, NULL);
            ck_assert_msg(said && strstr(said, "--insecure"), "%s", said ? said : "");
            free(said);
        }
        const char *bad[] = {"9100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "host:80"};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
            ck_assert_int_eq(tu_run_tally(NULL, NULL, cmds[c], "--metrics", bad[b], NULL), 2);
    }
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "balance", "p", "--metrics", "127.0.0.1:9100", NULL),
                     2);
    tu_rmtree(dir);
}
END_TEST

/* --insecure lets a daemon serve on every interface; only GET and HEAD of
 * /metrics are served. */
/* Starts a ledger in dir serving metrics on host (with --insecure when
 * host is not loopback) at a free port (*port), and waits until it
 * listens. */
static pid_t metrics_ledger(const char *dir, const char *host, int *port)
{
    char ingest[64], events[64], log_read[64], addr[64], ep[64], log[1200];
    tu_endpoint(ingest, sizeof ingest);
    tu_endpoint(events, sizeof events);
    tu_endpoint(log_read, sizeof log_read);
    *port = tu_free_port();
    snprintf(addr, sizeof addr, "%s:%d", host, *port);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", *port);
    snprintf(log, sizeof log, "%s/ledger.log", dir);
    bool loopback = strcmp(host, "127.0.0.1") == 0;
    char *const argv[] = {(char *)tu_tally(),
                          "ledger",
                          "--data",
                          (char *)dir,
                          "--ingest",
                          ingest,
                          "--events",
                          events,
                          "--log-read",
                          log_read,
                          "--metrics",
                          addr,
                          "--no-sync",
                          loopback ? NULL : "--insecure",
                          NULL};
    pid_t pid = tu_spawn(argv, log);
    ck_assert_int_eq(tu_wait_listener(ep, pid, 15000, NULL), TU_LISTEN_OURS);
    return pid;
}

START_TEST(test_insecure_and_http_errors)
{
    char *dir = tu_tmpdir();
    int port;
    pid_t pid = metrics_ledger(dir, "0.0.0.0", &port);
    char *text = scrape(port);
    promtool_check(dir, text, "ledger");
    ck_assert(value_of(text, "tally_ledger_head_seq") == 0);
    free(text);
    int status = 0;
    char *body = http_get(port, "GET", "/", &status);
    ck_assert_int_eq(status, 404);
    free(body);
    body = http_get(port, "POST", "/metrics", &status);
    ck_assert_int_eq(status, 405);
    free(body);
    body = http_get(port, "HEAD", "/metrics", &status);
    ck_assert_int_eq(status, 200);
    free(body);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
    tu_rmtree(dir);
}
END_TEST

/* tally up fails fast (exit 1, before any child) on a taken metrics port,
 * and --no-metrics records none. */
START_TEST(test_up_metrics_port_taken)
{
    char *dir = tu_tmpdir();
    char ingest[64], events[64], log_read[64], query[64], first[64], web[64], err[1200];
    tu_endpoint(ingest, sizeof ingest);
    tu_endpoint(events, sizeof events);
    tu_endpoint(log_read, sizeof log_read);
    tu_endpoint(query, sizeof query);
    int base = tu_free_ports(4);
    snprintf(first, sizeof first, "127.0.0.1:%d", base);
    snprintf(web, sizeof web, "127.0.0.1:%d", tu_free_port());
    snprintf(err, sizeof err, "%s/up.err", dir);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + 3))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0);
    int rc = tu_run_tally(NULL, err, "up", "--data", dir, "--shards", "1", "--ingest", ingest,
                          "--events", events, "--log-read", log_read, "--query", query, "--web",
                          web, "--metrics", first, NULL);
    ck_assert_int_eq(rc, 1);
    char *said = tu_read_file(err, NULL);
    ck_assert_msg(said && strstr(said, "metrics of consume 0/1"), "%s", said ? said : "");
    free(said);
    close(fd);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "up", "--metrics", first, "--no-metrics", NULL), 2);
    tu_rmtree(dir);
}
END_TEST

/* A connection to 127.0.0.1:port (reads time out after 10 s); -1 when
 * the connect fails. */
static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends text on fd; false when the server has closed it. */
static bool send_text(int fd, const char *text)
{
    size_t len = strlen(text);
    return send(fd, text, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Reads an HTTP reply on fd to its end (the server closes the connection
 * after it). Returns the status; 0 when the connection closed without a
 * byte. */
static int read_reply(int fd)
{
    char *buf = malloc(SCRAPE_BYTES_MAX + 1);
    size_t n = 0;
    for (ssize_t got; n < SCRAPE_BYTES_MAX && (got = read(fd, buf + n, SCRAPE_BYTES_MAX - n)) > 0;)
        n += (size_t)got;
    buf[n] = '\0';
    int status = 0;
    if (n > 0)
        ck_assert_msg(sscanf(buf, "HTTP/1.1 %d", &status) == 1 && strstr(buf, "\r\n\r\n"),
                      "not an HTTP/1.1 reply: %.200s", buf);
    free(buf);
    return status;
}

/* The head of a GET /metrics, its last empty line left to send. */
#define REQUEST_HEAD "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"

/* While a server holds its connections, how long one more is watched for
 * a reply it must not get: a server without the limit answers in
 * milliseconds, and the held ones are closed as idle only after
 * TLY_METRICS_CONNECTION_TIMEOUT_S. */
#define QUEUED_WATCH_MS 1000
_Static_assert(QUEUED_WATCH_MS * 5 <= TLY_METRICS_CONNECTION_TIMEOUT_S * 1000,
               "the watch ends well before the held connections' idle timeout");

/* A metrics server holds TLY_METRICS_CONNECTIONS_MAX connections at once
 * and answers each; one more waits unanswered (libmicrohttpd leaves it in
 * the listen backlog) until one of them goes, then is answered. The held
 * ones send their request's head only, so the server keeps them waiting
 * for the rest. */
START_TEST(test_connections_up_to_the_limit)
{
    char *dir = tu_tmpdir();
    int port;
    pid_t pid = metrics_ledger(dir, "127.0.0.1", &port);
    int held[TLY_METRICS_CONNECTIONS_MAX];
    for (unsigned i = 0; i < TLY_METRICS_CONNECTIONS_MAX; i++) {
        held[i] = connect_to(port);
        ck_assert_int_ge(held[i], 0);
        ck_assert(send_text(held[i], REQUEST_HEAD));
    }
    /* One past them is not answered while they are held. */
    int fd = connect_to(port);
    ck_assert_int_ge(fd, 0);
    ck_assert(send_text(fd, REQUEST_HEAD "\r\n"));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, QUEUED_WATCH_MS), 0);
    /* With the first gone it is (the server took every one held before
     * it: with a smaller limit it would take the next held one and leave
     * this one waiting); then every one held is answered. */
    ck_assert(send_text(held[0], "\r\n"));
    ck_assert_int_eq(read_reply(held[0]), 200);
    close(held[0]);
    ck_assert_int_eq(read_reply(fd), 200);
    close(fd);
    for (unsigned i = 1; i < TLY_METRICS_CONNECTIONS_MAX; i++) {
        ck_assert(send_text(held[i], "\r\n"));
        ck_assert_int_eq(read_reply(held[i]), 200);
        close(held[i]);
    }
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
    tu_rmtree(dir);
}
END_TEST

/* Whether process pid maps a file whose name contains lib (/proc/PID/maps). */
static bool maps_lib(pid_t pid, const char *lib)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *maps = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(maps);
    bool has = strstr(maps, lib) != NULL;
    free(maps);
    return has;
}

/* libmicrohttpd is opened when a process starts serving metrics, and only
 * then; cairo (the statement's drawing) by no daemon (schemas/tly_dl.h). */
START_TEST(test_http_library_only_when_serving)
{
    for (int serve = 0; serve <= 1; serve++) {
        char *dir = tu_tmpdir();
        char ingest[64], events[64], log_read[64], addr[64], log[1200];
        tu_endpoint(ingest, sizeof ingest);
        tu_endpoint(events, sizeof events);
        tu_endpoint(log_read, sizeof log_read);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", tu_free_port());
        snprintf(log, sizeof log, "%s/ledger.log", dir);
        char *const argv[] = {(char *)tu_tally(),
                              "ledger",
                              "--data",
                              dir,
                              "--ingest",
                              ingest,
                              "--events",
                              events,
                              "--log-read",
                              log_read,
                              "--no-sync",
                              serve ? "--metrics" : NULL,
                              addr,
                              NULL};
        pid_t pid = tu_spawn(argv, log);
        ck_assert_int_eq(tu_wait_listener(ingest, pid, 15000, NULL), TU_LISTEN_OURS);
        ck_assert_int_eq(maps_lib(pid, "libmicrohttpd"), serve);
        ck_assert(!maps_lib(pid, "libcairo"));
        ck_assert(!maps_lib(pid, "libpango"));
        ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
        tu_rmtree(dir);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tu_tcase(s, "metrics", 600);
    tu_add_tests(tc,
                 TU_TESTS(test_counters_move_with_traffic, test_non_loopback_refused,
                          test_insecure_and_http_errors, test_up_metrics_port_taken,
                          test_http_library_only_when_serving, test_connections_up_to_the_limit));
    return tu_run_suite(s);
}
