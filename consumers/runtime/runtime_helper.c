/*
 * runtime_helper.c — tly_helper.h. A thread per call: the engine asks for
 * one per chunk of a split flush and per read-back, a few hundred per
 * catch-up of millions of events, each worth milliseconds of work, so a
 * pool would save less than it costs to read.
 */
#include "tly_helper.h"

static void *helper_main(void *arg)
{
    tly_helper *h = arg;
    h->fn(h->arg);
    return NULL;
}

static bool helper_start(void *ctx, void (*fn)(void *), void *arg)
{
    tly_helper *h = ctx;
    h->fn = fn;
    h->arg = arg;
    return pthread_create(&h->thread, NULL, helper_main, h) == 0;
}

static void helper_join(void *ctx)
{
    tly_helper *h = ctx;
    (void)pthread_join(h->thread, NULL);
    h->fn = NULL;
    h->arg = NULL;
}

tly_engine_helper tly_helper_of(tly_helper *h)
{
    return (tly_engine_helper){.start = helper_start, .join = helper_join, .ctx = h};
}

static void decode_run(void *split)
{
    tly_engine_read_split_decode(split);
}

uint32_t tly_helper_read_back(tly_helper *h, tly_engine *e, uint32_t min)
{
    tly_engine_read_split *s = tly_engine_read_back_begin(e, min);
    if (s == NULL)
        return tly_engine_read_back(e);
    if (!helper_start(h, decode_run, s)) {
        tly_engine_read_split_decode(s); /* no thread: the same work, in turn */
        return tly_engine_read_back_finish(e, s, NULL, NULL);
    }
    return tly_engine_read_back_finish(e, s, helper_join, h);
}
