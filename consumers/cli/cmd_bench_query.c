/*
 * cmd_bench_query.c — `tally bench query`: the query service's round trip
 * and throughput, idle and while a consumer folds.
 *
 * 1. The data: DIR/log is reused when it holds records (--data DIR), else a
 *    fresh one of --events generated events is written; `tally consume
 *    --shard 0/1 --exit-at-head` folds it into DIR/views/0-of-1 (at once
 *    when that store is already at the head). The pieces are bench fold's
 *    (bench_data.h).
 * 2. Services: a real `tally query --shards 1` on the endpoint (a free
 *    loopback TCP port unless --query says otherwise), and, as the ceiling
 *    it is compared to, an echo service: a process with a ROUTER on the
 *    same endpoint that sends every request straight back (the transport
 *    and the clients, nothing else).
 * 3. Clients: --clients threads, each with its own DEALER socket and
 *    --window requests in flight (one by default): balance queries of
 *    partners drawn at random from those the log enrolls. With a window
 *    a client sends the next request as each reply comes, the way a
 *    front end that serves many users over one connection asks (the
 *    service answers one connection's requests in the order sent, so a
 *    reply is matched to the oldest request in flight); a round trip is
 *    then a request's own, from its sending to its reply, waiting behind
 *    the client's earlier ones included. After a warm-up of
 *    TLY_BENCH_QUERY_WARMUP_MS, each run counts the queries answered in
 *    --seconds and the round-trip percentiles. A reply that is not that
 *    partner's balance (or not the request itself, for the echo) is an
 *    error.
 * 4. Load: each service is measured idle, then while `tally consume --shard
 *    0/2` folds the same log from scratch into DIR/views/0-of-2 (restarted
 *    whenever it reaches the head): a consumer folding beside the service,
 *    on the same disk and cores, as in production.
 *
 * Output: a table (one row per run) or, with --json, one object. Beside
 * queries/s and the percentiles, each run gives the service's CPU time per
 * query (its process, ZeroMQ thread included, over its life, warm-up
 * queries counted): on a shared machine the other figures move with the
 * load, this one much less.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_data.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_mp.h"
#include "tly_os.h"
#include "tly_query.h"
#include "tly_views.h"

#define CMD "bench query"

/* Default log size: the data set of bench fold. */
#define BENCH_EVENTS_DEFAULT 1000000u
#define BENCH_SECONDS_DEFAULT 5u
#define BENCH_CLIENTS_DEFAULT 4u
/* How often the main thread looks at the background consumer. */
#define BENCH_TICK_MS 20
/* Size of a request frame: {"q": "balance", "partner": name}. */
#define BENCH_REQUEST_BYTES (32u + TLY_NAME_BYTES_MAX)
/* --finance: partners of the generated log (SPEC issue 11 item 8 asks for
 * 100,000), times each query is asked, and queries at most (three, and a
 * report and a journal per program; the generator has two programs). */
#define BENCH_FINANCE_PARTNERS_DEFAULT 100000u
#define BENCH_FINANCE_ROUNDS 25u
#define BENCH_FINANCE_QUERIES_MAX 16u
_Static_assert(TLY_NAME_BYTES_MAX <= 255, "a partner name fits a str8");

typedef struct qb_opts {
    tly_common_opts common; /* --data, --query, --json */
    bool data_given;
    bool query_given;
    uint64_t events;
    uint64_t seed;
    uint64_t seconds;
    uint32_t clients;
    uint32_t window;   /* --window: requests in flight per client */
    uint32_t partners; /* --partners: of the generated log (--finance) */
    bool finance;      /* --finance: the SPEC section 11 answers */
    unsigned given;    /* 1 << OPT_* of the options given */
} qb_opts;

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

struct qbench;

/* A request in flight: its bytes (the echo's reply must equal them), its
 * partner and when it was sent. */
typedef struct qsent {
    char req[BENCH_REQUEST_BYTES];
    size_t len;
    const char *partner;
    uint64_t t0_ns;
} qsent;

/* One client thread and what it measured. */
typedef struct qclient {
    struct qbench *qb;
    pthread_t tid;
    uint64_t rng;
    uint64_t *lat_ns; /* its share of TLY_BENCH_LATENCY_SAMPLES_MAX */
    uint32_t cap;
    uint32_t samples;
    uint64_t answered; /* in the measured window */
    uint64_t errors;
    uint64_t total;                         /* answered in the warm-up and the window */
    qsent sent[TLY_BENCH_QUERY_WINDOW_MAX]; /* a ring: oldest at head */
    uint32_t head, inflight;
} qclient;

/* The background consumer and what it folded. */
typedef struct folder {
    pid_t pid;
    uint64_t t0_ns;   /* when the running one started */
    uint32_t folds;   /* runs that reached the head */
    uint64_t records; /* records folded by every run, the stopped one's too */
    double fold_s;    /* how long the runs took */
    bool failed;
} folder;

typedef struct qbench {
    qb_opts o;
    tly_bench_data d;
    char endpoint[TLY_PATH_BYTES_MAX + 16];
    bool echo; /* this run's service is the echo */
    void *ctx; /* the clients' ZeroMQ context, per run */
    atomic_int phase;
    qclient cl[TLY_BENCH_QUERY_CLIENTS_MAX];
} qbench;

/* --- the echo service (a forked child) --- */

static volatile sig_atomic_t echo_stop;

static void on_echo_stop(int sig)
{
    (void)sig;
    echo_stop = 1;
}

