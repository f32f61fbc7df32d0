/* tly_period.c — calendar periods and ISO-8601 time text; see tly_period.h. */
#include "tly_period.h"

#include <stdbool.h>

#include "tly_limits.h"

#define MS_PER_DAY INT64_C(86400000)

/* Floor division, for instants before 1970. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): exact for every year, no tables, no time zone. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

int32_t tly_period_of(tly_period_kind kind, int64_t at_ms)
{
    int64_t y;
    int m, d;
    civil_from_days(floor_div(at_ms, MS_PER_DAY), &y, &m, &d);
    if (kind == TLY_PERIOD_QUARTER)
        return (int32_t)(y * 4 + (m - 1) / 3);
    return (int32_t)(y * 12 + (m - 1));
}

int64_t tly_period_start_ms(tly_period_kind kind, int32_t p)
{
    int64_t per_year = kind == TLY_PERIOD_QUARTER ? 4 : 12;
    int64_t y = floor_div(p, per_year);
    int64_t k = p - y * per_year;
    int m = (int)(kind == TLY_PERIOD_QUARTER ? k * 3 + 1 : k + 1);
    return days_from_civil(y, m, 1) * MS_PER_DAY;
}

/* Parses exactly n decimal digits at s; false on any non-digit. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

tly_err tly_period_parse(const char *s, size_t len, tly_period_kind *kind, int32_t *index)
{
    int y, n;
    if (len != 7 || !digits(s, 4, &y) || s[4] != '-')
        return TLY_BAD_FIELD;
    if (y < TLY_YEAR_MIN || y > TLY_YEAR_MAX)
        return TLY_BAD_FIELD;
    if (s[5] == 'Q') {
        if (!digits(s + 6, 1, &n) || n < 1 || n > 4)
            return TLY_BAD_FIELD;
        *kind = TLY_PERIOD_QUARTER;
        *index = (int32_t)(y * 4 + n - 1);
        return TLY_OK;
    }
    if (!digits(s + 5, 2, &n) || n < 1 || n > 12)
        return TLY_BAD_FIELD;
    *kind = TLY_PERIOD_MONTH;
    *index = (int32_t)(y * 12 + n - 1);
    return TLY_OK;
}

/* Writes v as exactly n digits (v is clamped to what n digits hold). */
static void put_digits(char *out, int n, int64_t v)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void tly_period_format(tly_period_kind kind, int32_t p, char *buf)
{
    int64_t per_year = kind == TLY_PERIOD_QUARTER ? 4 : 12;
    int64_t y = floor_div(p, per_year);
    int64_t k = p - y * per_year;
    /* Periods outside years 0..9999 cannot be written in 4 digits; they never
     * come from a validated event, so clamp rather than overflow buf. */
    if (y < 0) {
        y = 0;
        k = 0;
    } else if (y > 9999) {
        y = 9999;
        k = per_year - 1;
    }
    put_digits(buf, 4, y);
    buf[4] = '-';
    if (kind == TLY_PERIOD_QUARTER) {
        buf[5] = 'Q';
        buf[6] = (char)('1' + k);
    } else {
        put_digits(buf + 5, 2, k + 1);
    }
    buf[7] = '\0';
}

/* Cursor over the time text. */
typedef struct tcur {
    const char *p;
    const char *end;
} tcur;

static bool take_digits(tcur *c, int n, int *out)
{
    if (c->end - c->p < n || !digits(c->p, n, out))
        return false;
    c->p += n;
    return true;
}

static bool take_char(tcur *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* "hh:mm[:ss[.fff…]]" → ms since midnight. */
static bool parse_clock(tcur *c, int64_t *ms)
{
    int h, mi, sec = 0, frac = 0;
    if (!take_digits(c, 2, &h) || !take_char(c, ':') || !take_digits(c, 2, &mi))
        return false;
    if (take_char(c, ':')) {
        if (!take_digits(c, 2, &sec))
            return false;
        if (take_char(c, '.') || take_char(c, ',')) {
            int nd = 0;
            while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
                if (nd < 3)
                    frac = frac * 10 + (*c->p - '0');
                nd++;
                c->p++;
            }
            if (nd == 0)
                return false;
            for (; nd < 3; nd++)
                frac *= 10; /* ".5" is 500 ms */
        }
    }
    if (h > 23 || mi > 59 || sec > 59)
        return false;
    *ms = ((int64_t)h * 3600 + mi * 60 + sec) * 1000 + frac;
    return true;
}

/* "Z", "+hh:mm", "-hh:mm", "+hhmm", "+hh" or nothing (UTC [P6]) → offset ms. */
static bool parse_offset(tcur *c, int64_t *off_ms)
{
    *off_ms = 0;
    if (c->p == c->end)
        return true;
    if (take_char(c, 'Z') || take_char(c, 'z'))
        return c->p == c->end;
    int sign = take_char(c, '+') ? 1 : take_char(c, '-') ? -1 : 0;
    int h, m = 0;
    if (sign == 0 || !take_digits(c, 2, &h))
        return false;
    if (c->p != c->end) {
        take_char(c, ':');
        if (!take_digits(c, 2, &m))
            return false;
    }
    if (c->p != c->end || h > 23 || m > 59)
        return false;
    *off_ms = sign * ((int64_t)h * 3600 + m * 60) * 1000;
    return true;
}

tly_err tly_time_parse(const char *s, size_t len, int64_t *ms)
{
    tcur c = {s, s + len};
    int y, mo, d;
    if (!take_digits(&c, 4, &y) || !take_char(&c, '-') || !take_digits(&c, 2, &mo) ||
        !take_char(&c, '-') || !take_digits(&c, 2, &d))
        return TLY_BAD_FIELD;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return TLY_BAD_FIELD;
    int64_t clock_ms = 0, off_ms = 0;
    if (c.p != c.end) {
        /* A date alone is midnight UTC [D18]; a time must follow T (or t, or
         * the space RFC 3339 allows). */
        if (!take_char(&c, 'T') && !take_char(&c, 't') && !take_char(&c, ' '))
            return TLY_BAD_FIELD;
        if (!parse_clock(&c, &clock_ms) || !parse_offset(&c, &off_ms))
            return TLY_BAD_FIELD;
    }
    *ms = days_from_civil(y, mo, d) * MS_PER_DAY + clock_ms - off_ms;
    return TLY_OK;
}

void tly_time_format(int64_t at_ms, char *buf)
{
    /* Clamp to what "YYYY" can show: 0000-01-01 .. 9999-12-31T23:59:59.999. */
    const int64_t lo = days_from_civil(0, 1, 1) * MS_PER_DAY;
    const int64_t hi = days_from_civil(10000, 1, 1) * MS_PER_DAY - 1;
    if (at_ms < lo)
        at_ms = lo;
    if (at_ms > hi)
        at_ms = hi;
    int64_t days = floor_div(at_ms, MS_PER_DAY);
    int64_t rem = at_ms - days * MS_PER_DAY;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    put_digits(buf, 4, y);
    buf[4] = '-';
    put_digits(buf + 5, 2, m);
    buf[7] = '-';
    put_digits(buf + 8, 2, d);
    buf[10] = 'T';
    put_digits(buf + 11, 2, rem / 3600000);
    buf[13] = ':';
    put_digits(buf + 14, 2, rem / 60000 % 60);
    buf[16] = ':';
    put_digits(buf + 17, 2, rem / 1000 % 60);
    buf[19] = '.';
    put_digits(buf + 20, 3, rem % 1000);
    buf[23] = 'Z';
    buf[24] = '\0';
}
