/*
 * web_buf.c — the console's page buffer: bounded appends, HTML escaping,
 * URL encoding and money as decimals (integer arithmetic, tly_money_text).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_currency.h"
#include "web_internal.h"

void web_buf_free(web_buf *b)
{
    free(b->data);
    *b = (web_buf){0};
}

/* Room for n more bytes and a NUL; false (failed set) beyond the page
 * bound or out of memory. */
static bool reserve(web_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n > TLY_WEB_PAGE_BYTES_MAX - b->len) {
        b->failed = true;
        return false;
    }
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void web_putn(web_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void web_put(web_buf *b, const char *s)
{
    web_putn(b, s, strlen(s));
}

void web_printf(web_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        web_putn(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void web_esc(web_buf *b, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (; *s; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (!e)
            continue;
        web_putn(b, run, (size_t)(s - run));
        web_put(b, e);
        run = s + 1;
    }
    web_putn(b, run, (size_t)(s - run));
}

void web_url(web_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            web_putn(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            web_putn(b, e, 3);
        }
    }
}

/* Minor-unit digits of a currency for display: 2 for an unknown code (the
 * stored figure is minor units whatever is shown). */
static int exponent_of(const char *currency)
{
    int exp = 2;
    if (!currency || strlen(currency) != 3 || tly_currency_exponent(currency, &exp) != TLY_OK)
        return 2;
    return exp;
}

void web_money(web_buf *b, int64_t minor, const char *currency)
{
    char text[TLY_MONEY_TEXT_BYTES];
    tly_money_text(minor, exponent_of(currency), text, sizeof text);
    web_put(b, text);
}

void web_money_of(web_buf *b, const json_t *o, const char *key, const char *currency)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        web_money(b, (int64_t)json_integer_value(v), currency);
    else
        web_put(b, "–");
}

void web_str_of(web_buf *b, const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s)
        web_esc(b, s);
    else
        web_put(b, "–");
}

const char *web_sget(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

int64_t web_iget(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}
