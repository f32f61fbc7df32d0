/*
 * gen.h — internals of `tally gen`: a seeded, deterministic simulation of a
 * partner program that writes JSON lines {"source": S, "event": E}.
 *
 * The generator is split in three files:
 *   gen_out.c   the JSON line builder, per-source batches, resends, flushing;
 *   gen_world.c the PRNG, the calendar, the programs, partners and catalog;
 *   gen_sim.c   the clock, the action queue and every event kind.
 * cmd_gen.c parses the command line and drives tly_gen_run().
 *
 * Determinism: every choice comes from xoshiro256** seeded by splitmix64 of
 * --seed; nothing reads the clock, the locale or the environment, and there
 * is no floating point, so the same flags give the same bytes everywhere.
 */
#ifndef TLY_GEN_H
#define TLY_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tly_limits.h"
#include "tly_period.h"

/* --- limits of the generator (not wire limits, so not in tly_limits.h) --- */

#define TLY_GEN_DAY_MS INT64_C(86400000)

/* Programmer errors only (a record over TLY_GEN_LINE_BYTES_MAX, a string
 * that would need JSON escaping): stays on in release builds. */
#define TLY_GEN_ASSERT(cond)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tly_gen_panic(__FILE__, __LINE__, #cond);                                              \
    } while (0)
_Noreturn void tly_gen_panic(const char *file, int line, const char *what);

/* --- options --- */

typedef struct tly_gen_opts {
    uint64_t seed;       /* --seed, default 1 */
    uint64_t events;     /* --events, distinct events (resends come on top) */
    uint64_t partners;   /* --partners, 0 = scale with events */
    int64_t start_ms;    /* --start, midnight UTC of the first day */
    uint32_t months;     /* --months, length of the simulated span */
    uint32_t resend_pct; /* --resend-pct, 0..100 */
} tly_gen_opts;

/* --- PRNG: xoshiro256** seeded through splitmix64 --- */

typedef struct tly_gen_rng {
    uint64_t s[4];
} tly_gen_rng;

void tly_gen_rng_seed(tly_gen_rng *r, uint64_t seed);
uint64_t tly_gen_rng_next(tly_gen_rng *r);
/* Uniform in [0, n), n ≥ 1, without modulo bias. */
uint64_t tly_gen_rng_below(tly_gen_rng *r, uint64_t n);
/* Uniform in [lo, hi], lo ≤ hi. */
int64_t tly_gen_rng_range(tly_gen_rng *r, int64_t lo, int64_t hi);
/* True with probability per_10k / 10000. */
bool tly_gen_rng_chance(tly_gen_rng *r, uint32_t per_10k);
/* Index into weights[0..n) picked in proportion to the weights. */
uint32_t tly_gen_rng_weighted(tly_gen_rng *r, const uint32_t *weights, uint32_t n);

/* --- calendar: the period grid of tly_period.h (quarter y*4+q-1, month
 * y*12+m-1); these wrappers only give it the shape the generator needs. --- */

/* tly_period_format for the generator's years (2000..9999, checked by
 * cmd_gen.c): asserts instead of clamping, since anything else is a bug. */
void tly_gen_period_format(tly_period_kind kind, int32_t p, char *buf);
/* Parses "YYYY-MM-DD" (years TLY_YEAR_MIN..TLY_YEAR_MAX, no time of day) to
 * midnight UTC; false if invalid, and *ms is then untouched. */
bool tly_gen_parse_date(const char *s, int64_t *ms);
/* Start of the month `months` (≤ TLY_GEN_MONTHS_MAX) after the month holding
 * at_ms. */
int64_t tly_gen_add_months(int64_t at_ms, uint32_t months);

/* --- sources --- */

enum {
    TLY_GEN_SRC_FINANCE = 0,
    TLY_GEN_SRC_PORTAL,
    TLY_GEN_SRC_CERTSYS,
    TLY_GEN_SRC_DIST0, /* the distributors follow */
    TLY_GEN_SRC_COUNT = TLY_GEN_SRC_DIST0 + 4
};
#define TLY_GEN_DISTS (TLY_GEN_SRC_COUNT - TLY_GEN_SRC_DIST0)

extern const char *const tly_gen_source_name[TLY_GEN_SRC_COUNT];
extern const char *const tly_gen_source_prefix[TLY_GEN_SRC_COUNT];