/* Sends every frame of every request straight back until SIGTERM. */
static void echo_main(const char *ep)
{
    signal(SIGTERM, on_echo_stop);
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(sock, ep) != 0)
        _exit(1);
    while (!echo_stop) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 200) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        /* Bounded by the frames of the requests waiting. */
        while (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0) {
            int more = zmq_msg_more(&m);
            zmq_msg_send(&m, sock, more ? ZMQ_SNDMORE : 0);
            zmq_msg_init(&m);
        }
        zmq_msg_close(&m);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    _exit(0);
}

/* --- services --- */

static pid_t start_echo(const qbench *qb)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        echo_main(qb->endpoint);
    return pid;
}

static pid_t start_query(const qbench *qb)
{
    char logpath[TLY_PATH_BYTES_MAX + 32];
    snprintf(logpath, sizeof logpath, "%s/bench-query.log", qb->d.data);
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    FILE *f = fopen(logpath, "w");
    if (f) {
        dup2(fileno(f), STDERR_FILENO);
        dup2(fileno(f), STDOUT_FILENO);
    }
    char *argv[] = {
        "tally",    "query", "--data", (char *)qb->d.data, "--query", (char *)qb->endpoint,
        "--shards", "1",     NULL};
    execv(qb->d.exe, argv);
    _exit(127);
}

/* Stops a service; the CPU seconds (user and system, every thread) it
 * used in its life. */
