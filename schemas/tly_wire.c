/*
 * tly_wire.c — ingest request/reply and log-read messages (SPEC section 4);
 * see tly_wire.h.
 *
 * Decisions where the SPEC is silent (also in schemas/SCHEMA.md):
 * - `source` and `atomic` may be nil, meaning absent.
 * - A `source` of the right type but outside 1..TLY_SOURCE_BYTES_MAX bytes of
 *   UTF-8 [D12], or holding a control byte (a NUL would cut it short where it
 *   is C text), is malformed, like every other defect of the envelope: the
 *   whole request is refused and the producer has one code to look for.
 * - A key repeated in the request map is malformed.
 * - When a frame is over TLY_FRAME_BYTES_MAX or has too many events the
 *   decoder still reads the rest of the map, only to find `req` to echo.
 */
#include "tly_wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tly_mp.h"

static void set_msg(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

static bool key_is(const char *k, uint32_t klen, const char *name)
{
    size_t n = strlen(name);
    return klen == n && memcmp(k, name, n) == 0;
}

/* Decoding state: the first error wins; later keys are still read for `req`. */
typedef struct ingest_state {
    tly_err err;
    char *msg;
    size_t cap;
    unsigned seen; /* bit per known key, to refuse repeats */
} ingest_state;

static void ingest_fail(ingest_state *st, tly_err err, const char *text)
{
    if (st->err != TLY_OK)
        return;
    st->err = err;
    set_msg(st->msg, st->cap, "%s", text);
}

/* Reads `events`: every element must be one well-formed value. */
static bool read_events(tly_mp_reader *r, tly_ingest_req *req, ingest_state *st)
{
    uint32_t n;
    if (!tly_mp_read_array(r, &n)) {
        ingest_fail(st, TLY_MALFORMED, "events must be an array");
        return tly_mp_skip(r, NULL, NULL);
    }
    if (n == 0)
        ingest_fail(st, TLY_MALFORMED, "events must hold at least one event");
    if (n > TLY_BATCH_EVENTS_MAX)
        ingest_fail(st, TLY_TOO_LARGE, "more than 4096 events in one request");
    if (n > tly_mp_remaining(r))
        return false; /* each element takes at least one byte */
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len;
        if (!tly_mp_skip(r, &p, &len))
            return false;
        if (i < TLY_BATCH_EVENTS_MAX) {
            req->events[i].ptr = p;
            req->events[i].len = len;
        }
    }
    req->event_count = n;
    return true;
}

static bool read_source(tly_mp_reader *r, tly_ingest_req *req, ingest_state *st)
{
    const char *s;
    uint32_t n;
    if (tly_mp_read_nil(r))
        return true;
    if (!tly_mp_read_str(r, &s, &n)) {
        ingest_fail(st, TLY_MALFORMED, "source must be a string");
        return tly_mp_skip(r, NULL, NULL);
    }
    if (!tly_source_valid(s, n))
        ingest_fail(st, TLY_MALFORMED,
                    "source must be 1..64 bytes of UTF-8 without control characters [D12]");
    req->source.ptr = s;
    req->source.len = n;
    return true;
}

/* Reads the value of one top-level key; false when the input is broken. */
static bool read_ingest_key(tly_mp_reader *r, const char *k, uint32_t klen, tly_ingest_req *req,
                            ingest_state *st)
{
    static const char *const names[] = {"req", "source", "atomic", "events"};
    int id = -1;
    for (int i = 0; i < 4; i++)
        if (key_is(k, klen, names[i]))
            id = i;
    if (id < 0)
        return tly_mp_skip(r, NULL, NULL); /* unknown keys are ignored */
    if (st->seen & (1u << id)) {
        ingest_fail(st, TLY_MALFORMED, "a key appears twice in the request");
        return tly_mp_skip(r, NULL, NULL);
    }
    st->seen |= 1u << id;
    switch (id) {
    case 0:
        if (tly_mp_read_uint(r, &req->req)) {
            req->has_req = true;
            return true;
        }
        ingest_fail(st, TLY_MALFORMED, "req must be an unsigned integer");
        return tly_mp_skip(r, NULL, NULL);
    case 1:
        return read_source(r, req, st);
    case 2:
        if (tly_mp_read_nil(r) || tly_mp_read_bool(r, &req->atomic))
            return true;
        ingest_fail(st, TLY_MALFORMED, "atomic must be a boolean");
        return tly_mp_skip(r, NULL, NULL);
    default:
        return read_events(r, req, st);
    }
}

