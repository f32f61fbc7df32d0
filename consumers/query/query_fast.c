/*
 * query_fast.c — the query service's fast reader of a JSON document (the
 * list answers' rows and expiring funds, query_finance_fast.c;
 * query_internal.h): the document is read once into a flat array of
 * values (no allocation), then values are looked up in it and written out
 * as MessagePack. It must give the bytes of the jansson way (json_loadb,
 * tly_query_pack) for every document it accepts; whatever it does not
 * read exactly as jansson would, it refuses, and the jansson way answers.
 * (The partner answers are packed straight from the partner's state:
 * tly_view_reader_reply.)
 */
#include <stdlib.h>
#include <string.h>

#include "query_internal.h"
#include "tly_event.h"
#include "tly_limits.h"
#include "tly_mpw.h"

enum { QN_OBJ, QN_ARR, QN_STR, QN_INT, QN_TRUE, QN_FALSE, QN_NULL };

/* A value. Children of an object are key, value, key, value ... (a key is
 * a QN_STR), linked by next; 0 is "none" (node 0 is never used). */
struct tly__qnode {
    uint8_t type;
    uint32_t count; /* OBJ: members; ARR: elements; STR: bytes */
    uint32_t first; /* OBJ, ARR: the first child */
    uint32_t next;  /* the next sibling */
    const char *s;  /* STR: the bytes, inside the document */
    int64_t i;      /* INT */
};

_Static_assert(TLY_QUERY_FAST_DEPTH_MAX < TLY_MP_DEPTH_MAX,
               "a document the fast path reads always packs (tly_query_pack's depth)");

bool tly__qfast_init(tly__qfast *f)
{
    f->nodes = calloc(TLY_QUERY_FAST_VALUES_MAX + 1u, sizeof *f->nodes);
    f->cap = f->nodes ? TLY_QUERY_FAST_VALUES_MAX + 1u : 0;
    return f->nodes != NULL;
}

void tly__qfast_free(tly__qfast *f)
{
    free(f->nodes);
    f->nodes = NULL;
    f->cap = 0;
}

/* --- reading --- */

typedef struct qread {
    const char *p, *end;
    tly__qnode *nodes;
    uint32_t n, cap;
} qread;

/* A new node of type t at the reader's position; 0 when full. */
static uint32_t node_new(qread *r, uint8_t t)
{
    if (r->n + 1 >= r->cap)
        return 0;
    uint32_t k = ++r->n;
    r->nodes[k] = (tly__qnode){.type = t};
    return k;
}

static uint32_t read_value(qread *r, unsigned depth);

/* What a string's byte is to the reader: 0 ordinary, STOP the closing
 * quote or a byte it refuses (a control character, which jansson refuses
 * too, or an escape, which is jansson's to read), HIGH part of a UTF-8
 * sequence (checked once the string ends). */
enum { STOP = 1, HIGH = 2 };
static const uint8_t str_class[256] = {
    /* 0x00-0x1f: control characters; '"' (0x22) and '\\' (0x5c); 0x80-0xff */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};
_Static_assert(STOP == 1 && HIGH == 2, "str_class spells the classes as numbers");

/* A string without escapes or control characters, UTF-8 as jansson
 * requires. r->p is at the opening quote. */
static uint32_t read_string(qread *r)
{
    const char *s = ++r->p;
    uint8_t seen = 0;
    for (;;) {
        while (r->p < r->end && str_class[(unsigned char)*r->p] == 0)
            r->p++;
        if (r->p == r->end || str_class[(unsigned char)*r->p] != HIGH)
            break;
        seen = HIGH;
        r->p++;
    }
    if (r->p == r->end || *r->p != '"')
        return 0; /* unterminated, a control character or an escape */
    size_t len = (size_t)(r->p++ - s);
    if (len > UINT32_MAX || (seen && !tly_utf8_valid(s, len)))
        return 0;
    uint32_t k = node_new(r, QN_STR);
    if (k) {
        r->nodes[k].s = s;
        r->nodes[k].count = (uint32_t)len;
    }
    return k;
}

/* An integer as jansson reads one: -?(0|[1-9][0-9]*), here at most 18
 * digits (so it fits int64 without a check) and not followed by what
 * would make it a real. */
static uint32_t read_int(qread *r)
{
    bool neg = r->p < r->end && *r->p == '-';
    r->p += neg;
    const char *d = r->p;
    int64_t v = 0;
    /* At most 18 digits are read (a 19th would overflow int64 for some
     * values); a longer number stops at a digit and is left to jansson. */
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9' && r->p - d < 18)
        v = v * 10 + (*r->p++ - '0');
    size_t digits = (size_t)(r->p - d);
    if (digits == 0 || (digits > 1 && d[0] == '0'))
        return 0;
    if (r->p < r->end &&
        (*r->p == '.' || *r->p == 'e' || *r->p == 'E' || (*r->p >= '0' && *r->p <= '9')))
        return 0;
    uint32_t k = node_new(r, QN_INT);
    if (k)
        r->nodes[k].i = neg ? -v : v;
    return k;
}

static uint32_t read_word(qread *r, const char *w, uint8_t type)
{
    size_t n = strlen(w);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return 0;
    r->p += n;
    return node_new(r, type);
}

/* True when the keys of object obj are all different. */
static bool keys_unique(const qread *r, uint32_t obj)
{
    const tly__qnode *nd = r->nodes;
    for (uint32_t a = nd[obj].first; a; a = nd[nd[a].next].next)
        for (uint32_t b = nd[nd[a].next].next; b; b = nd[nd[b].next].next)
            if (nd[a].count == nd[b].count &&
                (nd[a].count == 0 ||
                 (nd[a].s[0] == nd[b].s[0] && memcmp(nd[a].s, nd[b].s, nd[a].count) == 0)))
                return false;
    return true;
}

