/*
 * gen_sim.c — the simulation behind `tally gen`: a clock that walks through
 * the span, a queue of future actions (enrollments, returns, claim steps,
 * closes, payouts, program changes) and the spontaneous events of each tick
 * (sales, certifications, claim submissions, adjustments). See gen.h.
 *
 * The clock advances so that the requested number of events ends near the
 * end of the span whatever the size: each tick moves by the time left over
 * the events left, jittered. Business time therefore never runs past the
 * span, and a million events take the same 18 months as ten thousand.
 */
#include "gen.h"
#include "tly_limits.h"

#include <stdlib.h>
#include <string.h>

enum action_kind {
    ACT_ENROLL = 1,
    ACT_RETURN,
    ACT_CLAIM,
    ACT_DUP_SUBMIT,
    ACT_CLOSE,
    ACT_PAYOUT,
    ACT_SPECIAL,
};

enum claim_step { CLAIM_DECIDE = 0, CLAIM_APPROVE, CLAIM_PAY, CLAIM_LATE_CANCEL };

/* One-off events that exercise program versions and rare exceptions; each
 * fires once at a fixed fraction (percent) of the span. */
enum special {
    SP_UNKNOWN_ENROLL = 0, /* [E2] enrollment in an unknown program */
    SP_NIMBUS_V2,          /* a real version bump */
    SP_UNKNOWN_CLOSE,      /* [L2] close of an unknown program */
    SP_SWITCH,             /* [E1] enrollment in another program */
    SP_APEX_V2,            /* bump that drops a tier [G3] and changes the mode */
    SP_APEX_STALE,         /* [G8] version 1 published again */
    SP_NIMBUS_BAD,         /* [G2] a version changing the currency */
    SP_WRONG_CLOSE,        /* [L1] the next close names the wrong period */
    SP_COUNT
};
static const uint32_t special_pct[SP_COUNT] = {10, 35, 45, 50, 55, 65, 75, 40};

static const char *const activities[] = {
    "webinar",           "trade show booth",      "training event",
    "digital campaign",  "co-branded collateral", "lead generation program",
    "customer roadshow",
};
#define ACTIVITIES (sizeof activities / sizeof activities[0])
static const char *const reject_reasons[] = {
    "missing proof of performance",
    "duplicate of earlier claim",
    "activity not pre-approved",
    "outside program guidelines",
};
static const char *const adjust_reasons[] = {
    "audit finding",      "co-marketing true-up", "goodwill credit",
    "billing correction", "contract settlement",
};

/* ------------------------------------------------------------- the queue */

static bool act_before(const tly_gen_action *a, const tly_gen_action *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->order < b->order);
}

static void heap_push(tly_gen *g, tly_gen_action a)
{
    tly_gen_heap *h = &g->heap;
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        tly_gen_action *v = realloc(h->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "tally gen: out of memory\n");
            exit(1);
        }
        h->v = v;
        h->cap = cap;
    }
    a.order = h->order++;
    size_t i = h->len++;
    while (i > 0 && act_before(&a, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = a;
}

static tly_gen_action heap_pop(tly_gen *g)
{
    tly_gen_heap *h = &g->heap;
    tly_gen_action top = h->v[0], last = h->v[--h->len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && act_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!act_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->len)
        h->v[i] = last;
    return top;
}

static void schedule(tly_gen *g, tly_gen_action a, int64_t delay_ms)
{
    a.due_ms = g->clock_ms + delay_ms;
    heap_push(g, a);
}

static int64_t days(tly_gen *g, int64_t lo, int64_t hi)
{
    /* A whole number of days plus a random time of day: never less than
     * lo days, so a follow-up always lands on a later simulated day. */
    return tly_gen_rng_range(&g->rng, lo, hi) * TLY_GEN_DAY_MS +
           tly_gen_rng_range(&g->rng, 0, TLY_GEN_DAY_MS / 2);
}

/* ------------------------------------------------------------ helpers */

static tly_gen_rng *rng(tly_gen *g)
{
    return &g->rng;
}

/* A partner that can sell now, big ones more often: index = k·u² for a
 * uniform u in [0,1), so the earliest partners carry most of the volume,
 * as in a real channel. UINT32_MAX when nobody sells yet. */
static uint32_t pick_active(tly_gen *g)
{
    uint64_t k = g->active_count;
    if (k == 0)
        return UINT32_MAX;
    uint64_t u = tly_gen_rng_next(rng(g)) >> 32;
    uint64_t u2 = (u * u) >> 32;
    return (uint32_t)((u2 * k) >> 32);
}

/* The period a sale or return lands in [P2]: late data goes to the earliest
 * open period of the program. */
static int32_t effective_period(const tly_gen_program *prog, int64_t at_ms)
{
    int32_t p = tly_period_of(prog->kind, at_ms);
    return p < prog->open_period ? prog->open_period : p;
}

static void rev_add(tly_gen_partner *p, int32_t period, int64_t amount)
{
    int k = period % 3;
    if (p->rev_period[k] != period) {
        p->rev_period[k] = period;
        p->rev[k] = 0;
    }
    p->rev[k] += amount;
}

static int64_t rev_of(const tly_gen_partner *p, int32_t period)
{
    int k = period % 3;
    return p->rev_period[k] == period ? p->rev[k] : 0;
}

static void partner_field(tly_gen *g, uint32_t i)
{
    char slug[64];
    tly_gen_partner_slug(g, i, slug, sizeof slug);
    tly_gen_kstr(&g->line, "partner", slug);
}

static void claim_id(tly_gen *g, uint32_t partner, uint64_t n, char *buf, size_t cap)
{
    char slug[64];
    tly_gen_partner_slug(g, partner, slug, sizeof slug);
    snprintf(buf, cap, "CLM-%s-%03llu", slug, (unsigned long long)n);
}

static void period_field(tly_gen *g, const char *key, tly_period_kind kind, int32_t p)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_gen_period_format(kind, p, text);
    tly_gen_kstr(&g->line, key, text);
}

