/*
 * engine_internal.h — the program engine's data model: the types every
 * floor of the engine shares (no functions). Nothing here is part of the
 * public contract.
 *
 * Floors. The engine reads top-down: a file calls only files on the floors
 * below its own, never one above and never one beside it. Each floor has
 * one header declaring its functions, and each header includes the one of
 * the floor below, so a file sees only its own floor's internal functions
 * and those under it: an internal call upward does not compile. The
 * public API (tly_engine.h) is visible everywhere; each public function
 * lives on the floor of what it does (tly_engine_view on 2,
 * tly_engine_shard_of and tly_engine_trace_open on 3, tly_engine_set_trace
 * on 5) and no file calls one defined above its own floor.
 *
 *   floor      header           files
 *   1 entry    tly_engine.h     tly_engine.c      lifecycle; apply: dispatch of the
 *                                                 nine event types, after-event checks
 *                               engine_store.c    flush, load, the cache's trim
 *   2 rules    engine_rules.h   engine_program.c  programs and closes
 *                               engine_sales.c    enrollment and held events, sales,
 *                                                 returns, certifications
 *                               engine_claims.c   claims, payouts, adjustments
 *                               engine_views.c    the section 8 documents
 *   3 state    engine_state.h   engine_state.c    the engine's tables: the partner and
 *                                                 sale caches (read from the store on
 *                                                 a miss), members, dirty marks,
 *                                                 exceptions, keys
 *                               engine_mdf.c      one partner's accounts: MDF buckets
 *                                                 and deficit, rebate rows and figures,
 *                                                 its liability share, the invariant
 *   4 records  engine_records.h engine_records.c  the stored records: pack and unpack;
 *                                                 a partner's certification block
 *   5 trace    engine_trace.h   engine_trace.c    the trace hook of `tally explain`
 *   6 base     engine_base.h    engine_map.c      TRY, arena, copies, hash map, vectors
 *                               engine_json.c     the JSON writer
 *              engine_stage.h   engine_stage.c    a flush's staged puts
 *              tly_xkind.h      tly_xkind.c       the exception kinds
 *              tly_money.h      tly_money.c       money arithmetic
 *
 * This header sits beside floor 6 (it includes engine_base.h and the
 * public headers) and is read by floors 1 to 5. tly_explain.c is a client
 * above floor 1: it uses the public API only (and TRY).
 *
 * Layout. What every shard keeps in memory is global and small: the
 * programs (their rules, periods and this shard's liability sums). The
 * rest is a cache over the shard's view store (tly_engine_set_store):
 * partners — the owned ones with their money state (eng_pstate) and
 * claims, and other shards' partners' enrollment — and sales, each read
 * on demand and dropped when clean and beyond a limit; what changed stays
 * until the flush writes it. A sale is registered by every shard in a
 * compact record (its partner and currency), so that a return folded by
 * one shard can be judged against a sale of another shard's partner
 * ([S1] [S2]) without any shard holding all sales in memory; the money
 * facts of a sale live with its owner only. A partner's final rebate rows
 * leave its state for an archive of their own, the partner keeping what
 * its rules read of them (eng_pstate), so that a partner's record and
 * memory do not grow with every period it closes and a batch rewrites only
 * what its events can change. Without a store the cache is the whole state
 * (nothing is dropped, the archive stays in memory): tests and `tally
 * explain`.
 *
 * Cache entries own their strings (eng_copy), so that dropping one frees
 * it; the arena holds only global names (programs, tier names), freed with
 * the engine. An owned partner read from the store holds its state in one
 * block, strings and lists after the struct (eng_pstate's block_bytes).
 * Slot indices of the caches are stable between two flushes: entries are
 * dropped only by a flush (at its end, or with flush drops a partner as
 * soon as the flush has written it: engine_store.c).
 */
#ifndef TLY_ENGINE_INTERNAL_H
#define TLY_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_base.h"
#include "tly_engine.h"
#include "tly_limits.h"
#include "tly_money.h"
#include "tly_xkind.h"

/* ---- programs ---- */

