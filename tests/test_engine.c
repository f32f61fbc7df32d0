/*
 * test_engine.c — Check suite of the program engine (consumers/tly_engine.h):
 * the conformance vectors for 1, 2 and 4 shards, hand-computed scenarios
 * citing the SPEC section 9 rules they pin, long seeded random streams
 * (MDF invariant after every event, equality across shard counts), flush and
 * load against an uninterrupted fold, and a benchmark mode
 * (`test_engine --bench [EVENTS]`, not run by ctest), and the stored view
 * text checked byte for byte against json_dumps of the API objects.
 */
#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_base.h"
#include "engine_internal.h"
#include "engine_stage.h"
#include "engine_state.h"
#include "teststream.h"
#include "testutil.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_money.h"
#include "tly_period.h"
#include "tly_query.h"
#include "tly_xkind.h"

/* recorded_ms given to every test record: 2100-01-01, after every `at`. */
#define REC_MS INT64_C(4102444800000)
#define SHARDS_MAX 4

/* Quarter starts (Unix ms, UTC). */
#define Q1_25 INT64_C(1735689600000)
#define Q2_25 INT64_C(1743465600000)
#define Q3_25 INT64_C(1751328000000)
#define Q4_25 INT64_C(1759276800000)
#define DAY INT64_C(86400000)

/* ---- engines for N shards, fed record by record ---- */

typedef struct shards {
    tly_engine *e[SHARDS_MAX];
    uint32_t n;
    uint64_t seq;
} shards;

static void shards_init(shards *s, uint32_t n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    for (uint32_t k = 0; k < n; k++)
        ck_assert_int_eq(tly_engine_new(k, n, &s->e[k]), TLY_OK);
}

static void shards_free(shards *s)
{
    for (uint32_t k = 0; k < s->n; k++)
        tly_engine_free(s->e[k]);
    memset(s, 0, sizeof *s);
}

static void shards_apply(shards *s, const char *source, const void *bytes, size_t len)
{
    tly_event ev;
    tly_field_error fe;
    tly_err err = tly_event_decode(bytes, len, REC_MS, &ev, &fe);
    ck_assert_msg(err == TLY_OK, "decode seq %" PRIu64 ": %s %s", s->seq + 1, fe.field, fe.message);
    tly_record rec = {.seq = ++s->seq,
                      .recorded_ms = REC_MS,
                      .source = {source, (uint32_t)strlen(source)},
                      .event = bytes,
                      .event_len = len};
    for (uint32_t k = 0; k < s->n; k++) {
        err = tly_engine_apply(s->e[k], &rec, &ev);
        ck_assert_msg(err == TLY_OK, "apply seq %" PRIu64 " shard %u: %s", rec.seq, k,
                      tly_err_name(err));
        /* the engine's own MDF invariant check, every partner, every event */
        ck_assert_msg(tly_engine_invariant_ok(s->e[k]),
                      "MDF invariant broken at seq %" PRIu64 " shard %u", rec.seq, k);
    }
}

static void shards_fold(shards *s, const stream *st, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        shards_apply(s, st->recs[i].source, st->recs[i].bytes, st->recs[i].len);
}

static tly_engine *owner(const shards *s, const char *partner)
{
    return s->e[tly_engine_shard_of(partner, strlen(partner), s->n)];
}

static json_t *view(const shards *s, char v, const char *partner)
{
    return tly_engine_view(owner(s, partner), v, partner);
}

/* All shards' exceptions, merged by the seq they were raised at (all
 * exceptions one record raises come from one shard, each shard's list is
 * in raise order). */
static json_t *merged_exceptions(const shards *s)
{
    json_t *lists[SHARDS_MAX], *order[SHARDS_MAX];
    size_t at[SHARDS_MAX] = {0};
    for (uint32_t k = 0; k < s->n; k++) {
        lists[k] = tly_engine_exceptions(s->e[k]);
        order[k] = tly_engine_exception_order(s->e[k]);
    }
    json_t *out = json_array();
    for (;;) {
        int best = -1;
        json_int_t best_seq = 0;
        for (uint32_t k = 0; k < s->n; k++) {
            json_t *x = json_array_get(lists[k], at[k]);
            if (x == NULL)
                continue;
            json_int_t seq = json_integer_value(json_array_get(order[k], at[k]));
            if (best < 0 || seq < best_seq) {
                best = (int)k;
                best_seq = seq;
            }
        }
        if (best < 0)
            break;
        json_array_append(out, json_array_get(lists[best], at[best]++));
    }
    for (uint32_t k = 0; k < s->n; k++) {
        json_decref(lists[k]);
        json_decref(order[k]);
    }
    return out;
}

/* Liabilities of all shards summed per program: the section 8 answer. */
static json_t *merged_liabilities(const shards *s)
{
    static const char *const sums[] = {"mdf_available", "mdf_pending", "mdf_approved",
                                       "rebate_accrued_open", "rebate_payable"};
    json_t *total = tly_engine_liabilities(s->e[0]);
    for (uint32_t k = 1; k < s->n; k++) {
        json_t *part = tly_engine_liabilities(s->e[k]);
        ck_assert_int_eq(json_array_size(part), json_array_size(total));
        for (size_t i = 0; i < json_array_size(part); i++) {
            json_t *t = json_array_get(total, i), *p = json_array_get(part, i);
            for (size_t f = 0; f < sizeof sums / sizeof sums[0]; f++) {
                json_int_t v = json_integer_value(json_object_get(t, sums[f])) +
                               json_integer_value(json_object_get(p, sums[f]));
                json_object_set_new(t, sums[f], json_integer(v));
            }
        }
        json_decref(part);
    }
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)s->seq));
    json_object_set_new(o, "programs", total);
    return o;
}

/* The path of the first difference of got and want into path (false
 * when they are equal). */
static bool first_diff(json_t *got, json_t *want, char *path, size_t cap)
{
    if (json_equal(got, want))
        return false;
    size_t used = strlen(path);
    if (json_is_object(got) && json_is_object(want)) {
        const char *k;
        json_t *w;
        json_object_foreach(want, k, w)
        {
            snprintf(path + used, cap - used, ".%s", k);
            if (first_diff(json_object_get(got, k), w, path, cap))
                return true;
        }
        snprintf(path + used, cap - used, " (keys)");
        return true;
    }
    if (json_is_array(got) && json_is_array(want) &&
        json_array_size(got) == json_array_size(want)) {
        for (size_t i = 0; i < json_array_size(want); i++) {
            snprintf(path + used, cap - used, "[%zu]", i);
            if (first_diff(json_array_get(got, i), json_array_get(want, i), path, cap))
                return true;
        }
    }
    path[used] = '\0';
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    snprintf(path + used, cap - used, ": got %.300s, want %.300s", g ? g : "(none)",
             w ? w : "null");
    free(g);
    free(w);
    return true;
}

/* json_equal, with the first difference in the failure message. */
static void expect_json(json_t *got, json_t *want, const char *what)
{
    char path[1024] = "";
    if (first_diff(got, want, path, sizeof path))
        ck_abort_msg("%s differs at %s", what, path);
}

/* ---- the conformance vectors ---- */

/* expect_json of got's projection on want's keys. */
static void expect_json_v1(json_t *got, json_t *want, const char *what)
{
    json_t *p = tu_json_project(got, want);
    expect_json(p, want, what);
    json_decref(p);
}

static void strip_detail(json_t *list)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        json_object_del(json_array_get(list, i), "detail");
}

/* A conformance vector: its events, its answers and the events the
 * ledger appends of them. */
typedef struct vector {
    const char *events, *expected;
    size_t appended;
} vector;

static const vector seed101 = {"seed101-events.jsonl", "seed101-expected.json", 3074};
static const vector seed102 = {"seed102-v2-events.jsonl", "seed102-v2-expected.json", 2910};

static void check_vector(const vector *v, uint32_t n)
{
    stream st = {0};
    load_vector_named(&st, v->events);
    ck_assert_uint_eq(st.count, v->appended);
    char *path = tu_vector(v->expected);
    json_t *want = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(want);
    shards s;
    shards_init(&s, n);
    shards_fold(&s, &st, 0, st.count);

    const char *partner;
    json_t *pv;
    static const struct {
        char v;
        const char *name;
    } views[] = {{'b', "balance"}, {'r', "rebate"}, {'t', "tier"}, {'c', "claims"}};
    json_object_foreach(json_object_get(want, "partners"), partner, pv)
    {
        for (size_t i = 0; i < 4; i++) {
            char what[256];
            snprintf(what, sizeof what, "N=%u %s of %s", n, views[i].name, partner);
            json_t *got = view(&s, views[i].v, partner);
            ck_assert_msg(got != NULL, "%s: no view", what);
            expect_json_v1(got, json_object_get(pv, views[i].name), what);
            json_decref(got);
        }
    }
    json_t *liab = merged_liabilities(&s);
    expect_json(liab, json_object_get(want, "liabilities"), "liabilities");
    json_decref(liab);
    json_t *got_x = merged_exceptions(&s);
    json_t *want_x =
        json_deep_copy(json_object_get(json_object_get(want, "exceptions"), "exceptions"));
    strip_detail(got_x);
    strip_detail(want_x);
    expect_json_v1(got_x, want_x, "exceptions (seq, kind, partner)");
    json_decref(got_x);
    json_decref(want_x);
    json_decref(want);
    free(path);
    shards_free(&s);
    stream_free(&st);
}

static const uint32_t shard_counts[] = {1, 2, 4};

START_TEST(vector_seed101)
{
    check_vector(&seed101, shard_counts[_i]);
}
END_TEST

/* Section 10 (program rules v2): every answer field, the new ones too. */
START_TEST(vector_seed102)
{
    check_vector(&seed102, shard_counts[_i]);
}
END_TEST

/* ---- hand-computed scenarios ---- */

/* Sends one JSON event (printf-style) from source to every shard. */
static void tsend(shards *s, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tsend(shards *s, const char *source, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    to_mp_text(text, &sb);
    shards_apply(s, source, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Event id counter: ids only need to be unique per source. */
static int next_id;

/* The test program "acme": USD, quarters, tiers Base 0/0 100 bps, Silver
 * 100000/1 200 bps, Gold 500000/2 300 bps; retroactive rebate 0:100,
 * 100000:200, 500000:300; MDF expires after 2 periods; window 1. */
static void program(shards *s, const char *name, int version, const char *currency,
                    const char *mode, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"program\",\"id\":\"P%d\",\"at\":%" PRId64 ",\"program\":\"%s\","
          "\"version\":%d,\"currency\":\"%s\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
          "{\"name\":\"Silver\",\"min_revenue\":100000,\"min_certs\":1,\"mdf_bps\":200},"
          "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":300}],"
          "\"rebate\":{\"mode\":\"%s\",\"brackets\":[{\"from\":0,\"bps\":100},"
          "{\"from\":100000,\"bps\":200},{\"from\":500000,\"bps\":300}]},"
          "\"mdf_expiry_periods\":2,\"tier_window_periods\":1}",
          ++next_id, at, name, version, currency, mode);
}

static void enroll(shards *s, const char *partner, const char *prog, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"partner\",\"id\":\"E%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"name\":\"%s\",\"program\":\"%s\",\"kind\":\"var\"}",
          ++next_id, at, partner, partner, prog);
}

static void sale(shards *s, const char *src, const char *id, const char *partner, int64_t amount,
                 const char *cur, int64_t at)
{
    tsend(s, src,
          "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"sku\":\"X\",\"qty\":1,\"amount\":%" PRId64 ",\"currency\":\"%s\"}",
          id, at, partner, amount, cur);
}

static void ret(shards *s, const char *src, const char *sale_id, const char *partner,
                int64_t amount, const char *cur, int64_t at)
{
    tsend(s, src,
          "{\"type\":\"return\",\"id\":\"R%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"sale\":\"%s\",\"qty\":1,\"amount\":%" PRId64 ",\"currency\":\"%s\"}",
          ++next_id, at, partner, sale_id, amount, cur);
}

static void cert(shards *s, const char *partner, const char *person, const char *action, int64_t at)
{
    tsend(s, "certs",
          "{\"type\":\"certification\",\"id\":\"C%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"person\":\"%s\",\"cert\":\"sales\",\"action\":\"%s\"}",
          ++next_id, at, partner, person, action);
}

/* amount < 0: no amount field. */
static void claim(shards *s, const char *partner, const char *id, const char *action,
                  int64_t amount, int64_t at)
{
    char amt[64] = "";
    if (amount >= 0)
        snprintf(amt, sizeof amt, ",\"amount\":%" PRId64, amount);
    tsend(s, "portal",
          "{\"type\":\"claim\",\"id\":\"K%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"claim\":\"%s\",\"action\":\"%s\"%s}",
          ++next_id, at, partner, id, action, amt);
}

static void close_period(shards *s, const char *prog, const char *period, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"close\",\"id\":\"L%d\",\"at\":%" PRId64 ",\"program\":\"%s\","
          "\"period\":\"%s\"}",
          ++next_id, at, prog, period);
}

static void payout(shards *s, const char *partner, const char *period, int64_t amount, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"payout\",\"id\":\"Y%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"period\":\"%s\",\"amount\":%" PRId64 "}",
          ++next_id, at, partner, period, amount);
}

static void adjust(shards *s, const char *partner, const char *account, int64_t amount, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"adjust\",\"id\":\"A%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
          "\"account\":\"%s\",\"amount\":%" PRId64 ",\"reason\":\"test\"}",
          ++next_id, at, partner, account, amount);
}

/* An integer field of a view; path "a" or "a.i.b" (array index i). */
static int64_t vint(const shards *s, char v, const char *partner, const char *path)
{
    json_t *doc = view(s, v, partner);
    ck_assert_msg(doc != NULL, "no view of %s", partner);
    json_t *cur = doc;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok != NULL && cur != NULL; tok = strtok(NULL, ".")) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)atoi(tok));
        else
            cur = json_object_get(cur, tok);
    }
    ck_assert_msg(json_is_integer(cur), "%s of %s is not an integer", path, partner);
    int64_t out = json_integer_value(cur);
    json_decref(doc);
    return out;
}

/* A string field of a view, compared. */
static void vstr_eq(const shards *s, char v, const char *partner, const char *path,
                    const char *want)
{
    json_t *doc = view(s, v, partner);
    ck_assert_ptr_nonnull(doc);
    json_t *cur = doc;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok != NULL && cur != NULL; tok = strtok(NULL, ".")) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)atoi(tok));
        else
            cur = json_object_get(cur, tok);
    }
    ck_assert_msg(json_is_string(cur), "%s of %s is not a string", path, partner);
    ck_assert_str_eq(json_string_value(cur), want);
    json_decref(doc);
}

/* The exceptions as "seq:kind:partner" lines, for compact comparisons. */
static char *exc_text(const shards *s)
{
    json_t *list = merged_exceptions(s);
    size_t cap = 64 + json_array_size(list) * 160;
    char *out = calloc(1, cap);
    size_t at = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *x = json_array_get(list, i);
        json_t *p = json_object_get(x, "partner");
        at += (size_t)snprintf(out + at, cap - at, "%" PRId64 ":%s:%s\n",
                               (int64_t)json_integer_value(json_object_get(x, "seq")),
                               json_string_value(json_object_get(x, "kind")),
                               json_is_string(p) ? json_string_value(p) : "-");
    }
    json_decref(list);
    return out;
}

static void expect_excs(const shards *s, const char *want)
{
    char *got = exc_text(s);
    ck_assert_msg(strcmp(got, want) == 0, "exceptions\n got:\n%s want:\n%s", got, want);
    free(got);
}

/* The MDF invariant of SPEC section 6, read from the balance view. */
static void expect_invariant(const shards *s, const char *partner)
{
    json_t *b = view(s, 'b', partner);
    ck_assert_ptr_nonnull(b);
#define F(k) ((int64_t)json_integer_value(json_object_get(b, k)))
    int64_t lhs = F("accrued") - F("clawed_back") + F("adjusted") - F("expired") - F("pending") -
                  F("approved") - F("paid");
    int64_t sum = 0;
    json_t *bk = json_object_get(b, "buckets");
    for (size_t i = 0; i < json_array_size(bk); i++)
        sum += json_integer_value(json_object_get(json_array_get(bk, i), "remaining"));
    ck_assert_msg(lhs == F("available") && sum - F("deficit") == F("available"),
                  "MDF invariant broken for %s at seq %" PRId64, partner, F("seq"));
#undef F
    json_decref(b);
}

START_TEST(rhe_cases)
{
    /* rhe: ties to even, both signs; non-ties to nearest. */
    ck_assert_int_eq(tly_round_half_even(5, 2), 2);   /* 2.5 -> 2 (even down) */
    ck_assert_int_eq(tly_round_half_even(7, 2), 4);   /* 3.5 -> 4 (odd up) */
    ck_assert_int_eq(tly_round_half_even(1, 2), 0);   /* 0.5 -> 0 */
    ck_assert_int_eq(tly_round_half_even(-5, 2), -2); /* -2.5 -> -2 */
    ck_assert_int_eq(tly_round_half_even(-7, 2), -4); /* -3.5 -> -4 */
    ck_assert_int_eq(tly_round_half_even(-1, 2), 0);  /* -0.5 -> 0 */
    ck_assert_int_eq(tly_round_half_even(5, 3), 2);   /* 1.67 -> 2 */
    ck_assert_int_eq(tly_round_half_even(4, 3), 1);   /* 1.33 -> 1 */
    ck_assert_int_eq(tly_round_half_even(-5, 3), -2);
    ck_assert_int_eq(tly_round_half_even(-4, 3), -1);
    ck_assert_int_eq(tly_round_half_even(INT64_MIN, 1), INT64_MIN);
    ck_assert_int_eq(tly_round_half_even(INT64_MAX, 2), INT64_MAX / 2 + 1); /* .5, odd */
    /* bps products: 474.5 -> 474 (the vector's case), 475.5 -> 476,
     * 1.5 -> 2, 2.5 -> 2, -2.5 -> -2, 2.51 -> 3. */
    ck_assert_int_eq(tly_money_bps(14600, 325), 474);
    ck_assert_int_eq(tly_money_bps(150, 100), 2);
    ck_assert_int_eq(tly_money_bps(250, 100), 2);
    ck_assert_int_eq(tly_money_bps(-250, 100), -2);
    ck_assert_int_eq(tly_money_bps(-350, 100), -4);
    ck_assert_int_eq(tly_money_bps(251, 100), 3);
    ck_assert_int_eq(tly_money_bps(INT64_MAX, 10000), INT64_MAX);
    /* a sum of slices is rounded once: 0.5 + 0.5 + 0.5 = 1.5 -> 2 */
    tly_bps_sum sum = {0, 0};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(tly_bps_sum_add(&sum, 50, 100), TLY_OK);
    int64_t out;
    ck_assert_int_eq(tly_bps_sum_round(&sum, &out), TLY_OK);
    ck_assert_int_eq(out, 2);
    ck_assert_int_eq(tly_money_add(INT64_MAX, 1, &out), TLY_OVERFLOW);
    ck_assert_int_eq(tly_money_sub(INT64_MIN, 1, &out), TLY_OVERFLOW);
    ck_assert_int_eq(tly_money_mul(INT64_MAX / 2 + 1, 2, &out), TLY_OVERFLOW);
    ck_assert_int_eq(out, 2); /* untouched on overflow */
}
END_TEST

/* [P2] [P3] late data lands in the earliest open period and is flagged. */
START_TEST(late_lands_in_open_period)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);  /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                      /* 2 */
    close_period(&s, "acme", "2025-Q1", Q2_25 + DAY);     /* 3 */
    sale(&s, "d", "S1", "p1", 10000, "USD", Q1_25 + DAY); /* 4: late, lands in Q2 */
    sale(&s, "d", "S2", "p1", 10000, "USD", Q3_25 + DAY); /* 5: a future period [P4] */
    expect_excs(&s, "4:late:p1\n");
    vstr_eq(&s, 'b', "p1", "buckets.0.period", "2025-Q2");
    ck_assert_int_eq(vint(&s, 'b', "p1", "buckets.0.remaining"), 100);
    vstr_eq(&s, 'b', "p1", "buckets.1.period", "2025-Q3");
    vstr_eq(&s, 'r', "p1", "periods.0.period", "2025-Q2");
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 10000);
    vstr_eq(&s, 'r', "p1", "periods.1.status", "open");
    ck_assert_int_eq(vint(&s, 'r', "p1", "accrued_open"), 200); /* both rows open [P4] */
    shards_free(&s);
}
END_TEST

/* [E3] [D7] held events fold at enrollment in log order with their own
 * seqs; [E2] an unknown program leaves the partner unenrolled; exceptions
 * are an append-only history [D6]. */
START_TEST(held_fold_at_enrollment)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    ret(&s, "d", "S1", "p1", 100, "USD", Q1_25 + DAY);     /* 2: held, folds before S1 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 3: held */
    cert(&s, "p1", "ann", "earned", Q1_25 + DAY);          /* 4: held */
    enroll(&s, "p1", "nope", Q1_25 + DAY);                 /* 5: unknown program */
    ret(&s, "d", "S1", "p1", 30000, "USD", Q1_25 + DAY);   /* 6: held */
    close_period(&s, "acme", "2025-Q1", Q2_25 + DAY);      /* 7 */
    enroll(&s, "p1", "acme", Q2_25 + DAY);                 /* 8: folds 2, 3, 4, 6 */
    /* listed as raised: the held events' own exceptions come with the
     * enrollment (seq 8) that folds them, each with its own seq [D7] */
    expect_excs(&s, "2:held:p1\n3:held:p1\n4:held:p1\n5:unknown_program:p1\n6:held:p1\n"
                    "2:unknown_sale:p1\n3:late:p1\n6:late:p1\n");
    /* 100000 at 100 bps = 1000, return 30000 claws 300; all lands in Q2 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 1000);
    ck_assert_int_eq(vint(&s, 'b', "p1", "clawed_back"), 300);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 70000);
    ck_assert_int_eq(vint(&s, 't', "p1", "active_certs"), 1);
    shards_free(&s);
}
END_TEST

/* [C4] partial approval: the unapproved part is released newest first; a
 * share whose bucket expired goes to expired [G5] [M4]. */
START_TEST(partial_approval_into_expired_bucket)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                       /* 2 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 3: Q1 bucket 1000 */
    sale(&s, "d", "S2", "p1", 50000, "USD", Q2_25 + DAY);  /* 4: Q2 bucket 500 */
    claim(&s, "p1", "c1", "submit", 1200, Q2_25 + DAY);    /* 5: Q1 gives 1000, Q2 200 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 300);
    close_period(&s, "acme", "2025-Q1", Q2_25 + DAY); /* 6 */
    close_period(&s, "acme", "2025-Q2", Q3_25 + DAY); /* 7: Q1 expires (0 left) */
    vstr_eq(&s, 'b', "p1", "buckets.0.period", "2025-Q2");
    vstr_eq(&s, 'b', "p1", "buckets.0.expires_after", "2025-Q3"); /* A + N - 1 [M4] */
    /* Approve 300 of 1200: release 900 newest first: 200 back to Q2 (live),
     * then 700 of Q1's share to expired. */
    claim(&s, "p1", "c1", "approve", 300, Q3_25 + DAY); /* 8 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "expired"), 700);
    ck_assert_int_eq(vint(&s, 'b', "p1", "pending"), 0);
    ck_assert_int_eq(vint(&s, 'b', "p1", "approved"), 300);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 500);
    ck_assert_int_eq(vint(&s, 'b', "p1", "buckets.0.remaining"), 500);
    claim(&s, "p1", "c1", "pay", 100, Q3_25 + DAY); /* 9: partial */
    vstr_eq(&s, 'c', "p1", "claims.0.status", "approved");
    claim(&s, "p1", "c1", "pay", 200, Q3_25 + DAY); /* 10 */
    vstr_eq(&s, 'c', "p1", "claims.0.status", "paid");
    ck_assert_int_eq(vint(&s, 'b', "p1", "paid"), 300);
    expect_invariant(&s, "p1");
    expect_excs(&s, "");
    shards_free(&s);
}
END_TEST

/* [M6] a clawback beyond the buckets is a deficit; [M1] a later accrual
 * and a release pay the deficit first; [M2] the deficit never expires. */
START_TEST(clawback_deficit_paid_by_credit)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                       /* 2 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 3: 1000 */
    claim(&s, "p1", "c1", "submit", 1000, Q1_25 + DAY);    /* 4: reserves all */
    ret(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY);  /* 5: claws 1000 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 1000);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), -1000);
    sale(&s, "d", "S2", "p1", 50000, "USD", Q1_25 + DAY); /* 6: 500 pays deficit */
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 500);
    json_t *b = view(&s, 'b', "p1");
    ck_assert_int_eq(json_array_size(json_object_get(b, "buckets")), 0);
    json_decref(b);
    close_period(&s, "acme", "2025-Q1", Q2_25); /* 7 */
    close_period(&s, "acme", "2025-Q2", Q3_25); /* 8: deficit stays [M2] */
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 500);
    /* The claim's share was in Q1, now expired: the release goes to expired
     * and does not pay the deficit. */
    claim(&s, "p1", "c1", "reject", -1, Q3_25); /* 9 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "expired"), 1000);
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 500);
    claim(&s, "p1", "c2", "submit", 1, Q3_25);            /* 10: denied */
    sale(&s, "d", "S3", "p1", 80000, "USD", Q3_25 + DAY); /* 11: 800: 500 deficit */
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 0);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 300);
    /* A live release pays the deficit first [M1]. */
    claim(&s, "p1", "c3", "submit", 300, Q3_25 + DAY); /* 12 */
    adjust(&s, "p1", "mdf", -200, Q3_25 + DAY);        /* 13: deficit 200 */
    claim(&s, "p1", "c3", "cancel", -1, Q3_25 + DAY);  /* 14: 200 pays it, 100 back */
    ck_assert_int_eq(vint(&s, 'b', "p1", "deficit"), 0);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 100);
    ck_assert_int_eq(vint(&s, 'b', "p1", "buckets.0.remaining"), 100);
    expect_invariant(&s, "p1");
    expect_excs(&s, "10:insufficient_funds:p1\n");
    vstr_eq(&s, 'c', "p1", "claims.1.reason", "insufficient_funds");
    shards_free(&s);
}
END_TEST

/* [R1] [R2] retroactive vs incremental at bracket edges R = from - 1,
 * from, from + 1 (bracket 100000 at 200 bps over 0 at 100 bps). */
START_TEST(rebate_bracket_edges)
{
    static const struct {
        int64_t r;
        int32_t bps;
        int64_t retro, incr;
    } cases[] = {
        {99999, 100, 1000, 1000},  /* 999.99 both */
        {100000, 200, 2000, 1000}, /* retro: all at 2 %; incr: 1000 + 0 */
        {100001, 200, 2000, 1000}, /* 2000.02; 1000 + 0.02 */
        {100075, 200, 2002, 1002}, /* 2001.5 -> 2002; 1000 + 1.5 -> 1002 (ties even) */
    };
    shards s;
    shards_init(&s, 1);
    program(&s, "retro", 1, "USD", "retroactive", Q1_25);
    program(&s, "incr", 1, "USD", "incremental", Q1_25);
    char name[32], id[48];
    for (int i = 0; i < 4; i++) {
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "%s%d", m ? "i" : "r", i);
            snprintf(id, sizeof id, "S%s", name);
            enroll(&s, name, m ? "incr" : "retro", Q1_25);
            sale(&s, "d", id, name, cases[i].r, "USD", Q1_25 + DAY);
        }
    }
    close_period(&s, "retro", "2025-Q1", Q2_25);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "r%d", i);
        int64_t want = cases[i].retro;
        ck_assert_int_eq(vint(&s, 'r', name, "periods.0.rebate"), want);
        ck_assert_int_eq(vint(&s, 'r', name, "periods.0.rate_bps"), cases[i].bps);
        vstr_eq(&s, 'r', name, "periods.0.status", "final");
        ck_assert_int_eq(vint(&s, 'r', name, "payable"), want);
        snprintf(name, sizeof name, "i%d", i);
        ck_assert_int_eq(vint(&s, 'r', name, "periods.0.rebate"), cases[i].incr);
        ck_assert_int_eq(vint(&s, 'r', name, "periods.0.rate_bps"), cases[i].bps);
        vstr_eq(&s, 'r', name, "periods.0.status", "open");
        ck_assert_int_eq(vint(&s, 'r', name, "accrued_open"), cases[i].incr);
    }
    shards_free(&s);
}
END_TEST

/* [T1] [T2] [T3] [T4] [G7] tier upgrade and downgrade, with history. */
START_TEST(tier_upgrade_downgrade)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);             /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                                 /* 2 */
    cert(&s, "p1", "ann", "earned", Q1_25);                          /* 3 */
    cert(&s, "p1", "ann", "earned", Q1_25);                          /* 4: again: no change [T4] */
    cert(&s, "p1", "bob", "revoked", Q1_25);                         /* 5: cert_not_active */
    sale(&s, "d", "S1", "p1", 600000, "USD", Q1_25 + DAY);           /* 6 */
    ck_assert_int_eq(vint(&s, 't', "p1", "window_revenue"), 600000); /* [T2] */
    vstr_eq(&s, 't', "p1", "next.tier", "Silver");
    ck_assert_int_eq(vint(&s, 't', "p1", "next.revenue_needed"), 0); /* floored [T3] */
    ck_assert_int_eq(vint(&s, 't', "p1", "next.certs_needed"), 0);
    close_period(&s, "acme", "2025-Q1", Q2_25); /* 7: Silver (1 cert) [G7] */
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    vstr_eq(&s, 't', "p1", "history.0.period", "2025-Q1");
    ck_assert_int_eq(vint(&s, 't', "p1", "history.0.seq"), 7);
    ck_assert_int_eq(vint(&s, 't', "p1", "next.certs_needed"), 1);
    ck_assert_int_eq(vint(&s, 't', "p1", "next.revenue_needed"), 500000);
    sale(&s, "d", "S2", "p1", 10000, "USD", Q2_25 + DAY); /* 8: 200 bps now */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 6000 + 200);
    cert(&s, "p1", "bob", "earned", Q2_25);     /* 9 */
    close_period(&s, "acme", "2025-Q2", Q3_25); /* 10: 10000 < 100000: Base */
    vstr_eq(&s, 't', "p1", "tier", "Base");
    vstr_eq(&s, 't', "p1", "history.1.from", "Silver");
    vstr_eq(&s, 't', "p1", "history.1.to", "Base");
    close_period(&s, "acme", "2025-Q3", Q4_25); /* 11: no change: no entry */
    json_t *t = view(&s, 't', "p1");
    ck_assert_int_eq(json_array_size(json_object_get(t, "history")), 2);
    json_decref(t);
    expect_excs(&s, "5:cert_not_active:p1\n");
    shards_free(&s);
}
END_TEST

