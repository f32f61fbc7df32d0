/*
 * web_chart.c — the partner page's chart, inline SVG drawn on the server:
 * bars of the available MDF at the end of each period and a line of the
 * cumulative revenue, over the periods of the rebate rows and the explain
 * lines, oldest first. Integer arithmetic only (pixels from minor units by
 * one rounded-up step per pixel), so no figure goes through floating point.
 *
 * Available MDF at the end of period P sums the effect on "available" of
 * every MDF line whose effective period is P or earlier, as the explain
 * report checks it against the balance (tly_explain.c): credits add,
 * debits, reservations, expiries and deficits take away, deficit payoffs
 * add back. The last bar is therefore the balance's "available".
 */
#include <stdlib.h>
#include <string.h>

#include "web_internal.h"

/* Geometry of the SVG, in pixels. */
#define CHART_W 760
#define CHART_H 280
#define CHART_LEFT 90
#define CHART_RIGHT 90
#define CHART_TOP 20
#define CHART_BOTTOM 50
#define PLOT_W (CHART_W - CHART_LEFT - CHART_RIGHT)
#define PLOT_H (CHART_H - CHART_TOP - CHART_BOTTOM)

/* Colours the page uses nowhere else (the browser test looks for them). */
#define MDF_COLOUR "#2f6fd0"
#define REVENUE_COLOUR "#e07000"

typedef struct series {
    const char *period[TLY_PERIODS_REPORT_MAX];
    int64_t available[TLY_PERIODS_REPORT_MAX];
    int64_t revenue[TLY_PERIODS_REPORT_MAX];
    uint32_t n;
} series;

/* The index of period p, added in order when new; -1 when full. */
static int slot_of(series *s, const char *p)
{
    uint32_t i = 0;
    while (i < s->n && strcmp(s->period[i], p) < 0)
        i++;
    if (i < s->n && strcmp(s->period[i], p) == 0)
        return (int)i;
    if (s->n == TLY_PERIODS_REPORT_MAX)
        return -1;
    memmove(&s->period[i + 1], &s->period[i], (s->n - i) * sizeof s->period[0]);
    memmove(&s->available[i + 1], &s->available[i], (s->n - i) * sizeof s->available[0]);
    memmove(&s->revenue[i + 1], &s->revenue[i], (s->n - i) * sizeof s->revenue[0]);
    s->period[i] = p;
    s->available[i] = s->revenue[i] = 0;
    s->n++;
    return (int)i;
}

/* A line's signed effect on "available" (0 for the others). */
static int64_t available_effect(const json_t *l)
{
    static const struct {
        const char *kind;
        int sign;
    } effects[] = {{"credit", 1},  {"debit", -1},   {"reserve", -1},
                   {"expiry", -1}, {"deficit", -1}, {"deficit_payoff", 1}};
    const char *kind = web_sget(l, "kind");
    for (size_t i = 0; i < sizeof effects / sizeof effects[0]; i++)
        if (strcmp(kind, effects[i].kind) == 0)
            return effects[i].sign * web_iget(l, "amount");
    return 0;
}

/* Fills s: per period the movement, then running sums. */
static void collect(series *s, const json_t *rebate, const json_t *explain)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rebate, "periods"), i, v)
    {
        int k = slot_of(s, web_sget(v, "period"));
        if (k >= 0)
            s->revenue[k] += web_iget(v, "revenue");
    }
    json_array_foreach(json_object_get(json_object_get(explain, "mdf"), "lines"), i, v)
    {
        int k = slot_of(s, web_sget(v, "period"));
        if (k >= 0)
            s->available[k] += available_effect(v);
    }
    for (uint32_t k = 1; k < s->n; k++) {
        s->available[k] += s->available[k - 1];
        s->revenue[k] += s->revenue[k - 1];
    }
}

/* A value's range, always holding 0 and never empty. */
typedef struct range {
    int64_t lo, hi;
    uint64_t step; /* minor units per pixel, rounded up */
} range;

static range range_of(const int64_t *v, uint32_t n)
{
    range r = {0, 1, 1};
    for (uint32_t i = 0; i < n; i++) {
        r.lo = v[i] < r.lo ? v[i] : r.lo;
        r.hi = v[i] > r.hi ? v[i] : r.hi;
    }
    uint64_t span = (uint64_t)r.hi - (uint64_t)r.lo;
    r.step = span / PLOT_H + (span % PLOT_H != 0);
    return r;
}

