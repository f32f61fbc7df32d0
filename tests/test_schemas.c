/*
 * test_schemas.c — the Check suite of schemas/: the MessagePack reader,
 * event decoding and validation (SPEC section 5, [G6], [C3]), the JSON
 * codec, periods and time text ([P1], [P6], [D18]), wire messages (SPEC
 * section 4), currencies and decimal amounts ([D18]).
 *
 * Every limit of tly_limits.h that schemas enforce is tested at its edge:
 * the value is accepted and the value + 1 rejected.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_currency.h"
#include "tly_dl.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_mhd.h"
#include "tly_mp.h"
#include "tly_mpw.h"
#include "tly_os.h"
#include "tly_period.h"
#include "tly_wire.h"

/* 2025-01-01T00:00:00Z: business time of the sample events. */
#define T0 INT64_C(1735689600000)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- sample events, one per type ---------- */

static const char *const sample_program =
    "{\"type\":\"program\",\"id\":\"FIN-1\",\"at\":1735689600000,\"program\":\"apex\","
    "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
    "{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
    "{\"name\":\"Silver\",\"min_revenue\":2800000,\"min_certs\":1,\"mdf_bps\":150},"
    "{\"name\":\"Gold\",\"min_revenue\":8500000,\"min_certs\":3,\"mdf_bps\":200}],"
    "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
    "{\"from\":3600000,\"bps\":200}]},\"mdf_expiry_periods\":2,\"tier_window_periods\":3}";
static const char *const sample_partner =
    "{\"type\":\"partner\",\"id\":\"FIN-2\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"name\":\"Acme Var\",\"program\":\"apex\",\"kind\":\"var\",\"region\":\"EMEA\"}";
static const char *const sample_sale =
    "{\"type\":\"sale\",\"id\":\"S-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"sku\":\"SKU-9\",\"qty\":3,\"amount\":123450,\"currency\":\"USD\"}";
static const char *const sample_return =
    "{\"type\":\"return\",\"id\":\"R-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"sale\":\"S-1\",\"qty\":1,\"amount\":41150,\"currency\":\"USD\"}";
static const char *const sample_cert =
    "{\"type\":\"certification\",\"id\":\"C-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"person\":\"p-17\",\"cert\":\"networking-pro\",\"action\":\"earned\"}";
static const char *const sample_claim =
    "{\"type\":\"claim\",\"id\":\"CL-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"claim\":\"q1-webinar\",\"action\":\"submit\",\"amount\":50000,"
    "\"activity\":\"webinar\"}";
static const char *const sample_close =
    "{\"type\":\"close\",\"id\":\"FIN-3\",\"at\":1735689600000,\"program\":\"apex\","
    "\"period\":\"2024-Q4\"}";
static const char *const sample_payout =
    "{\"type\":\"payout\",\"id\":\"FIN-4\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"period\":\"2024-Q4\",\"amount\":1000}";
static const char *const sample_adjust =
    "{\"type\":\"adjust\",\"id\":\"FIN-5\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"account\":\"mdf\",\"amount\":-2500,\"reason\":\"goodwill correction\"}";

static json_t *jparse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    ck_assert_msg(j != NULL, "bad test JSON: %s: %s", je.text, text);
    return j;
}

/* JSON object -> MessagePack bytes (the caller destroys sb). */
static tly_err to_mp(const json_t *j, msgpack_sbuffer *sb, tly_field_error *fe)
{
    msgpack_sbuffer_init(sb);
    return tly_json_event_to_mp(j, sb, fe);
}

/* The bytes of the last decode_json: a decoded event borrows from them, so
 * they live until the next call (and the forked test process ends). */
static msgpack_sbuffer last_bytes;

/* JSON -> MessagePack -> decode, with recorded time rec. */
static tly_err decode_json(const json_t *j, int64_t rec, tly_event *ev, tly_field_error *fe)
{
    msgpack_sbuffer_destroy(&last_bytes);
    tly_err err = to_mp(j, &last_bytes, fe);
    if (err == TLY_OK)
        err = tly_event_decode(last_bytes.data, last_bytes.size, rec, ev, fe);
    return err;
}

/*
 * Walks "a/2/b" inside root and sets (val non-NULL, stolen) or deletes the
 * last step.
 */
static void jset(json_t *root, const char *path, json_t *val)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    char *save = NULL;
    char *tok = strtok_r(buf, "/", &save);
    for (;;) {
        char *next = strtok_r(NULL, "/", &save);
        if (!next) {
            if (json_is_array(cur)) {
                size_t i = strtoul(tok, NULL, 10);
                if (val)
                    json_array_set_new(cur, i, val);
                else
                    json_array_remove(cur, i);
            } else if (val) {
                json_object_set_new(cur, tok, val);
            } else {
                json_object_del(cur, tok);
            }
            return;
        }
        cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10))
                                 : json_object_get(cur, tok);
        ck_assert_msg(cur != NULL, "no %s in test event", path);
        tok = next;
    }
}

/* A string of n copies of c. */
static json_t *jrepeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    json_t *j = json_string(s);
    free(s);
    return j;
}

/*
 * Decodes sample with path set to val (val_text JSON, NULL = delete) and
 * checks the outcome and, on failure, the reported field.
 */
static void expect_val(const char *sample, const char *path, json_t *val, tly_err want,
                       const char *field)
{
    json_t *j = jparse(sample);
    jset(j, path, val);
    tly_event ev;
    tly_field_error fe = {"", ""};
    tly_err got = decode_json(j, now_ms(), &ev, &fe);
    ck_assert_msg(got == want, "%s=%s: got %s (%s), want %s", path, val ? "value" : "deleted",
                  tly_err_name(got), fe.message, tly_err_name(want));
    if (want != TLY_OK && field)
        ck_assert_msg(strcmp(fe.field, field) == 0, "%s: field '%s', want '%s'", path, fe.field,
                      field);
    json_decref(j);
}

static void expect(const char *sample, const char *path, const char *val_text, tly_err want,
                   const char *field)
{
    expect_val(sample, path, val_text ? jparse(val_text) : NULL, want, field);
}

/* One case of expect(): *sample with path set to value (JSON text). */
typedef struct expect_case {
    const char *const *sample;
    const char *path, *value;
    tly_err want;
    const char *field;
} expect_case;

/* expect() for every case of a table, in order. */
static void expect_cases(const expect_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect(*c[i].sample, c[i].path, c[i].value, c[i].want, c[i].field);
}

/* ---------- MessagePack reader ---------- */

START_TEST(test_mp_ints)
{
    /* Every integer encoding reads back as the same int64. */
    static const struct {
        uint8_t bytes[9];
        size_t len;
        int64_t want;
    } cases[] = {
        {{0x05}, 1, 5},
        {{0x7f}, 1, 127},
        {{0xff}, 1, -1},
        {{0xe0}, 1, -32},
        {{0xcc, 0xff}, 2, 255},
        {{0xcd, 0x01, 0x00}, 3, 256},
        {{0xce, 0x00, 0x01, 0x00, 0x00}, 5, 65536},
        {{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9, INT64_C(4294967296)},
        {{0xd0, 0x80}, 2, -128},
        {{0xd1, 0x80, 0x00}, 3, -32768},
        {{0xd2, 0x80, 0, 0, 0}, 5, INT64_C(-2147483648)},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
        {{0xd3, 0, 0, 0, 0, 0, 0, 0, 7}, 9, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tly_mp_reader r;
        int64_t v = 0;
        tly_mp_init(&r, cases[i].bytes, cases[i].len);
        ck_assert_int_eq(tly_mp_peek(&r), TLY_MP_INT);
        ck_assert(tly_mp_read_int(&r, &v));
        ck_assert_int_eq(v, cases[i].want);
        ck_assert_uint_eq(tly_mp_remaining(&r), 0);
    }
}
END_TEST

/* Every first byte, followed by 0..40 bytes: the inline fast paths of
 * tly_mp.h give what the general readers give (outcome, bytes consumed,
 * outputs), and a reader that fails is untouched. */
START_TEST(test_mp_fast_paths_match)
{
    uint8_t buf[41];
    for (unsigned b = 0; b < 256; b++) {
        buf[0] = (uint8_t)b;
        for (size_t i = 1; i < sizeof buf; i++) /* fixints; as a length: 0x00.., 0x0021 */
            buf[i] = i == 1 && b == 0xc5 ? 0 : (uint8_t)(0x21 + i % 90);
        for (size_t len = 0; len <= sizeof buf; len++) {
            tly_mp_reader fast, slow;
            const char *s1 = NULL, *s2 = NULL;
            uint32_t n1 = 7, n2 = 7;
            tly_mp_init(&fast, buf, len);
            tly_mp_init(&slow, buf, len);
            bool ok = tly_mp_read_str(&fast, &s1, &n1);
            ck_assert_msg(ok == tly__mp_read_str(&slow, &s2, &n2), "str 0x%02x len %zu", b, len);
            ck_assert(fast.p == slow.p && s1 == s2 && n1 == n2);
            ck_assert(ok || fast.p == buf);
            const uint8_t *b1 = NULL, *b2 = NULL;
            tly_mp_init(&fast, buf, len);
            tly_mp_init(&slow, buf, len);
            ok = tly_mp_read_bin(&fast, &b1, &n1);
            ck_assert_msg(ok == tly__mp_read_bin(&slow, &b2, &n2), "bin 0x%02x len %zu", b, len);
            ck_assert(fast.p == slow.p && b1 == b2 && n1 == n2);
            ck_assert(ok || fast.p == buf);
            for (unsigned depth = 0; depth <= 1; depth++) {
                const uint8_t *v1 = NULL, *v2 = NULL;
                size_t l1 = 7, l2 = 7;
                tly_mp_init(&fast, buf, len);
                tly_mp_init(&slow, buf, len);
                ok = tly_mp_skip_at(&fast, depth, &v1, &l1);
                ck_assert_msg(ok == tly__mp_skip_at(&slow, depth, &v2, &l2), "skip 0x%02x len %zu",
                              b, len);
                ck_assert(fast.p == slow.p && v1 == v2 && l1 == l2);
                ck_assert(ok || fast.p == buf);
            }
        }
    }
}
END_TEST

/* Each int form at its edges and in between, against msgpack-c's own
 * unpacker: tly_mp_read_int (inline) reads what fits int64, and
 * tly_mp_read_uint what is not negative. */
START_TEST(test_mp_int_forms_against_msgpack_c)
{
    static const uint64_t bits[] = {0,
                                    1,
                                    0x7f,
                                    0x80,
                                    0xff,
                                    0x100,
                                    0x7fff,
                                    0x8000,
                                    0xffff,
                                    0x10000,
                                    0x7fffffff,
                                    0x80000000,
                                    0xffffffff,
                                    0x100000000,
                                    UINT64_C(0x7fffffffffffffff),
                                    UINT64_C(0x8000000000000000),
                                    UINT64_MAX,
                                    UINT64_C(0x123456789abcdef0)};
    for (unsigned b = 0xcc; b <= 0xd3; b++) {
        unsigned n = 1u << ((b - 0xcc) & 3);
        for (size_t k = 0; k < sizeof bits / sizeof bits[0]; k++) {
            uint8_t buf[9] = {(uint8_t)b};
            for (unsigned i = 0; i < n; i++)
                buf[1 + i] = (uint8_t)(bits[k] >> (8 * (n - 1 - i)));
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)buf, 1 + n, NULL),
                             MSGPACK_UNPACK_SUCCESS);
            tly_mp_reader r;
            int64_t v = 42;
            uint64_t uv = 42;
            tly_mp_init(&r, buf, 1 + n);
            bool ok = tly_mp_read_int(&r, &v);
            if (u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
                ck_assert(ok && v == u.data.via.i64);
                tly_mp_init(&r, buf, 1 + n);
                ck_assert(!tly_mp_read_uint(&r, &uv) && uv == 42 && r.p == buf);
            } else {
                ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
                ck_assert(ok == (u.data.via.u64 <= (uint64_t)INT64_MAX));
                ck_assert(ok ? v == (int64_t)u.data.via.u64 && r.p == buf + 1 + n
                             : v == 42 && r.p == buf);
                tly_mp_init(&r, buf, 1 + n);
                ck_assert(tly_mp_read_uint(&r, &uv) && uv == u.data.via.u64);
            }
            msgpack_unpacked_destroy(&u);
            tly_mp_init(&r, buf, n); /* one byte short */
            ck_assert(!tly_mp_read_int(&r, &v) && r.p == buf);
        }
    }
}
END_TEST

START_TEST(test_mp_uint64_and_failures)
{
    uint8_t big[9] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 1};
    tly_mp_reader r;
    int64_t i = 42;
    uint64_t u = 0;
    tly_mp_init(&r, big, sizeof big);
    ck_assert_int_eq(tly_mp_peek(&r), TLY_MP_UINT64);
    ck_assert(!tly_mp_read_int(&r, &i)); /* does not fit int64 */
    ck_assert_int_eq(i, 42);             /* output untouched */
    ck_assert_uint_eq(tly_mp_remaining(&r), 9);
    ck_assert(tly_mp_read_uint(&r, &u));
    ck_assert_uint_eq(u, UINT64_C(0x8000000000000001));

    /* A negative value is not a uint; the reader does not move. */
    uint8_t neg[1] = {0xff};
    tly_mp_init(&r, neg, 1);
    ck_assert(!tly_mp_read_uint(&r, &u));
    ck_assert_uint_eq(tly_mp_remaining(&r), 1);

    /* Truncated header or body: false, nothing consumed. */
    uint8_t trunc[] = {0xcd, 0x01};
    tly_mp_init(&r, trunc, sizeof trunc);
    ck_assert(!tly_mp_read_int(&r, &i));
    ck_assert_uint_eq(tly_mp_remaining(&r), 2);
    uint8_t tstr[] = {0xa5, 'a', 'b'};
    const char *s;
    uint32_t n;
    tly_mp_init(&r, tstr, sizeof tstr);
    ck_assert(!tly_mp_read_str(&r, &s, &n));
    ck_assert(!tly_mp_skip(&r, NULL, NULL));
    ck_assert_uint_eq(tly_mp_remaining(&r), 3);

    /* 0xc1 is reserved; empty input is invalid. */
    uint8_t res[] = {0xc1};
    tly_mp_init(&r, res, 1);
    ck_assert_int_eq(tly_mp_peek(&r), TLY_MP_INVALID);
    ck_assert(!tly_mp_skip(&r, NULL, NULL));
    tly_mp_init(&r, res, 0);
    ck_assert_int_eq(tly_mp_peek(&r), TLY_MP_INVALID);
}
END_TEST

