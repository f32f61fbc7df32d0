/*
 * tly_event.c — decoding and structural validation of events: schema v1
 * (SPEC section 5, [G6], [C3]) and the section 10 fields and types (program
 * rules v2, certification expires, rate, referral); see tly_event.h.
 *
 * Decoding is one pass over the top-level map that records where each known
 * key's value lies (a "slot"), then one validation step per field of the
 * event's type, in a fixed order, so the reported error does not depend on
 * the producer's key order. Nothing is allocated; keys are matched by
 * length + memcmp against small tables.
 *
 * Decisions where the SPEC is silent (also in schemas/SCHEMA.md):
 * - A nil value counts as absent: an optional field may be nil, a required
 *   field that is nil is missing_field.
 * - A key repeated in a map is bad_field on that key when Tally knows the
 *   key (the two values would be ambiguous); repeated unknown keys are
 *   ignored like any unknown key.
 * - A map key that is not a str is malformed (SPEC section 4: maps have
 *   string keys).
 * - Names and free text must be valid UTF-8 without NUL, so that every
 *   accepted event can be shown as JSON (queries, export, the views) without
 *   loss and read back (JSON readers such as jansson refuse "\u0000"; a
 *   partner named with a NUL made replay fail on its view documents).
 * - `currency` is checked against the pattern [A-Z]{3} only: a table of
 *   every ISO 4217 code would reject a code minted after the build. A
 *   `rate`'s two currencies are the exception: converting needs their
 *   minor-unit exponent, so a code without one in tly_currency.c is
 *   bad_field [F6]; a sale in such a code is the engine's currency_mismatch.
 * - Section 10 fields are optional with v1's meaning as default, so a v1
 *   event decodes exactly as before. `rebate.baseline_periods` is required
 *   with basis growth and bad_field without it; `expires` is bad_field on
 *   an action other than earned [T13] and must be after `at`; a `rate` is
 *   text (an exact decimal, never a float) and its `to` differs from its
 *   `currency`. No cross-field rule ties rebate.min to rebate.cap.
 * - A claim's `amount` is validated only for submit, approve and pay [C3];
 *   on cancel and reject it is not read.
 * - Every value no decoder reads (unknown keys at any level, known keys the
 *   type does not use, a claim's ignored amount) must still be something
 *   JSON lines can carry, so that `tally audit export` and every other
 *   reader handle every event the ledger accepts: no ext, no NaN or
 *   infinity, str keys, strings and keys of UTF-8 without NUL, nested at
 *   most TLY_EVENT_DEPTH_MAX levels. Otherwise it is bad_field naming the key
 *   (the first such key in map order).
 */
#include "tly_event.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "tly_assert.h"
#include "tly_currency.h"
#include "tly_mp.h"

/* --- keys --- */

typedef struct keydef {
    const char *name;
    uint32_t len;
} keydef;

#define KEY(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

enum {
    K_TYPE,
    K_ID,
    K_AT,
    K_PROGRAM,
    K_VERSION,
    K_CURRENCY,
    K_PERIOD,
    K_TIERS,
    K_REBATE,
    K_MDF_EXPIRY,
    K_TIER_WINDOW,
    K_PARTNER,
    K_NAME,
    K_KIND,
    K_REGION,
    K_SKU,
    K_QTY,
    K_AMOUNT,
    K_SALE,
    K_PERSON,
    K_CERT,
    K_ACTION,
    K_CLAIM,
    K_ACTIVITY,
    K_REASON,
    K_ACCOUNT,
    /* section 10 */
    K_MDF_CAP,
    K_TIER_MOVES,
    K_TIER_GRACE,
    K_EXPIRES,
    K_TO,
    K_RATE,
    K_DEAL,
    K_TOP_COUNT
};

static const keydef top_keys[K_TOP_COUNT] = {
    KEY("type"),
    KEY("id"),
    KEY("at"),
    KEY("program"),
    KEY("version"),
    KEY("currency"),
    KEY("period"),
    KEY("tiers"),
    KEY("rebate"),
    KEY("mdf_expiry_periods"),
    KEY("tier_window_periods"),
    KEY("partner"),
    KEY("name"),
    KEY("kind"),
    KEY("region"),
    KEY("sku"),
    KEY("qty"),
    KEY("amount"),
    KEY("sale"),
    KEY("person"),
    KEY("cert"),
    KEY("action"),
    KEY("claim"),
    KEY("activity"),
    KEY("reason"),
    KEY("account"),
    KEY("mdf_cap_per_period"),
    KEY("tier_moves"),
    KEY("tier_grace_periods"),
    KEY("expires"),
    KEY("to"),
    KEY("rate"),
    KEY("deal"),
};

enum {
    KT_NAME,
    KT_MIN_REVENUE,
    KT_MIN_CERTS,
    KT_MDF_BPS,
    KT_BENEFITS,
    KT_BONUS_BPS,
    KT_REFERRAL_BPS,
    KT_COUNT
};
static const keydef tier_keys[KT_COUNT] = {
    KEY("name"),     KEY("min_revenue"),      KEY("min_certs"),    KEY("mdf_bps"),
    KEY("benefits"), KEY("rebate_bonus_bps"), KEY("referral_bps"),
};

enum { KR_MODE, KR_BRACKETS, KR_BASIS, KR_BASELINE, KR_MIN, KR_CAP, KR_COUNT };
static const keydef rebate_keys[KR_COUNT] = {
    KEY("mode"), KEY("brackets"), KEY("basis"), KEY("baseline_periods"), KEY("min"), KEY("cap"),
};

enum { KB_FROM, KB_BPS, KB_COUNT };
static const keydef bracket_keys[KB_COUNT] = {KEY("from"), KEY("bps")};

_Static_assert(K_TOP_COUNT <= 64, "seen-key and read-key masks are 64 bits");

/* Longest key name any table holds ("tier_window_periods" is 19); a key
 * longer than this is unknown. */
#define KEY_LEN_MAX 32u

/* A key table with, per name length, the mask of its keys of that length,
 * so a lookup compares a key with the one to four names of its length
 * instead of every name (the top level has 33). */
typedef struct keytab {
    const keydef *keys;
    unsigned n;
    uint64_t by_len[KEY_LEN_MAX + 1];
} keytab;

static keytab top_tab = {top_keys, K_TOP_COUNT, {0}};
static keytab tier_tab = {tier_keys, KT_COUNT, {0}};
static keytab rebate_tab = {rebate_keys, KR_COUNT, {0}};
static keytab bracket_tab = {bracket_keys, KB_COUNT, {0}};
static pthread_once_t tabs_once = PTHREAD_ONCE_INIT;

static void tab_build(keytab *t)
{
    for (unsigned i = 0; i < t->n; i++) {
        TLY_ASSERT(t->keys[i].len >= 1 && t->keys[i].len <= KEY_LEN_MAX);
        t->by_len[t->keys[i].len] |= UINT64_C(1) << i;
    }
}

static void tabs_build(void)
{
    tab_build(&top_tab);
    tab_build(&tier_tab);
    tab_build(&rebate_tab);
    tab_build(&bracket_tab);
}
_Static_assert(TLY_EVENT_DEPTH_MAX < TLY_MP_DEPTH_MAX, "the reader reads one level too deep");

/* Levels of the maps scan_map reads (TLY_EVENT_DEPTH_MAX counts the same
 * way): the event, the rebate, a tier (inside `tiers`), a bracket. */
enum { LV_EVENT = 1, LV_REBATE = 2, LV_TIER = 3, LV_BRACKET = 4 };