static double stop_child(pid_t pid)
{
    if (pid <= 0)
        return 0;
    kill(pid, SIGTERM);
    struct rusage ru;
    if (wait4(pid, NULL, 0, &ru) != pid)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Waits until the service at the endpoint answers a balance query of the
 * first partner (the echo sends the request back, which is a map too).
 * False when it does not within TLY_BENCH_QUERY_READY_MS. */
static bool wait_ready(const qbench *qb, pid_t pid)
{
    json_t *req = json_pack("{s:s, s:s}", "q", "balance", "partner", qb->d.partners[0]);
    uint64_t t0 = tly_mono_ns();
    bool ready = false;
    /* Bounded by TLY_BENCH_QUERY_READY_MS. */
    while (!ready && tly_bench_seconds_since(t0) * 1000 < TLY_BENCH_QUERY_READY_MS &&
           waitpid(pid, NULL, WNOHANG) == 0) {
        json_t *reply = NULL;
        ready = tly_query_call(qb->endpoint, req, 200, &reply) == TLY_OK &&
                !json_object_get(reply, "error");
        json_decref(reply);
        if (!ready) {
            struct timespec pause = {0, 50 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    json_decref(req);
    return ready;
}

/* --- clients --- */

/* Encodes the balance query {"q": "balance", "partner": partner} into buf
 * (BENCH_REQUEST_BYTES); its length. Partner names are at most
 * TLY_NAME_BYTES_MAX bytes, so a str8 header holds any. */
static size_t encode_request(const char *partner, char *buf)
{
    static const char head[] = "\x82\xa1q\xa7"
                               "balance"
                               "\xa7"
                               "partner";
    size_t n = sizeof head - 1, plen = strlen(partner);
    memcpy(buf, head, n);
    if (plen < 32) {
        buf[n++] = (char)(0xa0 | plen);
    } else {
        buf[n++] = (char)0xd9;
        buf[n++] = (char)plen;
    }
    memcpy(buf + n, partner, plen);
    return n + plen;
}

/* True when reply answers the request: for the echo the same bytes, for
 * the service a balance object whose first key is "partner" with the
 * partner asked for (SPEC section 8 order). */
static bool reply_ok(bool echo, const char *req, size_t req_len, const char *partner,
                     const void *reply, size_t len)
{
    if (echo)
        return len == req_len && memcmp(reply, req, len) == 0;
    tly_mp_reader r;
    tly_mp_init(&r, reply, len);
    uint32_t n, klen, vlen;
    const char *k, *v;
    return tly_mp_read_map(&r, &n) && n > 0 && tly_mp_read_str(&r, &k, &klen) && klen == 7 &&
           memcmp(k, "partner", 7) == 0 && tly_mp_read_str(&r, &v, &vlen) &&
           vlen == strlen(partner) && memcmp(v, partner, vlen) == 0;
}

/* A DEALER on the endpoint; replies wait at most TLY_QUERY_TIMEOUT_MS. */
static void *client_socket(const qbench *qb)
{
    void *sock = zmq_socket(qb->ctx, ZMQ_DEALER);
    int zero = 0, timeout = TLY_QUERY_TIMEOUT_MS;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(sock, qb->endpoint);
    return sock;
}

/* Sends the next request (a random partner's balance) into the ring;
 * false when the send failed. */
static bool send_next(qclient *c, void *sock)
{
    qbench *qb = c->qb;
    qsent *q = &c->sent[(c->head + c->inflight) % TLY_BENCH_QUERY_WINDOW_MAX];
    q->partner = qb->d.partners[tly_bench_rnd(&c->rng) % qb->d.partner_count];
    q->len = encode_request(q->partner, q->req);
    q->t0_ns = tly_mono_ns();
    if (zmq_send(sock, q->req, q->len, 0) < 0)
        return false;
    c->inflight++;
    return true;
}

/* Receives the reply to the oldest request in flight; false on an error
 * (none within TLY_QUERY_TIMEOUT_MS, or not that request's answer). *dt
 * gets the request's round trip. */
static bool receive_next(qclient *c, void *sock, uint64_t *dt)
{
    const qsent *q = &c->sent[c->head];
    zmq_msg_t m;
    zmq_msg_init(&m);
    bool ok = zmq_msg_recv(&m, sock, 0) >= 0 &&
              reply_ok(c->qb->echo, q->req, q->len, q->partner, zmq_msg_data(&m), zmq_msg_size(&m));
    *dt = tly_mono_ns() - q->t0_ns;
    zmq_msg_close(&m);
    c->head = (c->head + 1) % TLY_BENCH_QUERY_WINDOW_MAX;
    c->inflight--;
    return ok;
}

/* Keeps --window requests in flight until the main thread says stop. On
 * an error the socket is replaced and the requests in flight are given
 * up, so that a late reply cannot be taken for a later request's. */
static void *client_main(void *arg)
{
    qclient *c = arg;
    qbench *qb = c->qb;
    void *sock = client_socket(qb);
    int phase;
    /* Bounded by the run's duration: the main thread sets PHASE_STOP. */
    while ((phase = atomic_load(&qb->phase)) != PHASE_STOP) {
        bool ok = true;
        while (ok && c->inflight < qb->o.window)
            ok = send_next(c, sock);
        uint64_t dt = 0;
        ok = ok && receive_next(c, sock, &dt);
        c->total += ok;
        if (!ok) {
            zmq_close(sock);
            sock = client_socket(qb);
            c->head = c->inflight = 0;
        }
        if (phase != PHASE_MEASURE || atomic_load(&qb->phase) != PHASE_MEASURE)
            continue;
        c->answered += ok;
        c->errors += !ok;
        if (ok && c->samples < c->cap)
            c->lat_ns[c->samples++] = dt;
    }
    zmq_close(sock);
    return NULL;
}

/* --- the background consumer --- */

static void folder_restart(qbench *qb, folder *f)
{
    char dir[TLY_PATH_BYTES_MAX + 32];
    if (tly_layout_views(qb->d.data, dir, sizeof dir) == TLY_OK) {
        size_t n = strlen(dir);
        snprintf(dir + n, sizeof dir - n, "/0-of-2");
        tly_bench_rm_tree(dir);
    }
    f->t0_ns = tly_mono_ns();
    f->pid = tly_bench_consumer_start(&qb->d, 0, 2, TLY_CONSUME_BATCH_RECORDS_DEFAULT);
    f->failed = f->pid < 0;
}

/* Counts a consumer that reached the head and starts the next. */
static void folder_tick(qbench *qb, folder *f)
{
    int st;
    if (f->pid <= 0 || waitpid(f->pid, &st, WNOHANG) != f->pid)
        return;
    f->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        f->failed = true;
        return;
    }
    f->folds++;
    f->records += qb->d.head;
    f->fold_s += tly_bench_seconds_since(f->t0_ns);
    folder_restart(qb, f);
}

/* Stops the running consumer (SIGTERM: it commits the batch in hand) and
 * counts what it folded: its store's checkpoint. */
static void folder_stop(qbench *qb, folder *f)
{
    if (f->pid <= 0)
        return;
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
    f->fold_s += tly_bench_seconds_since(f->t0_ns);
    tly_views *v = NULL;
    uint64_t checkpoint = 0;
    if (tly_views_open(qb->d.data, 0, 2, TLY_VIEWS_READ, &v) == TLY_OK &&
        tly_views_checkpoint(v, &checkpoint) == TLY_OK)
        f->records += checkpoint;
    tly_views_close(v);
}

/* Sleeps ms milliseconds while keeping the consumer (f may be NULL) busy. */
static void sleep_ticking(qbench *qb, folder *f, uint64_t ms)
{
    uint64_t t0 = tly_mono_ns();
    while (tly_bench_seconds_since(t0) * 1000 < (double)ms) {
        struct timespec pause = {0, BENCH_TICK_MS * 1000000L};
        nanosleep(&pause, NULL);
        if (f)
            folder_tick(qb, f);
    }
}

/* --- runs --- */

/* What one run measured. */
typedef struct qrun {
    bool echo;
    bool folding;
    uint64_t answered;
    uint64_t errors;
    uint64_t total;       /* answered in the warm-up too */
    double service_cpu_s; /* the service process's CPU time over its life */
    double seconds;
    uint64_t *lat_ns; /* every client's samples, gathered */
    size_t samples;
    double fold_rps;  /* the background consumer's records per second */
    bool fold_failed; /* the background consumer failed */
} qrun;

/* Starts the clients, waits out the warm-up and the measured window while
 * keeping the consumer busy (f may be NULL), stops and joins them. */
static tly_err drive_clients(qbench *qb, folder *f, qrun *r)
{
    uint32_t n = qb->o.clients, started = 0;
    atomic_store(&qb->phase, PHASE_WARMUP);
    for (uint32_t i = 0; i < n; i++) {
        qclient *c = &qb->cl[i];
        *c = (qclient){.qb = qb,
                       .rng = qb->o.seed * 1000 + i,
                       .lat_ns = r->lat_ns + i * (size_t)(TLY_BENCH_LATENCY_SAMPLES_MAX / n),
                       .cap = TLY_BENCH_LATENCY_SAMPLES_MAX / n};
        if (pthread_create(&c->tid, NULL, client_main, c) != 0)
            break;
        started++;
    }
    sleep_ticking(qb, f, TLY_BENCH_QUERY_WARMUP_MS);
    uint64_t t0 = tly_mono_ns();
    atomic_store(&qb->phase, PHASE_MEASURE);
    sleep_ticking(qb, f, qb->o.seconds * 1000);
    atomic_store(&qb->phase, PHASE_STOP);
    r->seconds = tly_bench_seconds_since(t0);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(qb->cl[i].tid, NULL);
    return started == n ? TLY_OK : TLY_NOMEM;
}

/* Gathers the clients' counts and samples into r (sorted). */
static void gather(qbench *qb, qrun *r)
{
    size_t share = TLY_BENCH_LATENCY_SAMPLES_MAX / qb->o.clients;
    for (uint32_t i = 0; i < qb->o.clients; i++) {
        const qclient *c = &qb->cl[i];
        r->answered += c->answered;
        r->errors += c->errors;
        r->total += c->total;
        memmove(r->lat_ns + r->samples, r->lat_ns + i * share, c->samples * sizeof *r->lat_ns);
        r->samples += c->samples;
    }
    tly_bench_sort(r->lat_ns, r->samples);
}

/* One run: the service (echo or query) idle or beside a folding consumer. */
static tly_err run_one(qbench *qb, bool echo, bool folding, qrun *r)
{
    *r = (qrun){.echo = echo, .folding = folding, .lat_ns = r->lat_ns};
    qb->echo = echo;
    pid_t svc = echo ? start_echo(qb) : start_query(qb);
    if (svc < 0 || !wait_ready(qb, svc)) {
        tly_errorf(CMD, "the %s service did not answer on %s%s", echo ? "echo" : "query",
                   qb->endpoint, echo ? "" : " (see bench-query.log in the data directory)");
        stop_child(svc);
        return TLY_IO;
    }
    folder f = {0};
    if (folding)
        folder_restart(qb, &f);
    qb->ctx = zmq_ctx_new();
    tly_err err = qb->ctx ? drive_clients(qb, folding ? &f : NULL, r) : TLY_IO;
    zmq_ctx_term(qb->ctx);
    qb->ctx = NULL;
    folder_stop(qb, &f);
    r->service_cpu_s = stop_child(svc);
    gather(qb, r);
    r->fold_rps = f.fold_s > 0 ? (double)f.records / f.fold_s : 0;
    r->fold_failed = f.failed;
    return err;
}

/* Folds the log into DIR/views/0-of-1, the store the service answers from
 * (at once when it is at the head already). */
static tly_err fold_first(qbench *qb)
{
    pid_t pid = tly_bench_consumer_start(&qb->d, 0, 1, TLY_CONSUME_BATCH_RECORDS_DEFAULT);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char log[TLY_BENCH_LOG_PATH_BYTES];
        tly_bench_consumer_log(&qb->d, 0, 1, log);
        tly_errorf(CMD, "the consumer folding the log failed: see %s", log);
        return TLY_IO;
    }
    return TLY_OK;
}

/* A free loopback TCP port for the services (asked of the kernel, then
 * let go: a race with another program is possible and shows as a service
 * that does not answer). */
static bool pick_endpoint(qbench *qb)
{
    if (qb->o.query_given) {
        snprintf(qb->endpoint, sizeof qb->endpoint, "%s", qb->o.common.query);
        return true;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (fd >= 0)
        close(fd);
    if (ok)
        snprintf(qb->endpoint, sizeof qb->endpoint, "tcp://127.0.0.1:%u", ntohs(a.sin_port));
    else
        tly_errorf(CMD, "cannot find a free loopback port: %s", strerror(errno));
    return ok;
}

/* --- reporting --- */

static json_t *run_json(const qrun *r)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:I,s:I,s:f,s:I,s:f,s:f,s:f}", "service", r->echo ? "echo" : "query",
        "background", r->folding ? "consumer folding" : "idle", "queries", (json_int_t)r->answered,
        "errors", (json_int_t)r->errors, "seconds", r->seconds, "queries_per_s",
        (json_int_t)(r->seconds > 0 ? (double)r->answered / r->seconds : 0), "p50_us",
        tly_bench_quantile_us(r->lat_ns, r->samples, 500), "p99_us",
        tly_bench_quantile_us(r->lat_ns, r->samples, 990), "p999_us",
        tly_bench_quantile_us(r->lat_ns, r->samples, 999));
    /* The service's CPU per query (its ZeroMQ thread included): what a
     * query costs whatever else the machine runs. */
    json_object_set_new(o, "service_cpu_us_per_query",
                        json_real(r->total ? r->service_cpu_s * 1e6 / (double)r->total : 0));
    if (r->folding)
        json_object_set_new(o, "fold_records_per_s", json_integer((json_int_t)r->fold_rps));
    return o;
}

