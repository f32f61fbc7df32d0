/*
 * engine_state.h — floor 3 of the engine (see engine_internal.h): the
 * helpers every rule shares. engine_state.c keeps the engine's tables
 * (programs, the partner and sale caches over the view store, member
 * walks, dirty marks, exceptions, keys); engine_mdf.c keeps one partner's
 * accounts (MDF buckets and deficit, rebate rows and figures, its
 * liability share, the MDF invariant). The two never call each other;
 * both may call the records (floor 4), the trace hook (floor 5) and the
 * base (floor 6).
 */
#ifndef TLY_ENGINE_STATE_H
#define TLY_ENGINE_STATE_H

#include "engine_records.h"

/* ---- the engine's tables (engine_state.c) ---- */

/* True when this engine's shard owns partner id. */
bool eng_owned(const tly_engine *e, const char *id, size_t len);
/* Index of program name, or ENG_NONE. */
uint32_t eng_program_find(const tly_engine *e, const char *name, size_t len);
/* Adds program g (absent; its name in the arena); *out its index. */
tly_err eng_program_add(tly_engine *e, const eng_program *g, uint32_t *out);

/* The cached partner record of id, read from the store when not in memory;
 * *out is ENG_NONE when the id is unknown (TLY_OK). Indices stay valid
 * until the end of the next flush. */
tly_err eng_partner_find(tly_engine *e, const char *id, size_t len, uint32_t *out);
/* As eng_partner_find, but an unknown id gets a new record (unenrolled;
 * with a money state when owned). */
tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out);
/* Reads owned partner p's cold part (its tier history and certifications,
 * eng_pstate) from the store unless it is in memory. Whatever reads or
 * changes them calls this first; whatever changes them sets cold_dirty. */
tly_err eng_partner_cold(tly_engine *e, uint32_t p);
/* A stored cold record of partner (id, len) handed to tly_engine_load,
 * after its partner's record: TLY_CORRUPT when that record is not loaded,
 * not owned, or did not count it. */
tly_err eng_cold_load(tly_engine *e, const char *id, size_t len, const void *val, size_t vlen);
/* A stored partner record handed to tly_engine_load into the cache.
 * TLY_CORRUPT when it is in memory already or belongs to another shard
 * layout. */
tly_err eng_partner_load(tly_engine *e, const void *val, size_t len);
/* A stored claim handed to tly_engine_load, kept until its partner's
 * record is loaded (claims sort before partners). */
tly_err eng_claim_stash(tly_engine *e, const void *key, size_t klen, const void *val, size_t len);
/* Adds claim id (len bytes) to st's claim filter. */
void eng_claim_filter_add(eng_pstate *st, const char *id, uint32_t len);
/* A claim is identified by (partner, claim) [C1]: owned partner p's claim
 * named claim, *out its index among p's claims in memory, read from the
 * store when it is not (ENG_NONE: p has no such claim). */
tly_err eng_claim_lookup(tly_engine *e, uint32_t p, tly_str claim, uint32_t *out);
/* Reads owned partner p's claim ci when not loaded yet (a partner read
 * from a record written before ordinals knows only their ids). */
tly_err eng_claim_fill(tly_engine *e, uint32_t p, uint32_t ci);
/* Reads all of p's claims, in submit order [C8], for its claims document.
 * A flush needs none: it writes the changed claims, which are loaded. */
tly_err eng_claims_fill(tly_engine *e, uint32_t p);

/* What a decoded partner record is checked against (engine_state.c):
 * its tier index below tier_count, its claims' newest bucket at most
 * bucket_max, and with invariant its MDF invariant (eng_invariant_ok). */
typedef struct eng_decode_env {
    uint32_t tier_count, bucket_max;
    bool invariant;
} eng_decode_env;

/* What a read-back's job (tly_engine_read_back_begin) is. */
enum eng_job_kind {
    ENG_JOB_NONE,   /* nothing to read: in memory already, or not stored */
    ENG_JOB_ENGINE, /* read by the engine itself when adopted (eng_partner_find) */
    ENG_JOB_DECODE  /* an owned partner's current record: eng_read_job_decode */
};