/* --- the world: programs, partners, catalog --- */

#define TLY_GEN_PROGRAMS 3
#define TLY_GEN_TIERS_MAX 4
#define TLY_GEN_BRACKETS_MAX 3
#define TLY_GEN_PEOPLE_MAX 8 /* persons per partner: certs fit one uint64 */
#define TLY_GEN_CERTS 6

typedef struct tly_gen_tier {
    const char *name;
    int64_t min_revenue;
    int64_t min_certs;
    int32_t mdf_bps;
} tly_gen_tier;

typedef struct tly_gen_program {
    const char *name;
    const char *currency;
    tly_period_kind kind;
    bool retroactive;
    int64_t version;
    uint32_t tier_count;
    tly_gen_tier tiers[TLY_GEN_TIERS_MAX];
    uint32_t bracket_count;
    int64_t bracket_from[TLY_GEN_BRACKETS_MAX];
    int32_t bracket_bps[TLY_GEN_BRACKETS_MAX];
    int64_t mdf_expiry_periods;
    int64_t tier_window_periods;
    int32_t open_period; /* earliest open period, advanced by each close */
} tly_gen_program;

/* What the generator knows of a partner. Revenue and MDF are the
 * generator's own estimates (it does not run the engine): good enough to
 * size claims and payouts realistically, and to produce some exceptions. */
typedef struct tly_gen_partner {
    int64_t active_from_ms; /* first sale may happen from here */
    int64_t enroll_ms;      /* -1: never enrolled */
    int64_t mdf_est;        /* MDF the partner believes it has */
    int64_t rev[3];         /* net revenue per period, ring by period % 3 */
    int32_t rev_period[3];
    uint64_t certs;  /* active (person, cert) pairs, bit p*8+c */
    uint32_t claims; /* claims submitted so far: the claim number */
    uint8_t kind, region, company, program, home_dist, people;
    bool enrolled; /* its enrollment has been emitted */
} tly_gen_partner;

typedef struct tly_gen_sku {
    const char *name;
    int64_t price; /* minor units per unit */
    uint32_t weight;
} tly_gen_sku;

extern const tly_gen_sku tly_gen_catalog[];
extern const uint32_t tly_gen_catalog_count;
extern const char *const tly_gen_kind_name[7];
extern const char *const tly_gen_region_name[4];
extern const char *const tly_gen_cert_name[TLY_GEN_CERTS];

/* --- output --- */

typedef struct tly_gen_line {
    char buf[TLY_GEN_LINE_BYTES_MAX];
    size_t len;
    bool comma; /* a value was written at this level: next one needs ',' */
} tly_gen_line;

typedef struct tly_gen_source {
    char *batch; /* records waiting to be written */
    size_t batch_len, batch_cap;
    uint32_t batch_lines; /* original records in the batch (resends excluded) */
    uint64_t next_id[2];  /* [0] events (sales for a distributor), [1] returns */
    char ring[TLY_GEN_RING_LINES][TLY_GEN_LINE_BYTES_MAX];
    uint16_t ring_len[TLY_GEN_RING_LINES];
    uint32_t ring_count, ring_next;
} tly_gen_source;

/* --- the queue of future actions --- */

typedef struct tly_gen_action {
    int64_t due_ms;
    uint64_t order;   /* insertion number: ties keep insertion order */
    uint8_t kind;     /* gen_sim.c's action kinds */
    uint8_t step;     /* state of a multi-step action (a claim) */
    uint8_t src;      /* source of a return */
    uint8_t currency; /* program index whose currency a sale used, or 255 */
    uint32_t partner;
    uint64_t ref;    /* sale number, claim number, program index, ... */
    int64_t a, b, c; /* amounts: sale amount / requested, approved, paid */
    int32_t period;
    uint32_t qty;
} tly_gen_action;

typedef struct tly_gen_heap {
    tly_gen_action *v;
    size_t len, cap;
    uint64_t order;
} tly_gen_heap;

/* --- the generator --- */

