/*
 * audit_views.h — reading a set of shard view stores as one, in the
 * canonical order of schemas/DIGEST.md; internal to the audit (digest, diff).
 *
 * A view set is every shard K-of-N of one N under a views directory, each
 * read in its own LMDB read snapshot (taken at open, held until close). A
 * stream walks one family across all shards in canonical order, merging the
 * shards so that the result does not depend on N:
 *   partner families   one item per partner, in byte order of the id; a
 *                      partner found in two shards is TLY_CORRUPT.
 *   liabilities        one item per program, the shards' shares summed.
 *   exceptions         in order of (seq, canonical doc bytes).
 * Each item's doc is the stored JSON re-serialized canonically (compact,
 * keys sorted, "seq" removed from partner docs).
 */
#ifndef TLY_AUDIT_VIEWS_H
#define TLY_AUDIT_VIEWS_H

#include <stddef.h>
#include <stdint.h>

#include "tly_audit.h"
#include "tly_err.h"

typedef struct tly_audit_viewset tly_audit_viewset;

/* Opens the complete set of shards under views_dir (the most recently
 * written set when several shard counts are present). Returns TLY_OK,
 * TLY_NOT_FOUND, TLY_CORRUPT (a store's M/shard or checkpoint is wrong),
 * TLY_STORAGE or TLY_NOMEM; msg (cap bytes) says why on failure. */
tly_err tly_audit_viewset_open(const char *views_dir, tly_audit_viewset **out, char *msg,
                               size_t cap);
/* A second handle on vs's snapshots, for another thread: its own read
 * transactions on vs's environments, at the same snapshots. TLY_OK,
 * TLY_UNAVAILABLE when a store has moved on since vs was opened (a writer
 * committed), TLY_STORAGE or TLY_NOMEM. Close it before vs. */
tly_err tly_audit_viewset_twin(const tly_audit_viewset *vs, tly_audit_viewset **out);
void tly_audit_viewset_close(tly_audit_viewset *vs);

/* Shard count N and the checkpoint of shard k (< N) in its snapshot. */
uint32_t tly_audit_viewset_shards(const tly_audit_viewset *vs);
uint64_t tly_audit_viewset_checkpoint(const tly_audit_viewset *vs, uint32_t k);
/* The lowest and the highest checkpoint of its shards: the seq the set
 * stands at as a whole, and whether every shard stands there. */
void tly_audit_viewset_seqs(const tly_audit_viewset *vs, uint64_t *lowest, uint64_t *highest);

/* One item of a stream. id: partner or program name, or u64be(seq) for an
 * exception. Both buffers are owned by the stream and live until the next
 * tly_audit_stream_next or close. doc is NUL-terminated. */
typedef struct tly_audit_item {
    const uint8_t *id;
    size_t id_len;
    const char *doc;
    size_t doc_len;
} tly_audit_item;

typedef struct tly_audit_stream tly_audit_stream;

/* Starts a stream over family f of vs (vs must outlive it). */
tly_err tly_audit_stream_open(tly_audit_viewset *vs, tly_audit_family f, tly_audit_stream **out);

/* The next item: TLY_OK, TLY_NOT_FOUND at the end, TLY_CORRUPT (msg says
 * why: a doc that is not a JSON object, a partner in two shards, shares
 * that disagree), TLY_OVERFLOW, TLY_STORAGE or TLY_NOMEM. */
tly_err tly_audit_stream_next(tly_audit_stream *s, tly_audit_item *item, char *msg, size_t cap);
void tly_audit_stream_close(tly_audit_stream *s);

/* The work on one family, on one thread: sets are that thread's handles on
 * the caller's view sets, in the caller's order (the sets themselves, or
 * twins at the same snapshots). */
typedef tly_err (*tly_audit_family_fn)(void *ctx, tly_audit_family f,
                                       tly_audit_viewset *const *sets);

/* Calls fn once for every family, on up to one thread per online core
 * (TLY_AUDIT_FAMILY_THREADS_MAX), this one among them: each takes the next
 * family not yet taken, reading twins of the nsets sets (fewer threads
 * when twins cannot be had: the same calls, fewer at once). err[f] gets
 * family f's result. fn keeps what it finds per family, for the caller to
 * read in family order. nsets is at most TLY_AUDIT_VIEWSETS_MAX. */
void tly_audit_each_family(tly_audit_viewset *const *sets, uint32_t nsets, tly_audit_family_fn fn,
                           void *ctx, tly_err err[TLY_AUDIT_FAMILY_COUNT]);

#endif
