/*
 * cmd_status.c — `tally status` (the ledger head, each shard's checkpoint
 * and lag) and `tally wait --seq N` [D9] (until every shard has applied N).
 *
 * Both ask the query service for "status". When it does not answer within
 * TLY_STATUS_PROBE_MS they read the data directory directly (the log head
 * from DIR/log, the checkpoints from DIR/views/K-of-N, read-only), so they
 * also work while the stack is stopped or starting; status says which
 * source it used.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_query.h"

/* PROJECT_VERSION, defined for the command layer by the root CMakeLists.txt. */
#ifndef TALLY_VERSION
#error "TALLY_VERSION is not defined (the root CMakeLists.txt defines it)"
#endif

typedef struct status_opts {
    const char *cmd; /* "status" or "wait" */
    tly_common_opts common;
    uint32_t shards; /* --shards N: expect N shards (0: discover) */
    uint64_t seq;    /* wait: --seq */
    bool has_seq;
    uint64_t timeout_s; /* wait: --timeout */
} status_opts;

/* ------------------------------------------------------------------------ */
/* Getting a status                                                          */

/* Reads the status directly from DIR. TLY_NOT_FOUND when DIR has neither a
 * log nor view stores. */
static tly_err status_from_data(const status_opts *o, json_t **reply)
{
    char views[TLY_PATH_BYTES_MAX], logdir[TLY_PATH_BYTES_MAX];
    if (tly_layout_views(o->common.data, views, sizeof views) != TLY_OK ||
        tly_layout_log(o->common.data, logdir, sizeof logdir) != TLY_OK)
        return TLY_USAGE;
    if (access(views, F_OK) != 0 && access(logdir, F_OK) != 0)
        return TLY_NOT_FOUND;
    tly_query_store *store = NULL;
    tly_err err = tly_query_store_open(views, logdir, o->shards, &store);
    json_t *req = json_pack("{s:s}", "q", "status");
    char abs[PATH_MAX];
    if (err == TLY_OK)
        tly_query_store_set_data(store, realpath(o->common.data, abs) ? abs : o->common.data);
    if (err == TLY_OK)
        err = req ? tly_query_answer(store, req, reply) : TLY_NOMEM;
    json_decref(req);
    tly_query_store_close(store);
    return err;
}

/* A status from the service (probe_ms at most), else from the data
 * directory. *from_service says which answered. An error object from
 * either is returned as TLY_STORAGE with its message printed. */
static tly_err get_status(const char *cmd, const status_opts *o, int probe_ms, json_t **reply,
                          bool *from_service)
{
    json_t *req = json_pack("{s:s}", "q", "status");
    json_t *r = NULL;
    tly_err err = req ? tly_query_call(o->common.query, req, probe_ms, &r) : TLY_NOMEM;
    json_decref(req);
    *from_service = err == TLY_OK;
    if (err == TLY_USAGE) { /* an endpoint ZeroMQ cannot parse: no wait mends it */
        tly_usagef(cmd, "bad query endpoint '%s'", o->common.query);
        return TLY_USAGE;
    }
    if (err == TLY_TIMEOUT || err == TLY_IO)
        err = status_from_data(o, &r);
    if (err != TLY_OK)
        return err;
    if (json_object_get(r, "error")) {
        tly_errorf(cmd, "%s", json_string_value(json_object_get(r, "message")));
        json_decref(r);
        return TLY_STORAGE;
    }
    *reply = r;
    return TLY_OK;
}

/* ------------------------------------------------------------------------ */
/* status                                                                    */

static void status_usage(FILE *out)
{
    fprintf(out,
            "Usage: tally status [--json] [--query EP] [--data DIR] [--shards N]\n"
            "\n"
            "Shows the ledger head (the last seq in the log) and, per shard, the last\n"
            "seq applied to its views (checkpoint) and how far it is behind (lag).\n"
            "Asks the query service (default %s); when it does not answer within\n"
            "%d ms, reads DIR/log and DIR/views directly and says so.\n"
            "\n"
            "  --json        {\"head\",\"shards\":[{\"shard\",\"checkpoint\",\"lag\"}],\n"
            "                 \"data\",\"source\":\"service\"|\"data\",\"version\"} (data:\n"
            "                 the directory the answering stack serves, absolute;\n"
            "                 version: this tally's, as 'tally --version' prints it)\n"
            "  --data DIR    the stack 'tally up' runs on DIR: the query endpoint it\n"
            "                recorded in DIR/endpoints.json (--query wins), and DIR is\n"
            "                read directly when no service answers. When the answering\n"
            "                service serves another directory, a warning on stderr\n"
            "  --shards N    when reading DIR directly, expect shards 0-of-N .. (N-1)-of-N\n"
            "\n"
            "Exit codes: 0 success (also with the warning), 1 neither the service nor\n"
            "DIR answered, 2 usage.\n",
            TLY_DEFAULT_QUERY, TLY_STATUS_PROBE_MS);
}