static void print_text(const qbench *qb, const json_t *runs)
{
    printf("tally bench query: %llu events, %u partners, %u clients with %u request%s in flight "
           "each, balance of a random partner, %s\n",
           (unsigned long long)qb->d.head, qb->d.partner_count, qb->o.clients, qb->o.window,
           qb->o.window == 1 ? "" : "s", qb->endpoint);
    printf("%llu s per run after a %u ms warm-up; the echo service is the ceiling (transport "
           "and clients only)\n",
           (unsigned long long)qb->o.seconds, TLY_BENCH_QUERY_WARMUP_MS);
    printf("%-8s %-17s %9s %8s %8s %9s %6s %11s %14s\n", "service", "background", "queries/s",
           "p50 us", "p99 us", "p99.9 us", "errors", "cpu us/query", "fold records/s");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        json_t *fold = json_object_get(r, "fold_records_per_s");
        char fold_s[24] = "";
        if (fold)
            snprintf(fold_s, sizeof fold_s, "%lld", (long long)json_integer_value(fold));
        printf("%-8s %-17s %9lld %8.1f %8.1f %9.1f %6lld %11.1f %14s\n",
               json_string_value(json_object_get(r, "service")),
               json_string_value(json_object_get(r, "background")),
               (long long)json_integer_value(json_object_get(r, "queries_per_s")),
               json_real_value(json_object_get(r, "p50_us")),
               json_real_value(json_object_get(r, "p99_us")),
               json_real_value(json_object_get(r, "p999_us")),
               (long long)json_integer_value(json_object_get(r, "errors")),
               json_real_value(json_object_get(r, "service_cpu_us_per_query")), fold_s);
    }
}

/* --- --finance: the answers of SPEC section 11 over a large partner list --- */

/* One finance query, measured in process (the store answered and encoded
 * as the service does, without ZeroMQ) and as a client sees it (a round
 * trip to the real service, the reply decoded). An every_page query is
 * the whole partner list as the command gets it: each page asked "after"
 * the "next" of the one before, the figures summed over the pages. */
