/* tly_currency.c — ISO 4217 minor units and decimal amounts; see tly_currency.h. */
#include "tly_currency.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tly_limits.h"

/*
 * Currencies whose minor unit is not 2 digits (ISO 4217, list of 2024).
 * Every other code of the main table below has 2.
 */
static const char zero_digit[] =
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF ";
static const char three_digits[] = "BHD IQD JOD KWD LYD OMR TND ";
static const char four_digits[] = "CLF UYW ";

/* Active ISO 4217 codes with 2 minor-unit digits. */
static const char two_digits[] =
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD "
    "EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR "
    "IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN "
    "QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL "
    "THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW "
    "ZWL ";

/* True when the 3-letter code appears in a table of "XXX " entries, which
 * is in alphabetical order (test_schemas looks up every code AAA..ZZZ and
 * counts the tables'): a binary search, as every sale and money text asks. */
static bool in_table(const char *table, size_t size, const char *code3)
{
    size_t lo = 0, hi = (size - 1) / 4; /* entries; size counts the NUL */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(table + 4 * mid, code3, 3);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

tly_err tly_currency_exponent(const char *code3, int *exp)
{
    for (int i = 0; i < 3; i++) {
        if (code3[i] < 'A' || code3[i] > 'Z')
            return TLY_NOT_FOUND;
    }
    int e;
    if (in_table(two_digits, sizeof two_digits, code3))
        e = 2;
    else if (in_table(zero_digit, sizeof zero_digit, code3))
        e = 0;
    else if (in_table(three_digits, sizeof three_digits, code3))
        e = 3;
    else if (in_table(four_digits, sizeof four_digits, code3))
        e = 4;
    else
        return TLY_NOT_FOUND;
    *exp = e;
    return TLY_OK;
}

/* Accumulates one digit into *v, refusing to pass TLY_AMOUNT_MAX. */
static bool push_digit(int64_t *v, char c)
{
    if (c < '0' || c > '9')
        return false;
    if (*v > (TLY_AMOUNT_MAX - (c - '0')) / 10)
        return false;
    *v = *v * 10 + (c - '0');
    return true;
}

tly_err tly_decimal_to_minor(const char *s, size_t len, int exp, int64_t *out)
{
    if (exp < 0 || exp > 4)
        return TLY_BAD_FIELD;
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    int64_t v = 0;
    size_t int_digits = 0;
    for (; i < len && s[i] != '.'; i++, int_digits++) {
        if (!push_digit(&v, s[i]))
            return TLY_BAD_FIELD;
    }
    int frac = 0;
    if (i < len) {
        i++; /* the '.' */
        if (i == len)
            return TLY_BAD_FIELD; /* "12." */
        for (; i < len; i++, frac++) {
            if (frac == exp || !push_digit(&v, s[i]))
                return TLY_BAD_FIELD; /* [D18] too many fraction digits */
        }
    }
    if (int_digits == 0)
        return TLY_BAD_FIELD; /* "", ".5", "-" */
    for (; frac < exp; frac++) {
        if (!push_digit(&v, '0'))
            return TLY_BAD_FIELD;
    }
    *out = neg ? -v : v;
    return TLY_OK;
}

/* Copies the len bytes of text into out as snprintf(out, cap, "%s") would:
 * cut to cap - 1 bytes, NUL-terminated; nothing when cap is 0. */
static void text_out(const char *text, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return;
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

/* Digits by hand, not snprintf: exception details format money on every
 * raise, and four snprintf calls per amount were a measurable share of a
 * fold with many exceptions. */
static size_t money_digits(int64_t minor, int exponent, char buf[TLY_MONEY_TEXT_BYTES])
{
    static const uint64_t scales[] = {1, 10, 100, 1000, 10000};
    exponent = exponent < 0 ? 0 : exponent > 4 ? 4 : exponent;
    /* The magnitude as unsigned: -INT64_MIN does not fit int64. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t whole = mag / scales[exponent], frac = mag % scales[exponent];
    char rev[24]; /* the whole part's digits, least significant first */
    size_t nd = 0, o = 0;
    do {
        rev[nd++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole > 0);
    if (minor < 0)
        buf[o++] = '-';
    for (size_t i = nd; i-- > 0;) { /* i digits follow this one */
        buf[o++] = rev[i];
        if (i > 0 && i % 3 == 0)
            buf[o++] = ',';
    }
    if (exponent > 0) {
        buf[o++] = '.';
        for (int k = exponent; k-- > 0;) {
            buf[o + (size_t)k] = (char)('0' + frac % 10);
            frac /= 10;
        }
        o += (size_t)exponent;
    }
    return o; /* at most 1 + 20 + 6 + 1 + 4 = 32 < TLY_MONEY_TEXT_BYTES */
}

void tly_money_text(int64_t minor, int exponent, char *out, size_t cap)
{
    char buf[TLY_MONEY_TEXT_BYTES];
    text_out(buf, money_digits(minor, exponent, buf), out, cap);
}

void tly_money_text_cur(int64_t minor, const char *code3, char *out, size_t cap)
{
    int exp = 0;
    if (tly_currency_exponent(code3, &exp) != TLY_OK)
        exp = 0;
    char buf[TLY_MONEY_TEXT_BYTES + 4];
    size_t o = money_digits(minor, exp, buf);
    buf[o++] = ' ';
    size_t cl = strnlen(code3, 3); /* "%.3s" */
    memcpy(buf + o, code3, cl);
    text_out(buf, o + cl, out, cap);
}
