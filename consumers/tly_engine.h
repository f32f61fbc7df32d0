/*
 * tly_engine.h — the program engine: a pure, deterministic fold of the log
 * into MDF balances, rebate accruals, tier status and exceptions
 * (SPEC section 6 and 9).
 *
 * The engine holds its state in memory. The consumer runtime feeds it records
 * in seq order, and after each batch asks it to flush what changed into the
 * shard's view store (through a key/value sink, in the same LMDB transaction
 * as the checkpoint). On restart the runtime hands every stored state entry
 * back through tly_engine_load, and folding resumes at the checkpoint.
 *
 * Sharding: an engine for shard K of N owns the partners whose
 * tly_engine_shard_of(partner, N) == K. It still reads every record (global
 * events such as program and close apply to all shards, and the small global
 * facts needed to decide returns against another partner's sale are kept by
 * every shard), so results do not depend on N. Exceptions that name no
 * partner are kept by shard 0 only.
 *
 * Stored keys (all in the shard's "views" database; values are the bytes
 * written through the sink):
 *   "S/..."               engine state, opaque, read back by tly_engine_load
 *   "V/b/<partner>"       balance view, JSON text (SPEC 8 without "seq")
 *   "V/r/<partner>"       rebate view, JSON text (without "seq")
 *   "V/t/<partner>"       tier view, JSON text (without "seq")
 *   "V/c/<partner>"       claims view, JSON text (without "seq")
 *   "V/l/<program>"       this shard's share of liabilities: JSON object
 *                         {"program","currency","mdf_available","mdf_pending",
 *                          "mdf_approved","rebate_accrued_open","rebate_payable"}
 *                         (sum the shares of all shards for the answer)
 *   "X/<u64be seq><u32be n>" one exception, JSON {"seq","kind","partner","detail"}
 *                         ("partner" null when none); n orders the exceptions
 *                         of one seq. Append-only.
 * The runtime adds "M/..." keys of its own (checkpoint); the engine never
 * writes them.
 *
 * State layout (engine_store.c): "S/1/<program>", "S/2/<sale key>" (every
 * shard keeps the registry of all sales: partner, moved money or not),
 * "S/3/<claim key>", "S/4/<partner>"; MessagePack arrays led by a format
 * number. Key order is load order: programs, sales, claims, partners.
 */
#ifndef TLY_ENGINE_H
#define TLY_ENGINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_event.h"
#include "tly_log.h"

typedef struct tly_engine tly_engine;

/* Stable shard of a partner id: FNV-1a 64 of the bytes, modulo shard_count. */
uint32_t tly_engine_shard_of(const char *partner, size_t len, uint32_t shard_count);

/* Creates an empty engine for shard `shard` of `shard_count` (≥ 1). */
tly_err tly_engine_new(uint32_t shard, uint32_t shard_count, tly_engine **out);
void tly_engine_free(tly_engine *e);

/*
 * Folds one record whose event has been decoded into ev. Records must come
 * in seq order without gaps (rec->seq == tly_engine_seq(e) + 1); otherwise
 * TLY_USAGE and nothing changes. A sale whose (source, id) was already
 * folded (impossible in a log the ledger wrote) is also TLY_USAGE. Business outcomes are never errors: they are
 * exceptions in the views. Returns TLY_OK, TLY_NOMEM or TLY_OVERFLOW (money
 * arithmetic left int64: the state is then unusable and the consumer stops).
 * In debug builds the MDF invariant of SPEC section 6 is asserted after every
 * event.
 */
tly_err tly_engine_apply(tly_engine *e, const tly_record *rec, const tly_event *ev);

/* Seq of the last record folded (0 when none). */
uint64_t tly_engine_seq(const tly_engine *e);

/* Receives key/value pairs from tly_engine_flush. Returns TLY_OK to go on. */
typedef tly_err (*tly_kv_put_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                                 size_t val_len);

/* Writes everything that changed since the previous flush (state and views)
 * through put, then forgets the changes. On error the engine keeps the
 * changes marked, so a retry of the whole batch writes them again. */
tly_err tly_engine_flush(tly_engine *e, tly_kv_put_fn put, void *ctx);

/* Restores one "S/..." entry written by an earlier flush. Call for every such
 * key, in key order, before the first apply; then tly_engine_set_seq.
 * Returns TLY_OK, TLY_NOMEM or TLY_CORRUPT (not a value this engine wrote,
 * or written by another shard layout).
 * Optionally also pass the "X/..." entries (after the "S/" ones, as key
 * order gives): they restore the list tly_engine_exceptions returns. Without
 * them that list holds only exceptions recorded after the restart; the
 * stored "X/" keys stay complete either way. */
tly_err tly_engine_load(tly_engine *e, const void *key, size_t key_len, const void *val,
                        size_t val_len);
void tly_engine_set_seq(tly_engine *e, uint64_t seq);

/* The section 8 answer for a partner owned by this shard, with "seq" set to
 * tly_engine_seq. view is one of 'b' (balance), 'r' (rebate), 't' (tier),
 * 'c' (claims). Returns a new reference, or NULL for an unknown partner. */
json_t *tly_engine_view(const tly_engine *e, char view, const char *partner);

/* Every exception this shard has recorded, ordered by (seq, n) like the
 * "X/" keys (an exception of a held event, raised at enrollment, sits at its
 * own seq [D7]), as the "exceptions" array of section 8 (new reference). Liabilities share: one object per
 * program as stored under "V/l/" (new reference, array ordered by program). */
json_t *tly_engine_exceptions(const tly_engine *e);
json_t *tly_engine_liabilities(const tly_engine *e);

/* Ids of the partners this shard owns, sorted (new reference, JSON array). */
json_t *tly_engine_partners(const tly_engine *e);

#endif