typedef struct eng_tier {
    eng_name name;
    int64_t min_revenue;
    int64_t min_certs;
    int32_t mdf_bps;
    int32_t rebate_bonus_bps; /* [R14] */
    int32_t referral_bps;     /* [Q1] */
    uint32_t benefit_count;
    eng_name benefits[TLY_BENEFITS_MAX]; /* arena */
} eng_tier;

typedef struct eng_rules {
    int64_t version;
    uint32_t tier_count;
    eng_tier tiers[TLY_TIERS_MAX];
    tly_rebate_mode mode;
    uint32_t bracket_count;
    tly_bracket brackets[TLY_BRACKETS_MAX];
    int32_t expiry_n; /* mdf_expiry_periods */
    int32_t window_w; /* tier_window_periods */
    /* section 10; the defaults are v1's */
    tly_rebate_basis basis; /* [R11] */
    int32_t baseline_k;     /* growth: 1..12; else 0 */
    int64_t rebate_min;     /* [K2] */
    int64_t rebate_cap;     /* [K3]; ENG_NO_CAP: none */
    int64_t mdf_cap;        /* [K1] per partner and period; ENG_NO_CAP: none */
    tly_tier_moves moves;   /* [T8] */
    int32_t grace;          /* [T9] */
} eng_rules;

/* A cap that is not set. */
#define ENG_NO_CAP INT64_MAX

/* An amount of one period: a claim's reservation in a bucket, an open
 * rebate figure. */
typedef struct eng_share {
    int32_t period;
    int64_t amount;
} eng_share;

/* What took effect in one period, for the finance outputs (SPEC section
 * 11): a partner's (its journal) or the sum over this shard's members (its
 * program's report). Each figure is booked when its event is folded, in
 * the period section 11 names: revenue, accruals, clawbacks and referral
 * fees by the event's effective period; adjustments by the earliest open
 * period when folded [RP1]; approvals, payments and payouts by max(period
 * of at, earliest open) [RP5]; expiries by the closed period, a release
 * into an expired bucket by the release's period [RP3]; the rebate figure
 * of a period when its close makes it final. */
enum eng_act_field {
    ENG_ACT_REVENUE = 0,
    ENG_ACT_ACCRUED,
    ENG_ACT_CLAWED,
    ENG_ACT_ADJUSTED,
    ENG_ACT_EXPIRED,
    ENG_ACT_APPROVED,
    ENG_ACT_PAID,
    ENG_ACT_REBATE, /* final figures */
    ENG_ACT_REFERRAL,
    ENG_ACT_PAYOUT,
    ENG_ACT_COUNT
};

typedef struct eng_act {
    int32_t period;
    int64_t v[ENG_ACT_COUNT];
} eng_act;

/* A partner's share of its program's liabilities (section 8), or their
 * sum over this shard's members. */
typedef struct eng_liab {
    int64_t available, pending, approved, open, payable;
} eng_liab;

typedef struct eng_program {
    const char *name; /* arena */
    uint32_t name_len;
    char currency[4];
    tly_period_kind kind;
    eng_rules rules;
    int32_t first_period;
    int32_t eop;          /* earliest open period */
    int32_t expired_upto; /* buckets of periods ≤ this have expired [G5] */
    /* The highest eop − max(window, baseline) the program has had (never
     * lower, so that what is stored depends on the events folded and not
     * on when the flushes fell); 0 at first (periods are ≥ 0). Archived
     * rows of periods from here on keep their revenue with the partner
     * (eng_pstate's rev). */
    int32_t arch_h;
    /* Σ of the shares the owned members had at their last flush (each
     * member stores its own, eng_partner.liab); the flush settles the
     * members that changed, so no share is ever summed afresh. */
    eng_liab liab;
    /* what took effect per period, summed over the shard's members, by
     * period ascending; open_rebate: the open figures' estimate, settled
     * at each flush like liab (each member keeps its share, opens) */
    eng_act *rep;
    uint32_t rep_count, rep_cap;
    eng_share *open_rebate;
    uint32_t open_count, open_cap;
    bool dirty; /* rules, periods or liability sums changed */
} eng_program;

/* ---- sales: the registry every shard keeps, cached ---- */

