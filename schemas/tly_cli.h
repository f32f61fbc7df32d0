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
#include "tly_limits.h"
#include "tly_os.h"

#define TLY_EXIT_OK 0
#define TLY_EXIT_FAIL 1
#define TLY_EXIT_USAGE 2

/* SPEC section 2 defaults. */
#define TLY_DEFAULT_INGEST "tcp://127.0.0.1:7410"
#define TLY_DEFAULT_EVENTS "tcp://127.0.0.1:7411"
#define TLY_DEFAULT_LOG_READ "tcp://127.0.0.1:7412"
#define TLY_DEFAULT_QUERY "tcp://127.0.0.1:7413"
/* The web console (`tally web`): an HTTP address HOST:PORT, not a ZeroMQ endpoint. */
#define TLY_DEFAULT_WEB "127.0.0.1:7414"
#define TLY_DEFAULT_DATA "./tally-data"

/* The flags several subcommands share; a command names the ones it takes
 * (tly_cli_spec.common) and no other is accepted. */
enum {
    TLY_CO_DATA = 1u << 0,     /* --data DIR */
    TLY_CO_INGEST = 1u << 1,   /* --ingest EP */
    TLY_CO_EVENTS = 1u << 2,   /* --events EP */
    TLY_CO_LOG_READ = 1u << 3, /* --log-read EP */
    TLY_CO_QUERY = 1u << 4,    /* --query EP */
    TLY_CO_JSON = 1u << 5,     /* --json */
    TLY_CO_METRICS = 1u << 6,  /* --metrics ADDR: a daemon's Prometheus endpoint */
};
#define TLY_CO_ENDPOINTS (TLY_CO_INGEST | TLY_CO_EVENTS | TLY_CO_LOG_READ | TLY_CO_QUERY)

typedef struct tly_common_opts {
    const char *data;        /* --data, else $TALLY_DATA, else ./tally-data */
    const char *ingest;      /* --ingest */
    const char *events;      /* --events */
    const char *log_read;    /* --log-read */
    const char *query;       /* --query */
    bool json;               /* --json */
    const char *metrics;     /* --metrics HOST:PORT; NULL: no metrics served */
    unsigned given;          /* TLY_CO_* given on the command line */
    bool data_named;         /* --data or $TALLY_DATA named the data directory */
    bool endpoints_recorded; /* tly_common_endpoints took some from DIR */
    const char *web;         /* `tally up`'s console address, recorded as "web" when set */
} tly_common_opts;

/* Fills o with the defaults (data from $TALLY_DATA when set). */
void tly_common_defaults(tly_common_opts *o);

/*
 * The one option parser of every subcommand (SPEC section 7): a table of
 * the command's own options plus the common flags it takes.
 *
 * Long options only: "--name VALUE" or "--name=VALUE" for one that takes a
 * value, "--name" for one that does not; "--help" and "-h" ask for the help;
 * "--" ends the options; "-" and anything not starting with '-' is an
 * operand. A flag the command does not take is a usage error naming the
 * command ("tally balance: unknown option '--shard'"), as is a missing
 * value, a value given to a flag without one, or an empty path
 * (TLY_OPT_PATH). Options are exact names:
 * no abbreviations, so adding an option never changes what an old command
 * line means.
 */
/* What an option takes after its name. A path is a value the parser
 * itself refuses empty ("--out: empty path"): `--out "$UNSET"` would
 * otherwise reach the command as "", and its errors then named no file
 * ("no view store under  yet"), or put DATA at the root of the file system. */
typedef enum tly_opt_takes {
    TLY_OPT_FLAG = 0,  /* nothing: "--json" (false in a table) */
    TLY_OPT_VALUE = 1, /* a value: "--shards 4" (true in a table) */
    TLY_OPT_PATH = 2,  /* a file or directory, never empty: "--out DIR" */
} tly_opt_takes;

typedef struct tly_opt {
    const char *name;    /* "--shards" */
    int id;              /* the command's code for it, handed to handle; > 0 */
    tly_opt_takes value; /* what it takes */
} tly_opt;

/* The id handed to handle for an operand. */
#define TLY_OPT_ARG 0

