/* ledger_repl.c — the log replicated into JetStream; see ledger_repl.h. */
#include "ledger_repl.h"

#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tly_assert.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_os.h"

_Static_assert(TLY_REPL_RECORD_BYTES_MAX <= INT32_MAX, "a record's length fits libnats' int");

/* One record of the batch in hand: its seq and where its bytes are in buf. */
typedef struct pub_rec {
    uint64_t seq;
    size_t off, len;
} pub_rec;

/* Acknowledgements of the batch in hand, counted by libnats' threads. */
typedef struct acks {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t lo, hi; /* the batch's seqs; an ack outside is a late one of an earlier batch */
    uint32_t ok, bad;
    bool open;              /* a batch is waiting for its acks */
    jsErrCode first_code;   /* of the first refusal */
    char first_text[160];   /* its text */
    uint64_t first_bad_seq; /* its record */
} acks;

struct tly_repl {
    natsConnection *nc; /* API calls, readers, the lease: reconnects when it breaks */
    jsCtx *js;
    /* The connection a batch is published on (rep_commit only): opened when
     * a batch needs it, never reconnected, closed when a batch is given up
     * on. With reconnection, libnats keeps what it could not send when the
     * connection broke and sends it once reconnected: a batch given up on
     * then kept landing after the catch-up that followed it, and a record
     * of the next batch whose expected seq matched where they ended landed
     * on top of them, after which no catch-up could take the stream
     * (test_replicate's node-killed case, a ctest -j2 run of 2026-12-06:
     * "seq 13774: its hash does not chain to the record before").
     * A fence in the stream itself was tried and does not hold on
     * nats-server 2.9: expected-last-subject-sequence (a subject per
     * writer epoch) is checked against what is stored before a record is
     * proposed, so a pipelined batch refuses its own second record; and
     * expected-last-msg-id (a chain of message ids) is checked against a
     * last id that a restarted replica rebuilds only from the records
     * within the duplicate window, so the replicas decided differently and
     * their streams diverged (test_no_quorum, the restarted node's 11..20
     * not the leader's). */
    natsConnection *pub_nc;
    jsCtx *pub_js;
    char urls[TLY_REPL_URLS_MAX * (TLY_REPL_URL_BYTES_MAX + 1)];
    char stream[TLY_REPL_STREAM_NAME_BYTES_MAX + 1];
    char subject[TLY_REPL_STREAM_NAME_BYTES_MAX + 8];
    int replicas;
    /* the batch in hand (tly_log_replica callbacks) */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    pub_rec *recs;
    uint32_t rec_count, rec_cap;
    acks acks;
    kvStore *kv; /* the lease bucket, once tly_repl_lease_open ran */
    bool no_create;
    bool stale;
    /* Attached as the stream's writer (tly_repl_attach): a catch-up that
     * finds the stream behind the log publishes the rest again. */
    bool writer;
    char last_error[480];
    /* A mirror's durable pull consumer [N6] (tly_repl_mirror and
     * tly_repl_follow name it); empty: an ordered consumer, the ledger's
     * own catch-up and standby. */
    char durable[TLY_REPL_DURABLE_BYTES_MAX + 1];
};

struct tly_repl_reader {
    natsSubscription *sub;
    natsMsg **msgs;   /* TLY_REPL_CHUNK_RECORDS, the last fetch's (ordered) */
    uint32_t count;   /* of msgs */
    bool pull;        /* a durable pull consumer: the messages are in list */
    natsMsgList list; /* pull: the last fetch */
    uint64_t next;    /* the seq expected next */
};

/* ---- options ---- */

static bool stream_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TLY_REPL_STREAM_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Splits urls at commas into list (copies into store); TLY_USAGE on a
 * list out of bounds. */
static tly_err split_urls(const char *urls, const char *flag,
                          char store[][TLY_REPL_URL_BYTES_MAX + 1], const char **list, int *count,
                          char *msg, size_t cap)
{
    int n = 0;
    const char *p = urls ? urls : "";
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > TLY_REPL_URL_BYTES_MAX || n == (int)TLY_REPL_URLS_MAX) {
            snprintf(msg, cap,
                     "%s takes 1 to %u server URLs of at most %u bytes, "
                     "separated by commas",
                     flag ? flag : "--replicate", TLY_REPL_URLS_MAX, TLY_REPL_URL_BYTES_MAX);
            return TLY_USAGE;
        }
        memcpy(store[n], p, len);
        store[n][len] = '\0';
        list[n] = store[n];
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *count = n;
    return TLY_OK;
}

tly_err tly_repl_check(const tly_repl_opts *o, char *msg, size_t cap)
{
    char store[TLY_REPL_URLS_MAX][TLY_REPL_URL_BYTES_MAX + 1];
    const char *list[TLY_REPL_URLS_MAX];
    int n;
    tly_err err = split_urls(o->urls, o->flag, store, list, &n, msg, cap);
    if (err != TLY_OK)
        return err;
    if (o->stream && !stream_name_ok(o->stream)) {
        snprintf(msg, cap, "--stream takes 1 to %u characters of A-Z, a-z, 0-9, _ and -",
                 TLY_REPL_STREAM_NAME_BYTES_MAX);
        return TLY_USAGE;
    }
    if (o->replicas < 0 || o->replicas > TLY_REPL_REPLICAS_MAX) {
        snprintf(msg, cap, "--replicas takes 1 to %d", TLY_REPL_REPLICAS_MAX);
        return TLY_USAGE;
    }
    return TLY_OK;
}

/* ---- acknowledgements ---- */

/* Seq of a record's bytes (0 when they do not decode). */
static uint64_t record_seq(const void *data, int len)
{
    tly_record rec;
    return len > 0 && tly_record_decode(data, (size_t)len, &rec) == TLY_OK ? rec.seq : 0;
}

/* The stream seq a consumer's message came from (0 when unknown). */
static uint64_t stream_seq(natsMsg *m)
{
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m) != NATS_OK)
        return 0;
    uint64_t seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    return seq;
}

