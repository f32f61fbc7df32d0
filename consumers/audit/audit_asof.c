/*
 * audit_asof.c — the views an `--as-of-close` answer reads: the log
 * replayed to the seq of the close (audit_closes.c finds it), kept in
 * DATA/asof/seq-S and reused by every later question about any close at
 * that seq.
 *
 * A replay is built in DATA/asof/build-S-PID and renamed to seq-S once
 * complete, so a reader finds a whole replay or none; two processes
 * building the same one both finish, the first rename wins and the other
 * drops its copy. A kept replay is used only when every shard's checkpoint
 * is S.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_int.h"
#include "audit_views.h"
#include "tly_audit.h"
#include "tly_layout.h"
#include "tly_os.h"

/* True when views holds a complete set of shards, each at seq. */
static bool replay_at(const char *views, uint64_t seq)
{
    struct stat st;
    if (stat(views, &st) != 0)
        return false;
    tly_audit_viewset *vs = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES];
    if (tly_audit_viewset_open(views, &vs, msg, sizeof msg) != TLY_OK)
        return false;
    bool ok = true;
    for (uint32_t k = 0; k < tly_audit_viewset_shards(vs); k++)
        ok = ok && tly_audit_viewset_checkpoint(vs, k) == seq;
    tly_audit_viewset_close(vs);
    return ok;
}

/* Shards of a new replay: one per online core, within the limit. */
static uint32_t asof_shards(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return 1;
    return cpus < (long)TLY_AUDIT_ASOF_SHARDS_MAX ? (uint32_t)cpus : TLY_AUDIT_ASOF_SHARDS_MAX;
}

/* Replays the log to seq into build, then renames it to views. */
static tly_err replay_build(const char *data, uint64_t seq, const char *views,
                            tly_audit_progress_fn progress, void *ctx, char *msg, size_t cap)
{
    char log_dir[TLY_PATH_BYTES_MAX], build[TLY_PATH_BYTES_MAX];
    if (tly_layout_log(data, log_dir, sizeof log_dir) != TLY_OK ||
        tly_layout_asof_build(data, seq, (long)getpid(), build, sizeof build) != TLY_OK) {
        tly_audit_msgf(msg, cap, "path too long: %s", data);
        return TLY_USAGE;
    }
    tly_rmtree(build); /* left by an earlier process of this pid */
    tly_audit_replay_opts o = {
        .log_dir = log_dir, .out_dir = build, .shard_count = asof_shards(), .to_seq = seq};
    uint64_t last = 0;
    tly_err err = tly_audit_replay(&o, progress, ctx, &last, msg, cap);
    if (err == TLY_OK && last != seq) {
        tly_audit_msgf(msg, cap, "the replay stopped at seq %llu, not %llu",
                       (unsigned long long)last, (unsigned long long)seq);
        err = TLY_CORRUPT;
    }
    if (err == TLY_OK && rename(build, views) != 0) {
        /* another process placed it first: use that one */
        if ((errno != EEXIST && errno != ENOTEMPTY) || !replay_at(views, seq)) {
            tly_audit_msgf(msg, cap, "cannot move %s to %s", build, views);
            err = TLY_STORAGE;
        }
    }
    tly_rmtree(build);
    return err;
}

tly_err tly_audit_asof_views(const char *data, const char *program, const char *period,
                             tly_audit_progress_fn progress, void *ctx, tly_audit_asof *out,
                             char *msg, size_t cap)
{
    tly_audit_closes *c = NULL;
    tly_err err = tly_audit_closes_open(data, true, &c, msg, cap);
    uint64_t seq = 0;
    if (err == TLY_OK)
        err = tly_audit_closes_find(c, program, period, &seq, msg, cap);
    tly_audit_closes_free(c);
    if (err != TLY_OK)
        return err;
    tly_audit_asof r = {.seq = seq, .reused = true};
    if (tly_layout_asof_views(data, seq, r.views_dir, sizeof r.views_dir) != TLY_OK) {
        tly_audit_msgf(msg, cap, "path too long: %s", data);
        return TLY_USAGE;
    }
    if (!replay_at(r.views_dir, seq)) {
        tly_rmtree(r.views_dir); /* an incomplete or foreign one */
        r.reused = false;
        err = replay_build(data, seq, r.views_dir, progress, ctx, msg, cap);
    }
    if (err == TLY_OK)
        *out = r;
    return err;
}