/* ----------------------------------------------------- finance: programs */

static void emit_program(tly_gen *g, const tly_gen_program *p, int64_t version,
                         const char *currency)
{
    tly_gen_line *l = &g->line;
    tly_gen_record_begin(g, TLY_GEN_SRC_FINANCE, "program", false, g->clock_ms, NULL);
    tly_gen_kstr(l, "program", p->name);
    tly_gen_ki64(l, "version", version);
    tly_gen_kstr(l, "currency", currency);
    tly_gen_kstr(l, "period", p->kind == TLY_PERIOD_QUARTER ? "quarter" : "month");
    tly_gen_key(l, "tiers");
    tly_gen_arr_begin(l);
    for (uint32_t i = 0; i < p->tier_count; i++) {
        tly_gen_obj_begin(l);
        tly_gen_kstr(l, "name", p->tiers[i].name);
        tly_gen_ki64(l, "min_revenue", p->tiers[i].min_revenue);
        tly_gen_ki64(l, "min_certs", p->tiers[i].min_certs);
        tly_gen_ki64(l, "mdf_bps", p->tiers[i].mdf_bps);
        tly_gen_obj_end(l);
    }
    tly_gen_arr_end(l);
    tly_gen_key(l, "rebate");
    tly_gen_obj_begin(l);
    tly_gen_kstr(l, "mode", p->retroactive ? "retroactive" : "incremental");
    tly_gen_key(l, "brackets");
    tly_gen_arr_begin(l);
    for (uint32_t i = 0; i < p->bracket_count; i++) {
        tly_gen_obj_begin(l);
        tly_gen_ki64(l, "from", p->bracket_from[i]);
        tly_gen_ki64(l, "bps", p->bracket_bps[i]);
        tly_gen_obj_end(l);
    }
    tly_gen_arr_end(l);
    tly_gen_obj_end(l);
    tly_gen_ki64(l, "mdf_expiry_periods", p->mdf_expiry_periods);
    tly_gen_ki64(l, "tier_window_periods", p->tier_window_periods);
    tly_gen_record_end(g);
}

/* A version bump replaces the rules in force; the open period stays. */
static void bump_program(tly_gen *g, int index, int spec)
{
    tly_gen_program *p = &g->programs[index];
    int32_t open = p->open_period;
    tly_gen_program_rules(g, spec, p);
    p->open_period = open;
    emit_program(g, p, p->version, p->currency);
}

static void emit_enrollment(tly_gen *g, uint32_t i, const char *program)
{
    tly_gen_partner *p = &g->partners[i];
    char name[160];
    tly_gen_partner_display(g, i, name, sizeof name);
    tly_gen_record_begin(g, TLY_GEN_SRC_FINANCE, "partner", false, g->clock_ms, NULL);
    partner_field(g, i);
    tly_gen_kstr(&g->line, "name", name);
    tly_gen_kstr(&g->line, "program", program);
    tly_gen_kstr(&g->line, "kind", tly_gen_kind_name[p->kind]);
    if (p->region < 4) /* region is optional: some partners have none */
        tly_gen_kstr(&g->line, "region", tly_gen_region_name[p->region]);
    tly_gen_record_end(g);
}

