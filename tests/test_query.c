/*
 * test_query.c — the query logic, the query service and the query CLI
 * (balance, rebate, tier, claims, liabilities, exceptions, status, wait).
 *
 * Fixture (built once): the seed101 vector appended to a real log
 * (tly_log_append, which drops the resends as duplicates) and folded by the
 * real engine into real view stores (tly_views_commit) twice:
 *   DATA/views/K-of-2: both shards at the head (3074);
 *   DATA/views/K-of-3: shard 2 stopped at seq 2000, the others at 3074,
 *                      for the [D8] "shards differ" answers and wait timeouts.
 * The expectations are the engine's own in-memory answers (tly_engine_view,
 * _liabilities, _exceptions), so these tests pin the store -> query -> CLI
 * path; tests/test_up.c compares the whole stack with the vector's answers.
 * Every command runs as a real `tally` process.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <lmdb.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "query_internal.h"
#include "testutil.h"
#include "tly_cli.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_log.h"
#include "tly_query.h"
#include "tly_views.h"
#include "tly_xkind.h"

#define LAG_SEQ 2000u
#define HEAD_SEQ 3074u
#define GOLDEN_PARTNER "adatum-distributor-543"

static char *g_data; /* the fixture's data directory */
static char g_views[1100];
static json_t *g_expect; /* {"partners": {P: {"balance": ...}}, "liabilities", "exceptions"} */

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */

/* The fixture is built before the runner starts, where Check's asserts
 * cannot report: these print the failing line and abort instead. */
#define FX_EQ(a, b)                                                                                \
    do {                                                                                           \
        long long fx_a_ = (long long)(a), fx_b_ = (long long)(b);                                  \
        if (fx_a_ != fx_b_) {                                                                      \
            fprintf(stderr, "fixture: %s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #a,      \
                    fx_a_, fx_b_);                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#define FX_NN(p) FX_EQ((p) != NULL, 1)

/* Appends the vector's events to DATA/log, one batch per 256 records. */
static void build_log(const char *data)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/log", data);
    tly_log *log = NULL;
    FX_EQ(tly_log_open(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    char *path = tu_vector("seed101-events.jsonl");
    FILE *f = fopen(path, "r");
    FX_NN(f);
    enum { CHUNK = 256 };
    json_t *lines[CHUNK];
    msgpack_sbuffer bufs[CHUNK];
    tly_log_item items[CHUNK];
    char line[65536];
    uint32_t n = 0;
    bool eof = false;
    while (!eof) {
        eof = !fgets(line, sizeof line, f);
        if (!eof) {
            lines[n] = json_loads(line, 0, NULL);
            FX_NN(lines[n]);
            msgpack_sbuffer_init(&bufs[n]);
            FX_EQ(tly_json_event_to_mp(json_object_get(lines[n], "event"), &bufs[n], NULL), TLY_OK);
            const char *src = json_string_value(json_object_get(lines[n], "source"));
            tly_ev_type t;
            items[n] = (tly_log_item){.source = {src, (uint32_t)strlen(src)},
                                      .event = (const uint8_t *)bufs[n].data,
                                      .event_len = bufs[n].size};
            FX_EQ(tly_event_peek_id(bufs[n].data, bufs[n].size, &t, &items[n].id), TLY_OK);
            n++;
        }
        if (n == CHUNK || (eof && n > 0)) {
            tly_log_group g = {0, n, false};
            FX_EQ(tly_log_append(log, tly_now_ms(), items, n, &g, 1), TLY_OK);
            for (uint32_t i = 0; i < n; i++) {
                FX_EQ(items[i].err, TLY_OK);
                msgpack_sbuffer_destroy(&bufs[i]);
                json_decref(lines[i]);
            }
            n = 0;
        }
    }
    fclose(f);
    free(path);
    uint64_t head;
    uint8_t hash[TLY_HASH_BYTES];
    FX_EQ(tly_log_head(log, &head, hash), TLY_OK);
    FX_EQ(head, HEAD_SEQ);
    tly_log_close(log);
}

/* Folds the log into shard k of n up to last_seq, commits it to the view
 * store, and returns the engine (caller frees). */
static tly_engine *fold_shard(const char *data, uint32_t k, uint32_t n, uint64_t last_seq)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/log", data);
    tly_log *log = NULL;
    FX_EQ(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    tly_engine *e = NULL;
    FX_EQ(tly_engine_new(k, n, &e), TLY_OK);
    tly_log_reader *rd = NULL;
    FX_EQ(tly_log_reader_open(log, 1, &rd), TLY_OK);
    tly_record rec;
    while (tly_log_reader_next(rd, &rec) == TLY_OK && rec.seq <= last_seq) {
        tly_event ev;
        FX_EQ(tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &ev, NULL), TLY_OK);
        FX_EQ(tly_engine_apply(e, &rec, &ev), TLY_OK);
    }
    tly_log_reader_close(rd);
    tly_log_close(log);
    tly_views *v = NULL;
    FX_EQ(tly_views_open(data, k, n, TLY_VIEWS_WRITE, &v), TLY_OK);
    FX_EQ(tly_views_commit(v, e), TLY_OK);
    tly_views_close(v);
    return e;
}

/* Adds shard e's answers to the expectations. */
static void collect(tly_engine *e)
{
    static const char *const names[] = {"balance", "rebate", "tier", "claims"};
    static const char views[] = {'b', 'r', 't', 'c'};
    json_t *partners = json_object_get(g_expect, "partners");
    json_t *ids = tly_engine_partners(e);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *p = json_object();
        for (int v = 0; v < 4; v++)
            json_object_set_new(p, names[v], tly_engine_view(e, views[v], json_string_value(id)));
        json_object_set_new(partners, json_string_value(id), p);
    }
    json_decref(ids);
    json_t *xs = tly_engine_exceptions(e);
    json_array_extend(json_object_get(g_expect, "exceptions"), xs);
    json_decref(xs);
    json_t *shares = tly_engine_liabilities(e);
    json_array_extend(json_object_get(g_expect, "liabilities"), shares);
    json_decref(shares);
}

static void build_fixture(void)
{
    g_data = tu_tmpdir();
    snprintf(g_views, sizeof g_views, "%s/views", g_data);
    build_log(g_data);
    g_expect = json_pack("{s:{}, s:[], s:[]}", "partners", "exceptions", "liabilities");
    for (uint32_t k = 0; k < 2; k++) {
        tly_engine *e = fold_shard(g_data, k, 2, HEAD_SEQ);
        collect(e);
        tly_engine_free(e);
    }
    for (uint32_t k = 0; k < 3; k++)
        tly_engine_free(fold_shard(g_data, k, 3, k == 2 ? LAG_SEQ : HEAD_SEQ));
}

/* ------------------------------------------------------------------------ */
/* Running tally                                                             */

typedef struct run_result {
    int code;
    char *out;
    char *err;
} run_result;

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `tally args...` (NULL-terminated) and captures stdout and stderr. */
static run_result tally_v(const char *first, va_list ap)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    argv[n] = NULL;
    char out[1200], err[1200];
    snprintf(err, sizeof err, "%s/err.%d.txt", g_data, (int)getpid());
    snprintf(out, sizeof out, "%s/out.%d.txt", g_data, (int)getpid());
    run_result r;
    r.code = tu_run(argv, NULL, out, err);
    r.out = tu_read_file(out, NULL);
    r.err = tu_read_file(err, NULL);
    return r;
}

static run_result tally(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    run_result r = tally_v(first, ap);
    va_end(ap);
    return r;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Parses the one JSON line a --json command prints. */
static json_t *parse_out(const run_result *r)
{
    ck_assert_msg(r->code == 0, "exit %d, stderr: %s", r->code, r->err);
    ck_assert_uint_eq(count_lines(r->out), 1);
    json_error_t je;
    json_t *j = json_loads(r->out, 0, &je);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", r->out, je.text);
    return j;
}

static void assert_json_eq(const json_t *got, const json_t *want, const char *what)
{
    if (json_equal((json_t *)got, (json_t *)want))
        return;
    char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
    ck_abort_msg("%s:\n got  %s\n want %s", what, g, w);
}

/* ------------------------------------------------------------------------ */
/* Partner views                                                             */

/* Every partner, every view, from the stores: equal to the engine's own
 * answer, seq = the shard's checkpoint [D8]. */
START_TEST(test_views_every_partner)
{
    static const char *const names[] = {"balance", "rebate", "tier", "claims"};
    json_t *partners = json_object_get(g_expect, "partners");
    ck_assert_uint_ge(json_object_size(partners), 19);
    const char *id;
    json_t *want;
    json_object_foreach(partners, id, want)
    {
        for (int v = 0; v < 4; v++) {
            run_result r = tally(names[v], id, "--views", g_views, "--shards", "2", "--json", NULL);
            json_t *got = parse_out(&r);
            char what[256];
            snprintf(what, sizeof what, "%s %s", names[v], id);
            assert_json_eq(got, json_object_get(want, names[v]), what);
            ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), HEAD_SEQ);
            json_decref(got);
            run_free(&r);
        }
    }
}
END_TEST

