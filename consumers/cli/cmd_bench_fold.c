/*
 * cmd_bench_fold.c — `tally bench fold`: how fast consumers fold the log.
 *
 * 1. The log: DIR/log is reused when it holds records (--data DIR), else a
 *    fresh one of --events generated events is written (tly_runtime.h).
 * 2. Runs: one shard, then --shards shards in parallel, each a real
 *    `tally consume --shard K/N --exit-at-head` process folding the whole
 *    log from scratch into fresh view stores. Each shard reads every record
 *    (global events go to all shards), so a shard's rate is log records per
 *    second; the total is the sum over shards.
 * 3. Under that load this process reads partners' balance documents from
 *    the shards' view stores (rendered from the stored state, tly_views_doc),
 *    read-only, as the query service does, and reports the read latency
 *    percentiles.
 *
 * With --growth it measures how folding grows with the log instead: logs
 * of 1M, 3M and 10M generated events (one partner per 100 events: 100,000
 * at 10M; --growth-max drops the larger ones) each in DIR/growth-N, and for
 * each: the minimal scan + decode + fold of that log by this bench (the
 * log's read API, tly_event_decode, a fresh engine, nothing stored: the
 * ceiling; in a forked copy of this process, so that this one stays
 * small), the fold rate of 1 shard and of --shards shards as above, the
 * restart of every shard with its checkpoint at the head (`tally consume
 * --exit-at-head` again on the folded store, one at a time), the peak RSS
 * of every consumer (wait4's ru_maxrss, exact since this process is small
 * when it forks them, and VmHWM sampled from /proc while they run) with the
 * largest anonymous part sampled (RSS also counts the pages of the LMDB
 * files a consumer maps, which the kernel can drop) and the size of every
 * shard's data.mdb.
 *
 * Output: one line per measurement, "what key=value ...", so fields can be
 * added without breaking readers; --json prints one object instead.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_data.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_engine.h"
#include "tly_event.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_views.h"

#define CMD "bench fold"

/* Default log size: big enough that process start-up is noise. */
#define BENCH_EVENTS_DEFAULT 1000000u
/* Pause between two query reads: the reader samples latency without taking
 * a core away from the folding processes it measures. */
#define BENCH_READ_PAUSE_US 1000
/* --growth: the log sizes, and the generated partners per event. */
#define BENCH_GROWTH_SIZES 3u
static const uint64_t growth_sizes[BENCH_GROWTH_SIZES] = {1000000u, 3000000u, 10000000u};
#define BENCH_GROWTH_EVENTS_PER_PARTNER 100u
#define BENCH_GROWTH_PARTNERS_MIN 20u

typedef struct bench_opts {
    tly_common_opts common;
    bool data_given;
    uint64_t events;
    uint64_t seed;
    uint32_t shards;
    uint32_t batch;
    bool events_given;
    bool growth;
    uint64_t growth_max; /* largest log size of --growth */
    uint32_t partners;   /* --partners; 0: the default population */
} bench_opts;

typedef struct shard_result {
    double seconds;
    int exit_code;
    uint64_t peak_rss_kb;  /* ru_maxrss at its exit, or VmHWM sampled while it ran */
    uint64_t peak_anon_kb; /* the largest RssAnon sampled: its own memory */
} shard_result;

typedef struct bench_run {
    uint32_t shards;
    double wall_s;
    shard_result res[TLY_SHARDS_MAX];
    uint64_t *lat_ns; /* TLY_BENCH_LATENCY_SAMPLES_MAX */
    uint32_t samples;
    uint32_t found;
} bench_run;

typedef struct bench {
    bench_opts o;
    tly_bench_data d; /* the data directory, log and partners */
} bench;

/* --- consumers --- */

/* One query read of a random partner's balance from its shard's store. */
static void sample_read(bench *b, bench_run *r, tly_views **views)
{
    if (b->d.partner_count == 0)
        return;
    const char *name = b->d.partners[tly_bench_rnd(&b->d.rng) % b->d.partner_count];
    uint32_t k = tly_engine_shard_of(name, strlen(name), r->shards);
    if (!views[k] && tly_views_open(b->d.data, k, r->shards, TLY_VIEWS_READ, &views[k]) != TLY_OK)
        return; /* the consumer has not created its store yet */
    char *val = NULL;
    size_t len;
    uint64_t t0 = tly_mono_ns();
    tly_err err = tly_views_doc(views[k], 'b', name, strlen(name), &val, &len, NULL);
    uint64_t dt = tly_mono_ns() - t0;
    free(val);
    if (r->samples < TLY_BENCH_LATENCY_SAMPLES_MAX) {
        r->lat_ns[r->samples++] = dt;
        r->found += err == TLY_OK;
    }
}

