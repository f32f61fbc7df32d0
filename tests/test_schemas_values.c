/*
 * test_schemas_values.c — what an event may hold besides its fields
 * (issue 8, items 1 and 7): every value no field rule reads must be
 * something JSON lines can carry, so that `tally audit export` handles every
 * event the ledger accepts; the source of a request is text without control
 * bytes; a per-event error always names its field.
 *
 * The properties checked for every shape, accepted or refused:
 * - tly_event_decode accepts exactly the values tly_json_from_mp converts
 *   and JSON can print (json_dumpb), nothing more;
 * - a refused value is bad_field naming its key (the innermost key above
 *   it), with a message that starts with that name;
 * - JSON import (tly_json_event_to_mp) and export agree on the nesting
 *   limit TLY_EVENT_DEPTH_MAX, tested at its edge.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_currency.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_mp.h"
#include "tly_wire.h"

/* Recorded time of the decodes: 2026-01-01T00:00:00Z. */
#define TV_RECORDED_MS INT64_C(1767225600000)

/* A sale with 8 keys (a fixmap), business time 2025-01-01. */
static const char *const tv_sale =
    "{\"type\":\"sale\",\"id\":\"S-1\",\"at\":1735689600000,\"partner\":\"acme\","
    "\"sku\":\"SKU-9\",\"qty\":3,\"amount\":123450,\"currency\":\"USD\"}";