static void do_enroll(tly_gen *g, uint32_t i)
{
    emit_enrollment(g, i, g->programs[g->partners[i].program].name);
    g->partners[i].enrolled = true;
}

/* ------------------------------------------------------ finance: closes */

static void emit_close(tly_gen *g, const char *program, tly_period_kind kind, int32_t period)
{
    tly_gen_record_begin(g, TLY_GEN_SRC_FINANCE, "close", false, g->clock_ms, NULL);
    tly_gen_kstr(&g->line, "program", program);
    period_field(g, "period", kind, period);
    tly_gen_record_end(g);
}

/* Finance pays most final rebates some days after the close: some
 * partially, a few too much [R6] or for a period not yet final [R7]. */
static void plan_payout(tly_gen *g, uint32_t i, const tly_gen_program *prog, int32_t period)
{
    int64_t est = tly_gen_rebate_estimate(prog, rev_of(&g->partners[i], period));
    if (est < 100 || !tly_gen_rng_chance(rng(g), 6000))
        return;
    tly_gen_action a = {.kind = ACT_PAYOUT, .partner = i, .period = period, .a = est};
    uint64_t r = tly_gen_rng_below(rng(g), 10000);
    if (r < 300)
        a.a = est * 2 + 100;
    else if (r < 500)
        a.period = period + 1;
    else if (r < 1500)
        a.a = est / 2;
    else
        a.a = est * tly_gen_rng_range(rng(g), 90, 100) / 100;
    if (a.a < 1)
        a.a = 1;
    a.ref = (uint64_t)g->partners[i].program;
    schedule(g, a, days(g, 5, 25));
}

/* MDF of periods the close of `period` expires is gone: the partner's
 * estimate is capped at what the periods still live accrued (the ring holds
 * the last three; older ones count as expired, erring low). */
static void expire_estimate(tly_gen_partner *p, const tly_gen_program *prog, int32_t period)
{
    int64_t live = 0;
    int32_t oldest_live = period - (int32_t)prog->mdf_expiry_periods + 2;
    for (int k = 0; k < 3; k++)
        if (p->rev_period[k] >= oldest_live && p->rev[k] > 0)
            live += p->rev[k] * prog->tiers[0].mdf_bps / 10000;
    if (p->mdf_est > live)
        p->mdf_est = live;
}

static void do_close(tly_gen *g, int index)
{
    tly_gen_program *prog = &g->programs[index];
    int32_t period = prog->open_period;
    /* Everything that happened before the close reaches the ledger first. */
    tly_gen_flush(g);
    /* [L1] a slip: the next period first, then the right one. */
    if (g->wrong_close_pending || tly_gen_rng_chance(rng(g), 200))
        emit_close(g, prog->name, prog->kind, period + 1);
    g->wrong_close_pending = false;
    emit_close(g, prog->name, prog->kind, period);
    for (uint32_t i = 0; i < g->partner_count; i++) {
        if (g->partners[i].program != index)
            continue;
        expire_estimate(&g->partners[i], prog, period);
        if (g->partners[i].enrolled)
            plan_payout(g, i, prog, period);
    }
    prog->open_period = period + 1;
    /* The next close comes 3..10 days after the new open period ends. */
    tly_gen_action a = {.kind = ACT_CLOSE, .ref = (uint64_t)index};
    a.due_ms = tly_period_start_ms(prog->kind, period + 2) + days(g, 3, 10);
    heap_push(g, a);
}

static void do_payout(tly_gen *g, const tly_gen_action *a)
{
    const tly_gen_program *prog = &g->programs[a->ref];
    tly_gen_record_begin(g, TLY_GEN_SRC_FINANCE, "payout", false, g->clock_ms, NULL);
    partner_field(g, a->partner);
    period_field(g, "period", prog->kind, a->period);
    tly_gen_ki64(&g->line, "amount", a->a);
    tly_gen_record_end(g);
}

/* -------------------------------------------------- distributors: sales */

static const uint32_t dist_weights[TLY_GEN_DISTS] = {40, 25, 20, 15};

static int pick_dist(tly_gen *g, const tly_gen_partner *p)
{
    /* A partner buys mostly through its home distributor. */
    if (tly_gen_rng_chance(rng(g), 8000))
        return TLY_GEN_SRC_DIST0 + p->home_dist;
    return TLY_GEN_SRC_DIST0 + (int)tly_gen_rng_weighted(rng(g), dist_weights, TLY_GEN_DISTS);
}

/* Business time of a sale: now, or rarely a sale reported late whose `at`
 * lies in the program's last closed period [P2]. */
