/*
 * test_finance.c — the finance outputs of SPEC section 11 (partners,
 * report, expiring, journal) through the real engine, the real view stores
 * and the query library, against the seed102-v2 vector's answers.
 *
 * Fixture (built once): the vector's events folded by the real engine into
 * real view stores (tly_views_open/_load/_commit) on 1 shard and on 2,
 * committed every FX_BATCH records and reloaded from the store after every
 * commit, as a consumer that restarts would: the stored report sums, open
 * rebate estimates and journal rows must not depend on where the commits
 * fall. Then tly_query_answer answers each query of the vector.
 */
/* asprintf */
#define _GNU_SOURCE
#include <check.h>
#include <jansson.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "teststream.h"
#include "testutil.h"
#include "tly_engine.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_period.h"
#include "tly_query.h"
#include "tly_views.h"

#define FX_BATCH 97u /* a prime: commits fall at every kind of record */
#define REC_MS INT64_C(1893456000000)

static char *g_data[2]; /* 1 shard, 2 shards */

/* The fixture is built by the runner itself (an unchecked fixture), where
 * a failed check would not say where: need prints the condition and
 * aborts. */
#define need(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fixture: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
static json_t *g_want; /* the vector's "finance" answers */

/* Folds the stream into shard k of n, committing every FX_BATCH records
 * and starting a fresh engine from the store after each commit. */
static void fold_committed(const char *data, const stream *st, uint32_t k, uint32_t n)
{
    tly_views *v = NULL;
    tly_engine *e = NULL;
    need(tly_views_open(data, k, n, TLY_VIEWS_WRITE, &v) == TLY_OK);
    for (size_t i = 0; i < st->count; i++) {
        if (e == NULL) {
            need(tly_engine_new(k, n, &e) == TLY_OK);
            need(tly_views_load(v, e) == TLY_OK);
        }
        const rec_buf *r = &st->recs[i];
        tly_event ev;
        need(tly_event_decode(r->bytes, r->len, REC_MS, &ev, NULL) == TLY_OK);
        tly_record rec = {.seq = i + 1,
                          .recorded_ms = REC_MS,
                          .source = {r->source, (uint32_t)strlen(r->source)},
                          .event = r->bytes,
                          .event_len = r->len};
        need(tly_engine_apply(e, &rec, &ev) == TLY_OK);
        if ((i + 1) % FX_BATCH == 0 || i + 1 == st->count) {
            need(tly_views_commit(v, e) == TLY_OK);
            tly_engine_free(e);
            e = NULL;
        }
    }
    tly_views_close(v);
}

/* One query of the library against data's stores (n shards). */
static json_t *ask(const char *data, uint32_t n, json_t *req)
{
    char views[1100];
    snprintf(views, sizeof views, "%s/views", data);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, n, &store), TLY_OK);
    json_t *reply = NULL;
    ck_assert_int_eq(tly_query_answer(store, req, &reply), TLY_OK);
    tly_query_store_close(store);
    json_decref(req);
    ck_assert_ptr_nonnull(reply);
    return reply;
}

/* The first difference of got and want, for the failure message. */
static void expect_same(json_t *got, json_t *want, const char *what)
{
    if (json_equal(got, want))
        return;
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    size_t at = 0;
    while (g[at] && g[at] == w[at])
        at++;
    size_t from = at > 200 ? at - 200 : 0;
    ck_abort_msg("%s differs at byte %zu:\n got  ...%.400s\n want ...%.400s", what, at, g + from,
                 w + from);
}

/* "--program apex --kind msp" as a request {"q": q, "program": "apex", ...}. */
static json_t *request_of(const char *q, const char *flags)
{
    json_t *req = json_pack("{s:s}", "q", q);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *tok = strtok(buf, " "); tok != NULL; tok = strtok(NULL, " ")) {
        char *value = strtok(NULL, " ");
        ck_assert_ptr_nonnull(value);
        ck_assert(strncmp(tok, "--", 2) == 0);
        json_object_set_new(req, tok + 2, json_string(value));
    }
    return req;
}

START_TEST(test_partners)
{
    const char *flags;
    json_t *want;
    json_object_foreach(json_object_get(g_want, "partners"), flags, want)
    {
        json_t *got = ask(g_data[_i], _i + 1, request_of("partners", flags));
        char what[300];
        snprintf(what, sizeof what, "N=%d partners %s", _i + 1, flags);
        expect_same(got, want, what);
        json_decref(got);
    }
}
END_TEST

START_TEST(test_report)
{
    const char *program;
    json_t *want;
    json_object_foreach(json_object_get(g_want, "report"), program, want)
    {
        json_t *got =
            ask(g_data[_i], _i + 1, json_pack("{s:s, s:s}", "q", "report", "program", program));
        char what[300];
        snprintf(what, sizeof what, "N=%d report %s", _i + 1, program);
        expect_same(got, want, what);
        json_decref(got);
    }
}
END_TEST