/* [G1] [G2] [G3] [G8] program versions. */
START_TEST(program_versions)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                       /* 2 */
    enroll(&s, "p2", "acme", Q1_25);                       /* 3 */
    cert(&s, "p1", "ann", "earned", Q1_25);                /* 4 */
    sale(&s, "d", "S1", "p1", 150000, "USD", Q1_25 + DAY); /* 5 */
    close_period(&s, "acme", "2025-Q1", Q2_25);            /* 6: p1 Silver */
    vstr_eq(&s, 'b', "p1", "tier", "Silver");
    /* v2 without Silver, Base renamed: both partners drop [G3] */
    tsend(&s, "fin",
          "{\"type\":\"program\",\"id\":\"V2\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":2,\"currency\":\"USD\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Entry\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":50},"
          "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":300}],"
          "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,\"bps\":1000}]},"
          "\"mdf_expiry_periods\":3,\"tier_window_periods\":1}",
          Q2_25); /* 7 */
    vstr_eq(&s, 't', "p1", "history.1.from", "Silver");
    vstr_eq(&s, 't', "p1", "history.1.to", "Entry");
    vstr_eq(&s, 't', "p1", "history.1.period", "2025-Q2");
    ck_assert_int_eq(vint(&s, 't', "p1", "history.1.seq"), 7);
    vstr_eq(&s, 't', "p2", "history.0.from", "Base");
    sale(&s, "d", "S2", "p1", 10000, "USD", Q2_25 + DAY); /* 8: 50 bps */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 1500 + 50);
    /* the final Q1 figure stays; the open Q2 row follows the new rules [G4] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.rebate"), 3000);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.1.rebate"), 1000);
    vstr_eq(&s, 'b', "p1", "buckets.1.expires_after", "2025-Q4"); /* new N [M4] */
    program(&s, "acme", 2, "USD", "retroactive", Q2_25);          /* 9: stale [G8] */
    program(&s, "acme", 1, "USD", "retroactive", Q2_25);          /* 10: stale */
    program(&s, "acme", 3, "EUR", "retroactive", Q2_25);          /* 11: rejected [G2] */
    vstr_eq(&s, 'b', "p1", "tier", "Entry");
    vstr_eq(&s, 'b', "p1", "currency", "USD");
    program(&s, "acme", 4, "USD", "retroactive", Q2_25); /* 12: Entry gone again */
    vstr_eq(&s, 'b', "p1", "tier", "Base");
    expect_excs(&s, "9:stale_version:-\n10:stale_version:-\n11:program_change_rejected:-\n");
    shards_free(&s);
}
END_TEST

/* [L1] [L2] closes out of order and of unknown programs change nothing. */
START_TEST(close_out_of_order_and_unknown)
{
    shards s;
    shards_init(&s, 2);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                       /* 2 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 3 */
    close_period(&s, "acme", "2025-Q2", Q3_25);            /* 4: not the earliest */
    close_period(&s, "acme", "2025-01", Q3_25);            /* 5: a month of a quarter one */
    close_period(&s, "nope", "2025-Q1", Q3_25);            /* 6: unknown [L2] */
    vstr_eq(&s, 'r', "p1", "periods.0.status", "open");
    close_period(&s, "acme", "2025-Q1", Q3_25); /* 7 */
    vstr_eq(&s, 'r', "p1", "periods.0.status", "final");
    expect_excs(&s, "4:close_out_of_order:-\n5:close_out_of_order:-\n6:unknown_program:-\n");
    /* partner-less exceptions are shard 0's only */
    json_t *x1 = tly_engine_exceptions(s.e[1]);
    for (size_t i = 0; i < json_array_size(x1); i++)
        ck_assert(json_is_string(json_object_get(json_array_get(x1, i), "partner")));
    json_decref(x1);
    shards_free(&s);
}
END_TEST

/* [S3] [S8] [S9] over-returns: the capped part applies; a wholly excess
 * return only raises over_return; clawbacks never exceed the accrual. */
START_TEST(over_return_partial)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25); /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                     /* 2 */
    sale(&s, "d", "S1", "p1", 250, "USD", Q1_25 + DAY);  /* 3: 2.5 -> 2 */
    ret(&s, "d", "S1", "p1", 150, "USD", Q1_25 + DAY);   /* 4: 1.5 -> 2 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "clawed_back"), 2);
    ret(&s, "d", "S1", "p1", 300, "USD", Q1_25 + DAY);       /* 5: 100 applies, claw 0 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "clawed_back"), 2); /* capped at accrual [S3] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 0);
    ret(&s, "d", "S1", "p1", 10, "USD", Q1_25 + DAY);   /* 6: wholly excess [S8] */
    ret(&s, "d", "S1", "p1", 10, "CAD", Q1_25 + DAY);   /* 7: currency first [S9] */
    ret(&s, "d", "S9", "p1", 10, "CAD", Q1_25 + DAY);   /* 8: currency before unknown */
    ret(&s, "d", "S9", "p1", 10, "USD", Q1_25 + DAY);   /* 9: unknown sale */
    sale(&s, "d", "S2", "p1", 100, "CAD", Q1_25 + DAY); /* 10: moved nothing */
    ret(&s, "d", "S2", "p1", 10, "USD", Q1_25 + DAY);   /* 11: unknown [S2] */
    ret(&s, "e", "S1", "p1", 10, "USD", Q1_25 + DAY);   /* 12: other source */
    sale(&s, "d", "S3", "p1", 10, "USD", Q1_25 + DAY);  /* 13: accrual 0, revenue [M7] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 10);
    expect_excs(&s, "5:over_return:p1\n6:over_return:p1\n7:currency_mismatch:p1\n"
                    "8:currency_mismatch:p1\n9:unknown_sale:p1\n10:currency_mismatch:p1\n"
                    "11:unknown_sale:p1\n12:unknown_sale:p1\n");
    shards_free(&s);
}
END_TEST

/* Two partner ids on different shards of 2 (and of 4 when possible). */
static void split_pair(char *a, char *b, size_t cap)
{
    snprintf(a, cap, "pa");
    uint32_t sa2 = tly_engine_shard_of(a, strlen(a), 2), sa4 = tly_engine_shard_of(a, 2, 4);
    for (int i = 0; i < 1000; i++) {
        snprintf(b, cap, "pb%d", i);
        if (tly_engine_shard_of(b, strlen(b), 2) != sa2 &&
            tly_engine_shard_of(b, strlen(b), 4) != sa4)
            return;
    }
    ck_abort_msg("no split pair");
}

/* [S1] a return naming another partner than its sale, decided by a shard
 * that does not own the sale; [S2] a held sale has moved no money. */
START_TEST(return_partner_mismatch_across_shards)
{
    static const uint32_t counts[] = {1, 2, 4};
    char a[16], b[16];
    split_pair(a, b, sizeof a);
    for (int i = 0; i < 3; i++) {
        shards s;
        shards_init(&s, counts[i]);
        program(&s, "acme", 1, "USD", "retroactive", Q1_25); /* 1 */
        enroll(&s, b, "acme", Q1_25);                        /* 2 */
        sale(&s, "d", "SA", a, 1000, "USD", Q1_25 + DAY);    /* 3: held: a unenrolled */
        ret(&s, "d", "SA", b, 10, "USD", Q1_25 + DAY);       /* 4: unknown [S2] */
        enroll(&s, a, "acme", Q1_25);                        /* 5 */
        ret(&s, "d", "SA", b, 10, "USD", Q1_25 + DAY);       /* 6: mismatch [S1] */
        ret(&s, "d", "SA", a, 10, "USD", Q1_25 + DAY);       /* 7: fine */
        char want[256];
        snprintf(want, sizeof want, "3:held:%s\n4:unknown_sale:%s\n6:return_partner_mismatch:%s\n",
                 a, b, b);
        expect_excs(&s, want);
        ck_assert_int_eq(vint(&s, 'r', a, "periods.0.revenue"), 990);
        json_t *rb = view(&s, 'r', b); /* the refused returns moved nothing */
        ck_assert_int_eq(json_array_size(json_object_get(rb, "periods")), 0);
        json_decref(rb);
        shards_free(&s);
    }
}
END_TEST

/* [R6] [R7] [R10] [E7] payouts and rebate adjustments [R8]. */
START_TEST(payouts)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);  /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                      /* 2 */
    sale(&s, "d", "S1", "p1", 50000, "USD", Q1_25 + DAY); /* 3: rebate 500 */
    adjust(&s, "p1", "rebate", -120, Q1_25 + DAY);        /* 4: 380 [R8] */
    payout(&s, "p1", "2025-Q1", 100, Q1_25 + DAY);        /* 5: not final [R7] */
    close_period(&s, "acme", "2025-Q1", Q2_25);           /* 6 */
    ck_assert_int_eq(vint(&s, 'r', "p1", "payable"), 380);
    payout(&s, "p1", "2025-Q1", 381, Q2_25);              /* 7: overpayment [R6] */
    payout(&s, "p1", "2025-Q1", 300, Q2_25);              /* 8 */
    ck_assert_int_eq(vint(&s, 'r', "p1", "payable"), 80); /* [R10] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.paid"), 300);
    payout(&s, "p1", "2024-Q4", 1, Q2_25);    /* 9: closed, no row */
    payout(&s, "p1", "2025-01", 1, Q2_25);    /* 10: a month: not final */
    payout(&s, "ghost", "2025-Q1", 1, Q2_25); /* 11: unknown [E7] */
    adjust(&s, "ghost", "mdf", 5, Q2_25);     /* 12 */
    adjust(&s, "p1", "rebate", 7, Q2_25);     /* 13: lands in Q2 [R8] */
    adjust(&s, "p1", "mdf", 9, Q2_25);        /* 14: credit to Q2 [M8] */
    vstr_eq(&s, 'r', "p1", "periods.1.period", "2025-Q2");
    ck_assert_int_eq(vint(&s, 'r', "p1", "accrued_open"), 7);
    vstr_eq(&s, 'b', "p1", "buckets.1.period", "2025-Q2");
    ck_assert_int_eq(vint(&s, 'b', "p1", "adjusted"), 9);
    expect_excs(&s, "5:payout_not_final:p1\n7:overpayment:p1\n9:overpayment:p1\n"
                    "10:payout_not_final:p1\n11:unknown_partner:ghost\n"
                    "12:unknown_partner:ghost\n");
    shards_free(&s);
}
END_TEST

/* [C1]..[C8] the claim state machine. */
START_TEST(claim_state_machine)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);   /* 1 */
    claim(&s, "p1", "c0", "submit", 10, Q1_25);            /* 2: unknown partner */
    claim(&s, "p1", "c0", "approve", 10, Q1_25);           /* 3: unknown partner [E7] */
    enroll(&s, "p1", "acme", Q1_25);                       /* 4 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 5: 1000 */
    claim(&s, "p1", "c0", "approve", 10, Q1_25);           /* 6: denied: invalid [C6] */
    claim(&s, "p1", "c9", "approve", 10, Q1_25);           /* 7: unknown claim */
    claim(&s, "p1", "c1", "submit", 400, Q1_25);           /* 8 */
    claim(&s, "p1", "c1", "submit", 400, Q1_25);           /* 9: duplicate [C2] */
    claim(&s, "p1", "c1", "pay", 100, Q1_25);              /* 10: pending: invalid */
    claim(&s, "p1", "c1", "approve", 401, Q1_25);          /* 11: exceeds [C4] */
    vstr_eq(&s, 'c', "p1", "claims.1.status", "pending");
    claim(&s, "p1", "c1", "approve", 400, Q1_25); /* 12 */
    claim(&s, "p1", "c1", "pay", 401, Q1_25);     /* 13: exceeds [C5] */
    claim(&s, "p1", "c1", "cancel", -1, Q1_25);   /* 14: approved: invalid */
    claim(&s, "p1", "c1", "pay", 400, Q1_25);     /* 15 */
    claim(&s, "p1", "c1", "pay", 1, Q1_25);       /* 16: paid: invalid */
    claim(&s, "p1", "c2", "submit", 700, Q1_25);  /* 17: 600 left: denied */
    claim(&s, "p1", "c3", "submit", 100, Q1_25);  /* 18 */
    tsend(&s, "fin",
          "{\"type\":\"claim\",\"id\":\"RJ\",\"at\":%" PRId64 ",\"partner\":\"p1\","
          "\"claim\":\"c3\",\"action\":\"reject\",\"reason\":\"no proof\"}",
          Q1_25);                                 /* 19 */
    claim(&s, "p1", "c3", "approve", 100, Q1_25); /* 20: rejected: invalid */
    expect_excs(&s, "2:unknown_partner:p1\n3:unknown_partner:p1\n6:invalid_transition:p1\n"
                    "7:unknown_claim:p1\n9:duplicate_claim:p1\n10:invalid_transition:p1\n"
                    "11:approve_exceeds_requested:p1\n13:pay_exceeds_approved:p1\n"
                    "14:invalid_transition:p1\n16:invalid_transition:p1\n"
                    "17:insufficient_funds:p1\n20:invalid_transition:p1\n");
    /* [C8] submit order; [C7] reason and zero defaults */
    vstr_eq(&s, 'c', "p1", "claims.0.claim", "c0");
    vstr_eq(&s, 'c', "p1", "claims.0.status", "denied");
    vstr_eq(&s, 'c', "p1", "claims.0.reason", "unknown_partner");
    vstr_eq(&s, 'c', "p1", "claims.1.status", "paid");
    ck_assert_int_eq(vint(&s, 'c', "p1", "claims.1.paid"), 400);
    vstr_eq(&s, 'c', "p1", "claims.2.reason", "insufficient_funds");
    ck_assert_int_eq(vint(&s, 'c', "p1", "claims.2.approved"), 0);
    vstr_eq(&s, 'c', "p1", "claims.3.status", "rejected");
    vstr_eq(&s, 'c', "p1", "claims.3.reason", "no proof");
    json_t *c = view(&s, 'c', "p1");
    ck_assert(
        json_is_null(json_object_get(json_array_get(json_object_get(c, "claims"), 1), "reason")));
    json_decref(c);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 600);
    expect_invariant(&s, "p1");
    shards_free(&s);
}
END_TEST

/* [E1] re-enrollment updates identity only; another program is refused. */
START_TEST(enrollment_rules)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25); /* 1 */
    program(&s, "beta", 1, "USD", "retroactive", Q1_25); /* 2 */
    enroll(&s, "p1", "acme", Q1_25);                     /* 3 */
    enroll(&s, "p1", "acme", Q1_25);                     /* 4: same program: fine */
    enroll(&s, "p1", "beta", Q1_25);                     /* 5: refused */
    vstr_eq(&s, 'b', "p1", "program", "acme");
    expect_excs(&s, "5:partner_program_change:p1\n");
    ck_assert_ptr_null(view(&s, 'b', "nobody"));
    shards_free(&s);
}
END_TEST

/* ---- section 10 scenarios (the rules that mutation testing found no
 * test to fail without) ---- */

/* program()'s "acme" as a section 10 program: the same tiers, retroactive
 * brackets, expiry and window, with rebate_extra appended to the rebate
 * object and extra to the program (each "" or starting with a comma). */
static void program_v2(shards *s, int version, const char *rebate_extra, const char *extra,
                       int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"program\",\"id\":\"P%d\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":%d,\"currency\":\"USD\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
          "{\"name\":\"Silver\",\"min_revenue\":100000,\"min_certs\":1,\"mdf_bps\":200},"
          "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":300}],"
          "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
          "{\"from\":100000,\"bps\":200},{\"from\":500000,\"bps\":300}]%s},"
          "\"mdf_expiry_periods\":2,\"tier_window_periods\":1%s}",
          ++next_id, at, version, rebate_extra, extra);
}

static void rate(shards *s, const char *from, const char *to, const char *r, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"rate\",\"id\":\"X%d\",\"at\":%" PRId64 ",\"currency\":\"%s\","
          "\"to\":\"%s\",\"rate\":\"%s\"}",
          ++next_id, at, from, to, r);
}

/* [K1] [K5] The cap's room is the cap less the accruals credited to the
 * period, as capped: a raised cap gives back what an earlier cap cut, a
 * lowered one floors later accruals at 0. */
START_TEST(mdf_cap_room_counts_capped_accruals)
{
    shards s;
    shards_init(&s, 1);
    program_v2(&s, 1, "", ",\"mdf_cap_per_period\":500", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 1000 at 1 %, cut to 500 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 500);
    program_v2(&s, 2, "", ",\"mdf_cap_per_period\":2000", Q1_25 + DAY);
    sale(&s, "d", "S2", "p1", 200000, "USD", Q1_25 + DAY); /* 2000, room 2000 - 500 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 2000);
    program_v2(&s, 3, "", ",\"mdf_cap_per_period\":1000", Q1_25 + DAY);
    sale(&s, "d", "S3", "p1", 10000, "USD", Q1_25 + DAY); /* room 1000 - 2000 < 0: 0 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 2000);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 310000);
    expect_invariant(&s, "p1");
    shards_free(&s);
}
END_TEST

/* [T10] A certification counts at the close of P when its expires is at
 * or after the start of P + 1: Q2's first millisecond still counts, the
 * millisecond before does not. */
START_TEST(cert_expires_at_next_period_start)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    const char *partners[2] = {"p1", "p2"};
    for (int i = 0; i < 2; i++) {
        enroll(&s, partners[i], "acme", Q1_25);
        tsend(&s, "certs",
              "{\"type\":\"certification\",\"id\":\"C%d\",\"at\":%" PRId64 ",\"partner\":\"%s\","
              "\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"earned\",\"expires\":%" PRId64
              "}",
              ++next_id, Q1_25, partners[i], Q2_25 - i);
        sale(&s, "d", i == 0 ? "S1" : "S2", partners[i], 100000, "USD", Q1_25 + DAY);
    }
    close_period(&s, "acme", "2025-Q1", Q2_25);
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    vstr_eq(&s, 't', "p2", "tier", "Base");
    shards_free(&s);
}
END_TEST

/* [F1] [F2] [F6] The rate in force at t is the one of the greatest at ≤ t,
 * of equal at the one folded last; the conversion scales by the currencies'
 * minor-unit exponents (JPY 0, USD 2); before the first rate nothing
 * moves. */
START_TEST(fx_rate_in_force_edges)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25); /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                     /* 2 */
    int64_t t = Q1_25 + DAY;
    rate(&s, "EUR", "USD", "1.1", t);               /* 3 */
    rate(&s, "EUR", "USD", "1.2", t);               /* 4: same at, folded last */
    rate(&s, "JPY", "USD", "0.0067", t);            /* 5 */
    sale(&s, "d", "S1", "p1", 10000, "EUR", t);     /* 6: EUR 100.00 = USD 120.00 */
    sale(&s, "d", "S2", "p1", 100000, "JPY", t);    /* 7: JPY 100000 = USD 670.00 */
    sale(&s, "d", "S3", "p1", 10000, "EUR", t - 1); /* 8: no rate in force yet */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 12000 + 67000);
    ck_assert_int_eq(vint(&s, 'b', "p1", "accrued"), 120 + 670);
    expect_excs(&s, "8:currency_mismatch:p1\n");
    shards_free(&s);
}
END_TEST

/* The figure key of report period (0 when the report has no row for it:
 * nothing took effect there). */
static int64_t report_int(const shards *s, const char *period, const char *key)
{
    json_t *rep = tly_engine_report(s->e[0], "acme");
    ck_assert_ptr_nonnull(rep);
    json_t *row;
    size_t i;
    int64_t out = 0;
    json_array_foreach(json_object_get(rep, "periods"), i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "period")), period) == 0)
            out = json_integer_value(json_object_get(row, key));
    }
    json_decref(rep);
    return out;
}

/* [RP5] An approval, a payment and a payout dated in a closed period take
 * effect in the earliest open one, and the report books them there. */
START_TEST(late_approval_payment_payout_reported_open)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* accrues 1000, rebate 2000 */
    claim(&s, "p1", "c1", "submit", 600, Q1_25 + DAY);
    close_period(&s, "acme", "2025-Q1", Q2_25);
    claim(&s, "p1", "c1", "approve", 500, Q1_25 + 2 * DAY); /* dated in the closed Q1 */
    claim(&s, "p1", "c1", "pay", 200, Q1_25 + 3 * DAY);
    payout(&s, "p1", "2025-Q1", 300, Q1_25 + 4 * DAY);
    static const char *const keys[] = {"mdf_approved", "mdf_paid", "rebate_paid"};
    static const int64_t want[] = {500, 200, 300};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(report_int(&s, "2025-Q1", keys[k]), 0);
        ck_assert_int_eq(report_int(&s, "2025-Q2", keys[k]), want[k]);
    }
    ck_assert_int_eq(report_int(&s, "2025-Q1", "rebate"), 2000);
    shards_free(&s);
}
END_TEST

/* Whether the tier view of partner has "grace_left" null, else its value
 * in *left. */
static bool grace_left(const shards *s, const char *partner, int64_t *left)
{
    json_t *t = view(s, 't', partner);
    ck_assert_ptr_nonnull(t);
    json_t *g = json_object_get(t, "grace_left");
    bool null = json_is_null(g);
    *left = null ? -1 : json_integer_value(g);
    json_decref(t);
    return null;
}

/* [T9] A new program version sets every count of failing closes to 0: the
 * grace starts over, so two more failing closes keep the tier. */
START_TEST(new_version_restarts_grace)
{
    const int64_t q1_26 = INT64_C(1767225600000);
    int64_t left;
    shards s;
    shards_init(&s, 1);
    program_v2(&s, 1, "", ",\"tier_grace_periods\":2", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    cert(&s, "p1", "ann", "earned", Q1_25);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY);
    close_period(&s, "acme", "2025-Q1", Q2_25); /* Silver */
    close_period(&s, "acme", "2025-Q2", Q3_25); /* no revenue: 1 failing close */
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    ck_assert(!grace_left(&s, "p1", &left));
    ck_assert_int_eq(left, 1);
    program_v2(&s, 2, "", ",\"tier_grace_periods\":2", Q3_25);
    ck_assert(grace_left(&s, "p1", &left)); /* the count is 0 */
    close_period(&s, "acme", "2025-Q3", Q4_25);
    ck_assert(!grace_left(&s, "p1", &left));
    ck_assert_int_eq(left, 1);
    close_period(&s, "acme", "2025-Q4", q1_26); /* the second since the version */
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    ck_assert(!grace_left(&s, "p1", &left));
    ck_assert_int_eq(left, 0);
    shards_free(&s);
}
END_TEST

/* [M8] [R8] [RP1] An adjustment lands in the earliest open period whatever
 * its at: dated two quarters ahead, the MDF credit still goes to Q1's
 * bucket and the rebate adjustment to Q1's row. */
START_TEST(adjust_lands_in_earliest_open_period)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    adjust(&s, "p1", "mdf", 500, Q3_25 + DAY);
    adjust(&s, "p1", "rebate", 300, Q3_25 + DAY);
    vstr_eq(&s, 'b', "p1", "buckets.0.period", "2025-Q1");
    ck_assert_int_eq(vint(&s, 'b', "p1", "buckets.0.remaining"), 500);
    vstr_eq(&s, 'r', "p1", "periods.0.period", "2025-Q1");
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.rebate"), 300);
    expect_invariant(&s, "p1");
    shards_free(&s);
}
END_TEST
/* [T8] [T9] Under one_step a close moves a tier one position at most, also
 * when the grace runs out: a Gold partner whose window evaluates Base
 * keeps Gold for one failing close (g = 1), then falls to Silver, not to
 * Base. */
START_TEST(one_step_grace_moves_down_one_position)
{
    const int64_t q1_26 = INT64_C(1767225600000);
    shards s;
    shards_init(&s, 1);
    program_v2(&s, 1, "", ",\"tier_moves\":\"one_step\",\"tier_grace_periods\":1", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    cert(&s, "p1", "ann", "earned", Q1_25);
    cert(&s, "p1", "bob", "earned", Q1_25);
    sale(&s, "d", "S1", "p1", 500000, "USD", Q1_25 + DAY);
    close_period(&s, "acme", "2025-Q1", Q2_25); /* Gold evaluated: one up, Silver */
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    sale(&s, "d", "S2", "p1", 500000, "USD", Q2_25 + DAY);
    close_period(&s, "acme", "2025-Q2", Q3_25); /* Gold */
    vstr_eq(&s, 't', "p1", "tier", "Gold");
    close_period(&s, "acme", "2025-Q3", Q4_25); /* Base evaluated: 1 failing close */
    vstr_eq(&s, 't', "p1", "tier", "Gold");
    close_period(&s, "acme", "2025-Q4", q1_26); /* the grace runs out: one down */
    vstr_eq(&s, 't', "p1", "tier", "Silver");
    vstr_eq(&s, 't', "p1", "history.2.period", "2025-Q4");
    vstr_eq(&s, 't', "p1", "history.2.to", "Silver");
    shards_free(&s);
}
END_TEST

/* [F2] A conversion rounds half to even: at 0.5 USD per EUR, EUR 0.05 is
 * USD 0.025, so 2 cents, and EUR 0.07 is 0.035, so 4 cents. */
START_TEST(fx_conversion_rounds_half_even)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    rate(&s, "EUR", "USD", "0.5", Q1_25);
    sale(&s, "d", "S1", "p1", 5, "EUR", Q1_25 + DAY);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 2);
    sale(&s, "d", "S2", "p1", 7, "EUR", Q1_25 + DAY);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 2 + 4);
    shards_free(&s);
}
END_TEST

/* [L1] [R7] A period text names a period by kind and index: "6075-Q1"
 * has the index of the month 2025-01 (24300) yet is no period of a
 * monthly program, so a close of it is close_out_of_order and closes
 * nothing, and "2024-Q4" (an index before 2025-01) is not final. */
START_TEST(period_of_the_other_kind_names_no_period)
{
    shards s;
    shards_init(&s, 1);
    tsend(&s, "fin",
          "{\"type\":\"program\",\"id\":\"PM\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":1,\"currency\":\"USD\",\"period\":\"month\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],"
          "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
          "\"mdf_expiry_periods\":2,\"tier_window_periods\":1}",
          Q1_25);                                          /* 1 */
    enroll(&s, "p1", "acme", Q1_25);                       /* 2 */
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* 3 */
    close_period(&s, "acme", "6075-Q1", Q2_25);            /* 4 */
    payout(&s, "p1", "2024-Q4", 1, Q2_25);                 /* 5 */
    expect_excs(&s, "4:close_out_of_order:-\n5:payout_not_final:p1\n");
    vstr_eq(&s, 'r', "p1", "periods.0.period", "2025-01");
    vstr_eq(&s, 'r', "p1", "periods.0.status", "open");
    shards_free(&s);
}
END_TEST

/* [G5] Expiry is a fact of the close that made it: after a version
 * lengthens N, a later close does not bring an expired bucket back, so a
 * claim share from it released later still goes to expired. */
START_TEST(longer_expiry_keeps_expired_buckets_expired)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25); /* N = 2 */
    enroll(&s, "p1", "acme", Q1_25);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* Q1 bucket 1000 */
    claim(&s, "p1", "c1", "submit", 1000, Q1_25 + DAY);    /* all of it from Q1 */
    close_period(&s, "acme", "2025-Q1", Q2_25);
    close_period(&s, "acme", "2025-Q2", Q3_25); /* Q1 expires (0 left) */
    tsend(&s, "fin",
          "{\"type\":\"program\",\"id\":\"V2\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":2,\"currency\":\"USD\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],"
          "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
          "\"mdf_expiry_periods\":4,\"tier_window_periods\":1}",
          Q3_25);
    close_period(&s, "acme", "2025-Q3", Q4_25); /* expires up to 2024-Q4 under N = 4 */
    claim(&s, "p1", "c1", "cancel", -1, Q4_25 + DAY);
    ck_assert_int_eq(vint(&s, 'b', "p1", "expired"), 1000);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), 0);
    expect_invariant(&s, "p1");
    shards_free(&s);
}
END_TEST

/* [G5] [section 11] An expiry is reported in the closed period whose close
 * expired it: Q1's bucket, expired by the close of Q2, is Q2's mdf_expired,
 * not Q3's. */
START_TEST(expiry_reported_in_the_closed_period)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY); /* Q1 bucket 1000 */
    close_period(&s, "acme", "2025-Q1", Q2_25);
    close_period(&s, "acme", "2025-Q2", Q3_25); /* N = 2: Q1 expires */
    ck_assert_int_eq(vint(&s, 'b', "p1", "expired"), 1000);
    ck_assert_int_eq(report_int(&s, "2025-Q2", "mdf_expired"), 1000);
    ck_assert_int_eq(report_int(&s, "2025-Q3", "mdf_expired"), 0);
    shards_free(&s);
}
END_TEST

/* [E3] [T10] A held certification keeps its expires: earned before p1
 * enrolls and expiring within Q1, it no longer counts at Q1's close. */
START_TEST(held_certification_keeps_its_expires)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    tsend(&s, "certs",
          "{\"type\":\"certification\",\"id\":\"C%d\",\"at\":%" PRId64 ",\"partner\":\"p1\","
          "\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"earned\",\"expires\":%" PRId64 "}",
          ++next_id, Q1_25, Q1_25 + 2 * DAY); /* held */
    enroll(&s, "p1", "acme", Q1_25 + DAY);
    sale(&s, "d", "S1", "p1", 100000, "USD", Q1_25 + DAY);
    close_period(&s, "acme", "2025-Q1", Q2_25);
    vstr_eq(&s, 't', "p1", "tier", "Base");
    shards_free(&s);
}
END_TEST

/* ---- seeded random streams ---- */

static uint64_t g_seed = UINT64_C(20261126);

/* Every view of every partner, liabilities and exceptions (with detail)
 * of two folds are equal. */
static void expect_same(const shards *a, const shards *b, const char *what)
{
    json_t *pa = tly_engine_partners(a->e[0]);
    for (uint32_t k = 1; k < a->n; k++) {
        json_t *more = tly_engine_partners(a->e[k]);
        json_array_extend(pa, more);
        json_decref(more);
    }
    size_t total = 0;
    for (uint32_t k = 0; k < b->n; k++) {
        json_t *pb = tly_engine_partners(b->e[k]);
        total += json_array_size(pb);
        json_decref(pb);
    }
    ck_assert_msg(total == json_array_size(pa), "%s: partner count, seed %" PRIu64, what, g_seed);
    char msg[256];
    for (size_t i = 0; i < json_array_size(pa); i++) {
        const char *p = json_string_value(json_array_get(pa, i));
        for (const char *v = "brtc"; *v; v++) {
            json_t *x = view(a, *v, p), *y = view(b, *v, p);
            snprintf(msg, sizeof msg, "%s: view %c of %s (seed %" PRIu64 ")", what, *v, p, g_seed);
            ck_assert_msg(x != NULL && y != NULL, "%s: missing", msg);
            expect_json(x, y, msg);
            json_decref(x);
            json_decref(y);
        }
    }
    json_decref(pa);
    json_t *la = merged_liabilities(a), *lb = merged_liabilities(b);
    snprintf(msg, sizeof msg, "%s: liabilities (seed %" PRIu64 ")", what, g_seed);
    expect_json(la, lb, msg);
    json_decref(la);
    json_decref(lb);
    json_t *xa = merged_exceptions(a), *xb = merged_exceptions(b);
    snprintf(msg, sizeof msg, "%s: exceptions (seed %" PRIu64 ")", what, g_seed);
    expect_json(xa, xb, msg);
    json_decref(xa);
    json_decref(xb);
}

/* The MDF invariant for every partner after every event (N = 1), then
 * the same stream on 2 and 4 shards gives the same answers. */
