/*
 * tly_engine.h — the program engine: a pure, deterministic fold of the log
 * into MDF balances, rebate accruals, tier status and exceptions
 * (SPEC section 6 and 9).
 *
 * The consumer runtime feeds the engine records in seq order, and after
 * each batch asks it to flush what changed into the shard's view store
 * (through a key/value sink, in the same LMDB transaction as the
 * checkpoint). The engine keeps in memory only what is global and small
 * (the programs); partners, claims and sales are read from the view store
 * when an event touches them (tly_engine_set_store: a getter the runtime
 * provides) and kept in a bounded cache. On restart the runtime hands the
 * stored programs back through tly_engine_load and folding resumes at the
 * checkpoint: restart time and memory do not grow with the log. Without a
 * store the engine keeps its whole state in memory (tests, `tally
 * explain`), and tly_engine_load takes every stored entry.
 *
 * Sharding: an engine for shard K of N owns the partners whose
 * tly_engine_shard_of(partner, N) == K. It still reads every record (global
 * events such as program and close apply to all shards), so results do not
 * depend on N: every shard registers every partner's enrollment and,
 * unless it reads them from the log (tly_engine_set_sale_source), every
 * sale in a compact record (its partner and currency), which is what a
 * return needs to know of another shard's partner's sale ([S1] [S2]); the
 * money state of a partner, its claims and its sales' money facts live in
 * the owning shard only. Exceptions that name no partner are kept by shard
 * 0 only.
 *
 * Stored keys (all in the shard's "views" database; values are the bytes
 * written through the sink):
 *   "S/..."               engine state, opaque, read back by the engine;
 *                         a partner's balance, rebate, tier and claims
 *                         documents and its row of the partner list are
 *                         rendered from it when read (tly_view_reader
 *                         below), not stored
 *   "V/l/<program>"       this shard's share of liabilities: JSON object
 *                         {"program","currency","mdf_available","mdf_pending",
 *                          "mdf_approved","rebate_accrued_open","rebate_payable"}
 *                         (sum the shares of all shards for the answer)
 *   "X/<u64be seq><u32be n>" one exception, JSON {"seq","kind","partner","detail"}
 *                         ("partner" null when none; "kind" a name of
 *                         tly_xkind.h); n orders the exceptions of one seq.
 *                         Append-only.
 * The runtime adds "M/..." keys of its own (checkpoint); the engine never
 * writes them.
 *
 * State layout (engine_records.c): "S/1/<program>" (rules, periods, this
 * shard's liability sums), "S/2/<sale key>" (a sale: its partner and
 * currency, the owner adds its money facts; every sale in every shard) or,
 * with a sale source, "Z/<u64be seq>" (the shard's own partners' sales
 * only, appended in log order; stores written before "Z/" keep them under
 * "S/2/<u64be seq>"), "S/3/<claim
 * key>" (owning shard; by the bucket of its submit's seq first, stores
 * written before buckets by partner), "S/4/<partner>" (owned: the whole money state
 * but its archived rows, "S/7/" (and "S/5/" before), and its tier
 * history, "S/6/"; another
 * shard's partner: its enrollment); MessagePack arrays led by a
 * format number. Key order is load order: programs, sales, claims,
 * partners.
 *
 * Inside, the engine reads top-down in six floors; a file calls only the
 * floors below its own (engine_internal.h draws them in full):
 *   1 entry   tly_engine.c (lifecycle, apply: dispatch and after-event
 *             checks), engine_store.c (flush, load)
 *   2 rules   engine_program.c (programs, closes), engine_sales.c
 *             (enrollment, held events, sales, returns, certifications),
 *             engine_claims.c (claims, payouts, adjustments),
 *             engine_views.c (the section 8 documents)
 *   3 state   engine_state.c (the engine's tables and caches),
 *             engine_mdf.c (a partner's MDF buckets, rebate figures,
 *             liability share, the MDF invariant)
 *   4 records engine_records.c (the stored records)
 *   5 trace   engine_trace.c (the hook of `tally explain`)
 *   6 base    engine_map.c, engine_json.c, tly_xkind.c (the exception
 *             kinds, tly_xkind.h), tly_money.c
 */
