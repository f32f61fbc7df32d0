/*
 * tly_cli.h — what every subcommand shares: exit codes, default endpoints,
 * the data directory, the common service flags and usage errors. Only the
 * command layer (tally.c and each cli/ folder) includes it; libraries use tly_os.h.
 *
 * Exit codes of every subcommand (never renumbered):
 *   0 success, 1 user error (one line on stderr), 2 usage error.
 */
#ifndef TLY_CLI_H
#define TLY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tly_err.h"
#include "tly_os.h"

#define TLY_EXIT_OK 0
#define TLY_EXIT_FAIL 1
#define TLY_EXIT_USAGE 2

/* SPEC section 2 defaults. */
#define TLY_DEFAULT_INGEST "tcp://127.0.0.1:7410"
#define TLY_DEFAULT_EVENTS "tcp://127.0.0.1:7411"
#define TLY_DEFAULT_LOG_READ "tcp://127.0.0.1:7412"
#define TLY_DEFAULT_QUERY "tcp://127.0.0.1:7413"
#define TLY_DEFAULT_DATA "./tally-data"

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

/* What tly_common_opt found at argv[*i]. */
enum { TLY_OPT_NONE, TLY_OPT_TAKEN, TLY_OPT_HELP, TLY_OPT_BAD };

/*
 * The start of every option loop: a common flag (as tly_common_flag) or
 * --help / -h, which prints usage(stdout). Returns TLY_OPT_TAKEN (go to the
 * next argument), TLY_OPT_HELP (help printed: exit 0), TLY_OPT_BAD (a usage
 * error was printed: exit 2) or TLY_OPT_NONE (not one of these).
 */
int tly_common_opt(tly_common_opts *o, int argc, char **argv, int *i, void (*usage)(FILE *out));

/*
 * Matches a long option with a value at argv[*i]: "--name VALUE" or
 * "--name=VALUE". Returns 1 and sets *value (advancing *i over a separate
 * value), 0 when argv[*i] is not this option, -1 when the value is missing
 * (usage error printed).
 */
int tly_opt_value(const char *name, int argc, char **argv, int *i, const char **value);

/* Prints a usage error "tally <cmd>: <message>\nTry 'tally <cmd> --help'."
 * and returns TLY_EXIT_USAGE. */
int tly_usagef(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
