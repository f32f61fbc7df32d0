/*
 * tally.c — the `tally` binary: dispatches to the subcommand named by argv[1].
 * Each subcommand lives in the folder that owns it (see tly_cmd.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tly_cli.h"
#include "tly_cmd.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_bench(int argc, char **argv);

static const command commands[] = {
    {"up", tly_cmd_up, "start ledger, consumers and query service; supervise them"},
    {"ledger", tly_cmd_ledger, "run the log daemon (ingest, events, log-read)"},
    {"consume", tly_cmd_consume, "run a consumer shard that folds the log into views"},
    {"query", tly_cmd_query, "run the query service"},
    {"send", tly_cmd_send, "send JSON-lines or CSV events to the ledger"},
    {"gen", tly_cmd_gen, "write a seeded synthetic data set as JSON lines"},
    {"status", tly_cmd_status, "show the ledger head and each shard's checkpoint and lag"},
    {"wait", tly_cmd_wait, "wait until every shard has applied a seq"},
    {"balance", tly_cmd_balance, "MDF balance of a partner"},
    {"rebate", tly_cmd_rebate, "rebate periods of a partner"},
    {"tier", tly_cmd_tier, "tier status and history of a partner"},
    {"claims", tly_cmd_claims, "MDF claims of a partner"},
    {"liabilities", tly_cmd_liabilities, "MDF and rebate liabilities per program"},
    {"exceptions", tly_cmd_exceptions, "business exceptions recorded by the engine"},
    {"summary", tly_cmd_summary, "finance summary: liabilities, top partners, tiers, exceptions"},
    {"explain", tly_cmd_explain, "trace a partner's figures to their events"},
    {"audit", tly_cmd_audit, "verify, export, replay, diff and digest the log"},
    {"bench", cmd_bench, "measure ingest (bench ingest) and folding (bench fold)"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: tally <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'tally <command> --help' for the options of a command.\n"
                 "Exit codes: 0 success, 1 error, 2 usage.\n");
}

static int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ingest") == 0)
        return tly_cmd_bench_ingest(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "fold") == 0)
        return tly_cmd_bench_fold(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: tally bench ingest|fold [options]\n");
        return TLY_EXIT_OK;
    }
    return tly_usagef("bench", "expected 'ingest' or 'fold'");
}

int main(int argc, char **argv)
{
    /* Data files are private whatever the caller's umask (tly_os.h). */
    umask(077);
    if (argc < 2) {
        usage(stderr);
        return TLY_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return TLY_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tally: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return TLY_EXIT_USAGE;
}