/* Samples a running process's memory from /proc/PID/status into the peaks
 * of res: VmHWM (the peak of its resident set since exec, pages of mapped
 * files such as the log's and the view store's LMDB maps included) and
 * RssAnon (its own memory now, without mapped files; the kernel keeps no
 * peak of it, so this is the largest sample). A zombie has neither, so
 * this runs while the process does. */
static void sample_rss(pid_t pid, shard_result *res)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    uint64_t kb = 0;
    /* Bounded by the lines of the status file. */
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmHWM: %" SCNu64 " kB", &kb) == 1 && kb > res->peak_rss_kb)
            res->peak_rss_kb = kb;
        if (sscanf(line, "RssAnon: %" SCNu64 " kB", &kb) == 1 && kb > res->peak_anon_kb)
            res->peak_anon_kb = kb;
    }
    if (f)
        fclose(f);
}

/* Reaps exited consumers, sampling the peak RSS of the others; returns how
 * many are still running. */
static uint32_t reap(bench_run *r, pid_t *pids, uint64_t t0)
{
    uint32_t running = 0;
    for (uint32_t k = 0; k < r->shards; k++) {
        if (pids[k] <= 0)
            continue;
        sample_rss(pids[k], &r->res[k]);
        int st;
        struct rusage ru;
        pid_t got = wait4(pids[k], &st, WNOHANG, &ru);
        if (got == 0) {
            running++;
            continue;
        }
        /* The exact peak, when this process was small at the fork. */
        if (got > 0 && (uint64_t)ru.ru_maxrss > r->res[k].peak_rss_kb)
            r->res[k].peak_rss_kb = (uint64_t)ru.ru_maxrss;
        r->res[k].seconds = tly_bench_seconds_since(t0);
        r->res[k].exit_code = got < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        pids[k] = 0;
    }
    return running;
}

static tly_err run_shards(bench *b, bench_run *r)
{
    char views_dir[TLY_PATH_BYTES_MAX + 8];
    /* Fits: the data path fitted log_dir (bench_setup). */
    if (tly_layout_views(b->d.data, views_dir, sizeof views_dir) == TLY_OK)
        tly_bench_rm_tree(views_dir);
    pid_t pids[TLY_SHARDS_MAX] = {0};
    tly_views *views[TLY_SHARDS_MAX] = {0};
    uint64_t t0 = tly_mono_ns();
    for (uint32_t k = 0; k < r->shards; k++)
        pids[k] = tly_bench_consumer_start(&b->d, k, r->shards, b->o.batch);
    struct timespec pause = {0, BENCH_READ_PAUSE_US * 1000L};
    /* Bounded by the consumers: each exits at the head of a finite log. */
    while (reap(r, pids, t0) > 0) {
        sample_read(b, r, views);
        nanosleep(&pause, NULL);
    }
    r->wall_s = tly_bench_seconds_since(t0);
    for (uint32_t k = 0; k < r->shards; k++)
        tly_views_close(views[k]);
    for (uint32_t k = 0; k < r->shards; k++) {
        if (r->res[k].exit_code != 0) {
            char log[TLY_BENCH_LOG_PATH_BYTES];
            tly_bench_consumer_log(&b->d, k, r->shards, log);
            tly_errorf(CMD, "consumer %u/%u failed (exit %d): see %s", k, r->shards,
                       r->res[k].exit_code, log);
            return TLY_IO;
        }
    }
    return TLY_OK;
}

/* --- growth --- */

/* What one shard of a growth run adds to its fold: its restart, and from
 * its stop line where its fold's time went (commits, read-backs). */
typedef struct growth_shard {
    double restart_s;
    uint64_t restart_rss_kb;
    uint64_t restart_anon_kb;
    uint64_t store_bytes;
    uint64_t commits, commit_ms, read_back, read_back_ms;
} growth_shard;

/* The end of a consumer's log that holds its stop line (what comes before
 * it is at most a few warnings). */
#define BENCH_LOG_TAIL_BYTES 65536

/* Reads shard k of n's stop line from its log (tly_bench_consumer_start):
 * "...; C commits in T ms; P partners read back in R ms)". TLY_CORRUPT
 * (printed) when the log holds none. */
