/*
 * tly_consume.c — the consumer runtime: one shard folding the log (SPEC section 2).
 *
 * The consumer restores its engine from the shard's view store (the
 * programs and the checkpoint: the engine reads the rest of its state from
 * the store when an event needs it, so a restart takes the same time
 * whatever the log holds), then folds the log from checkpoint + 1 in seq
 * order. Every batch (at most --batch records, fewer when the engine holds
 * TLY_CONSUME_DIRTY_ENTRIES_MAX changes or its memory and its commit's
 * would pass TLY_CONSUME_ANON_BYTES_MAX, or whatever the log holds) is
 * committed with its checkpoint in one LMDB transaction, so a crash at any
 * moment, kill -9 included, resumes at the checkpoint and applies every
 * record exactly once.
 *
 * Where records come from:
 *   - the log's LMDB environment DIR/log on this machine (the default): a
 *     reader per batch sees what the ledger has committed; a missing DIR/log
 *     is waited for (the ledger may start later);
 *   - the ledger's log-read socket: always with --remote; with --log-read
 *     given explicitly, whenever DIR/log does not exist (a consumer on
 *     another machine, or one started before the ledger created the log).
 *     The choice is made again for every batch.
 * Live following: the events socket (SUB) delivers each committed record;
 * the next expected seq is applied directly, an older one is ignored, a
 * newer one is a gap that is filled from the log first, and so is a
 * published record whose event does not decode (only the log can prove a
 * record corrupt). When the socket is quiet for TLY_CONSUME_IDLE_POLL_MS
 * the log is polled anyway, so a dropped message delays folding but never
 * stalls it.
 *
 * Exit: SIGTERM/SIGINT finish the current batch, commit and exit 0;
 * --exit-at-head exits 0 once the log holds nothing more. A record that does
 * not decode is log corruption: the records before it are committed and the
 * consumer exits 1. An engine failure (out of memory, overflow) exits 1
 * without committing, since the engine's state is then unusable.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tly_ahead.h"
#include "tly_consume.h"
#include "tly_engine.h"
#include "tly_helper.h"
#include "tly_keys.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_mp.h"
#include "tly_os.h"
#include "tly_sale_source.h"
#include "tly_views.h"
#include "tly_wire.h"

#define CMD "consume"

/* Frames read from one incoming message at most: ours have one (log-read
 * reply) or two (topic, record); anything longer is not ours and dropped. */
#define MSG_FRAMES_MAX 8u

/* Records between two looks at the clock for TLY_CONSUME_COMMIT_INTERVAL_MS:
 * about a millisecond of folding, so the interval is kept closely enough. */
#define CLOCK_CHECK_RECORDS 1024u

_Static_assert(TLY_CONSUME_BATCH_RECORDS_DEFAULT <= TLY_CONSUME_BATCH_RECORDS_MAX,
               "default batch within the maximum");

/* The shard's series (README "Metrics"); all NULL without metrics. */
typedef struct consumer_metrics {
    tly_metric *checkpoint, *head, *lag, *rate;
    tly_metric *folded, *failures, *read_back;
    tly_metric *commit_seconds, *batch_records;
    uint64_t head_seen;     /* the highest head or seq seen in the log */
    uint64_t checkpoint_at; /* the last committed seq */
    uint64_t folded_count;  /* records committed since the start */
    uint64_t window_ns;     /* the fold rate's window: its start */
    uint64_t window_count;  /* and folded_count then */
} consumer_metrics;

typedef struct consumer {
    tly_consume_opts o;
    tly_stop_flag *stop; /* set by the caller to end the run */
    char log_dir[TLY_PATH_BYTES_MAX];
    tly_views *views;
    tly_engine *engine;
    uint32_t pending;         /* records applied since the last commit */
    uint64_t batch_start_ns;  /* when the first pending record was applied */
    uint32_t commit_failures; /* consecutive */
    bool engine_broken;       /* apply failed: never commit this state */
    bool logread_quiet;       /* "no reply" already logged for this outage */
    tly_log *log;             /* local source; NULL until DIR/log exists */
    void *zctx;
    void *sub;
    void *dealer;
    uint64_t start_seq;
    tly_event ev;            /* reused for every record: no per-record allocation */
    tly_sale_source sales;   /* the engine's look-ups in the log (log_sale) */
    uint64_t read_back;      /* partners read back at batches' starts, in all */
    uint32_t read_split_min; /* TLY_CONSUME_READ_SPLIT_MIN or $TALLY_CONSUME_READ_SPLIT_MIN */
    tly_helper_bound bound;  /* the memory bound a batch ends at (tly_helper_bound_reached) */
    /* apply_decoded committed a batch that had reached a limit: the pass
     * reading it ends there, so that the next begins a whole batch
     * rather than commit the few records left of this one's --batch */
    bool batch_ended;
    /* Where a catch-up's time went, for the stop line: the commits (each
     * batch's flush and transaction, failed ones included) and the
     * read-backs; the rest is folding the records. */
    uint64_t commits, commit_ns, read_back_ns;
    char secret[TLY_Z85_KEY_CHARS + 1]; /* with CURVE: this reader's keys */
    char pub[TLY_Z85_KEY_CHARS + 1];
    consumer_metrics m;
} consumer;

