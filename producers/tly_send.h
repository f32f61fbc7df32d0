/*
 * tly_send.h — streaming import: JSON lines or CSV into ledger requests.
 *
 * Used by `tally send`. Reads the stream line by line (a CSV row may span
 * lines: it is numbered by its first), converts each to an event
 * (MessagePack), batches consecutive events of one source and sends
 * them through a tly_client, reporting every rejected event with its line
 * number, id, code and message. A request is closed before it outgrows the
 * frame (TLY_FRAME_BYTES_MAX, envelope included) or holds the batch size;
 * an event too large for a request even alone is rejected (too_large)
 * without being sent.
 */
#ifndef TLY_SEND_H
#define TLY_SEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tly_client.h"
#include "tly_err.h"
#include "tly_event.h"

typedef struct tly_send_config {
    const char *source; /* overrides every record's source; NULL: per record */
    bool csv;           /* a CSV file (tly_csv.h) instead of JSON lines */
    bool atomic;        /* each request all-or-nothing */
    uint32_t batch;     /* events per request, 1..TLY_BATCH_EVENTS_MAX */
    tly_client_opts client;
    /* The ledger's log-read endpoint, asked for the log head before the
     * first request: an event acknowledged as a duplicate with a seq above
     * that head was appended by this run (its acknowledgement lost in a
     * ledger crash) and counts as sent. NULL: every duplicate counts as
     * one. */
    const char *log_read;
    FILE *report; /* rejected events are reported here (NULL: silent) */
    /* One line per acknowledged event, in acknowledgement order: "LINE ID
     * SEQ appended|duplicate" (the input line, the event id, the seq the
     * ledger holds it at; duplicate: in the log before this run). NULL:
     * none. */
    FILE *receipts;
    /* CSV: `--columns` text naming other columns for fields (see
     * tly_csv_names_parse); NULL: every field reads its own name. */
    const char *columns;
} tly_send_config;

typedef struct tly_send_stats {
    uint64_t lines;
    uint64_t sent;       /* appended by this run, each once [D10] */
    uint64_t duplicates; /* acknowledged as appended before this run */
    uint64_t rejected;   /* by the ledger or before sending (bad line) */
    /* Of sent: acknowledged as dup, but appended by an attempt of this run
     * whose acknowledgement was lost (a ledger crash). */
    uint64_t recovered;
    /* Handed to the ledger without an acknowledgement when the client gave
     * up (tly_client_opts.give_up_ms): in the log or not. */
    uint64_t unconfirmed;
} tly_send_stats;

/* Sends everything in `in`. Returns TLY_OK when every event got a final
 * outcome (stats say which), or an error that stopped the import (cannot
 * connect or bad --columns text: TLY_USAGE; a CSV without a usable header:
 * TLY_MALFORMED, nothing sent; a read error: TLY_IO; no acknowledgement for
 * cfg->client.give_up_ms: TLY_TIMEOUT, stats->unconfirmed events without an
 * outcome and the input not read past stats->lines), with msg set. */
tly_err tly_send_stream(const tly_send_config *cfg, FILE *in, tly_send_stats *stats, char *msg,
                        size_t cap);

#endif
