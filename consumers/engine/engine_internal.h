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
 * on 4) and no file calls one defined above its own floor.
 *
 *   floor      header          files
 *   1 entry    tly_engine.h    tly_engine.c      lifecycle; apply: dispatch of the
 *                                                nine event types, after-event checks
 *                              engine_store.c    flush and load
 *   2 rules    engine_rules.h  engine_program.c  programs and closes
 *                              engine_sales.c    enrollment and held events, sales,
 *                                                returns, certifications
 *                              engine_claims.c   claims, payouts, adjustments
 *                              engine_views.c    the section 8 documents
 *   3 state    engine_state.h  engine_state.c    the engine's tables: partners, dirty
 *                                                marks, exceptions, keys
 *                              engine_mdf.c      one partner's accounts: MDF buckets
 *                                                and deficit, rebate rows and figures,
 *                                                the MDF invariant
 *   4 trace    engine_trace.h  engine_trace.c    the trace hook of `tally explain`
 *   5 base     engine_base.h   engine_map.c      TRY, arena, hash map, vectors
 *                              engine_json.c     the JSON writer
 *              tly_xkind.h     tly_xkind.c       the exception kinds
 *              tly_money.h     tly_money.c       money arithmetic
 *
 * This header sits beside floor 5 (it includes engine_base.h and the
 * public headers) and is read by floors 1 to 4. tly_explain.c is a client
 * above floor 1: it uses the public API only (and TRY).
 *
 * Layout. Every shard keeps the global facts (programs, every partner's
 * enrollment, the registry of every sale and whether it moved money) so
 * that results do not depend on the shard count; only the partners it owns
 * carry money state (eng_pstate). Strings live in one arena that is freed
 * with the engine, so pointers into it are stable and never freed one by
 * one.
 */
#ifndef TLY_ENGINE_INTERNAL_H
#define TLY_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_base.h"
#include "tly_engine.h"
#include "tly_money.h"
#include "tly_xkind.h"

/* ---- programs ---- */

typedef struct eng_tier {
    eng_name name;
    int64_t min_revenue;
    int64_t min_certs;
    int32_t mdf_bps;
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
} eng_rules;

typedef struct eng_program {
    const char *name; /* arena */
    uint32_t name_len;
    char currency[4];
    tly_period_kind kind;
    eng_rules rules;
    int32_t first_period;
    int32_t eop;          /* earliest open period */
    int32_t expired_upto; /* buckets of periods ≤ this have expired [G5] */
    uint32_t *members;    /* owned, enrolled partners (for closes [T7]) */
    uint32_t member_count, member_cap;
    bool dirty; /* state or liabilities share changed */
} eng_program;

/* ---- sales registry (all shards) ---- */

enum eng_sale_state {
    ENG_SALE_HELD = 0, /* partner not enrolled yet */
    ENG_SALE_MOVED,    /* folded: moved money and revenue */
    ENG_SALE_NO_MONEY  /* folded but moved nothing (currency) */
};

typedef struct eng_sale {
    const char *key; /* arena: u8 len(source) ‖ source ‖ id */
    uint32_t key_len;
    uint32_t partner;
    uint32_t detail; /* index into e->details for owned moved sales, else ENG_NONE */
    uint8_t state;
    bool dirty;
    char currency[3];
} eng_sale;

/* Money facts of a sale owned by this shard that moved money. */
typedef struct eng_sale_detail {
    int64_t amount;
    int64_t returned; /* capped returned amount so far */
    int64_t accrual;
    int64_t clawed;
    int32_t bps; /* the rate the accrual used [S7] */
} eng_sale_detail;

/* ---- owned partner state ---- */

typedef struct eng_bucket {
    int32_t period;
    int64_t remaining;
} eng_bucket;

typedef struct eng_row {
    int32_t period;
    bool final;
    int32_t rate_bps; /* frozen at close (final rows only) */
    int64_t revenue;  /* net R [R3] */
    int64_t adj;      /* rebate adjustments [R8] */
    int64_t figure;   /* frozen at close (final rows only) */
    int64_t paid;
} eng_row;

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
    uint32_t sale;   /* sale: registry index */
    const char *key; /* return: sale key; certification: pair key (arena) */
    uint32_t key_len;
    uint8_t type; /* TLY_EV_SALE, TLY_EV_RETURN, TLY_EV_CERTIFICATION */
    uint8_t action;
    char currency[3];
} eng_held;

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

