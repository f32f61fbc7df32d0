/*
 * report_pdf.c — a document as an A4 PDF: cairo's PDF surface (vector,
 * fonts embedded as subsets) with pango laying out every piece of text.
 * Blocks flow down the page; a table that reaches the bottom margin goes
 * on over the next page with its headings repeated, a heading never ends
 * a page, and every page has a footer with the title and its number.
 */
#include <cairo-pdf.h>
#include <string.h>

#include "report_int.h"

/* A4 in points, and the margins. */
#define PAGE_W 595.276
#define PAGE_H 841.89
#define MARGIN 48.0
#define CONTENT_W (PAGE_W - 2 * MARGIN)
#define BOTTOM (PAGE_H - MARGIN - 14.0) /* above the footer */
/* Space around a table cell's text, and the narrowest a wrapping column
 * gets. */
#define CELL_PAD 8.0
#define WRAP_MIN 90.0
/* A heading needs this much below it on its page, or it starts the next. */
#define KEEP_WITH_NEXT 60.0

typedef struct pdf {
    const rb_doc *d;
    cairo_t *cr;
    PangoLayout *body, *bold, *head, *title;
    double y;
    unsigned pages;
    tly_err err;
} pdf;

static cairo_status_t write_fn(void *closure, const unsigned char *data, unsigned int len)
{
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

/* Text height of l after setting text and width (-1: no wrapping). */
static double measure(PangoLayout *l, const char *text, double width, double *w_out)
{
    int w, h;
    pango_layout_set_width(l, width < 0 ? -1 : (int)(width * PANGO_SCALE));
    pango_layout_set_text(l, text, -1);
    pango_layout_get_size(l, &w, &h);
    if (w_out != NULL)
        *w_out = (double)w / PANGO_SCALE;
    return (double)h / PANGO_SCALE;
}

static void footer(pdf *p)
{
    char text[200];
    snprintf(text, sizeof text, "%s \xe2\x80\x94 page %u", p->d->title, p->pages);
    measure(p->body, text, -1, NULL);
    cairo_set_source_rgb(p->cr, 0.4, 0.4, 0.4);
    cairo_move_to(p->cr, MARGIN, PAGE_H - MARGIN);
    pango_cairo_show_layout(p->cr, p->body);
    cairo_set_source_rgb(p->cr, 0, 0, 0);
}

/* Ends the page (when one is open) and starts the next. */
static void new_page(pdf *p)
{
    if (p->pages > 0) {
        footer(p);
        cairo_show_page(p->cr);
    }
    if (++p->pages > TLY_STATEMENT_PAGES_MAX)
        p->err = TLY_TOO_LARGE;
    p->y = MARGIN;
}

/* Starts a new page unless h more points fit on this one. */
static void need(pdf *p, double h)
{
    if (p->y + h > BOTTOM && p->y > MARGIN)
        new_page(p);
}

static void text_block(pdf *p, PangoLayout *l, const char *text, double before, double after)
{
    double h = measure(l, text, CONTENT_W, NULL);
    need(p, before + h + (l == p->head ? KEEP_WITH_NEXT : 0));
    p->y += p->y > MARGIN ? before : 0;
    cairo_move_to(p->cr, MARGIN, p->y);
    pango_cairo_show_layout(p->cr, l);
    p->y += h + after;
}

/* ---- tables ---- */

/* Column widths: each column's widest cell, the wrapping column taking
 * what is left of the content width (at least WRAP_MIN). */
static void widths(pdf *p, const rb_block *b, double *w)
{
    double total = 0;
    for (uint32_t c = 0; c < b->cols; c++) {
        w[c] = 0;
        for (uint32_t r = 0; r < b->rows; r++) {
            double cw;
            bool heading = b->kind == RB_TABLE && r == 0;
            measure(heading ? p->bold : p->body, b->cells[(size_t)r * b->cols + c], -1, &cw);
            w[c] = cw + CELL_PAD > w[c] ? cw + CELL_PAD : w[c];
        }
        total += w[c];
    }
    double rest = CONTENT_W - (total - w[b->wrap]);
    if (total > CONTENT_W)
        w[b->wrap] = rest > WRAP_MIN ? rest : WRAP_MIN;
}

/* Draws row r at p->y (measured height h); returns nothing. */
static void draw_row(pdf *p, const rb_block *b, uint32_t r, const double *w, double h)
{
    bool heading = b->kind == RB_TABLE && r == 0;
    PangoLayout *l = heading ? p->bold : p->body;
    if (b->kind == RB_TABLE && r > 0 && r % 2 == 0) {
        cairo_set_source_rgb(p->cr, 0.95, 0.95, 0.95);
        cairo_rectangle(p->cr, MARGIN, p->y, CONTENT_W, h);
        cairo_fill(p->cr);
        cairo_set_source_rgb(p->cr, 0, 0, 0);
    }
    double x = MARGIN;
    for (uint32_t c = 0; c < b->cols; c++) {
        double tw;
        measure(l, b->cells[(size_t)r * b->cols + c], c == b->wrap ? w[c] - CELL_PAD : -1, &tw);
        double left = b->align[c] == 'r' ? x + w[c] - CELL_PAD / 2 - tw : x + CELL_PAD / 2;
        cairo_move_to(p->cr, left, p->y + 1.5);
        pango_cairo_show_layout(p->cr, l);
        x += w[c];
    }
    if (heading) {
        cairo_set_line_width(p->cr, 0.6);
        cairo_move_to(p->cr, MARGIN, p->y + h);
        cairo_line_to(p->cr, MARGIN + CONTENT_W, p->y + h);
        cairo_stroke(p->cr);
    }
}

static double row_height(pdf *p, const rb_block *b, uint32_t r, const double *w)
{
    PangoLayout *l = b->kind == RB_TABLE && r == 0 ? p->bold : p->body;
    double h = 0;
    for (uint32_t c = 0; c < b->cols; c++) {
        double ch = measure(l, b->cells[(size_t)r * b->cols + c],
                            c == b->wrap ? w[c] - CELL_PAD : -1, NULL);
        h = ch > h ? ch : h;
    }
    return h + 3.0;
}

static void table_block(pdf *p, const rb_block *b)
{
    double w[RB_COLS_MAX];
    widths(p, b, w);
    p->y += 2;
    for (uint32_t r = 0; r < b->rows && p->err == TLY_OK; r++) {
        double h = row_height(p, b, r, w);
        /* the headings row keeps the first data row with it */
        double keep = b->kind == RB_TABLE && r == 0 && b->rows > 1 ? row_height(p, b, 1, w) : 0;
        if (p->y + h + keep > BOTTOM && p->y > MARGIN) {
            new_page(p);
            if (b->kind == RB_TABLE && r > 0) {
                double hh = row_height(p, b, 0, w);
                draw_row(p, b, 0, w, hh);
                p->y += hh;
            }
        }
        draw_row(p, b, r, w, h);
        p->y += h;
    }
    p->y += 8;
}

static void chart_block(pdf *p)
{
    need(p, RB_CHART_H);
    cairo_save(p->cr);
    cairo_translate(p->cr, MARGIN, p->y);
    rb_chart_draw(p->cr, p->d, RB_CHART_W, RB_CHART_H);
    cairo_restore(p->cr);
    p->y += RB_CHART_H + 8;
}

static void blocks(pdf *p)
{
    for (size_t i = 0; i < p->d->count && p->err == TLY_OK; i++) {
        const rb_block *b = &p->d->blocks[i];
        if (b->kind == RB_TITLE)
            text_block(p, p->title, b->text, 0, 6);
        else if (b->kind == RB_HEADING)
            text_block(p, p->head, b->text, 10, 4);
        else if (b->kind == RB_TEXT)
            text_block(p, p->body, b->text, 0, 6);
        else if (b->kind == RB_CHART)
            chart_block(p);
        else
            table_block(p, b);
    }
}

tly_err rb_write_pdf(const rb_doc *d, FILE *f)
{
    cairo_surface_t *s = cairo_pdf_surface_create_for_stream(write_fn, f, PAGE_W, PAGE_H);
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, d->title);
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "Tally");
    pdf p = {.d = d, .cr = cairo_create(s)};
    p.body = rb_layout(p.cr, "DejaVu Sans 8.5");
    p.bold = rb_layout(p.cr, "DejaVu Sans Bold 8.5");
    p.head = rb_layout(p.cr, "DejaVu Sans Bold 12");
    p.title = rb_layout(p.cr, "DejaVu Sans Bold 17");
    new_page(&p);
    blocks(&p);
    footer(&p);
    cairo_show_page(p.cr);
    g_object_unref(p.body);
    g_object_unref(p.bold);
    g_object_unref(p.head);
    g_object_unref(p.title);
    cairo_destroy(p.cr);
    cairo_surface_finish(s);
    cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (p.err != TLY_OK)
        return p.err;
    return st == CAIRO_STATUS_SUCCESS ? TLY_OK : st == CAIRO_STATUS_NO_MEMORY ? TLY_NOMEM : TLY_IO;
}