/* The conversion a sale used into its program's currency [F2]: 1 unit of
 * the sale's currency is units / 10^scale of the program's, and the
 * minor-unit exponents differ by ediff (e_K - e_C); {1, 0, 0} when the
 * currencies are the same. */
typedef struct eng_fx {
    int64_t units;
    int32_t scale;
    int32_t ediff;
} eng_fx;

#define ENG_FX_SAME ((eng_fx){1, 0, 0})

/* Money facts of a sale of an owned partner that moved money: amount and
 * returned in the sale's currency [F8], accrual and clawed in the
 * program's. */
typedef struct eng_sale_detail {
    int64_t amount;
    int64_t returned; /* capped returned amount so far */
    int64_t accrual;
    int64_t clawed;
    int32_t bps; /* the rate the accrual used [S7] */
    eng_fx fx;   /* the rate the sale used [F4] */
} eng_sale_detail;

/* A registered sale. Whether it moved money is not stored but derived
 * (engine_sales.c): a sale of an owned partner moved money when it has
 * its facts (has_detail); a sale of another shard's partner when that
 * partner is enrolled and the sale is in its program's currency — exactly
 * the moments the owner folds it, at the sale or at the enrollment. */
typedef struct eng_sale {
    char *key; /* one block of e->sale_blocks: key (u8 len(source) ‖ source ‖ id) ‖
                * partner id ‖ NUL; NULL: a free slot */
    uint32_t key_len;
    uint32_t partner_len; /* the partner id follows the key: ENG_SALE_PARTNER */
    char currency[3];
    bool has_detail;
    bool dirty;
    uint64_t used; /* seq of its last lookup: what is dropped first */
    uint64_t seq;  /* the sale's own seq and business time: whether a sale */
    int64_t at_ms; /* of another shard's partner converted [F2] [F7] */
    eng_sale_detail d;
} eng_sale;

#define ENG_SALE_PARTNER(s) ((s)->key + (s)->key_len)
#define ENG_SALE_BLOCK_BYTES(s) ((size_t)(s)->key_len + (s)->partner_len + 1)

/* ---- owned partner state ---- */

typedef struct eng_bucket {
    int32_t period;
    int64_t remaining;
} eng_bucket;

typedef struct eng_row {
    int32_t period;
    bool final;
    bool has_baseline; /* frozen at close: the basis was growth [R17] */
    bool dirty;        /* an archived row a payout changed since its flush */
    int32_t rate_bps;  /* frozen at close (final rows only) */
    /* The first row of an archived chunk: where the chunk is stored. The
     * first period of the partner's chunk archived before it (the chain
     * of "S/7/", ENG_ARCH_NONE at its end), or ENG_ARCH_OLD for a chunk
     * under "S/5/" (engine_records.h). In the padding: no larger. */
    int32_t chunk_prev;
    int64_t revenue; /* net R [R3] */
    int64_t adj;     /* rebate adjustments [R8] */
    int64_t figure;  /* frozen at close (final rows only) */
    int64_t paid;
    int64_t basis, baseline; /* X and B, frozen at close [R17] */
    int64_t referral;        /* the period's referral fees [Q3] */
    int64_t referred;        /* referred amounts, tier revenue only [Q2] */
    int64_t mdf_gross;       /* accruals credited to this period [K1] */
} eng_row;

/* Rows in a chunk of the archive: a flush archives whole chunks (the
 * rows of fewer stay with the partner), so a close of a program's period
 * writes a chunk per member every fourth close, not a row every close
 * (100,000 members: 100,000 puts scattered over the archive's keys). */
#define ENG_ARCH_CHUNK_ROWS 4u

/* The end of a partner's chain of chunks under "S/7/" (eng_pstate's
 * arch_head, eng_row's chunk_prev), and a chunk stored under "S/5/". */
#define ENG_ARCH_NONE (-1)
#define ENG_ARCH_OLD (-2)

/* A partner's archive summary as a flush stores it: rows[0..n) join the
 * archive, which then holds count rows, the newest of period last, owing
 * payable, its newest chunk under "S/7/" starting at period head, and the
 * revenue of its rows from period from on stays with the partner,
 * rev_count entries (eng_arch_plan_of). */
