/* tly_json.c — JSON lines <-> MessagePack for events; see tly_json.h. */
#include "tly_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_limits.h"
#include "tly_mp.h"
#include "tly_period.h"

/* --- JSON -> MessagePack --- */

static tly_err jfail(tly_field_error *fe, tly_err err, const char *field, const char *msg)
{
    if (fe) {
        snprintf(fe->field, sizeof fe->field, "%s", field);
        if (field[0])
            snprintf(fe->message, sizeof fe->message, "%.63s: %s", field, msg);
        else
            snprintf(fe->message, sizeof fe->message, "%s", msg);
    }
    return err;
}

/* Appends ".key" or "[i]" to the path in buf (truncated, never overflowed,
 * never inside a UTF-8 character); an empty key is written "". */
static void path_push_key(char *buf, size_t cap, const char *base, const char *key)
{
    int n = snprintf(buf, cap, "%s%s%s", base, base[0] ? "." : "", key[0] ? key : "\"\"");
    for (size_t len = strlen(buf); n >= (int)cap && len > 0 && !tly_utf8_valid(buf, len); len--)
        buf[len - 1] = '\0';
}

static void path_push_index(char *buf, size_t cap, const char *base, size_t i)
{
    snprintf(buf, cap, "%s[%zu]", base, i);
}

/*
 * Where a value lies: path names it exactly ("x[0].y[2]"), field is path up
 * to its innermost key ("x[0].y"), what a refused value is reported as, the
 * same name tly_event_decode gives it. depth is 0 for the event object.
 */
typedef struct jpos {
    const char *path;
    const char *field;
    unsigned depth;
} jpos;

static tly_err pack_value(msgpack_packer *pk, const json_t *v, jpos at, bool top,
                          tly_field_error *fe);

/* True when key (klen bytes) of the event object holds a time that JSON
 * lines may write as ISO-8601 text: `at`, and a certification's `expires`
 * [T10] (only there, so an unknown `expires` of another type stays text). */
static bool time_key(const json_t *event, const char *key, size_t klen)
{
    if (klen == 2 && memcmp(key, "at", 2) == 0)
        return true;
    if (klen != 7 || memcmp(key, "expires", 7) != 0)
        return false;
    const char *type = json_string_value(json_object_get(event, "type"));
    return type && strcmp(type, "certification") == 0;
}

