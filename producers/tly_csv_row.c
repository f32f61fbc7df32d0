/* tly_csv_row.c — the header's columns and a row's event; see tly_csv.h. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tly_csv.h"
#include "tly_currency.h"
#include "tly_os.h"
#include "tly_period.h"

/* ---- --columns ---- */

/* s[0..*len) without its surrounding spaces and tabs. */
static const char *trim(const char *s, size_t *len)
{
    while (*len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        (*len)--;
    }
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

static bool field_by_name(const char *s, size_t len, tly_csv_field *out)
{
    for (int f = 0; f < TLY_CSV_FIELD_COUNT; f++) {
        const char *name = tly_csv_field_name((tly_csv_field)f);
        if (strlen(name) == len && memcmp(name, s, len) == 0) {
            *out = (tly_csv_field)f;
            return true;
        }
    }
    return false;
}

/* One FIELD=NAME pair of s[0..len). */
static tly_err names_pair(const char *s, size_t len, tly_csv_names *out, char *msg, size_t cap)
{
    const char *eq = memchr(s, '=', len);
    size_t flen = eq ? (size_t)(eq - s) : len;
    const char *fname = trim(s, &flen);
    tly_csv_field f = TLY_CSV_TYPE;
    if (!eq || !field_by_name(fname, flen, &f)) {
        snprintf(msg, cap,
                 "'%.*s' is not FIELD=NAME with FIELD one of type, id, partner, sku, qty, "
                 "amount, currency, at, sale, deal",
                 (int)(len > 40 ? 40 : len), s);
        return TLY_USAGE;
    }
    size_t nlen = len - (size_t)(eq + 1 - s);
    const char *name = trim(eq + 1, &nlen);
    if (nlen == 0 || nlen > TLY_CSV_COLUMN_NAME_BYTES_MAX) {
        snprintf(msg, cap, "the column name for %s must be 1..%u bytes", tly_csv_field_name(f),
                 TLY_CSV_COLUMN_NAME_BYTES_MAX);
        return TLY_USAGE;
    }
    if (out->name[f][0]) {
        snprintf(msg, cap, "%s is given twice", tly_csv_field_name(f));
        return TLY_USAGE;
    }
    memcpy(out->name[f], name, nlen);
    out->name[f][nlen] = '\0';
    return TLY_OK;
}

tly_err tly_csv_names_parse(const char *spec, tly_csv_names *out, char *msg, size_t cap)
{
    memset(out, 0, sizeof *out);
    if (!spec)
        return TLY_OK;
    const char *p = spec;
    for (;;) {
        size_t len = strcspn(p, ",");
        tly_err err = names_pair(p, len, out, msg, cap);
        if (err != TLY_OK)
            return err;
        if (p[len] == '\0')
            return TLY_OK;
        p += len + 1;
    }
}

/* ---- the header ---- */

/* The heading looked for: --columns' name, else the field's own. */
static const char *wanted(const tly_csv_names *names, tly_csv_field f)
{
    return names->name[f][0] ? names->name[f] : tly_csv_field_name(f);
}

/* Column index of heading `want` in the header (-1: none); two columns of
 * that name are an error. */
static tly_err find_column(const tly_csv_row *h, const char *want, int *col, char *msg, size_t cap)
{
    *col = -1;
    for (uint32_t i = 0; i < h->count; i++) {
        size_t len = h->len[i];
        const char *s = trim(h->fields[i], &len);
        if (len != strlen(want) || strncasecmp(s, want, len) != 0)
            continue;
        if (*col >= 0) {
            snprintf(msg, cap, "header: columns %d and %u are both named '%s'", *col + 1, i + 1,
                     want);
            return TLY_MALFORMED;
        }
        *col = (int)i;
    }
    return TLY_OK;
}

/* Whether a header without the field's column is refused. */
static bool required(tly_csv_field f, bool typed)
{
    switch (f) {
    case TLY_CSV_ID:
    case TLY_CSV_PARTNER:
    case TLY_CSV_AMOUNT:
    case TLY_CSV_CURRENCY:
    case TLY_CSV_AT:
        return true;
    case TLY_CSV_SKU:
        return !typed;
    default:
        return false;
    }
}

tly_err tly_csv_map_header(const tly_csv_names *names, const tly_csv_row *header, tly_csv_map *map,
                           char *msg, size_t cap)
{
    tly_csv_map m;
    memset(&m, 0, sizeof m);
    m.columns = header->count;
    for (int f = 0; f < TLY_CSV_FIELD_COUNT; f++) {
        const char *want = wanted(names, (tly_csv_field)f);
        snprintf(m.heading[f], sizeof m.heading[f], "%s", want);
        tly_err err = find_column(header, want, &m.col[f], msg, cap);
        if (err != TLY_OK)
            return err;
    }
    bool typed = m.col[TLY_CSV_TYPE] >= 0;
    for (int f = 0; f < TLY_CSV_FIELD_COUNT; f++) {
        const char *name = tly_csv_field_name((tly_csv_field)f);
        if (m.col[f] >= 0)
            continue;
        if (names->name[f][0]) {
            snprintf(msg, cap, "header: no column '%s' (--columns %s=%s)", names->name[f], name,
                     names->name[f]);
            return TLY_MALFORMED;
        }
        if (required((tly_csv_field)f, typed)) {
            snprintf(msg, cap,
                     "header: no column '%s'%s (name it so, or map another with "
                     "--columns %s=NAME)",
                     name, f == TLY_CSV_SKU ? " (every row is a sale without a type column)" : "",
                     name);
            return TLY_MALFORMED;
        }
    }
    *map = m;
    return TLY_OK;
}

/* ---- rows ---- */

typedef struct cell {
    const char *s; /* NULL: the header has no such column */
    size_t len;
} cell;

static cell cell_of(const tly_csv_map *m, const tly_csv_row *row, tly_csv_field f)
{
    int c = m->col[f];
    if (c < 0 || (uint32_t)c >= row->count)
        return (cell){NULL, 0};
    return (cell){row->fields[c], row->len[c]};
}

void tly_csv_row_id(const tly_csv_map *map, const tly_csv_row *row, char *out)
{
    cell c = cell_of(map, row, TLY_CSV_ID);
    size_t n = c.s ? strnlen(c.s, c.len) : 0;
    n = n > TLY_ID_BYTES_MAX ? TLY_ID_BYTES_MAX : n;
    if (n > 0)
        memcpy(out, c.s, n);
    out[n] = '\0';
}

/* A value as shown in a message: at most 40 bytes, control bytes (and
 * every non-ASCII byte of a value that is not UTF-8) as '?'. */
static void show(cell c, char *out, size_t cap)
{
    size_t n = c.len > 40 ? 40 : c.len;
    while (n < c.len && n > 0 && ((unsigned char)c.s[n] & 0xc0) == 0x80)
        n--; /* cut before a character, not inside it */
    bool utf8 = tly_utf8_valid(c.s, c.len);
    size_t w = 0;
    for (size_t i = 0; i < n && w + 4 < cap; i++) {
        unsigned char b = (unsigned char)c.s[i];
        out[w++] = b < 0x20 || b == 0x7f || (b >= 0x80 && !utf8) ? '?' : (char)b;
    }
    if (n < c.len && w + 4 < cap)
        w += (size_t)snprintf(out + w, cap - w, "...");
    out[w] = '\0';
}

/* Sets fe->message; a long value or heading is cut (the field and the
 * line still say where). */
static void message(tly_field_error *fe, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fe->message, sizeof fe->message, fmt, ap);
    va_end(ap);
}