/* --- metrics --- */

static void register_metrics(consumer *c)
{
    tly_metrics *r = c->o.metrics;
    consumer_metrics *m = &c->m;
    char shard[24];
    snprintf(shard, sizeof shard, "%u/%u", c->o.shard, c->o.shard_count);
    m->checkpoint =
        tly_metrics_gauge(r, "tally_consumer_checkpoint_seq",
                          "Seq of the last record committed to the shard's views.", "shard", shard);
    m->head =
        tly_metrics_gauge(r, "tally_consumer_head_seq",
                          "Seq of the log's head as this consumer last saw it.", "shard", shard);
    m->lag = tly_metrics_gauge(r, "tally_consumer_lag_records",
                               "Records the checkpoint is behind the head.", "shard", shard);
    m->rate = tly_metrics_gauge(r, "tally_consumer_fold_records_per_second",
                                "Records folded and committed per second over the last window "
                                "of at least TLY_METRICS_RATE_WINDOW_MS.",
                                "shard", shard);
    m->folded = tly_metrics_counter(r, "tally_consumer_records_folded_total",
                                    "Records folded and committed since the consumer started.",
                                    "shard", shard);
    m->failures = tly_metrics_counter(r, "tally_consumer_commit_failures_total",
                                      "Batch commits that failed (the batch is folded again).",
                                      "shard", shard);
    m->read_back = tly_metrics_counter(
        r, "tally_consumer_partners_read_back_total",
        "Partners read back into memory at a batch's start: the last batch changed them beyond "
        "the engine's cache.",
        "shard", shard);
    m->commit_seconds =
        tly_metrics_histogram(r, "tally_consumer_commit_duration_seconds",
                              "Time one batch commit (views and checkpoint, one transaction) took.",
                              "shard", shard, &tly_metrics_seconds);
    m->batch_records =
        tly_metrics_histogram(r, "tally_consumer_batch_records", "Records in one committed batch.",
                              "shard", shard, &tly_metrics_sizes);
}

/* The checkpoint, head and lag gauges, and the fold rate once its window
 * has passed. Called after every pass and wait of the run loop. */
static void update_metrics(consumer *c)
{
    consumer_metrics *m = &c->m;
    if (!c->o.metrics)
        return;
    uint64_t head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    if (c->log && tly_log_head(c->log, &head, hash) == TLY_OK && head > m->head_seen)
        m->head_seen = head;
    if (m->checkpoint_at > m->head_seen)
        m->head_seen = m->checkpoint_at;
    tly_metric_set(m->checkpoint, (int64_t)m->checkpoint_at);
    tly_metric_set(m->head, (int64_t)m->head_seen);
    tly_metric_set(m->lag, (int64_t)(m->head_seen - m->checkpoint_at));
    uint64_t now = tly_mono_ns();
    uint64_t span = now - m->window_ns;
    if (span >= (uint64_t)TLY_METRICS_RATE_WINDOW_MS * 1000000u) {
        uint64_t n = m->folded_count - m->window_count;
        tly_metric_set(m->rate, (int64_t)(n * 1000000000u / span));
        m->window_ns = now;
        m->window_count = m->folded_count;
    }
}

/* Counts one commit of n records that took ns (ok: it succeeded). */
static void count_commit(consumer *c, uint32_t n, uint64_t ns, bool ok)
{
    consumer_metrics *m = &c->m;
    if (!c->o.metrics)
        return;
    tly_metric_observe(m->commit_seconds, ns);
    if (!ok) {
        tly_metric_add(m->failures, 1);
        return;
    }
    tly_metric_observe(m->batch_records, n);
    tly_metric_add(m->folded, n);
    m->folded_count += n;
    m->checkpoint_at = tly_engine_seq(c->engine);
}

/* --- other shards' sales, from the log (issue 9) --- */

static tly_err local_open(consumer *c, bool *ready);

/* The engine's sale source (tly_engine_set_sale_source): the sale (source,
 * id) as DIR/log holds it. A store that reads sales from the log cannot
 * fold without it: TLY_UNAVAILABLE, and the consumer stops. */
static tly_err log_sale(void *ctx, tly_str source, tly_str id, bool *found, tly_engine_sale *out)
{
    consumer *c = ctx;
    *found = false;
    bool ready;
    tly_err err = local_open(c, &ready);
    if (err == TLY_OK && !ready) {
        tly_errorf(CMD,
                   "shard %u/%u: this store reads other shards' sales from %s, which is not "
                   "there",
                   c->o.shard, c->o.shard_count, c->log_dir);
        return TLY_UNAVAILABLE;
    }
    return err == TLY_OK ? tly_sale_source_find(&c->sales, c->log, source, id, found, out) : err;
}

/* Decides, before the first record of a new store is folded, which sales
 * it registers: its own partners' only when DIR/log is here to read the
 * others' from, every sale otherwise (a --remote consumer). Test hook:
 * $TALLY_CONSUME_ALL_SALES registers every sale all the same. */