/* Where a key's value lies; p is NULL when the key is absent. */
typedef struct slot {
    const uint8_t *p;
    size_t len;
} slot;

/* The name of a field for error reports: outer[index].inner, each part
 * optional (outer NULL, index < 0, inner NULL). Formatted only on failure. */
typedef struct fpath {
    const char *outer;
    int index;
    const char *inner;
} fpath;

#define TOP(name) ((fpath){NULL, -1, (name)})

/* --- failure reports --- */

static void path_format(fpath path, char *buf, size_t cap)
{
    int n = 0;
    buf[0] = '\0';
    if (path.outer)
        n = snprintf(buf, cap, "%s", path.outer);
    if (path.index >= 0 && n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "[%d]", path.index);
    if (path.inner && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "%s%s", n > 0 ? "." : "", path.inner);
}

static tly_err fail(tly_field_error *fe, tly_err err, fpath path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes fe->message from fe->field (already set) and fmt. The message
 * starts with the field name: "amount: must be ...". */
static void message_v(tly_field_error *fe, const char *fmt, va_list ap)
{
    size_t n = 0;
    if (fe->field[0]) {
        n = strlen(fe->field);
        memcpy(fe->message, fe->field, n);
        fe->message[n++] = ':';
        fe->message[n++] = ' ';
    }
    vsnprintf(fe->message + n, sizeof fe->message - n, fmt, ap);
}

static tly_err fail(tly_field_error *fe, tly_err err, fpath path, const char *fmt, ...)
{
    if (!fe)
        return err;
    path_format(path, fe->field, sizeof fe->field);
    va_list ap;
    va_start(ap, fmt);
    message_v(fe, fmt, ap);
    va_end(ap);
    return err;
}

/* fail() for a field name the caller has written into fe->field. */
static tly_err fail_named(tly_field_error *fe, tly_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tly_err fail_named(tly_field_error *fe, tly_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    message_v(fe, fmt, ap);
    va_end(ap);
    return err;
}

static tly_err missing(tly_field_error *fe, fpath path)
{
    return fail(fe, TLY_MISSING_FIELD, path, "required field is absent");
}

/* --- text checks --- */

bool tly_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

bool tly_id_valid(const char *s, size_t len)
{
    if (len < 1 || len > TLY_ID_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool tly_source_valid(const char *s, size_t len)
{
    if (len < 1 || len > TLY_SOURCE_BYTES_MAX || !tly_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool tly_str_eq(tly_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* --- field names built from the producer's keys --- */

/* A field name being written into buf[0..cap). A part that does not fit
 * whole ends the name: what is written is always a clean prefix. */
typedef struct fname {
    char *buf;
    size_t cap;
    size_t n;
    bool full;
} fname;

static void fname_put(fname *f, const char *s, size_t len)
{
    if (f->full || f->n + len >= f->cap) {
        f->full = true;
        return;
    }
    memcpy(f->buf + f->n, s, len);
    f->n += len;
    f->buf[f->n] = '\0';
}

/* Appends ".key" ("key" first): UTF-8 characters as they are, control
 * bytes and bytes of invalid UTF-8 as \xNN, an empty key as "", so the
 * name is always printable UTF-8 that names the key. */
static void fname_key(fname *f, const char *k, uint32_t len)
{
    size_t dot = f->n;
    if (f->n > 0)
        fname_put(f, ".", 1);
    size_t start = f->n;
    if (len == 0)
        fname_put(f, "\"\"", 2);
    for (uint32_t i = 0; i < len && !f->full;) {
        unsigned char c = (unsigned char)k[i];
        uint32_t step = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        bool plain = step <= len - i && tly_utf8_valid(k + i, step) && c >= 0x20 && c != 0x7f;
        if (plain) {
            fname_put(f, k + i, step);
            i += step;
            continue;
        }
        char esc[5];
        snprintf(esc, sizeof esc, "\\x%02x", c);
        fname_put(f, esc, 4);
        i++;
    }
    if (f->full && f->n == start) { /* nothing of the key fit: no dangling "." */
        f->n = dot;
        f->buf[dot] = '\0';
    }
}

static void fname_index(fname *f, uint32_t i)
{
    char text[16];
    int n = snprintf(text, sizeof text, "[%u]", i);
    fname_put(f, text, (size_t)n);
}

/* --- values JSON lines can carry --- */

/* Why a value cannot be carried by JSON lines. */
typedef enum vwhy {
    VW_DEEP,     /* nested deeper than TLY_EVENT_DEPTH_MAX */
    VW_EXT,      /* a MessagePack ext */
    VW_FLOAT,    /* NaN or an infinity */
    VW_TEXT,     /* a str that is not UTF-8 without NUL */
    VW_KEY_TYPE, /* a map key that is not a str */
    VW_KEY_TEXT, /* a map key that is not UTF-8 without NUL */
    VW_BROKEN    /* not well-formed (cannot happen after scan_event) */
} vwhy;

/* One step below the checked key: a map key (key != NULL) or an index. */
typedef struct vstep {
    const char *key;
    uint32_t klen;
    uint32_t index;
} vstep;

/* A value check under way: the steps from the checked key down to the
 * value at hand, and on failure why. A step is pushed per container, and a
 * container deeper than TLY_EVENT_DEPTH_MAX is refused before it is
 * entered, so TLY_EVENT_DEPTH_MAX steps are room enough. */
typedef struct vwalk {
    vstep steps[TLY_EVENT_DEPTH_MAX];
    unsigned n;
    vwhy why;
} vwalk;

/* True for text every JSON reader loads back: UTF-8 without NUL (jansson,
 * which `tally send` uses, refuses "\u0000"). */
static bool text_ok(const char *s, uint32_t len)
{
    return tly_utf8_valid(s, len) && (len == 0 || memchr(s, 0, len) == NULL);
}

static bool refuse(vwalk *w, vwhy why)
{
    w->why = why;
    return false;
}

static bool value_ok(tly_mp_reader *r, unsigned level, vwalk *w);

/* Checks the elements (map: keys and values) of the container at r, whose
 * own level is level. */
static bool elems_ok(tly_mp_reader *r, unsigned level, bool is_map, vwalk *w)
{
    uint32_t n;
    if (is_map ? !tly_mp_read_map(r, &n) : !tly_mp_read_array(r, &n))
        return refuse(w, VW_BROKEN);
    TLY_ASSERT(w->n < TLY_EVENT_DEPTH_MAX);
    vstep *st = &w->steps[w->n++];
    for (uint32_t i = 0; i < n; i++) {
        *st = (vstep){NULL, 0, i};
        if (is_map && !tly_mp_read_str(r, &st->key, &st->klen))
            return refuse(w, VW_KEY_TYPE);
        if (is_map && !text_ok(st->key, st->klen))
            return refuse(w, VW_KEY_TEXT);
        if (!value_ok(r, level + 1, w))
            return false;
    }
    w->n--;
    return true;
}

/* Reads one value at level (the event map is level 1) and checks that JSON
 * lines can carry it; false with w->why set when not. */
static bool value_ok(tly_mp_reader *r, unsigned level, vwalk *w)
{
    if (level > TLY_EVENT_DEPTH_MAX)
        return refuse(w, VW_DEEP);
    const char *s;
    uint32_t len;
    double d;
    switch (tly_mp_peek(r)) {
    case TLY_MP_ARRAY:
        return elems_ok(r, level, false, w);
    case TLY_MP_MAP:
        return elems_ok(r, level, true, w);
    case TLY_MP_EXT:
        return refuse(w, VW_EXT);
    case TLY_MP_FLOAT:
        if (!tly_mp_read_float(r, &d))
            return refuse(w, VW_BROKEN);
        return isfinite(d) || refuse(w, VW_FLOAT);
    case TLY_MP_STR:
        if (!tly_mp_read_str(r, &s, &len))
            return refuse(w, VW_BROKEN);
        return text_ok(s, len) || refuse(w, VW_TEXT);
    default: /* nil, bool, integers, bin */
        return tly_mp_skip(r, NULL, NULL) || refuse(w, VW_BROKEN);
    }
}

/* Reports a refused value: the field is where, the key, and the steps down
 * to the innermost key above the refused value (indices after it are left
 * out: the field names a key). */
static tly_err value_fail(tly_field_error *fe, fpath where, const char *k, uint32_t klen,
                          const vwalk *w)
{
    if (!fe)
        return TLY_BAD_FIELD;
    path_format(where, fe->field, sizeof fe->field);
    fname f = {fe->field, sizeof fe->field, strlen(fe->field), false};
    fname_key(&f, k, klen);
    unsigned last_key = 0; /* steps to write */
    for (unsigned i = 0; i < w->n; i++)
        if (w->steps[i].key)
            last_key = i + 1;
    for (unsigned i = 0; i < last_key; i++) {
        if (w->steps[i].key)
            fname_key(&f, w->steps[i].key, w->steps[i].klen);
        else
            fname_index(&f, w->steps[i].index);
    }
    if (w->why == VW_DEEP)
        return fail_named(fe, TLY_BAD_FIELD, "nested deeper than %u levels (the event is level 1)",
                          TLY_EVENT_DEPTH_MAX);
    static const char *const text[] = {
        [VW_DEEP] = "nested too deeply",
        [VW_EXT] = "a MessagePack ext is not allowed (JSON lines cannot carry it)",
        [VW_FLOAT] = "NaN and infinities are not allowed (JSON lines cannot carry them)",
        [VW_TEXT] = "strings must be valid UTF-8 without NUL",
        [VW_KEY_TYPE] = "map keys must be strings",
        [VW_KEY_TEXT] = "keys must be valid UTF-8 without NUL",
        [VW_BROKEN] = "not well-formed MessagePack",
    };
    return fail_named(fe, TLY_BAD_FIELD, "%s", text[w->why]);
}

/* Checks that JSON lines can carry key k (of the map at where) and its
 * value span v, which lies at level; bad_field naming the key otherwise. */
static tly_err check_value(fpath where, const char *k, uint32_t klen, const uint8_t *v, size_t vlen,
                           unsigned level, tly_field_error *fe)
{
    vwalk w;
    w.n = 0;
    w.why = VW_KEY_TEXT;
    tly_mp_reader r;
    tly_mp_init(&r, v, vlen);
    if (text_ok(k, klen) && value_ok(&r, level, &w))
        return TLY_OK;
    return value_fail(fe, where, k, klen, &w);
}

/* --- map scanning --- */

/* True when the len bytes of a and b are the same. A loop, not memcmp: a
 * key is a few bytes, which the call to memcmp cost more than comparing
 * (the 1M-event log: 0.42G of event decoding's 2.23G instructions went to
 * this comparison with memcmp, callgrind). */
static bool key_same(const char *a, const char *b, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* The index of key k in t, or -1. Every event key passes here: only the
 * names of k's length are compared. */
static int key_find(const keytab *t, const char *k, uint32_t len)
{
    if (len == 0 || len > KEY_LEN_MAX)
        return -1;
    for (uint64_t m = t->by_len[len]; m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (key_same(t->keys[i].name, k, len))
            return i;
    }
    return -1;
}

/*
 * Reads the map at r (the caller has checked it is a map), which lies at
 * level, and records the value span of each known key in slots[0..nkeys).
 * With check, each unknown key and its value must be something JSON lines
 * can carry (check_value). The input has already been checked to be
 * well-formed, so structural failures cannot happen here except for non-str
 * keys.
 */
static tly_err scan_map(tly_mp_reader *r, const keytab *t, slot *slots, fpath where, unsigned level,
                        bool check, tly_field_error *fe, uint64_t *seen_out)
{
    (void)pthread_once(&tabs_once, tabs_build);
    const keydef *keys = t->keys;
    unsigned nkeys = t->n;
    uint32_t count;
    if (!tly_mp_read_map(r, &count))
        return fail(fe, TLY_MALFORMED, where, "not a map");
    memset(slots, 0, nkeys * sizeof *slots);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t klen;
        if (!tly_mp_read_str(r, &k, &klen))
            return fail(fe, TLY_MALFORMED, where, "map key is not a string");
        int id = key_find(t, k, klen);
        const uint8_t *v;
        size_t vlen;
        /* The event's own values lie one container deep: skipped as
         * tly_mp_is_single_value skips them (scan_event's one walk). */
        if (!tly_mp_skip_at(r, level == LV_EVENT ? 1 : 0, &v, &vlen))
            return fail(fe, TLY_MALFORMED, where, "truncated value");
        /* Unknown keys are ignored (SPEC section 4), but must be readable. */
        tly_err err =
            id < 0 && check ? check_value(where, k, klen, v, vlen, level + 1, fe) : TLY_OK;
        if (err != TLY_OK)
            return err;
        if (id < 0)
            continue;
        if (seen & (UINT64_C(1) << id)) {
            /* "tiers[2]" + key → "tiers[2].name"; "rebate" + key → "rebate.mode". */
            fpath p = where.inner ? (fpath){where.inner, -1, keys[id].name}
                                  : (fpath){where.outer, where.index, keys[id].name};
            return fail(fe, TLY_BAD_FIELD, p, "key appears twice");
        }
        seen |= UINT64_C(1) << id;
        slots[id].p = v;
        slots[id].len = vlen;
    }
    if (seen_out)
        *seen_out = seen;
    return TLY_OK;
}

/* True when the slot holds a value other than nil. */
static bool present(slot s)
{
    return s.p != NULL && s.p[0] != 0xc0;
}

static void slot_reader(slot s, tly_mp_reader *r)
{
    tly_mp_init(r, s.p, s.len);
}

/* --- field readers --- */

typedef enum str_kind { SK_ID, SK_NAME, SK_TEXT, SK_BENEFIT, SK_CURRENCY } str_kind;

static bool currency_valid(const char *s, uint32_t len)
{
    return len == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' &&
           s[2] <= 'Z';
}

static tly_err str_check(const char *s, uint32_t len, str_kind kind, fpath path,
                         tly_field_error *fe)
{
    switch (kind) {
    case SK_ID:
        if (!tly_id_valid(s, len))
            return fail(fe, TLY_BAD_FIELD, path, "must be 1..%u bytes of [A-Za-z0-9._:-]",
                        TLY_ID_BYTES_MAX);
        return TLY_OK;
    case SK_CURRENCY:
        if (!currency_valid(s, len))
            return fail(fe, TLY_BAD_FIELD, path, "must be an ISO 4217 code [A-Z]{3}");
        return TLY_OK;
    case SK_NAME:
    case SK_TEXT:
    case SK_BENEFIT: {
        uint32_t max = kind == SK_NAME   ? TLY_NAME_BYTES_MAX
                       : kind == SK_TEXT ? TLY_TEXT_BYTES_MAX
                                         : TLY_BENEFIT_BYTES_MAX;
        if (len < 1 || len > max)
            return fail(fe, TLY_BAD_FIELD, path, "must be 1..%u bytes", max);
        if (!text_ok(s, len))
            return fail(fe, TLY_BAD_FIELD, path, "must be valid UTF-8 without NUL");
        return TLY_OK;
    }
    }
    return TLY_OK;
}

/* Reads a str field. Absent/nil: missing_field when required, else *out
 * stays {NULL, 0}. */
static tly_err get_str(slot s, fpath path, str_kind kind, bool required, tly_str *out,
                       tly_field_error *fe)
{
    if (!present(s))
        return required ? missing(fe, path) : TLY_OK;
    tly_mp_reader r;
    slot_reader(s, &r);
    const char *p;
    uint32_t len;
    if (!tly_mp_read_str(&r, &p, &len))
        return fail(fe, TLY_BAD_FIELD, path, "must be a string");
    tly_err err = str_check(p, len, kind, path, fe);
    if (err != TLY_OK)
        return err;
    out->ptr = p;
    out->len = len;
    return TLY_OK;
}

/* Reads a required int field in [min, max]. */
static tly_err get_int(slot s, fpath path, int64_t min, int64_t max, int64_t *out,
                       tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, path);
    tly_mp_reader r;
    slot_reader(s, &r);
    int64_t v;
    if (!tly_mp_read_int(&r, &v) || v < min || v > max)
        return fail(fe, TLY_BAD_FIELD, path, "must be an integer %lld..%lld", (long long)min,
                    (long long)max);
    *out = v;
    return TLY_OK;
}

/* Reads a required str field that must be one of names[0..n). */
static tly_err get_enum(slot s, fpath path, const char *const *names, int n, int *out,
                        tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, path);
    tly_mp_reader r;
    slot_reader(s, &r);
    const char *p;
    uint32_t len;
    if (tly_mp_read_str(&r, &p, &len)) {
        for (int i = 0; i < n; i++) {
            if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0) {
                *out = i;
                return TLY_OK;
            }
        }
    }
    char list[160];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < n && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? "|" : "", names[i]);
    return fail(fe, TLY_BAD_FIELD, path, "must be one of %s", list);
}

/* Reads an optional int field in [min, max]: absent or nil leaves *out at
 * dflt and *has (may be NULL) false. */
static tly_err get_int_opt(slot s, fpath path, int64_t min, int64_t max, int64_t dflt, int64_t *out,
                           bool *has, tly_field_error *fe)
{
    *out = dflt;
    if (has)
        *has = false;
    if (!present(s))
        return TLY_OK;
    tly_err err = get_int(s, path, min, max, out, fe);
    if (has)
        *has = err == TLY_OK;
    return err;
}

/* Reads an optional enum field: absent or nil is names[0], the default. */
static tly_err get_enum_opt(slot s, fpath path, const char *const *names, int n, int *out,
                            tly_field_error *fe)
{
    *out = 0;
    return present(s) ? get_enum(s, path, names, n, out, fe) : TLY_OK;
}

/* --- names --- */

static const char *const type_names[TLY_EV_COUNT] = {
    "program", "partner", "sale",   "return", "certification", "claim",
    "close",   "payout",  "adjust", "rate",   "referral",
};
static const char *const kind_names[TLY_KIND_COUNT] = {
    "var", "msp", "si", "oem", "isv", "distributor", "consultant",
};
static const char *const action_names[TLY_ACT_COUNT] = {
    "earned", "expired", "revoked", "submit", "cancel", "approve", "reject", "pay",
};
static const char *const period_kind_names[] = {"quarter", "month"};
static const char *const mode_names[] = {"retroactive", "incremental"};
static const char *const account_names[] = {"mdf", "rebate"};
static const char *const basis_names[] = {"revenue", "growth"};
static const char *const moves_names[] = {"any", "one_step"};

const char *tly_ev_type_name(tly_ev_type type)
{
    return (unsigned)type < TLY_EV_COUNT && type_names[type] ? type_names[type] : "unknown";
}

const char *tly_partner_kind_name(tly_partner_kind kind)
{
    return (unsigned)kind < TLY_KIND_COUNT ? kind_names[kind] : "unknown";
}

const char *tly_action_name(tly_action action)
{
    return (unsigned)action < TLY_ACT_COUNT ? action_names[action] : "unknown";
}

const char *tly_rebate_mode_name(tly_rebate_mode mode)
{
    return (unsigned)mode < 2 ? mode_names[mode] : "unknown";
}

const char *tly_account_name(tly_account account)
{
    return (unsigned)account < 2 ? account_names[account] : "unknown";
}

const char *tly_period_kind_name(tly_period_kind kind)
{
    return (unsigned)kind < 2 ? period_kind_names[kind] : "unknown";
}

tly_err tly_ev_type_parse(const char *s, size_t len, tly_ev_type *out)
{
    for (int i = 0; i < TLY_EV_COUNT; i++) {
        if (type_names[i] && strlen(type_names[i]) == len && memcmp(type_names[i], s, len) == 0) {
            *out = (tly_ev_type)i;
            return TLY_OK;
        }
    }
    return TLY_BAD_TYPE;
}

/* --- the program event --- */

/* tiers[i].benefits: absent or nil is [], else an array of at most
 * TLY_BENEFITS_MAX strings of 1..TLY_BENEFIT_BYTES_MAX bytes (SPEC section
 * 10). An element's field is "tiers[i].benefits[j]". */
static tly_err decode_benefits(slot s, int i, tly_tier *t, tly_field_error *fe)
{
    t->benefit_count = 0;
    if (!present(s))
        return TLY_OK;
    tly_mp_reader r;
    slot_reader(s, &r);
    uint32_t n;
    if (!tly_mp_read_array(&r, &n) || n > TLY_BENEFITS_MAX)
        return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", i, "benefits"}),
                    "must be an array of 0..%u strings", TLY_BENEFITS_MAX);
    char outer[32];
    snprintf(outer, sizeof outer, "tiers[%d].benefits", i);
    for (uint32_t j = 0; j < n; j++) {
        slot e;
        tly_mp_skip(&r, &e.p, &e.len); /* well-formed: checked before */
        fpath at = {outer, (int)j, NULL};
        tly_err err = present(e) ? get_str(e, at, SK_BENEFIT, true, &t->benefits[j], fe)
                                 : fail(fe, TLY_BAD_FIELD, at, "must be a string, not nil");
        if (err != TLY_OK)
            return err;
    }
    t->benefit_count = n;
    return TLY_OK;
}

/* A tier's section 10 fields, all optional: benefits, rebate_bonus_bps
 * [R14] and referral_bps [Q1] (0 when absent). */
static tly_err decode_tier_v2(const slot *ks, int i, tly_tier *t, tly_field_error *fe)
{
    int64_t bonus = 0, referral = 0;
    tly_err err = decode_benefits(ks[KT_BENEFITS], i, t, fe);
    if (err == TLY_OK)
        err = get_int_opt(ks[KT_BONUS_BPS], (fpath){"tiers", i, "rebate_bonus_bps"}, 0, TLY_BPS_MAX,
                          0, &bonus, NULL, fe);
    if (err == TLY_OK)
        err = get_int_opt(ks[KT_REFERRAL_BPS], (fpath){"tiers", i, "referral_bps"}, 0, TLY_BPS_MAX,
                          0, &referral, NULL, fe);
    t->rebate_bonus_bps = (int32_t)bonus;
    t->referral_bps = (int32_t)referral;
    return err;
}

static tly_err decode_tier(slot s, int i, tly_tier *t, tly_field_error *fe)
{
    slot ks[KT_COUNT];
    tly_mp_reader r;
    slot_reader(s, &r);
    if (tly_mp_peek(&r) != TLY_MP_MAP)
        return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", i, NULL}), "must be a map");
    tly_err err = scan_map(&r, &tier_tab, ks, (fpath){"tiers", i, NULL}, LV_TIER, true, fe, NULL);
    if (err == TLY_OK)
        err = get_str(ks[KT_NAME], (fpath){"tiers", i, "name"}, SK_NAME, true, &t->name, fe);
    if (err == TLY_OK)
        err = get_int(ks[KT_MIN_REVENUE], (fpath){"tiers", i, "min_revenue"}, 0, TLY_AMOUNT_MAX,
                      &t->min_revenue, fe);
    if (err == TLY_OK)
        err = get_int(ks[KT_MIN_CERTS], (fpath){"tiers", i, "min_certs"}, 0, TLY_CERTS_MAX,
                      &t->min_certs, fe);
    int64_t bps = 0;
    if (err == TLY_OK)
        err = get_int(ks[KT_MDF_BPS], (fpath){"tiers", i, "mdf_bps"}, 0, TLY_BPS_MAX, &bps, fe);
    t->mdf_bps = (int32_t)bps;
    if (err == TLY_OK)
        err = decode_tier_v2(ks, i, t, fe);
    return err;
}

/* [G6] The first tier is 0/0; min_revenue and min_certs never decrease;
 * names are unique (a tier is referred to by name across versions). */
static tly_err check_tier_order(const tly_tier *t, uint32_t n, tly_field_error *fe)
{
    if (t[0].min_revenue != 0)
        return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", 0, "min_revenue"}),
                    "the first tier must have min_revenue 0 [G6]");
    if (t[0].min_certs != 0)
        return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", 0, "min_certs"}),
                    "the first tier must have min_certs 0 [G6]");
    for (uint32_t i = 1; i < n; i++) {
        if (t[i].min_revenue < t[i - 1].min_revenue)
            return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", (int)i, "min_revenue"}),
                        "tiers must be ascending [G6]");
        if (t[i].min_certs < t[i - 1].min_certs)
            return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", (int)i, "min_certs"}),
                        "tiers must be ascending [G6]");
        for (uint32_t j = 0; j < i; j++) {
            if (t[j].name.len == t[i].name.len &&
                memcmp(t[j].name.ptr, t[i].name.ptr, t[i].name.len) == 0)
                return fail(fe, TLY_BAD_FIELD, ((fpath){"tiers", (int)i, "name"}),
                            "tier names must be unique");
        }
    }
    return TLY_OK;
}

