/*
 * report_doc.c — the block list both renderers walk (report_int.h): adding
 * titles, paragraphs, tables and their rows, and freeing it all. An
 * allocation that fails marks the document (nomem) instead of failing each
 * call, so the builders read straight; the writer refuses such a document.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "tly_assert.h"
#include "tly_query.h"

/* ---- blocks ---- */

rb_block *rb_add_block(rb_doc *d, rb_kind kind, const char *text)
{
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        rb_block *b = realloc(d->blocks, cap * sizeof *b);
        if (b == NULL) {
            d->nomem = true;
            return NULL;
        }
        d->blocks = b;
        d->cap = cap;
    }
    rb_block *b = &d->blocks[d->count];
    *b = (rb_block){.kind = kind};
    if (text != NULL && (b->text = strdup(text)) == NULL) {
        d->nomem = true;
        return NULL;
    }
    d->count++;
    return b;
}

void rb_add_textf(rb_doc *d, rb_kind kind, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    rb_add_block(d, kind, buf);
}

size_t rb_add_table(rb_doc *d, rb_kind kind, const char *align, uint32_t wrap)
{
    TLY_ASSERT(strlen(align) <= RB_COLS_MAX && wrap < strlen(align));
    rb_block *b = rb_add_block(d, kind, NULL);
    if (b == NULL)
        return SIZE_MAX;
    b->cols = (uint32_t)strlen(align);
    memcpy(b->align, align, b->cols + 1);
    b->wrap = wrap;
    return d->count - 1;
}

void rb_add_row(rb_doc *d, size_t t, ...)
{
    if (t == SIZE_MAX)
        return;
    rb_block *b = &d->blocks[t];
    if (b->rows == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 16;
        char **c = realloc(b->cells, (size_t)cap * b->cols * sizeof *c);
        if (c == NULL) {
            d->nomem = true;
            return;
        }
        b->cells = c;
        b->cap = cap;
    }
    va_list ap;
    va_start(ap, t);
    for (uint32_t c = 0; c < b->cols; c++) {
        const char *s = va_arg(ap, const char *);
        char *copy = strdup(s != NULL ? s : "");
        d->nomem = d->nomem || copy == NULL;
        b->cells[(size_t)b->rows * b->cols + c] = copy;
    }
    va_end(ap);
    b->rows++;
}

void rb_doc_free(rb_doc *d)
{
    for (size_t i = 0; i < d->count; i++) {
        rb_block *b = &d->blocks[i];
        for (size_t c = 0; c < (size_t)b->rows * b->cols; c++)
            free(b->cells[c]);
        free(b->cells);
        free(b->text);
    }
    free(d->blocks);
    free(d->points);
    *d = (rb_doc){0};
}

const char *rb_money(const rb_doc *d, int64_t minor, char *buf, size_t cap)
{
    tly_query_format_money(minor, d->exp, buf, cap);
    return buf;
}
