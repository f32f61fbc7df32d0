/* tly_mp.c — the strict zero-copy MessagePack reader; see tly_mp.h. */
#include "tly_mp.h"

#include <string.h>

#include "tly_limits.h"

/* True when at least n bytes remain. */
static bool have(const tly_mp_reader *r, size_t n)
{
    return tly_mp_remaining(r) >= n;
}

tly_mp_type tly_mp_peek(const tly_mp_reader *r)
{
    if (!have(r, 1))
        return TLY_MP_INVALID;
    uint8_t b = r->p[0];
    if (b <= 0x7f || b >= 0xe0)
        return TLY_MP_INT;
    if (b <= 0x8f)
        return TLY_MP_MAP;
    if (b <= 0x9f)
        return TLY_MP_ARRAY;
    if (b <= 0xbf)
        return TLY_MP_STR;
    switch (b) {
    case 0xc0:
        return TLY_MP_NIL;
    case 0xc2:
    case 0xc3:
        return TLY_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return TLY_MP_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return TLY_MP_EXT;
    case 0xca:
    case 0xcb:
        return TLY_MP_FLOAT;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return TLY_MP_INT;
    case 0xcf:
        /* A uint64 is an INT only when its value fits int64. */
        if (!have(r, 9))
            return TLY_MP_INVALID;
        return tly__mp_be(r->p + 1, 8) > (uint64_t)INT64_MAX ? TLY_MP_UINT64 : TLY_MP_INT;
    case 0xd9:
    case 0xda:
    case 0xdb:
        return TLY_MP_STR;
    case 0xdc:
    case 0xdd:
        return TLY_MP_ARRAY;
    case 0xde:
    case 0xdf:
        return TLY_MP_MAP;
    default:
        return TLY_MP_INVALID; /* 0xc1, reserved */
    }
}

bool tly_mp_read_nil(tly_mp_reader *r)
{
    if (!have(r, 1) || r->p[0] != 0xc0)
        return false;
    r->p++;
    return true;
}

bool tly_mp_read_bool(tly_mp_reader *r, bool *out)
{
    if (!have(r, 1) || (r->p[0] != 0xc2 && r->p[0] != 0xc3))
        return false;
    *out = r->p[0] == 0xc3;
    r->p++;
    return true;
}

bool tly_mp_read_uint(tly_mp_reader *r, uint64_t *out)
{
    tly_mp_reader t = *r; /* r moves only on success */
    bool neg;
    int64_t sv;
    uint64_t uv;
    if (!tly__mp_read_integer(&t, &neg, &sv, &uv) || neg)
        return false;
    *out = uv;
    *r = t;
    return true;
}

bool tly_mp_read_float(tly_mp_reader *r, double *out)
{
    if (!have(r, 1))
        return false;
    uint8_t b = r->p[0];
    if (b == 0xca && have(r, 5)) {
        uint32_t raw = (uint32_t)tly__mp_be(r->p + 1, 4);
        float f;
        memcpy(&f, &raw, sizeof f);
        *out = f;
        r->p += 5;
        return true;
    }
    if (b == 0xcb && have(r, 9)) {
        uint64_t raw = tly__mp_be(r->p + 1, 8);
        memcpy(out, &raw, sizeof *out);
        r->p += 9;
        return true;
    }
    return false;
}

/*
 * The header forms of a length-prefixed type: fixed-size forms (fix_lo..fix_hi
 * carry the length in the low bits masked by fix_mask) and 8/16/32-bit length
 * forms whose first bytes are b8, b16, b32 (0 when the form does not exist).
 */
typedef struct len_forms {
    uint8_t fix_lo, fix_hi, fix_mask, b8, b16, b32;
} len_forms;

static const len_forms str_forms = {0xa0, 0xbf, 0x1f, 0xd9, 0xda, 0xdb};
static const len_forms bin_forms = {0, 0, 0, 0xc4, 0xc5, 0xc6};
static const len_forms array_forms = {0x90, 0x9f, 0x0f, 0, 0xdc, 0xdd};
static const len_forms map_forms = {0x80, 0x8f, 0x0f, 0, 0xde, 0xdf};

/* Reads a header of one of forms f into *len (the length or count) and *hdr
 * (the header size). Does not consume anything. */
static bool read_len_header(const tly_mp_reader *r, const len_forms *f, uint32_t *len, size_t *hdr)
{
    if (!have(r, 1))
        return false;
    uint8_t b = r->p[0];
    unsigned n;
    if (f->fix_hi != 0 && b >= f->fix_lo && b <= f->fix_hi) {
        *len = b & f->fix_mask;
        *hdr = 1;
        return true;
    }
    if (f->b8 != 0 && b == f->b8)
        n = 1;
    else if (b == f->b16)
        n = 2;
    else if (b == f->b32)
        n = 4;
    else
        return false;
    if (!have(r, 1 + n))
        return false;
    *len = (uint32_t)tly__mp_be(r->p + 1, n);
    *hdr = 1 + n;
    return true;
}

/* Reads a str or bin: *out points at its bytes inside the buffer. Consumes
 * nothing on failure. */
