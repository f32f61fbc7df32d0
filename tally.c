/*
 * tally.c — the `tally` binary: dispatches to the subcommand named by argv[1].
 * Each subcommand lives in the folder that owns it (see tly_cmd.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tly_cli.h"
#include "tly_cmd.h"

/* PROJECT_VERSION of the root CMakeLists.txt, defined for the command layer. */
#ifndef TALLY_VERSION
#error "TALLY_VERSION is not defined (the root CMakeLists.txt defines it)"
#endif

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_bench(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const command commands[] = {
    {"up", tly_cmd_up, "start ledger, consumers and query service; supervise them"},
    {"ledger", tly_cmd_ledger, "run the log daemon (ingest, events, log-read)"},
    {"consume", tly_cmd_consume, "run a consumer shard that folds the log into views"},
    {"query", tly_cmd_query, "run the query service"},
    {"web", tly_cmd_web, "serve the read-only finance console over HTTP"},
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
    {"partners", tly_cmd_partners, "list partners: program, tier, MDF available, rebate payable"},
    {"report", tly_cmd_report, "period report of a program: accrued, expired, paid, rebate"},
    {"expiring", tly_cmd_expiring, "MDF the next close of each program will expire"},
    {"journal", tly_cmd_journal, "balanced GL journal entries of a program's period"},
    {"summary", tly_cmd_summary, "finance summary: liabilities, top partners, tiers, exceptions"},
    {"explain", tly_cmd_explain, "trace a partner's figures to their events"},
    {"statement", tly_cmd_statement, "write a partner's period statement as PDF or HTML"},
    {"audit", tly_cmd_audit, "verify, export, replay, diff and digest the log"},
    {"bench", cmd_bench, "measure ingest, folding and queries (bench ingest|fold|query)"},
    {"version", cmd_version, "print the version (also 'tally --version')"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: tally <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'tally <command> --help' for the options of a command.\n"
                 "Exit codes: 0 success, 1 error, 2 usage.\n");
}

static int cmd_version(int argc, char **argv)
{
    const tly_cli_spec spec = {"version", 0, NULL, 0, NULL, NULL};
    int rc = tly_cli_parse(&spec, NULL, argc, argv);
    if (rc == TLY_CLI_HELP) {
        printf("Usage: tally version\n       tally --version\n\n"
               "Prints 'tally VERSION'. Exit codes: 0 success, 2 usage.\n");
        return TLY_EXIT_OK;
    }
    if (rc != TLY_EXIT_OK)
        return rc;
    printf("tally %s\n", TALLY_VERSION);
    return fflush(stdout) == 0 ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}

static void bench_usage(FILE *out)
{
    fprintf(out, "Usage: tally bench <command> [options]\n\n"
                 "Commands:\n"
                 "  ingest   durable ingest through a real ledger, beside the raw LMDB ceiling\n"
                 "  fold     folding a generated log with 1 and with N shards, and view reads\n"
                 "  query    the query service's round trip and queries/s from N clients,\n"
                 "           idle and while a consumer folds, beside an echo ceiling\n\n"
                 "Run 'tally bench <command> --help' for its options.\n");
}

static int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ingest") == 0)
        return tly_cmd_bench_ingest(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "fold") == 0)
        return tly_cmd_bench_fold(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "query") == 0)
        return tly_cmd_bench_query(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        bench_usage(stdout);
        return TLY_EXIT_OK;
    }
    return tly_usagef("bench", "expected 'ingest', 'fold' or 'query'");
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
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tally: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return TLY_EXIT_USAGE;
}
