/*
 * cmd_query.c — `tally query`: the query service (SPEC sections 2, 4, 8).
 *
 * A ROUTER socket answers single-frame MessagePack requests {"q": name, ...}
 * from the shard view stores under DIR/views, read-only (tly_query.c holds
 * the logic, shared with the CLI's --views mode). One thread, one request
 * at a time: an answer costs a few LMDB reads, far below a millisecond, so a
 * queue in front of one worker is both simplest and fast enough.
 *
 * Request size: ZeroMQ takes frames up to TLY_QUERY_FRAME_BYTES_HARD_MAX
 * (4 MiB); a request over TLY_QUERY_REQUEST_BYTES_MAX (64 KiB) but within
 * that is answered {"error": "too_large"} without being decoded. A frame
 * over the hard maximum is dropped by ZeroMQ itself, which disconnects the
 * peer: that client gets no answer (the service goes on serving others).
 *
 * Under systemd (Type=notify, consumers/cli/tally-query.service.in) it sends
 * READY=1 once the socket is bound and STOPPING=1 when a signal ended the
 * loop; without $NOTIFY_SOCKET sd_notify does nothing.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "tly_auth.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_ledger.h"
#include "tly_limits.h"
#include "tly_metrics_http.h"
#include "tly_query.h"

/* How long one poll waits before the loop looks at the stop flag again. */
#define QUERY_POLL_MS 200

static tly_stop_flag stop_signal;

static void on_stop(int sig)
{
    atomic_store(&stop_signal, sig);
}

typedef struct query_opts {
    tly_common_opts common;
    uint32_t shards;
    bool insecure;
    const char *curve_secret;    /* --curve-secret FILE */
    const char *authorized_keys; /* --authorized-keys FILE */
} query_opts;

/* The service's authorized keys with CURVE; NULL without (loopback only). */
static tly_auth *query_auth;

/* The query kinds counted by name (tly_query.h lists them; a new kind
 * gets a line here). Any other "q" counts as "other", a request that does
 * not decode (malformed, too large) as "invalid". */
static const char *const query_kinds[] = {
    "balance", "rebate",   "tier",    "claims",     "statement", "liabilities", "partners",
    "report",  "expiring", "journal", "exceptions", "status",    "other",       "invalid"};
#define QUERY_KINDS (sizeof query_kinds / sizeof query_kinds[0])

/* With --metrics: the service's series (README "Metrics"); NULL without. */
static struct {
    tly_metrics *reg;
    tly_metric *requests[QUERY_KINDS];
    tly_metric *seconds;
} query_metrics;

static void register_metrics(void)
{
    for (size_t k = 0; k < QUERY_KINDS; k++)
        query_metrics.requests[k] = tly_metrics_counter(
            query_metrics.reg, "tally_query_requests_total",
            "Requests answered, by query kind (other: an unknown kind; invalid: a request that "
            "did not decode).",
            "kind", query_kinds[k]);
    query_metrics.seconds = tly_metrics_histogram(
        query_metrics.reg, "tally_query_request_duration_seconds",
        "Time from a request's arrival to its encoded reply (decode, answer, encode).", NULL, NULL,
        &tly_metrics_seconds);
}

/* Counts one request req (NULL: it did not decode) that took ns. */
static void count_request(const json_t *req, uint64_t ns)
{
    const char *q = req ? json_string_value(json_object_get(req, "q")) : NULL;
    size_t k = req ? QUERY_KINDS - 2 : QUERY_KINDS - 1;
    for (size_t i = 0; q && i + 2 < QUERY_KINDS; i++)
        if (strcmp(q, query_kinds[i]) == 0)
            k = i;
    tly_metric_add(query_metrics.requests[k], 1);
    tly_metric_observe(query_metrics.seconds, ns);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally query [--data DIR] [--query ENDPOINT] [--shards N] [--insecure]\n"
            "                   [--curve-secret FILE --authorized-keys FILE]\n"
            "\n"
            "Runs the query service: a ZeroMQ ROUTER on ENDPOINT (default %s) that\n"
            "answers balance, rebate, tier, claims, liabilities, exceptions and status\n"
            "requests from the shard view stores DIR/views/K-of-N, read-only.\n"
            "\n"
            "  --data DIR        data directory (default $TALLY_DATA, else %s)\n"
            "  --query EP        endpoint to bind\n"
            "  --shards N        expect the shards 0-of-N .. (N-1)-of-N (default: use the\n"
            "                    complete set found under DIR/views; stores that do not\n"
            "                    exist yet are picked up as the consumers create them)\n"
            "  --insecure        allow a non-loopback endpoint without CURVE (anyone who\n"
            "                    reaches it reads every view), and a non-loopback --metrics\n"
            "  --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                    (loopback only without --insecure; README \"Metrics\")\n"
            "  --curve-secret F  serve with CURVE: the service's secret key file\n"
            "  --authorized-keys F  the keys that may ask, with their roles: finance and\n"
            "                    auditor ask anything; partner:ID only that partner's\n"
            "                    balance, rebate, tier and claims; others get forbidden\n"
            "\n"
            "Stops on SIGINT or SIGTERM. Exit codes: 0 stopped cleanly, 1 error, 2 usage.\n",
            TLY_DEFAULT_QUERY, TLY_DEFAULT_DATA);
}