static tly_err decide_sales(consumer *c)
{
    bool own = !c->o.remote && c->log != NULL && getenv("TALLY_CONSUME_ALL_SALES") == NULL;
    tly_err err = tly_views_set_sales(c->views, own ? TLY_VIEWS_SALES_OWN : TLY_VIEWS_SALES_ALL);
    if (err == TLY_OK && own)
        tly_engine_set_sale_source(c->engine, log_sale, c);
    return err;
}

/* --- applying and committing --- */

static tly_err reload_engine(consumer *c)
{
    tly_engine_free(c->engine);
    c->engine = NULL;
    tly_err err = tly_engine_new(c->o.shard, c->o.shard_count, &c->engine);
    if (err == TLY_OK) {
        /* a failed commit reloads the engine anyway (commit) */
        tly_engine_set_flush_drops(c->engine, true);
        tly_engine_set_read_back(c->engine, TLY_CONSUME_READ_BACK_PARTNERS_MAX);
        err = tly_views_load(c->views, c->engine);
    }
    if (err != TLY_OK) {
        tly_errorf(CMD, "shard %u/%u: cannot load the view store: %s", c->o.shard, c->o.shard_count,
                   tly_strerror(err));
        return err;
    }
    if (tly_views_sales(c->views) != TLY_VIEWS_SALES_OWN)
        return TLY_OK; /* every sale is in the store, or decide_sales decides */
    if (c->o.remote) {
        tly_errorf(CMD,
                   "shard %u/%u: this store reads other shards' sales from the log: run "
                   "the consumer beside %s, not --remote (or remove %s to refold it)",
                   c->o.shard, c->o.shard_count, c->log_dir, tly_views_dir(c->views));
        return TLY_USAGE;
    }
    tly_engine_set_sale_source(c->engine, log_sale, c);
    return TLY_OK;
}

/* Commits the pending records. After a failed commit the engine may have
 * forgotten changes it flushed into the aborted transaction, so it is
 * reloaded from the store: its seq falls back to the checkpoint and the
 * sources, which always read from seq + 1, refold the lost records. */
static tly_err commit(consumer *c)
{
    if (c->pending == 0 || c->engine_broken)
        return TLY_OK;
    uint64_t t0 = tly_mono_ns();
    tly_err err = tly_views_commit(c->views, c->engine);
    uint64_t took = tly_mono_ns() - t0;
    c->commits++;
    c->commit_ns += took;
    count_commit(c, c->pending, took, err == TLY_OK);
    if (err == TLY_OK) {
        c->pending = 0;
        c->commit_failures = 0;
        tly_helper_bound_committed(&c->bound, tly_views_stats_of(c->views).last_anon_rise);
        return TLY_OK;
    }
    tly_errorf(CMD, "shard %u/%u: commit up to seq %llu failed: %s", c->o.shard, c->o.shard_count,
               (unsigned long long)tly_engine_seq(c->engine), tly_strerror(err));
    c->pending = 0;
    if (err == TLY_USAGE)
        return err; /* the store is not this consumer's any more (tly_views_commit) */
    if (err == TLY_TOO_LARGE && c->o.batch > 1) {
        /* Halving is bounded: at most log2(batch) times down to 1. */
        c->o.batch /= 2;
        tly_logf(TLY_LOG_WARN, CMD, "shard %u/%u: refolding with batches of %u records", c->o.shard,
                 c->o.shard_count, c->o.batch);
        return reload_engine(c);
    }
    if (++c->commit_failures > TLY_CONSUME_RELOAD_RETRIES_MAX)
        return err;
    return reload_engine(c);
}

/* True when the open batch is older than TLY_CONSUME_COMMIT_INTERVAL_MS.
 * The clock is read once per CLOCK_CHECK_RECORDS records only. */
static bool batch_too_old(const consumer *c)
{
    if (c->pending % CLOCK_CHECK_RECORDS != 0)
        return false;
    uint64_t age_ns = tly_mono_ns() - c->batch_start_ns;
    return age_ns >= (uint64_t)TLY_CONSUME_COMMIT_INTERVAL_MS * 1000000u;
}

/*
 * Applies one record if it is the next one. *gap is set when its seq lies
 * beyond the next one (the caller fills from the log); older records are
 * ignored. Commits when the batch reaches one of its limits (batch_ended
 * then). A published record (from the events socket, not the log) whose
 * event does not decode proves nothing about the log: it is treated as a
 * gap, so the log decides.
 */
static tly_err apply_decoded(consumer *c, const tly_record *rec, const tly_event *ev,
                             tly_err decoded, const tly_field_error *fe, bool published, bool *gap);

static tly_err apply_one(consumer *c, const tly_record *rec, bool published, bool *gap)
{
    uint64_t applied = tly_engine_seq(c->engine);
    tly_field_error fe = {{0}, {0}};
    tly_err decoded = TLY_OK;
    if (rec->seq == applied + 1) /* only the next record is worth decoding */
        decoded = tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, &c->ev, &fe);
    return apply_decoded(c, rec, &c->ev, decoded, &fe, published, gap);
}