static tly_err pack_object(msgpack_packer *pk, const json_t *v, jpos at, bool top,
                           tly_field_error *fe)
{
    if (msgpack_pack_map(pk, json_object_size(v)) != 0)
        return TLY_NOMEM;
    const char *key;
    size_t klen;
    json_t *val;
    /* Insertion order: jansson keeps the order of the text (since 2.8). */
    json_object_keylen_foreach((json_t *)v, key, klen, val)
    {
        if (msgpack_pack_str(pk, klen) != 0 || msgpack_pack_str_body(pk, key, klen) != 0)
            return TLY_NOMEM;
        char sub[64];
        path_push_key(sub, sizeof sub, at.path, key);
        tly_err err;
        if (top && json_is_string(val) && time_key(v, key, klen)) {
            /* `at` (and `expires`) may be ISO-8601 text; it becomes the same
             * int a producer would have sent, so both spellings give
             * identical bytes. */
            int64_t ms;
            if (tly_time_parse(json_string_value(val), json_string_length(val), &ms) != TLY_OK)
                return jfail(fe, TLY_BAD_FIELD, key, "not an ISO-8601 time");
            err = msgpack_pack_int64(pk, ms) != 0 ? TLY_NOMEM : TLY_OK;
        } else {
            err = pack_value(pk, val, (jpos){sub, sub, at.depth + 1}, false, fe);
        }
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

static tly_err pack_array(msgpack_packer *pk, const json_t *v, jpos at, tly_field_error *fe)
{
    size_t n = json_array_size(v);
    if (msgpack_pack_array(pk, n) != 0)
        return TLY_NOMEM;
    for (size_t i = 0; i < n; i++) {
        char sub[64];
        path_push_index(sub, sizeof sub, at.path, i);
        tly_err err =
            pack_value(pk, json_array_get(v, i), (jpos){sub, at.field, at.depth + 1}, false, fe);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

static tly_err pack_value(msgpack_packer *pk, const json_t *v, jpos at, bool top,
                          tly_field_error *fe)
{
    /* Values nest at most TLY_EVENT_DEPTH_MAX levels, the event object being
     * level 1 and scalars counting: the limit of tly_event_decode and of
     * tly_json_from_mp, so every event converted here can be exported. */
    if (at.depth >= TLY_EVENT_DEPTH_MAX) {
        char why[64];
        snprintf(why, sizeof why, "nested deeper than %u levels (the event is level 1)",
                 TLY_EVENT_DEPTH_MAX);
        return jfail(fe, TLY_BAD_FIELD, at.field, why);
    }
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return pack_object(pk, v, at, top, fe);
    case JSON_ARRAY:
        return pack_array(pk, v, at, fe);
    case JSON_STRING: {
        size_t n = json_string_length(v);
        rc = msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(v), n);
        break;
    }
    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        /* No field is fractional; money is integer minor units, and a rate
         * is an exact decimal written as a string [F1]. */
        if (at.depth == 1 && strcmp(at.path, "rate") == 0)
            return jfail(fe, TLY_BAD_FIELD, at.path, "must be a decimal string such as \"1.0823\"");
        return jfail(fe, TLY_BAD_FIELD, at.path, "must be an integer, not a real number");
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    }
    return rc != 0 ? TLY_NOMEM : TLY_OK;
}

tly_err tly_json_event_to_mp(const json_t *event, msgpack_sbuffer *out, tly_field_error *fe)
{
    if (!json_is_object(event))
        return jfail(fe, TLY_MALFORMED, "", "event is not a JSON object");
    size_t mark = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    tly_err err = pack_value(&pk, event, (jpos){"", "", 0}, true, fe);
    if (err == TLY_NOMEM)
        jfail(fe, TLY_NOMEM, "", "out of memory");
    if (err != TLY_OK)
        out->size = mark; /* nothing appended on error */
    return err;
}

/* --- MessagePack -> JSON --- */

/* A JSON string of s; invalid UTF-8 bytes become U+FFFD so that any stored
 * event can be shown (the exact bytes travel separately, as base64). */
static json_t *json_text(const char *s, uint32_t len)
{
    if (tly_utf8_valid(s, len))
        return json_stringn(s, len);
    char *buf = malloc((size_t)len * 3 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (uint32_t i = 0; i < len;) {
        size_t step = 1;
        unsigned char c = (unsigned char)s[i];
        size_t want = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        if (want <= len - i && tly_utf8_valid(s + i, want) && (c < 0xf8))
            step = want;
        if (step == 1 && c >= 0x80) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(buf + o, s + i, step);
            o += step;
        }
        i += (uint32_t)step;
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *from_mp(tly_mp_reader *r, unsigned depth);

static json_t *from_mp_map(tly_mp_reader *r, unsigned depth)
{
    uint32_t n;
    if (!tly_mp_read_map(r, &n))
        return NULL;
    json_t *obj = json_object();
    for (uint32_t i = 0; obj && i < n; i++) {
        const char *k;
        uint32_t klen;
        json_t *key = tly_mp_read_str(r, &k, &klen) ? json_text(k, klen) : NULL;
        json_t *val = key ? from_mp(r, depth + 1) : NULL;
        if (!val ||
            json_object_setn_new(obj, json_string_value(key), json_string_length(key), val) != 0) {
            json_decref(obj);
            obj = NULL;
        }
        json_decref(key);
    }
    return obj;
}

static json_t *from_mp_array(tly_mp_reader *r, unsigned depth)
{
    uint32_t n;
    if (!tly_mp_read_array(r, &n))
        return NULL;
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < n; i++) {
        json_t *val = from_mp(r, depth + 1);
        if (!val || json_array_append_new(arr, val) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static json_t *from_mp_bin(tly_mp_reader *r)
{
    const uint8_t *b;
    uint32_t n;
    if (!tly_mp_read_bin(r, &b, &n))
        return NULL;
    char *text = malloc(((size_t)n + 2) / 3 * 4 + 1);
    if (!text)
        return NULL;
    size_t len = tly_b64_encode(b, n, text);
    json_t *j = json_stringn(text, len);
    free(text);
    return j;
}

static json_t *from_mp(tly_mp_reader *r, unsigned depth)
{
    const char *s;
    uint32_t n;
    int64_t i;
    uint64_t u;
    bool b;
    double d;
    char digits[24];
    /* The event limit (the event map at depth 0 is level 1): every event
     * tly_event_decode accepts converts. */
    if (depth >= TLY_EVENT_DEPTH_MAX)
        return NULL;
    switch (tly_mp_peek(r)) {
    case TLY_MP_NIL:
        return tly_mp_read_nil(r) ? json_null() : NULL;
    case TLY_MP_BOOL:
        return tly_mp_read_bool(r, &b) ? json_boolean(b) : NULL;
    case TLY_MP_INT:
        return tly_mp_read_int(r, &i) ? json_integer((json_int_t)i) : NULL;
    case TLY_MP_UINT64:
        /* JSON integers here are int64; a larger value is kept exactly as
         * decimal text rather than rounded through a double. */
        if (!tly_mp_read_uint(r, &u))
            return NULL;
        snprintf(digits, sizeof digits, "%llu", (unsigned long long)u);
        return json_string(digits);
    case TLY_MP_FLOAT:
        return tly_mp_read_float(r, &d) ? json_real(d) : NULL;
    case TLY_MP_STR:
        return tly_mp_read_str(r, &s, &n) ? json_text(s, n) : NULL;
    case TLY_MP_BIN:
        return from_mp_bin(r);
    case TLY_MP_ARRAY:
        return from_mp_array(r, depth);
    case TLY_MP_MAP:
        return from_mp_map(r, depth);
    default:
        return NULL; /* ext, reserved, truncated */
    }
}

json_t *tly_json_from_mp(const void *buf, size_t len)
{
    if (!tly_mp_is_single_value(buf, len))
        return NULL;
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    return from_mp(&r, 0);
}

/* --- base64 and hex --- */

size_t tly_b64_encode(const void *buf, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = buf;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

tly_err tly_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (len % 4 != 0)
        return TLY_BAD_FIELD;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=') : 0;
        if (pad == 1 && s[i + 2] == '=')
            return TLY_BAD_FIELD; /* "x=y=" */
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int d = b64_value(s[i + k]);
            if (d < 0)
                return TLY_BAD_FIELD;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        size_t n = 3 - (size_t)pad;
        if (o + n > cap)
            return TLY_TOO_LARGE;
        for (size_t k = 0; k < n; k++)
            out[o + k] = (uint8_t)(v >> (16 - 8 * k));
        o += n;
    }
    *out_len = o;
    return TLY_OK;
}

void tly_hex_encode(const void *buf, size_t len, char *out)
{
    static const char tab[] = "0123456789abcdef";
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = tab[p[i] >> 4];
        out[2 * i + 1] = tab[p[i] & 15];
    }
    out[2 * len] = '\0';
}

const char *tly_json_load_why(const json_t *j, json_error_t *jerr)
{
    if (j)
        return "not a JSON object";
    bool utf8 = tly_utf8_valid(jerr->text, strlen(jerr->text));
    for (char *p = jerr->text; *p; p++) {
        unsigned char b = (unsigned char)*p;
        if (b < 0x20 || b == 0x7f || (b >= 0x80 && !utf8))
            *p = '?';
    }
    return jerr->text;
}
