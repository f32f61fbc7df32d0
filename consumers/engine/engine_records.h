/*
 * engine_records.h — floor 4 of the engine (see engine_internal.h): the
 * stored records of the engine's state, packed for the flush (floor 1)
 * and unpacked by the cache when an entry is read back (floor 3) or by
 * tly_engine_load; and the destructors of what an unpacked record holds.
 * Knows the data model and nothing of the caches; calls the trace hook
 * (floor 5) and the base (floor 6) only.
 *
 * Records, MessagePack arrays led by ENG_RECORD_FORMAT:
 *   "S/0/<from><to>"  [fmt, from, to, [[at, seq, units, scale]...]]: the
 *                      rates of one currency pair (every shard) [F1]
 *   "S/1/<program>"   [fmt, name, currency, kind, version, tiers, mode,
 *                      brackets, expiry_n, window_w, basis, baseline_k,
 *                      rebate_min, rebate_cap, mdf_cap, moves, grace,
 *                      first_period, eop, expired_upto, liab(5), report
 *                      by period, open rebate by period, arch_h]; a tier is
 *                      [name, min_revenue, min_certs, mdf_bps, bonus bps,
 *                      referral bps, benefits]
 *   "S/2/<sale key>"  [fmt, partner, currency, seq, at] (every shard; with a
 *                      sale source "Z/<u64be seq>", the shard's own only), and
 *                      for a sale of an owned partner that moved money also
 *                      [amount, returned, accrual, clawed, bps, fx units,
 *                      fx scale, fx ediff]
 *   "S/3/<claim key>" [fmt, status, requested, approved, paid, reason,
 *                      shares, ordinal] (ordinal: the claim's place in its
 *                      partner's submit order [C8]); the key (0 ‖ be32
 *                      bucket ‖ u8 length ‖ partner ‖ claim, the bucket
 *                      from its submit's seq: ENG_CLAIM_BUCKET_SHIFT;
 *                      written before buckets, u8 length ‖ partner ‖
 *                      claim) names the claim. Records written
 *                      before (ENG_CLAIM_FIELDS_V6, _V5) hold partner and
 *                      claim after fmt, and before ordinals no ordinal
 *   "S/4/<partner>"   [fmt, id, program, owned, enroll_seq] for another
 *                      shard's partner; an owned one adds [name, kind,
 *                      region, tier, fails, 8 totals, buckets, rows,
 *                      history (empty: it is "S/6/"'s; V7 and before held
 *                      it), certs, claim ids (empty; written before
 *                      ordinals, every claim's in submit order), held,
 *                      liab(5), acts by period, open rebate figures,
 *                      archived rows, the newest one's period, what they
 *                      owe, claims ever filed, their filter (bin,
 *                      ENG_CLAIM_FILTER_BITS / 8 bytes), the history's
 *                      entries in "S/6/", the first period of its newest
 *                      archive chunk under "S/7/" (-1: none; V8 and before
 *                      have no such element, and every chunk is "S/5/"),
 *                      the revenue it keeps of its archive [from,
 *                      [[period, revenue, referred]...]] (every archived
 *                      row of period ≥ from; V9 and before have no such
 *                      element and keep none), the buckets of its claims
 *                      [unbucketed, hi, lo, mask] (eng_pstate; V10 and
 *                      before have no such element: every claim is under
 *                      the partner's own keys)];
 *                      an act is
 *                      [period, mask, the figures whose bit is set], in
 *                      eng_act_field order, zeros left out; a row is
 *                      [period, final, rate_bps, revenue, adj, figure, paid,
 *                      basis, baseline, has_baseline, referral, referred,
 *                      mdf_gross], a cert [pair key, expires]
 *   "S/6/<partner>"   [fmt, history]: an owned partner's tier history,
 *                      written when it changes (a close or a program
 *                      version that moves its tier), not with every
 *                      record; an entry is [seq, period, from, to]
 *   "S/7/<be32 period, u8 len, partner>" [fmt, prev, [row...]]: a chunk
 *                      of ENG_ARCH_CHUNK_ROWS archived rows of an owned
 *                      partner, keyed by the first one's period, then the
 *                      partner: the chunks of one close sort side by side.
 *                      prev is the first period of the partner's chunk
 *                      archived before it (-1: none under "S/7/"), the
 *                      partner record's last element the newest one's
 *                      (engine_internal.h, eng_pstate)
 *   "S/5/<u8 len, partner, be32 period>" [fmt, [row...]]: a chunk as
 *                      stores before "S/7/" kept them, read still: the
 *                      chunks a partner archived before its first chunk
 *                      under "S/7/", and the payouts into them rewrite
 *                      them here
 *   "J/<program key><period><partner>" [[partner, mask, figures]...]: a
 *                      journal chunk of a closed period (section 11): up
 *                      to ENG_JOURNAL_CHUNK_ROWS partners' acts without
 *                      their period, by partner id, keyed by the first
 */