/* Keys in SPEC section 8 order, "seq" where the SPEC puts it. */
START_TEST(test_json_key_order)
{
    static const char *const want[] = {
        "partner", "program", "currency", "tier", "seq",     "accrued",   "clawed_back", "adjusted",
        "expired", "pending", "approved", "paid", "deficit", "available", "buckets"};
    run_result r =
        tally("balance", GOLDEN_PARTNER, "--views", g_views, "--shards", "2", "--json", NULL);
    json_t *got = parse_out(&r);
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(got, key, v)
    {
        ck_assert_uint_lt(i, sizeof want / sizeof want[0]);
        ck_assert_str_eq(key, want[i]);
        i++;
    }
    ck_assert_uint_eq(i, sizeof want / sizeof want[0]);
    /* nested: a bucket is {"period","remaining","expires_after"} */
    json_t *b = json_array_get(json_object_get(got, "buckets"), 0);
    void *it = json_object_iter(b);
    ck_assert_str_eq(json_object_iter_key(it), "period");
    ck_assert_str_eq(json_object_iter_key(json_object_iter_next(b, it)), "remaining");
    ck_assert_ptr_nonnull(strstr(r.out, "{\"partner\":\"" GOLDEN_PARTNER "\",\"program\":"));
    json_decref(got);
    run_free(&r);
}
END_TEST

/* [D15] An unknown partner: exit 1, one line on stderr, nothing on stdout. */
START_TEST(test_unknown_partner)
{
    static const char *const names[] = {"balance", "rebate", "tier", "claims"};
    for (int v = 0; v < 4; v++) {
        for (int json = 0; json < 2; json++) {
            run_result r = tally(names[v], "no-such-partner", "--views", g_views, "--shards", "2",
                                 json ? "--json" : NULL, NULL);
            ck_assert_int_eq(r.code, 1);
            ck_assert_uint_eq(count_lines(r.err), 1);
            ck_assert_ptr_nonnull(strstr(r.err, "unknown partner 'no-such-partner'"));
            ck_assert_str_eq(r.out, "");
            run_free(&r);
        }
    }
}
END_TEST

/* Human tables of one partner, compared with golden files. With
 * TALLY_UPDATE_GOLDEN set the files are rewritten instead (review the diff). */
START_TEST(test_human_golden)
{
    static const char *const names[] = {"balance", "rebate", "tier", "claims"};
    const char *src = getenv("TALLY_SOURCE_DIR");
    for (int v = 0; v < 4; v++) {
        run_result r = tally(names[v], GOLDEN_PARTNER, "--views", g_views, "--shards", "2", NULL);
        ck_assert_msg(r.code == 0, "%s: %s", names[v], r.err);
        ck_assert_ptr_null(strchr(r.out, '\033')); /* no decoration off a terminal */
        char path[1200];
        snprintf(path, sizeof path, "%s/tests/golden/%s-%s.txt", src ? src : ".", names[v],
                 GOLDEN_PARTNER);
        if (getenv("TALLY_UPDATE_GOLDEN"))
            ck_assert(tu_write_file(path, r.out, strlen(r.out)));
        char *golden = tu_read_file(path, NULL);
        ck_assert_msg(golden != NULL, "missing golden file %s", path);
        ck_assert_str_eq(r.out, golden);
        free(golden);
        run_free(&r);
    }
}
END_TEST

/* Money is decimal in the currency's digits: the 2026-Q1 bucket of 145265
 * minor units shows as 1,452.65; the header names the currency. */
START_TEST(test_human_money)
{
    run_result r = tally("balance", GOLDEN_PARTNER, "--views", g_views, "--shards", "2", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "1,452.65"));
    ck_assert_ptr_nonnull(strstr(r.out, "Currency  USD"));
    run_free(&r);
    char buf[TLY_QUERY_MONEY_CHARS];
    tly_query_format_money(INT64_MIN, 2, buf, sizeof buf);
    ck_assert_str_eq(buf, "-92,233,720,368,547,758.08");
    tly_query_format_money(-5, 2, buf, sizeof buf);
    ck_assert_str_eq(buf, "-0.05");
    tly_query_format_money(1234567, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "1,234,567");
    tly_query_format_money(1234567, 3, buf, sizeof buf);
    ck_assert_str_eq(buf, "1,234.567");
    ck_assert_int_eq(tly_query_currency_exponent("JPY"), 0);
    ck_assert_int_eq(tly_query_currency_exponent("KWD"), 3);
    ck_assert_int_eq(tly_query_currency_exponent("EUR"), 2);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Cross-shard answers                                                       */

/* Liabilities: the sum over shards of each program's share. */
/* The fixture's liabilities: each program's shares of all shards summed,
 * {"program": {...}} (new reference). */
static json_t *expected_liabilities(void)
{
    json_t *want = json_object();
    size_t i;
    json_t *share;
    json_array_foreach(json_object_get(g_expect, "liabilities"), i, share)
    {
        const char *prog = json_string_value(json_object_get(share, "program"));
        json_t *acc = json_object_get(want, prog);
        if (!acc) {
            json_object_set_new(want, prog, json_deep_copy(share));
            continue;
        }
        const char *key;
        json_t *v;
        json_object_foreach(share, key, v)
        {
            if (json_is_integer(v))
                json_object_set_new(acc, key,
                                    json_integer(json_integer_value(v) +
                                                 json_integer_value(json_object_get(acc, key))));
        }
    }
    return want;
}

START_TEST(test_liabilities_sum)
{
    json_t *want = expected_liabilities();
    size_t i;
    run_result r = tally("liabilities", "--views", g_views, "--shards", "2", "--json", NULL);
    json_t *got = parse_out(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), HEAD_SEQ);
    ck_assert_ptr_null(json_object_get(got, "shards_differ"));
    json_t *progs = json_object_get(got, "programs");
    ck_assert_uint_eq(json_array_size(progs), json_object_size(want));
    json_t *p;
    json_array_foreach(progs, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "program"));
        assert_json_eq(p, json_object_get(want, name), name);
    }
    /* programs are listed by name */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(progs, 0), "program")),
                     "apex");
    json_decref(got);
    json_decref(want);
    run_free(&r);
}
END_TEST

/* `tally summary --json` over a data directory holding one 2-shard set: its
 * figures are those of the views (liabilities summed, every exception
 * counted by kind, tiers counted, partners ranked by available MDF). */
/* tally summary's tiers and top-5 ranking, against every partner's balance
 * in the expected views. */
static void assert_summary_tiers(json_t *got)
{
    json_t *tiers = json_object();
    json_int_t best = INT64_MIN;
    const char *id;
    json_t *views;
    json_object_foreach(json_object_get(g_expect, "partners"), id, views)
    {
        json_t *b = json_object_get(views, "balance");
        const char *prog = json_string_value(json_object_get(b, "program"));
        const char *tier = json_string_value(json_object_get(b, "tier"));
        json_t *t = json_object_get(tiers, prog);
        if (!t)
            json_object_set_new(tiers, prog, t = json_object());
        json_t *c = json_object_get(t, tier);
        json_object_set_new(t, tier, json_integer(c ? json_integer_value(c) + 1 : 1));
        json_int_t av = json_integer_value(json_object_get(b, "available"));
        best = av > best ? av : best;
    }
    assert_json_eq(json_object_get(got, "tiers"), tiers, "tier distribution");
    json_decref(tiers);
    json_t *top = json_object_get(got, "top");
    ck_assert_uint_eq(json_array_size(top), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(top, 0), "available")),
                     best);
    for (size_t i = 1; i < json_array_size(top); i++)
        ck_assert_int_ge(
            json_integer_value(json_object_get(json_array_get(top, i - 1), "available")),
            json_integer_value(json_object_get(json_array_get(top, i), "available")));
}

