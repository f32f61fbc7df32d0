/*
 * tly_helper.h — the consumer's second thread for the engine's work
 * (tly_engine_helper): one function at a time, on a thread started for it
 * and joined when the engine asks. The engine starts no thread itself; the
 * read-back's decoding (tly_engine_read_back_begin) and the flush's
 * packing (tly_engine_set_flush_helper) run their second halves here.
 */
#ifndef TLY_HELPER_H
#define TLY_HELPER_H

#include <pthread.h>

#include "tly_engine.h"

/* One helper. Zero-initialised is idle; it holds nothing between a join
 * and the next start. */
typedef struct tly_helper {
    pthread_t thread;
    void (*fn)(void *);
    void *arg;
} tly_helper;

/* The engine's view of h: start runs fn(arg) on a new thread (false when
 * none can be started: the caller runs it), join waits for it. */
tly_engine_helper tly_helper_of(tly_helper *h);

/* tly_engine_read_back of e, its records' decoding split with h when the
 * list holds at least min partners (tly_engine_read_back_begin); returns
 * how many partners were read back. */
uint32_t tly_helper_read_back(tly_helper *h, tly_engine *e, uint32_t min);

#endif
