/*
 * audit_replay.c — `tally audit replay`: folds the log from seq 1 into fresh
 * view stores with the consumer runtime's own pieces (tly_engine for the
 * fold, tly_views for the stores and checkpoints), so a replay is exactly
 * what the consumers would have written.
 *
 * The shards are split over up to one thread per CPU. Each thread reads
 * the whole log once with its own reader (the log handle is shared: its
 * read transactions are not tied to threads) and applies every record to
 * each of its shards' engines, as a consumer does: an engine sees every
 * record and keeps what its shard owns. Engines share nothing, so the
 * threads need no locks. A thread commits its shards every
 * TLY_AUDIT_REPLAY_BATCH_RECORDS records, or sooner when one of its engines
 * holds TLY_CONSUME_DIRTY_ENTRIES_MAX changes or the process reaches the
 * consumers' memory bound for as many shards (tly_helper_bound: a replay on
 * one shard stays within what one consumer may use).
 *
 * tly_views_open places a store in DATA/views/K-of-N, while a replay's
 * --out is itself a views directory (OUT/K-of-N, what `--views OUT` reads).
 * The stores are therefore built in OUT/views/K-of-N and renamed into place
 * once closed; a directory rename is atomic, and an interrupted replay
 * leaves only OUT/views behind, never a half-built OUT/K-of-N.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_int.h"
#include "tly_ahead.h"
#include "tly_audit.h"
#include "tly_engine.h"
#include "tly_event.h"
#include "tly_helper.h"
#include "tly_layout.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_sale_source.h"
#include "tly_views.h"

typedef struct replay_shard {
    tly_views *views;
    tly_engine *engine;
    uint64_t stop; /* last seq to fold; UINT64_MAX for none */
    tly_log *log;  /* the log replayed, which the engine reads sales from */
    tly_sale_source sales;
} replay_shard;

typedef struct replay_run {
    const tly_audit_replay_opts *o;
    replay_shard shard[TLY_SHARDS_MAX];
    uint32_t opened;
    uint32_t read_split_min; /* tly_helper_split_min */
    /* Records between two commits: TLY_AUDIT_REPLAY_BATCH_RECORDS, or
     * fewer from $TALLY_AUDIT_REPLAY_BATCH_RECORDS (tests commit often, so
     * that a small log's replay reads partners back between batches). */
    uint32_t batch;
    char *msg;
    size_t cap;
} replay_run;

static bool path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Stops the walk at the first shard store (tly_layout_each_shard). */
static bool store_found(void *found, uint32_t k, uint32_t n)
{
    (void)k;
    (void)n;
    *(bool *)found = true;
    return false;
}

/* True when dir holds any shard store K-of-N (of any N): one views
 * directory holds one set, or readers could not tell which to use.
 * *entries is how many entries it holds besides "." and "..", counted up
 * to TLY_AUDIT_VIEWS_DIRENTS_MAX + 1 (more are not read). */
static bool holds_stores(const char *dir, uint32_t *entries)
{
    bool found = false;
    *entries = 0;
    (void)tly_layout_each_shard(dir, TLY_AUDIT_VIEWS_DIRENTS_MAX, store_found, &found, entries);
    return found;
}

/* Refuses an --out that already holds views or the staging directory. */
static tly_err check_out(replay_run *r)
{
    char path[TLY_PATH_BYTES_MAX + 64];
    const char *out = r->o->out_dir;
    if (tly_layout_views(out, path, sizeof path) == TLY_OK && path_exists(path)) {
        tly_audit_msgf(r->msg, r->cap, "%s exists (an interrupted replay?): remove it", path);
        return TLY_USAGE;
    }
    uint32_t entries;
    if (holds_stores(out, &entries)) {
        tly_audit_msgf(r->msg, r->cap, "%s already holds views; choose an empty --out", out);
        return TLY_USAGE;
    }
    /* The replay's stores join them: past the limit no audit would read
     * the result (audit_views.c), so it is refused before any work. */
    if (entries + r->o->shard_count > TLY_AUDIT_VIEWS_DIRENTS_MAX) {
        tly_audit_msgf(r->msg, r->cap,
                       "%s holds %u entries: with the replay's %u shard store%s, more than the "
                       "%u a views directory holds; choose an empty --out",
                       out, entries, r->o->shard_count, r->o->shard_count == 1 ? "" : "s",
                       TLY_AUDIT_VIEWS_DIRENTS_MAX);
        return TLY_USAGE;
    }
    /* --out must fit a TLY_PATH_BYTES_MAX buffer with its NUL. */
    if (strlen(out) >= TLY_PATH_BYTES_MAX || tly_mkdirs(out, NULL) != TLY_OK) {
        tly_audit_msgf(r->msg, r->cap, "cannot create %s", out);
        return TLY_STORAGE;
    }
    return TLY_OK;
}

