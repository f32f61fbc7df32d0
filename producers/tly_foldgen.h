/*
 * tly_foldgen.h — the fold generator: a cheap in-process source of load for
 * `tally bench fold` and the consumer tests. It lives with the producers
 * because it writes logs (tly_log_append); consumers only read them.
 *
 * The fold generator (gen_fold.c) writes a seeded, valid event stream as
 * MessagePack, fast enough to build logs of millions of events for the fold
 * benchmark: two programs (a quarterly USD one and a monthly EUR one),
 * enrollments interleaved with sales (some before their partner enrolls, so
 * they are held), returns of recent sales, certifications, the claim life
 * cycle, adjustments, payouts and period closes in order. Business time
 * advances monotonically from 2023-01-01 over about two years, so a log built
 * today never holds a future `at`. Every event validates with
 * tly_event_decode; the same seed and count give the same bytes.
 *
 * It is not `tally gen` (producers/): that one is a realistic simulation
 * writing JSON lines; this one is a cheap in-process source of load.
 */
#ifndef TLY_FOLDGEN_H
#define TLY_FOLDGEN_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

typedef struct tly_rtgen tly_rtgen;

/* Source name the generated events are appended under. */
#define TLY_RTGEN_SOURCE "bench"

/* Creates a generator for `events` events (≥ 1) with the given seed. The
 * partner population scales with the count (one per 50 events, 20 to
 * 10,000). Returns TLY_OK, TLY_USAGE or TLY_NOMEM. */
tly_err tly_rtgen_new(uint64_t seed, uint64_t events, tly_rtgen **out);

/* The same with `partners` partners (1..TLY_GEN_PARTNERS_MAX), or the
 * default population when 0; TLY_USAGE for more. */
tly_err tly_rtgen_new_partners(uint64_t seed, uint64_t events, uint32_t partners, tly_rtgen **out);
void tly_rtgen_free(tly_rtgen *g);

/* Number of partners and the name of partner i (< count) into buf (at
 * least 32 bytes). Every partner eventually enrolls (in the first ~20 % of
 * the stream), so each has views after the whole stream is folded. */
uint32_t tly_rtgen_partner_count(const tly_rtgen *g);
void tly_rtgen_partner_name(uint32_t i, char *buf, size_t cap);

/* Appends the next event's MessagePack map to out. Returns TLY_OK, or
 * TLY_NOT_FOUND when all `events` have been produced. */
tly_err tly_rtgen_next(tly_rtgen *g, msgpack_sbuffer *out);

/* Writes a fresh log of `events` generated events into log_dir with
 * tly_log_append in batches (no fsync: it is test and bench data). The log
 * must not exist or be empty. Returns TLY_OK or the first failure. */
tly_err tly_rtgen_build_log(const char *log_dir, uint64_t seed, uint64_t events);

/* The same with `partners` partners (0: the default population). */
tly_err tly_rtgen_build_log_partners(const char *log_dir, uint64_t seed, uint64_t events,
                                     uint32_t partners);

#endif