static bool read_bytes(tly_mp_reader *r, const len_forms *f, const uint8_t **out, uint32_t *len)
{
    uint32_t n;
    size_t hdr;
    if (!read_len_header(r, f, &n, &hdr))
        return false;
    if (tly_mp_remaining(r) - hdr < n)
        return false;
    *out = r->p + hdr;
    *len = n;
    r->p += hdr + n;
    return true;
}

/* Reads an array or map header (its elements follow). Consumes nothing on
 * failure. */
static bool read_count(tly_mp_reader *r, const len_forms *f, uint32_t *count)
{
    uint32_t n;
    size_t hdr;
    if (!read_len_header(r, f, &n, &hdr))
        return false;
    *count = n;
    r->p += hdr;
    return true;
}

bool tly__mp_read_str(tly_mp_reader *r, const char **out, uint32_t *len)
{
    const uint8_t *bytes;
    if (!read_bytes(r, &str_forms, &bytes, len))
        return false;
    *out = (const char *)bytes;
    return true;
}

bool tly__mp_read_bin(tly_mp_reader *r, const uint8_t **out, uint32_t *len)
{
    return read_bytes(r, &bin_forms, out, len);
}

bool tly_mp_read_array(tly_mp_reader *r, uint32_t *count)
{
    return read_count(r, &array_forms, count);
}

bool tly_mp_read_map(tly_mp_reader *r, uint32_t *count)
{
    return read_count(r, &map_forms, count);
}

/* Size of the ext payload plus header at r->p, or false when not an ext. */
static bool ext_size(const tly_mp_reader *r, size_t *total)
{
    uint8_t b = r->p[0];
    if (b >= 0xd4 && b <= 0xd8) {
        *total = 2 + ((size_t)1 << (b - 0xd4));
        return true;
    }
    unsigned n = b == 0xc7 ? 1 : b == 0xc8 ? 2 : b == 0xc9 ? 4 : 0;
    if (n == 0 || !have(r, 1 + n))
        return false;
    *total = 1 + n + 1 + (size_t)tly__mp_be(r->p + 1, n);
    return true;
}

/* Skips one scalar (anything but array and map); false when malformed. */
static bool skip_scalar(tly_mp_reader *r)
{
    const char *s;
    const uint8_t *b;
    uint32_t n;
    int64_t i;
    uint64_t u;
    bool f;
    double d;
    size_t total;
    switch (tly_mp_peek(r)) {
    case TLY_MP_NIL:
        return tly_mp_read_nil(r);
    case TLY_MP_BOOL:
        return tly_mp_read_bool(r, &f);
    case TLY_MP_INT:
        return tly_mp_read_int(r, &i);
    case TLY_MP_UINT64:
        return tly_mp_read_uint(r, &u);
    case TLY_MP_FLOAT:
        return tly_mp_read_float(r, &d);
    case TLY_MP_STR:
        return tly_mp_read_str(r, &s, &n);
    case TLY_MP_BIN:
        return tly_mp_read_bin(r, &b, &n);
    case TLY_MP_EXT:
        if (!ext_size(r, &total) || !have(r, total))
            return false;
        r->p += total;
        return true;
    default:
        return false;
    }
}

/*
 * Skips one value at nesting level depth (the outermost container is level
 * 1). Recursion is bounded by TLY_MP_DEPTH_MAX; element counts are checked
 * against the bytes left (every element takes at least one byte) so a
 * hostile count cannot make the loop run past the input.
 */
static bool skip_value(tly_mp_reader *r, unsigned depth)
{
    size_t n = tly__mp_fast_size(r);
    if (n > 0) {
        if (!have(r, n))
            return false;
        r->p += n;
        return true;
    }
    tly_mp_type t = tly_mp_peek(r);
    if (t != TLY_MP_ARRAY && t != TLY_MP_MAP)
        return skip_scalar(r);
    if (depth >= TLY_MP_DEPTH_MAX)
        return false;
    uint32_t count;
    if (t == TLY_MP_ARRAY ? !tly_mp_read_array(r, &count) : !tly_mp_read_map(r, &count))
        return false;
    uint64_t items = t == TLY_MP_MAP ? (uint64_t)count * 2 : count;
    if (items > tly_mp_remaining(r))
        return false;
    for (uint64_t k = 0; k < items; k++) {
        if (!skip_value(r, depth + 1))
            return false;
    }
    return true;
}

bool tly_mp_skip(tly_mp_reader *r, const uint8_t **start, size_t *len)
{
    return tly_mp_skip_at(r, 0, start, len);
}

bool tly__mp_skip_at(tly_mp_reader *r, unsigned depth, const uint8_t **start, size_t *len)
{
    tly_mp_reader save = *r;
    if (!skip_value(r, depth)) {
        *r = save;
        return false;
    }
    if (start)
        *start = save.p;
    if (len)
        *len = (size_t)(r->p - save.p);
    return true;
}

bool tly_mp_is_single_value(const void *buf, size_t len)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    return tly_mp_skip(&r, NULL, NULL) && tly_mp_remaining(&r) == 0;
}