/* libnats' thread: one acknowledgement or refusal of a published record. */
static void on_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    tly_repl *r = closure;
    acks *a = &r->acks;
    uint64_t seq = record_seq(natsMsg_GetData(m), natsMsg_GetDataLength(m));
    pthread_mutex_lock(&a->mu);
    if (a->open && seq >= a->lo && seq <= a->hi) {
        /* The stream stored it at its own seq, once: anything else (a
         * duplicate, another position) is a refusal. */
        bool good = pa && !pa->Duplicate && pa->Sequence == seq;
        if (good) {
            a->ok++;
        } else {
            if (a->bad++ == 0) {
                a->first_code = pae ? pae->ErrCode : 0;
                a->first_bad_seq = seq;
                snprintf(a->first_text, sizeof a->first_text, "%s",
                         pae ? (pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err))
                             : "stored at another seq or as a duplicate");
            }
        }
        if (a->ok + a->bad == (uint32_t)(a->hi - a->lo + 1))
            pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    natsMsg_Destroy(m);
}

/* ---- connecting ---- */

/* Connects *nc to the servers of urls; reconnect: libnats reconnects it
 * when it breaks (else it closes). */
static tly_err connect_cluster(const char *urls, bool reconnect, natsConnection **nc, char *msg,
                               size_t cap)
{
    char store[TLY_REPL_URLS_MAX][TLY_REPL_URL_BYTES_MAX + 1];
    const char *list[TLY_REPL_URLS_MAX];
    int n;
    tly_err err = split_urls(urls, NULL, store, list, &n, msg, cap);
    if (err != TLY_OK)
        return err;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, list, n);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, TLY_REPL_CONNECT_TIMEOUT_MS);
    if (s == NATS_OK)
        s = reconnect ? natsOptions_SetMaxReconnect(o, -1)
                      : natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, TLY_REPL_RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "tally ledger");
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        snprintf(msg, cap, "cannot connect to %s: %s", urls, natsStatus_GetText(s));
        return TLY_UNAVAILABLE;
    }
    if (natsConnection_GetMaxPayload(*nc) < (int64_t)TLY_REPL_RECORD_BYTES_MAX) {
        snprintf(msg, cap,
                 "the servers take messages of at most %lld bytes, below a record's %u: "
                 "set max_payload: 8MB in their configuration",
                 (long long)natsConnection_GetMaxPayload(*nc), TLY_REPL_RECORD_BYTES_MAX);
        return TLY_USAGE;
    }
    return TLY_OK;
}

/* The JetStream context of nc; publishing: with r's acknowledgement
 * handler. */
static tly_err open_js(tly_repl *r, natsConnection *nc, bool publishing, jsCtx **js, char *msg,
                       size_t cap)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = TLY_REPL_API_WAIT_MS;
    if (publishing) {
        jo.PublishAsync.MaxPending = TLY_LOG_BATCH_ITEMS_MAX;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = r;
    }
    natsStatus s = natsConnection_JetStream(js, nc, &jo);
    if (s != NATS_OK) {
        snprintf(msg, cap, "JetStream: %s", natsStatus_GetText(s));
        return TLY_UNAVAILABLE;
    }
    return TLY_OK;
}

/* A lookup of the stream that got no answer (lookup_stream asks again). */
static bool lookup_unanswered(natsStatus s, jsErrCode jerr)
{
    return s == NATS_TIMEOUT || jerr == JSClusterNotAvailErr;
}

/* Looks the stream up, TLY_REPL_LOOKUP_TRIES times when it gets no answer:
 * only the stream's leader answers, so the lookup times out while the
 * stream (or the cluster's meta group) elects one, and a member without a
 * leader may answer "temporarily unavailable" (JSClusterNotAvailErr) at
 * once; each attempt then lasts one TLY_REPL_API_WAIT_MS. NATS_OK, or the
 * last answer's status and *jerr (msg says why). */
static natsStatus lookup_stream(tly_repl *r, jsErrCode *jerr, char *msg, size_t cap)
{
    natsStatus s = NATS_OK;
    for (int attempt = 1; attempt <= TLY_REPL_LOOKUP_TRIES; attempt++) {
        uint64_t start = tly_mono_ns();
        jsStreamInfo *si = NULL;
        *jerr = 0;
        s = js_GetStreamInfo(&si, r->js, r->stream, NULL, jerr);
        jsStreamInfo_Destroy(si);
        if (s == NATS_OK || !lookup_unanswered(s, *jerr))
            return s;
        snprintf(msg, cap, "stream %s: %s (no JetStream quorum?), attempt %d of %d", r->stream,
                 natsStatus_GetText(s), attempt, TLY_REPL_LOOKUP_TRIES);
        if (attempt == TLY_REPL_LOOKUP_TRIES)
            break;
        tly_logf(TLY_LOG_WARN, "ledger", "%s", msg);
        tly_sleep_ms(TLY_REPL_API_WAIT_MS - (int64_t)((tly_mono_ns() - start) / 1000000u));
    }
    return s;
}

