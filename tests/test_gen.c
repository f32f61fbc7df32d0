/*
 * test_gen.c — `tally gen`, run as the real binary ($TALLY_BIN).
 *
 * Pins: determinism (same flags → same bytes, resends do not disturb the
 * other records), the command line (help, usage errors, --out, --events),
 * the shape of every record (valid JSON, roles of SPEC section 4, ids unique
 * and monotonic per source, `at` inside the span, every event decodes and
 * validates with the schemas codec), and that a default-size set exercises
 * the engine: every event type and partner kind, held and never-enrolled
 * partners, late sales, currency mismatches, every kind of return, claim
 * path and certification action, version bumps, a stale version and an
 * out-of-order close.
 */
#include <check.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_cli.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_period.h"

/* Where generated data sets go: one temp directory per test. */
static char *tmp;

static void setup(void)
{
    tmp = tu_tmpdir();
}

static void teardown(void)
{
    tu_rmtree(tmp);
    tmp = NULL;
}

/* Runs `tally gen ARGS...` with stdout into <tmp>/<name>; returns the exit
 * code. args is NULL-terminated. */
static int run_gen(const char *name, const char *const *args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    argv[n++] = "gen";
    for (; *args; args++) {
        ck_assert_int_lt(n, 30);
        argv[n++] = (char *)*args;
    }
    argv[n] = NULL;
    char out[1024], err[1024];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    snprintf(err, sizeof err, "%s/%s.err", tmp, name);
    return tu_run(argv, NULL, out, err);
}

static char *read_out(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    char *buf = tu_read_file(path, len);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static size_t count_lines(const char *buf, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == '\n';
    return n;
}

/* Generates with args and returns the output (malloc'd), asserting exit 0. */
static char *gen(const char *name, const char *const *args, size_t *len)
{
    int rc = run_gen(name, args);
    ck_assert_msg(rc == 0, "tally gen exited %d (see %s/%s.err)", rc, tmp, name);
    return read_out(name, len);
}

/* ------------------------------------------------------- command line */

START_TEST(help_exits_0)
{
    const char *args[] = {"--help", NULL};
    ck_assert_int_eq(run_gen("help", args), 0);
    size_t len;
    char *out = read_out("help", &len);
    ck_assert_ptr_nonnull(strstr(out, "Usage: tally gen"));
    ck_assert_ptr_nonnull(strstr(out, "--resend-pct"));
    free(out);
}
END_TEST

/* Each row is one bad command line; every one is a usage error (exit 2)
 * with nothing on stdout. */
static const char *const bad_args[][3] = {
    {"--bogus", NULL, NULL},         {"extra", NULL, NULL},
    {"--events", "abc", NULL},       {"--events", "0", NULL},
    {"--events", "-5", NULL},        {"--events", "100000001", NULL},
    {"--partners", "0", NULL},       {"--seed", NULL, NULL},
    {"--start", "2025-13-01", NULL}, {"--start", "2025-02-29", NULL},
    {"--start", "1999-12-31", NULL}, {"--months", "0", NULL},
    {"--months", "121", NULL},       {"--resend-pct", "101", NULL},
};

START_TEST(bad_flag_exits_2)
{
    const char *const *args = bad_args[_i];
    ck_assert_msg(run_gen("bad", args) == 2, "'%s %s' should be a usage error", args[0],
                  args[1] ? args[1] : "");
    size_t len;
    char *out = read_out("bad", &len);
    ck_assert_uint_eq(len, 0);
    free(out);
    char *err = read_out("bad.err", &len);
    ck_assert_ptr_nonnull(strstr(err, "tally"));
    free(err);
}
END_TEST

START_TEST(unwritable_out_exits_1)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/no/such/dir/out.jsonl", tmp);
    const char *args[] = {"--events", "100", "--out", path, NULL};
    ck_assert_int_eq(run_gen("unwritable", args), 1);
}
END_TEST

/* ---------------------------------------------------------- determinism */