START_TEST(test_expiring)
{
    json_t *got = ask(g_data[_i], _i + 1, json_pack("{s:s}", "q", "expiring"));
    expect_same(got, json_object_get(g_want, "expiring"), "expiring");
    json_decref(got);
}
END_TEST

START_TEST(test_journal)
{
    const char *program, *period;
    json_t *periods, *want;
    json_object_foreach(json_object_get(g_want, "journal"), program, periods)
    {
        json_object_foreach(periods, period, want)
        {
            json_t *got = ask(
                g_data[_i], _i + 1,
                json_pack("{s:s, s:s, s:s}", "q", "journal", "program", program, "period", period));
            char what[300];
            snprintf(what, sizeof what, "N=%d journal %s %s", _i + 1, program, period);
            expect_same(got, want, what);
            /* every entry balances by construction; the period ties to the
             * report's figures [section 11] */
            json_decref(got);
        }
    }
}
END_TEST

/* The journal of a period ties to the report of the same period: the
 * accrual entries sum to accrued − clawed back + adjusted, and so on. */
/* Checks that each period's journal of program ties to its report (data
 * folded on n shards) and returns the most partners one period's journal
 * names. */
static size_t journal_ties(const char *data, uint32_t n, const char *program)
{
    json_t *report = ask(data, n, json_pack("{s:s, s:s}", "q", "report", "program", program));
    size_t i, most = 0;
    json_t *row;
    json_array_foreach(json_object_get(report, "periods"), i, row)
    {
        const char *period = json_string_value(json_object_get(row, "period"));
        json_t *j =
            ask(data, n,
                json_pack("{s:s, s:s, s:s}", "q", "journal", "program", program, "period", period));
        json_int_t paid = 0, expiry = 0, referral = 0;
        size_t k, partners = 0;
        json_t *e;
        const char *prev = "";
        json_array_foreach(json_object_get(j, "entries"), k, e)
        {
            const char *kind = json_string_value(json_object_get(e, "kind"));
            const char *who = json_string_value(json_object_get(e, "partner"));
            json_int_t a = json_integer_value(json_object_get(e, "amount"));
            bool swapped =
                strcmp(json_string_value(json_object_get(e, "debit")), "cash") == 0 ||
                strcmp(json_string_value(json_object_get(e, "credit")), "mdf_liability") == 0;
            partners += strcmp(who, prev) != 0;
            ck_assert_int_le(strcmp(prev, who), 0); /* by partner id [JN3] */
            prev = who;
            if (strcmp(kind, "mdf_payment") == 0)
                paid += a;
            else if (strcmp(kind, "mdf_expiry") == 0)
                expiry += swapped ? -a : a;
            else if (strcmp(kind, "referral_accrual") == 0)
                referral += a;
        }
        ck_assert_int_eq(paid, json_integer_value(json_object_get(row, "mdf_paid")));
        ck_assert_int_eq(expiry, json_integer_value(json_object_get(row, "mdf_expired")));
        ck_assert_int_eq(referral, json_integer_value(json_object_get(row, "referral")));
        most = partners > most ? partners : most;
        json_decref(j);
    }
    json_decref(report);
    return most;
}

START_TEST(test_journal_ties_to_report)
{
    journal_ties(g_data[_i], _i + 1, "apex");
}
END_TEST

/* A closed period's journal is stored in chunks of
 * TLY_ENGINE_JOURNAL_CHUNK_ROWS partners: with more members active in a
 * period than one chunk holds, every closed period's journal is the same
 * on 1 shard and on 2 (commits every FX_BATCH records, restarts after
 * each), and ties to the report. */
START_TEST(test_journal_chunks)
{
    stream st = {0};
    gen_stream(&st, 11, 40000, 900);
    char *data[2];
    for (uint32_t n = 1; n <= 2; n++) {
        data[n - 1] = tu_tmpdir();
        for (uint32_t k = 0; k < n; k++)
            fold_committed(data[n - 1], &st, k, n);
    }
    stream_free(&st);
    static const char *const programs[] = {"alpha", "beta"};
    size_t most = 0;
    for (int g = 0; g < 2; g++) {
        size_t m = journal_ties(data[0], 1, programs[g]);
        most = m > most ? m : most;
        json_t *report =
            ask(data[0], 1, json_pack("{s:s, s:s}", "q", "report", "program", programs[g]));
        size_t i;
        json_t *row;
        json_array_foreach(json_object_get(report, "periods"), i, row)
        {
            const char *period = json_string_value(json_object_get(row, "period"));
            json_t *one[2];
            for (uint32_t n = 1; n <= 2; n++)
                one[n - 1] = ask(data[n - 1], n,
                                 json_pack("{s:s, s:s, s:s}", "q", "journal", "program",
                                           programs[g], "period", period));
            expect_same(one[1], one[0], period);
            json_decref(one[0]);
            json_decref(one[1]);
        }
        json_decref(report);
    }
    ck_assert_uint_gt(most, TLY_ENGINE_JOURNAL_CHUNK_ROWS); /* chunks were split */
    for (int n = 0; n < 2; n++) {
        tly_rmtree(data[n]);
        free(data[n]);
    }
}
END_TEST