START_TEST(random_streams)
{
    stream st = {0};
    uint64_t seed = g_seed + (uint64_t)_i;
    gen_stream(&st, seed, 20000, 24);
    shards one;
    shards_init(&one, 1);
    for (size_t i = 0; i < st.count; i++) {
        shards_fold(&one, &st, i, i + 1);
        json_t *ps = tly_engine_partners(one.e[0]);
        for (size_t k = 0; k < json_array_size(ps); k++)
            expect_invariant(&one, json_string_value(json_array_get(ps, k)));
        json_decref(ps);
    }
    /* the stream must exercise the rules it claims to test: every [D6]
     * kind occurs */
    json_t *x = merged_exceptions(&one), *kinds = json_object();
    for (size_t i = 0; i < json_array_size(x); i++)
        json_object_set_new(kinds, json_string_value(json_object_get(json_array_get(x, i), "kind")),
                            json_true());
    if (getenv("TALLY_SHOW_KINDS") != NULL) {
        char *t = json_dumps(kinds, JSON_COMPACT);
        printf("%zu exceptions, kinds %s\n", json_array_size(x), t);
        free(t);
    }
    for (int k = 0; k < TLY_X_COUNT; k++) {
        const char *name = tly_xkind_name((tly_xkind)k);
        ck_assert_msg(json_object_get(kinds, name) != NULL,
                      "stream raised no %s (seed %" PRIu64 ")", name, seed);
    }
    json_decref(kinds);
    json_decref(x);
    for (uint32_t n = 2; n <= 4; n += 2) {
        shards many;
        shards_init(&many, n);
        shards_fold(&many, &st, 0, st.count);
        char what[64];
        snprintf(what, sizeof what, "N=1 vs N=%u", n);
        expect_same(&one, &many, what);
        shards_free(&many);
    }
    shards_free(&one);
    stream_free(&st);
}
END_TEST

/* ---- flush and load ---- */

typedef struct kv_entry {
    char *key, *val;
    size_t klen, vlen;
} kv_entry;

/* A sorted in-memory key/value store, like the shard's LMDB database. */
typedef struct kv {
    kv_entry *e;
    size_t count, cap;
} kv;

static int kv_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static size_t kv_find(const kv *s, const char *key, size_t klen, bool *found)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv_cmp(s->e[mid].key, s->e[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->count && kv_cmp(s->e[lo].key, s->e[lo].klen, key, klen) == 0;
    return lo;
}

static tly_err kv_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    kv *s = ctx;
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    if (found) {
        /* exceptions are append-only [D11] */
        ck_assert_msg(klen < 2 || memcmp(key, "X/", 2) != 0, "an exception key was rewritten");
        free(s->e[i].val);
    } else {
        if (s->count == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 1024;
            s->e = realloc(s->e, s->cap * sizeof *s->e);
        }
        memmove(&s->e[i + 1], &s->e[i], (s->count - i) * sizeof *s->e);
        s->count++;
        s->e[i].key = malloc(klen);
        memcpy(s->e[i].key, key, klen);
        s->e[i].klen = klen;
    }
    s->e[i].val = malloc(vlen + 1);
    memcpy(s->e[i].val, val, vlen);
    s->e[i].vlen = vlen;
    return TLY_OK;
}

static void kv_free(kv *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->e[i].key);
        free(s->e[i].val);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

/* Partners fold_flushing's read-backs brought back, in all. */
static uint64_t g_read_back_seen;

/* Whether the tests' read-backs go through tly_engine_read_back_begin,
 * _split_decode and _finish (every list split, decoded on this thread)
 * instead of tly_engine_read_back: the two must leave the same engine. */
static bool g_read_split;

static uint32_t read_back(tly_engine *e)
{
    if (!g_read_split)
        return tly_engine_read_back(e);
    tly_engine_read_split *s = tly_engine_read_back_begin(e, 1);
    if (s == NULL) /* a list of one, or none */
        return tly_engine_read_back(e);
    tly_engine_read_split_decode(s);
    return tly_engine_read_back_finish(e, s, NULL, NULL);
}

/* Folds st[from, to) flushing every `batch` records and at the end; after
 * each flush (the store holds its puts at once, as after a commit) the
 * engines read back what it noted (tly_engine_read_back: nothing unless
 * enabled). */
static void fold_flushing(shards *s, kv *stores, const stream *st, size_t from, size_t to,
                          size_t batch)
{
    for (size_t i = from; i < to; i++) {
        shards_fold(s, st, i, i + 1);
        if ((i + 1) % batch == 0 || i + 1 == to)
            for (uint32_t k = 0; k < s->n; k++) {
                ck_assert_int_eq(tly_engine_flush(s->e[k], kv_put, &stores[k]), TLY_OK);
                read_back(s->e[k]);
                g_read_back_seen += s->e[k]->read_back_idle;
            }
    }
}

static void expect_same_store(const kv *a, const kv *b, uint32_t n, uint32_t shard)
{
    ck_assert_msg(a->count == b->count, "N=%u shard %u: %zu keys vs %zu (seed %" PRIu64 ")", n,
                  shard, a->count, b->count, g_seed);
    for (size_t i = 0; i < a->count; i++) {
        const kv_entry *x = &a->e[i], *y = &b->e[i];
        ck_assert_msg(kv_cmp(x->key, x->klen, y->key, y->klen) == 0 && x->vlen == y->vlen &&
                          memcmp(x->val, y->val, x->vlen) == 0,
                      "N=%u shard %u: stored entry %.*s differs (seed %" PRIu64 ")", n, shard,
                      (int)x->klen, x->key, g_seed);
    }
}

/* Each of n shards' stores against the same shard's direct one
 * (expect_same_store), then both freed. */
static void expect_same_stores(kv *stores, kv *direct, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        expect_same_store(&stores[k], &direct[k], n, k);
        kv_free(&stores[k]);
        kv_free(&direct[k]);
    }
}

/* Fold half, flush, load into fresh engines, fold the rest: the same
 * answers and the same stored bytes as one uninterrupted fold. */
START_TEST(flush_load_resume)
{
    uint32_t n = (uint32_t)_i + 1;
    stream st = {0};
    gen_stream(&st, g_seed + 100 + n, 8000, 16);
    size_t half = st.count / 2 + 7;
    kv stores[SHARDS_MAX] = {{0}}, direct[SHARDS_MAX] = {{0}};
    shards a, b, c;
    shards_init(&a, n);
    fold_flushing(&a, stores, &st, 0, half, 397);
    shards_free(&a);
    shards_init(&b, n);
    for (uint32_t k = 0; k < n; k++) {
        for (size_t i = 0; i < stores[k].count; i++) {
            const kv_entry *x = &stores[k].e[i];
            tly_err err = tly_engine_load(b.e[k], x->key, x->klen, x->val, x->vlen);
            if (x->key[0] == 'S' || x->key[0] == 'X')
                ck_assert_msg(err == TLY_OK, "load %.*s: %s", (int)x->klen, x->key,
                              tly_err_name(err));
        }
        tly_engine_set_seq(b.e[k], half);
    }
    b.seq = half;
    fold_flushing(&b, stores, &st, half, st.count, 397);
    shards_init(&c, n);
    fold_flushing(&c, direct, &st, 0, st.count, 1000);
    expect_same(&b, &c, n == 1 ? "resumed vs direct, N=1" : "resumed vs direct, N=2");
    expect_same_stores(stores, direct, n);
    shards_free(&b);
    shards_free(&c);
    stream_free(&st);
}
END_TEST

/* ---- the engine over a store: a small cache, restarts ---- */

/* tly_kv_get_fn over kv: values live until the next put (the flush). */
static tly_err kv_get(void *ctx, const void *key, size_t klen, const void **val, size_t *vlen)
{
    const kv *s = ctx;
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    if (!found)
        return TLY_NOT_FOUND;
    *val = s->e[i].val;
    *vlen = s->e[i].vlen;
    return TLY_OK;
}

/* tly_kv_scan_fn over kv, in key order. */
static tly_err kv_scan(void *ctx, const void *prefix, size_t plen, tly_kv_put_fn visit, void *vctx)
{
    const kv *s = ctx;
    bool found;
    for (size_t i = kv_find(s, prefix, plen, &found); i < s->count; i++) {
        const kv_entry *x = &s->e[i];
        if (x->klen < plen || memcmp(x->key, prefix, plen) != 0)
            break;
        tly_err err = visit(vctx, x->key, x->klen, x->val, x->vlen);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

/* ---- a flush's staged puts (engine_stage.h) ---- */

/* The pairs a replay put, in order; fails the put numbered fail_at (from
 * 1; 0: none) with TLY_STORAGE, as a full map would. */
typedef struct put_seq {
    kv_entry e[8];
    size_t count, fail_at, calls;
} put_seq;

static tly_err seq_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    put_seq *q = ctx;
    if (++q->calls == q->fail_at)
        return TLY_STORAGE;
    ck_assert_uint_lt(q->count, sizeof q->e / sizeof q->e[0]);
    kv_entry *x = &q->e[q->count++];
    x->key = malloc(klen + 1);
    x->val = malloc(vlen + 1);
    memcpy(x->key, key, klen);
    if (vlen > 0)
        memcpy(x->val, val, vlen);
    x->klen = klen;
    x->vlen = vlen;
    return TLY_OK;
}

static void seq_free(put_seq *q)
{
    for (size_t i = 0; i < q->count; i++) {
        free(q->e[i].key);
        free(q->e[i].val);
    }
}

/* Pairs 0-4 of stage_pairs: an empty value; a value that fills the rest
 * of the first block to its last byte (8 bytes of lengths per pair); one a
 * byte larger than a block, which gets a block of its own; one that opens
 * the next block; an empty key. */
static char *stage_pairs(size_t *vlens, const char **keys)
{
    char *vals = malloc(3 * ENG_STAGE_BLOCK_BYTES);
    ck_assert_ptr_nonnull(vals);
    static const char *k[] = {"a", "S/4/fill", "S/4/huge", "Z/next", ""};
    const size_t head = 8;
    vlens[0] = 0;
    vlens[1] = ENG_STAGE_BLOCK_BYTES - (head + 1) - (head + strlen(k[1]));
    vlens[2] = ENG_STAGE_BLOCK_BYTES + 1 - head - strlen(k[2]);
    vlens[3] = 3;
    vlens[4] = 5;
    size_t at = 0;
    for (int i = 0; i < 5; i++) {
        keys[i] = k[i];
        for (size_t j = 0; j < vlens[i]; j++)
            vals[at + j] = (char)('A' + (i * 7 + j) % 26);
        at += vlens[i];
    }
    return vals;
}

/* Stages stage_pairs's five pairs into st; with blocks_after, checks the
 * stage's block count after each. Returns the bytes of their keys and
 * values. */
static size_t stage_all(eng_stage *st, const char *vals, const size_t *vlens, const char **keys,
                        const uint32_t *blocks_after)
{
    size_t at = 0, bytes = 0;
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(eng_stage_put(st, keys[i], strlen(keys[i]), vals + at, vlens[i]), TLY_OK);
        if (blocks_after != NULL)
            ck_assert_uint_eq(st->blocks, blocks_after[i]);
        at += vlens[i];
        bytes += strlen(keys[i]) + vlens[i];
    }
    return bytes;
}

/* Staged pairs replay in the order staged, byte for byte, at the block
 * size's edges (ENG_STAGE_BLOCK_BYTES): a pair that ends a block exactly
 * stays in it, one larger than a block gets its own, and the stage is
 * empty afterwards. */
START_TEST(stage_replays_in_order)
{
    size_t vlens[5];
    const char *keys[5];
    char *vals = stage_pairs(vlens, keys);
    eng_stage st = {0};
    const uint32_t blocks_after[5] = {1, 1, 2, 3, 3};
    size_t bytes = stage_all(&st, vals, vlens, keys, blocks_after);
    ck_assert_uint_eq(st.bytes, bytes);
    put_seq q = {0};
    ck_assert_int_eq(eng_stage_replay(&st, seq_put, &q), TLY_OK);
    ck_assert_uint_eq(q.count, 5);
    size_t at = 0;
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(q.e[i].klen, strlen(keys[i]));
        ck_assert(memcmp(q.e[i].key, keys[i], q.e[i].klen) == 0);
        ck_assert_uint_eq(q.e[i].vlen, vlens[i]);
        ck_assert(vlens[i] == 0 || memcmp(q.e[i].val, vals + at, vlens[i]) == 0);
        at += vlens[i];
    }
    ck_assert(st.head == NULL && st.blocks == 0 && st.bytes == 0);
    seq_free(&q);
    free(vals);
}
END_TEST

/* A replay stops at the first put that fails and returns its error: no
 * pair after it is put, and the stage is empty (its blocks unmapped);
 * eng_stage_free of a stage not replayed frees it too. */
START_TEST(stage_replay_stops_at_error)
{
    size_t vlens[5];
    const char *keys[5];
    char *vals = stage_pairs(vlens, keys);
    eng_stage st = {0};
    for (size_t fail_at = 1; fail_at <= 5; fail_at++) {
        stage_all(&st, vals, vlens, keys, NULL);
        put_seq q = {.fail_at = fail_at};
        ck_assert_int_eq(eng_stage_replay(&st, seq_put, &q), TLY_STORAGE);
        ck_assert_uint_eq(q.calls, fail_at);
        ck_assert_uint_eq(q.count, fail_at - 1);
        ck_assert(st.head == NULL && st.blocks == 0 && st.bytes == 0);
        seq_free(&q);
    }
    ck_assert_int_eq(eng_stage_put(&st, "k", 1, "v", 1), TLY_OK);
    eng_stage_free(&st);
    ck_assert(st.head == NULL && st.blocks == 0 && st.bytes == 0);
    free(vals);
}
END_TEST

/* A key or value of 4 GiB or more does not fit the stage's u32 lengths:
 * TLY_TOO_LARGE before a byte is read or staged. */
START_TEST(stage_refuses_4gib)
{
    eng_stage st = {0};
    const size_t over = (size_t)UINT32_MAX + 1;
    ck_assert_int_eq(eng_stage_put(&st, "k", 1, NULL, over), TLY_TOO_LARGE);
    ck_assert_int_eq(eng_stage_put(&st, NULL, over, "v", 1), TLY_TOO_LARGE);
    ck_assert(st.head == NULL && st.blocks == 0 && st.bytes == 0);
    eng_stage_free(&st);
}
END_TEST

/* Whether restart_on_stores's engines drop the partners a flush writes
 * beyond their cache as soon as it has written them, as tally consume's
 * do (tly_engine_set_flush_drops). */
static bool g_flush_drops;

/* The read_back_max of restart_on_stores's engines (0: off). */
static uint32_t g_read_back_max;

/* Fresh engines for shards of s->n that restart from stores as a consumer
 * does: the rates and programs loaded, the rest read on demand through a cache of
 * `partners` partners and `sales` sales, the fold resuming after seq. */
static void restart_on_stores(shards *s, uint32_t n, kv *stores, uint64_t seq, uint32_t partners,
                              uint32_t sales)
{
    shards_init(s, n);
    for (uint32_t k = 0; k < n; k++) {
        for (size_t i = 0; i < stores[k].count; i++) {
            const kv_entry *x = &stores[k].e[i];
            if (x->klen > 4 && (memcmp(x->key, "S/0/", 4) == 0 || memcmp(x->key, "S/1/", 4) == 0))
                ck_assert_int_eq(tly_engine_load(s->e[k], x->key, x->klen, x->val, x->vlen),
                                 TLY_OK);
        }
        tly_engine_store store = {.get = kv_get,
                                  .scan = kv_scan,
                                  .ctx = &stores[k],
                                  .partners_cached_max = partners,
                                  .sales_cached_max = sales};
        tly_engine_set_store(s->e[k], &store);
        tly_engine_set_flush_drops(s->e[k], g_flush_drops);
        tly_engine_set_read_back(s->e[k], g_read_back_max);
        tly_engine_set_seq(s->e[k], seq);
    }
    s->seq = seq;
}

/* Engines reading their state from the store through a cache of two
 * partners and three sales (nearly every lookup a read, every flush a
 * trim), restarted twice, give the answers and the stored bytes of
 * engines that keep everything in memory, for 1, 2 and 4 shards:
 * cross-shard returns [S1] [S2] included; and so do such engines whose
 * flushes drop each partner beyond the cache as soon as it is written
 * (_i 3-5), nearly every partner of every flush, and those that then read
 * them back after each flush (_i 6-8, tly_engine_read_back; _i 9-11 the
 * same split in two halves, tly_engine_read_back_begin). */
START_TEST(store_matches_memory)
{
    uint32_t n = 1u << (_i % 3);
    g_flush_drops = _i >= 3;
    g_read_back_max = _i >= 6 ? 100000u : 0u;
    g_read_split = _i >= 9;
    g_read_back_seen = 0;
    stream st = {0};
    gen_stream(&st, g_seed + 500 + n, 12000, 30);
    size_t cut1 = st.count / 3, cut2 = 2 * st.count / 3 + 5;
    kv stores[SHARDS_MAX] = {{0}}, direct[SHARDS_MAX] = {{0}};
    shards a, b;
    shards_init(&a, n);
    fold_flushing(&a, direct, &st, 0, st.count, 397);
    restart_on_stores(&b, n, stores, 0, 2, 3);
    fold_flushing(&b, stores, &st, 0, cut1, 397);
    shards_free(&b);
    restart_on_stores(&b, n, stores, cut1, 2, 3);
    fold_flushing(&b, stores, &st, cut1, cut2, 211);
    shards_free(&b);
    restart_on_stores(&b, n, stores, cut2, 2, 3);
    fold_flushing(&b, stores, &st, cut2, st.count, 1000);
    char what[64];
    snprintf(what, sizeof what, "store vs memory, N=%u", n);
    expect_same(&b, &a, what);
    expect_same_stores(stores, direct, n);
    for (uint32_t k = 0; k < n; k++)
        ck_assert(tly_engine_intact(b.e[k]));
    if (g_read_back_max > 0) /* it read partners back, and many */
        ck_assert_uint_gt(g_read_back_seen, 100);
    else
        ck_assert_uint_eq(g_read_back_seen, 0);
    shards_free(&a);
    shards_free(&b);
    stream_free(&st);
    g_flush_drops = false;
    g_read_back_max = 0;
    g_read_split = false;
}
END_TEST

/* A flush with drops that writes more sales than one step of the walk
 * that compacts their vector (ENG_SALES_RELEASE_SLOTS): pages are given
 * back in the middle of the walk, after slots were moved and dropped, and
 * the answers and stored bytes still match engines that keep everything
 * in memory, for 1 and 2 shards, across two such flushes and a restart. */
START_TEST(store_matches_memory_wide_flush)
{
    uint32_t n = (uint32_t)_i + 1;
    g_flush_drops = true;
    stream st = {0};
    gen_stream(&st, g_seed + 900 + n, 6 * ENG_SALES_RELEASE_SLOTS, 40);
    size_t half = st.count / 2;
    kv stores[SHARDS_MAX] = {{0}}, direct[SHARDS_MAX] = {{0}};
    shards a, b;
    shards_init(&a, n);
    fold_flushing(&a, direct, &st, 0, half, half);
    fold_flushing(&a, direct, &st, half, st.count, st.count);
    restart_on_stores(&b, n, stores, 0, 2, 3);
    shards_fold(&b, &st, 0, half);
    uint32_t most = 0;
    for (uint32_t k = 0; k < n; k++)
        most = b.e[k]->dirty_sale_count > most ? b.e[k]->dirty_sale_count : most;
    ck_assert_msg(most > ENG_SALES_RELEASE_SLOTS, "a flush of %u sales", most);
    for (uint32_t k = 0; k < n; k++)
        ck_assert_int_eq(tly_engine_flush(b.e[k], kv_put, &stores[k]), TLY_OK);
    shards_free(&b);
    restart_on_stores(&b, n, stores, half, 2, 3);
    fold_flushing(&b, stores, &st, half, st.count, st.count);
    char what[64];
    snprintf(what, sizeof what, "wide flushes, N=%u", n);
    expect_same(&b, &a, what);
    for (uint32_t k = 0; k < n; k++)
        ck_assert(tly_engine_intact(b.e[k]));
    expect_same_stores(stores, direct, n);
    shards_free(&a);
    shards_free(&b);
    stream_free(&st);
    g_flush_drops = false;
}
END_TEST

/* tly_engine_prefetch is a hint only: an engine told of the next
 * TLY_ENGINE_PREFETCH_AHEAD records before each apply, each at its
 * distance (as tally consume does), and of the next one at distances
 * outside 1..TLY_ENGINE_PREFETCH_AHEAD and with a hash not its partner's
 * at every distance, from an empty map on, for partners
 * it does not know yet, other shards' partners and events without one,
 * answers and stores what an engine never told does; under the
 * sanitizers, it reads nothing it must not. */
START_TEST(prefetch_changes_nothing)
{
    stream st = {0};
    gen_stream(&st, g_seed + 77, 6000, 40);
    shards a, b;
    shards_init(&a, 2);
    shards_init(&b, 2);
    tly_event ahead;
    for (size_t i = 0; i < st.count; i++) {
        for (uint32_t k = TLY_ENGINE_PREFETCH_AHEAD + 1; k-- > 0;) {
            size_t at = i + (k == 0 ? 1 : k);
            if (at >= st.count)
                continue;
            const rec_buf *r = &st.recs[at];
            ck_assert_int_eq(tly_event_decode(r->bytes, r->len, REC_MS, &ahead, NULL), TLY_OK);
            uint64_t h = tly_engine_partner_hash(&ahead);
            ck_assert(ahead.partner.ptr != NULL || h == 0);
            for (uint32_t s = 0; s < 2; s++)
                tly_engine_prefetch(b.e[s], &ahead, h, k == 0 ? TLY_ENGINE_PREFETCH_AHEAD + 1 : k);
            if (k == 1)
                for (uint32_t s = 0; s < 2; s++) {
                    tly_engine_prefetch(b.e[s], &ahead, h, 0);
                    /* a hash not of this partner: another's entry, or none */
                    for (uint32_t d = 1; d <= TLY_ENGINE_PREFETCH_AHEAD; d++)
                        tly_engine_prefetch(b.e[s], &ahead, ~h, d);
                }
        }
        shards_fold(&a, &st, i, i + 1);
        shards_fold(&b, &st, i, i + 1);
    }
    expect_same(&b, &a, "prefetch vs none");
    for (uint32_t s = 0; s < 2; s++) {
        kv sa = {0}, sb = {0};
        ck_assert_int_eq(tly_engine_flush(a.e[s], kv_put, &sa), TLY_OK);
        ck_assert_int_eq(tly_engine_flush(b.e[s], kv_put, &sb), TLY_OK);
        expect_same_store(&sb, &sa, 2, s);
        kv_free(&sa);
        kv_free(&sb);
    }
    shards_free(&a);
    shards_free(&b);
    stream_free(&st);
}
END_TEST

/* A flush with drops of a batch that changed no partner, by an engine
 * that never had one to change (a shard that owns none yet, after a
 * program's event): nothing to order, and the dirty list is not there
 * (qsort must not be handed NULL: the sanitizer build stops at it). */
START_TEST(flush_drops_no_partner)
{
    g_flush_drops = true;
    stream st = {0};
    stream_push_json(&st, "finance",
                     "{\"type\":\"program\",\"id\":\"P1\",\"at\":1735689600000,"
                     "\"program\":\"apex\",\"version\":1,\"currency\":\"USD\","
                     "\"period\":\"quarter\",\"tiers\":[{\"name\":\"A\",\"min_revenue\":0,"
                     "\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{\"mode\":\"retroactive\","
                     "\"brackets\":[{\"from\":0,\"bps\":100}]},\"mdf_expiry_periods\":2,"
                     "\"tier_window_periods\":2}");
    kv stores[SHARDS_MAX] = {{0}};
    shards b;
    restart_on_stores(&b, 1, stores, 0, 2, 3);
    fold_flushing(&b, stores, &st, 0, st.count, 1);
    ck_assert_uint_eq(tly_engine_seq(b.e[0]), 1);
    ck_assert(tly_engine_intact(b.e[0]));
    bool program = false;
    for (size_t i = 0; i < stores[0].count; i++)
        program |= stores[0].e[i].klen > 4 && memcmp(stores[0].e[i].key, "S/1/", 4) == 0;
    ck_assert(program);
    kv_free(&stores[0]);
    shards_free(&b);
    stream_free(&st);
    g_flush_drops = false;
}
END_TEST

/* ---- claims: a partner's record does not list them ---- */

/* Element indices in stored records (engine_records.h). */
#define PARTNER_HIST_AT 20u
#define PARTNER_CLAIMS_AT 22u
#define PARTNER_REV_AT 34u
#define PARTNER_FIELDS 36u
#define PARTNER_FIELDS_V10 35u
#define PARTNER_FIELDS_V9 34u
#define PARTNER_FIELDS_V8 33u
#define PARTNER_FIELDS_V7 32u
#define PARTNER_FIELDS_V6 30u
#define CLAIM_FIELDS 8u
#define CLAIM_FIELDS_V5 9u

/* Packs obj as the value of store entry x. */
static void kv_repack(kv_entry *x, const msgpack_object *obj)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ck_assert_int_eq(msgpack_pack_object(&pk, *obj), 0);
    free(x->val);
    x->val = malloc(sb.size);
    memcpy(x->val, sb.data, sb.size);
    x->vlen = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

/* Unpacks the value of entry x into up (for msgpack_unpacked_destroy)
 * when its key lies under the 4-byte prefix; false, with nothing to free,
 * when it does not. */
static bool unpack_under(const kv_entry *x, const char *prefix, msgpack_unpacked *up)
{
    if (x->klen <= 4 || memcmp(x->key, prefix, 4) != 0)
        return false;
    msgpack_unpacked_init(up);
    ck_assert(msgpack_unpack_next(up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
    return true;
}

/* Records of s under the 4-byte prefix with n elements. */
static size_t records_with(const kv *s, const char *prefix, uint32_t n)
{
    size_t found = 0;
    for (size_t i = 0; i < s->count; i++) {
        msgpack_unpacked up;
        if (!unpack_under(&s->e[i], prefix, &up))
            continue;
        found += up.data.via.array.size == n;
        msgpack_unpacked_destroy(&up);
    }
    return found;
}

/* Claim records of s with n elements. */
static size_t claims_with(const kv *s, uint32_t n)
{
    return records_with(s, "S/3/", n);
}

static size_t buckets_to_v10(kv *s);

/* Rewrites the claim records of store s as Tally wrote them before their
 * key alone named their partner and claim: [fmt, partner, claim, status,
 * ...] (V6), and before buckets (buckets_to_v10). With wrong_claim the
 * first one names another claim than its key. Returns the records
 * rewritten. */
static size_t claims_to_v6(kv *s, bool wrong_claim)
{
    buckets_to_v10(s);
    size_t done = 0;
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        msgpack_unpacked up;
        if (!unpack_under(x, "S/3/", &up))
            continue;
        msgpack_object_array *a = &up.data.via.array;
        ck_assert_uint_eq(a->size, CLAIM_FIELDS);
        /* the key: "S/3/" ‖ u8 length ‖ partner ‖ claim */
        uint32_t plen = (unsigned char)x->key[4];
        msgpack_object f[CLAIM_FIELDS + 2];
        f[0] = a->ptr[0];
        f[1] = (msgpack_object){.type = MSGPACK_OBJECT_STR,
                                .via.str = {.size = plen, .ptr = x->key + 5}};
        f[2] = (msgpack_object){
            .type = MSGPACK_OBJECT_STR,
            .via.str = {.size = (uint32_t)(x->klen - 5 - plen), .ptr = x->key + 5 + plen}};
        if (wrong_claim && done == 0)
            f[2].via.str.size--; /* names a claim the key does not */
        memcpy(&f[3], &a->ptr[1], (CLAIM_FIELDS - 1) * sizeof *f);
        a->ptr = f;
        a->size = CLAIM_FIELDS + 2;
        kv_repack(x, &up.data);
        msgpack_unpacked_destroy(&up);
        done++;
    }
    return done;
}

/* Entries of store under prefix. */
static size_t kv_count(const kv *store, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (size_t i = 0; i < store->count; i++)
        n += store->e[i].klen >= plen && memcmp(store->e[i].key, prefix, plen) == 0;
    return n;
}

/* The entry of s under key, or NULL. */
static kv_entry *kv_at(kv *s, const char *key, size_t klen)
{
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    return found ? &s->e[i] : NULL;
}

/* Removes the entry of s under key, if any. */
static void kv_remove(kv *s, const char *key, size_t klen)
{
    bool found;
    size_t i = kv_find(s, key, klen, &found);
    if (!found)
        return;
    free(s->e[i].key);
    free(s->e[i].val);
    memmove(&s->e[i], &s->e[i + 1], (s->count - i - 1) * sizeof *s->e);
    s->count--;
}

/* Index of the first entry of s under prefix: s->count when none. */
static size_t first_under(const kv *s, const char *prefix)
{
    size_t i = 0, plen = strlen(prefix);
    while (i < s->count && (s->e[i].klen <= plen || memcmp(s->e[i].key, prefix, plen) != 0))
        i++;
    return i;
}

/* A claim key's bucket: "S/3/" ‖ 0 ‖ be32 bucket ‖ u8 length ‖ ... */
#define CLAIM_BUCKET_BYTES 5u

/* True when x is a claim record keyed by bucket. */
static bool claim_bucketed(const kv_entry *x)
{
    return x->klen > 4 + CLAIM_BUCKET_BYTES && memcmp(x->key, "S/3/", 4) == 0 && x->key[4] == 0;
}

/* Partner records of s with `from` elements (owned ones) keep their first
 * `to`. */
static void partners_cut(kv *s, uint32_t from, uint32_t to)
{
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        msgpack_unpacked up;
        if (!unpack_under(x, "S/4/", &up))
            continue;
        if (up.data.via.array.size == from) {
            up.data.via.array.size = to;
            kv_repack(x, &up.data);
        }
        msgpack_unpacked_destroy(&up);
    }
}

/* Rewrites store s as Tally wrote it before claims were keyed by bucket
 * (V10): each claim record goes under "S/3/" ‖ u8 length ‖ partner ‖
 * claim, and owned partners' records lose their last element (the
 * buckets of their claims). Returns the claims moved. */
static size_t buckets_to_v10(kv *s)
{
    size_t moved = 0;
    partners_cut(s, PARTNER_FIELDS, PARTNER_FIELDS_V10);
    /* the bucketed keys sort first under "S/3/", each before the key it
     * moves to */
    for (size_t i = first_under(s, "S/3/"); i < s->count && claim_bucketed(&s->e[i]);) {
        kv_entry *x = &s->e[i];
        char key[4 + 1 + 2 * 128];
        size_t klen = x->klen - CLAIM_BUCKET_BYTES;
        memcpy(key, "S/3/", 4);
        memcpy(key + 4, x->key + 4 + CLAIM_BUCKET_BYTES, klen - 4);
        void *val = x->val;
        size_t vlen = x->vlen;
        x->val = NULL;
        kv_remove(s, x->key, x->klen);                             /* i now holds the next one */
        ck_assert_int_eq(kv_put(s, key, klen, val, vlen), TLY_OK); /* sorts after */
        free(val);
        moved++;
    }
    return moved;
}

/* Claim records keyed by bucket. */
static size_t claims_bucketed(const kv *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        n += claim_bucketed(&s->e[i]);
    return n;
}

/* Rewrites store s as Tally wrote it before partners kept their
 * archive's revenue (V9), after buckets_to_v10: owned partners' records
 * lose their last element ([from, entries]). Returns the revenue entries
 * dropped. */