static tly_err decode_tiers(slot s, tly_event *ev, tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, TOP("tiers"));
    tly_mp_reader r;
    slot_reader(s, &r);
    uint32_t n;
    if (!tly_mp_read_array(&r, &n) || n < 1 || n > TLY_TIERS_MAX)
        return fail(fe, TLY_BAD_FIELD, TOP("tiers"), "must be an array of 1..%u tiers",
                    TLY_TIERS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        slot e;
        tly_mp_skip(&r, &e.p, &e.len); /* well-formed: checked before */
        tly_err err = decode_tier(e, (int)i, &ev->tiers[i], fe);
        if (err != TLY_OK)
            return err;
    }
    ev->tier_count = n;
    return check_tier_order(ev->tiers, n, fe);
}

static tly_err decode_bracket(slot s, int i, tly_bracket *b, tly_field_error *fe)
{
    slot ks[KB_COUNT];
    tly_mp_reader r;
    fpath at = {"rebate.brackets", i, NULL};
    slot_reader(s, &r);
    if (tly_mp_peek(&r) != TLY_MP_MAP)
        return fail(fe, TLY_BAD_FIELD, at, "must be a map");
    tly_err err = scan_map(&r, &bracket_tab, ks, at, LV_BRACKET, true, fe, NULL);
    if (err == TLY_OK)
        err = get_int(ks[KB_FROM], (fpath){"rebate.brackets", i, "from"}, 0, TLY_AMOUNT_MAX,
                      &b->from, fe);
    int64_t bps = 0;
    if (err == TLY_OK)
        err = get_int(ks[KB_BPS], (fpath){"rebate.brackets", i, "bps"}, 0, TLY_BPS_MAX, &bps, fe);
    b->bps = (int32_t)bps;
    return err;
}