/* Pages: asked 3 at a time, each after the last id given, the partners
 * are the whole list in order; the last page has no "next". */
START_TEST(test_partners_pages)
{
    json_t *whole = ask(g_data[_i], _i + 1, json_pack("{s:s}", "q", "partners"));
    ck_assert_ptr_null(json_object_get(whole, "next"));
    json_t *all = json_array();
    const char *after = NULL;
    json_t *page = NULL;
    for (int guard = 0; guard < 1000; guard++) {
        json_t *req = json_pack("{s:s, s:i}", "q", "partners", "max", 3);
        if (after)
            json_object_set_new(req, "after", json_string(after));
        json_decref(page);
        page = ask(g_data[_i], _i + 1, req);
        json_t *rows = json_object_get(page, "partners");
        ck_assert_uint_le(json_array_size(rows), 3);
        json_array_extend(all, rows);
        json_t *next = json_object_get(page, "next");
        if (next == NULL)
            break;
        ck_assert_uint_eq(json_array_size(rows), 3);
        after = json_string_value(next);
    }
    ck_assert_msg(json_equal(all, json_object_get(whole, "partners")), "pages differ");
    json_decref(page);
    json_decref(all);
    json_decref(whole);
    json_t *r = ask(g_data[0], 1, json_pack("{s:s, s:i}", "q", "partners", "max", 0));
    ck_assert_str_eq(json_string_value(json_object_get(r, "field")), "max");
    json_decref(r);
    r = ask(g_data[0], 1,
            json_pack("{s:s, s:i}", "q", "partners", "max", (int)TLY_QUERY_PARTNERS_PAGE_MAX + 1));
    ck_assert_str_eq(json_string_value(json_object_get(r, "field")), "max");
    json_decref(r);
}
END_TEST

/* Bad requests: an unknown program, a period of the wrong kind [JN4], a
 * missing program. */
START_TEST(test_bad_requests)
{
    json_t *r = ask(g_data[0], 1, json_pack("{s:s, s:s}", "q", "report", "program", "nope"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "not_found");
    json_decref(r);
    r = ask(g_data[0], 1,
            json_pack("{s:s, s:s, s:s}", "q", "journal", "program", "apex", "period", "2025-07"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "bad_field");
    ck_assert_str_eq(json_string_value(json_object_get(r, "field")), "period");
    json_decref(r);
    /* a year out of range is not "not a quarter": the forms are named */
    r = ask(g_data[0], 1,
            json_pack("{s:s, s:s, s:s}", "q", "journal", "program", "apex", "period", "1999-Q1"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "bad_field");
    ck_assert_str_eq(json_string_value(json_object_get(r, "field")), "period");
    ck_assert_str_eq(json_string_value(json_object_get(r, "message")),
                     "'1999-Q1' is not a period: a quarter (2026-Q3) or a month (2026-07) of the "
                     "years 2000 to 9999");
    json_decref(r);
    r = ask(g_data[0], 1,
            json_pack("{s:s, s:s, s:s}", "q", "journal", "program", "apex", "period", "2025-07"));
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "message")),
                                 "is not a quarter (2026-Q3) of program apex"));
    json_decref(r);
    r = ask(g_data[0], 1, json_pack("{s:s}", "q", "journal"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "missing_field");
    json_decref(r);
    /* an unknown partner: the nearest ids are suggested, none for a far one */
    r = ask(g_data[1], 2, json_pack("{s:s, s:s}", "q", "balance", "partner", "datum-msp-61"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "not_found");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(r, "suggestions"), 0)),
                     "datum-msp-614");
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(r, "message")), "did you mean 'datum-msp-614'"));
    json_decref(r);
    r = ask(g_data[0], 1, json_pack("{s:s, s:s}", "q", "tier", "partner", "qqqqqqqqqqqqqqqq"));
    ck_assert_uint_eq(json_array_size(json_object_get(r, "suggestions")), 0);
    json_decref(r);
    r = ask(g_data[0], 1, json_pack("{s:s, s:s}", "q", "partners", "search", "zzz-none"));
    ck_assert_uint_eq(json_array_size(json_object_get(r, "partners")), 0);
    json_decref(r);
}
END_TEST

/* The service's bytes for req both ways: tly_query_answer_encode (the
 * fast way where it applies) and tly_query_answer + tly_query_reply_encode
 * (the reference). True when the fast way gave them. */
static bool same_bytes(tly_query_store *store, json_t *req, const char *what)
{
    uint64_t before = tly_query_store_fast_answers(store);
    msgpack_sbuffer fast, slow;
    msgpack_sbuffer_init(&fast);
    msgpack_sbuffer_init(&slow);
    ck_assert_int_eq(tly_query_answer_encode(store, req, &fast), TLY_OK);
    bool was_fast = tly_query_store_fast_answers(store) > before;
    json_t *reply = NULL;
    ck_assert_int_eq(tly_query_answer(store, req, &reply), TLY_OK);
    tly_query_reply_encode(reply, &slow);
    ck_assert_msg(fast.size == slow.size && memcmp(fast.data, slow.data, fast.size) == 0,
                  "%s: %zu bytes the fast way, %zu the jansson way", what, fast.size, slow.size);
    json_decref(reply);
    msgpack_sbuffer_destroy(&fast);
    msgpack_sbuffer_destroy(&slow);
    json_decref(req);
    return was_fast;
}

