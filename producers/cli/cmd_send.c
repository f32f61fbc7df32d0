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
#include <sys/stat.h>

#include "tly_cli.h"
#include "tly_client.h"
#include "tly_cmd.h"
#include "tly_csv.h"
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
    const char *columns; /* --columns FIELD=NAME,... (CSV) */
    bool atomic;
    uint32_t batch;
    tly_client_opts client;
    const char *log_read;
    const char *receipts; /* --receipts FILE */
} send_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally send [options] FILE|-\n"
            "Sends JSON-lines events (or {\"source\",\"event\"} records) to the ledger and\n"
            "waits until every event is acknowledged.\n\n"
            "  --source NAME          source of every event (without CURVE)\n"
            "  --csv                  FILE is CSV with a header row naming its columns, in\n"
            "                         any order (others ignored): id, partner, amount,\n"
            "                         currency, at, and per row type: sale (the default):\n"
            "                         sku, qty; return: sale (the sold id), qty; referral:\n"
            "                         deal. Optional type column: sale|return|referral.\n"
            "                         amount: decimal in major units, at most the\n"
            "                         currency's digits (12.50 USD, 1250 JPY); qty: absent\n"
            "                         column = 1; at: ISO date (midnight UTC) or time.\n"
            "                         UTF-8 (a BOM is skipped), LF or CRLF, RFC 4180 quotes\n"
            "  --columns F=NAME,...   CSV: read field F from column NAME\n"
            "                         (e.g. --columns id=InvoiceNo,amount=Net)\n"
            "  --batch N              events per request (default %u, max %u)\n"
            "  --window N             requests in flight (default %u, max %u)\n"
            "  --atomic               each request is all-or-nothing\n"
            "  --data DIR             talk to the stack 'tally up' runs on DIR: the\n"
            "                         endpoints it recorded in DIR/endpoints.json (flags\n"
            "                         given win; default $TALLY_DATA, else ./tally-data)\n"
            "  --ingest EP[,EP...]    ledger ingest endpoint (default %s); with several\n"
            "                         (a writer and its standbys), a request that times out\n"
            "                         or is answered unavailable goes to the next one\n"
            "  --log-read EP          ledger log-read endpoint, asked for the log head so\n"
            "                         that events this run appended before a ledger crash\n"
            "                         count as sent, not duplicates (default %s when\n"
            "                         --ingest is the default)\n"
            "  --curve-server-key K   the ledger's Z85 public key (enables CURVE)\n"
            "  --curve-secret FILE    this producer's Z85 secret key\n"
            "  --ack-timeout-ms N     wait for an ack before resending (default %d)\n"
            "  --retries N            resends of one request before giving up (default 0:\n"
            "                         keep trying until --timeout)\n"
            "  --timeout SECONDS      give up when the ledger has acknowledged nothing for\n"
            "                         this long (default %u, 0: never)\n"
            "  --receipts FILE        write one line per acknowledged event, as acknowledged:\n"
            "                         'LINE ID SEQ appended|duplicate' (the seq the log holds\n"
            "                         it at; duplicate: in the log before this run)\n"
            "  --help                 show this help\n\n"
            "Outcomes (on stdout 'sent N, duplicates D, rejected R' when every event has\n"
            "one):\n"
            "  exit 0  every event appended (sent) or already in the log (duplicates)\n"
            "  exit 1  R > 0: events refused, one line each on stderr ('line L (id X):\n"
            "          code [field]: message'; codes: malformed, missing_field, bad_field\n"
            "          and the ledger's); or the input cannot be read (a CSV whose header\n"
            "          cannot be used: nothing sent); or timed out: 'gave up after S s' on stderr "
            "with\n"
            "          the events still unconfirmed, and no summary line (sending the\n"
            "          same input again is safe: the ledger drops ids it has)\n"
            "  exit 2  usage\n",
            TLY_SEND_BATCH_DEFAULT, TLY_BATCH_EVENTS_MAX, TLY_SEND_WINDOW_DEFAULT,
            TLY_CLIENT_WINDOW_MAX, TLY_DEFAULT_INGEST, TLY_DEFAULT_LOG_READ, TLY_ACK_TIMEOUT_MS,
            TLY_SEND_TIMEOUT_S_DEFAULT);
}

enum {
    OPT_SOURCE = 1,
    OPT_CSV,
    OPT_ATOMIC,
    OPT_BATCH,
    OPT_WINDOW,
    OPT_CURVE_SERVER_KEY,
    OPT_CURVE_SECRET,
    OPT_ACK_TIMEOUT_MS,
    OPT_RETRIES,
    OPT_TIMEOUT,
    OPT_COLUMNS,
    OPT_RECEIPTS,
};

