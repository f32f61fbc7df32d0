/*
 * tly_ahead.h — decode-ahead for a consumer folding the local log.
 *
 * A second thread reads the records of one pass from the log and decodes
 * their events while the caller folds the ones before, so on a machine with
 * a spare core the fold never waits for reading and decoding (about a fifth
 * of a consumer's work). Records come back in seq order, each exactly once.
 *
 * Handoff is by chunks of TLY_AHEAD_CHUNK_RECORDS, so the two threads meet
 * on a mutex once per chunk, not once per record.
 */
#ifndef TLY_AHEAD_H
#define TLY_AHEAD_H

#include <stdint.h>

#include "tly_engine.h"
#include "tly_err.h"
#include "tly_event.h"
#include "tly_log.h"

/* Records handed over at a time, and chunks decoded ahead at most: bounds
 * the memory (each item holds a decoded event of about 1.2 KB) and how far
 * the reader runs ahead of the fold. */
#define TLY_AHEAD_CHUNK_RECORDS 64u
#define TLY_AHEAD_CHUNKS 8u

/* One record and its decoded event. Pointers borrow from the reader's
 * snapshot: valid until the next tly_ahead_next or tly_ahead_stop. */
typedef struct tly_ahead_item {
    tly_record rec;
    tly_event ev;
    tly_err err;           /* tly_event_decode's result for ev */
    tly_field_error fe;    /* when err is not TLY_OK */
    uint64_t partner_hash; /* tly_engine_partner_hash of ev, once it decoded */
} tly_ahead_item;

typedef struct tly_ahead tly_ahead;

/* Opens a reader of log at from_seq (in one snapshot) and starts the
 * thread, which reads at most max records. Returns TLY_OK, the reader's
 * open error, or TLY_NOMEM. */
tly_err tly_ahead_start(tly_log *log, uint64_t from_seq, uint32_t max, tly_ahead **out);

/* The next record: TLY_OK with *item, TLY_NOT_FOUND when the snapshot or max
 * is exhausted, or the reader's error (TLY_CORRUPT) once every record before
 * it has been returned. */
tly_err tly_ahead_next(tly_ahead *a, const tly_ahead_item **item);

/* The item k places after the one tly_ahead_next returned last (k = 0: the
 * next), when it lies in the same handed-over chunk; NULL otherwise (before
 * the first tly_ahead_next, or past the chunk). A look ahead for hints
 * (tly_engine_prefetch): it moves nothing, and the item is valid as the
 * last one returned is. */
const tly_ahead_item *tly_ahead_peek(const tly_ahead *a, uint32_t k);

/* Tells engine e of the partners of the next TLY_ENGINE_PREFETCH_AHEAD
 * records, each at its distance (tly_engine_prefetch), so that they are
 * on their way to the CPU's cache while the one tly_ahead_next returned
 * last folds: the consumer's and the replay's fold loop call it before
 * each apply. A hint: it changes nothing. */
void tly_ahead_prefetch(const tly_ahead *a, const tly_engine *e);

/* Stops the thread and closes the reader; every item dies. NULL is a no-op. */
void tly_ahead_stop(tly_ahead *a);

#endif
