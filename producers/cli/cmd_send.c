/*
 * cmd_send.c — `tally send FILE|-`: JSON lines or CSV sales to the ledger.
 *
 * Input lines are either events (`{"type": ..., "id": ...}`) or records
 * `{"source": S, "event": E}` as written by `tally gen` and the vectors.
 * Consecutive events of one source are batched into requests (--batch);
 * up to --window requests are in flight on one connection, so the ledger
 * appends them in input order. The client library retries with the same ids
 * until every event is acknowledged (or --retries runs out).
 *
 * Source: --source NAME sets it for every line [D3] (without CURVE); else a
 * record's own "source"; with CURVE the key's name is the source.
 *
 * Requests are closed by count (--batch) and by size: a request never
 * outgrows the 4 MiB frame, so an event that fits a request alone is never
 * refused for size; one that does not is rejected (too_large) unsent.
 *
 * Sent or duplicate: before the first request, send asks the ledger's
 * log-read endpoint for the log head. A `dup` acknowledgement with a seq
 * above it is an event this run appended (an attempt whose acknowledgement
 * a ledger crash lost) and counts as sent, once. The endpoint is --log-read,
 * or the default one when --ingest is the default too; without it, or when
 * the ledger does not answer within the ack timeout (or forbids the read),
 * every dup counts as a duplicate and a note says so.
 *
 * Output: a progress line on a terminal; every rejected event on stderr as
 * "line L (id X): code [field]: message"; then on stdout
 * "sent N, duplicates D, rejected R" [D10]. Exit 1 when R > 0.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_cli.h"
#include "tly_client.h"
#include "tly_cmd.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_send.h"

/* Default events per request: large enough to amortise a round trip, small
 * enough that one bad producer batch delays little. */
#define TLY_SEND_BATCH_DEFAULT 500u
/* Default requests in flight. */
#define TLY_SEND_WINDOW_DEFAULT 8u

typedef struct send_opts {
    const char *path;
    const char *source;
    bool csv;
    bool atomic;
    uint32_t batch;
    tly_client_opts client;
    bool log_read_given; /* --log-read was on the command line */
    const char *log_read;
} send_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally send [options] FILE|-\n"
            "Sends JSON-lines events (or {\"source\",\"event\"} records) to the ledger and\n"
            "waits until every event is acknowledged.\n\n"
            "  --source NAME          source of every event (without CURVE)\n"
            "  --csv                  FILE is a POS CSV: id,partner,sku,qty,amount,currency,at\n"
            "                         (decimal amounts, ISO dates; every row is a sale)\n"
            "  --batch N              events per request (default %u, max %u)\n"
            "  --window N             requests in flight (default %u, max %u)\n"
            "  --atomic               each request is all-or-nothing\n"
            "  --ingest EP            ledger ingest endpoint (default %s)\n"
            "  --log-read EP          ledger log-read endpoint, asked for the log head so\n"
            "                         that events this run appended before a ledger crash\n"
            "                         count as sent, not duplicates (default %s when\n"
            "                         --ingest is the default)\n"
            "  --curve-server-key K   the ledger's Z85 public key (enables CURVE)\n"
            "  --curve-secret FILE    this producer's Z85 secret key\n"
            "  --ack-timeout-ms N     wait for an ack before resending (default %d)\n"
            "  --retries N            resends of one request before giving up (default 0:\n"
            "                         keep trying)\n"
            "  --help                 show this help\n\n"
            "Prints 'sent N, duplicates D, rejected R'; exits 1 when R > 0.\n",
            TLY_SEND_BATCH_DEFAULT, TLY_BATCH_EVENTS_MAX, TLY_SEND_WINDOW_DEFAULT,
            TLY_CLIENT_WINDOW_MAX, TLY_DEFAULT_INGEST, TLY_DEFAULT_LOG_READ, TLY_ACK_TIMEOUT_MS);
}

static int parse_number(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!tly_parse_u64(v, min, max, out))
        return tly_usagef("send", "%s must be an integer in %llu..%llu", name,
                          (unsigned long long)min, (unsigned long long)max);
    return TLY_EXIT_OK;
}