#ifndef TLY_ENGINE_RECORDS_H
#define TLY_ENGINE_RECORDS_H

#include "engine_trace.h"
#include "tly_mpw.h"

/* The format number of every state record. Format 1 kept every sale's
 * state (held, moved) in every shard; 2 derives it (engine_internal.h); 3
 * adds section 10's state (rates, caps, growth, referrals, grace, expiry);
 * 4 packs what took effect per period sparsely (acts, journal rows). */
#define ENG_RECORD_FORMAT 5

/* The prefix of an owned partner's cold record (eng_pack_cold). */
#define ENG_COLD_PREFIX "S/6/"
/* The prefixes of the archive's chunks: by period first, and (written
 * before) by partner first. */
#define ENG_ARCH_PREFIX "S/7/"
#define ENG_ARCH_OLD_PREFIX "S/5/"

/* The bytes a claim key's bucket takes: 0 ‖ be32 bucket. */
#define ENG_CLAIM_BUCKET_BYTES 5u

/* Longest key the engine writes: "S/3/" + 5 + 1 + 128 + 128. */
#define ENG_KEY_BYTES_MAX 300

/* Partners in one journal chunk: a closed period's journal is written in
 * chunks of this many members (about 30 bytes each), so the close of a
 * program of 100,000 members writes 782 rows, not 100,000 (each put into
 * a large store cost about 3,500 instructions). */
#define ENG_JOURNAL_CHUNK_ROWS TLY_ENGINE_JOURNAL_CHUNK_ROWS

/* Elements of a partner record: another shard's partner, an owned one
 * (and an owned one written before its claims' buckets, V10, read as one
 * whose claims are all under its own keys; before it kept its archive's
 * revenue, V9, read
 * as one that keeps none; before claim ordinals, which lists every claim
 * id; and before the archive, read as one with none). */
#define ENG_PARTNER_FIELDS_FOREIGN 5u
#define ENG_PARTNER_FIELDS_OWNED 36u
#define ENG_PARTNER_FIELDS_OWNED_V10 35u
#define ENG_PARTNER_FIELDS_OWNED_V9 34u
#define ENG_PARTNER_FIELDS_OWNED_V8 33u
#define ENG_PARTNER_FIELDS_OWNED_V7 32u
#define ENG_PARTNER_FIELDS_OWNED_V6 30u
#define ENG_PARTNER_FIELDS_OWNED_V5 27u

/* Elements of a claim record: the partner and the claim id are its key's
 * ("S/3/" ‖ u8 length ‖ partner ‖ claim), not repeated in the value.
 * Records written before that repeat them (V6), and before ordinals have
 * no ordinal either (V5); both are still read. Leaving the two names out
 * took a claim record from 39 to 22 bytes on average: a claim is filed under
 * its partner, so the new claims of a batch land all over "S/3/", and at
 * 10M events of `bench fold` (858,000 claims, a third of the 100,000
 * partners filing one per batch) every batch rewrote about 90 % of its
 * pages; fewer bytes are fewer pages to rewrite. */
#define ENG_CLAIM_FIELDS 8u
#define ENG_CLAIM_FIELDS_V6 10u
#define ENG_CLAIM_FIELDS_V5 9u

/* Elements of a program record (and of one written before the archive). */
#define ENG_PROGRAM_FIELDS 24u
#define ENG_PROGRAM_FIELDS_V5 23u

/* The revenue st keeps of its archive once rows[0..n) have joined it,
 * from period from on (eng_pstate's rev): its rev entries from there, then
 * those rows'. eng_rev_walk gives the next in *out (*at: 0 at first) and
 * false after the last; eng_rev_count counts them. */
bool eng_rev_walk(const eng_pstate *st, uint32_t n, int32_t from, uint32_t *at, eng_rev *out);
uint32_t eng_rev_count(const eng_pstate *st, uint32_t n, int32_t from);