tly_err tly_wire_ingest_decode(const void *buf, size_t len, tly_ingest_req *req, char *msg,
                               size_t cap)
{
    ingest_state st = {TLY_OK, msg, cap, 0};
    req->has_req = false;
    req->req = 0;
    req->source.ptr = NULL;
    req->source.len = 0;
    req->atomic = false;
    req->event_count = 0;
    if (len > TLY_FRAME_BYTES_MAX)
        ingest_fail(&st, TLY_TOO_LARGE, "frame larger than 4 MiB");
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    uint32_t count;
    if (!tly_mp_read_map(&r, &count)) {
        ingest_fail(&st, TLY_MALFORMED, "request is not a MessagePack map");
        return st.err;
    }
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t klen;
        if (!tly_mp_read_str(&r, &k, &klen) || !read_ingest_key(&r, k, klen, req, &st)) {
            ingest_fail(&st, TLY_MALFORMED, "request is not well-formed MessagePack");
            return st.err;
        }
    }
    if (tly_mp_remaining(&r) != 0)
        ingest_fail(&st, TLY_MALFORMED, "trailing bytes after the request map");
    if (!(st.seen & (1u << 3)))
        ingest_fail(&st, TLY_MALFORMED, "request has no events array");
    if (st.err != TLY_OK && req->event_count > TLY_BATCH_EVENTS_MAX)
        req->event_count = 0; /* never expose more spans than the array holds */
    return st.err;
}

/* The packer writes into an sbuffer, whose only failure is allocation. */
static int sbuf_write(void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write(data, buf, len);
}

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

/* Packs everything of an ingest request before its events: the map header,
 * req, source, atomic and the events array header. Nonzero on failure. */
static int pack_ingest_head(msgpack_packer *pk, uint64_t req, const char *source, bool atomic,
                            uint32_t count)
{
    int rc = msgpack_pack_map(pk, 2 + (source != NULL) + atomic);
    rc = rc || pack_cstr(pk, "req") || msgpack_pack_uint64(pk, req);
    if (source)
        rc = rc || pack_cstr(pk, "source") || pack_cstr(pk, source);
    if (atomic)
        rc = rc || pack_cstr(pk, "atomic") || msgpack_pack_true(pk);
    return rc || pack_cstr(pk, "events") || msgpack_pack_array(pk, count);
}

/* A packer sink that only counts the bytes it is given. */
static int count_write(void *data, const char *buf, size_t len)
{
    (void)buf;
    *(size_t *)data += len;
    return 0;
}

size_t tly_wire_ingest_envelope_bytes(uint64_t req, const char *source, bool atomic, uint32_t count)
{
    size_t bytes = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &bytes, count_write);
    pack_ingest_head(&pk, req, source, atomic, count);
    return bytes;
}

tly_err tly_wire_ingest_encode(msgpack_sbuffer *out, uint64_t req, const char *source, bool atomic,
                               const tly_span *events, uint32_t count)
{
    size_t mark = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, sbuf_write);
    int rc = pack_ingest_head(&pk, req, source, atomic, count);
    /* Events are copied verbatim: their bytes are what the ledger stores. */
    for (uint32_t i = 0; !rc && i < count; i++)
        rc = msgpack_sbuffer_write(out, (const char *)events[i].ptr, events[i].len);
    if (rc) {
        out->size = mark;
        return TLY_NOMEM;
    }
    return TLY_OK;
}

void tly_wire_reply_begin(msgpack_packer *pk, uint64_t req, uint32_t count)
{
    msgpack_pack_map(pk, 2);
    pack_cstr(pk, "req");
    msgpack_pack_uint64(pk, req);
    pack_cstr(pk, "results");
    msgpack_pack_array(pk, count);
}

void tly_wire_reply_result(msgpack_packer *pk, const tly_ingest_result *res)
{
    if (res->err == TLY_OK) {
        msgpack_pack_map(pk, res->dup ? 2 : 1);
        pack_cstr(pk, "seq");
        msgpack_pack_uint64(pk, res->seq);
        if (res->dup) {
            pack_cstr(pk, "dup");
            msgpack_pack_true(pk);
        }
        return;
    }
    bool has_field = res->field[0] != '\0';
    msgpack_pack_map(pk, has_field ? 3 : 2);
    pack_cstr(pk, "error");
    pack_cstr(pk, tly_err_name(res->err));
    pack_cstr(pk, "message");
    pack_cstr(pk, res->message);
    if (has_field) {
        pack_cstr(pk, "field");
        pack_cstr(pk, res->field);
    }
}

void tly_wire_reply_error(msgpack_packer *pk, bool has_req, uint64_t req, tly_err err,
                          const char *msg)
{
    msgpack_pack_map(pk, has_req ? 3 : 2);
    if (has_req) {
        pack_cstr(pk, "req");
        msgpack_pack_uint64(pk, req);
    }
    pack_cstr(pk, "error");
    pack_cstr(pk, tly_err_name(err));
    pack_cstr(pk, "message");
    pack_cstr(pk, msg ? msg : "");
}

/* --- reply decoding (producers) --- */

