/*
 * tly_cli.h — what every subcommand shares: default endpoints, the data
 * directory, the common service flags, error lines and progress output.
 *
 * Exit codes of every subcommand (never renumbered):
 *   0 success, 1 user error (one line on stderr), 2 usage error.
 */
#ifndef TLY_CLI_H
#define TLY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

#define TLY_EXIT_OK 0
#define TLY_EXIT_FAIL 1
#define TLY_EXIT_USAGE 2

/* SPEC section 2 defaults. */
#define TLY_DEFAULT_INGEST "tcp://127.0.0.1:7410"
#define TLY_DEFAULT_EVENTS "tcp://127.0.0.1:7411"
#define TLY_DEFAULT_LOG_READ "tcp://127.0.0.1:7412"
#define TLY_DEFAULT_QUERY "tcp://127.0.0.1:7413"
#define TLY_DEFAULT_DATA "./tally-data"

/* Longest path or endpoint the command line accepts. */
#define TLY_PATH_BYTES_MAX 1024u

/* The flags every service-facing subcommand accepts. */
typedef struct tly_common_opts {
    const char *data;     /* --data, else $TALLY_DATA, else ./tally-data */
    const char *ingest;   /* --ingest */
    const char *events;   /* --events */
    const char *log_read; /* --log-read */
    const char *query;    /* --query */
    bool json;            /* --json */
} tly_common_opts;

/* Fills o with the defaults (data from $TALLY_DATA when set). */
void tly_common_defaults(tly_common_opts *o);

/*
 * Recognises a common flag at argv[*i] ("--data DIR" or "--data=DIR", ...,
 * "--json"). Returns 1 and advances *i past its value when it is one, 0 when
 * argv[*i] is not a common flag, -1 when its value is missing (a usage error
 * has been printed).
 */
int tly_common_flag(tly_common_opts *o, int argc, char **argv, int *i);

/*
 * Matches a long option with a value at argv[*i]: "--name VALUE" or
 * "--name=VALUE". Returns 1 and sets *value (advancing *i over a separate
 * value), 0 when argv[*i] is not this option, -1 when the value is missing
 * (usage error printed).
 */
int tly_opt_value(const char *name, int argc, char **argv, int *i, const char **value);

/*
 * mkdir -p: creates dir (mode 0755) and each of its missing parents; what
 * exists already is fine. dir is 1..TLY_PATH_BYTES_MAX bytes. Returns TLY_OK,
 * TLY_USAGE for an empty or longer dir, or TLY_STORAGE when a mkdir fails:
 * errno is then that mkdir's and, unless failed_len is NULL, *failed_len is
 * the length of the prefix of dir that could not be created. Prints nothing.
 */
tly_err tly_mkdirs(const char *dir, size_t *failed_len);

/* Parses a decimal unsigned integer in [min, max]; false otherwise. */
bool tly_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Prints "tally <cmd>: <message>" on stderr (printf-style). */
void tly_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a usage error "tally <cmd>: <message>\nTry 'tally <cmd> --help'."
 * and returns TLY_EXIT_USAGE. */
int tly_usagef(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when stderr is a terminal: progress lines are shown only then. */
bool tly_progress_enabled(void);

/* Redraws a one-line progress report on stderr ("\r<label> done/total ...")
 * at most every 100 ms; total 0 means unknown. No-op off a terminal. */
void tly_progress(const char *label, uint64_t done, uint64_t total);

/* Ends a progress line (prints a newline when one was drawn). */
void tly_progress_end(void);

/* Wall clock in Unix ms and a monotonic clock in ns. */
int64_t tly_now_ms(void);
uint64_t tly_mono_ns(void);

#endif
