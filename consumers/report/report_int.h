/*
 * report_int.h — the report room's inside: a document as a list of blocks
 * (title, heading, text, facts, table, chart) that report_doc.c builds from
 * a statement and the two renderers walk: report_html.c and report_pdf.c.
 * Both draw the chart with report_chart.c, so the HTML's SVG and the PDF's
 * vector chart are the same drawing.
 */
#ifndef REPORT_INT_H
#define REPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report_libs.h" /* cairo and pango, through their table */
#include "tly_err.h"
#include "tly_limits.h"

/* Columns of the widest table (the rebate rows). */
#define RB_COLS_MAX 8u

typedef enum rb_kind {
    RB_TITLE,   /* the document's title */
    RB_HEADING, /* a section heading */
    RB_TEXT,    /* a paragraph */
    RB_FACTS,   /* label/value pairs: a two-column table without headings */
    RB_TABLE,   /* row 0 the headings */
    RB_CHART,   /* the chart of the document's points */
} rb_kind;

typedef struct rb_block {
    rb_kind kind;
    char *text;                  /* TITLE, HEADING, TEXT */
    uint32_t cols;               /* FACTS, TABLE */
    char align[RB_COLS_MAX + 1]; /* 'l' or 'r' per column */
    uint32_t wrap;               /* the column that wraps (the widest text) */
    char **cells;                /* rows * cols, owned */
    uint32_t rows, cap;
} rb_block;

/* One period of the chart: what it shows at the end of the period. */
typedef struct rb_point {
    char period[16];
    int64_t available; /* MDF available, minor units */
    int64_t revenue;   /* cumulative net revenue, minor units */
} rb_point;

typedef struct rb_doc {
    rb_block *blocks;
    size_t count, cap;
    rb_point *points; /* at most TLY_STATEMENT_CHART_PERIODS_MAX */
    size_t npoints;
    size_t mark; /* the point of the statement's period, SIZE_MAX: none */
    int exp;     /* the currency's minor-unit digits */
    char currency[8];
    char title[160]; /* also the PDF's and the HTML's title */
    bool nomem;      /* an allocation failed: the document is incomplete */
} rb_doc;

/* Appends a block (text copied); NULL and d->nomem set when out of memory. */
rb_block *rb_add_block(rb_doc *d, rb_kind kind, const char *text);
void rb_add_textf(rb_doc *d, rb_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A new table (or facts) block of strlen(align) columns; returns its index
 * (SIZE_MAX when out of memory). wrap: the column that takes what width is
 * left (and wraps in the PDF). */
size_t rb_add_table(rb_doc *d, rb_kind kind, const char *align, uint32_t wrap);
/* Adds a row of the table's column count of strings (copied; NULL: ""). */
void rb_add_row(rb_doc *d, size_t table, ...);

/* Builds d (zeroed by the caller) from a statement (tly_report.h).
 * Returns TLY_OK, TLY_BAD_FIELD (msg names the field) or TLY_NOMEM. */
tly_err rb_doc_build(rb_doc *d, const void *statement, char *msg, size_t cap);
void rb_doc_free(rb_doc *d);

/* Money of d's currency as text in buf (TLY_QUERY_MONEY_CHARS bytes). */
const char *rb_money(const rb_doc *d, int64_t minor, char *buf, size_t cap);

/* A pango layout for cr at 72 dpi (one point per unit, as the PDF and SVG
 * surfaces measure) in font ("DejaVu Sans 9"). g_object_unref it. */
PangoLayout *rb_layout(cairo_t *cr, const char *font);

/* Draws d's chart into the w x h box at the current origin of cr (points;
 * the caller translates). The fonts come from pango's cairo font map. */
void rb_chart_draw(cairo_t *cr, const rb_doc *d, double w, double h);

/* The chart's size: points, the same in the PDF and the SVG. */
#define RB_CHART_W 500.0
#define RB_CHART_H 230.0

/* Renders d to the open stream f. Return TLY_OK, TLY_IO, TLY_TOO_LARGE
 * (PDF pages) or TLY_NOMEM. */
tly_err rb_write_html(const rb_doc *d, FILE *f);
tly_err rb_write_pdf(const rb_doc *d, FILE *f);

#endif
