/* tly_client.c — producer client: window, acks, resend, reconnect; see tly_client.h. */
#include "tly_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tly_keys.h"
#include "tly_limits.h"
#include "tly_mp.h"
#include "tly_os.h"

typedef struct slot {
    bool used;
    bool parked; /* waiting for retry_at_ns before the next send */
    uint64_t req;
    msgpack_sbuffer frame;
    uint64_t deadline_ns; /* reply expected by then */
    uint64_t retry_at_ns;
    uint32_t attempts;
    uint64_t tag;
    tly_client_done_fn done;
    void *ctx;
} slot;

struct tly_client {
    tly_client_opts opts;
    void *zctx;
    void *sock;
    /* [N5] the ingest endpoints of opts.endpoint ("A,B,..."), tried in turn */
    char eps[TLY_CLIENT_ENDPOINTS_MAX][TLY_PATH_BYTES_MAX + 1];
    uint32_t ep_count;
    uint32_t ep_index; /* the one connected to */
    char secret[41];
    char pub[41];
    slot slots[TLY_CLIENT_WINDOW_MAX];
    uint32_t in_flight;
    uint64_t next_req;
    int backoff_ms;
    tly_ingest_result *results; /* TLY_BATCH_EVENTS_MAX */
    uint64_t progress_ns;       /* the last reply, or the start of waiting */
    bool gave_up;               /* see tly_client_gave_up */
};

static uint64_t ms_to_ns(int ms)
{
    return (uint64_t)ms * 1000000ull;
}

/* A DEALER connected to endpoint with c's CURVE keys (if any) into *out:
 * TLY_OK, TLY_NOMEM, or TLY_USAGE when the endpoint is not valid. */
static tly_err dealer_to(const tly_client *c, const char *endpoint, void **out)
{
    void *s = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!s)
        return TLY_NOMEM;
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (c->opts.server_key) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->opts.server_key, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->secret, 40);
    }
    if (zmq_connect(s, endpoint) != 0) {
        zmq_close(s);
        return TLY_USAGE;
    }
    *out = s;
    return TLY_OK;
}

/* (Re)opens c's ingest connection, to the current endpoint. */
static tly_err connect_socket(tly_client *c)
{
    return dealer_to(c, c->eps[c->ep_index], &c->sock);
}

/* Splits list at commas into eps (NULL: only counts): the number of
 * endpoints when list is 1..TLY_CLIENT_ENDPOINTS_MAX non-empty endpoints of
 * at most TLY_PATH_BYTES_MAX bytes, else 0. */
static uint32_t split_endpoints(const char *list, char (*eps)[TLY_PATH_BYTES_MAX + 1])
{
    uint32_t n = 0;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > TLY_PATH_BYTES_MAX || n == TLY_CLIENT_ENDPOINTS_MAX)
            return 0;
        if (eps) {
            memcpy(eps[n], p, len);
            eps[n][len] = '\0';
        }
        n++;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

bool tly_client_endpoints_ok(const char *list)
{
    return list && split_endpoints(list, NULL) > 0;
}

static tly_err read_secret(tly_client *c, char *msg, size_t cap)
{
    tly_err err = tly_key_read_secret(c->opts.secret_file, c->secret, msg, cap);
    if (err == TLY_OK && zmq_curve_public(c->pub, c->secret) != 0) {
        snprintf(msg, cap, "%s: cannot derive the public key", c->opts.secret_file);
        return TLY_BAD_FIELD;
    }
    return err;
}

