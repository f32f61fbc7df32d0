/*
 * cmd_bench_ingest.c — `tally bench ingest`: offered load through the real
 * ledger, beside the raw ceiling of the machine.
 *
 * For each batch size the bench starts a real `tally ledger` (this binary)
 * on a fresh data directory with durable commits, runs P producer threads,
 * each with its own connection and a window of requests in flight, and
 * measures appended events/s and ack latency (request sent to its reply,
 * not counting the wait for room in the window) p50/p99. Before and after
 * that run it appends the same records (the P producers' sources and ids,
 * interleaved by request as the ledger receives them, one group per
 * request) straight into a fresh log in this process: tly_log_append, same
 * chain and dedupe, commits of P × window × batch events (the largest
 * group the ledger can form), ids found before the clock starts. The
 * better of the two is the raw ceiling. A last run sends one event per
 * request with one request in flight, printed beside the machine's
 * two-fsync floor and one-event raw commits (tly_log_append, in this
 * process) measured in the same directory just before and after it: what
 * one durable LMDB commit must wait for at least.
 *
 * With --replicate, each batch size runs again through a ledger that
 * replicates into a new stream with 1 and with 3 replicas; beside it, the
 * stream's own ceiling: that run's log copied into another new stream of
 * the same replicas by the ledger's publish path with nothing else running
 * (stream_ceiling). Both scratch streams are deleted afterwards.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger_repl.h"
#include "tly_cli.h"
#include "tly_client.h"
#include "tly_cmd.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_wire.h"

/* Scratch directory paths: short enough that every file path under them
 * fits TLY_PATH_BYTES_MAX. */
#define TLY_BENCH_DIR_BYTES (TLY_PATH_BYTES_MAX / 2)

/* --events at the least: a run fills the default largest batch (1000). */
#define BENCH_EVENTS_MIN 1000u

typedef struct bench_opts {
    uint64_t events;
    uint32_t producers;
    uint32_t window;
    uint32_t batches[TLY_BENCH_BATCHES_MAX];
    uint32_t batch_count;
    bool no_sync;
    const char *dir;
    const char *replicate; /* --replicate URL: R1 and R3 runs beside each plain one */
    const char *ingest;    /* --ingest EP[,EP...]: running ledgers instead of its own [N5] */
} bench_opts;

/* Pre-encoded events of one producer. */
typedef struct corpus {
    char source[32];
    msgpack_sbuffer buf;
    size_t *offsets; /* count + 1 */
    tly_str *ids;    /* the raw ceiling's: each event's id, NULL until found */
    uint64_t count;
} corpus;

typedef struct producer {
    corpus *c;
    const char *endpoint;
    uint32_t batch;
    uint32_t window;
    uint64_t *lat_ns; /* one per request */
    uint64_t *sent_ns;
    uint64_t requests;
    uint64_t appended;
    uint64_t failed;
} producer;

static void usage(FILE *out)
{
    fprintf(out, "Usage: tally bench ingest [options]\n"
                 "Measures durable ingest through a real ledger and the raw LMDB ceiling.\n\n"
                 "  --events N       events per run (default 1000000)\n"
                 "  --producers N    producer connections (default 4)\n"
                 "  --window N       requests in flight per producer (default 16)\n"
                 "  --batches LIST   events per request, comma-separated (default 1,10,100,1000)\n"
                 "  --no-sync        run the ledger with --no-sync (not durable)\n"
                 "  --dir DIR        scratch directory (default a new one under /tmp)\n"
                 "  --replicate URL[,URL...]  also run each batch size through a ledger that\n"
                 "                   replicates into JetStream there, with 1 and 3 replicas\n"
                 "                   (a new stream per run), beside the stream's own ceiling:\n"
                 "                   the run's log copied into another new stream by the\n"
                 "                   ledger's publish path with nothing else running\n"
                 "  --ingest EP[,EP...]  send to these running ledgers (a writer and its\n"
                 "                   standbys: a request that times out or is answered\n"
                 "                   unavailable moves to the next) instead of starting one;\n"
                 "                   each run's events get ids no earlier run used\n");
}

/* --batches LIST into o->batches. The list is read in place, element by
 * element: a fixed buffer cut a long list short, and the sizes past the
 * cut were dropped unseen, a ninth among them; strtok skipped an empty
 * element ("1,,2", ",1", "1,"), so a typo ran a different benchmark. */
