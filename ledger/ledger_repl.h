/*
 * ledger_repl.h — the log replicated into a NATS JetStream stream (SPEC
 * section 12, [N1]–[N3]): the writer's side of `tally ledger --replicate`.
 *
 * The stream holds exactly the log's records, one message per record on
 * the subject "<stream>.log", the data being the record's stored bytes, so
 * stream sequence = log seq. A replica handed to the log store
 * (tly_log_set_replica) publishes each group commit's records with
 * expected-last-sequence = seq - 1, all at once, and lets the LMDB
 * transaction commit only when the stream has acknowledged every one [N2].
 *
 * One thread at a time uses a tly_repl (the one that appends to the log);
 * the client library's own threads only count acknowledgements into it.
 */
#ifndef LEDGER_REPL_H
#define LEDGER_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_log.h"
#include "tly_os.h"

typedef struct tly_repl_opts {
    const char *urls;   /* "nats://HOST:PORT[,nats://HOST:PORT...]" */
    const char *stream; /* NULL: TLY_REPL_STREAM_DEFAULT */
    int replicas;       /* for a stream created here; 0: TLY_REPL_REPLICAS_DEFAULT */
    bool no_create;     /* a reader's: an absent stream is TLY_NOT_FOUND, not created */
    const char *flag;   /* the option urls came from, named in msg; NULL: "--replicate" */
} tly_repl_opts;

typedef struct tly_repl tly_repl;

/* Checks the options (TLY_USAGE with a sentence in msg): 1..TLY_REPL_URLS_MAX
 * URLs of at most TLY_REPL_URL_BYTES_MAX bytes, a stream name of
 * 1..TLY_REPL_STREAM_NAME_BYTES_MAX bytes of [A-Za-z0-9_-], replicas
 * 0..TLY_REPL_REPLICAS_MAX. */
tly_err tly_repl_check(const tly_repl_opts *opts, char *msg, size_t cap);

/* Connects to the cluster and makes sure the stream exists: created when
 * absent (file storage, opts->replicas, delete and purge denied, messages up
 * to TLY_REPL_RECORD_BYTES_MAX). A lookup of the stream left unanswered (its
 * leader being elected) is asked again, TLY_REPL_LOOKUP_TRIES times in all.
 * TLY_USAGE (bad options, or servers whose max_payload is below a record),
 * TLY_UNAVAILABLE (no server, no JetStream quorum) with a sentence in msg;
 * *out only on success. */
tly_err tly_repl_open(const tly_repl_opts *opts, tly_repl **out, char *msg, size_t cap);

/* Closes the connection. NULL is a no-op. */
void tly_repl_close(tly_repl *r);

/* Deletes r's stream and everything in it (a scratch stream of `tally
 * bench ingest`; never the log's). TLY_OK or TLY_UNAVAILABLE. */
tly_err tly_repl_delete_stream(tly_repl *r);

/* The stream's name and its last sequence (asked of the cluster):
 * TLY_OK or TLY_UNAVAILABLE. */
const char *tly_repl_stream(const tly_repl *r);
tly_err tly_repl_last_seq(tly_repl *r, uint64_t *last);

/*
 * Ties a writer's log to the stream before it serves [N1] [N3]:
 *  - an empty stream gets a copy of the log's records (expected-last-seq
 *    on each, so two ledgers cannot both copy);
 *  - a stream whose record at min(head, last) differs from the log's (the
 *    chain hash covers everything before it) is refused (TLY_CORRUPT), and
 *    so is a log beyond a non-empty stream;
 *  - the records the stream holds beyond the log's head are appended to it,
 *    each checked as the next link of the chain (tly_log_append_stored);
 *  - then the log's replica is set: every later append is published first.
 * TLY_OK, TLY_CORRUPT or TLY_UNAVAILABLE / TLY_STORAGE with a sentence in
 * msg.
 */
tly_err tly_repl_attach(tly_repl *r, tly_log *log, char *msg, size_t cap);

/* Appends to log every record the stream holds beyond its head [N3]
 * (verifying the chain). Meant after a failed or fenced batch, when the
 * stream may hold what the log does not: until it succeeds, no batch may
 * be resolved against the log. TLY_OK, TLY_CORRUPT, TLY_UNAVAILABLE,
 * TLY_STORAGE; msg says why. */
tly_err tly_repl_catch_up(tly_repl *r, tly_log *log, char *msg, size_t cap);

/* True after a batch the stream did not acknowledge whole (or a commit that
 * failed after it did): the stream may hold records the log does not, and
 * tly_repl_catch_up must run before the next batch. Set also by
 * tly_repl_set_stale; cleared by a successful catch-up. */
bool tly_repl_stale(const tly_repl *r);
void tly_repl_set_stale(tly_repl *r);