static size_t rev_to_v9(kv *s)
{
    size_t dropped = 0;
    buckets_to_v10(s);
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        msgpack_unpacked up;
        if (!unpack_under(x, "S/4/", &up))
            continue;
        msgpack_object_array *a = &up.data.via.array;
        if (a->size == PARTNER_FIELDS_V10) {
            const msgpack_object_array *rev = &a->ptr[PARTNER_REV_AT].via.array;
            ck_assert_uint_eq(rev->size, 2);
            dropped += rev->ptr[1].via.array.size;
            a->size = PARTNER_FIELDS_V9;
            kv_repack(x, &up.data);
        }
        msgpack_unpacked_destroy(&up);
    }
    return dropped;
}

/* Partner records of s that keep their archive's revenue. */
static size_t partners_with_rev(const kv *s)
{
    return records_with(s, "S/4/", PARTNER_FIELDS);
}

/* Rewrites store s as Tally wrote it before archive chunks were keyed by
 * period (V8): each "S/7/" chunk [fmt, prev, rows] under (period, u8
 * length, partner) goes to "S/5/" as [fmt, rows] under (u8 length,
 * partner, period), and owned partners' records lose their last two
 * elements (the archive's revenue, the newest chunk's period). Returns
 * the chunks moved. */
static size_t arch_to_v8(kv *s)
{
    size_t moved = 0;
    rev_to_v9(s);
    partners_cut(s, PARTNER_FIELDS_V9, PARTNER_FIELDS_V8);
    for (size_t i = first_under(s, "S/7/"); i < s->count;) {
        kv_entry *x = &s->e[i];
        msgpack_unpacked up;
        if (!unpack_under(x, "S/7/", &up))
            break;
        msgpack_object_array *a = &up.data.via.array;
        ck_assert_uint_eq(a->size, 3);
        a->ptr[1] = a->ptr[2];
        a->size = 2;
        /* "S/7/" ‖ be32 period ‖ u8 length ‖ partner -> "S/5/" ‖ u8 length
         * ‖ partner ‖ be32 period */
        char key[4 + 1 + 128 + 4];
        size_t plen = (unsigned char)x->key[8];
        memcpy(key, "S/5/", 4);
        memcpy(key + 4, x->key + 8, 1 + plen);
        memcpy(key + 5 + plen, x->key + 4, 4);
        kv_repack(x, &up.data);
        msgpack_unpacked_destroy(&up);
        void *val = x->val;
        size_t vlen = x->vlen;
        x->val = NULL;
        kv_remove(s, x->key, x->klen); /* i now holds the next "S/7/" */
        ck_assert_int_eq(kv_put(s, key, 5 + plen + 4, val, vlen), TLY_OK); /* sorts before */
        free(val);
        i++;
        moved++;
    }
    return moved;
}

/* Rewrites store s as Tally wrote it before tier histories left the
 * partner records (V7): each owned partner's record lists its history
 * (from its "S/6/" entry, which goes) and does not count it. Returns the
 * history entries moved back. */
static size_t hist_to_v7(kv *s)
{
    arch_to_v8(s);
    size_t moved = 0;
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        msgpack_unpacked up;
        if (!unpack_under(x, "S/4/", &up))
            continue;
        msgpack_object_array *a = &up.data.via.array;
        if (a->size != PARTNER_FIELDS_V8) { /* another shard's partner */
            msgpack_unpacked_destroy(&up);
            continue;
        }
        uint64_t n = a->ptr[PARTNER_FIELDS_V8 - 1].via.u64;
        ck_assert_uint_eq(a->ptr[PARTNER_HIST_AT].via.array.size, 0);
        char key[4 + 128];
        memcpy(key, "S/6/", 4);
        memcpy(key + 4, x->key + 4, x->klen - 4);
        kv_entry *c = kv_at(s, key, x->klen);
        msgpack_unpacked cup;
        msgpack_unpacked_init(&cup);
        if (n > 0) {
            ck_assert_ptr_nonnull(c);
            ck_assert(msgpack_unpack_next(&cup, c->val, c->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
            ck_assert_uint_eq(cup.data.via.array.size, 2);
            a->ptr[PARTNER_HIST_AT] = cup.data.via.array.ptr[1];
            ck_assert_uint_eq(a->ptr[PARTNER_HIST_AT].via.array.size, n);
        }
        a->size = PARTNER_FIELDS_V7;
        kv_repack(x, &up.data);
        msgpack_unpacked_destroy(&cup);
        msgpack_unpacked_destroy(&up);
        if (c != NULL)
            kv_remove(s, key, x->klen); /* sorts after x: i stays valid */
        moved += n;
    }
    return moved;
}

/* Rewrites store s as Tally wrote it before claim ordinals: every owned
 * partner's record lists its claims' ids in submit order and has no claim
 * count, and claim records have no ordinal. Returns the claims listed. */
static size_t to_legacy_claims(kv *s)
{
    hist_to_v7(s);
    claims_to_v6(s, false);
    size_t listed = 0;
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        if (x->klen <= 4 || memcmp(x->key, "S/4/", 4) != 0)
            continue;
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        ck_assert(msgpack_unpack_next(&up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
        msgpack_object_array *a = &up.data.via.array;
        if (a->size != PARTNER_FIELDS_V6 + 2) { /* another shard's partner */
            msgpack_unpacked_destroy(&up);
            continue;
        }
        uint64_t total = a->ptr[PARTNER_FIELDS_V6].via.u64;
        ck_assert_uint_eq(a->ptr[PARTNER_CLAIMS_AT].via.array.size, 0);
        /* its claims, "S/3/" ‖ len ‖ id ‖ claim, put in ordinal order */
        char prefix[4 + 1 + 128];
        memcpy(prefix, "S/3/", 4);
        prefix[4] = (char)(x->klen - 4);
        memcpy(prefix + 5, x->key + 4, x->klen - 4);
        size_t plen = 5 + x->klen - 4;
        msgpack_object *ids = calloc(total + 1, sizeof *ids);
        msgpack_unpacked *cups = calloc(total + 1, sizeof *cups);
        size_t found = 0;
        for (size_t j = 0; j < s->count; j++) {
            const kv_entry *c = &s->e[j];
            if (c->klen <= plen || memcmp(c->key, prefix, plen) != 0)
                continue;
            ck_assert_uint_lt(found, total);
            msgpack_unpacked_init(&cups[found]);
            ck_assert(msgpack_unpack_next(&cups[found], c->val, c->vlen, NULL) ==
                      MSGPACK_UNPACK_SUCCESS);
            const msgpack_object_array *ca = &cups[found].data.via.array;
            ck_assert_uint_eq(ca->size, CLAIM_FIELDS_V5 + 1);
            uint64_t ord = ca->ptr[CLAIM_FIELDS_V5].via.u64;
            ck_assert_uint_lt(ord, total);
            ids[ord] = ca->ptr[2];
            found++;
        }
        ck_assert_uint_eq(found, total);
        a->ptr[PARTNER_CLAIMS_AT].via.array.ptr = ids;
        a->ptr[PARTNER_CLAIMS_AT].via.array.size = (uint32_t)total;
        a->size = PARTNER_FIELDS_V6;
        kv_repack(x, &up.data);
        listed += total;
        for (size_t j = 0; j < found; j++)
            msgpack_unpacked_destroy(&cups[j]);
        free(cups);
        free(ids);
        msgpack_unpacked_destroy(&up);
    }
    for (size_t i = 0; i < s->count; i++) {
        kv_entry *x = &s->e[i];
        if (x->klen <= 4 || memcmp(x->key, "S/3/", 4) != 0)
            continue;
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        ck_assert(msgpack_unpack_next(&up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
        up.data.via.array.size = CLAIM_FIELDS_V5;
        kv_repack(x, &up.data);
        msgpack_unpacked_destroy(&up);
    }
    return listed;
}

/* The claims that owned partner records of s written with a claim count
 * (not a list) count. */
static uint64_t claims_counted(const kv *s)
{
    uint64_t counted = 0;
    for (size_t i = 0; i < s->count; i++) {
        const kv_entry *x = &s->e[i];
        if (x->klen <= 4 || memcmp(x->key, "S/4/", 4) != 0)
            continue;
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        ck_assert(msgpack_unpack_next(&up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
        const msgpack_object_array *a = &up.data.via.array;
        if (a->size == PARTNER_FIELDS)
            counted += a->ptr[PARTNER_FIELDS_V6].via.u64;
        msgpack_unpacked_destroy(&up);
    }
    return counted;
}

/* Folds half of a generated stream on n shards, flushing, and rewrites
 * each shard's store with convert (which returns what it rewrote: the
 * stream must give it something), as an older Tally would have written it.
 * Engines restarted on those stores fold the rest to the answers of one
 * uninterrupted fold; written anew (rewritten returns how many entries are
 * in the new form), and restarted on the mixed store, they answer the
 * same. */
static void fold_on_converted(uint32_t n, uint64_t seed, size_t (*convert)(kv *),
                              size_t (*rewritten)(const kv *), const char *what)
{
    stream st = {0};
    gen_stream(&st, g_seed + seed + n, 8000, 16);
    size_t half = st.count / 2 + 3;
    kv stores[SHARDS_MAX] = {{0}};
    shards a, b, c;
    shards_init(&a, n);
    fold_flushing(&a, stores, &st, 0, half, 397);
    shards_free(&a);
    size_t converted = 0;
    for (uint32_t k = 0; k < n; k++)
        converted += convert(&stores[k]);
    ck_assert_msg(converted > 0, "%s: the stream gives nothing to convert", what);
    restart_on_stores(&b, n, stores, half, 2, 3);
    fold_flushing(&b, stores, &st, half, st.count, 397);
    shards_init(&c, n);
    shards_fold(&c, &st, 0, st.count);
    expect_same(&b, &c, what);
    shards_free(&b);
    size_t anew = 0;
    for (uint32_t k = 0; k < n; k++)
        anew += rewritten(&stores[k]);
    ck_assert_msg(anew > 0, "%s: nothing was written anew", what);
    restart_on_stores(&b, n, stores, st.count, 2, 3);
    expect_same(&b, &c, what);
    for (uint32_t k = 0; k < n; k++)
        kv_free(&stores[k]);
    shards_free(&b);
    shards_free(&c);
    stream_free(&st);
}

/* Every claim record of s in the form before the key alone named it. */
static size_t claims_to_v6_all(kv *s)
{
    return claims_to_v6(s, false);
}

/* Partners written anew since to_legacy_claims: their records count their
 * claims instead of listing them. */
static size_t claims_rewritten(const kv *s)
{
    return (size_t)claims_counted(s);
}

/* Claim records in the short form (the key names the claim). */
static size_t claims_short_form(const kv *s)
{
    return claims_with(s, CLAIM_FIELDS);
}

/* Histories stored apart from their partners' records. */
static size_t hist_apart(const kv *s)
{
    return kv_count(s, "S/6/");
}

/* A store written before claim ordinals folds on: engines reading it
 * through a tiny cache give the answers of one uninterrupted fold; each
 * partner a batch changes is written anew, with its claims (a restart on
 * the mixed store answers the same), and a claim a later event names is
 * read from the store, not from a list in the partner's record. */
START_TEST(claims_legacy_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 900, to_legacy_claims, claims_rewritten, "legacy claims");
}
END_TEST

/* A store whose claim records name their partner and claim (V6, before
 * the key alone did) folds on to the answers of one uninterrupted fold;
 * the claims a later batch changes are written in the short form, and a
 * restart on the mixed store answers the same. */
START_TEST(claims_v6_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 950, claims_to_v6_all, claims_short_form, "V6 claims");
}
END_TEST

/* A store written before claims were keyed by bucket (V10) folds on to
 * the answers of one uninterrupted fold: its partners' claims are read
 * under their own keys (and rewritten there), new ones go by bucket, and
 * a restart on the mixed store answers the same. */
START_TEST(claims_buckets_v10_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 990, buckets_to_v10, claims_bucketed, "V10 claims");
}
END_TEST

/* A reader of shard 0 of 1 bound to store at checkpoint 1. */
static tly_view_reader *kv_reader(kv *store)
{
    tly_view_reader *r;
    ck_assert_int_eq(tly_view_reader_new(0, 1, &r), TLY_OK);
    tly_engine_store kvs = {.get = kv_get, .scan = kv_scan, .ctx = store};
    ck_assert_int_eq(tly_view_reader_bind(r, &kvs, 1), TLY_OK);
    return r;
}

/* Renders view of partner (id, len) from store with a new reader: what
 * tly_view_reader_doc returns, after checking that its balance document,
 * which reads neither claims nor history, renders. */
static tly_err doc_of(kv *store, char view, const char *id, size_t len)
{
    tly_view_reader *r = kv_reader(store);
    const char *doc;
    size_t dlen;
    ck_assert_int_eq(tly_view_reader_doc(r, 'b', id, len, &doc, &dlen), TLY_OK);
    tly_err err = tly_view_reader_doc(r, view, id, len, &doc, &dlen);
    tly_view_reader_free(r);
    return err;
}

/* Generates a stream (seed offset, events, partners) into st and folds
 * it on one shard into store, flushing as a consumer does. */
static void fold_one_store(stream *st, kv *store, uint64_t seed, size_t events, int partners)
{
    gen_stream(st, g_seed + seed, events, partners);
    shards a;
    shards_init(&a, 1);
    fold_flushing(&a, store, st, 0, st->count, 397);
    shards_free(&a);
}

/* A V6 claim record that names another claim than its key is corrupt,
 * whichever way it is read: by its key, or loaded whole. */
START_TEST(claims_v6_other_claim_corrupt)
{
    stream st = {0};
    kv store = {0};
    fold_one_store(&st, &store, 970, 4000, 8);
    ck_assert_uint_gt(buckets_to_v10(&store), 0); /* the keys claims_to_v6 keeps */
    size_t i = first_under(&store, "S/3/");
    ck_assert_uint_lt(i, store.count); /* the stream files claims */
    char short_key[4 + 1 + 2 * 128];
    size_t short_klen = store.e[i].klen, short_vlen = store.e[i].vlen;
    memcpy(short_key, store.e[i].key, short_klen);
    void *short_val = malloc(short_vlen);
    memcpy(short_val, store.e[i].val, short_vlen);
    ck_assert_uint_gt(claims_to_v6(&store, true), 0); /* keys and order stay */
    const kv_entry *x = &store.e[i];
    /* loaded whole */
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_engine_load(e, x->key, x->klen, x->val, x->vlen), TLY_CORRUPT);
    tly_engine_free(e);
    /* the key's body cut short: no claim after the partner, or no partner */
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_engine_load(e, x->key, 5u + (unsigned char)x->key[4], x->val, x->vlen),
                     TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_load(e, x->key, 5, x->val, x->vlen), TLY_CORRUPT);
    /* a claim id with a NUL, which no event can carry (a record in the
     * short form, which names no claim itself: loaded as it is, it is
     * kept) */
    char nul_key[4 + 1 + 2 * 128];
    memcpy(nul_key, short_key, short_klen);
    ck_assert_int_eq(tly_engine_load(e, nul_key, short_klen, short_val, short_vlen), TLY_OK);
    nul_key[short_klen - 1] = '\0';
    ck_assert_int_eq(tly_engine_load(e, nul_key, short_klen, short_val, short_vlen), TLY_CORRUPT);
    free(short_val);
    tly_engine_free(e);
    /* read by its key: its partner's claims document */
    ck_assert_int_eq(doc_of(&store, 'c', x->key + 5, (unsigned char)x->key[4]), TLY_CORRUPT);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* A store whose partner records list their tier history (V7, before it
 * left them for "S/6/") folds on to the answers of one uninterrupted fold:
 * a partner a later batch changes is written in the new form with its
 * history under "S/6/", and a restart on the mixed store answers the same. */
START_TEST(history_v7_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 980, hist_to_v7, hist_apart, "V7 history");
}
END_TEST

/* Archive chunks keyed by period ("S/7/"). */
static size_t arch_by_period(const kv *s)
{
    return kv_count(s, "S/7/");
}

/* A store whose archive chunks are keyed by partner ("S/5/", V8, before
 * "S/7/") folds on to the answers of one uninterrupted fold: the chunks a
 * later batch archives go under "S/7/", chained to no older one, and a
 * restart on the mixed store (the rebate document reads both) answers
 * the same. */
START_TEST(archive_v8_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 985, arch_to_v8, arch_by_period, "V8 archive");
}
END_TEST

/* Records written before partners kept their archive's revenue (V9) are
 * read as keeping none: a partner whose rules reach into its archive
 * reads the rows themselves until its next flush keeps their revenue.
 * The answers are those of one uninterrupted fold. */
START_TEST(archive_rev_v9_fold_on)
{
    fold_on_converted((uint32_t)_i + 1, 985, rev_to_v9, partners_with_rev, "V9 revenue");
}
END_TEST

/* Where a partner's chain of chunks breaks, its rebate document is
 * corrupt: a link to a chunk that is not there, a chunk under "S/7/" in
 * the form of "S/5/", a link that does not lead to an older period. */
/* Folds the archive tests' stream into store and returns its first
 * archive chunk, whose partner's id goes to id (*id_len bytes). */
static kv_entry *first_chunk(stream *st, kv *store, char id[128], size_t *id_len)
{
    fold_one_store(st, store, 995, 8000, 16);
    size_t i = first_under(store, "S/7/");
    ck_assert_uint_lt(i, store->count); /* the stream archives */
    kv_entry *x = &store->e[i];
    *id_len = (unsigned char)x->key[8];
    memcpy(id, x->key + 9, *id_len);
    return x;
}