/* Copies a str value into a NUL-terminated buffer (truncating). */
static bool read_str_into(tly_mp_reader *r, char *buf, size_t cap)
{
    const char *s;
    uint32_t n;
    if (!tly_mp_read_str(r, &s, &n))
        return false;
    if (buf && cap > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, s, k);
        buf[k] = '\0';
    }
    return true;
}

/* Reads an error code string into *err; unknown codes are malformed. */
static bool read_code(tly_mp_reader *r, tly_err *err)
{
    char code[32];
    return read_str_into(r, code, sizeof code) && tly_err_from_name(code, err) == TLY_OK &&
           *err != TLY_OK;
}

static bool decode_result(tly_mp_reader *r, tly_ingest_result *res)
{
    uint32_t n;
    if (!tly_mp_read_map(r, &n))
        return false;
    memset(res, 0, sizeof *res);
    bool has_seq = false, has_err = false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        bool ok;
        if (!tly_mp_read_str(r, &k, &klen))
            return false;
        if (key_is(k, klen, "seq"))
            ok = has_seq = tly_mp_read_uint(r, &res->seq);
        else if (key_is(k, klen, "dup"))
            ok = tly_mp_read_bool(r, &res->dup);
        else if (key_is(k, klen, "error"))
            ok = has_err = read_code(r, &res->err);
        else if (key_is(k, klen, "message"))
            ok = read_str_into(r, res->message, sizeof res->message);
        else if (key_is(k, klen, "field"))
            ok = tly_mp_read_nil(r) || read_str_into(r, res->field, sizeof res->field);
        else
            ok = tly_mp_skip(r, NULL, NULL);
        if (!ok)
            return false;
    }
    return has_seq != has_err; /* exactly one of the two shapes */
}

static bool decode_results(tly_mp_reader *r, tly_ingest_result *results, uint32_t max,
                           uint32_t *count)
{
    uint32_t n;
    if (!tly_mp_read_array(r, &n) || n > max)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (!decode_result(r, &results[i]))
            return false;
    }
    *count = n;
    return true;
}

tly_err tly_wire_reply_decode(const void *buf, size_t len, uint64_t *req,
                              tly_ingest_result *results, uint32_t max, uint32_t *count, char *msg,
                              size_t cap)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    uint32_t n, got = 0;
    uint64_t req_v = 0;
    bool has_results = false, has_error = false;
    tly_err whole = TLY_OK;
    char text[160] = "";
    if (!tly_mp_read_map(&r, &n))
        goto malformed;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        bool ok;
        if (!tly_mp_read_str(&r, &k, &klen))
            goto malformed;
        if (key_is(k, klen, "req"))
            ok = tly_mp_read_uint(&r, &req_v);
        else if (key_is(k, klen, "results"))
            ok = has_results = decode_results(&r, results, max, &got);
        else if (key_is(k, klen, "error"))
            ok = has_error = read_code(&r, &whole);
        else if (key_is(k, klen, "message"))
            ok = read_str_into(&r, text, sizeof text);
        else
            ok = tly_mp_skip(&r, NULL, NULL);
        if (!ok)
            goto malformed;
    }
    if (tly_mp_remaining(&r) != 0 || has_results == has_error)
        goto malformed;
    *req = req_v;
    *count = has_results ? got : 0;
    set_msg(msg, cap, "%s", text);
    return has_error ? whole : TLY_OK;
malformed:
    set_msg(msg, cap, "reply is not a well-formed ingest reply");
    return TLY_MALFORMED;
}

/* --- log-read --- */

tly_err tly_wire_logread_decode(const void *buf, size_t len, uint64_t *from, uint32_t *max)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    uint32_t n;
    uint64_t f = 0, m = 0;
    bool has_from = false, has_max = false;
    if (!tly_mp_is_single_value(buf, len) || !tly_mp_read_map(&r, &n))
        return TLY_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        bool ok;
        if (!tly_mp_read_str(&r, &k, &klen))
            return TLY_MALFORMED;
        if (key_is(k, klen, "from"))
            ok = has_from = tly_mp_read_uint(&r, &f);
        else if (key_is(k, klen, "max"))
            ok = has_max = tly_mp_read_uint(&r, &m) && m <= UINT32_MAX;
        else
            ok = tly_mp_skip(&r, NULL, NULL);
        if (!ok)
            return TLY_BAD_FIELD;
    }
    if (!has_from || !has_max)
        return TLY_MISSING_FIELD;
    *from = f;
    *max = (uint32_t)m;
    return TLY_OK;
}

void tly_wire_logread_encode(msgpack_packer *pk, uint64_t from, uint32_t max)
{
    msgpack_pack_map(pk, 2);
    pack_cstr(pk, "from");
    msgpack_pack_uint64(pk, from);
    pack_cstr(pk, "max");
    msgpack_pack_uint32(pk, max);
}