/* --- read-back --- */

/* The partners the last commit's flush dropped, read back: with many, the
 * helper decodes half of their records while this thread reads the other
 * half (tly_helper_read_back). */
static uint32_t read_back(consumer *c)
{
    return tly_helper_read_back(c->engine, c->read_split_min);
}

/* apply_one for a record whose event is decoded already: decoded is
 * tly_event_decode's result for ev, fe its details. */
static tly_err apply_decoded(consumer *c, const tly_record *rec, const tly_event *ev,
                             tly_err decoded, const tly_field_error *fe, bool published, bool *gap)
{
    uint64_t applied = tly_engine_seq(c->engine);
    *gap = false;
    if (rec->seq <= applied)
        return TLY_OK;
    if (rec->seq != applied + 1) {
        *gap = true;
        return TLY_OK;
    }
    if (decoded != TLY_OK && published) {
        *gap = true;
        return TLY_OK;
    }
    if (decoded != TLY_OK) {
        tly_errorf(CMD,
                   "shard %u/%u: record %llu does not decode (%s: %s%s%s): the log is "
                   "corrupt",
                   c->o.shard, c->o.shard_count, (unsigned long long)rec->seq,
                   tly_err_name(decoded), fe->field, fe->field[0] ? ": " : "", fe->message);
        return TLY_CORRUPT;
    }
    tly_err err = TLY_OK;
    if (tly_views_sales(c->views) == TLY_VIEWS_SALES_UNSET)
        err = decide_sales(c);
    /* A batch's first record: the partners the last commit's flush dropped
     * come back first (tly_engine_read_back), now that the memory of the
     * commit's page copies is free again; here rather than at the commit,
     * so that a consumer that stops after its last commit does not read
     * them for nothing. */
    if (c->pending == 0) {
        uint64_t t0 = tly_mono_ns();
        uint32_t read = read_back(c);
        c->read_back += read;
        c->read_back_ns += read > 0 ? tly_mono_ns() - t0 : 0;
        if (c->o.metrics && read > 0)
            tly_metric_add(c->m.read_back, read);
    }
    if (err == TLY_OK)
        err = tly_engine_apply(c->engine, rec, ev);
    if (err != TLY_OK) {
        c->engine_broken = true;
        tly_errorf(CMD, "shard %u/%u: folding record %llu failed: %s", c->o.shard, c->o.shard_count,
                   (unsigned long long)rec->seq, tly_strerror(err));
        return err;
    }
    if (c->pending++ == 0)
        c->batch_start_ns = tly_mono_ns();
    bool full = false;
    if (c->pending % TLY_CONSUME_VIEWS_RELEASE_RECORDS == 0) {
        tly_views_release(c->views);
        full = tly_helper_bound_reached(&c->bound, 1);
    }
    /* The engine keeps what a batch changed in memory until the commit:
     * a batch ends early when that grows large, whatever --batch says. */
    if (full || c->pending >= c->o.batch || batch_too_old(c) ||
        tly_engine_dirty(c->engine) >= TLY_CONSUME_DIRTY_ENTRIES_MAX) {
        c->batch_ended = true;
        return commit(c);
    }
    return TLY_OK;
}

/* --- local source: DIR/log --- */

/* A store whose checkpoint lies beyond the log's head belongs to another
 * log (a wrong --data, a log restored from an older backup): folding on
 * would silently wait forever, so it is an error. */
static tly_err check_not_ahead(consumer *c, uint64_t head, const char *where)
{
    uint64_t seq = tly_engine_seq(c->engine);
    if (head >= seq)
        return TLY_OK;
    tly_errorf(CMD,
               "shard %u/%u: checkpoint %llu is beyond the head %llu of %s: the views belong "
               "to another log",
               c->o.shard, c->o.shard_count, (unsigned long long)seq, (unsigned long long)head,
               where);
    return TLY_CORRUPT;
}

/* Opens DIR/log when it exists. *ready is false while it does not (the
 * ledger has not created it yet, or it lives on another machine). */
static tly_err local_open(consumer *c, bool *ready)
{
    *ready = c->log != NULL;
    if (c->log)
        return TLY_OK;
    tly_err err = tly_log_open(c->log_dir, TLY_LOG_READ, &c->log);
    if (err == TLY_NOT_FOUND)
        return TLY_OK;
    if (err != TLY_OK) {
        tly_errorf(CMD, "cannot open the log %s: %s", c->log_dir, tly_strerror(err));
        return err;
    }
    *ready = true;
    uint64_t head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    err = tly_log_head(c->log, &head, hash);
    return err == TLY_OK ? check_not_ahead(c, head, c->log_dir) : err;
}

