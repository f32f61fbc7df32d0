/* runtime_ahead.c — decode-ahead thread for `tally consume`; see tly_ahead.h. */
#include "tly_ahead.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "tly_limits.h"

struct tly_ahead {
    tly_log_reader *rd;
    uint32_t max;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tly_ahead_item (*items)[TLY_AHEAD_CHUNK_RECORDS]; /* TLY_AHEAD_CHUNKS chunks */
    uint32_t fill[TLY_AHEAD_CHUNKS];                  /* items in each full chunk */
    /* under mu */
    uint64_t produced, consumed; /* chunks */
    bool done;                   /* the reader thread wrote its last chunk */
    bool stop;                   /* the caller is finished with every item */
    tly_err end_err;             /* why it ended: TLY_NOT_FOUND or the reader's error */
    /* the caller's own */
    bool holding;
    uint32_t pos;
    /* the reader thread's own */
    size_t read_bytes; /* of records since the log's pages were last released */
};

/* Fills one chunk; returns its item count and sets *end when the pass is over. */
static uint32_t fill_chunk(tly_ahead *a, tly_ahead_item *chunk, uint32_t *left, bool *end,
                           tly_err *why)
{
    uint32_t n = 0;
    while (n<TLY_AHEAD_CHUNK_RECORDS && * left> 0) {
        tly_ahead_item *it = &chunk[n];
        tly_err err = tly_log_reader_next(a->rd, &it->rec);
        if (err != TLY_OK) {
            *end = true;
            *why = err;
            return n;
        }
        it->fe.field[0] = it->fe.message[0] = '\0';
        it->err = tly_event_decode(it->rec.event, it->rec.event_len, it->rec.recorded_ms, &it->ev,
                                   &it->fe);
        it->partner_hash = it->err == TLY_OK ? tly_engine_partner_hash(&it->ev) : 0;
        a->read_bytes += it->rec.raw_len;
        n++;
        --*left;
    }
    /* What the fold has passed stops counting in the consumer's RSS: a
     * pass reads far more of the log's map than it keeps. */
    if (a->read_bytes >= TLY_CONSUME_LOG_RESIDENT_BYTES_MAX) {
        tly_log_reader_release(a->rd);
        a->read_bytes = 0;
    }
    if (*left == 0) {
        *end = true;
        *why = TLY_NOT_FOUND;
    }
    return n;
}

static void *ahead_main(void *arg)
{
    tly_ahead *a = arg;
    uint32_t left = a->max;
    bool end = false;
    tly_err why = TLY_NOT_FOUND;
    while (!end) {
        pthread_mutex_lock(&a->mu);
        while (a->produced - a->consumed == TLY_AHEAD_CHUNKS && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        bool stop = a->stop;
        uint64_t slot = a->produced % TLY_AHEAD_CHUNKS;
        pthread_mutex_unlock(&a->mu);
        if (stop)
            break;
        uint32_t n = fill_chunk(a, a->items[slot], &left, &end, &why);
        pthread_mutex_lock(&a->mu);
        a->fill[slot] = n;
        if (n > 0)
            a->produced++;
        if (end) {
            a->done = true;
            a->end_err = why;
        }
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
    }
    return NULL;
}

tly_err tly_ahead_start(tly_log *log, uint64_t from_seq, uint32_t max, tly_ahead **out)
{
    tly_ahead *a = calloc(1, sizeof *a);
    if (!a)
        return TLY_NOMEM;
    a->items = calloc(TLY_AHEAD_CHUNKS, sizeof *a->items);
    a->max = max;
    /* The log is opened with MDB_NOTLS, so a reader opened here may be used
     * by the thread and closed here again. */
    tly_err err = a->items ? tly_log_reader_open(log, from_seq, &a->rd) : TLY_NOMEM;
    if (err == TLY_OK) {
        pthread_mutex_init(&a->mu, NULL);
        pthread_cond_init(&a->cv, NULL);
        if (pthread_create(&a->thread, NULL, ahead_main, a) != 0) {
            pthread_mutex_destroy(&a->mu);
            pthread_cond_destroy(&a->cv);
            tly_log_reader_close(a->rd);
            err = TLY_NOMEM;
        }
    }
    if (err != TLY_OK) {
        free(a->items);
        free(a);
        return err;
    }
    *out = a;
    return TLY_OK;
}

tly_err tly_ahead_next(tly_ahead *a, const tly_ahead_item **item)
{
    uint64_t slot = a->consumed % TLY_AHEAD_CHUNKS;
    if (a->holding && a->pos < a->fill[slot]) {
        *item = &a->items[slot][a->pos++];
        return TLY_OK;
    }
    pthread_mutex_lock(&a->mu);
    if (a->holding) {
        a->consumed++; /* that chunk is free for the reader again */
        a->holding = false;
        /* The reader waits only with every chunk full: woken once half of
         * them are free, it fills several in a row per wake instead of one.
         * Folding is the slower side, so the reader mostly waits: folding
         * the 10M log on one shard switched threads 155,000 times with a
         * wake per chunk, 37,000 times so (in the same time, within the
         * noise). The crossing of half always comes after the reader
         * began to wait on a full queue, so no wake is lost. */
        if (a->produced - a->consumed <= TLY_AHEAD_CHUNKS / 2)
            pthread_cond_broadcast(&a->cv);
    }
    while (a->produced == a->consumed && !a->done)
        pthread_cond_wait(&a->cv, &a->mu);
    tly_err err = TLY_OK;
    if (a->produced == a->consumed) {
        err = a->end_err;
    } else {
        a->holding = true;
        a->pos = 0;
        slot = a->consumed % TLY_AHEAD_CHUNKS;
    }
    pthread_mutex_unlock(&a->mu);
    if (err == TLY_OK)
        *item = &a->items[slot][a->pos++];
    return err;
}

const tly_ahead_item *tly_ahead_peek(const tly_ahead *a, uint32_t k)
{
    uint64_t slot = a->consumed % TLY_AHEAD_CHUNKS;
    if (!a->holding || k >= a->fill[slot] - a->pos)
        return NULL;
    return &a->items[slot][a->pos + k];
}

void tly_ahead_stop(tly_ahead *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    /* A pass (one batch) shorter than TLY_CONSUME_LOG_RESIDENT_BYTES_MAX
     * never reached the release above, and the map outlives the pass: the
     * pages it read (and those the fold's look-ups of other shards' sales
     * read) would stay counted in the consumer's RSS batch after batch
     * (3M events at --batch 100000: 368 MB of the log's map resident, 30 MB
     * at 500000). */
    if (a->read_bytes > 0)
        tly_log_reader_release(a->rd);
    tly_log_reader_close(a->rd);
    free(a->items);
    free(a);
}

void tly_ahead_prefetch(const tly_ahead *a, const tly_engine *e)
{
    for (uint32_t k = TLY_ENGINE_PREFETCH_AHEAD; k > 0; k--) {
        const tly_ahead_item *next = tly_ahead_peek(a, k - 1);
        if (next != NULL && next->err == TLY_OK)
            tly_engine_prefetch(e, &next->ev, next->partner_hash, k);
    }
}
