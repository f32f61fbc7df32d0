/*
 * cmd_gen.c — `tally gen`: writes a seeded, realistic synthetic data set as
 * JSON lines {"source": S, "event": E}, ready for `tally send`. The
 * simulation itself is gen_sim.c; this file is the command line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_limits.h"

#define CMD "gen"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally gen [options]\n"
            "\n"
            "Writes a seeded synthetic data set for Tally as JSON lines, one record\n"
            "{\"source\": S, \"event\": E} a line, in the order the sources would send\n"
            "them (each source's records of a simulated day come together, so\n"
            "`tally send` can batch them). The same flags give byte-identical output\n"
            "on any machine: no clock, no locale, no floating point.\n"
            "\n"
            "Options:\n"
            "  --seed N          PRNG seed (default 1)\n"
            "  --events N        number of distinct events, 1..%u (default 10000);\n"
            "                    resends come on top\n"
            "  --partners N      partners, 1..%u (default events/120, 12..200000)\n"
            "  --start DATE      first day, YYYY-MM-DD, UTC (default 2025-01-01)\n"
            "  --months N        length of the simulated span in months, 1..%u\n"
            "                    (default 18). Business time `at` stays inside\n"
            "                    [start, start + months): pick a start at least that\n"
            "                    long ago, or the ledger rejects events from the future.\n"
            "  --resend-pct P    after each record, with probability P %% (0..100,\n"
            "                    default 0), the source also resends one of its last\n"
            "                    %u records byte for byte, to exercise idempotency\n"
            "  --out FILE        write to FILE instead of stdout\n"
            "  --help            this text\n"
            "\n"
            "What the data holds: programs apex (quarterly, retroactive rebate, USD),\n"
            "nimbus (monthly, incremental, EUR) and summit (quarterly, incremental,\n"
            "GBP) with tiers, brackets and later version bumps (one stale, one\n"
            "rejected); partners of every kind and region enrolled by finance (some\n"
            "only after their first sales, a few never); sales and returns from\n"
            "dist-ingram, dist-tdsynnex, dist-arrow and dist-also (ids\n"
            "ING-S-0000001, ING-R-0000001, ...; occasional foreign currency, late,\n"
            "over-returned, unknown or mismatched); certifications from certsys;\n"
            "claims submitted and cancelled through portal and approved, rejected\n"
            "and paid by finance; period closes in order (rarely one out of order),\n"
            "rebate payouts and adjustments. Tier thresholds and rebate brackets\n"
            "scale with the expected revenue per partner, so tiers spread at any size.\n"
            "\n"
            "Exit codes: 0 success, 1 error (cannot write), 2 usage.\n",
            TLY_GEN_EVENTS_MAX, TLY_GEN_PARTNERS_MAX, TLY_GEN_MONTHS_MAX, TLY_GEN_RING_LINES);
}

typedef struct gen_args {
    tly_gen_opts opt;
    const char *out_path;
    bool help;
} gen_args;

/* The numeric options: name, range, and where the value goes. */
typedef struct num_opt {
    const char *name;
    uint64_t min, max;
} num_opt;

enum { OPT_SEED, OPT_EVENTS, OPT_PARTNERS, OPT_MONTHS, OPT_RESEND, OPT_NUM_COUNT };

static const num_opt num_opts[OPT_NUM_COUNT] = {
    [OPT_SEED] = {"--seed", 0, UINT64_MAX},
    [OPT_EVENTS] = {"--events", 1, TLY_GEN_EVENTS_MAX},
    [OPT_PARTNERS] = {"--partners", 1, TLY_GEN_PARTNERS_MAX},
    [OPT_MONTHS] = {"--months", 1, TLY_GEN_MONTHS_MAX},
    [OPT_RESEND] = {"--resend-pct", 0, 100},
};

static void set_num(tly_gen_opts *o, int which, uint64_t v)
{
    switch (which) {
    case OPT_SEED:
        o->seed = v;
        break;
    case OPT_EVENTS:
        o->events = v;
        break;
    case OPT_PARTNERS:
        o->partners = v;
        break;
    case OPT_MONTHS:
        o->months = (uint32_t)v; /* ≤ TLY_GEN_MONTHS_MAX */
        break;
    default:
        o->resend_pct = (uint32_t)v; /* ≤ 100 */
        break;
    }
}

/* The option table: the numeric ones keep their num_opts index as id - 1. */
enum { OPT_START = OPT_NUM_COUNT + 1, OPT_OUT };

