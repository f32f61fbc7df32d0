/*
 * report_chart.c — the statement's chart: per program period, the
 * partner's cumulative net revenue as bars on the right-hand scale and its
 * available MDF at the period's end as a line on the left-hand scale, the
 * statement's period shaded. Drawn with cairo paths and pango text into
 * any cairo context: the PDF page itself, or an SVG surface for the HTML.
 *
 * Scales are computed on the integer minor units (ticks at 1, 2 or 5 ×
 * 10^k, so their labels are exact amounts); only the mapping of a value to
 * a coordinate is floating point, and that is drawing, not money.
 */
#include <stdio.h>
#include <string.h>

#include "report_int.h"
#include "tly_query.h"

/* Margins of the plot inside the chart's box, points. */
#define AXIS_W 74.0
#define LEGEND_H 26.0
#define LABELS_H 30.0
/* Intervals a scale aims at. */
#define SCALE_STEPS 4
/* Period labels shown at most along the x axis. */
#define X_LABELS_MAX 12u

typedef struct scale {
    int64_t lo, hi, step; /* lo and hi multiples of step, lo < hi */
} scale;

PangoLayout *rb_layout(cairo_t *cr, const char *font)
{
    PangoLayout *l = pango_cairo_create_layout(cr);
    PangoContext *pc = pango_layout_get_context(l);
    /* One point per unit: the PDF's and the SVG's coordinates are points. */
    pango_cairo_context_set_resolution(pc, 72.0);
    pango_layout_context_changed(l);
    PangoFontDescription *fd = pango_font_description_from_string(font);
    pango_layout_set_font_description(l, fd);
    pango_font_description_free(fd);
    return l;
}

/* Shows text with its left (align 'l'), right ('r') or centre ('c') at x
 * and its vertical middle at y. */
static void show(cairo_t *cr, PangoLayout *l, double x, double y, const char *text, char align)
{
    int w, h;
    pango_layout_set_text(l, text, -1);
    pango_layout_get_size(l, &w, &h);
    double tw = (double)w / PANGO_SCALE, th = (double)h / PANGO_SCALE;
    double left = align == 'l' ? x : align == 'r' ? x - tw : x - tw / 2;
    cairo_move_to(cr, left, y - th / 2);
    pango_cairo_show_layout(cr, l);
}

/* A scale over [lo, hi] with 0 in it: ticks at 1, 2 or 5 × 10^k. */
static scale make_scale(int64_t lo, int64_t hi, int exp)
{
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    int64_t unit = 1;
    for (int i = 0; i < exp; i++)
        unit *= 10;
    if (hi - lo < unit)
        hi = lo + unit; /* a flat series still gets one currency unit */
    int64_t raw = (hi - lo + SCALE_STEPS - 1) / SCALE_STEPS, step = 1;
    static const int64_t mult[] = {1, 2, 5};
    for (int64_t p = 1; step < raw && p <= INT64_MAX / 10; p *= 10)
        for (int m = 0; m < 3 && step < raw; m++)
            step = mult[m] * p;
    scale s = {.step = step};
    s.lo = lo / step * step - (lo % step != 0 ? step : 0);
    s.hi = hi / step * step + (hi % step != 0 ? step : 0);
    return s;
}

/* y of value v on s inside [top, bottom]. */
static double y_of(const scale *s, int64_t v, double top, double bottom)
{
    return bottom - (double)(v - s->lo) / (double)(s->hi - s->lo) * (bottom - top);
}

/* A tick label: the amount without a zero fraction ("1,200" not
 * "1,200.00"). */
static void tick_text(const rb_doc *d, int64_t v, char *buf, size_t cap)
{
    rb_money(d, v, buf, cap);
    char *dot = strchr(buf, '.');
    if (dot != NULL && strspn(dot + 1, "0") == strlen(dot + 1))
        *dot = '\0';
}

typedef struct plot {
    double x0, x1, y0, y1, slot;
    scale left, right;
} plot;