#ifndef TLY_ENGINE_H
#define TLY_ENGINE_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_event.h"
#include "tly_record.h"

typedef struct tly_engine tly_engine;

/* Stable shard of a partner id: FNV-1a 64 of the bytes, modulo shard_count. */
uint32_t tly_engine_shard_of(const char *partner, size_t len, uint32_t shard_count);

/* Creates an empty engine for shard `shard` of `shard_count` (≥ 1). */
tly_err tly_engine_new(uint32_t shard, uint32_t shard_count, tly_engine **out);
void tly_engine_free(tly_engine *e);

/* Receives key/value pairs from tly_engine_flush (and visits entries for
 * tly_kv_scan_fn). Returns TLY_OK to go on. */
typedef tly_err (*tly_kv_put_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                                 size_t val_len);

/* Reads the stored value of key: TLY_OK with *val, *val_len set, or
 * TLY_NOT_FOUND, or an error (TLY_STORAGE, ...) that the engine returns
 * as is. */
typedef tly_err (*tly_kv_get_fn)(void *ctx, const void *key, size_t key_len, const void **val,
                                 size_t *val_len);

/* Calls visit for every stored entry whose key starts with prefix, in key
 * order; a visit returning anything but TLY_OK stops the scan, which
 * returns it. The getter may be called from inside a visit. */
typedef tly_err (*tly_kv_scan_fn)(void *ctx, const void *prefix, size_t prefix_len,
                                  tly_kv_put_fn visit, void *visit_ctx);

/* The prefix of the shard's own sales with a sale source, keyed by their
 * seq: it sorts after every other key of a view store ("E/" .. "X/"), so
 * each commit's new sales are the store's last keys and its put can append
 * them to the last page (MDB_APPEND) instead of splitting it in half: the
 * largest part of a store fills its pages (stores written before it were
 * half empty there). */
#define TLY_ENGINE_SEQ_SALE_PREFIX "Z/"

/* The view store behind the engine's cache. Both functions read the store
 * as the engine's last flush left it (a snapshot taken after that flush's
 * commit, or the write transaction the flush writes into: anything the
 * engine wrote is in memory until its flush, so either view is exact).
 * Bytes they hand out must stay valid until the next flush. */
typedef struct tly_engine_store {
    tly_kv_get_fn get;
    tly_kv_scan_fn scan;
    void *ctx;
    /* Clean entries kept in memory after a flush; 0: the defaults
     * TLY_ENGINE_PARTNERS_CACHED_MAX and TLY_ENGINE_SALES_CACHED_MAX. */
    uint32_t partners_cached_max;
    uint32_t sales_cached_max;
    /* With a sale source: the store keeps the shard's own sales under
     * "S/2/<u64be seq>", as stores written before "Z/" did (tly_views
     * knows which from "M/sales"); false: under TLY_ENGINE_SEQ_SALE_PREFIX. */
    bool seq_sales_in_s2;
} tly_engine_store;

/*
 * Binds the engine to the store its flushes go to, before the first apply
 * (after tly_engine_load of the programs): from then on partners, claims
 * and sales that are not in memory are read from it when an event needs
 * them, and every flush drops clean entries beyond the cache limits, and
 * the exceptions it wrote. The public queries below read it too (a
 * partner's views, the partner list, the exceptions). store NULL unbinds
 * (only while nothing was dropped: before any flush).
 */
void tly_engine_set_store(tly_engine *e, const tly_engine_store *store);

/* A sale as the log holds it: what a return of another shard's partner's
 * sale needs to know of it ([S1] [S2]). partner borrows bytes that stay
 * valid until the next call of the source. */
typedef struct tly_engine_sale {
    uint64_t seq;
    tly_str partner;
    char currency[3];
    int64_t at_ms;
} tly_engine_sale;

/* Finds the sale (source, id) in the log: TLY_OK with *found set (false:
 * no record of that (source, id), or not a sale), or an error the engine
 * returns as is. */
typedef tly_err (*tly_engine_sale_fn)(void *ctx, tly_str source, tly_str id, bool *found,
                                      tly_engine_sale *out);

