/*
 * test_schemas_v2.c — the Check suite of schemas/ for program rules v2
 * (SPEC section 10, issue 10 item 1): the new program fields, tier
 * benefits, bonus and referral rates, certification `expires` [T10] [T13],
 * the `rate` [F1] [F6] and `referral` [Q1] events, their JSON lines forms
 * (`rate` a decimal string, `expires` int or ISO-8601 text), and the public
 * vectors seed102-v2 decoding whole.
 *
 * Every section 10 limit of tly_limits.h is tested at its edge: the value
 * is accepted and the value + 1 (or - 1) refused, naming its field.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_limits.h"

/* Recorded time of the decodes: 2027-01-01T00:00:00Z, after every vector. */
#define REC_MS INT64_C(1798761600000)
/* 2025-01-01T00:00:00Z: business time of the samples. */
#define T0 INT64_C(1735689600000)

/* ---------- samples ---------- */

/* A program with every section 10 field set. */
static const char *const v2_program =
    "{\"type\":\"program\",\"id\":\"FIN-1\",\"at\":1735689600000,\"program\":\"nimbus\","
    "\"version\":2,\"currency\":\"EUR\",\"period\":\"month\",\"tiers\":["
    "{\"name\":\"Registered\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":80,"
    "\"benefits\":[],\"rebate_bonus_bps\":0,\"referral_bps\":300},"
    "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":150,"
    "\"benefits\":[\"NFR licenses\",\"partner account manager\"],\"rebate_bonus_bps\":25,"
    "\"referral_bps\":500}],"
    "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,\"bps\":50},"
    "{\"from\":870000,\"bps\":150}],\"basis\":\"growth\",\"baseline_periods\":3,"
    "\"min\":1000,\"cap\":310000},"
    "\"mdf_expiry_periods\":3,\"tier_window_periods\":3,\"mdf_cap_per_period\":43000,"
    "\"tier_moves\":\"one_step\",\"tier_grace_periods\":2}";
/* A v1 program: every section 10 field takes its default. */
static const char *const v1_program =
    "{\"type\":\"program\",\"id\":\"FIN-1\",\"at\":1735689600000,\"program\":\"apex\","
    "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
    "{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],"
    "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
    "\"mdf_expiry_periods\":2,\"tier_window_periods\":3}";
static const char *const v2_rate =
    "{\"type\":\"rate\",\"id\":\"FIN-240\",\"at\":1735689600000,\"currency\":\"EUR\","
    "\"to\":\"USD\",\"rate\":\"1.0823\"}";
static const char *const v2_referral =
    "{\"type\":\"referral\",\"id\":\"CRM-20\",\"at\":1735689600000,\"partner\":\"margie\","
    "\"deal\":\"DEAL-56188\",\"amount\":50434,\"currency\":\"USD\"}";
static const char *const v2_cert =
    "{\"type\":\"certification\",\"id\":\"CRT-53\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"person\":\"p-17\",\"cert\":\"cloud-architect\",\"action\":\"earned\","
    "\"expires\":1767225600000}";
static const char *const v1_sale =
    "{\"type\":\"sale\",\"id\":\"S-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"sku\":\"SKU-9\",\"qty\":3,\"amount\":123450,\"currency\":\"USD\"}";

static json_t *jparse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    ck_assert_msg(j != NULL, "bad test JSON: %s: %s", je.text, text);
    return j;
}

/* The bytes of the last decode_json: a decoded event borrows from them. */
static msgpack_sbuffer last_bytes;

/* JSON -> MessagePack (tly_json_event_to_mp, as `tally send`) -> decode. */
static tly_err decode_json(const json_t *j, tly_event *ev, tly_field_error *fe)
{
    msgpack_sbuffer_destroy(&last_bytes);
    msgpack_sbuffer_init(&last_bytes);
    tly_err err = tly_json_event_to_mp(j, &last_bytes, fe);
    if (err == TLY_OK)
        err = tly_event_decode(last_bytes.data, last_bytes.size, REC_MS, ev, fe);
    return err;
}

static tly_event decode_ok(const char *text)
{
    json_t *j = jparse(text);
    tly_event ev;
    tly_field_error fe = {"", ""};
    tly_err err = decode_json(j, &ev, &fe);
    ck_assert_msg(err == TLY_OK, "%s: %s", tly_err_name(err), fe.message);
    json_decref(j);
    return ev;
}

/* Walks "a/2/b" inside root and sets (val non-NULL, stolen) or deletes the
 * last step. */