START_TEST(test_mp_containers_and_skip)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* {"s": <300-byte str>, "b": bin 3, "a": [nil, true, 1.5, ext]} */
    char text[300];
    memset(text, 'x', sizeof text);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "s", 1);
    msgpack_pack_str_with_body(&pk, text, sizeof text);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_bin_with_body(&pk, "\x01\x02\x03", 3);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_ext_with_body(&pk, "\x09\x09", 2, 7);

    tly_mp_reader r;
    tly_mp_init(&r, sb.data, sb.size);
    const uint8_t *start;
    size_t len;
    ck_assert(tly_mp_skip(&r, &start, &len));
    ck_assert_ptr_eq(start, (const uint8_t *)sb.data);
    ck_assert_uint_eq(len, sb.size);
    ck_assert(tly_mp_is_single_value(sb.data, sb.size));
    ck_assert(!tly_mp_is_single_value(sb.data, sb.size - 1)); /* truncated */

    tly_mp_init(&r, sb.data, sb.size);
    uint32_t n;
    const char *s;
    const uint8_t *b;
    bool f;
    double d;
    ck_assert(tly_mp_read_map(&r, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert(tly_mp_read_str(&r, &s, &n) && n == 1 && s[0] == 's');
    ck_assert(tly_mp_read_str(&r, &s, &n) && n == 300);
    ck_assert(tly_mp_read_str(&r, &s, &n));
    ck_assert(!tly_mp_read_str(&r, &s, &n)); /* a bin is not a str */
    ck_assert(tly_mp_read_bin(&r, &b, &n) && n == 3 && b[2] == 3);
    ck_assert(tly_mp_read_str(&r, &s, &n));
    ck_assert(tly_mp_read_array(&r, &n) && n == 4);
    ck_assert(tly_mp_read_nil(&r));
    ck_assert(tly_mp_read_bool(&r, &f) && f);
    ck_assert(tly_mp_read_float(&r, &d) && d == 1.5);
    ck_assert_int_eq(tly_mp_peek(&r), TLY_MP_EXT);
    ck_assert(tly_mp_skip(&r, NULL, NULL));
    ck_assert_uint_eq(tly_mp_remaining(&r), 0);

    /* Trailing bytes: not a single value. */
    msgpack_pack_nil(&pk);
    ck_assert(!tly_mp_is_single_value(sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);

    /* A count larger than the bytes left fails at once. */
    uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    tly_mp_init(&r, huge, sizeof huge);
    ck_assert(!tly_mp_skip(&r, NULL, NULL));
}
END_TEST

START_TEST(test_mp_depth_limit)
{
    /* TLY_MP_DEPTH_MAX nested arrays are accepted; one more is not. */
    uint8_t buf[TLY_MP_DEPTH_MAX + 2];
    memset(buf, 0x91, sizeof buf); /* fixarray of 1 */
    buf[TLY_MP_DEPTH_MAX] = 0x01;
    ck_assert(tly_mp_is_single_value(buf, TLY_MP_DEPTH_MAX + 1));
    buf[TLY_MP_DEPTH_MAX] = 0x91;
    buf[TLY_MP_DEPTH_MAX + 1] = 0x01;
    ck_assert(!tly_mp_is_single_value(buf, TLY_MP_DEPTH_MAX + 2));
}
END_TEST

/* ---------- events: round trips ---------- */

static const char *const *all_samples(size_t *n)
{
    static const char *const samples[] = {
        sample_program, sample_partner, sample_sale,   sample_return, sample_cert,
        sample_claim,   sample_close,   sample_payout, sample_adjust,
    };
    *n = sizeof samples / sizeof samples[0];
    return samples;
}

/* ---------- MessagePack writer ---------- */

/* Integers at the edges of every MessagePack integer form. */
static const int64_t mpw_ints[] = {0,
                                   1,
                                   31,
                                   32,
                                   127,
                                   128,
                                   255,
                                   256,
                                   65535,
                                   65536,
                                   INT64_C(4294967295),
                                   INT64_C(4294967296),
                                   INT64_MAX,
                                   -1,
                                   -31,
                                   -32,
                                   -33,
                                   -127,
                                   -128,
                                   -129,
                                   -32768,
                                   -32769,
                                   INT64_C(-2147483648),
                                   INT64_C(-2147483649),
                                   INT64_MIN};

/* Every edge integer as msgpack_pack_int64, _uint64 and _int32 pack it
 * into pk, and as the writer does into w. */
static void mpw_ints_both(msgpack_packer *pk, tly_mpw *w)
{
    for (size_t i = 0; i < sizeof mpw_ints / sizeof mpw_ints[0]; i++) {
        int64_t v = mpw_ints[i];
        msgpack_pack_int64(pk, v);
        tly_mpw_int(w, v);
        if (v >= 0) {
            msgpack_pack_uint64(pk, (uint64_t)v);
            tly_mpw_uint(w, (uint64_t)v);
        }
        if (v >= INT32_MIN && v <= INT32_MAX) {
            msgpack_pack_int32(pk, (int32_t)v);
            tly_mpw_int(w, v);
        }
    }
    msgpack_pack_uint64(pk, UINT64_MAX);
    tly_mpw_uint(w, UINT64_MAX);
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
    tly_mpw_uint(w, (uint64_t)INT64_MAX + 1);
}

/* The writer gives msgpack-c's bytes for every form, at the edges of each
 * (fixint, 8, 16, 32 and 64 bits either sign; fix, 8, 16 and 32-bit
 * lengths of str, bin, array and map), and the put_* level the same as
 * the writer level. */
START_TEST(test_mpw_same_bytes_as_msgpack_c)
{
    static const size_t lens[] = {0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000};
    msgpack_sbuffer want, got;
    msgpack_sbuffer_init(&want);
    msgpack_sbuffer_init(&got);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    tly_mpw w = {.b = &got};
    mpw_ints_both(&pk, &w);
    char *text = calloc(1, 70000);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        msgpack_pack_str_with_body(&pk, text, lens[i]);
        tly_mpw_str(&w, text, lens[i]);
        msgpack_pack_bin_with_body(&pk, text, lens[i]);
        tly_mpw_bin(&w, text, lens[i]);
        msgpack_pack_array(&pk, lens[i]);
        tly_mpw_array(&w, lens[i]);
        msgpack_pack_map(&pk, lens[i]);
        tly_mpw_map(&w, lens[i]);
    }
    msgpack_pack_true(&pk);
    tly_mpw_bool(&w, true);
    msgpack_pack_false(&pk);
    tly_mpw_bool(&w, false);
    msgpack_pack_nil(&pk);
    tly_mpw_nil(&w);
    ck_assert(!w.failed);
    ck_assert_uint_eq(got.size, want.size);
    ck_assert(memcmp(got.data, want.data, want.size) == 0);
    /* The put level writes the same heads at a caller's pointer. */
    char buf[TLY_MPW_HEAD_BYTES_MAX];
    msgpack_sbuffer_clear(&want);
    msgpack_pack_int64(&pk, -129);
    ck_assert_uint_eq((size_t)(tly_mpw_put_int(buf, -129) - buf), want.size);
    ck_assert(memcmp(buf, want.data, want.size) == 0);
    free(text);
    msgpack_sbuffer_destroy(&want);
    msgpack_sbuffer_destroy(&got);
}
END_TEST

START_TEST(test_event_round_trip_every_type)
{
    size_t n;
    const char *const *samples = all_samples(&n);
    for (size_t i = 0; i < n; i++) {
        json_t *j = jparse(samples[i]);
        msgpack_sbuffer sb;
        tly_field_error fe;
        ck_assert_int_eq(to_mp(j, &sb, &fe), TLY_OK);
        tly_event ev;
        tly_err err = tly_event_decode(sb.data, sb.size, now_ms(), &ev, &fe);
        ck_assert_msg(err == TLY_OK, "%s: %s", samples[i], fe.message);
        ck_assert_int_eq(ev.type, (tly_ev_type)i);
        ck_assert_str_eq(tly_ev_type_name(ev.type), json_string_value(json_object_get(j, "type")));
        ck_assert_int_eq(ev.at_ms, T0);
        /* Back to JSON: the same object, key order included. */
        json_t *back = tly_json_from_mp(sb.data, sb.size);
        ck_assert(back != NULL);
        ck_assert(json_equal(back, j));
        char *a = json_dumps(j, JSON_COMPACT), *b = json_dumps(back, JSON_COMPACT);
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        tly_ev_type t;
        tly_str id;
        ck_assert_int_eq(tly_event_peek_id(sb.data, sb.size, &t, &id), TLY_OK);
        ck_assert_int_eq(t, ev.type);
        ck_assert(tly_str_eq(id, json_string_value(json_object_get(j, "id"))));
        json_decref(back);
        json_decref(j);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

START_TEST(test_event_decoded_fields)
{
    tly_event ev;
    tly_field_error fe;
    json_t *j = jparse(sample_program);
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert(tly_str_eq(ev.program, "apex"));
    ck_assert(tly_str_eq(ev.currency, "USD"));
    ck_assert_int_eq(ev.version, 1);
    ck_assert_int_eq(ev.period_kind, TLY_PERIOD_QUARTER);
    ck_assert_uint_eq(ev.tier_count, 3);
    ck_assert(tly_str_eq(ev.tiers[2].name, "Gold"));
    ck_assert_int_eq(ev.tiers[1].min_revenue, 2800000);
    ck_assert_int_eq(ev.tiers[2].min_certs, 3);
    ck_assert_int_eq(ev.tiers[2].mdf_bps, 200);
    ck_assert_int_eq(ev.rebate_mode, TLY_REBATE_RETROACTIVE);
    ck_assert_uint_eq(ev.bracket_count, 2);
    ck_assert_int_eq(ev.brackets[1].from, 3600000);
    ck_assert_int_eq(ev.brackets[1].bps, 200);
    ck_assert_int_eq(ev.mdf_expiry_periods, 2);
    ck_assert_int_eq(ev.tier_window_periods, 3);
    json_decref(j);

    j = jparse(sample_partner);
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert(tly_str_eq(ev.partner, "acme") && tly_str_eq(ev.name, "Acme Var"));
    ck_assert(tly_str_eq(ev.region, "EMEA"));
    ck_assert_int_eq(ev.kind, TLY_KIND_VAR);
    jset(j, "region", NULL); /* optional */
    jset(j, "kind", json_string("distributor"));
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert_ptr_null(ev.region.ptr);
    ck_assert_int_eq(ev.kind, TLY_KIND_DISTRIBUTOR);
    json_decref(j);

    j = jparse(sample_return);
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert(tly_str_eq(ev.sale, "S-1"));
    ck_assert(ev.has_amount && ev.amount == 41150 && ev.qty == 1);
    json_decref(j);

    j = jparse(sample_close);
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.period_text_kind, TLY_PERIOD_QUARTER);
    ck_assert_int_eq(ev.period, 2024 * 4 + 3);
    json_decref(j);

    j = jparse(sample_payout);
    jset(j, "period", json_string("2024-12"));
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.period_text_kind, TLY_PERIOD_MONTH);
    ck_assert_int_eq(ev.period, 2024 * 12 + 11);
    json_decref(j);

    j = jparse(sample_adjust);
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.account, TLY_ACCOUNT_MDF);
    ck_assert_int_eq(ev.amount, -2500);
    ck_assert(tly_str_eq(ev.reason, "goodwill correction"));
    json_decref(j);

    j = jparse(sample_cert);
    static const char *const acts[] = {"earned", "expired", "revoked"};
    for (int i = 0; i < 3; i++) {
        jset(j, "action", json_string(acts[i]));
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
        ck_assert_int_eq(ev.action, TLY_ACT_EARNED + i);
        ck_assert_str_eq(tly_action_name(ev.action), acts[i]);
    }
    json_decref(j);
}
END_TEST

START_TEST(test_event_at_iso_equals_int)
{
    /* The same event with `at` as int and as ISO text gives identical bytes
     * and an identical decode. */
    json_t *a = jparse(sample_sale);
    json_t *b = jparse(sample_sale);
    jset(b, "at", json_string("2025-01-01T01:00:00+01:00"));
    msgpack_sbuffer sa, sbb;
    ck_assert_int_eq(to_mp(a, &sa, NULL), TLY_OK);
    ck_assert_int_eq(to_mp(b, &sbb, NULL), TLY_OK);
    ck_assert_uint_eq(sa.size, sbb.size);
    ck_assert(memcmp(sa.data, sbb.data, sa.size) == 0);
    tly_event ea, eb;
    ck_assert_int_eq(tly_event_decode(sa.data, sa.size, now_ms(), &ea, NULL), TLY_OK);
    ck_assert_int_eq(tly_event_decode(sbb.data, sbb.size, now_ms(), &eb, NULL), TLY_OK);
    ck_assert_int_eq(ea.at_ms, eb.at_ms);
    msgpack_sbuffer_destroy(&sa);
    msgpack_sbuffer_destroy(&sbb);
    /* A bad ISO string is bad_field on `at`. */
    tly_field_error fe;
    jset(b, "at", json_string("2026-02-30"));
    ck_assert_int_eq(to_mp(b, &sbb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "at");
    ck_assert_uint_eq(sbb.size, 0); /* nothing appended */
    msgpack_sbuffer_destroy(&sbb);
    json_decref(a);
    json_decref(b);
}
END_TEST

START_TEST(test_event_vectors_all_decode)
{
    char *path = tu_vector("seed101-events.jsonl");
    size_t len;
    char *text = tu_read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    int64_t rec = now_ms();
    size_t lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *r = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        ck_assert_msg(r != NULL, "line %zu: %s", lines + 1, je.text);
        tly_event ev;
        tly_field_error fe = {"", ""};
        tly_err err = decode_json(json_object_get(r, "event"), rec, &ev, &fe);
        ck_assert_msg(err == TLY_OK, "line %zu: %s %s", lines + 1, tly_err_name(err), fe.message);
        json_decref(r);
        lines++;
    }
    ck_assert_uint_eq(lines, 3176);
    free(text);
    free(path);
}
END_TEST