typedef struct eng_arch_plan {
    uint32_t n, count;
    int32_t last, head;
    int64_t payable;
    int32_t from;
    uint32_t rev_count;
} eng_arch_plan;

/* What the rules read of an archived row: the revenue of a tier window
 * and of a growth baseline [T1] [Q2] [R15]. */
typedef struct eng_rev {
    int32_t period;
    int64_t revenue;
    int64_t referred;
} eng_rev;

typedef struct eng_hist {
    uint64_t seq;
    int32_t period;
    eng_name from, to;
} eng_hist;

/* An event of an unenrolled partner, kept until enrollment [E3]. */
typedef struct eng_held {
    uint64_t seq;
    int64_t at_ms;
    int64_t amount;
    uint32_t next_n; /* next exception index of this seq [D7] */
    char *key;       /* owned: sale and return: sale key; certification: pair key */
    uint32_t key_len;
    uint8_t type; /* TLY_EV_SALE, TLY_EV_RETURN, TLY_EV_CERTIFICATION,
                   * TLY_EV_REFERRAL (key: source and deal) */
    uint8_t action;
    char currency[3];
    int64_t expires_ms; /* certification: ENG_NO_EXPIRY when none */
    char *ref;          /* owned: the event's own (source, id) key */
    uint32_t ref_len;
} eng_held;

/* A partner's active certification pairs [T4], each with the expiry of
 * its latest earned [T10] [T14], in the order they were first earned (the
 * partner record lists them so): one block per partner (eng_pstate's
 * certs), its entries back to back, each
 *
 *   int64 expires_ms ‖ u16 key length ‖ pair key (u8 len(person) ‖ person ‖ cert)
 *
 * the numbers unaligned (memcpy). Why: an array of {owned key, expiry}
 * cost a 24-byte entry with its growth slack and a malloc per key (its
 * header, rounded to 16): 65 bytes a pair as a partner was read back (20.1
 * MB for the 310,000 pairs of `bench fold` at 10M events), 68 as folded.
 * The block costs ENG_CERT_HEAD + the key's bytes a pair, its slack and
 * one malloc per partner: at that bench's keys (5 bytes, 3.1 pairs a
 * partner; malloc's bytes over 100,000 partners) 21.0 bytes a pair read
 * back (sized exactly), 23.3 as folded (grown by half). A partner holds a
 * few pairs: finding one is a walk (engine_records.c, eng_cert_find). */
#define ENG_CERT_HEAD 10u
/* A pair key at most: its length byte and two names (events bound both:
 * tly_event.c). */
#define ENG_PAIR_KEY_BYTES_MAX (1u + 2u * TLY_NAME_BYTES_MAX)
_Static_assert(ENG_PAIR_KEY_BYTES_MAX <= UINT16_MAX, "a pair key's length fits its u16");

/* One entry of a partner's certs as read (eng_cert_at): key borrows the
 * block. */
typedef struct eng_cert {
    const char *key;
    uint32_t key_len;
    int64_t expires_ms;
} eng_cert;

#define ENG_NO_EXPIRY INT64_MAX

/* The trace hook (engine_trace.c). One per engine; the pstate of every
 * traced partner points at it, so a movement deep in the bucket code can
 * report itself with one pointer test and no engine in reach. */
typedef struct eng_trace {
    tly_engine_trace_fn fn;
    void *ctx;
    char *partner; /* owned; NULL: every owned partner */
    size_t partner_len;
    tly_trace_line cur; /* the event being traced: seq, cause, ids, period */
} eng_trace;

/* ---- claims (owned partners) ---- */

enum eng_claim_status {
    ENG_CLAIM_PENDING = 0,
    ENG_CLAIM_APPROVED,
    ENG_CLAIM_PAID,
    ENG_CLAIM_REJECTED,
    ENG_CLAIM_CANCELLED,
    ENG_CLAIM_DENIED
};

#define ENG_NO_ORDINAL UINT64_MAX