/* Stop seq of shard k: the smallest of --to, the shard's own stop. */
static uint64_t shard_stop(const tly_audit_replay_opts *o, uint32_t k)
{
    uint64_t stop = o->to_seq ? o->to_seq : UINT64_MAX;
    if (o->shard_to_seq && o->shard_to_seq[k] < stop)
        stop = o->shard_to_seq[k];
    return stop;
}

/* The engine's sale source: the sale (source, id) as the log holds it. */
static tly_err replay_sale(void *ctx, tly_str source, tly_str id, bool *found, tly_engine_sale *out)
{
    replay_shard *s = ctx;
    return tly_sale_source_find(&s->sales, s->log, source, id, found, out);
}

/* Shard k's engine, new or again, from its store as its last commit left
 * it. It keeps its state in the store, as a consumer's does, and bounds its
 * memory the same way: a commit drops the partners it writes beyond the
 * cache, and they are read back before the next batch (read_back_all).
 * Replaying the 10M-event log of `bench fold --growth` on one shard, its
 * anonymous memory peaked at 530-533 MB without and 272-274 MB with.
 * Like a consumer beside its log, it stores its own partners' sales only
 * and reads the others' from the log (tly_sale_source.h), so the store is
 * laid out as a consumer's. Registering every sale instead made each of N
 * shards write all of them, under random keys: 1M events replayed on one
 * shard in 2.2-2.5 s against the consumer's 2.0-2.3 s. */
static tly_err load_engine(replay_shard *s, uint32_t k, uint32_t n)
{
    tly_engine_free(s->engine);
    s->engine = NULL;
    tly_err err = tly_engine_new(k, n, &s->engine);
    if (err != TLY_OK)
        return err;
    tly_engine_set_flush_drops(s->engine, true);
    tly_engine_set_read_back(s->engine, TLY_CONSUME_READ_BACK_PARTNERS_MAX);
    err = tly_views_load(s->views, s->engine);
    if (err == TLY_OK && tly_views_sales(s->views) == TLY_VIEWS_SALES_UNSET)
        err = tly_views_set_sales(s->views, TLY_VIEWS_SALES_OWN);
    if (err == TLY_OK && tly_views_sales(s->views) == TLY_VIEWS_SALES_OWN)
        tly_engine_set_sale_source(s->engine, replay_sale, s);
    return err;
}

static tly_err open_shards(replay_run *r, tly_log *log)
{
    uint32_t n = r->o->shard_count;
    for (uint32_t k = 0; k < n; k++) {
        replay_shard *s = &r->shard[k];
        s->log = log;
        tly_err err = tly_views_open(r->o->out_dir, k, n, TLY_VIEWS_WRITE, &s->views);
        if (err == TLY_OK)
            err = load_engine(s, k, n);
        r->opened = k + 1;
        if (err != TLY_OK) {
            tly_audit_msgf(r->msg, r->cap, "cannot create the view store %u-of-%u: %s", k, n,
                           tly_strerror(err));
            return err;
        }
        s->stop = shard_stop(r->o, k);
    }
    return TLY_OK;
}

/* One thread of a replay: it reads the whole log with its own reader and
 * folds it into the shards first .. first+count-1. */
