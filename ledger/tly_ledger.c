/* tly_ledger.c — the ledger daemon loop; see tly_ledger.h and cmd_ledger.c. */
#include "tly_ledger.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ledger_out.h"
#include "ledger_repl.h"
#include "ledger_standby.h"
#include "tly_assert.h"
#include "tly_auth.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_wire.h"

_Static_assert(TLY_COMMIT_EVENTS_MAX >= TLY_BATCH_EVENTS_MAX, "a whole request fits a batch");

typedef struct pending {
    zmq_msg_t env[TLY_ENVELOPE_FRAMES_MAX];
    uint32_t env_count;
    bool env_cut; /* more routing frames came than env holds: refused */
    zmq_msg_t body;
    tly_ingest_req *req; /* decoded view into body */
    tly_err whole_err;   /* whole-request error, TLY_OK when the events count */
    char whole_msg[160];
    char source[TLY_SOURCE_BYTES_MAX + 1];
    uint32_t first_item;
} pending;

/* One group commit: the requests drained into it and their events. The
 * ledger has two, so one can be filled and validated while the commit
 * thread appends and syncs the other. */
typedef struct batch {
    pending *reqs; /* TLY_COMMIT_REQUESTS_MAX */
    uint32_t req_count;
    tly_log_item *items;  /* TLY_COMMIT_EVENTS_MAX */
    tly_field_error *fes; /* per item */
    uint8_t *types;       /* per item: its tly_ev_type once it decoded (the events topic) */
    uint32_t item_count;
    tly_log_group *groups;
    uint32_t group_count;
    int64_t now_ms;
    /* set by the commit thread */
    tly_err err;
    uint64_t head_before, head_after;
    uint64_t append_ns; /* how long the append (and its sync) took */
} batch;

/* The ledger's series (README "Metrics"), counted by the main thread when
 * a batch is finished: the commit thread only times its append. */
typedef struct ledger_metrics {
    tly_metric *appended[TLY_EV_COUNT];
    tly_metric *duplicates[TLY_EV_COUNT];
    tly_metric *rejected[TLY_ERR_COUNT];          /* events, by code (wire codes only) */
    tly_metric *requests_rejected[TLY_ERR_COUNT]; /* whole requests, by code */
    tly_metric *requests;
    tly_metric *commit_events;
    tly_metric *commit_seconds;
    tly_metric *head;
} ledger_metrics;

struct tly_ledger {
    tly_ledger_opts opts;
    void *ctx;
    void *ingest;
    void *events;
    void *logread;
    void *to_worker;   /* PAIR: main -> commit thread, one pointer per batch */
    void *from_worker; /* PAIR: commit thread -> main, the batch done */
    void *worker_in;   /* the commit thread's ends of the two pairs */
    void *worker_out;
    pthread_t worker;
    bool worker_running;
    tly_log *log;
    tly_repl *repl; /* NULL: not replicated */
    /* [N4] a writer holds the lease; a standby runs the follower and
     * answers ingest `unavailable` until it takes over */
    tly_lease *lease;
    tly_follower *follower;
    void *follow_pair;   /* the follower's new heads arrive here */
    uint32_t follow_gen; /* followers started: each gets a pair of its own */
    bool standby;
    uint64_t promoted_ns; /* when this ledger last took over; 0 once it acknowledged */
    char name[TLY_LEASE_NAME_BYTES_MAX + 1];
    tly_auth *auth;
    batch batches[2];
    batch *filling;    /* owned by the main thread */
    batch *committing; /* owned by the commit thread while not NULL */
    /* A batch, and the log's writer state (the main thread commits too
     * while the commit thread is idle), change threads with the batch's
     * pointer on the inproc pairs. ZeroMQ orders the two sides, but with
     * atomics inside libzmq that ThreadSanitizer cannot see (the library
     * is not instrumented); these two carry the same order in C11 terms:
     * stored with release before each send, loaded with acquire after
     * each receive. */
    _Atomic(batch *) handed_over; /* the batch last sent to the commit thread */
    atomic_bool handed_back;      /* the commit thread sent `committing` back, not collected yet */
    uint64_t head;                /* last committed seq, as the main thread knows it */
    int64_t recorded_ms;          /* recorded time of the last batch taken (or the head's) */
    pending spare;                /* for log-read and refusals */
    msgpack_sbuffer sbuf;
    tly_outq replies; /* ingest and log-read replies not yet read */
    tly_outq published;
    ledger_metrics metrics; /* all NULL without opts.metrics */
};

static void stop_worker(tly_ledger *ld);

bool tly_endpoint_is_loopback(const char *ep)
{
    static const char *const ok[] = {"ipc://", "inproc://", "tcp://127.",
                                     "tcp://localhost:", "tcp://[::1]:"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strncmp(ep, ok[i], strlen(ok[i])) == 0)
            return true;
    return false;
}

static tly_err setup_curve(tly_ledger *ld, void *sock, const char *domain, char *msg, size_t cap)
{
    char secret[TLY_Z85_KEY_CHARS + 1], pub[TLY_Z85_KEY_CHARS + 1];
    tly_err err = tly_auth_read_secret(ld->opts.curve_secret, secret, pub, msg, cap);
    if (err != TLY_OK)
        return err;
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, TLY_Z85_KEY_CHARS);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    return TLY_OK;
}

/* Queue bounds of one socket: replies or records queued per peer, and
 * requests read ahead from one peer (ledger_out.h has the byte budgets). */
static void set_queue_bounds(void *s, int type, int sndhwm, int rcvhwm)
{
    int one = 1;
    zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    if (type == ZMQ_ROUTER) /* a full or vanished peer is an error, not a silent drop */
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
}