/* Where a claim's record lies: "S/3/" ‖ 0 ‖ be32 bucket ‖ u8 length ‖
 * partner ‖ claim, its bucket the log position of its submit shifted
 * right by ENG_CLAIM_BUCKET_SHIFT, plus one (0: a record written before
 * buckets, under "S/3/" ‖ u8 length ‖ partner ‖ claim). Why: keyed by
 * partner first, the claims a batch files and decides fall on as many
 * pages as there are partners filing; at 10M events of `bench fold`
 * (858,000 claims) a batch's 35,000 claim puts (1.4 MB) dirtied 14,000
 * pages (57 MB), as many as all its partner records did. By bucket first,
 * they fall on the newest bucket's pages. A partner keeps which buckets
 * hold its claims (eng_pstate's claim_hi, claim_lo, claim_mask), and a
 * look-up by id tries those, newest first. */
#define ENG_CLAIM_BUCKET_SHIFT 20u
/* The buckets below claim_hi that claim_mask tells apart; older ones
 * (down to claim_lo) are all tried. */
#define ENG_CLAIM_MASK_BUCKETS 64u

/* A partner's claim filter: ENG_CLAIM_FILTER_BITS bits, ENG_CLAIM_FILTER_K
 * of them set by each claim id it ever filed (a Bloom filter, stored with
 * the partner). A submit checks [C2] against the store only when the
 * filter may hold its id: a new id is nearly always new at sight, and the
 * filter's size does not grow with the claims. With n claims a new id
 * needs a read with probability about (1 - e^(-K n / BITS))^K: 0.2 % at
 * 10 claims, 3 % at 30, 40 % at 100 (the read is what every submit cost
 * without the filter: 3M-event fold 10-15 % slower). */
#define ENG_CLAIM_FILTER_BITS 256u
#define ENG_CLAIM_FILTER_K 3u
#define ENG_CLAIM_FILTER_WORDS (ENG_CLAIM_FILTER_BITS / 64u)
_Static_assert(ENG_CLAIM_FILTER_BITS % 64u == 0, "the filter is whole 64-bit words");
_Static_assert(ENG_CLAIM_FILTER_K * 21u <= 64u, "each bit takes 21 bits of a 64-bit hash");

/* A claim of an owned partner. Its ordinal is its place in the partner's
 * submit order [C8] (0, 1, ...), stored with it ("S/3/"), so that the
 * partner's record need not list its claims. */
typedef struct eng_claim {
    eng_name id;      /* owned */
    uint64_t ordinal; /* ENG_NO_ORDINAL: a record written before ordinals */
    uint32_t bucket;  /* its key's bucket, 0: none (ENG_CLAIM_BUCKET_SHIFT) */
    bool loaded;      /* the fields below are read (or set) */
    uint8_t status;
    bool dirty;
    int64_t requested, approved, paid;
    eng_name reason;   /* owned; ptr NULL: none */
    eng_share *shares; /* reservation by bucket, oldest first */
    uint32_t share_count, share_cap;
} eng_claim;

/* The money state of an owned partner. Strings are owned (name, region,
 * certs, held keys, claims) except the tier names of the history, which
 * are global (a program's rules, or interned at load). */