/*
 * Lets the engine read other shards' partners' sales from the log (fn) on
 * demand instead of registering every sale of the log in this shard: a
 * shard then stores the sales of its own partners only, so N shards hold
 * about 1/N of the sales each (issue 9). Results are the same either way
 * (a return of a sale the shard does not know asks fn, and only a sale
 * folded before the return counts); but a store folded with a source must
 * keep one, since it lacks the others' sales (tly_views records which).
 * Its own sales are then stored under their seq, which fn gives, so it
 * needs a store (tly_engine_set_store). Set it before the first apply; fn
 * NULL: every shard registers every sale, under its (source, id).
 */
void tly_engine_set_sale_source(tly_engine *e, tly_engine_sale_fn fn, void *ctx);

/*
 * Lets each flush (with a store) drop a changed partner from memory as soon
 * as it has written it, when the cache would drop it after the flush
 * anyway, so that the write transaction's pages take the memory the
 * partners leave instead of adding to it; and the partners a flush wrote
 * are then kept only up to the cache's limit (without it, a flush that
 * wrote more keeps them all until a smaller one follows). The price: a
 * flush that fails after it dropped one cannot be redone with the same
 * engine (tly_engine_intact is false), whose changes then live only in
 * the aborted transaction: the caller frees it and loads a new one from
 * the store, then refolds from the checkpoint (tally consume does; off by
 * default).
 */
void tly_engine_set_flush_drops(tly_engine *e, bool on);

/* False once a flush failed after it dropped a partner it had written
 * (tly_engine_set_flush_drops): the engine must be freed and loaded again.
 * True otherwise, a failed flush included. */
bool tly_engine_intact(const tly_engine *e);

/*
 * With flush drops, lets each flush note up to max of the partners it wrote
 * and dropped, for tly_engine_read_back to read into memory again once the
 * caller has committed that flush; 0 (the default) turns it off. A batch
 * that changes more partners than the cache holds (a catch-up over many
 * partners) then finds them in memory in the next batch: read in key
 * order, neighbours share the store's pages, instead of each read from a
 * random page when an event names it (10M events of `bench fold` on one
 * shard, 100,000 partners: README "Memory").
 */
void tly_engine_set_read_back(tly_engine *e, uint32_t max);

/*
 * Reads back the partners the last flush noted (tly_engine_set_read_back)
 * through the store, in key order, forgets the list, and returns how many
 * it read (those in memory already not counted). Call it after
 * the commit of that flush and before the next apply: the store must hold
 * what the flush wrote. Each partner read stays in memory until the next
 * flush, as one an event looked up would; until an event changes it,
 * tly_engine_dirty counts it, since it is held all the same. Nothing it
 * reads changes an answer: it is what the next event naming the partner
 * would read. A partner that cannot be read (no memory, a store error, a
 * record this engine refuses) ends it quietly and the rest stay in the
 * store: an event that names one meets the same failure as before.
 */
uint32_t tly_engine_read_back(tly_engine *e);

/*
 * tly_engine_read_back in two halves, so that a second thread decodes the
 * records of one half while the engine's thread reads back the other (at
 * 10M events of `bench fold` on one shard, 100,000 partners, a read-back
 * decodes about 92,000 records after each commit with the second core
 * idle). Three steps, with the same effect as tly_engine_read_back:
 *
 *   begin   on the engine's thread: sorts the list and fetches the stored
 *           records of its second half; NULL when the list is shorter
 *           than min (or 2) or there is no memory for the split: then call
 *           tly_engine_read_back instead.
 *   decode  on any one thread, once: decodes those records. It reads the
 *           split and the store's bytes only (the store holds them still
 *           until the next flush) and writes the split only.
 *   finish  on the engine's thread, once: reads back the first half as
 *           tly_engine_read_back does, then calls wait(ctx) (NULL: none),
 *           which must return once decode has returned, then takes the
 *           decoded partners into memory in key order; frees the split
 *           and returns how many partners were read back.
 *
 * Between begin and finish the engine is not used otherwise.
 */
