/*
 * testledger.h — the real `tally ledger` under test, shared by the suites
 * that drive it end to end (ledger, readers, send, hostile): child processes
 * tied to the test, the ledger on free loopback ports with a fresh data
 * directory, `tally` runs and `tally send` results, CURVE key files, the log
 * read back read-only, and raw ZeroMQ clients.
 *
 * Every function aborts the running Check test on failure. Children are
 * started with PR_SET_PDEATHSIG, so a failing or timed-out test never leaves
 * a ledger or a retrying producer behind. A passing test removes its
 * directory (tl_done); a failing one keeps it for a look. The deadlines below
 * only keep a broken build from hanging: no assertion depends on timing.
 */
#ifndef TESTLEDGER_H
#define TESTLEDGER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tly_log.h"

/* Deadlines, in milliseconds. */
#define TL_READY_MS 15000    /* a service binds its sockets */
#define TL_REPLY_MS 15000    /* a reply from a running service */
#define TL_EXIT_MS 30000     /* a signalled service exits */
#define TL_RUN_MS 200000     /* a `tally send` (or another command) finishes */
#define TL_PROGRESS_MS 60000 /* the log reaches a head the producers will reach */

/* The business time of the test events: 2025-01-01 01:02:22.313 UTC, well
 * inside [2000, recorded + 1 day]. */
#define TL_AT_MS 1735693342313LL

/* ------------------------------------------------------------------ */
/* processes                                                           */

/* Starts argv (argv[0] is the program) with stdin from /dev/null and
 * stdout/stderr appended to out/err (NULL: discarded; the same path: one
 * file, in order); the child is killed when this test process dies. */
pid_t tl_spawn(const char *const *argv, const char *out, const char *err);
/* tl_spawn with env ("NAME=VALUE" strings, NULL-terminated, may be NULL)
 * added to the child's environment. */
pid_t tl_spawn_env(const char *const *argv, const char *const *env, const char *out,
                   const char *err);
/* Waits for pid and returns its exit code (128+signal when signalled); after
 * timeout_ms it is killed and -1 returned. */
int tl_wait_exit(pid_t pid, int timeout_ms);
/* True when pid has already exited (reaped here); *code gets its status. */
bool tl_exited(pid_t pid, int *code);
/* Stops *pid with sig and returns its exit status (-1: it did not exit);
 * *pid becomes 0. */
int tl_stop_pid(pid_t *pid, int sig);
/* Waits until pid listens on every endpoint of eps (NULL-terminated); fails
 * the test, showing the log, when it exits first or takes too long. */
void tl_wait_ready(pid_t pid, const char *const *eps, const char *log, const char *what);
/* Prints a file to stderr (a failing test's evidence). */
void tl_dump_file(const char *what, const char *path);
/* Writes a whole text file. */
void tl_write_text(const char *path, const char *text);

/* ------------------------------------------------------------------ */
/* the ledger                                                          */

typedef struct tl_ledger {
    char dir[512];     /* this test's temp dir; removed by tl_done */
    char data[600];    /* DIR/data */
    char logdir[640];  /* DIR/data/log */
    char logfile[640]; /* DIR/ledger.log: the ledger's stdout and stderr */
    char ingest[64];
    char events[64];
    char logread[64];
    pid_t pid; /* 0: not running */
} tl_ledger;

/* A fresh temp directory and three free endpoints; nothing started. */
void tl_init(tl_ledger *L);
/* Starts `tally ledger --data --ingest --events --log-read` with extra
 * arguments (NULL-terminated, may be NULL) and waits until its three
 * sockets accept connections. */
void tl_start(tl_ledger *L, const char *const *extra);
/* tl_start with env added to the ledger's environment (see tl_spawn_env). */
void tl_start_env(tl_ledger *L, const char *const *extra, const char *const *env);
/* Signals the ledger and returns its exit status (-1: it did not exit). */
int tl_stop(tl_ledger *L, int sig);
/* Stops a running ledger cleanly (exit 0 asserted) and removes the test
 * directory. Called at the end of a passing test only. */
void tl_done(tl_ledger *L);

/* ------------------------------------------------------------------ */
/* tally commands                                                      */

/* Runs `tally ARGS...` to completion; stdout and stderr go to DIR/TAG.out
 * and DIR/TAG.err (shown when it fails). Returns the exit status. */
int tl_run(const tl_ledger *L, const char *tag, const char *const *args);
/* The stdout (ext "out") or stderr ("err") of a tl_run; malloc'd, never
 * NULL. */
char *tl_output(const tl_ledger *L, const char *tag, const char *ext);

/* ------------------------------------------------------------------ */
/* tally send                                                          */

typedef struct tl_sent {
    int rc;
    long sent, dups, rejected;
    bool parsed; /* stdout held "sent N, duplicates D, rejected R" */
} tl_sent;

/* Starts `tally send --ingest EP [--log-read LR] ARGS...` (logread NULL: no
 * --log-read) in the background; output to DIR/send-TAG.out and .err. */