static int64_t sale_time(tly_gen *g, const tly_gen_program *prog)
{
    int32_t first = tly_period_of(prog->kind, g->start_ms);
    if (prog->open_period <= first || !tly_gen_rng_chance(rng(g), 40))
        return g->clock_ms;
    int64_t lo = tly_period_start_ms(prog->kind, prog->open_period - 1);
    int64_t hi = tly_period_start_ms(prog->kind, prog->open_period) - 1;
    if (lo < g->start_ms)
        lo = g->start_ms;
    return tly_gen_rng_range(rng(g), lo, hi);
}

static bool gen_sale(tly_gen *g)
{
    uint32_t pi = pick_active(g);
    if (pi == UINT32_MAX)
        return false;
    tly_gen_partner *p = &g->partners[pi];
    const tly_gen_program *prog = &g->programs[p->program];
    int src = pick_dist(g, p);
    uint32_t sku, qty;
    int64_t amount;
    tly_gen_sale_draw(rng(g), &sku, &qty, &amount);
    int64_t at = sale_time(g, prog);
    /* Now and then a line is invoiced in another program's currency. */
    uint8_t cur = p->program;
    if (tly_gen_rng_chance(rng(g), 50))
        cur = (uint8_t)((cur + 1) % TLY_GEN_PROGRAMS);
    tly_gen_record_begin(g, src, "sale", false, at, NULL);
    partner_field(g, pi);
    tly_gen_kstr(&g->line, "sku", tly_gen_catalog[sku].name);
    tly_gen_ki64(&g->line, "qty", qty);
    tly_gen_ki64(&g->line, "amount", amount);
    tly_gen_kstr(&g->line, "currency", g->programs[cur].currency);
    tly_gen_record_end(g);
    if (cur == p->program) {
        rev_add(p, effective_period(prog, at), amount);
        p->mdf_est += amount * prog->tiers[0].mdf_bps / 10000;
    }
    if (tly_gen_rng_chance(rng(g), 700)) {
        tly_gen_action a = {.kind = ACT_RETURN,
                            .src = (uint8_t)src,
                            .currency = cur,
                            .partner = pi,
                            .ref = g->src[src].next_id[0],
                            .a = amount,
                            .qty = qty};
        schedule(g, a, days(g, 1, 45));
    }
    return true;
}

/* ------------------------------------------------ distributors: returns */

typedef struct return_line {
    uint32_t partner;
    char sale[48];
    uint32_t qty;
    int64_t amount;
    bool counts; /* reduces the partner's revenue in the generator's books */
} return_line;

/* Another enrolled partner of the same program as partner i (so the
 * currency matches and the mismatch is the partner alone [S9]); i itself
 * when there is none nearby. */
static uint32_t sibling(const tly_gen *g, uint32_t i)
{
    const tly_gen_partner *p = &g->partners[i];
    for (uint32_t k = 1; k < 64 && k < g->partner_count; k++) {
        uint32_t j = (i + k) % g->partner_count;
        if (g->partners[j].program == p->program && g->partners[j].enrolled)
            return j;
    }
    return i;
}

/* Mostly a partial return of the sale; some return more than was sold
 * [S8], a few name a sale the ledger never saw [S2] or the wrong partner
 * [S1]. */
static void draw_return(tly_gen *g, const tly_gen_action *a, return_line *rl)
{
    const char *prefix = tly_gen_source_prefix[a->src];
    int64_t unit = a->a / a->qty > 0 ? a->a / a->qty : 1;
    uint64_t r = tly_gen_rng_below(rng(g), 10000);
    rl->partner = a->partner;
    rl->counts = true;
    snprintf(rl->sale, sizeof rl->sale, "%s-S-%07llu", prefix, (unsigned long long)a->ref);
    if (r < 150) {
        snprintf(rl->sale, sizeof rl->sale, "%s-S-LEGACY-%06llu", prefix,
                 (unsigned long long)tly_gen_rng_below(rng(g), 1000000));
        rl->qty = 1;
        rl->amount = tly_gen_rng_range(rng(g), 1000, 200000);
        rl->counts = false;
    } else if (r < 250 && (rl->partner = sibling(g, a->partner)) != a->partner) {
        rl->qty = 1;
        rl->amount = unit;
        rl->counts = false;
    } else if (r < 550) {
        rl->qty = a->qty + 1;
        rl->amount = a->a + unit * tly_gen_rng_range(rng(g), 1, 2);
    } else {
        rl->qty = (uint32_t)tly_gen_rng_range(rng(g), 1, a->qty);
        rl->amount = rl->qty == a->qty ? a->a : unit * rl->qty;
    }
}