enum { OPT_SHARDS = 1, OPT_INSECURE, OPT_CURVE_SECRET, OPT_AUTHORIZED_KEYS };

static const tly_opt query_opts_table[] = {
    {"--shards", OPT_SHARDS, true},
    {"--insecure", OPT_INSECURE, false},
    {"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH},
    {"--authorized-keys", OPT_AUTHORIZED_KEYS, TLY_OPT_PATH},
};

static int query_opt(void *ctx, int id, const char *v)
{
    query_opts *o = ctx;
    uint64_t n;
    switch (id) {
    case OPT_SHARDS:
        if (!tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n))
            return tly_usagef("query", "--shards takes 1..%u", TLY_SHARDS_MAX);
        o->shards = (uint32_t)n;
        return TLY_EXIT_OK;
    case OPT_INSECURE:
        o->insecure = true;
        return TLY_EXIT_OK;
    case OPT_CURVE_SECRET:
        o->curve_secret = v;
        return TLY_EXIT_OK;
    case OPT_AUTHORIZED_KEYS:
        o->authorized_keys = v;
        return TLY_EXIT_OK;
    default:
        return tly_usagef("query", "unexpected argument '%s'", v);
    }
}

static int parse(int argc, char **argv, query_opts *o)
{
    tly_common_defaults(&o->common);
    const tly_cli_spec spec = {
        "query",          TLY_CO_DATA | TLY_CO_QUERY | TLY_CO_METRICS,
        query_opts_table, sizeof query_opts_table / sizeof query_opts_table[0],
        query_opt,        o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    char msg[256];
    if (rc == TLY_EXIT_OK && o->common.metrics &&
        tly_metrics_addr_check(o->common.metrics, o->insecure, msg, sizeof msg) != TLY_OK)
        return tly_usagef("query", "%s", msg);
    return rc;
}

/* With CURVE: TLY_OK when the authenticated key (user, its source name)
 * may ask req, else TLY_FORBIDDEN. Without CURVE everything is allowed. */
static tly_err permitted(const json_t *req, const char *user)
{
    if (!query_auth)
        return TLY_OK;
    unsigned roles = user ? tly_auth_roles(query_auth, user) : 0;
    bool everything = (roles & (TLY_ROLE_FINANCE | TLY_ROLE_AUDITOR)) != 0;
    const char *partner = (roles & TLY_ROLE_PARTNER) ? tly_auth_partner(query_auth, user) : NULL;
    return tly_query_permits(req, everything, partner);
}

/* Answers one request body into out; user is the CURVE identity or NULL.
 * Decoding (too_large, malformed), answering and encoding are the
 * library's (tly_query_request_decode, tly_query_answer_encode,
 * tly_query_reply_encode). */
static void answer(tly_query_store *store, const void *body, size_t len, const char *user,
                   msgpack_sbuffer *out)
{
    uint64_t t0 = tly_mono_ns();
    json_t *reply = NULL;
    json_t *req = tly_query_request_decode(body, len, &reply);
    if (req && permitted(req, user) != TLY_OK)
        reply = json_pack("{s:s, s:s}", "error", tly_err_name(TLY_FORBIDDEN), "message",
                          "this key may not ask this query");
    else if (req && tly_query_answer_encode(store, req, out) != TLY_OK)
        reply =
            json_pack("{s:s, s:s}", "error", tly_err_name(TLY_NOMEM), "message", "out of memory");
    if (reply)
        tly_query_reply_encode(reply, out);
    if (query_metrics.reg)
        count_request(req, tly_mono_ns() - t0);
    json_decref(reply);
    json_decref(req);
}

/* One answered request whose reply is not sent yet: the envelope frames
 * it came with and the reply's body. */
typedef struct reply_slot {
    zmq_msg_t env[TLY_QUERY_ENVELOPE_FRAMES_MAX];
    uint32_t env_n;
    msgpack_sbuffer out;
} reply_slot;

/* Receives one request (envelope frames, then the body) and answers it
 * into slot, its envelope kept there for send_replies. A request with too
 * many frames is dropped: no client of ours sends one. Returns 0 when no
 * request was waiting (ZeroMQ delivers the frames of a message together:
 * only the first can be missing), 1 when one was answered into slot, 2
 * when one was dropped. */
static int serve_one(void *sock, tly_query_store *store, reply_slot *slot)
{
    zmq_msg_t parts[TLY_QUERY_ENVELOPE_FRAMES_MAX + 1];
    uint32_t n = 0;
    bool more = true;
    bool overflow = false;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *m = n < TLY_QUERY_ENVELOPE_FRAMES_MAX + 1 ? &parts[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            if (n == 0)
                return 0;
            break;
        }
        more = zmq_msg_more(m);
        if (m == &tmp) {
            overflow = true;
            zmq_msg_close(m);
        } else {
            n++;
        }
    }
    if (n < 2 || more || overflow) {
        for (uint32_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        return 2;
    }
    msgpack_sbuffer_init(&slot->out);
    answer(store, zmq_msg_data(&parts[n - 1]), zmq_msg_size(&parts[n - 1]),
           zmq_msg_gets(&parts[n - 1], "User-Id"), &slot->out);
    zmq_msg_close(&parts[n - 1]);
    slot->env_n = n - 1;
    for (uint32_t i = 0; i + 1 < n; i++) { /* closed by send_replies */
        zmq_msg_init(&slot->env[i]);
        zmq_msg_move(&slot->env[i], &parts[i]);
        zmq_msg_close(&parts[i]);
    }
    return 1;
}

/* Sends the replies of slots[0, n), in the order answered, and frees them.
 * Sent together after a drain's answers rather than one by one between
 * them: ZeroMQ's I/O thread then wakes once for the lot and writes them
 * in few system calls, where a reply sent after each answer woke it for
 * every one (it was half the service's CPU per query). */
static void send_replies(void *sock, reply_slot *slots, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        reply_slot *r = &slots[k];
        for (uint32_t i = 0; i < r->env_n; i++)
            if (zmq_msg_send(&r->env[i], sock, ZMQ_SNDMORE) < 0)
                zmq_msg_close(&r->env[i]);
        zmq_send(sock, r->out.data, r->out.size, 0);
        msgpack_sbuffer_destroy(&r->out);
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int serve(void *sock, tly_query_store *store)
{
    static reply_slot slots[TLY_QUERY_DRAIN_MAX];
    while (!atomic_load(&stop_signal)) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, QUERY_POLL_MS);
        if (rc < 0 && errno != EINTR) {
            tly_errorf("query", "poll failed: %s", zmq_strerror(errno));
            return TLY_EXIT_FAIL;
        }
        /* Every request waiting, up to TLY_QUERY_DRAIN_MAX, per wake-up:
         * with several clients one poll serves many. */
        uint32_t n = 0;
        for (uint32_t i = 0; rc > 0 && i < TLY_QUERY_DRAIN_MAX; i++) {
            int got = serve_one(sock, store, &slots[n]);
            if (got == 0)
                break;
            n += got == 1;
        }
        send_replies(sock, slots, n);
    }
    return TLY_EXIT_OK;
}