/* Creates the stream when absent [N1]; an existing one is taken as it is. */
static tly_err ensure_stream(tly_repl *r, char *msg, size_t cap)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = lookup_stream(r, &jerr, msg, cap);
    if (s == NATS_OK)
        return TLY_OK;
    if (jerr == JSStreamNotFoundErr && r->no_create) {
        snprintf(msg, cap, "there is no stream %s on %s", r->stream, "the servers");
        return TLY_NOT_FOUND;
    }
    if (jerr != JSStreamNotFoundErr) {
        if (!lookup_unanswered(s, jerr)) /* else lookup_stream said so */
            snprintf(msg, cap, "stream %s: %s (no JetStream quorum?)", r->stream,
                     natsStatus_GetText(s));
        return TLY_UNAVAILABLE;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {r->subject};
    cfg.Name = r->stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = r->replicas;
    cfg.DenyDelete = true;
    cfg.DenyPurge = true;
    cfg.MaxMsgSize = (int32_t)TLY_REPL_RECORD_BYTES_MAX;
    cfg.Duplicates = (int64_t)TLY_REPL_DUPLICATES_WINDOW_MS * 1000000; /* ns */
    for (int attempt = 1; attempt <= TLY_REPL_CREATE_TRIES; attempt++) {
        jerr = 0;
        s = js_AddStream(&si, r->js, &cfg, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (s == NATS_OK || jerr == JSStreamNameExistErr)
            break;
        snprintf(msg, cap,
                 "cannot create stream %s (replicas %d): %s (JetStream error %d; attempt %d of %d)",
                 r->stream, r->replicas, natsStatus_GetText(s), (int)jerr, attempt,
                 TLY_REPL_CREATE_TRIES);
        if (attempt < TLY_REPL_CREATE_TRIES)
            tly_logf(TLY_LOG_WARN, "ledger", "%s", msg);
    }
    if (s != NATS_OK && jerr != JSStreamNameExistErr)
        return TLY_UNAVAILABLE;
    tly_logf(TLY_LOG_INFO, "ledger", "created stream %s (subject %s, %d replicas)", r->stream,
             r->subject, r->replicas);
    return TLY_OK;
}

tly_err tly_repl_open(const tly_repl_opts *opts, tly_repl **out, char *msg, size_t cap)
{
    tly_err err = tly_repl_check(opts, msg, cap);
    if (err != TLY_OK)
        return err;
    tly_repl *r = calloc(1, sizeof *r);
    if (!r)
        return TLY_NOMEM;
    pthread_mutex_init(&r->acks.mu, NULL);
    pthread_cond_init(&r->acks.cv, NULL);
    snprintf(r->stream, sizeof r->stream, "%s",
             opts->stream ? opts->stream : TLY_REPL_STREAM_DEFAULT);
    snprintf(r->subject, sizeof r->subject, "%s.log", r->stream);
    r->replicas = opts->replicas ? opts->replicas : TLY_REPL_REPLICAS_DEFAULT;
    r->no_create = opts->no_create;
    snprintf(r->urls, sizeof r->urls, "%s", opts->urls);
    err = connect_cluster(r->urls, true, &r->nc, msg, cap);
    if (err == TLY_OK)
        err = open_js(r, r->nc, false, &r->js, msg, cap);
    if (err == TLY_OK)
        err = ensure_stream(r, msg, cap);
    if (err != TLY_OK) {
        tly_repl_close(r);
        return err;
    }
    *out = r;
    return TLY_OK;
}

/* Closes the publishing connection: nothing is published on it again,
 * and later answers are not waited for. What it had not sent yet is not
 * all dropped: libnats 3.4 flushes the outgoing buffer of a connection
 * still connected when it is closed (waiting up to 500 ms for the
 * server's answer to a ping), and the kernel sends what it had queued.
 * So a batch given up on while the connection was alive but slow can
 * have its tail reach a server after the refusal, as a paused server can
 * deliver what it holds: such a record lands only as the next link of the
 * chain, and the next batch not on top of it (publish_one). */
static void pub_close(tly_repl *r)
{
    if (r->pub_js)
        jsCtx_Destroy(r->pub_js);
    if (r->pub_nc) {
        natsConnection_Close(r->pub_nc);
        natsConnection_Destroy(r->pub_nc);
    }
    r->pub_js = NULL;
    r->pub_nc = NULL;
}

static tly_err pub_open(tly_repl *r, char *msg, size_t cap)
{
    tly_err err = connect_cluster(r->urls, false, &r->pub_nc, msg, cap);
    if (err == TLY_OK)
        err = open_js(r, r->pub_nc, true, &r->pub_js, msg, cap);
    if (err != TLY_OK)
        pub_close(r);
    return err;
}

void tly_repl_close(tly_repl *r)
{
    if (!r)
        return;
    pub_close(r);
    kvStore_Destroy(r->kv);
    if (r->js)
        jsCtx_Destroy(r->js);
    if (r->nc) {
        natsConnection_Close(r->nc);
        natsConnection_Destroy(r->nc);
    }
    pthread_mutex_destroy(&r->acks.mu);
    pthread_cond_destroy(&r->acks.cv);
    free(r->buf);
    free(r->recs);
    free(r);
}

tly_err tly_repl_delete_stream(tly_repl *r)
{
    jsErrCode jerr = 0;
    return js_DeleteStream(r->js, r->stream, NULL, &jerr) == NATS_OK ? TLY_OK : TLY_UNAVAILABLE;
}

const char *tly_repl_stream(const tly_repl *r)
{
    return r->stream;
}

tly_err tly_repl_last_seq(tly_repl *r, uint64_t *last)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
    if (s == NATS_OK)
        *last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return s == NATS_OK ? TLY_OK : TLY_UNAVAILABLE;
}

bool tly_repl_stale(const tly_repl *r)
{
    return r->stale;
}

void tly_repl_set_stale(tly_repl *r)
{
    r->stale = true;
}

const char *tly_repl_last_error(const tly_repl *r)
{
    return r->last_error;
}

/* ---- publishing a batch [N2] (the log's replica) ---- */

static void rep_begin(void *ctx)
{
    tly_repl *r = ctx;
    r->buf_len = 0;
    r->rec_count = 0;
}

/* Keeps a copy of the record: the log's encoder reuses its buffer. */
static tly_err rep_record(void *ctx, uint64_t seq, const uint8_t *raw, size_t raw_len)
{
    tly_repl *r = ctx;
    if (r->rec_count == r->rec_cap) {
        uint32_t cap = r->rec_cap ? 2 * r->rec_cap : 1024;
        pub_rec *p = realloc(r->recs, (size_t)cap * sizeof *p);
        if (!p)
            return TLY_NOMEM;
        r->recs = p;
        r->rec_cap = cap;
    }
    if (raw_len > r->buf_cap - r->buf_len) {
        size_t cap = r->buf_cap ? r->buf_cap : (size_t)1 << 20;
        while (cap - r->buf_len < raw_len)
            cap *= 2;
        uint8_t *b = realloc(r->buf, cap);
        if (!b)
            return TLY_NOMEM;
        r->buf = b;
        r->buf_cap = cap;
    }
    memcpy(r->buf + r->buf_len, raw, raw_len);
    r->recs[r->rec_count++] = (pub_rec){seq, r->buf_len, raw_len};
    r->buf_len += raw_len;
    return TLY_OK;
}

/* A record's message id: its chain hash's first TLY_REPL_MSG_ID_HASH_BYTES
 * bytes in hex. The ledger publishes only records it encoded. */
#define MSG_ID_CHARS (2u * TLY_REPL_MSG_ID_HASH_BYTES)
static void record_msg_id(const uint8_t *raw, size_t len, char out[MSG_ID_CHARS + 1])
{
    tly_record rec;
    tly_err err = tly_record_decode(raw, len, &rec);
    TLY_ASSERT(err == TLY_OK);
    tly_hex_encode(rec.hash, TLY_REPL_MSG_ID_HASH_BYTES, out);
}

