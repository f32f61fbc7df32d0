/*
 * tly_helper.h — the second thread of a read-back (tly_engine_read_back_begin):
 * with many partners to read back, a thread started for the purpose
 * decodes half of their records while the caller's thread reads the other
 * half. The engine starts no thread itself; `tally consume` and `tally
 * audit replay` read back through here.
 */
#ifndef TLY_HELPER_H
#define TLY_HELPER_H

#include <stdint.h>

#include "tly_engine.h"

/* tly_engine_read_back of e, its records' decoding split with a thread
 * started for it when the list holds at least min partners
 * (tly_engine_read_back_begin; when no thread can be started, the same
 * work in turn on this one). Returns how many partners were read back. */
uint32_t tly_helper_read_back(tly_engine *e, uint32_t min);

/* The min for tly_helper_read_back: TLY_CONSUME_READ_SPLIT_MIN, or
 * $TALLY_CONSUME_READ_SPLIT_MIN when set (tests: 1 splits every
 * read-back of two partners or more). Read it once per run. */
uint32_t tly_helper_split_min(void);

#endif