static void axes(cairo_t *cr, PangoLayout *l, const rb_doc *d, const plot *p)
{
    cairo_set_line_width(cr, 0.4);
    for (int64_t v = p->left.lo; v <= p->left.hi; v += p->left.step) {
        char t[TLY_QUERY_MONEY_CHARS];
        double y = y_of(&p->left, v, p->y0, p->y1);
        cairo_set_source_rgb(cr, v == 0 ? 0.45 : 0.85, v == 0 ? 0.45 : 0.85, v == 0 ? 0.45 : 0.85);
        cairo_move_to(cr, p->x0, y);
        cairo_line_to(cr, p->x1, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.80, 0.33, 0.0);
        tick_text(d, v, t, sizeof t);
        show(cr, l, p->x0 - 4, y, t, 'r');
    }
    cairo_set_source_rgb(cr, 0.16, 0.38, 0.62);
    for (int64_t v = p->right.lo; v <= p->right.hi; v += p->right.step) {
        char t[TLY_QUERY_MONEY_CHARS];
        tick_text(d, v, t, sizeof t);
        show(cr, l, p->x1 + 4, y_of(&p->right, v, p->y0, p->y1), t, 'l');
    }
    size_t every = (d->npoints + X_LABELS_MAX - 1) / X_LABELS_MAX;
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    for (size_t i = 0; i < d->npoints; i++)
        if (i % every == 0 || i == d->mark)
            show(cr, l, p->x0 + p->slot * ((double)i + 0.5), p->y1 + 10, d->points[i].period, 'c');
}

static void series(cairo_t *cr, const rb_doc *d, const plot *p)
{
    if (d->mark != SIZE_MAX) {
        cairo_set_source_rgb(cr, 0.93, 0.93, 0.93);
        cairo_rectangle(cr, p->x0 + p->slot * (double)d->mark, p->y0, p->slot, p->y1 - p->y0);
        cairo_fill(cr);
    }
    double zero = y_of(&p->right, 0, p->y0, p->y1);
    cairo_set_source_rgb(cr, 0.55, 0.72, 0.88);
    for (size_t i = 0; i < d->npoints; i++) {
        double y = y_of(&p->right, d->points[i].revenue, p->y0, p->y1);
        cairo_rectangle(cr, p->x0 + p->slot * ((double)i + 0.2), y < zero ? y : zero, p->slot * 0.6,
                        y < zero ? zero - y : y - zero);
    }
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.80, 0.33, 0.0);
    cairo_set_line_width(cr, 1.6);
    for (size_t i = 0; i < d->npoints; i++) {
        double x = p->x0 + p->slot * ((double)i + 0.5);
        double y = y_of(&p->left, d->points[i].available, p->y0, p->y1);
        if (i == 0)
            cairo_move_to(cr, x, y);
        else
            cairo_line_to(cr, x, y);
    }
    cairo_stroke(cr);
    for (size_t i = 0; i < d->npoints; i++) {
        double x = p->x0 + p->slot * ((double)i + 0.5);
        cairo_arc(cr, x, y_of(&p->left, d->points[i].available, p->y0, p->y1), 2.2, 0, 6.2832);
        cairo_fill(cr);
    }
}

static void legend(cairo_t *cr, PangoLayout *l, const plot *p)
{
    cairo_set_source_rgb(cr, 0.80, 0.33, 0.0);
    cairo_rectangle(cr, p->x0, 6, 10, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    show(cr, l, p->x0 + 14, 11, "Available MDF at period end (left scale)", 'l');
    cairo_set_source_rgb(cr, 0.55, 0.72, 0.88);
    cairo_rectangle(cr, p->x0 + 230, 6, 10, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    show(cr, l, p->x0 + 244, 11, "Cumulative revenue (right scale)", 'l');
}

void rb_chart_draw(cairo_t *cr, const rb_doc *d, double w, double h)
{
    if (d->npoints == 0)
        return;
    int64_t alo = 0, ahi = 0, rlo = 0, rhi = 0;
    for (size_t i = 0; i < d->npoints; i++) {
        const rb_point *pt = &d->points[i];
        alo = pt->available < alo ? pt->available : alo;
        ahi = pt->available > ahi ? pt->available : ahi;
        rlo = pt->revenue < rlo ? pt->revenue : rlo;
        rhi = pt->revenue > rhi ? pt->revenue : rhi;
    }
    plot p = {.x0 = AXIS_W, .x1 = w - AXIS_W, .y0 = LEGEND_H, .y1 = h - LABELS_H};
    p.slot = (p.x1 - p.x0) / (double)d->npoints;
    p.left = make_scale(alo, ahi, d->exp);
    p.right = make_scale(rlo, rhi, d->exp);
    PangoLayout *l = rb_layout(cr, "DejaVu Sans 7");
    cairo_save(cr);
    series(cr, d, &p);
    axes(cr, l, d, &p);
    legend(cr, l, &p);
    cairo_restore(cr);
    g_object_unref(l);
}