static void print_status(const status_opts *o, const json_t *st, bool from_service)
{
    char head[24], src[TLY_PATH_BYTES_MAX * 2 + 64];
    snprintf(head, sizeof head, "%lld", (long long)json_integer_value(json_object_get(st, "head")));
    if (from_service)
        snprintf(src, sizeof src, "query service at %s", o->common.query);
    else
        snprintf(src, sizeof src, "read from %s (query service not reachable at %s)",
                 o->common.data, o->common.query);
    const char *data = json_string_value(json_object_get(st, "data"));
    printf("Ledger head  %s\nSource       %s\nData         %s\n\n", head, src,
           data ? data : "(not said: a query service older than this tally)");
    json_t *shards = json_object_get(st, "shards");
    if (json_array_size(shards) == 0) {
        printf("No shard view stores yet.\n");
        return;
    }
    printf("%-6s  %12s  %12s\n", "Shard", "Checkpoint", "Lag");
    size_t i;
    json_t *s;
    json_array_foreach(shards, i, s)
    {
        bool missing = json_is_false(json_object_get(s, "present"));
        printf("%-6s  %12lld  %12lld%s\n", json_string_value(json_object_get(s, "shard")),
               (long long)json_integer_value(json_object_get(s, "checkpoint")),
               (long long)json_integer_value(json_object_get(s, "lag")),
               missing ? "  (no view store yet)" : "");
    }
}

enum { OPT_SHARDS = 1, OPT_SEQ, OPT_TIMEOUT };

static const tly_opt status_opts_table[] = {{"--shards", OPT_SHARDS, true}};
static const tly_opt wait_opts_table[] = {
    {"--shards", OPT_SHARDS, true},
    {"--seq", OPT_SEQ, true},
    {"--timeout", OPT_TIMEOUT, true},
};

static int status_opt(void *ctx, int id, const char *v)
{
    status_opts *o = ctx;
    uint64_t n;
    switch (id) {
    case OPT_SHARDS:
        if (!tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n))
            return tly_usagef(o->cmd, "--shards takes 1..%u", TLY_SHARDS_MAX);
        o->shards = (uint32_t)n;
        return TLY_EXIT_OK;
    case OPT_SEQ:
        if (!tly_parse_u64(v, 0, TLY_SEQ_ARG_MAX, &o->seq))
            return tly_usagef(o->cmd, "--seq takes a log position, 0..%llu",
                              (unsigned long long)TLY_SEQ_ARG_MAX);
        o->has_seq = true;
        return TLY_EXIT_OK;
    case OPT_TIMEOUT:
        if (!tly_parse_u64(v, 0, TLY_WAIT_TIMEOUT_S_MAX, &o->timeout_s))
            return tly_usagef(o->cmd, "--timeout takes 0..%u seconds", TLY_WAIT_TIMEOUT_S_MAX);
        return TLY_EXIT_OK;
    default:
        return tly_usagef(o->cmd, "unexpected argument '%s'", v);
    }
}

/* Parses the options status and wait share; wait adds --seq/--timeout,
 * status --json. */