/* One partner of a read-back whose record another thread decodes. */
typedef struct eng_read_job {
    const char *id; /* borrowed: the engine's read-back list */
    uint32_t len;
    uint64_t h; /* eng_hash of the id */
    enum eng_job_kind kind;
    /* ENG_JOB_DECODE: its program, enrollment, checks and stored record
     * (the store's bytes, valid until the next flush) */
    uint32_t gi;
    uint64_t enroll_seq;
    eng_decode_env env;
    const void *val;
    size_t vlen;
    /* what the decode gave: err, and on TLY_OK the settled state st (owned
     * by the job until adopted) and the liability share */
    tly_err err;
    eng_pstate *st;
    eng_liab liab;
} eng_read_job;

/* Fetches the stored record of job j's partner (id, len and h set) on the
 * engine's thread and decides its kind. An error of the store is
 * returned (j is then ENG_JOB_NONE). */
tly_err eng_read_job_prepare(tly_engine *e, eng_read_job *j);
/* Decodes j's record into a settled state, on any thread: it reads only j,
 * the record's bytes and *scratch (a state of eng_pstate_new or NULL, kept
 * for the next job; NULL again after a failure). */
void eng_read_job_decode(eng_read_job *j, eng_pstate **scratch);
/* Takes j's partner into the cache on the engine's thread, as
 * eng_partner_find would read it: *out its index, ENG_NONE when nothing
 * was read; the decode's error, or the engine's, is returned. */
tly_err eng_read_job_adopt(tly_engine *e, eng_read_job *j, uint32_t *out);

/* The cached sale of key, read when not in memory: from the store, or,
 * with a sale source (tly_engine_set_sale_source), by its seq from the log
 * (this shard's partner's: then from the store under that seq). *out is
 * ENG_NONE when there is no such sale folded before the record being
 * applied. */
tly_err eng_sale_find(tly_engine *e, const char *key, uint32_t klen, uint32_t *out);
/* The prefix of a sale's store key: "S/2/", or with a sale source
 * TLY_ENGINE_SEQ_SALE_PREFIX (unless the store is older: seq_sales_in_s2). */
const char *eng_sale_store_prefix(const tly_engine *e);
/* The body of sale s's store key after its prefix into buf (at least
 * 1 + TLY_SOURCE_BYTES_MAX + TLY_ID_BYTES_MAX bytes): its (source, id)
 * key, or with a sale source its seq (u64be), so that new sales are
 * appended in log order and a commit changes the newest pages only. */
uint32_t eng_sale_store_body(const tly_engine *e, const eng_sale *s, char *buf);
/* Registers a new sale (absent) of partner in currency cur at business
 * time at_ms, at the seq being applied; marked dirty. */
tly_err eng_sale_add(tly_engine *e, const char *key, uint32_t klen, tly_str partner,
                     const char cur[3], int64_t at_ms, uint32_t *out);
/* A stored sale record handed to tly_engine_load into the cache. */
tly_err eng_sale_load(tly_engine *e, const char *key, uint32_t klen, const void *val, size_t len);

/* Calls fn once for every owned partner enrolled in program gi (ENG_NONE:
 * in any program): those in the store and those only in memory, each read
 * into the cache. A close or a new version visits every member [T7]
 * [G3]. fn may mark partners dirty; it must not look partners up. */
typedef tly_err (*eng_member_fn)(tly_engine *e, uint32_t p, void *ctx);
tly_err eng_members_each(tly_engine *e, uint32_t gi, eng_member_fn fn, void *ctx);

/* Marks p (and records it as touched by this apply) or sale s as changed
 * since the last flush. */
tly_err eng_partner_dirty(tly_engine *e, uint32_t p);
tly_err eng_sale_dirty(tly_engine *e, uint32_t s);
/* After a flush with a store: forgets the exceptions it wrote, then drops
 * clean entries beyond the cache limits, least recently used first;
 * touched is the partners the flush wrote, which the default partner
 * limit keeps when they are more. */
void eng_cache_trim(tly_engine *e, uint32_t touched);

/* With flush drops (tly_engine_set_flush_drops), before a flush writes its
 * partners (or sales): the lookup seq below which one leaves the cache at
 * the trim after that flush (eng_cache_trim drops the least recently used
 * down to three quarters of the limit); 0 when none does or without memory
 * for the selection. One looked up at the cut itself is kept (the trim
 * decides among those). */
uint64_t eng_cache_cut(tly_engine *e, bool partners);

/* Drops clean partner p, or sale s, from the cache: the store holds what
 * it is. */
