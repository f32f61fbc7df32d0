/*
 * bench_data.c — the data directory, log, partners and consumer processes
 * of the consumer-side benches; see bench_data.h.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "bench_data.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tly_cli.h"
#include "tly_event.h"
#include "tly_foldgen.h"
#include "tly_layout.h"
#include "tly_log.h"
#include "tly_os.h"

double tly_bench_seconds_since(uint64_t t0_ns)
{
    return (double)(tly_mono_ns() - t0_ns) / 1e9;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tly_bench_rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

tly_err tly_bench_data_setup(tly_bench_data *d, const char *cmd, const char *data)
{
    d->cmd = cmd;
    ssize_t len = readlink("/proc/self/exe", d->exe, sizeof d->exe - 1);
    if (len <= 0) {
        tly_errorf(cmd, "cannot find the tally binary: %s", strerror(errno));
        return TLY_IO;
    }
    d->exe[len] = '\0';
    d->data_given = data != NULL;
    if (!data) {
        const char *base = getenv("TMPDIR");
        snprintf(d->tmp, sizeof d->tmp, "%s/tally-bench-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(d->tmp)) {
            tly_errorf(cmd, "cannot create a temp directory: %s", strerror(errno));
            return TLY_IO;
        }
        data = d->tmp;
    } else if (mkdir(data, TLY_DIR_MODE) != 0 && errno != EEXIST) {
        tly_errorf(cmd, "cannot create %s: %s", data, strerror(errno));
        return TLY_IO;
    }
    d->data = data;
    if (tly_layout_log(data, d->log_dir, sizeof d->log_dir) != TLY_OK) {
        tly_errorf(cmd, "data directory path too long");
        return TLY_USAGE;
    }
    return TLY_OK;
}

tly_err tly_bench_data_log(tly_bench_data *d, uint64_t seed, uint64_t events)
{
    tly_log *log = NULL;
    uint8_t hash[TLY_HASH_BYTES];
    tly_err err = tly_log_open(d->log_dir, TLY_LOG_READ, &log);
    if (err == TLY_OK)
        err = tly_log_head(log, &d->head, hash);
    tly_log_close(log);
    if (err == TLY_OK && d->head > 0)
        return TLY_OK; /* reuse */
    uint64_t t0 = tly_mono_ns();
    err = tly_rtgen_build_log_partners(d->log_dir, seed, events, d->gen_partners);
    if (err != TLY_OK) {
        tly_errorf(d->cmd, "cannot build the log in %s: %s", d->log_dir, tly_strerror(err));
        return err;
    }
    d->build_s = tly_bench_seconds_since(t0);
    d->built = true;
    d->head = events;
    return TLY_OK;
}

/* Remembers the partner of an enrollment event (the ids the query reads
 * ask for), up to TLY_BENCH_PARTNERS_MAX. */
static tly_err note_partner(tly_bench_data *d, const tly_record *rec, tly_event *ev)
{
    if (tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, ev, NULL) != TLY_OK ||
        ev->type != TLY_EV_PARTNER || d->partner_count >= TLY_BENCH_PARTNERS_MAX)
        return TLY_OK;
    if (!d->partners && !(d->partners = calloc(TLY_BENCH_PARTNERS_MAX, sizeof *d->partners)))
        return TLY_NOMEM;
    d->partners[d->partner_count] = strndup(ev->partner.ptr, ev->partner.len);
    if (!d->partners[d->partner_count])
        return TLY_NOMEM;
    d->partner_count++;
    return TLY_OK;
}

tly_err tly_bench_data_partners(tly_bench_data *d)
{
    tly_log *log = NULL;
    tly_log_reader *rd = NULL;
    tly_event *ev = malloc(sizeof *ev);
    tly_err err = ev ? tly_log_open(d->log_dir, TLY_LOG_READ, &log) : TLY_NOMEM;
    if (err == TLY_OK)
        err = tly_log_reader_open(log, 1, &rd);
    tly_record rec;
    /* Bounded by the records of the log snapshot. */
    while (err == TLY_OK && (err = tly_log_reader_next(rd, &rec)) == TLY_OK)
        err = note_partner(d, &rec, ev);
    if (err == TLY_NOT_FOUND)
        err = TLY_OK;
    tly_log_reader_close(rd);
    tly_log_close(log);
    free(ev);
    if (err != TLY_OK)
        tly_errorf(d->cmd, "cannot read the log %s: %s", d->log_dir, tly_strerror(err));
    return err;
}

void tly_bench_data_free(tly_bench_data *d)
{
    if (!d->data_given && d->data == d->tmp)
        tly_bench_rm_tree(d->tmp);
    for (uint32_t i = 0; i < d->partner_count; i++)
        free(d->partners[i]);
    free(d->partners);
    d->partners = NULL;
    d->partner_count = 0;
}

void tly_bench_consumer_log(const tly_bench_data *d, uint32_t k, uint32_t n,
                            char buf[TLY_BENCH_LOG_PATH_BYTES])
{
    snprintf(buf, TLY_BENCH_LOG_PATH_BYTES, "%s/bench-consume-%u-of-%u.log", d->data, k, n);
}

pid_t tly_bench_consumer_start(const tly_bench_data *d, uint32_t k, uint32_t n, uint32_t batch)
{
    char shard[32], batch_s[16], logpath[TLY_BENCH_LOG_PATH_BYTES];
    snprintf(shard, sizeof shard, "%u/%u", k, n);
    snprintf(batch_s, sizeof batch_s, "%u", batch);
    tly_bench_consumer_log(d, k, n, logpath);
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, TLY_FILE_MODE);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    char *argv[] = {"tally",         "consume",        "--shard", shard,   "--data",
                    (char *)d->data, "--exit-at-head", "--batch", batch_s, NULL};
    execv(d->exe, argv);
    _exit(127);
}

uint64_t tly_bench_rnd(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void tly_bench_sort(uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof ns[0], cmp_u64);
}

double tly_bench_quantile_us(const uint64_t *ns, size_t n, unsigned per_mille)
{
    if (n == 0)
        return 0;
    size_t i = (n * per_mille + 999) / 1000;
    i = i == 0 ? 0 : i - 1;
    return (double)ns[i] / 1000.0;
}
