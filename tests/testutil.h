/*
 * testutil.h — helpers shared by every Check suite: temp directories, free
 * loopback ports, running the real `tally` binary as a child process, named
 * raw values, seeds, and the suite's runner (its test cases and main()).
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