typedef struct fquery {
    char label[96];
    json_t *req;
    bool every_page;
    uint64_t local_ns[BENCH_FINANCE_ROUNDS];
    uint64_t cpu_ns[BENCH_FINANCE_ROUNDS]; /* this thread's CPU time in process */
    uint64_t wire_ns[BENCH_FINANCE_ROUNDS];
    uint32_t rounds;
    uint32_t pages;    /* requests of one round */
    double service_ms; /* the service process's CPU time per round, mean */
    size_t bytes;      /* the reply's MessagePack size (all pages) */
    size_t rows;       /* elements of the answer's list (all pages) */
    char error[48];    /* the error code of an error answer, else "" */
} fquery;

/* This thread's CPU time: what a query costs whatever else the machine
 * runs (the wall clock of a loaded machine mostly measures the wait for a
 * core). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* A process's CPU time so far (user + system, from /proc: clock ticks),
 * 0 when unreadable. */
static uint64_t process_cpu_ns(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the command name */
    unsigned long long ut = 0, st = 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (p == NULL || hz <= 0 ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (uint64_t)((ut + st) * (UINT64_C(1000000000) / (uint64_t)hz));
}

/* The size of the answer's main list. */
static size_t answer_rows(const json_t *a)
{
    static const char *const lists[] = {"partners", "periods", "programs", "entries"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (json_is_array(json_object_get(a, lists[i])))
            return json_array_size(json_object_get(a, lists[i]));
    return 0;
}

/* The request of the page after reply's "next" (a new reference), NULL
 * when q is not every_page or no page follows. */
static json_t *next_page(const fquery *q, const json_t *reply)
{
    json_t *next = json_object_get(reply, "next");
    if (!q->every_page || !json_is_string(next))
        return NULL;
    json_t *req = json_deep_copy(q->req);
    if (req)
        json_object_set(req, "after", next);
    return req;
}

/* One round in process: every page's answer encoded, timed (the decoding
 * that finds the next page is not). */
static tly_err local_round(tly_query_store *store, fquery *q, msgpack_sbuffer *out)
{
    json_t *req = json_incref(q->req);
    tly_err err = TLY_OK;
    q->local_ns[q->rounds] = q->cpu_ns[q->rounds] = 0;
    while (req && err == TLY_OK) {
        out->size = 0;
        uint64_t t0 = tly_mono_ns(), c0 = thread_cpu_ns();
        err = tly_query_answer_encode(store, req, out);
        q->local_ns[q->rounds] += tly_mono_ns() - t0;
        q->cpu_ns[q->rounds] += thread_cpu_ns() - c0;
        json_decref(req);
        json_t *a = err == TLY_OK ? tly_json_from_mp(out->data, out->size) : NULL;
        req = next_page(q, a);
        json_decref(a);
    }
    json_decref(req);
    return err;
}

/* One round through the service: every page asked and decoded. */
static tly_err wire_round(void *sock, fquery *q)
{
    json_t *req = json_incref(q->req);
    tly_err err = TLY_OK;
    q->wire_ns[q->rounds] = 0;
    q->bytes = q->rows = q->pages = 0;
    while (req && err == TLY_OK) {
        msgpack_sbuffer body;
        msgpack_sbuffer_init(&body);
        zmq_msg_t m;
        zmq_msg_init(&m);
        uint64_t t0 = tly_mono_ns();
        bool ok = tly_query_pack(req, &body) == TLY_OK &&
                  zmq_send(sock, body.data, body.size, 0) >= 0 && zmq_msg_recv(&m, sock, 0) >= 0;
        json_t *a = ok ? tly_json_from_mp(zmq_msg_data(&m), zmq_msg_size(&m)) : NULL;
        q->wire_ns[q->rounds] += tly_mono_ns() - t0;
        q->bytes += zmq_msg_size(&m);
        q->rows += answer_rows(a);
        q->pages++;
        const char *e = json_string_value(json_object_get(a, "error"));
        snprintf(q->error, sizeof q->error, "%s", e ? e : "");
        err = a ? TLY_OK : TLY_IO;
        json_decref(req);
        req = next_page(q, a);
        json_decref(a);
        zmq_msg_close(&m);
        msgpack_sbuffer_destroy(&body);
    }
    json_decref(req);
    return err;
}

/* Times one query BENCH_FINANCE_ROUNDS times, at most --seconds each way. */
static tly_err finance_measure(qbench *qb, tly_query_store *store, void *sock, pid_t svc, fquery *q)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    tly_err err = TLY_OK;
    uint64_t t_all = tly_mono_ns(), svc_ns = 0;
    for (q->rounds = 0; err == TLY_OK && q->rounds < BENCH_FINANCE_ROUNDS &&
                        tly_bench_seconds_since(t_all) < (double)qb->o.seconds;
         q->rounds++) {
        err = local_round(store, q, &out);
        uint64_t c0 = process_cpu_ns(svc);
        if (err == TLY_OK)
            err = wire_round(sock, q);
        svc_ns += process_cpu_ns(svc) - c0;
    }
    q->service_ms = q->rounds ? (double)svc_ns / 1e6 / q->rounds : 0;
    msgpack_sbuffer_destroy(&out);
    return err;
}

/* The queries: every partner, a search, and per program its report,
 * the expiring funds and the journal of its first period. */
static size_t finance_queries(tly_query_store *store, fquery *qs, size_t cap)
{
    size_t n = 0;
    qs[n++].req = json_pack("{s:s}", "q", "partners");
    qs[n].every_page = true;
    qs[n++].req = json_pack("{s:s}", "q", "partners");
    qs[n++].req = json_pack("{s:s, s:s}", "q", "partners", "search", "-00042");
    qs[n++].req = json_pack("{s:s, s:s}", "q", "partners", "search", "P-0004");
    qs[n++].req = json_pack("{s:s, s:s}", "q", "partners", "tier", "Silver");
    qs[n++].req = json_pack("{s:s, s:s}", "q", "partners", "kind", "msp");
    qs[n].every_page = true;
    qs[n++].req = json_pack("{s:s, s:s}", "q", "partners", "program", "beta");
    qs[n++].req = json_pack("{s:s}", "q", "expiring");
    json_t *liab = NULL, *lreq = json_pack("{s:s}", "q", "liabilities");
    tly_query_answer(store, lreq, &liab);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(liab, "programs"), i, p)
    {
        const char *prog = json_string_value(json_object_get(p, "program"));
        json_t *report = NULL, *rreq = json_pack("{s:s, s:s}", "q", "report", "program", prog);
        tly_query_answer(store, rreq, &report);
        json_t *first = json_array_get(json_object_get(report, "periods"), 0);
        const char *period = json_string_value(json_object_get(first, "period"));
        if (n + 2 <= cap && prog && period) {
            qs[n++].req = json_incref(rreq);
            qs[n++].req =
                json_pack("{s:s, s:s, s:s}", "q", "journal", "program", prog, "period", period);
        }
        json_decref(report);
        json_decref(rreq);
    }
    json_decref(liab);
    json_decref(lreq);
    for (i = 0; i < n; i++) {
        const char *k;
        json_t *v;
        size_t o = (size_t)snprintf(qs[i].label, sizeof qs[i].label, "%s",
                                    json_string_value(json_object_get(qs[i].req, "q")));
        json_object_foreach(qs[i].req, k, v)
        {
            if (strcmp(k, "q") != 0 && o < sizeof qs[i].label)
                o += (size_t)snprintf(qs[i].label + o, sizeof qs[i].label - o, " --%s %s", k,
                                      json_string_value(v));
        }
        if (qs[i].every_page && o < sizeof qs[i].label)
            snprintf(qs[i].label + o, sizeof qs[i].label - o, " (every page)");
    }
    return n;
}