/* Fails the row (returns false): *err = code, fe names field f; the message is `what`,
 * then the column when its heading is not the field's name. */
static bool row_fail(tly_err *err, tly_field_error *fe, tly_err code, const tly_csv_map *m,
                     tly_csv_field f, const char *what)
{
    *err = code;
    const char *name = tly_csv_field_name(f);
    snprintf(fe->field, sizeof fe->field, "%s", name);
    if (strcasecmp(m->heading[f], name) == 0)
        message(fe, "%s", what);
    else
        message(fe, "%s (column '%s')", what, m->heading[f]);
    return false;
}

/* The cell of a field the row needs: present, not empty, no NUL byte. */
static bool need(const tly_csv_map *m, const tly_csv_row *row, tly_csv_field f, const char *type,
                 cell *c, tly_err *err, tly_field_error *fe)
{
    char what[160];
    *c = cell_of(m, row, f);
    const char *name = tly_csv_field_name(f);
    if (!c->s) {
        snprintf(what, sizeof what, "a %s row needs %s: the header has no '%s' column", type, name,
                 m->heading[f]);
        return row_fail(err, fe, TLY_MISSING_FIELD, m, f, what);
    }
    if (c->len == 0) {
        snprintf(what, sizeof what, "%s is empty", name);
        return row_fail(err, fe, TLY_MISSING_FIELD, m, f, what);
    }
    if (memchr(c->s, '\0', c->len))
        return row_fail(err, fe, TLY_BAD_FIELD, m, f, "holds a NUL byte");
    if (!tly_utf8_valid(c->s, c->len)) {
        snprintf(what, sizeof what, "%s is not valid UTF-8", name);
        return row_fail(err, fe, TLY_BAD_FIELD, m, f, what);
    }
    return true;
}

