/* gen_fold.c — the seeded fold generator of tly_foldgen.h. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_event.h"
#include "tly_foldgen.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_period.h"

/* Two programs: enough to exercise per-program periods and liabilities. */
#define GEN_PROGRAMS 2u
/* Recent sales a return may name, recent claims an action may name: a
 * producer returns and approves recent things, and the rings keep the
 * generator's memory fixed whatever the event count. */
#define GEN_SALE_RING 1024u
#define GEN_CLAIM_RING 256u
/* Partner population: one per 50 events, within these bounds. */
#define GEN_PARTNERS_MIN 20u
#define GEN_PARTNERS_MAX 10000u
#define GEN_EVENTS_PER_PARTNER 50u
/* Business time starts 2023-01-01T00:00:00Z and spans about two years. */
#define GEN_AT_START_MS INT64_C(1672531200000)
#define GEN_SPAN_MS (INT64_C(730) * 86400000)
/* Events appended per tly_log_append call when building a log. */
#define GEN_APPEND_BATCH TLY_BATCH_EVENTS_MAX
/* "g-" + 20 digits + NUL. */
#define GEN_ID_BYTES 24u

typedef struct gen_sale {
    uint64_t id;
    uint32_t partner;
    int64_t amount;
} gen_sale;

typedef struct gen_claim {
    uint64_t id;
    uint32_t partner;
    int64_t amount;
    int stage; /* 0 submitted, 1 approved, 2 finished */
} gen_claim;

struct tly_rtgen {
    uint64_t rng;
    uint64_t total;
    uint64_t made;
    uint32_t partners;
    uint32_t enrolled;
    int64_t at_ms;
    int64_t step_ms;
    int32_t open_period[GEN_PROGRAMS];
    uint32_t sale_count;
    gen_sale sales[GEN_SALE_RING];
    uint32_t claim_count;
    gen_claim claims[GEN_CLAIM_RING];
    uint64_t claim_next;
    msgpack_packer pk;
};

static const char *const gen_program[GEN_PROGRAMS] = {"alpha", "beta"};
static const char *const gen_currency[GEN_PROGRAMS] = {"USD", "EUR"};
static const tly_period_kind gen_kind[GEN_PROGRAMS] = {TLY_PERIOD_QUARTER, TLY_PERIOD_MONTH};

