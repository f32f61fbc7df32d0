/* tly_import.c — one line of `tally send` input to one event; see tly_import.h. */
#include "tly_import.h"

#include <stdio.h>
#include <string.h>

#include "tly_currency.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_period.h"

static json_t *import_fail(tly_field_error *fe, const char *field, const char *message)
{
    snprintf(fe->field, sizeof fe->field, "%s", field);
    snprintf(fe->message, sizeof fe->message, "%s", message);
    return NULL;
}

json_t *tly_import_json_line(const char *line, json_t **holder, const char **source,
                             tly_field_error *fe)
{
    *holder = NULL;
    *source = NULL;
    json_error_t jerr;
    json_t *root = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return import_fail(fe, "", "line is not a JSON object");
    }
    json_t *ev = json_object_get(root, "event");
    if (!json_is_object(ev) || json_object_get(root, "type"))
        return root;
    *holder = root;
    *source = json_string_value(json_object_get(root, "source"));
    return json_incref(ev);
}

/* Splits one CSV line into fields (RFC 4180 quoting). Fields are written
 * NUL-terminated into storage; returns the field count or -1. */
static int csv_split(const char *line, char *storage, size_t cap, char **fields, int max)
{
    int n = 0;
    size_t w = 0;
    const char *p = line;
    for (;;) {
        if (n >= max || w >= cap)
            return -1;
        fields[n++] = storage + w;
        bool quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && (quoted || (*p != ',' && *p != '\r' && *p != '\n'))) {
            if (quoted && *p == '"') {
                if (p[1] != '"') {
                    quoted = false;
                    p++;
                    continue;
                }
                p++;
            }
            if (w + 1 >= cap)
                return -1;
            storage[w++] = *p++;
        }
        if (quoted)
            return -1;
        storage[w++] = '\0';
        if (*p != ',')
            return n;
        p++;
    }
}

/* The sale of a row whose numbers are converted; text columns as given. */
static json_t *csv_event(char *const *f, uint64_t qty, int64_t amount, int64_t at)
{
    json_t *ev = json_object();
    if (!ev)
        return NULL;
    int rc = json_object_set_new(ev, "type", json_string("sale"));
    rc |= json_object_set_new(ev, "id", json_string(f[0]));
    rc |= json_object_set_new(ev, "at", json_integer(at));
    rc |= json_object_set_new(ev, "partner", json_string(f[1]));
    rc |= json_object_set_new(ev, "sku", json_string(f[2]));
    rc |= json_object_set_new(ev, "qty", json_integer((json_int_t)qty));
    rc |= json_object_set_new(ev, "amount", json_integer(amount));
    rc |= json_object_set_new(ev, "currency", json_string(f[5]));
    if (rc != 0) { /* out of memory: a column never goes missing silently */
        json_decref(ev);
        return NULL;
    }
    return ev;
}

json_t *tly_import_csv_row(const char *line, tly_field_error *fe)
{
    static const char *const text_columns[] = {"id", "partner", "sku"};
    char storage[TLY_CSV_ROW_BYTES_MAX];
    char *f[TLY_CSV_COLUMNS + 1];
    int n = csv_split(line, storage, sizeof storage, f, (int)TLY_CSV_COLUMNS + 1);
    if (n != (int)TLY_CSV_COLUMNS)
        return import_fail(fe, "", "expected 7 columns: " TLY_CSV_HEADER);
    for (int i = 0; i < 3; i++)
        if (!tly_utf8_valid(f[i], strlen(f[i])))
            return import_fail(fe, text_columns[i], "must be valid UTF-8");
    uint64_t qty = 0;
    if (!tly_parse_u64(f[3], 1, (uint64_t)TLY_QTY_MAX, &qty))
        return import_fail(fe, "qty", "qty must be an integer from 1");
    int exp = 0;
    if (tly_currency_exponent(f[5], &exp) != TLY_OK)
        return import_fail(fe, "currency", "unknown ISO 4217 currency");
    int64_t amount = 0;
    if (tly_decimal_to_minor(f[4], strlen(f[4]), exp, &amount) != TLY_OK)
        return import_fail(fe, "amount",
                           "amount must be a decimal with at most the currency's "
                           "minor-unit digits");
    int64_t at = 0;
    if (tly_time_parse(f[6], strlen(f[6]), &at) != TLY_OK)
        return import_fail(fe, "at", "at must be an ISO-8601 date or time");
    json_t *ev = csv_event(f, qty, amount, at);
    return ev ? ev : import_fail(fe, "", "out of memory");
}
