/*
 * teststream.c — record streams shared by the engine and explain suites:
 * a stream type, the conformance vectors as a stream (resends dropped as the
 * ledger drops them) and a seeded random generator that exercises every
 * rule of the engine. See teststream.h.
 */
#include "teststream.h"

#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tly_json.h"
#include "tly_period.h"

/* Quarter start (Unix ms, UTC) where generated streams begin, and a day. */
#define Q1_25 INT64_C(1735689600000)
#define DAY INT64_C(86400000)

/* ---- a stream of records: source + event bytes ---- */

void stream_free(stream *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->recs[i].source);
        free(s->recs[i].bytes);
    }
    free(s->recs);
    memset(s, 0, sizeof *s);
}

/* Converts a JSON event to MessagePack; aborts the test on failure. */
void to_mp(json_t *ev, msgpack_sbuffer *sb)
{
    tly_field_error fe = {{0}, {0}};
    msgpack_sbuffer_clear(sb);
    tly_err err = tly_json_event_to_mp(ev, sb, &fe);
    ck_assert_msg(err == TLY_OK, "to_mp: %s %s", fe.field, fe.message);
}

void stream_push(stream *s, const char *source, const void *bytes, size_t len)
{
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->recs = realloc(s->recs, s->cap * sizeof *s->recs);
        ck_assert_ptr_nonnull(s->recs);
    }
    rec_buf *r = &s->recs[s->count++];
    r->source = strdup(source);
    r->bytes = malloc(len);
    ck_assert_ptr_nonnull(r->bytes);
    memcpy(r->bytes, bytes, len);
    r->len = len;
}

void to_mp_text(const char *json, msgpack_sbuffer *sb)
{
    json_error_t je;
    json_t *ev = json_loads(json, 0, &je);
    ck_assert_msg(ev != NULL, "bad test event %s: %s", json, je.text);
    to_mp(ev, sb);
    json_decref(ev);
}

void stream_push_json(stream *st, const char *source, const char *json)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    to_mp_text(json, &sb);
    stream_push(st, source, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Reads the vector events, dropping resends of an accepted (source, id)
 * with the same bytes, as the ledger does. */
void load_jsonl(stream *st, const char *path)
{
    size_t len;
    char *text = tu_read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    json_t *seen = json_object();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_t *r = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(r);
        const char *source = json_string_value(json_object_get(r, "source"));
        json_t *ev = json_object_get(r, "event");
        to_mp(ev, &sb);
        char key[256];
        snprintf(key, sizeof key, "%s\x1f%s", source, json_string_value(json_object_get(ev, "id")));
        json_t *prev = json_object_get(seen, key);
        if (prev == NULL) {
            json_object_set_new(seen, key, json_integer((json_int_t)st->count));
            stream_push(st, source, sb.data, sb.size);
        } else {
            const rec_buf *orig = &st->recs[json_integer_value(prev)];
            ck_assert_msg(orig->len == sb.size && memcmp(orig->bytes, sb.data, sb.size) == 0,
                          "resend with different bytes: %s", key);
        }
        json_decref(r);
    }
    msgpack_sbuffer_destroy(&sb);
    json_decref(seen);
    free(text);
}

void load_vector_named(stream *st, const char *name)
{
    char *path = tu_vector(name);
    load_jsonl(st, path);
    free(path);
}

void load_vector_stream(stream *st)
{
    load_vector_named(st, "seed101-events.jsonl");
}

typedef struct rng {
    uint64_t s;
} rng;

/* splitmix64: tiny, seedable, good enough for test data. */
static uint64_t rnext(rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static int64_t rint_in(rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnext(r) % (uint64_t)(hi - lo + 1));
}

static bool chance(rng *r, int percent)
{
    return rint_in(r, 1, 100) <= percent;
}

typedef struct gen_sale {
    int src, partner;
    int64_t amount;
    char id[24];
    const char *currency;
} gen_sale;

typedef struct gen {
    rng r;
    msgpack_sbuffer sb;
    stream *out;
    int partners;
    int64_t now;
    int32_t eop[2]; /* generator's view of each program's open period */
    int version[2];
    int next_claim;
    int (*claims)[2]; /* (partner, claim number) of submitted claims */
    size_t claim_count, claim_cap;
    gen_sale *sales;
    size_t sale_count, sale_cap;
    int64_t ids;
} gen;