/* One batch from DIR/log (open), in a fresh snapshot. *n counts records. */
static tly_err pass_local(consumer *c, uint32_t *n)
{
    *n = 0;
    /* A second thread reads and decodes the records a little ahead. */
    tly_ahead *ahead;
    tly_err err = tly_ahead_start(c->log, tly_engine_seq(c->engine) + 1, c->o.batch, &ahead);
    if (err != TLY_OK) {
        tly_errorf(CMD, "cannot read the log %s: %s", c->log_dir, tly_strerror(err));
        return err;
    }
    while (*n < c->o.batch && !atomic_load(c->stop)) {
        const tly_ahead_item *it;
        err = tly_ahead_next(ahead, &it);
        if (err != TLY_OK)
            break;
        tly_ahead_prefetch(ahead, c->engine); /* the next records' partners */
        bool gap;
        c->batch_ended = false;
        err = apply_decoded(c, &it->rec, &it->ev, it->err, &it->fe, false, &gap);
        if (err != TLY_OK || gap) /* a gap here: a reload rewound the engine */
            break;
        ++*n;
        if (c->batch_ended)
            break;
    }
    tly_ahead_stop(ahead);
    if (err == TLY_NOT_FOUND)
        err = TLY_OK; /* the end of the snapshot */
    else if (err == TLY_CORRUPT)
        tly_errorf(CMD, "the log %s is corrupt after seq %llu", c->log_dir,
                   (unsigned long long)tly_engine_seq(c->engine));
    return err;
}

/* --- remote source: the ledger's log-read socket --- */

/* Makes s a CURVE client of the ledger when the options name its key (the
 * ledger admits keys with a reading role: reader, auditor, finance). */
static int curve_client(const consumer *c, void *s)
{
    if (!c->o.curve_server_key)
        return 0;
    const char *k = c->o.curve_server_key;
    int rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, k, TLY_Z85_KEY_CHARS);
    if (rc == 0)
        rc = zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->pub, TLY_Z85_KEY_CHARS);
    if (rc == 0)
        rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->secret, TLY_Z85_KEY_CHARS);
    return rc;
}

/* Reads this reader's CURVE keys once, at start. */
static tly_err read_keys(consumer *c)
{
    char msg[256];
    if (!c->o.curve_server_key)
        return TLY_OK;
    tly_err err = tly_key_read_secret(c->o.curve_secret, c->secret, msg, sizeof msg);
    if (err == TLY_OK && zmq_curve_public(c->pub, c->secret) != 0)
        err = TLY_BAD_FIELD;
    if (err != TLY_OK)
        tly_errorf(CMD, "%s", err == TLY_BAD_FIELD ? "cannot use the CURVE secret key" : msg);
    return err;
}

static tly_err dealer_open(consumer *c)
{
    if (c->dealer)
        return TLY_OK;
    c->dealer = zmq_socket(c->zctx, ZMQ_DEALER);
    int zero = 0;
    if (!c->dealer || zmq_setsockopt(c->dealer, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        curve_client(c, c->dealer) != 0 || zmq_connect(c->dealer, c->o.log_read) != 0) {
        tly_errorf(CMD, "log-read socket %s: %s", c->o.log_read, zmq_strerror(zmq_errno()));
        if (c->dealer)
            zmq_close(c->dealer);
        c->dealer = NULL;
        return TLY_IO;
    }
    return TLY_OK;
}

/* Drops the socket after a lost reply, so a late reply can never be taken
 * for the answer to the next request. */
static void dealer_reset(consumer *c)
{
    if (c->dealer)
        zmq_close(c->dealer);
    c->dealer = NULL;
}

static tly_err logread_send(consumer *c, uint64_t from, uint32_t max)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, from, max);
    int rc = zmq_send(c->dealer, sb.data, sb.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy(&sb);
    return rc < 0 ? TLY_UNAVAILABLE : TLY_OK;
}

/* Waits for the reply frame (the last frame of the message). */
static tly_err logread_recv(consumer *c, zmq_msg_t *msg)
{
    zmq_pollitem_t it = {c->dealer, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, TLY_CONSUME_LOGREAD_TIMEOUT_MS);
    if (rc <= 0)
        return TLY_TIMEOUT; /* or a signal: the caller looks at *c->stop */
    zmq_msg_init(msg);
    for (unsigned f = 0; f < MSG_FRAMES_MAX; f++) { /* DEALER replies carry no envelope */
        if (zmq_msg_recv(msg, c->dealer, 0) < 0) {
            zmq_msg_close(msg);
            return TLY_TIMEOUT;
        }
        if (!zmq_msg_more(msg))
            return TLY_OK;
    }
    zmq_msg_close(msg);
    return TLY_MALFORMED;
}

/* A parsed log-read reply: rd is positioned at the first record bin. */
typedef struct logread_reply {
    tly_mp_reader rd;
    uint32_t count;
    uint64_t head;
    bool has_head;
    const char *error, *message; /* an error reply's code and text (not NUL-terminated) */
    uint32_t error_len, message_len;
} logread_reply;

static bool key_is(const char *k, uint32_t len, const char *want)
{
    return strlen(want) == len && memcmp(k, want, len) == 0;
}