typedef struct replay_worker {
    replay_run *r;
    tly_log *log;
    uint32_t first, count;
    uint64_t stop_max;              /* the largest stop of its shards */
    tly_audit_progress_fn progress; /* set for one worker only */
    void *ctx;
    tly_err err;
    char msg[TLY_AUDIT_ERROR_BYTES];
    tly_event what_if;    /* the replacement rules, with the record's at and id */
    bool what_if_seen;    /* the program's first event has been replaced */
    uint64_t what_if_seq; /* ... at this seq */
    bool reload;          /* a commit failed after its flush dropped partners */
    uint32_t reloads;     /* how many times, in all */
    uint32_t pending;     /* records folded since the last commit */
    uint32_t commits;     /* commits of its shards, in all (commit_all) */
    uint32_t threads;     /* workers of the replay, each committing on its own */
    tly_helper_bound bound;
} replay_worker;

/* The partners the last commit of each shard dropped, read back in key
 * order before the next batch folds, as a consumer does (tly_helper_read_back). */
static void read_back_all(replay_worker *w)
{
    for (uint32_t k = w->first; k < w->first + w->count; k++)
        (void)tly_helper_read_back(w->r->shard[k].engine, w->r->read_split_min);
}

/* The store pages the engines read since the last release stop counting
 * in the replay's memory, as a consumer's do (tly_views_release, every
 * TLY_CONSUME_VIEWS_RELEASE_RECORDS records). */
static void release_all(replay_worker *w)
{
    for (uint32_t k = w->first; k < w->first + w->count; k++)
        tly_views_release(w->r->shard[k].views);
}

/* Commits the worker's shards: changes and checkpoint. The next commit is
 * expected to add to the memory what the largest of these added. */
static tly_err commit_all(replay_worker *w)
{
    uint64_t rise = 0;
    w->pending = 0;
    w->commits++;
    for (uint32_t k = w->first; k < w->first + w->count; k++) {
        replay_shard *s = &w->r->shard[k];
        tly_err err = tly_views_commit(s->views, s->engine);
        uint64_t added = tly_views_stats_of(s->views).last_anon_rise;
        rise = err == TLY_OK && added > rise ? added : rise;
        if (err != TLY_OK && !tly_engine_intact(s->engine)) {
            /* its flush dropped partners and then met the end of the map,
             * which has grown since: fold again from its last commit */
            w->reload = true;
            w->reloads++;
            err = load_engine(s, k, w->r->o->shard_count);
        }
        if (err != TLY_OK) {
            tly_audit_msgf(w->msg, sizeof w->msg, "commit of shard %u failed: %s", k,
                           tly_strerror(err));
            return err;
        }
    }
    tly_helper_bound_committed(&w->bound, rise);
    return TLY_OK;
}

/* The event to fold for the record just decoded into w->ev: itself, the
 * what-if rules in place of the first program event they replace, or NULL
 * for a later program event of that program (skipped). */
static const tly_event *what_if_event(replay_worker *w, uint64_t seq, const tly_event *ev)
{
    const tly_event *rules = w->r->o->what_if;
    if (!rules || ev->type != TLY_EV_PROGRAM || ev->program.len != rules->program.len ||
        memcmp(ev->program.ptr, rules->program.ptr, rules->program.len) != 0)
        return ev;
    if (w->what_if_seen)
        return NULL;
    w->what_if_seen = true;
    w->what_if_seq = seq;
    w->what_if = *rules;
    w->what_if.id = ev->id;
    w->what_if.at_ms = ev->at_ms;
    return &w->what_if;
}

/* Folds one record (decoded ahead) into each of the worker's shards that
 * has not reached its stop. */
static tly_err fold_one(replay_worker *w, const tly_ahead_item *it)
{
    const tly_record *rec = &it->rec;
    if (it->err != TLY_OK) {
        tly_audit_msgf(w->msg, sizeof w->msg,
                       "seq %llu: event invalid (%s): run 'tally audit verify'",
                       (unsigned long long)rec->seq, it->fe.message);
        return TLY_CORRUPT;
    }
    const tly_event *ev = what_if_event(w, rec->seq, &it->ev);
    for (uint32_t k = w->first; k < w->first + w->count; k++) {
        replay_shard *s = &w->r->shard[k];
        if (rec->seq > s->stop || rec->seq <= tly_engine_seq(s->engine))
            continue; /* past its stop, or folded before a reload (fold_log) */
        if (!ev) {
            /* A later version of the replaced program: skipped, the seq moves on. */
            tly_engine_set_seq(s->engine, rec->seq);
            continue;
        }
        tly_err err = tly_engine_apply(s->engine, rec, ev);
        if (err != TLY_OK) {
            tly_audit_msgf(w->msg, sizeof w->msg, "seq %llu: the engine of shard %u failed: %s",
                           (unsigned long long)rec->seq, k, tly_strerror(err));
            return err;
        }
    }
    return TLY_OK;
}