/* Publishes one record with expected-last-sequence = seq - 1 [N2], its
 * message id id, and, after the first of a batch, prev (the record before
 * it) as the expected last message id. Pipelined, each record is checked
 * against the stream as the ones before left it, so the seq alone fences a
 * record whose predecessor is missing but not one whose predecessor is
 * another chain's: a record of a batch given up on that reached a server
 * late (a paused server, a connection alive but slow; README
 * "Replication") could land at seq N after the catch-up, and the next
 * batch's N + 1 on top of it, and the stream would no longer chain. With
 * the id the server refuses that N + 1 (and the rest of its batch), the
 * batch is `unavailable`, and the catch-up takes the late record into the
 * log as the stream's. libnats sends the expected seq only for a non-zero
 * value, so the first record of a stream carries it as a header of its own
 * ("0": the stream must be empty). */
static natsStatus publish_one(tly_repl *r, uint64_t seq, const uint8_t *raw, size_t len,
                              const char *id, const char *prev)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.ExpectLastMsgId = prev;
    if (seq > 1) {
        po.ExpectLastSeq = seq - 1;
        return js_PublishAsync(r->pub_js, r->subject, raw, (int)len, &po);
    }
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, r->subject, NULL, (const char *)raw, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", "0");
    if (s == NATS_OK)
        s = js_PublishMsgAsync(r->pub_js, &m, &po);
    natsMsg_Destroy(m); /* a no-op once the library owns it */
    return s;
}

static void acks_open(acks *a, uint64_t lo, uint64_t hi)
{
    pthread_mutex_lock(&a->mu);
    a->lo = lo;
    a->hi = hi;
    a->ok = a->bad = 0;
    a->first_code = 0;
    a->first_text[0] = '\0';
    a->first_bad_seq = 0;
    a->open = true;
    pthread_mutex_unlock(&a->mu);
}

/* Waits until every record of the batch is answered, or until no answer at
 * all came for timeout_ms (a large batch on a busy cluster takes longer
 * than that in all, but keeps being answered; a lost quorum answers
 * nothing). Closes the batch (later answers are ignored). True when all
 * were answered; *ok and *bad count them. */
static bool acks_wait(acks *a, int timeout_ms, uint32_t *ok, uint32_t *bad)
{
    struct timespec dl = tly_deadline_in(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&a->mu);
    uint32_t want = (uint32_t)(a->hi - a->lo + 1), seen = a->ok + a->bad;
    for (;;) {
        int rc = 0;
        while (a->ok + a->bad < want && rc == 0)
            rc = pthread_cond_timedwait(&a->cv, &a->mu, &dl);
        if (a->ok + a->bad == want || a->ok + a->bad == seen)
            break;
        seen = a->ok + a->bad; /* progress: another timeout_ms */
        dl = tly_deadline_in(CLOCK_REALTIME, timeout_ms);
    }
    bool all = a->ok + a->bad == want;
    *ok = a->ok;
    *bad = a->bad;
    a->open = false;
    pthread_mutex_unlock(&a->mu);
    return all;
}

/* Why a batch was refused, logged once per batch and kept for the caller. */
static tly_err refuse(tly_repl *r, const char *fmt, uint64_t a, uint64_t b, const char *text)
{
    char why[400];
    snprintf(why, sizeof why, fmt, (unsigned long long)a, (unsigned long long)b, text);
    snprintf(r->last_error, sizeof r->last_error, "stream %s: %s", r->stream, why);
    tly_logf(TLY_LOG_ERROR, "ledger", "%s; the batch is unavailable, nothing acknowledged",
             r->last_error);
    r->stale = true;
    /* Nothing of the batch may reach the stream after the catch-up that
     * follows: whatever libnats holds of it goes with its connection (the
     * stream may have stored some of it, which that catch-up finds). */
    pub_close(r);
    return TLY_UNAVAILABLE;
}

/* Publishes every record of the batch, then waits once for all the
 * acknowledgements: one round trip per group commit. */
static tly_err rep_commit(void *ctx)
{
    tly_repl *r = ctx;
    if (r->rec_count == 0)
        return TLY_OK;
    uint64_t lo = r->recs[0].seq, hi = r->recs[r->rec_count - 1].seq;
    TLY_ASSERT(hi - lo + 1 == r->rec_count);
    r->last_error[0] = '\0';
    char why[256] = "";
    if (r->pub_nc && natsConnection_IsClosed(r->pub_nc))
        pub_close(r); /* it broke between two batches */
    if (!r->pub_js && pub_open(r, why, sizeof why) != TLY_OK)
        return refuse(r, "seqs %llu..%llu not published: %s", lo, hi, why);
    acks_open(&r->acks, lo, hi);
    natsStatus s = NATS_OK;
    char ids[2][MSG_ID_CHARS + 1];
    for (uint32_t i = 0; i < r->rec_count && s == NATS_OK; i++) {
        const pub_rec *p = &r->recs[i];
        record_msg_id(r->buf + p->off, p->len, ids[i & 1]);
        s = publish_one(r, p->seq, r->buf + p->off, p->len, ids[i & 1],
                        i > 0 ? ids[(i - 1) & 1] : NULL);
    }
    uint32_t ok = 0, bad = 0;
    bool all = s == NATS_OK && acks_wait(&r->acks, TLY_REPL_ACK_TIMEOUT_MS, &ok, &bad);
    if (!all) {
        if (s != NATS_OK)
            acks_wait(&r->acks, 0, &ok, &bad);
        return refuse(r, "%llu of %llu records acknowledged in time (%s)", ok, r->rec_count,
                      s != NATS_OK ? natsStatus_GetText(s) : "no quorum or timeout");
    }
    if (bad > 0) {
        const acks *a = &r->acks;
        if (a->first_code == JSStreamWrongLastSequenceErr)
            return refuse(r,
                          "fenced at seq %llu: the stream's last seq is not %llu, another "
                          "writer appended (%s)",
                          a->first_bad_seq, a->first_bad_seq - 1, a->first_text);
        return refuse(r, "record %llu refused (%llu refusals): %s", a->first_bad_seq, bad,
                      a->first_text);
    }
    return TLY_OK;
}

