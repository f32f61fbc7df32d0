/*
 * report_libs.h — the drawing libraries of the report room (cairo, pango
 * and the one glib function it calls), opened the first time a document is
 * drawn (rb_libs_load) rather than linked into every tally process
 * (tly_dl.h says why). Included by report_int.h: after it, each function
 * below is called as usual and goes through the table.
 */
#ifndef REPORT_LIBS_H
#define REPORT_LIBS_H

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <pango/pangocairo.h>
#include <stddef.h>

#include "tly_dl.h"
#include "tly_err.h"

/* Every function of cairo, pango and glib the room calls. */
#define RB_SYMS(X, P)                                                                              \
    X(P, cairo_arc)                                                                                \
    X(P, cairo_create)                                                                             \
    X(P, cairo_destroy)                                                                            \
    X(P, cairo_fill)                                                                               \
    X(P, cairo_line_to)                                                                            \
    X(P, cairo_move_to)                                                                            \
    X(P, cairo_pdf_surface_create_for_stream)                                                      \
    X(P, cairo_pdf_surface_set_metadata)                                                           \
    X(P, cairo_rectangle)                                                                          \
    X(P, cairo_restore)                                                                            \
    X(P, cairo_save)                                                                               \
    X(P, cairo_set_line_width)                                                                     \
    X(P, cairo_set_source_rgb)                                                                     \
    X(P, cairo_show_page)                                                                          \
    X(P, cairo_stroke)                                                                             \
    X(P, cairo_surface_destroy)                                                                    \
    X(P, cairo_surface_finish)                                                                     \
    X(P, cairo_surface_status)                                                                     \
    X(P, cairo_svg_surface_create_for_stream)                                                      \
    X(P, cairo_translate)                                                                          \
    X(P, g_object_unref)                                                                           \
    X(P, pango_cairo_context_set_resolution)                                                       \
    X(P, pango_cairo_create_layout)                                                                \
    X(P, pango_cairo_show_layout)                                                                  \
    X(P, pango_font_description_free)                                                              \
    X(P, pango_font_description_from_string)                                                       \
    X(P, pango_layout_context_changed)                                                             \
    X(P, pango_layout_get_context)                                                                 \
    X(P, pango_layout_get_size)                                                                    \
    X(P, pango_layout_set_font_description)                                                        \
    X(P, pango_layout_set_text)                                                                    \
    X(P, pango_layout_set_width)

enum { RB_SYMS(TLY_DL_INDEX, RB_SYM_) RB_SYM_COUNT };

extern void *rb_syms[RB_SYM_COUNT];

/* Opens the libraries once (TLY_OK), or returns TLY_UNAVAILABLE with msg
 * naming what is missing. */
tly_err rb_libs_load(char *msg, size_t cap);

#define RB_FN(f) TLY_DL_FN(rb_syms, RB_SYM_, f)
#define cairo_arc RB_FN(cairo_arc)
#define cairo_create RB_FN(cairo_create)
#define cairo_destroy RB_FN(cairo_destroy)
#define cairo_fill RB_FN(cairo_fill)
#define cairo_line_to RB_FN(cairo_line_to)
#define cairo_move_to RB_FN(cairo_move_to)
#define cairo_pdf_surface_create_for_stream RB_FN(cairo_pdf_surface_create_for_stream)
#define cairo_pdf_surface_set_metadata RB_FN(cairo_pdf_surface_set_metadata)
#define cairo_rectangle RB_FN(cairo_rectangle)
#define cairo_restore RB_FN(cairo_restore)
#define cairo_save RB_FN(cairo_save)
#define cairo_set_line_width RB_FN(cairo_set_line_width)
#define cairo_set_source_rgb RB_FN(cairo_set_source_rgb)
#define cairo_show_page RB_FN(cairo_show_page)
#define cairo_stroke RB_FN(cairo_stroke)
#define cairo_surface_destroy RB_FN(cairo_surface_destroy)
#define cairo_surface_finish RB_FN(cairo_surface_finish)
#define cairo_surface_status RB_FN(cairo_surface_status)
#define cairo_svg_surface_create_for_stream RB_FN(cairo_svg_surface_create_for_stream)
#define cairo_translate RB_FN(cairo_translate)
#define g_object_unref RB_FN(g_object_unref)
#define pango_cairo_context_set_resolution RB_FN(pango_cairo_context_set_resolution)
#define pango_cairo_create_layout RB_FN(pango_cairo_create_layout)
#define pango_cairo_show_layout RB_FN(pango_cairo_show_layout)
#define pango_font_description_free RB_FN(pango_font_description_free)
#define pango_font_description_from_string RB_FN(pango_font_description_from_string)
#define pango_layout_context_changed RB_FN(pango_layout_context_changed)
#define pango_layout_get_context RB_FN(pango_layout_get_context)
#define pango_layout_get_size RB_FN(pango_layout_get_size)
#define pango_layout_set_font_description RB_FN(pango_layout_set_font_description)
#define pango_layout_set_text RB_FN(pango_layout_set_text)
#define pango_layout_set_width RB_FN(pango_layout_set_width)

#endif
