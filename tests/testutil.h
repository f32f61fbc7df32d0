/*
 * testutil.h — helpers shared by every Check suite: temp directories, free
 * loopback ports, running the real `tally` binary as a child process, a
 * whole `tally up` stack (tu_stack_up), named raw values, seeds, and the
 * suite's runner (its test cases and main()).
 * Suites that drive a real ledger add testledger.h.
 *
 * The tally binary is found through $TALLY_BIN (set by ctest), the vectors
 * through $TALLY_VECTORS.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates a fresh temp directory; returns a malloc'd path. */
char *tu_tmpdir(void);
/* Removes a directory tree (rm -rf) and frees path. NULL is a no-op. */
void tu_rmtree(char *path);

/* A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's
 * ephemeral range (see testutil.c). */
int tu_free_port(void);
/* The first of n TCP ports in a row on 127.0.0.1 that were all free a
 * moment ago (as tu_free_port's). */
int tu_free_ports(int n);
/* "tcp://127.0.0.1:<free port>" into buf (at least 32 bytes). */
void tu_endpoint(char *buf, size_t cap);

/* A value in raw bytes (MessagePack, say) with a name for failure messages.
 * TU_SHAPE("name", "literal") spells one; its length is the literal's, NULs
 * included. */
typedef struct tu_shape {
    const char *name;
    const char *bytes;
    size_t len;
} tu_shape;
#define TU_SHAPE(name, lit)                                                                        \
    {                                                                                              \
        name, lit, sizeof(lit) - 1                                                                 \
    }

/* Path of the tally binary ($TALLY_BIN, else "./tally"). */
const char *tu_tally(void);
/* Path of a file in the vectors folder; returns a malloc'd path. */
char *tu_vector(const char *name);
/* got with only the keys want has, at every depth (new reference): the
 * seed101 answers show the section 8 fields only, and an engine that
 * implements section 10 adds fields (tests/vectors/README.md). */
json_t *tu_json_project(json_t *got, json_t *want);

/* Runs argv (argv[0] is the program) to completion with stdin from in_path
 * (NULL: /dev/null) and stdout/stderr into out_path/err_path (NULL:
 * discarded). Returns the exit code, or 128+signal. */
int tu_run(char *const argv[], const char *in_path, const char *out_path, const char *err_path);

/* Runs the tally binary with the NULL-terminated arguments (at most
 * TU_TALLY_ARGS_MAX - 2 of them; more are left out), stdout and stderr into
 * out and err as tu_run does. Returns the exit code as tu_run does. */
#define TU_TALLY_ARGS_MAX 32
int tu_run_tally(const char *out, const char *err, ...);

/* Starts argv in the background, stdout/stderr to log_path (NULL:
 * discarded). Returns the pid. */
pid_t tu_spawn(char *const argv[], const char *log_path);
/* Sends sig and waits; returns the exit status as tu_run does. */
int tu_kill_wait(pid_t pid, int sig);

/* Reads a whole file; returns a malloc'd NUL-terminated buffer (NULL on error). */
char *tu_read_file(const char *path, size_t *len);
/* Writes a whole file; true on success. */
bool tu_write_file(const char *path, const void *buf, size_t len);

/* Sleeps ms milliseconds. */
void tu_sleep_ms(int ms);

/* Polls until connect() to the endpoint "tcp://127.0.0.1:PORT" succeeds or
 * timeout_ms passes; true when it is listening. */
bool tu_wait_listening(const char *endpoint, int timeout_ms);

/* How tu_wait_listener's wait ended. */
typedef enum tu_listen {
    TU_LISTEN_OURS,    /* pid, or a child of pid, listens on the port */
    TU_LISTEN_FOREIGN, /* another process listens there: pid will not */
    TU_LISTEN_EXITED,  /* pid exited first (it is reaped) */
    TU_LISTEN_TIMEOUT, /* nothing listened within timeout_ms */
} tu_listen;

/* Waits, as tu_wait_listening does, until the endpoint
 * "tcp://127.0.0.1:PORT" accepts connections, and then tells whose
 * listener it is: pid's own or one of its children's (as `tally up`'s
 * children are), or another process's, which tu_wait_listening would have
 * taken for pid's. The owner is the process holding the listening socket
 * (its inode in /proc/net/tcp{,6}, among /proc/PID/fd); where /proc cannot
 * tell, a listener counts as pid's. pid (a child of this process) is
 * checked with waitpid(WNOHANG) at every poll: when it exits, the wait ends
 * at once (TU_LISTEN_EXITED, its status as tu_run's in *status when status
 * is not NULL). */
tu_listen tu_wait_listener(const char *endpoint, pid_t pid, int timeout_ms, int *status);

/* ------------------------------------------------------------------------ */
/* A whole stack: `tally up` on free loopback ports                         */

/* Starts of `tally up` tu_stack_up makes at the most. Ports are picked
 * free, but another process (a suite running beside this one, another
 * stack) can take one before `tally up` binds it; `tally up` then exits 1
 * at once saying a port is "in use", or the listener on one of its ports
 * is not its own. Such a try is stopped and the stack started again, in a
 * fresh directory on fresh ports. */
#define TU_STACK_TRIES 5
/* How long tu_stack_up waits for each endpoint of its wait list. */
#define TU_STACK_WAIT_MS 15000
/* `tally up` derives its first metrics port from the ingest port at this
 * distance when --metrics is not given (TLY_UP_METRICS_PORT_OFFSET). */