static void jset(json_t *root, const char *path, json_t *val)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    char *save = NULL;
    char *tok = strtok_r(buf, "/", &save);
    for (char *next; (next = strtok_r(NULL, "/", &save)) != NULL; tok = next) {
        cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10))
                                 : json_object_get(cur, tok);
        ck_assert_msg(cur != NULL, "no %s in test event", path);
    }
    if (json_is_array(cur) && val)
        json_array_set_new(cur, strtoul(tok, NULL, 10), val);
    else if (json_is_array(cur))
        json_array_remove(cur, strtoul(tok, NULL, 10));
    else if (val)
        json_object_set_new(cur, tok, val);
    else
        json_object_del(cur, tok);
}

/* Decodes sample with path set to val (stolen; NULL deletes) and checks the
 * outcome and, on failure, the field named. */
static void expect_val(const char *sample, const char *path, json_t *val, tly_err want,
                       const char *field)
{
    json_t *j = jparse(sample);
    jset(j, path, val);
    tly_event ev;
    tly_field_error fe = {"", ""};
    tly_err got = decode_json(j, &ev, &fe);
    ck_assert_msg(got == want, "%s: got %s (%s), want %s", path, tly_err_name(got), fe.message,
                  tly_err_name(want));
    if (want != TLY_OK)
        ck_assert_msg(strcmp(fe.field, field) == 0, "%s: field '%s', want '%s'", path, fe.field,
                      field);
    json_decref(j);
}

static void expect(const char *sample, const char *path, const char *val_text, tly_err want,
                   const char *field)
{
    expect_val(sample, path, val_text ? jparse(val_text) : NULL, want, field);
}

typedef struct expect_case {
    const char *const *sample;
    const char *path, *value;
    tly_err want;
    const char *field;
} expect_case;

static void expect_cases(const expect_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect(*c[i].sample, c[i].path, c[i].value, c[i].want, c[i].field);
}

/* An int field at its bounds: lo and hi accepted, lo-1 and hi+1 refused. */
static void expect_int_range(const char *sample, const char *path, const char *field, int64_t lo,
                             int64_t hi)
{
    expect_val(sample, path, json_integer(lo), TLY_OK, NULL);
    expect_val(sample, path, json_integer(hi), TLY_OK, NULL);
    expect_val(sample, path, json_integer(lo - 1), TLY_BAD_FIELD, field);
    expect_val(sample, path, json_integer(hi + 1), TLY_BAD_FIELD, field);
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

/* ---------- round trips and decoded fields ---------- */

START_TEST(test_v2_round_trip)
{
    static const char *const *const samples[] = {&v2_program, &v2_rate, &v2_referral, &v2_cert};
    static const tly_ev_type types[] = {TLY_EV_PROGRAM, TLY_EV_RATE, TLY_EV_REFERRAL,
                                        TLY_EV_CERTIFICATION};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        json_t *j = jparse(*samples[i]);
        tly_event ev;
        tly_field_error fe = {"", ""};
        ck_assert_msg(decode_json(j, &ev, &fe) == TLY_OK, "%s", fe.message);
        ck_assert_int_eq(ev.type, types[i]);
        ck_assert_str_eq(tly_ev_type_name(ev.type), json_string_value(json_object_get(j, "type")));
        ck_assert_int_eq(ev.at_ms, T0);
        json_t *back = tly_json_from_mp(last_bytes.data, last_bytes.size);
        ck_assert(back != NULL && json_equal(back, j));
        tly_ev_type t;
        tly_str id;
        ck_assert_int_eq(tly_event_peek_id(last_bytes.data, last_bytes.size, &t, &id), TLY_OK);
        ck_assert_int_eq(t, ev.type);
        json_decref(back);
        json_decref(j);
    }
    tly_ev_type t;
    ck_assert_int_eq(tly_ev_type_parse("rate", 4, &t), TLY_OK);
    ck_assert_int_eq(t, TLY_EV_RATE);
    ck_assert_int_eq(tly_ev_type_parse("referral", 8, &t), TLY_OK);
    ck_assert_int_eq(t, TLY_EV_REFERRAL);
    ck_assert_int_eq(tly_ev_type_parse("rates", 5, &t), TLY_BAD_TYPE);
    ck_assert_str_eq(tly_ev_type_name(TLY_EV_COUNT), "unknown");
    /* Every type has a name (nothing enumerating types meets a NULL). */
    for (int i = 0; i < TLY_EV_COUNT; i++)
        ck_assert_str_ne(tly_ev_type_name((tly_ev_type)i), "unknown");
}
END_TEST