static void set_replica(tly_repl *r, tly_log *log)
{
    tly_log_replica rep = {r, rep_begin, rep_record, rep_commit};
    tly_log_set_replica(log, &rep);
}

/* ---- reading the stream ---- */

/* The durable pull consumer of a mirror, from from_seq: the one of an
 * earlier run is deleted first (its position is the servers'; the
 * mirror's log is the checkpoint [N6]). Acknowledged all-up-to at each
 * fetch. */
static natsStatus pull_open(tly_repl *r, uint64_t from_seq, tly_repl_reader *rd)
{
    jsErrCode jerr = 0;
    (void)js_DeleteConsumer(r->js, r->stream, r->durable, NULL, &jerr); /* absent: fine */
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = r->stream;
    so.Config.Durable = r->durable;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from_seq;
    so.Config.AckPolicy = js_AckAll;
    /* Each fetch is acknowledged before the next (at most a chunk); the
     * servers' default of 1,000 unacknowledged would cut every fetch of a
     * catch-up to 1,000 records, each waiting out its expiry. */
    so.Config.MaxAckPending = 2 * (int64_t)TLY_REPL_CHUNK_RECORDS;
    so.Config.InactiveThreshold = (int64_t)TLY_REPL_DURABLE_INACTIVE_S * 1000000000;
    rd->pull = true;
    rd->next = from_seq;
    return js_PullSubscribe(&rd->sub, r->js, r->subject, r->durable, NULL, &so, &jerr);
}

/* The ordered consumer of the ledger's own catch-up and standby, from
 * from_seq: it leaves nothing on the servers. */
static natsStatus ordered_open(tly_repl *r, uint64_t from_seq, tly_repl_reader *rd)
{
    rd->msgs = calloc(TLY_REPL_CHUNK_RECORDS, sizeof *rd->msgs);
    if (!rd->msgs)
        return NATS_NO_MEMORY;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Stream = r->stream;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from_seq;
    rd->next = from_seq;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&rd->sub, r->js, r->subject, NULL, &so, &jerr);
    if (s == NATS_OK)
        natsSubscription_SetPendingLimits(rd->sub, -1, -1);
    return s;
}

tly_err tly_repl_reader_open(tly_repl *r, uint64_t from_seq, tly_repl_reader **out)
{
    tly_repl_reader *rd = calloc(1, sizeof *rd);
    if (!rd)
        return TLY_NOMEM;
    uint64_t from = from_seq ? from_seq : 1;
    natsStatus s = NATS_OK;
    for (int attempt = 1; attempt <= TLY_REPL_READER_OPEN_TRIES; attempt++) {
        s = r->durable[0] ? pull_open(r, from, rd) : ordered_open(r, from, rd);
        if (s != NATS_TIMEOUT || attempt == TLY_REPL_READER_OPEN_TRIES)
            break;
        tly_logf(TLY_LOG_WARN, "ledger", "reading stream %s from seq %llu: %s; attempt %d of %d",
                 r->stream, (unsigned long long)from, natsStatus_GetText(s), attempt,
                 TLY_REPL_READER_OPEN_TRIES);
        /* A consumer created after all is replaced (durable) or left to
         * the servers' cleanup of inactive ones (ordered). */
        natsSubscription_Destroy(rd->sub);
        free(rd->msgs);
        *rd = (tly_repl_reader){0};
    }
    if (s != NATS_OK) {
        tly_logf(TLY_LOG_ERROR, "ledger", "cannot read stream %s from seq %llu%s%s: %s", r->stream,
                 (unsigned long long)from, r->durable[0] ? " as " : "", r->durable,
                 natsStatus_GetText(s));
        tly_repl_reader_close(rd);
        return s == NATS_NO_MEMORY ? TLY_NOMEM : TLY_UNAVAILABLE;
    }
    *out = rd;
    return TLY_OK;
}

static void reader_release(tly_repl_reader *rd)
{
    if (rd->pull) {
        natsMsgList_Destroy(&rd->list);
        rd->list = (natsMsgList){0};
        return;
    }
    for (uint32_t i = 0; i < rd->count; i++)
        natsMsg_Destroy(rd->msgs[i]);
    rd->count = 0;
}

/* A pull consumer's fetch: up to max records, at most a commit's bytes;
 * a record before the one expected (a redelivery) is skipped; the last one
 * taken is acknowledged with everything before it. */
static tly_err pull_fetch(tly_repl_reader *rd, tly_log_stored *out, uint32_t max, int wait_ms,
                          uint32_t *n)
{
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = (int)max;
    req.MaxBytes = (int64_t)(TLY_LOG_COMMIT_BYTES_MAX - TLY_REPL_RECORD_BYTES_MAX);
    req.Expires = (int64_t)wait_ms * 1000000;
    natsStatus s = natsSubscription_FetchRequest(&rd->list, rd->sub, &req);
    *n = 0;
    if (s == NATS_TIMEOUT)
        return TLY_OK;
    if (s != NATS_OK)
        return TLY_UNAVAILABLE;
    natsMsg *last = NULL;
    for (int i = 0; i < rd->list.Count; i++) {
        natsMsg *m = rd->list.Msgs[i];
        int len = natsMsg_GetDataLength(m);
        uint64_t seq = record_seq(natsMsg_GetData(m), len);
        if (seq == 0 || seq > rd->next)
            return TLY_UNAVAILABLE; /* not a record, or a gap: open again */
        if (seq < rd->next)
            continue;
        out[(*n)++] = (tly_log_stored){(const uint8_t *)natsMsg_GetData(m), (size_t)len};
        rd->next++;
        last = m;
    }
    if (last)
        (void)natsMsg_Ack(last, NULL);
    return TLY_OK;
}

