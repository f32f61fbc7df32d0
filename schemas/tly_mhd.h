/*
 * tly_mhd.h — libmicrohttpd, opened the first time a process serves HTTP
 * (the console, --metrics) rather than linked into every tally process
 * (tly_dl.h says why: with it come gnutls and its dependencies, 2.4 MB of
 * a consumer's resident memory). Include this instead of <microhttpd.h>:
 * after it, each function below is called as usual and goes through the
 * table, which tly_mhd_load must have filled.
 */
#ifndef TLY_MHD_H
#define TLY_MHD_H

#include <stddef.h>
/* microhttpd.h needs these first */
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "tly_dl.h"
#include "tly_err.h"

/* Every function of libmicrohttpd that Tally calls. */
#define TLY_MHD_SYMS(X, P)                                                                         \
    X(P, MHD_add_response_header)                                                                  \
    X(P, MHD_create_response_from_buffer)                                                          \
    X(P, MHD_create_response_from_buffer_with_free_callback)                                       \
    X(P, MHD_destroy_response)                                                                     \
    X(P, MHD_get_connection_values)                                                                \
    X(P, MHD_lookup_connection_value)                                                              \
    X(P, MHD_queue_response)                                                                       \
    X(P, MHD_start_daemon)                                                                         \
    X(P, MHD_stop_daemon)

enum { TLY_MHD_SYMS(TLY_DL_INDEX, TLY_MHD_SYM_) TLY_MHD_SYM_COUNT };

extern void *tly_mhd_syms[TLY_MHD_SYM_COUNT];

/* Opens libmicrohttpd once (TLY_OK), or returns TLY_UNAVAILABLE with msg
 * saying what is missing. Call it before the first MHD_start_daemon. */
tly_err tly_mhd_load(char *msg, size_t cap);

#define TLY_MHD_FN(f) TLY_DL_FN(tly_mhd_syms, TLY_MHD_SYM_, f)
#define MHD_add_response_header TLY_MHD_FN(MHD_add_response_header)
#define MHD_create_response_from_buffer TLY_MHD_FN(MHD_create_response_from_buffer)
#define MHD_create_response_from_buffer_with_free_callback                                         \
    TLY_MHD_FN(MHD_create_response_from_buffer_with_free_callback)
#define MHD_destroy_response TLY_MHD_FN(MHD_destroy_response)
#define MHD_get_connection_values TLY_MHD_FN(MHD_get_connection_values)
#define MHD_lookup_connection_value TLY_MHD_FN(MHD_lookup_connection_value)
#define MHD_queue_response TLY_MHD_FN(MHD_queue_response)
#define MHD_start_daemon TLY_MHD_FN(MHD_start_daemon)
#define MHD_stop_daemon TLY_MHD_FN(MHD_stop_daemon)

#endif
