/*
 * cli_asof.h — `--as-of-close PERIOD` for every query command: balance,
 * rebate, tier, claims, liabilities and exceptions (cmd_views.c), and
 * partners, report, expiring and journal (cmd_finance.c).
 *
 * An as-of answer is the command's ordinary query asked of other views:
 * the log replayed to the seq of the close that closed PERIOD of the
 * program (tly_audit_asof_views: DATA/asof/seq-S, replayed once and kept),
 * so it is the same answer `tally audit replay --to S` and `--views` give,
 * with "seq" S. A command opens that store here and asks it as it would
 * ask its --views store.
 */
#ifndef TLY_CLI_ASOF_H
#define TLY_CLI_ASOF_H

#include <stddef.h>
#include <stdint.h>

#include "tly_cli.h"
#include "tly_query.h"

/* The option's help line, for a command's usage text. */
#define TLY_ASOF_HELP                                                                              \
    "  --as-of-close PERIOD\n"                                                                     \
    "                  answer as the log stood right after the close of PERIOD\n"                  \
    "                  (2025-Q1, 2025-03) of the partner's program or --program P,\n"              \
    "                  from a replay of DIR/log kept in DIR/asof (DIR: --data)\n"

/* Checks the text of --as-of-close: a usage error (printed, exit 2) for
 * text that is no period, else TLY_EXIT_OK. */
int tly_asof_check_period(const char *cmd, const char *period);

/*
 * Opens a store answering as DATA's log stood right after the close of
 * period of program: replayed now (progress on a terminal) or kept from an
 * earlier question. On success *store (tly_query_store_close it) and *seq
 * (the close's; may be NULL) are set and TLY_EXIT_OK is returned; else one
 * line is printed for cmd ("tally balance: 2025-Q3 of program apex is not
 * closed yet ...") and the exit code returned: 1 for an unknown program, a
 * period of the wrong kind, before the program's first or not closed yet,
 * or a log that cannot be read; 2 for a data path that is too long.
 */
int tly_asof_store(const char *cmd, const char *data, const char *program, const char *period,
                   tly_query_store **store, uint64_t *seq);

/*
 * The program of partner (its balance's "program"), asked of live (a
 * store) or, when live is NULL, of the query service at o->query, into
 * buf. Returns TLY_EXIT_OK, or 1 after printing why (unknown partner, the
 * service not reachable: then --program names the program, and a named
 * data directory that does not exist is named too, tly_cli_data_note).
 */
int tly_asof_partner_program(const char *cmd, tly_query_store *live, const tly_common_opts *o,
                             const char *partner, char *buf, size_t cap);

#endif
