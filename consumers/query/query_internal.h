/*
 * query_internal.h — what the files of the query library share and nobody
 * else may see.
 */
#ifndef TLY_QUERY_INTERNAL_H
#define TLY_QUERY_INTERNAL_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_engine.h"
#include "tly_err.h"
#include "tly_limits.h"

/* One value of a document the fast path read (query_fast.c). */
typedef struct tly__qnode tly__qnode;

/* Scratch space of the fast path: TLY_QUERY_FAST_VALUES_MAX values, reused
 * by every request of one store (one thread at a time, as the store). */
typedef struct tly__qfast {
    tly__qnode *nodes;
    uint32_t cap;
} tly__qfast;

/* Allocates / frees the scratch space. tly__qfast_init: false when out of
 * memory (the store then always takes the jansson way). */
bool tly__qfast_init(tly__qfast *f);
void tly__qfast_free(tly__qfast *f);

/* The fast path's reader for the list answers (query_finance_fast.c):
 * reads the document doc[0..len) into f's scratch (over what it read
 * before) and returns its top value, an object; 0 when the document is
 * not an object of the subset it reads (the caller then takes the jansson
 * way, which also says what is wrong with a bad document). The subset is
 * the one the engine writes: compact (no whitespace), strings without
 * escapes, integers of at most 18 digits, no duplicate keys, nested at
 * most TLY_QUERY_FAST_DEPTH_MAX levels, at most TLY_QUERY_FAST_VALUES_MAX
 * values. */
uint32_t tly__qfast_read(tly__qfast *f, const char *doc, size_t len);
/* The value of member name of object obj; 0 when absent (or obj is not an
 * object), as json_object_get. */
uint32_t tly__qfast_member(const tly__qfast *f, uint32_t obj, const char *name);
/* String value v's bytes (inside the document; no NUL among them): false
 * when v is 0 or not a string. */
bool tly__qfast_str(const tly__qfast *f, uint32_t v, const char **s, size_t *len);
/* Value v as json_integer_value reads it: 0 unless an integer. */
int64_t tly__qfast_int(const tly__qfast *f, uint32_t v);
/* Appends value v to out as tly_query_pack packs jansson's reading of it
 * (the same bytes, written straight into the buffer); false when out of
 * memory (out then holds part of it). */
bool tly__qfast_put(const tly__qfast *f, uint32_t v, msgpack_sbuffer *out);

/* ---- answers over every shard (tly_query.c runs them, query_finance.c
 * writes the section 11 ones) ---- */

/* A consistent snapshot of every shard's view store. */
typedef struct tly__qsnaps tly__qsnaps;

/* One stored entry under a scanned prefix. */
typedef tly_err (*tly__qvisit)(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen);
/* Calls visit for every entry under prefix, shard after shard, each in key
 * order; stops at the first error. */
tly_err tly__qscan(const tly__qsnaps *ss, const void *prefix, size_t plen, tly__qvisit visit,
                   void *ctx);
/* As tly__qscan, but each shard from the first key after `after` (under
 * prefix; after NULL: from the prefix), and a shard's scan ends once *kept
 * reaches limit (the visitor counts what it keeps; *kept is set to 0
 * before each shard). */
tly_err tly__qscan_after(const tly__qsnaps *ss, const void *prefix, size_t plen, const void *after,
                         size_t alen, uint32_t *kept, uint32_t limit, tly__qvisit visit, void *ctx);
/* The filters of a partners request, NULL each when absent: program, tier
 * and kind equal, search an ASCII case-insensitive substring of the id or
 * the name (kept in lower case). */
typedef struct tly__pfilter {
    const char *program, *tier, *kind;
    const char *search; /* lowered, or NULL */
    size_t search_len;
    char lowered[TLY_NAME_BYTES_MAX + 1];
} tly__pfilter;
/* The filters of a request (each a checked option: tly__qopt_str). */
void tly__pfilter_init(tly__pfilter *f, const char *program, const char *tier, const char *kind,
                       const char *search);
/* Whether a row whose record's head is h passes filter ctx (a tly__pfilter,
 * NULL: every row), before the row is rendered: tly_view_row_keep. */
bool tly__pfilter_keeps(void *ctx, const tly_view_row_head *h);
/* As tly__qscan_after over the rows of `tally partners`: each shard's
 * enrolled partners in id order (their records, TLY_ENGINE_PARTNER_PREFIX
 * ‖ id, are the keys the visitor gets) from the first after `after` (NULL:
 * the first), each with its row rendered from the record (JSON text, the
 * shard's reader's: valid until the visitor returns). Rows that filter
 * (NULL: none) refuses on the record's head are not rendered nor given;
 * the visitor may filter the rows it gets again. */
tly_err tly__qscan_partners(const tly__qsnaps *ss, const tly__pfilter *filter, const char *after,
                            uint32_t *kept, uint32_t limit, tly__qvisit visit, void *ctx);
/* The reply's "seq" (the lowest checkpoint [D8]) and whether the shards'
 * checkpoints differ ("shards_differ"), as tly__qreply gives them. */
void tly__qsnaps_seq(const tly__qsnaps *ss, uint64_t *seq, bool *differ);
/* A cross-shard reply {"seq": lowest checkpoint [D8]} (and "shards_differ"
 * when the shards' checkpoints differ); NULL when out of memory. */
json_t *tly__qreply(const tly__qsnaps *ss);
/* An error reply {"error","message","field"}. */
json_t *tly__qerr(tly_err err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The section 11 answers (query_finance.c): req is the request map; the
 * reply is an answer or an error reply, NULL when out of memory. */
json_t *tly__answer_partners(const tly__qsnaps *ss, const json_t *req);
json_t *tly__answer_report(const tly__qsnaps *ss, const json_t *req);
json_t *tly__answer_expiring(const tly__qsnaps *ss, const json_t *req);
json_t *tly__answer_journal(const tly__qsnaps *ss, const json_t *req);
/* A string option of a request (tly_query.c): NULL when absent; *bad (an
 * error reply) when it is not a string of 1..TLY_NAME_BYTES_MAX bytes
 * without NUL. */
const char *tly__qopt_str(const json_t *req, const char *field, json_t **bad);
/* The page size of a partners request ("max", by default and at most
 * TLY_QUERY_PARTNERS_PAGE_MAX); *bad when it is out of range. */
uint32_t tly__qpage_max(const json_t *req, json_t **bad);
/* The fast way to the encoded reply of a partners or expiring request
 * (query_finance_fast.c): into out (empty on entry) exactly the bytes
 * tly_query_reply_encode gives for tly__answer_partners' or
 * tly__answer_expiring's answer over the same snapshots; false (out empty)
 * when it cannot tell them (a bad request, an error answer, a stored row
 * outside the subset tly__qfast_read reads, a reply over the frame), and
 * the caller takes the jansson way. */
bool tly__qfast_partners(tly__qfast *f, const tly__qsnaps *ss, const json_t *req,
                         msgpack_sbuffer *out);
bool tly__qfast_expiring(tly__qfast *f, const tly__qsnaps *ss, const json_t *req,
                         msgpack_sbuffer *out);
/* The ids nearest to an unknown partner id (edit distance, at most
 * TLY_QUERY_SUGGESTIONS_MAX, nearest first): a JSON array, maybe empty. */
json_t *tly__suggest_partners(const tly__qsnaps *ss, const char *partner);

#endif