tly_err tly_repl_reader_fetch(tly_repl_reader *rd, tly_log_stored *out, uint32_t max, int wait_ms,
                              uint32_t *n)
{
    reader_release(rd);
    if (max > TLY_REPL_CHUNK_RECORDS)
        max = TLY_REPL_CHUNK_RECORDS;
    if (rd->pull)
        return pull_fetch(rd, out, max, wait_ms, n);
    size_t bytes = 0;
    while (rd->count < max) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, rd->sub, rd->count == 0 ? wait_ms : 0);
        if (s == NATS_TIMEOUT)
            break;
        if (s != NATS_OK)
            return TLY_UNAVAILABLE;
        size_t len = (size_t)natsMsg_GetDataLength(m);
        /* libnats 3.4 recreates an ordered consumer that missed its
         * heartbeats (a server killed) from the stream seq after the last
         * message it delivered, or from seq 1 when it had delivered none:
         * a standby reading from seq 258501 was handed seq 1, took it for a
         * stream that is not its log's, and stopped following for good
         * (`nats-soak.sh 30 DIR nodes`). A message from another place in
         * the stream than the next is answered unavailable: the caller
         * opens the reader again at its head. A record that is out of
         * place at its right place is the log's to refuse (corrupt). */
        if (record_seq(natsMsg_GetData(m), (int)len) != rd->next && stream_seq(m) != rd->next) {
            natsMsg_Destroy(m);
            return TLY_UNAVAILABLE;
        }
        rd->next++;
        rd->msgs[rd->count++] = m;
        out[rd->count - 1] = (tly_log_stored){(const uint8_t *)natsMsg_GetData(m), len};
        bytes += len;
        /* The next one could overflow a commit: stop while this fits. */
        if (bytes > TLY_LOG_COMMIT_BYTES_MAX - TLY_REPL_RECORD_BYTES_MAX)
            break;
    }
    *n = rd->count;
    return TLY_OK;
}

/* Closes a reader's subscription. libnats 3.4 (Debian 12's) can crash
 * when a subscription is destroyed while its read loop delivers a message
 * to it (nats.c issue 637, fixed in 3.6): a catch-up closes its reader with
 * the writer still appending, and `nats-soak.sh` saw the restarted standby
 * die so, twice in 70 kills. So the subscription is drained first: once
 * the server has confirmed the unsubscribe, no message for it can arrive,
 * and what is pending is taken and dropped; then it is destroyed. */
static void sub_close(natsSubscription *sub)
{
    if (!sub) /* a reader whose open failed */
        return;
    if (natsSubscription_DrainTimeout(sub, TLY_REPL_DRAIN_MS) == NATS_OK) {
        for (int waited = 0; waited < TLY_REPL_DRAIN_MS; waited += 10) {
            natsMsg *m = NULL;
            while (natsSubscription_NextMsg(&m, sub, 0) == NATS_OK)
                natsMsg_Destroy(m);
            if (natsSubscription_WaitForDrainCompletion(sub, 10) == NATS_OK)
                break;
        }
    }
    natsSubscription_Destroy(sub);
}

void tly_repl_reader_close(tly_repl_reader *rd)
{
    if (!rd)
        return;
    reader_release(rd);
    /* A pull consumer gets messages only for a fetch, and none is left
     * outstanding; draining it would delete the durable (libnats removes a
     * consumer it created when its subscription is drained). */
    if (rd->pull)
        natsSubscription_Destroy(rd->sub);
    else
        sub_close(rd->sub);
    free(rd->msgs);
    free(rd);
}

/* ---- the stream against the log ---- */

/* Compares the log's record at seq with the stream's. */
static tly_err same_record(tly_repl *r, tly_log *log, uint64_t seq, char *msg, size_t cap)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, r->js, r->stream, seq, NULL, &jerr);
    if (s != NATS_OK) {
        snprintf(msg, cap, "stream %s: cannot read seq %llu: %s", r->stream,
                 (unsigned long long)seq, natsStatus_GetText(s));
        return TLY_UNAVAILABLE;
    }
    tly_log_reader *rd = NULL;
    tly_record rec;
    tly_err err = tly_log_reader_open(log, seq, &rd);
    if (err == TLY_OK)
        err = tly_log_reader_next(rd, &rec);
    bool same = err == TLY_OK && rec.raw_len == (size_t)natsMsg_GetDataLength(m) &&
                memcmp(rec.raw, natsMsg_GetData(m), rec.raw_len) == 0;
    tly_log_reader_close(rd);
    natsMsg_Destroy(m);
    if (err != TLY_OK) {
        snprintf(msg, cap, "cannot read seq %llu of the log: %s", (unsigned long long)seq,
                 tly_strerror(err));
        return err;
    }
    if (!same) {
        snprintf(msg, cap,
                 "stream %s holds another record at seq %llu than this log: the log is not "
                 "the stream's (use another --stream, or a fresh data directory to follow it)",
                 r->stream, (unsigned long long)seq);
        return TLY_CORRUPT;
    }
    return TLY_OK;
}

/* Publishes the log's records first..head into the stream, whose last
 * seq is first - 1, a chunk per wait for the acknowledgements. */
static tly_err copy_log(tly_repl *r, tly_log *log, uint64_t first, uint64_t head, char *msg,
                        size_t cap)
{
    uint64_t next = first;
    while (next <= head) {
        tly_log_reader *rd = NULL;
        tly_record rec;
        tly_err err = tly_log_reader_open(log, next, &rd);
        rep_begin(r);
        for (uint32_t i = 0; err == TLY_OK && i < TLY_REPL_CHUNK_RECORDS && next <= head; i++) {
            err = tly_log_reader_next(rd, &rec);
            if (err == TLY_OK)
                err = rep_record(r, rec.seq, rec.raw, rec.raw_len);
            next++;
        }
        tly_log_reader_close(rd);
        if (err == TLY_OK)
            err = rep_commit(r);
        if (err != TLY_OK) {
            snprintf(msg, cap, "copying the log into stream %s: %s", r->stream,
                     r->last_error[0] ? r->last_error : tly_strerror(err));
            return err;
        }
    }
    tly_logf(TLY_LOG_INFO, "ledger", "copied the log's records %llu..%llu into stream %s",
             (unsigned long long)first, (unsigned long long)head, r->stream);
    return TLY_OK;
}

/* ---- catching up [N3] ---- */