static json_t *finance_json(fquery *q)
{
    tly_bench_sort(q->local_ns, q->rounds);
    tly_bench_sort(q->wire_ns, q->rounds);
    tly_bench_sort(q->cpu_ns, q->rounds);
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f}}", "query",
                  q->label, "rounds", (json_int_t)q->rounds, "requests", (json_int_t)q->pages,
                  "rows", (json_int_t)q->rows, "reply_bytes", (json_int_t)q->bytes, "in_process_ms",
                  "p50", tly_bench_quantile_us(q->local_ns, q->rounds, 500) / 1e3, "p99",
                  tly_bench_quantile_us(q->local_ns, q->rounds, 990) / 1e3, "max",
                  tly_bench_quantile_us(q->local_ns, q->rounds, 1000) / 1e3, "round_trip_ms", "p50",
                  tly_bench_quantile_us(q->wire_ns, q->rounds, 500) / 1e3, "p99",
                  tly_bench_quantile_us(q->wire_ns, q->rounds, 990) / 1e3, "max",
                  tly_bench_quantile_us(q->wire_ns, q->rounds, 1000) / 1e3);
    json_t *cpu =
        json_pack("{s:f, s:f}", "p50", tly_bench_quantile_us(q->cpu_ns, q->rounds, 500) / 1e3,
                  "max", tly_bench_quantile_us(q->cpu_ns, q->rounds, 1000) / 1e3);
    if (o && cpu)
        json_object_set_new(o, "in_process_cpu_ms", cpu);
    if (o)
        json_object_set_new(o, "service_cpu_ms_mean", json_real(q->service_ms));
    if (o && q->error[0])
        json_object_set_new(o, "error", json_string(q->error));
    return o;
}

/* A timing of r as milliseconds: group ("in_process_ms"), field ("p50"). */
static double ms_of(const json_t *r, const char *group, const char *field)
{
    return json_real_value(json_object_get(json_object_get(r, group), field));
}

static void finance_print(const qbench *qb, const json_t *runs)
{
    printf("tally bench query --finance: %llu events, %u partners, up to %u rounds per query\n"
           "in process: the store's answer encoded as the service does (wall clock and this\n"
           "thread's CPU time); round trip: a request to the real service, the reply decoded\n"
           "(svc cpu: the service process's CPU time per round trip, ZeroMQ included, mean);\n"
           "(every page): the command's whole list, a request per page, figures summed\n",
           (unsigned long long)qb->d.head, qb->d.partner_count, BENCH_FINANCE_ROUNDS);
    printf("%-40s %9s %11s %10s %10s %10s %10s %10s\n", "query", "rows", "reply bytes", "wall p50",
           "cpu p50", "trip p50", "trip max", "svc cpu");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        const char *e = json_string_value(json_object_get(r, "error"));
        char rows[24];
        snprintf(rows, sizeof rows, "%lld",
                 (long long)json_integer_value(json_object_get(r, "rows")));
        printf("%-40s %9s %11lld %8.2fms %8.2fms %8.2fms %8.2fms %8.2fms\n",
               json_string_value(json_object_get(r, "query")), e ? e : rows,
               (long long)json_integer_value(json_object_get(r, "reply_bytes")),
               ms_of(r, "in_process_ms", "p50"), ms_of(r, "in_process_cpu_ms", "p50"),
               ms_of(r, "round_trip_ms", "p50"), ms_of(r, "round_trip_ms", "max"),
               json_real_value(json_object_get(r, "service_cpu_ms_mean")));
    }
}