/* ---------- events: structural failures ---------- */

static tly_err decode_bytes(const void *buf, size_t len, tly_field_error *fe)
{
    tly_event ev;
    return tly_event_decode(buf, len, now_ms(), &ev, fe);
}

START_TEST(test_event_malformed)
{
    tly_field_error fe;
    ck_assert_int_eq(decode_bytes("", 0, &fe), TLY_MALFORMED);
    ck_assert_int_eq(decode_bytes("\x93\x01\x02\x03", 4, &fe), TLY_MALFORMED); /* array */
    ck_assert_int_eq(decode_bytes("\xa3"
                                  "abc",
                                  4, &fe),
                     TLY_MALFORMED);                                       /* str */
    ck_assert_int_eq(decode_bytes("\x81\xa1", 2, &fe), TLY_MALFORMED);     /* truncated */
    ck_assert_int_eq(decode_bytes("\x81\x01\x01", 3, &fe), TLY_MALFORMED); /* int key */
    ck_assert_int_eq(decode_bytes("\x80\xc0", 2, &fe), TLY_MALFORMED);     /* trailing */
    ck_assert_int_eq(decode_bytes("\xc1", 1, &fe), TLY_MALFORMED);         /* reserved */
    ck_assert_int_eq(decode_bytes("\x80", 1, &fe), TLY_MISSING_FIELD);     /* {} */
    ck_assert_str_eq(fe.field, "type");

    /* Values nest TLY_EVENT_DEPTH_MAX levels (the event is level 1, the int
     * at the bottom counts): at the limit it is fine (an unknown key holds
     * the nesting), one level more is bad_field naming the key, and past
     * what the reader reads (TLY_MP_DEPTH_MAX containers) malformed. More in
     * test_schemas_values.c. */
    json_t *j = jparse(sample_sale);
    json_t *deep = json_integer(1);
    for (unsigned i = 0; i < TLY_EVENT_DEPTH_MAX - 2; i++) {
        json_t *a = json_array();
        json_array_append_new(a, deep);
        deep = a;
    }
    json_object_set(j, "x-deep", deep);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ck_assert_int_eq(to_mp(j, &sb, &fe), TLY_OK);
    ck_assert_int_eq(decode_bytes(sb.data, sb.size, &fe), TLY_OK);
    msgpack_sbuffer_destroy(&sb);
    /* One level more: the JSON converter refuses it as the decoder does. */
    json_t *a = json_array();
    json_array_append_new(a, deep);
    json_object_set_new(j, "x-deep", a);
    ck_assert_int_eq(to_mp(j, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "x-deep");
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);

    uint8_t buf[64];
    size_t n = 0;
    buf[n++] = 0x81;
    buf[n++] = 0xa1;
    buf[n++] = 'x';
    for (unsigned i = 0; i < TLY_MP_DEPTH_MAX; i++)
        buf[n++] = 0x91;
    buf[n++] = 0x01;
    ck_assert_int_eq(decode_bytes(buf, n, &fe), TLY_MALFORMED);
}
END_TEST

START_TEST(test_event_type_errors)
{
    expect(sample_sale, "type", NULL, TLY_MISSING_FIELD, "type");
    expect(sample_sale, "type", "null", TLY_MISSING_FIELD, "type");
    expect(sample_sale, "type", "7", TLY_BAD_FIELD, "type");
    expect(sample_sale, "type", "\"refund\"", TLY_BAD_TYPE, "type");
    expect(sample_sale, "type", "\"Sale\"", TLY_BAD_TYPE, "type");
    tly_ev_type t;
    ck_assert_int_eq(tly_ev_type_parse("payout", 6, &t), TLY_OK);
    ck_assert_int_eq(t, TLY_EV_PAYOUT);
    ck_assert_int_eq(tly_ev_type_parse("payouts", 7, &t), TLY_BAD_TYPE);
}
END_TEST

START_TEST(test_event_unknown_keys_ignored)
{
    expect(sample_sale, "x-origin", "{\"pos\":[1,2,\"three\"]}", TLY_OK, NULL);
    expect(sample_sale, "reason", "12", TLY_OK, NULL); /* not a sale field */
    /* Optional fields are still type-checked when present. */
    expect(sample_partner, "region", "5", TLY_BAD_FIELD, "region");
    expect(sample_claim, "activity", "[\"webinar\"]", TLY_BAD_FIELD, "activity");
    expect(sample_claim, "reason", "false", TLY_BAD_FIELD, "reason");
    /* An optional field may be null. */
    expect(sample_partner, "region", "null", TLY_OK, NULL);
    expect(sample_claim, "activity", "null", TLY_OK, NULL);
}
END_TEST

START_TEST(test_event_duplicate_keys)
{
    /* {"type":"sale", ..., "amount": 1, "amount": 2} → bad_field amount. */
    json_t *j = jparse(sample_sale);
    msgpack_sbuffer sb;
    ck_assert_int_eq(to_mp(j, &sb, NULL), TLY_OK);
    /* Bump the fixmap count and append a second "amount". */
    ck_assert_int_eq((uint8_t)sb.data[0], 0x88);
    sb.data[0] = (char)0x89;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, "amount", 6);
    msgpack_pack_int(&pk, 2);
    tly_field_error fe;
    ck_assert_int_eq(decode_bytes(sb.data, sb.size, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "amount");
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);

    /* A repeated key inside a tier names the tier's field. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    j = jparse(sample_program);
    json_object_del(j, "tiers");
    ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
    ck_assert_int_eq((uint8_t)sb.data[0], 0x8a);
    sb.data[0] = (char)0x8b;
    msgpack_pack_str_with_body(&pk, "tiers", 5);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "A", 1);
    msgpack_pack_str_with_body(&pk, "min_revenue", 11);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_str_with_body(&pk, "min_certs", 9);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_str_with_body(&pk, "mdf_bps", 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "mdf_bps", 7);
    msgpack_pack_int(&pk, 2);
    ck_assert_int_eq(decode_bytes(sb.data, sb.size, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "tiers[0].mdf_bps");
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
}
END_TEST

/* Every required field of every type: absent → missing_field, wrong
 * MessagePack type → bad_field, with `field` naming it. */
START_TEST(test_event_required_fields)
{
    static const struct {
        const char *const *sample;
        const char *path;
        const char *field;
        const char *wrong; /* a value of the wrong type */
    } req[] = {
        {&sample_sale, "id", "id", "5"},
        {&sample_sale, "at", "at", "\"yesterday\""},
        {&sample_program, "program", "program", "1"},
        {&sample_program, "version", "version", "\"1\""},
        {&sample_program, "currency", "currency", "840"},
        {&sample_program, "period", "period", "4"},
        {&sample_program, "tiers", "tiers", "{}"},
        {&sample_program, "tiers/1/name", "tiers[1].name", "[]"},
        {&sample_program, "tiers/1/min_revenue", "tiers[1].min_revenue", "\"2800000\""},
        {&sample_program, "tiers/1/min_certs", "tiers[1].min_certs", "true"},
        {&sample_program, "tiers/2/mdf_bps", "tiers[2].mdf_bps", "\"200\""},
        {&sample_program, "rebate", "rebate", "[]"},
        {&sample_program, "rebate/mode", "rebate.mode", "1"},
        {&sample_program, "rebate/brackets", "rebate.brackets", "{}"},
        {&sample_program, "rebate/brackets/1/from", "rebate.brackets[1].from", "\"x\""},
        {&sample_program, "rebate/brackets/1/bps", "rebate.brackets[1].bps", "false"},
        {&sample_program, "mdf_expiry_periods", "mdf_expiry_periods", "\"2\""},
        {&sample_program, "tier_window_periods", "tier_window_periods", "[2]"},
        {&sample_partner, "partner", "partner", "1"},
        {&sample_partner, "name", "name", "1"},
        {&sample_partner, "program", "program", "1"},
        {&sample_partner, "kind", "kind", "1"},
        {&sample_sale, "partner", "partner", "1"},
        {&sample_sale, "sku", "sku", "1"},
        {&sample_sale, "qty", "qty", "\"3\""},
        {&sample_sale, "amount", "amount", "\"123450\""},
        {&sample_sale, "currency", "currency", "1"},
        {&sample_return, "partner", "partner", "1"},
        {&sample_return, "sale", "sale", "1"},
        {&sample_return, "qty", "qty", "\"1\""},
        {&sample_return, "amount", "amount", "\"1\""},
        {&sample_return, "currency", "currency", "1"},
        {&sample_cert, "partner", "partner", "1"},
        {&sample_cert, "person", "person", "1"},
        {&sample_cert, "cert", "cert", "1"},
        {&sample_cert, "action", "action", "1"},
        {&sample_claim, "partner", "partner", "1"},
        {&sample_claim, "claim", "claim", "1"},
        {&sample_claim, "action", "action", "1"},
        {&sample_claim, "amount", "amount", "\"1\""},
        {&sample_close, "program", "program", "1"},
        {&sample_close, "period", "period", "202404"},
        {&sample_payout, "partner", "partner", "1"},
        {&sample_payout, "period", "period", "1"},
        {&sample_payout, "amount", "amount", "\"1\""},
        {&sample_adjust, "partner", "partner", "1"},
        {&sample_adjust, "account", "account", "1"},
        {&sample_adjust, "amount", "amount", "\"1\""},
        {&sample_adjust, "reason", "reason", "1"},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        expect(*req[i].sample, req[i].path, NULL, TLY_MISSING_FIELD, req[i].field);
        expect(*req[i].sample, req[i].path, "null", TLY_MISSING_FIELD, req[i].field);
        expect(*req[i].sample, req[i].path, req[i].wrong, TLY_BAD_FIELD, req[i].field);
    }
}
END_TEST

START_TEST(test_event_enums_and_patterns)
{
    static const expect_case enums[] = {
        {&sample_program, "period", "\"year\"", TLY_BAD_FIELD, "period"},
        {&sample_program, "period", "\"month\"", TLY_OK, NULL},
        {&sample_program, "rebate/mode", "\"flat\"", TLY_BAD_FIELD, "rebate.mode"},
        {&sample_program, "rebate/mode", "\"incremental\"", TLY_OK, NULL},
        {&sample_partner, "kind", "\"reseller\"", TLY_BAD_FIELD, "kind"},
    };
    expect_cases(enums, sizeof enums / sizeof enums[0]);
    static const char *const kinds[] = {"var", "msp",         "si",        "oem",
                                        "isv", "distributor", "consultant"};
    for (int i = 0; i < 7; i++) {
        char v[32];
        snprintf(v, sizeof v, "\"%s\"", kinds[i]);
        expect(sample_partner, "kind", v, TLY_OK, NULL);
        ck_assert_str_eq(tly_partner_kind_name((tly_partner_kind)i), kinds[i]);
    }
    static const expect_case patterns[] = {
        {&sample_cert, "action", "\"submit\"", TLY_BAD_FIELD, "action"},
        {&sample_claim, "action", "\"earned\"", TLY_BAD_FIELD, "action"},
        {&sample_adjust, "account", "\"tier\"", TLY_BAD_FIELD, "account"},
        {&sample_adjust, "account", "\"rebate\"", TLY_OK, NULL},
        /* currency [A-Z]{3} */
        {&sample_sale, "currency", "\"usd\"", TLY_BAD_FIELD, "currency"},
        {&sample_sale, "currency", "\"US\"", TLY_BAD_FIELD, "currency"},
        {&sample_sale, "currency", "\"USDX\"", TLY_BAD_FIELD, "currency"},
        {&sample_program, "currency", "\"EUR\"", TLY_OK, NULL},
        /* id pattern [A-Za-z0-9._:-] */
        {&sample_sale, "id", "\"a.b_c:d-E9\"", TLY_OK, NULL},
        {&sample_sale, "id", "\"a b\"", TLY_BAD_FIELD, "id"},
        {&sample_sale, "id", "\"a/b\"", TLY_BAD_FIELD, "id"},
        {&sample_sale, "id", "\"caf\\u00e9\"", TLY_BAD_FIELD, "id"},
        {&sample_sale, "id", "\"\"", TLY_BAD_FIELD, "id"},
        {&sample_return, "sale", "\"S 1\"", TLY_BAD_FIELD, "sale"},
        /* period text */
        {&sample_close, "period", "\"2026-Q5\"", TLY_BAD_FIELD, "period"},
        {&sample_close, "period", "\"2026-13\"", TLY_BAD_FIELD, "period"},
        {&sample_close, "period", "\"1999-12\"", TLY_BAD_FIELD, "period"},
        {&sample_close, "period", "\"2026-7\"", TLY_BAD_FIELD, "period"},
        {&sample_payout, "period", "\"2026-07\"", TLY_OK, NULL},
        /* names are UTF-8 */
        {&sample_partner, "name", "\"Caf\\u00e9 \\u6771\\u4eac\"", TLY_OK, NULL},
        {&sample_partner, "name", "\"\"", TLY_BAD_FIELD, "name"},
    };
    expect_cases(patterns, sizeof patterns / sizeof patterns[0]);
}
END_TEST