/* True when rec is past every stop of the worker: its fold is over. */
static bool past_end(const replay_worker *w, const tly_record *rec)
{
    const tly_audit_replay_opts *o = w->r->o;
    if (o->has_until && rec->recorded_ms > o->until_ms)
        return true; /* recorded_ms never decreases [D12]: nothing later counts */
    return rec->seq > w->stop_max;
}

/* True when the worker's batch ends: its records, or, checked with the
 * stores' release, the process's memory bound, or one of its engines
 * holding so many changes that they are committed early, bounding memory
 * as a consumer does. */
static bool batch_ends(const replay_worker *w, bool memory_checked)
{
    if (w->pending >= w->r->batch)
        return true;
    if (memory_checked && tly_helper_bound_reached(&w->bound, w->threads))
        return true;
    for (uint32_t k = w->first; k < w->first + w->count; k++)
        if (tly_engine_dirty(w->r->shard[k].engine) >= TLY_CONSUME_DIRTY_ENTRIES_MAX)
            return true;
    return false;
}

/* The seq a pass starts at: the first that one of the worker's shards has
 * not folded. */
static uint64_t resume_from(const replay_worker *w)
{
    uint64_t from = UINT64_MAX;
    for (uint32_t k = w->first; k < w->first + w->count; k++) {
        uint64_t seq = tly_engine_seq(w->r->shard[k].engine);
        if (seq < from)
            from = seq;
    }
    return from + 1;
}

/* Reads the log from seq from and folds it, committing in batches, until
 * its end (total), an error, or a commit that needs its shard loaded again
 * (w->reload). Records are read and decoded a little ahead on a second
 * thread; a log of more than 2^32 - 1 records would be read in that many
 * at most. */
static tly_err fold_pass(replay_worker *w, uint64_t from, uint64_t total, uint64_t *done)
{
    tly_ahead *ahead = NULL;
    tly_err err = TLY_OK;
    uint64_t left = from <= total ? total - from + 1 : 0;
    if (left > 0)
        err =
            tly_ahead_start(w->log, from, left > UINT32_MAX ? UINT32_MAX : (uint32_t)left, &ahead);
    const tly_ahead_item *it;
    while (err == TLY_OK && ahead && (err = tly_ahead_next(ahead, &it)) == TLY_OK) {
        if (past_end(w, &it->rec))
            break;
        for (uint32_t k = w->first; k < w->first + w->count; k++)
            tly_ahead_prefetch(ahead, w->r->shard[k].engine); /* as a consumer does */
        err = fold_one(w, it);
        if (err != TLY_OK)
            break;
        ++*done;
        bool release = ++w->pending % TLY_CONSUME_VIEWS_RELEASE_RECORDS == 0;
        if (release)
            release_all(w);
        if (batch_ends(w, release)) {
            err = commit_all(w);
            if (w->reload)
                break;
            read_back_all(w);
        }
        if (err == TLY_OK && *done % TLY_AUDIT_PROGRESS_RECORDS == 0 && w->progress)
            w->progress(w->ctx, *done, total);
    }
    if (err == TLY_CORRUPT && !w->msg[0])
        tly_audit_msgf(w->msg, sizeof w->msg, "seq %llu: record does not decode",
                       (unsigned long long)*done + 1);
    tly_ahead_stop(ahead);
    if (!w->reload && (err == TLY_NOT_FOUND || err == TLY_OK))
        err = commit_all(w);
    return err;
}

/* Reads the log and folds it, committing in batches. A commit whose flush
 * had dropped partners cannot be redone when it meets the end of the map
 * (tly_engine_intact): its shard is loaded again from its last commit, the
 * map having grown, and the log is read again from there, as a consumer
 * does; each time the map has doubled, so it happens a few times at most. */