/* Opens and binds one socket; sndhwm bounds what is queued per peer. */
static tly_err open_socket(tly_ledger *ld, int type, const char *ep, int sndhwm, void **out,
                           char *msg, size_t cap)
{
    void *s = zmq_socket(ld->ctx, type);
    if (!s)
        return TLY_NOMEM;
    int linger = 0;
    int64_t maxmsg = TLY_FRAME_BYTES_HARD_MAX;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    set_queue_bounds(s, type, sndhwm, TLY_LEDGER_PEER_REQUESTS_MAX);
    if (ld->auth) {
        const char *domain = type == ZMQ_PUB ? TLY_ZAP_DOMAIN_LOG : TLY_ZAP_DOMAIN;
        tly_err err = setup_curve(ld, s, domain, msg, cap);
        if (err != TLY_OK) {
            zmq_close(s);
            return err;
        }
    }
    if (zmq_bind(s, ep) != 0) {
        snprintf(msg, cap, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return TLY_UNAVAILABLE;
    }
    *out = s;
    return TLY_OK;
}

static tly_err check_endpoints(const tly_ledger_opts *o, char *msg, size_t cap)
{
    const char *eps[] = {o->ingest, o->events, o->log_read};
    for (size_t i = 0; i < 3; i++) {
        if (!o->curve_secret && !o->insecure && !tly_endpoint_is_loopback(eps[i])) {
            snprintf(msg, cap,
                     "refusing to bind %s without CURVE: use a loopback endpoint, "
                     "--curve-secret with --authorized-keys, or --insecure",
                     eps[i]);
            return TLY_USAGE;
        }
    }
    return TLY_OK;
}

static tly_err alloc_batch(batch *b)
{
    b->reqs = calloc(TLY_COMMIT_REQUESTS_MAX, sizeof *b->reqs);
    b->items = calloc(TLY_COMMIT_EVENTS_MAX, sizeof *b->items);
    b->fes = calloc(TLY_COMMIT_EVENTS_MAX, sizeof *b->fes);
    b->groups = calloc(TLY_COMMIT_REQUESTS_MAX, sizeof *b->groups);
    b->types = calloc(TLY_COMMIT_EVENTS_MAX, sizeof *b->types);
    if (!b->reqs || !b->items || !b->fes || !b->groups || !b->types)
        return TLY_NOMEM;
    for (uint32_t i = 0; i < TLY_COMMIT_REQUESTS_MAX; i++) {
        b->reqs[i].req = malloc(sizeof(tly_ingest_req));
        if (!b->reqs[i].req)
            return TLY_NOMEM;
    }
    return TLY_OK;
}

static void free_batch(batch *b)
{
    if (b->reqs)
        for (uint32_t i = 0; i < TLY_COMMIT_REQUESTS_MAX; i++)
            free(b->reqs[i].req);
    free(b->reqs);
    free(b->items);
    free(b->fes);
    free(b->groups);
    free(b->types);
}

static tly_err alloc_buffers(tly_ledger *ld)
{
    msgpack_sbuffer_init(&ld->sbuf);
    ld->spare.req = malloc(sizeof(tly_ingest_req));
    if (!ld->spare.req)
        return TLY_NOMEM;
    for (int i = 0; i < 2; i++)
        if (alloc_batch(&ld->batches[i]) != TLY_OK)
            return TLY_NOMEM;
    ld->filling = &ld->batches[0];
    return TLY_OK;
}

static tly_err open_log(tly_ledger *ld, char *msg, size_t cap)
{
    char dir[TLY_PATH_BYTES_MAX];
    if (tly_layout_log(ld->opts.data, dir, sizeof dir) != TLY_OK) {
        snprintf(msg, cap, "data directory path too long");
        return TLY_USAGE;
    }
    if (mkdir(ld->opts.data, TLY_DIR_MODE) != 0 && errno != EEXIST) {
        snprintf(msg, cap, "cannot create %s: %s", ld->opts.data, strerror(errno));
        return TLY_STORAGE;
    }
    int flags = TLY_LOG_WRITE | (ld->opts.no_sync ? TLY_LOG_NO_SYNC : 0);
    tly_err err = tly_log_open(dir, flags, &ld->log);
    if (err != TLY_OK)
        snprintf(msg, cap, "cannot open the log in %s: %s", dir, tly_strerror(err));
    return err;
}

/* --replicate: the stream, the copy or catch-up of [N1] [N3], then every
 * commit goes through the stream first [N2]. */
static int takeover_after_ms(const tly_ledger *ld);

static tly_err open_replication(tly_ledger *ld, char *msg, size_t cap)
{
    if (!ld->opts.replicate)
        return TLY_OK;
    tly_repl_opts ro = {ld->opts.replicate, ld->opts.stream, ld->opts.replicas, false, NULL};
    tly_err err = tly_repl_open(&ro, &ld->repl, msg, cap);
    if (err == TLY_OK)
        err = tly_repl_attach(ld->repl, ld->log, msg, cap);
    ld->standby = ld->opts.standby;
    if (err == TLY_OK && !ld->standby)
        err = tly_lease_start(ld->repl, ld->name, takeover_after_ms(ld), 0, &ld->lease, msg, cap);
    return err;
}

static int takeover_after_ms(const tly_ledger *ld)
{
    return ld->opts.takeover_after_ms > 0 ? ld->opts.takeover_after_ms
                                          : (int)TLY_TAKEOVER_AFTER_S_DEFAULT * 1000;
}

/* This ledger's name in the lease: --name, else HOST:DATA-DIR. */
static void make_name(tly_ledger *ld)
{
    if (ld->opts.name) {
        snprintf(ld->name, sizeof ld->name, "%s", ld->opts.name);
        return;
    }
    char host[128] = "localhost", dir[TLY_PATH_BYTES_MAX];
    gethostname(host, sizeof host - 1);
    if (!realpath(ld->opts.data, dir))
        snprintf(dir, sizeof dir, "%s", ld->opts.data);
    char full[sizeof host + sizeof dir + 2];
    snprintf(full, sizeof full, "%s:%s", host, dir);
    /* A longer name keeps its end: the data directory tells ledgers apart. */
    size_t len = strlen(full), keep = sizeof ld->name - 1;
    memcpy(ld->name, full + (len > keep ? len - keep : 0), (len > keep ? keep : len) + 1);
}

/* A standby's follower, reporting to follow_pair. */
static tly_err start_follower(tly_ledger *ld)
{
    /* A pair of its own, bound at a new address: a PAIR socket takes one
     * peer, and the previous follower's, closed just before (a take-over
     * that failed at once), may not have left it yet. The new follower's
     * connection was then refused, its sends queued until they blocked,
     * and its take-over never reached this thread: with both ledgers of
     * `nats-soak.sh 30 DIR nodes` so, nobody wrote again. */
    char name[80];
    snprintf(name, sizeof name, "inproc://tally-follow-%p-%u", (void *)ld, ++ld->follow_gen);
    if (ld->follow_pair) {
        int linger = 0;
        zmq_setsockopt(ld->follow_pair, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(ld->follow_pair);
    }
    ld->follow_pair = zmq_socket(ld->ctx, ZMQ_PAIR);
    if (!ld->follow_pair || zmq_bind(ld->follow_pair, name) != 0)
        return TLY_NOMEM;
    int after_ms = ld->opts.no_takeover ? -1 : takeover_after_ms(ld);
    return tly_follower_start(ld->repl, ld->log, ld->name, after_ms, ld->ctx, name, &ld->follower);
}

/* ---- metrics ---- */

/* Registers every series up front, one per event type and per wire error
 * code, so a scrape shows zeros rather than missing series and the hot
 * path never registers. */
static void register_metrics(tly_ledger *ld)
{
    tly_metrics *m = ld->opts.metrics;
    ledger_metrics *lm = &ld->metrics;
    for (int t = 0; t < TLY_EV_COUNT; t++) {
        const char *type = tly_ev_type_name((tly_ev_type)t);
        lm->appended[t] =
            tly_metrics_counter(m, "tally_ledger_events_appended_total",
                                "Events appended to the log, by event type.", "type", type);
        lm->duplicates[t] = tly_metrics_counter(
            m, "tally_ledger_events_duplicate_total",
            "Events acknowledged as duplicates of one already in the log (same source, id "
            "and bytes), by event type.",
            "type", type);
    }
    for (int e = TLY_MALFORMED; e <= TLY_UNAVAILABLE; e++) {
        lm->rejected[e] = tly_metrics_counter(
            m, "tally_ledger_events_rejected_total",
            "Events of accepted requests refused, by error code (SPEC section 4).", "code",
            tly_err_name((tly_err)e));
        lm->requests_rejected[e] = tly_metrics_counter(
            m, "tally_ledger_requests_rejected_total",
            "Ingest requests refused whole (malformed, forbidden, too large, shutting down), "
            "by error code.",
            "code", tly_err_name((tly_err)e));
    }
    lm->requests = tly_metrics_counter(m, "tally_ledger_requests_total",
                                       "Ingest requests answered.", NULL, NULL);
    lm->commit_events =
        tly_metrics_histogram(m, "tally_ledger_group_commit_events",
                              "Events in one group commit (every event of the requests it took).",
                              NULL, NULL, &tly_metrics_sizes);
    lm->commit_seconds =
        tly_metrics_histogram(m, "tally_ledger_commit_duration_seconds",
                              "Time one group commit took to append and sync its events.", NULL,
                              NULL, &tly_metrics_seconds);
    lm->head = tly_metrics_gauge(m, "tally_ledger_head_seq",
                                 "Seq of the last record committed (0: empty log).", NULL, NULL);
}

/* Counts a finished batch: its requests, their events' outcomes, the
 * commit's size and time, the head. */
static void count_batch(tly_ledger *ld, const batch *b)
{
    ledger_metrics *lm = &ld->metrics;
    if (!ld->opts.metrics)
        return;
    tly_metric_add(lm->requests, b->req_count);
    for (uint32_t r = 0; r < b->req_count; r++)
        if (b->reqs[r].whole_err > TLY_OK && b->reqs[r].whole_err < TLY_ERR_COUNT)
            tly_metric_add(lm->requests_rejected[b->reqs[r].whole_err], 1);
    for (uint32_t k = 0; k < b->item_count; k++) {
        const tly_log_item *it = &b->items[k];
        if (it->err == TLY_OK && b->types[k] < TLY_EV_COUNT)
            tly_metric_add(it->dup ? lm->duplicates[b->types[k]] : lm->appended[b->types[k]], 1);
        else if (it->err > TLY_OK && it->err < TLY_ERR_COUNT)
            tly_metric_add(lm->rejected[it->err], 1);
    }
    if (b->item_count > 0) {
        tly_metric_observe(lm->commit_events, b->item_count);
        tly_metric_observe(lm->commit_seconds, b->append_ns);
    }
    tly_metric_set(lm->head, (int64_t)b->head_after);
}

/* recorded_ms of record seq (0 for an empty log or on a read error: the
 * append itself still keeps recorded time from decreasing). */
static int64_t head_recorded_ms(tly_log *log, uint64_t seq)
{
    tly_log_reader *rd = NULL;
    tly_record rec;
    int64_t ms = 0;
    if (seq > 0 && tly_log_reader_open(log, seq, &rd) == TLY_OK &&
        tly_log_reader_next(rd, &rec) == TLY_OK)
        ms = rec.recorded_ms;
    tly_log_reader_close(rd);
    return ms;
}

tly_err tly_ledger_start(const tly_ledger_opts *opts, tly_ledger **out, char *msg, size_t cap)
{
    tly_err err = check_endpoints(opts, msg, cap);
    if (err != TLY_OK)
        return err;
    tly_ledger *ld = calloc(1, sizeof *ld);
    if (!ld)
        return TLY_NOMEM;
    atomic_init(&ld->handed_over, NULL);
    atomic_init(&ld->handed_back, false);
    ld->opts = *opts;
    make_name(ld);
    tly__outq_malloc_setup();
    tly__outq_init(&ld->replies, TLY_LEDGER_REPLIES_BYTES_MAX, "replies");
    tly__outq_init(&ld->published, TLY_LEDGER_EVENTS_BYTES_MAX, "events");
    ld->ctx = zmq_ctx_new();
    err = alloc_buffers(ld);
    if (err == TLY_OK && opts->authorized_keys) {
        err = tly_auth_load(opts->authorized_keys, &ld->auth, msg, cap);
        if (err == TLY_OK)
            err = tly_auth_start(ld->auth, ld->ctx);
    }
    if (err == TLY_OK)
        err = open_log(ld, msg, cap);
    if (err == TLY_OK)
        err = open_replication(ld, msg, cap);
    /* The head is read before a standby's follower starts: from then on
     * the follower appends on its own thread and sends each new head here
     * (read after it, the head was read while the follower wrote it). */
    if (err == TLY_OK) {
        tly_log_head(ld->log, &ld->head, NULL);
        ld->recorded_ms = head_recorded_ms(ld->log, ld->head);
    }
    /* A standby follows before it is reachable: a promote asked of it once
     * it is (tally ledger promote) is one its follower counts as new. */
    if (err == TLY_OK && ld->standby)
        err = start_follower(ld);
    if (err == TLY_OK)
        err = open_socket(ld, ZMQ_ROUTER, opts->ingest, TLY_LEDGER_PEER_REPLIES_MAX, &ld->ingest,
                          msg, cap);
    if (err == TLY_OK)
        err = open_socket(ld, ZMQ_PUB, opts->events, TLY_EVENTS_HWM, &ld->events, msg, cap);
    if (err == TLY_OK)
        err = open_socket(ld, ZMQ_ROUTER, opts->log_read, TLY_LEDGER_LOGREAD_PEER_REPLIES_MAX,
                          &ld->logread, msg, cap);
    if (err != TLY_OK) {
        tly_ledger_stop(ld);
        return err;
    }
    register_metrics(ld);
    tly_metric_set(ld->metrics.head, (int64_t)ld->head);
    uint64_t head = ld->head;
    tly_logf(TLY_LOG_INFO, "ledger",
             "serving ingest %s, events %s, log-read %s; head seq %llu%s%s%s%s", opts->ingest,
             opts->events, opts->log_read, (unsigned long long)head,
             opts->no_sync ? "; NO SYNC" : "", ld->auth ? "; CURVE" : "",
             !ld->repl     ? ""
             : ld->standby ? "; standby of stream "
                           : "; replicated to stream ",
             ld->repl ? tly_repl_stream(ld->repl) : "");
    *out = ld;
    return TLY_OK;
}

void tly_ledger_stop(tly_ledger *ld)
{
    if (!ld)
        return;
    if (ld->ingest) {
        /* Give the last replies (the batch in hand, `unavailable` answers) a
         * moment to leave before the socket goes. */
        int linger = TLY_LEDGER_LINGER_MS;
        zmq_setsockopt(ld->ingest, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(ld->ingest);
    }
    if (ld->events)
        zmq_close(ld->events);
    if (ld->logread)
        zmq_close(ld->logread);
    stop_worker(ld);
    tly_follower_stop(ld->follower);
    tly_lease_stop(ld->lease);
    if (ld->follow_pair)
        zmq_close(ld->follow_pair);
    if (ld->ctx)
        zmq_ctx_term(ld->ctx);
    tly_auth_free(ld->auth);
    tly_log_close(ld->log);
    tly_repl_close(ld->repl);
    for (int i = 0; i < 2; i++)
        free_batch(&ld->batches[i]);
    free(ld->spare.req);
    msgpack_sbuffer_destroy(&ld->sbuf);
    free(ld);
}

/* ---- receiving ---- */

/* Receives one multipart message into p (envelope + body). Returns 1 when a
 * message was read, 0 when none is waiting, -1 on error. Routing frames
 * past TLY_ENVELOPE_FRAMES_MAX are dropped and p->env_cut set: the request
 * is then refused, answered over the envelope kept (its first frame is the
 * connected peer's). */
static int recv_request(void *sock, pending *p, int flags)
{
    p->env_count = 0;
    p->env_cut = false;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, flags) < 0) {
            zmq_msg_close(&m);
            for (uint32_t i = 0; i < p->env_count; i++)
                zmq_msg_close(&p->env[i]);
            return zmq_errno() == EAGAIN ? 0 : -1;
        }
        flags = 0; /* the rest of a multipart message is already here */
        if (!zmq_msg_more(&m)) {
            p->body = m;
            return 1;
        }
        if (p->env_count < TLY_ENVELOPE_FRAMES_MAX) {
            p->env[p->env_count++] = m;
        } else {
            zmq_msg_close(&m); /* too deep an envelope: refused */
            p->env_cut = true;
        }
    }
}

