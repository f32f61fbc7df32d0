/*
 * engine_json.c — floor 6 of the engine (see engine_internal.h): the writer
 * the section 8 documents are built with.
 *
 * Text back end: the exact bytes json_dumps(doc, JSON_COMPACT) produces
 * (jansson 2.x dump.c): no spaces, members in insertion order, integers
 * as "%lld", strings escaping '"', '\\', \b \f \n \r \t and the other
 * control characters as \u00XX (upper-case hex), '/' and non-ASCII UTF-8
 * left as they are. The flush writes thousands of documents per batch, so
 * this path allocates nothing but the growth of one reused buffer.
 *
 * Canonical text: the text back end's bytes with each object's members
 * sorted by key, what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes for
 * them (schemas/DIGEST.md). An object's body is sorted when it ends: its
 * members, each a key and its value already in canonical form, are
 * written again in key order after the buffer's end and moved back over
 * the body. `tally audit digest` read each document this way through
 * json_loadb and json_dumps (80 % of its time at 10M events).
 *
 * Tree back end: the jansson objects the public API returns, built with
 * the same calls the views make on the text back end.
 *
 * MessagePack back end: what msgpack-c packs for the tree back end's
 * document, written straight into a buffer (the query service's partner
 * answers). A container's head is written when it ends, once its count is
 * known: its contents are moved down over the room left for the longest
 * head. Documents are small and nest ENG_JW_DEPTH_MAX deep at most.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_base.h"
#include "tly_assert.h"

/* ---- the buffer ---- */

/* Room for n more bytes; false (and b->failed) when out of memory. */
static bool buf_reserve(eng_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return true;
    if (b->failed)
        return false;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap - b->len < n)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

static void buf_put(eng_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void buf_ch(eng_buf *b, char c)
{
    if (!buf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
}

bool eng_buf_terminate(eng_buf *b)
{
    if (!buf_reserve(b, 1))
        return false;
    b->data[b->len] = '\0';
    return true;
}

void eng_buf_free(eng_buf *b)
{
    free(b->data);
    *b = (eng_buf){0};
}

/* ---- UTF-8, as jansson's utf8_check_string decides it ---- */

/* Length of the sequence lead byte u starts, 0 when u cannot start one. */
static size_t utf8_lead(unsigned char u)
{
    if (u < 0x80)
        return 1;
    if (u < 0xC2) /* continuation byte, or overlong C0/C1 */
        return 0;
    if (u <= 0xDF)
        return 2;
    if (u <= 0xEF)
        return 3;
    return u <= 0xF4 ? 4 : 0;
}

/* The n-byte sequence at s is a shortest-form scalar value ≤ U+10FFFF. */
static bool utf8_full(const unsigned char *s, size_t n)
{
    uint32_t v = s[0] & (n == 2 ? 0x1Fu : n == 3 ? 0x0Fu : 0x07u);
    for (size_t i = 1; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return false;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return false;
    return !((n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000));
}

static bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_lead(u[i]);
        if (n == 0 || n > len - i || (n > 1 && !utf8_full(u + i, n)))
            return false;
        i += n;
    }
    return true;
}

/* ---- text back end ---- */

/* jansson's escape of one byte below 0x80, or NULL when it is copied. The
 * bytes of a multi-byte sequence are ≥ 0x80 and always copied. */
static const char *escape_of(unsigned char c, char seq[7])
{
    static const char hex[] = "0123456789ABCDEF";
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c >= 0x20)
        return NULL;
    memcpy(seq, "\\u00", 4);
    seq[4] = hex[c >> 4];
    seq[5] = hex[c & 0xF];
    seq[6] = '\0';
    return seq;
}

/* A valid UTF-8 string, quoted and escaped; runs of plain bytes are
 * copied whole. */
