/*
 * tly_record.h — one stored log record (SPEC section 3): its decoded form,
 * its MessagePack encoding and the chain hash. The ledger writes records,
 * every reader decodes them; both use this one definition.
 */
#ifndef TLY_RECORD_H
#define TLY_RECORD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_event.h"

#define TLY_HASH_BYTES 32u

/* One stored record, decoded. Pointers borrow from the buffer it was decoded
 * from (for a reader: valid until tly_log_reader_close). */
typedef struct tly_record {
    uint64_t seq;
    int64_t recorded_ms;
    tly_str source;
    const uint8_t *event; /* the event's MessagePack bytes exactly as accepted */
    size_t event_len;
    const uint8_t *hash; /* TLY_HASH_BYTES */
    const uint8_t *raw;  /* the whole stored value */
    size_t raw_len;
} tly_record;

/* Decodes a stored value: exactly an array of 5 [seq (uint ≥ 1),
 * recorded_ms (int), source (str, 1..TLY_SOURCE_BYTES_MAX bytes), event
 * (bin), hash (bin of exactly TLY_HASH_BYTES)] and no trailing bytes.
 * Returns TLY_OK or TLY_CORRUPT; rec is written only on TLY_OK. */
tly_err tly_record_decode(const void *buf, size_t len, tly_record *rec);

/* Appends the stored encoding of a record to out (canonical MessagePack:
 * shortest forms, as msgpack-c packs them). TLY_OK or TLY_NOMEM. */
tly_err tly_record_encode(msgpack_sbuffer *out, uint64_t seq, int64_t recorded_ms, tly_str source,
                          const void *event, size_t event_len, const uint8_t hash[TLY_HASH_BYTES]);

/* Computes the chain hash of a record from the previous hash (SPEC section
 * 3). recorded_ms enters as its two's-complement u64be. source.len must
 * be ≤ UINT16_MAX (asserted). No allocation. */
void tly_chain_hash(const uint8_t prev[TLY_HASH_BYTES], uint64_t seq, int64_t recorded_ms,
                    tly_str source, const void *event, size_t event_len,
                    uint8_t out[TLY_HASH_BYTES]);

#endif