/* ---- packing (into the flush's buffers) ---- */

void eng_pack_program(tly_mpw *pk, const eng_program *g);
/* The rates of one pair. */
void eng_pack_rates(tly_mpw *pk, const eng_rate_pair *rp);
/* The sale record into b (emptied first); false when out of memory. */
bool eng_pack_sale(eng_buf *b, const eng_sale *s);
/* A claim's record; its key (eng_claim_key) names its partner and id. */
void eng_pack_claim(tly_mpw *pk, const eng_claim *c);
/* g is pp's program, NULL when it is not enrolled; plan (owned partners
 * only) says which rows the flush archives and the summary it stores. An
 * owned partner's tier history is counted, not listed: it is its cold
 * record's. */
void eng_pack_partner(tly_mpw *pk, const eng_partner *pp, const eng_program *g,
                      const eng_arch_plan *plan);
/* The cold record of owned partner state st, which holds its cold part
 * (st->cold): [fmt, history]. */
void eng_pack_cold(tly_mpw *pk, const eng_pstate *st);
/* Reads a cold record into st, whose record counted the entries it must
 * hold (st->cold_hist; TLY_CORRUPT otherwise); tier names are interned in
 * names/a. On error st keeps what was read, for eng_pstate_free. */
tly_err eng_unpack_cold(const void *val, size_t len, eng_map *names, eng_arena *a, eng_pstate *st);
/* A chunk of the archive: ENG_ARCH_CHUNK_ROWS rows from rows, in the
 * form rows[0].chunk_prev says ("S/7/" with its link, or "S/5/"). */
void eng_pack_arch_chunk(tly_mpw *pk, const eng_row *rows);
/* Reads a chunk of the archive into out[0..ENG_ARCH_CHUNK_ROWS) (final
 * rows, periods ascending), out[0].chunk_prev telling its form and link;
 * TLY_CORRUPT otherwise. */
tly_err eng_unpack_arch_chunk(const void *val, size_t len, eng_row *out);
/* One partner's entry of a journal chunk: [partner, mask, figures] (act a
 * without its period); the chunk is an array of up to
 * ENG_JOURNAL_CHUNK_ROWS of them, partner ids ascending. */
void eng_pack_journal(tly_mpw *pk, const char *partner, size_t len, const eng_act *a);

/* ---- unpacking: TLY_CORRUPT for bytes this engine did not write ---- */

/* A program (names copied into a, the global arena). */
tly_err eng_unpack_program(eng_arena *a, const void *val, size_t len, eng_program *out);

/* The rates of one pair into *out (its vector owned; freed on error). */
tly_err eng_unpack_rates(const void *val, size_t len, eng_rate_pair *out);

/* A sale record; partner borrows the bytes. */
typedef struct eng_sale_rec {
    tly_str partner;
    char currency[3];
    uint64_t seq;
    int64_t at_ms;
    bool has_detail;
    eng_sale_detail d;
} eng_sale_rec;
tly_err eng_unpack_sale(const void *val, size_t len, eng_sale_rec *out);

/* The claim stored under key (its body after "S/3/": [0 ‖ be32 bucket ‖]
 * u8 length ‖ partner ‖ claim) into *out (owned copies, its bucket set;
 * cleared on error); *partner borrows key. A record that names its partner and claim itself (V5,
 * V6) must name the key's. */
tly_err eng_unpack_claim(const void *key, size_t klen, const void *val, size_t len,
                         tly_str *partner, eng_claim *out);

/* The head of a partner record; id and program borrow the bytes
 * (program.ptr NULL: not enrolled). */
typedef struct eng_partner_rec {
    tly_str id, program;
    bool owned;
    uint64_t enroll_seq;
    bool cold_apart; /* owned, its tier history under "S/6/": decoding it interns no name */
} eng_partner_rec;
tly_err eng_peek_partner(const void *val, size_t len, eng_partner_rec *out);
/* An owned partner's record's first fields past eng_peek_partner's: its
 * name (not checked as text: eng_unpack_pstate does), kind and tier index. */
typedef struct eng_member_head {
    tly_str name;
    tly_partner_kind kind;
    uint32_t tier;
} eng_member_head;
tly_err eng_peek_member(const void *val, size_t len, eng_member_head *out);