/* Shapes every reader handles: accepted under an unknown key. */
static const tu_shape accepted[] = {
    TU_SHAPE("nil", "\xc0"),
    TU_SHAPE("true", "\xc3"),
    TU_SHAPE("false", "\xc2"),
    TU_SHAPE("int min", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    TU_SHAPE("int max", "\xd3\x7f\xff\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("uint max", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("negative fixint", "\xff"),
    TU_SHAPE("float32 1.5", "\xca\x3f\xc0\x00\x00"),
    TU_SHAPE("float64 pi", "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18"),
    TU_SHAPE("float64 -0", "\xcb\x80\x00\x00\x00\x00\x00\x00\x00"),
    TU_SHAPE("float64 max", "\xcb\x7f\xef\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("float64 denormal", "\xcb\x00\x00\x00\x00\x00\x00\x00\x01"),
    TU_SHAPE("str", "\xa5hello"),
    TU_SHAPE("str empty", "\xd9\x00"),
    TU_SHAPE("str controls", "\xa3\x01\x1f\x7f"),
    TU_SHAPE("str UTF-8", "\xa9\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"), /* é € 𝄞 */
    TU_SHAPE("bin", "\xc4\x03\x01\x02\x03"),
    TU_SHAPE("bin empty", "\xc4\x00"),
    TU_SHAPE("array", "\x93\x01\xa1"
                      "a\xc0"),
    TU_SHAPE("array empty", "\x90"),
    TU_SHAPE("map", "\x82\xa1"
                    "a\x01\xa1"
                    "b\x92\xc2\xc3"),
    TU_SHAPE("map empty", "\x80"),
    TU_SHAPE("map empty key and control key", "\x82\xa0\x01\xa2"
                                              "a\x01\x02"),
    TU_SHAPE("map repeated key", "\x82\xa1"
                                 "a\x01\xa1"
                                 "a\x02"),
    /* level 2 (the value) .. 8: six arrays, the int at level 8 */
    TU_SHAPE("nested to the limit", "\x91\x91\x91\x91\x91\x91\x01"),
    /* seven arrays, the innermost (level 8) empty */
    TU_SHAPE("empty at the limit", "\x91\x91\x91\x91\x91\x91\x90"),
    TU_SHAPE("maps to the limit", "\x81\xa1"
                                  "a\x81\xa1"
                                  "b\x81\xa1"
                                  "c\x81\xa1"
                                  "d\x81\xa1"
                                  "e\x81\xa1"
                                  "f\xa1"
                                  "z"),
};

/* A refused shape and the field the refusal names when the value sits
 * under the key "x-note". Export could not convert any of them, except
 * invalid UTF-8, which it would show with U+FFFD, and NUL, which it would
 * write as \u0000 that jansson (`tally send`) cannot load back. */
typedef struct tv_refused {
    tu_shape shape;
    const char *field;
} tv_refused;

static const tv_refused refused[] = {
    {TU_SHAPE("float64 NaN", "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("float64 +inf", "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("float64 -inf", "\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("float32 NaN", "\xca\x7f\xc0\x00\x00"), "x-note"},
    {TU_SHAPE("float32 +inf", "\xca\x7f\x80\x00\x00"), "x-note"},
    {TU_SHAPE("float32 -inf", "\xca\xff\x80\x00\x00"), "x-note"},
    {TU_SHAPE("fixext 1", "\xd4\x01\x00"), "x-note"},
    {TU_SHAPE("fixext 16", "\xd8\x01"
                           "0123456789abcdef"),
     "x-note"},
    {TU_SHAPE("ext 8", "\xc7\x02\x05\xaa\xbb"), "x-note"},
    {TU_SHAPE("ext 16 empty", "\xc8\x00\x00\x05"), "x-note"},
    {TU_SHAPE("ext 32", "\xc9\x00\x00\x00\x01\x05\xaa"), "x-note"},
    /* the brief's example: {"x-note":[[[[[[[1]]]]]]]}, the int at level 9 */
    {TU_SHAPE("limit + 1", "\x91\x91\x91\x91\x91\x91\x91\x01"), "x-note"},
    {TU_SHAPE("empty at limit + 1", "\x91\x91\x91\x91\x91\x91\x91\x90"), "x-note"},
    {TU_SHAPE("maps to limit + 1", "\x81\xa1"
                                   "a\x81\xa1"
                                   "b\x81\xa1"
                                   "c\x81\xa1"
                                   "d\x81\xa1"
                                   "e\x81\xa1"
                                   "f\x81\xa1"
                                   "g\x01"),
     "x-note.a.b.c.d.e.f.g"},
    {TU_SHAPE("int key", "\x81\x01\x02"), "x-note"},
    {TU_SHAPE("nil key", "\x82\xa1"
                         "a\x01\xc0\x02"),
     "x-note"},
    {TU_SHAPE("invalid UTF-8 str", "\xa2\xc3\x28"), "x-note"},
    {TU_SHAPE("surrogate str", "\xa3\xed\xa0\x80"), "x-note"},
    {TU_SHAPE("invalid UTF-8 key", "\x81\xa1\xff\x01"), "x-note.\\xff"},
    {TU_SHAPE("str NUL", "\xa3"
                         "a\x00"
                         "b"),
     "x-note"},
    {TU_SHAPE("NUL key", "\x81\xa2"
                         "a\x00\x01"),
     "x-note.a\\x00"},
    {TU_SHAPE("NaN in a map", "\x81\xa1y\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "x-note.y"},
    {TU_SHAPE("ext in an array", "\x92\x01\xd4\x01\x00"), "x-note"},
    {TU_SHAPE("ext in a map in an array", "\x91\x81\xa1"
                                          "a\xd4\x01\x00"),
     "x-note[0].a"},
};

/* The sale with one more key k (klen bytes) holding value v. */
static void sale_with(const char *k, size_t klen, const void *v, size_t vlen, msgpack_sbuffer *sb)
{
    json_error_t je;
    json_t *j = json_loads(tv_sale, 0, &je);
    ck_assert_ptr_nonnull(j);
    msgpack_sbuffer_init(sb);
    ck_assert_int_eq(tly_json_event_to_mp(j, sb, NULL), TLY_OK);
    json_decref(j);
    ck_assert_uint_eq((uint8_t)sb->data[0], 0x88);
    sb->data[0] = (char)0x89;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, k, klen);
    msgpack_sbuffer_write(sb, v, vlen);
}

static tly_err decode(const msgpack_sbuffer *sb, tly_field_error *fe)
{
    tly_event ev;
    memset(fe, 0, sizeof *fe);
    return tly_event_decode(sb->data, sb->size, TV_RECORDED_MS, &ev, fe);
}

/* True when export's conversion handles the bytes: tly_json_from_mp gives
 * an object and JSON prints it. */
static bool exports(const void *buf, size_t len)
{
    json_t *j = tly_json_from_mp(buf, len);
    if (!j)
        return false;
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    bool ok = text != NULL;
    free(text);
    return ok;
}

START_TEST(test_accepted_shapes_export)
{
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        tu_shape s = accepted[i];
        msgpack_sbuffer sb;
        sale_with("x-note", 6, s.bytes, s.len, &sb);
        tly_field_error fe;
        tly_err err = decode(&sb, &fe);
        ck_assert_msg(err == TLY_OK, "%s: %s (%s)", s.name, tly_err_name(err), fe.message);
        ck_assert_msg(exports(sb.data, sb.size), "%s: accepted but export cannot convert", s.name);
        ck_assert_msg(exports(s.bytes, s.len), "%s: the value alone does not convert", s.name);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

START_TEST(test_refused_shapes_name_the_key)
{
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const tv_refused *r = &refused[i];
        msgpack_sbuffer sb;
        sale_with("x-note", 6, r->shape.bytes, r->shape.len, &sb);
        ck_assert_msg(tly_mp_is_single_value(sb.data, sb.size), "%s: test bytes", r->shape.name);
        tly_field_error fe;
        tly_err err = decode(&sb, &fe);
        ck_assert_msg(err == TLY_BAD_FIELD, "%s: got %s", r->shape.name, tly_err_name(err));
        ck_assert_msg(strcmp(fe.field, r->field) == 0, "%s: field '%s', want '%s'", r->shape.name,
                      fe.field, r->field);
        ck_assert_msg(strncmp(fe.message, fe.field, strlen(fe.field)) == 0, "%s: message '%s'",
                      r->shape.name, fe.message);
        ck_assert_msg(tly_utf8_valid(fe.field, strlen(fe.field)), "%s", r->shape.name);
        /* what the validator refuses, export could not have converted */
        bool lossy = strstr(r->shape.name, "UTF-8") || strstr(r->shape.name, "surrogate") ||
                     strstr(r->shape.name, "NUL");
        ck_assert_msg(lossy || !exports(sb.data, sb.size), "%s: refused yet convertible",
                      r->shape.name);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

/* Beyond what the reader reads at all (TLY_MP_DEPTH_MAX containers in the
 * event), the event is malformed; one container less is bad_field. */
START_TEST(test_nesting_past_the_reader)
{
    uint8_t v[TLY_MP_DEPTH_MAX + 1];
    for (unsigned n = TLY_EVENT_DEPTH_MAX - 1; n <= TLY_MP_DEPTH_MAX; n++) {
        /* n arrays under x-note, the innermost holding an int */
        memset(v, 0x91, n);
        v[n] = 0x01;
        msgpack_sbuffer sb;
        sale_with("x-note", 6, v, n + 1, &sb);
        tly_field_error fe;
        tly_err want = n + 2 <= TLY_EVENT_DEPTH_MAX ? TLY_OK
                       : n + 1 <= TLY_MP_DEPTH_MAX  ? TLY_BAD_FIELD
                                                    : TLY_MALFORMED;
        ck_assert_msg(decode(&sb, &fe) == want, "%u arrays: %s", n, fe.message);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

/* Replaces the str "@MARK@" in sb's bytes by a float 64 NaN. */
static void replace_marker(msgpack_sbuffer *sb)
{
    static const char mark[] = "\xa6@MARK@";
    char *at = NULL;
    for (size_t i = 0; !at && i + sizeof mark - 1 <= sb->size; i++)
        if (memcmp(sb->data + i, mark, sizeof mark - 1) == 0)
            at = sb->data + i;
    ck_assert_ptr_nonnull(at);
    size_t off = (size_t)(at - sb->data), rest = sb->size - off - (sizeof mark - 1);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_sbuffer_write(&out, sb->data, off);
    msgpack_sbuffer_write(&out, "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9);
    msgpack_sbuffer_write(&out, at + sizeof mark - 1, rest);
    msgpack_sbuffer_destroy(sb);
    *sb = out;
}

/* Unknown keys inside known maps, known keys the type does not read and a
 * claim's ignored amount are held to the same rule. */
START_TEST(test_values_nobody_reads)
{
    static const struct {
        const char *json_path; /* where "NaN" goes; the JSON is built by hand */
        const char *event;
        const char *field;
    } cases[] = {
        {"tiers[1]",
         "{\"type\":\"program\",\"id\":\"P\",\"at\":1735689600000,\"program\":\"p\","
         "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
         "{\"name\":\"a\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":1},"
         "{\"name\":\"b\",\"min_revenue\":1,\"min_certs\":1,\"mdf_bps\":2,\"x\":@}],"
         "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,\"bps\":1}]},"
         "\"mdf_expiry_periods\":1,\"tier_window_periods\":1}",
         "tiers[1].x"},
        {"rebate",
         "{\"type\":\"program\",\"id\":\"P\",\"at\":1735689600000,\"program\":\"p\","
         "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
         "{\"name\":\"a\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":1}],"
         "\"rebate\":{\"x\":@,\"mode\":\"incremental\",\"brackets\":[{\"from\":0,"
         "\"bps\":1}]},\"mdf_expiry_periods\":1,\"tier_window_periods\":1}",
         "rebate.x"},
        {"bracket",
         "{\"type\":\"program\",\"id\":\"P\",\"at\":1735689600000,\"program\":\"p\","
         "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
         "{\"name\":\"a\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":1}],"
         "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,"
         "\"bps\":1,\"x\":@}]},\"mdf_expiry_periods\":1,\"tier_window_periods\":1}",
         "rebate.brackets[0].x"},
        {"unused known key",
         "{\"type\":\"sale\",\"id\":\"S\",\"at\":1735689600000,"
         "\"partner\":\"a\",\"sku\":\"k\",\"qty\":1,\"amount\":1,"
         "\"currency\":\"USD\",\"tiers\":@}",
         "tiers"},
        {"claim cancel amount",
         "{\"type\":\"claim\",\"id\":\"C\",\"at\":1735689600000,"
         "\"partner\":\"a\",\"claim\":\"c\",\"action\":\"cancel\","
         "\"amount\":@}",
         "amount"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* "@" becomes the str "@MARK@" (accepted), then a NaN (refused) */
        for (int bad = 0; bad < 2; bad++) {
            const char *at = strchr(cases[i].event, '@');
            char text[1024];
            snprintf(text, sizeof text, "%.*s\"@MARK@\"%s", (int)(at - cases[i].event),
                     cases[i].event, at + 1);
            json_error_t je;
            json_t *j = json_loads(text, 0, &je);
            ck_assert_msg(j != NULL, "%s: %s", cases[i].json_path, je.text);
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
            json_decref(j);
            if (bad)
                replace_marker(&sb);
            tly_field_error fe;
            tly_err err = decode(&sb, &fe);
            ck_assert_msg(err == (bad ? TLY_BAD_FIELD : TLY_OK), "%s bad=%d: %s (%s)",
                          cases[i].json_path, bad, tly_err_name(err), fe.message);
            if (bad)
                ck_assert_str_eq(fe.field, cases[i].field);
            ck_assert(exports(sb.data, sb.size) == !bad);
            msgpack_sbuffer_destroy(&sb);
        }
    }
}
END_TEST

/* A claim's amount on cancel is still not type-checked: any value JSON can
 * carry is fine [C3]. */
START_TEST(test_claim_cancel_amount_any_json)
{
    static const char *const values[] = {"\"lots\"", "-5", "0", "[1,{\"a\":null}]", "true"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"type\":\"claim\",\"id\":\"C\",\"at\":1735689600000,\"partner\":\"a\","
                 "\"claim\":\"c\",\"action\":\"reject\",\"amount\":%s}",
                 values[i]);
        json_t *j = json_loads(text, 0, NULL);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
        json_decref(j);
        tly_field_error fe;
        ck_assert_msg(decode(&sb, &fe) == TLY_OK, "%s: %s", values[i], fe.message);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

/* An unknown top-level key itself must be UTF-8; the field shows its bytes
 * escaped, and an empty key as "". */
START_TEST(test_key_names_in_fields)
{
    msgpack_sbuffer sb;
    tly_field_error fe;
    sale_with("\xff\x01z", 3, "\x01", 1, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "\\xff\\x01z");
    msgpack_sbuffer_destroy(&sb);
    sale_with("", 0, "\xd4\x01\x00", 3, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "\"\"");
    msgpack_sbuffer_destroy(&sb);
    /* a valid key with a control byte is fine; its name is escaped in a field */
    sale_with("a\tb", 3, "\xd4\x01\x00", 3, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "a\\x09b");
    msgpack_sbuffer_destroy(&sb);
    sale_with("a\tb", 3, "\x01", 1, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_OK);
    msgpack_sbuffer_destroy(&sb);
    /* a long key is cut at a character boundary inside the field */
    char key[200];
    for (size_t i = 0; i + 2 <= sizeof key; i += 2)
        memcpy(key + i, "\xc3\xa9", 2);
    sale_with(key, sizeof key, "\xd4\x01\x00", 3, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_uint_gt(strlen(fe.field), 0);
    ck_assert_uint_lt(strlen(fe.field), sizeof fe.field);
    ck_assert(tly_utf8_valid(fe.field, strlen(fe.field)));
    msgpack_sbuffer_destroy(&sb);
    /* an inner key of 4-byte characters that cannot start in the room left
     * leaves the outer key alone, without a dangling "." */
    char v[2 + 20 + 9];
    v[0] = (char)0x81;
    v[1] = (char)(0xa0 | 20); /* fixstr of 20 bytes: five 4-byte characters */
    for (int c = 0; c < 5; c++)
        memcpy(v + 2 + 4 * c, "\xf0\x9d\x84\x9e", 4);
    memcpy(v + 22, "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9);
    char outer[61];
    memset(outer, 'o', sizeof outer);
    sale_with(outer, sizeof outer, v, sizeof v, &sb);
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_uint_eq(strlen(fe.field), sizeof outer);
    ck_assert_int_eq(memcmp(fe.field, outer, sizeof outer), 0);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* A JSON value nested `levels` deep under key (the event is level 1): an
 * int wrapped in arrays, or in objects keyed "k". */
static json_t *json_nested(unsigned levels, bool objects)
{
    json_t *v = json_integer(1);
    for (unsigned l = 3; l <= levels; l++) {
        json_t *c = objects ? json_object() : json_array();
        if (objects)
            json_object_set_new(c, "k", v);
        else
            json_array_append_new(c, v);
        v = c;
    }
    return v;
}

/* JSON import and the decoder share the limit: at TLY_EVENT_DEPTH_MAX both
 * accept (and export converts), one level more both refuse, naming the
 * same field. */
START_TEST(test_json_import_agrees_at_the_limit)
{
    for (int objects = 0; objects < 2; objects++) {
        for (unsigned levels = TLY_EVENT_DEPTH_MAX; levels <= TLY_EVENT_DEPTH_MAX + 1; levels++) {
            json_t *j = json_loads(tv_sale, 0, NULL);
            /* the value under x-deep is level 2, its innermost int `levels` */
            json_object_set_new(j, "x-deep", json_nested(levels, objects));
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            tly_field_error jfe = {"", ""};
            tly_err jerr = tly_json_event_to_mp(j, &sb, &jfe);
            bool over = levels > TLY_EVENT_DEPTH_MAX;
            ck_assert_int_eq(jerr, over ? TLY_BAD_FIELD : TLY_OK);
            const char *want = !over ? "" : objects ? "x-deep.k.k.k.k.k.k.k" : "x-deep";
            ck_assert_str_eq(jfe.field, want);
            if (!over) {
                tly_field_error fe;
                ck_assert_int_eq(decode(&sb, &fe), TLY_OK);
                ck_assert(exports(sb.data, sb.size));
            }
            msgpack_sbuffer_destroy(&sb);
            json_decref(j);
        }
    }
}
END_TEST

/* Over the limit by MessagePack, the decoder names the same field as JSON
 * import does for the same shape. */
START_TEST(test_decoder_names_like_import)
{
    /* objects nested to level 9: x-deep.k.k.k.k.k.k.k holds the int */
    msgpack_sbuffer v;
    msgpack_sbuffer_init(&v);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &v, msgpack_sbuffer_write);
    for (unsigned l = 3; l <= TLY_EVENT_DEPTH_MAX + 1; l++) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "k", 1);
    }
    msgpack_pack_int(&pk, 1);
    msgpack_sbuffer sb;
    sale_with("x-deep", 6, v.data, v.size, &sb);
    tly_field_error fe;
    ck_assert_int_eq(decode(&sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "x-deep.k.k.k.k.k.k.k");
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&v);
}
END_TEST

/* Every accepted JSON event exports, and the export converts back to the
 * same bytes: import and export agree. */
START_TEST(test_json_round_trip_at_the_limit)
{
    json_t *j = json_loads(tv_sale, 0, NULL);
    json_object_set_new(j, "x-a", json_nested(TLY_EVENT_DEPTH_MAX, false));
    json_object_set_new(j, "x-o", json_nested(TLY_EVENT_DEPTH_MAX, true));
    json_object_set_new(j, "x-s", json_string("tab\there \xc3\xa9"));
    json_object_set_new(j, "", json_null());
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    ck_assert_int_eq(tly_json_event_to_mp(j, &a, NULL), TLY_OK);
    json_t *back = tly_json_from_mp(a.data, a.size);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(tly_json_event_to_mp(back, &b, NULL), TLY_OK);
    ck_assert_uint_eq(a.size, b.size);
    ck_assert_int_eq(memcmp(a.data, b.data, a.size), 0);
    tly_field_error fe;
    ck_assert_int_eq(decode(&a, &fe), TLY_OK);
    json_decref(back);
    json_decref(j);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}
END_TEST

/* The JSON converter refuses reals with the exact path, as before. */
START_TEST(test_json_real_path)
{
    json_t *j = json_loads(tv_sale, 0, NULL);
    json_object_set_new(j, "x", json_loads("[1, {\"a\": [2, 2.5]}]", 0, NULL));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(j, &sb, &fe), TLY_BAD_FIELD);
    ck_assert_str_eq(fe.field, "x[1].a[1]");
    ck_assert_uint_eq(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
}
END_TEST

/* Names and texts are UTF-8 without NUL (a NUL in a partner name made
 * replay fail on its view documents); other control characters are fine
 * (test_hostile.c shows them reaching every reader). */
START_TEST(test_names_refuse_nul)
{
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"type\":\"sale\",\"id\":\"S\",\"at\":1735689600000,\"partner\":\"a\\u0000b\","
         "\"sku\":\"k\",\"qty\":1,\"amount\":1,\"currency\":\"USD\"}",
         "partner"},
        {"{\"type\":\"claim\",\"id\":\"C\",\"at\":1735689600000,\"partner\":\"a\","
         "\"claim\":\"c\",\"action\":\"reject\",\"reason\":\"no\\u0000\"}",
         "reason"},
        {"{\"type\":\"program\",\"id\":\"P\",\"at\":1735689600000,\"program\":\"p\","
         "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":[{\"name\":"
         "\"\\u0000\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":1}],\"rebate\":{\"mode\":"
         "\"incremental\",\"brackets\":[{\"from\":0,\"bps\":1}]},\"mdf_expiry_periods\":1,"
         "\"tier_window_periods\":1}",
         "tiers[0].name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t je;
        json_t *j = json_loads(cases[i].json, JSON_ALLOW_NUL, &je);
        ck_assert_msg(j != NULL, "case %zu: %s", i, je.text);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
        json_decref(j);
        tly_field_error fe;
        tly_err err = decode(&sb, &fe);
        ck_assert_msg(err == TLY_BAD_FIELD, "case %zu: %s", i, tly_err_name(err));
        ck_assert_str_eq(fe.field, cases[i].field);
        msgpack_sbuffer_destroy(&sb);
    }
}
END_TEST

/* ---------- source ---------- */

START_TEST(test_source_valid_edges)
{
    char s[TLY_SOURCE_BYTES_MAX + 1];
    memset(s, 'a', sizeof s);
    ck_assert(tly_source_valid(s, TLY_SOURCE_BYTES_MAX));
    ck_assert(!tly_source_valid(s, TLY_SOURCE_BYTES_MAX + 1));
    ck_assert(!tly_source_valid(s, 0));
    ck_assert(tly_source_valid("dist-a", 6));
    ck_assert(tly_source_valid("d \xc3\xa9~", 5)); /* space, é and ~ are text */
    ck_assert(!tly_source_valid("dist-a\0other", 12));
    ck_assert(!tly_source_valid("\0", 1));
    for (unsigned c = 0; c < 0x20; c++) {
        char one[3] = {'a', (char)c, 'b'};
        ck_assert_msg(!tly_source_valid(one, 3), "control byte %02x accepted", c);
    }
    ck_assert(!tly_source_valid("a\x7f", 2));
    ck_assert(!tly_source_valid("a\xff", 2));
    ck_assert(!tly_source_valid("\xc3", 1));
}
END_TEST

/* A request whose declared source holds a NUL or another control byte is
 * malformed as a whole (no prefix of it is ever used). */
START_TEST(test_wire_source_control_bytes)
{
    static const struct {
        const char *s;
        size_t len;
        tly_err want;
    } cases[] = {
        {"dist-a", 6, TLY_OK},          {"dist-a\0other", 12, TLY_MALFORMED},
        {"\0", 1, TLY_MALFORMED},       {"dist\x1b[31m", 9, TLY_MALFORMED},
        {"dist\x7f", 5, TLY_MALFORMED}, {"dist\n", 5, TLY_MALFORMED},
    };
    tly_ingest_req *req = malloc(sizeof *req);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "req", 3);
        msgpack_pack_uint64(&pk, 5);
        msgpack_pack_str_with_body(&pk, "source", 6);
        msgpack_pack_str_with_body(&pk, cases[i].s, cases[i].len);
        msgpack_pack_str_with_body(&pk, "events", 6);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 0);
        char msg[160] = "";
        tly_err err = tly_wire_ingest_decode(sb.data, sb.size, req, msg, sizeof msg);
        ck_assert_msg(err == cases[i].want, "case %zu: %s (%s)", i, tly_err_name(err), msg);
        ck_assert(req->has_req && req->req == 5); /* echoed in the error reply */
        msgpack_sbuffer_destroy(&sb);
    }
    free(req);
}
END_TEST

/* Every bad_field / missing_field / bad_type of the decoder names a field:
 * a sweep over every key of every sample type set to values of each kind. */
START_TEST(test_every_field_error_names_a_field)
{
    static const char *const samples[] = {
        tv_sale,
        "{\"type\":\"claim\",\"id\":\"C\",\"at\":1735689600000,\"partner\":\"a\","
        "\"claim\":\"c\",\"action\":\"submit\",\"amount\":5,\"activity\":\"w\"}",
        "{\"type\":\"adjust\",\"id\":\"A\",\"at\":1735689600000,\"partner\":\"a\","
        "\"account\":\"mdf\",\"amount\":-5,\"reason\":\"r\"}",
    };
    static const char *const values[] = {
        "null", "0", "-1", "\"\"", "\"x\"", "[]", "{}", "true", "99999999999999999",
    };
    size_t checked = 0;
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        json_t *base = json_loads(samples[s], 0, NULL);
        const char *key;
        json_t *unused;
        json_object_foreach(base, key, unused)
        {
            for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                json_t *j = json_deep_copy(base);
                json_object_set_new(j, key, json_loads(values[v], JSON_DECODE_ANY, NULL));
                msgpack_sbuffer sb;
                msgpack_sbuffer_init(&sb);
                tly_field_error fe = {"", ""};
                /* JSON import refuses some first (`at` text): it names them too */
                tly_err err = tly_json_event_to_mp(j, &sb, &fe);
                if (err == TLY_OK)
                    err = decode(&sb, &fe);
                if (err == TLY_BAD_FIELD || err == TLY_MISSING_FIELD || err == TLY_BAD_TYPE) {
                    ck_assert_msg(fe.field[0] != '\0', "%s=%s: %s without a field", key, values[v],
                                  tly_err_name(err));
                    checked++;
                }
                msgpack_sbuffer_destroy(&sb);
                json_decref(j);
            }
        }
        json_decref(base);
    }
    ck_assert_uint_gt(checked, 50);
}
END_TEST

/* Money in words as section 11's details show it: thousands grouped,
 * the currency's decimals, a sign; cut like snprintf to the room given. */
START_TEST(test_money_text)
{
    static const struct {
        int64_t minor;
        int exp;
        const char *want;
    } cases[] = {
        {0, 2, "0.00"},
        {5, 2, "0.05"},
        {-5, 2, "-0.05"},
        {123456789, 2, "1,234,567.89"},
        {-100000, 2, "-1,000.00"},
        {999, 0, "999"},
        {1000, 0, "1,000"},
        {1234567, 3, "1,234.567"},
        {12345, 4, "1.2345"},
        {INT64_MAX, 0, "9,223,372,036,854,775,807"},
        {INT64_MIN, 2, "-92,233,720,368,547,758.08"},
        {INT64_MIN, 4, "-922,337,203,685,477.5808"},
        {150, 9, "0.0150"}, /* exponents beyond 4 are 4 */
        {150, -1, "150"},
    };
    char out[TLY_MONEY_TEXT_BYTES];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tly_money_text(cases[i].minor, cases[i].exp, out, sizeof out);
        ck_assert_str_eq(out, cases[i].want);
    }
    tly_money_text_cur(123456, "USD", out, sizeof out);
    ck_assert_str_eq(out, "1,234.56 USD");
    tly_money_text_cur(123456, "JPY", out, sizeof out);
    ck_assert_str_eq(out, "123,456 JPY");
    tly_money_text_cur(INT64_MIN, "KWD", out, sizeof out);
    ck_assert_str_eq(out, "-9,223,372,036,854,775.808 KWD");
    tly_money_text_cur(7, "XXY", out, sizeof out); /* no exponent known: whole units */
    ck_assert_str_eq(out, "7 XXY");
    char small[6];
    tly_money_text(123456789, 2, small, sizeof small);
    ck_assert_str_eq(small, "1,234");
    tly_money_text_cur(123456, "USD", small, sizeof small);
    ck_assert_str_eq(small, "1,234");
    small[0] = 'x';
    tly_money_text(1, 2, small, 0); /* no room: nothing written */
    ck_assert_int_eq(small[0], 'x');
}
END_TEST

static Suite *values_suite(void)
{
    Suite *s = suite_create("schemas_values");
    TCase *v = tu_tcase(s, "values", 0);
    tu_add_tests(v, TU_TESTS(test_accepted_shapes_export, test_refused_shapes_name_the_key,
                             test_nesting_past_the_reader, test_values_nobody_reads,
                             test_claim_cancel_amount_any_json, test_key_names_in_fields,
                             test_names_refuse_nul, test_money_text));
    TCase *js = tu_tcase(s, "json", 0);
    tu_add_tests(js, TU_TESTS(test_json_import_agrees_at_the_limit, test_decoder_names_like_import,
                              test_json_round_trip_at_the_limit, test_json_real_path));
    TCase *src = tu_tcase(s, "source", 0);
    tu_add_tests(src, TU_TESTS(test_source_valid_edges, test_wire_source_control_bytes,
                               test_every_field_error_names_a_field));
    return s;
}

int main(void)
{
    return tu_run_suite(values_suite());
}
