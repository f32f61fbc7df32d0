/*
 * engine_internal.h — the program engine's private state, shared by
 * tly_engine.c (the fold), engine_mdf.c (buckets and claims), engine_map.c
 * (arena and hash map), engine_views.c (JSON) and engine_store.c
 * (flush/load). Nothing here is part of the public contract.
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

#include "tly_engine.h"
#include "tly_money.h"

#define ENG_NONE UINT32_MAX

/* A string with its length; ptr points into the arena (NUL-terminated). */
typedef struct eng_name {
    const char *ptr;
    uint32_t len;
} eng_name;

/* Arena chunk: large enough that chunk overhead is negligible, small
 * enough that an engine with few strings stays small. */
#define ENG_ARENA_CHUNK_BYTES (64u * 1024u)

/* ---- arena and map (engine_map.c) ---- */

typedef struct eng_chunk {
    struct eng_chunk *next;
    size_t used, cap;
    char data[];
} eng_chunk;

typedef struct eng_arena {
    eng_chunk *head;
} eng_arena;

/* Copies len bytes plus a NUL into the arena; NULL when out of memory. */
char *eng_arena_copy(eng_arena *a, const void *s, size_t len);
void eng_arena_free(eng_arena *a);

typedef struct eng_slot {
    uint64_t hash;
    const char *key; /* NULL: empty slot; points into the arena */
    uint32_t len;
    uint32_t val;
} eng_slot;

/* A slot table this big or bigger is aligned to, and asks for, huge pages
 * (2 MB on x86-64 and arm64 Linux). */
#define ENG_MAP_HUGE_BYTES ((size_t)2u << 20)

/* Open addressing, linear probing, power-of-two capacity, load ≤ 1/2.
 * Keys are never removed (the engine only ever adds names). */
typedef struct eng_map {
    eng_slot *slots;
    uint32_t cap, count;
} eng_map;

uint64_t eng_hash(const void *s, size_t len);
/* Value of key, or ENG_NONE. */
uint32_t eng_map_get(const eng_map *m, const void *key, size_t len, uint64_t hash);
/* Adds key (which must be absent and must outlive the map) → val. */
tly_err eng_map_put(eng_map *m, const char *key, uint32_t len, uint64_t hash, uint32_t val);
void eng_map_free(eng_map *m);

/* Grows a vector *v of *cap elements of size elem so it holds need. */
tly_err eng_grow(void **v, uint32_t *cap, uint32_t need, size_t elem);
#define ENG_PUSH(vec, n, cap, value)                                                               \
    (eng_grow((void **)&(vec), &(cap), (n) + 1, sizeof *(vec)) != TLY_OK                           \
         ? TLY_NOMEM                                                                               \
         : ((vec)[(n)++] = (value), TLY_OK))

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

/* ---- exceptions ---- */

typedef enum eng_exc_kind {
    ENG_X_HELD = 0,
    ENG_X_LATE,
    ENG_X_CURRENCY_MISMATCH,
    ENG_X_UNKNOWN_SALE,
    ENG_X_RETURN_PARTNER_MISMATCH,
    ENG_X_OVER_RETURN,
    ENG_X_UNKNOWN_PARTNER,
    ENG_X_INSUFFICIENT_FUNDS,
    ENG_X_UNKNOWN_CLAIM,
    ENG_X_DUPLICATE_CLAIM,
    ENG_X_INVALID_TRANSITION,
    ENG_X_APPROVE_EXCEEDS_REQUESTED,
    ENG_X_PAY_EXCEEDS_APPROVED,
    ENG_X_PAYOUT_NOT_FINAL,
    ENG_X_OVERPAYMENT,
    ENG_X_STALE_VERSION,
    ENG_X_PROGRAM_CHANGE_REJECTED,
    ENG_X_UNKNOWN_PROGRAM,
    ENG_X_CLOSE_OUT_OF_ORDER,
    ENG_X_PARTNER_PROGRAM_CHANGE,
    ENG_X_CERT_NOT_ACTIVE,
    ENG_X_COUNT
} eng_exc_kind;

typedef struct eng_exc {
    uint64_t seq;
    uint32_t n; /* order among the exceptions of one seq */
    uint32_t kind;
    uint32_t partner; /* ENG_NONE: no partner */
    eng_name detail;
} eng_exc;