#define TU_STACK_METRICS_OFFSET 10
/* The metrics slots after the first metrics port: the ledger's (+0), the
 * query service's (+1), the console's (+2), then consumer K's (+3+K). */
#define TU_STACK_METRICS_SLOT_QUERY 1
#define TU_STACK_METRICS_SLOT_WEB 2
#define TU_STACK_METRICS_SLOT_CONSUMER 3
/* Arguments of tu_stack_opts.args at the most. */
#define TU_STACK_EXTRA_ARGS_MAX 16

/* The endpoints tu_stack_up waits for (tu_stack_opts.wait). */
enum {
    TU_WAIT_INGEST = 1u << 0,
    TU_WAIT_EVENTS = 1u << 1,
    TU_WAIT_LOG_READ = 1u << 2,
    TU_WAIT_QUERY = 1u << 3,
    TU_WAIT_WEB = 1u << 4,     /* the console */
    TU_WAIT_METRICS = 1u << 5, /* every child's metrics port */
    TU_WAIT_ALL = (1u << 6) - 1,
};

typedef struct tu_stack tu_stack;

/* A running `tally up` (tu_stack_up) and where it listens. */
struct tu_stack {
    /* --data: a fresh temp directory, removed by tu_stack_down. */
    char *dir;
    /* The ZeroMQ endpoints, "tcp://127.0.0.1:PORT". */
    char ingest[64], events[64], log_read[64], query[64];
    /* --web: the console's "127.0.0.1:PORT", and its port. */
    char web[32];
    int web_port;
    /* The first metrics port (the slots: TU_STACK_METRICS_SLOT_*): the
     * --metrics one, or the one `tally up` derives from --ingest. */
    int metrics;
    /* DIR/up.log: the supervisor's stdout and stderr. */
    char log[1200];
    /* `tally up`; 0 once it has stopped. */
    pid_t pid;
    /* Its exit status once it has stopped, as tu_run's (-1 before). */
    int status;
    /* The starts tu_stack_up made (1 .. TU_STACK_TRIES). */
    int tries;
    /* When tu_stack_up fails: what happened, and the end of the last try's
     * log. */
    char why[4096];
};

/* tu_stack_up's options; {0} for a one-shard stack that waits for every
 * port it binds. */
typedef struct tu_stack_opts {
    /* --shards (0: 1). */
    int shards;
    /* true: --metrics on 3 + shards free ports in a row. false: no
     * --metrics, `tally up` derives the ports from --ingest (picked so
     * that those are free too). */
    bool metrics;
    /* The TU_WAIT_* endpoints waited for (0: TU_WAIT_ALL, every port the
     * stack binds, so that none of them is another process's). */
    unsigned wait;
    /* More arguments for `tally up`, NULL-terminated (NULL: none; at most
     * TU_STACK_EXTRA_ARGS_MAX). */
    const char *const *args;
    /* Called before each start once the try's ports are picked (attempt
     * from 1), with arg; NULL: none. For tests of this helper: a port
     * taken here is lost to that try. */
    void (*on_try)(const tu_stack *s, int attempt, void *arg);
    void *arg;
} tu_stack_opts;

/* Starts `tally up --data DIR --shards N --ingest .. --events ..
 * --log-read .. --query .. --web .. [--metrics ..] --no-sync ARGS` on
 * free loopback ports (o NULL: all defaults) and waits until every
 * endpoint of the wait list listens, held by the stack itself. A try that
 * loses a port to another process (see TU_STACK_TRIES) is stopped and
 * started again on fresh ports. True when the stack is up; false with
 * s->why saying why (a try that exits for another reason, or does not
 * listen within TU_STACK_WAIT_MS, is not tried again), nothing left
 * running and s->dir removed. */
bool tu_stack_up(tu_stack *s, const tu_stack_opts *o);
/* Sends sig to `tally up` and waits for it (once; again: the first
 * status); returns its exit status as tu_run's. */
int tu_stack_stop(tu_stack *s, int sig);
/* Stops the stack with SIGTERM unless it is stopped already, removes its
 * directory; returns `tally up`'s exit status (-1 for a stack that never
 * came up). */
int tu_stack_down(tu_stack *s);

/* A seed for a randomized test: $TALLY_TEST_SEED when set, else one from the
 * clock and the pid. Prints "WHAT: seed N (TALLY_TEST_SEED=N to repeat)". */
unsigned tu_test_seed(const char *what);

/* A test case named name added to s, with a timeout of timeout_s seconds
 * (0: Check's default, CK_DEFAULT_TIMEOUT or 4 s). */
TCase *tu_tcase(Suite *s, const char *name, int timeout_s);
/* Adds the tests of a NULL-terminated list (TU_TESTS) to tc, in order. */
void tu_add_tests(TCase *tc, const TTest *const *tests);
/* The NULL-terminated list of the tests named (START_TEST names). */
#define TU_TESTS(...) ((const TTest *const[]){__VA_ARGS__, NULL})

/* Runs every test of s (Check prints its summary line) and frees it.
 * Returns the number of failed tests, at most 255: main's exit status, 0
 * when every test passed. */
int tu_run_suite(Suite *s);

#endif