/* Every page of max rows after `after` (NULL: from the first), each the
 * same bytes both ways and the fast way's; returns the pages. */
static int pages_same(tly_query_store *store, const char *flags, int max, const char *after)
{
    char *cursor = after ? strdup(after) : NULL;
    int pages = 0;
    for (; pages < 1000; pages++) {
        json_t *req = request_of("partners", flags);
        json_object_set_new(req, "max", json_integer(max));
        if (cursor)
            json_object_set_new(req, "after", json_string(cursor));
        json_t *page = NULL;
        ck_assert_int_eq(tly_query_answer(store, req, &page), TLY_OK);
        char what[300];
        snprintf(what, sizeof what, "partners %s max %d after %s", flags, max, cursor);
        ck_assert_msg(same_bytes(store, req, what), "%s: not the fast way", what);
        json_t *next = json_object_get(page, "next");
        free(cursor);
        cursor = next ? strdup(json_string_value(next)) : NULL;
        json_decref(page);
        if (cursor == NULL)
            break;
    }
    return pages + 1;
}

/* The fast way of partners and expiring gives the reference's bytes for
 * every request of the vector, every page size and the bad requests (which
 * the reference answers). */
START_TEST(test_fast_same_bytes)
{
    char views[1100];
    snprintf(views, sizeof views, "%s/views", g_data[_i]);
    tly_query_store *store = NULL;
    ck_assert_int_eq(tly_query_store_open(views, NULL, (uint32_t)_i + 1, &store), TLY_OK);
    const char *flags;
    json_t *want;
    json_object_foreach(json_object_get(g_want, "partners"), flags, want)
    {
        ck_assert(same_bytes(store, request_of("partners", flags), flags));
        int rows = (int)json_array_size(json_object_get(want, "partners"));
        for (int max = 1; max <= rows + 1; max++)
            ck_assert_int_eq(pages_same(store, flags, max, NULL),
                             rows > max ? (rows + max - 1) / max : 1);
    }
    pages_same(store, "", (int)TLY_QUERY_PARTNERS_PAGE_MAX, NULL);
    ck_assert_int_eq(pages_same(store, "", 2, "a"), 10); /* before every id */
    ck_assert_int_eq(pages_same(store, "", 2, "~"), 1);  /* after every id */
    ck_assert_int_eq(pages_same(store, "--program nimbus", 1, "datum"), 2);
    ck_assert_int_eq(pages_same(store, "--program nimbus", 1, "graphic-consultant-718"), 1);
    ck_assert(same_bytes(store, json_pack("{s:s}", "q", "expiring"), "expiring"));
    ck_assert(
        same_bytes(store, json_pack("{s:s, s:s}", "q", "expiring", "program", "apex"), "apex"));
    ck_assert(
        same_bytes(store, json_pack("{s:s, s:s}", "q", "expiring", "program", "nimbus"), "n"));
    /* what the reference answers with an error, the fast way leaves to it */
    static const char *const bad[] = {
        "{\"q\":\"partners\",\"max\":0}",
        "{\"q\":\"partners\",\"max\":\"3\"}",
        "{\"q\":\"partners\",\"max\":2.5}",
        "{\"q\":\"partners\",\"after\":\"\"}",
        "{\"q\":\"partners\",\"after\":7}",
        "{\"q\":\"partners\",\"program\":7}",
        "{\"q\":\"partners\",\"search\":\"\"}",
        "{\"q\":\"partners\",\"tier\":[]}",
        "{\"q\":\"expiring\",\"program\":\"nope\"}",
        "{\"q\":\"expiring\",\"program\":\"\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!same_bytes(store, json_loads(bad[i], 0, NULL), bad[i]), "%s", bad[i]);
    char name[TLY_NAME_BYTES_MAX + 2];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* one byte over */
    ck_assert(!same_bytes(store, json_pack("{s:s, s:s}", "q", "partners", "kind", name), "kind"));
    name[TLY_NAME_BYTES_MAX] = '\0'; /* at the limit: no partner of that kind */
    ck_assert(same_bytes(store, json_pack("{s:s, s:s}", "q", "partners", "kind", name), "kind"));
    ck_assert(same_bytes(
        store, json_pack("{s:s, s:i}", "q", "partners", "max", (int)TLY_QUERY_PARTNERS_PAGE_MAX),
        "max at the limit"));
    ck_assert(!same_bytes(
        store,
        json_pack("{s:s, s:i}", "q", "partners", "max", (int)TLY_QUERY_PARTNERS_PAGE_MAX + 1),
        "max over"));
    tly_query_store_close(store);
}
END_TEST

/* Every cut of a member's record, and the record with a byte more, are
 * corrupt. */
static void expect_cuts_corrupt(const char *val, size_t size, int32_t period)
{
    const char *id;
    size_t idlen;
    int64_t f[TLY_ENGINE_ACT_FIELDS];
    for (size_t len = 0; len < size; len++)
        ck_assert_int_eq(tly_engine_open_journal(val, len, "apex", 4, period, &id, &idlen, f),
                         TLY_CORRUPT);
    char *more = malloc(size + 1);
    ck_assert_ptr_nonnull(more);
    memcpy(more, val, size);
    more[size] = '\0';
    ck_assert_int_eq(tly_engine_open_journal(more, size + 1, "apex", 4, period, &id, &idlen, f),
                     TLY_CORRUPT);
    free(more);
}

/* An open period's journal figures come from the partner records
 * (tly_engine_open_journal): read straight from each shard's store, the
 * members' figures of apex's open period sum to the report's (but the
 * rebate, an estimate there until the close), a record of
 * another program or shard is not found, and a record cut short or grown
 * by a byte is corrupt. */
START_TEST(test_open_journal_records)
{
    const char *prefix = TLY_ENGINE_PARTNER_PREFIX;
    size_t plen = strlen(prefix);
    json_t *report = ask(g_data[1], 2, json_pack("{s:s, s:s}", "q", "report", "program", "apex"));
    json_t *periods = json_object_get(report, "periods");
    json_t *last = json_array_get(periods, json_array_size(periods) - 1);
    ck_assert_str_eq(json_string_value(json_object_get(last, "status")), "open");
    const char *ptext = json_string_value(json_object_get(last, "period"));
    tly_period_kind kind;
    int32_t period;
    ck_assert_int_eq(tly_period_parse(ptext, strlen(ptext), &kind, &period), TLY_OK);
    int64_t sums[TLY_ENGINE_ACT_FIELDS] = {0};
    uint32_t found = 0, other = 0, checked = 0;
    for (uint32_t k = 0; k < 2; k++) {
        tly_views *v = NULL;
        ck_assert_int_eq(tly_views_open(g_data[1], k, 2, TLY_VIEWS_READ, &v), TLY_OK);
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_cursor *cur;
        ck_assert_int_eq(mdb_env_create(&env), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
        ck_assert_int_eq(mdb_env_open(env, tly_views_dir(v), MDB_RDONLY, 0644), 0);
        ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
        ck_assert_int_eq(mdb_dbi_open(txn, "views", 0, &dbi), 0);
        ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
        MDB_val key = {plen, (void *)prefix}, val;
        for (int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
             rc == 0 && key.mv_size >= plen && memcmp(key.mv_data, prefix, plen) == 0;
             rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            const char *id;
            size_t idlen;
            int64_t f[TLY_ENGINE_ACT_FIELDS];
            tly_err err = tly_engine_open_journal(val.mv_data, val.mv_size, "apex", 4, period, &id,
                                                  &idlen, f);
            if (err == TLY_NOT_FOUND) {
                other++;
                continue;
            }
            ck_assert_int_eq(err, TLY_OK);
            ck_assert(idlen == key.mv_size - plen &&
                      memcmp(id, (const char *)key.mv_data + plen, idlen) == 0);
            for (unsigned i = 0; i < TLY_ENGINE_ACT_FIELDS; i++)
                sums[i] += f[i];
            found++;
            ck_assert_int_eq(tly_engine_open_journal(val.mv_data, val.mv_size, "nimbus", 6, period,
                                                     &id, &idlen, f),
                             TLY_NOT_FOUND);
            if (checked++ < 3)
                expect_cuts_corrupt(val.mv_data, val.mv_size, period);
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        mdb_env_close(env);
        tly_views_close(v);
    }
    ck_assert_uint_gt(found, 0);
    ck_assert_uint_gt(other, 0); /* the other shard's partners, nimbus's members */
    for (unsigned i = 0; i < TLY_ENGINE_ACT_FIELDS; i++) {
        const char *name = tly_engine_act_name(i);
        json_t *want = json_object_get(last, name);
        ck_assert_msg(want != NULL, "report has no %s", name);
        /* an open period's rebate in the report is the estimate; the
         * records book the final figure at the close only [JN2] */
        int64_t w = strcmp(name, "rebate") == 0 ? 0 : json_integer_value(want);
        ck_assert_msg(sums[i] == w, "%s: records %lld, report %lld", name, (long long)sums[i],
                      (long long)w);
    }
    json_decref(report);
}
END_TEST

/* A raw write transaction on the one-shard store of data. */
typedef struct raw_store {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw_store;

static void raw_open(const char *data, raw_store *rs)
{
    char dir[1200];
    ck_assert_int_eq(tly_views_path(data, 0, 1, dir, sizeof dir), TLY_OK);
    ck_assert_int_eq(mdb_env_create(&rs->env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(rs->env, 8), 0);
    ck_assert_int_eq(mdb_env_open(rs->env, dir, 0, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(rs->env, NULL, 0, &rs->txn), 0);
    ck_assert_int_eq(mdb_dbi_open(rs->txn, "views", 0, &rs->dbi), 0);
}

static void raw_put(raw_store *rs, const char *key, const void *val, size_t len)
{
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    ck_assert_int_eq(mdb_put(rs->txn, rs->dbi, &k, &v, 0), 0);
}

static void raw_commit(raw_store *rs)
{
    ck_assert_int_eq(mdb_txn_commit(rs->txn), 0);
    mdb_env_close(rs->env);
}

/* A copy of the one-shard fixture store (mdb_env_copy) in a new data
 * directory, for a test to add rows to. */
static char *fixture_copy(void)
{
    char *data = tu_tmpdir(), from[1200], to[1200];
    ck_assert_int_eq(tly_views_path(g_data[0], 0, 1, from, sizeof from), TLY_OK);
    ck_assert_int_eq(tly_views_path(data, 0, 1, to, sizeof to), TLY_OK);
    char views[1200];
    snprintf(views, sizeof views, "%s/views", data);
    ck_assert_int_eq(mkdir(views, 0755), 0);
    ck_assert_int_eq(mkdir(to, 0755), 0);
    MDB_env *env;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
    ck_assert_int_eq(mdb_env_open(env, from, MDB_RDONLY, 0644), 0);
    ck_assert_int_eq(mdb_env_copy(env, to), 0);
    mdb_env_close(env);
    return data;
}

/* The suggestions of a balance asked for the unknown partner want. */
static json_t *suggestions_for(const char *data, const char *want)
{
    json_t *r = ask(data, 1, json_pack("{s:s, s:s}", "q", "balance", "partner", want));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "not_found");
    return r;
}

/* TLY_QUERY_SUGGESTIONS_MAX: an unknown partner's error names every near
 * id while there are that many, and the nearest that many (by distance,
 * then id) when there are more; the message lists the same ids. Near ids
 * are added as copies of a member's record under new keys. */
START_TEST(test_suggestions_max)
{
    char *data = fixture_copy();
    raw_store rs;
    raw_open(data, &rs);
    char key[64];
    snprintf(key, sizeof key, "%sdatum-msp-614", TLY_ENGINE_PARTNER_PREFIX);
    MDB_val k = {strlen(key), key}, v;
    ck_assert_int_eq(mdb_get(rs.txn, rs.dbi, &k, &v), 0);
    char *rec = malloc(v.mv_size);
    memcpy(rec, v.mv_data, v.mv_size);
    size_t len = v.mv_size;
    /* datum-msp-614 and these are all one edit from "datum-msp-61" */
    for (unsigned d = 0; d + 1 < TLY_QUERY_SUGGESTIONS_MAX; d++) {
        snprintf(key, sizeof key, "%sdatum-msp-61%u", TLY_ENGINE_PARTNER_PREFIX, d);
        raw_put(&rs, key, rec, len);
    }
    raw_commit(&rs);
    json_t *r = suggestions_for(data, "datum-msp-61");
    json_t *near = json_object_get(r, "suggestions");
    ck_assert_uint_eq(json_array_size(near), TLY_QUERY_SUGGESTIONS_MAX);
    ck_assert_str_eq(json_string_value(json_array_get(near, TLY_QUERY_SUGGESTIONS_MAX - 1)),
                     "datum-msp-614");
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(r, "message")), "'datum-msp-614'?"));
    json_decref(r);
    /* one more near id: the last by id (datum-msp-614) is cut */
    raw_open(data, &rs);
    snprintf(key, sizeof key, "%sdatum-msp-61%u", TLY_ENGINE_PARTNER_PREFIX,
             TLY_QUERY_SUGGESTIONS_MAX - 1);
    raw_put(&rs, key, rec, len);
    raw_commit(&rs);
    free(rec);
    r = suggestions_for(data, "datum-msp-61");
    near = json_object_get(r, "suggestions");
    ck_assert_uint_eq(json_array_size(near), TLY_QUERY_SUGGESTIONS_MAX);
    const char *msg = json_string_value(json_object_get(r, "message"));
    for (unsigned d = 0; d < TLY_QUERY_SUGGESTIONS_MAX; d++) {
        char id[32], quoted[40];
        snprintf(id, sizeof id, "datum-msp-61%u", d);
        snprintf(quoted, sizeof quoted, "'%s'", id);
        ck_assert_str_eq(json_string_value(json_array_get(near, d)), id);
        ck_assert_ptr_nonnull(strstr(msg, quoted));
    }
    ck_assert_ptr_null(strstr(msg, "datum-msp-614"));
    json_decref(r);
    tu_rmtree(data);
}
END_TEST

/* A one-period report document of program "far" (months from 2000-01)
 * whose one row is `after` periods after its first. */
static json_t *far_report(const char *data, int32_t after)
{
    int32_t first;
    tly_period_kind kind;
    ck_assert_int_eq(tly_period_parse("2000-01", 7, &kind, &first), TLY_OK);
    char row[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(kind, first + after, row);
    char *doc = NULL;
    ck_assert_int_ge(
        asprintf(&doc,
                 "{\"program\":\"far\",\"currency\":\"USD\",\"first\":\"2000-01\","
                 "\"open\":\"2000-02\",\"periods\":[{\"period\":\"%s\",\"revenue\":1}]}",
                 row),
        0);
    raw_store rs;
    raw_open(data, &rs);
    raw_put(&rs, "V/R/far", doc, strlen(doc));
    raw_commit(&rs);
    free(doc);
    return ask(data, 1, json_pack("{s:s, s:s}", "q", "report", "program", "far"));
}

/* TLY_PERIODS_REPORT_MAX: a report spans that many periods from the
 * program's first; a stored row one period later is a corrupt store, said
 * so with the bound, not an answer. */
START_TEST(test_report_periods_max)
{
    char *data = fixture_copy();
    json_t *r = far_report(data, (int32_t)TLY_PERIODS_REPORT_MAX - 1);
    ck_assert_ptr_null(json_object_get(r, "error"));
    json_t *periods = json_object_get(r, "periods");
    ck_assert_uint_eq(json_array_size(periods), TLY_PERIODS_REPORT_MAX);
    json_t *last = json_array_get(periods, TLY_PERIODS_REPORT_MAX - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "revenue")), 1);
    json_decref(r);
    r = far_report(data, (int32_t)TLY_PERIODS_REPORT_MAX);
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "corrupt");
    char says[64];
    snprintf(says, sizeof says, "%u or more periods after", TLY_PERIODS_REPORT_MAX);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "message")), says));
    json_decref(r);
    tu_rmtree(data);
}
END_TEST