static int parse_option(send_opts *o, tly_common_opts *c, int argc, char **argv, int *i)
{
    const char *v = NULL;
    uint64_t n = 0;
    int rc;
    if (strncmp(argv[*i], "--log-read", 10) == 0)
        o->log_read_given = true;
    if ((rc = tly_common_flag(c, argc, argv, i)) != 0)
        return rc < 0 ? TLY_EXIT_USAGE : TLY_EXIT_OK;
    if (strcmp(argv[*i], "--csv") == 0) {
        o->csv = true;
    } else if (strcmp(argv[*i], "--atomic") == 0) {
        o->atomic = true;
    } else if ((rc = tly_opt_value("--source", argc, argv, i, &o->source))) {
        return rc < 0 ? TLY_EXIT_USAGE : TLY_EXIT_OK;
    } else if ((rc = tly_opt_value("--curve-server-key", argc, argv, i, &o->client.server_key))) {
        return rc < 0 ? TLY_EXIT_USAGE : TLY_EXIT_OK;
    } else if ((rc = tly_opt_value("--curve-secret", argc, argv, i, &o->client.secret_file))) {
        return rc < 0 ? TLY_EXIT_USAGE : TLY_EXIT_OK;
    } else if ((rc = tly_opt_value("--batch", argc, argv, i, &v))) {
        if (rc < 0 || parse_number("--batch", v, 1, TLY_BATCH_EVENTS_MAX, &n))
            return TLY_EXIT_USAGE;
        o->batch = (uint32_t)n;
    } else if ((rc = tly_opt_value("--window", argc, argv, i, &v))) {
        if (rc < 0 || parse_number("--window", v, 1, TLY_CLIENT_WINDOW_MAX, &n))
            return TLY_EXIT_USAGE;
        o->client.window = (uint32_t)n;
    } else if ((rc = tly_opt_value("--ack-timeout-ms", argc, argv, i, &v))) {
        if (rc < 0 || parse_number("--ack-timeout-ms", v, 1, 3600000, &n))
            return TLY_EXIT_USAGE;
        o->client.ack_timeout_ms = (int)n;
    } else if ((rc = tly_opt_value("--retries", argc, argv, i, &v))) {
        if (rc < 0 || parse_number("--retries", v, 0, 1000000, &n))
            return TLY_EXIT_USAGE;
        o->client.retries_max = (uint32_t)n;
    } else if (argv[*i][0] == '-' && argv[*i][1] != '\0') {
        return tly_usagef("send", "unknown option '%s'", argv[*i]);
    } else if (!o->path) {
        o->path = argv[*i];
    } else {
        return tly_usagef("send", "only one input file");
    }
    return TLY_EXIT_OK;
}

static int parse_args(int argc, char **argv, send_opts *o)
{
    tly_common_opts c;
    tly_common_defaults(&c);
    o->batch = TLY_SEND_BATCH_DEFAULT;
    o->client.window = TLY_SEND_WINDOW_DEFAULT;
    o->client.verbose = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return -1;
        }
        int rc = parse_option(o, &c, argc, argv, &i);
        if (rc != TLY_EXIT_OK)
            return rc;
    }
    if (!o->path)
        return tly_usagef("send", "expected FILE or - (standard input)");
    if (!o->client.server_key != !o->client.secret_file)
        return tly_usagef("send", "--curve-server-key and --curve-secret go together");
    o->client.endpoint = c.ingest;
    /* The default log-read belongs to the default ledger only. */
    if (o->log_read_given || strcmp(c.ingest, TLY_DEFAULT_INGEST) == 0)
        o->log_read = c.log_read;
    return TLY_EXIT_OK;
}

int tly_cmd_send(int argc, char **argv)
{
    send_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;
    FILE *in = strcmp(o.path, "-") == 0 ? stdin : fopen(o.path, "r");
    if (!in) {
        tly_errorf("send", "cannot open %s", o.path);
        return TLY_EXIT_FAIL;
    }
    tly_send_stats st = {0};
    tly_send_config cfg = {.source = o.source,
                           .csv = o.csv,
                           .atomic = o.atomic,
                           .batch = o.batch,
                           .client = o.client,
                           .log_read = o.log_read,
                           .report = stderr};
    char msg[256] = "";
    tly_err err = tly_send_stream(&cfg, in, &st, msg, sizeof msg);
    if (in != stdin)
        fclose(in);
    tly_progress_end();
    if (err != TLY_OK) {
        tly_errorf("send", "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    printf("sent %llu, duplicates %llu, rejected %llu\n", (unsigned long long)st.sent,
           (unsigned long long)st.duplicates, (unsigned long long)st.rejected);
    return st.rejected > 0 ? TLY_EXIT_FAIL : TLY_EXIT_OK;
}