START_TEST(test_summary)
{
    char *d = tu_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "ln -s '%s/log' '%s/log' && mkdir '%s/views' && cp -r '%s/0-of-2' '%s/1-of-2' "
             "'%s/views/'",
             g_data, d, d, g_views, g_views, d);
    ck_assert_int_eq(system(cmd), 0);
    run_result r = tally("summary", "--data", d, "--json", "--top", "5", NULL);
    json_t *got = parse_out(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), HEAD_SEQ);
    /* liabilities */
    json_t *want = expected_liabilities();
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(got, "liabilities"), i, p)
        assert_json_eq(p, json_object_get(want, json_string_value(json_object_get(p, "program"))),
                       "summary liabilities");
    ck_assert_uint_eq(json_array_size(json_object_get(got, "liabilities")), json_object_size(want));
    json_decref(want);
    /* exceptions by kind */
    json_t *kinds = json_object();
    json_t *x;
    json_array_foreach(json_object_get(g_expect, "exceptions"), i, x)
    {
        const char *k = json_string_value(json_object_get(x, "kind"));
        json_t *c = json_object_get(kinds, k);
        json_object_set_new(kinds, k, json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    json_t *exc = json_object_get(got, "exceptions");
    ck_assert_int_eq(json_integer_value(json_object_get(exc, "total")),
                     (json_int_t)json_array_size(json_object_get(g_expect, "exceptions")));
    assert_json_eq(json_object_get(exc, "by_kind"), kinds, "exceptions by kind");
    json_decref(kinds);
    assert_summary_tiers(got);
    json_decref(got);
    run_free(&r);
    /* The human report, and no views at all: exit 1 with one line. */
    r = tally("summary", "--data", d, NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "Tally finance summary, as of log position 3074"));
    run_free(&r);
    char *empty = tu_tmpdir();
    r = tally("summary", "--data", empty, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_uint_eq(count_lines(r.err), 1);
    run_free(&r);
    tu_rmtree(empty);
    tu_rmtree(d);
}
END_TEST

static int cmp_exc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "seq"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "seq"));
    return x < y ? -1 : x > y;
}

/* Exceptions: every shard's, merged in log order; the same (seq, kind,
 * partner) list as the vector [D16]. */
START_TEST(test_exceptions_merged)
{
    run_result r = tally("exceptions", "--views", g_views, "--shards", "2", "--json", NULL);
    json_t *got = parse_out(&r);
    json_t *xs = json_object_get(got, "exceptions");
    json_t *want = json_object_get(g_expect, "exceptions");
    ck_assert_uint_eq(json_array_size(xs), json_array_size(want));
    size_t n = json_array_size(xs);
    json_t **sorted = calloc(n, sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_array_get(want, i);
    qsort(sorted, n, sizeof *sorted, cmp_exc);
    char *vp = tu_vector("seed101-expected.json");
    json_t *vec = json_load_file(vp, 0, NULL);
    json_t *vx = json_object_get(json_object_get(vec, "exceptions"), "exceptions");
    ck_assert_uint_eq(json_array_size(vx), n);
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(xs, i), *v = json_array_get(vx, i);
        ck_assert_int_eq(json_integer_value(json_object_get(g, "seq")),
                         json_integer_value(json_object_get(sorted[i], "seq")));
        ck_assert(json_equal(json_object_get(g, "seq"), json_object_get(v, "seq")));
        ck_assert(json_equal(json_object_get(g, "kind"), json_object_get(v, "kind")));
        ck_assert(json_equal(json_object_get(g, "partner"), json_object_get(v, "partner")));
    }
    free(sorted);
    free(vp);
    json_decref(vec);
    json_decref(got);
    run_free(&r);
}
END_TEST

/* Filters: --partner, --kind and --from-seq select from the full list. */
START_TEST(test_exceptions_filters)
{
    run_result all = tally("exceptions", "--views", g_views, "--shards", "2", "--json", NULL);
    json_t *full = parse_out(&all);
    run_result r =
        tally("exceptions", "--views", g_views, "--shards", "2", "--json", "--kind", "held",
              "--partner", "wideworld-consultant-639", "--from-seq", "100", NULL);
    json_t *got = parse_out(&r);
    size_t want = 0, i;
    json_t *x;
    json_array_foreach(json_object_get(full, "exceptions"), i, x)
    {
        want += strcmp(json_string_value(json_object_get(x, "kind")), "held") == 0 &&
                json_is_string(json_object_get(x, "partner")) &&
                strcmp(json_string_value(json_object_get(x, "partner")),
                       "wideworld-consultant-639") == 0 &&
                json_integer_value(json_object_get(x, "seq")) >= 100;
    }
    ck_assert_uint_gt(want, 0);
    ck_assert_uint_eq(json_array_size(json_object_get(got, "exceptions")), want);
    json_array_foreach(json_object_get(got, "exceptions"), i, x)
    {
        ck_assert_str_eq(json_string_value(json_object_get(x, "kind")), "held");
        ck_assert_int_ge(json_integer_value(json_object_get(x, "seq")), 100);
    }
    json_decref(full);
    json_decref(got);
    run_free(&all);
    run_free(&r);
}
END_TEST

/* [D8] Shards at different checkpoints: seq is the lowest, and the answer
 * says so ("shards_differ", and a note in the table). */
START_TEST(test_shards_differ)
{
    run_result r = tally("liabilities", "--views", g_views, "--shards", "3", "--json", NULL);
    json_t *got = parse_out(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), LAG_SEQ);
    ck_assert(json_is_true(json_object_get(got, "shards_differ")));
    json_decref(got);
    run_free(&r);
    r = tally("exceptions", "--views", g_views, "--shards", "3", "--json", NULL);
    got = parse_out(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), LAG_SEQ);
    ck_assert(json_is_true(json_object_get(got, "shards_differ")));
    json_decref(got);
    run_free(&r);
    r = tally("liabilities", "--views", g_views, "--shards", "3", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "Note: the shards had applied different log positions"));
    run_free(&r);
    r = tally("liabilities", "--views", g_views, "--shards", "2", NULL);
    ck_assert_ptr_null(strstr(r.out, "Note:"));
    run_free(&r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* status and wait                                                           */

static char g_dead_ep[64]; /* nothing listens here */

START_TEST(test_status_from_data)
{
    run_result r =
        tally("status", "--data", g_data, "--shards", "3", "--query", g_dead_ep, "--json", NULL);
    json_t *got = parse_out(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(got, "head")), HEAD_SEQ);
    ck_assert_str_eq(json_string_value(json_object_get(got, "source")), "data");
    json_t *shards = json_object_get(got, "shards");
    ck_assert_uint_eq(json_array_size(shards), 3);
    json_t *s2 = json_array_get(shards, 2);
    ck_assert_str_eq(json_string_value(json_object_get(s2, "shard")), "2/3");
    ck_assert_int_eq(json_integer_value(json_object_get(s2, "checkpoint")), LAG_SEQ);
    ck_assert_int_eq(json_integer_value(json_object_get(s2, "lag")), HEAD_SEQ - LAG_SEQ);
    json_decref(got);
    run_free(&r);
    r = tally("status", "--data", g_data, "--shards", "3", "--query", g_dead_ep, NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "Ledger head  3074"));
    ck_assert_ptr_nonnull(strstr(r.out, "query service not reachable"));
    ck_assert_ptr_nonnull(strstr(r.out, "2/3             2000          1074"));
    run_free(&r);
}
END_TEST

/* [D9] wait succeeds at once when every shard is there, and times out with
 * exit 1 and one clear line when one is behind. */