/* [G6] The first bracket starts at 0 and `from` strictly ascends. */
static tly_err decode_brackets(slot s, tly_event *ev, tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, TOP("rebate.brackets"));
    tly_mp_reader r;
    slot_reader(s, &r);
    uint32_t n;
    if (!tly_mp_read_array(&r, &n) || n < 1 || n > TLY_BRACKETS_MAX)
        return fail(fe, TLY_BAD_FIELD, TOP("rebate.brackets"), "must be an array of 1..%u brackets",
                    TLY_BRACKETS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        slot e;
        tly_mp_skip(&r, &e.p, &e.len);
        tly_bracket *b = &ev->brackets[i];
        tly_err err = decode_bracket(e, (int)i, b, fe);
        if (err != TLY_OK)
            return err;
        if (i == 0 && b->from != 0)
            return fail(fe, TLY_BAD_FIELD, ((fpath){"rebate.brackets", 0, "from"}),
                        "the first bracket must start at 0 [G6]");
        if (i > 0 && b->from <= ev->brackets[i - 1].from)
            return fail(fe, TLY_BAD_FIELD, ((fpath){"rebate.brackets", (int)i, "from"}),
                        "brackets must be strictly ascending [G6]");
    }
    ev->bracket_count = n;
    return TLY_OK;
}