typedef struct tly_engine_read_split tly_engine_read_split;
tly_engine_read_split *tly_engine_read_back_begin(tly_engine *e, uint32_t min);
void tly_engine_read_split_decode(tly_engine_read_split *s);
uint32_t tly_engine_read_back_finish(tly_engine *e, tly_engine_read_split *s,
                                     void (*wait)(void *ctx), void *ctx);

/* How many records ahead tly_engine_prefetch is told of. */
#define TLY_ENGINE_PREFETCH_AHEAD 4u

/* The hash of ev's partner id as the engine's partner map keys it (0 when
 * ev names no partner), for tly_engine_prefetch: computed once per record,
 * where the record is decoded (the decode-ahead thread), instead of once
 * per distance on the fold's thread (four times a record: 2.2 % of the 1M
 * log's one-shard fold, perf). Pure; any thread may call it. */
uint64_t tly_engine_partner_hash(const tly_event *ev);

/*
 * A hint that ev, whose partner's hash is partner_hash
 * (tly_engine_partner_hash), is about to be applied, `ahead` records from
 * now; it changes nothing, and any event is fine (a wrong hash only loads
 * what is not needed). Told of each record at every
 * distance from TLY_ENGINE_PREFETCH_AHEAD down to 1, each step loading
 * into the CPU's cache what the one before found: at 4 the partner map's
 * slot of ev's partner; at 3 the partner's id and entry; at 2 its money
 * state; at 1 its latest bucket, rebate row and finance row. A fold of a
 * catch-up then finds them in the cache instead of waiting on memory for
 * each in turn (10M events of `bench fold`, 100,000 partners: README
 * "Benchmarks"). Any other distance does nothing.
 */
void tly_engine_prefetch(const tly_engine *e, const tly_event *ev, uint64_t partner_hash,
                         uint32_t ahead);

/* Entries changed since the last flush (partners, sales, exceptions): what
 * the next flush writes, and what the engine must keep in memory until
 * then; with the partners read back and not changed since
 * (tly_engine_read_back). The runtime commits early when this grows large. */
uint32_t tly_engine_dirty(const tly_engine *e);

/*
 * Folds one record whose event has been decoded into ev. Records must come
 * in seq order without gaps (rec->seq == tly_engine_seq(e) + 1); otherwise
 * TLY_USAGE and nothing changes. A sale whose (source, id) was already
 * folded (impossible in a log the ledger wrote) is also TLY_USAGE. Business
 * outcomes are never errors: they are exceptions in the views. Returns
 * TLY_OK, TLY_NOMEM or TLY_OVERFLOW (money arithmetic left int64: the state
 * is then unusable and the consumer stops).
 * The MDF invariant of SPEC section 6 is asserted (TLY_ASSERT, in every
 * build type) for every partner the event touched.
 */
tly_err tly_engine_apply(tly_engine *e, const tly_record *rec, const tly_event *ev);

/* Seq of the last record folded (0 when none). */
uint64_t tly_engine_seq(const tly_engine *e);

/* True when the MDF invariant of SPEC section 6 holds for every partner
 * this shard owns and holds in memory (apply asserts it for the partners
 * each event touches; flush asserts it for every partner it writes). For
 * tests. */
bool tly_engine_invariant_ok(const tly_engine *e);

/* Writes everything that changed since the previous flush (state and views)
 * through put, then forgets the changes; with a store it then drops the
 * exceptions it wrote and clean entries beyond the cache limits (the put
 * must have gone to that store once the caller commits). On error the
 * engine keeps the changes marked, so a retry of the whole batch writes
 * them again. */
tly_err tly_engine_flush(tly_engine *e, tly_kv_put_fn put, void *ctx);

/* Restores one "S/..." entry written by an earlier flush, in key order,
 * before the first apply; then tly_engine_set_seq. With a store, pass the
 * "S/1/" entries (the programs) only: the rest is read when needed.
 * Without one, pass every "S/" entry.
 * Returns TLY_OK, TLY_NOMEM or TLY_CORRUPT (not a value this engine wrote,
 * or written by another shard layout).
 * Without a store, optionally also pass the "X/..." entries (after the
 * "S/" ones, as key order gives): they restore the list
 * tly_engine_exceptions returns. Without them that list holds only
 * exceptions recorded after the restart; the stored "X/" keys stay
 * complete either way. */
