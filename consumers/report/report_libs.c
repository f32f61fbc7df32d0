/*
 * report_libs.c — opens the report room's drawing libraries (report_libs.h).
 */
#include "report_libs.h"

void *rb_syms[RB_SYM_COUNT];

tly_err rb_libs_load(char *msg, size_t cap)
{
    /* The sonames come from the libraries CMake found (consumers/CMakeLists.txt). */
    static const char *const sonames[] = {TLY_SONAME_PANGOCAIRO, TLY_SONAME_PANGO, TLY_SONAME_CAIRO,
                                          TLY_SONAME_GOBJECT};
    static const char *const names[] = {RB_SYMS(TLY_DL_NAME, RB_SYM_)};
    const tly_dl_set set = {.what = "the statement's PDF and HTML",
                            .sonames = sonames,
                            .soname_count = sizeof sonames / sizeof sonames[0],
                            .names = names,
                            .table = rb_syms,
                            .count = RB_SYM_COUNT};
    return tly_dl_load(&set, msg, cap);
}