/* The rebate's section 10 fields: basis [R11] (revenue when absent),
 * baseline_periods (required with growth, refused without it), min [K2]
 * (0 when absent) and cap [K3] (none when absent). min may exceed cap:
 * the figure is then 0 or the cap, which is the program's business. */
static tly_err decode_rebate_v2(const slot *ks, tly_event *ev, tly_field_error *fe)
{
    int basis = 0;
    tly_err err = get_enum_opt(ks[KR_BASIS], TOP("rebate.basis"), basis_names, 2, &basis, fe);
    ev->rebate_basis = (tly_rebate_basis)basis;
    fpath baseline = TOP("rebate.baseline_periods");
    if (err == TLY_OK && basis == TLY_BASIS_GROWTH)
        err = get_int(ks[KR_BASELINE], baseline, 1, TLY_BASELINE_PERIODS_MAX, &ev->baseline_periods,
                      fe);
    else if (err == TLY_OK && present(ks[KR_BASELINE]))
        err = fail(fe, TLY_BAD_FIELD, baseline, "only with rebate.basis growth [R11]");
    if (err == TLY_OK)
        err = get_int_opt(ks[KR_MIN], TOP("rebate.min"), 0, TLY_AMOUNT_MAX, 0, &ev->rebate_min,
                          NULL, fe);
    if (err == TLY_OK)
        err = get_int_opt(ks[KR_CAP], TOP("rebate.cap"), 1, TLY_AMOUNT_MAX, 0, &ev->rebate_cap,
                          &ev->has_rebate_cap, fe);
    return err;
}

static tly_err decode_rebate(slot s, tly_event *ev, tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, TOP("rebate"));
    tly_mp_reader r;
    slot_reader(s, &r);
    if (tly_mp_peek(&r) != TLY_MP_MAP)
        return fail(fe, TLY_BAD_FIELD, TOP("rebate"), "must be a map");
    slot ks[KR_COUNT];
    tly_err err = scan_map(&r, &rebate_tab, ks, TOP("rebate"), LV_REBATE, true, fe, NULL);
    int mode = 0;
    if (err == TLY_OK)
        err = get_enum(ks[KR_MODE], TOP("rebate.mode"), mode_names, 2, &mode, fe);
    ev->rebate_mode = (tly_rebate_mode)mode;
    if (err == TLY_OK)
        err = decode_brackets(ks[KR_BRACKETS], ev, fe);
    if (err == TLY_OK)
        err = decode_rebate_v2(ks, ev, fe);
    return err;
}

