/*
 * gen_world.c — the PRNG, the calendar and the simulated world of `tally gen`:
 * three programs, the partners, the SKU catalog. See gen.h.
 */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

#include "tly_limits.h"

_Noreturn void tly_gen_panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "tally gen: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

/* ---------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void tly_gen_rng_seed(tly_gen_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tly_gen_rng_next(tly_gen_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t tly_gen_rng_below(tly_gen_rng *r, uint64_t n)
{
    TLY_GEN_ASSERT(n >= 1);
    /* Rejection keeps every value equally likely: draws at or above the
     * largest multiple of n are retried (less than half the time). */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = tly_gen_rng_next(r);
    } while (x >= limit);
    return x % n;
}

int64_t tly_gen_rng_range(tly_gen_rng *r, int64_t lo, int64_t hi)
{
    TLY_GEN_ASSERT(lo <= hi);
    return lo + (int64_t)tly_gen_rng_below(r, (uint64_t)(hi - lo) + 1);
}

bool tly_gen_rng_chance(tly_gen_rng *r, uint32_t per_10k)
{
    return tly_gen_rng_below(r, 10000) < per_10k;
}

uint32_t tly_gen_rng_weighted(tly_gen_rng *r, const uint32_t *weights, uint32_t n)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += weights[i];
    uint64_t x = tly_gen_rng_below(r, total);
    for (uint32_t i = 0; i < n; i++) {
        if (x < weights[i])
            return i;
        x -= weights[i];
    }
    return n - 1;
}

/* ------------------------------------------------------------ calendar */

void tly_gen_period_format(tly_period_kind kind, int32_t p, char *buf)
{
    /* Years are 2000..9999 here (--start and --months are checked), so the
     * text is always 7 characters; tly_period_format would clamp others. */
    int32_t y = kind == TLY_PERIOD_QUARTER ? p / 4 : p / 12;
    TLY_GEN_ASSERT(y >= 1000 && y <= 9999);
    tly_period_format(kind, p, buf);
}

/* at_ms plus the length of `months` calendar months counted from at_ms's
 * own month: a start on the 1st ends on a 1st; a start on the 30th still
 * gets whole months (never a span of a day). */
int64_t tly_gen_add_months(int64_t at_ms, uint32_t months)
{
    TLY_GEN_ASSERT(months <= TLY_GEN_MONTHS_MAX);
    int32_t month = tly_period_of(TLY_PERIOD_MONTH, at_ms);
    return at_ms + tly_period_start_ms(TLY_PERIOD_MONTH, month + (int32_t)months) -
           tly_period_start_ms(TLY_PERIOD_MONTH, month);
}

bool tly_gen_parse_date(const char *s, int64_t *ms)
{
    /* tly_time_parse also takes a time of day and an offset: exactly ten
     * characters leave only "YYYY-MM-DD". Four digits cap the year at 9999. */
    int64_t at_ms;
    if (strlen(s) != 10 || tly_time_parse(s, 10, &at_ms) != TLY_OK)
        return false;
    if (at_ms < tly_period_start_ms(TLY_PERIOD_MONTH, TLY_YEAR_MIN * 12))
        return false;
    *ms = at_ms;
    return true;
}

/* ------------------------------------------------------------- catalog */

const char *const tly_gen_source_name[TLY_GEN_SRC_COUNT] = {
    "finance", "portal", "certsys", "dist-ingram", "dist-tdsynnex", "dist-arrow", "dist-also",
};
const char *const tly_gen_source_prefix[TLY_GEN_SRC_COUNT] = {
    "FIN", "PRT", "CRT", "ING", "TDS", "ARW", "ALS",
};

const tly_gen_sku tly_gen_catalog[] = {
    {"SRV-R250", 189900, 10},       {"SRV-R650", 1249900, 6},         {"SRV-R760-GPU", 4899900, 2},
    {"STO-ME5024", 1599900, 4},     {"NET-SW48-POE", 349900, 8},      {"NET-FW-1800", 529900, 5},
    {"LIC-VIRT-STD-1Y", 59900, 14}, {"LIC-BACKUP-1TB-1Y", 24900, 14}, {"SUP-PRO-3Y", 89900, 10},
    {"SUB-CLOUD-M", 9900, 12},      {"SUB-SECOPS-1Y", 299900, 6},     {"LAP-PRO14", 139900, 9},
};
const uint32_t tly_gen_catalog_count = sizeof tly_gen_catalog / sizeof tly_gen_catalog[0];

