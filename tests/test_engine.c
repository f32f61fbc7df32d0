/*
 * test_engine.c — Check suite of the program engine (consumers/tly_engine.h):
 * the conformance vectors for 1, 2 and 4 shards, hand-computed scenarios
 * citing the SPEC section 9 rules they pin, long seeded random streams
 * (MDF invariant after every event, equality across shard counts), flush and
 * load against an uninterrupted fold, and a benchmark mode
 * (`test_engine --bench [EVENTS]`, not run by ctest).
 */
#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_money.h"

/* recorded_ms given to every test record: 2100-01-01, after every `at`. */
#define REC_MS INT64_C(4102444800000)
#define SHARDS_MAX 4

/* Quarter starts (Unix ms, UTC). */
#define Q1_25 INT64_C(1735689600000)
#define Q2_25 INT64_C(1743465600000)
#define Q3_25 INT64_C(1751328000000)
#define Q4_25 INT64_C(1759276800000)
#define DAY INT64_C(86400000)

/* ---- a stream of records: source + event bytes ---- */

typedef struct rec_buf {
    char *source;
    uint8_t *bytes;
    size_t len;
} rec_buf;

typedef struct stream {
    rec_buf *recs;
    size_t count, cap;
} stream;

static void stream_free(stream *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->recs[i].source);
        free(s->recs[i].bytes);
    }
    free(s->recs);
    memset(s, 0, sizeof *s);
}

/* Converts a JSON event to MessagePack; aborts the test on failure. */
static void to_mp(json_t *ev, msgpack_sbuffer *sb)
{
    tly_field_error fe = {{0}, {0}};
    msgpack_sbuffer_clear(sb);
    tly_err err = tly_json_event_to_mp(ev, sb, &fe);
    ck_assert_msg(err == TLY_OK, "to_mp: %s %s", fe.field, fe.message);
}

static void stream_push(stream *s, const char *source, const void *bytes, size_t len)
{
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->recs = realloc(s->recs, s->cap * sizeof *s->recs);
        ck_assert_ptr_nonnull(s->recs);
    }
    rec_buf *r = &s->recs[s->count++];
    r->source = strdup(source);
    r->bytes = malloc(len);
    ck_assert_ptr_nonnull(r->bytes);
    memcpy(r->bytes, bytes, len);
    r->len = len;
}

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
    ck_assert_msg(err == TLY_OK, "decode seq %" PRIu64 ": %s %s", s->seq + 1, fe.field,
                  fe.message);
    tly_record rec = {.seq = ++s->seq, .recorded_ms = REC_MS,
                      .source = {source, (uint32_t)strlen(source)},
                      .event = bytes, .event_len = len};
    for (uint32_t k = 0; k < s->n; k++) {
        err = tly_engine_apply(s->e[k], &rec, &ev);
        ck_assert_msg(err == TLY_OK, "apply seq %" PRIu64 " shard %u: %s", rec.seq, k,
                      tly_err_name(err));
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

/* All shards' exceptions, merged by seq (all exceptions of one seq come
 * from one shard, each shard's list is ordered by (seq, n)). */
static json_t *merged_exceptions(const shards *s)
{
    json_t *lists[SHARDS_MAX];
    size_t at[SHARDS_MAX] = {0};
    for (uint32_t k = 0; k < s->n; k++)
        lists[k] = tly_engine_exceptions(s->e[k]);
    json_t *out = json_array();
    for (;;) {
        int best = -1;
        json_int_t best_seq = 0;
        for (uint32_t k = 0; k < s->n; k++) {
            json_t *x = json_array_get(lists[k], at[k]);
            if (x == NULL)
                continue;
            json_int_t seq = json_integer_value(json_object_get(x, "seq"));
            if (best < 0 || seq < best_seq) {
                best = (int)k;
                best_seq = seq;
            }
        }
        if (best < 0)
            break;
        json_array_append(out, json_array_get(lists[best], at[best]++));
    }
    for (uint32_t k = 0; k < s->n; k++)
        json_decref(lists[k]);
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

/* json_equal with both texts in the failure message. */
static void expect_json(json_t *got, json_t *want, const char *what)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        ck_abort_msg("%s differs\n got: %s\nwant: %s", what, g ? g : "null", w ? w : "null");
    }
}

/* ---- the conformance vectors ---- */

/* Reads the vector events, dropping resends of an accepted (source, id)
 * with the same bytes, as the ledger does. */
static void load_vector_stream(stream *st)
{
    char *path = tu_vector("seed101-events.jsonl");
    size_t len;
    char *text = tu_read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    json_t *seen = json_object();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_t *r = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(r);
        const char *source = json_string_value(json_object_get(r, "source"));
        json_t *ev = json_object_get(r, "event");
        to_mp(ev, &sb);
        char key[256];
        snprintf(key, sizeof key, "%s\x1f%s", source,
                 json_string_value(json_object_get(ev, "id")));
        json_t *prev = json_object_get(seen, key);
        if (prev == NULL) {
            json_object_set_new(seen, key, json_stringn(sb.data, 0));
            json_object_set_new(seen, key, json_integer((json_int_t)st->count));
            stream_push(st, source, sb.data, sb.size);
        } else {
            const rec_buf *orig = &st->recs[json_integer_value(prev)];
            ck_assert_msg(orig->len == sb.size && memcmp(orig->bytes, sb.data, sb.size) == 0,
                          "vector resend with different bytes: %s", key);
        }
        json_decref(r);
    }
    msgpack_sbuffer_destroy(&sb);
    json_decref(seen);
    free(text);
    free(path);
}

static void strip_detail(json_t *list)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        json_object_del(json_array_get(list, i), "detail");
}

static void check_vector(uint32_t n)
{
    stream st = {0};
    load_vector_stream(&st);
    ck_assert_uint_eq(st.count, 3074);
    char *path = tu_vector("seed101-expected.json");
    json_t *want = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(want);
    shards s;
    shards_init(&s, n);
    shards_fold(&s, &st, 0, st.count);

    const char *partner;
    json_t *pv;
    static const struct { char v; const char *name; } views[] = {
        {'b', "balance"}, {'r', "rebate"}, {'t', "tier"}, {'c', "claims"}};
    json_object_foreach(json_object_get(want, "partners"), partner, pv) {
        for (size_t i = 0; i < 4; i++) {
            char what[256];
            snprintf(what, sizeof what, "N=%u %s of %s", n, views[i].name, partner);
            json_t *got = view(&s, views[i].v, partner);
            ck_assert_msg(got != NULL, "%s: no view", what);
            expect_json(got, json_object_get(pv, views[i].name), what);
            json_decref(got);
        }
    }
    json_t *liab = merged_liabilities(&s);
    expect_json(liab, json_object_get(want, "liabilities"), "liabilities");
    json_decref(liab);
    json_t *got_x = merged_exceptions(&s);
    json_t *want_x = json_deep_copy(json_object_get(json_object_get(want, "exceptions"),
                                                    "exceptions"));
    strip_detail(got_x);
    strip_detail(want_x);
    expect_json(got_x, want_x, "exceptions (seq, kind, partner)");
    json_decref(got_x);
    json_decref(want_x);
    json_decref(want);
    free(path);
    shards_free(&s);
    stream_free(&st);
}

START_TEST(vector_seed101)
{
    static const uint32_t counts[] = {1, 2, 4};
    check_vector(counts[_i]);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("vectors");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, vector_seed101, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