START_TEST(same_seed_same_bytes)
{
    const char *args[] = {"--seed", "7", "--events", "4000", NULL};
    size_t a_len, b_len;
    char *a = gen("a", args, &a_len);
    char *b = gen("b", args, &b_len);
    ck_assert_uint_gt(a_len, 0);
    ck_assert_uint_eq(a_len, b_len);
    ck_assert(memcmp(a, b, a_len) == 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(out_file_equals_stdout)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/file.jsonl", tmp);
    const char *to_file[] = {"--seed", "3", "--events", "1500", "--out", path, NULL};
    const char *to_stdout[] = {"--seed", "3", "--events", "1500", NULL};
    size_t stdout_len, file_len, a_len;
    char *redirected = gen("stdout", to_file, &stdout_len);
    ck_assert_uint_eq(stdout_len, 0); /* --out: nothing on stdout */
    free(redirected);
    char *a = gen("a", to_stdout, &a_len);
    char *f = tu_read_file(path, &file_len);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(a_len, file_len);
    ck_assert(memcmp(a, f, a_len) == 0);
    free(a);
    free(f);
}
END_TEST

START_TEST(different_seeds_differ)
{
    const char *s1[] = {"--seed", "1", "--events", "2000", NULL};
    const char *s2[] = {"--seed", "2", "--events", "2000", NULL};
    size_t a_len, b_len;
    char *a = gen("a", s1, &a_len);
    char *b = gen("b", s2, &b_len);
    ck_assert(a_len != b_len || memcmp(a, b, a_len) != 0);
    free(a);
    free(b);
}
END_TEST

/* --events counts distinct events: without resends, the line count. */
START_TEST(events_count_respected)
{
    static const char *const counts[] = {"1", "250", "5000", "200000"};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        const char *args[] = {"--events", counts[k], NULL};
        size_t len;
        char *out = gen("count", args, &len);
        size_t want = (size_t)strtoul(counts[k], NULL, 10);
        size_t got = count_lines(out, len);
        ck_assert_msg(got >= want * 95 / 100 && got <= want * 105 / 100 + 1,
                      "--events %s gave %zu lines", counts[k], got);
        free(out);
    }
}
END_TEST

/* ------------------------------------------------------ record checks */

/* One parsed line. */
typedef struct rec {
    json_t *root; /* owns the rest */
    const char *source;
    json_t *ev;
    const char *type, *id;
    json_int_t at;
} rec;

static void parse_rec(const char *line, size_t len, size_t lineno, rec *r)
{
    json_error_t je;
    r->root = json_loadb(line, len, 0, &je);
    ck_assert_msg(r->root && json_is_object(r->root), "line %zu: not a JSON object: %s", lineno,
                  je.text);
    ck_assert_uint_eq(json_object_size(r->root), 2);
    r->source = json_string_value(json_object_get(r->root, "source"));
    r->ev = json_object_get(r->root, "event");
    ck_assert_msg(r->source && json_is_object(r->ev), "line %zu: no source or event", lineno);
    r->type = json_string_value(json_object_get(r->ev, "type"));
    r->id = json_string_value(json_object_get(r->ev, "id"));
    json_t *at = json_object_get(r->ev, "at");
    ck_assert_msg(r->type && r->id && json_is_integer(at), "line %zu: type/id/at", lineno);
    r->at = json_integer_value(at);
}

static const char *str_field(const rec *r, const char *key)
{
    return json_string_value(json_object_get(r->ev, key));
}

static json_int_t int_field(const rec *r, const char *key)
{
    return json_integer_value(json_object_get(r->ev, key));
}

/* SPEC section 4 roles: sales from distributors, certs from certsys, claim
 * submit/cancel from the portal, everything else from finance. */
static void check_role(const rec *r, size_t lineno)
{
    const char *want = "finance";
    const char *action = str_field(r, "action");
    if (strcmp(r->type, "sale") == 0 || strcmp(r->type, "return") == 0) {
        ck_assert_msg(strncmp(r->source, "dist-", 5) == 0, "line %zu: %s from %s", lineno, r->type,
                      r->source);
        return;
    }
    if (strcmp(r->type, "certification") == 0)
        want = "certsys";
    else if (strcmp(r->type, "claim") == 0 &&
             (strcmp(action, "submit") == 0 || strcmp(action, "cancel") == 0))
        want = "portal";
    ck_assert_msg(strcmp(r->source, want) == 0, "line %zu: %s %s from %s", lineno, r->type,
                  action ? action : "", r->source);
}