/* splitmix64: tiny, fast and good enough for load generation. */
static uint64_t rnd(tly_rtgen *g)
{
    uint64_t z = (g->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rnd_below(tly_rtgen *g, uint64_t n)
{
    return rnd(g) % n;
}

tly_err tly_rtgen_new(uint64_t seed, uint64_t events, tly_rtgen **out)
{
    return tly_rtgen_new_partners(seed, events, 0, out);
}

tly_err tly_rtgen_new_partners(uint64_t seed, uint64_t events, uint32_t partners, tly_rtgen **out)
{
    if (events == 0 || events > TLY_BENCH_EVENTS_MAX || partners > TLY_GEN_PARTNERS_MAX)
        return TLY_USAGE;
    tly_rtgen *g = calloc(1, sizeof *g);
    if (!g)
        return TLY_NOMEM;
    g->rng = seed;
    g->total = events;
    uint64_t p = events / GEN_EVENTS_PER_PARTNER;
    g->partners = (uint32_t)(p < GEN_PARTNERS_MIN   ? GEN_PARTNERS_MIN
                             : p > GEN_PARTNERS_MAX ? GEN_PARTNERS_MAX
                                                    : p);
    if (partners > 0)
        g->partners = partners;
    g->at_ms = GEN_AT_START_MS;
    g->step_ms = GEN_SPAN_MS / (int64_t)events;
    if (g->step_ms < 1)
        g->step_ms = 1;
    for (unsigned i = 0; i < GEN_PROGRAMS; i++)
        g->open_period[i] = tly_period_of(gen_kind[i], GEN_AT_START_MS);
    *out = g;
    return TLY_OK;
}

void tly_rtgen_free(tly_rtgen *g)
{
    free(g);
}

uint32_t tly_rtgen_partner_count(const tly_rtgen *g)
{
    return g->partners;
}

void tly_rtgen_partner_name(uint32_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "p-%05u", i);
}

/* --- packing helpers --- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    pk_str(pk, k);
    pk_str(pk, v);
}

static void kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    pk_str(pk, k);
    msgpack_pack_int64(pk, v);
}

/* The common fields; `fields` counts the type-specific ones that follow. */
static void begin_event(tly_rtgen *g, const char *type, uint32_t fields)
{
    char id[GEN_ID_BYTES];
    snprintf(id, sizeof id, "g-%llu", (unsigned long long)g->made);
    msgpack_pack_map(&g->pk, fields + 3);
    kv_str(&g->pk, "type", type);
    kv_str(&g->pk, "id", id);
    kv_int(&g->pk, "at", g->at_ms);
}

static void pack_tier(msgpack_packer *pk, const char *name, int64_t rev, int64_t certs, int64_t bps)
{
    msgpack_pack_map(pk, 4);
    kv_str(pk, "name", name);
    kv_int(pk, "min_revenue", rev);
    kv_int(pk, "min_certs", certs);
    kv_int(pk, "mdf_bps", bps);
}

static void pack_bracket(msgpack_packer *pk, int64_t from, int64_t bps)
{
    msgpack_pack_map(pk, 2);
    kv_int(pk, "from", from);
    kv_int(pk, "bps", bps);
}

static void ev_program(tly_rtgen *g, unsigned p)
{
    msgpack_packer *pk = &g->pk;
    begin_event(g, "program", 8);
    kv_str(pk, "program", gen_program[p]);
    kv_int(pk, "version", 1);
    kv_str(pk, "currency", gen_currency[p]);
    kv_str(pk, "period", gen_kind[p] == TLY_PERIOD_QUARTER ? "quarter" : "month");
    pk_str(pk, "tiers");
    msgpack_pack_array(pk, 3);
    pack_tier(pk, "Registered", 0, 0, 100);
    pack_tier(pk, "Silver", 2000000, 1, 200);
    pack_tier(pk, "Gold", 8000000, 3, 300);
    pk_str(pk, "rebate");
    msgpack_pack_map(pk, 2);
    kv_str(pk, "mode", p == 0 ? "retroactive" : "incremental");
    pk_str(pk, "brackets");
    msgpack_pack_array(pk, 3);
    pack_bracket(pk, 0, 50);
    pack_bracket(pk, 3000000, 150);
    pack_bracket(pk, 10000000, 300);
    kv_int(pk, "mdf_expiry_periods", p == 0 ? 2 : 4);
    kv_int(pk, "tier_window_periods", p == 0 ? 2 : 3);
}

static void ev_close(tly_rtgen *g, unsigned p)
{
    char period[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(gen_kind[p], g->open_period[p], period);
    begin_event(g, "close", 2);
    kv_str(&g->pk, "program", gen_program[p]);
    kv_str(&g->pk, "period", period);
    g->open_period[p]++;
}

static void ev_partner(tly_rtgen *g)
{
    static const char *const kinds[] = {"var", "msp", "si", "distributor"};
    char name[32];
    uint32_t i = g->enrolled++;
    tly_rtgen_partner_name(i, name, sizeof name);
    begin_event(g, "partner", 4);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "name", name);
    kv_str(&g->pk, "program", gen_program[i % GEN_PROGRAMS]);
    kv_str(&g->pk, "kind", kinds[i % 4]);
}

/* The currency of partner i's program, rarely another one (an exception). */
static const char *sale_currency(tly_rtgen *g, uint32_t partner)
{
    unsigned p = partner % GEN_PROGRAMS;
    return rnd_below(g, 200) == 0 ? gen_currency[(p + 1) % GEN_PROGRAMS] : gen_currency[p];
}

static void ev_sale(tly_rtgen *g)
{
    char name[32], sku[16];
    uint32_t partner = (uint32_t)rnd_below(g, g->partners);
    int64_t amount = 1000 + (int64_t)rnd_below(g, 500000);
    tly_rtgen_partner_name(partner, name, sizeof name);
    snprintf(sku, sizeof sku, "sku-%u", (unsigned)rnd_below(g, 50));
    begin_event(g, "sale", 5);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "sku", sku);
    kv_int(&g->pk, "qty", 1 + (int64_t)rnd_below(g, 10));
    kv_int(&g->pk, "amount", amount);
    kv_str(&g->pk, "currency", sale_currency(g, partner));
    g->sales[g->sale_count++ % GEN_SALE_RING] = (gen_sale){g->made, partner, amount};
}

