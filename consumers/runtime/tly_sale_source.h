/*
 * tly_sale_source.h — an engine's sale source over a local log
 * (tly_engine_set_sale_source): the sale (source, id) as the log holds it.
 *
 * The consumer (tly_consume.c) and the replay (audit_replay.c) both fold
 * with one, so that a shard stores its own partners' sales only, under
 * their seq, and reads another shard's from the log when a return names
 * it: a replay's stores are laid out as the consumers' are, and fold as
 * fast.
 */
#ifndef TLY_SALE_SOURCE_H
#define TLY_SALE_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "tly_engine.h"
#include "tly_err.h"
#include "tly_event.h"
#include "tly_limits.h"
#include "tly_log.h"

/* One engine's look-ups: what the last one read (its partner id, which the
 * engine borrows until the next call) and how many were made since the
 * log's map was last released. Zeroed is ready. */
typedef struct tly_sale_source {
    tly_event ev;
    char partner[TLY_NAME_BYTES_MAX];
    uint32_t lookups;
} tly_sale_source;

/* The sale (source, id) of log as a tly_engine_sale_fn answers: TLY_OK
 * with *found false when the log has no record of that (source, id) or it
 * is not a sale; TLY_CORRUPT when the record does not decode; a read
 * error as it is. Every TLY_CONSUME_LOG_LOOKUPS_RELEASE look-ups the
 * log's mapped pages are released (each reads a random leaf of its ids
 * index). */
tly_err tly_sale_source_find(tly_sale_source *s, tly_log *log, tly_str source, tly_str id,
                             bool *found, tly_engine_sale *out);

#endif