static void release_request(pending *p)
{
    for (uint32_t i = 0; i < p->env_count; i++)
        zmq_msg_close(&p->env[i]);
    zmq_msg_close(&p->body);
    p->env_count = 0;
}

/* Sends a reply within the replies budget. A peer that went away, or does
 * not read, cannot be answered; it will resend. */
static void send_reply(tly_ledger *ld, void *sock, pending *p, const msgpack_sbuffer *sb)
{
    tly__outq_reply(&ld->replies, sock, p->env, p->env_count, sb->data, sb->size);
}

static void whole_error(pending *p, tly_err err, const char *msg)
{
    p->whole_err = err;
    snprintf(p->whole_msg, sizeof p->whole_msg, "%s", msg);
}

/* The message of a request refused for its envelope (recv_request). */
static void envelope_message(char *out, size_t cap)
{
    snprintf(out, cap, "more than %u routing frames before the request (expected one frame)",
             TLY_ENVELOPE_FRAMES_MAX);
}

/* Decides the request's source: the CURVE identity, or the declared one. */
static void resolve_source(tly_ledger *ld, pending *p)
{
    tly_ingest_req *r = p->req;
    const char *user = ld->auth ? zmq_msg_gets(&p->body, "User-Id") : NULL;
    if (ld->auth) {
        if (!user) {
            whole_error(p, TLY_FORBIDDEN, "connection is not authenticated");
            return;
        }
        if (r->source.ptr && !tly_str_eq(r->source, user)) {
            whole_error(p, TLY_FORBIDDEN, "declared source differs from the authenticated key");
            return;
        }
        snprintf(p->source, sizeof p->source, "%s", user);
        return;
    }
    if (!r->source.ptr) {
        whole_error(p, TLY_MALFORMED, "request has no \"source\" (required without CURVE)");
        return;
    }
    if (!tly_source_valid(r->source.ptr, r->source.len)) {
        whole_error(p, TLY_MALFORMED,
                    "\"source\" must be 1..64 bytes of UTF-8 without control characters");
        return;
    }
    memcpy(p->source, r->source.ptr, r->source.len);
    p->source[r->source.len] = '\0';
}