static int parse(const char *cmd, bool is_wait, status_opts *o, int argc, char **argv)
{
    tly_common_defaults(&o->common);
    o->cmd = cmd;
    o->timeout_s = TLY_WAIT_TIMEOUT_S_DEFAULT;
    const tly_cli_spec spec = {cmd,
                               TLY_CO_DATA | TLY_CO_QUERY | (is_wait ? 0u : TLY_CO_JSON),
                               is_wait ? wait_opts_table : status_opts_table,
                               is_wait ? sizeof wait_opts_table / sizeof wait_opts_table[0] : 1,
                               status_opt,
                               o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (is_wait && !o->has_seq)
        return tly_usagef(cmd, "--seq N is required");
    return tly_common_endpoints(cmd, &o->common);
}

/* [status] The data directory the answering stack serves against the one
 * this command was given (--data or $TALLY_DATA): a warning on stderr when
 * they differ. Without a named directory nothing is compared. */
static void warn_mismatch(const status_opts *o, const json_t *st)
{
    const char *served = json_string_value(json_object_get(st, "data"));
    if (!o->common.data_named || !served)
        return;
    char abs[PATH_MAX];
    const char *mine = realpath(o->common.data, abs) ? abs : o->common.data;
    if (strcmp(mine, served) == 0)
        return;
    fprintf(stderr,
            "tally status: warning: the query service at %s serves %s, not %s: this is "
            "another stack's status%s\n",
            o->common.query, served, mine,
            (o->common.given & TLY_CO_QUERY) || o->common.endpoints_recorded
                ? ""
                : " (no 'tally up' recorded its endpoints in that "
                  "directory: give --query)");
}

int tly_cmd_status(int argc, char **argv)
{
    status_opts o = {0};
    int rc = parse("status", false, &o, argc, argv);
    if (rc < 0)
        status_usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    json_t *st = NULL;
    bool from_service = false;
    tly_err err = get_status("status", &o, TLY_STATUS_PROBE_MS, &st, &from_service);
    if (err == TLY_USAGE)
        return TLY_EXIT_USAGE;
    if (err == TLY_NOT_FOUND || err == TLY_TIMEOUT || err == TLY_IO) {
        tly_errorf("status", "query service not reachable at %s and no data at %s", o.common.query,
                   o.common.data);
        return TLY_EXIT_FAIL;
    }
    if (err != TLY_OK) {
        if (err != TLY_STORAGE)
            tly_errorf("status", "%s", tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    if (from_service)
        warn_mismatch(&o, st);
    if (o.common.json) {
        json_object_set_new(st, "source", json_string(from_service ? "service" : "data"));
        json_object_set_new(st, "version", json_string(TALLY_VERSION));
        json_dumpf(st, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("\n");
    } else {
        print_status(&o, st, from_service);
    }
    json_decref(st);
    return fflush(stdout) == 0 ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* wait                                                                      */

static void wait_usage(FILE *out)
{
    fprintf(out,
            "Usage: tally wait --seq N [--timeout SECONDS] [--query EP] [--data DIR]\n"
            "                  [--shards N]\n"
            "\n"
            "Waits until every shard has applied log position N (its checkpoint is at\n"
            "least N), so that every answer after it says seq >= N [D8]. Polls the query\n"
            "service every %d ms, or DIR directly while the service does not answer.\n"
            "\n"
            "  --seq N            the log position to wait for (e.g. the last seq 'tally\n"
            "                     send' was acknowledged)\n"
            "  --timeout SECONDS  give up after this long (default %u, 0 checks once)\n"
            "  --shards N         expect N shards (default: as many as exist)\n"
            "\n"
            "Exit codes: 0 every shard has applied N, 1 timed out, 2 usage.\n",
            TLY_WAIT_POLL_MS, TLY_WAIT_TIMEOUT_S_DEFAULT);
}

/* True when the status shows every shard at seq or beyond. With --shards,
 * exactly that many shards must be listed. */
static bool reached(const status_opts *o, const json_t *st)
{
    json_t *shards = json_object_get(st, "shards");
    size_t n = json_array_size(shards);
    if (n == 0 || (o->shards && n != o->shards))
        return false;
    size_t i;
    json_t *s;
    json_array_foreach(shards, i, s)
    {
        json_int_t c = json_integer_value(json_object_get(s, "checkpoint"));
        if (c < 0 || (uint64_t)c < o->seq)
            return false;
    }
    return true;
}

/* One line on why the wait has not finished, from the last status seen. */
static void explain_timeout(const status_opts *o, const json_t *st)
{
    json_t *shards = json_object_get(st, "shards");
    const json_t *low = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(shards, i, s)
    {
        if (!low || json_integer_value(json_object_get(s, "checkpoint")) <
                        json_integer_value(json_object_get(low, "checkpoint")))
            low = s;
    }
    if (!st)
        tly_errorf("wait",
                   "timed out after %llu s waiting for seq %llu: query service not "
                   "reachable at %s and no view stores under %s/views",
                   (unsigned long long)o->timeout_s, (unsigned long long)o->seq, o->common.query,
                   o->common.data);
    else if (!low)
        tly_errorf("wait", "timed out after %llu s waiting for seq %llu: no shard view stores yet",
                   (unsigned long long)o->timeout_s, (unsigned long long)o->seq);
    else if (o->shards && json_array_size(shards) != o->shards)
        /* reached() wants exactly --shards N: the lowest checkpoint may be
         * past seq, and naming it would not say why the wait went on. */
        tly_errorf("wait",
                   "timed out after %llu s waiting for seq %llu: the stack has %zu shard%s, "
                   "not the %u --shards expects",
                   (unsigned long long)o->timeout_s, (unsigned long long)o->seq,
                   json_array_size(shards), json_array_size(shards) == 1 ? "" : "s", o->shards);
    else if (json_is_false(json_object_get(low, "present")))
        /* Listed at checkpoint 0 because it was asked for (--shards N),
         * not because a store of that shard exists. */
        tly_errorf("wait",
                   "timed out after %llu s waiting for seq %llu: shard %s has no view store "
                   "under %s/views",
                   (unsigned long long)o->timeout_s, (unsigned long long)o->seq,
                   json_string_value(json_object_get(low, "shard")), o->common.data);
    else
        tly_errorf("wait",
                   "timed out after %llu s waiting for seq %llu: shard %s is at %lld "
                   "(ledger head %lld)",
                   (unsigned long long)o->timeout_s, (unsigned long long)o->seq,
                   json_string_value(json_object_get(low, "shard")),
                   (long long)json_integer_value(json_object_get(low, "checkpoint")),
                   (long long)json_integer_value(json_object_get(st, "head")));
}

int tly_cmd_wait(int argc, char **argv)
{
    status_opts o = {0};
    int rc = parse("wait", true, &o, argc, argv);
    if (rc < 0)
        wait_usage(stdout);
    if (rc != TLY_EXIT_OK)
        return rc < 0 ? TLY_EXIT_OK : rc;
    int64_t timeout_ms = (int64_t)o.timeout_s * 1000;
    uint64_t deadline = tly_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    json_t *last = NULL;
    bool last_svc = false; /* last came from the service */
    /* Each round sleeps TLY_WAIT_POLL_MS unless the deadline has passed. */
    uint64_t rounds = (uint64_t)timeout_ms / TLY_WAIT_POLL_MS + 2;
    for (uint64_t r = 0; r < rounds; r++) {
        uint64_t now = tly_mono_ns();
        int64_t left_ms = now < deadline ? (int64_t)((deadline - now) / 1000000u) : 0;
        int probe =
            left_ms < TLY_STATUS_PROBE_MS ? (int)(left_ms > 0 ? left_ms : 1) : TLY_STATUS_PROBE_MS;
        json_t *st = NULL;
        bool svc;
        tly_err err = get_status("wait", &o, probe, &st, &svc);
        if (err == TLY_USAGE) {
            json_decref(last);
            return TLY_EXIT_USAGE;
        }
        if (err == TLY_OK && reached(&o, st)) {
            json_decref(last);
            json_decref(st);
            return TLY_EXIT_OK;
        }
        /* What the timeout explains: the service's last answer over a
         * fallback to the data directory after a probe it did not answer
         * in time. The fallback lists the --shards N layout it was asked
         * for, stores or not ("shard 0/2 is at 0"), where the service
         * lists the shards the stack runs. */
        if (err == TLY_OK && (svc || !last_svc)) {
            json_decref(last);
            last = st;
            last_svc = svc;
        } else {
            json_decref(st);
        }
        now = tly_mono_ns();
        if (now >= deadline)
            break;
        int64_t left = (int64_t)((deadline - now) / 1000000u);
        tly_sleep_ms(left < TLY_WAIT_POLL_MS ? left : TLY_WAIT_POLL_MS);
    }
    explain_timeout(&o, last);
    json_decref(last);
    return TLY_EXIT_FAIL;
}