/* Reads {"records": [bin...], "head": seq} (unknown keys ignored). */
static tly_err logread_parse(const void *buf, size_t len, logread_reply *out)
{
    tly_mp_reader r;
    uint32_t pairs;
    bool has_records = false;
    tly_mp_init(&r, buf, len);
    if (!tly_mp_read_map(&r, &pairs))
        return TLY_MALFORMED;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t klen;
        if (!tly_mp_read_str(&r, &k, &klen))
            return TLY_MALFORMED;
        if (key_is(k, klen, "records") && tly_mp_read_array(&r, &out->count)) {
            has_records = true;
            out->rd = r;
            for (uint32_t j = 0; j < out->count; j++)
                if (!tly_mp_skip(&r, NULL, NULL))
                    return TLY_MALFORMED;
        } else if (key_is(k, klen, "head")) {
            if (!tly_mp_read_uint(&r, &out->head))
                return TLY_MALFORMED;
            out->has_head = true;
        } else if (key_is(k, klen, "error") && tly_mp_read_str(&r, &out->error, &out->error_len)) {
        } else if (key_is(k, klen, "message") &&
                   tly_mp_read_str(&r, &out->message, &out->message_len)) {
        } else if (!tly_mp_skip(&r, NULL, NULL)) {
            return TLY_MALFORMED;
        }
    }
    return has_records ? TLY_OK : TLY_UNAVAILABLE; /* e.g. an {"error": ...} reply */
}

/* Applies the records of one reply; *n counts them, *gap as apply_one. */
static tly_err apply_reply(consumer *c, logread_reply *rep, uint32_t *n, bool *gap)
{
    *gap = false;
    for (uint32_t i = 0; i < rep->count && !atomic_load(c->stop); i++) {
        const uint8_t *bin;
        uint32_t len;
        tly_record rec;
        if (!tly_mp_read_bin(&rep->rd, &bin, &len) || tly_record_decode(bin, len, &rec) != TLY_OK) {
            tly_errorf(CMD,
                       "log-read: record after seq %llu does not decode: the log is "
                       "corrupt",
                       (unsigned long long)tly_engine_seq(c->engine));
            return TLY_CORRUPT;
        }
        tly_err err = apply_one(c, &rec, false, gap);
        if (err != TLY_OK || *gap)
            return err;
        ++*n;
    }
    return TLY_OK;
}

/* A reply with no records while the head lies beyond the checkpoint: the
 * ledger could not serve the next record. Never taken for the head of the
 * log: with --exit-at-head it is an error, otherwise the next pass asks
 * again. */
static tly_err below_head_empty(consumer *c, const logread_reply *rep)
{
    uint64_t seq = tly_engine_seq(c->engine);
    if (rep->count > 0 || !rep->has_head || rep->head <= seq)
        return TLY_OK;
    tly_errorf(CMD, "log-read %s: no record served at seq %llu below the head %llu", c->o.log_read,
               (unsigned long long)seq + 1, (unsigned long long)rep->head);
    return c->o.exit_at_head ? TLY_UNAVAILABLE : TLY_OK;
}

/* One request and its reply. An unreachable ledger is not an error: the
 * consumer waits and asks again. *count gets the records in the reply. */
static tly_err fetch_once(consumer *c, uint32_t want, uint32_t *n, uint32_t *count, bool *gap)
{
    *count = 0;
    *gap = false;
    /* zmq_connect refuses only what no retry mends (an endpoint it cannot
     * parse, a transport it lacks): an unreachable ledger connects and is
     * waited for below. So a refusal stops the consumer, as a bad events
     * endpoint does, instead of asking again for ever. */
    tly_err err = dealer_open(c);
    if (err != TLY_OK)
        return err;
    err = logread_send(c, tly_engine_seq(c->engine) + 1, want);
    zmq_msg_t msg;
    if (err == TLY_OK)
        err = logread_recv(c, &msg);
    if (err != TLY_OK) {
        if (!c->logread_quiet && !atomic_load(c->stop))
            tly_logf(TLY_LOG_WARN, CMD, "log-read %s: no reply; retrying", c->o.log_read);
        c->logread_quiet = true;
        dealer_reset(c);
        /* --exit-at-head must not take silence for the head of the log. */
        return c->o.exit_at_head && !atomic_load(c->stop) ? TLY_UNAVAILABLE : TLY_OK;
    }
    c->logread_quiet = false;
    logread_reply rep = {0};
    err = logread_parse(zmq_msg_data(&msg), zmq_msg_size(&msg), &rep);
    if (err == TLY_OK) {
        *count = rep.count;
        if (rep.has_head && rep.head > c->m.head_seen)
            c->m.head_seen = rep.head;
        err = rep.has_head ? check_not_ahead(c, rep.head, c->o.log_read) : TLY_OK;
        if (err == TLY_OK)
            err = below_head_empty(c, &rep);
        if (err == TLY_OK)
            err = apply_reply(c, &rep, n, gap);
    } else if (rep.error_len > 0) { /* e.g. forbidden: this key has no reading role */
        tly_errorf(CMD, "log-read %s: %.*s: %.*s", c->o.log_read, (int)rep.error_len, rep.error,
                   (int)rep.message_len, rep.message);
        err = c->o.exit_at_head ? TLY_UNAVAILABLE : TLY_OK;
    } else {
        tly_errorf(CMD, "log-read %s: unusable reply (%s)", c->o.log_read, tly_err_name(err));
        /* --exit-at-head must not take an error reply for the head. */
        err = c->o.exit_at_head ? TLY_UNAVAILABLE : TLY_OK;
    }
    zmq_msg_close(&msg);
    return err;
}