START_TEST(test_v2_program_fields)
{
    tly_event ev = decode_ok(v2_program);
    ck_assert_uint_eq(ev.tier_count, 2);
    ck_assert_uint_eq(ev.tiers[0].benefit_count, 0);
    ck_assert_uint_eq(ev.tiers[1].benefit_count, 2);
    ck_assert(tly_str_eq(ev.tiers[1].benefits[0], "NFR licenses"));
    ck_assert(tly_str_eq(ev.tiers[1].benefits[1], "partner account manager"));
    ck_assert_int_eq(ev.tiers[0].referral_bps, 300);
    ck_assert_int_eq(ev.tiers[1].rebate_bonus_bps, 25);
    ck_assert_int_eq(ev.tiers[1].referral_bps, 500);
    ck_assert_int_eq(ev.rebate_basis, TLY_BASIS_GROWTH);
    ck_assert_int_eq(ev.baseline_periods, 3);
    ck_assert_int_eq(ev.rebate_min, 1000);
    ck_assert(ev.has_rebate_cap && ev.rebate_cap == 310000);
    ck_assert(ev.has_mdf_cap && ev.mdf_cap_per_period == 43000);
    ck_assert_int_eq(ev.tier_moves, TLY_MOVES_ONE_STEP);
    ck_assert_int_eq(ev.tier_grace_periods, 2);
    /* A v1 program: section 10's defaults (SPEC section 10's table). */
    ev = decode_ok(v1_program);
    ck_assert_uint_eq(ev.tiers[0].benefit_count, 0);
    ck_assert_int_eq(ev.tiers[0].rebate_bonus_bps, 0);
    ck_assert_int_eq(ev.tiers[0].referral_bps, 0);
    ck_assert_int_eq(ev.rebate_basis, TLY_BASIS_REVENUE);
    ck_assert_int_eq(ev.baseline_periods, 0);
    ck_assert_int_eq(ev.rebate_min, 0);
    ck_assert(!ev.has_rebate_cap && ev.rebate_cap == 0);
    ck_assert(!ev.has_mdf_cap && ev.mdf_cap_per_period == 0);
    ck_assert_int_eq(ev.tier_moves, TLY_MOVES_ANY);
    ck_assert_int_eq(ev.tier_grace_periods, 0);
    /* nil is absent: the defaults again. */
    json_t *j = jparse(v2_program);
    static const char *const opt[] = {
        "tiers/1/benefits",     "tiers/1/rebate_bonus_bps",
        "tiers/1/referral_bps", "rebate/min",
        "rebate/cap",           "mdf_cap_per_period",
        "tier_moves",           "tier_grace_periods",
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        jset(j, opt[i], json_null());
    tly_field_error fe;
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert(ev.tiers[1].benefit_count == 0 && ev.tiers[1].rebate_bonus_bps == 0);
    ck_assert(ev.tiers[1].referral_bps == 0 && ev.rebate_min == 0 && !ev.has_rebate_cap);
    ck_assert(!ev.has_mdf_cap && ev.tier_moves == TLY_MOVES_ANY && ev.tier_grace_periods == 0);
    json_decref(j);
}
END_TEST

START_TEST(test_v2_rate_referral_cert_fields)
{
    tly_event ev = decode_ok(v2_rate);
    ck_assert(tly_str_eq(ev.currency, "EUR") && tly_str_eq(ev.to, "USD"));
    ck_assert_int_eq(ev.rate.units, 10823);
    ck_assert_int_eq(ev.rate.scale, 4);
    ev = decode_ok(v2_referral);
    ck_assert(tly_str_eq(ev.partner, "margie") && tly_str_eq(ev.deal, "DEAL-56188"));
    ck_assert(ev.has_amount && ev.amount == 50434);
    ck_assert(tly_str_eq(ev.currency, "USD"));
    ev = decode_ok(v2_cert);
    ck_assert(ev.has_expires && ev.expires_ms == INT64_C(1767225600000));
    ck_assert_int_eq(ev.action, TLY_ACT_EARNED);
    /* Without expires (v1), and with a nil one. */
    json_t *j = jparse(v2_cert);
    jset(j, "expires", NULL);
    tly_field_error fe;
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert(!ev.has_expires && ev.expires_ms == 0);
    jset(j, "expires", json_null());
    jset(j, "action", json_string("revoked"));
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert(!ev.has_expires);
    json_decref(j);
}
END_TEST

/* ---------- rate [F1] [F6] ---------- */

START_TEST(test_v2_rate_text)
{
    static const struct {
        const char *text;
        int64_t units; /* 0: refused */
        int32_t scale;
    } cases[] = {
        {"1", 1, 0},
        {"1.0823", 10823, 4},
        {"001.50", 150, 2}, /* as written: the scale is the digits given */
        {"0.000000001", 1, 9},
        {"999999999", 999999999, 0},
        {"999999999.999999999", INT64_C(999999999999999999), 9},
        {"1234567890", 0, 0},   /* 10 digits before the point */
        {"1.1234567890", 0, 0}, /* 10 after it */
        /* digit runs far past the limits, which must be refused before
         * they overflow (a fuzz_jsonl find) */
        {"1.0699999999999999999999999999", 0, 0},
        {"99999999999999999999999999999.1", 0, 0},
        {"1.0699999999999999999999999999(9", 0, 0},
        {"0", 0, 0}, /* not > 0 */
        {"0.000000000", 0, 0},
        {"", 0, 0},
        {"1.", 0, 0},
        {".5", 0, 0},
        {"+1", 0, 0},
        {"-1", 0, 0},
        {"1e3", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"1,5", 0, 0},
        {"1.2.3", 0, 0},
        {"\xd9\xa1", 0, 0}, /* ARABIC-INDIC DIGIT ONE */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = jparse(v2_rate);
        jset(j, "rate", json_string(cases[i].text));
        tly_event ev;
        tly_field_error fe = {"", ""};
        tly_err err = decode_json(j, &ev, &fe);
        if (cases[i].units) {
            ck_assert_msg(err == TLY_OK, "'%s': %s", cases[i].text, fe.message);
            ck_assert_int_eq(ev.rate.units, cases[i].units);
            ck_assert_int_eq(ev.rate.scale, cases[i].scale);
        } else {
            ck_assert_msg(err == TLY_BAD_FIELD, "'%s' accepted", cases[i].text);
            ck_assert_str_eq(fe.field, "rate");
        }
        json_decref(j);
    }
}
END_TEST

/* TLY_RATE_INT_DIGITS_MAX and TLY_RATE_FRAC_DIGITS_MAX at their edges:
 * all nines in both parts is accepted, one more digit in either part is
 * bad_field on `rate`, with a message naming the digit limits. */
START_TEST(test_v2_limit_rate_digits)
{
    char text[TLY_RATE_INT_DIGITS_MAX + TLY_RATE_FRAC_DIGITS_MAX + 4];
    char want[64];
    snprintf(want, sizeof want, "1..%d digits before the point and 0..%d after",
             TLY_RATE_INT_DIGITS_MAX, TLY_RATE_FRAC_DIGITS_MAX);
    for (int extra_int = 0; extra_int <= 1; extra_int++) {
        for (int extra_frac = 0; extra_frac <= 1; extra_frac++) {
            int ints = TLY_RATE_INT_DIGITS_MAX + extra_int;
            int fracs = TLY_RATE_FRAC_DIGITS_MAX + extra_frac;
            memset(text, '9', (size_t)ints);
            text[ints] = '.';
            memset(text + ints + 1, '9', (size_t)fracs);
            text[ints + 1 + fracs] = '\0';
            json_t *j = jparse(v2_rate);
            jset(j, "rate", json_string(text));
            tly_event ev;
            tly_field_error fe = {"", ""};
            tly_err err = decode_json(j, &ev, &fe);
            if (!extra_int && !extra_frac) {
                ck_assert_msg(err == TLY_OK, "'%s': %s", text, fe.message);
                ck_assert_int_eq(ev.rate.scale, TLY_RATE_FRAC_DIGITS_MAX);
            } else {
                ck_assert_msg(err == TLY_BAD_FIELD, "'%s' accepted", text);
                ck_assert_str_eq(fe.field, "rate");
                ck_assert_msg(strstr(fe.message, want), "message: %s", fe.message);
            }
            json_decref(j);
        }
    }
}
END_TEST

START_TEST(test_v2_rate_fields)
{
    static const expect_case c[] = {
        /* the digits' limits at their edges */
        {&v2_rate, "rate", "\"123456789.123456789\"", TLY_OK, NULL},
        {&v2_rate, "rate", "\"1234567891.12345678\"", TLY_BAD_FIELD, "rate"},
        {&v2_rate, "rate", "\"12345678.1234567891\"", TLY_BAD_FIELD, "rate"},
        /* a number is not a rate: an int, and a JSON real already in import */
        {&v2_rate, "rate", "1", TLY_BAD_FIELD, "rate"},
        {&v2_rate, "rate", "1.0823", TLY_BAD_FIELD, "rate"},
        /* [F6] both currencies need a known minor-unit exponent */
        {&v2_rate, "currency", "\"JPY\"", TLY_OK, NULL},
        {&v2_rate, "to", "\"KWD\"", TLY_OK, NULL},
        {&v2_rate, "currency", "\"XXX\"", TLY_BAD_FIELD, "currency"},
        {&v2_rate, "to", "\"ABC\"", TLY_BAD_FIELD, "to"},
        {&v2_rate, "to", "\"usd\"", TLY_BAD_FIELD, "to"},
        {&v2_rate, "to", "\"USDX\"", TLY_BAD_FIELD, "to"},
        /* [F1] currency != to */
        {&v2_rate, "to", "\"EUR\"", TLY_BAD_FIELD, "to"},
        /* sale, return and referral keep v1's [A-Z]{3}: the engine decides */
        {&v1_sale, "currency", "\"XXX\"", TLY_OK, NULL},
        {&v2_referral, "currency", "\"ABC\"", TLY_OK, NULL},
        {&v2_referral, "currency", "\"usd\"", TLY_BAD_FIELD, "currency"},
    };
    expect_cases(c, sizeof c / sizeof c[0]);
    /* A real in JSON lines says what a rate is. */
    json_t *j = jparse(v2_rate);
    jset(j, "rate", json_real(1.0823));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(j, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "rate");
    ck_assert_ptr_nonnull(strstr(fe.message, "decimal string"));
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
}
END_TEST

/* Every required field of rate and referral: absent or nil is
 * missing_field, a wrong MessagePack type bad_field, naming it. */
START_TEST(test_v2_required_fields)
{
    static const struct {
        const char *const *sample;
        const char *path, *wrong;
    } req[] = {
        {&v2_rate, "currency", "978"},      {&v2_rate, "to", "840"},
        {&v2_rate, "rate", "[\"1.0\"]"},    {&v2_referral, "partner", "1"},
        {&v2_referral, "deal", "{}"},       {&v2_referral, "amount", "\"50434\""},
        {&v2_referral, "currency", "true"}, {&v2_program, "rebate/baseline_periods", "\"3\""},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        char field[64];
        snprintf(field, sizeof field, "%s", req[i].path);
        char *slash = strchr(field, '/');
        if (slash)
            *slash = '.';
        expect(*req[i].sample, req[i].path, NULL, TLY_MISSING_FIELD, field);
        expect(*req[i].sample, req[i].path, "null", TLY_MISSING_FIELD, field);
        expect(*req[i].sample, req[i].path, req[i].wrong, TLY_BAD_FIELD, field);
    }
}
END_TEST

/* ---------- program fields ---------- */

START_TEST(test_v2_program_enums_and_types)
{
    static const expect_case c[] = {
        {&v2_program, "rebate/basis", "\"revenue\"", TLY_BAD_FIELD, "rebate.baseline_periods"},
        {&v2_program, "rebate/basis", "\"profit\"", TLY_BAD_FIELD, "rebate.basis"},
        {&v2_program, "rebate/basis", "1", TLY_BAD_FIELD, "rebate.basis"},
        {&v2_program, "rebate/basis", "null", TLY_BAD_FIELD, "rebate.baseline_periods"},
        {&v2_program, "tier_moves", "\"two_step\"", TLY_BAD_FIELD, "tier_moves"},
        {&v2_program, "tier_moves", "\"any\"", TLY_OK, NULL},
        {&v2_program, "tier_moves", "true", TLY_BAD_FIELD, "tier_moves"},
        {&v2_program, "tiers/1/benefits", "\"NFR\"", TLY_BAD_FIELD, "tiers[1].benefits"},
        {&v2_program, "tiers/1/benefits", "{}", TLY_BAD_FIELD, "tiers[1].benefits"},
        {&v2_program, "tiers/1/benefits/1", "7", TLY_BAD_FIELD, "tiers[1].benefits[1]"},
        {&v2_program, "tiers/1/benefits/0", "null", TLY_BAD_FIELD, "tiers[1].benefits[0]"},
        {&v2_program, "tiers/1/benefits/1", "\"NFR licenses\"", TLY_OK, NULL}, /* repeats */
        {&v2_program, "tiers/1/rebate_bonus_bps", "\"25\"", TLY_BAD_FIELD,
         "tiers[1].rebate_bonus_bps"},
        {&v2_program, "tiers/0/referral_bps", "[]", TLY_BAD_FIELD, "tiers[0].referral_bps"},
        {&v2_program, "rebate/min", "\"0\"", TLY_BAD_FIELD, "rebate.min"},
        {&v2_program, "rebate/cap", "false", TLY_BAD_FIELD, "rebate.cap"},
        {&v2_program, "mdf_cap_per_period", "\"1\"", TLY_BAD_FIELD, "mdf_cap_per_period"},
        {&v2_program, "tier_grace_periods", "\"2\"", TLY_BAD_FIELD, "tier_grace_periods"},
        /* min above cap is the program's business, not a structural error */
        {&v2_program, "rebate/min", "390000", TLY_OK, NULL},
        /* a real anywhere is refused by the JSON import */
        {&v2_program, "tiers/1/rebate_bonus_bps", "25.0", TLY_BAD_FIELD,
         "tiers[1].rebate_bonus_bps"},
    };
    expect_cases(c, sizeof c / sizeof c[0]);
}
END_TEST

/* baseline_periods is required iff basis is growth [R11]. */
START_TEST(test_v2_baseline_iff_growth)
{
    expect(v2_program, "rebate/baseline_periods", NULL, TLY_MISSING_FIELD,
           "rebate.baseline_periods");
    expect(v2_program, "rebate/basis", NULL, TLY_BAD_FIELD, "rebate.baseline_periods");
    json_t *j = jparse(v2_program);
    jset(j, "rebate/basis", json_string("revenue"));
    jset(j, "rebate/baseline_periods", json_null()); /* nil is absent */
    tly_event ev;
    tly_field_error fe;
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.rebate_basis, TLY_BASIS_REVENUE);
    ck_assert_int_eq(ev.baseline_periods, 0);
    jset(j, "rebate/basis", NULL);
    jset(j, "rebate/baseline_periods", NULL);
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.rebate_basis, TLY_BASIS_REVENUE);
    json_decref(j);
}
END_TEST