/* A store of two quarterly programs of 2025, "neg" and "neg2" (whose key
 * "V/R/neg2" starts with "V/R/neg"): a sale of neg's p1 in 2025-Q1, the
 * close of 2025-Q1, then an adjustment of -100 MDF, so in 2025-Q2 [RP1];
 * neg2's q1 sells 5,000 in 2025-Q1 and 2025-Q3. */
static char *two_programs_store(void)
{
    static const char *const events[][2] = {
        {"finance", "{\"type\":\"program\",\"id\":\"G-%s\",\"at\":1735689600000,\"program\":"
                    "\"%s\",\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\","
                    "\"mdf_expiry_periods\":4,\"tier_window_periods\":1,\"rebate\":{\"mode\":"
                    "\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":0}]},\"tiers\":[{\"name\":"
                    "\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":1000}]}"},
        {"finance", "{\"type\":\"partner\",\"id\":\"P-%s\",\"at\":1735689700000,\"partner\":"
                    "\"%s-p\",\"name\":\"One\",\"program\":\"%s\",\"kind\":\"var\"}"},
    };
    stream st = {0};
    char ev[1024];
    static const char *const programs[] = {"neg", "neg2"};
    for (int g = 0; g < 2; g++) {
        snprintf(ev, sizeof ev, events[0][1], programs[g], programs[g]);
        stream_push_json(&st, events[0][0], ev);
        snprintf(ev, sizeof ev, events[1][1], programs[g], programs[g], programs[g]);
        stream_push_json(&st, events[1][0], ev);
    }
    stream_push_json(&st, "dist",
                     "{\"type\":\"sale\",\"id\":\"S-1\",\"at\":1738368000000,\"partner\":\"neg-p\","
                     "\"sku\":\"SKU-1\",\"qty\":1,\"amount\":10000,\"currency\":\"USD\"}");
    stream_push_json(
        &st, "dist",
        "{\"type\":\"sale\",\"id\":\"S-2\",\"at\":1738368000000,\"partner\":"
        "\"neg2-p\",\"sku\":\"SKU-1\",\"qty\":1,\"amount\":5000,\"currency\":\"USD\"}");
    stream_push_json(
        &st, "dist",
        "{\"type\":\"sale\",\"id\":\"S-3\",\"at\":1752000000000,\"partner\":"
        "\"neg2-p\",\"sku\":\"SKU-1\",\"qty\":1,\"amount\":5000,\"currency\":\"USD\"}");
    stream_push_json(&st, "finance",
                     "{\"type\":\"close\",\"id\":\"C-1\",\"at\":1743465600000,\"program\":\"neg\","
                     "\"period\":\"2025-Q1\"}");
    stream_push_json(&st, "finance",
                     "{\"type\":\"adjust\",\"id\":\"A-1\",\"at\":1743552000000,\"partner\":"
                     "\"neg-p\",\"account\":\"mdf\",\"amount\":-100,\"reason\":\"correction\"}");
    char *data = tu_tmpdir();
    fold_committed(data, &st, 0, 1);
    stream_free(&st);
    return data;
}

