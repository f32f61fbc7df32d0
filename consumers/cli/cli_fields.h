/*
 * cli_fields.h — what the partner views (cmd_views.c) and the finance
 * commands (cmd_finance.c, finance_out.c) share as clients of the query
 * service: the fields of a reply as table cells, and CURVE for the
 * service's socket.
 *
 * Command layer only (consumers/cli); not a room's API.
 */
#ifndef TLY_CLI_FIELDS_H
#define TLY_CLI_FIELDS_H

#include <jansson.h>
#include <stddef.h>

/* The string field key of object o (borrowed), or dflt when it is absent
 * or not a string. */
const char *cli_str_of(const json_t *o, const char *key, const char *dflt);

/* The integer field key of o, in minor units, as a decimal amount of a
 * currency of exponent exp (tly_query_format_money) into buf; "-" when it
 * is absent or not an integer. */
const char *cli_money_of(const json_t *o, const char *key, int exp, char *buf, size_t cap);

/* With --curve-server-key KEY and --curve-secret FILE (both or neither),
 * makes the command's query client use CURVE (tly_query_client_curve).
 * Returns TLY_EXIT_OK, or the exit code after printing the error as cmd:
 * a usage error for one option without the other or a malformed key, a
 * failure for a key file that cannot be read. */
int cli_use_curve(const char *cmd, const char *server_key, const char *secret);

#endif