const char *eng_exc_kind_name(uint32_t kind);
/* Kind from its name; ENG_X_COUNT when unknown. */
uint32_t eng_exc_kind_parse(const char *s, size_t len);

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

/* ---- shared helpers (tly_engine.c) ---- */

bool eng_owned(const tly_engine *e, const char *id, size_t len);
/* Finds or creates the partner record of id; *out is its index. */
tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out);
uint32_t eng_program_find(const tly_engine *e, const char *name, size_t len);
tly_err eng_partner_dirty(tly_engine *e, uint32_t p);
tly_err eng_sale_dirty(tly_engine *e, uint32_t s);
tly_err eng_claim_dirty(tly_engine *e, uint32_t c);
/* Records an exception (printf-style detail) at pos; partner ENG_NONE for
 * none. Callers only record exceptions their shard keeps. */
tly_err eng_raise(tly_engine *e, eng_pos pos, eng_exc_kind kind, uint32_t partner, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
tly_err eng_exc_add(tly_engine *e, const eng_exc *x);
/* Interns a pair key; out->ptr is the stable identity. */
tly_err eng_pair_intern(tly_engine *e, const char *key, size_t len, eng_name *out);
/* Builds the registry key of (source, id) into buf (≥ 1 + 64 + 64 bytes). */
uint32_t eng_sale_key(char *buf, const char *src, uint32_t src_len, const char *id,
                      uint32_t id_len);
/* Builds the claim key (partner, claim) into buf (≥ 1 + 128 + 128 bytes). */
uint32_t eng_claim_key(char *buf, const char *partner, uint32_t plen, const char *claim,
                       uint32_t clen);
tly_err eng_program_add_member(eng_program *g, uint32_t p);
eng_pstate *eng_pstate_new(void);
const char *eng_claim_status_name(uint8_t s);
/* Claim status from its name; 0xff when unknown. */
uint8_t eng_claim_status_parse(const char *s, size_t len);
void eng_pstate_free(eng_pstate *st);

/* ---- MDF, rebates, tiers (engine_mdf.c) ---- */

tly_err eng_credit(eng_pstate *st, int32_t period, int64_t x);
tly_err eng_debit(eng_pstate *st, int64_t x);
tly_err eng_available(const eng_pstate *st, int64_t *out);
/* The rebate row of period, created when absent. */
tly_err eng_row_get(eng_pstate *st, int32_t period, eng_row **out);
eng_row *eng_row_find(const eng_pstate *st, int32_t period);
/* Rebate of net revenue R under rules, and the rate reached [R1] [R2]. */
tly_err eng_rebate_calc(const eng_rules *r, int64_t revenue, int64_t *rebate, int32_t *bps);
/* Figure of a row: frozen when final, else the rules in force now [G4]. */
tly_err eng_row_figure(const eng_rules *r, const eng_row *row, int64_t *fig, int32_t *bps);
/* accrued_open and payable of a partner [P4] [R10]. */
tly_err eng_rebate_totals(const eng_rules *r, const eng_pstate *st, int64_t *open,
                          int64_t *payable);
/* Net revenue of periods from..to. */
tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out);
tly_err eng_claim_event(tly_engine *e, uint32_t p, eng_pos pos, const tly_event *ev);
/* Close of g->eop for owned member p [T1] [G5] [M4]. */
tly_err eng_close_partner(tly_engine *e, eng_program *g, uint32_t p, uint64_t seq);
/* The MDF invariant of SPEC section 6; true when it holds. */
bool eng_invariant_ok(const eng_pstate *st);

/* Index of the highest bracket max(R,0) reaches [R1]. */
uint32_t eng_bracket_top(const eng_rules *r, int64_t base);

/* ---- tracing (engine_trace.c) ---- */

/* Starts the lines of one event for owned partner p: seq, cause, the
 * event's source and id (when seq is the record being applied, else
 * empty), effective period and lateness. No-op when p is not traced. */
void eng_trace_begin(tly_engine *e, uint32_t p, uint64_t seq, const char *cause, int32_t period,
                     bool late);
/* For a held event folded at enrollment: the source (and a sale's id) from
 * the registry key the engine kept, when begin found no record. */