/* Validates the events of one request into the batch's items. */
static void take_events(tly_ledger *ld, batch *b, pending *p)
{
    unsigned roles = ld->auth ? tly_auth_roles(ld->auth, p->source) : TLY_ROLE_FINANCE;
    p->first_item = b->item_count;
    tly_str source = {p->source, (uint32_t)strlen(p->source)};
    for (uint32_t i = 0; i < p->req->event_count; i++) {
        tly_log_item *it = &b->items[b->item_count];
        tly_field_error *fe = &b->fes[b->item_count];
        tly_event ev;
        memset(it, 0, sizeof *it);
        fe->field[0] = fe->message[0] = '\0';
        it->source = source;
        it->event = p->req->events[i].ptr;
        it->event_len = p->req->events[i].len;
        it->err = tly_event_decode(it->event, it->event_len, b->now_ms, &ev, fe);
        if (it->err == TLY_OK) {
            it->id = ev.id;
            b->types[b->item_count] = (uint8_t)ev.type;
            if (!tly_auth_allows(roles, &ev)) {
                it->err = TLY_FORBIDDEN;
                snprintf(fe->message, sizeof fe->message, "source '%s' may not send %s events",
                         p->source, tly_ev_type_name(ev.type));
            }
        }
        b->item_count++;
    }
}

/* Reads and decodes one waiting request into batch b. Returns false when
 * none is waiting. */