const char *const tly_gen_kind_name[7] = {
    "var", "msp", "si", "oem", "isv", "distributor", "consultant",
};
static const char *const kind_display[7] = {
    "VAR",      "Managed Services", "Systems Integration", "OEM",
    "Software", "Distribution",     "Consulting",
};
const char *const tly_gen_region_name[4] = {"AMER", "EMEA", "APAC", "LATAM"};
const char *const tly_gen_cert_name[TLY_GEN_CERTS] = {
    "sales-fundamentals",  "presales-engineer", "data-platform",
    "security-specialist", "cloud-architect",   "support-engineer",
};

static const char *const company_slug[] = {
    "contoso",    "fabrikam", "northwind",    "adatum",    "tailspin",  "wingtip",    "litware",
    "proseware",  "lucerne",  "fourthcoffee", "alpine",    "humongous", "woodgrove",  "cohowinery",
    "blueyonder", "margie",   "trey",         "wideworld", "relecloud", "southridge",
};
static const char *const company_display[] = {
    "Contoso",  "Fabrikam",  "Northwind",  "Adatum",      "Tailspin",
    "Wingtip",  "Litware",   "Proseware",  "Lucerne",     "Fourth Coffee",
    "Alpine",   "Humongous", "Woodgrove",  "Coho Winery", "Blue Yonder",
    "Margie's", "Trey",      "Wide World", "Relecloud",   "Southridge",
};
#define COMPANIES (sizeof company_slug / sizeof company_slug[0])
_Static_assert(sizeof company_slug == sizeof company_display, "one display name per company");

/* Quantity: half the lines are a single unit, most others a handful, a few
 * are volume deals. Mean 6.05 units (0.5*1 + 0.3*3.5 + 0.2*22.5). */
static uint32_t draw_qty(tly_gen_rng *r)
{
    uint64_t x = tly_gen_rng_below(r, 100);
    if (x < 50)
        return 1;
    if (x < 80)
        return (uint32_t)tly_gen_rng_range(r, 2, 5);
    return (uint32_t)tly_gen_rng_range(r, 5, 40);
}

void tly_gen_sale_draw(tly_gen_rng *r, uint32_t *sku, uint32_t *qty, int64_t *amount)
{
    uint32_t w[sizeof tly_gen_catalog / sizeof tly_gen_catalog[0]];
    for (uint32_t i = 0; i < tly_gen_catalog_count; i++)
        w[i] = tly_gen_catalog[i].weight;
    *sku = tly_gen_rng_weighted(r, w, tly_gen_catalog_count);
    *qty = draw_qty(r);
    /* Deal discount 0..15 %, whole percent: integer money only. */
    int64_t discount_pct = tly_gen_rng_range(r, 0, 15);
    int64_t gross = tly_gen_catalog[*sku].price * (int64_t)*qty;
    *amount = gross * (100 - discount_pct) / 100;
    if (*amount < 1)
        *amount = 1;
}

int64_t tly_gen_sale_mean(void)
{
    int64_t sum = 0, weights = 0;
    for (uint32_t i = 0; i < tly_gen_catalog_count; i++) {
        sum += tly_gen_catalog[i].price * tly_gen_catalog[i].weight;
        weights += tly_gen_catalog[i].weight;
    }
    /* mean price × mean qty 6.05 × mean discount factor 0.925 */
    return sum / weights * 605 / 100 * 925 / 1000;
}

/* ------------------------------------------------------------- programs */

typedef struct prog_spec {
    const char *name, *currency;
    tly_period_kind kind;
    bool retroactive;
    int64_t version, expiry, window;
    uint32_t tiers;
    const char *tier_name[TLY_GEN_TIERS_MAX];
    int64_t tier_rev_x10[TLY_GEN_TIERS_MAX]; /* × unit revenue of the window / 10 */
    int64_t tier_certs[TLY_GEN_TIERS_MAX];
    int32_t tier_bps[TLY_GEN_TIERS_MAX];
    uint32_t brackets;
    int64_t bracket_x10[TLY_GEN_BRACKETS_MAX]; /* × unit revenue of a period / 10 */
    int32_t bracket_bps[TLY_GEN_BRACKETS_MAX];
} prog_spec;