static tly_err fold_log(replay_worker *w)
{
    uint64_t head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    tly_err err = tly_log_head(w->log, &head, hash);
    uint64_t total = head < w->stop_max ? head : w->stop_max, done = 0;
    for (unsigned pass = 0; err == TLY_OK; pass++) {
        if (pass > TLY_VIEWS_GROW_RETRIES_MAX) {
            tly_audit_msgf(w->msg, sizeof w->msg, "the view stores' map kept filling up");
            return TLY_STORAGE;
        }
        uint64_t from = resume_from(w);
        w->reload = false;
        w->what_if_seen = w->what_if_seen && w->what_if_seq < from;
        done = from - 1;
        err = fold_pass(w, from, total, &done);
        if (!w->reload)
            break;
    }
    if (err == TLY_OK && w->progress)
        w->progress(w->ctx, done, total);
    return err;
}

static void *worker_main(void *arg)
{
    replay_worker *w = arg;
    w->err = fold_log(w);
    return NULL;
}

/* Threads to fold with: one per shard, at most one per online CPU (more
 * would only take turns), at least one. */
static uint32_t thread_count(uint32_t shards)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t t = cpus < 1 ? 1 : (uint32_t)(cpus < (long)TLY_SHARDS_MAX ? cpus : TLY_SHARDS_MAX);
    return t < shards ? t : shards;
}

/* Splits the shards over the workers as evenly as possible. */
static void plan_workers(replay_run *r, tly_log *log, replay_worker *w, uint32_t t)
{
    uint32_t n = r->o->shard_count, next = 0;
    for (uint32_t i = 0; i < t; i++) {
        w[i].r = r;
        w[i].log = log;
        w[i].first = next;
        w[i].count = n / t + (i < n % t ? 1 : 0);
        w[i].threads = t;
        tly_helper_bound_init(&w[i].bound, n);
        next += w[i].count;
        for (uint32_t k = w[i].first; k < next; k++)
            w[i].stop_max = r->shard[k].stop > w[i].stop_max ? r->shard[k].stop : w[i].stop_max;
    }
}

/* A what-if whose program the fold never met would be a silent no-op. */
static tly_err what_if_check(replay_run *r, bool seen)
{
    const tly_event *rules = r->o->what_if;
    if (!rules || seen)
        return TLY_OK;
    tly_audit_msgf(r->msg, r->cap, "program '%.*s' is not in the log (up to the replay's end)",
                   (int)rules->program.len, rules->program.ptr);
    return TLY_NOT_FOUND;
}

/* Runs the workers (worker 0 in this thread) and returns the first error,
 * with its message. */
static tly_err fold_all(replay_run *r, tly_log *log, tly_audit_progress_fn progress, void *ctx)
{
    uint32_t t = thread_count(r->o->shard_count);
    replay_worker *w = calloc(t, sizeof *w);
    pthread_t *tid = calloc(t, sizeof *tid);
    bool *started = calloc(t, sizeof *started);
    if (!w || !tid || !started) {
        free(w);
        free(tid);
        free(started);
        return TLY_NOMEM;
    }
    plan_workers(r, log, w, t);
    w[0].progress = progress;
    w[0].ctx = ctx;
    for (uint32_t i = 1; i < t; i++)
        started[i] = pthread_create(&tid[i], NULL, worker_main, &w[i]) == 0;
    for (uint32_t i = 1; i < t; i++)
        if (!started[i])
            worker_main(&w[i]); /* no thread to spare: fold it here */
    worker_main(&w[0]);
    tly_err err = TLY_OK;
    bool seen = false;
    if (r->o->reloads)
        *r->o->reloads = 0;
    if (r->o->commits)
        *r->o->commits = 0;
    for (uint32_t i = 0; i < t; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        seen = seen || w[i].what_if_seen;
        if (r->o->reloads)
            *r->o->reloads += w[i].reloads;
        if (r->o->commits)
            *r->o->commits += w[i].commits;
        if (err == TLY_OK && w[i].err != TLY_OK) {
            err = w[i].err;
            tly_audit_msgf(r->msg, r->cap, "%s", w[i].msg);
        }
    }
    err = err == TLY_OK ? what_if_check(r, seen) : err;
    free(w);
    free(tid);
    free(started);
    return err;
}