/* The event converts to MessagePack and passes the schema validation of
 * SPEC section 5 as the ledger would run it now. */
static void check_decodes(const rec *r, size_t lineno, int64_t now_ms)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tly_field_error fe = {{0}, {0}};
    tly_err e = tly_json_event_to_mp(r->ev, &sb, &fe);
    tly_event ev;
    if (e == TLY_OK)
        e = tly_event_decode(sb.data, sb.size, now_ms, &ev, &fe);
    ck_assert_msg(e == TLY_OK, "line %zu (%s %s): %s %s: %s", lineno, r->source, r->id,
                  tly_err_name(e), fe.field, fe.message);
    msgpack_sbuffer_destroy(&sb);
}

/* Trailing number of an id ("ING-S-0000042" → 42). */
static long id_number(const char *id)
{
    const char *dash = strrchr(id, '-');
    ck_assert_ptr_nonnull(dash);
    return strtol(dash + 1, NULL, 10);
}

/* Id bookkeeping across a data set: `seen` maps source → {id → line} and
 * `last` maps source(+S/R) → last id number. */
typedef struct id_state {
    json_t *seen, *last;
    size_t resends;
} id_state;

/* Ids are unique per source, except an exact resend of an earlier line;
 * original ids count up per source (and per sale/return). */
static void check_id(id_state *st, const rec *r, const char *line, size_t len, size_t lineno)
{
    json_t *per = json_object_get(st->seen, r->source);
    if (!per) {
        per = json_object();
        json_object_set_new(st->seen, r->source, per);
    }
    json_t *prev = json_object_get(per, r->id);
    if (prev) {
        ck_assert_msg(strlen(json_string_value(prev)) == len &&
                          memcmp(json_string_value(prev), line, len) == 0,
                      "line %zu: id %s of %s reused with other bytes", lineno, r->id, r->source);
        st->resends++;
        return;
    }
    json_object_set_new(per, r->id, json_stringn(line, len));
    char key[96];
    const char *kind = strncmp(r->source, "dist-", 5) == 0 ? strchr(r->id, '-') : "";
    snprintf(key, sizeof key, "%s%.3s", r->source, kind);
    long n = id_number(r->id);
    json_int_t last = json_integer_value(json_object_get(st->last, key));
    ck_assert_msg(n > last, "line %zu: id %s of %s not after %lld", lineno, r->id, r->source,
                  (long long)last);
    json_object_set_new(st->last, key, json_integer(n));
}

/* Calls fn on each line of buf. */
typedef void (*line_fn)(void *ctx, const rec *r, const char *line, size_t len, size_t lineno);

static void each_line(const char *buf, size_t len, line_fn fn, void *ctx)
{
    size_t lineno = 0;
    for (const char *p = buf; p < buf + len;) {
        const char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        ck_assert_msg(nl != NULL, "last line not terminated");
        size_t n = (size_t)(nl - p) + 1;
        rec r;
        parse_rec(p, n, ++lineno, &r);
        fn(ctx, &r, p, n, lineno);
        json_decref(r.root);
        p = nl + 1;
    }
}

typedef struct shape_ctx {
    id_state ids;
    int64_t now_ms, start_ms, end_ms;
    json_t *types, *kinds;
} shape_ctx;

static void shape_line(void *vctx, const rec *r, const char *line, size_t len, size_t lineno)
{
    shape_ctx *c = vctx;
    check_role(r, lineno);
    check_id(&c->ids, r, line, len, lineno);
    check_decodes(r, lineno, c->now_ms);
    ck_assert_msg(r->at >= c->start_ms && r->at < c->end_ms, "line %zu: at %lld outside span",
                  lineno, (long long)r->at);
    json_object_set_new(c->types, r->type, json_true());
    if (strcmp(r->type, "partner") == 0)
        json_object_set_new(c->kinds, str_field(r, "kind"), json_true());
}