/* The rule sets, one block each. Thresholds are in tenths of the unit
 * revenue so that tiers and brackets scale with the data set's size. */
static const prog_spec specs[TLY_GEN_SPEC_COUNT] = {
    [TLY_GEN_SPEC_APEX1] =
        {
            .name = "apex",
            .currency = "USD",
            .kind = TLY_PERIOD_QUARTER,
            .retroactive = true,
            .version = 1,
            .expiry = 2,
            .window = 2,
            .tiers = 4,
            .tier_name = {"Authorized", "Silver", "Gold", "Platinum"},
            .tier_rev_x10 = {0, 5, 20, 60},
            .tier_certs = {0, 1, 3, 5},
            .tier_bps = {100, 150, 200, 300},
            .brackets = 3,
            .bracket_x10 = {0, 20, 60},
            .bracket_bps = {100, 200, 350},
        },
    [TLY_GEN_SPEC_NIMBUS1] =
        {
            .name = "nimbus",
            .currency = "EUR",
            .kind = TLY_PERIOD_MONTH,
            .retroactive = false,
            .version = 1,
            .expiry = 3,
            .window = 3,
            .tiers = 3,
            .tier_name = {"Authorized", "Gold", "Platinum"},
            .tier_rev_x10 = {0, 12, 45},
            .tier_certs = {0, 2, 4},
            .tier_bps = {80, 160, 240},
            .brackets = 3,
            .bracket_x10 = {0, 15, 50},
            .bracket_bps = {50, 150, 300},
        },
    [TLY_GEN_SPEC_SUMMIT1] =
        {
            .name = "summit",
            .currency = "GBP",
            .kind = TLY_PERIOD_QUARTER,
            .retroactive = false,
            .version = 1,
            .expiry = 3,
            .window = 1,
            .tiers = 4,
            .tier_name = {"Registered", "Silver", "Gold", "Platinum"},
            .tier_rev_x10 = {0, 5, 20, 60},
            .tier_certs = {0, 1, 2, 4},
            .tier_bps = {90, 140, 190, 260},
            .brackets = 3,
            .bracket_x10 = {0, 20, 60},
            .bracket_bps = {75, 150, 250},
        },
    [TLY_GEN_SPEC_APEX2] =
        {
            .name = "apex",
            .currency = "USD",
            .kind = TLY_PERIOD_QUARTER,
            .retroactive = false,
            .version = 2,
            .expiry = 2,
            .window = 2,
            .tiers = 3,
            .tier_name = {"Authorized", "Gold", "Platinum"},
            .tier_rev_x10 = {0, 15, 50},
            .tier_certs = {0, 2, 4},
            .tier_bps = {120, 225, 325},
            .brackets = 3,
            .bracket_x10 = {0, 20, 60},
            .bracket_bps = {100, 250, 400},
        },
    [TLY_GEN_SPEC_NIMBUS2] =
        {
            .name = "nimbus",
            .currency = "EUR",
            .kind = TLY_PERIOD_MONTH,
            .retroactive = false,
            .version = 2,
            .expiry = 4,
            .window = 3,
            .tiers = 3,
            .tier_name = {"Authorized", "Gold", "Platinum"},
            .tier_rev_x10 = {0, 12, 45},
            .tier_certs = {0, 2, 4},
            .tier_bps = {80, 160, 240},
            .brackets = 3,
            .bracket_x10 = {0, 15, 50},
            .bracket_bps = {50, 175, 325},
        },
};

/* Rounds down to two significant digits, as a finance team writes
 * thresholds (2,800,000 rather than 2,817,345), at least 100.00. */
static int64_t nice(int64_t x)
{
    int64_t scale = 1;
    while (x / scale >= 100)
        scale *= 10;
    int64_t v = x / scale * scale;
    return v < 10000 ? 10000 : v;
}

static int64_t clamp_amount(int64_t v)
{
    return v > INT64_C(10000000000000) ? INT64_C(10000000000000) : v;
}