START_TEST(test_v2_limit_program_ranges)
{
    expect_int_range(v2_program, "rebate/baseline_periods", "rebate.baseline_periods", 1,
                     TLY_BASELINE_PERIODS_MAX);
    expect_int_range(v2_program, "tier_grace_periods", "tier_grace_periods", 0,
                     TLY_GRACE_PERIODS_MAX);
    expect_int_range(v2_program, "tiers/1/rebate_bonus_bps", "tiers[1].rebate_bonus_bps", 0,
                     TLY_BPS_MAX);
    expect_int_range(v2_program, "tiers/0/referral_bps", "tiers[0].referral_bps", 0, TLY_BPS_MAX);
    expect_int_range(v2_program, "rebate/min", "rebate.min", 0, TLY_AMOUNT_MAX);
    expect_int_range(v2_program, "rebate/cap", "rebate.cap", 1, TLY_AMOUNT_MAX);
    expect_int_range(v2_program, "mdf_cap_per_period", "mdf_cap_per_period", 1, TLY_AMOUNT_MAX);
}
END_TEST

/* A tier's benefits: at most TLY_BENEFITS_MAX, each 1..TLY_BENEFIT_BYTES_MAX. */
START_TEST(test_v2_limit_benefits)
{
    for (unsigned n = TLY_BENEFITS_MAX; n <= TLY_BENEFITS_MAX + 1; n++) {
        json_t *a = json_array();
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(a, json_string("beta access"));
        expect_val(v2_program, "tiers/1/benefits", a,
                   n <= TLY_BENEFITS_MAX ? TLY_OK : TLY_BAD_FIELD, "tiers[1].benefits");
    }
    expect(v2_program, "tiers/1/benefits", "[]", TLY_OK, NULL);
    expect_val(v2_program, "tiers/1/benefits/1", jrepeat('b', TLY_BENEFIT_BYTES_MAX), TLY_OK, NULL);
    expect_val(v2_program, "tiers/1/benefits/1", jrepeat('b', TLY_BENEFIT_BYTES_MAX + 1),
               TLY_BAD_FIELD, "tiers[1].benefits[1]");
    expect_val(v2_program, "tiers/1/benefits/1", jrepeat('b', 1), TLY_OK, NULL);
    expect_val(v2_program, "tiers/1/benefits/1", jrepeat('b', 0), TLY_BAD_FIELD,
               "tiers[1].benefits[1]");
    /* 16 tiers of 16 benefits each decode whole (the struct's bound). */
    json_t *j = jparse(v2_program);
    json_t *tiers = json_object_get(j, "tiers");
    json_t *last = json_array_get(tiers, 1);
    for (unsigned i = 0; i < TLY_BENEFITS_MAX; i++)
        json_array_append_new(json_object_get(last, "benefits"), json_sprintf("b%u", i));
    json_array_remove(json_object_get(last, "benefits"), 0);
    json_array_remove(json_object_get(last, "benefits"), 0);
    for (unsigned t = 2; t < TLY_TIERS_MAX; t++) {
        json_t *copy = json_deep_copy(last);
        json_object_set_new(copy, "name", json_sprintf("T%u", t));
        json_array_append_new(tiers, copy);
    }
    tly_event ev;
    tly_field_error fe;
    ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_OK);
    ck_assert_uint_eq(ev.tier_count, TLY_TIERS_MAX);
    ck_assert_uint_eq(ev.tiers[TLY_TIERS_MAX - 1].benefit_count, TLY_BENEFITS_MAX);
    ck_assert(tly_str_eq(ev.tiers[TLY_TIERS_MAX - 1].benefits[TLY_BENEFITS_MAX - 1], "b15"));
    json_decref(j);
}
END_TEST

