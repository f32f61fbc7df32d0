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
 * 3. Under that load this process reads "V/b/<partner>" documents from the
 *    shards' view stores, read-only, as the query service does, and reports
 *    the read latency percentiles.
 *
 * Output: one line per measurement, "what key=value ...", so fields can be
 * added without breaking readers; --json prints one object instead.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "bench_data.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_engine.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_views.h"

#define CMD "bench fold"

/* Default log size: big enough that process start-up is noise. */
#define BENCH_EVENTS_DEFAULT 1000000u
/* Pause between two query reads: the reader samples latency without taking
 * a core away from the folding processes it measures. */
#define BENCH_READ_PAUSE_US 1000

typedef struct bench_opts {
    tly_common_opts common;
    bool data_given;
    uint64_t events;
    uint64_t seed;
    uint32_t shards;
    uint32_t batch;
} bench_opts;

typedef struct shard_result {
    double seconds;
    int exit_code;
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
    char key[8 + TLY_NAME_BYTES_MAX];
    if (b->d.partner_count == 0)
        return;
    const char *name = b->d.partners[tly_bench_rnd(&b->d.rng) % b->d.partner_count];
    uint32_t k = tly_engine_shard_of(name, strlen(name), r->shards);
    if (!views[k] && tly_views_open(b->d.data, k, r->shards, TLY_VIEWS_READ, &views[k]) != TLY_OK)
        return; /* the consumer has not created its store yet */
    int klen = snprintf(key, sizeof key, "V/b/%s", name);
    char *val = NULL;
    size_t len;
    uint64_t t0 = tly_mono_ns();
    tly_err err = tly_views_get(views[k], key, (size_t)klen, &val, &len, NULL);
    uint64_t dt = tly_mono_ns() - t0;
    free(val);
    if (r->samples < TLY_BENCH_LATENCY_SAMPLES_MAX) {
        r->lat_ns[r->samples++] = dt;
        r->found += err == TLY_OK;
    }
}

/* Reaps exited consumers; returns how many are still running. */
static uint32_t reap(bench_run *r, pid_t *pids, uint64_t t0)
{
    uint32_t running = 0;
    for (uint32_t k = 0; k < r->shards; k++) {
        if (pids[k] <= 0)
            continue;
        int st;
        pid_t got = waitpid(pids[k], &st, WNOHANG);
        if (got == 0) {
            running++;
            continue;
        }
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
            tly_errorf(CMD, "consumer %u/%u failed (exit %d): see %s/bench-consume-%u-of-%u.log", k,
                       r->shards, r->res[k].exit_code, b->d.data, k, r->shards);
            return TLY_IO;
        }
    }
    return TLY_OK;
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

/* --- command line --- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally bench fold [--events N] [--shards N] [--data DIR] [--seed S]\n"
            "                        [--batch N] [--json]\n"
            "\n"
            "Measures folding: builds a log of N generated events (or reuses DIR/log when\n"
            "--data names one that holds records), then times `tally consume\n"
            "--exit-at-head` folding it from scratch with 1 shard and with --shards shards\n"
            "in parallel, while sampling query reads of V/b/<partner> from the view stores.\n"
            "\n"
            "  --events N   events to generate (default %u, max %u)\n"
            "  --shards N   shards of the parallel run (default 2, max %u)\n"
            "  --data DIR   keep the data here (default: a temp directory, removed after)\n"
            "  --seed S     generator seed (default 1)\n"
            "  --batch N    records per view transaction (default %u)\n"
            "  --json       one JSON object instead of key=value lines\n",
            BENCH_EVENTS_DEFAULT, TLY_BENCH_EVENTS_MAX, TLY_SHARDS_MAX,
            TLY_CONSUME_BATCH_RECORDS_DEFAULT);
}

static int parse_num(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!tly_parse_u64(v, min, max, out))
        return tly_usagef(CMD, "%s wants %llu..%llu", name, (unsigned long long)min,
                          (unsigned long long)max);
    return -1;
}

/* Returns -1 to go on, else the exit code. */
static int parse_one(bench_opts *o, int argc, char **argv, int *i)
{
    const char *v;
    uint64_t x = 0;
    int rc;
    /* --events is a count here, not the events endpoint of the common flags
     * (bench fold talks to no service), so it is matched first. */
    if ((rc = tly_opt_value("--events", argc, argv, i, &v)) != 0)
        return rc < 0 ? TLY_EXIT_USAGE
                      : parse_num("--events", v, 1, TLY_BENCH_EVENTS_MAX, &o->events);
    if (strncmp(argv[*i], "--data", 6) == 0)
        o->data_given = true;
    if ((rc = tly_common_flag(&o->common, argc, argv, i)) != 0)
        return rc < 0 ? TLY_EXIT_USAGE : -1;
    if ((rc = tly_opt_value("--seed", argc, argv, i, &v)) != 0)
        return rc < 0 ? TLY_EXIT_USAGE : parse_num("--seed", v, 0, UINT64_MAX, &o->seed);
    if ((rc = tly_opt_value("--shards", argc, argv, i, &v)) != 0) {
        rc = rc < 0 ? TLY_EXIT_USAGE : parse_num("--shards", v, 1, TLY_SHARDS_MAX, &x);
        o->shards = (uint32_t)x;
        return rc;
    }
    if ((rc = tly_opt_value("--batch", argc, argv, i, &v)) != 0) {
        rc =
            rc < 0 ? TLY_EXIT_USAGE : parse_num("--batch", v, 1, TLY_CONSUME_BATCH_RECORDS_MAX, &x);
        o->batch = (uint32_t)x;
        return rc;
    }
    if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) {
        usage(stdout);
        return TLY_EXIT_OK;
    }
    return tly_usagef(CMD, "unknown option '%s'", argv[*i]);
}

static int parse_args(bench_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    tly_common_defaults(&o->common);
    o->events = BENCH_EVENTS_DEFAULT;
    o->seed = 1;
    o->shards = 2;
    o->batch = TLY_CONSUME_BATCH_RECORDS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        int rc = parse_one(o, argc, argv, &i);
        if (rc >= 0)
            return rc;
    }
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
    tly_err err = tly_bench_data_setup(&b->d, CMD, b->o.data_given ? b->o.common.data : NULL);
    if (err == TLY_OK)
        err = tly_bench_data_log(&b->d, b->o.seed, b->o.events);
    if (err == TLY_OK)
        err = tly_bench_data_partners(&b->d);
    json_t *runs = json_array();
    if (err == TLY_OK)
        err = bench_runs(b, runs);
    json_t *doc =
        json_pack("{s:I,s:b,s:f,s:I,s:o}", "events", (json_int_t)b->d.head, "reused", !b->d.built,
                  "build_s", b->d.build_s, "batch", (json_int_t)b->o.batch, "runs", runs);
    if (err == TLY_OK && b->o.common.json) {
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else if (err == TLY_OK) {
        print_text(doc);
    }
    json_decref(doc);
    tly_bench_data_free(&b->d);
    free(b);
    return err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}
