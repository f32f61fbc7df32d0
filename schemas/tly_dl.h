/*
 * tly_dl.h — shared libraries opened when first needed (dlopen), not linked.
 *
 * One binary serves every command, and every library it links is mapped
 * into every process at start, with its own dependencies: cairo and pango
 * (the statement's PDF and HTML) bring glib, freetype, X11 and some thirty
 * more, libmicrohttpd (the console, --metrics) brings gnutls. In a consumer
 * that folds the 10M-event log they were 6.6 MB of its peak resident
 * memory, and it draws no document and serves no HTTP. So the rooms that
 * use them resolve the functions they call here, the first time they need
 * them, and call through that table (report_libs.h, tly_mhd.h): a process
 * that never draws or serves never maps them.
 *
 * A room lists its functions once, with an X-macro, and gets an enum of
 * indices, the names and a table of pointers (TLY_DL_INDEX, TLY_DL_NAME);
 * a macro per function, defined
 * after the library's header, makes each call site read as a plain call:
 *
 *   #define cairo_arc TLY_DL_FN(rb_syms, RB_SYM_, cairo_arc)
 *
 * The libraries are named by their sonames, which CMake reads from the
 * libraries it finds at configure time (cmake/TallySoname.cmake), so the
 * build and the loader agree on the ABI.
 */
#ifndef TLY_DL_H
#define TLY_DL_H

#include <stddef.h>

#include "tly_err.h"

/* For a room's X-macro list of its functions, LIST(X, P) expanding to
 * X(P, fn) for each: LIST(TLY_DL_INDEX, P) gives the enum's entries P##fn,
 * LIST(TLY_DL_NAME, P) the names "fn" in the same order. */
#define TLY_DL_INDEX(p, fn) p##fn,
#define TLY_DL_NAME(p, fn) #fn,

/* The typed pointer to function fn of a table filled by tly_dl_load: the
 * function's own declaration (its header) gives the type. Inside the
 * expansion of a macro named fn, fn is not expanded again, so the macro may
 * take the function's name. */
#define TLY_DL_FN(table, prefix, fn) ((__typeof__(fn) *)(table)[prefix##fn])

/* Libraries one set may open. */
#define TLY_DL_LIBS_MAX 8u

/* A set of functions to resolve from one or more libraries. */
typedef struct tly_dl_set {
    const char *what;           /* for messages: "the statement's drawing" */
    const char *const *sonames; /* opened in this order, each kept open; 1..TLY_DL_LIBS_MAX */
    size_t soname_count;
    const char *const *names; /* the functions, by index */
    void **table;             /* filled by index; NULL until loaded */
    size_t count;
} tly_dl_set;

/*
 * Opens the set's libraries (RTLD_NOW | RTLD_LOCAL, never closed) and
 * resolves every name into the table, looking in each library in turn. Once
 * a call succeeded, later calls return TLY_OK at once. Thread-safe (one
 * lock for every set); the table must be filled before a thread calls
 * through it.
 *
 * Returns TLY_OK, or TLY_UNAVAILABLE with msg naming the library that did
 * not open or the function none of them has (the table is then left
 * unusable, and a later call tries again).
 */
tly_err tly_dl_load(const tly_dl_set *set, char *msg, size_t cap);

#endif