/* Makes sock a CURVE server with the secret key in path. */
static bool setup_curve(void *sock, const char *path)
{
    char secret[TLY_Z85_KEY_CHARS + 1], pub[TLY_Z85_KEY_CHARS + 1], msg[256];
    if (tly_auth_read_secret(path, secret, pub, msg, sizeof msg) != TLY_OK) {
        tly_errorf("query", "%s", msg);
        return false;
    }
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, TLY_Z85_KEY_CHARS);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, TLY_ZAP_DOMAIN, strlen(TLY_ZAP_DOMAIN));
    return true;
}

static void *bind_router(void *ctx, const char *ep, const char *curve_secret)
{
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (curve_secret && !setup_curve(sock, curve_secret)) {
        zmq_close(sock);
        return NULL;
    }
    int zero = 0;
    int64_t max = TLY_QUERY_FRAME_BYTES_HARD_MAX; /* larger requests get too_large */
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_bind(sock, ep) != 0) {
        tly_errorf("query", "cannot bind %s: %s", ep, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* Loads the authorized keys and starts the ZAP handler on ctx. */
static bool start_auth(const query_opts *o, void *ctx)
{
    char msg[256] = "";
    tly_err err = tly_auth_load(o->authorized_keys, &query_auth, msg, sizeof msg);
    if (err == TLY_OK)
        err = tly_auth_start(query_auth, ctx);
    if (err != TLY_OK) {
        tly_errorf("query", "%s", msg[0] ? msg : tly_strerror(err));
        tly_auth_free(query_auth);
        query_auth = NULL;
        return false;
    }
    return true;
}

/* --metrics: the service's registry, served once its socket is bound. */
static bool start_metrics(const query_opts *o, tly_metrics_http **http)
{
    char msg[256] = "";
    tly_err err = tly_metrics_new(&query_metrics.reg);
    if (err == TLY_OK) {
        register_metrics();
        err = tly_metrics_http_start(o->common.metrics, o->insecure, query_metrics.reg, http, msg,
                                     sizeof msg);
    }
    if (err == TLY_OK) {
        tly_logf(TLY_LOG_INFO, "query", "metrics at http://%s/metrics", o->common.metrics);
        return true;
    }
    tly_errorf("query", "%s", msg[0] ? msg : tly_strerror(err));
    return false;
}

static int run(const query_opts *o)
{
    char views[TLY_PATH_BYTES_MAX], logdir[TLY_PATH_BYTES_MAX];
    if (tly_layout_views(o->common.data, views, sizeof views) != TLY_OK ||
        tly_layout_log(o->common.data, logdir, sizeof logdir) != TLY_OK)
        return tly_usagef("query", "--data path too long");
    tly_query_store *store = NULL;
    tly_err err = tly_query_store_open(views, logdir, o->shards, &store);
    if (err != TLY_OK) {
        tly_errorf("query", "cannot open the view stores: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    char abs[PATH_MAX];
    tly_query_store_set_data(store, realpath(o->common.data, abs) ? abs : o->common.data);
    void *ctx = zmq_ctx_new();
    if (o->authorized_keys && !start_auth(o, ctx)) {
        zmq_ctx_term(ctx);
        tly_query_store_close(store);
        return TLY_EXIT_FAIL;
    }
    void *sock = bind_router(ctx, o->common.query, o->curve_secret);
    int code = TLY_EXIT_FAIL;
    tly_metrics_http *http = NULL;
    if (sock && o->common.metrics && !start_metrics(o, &http)) {
        zmq_close(sock);
        sock = NULL;
    }
    if (sock) {
        tly_logf(TLY_LOG_INFO, "query", "listening on %s, views under %s", o->common.query, views);
        sd_notify(0, "READY=1");
        code = serve(sock, store);
        sd_notify(0, "STOPPING=1");
        zmq_close(sock);
    }
    tly_metrics_http_stop(http);
    tly_metrics_free(query_metrics.reg);
    query_metrics.reg = NULL;
    zmq_ctx_term(ctx);
    tly_auth_free(query_auth);
    query_auth = NULL;
    tly_query_store_close(store);
    return code;
}

int tly_cmd_query(int argc, char **argv)
{
    query_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    if (!o.curve_secret != !o.authorized_keys)
        return tly_usagef("query", "--curve-secret and --authorized-keys go together");
    if (!o.insecure && !o.curve_secret && !tly_endpoint_is_loopback(o.common.query)) {
        tly_errorf("query",
                   "refusing to bind %s: not a loopback endpoint (serve it with "
                   "--curve-secret and --authorized-keys, or pass --insecure)",
                   o.common.query);
        return TLY_EXIT_FAIL;
    }
    tly_log_daemon();
    install_signals();
    return run(&o);
}