void tly_gen_program_rules(const tly_gen *g, int spec, tly_gen_program *out)
{
    const prog_spec *s = &specs[spec];
    int64_t months = s->kind == TLY_PERIOD_QUARTER ? 3 : 1;
    int64_t period_rev = g->unit_revenue * months;
    memset(out, 0, sizeof *out);
    out->name = s->name;
    out->currency = s->currency;
    out->kind = s->kind;
    out->retroactive = s->retroactive;
    out->version = s->version;
    out->mdf_expiry_periods = s->expiry;
    out->tier_window_periods = s->window;
    out->tier_count = s->tiers;
    for (uint32_t i = 0; i < s->tiers; i++) {
        int64_t rev = period_rev * s->window * s->tier_rev_x10[i] / 10;
        out->tiers[i] = (tly_gen_tier){s->tier_name[i], i ? clamp_amount(nice(rev)) : 0,
                                       s->tier_certs[i], s->tier_bps[i]};
    }
    out->bracket_count = s->brackets;
    for (uint32_t i = 0; i < s->brackets; i++) {
        int64_t from = period_rev * s->bracket_x10[i] / 10;
        out->bracket_from[i] = i ? clamp_amount(nice(from)) : 0;
        out->bracket_bps[i] = s->bracket_bps[i];
    }
}

int64_t tly_gen_rebate_estimate(const tly_gen_program *p, int64_t rev)
{
    if (rev <= 0)
        return 0;
    if (p->retroactive) {
        int32_t bps = 0;
        for (uint32_t i = 0; i < p->bracket_count; i++)
            if (rev >= p->bracket_from[i])
                bps = p->bracket_bps[i];
        return rev * bps / 10000;
    }
    int64_t sum = 0; /* in minor units × bps: rounded once, like the engine */
    for (uint32_t i = 0; i < p->bracket_count; i++) {
        int64_t lo = p->bracket_from[i];
        int64_t hi = i + 1 < p->bracket_count ? p->bracket_from[i + 1] : rev;
        if (rev <= lo)
            break;
        sum += ((rev < hi ? rev : hi) - lo) * p->bracket_bps[i];
    }
    return sum / 10000;
}

/* ------------------------------------------------------------- partners */

void tly_gen_partner_slug(const tly_gen *g, uint32_t i, char *buf, size_t cap)
{
    const tly_gen_partner *p = &g->partners[i];
    snprintf(buf, cap, "%s-%s-%05u", company_slug[p->company], tly_gen_kind_name[p->kind], i + 1);
}

void tly_gen_partner_display(const tly_gen *g, uint32_t i, char *buf, size_t cap)
{
    const tly_gen_partner *p = &g->partners[i];
    snprintf(buf, cap, "%s %s %05u", company_display[p->company], kind_display[p->kind], i + 1);
}

void tly_gen_person(const tly_gen *g, uint32_t i, uint32_t person, char *buf, size_t cap)
{
    char slug[64];
    tly_gen_partner_slug(g, i, slug, sizeof slug);
    snprintf(buf, cap, "%s.u%02u", slug, person);
}

static const uint32_t kind_weights[7] = {30, 20, 15, 8, 10, 5, 12};
static const uint32_t region_weights[5] = {40, 30, 20, 7, 3}; /* last: no region */
static const uint32_t program_weights[TLY_GEN_PROGRAMS] = {50, 30, 20};
static const uint32_t dist_weights[TLY_GEN_DISTS] = {40, 25, 20, 15};

/* The last two initial partners (small ones: see pick_active) are always
 * one never enrolled and one enrolled only after its first sales, so even a
 * small data set has both; others are drawn at random among the smaller
 * three quarters, as unregistered resellers are rarely the big ones. */
static bool forced_never(const tly_gen *g, uint32_t i)
{
    return g->initial_count >= 3 && i == g->initial_count - 1;
}

static bool forced_held(const tly_gen *g, uint32_t i)
{
    return g->initial_count >= 3 && i == g->initial_count - 2;
}