tly_err tly_client_open(const tly_client_opts *opts, tly_client **out, char *msg, size_t cap)
{
    if (!opts->endpoint || opts->window > TLY_CLIENT_WINDOW_MAX ||
        (opts->server_key && (!opts->secret_file || strlen(opts->server_key) != 40))) {
        snprintf(msg, cap,
                 "client needs an endpoint, a window of at most %u, and with a "
                 "server key a 40-character key and a secret key file",
                 TLY_CLIENT_WINDOW_MAX);
        return TLY_USAGE;
    }
    tly_client *c = calloc(1, sizeof *c);
    if (!c)
        return TLY_NOMEM;
    c->ep_count = split_endpoints(opts->endpoint, c->eps);
    if (c->ep_count == 0) {
        snprintf(msg, cap, "the ingest endpoints are 1 to %u endpoints separated by commas",
                 TLY_CLIENT_ENDPOINTS_MAX);
        free(c);
        return TLY_USAGE;
    }
    c->opts = *opts;
    if (c->opts.ack_timeout_ms <= 0)
        c->opts.ack_timeout_ms = TLY_ACK_TIMEOUT_MS;
    if (c->opts.window == 0)
        c->opts.window = 1;
    c->backoff_ms = TLY_RETRY_BACKOFF_MS_FIRST;
    c->next_req = 1;
    c->results = calloc(TLY_BATCH_EVENTS_MAX, sizeof *c->results);
    c->zctx = zmq_ctx_new();
    tly_err err = c->results && c->zctx ? TLY_OK : TLY_NOMEM;
    if (err == TLY_OK && opts->server_key)
        err = read_secret(c, msg, cap);
    if (err == TLY_OK && (err = connect_socket(c)) == TLY_USAGE)
        snprintf(msg, cap, "cannot connect to %s: %s", c->eps[0], zmq_strerror(zmq_errno()));
    if (err != TLY_OK) {
        tly_client_close(c);
        return err;
    }
    *out = c;
    return TLY_OK;
}

void tly_client_close(tly_client *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++)
        if (c->slots[i].used)
            msgpack_sbuffer_destroy(&c->slots[i].frame);
    if (c->sock)
        zmq_close(c->sock);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    free(c->results);
    free(c);
}

static void send_slot(tly_client *c, slot *s)
{
    s->parked = false;
    s->attempts++;
    s->deadline_ns = tly_mono_ns() + ms_to_ns(c->opts.ack_timeout_ms);
    /* DEALER queues while disconnected; the deadline covers a lost peer. */
    zmq_send(c->sock, s->frame.data, s->frame.size, ZMQ_DONTWAIT);
}

static void finish(tly_client *c, slot *s, tly_err whole, uint32_t count, const char *msg)
{
    s->used = false;
    c->in_flight--;
    msgpack_sbuffer_destroy(&s->frame);
    s->done(s->ctx, s->tag, whole, c->results, count, msg);
}

/* A request that must be tried again later: park it, or give up. */
static void retry_later(tly_client *c, slot *s, tly_err why, const char *msg)
{
    if (c->opts.retries_max && s->attempts > c->opts.retries_max) {
        finish(c, s, why == TLY_OK ? TLY_TIMEOUT : why, 0, msg);
        return;
    }
    s->parked = true;
    s->retry_at_ns = tly_mono_ns() + ms_to_ns(c->backoff_ms);
    c->backoff_ms =
        c->backoff_ms * 2 > TLY_RETRY_BACKOFF_MS_MAX ? TLY_RETRY_BACKOFF_MS_MAX : c->backoff_ms * 2;
}

static slot *find_req(tly_client *c, uint64_t req)
{
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++)
        if (c->slots[i].used && !c->slots[i].parked && c->slots[i].req == req)
            return &c->slots[i];
    return NULL;
}

/* The first per-event "try later" outcome: `storage`, or `unavailable` (a
 * replicated ledger whose stream did not acknowledge, [N2]); TLY_OK when
 * there is none. */
static tly_err any_retryable(const tly_ingest_result *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (r[i].err == TLY_STORAGE || r[i].err == TLY_UNAVAILABLE)
            return r[i].err;
    return TLY_OK;
}

static void reconnect(tly_client *c, bool next_endpoint);

static void handle_reply(tly_client *c, const void *buf, size_t len)
{
    uint64_t req = 0;
    uint32_t count = 0;
    char msg[160] = "";
    tly_err whole = tly_wire_reply_decode(buf, len, &req, c->results, TLY_BATCH_EVENTS_MAX, &count,
                                          msg, sizeof msg);
    slot *s = find_req(c, req);
    if (!s)
        return; /* a late reply to a request already resent or finished */
    c->progress_ns = tly_mono_ns();
    tly_err later = whole == TLY_OK ? any_retryable(c->results, count) : whole;
    if (later == TLY_STORAGE || later == TLY_UNAVAILABLE) {
        if (c->opts.verbose)
            fprintf(stderr, "tally: %s answered %s, retrying request %llu\n", c->eps[c->ep_index],
                    tly_err_name(later), (unsigned long long)s->req);
        retry_later(c, s, later, msg);
        /* [N5] an unavailable ledger (a standby, one without its stream):
         * the next endpoint gets everything in flight. */
        if (later == TLY_UNAVAILABLE && c->ep_count > 1)
            reconnect(c, true);
        return;
    }
    c->backoff_ms = TLY_RETRY_BACKOFF_MS_FIRST;
    finish(c, s, whole, whole == TLY_OK ? count : 0, msg);
}