/* One batch through log-read: requests until a batch ends with a reply or
 * a reply brings nothing new. A batch that ends inside a reply (a limit
 * reached, apply_decoded) leaves the reply's other records to the next,
 * which the pass then fills. Bounded: every further request follows a
 * reply that applied at least one record, and asks for no more than the
 * open batch's room, so the batch that fills it ends the pass. */
static tly_err pass_remote(consumer *c, uint32_t *n)
{
    *n = 0;
    while (!atomic_load(c->stop)) {
        uint32_t want = c->o.batch - c->pending, count, before = *n;
        if (want > TLY_CONSUME_LOGREAD_RECORDS_MAX)
            want = TLY_CONSUME_LOGREAD_RECORDS_MAX;
        bool gap;
        c->batch_ended = false;
        tly_err err = fetch_once(c, want, n, &count, &gap);
        if (err != TLY_OK)
            return err;
        /* A gap (a reload rewound the engine mid-reply) ends the batch; the
         * next pass asks again from the checkpoint. */
        if (count == 0 || *n == before || gap || (c->batch_ended && c->pending == 0))
            break;
    }
    return TLY_OK;
}

/*
 * One batch from whichever source serves: log-read with --remote; else
 * DIR/log once it exists; until then log-read when --log-read was given
 * (a consumer on another machine, or started before the ledger created the
 * log), else nothing (wait). Every pass reads from the engine's seq + 1, so
 * switching sources between passes is seamless.
 */
static tly_err pass(consumer *c, uint32_t *n)
{
    *n = 0;
    if (c->o.remote)
        return pass_remote(c, n);
    bool ready;
    tly_err err = local_open(c, &ready);
    if (err != TLY_OK || ready)
        return err == TLY_OK ? pass_local(c, n) : err;
    if (c->o.log_read_given)
        return pass_remote(c, n);
    if (c->o.exit_at_head) {
        tly_errorf(CMD, "no log in %s (give --log-read to read a remote one)", c->log_dir);
        return TLY_NOT_FOUND;
    }
    return TLY_OK;
}

/* --- live following: the events socket --- */

/* Reads and drops the remaining frames of a message: a multipart message
 * arrives whole, so they are all queued. */
static void drain_frames(void *sock)
{
    for (unsigned f = 0; f < MSG_FRAMES_MAX; f++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, sock, ZMQ_DONTWAIT);
        bool more = rc >= 0 && zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more)
            return;
    }
}

/* Receives one published record (topic frame, record frame) without
 * waiting. Returns 1 with *body set, 0 when none is queued. Malformed
 * messages are dropped: the log stays the authority. */
static int sub_recv(consumer *c, zmq_msg_t *body)
{
    zmq_msg_t topic;
    zmq_msg_init(&topic);
    if (zmq_msg_recv(&topic, c->sub, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&topic);
        return 0;
    }
    bool more = zmq_msg_more(&topic);
    zmq_msg_close(&topic);
    if (!more)
        return -1;
    zmq_msg_init(body);
    if (zmq_msg_recv(body, c->sub, 0) < 0) {
        zmq_msg_close(body);
        return -1;
    }
    if (zmq_msg_more(body)) { /* not (topic, record): drop the whole message */
        drain_frames(c->sub);
        zmq_msg_close(body);
        return -1;
    }
    return 1;
}

/* Waits up to wait_ms for published records, applies those that are next
 * in line (at most one batch), stops at a gap, commits. */
static tly_err follow(consumer *c, int wait_ms)
{
    zmq_pollitem_t it = {c->sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, wait_ms) <= 0)
        return TLY_OK; /* quiet, or a signal */
    tly_err err = TLY_OK;
    for (uint32_t i = 0; i < c->o.batch && !atomic_load(c->stop) && err == TLY_OK; i++) {
        zmq_msg_t body;
        int got = sub_recv(c, &body);
        if (got == 0)
            break;
        if (got < 0)
            continue;
        tly_record rec;
        bool gap = false;
        if (tly_record_decode(zmq_msg_data(&body), zmq_msg_size(&body), &rec) == TLY_OK) {
            c->m.head_seen = rec.seq > c->m.head_seen ? rec.seq : c->m.head_seen;
            err = apply_one(c, &rec, true, &gap);
        }
        zmq_msg_close(&body);
        if (gap)
            break; /* the next pass fills it from the log */
    }
    if (err == TLY_OK)
        err = commit(c);
    return err;
}