/* Appends the stream's records head+1 .. last to the log. */
static tly_err follow_to(tly_repl *r, tly_log *log, uint64_t last, char *msg, size_t cap)
{
    uint64_t head = 0;
    tly_log_head(log, &head, NULL);
    if (head >= last)
        return TLY_OK;
    tly_repl_reader *rd = NULL;
    tly_log_stored *recs = malloc(TLY_REPL_CHUNK_RECORDS * sizeof *recs);
    tly_err err = recs ? tly_repl_reader_open(r, head + 1, &rd) : TLY_NOMEM;
    while (err == TLY_OK && head < last) {
        uint32_t n = 0,
                 want = (uint32_t)(last - head < TLY_REPL_CHUNK_RECORDS ? last - head
                                                                        : TLY_REPL_CHUNK_RECORDS);
        err = tly_repl_reader_fetch(rd, recs, want, TLY_REPL_FETCH_WAIT_MS, &n);
        if (err == TLY_OK && n == 0)
            err = TLY_UNAVAILABLE;
        uint64_t bad = 0;
        char why[160] = "";
        if (err == TLY_OK)
            err = tly_log_append_stored(log, recs, n, &bad, why, sizeof why);
        if (err == TLY_CORRUPT)
            snprintf(msg, cap,
                     "stream %s, seq %llu: %s: refusing to take it into the log (the log is "
                     "sound; to replicate it again, start the ledger with another --stream, "
                     "which it copies the log into)",
                     r->stream, (unsigned long long)bad, why);
        else if (err == TLY_UNAVAILABLE)
            snprintf(msg, cap, "stream %s: seq %llu did not arrive", r->stream,
                     (unsigned long long)head + 1);
        tly_log_head(log, &head, NULL);
    }
    tly_repl_reader_close(rd);
    free(recs);
    return err;
}

/*
 * The stream's last seq is below the log's head. Every record of a
 * writer's log was acknowledged by the stream before the log took it [N2],
 * so the stream lost acknowledged records: JetStream acknowledges a record
 * once a quorum holds it, before its servers write it to disk, and all of
 * them stopped at once (kill -9 of the three, test_replicate's
 * test_lost_batch_stays_lost under ctest -j2: the stream came back at seq
 * 1 of 5). When the stream's last record is the log's, the writer
 * publishes the rest again, as it copies a log into an empty stream [N1]
 * (each record with its expected last seq, so another writer's append
 * still fences it); every append was refused as fenced before, for ever.
 * A mirror cannot publish: it refuses, as a stream that is not the log's.
 */
static tly_err refill(tly_repl *r, tly_log *log, uint64_t last, uint64_t head, char *msg,
                      size_t cap)
{
    if (!r->writer) {
        snprintf(msg, cap, "the log's head seq %llu is beyond stream %s's last seq %llu",
                 (unsigned long long)head, r->stream, (unsigned long long)last);
        return TLY_CORRUPT;
    }
    tly_err err = last > 0 ? same_record(r, log, last, msg, cap) : TLY_OK;
    if (err != TLY_OK)
        return err;
    tly_logf(TLY_LOG_WARN, "ledger",
             "stream %s's last seq %llu is below the log's head %llu: the stream lost records "
             "it had acknowledged (did all its servers stop at once?); publishing %llu..%llu "
             "again from the log",
             r->stream, (unsigned long long)last, (unsigned long long)head,
             (unsigned long long)last + 1, (unsigned long long)head);
    return copy_log(r, log, last + 1, head, msg, cap);
}

tly_err tly_repl_catch_up(tly_repl *r, tly_log *log, char *msg, size_t cap)
{
    uint64_t last = 0, head = 0;
    if (tly_repl_last_seq(r, &last) != TLY_OK) {
        snprintf(msg, cap, "stream %s does not answer (no quorum?)", r->stream);
        return TLY_UNAVAILABLE;
    }
    tly_log_head(log, &head, NULL);
    tly_err err =
        last < head ? refill(r, log, last, head, msg, cap) : follow_to(r, log, last, msg, cap);
    if (err == TLY_OK) {
        r->stale = false;
        if (last > head)
            tly_logf(TLY_LOG_INFO, "ledger", "caught up seq %llu..%llu from stream %s",
                     (unsigned long long)head + 1, (unsigned long long)last, r->stream);
    }
    return err;
}

/* ---- attaching [N1] ---- */

tly_err tly_repl_attach(tly_repl *r, tly_log *log, char *msg, size_t cap)
{
    uint64_t last = 0, head = 0;
    if (tly_repl_last_seq(r, &last) != TLY_OK) {
        snprintf(msg, cap, "stream %s does not answer (no quorum?)", r->stream);
        return TLY_UNAVAILABLE;
    }
    tly_log_head(log, &head, NULL);
    tly_err err = TLY_OK;
    r->writer = true;
    if (last == 0 && head > 0)
        err = copy_log(r, log, 1, head, msg, cap);
    else if (head > 0 && head <= last)
        err = same_record(r, log, head, msg, cap);
    /* a stream behind the log (head > last) is refilled by the catch-up */
    if (err == TLY_OK)
        err = tly_repl_catch_up(r, log, msg, cap);
    if (err == TLY_OK)
        set_replica(r, log);
    return err;
}

/* ---- the lease [N4] ---- */

tly_err tly_repl_lease_open(tly_repl *r, char *msg, size_t cap)
{
    char bucket[TLY_REPL_STREAM_NAME_BYTES_MAX + 8];
    snprintf(bucket, sizeof bucket, "%s_LEASE", r->stream);
    if (r->kv)
        return TLY_OK;
    natsStatus s = js_KeyValue(&r->kv, r->js, bucket);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = bucket;
        kc.History = 1;
        kc.Replicas = r->replicas;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&r->kv, r->js, &kc);
        if (s != NATS_OK) /* another ledger may have created it meanwhile */
            s = js_KeyValue(&r->kv, r->js, bucket);
    }
    if (s != NATS_OK) {
        snprintf(msg, cap, "lease bucket %s: %s", bucket, natsStatus_GetText(s));
        r->kv = NULL;
        return TLY_UNAVAILABLE;
    }
    return TLY_OK;
}

tly_err tly_repl_lease_get(tly_repl *r, const char *key, char *val, size_t cap, uint64_t *rev)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, r->kv, key);
    if (s == NATS_NOT_FOUND)
        return TLY_NOT_FOUND;
    if (s != NATS_OK)
        return TLY_UNAVAILABLE;
    int len = kvEntry_ValueLen(e);
    size_t n = len > 0 && (size_t)len < cap ? (size_t)len : (len > 0 ? cap - 1 : 0);
    memcpy(val, kvEntry_Value(e), n);
    val[n] = '\0';
    *rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    return TLY_OK;
}