static void text_string(eng_buf *b, const char *s, size_t len)
{
    buf_ch(b, '"');
    size_t run = 0, i = 0;
    /* most strings (every key) need no escape: find the first that does */
    while (i < len && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
        i++;
    for (; i < len; i++) {
        char seq[7];
        const char *esc = escape_of((unsigned char)s[i], seq);
        if (esc == NULL)
            continue;
        buf_put(b, s + run, i - run);
        buf_put(b, esc, strlen(esc));
        run = i + 1;
    }
    buf_put(b, s + run, len - run);
    buf_ch(b, '"');
}

/* "%lld" without the printf machinery; INT64_MIN through unsigned. */
static void text_int(eng_buf *b, int64_t v)
{
    char tmp[20];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (!buf_reserve(b, n + 1))
        return;
    if (v < 0)
        b->data[b->len++] = '-';
    while (n > 0)
        b->data[b->len++] = tmp[--n];
}

/* The separator a value or member needs before it. */
static void text_sep(eng_jw *w)
{
    if (w->comma)
        buf_ch(w->text, ',');
    w->comma = true;
}

/* ---- canonical text ---- */

/* Orders the members of the object closing at depth d by key: strcmp, as
 * jansson 2.14's JSON_SORT_KEYS (memcmp, then the shorter first) orders
 * keys without NUL bytes, the escapes left out of it. */
static void sort_members(eng_jw *w, uint32_t d)
{
    eng_buf *b = w->text;
    const size_t *at = w->sorted->at[d];
    const char *const *key = w->sorted->key[d];
    uint32_t n = w->n[d], order[ENG_JW_MEMBERS_MAX];
    for (uint32_t i = 0; i < n; i++) { /* insertion sort: a dozen members */
        uint32_t j = i;
        for (; j > 0 && strcmp(key[order[j - 1]], key[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
        TLY_ASSERT(j == 0 || strcmp(key[order[j - 1]], key[i]) != 0); /* no key twice */
    }
    /* The body is the members joined by commas: member i ends before the
     * comma ahead of member i + 1, the last at the body's end. */
    size_t end = b->len, body = end - w->at[d];
    if (n < 2 || b->failed || !buf_reserve(b, body)) /* failed: at[] may not hold */
        return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m = order[i];
        size_t from = at[m], to = m + 1 < n ? at[m + 1] - 1 : end;
        if (i > 0)
            b->data[b->len++] = ',';
        memcpy(b->data + b->len, b->data + from, to - from);
        b->len += to - from;
    }
    TLY_ASSERT(b->len == end + body);
    memmove(b->data + w->at[d], b->data + end, body);
    b->len = end;
}

/* Notes where the member keyed k starts, in the object open at the top. */
static void sorted_member(eng_jw *w, const char *k)
{
    uint32_t d = w->depth - 1;
    TLY_ASSERT(w->closer[d] == '}' && w->n[d] < ENG_JW_MEMBERS_MAX);
    w->sorted->at[d][w->n[d]] = w->text->len;
    w->sorted->key[d][w->n[d]++] = k;
}

/* ---- tree back end ---- */

/* Adds v under the pending key or to the open array; the root when
 * nothing is open. Takes the reference to v. After a failure the writer
 * only counts depth, so a missing container is never dereferenced. */
static bool tree_add(eng_jw *w, json_t *v)
{
    if (w->failed || v == NULL) {
        json_decref(v);
        w->failed = true;
        return false;
    }
    if (w->depth == 0) {
        TLY_ASSERT(w->root == NULL);
        w->root = v;
        return true;
    }
    json_t *parent = w->stack[w->depth - 1];
    int rc = json_is_object(parent) ? json_object_set_new(parent, w->key, v)
                                    : json_array_append_new(parent, v);
    w->failed = rc != 0;
    return rc == 0;
}

/* The parent (or the root) holds c; the stack borrows it. */
static void tree_open(eng_jw *w, json_t *c)
{
    TLY_ASSERT(w->depth < ENG_JW_DEPTH_MAX);
    w->stack[w->depth++] = tree_add(w, c) ? c : NULL;
}

/* ---- MessagePack back end ---- */

/* The longest head of a map or array: map32 or array32. */
#define MP_HEAD_ROOM 5u

/* Counts a value into the open array (a map counts its keys). */
static void mp_item(eng_jw *w)
{
    if (w->depth > 0 && w->closer[w->depth - 1] == ']')
        w->n[w->depth - 1]++;
}

static void mp_open(eng_jw *w, char closer)
{
    TLY_ASSERT(w->depth < ENG_JW_DEPTH_MAX);
    mp_item(w);
    w->closer[w->depth] = closer;
    w->at[w->depth] = w->mp.b->size;
    w->n[w->depth] = 0;
    w->depth++;
    if (tly_mpw_at(&w->mp, MP_HEAD_ROOM) != NULL)
        w->mp.b->size += MP_HEAD_ROOM;
}

/* Writes the head of the container closing at depth w->depth and moves its
 * contents down to follow it. */
static void mp_close(eng_jw *w)
{
    if (w->mp.failed)
        return;
    char head[MP_HEAD_ROOM];
    uint32_t d = w->depth;
    char *end =
        w->closer[d] == '}' ? tly_mpw_put_map(head, w->n[d]) : tly_mpw_put_array(head, w->n[d]);
    size_t hlen = (size_t)(end - head);
    char *at = w->mp.b->data + w->at[d];
    size_t body = w->mp.b->size - w->at[d] - MP_HEAD_ROOM;
    memmove(at + hlen, at + MP_HEAD_ROOM, body);
    memcpy(at, head, hlen);
    w->mp.b->size -= MP_HEAD_ROOM - hlen;
}

/* A string as msgpack-c packs it; one with a NUL byte is refused. */
static void mp_str(eng_jw *w, const char *s, size_t len)
{
    if (len > 0 && memchr(s, '\0', len) != NULL)
        w->mp.failed = true;
    else
        tly_mpw_str(&w->mp, len > 0 ? s : "", len);
}

/* ---- the interface ---- */

void eng_jw_init_text(eng_jw *w, eng_buf *b)
{
    *w = (eng_jw){.text = b};
}

void eng_jw_init_canonical(eng_jw *w, eng_buf *b, eng_jw_members *m)
{
    *w = (eng_jw){.text = b, .sorted = m};
}

void eng_jw_init_tree(eng_jw *w)
{
    *w = (eng_jw){0};
}

void eng_jw_init_mp(eng_jw *w, msgpack_sbuffer *b)
{
    *w = (eng_jw){.mp = {.b = b}};
}

json_t *eng_jw_take(eng_jw *w)
{
    TLY_ASSERT(w->text == NULL && w->mp.b == NULL && w->depth == 0);
    json_t *root = w->root;
    w->root = NULL;
    if (w->failed) {
        json_decref(root);
        return NULL;
    }
    return root;
}

void eng_jw_obj(eng_jw *w)
{
    if (w->mp.b != NULL) {
        mp_open(w, '}');
        return;
    }
    if (w->text == NULL) {
        tree_open(w, json_object());
        return;
    }
    TLY_ASSERT(w->depth < ENG_JW_DEPTH_MAX);
    w->closer[w->depth++] = '}';
    text_sep(w);
    buf_ch(w->text, '{');
    w->comma = false;
    w->at[w->depth - 1] = w->text->len; /* sorted: the body starts here */
    w->n[w->depth - 1] = 0;
}

void eng_jw_arr(eng_jw *w)
{
    if (w->mp.b != NULL) {
        mp_open(w, ']');
        return;
    }
    if (w->text == NULL) {
        tree_open(w, json_array());
        return;
    }
    TLY_ASSERT(w->depth < ENG_JW_DEPTH_MAX);
    w->closer[w->depth++] = ']';
    text_sep(w);
    buf_ch(w->text, '[');
    w->comma = false;
}

void eng_jw_end(eng_jw *w)
{
    TLY_ASSERT(w->depth > 0);
    w->depth--;
    if (w->mp.b != NULL)
        mp_close(w);
    if (w->text == NULL)
        return;
    if (w->sorted != NULL && w->closer[w->depth] == '}')
        sort_members(w, w->depth);
    buf_ch(w->text, w->closer[w->depth]);
    w->comma = true; /* a closed container is a value */
}

void eng_jw_key(eng_jw *w, const char *k)
{
    if (w->mp.b != NULL) {
        TLY_ASSERT(w->depth > 0 && w->closer[w->depth - 1] == '}');
        w->n[w->depth - 1]++;
        mp_str(w, k, strlen(k));
        return;
    }
    if (w->text == NULL) {
        w->key = k;
        return;
    }
    text_sep(w);
    if (w->sorted != NULL)
        sorted_member(w, k);
    text_string(w->text, k, strlen(k));
    buf_ch(w->text, ':');
    w->comma = false;
}

void eng_jw_str(eng_jw *w, const char *s, size_t len)
{
    if (s == NULL) {
        eng_jw_null(w);
        return;
    }
    if (w->mp.b != NULL) {
        mp_item(w);
        mp_str(w, s, utf8_valid(s, len) ? len : 0);
        return;
    }
    if (w->text == NULL) {
        json_t *j = json_stringn(s, len);
        tree_add(w, j != NULL ? j : json_string(""));
        return;
    }
    text_sep(w);
    len = utf8_valid(s, len) ? len : 0;
    if (w->sorted != NULL && len > 0 && memchr(s, '\0', len) != NULL)
        w->failed = true;
    text_string(w->text, s, len);
}

void eng_jw_int(eng_jw *w, int64_t v)
{
    if (w->mp.b != NULL) {
        mp_item(w);
        tly_mpw_int(&w->mp, v);
        return;
    }
    if (w->text == NULL) {
        tree_add(w, json_integer(v));
        return;
    }
    text_sep(w);
    text_int(w->text, v);
}

void eng_jw_null(eng_jw *w)
{
    if (w->mp.b != NULL) {
        mp_item(w);
        tly_mpw_nil(&w->mp);
        return;
    }
    if (w->text == NULL) {
        tree_add(w, json_null());
        return;
    }
    text_sep(w);
    buf_put(w->text, "null", 4);
}