START_TEST(test_wait)
{
    run_result r = tally("wait", "--seq", "2000", "--data", g_data, "--shards", "3", "--query",
                         g_dead_ep, "--timeout", "5", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    run_free(&r);
    r = tally("wait", "--seq", "2001", "--data", g_data, "--shards", "3", "--query", g_dead_ep,
              "--timeout", "1", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_uint_eq(count_lines(r.err), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "timed out after 1 s waiting for seq 2001"));
    ck_assert_ptr_nonnull(strstr(r.err, "shard 2/3 is at 2000"));
    run_free(&r);
    r = tally("wait", "--data", g_data, NULL);
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The service                                                               */

static pid_t start_service(char *ep, size_t cap, const char *shards)
{
    tu_endpoint(ep, cap);
    char log[1200];
    snprintf(log, sizeof log, "%s/query.%d.log", g_data, (int)getpid());
    char *const argv[] = {(char *)tu_tally(), "query",        "--data", g_data, "--query", ep,
                          "--shards",         (char *)shards, NULL};
    pid_t pid = tu_spawn(argv, log);
    ck_assert(tu_wait_listening(ep, 10000));
    return pid;
}

/* The CLI through the service answers as the stores do. */
START_TEST(test_service_answers)
{
    char ep[64];
    pid_t pid = start_service(ep, sizeof ep, "2");
    json_t *partners = json_object_get(g_expect, "partners");
    const char *id;
    json_t *want;
    json_object_foreach(partners, id, want)
    {
        run_result r = tally("balance", id, "--query", ep, "--json", NULL);
        json_t *got = parse_out(&r);
        assert_json_eq(got, json_object_get(want, "balance"), id);
        json_decref(got);
        run_free(&r);
    }
    run_result r = tally("claims", "nobody", "--query", ep, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_uint_eq(count_lines(r.err), 1);
    run_free(&r);
    r = tally("status", "--query", ep, "--json", NULL);
    json_t *st = parse_out(&r);
    ck_assert_str_eq(json_string_value(json_object_get(st, "source")), "service");
    ck_assert_int_eq(json_integer_value(json_object_get(st, "head")), HEAD_SEQ);
    json_decref(st);
    run_free(&r);
    r = tally("wait", "--seq", "3074", "--query", ep, "--timeout", "5", NULL);
    ck_assert_int_eq(r.code, 0);
    run_free(&r);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
}
END_TEST

/* Sends one request on a DEALER: `empty` empty envelope frames, then the
 * balance query of partner as the body. */
static void send_balance(void *sock, const char *partner, uint32_t empty)
{
    for (uint32_t i = 0; i < empty; i++)
        ck_assert_int_eq(zmq_send(sock, "", 0, ZMQ_SNDMORE), 0);
    json_t *req = json_pack("{s:s, s:s}", "q", "balance", "partner", partner);
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    ck_assert_int_eq(tly_query_pack(req, &body), TLY_OK);
    ck_assert_int_eq(zmq_send(sock, body.data, body.size, 0), (int)body.size);
    msgpack_sbuffer_destroy(&body);
    json_decref(req);
}

/* Many requests in flight from one client, more than one wake-up's drain
 * (TLY_QUERY_DRAIN_MAX): the service answers a drain's requests first and
 * then sends their replies together, and each reply still comes back in
 * the order asked, with the envelope it came with (one empty frame, as a
 * REQ socket sends, on every third). A request with one envelope frame
 * too many (TLY_QUERY_ENVELOPE_FRAMES_MAX) among them gets no reply and
 * takes no other's; one with exactly the most frames gets its answer. */
START_TEST(test_service_drain)
{
    char ep[64];
    pid_t pid = start_service(ep, sizeof ep, "2");
    json_t *partners = json_object_get(g_expect, "partners");
    const char *ids[TLY_QUERY_DRAIN_MAX * 2 + 1];
    const uint32_t n = sizeof ids / sizeof ids[0];
    uint32_t known = 0;
    const char *id;
    json_t *want;
    json_object_foreach(partners, id, want) ids[known++ % n] = id;
    ck_assert_uint_gt(known, 0);
    for (uint32_t i = known; i < n; i++)
        ids[i] = ids[i % known];
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(sock, ep), 0);
    for (uint32_t i = 0; i < n; i++) {
        if (i == n / 2) /* dropped: the router's frame and this many more */
            send_balance(sock, ids[i], TLY_QUERY_ENVELOPE_FRAMES_MAX);
        send_balance(sock, ids[i], i == n - 1 ? TLY_QUERY_ENVELOPE_FRAMES_MAX - 1 : i % 3 == 0);
    }
    int timeout = 10000;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t empty = i == n - 1 ? TLY_QUERY_ENVELOPE_FRAMES_MAX - 1 : i % 3 == 0;
        for (uint32_t f = 0; f < empty; f++) {
            char b[8];
            ck_assert_int_eq(zmq_recv(sock, b, sizeof b, 0), 0);
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
        ck_assert(!zmq_msg_more(&m));
        json_t *reply = tly_json_from_mp(zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
        const char *got = json_string_value(json_object_get(reply, "partner"));
        ck_assert_msg(got != NULL && strcmp(got, ids[i]) == 0, "reply %u: %s for %s", i,
                      got ? got : "(none)", ids[i]);
        json_decref(reply);
    }
    timeout = 200;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char b[8];
    ck_assert_int_eq(zmq_recv(sock, b, sizeof b, 0), -1); /* nothing for the dropped one */
    zmq_close(sock);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
}
END_TEST

static json_t *call(const char *ep, const char *req_text)
{
    json_t *req = json_loads(req_text, 0, NULL);
    json_t *reply = NULL;
    ck_assert_int_eq(tly_query_call(ep, req, 5000, &reply), TLY_OK);
    json_decref(req);
    return reply;
}

static void assert_error(const char *ep, const char *req, const char *code, const char *field)
{
    json_t *r = call(ep, req);
    ck_assert_msg(json_is_string(json_object_get(r, "error")), "%s: no error", req);
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), code);
    if (field)
        ck_assert_str_eq(json_string_value(json_object_get(r, "field")), field);
    json_decref(r);
}

/* Bad requests get error replies with stable codes; the service lives on. */
START_TEST(test_service_bad_requests)
{
    char ep[64];
    pid_t pid = start_service(ep, sizeof ep, "2");
    assert_error(ep, "{}", "missing_field", "q");
    assert_error(ep, "{\"q\": 7}", "bad_field", "q");
    assert_error(ep, "{\"q\": \"bogus\"}", "bad_field", "q");
    assert_error(ep, "{\"q\": \"balance\"}", "missing_field", "partner");
    assert_error(ep, "{\"q\": \"balance\", \"partner\": 3}", "bad_field", "partner");
    assert_error(ep, "{\"q\": \"balance\", \"partner\": \"\"}", "bad_field", "partner");
    assert_error(ep, "{\"q\": \"balance\", \"partner\": \"zz\"}", "not_found", "partner");
    assert_error(ep, "{\"q\": \"exceptions\", \"from_seq\": -1}", "bad_field", "from_seq");
    /* not MessagePack at all */
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    ck_assert_int_eq(zmq_send(s, "\xc1", 1, 0), 1);
    char buf[512];
    int n = zmq_recv(s, buf, sizeof buf, 0);
    ck_assert_int_gt(n, 0);
    json_t *r = tly_json_from_mp(buf, (size_t)n);
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "malformed");
    json_decref(r);
    zmq_close(s);
    zmq_ctx_term(ctx);
    json_t *ok = call(ep, "{\"q\": \"liabilities\"}");
    ck_assert_int_eq(json_integer_value(json_object_get(ok, "seq")), HEAD_SEQ);
    json_decref(ok);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
}
END_TEST

/* A query of exactly len bytes: {"q": "liabilities", "pad": str} (unknown
 * keys are ignored, so only the size differs). */
static void sized_query(msgpack_sbuffer *sb, size_t len)
{
    size_t pad = len - 64;
    for (int pass = 0; pass < 2; pass++) {
        msgpack_sbuffer_clear(sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "q", 1);
        msgpack_pack_str_with_body(&pk, "liabilities", 11);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_str(&pk, pad);
        char *body = malloc(pad);
        memset(body, 'x', pad);
        msgpack_pack_str_body(&pk, body, pad);
        free(body);
        pad += len - sb->size; /* the str header keeps its size */
    }
    ck_assert_uint_eq(sb->size, len);
}

