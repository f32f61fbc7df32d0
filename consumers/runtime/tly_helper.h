/*
 * tly_helper.h — the second thread of a read-back (tly_engine_read_back_begin):
 * with many partners to read back, a thread started for the purpose
 * decodes half of their records while the caller's thread reads the other
 * half. The engine starts no thread itself; `tally consume` and `tally
 * audit replay` read back through here. Both also end their batches at the
 * same memory bound (tly_helper_bound).
 */
#ifndef TLY_HELPER_H
#define TLY_HELPER_H

#include <stdbool.h>
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

/* The consumers' memory bound (TLY_CONSUME_ANON_BYTES_MAX): a batch ends
 * once the process's resident anonymous memory (tly_os_anon_resident) and
 * what its commit is expected to add reach it. */
typedef struct tly_helper_bound {
    uint64_t max;  /* the process's bound, bytes */
    uint64_t rise; /* what the next commit is expected to add */
} tly_helper_bound;

/* A bound for a process folding `shards` shards (a consumer 1, a replay
 * all of its --shards): TLY_CONSUME_ANON_BYTES_MAX each, or
 * $TALLY_CONSUME_ANON_BYTES each when set (tests: 1 ends every batch at
 * its first check); a first commit is expected to add
 * TLY_CONSUME_COMMIT_RISE_FIRST. Read it once per run. */
void tly_helper_bound_init(tly_helper_bound *b, uint32_t shards);

/* After a commit: the next is expected to add what this one added
 * (tly_views_stats' last_anon_rise; for several stores committed in
 * turn, the largest), at least TLY_CONSUME_COMMIT_RISE_MIN. */
void tly_helper_bound_committed(tly_helper_bound *b, uint64_t last_anon_rise);

/* True when the process's resident anonymous memory has reached the bound
 * less what `committers` commits of this size at once would add (a
 * replay's threads commit independently: each counts all of them); false
 * when the memory cannot be read. */
bool tly_helper_bound_reached(const tly_helper_bound *b, uint32_t committers);

#endif