static void do_return(tly_gen *g, const tly_gen_action *a)
{
    return_line rl;
    draw_return(g, a, &rl);
    const tly_gen_program *cur = &g->programs[a->currency];
    tly_gen_record_begin(g, a->src, "return", true, g->clock_ms, NULL);
    partner_field(g, rl.partner);
    tly_gen_kstr(&g->line, "sale", rl.sale);
    tly_gen_ki64(&g->line, "qty", rl.qty);
    tly_gen_ki64(&g->line, "amount", rl.amount);
    tly_gen_kstr(&g->line, "currency", cur->currency);
    tly_gen_record_end(g);
    tly_gen_partner *p = &g->partners[a->partner];
    const tly_gen_program *prog = &g->programs[p->program];
    if (rl.counts && a->currency == p->program) {
        rev_add(p, effective_period(prog, g->clock_ms), -rl.amount);
        p->mdf_est -= rl.amount * prog->tiers[0].mdf_bps / 10000; /* the clawback */
    }
    /* A second partial return of the same sale, sometimes more than what is
     * left of it: the capped part applies [S9]. step 1 marks it. */
    if (a->step == 0 && rl.counts && rl.qty < a->qty && tly_gen_rng_chance(rng(g), 1500)) {
        tly_gen_action again = *a;
        again.step = 1;
        schedule(g, again, days(g, 5, 40));
    }
}

/* ------------------------------------------------ certsys: certifications */

/* Mostly new certifications; active ones are renewed, expire or are
 * revoked; rarely the feed expires a pair that is not active [T4]. */
static const char *cert_action(tly_gen *g, tly_gen_partner *p, uint64_t bit)
{
    bool active = (p->certs & bit) != 0;
    if (!active) {
        if (!tly_gen_rng_chance(rng(g), 9700))
            return "expired";
        p->certs |= bit;
        return "earned";
    }
    uint64_t r = tly_gen_rng_below(rng(g), 100);
    if (r < 50)
        return "earned";
    p->certs &= ~bit;
    return r < 90 ? "expired" : "revoked";
}

static bool gen_cert(tly_gen *g)
{
    uint32_t pi = pick_active(g);
    if (pi == UINT32_MAX)
        return false;
    tly_gen_partner *p = &g->partners[pi];
    if (p->people < TLY_GEN_PEOPLE_MAX && tly_gen_rng_chance(rng(g), 800))
        p->people++; /* the partner hired or trained someone new */
    uint32_t person = (uint32_t)tly_gen_rng_below(rng(g), p->people);
    uint32_t cert = (uint32_t)tly_gen_rng_below(rng(g), TLY_GEN_CERTS);
    const char *action = cert_action(g, p, UINT64_C(1) << (person * 8 + cert));
    char who[96];
    tly_gen_person(g, pi, person, who, sizeof who);
    tly_gen_record_begin(g, TLY_GEN_SRC_CERTSYS, "certification", false, g->clock_ms, NULL);
    partner_field(g, pi);
    tly_gen_kstr(&g->line, "person", who);
    tly_gen_kstr(&g->line, "cert", tly_gen_cert_name[cert]);
    tly_gen_kstr(&g->line, "action", action);
    tly_gen_record_end(g);
    return true;
}

/* ------------------------------------------------------------- claims */

static void emit_claim(tly_gen *g, int src, uint32_t partner, const char *claim, const char *action,
                       int64_t amount)
{
    tly_gen_record_begin(g, src, "claim", false, g->clock_ms, NULL);
    partner_field(g, partner);
    tly_gen_kstr(&g->line, "claim", claim);
    tly_gen_kstr(&g->line, "action", action);
    /* Amounts stay inside the schema's range [1, 10^13] even for the
     * deliberate over-asks of a very large partner. */
    if (amount > INT64_C(10000000000000))
        amount = INT64_C(10000000000000);
    if (amount > 0)
        tly_gen_ki64(&g->line, "amount", amount);
}

static void emit_submit(tly_gen *g, uint32_t partner, uint64_t n, int64_t amount, uint32_t activity)
{
    char id[96];
    claim_id(g, partner, n, id, sizeof id);
    emit_claim(g, TLY_GEN_SRC_PORTAL, partner, id, "submit", amount);
    tly_gen_kstr(&g->line, "activity", activities[activity]);
    tly_gen_record_end(g);
}

/* A partner with MDF to spend; a never-enrolled partner's portal user
 * sometimes tries anyway (denied unknown_partner [E7]). */
static uint32_t pick_claimant(tly_gen *g)
{
    for (int tries = 0; tries < 3; tries++) {
        uint32_t pi = pick_active(g);
        if (pi == UINT32_MAX)
            return pi;
        const tly_gen_partner *p = &g->partners[pi];
        if (p->mdf_est >= 5000 || (p->enroll_ms < 0 && tly_gen_rng_chance(rng(g), 2000)))
            return pi;
    }
    return UINT32_MAX;
}