/* Sends one frame of len bytes on a fresh DEALER and returns the reply, or
 * NULL when none comes within timeout_ms. */
static json_t *raw_query(const char *ep, size_t len, int timeout_ms)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sized_query(&sb, len);
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    ck_assert_int_eq(zmq_send(s, sb.data, sb.size, 0), (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    json_t *r = NULL;
    if (zmq_poll(&it, 1, timeout_ms) == 1) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, s, 0), 0);
        r = tly_json_from_mp(zmq_msg_data(&m), zmq_msg_size(&m));
        ck_assert_ptr_nonnull(r);
        zmq_msg_close(&m);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return r;
}

/* How long a request the service must not answer is given: only a missing
 * answer passes, so a short wait cannot turn a failure into a pass. */
#define QT_SILENCE_MS 1500

/* Request size at its edges through a real `tally query`: exactly
 * TLY_QUERY_REQUEST_BYTES_MAX is answered, one byte more is too_large, and
 * so is anything up to TLY_QUERY_FRAME_BYTES_HARD_MAX; beyond that ZeroMQ
 * drops the frame unanswered and the service goes on. */
START_TEST(test_service_request_size)
{
    char ep[64];
    pid_t pid = start_service(ep, sizeof ep, "2");
    json_t *r = raw_query(ep, TLY_QUERY_REQUEST_BYTES_MAX, 5000);
    ck_assert_msg(r && !json_object_get(r, "error"), "a request of the largest size was refused");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), HEAD_SEQ);
    json_decref(r);
    const size_t over[] = {TLY_QUERY_REQUEST_BYTES_MAX + 1, TLY_QUERY_FRAME_BYTES_HARD_MAX};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        r = raw_query(ep, over[i], 5000);
        ck_assert_msg(r != NULL, "no answer to a request of %zu bytes", over[i]);
        ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "too_large");
        const char *msg = json_string_value(json_object_get(r, "message"));
        ck_assert_ptr_nonnull(msg);
        ck_assert_ptr_nonnull(strstr(msg, "65536"));
        json_decref(r);
    }
    r = raw_query(ep, (size_t)TLY_QUERY_FRAME_BYTES_HARD_MAX + 1, QT_SILENCE_MS);
    ck_assert_msg(r == NULL, "a frame over the hard maximum was answered");
    r = raw_query(ep, 256, 5000);
    ck_assert_msg(r && json_integer_value(json_object_get(r, "seq")) == HEAD_SEQ,
                  "the service stopped answering after an oversized frame");
    json_decref(r);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Round-trip latency of balance queries over loopback, printed for the
 * record (no timing assertion: machines differ); every reply is checked. */
START_TEST(test_service_latency)
{
    enum { SAMPLES = 5000 };
    char ep[64];
    pid_t pid = start_service(ep, sizeof ep, "2");
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    json_t *req = json_pack("{s:s, s:s}", "q", "balance", "partner", GOLDEN_PARTNER);
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    ck_assert_int_eq(tly_query_pack(req, &body), TLY_OK);
    static uint64_t ns[SAMPLES];
    static char buf[65536];
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t t0 = tly_mono_ns();
        ck_assert_int_eq(zmq_send(s, body.data, body.size, 0), (int)body.size);
        int n = zmq_recv(s, buf, sizeof buf, 0);
        ns[i] = tly_mono_ns() - t0;
        ck_assert_int_gt(n, 100);
        json_t *reply = tly_json_from_mp(buf, (size_t)n);
        ck_assert(json_is_integer(json_object_get(reply, "available")));
        json_decref(reply);
    }
    qsort(ns, SAMPLES, sizeof ns[0], cmp_u64);
    printf("query latency (balance, loopback round trip, %d samples): p50 %llu us, p99 %llu us, "
           "max %llu us\n",
           SAMPLES, (unsigned long long)ns[SAMPLES / 2] / 1000,
           (unsigned long long)ns[SAMPLES * 99 / 100] / 1000,
           (unsigned long long)ns[SAMPLES - 1] / 1000);
    msgpack_sbuffer_destroy(&body);
    /* The service's own work per request (answer + encode), in process:
     * what remains of the round trip is ZeroMQ and the scheduler. */
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(g_views, NULL, 2, &store), TLY_OK);
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t t0 = tly_mono_ns();
        json_t *reply = NULL;
        ck_assert_int_eq(tly_query_answer(store, req, &reply), TLY_OK);
        msgpack_sbuffer_init(&body);
        ck_assert_int_eq(tly_query_pack(reply, &body), TLY_OK);
        ns[i] = tly_mono_ns() - t0;
        ck_assert(json_is_integer(json_object_get(reply, "available")));
        msgpack_sbuffer_destroy(&body);
        json_decref(reply);
    }
    tly_query_store_close(store);
    qsort(ns, SAMPLES, sizeof ns[0], cmp_u64);
    printf("query work (balance, answer + encode in process): p50 %llu us, p99 %llu us\n",
           (unsigned long long)ns[SAMPLES / 2] / 1000,
           (unsigned long long)ns[SAMPLES * 99 / 100] / 1000);
    json_decref(req);
    zmq_close(s);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
}
END_TEST

/* The service may start before the consumers: it answers "unavailable"
 * until the stores exist, then picks them up without a restart. */
START_TEST(test_service_before_stores)
{
    char *data = tu_tmpdir();
    char ep[64];
    tu_endpoint(ep, sizeof ep);
    char *const argv[] = {(char *)tu_tally(), "query", "--data", data, "--query", ep,
                          "--shards",         "1",     NULL};
    pid_t pid = tu_spawn(argv, NULL);
    ck_assert(tu_wait_listening(ep, 10000));
    assert_error(ep, "{\"q\": \"liabilities\"}", "unavailable", NULL);
    tly_engine *e = NULL;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    tly_views *v = NULL;
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_WRITE, &v), TLY_OK);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    tly_views_close(v);
    tly_engine_free(e);
    json_t *r = call(ep, "{\"q\": \"liabilities\"}");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), 0);
    ck_assert_uint_eq(json_array_size(json_object_get(r, "programs")), 0);
    json_decref(r);
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
    tu_rmtree(data);
}
END_TEST

/* A new one-shard store under data (an empty engine's commit), opened
 * straight through LMDB to put keys in the layout of tly_engine.h;
 * raw_store_commit commits and closes it. */
typedef struct raw_store {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw_store;

static void raw_store_open(const char *data, raw_store *rs)
{
    tly_views *v = NULL;
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_WRITE, &v), TLY_OK);
    tly_engine *e = NULL;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    tly_engine_free(e);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", tly_views_dir(v));
    tly_views_close(v);
    ck_assert_int_eq(mdb_env_create(&rs->env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(rs->env, 8), 0);
    ck_assert_int_eq(mdb_env_open(rs->env, dir, 0, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(rs->env, NULL, 0, &rs->txn), 0);
    ck_assert_int_eq(mdb_dbi_open(rs->txn, "views", 0, &rs->dbi), 0);
}

static void raw_put(raw_store *rs, const void *key, size_t klen, const char *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, d = {vlen, (void *)val};
    ck_assert_int_eq(mdb_put(rs->txn, rs->dbi, &k, &d, 0), 0);
}

static void raw_store_commit(raw_store *rs)
{
    ck_assert_int_eq(mdb_txn_commit(rs->txn), 0);
    mdb_env_close(rs->env);
}

/* Writes a one-shard store whose "X/" keys hold `count` exceptions, two per
 * seq (n = 0, 1) from seq 1. */
static void write_exceptions(const char *data, uint32_t count)
{
    raw_store rs;
    raw_store_open(data, &rs);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t seq = 1 + i / 2;
        uint8_t key[14] = {'X', '/'};
        for (int b = 0; b < 8; b++)
            key[2 + b] = (uint8_t)(seq >> (56 - 8 * b));
        key[13] = (uint8_t)(i % 2);
        char val[160];
        int len = snprintf(val, sizeof val,
                           "{\"seq\":%llu,\"kind\":\"%s\",\"partner\":\"p%u\",\"detail\":\"d\"}",
                           (unsigned long long)seq, i % 2 ? "late" : "held", i % 7);
        raw_put(&rs, key, sizeof key, val, (size_t)len);
    }
    raw_store_commit(&rs);
}