START_TEST(archive_chain_broken_corrupt)
{
    stream st = {0};
    kv store = {0};
    char id[128];
    size_t id_len;
    kv_entry *x = first_chunk(&st, &store, id, &id_len);
    ck_assert_int_eq(doc_of(&store, 'r', id, id_len), TLY_OK);
    void *keep = malloc(x->vlen);
    size_t keep_len = x->vlen;
    memcpy(keep, x->val, keep_len);
    msgpack_unpacked up;
    /* the form of "S/5/": [fmt, rows] */
    ck_assert(unpack_under(x, "S/7/", &up));
    up.data.via.array.ptr[1] = up.data.via.array.ptr[2];
    up.data.via.array.size = 2;
    kv_repack(x, &up.data);
    msgpack_unpacked_destroy(&up);
    ck_assert_int_eq(doc_of(&store, 'r', id, id_len), TLY_CORRUPT);
    /* a link to itself */
    ck_assert(kv_put(&store, x->key, x->klen, keep, keep_len) == TLY_OK);
    ck_assert(unpack_under(x, "S/7/", &up));
    up.data.via.array.ptr[1].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    up.data.via.array.ptr[1].via.u64 = tly_be32_get(x->key + 4);
    kv_repack(x, &up.data);
    msgpack_unpacked_destroy(&up);
    ck_assert_int_eq(doc_of(&store, 'r', id, id_len), TLY_CORRUPT);
    /* gone */
    char key[4 + 4 + 1 + 128];
    memcpy(key, x->key, x->klen);
    kv_remove(&store, key, x->klen);
    ck_assert_int_eq(doc_of(&store, 'r', id, id_len), TLY_CORRUPT);
    ck_assert(kv_put(&store, key, sizeof key - 128 + id_len, keep, keep_len) == TLY_OK);
    ck_assert_int_eq(doc_of(&store, 'r', id, id_len), TLY_OK);
    free(keep);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* A partner whose record says its newest archived row is recent (no rows
 * kept, the archive's last period 1,000 later, none of its revenue kept:
 * the rules reach back into it, so loading the partner reads the archive)
 * and whose oldest chunk is gone: each document asked of one reader is
 * corrupt, the second as the first (the partner does not stay cached
 * without its rows). Record elements: rows 19, the archive's count 27 and
 * newest period 28, its revenue [from, entries] 34. */
START_TEST(archive_needed_unreadable_corrupt)
{
    stream st = {0};
    kv store = {0};
    char key[4 + 128];
    size_t id_len;
    (void)first_chunk(&st, &store, key + 4, &id_len);
    memcpy(key, "S/4/", 4);
    kv_entry *rec = kv_at(&store, key, 4 + id_len);
    ck_assert_ptr_nonnull(rec);
    msgpack_unpacked up;
    ck_assert(unpack_under(rec, "S/4/", &up));
    msgpack_object *f = up.data.via.array.ptr;
    ck_assert_uint_eq(up.data.via.array.size, PARTNER_FIELDS);
    ck_assert_uint_gt(f[27].via.u64, 0);
    f[19].via.array.size = 0; /* no kept rows: the archive may end anywhere */
    f[28].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    f[28].via.u64 += 1000;
    /* and none of its revenue kept: the rules read the rows themselves */
    msgpack_object *rev = f[PARTNER_REV_AT].via.array.ptr;
    rev[0].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    rev[0].via.u64 = f[28].via.u64 + 1;
    rev[1].via.array.size = 0;
    kv_repack(rec, &up.data);
    msgpack_unpacked_destroy(&up);
    /* the chain's newest chunk (element 33 names its first period) gone */
    size_t c = first_under(&store, "S/7/");
    for (; c < store.count && memcmp(store.e[c].key, "S/7/", 4) == 0; c++)
        if ((unsigned char)store.e[c].key[8] == id_len &&
            memcmp(store.e[c].key + 9, key + 4, id_len) == 0)
            break;
    char chunk[4 + 4 + 1 + 128];
    size_t clen = store.e[c].klen;
    memcpy(chunk, store.e[c].key, clen);
    kv_remove(&store, chunk, clen);
    tly_view_reader *r = kv_reader(&store);
    const char *doc;
    size_t dlen;
    for (const char *v = "btbP"; *v; v++)
        ck_assert_int_eq(tly_view_reader_doc(r, *v, key + 4, id_len, &doc, &dlen), TLY_CORRUPT);
    tly_view_reader_free(r);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* A partner record that counts history entries its "S/6/" entry does not
 * hold (or that has none) is corrupt where the history is read: its tier
 * document; so is an "S/6/" entry loaded before or without its partner. */
START_TEST(history_count_mismatch_corrupt)
{
    stream st = {0};
    kv store = {0};
    fold_one_store(&st, &store, 990, 8000, 16);
    size_t i = first_under(&store, "S/6/");
    ck_assert_uint_lt(i, store.count); /* some partner moved tiers */
    kv_entry *x = &store.e[i];
    const char *partner = x->key + 4;
    size_t plen = x->klen - 4;
    /* loaded whole: before its partner's record */
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_engine_load(e, x->key, x->klen, x->val, x->vlen), TLY_CORRUPT);
    tly_engine_free(e);
    ck_assert_int_eq(doc_of(&store, 't', partner, plen), TLY_OK);
    /* a tier name with a NUL, which no event can carry; then one entry
     * fewer than the record counts */
    char *kept = malloc(x->vlen);
    size_t kept_len = x->vlen;
    memcpy(kept, x->val, x->vlen);
    for (int change = 0; change < 2; change++) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        ck_assert(msgpack_unpack_next(&up, kept, kept_len, NULL) == MSGPACK_UNPACK_SUCCESS);
        msgpack_object_array *hist = &up.data.via.array.ptr[1].via.array;
        ck_assert_uint_gt(hist->size, 0);
        msgpack_object *from = &hist->ptr[0].via.array.ptr[2];
        char name[128];
        ck_assert_uint_gt(from->via.str.size, 1);
        memcpy(name, from->via.str.ptr, from->via.str.size);
        name[1] = '\0';
        if (change == 0)
            from->via.str.ptr = name;
        else
            hist->size--;
        kv_repack(x, &up.data);
        msgpack_unpacked_destroy(&up);
        ck_assert_int_eq(doc_of(&store, 't', partner, plen), TLY_CORRUPT);
    }
    free(kept);
    /* none at all */
    char key[4 + 128];
    memcpy(key, x->key, x->klen);
    kv_remove(&store, key, x->klen);
    ck_assert_int_eq(doc_of(&store, 't', key + 4, plen), TLY_CORRUPT);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* Sets the last byte of str element at of entry x's value to c. */
static void char_in_str(kv_entry *x, uint32_t at, char c)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    ck_assert(msgpack_unpack_next(&up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
    msgpack_object *o = &up.data.via.array.ptr[at];
    ck_assert_int_eq(o->type, MSGPACK_OBJECT_STR);
    ck_assert_uint_gt(o->via.str.size, 0);
    char text[256];
    memcpy(text, o->via.str.ptr, o->via.str.size);
    text[o->via.str.size - 1] = c;
    o->via.str.ptr = text;
    kv_repack(x, &up.data);
    msgpack_unpacked_destroy(&up);
}

/* A stored claim reason, partner name, partner id or program name with a
 * NUL, which no event can carry, is corrupt: the documents that would
 * show it are refused. */
START_TEST(stored_text_with_nul_corrupt)
{
    stream st = {0};
    kv store = {0};
    fold_one_store(&st, &store, 995, 8000, 16);
    /* a claim with a reason: [fmt, status, requested, approved, paid,
     * reason, shares, ordinal] */
    size_t i = first_under(&store, "S/3/");
    for (; i < store.count; i++) {
        msgpack_unpacked up;
        if (!unpack_under(&store.e[i], "S/3/", &up))
            continue;
        bool reason = up.data.via.array.ptr[5].type == MSGPACK_OBJECT_STR;
        msgpack_unpacked_destroy(&up);
        if (reason)
            break;
    }
    ck_assert_uint_lt(i, store.count); /* the stream rejects or denies a claim */
    kv_entry *x = &store.e[i];
    size_t at = 4 + (claim_bucketed(x) ? CLAIM_BUCKET_BYTES : 0); /* its length byte */
    const char *partner = x->key + at + 1;
    size_t plen = (unsigned char)x->key[at];
    ck_assert_int_eq(doc_of(&store, 'c', partner, plen), TLY_OK);
    char_in_str(x, 5, '\0');
    ck_assert_int_eq(doc_of(&store, 'c', partner, plen), TLY_CORRUPT);
    /* the partner's own record: [fmt, id, program, owned, enroll_seq, name,
     * ...] */
    char key[4 + 128];
    memcpy(key, "S/4/", 4);
    memcpy(key + 4, partner, plen);
    kv_entry *rec = kv_at(&store, key, 4 + plen);
    ck_assert_ptr_nonnull(rec);
    char_in_str(rec, 5, '\0');
    tly_view_reader *r;
    ck_assert_int_eq(tly_view_reader_new(0, 1, &r), TLY_OK);
    tly_engine_store kvs = {.get = kv_get, .scan = kv_scan, .ctx = &store};
    const char *doc;
    size_t dlen;
    ck_assert_int_eq(tly_view_reader_bind(r, &kvs, 1), TLY_OK);
    ck_assert_int_eq(tly_view_reader_doc(r, 'b', partner, plen, &doc, &dlen), TLY_CORRUPT);
    /* the id it names (element 1): its row of the partner list, rendered
     * from the record alone, is refused too (the name put back first, so
     * that only the id is wrong) */
    char_in_str(rec, 5, 'x');
    ck_assert_int_eq(tly_view_reader_row(r, rec->val, rec->vlen, NULL, NULL, &doc, &dlen), TLY_OK);
    char_in_str(rec, 1, '\0');
    ck_assert_int_eq(tly_view_reader_row(r, rec->val, rec->vlen, NULL, NULL, &doc, &dlen),
                     TLY_CORRUPT);
    tly_view_reader_free(r);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* One event into shard engine s->e[0]: its result, not asserted. */
static tly_err apply_text(shards *s, const char *source, const char *text)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    to_mp_text(text, &sb);
    tly_event ev;
    ck_assert_int_eq(tly_event_decode(sb.data, sb.size, REC_MS, &ev, NULL), TLY_OK);
    tly_record rec = {.seq = ++s->seq,
                      .recorded_ms = REC_MS,
                      .source = {source, (uint32_t)strlen(source)},
                      .event = (const uint8_t *)sb.data,
                      .event_len = sb.size};
    tly_err err = tly_engine_apply(s->e[0], &rec, &ev);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

/* What figures_out_of_line_corrupt changes in its store. */
enum out_of_line { OOL_CLAIM_SHARE, OOL_SALE_CLAWED, OOL_BUCKET };

/* p1 sold 100,000 (1,000 accrued) and filed claim c1 of 500, pending;
 * stored, then one figure is changed the way no fold leaves it. */
static void out_of_line_store(kv *store, enum out_of_line what, uint64_t *seq)
{
    shards a;
    shards_init(&a, 1);
    program(&a, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&a, "p1", "acme", Q1_25);
    sale(&a, "d1", "S1", "p1", 100000, "USD", Q1_25 + DAY);
    claim(&a, "p1", "c1", "submit", 500, Q1_25 + 2 * DAY);
    ck_assert_int_eq(tly_engine_flush(a.e[0], kv_put, store), TLY_OK);
    *seq = a.seq;
    shards_free(&a);
    static const char *const prefix[] = {"S/3/", "S/2/", "S/4/"};
    size_t i = first_under(store, prefix[what]);
    ck_assert_uint_lt(i, store->count);
    msgpack_unpacked up;
    ck_assert(unpack_under(&store->e[i], prefix[what], &up));
    msgpack_object *f = up.data.via.array.ptr;
    msgpack_object *o;
    switch (what) {
    case OOL_CLAIM_SHARE: /* [fmt, status, requested, approved, paid, reason, shares, ...] */
        o = &f[6].via.array.ptr[0].via.array.ptr[1]; /* its one share: 500 */
        break;
    case OOL_SALE_CLAWED: /* [fmt, partner, currency, seq, at, amount, returned, accrual,
                           * clawed, ...]: clawed over the accrual */
        o = &f[8];
        o->via.u64 = f[7].via.u64;
        break;
    default: /* the partner's first bucket (element 18: [period, remaining]) */
        o = &f[18].via.array.ptr[0].via.array.ptr[1];
        break;
    }
    ck_assert_int_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    o->via.u64 += what == OOL_CLAIM_SHARE ? (uint64_t)-1 : 1u;
    kv_repack(&store->e[i], &up.data);
    msgpack_unpacked_destroy(&up);
}

/* Figures out of line with what the fold keeps, which the fold relies on,
 * are corrupt when a consumer's engine reads them rather than a reason to
 * stop the process (a TLY_ASSERT): a claim whose shares do not hold what
 * it reserves (cancelling it gave back more than its shares), a sale
 * clawed back beyond its accrual (a return debited a negative amount),
 * a partner whose MDF invariant fails (its next flush). A document
 * reader still renders the last, as `audit diff` shows it. */
START_TEST(figures_out_of_line_corrupt)
{
    static const char *const event[] = {
        "{\"type\":\"claim\",\"id\":\"K900\",\"at\":1735862400000,\"partner\":\"p1\","
        "\"claim\":\"c1\",\"action\":\"cancel\"}",
        "{\"type\":\"return\",\"id\":\"R900\",\"at\":1735862400000,\"partner\":\"p1\","
        "\"sale\":\"S1\",\"qty\":1,\"amount\":50000,\"currency\":\"USD\"}",
        "{\"type\":\"sale\",\"id\":\"S900\",\"at\":1735862400000,\"partner\":\"p1\","
        "\"sku\":\"X\",\"qty\":1,\"amount\":1000,\"currency\":\"USD\"}"};
    static const char *const source[] = {"portal", "d1", "d1"};
    for (int what = OOL_CLAIM_SHARE; what <= OOL_BUCKET; what++) {
        kv store = {0};
        uint64_t seq;
        out_of_line_store(&store, (enum out_of_line)what, &seq);
        shards b;
        restart_on_stores(&b, 1, &store, seq, 8, 8);
        ck_assert_int_eq(apply_text(&b, source[what], event[what]), TLY_CORRUPT);
        shards_free(&b);
        if (what == OOL_BUCKET)
            ck_assert_int_eq(doc_of(&store, 'b', "p1", 2), TLY_OK);
        kv_free(&store);
    }
}
END_TEST

/* A partner's record under another partner's key (which no flush writes)
 * is refused, and its bytes do not stand for the partner they name: with
 * the record of member a, its name changed, under key "S/4/0-other", that
 * key's documents are corrupt and a's own, asked next of the same reader,
 * are rendered from a's own record. */
START_TEST(stored_record_under_other_key_corrupt)
{
    stream st = {0};
    kv store = {0};
    fold_one_store(&st, &store, 996, 8000, 16);
    size_t i = first_under(&store, "S/4/");
    bool member = false;
    for (; i < store.count && !member; i++)
        ck_assert_int_eq(tly_engine_partner_member(store.e[i].val, store.e[i].vlen, &member),
                         TLY_OK);
    ck_assert(member);
    char a[132];
    size_t alen = store.e[i - 1].klen - 4;
    memcpy(a, store.e[i - 1].key + 4, alen);
    kv_entry copy = {.val = malloc(store.e[i - 1].vlen), .vlen = store.e[i - 1].vlen};
    memcpy(copy.val, store.e[i - 1].val, copy.vlen);
    char_in_str(&copy, 5, 'Z'); /* [fmt, id, program, owned, enroll_seq, name, ...] */
    kv_put(&store, "S/4/0-other", 11, copy.val, copy.vlen);
    free(copy.val);
    tly_view_reader *r = kv_reader(&store);
    const char *doc;
    size_t dlen;
    for (const char *v = "brtcP"; *v; v++)
        ck_assert_int_eq(tly_view_reader_doc(r, *v, "0-other", 7, &doc, &dlen), TLY_CORRUPT);
    ck_assert_int_eq(tly_view_reader_doc(r, 'P', a, alen, &doc, &dlen), TLY_OK);
    json_t *row = json_loadb(doc, dlen, 0, NULL);
    const char *name = json_string_value(json_object_get(row, "name"));
    ck_assert_ptr_nonnull(name);
    ck_assert_msg(name[strlen(name) - 1] != 'Z', "a's row from the other key's record: %s", name);
    json_decref(row);
    tly_view_reader_free(r);
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* ---- a partner's active certifications: one block of entries ---- */

/* Elements of an owned partner's record: its active pairs, [pair key,
 * expires] each in the order first earned, and its held events. */
#define PARTNER_CERTS_AT (PARTNER_HIST_AT + 1u)
#define PARTNER_HELD_AT (PARTNER_CLAIMS_AT + 1u)

/* The pairs certs_block_edges earns and ends: person i % 7 and cert i / 7,
 * names of 1 to 40 and 1 to 101 bytes (persons 0 and 4, 1 and 5, 2 and 6
 * of the same length: entries of the same size), and last the longest
 * pair key there is (two names of TLY_NAME_BYTES_MAX). */
#define CERT_PAIRS 42u

static void cert_pair_names(uint32_t i, char person[TLY_NAME_BYTES_MAX + 1],
                            char cert[TLY_NAME_BYTES_MAX + 1])
{
    bool longest = i == CERT_PAIRS - 1;
    size_t plen = longest ? TLY_NAME_BYTES_MAX : 1 + i % 7 % 4 * 13;
    size_t clen = longest ? TLY_NAME_BYTES_MAX : 1 + i / 7 * 20;
    memset(person, longest ? 'P' : (int)('a' + i % 7), plen);
    memset(cert, longest ? 'C' : (int)('k' + i / 7), clen);
    person[plen] = cert[clen] = '\0';
}

/* The pair key of pair i into key; its length. */
static uint32_t cert_pair_key(uint32_t i, char key[ENG_PAIR_KEY_BYTES_MAX])
{
    char person[TLY_NAME_BYTES_MAX + 1], cert[TLY_NAME_BYTES_MAX + 1];
    cert_pair_names(i, person, cert);
    size_t plen = strlen(person), clen = strlen(cert);
    key[0] = (char)plen;
    memcpy(key + 1, person, plen);
    memcpy(key + 1 + plen, cert, clen);
    return (uint32_t)(1 + plen + clen);
}

/* What the engine must hold for the partner: its active pairs (indices)
 * and their expiries, in the order first earned; and how often an end
 * removed the first entry, one in the middle, the last. */
typedef struct cert_model {
    uint32_t pair[CERT_PAIRS];
    int64_t expires[CERT_PAIRS];
    uint32_t n;
    uint32_t removed[3];
} cert_model;

static void cert_model_apply(cert_model *m, uint32_t pair, bool earned, int64_t expires)
{
    uint32_t i = 0;
    while (i < m->n && m->pair[i] != pair)
        i++;
    if (earned) {
        if (i == m->n)
            m->pair[m->n++] = pair;
        m->expires[i] = expires; /* [T14] */
        return;
    }
    if (i == m->n)
        return; /* cert_not_active */
    m->removed[i == 0 ? 0 : i + 1 == m->n ? 2 : 1]++;
    memmove(&m->pair[i], &m->pair[i + 1], (m->n - i - 1) * sizeof m->pair[0]);
    memmove(&m->expires[i], &m->expires[i + 1], (m->n - i - 1) * sizeof m->expires[0]);
    m->n--;
}

/* The same certification of partner to a and b (the same id; b NULL: a
 * only). */
static void cert_of(shards *a, shards *b, const char *partner, uint32_t pair, const char *action,
                    int64_t expires)
{
    char person[TLY_NAME_BYTES_MAX + 1], cert[TLY_NAME_BYTES_MAX + 1], exp[48] = "";
    cert_pair_names(pair, person, cert);
    if (expires != ENG_NO_EXPIRY)
        snprintf(exp, sizeof exp, ",\"expires\":%" PRId64, expires);
    int id = ++next_id;
    shards *both[2] = {a, b};
    for (int k = 0; k < (b != NULL ? 2 : 1); k++)
        tsend(both[k], "certs",
              "{\"type\":\"certification\",\"id\":\"C%d\",\"at\":%" PRId64
              ",\"partner\":\"%s\",\"person\":\"%s\",\"cert\":\"%s\",\"action\":\"%s\"%s}",
              id, Q1_25 + DAY, partner, person, cert, action, exp);
}

/* The same certification of partner "cp" to a and b (the same id; b
 * NULL: a only). */
static void cert_both(shards *a, shards *b, uint32_t pair, const char *action, int64_t expires)
{
    cert_of(a, b, "cp", pair, action, expires);
}

/* The partner's block in engine s against m, entry by entry. */
static void expect_cert_block(const shards *s, const cert_model *m)
{
    tly_engine *e = s->e[0];
    uint32_t p;
    ck_assert_int_eq(eng_partner_find(e, "cp", 2, &p), TLY_OK);
    ck_assert_uint_ne(p, ENG_NONE);
    const eng_pstate *st = e->partners[p].st;
    ck_assert_uint_eq(eng_cert_count(st), m->n);
    ck_assert_uint_le(st->cert_bytes, st->cert_cap);
    uint32_t off = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        char key[ENG_PAIR_KEY_BYTES_MAX];
        uint32_t klen = cert_pair_key(m->pair[i], key);
        ck_assert_uint_eq(eng_cert_find(st, key, klen), off);
        eng_cert c;
        off = eng_cert_at(st, off, &c);
        ck_assert_msg(c.key_len == klen && memcmp(c.key, key, klen) == 0, "entry %u", i);
        ck_assert_int_eq(c.expires_ms, m->expires[i]);
    }
    ck_assert_uint_eq(off, st->cert_bytes);
}

/* The partner's stored record in store against m, pair by pair; whether it
 * holds the longest pair key. */
static bool expect_certs_stored(kv *store, const cert_model *m)
{
    kv_entry *x = kv_at(store, "S/4/cp", 6);
    ck_assert_ptr_nonnull(x);
    msgpack_unpacked up;
    ck_assert(unpack_under(x, "S/4/", &up));
    const msgpack_object_array *certs = &up.data.via.array.ptr[PARTNER_CERTS_AT].via.array;
    ck_assert_uint_eq(certs->size, m->n);
    bool longest = false;
    for (uint32_t i = 0; i < m->n; i++) {
        const msgpack_object *pair = certs->ptr[i].via.array.ptr;
        char key[ENG_PAIR_KEY_BYTES_MAX];
        uint32_t klen = cert_pair_key(m->pair[i], key);
        ck_assert_int_eq(pair[0].type, MSGPACK_OBJECT_BIN);
        ck_assert_msg(pair[0].via.bin.size == klen && memcmp(pair[0].via.bin.ptr, key, klen) == 0,
                      "stored pair %u", i);
        ck_assert_int_eq(pair[1].via.i64, m->expires[i]);
        longest |= klen == ENG_PAIR_KEY_BYTES_MAX;
    }
    msgpack_unpacked_destroy(&up);
    return longest;
}

/* The next draw in [0, n) of rng (a 64-bit LCG state). */
static uint32_t cert_draw(uint64_t *rng, uint32_t n)
{
    *rng = *rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return (uint32_t)(*rng >> 33) % n;
}

/* One pseudo-random certification: end_pct in a hundred end a pair
 * (expired or revoked), nearly all of them an active one wherever it is in
 * the block, a few any pair (cert_not_active when inactive); the rest earn
 * a pair, new or again, without an expiry, expiring within the open period
 * or after it. */
static void cert_step(shards *a, shards *b, cert_model *m, uint64_t *rng, uint32_t end_pct)
{
    uint32_t pair = cert_draw(rng, CERT_PAIRS), roll = cert_draw(rng, 100);
    bool end = roll < end_pct;
    if (end && roll + 5 < end_pct && m->n > 0)
        pair = m->pair[cert_draw(rng, m->n)];
    int64_t expires = ENG_NO_EXPIRY;
    uint32_t kind = cert_draw(rng, 3);
    if (!end && kind > 0)
        expires = (kind == 1 ? Q1_25 + 30 * DAY : Q3_25) + cert_draw(rng, 1000);
    cert_both(a, b, pair, end ? (cert_draw(rng, 2) ? "expired" : "revoked") : "earned", expires);
    cert_model_apply(m, pair, !end, expires);
}

/* The pairs the tier document counts: those without an expiry or expiring
 * after the open period [T10]. */
static int64_t cert_model_active(const cert_model *m)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < m->n; i++)
        n += m->expires[i] >= Q2_25;
    return n;
}

/* Flushes a into direct and b into stores, checks the stored pairs and
 * restarts b on its store, which reads the partner back from its record
 * (for its tier document, then its block is checked); whether the record
 * held the longest key. */
static bool cert_checkpoint(shards *a, shards *b, kv *stores, kv *direct, const cert_model *m)
{
    ck_assert_int_eq(tly_engine_flush(a->e[0], kv_put, &direct[0]), TLY_OK);
    ck_assert_int_eq(tly_engine_flush(b->e[0], kv_put, &stores[0]), TLY_OK);
    bool longest = expect_certs_stored(&direct[0], m);
    expect_certs_stored(&stores[0], m);
    ck_assert_int_eq(vint(a, 't', "cp", "active_certs"), cert_model_active(m));
    uint64_t seq = b->seq;
    shards_free(b);
    restart_on_stores(b, 1, stores, seq, 2, 3);
    ck_assert_int_eq(vint(b, 't', "cp", "active_certs"), cert_model_active(m));
    expect_cert_block(b, m); /* read back from the record: the same block */
    return longest;
}

/* Many pairs on one partner, earned, earned again, expired and revoked in
 * mixed order, the longest pair key among them: after every event the
 * partner's block holds exactly the pairs and expiries a plain list does,
 * in the order first earned, whichever entry an end removed; the stored
 * record lists them so at each flush, and an engine read back from its
 * record after each flush stores the same bytes as one that never was. */
START_TEST(certs_block_edges)
{
    shards a, b;
    kv stores[1] = {{0}}, direct[1] = {{0}};
    shards_init(&a, 1);
    restart_on_stores(&b, 1, stores, 0, 2, 3);
    int id0 = next_id;
    program(&a, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&a, "cp", "acme", Q1_25);
    next_id = id0;
    program(&b, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&b, "cp", "acme", Q1_25);
    cert_model m = {0};
    uint64_t rng = g_seed;
    uint32_t most = 0, longest = 0;
    for (int step = 1; step <= 900; step++) {
        /* the block grows to most pairs, shrinks, grows again */
        cert_step(&a, &b, &m, &rng, step <= 250 ? 10 : step <= 600 ? 60 : 35);
        expect_cert_block(&a, &m);
        most = m.n > most ? m.n : most;
        if (step % 31 == 0)
            longest += cert_checkpoint(&a, &b, stores, direct, &m);
    }
    cert_checkpoint(&a, &b, stores, direct, &m);
    ck_assert_uint_ge(most, 20);
    ck_assert_uint_gt(longest, 0);
    for (int k = 0; k < 3; k++) /* first, middle and last entries removed */
        ck_assert_uint_ge(m.removed[k], 10);
    expect_same(&b, &a, "certifications read back vs in memory");
    expect_same_stores(stores, direct, 1);
    shards_free(&a);
    shards_free(&b);
}
END_TEST

/* Fills the vectors and names eng_pstate_settle moves into a block: n
 * buckets, rows and acts (periods 10, 11, ...), one open figure and two
 * certification pairs, named name (NULL: none) in region "EMEA". */
static void fill_state(eng_pstate *s, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        int32_t period = 10 + (int32_t)i;
        eng_row *w;
        ck_assert_int_eq(eng_row_get(s, period, &w), TLY_OK);
        w->revenue = 1000 + i;
        ck_assert_int_eq(
            eng_pstate_grow(s, (void **)&s->buckets, &s->bucket_cap, i + 1, sizeof *s->buckets),
            TLY_OK);
        s->buckets[s->bucket_count++] = (eng_bucket){period, 200 + (int64_t)i};
        ck_assert_int_eq(eng_pstate_grow(s, (void **)&s->acts, &s->act_cap, i + 1, sizeof *s->acts),
                         TLY_OK);
        s->acts[s->act_count++] = (eng_act){.period = period, .v = {[ENG_ACT_PAID] = 7 + i}};
    }
    s->opens = malloc(sizeof *s->opens);
    ck_assert_ptr_nonnull(s->opens);
    s->opens[0] = (eng_share){12, 345};
    s->open_count = 1;
    ck_assert_int_eq(eng_cert_add(s, "\1pA", 4, 99), TLY_OK);
    ck_assert_int_eq(eng_cert_add(s, "\1qB", 4, ENG_NO_EXPIRY), TLY_OK);
    if (name != NULL)
        ck_assert_int_eq(eng_name_copy(&s->name, name, strlen(name)), TLY_OK);
    ck_assert_int_eq(eng_name_copy(&s->region, "EMEA", 4), TLY_OK);
    s->accrued = 4242;
}

/* What fill_state(s, n, ...) put in st, wherever its vectors lie. */
static void expect_filled(const eng_pstate *st, uint32_t n)
{
    ck_assert_uint_eq(st->row_count, n);
    ck_assert_uint_eq(st->bucket_count, n);
    ck_assert_uint_eq(st->act_count, n);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq(st->rows[i].period, 10 + (int32_t)i);
        ck_assert_int_eq(st->rows[i].revenue, 1000 + (int64_t)i);
        ck_assert_int_eq(st->buckets[i].remaining, 200 + (int64_t)i);
        ck_assert_int_eq(st->acts[i].v[ENG_ACT_PAID], 7 + (int64_t)i);
    }
    ck_assert_uint_eq(st->open_count, 1);
    ck_assert_int_eq(st->opens[0].amount, 345);
    ck_assert_uint_eq(eng_cert_count(st), 2);
    ck_assert_uint_ne(eng_cert_find(st, "\1qB", 4), ENG_NONE);
    ck_assert_str_eq(st->region.ptr, "EMEA");
    ck_assert_int_eq(st->accrued, 4242);
}

/* eng_pstate_settle: a state read from the store becomes one allocation,
 * its buckets, rows and acts with ENG_SETTLE_SPARE spare entries; filling
 * the spare keeps a vector in the block and one entry more moves it out
 * with what it held (as certifications, the name and the region do when
 * replaced); the scratch it was read into comes back empty with its
 * vectors, for the next read. Under the sanitizers every vector is freed
 * exactly once, in the block or out of it. */
START_TEST(settled_state_block)
{
    eng_pstate *s = eng_pstate_new();
    ck_assert_ptr_nonnull(s);
    fill_state(s, 3, "Acme");
    eng_pstate *st = eng_pstate_settle(s);
    ck_assert_ptr_nonnull(st);
    ck_assert_uint_gt(st->block_bytes, 0);
    expect_filled(st, 3);
    ck_assert_str_eq(st->name.ptr, "Acme");
    const void *in[] = {st->buckets, st->rows,     st->acts,       st->opens,
                        st->certs,   st->name.ptr, st->region.ptr, st + 1};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        ck_assert_msg(eng_pstate_inline(st, in[i]), "vector %zu in the block", i);
    ck_assert(!eng_pstate_inline(st, st));
    ck_assert(!eng_pstate_inline(st, (const char *)(st + 1) + st->block_bytes));
    ck_assert_uint_eq(st->row_cap, 3 + ENG_SETTLE_SPARE);
    ck_assert_uint_eq(st->bucket_cap, 3 + ENG_SETTLE_SPARE);
    ck_assert_uint_eq(st->act_cap, 3 + ENG_SETTLE_SPARE);
    /* the scratch: empty, its vectors kept */
    ck_assert(s->row_count == 0 && s->bucket_count == 0 && s->act_count == 0);
    ck_assert(s->cert_bytes == 0 && s->open_count == 0 && s->opens == NULL);
    ck_assert(s->name.ptr == NULL && s->region.ptr == NULL && s->accrued == 0);
    ck_assert(s->rows != NULL && s->row_cap >= 3 && s->certs != NULL);
    ck_assert(s->arch_all && s->claims_all && s->cold && s->arch_head == ENG_ARCH_NONE);

    /* the spare rows fill in the block; the next one moves them out */
    eng_row *w;
    for (uint32_t i = 0; i < ENG_SETTLE_SPARE; i++)
        ck_assert_int_eq(eng_row_get(st, 13 + (int32_t)i, &w), TLY_OK);
    ck_assert(eng_pstate_inline(st, st->rows));
    ck_assert_int_eq(eng_row_get(st, 5, &w), TLY_OK); /* before every other */
    ck_assert(!eng_pstate_inline(st, st->rows));
    ck_assert_uint_eq(st->row_count, 4 + ENG_SETTLE_SPARE);
    ck_assert_int_eq(st->rows[0].period, 5);
    ck_assert_int_eq(st->rows[3].revenue, 1002);
    ck_assert_int_eq(eng_pstate_grow(st, (void **)&st->buckets, &st->bucket_cap, st->bucket_cap + 1,
                                     sizeof *st->buckets),
                     TLY_OK);
    ck_assert(!eng_pstate_inline(st, st->buckets));
    ck_assert_int_eq(st->buckets[2].remaining, 202);
    ck_assert_int_eq(eng_cert_add(st, "\1rC", 4, 5), TLY_OK); /* the certs had no spare */
    ck_assert(!eng_pstate_inline(st, st->certs));
    ck_assert_uint_eq(eng_cert_count(st), 3);
    ck_assert_uint_ne(eng_cert_find(st, "\1pA", 4), ENG_NONE);
    eng_pstate_name_free(st, &st->region); /* as a re-enrollment does */
    ck_assert_ptr_null(st->region.ptr);
    ck_assert_int_eq(eng_name_copy(&st->region, "APAC", 4), TLY_OK);
    ck_assert(!eng_pstate_inline(st, st->region.ptr));
    ck_assert(eng_pstate_inline(st, st->acts)); /* untouched */
    eng_pstate_free(st);

    /* the scratch's next read: fewer entries, no name; nothing stale */
    fill_state(s, 1, NULL);
    st = eng_pstate_settle(s);
    ck_assert_ptr_nonnull(st);
    expect_filled(st, 1);
    ck_assert_ptr_null(st->name.ptr);
    eng_pstate_free(st);

    /* an empty state: its spare entries only */
    st = eng_pstate_settle(s);
    ck_assert_ptr_nonnull(st);
    ck_assert(st->row_count == 0 && st->row_cap == ENG_SETTLE_SPARE);
    ck_assert(eng_pstate_inline(st, st->rows) && eng_pstate_inline(st, st->acts));
    ck_assert(st->certs == NULL && st->opens == NULL && st->name.ptr == NULL);
    eng_pstate_free(st);
    eng_pstate_free(s);
}
END_TEST

/* Sets the bin at field of entry `entry` of list list_at of record x, a
 * longest pair key, one byte longer. */
static void lengthen_pair_key(kv_entry *x, uint32_t list_at, uint32_t entry, uint32_t field)
{
    msgpack_unpacked up;
    ck_assert(unpack_under(x, "S/4/", &up));
    msgpack_object *o = &up.data.via.array.ptr[list_at].via.array.ptr[entry].via.array.ptr[field];
    ck_assert_int_eq(o->type, MSGPACK_OBJECT_BIN);
    ck_assert_uint_eq(o->via.bin.size, ENG_PAIR_KEY_BYTES_MAX);
    char key[ENG_PAIR_KEY_BYTES_MAX + 1];
    memcpy(key, o->via.bin.ptr, ENG_PAIR_KEY_BYTES_MAX);
    key[ENG_PAIR_KEY_BYTES_MAX] = 'C';
    o->via.bin.ptr = key;
    o->via.bin.size = ENG_PAIR_KEY_BYTES_MAX + 1;
    kv_repack(x, &up.data);
    msgpack_unpacked_destroy(&up);
}

/* What reading partner id from store gives an engine restarted on it. */
static tly_err partner_read_from(kv *store, const char *id)
{
    shards b;
    restart_on_stores(&b, 1, store, 100, 2, 3);
    uint32_t p;
    tly_err err = eng_partner_find(b.e[0], id, strlen(id), &p);
    shards_free(&b);
    return err;
}

/* A stored pair key of ENG_PAIR_KEY_BYTES_MAX bytes (two names of
 * TLY_NAME_BYTES_MAX) is read back; one byte more, which no event makes,
 * is corrupt: among a member's active pairs (its record and documents are
 * refused) and among an unenrolled partner's held events. */
START_TEST(certs_stored_key_too_long_corrupt)
{
    shards a;
    shards_init(&a, 1);
    program(&a, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&a, "cp", "acme", Q1_25);
    cert_of(&a, NULL, "cp", 0, "earned", ENG_NO_EXPIRY);
    cert_of(&a, NULL, "cp", CERT_PAIRS - 1, "earned", Q3_25);
    cert_of(&a, NULL, "hp", CERT_PAIRS - 1, "earned", ENG_NO_EXPIRY); /* held [E3] */
    kv store = {0};
    ck_assert_int_eq(tly_engine_flush(a.e[0], kv_put, &store), TLY_OK);
    shards_free(&a);
    ck_assert_int_eq(partner_read_from(&store, "cp"), TLY_OK);
    ck_assert_int_eq(partner_read_from(&store, "hp"), TLY_OK);
    tly_view_reader *r = kv_reader(&store);
    const char *doc;
    size_t dlen;
    ck_assert_int_eq(tly_view_reader_doc(r, 't', "cp", 2, &doc, &dlen), TLY_OK);
    tly_view_reader_free(r);
    lengthen_pair_key(kv_at(&store, "S/4/cp", 6), PARTNER_CERTS_AT, 1, 0);
    ck_assert_int_eq(partner_read_from(&store, "cp"), TLY_CORRUPT);
    r = kv_reader(&store);
    ck_assert_int_eq(tly_view_reader_doc(r, 't', "cp", 2, &doc, &dlen), TLY_CORRUPT);
    tly_view_reader_free(r);
    lengthen_pair_key(kv_at(&store, "S/4/hp", 6), PARTNER_HELD_AT, 0, 5);
    ck_assert_int_eq(partner_read_from(&store, "hp"), TLY_CORRUPT);
    kv_free(&store);
}
END_TEST

/* ---- the archive: rows no rule reads any more leave the partner record ---- */

/* "acme" version v with a tier window of `window` quarters (else as
 * program()). */
static void program_window(shards *s, int v, int window, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"program\",\"id\":\"P%d\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":%d,\"currency\":\"USD\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
          "{\"name\":\"Silver\",\"min_revenue\":100000,\"min_certs\":1,\"mdf_bps\":200},"
          "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":300}],"
          "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
          "{\"from\":100000,\"bps\":200},{\"from\":500000,\"bps\":300}]},"
          "\"mdf_expiry_periods\":2,\"tier_window_periods\":%d}",
          ++next_id, at, v, window);
}

/* Start of the q-th quarter from 2025-Q1, and its text. */
static int64_t quarter_ms(int q, char *text)
{
    int32_t p = tly_period_of(TLY_PERIOD_QUARTER, Q1_25) + q;
    if (text != NULL)
        tly_period_format(TLY_PERIOD_QUARTER, p, text);
    return tly_period_start_ms(TLY_PERIOD_QUARTER, p);
}

static void flush_into(shards *s, kv *store)
{
    ck_assert_int_eq(tly_engine_flush(s->e[0], kv_put, store), TLY_OK);
}

/* Twelve closed quarters of acme (window 1): p1 sells every quarter, p2
 * in the even ones; a flush after each close. */
static void archive_quarters(shards *s, kv *store)
{
    program(s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(s, "p1", "acme", Q1_25);
    enroll(s, "p2", "acme", Q1_25);
    cert(s, "p1", "ann", "earned", Q1_25);
    for (int q = 0; q < 12; q++) {
        char id[16], text[TLY_PERIOD_TEXT_BYTES];
        int64_t at = quarter_ms(q, NULL) + DAY;
        snprintf(id, sizeof id, "S%d", q);
        sale(s, "d", id, "p1", 10000 + 500 * q, "USD", at);
        snprintf(id, sizeof id, "T%d", q);
        if (q % 2 == 0)
            sale(s, "d", id, "p2", 20000, "USD", at);
        int64_t end = quarter_ms(q + 1, NULL);
        quarter_ms(q, text);
        close_period(s, "acme", text, end);
        flush_into(s, store);
    }
}

/* What ENG_ARCH_CHUNK_ROWS is (engine_internal.h), as the store shows it. */
#define ARCH_CHUNK_ROWS 4

/* Final rows before the program's reach leave the partner's record in
 * whole chunks ("S/5/"); a payout into an archived period, the rebate
 * document, a restart on the store, and a new version whose longer window
 * reads back into the archive all answer as an engine keeping everything
 * in memory, and store the same bytes. */
/* The same event into engines a and b, with the same id. */
#define BOTH(call)                                                                                 \
    do {                                                                                           \
        int id_ = next_id;                                                                         \
        shards *X = &a;                                                                            \
        call;                                                                                      \
        next_id = id_;                                                                             \
        X = &b;                                                                                    \
        call;                                                                                      \
    } while (0)

/* Engine b over store and engine a in memory (flushed into direct) give
 * the same answers and stored bytes (one shard); then all four are freed. */
static void expect_same_and_free(shards *b, shards *a, kv *store, kv *direct, const char *what)
{
    expect_same(b, a, what);
    expect_same_store(store, direct, 1, 0);
    shards_free(a);
    shards_free(b);
    kv_free(store);
    kv_free(direct);
}

/* kv with a count of the claim records read from it. */
typedef struct counting_kv {
    kv *kv;
    size_t claim_gets;
} counting_kv;

static tly_err counting_get(void *ctx, const void *key, size_t klen, const void **val, size_t *vlen)
{
    counting_kv *c = ctx;
    c->claim_gets += klen > 4 && memcmp(key, "S/3/", 4) == 0;
    return kv_get(c->kv, key, klen, val, vlen);
}

static tly_err counting_scan(void *ctx, const void *prefix, size_t plen, tly_kv_put_fn visit,
                             void *vctx)
{
    return kv_scan(((counting_kv *)ctx)->kv, prefix, plen, visit, vctx);
}

/* The value of key in s (asserted present). */
static const kv_entry *kv_entry_of(const kv *s, const char *key)
{
    bool found;
    size_t i = kv_find(s, key, strlen(key), &found);
    ck_assert_msg(found, "no %s", key);
    return &s->e[i];
}

/* Exceptions of kind in a store's "X/" entries. */
static size_t kv_exceptions(const kv *s, const char *kind)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++) {
        const kv_entry *x = &s->e[i];
        if (x->klen < 2 || memcmp(x->key, "X/", 2) != 0)
            continue;
        json_t *j = json_loadb(x->val, x->vlen, 0, NULL);
        ck_assert_ptr_nonnull(j);
        n += strcmp(json_string_value(json_object_get(j, "kind")), kind) == 0;
        json_decref(j);
    }
    return n;
}

/* Claims c<from>..c<to - 1> of p1, each denied: acme holds no MDF. */
static void denied_claims(shards *s, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        claim(s, "p1", id, "submit", 10, Q1_25 + DAY);
    }
}

/* Engines a (in memory) and b (over store through counted, which cs
 * binds: a cache of eight partners) with acme (no MDF) and its member p1
 * folded. */
static void acme_p1_pair(shards *a, shards *b, kv *store, counting_kv *counted,
                         tly_engine_store *cs)
{
    int base = next_id;
    shards_init(a, 1);
    restart_on_stores(b, 1, store, 0, 8, 8);
    *counted = (counting_kv){store, 0};
    *cs = (tly_engine_store){.get = counting_get, .scan = counting_scan, .ctx = counted};
    tly_engine_set_store(b->e[0], cs);
    shards *both[2] = {a, b};
    for (int i = 0; i < 2; i++) { /* the same events, ids and all (BOTH) */
        next_id = base;
        program(both[i], "acme", 1, "USD", "retroactive", Q1_25);
        enroll(both[i], "p1", "acme", Q1_25);
    }
}

/* A partner's claims leave its record and, after a flush, its memory:
 * the record stays the same size as it files more claims, a submit reads
 * the store only when the claim filter may hold its id, and the answers
 * and the stored bytes are those of an engine that keeps every claim. */