typedef struct eng_pstate {
    eng_name name, region; /* owned; region.ptr NULL when absent */
    tly_partner_kind kind;
    uint32_t tier;  /* index into the program's current tiers */
    uint32_t fails; /* failing closes kept by grace [T9] */
    /* The archive (below) is stored in chunks by period first ("S/7/"),
     * so that the chunks a close archives for every member go in side by
     * side instead of under each partner's key all over the archive. Each
     * names the partner's chunk archived before it; arch_head is the
     * newest one's first period (ENG_ARCH_NONE: none there). Chunks
     * archived before that are under "S/5/", by partner. */
    int32_t arch_head;
    int64_t accrued, clawed_back, adjusted, expired, pending, approved, paid, deficit;
    eng_bucket *buckets; /* live buckets, by period ascending */
    uint32_t bucket_count, bucket_cap;
    eng_row *rows; /* by period ascending, after the archived ones */
    uint32_t row_count, row_cap;
    /* The archive: final rows, stored in chunks of ENG_ARCH_CHUNK_ROWS
     * ("S/7/", engine_records.h) and left out of the partner's record,
     * so that neither its record nor its memory grows with every period
     * it ever closed, and a batch rewrites only the rows its sales can
     * change. A flush archives every final row in whole chunks (the
     * final rows of fewer stay in rows), so arch_count and arch_n are
     * whole chunks, and arch holds whole chunks only. What the partner
     * needs of them is summed or kept here: what they owe, and the
     * revenue of those of periods from rev_from on, which the rules read
     * at every close and flush (the tier window, the growth baseline:
     * eng_window_sum); rev_from is its program's arch_h at the partner's
     * last flush, so rev holds a window's or baseline's rows at most.
     * The rows themselves are read when a payout names one of their
     * periods (eng_arch_row), when the rebate document lists them, or
     * when the rules reach back before rev_from (a new version with a
     * longer window or baseline: eng_arch_needed). Without a store every
     * archived row stays in arch. */
    uint32_t arch_count;  /* rows archived */
    int32_t arch_last;    /* the newest archived row's period (arch_count > 0) */
    int64_t arch_payable; /* Σ figure + referral − paid over them [R10] [Q3] */
    eng_row *arch;        /* archived rows in memory, by period ascending */
    uint32_t arch_n, arch_cap;
    bool arch_all;         /* arch holds every archived row */
    uint32_t arch_pending; /* rows[0..arch_pending) archived by the flush under way */
    eng_rev *rev;          /* every archived row of period ≥ rev_from, ascending */
    uint32_t rev_count, rev_cap;
    int32_t rev_from;
    eng_hist *hist;
    uint32_t hist_count, hist_cap;
    char *certs;                   /* active (person, cert) pairs: entries of eng_cert's layout */
    uint32_t cert_bytes, cert_cap; /* used, allocated (no count: a walk counts) */
    /* hist is the partner's cold part: only a tier change adds to it and
     * only the tier document reads it. The store keeps it apart
     * ("S/6/<partner>", written when it changes: cold_dirty), so the
     * partner record that every batch rewrites does not grow with the tier
     * changes of years (at 10M events of `bench fold` it was 80 of its 431
     * bytes); it is read when needed (eng_partner_cold). cold: hist is in
     * memory; else cold_hist is how many entries the store holds. */
    bool cold, cold_dirty;
    uint32_t cold_hist;
    /* Claims: with a store only those an event named since the last flush
     * (read from "S/3/" on demand: eng_claim_lookup), or every one while
     * claims_all; without a store every one. By ordinal ascending. So
     * neither the partner's record nor its memory grows with every claim
     * it ever filed, and a claim is found without a walk over all of them.
     * A record written before ordinals (claims_legacy) lists every claim's
     * id in submit order; its claims are all kept until its first flush,
     * which writes them with their ordinals (eng_partner_dirty). */
    eng_claim *claims;
    uint32_t claim_count, claim_cap;
    uint64_t claim_total;                          /* claims ever filed: the next one's ordinal */
    uint64_t claim_filter[ENG_CLAIM_FILTER_WORDS]; /* their ids (eng_claim_filter_add) */
    bool claims_all;                               /* claims holds all claim_total of them */
    bool claims_legacy;                            /* read from a record that lists every claim */
    /* The buckets holding its claims (ENG_CLAIM_BUCKET_SHIFT): the newest
     * (0: none) and the oldest; bit d of claim_mask is set when bucket
     * claim_hi − d holds one (d < ENG_CLAIM_MASK_BUCKETS). claims_unbucketed:
     * some were filed before buckets, under the partner's own keys. */
    uint32_t claim_hi, claim_lo;
    uint64_t claim_mask;
    bool claims_unbucketed;
    eng_held *held;
    uint32_t held_count, held_cap;
    eng_act *acts; /* what took effect per period [section 11], ascending */
    uint32_t act_count, act_cap;
    eng_share *opens; /* its open rebate figures as of its last flush (its
                       * share of its program's open_rebate) */
    uint32_t open_count;
    eng_trace *trace; /* NULL unless this partner is traced; not owned */
    /* Bytes after the struct in its own allocation: a state read from the
     * store is one block (eng_pstate_settle), its names, buckets, rows,
     * acts, open figures and certifications after the struct, each vector
     * sized to what it holds plus ENG_SETTLE_SPARE entries. A vector that
     * lies there (eng_pstate_inline) is never freed or reallocated on its
     * own: growing it moves it out (eng_pstate_grow). 0: every vector is
     * its own allocation (a state the fold made). Why: at 100,000 partners
     * a batch drops and reads back every partner, and the eight
     * allocations of each cost glibc's malloc and free 11 % of the fold's
     * time (10M events of `bench fold`, one shard, perf; 6.5 % as one
     * block); the peak fell from 252 to 244 MiB. */
    uint32_t block_bytes;
} eng_pstate;