/* The elements of an array or the members of an object; r->p is past the
 * opening bracket. */
static bool read_children(qread *r, uint32_t k, bool obj, unsigned depth)
{
    char close = obj ? '}' : ']';
    uint32_t last = 0;
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return true;
    }
    for (;;) {
        uint32_t key = 0;
        if (obj && (r->p == r->end || *r->p != '"' || !(key = read_string(r)) || r->p == r->end ||
                    *r->p++ != ':'))
            return false;
        uint32_t v = read_value(r, depth + 1);
        if (!v)
            return false;
        if (key)
            r->nodes[key].next = v;
        uint32_t head = key ? key : v;
        if (last)
            r->nodes[last].next = head;
        else
            r->nodes[k].first = head;
        last = v;
        r->nodes[k].count++;
        if (r->p == r->end)
            return false;
        char c = *r->p++;
        if (c == close)
            return !obj || keys_unique(r, k);
        if (c != ',')
            return false;
    }
}

/* One value at nesting depth (the document is depth 0); 0 when it is not
 * in the subset. */
static uint32_t read_value(qread *r, unsigned depth)
{
    if (r->p == r->end || depth > TLY_QUERY_FAST_DEPTH_MAX)
        return 0;
    char c = *r->p;
    uint32_t k;
    switch (c) {
    case '{':
    case '[':
        r->p++;
        k = node_new(r, c == '{' ? QN_OBJ : QN_ARR);
        return k && read_children(r, k, c == '{', depth) ? k : 0;
    case '"':
        return read_string(r);
    case 't':
        return read_word(r, "true", QN_TRUE);
    case 'f':
        return read_word(r, "false", QN_FALSE);
    case 'n':
        return read_word(r, "null", QN_NULL);
    default:
        return c == '-' || (c >= '0' && c <= '9') ? read_int(r) : 0;
    }
}

/* --- looking up --- */

/* True when key holds exactly the bytes of name. A key holds no NUL (no
 * escapes, no control characters), so a shorter name differs within the
 * first key->count bytes; no strlen per comparison. */
static bool key_is(const tly__qnode *key, const char *name)
{
    return key->count > 0 ? name[0] == key->s[0] && strncmp(name, key->s, key->count) == 0 &&
                                name[key->count] == '\0'
                          : name[0] == '\0';
}

/* The value of member name of object obj; 0 when absent. */
static uint32_t member(const tly__qnode *nd, uint32_t obj, const char *name)
{
    for (uint32_t c = nd[obj].first; c; c = nd[nd[c].next].next)
        if (key_is(&nd[c], name))
            return nd[c].next;
    return 0;
}

uint32_t tly__qfast_read(tly__qfast *f, const char *doc, size_t len)
{
    if (!f->nodes)
        return 0;
    qread r = {doc, doc + len, f->nodes, 0, f->cap};
    uint32_t top = read_value(&r, 0);
    return top && r.p == r.end && f->nodes[top].type == QN_OBJ ? top : 0;
}

uint32_t tly__qfast_member(const tly__qfast *f, uint32_t obj, const char *name)
{
    return f->nodes[obj].type == QN_OBJ ? member(f->nodes, obj, name) : 0;
}

bool tly__qfast_str(const tly__qfast *f, uint32_t v, const char **s, size_t *len)
{
    if (v == 0 || f->nodes[v].type != QN_STR)
        return false;
    *s = f->nodes[v].s;
    *len = f->nodes[v].count;
    return true;
}

int64_t tly__qfast_int(const tly__qfast *f, uint32_t v)
{
    return v != 0 && f->nodes[v].type == QN_INT ? f->nodes[v].i : 0;
}

/* --- writing straight into a buffer: the bytes msgpack-c's
 * msgpack_pack_* calls give, without a call per piece --- */

static bool emit_str(msgpack_sbuffer *b, const char *s, size_t len)
{
    if (!tly_mpw_room(b, TLY_MPW_HEAD_BYTES_MAX + len))
        return false;
    char *p = tly_mpw_put_str_head(b->data + b->size, len);
    memcpy(p, s, len);
    b->size = (size_t)(p + len - b->data);
    return true;
}

/* A value as tly_query_pack packs jansson's reading of it. */
static bool emit_value(const tly__qnode *nd, uint32_t k, msgpack_sbuffer *b)
{
    const tly__qnode *v = &nd[k];
    if (v->type == QN_STR)
        return emit_str(b, v->s, v->count);
    if (!tly_mpw_room(b, TLY_MPW_HEAD_BYTES_MAX))
        return false;
    char *p = b->data + b->size;
    bool ok = true;
    switch (v->type) {
    case QN_OBJ:
        b->size = (size_t)(tly_mpw_put_map(p, v->count) - b->data);
        for (uint32_t c = v->first; ok && c; c = nd[nd[c].next].next)
            ok = emit_str(b, nd[c].s, nd[c].count) && emit_value(nd, nd[c].next, b);
        return ok;
    case QN_ARR:
        b->size = (size_t)(tly_mpw_put_array(p, v->count) - b->data);
        for (uint32_t c = v->first; ok && c; c = nd[c].next)
            ok = emit_value(nd, c, b);
        return ok;
    case QN_INT:
        b->size = (size_t)(tly_mpw_put_int(p, v->i) - b->data);
        return true;
    default:
        *p = (char)(v->type == QN_TRUE ? 0xc3 : v->type == QN_FALSE ? 0xc2 : 0xc0);
        b->size++;
        return true;
    }
}

bool tly__qfast_put(const tly__qfast *f, uint32_t v, msgpack_sbuffer *out)
{
    return emit_value(f->nodes, v, out);
}