/* [RP4] The report runs to the latest period with a non-zero figure,
 * whatever its sign: neg's 2025-Q2, whose one figure is the adjustment of
 * -100, is its last row; and neg's report sums neg's documents only, not
 * those of neg2, whose name neg's starts (nor is "ne", which starts
 * both, a program). */
START_TEST(test_report_negative_last)
{
    char *data = two_programs_store();
    json_t *r = ask(data, 1, json_pack("{s:s, s:s}", "q", "report", "program", "neg"));
    json_t *periods = json_object_get(r, "periods");
    ck_assert_uint_eq(json_array_size(periods), 2);
    json_t *q1 = json_array_get(periods, 0), *q2 = json_array_get(periods, 1);
    ck_assert_str_eq(json_string_value(json_object_get(q1, "status")), "closed");
    ck_assert_int_eq(json_integer_value(json_object_get(q1, "revenue")), 10000);
    ck_assert_int_eq(json_integer_value(json_object_get(q1, "mdf_accrued")), 1000);
    ck_assert_str_eq(json_string_value(json_object_get(q2, "period")), "2025-Q2");
    ck_assert_str_eq(json_string_value(json_object_get(q2, "status")), "open");
    ck_assert_int_eq(json_integer_value(json_object_get(q2, "mdf_adjusted")), -100);
    static const char *const zero[] = {"revenue",     "mdf_accrued",  "mdf_clawed_back",
                                       "mdf_expired", "mdf_approved", "mdf_paid",
                                       "rebate",      "referral",     "rebate_paid"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        ck_assert_msg(json_integer_value(json_object_get(q2, zero[i])) == 0, "2025-Q2 %s", zero[i]);
    json_decref(r);
    /* neg2's own report: its two sales, in 2025-Q1 and 2025-Q3 */
    r = ask(data, 1, json_pack("{s:s, s:s}", "q", "report", "program", "neg2"));
    periods = json_object_get(r, "periods");
    ck_assert_uint_eq(json_array_size(periods), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(periods, 0), "revenue")),
                     5000);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(periods, 2), "revenue")),
                     5000);
    json_decref(r);
    /* the journal of neg's open 2025-Q2: the adjustment, a negative accrual
     * swapped [JN1]; of its closed 2025-Q1: the accrual */
    r = ask(data, 1,
            json_pack("{s:s, s:s, s:s}", "q", "journal", "program", "neg", "period", "2025-Q2"));
    json_t *want =
        json_pack("[{s:s, s:s, s:s, s:s, s:i}]", "partner", "neg-p", "kind", "mdf_accrual", "debit",
                  "mdf_liability", "credit", "contra_revenue_mdf", "amount", 100);
    expect_same(json_object_get(r, "entries"), want, "journal neg 2025-Q2");
    json_decref(want);
    json_decref(r);
    /* "ne" starts both names but is no program: its report and journal are
     * not found, not neg's or neg2's */
    r = ask(data, 1, json_pack("{s:s, s:s}", "q", "report", "program", "ne"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "not_found");
    json_decref(r);
    r = ask(data, 1,
            json_pack("{s:s, s:s, s:s}", "q", "journal", "program", "ne", "period", "2025-Q1"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "not_found");
    json_decref(r);
    tu_rmtree(data);
}
END_TEST

static void build_fixture(void)
{
    stream st = {0};
    load_vector_named(&st, "seed102-v2-events.jsonl");
    for (uint32_t n = 1; n <= 2; n++) {
        g_data[n - 1] = tu_tmpdir();
        for (uint32_t k = 0; k < n; k++)
            fold_committed(g_data[n - 1], &st, k, n);
    }
    stream_free(&st);
    char *path = tu_vector("seed102-v2-expected.json");
    json_t *all = json_load_file(path, 0, NULL);
    free(path);
    need(all != NULL);
    g_want = json_incref(json_object_get(all, "finance"));
    json_decref(all);
}

static Suite *finance_suite(void)
{
    Suite *s = suite_create("finance");
    TCase *tc = tu_tcase(s, "answers", 300);
    /* built once, in the runner, before the (forked) tests */
    tcase_add_unchecked_fixture(tc, build_fixture, NULL);
    tcase_add_loop_test(tc, test_partners, 0, 2);
    tcase_add_loop_test(tc, test_report, 0, 2);
    tcase_add_loop_test(tc, test_partners_pages, 0, 2);
    tcase_add_loop_test(tc, test_expiring, 0, 2);
    tcase_add_loop_test(tc, test_journal, 0, 2);
    tcase_add_loop_test(tc, test_journal_ties_to_report, 0, 2);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_open_journal_records);
    tcase_add_test(tc, test_journal_chunks);
    tcase_add_loop_test(tc, test_fast_same_bytes, 0, 2);
    tcase_add_test(tc, test_suggestions_max);
    tcase_add_test(tc, test_report_periods_max);
    tcase_add_test(tc, test_report_negative_last);
    return s;
}

int main(void)
{
    int failed = tu_run_suite(finance_suite());
    json_decref(g_want);
    for (int i = 0; i < 2; i++)
        if (g_data[i] != NULL)
            tu_rmtree(g_data[i]);
    return failed;
}