/* The CPU's cache line (x86-64, arm64): what one prefetch loads. */
#define ENG_CACHE_LINE_BYTES 64u

/* Spare entries a settled state's buckets, rows and acts get: between two
 * flushes the fold adds a period's bucket, row and act to most partners.
 * The 10M one-shard peak of `bench fold` with 0, 1 and 2: 275, 243 and
 * 260 MiB (without a spare most vectors move out of their block at once,
 * and grow by half; with two most blocks carry room never used). */
#define ENG_SETTLE_SPARE 1u

/* A cached partner: an owned one with its state, or another shard's
 * partner, of which only the enrollment is kept. */
typedef struct eng_partner {
    char *id; /* owned; NULL: a free slot */
    uint32_t id_len;
    uint32_t program; /* ENG_NONE: not enrolled */
    bool owned;
    bool dirty;
    bool read_back;      /* read back after a commit, unchanged since (read_back_idle) */
    uint64_t touch_seq;  /* seq of the last apply that touched it */
    uint64_t enroll_seq; /* seq of its enrollment; 0: not enrolled */
    uint64_t used;       /* seq of its last lookup: what is dropped first */
    uint64_t visit;      /* the member walk that last visited it */
    eng_liab liab;       /* owned, enrolled: its share as of its last flush */
    eng_pstate *st;      /* owned only */
    /* Its funds the next close expires as its last flush stored them
     * ("E/"), so a flush that would store the same skips the document;
     * known only while cached (a partner read from the store writes it
     * again). exp_next: what this flush stores, kept once it succeeds. */
    bool exp_known, exp_next_set;
    uint32_t exp_program;
    int64_t exp_amount, exp_next;
} eng_partner;

/* ---- exchange rates [F1]: every shard keeps every rate ---- */

typedef struct eng_rate {
    int64_t at_ms;
    uint64_t seq; /* the rate event's: of equal at, the later folded wins */
    int64_t units;
    int32_t scale;
} eng_rate;

/* The rates of one pair, by (at, seq) ascending. */
typedef struct eng_rate_pair {
    char from[3], to[3];
    bool dirty;
    eng_rate *rates;
    uint32_t count, cap;
} eng_rate_pair;

/* ---- exceptions (kinds: tly_xkind.h) ---- */

/* Exceptions are an append-only history, listed in the order they are
 * raised: by at_seq, the record whose fold raised them, then n. seq is the
 * event's own: a held event's exceptions, raised at its enrollment, keep
 * their event's seq [D7]. All exceptions one record raises come from one
 * shard, so (at_seq, n) orders every shard's exceptions as one list. */
typedef struct eng_exc {
    uint64_t seq;
    uint64_t at_seq;
    uint32_t n;           /* order among the exceptions raised at at_seq */
    uint32_t kind;        /* tly_xkind */
    char *text;           /* owned block: partner id (partner_len bytes, when any) ‖ detail ‖
                           * source ‖ event id */
    uint32_t partner_len; /* ENG_NONE: no partner */
    uint32_t detail_len, source_len, id_len;
    bool has_amount; /* the money the event names [section 11] */
    int64_t amount;
    char currency[3]; /* of amount */
} eng_exc;

#define ENG_EXC_DETAIL(x) ((x)->text + ((x)->partner_len == ENG_NONE ? 0 : (x)->partner_len))
#define ENG_EXC_SOURCE(x) (ENG_EXC_DETAIL(x) + (x)->detail_len)
#define ENG_EXC_ID(x) (ENG_EXC_SOURCE(x) + (x)->source_len)

/* The event an exception is about: the record being folded, or the held
 * event folded at its enrollment. */