void eng_partner_drop(tly_engine *e, uint32_t p);
void eng_sale_drop(tly_engine *e, uint32_t s);

/* Writes one changed sale (a flush's sink). */
typedef tly_err (*eng_sale_write_fn)(void *ctx, const eng_sale *s);

/* Sales a flush walks between two returns of their vector's pages. */
#define ENG_SALES_RELEASE_SLOTS 8192u

/* A flush with drops, when some sale leaves the cache (cut > 0,
 * eng_cache_cut): walks the sale cache in slot order, writes each changed
 * sale (write), drops those last looked up before cut and moves the rest
 * to the front of the vector, marked clean; the pages of the slots left
 * behind go back to the system every ENG_SALES_RELEASE_SLOTS slots, and
 * the sale map shrinks to fit at the end. A batch's new sales are most of
 * a commit's engine memory (at 10M events of `bench fold` on one shard,
 * 321,000 slots of 104 bytes, 49,152 of them kept): written first and
 * compacted after, the store's copies of the pages the sales fill came on
 * top of the whole vector (14 MB above the fold's own peak); now they
 * take about what the walk gave back. After a failed write the walk only
 * compacts (nothing more is written or dropped) and returns the error:
 * the flush cannot be redone, and the engine says so (tly_engine_intact). */
tly_err eng_sales_flush_compact(tly_engine *e, uint64_t cut, eng_sale_write_fn write, void *ctx);

/* After a flush with drops has written and dropped the partners it does
 * not keep, before their puts go into the store: moves the partners left
 * to the front of their vector (the dirty list follows them, without the
 * dropped ones), gives the pages of the rest back to the system and
 * shrinks the partner map to fit. The vector and the map are sized for
 * every partner the batch touched (at 10M events of `bench fold` on one
 * shard, 100,000 slots of 128 bytes and a map of 131,072), and their
 * pages would otherwise stay resident beside LMDB's copies of the pages
 * the commit changes. Without memory they stay as they are. */
void eng_partners_compact(tly_engine *e);

/* Records an exception (printf-style detail) at pos; partner ENG_NONE for
 * none. Callers only record exceptions their shard keeps. */