START_TEST(claims_leave_memory)
{
    kv direct = {0}, store = {0};
    shards a, b;
    counting_kv counted;
    tly_engine_store cs;
    acme_p1_pair(&a, &b, &store, &counted, &cs);
    BOTH(denied_claims(X, 0, 30));
    flush_into(&a, &direct);
    flush_into(&b, &store);
    /* the record counts its claims and lists none */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    const kv_entry *rec = kv_entry_of(&store, "S/4/p1");
    size_t size30 = rec->vlen;
    ck_assert(msgpack_unpack_next(&up, rec->val, rec->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(up.data.via.array.size, PARTNER_FIELDS);
    ck_assert_uint_eq(up.data.via.array.ptr[PARTNER_CLAIMS_AT].via.array.size, 0);
    ck_assert_uint_eq(up.data.via.array.ptr[PARTNER_FIELDS_V6].via.u64, 30);
    msgpack_unpacked_destroy(&up);
    BOTH(denied_claims(X, 30, 60));
    flush_into(&a, &direct);
    flush_into(&b, &store);
    ck_assert_uint_eq(kv_entry_of(&store, "S/4/p1")->vlen, size30);
    /* 100 new ids: the filter answers most without a read */
    counted.claim_gets = 0;
    BOTH(denied_claims(X, 60, 160));
    ck_assert_uint_lt(counted.claim_gets, 100);
    flush_into(&a, &direct);
    flush_into(&b, &store);
    /* ids filed batches ago are still known [C2] [C6] */
    counted.claim_gets = 0;
    BOTH(claim(X, "p1", "c5", "submit", 10, Q1_25 + DAY));
    BOTH(claim(X, "p1", "c7", "approve", 10, Q1_25 + DAY));
    ck_assert_uint_eq(counted.claim_gets, 2);
    flush_into(&a, &direct);
    flush_into(&b, &store);
    ck_assert_uint_eq(kv_exceptions(&store, "insufficient_funds"), 160);
    ck_assert_uint_eq(kv_exceptions(&store, "duplicate_claim"), 1);
    ck_assert_uint_eq(kv_exceptions(&store, "invalid_transition"), 1);
    vstr_eq(&b, 'c', "p1", "claims.0.claim", "c0");
    vstr_eq(&b, 'c', "p1", "claims.159.claim", "c159");
    vstr_eq(&b, 'c', "p1", "claims.7.status", "denied");
    expect_same_and_free(&b, &a, &store, &direct, "claims: store vs memory");
}
END_TEST

/* Moves engines s on to seq: their next record is seq + 1. */
static void jump_to(shards *s, uint64_t seq)
{
    s->seq = seq;
    for (uint32_t k = 0; k < s->n; k++)
        tly_engine_set_seq(s->e[k], seq);
}

/* Buckets (engine_internal.h): a claim submitted at seq lies in bucket
 * (seq >> 20) + 1, and a partner's record tells the 64 buckets below its
 * newest apart. p1 files c0 in bucket 1, c1 in bucket 2 and c2 in bucket
 * 65: c1 is the oldest the mask holds (63 below), c0 the newest it does
 * not (64 below). Each is found by its id, newest bucket first, and
 * listed in submit order; the answers and stored bytes are those of an
 * engine that keeps every claim. */
START_TEST(claims_by_bucket)
{
    kv direct = {0}, store = {0};
    shards a, b;
    counting_kv counted;
    tly_engine_store cs;
    acme_p1_pair(&a, &b, &store, &counted, &cs);
    const uint64_t to[3] = {0, (UINT64_C(1) << 20) - 1, (UINT64_C(64) << 20) - 1};
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "c%d", i);
        if (to[i] > 0)
            BOTH(jump_to(X, to[i]));
        BOTH(claim(X, "p1", id, "submit", 10, Q1_25 + DAY));
        flush_into(&a, &direct);
        flush_into(&b, &store);
    }
    /* three buckets: 1, 2 and 65, in key order */
    uint32_t buckets[3], n = 0;
    for (size_t i = 0; i < store.count; i++)
        if (claim_bucketed(&store.e[i]) && n < 3)
            buckets[n++] = tly_be32_get(store.e[i].key + 5);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(buckets[0], 1);
    ck_assert_uint_eq(buckets[1], 2);
    ck_assert_uint_eq(buckets[2], 65);
    ck_assert_uint_eq(claims_bucketed(&store), 3);
    /* one read for the newest, one more a bucket back */
    counted.claim_gets = 0;
    BOTH(claim(X, "p1", "c2", "approve", 10, Q1_25 + DAY));
    ck_assert_uint_eq(counted.claim_gets, 1);
    BOTH(claim(X, "p1", "c1", "approve", 10, Q1_25 + DAY));
    ck_assert_uint_eq(counted.claim_gets, 3);
    BOTH(claim(X, "p1", "c0", "approve", 10, Q1_25 + DAY));
    ck_assert_uint_eq(counted.claim_gets, 6);
    flush_into(&a, &direct);
    flush_into(&b, &store);
    /* decided where they were filed: still three records */
    ck_assert_uint_eq(claims_bucketed(&store), 3);
    ck_assert_uint_eq(kv_exceptions(&store, "invalid_transition"), 3);
    /* an id in none of them [C6]; one filed [C2] */
    BOTH(claim(X, "p1", "c9", "approve", 10, Q1_25 + DAY));
    BOTH(claim(X, "p1", "c0", "submit", 10, Q1_25 + DAY));
    flush_into(&a, &direct);
    flush_into(&b, &store);
    ck_assert_uint_eq(kv_exceptions(&store, "unknown_claim"), 1);
    ck_assert_uint_eq(kv_exceptions(&store, "duplicate_claim"), 1);
    vstr_eq(&b, 'c', "p1", "claims.0.claim", "c0");
    vstr_eq(&b, 'c', "p1", "claims.1.claim", "c1");
    vstr_eq(&b, 'c', "p1", "claims.2.claim", "c2");
    expect_same_and_free(&b, &a, &store, &direct, "claims by bucket: store vs memory");
}
END_TEST

/* The bucket of a seq at its edges, and what a partner keeps of its
 * buckets as claims arrive: the mask shifts with a newer bucket, and one
 * 64 or more above the newest starts it again (the older ones are then
 * all tried, from lo). */
START_TEST(claim_bucket_edges)
{
    const uint64_t width = UINT64_C(1) << ENG_CLAIM_BUCKET_SHIFT;
    ck_assert_uint_eq(eng_claim_bucket_of(0), 1);
    ck_assert_uint_eq(eng_claim_bucket_of(width - 1), 1);
    ck_assert_uint_eq(eng_claim_bucket_of(width), 2);
    /* the last buckets: never UINT32_MAX, so that hi + 1 is one too */
    ck_assert_uint_eq(eng_claim_bucket_of((uint64_t)(UINT32_MAX - 3) * width), UINT32_MAX - 2);
    ck_assert_uint_eq(eng_claim_bucket_of((uint64_t)(UINT32_MAX - 2) * width), UINT32_MAX - 1);
    ck_assert_uint_eq(eng_claim_bucket_of(UINT64_MAX), UINT32_MAX - 1);
    eng_pstate st = {0};
    eng_claim_bucket_add(&st, 5);
    ck_assert(st.claim_hi == 5 && st.claim_lo == 5 && st.claim_mask == 1);
    eng_claim_bucket_add(&st, 5);
    ck_assert(st.claim_hi == 5 && st.claim_mask == 1);
    eng_claim_bucket_add(&st, 7);
    ck_assert(st.claim_hi == 7 && st.claim_lo == 5 && st.claim_mask == 5);
    eng_claim_bucket_add(&st, 6); /* an older one (a reload's refold) */
    ck_assert(st.claim_hi == 7 && st.claim_mask == 7);
    eng_claim_bucket_add(&st, 7 + ENG_CLAIM_MASK_BUCKETS - 1); /* 63 above: bit 63 */
    ck_assert_uint_eq(st.claim_mask, UINT64_C(1) << 63 | 1);
    eng_claim_bucket_add(&st, 200); /* 64 and more above: only the newest */
    ck_assert(st.claim_hi == 200 && st.claim_lo == 5 && st.claim_mask == 1);
    eng_claim_bucket_add(&st, 2); /* below lo, beyond the mask */
    ck_assert(st.claim_hi == 200 && st.claim_lo == 2 && st.claim_mask == 1);
}
END_TEST

/* Renders the balance document of partner (id, len) from store with a new
 * reader at checkpoint seq. */
static tly_err balance_at(kv *store, const char *id, size_t len, uint64_t seq)
{
    tly_view_reader *r;
    ck_assert_int_eq(tly_view_reader_new(0, 1, &r), TLY_OK);
    tly_engine_store kvs = {.get = kv_get, .scan = kv_scan, .ctx = store};
    ck_assert_int_eq(tly_view_reader_bind(r, &kvs, seq), TLY_OK);
    const char *doc;
    size_t dlen;
    tly_err err = tly_view_reader_doc(r, 'b', id, len, &doc, &dlen);
    tly_view_reader_free(r);
    return err;
}

/* A partner record's claim buckets [unbucketed, hi, lo, mask] (its last
 * element) must be sound: hi 0 with nothing else, or lo ≤ hi with bit 0
 * of the mask set, and hi no later than the bucket of the checkpoint it
 * is read at (else every look-up of an unknown id would try buckets up
 * to there). Each broken form reads as corrupt, never as a partner. */
START_TEST(claim_buckets_checked)
{
    stream st = {0};
    kv store = {0};
    fold_one_store(&st, &store, 975, 4000, 8);
    /* the first owned partner with claims: all in bucket 1 (seq < 2^20) */
    kv_entry *rec = NULL;
    for (size_t i = first_under(&store, "S/4/"); i < store.count && rec == NULL; i++) {
        msgpack_unpacked up;
        if (!unpack_under(&store.e[i], "S/4/", &up))
            break;
        const msgpack_object_array *a = &up.data.via.array;
        if (a->size == PARTNER_FIELDS && a->ptr[PARTNER_FIELDS - 1].via.array.ptr[1].via.u64 == 1)
            rec = &store.e[i];
        msgpack_unpacked_destroy(&up);
    }
    ck_assert_ptr_nonnull(rec);
    const char *id = rec->key + 4;
    size_t len = rec->klen - 4;
    ck_assert_int_eq(balance_at(&store, id, len, 4000), TLY_OK);
    /* {hi, lo, mask}: one in the next bucket; lo above hi; mask bit 0
     * clear; lo 0; no bucket with a mask */
    const uint64_t broken[5][3] = {{2, 1, 3}, {1, 2, 1}, {1, 1, 2}, {1, 0, 1}, {0, 0, 1}};
    void *orig = malloc(rec->vlen);
    size_t orig_len = rec->vlen;
    memcpy(orig, rec->val, orig_len);
    for (int b = 0; b < 5; b++) {
        msgpack_unpacked up;
        ck_assert(unpack_under(rec, "S/4/", &up));
        msgpack_object *f = up.data.via.array.ptr[PARTNER_FIELDS - 1].via.array.ptr;
        for (int j = 0; j < 3; j++)
            f[1 + j].via.u64 = broken[b][j];
        kv_repack(rec, &up.data);
        msgpack_unpacked_destroy(&up);
        ck_assert_msg(balance_at(&store, id, len, 4000) == TLY_CORRUPT, "broken form %d", b);
    }
    /* the next bucket, read at a checkpoint in it, is sound */
    msgpack_unpacked up;
    ck_assert(unpack_under(rec, "S/4/", &up));
    msgpack_object *f = up.data.via.array.ptr[PARTNER_FIELDS - 1].via.array.ptr;
    f[1].via.u64 = 2;
    f[2].via.u64 = 1;
    f[3].via.u64 = 3;
    kv_repack(rec, &up.data);
    msgpack_unpacked_destroy(&up);
    ck_assert_int_eq(balance_at(&store, id, len, 4000), TLY_CORRUPT);
    ck_assert_int_eq(balance_at(&store, id, len, UINT64_C(1) << 20), TLY_OK);
    free(rec->val);
    rec->val = orig;
    rec->vlen = orig_len;
    kv_free(&store);
    stream_free(&st);
}
END_TEST

/* ---- read-back (tly_engine_read_back) ---- */

#define READ_BACK_PARTNERS 12

static bool in_memory(const tly_engine *e, const char *id)
{
    size_t len = strlen(id);
    return eng_map_get(&e->partner_map, id, (uint32_t)len, eng_hash(id, len)) != ENG_NONE;
}

/* Engines a (in memory, flushed into direct) and b (over store: a cache of
 * two partners, flushes with drops, read_back_max max) fold a program,
 * READ_BACK_PARTNERS partners r00.. with a sale each, and flush; b drops
 * most of them as it writes them. The partners b's flush noted. */
#define READ_BACK_FOLD(max)                                                                        \
    do {                                                                                           \
        g_flush_drops = true;                                                                      \
        g_read_back_max = (max);                                                                   \
        shards_init(&a, 1);                                                                        \
        restart_on_stores(&b, 1, &store, 0, 2, 3);                                                 \
        BOTH(program(X, "acme", 1, "USD", "retroactive", Q1_25));                                  \
        for (int i_ = 0; i_ < READ_BACK_PARTNERS; i_++) {                                          \
            char rid_[8], rsid_[8];                                                                \
            snprintf(rid_, sizeof rid_, "r%02d", i_);                                              \
            snprintf(rsid_, sizeof rsid_, "s%02d", i_);                                            \
            BOTH(enroll(X, rid_, "acme", Q1_25));                                                  \
            BOTH(sale(X, "d1", rsid_, rid_, 1000 + i_, "USD", Q1_25 + DAY));                       \
        }                                                                                          \
        flush_into(&a, &direct);                                                                   \
        flush_into(&b, &store);                                                                    \
        g_flush_drops = false;                                                                     \
        g_read_back_max = 0;                                                                       \
    } while (0)

/* A flush with drops notes up to read_back_max of the partners it wrote and
 * dropped: all D of them with a larger limit, D at D, D - 1 at D - 1, none
 * at 0. tly_engine_read_back brings exactly those back and forgets the
 * list; tly_engine_dirty counts them until an event changes one (it then
 * counts as changed, once); the next flush settles the rest into the cache;
 * and answers and stored bytes stay those of an engine keeping everything
 * in memory. _i 1: the read-back split in two (tly_engine_read_back_begin). */
START_TEST(read_back_edges)
{
    g_read_split = _i == 1;
    kv direct = {0}, store = {0};
    shards a, b;
    uint32_t d = 0; /* partners the flush dropped: found by the first run */
    for (int run = 0; run < 4; run++) {
        uint32_t max = run == 0 ? UINT32_MAX : run == 1 ? d : run == 2 ? d - 1 : 0;
        int base = next_id;
        READ_BACK_FOLD(max);
        next_id = base;
        tly_engine *e = b.e[0];
        uint32_t noted = e->read_back_count;
        if (run == 0) {
            d = noted; /* the cache keeps the few used last */
            ck_assert_uint_ge(d, READ_BACK_PARTNERS - 3);
            ck_assert_uint_le(d, READ_BACK_PARTNERS);
        }
        ck_assert_uint_eq(noted, max < d ? max : d);
        ck_assert_uint_eq(tly_engine_dirty(e), 0);
        uint32_t live = e->partner_slots.live;
        read_back(e);
        ck_assert_uint_eq(e->read_back_idle, noted);
        ck_assert_uint_eq(tly_engine_dirty(e), noted);
        ck_assert_uint_eq(e->partner_slots.live, live + noted);
        ck_assert(e->read_back_ids == NULL && e->read_back_count == 0);
        uint32_t flagged = 0, changed = ENG_NONE;
        for (uint32_t p = 0; p < e->partner_slots.count; p++)
            if (e->partners[p].id != NULL && e->partners[p].read_back) {
                flagged++;
                changed = p;
            }
        ck_assert_uint_eq(flagged, noted);
        if (noted > 0) {
            char id[8];
            memcpy(id, e->partners[changed].id, e->partners[changed].id_len);
            id[e->partners[changed].id_len] = '\0';
            BOTH(sale(X, "d1", "s-more", id, 500, "USD", Q1_25 + 2 * DAY));
            ck_assert_uint_eq(e->read_back_idle, noted - 1);
            ck_assert_uint_eq(e->dirty_partner_count, 1);
            ck_assert_uint_eq(tly_engine_dirty(e), noted - 1 + 1 + e->dirty_sale_count +
                                                       (e->exc_count - e->exc_flushed));
        }
        flush_into(&a, &direct);
        flush_into(&b, &store);
        ck_assert_uint_eq(e->read_back_idle, 0);
        ck_assert_uint_eq(tly_engine_dirty(e), 0);
        for (uint32_t p = 0; p < e->partner_slots.count; p++)
            ck_assert(!e->partners[p].read_back);
        expect_same_and_free(&b, &a, &store, &direct, "read-back vs memory");
        memset(&store, 0, sizeof store);
        memset(&direct, 0, sizeof direct);
    }
    g_read_split = false;
}
END_TEST

/* A noted partner whose record the engine refuses ends the read-back
 * quietly: the partners before it in key order are back, it and those
 * after stay in the store, the engine is intact, a later partner is read
 * when an event names it, and an event naming the refused one meets
 * TLY_CORRUPT, as it would without the read-back. _i 1: the read-back
 * split in two (tly_engine_read_back_begin); _i 2: split, and the refused
 * record peeks well (its head is whole) but does not decode, so the
 * second thread's decode is what refuses it when it lies in its half. */
START_TEST(read_back_stops_at_unreadable)
{
    g_read_split = _i >= 1;
    kv direct = {0}, store = {0};
    shards a, b;
    READ_BACK_FOLD(UINT32_MAX);
    tly_engine *e = b.e[0];
    const char *bad = "r06";
    ck_assert(!in_memory(e, bad) && !in_memory(e, "r07"));
    bool out[READ_BACK_PARTNERS];
    uint32_t before = 0; /* dropped partners before the unreadable one */
    for (int i = 0; i < READ_BACK_PARTNERS; i++) {
        char id[8];
        snprintf(id, sizeof id, "r%02d", i);
        out[i] = !in_memory(e, id);
        before += i < 6 && out[i];
    }
    ck_assert_uint_gt(before, 0);
    if (_i < 2) {
        ck_assert_int_eq(kv_put(&store, "S/4/r06", 7, "\xc1", 1), TLY_OK); /* no MessagePack */
    } else {
        kv_entry *x = kv_at(&store, "S/4/r06", 7);
        ck_assert_ptr_nonnull(x);
        eng_partner_rec head;
        ck_assert_int_eq(eng_peek_partner(x->val, x->vlen - 1, &head), TLY_OK);
        x->vlen--; /* its last element cut short */
    }
    read_back(e);
    ck_assert(tly_engine_intact(e));
    ck_assert_uint_eq(e->read_back_idle, before);
    for (int i = 0; i < READ_BACK_PARTNERS; i++) {
        char id[8];
        snprintf(id, sizeof id, "r%02d", i);
        if (i >= 6 && out[i])
            ck_assert_msg(!in_memory(e, id), "%s read back after the unreadable one", id);
        else if (i < 6)
            ck_assert_msg(in_memory(e, id), "%s not read back", id);
    }
    char text[512];
    snprintf(text, sizeof text,
             "{\"type\":\"sale\",\"id\":\"t07\",\"at\":%" PRId64 ",\"partner\":\"r07\","
             "\"sku\":\"X\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}",
             Q1_25 + 2 * DAY);
    ck_assert_int_eq(apply_text(&b, "d1", text), TLY_OK);
    ck_assert(in_memory(e, "r07"));
    snprintf(text, sizeof text,
             "{\"type\":\"sale\",\"id\":\"t06\",\"at\":%" PRId64 ",\"partner\":\"%s\","
             "\"sku\":\"X\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}",
             Q1_25 + 2 * DAY, bad);
    ck_assert_int_eq(apply_text(&b, "d1", text), TLY_CORRUPT);
    shards_free(&a);
    shards_free(&b);
    kv_free(&store);
    kv_free(&direct);
    g_read_split = false;
}
END_TEST

/* A job of a split read-back for partner id (eng_read_job_prepare's
 * input). */
static eng_read_job job_of(const char *id)
{
    size_t len = strlen(id);
    return (eng_read_job){.id = id, .len = (uint32_t)len, .h = eng_hash(id, len)};
}

/* The jobs of a split read-back (eng_read_job_prepare, _decode, _adopt): a
 * partner in memory, or not stored, is nothing to read; an owned partner's
 * current record is decoded apart and adopted into memory; one written
 * before its tier history was kept apart (V7: decoding it interns names)
 * is left to the engine, which reads it when adopting; a record that peeks
 * well but does not decode fails its job, and its adoption says so. */
START_TEST(read_back_jobs)
{
    kv direct = {0}, store = {0};
    shards a, b;
    READ_BACK_FOLD(UINT32_MAX);
    tly_engine *e = b.e[0];
    ck_assert(!in_memory(e, "r00") && !in_memory(e, "r01") && !in_memory(e, "r02"));
    eng_pstate *scratch = NULL;
    uint32_t p;
    eng_read_job j = job_of("r00");
    ck_assert_int_eq(eng_read_job_prepare(e, &j), TLY_OK);
    ck_assert_int_eq(j.kind, ENG_JOB_DECODE);
    eng_read_job_decode(&j, &scratch);
    ck_assert_int_eq(j.err, TLY_OK);
    ck_assert(j.st != NULL && scratch != NULL);
    ck_assert(!in_memory(e, "r00")); /* decoding touches no engine */
    ck_assert_int_eq(eng_read_job_adopt(e, &j, &p), TLY_OK);
    ck_assert(p != ENG_NONE && j.st == NULL && in_memory(e, "r00"));
    ck_assert_uint_eq(e->partners[p].st->tier, 0);
    ck_assert_uint_eq(e->partners[p].enroll_seq, j.enroll_seq);
    const char *nothing[] = {"r00", "nobody"}; /* in memory now; never stored */
    for (int i = 0; i < 2; i++) {
        j = job_of(nothing[i]);
        ck_assert_int_eq(eng_read_job_prepare(e, &j), TLY_OK);
        ck_assert_int_eq(j.kind, ENG_JOB_NONE);
        eng_read_job_decode(&j, &scratch);
        ck_assert_int_eq(eng_read_job_adopt(e, &j, &p), TLY_OK);
        ck_assert_uint_eq(p, ENG_NONE);
    }
    ck_assert(!in_memory(e, "nobody"));
    hist_to_v7(&store); /* every owned partner record as V7 wrote it */
    j = job_of("r01");
    ck_assert_int_eq(eng_read_job_prepare(e, &j), TLY_OK);
    ck_assert_int_eq(j.kind, ENG_JOB_ENGINE);
    eng_read_job_decode(&j, &scratch);
    ck_assert(j.st == NULL && !in_memory(e, "r01"));
    ck_assert_int_eq(eng_read_job_adopt(e, &j, &p), TLY_OK);
    ck_assert(p != ENG_NONE && in_memory(e, "r01"));
    kv_entry *x = kv_at(&store, "S/4/r02", 7);
    ck_assert_ptr_nonnull(x);
    x->vlen--; /* its last element cut short */
    j = job_of("r02");
    ck_assert_int_eq(eng_read_job_prepare(e, &j), TLY_OK);
    ck_assert_int_eq(j.kind, ENG_JOB_ENGINE); /* V7 still */
    ck_assert_int_eq(eng_read_job_adopt(e, &j, &p), TLY_CORRUPT);
    shards_free(&a);
    shards_free(&b);
    kv_free(&store);
    kv_free(&direct);
    READ_BACK_FOLD(UINT32_MAX);
    e = b.e[0];
    x = kv_at(&store, "S/4/r02", 7);
    x->vlen--; /* its last element cut short */
    j = job_of("r02");
    ck_assert_int_eq(eng_read_job_prepare(e, &j), TLY_OK);
    ck_assert_int_eq(j.kind, ENG_JOB_DECODE); /* its head is whole */
    eng_read_job_decode(&j, &scratch);
    ck_assert_int_eq(j.err, TLY_CORRUPT);
    ck_assert(j.st == NULL && scratch == NULL); /* the scratch went with what was read */
    ck_assert_int_eq(eng_read_job_adopt(e, &j, &p), TLY_CORRUPT);
    ck_assert(p == ENG_NONE && !in_memory(e, "r02") && tly_engine_intact(e));
    eng_pstate_free(scratch);
    shards_free(&a);
    shards_free(&b);
    kv_free(&store);
    kv_free(&direct);
}
END_TEST

START_TEST(archive_rows)
{
    kv direct = {0}, store = {0};
    shards a, b;
    int base = next_id;
    shards_init(&a, 1);
    archive_quarters(&a, &direct);
    next_id = base;
    restart_on_stores(&b, 1, &store, 0, 1, 1);
    archive_quarters(&b, &store);
    /* every final row is archivable, in whole chunks: p1's 12 and 4 of
     * p2's 6, three chunks and one; window 1: each keeps the revenue of
     * its last closed quarter */
    ck_assert_uint_eq(kv_count(&store, "S/7/"), 4);
    ck_assert_uint_eq(kv_count(&store, "S/5/"), 0);
    ck_assert_int_eq(vint(&b, 'r', "p1", "periods.11.revenue"), 15500);
    ck_assert_int_eq(vint(&b, 'r', "p1", "periods.0.revenue"), 10000);
    int64_t payable = vint(&b, 'r', "p1", "payable");
    ck_assert_int_eq(payable, vint(&a, 'r', "p1", "payable"));
    /* a payout into an archived quarter (2025-Q2: 105 of rebate), then
     * one beyond what it owes */
    BOTH(payout(X, "p1", "2025-Q2", 100, quarter_ms(12, NULL) + DAY));
    BOTH(payout(X, "p1", "2025-Q2", 6, quarter_ms(12, NULL) + DAY));
    ck_assert_int_eq(vint(&b, 'r', "p1", "payable"), payable - 100);
    flush_into(&a, &direct);
    flush_into(&b, &store);
    uint64_t seq = b.seq;
    shards_free(&b);
    restart_on_stores(&b, 1, &store, seq, 1, 1);
    ck_assert_int_eq(vint(&b, 'r', "p1", "periods.1.paid"), 100);
    ck_assert_int_eq(vint(&b, 'r', "p1", "payable"), payable - 100);
    /* version 2, window 10: the next close ranks p1 on the quarters
     * 2025-Q4 to 2028-Q1, 121,500 of revenue (Silver), of which the four
     * it keeps hold 59,000 (Base): five of them are archived */
    vstr_eq(&b, 't', "p1", "tier", "Base");
    BOTH(program_window(X, 2, 10, quarter_ms(12, NULL) + 2 * DAY));
    char text[TLY_PERIOD_TEXT_BYTES];
    quarter_ms(12, text);
    BOTH(close_period(X, "acme", text, quarter_ms(13, NULL)));
    vstr_eq(&b, 't', "p1", "tier", "Silver");
    flush_into(&a, &direct);
    flush_into(&b, &store);
    expect_same_and_free(&b, &a, &store, &direct, "archive: store vs memory");
}
END_TEST
#undef BOTH

/* "acme" with a growth rebate over a baseline of four quarters and a tier
 * window of one: the baseline reaches further back than the window. */
static void program_growth(shards *s, int64_t at)
{
    tsend(s, "fin",
          "{\"type\":\"program\",\"id\":\"P%d\",\"at\":%" PRId64 ",\"program\":\"acme\","
          "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\","
          "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],"
          "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}],"
          "\"basis\":\"growth\",\"baseline_periods\":4},"
          "\"mdf_expiry_periods\":2,\"tier_window_periods\":1}",
          ++next_id, at);
}

/* Twelve closed quarters of the growth program, p1 selling 10000 + 1000 q
 * in quarter q, a flush after each close; then a sale of 30000 in the open
 * quarter. */
static void growth_quarters(shards *s, kv *store)
{
    program_growth(s, Q1_25);
    enroll(s, "p1", "acme", Q1_25);
    char id[16], text[TLY_PERIOD_TEXT_BYTES];
    for (int q = 0; q < 12; q++) {
        snprintf(id, sizeof id, "S%d", q);
        sale(s, "d", id, "p1", 10000 + 1000 * q, "USD", quarter_ms(q, NULL) + DAY);
        quarter_ms(q, text);
        close_period(s, "acme", text, quarter_ms(q + 1, NULL));
        flush_into(s, store);
    }
    sale(s, "d", "S12", "p1", 30000, "USD", quarter_ms(12, NULL) + DAY);
}

/* [R11] The archive keeps the revenue the growth baseline reads, not only
 * the tier window's: an engine reading p1 from its store figures each
 * quarter's baseline from the four before it (the open quarter: the mean
 * of 18000..21000, 19500), as an engine keeping everything in memory. */
START_TEST(archive_keeps_the_growth_baseline)
{
    kv direct = {0}, store = {0};
    shards a, b;
    int base = next_id;
    shards_init(&a, 1);
    growth_quarters(&a, &direct);
    next_id = base;
    restart_on_stores(&b, 1, &store, 0, 1, 1);
    growth_quarters(&b, &store);
    json_t *r = view(&b, 'r', "p1");
    ck_assert_ptr_nonnull(r);
    json_t *rows = json_object_get(r, "periods");
    json_t *last = json_array_get(rows, json_array_size(rows) - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "baseline")), 19500);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "basis")), 10500);
    json_decref(r);
    expect_same_and_free(&b, &a, &store, &direct, "growth baseline: store vs memory");
}
END_TEST

/* ---- stored documents: the flush's text is the API object's json_dumps ---- */

/* The API object a stored "V/" or "X/" entry must equal: view objects
 * without their top-level "seq" (the stored ones leave it out), the
 * program's share from tly_engine_liabilities, the i-th exception (the
 * "X/" keys sort in the (seq, n) order tly_engine_exceptions gives). */
static json_t *api_of(tly_engine *e, const kv_entry *x, json_t *excs, size_t *exc_i)
{
    if (x->klen == 14 && memcmp(x->key, "X/", 2) == 0)
        return json_incref(json_array_get(excs, (*exc_i)++));
    const char *body = x->key + 4;
    size_t blen = x->klen - 4;
    if (x->key[2] == 'R') {
        char name[TLY_NAME_BYTES_MAX + 1];
        ck_assert_uint_le(blen, TLY_NAME_BYTES_MAX);
        memcpy(name, body, blen);
        name[blen] = '\0';
        return tly_engine_report(e, name);
    }
    if (x->key[2] == 'l') {
        json_t *all = tly_engine_liabilities(e), *found = NULL, *o;
        size_t i;
        json_array_foreach(all, i, o)
        {
            json_t *name = json_object_get(o, "program");
            if (json_string_length(name) == blen &&
                memcmp(json_string_value(name), body, blen) == 0)
                found = json_incref(o);
        }
        json_decref(all);
        return found;
    }
    char id[TLY_NAME_BYTES_MAX + 1];
    ck_assert_uint_le(blen, TLY_NAME_BYTES_MAX);
    memcpy(id, body, blen);
    id[blen] = '\0';
    json_t *v = tly_engine_view(e, x->key[2], id);
    if (v != NULL)
        json_object_del(v, "seq");
    return v;
}

/* The list row tly_view_reader_row renders from partner id's record in
 * store is the 'P' document tly_view_reader_doc renders. */
static void expect_row_is_doc(tly_view_reader *r, kv *store, const char *id, const char *what,
                              uint32_t k)
{
    char key[4 + TLY_NAME_BYTES_MAX];
    size_t klen = (size_t)snprintf(key, sizeof key, "%s%s", TLY_ENGINE_PARTNER_PREFIX, id);
    const void *val;
    size_t vlen;
    ck_assert_int_eq(kv_get(store, key, klen, &val, &vlen), TLY_OK);
    const char *doc, *row;
    size_t len, row_len;
    ck_assert_int_eq(tly_view_reader_doc(r, 'P', id, strlen(id), &doc, &len), TLY_OK);
    char *want = strndup(doc, len);
    ck_assert_int_eq(tly_view_reader_row(r, val, vlen, NULL, NULL, &row, &row_len), TLY_OK);
    ck_assert_msg(row_len == len && memcmp(row, want, len) == 0, "%s shard %u: row of %s", what, k,
                  id);
    free(want);
}

