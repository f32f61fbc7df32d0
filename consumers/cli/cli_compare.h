/*
 * cli_compare.h — `tally audit replay --program FILE --compare`: a what-if
 * replay beside the log as it is, at the same seq.
 */
#ifndef TLY_CLI_COMPARE_H
#define TLY_CLI_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Compares the views in what_if_dir (a what-if replay to seq) with an
 * ordinary replay of the log in log_dir to the same seq (shard_count
 * shards, in a temporary directory under tmp_parent, removed after): for
 * each program its liabilities live, under the new rules and the change,
 * and the partners whose MDF available and rebate payable change most
 * (at most TLY_AUDIT_COMPARE_MOVERS_MAX, by the sum of both changes'
 * sizes, ties by id). Prints a table, or with json one object:
 *   {"seq","what_if":{"program","version"},"programs":[{"program",
 *    "currency","live":{LIAB},"what_if":{LIAB},"change":{LIAB},
 *    "movers":[{"partner","tier":{"live","what_if"},
 *               "available":{"live","what_if","change"},
 *               "rebate_payable":{"live","what_if","change"}}]}]}
 * with LIAB the five figures of a liabilities row. Returns an exit code
 * (1 after printing why on stderr).
 */
int tly_compare_print(const char *cmd, const char *log_dir, const char *what_if_dir,
                      uint32_t shard_count, uint64_t seq, const char *program, int64_t version,
                      const char *tmp_parent, bool json);

#endif
