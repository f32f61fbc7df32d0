/*
 * cmd_audit.c — `tally audit verify | export | digest | replay | diff`
 * (SPEC section 7, [D14]); the work itself is in tly_audit.h.
 *
 * Exit codes: 0 success (the log verifies, the views match), 1 a failed
 * check or an error (one line on stderr), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_compare.h"
#include "ledger_repl.h"
#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_period.h"

#define CMD "audit"

static const char usage_text[] =
    "Usage: tally audit <command> [options]\n"
    "\n"
    "Commands:\n"
    "  verify   check seq continuity, the hash chain, and that every record\n"
    "           decodes and validates\n"
    "  export   write the records as JSON lines (recompute the chain from them)\n"
    "  digest   SHA-256 per view family, comparable across machines and shard counts\n"
    "  replay   fold the log from scratch into fresh view stores, print digests\n"
    "  diff     replay to the live views' checkpoints and compare every view\n"
    "\n"
    "Run 'tally audit <command> --help' for its options.\n"
    "Exit codes: 0 ok, 1 check failed or error, 2 usage.\n";

/* Progress through tly_progress; ctx is the label. */
static void cli_progress(void *ctx, uint64_t done, uint64_t total)
{
    tly_progress((const char *)ctx, done, total);
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Options of every audit subcommand; which ones a subcommand accepts is
 * checked by its own parser. */
typedef struct audit_opts {
    tly_common_opts common;
    const char *views;   /* --views DIR: a views directory instead of DATA/views */
    const char *out;     /* replay --out */
    const char *program; /* replay --program (what-if) */
    uint64_t from_seq, to_seq, shards;
    bool has_until;
    bool timing;  /* replay --timing */
    bool compare; /* replay --compare (with --program) */
    int64_t until_ms;
    const char *nats;   /* --nats URL[,URL...]: read the stream into DATA/log first [N6] */
    const char *stream; /* --stream NAME, with --nats */
} audit_opts;

/* DATA/log into buf; false (usage error printed) when it does not fit. */
static bool log_dir_of(const audit_opts *o, char *buf, size_t cap)
{
    if (tly_layout_log(o->common.data, buf, cap) == TLY_OK)
        return true;
    tly_usagef(CMD, "path too long: %s", o->common.data);
    return false;
}

/* The options of the audit subcommands; each takes the ones its table
 * lists (one parser for all: audit_opt). */
enum {
    OPT_FROM = 1,
    OPT_TO,
    OPT_VIEWS,
    OPT_OUT,
    OPT_SHARDS,
    OPT_PROGRAM,
    OPT_TIMING,
    OPT_UNTIL,
    OPT_COMPARE,
    OPT_NATS,
    OPT_STREAM,
};

static const tly_opt export_opts[] = {{"--from", OPT_FROM, true}, {"--to", OPT_TO, true}};
static const tly_opt verify_opts[] = {{"--nats", OPT_NATS, true}, {"--stream", OPT_STREAM, true}};
static const tly_opt views_opts[] = {{"--views", OPT_VIEWS, TLY_OPT_PATH}};
static const tly_opt replay_opts[] = {
    {"--to", OPT_TO, true},
    {"--out", OPT_OUT, TLY_OPT_PATH},
    {"--shards", OPT_SHARDS, true},
    {"--program", OPT_PROGRAM, TLY_OPT_PATH},
    {"--timing", OPT_TIMING, false},
    {"--until", OPT_UNTIL, true},
    {"--compare", OPT_COMPARE, false},
    {"--nats", OPT_NATS, true},
    {"--stream", OPT_STREAM, true},
};

typedef struct audit_parse {
    const char *sub;
    audit_opts *o;
} audit_parse;

/* Parses a seq option value into *out; usage error on a bad number. */
static int seq_opt(const char *sub, const char *name, const char *val, uint64_t *out)
{
    if (tly_parse_u64(val, 1, UINT64_MAX, out))
        return 0;
    return tly_usagef(sub, "%s needs a seq (a whole number >= 1), not '%s'", name, val);
}

static int audit_opt(void *ctx, int id, const char *val)
{
    const audit_parse *p = ctx;
    audit_opts *o = p->o;
    switch (id) {
    case OPT_FROM:
        return seq_opt(p->sub, "--from", val, &o->from_seq);
    case OPT_TO:
        return seq_opt(p->sub, "--to", val, &o->to_seq);
    case OPT_SHARDS:
        if (tly_parse_u64(val, 1, TLY_SHARDS_MAX, &o->shards))
            return TLY_EXIT_OK;
        return tly_usagef(p->sub, "--shards needs 1..%u, not '%s'", TLY_SHARDS_MAX, val);
    case OPT_UNTIL:
        o->has_until = true;
        if (tly_time_parse(val, strlen(val), &o->until_ms) == TLY_OK)
            return TLY_EXIT_OK;
        return tly_usagef(p->sub, "--until needs an ISO-8601 time, not '%s'", val);
    case TLY_OPT_ARG:
        return tly_usagef(p->sub, "unexpected argument '%s'", val);
    default:
        o->views = id == OPT_VIEWS ? val : o->views;
        o->out = id == OPT_OUT ? val : o->out;
        o->program = id == OPT_PROGRAM ? val : o->program;
        o->timing = o->timing || id == OPT_TIMING;
        o->compare = o->compare || id == OPT_COMPARE;
        o->nats = id == OPT_NATS ? val : o->nats;
        o->stream = id == OPT_STREAM ? val : o->stream;
        return TLY_EXIT_OK;
    }
}

/* Parses argv into o (defaults first): --help, the common flags taken
 * (common) and the subcommand's own options (opts). Returns 0, -1 when the
 * help was printed, or TLY_EXIT_USAGE (printed). */
static int parse_opts(const char *sub, const char *help, unsigned common, const tly_opt *opts,
                      size_t n, audit_opts *o, int argc, char **argv)
{
    tly_common_defaults(&o->common);
    audit_parse p = {sub, o};
    const tly_cli_spec spec = {sub, TLY_CO_DATA | common, opts, n, audit_opt, &p};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        fputs(help, stdout);
    return rc;
}

/* ---- verify ---- */

static const char verify_help[] =
    "Usage: tally audit verify [--data DIR] [--json] [--nats URL[,URL...] [--stream NAME]]\n"
    "\n"
    "Reads DIR/log in one snapshot (also while the ledger runs) and checks that\n"
    "seqs run from 1 without gaps, that the hash chain recomputes, that every\n"
    "record decodes and its event validates, that recorded_ms never decreases and\n"
    "that the idempotency index agrees with the log.\n"
    "Prints 'ok: N records, head seq N, head hash HEX' and exits 0, or names the\n"
    "first bad seq and why and exits 1.\n"
    "  --nats URL[,URL...]  first read the replication stream (SPEC section 12) into\n"
    "                DIR/log from its head + 1 on (DIR/log is then this machine's\n"
    "                mirror of the stream; a log that is not the stream's is refused)\n"
    "  --stream NAME the stream (default TALLY_LOG)\n";

static int verify_report(const tly_audit_verdict *v, bool json)
{
    char hex[2 * TLY_HASH_BYTES + 1];
    tly_hex_encode(v->head_hash, TLY_HASH_BYTES, hex);
    if (json && v->ok)
        printf("{\"ok\":true,\"records\":%llu,\"head_seq\":%llu,\"head_hash\":\"%s\"}\n",
               (unsigned long long)v->records, (unsigned long long)v->head_seq, hex);
    else if (v->ok)
        printf("ok: %llu records, head seq %llu, head hash %s\n", (unsigned long long)v->records,
               (unsigned long long)v->head_seq, hex);
    if (v->ok)
        return TLY_EXIT_OK;
    if (json) {
        json_t *o =
            json_pack("{s:b, s:I, s:s}", "ok", 0, "seq", (json_int_t)v->bad_seq, "error", v->error);
        if (o) {
            json_dumpf(o, stdout, JSON_COMPACT);
            putchar('\n');
            json_decref(o);
        }
    }
    if (v->bad_seq)
        tly_errorf(CMD " verify", "seq %llu: %s", (unsigned long long)v->bad_seq, v->error);
    else
        tly_errorf(CMD " verify", "%s", v->error);
    return TLY_EXIT_FAIL;
}

/* Reports an error of opening or reading the log. */
static int log_error(const char *sub, const char *log_dir, tly_err err)
{
    if (err == TLY_NOT_FOUND)
        tly_errorf(sub, "no log in %s", log_dir);
    else
        tly_errorf(sub, "%s: %s", log_dir, tly_strerror(err));
    return TLY_EXIT_FAIL;
}

/* --nats [N6]: DATA/log becomes (or stays) a mirror of the stream, brought
 * up to date from its head + 1 before the subcommand reads it. Exit code. */
static int mirror_first(const char *sub, const audit_opts *o, const char *log_dir)
{
    if (!o->nats && o->stream)
        return tly_usagef(sub, "--stream goes with --nats");
    if (!o->nats)
        return TLY_EXIT_OK;
    tly_repl_opts ro = {o->nats, o->stream, 0, true, "--nats"};
    char msg[256] = "";
    if (tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef(sub, "%s", msg);
    uint64_t head = 0;
    tly_err err = tly_repl_mirror(&ro, log_dir, &head, msg, sizeof msg);
    if (err != TLY_OK) {
        tly_errorf(sub, "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}

static int run_verify(int argc, char **argv)
{
    audit_opts o = {0};
    int rc = parse_opts(CMD " verify", verify_help, TLY_CO_JSON, verify_opts,
                        sizeof verify_opts / sizeof verify_opts[0], &o, argc, argv);
    if (rc != 0)
        return rc < 0 ? TLY_EXIT_OK : rc;
    char log_dir[TLY_PATH_BYTES_MAX + 8];
    if (!log_dir_of(&o, log_dir, sizeof log_dir))
        return TLY_EXIT_USAGE;
    if ((rc = mirror_first(CMD " verify", &o, log_dir)) != TLY_EXIT_OK)
        return rc;
    tly_audit_verdict v;
    tly_err err = tly_audit_verify(log_dir, cli_progress, "verify", &v);
    tly_progress_end();
    if (err != TLY_OK)
        return log_error(CMD " verify", log_dir, err);
    return verify_report(&v, o.common.json);
}

/* ---- export ---- */

static const char export_help[] =
    "Usage: tally audit export [--data DIR] [--from SEQ] [--to SEQ]\n"
    "\n"
    "Writes one JSON object per record to stdout, with the keys in this order:\n"
    "  seq, recorded_ms, source, hash (hex), event_b64 (base64 of the stored\n"
    "  event bytes), event (the event as JSON).\n"
    "hash[n] = SHA-256(hash[n-1] || u64be(seq) || u64be(recorded_ms) ||\n"
    "                  u16be(len(source)) || source || event), hash[0] = 32 zero bytes.\n";

static int run_export(int argc, char **argv)
{
    audit_opts o = {0};
    int rc = parse_opts(CMD " export", export_help, 0, export_opts, 2, &o, argc, argv);
    if (rc != 0)
        return rc < 0 ? TLY_EXIT_OK : rc;
    if (o.to_seq && o.from_seq > o.to_seq)
        return tly_usagef(CMD " export", "--from is after --to");
    char log_dir[TLY_PATH_BYTES_MAX + 8];
    if (!log_dir_of(&o, log_dir, sizeof log_dir))
        return TLY_EXIT_USAGE;
    uint64_t n = 0, bad = 0;
    tly_err err =
        tly_audit_export(log_dir, o.from_seq, o.to_seq, stdout, cli_progress, "export", &n, &bad);
    tly_progress_end();
    if (err == TLY_CORRUPT) {
        tly_errorf(CMD " export", "seq %llu: record does not decode", (unsigned long long)bad);
        return TLY_EXIT_FAIL;
    }
    if (err == TLY_IO) {
        tly_errorf(CMD " export", "writing the output failed");
        return TLY_EXIT_FAIL;
    }
    return err == TLY_OK ? TLY_EXIT_OK : log_error(CMD " export", log_dir, err);
}

/* ---- digest ---- */

static const char digest_help[] =
    "Usage: tally audit digest [--data DIR | --views DIR] [--json]\n"
    "\n"
    "Prints 'seq N' and one SHA-256 per view family (mdf, rebates, tiers, claims,\n"
    "liabilities, exceptions) of the views in DIR/views (or the views directory\n"
    "given, e.g. a replay's --out). The encoding is defined in schemas/DIGEST.md;\n"
    "it does not depend on the shard count or the machine, so two outputs\n"
    "compare byte for byte. Every shard must be at the same checkpoint.\n";

/* Prints a digest as text or JSON. */
static void digest_print(const tly_audit_digest *d, bool json)
{
    if (!json) {
        tly_audit_digest_print(d, stdout);
        return;
    }
    printf("{\"seq\":%llu", (unsigned long long)d->seq);
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT; f++) {
        char hex[2 * TLY_HASH_BYTES + 1];
        tly_hex_encode(d->sha[f], TLY_HASH_BYTES, hex);
        printf(",\"%s\":\"%s\"", tly_audit_family_name((tly_audit_family)f), hex);
    }
    printf("}\n");
}

/* Digests views_dir and prints it; exit code. */
static int digest_and_print(const char *sub, const char *views_dir, bool json)
{
    tly_audit_digest d;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_digest_views(views_dir, &d, msg, sizeof msg);
    if (err != TLY_OK && msg[0]) {
        tly_errorf(sub, "%s", msg);
        return TLY_EXIT_FAIL;
    }
    if (err != TLY_OK) {
        tly_errorf(sub, "%s: %s", views_dir, tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    if (d.seq != d.seq_max) {
        tly_errorf(sub,
                   "shards are at different checkpoints (seq %llu..%llu): wait until "
                   "they agree, then digest again",
                   (unsigned long long)d.seq, (unsigned long long)d.seq_max);
        return TLY_EXIT_FAIL;
    }
    digest_print(&d, json);
    return TLY_EXIT_OK;
}

/* The views directory: --views, else DATA/views; false (usage error
 * printed) when it does not fit buf. */
static bool views_dir_of(const audit_opts *o, char *buf, size_t cap)
{
    if (o->views) {
        snprintf(buf, cap, "%s", o->views);
        return true;
    }
    if (tly_layout_views(o->common.data, buf, cap) == TLY_OK)
        return true;
    tly_usagef(CMD, "path too long: %s", o->common.data);
    return false;
}

static int run_digest(int argc, char **argv)
{
    audit_opts o = {0};
    int rc = parse_opts(CMD " digest", digest_help, TLY_CO_JSON, views_opts, 1, &o, argc, argv);
    if (rc != 0)
        return rc < 0 ? TLY_EXIT_OK : rc;
    char views_dir[TLY_PATH_BYTES_MAX + 8];
    if (!views_dir_of(&o, views_dir, sizeof views_dir))
        return TLY_EXIT_USAGE;
    return digest_and_print(CMD " digest", views_dir, o.common.json);
}

/* ---- replay ---- */

static const char replay_help[] =
    "Usage: tally audit replay --out DIR [--to SEQ | --until TIME] [--shards N]\n"
    "                          [--program FILE [--compare]] [--data DATA] [--json]\n"
    "                          [--nats URL[,URL...] [--stream NAME]]\n"
    "\n"
    "Folds DATA/log from seq 1 into fresh view stores DIR/K-of-N (the layout of\n"
    "live views: 'tally balance --views DIR' answers from them), then prints the\n"
    "digests as 'tally audit digest' does.\n"
    "  --to SEQ      stop after seq SEQ\n"
    "  --until TIME  fold only what the ledger had recorded at TIME (ISO-8601,\n"
    "                UTC unless an offset is given): records with recorded_ms <= TIME\n"
    "  --shards N    shard count of the new views (default 1; the digests do not\n"
    "                depend on it)\n"
    "  --program FILE  what-if: replay with the rules of one program replaced by\n"
    "                the program event in FILE (JSON; `id` and `at` may be left\n"
    "                out) from the first event on; then 'tally liabilities --views\n"
    "                DIR' shows what the program would have cost under those rules;\n"
    "                a program the log does not have is an error (exit 1)\n"
    "  --compare     with --program: instead of the digests, each program's\n"
    "                liabilities live (the log replayed to the same seq), under the\n"
    "                new rules and the change, and the partners whose MDF available\n"
    "                and rebate payable change most (--json: one object)\n"
    "  --timing      print the fold's rate on stderr when done, as 'replay: N\n"
    "                records in S s, R records/s, K shard(s); F fold(s) resumed after\n"
    "                a full map; C commit(s)' (a terminal shows it anyway, after the\n"
    "                progress line), to compare with 'tally bench fold'\n"
    "  --nats URL[,URL...]  first read the replication stream into DATA/log from its\n"
    "                head + 1 on, as 'tally audit verify --nats' does\n"
    "  --stream NAME the stream (default TALLY_LOG)\n";

static int replay_parse(audit_opts *o, int argc, char **argv)
{
    o->shards = 1;
    int rc = parse_opts(CMD " replay", replay_help, TLY_CO_JSON, replay_opts,
                        sizeof replay_opts / sizeof replay_opts[0], o, argc, argv);
    if (rc != 0)
        return rc;
    if (!o->out)
        return tly_usagef(CMD " replay", "--out DIR is required");
    if (o->to_seq && o->has_until)
        return tly_usagef(CMD " replay", "give --to or --until, not both");
    if (o->compare && !o->program)
        return tly_usagef(CMD " replay", "--compare goes with --program FILE");
    return 0;
}

/* The replacement rules of `replay --program FILE`, decoded. */
typedef struct what_if {
    msgpack_sbuffer buf; /* the event's bytes: ev's strings point here */
    tly_event ev;
} what_if;

static void what_if_free(what_if *w)
{
    if (w->buf.data)
        msgpack_sbuffer_destroy(&w->buf);
}

/* Reads FILE (one JSON program event; id and at may be omitted) and
 * validates it as the ledger would. */
static int what_if_load(const char *path, what_if *w)
{
    const char *sub = CMD " replay";
    json_error_t jerr;
    json_t *ev = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(ev)) {
        tly_errorf(sub, "%s: not a JSON object (%s, line %d)", path, tly_json_load_why(ev, &jerr),
                   jerr.line);
        json_decref(ev);
        return TLY_EXIT_FAIL;
    }
    int64_t now = tly_now_ms();
    if (!json_object_get(ev, "id"))
        json_object_set_new(ev, "id", json_string("what-if"));
    if (!json_object_get(ev, "at"))
        json_object_set_new(ev, "at", json_integer(now));
    tly_field_error fe = {{0}, {0}};
    msgpack_sbuffer_init(&w->buf);
    tly_err err = tly_json_event_to_mp(ev, &w->buf, &fe);
    json_decref(ev);
    if (err == TLY_OK)
        err = tly_event_decode(w->buf.data, w->buf.size, now, &w->ev, &fe);
    if (err == TLY_OK && w->ev.type != TLY_EV_PROGRAM) {
        err = TLY_BAD_TYPE;
        snprintf(fe.message, sizeof fe.message, "the event must be of type program");
    }
    if (err != TLY_OK) {
        tly_errorf(sub, "%s: %s%s%s: %s", path, tly_err_name(err), fe.field[0] ? " " : "", fe.field,
                   fe.message[0] ? fe.message : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}

/* A what-if of a program the log does not have (a typo) would change
 * nothing: refused before any replay, naming the programs there are. */
static int what_if_known(const audit_opts *o, const what_if *w)
{
    const char *sub = CMD " replay";
    tly_audit_closes *c = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES] = "", name[TLY_NAME_BYTES_MAX + 1];
    tly_err err = tly_audit_closes_open(o->common.data, false, &c, msg, sizeof msg);
    if (err != TLY_OK) {
        tly_errorf(sub, "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    snprintf(name, sizeof name, "%.*s", (int)w->ev.program.len, w->ev.program.ptr);
    uint64_t seq = tly_audit_closes_program_seq(c, name);
    int rc = TLY_EXIT_OK;
    if (seq == 0 || (o->to_seq && seq > o->to_seq)) {
        char names[TLY_AUDIT_ERROR_BYTES];
        tly_audit_closes_names(c, names, sizeof names);
        tly_errorf(sub, "%s: program '%s' is not in the log%s (the log has: %s)", o->program, name,
                   seq ? " up to --to" : "", names);
        rc = TLY_EXIT_FAIL;
    }
    tly_audit_closes_free(c);
    return rc;
}

/* After the replay: the digests, or with --compare the comparison. */
static int replay_report(const audit_opts *o, const char *log_dir, const what_if *w, uint64_t last)
{
    if (!o->compare)
        return digest_and_print(CMD " replay", o->out, o->common.json);
    char name[TLY_NAME_BYTES_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)w->ev.program.len, w->ev.program.ptr);
    const char *tmp = getenv("TMPDIR");
    return tly_compare_print(CMD " replay", log_dir, o->out, (uint32_t)o->shards, last, name,
                             w->ev.version, tmp && *tmp ? tmp : "/tmp", o->common.json);
}

static int run_replay(int argc, char **argv)
{
    audit_opts o = {0};
    int rc = replay_parse(&o, argc, argv);
    if (rc != 0)
        return rc < 0 ? TLY_EXIT_OK : rc;
    char log_dir[TLY_PATH_BYTES_MAX + 8];
    if (!log_dir_of(&o, log_dir, sizeof log_dir))
        return TLY_EXIT_USAGE;
    if ((rc = mirror_first(CMD " replay", &o, log_dir)) != TLY_EXIT_OK)
        return rc;
    tly_audit_replay_opts ro = {.log_dir = log_dir,
                                .out_dir = o.out,
                                .shard_count = (uint32_t)o.shards,
                                .to_seq = o.to_seq,
                                .until_ms = o.until_ms,
                                .has_until = o.has_until};
    what_if wi = {0};
    if (o.program) {
        rc = what_if_load(o.program, &wi);
        if (rc == TLY_EXIT_OK)
            rc = what_if_known(&o, &wi);
        if (rc != TLY_EXIT_OK) {
            what_if_free(&wi);
            return rc;
        }
        ro.what_if = &wi.ev;
    }
    uint64_t last = 0, t0_ns = tly_mono_ns();
    uint32_t reloads = 0, commits = 0;
    ro.reloads = &reloads;
    ro.commits = &commits;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_replay(&ro, cli_progress, "replay", &last, msg, sizeof msg);
    double s = (double)(tly_mono_ns() - t0_ns) / 1e9;
    tly_progress_end();
    if (err == TLY_OK && (o.timing || tly_progress_enabled()))
        fprintf(stderr,
                "replay: %llu records in %.2f s, %.0f records/s, %llu shard(s); %u fold(s) "
                "resumed after a full map; %u commit(s)\n",
                (unsigned long long)last, s, s > 0 ? (double)last / s : 0.0,
                (unsigned long long)o.shards, reloads, commits);
    if (err == TLY_NOT_FOUND && !msg[0])
        rc = log_error(CMD " replay", log_dir, err);
    else if (err != TLY_OK)
        tly_errorf(CMD " replay", "%s", msg[0] ? msg : tly_strerror(err));
    if (err == TLY_OK && o.has_until && last == 0) {
        /* an empty replay is not an answer: nothing was recorded by then */
        char when[TLY_TIME_TEXT_BYTES];
        tly_time_format(o.until_ms, when);
        tly_errorf(CMD " replay", "--until %s is before the log's first record: nothing to replay",
                   when);
        rc = TLY_EXIT_FAIL;
    } else if (err == TLY_OK) {
        rc = replay_report(&o, log_dir, &wi, last);
    }
    what_if_free(&wi);
    return err == TLY_OK || rc != TLY_EXIT_OK ? rc : TLY_EXIT_FAIL;
}

/* ---- diff ---- */

static const char diff_help[] =
    "Usage: tally audit diff [--data DIR] [--views DIR]\n"
    "\n"
    "Replays DIR/log into a temporary directory, each shard to the checkpoint of\n"
    "the live shard, and compares every partner's views, the liabilities and the\n"
    "exceptions with the live views in DIR/views (or --views), and checks every\n"
    "live balance against the MDF invariant (accrued - clawed_back + adjusted -\n"
    "expired - pending - approved - paid = available = buckets - deficit).\n"
    "Prints one line per difference (partner, view, field) and exits 1, or\n"
    "prints 'all views match at seq N' and exits 0.\n";

static int run_diff(int argc, char **argv)
{
    audit_opts o = {0};
    int rc = parse_opts(CMD " diff", diff_help, 0, views_opts, 1, &o, argc, argv);
    if (rc != 0)
        return rc < 0 ? TLY_EXIT_OK : rc;
    char log_dir[TLY_PATH_BYTES_MAX + 8], views_dir[TLY_PATH_BYTES_MAX + 8];
    if (!log_dir_of(&o, log_dir, sizeof log_dir))
        return TLY_EXIT_USAGE;
    if (!views_dir_of(&o, views_dir, sizeof views_dir))
        return TLY_EXIT_USAGE;
    const char *tmp = getenv("TMPDIR");
    uint64_t differences = 0;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_diff(log_dir, views_dir, tmp && *tmp ? tmp : "/tmp", stdout,
                                 cli_progress, "replay", &differences, msg, sizeof msg);
    tly_progress_end();
    if (err != TLY_OK) {
        tly_errorf(CMD " diff", "%s", msg[0] ? msg : tly_strerror(err));
        return TLY_EXIT_FAIL;
    }
    return differences ? TLY_EXIT_FAIL : TLY_EXIT_OK;
}

/* ---- dispatch ---- */

typedef struct audit_sub {
    const char *name;
    int (*run)(int argc, char **argv);
} audit_sub;

static const audit_sub subs[] = {
    {"verify", run_verify}, {"export", run_export}, {"digest", run_digest},
    {"replay", run_replay}, {"diff", run_diff},
};

int tly_cmd_audit(int argc, char **argv)
{
    if (argc < 2)
        return tly_usagef(CMD, "expected one of verify, export, digest, replay, diff");
    if (is_help(argv[1])) {
        fputs(usage_text, stdout);
        return TLY_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    return tly_usagef(CMD, "unknown audit command '%s'", argv[1]);
}