static int y_of(const range *r, int64_t v)
{
    return CHART_TOP + (int)(((uint64_t)r->hi - (uint64_t)v) / r->step);
}

static void axis_label(web_buf *b, int x, int y, const char *anchor, int64_t v, const char *cur)
{
    web_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\" font-size=\"11\">", x, y, anchor);
    web_money(b, v, cur);
    web_put(b, "</text>");
}

static void bars(web_buf *b, const series *s, const range *r, int slot, const char *cur)
{
    int zero = y_of(r, 0);
    for (uint32_t i = 0; i < s->n; i++) {
        int y = y_of(r, s->available[i]);
        int top = y < zero ? y : zero, h = abs(y - zero);
        web_printf(
            b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"" MDF_COLOUR "\"><title>",
            CHART_LEFT + (int)i * slot + slot / 4, top, slot / 2 > 1 ? slot / 2 : 1, h > 1 ? h : 1);
        web_esc(b, s->period[i]);
        web_put(b, " available ");
        web_money(b, s->available[i], cur);
        web_put(b, "</title></rect>");
    }
}

static void revenue_line(web_buf *b, const series *s, const range *r, int slot)
{
    web_put(b, "<polyline fill=\"none\" stroke=\"" REVENUE_COLOUR "\" stroke-width=\"3\" "
               "points=\"");
    for (uint32_t i = 0; i < s->n; i++)
        web_printf(b, "%s%d,%d", i ? " " : "", CHART_LEFT + (int)i * slot + slot / 2,
                   y_of(r, s->revenue[i]));
    web_put(b, "\"/>");
    uint32_t every = s->n / 12 + 1; /* at most a dozen period labels */
    for (uint32_t i = 0; i < s->n; i += every) {
        web_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\">",
                   CHART_LEFT + (int)i * slot + slot / 2, CHART_H - CHART_BOTTOM + 16);
        web_esc(b, s->period[i]);
        web_put(b, "</text>");
    }
}

static void legend(web_buf *b)
{
    int y = CHART_H - 14;
    web_printf(b,
               "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"" MDF_COLOUR "\"/>"
               "<text x=\"%d\" y=\"%d\" font-size=\"12\">available MDF (left)</text>"
               "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"4\" fill=\"" REVENUE_COLOUR "\"/>"
               "<text x=\"%d\" y=\"%d\" font-size=\"12\">cumulative revenue (right)</text>",
               CHART_LEFT, y - 10, CHART_LEFT + 18, y, CHART_LEFT + 200, y - 6, CHART_LEFT + 218,
               y);
}

void web_chart(web_buf *b, const json_t *rebate, const json_t *explain, const char *currency)
{
    series *s = calloc(1, sizeof *s);
    if (!s) {
        b->failed = true;
        return;
    }
    collect(s, rebate, explain);
    web_printf(b,
               "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">",
               CHART_W, CHART_H, CHART_W, CHART_H);
    if (s->n == 0) {
        web_put(b, "<text x=\"20\" y=\"40\">No periods yet.</text></svg>");
        free(s);
        return;
    }
    range ra = range_of(s->available, s->n), rr = range_of(s->revenue, s->n);
    int slot = PLOT_W / (int)s->n > 0 ? PLOT_W / (int)s->n : 1;
    web_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>", CHART_LEFT,
               y_of(&ra, 0), CHART_W - CHART_RIGHT, y_of(&ra, 0));
    axis_label(b, CHART_LEFT - 6, CHART_TOP + 4, "end", ra.hi, currency);
    axis_label(b, CHART_LEFT - 6, CHART_TOP + PLOT_H, "end", ra.lo, currency);
    axis_label(b, CHART_W - CHART_RIGHT + 6, CHART_TOP + 4, "start", rr.hi, currency);
    axis_label(b, CHART_W - CHART_RIGHT + 6, CHART_TOP + PLOT_H, "start", rr.lo, currency);
    bars(b, s, &ra, slot, currency);
    revenue_line(b, s, &rr, slot);
    legend(b);
    web_put(b, "</svg>");
    free(s);
}