static void partner_draw(tly_gen *g, uint32_t i)
{
    tly_gen_partner *p = &g->partners[i];
    tly_gen_rng *r = &g->rng;
    p->company = (uint8_t)tly_gen_rng_below(r, COMPANIES);
    /* The first seven cover every kind, the first three every program. */
    p->kind = (uint8_t)(i < 7 ? i : tly_gen_rng_weighted(r, kind_weights, 7));
    p->region = (uint8_t)tly_gen_rng_weighted(r, region_weights, 5);
    p->program = (uint8_t)(i < TLY_GEN_PROGRAMS
                               ? i
                               : tly_gen_rng_weighted(r, program_weights, TLY_GEN_PROGRAMS));
    p->home_dist = (uint8_t)tly_gen_rng_weighted(r, dist_weights, TLY_GEN_DISTS);
    p->people = (uint8_t)tly_gen_rng_range(r, 1, 3);
    for (int k = 0; k < 3; k++)
        p->rev_period[k] = -1;
}

/* When the partner starts selling and when finance enrolls it. The initial
 * partners are enrolled during the first day and sell from the second; the
 * others join one by one over the first 80 % of the span. Partners sorted by
 * active_from_ms keep "who can sell now" a prefix of the array. */
static void partner_schedule(tly_gen *g, uint32_t i, int64_t *prev_active)
{
    tly_gen_partner *p = &g->partners[i];
    tly_gen_rng *r = &g->rng;
    int64_t span = g->end_ms - g->start_ms;
    if (i < g->initial_count) {
        int64_t step = (TLY_GEN_DAY_MS / 2) / g->initial_count;
        p->enroll_ms = g->start_ms + 600000 + (int64_t)i * step;
        p->active_from_ms = g->start_ms + TLY_GEN_DAY_MS;
    } else {
        uint64_t k = i - g->initial_count + 1, joiners = g->partner_count - g->initial_count;
        int64_t at = g->start_ms + (int64_t)((uint64_t)(span / 10 * 8) / joiners * k);
        p->enroll_ms = at;
        p->active_from_ms = at + tly_gen_rng_range(r, 3600000, 3 * TLY_GEN_DAY_MS);
    }
    if (p->active_from_ms < *prev_active)
        p->active_from_ms = *prev_active;
    *prev_active = p->active_from_ms;
    bool small = i >= g->partner_count / 4;
    if (forced_held(g, i) || (small && tly_gen_rng_chance(r, 300)))
        p->enroll_ms = p->active_from_ms + tly_gen_rng_range(r, 10, 45) * TLY_GEN_DAY_MS;
    if (forced_never(g, i) || (small && tly_gen_rng_chance(r, 200)))
        p->enroll_ms = -1;
}

static uint32_t default_partners(uint64_t events)
{
    /* ~120 events per partner over the span: a few sales a month each, so
     * tiers, claims and rebates all have something to work on. */
    uint64_t n = events / 120;
    if (n < 12)
        n = 12;
    if (n > 200000)
        n = 200000;
    return (uint32_t)n;
}

bool tly_gen_world_init(tly_gen *g)
{
    g->partner_count =
        g->opt.partners ? (uint32_t)g->opt.partners : default_partners(g->opt.events);
    g->initial_count = g->partner_count * 7 / 10;
    if (g->initial_count == 0)
        g->initial_count = 1;
    /* Expected revenue of one partner in one month: the scale of every tier
     * threshold and rebate bracket, so tiers spread whatever the size. */
    int64_t sales = (int64_t)(g->opt.events * 3 / 4);
    g->unit_revenue = sales * tly_gen_sale_mean() / g->partner_count / g->opt.months;
    if (g->unit_revenue < 100000)
        g->unit_revenue = 100000;
    for (int i = 0; i < TLY_GEN_PROGRAMS; i++)
        tly_gen_program_rules(g, TLY_GEN_SPEC_APEX1 + i, &g->programs[i]);
    g->partners = calloc(g->partner_count, sizeof *g->partners);
    if (!g->partners)
        return false;
    int64_t prev_active = g->start_ms;
    for (uint32_t i = 0; i < g->partner_count; i++) {
        partner_draw(g, i);
        partner_schedule(g, i, &prev_active);
    }
    return true;
}

void tly_gen_world_free(tly_gen *g)
{
    free(g->partners);
    g->partners = NULL;
}
