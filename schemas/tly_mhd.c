/*
 * tly_mhd.c — opens libmicrohttpd when first needed (tly_mhd.h).
 */
#include "tly_mhd.h"

void *tly_mhd_syms[TLY_MHD_SYM_COUNT];

tly_err tly_mhd_load(char *msg, size_t cap)
{
    /* The soname of the library CMake found (schemas/CMakeLists.txt). */
    static const char *const sonames[] = {TLY_SONAME_MHD};
    static const char *const names[] = {TLY_MHD_SYMS(TLY_DL_NAME, TLY_MHD_SYM_)};
    const tly_dl_set set = {.what = "serving HTTP",
                            .sonames = sonames,
                            .soname_count = 1,
                            .names = names,
                            .table = tly_mhd_syms,
                            .count = TLY_MHD_SYM_COUNT};
    return tly_dl_load(&set, msg, cap);
}
