/*
 * tly_consume.h — the consumer runtime: one shard folding the log into its
 * view store (SPEC section 2), as run by `tally consume`.
 *
 * The runtime restores the shard's engine from its view store, folds the log
 * from checkpoint + 1 and commits every batch with its checkpoint in one LMDB
 * transaction, so a crash at any moment resumes exactly once. Records come
 * from DIR/log through the ledger's read API, or from the log-read socket;
 * the events socket wakes it up. See tly_consume.c for the details.
 */
#ifndef TLY_CONSUME_H
#define TLY_CONSUME_H

#include <stdbool.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_metrics.h"
#include "tly_os.h"

typedef struct tly_consume_opts {
    const char *data;     /* the data directory (log and views live there) */
    const char *events;   /* the ledger's events socket (PUB) */
    const char *log_read; /* the ledger's log-read socket */
    uint32_t shard;       /* K of N: 0 <= shard < shard_count <= TLY_SHARDS_MAX */
    uint32_t shard_count;
    uint32_t batch;      /* records per view transaction, 1..TLY_CONSUME_BATCH_RECORDS_MAX */
    bool remote;         /* read the log through log-read only */
    bool exit_at_head;   /* return once the log holds nothing more */
    bool log_read_given; /* log-read serves while DIR/log is absent */
    const char *curve_server_key; /* the ledger's Z85 public key; NULL: no CURVE */
    const char *curve_secret;     /* with it: this reader's secret key file */
    void (*on_ready)(void);       /* called once the shard runs (store open, following the
                                     log), e.g. to tell a service manager; NULL: none */
    tly_metrics *metrics;         /* registers and updates the tally_consumer_* metrics there,
                                     labelled shard="K/N" (README "Metrics"); NULL: none */
} tly_consume_opts;

/*
 * Runs shard o->shard of o->shard_count until *stop becomes non-zero (set
 * from a signal handler: the current batch is committed first) or, with
 * exit_at_head, until the log holds nothing more. Progress and errors are
 * logged on stderr as "tally consume: ...". Returns TLY_OK on a clean stop,
 * TLY_CORRUPT when a record does not decode (what came before it is
 * committed), or the error that stopped it (the engine's state is then not
 * committed).
 */
tly_err tly_consume_run(const tly_consume_opts *o, tly_stop_flag *stop);

#endif
