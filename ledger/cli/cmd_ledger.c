/*
 * cmd_ledger.c — `tally ledger`, the log daemon and the only writer of the log.
 *
 * The main thread serves three sockets:
 *   ingest   (ROUTER): requests of SPEC section 4, group-committed;
 *   events   (PUB):    every committed record, frames [event type, record bytes];
 *   log-read (ROUTER): {"from","max"} -> {"records":[bin...],"head"}.
 *
 * Group commit: when ingest is readable the daemon drains every request that
 * is waiting (bounded by TLY_COMMIT_REQUESTS_MAX / TLY_COMMIT_EVENTS_MAX) and
 * validates each event into a batch; a commit thread appends a batch in one
 * durable LMDB transaction, and only then is each of its requests answered.
 * While one batch is appended and synced, new requests form the next one, so
 * a slow disk raises batch size rather than lowering durability. A lone small
 * request arriving while nothing is committing is appended by the main
 * thread itself (tly_ledger.c).
 *
 * Shutdown: SIGTERM/SIGINT end the loop after the batch in hand has been
 * committed and acknowledged; requests still queued get `unavailable`.
 *
 * Under systemd (Type=notify, ledger/cli/tally-ledger.service.in) it sends
 * READY=1 once its sockets are bound and STOPPING=1 when the loop has ended;
 * without $NOTIFY_SOCKET sd_notify does nothing.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "ledger_repl.h"
#include "tly_auth.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_ledger.h"
#include "tly_limits.h"
#include "tly_metrics_http.h"

static tly_stop_flag stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, 1);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally ledger [options]\n"
            "Runs the log daemon: ingest (ROUTER), events (PUB), log-read (ROUTER).\n\n"
            "  --data DIR              data directory (log in DIR/log); default $TALLY_DATA\n"
            "                          or ./tally-data\n"
            "  --ingest EP             ingest endpoint (default %s)\n"
            "  --events EP             events endpoint (default %s)\n"
            "  --log-read EP           log-read endpoint (default %s)\n"
            "  --no-sync               do not fsync commits (faster, not durable)\n"
            "  --curve-secret FILE     CURVE secret key of the ledger (Z85)\n"
            "  --authorized-keys FILE  lines '<z85-public-key> <source> <role>[,<role>]'\n"
            "  --metrics HOST:PORT     serve Prometheus metrics over HTTP at\n"
            "                          http://HOST:PORT/metrics (loopback only without\n"
            "                          --insecure; README \"Metrics\" lists them)\n"
            "  --insecure              allow non-loopback endpoints without CURVE, and a\n"
            "                          non-loopback --metrics\n"
            "  --replicate URL[,URL...]  replicate the log into a NATS JetStream stream\n"
            "                          (SPEC section 12): acknowledge an event only once a\n"
            "                          quorum of the stream and this disk hold it\n"
            "  --stream NAME           the stream (default %s)\n"
            "  --replicas R            replicas of a stream created here, 1-%d (default %d)\n"
            "  --standby               follow the stream into this log, serve events and\n"
            "                          log-read, answer ingest unavailable; take over as\n"
            "                          writer when the writer's lease lapses\n"
            "  --takeover-after S      seconds without a lease renewal before a standby\n"
            "                          takes over, 1-%u (default %u)\n"
            "  --no-takeover           with --standby: a read replica for local consumers\n"
            "                          and auditors, writer only when promoted by --name\n"
            "  --name NAME             this ledger in the lease (default HOST:DATA-DIR)\n"
            "\n"
            "       tally ledger promote --replicate URL[,URL...] [--stream NAME] [--name NAME]\n"
            "Asks the standby NAME (default: any) to take over as writer at once.\n"
            "  --help                  show this help\n",
            TLY_DEFAULT_INGEST, TLY_DEFAULT_EVENTS, TLY_DEFAULT_LOG_READ, TLY_REPL_STREAM_DEFAULT,
            TLY_REPL_REPLICAS_MAX, TLY_REPL_REPLICAS_DEFAULT, TLY_TAKEOVER_AFTER_S_MAX,
            TLY_TAKEOVER_AFTER_S_DEFAULT);
}

enum {
    OPT_NO_SYNC = 1,
    OPT_INSECURE,
    OPT_CURVE_SECRET,
    OPT_AUTHORIZED_KEYS,
    OPT_REPLICATE,
    OPT_STREAM,
    OPT_REPLICAS,
    OPT_STANDBY,
    OPT_TAKEOVER_AFTER,
    OPT_NAME,
    OPT_NO_TAKEOVER
};

static const tly_opt ledger_opts[] = {
    {"--no-sync", OPT_NO_SYNC, false},
    {"--insecure", OPT_INSECURE, false},
    {"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH},
    {"--authorized-keys", OPT_AUTHORIZED_KEYS, TLY_OPT_PATH},
    {"--replicate", OPT_REPLICATE, true},
    {"--stream", OPT_STREAM, true},
    {"--replicas", OPT_REPLICAS, true},
    {"--standby", OPT_STANDBY, false},
    {"--takeover-after", OPT_TAKEOVER_AFTER, true},
    {"--name", OPT_NAME, true},
    {"--no-takeover", OPT_NO_TAKEOVER, false},
};

/* The options of `tally ledger promote`: which stream, which standby. */
static const tly_opt promote_opts[] = {
    {"--replicate", OPT_REPLICATE, true},
    {"--stream", OPT_STREAM, true},
    {"--name", OPT_NAME, true},
};