static tly_err read_stop_line(const bench *b, uint32_t k, uint32_t n, growth_shard *g)
{
    char path[TLY_BENCH_LOG_PATH_BYTES];
    tly_bench_consumer_log(&b->d, k, n, path);
    char *text = calloc(1, BENCH_LOG_TAIL_BYTES + 1);
    FILE *f = text ? fopen(path, "r") : NULL;
    tly_err err = TLY_CORRUPT;
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > BENCH_LOG_TAIL_BYTES)
            (void)fseek(f, -BENCH_LOG_TAIL_BYTES, SEEK_END);
        else
            rewind(f);
        size_t len = fread(text, 1, BENCH_LOG_TAIL_BYTES, f);
        fclose(f);
        text[len] = '\0';
        const char *at = NULL; /* the log's last stop line */
        for (const char *p = text; (p = strstr(p, " stopped at checkpoint ")) != NULL; p++)
            at = p;
        at = at ? strchr(at, ';') : NULL;
        unsigned long long c, cms, rb, rbms;
        if (at && sscanf(at, "; %llu commits in %llu ms; %llu partners read back in %llu ms)", &c,
                         &cms, &rb, &rbms) == 4) {
            *g = (growth_shard){
                .commits = c, .commit_ms = cms, .read_back = rb, .read_back_ms = rbms};
            err = TLY_OK;
        }
    }
    free(text);
    if (err != TLY_OK)
        tly_errorf(CMD, "no stop line in %s", path);
    return err;
}

/* The minimal fold of b's log: read with the log's read API, decode, apply
 * to a fresh engine, store nothing. Events/s, 0 on failure (printed). */
static double fold_ceiling_loop(const bench *b)
{
    tly_log *log = NULL;
    tly_log_reader *rd = NULL;
    tly_engine *e = NULL;
    tly_event *ev = malloc(sizeof *ev);
    tly_err err = ev ? tly_log_open(b->d.log_dir, TLY_LOG_READ, &log) : TLY_NOMEM;
    if (err == TLY_OK)
        err = tly_engine_new(0, 1, &e);
    uint64_t n = 0, t0 = tly_mono_ns();
    if (err == TLY_OK)
        err = tly_log_reader_open(log, 1, &rd);
    tly_record rec;
    /* Bounded by the records of the reader's snapshot. */
    while (err == TLY_OK && (err = tly_log_reader_next(rd, &rec)) == TLY_OK) {
        err = tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, ev, NULL);
        if (err == TLY_OK)
            err = tly_engine_apply(e, &rec, ev);
        n++;
    }
    double s = tly_bench_seconds_since(t0);
    tly_log_reader_close(rd);
    tly_log_close(log);
    if (err != TLY_NOT_FOUND || n == 0) {
        tly_errorf(CMD, "the fold ceiling failed at record %llu: %s", (unsigned long long)n,
                   tly_strerror(err));
        return 0;
    }
    return (double)n / s;
}

/* The ceiling, run in a forked copy of this process: the engine it fills
 * (gigabytes at 10M events) never becomes part of this process, which
 * stays small, so that a consumer's ru_maxrss (which counts the copy of
 * this process it was forked as) is its own peak. */
static double fold_ceiling(const bench *b)
{
    int fds[2];
    double rate = 0;
    if (pipe(fds) != 0)
        return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        rate = fold_ceiling_loop(b);
        ssize_t w = write(fds[1], &rate, sizeof rate);
        _exit(w == (ssize_t)sizeof rate ? 0 : 1);
    }
    close(fds[1]);
    if (pid < 0 || read(fds[0], &rate, sizeof rate) != (ssize_t)sizeof rate)
        rate = 0;
    close(fds[0]);
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
    return rate;
}

