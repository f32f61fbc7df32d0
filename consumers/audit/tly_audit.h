/*
 * tly_audit.h — what an auditor runs against a Tally data directory
 * (SPEC sections 3 and 7, [D14]):
 *
 *   verify   walks the log in one read snapshot and checks seq continuity,
 *            the hash chain, that every record decodes and its event
 *            validates, that recorded_ms never decreases [D12] and that the
 *            idempotency index agrees with the log.
 *   export   writes the records as JSON lines from which an outside tool can
 *            recompute the chain.
 *   digest   one SHA-256 per view family over a canonical encoding that does
 *            not depend on the shard count or the machine (schemas/DIGEST.md).
 *   replay   folds the log from scratch into fresh view stores.
 *   diff     replays to the live views' checkpoints and compares every doc.
 *   explain  folds the log through an engine with an explain trace.
 *   asof     the close index and the kept replays of `--as-of-close`.
 *
 * Every function reads the log and the views read-only, so all of them run
 * while the ledger and the consumers run: each sees one consistent snapshot.
 *
 * LMDB allows one environment per path per process: a process must not open
 * the log (or a views shard) both here and elsewhere at the same time.
 */
#ifndef TLY_AUDIT_H
#define TLY_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tly_engine.h"
#include "tly_err.h"
#include "tly_explain.h"
#include "tly_limits.h"
#include "tly_log.h"

/* Called now and then during long work: done of total records (total 0
 * when unknown). May be NULL. */
