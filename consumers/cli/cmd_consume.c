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
#include <systemd/sd-daemon.h>

#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_consume.h"
#include "tly_keys.h"
#include "tly_limits.h"

#define CMD "consume"

static volatile sig_atomic_t consume_stop;

static void on_signal(int sig)
{
    (void)sig;
    consume_stop = 1;
}

typedef struct consume_opts {
    tly_common_opts common;
    tly_consume_opts run;
} consume_opts;

/* --- command line --- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally consume [--shard K/N] [--data DIR] [--events EP] [--log-read EP]\n"
            "                     [--curve-server-key KEY --curve-secret FILE]\n"
            "                     [--remote] [--batch N] [--exit-at-head]\n"
            "\n"
            "Folds the log into the views of shard K of N (default 0/1), stored in\n"
            "DIR/views/K-of-N with the checkpoint, one transaction per batch.\n"
            "\n"
            "  --shard K/N      this consumer's shard (N up to %u)\n"
            "  --data DIR       data directory (default $TALLY_DATA, else ./tally-data)\n"
            "  --events EP      the ledger's events socket to follow (default %s)\n"
            "  --log-read EP    the ledger's log-read socket (default %s)\n"
            "  --remote         read the log through log-read only, never DIR/log; with\n"
            "                   --log-read alone, log-read serves while DIR/log is absent\n"
            "  --batch N        records per view transaction (default %u, max %u)\n"
            "  --exit-at-head   exit once every record in the log is folded\n"
            "  --curve-server-key KEY  the ledger's CURVE public key (Z85), with\n"
            "  --curve-secret FILE     this reader's secret key file: read a CURVE\n"
            "                   ledger's events and log-read (a reader, auditor or finance key)\n"
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

/* Returns -1 to go on, else the exit code. */
static int parse_one(consume_opts *o, int argc, char **argv, int *i)
{
    const char *v;
    int rc;
    if (strncmp(argv[*i], "--log-read", 10) == 0)
        o->run.log_read_given = true;
    if ((rc = tly_common_flag(&o->common, argc, argv, i)) != 0)
        return rc < 0 ? TLY_EXIT_USAGE : -1;
    if ((rc = tly_opt_value("--shard", argc, argv, i, &v)) != 0) {
        if (rc < 0 || !parse_shard(v, &o->run.shard, &o->run.shard_count))
            return tly_usagef(CMD, "--shard wants K/N with 0 <= K < N <= %u", TLY_SHARDS_MAX);
        return -1;
    }
    if ((rc = tly_opt_value("--curve-server-key", argc, argv, i, &o->run.curve_server_key)) ||
        (rc = tly_opt_value("--curve-secret", argc, argv, i, &o->run.curve_secret)))
        return rc < 0 ? TLY_EXIT_USAGE : -1;
    if ((rc = tly_opt_value("--batch", argc, argv, i, &v)) != 0) {
        uint64_t b;
        if (rc < 0 || !tly_parse_u64(v, 1, TLY_CONSUME_BATCH_RECORDS_MAX, &b))
            return tly_usagef(CMD, "--batch wants 1..%u", TLY_CONSUME_BATCH_RECORDS_MAX);
        o->run.batch = (uint32_t)b;
        return -1;
    }
    if (strcmp(argv[*i], "--remote") == 0)
        o->run.remote = true;
    else if (strcmp(argv[*i], "--exit-at-head") == 0)
        o->run.exit_at_head = true;
    else if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) {
        usage(stdout);
        return TLY_EXIT_OK;
    } else
        return tly_usagef(CMD, "unknown option '%s'", argv[*i]);
    return -1;
}

static int parse_args(consume_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    tly_common_defaults(&o->common);
    o->run.shard_count = 1;
    o->run.batch = TLY_CONSUME_BATCH_RECORDS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        int rc = parse_one(o, argc, argv, &i);
        if (rc >= 0)
            return rc;
    }
    if (!o->run.curve_server_key != !o->run.curve_secret)
        return tly_usagef(CMD, "--curve-server-key and --curve-secret go together");
    if (o->run.curve_server_key && !tly_key_z85_valid(o->run.curve_server_key))
        return tly_usagef(CMD, "--curve-server-key wants the ledger's 40-character Z85 key");
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
    install_signals();
    tly_err err = tly_consume_run(&o.run, &consume_stop);
    sd_notify(0, "STOPPING=1");
    return err == TLY_OK ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}
