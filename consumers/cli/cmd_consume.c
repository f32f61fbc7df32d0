/*
 * cmd_consume.c — `tally consume`: the command line of one consumer shard.
 * The runtime itself is consumers/runtime/tly_consume.c.
 *
 * Under systemd (Type=notify, consumers/cli/tally-consume@.service.in) it
 * sends READY=1 once the shard runs (view store open, following the log) and
 * STOPPING=1 when the run has ended; without $NOTIFY_SOCKET sd_notify does
 * nothing.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "ledger_repl.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_consume.h"
#include "tly_keys.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_metrics_http.h"

#define CMD "consume"

/* The mirror child tells its parent it caught up: one byte on the pipe. */
static void mirror_ready(void *ctx)
{
    int fd = *(int *)ctx;
    char b = 1;
    if (write(fd, &b, 1) != 1)
        return;
    close(fd);
}

static tly_stop_flag consume_stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&consume_stop, 1);
}

typedef struct consume_opts {
    tly_common_opts common;
    tly_consume_opts run;
    bool insecure;      /* --insecure: a non-loopback --metrics */
    const char *nats;   /* --nats URL[,URL...]: DIR/log mirrors the stream [N6] */
    const char *stream; /* --stream NAME, with --nats */
} consume_opts;

/* --- command line --- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally consume [--shard K/N] [--data DIR] [--events EP] [--log-read EP]\n"
            "                     [--curve-server-key KEY --curve-secret FILE]\n"
            "                     [--remote] [--batch N] [--exit-at-head]\n"
            "                     [--metrics HOST:PORT [--insecure]]\n"
            "\n"
            "Folds the log into the views of shard K of N (default 0/1), stored in\n"
            "DIR/views/K-of-N with the checkpoint, one transaction per batch.\n"
            "\n"
            "  --shard K/N      this consumer's shard (N up to %u)\n"
            "  --data DIR       data directory (default $TALLY_DATA, else ./tally-data)\n"
            "  --events EP      the ledger's events socket to follow (default %s)\n"
            "  --log-read EP    the ledger's log-read socket (default %s)\n"
            "  --remote         read the log through log-read only, never DIR/log; with\n"
            "                   --log-read alone, log-read serves while DIR/log is absent.\n"
            "                   A shard folded beside DIR/log reads other shards' sales\n"
            "                   from it, so --remote refuses that store; one folded\n"
            "                   --remote registers every sale instead\n"
            "  --batch N        records per view transaction (default %u, max %u)\n"
            "  --exit-at-head   exit once every record in the log is folded\n"
            "  --curve-server-key KEY  the ledger's CURVE public key (Z85), with\n"
            "  --curve-secret FILE     this reader's secret key file: read a CURVE\n"
            "                   ledger's events and log-read (a reader, auditor or finance key)\n"
            "  --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                   (loopback only without --insecure; README \"Metrics\")\n"
            "  --insecure       allow a non-loopback --metrics\n"
            "  --nats URL[,URL...]  read the replication stream (SPEC section 12) instead\n"
            "                   of a ledger: a child process keeps DIR/log a mirror of it\n"
            "                   (from its head + 1 on, each record checked as the next link\n"
            "                   of the chain) and the shard folds DIR/log\n"
            "  --stream NAME    with --nats: the stream (default TALLY_LOG)\n"
            "\n"
            "SIGTERM or SIGINT commit the current batch and exit 0. Exit 1 on an error\n"
            "(the log is corrupt, the view store belongs to another shard, ...).\n",
            TLY_SHARDS_MAX, TLY_DEFAULT_EVENTS, TLY_DEFAULT_LOG_READ,
            TLY_CONSUME_BATCH_RECORDS_DEFAULT, TLY_CONSUME_BATCH_RECORDS_MAX);
}

/* Parses "K/N" with 0 ≤ K < N ≤ TLY_SHARDS_MAX. */
static bool parse_shard(const char *s, uint32_t *k, uint32_t *n)
{
    const char *slash = strchr(s, '/');
    char kbuf[16];
    uint64_t kv, nv;
    if (!slash || (size_t)(slash - s) >= sizeof kbuf)
        return false;
    memcpy(kbuf, s, (size_t)(slash - s));
    kbuf[slash - s] = '\0';
    if (!tly_parse_u64(kbuf, 0, TLY_SHARDS_MAX - 1, &kv) ||
        !tly_parse_u64(slash + 1, 1, TLY_SHARDS_MAX, &nv) || kv >= nv)
        return false;
    *k = (uint32_t)kv;
    *n = (uint32_t)nv;
    return true;
}

