/*
 * tly_cmd.h — the subcommands of the `tally` binary.
 *
 * Each folder owns its subcommands (ledger/cmd_ledger.c, producers/cmd_send.c,
 * consumers/cmd_query.c, ...); tally.c only dispatches. Every command takes
 * argv with argv[0] = its own name, prints its help to stdout on --help and
 * returns an exit code of tly_cli.h.
 */
#ifndef TLY_CMD_H
#define TLY_CMD_H

/* ledger/ */
int tly_cmd_ledger(int argc, char **argv);
/* producers/ */
int tly_cmd_send(int argc, char **argv);
int tly_cmd_gen(int argc, char **argv);
int tly_cmd_bench_ingest(int argc, char **argv);
/* consumers/ */
int tly_cmd_consume(int argc, char **argv);
int tly_cmd_query(int argc, char **argv);
int tly_cmd_web(int argc, char **argv);
int tly_cmd_up(int argc, char **argv);
int tly_cmd_status(int argc, char **argv);
int tly_cmd_wait(int argc, char **argv);
int tly_cmd_balance(int argc, char **argv);
int tly_cmd_rebate(int argc, char **argv);
int tly_cmd_tier(int argc, char **argv);
int tly_cmd_claims(int argc, char **argv);
int tly_cmd_liabilities(int argc, char **argv);
int tly_cmd_exceptions(int argc, char **argv);
int tly_cmd_partners(int argc, char **argv);
int tly_cmd_report(int argc, char **argv);
int tly_cmd_expiring(int argc, char **argv);
int tly_cmd_journal(int argc, char **argv);
int tly_cmd_summary(int argc, char **argv);
int tly_cmd_explain(int argc, char **argv);
int tly_cmd_statement(int argc, char **argv);
int tly_cmd_audit(int argc, char **argv);
int tly_cmd_bench_fold(int argc, char **argv);
int tly_cmd_bench_query(int argc, char **argv);

#endif