/* The program's top-level section 10 fields, all optional:
 * mdf_cap_per_period [K1] (none), tier_moves [T8] (any) and
 * tier_grace_periods [T9] (0). */
static tly_err decode_program_v2(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int moves = 0;
    tly_err err = get_int_opt(s[K_MDF_CAP], TOP("mdf_cap_per_period"), 1, TLY_AMOUNT_MAX, 0,
                              &ev->mdf_cap_per_period, &ev->has_mdf_cap, fe);
    if (err == TLY_OK)
        err = get_enum_opt(s[K_TIER_MOVES], TOP("tier_moves"), moves_names, 2, &moves, fe);
    ev->tier_moves = (tly_tier_moves)moves;
    if (err == TLY_OK)
        err = get_int_opt(s[K_TIER_GRACE], TOP("tier_grace_periods"), 0, TLY_GRACE_PERIODS_MAX, 0,
                          &ev->tier_grace_periods, NULL, fe);
    return err;
}

static tly_err decode_program(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int pk = 0;
    tly_err err = get_str(s[K_PROGRAM], TOP("program"), SK_NAME, true, &ev->program, fe);
    if (err == TLY_OK)
        err = get_int(s[K_VERSION], TOP("version"), 1, TLY_VERSION_MAX, &ev->version, fe);
    if (err == TLY_OK)
        err = get_str(s[K_CURRENCY], TOP("currency"), SK_CURRENCY, true, &ev->currency, fe);
    if (err == TLY_OK)
        err = get_enum(s[K_PERIOD], TOP("period"), period_kind_names, 2, &pk, fe);
    ev->period_kind = (tly_period_kind)pk;
    if (err == TLY_OK)
        err = decode_tiers(s[K_TIERS], ev, fe);
    if (err == TLY_OK)
        err = decode_rebate(s[K_REBATE], ev, fe);
    if (err == TLY_OK)
        err = get_int(s[K_MDF_EXPIRY], TOP("mdf_expiry_periods"), 1, TLY_PERIODS_SPAN_MAX,
                      &ev->mdf_expiry_periods, fe);
    if (err == TLY_OK)
        err = get_int(s[K_TIER_WINDOW], TOP("tier_window_periods"), 1, TLY_PERIODS_SPAN_MAX,
                      &ev->tier_window_periods, fe);
    if (err == TLY_OK)
        err = decode_program_v2(s, ev, fe);
    return err;
}

/* --- the other types --- */

static tly_err decode_partner(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int kind = 0;
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_str(s[K_NAME], TOP("name"), SK_NAME, true, &ev->name, fe);
    if (err == TLY_OK)
        err = get_str(s[K_PROGRAM], TOP("program"), SK_NAME, true, &ev->program, fe);
    if (err == TLY_OK)
        err = get_enum(s[K_KIND], TOP("kind"), kind_names, TLY_KIND_COUNT, &kind, fe);
    ev->kind = (tly_partner_kind)kind;
    if (err == TLY_OK)
        err = get_str(s[K_REGION], TOP("region"), SK_NAME, false, &ev->region, fe);
    return err;
}

static tly_err get_amount(slot s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_int(s, TOP("amount"), 1, TLY_AMOUNT_MAX, &ev->amount, fe);
    ev->has_amount = err == TLY_OK;
    return err;
}

/* sale and return share everything but `sku` / `sale`. */
static tly_err decode_sale(const slot *s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK && ev->type == TLY_EV_SALE)
        err = get_str(s[K_SKU], TOP("sku"), SK_NAME, true, &ev->sku, fe);
    if (err == TLY_OK && ev->type == TLY_EV_RETURN)
        err = get_str(s[K_SALE], TOP("sale"), SK_ID, true, &ev->sale, fe);
    if (err == TLY_OK)
        err = get_int(s[K_QTY], TOP("qty"), 1, TLY_QTY_MAX, &ev->qty, fe);
    if (err == TLY_OK)
        err = get_amount(s[K_AMOUNT], ev, fe);
    if (err == TLY_OK)
        err = get_str(s[K_CURRENCY], TOP("currency"), SK_CURRENCY, true, &ev->currency, fe);
    return err;
}

/* certification.expires [T10]: optional, only with action earned [T13],
 * an int after `at` and at most TLY_EXPIRES_MAX_MS. */
static tly_err get_expires(slot s, tly_event *ev, tly_field_error *fe)
{
    if (!present(s))
        return TLY_OK;
    if (ev->action != TLY_ACT_EARNED)
        return fail(fe, TLY_BAD_FIELD, TOP("expires"), "allowed only with action earned [T13]");
    tly_mp_reader r;
    slot_reader(s, &r);
    int64_t v;
    if (!tly_mp_read_int(&r, &v) || v <= ev->at_ms || v > TLY_EXPIRES_MAX_MS)
        return fail(fe, TLY_BAD_FIELD, TOP("expires"),
                    "must be an integer (Unix ms UTC) after at and at most %lld (year 9999)",
                    (long long)TLY_EXPIRES_MAX_MS);
    ev->expires_ms = v;
    ev->has_expires = true;
    return TLY_OK;
}

static tly_err decode_certification(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int act = 0;
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_str(s[K_PERSON], TOP("person"), SK_NAME, true, &ev->person, fe);
    if (err == TLY_OK)
        err = get_str(s[K_CERT], TOP("cert"), SK_NAME, true, &ev->cert, fe);
    if (err == TLY_OK)
        err = get_enum(s[K_ACTION], TOP("action"), action_names, 3, &act, fe);
    ev->action = (tly_action)act;
    if (err == TLY_OK)
        err = get_expires(s[K_EXPIRES], ev, fe);
    return err;
}

static tly_err decode_claim(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int act = 0;
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_str(s[K_CLAIM], TOP("claim"), SK_NAME, true, &ev->claim, fe);
    if (err == TLY_OK)
        err = get_enum(s[K_ACTION], TOP("action"), action_names + TLY_ACT_SUBMIT, 5, &act, fe);
    ev->action = (tly_action)(TLY_ACT_SUBMIT + act);
    /* [C3] amount is required for submit, approve and pay, ignored otherwise. */
    bool wants_amount =
        ev->action == TLY_ACT_SUBMIT || ev->action == TLY_ACT_APPROVE || ev->action == TLY_ACT_PAY;
    if (err == TLY_OK && wants_amount)
        err = get_amount(s[K_AMOUNT], ev, fe);
    if (err == TLY_OK)
        err = get_str(s[K_ACTIVITY], TOP("activity"), SK_TEXT, false, &ev->activity, fe);
    if (err == TLY_OK)
        err = get_str(s[K_REASON], TOP("reason"), SK_TEXT, false, &ev->reason, fe);
    return err;
}

static tly_err get_period(slot s, tly_event *ev, tly_field_error *fe)
{
    tly_str text = {NULL, 0};
    tly_err err = get_str(s, TOP("period"), SK_NAME, true, &text, fe);
    if (err != TLY_OK)
        return err;
    if (tly_period_parse(text.ptr, text.len, &ev->period_text_kind, &ev->period) != TLY_OK)
        return fail(fe, TLY_BAD_FIELD, TOP("period"),
                    "must be a quarter YYYY-Qn or a month YYYY-MM");
    return TLY_OK;
}

