/*
 * report_html.c — a document as one self-contained HTML file: inline CSS
 * (print-friendly, A4 page rules), tables, and the chart as inline SVG
 * that cairo's SVG surface draws (the same drawing as the PDF's). No
 * script, no external file, no web font: it opens in any browser or mail
 * client as it is.
 */
#include <cairo-svg.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"

static const char css[] =
    "body{font-family:'DejaVu Sans',Verdana,sans-serif;font-size:10pt;color:#222;"
    "max-width:56em;margin:2em auto;padding:0 1em}\n"
    "h1{font-size:17pt;margin:0 0 .3em}h2{font-size:12pt;margin:1.4em 0 .4em;"
    "border-bottom:1px solid #ccc}\n"
    "table{border-collapse:collapse;margin:.3em 0 .8em}"
    "td,th{padding:.15em .6em;vertical-align:top}\n"
    "th{text-align:left;border-bottom:1px solid #444}table.rows tr:nth-child(even){"
    "background:#f2f2f2}\n"
    ".r{text-align:right;white-space:nowrap}table.facts td:first-child{color:#555}\n"
    "figure{margin:.5em 0}figure svg{max-width:100%;height:auto}\n"
    "@page{size:A4;margin:17mm}\n";

/* Writes s with &, <, >, " and ' escaped. */
static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static void table(FILE *f, const rb_block *b)
{
    bool head = b->kind == RB_TABLE;
    fprintf(f, "<table class=\"%s\">\n", head ? "rows" : "facts");
    for (uint32_t r = 0; r < b->rows; r++) {
        fputs("<tr>", f);
        for (uint32_t c = 0; c < b->cols; c++) {
            const char *tag = head && r == 0 ? "th" : "td";
            fprintf(f, "<%s%s>", tag, b->align[c] == 'r' ? " class=\"r\"" : "");
            esc(f, b->cells[(size_t)r * b->cols + c]);
            fprintf(f, "</%s>", tag);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* The SVG document cairo writes, collected in memory. */
typedef struct svg_buf {
    char *data;
    size_t len, cap;
    bool nomem;
} svg_buf;

static cairo_status_t svg_write(void *closure, const unsigned char *data, unsigned int len)
{
    svg_buf *b = closure;
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->nomem = true;
            return CAIRO_STATUS_NO_MEMORY;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return CAIRO_STATUS_SUCCESS;
}

/* The chart as an <svg> element (cairo's document without its XML
 * declaration, which may not stand inside HTML). */
static tly_err chart(FILE *f, const rb_doc *d)
{
    svg_buf b = {0};
    cairo_surface_t *s = cairo_svg_surface_create_for_stream(svg_write, &b, RB_CHART_W, RB_CHART_H);
    cairo_t *cr = cairo_create(s);
    rb_chart_draw(cr, d, RB_CHART_W, RB_CHART_H);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    const char *svg = b.data != NULL ? strstr(b.data, "<svg") : NULL;
    tly_err err = b.nomem || st == CAIRO_STATUS_NO_MEMORY     ? TLY_NOMEM
                  : st != CAIRO_STATUS_SUCCESS || svg == NULL ? TLY_IO
                                                              : TLY_OK;
    if (err == TLY_OK) {
        fputs("<figure role=\"img\" aria-label=\"", f);
        esc(f, "Available MDF at period end and cumulative revenue by period");
        fprintf(f, "\">\n%s</figure>\n", svg);
    }
    free(b.data);
    return err;
}

tly_err rb_write_html(const rb_doc *d, FILE *f)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    esc(f, d->title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", css);
    for (size_t i = 0; i < d->count; i++) {
        const rb_block *b = &d->blocks[i];
        const char *tag = b->kind == RB_TITLE ? "h1" : b->kind == RB_HEADING ? "h2" : "p";
        if (b->kind == RB_TITLE || b->kind == RB_HEADING || b->kind == RB_TEXT) {
            fprintf(f, "<%s>", tag);
            esc(f, b->text);
            fprintf(f, "</%s>\n", tag);
        } else if (b->kind == RB_CHART) {
            tly_err err = chart(f, d);
            if (err != TLY_OK)
                return err;
        } else {
            table(f, b);
        }
    }
    fputs("<p><small>Written by Tally from the ledger's figures at the seq above.</small></p>\n"
          "</body>\n</html>\n",
          f);
    return ferror(f) ? TLY_IO : TLY_OK;
}