tly_err tly_engine_load(tly_engine *e, const void *key, size_t key_len, const void *val,
                        size_t val_len);
void tly_engine_set_seq(tly_engine *e, uint64_t seq);

/* The section 8 answer for a partner owned by this shard, with "seq" set to
 * tly_engine_seq. view is one of 'b' (balance), 'r' (rebate), 't' (tier),
 * 'c' (claims). Returns a new reference, or NULL for an unknown partner
 * (or a store that fails). A partner not in memory is read from the store
 * (the cache is not part of the engine's logical state, hence const). */
json_t *tly_engine_view(const tly_engine *e, char view, const char *partner);

/*
 * Reading a view store's partner documents. A flush stores each partner's
 * state, not its balance, rebate, tier and claims documents: a reader
 * renders them from that state on demand, byte for byte what the section
 * 8 answer holds without "seq" (JSON text, compact, in the SPEC's key
 * order), as of the checkpoint of the snapshot it is bound to.
 *
 * tly_view_reader_new makes a reader for the store of shard `shard` of
 * `shard_count` (TLY_USAGE when shard ≥ shard_count). Before each use
 * (or run of uses in one snapshot) bind it: store reads one snapshot of
 * that store (its get and scan; the cache limits are the reader's own),
 * checkpoint is that snapshot's. Binding to the checkpoint it was bound to
 * last keeps the programs it read; another checkpoint reads them again
 * ("S/1/" entries). Returns TLY_OK or the store's or the load's error.
 *
 * tly_view_reader_doc renders view 'b', 'r', 't' or 'c' of partner (len
 * bytes), or 'P' (its row of `tally partners`, section 11), into *doc (NUL-terminated, not counted
 * in *doc_len), valid until the next call or free. TLY_NOT_FOUND when the partner is not an
 * enrolled partner of this shard in that snapshot; TLY_USAGE for another view letter or a reader
 * never bound; else the store's error, TLY_CORRUPT or TLY_NOMEM. The reader keeps no partner
 * between calls beyond the last.
 *
 * tly_view_reader_canonical renders the same document as its canonical text (schemas/DIGEST.md):
 * the bytes json_dumps(JSON_COMPACT | JSON_SORT_KEYS) gives for tly_view_reader_doc's text read
 * back with json_loadb (which has no "seq" to delete), without the parse and the dump: what
 * `tally audit digest` hashes. Returns as tly_view_reader_doc, and TLY_BAD_FIELD when a string
 * holds a NUL byte (json_loadb refuses that text: ask tly_view_reader_doc for it). *doc as
 * tly_view_reader_doc's (the same buffer).
 */
/*
 * tly_view_reader_reply appends view 'b', 'r', 't' or 'c' of partner to
 * out as the query service's MessagePack reply: the section 8 object with
 * "seq" (the bound checkpoint), the bytes the service packs from
 * tly_view_reader_doc's text (the documents are written in the SPEC's key
 * order, section 10's additions after), without the text. TLY_USAGE for
 * another view or a reader never bound; TLY_NOT_FOUND
 * as tly_view_reader_doc; TLY_BAD_FIELD when a string holds a NUL byte
 * (the text way refuses that document: ask it for the error) or out could
 * not grow. out is as it was unless TLY_OK.
 */
/*
 * tly_view_reader_row renders the row of `tally partners` from a partner's
 * record, val[0..len) (the value of TLY_ENGINE_PARTNER_PREFIX ‖ id, read
 * by the caller's scan), without reading the store: view 'P' byte for
 * byte. keep (NULL: every row) sees the row's id, name, program, kind and
 * tier first, read from the record's head, and a row it refuses is not
 * rendered (TLY_NOT_FOUND); so is another shard's partner and one not
 * enrolled. TLY_CORRUPT for bytes the engine did not write or a record
 * of the wrong shard. *doc as tly_view_reader_doc's.
 */