/* [D16] A list longer than one reply: the service cuts it between two seqs
 * with "next_seq", and the CLI follows the cursor to the complete list. */
START_TEST(test_exceptions_paging)
{
    enum { COUNT = TLY_QUERY_EXCEPTIONS_PAGE_MAX + 501 };
    char *data = tu_tmpdir();
    write_exceptions(data, COUNT);
    char views[1200];
    snprintf(views, sizeof views, "%s/views", data);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, 1, &store), TLY_OK);
    json_t *req = json_pack("{s:s}", "q", "exceptions"), *page = NULL;
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    json_t *xs = json_object_get(page, "exceptions");
    /* the page ends with both exceptions of its last seq */
    ck_assert_uint_eq(json_array_size(xs), TLY_QUERY_EXCEPTIONS_PAGE_MAX);
    json_int_t next = json_integer_value(json_object_get(page, "next_seq"));
    ck_assert_int_eq(next, TLY_QUERY_EXCEPTIONS_PAGE_MAX / 2 + 1);
    json_object_set_new(req, "from_seq", json_integer(next));
    json_decref(page);
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(page, "exceptions")), 501);
    ck_assert_ptr_null(json_object_get(page, "next_seq"));
    json_decref(page);
    json_decref(req);
    tly_query_store_close(store);
    run_result r = tally("exceptions", "--views", views, "--json", NULL);
    json_t *got = parse_out(&r);
    ck_assert_uint_eq(json_array_size(json_object_get(got, "exceptions")), COUNT);
    ck_assert_ptr_null(json_object_get(got, "next_seq"));
    json_t *last = json_array_get(json_object_get(got, "exceptions"), COUNT - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "seq")), 1 + (COUNT - 1) / 2);
    json_decref(got);
    run_free(&r);
    r = tally("exceptions", "--views", views, "--json", "--kind", "late", "--partner", "p3", NULL);
    got = parse_out(&r);
    size_t want = 0;
    for (uint32_t i = 0; i < COUNT; i++)
        want += i % 2 == 1 && i % 7 == 3;
    ck_assert_uint_eq(json_array_size(json_object_get(got, "exceptions")), want);
    json_decref(got);
    run_free(&r);
    tu_rmtree(data);
}
END_TEST

/* [D16] TLY_QUERY_EXCEPTIONS_SCAN_MAX: a filter that matches nothing
 * examines exactly that many stored exceptions in one reply without a cut;
 * with more, the reply stops at the next seq boundary with "next_seq"
 * (and no rows), and asking again from there gives the rest. */
START_TEST(test_exceptions_scan_bound)
{
    enum { COUNT = TLY_QUERY_EXCEPTIONS_SCAN_MAX + 2 }; /* seqs 1 .. SCAN_MAX / 2 + 1 */
    char *data = tu_tmpdir();
    write_exceptions(data, COUNT);
    char views[1200];
    snprintf(views, sizeof views, "%s/views", data);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, 1, &store), TLY_OK);
    json_t *req =
        json_pack("{s:s, s:s, s:i}", "q", "exceptions", "partner", "nobody", "from_seq", 2);
    json_t *page = NULL;
    /* from seq 2: exactly TLY_QUERY_EXCEPTIONS_SCAN_MAX examined, all of them */
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    ck_assert_ptr_null(json_object_get(page, "error"));
    ck_assert_uint_eq(json_array_size(json_object_get(page, "exceptions")), 0);
    ck_assert_ptr_null(json_object_get(page, "next_seq"));
    json_decref(page);
    /* from seq 1: two more, so the reply is cut before the last seq */
    json_object_set_new(req, "from_seq", json_integer(1));
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    ck_assert_ptr_null(json_object_get(page, "error"));
    ck_assert_uint_eq(json_array_size(json_object_get(page, "exceptions")), 0);
    json_int_t next = json_integer_value(json_object_get(page, "next_seq"));
    ck_assert_int_eq(next, TLY_QUERY_EXCEPTIONS_SCAN_MAX / 2 + 1);
    json_decref(page);
    json_object_set_new(req, "from_seq", json_integer(next));
    json_object_del(req, "partner");
    ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(page, "exceptions")), 2);
    ck_assert_ptr_null(json_object_get(page, "next_seq"));
    json_decref(page);
    json_decref(req);
    tly_query_store_close(store);
    tu_rmtree(data);
}
END_TEST

/* Writes a one-shard store holding the liability shares ("V/l/<program>")
 * of `count` programs p00000.., each with every sum 1. */
static void write_liabilities(const char *data, uint32_t count)
{
    raw_store rs;
    raw_store_open(data, &rs);
    for (uint32_t i = 0; i < count; i++) {
        char key[32], val[256];
        int klen = snprintf(key, sizeof key, "V/l/p%05u", i);
        int vlen = snprintf(val, sizeof val,
                            "{\"program\":\"p%05u\",\"currency\":\"USD\",\"mdf_available\":1,"
                            "\"mdf_pending\":1,\"mdf_approved\":1,\"rebate_accrued_open\":1,"
                            "\"rebate_payable\":1}",
                            i);
        raw_put(&rs, key, (size_t)klen, val, (size_t)vlen);
    }
    raw_store_commit(&rs);
}

/* TLY_QUERY_PROGRAMS_MAX: a liabilities answer sums that many programs;
 * one more is too_large, a message naming the bound, and `tally
 * liabilities` says so with exit 1. */
START_TEST(test_liabilities_programs_max)
{
    for (uint32_t over = 0; over < 2; over++) {
        char *data = tu_tmpdir();
        write_liabilities(data, TLY_QUERY_PROGRAMS_MAX + over);
        char views[1200];
        snprintf(views, sizeof views, "%s/views", data);
        tly_query_store *store = NULL;
        ck_assert_int_eq(tly_query_store_open(views, NULL, 1, &store), TLY_OK);
        json_t *req = json_pack("{s:s}", "q", "liabilities"), *ans = NULL;
        ck_assert_int_eq(tly_query_answer(store, req, &ans), TLY_OK);
        json_decref(req);
        tly_query_store_close(store);
        run_result r = tally("liabilities", "--views", views, "--shards", "1", "--json", NULL);
        char says[64];
        snprintf(says, sizeof says, "more than %u programs", TLY_QUERY_PROGRAMS_MAX);
        if (!over) {
            json_t *progs = json_object_get(ans, "programs");
            ck_assert_uint_eq(json_array_size(progs), TLY_QUERY_PROGRAMS_MAX);
            ck_assert_int_eq(
                json_integer_value(json_object_get(
                    json_array_get(progs, TLY_QUERY_PROGRAMS_MAX - 1), "mdf_available")),
                1);
            json_t *got = parse_out(&r);
            ck_assert_uint_eq(json_array_size(json_object_get(got, "programs")),
                              TLY_QUERY_PROGRAMS_MAX);
            json_decref(got);
        } else {
            ck_assert_str_eq(json_string_value(json_object_get(ans, "error")), "too_large");
            ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(ans, "message")), says));
            ck_assert_int_eq(r.code, 1);
            ck_assert_ptr_nonnull(strstr(r.err, says));
            ck_assert_str_eq(r.out, "");
        }
        run_free(&r);
        json_decref(ans);
        tu_rmtree(data);
    }
}
END_TEST

/* Entries of dir, "." and ".." aside. */
static uint32_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    uint32_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Fills dir up to `entries` entries with empty files. */
static void fill_dir(const char *dir, uint32_t entries)
{
    for (uint32_t i = dir_entries(dir); i < entries; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/filler-%05u", dir, i);
        ck_assert(tu_write_file(path, "", 0));
    }
    ck_assert_uint_eq(dir_entries(dir), entries);
}