/* ---------- referral [Q1] ---------- */

START_TEST(test_v2_limit_referral)
{
    expect_int_range(v2_referral, "amount", "amount", 1, TLY_AMOUNT_MAX);
    static const char *const names[] = {"partner", "deal"};
    for (size_t i = 0; i < 2; i++) {
        expect_val(v2_referral, names[i], jrepeat('d', TLY_NAME_BYTES_MAX), TLY_OK, NULL);
        expect_val(v2_referral, names[i], jrepeat('d', TLY_NAME_BYTES_MAX + 1), TLY_BAD_FIELD,
                   names[i]);
        expect_val(v2_referral, names[i], jrepeat('d', 0), TLY_BAD_FIELD, names[i]);
    }
    /* A referral has no sku or qty: they are keys it does not read. */
    expect(v2_referral, "sku", "{\"x\":[1,2]}", TLY_OK, NULL);
    expect(v2_referral, "qty", "\"many\"", TLY_OK, NULL);
}
END_TEST

/* ---------- certification expires [T10] [T13] ---------- */

START_TEST(test_v2_expires)
{
    expect_val(v2_cert, "expires", json_integer(T0 + 1), TLY_OK, NULL);
    expect_val(v2_cert, "expires", json_integer(T0), TLY_BAD_FIELD, "expires");
    expect_val(v2_cert, "expires", json_integer(T0 - 1), TLY_BAD_FIELD, "expires");
    expect_val(v2_cert, "expires", json_integer(TLY_EXPIRES_MAX_MS), TLY_OK, NULL);
    expect_val(v2_cert, "expires", json_integer(TLY_EXPIRES_MAX_MS + 1), TLY_BAD_FIELD, "expires");
    expect(v2_cert, "expires", "[1]", TLY_BAD_FIELD, "expires");
    /* [T13] only with earned */
    static const char *const other[] = {"expired", "revoked"};
    for (size_t i = 0; i < 2; i++) {
        json_t *j = jparse(v2_cert);
        jset(j, "action", json_string(other[i]));
        tly_event ev;
        tly_field_error fe;
        ck_assert_int_eq(decode_json(j, &ev, &fe), TLY_BAD_FIELD);
        ck_assert_str_eq(fe.field, "expires");
        json_decref(j);
    }
    /* On other types `expires` is a key they do not read. */
    expect(v1_sale, "expires", "\"soon\"", TLY_OK, NULL);
    expect(v1_sale, "expires", "1", TLY_OK, NULL);
}
END_TEST