static void shape_init(shape_ctx *c, const char *start, const char *end)
{
    memset(c, 0, sizeof *c);
    c->ids.seen = json_object();
    c->ids.last = json_object();
    c->types = json_object();
    c->kinds = json_object();
    c->now_ms = tly_now_ms();
    ck_assert_int_eq(tly_time_parse(start, strlen(start), &c->start_ms), TLY_OK);
    ck_assert_int_eq(tly_time_parse(end, strlen(end), &c->end_ms), TLY_OK);
}

static void shape_free(shape_ctx *c)
{
    json_decref(c->ids.seen);
    json_decref(c->ids.last);
    json_decref(c->types);
    json_decref(c->kinds);
}

START_TEST(default_set_shape)
{
    const char *args[] = {NULL};
    size_t len;
    char *out = gen("default", args, &len);
    shape_ctx c;
    shape_init(&c, "2025-01-01", "2026-07-01");
    each_line(out, len, shape_line, &c);
    static const char *const types[] = {"program", "partner", "sale",   "return", "certification",
                                        "claim",   "close",   "payout", "adjust"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        ck_assert_msg(json_object_get(c.types, types[i]), "no %s event", types[i]);
    static const char *const kinds[] = {"var", "msp",         "si",        "oem",
                                        "isv", "distributor", "consultant"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        ck_assert_msg(json_object_get(c.kinds, kinds[i]), "no %s partner", kinds[i]);
    ck_assert_uint_eq(c.ids.resends, 0);
    shape_free(&c);
    free(out);
}
END_TEST

/* --start and --months bound business time; records still decode. */
START_TEST(span_follows_start_and_months)
{
    const char *args[] = {"--start", "2024-03-01", "--months", "6", "--events",
                          "3000",    "--seed",     "11",       NULL};
    size_t len;
    char *out = gen("span", args, &len);
    shape_ctx c;
    shape_init(&c, "2024-03-01", "2024-09-01");
    each_line(out, len, shape_line, &c);
    ck_assert(json_object_get(c.types, "close") != NULL);
    shape_free(&c);
    free(out);
}
END_TEST

/* A start late in a month still spans whole months: 2019-11-30 plus one
 * month ends on 2019-12-30, not after one day (which once never finished). */
START_TEST(late_start_spans_whole_months)
{
    const char *args[] = {"--start", "2019-11-30", "--months", "1", "--events",
                          "3000",    "--seed",     "4",        NULL};
    size_t len;
    char *out = gen("late", args, &len);
    ck_assert_uint_eq(count_lines(out, len), 3000);
    shape_ctx c;
    shape_init(&c, "2019-11-30", "2019-12-30");
    each_line(out, len, shape_line, &c);
    shape_free(&c);
    free(out);
}
END_TEST

/* With --resend-pct, ids repeat only as exact resends, about P % of the
 * records are resends, and dropping them gives back the P = 0 output. */
START_TEST(resends_are_exact_and_only_added)
{
    const char *with[] = {"--seed", "5", "--events", "6000", "--resend-pct", "10", NULL};
    const char *without[] = {"--seed", "5", "--events", "6000", NULL};
    size_t w_len, o_len;
    char *w = gen("with", with, &w_len);
    char *o = gen("without", without, &o_len);
    shape_ctx c;
    shape_init(&c, "2025-01-01", "2026-07-01");
    each_line(w, w_len, shape_line, &c);
    ck_assert_msg(c.ids.resends >= 300 && c.ids.resends <= 900, "%zu resends", c.ids.resends);
    /* Rebuild the output without repeated lines and compare. */
    char *firsts = malloc(w_len + 1);
    size_t f_len = 0;
    json_t *seen = json_object();
    for (const char *p = w; p < w + w_len;) {
        const char *nl = memchr(p, '\n', (size_t)(w + w_len - p));
        size_t n = (size_t)(nl - p) + 1;
        char *key = strndup(p, n);
        if (!json_object_get(seen, key)) {
            json_object_set_new(seen, key, json_true());
            memcpy(firsts + f_len, p, n);
            f_len += n;
        }
        free(key);
        p = nl + 1;
    }
    ck_assert_uint_eq(f_len, o_len);
    ck_assert(memcmp(firsts, o, o_len) == 0);
    json_decref(seen);
    shape_free(&c);
    free(firsts);
    free(w);
    free(o);
}
END_TEST

/* ------------------------------------------- what the data exercises */

/* Things a default-size data set must contain, counted while walking it in
 * file order with a tiny model of the engine's bookkeeping. */
enum {
    X_HELD,         /* a sale before its partner's enrollment [E3] */
    X_NEVER,        /* a partner with sales that is never enrolled */
    X_LATE,         /* a sale in an already closed period [P2] */
    X_CURRENCY,     /* a sale in another currency than the program's */
    X_RET_PARTIAL,  /* returns: part of a sale */
    X_RET_OVER,     /* more than the sale [S8] */
    X_RET_UNKNOWN,  /* of a sale never seen from that source [S2] */
    X_RET_MISMATCH, /* naming another partner than the sale [S1] */
    X_EARNED,
    X_EXPIRED,
    X_REVOKED,
    X_SUBMIT,
    X_CANCEL,
    X_APPROVE,
    X_REJECT,
    X_PAY,
    X_APPROVE_PARTIAL, /* approved less than requested */
    X_PAY_PARTIAL,     /* paid less than approved */
    X_BUMP,            /* a program version above the last */
    X_STALE,           /* a version not above the last [G8] */
    X_CLOSE,           /* a close of the earliest open period */
    X_CLOSE_WRONG,     /* any other close [L1] */
    X_UNKNOWN_PROGRAM, /* enrollment or close naming no program [E2, L2] */
    X_PAYOUT,
    X_ADJ_MDF_UP,
    X_ADJ_MDF_DOWN,
    X_ADJ_REBATE_UP,
    X_ADJ_REBATE_DOWN,
    X_COUNT
};
static const char *const x_name[X_COUNT] = {
    "held sale",
    "never enrolled",
    "late sale",
    "currency mismatch",
    "partial return",
    "over-return",
    "unknown-sale return",
    "wrong-partner return",
    "earned",
    "expired",
    "revoked",
    "submit",
    "cancel",
    "approve",
    "reject",
    "pay",
    "partial approval",
    "partial payment",
    "version bump",
    "stale version",
    "close",
    "out-of-order close",
    "unknown program",
    "payout",
    "adjust mdf +",
    "adjust mdf -",
    "adjust rebate +",
    "adjust rebate -",
};

typedef struct model {
    json_t *programs;         /* name → {"currency","kind","open","version"} */
    json_t *partners;         /* partner → program name, once enrolled */
    json_t *unenrolled_sales; /* partner → true while it sells unenrolled */
    json_t *sales;            /* "source/id" → {"partner","amount"} */
    json_t *claims;           /* "partner/claim" → {"requested","approved"} */
    json_t *seen;             /* resends are skipped: line → true */
    size_t x[X_COUNT];
} model;

static json_int_t jint(json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static void model_program(model *m, const rec *r)
{
    const char *name = str_field(r, "program");
    json_t *p = json_object_get(m->programs, name);
    if (!p) {
        tly_period_kind kind =
            strcmp(str_field(r, "period"), "month") == 0 ? TLY_PERIOD_MONTH : TLY_PERIOD_QUARTER;
        p = json_pack("{s:s, s:i, s:I, s:I}", "currency", str_field(r, "currency"), "kind",
                      (int)kind, "open", (json_int_t)tly_period_of(kind, r->at), "version",
                      int_field(r, "version"));
        json_object_set_new(m->programs, name, p);
        return;
    }
    if (int_field(r, "version") <= jint(p, "version")) {
        m->x[X_STALE]++;
    } else if (strcmp(str_field(r, "currency"),
                      json_string_value(json_object_get(p, "currency"))) == 0) {
        m->x[X_BUMP]++;
        json_object_set_new(p, "version", json_integer(int_field(r, "version")));
    }
}

static void model_partner(model *m, const rec *r)
{
    const char *partner = str_field(r, "partner"), *program = str_field(r, "program");
    if (!json_object_get(m->programs, program)) {
        m->x[X_UNKNOWN_PROGRAM]++;
        return;
    }
    if (json_object_get(m->partners, partner))
        return;
    json_object_set_new(m->partners, partner, json_string(program));
    if (json_object_get(m->unenrolled_sales, partner)) {
        m->x[X_HELD]++;
        json_object_del(m->unenrolled_sales, partner);
    }
}

static json_t *program_of(model *m, const char *partner)
{
    json_t *name = json_object_get(m->partners, partner);
    return name ? json_object_get(m->programs, json_string_value(name)) : NULL;
}

static void model_sale(model *m, const rec *r)
{
    const char *partner = str_field(r, "partner");
    char key[160];
    snprintf(key, sizeof key, "%s/%s", r->source, r->id);
    json_object_set_new(
        m->sales, key,
        json_pack("{s:s, s:I}", "partner", partner, "amount", int_field(r, "amount")));
    json_t *p = program_of(m, partner);
    if (!p) {
        json_object_set_new(m->unenrolled_sales, partner, json_true());
        return;
    }
    if (strcmp(str_field(r, "currency"), json_string_value(json_object_get(p, "currency"))))
        m->x[X_CURRENCY]++;
    if (tly_period_of((tly_period_kind)jint(p, "kind"), r->at) < jint(p, "open"))
        m->x[X_LATE]++;
}

static void model_return(model *m, const rec *r)
{
    char key[160];
    snprintf(key, sizeof key, "%s/%s", r->source, str_field(r, "sale"));
    json_t *sale = json_object_get(m->sales, key);
    if (!sale)
        m->x[X_RET_UNKNOWN]++;
    else if (strcmp(json_string_value(json_object_get(sale, "partner")), str_field(r, "partner")) !=
             0)
        m->x[X_RET_MISMATCH]++;
    else if (int_field(r, "amount") > jint(sale, "amount"))
        m->x[X_RET_OVER]++;
    else if (int_field(r, "amount") < jint(sale, "amount"))
        m->x[X_RET_PARTIAL]++;
}

static void model_claim(model *m, const rec *r)
{
    const char *action = str_field(r, "action");
    char key[320];
    snprintf(key, sizeof key, "%s/%s", str_field(r, "partner"), str_field(r, "claim"));
    json_t *c = json_object_get(m->claims, key);
    json_int_t amount = int_field(r, "amount");
    static const char *const actions[] = {"submit", "cancel", "approve", "reject", "pay"};
    for (int i = 0; i < 5; i++)
        if (strcmp(action, actions[i]) == 0)
            m->x[X_SUBMIT + i]++;
    if (strcmp(action, "submit") == 0 && !c) {
        json_object_set_new(
            m->claims, key,
            json_pack("{s:I, s:I}", "requested", amount, "approved", (json_int_t)0));
    } else if (c && strcmp(action, "approve") == 0 && amount <= jint(c, "requested")) {
        m->x[X_APPROVE_PARTIAL] += amount < jint(c, "requested");
        json_object_set_new(c, "approved", json_integer(amount));
    } else if (c && strcmp(action, "pay") == 0) {
        m->x[X_PAY_PARTIAL] += amount < jint(c, "approved");
    }
}

static void model_close(model *m, const rec *r)
{
    json_t *p = json_object_get(m->programs, str_field(r, "program"));
    if (!p) {
        m->x[X_UNKNOWN_PROGRAM]++;
        return;
    }
    const char *text = str_field(r, "period");
    tly_period_kind kind;
    int32_t period;
    ck_assert_int_eq(tly_period_parse(text, strlen(text), &kind, &period), TLY_OK);
    if (period != jint(p, "open")) {
        m->x[X_CLOSE_WRONG]++;
        return;
    }
    m->x[X_CLOSE]++;
    json_object_set_new(p, "open", json_integer(period + 1));
}

static void model_other(model *m, const rec *r)
{
    if (strcmp(r->type, "certification") == 0) {
        const char *a = str_field(r, "action");
        m->x[strcmp(a, "earned") == 0    ? X_EARNED
             : strcmp(a, "expired") == 0 ? X_EXPIRED
                                         : X_REVOKED]++;
    } else if (strcmp(r->type, "payout") == 0) {
        m->x[X_PAYOUT]++;
    } else if (strcmp(r->type, "adjust") == 0) {
        bool mdf = strcmp(str_field(r, "account"), "mdf") == 0;
        bool up = int_field(r, "amount") > 0;
        m->x[mdf ? (up ? X_ADJ_MDF_UP : X_ADJ_MDF_DOWN)
                 : (up ? X_ADJ_REBATE_UP : X_ADJ_REBATE_DOWN)]++;
    }
}

static void model_line(void *vm, const rec *r, const char *line, size_t len, size_t lineno)
{
    model *m = vm;
    (void)lineno;
    char *key = strndup(line, len);
    bool resend = json_object_get(m->seen, key) != NULL;
    json_object_set_new(m->seen, key, json_true());
    free(key);
    if (resend)
        return;
    if (strcmp(r->type, "program") == 0)
        model_program(m, r);
    else if (strcmp(r->type, "partner") == 0)
        model_partner(m, r);
    else if (strcmp(r->type, "sale") == 0)
        model_sale(m, r);
    else if (strcmp(r->type, "return") == 0)
        model_return(m, r);
    else if (strcmp(r->type, "claim") == 0)
        model_claim(m, r);
    else if (strcmp(r->type, "close") == 0)
        model_close(m, r);
    else
        model_other(m, r);
}

/* Seeds of the default-size sets checked; the default seed first. */
static const char *const scenario_seeds[] = {"1", "2", "3"};

START_TEST(default_set_exercises_the_engine)
{
    const char *args[] = {"--seed", scenario_seeds[_i], "--resend-pct", "3", NULL};
    size_t len;
    char *out = gen("scenario", args, &len);
    model m = {json_object(),
               json_object(),
               json_object(),
               json_object(),
               json_object(),
               json_object(),
               {0}};
    each_line(out, len, model_line, &m);
    m.x[X_NEVER] = json_object_size(m.unenrolled_sales);
    for (int i = 0; i < X_COUNT; i++)
        ck_assert_msg(m.x[i] > 0, "seed %s: no %s in a default-size set", scenario_seeds[_i],
                      x_name[i]);
    /* Exceptions stay exceptional: most sales are clean and most closes in
     * order. */
    ck_assert_uint_lt(m.x[X_CURRENCY] * 50, json_object_size(m.sales));
    ck_assert_uint_lt(m.x[X_CLOSE_WRONG] * 5, m.x[X_CLOSE]);
    json_decref(m.programs);
    json_decref(m.partners);
    json_decref(m.unenrolled_sales);
    json_decref(m.sales);
    json_decref(m.claims);
    json_decref(m.seen);
    free(out);
}
END_TEST

static Suite *gen_suite(void)
{
    Suite *s = suite_create("gen");
    TCase *cli = tu_tcase(s, "cli", 0);
    tcase_add_checked_fixture(cli, setup, teardown);
    tcase_add_test(cli, help_exits_0);
    tcase_add_loop_test(cli, bad_flag_exits_2, 0, (int)(sizeof bad_args / sizeof bad_args[0]));
    tcase_add_test(cli, unwritable_out_exits_1);
    TCase *det = tu_tcase(s, "determinism", 120);
    tcase_add_checked_fixture(det, setup, teardown);
    tu_add_tests(det, TU_TESTS(same_seed_same_bytes, out_file_equals_stdout, different_seeds_differ,
                               events_count_respected));
    TCase *data = tu_tcase(s, "data", 300);
    tcase_add_checked_fixture(data, setup, teardown);
    tu_add_tests(data, TU_TESTS(default_set_shape, span_follows_start_and_months,
                                late_start_spans_whole_months, resends_are_exact_and_only_added));
    tcase_add_loop_test(data, default_set_exercises_the_engine, 0,
                        (int)(sizeof scenario_seeds / sizeof scenario_seeds[0]));
    return s;
}

int main(void)
{
    return tu_run_suite(gen_suite());
}