/* One option of cmd ("ledger" or "ledger promote", the name its usage
 * errors begin with) into o. */
static int opt_into(const char *cmd, tly_ledger_opts *o, int id, const char *value)
{
    if (id == TLY_OPT_ARG)
        return tly_usagef(cmd, "unexpected argument '%s'", value);
    o->no_sync = o->no_sync || id == OPT_NO_SYNC;
    o->insecure = o->insecure || id == OPT_INSECURE;
    o->curve_secret = id == OPT_CURVE_SECRET ? value : o->curve_secret;
    o->authorized_keys = id == OPT_AUTHORIZED_KEYS ? value : o->authorized_keys;
    o->replicate = id == OPT_REPLICATE ? value : o->replicate;
    o->stream = id == OPT_STREAM ? value : o->stream;
    o->standby = o->standby || id == OPT_STANDBY;
    o->no_takeover = o->no_takeover || id == OPT_NO_TAKEOVER;
    if (id == OPT_NAME && (!value[0] || strlen(value) > TLY_LEASE_NAME_BYTES_MAX))
        return tly_usagef(cmd, "--name takes 1 to %u bytes", TLY_LEASE_NAME_BYTES_MAX);
    o->name = id == OPT_NAME ? value : o->name;
    if (id == OPT_TAKEOVER_AFTER) {
        uint64_t sec = 0;
        int rc = tly_cli_u64(cmd, "--takeover-after", value, 1, TLY_TAKEOVER_AFTER_S_MAX, &sec);
        if (rc != TLY_EXIT_OK)
            return rc;
        o->takeover_after_ms = (int)sec * 1000;
    }
    if (id == OPT_REPLICAS) {
        uint64_t r = 0;
        int rc = tly_cli_u64(cmd, "--replicas", value, 1, TLY_REPL_REPLICAS_MAX, &r);
        if (rc != TLY_EXIT_OK)
            return rc;
        o->replicas = (int)r;
    }
    return TLY_EXIT_OK;
}

static int ledger_opt(void *ctx, int id, const char *value)
{
    return opt_into("ledger", ctx, id, value);
}

static int promote_opt(void *ctx, int id, const char *value)
{
    return opt_into("ledger promote", ctx, id, value);
}

