/*
 * tly_ledger.h — the ledger daemon as a library: start, serve, stop.
 *
 * `tally ledger` (cmd_ledger.c) is a thin wrapper; tests and `tally bench`
 * use the same code through the binary.
 */
#ifndef TLY_LEDGER_H
#define TLY_LEDGER_H

#include <stdbool.h>

#include "tly_err.h"
#include "tly_metrics.h"
#include "tly_os.h"

typedef struct tly_ledger_opts {
    const char *data;   /* data directory; the log is DIR/log */
    const char *ingest; /* endpoints */
    const char *events;
    const char *log_read;
    bool no_sync;                /* --no-sync: commits are not fsynced */
    bool insecure;               /* allow non-loopback endpoints without CURVE */
    const char *curve_secret;    /* NULL: no CURVE */
    const char *authorized_keys; /* with curve_secret */
    /* SPEC section 12: --replicate URL[,URL...] (NULL: not replicated), the
     * stream (NULL: TLY_REPL_STREAM_DEFAULT), replicas of a stream created
     * here (0: TLY_REPL_REPLICAS_DEFAULT). */
    const char *replicate;
    const char *stream;
    int replicas;
    /* [N4] --standby: follow the stream, answer ingest `unavailable`, take
     * over when the writer's lease lapses for takeover_after_ms (0:
     * TLY_TAKEOVER_AFTER_S_DEFAULT) or on `tally ledger promote`. name: this
     * ledger in the lease (NULL: HOST:DATA-DIR). */
    bool standby;
    bool no_takeover; /* --no-takeover: a standby that is a read replica only */
    int takeover_after_ms;
    const char *name;
    tly_metrics *metrics; /* registers and counts the tally_ledger_* metrics there
                             (README "Metrics"); NULL: none. Outlives the ledger. */
} tly_ledger_opts;

typedef struct tly_ledger tly_ledger;

/* Opens the log, loads keys and binds the sockets. On failure writes a
 * sentence into msg and returns TLY_USAGE (bad endpoint or option),
 * TLY_IO/TLY_BAD_FIELD (keys), TLY_STORAGE (log) or TLY_UNAVAILABLE (bind).
 * With replicate: TLY_UNAVAILABLE (no cluster, no quorum) or TLY_CORRUPT
 * (the stream is not this log's), see ledger_repl.h. */
tly_err tly_ledger_start(const tly_ledger_opts *opts, tly_ledger **out, char *msg, size_t cap);

/* Serves until *stop becomes non-zero; the batch in hand is committed and
 * acknowledged, requests still queued get `unavailable`. */
tly_err tly_ledger_run(tly_ledger *ld, tly_stop_flag *stop);

/* Closes sockets and the log. NULL is a no-op. */
void tly_ledger_stop(tly_ledger *ld);

/* True when endpoint is loopback-only (tcp on 127.0.0.0/8, localhost or
 * [::1], ipc://, inproc://). */
bool tly_endpoint_is_loopback(const char *endpoint);

#endif