static bool take_request(tly_ledger *ld, batch *b)
{
    pending *p = &b->reqs[b->req_count];
    if (recv_request(ld->ingest, p, ZMQ_DONTWAIT) <= 0)
        return false;
    b->req_count++;
    p->whole_err = TLY_OK;
    p->source[0] = '\0';
    p->first_item = b->item_count;
    p->whole_err = tly_wire_ingest_decode(zmq_msg_data(&p->body), zmq_msg_size(&p->body), p->req,
                                          p->whole_msg, sizeof p->whole_msg);
    if (p->env_cut) {
        p->whole_err = TLY_MALFORMED;
        envelope_message(p->whole_msg, sizeof p->whole_msg);
    }
    if (p->whole_err == TLY_OK)
        resolve_source(ld, p);
    if (p->whole_err == TLY_OK)
        take_events(ld, b, p);
    else
        p->req->event_count = 0;
    return true;
}

static bool batch_full(const batch *b)
{
    return b->req_count >= TLY_COMMIT_REQUESTS_MAX ||
           b->item_count + TLY_BATCH_EVENTS_MAX > TLY_COMMIT_EVENTS_MAX;
}

/* The recorded time the next batch will get: the wall clock, but never
 * before the previous batch's (the log keeps recorded_ms from decreasing
 * [D12]). Events are validated against it, so their `at` bound is the
 * recorded time even after the wall clock stepped back. */
static int64_t recorded_time(tly_ledger *ld)
{
    int64_t now = tly_now_ms();
    if (now < ld->recorded_ms)
        now = ld->recorded_ms;
    ld->recorded_ms = now;
    return now;
}

/* Drains waiting requests into the filling batch while they fit. It stops
 * after the request in hand when the commit thread is idle, or has just
 * handed its batch back: the commit thread then gets work at once, and
 * appends while the rest is decoded. */
static void drain_ingest(tly_ledger *ld)
{
    batch *b = ld->filling;
    if (b->req_count == 0)
        b->now_ms = recorded_time(ld);
    while (!batch_full(b) && take_request(ld, b))
        if (!ld->committing || atomic_load(&ld->handed_back))
            break;
}