START_TEST(test_event_invalid_utf8_name)
{
    /* A name of bytes that are not UTF-8 is bad_field (built by hand, JSON
     * cannot carry it). */
    json_t *j = jparse(sample_sale);
    jset(j, "sku", json_string("QQ"));
    msgpack_sbuffer sb;
    ck_assert_int_eq(to_mp(j, &sb, NULL), TLY_OK);
    char *q = NULL;
    for (size_t i = 0; i + 1 < sb.size && !q; i++)
        if (sb.data[i] == 'Q' && sb.data[i + 1] == 'Q')
            q = sb.data + i;
    ck_assert_ptr_nonnull(q);
    q[0] = (char)0xc3; /* a lead byte followed by an ASCII byte */
    tly_field_error fe;
    ck_assert_int_eq(decode_bytes(sb.data, sb.size, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "sku");
    /* And tly_json_from_mp still shows it, with U+FFFD. */
    json_t *back = tly_json_from_mp(sb.data, sb.size);
    ck_assert_ptr_nonnull(back);
    ck_assert_str_eq(json_string_value(json_object_get(back, "sku")), "\xef\xbf\xbdQ");
    json_decref(back);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    ck_assert(tly_utf8_valid("\xe2\x82\xac", 3));
    ck_assert(!tly_utf8_valid("\xc0\xaf", 2));         /* overlong */
    ck_assert(!tly_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!tly_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!tly_utf8_valid("\xe2\x82", 2));         /* truncated */
}
END_TEST

/* ---------- events: limits at their edges ---------- */

START_TEST(test_limit_id_bytes)
{
    expect_val(sample_sale, "id", jrepeat('a', TLY_ID_BYTES_MAX), TLY_OK, NULL);
    expect_val(sample_sale, "id", jrepeat('a', TLY_ID_BYTES_MAX + 1), TLY_BAD_FIELD, "id");
    expect_val(sample_return, "sale", jrepeat('s', TLY_ID_BYTES_MAX), TLY_OK, NULL);
    expect_val(sample_return, "sale", jrepeat('s', TLY_ID_BYTES_MAX + 1), TLY_BAD_FIELD, "sale");
}
END_TEST

START_TEST(test_limit_name_and_text_bytes)
{
    static const struct {
        const char *const *sample;
        const char *path;
        const char *field;
        unsigned max;
    } f[] = {
        {&sample_program, "program", "program", TLY_NAME_BYTES_MAX},
        {&sample_program, "tiers/1/name", "tiers[1].name", TLY_NAME_BYTES_MAX},
        {&sample_partner, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_partner, "name", "name", TLY_NAME_BYTES_MAX},
        {&sample_partner, "program", "program", TLY_NAME_BYTES_MAX},
        {&sample_partner, "region", "region", TLY_NAME_BYTES_MAX},
        {&sample_sale, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_sale, "sku", "sku", TLY_NAME_BYTES_MAX},
        {&sample_return, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_cert, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_cert, "person", "person", TLY_NAME_BYTES_MAX},
        {&sample_cert, "cert", "cert", TLY_NAME_BYTES_MAX},
        {&sample_claim, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_claim, "claim", "claim", TLY_NAME_BYTES_MAX},
        {&sample_close, "program", "program", TLY_NAME_BYTES_MAX},
        {&sample_payout, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_adjust, "partner", "partner", TLY_NAME_BYTES_MAX},
        {&sample_claim, "activity", "activity", TLY_TEXT_BYTES_MAX},
        {&sample_claim, "reason", "reason", TLY_TEXT_BYTES_MAX},
        {&sample_adjust, "reason", "reason", TLY_TEXT_BYTES_MAX},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        expect_val(*f[i].sample, f[i].path, jrepeat('n', f[i].max), TLY_OK, NULL);
        expect_val(*f[i].sample, f[i].path, jrepeat('n', f[i].max + 1), TLY_BAD_FIELD, f[i].field);
        expect_val(*f[i].sample, f[i].path, jrepeat('n', 1), TLY_OK, NULL);
        expect_val(*f[i].sample, f[i].path, jrepeat('n', 0), TLY_BAD_FIELD, f[i].field);
    }
}
END_TEST

/* An int field at its bounds: lo and hi accepted, lo-1 and hi+1 rejected. */
static void expect_int_range(const char *sample, const char *path, const char *field, int64_t lo,
                             int64_t hi)
{
    expect_val(sample, path, json_integer(lo), TLY_OK, NULL);
    expect_val(sample, path, json_integer(hi), TLY_OK, NULL);
    expect_val(sample, path, json_integer(lo - 1), TLY_BAD_FIELD, field);
    expect_val(sample, path, json_integer(hi + 1), TLY_BAD_FIELD, field);
}

START_TEST(test_limit_amounts_and_ranges)
{
    expect_int_range(sample_sale, "amount", "amount", 1, TLY_AMOUNT_MAX);
    expect_int_range(sample_return, "amount", "amount", 1, TLY_AMOUNT_MAX);
    expect_int_range(sample_claim, "amount", "amount", 1, TLY_AMOUNT_MAX);
    expect_int_range(sample_payout, "amount", "amount", 1, TLY_AMOUNT_MAX);
    expect_int_range(sample_sale, "qty", "qty", 1, TLY_QTY_MAX);
    expect_int_range(sample_return, "qty", "qty", 1, TLY_QTY_MAX);
    expect_int_range(sample_program, "version", "version", 1, TLY_VERSION_MAX);
    expect_int_range(sample_program, "mdf_expiry_periods", "mdf_expiry_periods", 1,
                     TLY_PERIODS_SPAN_MAX);
    expect_int_range(sample_program, "tier_window_periods", "tier_window_periods", 1,
                     TLY_PERIODS_SPAN_MAX);
    expect_int_range(sample_program, "tiers/1/mdf_bps", "tiers[1].mdf_bps", 0, TLY_BPS_MAX);
    expect_int_range(sample_program, "rebate/brackets/0/bps", "rebate.brackets[0].bps", 0,
                     TLY_BPS_MAX);
    /* The last tier / bracket may go up to the limit; the first is pinned at 0. */
    expect_int_range(sample_program, "tiers/2/min_revenue", "tiers[2].min_revenue", 2800000,
                     TLY_AMOUNT_MAX);
    expect_int_range(sample_program, "tiers/2/min_certs", "tiers[2].min_certs", 1, TLY_CERTS_MAX);
    expect_int_range(sample_program, "rebate/brackets/1/from", "rebate.brackets[1].from", 1,
                     TLY_AMOUNT_MAX);
    /* A uint64 beyond int64 is out of range, not a crash (JSON cannot hold
     * it: append it by hand to a sale without amount). */
    tly_field_error fe;
    json_t *j = jparse(sample_sale);
    msgpack_sbuffer sb;
    jset(j, "amount", NULL);
    ck_assert_int_eq(to_mp(j, &sb, NULL), TLY_OK);
    ck_assert_int_eq((uint8_t)sb.data[0], 0x87);
    sb.data[0] = (char)0x88;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, "amount", 6);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    ck_assert_int_eq(decode_bytes(sb.data, sb.size, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "amount");
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    /* A real is refused by the JSON converter itself. */
    j = jparse(sample_sale);
    jset(j, "amount", json_real(1.5));
    ck_assert_int_eq(to_mp(j, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "amount");
    ck_assert_uint_eq(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    j = jparse(sample_program);
    jset(j, "tiers/1/mdf_bps", json_real(150.0));
    ck_assert_int_eq(to_mp(j, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "tiers[1].mdf_bps");
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
}
END_TEST

START_TEST(test_limit_adjust_signed_amount)
{
    expect_val(sample_adjust, "amount", json_integer(-TLY_AMOUNT_MAX), TLY_OK, NULL);
    expect_val(sample_adjust, "amount", json_integer(TLY_AMOUNT_MAX), TLY_OK, NULL);
    expect_val(sample_adjust, "amount", json_integer(-1), TLY_OK, NULL);
    expect_val(sample_adjust, "amount", json_integer(1), TLY_OK, NULL);
    expect_val(sample_adjust, "amount", json_integer(0), TLY_BAD_FIELD, "amount");
    expect_val(sample_adjust, "amount", json_integer(-TLY_AMOUNT_MAX - 1), TLY_BAD_FIELD, "amount");
    expect_val(sample_adjust, "amount", json_integer(TLY_AMOUNT_MAX + 1), TLY_BAD_FIELD, "amount");
}
END_TEST

START_TEST(test_limit_at_range)
{
    /* at in [TLY_AT_MIN_MS, recorded + TLY_AT_FUTURE_MS] */
    int64_t rec = INT64_C(1767225600000); /* 2026-01-01 */
    static const struct {
        int64_t at;
        tly_err want;
    } cases[] = {
        {TLY_AT_MIN_MS, TLY_OK},
        {TLY_AT_MIN_MS - 1, TLY_BAD_FIELD},
        {INT64_C(1767225600000) + TLY_AT_FUTURE_MS, TLY_OK},
        {INT64_C(1767225600000) + TLY_AT_FUTURE_MS + 1, TLY_BAD_FIELD},
        {-1, TLY_BAD_FIELD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = jparse(sample_sale);
        jset(j, "at", json_integer(cases[i].at));
        tly_event ev;
        tly_field_error fe;
        ck_assert_int_eq(decode_json(j, rec, &ev, &fe), cases[i].want);
        if (cases[i].want != TLY_OK)
            ck_assert_str_eq(fe.field, "at");
        json_decref(j);
    }
    /* 2000-01-01 is the documented floor. */
    int64_t ms;
    ck_assert_int_eq(tly_time_parse("2000-01-01", 10, &ms), TLY_OK);
    ck_assert_int_eq(ms, TLY_AT_MIN_MS);
    /* A recorded time near INT64_MAX does not overflow the bound. */
    json_t *j = jparse(sample_sale);
    tly_event ev;
    ck_assert_int_eq(decode_json(j, INT64_MAX, &ev, NULL), TLY_OK);
    json_decref(j);
}
END_TEST

/* A program whose tiers (or brackets) array holds n copies. */
static json_t *program_with(const char *key, size_t n)
{
    json_t *j = jparse(sample_program);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        if (strcmp(key, "tiers") == 0) {
            char name[32];
            snprintf(name, sizeof name, "T%u", (unsigned)i);
            json_object_set_new(o, "name", json_string(name));
            json_object_set_new(o, "min_revenue", json_integer((json_int_t)i * 1000));
            json_object_set_new(o, "min_certs", json_integer((json_int_t)i));
            json_object_set_new(o, "mdf_bps", json_integer(100));
            json_array_append_new(arr, o);
        } else {
            json_object_set_new(o, "from", json_integer((json_int_t)i * 1000));
            json_object_set_new(o, "bps", json_integer(100));
            json_array_append_new(arr, o);
        }
    }
    jset(j, strcmp(key, "tiers") == 0 ? "tiers" : "rebate/brackets", arr);
    return j;
}

static tly_err decode_program_with(const char *key, size_t n, tly_field_error *fe)
{
    json_t *j = program_with(key, n);
    tly_event ev;
    tly_err err = decode_json(j, now_ms(), &ev, fe);
    if (err == TLY_OK)
        ck_assert_uint_eq(strcmp(key, "tiers") == 0 ? ev.tier_count : ev.bracket_count, n);
    json_decref(j);
    return err;
}

START_TEST(test_limit_tiers_and_brackets_count)
{
    tly_field_error fe;
    ck_assert_int_eq(decode_program_with("tiers", TLY_TIERS_MAX, &fe), TLY_OK);
    ck_assert_int_eq(decode_program_with("tiers", TLY_TIERS_MAX + 1, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "tiers");
    ck_assert_int_eq(decode_program_with("tiers", 1, &fe), TLY_OK);
    ck_assert_int_eq(decode_program_with("tiers", 0, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "tiers");
    ck_assert_int_eq(decode_program_with("brackets", TLY_BRACKETS_MAX, &fe), TLY_OK);
    ck_assert_int_eq(decode_program_with("brackets", TLY_BRACKETS_MAX + 1, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "rebate.brackets");
    ck_assert_int_eq(decode_program_with("brackets", 1, &fe), TLY_OK);
    ck_assert_int_eq(decode_program_with("brackets", 0, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "rebate.brackets");
}
END_TEST

START_TEST(test_g6_tier_and_bracket_order)
{
    /* [G6] first tier is 0/0 */
    static const expect_case order[] = {
        {&sample_program, "tiers/0/min_revenue", "1", TLY_BAD_FIELD, "tiers[0].min_revenue"},
        {&sample_program, "tiers/0/min_certs", "1", TLY_BAD_FIELD, "tiers[0].min_certs"},
        /* [G6] ascending: a later tier may not need less revenue or fewer certs */
        {&sample_program, "tiers/2/min_revenue", "2799999", TLY_BAD_FIELD, "tiers[2].min_revenue"},
        {&sample_program, "tiers/2/min_certs", "0", TLY_BAD_FIELD, "tiers[2].min_certs"},
        /* equal thresholds are allowed (non-decreasing); [G7] the last wins */
        {&sample_program, "tiers/2/min_revenue", "2800000", TLY_OK, NULL},
        {&sample_program, "tiers/2/min_certs", "1", TLY_OK, NULL},
        /* unique tier names */
        {&sample_program, "tiers/2/name", "\"Authorized\"", TLY_BAD_FIELD, "tiers[2].name"},
        /* a tier that is not a map */
        {&sample_program, "tiers/1", "7", TLY_BAD_FIELD, "tiers[1]"},
        /* [G6] first bracket from 0, strictly ascending */
        {&sample_program, "rebate/brackets/0/from", "1", TLY_BAD_FIELD, "rebate.brackets[0].from"},
        {&sample_program, "rebate/brackets/1/from", "0", TLY_BAD_FIELD, "rebate.brackets[1].from"},
        {&sample_program, "rebate/brackets/1", "[]", TLY_BAD_FIELD, "rebate.brackets[1]"},
    };
    expect_cases(order, sizeof order / sizeof order[0]);
    json_t *j = program_with("brackets", 3);
    jset(j, "rebate/brackets/2/from", json_integer(1000)); /* equal to [1] */
    tly_event ev;
    tly_field_error fe;
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "rebate.brackets[2].from");
    json_decref(j);
}
END_TEST

START_TEST(test_c3_claim_amount)
{
    /* [C3] amount is required for submit, approve and pay ... */
    static const char *const need[] = {"\"submit\"", "\"approve\"", "\"pay\""};
    for (int i = 0; i < 3; i++) {
        json_t *j = jparse(sample_claim);
        jset(j, "action", jparse(need[i]));
        jset(j, "amount", NULL);
        tly_event ev;
        tly_field_error fe;
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_MISSING_FIELD);
        ck_assert_str_eq(fe.field, "amount");
        jset(j, "amount", json_integer(0));
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_BAD_FIELD);
        jset(j, "amount", json_integer(7));
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, &fe), TLY_OK);
        ck_assert(ev.has_amount && ev.amount == 7);
        json_decref(j);
    }
    /* ... and ignored (not validated) for cancel and reject. */
    static const char *const skip[] = {"\"cancel\"", "\"reject\""};
    for (int i = 0; i < 2; i++) {
        json_t *j = jparse(sample_claim);
        jset(j, "action", jparse(skip[i]));
        jset(j, "amount", json_string("not a number"));
        tly_event ev;
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, NULL), TLY_OK);
        ck_assert(!ev.has_amount);
        ck_assert_int_eq(ev.action, i == 0 ? TLY_ACT_CANCEL : TLY_ACT_REJECT);
        jset(j, "amount", NULL);
        ck_assert_int_eq(decode_json(j, now_ms(), &ev, NULL), TLY_OK);
        json_decref(j);
    }
    /* reject carries an optional reason */
    json_t *j = jparse(sample_claim);
    jset(j, "action", json_string("reject"));
    jset(j, "reason", json_string("no proof of performance"));
    tly_event ev;
    ck_assert_int_eq(decode_json(j, now_ms(), &ev, NULL), TLY_OK);
    ck_assert(tly_str_eq(ev.reason, "no proof of performance"));
    json_decref(j);
}
END_TEST

/* Decodes the event j into *ev (whatever it holds) from bytes kept in *sb
 * (the caller destroys it), so that two decodes of one event borrow the
 * same strings and compare byte for byte. */
static tly_err decode_kept(const json_t *j, msgpack_sbuffer *sb, tly_event *ev)
{
    ck_assert_int_eq(to_mp(j, sb, NULL), TLY_OK);
    return tly_event_decode(sb->data, sb->size, now_ms(), ev, NULL);
}

/* The bytes of ev but for the tier and bracket arrays, which a non-program
 * event leaves as they were. */
static void assert_same_head(const tly_event *a, const tly_event *b)
{
    const size_t tiers = offsetof(tly_event, tiers), tiers_end = tiers + sizeof a->tiers;
    const size_t brackets = offsetof(tly_event, brackets),
                 brackets_end = brackets + sizeof a->brackets;
    const char *pa = (const char *)a, *pb = (const char *)b;
    ck_assert_mem_eq(pa, pb, tiers);
    ck_assert_mem_eq(pa + tiers_end, pb + tiers_end, brackets - tiers_end);
    ck_assert_mem_eq(pa + brackets_end, pb + brackets_end, sizeof *a - brackets_end);
}

/* A failed decode may leave part of an event behind (the contract: the
 * output is read on success only); nothing of it may show in the next
 * event decoded into the same struct. */
START_TEST(test_event_decode_after_failure)
{
    static tly_event used, fresh; /* static: 5.5 KB each */
    msgpack_sbuffer bad_sb, good_sb, prog_sb, bad_prog_sb;
    json_t *bad = jparse(sample_sale), *good = jparse(sample_sale);
    jset(bad, "currency", json_string("usd")); /* fails after id, at, partner, sku */
    json_t *prog = jparse(sample_program), *bad_prog = jparse(sample_program);
    jset(bad_prog, "tiers/2/mdf_bps", json_string("x")); /* fails within the tiers */

    memset(&used, 0x5a, sizeof used);
    ck_assert_int_eq(decode_kept(bad, &bad_sb, &used), TLY_BAD_FIELD);
    ck_assert_int_eq(decode_kept(good, &good_sb, &used), TLY_OK);
    memset(&fresh, 0, sizeof fresh);
    ck_assert_int_eq(tly_event_decode(good_sb.data, good_sb.size, now_ms(), &fresh, NULL), TLY_OK);
    assert_same_head(&used, &fresh);

    ck_assert_int_eq(decode_kept(bad_prog, &bad_prog_sb, &used), TLY_BAD_FIELD);
    ck_assert_int_eq(tly_event_decode(good_sb.data, good_sb.size, now_ms(), &used, NULL), TLY_OK);
    assert_same_head(&used, &fresh);
    ck_assert_int_eq(used.tier_count, 0);

    memset(&used, 0x5a, sizeof used);
    ck_assert_int_eq(tly_event_decode(bad_prog_sb.data, bad_prog_sb.size, now_ms(), &used, NULL),
                     TLY_BAD_FIELD);
    ck_assert_int_eq(decode_kept(prog, &prog_sb, &used), TLY_OK);
    memset(&fresh, 0x33, sizeof fresh);
    ck_assert_int_eq(tly_event_decode(prog_sb.data, prog_sb.size, now_ms(), &fresh, NULL), TLY_OK);
    ck_assert_mem_eq(&used, &fresh, sizeof used); /* a program is written whole */

    msgpack_sbuffer *sbs[] = {&bad_sb, &good_sb, &prog_sb, &bad_prog_sb};
    for (size_t i = 0; i < sizeof sbs / sizeof sbs[0]; i++)
        msgpack_sbuffer_destroy(sbs[i]);
    json_t *js[] = {bad, good, prog, bad_prog};
    for (size_t i = 0; i < sizeof js / sizeof js[0]; i++)
        json_decref(js[i]);
}
END_TEST

/* ---------- periods and time ---------- */

static int64_t iso(const char *s)
{
    int64_t ms = 0;
    ck_assert_msg(tly_time_parse(s, strlen(s), &ms) == TLY_OK, "parse %s", s);
    return ms;
}

START_TEST(test_time_parse)
{
    ck_assert_int_eq(iso("1970-01-01T00:00:00Z"), 0);
    ck_assert_int_eq(iso("2025-01-01T00:00:00Z"), T0);
    ck_assert_int_eq(iso("2025-01-01T00:00:00.000Z"), T0);
    ck_assert_int_eq(iso("2025-01-01T00:00:00.5Z"), T0 + 500);
    ck_assert_int_eq(iso("2025-01-01T00:00:00.123456Z"), T0 + 123); /* truncated */
    ck_assert_int_eq(iso("2025-01-01T00:00Z"), T0);
    ck_assert_int_eq(iso("2025-01-01T02:00:00+02:00"), T0);
    ck_assert_int_eq(iso("2024-12-31T19:00:00-05:00"), T0);
    ck_assert_int_eq(iso("2025-01-01T05:30:00+0530"), T0);
    ck_assert_int_eq(iso("2025-01-01T00:00:00"), T0); /* [P6] no offset is UTC */
    ck_assert_int_eq(iso("2025-01-01"), T0);          /* [D18] date only: midnight UTC */
    ck_assert_int_eq(iso("2025-01-01 00:00:00Z"), T0);
    ck_assert_int_eq(iso("2024-02-29T12:00:00Z"), INT64_C(1709208000000)); /* leap day */
    ck_assert_int_eq(iso("2000-03-01"), INT64_C(951868800000));
    static const char *const bad[] = {
        "",
        "2025",
        "2025-01",
        "2025-1-01",
        "2026-02-29",
        "2026-02-30",
        "2025-04-31",
        "2025-13-01",
        "2025-00-10",
        "2025-01-00",
        "1900-02-29",
        "2025-01-01T24:00:00Z",
        "2025-01-01T12:60:00Z",
        "2025-01-01T12:00:60Z",
        "2025-01-01T12Z",
        "2025-01-01T",
        "2025-01-01T12:00:00.Z",
        "2025-01-01T12:00:00+25:00",
        "2025-01-01T12:00:00+02:60",
        "2025-01-01T12:00:00 Z",
        "2025-01-01x",
        "2025-01-01T12:00:00Zjunk",
        "20250101",
        "2025-01-01T12:00:00+2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 77;
        ck_assert_msg(tly_time_parse(bad[i], strlen(bad[i]), &ms) == TLY_BAD_FIELD, "accepted '%s'",
                      bad[i]);
        ck_assert_int_eq(ms, 77);
    }
    /* Length is honoured: no reading past len. */
    int64_t ms;
    ck_assert_int_eq(tly_time_parse("2025-01-01T00:00:00Zxyz", 20, &ms), TLY_OK);
    ck_assert_int_eq(ms, T0);
}
END_TEST

START_TEST(test_time_format)
{
    char buf[TLY_TIME_TEXT_BYTES];
    tly_time_format(T0 + 1234, buf);
    ck_assert_str_eq(buf, "2025-01-01T00:00:01.234Z");
    tly_time_format(0, buf);
    ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
    tly_time_format(-1, buf);
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.999Z");
    tly_time_format(INT64_C(1709251199999), buf);
    ck_assert_str_eq(buf, "2024-02-29T23:59:59.999Z");
    ck_assert_uint_eq(strlen(buf) + 1, TLY_TIME_TEXT_BYTES);
    /* format → parse is the identity */
    for (int64_t t = TLY_AT_MIN_MS; t < INT64_C(4102444800000); t += INT64_C(86399999123)) {
        tly_time_format(t, buf);
        ck_assert_int_eq(iso(buf), t);
    }
}
END_TEST

START_TEST(test_period_of_boundaries)
{
    /* [P1] a period holds start <= t < next start, UTC */
    int64_t q3 = iso("2026-07-01T00:00:00Z");
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, q3), 2026 * 4 + 2);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, q3 - 1), 2026 * 4 + 1);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, q3), 2026 * 12 + 6);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, q3 - 1), 2026 * 12 + 5);
    ck_assert_int_eq(tly_period_start_ms(TLY_PERIOD_QUARTER, 2026 * 4 + 2), q3);
    ck_assert_int_eq(tly_period_start_ms(TLY_PERIOD_MONTH, 2026 * 12 + 6), q3);
    /* an offset that crosses the boundary in UTC decides the period */
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, iso("2026-07-01T01:00:00+02:00")),
                     2026 * 4 + 1);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, iso("2026-06-30T23:00:00-02:00")),
                     2026 * 4 + 2);
    /* year ends and leap years */
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, T0 - 1), 2024 * 4 + 3);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, iso("2024-02-29T23:59:59.999Z")),
                     2024 * 12 + 1);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, iso("2024-03-01")), 2024 * 12 + 2);
    ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, -1), 1969 * 12 + 11);
    /* every period's start maps back to it, and one ms earlier to the one before */
    for (int32_t p = 2000 * 12; p < 2100 * 12; p++) {
        int64_t s = tly_period_start_ms(TLY_PERIOD_MONTH, p);
        ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, s), p);
        ck_assert_int_eq(tly_period_of(TLY_PERIOD_MONTH, s - 1), p - 1);
    }
    for (int32_t p = 2000 * 4; p < 2100 * 4; p++) {
        int64_t s = tly_period_start_ms(TLY_PERIOD_QUARTER, p);
        ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, s), p);
        ck_assert_int_eq(tly_period_of(TLY_PERIOD_QUARTER, s - 1), p - 1);
    }
}
END_TEST