/* The finance runs: a table, or with --json one object. */
static void finance_report(const qbench *qb, json_t *runs)
{
    if (!qb->o.common.json) {
        finance_print(qb, runs);
        return;
    }
    json_t *doc = json_pack("{s:I, s:I, s:I, s:O}", "events", (json_int_t)qb->d.head, "partners",
                            (json_int_t)qb->d.partner_count, "rounds_max",
                            (json_int_t)BENCH_FINANCE_ROUNDS, "queries", runs);
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(doc);
}

/* Measures every finance query against the store and a real service. */
static tly_err finance_runs(qbench *qb, json_t *runs)
{
    char views[TLY_PATH_BYTES_MAX + 32];
    tly_query_store *store = NULL;
    tly_err err = tly_layout_views(qb->d.data, views, sizeof views);
    if (err == TLY_OK)
        err = tly_query_store_open(views, NULL, 1, &store);
    pid_t svc = err == TLY_OK ? start_query(qb) : -1;
    if (err == TLY_OK && (svc < 0 || !wait_ready(qb, svc))) {
        tly_errorf(CMD, "the query service did not answer on %s (see bench-query.log)",
                   qb->endpoint);
        err = TLY_IO;
    }
    fquery *qs = err == TLY_OK ? calloc(BENCH_FINANCE_QUERIES_MAX, sizeof *qs) : NULL;
    size_t n = qs ? finance_queries(store, qs, BENCH_FINANCE_QUERIES_MAX) : 0;
    qb->ctx = qs ? zmq_ctx_new() : NULL;
    void *sock = qb->ctx ? client_socket(qb) : NULL;
    int64_t max = TLY_FRAME_BYTES_MAX;
    if (sock)
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    for (size_t i = 0; sock && i < n && err == TLY_OK; i++)
        if ((err = finance_measure(qb, store, sock, svc, &qs[i])) == TLY_OK)
            json_array_append_new(runs, finance_json(&qs[i]));
    if (err == TLY_OK && !sock)
        err = TLY_NOMEM;
    if (sock)
        zmq_close(sock);
    if (qb->ctx)
        zmq_ctx_term(qb->ctx);
    qb->ctx = NULL;
    for (size_t i = 0; i < n; i++)
        json_decref(qs[i].req);
    free(qs);
    stop_child(svc);
    tly_query_store_close(store);
    return err;
}

/* --- command line --- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally bench query [--events N] [--clients N] [--window N] [--seconds S]\n"
            "                         [--data DIR] [--query ENDPOINT] [--seed S] [--json]\n"
            "       tally bench query --finance [--partners N] [--events N] [--seconds S]\n"
            "                         [--data DIR] [--query ENDPOINT] [--seed S] [--json]\n"
            "\n"
            "Measures the query service: folds a generated log (or DIR/log when --data\n"
            "names one that holds records) into one shard, starts a real `tally query`,\n"
            "and from --clients threads, --window requests in flight each, asks the balance of\n"
            "random partners: queries/s and round-trip p50/p99/p99.9, idle and while\n"
            "`tally consume` folds the same log into another store beside it. An echo\n"
            "service on the same endpoint, measured the same way, is the ceiling.\n"
            "\n"
            "  --events N    events to generate (default %u, max %u)\n"
            "  --clients N   client threads (default %u, max %u)\n"
            "  --window N    requests each client keeps in flight (default 1, max %u): the\n"
            "                next goes as each reply comes; a round trip counts the wait\n"
            "                behind the client's earlier requests\n"
            "  --seconds S   measured seconds per run (default %u, max %u)\n"
            "  --data DIR    keep the data here (default: a temp directory, removed after)\n"
            "  --query EP    the services' endpoint (default: a free tcp://127.0.0.1 port)\n"
            "  --seed S      generator and client seed (default 1)\n"
            "  --json        one JSON object instead of the table\n"
            "\n"
            "  --finance     time the SPEC section 11 answers instead: a log with\n"
            "                --partners partners (default %u, max %u) folded into one\n"
            "                shard, then the partners (the first page, and every page\n"
            "                as the command asks them), searches and filters, the\n"
            "                expiring funds and each program's report and first\n"
            "                journal, %u times each (at most --seconds each), from one\n"
            "                client: the service's work in process, a client's round\n"
            "                trip and the service process's CPU time per round trip\n",
            BENCH_EVENTS_DEFAULT, TLY_BENCH_EVENTS_MAX, BENCH_CLIENTS_DEFAULT,
            TLY_BENCH_QUERY_CLIENTS_MAX, TLY_BENCH_QUERY_WINDOW_MAX, BENCH_SECONDS_DEFAULT,
            TLY_BENCH_QUERY_SECONDS_MAX, BENCH_FINANCE_PARTNERS_DEFAULT, TLY_GEN_PARTNERS_MAX,
            BENCH_FINANCE_ROUNDS);
}

/* --events is a count here, not the events endpoint: the common --events
 * is not taken. */
enum { OPT_EVENTS = 1, OPT_SECONDS, OPT_SEED, OPT_CLIENTS, OPT_PARTNERS, OPT_FINANCE, OPT_WINDOW };

static const tly_opt qb_opts_table[] = {
    {"--events", OPT_EVENTS, true},     {"--seconds", OPT_SECONDS, true},
    {"--seed", OPT_SEED, true},         {"--clients", OPT_CLIENTS, true},
    {"--partners", OPT_PARTNERS, true}, {"--finance", OPT_FINANCE, false},
    {"--window", OPT_WINDOW, true},
};