static int parse_args(int argc, char **argv, tly_ledger_opts *o, const char **metrics)
{
    tly_common_opts c;
    tly_common_defaults(&c);
    const tly_cli_spec spec = {
        "ledger",    TLY_CO_DATA | TLY_CO_INGEST | TLY_CO_EVENTS | TLY_CO_LOG_READ | TLY_CO_METRICS,
        ledger_opts, sizeof ledger_opts / sizeof ledger_opts[0],
        ledger_opt,  o};
    int rc = tly_cli_parse(&spec, &c, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (!o->curve_secret != !o->authorized_keys)
        return tly_usagef("ledger", "--curve-secret and --authorized-keys go together");
    char msg[256];
    if (!o->replicate &&
        (o->stream || o->replicas || o->standby || o->takeover_after_ms || o->name))
        return tly_usagef("ledger", "--stream, --replicas, --standby, --takeover-after and "
                                    "--name go with --replicate");
    if (o->no_takeover && !o->standby)
        return tly_usagef("ledger", "--no-takeover goes with --standby");
    tly_repl_opts ro = {o->replicate, o->stream, o->replicas, false, NULL};
    if (o->replicate && tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef("ledger", "%s", msg);
    if (c.metrics && tly_metrics_addr_check(c.metrics, o->insecure, msg, sizeof msg) != TLY_OK)
        return tly_usagef("ledger", "%s", msg);
    *metrics = c.metrics;
    o->data = c.data;
    o->ingest = c.ingest;
    o->events = c.events;
    o->log_read = c.log_read;
    return TLY_EXIT_OK;
}

/* With --metrics: the registry the ledger counts into, served at addr once
 * the ledger's sockets are bound. Exit code. */
static int start_ledger(tly_ledger_opts *o, const char *addr, tly_ledger **ld,
                        tly_metrics_http **http)
{
    char msg[256] = "";
    tly_err err = addr ? tly_metrics_new(&o->metrics) : TLY_OK;
    if (err == TLY_OK)
        err = tly_ledger_start(o, ld, msg, sizeof msg);
    if (err == TLY_OK && addr) {
        err = tly_metrics_http_start(addr, o->insecure, o->metrics, http, msg, sizeof msg);
        if (err == TLY_OK)
            tly_logf(TLY_LOG_INFO, "ledger", "metrics at http://%s/metrics", addr);
    }
    if (err == TLY_OK)
        return TLY_EXIT_OK;
    tly_errorf("ledger", "%s", msg[0] ? msg : tly_strerror(err));
    tly_ledger_stop(*ld);
    *ld = NULL;
    tly_metrics_free(o->metrics);
    return TLY_EXIT_FAIL;
}

/* `tally ledger promote`: puts the promote request into the lease bucket;
 * the standby it names (or any, the first to see it) takes over at once. */
static int cmd_promote(int argc, char **argv)
{
    tly_ledger_opts o = {0};
    const tly_cli_spec spec = {"ledger promote", 0,
                               promote_opts,     sizeof promote_opts / sizeof promote_opts[0],
                               promote_opt,      &o};
    int rc = tly_cli_parse(&spec, NULL, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    if (!o.replicate)
        return tly_usagef("ledger promote", "--replicate URL[,URL...] is required");
    tly_repl_opts ro = {o.replicate, o.stream, o.replicas, true, NULL};
    char msg[256] = "";
    if (tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef("ledger promote", "%s", msg);
    tly_repl *r = NULL;
    tly_err err = tly_repl_open(&ro, &r, msg, sizeof msg);
    if (err == TLY_OK)
        err = tly_repl_lease_open(r, msg, sizeof msg);
    if (err == TLY_OK && (err = tly_repl_lease_put(r, "promote", o.name ? o.name : "*")) != TLY_OK)
        snprintf(msg, sizeof msg, "the lease bucket does not answer");
    tly_repl_close(r);
    if (err != TLY_OK) {
        tly_errorf("ledger promote", "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    printf("asked %s to take over as writer of stream %s\n", o.name ? o.name : "a standby",
           o.stream ? o.stream : TLY_REPL_STREAM_DEFAULT);
    return TLY_EXIT_OK;
}

int tly_cmd_ledger(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "promote") == 0)
        return cmd_promote(argc - 1, argv + 1);
    tly_ledger_opts o = {0};
    const char *metrics = NULL;
    int rc = parse_args(argc, argv, &o, &metrics);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;
    tly_log_daemon();

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    tly_ledger *ld = NULL;
    tly_metrics_http *http = NULL;
    if (start_ledger(&o, metrics, &ld, &http) != TLY_EXIT_OK)
        return TLY_EXIT_FAIL;
    sd_notify(0, "READY=1");
    tly_err err = tly_ledger_run(ld, &stop_requested);
    sd_notify(0, "STOPPING=1");
    tly_metrics_http_stop(http);
    tly_ledger_stop(ld);
    tly_metrics_free(o.metrics);
    if (err != TLY_OK) {
        tly_errorf("ledger", "stopped: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}