START_TEST(test_period_parse_format)
{
    tly_period_kind k;
    int32_t p;
    char buf[TLY_PERIOD_TEXT_BYTES];
    ck_assert_int_eq(tly_period_parse("2026-Q3", 7, &k, &p), TLY_OK);
    ck_assert_int_eq(k, TLY_PERIOD_QUARTER);
    ck_assert_int_eq(p, 2026 * 4 + 2);
    tly_period_format(k, p, buf);
    ck_assert_str_eq(buf, "2026-Q3");
    ck_assert_int_eq(tly_period_parse("2026-07", 7, &k, &p), TLY_OK);
    ck_assert_int_eq(k, TLY_PERIOD_MONTH);
    ck_assert_int_eq(p, 2026 * 12 + 6);
    tly_period_format(k, p, buf);
    ck_assert_str_eq(buf, "2026-07");
    /* year limits */
    ck_assert_int_eq(tly_period_parse("2000-01", 7, &k, &p), TLY_OK);
    ck_assert_int_eq(tly_period_parse("9999-Q4", 7, &k, &p), TLY_OK);
    tly_period_format(k, p, buf);
    ck_assert_str_eq(buf, "9999-Q4");
    static const char *const bad[] = {"1999-12",  "1999-Q4", "2026-Q0", "2026-Q5", "2026-00",
                                      "2026-13",  "2026-q3", "2026-7",  "2026Q3",  "26-Q3",
                                      "2026-Q3 ", "",        "2026-0a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = -5;
        ck_assert_msg(tly_period_parse(bad[i], strlen(bad[i]), &k, &p) == TLY_BAD_FIELD,
                      "accepted '%s'", bad[i]);
        ck_assert_int_eq(p, -5);
    }
    /* every month and quarter formats and parses back */
    for (int32_t q = 2000 * 12; q < 2030 * 12; q++) {
        tly_period_format(TLY_PERIOD_MONTH, q, buf);
        ck_assert_int_eq(tly_period_parse(buf, strlen(buf), &k, &p), TLY_OK);
        ck_assert_int_eq(p, q);
    }
}
END_TEST

/* TLY_YEAR_MIN and TLY_YEAR_MAX at their edges: the first month of the
 * first year and the last quarter of the last are periods, the month
 * before and the year after are not. */