/* In JSON lines `expires` may be ISO-8601 text, like `at`: the same bytes
 * as the int. */
START_TEST(test_v2_expires_iso_text)
{
    json_t *a = jparse(v2_cert);
    json_t *b = jparse(v2_cert);
    jset(b, "expires", json_string("2026-01-01T01:00:00+01:00"));
    jset(b, "at", json_string("2025-01-01"));
    msgpack_sbuffer sa, sb;
    msgpack_sbuffer_init(&sa);
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_json_event_to_mp(a, &sa, NULL), TLY_OK);
    ck_assert_int_eq(tly_json_event_to_mp(b, &sb, NULL), TLY_OK);
    ck_assert_uint_eq(sa.size, sb.size);
    ck_assert(memcmp(sa.data, sb.data, sa.size) == 0);
    msgpack_sbuffer_destroy(&sb);
    /* Bad text is bad_field on expires, nothing appended. */
    tly_field_error fe;
    jset(b, "expires", json_string("2026-02-30"));
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_json_event_to_mp(b, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "expires");
    ck_assert_uint_eq(sb.size, 0);
    /* The type decides, wherever it stands: a sale's `expires` stays text. */
    json_t *s = jparse(v1_sale);
    jset(s, "expires", json_string("2026-01-01"));
    ck_assert_int_eq(tly_json_event_to_mp(s, &sb, NULL), TLY_OK);
    json_t *back = tly_json_from_mp(sb.data, sb.size);
    ck_assert_str_eq(json_string_value(json_object_get(back, "expires")), "2026-01-01");
    json_decref(back);
    json_decref(s);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sa);
    json_decref(a);
    json_decref(b);
}
END_TEST