/* What a row says, converted. */
typedef struct row_values {
    const char *type;   /* "sale", "return", "referral" */
    tly_csv_field name; /* the type's own name column: sku, sale or deal */
    cell id, partner, named, currency;
    bool has_qty;
    uint64_t qty;
    int64_t amount, at;
} row_values;

/* The row has the header's fields (more only when they are empty). */
static bool row_shape(const tly_csv_map *m, const tly_csv_row *row, tly_err *err,
                      tly_field_error *fe)
{
    bool extra = false;
    for (uint32_t i = m->columns; i < row->count; i++)
        extra |= row->len[i] > 0;
    if (row->count >= m->columns && !extra)
        return true;
    *err = TLY_MALFORMED;
    fe->field[0] = '\0';
    snprintf(fe->message, sizeof fe->message, "row has %u fields, the header %u%s", row->count,
             m->columns, extra ? " (and the extra ones are not empty)" : "");
    return false;
}

static bool row_type(const tly_csv_map *m, const tly_csv_row *row, row_values *v, tly_err *err,
                     tly_field_error *fe)
{
    static const struct {
        const char *name;
        tly_csv_field named;
    } types[] = {{"sale", TLY_CSV_SKU}, {"return", TLY_CSV_SALE}, {"referral", TLY_CSV_DEAL}};
    cell c = cell_of(m, row, TLY_CSV_TYPE);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool match = (!c.s || c.len == 0) ? i == 0
                                          : c.len == strlen(types[i].name) &&
                                                strncasecmp(c.s, types[i].name, c.len) == 0;
        if (match) {
            v->type = types[i].name;
            v->name = types[i].named;
            return true;
        }
    }
    char what[160], shown[64];
    show(c, shown, sizeof shown);
    snprintf(what, sizeof what, "type must be sale, return or referral (or empty: sale): %s",
             shown);
    return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_TYPE, what);
}

/* qty of a sale or return: 1 without a qty column. */
static bool row_qty(const tly_csv_map *m, const tly_csv_row *row, row_values *v, tly_err *err,
                    tly_field_error *fe)
{
    v->has_qty = v->name != TLY_CSV_DEAL;
    v->qty = 1;
    if (!v->has_qty || m->col[TLY_CSV_QTY] < 0)
        return true;
    cell c;
    if (!need(m, row, TLY_CSV_QTY, v->type, &c, err, fe))
        return false;
    if (tly_parse_u64(c.s, 1, (uint64_t)TLY_QTY_MAX, &v->qty))
        return true;
    char what[160], shown[64];
    show(c, shown, sizeof shown);
    snprintf(what, sizeof what, "qty must be a whole number from 1 to %lld: %s",
             (long long)TLY_QTY_MAX, shown);
    return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_QTY, what);
}

/* Why s[0..len) is not an amount of a currency with exp digits. */
static void amount_problem(cell c, const char *ccy, int exp, char *what, size_t cap)
{
    size_t i = c.len > 0 && (c.s[0] == '-' || c.s[0] == '+') ? 1 : 0;
    size_t whole = strspn(c.s + i, "0123456789"), frac = 0;
    i += whole;
    bool dot = i < c.len && c.s[i] == '.';
    if (dot)
        frac = strspn(c.s + i + 1, "0123456789");
    i += dot ? 1 + frac : 0;
    bool decimal = whole > 0 && (!dot || frac > 0) && i == c.len;
    char shown[64];
    show(c, shown, sizeof shown);
    if (decimal && frac > (size_t)exp)
        snprintf(what, cap, "%s has %d decimals: %s", ccy, exp, shown);
    else if (decimal)
        snprintf(what, cap, "amount is more than %lld minor units: %s", (long long)TLY_AMOUNT_MAX,
                 shown);
    else if (memchr(c.s, ',', c.len))
        snprintf(what, cap, "amount has a comma; write 1234.50 (a point, no separators): %s",
                 shown);
    else
        snprintf(what, cap, "amount is not a decimal number like 1234.50: %s", shown);
}