START_TEST(test_period_year_limits)
{
    tly_period_kind k;
    int32_t p;
    char text[32];
    snprintf(text, sizeof text, "%04d-01", TLY_YEAR_MIN);
    ck_assert_msg(tly_period_parse(text, strlen(text), &k, &p) == TLY_OK, "%s refused", text);
    ck_assert_int_eq(p, TLY_YEAR_MIN * 12);
    snprintf(text, sizeof text, "%04d-Q4", TLY_YEAR_MAX);
    ck_assert_msg(tly_period_parse(text, strlen(text), &k, &p) == TLY_OK, "%s refused", text);
    ck_assert_int_eq(p, TLY_YEAR_MAX * 4 + 3);
    snprintf(text, sizeof text, "%04d-12", TLY_YEAR_MAX);
    ck_assert_msg(tly_period_parse(text, strlen(text), &k, &p) == TLY_OK, "%s refused", text);
    ck_assert_int_le(p, TLY_PERIOD_INDEX_MAX);
    const char *const fmts[] = {"%04d-12", "%04d-Q4", "%04d-01", "%04d-Q1"};
    const int years[] = {TLY_YEAR_MIN - 1, TLY_YEAR_MIN - 1, TLY_YEAR_MAX + 1, TLY_YEAR_MAX + 1};
    for (size_t i = 0; i < sizeof years / sizeof years[0]; i++) {
        snprintf(text, sizeof text, fmts[i], years[i]);
        p = -5;
        ck_assert_msg(tly_period_parse(text, strlen(text), &k, &p) == TLY_BAD_FIELD,
                      "accepted '%s'", text);
        ck_assert_int_eq(p, -5);
    }
}
END_TEST

/* ---------- JSON helpers ---------- */

START_TEST(test_b64_hex)
{
    /* RFC 4648 section 10 test vectors */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char buf[16];
        ck_assert_uint_eq(tly_b64_encode(in[i], strlen(in[i]), buf), strlen(out[i]));
        ck_assert_str_eq(buf, out[i]);
        uint8_t dec[16];
        size_t n;
        ck_assert_int_eq(tly_b64_decode(out[i], strlen(out[i]), dec, sizeof dec, &n), TLY_OK);
        ck_assert_uint_eq(n, strlen(in[i]));
        ck_assert(memcmp(dec, in[i], n) == 0);
    }
    uint8_t dec[4];
    size_t n;
    ck_assert_int_eq(tly_b64_decode("Zm9", 3, dec, 4, &n), TLY_BAD_FIELD);
    ck_assert_int_eq(tly_b64_decode("Zm9*", 4, dec, 4, &n), TLY_BAD_FIELD);
    ck_assert_int_eq(tly_b64_decode("Zm9vYmFy", 8, dec, 4, &n), TLY_TOO_LARGE);
    char hex[9];
    tly_hex_encode("\x00\xab\xff\x10", 4, hex);
    ck_assert_str_eq(hex, "00abff10");
}
END_TEST

START_TEST(test_json_from_mp_types)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "bin", 3);
    msgpack_pack_bin_with_body(&pk, "foo", 3);
    msgpack_pack_str_with_body(&pk, "neg", 3);
    msgpack_pack_int64(&pk, -5);
    msgpack_pack_str_with_body(&pk, "big", 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_str_with_body(&pk, "f", 1);
    msgpack_pack_double(&pk, 0.25);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_nil(&pk);
    json_t *j = tly_json_from_mp(sb.data, sb.size);
    ck_assert_ptr_nonnull(j);
    char *s = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(s, "{\"bin\":\"Zm9v\",\"neg\":-5,\"big\":\"18446744073709551615\","
                        "\"f\":0.25,\"n\":null}");
    free(s);
    json_decref(j);
    /* trailing bytes, ext, non-str keys: NULL */
    msgpack_pack_nil(&pk);
    ck_assert_ptr_null(tly_json_from_mp(sb.data, sb.size));
    ck_assert_ptr_null(tly_json_from_mp("\xd4\x01\x02", 3));
    ck_assert_ptr_null(tly_json_from_mp("\x81\x01\x02", 3));
    ck_assert_ptr_null(tly_json_from_mp("", 0));
    msgpack_sbuffer_destroy(&sb);
    /* not an object */
    json_t *arr = jparse("[1]");
    msgpack_sbuffer_init(&sb);
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(arr, &sb, &fe), TLY_MALFORMED);
    ck_assert_uint_eq(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    json_decref(arr);
}
END_TEST

START_TEST(test_json_key_order_kept)
{
    /* Keys keep the text's order, so one line always gives the same bytes. */
    json_t *a = jparse("{\"type\":\"sale\",\"id\":\"x\",\"at\":1}");
    json_t *b = jparse("{\"id\":\"x\",\"type\":\"sale\",\"at\":1}");
    msgpack_sbuffer sa, sbb;
    ck_assert_int_eq(to_mp(a, &sa, NULL), TLY_OK);
    ck_assert_int_eq(to_mp(b, &sbb, NULL), TLY_OK);
    ck_assert_uint_eq(sa.size, sbb.size);
    ck_assert(memcmp(sa.data, sbb.data, sa.size) != 0);
    ck_assert(memcmp(sa.data, "\x83\xa4type", 6) == 0);
    ck_assert(memcmp(sbb.data, "\x83\xa2id", 4) == 0);
    msgpack_sbuffer_destroy(&sa);
    msgpack_sbuffer_destroy(&sbb);
    json_decref(a);
    json_decref(b);
    /* Only the top-level `at` is parsed as time. */
    a = jparse("{\"x\":{\"at\":\"2025-01-01\"}}");
    ck_assert_int_eq(to_mp(a, &sa, NULL), TLY_OK);
    json_t *back = tly_json_from_mp(sa.data, sa.size);
    ck_assert(json_equal(back, a));
    json_decref(back);
    msgpack_sbuffer_destroy(&sa);
    json_decref(a);
}
END_TEST

/* ---------- wire ---------- */

/* Encodes a sale event with id "S-<i>" (and optional padding) into sb. */
static void sale_bytes(msgpack_sbuffer *sb, unsigned i, size_t pad)
{
    json_t *j = jparse(sample_sale);
    char id[32];
    snprintf(id, sizeof id, "S-%u", i);
    jset(j, "id", json_string(id));
    msgpack_sbuffer_init(sb);
    ck_assert_int_eq(tly_json_event_to_mp(j, sb, NULL), TLY_OK);
    json_decref(j);
    if (pad > 0) {
        /* add an unknown key "pad" holding a bin of pad bytes */
        ck_assert_int_eq((uint8_t)sb->data[0], 0x88);
        sb->data[0] = (char)0x89;
        msgpack_packer pk;
        msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_bin(&pk, pad);
        char *zero = calloc(1, pad);
        msgpack_pack_bin_body(&pk, zero, pad);
        free(zero);
    }
}

/* Builds a request of n copies of one sale event (ids need not differ for
 * the decoder). */
static void request_of(msgpack_sbuffer *out, unsigned n, size_t pad, uint64_t req)
{
    msgpack_sbuffer ev;
    sale_bytes(&ev, 0, pad);
    tly_span *spans = calloc(n ? n : 1, sizeof *spans);
    for (unsigned i = 0; i < n; i++)
        spans[i] = (tly_span){(const uint8_t *)ev.data, ev.size};
    msgpack_sbuffer_init(out);
    ck_assert_int_eq(tly_wire_ingest_encode(out, req, "pos-7", false, spans, n), TLY_OK);
    free(spans);
    msgpack_sbuffer_destroy(&ev);
}

START_TEST(test_wire_ingest_round_trip)
{
    msgpack_sbuffer e1, e2, out;
    sale_bytes(&e1, 1, 0);
    sale_bytes(&e2, 2, 0);
    tly_span spans[2] = {{(const uint8_t *)e1.data, e1.size}, {(const uint8_t *)e2.data, e2.size}};
    msgpack_sbuffer_init(&out);
    ck_assert_int_eq(tly_wire_ingest_encode(&out, 99, "pos-7", true, spans, 2), TLY_OK);
    tly_ingest_req *req = malloc(sizeof *req);
    char msg[128];
    ck_assert_int_eq(tly_wire_ingest_decode(out.data, out.size, req, msg, sizeof msg), TLY_OK);
    ck_assert(req->has_req && req->req == 99);
    ck_assert(tly_str_eq(req->source, "pos-7"));
    ck_assert(req->atomic);
    ck_assert_uint_eq(req->event_count, 2);
    /* spans are the exact event bytes */
    ck_assert_uint_eq(req->events[1].len, e2.size);
    ck_assert(memcmp(req->events[1].ptr, e2.data, e2.size) == 0);
    tly_event ev;
    ck_assert_int_eq(tly_event_decode(req->events[0].ptr, req->events[0].len, now_ms(), &ev, NULL),
                     TLY_OK);
    ck_assert(tly_str_eq(ev.id, "S-1"));
    /* without source and atomic */
    msgpack_sbuffer_clear(&out);
    ck_assert_int_eq(tly_wire_ingest_encode(&out, 0, NULL, false, spans, 1), TLY_OK);
    ck_assert_int_eq(tly_wire_ingest_decode(out.data, out.size, req, msg, sizeof msg), TLY_OK);
    ck_assert_ptr_null(req->source.ptr);
    ck_assert(!req->atomic);
    free(req);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&e1);
    msgpack_sbuffer_destroy(&e2);
}
END_TEST

/* Packs a request map by hand: keys/values given as a printf-free list. */
static tly_err decode_req(const msgpack_sbuffer *sb, tly_ingest_req *req)
{
    char msg[128] = "";
    tly_err err = tly_wire_ingest_decode(sb->data, sb->size, req, msg, sizeof msg);
    if (err != TLY_OK)
        ck_assert_msg(msg[0] != '\0', "no message for %s", tly_err_name(err));
    return err;
}

/* Envelopes that are no request: not MessagePack, not a map, no events,
 * events not an array, zero events, req mistyped. */
static void check_bad_envelopes(tly_ingest_req *req)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* not MessagePack, not a map */
    ck_assert_int_eq(tly_wire_ingest_decode("\xc1", 1, req, NULL, 0), TLY_MALFORMED);
    ck_assert_int_eq(tly_wire_ingest_decode("", 0, req, NULL, 0), TLY_MALFORMED);
    ck_assert(!req->has_req);
    msgpack_pack_array(&pk, 0);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);

    /* {"req": 5} : no events, req echoed */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 5);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);
    ck_assert(req->has_req && req->req == 5);

    /* {"events": {}, "req": 6} : events not an array; req after it still read */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 6);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);
    ck_assert(req->has_req && req->req == 6);

    /* {"req": 7, "events": []} : zero events */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, 0);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);
    ck_assert(req->has_req && req->req == 7);

    /* {"req": -1, "events": [1]} : req mistyped, not echoed */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_int(&pk, -1);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 1);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);
    ck_assert(!req->has_req);
    msgpack_sbuffer_destroy(&sb);
}

/* source / atomic mistyped; source too long; unknown keys ignored */
static void check_optional_fields(tly_ingest_req *req)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static const int variants[] = {0, 1, 2, 3, 4};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "req", 3);
        msgpack_pack_uint64(&pk, 8);
        msgpack_pack_str_with_body(&pk, "events", 6);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 0);
        tly_err want = TLY_MALFORMED;
        switch (v) {
        case 0:
            msgpack_pack_str_with_body(&pk, "source", 6);
            msgpack_pack_int(&pk, 3);
            break;
        case 1:
            msgpack_pack_str_with_body(&pk, "atomic", 6);
            msgpack_pack_int(&pk, 1);
            break;
        case 2:
            msgpack_pack_str_with_body(&pk, "source", 6);
            msgpack_pack_str_with_body(&pk,
                                       "0123456789012345678901234567890123456789"
                                       "01234567890123456789abcde",
                                       65);
            want = TLY_MALFORMED; /* [D12] source is 1..64 bytes */
            break;
        case 3:
            msgpack_pack_str_with_body(&pk, "source", 6);
            msgpack_pack_str_with_body(&pk,
                                       "0123456789012345678901234567890123456789"
                                       "01234567890123456789abcd",
                                       64);
            want = TLY_OK;
            break;
        default:
            msgpack_pack_str_with_body(&pk, "x-trace", 7);
            msgpack_pack_array(&pk, 0);
            want = TLY_OK;
            break;
        }
        ck_assert_msg(decode_req(&sb, req) == want, "variant %zu", v);
        ck_assert(req->has_req && req->req == 8);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Truncated frames, trailing bytes, elements that are no event. */
static void check_bad_frames(tly_ingest_req *req)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    /* truncated: malformed, and req is still echoed when it came first */
    request_of(&sb, 3, 0, 11);
    char msg[64];
    ck_assert_int_eq(tly_wire_ingest_decode(sb.data, sb.size - 1, req, msg, sizeof msg),
                     TLY_MALFORMED);
    ck_assert(req->has_req && req->req == 11);
    /* trailing bytes */
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);

    /* An element that is not a map passes the envelope and fails as an
     * event (a per-event result, not a whole-request error). */
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 12);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 5);
    msgpack_pack_str_with_body(&pk, "x", 1);
    ck_assert_int_eq(decode_req(&sb, req), TLY_OK);
    ck_assert_uint_eq(req->event_count, 2);
    tly_field_error fe;
    ck_assert_int_eq(decode_bytes(req->events[0].ptr, req->events[0].len, &fe), TLY_MALFORMED);
    ck_assert_int_eq(decode_bytes(req->events[1].ptr, req->events[1].len, &fe), TLY_MALFORMED);
    /* An element that is not well-formed breaks the whole frame. */
    sb.data[sb.size - 2] = (char)0xa5; /* "x" now claims 5 bytes */
    ck_assert_int_eq(decode_req(&sb, req), TLY_MALFORMED);
    ck_assert(req->has_req && req->req == 12);
    msgpack_sbuffer_destroy(&sb);
}

START_TEST(test_wire_ingest_malformed)
{
    tly_ingest_req *req = malloc(sizeof *req);
    check_bad_envelopes(req);
    check_optional_fields(req);
    check_bad_frames(req);
    free(req);
}
END_TEST