void eng_trace_held(eng_pstate *st, const char *key, uint32_t key_len, bool is_sale);
/* Reports one movement with the context of the current event. */
void eng_trace_emit(eng_trace *t, tly_trace_kind kind, int32_t bucket, int64_t amount);
/* Reports a line built by the caller (from t->cur). */
void eng_trace_line(eng_trace *t, const tly_trace_line *line);
/* Slices and figure of a rebate row under rules r: kind is
 * TLY_TRACE_REBATE_FINAL or TLY_TRACE_REBATE_OPEN. */
void eng_trace_rebate(eng_trace *t, const eng_rules *r, const eng_row *row, tly_trace_kind kind,
                      int64_t figure);
/* Attaches the trace to a new owned pstate of partner id when it is traced. */
void eng_trace_attach(tly_engine *e, eng_pstate *st, const char *id, size_t len);
void eng_trace_free(eng_trace *t);

/* One pointer test when tracing is off: the calls stay behind it. */
#define ENG_TRACE_BEGIN(st, ...)                                                                   \
    do {                                                                                           \
        if ((st)->trace != NULL)                                                                   \
            eng_trace_begin(__VA_ARGS__);                                                          \
    } while (0)

#define ENG_TRACE(st, kind, bucket, amount)                                                        \
    do {                                                                                           \
        if ((st)->trace != NULL)                                                                   \
            eng_trace_emit((st)->trace, (kind), (bucket), (amount));                               \
    } while (0)

/* ---- views (engine_views.c) ---- */

json_t *eng_view_json(const tly_engine *e, char view, uint32_t p, bool with_seq);
json_t *eng_liability_json(const tly_engine *e, const eng_program *g);
json_t *eng_exc_json(const tly_engine *e, const eng_exc *x);

/* ---- JSON writer (engine_json.c) ----
 *
 * The section 8 objects are written once, against this writer, which has
 * two back ends: text (the bytes json_dumps(doc, JSON_COMPACT) gives for
 * the same tree, straight into a reusable buffer: the flush path) and tree
 * (jansson objects for the public API). One definition per view, so the
 * stored text and the API objects cannot drift. */

/* Deepest nesting a view needs: object, array, object (one spare). */
#define ENG_JW_DEPTH_MAX 4u

/* A growable byte buffer, reused across documents; failed is sticky. */
typedef struct eng_buf {
    char *data; /* owned; freed by eng_buf_free */
    size_t len, cap;
    bool failed; /* an allocation failed: the contents are incomplete */
} eng_buf;

void eng_buf_free(eng_buf *b);

typedef struct eng_jw {
    eng_buf *text;                   /* text back end; NULL: tree back end */
    bool comma;                      /* text: the next member or element needs a ',' */
    const char *key;                 /* tree: name of the next member */
    char closer[ENG_JW_DEPTH_MAX];   /* text: '}' or ']' of each open one */
    json_t *stack[ENG_JW_DEPTH_MAX]; /* tree: open containers (borrowed) */
    uint32_t depth;
    json_t *root;
    bool failed; /* tree: an allocation failed */
} eng_jw;

/* Starts a document appended to b (its len is not reset). */
void eng_jw_init_text(eng_jw *w, eng_buf *b);
void eng_jw_init_tree(eng_jw *w);
/* Tree back end: the finished document (caller owns it), or NULL when an
 * allocation failed. */
json_t *eng_jw_take(eng_jw *w);
void eng_jw_obj(eng_jw *w);
void eng_jw_arr(eng_jw *w);
void eng_jw_end(eng_jw *w);
/* k is a literal that lives as long as the writer. */
void eng_jw_key(eng_jw *w, const char *k);
/* NULL writes null; bytes that are not UTF-8 (as jansson checks it) write
 * "" exactly as json_stringn's refusal did. */
void eng_jw_str(eng_jw *w, const char *s, size_t len);
void eng_jw_int(eng_jw *w, int64_t v);
void eng_jw_null(eng_jw *w);

/* The section 8 documents against a writer. with_seq adds "seq" (API
 * objects); the stored documents leave it out. */
void eng_view_write(eng_jw *w, const tly_engine *e, char view, uint32_t p, bool with_seq);
/* TLY_OVERFLOW (and nothing written) when a sum leaves int64. */
tly_err eng_liability_write(eng_jw *w, const tly_engine *e, const eng_program *g);
void eng_exc_write(eng_jw *w, const tly_engine *e, const eng_exc *x);

/* ---- end of JSON writer ---- */

#endif