static bool gen_claim_submit(tly_gen *g)
{
    uint32_t pi = pick_claimant(g);
    if (pi == UINT32_MAX)
        return false;
    tly_gen_partner *p = &g->partners[pi];
    int64_t est = p->mdf_est > 0 ? p->mdf_est : 0;
    int64_t requested = est * tly_gen_rng_range(rng(g), 20, 70) / 100;
    if (tly_gen_rng_chance(rng(g), 200)) /* asks for more than it has */
        requested = est * 3 + tly_gen_rng_range(rng(g), 1000, 100000);
    if (requested < 100)
        requested = 100;
    uint32_t activity = (uint32_t)tly_gen_rng_below(rng(g), ACTIVITIES);
    uint64_t n = ++p->claims;
    emit_submit(g, pi, n, requested, activity);
    p->mdf_est -= requested < est ? requested : est;
    tly_gen_action a = {.kind = ACT_CLAIM,
                        .step = CLAIM_DECIDE,
                        .partner = pi,
                        .ref = n,
                        .a = requested,
                        .qty = activity};
    schedule(g, a, days(g, 1, 14));
    if (tly_gen_rng_chance(rng(g), 50)) { /* a double submit from the portal [C2] */
        a.kind = ACT_DUP_SUBMIT;
        schedule(g, a, tly_gen_rng_range(rng(g), 60000, 2 * TLY_GEN_DAY_MS));
    }
    return true;
}

static void claim_simple(tly_gen *g, const tly_gen_action *a, int src, const char *action,
                         int64_t amount)
{
    char id[96];
    claim_id(g, a->partner, a->ref, id, sizeof id);
    emit_claim(g, src, a->partner, id, action, amount);
    if (strcmp(action, "reject") == 0) {
        uint64_t k = tly_gen_rng_below(rng(g), sizeof reject_reasons / sizeof *reject_reasons);
        tly_gen_kstr(&g->line, "reason", reject_reasons[k]);
    }
    tly_gen_record_end(g);
}

/* Approves all or part of the request; payment follows. */
static void claim_approve(tly_gen *g, tly_gen_action a)
{
    int64_t approved = a.a;
    if (!tly_gen_rng_chance(rng(g), 8000))
        approved = a.a * tly_gen_rng_range(rng(g), 50, 95) / 100;
    if (approved < 1)
        approved = 1;
    claim_simple(g, &a, TLY_GEN_SRC_FINANCE, "approve", approved);
    g->partners[a.partner].mdf_est += a.a - approved;
    a.step = CLAIM_PAY;
    a.b = approved;
    a.c = 0;
    schedule(g, a, days(g, 3, 30));
}

/* Finance decides: approve, reject, or the partner cancels first. A few
 * approvals exceed the request and are redone the next day [C4]. */
static void claim_decide(tly_gen *g, tly_gen_action a)
{
    uint64_t r = tly_gen_rng_below(rng(g), 10000);
    if (r < 1300) {
        bool cancel = r < 500;
        claim_simple(g, &a, cancel ? TLY_GEN_SRC_PORTAL : TLY_GEN_SRC_FINANCE,
                     cancel ? "cancel" : "reject", 0);
        g->partners[a.partner].mdf_est += a.a;
        return;
    }
    if (r < 1400) {
        claim_simple(g, &a, TLY_GEN_SRC_FINANCE, "approve",
                     a.a + tly_gen_rng_range(rng(g), 1, a.a));
        a.step = CLAIM_APPROVE;
        schedule(g, a, days(g, 1, 2));
        return;
    }
    claim_approve(g, a);
}

/* Pays what is approved, some in two parts; a few payments exceed what is
 * approved and unpaid [C5] and are redone. A paid claim is rarely
 * cancelled from the portal afterwards (an invalid transition). */
static void claim_pay(tly_gen *g, tly_gen_action a)
{
    int64_t unpaid = a.b - a.c;
    if (tly_gen_rng_chance(rng(g), 100)) {
        claim_simple(g, &a, TLY_GEN_SRC_FINANCE, "pay",
                     unpaid + tly_gen_rng_range(rng(g), 1, 1000));
        schedule(g, a, days(g, 1, 7));
        return;
    }
    if (unpaid >= 2 && tly_gen_rng_chance(rng(g), 1500)) {
        claim_simple(g, &a, TLY_GEN_SRC_FINANCE, "pay", unpaid / 2);
        a.c += unpaid / 2;
        schedule(g, a, days(g, 7, 30));
        return;
    }
    claim_simple(g, &a, TLY_GEN_SRC_FINANCE, "pay", unpaid);
    if (tly_gen_rng_chance(rng(g), 50)) {
        a.step = CLAIM_LATE_CANCEL;
        schedule(g, a, days(g, 1, 10));
    }
}