/* A section 10 key repeated in one map is bad_field on it, like v1's. */
START_TEST(test_v2_duplicate_keys)
{
    static const char *const keys[] = {"rate", "to", "expires", "tier_grace_periods"};
    static const char *const *const samples[] = {&v2_rate, &v2_rate, &v2_cert, &v2_program};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *j = jparse(*samples[i]);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
        size_t n = json_object_size(j);
        ck_assert_uint_lt(n, 15);
        ck_assert_int_eq((uint8_t)sb.data[0], 0x80 | n);
        sb.data[0] = (char)(0x80 | (n + 1));
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        msgpack_pack_str_with_body(&pk, "2", 1);
        tly_event ev;
        tly_field_error fe;
        ck_assert_int_eq(tly_event_decode(sb.data, sb.size, REC_MS, &ev, &fe), TLY_BAD_FIELD);
        ck_assert_str_eq(fe.field, keys[i]);
        msgpack_sbuffer_destroy(&sb);
        json_decref(j);
    }
}
END_TEST

/* ---------- the public v2 vectors ---------- */

/* Every record of seed102-v2-events.jsonl decodes: JSON lines to
 * MessagePack (tly_json_event_to_mp, what `tally send` runs) and the
 * ledger's decoder, with the counts of each type the vectors' README
 * implies. */