START_TEST(test_wire_batch_limit)
{
    tly_ingest_req *req = malloc(sizeof *req);
    msgpack_sbuffer sb;
    request_of(&sb, TLY_BATCH_EVENTS_MAX, 0, 21);
    ck_assert_int_eq(decode_req(&sb, req), TLY_OK);
    ck_assert_uint_eq(req->event_count, TLY_BATCH_EVENTS_MAX);
    msgpack_sbuffer_destroy(&sb);
    request_of(&sb, TLY_BATCH_EVENTS_MAX + 1, 0, 22);
    ck_assert_int_eq(decode_req(&sb, req), TLY_TOO_LARGE);
    ck_assert(req->has_req && req->req == 22);
    ck_assert_uint_le(req->event_count, TLY_BATCH_EVENTS_MAX);
    msgpack_sbuffer_destroy(&sb);
    free(req);
}
END_TEST

START_TEST(test_wire_frame_limit)
{
    /* A frame of exactly TLY_FRAME_BYTES_MAX bytes is accepted, one more
     * byte is too_large (req still echoed). */
    tly_ingest_req *req = malloc(sizeof *req);
    msgpack_sbuffer sb;
    size_t pad = TLY_FRAME_BYTES_MAX - 4096;
    request_of(&sb, 1, pad, 31);
    size_t overhead = sb.size - pad;
    msgpack_sbuffer_destroy(&sb);
    request_of(&sb, 1, TLY_FRAME_BYTES_MAX - overhead, 31);
    ck_assert_uint_eq(sb.size, TLY_FRAME_BYTES_MAX);
    ck_assert_int_eq(decode_req(&sb, req), TLY_OK);
    tly_event ev;
    ck_assert_int_eq(tly_event_decode(req->events[0].ptr, req->events[0].len, now_ms(), &ev, NULL),
                     TLY_OK);
    msgpack_sbuffer_destroy(&sb);
    request_of(&sb, 1, TLY_FRAME_BYTES_MAX - overhead + 1, 32);
    ck_assert_uint_eq(sb.size, TLY_FRAME_BYTES_MAX + 1);
    ck_assert_int_eq(decode_req(&sb, req), TLY_TOO_LARGE);
    ck_assert(req->has_req && req->req == 32);
    msgpack_sbuffer_destroy(&sb);
    free(req);
}
END_TEST

START_TEST(test_wire_reply_round_trip)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_ingest_result in[3];
    memset(in, 0, sizeof in);
    in[0].err = TLY_OK;
    in[0].seq = 1001;
    in[1].err = TLY_OK;
    in[1].seq = 17;
    in[1].dup = true;
    in[2].err = TLY_BAD_FIELD;
    snprintf(in[2].field, sizeof in[2].field, "tiers[2].mdf_bps");
    snprintf(in[2].message, sizeof in[2].message, "tiers[2].mdf_bps: must be 0..10000");
    tly_wire_reply_begin(&pk, 77, 3);
    for (int i = 0; i < 3; i++)
        tly_wire_reply_result(&pk, &in[i]);
    tly_ingest_result out[3];
    uint64_t req = 0;
    uint32_t count = 0;
    char msg[64];
    ck_assert_int_eq(tly_wire_reply_decode(sb.data, sb.size, &req, out, 3, &count, msg, sizeof msg),
                     TLY_OK);
    ck_assert_uint_eq(req, 77);
    ck_assert_uint_eq(count, 3);
    ck_assert(out[0].err == TLY_OK && out[0].seq == 1001 && !out[0].dup);
    ck_assert(out[1].err == TLY_OK && out[1].seq == 17 && out[1].dup);
    ck_assert_int_eq(out[2].err, TLY_BAD_FIELD);
    ck_assert_str_eq(out[2].field, "tiers[2].mdf_bps");
    ck_assert_str_eq(out[2].message, in[2].message);
    /* the reply is plain SPEC section 4 MessagePack */
    json_t *j = tly_json_from_mp(sb.data, sb.size);
    char *s = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(s, "{\"req\":77,\"results\":[{\"seq\":1001},{\"seq\":17,\"dup\":true},"
                        "{\"error\":\"bad_field\",\"message\":\"tiers[2].mdf_bps: must be "
                        "0..10000\",\"field\":\"tiers[2].mdf_bps\"}]}");
    free(s);
    json_decref(j);
    /* more results than the caller can hold: malformed */
    ck_assert_int_eq(tly_wire_reply_decode(sb.data, sb.size, &req, out, 2, &count, msg, sizeof msg),
                     TLY_MALFORMED);
    /* a whole-request error comes back as the function's value */
    msgpack_sbuffer_clear(&sb);
    tly_wire_reply_error(&pk, true, 78, TLY_TOO_LARGE, "more than 4096 events");
    ck_assert_int_eq(tly_wire_reply_decode(sb.data, sb.size, &req, out, 3, &count, msg, sizeof msg),
                     TLY_TOO_LARGE);
    ck_assert_uint_eq(req, 78);
    ck_assert_uint_eq(count, 0);
    ck_assert_str_eq(msg, "more than 4096 events");
    msgpack_sbuffer_clear(&sb);
    tly_wire_reply_error(&pk, false, 0, TLY_MALFORMED, "not a map");
    j = tly_json_from_mp(sb.data, sb.size);
    ck_assert_ptr_null(json_object_get(j, "req"));
    json_decref(j);
    ck_assert_int_eq(tly_wire_reply_decode(sb.data, sb.size, &req, out, 3, &count, msg, sizeof msg),
                     TLY_MALFORMED);
    ck_assert_str_eq(msg, "not a map");
    /* garbage */
    ck_assert_int_eq(tly_wire_reply_decode("\x93", 1, &req, out, 3, &count, msg, sizeof msg),
                     TLY_MALFORMED);
    ck_assert_int_eq(tly_wire_reply_decode("\x81\xa5"
                                           "error\xa4nope",
                                           12, &req, out, 3, &count, msg, sizeof msg),
                     TLY_MALFORMED);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* TLY_LEDGER_RESULT_BYTES_MAX and TLY_LEDGER_REPLY_BYTES_MAX (the ledger's
 * reply budget) hold the worst case: every result an error with the
 * longest code, a message and a field as long as their buffers hold, or a
 * duplicate's largest seq; a reply of TLY_BATCH_EVENTS_MAX such results
 * and the largest req. */
START_TEST(test_wire_reply_bytes_max)
{
    tly_ingest_result worst = {.err = TLY_OK};
    size_t longest = 0;
    for (int e = TLY_MALFORMED; e < TLY_ERR_COUNT; e++)
        if (strlen(tly_err_name((tly_err)e)) > longest) {
            longest = strlen(tly_err_name((tly_err)e));
            worst.err = (tly_err)e;
        }
    memset(worst.field, 'f', sizeof worst.field - 1);
    memset(worst.message, 'm', sizeof worst.message - 1);
    tly_ingest_result dup = {.err = TLY_OK, .seq = UINT64_MAX, .dup = true};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_reply_result(&pk, &worst);
    ck_assert_uint_le(sb.size, TLY_LEDGER_RESULT_BYTES_MAX);
    msgpack_sbuffer_clear(&sb);
    tly_wire_reply_result(&pk, &dup);
    ck_assert_uint_le(sb.size, TLY_LEDGER_RESULT_BYTES_MAX);
    msgpack_sbuffer_clear(&sb);
    tly_wire_reply_begin(&pk, UINT64_MAX, TLY_BATCH_EVENTS_MAX);
    for (uint32_t i = 0; i < TLY_BATCH_EVENTS_MAX; i++)
        tly_wire_reply_result(&pk, &worst);
    ck_assert_uint_le(sb.size, TLY_LEDGER_REPLY_BYTES_MAX);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

START_TEST(test_wire_logread)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, 12345, 500);
    uint64_t from = 0;
    uint32_t max = 0;
    ck_assert_int_eq(tly_wire_logread_decode(sb.data, sb.size, &from, &max), TLY_OK);
    ck_assert(from == 12345 && max == 500);
    ck_assert_int_eq(tly_wire_logread_decode("\x81\xa4"
                                             "from\x01",
                                             7, &from, &max),
                     TLY_MISSING_FIELD);
    ck_assert_int_eq(tly_wire_logread_decode("\x82\xa4"
                                             "from\x01\xa3max\xa1x",
                                             13, &from, &max),
                     TLY_BAD_FIELD);
    ck_assert_int_eq(tly_wire_logread_decode("\x91\x01", 2, &from, &max), TLY_MALFORMED);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* ---------- currencies and decimals [D18] ---------- */

START_TEST(test_currency_exponent)
{
    static const struct {
        const char *code;
        int exp;
    } known[] = {{"USD", 2}, {"EUR", 2}, {"GBP", 2}, {"CHF", 2}, {"INR", 2}, {"JPY", 0},
                 {"KRW", 0}, {"VND", 0}, {"CLP", 0}, {"ISK", 0}, {"UGX", 0}, {"XOF", 0},
                 {"XAF", 0}, {"PYG", 0}, {"BHD", 3}, {"KWD", 3}, {"OMR", 3}, {"JOD", 3},
                 {"TND", 3}, {"LYD", 3}, {"IQD", 3}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int e = -1;
        ck_assert_int_eq(tly_currency_exponent(known[i].code, &e), TLY_OK);
        ck_assert_msg(e == known[i].exp, "%s: %d", known[i].code, e);
    }
    int e = 9;
    ck_assert_int_eq(tly_currency_exponent("XYZ", &e), TLY_NOT_FOUND);
    ck_assert_int_eq(tly_currency_exponent("usd", &e), TLY_NOT_FOUND);
    ck_assert_int_eq(tly_currency_exponent("US ", &e), TLY_NOT_FOUND);
    ck_assert_int_eq(e, 9);
    /* Every code AAA..ZZZ: the tables are searched by halves, so a code out
     * of alphabetical order would be missed; the counts are the tables'
     * (ISO 4217, 2024: 141 codes with 2 digits, 17 with 0, 7 with 3, 2
     * with 4). */
    int count[5] = {0};
    char code[4] = "AAA";
    for (int i = 0; i < 26 * 26 * 26; i++) {
        code[0] = (char)('A' + i / 676);
        code[1] = (char)('A' + i / 26 % 26);
        code[2] = (char)('A' + i % 26);
        if (tly_currency_exponent(code, &e) == TLY_OK)
            count[e]++;
    }
    ck_assert_int_eq(count[2], 141);
    ck_assert_int_eq(count[0], 17);
    ck_assert_int_eq(count[3], 7);
    ck_assert_int_eq(count[4], 2);
    ck_assert_int_eq(count[1], 0);
}
END_TEST

static tly_err dec(const char *s, int exp, int64_t *out)
{
    return tly_decimal_to_minor(s, strlen(s), exp, out);
}

