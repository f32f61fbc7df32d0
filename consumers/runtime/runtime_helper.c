/*
 * runtime_helper.c — tly_helper.h. A thread per read-back: a catch-up of
 * millions of events reads back a few dozen times, each worth
 * milliseconds of work or more, so a pool would save less than it costs
 * to read.
 */
#include "tly_helper.h"

#include <pthread.h>

#include "tly_limits.h"
#include "tly_os.h"

static void *decode_main(void *split)
{
    tly_engine_read_split_decode(split);
    return NULL;
}

static void join_decode(void *thread)
{
    (void)pthread_join(*(pthread_t *)thread, NULL);
}

uint32_t tly_helper_read_back(tly_engine *e, uint32_t min)
{
    tly_engine_read_split *s = tly_engine_read_back_begin(e, min);
    if (s == NULL)
        return tly_engine_read_back(e);
    pthread_t t;
    if (pthread_create(&t, NULL, decode_main, s) != 0) {
        tly_engine_read_split_decode(s); /* no thread: the same work, in turn */
        return tly_engine_read_back_finish(e, s, NULL, NULL);
    }
    return tly_engine_read_back_finish(e, s, join_decode, &t);
}

uint32_t tly_helper_split_min(void)
{
    return (uint32_t)tly_env_u64("TALLY_CONSUME_READ_SPLIT_MIN", 0, UINT32_MAX,
                                 TLY_CONSUME_READ_SPLIT_MIN);
}

void tly_helper_bound_init(tly_helper_bound *b, uint32_t shards)
{
    uint64_t each =
        tly_env_u64("TALLY_CONSUME_ANON_BYTES", 1, UINT64_MAX, TLY_CONSUME_ANON_BYTES_MAX);
    uint64_t n = shards > 0 ? shards : 1;
    b->max = each <= UINT64_MAX / n ? each * n : UINT64_MAX;
    b->rise = TLY_CONSUME_COMMIT_RISE_FIRST;
}

void tly_helper_bound_committed(tly_helper_bound *b, uint64_t last_anon_rise)
{
    b->rise =
        last_anon_rise > TLY_CONSUME_COMMIT_RISE_MIN ? last_anon_rise : TLY_CONSUME_COMMIT_RISE_MIN;
}

bool tly_helper_bound_reached(const tly_helper_bound *b, uint32_t committers)
{
    uint64_t n = committers > 0 ? committers : 1;
    uint64_t adds = b->rise <= UINT64_MAX / n ? b->rise * n : UINT64_MAX;
    uint64_t room = b->max > adds ? b->max - adds : 0;
    uint64_t anon;
    return tly_os_anon_resident(&anon) && anon >= room;
}