/* TLY_QUERY_VIEWS_DIR_ENTRIES_MAX at its edge: a views directory of that
 * many entries (its one store 0-of-1 and empty files) is read whole and
 * its store answers; with one entry more the service may not have seen
 * every store, so it answers too_large naming the directory and the bound
 * (it once answered from the entries it had read), and `tally liabilities`
 * says so with exit 1. */
START_TEST(test_views_dir_entries_max)
{
    char *data = tu_tmpdir();
    raw_store rs;
    raw_store_open(data, &rs);
    raw_store_commit(&rs);
    char views[1200];
    snprintf(views, sizeof views, "%s/views", data);
    char says[1300];
    snprintf(says, sizeof says, "%s holds more than %u entries", views,
             TLY_QUERY_VIEWS_DIR_ENTRIES_MAX);
    for (uint32_t over = 0; over < 2; over++) {
        fill_dir(views, TLY_QUERY_VIEWS_DIR_ENTRIES_MAX + over);
        tly_query_store *store = NULL;
        ck_assert_int_eq(tly_query_store_open(views, NULL, 0, &store), TLY_OK);
        json_t *req = json_pack("{s:s}", "q", "liabilities"), *ans = NULL;
        ck_assert_int_eq(tly_query_answer(store, req, &ans), TLY_OK);
        json_decref(req);
        tly_query_store_close(store);
        run_result r = tally("liabilities", "--views", views, "--json", NULL);
        if (!over) {
            ck_assert_ptr_null(json_object_get(ans, "error"));
            ck_assert_uint_eq(json_array_size(json_object_get(ans, "programs")), 0);
            json_decref(parse_out(&r));
        } else {
            ck_assert_str_eq(json_string_value(json_object_get(ans, "error")), "too_large");
            ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(ans, "message")), says));
            ck_assert_int_eq(r.code, 1);
            ck_assert_msg(strstr(r.err, says) != NULL, "stderr: %s", r.err);
            ck_assert_str_eq(r.out, "");
            run_free(&r);
            /* the summary says so too, not "no views yet" */
            r = tally("summary", "--data", data, NULL);
            ck_assert_int_eq(r.code, 1);
            ck_assert_msg(strstr(r.err, says) != NULL, "stderr: %s", r.err);
        }
        run_free(&r);
        json_decref(ans);
    }
    tu_rmtree(data);
}
END_TEST

/* A store under another K-of-N name than its own "M/shard" is refused:
 * it would answer for the wrong partners. */
START_TEST(test_shard_mismatch)
{
    char *tmp = tu_tmpdir();
    char link[1200], target[1200];
    snprintf(link, sizeof link, "%s/0-of-1", tmp);
    snprintf(target, sizeof target, "%s/1-of-2", g_views);
    ck_assert_int_eq(symlink(target, link), 0);
    run_result r = tally("liabilities", "--views", tmp, "--shards", "1", "--json", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "says it is shard 1/2"));
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    tu_rmtree(tmp);
}
END_TEST

START_TEST(test_unreachable_and_usage)
{
    run_result r = tally("balance", GOLDEN_PARTNER, "--query", g_dead_ep, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_uint_eq(count_lines(r.err), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "query service not reachable at"));
    run_free(&r);
    r = tally("balance", NULL);
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
    r = tally("balance", "--help", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "Usage: tally balance PARTNER"));
    run_free(&r);
    r = tally("query", "--query", "tcp://10.1.2.3:7413", "--data", g_data, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "not a loopback endpoint"));
    run_free(&r);
    /* an unknown kind is a usage error that lists the kinds, the last too */
    r = tally("exceptions", "--kind", "over-return", "--query", g_dead_ep, NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "unknown kind 'over-return'"));
    ck_assert_ptr_nonnull(strstr(r.err, "over_return"));
    ck_assert_ptr_nonnull(strstr(r.err, tly_xkind_name((tly_xkind)(TLY_X_COUNT - 1))));
    run_free(&r);
}
END_TEST

/* The service's reply to req from store both ways: tly_query_answer_encode
 * (the fast path where it applies) must give the bytes of tly_query_answer
 * + tly_query_reply_encode. */
static void assert_same_bytes(tly_query_store *store, json_t *req, const char *what)
{
    msgpack_sbuffer fast, slow;
    msgpack_sbuffer_init(&fast);
    msgpack_sbuffer_init(&slow);
    ck_assert_int_eq(tly_query_answer_encode(store, req, &fast), TLY_OK);
    json_t *reply = NULL;
    ck_assert_int_eq(tly_query_answer(store, req, &reply), TLY_OK);
    tly_query_reply_encode(reply, &slow);
    ck_assert_msg(fast.size == slow.size && memcmp(fast.data, slow.data, fast.size) == 0,
                  "%s: %zu bytes the fast way, %zu the jansson way", what, fast.size, slow.size);
    json_decref(reply);
    msgpack_sbuffer_destroy(&fast);
    msgpack_sbuffer_destroy(&slow);
}

/* Every partner's four views, and the requests that are errors, give the
 * same bytes both ways. */
START_TEST(test_fast_answers_every_partner)
{
    static const char *const names[] = {"balance", "rebate", "tier", "claims"};
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(g_views, NULL, 2, &store), TLY_OK);
    const char *id;
    json_t *want;
    json_object_foreach(json_object_get(g_expect, "partners"), id, want)
    {
        for (int v = 0; v < 4; v++) {
            json_t *req = json_pack("{s:s, s:s}", "q", names[v], "partner", id);
            assert_same_bytes(store, req, id);
            json_decref(req);
        }
    }
    static const char *const odd[] = {
        "{\"q\":\"balance\",\"partner\":\"nobody\"}",
        "{\"q\":\"balance\"}",
        "{\"q\":\"balance\",\"partner\":7}",
        "{\"q\":\"balance\",\"partner\":\"\"}",
        "{\"q\":\"tier\",\"partner\":null}",
        "{\"q\":\"liabilities\"}",
        "{\"q\":7}",
        "{\"q\":\"nope\",\"partner\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        json_t *req = json_loads(odd[i], 0, NULL);
        assert_same_bytes(store, req, odd[i]);
        json_decref(req);
    }
    tly_query_store_close(store);
}
END_TEST

/* Documents the engine never writes: whatever the fast path reads it must
 * read as jansson does, and what it does not read it leaves to jansson. */
static const char *const odd_docs[] = {
    "{}",
    "{\"partner\":\"x\"}",
    "{\"zz\":1,\"available\":-5,\"partner\":\"x\",\"seq\":\"s\",\"buckets\":[1,{\"z\":1,"
    "\"remaining\":2,\"period\":\"q\"},[],null],\"next\":{\"certs_needed\":1,\"tier\":\"g\","
    "\"o\":true},\"history\":[{\"to\":\"a\",\"seq\":1},2],\"periods\":{\"a\":1},\"claims\":"
    "[{\"reason\":null,\"claim\":\"c\",\"x\":[{\"b\":1,\"a\":2}]}]}",
    "{\"buckets\":{\"period\":1},\"next\":[1],\"history\":\"h\",\"claims\":7,\"periods\":[]}",
    "{\"partner\":\"caf\xc3\xa9\",\"name\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}",
    "{\"partner\":\"bad\xc3\"}",
    "{\"partner\":\"\xed\xa0\x80\"}",
    "{\"partner\":\"a\\\"b\",\"x\":\"\\u00e9\\n\"}",
    "{\"a\":1.5}",
    "{\"a\":1e3}",
    "{\"a\":-0,\"b\":-1,\"c\":-128,\"d\":-129,\"e\":255,\"f\":65536,\"g\":-2147483649}",
    "{\"a\":01}",
    "{\"a\":-}",
    "{\"a\":123456789012345678,\"b\":-123456789012345678}",
    "{\"a\":1234567890123456789}",
    "{\"a\":9223372036854775807,\"b\":-9223372036854775808}",
    "{\"a\":9223372036854775808}",
    "{\"a\":1,\"a\":2}",
    "{\"a\":{\"b\":1,\"b\":2}}",
    "{\"a\":[[[[[[[[[[1]]]]]]]]]]}",
    "{\"a\":[[[[[[[1]]]]]]]}",
    "{ \"a\":1}",
    "{\"a\":1} ",
    "[1]",
    "\"s\"",
    "{\"a\":true,\"b\":false,\"c\":null,\"\":\"\"}",
    "{\"a\":\"\x01\"}",
    "{\"a\":tru}",
    "",
    "{\"a\":",
    "{\"a\":1,}",
    "{,}",
    "{\"a\" :1}",
    "{\"a\":\"\x7f/\"}",
};