tly_err tly_repl_lease_cas(tly_repl *r, const char *key, const char *val, uint64_t rev,
                           uint64_t *new_rev)
{
    natsStatus s = rev == 0 ? kvStore_CreateString(new_rev, r->kv, key, val)
                            : kvStore_UpdateString(new_rev, r->kv, key, val, rev);
    if (s == NATS_OK)
        return TLY_OK;
    /* JetStream refuses the write on the wrong last sequence (an update) or
     * an existing key (a create); anything else is the cluster. */
    const char *text = nats_GetLastError(NULL);
    if (text && (strstr(text, "wrong last sequence") || strstr(text, "key exists")))
        return TLY_CONFLICT;
    return s == NATS_ERR ? TLY_CONFLICT : TLY_UNAVAILABLE;
}

tly_err tly_repl_lease_put(tly_repl *r, const char *key, const char *val)
{
    uint64_t rev = 0;
    return kvStore_PutString(&rev, r->kv, key, val) == NATS_OK ? TLY_OK : TLY_UNAVAILABLE;
}

/* ---- mirrors [N6] ---- */

/* A mirror's durable consumer: "tally_<host>_<FNV-1a of the log's absolute
 * path, 8 hex digits>", the host's characters outside [A-Za-z0-9_-] as
 * '_' (consumer names take no '.', '*', '>' or blanks). */
void tly_repl_durable_name(const char *log_dir, char *out, size_t cap)
{
    char host[64] = "", path[PATH_MAX];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    const char *p = realpath(log_dir, path) ? path : log_dir;
    uint32_t h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    char host_ok[24];
    size_t i = 0;
    for (; host[i] && i < sizeof host_ok - 1; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        host_ok[i] = ok ? c : '_';
    }
    host_ok[i] = '\0';
    snprintf(out, cap, "tally_%s_%08x", host_ok, h);
}

/* The log's head record is the stream's (or the log is empty). */
static tly_err mirror_check(tly_repl *r, tly_log *log, char *msg, size_t cap)
{
    uint64_t last = 0, head = 0;
    if (tly_repl_last_seq(r, &last) != TLY_OK) {
        snprintf(msg, cap, "stream %s does not answer (no quorum?)", r->stream);
        return TLY_UNAVAILABLE;
    }
    tly_log_head(log, &head, NULL);
    if (head > last) {
        snprintf(msg, cap, "the log's head seq %llu is beyond stream %s's last seq %llu",
                 (unsigned long long)head, r->stream, (unsigned long long)last);
        return TLY_CORRUPT;
    }
    return head > 0 ? same_record(r, log, head, msg, cap) : TLY_OK;
}

tly_err tly_repl_mirror(const tly_repl_opts *opts, const char *log_dir, uint64_t *head, char *msg,
                        size_t cap)
{
    tly_repl *r = NULL;
    tly_log *log = NULL;
    tly_err err = tly_repl_open(opts, &r, msg, cap);
    if (err == TLY_OK)
        tly_repl_durable_name(log_dir, r->durable, sizeof r->durable);
    if (err == TLY_OK && (err = tly_log_open(log_dir, TLY_LOG_WRITE, &log)) != TLY_OK)
        snprintf(msg, cap, "cannot open %s as a mirror of the stream: %s%s", log_dir,
                 tly_strerror(err),
                 err == TLY_UNAVAILABLE ? " (a ledger writes it: read that log directly)" : "");
    if (err == TLY_OK)
        err = mirror_check(r, log, msg, cap);
    if (err == TLY_OK)
        err = tly_repl_catch_up(r, log, msg, cap);
    if (err == TLY_OK)
        tly_log_head(log, head, NULL);
    tly_log_close(log);
    tly_repl_close(r);
    return err;
}

/* Appends what the stream got since the last call (waiting up to
 * TLY_REPL_MIRROR_WAIT_MS for a chunk); a failed subscription is opened
 * again. */
static tly_err follow_step(tly_repl *r, tly_log *log, tly_repl_reader **rd, tly_log_stored *recs,
                           char *msg, size_t cap)
{
    uint64_t head = 0, bad = 0;
    tly_log_head(log, &head, NULL);
    if (!*rd && tly_repl_reader_open(r, head + 1, rd) != TLY_OK)
        return TLY_OK; /* no quorum yet: try again next step */
    uint32_t n = 0;
    if (tly_repl_reader_fetch(*rd, recs, TLY_REPL_CHUNK_RECORDS, TLY_REPL_MIRROR_WAIT_MS, &n) !=
        TLY_OK) {
        tly_repl_reader_close(*rd);
        *rd = NULL;
        return TLY_OK;
    }
    char why[160] = "";
    tly_err err = n ? tly_log_append_stored(log, recs, n, &bad, why, sizeof why) : TLY_OK;
    if (err == TLY_CORRUPT)
        snprintf(msg, cap, "stream %s, seq %llu: %s", r->stream, (unsigned long long)bad, why);
    else if (err != TLY_OK)
        snprintf(msg, cap, "appending to the mirror: %s", tly_strerror(err));
    return err;
}

tly_err tly_repl_follow(const tly_repl_opts *opts, const char *log_dir, tly_stop_flag *stop,
                        void (*caught_up)(void *ctx), void *ctx, char *msg, size_t cap)
{
    uint64_t head = 0;
    tly_err err = tly_repl_mirror(opts, log_dir, &head, msg, cap);
    tly_repl *r = NULL;
    tly_log *log = NULL;
    if (err == TLY_OK)
        err = tly_repl_open(opts, &r, msg, cap);
    if (err == TLY_OK)
        tly_repl_durable_name(log_dir, r->durable, sizeof r->durable);
    if (err == TLY_OK)
        err = tly_log_open(log_dir, TLY_LOG_WRITE, &log);
    tly_log_stored *recs = err == TLY_OK ? malloc(TLY_REPL_CHUNK_RECORDS * sizeof *recs) : NULL;
    if (err == TLY_OK && !recs)
        err = TLY_NOMEM;
    if (err == TLY_OK)
        caught_up(ctx);
    tly_repl_reader *rd = NULL;
    while (err == TLY_OK && !atomic_load(stop))
        err = follow_step(r, log, &rd, recs, msg, cap);
    tly_repl_reader_close(rd);
    free(recs);
    tly_log_close(log);
    tly_repl_close(r);
    return err;
}