tly_err eng_raise(tly_engine *e, eng_pos pos, tly_xkind kind, uint32_t partner, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
/* Appends an exception as it is (load restores stored ones with it);
 * partner.ptr NULL for none. */
tly_err eng_exc_add(tly_engine *e, const eng_exc *x, tly_str partner, tly_str detail,
                    const eng_about *about);
/* Keys are u8 length ‖ first ‖ second: unambiguous for any bytes. Each
 * returns the key's length. */
/* The two parts of a key of eng_sale_key or eng_claim_key (a one-byte
 * length, the first part, the second): source and id, or partner and
 * claim; both borrow key. */
void eng_key2_split(const char *key, uint32_t klen, tly_str *a, tly_str *b);
/* The sale key of (source, id) into buf (≥ 1 + 64 + 128 bytes). */
uint32_t eng_sale_key(char *buf, const char *src, uint32_t src_len, const char *id,
                      uint32_t id_len);
/* The claim key (partner, claim) into buf (≥ 1 + 128 + 128 bytes). */
uint32_t eng_claim_key(char *buf, const char *partner, uint32_t plen, const char *claim,
                       uint32_t clen);
/* The longest body of a claim's store key (after "S/3/"). */
#define ENG_CLAIM_KEY_BYTES_MAX (ENG_CLAIM_BUCKET_BYTES + 1 + 2 * TLY_NAME_BYTES_MAX)
/* The store key body of claim (partner, claim) in bucket (0: the key
 * written before buckets) into buf (≥ ENG_CLAIM_KEY_BYTES_MAX bytes). */
uint32_t eng_claim_store_key(char *buf, uint32_t bucket, const char *partner, uint32_t plen,
                             const char *claim, uint32_t clen);
/* The bucket of a claim submitted at seq (engine_internal.h). */
uint32_t eng_claim_bucket_of(uint64_t seq);
/* Notes that bucket b (≥ 1) holds a claim of st. */
void eng_claim_bucket_add(eng_pstate *st, uint32_t b);
/* The certification pair key (person, cert) into buf (≥ ENG_PAIR_KEY_BYTES_MAX bytes). */
uint32_t eng_pair_key(char *buf, const char *person, uint32_t plen, const char *cert,
                      uint32_t clen);
/* Stable name of a claim status ("pending", ...). */
const char *eng_claim_status_name(uint8_t s);

/* ---- exchange rates (engine_fx.c) ---- */

/* Adds rate r of the pair from → to (every shard) [F1]. */
tly_err eng_rate_add(tly_engine *e, const char from[3], const char to[3], eng_rate r);
/* The rate of from → to in force at business time t among those folded
 * before before_seq (UINT64_MAX: all of them); false when none. */
bool eng_rate_find(const tly_engine *e, const char from[3], const char to[3], int64_t t,
                   uint64_t before_seq, eng_rate *out);
/* The conversion from → to at t (as eng_rate_find), ENG_FX_SAME for one
 * currency; false when there is no rate in force or a code has no
 * minor-unit exponent [F2] [F6]. */
bool eng_fx_for(const tly_engine *e, const char from[3], const char to[3], int64_t t,
                uint64_t before_seq, eng_fx *out);
/* amount (≥ 0) converted by fx, rounded half to even [F2]. */
tly_err eng_fx_apply(const eng_fx *fx, int64_t amount, int64_t *out);
/* The converted reduction of a return taking the sale's returned amount
 * from before to after [F4]. */
tly_err eng_fx_reduction(const eng_fx *fx, int64_t before, int64_t after, int64_t *out);

/* ---- one partner's accounts (engine_mdf.c) ---- */

/* Books x ≥ 0 into the bucket of period, paying the deficit first [M1]. */
tly_err eng_credit(eng_pstate *st, int32_t period, int64_t x);
/* Takes x ≥ 0 from the buckets oldest first, the rest to the deficit [M6]. */
tly_err eng_debit(eng_pstate *st, int64_t x);
/* Σ bucket remainders − deficit; TLY_OVERFLOW when it leaves int64. */
tly_err eng_available(const eng_pstate *st, int64_t *out);
/* Asks the CPU for st's latest row, bucket and act, which a sale is about
 * to update: three vectors of a partner out of cache are three memory
 * latencies in a row otherwise (a hint, no effect on state). */
void eng_prefetch_latest(const eng_pstate *st);
/* The rebate row of period, created when absent. */
tly_err eng_row_get(eng_pstate *st, int32_t period, eng_row **out);
/* The rebate row of period, or NULL. */
eng_row *eng_row_find(const eng_pstate *st, int32_t period);
/* A row's rebate: figure (adjustments included), rate, basis X and
 * baseline B (has_baseline: the basis is growth) [R11] [R13] [K2] [K3]. */
typedef struct eng_figure {
    int64_t figure;
    int32_t bps;
    int64_t basis, baseline;
    bool has_baseline;
} eng_figure;
/* Figure of row of partner st: frozen when final, else the rules in force
 * now and the tier st holds now [G4] [R14]. */
tly_err eng_row_figure(const eng_rules *r, const eng_pstate *st, const eng_row *row, eng_figure *f);
/* Freezes row's figure, rate, basis and baseline (the close) [R17]. */
tly_err eng_row_finalize(const eng_rules *r, const eng_pstate *st, eng_row *row);
/* accrued_open and payable of a partner [P4] [R10]. */
tly_err eng_rebate_totals(const eng_rules *r, const eng_pstate *st, int64_t *open,
                          int64_t *payable);
/* accrued_open alone, from the open rows at the end of st's rows: a close
 * finalizes rows in period order and rows are made only for open periods,
 * so the final ones come first. */
tly_err eng_rebate_open(const eng_rules *r, const eng_pstate *st, int64_t *open);
/* The partner's share of its program's liabilities under rules r [M9]. */
tly_err eng_liab_of(const eng_rules *r, const eng_pstate *st, eng_liab *out);
/* *acc += x, or -= x when sub; TLY_OVERFLOW leaves *acc as it was. */
tly_err eng_liab_add(eng_liab *acc, const eng_liab *x, bool sub);
/* Net revenue of periods from..to, with referred amounts when referred. */
tly_err eng_window_sum(const eng_pstate *st, int32_t from, int32_t to, bool referred, int64_t *out);
/* The tier window's revenue of periods from..to (referred included) [Q2]. */
tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out);
/* ---- the archive (engine_internal.h, eng_pstate) ---- */
/* The earliest period the rules r read back from eop, less one: the tier
 * window's first, the growth baseline's first. */