typedef struct tly_view_row_head {
    tly_str partner, name, program, kind, tier;
} tly_view_row_head;
typedef bool (*tly_view_row_keep)(void *ctx, const tly_view_row_head *h);

typedef struct tly_view_reader tly_view_reader;
tly_err tly_view_reader_new(uint32_t shard, uint32_t shard_count, tly_view_reader **out);
void tly_view_reader_free(tly_view_reader *r);
tly_err tly_view_reader_bind(tly_view_reader *r, const tly_engine_store *store,
                             uint64_t checkpoint);
tly_err tly_view_reader_doc(tly_view_reader *r, char view, const char *partner, size_t len,
                            const char **doc, size_t *doc_len);
tly_err tly_view_reader_canonical(tly_view_reader *r, char view, const char *partner, size_t len,
                                  const char **doc, size_t *doc_len);
tly_err tly_view_reader_row(tly_view_reader *r, const void *val, size_t len, tly_view_row_keep keep,
                            void *ctx, const char **doc, size_t *doc_len);
tly_err tly_view_reader_reply(tly_view_reader *r, char view, const char *partner, size_t len,
                              msgpack_sbuffer *out);

/* Section 11 documents of this shard: view 'P' of tly_engine_view is the
 * partner's row of `tally partners` (rendered when read: tly_view_reader),
 * 'e' its funds the next close expires ({"partner","amount"}, stored); tly_engine_report the
 * program's sums per period over this shard's members ("V/R/": "first",
 * "open", "periods" with what took effect in each; rebate of an open period
 * is the members' estimate as of the last flush). NULL for an unknown
 * program. */
json_t *tly_engine_report(const tly_engine *e, const char *program);

/* The journal of a closed period (section 11): what took effect in that
 * period per partner, TLY_ENGINE_ACT_FIELDS figures named by
 * tly_engine_act_name ("revenue", "mdf_accrued", ... "rebate_paid", the
 * order of a report period). The flush after the period's close stores
 * it in chunks of up to TLY_ENGINE_JOURNAL_CHUNK_ROWS partners by id, each
 * under "J/<u8 len program><program><u32be period XOR 2^31><its first
 * partner>". The value is MessagePack, opaque: tly_engine_journal_each
 * calls fn for each partner of a chunk in id order (TLY_CORRUPT for bytes
 * the engine did not write; stops at fn's first error and returns it). */
#define TLY_ENGINE_ACT_FIELDS 10
#define TLY_ENGINE_JOURNAL_CHUNK_ROWS 128u
const char *tly_engine_act_name(unsigned f); /* NULL beyond the last */
typedef tly_err (*tly_engine_journal_fn)(void *ctx, const char *partner, size_t partner_len,
                                         const int64_t v[TLY_ENGINE_ACT_FIELDS]);
tly_err tly_engine_journal_each(const void *val, size_t len, tly_engine_journal_fn fn, void *ctx);

/* The same figures of a period still open (or later), which only the
 * partners' records hold: the value of a TLY_ENGINE_PARTNER_PREFIX row,
 * read without loading it. TLY_OK with the partner's id (*partner points
 * into val) and its figures when the record is an owned member of program
 * with something in period; TLY_NOT_FOUND when it is not (another shard's
 * partner, another program, nothing in that period); TLY_CORRUPT for
 * bytes the engine did not write. */
#define TLY_ENGINE_PARTNER_PREFIX "S/4/"
tly_err tly_engine_open_journal(const void *val, size_t len, const char *program,
                                size_t program_len, int32_t period, const char **partner,
                                size_t *partner_len, int64_t out[TLY_ENGINE_ACT_FIELDS]);

/* Whether the value of a TLY_ENGINE_PARTNER_PREFIX row is a partner the
 * shard's partner list shows (an owned partner enrolled in a program),
 * read without loading it: TLY_OK with *member set, or TLY_CORRUPT for
 * bytes the engine did not write. */
tly_err tly_engine_partner_member(const void *val, size_t len, bool *member);