/* Size of shard k of n's data.mdb, 0 when missing. */
static uint64_t store_bytes(const bench *b, uint32_t k, uint32_t n)
{
    char views[TLY_PATH_BYTES_MAX], shard[TLY_PATH_BYTES_MAX], file[TLY_PATH_BYTES_MAX];
    struct stat st;
    if (tly_layout_views(b->d.data, views, sizeof views) != TLY_OK ||
        tly_layout_shard(views, k, n, shard, sizeof shard) != TLY_OK ||
        tly_layout_join(shard, TLY_LAYOUT_LMDB_DATA, file, sizeof file) != TLY_OK ||
        stat(file, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* Starts shard k of n again on its folded store (checkpoint at the head,
 * nothing to fold) and waits for it: time to exit and peak RSS. */
static tly_err restart_shard(bench *b, uint32_t k, uint32_t n, growth_shard *g)
{
    bench_run r;
    memset(&r, 0, sizeof r);
    r.shards = n;
    pid_t pids[TLY_SHARDS_MAX] = {0};
    uint64_t t0 = tly_mono_ns();
    pids[k] = tly_bench_consumer_start(&b->d, k, n, b->o.batch);
    struct timespec pause = {0, BENCH_READ_PAUSE_US * 1000L};
    /* Bounded by the consumer: it exits at the head it starts at. */
    while (reap(&r, pids, t0) > 0)
        nanosleep(&pause, NULL);
    if (r.res[k].exit_code != 0) {
        char log[TLY_BENCH_LOG_PATH_BYTES];
        tly_bench_consumer_log(&b->d, k, n, log);
        tly_errorf(CMD, "restart of consumer %u/%u failed (exit %d): see %s", k, n,
                   r.res[k].exit_code, log);
        return TLY_IO;
    }
    g->restart_s = r.res[k].seconds;
    g->restart_rss_kb = r.res[k].peak_rss_kb;
    g->restart_anon_kb = r.res[k].peak_anon_kb;
    g->store_bytes = store_bytes(b, k, n);
    return TLY_OK;
}

static json_t *growth_run_json(const bench *b, const bench_run *r, const growth_shard *g)
{
    json_t *shards = json_array();
    double total = 0;
    for (uint32_t k = 0; k < r->shards; k++) {
        double rate = r->res[k].seconds > 0 ? (double)b->d.head / r->res[k].seconds : 0;
        total += rate;
        json_t *sh = json_pack("{s:I,s:f,s:I,s:I,s:I}", "shard", (json_int_t)k, "seconds",
                               r->res[k].seconds, "events_per_s", (json_int_t)rate, "peak_rss_kb",
                               (json_int_t)r->res[k].peak_rss_kb, "peak_anon_kb",
                               (json_int_t)r->res[k].peak_anon_kb);
        json_object_update_new(sh,
                               json_pack("{s:f,s:I,s:I,s:I}", "restart_s", g[k].restart_s,
                                         "restart_peak_rss_kb", (json_int_t)g[k].restart_rss_kb,
                                         "restart_peak_anon_kb", (json_int_t)g[k].restart_anon_kb,
                                         "store_bytes", (json_int_t)g[k].store_bytes));
        json_object_update_new(sh,
                               json_pack("{s:I,s:f,s:I,s:f}", "commits", (json_int_t)g[k].commits,
                                         "commit_s", (double)g[k].commit_ms / 1000.0,
                                         "read_back_partners", (json_int_t)g[k].read_back,
                                         "read_back_s", (double)g[k].read_back_ms / 1000.0));
        json_array_append_new(shards, sh);
    }
    return json_pack("{s:I,s:f,s:I,s:o}", "shards", (json_int_t)r->shards, "wall_s", r->wall_s,
                     "total_events_per_s", (json_int_t)total, "per_shard", shards);
}

/* One growth run: fold with n shards, then restart each. */
static tly_err growth_run(bench *b, uint32_t n, json_t *runs)
{
    bench_run *r = calloc(1, sizeof *r);
    growth_shard *g = calloc(TLY_SHARDS_MAX, sizeof *g);
    tly_err err = r && g ? TLY_OK : TLY_NOMEM;
    if (err == TLY_OK) {
        r->shards = n;
        err = run_shards(b, r); /* no partners noted: no query reads */
    }
    for (uint32_t k = 0; err == TLY_OK && k < n; k++)
        err = read_stop_line(b, k, n, &g[k]); /* before the restart's log replaces it */
    for (uint32_t k = 0; err == TLY_OK && k < n; k++)
        err = restart_shard(b, k, n, &g[k]);
    if (err == TLY_OK)
        json_array_append_new(runs, growth_run_json(b, r, g));
    free(g);
    free(r);
    return err;
}

/* One log size of --growth, in DATA/growth-EVENTS. */
static tly_err growth_size(const bench *top, uint64_t events, json_t *sizes)
{
    bench *b = calloc(1, sizeof *b);
    if (!b)
        return TLY_NOMEM;
    b->o = top->o;
    char dir[TLY_PATH_BYTES_MAX];
    uint64_t partners = events / BENCH_GROWTH_EVENTS_PER_PARTNER;
    b->d.gen_partners =
        (uint32_t)(partners < BENCH_GROWTH_PARTNERS_MIN ? BENCH_GROWTH_PARTNERS_MIN : partners);
    /* A log with a fixed population lives beside the default one: a
     * reused directory always holds the population asked for. */
    char suffix[32] = "";
    if (b->o.partners > 0) {
        b->d.gen_partners = b->o.partners;
        snprintf(suffix, sizeof suffix, "-partners-%u", b->o.partners);
    }
    int len = snprintf(dir, sizeof dir, "%s/growth-%llu%s", top->d.data, (unsigned long long)events,
                       suffix);
    tly_err err = len > 0 && (size_t)len < sizeof dir ? TLY_OK : TLY_USAGE;
    if (err == TLY_OK)
        err = tly_bench_data_setup(&b->d, CMD, dir);
    if (err == TLY_OK)
        err = tly_bench_data_log(&b->d, b->o.seed, events);
    double ceiling = err == TLY_OK ? fold_ceiling(b) : 0;
    err = err == TLY_OK && ceiling <= 0 ? TLY_IO : err;
    json_t *runs = json_array();
    uint32_t counts[2] = {1, b->o.shards};
    for (uint32_t i = 0; err == TLY_OK && i < (b->o.shards > 1 ? 2u : 1u); i++)
        err = growth_run(b, counts[i], runs);
    json_array_append_new(
        sizes, json_pack("{s:I,s:I,s:b,s:f,s:I,s:o}", "events", (json_int_t)b->d.head, "partners",
                         (json_int_t)b->d.gen_partners, "reused", !b->d.built, "build_s",
                         b->d.build_s, "ceiling_events_per_s", (json_int_t)ceiling, "runs", runs));
    tly_bench_data_free(&b->d);
    free(b);
    return err;
}

/* The sizes of --growth: those up to growth_max, or growth_max alone when
 * it is below the smallest. Returns how many. */
static uint32_t growth_plan(const bench_opts *o, uint64_t *sizes)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < BENCH_GROWTH_SIZES; i++)
        if (growth_sizes[i] <= o->growth_max)
            sizes[n++] = growth_sizes[i];
    if (n == 0)
        sizes[n++] = o->growth_max;
    return n;
}

/* --- reporting --- */

static json_t *run_json(const bench *b, bench_run *r)
{
    tly_bench_sort(r->lat_ns, r->samples);
    json_t *shards = json_array();
    double total = 0;
    for (uint32_t k = 0; k < r->shards; k++) {
        double rate = r->res[k].seconds > 0 ? (double)b->d.head / r->res[k].seconds : 0;
        total += rate;
        json_array_append_new(shards,
                              json_pack("{s:I,s:I,s:f,s:I}", "shard", (json_int_t)k, "records",
                                        (json_int_t)b->d.head, "seconds", r->res[k].seconds,
                                        "events_per_s", (json_int_t)rate));
    }
    json_t *q =
        json_pack("{s:I,s:I,s:f,s:f}", "samples", (json_int_t)r->samples, "found",
                  (json_int_t)r->found, "p50_us", tly_bench_quantile_us(r->lat_ns, r->samples, 500),
                  "p99_us", tly_bench_quantile_us(r->lat_ns, r->samples, 990));
    double log_rate = r->wall_s > 0 ? (double)b->d.head / r->wall_s : 0;
    return json_pack("{s:I,s:f,s:I,s:I,s:o,s:o}", "shards", (json_int_t)r->shards, "wall_s",
                     r->wall_s, "total_events_per_s", (json_int_t)total, "log_records_per_s",
                     (json_int_t)log_rate, "per_shard", shards, "query_read", q);
}

static void print_text(const json_t *doc)
{
    printf("log events=%lld reused=%s build_s=%.3f batch=%lld\n",
           (long long)json_integer_value(json_object_get(doc, "events")),
           json_is_true(json_object_get(doc, "reused")) ? "yes" : "no",
           json_real_value(json_object_get(doc, "build_s")),
           (long long)json_integer_value(json_object_get(doc, "batch")));
    size_t i;
    json_t *run;
    json_array_foreach(json_object_get(doc, "runs"), i, run)
    {
        long long n = (long long)json_integer_value(json_object_get(run, "shards"));
        size_t j;
        json_t *s;
        json_array_foreach(json_object_get(run, "per_shard"), j, s)
            printf("fold shards=%lld shard=%lld records=%lld s=%.3f events_per_s=%lld\n", n,
                   (long long)json_integer_value(json_object_get(s, "shard")),
                   (long long)json_integer_value(json_object_get(s, "records")),
                   json_real_value(json_object_get(s, "seconds")),
                   (long long)json_integer_value(json_object_get(s, "events_per_s")));
        printf("fold shards=%lld total events_per_s=%lld wall_s=%.3f log_records_per_s=%lld\n", n,
               (long long)json_integer_value(json_object_get(run, "total_events_per_s")),
               json_real_value(json_object_get(run, "wall_s")),
               (long long)json_integer_value(json_object_get(run, "log_records_per_s")));
        json_t *q = json_object_get(run, "query_read");
        printf("query_read shards=%lld samples=%lld found=%lld p50_us=%.1f p99_us=%.1f\n", n,
               (long long)json_integer_value(json_object_get(q, "samples")),
               (long long)json_integer_value(json_object_get(q, "found")),
               json_real_value(json_object_get(q, "p50_us")),
               json_real_value(json_object_get(q, "p99_us")));
    }
}

static long long jint(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static double jreal(const json_t *o, const char *key)
{
    return json_real_value(json_object_get(o, key));
}

/* A figure in kB, in MiB. */
static double mb(const json_t *o, const char *key)
{
    return (double)jint(o, key) / 1024.0;
}

/* The lines of one growth run's shards. */
static void print_growth_shards(long long events, const json_t *run)
{
    size_t j;
    json_t *s;
    json_array_foreach(json_object_get(run, "per_shard"), j, s)
        printf("growth events=%lld shards=%lld shard=%lld fold_s=%.3f events_per_s=%lld "
               "peak_rss_mb=%.1f peak_anon_mb=%.1f restart_s=%.3f restart_peak_rss_mb=%.1f "
               "restart_peak_anon_mb=%.1f store_mb=%.1f commits=%lld commit_s=%.3f "
               "read_back_partners=%lld read_back_s=%.3f\n",
               events, jint(run, "shards"), jint(s, "shard"), jreal(s, "seconds"),
               jint(s, "events_per_s"), mb(s, "peak_rss_kb"), mb(s, "peak_anon_kb"),
               jreal(s, "restart_s"), mb(s, "restart_peak_rss_kb"), mb(s, "restart_peak_anon_kb"),
               (double)jint(s, "store_bytes") / 1048576.0, jint(s, "commits"), jreal(s, "commit_s"),
               jint(s, "read_back_partners"), jreal(s, "read_back_s"));
}

static double max_d(double a, double b)
{
    return a > b ? a : b;
}

/* Over a run's shards: the slowest rate and the largest of the rest;
 * commit_pct: the share of a shard's fold time its commits and read-backs
 * took. */
typedef struct growth_worst {
    long long min_rate;
    double restart_s, rss_mb, anon_mb, restart_rss_mb, restart_anon_mb, store_mb, commit_pct;
} growth_worst;

static double percent(double part, double whole)
{
    return whole > 0 ? 100.0 * part / whole : 0.0;
}

static growth_worst worst_of(const json_t *run)
{
    growth_worst w = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j;
    json_t *s;
    json_array_foreach(json_object_get(run, "per_shard"), j, s)
    {
        long long rate = jint(s, "events_per_s");
        w.min_rate = j == 0 || rate < w.min_rate ? rate : w.min_rate;
        w.restart_s = max_d(w.restart_s, jreal(s, "restart_s"));
        w.rss_mb = max_d(w.rss_mb, mb(s, "peak_rss_kb"));
        w.anon_mb = max_d(w.anon_mb, mb(s, "peak_anon_kb"));
        w.restart_rss_mb = max_d(w.restart_rss_mb, mb(s, "restart_peak_rss_kb"));
        w.restart_anon_mb = max_d(w.restart_anon_mb, mb(s, "restart_peak_anon_kb"));
        w.store_mb = max_d(w.store_mb, (double)jint(s, "store_bytes") / 1048576.0);
        w.commit_pct = max_d(w.commit_pct, percent(jreal(s, "commit_s") + jreal(s, "read_back_s"),
                                                   jreal(s, "seconds")));
    }
    return w;
}

/* The slowest shard's rate of first_size's run with `shards` shards, 0
 * when it has none. */
static long long run_rate(const json_t *first_size, json_int_t shards)
{
    size_t j;
    json_t *run;
    json_array_foreach(json_object_get(first_size, "runs"), j, run)
    {
        if (jint(run, "shards") == shards)
            return worst_of(run).min_rate;
    }
    return 0;
}

/* A line per size and run, then a table of every size (per shard: the
 * slowest shard's rate, as a share of the ceiling and of the smallest
 * size's rate with as many shards, issue 9's "within 20 %"; the largest
 * restart time, peak RSS with its peak anonymous part in parentheses, and
 * store), then the ceiling's own rate at each size as a share of the
 * smallest size's: how much of the slowing is the fold's at all. */
static void print_growth(const json_t *doc)
{
    size_t i, j;
    json_t *size, *run;
    const json_t *first_size = json_array_get(json_object_get(doc, "growth"), 0);
    json_array_foreach(json_object_get(doc, "growth"), i, size)
    {
        long long events = jint(size, "events");
        printf("growth events=%lld partners=%lld reused=%s build_s=%.3f "
               "ceiling_events_per_s=%lld\n",
               events, jint(size, "partners"),
               json_is_true(json_object_get(size, "reused")) ? "yes" : "no", jreal(size, "build_s"),
               jint(size, "ceiling_events_per_s"));
        json_array_foreach(json_object_get(size, "runs"), j, run) print_growth_shards(events, run);
    }
    printf("%10s %6s %12s %12s %12s %7s %8s %8s %9s %14s %14s %9s\n", "events", "shards",
           "fold/s/shard", "fold/s total", "ceiling/s", "of ceil", "of first", "commit %",
           "restart s", "fold MB (anon)", "restart MB (anon)", "store MB");
    json_array_foreach(json_object_get(doc, "growth"), i, size)
    {
        double ceiling = (double)jint(size, "ceiling_events_per_s");
        json_array_foreach(json_object_get(size, "runs"), j, run)
        {
            growth_worst w = worst_of(run);
            double first = (double)run_rate(first_size, jint(run, "shards"));
            printf("%10lld %6lld %12lld %12lld %12.0f %6.0f%% %7.0f%% %7.0f%% %9.3f %7.0f (%4.0f) "
                   "%7.0f (%4.0f) %9.1f\n",
                   jint(size, "events"), jint(run, "shards"), w.min_rate,
                   jint(run, "total_events_per_s"), ceiling, percent((double)w.min_rate, ceiling),
                   percent((double)w.min_rate, first), w.commit_pct, w.restart_s, w.rss_mb,
                   w.anon_mb, w.restart_rss_mb, w.restart_anon_mb, w.store_mb);
        }
    }
    double ceiling0 = (double)jint(first_size, "ceiling_events_per_s");
    printf("the ceiling's own rate as a share of the first size's:");
    json_array_foreach(json_object_get(doc, "growth"), i, size)
        printf(" %lld events %.0f%%", jint(size, "events"),
               percent((double)jint(size, "ceiling_events_per_s"), ceiling0));
    printf("\n");
}

/* --- command line --- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally bench fold [--events N] [--shards N] [--data DIR] [--seed S]\n"
            "                        [--batch N] [--json]\n"
            "       tally bench fold --growth [--growth-max N] [--partners N] [--shards N]\n"
            "                        [--data DIR] [--seed S] [--batch N] [--json]\n"
            "\n"
            "Measures folding: builds a log of N generated events (or reuses DIR/log when\n"
            "--data names one that holds records), then times `tally consume\n"
            "--exit-at-head` folding it from scratch with 1 shard and with --shards shards\n"
            "in parallel, while sampling reads of partners' balances from the view stores.\n"
            "\n"
            "With --growth, for logs of 1M, 3M and 10M events (one partner per 100\n"
            "events, or --partners at every size; kept in DIR/growth-N, or\n"
            "DIR/growth-N-partners-P): the minimal scan + decode + fold of the log in\n"
            "this process (the ceiling), the fold rate with 1 shard and with --shards\n"
            "shards, the share of each shard's fold time that went to its commits and\n"
            "read-backs of partners (\"commit %%\"; the rest is folding the records), each\n"
            "shard's restart time with its checkpoint at the head, its peak RSS (VmHWM; in\n"
            "parentheses its anonymous part, without the mapped LMDB files) and its view\n"
            "store's size.\n"
            "\n"
            "  --events N   events to generate (default %u, max %u)\n"
            "  --shards N   shards of the parallel run (default 2, max %u)\n"
            "  --data DIR   keep the data here (default: a temp directory, removed after)\n"
            "  --seed S     generator seed (default 1)\n"
            "  --batch N    records per view transaction (default %u)\n"
            "  --json       one JSON object instead of key=value lines\n"
            "  --growth     measure how folding grows with the log (see above)\n"
            "  --growth-max N  largest log of --growth (default %llu; below %llu: that\n"
            "               size alone); implies --growth\n"
            "  --partners N as many partners in every log of --growth (1..%u), so that\n"
            "               the sizes differ in history alone; implies --growth\n",
            BENCH_EVENTS_DEFAULT, TLY_BENCH_EVENTS_MAX, TLY_SHARDS_MAX,
            TLY_CONSUME_BATCH_RECORDS_DEFAULT,
            (unsigned long long)growth_sizes[BENCH_GROWTH_SIZES - 1],
            (unsigned long long)growth_sizes[0], TLY_GEN_PARTNERS_MAX);
}

static int parse_num(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!tly_parse_u64(v, min, max, out))
        return tly_usagef(CMD, "%s wants %llu..%llu", name, (unsigned long long)min,
                          (unsigned long long)max);
    return TLY_EXIT_OK;
}

/* --events is a count here, not the events endpoint (bench fold talks to
 * no service): the common --events is not taken. */
enum { OPT_EVENTS = 1, OPT_GROWTH, OPT_GROWTH_MAX, OPT_PARTNERS, OPT_SEED, OPT_SHARDS, OPT_BATCH };

static const tly_opt fold_opts_table[] = {
    {"--events", OPT_EVENTS, true},         {"--growth", OPT_GROWTH, false},
    {"--growth-max", OPT_GROWTH_MAX, true}, {"--seed", OPT_SEED, true},
    {"--shards", OPT_SHARDS, true},         {"--batch", OPT_BATCH, true},
    {"--partners", OPT_PARTNERS, true},
};

static int fold_opt(void *ctx, int id, const char *v)
{
    bench_opts *o = ctx;
    uint64_t x = 0;
    int rc = TLY_EXIT_OK;
    o->events_given = o->events_given || id == OPT_EVENTS;
    o->growth = o->growth || id == OPT_GROWTH || id == OPT_GROWTH_MAX || id == OPT_PARTNERS;
    if (id == OPT_EVENTS)
        rc = parse_num("--events", v, 1, TLY_BENCH_EVENTS_MAX, &o->events);
    else if (id == OPT_GROWTH_MAX)
        rc = parse_num("--growth-max", v, 1, TLY_BENCH_EVENTS_MAX, &o->growth_max);
    else if (id == OPT_PARTNERS &&
             (rc = parse_num("--partners", v, 1, TLY_GEN_PARTNERS_MAX, &x)) == 0)
        o->partners = (uint32_t)x;
    else if (id == OPT_SEED)
        rc = parse_num("--seed", v, 0, UINT64_MAX, &o->seed);
    else if (id == OPT_SHARDS && (rc = parse_num("--shards", v, 1, TLY_SHARDS_MAX, &x)) == 0)
        o->shards = (uint32_t)x;
    else if (id == OPT_BATCH &&
             (rc = parse_num("--batch", v, 1, TLY_CONSUME_BATCH_RECORDS_MAX, &x)) == 0)
        o->batch = (uint32_t)x;
    else if (id == TLY_OPT_ARG)
        rc = tly_usagef(CMD, "unexpected argument '%s'", v);
    return rc;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(bench_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    tly_common_defaults(&o->common);
    o->events = BENCH_EVENTS_DEFAULT;
    o->seed = 1;
    o->shards = 2;
    o->batch = TLY_CONSUME_BATCH_RECORDS_DEFAULT;
    o->growth_max = growth_sizes[BENCH_GROWTH_SIZES - 1];
    const tly_cli_spec spec = {CMD,
                               TLY_CO_DATA | TLY_CO_JSON,
                               fold_opts_table,
                               sizeof fold_opts_table / sizeof fold_opts_table[0],
                               fold_opt,
                               o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc == TLY_CLI_HELP ? TLY_EXIT_OK : rc;
    o->data_given = (o->common.given & TLY_CO_DATA) != 0;
    if (o->growth && o->events_given)
        return tly_usagef(CMD, "--events and --growth exclude each other (--growth-max sets "
                               "the largest log)");
    return -1;
}

/* Runs 1 shard, then o.shards shards (when more than one), into doc. */
static tly_err bench_runs(bench *b, json_t *runs)
{
    uint32_t counts[2] = {1, b->o.shards};
    uint32_t nruns = b->o.shards > 1 ? 2 : 1;
    tly_err err = TLY_OK;
    for (uint32_t i = 0; i < nruns && err == TLY_OK; i++) {
        bench_run *r = calloc(1, sizeof *r);
        uint64_t *lat = malloc(sizeof(uint64_t) * TLY_BENCH_LATENCY_SAMPLES_MAX);
        if (!r || !lat)
            err = TLY_NOMEM;
        if (err == TLY_OK) {
            r->shards = counts[i];
            r->lat_ns = lat;
            err = run_shards(b, r);
        }
        if (err == TLY_OK)
            json_array_append_new(runs, run_json(b, r));
        free(lat);
        free(r);
    }
    return err;
}

/* The default run: one log, 1 shard and o.shards shards. */
static tly_err bench_default(bench *b, json_t **doc)
{
    tly_err err = tly_bench_data_log(&b->d, b->o.seed, b->o.events);
    if (err == TLY_OK)
        err = tly_bench_data_partners(&b->d);
    json_t *runs = json_array();
    if (err == TLY_OK)
        err = bench_runs(b, runs);
    *doc =
        json_pack("{s:I,s:b,s:f,s:I,s:o}", "events", (json_int_t)b->d.head, "reused", !b->d.built,
                  "build_s", b->d.build_s, "batch", (json_int_t)b->o.batch, "runs", runs);
    return err;
}

/* --growth: every size of the plan, in order. */
static tly_err bench_growth(bench *b, json_t **doc)
{
    uint64_t sizes[BENCH_GROWTH_SIZES];
    uint32_t n = growth_plan(&b->o, sizes);
    json_t *list = json_array();
    tly_err err = TLY_OK;
    for (uint32_t i = 0; i < n && err == TLY_OK; i++)
        err = growth_size(b, sizes[i], list);
    *doc = json_pack("{s:I,s:I,s:o}", "shards", (json_int_t)b->o.shards, "batch",
                     (json_int_t)b->o.batch, "growth", list);
    return err;
}

int tly_cmd_bench_fold(int argc, char **argv)
{
    bench *b = calloc(1, sizeof *b);
    if (!b)
        return TLY_EXIT_FAIL;
    int rc = parse_args(&b->o, argc, argv);
    if (rc >= 0) {
        free(b);
        return rc;
    }
    b->d.rng = b->o.seed ^ UINT64_C(0x5eed);
    json_t *doc = NULL;
    tly_err err = tly_bench_data_setup(&b->d, CMD, b->o.data_given ? b->o.common.data : NULL);
    if (err == TLY_OK)
        err = b->o.growth ? bench_growth(b, &doc) : bench_default(b, &doc);
    if (err == TLY_OK && b->o.common.json) {
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else if (err == TLY_OK) {
        if (b->o.growth)
            print_growth(doc);
        else
            print_text(doc);
    }
    json_decref(doc);
    tly_bench_data_free(&b->d);
    free(b);
    return err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}
