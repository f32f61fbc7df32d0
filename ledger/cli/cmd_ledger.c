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

#include "tly_auth.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_ledger.h"
#include "tly_limits.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
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
            "  --insecure              allow non-loopback endpoints without CURVE\n"
            "  --help                  show this help\n",
            TLY_DEFAULT_INGEST, TLY_DEFAULT_EVENTS, TLY_DEFAULT_LOG_READ);
}

static int parse_args(int argc, char **argv, tly_ledger_opts *o)
{
    tly_common_opts c;
    tly_common_defaults(&c);
    for (int i = 1; i < argc; i++) {
        int rc = tly_common_opt(&c, argc, argv, &i, usage);
        if (rc == TLY_OPT_HELP || rc == TLY_OPT_BAD)
            return rc == TLY_OPT_HELP ? -1 : TLY_EXIT_USAGE;
        if (rc == TLY_OPT_TAKEN)
            continue;
        if (strcmp(argv[i], "--no-sync") == 0) {
            o->no_sync = true;
        } else if (strcmp(argv[i], "--insecure") == 0) {
            o->insecure = true;
        } else if ((rc = tly_opt_value("--curve-secret", argc, argv, &i, &o->curve_secret)) ||
                   (rc = tly_opt_value("--authorized-keys", argc, argv, &i, &o->authorized_keys))) {
            if (rc < 0)
                return TLY_EXIT_USAGE;
        } else {
            return tly_usagef("ledger", "unknown option '%s'", argv[i]);
        }
    }
    if (!o->curve_secret != !o->authorized_keys)
        return tly_usagef("ledger", "--curve-secret and --authorized-keys go together");
    o->data = c.data;
    o->ingest = c.ingest;
    o->events = c.events;
    o->log_read = c.log_read;
    return TLY_EXIT_OK;
}

int tly_cmd_ledger(int argc, char **argv)
{
    tly_ledger_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char msg[256] = "";
    tly_ledger *ld = NULL;
    tly_err err = tly_ledger_start(&o, &ld, msg, sizeof msg);
    if (err != TLY_OK) {
        tly_errorf("ledger", "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    sd_notify(0, "READY=1");
    err = tly_ledger_run(ld, &stop_requested);
    sd_notify(0, "STOPPING=1");
    tly_ledger_stop(ld);
    if (err != TLY_OK) {
        tly_errorf("ledger", "stopped: %s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}
