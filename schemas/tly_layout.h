/*
 * tly_layout.h — the layout of a data directory, named in one place.
 *
 *   DATA/log/                 the log's LMDB environment (ledger/tly_log.h)
 *   DATA/log/writer.lock      flock of the single writer
 *   DATA/views/               the view stores of the consumers
 *   DATA/views/K-of-N/        shard K of N (consumers/views/tly_views.h)
 *   DATA/views/K-of-N/consumer.lock   flock of that shard's consumer
 *   DATA/tally.pid            `tally up`'s supervisor, under an flock
 *   DATA/endpoints.json       the endpoints `tally up` serves DATA on, which
 *                             client commands given DATA talk to (tly_cli.h)
 *   DATA/asof/                what `--as-of-close` keeps (consumers/audit/
 *                             audit_asof.c), all of it rebuilt on demand:
 *   DATA/asof/closes.json     the index (program, period) -> seq of the close
 *   DATA/asof/seq-S/          a views directory: the log replayed to seq S
 *   DATA/asof/build-S-PID/    a replay being built (renamed to seq-S when done)
 *   <env>/data.mdb            the data file of any LMDB environment
 *   <env>/lock.mdb            its lock file (readers never create it)
 *
 * A "views directory" (what --views names, and what `audit replay --out`
 * writes) holds K-of-N stores directly, like DATA/views.
 *
 * Every function writes a NUL-terminated path into buf (cap bytes) and
 * returns TLY_OK, or TLY_USAGE when it would not fit (buf is then empty).
 */
#ifndef TLY_LAYOUT_H
#define TLY_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

#define TLY_LAYOUT_LOG "log"
#define TLY_LAYOUT_VIEWS "views"
#define TLY_LAYOUT_PID "tally.pid"
#define TLY_LAYOUT_ENDPOINTS "endpoints.json"
#define TLY_LAYOUT_WRITER_LOCK "writer.lock"
#define TLY_LAYOUT_CONSUMER_LOCK "consumer.lock"
#define TLY_LAYOUT_LMDB_DATA "data.mdb"
#define TLY_LAYOUT_LMDB_LOCK "lock.mdb"
#define TLY_LAYOUT_ASOF "asof"
#define TLY_LAYOUT_ASOF_INDEX "closes.json"

/* dir/name. An empty dir is TLY_USAGE (buf ""): joined it would name a path
 * at the root of the file system. */
tly_err tly_layout_join(const char *dir, const char *name, char *buf, size_t cap);

/* DATA/log, DATA/views and DATA/tally.pid. */
tly_err tly_layout_log(const char *data, char *buf, size_t cap);
tly_err tly_layout_views(const char *data, char *buf, size_t cap);
tly_err tly_layout_pid(const char *data, char *buf, size_t cap);

/* DATA/endpoints.json. */
tly_err tly_layout_endpoints(const char *data, char *buf, size_t cap);

/* VIEWS/K-of-N: shard k of n in a views directory (an empty one is
 * TLY_USAGE, as for tly_layout_join). */
tly_err tly_layout_shard(const char *views_dir, uint32_t k, uint32_t n, char *buf, size_t cap);

/* The name "K-of-N" alone. */
tly_err tly_layout_shard_name(uint32_t k, uint32_t n, char *buf, size_t cap);

/* Parses a shard store's name "K-of-N": plain decimals, no signs, leading
 * zeros or trailing bytes, 1 <= N <= TLY_SHARDS_MAX and K < N. */
bool tly_layout_shard_parse(const char *name, uint32_t *k, uint32_t *n);

/* Calls visit(ctx, k, n) for each entry of views_dir named as a shard
 * store (tly_layout_shard_parse), in directory order, until visit returns
 * false, reading at most max entries besides "." and "..". TLY_NOT_FOUND
 * when views_dir cannot be read; TLY_TOO_LARGE when it holds more than max
 * (a store may be among those not read: the caller refuses the directory
 * rather than use another set or say there is none); else TLY_OK.
 * *entries (NULL: not wanted) gets the entries read, max + 1 when more. */
tly_err tly_layout_each_shard(const char *views_dir, uint32_t max,
                              bool (*visit)(void *ctx, uint32_t k, uint32_t n), void *ctx,
                              uint32_t *entries);

/* What a reader says of a views directory tly_layout_each_shard found
 * crowded (a printf format of the directory and max). */
#define TLY_LAYOUT_CROWDED_FMT                                                                     \
    "%s holds more than %u entries (a views directory holds its shard stores K-of-N)"

/* DATA/asof, DATA/asof/closes.json, DATA/asof/seq-S and DATA/asof/build-S-PID. */
tly_err tly_layout_asof(const char *data, char *buf, size_t cap);
tly_err tly_layout_asof_index(const char *data, char *buf, size_t cap);
tly_err tly_layout_asof_views(const char *data, uint64_t seq, char *buf, size_t cap);
tly_err tly_layout_asof_build(const char *data, uint64_t seq, long pid, char *buf, size_t cap);

#endif