static tly_err sub_open(consumer *c)
{
    int hwm = TLY_CONSUME_SUB_HWM, zero = 0;
    c->sub = zmq_socket(c->zctx, ZMQ_SUB);
    if (!c->sub || zmq_setsockopt(c->sub, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(c->sub, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, "", 0) != 0 || curve_client(c, c->sub) != 0 ||
        zmq_connect(c->sub, c->o.events) != 0) {
        tly_errorf(CMD, "events socket %s: %s", c->o.events, zmq_strerror(zmq_errno()));
        return TLY_IO;
    }
    return TLY_OK;
}

/* --- the run --- */

static tly_err consumer_start(consumer *c)
{
    if (tly_layout_log(c->o.data, c->log_dir, sizeof c->log_dir) != TLY_OK)
        return TLY_USAGE;
    if (read_keys(c) != TLY_OK)
        return TLY_USAGE;
    tly_err err =
        tly_views_open(c->o.data, c->o.shard, c->o.shard_count, TLY_VIEWS_WRITE, &c->views);
    if (err != TLY_OK) {
        tly_errorf(CMD, "shard %u/%u: cannot open the view store under %s/views: %s", c->o.shard,
                   c->o.shard_count, c->o.data, tly_strerror(err));
        return err;
    }
    err = reload_engine(c);
    if (err != TLY_OK)
        return err;
    c->start_seq = tly_engine_seq(c->engine);
    register_metrics(c);
    c->m.checkpoint_at = c->start_seq;
    c->m.window_ns = tly_mono_ns();
    update_metrics(c);
    if (c->o.remote || c->o.log_read_given || !c->o.exit_at_head) {
        c->zctx = zmq_ctx_new();
        if (!c->zctx)
            return TLY_NOMEM;
    }
    if (!c->o.exit_at_head)
        err = sub_open(c);
    if (err == TLY_OK)
        tly_logf(TLY_LOG_INFO, "consume", "shard %u/%u, checkpoint %llu, reading %s%s%s",
                 c->o.shard, c->o.shard_count, (unsigned long long)c->start_seq,
                 c->o.remote ? "" : c->log_dir, c->o.remote ? "log-read " : "",
                 c->o.remote           ? c->o.log_read
                 : c->o.log_read_given ? " (until it exists: log-read)"
                                       : "");
    return err;
}

static void consumer_stop(consumer *c)
{
    if (c->sub)
        zmq_close(c->sub);
    if (c->dealer)
        zmq_close(c->dealer);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    tly_log_close(c->log);
    tly_engine_free(c->engine);
    tly_views_close(c->views);
}

/*
 * The service loop: a batch from the log, then (when it brought nothing)
 * a wait on the events socket. It runs until a signal or, with
 * --exit-at-head, until a batch finds nothing new; each iteration is
 * bounded by one batch and one TLY_CONSUME_IDLE_POLL_MS wait.
 */
static tly_err consumer_run(consumer *c)
{
    tly_err err = TLY_OK;
    while (!atomic_load(c->stop) && err == TLY_OK) {
        uint32_t n = 0;
        err = pass(c, &n);
        if (err == TLY_OK)
            err = commit(c);
        update_metrics(c);
        if (err != TLY_OK || atomic_load(c->stop) || (n == 0 && c->o.exit_at_head))
            break;
        if (c->sub)
            err = follow(c, n > 0 ? 0 : TLY_CONSUME_IDLE_POLL_MS);
    }
    /* A corrupt record stops the run; what was folded before it is good. */
    if (err == TLY_OK || err == TLY_CORRUPT) {
        tly_err cerr = commit(c);
        if (err == TLY_OK)
            err = cerr;
    }
    return err;
}

tly_err tly_consume_run(const tly_consume_opts *o, tly_stop_flag *stop)
{
    consumer *c = calloc(1, sizeof *c);
    if (!c) {
        tly_errorf(CMD, "out of memory");
        return TLY_NOMEM;
    }
    c->o = *o;
    c->stop = stop;
    c->read_split_min = tly_helper_split_min();
    tly_helper_bound_init(&c->bound, 1);
    uint64_t t0 = tly_mono_ns();
    tly_err err = consumer_start(c);
    if (err == TLY_OK && o->on_ready)
        o->on_ready();
    if (err == TLY_OK)
        err = consumer_run(c);
    if (err == TLY_OK) {
        uint64_t seq = tly_engine_seq(c->engine);
        tly_logf(TLY_LOG_INFO, "consume",
                 "shard %u/%u stopped at checkpoint %llu "
                 "(%llu records in %llu ms; %llu commits in %llu ms; %llu partners read back "
                 "in %llu ms)",
                 c->o.shard, c->o.shard_count, (unsigned long long)seq,
                 (unsigned long long)(seq - c->start_seq),
                 (unsigned long long)((tly_mono_ns() - t0) / 1000000u),
                 (unsigned long long)c->commits, (unsigned long long)(c->commit_ns / 1000000u),
                 (unsigned long long)c->read_back,
                 (unsigned long long)(c->read_back_ns / 1000000u));
    }
    consumer_stop(c);
    free(c);
    return err;
}