/* The reference for the writer's MessagePack back end: the query
 * service's own packing of a jansson tree (tly_query_pack: msgpack-c's
 * calls, members in insertion order), into sb (initialised here). */
static void ref_bytes(const json_t *v, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    ck_assert_int_eq(tly_query_pack(v, sb), TLY_OK);
}

/* tly_view_reader_reply of each partner view is tly_query_pack's packing of the
 * API object with its "seq"; 'P' is not its to answer. */
static void expect_reply_is_api(tly_view_reader *r, const shards *s, uint32_t k, const char *id,
                                const char *what)
{
    for (const char *v = "brtc"; *v; v++) {
        json_t *api = tly_engine_view(s->e[k], *v, id);
        ck_assert_ptr_nonnull(api);
        msgpack_sbuffer want, got;
        ref_bytes(api, &want);
        msgpack_sbuffer_init(&got);
        msgpack_sbuffer_write(&got, "x", 1); /* appended after what out holds */
        ck_assert_int_eq(tly_view_reader_reply(r, *v, id, strlen(id), &got), TLY_OK);
        ck_assert_msg(got.size == want.size + 1 && memcmp(got.data + 1, want.data, want.size) == 0,
                      "%s shard %u: reply %c of %s: %zu bytes, tly_query_pack %zu (seed %" PRIu64
                      ")",
                      what, k, *v, id, got.size - 1, want.size, g_seed);
        msgpack_sbuffer_destroy(&want);
        msgpack_sbuffer_destroy(&got);
        json_decref(api);
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    ck_assert_int_eq(tly_view_reader_reply(r, 'P', id, strlen(id), &out), TLY_USAGE);
    ck_assert_int_eq(tly_view_reader_reply(r, 'e', id, strlen(id), &out), TLY_USAGE);
    ck_assert_uint_eq(out.size, 0);
    msgpack_sbuffer_destroy(&out);
}

/* The canonical text of view v of partner id (tly_view_reader_canonical)
 * is, byte for byte, what `tally audit digest` made of the document doc
 * (len bytes, as tly_view_reader_doc rendered it) before it had that call:
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS) of its json_loadb, "seq"
 * deleted (schemas/DIGEST.md). */
static void expect_canonical_is_jansson(tly_view_reader *r, char v, const char *id, const char *doc,
                                        size_t len, const char *what, uint32_t k)
{
    json_t *o = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
    ck_assert_ptr_nonnull(o);
    json_object_del(o, "seq");
    char *want = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    const char *got;
    size_t got_len;
    ck_assert_int_eq(tly_view_reader_canonical(r, v, id, strlen(id), &got, &got_len), TLY_OK);
    ck_assert_msg(strlen(want) == got_len && memcmp(want, got, got_len) == 0 && got[got_len] == 0,
                  "%s shard %u: canonical %c of %s\nrendered: %.*s\n jansson: %s (seed %" PRIu64
                  ")",
                  what, k, v, id, (int)got_len, got, want, g_seed);
    free(want);
    json_decref(o);
}

/* Each owned partner's four documents and its row of the partner list as
 * a tly_view_reader renders them
 * from shard k's store are, byte for byte, json_dumps(JSON_COMPACT) of
 * the engine's API objects without "seq", and so are their canonical
 * texts of the jansson path's; another shard's partner and an unknown one
 * have none. Returns the number of documents compared. */
static size_t expect_reader_is_api(const shards *s, uint32_t k, kv *store, json_t *partners,
                                   const char *what)
{
    tly_view_reader *r;
    ck_assert_int_eq(tly_view_reader_new(k, s->n, &r), TLY_OK);
    tly_engine_store st = {.get = kv_get, .scan = kv_scan, .ctx = store};
    ck_assert_int_eq(tly_view_reader_bind(r, &st, tly_engine_seq(s->e[k])), TLY_OK);
    size_t docs = 0, i;
    json_t *id;
    json_array_foreach(partners, i, id)
    {
        for (const char *v = "brtcP"; *v; v++) {
            json_t *api = tly_engine_view(s->e[k], *v, json_string_value(id));
            ck_assert_ptr_nonnull(api);
            json_object_del(api, "seq");
            char *text = json_dumps(api, JSON_COMPACT);
            const char *doc;
            size_t len;
            ck_assert_int_eq(tly_view_reader_doc(r, *v, json_string_value(id),
                                                 json_string_length(id), &doc, &len),
                             TLY_OK);
            ck_assert_msg(strlen(text) == len && memcmp(text, doc, len) == 0 && doc[len] == '\0',
                          "%s shard %u: %c of %s\nrendered: %.*s\n     api: %s (seed %" PRIu64 ")",
                          what, k, *v, json_string_value(id), (int)len, doc, text, g_seed);
            expect_canonical_is_jansson(r, *v, json_string_value(id), doc, len, what, k);
            free(text);
            json_decref(api);
            docs++;
        }
        expect_row_is_doc(r, store, json_string_value(id), what, k);
        expect_reply_is_api(r, s, k, json_string_value(id), what);
    }
    for (uint32_t o = 0; o < s->n; o++) { /* the other shards' partners */
        json_t *theirs = o == k ? NULL : tly_engine_partners(s->e[o]);
        json_array_foreach(theirs, i, id)
        {
            const char *doc;
            size_t len;
            ck_assert_int_eq(tly_view_reader_doc(r, 'b', json_string_value(id),
                                                 json_string_length(id), &doc, &len),
                             TLY_NOT_FOUND);
            ck_assert_int_eq(tly_view_reader_canonical(r, 'b', json_string_value(id),
                                                       json_string_length(id), &doc, &len),
                             TLY_NOT_FOUND);
            msgpack_sbuffer out;
            msgpack_sbuffer_init(&out);
            ck_assert_int_eq(
                tly_view_reader_reply(r, 'b', json_string_value(id), json_string_length(id), &out),
                TLY_NOT_FOUND);
            ck_assert_uint_eq(out.size, 0);
            msgpack_sbuffer_destroy(&out);
            /* its record here, another shard's partner's: no row */
            char key[4 + TLY_NAME_BYTES_MAX];
            size_t klen = (size_t)snprintf(key, sizeof key, "%s%s", TLY_ENGINE_PARTNER_PREFIX,
                                           json_string_value(id));
            const void *val;
            size_t vlen;
            if (kv_get(store, key, klen, &val, &vlen) == TLY_OK)
                ck_assert_int_eq(tly_view_reader_row(r, val, vlen, NULL, NULL, &doc, &len),
                                 TLY_NOT_FOUND);
        }
        json_decref(theirs);
    }
    const char *doc;
    size_t len;
    ck_assert_int_eq(tly_view_reader_doc(r, 'b', "no such partner", 15, &doc, &len), TLY_NOT_FOUND);
    ck_assert_int_eq(tly_view_reader_doc(r, 'P', "no such partner", 15, &doc, &len), TLY_NOT_FOUND);
    ck_assert_int_eq(tly_view_reader_doc(r, 'e', "no such partner", 15, &doc, &len), TLY_USAGE);
    ck_assert_int_eq(tly_view_reader_canonical(r, 'b', "nobody", 6, &doc, &len), TLY_NOT_FOUND);
    ck_assert_int_eq(tly_view_reader_canonical(r, 'e', "nobody", 6, &doc, &len), TLY_USAGE);
    tly_view_reader_free(r);
    return docs;
}

/* Every stored "V/" and "X/" value of every shard is, byte for byte,
 * json_dumps(JSON_COMPACT) of the engine's API object, and so is every
 * document a reader renders from the stored state; every owned partner
 * has its four documents and its list row and no stored copy of them, and
 * every exception its entry. Returns the number of documents compared. */
static size_t expect_store_is_api(const shards *s, kv *stores, const char *what)
{
    size_t docs = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        json_t *excs = tly_engine_exceptions(s->e[k]), *partners = tly_engine_partners(s->e[k]);
        size_t exc_i = 0;
        for (size_t i = 0; i < stores[k].count; i++) {
            const kv_entry *x = &stores[k].e[i];
            bool is_view = x->klen > 4 && memcmp(x->key, "V/", 2) == 0 && x->key[3] == '/';
            if (!is_view && !(x->klen == 14 && memcmp(x->key, "X/", 2) == 0))
                continue;
            ck_assert_msg(!is_view || strchr("brtcP", x->key[2]) == NULL,
                          "%s shard %u: a stored partner document %.*s", what, k, (int)x->klen,
                          x->key);
            json_t *api = api_of(s->e[k], x, excs, &exc_i);
            ck_assert_msg(api != NULL, "%s shard %u: no API object for %.*s (seed %" PRIu64 ")",
                          what, k, (int)x->klen, x->key, g_seed);
            char *text = json_dumps(api, JSON_COMPACT);
            ck_assert_msg(strlen(text) == x->vlen && memcmp(text, x->val, x->vlen) == 0,
                          "%s shard %u: %.*s\nstored: %.*s\n   api: %s (seed %" PRIu64 ")", what, k,
                          (int)x->klen, x->key, (int)x->vlen, x->val, text, g_seed);
            free(text);
            json_decref(api);
            docs++;
        }
        ck_assert_msg(exc_i == json_array_size(excs), "%s shard %u: %zu X/ of %zu exceptions", what,
                      k, exc_i, json_array_size(excs));
        size_t views = expect_reader_is_api(s, k, &stores[k], partners, what);
        ck_assert_msg(views == 5 * json_array_size(partners),
                      "%s shard %u: %zu views, %zu partners", what, k, views,
                      json_array_size(partners));
        docs += views;
        json_decref(excs);
        json_decref(partners);
    }
    return docs;
}

/* Folds st on n shards flushing every `batch` records, then compares the
 * stores with the API objects. */
static size_t check_store_text(const stream *st, uint32_t n, size_t batch, const char *what)
{
    kv stores[SHARDS_MAX] = {{0}};
    shards s;
    shards_init(&s, n);
    fold_flushing(&s, stores, st, 0, st->count, batch);
    size_t docs = expect_store_is_api(&s, stores, what);
    for (uint32_t k = 0; k < n; k++)
        kv_free(&stores[k]);
    shards_free(&s);
    return docs;
}

START_TEST(stored_text_vectors)
{
    stream st = {0};
    load_vector_stream(&st);
    for (uint32_t n = 1; n <= 2; n++)
        ck_assert_uint_gt(check_store_text(&st, n, 211, "vectors"), 100);
    stream_free(&st);
}
END_TEST

START_TEST(stored_text_random)
{
    stream st = {0};
    gen_stream(&st, g_seed + 300, 30000, 40);
    for (uint32_t n = 1; n <= 2; n++)
        ck_assert_uint_gt(check_store_text(&st, n, 997, "random"), 100);
    stream_free(&st);
}
END_TEST

/* Appends event ev (taken) from source to st. */
static void stream_obj(stream *st, const char *source, json_t *ev)
{
    ck_assert_ptr_nonnull(ev);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    to_mp(ev, &sb);
    stream_push(st, source, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    json_decref(ev);
}

/* Every byte jansson escapes, and some it does not: '/', DEL, 2-, 3- and
 * 4-byte UTF-8. NUL only where no C-string lookup needs the name. */
static const char odd_ctl[] = "\x01\x02\x03\x04\x05\x06\x07\b\t\n\x0b\f\r\x0e\x0f\x10\x11\x12"
                              "\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f";
#define ODD_PROGRAM "pr\"og\\/ \x7f \xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"
static const char *const odd_partners[] = {"q\"uo\\te/", "ctl\t\n\r\x01\x1f\x7f",
                                           "\xc3\xbc\xe6\x96\x87\xf0\x9f\x98\x80", "plain"};

static void odd_program(stream *st)
{
    json_t *tiers =
        json_pack("[{s:s,s:i,s:i,s:i},{s:s,s:i,s:i,s:i},{s:s,s:i,s:i,s:i}]", "name", "Base\b\f",
                  "min_revenue", 0, "min_certs", 0, "mdf_bps", 100, "name", odd_ctl, "min_revenue",
                  100000, "min_certs", 0, "mdf_bps", 200, "name", "G\"o\\ld/\xc3\xa9",
                  "min_revenue", 500000, "min_certs", 0, "mdf_bps", 300);
    stream_obj(st, "fin",
               json_pack("{s:s,s:s,s:I,s:s,s:i,s:s,s:s,s:o,s:{s:s,s:[{s:i,s:i}]},s:i,s:i}", "type",
                         "program", "id", "P1", "at", (json_int_t)Q1_25, "program", ODD_PROGRAM,
                         "version", 1, "currency", "USD", "period", "quarter", "tiers", tiers,
                         "rebate", "mode", "retroactive", "brackets", "from", 0, "bps", 150,
                         "mdf_expiry_periods", 2, "tier_window_periods", 1));
}

/* Claims with odd ids and reasons (one with every control character, NUL
 * included), sales that move tiers across closes, held events and
 * exceptions whose details quote the odd names. */
static void odd_stream(stream *st)
{
    odd_program(st);
    char id[32];
    int n = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *p = odd_partners[i];
        snprintf(id, sizeof id, "S%d", ++n);
        stream_obj(st, "d",
                   json_pack("{s:s,s:s,s:I,s:s,s:s,s:i,s:i,s:s}", "type", "sale", "id", id, "at",
                             (json_int_t)(Q1_25 + DAY), "partner", p, "sku", "x", "qty", 1,
                             "amount", 300000 * (int)(i + 1), "currency", i == 3 ? "EUR" : "USD"));
        snprintf(id, sizeof id, "E%d", ++n);
        stream_obj(st, "fin",
                   json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "type", "partner", "id", id, "at",
                             (json_int_t)(Q1_25 + DAY), "partner", p, "name", p, "program",
                             ODD_PROGRAM, "kind", "var"));
    }
    stream_obj(st, "fin",
               json_pack("{s:s,s:s,s:I,s:s,s:s}", "type", "close", "id", "L1", "at",
                         (json_int_t)Q2_25, "program", ODD_PROGRAM, "period", "2025-Q1"));
    /* No NUL: the ledger refuses it in names and texts (JSON readers of the
     * views cannot load "\u0000"); every other control character is here. */
    char reason[64] = "r\"\\/\x7f\xc3\xa9";
    size_t rlen = strlen(reason);
    memcpy(reason + rlen, odd_ctl, sizeof odd_ctl - 1);
    rlen += sizeof odd_ctl - 1;
    for (size_t i = 0; i < 4; i++) {
        const char *p = odd_partners[i];
        static const char *const claim_ids[] = {"c\"1\\", "c\t2\x1f", "c/3\xf0\x9f\x98\x80", "c4"};
        snprintf(id, sizeof id, "K%d", ++n);
        stream_obj(st, "portal",
                   json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:i}", "type", "claim", "id", id, "at",
                             (json_int_t)(Q2_25 + DAY), "partner", p, "claim", claim_ids[i],
                             "action", "submit", "amount", 100));
        snprintf(id, sizeof id, "K%d", ++n);
        stream_obj(st, "portal",
                   json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s%}", "type", "claim", "id", id, "at",
                             (json_int_t)(Q2_25 + DAY), "partner", p, "claim", claim_ids[i],
                             "action", "reject", "reason", reason, rlen));
    }
    stream_obj(st, "d",
               json_pack("{s:s,s:s,s:I,s:s,s:s,s:i,s:i,s:s}", "type", "sale", "id", "SX", "at",
                         (json_int_t)(Q2_25 + DAY), "partner", "never\"\\\x01\xc3\xa9", "sku", "x",
                         "qty", 1, "amount", 1000, "currency", "USD"));
    stream_obj(st, "fin",
               json_pack("{s:s,s:s,s:I,s:s,s:s}", "type", "close", "id", "L2", "at",
                         (json_int_t)Q3_25, "program", ODD_PROGRAM, "period", "2025-Q2"));
}

static bool bytes_hold(const char *s, size_t len, const char *pat, size_t plen)
{
    for (size_t at = 0; at + plen <= len; at++)
        if (memcmp(s + at, pat, plen) == 0)
            return true;
    return false;
}

/* A stored document (not an "S/" record), or a partner document rendered
 * from a store, holds the bytes of pat. */
static bool store_holds(const shards *s, kv *stores, const char *pat)
{
    size_t plen = strlen(pat);
    bool found = false;
    for (uint32_t k = 0; k < s->n && !found; k++) {
        for (size_t i = 0; i < stores[k].count && !found; i++) {
            const kv_entry *x = &stores[k].e[i];
            found = x->key[0] != 'S' && bytes_hold(x->val, x->vlen, pat, plen);
        }
        tly_view_reader *r;
        ck_assert_int_eq(tly_view_reader_new(k, s->n, &r), TLY_OK);
        tly_engine_store st = {.get = kv_get, .scan = kv_scan, .ctx = &stores[k]};
        ck_assert_int_eq(tly_view_reader_bind(r, &st, tly_engine_seq(s->e[k])), TLY_OK);
        json_t *partners = tly_engine_partners(s->e[k]), *id;
        size_t i;
        json_array_foreach(partners, i, id)
        {
            for (const char *v = "brtc"; *v && !found; v++) {
                const char *doc;
                size_t len;
                ck_assert_int_eq(tly_view_reader_doc(r, *v, json_string_value(id),
                                                     json_string_length(id), &doc, &len),
                                 TLY_OK);
                found = bytes_hold(doc, len, pat, plen);
            }
        }
        json_decref(partners);
        tly_view_reader_free(r);
    }
    return found;
}

/* ---- a store that is not what a flush wrote ---- */

/* Owned flag and live buckets ([period, remaining]) of a stored partner
 * record (engine_records.c). */
#define REC_OWNED 3
#define REC_BUCKETS 18

/* Sets bucket `which` (0 first, 1 last) of the first owned partner with
 * two or more buckets in store to period, repacked; *partner gets its id. */
static void set_bucket_period(kv *store, int which, int64_t period, char *partner, size_t cap)
{
    bool found;
    for (size_t i = kv_find(store, "S/4/", 4, &found); i < store->count; i++) {
        kv_entry *x = &store->e[i];
        ck_assert(x->klen > 4 && memcmp(x->key, "S/4/", 4) == 0);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        ck_assert_int_eq(msgpack_unpack_next(&u, x->val, x->vlen, NULL), MSGPACK_UNPACK_SUCCESS);
        const msgpack_object_array *rec = &u.data.via.array;
        if (rec->size <= REC_BUCKETS || !rec->ptr[REC_OWNED].via.boolean ||
            rec->ptr[REC_BUCKETS].via.array.size < 2) {
            msgpack_unpacked_destroy(&u);
            continue;
        }
        msgpack_object_array *b = &rec->ptr[REC_BUCKETS].via.array;
        msgpack_object *p = &b->ptr[which ? b->size - 1 : 0].via.array.ptr[0];
        p->type = period < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER;
        p->via.i64 = period;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        ck_assert_int_eq(msgpack_pack_object(&pk, u.data), 0);
        ck_assert_uint_lt(x->klen - 4, cap);
        memcpy(partner, x->key + 4, x->klen - 4);
        partner[x->klen - 4] = '\0';
        ck_assert_int_eq(kv_put(store, x->key, x->klen, sb.data, sb.size), TLY_OK);
        msgpack_sbuffer_destroy(&sb);
        msgpack_unpacked_destroy(&u);
        return;
    }
    ck_abort_msg("no owned partner with two buckets");
}

/* What a reader bound to store at seq says of partner's balance. */
static tly_err balance_of(kv *store, uint64_t seq, const char *partner)
{
    tly_view_reader *r;
    ck_assert_int_eq(tly_view_reader_new(0, 1, &r), TLY_OK);
    tly_engine_store st = {.get = kv_get, .scan = kv_scan, .ctx = store};
    tly_err err = tly_view_reader_bind(r, &st, seq);
    const char *doc;
    size_t len;
    if (err == TLY_OK)
        err = tly_view_reader_doc(r, 'b', partner, strlen(partner), &doc, &len);
    tly_view_reader_free(r);
    return err;
}

/* A stored period is 0..TLY_PERIOD_INDEX_MAX: at the edge the balance
 * renders, past it either way the record is corrupt (a document never
 * sums a period it cannot hold); two records of one program are corrupt,
 * and refusing them leaks nothing (the ASan build runs this). */
START_TEST(stored_state_edges)
{
    stream st = {0};
    gen_stream(&st, g_seed + 700, 4000, 20);
    kv store[1] = {{0}};
    shards s;
    shards_init(&s, 1);
    fold_flushing(&s, store, &st, 0, st.count, 1000);
    uint64_t seq = tly_engine_seq(s.e[0]);
    char partner[TLY_NAME_BYTES_MAX + 1];
    set_bucket_period(store, 1, TLY_PERIOD_INDEX_MAX, partner, sizeof partner);
    ck_assert_int_eq(balance_of(store, seq, partner), TLY_OK);
    set_bucket_period(store, 1, TLY_PERIOD_INDEX_MAX + 1, partner, sizeof partner);
    ck_assert_int_eq(balance_of(store, seq, partner), TLY_CORRUPT);
    set_bucket_period(store, 1, TLY_PERIOD_INDEX_MAX, partner, sizeof partner);
    set_bucket_period(store, 0, -1, partner, sizeof partner);
    ck_assert_int_eq(balance_of(store, seq, partner), TLY_CORRUPT);
    set_bucket_period(store, 0, 0, partner, sizeof partner);
    ck_assert_int_eq(balance_of(store, seq, partner), TLY_OK);
    bool found;
    size_t g = kv_find(store, "S/1/", 4, &found);
    ck_assert(g < store->count && memcmp(store->e[g].key, "S/1/", 4) == 0);
    ck_assert_int_eq(kv_put(store, "S/1/~another key", 16, store->e[g].val, store->e[g].vlen),
                     TLY_OK);
    ck_assert_int_eq(balance_of(store, seq, partner), TLY_CORRUPT);
    kv_free(&store[0]);
    shards_free(&s);
    stream_free(&st);
}
END_TEST

/* The stored text of names with every escapable character is jansson's
 * text, and the escapes really occur. */
/* The calls of one document for jw_mp_edges: the edges of every head the
 * MessagePack back end writes (fix forms and the 16- and 32-bit ones of
 * maps, arrays and strings; integers at each width), a container's head
 * growing inside another, an invalid UTF-8 string ("" as jansson's
 * refusal) and a NULL one (null). */
static char jw_keys[65536][8];

static void jw_script(eng_jw *w, int which)
{
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    static const int64_t ints[] = {
        INT64_MIN, -2147483649LL, -2147483648LL, -32769,       -32768,
        -129,      -128,          -33,           -32,          -1,
        0,         127,           128,           255,          256,
        65535,     65536,         4294967295LL,  4294967296LL, INT64_MAX};
    static char big[65536];
    memset(big, 'a', sizeof big);
    size_t counts[] = {0, 15, 16, 65535, 65536};
    eng_jw_obj(w);
    switch (which) {
    case 0: /* strings and integers */
        eng_jw_key(w, "s");
        eng_jw_arr(w);
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            eng_jw_str(w, big, lens[i]);
        eng_jw_str(w, "\xff\xfe", 2);
        eng_jw_str(w, NULL, 3);
        eng_jw_str(w, "\xc3\xa9\x01\"", 4);
        eng_jw_end(w);
        eng_jw_key(w, "i");
        eng_jw_arr(w);
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
            eng_jw_int(w, ints[i]);
        eng_jw_null(w);
        eng_jw_end(w);
        break;
    case 1: /* arrays of every head, each inside an array */
        eng_jw_key(w, "a");
        eng_jw_arr(w);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            eng_jw_arr(w);
            for (size_t i = 0; i < counts[c]; i++)
                eng_jw_int(w, (int64_t)i);
            eng_jw_end(w);
        }
        eng_jw_end(w);
        break;
    default: /* maps of every head, the largest at the top */
        for (size_t c = 0; c < sizeof counts / sizeof counts[0] - 1; c++) {
            eng_jw_key(w, jw_keys[c]);
            eng_jw_obj(w);
            for (size_t i = 0; i < counts[c]; i++) {
                eng_jw_key(w, jw_keys[i]);
                eng_jw_obj(w);
                eng_jw_end(w);
            }
            eng_jw_end(w);
        }
        for (size_t i = sizeof counts / sizeof counts[0] - 1; i < 65536; i++) {
            eng_jw_key(w, jw_keys[i]);
            eng_jw_arr(w);
            eng_jw_end(w);
        }
        break;
    }
    eng_jw_end(w);
}

/* The writer's MessagePack back end gives tly_query_pack's bytes for the tree
 * back end's document, appended to what the buffer holds; a string with
 * a NUL byte is refused. */
START_TEST(jw_mp_edges)
{
    for (size_t i = 0; i < 65536; i++)
        snprintf(jw_keys[i], sizeof jw_keys[i], "k%zu", i);
    for (int which = 0; which < 3; which++) {
        eng_jw w;
        eng_jw_init_tree(&w);
        jw_script(&w, which);
        json_t *tree = eng_jw_take(&w);
        ck_assert_ptr_nonnull(tree);
        msgpack_sbuffer want, got;
        ref_bytes(tree, &want);
        msgpack_sbuffer_init(&got);
        msgpack_sbuffer_write(&got, "\x93", 1);
        eng_jw_init_mp(&w, &got);
        jw_script(&w, which);
        ck_assert(!w.mp.failed);
        ck_assert_uint_eq(w.depth, 0);
        ck_assert_msg(got.size == want.size + 1 && memcmp(got.data + 1, want.data, want.size) == 0,
                      "script %d: %zu bytes, tly_query_pack %zu", which, got.size - 1, want.size);
        msgpack_sbuffer_destroy(&want);
        msgpack_sbuffer_destroy(&got);
        json_decref(tree);
    }
    for (size_t len = 1; len <= 3; len++) { /* "x", then "x\0" and "x\0y" */
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        eng_jw w;
        eng_jw_init_mp(&w, &b);
        eng_jw_obj(&w);
        eng_jw_key(&w, "a");
        eng_jw_str(&w, "x\0y", len);
        eng_jw_end(&w);
        ck_assert(w.mp.failed == (len > 1));
        msgpack_sbuffer_destroy(&b);
    }
}
END_TEST

/* The calls of one document for jw_canonical_edges: ENG_JW_MEMBERS_MAX
 * members at the top and in one nested object, written against key order,
 * whose keys order differently raw and escaped ('"' 0x22 before '#',
 * "\"" after it; a control character before ' '), a key that prefixes
 * another, the empty key, non-ASCII keys after ASCII; strings with every
 * escape, DEL, multi-byte and invalid UTF-8 (""), empty; the integer
 * edges; empty containers; nested objects whose keys need reordering. */
static char jw_wide_keys[ENG_JW_MEMBERS_MAX][8];

static void jw_canonical_script(eng_jw *w)
{
    static const char *const strs[] = {
        "",         "q\"uo\\te/", "\b\f\n\r\t\x01\x1f\x7f", "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80",
        "\xff\xfe", "\xc3",       "\xed\xa0\x80",           "plain"};
    eng_jw_obj(w);
    eng_jw_key(w, "z");
    eng_jw_int(w, INT64_MAX);
    eng_jw_key(w, "a\"");
    eng_jw_int(w, INT64_MIN);
    eng_jw_key(w, "a#");
    eng_jw_int(w, 0);
    eng_jw_key(w, "a!");
    eng_jw_int(w, -1);
    eng_jw_key(w, "a\\");
    eng_jw_null(w);
    eng_jw_key(w, "a\x1f");
    eng_jw_str(w, "", 0);
    eng_jw_key(w, "\xc3\xa9");
    eng_jw_str(w, NULL, 0);
    eng_jw_key(w, "\x7f");
    eng_jw_int(w, 1);
    eng_jw_key(w, "\xe4\xb8\xad");
    eng_jw_str(w, "\xc3\xa9", 2);
    eng_jw_key(w, "ab");
    eng_jw_obj(w);
    eng_jw_end(w);
    eng_jw_key(w, "a");
    eng_jw_arr(w);
    eng_jw_end(w);
    eng_jw_key(w, "");
    eng_jw_int(w, 2);
    eng_jw_key(w, "s");
    eng_jw_arr(w);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        eng_jw_str(w, strs[i], strlen(strs[i]));
    eng_jw_end(w);
    eng_jw_key(w, "n"); /* {"y":[{"d":..,"c":..},{}],"x":{"b":..,"a":..}}: the deepest */
    eng_jw_obj(w);
    eng_jw_key(w, "y");
    eng_jw_arr(w);
    eng_jw_obj(w);
    eng_jw_key(w, "d");
    eng_jw_str(w, "\"d\"", 3);
    eng_jw_key(w, "c");
    eng_jw_int(w, -5);
    eng_jw_end(w);
    eng_jw_obj(w);
    eng_jw_end(w);
    eng_jw_end(w);
    eng_jw_key(w, "x");
    eng_jw_obj(w);
    eng_jw_key(w, "b");
    eng_jw_int(w, 3);
    eng_jw_key(w, "a");
    eng_jw_int(w, 4);
    eng_jw_end(w);
    eng_jw_end(w);
    eng_jw_key(w, "w"); /* the widest object, keys last to first */
    eng_jw_obj(w);
    for (size_t i = ENG_JW_MEMBERS_MAX; i-- > 0;) {
        eng_jw_key(w, jw_wide_keys[i]);
        eng_jw_int(w, (int64_t)i);
    }
    eng_jw_end(w);
    eng_jw_key(w, "e");
    eng_jw_obj(w);
    eng_jw_end(w);
    eng_jw_end(w);
}

/* The canonical text gives, appended to what the buffer holds, what
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes for the tree back
 * end's document and for the text back end's read back with json_loadb
 * (the audit's way before); a string with a NUL byte fails it. */
START_TEST(jw_canonical_edges)
{
    for (size_t i = 0; i < ENG_JW_MEMBERS_MAX; i++)
        snprintf(jw_wide_keys[i], sizeof jw_wide_keys[i], "k%02zu", i);
    eng_jw w;
    eng_jw_init_tree(&w);
    jw_canonical_script(&w);
    json_t *tree = eng_jw_take(&w);
    ck_assert_ptr_nonnull(tree);
    ck_assert_uint_eq(json_object_size(tree), ENG_JW_MEMBERS_MAX);
    char *want = json_dumps(tree, JSON_COMPACT | JSON_SORT_KEYS);
    eng_buf b = {0};
    eng_jw_members m;
    b.data = strdup("x"); /* appended after what b holds */
    b.len = b.cap = 1;
    eng_jw_init_canonical(&w, &b, &m);
    jw_canonical_script(&w);
    ck_assert(!w.failed && !b.failed);
    ck_assert_uint_eq(w.depth, 0);
    ck_assert_msg(b.len == strlen(want) + 1 && memcmp(b.data + 1, want, b.len - 1) == 0,
                  "canonical %.*s\n  jansson %s", (int)b.len, b.data, want);
    eng_buf text = {0};
    eng_jw_init_text(&w, &text);
    jw_canonical_script(&w);
    json_t *back = json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, NULL);
    ck_assert_ptr_nonnull(back);
    char *want_back = json_dumps(back, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(want_back, want);
    for (size_t len = 1; len <= 3; len++) { /* "x", then "x\0" and "x\0y" */
        b.len = 0;
        eng_jw_init_canonical(&w, &b, &m);
        eng_jw_obj(&w);
        eng_jw_key(&w, "a");
        eng_jw_str(&w, "x\0y", len);
        eng_jw_end(&w);
        ck_assert(w.failed == (len > 1));
    }
    eng_buf_free(&b);
    eng_buf_free(&text);
    free(want);
    free(want_back);
    json_decref(back);
    json_decref(tree);
}
END_TEST