typedef struct eng_about {
    tly_str source, id;
    bool has_amount;
    int64_t amount;
    char currency[3]; /* all zero: the partner's program's */
} eng_about;

/* A claim read by tly_engine_load before its partner (key order). */
typedef struct eng_loose_claim {
    char *key; /* owned claim key */
    uint32_t key_len;
    bool taken;
    uint32_t prev; /* the partner's loose claim stashed before, or ENG_NONE */
    eng_claim c;
} eng_loose_claim;

/* ---- the engine ---- */

/* Position of the record being folded, for exceptions: a held event keeps
 * its own seq and exception counter [D7]. */
typedef struct eng_pos {
    uint64_t seq;
    uint32_t *n;
} eng_pos;

/* A cache's slots: entries live in a vector whose free slots are reused;
 * live counts the used ones. */
typedef struct eng_slots {
    uint32_t count, cap, live; /* slots in the vector, allocated, in use */
    uint32_t *free;            /* free slot indices */
    uint32_t free_count, free_cap;
} eng_slots;

struct tly_engine {
    uint32_t shard, shard_count;
    uint64_t seq;
    uint64_t cur_seq; /* seq being applied */
    eng_arena arena;  /* global names: programs, tier names */
    eng_map names;    /* tier names of loaded histories, interned in the arena */

    eng_program *programs;
    uint32_t program_count, program_cap;
    eng_map program_map;

    eng_rate_pair *pairs; /* few: a linear search */
    uint32_t pair_count, pair_cap;

    eng_partner *partners;
    eng_slots partner_slots;
    eng_map partner_map;

    eng_sale *sales;
    eng_slots sale_slots;
    eng_map sale_map;
    eng_pool sale_blocks; /* the sales' key blocks */

    eng_loose_claim *loose; /* tly_engine_load's claims, until their partner */
    uint32_t loose_count, loose_cap;
    eng_map loose_map;         /* claim key -> loose index */
    eng_map loose_partner_map; /* partner id -> its last loose claim's index */

    eng_exc *excs; /* with a store: only those not yet flushed */
    uint32_t exc_count, exc_cap;
    uint32_t exc_flushed; /* excs[0..exc_flushed) are written */
    uint32_t raised;      /* exceptions raised by the record being folded */
    eng_about about;      /* what the exceptions raised now are about */

    /* the view store behind the caches (get NULL: none, nothing is dropped) */
    tly_engine_store store;
    eng_pstate *scratch;        /* partner states are read into this one, then settled */
    tly_engine_sale_fn sale_fn; /* other shards' sales, from the log (NULL: registered) */
    void *sale_ctx;
    uint32_t partners_max, sales_max; /* cache limits, clean entries */
    bool flush_drops;                 /* tly_engine_set_flush_drops */
    /* A document reader's engine (tly_view_reader_bind): it renders what
     * the store holds, a broken invariant included (`audit diff` shows
     * it), and never flushes. */
    bool reads_only;
    bool dropped_in_flush; /* the flush under way dropped an entry */
    bool broken;           /* !tly_engine_intact */
    /* Read-back (tly_engine_set_read_back, engine_store.c): the ids of the
     * partners the last flush wrote and dropped, each u8 length ‖ id, to
     * be read again once its commit is done; read_back_idle counts the
     * partners read back that no event has changed since (tly_engine_dirty
     * counts them with the changed entries: they are held the same). */
    uint32_t read_back_max;
    char *read_back_ids;
    uint32_t read_back_bytes, read_back_cap, read_back_count;
    uint32_t read_back_idle;
    uint64_t visit; /* the latest member walk */

    /* dirty lists (indices); flags on the objects avoid duplicates */
    uint32_t *dirty_partners;
    uint32_t dirty_partner_count, dirty_partner_cap;
    uint32_t *dirty_sales;
    uint32_t dirty_sale_count, dirty_sale_cap;

    /* tracing: NULL when off; rec/ev are the record being applied, set
     * only while tracing (source and id of the lines) */
    eng_trace *trace;
    const tly_record *trace_rec;
    const tly_event *trace_ev;

    /* partners touched by the current apply, for the invariant check */
    uint32_t *touched;
    uint32_t touched_count, touched_cap;
};

#endif