/* True when a request waits on the ingest socket. */
static bool ingest_waiting(tly_ledger *ld)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(ld->ingest, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* ---- committing (commit thread) ---- */

static void build_groups(batch *b)
{
    b->group_count = 0;
    for (uint32_t r = 0; r < b->req_count; r++) {
        pending *p = &b->reqs[r];
        if (p->whole_err != TLY_OK || p->req->event_count == 0)
            continue;
        b->groups[b->group_count].first = p->first_item;
        b->groups[b->group_count].count = p->req->event_count;
        b->groups[b->group_count].atomic = p->req->atomic;
        b->group_count++;
    }
}

/* [N4] a writer whose lease is not fresh (or taken) acknowledges nothing. */
static tly_err refuse_without_lease(tly_ledger *ld)
{
    tly_logf(TLY_LOG_ERROR, "ledger", "%s: the batch is unavailable, nothing acknowledged",
             tly_lease_deposed(ld->lease)
                 ? "deposed (another ledger holds the writer's lease)"
                 : "the writer's lease was not renewed in time (no quorum?)");
    return TLY_UNAVAILABLE;
}

/* The message of an event refused because the stream did not acknowledge
 * its batch [N2] (the reason is in the ledger's log). */
static void name_unavailable(batch *b)
{
    for (uint32_t k = 0; k < b->item_count; k++)
        if (b->items[k].err == TLY_UNAVAILABLE && !b->fes[k].message[0])
            snprintf(b->fes[k].message, sizeof b->fes[k].message, "%s",
                     "the replication stream did not acknowledge this batch: nothing of it is "
                     "stored, send it again");
}

/* With replication, after a batch the stream did not acknowledge whole:
 * the log takes what the stream holds beyond its head before anything is
 * resolved against it [N3], so a resend is a dup with its original seq.
 * TLY_UNAVAILABLE while the stream does not answer. */
static tly_err catch_up_if_stale(tly_ledger *ld)
{
    if (!tly_repl_stale(ld->repl))
        return TLY_OK;
    char msg[256] = "";
    tly_err err = tly_repl_catch_up(ld->repl, ld->log, msg, sizeof msg);
    if (err != TLY_OK)
        tly_logf(TLY_LOG_ERROR, "ledger", "catch-up from the stream failed: %s", msg);
    return err == TLY_OK || err == TLY_CORRUPT ? err : TLY_UNAVAILABLE;
}

/* Appends one batch, touching only the log handle (and its replica) and
 * the batch's items and groups: on the commit thread, or on the main thread while the commit
 * thread is idle (submit_or_commit), never on both at once. */
static void commit_batch(tly_ledger *ld, batch *b)
{
    tly_log *log = ld->log;
    uint8_t hash[TLY_HASH_BYTES];
    build_groups(b);
    b->err = TLY_OK;
    uint64_t t0 = tly_mono_ns();
    if (b->item_count > 0 && ld->lease && !tly_lease_valid(ld->lease))
        b->err = refuse_without_lease(ld);
    if (b->item_count > 0 && ld->repl && b->err == TLY_OK)
        b->err = catch_up_if_stale(ld);
    tly_log_head(log, &b->head_before, hash);
    if (b->item_count > 0 && b->err == TLY_OK)
        b->err = tly_log_append(log, b->now_ms, b->items, b->item_count, b->groups, b->group_count);
    if (b->err != TLY_OK && ld->repl)
        tly_repl_set_stale(ld->repl); /* the stream may hold what the log does not */
    b->append_ns = tly_mono_ns() - t0;
    if (b->err != TLY_OK) {
        tly_logf(TLY_LOG_ERROR, "ledger", "commit of %u events failed: %s", b->item_count,
                 tly_strerror(b->err));
        /* Never acknowledge what the store did not decide: an event still
         * marked OK without a seq was not appended. */
        tly_err code = b->err == TLY_UNAVAILABLE ? TLY_UNAVAILABLE : TLY_STORAGE;
        for (uint32_t k = 0; k < b->item_count; k++)
            if (b->items[k].err == TLY_OK && b->items[k].seq == 0)
                b->items[k].err = code;
        if (code == TLY_UNAVAILABLE)
            name_unavailable(b);
    }
    tly_log_head(log, &b->head_after, hash);
}

/* The commit thread: receives a batch pointer, commits it, sends it back.
 * A NULL pointer stops it. */
static void *worker_main(void *arg)
{
    tly_ledger *ld = arg;
    for (;;) {
        batch *b = NULL;
        if (zmq_recv(ld->worker_in, &b, sizeof b, 0) != (int)sizeof b || !b)
            break;
        batch *sent = atomic_load_explicit(&ld->handed_over, memory_order_acquire);
        TLY_ASSERT(sent == b);
        commit_batch(ld, b);
        /* Before the send: the main thread clears it after the receive. */
        atomic_store_explicit(&ld->handed_back, true, memory_order_release);
        zmq_send(ld->worker_out, &b, sizeof b, 0);
    }
    return NULL;
}

static tly_err start_worker(tly_ledger *ld)
{
    ld->to_worker = zmq_socket(ld->ctx, ZMQ_PAIR);
    ld->from_worker = zmq_socket(ld->ctx, ZMQ_PAIR);
    void *w_in = zmq_socket(ld->ctx, ZMQ_PAIR);
    void *w_out = zmq_socket(ld->ctx, ZMQ_PAIR);
    char name[64];
    snprintf(name, sizeof name, "inproc://tally-commit-%p", (void *)ld);
    /* The main thread uses to_worker/from_worker, the commit thread only
     * worker_in/worker_out (pthread_create orders their creation before
     * its first use). */
    if (!ld->to_worker || !ld->from_worker || !w_in || !w_out || zmq_bind(w_in, name) != 0 ||
        zmq_connect(ld->to_worker, name) != 0)
        return TLY_NOMEM;
    snprintf(name, sizeof name, "inproc://tally-done-%p", (void *)ld);
    if (zmq_bind(ld->from_worker, name) != 0 || zmq_connect(w_out, name) != 0)
        return TLY_NOMEM;
    ld->worker_in = w_in;
    ld->worker_out = w_out;
    if (pthread_create(&ld->worker, NULL, worker_main, ld) != 0)
        return TLY_NOMEM;
    ld->worker_running = true;
    return TLY_OK;
}

/* Stops the commit thread (after the batch it holds) and closes the pairs. */
static void stop_worker(tly_ledger *ld)
{
    if (ld->worker_running) {
        batch *none = NULL;
        zmq_send(ld->to_worker, &none, sizeof none, 0);
        pthread_join(ld->worker, NULL);
        ld->worker_running = false;
    }
    void **socks[] = {&ld->to_worker, &ld->from_worker, &ld->worker_in, &ld->worker_out};
    for (size_t i = 0; i < 4; i++) {
        if (*socks[i]) {
            int linger = 0;
            zmq_setsockopt(*socks[i], ZMQ_LINGER, &linger, sizeof linger);
            zmq_close(*socks[i]);
            *socks[i] = NULL;
        }
    }
}

/* ---- replying (main thread) ---- */

static void result_of(const batch *b, uint32_t k, tly_ingest_result *res)
{
    const tly_log_item *it = &b->items[k];
    memset(res, 0, sizeof *res);
    res->err = it->err;
    res->seq = it->seq;
    res->dup = it->dup;
    if (it->err == TLY_OK)
        return;
    snprintf(res->field, sizeof res->field, "%s", b->fes[k].field);
    /* The log store refuses a source or id outside its limits with a bare
     * bad_field (the checks before it make that unreachable); name it. */
    if (!res->field[0] && (it->err == TLY_BAD_FIELD || it->err == TLY_MISSING_FIELD))
        snprintf(res->field, sizeof res->field, "%s",
                 tly_source_valid(it->source.ptr, it->source.len) ? "id" : "source");
    snprintf(res->message, sizeof res->message, "%s",
             b->fes[k].message[0] ? b->fes[k].message : tly_strerror(it->err));
}

static void reply_request(tly_ledger *ld, const batch *b, pending *p)
{
    msgpack_sbuffer_clear(&ld->sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ld->sbuf, msgpack_sbuffer_write);
    if (p->whole_err != TLY_OK) {
        tly_wire_reply_error(&pk, p->req->has_req, p->req->req, p->whole_err, p->whole_msg);
    } else {
        tly_wire_reply_begin(&pk, p->req->req, p->req->event_count);
        for (uint32_t i = 0; i < p->req->event_count; i++) {
            tly_ingest_result res;
            result_of(b, p->first_item + i, &res);
            tly_wire_reply_result(&pk, &res);
        }
    }
    send_reply(ld, ld->ingest, p, &ld->sbuf);
}

/* The topic of the record seq, stored as raw: the type of the item that
 * appended it, known since it was validated (*k walks the batch's items in
 * order along the records); else the record's own event's. */
static const char *record_topic(const batch *b, uint32_t *k, uint64_t seq, const uint8_t *raw,
                                size_t raw_len)
{
    while (*k < b->item_count && (b->items[*k].err != TLY_OK || b->items[*k].dup))
        (*k)++;
    if (*k < b->item_count && b->items[*k].seq == seq)
        return tly_ev_type_name((tly_ev_type)b->types[(*k)++]);
    tly_record rec;
    tly_ev_type type;
    tly_str id;
    if (tly_record_decode(raw, raw_len, &rec) == TLY_OK &&
        tly_event_peek_id(rec.event, rec.event_len, &type, &id) == TLY_OK)
        return tly_ev_type_name(type);
    return "unknown";
}

/* Publishes the records batch b appended, head_before+1..head_after: its
 * new items (not dups, not failed), in item order. The records are read
 * back from the log as stored (the chain hash is the commit thread's), and
 * not decoded again: the ledger validated every event in them. */
static void publish(tly_ledger *ld, const batch *b)
{
    tly_log_reader *rd = NULL;
    if (tly_log_reader_open(ld->log, b->head_before + 1, &rd) != TLY_OK)
        return;
    uint64_t seq;
    const uint8_t *raw;
    size_t len;
    uint32_t k = 0;
    while (tly_log_reader_next_raw(rd, &seq, &raw, &len) == TLY_OK && seq <= b->head_after)
        tly__outq_publish(&ld->published, ld->events, record_topic(b, &k, seq, raw, len), raw, len);
    tly_log_reader_close(rd);
}

/* A committed batch came back: count, acknowledge, release, publish. The
 * metrics count the batch before any producer hears of it, so a scrape
 * after an acknowledgement includes it (test_metrics saw the head gauge
 * one batch behind when it was counted after the replies). */
static void finish_batch(tly_ledger *ld, batch *b)
{
    count_batch(ld, b);
    for (uint32_t r = 0; r < b->req_count; r++) {
        reply_request(ld, b, &b->reqs[r]);
        release_request(&b->reqs[r]);
    }
    if (b->head_after > b->head_before)
        publish(ld, b);
    if (ld->promoted_ns && b->head_after > b->head_before) {
        /* [N4] the take-over is over for producers once one is acknowledged */
        tly_logf(TLY_LOG_INFO, "ledger",
                 "first acknowledgement as the writer, seq %llu, %llu ms "
                 "after taking over",
                 (unsigned long long)b->head_after,
                 (unsigned long long)((tly_mono_ns() - ld->promoted_ns) / 1000000u));
        ld->promoted_ns = 0;
    }
    ld->head = b->head_after;
    b->req_count = 0;
    b->item_count = 0;
}

/* Hands the filling batch to the commit thread when it is idle. */
static void submit(tly_ledger *ld)
{
    if (ld->committing || ld->filling->req_count == 0)
        return;
    ld->committing = ld->filling;
    ld->filling = ld->committing == &ld->batches[0] ? &ld->batches[1] : &ld->batches[0];
    batch *b = ld->committing;
    atomic_store_explicit(&ld->handed_over, b, memory_order_release);
    zmq_send(ld->to_worker, &b, sizeof b, 0);
}

/* After a drain: a lone small request (nothing committing, nothing else
 * waiting) is committed and acknowledged right here, the rest goes to the
 * commit thread. Either way the acknowledgement follows the commit. */
static void submit_or_commit(tly_ledger *ld)
{
    batch *b = ld->filling;
    if (!ld->committing && b->req_count == 1 && b->item_count <= TLY_LEDGER_INLINE_EVENTS_MAX &&
        !ingest_waiting(ld)) {
        commit_batch(ld, b);
        finish_batch(ld, b);
        return;
    }
    submit(ld);
}

/* Waits for the batch in the commit thread (if any) and finishes it. The
 * batch filled meanwhile goes to the commit thread first, so that it
 * appends and syncs while this one is answered and published (b is then
 * the filling batch, empty once finished). */
static void collect_committed(tly_ledger *ld, int flags)
{
    batch *b = NULL;
    if (!ld->committing || zmq_recv(ld->from_worker, &b, sizeof b, flags) != (int)sizeof b)
        return;
    bool back = atomic_exchange_explicit(&ld->handed_back, false, memory_order_acquire);
    TLY_ASSERT(back);
    ld->committing = NULL;
    submit(ld);
    finish_batch(ld, b);
}

/* ---- log-read ---- */

static void logread_reply(tly_ledger *ld, uint64_t from, uint32_t max)
{
    uint64_t head = ld->head;
    if (max > TLY_LOGREAD_RECORDS_MAX)
        max = TLY_LOGREAD_RECORDS_MAX;
    if (from == 0)
        from = 1;
    /* Count what fits first, so the array header is exact. Only records up
     * to the acknowledged head are served. */
    uint32_t n = 0;
    size_t bytes = 64;
    tly_log_reader *rd = NULL;
    tly_record rec;
    if (from <= head && tly_log_reader_open(ld->log, from, &rd) == TLY_OK) {
        /* The first record is served whatever its size (the reply may then
         * exceed TLY_FRAME_BYTES_MAX, up to TLY_LOGREAD_REPLY_BYTES_MAX), so a
         * reader always moves on; more records only while the reply fits. */
        while (n < max && tly_log_reader_next(rd, &rec) == TLY_OK && rec.seq <= head &&
               (n == 0 || bytes + rec.raw_len + 5 <= TLY_FRAME_BYTES_MAX)) {
            bytes += rec.raw_len + 5;
            n++;
        }
        tly_log_reader_close(rd);
    }
    msgpack_sbuffer_clear(&ld->sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ld->sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "records", 7);
    msgpack_pack_array(&pk, n);
    if (n > 0 && tly_log_reader_open(ld->log, from, &rd) == TLY_OK) {
        for (uint32_t i = 0; i < n && tly_log_reader_next(rd, &rec) == TLY_OK; i++)
            msgpack_pack_bin_with_body(&pk, rec.raw, rec.raw_len);
        tly_log_reader_close(rd);
    }
    msgpack_pack_str_with_body(&pk, "head", 4);
    msgpack_pack_uint64(&pk, head);
}

/* With CURVE, only keys with a reading role may read the log. */
static bool logread_allowed(tly_ledger *ld, pending *p)
{
    if (!ld->auth)
        return true;
    const char *user = zmq_msg_gets(&p->body, "User-Id");
    return user && tly_auth_reads_log(tly_auth_roles(ld->auth, user));
}

static void logread_error(tly_ledger *ld, tly_err err, const char *message)
{
    msgpack_sbuffer_clear(&ld->sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ld->sbuf, msgpack_sbuffer_write);
    tly_wire_reply_error(&pk, false, 0, err, message);
}

static void serve_logread(tly_ledger *ld)
{
    pending *p = &ld->spare;
    for (uint32_t turn = 0; turn < TLY_LOGREAD_PER_TURN; turn++) {
        if (recv_request(ld->logread, p, ZMQ_DONTWAIT) <= 0)
            return;
        uint64_t from = 0;
        uint32_t max = 0;
        tly_err err =
            tly_wire_logread_decode(zmq_msg_data(&p->body), zmq_msg_size(&p->body), &from, &max);
        /* The head alone (max 0) is no one's data: any authenticated key may
         * ask it (`tally send` does, to tell its own resends from others'). */
        if (p->env_cut) {
            char msg[128];
            envelope_message(msg, sizeof msg);
            logread_error(ld, TLY_MALFORMED, msg);
        } else if (err == TLY_OK && max > 0 && !logread_allowed(ld, p)) {
            logread_error(ld, TLY_FORBIDDEN,
                          "this key has no reading role (reader, auditor, finance)");
        } else if (err == TLY_OK) {
            logread_reply(ld, from, max);
        } else {
            logread_error(ld, err, "expected {\"from\": seq, \"max\": n}");
        }
        send_reply(ld, ld->logread, p, &ld->sbuf);
        release_request(p);
    }
}

/* Answers every request still queued with `unavailable`. */
static void refuse_queued(tly_ledger *ld, const char *why)
{
    pending *p = &ld->spare;
    while (recv_request(ld->ingest, p, ZMQ_DONTWAIT) > 0) {
        tly_wire_ingest_decode(zmq_msg_data(&p->body), zmq_msg_size(&p->body), p->req, NULL, 0);
        msgpack_sbuffer_clear(&ld->sbuf);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &ld->sbuf, msgpack_sbuffer_write);
        tly_wire_reply_error(&pk, p->req->has_req, p->req->req, TLY_UNAVAILABLE, why);
        tly_metric_add(ld->metrics.requests, 1);
        tly_metric_add(ld->metrics.requests_rejected[TLY_UNAVAILABLE], 1);
        send_reply(ld, ld->ingest, p, &ld->sbuf);
        release_request(p);
    }
}