static void do_claim(tly_gen *g, const tly_gen_action *a)
{
    switch (a->step) {
    case CLAIM_DECIDE:
        claim_decide(g, *a);
        break;
    case CLAIM_APPROVE:
        claim_approve(g, *a);
        break;
    case CLAIM_PAY:
        claim_pay(g, *a);
        break;
    default:
        claim_simple(g, a, TLY_GEN_SRC_PORTAL, "cancel", 0);
        break;
    }
}

/* Finance approves a claim id nobody submitted (a typo): unknown_claim. */
static bool gen_unknown_claim(tly_gen *g)
{
    uint32_t pi = pick_active(g);
    if (pi == UINT32_MAX)
        return false;
    char id[48];
    snprintf(id, sizeof id, "CLM-UNKNOWN-%05llu",
             (unsigned long long)tly_gen_rng_below(rng(g), 100000));
    emit_claim(g, TLY_GEN_SRC_FINANCE, pi, id, "approve", tly_gen_rng_range(rng(g), 1000, 50000));
    tly_gen_record_end(g);
    return true;
}

/* -------------------------------------------------- finance: the rest */

static bool gen_adjust(tly_gen *g)
{
    uint32_t pi = pick_active(g);
    if (pi == UINT32_MAX)
        return false;
    bool mdf = tly_gen_rng_chance(rng(g), 6000);
    int64_t amount = tly_gen_rng_range(rng(g), 1000, 500000);
    if (tly_gen_rng_chance(rng(g), mdf ? 3500 : 4000))
        amount = -amount;
    uint64_t k = tly_gen_rng_below(rng(g), sizeof adjust_reasons / sizeof *adjust_reasons);
    tly_gen_record_begin(g, TLY_GEN_SRC_FINANCE, "adjust", false, g->clock_ms, NULL);
    partner_field(g, pi);
    tly_gen_kstr(&g->line, "account", mdf ? "mdf" : "rebate");
    tly_gen_ki64(&g->line, "amount", amount);
    tly_gen_kstr(&g->line, "reason", adjust_reasons[k]);
    tly_gen_record_end(g);
    if (mdf)
        g->partners[pi].mdf_est += amount;
    return true;
}

/* An enrolled partner moves region: re-enrollment in the same program
 * updates the details only [E1]. */
static bool gen_partner_update(tly_gen *g)
{
    uint32_t pi = pick_active(g);
    if (pi == UINT32_MAX || !g->partners[pi].enrolled)
        return false;
    tly_gen_partner *p = &g->partners[pi];
    p->region = (uint8_t)((p->region + 1) % 4);
    do_enroll(g, pi);
    return true;
}

/* ------------------------------------------------------------ specials */

static void do_special(tly_gen *g, int which)
{
    switch (which) {
    case SP_UNKNOWN_ENROLL: /* the never-enrolled partner, into a dead program */
        emit_enrollment(g, g->initial_count >= 3 ? g->initial_count - 1 : 0, "legacy-2019");
        break;
    case SP_NIMBUS_V2:
        bump_program(g, 1, TLY_GEN_SPEC_NIMBUS2);
        break;
    case SP_UNKNOWN_CLOSE:
        emit_close(g, "legacy-2019", TLY_PERIOD_QUARTER,
                   tly_period_of(TLY_PERIOD_QUARTER, g->clock_ms) - 1);
        break;
    case SP_SWITCH: { /* partner 1 (nimbus) is put into apex by mistake */
        uint32_t pi = 1 % g->partner_count;
        emit_enrollment(g, pi, g->programs[(g->partners[pi].program + 1) % 3].name);
        break;
    }
    case SP_APEX_V2:
        bump_program(g, 0, TLY_GEN_SPEC_APEX2);
        break;
    case SP_APEX_STALE: {
        tly_gen_program v1;
        tly_gen_program_rules(g, TLY_GEN_SPEC_APEX1, &v1);
        emit_program(g, &v1, v1.version, v1.currency);
        break;
    }
    case SP_WRONG_CLOSE:
        g->wrong_close_pending = true;
        break;
    default: { /* a next version that would switch nimbus to USD */
        const tly_gen_program *p = &g->programs[1];
        emit_program(g, p, p->version + 1, "USD");
        break;
    }
    }
}

/* ----------------------------------------------------------- the clock */

