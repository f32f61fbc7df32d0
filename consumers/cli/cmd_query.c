/*
 * cmd_query.c — `tally query`: the query service (SPEC sections 2, 4, 8).
 *
 * A ROUTER socket answers single-frame MessagePack requests {"q": name, ...}
 * from the shard view stores under DIR/views, read-only (tly_query.c holds
 * the logic, shared with the CLI's --views mode). One thread, one request
 * at a time: an answer costs a few LMDB reads, far below a millisecond, so a
 * queue in front of one worker is both simplest and fast enough.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_query.h"

/* How long one poll waits before the loop looks at the stop flag again. */
#define QUERY_POLL_MS 200

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

typedef struct query_opts {
    tly_common_opts common;
    uint32_t shards;
    bool insecure;
} query_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally query [--data DIR] [--query ENDPOINT] [--shards N] [--insecure]\n"
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
            "  --insecure        allow a non-loopback endpoint (the service has no\n"
            "                    authentication: anyone who reaches it reads every view)\n"
            "\n"
            "Stops on SIGINT or SIGTERM. Exit codes: 0 stopped cleanly, 1 error, 2 usage.\n",
            TLY_DEFAULT_QUERY, TLY_DEFAULT_DATA);
}

static int parse(int argc, char **argv, query_opts *o)
{
    tly_common_defaults(&o->common);
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int rc = tly_common_flag(&o->common, argc, argv, &i);
        if (rc < 0)
            return TLY_EXIT_USAGE;
        if (rc > 0)
            continue;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(argv[i], "--insecure") == 0) {
            o->insecure = true;
            continue;
        }
        rc = tly_opt_value("--shards", argc, argv, &i, &v);
        if (rc < 0)
            return TLY_EXIT_USAGE;
        uint64_t n;
        if (rc > 0 && tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n)) {
            o->shards = (uint32_t)n;
            continue;
        }
        if (rc > 0)
            return tly_usagef("query", "--shards takes 1..%u", TLY_SHARDS_MAX);
        return tly_usagef("query", "unknown argument '%s'", argv[i]);
    }
    return TLY_EXIT_OK;
}

/* True for endpoints only this machine can reach. */
static bool is_loopback(const char *ep)
{
    static const char *const ok[] = {"tcp://127.", "tcp://localhost:", "tcp://[::1]:", "ipc://",
                                     "inproc://"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strncmp(ep, ok[i], strlen(ok[i])) == 0)
            return true;
    return false;
}

/* Encodes reply into a message; a reply too large for a frame becomes an
 * error reply, so the client always hears back. */
static void encode_reply(json_t *reply, msgpack_sbuffer *out)
{
    tly_err err = tly_query_pack(reply, out);
    if (err == TLY_OK && out->size <= TLY_FRAME_BYTES_MAX)
        return;
    out->size = 0;
    json_t *e = json_pack("{s:s, s:s}", "error", tly_err_name(err == TLY_OK ? TLY_TOO_LARGE : err),
                          "message", "the answer does not fit in one reply frame");
    if (tly_query_pack(e, out) != TLY_OK)
        out->size = 0;
    json_decref(e);
}

/* Answers one request body into out. */
static void answer(tly_query_store *store, const void *body, size_t len, msgpack_sbuffer *out)
{
    json_t *req = tly_json_from_mp(body, len);
    json_t *reply = NULL;
    if (!json_is_object(req))
        reply = json_pack("{s:s, s:s}", "error", tly_err_name(TLY_MALFORMED), "message",
                          "a query is a single-frame MessagePack map {\"q\": name, ...}");
    else if (tly_query_answer(store, req, &reply) != TLY_OK)
        reply =
            json_pack("{s:s, s:s}", "error", tly_err_name(TLY_NOMEM), "message", "out of memory");
    if (reply)
        encode_reply(reply, out);
    json_decref(reply);
    json_decref(req);
}

/* Receives one request (envelope frames, then the body), answers it and
 * sends the envelope back with the reply. A request with too many frames is
 * dropped: no client of ours sends one. */
static void serve_one(void *sock, tly_query_store *store)
{
    zmq_msg_t parts[TLY_QUERY_ENVELOPE_FRAMES_MAX + 1];
    uint32_t n = 0;
    bool more = true;
    bool overflow = false;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *m = n < TLY_QUERY_ENVELOPE_FRAMES_MAX + 1 ? &parts[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, 0) < 0) {
            zmq_msg_close(m);
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
    if (n >= 2 && !more && !overflow) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        answer(store, zmq_msg_data(&parts[n - 1]), zmq_msg_size(&parts[n - 1]), &out);
        for (uint32_t i = 0; i + 1 < n; i++)
            zmq_send(sock, zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i]), ZMQ_SNDMORE);
        zmq_send(sock, out.data, out.size, 0);
        msgpack_sbuffer_destroy(&out);
    }
    for (uint32_t i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
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
    while (!stop_signal) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, QUERY_POLL_MS);
        if (rc < 0 && errno != EINTR) {
            tly_errorf("query", "poll failed: %s", zmq_strerror(errno));
            return TLY_EXIT_FAIL;
        }
        if (rc > 0)
            serve_one(sock, store);
    }
    return TLY_EXIT_OK;
}

static void *bind_router(void *ctx, const char *ep)
{
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    int64_t max = TLY_QUERY_REQUEST_BYTES_MAX;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_bind(sock, ep) != 0) {
        tly_errorf("query", "cannot bind %s: %s", ep, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

static int run(const query_opts *o)
{
    char views[TLY_PATH_BYTES_MAX], logdir[TLY_PATH_BYTES_MAX];
    if ((size_t)snprintf(views, sizeof views, "%s/views", o->common.data) >= sizeof views ||
        (size_t)snprintf(logdir, sizeof logdir, "%s/log", o->common.data) >= sizeof logdir)
        return tly_usagef("query", "--data path too long");
    tly_query_store *store = NULL;
    tly_err err = tly_query_store_open(views, logdir, o->shards, &store);
    if (err != TLY_OK) {
        tly_errorf("query", "cannot open the view stores: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    void *ctx = zmq_ctx_new();
    void *sock = bind_router(ctx, o->common.query);
    int code = TLY_EXIT_FAIL;
    if (sock) {
        fprintf(stderr, "tally query: listening on %s, views under %s\n", o->common.query, views);
        code = serve(sock, store);
        zmq_close(sock);
    }
    zmq_ctx_term(ctx);
    tly_query_store_close(store);
    return code;
}

int tly_cmd_query(int argc, char **argv)
{
    query_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    if (!o.insecure && !is_loopback(o.common.query)) {
        tly_errorf("query",
                   "refusing to bind %s: not a loopback endpoint (the query service has no "
                   "authentication; pass --insecure to allow it)",
                   o.common.query);
        return TLY_EXIT_FAIL;
    }
    install_signals();
    return run(&o);
}