/* Lets the events socket process its commands (ZMQ_EVENTS does): the loop
 * never polls it and, while the events budget is full, never sends on it.
 * Without this a stopped subscriber that left would keep its pipe and the
 * records queued for it (the whole budget) for good, no new subscriber would
 * be attached, and publishing would stop for everyone. */
static void service_events(tly_ledger *ld)
{
    int events;
    size_t len = sizeof events;
    zmq_getsockopt(ld->events, ZMQ_EVENTS, &events, &len);
}

/* Commits and acknowledges everything in hand: the batch in the commit
 * thread and the one being filled. */
static void finish_in_hand(tly_ledger *ld)
{
    collect_committed(ld, 0);
    submit(ld);
    collect_committed(ld, 0);
}

/* ---- standby and take-over [N4] ---- */

/* Publishes the records a follower or a catch-up appended, up to head. */
static void publish_followed(tly_ledger *ld, uint64_t head)
{
    if (head <= ld->head)
        return;
    batch none = {0};
    none.head_before = ld->head;
    none.head_after = head;
    publish(ld, &none);
    ld->head = head;
    tly_metric_set(ld->metrics.head, (int64_t)head);
}

/* The follower took the lease: catch up with the stream, then write. */
static void promote(tly_ledger *ld)
{
    uint64_t t0 = tly_mono_ns(), rev = tly_follower_lease_rev(ld->follower), head = 0;
    tly_follower_stop(ld->follower);
    ld->follower = NULL;
    char msg[256] = "";
    tly_err err = tly_repl_attach(ld->repl, ld->log, msg, sizeof msg);
    if (err == TLY_OK)
        err = tly_lease_start(ld->repl, ld->name, takeover_after_ms(ld), rev, &ld->lease, msg,
                              sizeof msg);
    tly_log_head(ld->log, &head, NULL);
    publish_followed(ld, head);
    if (err != TLY_OK) {
        tly_logf(TLY_LOG_ERROR, "ledger", "cannot take over: %s; staying a standby", msg);
        if (start_follower(ld) != TLY_OK)
            tly_logf(TLY_LOG_ERROR, "ledger", "cannot follow the stream again");
        return;
    }
    ld->standby = false;
    ld->promoted_ns = t0;
    tly_logf(TLY_LOG_INFO, "ledger",
             "now the writer of stream %s at seq %llu (caught up in %llu ms)",
             tly_repl_stream(ld->repl), (unsigned long long)head,
             (unsigned long long)((tly_mono_ns() - t0) / 1000000u));
}