/* Every exception this shard has recorded, ordered by (seq, n) like the
 * "X/" keys (an exception of a held event, raised at enrollment, sits at its
 * own seq [D7]), as the "exceptions" array of section 8 (new reference;
 * with a store, the stored ones and those not flushed yet).
 * Liabilities share: one object per program as stored under "V/l/" (new
 * reference, array ordered by program). */
json_t *tly_engine_exceptions(const tly_engine *e);
/* The position each exception of tly_engine_exceptions was raised at: the
 * seq of the record whose fold raised it (new reference, JSON array of
 * integers, parallel to it). Exceptions are listed in raise order. */
json_t *tly_engine_exception_order(const tly_engine *e);
json_t *tly_engine_liabilities(const tly_engine *e);

/* Ids of the enrolled partners this shard owns, sorted (new reference, JSON
 * array; with a store, those stored and those in memory). */
json_t *tly_engine_partners(const tly_engine *e);

/* ---- tracing: every money movement of one partner (tally explain) ---- */

/* What a trace line moves. "period" in a line is the effective period of the
 * event that caused it (SPEC section 6); "bucket" the MDF bucket touched. */
typedef enum tly_trace_kind {
    /* sale: accrued += amount = rhe(basis × bps) less the CAPPED line's
     * amount that follows it when the MDF cap cut it, the tier named [S7]
     * [K1] */
    TLY_TRACE_ACCRUAL = 0,
    /* return of sale `ref`: clawed_back += amount ≤ rhe(basis × bps);
     * basis = the revenue reduction of the capped returned amount (in the
     * program's currency [F4]), bps = the sale's rate [S3] [S7] */
    TLY_TRACE_CLAWBACK,
    /* adjust mdf: adjusted += amount (signed) [M8] */
    TLY_TRACE_ADJUST_MDF,
    /* bucket += amount: the part of a credit left after the deficit [M1] */
    TLY_TRACE_CREDIT,
    /* deficit -= amount: a credit pays the deficit first [M1] */
    TLY_TRACE_DEFICIT_PAYOFF,
    /* bucket -= amount, oldest first [M6] */
    TLY_TRACE_DEBIT,
    /* deficit += amount: a debit the buckets could not cover */
    TLY_TRACE_DEFICIT,
    /* claim `ref` submitted: bucket -= amount, pending += amount [M5] */
    TLY_TRACE_RESERVE,
    /* claim `ref`: pending -= amount back to bucket (a credit follows:
     * CREDIT and/or DEFICIT_PAYOFF lines) */
    TLY_TRACE_RELEASE,
    /* claim `ref`: pending -= amount, expired += amount (its bucket had
     * expired) */
    TLY_TRACE_RELEASE_EXPIRED,
    /* claim `ref`: pending -= amount, approved += amount */
    TLY_TRACE_APPROVE,
    /* claim `ref`: approved -= amount, paid += amount */
    TLY_TRACE_PAY,
    /* close: the bucket's remainder, expired += amount [G5] */
    TLY_TRACE_EXPIRY,
    /* rebate revenue of `period` += amount (sale +, return −) [S6] */
    TLY_TRACE_REVENUE,
    /* rebate adjustment of `period` += amount [R8] */
    TLY_TRACE_ADJUST_REBATE,
    /* part of a figure: basis of X from bracket `from` at bps, the tier
     * bonus included (retroactive: one slice, the whole of X); amount 0;
     * none when X is under the minimum [K2] */
    TLY_TRACE_REBATE_SLICE,
    /* a close fixed `period`'s figure = amount = min(rhe(Σ slices), cap)
     * + adjustments: basis = net revenue R, rebate_basis = X, bracket
     * reached (from, bps; bps 0 under the minimum), mode [G4] [R1] [R2]
     * [R11] [K2] [K3] */
    TLY_TRACE_REBATE_FINAL,
    /* the open estimate of `period` (tly_engine_trace_open) */
    TLY_TRACE_REBATE_OPEN,
    /* rebate of `period` paid += amount */
    TLY_TRACE_PAYOUT,
    /* sale: the part of its accrual (basis: before the cap) cut by the MDF
     * cap (`cap`) of `period`; amount = the cut part [K1] */
    TLY_TRACE_CAPPED,
    /* referral: the period's referral fees += amount = rhe(basis × bps),
     * the tier named [Q1] */
    TLY_TRACE_REFERRAL,
    /* close: the tier kept by grace or the count restarting; amount = the
     * failing closes counted now; bucket = period [T9] */
    TLY_TRACE_GRACE,
    TLY_TRACE_KIND_COUNT
} tly_trace_kind;

