/*
 * statement.h — `tally statement` between its two files: cmd_statement.c
 * asks the query service (all answers at one seq) and statement_build.c
 * folds the log to that seq with the explain trace and assembles the
 * statement object that consumers/report renders (tly_report.h).
 */
#ifndef STATEMENT_H
#define STATEMENT_H

#include <jansson.h>
#include <stdint.h>

/* The query service's answers a statement uses, all at seq. */
typedef struct stmt_answers {
    json_t *balance, *rebate, *tier, *claims; /* SPEC sections 8 and 10 */
    json_t *report, *expiring;                /* of the partner's program, section 11 */
    json_t *name;                             /* the partner's name, or NULL */
    uint64_t seq;
} stmt_answers;

void stmt_answers_free(stmt_answers *a);

/*
 * Folds DATA/log to a->seq for partner, checks the fold agrees with the
 * service (the explain lines sum to the balance the service gave), checks
 * that period is a period of the program (its kind, from the program's
 * first period to the later of its earliest open period and the latest
 * period with a figure), and builds the statement into *out (new
 * reference). Returns an exit code (tly_cli.h) after printing why on
 * failure.
 */
int stmt_build(const char *cmd, const char *data, const char *partner, const char *period,
               const stmt_answers *a, json_t **out);

#endif