typedef struct tly_gen {
    tly_gen_opts opt;
    bool stalled;           /* the span's end was reached with events left to write */
    tly_gen_rng rng;        /* every choice of the data set */
    tly_gen_rng rng_resend; /* resends only: --resend-pct does not change the
                               other records */
    FILE *out;
    int64_t start_ms, end_ms, clock_ms, day;
    uint64_t emitted; /* distinct events written (resends excluded) */
    uint64_t resent;
    int64_t unit_revenue; /* expected revenue of a partner in one month */
    tly_gen_program programs[TLY_GEN_PROGRAMS];
    tly_gen_partner *partners;
    uint32_t partner_count, initial_count, active_count;
    tly_gen_heap heap;
    tly_gen_source src[TLY_GEN_SRC_COUNT];
    tly_gen_line line;
    int cur_src;              /* source of the record being built */
    bool wrong_close_pending; /* the next close is preceded by a wrong one */
} tly_gen;

/* gen_world.c */

/* The program rule sets the generator publishes: version 1 of each program,
 * then the version bumps. */
enum {
    TLY_GEN_SPEC_APEX1 = 0, /* quarterly, retroactive rebate, USD */
    TLY_GEN_SPEC_NIMBUS1,   /* monthly, incremental rebate, EUR */
    TLY_GEN_SPEC_SUMMIT1,   /* quarterly, incremental rebate, GBP */
    TLY_GEN_SPEC_APEX2,     /* drops Silver, turns the rebate incremental */
    TLY_GEN_SPEC_NIMBUS2,   /* longer MDF expiry, richer brackets */
    TLY_GEN_SPEC_COUNT
};

/* Fills out with rule set spec, thresholds scaled by g->unit_revenue;
 * open_period is left 0. */
void tly_gen_program_rules(const tly_gen *g, int spec, tly_gen_program *out);
/* Expected mean value of one sale in minor units (catalog, qty, discount). */
int64_t tly_gen_sale_mean(void);
/* Draws a sale line: SKU index, quantity and amount in minor units. */
void tly_gen_sale_draw(tly_gen_rng *r, uint32_t *sku, uint32_t *qty, int64_t *amount);
/* Rebate of net revenue rev under p's current rules, rounded down: the
 * generator's estimate of what the engine will call the period's figure. */
int64_t tly_gen_rebate_estimate(const tly_gen_program *p, int64_t rev);

/* Sets up programs and partners for g->opt; false on out of memory. */
bool tly_gen_world_init(tly_gen *g);
void tly_gen_world_free(tly_gen *g);
/* Writes the partner's id ("northwind-var-00042") into buf (≥ 64 bytes). */
void tly_gen_partner_slug(const tly_gen *g, uint32_t i, char *buf, size_t cap);
void tly_gen_partner_display(const tly_gen *g, uint32_t i, char *buf, size_t cap);
/* A person of partner i ("northwind-var-00042.u03"). */
void tly_gen_person(const tly_gen *g, uint32_t i, uint32_t person, char *buf, size_t cap);

/* gen_out.c: the JSON builder writes into g->line. */
void tly_gen_obj_begin(tly_gen_line *l);
void tly_gen_obj_end(tly_gen_line *l);
void tly_gen_arr_begin(tly_gen_line *l);
void tly_gen_arr_end(tly_gen_line *l);
void tly_gen_key(tly_gen_line *l, const char *key);
void tly_gen_kstr(tly_gen_line *l, const char *key, const char *val);
void tly_gen_ki64(tly_gen_line *l, const char *key, int64_t val);
/* Starts a record of source src: {"source":..,"event":{"type":..,"id":..,
 * "at":..  The id is <prefix>-<n> for finance, portal and certsys and
 * <prefix>-S-<n> / <prefix>-R-<n> (ret) for distributors; n counts up per
 * source and kind, so ids are unique and monotonic per source. Writes the id
 * into id_out when it is not NULL (≥ 32 bytes). */
void tly_gen_record_begin(tly_gen *g, int src, const char *type, bool ret, int64_t at_ms,
                          char *id_out);
/* Ends the record, queues it in its source's batch (and maybe a resend). */
void tly_gen_record_end(tly_gen *g);
/* Writes every source's batch, finance first; false on a write error. */
bool tly_gen_flush(tly_gen *g);
void tly_gen_out_free(tly_gen *g);

/* gen_sim.c */
/* Runs the whole simulation and writes it to g->out; false on error
 * (out of memory or write error, already reported on stderr). */
bool tly_gen_run(tly_gen *g);

#endif