/* Handles one of the command's options (value NULL for a flag) or an
 * operand (id TLY_OPT_ARG). Returns TLY_EXIT_OK, or an exit code after
 * printing why (tly_usagef). */
typedef int (*tly_opt_fn)(void *ctx, int id, const char *value);

typedef struct tly_cli_spec {
    const char *cmd;     /* "balance", "audit verify": named in usage errors */
    unsigned common;     /* the TLY_CO_* flags taken, into *common */
    const tly_opt *opts; /* the command's own options (may be NULL) */
    size_t opt_count;
    tly_opt_fn handle; /* NULL: no options of its own, no operands */
    void *ctx;         /* handed to handle */
} tly_cli_spec;

/* What tly_cli_parse returns after --help: the caller prints its help on
 * stdout and exits TLY_EXIT_OK. */
#define TLY_CLI_HELP (-1)

/*
 * Parses argv[1..argc) (argv[0] is the command's name) by spec. common
 * (filled by tly_common_defaults first) takes the common flags; it may be
 * NULL when spec->common is 0. Returns TLY_EXIT_OK, TLY_CLI_HELP, or an
 * exit code after a usage error (printed, TLY_EXIT_USAGE) or what handle
 * returned.
 */
int tly_cli_parse(const tly_cli_spec *spec, tly_common_opts *common, int argc, char **argv);

/* Prints "tally <cmd>: query service not reachable at <o->query>" and,
 * when the data directory was named (--data or $TALLY_DATA) and cannot be
 * opened, why it named no other stack: ", and data directory DIR: No such
 * file or directory" (DIR is where `tally up` records its endpoints, the
 * documented way a client finds the stack). Returns TLY_EXIT_FAIL. */
int tly_cli_unreachable(const char *cmd, const tly_common_opts *o);
/* The ", and data directory DIR: why" of tly_cli_unreachable into buf
 * (TLY_CLI_DATA_NOTE_BYTES), or "" when DIR was not named or is a
 * directory; returns buf. For the messages that add to it. */
#define TLY_CLI_DATA_NOTE_BYTES (TLY_PATH_BYTES_MAX + 96u)
const char *tly_cli_data_note(const tly_common_opts *o, char *buf, size_t cap);

/* Parses a decimal option value in [min, max]; TLY_EXIT_OK, else a usage
 * error "<name> takes min..max, not 'value'" (printed) for cmd. */
int tly_cli_u64(const char *cmd, const char *name, const char *value, uint64_t min, uint64_t max,
                uint64_t *out);

/*
 * The stack a client command talks to (README "Which stack a command
 * talks to"). `tally up` records its endpoints in DATA/endpoints
 * (tly_endpoints_write); a client command takes every endpoint it was not
 * given by flag from the data directory's file when there is one, else the
 * defaults stay. Returns TLY_EXIT_OK, or TLY_EXIT_FAIL after printing why
 * (a file that exists but cannot be read or parsed).
 */
int tly_common_endpoints(const char *cmd, tly_common_opts *o);

/* Writes DATA/endpoints for o's data directory (mode TLY_FILE_MODE): a
 * temporary file synced, renamed over the old one, and the directory
 * synced, so a reader sees the old file or the new one, whole. Returns
 * TLY_OK or TLY_STORAGE with msg set. */
tly_err tly_endpoints_write(const tly_common_opts *o, char *msg, size_t cap);

/* One more string of DATA/endpoints beside the common endpoints: key in
 * the object named group (NULL: at the top level). */
typedef struct tly_endpoint_extra {
    const char *group; /* "metrics" */
    const char *key;   /* "ledger" */
    const char *value; /* "127.0.0.1:7420" */
} tly_endpoint_extra;

/* tly_endpoints_write with the n entries of extra added (tally up records
 * its children's metrics addresses so). */
tly_err tly_endpoints_write_extra(const tly_common_opts *o, const tly_endpoint_extra *extra,
                                  size_t n, char *msg, size_t cap);

/* Prints a usage error "tally <cmd>: <message>\nTry 'tally <cmd> --help'."
 * and returns TLY_EXIT_USAGE. */
int tly_usagef(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