/* A doc with n members, or one of a long string, or an n-element array. */
static char *big_doc(int kind, size_t n)
{
    size_t cap = 64 + n * 16;
    char *d = malloc(cap), *p = d;
    p += sprintf(p, kind == 1 ? "{\"partner\":\"" : kind == 2 ? "{\"a\":[" : "{");
    for (size_t i = 0; i < n; i++)
        p += kind == 1   ? sprintf(p, "x")
             : kind == 2 ? sprintf(p, "%s%zu", i ? "," : "", i)
                         : sprintf(p, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    sprintf(p, kind == 1 ? "\"}" : kind == 2 ? "]}" : "}");
    return d;
}

/* Documents no store renders (odd, large, or not what a view holds): the
 * fast reader (the list answers' rows) reads each one as jansson does and
 * packs what it read as tly_query_pack packs jansson's reading, or it
 * declines and the jansson way answers. */
START_TEST(test_fast_reader_odd_docs)
{
    size_t n_odd = sizeof odd_docs / sizeof odd_docs[0];
    char *docs[64];
    for (size_t i = 0; i < n_odd; i++)
        docs[i] = strdup(odd_docs[i]);
    size_t n = n_odd;
    docs[n++] = big_doc(0, 40);   /* map16 */
    docs[n++] = big_doc(1, 40);   /* str8 */
    docs[n++] = big_doc(1, 300);  /* str16 */
    docs[n++] = big_doc(2, 20);   /* array16 */
    docs[n++] = big_doc(2, 5000); /* more values than the fast path reads */
    tly__qfast f;
    ck_assert(tly__qfast_init(&f));
    size_t fast_ones = 0;
    for (size_t i = 0; i < n; i++) {
        msgpack_sbuffer fast, slow;
        msgpack_sbuffer_init(&fast);
        msgpack_sbuffer_init(&slow);
        uint32_t top = tly__qfast_read(&f, docs[i], strlen(docs[i]));
        json_t *doc = json_loadb(docs[i], strlen(docs[i]), 0, NULL);
        ck_assert_msg(json_is_object(doc) || top == 0, "doc %zu: read a non-object", i);
        if (top != 0) {
            ck_assert(tly__qfast_put(&f, top, &fast));
            ck_assert_int_eq(tly_query_pack(doc, &slow), TLY_OK);
            ck_assert_msg(fast.size == slow.size && memcmp(fast.data, slow.data, fast.size) == 0,
                          "doc %zu: %zu bytes the fast way, %zu the jansson way", i, fast.size,
                          slow.size);
            fast_ones++;
        }
        json_decref(doc);
        msgpack_sbuffer_destroy(&fast);
        msgpack_sbuffer_destroy(&slow);
        free(docs[i]);
    }
    /* what the engine could write is read: the objects of the subset
     * (query_internal.h), the big ones but the one over
     * TLY_QUERY_FAST_VALUES_MAX included */
    ck_assert_msg(fast_ones == 14, "%zu of %zu documents read", fast_ones, n);
    tly__qfast_free(&f);
}
END_TEST

/* A document nested "[" depth times under "a": {"a":[[...[1]...]]}. */
static char *nested_doc(unsigned depth)
{
    char *d = malloc(16 + 2 * (size_t)depth), *p = d;
    p += sprintf(p, "{\"a\":");
    for (unsigned i = 0; i < depth; i++)
        *p++ = '[';
    *p++ = '1';
    for (unsigned i = 0; i < depth; i++)
        *p++ = ']';
    sprintf(p, "}");
    return d;
}

/* TLY_QUERY_FAST_DEPTH_MAX: a document whose deepest value is that many
 * levels below the top is read the fast way, one level more is left to
 * the jansson way; both pack as tly_query_pack packs jansson's reading. */
START_TEST(test_fast_reader_depth)
{
    tly__qfast f;
    ck_assert(tly__qfast_init(&f));
    for (unsigned over = 0; over < 2; over++) {
        /* the top object is level 0, "a"'s array level 1, the 1 one deeper
         * than the innermost array */
        char *doc = nested_doc(TLY_QUERY_FAST_DEPTH_MAX - 1 + over);
        json_t *j = json_loads(doc, 0, NULL);
        ck_assert_ptr_nonnull(j);
        msgpack_sbuffer fast, slow;
        msgpack_sbuffer_init(&fast);
        msgpack_sbuffer_init(&slow);
        ck_assert_int_eq(tly_query_pack(j, &slow), TLY_OK);
        uint32_t top = tly__qfast_read(&f, doc, strlen(doc));
        if (!over) {
            ck_assert_msg(top != 0, "%s: not read at the depth bound", doc);
            ck_assert(tly__qfast_put(&f, top, &fast));
            ck_assert(fast.size == slow.size && memcmp(fast.data, slow.data, fast.size) == 0);
        } else {
            ck_assert_msg(top == 0, "%s: read one level past the bound", doc);
        }
        msgpack_sbuffer_destroy(&fast);
        msgpack_sbuffer_destroy(&slow);
        json_decref(j);
        free(doc);
    }
    tly__qfast_free(&f);
}
END_TEST

/* `tally bench query` with the most requests in flight per client: every
 * run answers queries and none is an error, so every reply was matched to
 * the request it answers (a balance names its partner, and the bench
 * checks it against the oldest request in flight; 60 partners drawn at
 * random would mismatch at once). One more in flight, none, or a window
 * with --finance are usage errors. */
START_TEST(test_bench_window)
{
    char *dir = tu_tmpdir();
    char out[TLY_PATH_BYTES_MAX], data[TLY_PATH_BYTES_MAX], w[16];
    snprintf(out, sizeof out, "%s/bench.json", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(w, sizeof w, "%u", TLY_BENCH_QUERY_WINDOW_MAX);
    ck_assert_int_eq(tu_run_tally(out, NULL, "bench", "query", "--events", "3000", "--seconds", "1",
                                  "--window", w, "--data", data, "--json", NULL),
                     0);
    size_t len;
    char *text = tu_read_file(out, &len);
    json_t *doc = json_loadb(text, len, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "window")),
                     TLY_BENCH_QUERY_WINDOW_MAX);
    json_t *runs = json_object_get(doc, "runs");
    ck_assert_uint_eq(json_array_size(runs), 4);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        ck_assert_int_gt(json_integer_value(json_object_get(r, "queries")), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(r, "errors")), 0);
    }
    json_decref(doc);
    free(text);
    char over[16];
    snprintf(over, sizeof over, "%u", TLY_BENCH_QUERY_WINDOW_MAX + 1);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "bench", "query", "--window", over, NULL), 2);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "bench", "query", "--window", "0", NULL), 2);
    ck_assert_int_eq(tu_run_tally(NULL, NULL, "bench", "query", "--finance", "--window", "2", NULL),
                     2);
    tu_rmtree(dir);
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tu_tcase(s, "views", 300);
    tu_add_tests(
        tc, TU_TESTS(test_views_every_partner, test_json_key_order, test_unknown_partner,
                     test_human_golden, test_human_money, test_liabilities_sum, test_summary,
                     test_exceptions_merged, test_exceptions_filters, test_shards_differ,
                     test_status_from_data, test_wait, test_service_answers, test_service_drain,
                     test_service_bad_requests, test_service_request_size, test_service_latency,
                     test_service_before_stores, test_exceptions_paging, test_shard_mismatch,
                     test_unreachable_and_usage, test_fast_answers_every_partner,
                     test_fast_reader_odd_docs, test_bench_window, test_exceptions_scan_bound,
                     test_liabilities_programs_max, test_fast_reader_depth,
                     test_views_dir_entries_max));
    return s;
}

int main(void)
{
    build_fixture();
    tu_endpoint(g_dead_ep, sizeof g_dead_ep);
    int failed = tu_run_suite(query_suite());
    json_decref(g_expect);
    tu_rmtree(g_data);
    return failed;
}