static tly_err decode_close(const slot *s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_str(s[K_PROGRAM], TOP("program"), SK_NAME, true, &ev->program, fe);
    if (err == TLY_OK)
        err = get_period(s[K_PERIOD], ev, fe);
    return err;
}

static tly_err decode_payout(const slot *s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_period(s[K_PERIOD], ev, fe);
    if (err == TLY_OK)
        err = get_amount(s[K_AMOUNT], ev, fe);
    return err;
}

static tly_err decode_adjust(const slot *s, tly_event *ev, tly_field_error *fe)
{
    int acc = 0;
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_enum(s[K_ACCOUNT], TOP("account"), account_names, 2, &acc, fe);
    ev->account = (tly_account)acc;
    /* Signed: 1 <= |amount| <= TLY_AMOUNT_MAX. */
    if (err == TLY_OK)
        err = get_int(s[K_AMOUNT], TOP("amount"), -TLY_AMOUNT_MAX, TLY_AMOUNT_MAX, &ev->amount, fe);
    if (err == TLY_OK && ev->amount == 0)
        err = fail(fe, TLY_BAD_FIELD, TOP("amount"), "must not be 0");
    ev->has_amount = err == TLY_OK;
    if (err == TLY_OK)
        err = get_str(s[K_REASON], TOP("reason"), SK_TEXT, true, &ev->reason, fe);
    return err;
}

/* A currency a rate converts from or to: [A-Z]{3} with a known ISO 4217
 * minor-unit exponent, since a conversion needs it [F6]. */
static tly_err get_rate_currency(slot s, fpath path, tly_str *out, tly_field_error *fe)
{
    int exp = 0;
    tly_err err = get_str(s, path, SK_CURRENCY, true, out, fe);
    if (err == TLY_OK && tly_currency_exponent(out->ptr, &exp) != TLY_OK)
        return fail(fe, TLY_BAD_FIELD, path,
                    "must be an ISO 4217 code whose minor-unit digits Tally knows [F6]");
    return err;
}

/* Parses ^[0-9]{1,9}(\.[0-9]{1,9})?$ (the digit counts are the limits)
 * into units / 10^scale; false on any other text. 18 digits fit int64. */
static bool rate_parse(const char *p, uint32_t len, tly_decimal *out)
{
    _Static_assert(TLY_RATE_INT_DIGITS_MAX + TLY_RATE_FRAC_DIGITS_MAX <= 18, "fits int64");
    int64_t units = 0;
    uint32_t i = 0, int_digits = 0, frac_digits = 0;
    /* Each loop stops at one digit past its limit, so units never holds
     * more than the 18 digits that fit. */
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++, int_digits++) {
        if (int_digits == TLY_RATE_INT_DIGITS_MAX)
            return false;
        units = units * 10 + (p[i] - '0');
    }
    if (int_digits < 1)
        return false;
    if (i < len && p[i] == '.') {
        for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++, frac_digits++) {
            if (frac_digits == TLY_RATE_FRAC_DIGITS_MAX)
                return false;
            units = units * 10 + (p[i] - '0');
        }
        if (frac_digits < 1)
            return false;
    }
    if (i != len)
        return false;
    out->units = units;
    out->scale = (int32_t)frac_digits;
    return true;
}

/* rate [F1]: 1 `currency` = `rate` `to`, an exact decimal string > 0. */
static tly_err get_rate(slot s, tly_decimal *out, tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, TOP("rate"));
    tly_mp_reader r;
    slot_reader(s, &r);
    const char *p;
    uint32_t len;
    tly_decimal d;
    if (!tly_mp_read_str(&r, &p, &len) || !rate_parse(p, len, &d) || d.units == 0)
        return fail(fe, TLY_BAD_FIELD, TOP("rate"),
                    "must be a decimal string above 0 with 1..%d digits before the point "
                    "and 0..%d after it, e.g. \"1.0823\"",
                    TLY_RATE_INT_DIGITS_MAX, TLY_RATE_FRAC_DIGITS_MAX);
    *out = d;
    return TLY_OK;
}

static tly_err decode_rate(const slot *s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_rate_currency(s[K_CURRENCY], TOP("currency"), &ev->currency, fe);
    if (err == TLY_OK)
        err = get_rate_currency(s[K_TO], TOP("to"), &ev->to, fe);
    if (err == TLY_OK)
        err = get_rate(s[K_RATE], &ev->rate, fe);
    if (err == TLY_OK && ev->to.len == ev->currency.len &&
        memcmp(ev->to.ptr, ev->currency.ptr, ev->to.len) == 0)
        err = fail(fe, TLY_BAD_FIELD, TOP("to"), "must differ from currency [F1]");
    return err;
}

/* referral [Q1]: a sale-like event without sku or qty. */
static tly_err decode_referral(const slot *s, tly_event *ev, tly_field_error *fe)
{
    tly_err err = get_str(s[K_PARTNER], TOP("partner"), SK_NAME, true, &ev->partner, fe);
    if (err == TLY_OK)
        err = get_str(s[K_DEAL], TOP("deal"), SK_NAME, true, &ev->deal, fe);
    if (err == TLY_OK)
        err = get_amount(s[K_AMOUNT], ev, fe);
    if (err == TLY_OK)
        err = get_str(s[K_CURRENCY], TOP("currency"), SK_CURRENCY, true, &ev->currency, fe);
    return err;
}

typedef tly_err (*type_decoder)(const slot *s, tly_event *ev, tly_field_error *fe);

#define KB(k) (UINT64_C(1) << (k))

/* Top-level keys the decoder of ev's type read and validated: every other
 * key present is checked like an unknown one (check_unread). A claim's
 * amount is read only when the action wants it [C3]. */
static uint64_t read_keys(const tly_event *ev)
{
    static const uint64_t by_type[TLY_EV_COUNT] = {
        [TLY_EV_PROGRAM] = KB(K_PROGRAM) | KB(K_VERSION) | KB(K_CURRENCY) | KB(K_PERIOD) |
                           KB(K_TIERS) | KB(K_REBATE) | KB(K_MDF_EXPIRY) | KB(K_TIER_WINDOW) |
                           KB(K_MDF_CAP) | KB(K_TIER_MOVES) | KB(K_TIER_GRACE),
        [TLY_EV_PARTNER] = KB(K_PARTNER) | KB(K_NAME) | KB(K_PROGRAM) | KB(K_KIND) | KB(K_REGION),
        [TLY_EV_SALE] = KB(K_PARTNER) | KB(K_SKU) | KB(K_QTY) | KB(K_AMOUNT) | KB(K_CURRENCY),
        [TLY_EV_RETURN] = KB(K_PARTNER) | KB(K_SALE) | KB(K_QTY) | KB(K_AMOUNT) | KB(K_CURRENCY),
        [TLY_EV_CERTIFICATION] =
            KB(K_PARTNER) | KB(K_PERSON) | KB(K_CERT) | KB(K_ACTION) | KB(K_EXPIRES),
        [TLY_EV_CLAIM] = KB(K_PARTNER) | KB(K_CLAIM) | KB(K_ACTION) | KB(K_AMOUNT) |
                         KB(K_ACTIVITY) | KB(K_REASON),
        [TLY_EV_CLOSE] = KB(K_PROGRAM) | KB(K_PERIOD),
        [TLY_EV_PAYOUT] = KB(K_PARTNER) | KB(K_PERIOD) | KB(K_AMOUNT),
        [TLY_EV_ADJUST] = KB(K_PARTNER) | KB(K_ACCOUNT) | KB(K_AMOUNT) | KB(K_REASON),
        [TLY_EV_RATE] = KB(K_CURRENCY) | KB(K_TO) | KB(K_RATE),
        [TLY_EV_REFERRAL] = KB(K_PARTNER) | KB(K_DEAL) | KB(K_AMOUNT) | KB(K_CURRENCY),
    };
    uint64_t keys = KB(K_TYPE) | KB(K_ID) | KB(K_AT) | by_type[ev->type];
    if (ev->type == TLY_EV_CLAIM && !ev->has_amount)
        keys &= ~KB(K_AMOUNT);
    return keys;
}