static void ev_return(tly_rtgen *g)
{
    uint32_t n = g->sale_count < GEN_SALE_RING ? g->sale_count : GEN_SALE_RING;
    const gen_sale *s = &g->sales[rnd_below(g, n)];
    char name[32], sale[GEN_ID_BYTES];
    /* One in forty names another partner than its sale's, most often one
     * of another shard (return_partner_mismatch [S1]); one in eighty an id
     * the log does not hold as a sale yet, some of them events of other
     * kinds or sales that come later (unknown_sale [S2]). */
    uint64_t odd = rnd_below(g, 80);
    uint32_t partner = odd < 2 ? (uint32_t)rnd_below(g, g->partners) : s->partner;
    uint64_t id = odd == 2 ? g->made + 1 + rnd_below(g, 64) : s->id;
    tly_rtgen_partner_name(partner, name, sizeof name);
    snprintf(sale, sizeof sale, "g-%llu", (unsigned long long)id);
    /* One in twenty over-returns, to exercise the cap [S3]. */
    int64_t amount =
        rnd_below(g, 20) == 0 ? s->amount + 100 : 1 + (int64_t)rnd_below(g, (uint64_t)s->amount);
    begin_event(g, "return", 5);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "sale", sale);
    kv_int(&g->pk, "qty", 1);
    kv_int(&g->pk, "amount", amount);
    kv_str(&g->pk, "currency", gen_currency[s->partner % GEN_PROGRAMS]);
}

static void ev_cert(tly_rtgen *g)
{
    char name[32], person[16], cert[16];
    tly_rtgen_partner_name((uint32_t)rnd_below(g, g->partners), name, sizeof name);
    snprintf(person, sizeof person, "u%u", (unsigned)rnd_below(g, 4));
    snprintf(cert, sizeof cert, "c%u", (unsigned)rnd_below(g, 3));
    uint64_t r = rnd_below(g, 20);
    begin_event(g, "certification", 4);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "person", person);
    kv_str(&g->pk, "cert", cert);
    kv_str(&g->pk, "action", r < 16 ? "earned" : r < 19 ? "expired" : "revoked");
}

static void pack_claim(tly_rtgen *g, const gen_claim *c, const char *action, int64_t amount)
{
    char name[32], claim[GEN_ID_BYTES];
    tly_rtgen_partner_name(c->partner, name, sizeof name);
    snprintf(claim, sizeof claim, "k-%llu", (unsigned long long)c->id);
    begin_event(g, "claim", amount > 0 ? 4 : 3);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "claim", claim);
    kv_str(&g->pk, "action", action);
    if (amount > 0)
        kv_int(&g->pk, "amount", amount);
}

static void ev_claim(tly_rtgen *g)
{
    uint32_t n = g->claim_count < GEN_CLAIM_RING ? g->claim_count : GEN_CLAIM_RING;
    gen_claim *c = n ? &g->claims[rnd_below(g, n)] : NULL;
    if (!c || c->stage == 2 || rnd_below(g, 2) == 0) {
        c = &g->claims[g->claim_count++ % GEN_CLAIM_RING];
        *c = (gen_claim){g->claim_next++, (uint32_t)rnd_below(g, g->partners),
                         100 + (int64_t)rnd_below(g, 20000), 0};
        pack_claim(g, c, "submit", c->amount);
        return;
    }
    if (c->stage == 1) {
        c->stage = 2;
        pack_claim(g, c, "pay", c->amount);
        return;
    }
    uint64_t r = rnd_below(g, 10);
    if (r < 7) {
        c->amount = c->amount * 3 / 4 + 1;
        c->stage = 1;
        pack_claim(g, c, "approve", c->amount);
    } else {
        c->stage = 2;
        pack_claim(g, c, r < 9 ? "reject" : "cancel", 0);
    }
}

static void ev_adjust(tly_rtgen *g)
{
    char name[32];
    tly_rtgen_partner_name((uint32_t)rnd_below(g, g->partners), name, sizeof name);
    int64_t amount = 1 + (int64_t)rnd_below(g, 5000);
    begin_event(g, "adjust", 4);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "account", rnd_below(g, 2) ? "mdf" : "rebate");
    kv_int(&g->pk, "amount", rnd_below(g, 3) == 0 ? -amount : amount);
    kv_str(&g->pk, "reason", "correction");
}