/* When c gives up: the moment opts.give_up_ms after the last progress. */
static uint64_t give_up_at_ns(const tly_client *c)
{
    return c->progress_ns + (uint64_t)c->opts.give_up_ms * 1000000ull;
}

/* No reply for opts.give_up_ms: every request in flight ends TLY_TIMEOUT. */
static void give_up(tly_client *c)
{
    char msg[160];
    snprintf(msg, sizeof msg, "no acknowledgement from %.100s for %lld ms", c->eps[c->ep_index],
             (long long)c->opts.give_up_ms);
    c->gave_up = true;
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++)
        if (c->slots[i].used)
            finish(c, &c->slots[i], TLY_TIMEOUT, 0, msg);
}

bool tly_client_gave_up(const tly_client *c)
{
    return c->gave_up;
}

/* No reply in time: reconnect and resend everything in flight (Lazy
 * Pirate), to the next endpoint when there are several [N5]. */
static void reconnect(tly_client *c, bool next_endpoint)
{
    if (c->opts.verbose && !next_endpoint)
        fprintf(stderr, "tally: no ack from %s within %d ms, reconnecting\n", c->eps[c->ep_index],
                c->opts.ack_timeout_ms);
    c->ep_index = (c->ep_index + 1) % c->ep_count;
    if (c->opts.verbose && c->ep_count > 1)
        fprintf(stderr, "tally: moving to %s\n", c->eps[c->ep_index]);
    zmq_close(c->sock);
    c->sock = NULL;
    if (connect_socket(c) != TLY_OK)
        return;
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++) {
        slot *s = &c->slots[i];
        if (!s->used || s->parked)
            continue;
        if (c->opts.retries_max && s->attempts > c->opts.retries_max)
            finish(c, s, TLY_TIMEOUT, 0, "no acknowledgement after all retries");
        else
            send_slot(c, s);
    }
}

static void check_timers(tly_client *c)
{
    uint64_t now = tly_mono_ns();
    bool expired = false;
    if (c->opts.give_up_ms > 0 && c->in_flight > 0 && now >= give_up_at_ns(c)) {
        give_up(c);
        return;
    }
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++) {
        slot *s = &c->slots[i];
        if (!s->used)
            continue;
        if (s->parked && now >= s->retry_at_ns)
            send_slot(c, s);
        else if (!s->parked && now >= s->deadline_ns)
            expired = true;
    }
    if (expired)
        reconnect(c, false);
}

static int next_wake_ms(const tly_client *c, int wait_ms)
{
    uint64_t now = tly_mono_ns();
    uint64_t wake = now + ms_to_ns(wait_ms);
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX; i++) {
        const slot *s = &c->slots[i];
        if (!s->used)
            continue;
        uint64_t t = s->parked ? s->retry_at_ns : s->deadline_ns;
        if (t < wake)
            wake = t;
    }
    if (c->opts.give_up_ms > 0 && c->in_flight > 0 && give_up_at_ns(c) < wake)
        wake = give_up_at_ns(c);
    return wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
}

uint32_t tly_client_poll(tly_client *c, int wait_ms)
{
    uint64_t end = tly_mono_ns() + ms_to_ns(wait_ms);
    do {
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        int rc = c->sock ? zmq_poll(&it, 1, next_wake_ms(c, wait_ms)) : 0;
        if (rc > 0) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            while (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) >= 0)
                handle_reply(c, zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
            return c->in_flight;
        }
        check_timers(c);
        if (!c->sock && connect_socket(c) != TLY_OK)
            return c->in_flight;
    } while (c->in_flight > 0 && tly_mono_ns() < end);
    return c->in_flight;
}

void tly_client_drain(tly_client *c)
{
    while (c->in_flight > 0)
        tly_client_poll(c, 1000);
}