static int parse_batches(const char *s, bench_opts *o)
{
    o->batch_count = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        char size[24]; /* a decimal uint64 and its NUL fit */
        uint64_t v = 0;
        if (len == 0)
            return tly_usagef("bench ingest", "--batches: an empty size in '%s'", s);
        if (len < sizeof size) {
            memcpy(size, p, len);
            size[len] = '\0';
        }
        if (o->batch_count == TLY_BENCH_BATCHES_MAX || len >= sizeof size ||
            !tly_parse_u64(size, 1, TLY_BATCH_EVENTS_MAX, &v))
            return tly_usagef("bench ingest", "--batches: up to %u sizes of 1..%u",
                              TLY_BENCH_BATCHES_MAX, TLY_BATCH_EVENTS_MAX);
        o->batches[o->batch_count++] = (uint32_t)v;
        p += len;
        if (*p == '\0')
            return TLY_EXIT_OK;
    }
}

/* --replicate URL[,URL...], checked as the ledgers the runs start check
 * it: a bad list is a usage error here, not a ledger's refusal after the
 * first runs. */
static int parse_replicate(const char *v, bench_opts *o)
{
    char msg[256];
    tly_repl_opts ro = {v, NULL, 0, false, "--replicate"};
    if (tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef("bench ingest", "%s", msg);
    o->replicate = v;
    return TLY_EXIT_OK;
}

enum {
    OPT_EVENTS = 1,
    OPT_PRODUCERS,
    OPT_WINDOW,
    OPT_BATCHES,
    OPT_DIR,
    OPT_NO_SYNC,
    OPT_REPLICATE,
    OPT_INGEST
};

static const tly_opt bench_opts_table[] = {
    {"--events", OPT_EVENTS, true},       {"--producers", OPT_PRODUCERS, true},
    {"--window", OPT_WINDOW, true},       {"--batches", OPT_BATCHES, true},
    {"--dir", OPT_DIR, TLY_OPT_PATH},     {"--no-sync", OPT_NO_SYNC, false},
    {"--replicate", OPT_REPLICATE, true}, {"--ingest", OPT_INGEST, true},
};

static int bench_opt(void *ctx, int id, const char *v)
{
    bench_opts *o = ctx;
    uint64_t n = 0;
    switch (id) {
    case OPT_EVENTS:
        if (!tly_parse_u64(v, BENCH_EVENTS_MIN, TLY_BENCH_EVENTS_MAX, &n))
            return tly_usagef("bench ingest", "--events must be %u..%u", BENCH_EVENTS_MIN,
                              TLY_BENCH_EVENTS_MAX);
        o->events = n;
        return TLY_EXIT_OK;
    case OPT_PRODUCERS:
        if (!tly_parse_u64(v, 1, TLY_BENCH_PRODUCERS_MAX, &n))
            return tly_usagef("bench ingest", "--producers must be 1..%u", TLY_BENCH_PRODUCERS_MAX);
        o->producers = (uint32_t)n;
        return TLY_EXIT_OK;
    case OPT_WINDOW:
        if (!tly_parse_u64(v, 1, TLY_CLIENT_WINDOW_MAX, &n))
            return tly_usagef("bench ingest", "--window must be 1..%u", TLY_CLIENT_WINDOW_MAX);
        o->window = (uint32_t)n;
        return TLY_EXIT_OK;
    case OPT_BATCHES:
        return parse_batches(v, o);
    case OPT_DIR:
        o->dir = v;
        return TLY_EXIT_OK;
    case OPT_NO_SYNC:
        o->no_sync = true;
        return TLY_EXIT_OK;
    case OPT_REPLICATE:
        return parse_replicate(v, o);
    case OPT_INGEST:
        if (!tly_client_endpoints_ok(v))
            return tly_usagef("bench ingest", TLY_CLIENT_ENDPOINTS_USAGE, TLY_CLIENT_ENDPOINTS_MAX);
        o->ingest = v;
        return TLY_EXIT_OK;
    default:
        return tly_usagef("bench ingest", "unexpected argument '%s'", v);
    }
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    o->events = 1000000;
    o->producers = 4;
    o->window = 16;
    parse_batches("1,10,100,1000", o);
    const tly_cli_spec spec = {
        "bench ingest", 0, bench_opts_table, sizeof bench_opts_table / sizeof bench_opts_table[0],
        bench_opt,      o};
    int rc = tly_cli_parse(&spec, NULL, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    return rc;
}

/* A realistic sale event (~170 bytes encoded). */
static void encode_sale(msgpack_packer *pk, const char *id, int64_t at, uint64_t n)
{
    char partner[32];
    snprintf(partner, sizeof partner, "partner-%03llu", (unsigned long long)(n % 500));
    msgpack_pack_map(pk, 8);
    msgpack_pack_str_with_body(pk, "type", 4);
    msgpack_pack_str_with_body(pk, "sale", 4);
    msgpack_pack_str_with_body(pk, "id", 2);
    msgpack_pack_str_with_body(pk, id, strlen(id));
    msgpack_pack_str_with_body(pk, "at", 2);
    msgpack_pack_int64(pk, at);
    msgpack_pack_str_with_body(pk, "partner", 7);
    msgpack_pack_str_with_body(pk, partner, strlen(partner));
    msgpack_pack_str_with_body(pk, "sku", 3);
    msgpack_pack_str_with_body(pk, "SRV-RACK-2U-XEON", 16);
    msgpack_pack_str_with_body(pk, "qty", 3);
    msgpack_pack_int64(pk, (int64_t)(1 + n % 7));
    msgpack_pack_str_with_body(pk, "amount", 6);
    msgpack_pack_int64(pk, (int64_t)(10000 + (n * 7919) % 5000000));
    msgpack_pack_str_with_body(pk, "currency", 8);
    msgpack_pack_str_with_body(pk, "USD", 3);
}

static tly_err build_corpus(corpus *c, const char *run, uint32_t p, uint64_t count)
{
    /* the process and its start in every source: a run against a running
     * ledger (--ingest) never resends an earlier run's ids */
    static int64_t started;
    if (started == 0)
        started = tly_now_ms();
    snprintf(c->source, sizeof c->source, "bench-%s-%u-%d-%lld", run, p, (int)getpid(),
             (long long)started);
    msgpack_sbuffer_init(&c->buf);
    c->ids = NULL;
    c->offsets = malloc((count + 1) * sizeof *c->offsets);
    if (!c->offsets)
        return TLY_NOMEM;
    c->count = count;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->buf, msgpack_sbuffer_write);
    int64_t at = tly_now_ms() - 86400000;
    for (uint64_t i = 0; i < count; i++) {
        char id[48];
        snprintf(id, sizeof id, "S-%u-%010llu", p, (unsigned long long)i);
        c->offsets[i] = c->buf.size;
        encode_sale(&pk, id, at, i);
    }
    c->offsets[count] = c->buf.size;
    return TLY_OK;
}

static void free_corpus(corpus *c)
{
    msgpack_sbuffer_destroy(&c->buf);
    free(c->offsets);
    free(c->ids);
}

/* Finds every event's id once, before the raw ceiling's clock starts (the
 * ledger has it from validation, which the ceiling does not count). */
static tly_err corpus_ids(corpus *c)
{
    c->ids = malloc(c->count * sizeof *c->ids);
    if (!c->ids)
        return TLY_NOMEM;
    for (uint64_t i = 0; i < c->count; i++) {
        tly_ev_type t;
        const uint8_t *ev = (const uint8_t *)c->buf.data + c->offsets[i];
        if (tly_event_peek_id(ev, c->offsets[i + 1] - c->offsets[i], &t, &c->ids[i]) != TLY_OK)
            return TLY_MALFORMED;
    }
    return TLY_OK;
}

static void fill_spans(const corpus *c, uint64_t first, uint32_t n, tly_span *spans)
{
    for (uint32_t k = 0; k < n; k++) {
        spans[k].ptr = (const uint8_t *)c->buf.data + c->offsets[first + k];
        spans[k].len = c->offsets[first + k + 1] - c->offsets[first + k];
    }
}

static void on_ack(void *ctx, uint64_t tag, tly_err whole, const tly_ingest_result *res,
                   uint32_t count, const char *msg)
{
    (void)msg;
    producer *p = ctx;
    p->lat_ns[tag] = tly_mono_ns() - p->sent_ns[tag];
    for (uint32_t i = 0; i < count; i++)
        if (whole == TLY_OK && res[i].err == TLY_OK)
            p->appended++;
        else
            p->failed++;
    if (whole != TLY_OK)
        p->failed++;
}

static void *producer_main(void *arg)
{
    producer *p = arg;
    tly_client_opts co = {.endpoint = p->endpoint, .window = p->window};
    tly_client *c = NULL;
    char msg[160];
    if (tly_client_open(&co, &c, msg, sizeof msg) != TLY_OK) {
        p->failed = p->c->count;
        return NULL;
    }
    tly_span *spans = malloc(p->batch * sizeof *spans);
    uint64_t req = 0;
    uint32_t in_flight = 0;
    for (uint64_t i = 0; spans && i < p->c->count; i += p->batch, req++) {
        uint32_t n = (uint32_t)(p->c->count - i < p->batch ? p->c->count - i : p->batch);
        fill_spans(p->c, i, n, spans);
        /* The clock starts when the request can leave: time spent waiting
         * for room in the window is the previous requests' latency. */
        while (in_flight >= p->window)
            in_flight = tly_client_poll(c, 1000);
        p->sent_ns[req] = tly_mono_ns();
        if (tly_client_submit(c, p->c->source, spans, n, false, req, on_ack, p) == TLY_OK)
            in_flight++;
    }
    tly_client_drain(c);
    p->requests = req;
    free(spans);
    tly_client_close(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The replication of one run: NULL, or the cluster, a stream and its
 * replicas. */
typedef struct bench_repl {
    const char *urls;
    char stream[40];
    char replicas[4];
} bench_repl;

static pid_t start_ledger(const char *dir, const char *ingest, bool no_sync, const bench_repl *rp)
{
    char data[TLY_PATH_BYTES_MAX], events[TLY_PATH_BYTES_MAX], lr[TLY_PATH_BYTES_MAX];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(events, sizeof events, "ipc://%s/events.sock", dir);
    snprintf(lr, sizeof lr, "ipc://%s/logread.sock", dir);
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"tally",
                        "ledger",
                        "--data",
                        data,
                        "--ingest",
                        (char *)ingest,
                        "--events",
                        events,
                        "--log-read",
                        lr,
                        no_sync ? "--no-sync" : NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL};
        int n = no_sync ? 11 : 10;
        if (rp) {
            const char *more[] = {"--replicate", rp->urls,     "--stream",
                                  rp->stream,    "--replicas", rp->replicas};
            for (int i = 0; i < 6; i++)
                argv[n++] = (char *)more[i];
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

static void stop_child(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
}

typedef struct run_result {
    double eps; /* for display only: never used in money or stored */
    uint64_t p50_us, p99_us, appended, failed;
} run_result;

static void summarize(producer *ps, uint32_t np, uint64_t elapsed_ns, run_result *r)
{
    uint64_t total_req = 0;
    memset(r, 0, sizeof *r);
    for (uint32_t i = 0; i < np; i++) {
        total_req += ps[i].requests;
        r->appended += ps[i].appended;
        r->failed += ps[i].failed;
    }
    uint64_t *all = malloc((total_req + 1) * sizeof *all);
    uint64_t k = 0;
    for (uint32_t i = 0; all && i < np; i++)
        for (uint64_t j = 0; j < ps[i].requests; j++)
            all[k++] = ps[i].lat_ns[j];
    if (all && k > 0) {
        qsort(all, k, sizeof *all, cmp_u64);
        r->p50_us = all[k / 2] / 1000;
        r->p99_us = all[k * 99 / 100] / 1000;
    }
    free(all);
    r->eps = (double)r->appended * 1e9 / (double)(elapsed_ns ? elapsed_ns : 1);
}

/* One offered-load run through a real ledger. */
/* Builds the corpora of np producers for a run of `events` events in
 * requests of batch events, ids found. */
static corpus *build_corpora(uint32_t np, uint32_t batch, uint64_t events)
{
    corpus *cs = calloc(np, sizeof *cs);
    char run[16];
    snprintf(run, sizeof run, "b%u", batch);
    bool ok = cs != NULL;
    for (uint32_t i = 0; ok && i < np; i++)
        ok = build_corpus(&cs[i], run, i, events / np) == TLY_OK && corpus_ids(&cs[i]) == TLY_OK;
    if (!ok && cs) {
        for (uint32_t i = 0; i < np; i++)
            free_corpus(&cs[i]);
        free(cs);
        cs = NULL;
    }
    return cs;
}

static void free_corpora(corpus *cs, uint32_t np)
{
    for (uint32_t i = 0; cs && i < np; i++)
        free_corpus(&cs[i]);
    free(cs);
}

/* One offered-load run through a real ledger: np producers, each sending
 * its corpus cs[i] in requests of batch events. */
static tly_err run_ledger(const bench_opts *o, const char *dir, corpus *cs, uint32_t np,
                          uint32_t batch, uint32_t window, const bench_repl *rp, run_result *r)
{
    char ingest[TLY_PATH_BYTES_MAX];
    snprintf(ingest, sizeof ingest, "ipc://%s/ingest.sock", dir);
    bool own = o->ingest == NULL || rp != NULL; /* a replicated run is always its own */
    pid_t pid = own ? start_ledger(dir, ingest, o->no_sync, rp) : 0;
    producer *ps = calloc(np, sizeof *ps);
    pthread_t *th = calloc(np, sizeof *th);
    for (uint32_t i = 0; i < np; i++) {
        uint64_t nreq = cs[i].count / batch + 2;
        ps[i] = (producer){.c = &cs[i],
                           .endpoint = own ? ingest : o->ingest,
                           .batch = batch,
                           .window = window,
                           .lat_ns = calloc(nreq, 8),
                           .sent_ns = calloc(nreq, 8)};
    }
    if (own)
        usleep(rp ? 3000000 : 300000); /* let the ledger bind (and make its stream) first */
    uint64_t t0 = tly_mono_ns();
    for (uint32_t i = 0; i < np; i++)
        pthread_create(&th[i], NULL, producer_main, &ps[i]);
    for (uint32_t i = 0; i < np; i++)
        pthread_join(th[i], NULL);
    summarize(ps, np, tly_mono_ns() - t0, r);
    if (own)
        stop_child(pid);
    for (uint32_t i = 0; i < np; i++) {
        free(ps[i].lat_ns);
        free(ps[i].sent_ns);
    }
    free(ps);
    free(th);
    return TLY_OK;
}

static void rm_tree(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", dir, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
}

/* The raw ceiling's walk over the producers' requests: request r is the
 * (r / np)-th request of producer r % np, as they interleave at the ledger. */
typedef struct raw_walk {
    const corpus *cs;
    uint32_t np, batch;
    uint64_t next; /* the next request */
    uint64_t done; /* events taken */
} raw_walk;

/* Adds the walk's next request to items[n..] as one group; false when it
 * would take a commit that holds requests over commit items, or none is
 * left (commit is at least a request: every request in flight). */
static bool raw_take(raw_walk *w, tly_log_item *items, uint32_t *n, tly_log_group *groups,
                     uint32_t *ng, uint32_t commit)
{
    for (; w->next < (uint64_t)w->np * (w->cs[0].count / w->batch + 1); w->next++) {
        const corpus *c = &w->cs[w->next % w->np];
        uint64_t first = (w->next / w->np) * w->batch;
        if (first >= c->count)
            continue;
        uint32_t len = (uint32_t)(c->count - first < w->batch ? c->count - first : w->batch);
        if (*n > 0 && *n + len > commit)
            return false;
        tly_str src = {c->source, (uint32_t)strlen(c->source)};
        groups[(*ng)++] = (tly_log_group){*n, len, false};
        for (uint64_t k = first; k < first + len; k++)
            items[(*n)++] = (tly_log_item){
                .source = src,
                .id = c->ids[k],
                .event = (const uint8_t *)c->buf.data + c->offsets[k],
                .event_len = c->offsets[k + 1] - c->offsets[k],
            };
        w->done += len;
        w->next++;
        return true;
    }
    return false;
}

/* The raw ceiling: the producers' records, interleaved by request as the
 * ledger receives them, appended in this process into a fresh log at
 * dir/name in commits of at most commit events (one group per request, ids
 * found beforehand). */
static double run_raw(const bench_opts *o, const char *dir, const char *name, const corpus *cs,
                      uint32_t np, uint32_t batch, uint32_t commit)
{
    char path[TLY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tly_log *log = NULL;
    if (tly_log_open(path, TLY_LOG_WRITE | (o->no_sync ? TLY_LOG_NO_SYNC : 0), &log) != TLY_OK)
        return 0;
    tly_log_item *items = calloc(commit, sizeof *items);
    tly_log_group *groups = calloc(commit, sizeof *groups);
    raw_walk w = {cs, np, batch, 0, 0};
    uint64_t t0 = tly_mono_ns();
    for (bool more = items && groups; more;) { /* bounded: each commit takes a request */
        uint32_t n = 0, ng = 0;
        while (raw_take(&w, items, &n, groups, &ng, commit))
            ;
        more = ng > 0;
        if (more)
            tly_log_append(log, tly_now_ms(), items, n, groups, ng);
    }
    double eps = items && groups ? (double)w.done * 1e9 / (double)(tly_mono_ns() - t0) : 0;
    free(items);
    free(groups);
    tly_log_close(log);
    rm_tree(path);
    return eps;
}

/* The size of one page of the floor's file, as LMDB writes them. */
#define FLOOR_PAGE_BYTES 4096u
/* Pages of the floor's file: data pages are rewritten in turn after the two
 * meta pages, as LMDB reuses freed pages. */
#define FLOOR_PAGES 64u

/* Times count commits of the smallest LMDB shape into lat_ns: one data page
 * written and fdatasync'd, then one meta page written through an O_DSYNC
 * descriptor (LMDB's default: data pages, sync, meta page). */
static bool floor_samples(const char *path, uint32_t count, uint64_t *lat_ns)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, TLY_FILE_MODE);
    int mfd = fd >= 0 ? open(path, O_RDWR | O_DSYNC) : -1;
    static const uint8_t page[FLOOR_PAGE_BYTES];
    bool ok = fd >= 0 && mfd >= 0;
    for (uint32_t p = 0; ok && p < FLOOR_PAGES; p++)
        ok = pwrite(fd, page, sizeof page, (off_t)p * FLOOR_PAGE_BYTES) == (ssize_t)sizeof page;
    ok = ok && fsync(fd) == 0;
    for (uint32_t i = 0; ok && i < count; i++) {
        off_t data = (off_t)(2 + i % (FLOOR_PAGES - 2)) * FLOOR_PAGE_BYTES;
        uint64_t t0 = tly_mono_ns();
        ok = pwrite(fd, page, sizeof page, data) == (ssize_t)sizeof page && fdatasync(fd) == 0 &&
             pwrite(mfd, page, sizeof page, (off_t)(i % 2) * FLOOR_PAGE_BYTES) ==
                 (ssize_t)sizeof page;
        lat_ns[i] = tly_mono_ns() - t0;
    }
    if (mfd >= 0)
        close(mfd);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return ok;
}

/* One batch size: the raw ceiling, the ledger, the raw ceiling again, all
 * with the same records; the ratio is to the better of the two ceilings,
 * so that a burst of other load on the machine during one of them does not
 * flatter the ledger. */
/* The same corpus through a ledger replicating into a new stream of
 * `replicas` replicas (SPEC section 12): a fresh data directory each. */
/* Deletes a scratch stream of this run. */
static void drop_stream(const char *urls, const char *stream)
{
    tly_repl_opts ro = {.urls = urls, .stream = stream, .no_create = true};
    tly_repl *r = NULL;
    char msg[256];
    if (tly_repl_open(&ro, &r, msg, sizeof msg) == TLY_OK)
        (void)tly_repl_delete_stream(r);
    tly_repl_close(r);
}

/* The stream's own ceiling, measured beside the ledger's run: the run's
 * log (dir/data/log) copied into a new stream with the same replicas
 * through the ledger's publish path (chunks of TLY_REPL_CHUNK_RECORDS, each
 * record with expected-last-sequence, one wait for a chunk's acks), with
 * no ledger or producers running. Records/s; 0 on failure. */
static double stream_ceiling(const char *urls, const char *dir, const char *stream, int replicas)
{
    char path[TLY_PATH_BYTES_MAX], msg[256];
    snprintf(path, sizeof path, "%s/data/log", dir);
    tly_log *log = NULL;
    tly_repl *r = NULL;
    tly_repl_opts ro = {.urls = urls, .stream = stream, .replicas = replicas};
    uint64_t head = 0, t0 = 0;
    double per_s = 0;
    tly_err err = tly_log_open(path, TLY_LOG_WRITE, &log); /* the ledger has stopped */
    if (err == TLY_OK)
        err = tly_repl_open(&ro, &r, msg, sizeof msg);
    if (err == TLY_OK) {
        tly_log_head(log, &head, NULL);
        t0 = tly_mono_ns();
        err = tly_repl_attach(r, log, msg, sizeof msg);
    }
    if (err == TLY_OK && head > 0)
        per_s = (double)head * 1e9 / (double)(tly_mono_ns() - t0);
    else
        fprintf(stderr, "tally bench ingest: stream ceiling: %s\n",
                err == TLY_OK ? "empty log" : tly_strerror(err));
    if (r != NULL)
        (void)tly_repl_delete_stream(r);
    tly_repl_close(r);
    tly_log_close(log);
    return per_s;
}

static void run_replicated(const bench_opts *o, const char *dir, corpus *cs, uint32_t batch,
                           int replicas, double raw)
{
    char sub[TLY_BENCH_DIR_BYTES + 16];
    snprintf(sub, sizeof sub, "%s/r%d", dir, replicas);
    mkdir(sub, TLY_DIR_MODE);
    bench_repl rp = {o->replicate, "", ""};
    snprintf(rp.stream, sizeof rp.stream, "BENCH_%d_%u_R%d", (int)getpid(), batch, replicas);
    snprintf(rp.replicas, sizeof rp.replicas, "%d", replicas);
    run_result r;
    memset(&r, 0, sizeof r);
    run_ledger(o, sub, cs, o->producers, batch, o->window, &rp, &r);
    drop_stream(o->replicate, rp.stream);
    char ceil_name[48];
    snprintf(ceil_name, sizeof ceil_name, "%s_CEIL", rp.stream);
    double ceiling = stream_ceiling(o->replicate, sub, ceil_name, replicas);
    char label[16];
    snprintf(label, sizeof label, "%u R%d", batch, replicas);
    printf("%-8s %12.0f %10.3f %10.3f %14.0f %7.0f%% %14.0f %7.0f%%%s\n", label, r.eps,
           (double)r.p50_us / 1000.0, (double)r.p99_us / 1000.0, raw,
           raw > 0 ? 100.0 * r.eps / raw : 0.0, ceiling,
           ceiling > 0 ? 100.0 * r.eps / ceiling : 0.0, r.failed ? "  (FAILURES)" : "");
    fflush(stdout);
}

static void run_batch(const bench_opts *o, const char *base, uint32_t b)
{
    char dir[TLY_BENCH_DIR_BYTES];
    snprintf(dir, sizeof dir, "%s/run-%u", base, b);
    mkdir(dir, TLY_DIR_MODE);
    uint32_t batch = o->batches[b];
    uint64_t events = o->events;
    if (batch < 100 && events > (uint64_t)batch * 20000)
        events = (uint64_t)batch * 20000; /* small batches: bounded run time */
    /* Raw commits as large as the ledger's largest group: every request in
     * flight, capped by the ledger's own commit limit. */
    uint64_t commit = (uint64_t)batch * o->producers * o->window;
    if (commit > TLY_COMMIT_EVENTS_MAX)
        commit = TLY_COMMIT_EVENTS_MAX;
    corpus *cs = build_corpora(o->producers, batch, events);
    run_result r;
    memset(&r, 0, sizeof r);
    double raw = 0, after = 0;
    if (cs) {
        raw = run_raw(o, dir, "raw-before", cs, o->producers, batch, (uint32_t)commit);
        run_ledger(o, dir, cs, o->producers, batch, o->window, NULL, &r);
        after = run_raw(o, dir, "raw-after", cs, o->producers, batch, (uint32_t)commit);
    }
    raw = after > raw ? after : raw;
    printf("%-8u %12.0f %10.3f %10.3f %14.0f %7.0f%%%s\n", batch, r.eps, (double)r.p50_us / 1000.0,
           (double)r.p99_us / 1000.0, raw, raw > 0 ? 100.0 * r.eps / raw : 0.0,
           r.failed || !cs ? "  (FAILURES)" : "");
    fflush(stdout);
    for (int k = 0; cs && o->replicate && k < 2; k++)
        run_replicated(o, dir, cs, batch, k == 0 ? 1 : 3, raw);
    free_corpora(cs, o->producers);
    rm_tree(dir);
}

/* Times count one-event commits appended in this process to a fresh log
 * at dir/name into lat_ns: the LMDB commit a lone event waits for, without
 * the ledger around it. */
static bool raw_single(const bench_opts *o, const char *dir, const char *name, uint32_t count,
                       uint64_t *lat_ns)
{
    char path[TLY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tly_log *log = NULL;
    corpus c;
    memset(&c, 0, sizeof c);
    bool ok =
        build_corpus(&c, name, 0, count) == TLY_OK && corpus_ids(&c) == TLY_OK &&
        tly_log_open(path, TLY_LOG_WRITE | (o->no_sync ? TLY_LOG_NO_SYNC : 0), &log) == TLY_OK;
    tly_str src = {c.source, (uint32_t)strlen(c.source)};
    for (uint32_t i = 0; ok && i < count; i++) {
        tly_log_item it = {.source = src,
                           .id = c.ids[i],
                           .event = (const uint8_t *)c.buf.data + c.offsets[i],
                           .event_len = c.offsets[i + 1] - c.offsets[i]};
        tly_log_group g = {0, 1, false};
        uint64_t t0 = tly_mono_ns();
        ok = tly_log_append(log, tly_now_ms(), &it, 1, &g, 1) == TLY_OK && it.err == TLY_OK;
        lat_ns[i] = tly_mono_ns() - t0;
    }
    tly_log_close(log);
    free_corpus(&c);
    rm_tree(path);
    return ok;
}

/* The machine's floors around the one-event run: half the samples before
 * it, half after. */
typedef struct floors {
    uint64_t fsync_ns[2 * TLY_BENCH_FLOOR_SAMPLES];
    uint64_t commit_ns[2 * TLY_BENCH_FLOOR_SAMPLES];
    bool ok;
} floors;

static void sample_floors(const bench_opts *o, const char *dir, floors *f, uint32_t half)
{
    char path[TLY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s/floor", dir);
    uint64_t *fs = f->fsync_ns + half * TLY_BENCH_FLOOR_SAMPLES;
    uint64_t *cs = f->commit_ns + half * TLY_BENCH_FLOOR_SAMPLES;
    f->ok =
        floor_samples(path, TLY_BENCH_FLOOR_SAMPLES, fs) &&
        raw_single(o, dir, half ? "single-after" : "single-before", TLY_BENCH_FLOOR_SAMPLES, cs) &&
        (half == 0 || f->ok);
}

static double p50_ms(uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof ns[0], cmp_u64);
    return (double)ns[n / 2] / 1e6;
}

/* The one-event run, between two sets of floor samples in its directory. */
static void run_single(const bench_opts *o, const char *base)
{
    char dir[TLY_BENCH_DIR_BYTES];
    snprintf(dir, sizeof dir, "%s/single", base);
    mkdir(dir, TLY_DIR_MODE);
    floors *f = calloc(1, sizeof *f);
    if (f)
        sample_floors(o, dir, f, 0);
    run_result r, quick;
    memset(&r, 0, sizeof r);
    memset(&quick, 0, sizeof quick);
    corpus *cs = build_corpora(1, 1, TLY_BENCH_SINGLE_EVENTS);
    if (cs)
        run_ledger(o, dir, cs, 1, 1, 1, NULL, &r);
    /* The same through a ledger of its own without fsync: the round trip
     * (ZeroMQ, the ledger's work, a commit of a few us) the acknowledgement
     * adds to the durable commit. Only when this bench starts the ledgers. */
    bool with_quick = cs && o->ingest == NULL && !o->no_sync;
    if (with_quick) {
        bench_opts q = *o;
        q.no_sync = true;
        char qdir[TLY_BENCH_DIR_BYTES + 16];
        snprintf(qdir, sizeof qdir, "%s/single-no-sync", base);
        mkdir(qdir, TLY_DIR_MODE);
        run_ledger(&q, qdir, cs, 1, 1, 1, NULL, &quick);
    }
    free_corpora(cs, 1);
    if (f)
        sample_floors(o, dir, f, 1);
    printf("one event per request, one in flight: %.0f events/s, ack p50 %.3f ms, p99 %.3f ms\n",
           r.eps, (double)r.p50_us / 1000.0, (double)r.p99_us / 1000.0);
    if (with_quick)
        printf("the same through a ledger with --no-sync (the round trip without the "
               "fsyncs): ack p50 %.3f ms, p99 %.3f ms\n",
               (double)quick.p50_us / 1000.0, (double)quick.p99_us / 1000.0);
    if (!f || !f->ok) {
        printf("floors: could not be measured in %s\n", dir);
        free(f);
        return;
    }
    double fsync = p50_ms(f->fsync_ns, 2 * TLY_BENCH_FLOOR_SAMPLES);
    double commit = p50_ms(f->commit_ns, 2 * TLY_BENCH_FLOOR_SAMPLES);
    printf("two-fsync floor (data page fdatasync + O_DSYNC meta page, same directory): p50 %.3f "
           "ms; ack p50 - floor p50 = %.3f ms\n",
           fsync, (double)r.p50_us / 1000.0 - fsync);
    printf("one-event raw commit (tly_log_append in this process, same directory): p50 %.3f ms\n",
           commit);
    free(f);
}

int tly_cmd_bench_ingest(int argc, char **argv)
{
    bench_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;
    char base[TLY_BENCH_DIR_BYTES / 2];
    snprintf(base, sizeof base, "%s/tally-bench-XXXXXX", o.dir ? o.dir : "/tmp");
    if (!mkdtemp(base)) {
        tly_errorf("bench ingest", "cannot create a scratch directory in %s",
                   o.dir ? o.dir : "/tmp");
        return TLY_EXIT_FAIL;
    }
    if (o.ingest)
        printf("tally bench ingest: %llu events per run, %u producers, window %u, to the running "
               "ledgers %s\n",
               (unsigned long long)o.events, o.producers, o.window, o.ingest);
    else
        printf("tally bench ingest: %llu events per run, %u producers, window %u, %s commits\n",
               (unsigned long long)o.events, o.producers, o.window,
               o.no_sync ? "NO-SYNC" : "durable (fsync)");
    if (o.replicate)
        printf("%-8s %12s %10s %10s %14s %8s %14s %8s\n", "batch", "events/s", "p50 ms", "p99 ms",
               "raw events/s", "ratio", "stream ceil/s", "ratio");
    else
        printf("%-8s %12s %10s %10s %14s %8s\n", "batch", "events/s", "p50 ms", "p99 ms",
               "raw events/s", "ratio");
    for (uint32_t b = 0; b < o.batch_count; b++)
        run_batch(&o, base, b);
    run_single(&o, base);
    rm_tree(base);
    return TLY_EXIT_OK;
}