/* The money state of an owned partner's record into st (zeroed; on error
 * it holds what was read, for eng_pstate_free) and its liability share
 * into *liab. Its claims get their ids only (not loaded), in submit
 * order: the caller reads each from its own record when needed. Tier names of the history are
 * interned in names/a, which only a record written before the history was
 * kept apart needs (eng_partner_rec's cold_apart false): for any other,
 * both may be NULL, and the call touches nothing but st, liab and val. */
tly_err eng_unpack_pstate(const void *val, size_t len, eng_map *names, eng_arena *a, eng_pstate *st,
                          eng_liab *liab);

/* Calls fn for each entry of a journal chunk (eng_pack_journal), in order,
 * after checking it; stops at fn's first error. */
typedef tly_err (*eng_journal_fn)(void *ctx, const char *partner, size_t len, const eng_act *a);
tly_err eng_journal_each(const void *val, size_t len, eng_journal_fn fn, void *ctx);

/* What took effect in one period that is still open, read from a stored
 * partner record: TLY_OK with *partner (pointing into val) and *out when
 * the record is an owned member of program with figures in period;
 * TLY_NOT_FOUND when it is not; TLY_CORRUPT for bytes it cannot read. */
tly_err eng_unpack_open_act(const void *val, size_t len, const char *program, size_t program_len,
                            int32_t period, tly_str *partner, eng_act *out);

/* ---- what records hold ---- */

/* How many of st's acts lie before g's earliest open period (g NULL:
 * none). Nothing books into them again (late events land in the earliest
 * open period [P2] [RP5]), so once their journal rows are written the
 * flush drops them from memory and the partner record leaves them out.
 * A journal row is written once, at the flush after its period's close
 * (every member is dirty then): an open period's figures live only in
 * the partner records (eng_unpack_open_act). */
uint32_t eng_acts_closed(const eng_pstate *st, const eng_program *g);

/* ---- a partner's active certifications (engine_internal.h, eng_cert) ---- */

/* The entry at byte offset off of st's certs (off < st->cert_bytes) into
 * *c; returns the next entry's offset (st->cert_bytes after the last). */
uint32_t eng_cert_at(const eng_pstate *st, uint32_t off, eng_cert *c);
/* The offset of the entry of pair key[0..len), ENG_NONE when not active. */
uint32_t eng_cert_find(const eng_pstate *st, const char *key, uint32_t len);
/* The active pairs of st. */
uint32_t eng_cert_count(const eng_pstate *st);
/* Appends pair key[0..len) (len ≤ ENG_PAIR_KEY_BYTES_MAX, not active)
 * with its expiry, the block growing by half (eng_grow). */
tly_err eng_cert_add(eng_pstate *st, const char *key, uint32_t len, int64_t expires_ms);
/* Sets the expiry of the entry at off. */
void eng_cert_set_expires(eng_pstate *st, uint32_t off, int64_t expires_ms);
/* Removes the entry at off; the entries after it keep their order. */
void eng_cert_remove(eng_pstate *st, uint32_t off);

/* A zeroed money state; NULL when out of memory. */
eng_pstate *eng_pstate_new(void);
/* Frees st and everything it owns; st may be NULL. */
void eng_pstate_free(eng_pstate *st);
/* Whether p lies in st's own allocation (eng_pstate_settle). */
static inline bool eng_pstate_inline(const eng_pstate *st, const void *p)
{
    return (uintptr_t)p - (uintptr_t)(st + 1) < st->block_bytes;
}
/* eng_grow for one of st's vectors: one in st's block moves out. st NULL:
 * a vector of no partner's (eng_grow). */
tly_err eng_pstate_grow(const eng_pstate *st, void **v, uint32_t *cap, uint32_t need, size_t elem);
/* Frees p unless it lies in st's block. */
void eng_pstate_release(const eng_pstate *st, void *p);
/* eng_name_free for st's name or region n. */
void eng_pstate_name_free(const eng_pstate *st, eng_name *n);
/* A copy of s in one allocation (its names, buckets, rows, acts, opens and
 * certifications after the struct; its claims, held events, history and
 * archive moved over); s is left empty for the next read, its vectors kept.
 * NULL when out of memory (s unchanged). */
eng_pstate *eng_pstate_settle(eng_pstate *s);
/* Frees what claim c owns and zeroes it. */
void eng_claim_clear(eng_claim *c);

#endif