/* Closes the stores and moves OUT/views/K-of-N to OUT/K-of-N. */
static tly_err close_and_place(replay_run *r, tly_err err, uint64_t *last_seq)
{
    uint64_t last = UINT64_MAX;
    char views[TLY_PATH_BYTES_MAX + 64], from[TLY_PATH_BYTES_MAX + 64], to[TLY_PATH_BYTES_MAX + 64];
    uint32_t n = r->o->shard_count;
    /* check_out bounded out_dir, so every path below fits. */
    tly_layout_views(r->o->out_dir, views, sizeof views);
    for (uint32_t k = 0; k < r->opened; k++) {
        replay_shard *s = &r->shard[k];
        if (s->engine) {
            uint64_t seq = tly_engine_seq(s->engine);
            last = seq < last ? seq : last;
        }
        tly_engine_free(s->engine);
        tly_views_close(s->views);
        tly_layout_shard(views, k, n, from, sizeof from);
        tly_layout_shard(r->o->out_dir, k, n, to, sizeof to);
        if (err == TLY_OK && rename(from, to) != 0) {
            tly_audit_msgf(r->msg, r->cap, "cannot move %s to %s", from, to);
            err = TLY_STORAGE;
        }
    }
    if (err == TLY_OK)
        rmdir(views);
    if (err == TLY_OK && last_seq)
        *last_seq = last == UINT64_MAX ? 0 : last;
    return err;
}

/* True when --until lies before the log's first record (or the log is
 * empty): the replay would fold nothing, and its empty stores left in
 * --out would refuse the next replay there as "already holds views". */
static bool until_before_first(const tly_audit_replay_opts *o, tly_log *log)
{
    tly_log_reader *rd = NULL;
    if (!o->has_until || tly_log_reader_open(log, 1, &rd) != TLY_OK)
        return false;
    tly_record rec;
    tly_err err = tly_log_reader_next(rd, &rec);
    bool before = err == TLY_NOT_FOUND || (err == TLY_OK && rec.recorded_ms > o->until_ms);
    tly_log_reader_close(rd);
    return before;
}

tly_err tly_audit_replay(const tly_audit_replay_opts *o, tly_audit_progress_fn progress, void *ctx,
                         uint64_t *last_seq, char *msg, size_t cap)
{
    if (o->shard_count < 1 || o->shard_count > TLY_SHARDS_MAX)
        return TLY_USAGE;
    replay_run *r = calloc(1, sizeof *r);
    if (!r)
        return TLY_NOMEM;
    char none[1] = "";
    *r = (replay_run){.o = o,
                      .msg = msg && cap ? msg : none,
                      .cap = msg ? cap : 1,
                      .read_split_min = tly_helper_split_min(),
                      .batch = (uint32_t)tly_env_u64("TALLY_AUDIT_REPLAY_BATCH_RECORDS", 1,
                                                     TLY_AUDIT_REPLAY_BATCH_RECORDS,
                                                     TLY_AUDIT_REPLAY_BATCH_RECORDS)};
    r->msg[0] = '\0';
    tly_log *log = NULL;
    tly_err err = tly_log_open(o->log_dir, TLY_LOG_READ, &log);
    if (err != TLY_OK)
        tly_audit_msgf(r->msg, r->cap, "%s in %s",
                       err == TLY_NOT_FOUND ? "no log" : tly_strerror(err), o->log_dir);
    if (err == TLY_OK && until_before_first(o, log)) {
        tly_log_close(log);
        free(r);
        if (last_seq)
            *last_seq = 0;
        return TLY_OK;
    }
    if (err == TLY_OK)
        err = check_out(r);
    if (err == TLY_OK)
        err = open_shards(r, log);
    if (err == TLY_OK)
        err = fold_all(r, log, progress, ctx);
    err = close_and_place(r, err, last_seq);
    tly_log_close(log);
    free(r);
    return err;
}
