/*
 * cli_asof.c — `--as-of-close PERIOD` for the query commands (cli_asof.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli_asof.h"
#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_limits.h"
#include "tly_period.h"

int tly_asof_check_period(const char *cmd, const char *period)
{
    tly_period_kind kind;
    int32_t p;
    if (tly_period_parse(period, strlen(period), &kind, &p) == TLY_OK)
        return TLY_EXIT_OK;
    return tly_usagef(cmd, "--as-of-close takes a period like 2025-Q1 or 2025-03, not '%s'",
                      period);
}

/* Progress of the replay through tly_progress (a terminal only). */
static void asof_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    tly_progress("as-of replay", done, total);
}

int tly_asof_store(const char *cmd, const char *data, const char *program, const char *period,
                   tly_query_store **store, uint64_t *seq)
{
    tly_audit_asof a;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err =
        tly_audit_asof_views(data, program, period, asof_progress, NULL, &a, msg, sizeof msg);
    tly_progress_end();
    if (err == TLY_USAGE)
        return tly_usagef(cmd, "%s", msg[0] ? msg : tly_strerror(err));
    if (err != TLY_OK) {
        tly_errorf(cmd, "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    err = tly_query_store_open(a.views_dir, NULL, 0, store);
    if (err != TLY_OK) {
        tly_errorf(cmd, "cannot open the replay in %s: %s", a.views_dir, tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    if (seq)
        *seq = a.seq;
    return TLY_EXIT_OK;
}

int tly_asof_partner_program(const char *cmd, tly_query_store *live, const tly_common_opts *o,
                             const char *partner, char *buf, size_t cap)
{
    const char *endpoint = o->query;
    json_t *req = json_pack("{s:s, s:s}", "q", "balance", "partner", partner), *bal = NULL;
    tly_err err = !req   ? TLY_NOMEM
                  : live ? tly_query_answer(live, req, &bal)
                         : tly_query_call(endpoint, req, TLY_QUERY_TIMEOUT_MS, &bal);
    json_decref(req);
    const char *program = json_string_value(json_object_get(bal, "program"));
    const char *error = json_string_value(json_object_get(bal, "message"));
    int rc = TLY_EXIT_OK;
    char note[TLY_CLI_DATA_NOTE_BYTES];
    if (err == TLY_TIMEOUT || err == TLY_IO)
        tly_errorf(cmd,
                   "query service not reachable at %s%s, to find the partner's program: "
                   "give --program",
                   endpoint, tly_cli_data_note(o, note, sizeof note));
    else if (err != TLY_OK || !program)
        tly_errorf(cmd, "%s", error ? error : tly_strerror(err == TLY_OK ? TLY_NOT_FOUND : err));
    if (err != TLY_OK || !program)
        rc = TLY_EXIT_FAIL;
    else
        snprintf(buf, cap, "%s", program);
    json_decref(bal);
    return rc;
}