/* One money movement. Strings borrow from the engine or the record being
 * folded: valid only during the callback. */
typedef struct tly_trace_line {
    tly_trace_kind kind;
    uint64_t seq;      /* the event (a close for EXPIRY and REBATE_FINAL) */
    const char *cause; /* "sale", "return", "adjust", "submit", "approve", "reject",
                        * "cancel", "pay", "close", "payout", "open" */
    tly_str partner;
    tly_str source, id; /* the event's; id.len 0 for a held return folded at
                         * enrollment (the engine keeps only its sale) */
    tly_str ref;        /* the sale a return names; the claim id; else empty */
    tly_str tier;       /* ACCRUAL: the tier whose rate applied */
    tly_period_kind period_kind;
    int32_t period;       /* effective period of the event; rebate lines: the row */
    int32_t bucket;       /* bucket period (CREDIT, DEBIT, RESERVE, RELEASE*, EXPIRY) */
    int64_t amount;       /* what moved, minor units (signed only for adjustments
                           * and REVENUE) */
    int64_t basis;        /* ACCRUAL: sale amount; CLAWBACK: returned amount; SLICE:
                           * the slice; REBATE_FINAL/OPEN: net revenue R */
    int32_t bps;          /* ACCRUAL, CLAWBACK, SLICE, REBATE_FINAL/OPEN */
    int64_t from;         /* SLICE, REBATE_FINAL/OPEN: bracket start */
    tly_rebate_mode mode; /* SLICE, REBATE_FINAL/OPEN */
    bool late;            /* the event was late [P2] */
    /* ACCRUAL, CLAWBACK, REFERRAL in another currency [F2] [F4]: the
     * event's amount in its currency, converted at fx_units / 10^fx_scale
     * (fx_currency.len 0: no conversion) */
    tly_str fx_currency;
    int64_t fx_amount;
    int64_t fx_units;
    int32_t fx_scale;
    /* REBATE_FINAL/OPEN: the basis X the brackets applied to and, for a
     * growth basis, the baseline B over baseline_periods k [R11]; the
     * tier (`tier`) whose rebate bonus every slice's bps includes [R14];
     * the minimum X must reach [K2] */
    int64_t rebate_basis;
    int64_t baseline;
    bool has_baseline;
    int32_t baseline_periods;
    int32_t bonus_bps;
    int64_t rebate_min;
    /* REBATE_FINAL/OPEN: rebate.cap [K3]; CAPPED: the MDF cap of the
     * period [K1]; INT64_MAX: none */
    int64_t cap;
    /* GRACE: the grace g in force, the count before the close (amount:
     * after it), the tier held before (`ref`) and after (`tier`), and the
     * move: -1 down (the grace ran out), 0 kept, 1 up [T9] */
    int32_t grace;
    int64_t fails_before;
    int32_t move;
} tly_trace_line;

typedef void (*tly_engine_trace_fn)(void *ctx, const tly_trace_line *line);

/* Stable name of a kind ("accrual", "deficit_payoff", ...). */
const char *tly_trace_kind_name(tly_trace_kind kind);

/*
 * Calls fn for every money movement of partner (NULL: of every partner this
 * shard owns), in fold order, from the next apply on. The hook never
 * changes what the engine computes; without it each movement costs one
 * pointer test. Set it before the first apply or load to see every line;
 * fn NULL removes it. Returns TLY_OK or TLY_NOMEM (nothing changed).
 */
tly_err tly_engine_set_trace(tly_engine *e, const char *partner, tly_engine_trace_fn fn, void *ctx);

/* Emits REBATE_SLICE and REBATE_OPEN lines for every open rebate row of the
 * traced partner(s): the estimate under the rules in force now [G4]. */
void tly_engine_trace_open(tly_engine *e);

#endif