typedef void (*tly_audit_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* ---- verify ---- */

/* The outcome of a verification. When ok is false, bad_seq names the first
 * record found bad (the missing seq for a gap, 0 for a fault of the log as a
 * whole) and error says why in one line ("hash mismatch", ...). records,
 * head_seq and head_hash cover the records checked good before it. */
typedef struct tly_audit_verdict {
    bool ok;
    uint64_t records;
    uint64_t head_seq;
    uint8_t head_hash[TLY_HASH_BYTES];
    uint64_t bad_seq;
    char error[TLY_AUDIT_ERROR_BYTES];
} tly_audit_verdict;

/*
 * Verifies the log environment in log_dir (DIR/log) in one read snapshot.
 * Returns TLY_OK when the check ran to a verdict (which may be "not ok"),
 * TLY_NOT_FOUND when there is no log there, TLY_STORAGE when LMDB fails
 * (logged on stderr) or TLY_NOMEM. *out is written whenever TLY_OK is
 * returned.
 */
tly_err tly_audit_verify(const char *log_dir, tly_audit_progress_fn progress, void *ctx,
                         tly_audit_verdict *out);

/* ---- export ---- */

/*
 * Writes the records from_seq..to_seq (to_seq 0: up to the head of the
 * snapshot) of the log in log_dir to out, one JSON object per line with
 * exactly the keys, in this order, "seq", "recorded_ms", "source", "hash"
 * (lowercase hex), "event_b64" (base64 of the stored event bytes) and
 * "event" (the event as JSON). *count (may be NULL) gets the number of
 * lines written. Returns TLY_OK, TLY_NOT_FOUND (no log), TLY_CORRUPT (a
 * record does not decode: *bad_seq says which), TLY_IO (writing out
 * failed), TLY_STORAGE or TLY_NOMEM.
 */
tly_err tly_audit_export(const char *log_dir, uint64_t from_seq, uint64_t to_seq, FILE *out,
                         tly_audit_progress_fn progress, void *ctx, uint64_t *count,
                         uint64_t *bad_seq);

/* ---- digests (schemas/DIGEST.md) ---- */

/* The view families, in the order `tally audit digest` prints them. */
typedef enum tly_audit_family {
    TLY_AUDIT_MDF = 0,     /* balance docs, rendered from "S/4/<partner>" */
    TLY_AUDIT_REBATES,     /* rebate docs, the same way */
    TLY_AUDIT_TIERS,       /* tier docs */
    TLY_AUDIT_CLAIMS,      /* claims docs */
    TLY_AUDIT_LIABILITIES, /* "V/l/<program>" summed over shards */
    TLY_AUDIT_EXCEPTIONS,  /* "X/<seq><n>" */
    TLY_AUDIT_FAMILY_COUNT
} tly_audit_family;

/* Name of a family as printed ("mdf", "rebates", ...). Static string. */
const char *tly_audit_family_name(tly_audit_family f);

/* The digests of one set of views. seq is the lowest checkpoint of the
 * shards read; seq_max the highest (equal when the set is at one position). */
typedef struct tly_audit_digest {
    uint64_t seq;
    uint64_t seq_max;
    uint32_t shard_count;
    uint8_t sha[TLY_AUDIT_FAMILY_COUNT][TLY_HASH_BYTES];
} tly_audit_digest;

/*
 * Digests the views stored under views_dir (the directory holding the
 * "K-of-N" shard environments: DIR/views, or a replay's --out). Each shard is
 * read in one snapshot. Returns TLY_OK, TLY_NOT_FOUND (no complete set of
 * shards there: every K of one N), TLY_CORRUPT (a stored doc is not the JSON
 * the engine writes; msg says which), TLY_STORAGE or TLY_NOMEM. msg (cap
 * bytes, may be NULL) gets a sentence on failure.
 */
tly_err tly_audit_digest_views(const char *views_dir, tly_audit_digest *out, char *msg, size_t cap);

/* Writes "seq N\n" and one "<family> <hex>\n" line per family to out. */
void tly_audit_digest_print(const tly_audit_digest *d, FILE *out);

/* ---- replay ---- */

typedef struct tly_audit_replay_opts {
    const char *log_dir;  /* DIR/log */
    const char *out_dir;  /* created; must not hold views already */
    uint32_t shard_count; /* 1..TLY_AUDIT_SHARDS_MAX */
    /* Stop points; 0 means none. to_seq: the last seq folded. until_ms: fold
     * only records with recorded_ms <= until_ms (what the ledger knew then). */
    uint64_t to_seq;
    int64_t until_ms;
    bool has_until;
    /* Per-shard stop seqs (diff replays each shard to its own live
     * checkpoint); NULL for none. Combined with to_seq/until by minimum. */
    const uint64_t *shard_to_seq;
    /* What-if (`replay --program FILE`): a decoded program event whose rules
     * replace those of the program it names, from the first event on. The
     * first program event of that name in the log is folded with these rules
     * instead (keeping its own `at` and id, so the program's first period is
     * unchanged); later program events of that name are skipped, so the
     * replaced rules stay in force. Everything else is folded as logged.
     * NULL: an ordinary replay. Its strings must outlive the replay. */
    const tly_event *what_if;
    /* When not NULL: set to how many times a shard's engine was loaded
     * again from its last commit and folded on, because a commit met the
     * end of the view store's map after its flush had dropped partners
     * (audit_replay.c, fold_log); 0 in most replays. */
    uint32_t *reloads;
    /* When not NULL: set to how many commits the replay's threads made, in
     * all (each commits its shards together; the last one included). */
    uint32_t *commits;
} tly_audit_replay_opts;

/*
 * Folds the log from seq 1 into fresh view stores out_dir/K-of-N, the same
 * layout the consumers write, so queries with --views out_dir answer from
 * them. *last_seq gets the last seq folded (the lowest over shards). With
 * has_until before the log's first record (or an empty log) nothing is
 * folded and nothing is created: TLY_OK with *last_seq 0, which no store
 * in out_dir then contradicts. Returns TLY_OK, TLY_NOT_FOUND (no log; or a
 * what_if program the fold never met: msg names it), TLY_USAGE (out_dir
 * already holds views; msg says so), TLY_CORRUPT (a record or event fails
 * to decode), TLY_OVERFLOW (the engine's money left int64), TLY_STORAGE or
 * TLY_NOMEM.
 */
tly_err tly_audit_replay(const tly_audit_replay_opts *o, tly_audit_progress_fn progress, void *ctx,
                         uint64_t *last_seq, char *msg, size_t cap);

/* ---- as of a close (`--as-of-close`) ---- */

/*
 * The index of closes: for each program of the log, the seq of the close
 * that closed each of its periods, derived from the log with the engine's
 * rules [P5] [G1] [G2] [L1] [L2] [L3] [L7] (audit_closes.c says how). It
 * is kept in DATA/asof/closes.json and brought up to the log's head on
 * open, reading only the records appended since it was written.
 */
typedef struct tly_audit_closes tly_audit_closes;

/*
 * Opens the index of DATA's log, up to the head of one snapshot. keep:
 * write the index back (and, when it belonged to another log, drop
 * DATA/asof first); false leaves DATA untouched (a read-only auditor).
 * Returns TLY_OK, TLY_NOT_FOUND (no log), TLY_CORRUPT (a program or close
 * event does not decode), TLY_TOO_LARGE (beyond the limits
 * TLY_AUDIT_CLOSES_*), TLY_STORAGE (the log, or writing the index) or
 * TLY_NOMEM, with a sentence in msg. Free with tly_audit_closes_free.
 */
tly_err tly_audit_closes_open(const char *data, bool keep, tly_audit_closes **out, char *msg,
                              size_t cap);
void tly_audit_closes_free(tly_audit_closes *c);

/* The last seq the index has read (the head when it was opened). */
uint64_t tly_audit_closes_scanned(const tly_audit_closes *c);

/* The seq of the first program event of program, 0 when the log has none. */
uint64_t tly_audit_closes_program_seq(const tly_audit_closes *c, const char *program);

/* The programs' names, comma-separated ("none" for none), cut to cap. */
void tly_audit_closes_names(const tly_audit_closes *c, char *buf, size_t cap);

/*
 * The seq of the close that closed period (text "2025-Q1", "2025-03") of
 * program. Returns TLY_OK with *seq; TLY_NOT_FOUND for an unknown program
 * (msg names the known ones) or a period before the program's first;
 * TLY_BAD_FIELD for a period that is not one of the program's kind;
 * TLY_UNAVAILABLE for a period not closed yet (msg names the earliest
 * open one).
 */
tly_err tly_audit_closes_find(const tly_audit_closes *c, const char *program, const char *period,
                              uint64_t *seq, char *msg, size_t cap);

/* Where an as-of-close answer is read: a views directory of the log as it
 * stood right after the close (its shards' checkpoints are seq). */
typedef struct tly_audit_asof {
    uint64_t seq;                       /* the close's */
    bool reused;                        /* kept from an earlier question */
    char views_dir[TLY_PATH_BYTES_MAX]; /* DATA/asof/seq-S */
} tly_audit_asof;

/*
 * The views of the log as it stood right after the close of period of
 * program: DATA/asof/seq-S, replayed now (progress reports it) or kept
 * from an earlier question, and kept for the next one. Opening the views
 * with tly_query_store_open(out->views_dir, NULL, 0, ...) answers any
 * query as of that close. Returns TLY_OK with *out, an error of
 * tly_audit_closes_open or tly_audit_closes_find, or of the replay
 * (tly_audit_replay), with a sentence in msg.
 */
tly_err tly_audit_asof_views(const char *data, const char *program, const char *period,
                             tly_audit_progress_fn progress, void *ctx, tly_audit_asof *out,
                             char *msg, size_t cap);

/* ---- diff ---- */

/*
 * Compares the live views under views_dir with a replay of the log in
 * log_dir into a temporary directory under tmp_parent (each shard replayed
 * to its own live checkpoint, with the live shard count), and checks each
 * live balance against the MDF invariant of SPEC section 6. Writes one line
 * per difference to out (at most TLY_AUDIT_DIFF_LINES_MAX, then a count),
 * or "all views match at seq N". *differences gets the number found.
 * Returns TLY_OK when the comparison ran, else as replay and digest do.
 */
tly_err tly_audit_diff(const char *log_dir, const char *views_dir, const char *tmp_parent,
                       FILE *out, tly_audit_progress_fn progress, void *ctx, uint64_t *differences,
                       char *msg, size_t cap);

/* ---- explain ---- */

/*
 * Folds DATA/log from seq 1 to min(to_seq, head) (to_seq UINT64_MAX: the
 * head) into e, a fresh engine, with the trace x attached. Read-only.
 * Returns TLY_OK; TLY_USAGE for a data path that is too long; TLY_NOT_FOUND
 * when to_seq is beyond the head; else the error of opening, reading or
 * decoding the log, or of the engine. On an error msg says what happened.
 */
tly_err tly_audit_explain_fold(const char *data, uint64_t to_seq, tly_engine *e, tly_explain *x,
                               char *msg, size_t cap);

#endif