tly_err tly_client_submit(tly_client *c, const char *source, const tly_span *events, uint32_t count,
                          bool atomic, uint64_t tag, tly_client_done_fn done, void *ctx)
{
    if (count == 0 || count > TLY_BATCH_EVENTS_MAX || !done)
        return TLY_USAGE;
    while (c->in_flight >= c->opts.window && !c->gave_up)
        tly_client_poll(c, 1000);
    if (c->gave_up)
        return TLY_TIMEOUT;
    slot *s = NULL;
    for (uint32_t i = 0; i < TLY_CLIENT_WINDOW_MAX && !s; i++)
        if (!c->slots[i].used)
            s = &c->slots[i];
    msgpack_sbuffer_init(&s->frame);
    tly_err err = tly_wire_ingest_encode(&s->frame, c->next_req, source, atomic, events, count);
    if (err == TLY_OK && s->frame.size > TLY_FRAME_BYTES_MAX)
        err = TLY_TOO_LARGE;
    if (err != TLY_OK) {
        msgpack_sbuffer_destroy(&s->frame);
        return err;
    }
    s->used = true;
    s->req = c->next_req++;
    s->attempts = 0;
    s->tag = tag;
    s->done = done;
    s->ctx = ctx;
    if (c->in_flight++ == 0)
        c->progress_ns = tly_mono_ns(); /* waiting starts now */
    send_slot(c, s);
    return TLY_OK;
}

size_t tly_client_request_bytes(const tly_client *c, const char *source, bool atomic,
                                uint32_t count, size_t event_bytes)
{
    return tly_wire_ingest_envelope_bytes(c->next_req, source, atomic, count) + event_bytes;
}

uint32_t tly_client_fit(const tly_client *c, const char *source, bool atomic,
                        const tly_span *events, uint32_t count)
{
    size_t bytes = 0;
    uint32_t n = 0;
    while (n < count && n < TLY_BATCH_EVENTS_MAX &&
           tly_client_request_bytes(c, source, atomic, n + 1, bytes + events[n].len) <=
               TLY_FRAME_BYTES_MAX)
        bytes += events[n++].len;
    return n;
}

/* Reads a log-read reply: {"records": [...], "head": seq} gives TLY_OK and
 * *head; {"error": code, "message": str} gives that code and msg; anything
 * else TLY_MALFORMED. Unknown keys are skipped. */
static tly_err head_reply_decode(const void *buf, size_t len, uint64_t *head, char *msg, size_t cap)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    uint32_t n = 0;
    bool has_head = false, ok = tly_mp_is_single_value(buf, len) && tly_mp_read_map(&r, &n);
    tly_err err = TLY_MALFORMED;
    snprintf(msg, cap, "log-read did not answer {\"records\", \"head\"}");
    for (uint32_t i = 0; ok && i < n; i++) {
        const char *k, *v;
        uint32_t klen, vlen;
        ok = tly_mp_read_str(&r, &k, &klen);
        if (ok && klen == 4 && memcmp(k, "head", 4) == 0) {
            ok = has_head = tly_mp_read_uint(&r, head);
        } else if (ok && klen == 5 && memcmp(k, "error", 5) == 0 &&
                   tly_mp_read_str(&r, &v, &vlen)) {
            char code[32];
            snprintf(code, sizeof code, "%.*s", (int)(vlen < 31 ? vlen : 31), v);
            if (tly_err_from_name(code, &err) != TLY_OK || err == TLY_OK)
                err = TLY_MALFORMED;
            snprintf(msg, cap, "log-read answered %s", code);
        } else if (ok) {
            ok = tly_mp_skip(&r, NULL, NULL);
        }
    }
    return !ok ? TLY_MALFORMED : has_head ? TLY_OK : err;
}

tly_err tly_client_log_head(tly_client *c, const char *log_read, uint64_t *head, char *msg,
                            size_t cap)
{
    msgpack_sbuffer ask; /* {"from": 0, "max": 0}: no records, only the head */
    msgpack_sbuffer_init(&ask);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ask, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, 0, 0);
    void *s = NULL;
    tly_err err = dealer_to(c, log_read, &s);
    if (err != TLY_OK) {
        msgpack_sbuffer_destroy(&ask);
        snprintf(msg, cap, "cannot connect to %s", log_read);
        return err;
    }
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    err = TLY_TIMEOUT;
    snprintf(msg, cap, "no answer from %s within %d ms", log_read, c->opts.ack_timeout_ms);
    if (zmq_send(s, ask.data, ask.size, ZMQ_DONTWAIT) == (int)ask.size &&
        zmq_poll(&it, 1, c->opts.ack_timeout_ms) > 0) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        err = zmq_msg_recv(&m, s, 0) >= 0 ? TLY_OK : TLY_IO;
        if (err == TLY_OK)
            err = head_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), head, msg, cap);
        zmq_msg_close(&m);
    }
    zmq_close(s);
    msgpack_sbuffer_destroy(&ask);
    return err;
}