/* A payout for the partner's last closed period; a sale before any close. */
static void ev_payout(tly_rtgen *g)
{
    uint32_t partner = (uint32_t)rnd_below(g, g->partners);
    unsigned p = partner % GEN_PROGRAMS;
    if (g->open_period[p] == tly_period_of(gen_kind[p], GEN_AT_START_MS)) {
        ev_sale(g);
        return;
    }
    char name[32], period[TLY_PERIOD_TEXT_BYTES];
    tly_rtgen_partner_name(partner, name, sizeof name);
    tly_period_format(gen_kind[p], g->open_period[p] - 1, period);
    begin_event(g, "payout", 3);
    kv_str(&g->pk, "partner", name);
    kv_str(&g->pk, "period", period);
    kv_int(&g->pk, "amount", 1 + (int64_t)rnd_below(g, 3000));
}

/* A close is due when business time has left a program's open period. */
static bool close_due(tly_rtgen *g)
{
    for (unsigned p = 0; p < GEN_PROGRAMS; p++) {
        if (tly_period_of(gen_kind[p], g->at_ms) > g->open_period[p]) {
            ev_close(g, p);
            return true;
        }
    }
    return false;
}

static void ev_any(tly_rtgen *g)
{
    g->at_ms += (int64_t)rnd_below(g, (uint64_t)g->step_ms * 2 + 1);
    if (g->enrolled < g->partners && rnd_below(g, 4) == 0) {
        ev_partner(g);
        return;
    }
    uint64_t r = rnd_below(g, 100);
    if (r < 60 || (r < 68 && g->sale_count == 0))
        ev_sale(g);
    else if (r < 68)
        ev_return(g);
    else if (r < 73)
        ev_cert(g);
    else if (r < 88)
        ev_claim(g);
    else if (r < 91)
        ev_adjust(g);
    else if (r < 92)
        ev_payout(g);
    else
        ev_sale(g);
}

tly_err tly_rtgen_next(tly_rtgen *g, msgpack_sbuffer *out)
{
    if (g->made >= g->total)
        return TLY_NOT_FOUND;
    msgpack_packer_init(&g->pk, out, msgpack_sbuffer_write);
    if (g->made < GEN_PROGRAMS)
        ev_program(g, (unsigned)g->made);
    else if (!close_due(g))
        ev_any(g);
    g->made++;
    return TLY_OK;
}

/* --- building a log --- */

typedef struct gen_batch {
    tly_log_item items[GEN_APPEND_BATCH];
    size_t offsets[GEN_APPEND_BATCH + 1];
    char ids[GEN_APPEND_BATCH][GEN_ID_BYTES];
    msgpack_sbuffer buf;
} gen_batch;

/* Fills the batch with up to GEN_APPEND_BATCH events; *count gets how many.
 * Each event is validated, so a generator bug shows here and not as "log
 * corruption" in a consumer. */
static tly_err fill_batch(tly_rtgen *g, gen_batch *b, int64_t now_ms, uint32_t *count)
{
    uint32_t n = 0;
    b->buf.size = 0;
    while (n < GEN_APPEND_BATCH) {
        b->offsets[n] = b->buf.size;
        snprintf(b->ids[n], GEN_ID_BYTES, "g-%llu", (unsigned long long)g->made);
        if (tly_rtgen_next(g, &b->buf) != TLY_OK)
            break;
        n++;
    }
    b->offsets[n] = b->buf.size;
    for (uint32_t i = 0; i < n; i++) {
        tly_log_item *it = &b->items[i];
        *it = (tly_log_item){0};
        it->source = (tly_str){TLY_RTGEN_SOURCE, (uint32_t)strlen(TLY_RTGEN_SOURCE)};
        it->id = (tly_str){b->ids[i], (uint32_t)strlen(b->ids[i])};
        it->event = (const uint8_t *)b->buf.data + b->offsets[i];
        it->event_len = b->offsets[i + 1] - b->offsets[i];
        tly_event ev;
        tly_field_error fe;
        tly_err err = tly_event_decode(it->event, it->event_len, now_ms, &ev, &fe);
        if (err != TLY_OK) {
            fprintf(stderr, "tally: generated event %s invalid: %s: %s\n", b->ids[i], fe.field,
                    fe.message);
            return err;
        }
    }
    *count = n;
    return TLY_OK;
}