static const tly_opt send_opts_table[] = {
    {"--source", OPT_SOURCE, true},
    {"--csv", OPT_CSV, false},
    {"--atomic", OPT_ATOMIC, false},
    {"--batch", OPT_BATCH, true},
    {"--window", OPT_WINDOW, true},
    {"--curve-server-key", OPT_CURVE_SERVER_KEY, true},
    {"--curve-secret", OPT_CURVE_SECRET, TLY_OPT_PATH},
    {"--ack-timeout-ms", OPT_ACK_TIMEOUT_MS, true},
    {"--retries", OPT_RETRIES, true},
    {"--timeout", OPT_TIMEOUT, true},
    {"--columns", OPT_COLUMNS, true},
    {"--receipts", OPT_RECEIPTS, TLY_OPT_PATH},
};

/* The numeric options: their bounds. */
static int send_number(send_opts *o, int id, const char *v)
{
    uint64_t n = 0;
    int rc = TLY_EXIT_OK;
    if (id == OPT_BATCH &&
        (rc = tly_cli_u64("send", "--batch", v, 1, TLY_BATCH_EVENTS_MAX, &n)) == TLY_EXIT_OK)
        o->batch = (uint32_t)n;
    if (id == OPT_WINDOW &&
        (rc = tly_cli_u64("send", "--window", v, 1, TLY_CLIENT_WINDOW_MAX, &n)) == TLY_EXIT_OK)
        o->client.window = (uint32_t)n;
    if (id == OPT_ACK_TIMEOUT_MS && (rc = tly_cli_u64("send", "--ack-timeout-ms", v, 1,
                                                      TLY_ACK_TIMEOUT_MS_MAX, &n)) == TLY_EXIT_OK)
        o->client.ack_timeout_ms = (int)n;
    if (id == OPT_RETRIES &&
        (rc = tly_cli_u64("send", "--retries", v, 0, TLY_SEND_RETRIES_MAX, &n)) == TLY_EXIT_OK)
        o->client.retries_max = (uint32_t)n;
    if (id == OPT_TIMEOUT &&
        (rc = tly_cli_u64("send", "--timeout", v, 0, TLY_SEND_TIMEOUT_S_MAX, &n)) == TLY_EXIT_OK)
        o->client.give_up_ms = (int64_t)n * 1000;
    return rc;
}

/* --columns text is checked before anything is read (exit 2 when bad). */
static int send_columns(send_opts *o, const char *v)
{
    tly_csv_names names;
    char why[200];
    if (tly_csv_names_parse(v, &names, why, sizeof why) != TLY_OK)
        return tly_usagef("send", "--columns: %s", why);
    o->columns = v;
    return TLY_EXIT_OK;
}

static int send_opt(void *ctx, int id, const char *v)
{
    send_opts *o = ctx;
    switch (id) {
    case TLY_OPT_ARG:
        if (o->path)
            return tly_usagef("send", "only one input file");
        if (v[0] == '\0') /* an unset "$FILE": name it, as an empty path option is */
            return tly_usagef("send", "FILE: empty path ('-' reads the standard input)");
        o->path = v;
        return TLY_EXIT_OK;
    case OPT_SOURCE:
        o->source = v;
        return TLY_EXIT_OK;
    case OPT_CSV:
        o->csv = true;
        return TLY_EXIT_OK;
    case OPT_ATOMIC:
        o->atomic = true;
        return TLY_EXIT_OK;
    case OPT_CURVE_SERVER_KEY:
        o->client.server_key = v;
        return TLY_EXIT_OK;
    case OPT_CURVE_SECRET:
        o->client.secret_file = v;
        return TLY_EXIT_OK;
    case OPT_COLUMNS:
        return send_columns(o, v);
    case OPT_RECEIPTS:
        o->receipts = v;
        return TLY_EXIT_OK;
    default:
        return send_number(o, id, v);
    }
}