START_TEST(test_decimal_to_minor)
{
    static const struct {
        const char *s;
        int exp;
        int64_t want;
    } ok[] = {
        {"1234.50", 2, 123450},
        {"1234.5", 2, 123450},
        {"1234", 2, 123400},
        {"0.01", 2, 1},
        {"0", 2, 0},
        {"007.10", 2, 710},
        {"1500", 0, 1500},
        {"1.234", 3, 1234},
        {"-12.34", 2, -1234},
        {"+5", 2, 500},
        {"100000000000.00", 2, TLY_AMOUNT_MAX},
        {"10000000000000", 0, TLY_AMOUNT_MAX},
        {"10000000000.000", 3, TLY_AMOUNT_MAX},
        {"-100000000000", 2, -TLY_AMOUNT_MAX},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -7;
        ck_assert_msg(dec(ok[i].s, ok[i].exp, &v) == TLY_OK, "refused %s", ok[i].s);
        ck_assert_msg(v == ok[i].want, "%s -> %lld", ok[i].s, (long long)v);
    }
    static const struct {
        const char *s;
        int exp;
    } bad[] = {
        {"12.345", 2},          /* [D18] more fraction digits than the currency has */
        {"12.340", 2},          /* even zeros */
        {"12.0", 0},            /* JPY has none */
        {"100000000000.01", 2}, /* above TLY_AMOUNT_MAX */
        {"10000000000001", 0},
        {"99999999999999999999999", 0}, /* would overflow int64 */
        {"", 2},
        {".5", 2},
        {"12.", 2},
        {"-", 2},
        {"1,234.00", 2},
        {" 12", 2},
        {"12 ", 2},
        {"1e3", 2},
        {"--1", 2},
        {"0x10", 2},
        {"12.3.4", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = -7;
        ck_assert_msg(dec(bad[i].s, bad[i].exp, &v) == TLY_BAD_FIELD, "accepted '%s'", bad[i].s);
        ck_assert_int_eq(v, -7);
    }
    /* length is honoured */
    int64_t v;
    ck_assert_int_eq(tly_decimal_to_minor("12.34,USD", 5, 2, &v), TLY_OK);
    ck_assert_int_eq(v, 1234);
}
END_TEST

/* Every path of the data directory's layout, and the empty buffer of a path
 * that does not fit. */
START_TEST(test_layout_paths)
{
    char buf[TLY_PATH_BYTES_MAX + 32];
    ck_assert_int_eq(tly_layout_log("d", buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "d/log");
    ck_assert_int_eq(tly_layout_views("d", buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "d/views");
    ck_assert_int_eq(tly_layout_pid("d", buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "d/tally.pid");
    ck_assert_int_eq(tly_layout_shard("d/views", 2, 4, buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "d/views/2-of-4");
    ck_assert_int_eq(tly_layout_shard_name(0, 1, buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "0-of-1");
    ck_assert_int_eq(tly_layout_join("d/log", TLY_LAYOUT_WRITER_LOCK, buf, sizeof buf), TLY_OK);
    ck_assert_str_eq(buf, "d/log/writer.lock");
    /* "d/log" needs 6 bytes with its NUL: 5 is too few, 6 is enough. */
    ck_assert_int_eq(tly_layout_log("d", buf, 5), TLY_USAGE);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(tly_layout_log("d", buf, 6), TLY_OK);
    char dir[TLY_PATH_BYTES_MAX];
    memset(dir, 'a', sizeof dir - 1);
    dir[sizeof dir - 1] = '\0';
    char small[TLY_PATH_BYTES_MAX];
    tly_err (*const fn[])(const char *, char *, size_t) = {tly_layout_log, tly_layout_views,
                                                           tly_layout_pid};
    for (size_t i = 0; i < sizeof fn / sizeof fn[0]; i++) {
        strcpy(small, "junk");
        ck_assert_int_eq(fn[i](dir, small, sizeof small), TLY_USAGE);
        ck_assert_str_eq(small, "");
    }
    strcpy(small, "junk");
    ck_assert_int_eq(tly_layout_shard(dir, 0, 1, small, sizeof small), TLY_USAGE);
    ck_assert_str_eq(small, "");
    strcpy(small, "junk");
    ck_assert_int_eq(tly_layout_join(dir, TLY_LAYOUT_LMDB_DATA, small, sizeof small), TLY_USAGE);
    ck_assert_str_eq(small, "");
    /* An empty directory would put the path at the root ("/log",
     * "/0-of-1"): refused, whatever the room. */
    for (size_t i = 0; i < sizeof fn / sizeof fn[0]; i++) {
        strcpy(small, "junk");
        ck_assert_int_eq(fn[i]("", small, sizeof small), TLY_USAGE);
        ck_assert_str_eq(small, "");
    }
    strcpy(small, "junk");
    ck_assert_int_eq(tly_layout_shard("", 0, 1, small, sizeof small), TLY_USAGE);
    ck_assert_str_eq(small, "");
    strcpy(small, "junk");
    ck_assert_int_eq(tly_layout_join("", TLY_LAYOUT_LOG, small, sizeof small), TLY_USAGE);
    ck_assert_str_eq(small, "");
}
END_TEST

/* A limit's test override: the default when unset, empty, not a number
 * or outside [min, max]; the number at both edges of the range. */
START_TEST(test_os_env_u64)
{
    const char *name = "TALLY_TEST_ENV_U64";
    unsetenv(name);
    ck_assert_uint_eq(tly_env_u64(name, 10, 20, 7), 7);
    const char *dflt[] = {"", "x", "9", "21", "-1", "15x", " 15", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++) {
        setenv(name, dflt[i], 1);
        ck_assert_msg(tly_env_u64(name, 10, 20, 7) == 7, "'%s'", dflt[i]);
    }
    setenv(name, "10", 1);
    ck_assert_uint_eq(tly_env_u64(name, 10, 20, 7), 10);
    setenv(name, "20", 1);
    ck_assert_uint_eq(tly_env_u64(name, 10, 20, 7), 20);
    unsetenv(name);
}
END_TEST

/* Writes one tly_errorf line of "tally x: " and len 'm's to a temp file in
 * place of stderr; returns what was written (malloc'd) and its length. */
static char *log_line_of(size_t len, size_t *written)
{
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/stderr", dir);
    char *msg = malloc(len + 1);
    memset(msg, 'm', len);
    msg[len] = '\0';
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    tly_errorf("x", "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *text = tu_read_file(path, written);
    ck_assert_ptr_nonnull(text);
    free(msg);
    tu_rmtree(dir);
    return text;
}

/* TLY_LOG_LINE_BYTES_MAX at its edge: a line of TLY_LOG_LINE_BYTES_MAX - 1
 * bytes (its newline included) is written whole; a longer message, one
 * byte or far over, is cut to that length and still ends the line. */
START_TEST(test_os_log_line_limit)
{
    const char *prefix = "tally x: ";
    size_t fit = TLY_LOG_LINE_BYTES_MAX - 2 - strlen(prefix);
    const size_t lens[] = {fit, fit + 1, 3 * TLY_LOG_LINE_BYTES_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = 0;
        char *text = log_line_of(lens[i], &n);
        ck_assert_uint_eq(n, TLY_LOG_LINE_BYTES_MAX - 1);
        ck_assert_int_eq(strncmp(text, prefix, strlen(prefix)), 0);
        ck_assert_uint_eq(strspn(text + strlen(prefix), "m"), fit);
        ck_assert_int_eq(text[n - 1], '\n');
        free(text);
    }
}
END_TEST

/* tly_os_same_file: the path names the open file until the file is
 * removed, or replaced by another at the same path. */
START_TEST(test_os_same_file)
{
    char *dir = tu_tmpdir();
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/a.lock", dir);
    snprintf(other, sizeof other, "%s/b.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert(tly_os_same_file(path, fd));
    ck_assert(!tly_os_same_file(path, -1));
    int fd2 = open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd2, 0);
    ck_assert(!tly_os_same_file(other, fd));
    ck_assert_int_eq(rename(other, path), 0); /* replaced */
    ck_assert(!tly_os_same_file(path, fd));
    ck_assert(tly_os_same_file(path, fd2));
    ck_assert_int_eq(unlink(path), 0); /* removed */
    ck_assert(!tly_os_same_file(path, fd2));
    close(fd);
    close(fd2);
    tu_rmtree(dir);
}
END_TEST

/* tly_os_anon_resident: 64 MiB written in a fresh mapping count in full
 * (a file's pages mapped do not: only this process's own memory), and
 * count no more once given back. */
START_TEST(test_os_anon_resident)
{
    const size_t len = (size_t)64 << 20;
    uint64_t before, during, after;
    ck_assert(tly_os_anon_resident(&before));
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(p != MAP_FAILED);
    memset(p, 1, len);
    ck_assert(tly_os_anon_resident(&during));
    ck_assert_uint_ge(during, before + len - ((size_t)4 << 20));
    ck_assert_int_eq(munmap(p, len), 0);
    ck_assert(tly_os_anon_resident(&after));
    ck_assert_uint_le(after + len - ((size_t)4 << 20), during);
    /* a file's pages, mapped and read, are not anonymous */
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/pages", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
    char *f = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert(f != MAP_FAILED);
    unsigned sum = 0;
    for (size_t i = 0; i < len; i += 4096)
        sum += (unsigned char)f[i];
    ck_assert_uint_eq(sum, 0);
    uint64_t mapped;
    ck_assert(tly_os_anon_resident(&mapped));
    ck_assert_uint_lt(mapped, after + ((size_t)4 << 20));
    munmap(f, len);
    close(fd);
    tu_rmtree(dir);
}
END_TEST

/* Shard names: canonical "K-of-N" with K < N <= TLY_SHARDS_MAX only. */
START_TEST(test_layout_shard_parse)
{
    char max_ok[32], max_over[32];
    snprintf(max_ok, sizeof max_ok, "0-of-%u", TLY_SHARDS_MAX);
    snprintf(max_over, sizeof max_over, "0-of-%u", TLY_SHARDS_MAX + 1);
    uint32_t k = 99, n = 99;
    ck_assert(tly_layout_shard_parse("0-of-1", &k, &n));
    ck_assert_uint_eq(k, 0);
    ck_assert_uint_eq(n, 1);
    ck_assert(tly_layout_shard_parse("3-of-7", &k, &n));
    ck_assert_uint_eq(k, 3);
    ck_assert_uint_eq(n, 7);
    ck_assert(tly_layout_shard_parse(max_ok, &k, &n));
    ck_assert_uint_eq(k, 0);
    ck_assert_uint_eq(n, TLY_SHARDS_MAX);
    const char *bad[] = {"1-of-1",  "01-of-2", "0-of-02", "0-of-0",   max_over,
                         "0-of-2x", "0-of-2 ", "0-of-2/", "+0-of-2",  "0-of-+2",
                         " 0-of-2", "-1-of-2", "0-of-",   "-of-2",    "0of2",
                         "0-Of-2",  "",        "views",   "0-of-1.0", "4294967296-of-2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!tly_layout_shard_parse(bad[i], &k, &n), "accepted '%s'", bad[i]);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* tly_dl: libraries opened when first needed                               */

/* Two functions of the C library, through a table as the rooms use it. */
enum { DL_strlen, DL_abs, DL_COUNT };
#define DL_LIBC "libc.so.6"

static tly_dl_set dl_set(const char *const *sonames, size_t n, const char *const *names,
                         void **table, size_t count)
{
    return (tly_dl_set){.what = "the test",
                        .sonames = sonames,
                        .soname_count = n,
                        .names = names,
                        .table = table,
                        .count = count};
}

START_TEST(test_dl_load_and_call)
{
    static const char *const libs[] = {DL_LIBC};
    static const char *const names[] = {"strlen", "abs"};
    void *table[DL_COUNT] = {0};
    tly_dl_set set = dl_set(libs, 1, names, table, DL_COUNT);
    char msg[256] = "";
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_OK);
    ck_assert_uint_eq(TLY_DL_FN(table, DL_, strlen)("four"), 4);
    ck_assert_int_eq(TLY_DL_FN(table, DL_, abs)(-7), 7);
    /* Loaded: a second call changes nothing. */
    void *before = table[DL_abs];
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_OK);
    ck_assert_ptr_eq(table[DL_abs], before);
    ck_assert_str_eq(msg, "");
}
END_TEST

START_TEST(test_dl_missing_library_and_function)
{
    static const char *const absent[] = {DL_LIBC, "libtally-no-such-library.so.9"};
    static const char *const names[] = {"strlen", "abs"};
    void *table[DL_COUNT] = {0};
    char msg[256];
    tly_dl_set set = dl_set(absent, 2, names, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(msg, "the test needs libtally-no-such-library.so.9"));
    ck_assert_ptr_null(table[DL_COUNT - 1]);
    /* A function none of the libraries has: named, and the set not loaded. */
    static const char *const libc[] = {DL_LIBC};
    static const char *const wrong[] = {"strlen", "tly_no_such_function"};
    set = dl_set(libc, 1, wrong, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(msg, "tly_no_such_function"));
    ck_assert_ptr_null(table[DL_COUNT - 1]);
    /* The right names then load into the same table. */
    set = dl_set(libc, 1, names, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_OK);
    ck_assert_int_eq(TLY_DL_FN(table, DL_, abs)(-3), 3);
}
END_TEST

/* TLY_DL_LIBS_MAX libraries open; one more, or none, is refused. */
START_TEST(test_dl_libs_max)
{
    const char *libs[TLY_DL_LIBS_MAX + 1];
    for (size_t i = 0; i <= TLY_DL_LIBS_MAX; i++)
        libs[i] = DL_LIBC;
    static const char *const names[] = {"strlen", "abs"};
    void *table[DL_COUNT] = {0};
    char msg[256];
    tly_dl_set set = dl_set(libs, TLY_DL_LIBS_MAX + 1, names, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_UNAVAILABLE);
    ck_assert_ptr_null(table[DL_COUNT - 1]);
    set = dl_set(libs, 0, names, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_UNAVAILABLE);
    set = dl_set(libs, TLY_DL_LIBS_MAX, names, table, DL_COUNT);
    ck_assert_int_eq(tly_dl_load(&set, msg, sizeof msg), TLY_OK);
    ck_assert_uint_eq(TLY_DL_FN(table, DL_, strlen)("ab"), 2);
}
END_TEST

/* libmicrohttpd by the soname the build found: every function Tally calls. */
START_TEST(test_mhd_load)
{
    char msg[256];
    ck_assert_int_eq(tly_mhd_load(msg, sizeof msg), TLY_OK);
    for (size_t i = 0; i < TLY_MHD_SYM_COUNT; i++)
        ck_assert_ptr_nonnull(tly_mhd_syms[i]);
    ck_assert_int_eq(tly_mhd_load(msg, sizeof msg), TLY_OK);
}
END_TEST

static Suite *schemas_suite(void)
{
    Suite *s = suite_create("schemas");
    TCase *mp = tu_tcase(s, "mp", 0);
    tu_add_tests(mp, TU_TESTS(test_mp_ints, test_mp_uint64_and_failures, test_mp_fast_paths_match,
                              test_mp_int_forms_against_msgpack_c, test_mp_containers_and_skip,
                              test_mp_depth_limit, test_mpw_same_bytes_as_msgpack_c));

    TCase *ev = tu_tcase(s, "event", 120);
    tu_add_tests(ev, TU_TESTS(test_event_round_trip_every_type, test_event_decoded_fields,
                              test_event_at_iso_equals_int, test_event_vectors_all_decode,
                              test_event_malformed, test_event_type_errors,
                              test_event_unknown_keys_ignored, test_event_duplicate_keys,
                              test_event_required_fields, test_event_enums_and_patterns,
                              test_event_invalid_utf8_name, test_event_decode_after_failure));

    TCase *lim = tu_tcase(s, "limits", 120);
    tu_add_tests(lim, TU_TESTS(test_limit_id_bytes, test_limit_name_and_text_bytes,
                               test_limit_amounts_and_ranges, test_limit_adjust_signed_amount,
                               test_limit_at_range, test_limit_tiers_and_brackets_count,
                               test_g6_tier_and_bracket_order, test_c3_claim_amount));

    TCase *per = tu_tcase(s, "period", 0);
    tu_add_tests(per, TU_TESTS(test_time_parse, test_time_format, test_period_of_boundaries,
                               test_period_parse_format, test_period_year_limits));

    TCase *js = tu_tcase(s, "json", 0);
    tu_add_tests(js, TU_TESTS(test_b64_hex, test_json_from_mp_types, test_json_key_order_kept));

    TCase *w = tu_tcase(s, "wire", 120);
    tu_add_tests(w,
                 TU_TESTS(test_wire_ingest_round_trip, test_wire_ingest_malformed,
                          test_wire_batch_limit, test_wire_frame_limit, test_wire_reply_round_trip,
                          test_wire_logread, test_wire_reply_bytes_max));

    TCase *cur = tu_tcase(s, "currency", 0);
    tu_add_tests(cur, TU_TESTS(test_currency_exponent, test_decimal_to_minor));

    TCase *lay = tu_tcase(s, "layout", 0);
    tu_add_tests(lay, TU_TESTS(test_layout_paths, test_layout_shard_parse, test_os_same_file,
                               test_os_anon_resident, test_os_env_u64, test_os_log_line_limit));

    TCase *dl = tu_tcase(s, "dl", 0);
    tu_add_tests(dl, TU_TESTS(test_dl_load_and_call, test_dl_missing_library_and_function,
                              test_dl_libs_max, test_mhd_load));
    return s;
}

int main(void)
{
    return tu_run_suite(schemas_suite());
}