static int qb_opt(void *ctx, int id, const char *v)
{
    qb_opts *o = ctx;
    uint64_t n = 0;
    static const uint64_t max[] = {
        0,          TLY_BENCH_EVENTS_MAX,        TLY_BENCH_QUERY_SECONDS_MAX,
        UINT64_MAX, TLY_BENCH_QUERY_CLIENTS_MAX, TLY_GEN_PARTNERS_MAX,
        0,          TLY_BENCH_QUERY_WINDOW_MAX};
    if (id == TLY_OPT_ARG)
        return tly_usagef(CMD, "unexpected argument '%s'", v);
    if (id == OPT_FINANCE) {
        o->finance = true;
        return TLY_EXIT_OK;
    }
    uint64_t min = id == OPT_SEED ? 0 : 1;
    if (!tly_parse_u64(v, min, max[id], &n))
        return tly_usagef(CMD, "%s wants %llu..%llu", qb_opts_table[id - 1].name,
                          (unsigned long long)min, (unsigned long long)max[id]);
    o->events = id == OPT_EVENTS ? n : o->events;
    o->seconds = id == OPT_SECONDS ? n : o->seconds;
    o->seed = id == OPT_SEED ? n : o->seed;
    o->clients = id == OPT_CLIENTS ? (uint32_t)n : o->clients;
    o->partners = id == OPT_PARTNERS ? (uint32_t)n : o->partners;
    o->window = id == OPT_WINDOW ? (uint32_t)n : o->window;
    o->given |= 1u << id;
    return TLY_EXIT_OK;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(qb_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    tly_common_defaults(&o->common);
    o->events = BENCH_EVENTS_DEFAULT;
    o->seed = 1;
    o->seconds = BENCH_SECONDS_DEFAULT;
    o->clients = BENCH_CLIENTS_DEFAULT;
    o->window = 1;
    const tly_cli_spec spec = {CMD,           TLY_CO_DATA | TLY_CO_QUERY | TLY_CO_JSON,
                               qb_opts_table, sizeof qb_opts_table / sizeof qb_opts_table[0],
                               qb_opt,        o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc == TLY_CLI_HELP ? TLY_EXIT_OK : rc;
    o->data_given = (o->common.given & TLY_CO_DATA) != 0;
    o->query_given = (o->common.given & TLY_CO_QUERY) != 0;
    if (o->finance && (o->given & (1u << OPT_CLIENTS)))
        return tly_usagef(CMD, "--finance asks from one client: --clients does not apply");
    if (o->finance && (o->given & (1u << OPT_WINDOW)))
        return tly_usagef(CMD, "--finance asks one request at a time: --window does not apply");
    if (!o->finance && (o->given & (1u << OPT_PARTNERS)))
        return tly_usagef(CMD, "--partners goes with --finance");
    o->partners = o->partners ? o->partners : BENCH_FINANCE_PARTNERS_DEFAULT;
    return -1;
}

/* The four runs: echo and query, idle and beside a folding consumer. */
static tly_err bench_runs(qbench *qb, json_t *runs)
{
    uint64_t *lat = malloc(sizeof(uint64_t) * TLY_BENCH_LATENCY_SAMPLES_MAX);
    if (!lat)
        return TLY_NOMEM;
    tly_err err = TLY_OK;
    for (int i = 0; i < 4 && err == TLY_OK; i++) {
        qrun r = {.lat_ns = lat};
        err = run_one(qb, i % 2 == 0, i >= 2, &r);
        if (err == TLY_OK && r.fold_failed) {
            char log[TLY_BENCH_LOG_PATH_BYTES];
            tly_bench_consumer_log(&qb->d, 0, 2, log);
            tly_errorf(CMD, "the folding consumer failed: see %s", log);
            err = TLY_IO;
        }
        if (err == TLY_OK)
            json_array_append_new(runs, run_json(&r));
    }
    free(lat);
    return err;
}

/* The data: directory, log, partners, the folded store, the endpoint. */
static tly_err prepare(qbench *qb)
{
    tly_err err = tly_bench_data_setup(&qb->d, CMD, qb->o.data_given ? qb->o.common.data : NULL);
    qb->d.gen_partners = qb->o.finance ? qb->o.partners : 0;
    if (err == TLY_OK)
        err = tly_bench_data_log(&qb->d, qb->o.seed, qb->o.events);
    if (err == TLY_OK)
        err = tly_bench_data_partners(&qb->d);
    if (err == TLY_OK && qb->d.partner_count == 0) {
        tly_errorf(CMD, "the log enrolls no partner to ask about");
        err = TLY_NOT_FOUND;
    }
    if (err == TLY_OK)
        err = fold_first(qb);
    if (err == TLY_OK && !pick_endpoint(qb))
        err = TLY_IO;
    return err;
}

int tly_cmd_bench_query(int argc, char **argv)
{
    qbench *qb = calloc(1, sizeof *qb);
    if (!qb)
        return TLY_EXIT_FAIL;
    int rc = parse_args(&qb->o, argc, argv);
    if (rc >= 0) {
        free(qb);
        return rc;
    }
    qb->d.rng = qb->o.seed ^ UINT64_C(0x5eed);
    tly_err err = prepare(qb);
    json_t *runs = json_array();
    if (err == TLY_OK)
        err = qb->o.finance ? finance_runs(qb, runs) : bench_runs(qb, runs);
    if (err == TLY_OK && qb->o.finance) {
        finance_report(qb, runs);
    } else if (err == TLY_OK && qb->o.common.json) {
        json_t *doc =
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:s,s:O}", "events", (json_int_t)qb->d.head, "partners",
                      (json_int_t)qb->d.partner_count, "clients", (json_int_t)qb->o.clients,
                      "window", (json_int_t)qb->o.window, "seconds", (json_int_t)qb->o.seconds,
                      "endpoint", qb->endpoint, "runs", runs);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    } else if (err == TLY_OK) {
        print_text(qb, runs);
    }
    json_decref(runs);
    tly_bench_data_free(&qb->d);
    free(qb);
    return err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}