START_TEST(test_v2_vectors_all_decode)
{
    char *path = tu_vector("seed102-v2-events.jsonl");
    size_t len;
    char *text = tu_read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    size_t lines = 0, by_type[TLY_EV_COUNT] = {0}, expiring = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *r = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        ck_assert_msg(r != NULL, "line %zu: %s", lines + 1, je.text);
        tly_event ev;
        tly_field_error fe = {"", ""};
        tly_err err = decode_json(json_object_get(r, "event"), &ev, &fe);
        ck_assert_msg(err == TLY_OK, "line %zu: %s %s", lines + 1, tly_err_name(err), fe.message);
        by_type[ev.type]++;
        expiring += ev.has_expires;
        json_decref(r);
        lines++;
    }
    ck_assert_uint_eq(lines, 3017);
    ck_assert_uint_eq(by_type[TLY_EV_RATE], 520);
    ck_assert_uint_eq(by_type[TLY_EV_REFERRAL], 41);
    ck_assert_uint_eq(by_type[TLY_EV_PROGRAM], 5);
    ck_assert_uint_eq(by_type[TLY_EV_SALE], 1938);
    ck_assert_uint_eq(expiring, 55);
    free(text);
    free(path);
}
END_TEST

static Suite *v2_suite(void)
{
    Suite *s = suite_create("schemas_v2");
    TCase *ev = tu_tcase(s, "event", 120);
    tu_add_tests(ev, TU_TESTS(test_v2_round_trip, test_v2_program_fields,
                              test_v2_rate_referral_cert_fields, test_v2_rate_text,
                              test_v2_rate_fields, test_v2_required_fields,
                              test_v2_program_enums_and_types, test_v2_baseline_iff_growth,
                              test_v2_expires, test_v2_expires_iso_text, test_v2_duplicate_keys));
    TCase *lim = tu_tcase(s, "limits", 120);
    tu_add_tests(lim, TU_TESTS(test_v2_limit_program_ranges, test_v2_limit_benefits,
                               test_v2_limit_referral, test_v2_limit_rate_digits));
    TCase *vec = tu_tcase(s, "vectors", 120);
    tu_add_tests(vec, TU_TESTS(test_v2_vectors_all_decode));
    return s;
}

int main(void)
{
    return tu_run_suite(v2_suite());
}