typedef struct eng_pstate {
    eng_name name, region; /* region.ptr NULL when absent */
    tly_partner_kind kind;
    uint32_t tier; /* index into the program's current tiers */
    int64_t accrued, clawed_back, adjusted, expired, pending, approved, paid, deficit;
    eng_bucket *buckets; /* live buckets, by period ascending */
    uint32_t bucket_count, bucket_cap;
    eng_row *rows; /* by period ascending */
    uint32_t row_count, row_cap;
    eng_hist *hist;
    uint32_t hist_count, hist_cap;
    eng_name *certs; /* active (person, cert) pair keys, interned */
    uint32_t cert_count, cert_cap;
    uint32_t *claims; /* claim indices in submit order [C8] */
    uint32_t claim_count, claim_cap;
    eng_held *held;
    uint32_t held_count, held_cap;
    eng_trace *trace; /* NULL unless this partner is traced; not owned */
} eng_pstate;

typedef struct eng_partner {
    const char *id; /* arena */
    uint32_t id_len;
    uint32_t program; /* ENG_NONE: not enrolled */
    bool owned;
    bool dirty;
    uint64_t touch_seq;   /* seq of the last apply that touched it */
    uint32_t *held_sales; /* not owned: registry indices of held sales */
    uint32_t held_sale_count, held_sale_cap;
    eng_pstate *st; /* owned only */
} eng_partner;

/* ---- claims (owned partners) ---- */

enum eng_claim_status {
    ENG_CLAIM_PENDING = 0,
    ENG_CLAIM_APPROVED,
    ENG_CLAIM_PAID,
    ENG_CLAIM_REJECTED,
    ENG_CLAIM_CANCELLED,
    ENG_CLAIM_DENIED
};

typedef struct eng_share {
    int32_t period;
    int64_t amount;
} eng_share;

typedef struct eng_claim {
    const char *id; /* arena */
    uint32_t id_len;
    uint32_t partner;
    uint8_t status;
    bool dirty;
    int64_t requested, approved, paid;
    eng_name reason;   /* ptr NULL: none */
    eng_share *shares; /* reservation by bucket, oldest first */
    uint32_t share_count, share_cap;
} eng_claim;

/* ---- exceptions (kinds: tly_xkind.h) ---- */

typedef struct eng_exc {
    uint64_t seq;
    uint32_t n;       /* order among the exceptions of one seq */
    uint32_t kind;    /* tly_xkind */
    uint32_t partner; /* ENG_NONE: no partner */
    eng_name detail;
} eng_exc;

/* ---- the engine ---- */

/* Position of the record being folded, for exceptions: a held event keeps
 * its own seq and exception counter [D7]. */
typedef struct eng_pos {
    uint64_t seq;
    uint32_t *n;
} eng_pos;

struct tly_engine {
    uint32_t shard, shard_count;
    uint64_t seq;
    uint64_t cur_seq; /* seq being applied */
    eng_arena arena;

    eng_program *programs;
    uint32_t program_count, program_cap;
    eng_map program_map;

    eng_partner *partners;
    uint32_t partner_count, partner_cap;
    eng_map partner_map;

    eng_sale *sales;
    uint32_t sale_count, sale_cap;
    eng_map sale_map;
    eng_sale_detail *details;
    uint32_t detail_count, detail_cap;

    eng_claim *claims;
    uint32_t claim_count, claim_cap;
    eng_map claim_map;

    eng_map pair_map; /* interned (person, cert) pair keys */

    eng_exc *excs;
    uint32_t exc_count, exc_cap;
    uint32_t exc_flushed; /* excs[0..exc_flushed) are written */

    /* dirty lists (indices); flags on the objects avoid duplicates */
    uint32_t *dirty_partners;
    uint32_t dirty_partner_count, dirty_partner_cap;
    uint32_t *dirty_sales;
    uint32_t dirty_sale_count, dirty_sale_cap;
    uint32_t *dirty_claims;
    uint32_t dirty_claim_count, dirty_claim_cap;

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