/* Building a log runs in two threads: a filler generates and validates
 * one batch while the caller appends the other (the generator itself stays
 * one sequence, so the bytes are those of one thread). */
typedef struct gen_pipe {
    tly_rtgen *g;
    gen_batch *b[2];
    uint32_t count[2]; /* events in b[i]; 0: the generator is done */
    int64_t now_ms[2];
    tly_err err[2]; /* fill_batch's result for b[i] */
    bool full[2];   /* filled, not appended yet */
    bool stop;      /* the appender gave up: stop filling */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} gen_pipe;

static void *filler_main(void *arg)
{
    gen_pipe *p = arg;
    for (unsigned i = 0;; i ^= 1) { /* bounded: each fill consumes up to a batch of g->total */
        pthread_mutex_lock(&p->mu);
        while (p->full[i] && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return NULL;
        int64_t now_ms = tly_now_ms();
        uint32_t n = 0;
        tly_err err = fill_batch(p->g, p->b[i], now_ms, &n);
        pthread_mutex_lock(&p->mu);
        p->count[i] = n;
        p->now_ms[i] = now_ms;
        p->err[i] = err;
        p->full[i] = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (err != TLY_OK || n == 0)
            return NULL;
    }
}

/* Appends the batch b[i] the filler handed over. */
static tly_err append_batch(tly_log *log, gen_pipe *p, unsigned i)
{
    uint32_t n = p->count[i];
    tly_log_group grp = {0, n, false};
    tly_err err = tly_log_append(log, p->now_ms[i], p->b[i]->items, n, &grp, 1);
    for (uint32_t k = 0; err == TLY_OK && k < n; k++)
        if (p->b[i]->items[k].err != TLY_OK || p->b[i]->items[k].dup)
            err = p->b[i]->items[k].dup ? TLY_CONFLICT : p->b[i]->items[k].err;
    return err;
}

static tly_err append_all(tly_log *log, gen_pipe *p)
{
    tly_err err = TLY_OK;
    uint64_t done = 0, total = p->g->total;
    for (unsigned i = 0;; i ^= 1) { /* bounded: the filler ends after g->total events */
        pthread_mutex_lock(&p->mu);
        while (!p->full[i])
            pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        err = p->err[i];
        if (err != TLY_OK || p->count[i] == 0)
            break;
        err = append_batch(log, p, i);
        done += p->count[i];
        pthread_mutex_lock(&p->mu);
        p->full[i] = false;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (err != TLY_OK)
            break;
        tly_progress("building log", done, total);
    }
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return err;
}

/* Runs the filler beside append_all. */
static tly_err build(tly_log *log, gen_pipe *p)
{
    pthread_t filler;
    if (pthread_create(&filler, NULL, filler_main, p) != 0)
        return TLY_NOMEM;
    tly_err err = append_all(log, p);
    pthread_join(filler, NULL);
    return err;
}

tly_err tly_rtgen_build_log(const char *log_dir, uint64_t seed, uint64_t events)
{
    return tly_rtgen_build_log_partners(log_dir, seed, events, 0);
}

tly_err tly_rtgen_build_log_partners(const char *log_dir, uint64_t seed, uint64_t events,
                                     uint32_t partners)
{
    tly_log *log = NULL;
    gen_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return TLY_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->b[0] = calloc(1, sizeof *p->b[0]);
    p->b[1] = calloc(1, sizeof *p->b[1]);
    tly_err err = p->b[0] && p->b[1] ? TLY_OK : TLY_NOMEM;
    for (unsigned i = 0; err == TLY_OK && i < 2; i++)
        msgpack_sbuffer_init(&p->b[i]->buf);
    if (err == TLY_OK)
        err = tly_rtgen_new_partners(seed, events, partners, &p->g);
    if (err == TLY_OK)
        err = tly_log_open(log_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log);
    uint64_t head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    if (err == TLY_OK)
        err = tly_log_head(log, &head, hash);
    if (err == TLY_OK && head != 0)
        err = TLY_USAGE;
    if (err == TLY_OK)
        err = build(log, p);
    tly_progress_end();
    tly_log_close(log);
    tly_rtgen_free(p->g);
    for (unsigned i = 0; i < 2; i++)
        if (p->b[i])
            msgpack_sbuffer_destroy(&p->b[i]->buf);
    free(p->b[0]);
    free(p->b[1]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return err;
}