static const char *const gen_sources[] = {"dist-a", "dist-b", "dist-c"};
static const char *const gen_programs[] = {"alpha", "beta"};
static const char *const gen_currency[] = {"USD", "EUR"};

static void gen_emit(gen *g, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void gen_emit(gen *g, const char *source, const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *ev = json_loads(text, 0, NULL);
    ck_assert_msg(ev != NULL, "generator JSON: %s", text);
    to_mp(ev, &g->sb);
    stream_push(g->out, source, g->sb.data, g->sb.size);
    json_decref(ev);
}

/* The section 10 fields of a program version, inside its rebate object
 * and at the top: the odd versions of beta have a growth basis, the even
 * ones of both programs a rebate minimum and cap, an MDF cap per period,
 * one-step moves and grace. */
static void gen_rules_v2(int which, bool alt, char *rebate, char *top, size_t cap)
{
    rebate[0] = top[0] = '\0';
    if (!alt) {
        if (which == 1)
            snprintf(rebate, cap, ",\"basis\":\"growth\",\"baseline_periods\":2");
        return;
    }
    snprintf(rebate, cap, ",\"min\":%d,\"cap\":%d", which == 0 ? 20000 : 2000000,
             which == 0 ? 40000 : 15000);
    snprintf(top, cap,
             ",\"mdf_cap_per_period\":%d,\"tier_moves\":\"one_step\",\"tier_grace_periods\":%d",
             which == 0 ? 30000 : 9000, which == 0 ? 1 : 2);
}

static void gen_program(gen *g, int which, int version, const char *currency)
{
    /* Two rule sets alternate with the version: tier names and rates
     * change, so upgrades, downgrades and drops all happen. */
    bool alt = version % 2 == 0;
    char rebate[160], top[160];
    gen_rules_v2(which, alt, rebate, top, sizeof rebate);
    gen_emit(g, "finance",
             "{\"type\":\"program\",\"id\":\"G%" PRId64 "\",\"at\":%" PRId64 ","
             "\"program\":\"%s\",\"version\":%d,\"currency\":\"%s\",\"period\":\"%s\","
             "\"tiers\":[{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":%d,"
             "\"referral_bps\":50},"
             "{\"name\":\"%s\",\"min_revenue\":%d,\"min_certs\":1,\"mdf_bps\":%d,"
             "\"rebate_bonus_bps\":25,\"referral_bps\":150,\"benefits\":[\"NFR units\"]},"
             "{\"name\":\"Gold\",\"min_revenue\":%d,\"min_certs\":3,\"mdf_bps\":325,"
             "\"rebate_bonus_bps\":%d,\"referral_bps\":300,"
             "\"benefits\":[\"NFR units\",\"a partner account manager\"]}],"
             "\"rebate\":{\"mode\":\"%s\",\"brackets\":[{\"from\":0,\"bps\":100},"
             "{\"from\":%d,\"bps\":250},{\"from\":5000000,\"bps\":375}]%s},"
             "\"mdf_expiry_periods\":%d,\"tier_window_periods\":%d%s}",
             ++g->ids, g->now, gen_programs[which], version, currency,
             which == 0 ? "quarter" : "month", alt ? 120 : 100, alt ? "Plus" : "Silver",
             alt ? 800000 : 1000000, alt ? 175 : 200, alt ? 3000000 : 4000000, alt ? 9700 : 50,
             alt ? "incremental" : "retroactive", alt ? 1500000 : 1000000, rebate, alt ? 3 : 2,
             which == 0 ? 2 : 3, top);
}

static tly_period_kind gen_kind(int which)
{
    return which == 0 ? TLY_PERIOD_QUARTER : TLY_PERIOD_MONTH;
}

static void gen_closes(gen *g)
{
    for (int w = 0; w < 2; w++) {
        int64_t ends = tly_period_start_ms(gen_kind(w), g->eop[w] + 1);
        int64_t due = ends + 5 * DAY;
        if (g->now < ends && chance(&g->r, 1) && chance(&g->r, 20)) {
            /* now and then a close before the period has ended [L3] */
            char text[TLY_PERIOD_TEXT_BYTES];
            tly_period_format(gen_kind(w), g->eop[w], text);
            gen_emit(g, "finance",
                     "{\"type\":\"close\",\"id\":\"G%" PRId64 "\",\"at\":%" PRId64 ","
                     "\"program\":\"%s\",\"period\":\"%s\"}",
                     ++g->ids, g->now, gen_programs[w], text);
        }
        if (g->now < due)
            continue;
        char text[TLY_PERIOD_TEXT_BYTES];
        /* now and then a close of the wrong period [L1] */
        bool wrong = chance(&g->r, 20);
        tly_period_format(gen_kind(w), g->eop[w] + (wrong ? 1 : 0), text);
        gen_emit(g, "finance",
                 "{\"type\":\"close\",\"id\":\"G%" PRId64 "\",\"at\":%" PRId64 ","
                 "\"program\":\"%s\",\"period\":\"%s\"}",
                 ++g->ids, g->now, gen_programs[w], text);
        if (!wrong)
            g->eop[w]++;
    }
}

static int gen_prog_of(int partner)
{
    return partner % 2;
}

static void gen_partner_name(int p, char *buf, size_t cap)
{
    snprintf(buf, cap, "partner-%03d", p);
}

static void gen_sale_ev(gen *g)
{
    int p = (int)rint_in(&g->r, 0, g->partners - 1), w = gen_prog_of(p);
    int src = (int)rint_in(&g->r, 0, 2);
    char name[32];
    gen_partner_name(p, name, sizeof name);
    gen_sale s = {.src = src, .partner = p, .amount = rint_in(&g->r, 1, 400000)};
    snprintf(s.id, sizeof s.id, "S%" PRId64, ++g->ids);
    int64_t lag = chance(&g->r, 8) ? rint_in(&g->r, 0, 200) * DAY : rint_in(&g->r, 0, 3 * DAY);
    /* CAD and the other program's currency convert once a rate is in
     * force [F2]; CHF never has one */
    int roll = (int)rint_in(&g->r, 1, 100);
    const char *cur = roll <= 4   ? "CAD"
                      : roll <= 7 ? gen_currency[1 - w]
                      : roll == 8 ? "CHF"
                                  : gen_currency[w];
    s.currency = cur;
    gen_emit(g, gen_sources[src],
             "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%" PRId64 ",\"partner\":\"%s\","
             "\"sku\":\"K\",\"qty\":1,\"amount\":%" PRId64 ",\"currency\":\"%s\"}",
             s.id, g->now - lag, name, s.amount, cur);
    if (g->sale_count == g->sale_cap) {
        g->sale_cap = g->sale_cap ? g->sale_cap * 2 : 1024;
        g->sales = realloc(g->sales, g->sale_cap * sizeof *g->sales);
    }
    g->sales[g->sale_count++] = s;
}

static void gen_return_ev(gen *g)
{
    if (g->sale_count == 0)
        return;
    /* mostly recent sales, so over-returns happen */
    size_t back = (size_t)rint_in(&g->r, 0, g->sale_count < 200 ? (int64_t)g->sale_count - 1 : 199);
    const gen_sale *s = &g->sales[g->sale_count - 1 - back];
    int p = chance(&g->r, 5) ? (int)rint_in(&g->r, 0, g->partners - 1) : s->partner;
    char name[32], sale_id[32];
    gen_partner_name(p, name, sizeof name);
    snprintf(sale_id, sizeof sale_id, "%s", chance(&g->r, 4) ? "S-unknown" : s->id);
    int64_t amount = rint_in(&g->r, 1, s->amount + s->amount / 4);
    /* mostly in the sale's currency [F4], sometimes in the program's */
    const char *cur = chance(&g->r, 90) ? s->currency : gen_currency[gen_prog_of(p)];
    gen_emit(g, gen_sources[chance(&g->r, 3) ? (s->src + 1) % 3 : s->src],
             "{\"type\":\"return\",\"id\":\"R%" PRId64 "\",\"at\":%" PRId64 ","
             "\"partner\":\"%s\",\"sale\":\"%s\",\"qty\":1,\"amount\":%" PRId64 ","
             "\"currency\":\"%s\"}",
             ++g->ids, g->now - rint_in(&g->r, 0, 2 * DAY), name, sale_id, amount, cur);
}

static void gen_cert_ev(gen *g)
{
    static const char *const actions[] = {"earned", "earned", "earned", "expired", "revoked"};
    char name[32], expires[48] = "";
    gen_partner_name((int)rint_in(&g->r, 0, g->partners - 1), name, sizeof name);
    const char *action = actions[rint_in(&g->r, 0, 4)];
    /* half the earned ones lapse after a while [T10] */
    if (strcmp(action, "earned") == 0 && chance(&g->r, 50))
        snprintf(expires, sizeof expires, ",\"expires\":%" PRId64,
                 g->now + rint_in(&g->r, 20, 400) * DAY);
    gen_emit(g, "certsys",
             "{\"type\":\"certification\",\"id\":\"C%" PRId64 "\",\"at\":%" PRId64 ","
             "\"partner\":\"%s\",\"person\":\"u%d\",\"cert\":\"c%d\",\"action\":\"%s\"%s}",
             ++g->ids, g->now, name, (int)rint_in(&g->r, 0, 4), (int)rint_in(&g->r, 0, 2), action,
             expires);
}

/* A rate of one of the pairs, now and then a correction dated days back
 * [F1]; CAD has rates only after the stream's first weeks. */
static void gen_rate_ev(gen *g)
{
    static const char *const pairs[][2] = {
        {"EUR", "USD"}, {"USD", "EUR"}, {"CAD", "USD"}, {"CAD", "EUR"}};
    static const int64_t base[] = {10800, 9250, 7300, 6750}; /* 4 decimals */
    int k = (int)rint_in(&g->r, 0, 3);
    int64_t units = base[k] + rint_in(&g->r, -300, 300);
    int64_t back = chance(&g->r, 20) ? rint_in(&g->r, 1, 10) * DAY : 0;
    gen_emit(g, "finance",
             "{\"type\":\"rate\",\"id\":\"X%" PRId64 "\",\"at\":%" PRId64 ","
             "\"currency\":\"%s\",\"to\":\"%s\",\"rate\":\"%" PRId64 ".%04" PRId64 "\"}",
             ++g->ids, g->now - back, pairs[k][0], pairs[k][1], units / 10000, units % 10000);
}

/* A referral of a deal by a partner, some in a foreign currency, some
 * late [Q1]. */
static void gen_referral_ev(gen *g)
{
    int p = (int)rint_in(&g->r, 0, g->partners - 1), w = gen_prog_of(p);
    char name[32];
    gen_partner_name(p, name, sizeof name);
    int64_t lag = chance(&g->r, 10) ? rint_in(&g->r, 0, 150) * DAY : 0;
    int64_t id = ++g->ids;
    gen_emit(g, "crm",
             "{\"type\":\"referral\",\"id\":\"F%" PRId64 "\",\"at\":%" PRId64 ","
             "\"partner\":\"%s\",\"deal\":\"deal %" PRId64 "\",\"amount\":%" PRId64 ","
             "\"currency\":\"%s\"}",
             id, g->now - lag, name, id, rint_in(&g->r, 1, 900000),
             chance(&g->r, 85)   ? gen_currency[w]
             : chance(&g->r, 70) ? "CAD"
                                 : "CHF");
}

static void gen_claim_ev(gen *g)
{
    static const char *const actions[] = {"submit", "submit", "submit", "approve", "approve",
                                          "pay",    "pay",    "reject", "cancel"};
    const char *action = actions[rint_in(&g->r, 0, 8)];
    bool submit = strcmp(action, "submit") == 0;
    int p, id;
    if (g->claim_count > 0 && (submit ? chance(&g->r, 3) : chance(&g->r, 92))) {
        /* an existing claim: mostly recent ones, so the states advance */
        size_t back =
            (size_t)rint_in(&g->r, 0, g->claim_count < 40 ? (int64_t)g->claim_count - 1 : 39);
        const int *c = g->claims[g->claim_count - 1 - back];
        p = c[0];
        id = c[1];
    } else {
        p = (int)rint_in(&g->r, 0, g->partners - 1);
        id = submit ? ++g->next_claim : -1;
        if (submit) {
            if (g->claim_count == g->claim_cap) {
                g->claim_cap = g->claim_cap ? g->claim_cap * 2 : 256;
                g->claims = realloc(g->claims, g->claim_cap * sizeof *g->claims);
            }
            g->claims[g->claim_count][0] = p;
            g->claims[g->claim_count++][1] = id;
        }
    }
    char name[32];
    gen_partner_name(p, name, sizeof name);
    int64_t amount = rint_in(&g->r, 1, submit ? 30000 : 12000);
    gen_emit(g, "portal",
             "{\"type\":\"claim\",\"id\":\"K%" PRId64 "\",\"at\":%" PRId64 ",\"partner\":\"%s\","
             "\"claim\":\"cl-%d\",\"action\":\"%s\",\"amount\":%" PRId64 "}",
             ++g->ids, g->now, name, id, action, amount);
}

static void gen_money_ev(gen *g)
{
    int p = (int)rint_in(&g->r, 0, g->partners - 1), w = gen_prog_of(p);
    char name[32], period[TLY_PERIOD_TEXT_BYTES];
    gen_partner_name(p, name, sizeof name);
    if (chance(&g->r, 60)) {
        tly_period_format(gen_kind(w), g->eop[w] - (int32_t)rint_in(&g->r, 0, 3), period);
        gen_emit(g, "finance",
                 "{\"type\":\"payout\",\"id\":\"Y%" PRId64 "\",\"at\":%" PRId64 ","
                 "\"partner\":\"%s\",\"period\":\"%s\",\"amount\":%" PRId64 "}",
                 ++g->ids, g->now, name, period, rint_in(&g->r, 1, 20000));
        return;
    }
    int64_t amount = rint_in(&g->r, 1, 30000) * (chance(&g->r, 50) ? -1 : 1);
    gen_emit(g, "finance",
             "{\"type\":\"adjust\",\"id\":\"A%" PRId64 "\",\"at\":%" PRId64 ","
             "\"partner\":\"%s\",\"account\":\"%s\",\"amount\":%" PRId64 ","
             "\"reason\":\"r\"}",
             ++g->ids, g->now, name, chance(&g->r, 50) ? "mdf" : "rebate", amount);
}

static void gen_enroll_ev(gen *g)
{
    int p = (int)rint_in(&g->r, 0, g->partners - 1), w = gen_prog_of(p);
    char name[32];
    gen_partner_name(p, name, sizeof name);
    int roll = (int)rint_in(&g->r, 1, 10);
    const char *prog = roll <= 8 ? gen_programs[w] : roll == 9 ? gen_programs[1 - w] : "gamma";
    gen_emit(g, "finance",
             "{\"type\":\"partner\",\"id\":\"E%" PRId64 "\",\"at\":%" PRId64 ","
             "\"partner\":\"%s\",\"name\":\"N\",\"program\":\"%s\",\"kind\":\"msp\"}",
             ++g->ids, g->now, name, prog);
}

static void gen_version_ev(gen *g)
{
    int w = (int)rint_in(&g->r, 0, 1);
    int roll = (int)rint_in(&g->r, 1, 10);
    if (roll <= 6)
        gen_program(g, w, ++g->version[w], gen_currency[w]);
    else if (roll <= 8)
        gen_program(g, w, g->version[w], gen_currency[w]); /* stale [G8] */
    else
        gen_program(g, w, g->version[w] + 1, gen_currency[1 - w]); /* [G2] */
}

/* A stream of about `events` events over two programs and `partners`
 * partners, deterministic for a seed. */
void gen_stream(stream *out, uint64_t seed, size_t events, int partners)
{
    gen g = {.r = {seed}, .out = out, .partners = partners, .now = Q1_25};
    msgpack_sbuffer_init(&g.sb);
    for (int w = 0; w < 2; w++) {
        g.eop[w] = tly_period_of(gen_kind(w), g.now);
        g.version[w] = 1;
        gen_program(&g, w, 1, gen_currency[w]);
    }
    /* Window ~ two years: gaps average ~ (2 years / events). */
    int64_t gap_max = (int64_t)(2 * 365 * DAY / (int64_t)events) * 2 + 1;
    while (out->count < events) {
        g.now += rint_in(&g.r, 0, gap_max);
        gen_closes(&g);
        int roll = (int)rint_in(&g.r, 1, 1000);
        if (roll <= 430)
            gen_sale_ev(&g);
        else if (roll <= 530)
            gen_return_ev(&g);
        else if (roll <= 545)
            gen_rate_ev(&g);
        else if (roll <= 570)
            gen_referral_ev(&g);
        else if (roll <= 620)
            gen_cert_ev(&g);
        else if (roll <= 850)
            gen_claim_ev(&g);
        else if (roll <= 930)
            gen_money_ev(&g);
        else if (roll <= 998)
            gen_enroll_ev(&g);
        else
            gen_version_ev(&g);
    }
    msgpack_sbuffer_destroy(&g.sb);
    free(g.sales);
    free(g.claims);
}