static const tly_opt gen_opts_table[] = {
    {"--seed", OPT_SEED + 1, true},         {"--events", OPT_EVENTS + 1, true},
    {"--partners", OPT_PARTNERS + 1, true}, {"--months", OPT_MONTHS + 1, true},
    {"--resend-pct", OPT_RESEND + 1, true}, {"--start", OPT_START, true},
    {"--out", OPT_OUT, TLY_OPT_PATH},
};

static int gen_opt(void *ctx, int id, const char *v)
{
    gen_args *a = ctx;
    if (id == OPT_START) {
        if (!tly_gen_parse_date(v, &a->opt.start_ms))
            return tly_usagef(CMD, "--start expects a date YYYY-MM-DD, got '%s'", v);
        return TLY_EXIT_OK;
    }
    if (id == OPT_OUT) {
        a->out_path = v;
        return TLY_EXIT_OK;
    }
    if (id == TLY_OPT_ARG)
        return tly_usagef(CMD, "unexpected argument '%s'", v);
    const num_opt *n = &num_opts[id - 1];
    uint64_t value;
    if (!tly_parse_u64(v, n->min, n->max, &value))
        return tly_usagef(CMD, "%s expects an integer in %llu..%llu, got '%s'", n->name,
                          (unsigned long long)n->min, (unsigned long long)n->max, v);
    set_num(&a->opt, id - 1, value);
    return TLY_EXIT_OK;
}

/* Fills a from argv; TLY_EXIT_OK or TLY_EXIT_USAGE (error printed). */
static int parse_args(gen_args *a, int argc, char **argv)
{
    tly_gen_parse_date("2025-01-01", &a->opt.start_ms);
    a->opt.seed = 1;
    a->opt.events = 10000;
    a->opt.months = 18;
    const tly_cli_spec spec = {
        CMD, 0, gen_opts_table, sizeof gen_opts_table / sizeof gen_opts_table[0], gen_opt, a};
    int rc = tly_cli_parse(&spec, NULL, argc, argv);
    a->help = rc == TLY_CLI_HELP;
    return a->help ? TLY_EXIT_OK : rc;
}

/* Runs the generator into out; exit code. */
static int generate(const gen_args *a, FILE *out)
{
    static char buf[1 << 20]; /* large writes: a million lines in a few seconds */
    setvbuf(out, buf, _IOFBF, sizeof buf);
    tly_gen *g = calloc(1, sizeof *g);
    if (!g) {
        tly_errorf(CMD, "out of memory");
        return TLY_EXIT_FAIL;
    }
    g->opt = a->opt;
    g->out = out;
    g->start_ms = a->opt.start_ms;
    g->end_ms = tly_gen_add_months(a->opt.start_ms, a->opt.months);
    tly_gen_rng_seed(&g->rng, a->opt.seed);
    /* An independent stream for resends: the other records do not change. */
    tly_gen_rng_seed(&g->rng_resend, a->opt.seed ^ UINT64_C(0x5245534E44524E47));
    bool ok = tly_gen_world_init(g);
    if (!ok) {
        tly_errorf(CMD, "out of memory for the partners");
    } else if (!tly_gen_run(g)) {
        if (g->stalled)
            tly_errorf(CMD,
                       "the span of %u month(s) is too short for %llu events: "
                       "give more --months or fewer --events",
                       a->opt.months, (unsigned long long)a->opt.events);
        else
            tly_errorf(CMD, "write error: %s", strerror(errno));
        ok = false;
    }
    tly_gen_out_free(g);
    tly_gen_world_free(g);
    free(g);
    return ok ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}

int tly_cmd_gen(int argc, char **argv)
{
    gen_args a = {0};
    int rc = parse_args(&a, argc, argv);
    if (rc != TLY_EXIT_OK)
        return rc;
    if (a.help) {
        usage(stdout);
        return TLY_EXIT_OK;
    }
    if (tly_gen_add_months(a.opt.start_ms, a.opt.months) >=
        tly_period_start_ms(TLY_PERIOD_MONTH, (TLY_YEAR_MAX + 1) * 12))
        return tly_usagef(CMD, "--start plus --months runs past the year 9999");
    FILE *out = stdout;
    if (a.out_path && !(out = fopen(a.out_path, "w"))) {
        tly_errorf(CMD, "cannot open %s: %s", a.out_path, strerror(errno));
        return TLY_EXIT_FAIL;
    }
    rc = generate(&a, out);
    if (fflush(out) != 0 && rc == TLY_EXIT_OK) {
        tly_errorf(CMD, "write error: %s", strerror(errno));
        rc = TLY_EXIT_FAIL;
    }
    if (out != stdout && fclose(out) != 0 && rc == TLY_EXIT_OK) {
        tly_errorf(CMD, "cannot write %s", a.out_path);
        rc = TLY_EXIT_FAIL;
    }
    return rc;
}