/* A deposed writer, once nothing is in hand, becomes a standby: it follows
 * the stream and may be promoted again later. */
static void step_down(tly_ledger *ld)
{
    if (!ld->lease || !tly_lease_deposed(ld->lease) || ld->committing || ld->filling->req_count)
        return;
    tly_lease_stop(ld->lease);
    ld->lease = NULL;
    ld->standby = true;
    tly_log_set_replica(ld->log, NULL);
    if (start_follower(ld) != TLY_OK)
        tly_logf(TLY_LOG_ERROR, "ledger", "cannot follow the stream");
    tly_logf(TLY_LOG_INFO, "ledger", "deposed: following stream %s as a standby from seq %llu",
             tly_repl_stream(ld->repl), (unsigned long long)ld->head);
}

/* What the follower sent: a new head, or UINT64_MAX when it took over. */
static void serve_follower(tly_ledger *ld)
{
    uint64_t head = 0;
    while (ld->follow_pair &&
           zmq_recv(ld->follow_pair, &head, sizeof head, ZMQ_DONTWAIT) == (int)sizeof head) {
        if (head == UINT64_MAX) {
            promote(ld);
            return;
        }
        publish_followed(ld, head);
    }
}

/* Ingest of a standby (or a deposed writer): all `unavailable`. */
static bool refusing_ingest(tly_ledger *ld)
{
    return ld->standby || (ld->lease && tly_lease_deposed(ld->lease));
}

tly_err tly_ledger_run(tly_ledger *ld, tly_stop_flag *stop)
{
    tly_err err = start_worker(ld);
    if (err != TLY_OK)
        return err;
    zmq_pollitem_t items[4] = {{ld->from_worker, 0, ZMQ_POLLIN, 0},
                               {ld->logread, 0, ZMQ_POLLIN, 0},
                               {ld->ingest, 0, ZMQ_POLLIN, 0},
                               {ld->follow_pair, 0, ZMQ_POLLIN, 0}};
    while (!atomic_load(stop)) {
        items[3].socket = ld->follow_pair; /* created by the first follower */
        /* While the filling batch is full, leave new requests queued in
         * ZeroMQ until the commit thread takes it. */
        int n = batch_full(ld->filling) ? 2 : 3;
        if (ld->follow_pair && n == 3)
            n = 4;
        int rc = zmq_poll(items, n, TLY_LEDGER_POLL_MS);
        if (rc == 0) {
            tly_outq *queues[] = {&ld->replies, &ld->published};
            tly__outq_trim(queues, 2);
        }
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            tly_logf(TLY_LOG_ERROR, "ledger", "poll failed: %s", zmq_strerror(zmq_errno()));
            err = TLY_IO;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            collect_committed(ld, ZMQ_DONTWAIT);
        if (n >= 3 && (items[2].revents & ZMQ_POLLIN)) {
            if (refusing_ingest(ld))
                refuse_queued(ld, ld->standby ? "standby: this ledger follows the stream; "
                                                "send to the writer"
                                              : "deposed: another ledger is the writer");
            else
                drain_ingest(ld);
        }
        submit_or_commit(ld);
        if (n == 4 && (items[3].revents & ZMQ_POLLIN))
            serve_follower(ld);
        step_down(ld);
        if (items[1].revents & ZMQ_POLLIN)
            serve_logread(ld);
        service_events(ld);
    }
    finish_in_hand(ld);
    refuse_queued(ld, "ledger is shutting down");
    stop_worker(ld);
    tly_logf(TLY_LOG_INFO, "ledger", "stopped cleanly at seq %llu", (unsigned long long)ld->head);
    return err;
}