int32_t eng_rules_reach(const eng_rules *r, int32_t eop);
/* Raises g->arch_h to what rules r reach now (a close, a new version). */
void eng_program_arch_advance(eng_program *g, const eng_rules *r);
/* True when rules r at eop read archived rows of st whose revenue st does
 * not keep (before its rev_from), or may read rows a flush will archive
 * without keeping their revenue (after a version that reaches further
 * back than the program's arch_h, until its closes catch up): then the
 * archive is kept in memory (eng_arch_fill). */
bool eng_arch_needed(const eng_pstate *st, const eng_rules *r, int32_t eop, int32_t arch_h);
/* What a flush archives of st: its leading final rows, in whole chunks;
 * the revenue of those of periods from g->arch_h on stays in st->rev. */
tly_err eng_arch_plan_of(const eng_pstate *st, const eng_program *g, eng_arch_plan *out);
/* A payout of amount into archived row (in st->arch). */
tly_err eng_arch_paid(eng_pstate *st, eng_row *row, int64_t amount);
/* Index of period's row in st->arch, or where it would go. */
uint32_t eng_arch_pos(const eng_pstate *st, int32_t period);
/* Adds a chunk of ENG_ARCH_CHUNK_ROWS rows (not in st->arch) to st->arch. */
tly_err eng_arch_insert(eng_pstate *st, const eng_row *chunk);
/* After a flush: rows[0..arch_pending) leave the rows for the archive,
 * kept in st->arch when keep (the flush reserved the room), else st->arch
 * is emptied; rev becomes the entries from period from on (the flush
 * reserved their room too); dirty marks go. */
void eng_arch_commit(eng_pstate *st, bool keep, int32_t from);
/* Reads every archived row of owned partner p into its arch (a no-op
 * when they are there, or without a store). */
tly_err eng_arch_fill(tly_engine *e, uint32_t p);
/* The archived row of period of owned partner p (read when needed), or
 * NULL when the partner had none that period. */
tly_err eng_arch_row(tly_engine *e, uint32_t p, int32_t period, eng_row **out);
/* An archive chunk's record for tly_engine_load, after its partner's:
 * key after "S/5/" (eng_arch_load) or after "S/7/" (eng_arch7_load). */
tly_err eng_arch_load(tly_engine *e, const void *key, size_t klen, const void *val, size_t vlen);
tly_err eng_arch7_load(tly_engine *e, const void *key, size_t klen, const void *val, size_t vlen);
/* The key of the chunk of (partner, first period) into buf (≥ 1 + 128 + 4
 * bytes), after "S/5/" (eng_arch_key) or after "S/7/" (eng_arch_key7). */
uint32_t eng_arch_key(char *buf, const char *partner, uint32_t plen, int32_t period);
uint32_t eng_arch_key7(char *buf, const char *partner, uint32_t plen, int32_t period);
/* Active pairs whose latest earned has no expiry or expires at or after
 * start_ms [T10]. */
int64_t eng_active_certs(const eng_pstate *st, int64_t start_ms);
/* max(period of at_ms, g's earliest open period): where an approval,
 * payment, payout or release takes effect [RP5]. */
int32_t eng_event_period(const eng_program *g, int64_t at_ms);
/* Books x into field f of period for partner st and for its program's
 * sums g (SPEC section 11). */
tly_err eng_book(eng_program *g, eng_pstate *st, int32_t period, enum eng_act_field f, int64_t x);
/* Books x into f and x2 into f2 of one period (a sale's revenue and
 * accrual): one look-up of the period for both. */
tly_err eng_book2(eng_program *g, eng_pstate *st, int32_t period, enum eng_act_field f, int64_t x,
                  enum eng_act_field f2, int64_t x2);
/* The partner's nonzero open rebate figures by period, ascending (a new
 * vector; *out NULL when none). */
tly_err eng_open_figures(const eng_rules *r, const eng_pstate *st, eng_share **out, uint32_t *n);
/* The MDF invariant of SPEC section 6; true when it holds. */
bool eng_invariant_ok(const eng_pstate *st);
/* Slices and figure of a rebate row under rules r, reported to t: kind is
 * TLY_TRACE_REBATE_FINAL or TLY_TRACE_REBATE_OPEN. */
void eng_trace_rebate(eng_trace *t, const eng_rules *r, const eng_pstate *st, const eng_row *row,
                      tly_trace_kind kind);

#endif