pid_t tl_send_spawn(const tl_ledger *L, const char *tag, const char *logread,
                    const char *const *args);
/* The result of the send TAG that exited with rc, from its output. */
tl_sent tl_send_result(const tl_ledger *L, const char *tag, int rc);
/* Waits for the send TAG (pid) and returns its result. */
tl_sent tl_send_wait(const tl_ledger *L, const char *tag, pid_t pid);
/* Runs `tally send --ingest EP ARGS...` to the end. */
tl_sent tl_send_run(const tl_ledger *L, const char *tag, const char *const *args);
/* The whole stderr of a finished send (malloc'd, never NULL). */
char *tl_send_stderr(const tl_ledger *L, const char *tag);
/* Asserts the exit status and the three counts of a send. */
void tl_assert_sent(tl_sent s, int rc, long sent, long dups, long rejected);
/* Asserts a send that met a failure on the way exited 0 with every one of
 * its `total` events stored (sent, or a duplicate: stored by a batch whose
 * acknowledgement was lost, then resent) and none rejected. Exactly once is
 * the caller's check on the log's head. */
void tl_assert_delivered(tl_sent s, long total, const char *who);
/* Appends one JSON-line sale with id ID to f (the i-th of a file: its time,
 * partner, sku, qty and amount vary with i). */
void tl_put_sale(FILE *f, const char *id, int i);
/* Appends sales PREFIX-from .. PREFIX-(to-1) to f. */
void tl_put_sales(FILE *f, const char *prefix, int from, int to);
/* Writes n sales PREFIX-0 .. PREFIX-(n-1) to path. */
void tl_write_sales(const char *path, const char *prefix, int n);

/* ------------------------------------------------------------------ */
/* CURVE keys                                                          */

typedef struct tl_keys {
    char pub[41];
    char sec[41];
    char file[700]; /* the secret key file, DIR/NAME.key */
} tl_keys;

/* A new keypair; the secret goes to DIR/NAME.key. */
void tl_make_keys(const tl_ledger *L, const char *name, tl_keys *k);

/* ------------------------------------------------------------------ */
/* the log, read-only                                                  */

/* Opens DIR/data/log read-only (close with tly_log_close). */
tly_log *tl_log_open(const tl_ledger *L);
uint64_t tl_log_head(const tl_ledger *L);
/* Polls the log until its head reaches target (the producers will get
 * there); returns the head. */
uint64_t tl_wait_head(const tl_ledger *L, uint64_t target);
/* The seq of (source, id) into *seq; TLY_NOT_FOUND when it is not stored. */
tly_err tl_log_lookup(const tl_ledger *L, const char *source, const char *id, uint64_t *seq);

/* The answer to a log-read request. */
typedef struct tl_logread {
    bool answered;
    char error[32];   /* the "error" code of an error reply ("": records) */
    uint32_t records; /* records served, checked against the log */
    uint64_t head;
    size_t bytes; /* the reply frame */
} tl_logread;

/* Asks log-read (socket lr) for {"from", "max"} and waits timeout_ms for the
 * answer. The records served must be consecutive from `from` (0: from 1),
 * each exactly the stored bytes; an error reply must carry no records. */
tl_logread tl_logread_ask(const tl_ledger *L, void *lr, uint64_t from, uint32_t max,
                          int timeout_ms);

/* ------------------------------------------------------------------ */
/* raw ZeroMQ and MessagePack                                          */

void *tl_ctx(void);
/* An unconnected socket of type (no linger, sends time out after
 * TL_REPLY_MS); with server_pub, a CURVE client with keys k. */
void *tl_sock(void *ctx, int type, const char *server_pub, const tl_keys *k);
/* Connects s to ep; returns s. */
void *tl_connect(void *s, const char *ep);
/* A plain DEALER connected to ep. */
void *tl_dealer(void *ctx, const char *ep);
void tl_send_frame(void *sock, const void *buf, size_t len);
/* Sends a request that may find no connection to go out on (a refused
 * handshake closes it until the next attempt): false when it could not be
 * sent within the socket's ZMQ_SNDTIMEO, and then no answer can come. */
bool tl_send_request(void *sock, const void *buf, size_t len);
/* Receives one single-frame message within timeout_ms (malloc'd into *buf);
 * false on timeout. */
bool tl_recv(void *sock, int timeout_ms, uint8_t **buf, size_t *len);
/* Sends a frame and returns the reply (malloc'd); fails when none comes
 * within TL_REPLY_MS. */
uint8_t *tl_rpc(void *sock, const void *buf, size_t len, size_t *rlen);
/* Receives one [topic, record] message of the events socket within
 * timeout_ms: the topic into topic (cap bytes), the record malloc'd into
 * *rec. False when none came. */
bool tl_sub_recv(void *sub, int timeout_ms, char *topic, size_t cap, uint8_t **rec, size_t *len);
/* Looks key up in a MessagePack map object; NULL when absent. */
const msgpack_object *tl_map_get(const msgpack_object *map, const char *key);

#endif