static void advance_to(tly_gen *g, int64_t t)
{
    if (t <= g->clock_ms)
        return;
    int64_t day = t / TLY_GEN_DAY_MS;
    if (day != g->day) /* a new simulated day: yesterday's batches go out */
        tly_gen_flush(g);
    g->day = day;
    g->clock_ms = t;
    while (g->active_count < g->partner_count && g->partners[g->active_count].active_from_ms <= t)
        g->active_count++;
}

static void do_action(tly_gen *g, const tly_gen_action *a)
{
    switch (a->kind) {
    case ACT_ENROLL:
        do_enroll(g, a->partner);
        break;
    case ACT_RETURN:
        do_return(g, a);
        break;
    case ACT_CLAIM:
        do_claim(g, a);
        break;
    case ACT_DUP_SUBMIT:
        emit_submit(g, a->partner, a->ref, a->a, a->qty);
        break;
    case ACT_CLOSE:
        do_close(g, (int)a->ref);
        break;
    case ACT_PAYOUT:
        do_payout(g, a);
        break;
    default:
        do_special(g, (int)a->ref);
        break;
    }
}

/* One spontaneous event: mostly a sale. A choice that finds nobody to act
 * (no partner with MDF, say) falls back to a sale. */
static void spontaneous(tly_gen *g)
{
    uint64_t r = tly_gen_rng_below(rng(g), 10000);
    bool done = false;
    if (r < 450)
        done = gen_cert(g);
    else if (r < 1050)
        done = gen_claim_submit(g);
    else if (r < 1100)
        done = gen_adjust(g);
    else if (r < 1110)
        done = gen_partner_update(g);
    else if (r < 1115)
        done = gen_unknown_claim(g);
    if (!done)
        gen_sale(g);
}

/* Programs at the start, enrollments, the first close of each program and
 * the one-off specials. */
static void plan(tly_gen *g)
{
    for (int i = 0; i < TLY_GEN_PROGRAMS; i++) {
        tly_gen_program *p = &g->programs[i];
        p->open_period = tly_period_of(p->kind, g->start_ms);
        g->clock_ms = g->start_ms + i * 60000;
        if (g->emitted < g->opt.events) /* --events 1 is one event */
            emit_program(g, p, p->version, p->currency);
        tly_gen_action a = {.kind = ACT_CLOSE, .ref = (uint64_t)i};
        a.due_ms = tly_period_start_ms(p->kind, p->open_period + 1) + days(g, 3, 10);
        heap_push(g, a);
    }
    for (uint32_t i = 0; i < g->partner_count; i++) {
        if (g->partners[i].enroll_ms < 0)
            continue;
        tly_gen_action a = {.kind = ACT_ENROLL, .partner = i, .due_ms = g->partners[i].enroll_ms};
        heap_push(g, a);
    }
    int64_t span = g->end_ms - g->start_ms;
    for (int k = 0; k < SP_COUNT; k++) {
        tly_gen_action a = {.kind = ACT_SPECIAL, .ref = (uint64_t)k};
        a.due_ms = g->start_ms + span / 100 * special_pct[k];
        heap_push(g, a);
    }
}

/* The next tick: the time left shared by the events left, jittered ±50 %.
 * The last instant of the span is end_ms - 1: `at` stays inside it. */
static int64_t next_tick(tly_gen *g)
{
    uint64_t left = g->opt.events - g->emitted;
    int64_t last = g->end_ms - 1;
    int64_t step = (last - g->clock_ms) / (int64_t)left;
    step = step * tly_gen_rng_range(rng(g), 50, 150) / 100;
    int64_t next = g->clock_ms + step;
    return next > last ? last : next;
}

bool tly_gen_run(tly_gen *g)
{
    g->clock_ms = g->start_ms;
    g->day = g->start_ms / TLY_GEN_DAY_MS;
    plan(g);
    uint32_t stalls = 0;
    while (g->emitted < g->opt.events) {
        uint64_t before = g->emitted;
        int64_t next = next_tick(g);
        while (g->heap.len && g->heap.v[0].due_ms <= next && g->emitted < g->opt.events) {
            tly_gen_action a = heap_pop(g);
            advance_to(g, a.due_ms);
            do_action(g, &a);
        }
        if (g->emitted >= g->opt.events)
            break;
        advance_to(g, next);
        spontaneous(g);
        stalls = g->emitted == before && next >= g->end_ms - 1 ? stalls + 1 : 0;
        if (stalls > TLY_GEN_STALL_TICKS_MAX) {
            g->stalled = true;
            break;
        }
    }
    free(g->heap.v);
    g->heap = (tly_gen_heap){0};
    return tly_gen_flush(g) && !g->stalled;
}