enum {
    OPT_SHARD = 1,
    OPT_CURVE_SERVER_KEY,
    OPT_CURVE_SECRET,
    OPT_BATCH,
    OPT_REMOTE,
    OPT_AT_HEAD,
    OPT_INSECURE,
    OPT_NATS,
    OPT_STREAM
};

static const tly_opt consume_opts_table[] = {
    {"--shard", OPT_SHARD, true},
    {"--curve-server-key", OPT_CURVE_SERVER_KEY, true},
    {"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH},
    {"--batch", OPT_BATCH, true},
    {"--remote", OPT_REMOTE, false},
    {"--exit-at-head", OPT_AT_HEAD, false},
    {"--insecure", OPT_INSECURE, false},
    {"--nats", OPT_NATS, true},
    {"--stream", OPT_STREAM, true},
};

static int consume_opt(void *ctx, int id, const char *v)
{
    consume_opts *o = ctx;
    uint64_t b;
    switch (id) {
    case OPT_SHARD:
        if (!parse_shard(v, &o->run.shard, &o->run.shard_count))
            return tly_usagef(CMD, "--shard wants K/N with 0 <= K < N <= %u", TLY_SHARDS_MAX);
        return TLY_EXIT_OK;
    case OPT_CURVE_SERVER_KEY:
        o->run.curve_server_key = v;
        return TLY_EXIT_OK;
    case OPT_CURVE_SECRET:
        o->run.curve_secret = v;
        return TLY_EXIT_OK;
    case OPT_BATCH:
        if (!tly_parse_u64(v, 1, TLY_CONSUME_BATCH_RECORDS_MAX, &b))
            return tly_usagef(CMD, "--batch wants 1..%u", TLY_CONSUME_BATCH_RECORDS_MAX);
        o->run.batch = (uint32_t)b;
        return TLY_EXIT_OK;
    case OPT_REMOTE:
        o->run.remote = true;
        return TLY_EXIT_OK;
    case OPT_AT_HEAD:
        o->run.exit_at_head = true;
        return TLY_EXIT_OK;
    case OPT_INSECURE:
        o->insecure = true;
        return TLY_EXIT_OK;
    case OPT_NATS:
        o->nats = v;
        return TLY_EXIT_OK;
    case OPT_STREAM:
        o->stream = v;
        return TLY_EXIT_OK;
    default:
        return tly_usagef(CMD, "unexpected argument '%s'", v);
    }
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(consume_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    tly_common_defaults(&o->common);
    o->run.shard_count = 1;
    o->run.batch = TLY_CONSUME_BATCH_RECORDS_DEFAULT;
    const tly_cli_spec spec = {CMD,
                               TLY_CO_DATA | TLY_CO_EVENTS | TLY_CO_LOG_READ | TLY_CO_METRICS,
                               consume_opts_table,
                               sizeof consume_opts_table / sizeof consume_opts_table[0],
                               consume_opt,
                               o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP) {
        usage(stdout);
        return TLY_EXIT_OK;
    }
    if (rc != TLY_EXIT_OK)
        return rc;
    if (!o->run.curve_server_key != !o->run.curve_secret)
        return tly_usagef(CMD, "--curve-server-key and --curve-secret go together");
    if (o->run.curve_server_key && !tly_key_z85_valid(o->run.curve_server_key))
        return tly_usagef(CMD, "--curve-server-key wants the ledger's 40-character Z85 key");
    char msg[256];
    if (o->common.metrics &&
        tly_metrics_addr_check(o->common.metrics, o->insecure, msg, sizeof msg) != TLY_OK)
        return tly_usagef(CMD, "%s", msg);
    if (o->stream && !o->nats)
        return tly_usagef(CMD, "--stream goes with --nats");
    if (o->nats && o->run.remote)
        return tly_usagef(CMD, "--nats reads the stream into DIR/log: not with --remote");
    tly_repl_opts ro = {o->nats, o->stream, 0, true, "--nats"};
    if (o->nats && tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef(CMD, "%s", msg);
    if (tly_common_endpoints(CMD, &o->common) != TLY_EXIT_OK)
        return TLY_EXIT_FAIL;
    o->run.log_read_given = (o->common.given & TLY_CO_LOG_READ) != 0;
    return -1;
}

static void notify_ready(void)
{
    sd_notify(0, "READY=1");
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: blocking polls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* --metrics: the registry the shard counts into, served before it starts
 * (its series appear once the view store is open). */
static tly_err start_metrics(consume_opts *o, tly_metrics_http **http)
{
    char msg[256] = "";
    tly_err err = tly_metrics_new(&o->run.metrics);
    if (err == TLY_OK)
        err = tly_metrics_http_start(o->common.metrics, o->insecure, o->run.metrics, http, msg,
                                     sizeof msg);
    if (err == TLY_OK) {
        tly_logf(TLY_LOG_INFO, CMD, "metrics at http://%s/metrics", o->common.metrics);
        return TLY_OK;
    }
    tly_errorf(CMD, "%s", msg[0] ? msg : tly_strerror(err));
    tly_metrics_free(o->run.metrics);
    o->run.metrics = NULL;
    return err;
}

/* --nats: the mirror child's side. Writes one byte to fd once DIR/log has
 * what the stream held (1), then follows it until SIGTERM (or its parent's
 * death); or, when another process (another shard's mirror, a ledger)
 * writes DIR/log already, writes 2 and exits. Never returns. */
static void mirror_child(const consume_opts *o, const char *log_dir, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    install_signals();
    tly_log *probe = NULL;
    if (tly_log_open(log_dir, TLY_LOG_WRITE, &probe) == TLY_UNAVAILABLE) {
        /* another shard's mirror (or a ledger) writes DIR/log already */
        char b = 2;
        _exit(write(fd, &b, 1) == 1 ? TLY_EXIT_OK : TLY_EXIT_FAIL);
    }
    tly_log_close(probe);
    tly_repl_opts ro = {o->nats, o->stream, 0, true, "--nats"};
    char msg[256] = "";
    tly_err err = tly_repl_follow(&ro, log_dir, &consume_stop, mirror_ready, &fd, msg, sizeof msg);
    if (err != TLY_OK)
        tly_errorf(CMD, "mirror of the stream: %s", msg[0] ? msg : tly_strerror(err));
    _exit(err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL);
}

/* Starts the mirror child and waits until DIR/log holds what the stream
 * held (so --exit-at-head folds all of it). Its pid into *pid; exit code. */
static int start_mirror(const consume_opts *o, pid_t *pid)
{
    char log_dir[TLY_PATH_BYTES_MAX + 8];
    if (tly_layout_log(o->common.data, log_dir, sizeof log_dir) != TLY_OK)
        return tly_usagef(CMD, "path too long: %s", o->common.data);
    int fds[2];
    if (pipe(fds) != 0)
        return TLY_EXIT_FAIL;
    fflush(NULL);
    *pid = fork();
    if (*pid == 0) {
        close(fds[0]);
        mirror_child(o, log_dir, fds[1]);
    }
    close(fds[1]);
    char b = 0;
    ssize_t n = *pid > 0 ? read(fds[0], &b, 1) : -1;
    close(fds[0]);
    if (n == 1 && b == 1)
        return TLY_EXIT_OK;
    if (n == 1 && b == 2) { /* someone else keeps DIR/log up to date: fold it */
        waitpid(*pid, NULL, 0);
        *pid = 0;
        return TLY_EXIT_OK;
    }
    if (*pid > 0)
        waitpid(*pid, NULL, 0);
    *pid = 0;
    return TLY_EXIT_FAIL; /* the child said why */
}

static void stop_mirror(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int tly_cmd_consume(int argc, char **argv)
{
    consume_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc >= 0)
        return rc;
    o.run.data = o.common.data;
    o.run.events = o.common.events;
    o.run.log_read = o.common.log_read;
    o.run.on_ready = notify_ready;
    tly_log_daemon();
    install_signals();
    pid_t mirror = 0;
    if (o.nats && start_mirror(&o, &mirror) != TLY_EXIT_OK)
        return TLY_EXIT_FAIL;
    tly_metrics_http *http = NULL;
    if (o.common.metrics && start_metrics(&o, &http) != TLY_OK) {
        stop_mirror(mirror);
        return TLY_EXIT_FAIL;
    }
    tly_err err = tly_consume_run(&o.run, &consume_stop);
    stop_mirror(mirror);
    sd_notify(0, "STOPPING=1");
    tly_metrics_http_stop(http);
    tly_metrics_free(o.run.metrics);
    return err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}