/* Known top-level keys the type does not read must hold values JSON lines
 * can carry, like unknown keys; checked in key-table order. */
static tly_err check_unread(const slot *s, uint64_t seen, const tly_event *ev, tly_field_error *fe)
{
    /* the keys present (scan_map's seen) that the type's decoder did not read */
    for (uint64_t m = seen & ~read_keys(ev); m != 0; m &= m - 1) {
        unsigned k = (unsigned)__builtin_ctzll(m);
        tly_err err = check_value(TOP(NULL), top_keys[k].name, top_keys[k].len, s[k].p, s[k].len,
                                  LV_EVENT + 1, fe);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

static const type_decoder decoders[TLY_EV_COUNT] = {
    [TLY_EV_PROGRAM] = decode_program,
    [TLY_EV_PARTNER] = decode_partner,
    [TLY_EV_SALE] = decode_sale,
    [TLY_EV_RETURN] = decode_sale,
    [TLY_EV_CERTIFICATION] = decode_certification,
    [TLY_EV_CLAIM] = decode_claim,
    [TLY_EV_CLOSE] = decode_close,
    [TLY_EV_PAYOUT] = decode_payout,
    [TLY_EV_ADJUST] = decode_adjust,
    [TLY_EV_RATE] = decode_rate,
    [TLY_EV_REFERRAL] = decode_referral,
};

/* --- entry points --- */

/* Checks buf is one well-formed map and scans its keys into slots; with
 * check, unknown keys' values too (scan_map).
 *
 * A sound event is walked once: scan_map reads the map's keys and skips
 * each value at depth 1, which is what tly_mp_is_single_value does for a
 * map with str keys, so a scan that succeeds and ends at the end of buf
 * has the outcome the checks in their order below would have. Anything
 * else is scanned again the slow way, for the error those name. */
static tly_err scan_event(const void *buf, size_t len, slot *slots, bool check, tly_field_error *fe,
                          uint64_t *seen)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    if (tly_mp_peek(&r) == TLY_MP_MAP &&
        scan_map(&r, &top_tab, slots, TOP(NULL), LV_EVENT, check, NULL, seen) == TLY_OK &&
        tly_mp_remaining(&r) == 0)
        return TLY_OK;
    if (!tly_mp_is_single_value(buf, len))
        return fail(fe, TLY_MALFORMED, TOP(NULL), "event is not one MessagePack value");
    tly_mp_init(&r, buf, len);
    if (tly_mp_peek(&r) != TLY_MP_MAP)
        return fail(fe, TLY_MALFORMED, TOP(NULL), "event is not a map");
    return scan_map(&r, &top_tab, slots, TOP(NULL), LV_EVENT, check, fe, seen);
}

static tly_err get_type(slot s, tly_ev_type *type, tly_field_error *fe)
{
    if (!present(s))
        return missing(fe, TOP("type"));
    tly_mp_reader r;
    slot_reader(s, &r);
    const char *p;
    uint32_t len;
    if (!tly_mp_read_str(&r, &p, &len))
        return fail(fe, TLY_BAD_FIELD, TOP("type"), "must be a string");
    if (tly_ev_type_parse(p, len, type) != TLY_OK)
        return fail(fe, TLY_BAD_TYPE, TOP("type"), "unknown event type");
    return TLY_OK;
}

static tly_err get_at(slot s, int64_t recorded_ms, int64_t *at_ms, tly_field_error *fe)
{
    int64_t max =
        recorded_ms > INT64_MAX - TLY_AT_FUTURE_MS ? INT64_MAX : recorded_ms + TLY_AT_FUTURE_MS;
    if (!present(s))
        return missing(fe, TOP("at"));
    tly_mp_reader r;
    slot_reader(s, &r);
    int64_t v;
    if (!tly_mp_read_int(&r, &v))
        return fail(fe, TLY_BAD_FIELD, TOP("at"), "must be an integer (Unix ms UTC)");
    if (v < TLY_AT_MIN_MS || v > max)
        return fail(fe, TLY_BAD_FIELD, TOP("at"),
                    "must lie between 2000-01-01 and one day after the recorded time");
    *at_ms = v;
    return TLY_OK;
}

/* Where the tier and bracket arrays lie in a tly_event: most of its 5.5 KB. */
#define EV_TIERS_BEGIN offsetof(tly_event, tiers)
#define EV_TIERS_END (EV_TIERS_BEGIN + sizeof(((tly_event *)0)->tiers))
#define EV_BRACKETS_BEGIN offsetof(tly_event, brackets)
#define EV_BRACKETS_END (EV_BRACKETS_BEGIN + sizeof(((tly_event *)0)->brackets))
_Static_assert(EV_TIERS_END <= EV_BRACKETS_BEGIN, "tiers lie before brackets");

/* Zeroes a tly_event but for its tier and bracket arrays, which only a
 * program has: the rest is 448 bytes of its 5.5 KB. Zeroing the whole
 * struct for every event was about a tenth of `audit verify`'s
 * instructions; decoding into a zeroed copy and copying that to the
 * caller, so that a failure left *ev untouched, another 3-5 % of its
 * time (perf: the copy's rep movs). */
static void event_head_zero(tly_event *ev)
{
    char *d = (char *)ev;
    memset(d, 0, EV_TIERS_BEGIN);
    memset(d + EV_TIERS_END, 0, EV_BRACKETS_BEGIN - EV_TIERS_END);
    memset(d + EV_BRACKETS_END, 0, sizeof(tly_event) - EV_BRACKETS_END);
}

tly_err tly_event_decode(const void *buf, size_t len, int64_t recorded_ms, tly_event *ev,
                         tly_field_error *fe)
{
    slot s[K_TOP_COUNT];
    uint64_t seen;
    tly_err err = scan_event(buf, len, s, true, fe, &seen);
    if (err != TLY_OK)
        return err;
    tly_ev_type type;
    err = get_type(s[K_TYPE], &type, fe);
    if (err != TLY_OK)
        return err;
    if (type == TLY_EV_PROGRAM) /* its arrays are written only for a program */
        memset(ev, 0, sizeof *ev);
    else
        event_head_zero(ev);
    ev->type = type;
    err = get_str(s[K_ID], TOP("id"), SK_ID, true, &ev->id, fe);
    if (err == TLY_OK)
        err = get_at(s[K_AT], recorded_ms, &ev->at_ms, fe);
    if (err == TLY_OK)
        err = decoders[type](s, ev, fe);
    if (err == TLY_OK)
        err = check_unread(s, seen, ev, fe);
    return err;
}

tly_err tly_event_peek_id(const void *buf, size_t len, tly_ev_type *type, tly_str *id)
{
    slot s[K_TOP_COUNT];
    tly_err err = scan_event(buf, len, s, false, NULL, NULL);
    tly_ev_type t = TLY_EV_PROGRAM;
    tly_str i = {NULL, 0};
    if (err == TLY_OK)
        err = get_type(s[K_TYPE], &t, NULL);
    if (err == TLY_OK)
        err = get_str(s[K_ID], TOP("id"), SK_ID, true, &i, NULL);
    if (err != TLY_OK)
        return err;
    *type = t;
    *id = i;
    return TLY_OK;
}