/* Why the last batch was refused ("" when it was not), for the log. */
const char *tly_repl_last_error(const tly_repl *r);

/* ---- the writer's lease [N4] ----
 * A JetStream key-value bucket "<stream>_LEASE" (created when absent, as
 * many replicas as the stream) holds under key "writer" the name of the
 * ledger that writes, and under "promote" a request to take over
 * (`tally ledger promote`). Every change of a key bumps its revision; a
 * writer renews its lease by rewriting "writer" on the revision it last
 * wrote (compare and set), so a renewal fails once anyone else wrote it. */

/* Opens (or creates) the bucket: TLY_OK or TLY_UNAVAILABLE with msg. */
tly_err tly_repl_lease_open(tly_repl *r, char *msg, size_t cap);

/* Reads key ("writer" or "promote") of the bucket: its value into val (cap
 * bytes, NUL-terminated) and its revision. TLY_OK, TLY_NOT_FOUND (never
 * written) or TLY_UNAVAILABLE. */
tly_err tly_repl_lease_get(tly_repl *r, const char *key, char *val, size_t cap, uint64_t *rev);

/* Writes val under key when its revision is still rev (0: the key must not
 * exist yet) and returns the new revision. TLY_OK, TLY_CONFLICT (someone
 * else wrote it since), TLY_UNAVAILABLE. */
tly_err tly_repl_lease_cas(tly_repl *r, const char *key, const char *val, uint64_t rev,
                           uint64_t *new_rev);

/* Writes val under key whatever it holds (`tally ledger promote`). */
tly_err tly_repl_lease_put(tly_repl *r, const char *key, const char *val);

/* [N6] Brings the log in log_dir (created when absent; this process then
 * holds it as its writer) up to date with the stream, so a reader on
 * another machine reads the stream through a log of its own: the records
 * the stream holds beyond that log's head (checkpoint + 1 on) are appended,
 * each checked as the next link of the chain; a log whose head record is not
 * the stream's is refused. The records are read through a durable pull
 * consumer of the stream named after the log ("tally_<host>_<8 hex digits
 * of its path>", tly_repl_durable_name), created from the log's head + 1
 * (one left by an earlier run is replaced: the log is the checkpoint),
 * acknowledged up to each fetch's last record, and removed by the servers
 * TLY_REPL_DURABLE_INACTIVE_S after its reader is gone; the ledger's own
 * catch-up and standby read with ordered consumers, which leave nothing on
 * the servers. *head gets the log's head. TLY_OK, TLY_NOT_FOUND
 * (no such stream), TLY_CORRUPT, TLY_UNAVAILABLE (the writer lock is held:
 * a ledger owns that log; or no quorum) or TLY_STORAGE, with msg. */
tly_err tly_repl_mirror(const tly_repl_opts *opts, const char *log_dir, uint64_t *head, char *msg,
                        size_t cap);

/* The name of the durable consumer a mirror of log_dir reads with, into
 * out (at least TLY_REPL_DURABLE_BYTES_MAX + 1 bytes). */
void tly_repl_durable_name(const char *log_dir, char *out, size_t cap);

/* [N6] Keeps the log in log_dir a mirror of the stream until *stop becomes
 * non-zero: brought up to date as tly_repl_mirror does, then caught_up(ctx)
 * is called once, then each record the stream gets is appended as it
 * arrives (within TLY_STANDBY_POLL_MS). Returns TLY_OK on stop, or the
 * error that ended it (msg says why; TLY_CORRUPT for a record that is not
 * the next link of the chain). */
tly_err tly_repl_follow(const tly_repl_opts *opts, const char *log_dir, tly_stop_flag *stop,
                        void (*caught_up)(void *ctx), void *ctx, char *msg, size_t cap);

/* A reader of the stream from a seq on (an ordered consumer: in order, no
 * gaps, nothing acknowledged), for catch-up and followers. */
typedef struct tly_repl_reader tly_repl_reader;

/* TLY_OK or TLY_UNAVAILABLE; *out only on success. */
tly_err tly_repl_reader_open(tly_repl *r, uint64_t from_seq, tly_repl_reader **out);

/* Up to max records (and at most TLY_LOG_COMMIT_BYTES_MAX bytes) that have
 * arrived, waiting at most wait_ms for the first: *n records in out,
 * borrowed until the next call or the close. TLY_OK (possibly *n == 0 after
 * the wait), TLY_UNAVAILABLE (the subscription failed). */
tly_err tly_repl_reader_fetch(tly_repl_reader *rd, tly_log_stored *out, uint32_t max, int wait_ms,
                              uint32_t *n);

/* NULL is a no-op. */
void tly_repl_reader_close(tly_repl_reader *rd);

#endif