static int parse_args(int argc, char **argv, send_opts *o, tly_common_opts *c)
{
    tly_common_defaults(c);
    o->batch = TLY_SEND_BATCH_DEFAULT;
    o->client.window = TLY_SEND_WINDOW_DEFAULT;
    o->client.verbose = true;
    o->client.give_up_ms = (int64_t)TLY_SEND_TIMEOUT_S_DEFAULT * 1000;
    const tly_cli_spec spec = {"send",          TLY_CO_DATA | TLY_CO_INGEST | TLY_CO_LOG_READ,
                               send_opts_table, sizeof send_opts_table / sizeof send_opts_table[0],
                               send_opt,        o};
    int rc = tly_cli_parse(&spec, c, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (!o->path)
        return tly_usagef("send", "expected FILE or - (standard input)");
    if (o->columns && !o->csv)
        return tly_usagef("send", "--columns goes with --csv");
    if (!o->client.server_key != !o->client.secret_file)
        return tly_usagef("send", "--curve-server-key and --curve-secret go together");
    if (tly_common_endpoints("send", c) != TLY_EXIT_OK)
        return TLY_EXIT_FAIL;
    if (!tly_client_endpoints_ok(c->ingest))
        return tly_usagef("send", TLY_CLIENT_ENDPOINTS_USAGE, TLY_CLIENT_ENDPOINTS_MAX);
    o->client.endpoint = c->ingest;
    /* The log-read endpoint belongs to the ledger of the ingest one: given,
     * or of the same origin as ingest (both recorded, both default). */
    if ((c->given & TLY_CO_LOG_READ) || !(c->given & TLY_CO_INGEST) ||
        strcmp(c->ingest, TLY_DEFAULT_INGEST) == 0)
        o->log_read = c->log_read;
    return TLY_EXIT_OK;
}

int tly_cmd_send(int argc, char **argv)
{
    send_opts o = {0};
    tly_common_opts c;
    int rc = parse_args(argc, argv, &o, &c);
    if (rc < 0)
        return TLY_EXIT_OK;
    if (rc != TLY_EXIT_OK)
        return rc;
    FILE *in = strcmp(o.path, "-") == 0 ? stdin : fopen(o.path, "r");
    if (!in) {
        tly_errorf("send", "cannot open %s", o.path);
        return TLY_EXIT_FAIL;
    }
    /* Opening the receipts truncates them: when they are the input itself
     * (the same file under another name too), the input would be emptied
     * before a line of it was read, and its events lost. */
    struct stat in_st, rc_st;
    if (o.receipts && fstat(fileno(in), &in_st) == 0 && stat(o.receipts, &rc_st) == 0 &&
        in_st.st_dev == rc_st.st_dev && in_st.st_ino == rc_st.st_ino && S_ISREG(in_st.st_mode)) {
        if (in != stdin)
            fclose(in);
        return tly_usagef("send", "--receipts %s is the input file: give another FILE", o.receipts);
    }
    FILE *receipts = o.receipts ? fopen(o.receipts, "w") : NULL;
    if (o.receipts && !receipts) {
        tly_errorf("send", "cannot write the receipts to %s", o.receipts);
        if (in != stdin)
            fclose(in);
        return TLY_EXIT_FAIL;
    }
    tly_send_stats st = {0};
    tly_send_config cfg = {.source = o.source,
                           .receipts = receipts,
                           .csv = o.csv,
                           .columns = o.columns,
                           .atomic = o.atomic,
                           .batch = o.batch,
                           .client = o.client,
                           .log_read = o.log_read,
                           .report = stderr};
    char msg[256] = "";
    tly_err err = tly_send_stream(&cfg, in, &st, msg, sizeof msg);
    if (in != stdin)
        fclose(in);
    if (receipts && (ferror(receipts) | fclose(receipts)) != 0 && err == TLY_OK) {
        tly_errorf("send", "cannot write the receipts to %s (every event was acknowledged)",
                   o.receipts);
        return TLY_EXIT_FAIL;
    }
    tly_progress_end();
    if (err == TLY_TIMEOUT) {
        tly_errorf("send",
                   "gave up after %lld s: %s; %llu events without an outcome (in the log or "
                   "not), input read to line %llu; before that sent %llu, duplicates %llu, "
                   "rejected %llu. Sending the same input again is safe (ids already in the "
                   "log come back as duplicates)",
                   (long long)(o.client.give_up_ms / 1000), msg, (unsigned long long)st.unconfirmed,
                   (unsigned long long)st.lines, (unsigned long long)st.sent,
                   (unsigned long long)st.duplicates, (unsigned long long)st.rejected);
        return TLY_EXIT_FAIL;
    }
    if (err != TLY_OK) {
        tly_errorf("send", "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    printf("sent %llu, duplicates %llu, rejected %llu\n", (unsigned long long)st.sent,
           (unsigned long long)st.duplicates, (unsigned long long)st.rejected);
    return st.rejected > 0 ? TLY_EXIT_FAIL : TLY_EXIT_OK;
}