START_TEST(stored_text_escapes)
{
    stream st = {0};
    odd_stream(&st);
    for (uint32_t n = 1; n <= 2; n++) {
        kv stores[SHARDS_MAX] = {{0}};
        shards s;
        shards_init(&s, n);
        fold_flushing(&s, stores, &st, 0, st.count, 3);
        ck_assert_uint_gt(expect_store_is_api(&s, stores, "escapes"), 20);
        static const char *const must[] = {
            "\\u0002", "\\u0001", "\\u001F", "\\b", "\\f",  "\\n",      "\\r",
            "\\t",     "\\\"",    "\\\\",    "/",   "\x7f", "\xc3\xa9", "\xf0\x9f\x98\x80"};
        for (size_t m = 0; m < sizeof must / sizeof must[0]; m++)
            ck_assert_msg(store_holds(&s, stores, must[m]), "N=%u: no document holds %s", n,
                          must[m]);
        for (uint32_t k = 0; k < n; k++)
            kv_free(&stores[k]);
        shards_free(&s);
    }
    stream_free(&st);
}
END_TEST

/* [P5] the first program event's period, whatever its version; [S4] qty
 * is informational; [S6] a return lands in its own period and can make it
 * negative; [S7] the clawback uses the sale's own rate; [M3] [M5] buckets
 * with nothing left are not listed; [M9] signed liabilities; [T5] the first
 * tier qualifies with negative revenue; [T7] a close evaluates partners
 * without activity; [R3] [R4] [R5] rows, net revenue, negative figures. */
START_TEST(details_pinned)
{
    shards s;
    shards_init(&s, 2);
    program(&s, "acme", 3, "USD", "retroactive", Q2_25);   /* 1: first period Q2 [P5] */
    enroll(&s, "p1", "acme", Q2_25);                       /* 2 */
    enroll(&s, "p2", "acme", Q2_25);                       /* 3 */
    cert(&s, "p1", "ann", "earned", Q2_25);                /* 4 */
    cert(&s, "p2", "bob", "earned", Q2_25);                /* 5 */
    sale(&s, "d", "S0", "p1", 10000, "USD", Q1_25 + DAY);  /* 6: before the first period */
    sale(&s, "d", "S1", "p1", 200000, "USD", Q2_25 + DAY); /* 7: 2000 at 100 bps */
    sale(&s, "d", "S2", "p2", 150000, "USD", Q2_25 + DAY); /* 8: 1500 */
    close_period(&s, "acme", "2025-Q2", Q3_25);            /* 9: both Silver */
    vstr_eq(&s, 'b', "p1", "tier", "Silver");
    tsend(&s, "d",
          "{\"type\":\"return\",\"id\":\"RQ\",\"at\":%" PRId64 ",\"partner\":\"p1\","
          "\"sale\":\"S1\",\"qty\":999,\"amount\":100000,\"currency\":\"USD\"}",
          Q3_25 + DAY); /* 10: claws 1000, not 2000 */
    ck_assert_int_eq(vint(&s, 'b', "p1", "clawed_back"), 1000);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.1.revenue"), -100000); /* [S6] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.revenue"), 210000);
    claim(&s, "p1", "c1", "submit", 1100, Q3_25 + DAY); /* 11: empties Q2 */
    json_t *b = view(&s, 'b', "p1");
    ck_assert_int_eq(json_array_size(json_object_get(b, "buckets")), 0); /* [M3] */
    json_decref(b);
    adjust(&s, "p1", "rebate", -5000, Q3_25 + DAY); /* 12 */
    ck_assert_int_eq(vint(&s, 'r', "p1", "accrued_open"), -5000);
    close_period(&s, "acme", "2025-Q3", Q4_25); /* 13 */
    adjust(&s, "p1", "mdf", -3000, Q4_25);      /* 14 */
    /* p1: Q3 revenue is negative, the first tier still qualifies [T5] */
    vstr_eq(&s, 't', "p1", "history.1.to", "Base");
    ck_assert_int_eq(vint(&s, 't', "p1", "history.1.seq"), 13);
    /* p2 had no events since Q2 and is evaluated all the same [T7] */
    vstr_eq(&s, 't', "p2", "history.1.from", "Silver");
    vstr_eq(&s, 't', "p2", "history.1.period", "2025-Q3");
    ck_assert_int_eq(vint(&s, 'b', "p2", "expired"), 1500);
    json_t *r = view(&s, 'r', "p1");
    ck_assert_int_eq(json_array_size(json_object_get(r, "periods")), 2); /* [R4] */
    json_decref(r);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.0.rebate"), 4200);
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.1.rebate"), -5000); /* [R5] */
    ck_assert_int_eq(vint(&s, 'r', "p1", "periods.1.rate_bps"), 100);
    ck_assert_int_eq(vint(&s, 'r', "p1", "payable"), -800);
    ck_assert_int_eq(vint(&s, 'b', "p1", "available"), -3000);
    expect_invariant(&s, "p1");
    expect_invariant(&s, "p2");
    json_t *l = merged_liabilities(&s);
    json_t *want = json_pack("{s:I,s:[{s:s,s:s,s:I,s:I,s:I,s:I,s:I}]}", "seq", (json_int_t)14,
                             "programs", "program", "acme", "currency", "USD", "mdf_available",
                             (json_int_t)-3000, "mdf_pending", (json_int_t)1100, "mdf_approved",
                             (json_int_t)0, "rebate_accrued_open", (json_int_t)0, "rebate_payable",
                             (json_int_t)(-800 + 3000));
    expect_json(l, want, "liabilities [M9]");
    json_decref(l);
    json_decref(want);
    expect_excs(&s, "6:late:p1\n");
    shards_free(&s);
}
END_TEST

/* Money that leaves int64 is TLY_OVERFLOW, never undefined behaviour: a
 * stored partner whose accrued total sits at the edge takes one more
 * accrual. (Reaching the edge by events would take ~10^6 maximal sales.) */
START_TEST(overflow_is_an_error)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    enroll(&s, "p1", "acme", Q1_25);
    kv store = {0};
    ck_assert_int_eq(tly_engine_flush(s.e[0], kv_put, &store), TLY_OK);
    tly_engine *fresh;
    ck_assert_int_eq(tly_engine_new(0, 1, &fresh), TLY_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (size_t i = 0; i < store.count; i++) {
        const kv_entry *x = &store.e[i];
        const void *val = x->val;
        size_t vlen = x->vlen;
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (x->klen > 4 && memcmp(x->key, "S/4/", 4) == 0) {
            /* element 10 of a partner entry is `accrued` (engine_records.h) */
            ck_assert(msgpack_unpack_next(&up, x->val, x->vlen, NULL) == MSGPACK_UNPACK_SUCCESS);
            ck_assert_uint_eq(up.data.via.array.size, PARTNER_FIELDS);
            up.data.via.array.ptr[10].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
            up.data.via.array.ptr[10].via.u64 = (uint64_t)INT64_MAX - 5;
            msgpack_packer pk;
            msgpack_sbuffer_clear(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_object(&pk, up.data);
            val = sb.data;
            vlen = sb.size;
        }
        if (x->key[0] == 'S')
            ck_assert_int_eq(tly_engine_load(fresh, x->key, x->klen, val, vlen), TLY_OK);
        msgpack_unpacked_destroy(&up);
    }
    tly_engine_set_seq(fresh, 2);
    tly_engine_free(s.e[0]);
    s.e[0] = fresh;
    /* 1000 at 100 bps accrues 10: INT64_MAX - 5 + 10 overflows */
    tly_event ev;
    msgpack_sbuffer_clear(&sb);
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:s,s:i,s:i,s:s}", "type", "sale", "id", "S1", "at",
                          (json_int_t)(Q1_25 + DAY), "partner", "p1", "sku", "X", "qty", 1,
                          "amount", 1000, "currency", "USD");
    to_mp(j, &sb);
    ck_assert_int_eq(tly_event_decode(sb.data, sb.size, REC_MS, &ev, NULL), TLY_OK);
    tly_record rec = {.seq = 3, .recorded_ms = REC_MS, .source = {"d", 1}};
    ck_assert_int_eq(tly_engine_apply(fresh, &rec, &ev), TLY_OVERFLOW);
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
    kv_free(&store);
    shards_free(&s);
}
END_TEST

/* A corrupt state entry is TLY_CORRUPT, not a crash. */
START_TEST(load_rejects_garbage)
{
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    static const uint8_t junk[] = {0x93, 0x01, 0xa1, 'x'};
    ck_assert_int_eq(tly_engine_load(e, "S/1/x", 5, junk, sizeof junk), TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_load(e, "S/4/x", 5, junk, 2), TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_load(e, "S/9/x", 5, junk, sizeof junk), TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_load(e, "Q", 1, junk, sizeof junk), TLY_CORRUPT);
    tly_engine_free(e);
}
END_TEST

/* What tly_engine_journal_each showed: the last entry's figures, how many
 * entries, and the ids one after the other. */
typedef struct jseen {
    int64_t v[TLY_ENGINE_ACT_FIELDS];
    uint32_t count;
    tly_err fail_at_2; /* returned for the second entry when set */
} jseen;

static tly_err jseen_add(void *ctx, const char *partner, size_t len,
                         const int64_t v[TLY_ENGINE_ACT_FIELDS])
{
    jseen *j = ctx;
    ck_assert_uint_ge(len, 1);
    ck_assert(partner[0] == 'p');
    memcpy(j->v, v, sizeof j->v);
    return ++j->count == 2 && j->fail_at_2 != TLY_OK ? j->fail_at_2 : TLY_OK;
}

/* body ([mask, figures...] as MessagePack) as a chunk of one entry for
 * partner "p": [[ "p", mask, figures...]]; the chunk's status. */
static tly_err journal_one(const uint8_t *body, size_t len, jseen *j)
{
    uint8_t buf[64];
    ck_assert_uint_lt(len + 3, sizeof buf);
    buf[0] = 0x91;
    buf[1] = (uint8_t)(body[0] + 1); /* the fixarray, one element more */
    buf[2] = 0xa1;
    buf[3] = 'p';
    memcpy(buf + 4, body + 1, len - 1);
    *j = (jseen){.count = 0};
    return tly_engine_journal_each(buf, len + 3, jseen_add, j);
}

/* A chunk of n entries for partners p0000, p0001, ... (or the ids given
 * in order), each with revenue i + 1. */
static tly_err journal_many(uint32_t n, bool descending, jseen *j)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%04u", descending ? n - i : i);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str_with_body(&pk, id, 5);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_int64(&pk, i + 1);
    }
    tly_err err = tly_engine_journal_each(sb.data, sb.size, jseen_add, j);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

/* A journal chunk is [[partner, mask, the figures whose bit is set]...],
 * 1..TLY_ENGINE_JOURNAL_CHUNK_ROWS entries by ascending partner id: each
 * decoded back to the ten figures; anything else is TLY_CORRUPT. */
START_TEST(journal_row_decode)
{
    jseen j;
    /* mask 0b101: revenue 1000, mdf_clawed_back -5 */
    static const uint8_t ok[] = {0x93, 0x05, 0xcd, 0x03, 0xe8, 0xfb};
    ck_assert_int_eq(journal_one(ok, sizeof ok, &j), TLY_OK);
    ck_assert_uint_eq(j.count, 1);
    ck_assert_int_eq(j.v[0], 1000);
    ck_assert_int_eq(j.v[1], 0);
    ck_assert_int_eq(j.v[2], -5);
    ck_assert_str_eq(tly_engine_act_name(0), "revenue");
    ck_assert_str_eq(tly_engine_act_name(TLY_ENGINE_ACT_FIELDS - 1), "rebate_paid");
    ck_assert_ptr_null(tly_engine_act_name(TLY_ENGINE_ACT_FIELDS));
    static const uint8_t empty[] = {0x91, 0x00};
    ck_assert_int_eq(journal_one(empty, sizeof empty, &j), TLY_OK);
    ck_assert_int_eq(j.v[0], 0);
    /* the highest bit there is, and one beyond it */
    static const uint8_t last[] = {0x92, 0xcd, 0x02, 0x00, 0x07};
    ck_assert_int_eq(journal_one(last, sizeof last, &j), TLY_OK);
    ck_assert_int_eq(j.v[TLY_ENGINE_ACT_FIELDS - 1], 7);
    static const uint8_t beyond[] = {0x92, 0xcd, 0x04, 0x00, 0x07};
    static const uint8_t fewer[] = {0x92, 0x05, 0x01}; /* two bits, one figure */
    static const uint8_t zero[] = {0x92, 0x01, 0x00};  /* a set bit's figure is 0 */
    ck_assert_int_eq(journal_one(beyond, sizeof beyond, &j), TLY_CORRUPT);
    ck_assert_int_eq(journal_one(fewer, sizeof fewer, &j), TLY_CORRUPT);
    ck_assert_int_eq(journal_one(zero, sizeof zero, &j), TLY_CORRUPT);
    static const uint8_t trailing[] = {0x91, 0x92, 0xa1, 'p', 0x00, 0x01};
    static const uint8_t noid[] = {0x91, 0x92, 0xa0, 0x00};
    static const uint8_t none[] = {0x90};
    static const uint8_t notarray[] = {0x05};
    ck_assert_int_eq(tly_engine_journal_each(trailing, sizeof trailing, jseen_add, &j),
                     TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_journal_each(noid, sizeof noid, jseen_add, &j), TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_journal_each(none, sizeof none, jseen_add, &j), TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_journal_each(notarray, sizeof notarray, jseen_add, &j),
                     TLY_CORRUPT);
    ck_assert_int_eq(tly_engine_journal_each(trailing, 3, jseen_add, &j), TLY_CORRUPT);
    /* the chunk size at its edge, partners in order only, fn's error */
    j = (jseen){.count = 0};
    ck_assert_int_eq(journal_many(TLY_ENGINE_JOURNAL_CHUNK_ROWS, false, &j), TLY_OK);
    ck_assert_uint_eq(j.count, TLY_ENGINE_JOURNAL_CHUNK_ROWS);
    ck_assert_int_eq(j.v[0], TLY_ENGINE_JOURNAL_CHUNK_ROWS);
    j = (jseen){.count = 0};
    ck_assert_int_eq(journal_many(TLY_ENGINE_JOURNAL_CHUNK_ROWS + 1, false, &j), TLY_CORRUPT);
    ck_assert_uint_eq(j.count, 0);
    j = (jseen){.count = 0};
    ck_assert_int_eq(journal_many(2, true, &j), TLY_CORRUPT);
    j = (jseen){.count = 0, .fail_at_2 = TLY_NOMEM};
    ck_assert_int_eq(journal_many(3, false, &j), TLY_NOMEM);
    ck_assert_uint_eq(j.count, 2);
}
END_TEST

/* A record out of order is refused and changes nothing. */
START_TEST(apply_out_of_order)
{
    shards s;
    shards_init(&s, 1);
    program(&s, "acme", 1, "USD", "retroactive", Q1_25);
    tly_event ev = {.type = TLY_EV_CLOSE};
    tly_record rec = {.seq = 5, .source = {"x", 1}};
    ck_assert_int_eq(tly_engine_apply(s.e[0], &rec, &ev), TLY_USAGE);
    ck_assert_uint_eq(tly_engine_seq(s.e[0]), 1);
    shards_free(&s);
}
END_TEST

/* ---- benchmark (not a test) ---- */

/* CPU time of this process: the machine may be shared with other work. */
static double secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Generates `events` events (500 partners) and times the fold of one
 * shard: decode alone, then decode + apply, then one flush. */
static size_t bench_events = 1000000;

/* A sink that only counts: the benchmark times the engine, not a store. */
static tly_err count_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    size_t *n = ctx;
    (void)key;
    (void)val;
    n[0]++;
    n[1] += klen + vlen;
    return TLY_OK;
}

/* Runs inside a Check runner: the generator uses Check's assertions. */
static int bench(size_t events);
/* The engine's hash map at its load limit: a table of 64 slots takes
 * ENG_MAP_LOAD_NUM/ENG_MAP_LOAD_DEN of 64 entries and doubles on the next;
 * random puts and deletes (backward-shift deletion in long probe runs)
 * agree with a plain array. */
/* The sale cache's block pool at the edges of its two sizes: each block
 * holds its whole length apart from every other, a block comes back to
 * takers of its own size only, and past ENG_POOL_BLOCK_BYTES it is
 * malloc's (so ASan sees its bounds). */
START_TEST(pool_size_classes)
{
    eng_pool pool = {0};
    static const size_t lens[] = {1, ENG_POOL_SMALL_BYTES, ENG_POOL_SMALL_BYTES + 1,
                                  ENG_POOL_BLOCK_BYTES, ENG_POOL_BLOCK_BYTES + 1};
    enum { N = sizeof lens / sizeof lens[0], ROUNDS = ENG_POOL_CHUNK_BLOCKS + 3 };
    static char *blocks[ROUNDS][N];
    for (int r = 0; r < ROUNDS; r++) /* past one chunk of each size */
        for (int i = 0; i < N; i++) {
            blocks[r][i] = eng_pool_get(&pool, lens[i]);
            ck_assert_ptr_nonnull(blocks[r][i]);
            memset(blocks[r][i], 'A' + (r * N + i) % 50, lens[i]);
        }
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < N; i++)
            for (size_t b = 0; b < lens[i]; b++)
                ck_assert_int_eq(blocks[r][i][b], 'A' + (r * N + i) % 50);
    /* A freed small block serves the next small taker, not a larger one. */
    char *small = blocks[0][1], *large = blocks[0][3];
    eng_pool_put(&pool, large, ENG_POOL_BLOCK_BYTES);
    eng_pool_put(&pool, small, ENG_POOL_SMALL_BYTES); /* one list would hand this out first */
    ck_assert_ptr_eq(eng_pool_get(&pool, ENG_POOL_SMALL_BYTES + 1), large);
    ck_assert_ptr_eq(eng_pool_get(&pool, 1), small);
    for (int r = 0; r < ROUNDS; r++)
        eng_pool_put(&pool, blocks[r][4], lens[4]); /* malloc's: freed */
    eng_pool_free(&pool);
}
END_TEST

START_TEST(map_load_edge)
{
    enum { KEYS = 4000 };
    static char keys[KEYS][16];
    static bool in[KEYS];
    eng_map m = {0};
    uint32_t edge = 64u * ENG_MAP_LOAD_NUM / ENG_MAP_LOAD_DEN;
    for (uint32_t i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "k%u", i);
        in[i] = false;
    }
    for (uint32_t i = 0; i < edge; i++) {
        uint32_t len = (uint32_t)strlen(keys[i]);
        ck_assert_int_eq(eng_map_put(&m, keys[i], len, eng_hash(keys[i], len), i), TLY_OK);
        in[i] = true;
    }
    ck_assert_uint_eq(m.cap, 64);
    uint32_t len = (uint32_t)strlen(keys[edge]);
    ck_assert_int_eq(eng_map_put(&m, keys[edge], len, eng_hash(keys[edge], len), edge), TLY_OK);
    in[edge] = true;
    ck_assert_uint_eq(m.cap, 128);
    uint64_t rng = g_seed | 1;
    for (uint32_t step = 0; step < 200000; step++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t k = (uint32_t)(rng % KEYS);
        uint32_t kl = (uint32_t)strlen(keys[k]);
        uint64_t h = eng_hash(keys[k], kl);
        ck_assert_uint_eq(eng_map_get(&m, keys[k], kl, h), in[k] ? k : ENG_NONE);
        if (in[k])
            eng_map_del(&m, keys[k], kl, h);
        else
            ck_assert_int_eq(eng_map_put(&m, keys[k], kl, h, k), TLY_OK);
        in[k] = !in[k];
        ck_assert_uint_le((uint64_t)m.count * ENG_MAP_LOAD_DEN, (uint64_t)m.cap * ENG_MAP_LOAD_NUM);
    }
    for (uint32_t k = 0; k < KEYS; k++) {
        uint32_t kl = (uint32_t)strlen(keys[k]);
        ck_assert_uint_eq(eng_map_get(&m, keys[k], kl, eng_hash(keys[k], kl)),
                          in[k] ? k : ENG_NONE);
    }
    eng_map_free(&m);
}
END_TEST

/* eng_map_set, then eng_map_shrink: to the smallest table within the load
 * limit (never under 64), every entry kept with its value; a table already
 * that small stays; an empty one goes down to 64. */
START_TEST(map_set_and_shrink)
{
    enum { KEYS = 3000 };
    static char keys[KEYS][16];
    eng_map m = {0};
    for (uint32_t k = 0; k < KEYS; k++) {
        snprintf(keys[k], sizeof keys[k], "s%u", k);
        uint32_t kl = (uint32_t)strlen(keys[k]);
        ck_assert_int_eq(eng_map_put(&m, keys[k], kl, eng_hash(keys[k], kl), k), TLY_OK);
    }
    ck_assert_uint_eq(m.cap, 4096);
    for (uint32_t k = 0; k < KEYS; k++) {
        uint32_t kl = (uint32_t)strlen(keys[k]);
        if (k % 4 != 0)
            eng_map_del(&m, keys[k], kl, eng_hash(keys[k], kl));
        else
            eng_map_set(&m, keys[k], kl, eng_hash(keys[k], kl), k + KEYS);
    }
    eng_map_shrink(&m); /* 750 entries: 1,024 slots hold them, 512 would not */
    ck_assert_uint_eq(m.cap, 1024);
    ck_assert_uint_eq(m.count, KEYS / 4);
    for (uint32_t k = 0; k < KEYS; k++) {
        uint32_t kl = (uint32_t)strlen(keys[k]);
        ck_assert_uint_eq(eng_map_get(&m, keys[k], kl, eng_hash(keys[k], kl)),
                          k % 4 == 0 ? k + KEYS : ENG_NONE);
    }
    eng_map_shrink(&m);
    ck_assert_uint_eq(m.cap, 1024);
    for (uint32_t k = 0; k < KEYS; k += 4) {
        uint32_t kl = (uint32_t)strlen(keys[k]);
        eng_map_del(&m, keys[k], kl, eng_hash(keys[k], kl));
    }
    eng_map_shrink(&m);
    ck_assert_uint_eq(m.cap, 64);
    ck_assert_uint_eq(m.count, 0);
    eng_map_free(&m);
}
END_TEST

/* eng_map_remap: the entries whose to[] is not ENG_NONE stay with their
 * new values, in the smallest table within the load limit (the edge: 48
 * kept fit 64 slots, 49 take 128), the others are gone, and no key is read
 * (a dropped entry's key is overwritten first: its hash alone decides). */
START_TEST(map_remap_keeps_and_drops)
{
    enum { KEYS = 3000 };
    static char keys[KEYS][16];
    static uint32_t to[KEYS];
    uint32_t edge = 64u * ENG_MAP_LOAD_NUM / ENG_MAP_LOAD_DEN;
    for (uint32_t kept = edge; kept <= edge + 1; kept++) {
        eng_map m = {0};
        for (uint32_t k = 0; k < KEYS; k++) {
            snprintf(keys[k], sizeof keys[k], "r%u", k);
            uint32_t kl = (uint32_t)strlen(keys[k]);
            ck_assert_int_eq(eng_map_put(&m, keys[k], kl, eng_hash(keys[k], kl), k), TLY_OK);
        }
        /* Keep every 7th key up to kept of them, at values counted down. */
        uint32_t n = 0;
        for (uint32_t k = 0; k < KEYS; k++)
            to[k] = k % 7 == 3 && n < kept ? KEYS - 1 - n++ : ENG_NONE;
        ck_assert_uint_eq(n, kept);
        for (uint32_t k = 0; k < KEYS; k++)
            if (to[k] == ENG_NONE)
                memset(keys[k], 'x', sizeof keys[k] - 1); /* gone: must not be read */
        ck_assert_int_eq(eng_map_remap(&m, to, kept), TLY_OK);
        ck_assert_uint_eq(m.count, kept);
        ck_assert_uint_eq(m.cap, kept == edge ? 64 : 128);
        for (uint32_t k = 0; k < KEYS; k++) {
            if (to[k] == ENG_NONE)
                continue;
            uint32_t kl = (uint32_t)strlen(keys[k]);
            ck_assert_uint_eq(eng_map_get(&m, keys[k], kl, eng_hash(keys[k], kl)), to[k]);
        }
        /* A key dropped is not found (by its name, rebuilt for the look-up). */
        char gone[16];
        snprintf(gone, sizeof gone, "r%u", 0u);
        ck_assert_uint_eq(
            eng_map_get(&m, gone, (uint32_t)strlen(gone), eng_hash(gone, strlen(gone))), ENG_NONE);
        eng_map_free(&m);
    }
}
END_TEST

START_TEST(bench_test)
{
    ck_assert_int_eq(bench(bench_events), 0);
}
END_TEST

static int bench_main(void)
{
    Suite *s = suite_create("engine-bench");
    TCase *tc = tcase_create("bench");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, bench_test);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int bench(size_t events)
{
    stream st = {0};
    gen_stream(&st, g_seed, events, 500);
    tly_engine *e;
    if (tly_engine_new(0, 1, &e) != TLY_OK)
        return 1;
    tly_event ev;
    struct timespec t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (size_t i = 0; i < st.count; i++)
        if (tly_event_decode(st.recs[i].bytes, st.recs[i].len, REC_MS, &ev, NULL) != TLY_OK)
            return 1;
    double t_decode = secs_since(&t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (size_t i = 0; i < st.count; i++) {
        tly_record rec = {.seq = i + 1,
                          .recorded_ms = REC_MS,
                          .source = {st.recs[i].source, (uint32_t)strlen(st.recs[i].source)},
                          .event = st.recs[i].bytes,
                          .event_len = st.recs[i].len};
        if (tly_event_decode(st.recs[i].bytes, st.recs[i].len, REC_MS, &ev, NULL) != TLY_OK ||
            tly_engine_apply(e, &rec, &ev) != TLY_OK)
            return 1;
    }
    double t_fold = secs_since(&t0);
    size_t keys[2] = {0, 0};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    tly_err err = tly_engine_flush(e, count_put, keys);
    double t_flush = secs_since(&t0);
    printf("events %zu: decode %.0f ev/s; decode+apply %.0f ev/s; apply alone %.0f ev/s; "
           "one flush of everything %.2f s (%zu keys, %zu bytes, %s)\n",
           st.count, (double)st.count / t_decode, (double)st.count / t_fold,
           (double)st.count / (t_fold - t_decode), t_flush, keys[0], keys[1], tly_err_name(err));
    tly_engine_free(e);
    stream_free(&st);
    return 0;
}

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tu_tcase(s, "vectors", 120);
    tcase_add_loop_test(tc, vector_seed101, 0, 3);
    tcase_add_loop_test(tc, vector_seed102, 0, 3);
    tc = tu_tcase(s, "scenarios", 0);
    tu_add_tests(tc, TU_TESTS(rhe_cases, late_lands_in_open_period, held_fold_at_enrollment,
                              partial_approval_into_expired_bucket, clawback_deficit_paid_by_credit,
                              rebate_bracket_edges, tier_upgrade_downgrade, program_versions,
                              close_out_of_order_and_unknown, over_return_partial,
                              return_partner_mismatch_across_shards, payouts, claim_state_machine,
                              enrollment_rules, apply_out_of_order, details_pinned,
                              load_rejects_garbage, journal_row_decode, map_load_edge,
                              map_set_and_shrink, map_remap_keeps_and_drops, pool_size_classes));
    tu_add_tests(tc,
                 TU_TESTS(mdf_cap_room_counts_capped_accruals, cert_expires_at_next_period_start,
                          fx_rate_in_force_edges, late_approval_payment_payout_reported_open,
                          new_version_restarts_grace, adjust_lands_in_earliest_open_period,
                          one_step_grace_moves_down_one_position, fx_conversion_rounds_half_even,
                          period_of_the_other_kind_names_no_period,
                          longer_expiry_keeps_expired_buckets_expired,
                          expiry_reported_in_the_closed_period,
                          held_certification_keeps_its_expires, archive_keeps_the_growth_baseline));
    tc = tu_tcase(s, "random", 300);
    tcase_add_loop_test(tc, random_streams, 0, 1);
    tc = tu_tcase(s, "flush_load", 300);
    tcase_add_loop_test(tc, flush_load_resume, 0, 2);
    tcase_add_loop_test(tc, store_matches_memory, 0, 12);
    tcase_add_loop_test(tc, store_matches_memory_wide_flush, 0, 2);
    tcase_add_test(tc, flush_drops_no_partner);
    tcase_add_loop_test(tc, claims_legacy_fold_on, 0, 2);
    tcase_add_loop_test(tc, claims_v6_fold_on, 0, 2);
    tcase_add_test(tc, claims_v6_other_claim_corrupt);
    tcase_add_loop_test(tc, history_v7_fold_on, 0, 2);
    tcase_add_loop_test(tc, archive_v8_fold_on, 0, 2);
    tcase_add_loop_test(tc, archive_rev_v9_fold_on, 0, 2);
    tcase_add_loop_test(tc, claims_buckets_v10_fold_on, 0, 2);
    tcase_add_test(tc, archive_chain_broken_corrupt);
    tcase_add_test(tc, history_count_mismatch_corrupt);
    tcase_add_test(tc, stored_text_with_nul_corrupt);
    tcase_add_test(tc, stored_record_under_other_key_corrupt);
    tcase_add_test(tc, figures_out_of_line_corrupt);
    tcase_add_test(tc, certs_block_edges);
    tcase_add_test(tc, settled_state_block);
    tcase_add_test(tc, certs_stored_key_too_long_corrupt);
    tcase_add_test(tc, archive_needed_unreadable_corrupt);
    tcase_add_test(tc, archive_rows);
    tcase_add_test(tc, claims_leave_memory);
    tcase_add_test(tc, claims_by_bucket);
    tcase_add_test(tc, claim_buckets_checked);
    tcase_add_test(tc, claim_bucket_edges);
    tcase_add_loop_test(tc, read_back_edges, 0, 2);
    tcase_add_loop_test(tc, read_back_stops_at_unreadable, 0, 3);
    tcase_add_test(tc, read_back_jobs);
    tcase_add_test(tc, overflow_is_an_error);
    tu_add_tests(tc, TU_TESTS(stage_replays_in_order, stage_replay_stops_at_error,
                              stage_refuses_4gib, prefetch_changes_nothing));
    tc = tu_tcase(s, "stored_text", 300);
    tu_add_tests(tc, TU_TESTS(stored_text_vectors, stored_text_random, stored_text_escapes,
                              jw_mp_edges, jw_canonical_edges, stored_state_edges));
    return s;
}

int main(int argc, char **argv)
{
    const char *seed = getenv("TALLY_SEED");
    if (seed != NULL && *seed != '\0')
        g_seed = strtoull(seed, NULL, 10);
    if (argc >= 2 && strcmp(argv[1], "--bench") == 0) {
        if (argc >= 3)
            bench_events = (size_t)strtoull(argv[2], NULL, 10);
        return bench_main();
    }
    printf("seed %" PRIu64 " (set TALLY_SEED to repeat another)\n", g_seed);
    return tu_run_suite(engine_suite());
}