static bool row_money(const tly_csv_map *m, const tly_csv_row *row, row_values *v, tly_err *err,
                      tly_field_error *fe)
{
    char what[160], shown[64];
    cell c;
    int exp = 0;
    if (!need(m, row, TLY_CSV_CURRENCY, v->type, &v->currency, err, fe))
        return false;
    if (v->currency.len != 3 || tly_currency_exponent(v->currency.s, &exp) != TLY_OK) {
        show(v->currency, shown, sizeof shown);
        snprintf(what, sizeof what, "unknown ISO 4217 currency: %s", shown);
        return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_CURRENCY, what);
    }
    if (!need(m, row, TLY_CSV_AMOUNT, v->type, &c, err, fe))
        return false;
    if (tly_decimal_to_minor(c.s, c.len, exp, &v->amount) != TLY_OK) {
        amount_problem(c, v->currency.s, exp, what, sizeof what);
        return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_AMOUNT, what);
    }
    if (v->amount < 1) {
        show(c, shown, sizeof shown);
        snprintf(what, sizeof what, "amount must be positive%s: %s",
                 v->name == TLY_CSV_SALE ? " (a return gives the amount returned)" : "", shown);
        return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_AMOUNT, what);
    }
    return true;
}

static bool row_at(const tly_csv_map *m, const tly_csv_row *row, row_values *v, tly_err *err,
                   tly_field_error *fe)
{
    cell c;
    if (!need(m, row, TLY_CSV_AT, v->type, &c, err, fe))
        return false;
    if (tly_time_parse(c.s, c.len, &v->at) == TLY_OK)
        return true;
    char what[160], shown[64];
    show(c, shown, sizeof shown);
    snprintf(what, sizeof what,
             "at must be an ISO-8601 date or time (2026-07-14, 2026-07-14T09:30:00Z): %s", shown);
    return row_fail(err, fe, TLY_BAD_FIELD, m, TLY_CSV_AT, what);
}

/* The event, its keys in the JSON-lines order (type, id, at, partner, the
 * type's name, qty, amount, currency): a sale row sends the bytes the
 * fixed-header importer sent. */
static json_t *row_json(const row_values *v)
{
    json_t *ev = json_object();
    if (!ev)
        return NULL;
    int rc = json_object_set_new(ev, "type", json_string(v->type));
    rc |= json_object_set_new(ev, "id", json_stringn(v->id.s, v->id.len));
    rc |= json_object_set_new(ev, "at", json_integer(v->at));
    rc |= json_object_set_new(ev, "partner", json_stringn(v->partner.s, v->partner.len));
    rc |= json_object_set_new(ev, tly_csv_field_name(v->name),
                              json_stringn(v->named.s, v->named.len));
    if (v->has_qty)
        rc |= json_object_set_new(ev, "qty", json_integer((json_int_t)v->qty));
    rc |= json_object_set_new(ev, "amount", json_integer(v->amount));
    rc |= json_object_set_new(ev, "currency", json_stringn(v->currency.s, v->currency.len));
    if (rc != 0) { /* out of memory: a column never goes missing silently */
        json_decref(ev);
        return NULL;
    }
    return ev;
}

json_t *tly_csv_row_event(const tly_csv_map *map, const tly_csv_row *row, tly_err *err,
                          tly_field_error *fe)
{
    row_values v;
    memset(&v, 0, sizeof v);
    if (!row_shape(map, row, err, fe) || !row_type(map, row, &v, err, fe) ||
        !need(map, row, TLY_CSV_ID, v.type, &v.id, err, fe) ||
        !need(map, row, TLY_CSV_PARTNER, v.type, &v.partner, err, fe) ||
        !need(map, row, v.name, v.type, &v.named, err, fe) || !row_qty(map, row, &v, err, fe) ||
        !row_money(map, row, &v, err, fe) || !row_at(map, row, &v, err, fe))
        return NULL;
    json_t *ev = row_json(&v);
    if (!ev) {
        *err = TLY_NOMEM;
        fe->field[0] = '\0';
        snprintf(fe->message, sizeof fe->message, "out of memory");
    }
    return ev;
}
