/*
 * engine_views.c — floor 2 of the engine (see engine_internal.h): the SPEC
 * section 8 objects, written once against the engine's JSON writer
 * (engine_json.c) in the SPEC's key order: the text back end gives the
 * stored documents, the tree back end the API objects (jansson keeps
 * insertion order, so both read like the SPEC). Reads the accounts
 * (engine_mdf.c) and the tables (engine_state.c) of floor 3.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"
#include "tly_assert.h"

/* Short names for the writer calls, so a view reads like its SPEC table. */
static void key_str(eng_jw *w, const char *k, const char *s, size_t len)
{
    eng_jw_key(w, k);
    eng_jw_str(w, s, len);
}

/* Names are UTF-8 (MessagePack str); the writer turns one jansson would
 * refuse into "". */
static void key_name(eng_jw *w, const char *k, eng_name n)
{
    key_str(w, k, n.ptr, n.len);
}

static void key_lit(eng_jw *w, const char *k, const char *lit)
{
    key_str(w, k, lit, strlen(lit));
}

static void key_int(eng_jw *w, const char *k, int64_t v)
{
    eng_jw_key(w, k);
    eng_jw_int(w, v);
}

static void key_period(eng_jw *w, const char *k, tly_period_kind kind, int32_t p)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(kind, p, text);
    key_lit(w, k, text);
}

/* Opens the document with "partner" (and "seq" for the API objects). */
static void head(eng_jw *w, const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_partner *pp = &e->partners[p];
    eng_jw_obj(w);
    key_str(w, "partner", pp->id, pp->id_len);
    if (with_seq)
        key_int(w, "seq", (int64_t)e->seq);
}

/* [M3] live buckets with remaining > 0, oldest first; [M4] expires_after
 * is A + N - 1 with the current N. */
static void balance_buckets(eng_jw *w, const eng_program *g, const eng_pstate *st)
{
    eng_jw_key(w, "buckets");
    eng_jw_arr(w);
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        const eng_bucket *b = &st->buckets[i];
        if (b->remaining <= 0)
            continue;
        eng_jw_obj(w);
        key_period(w, "period", g->kind, b->period);
        key_int(w, "remaining", b->remaining);
        key_period(w, "expires_after", g->kind, b->period + g->rules.expiry_n - 1);
        eng_jw_end(w);
    }
    eng_jw_end(w);
}

static void view_balance(eng_jw *w, const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_partner *pp = &e->partners[p];
    const eng_program *g = &e->programs[pp->program];
    const eng_pstate *st = pp->st;
    eng_jw_obj(w);
    key_str(w, "partner", pp->id, pp->id_len);
    key_str(w, "program", g->name, g->name_len);
    key_str(w, "currency", g->currency, 3);
    key_name(w, "tier", g->rules.tiers[st->tier].name);
    if (with_seq)
        key_int(w, "seq", (int64_t)e->seq);
    key_int(w, "accrued", st->accrued);
    key_int(w, "clawed_back", st->clawed_back);
    key_int(w, "adjusted", st->adjusted);
    key_int(w, "expired", st->expired);
    key_int(w, "pending", st->pending);
    key_int(w, "approved", st->approved);
    key_int(w, "paid", st->paid);
    key_int(w, "deficit", st->deficit);
    int64_t avail = 0;
    (void)eng_available(st, &avail); /* checked after every apply */
    key_int(w, "available", avail);
    balance_buckets(w, g, st);
    eng_jw_end(w);
}

/* Rows are the periods with a sale, return, referral or rebate adjustment
 * [R4]; revenue is net R [R3]; figures may be negative through adjustments
 * [R5]; basis is X and baseline B (null for a revenue basis) [R11], referral
 * the period's fees [Q3]. */
static void view_rebate(eng_jw *w, const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    const eng_pstate *st = e->partners[p].st;
    head(w, e, p, with_seq);
    eng_jw_key(w, "periods");
    eng_jw_arr(w);
    TLY_ASSERT(st->arch_all); /* eng_arch_fill: the caller's */
    for (uint32_t i = 0; i < st->arch_n + st->row_count; i++) {
        const eng_row *row = i < st->arch_n ? &st->arch[i] : &st->rows[i - st->arch_n];
        eng_figure f = {0};
        (void)eng_row_figure(&g->rules, st, row, &f); /* checked after every apply */
        eng_jw_obj(w);
        key_period(w, "period", g->kind, row->period);
        key_int(w, "revenue", row->revenue);
        key_int(w, "rate_bps", f.bps);
        key_int(w, "rebate", f.figure);
        key_lit(w, "status", row->final ? "final" : "open");
        key_int(w, "paid", row->paid);
        key_int(w, "basis", f.basis);
        eng_jw_key(w, "baseline");
        if (f.has_baseline)
            eng_jw_int(w, f.baseline);
        else
            eng_jw_null(w);
        key_int(w, "referral", row->referral);
        eng_jw_end(w);
    }
    eng_jw_end(w);
    int64_t open = 0, payable = 0;
    (void)eng_rebate_totals(&g->rules, st, &open, &payable);
    key_int(w, "payable", payable);
    key_int(w, "accrued_open", open);
    eng_jw_end(w);
}

/* A tier's benefits, as a JSON array of strings. */
static void key_benefits(eng_jw *w, const eng_tier *t)
{
    eng_jw_key(w, "benefits");
    eng_jw_arr(w);
    for (uint32_t i = 0; i < t->benefit_count; i++)
        eng_jw_str(w, t->benefits[i].ptr, t->benefits[i].len);
    eng_jw_end(w);
}

/* [T3] the next tier, needs floored at 0; null at the top tier. Certs
 * count as of the end of the earliest open period [T15]. */
static void tier_next(eng_jw *w, const eng_rules *r, const eng_pstate *st, int64_t window,
                      int64_t active)
{
    eng_jw_key(w, "next");
    if (st->tier + 1 >= r->tier_count) {
        eng_jw_null(w);
        return;
    }
    const eng_tier *t = &r->tiers[st->tier + 1];
    int64_t rev = 0;
    if (tly_money_sub(t->min_revenue, window, &rev) != TLY_OK || rev < 0)
        rev = 0; /* window ≥ 0 when the subtraction fails upward */
    int64_t certs = t->min_certs - active;
    eng_jw_obj(w);
    key_name(w, "tier", t->name);
    key_int(w, "revenue_needed", rev);
    key_int(w, "certs_needed", certs > 0 ? certs : 0);
    key_benefits(w, t);
    eng_jw_end(w);
}

/* [T2] window of the next close. */
static void view_tier(eng_jw *w, const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    const eng_rules *r = &g->rules;
    const eng_pstate *st = e->partners[p].st;
    TLY_ASSERT(st->cold); /* eng_partner_cold: the caller's */
    head(w, e, p, with_seq);
    key_name(w, "tier", r->tiers[st->tier].name);
    int64_t window = 0;
    (void)eng_window_revenue(st, g->eop - r->window_w + 1, g->eop, &window);
    key_int(w, "window_revenue", window);
    /* as of the end of the earliest open period [T10] [T15] */
    int64_t active = eng_active_certs(st, tly_period_start_ms(g->kind, g->eop + 1));
    key_int(w, "active_certs", active);
    tier_next(w, r, st, window, active);
    eng_jw_key(w, "history");
    eng_jw_arr(w);
    for (uint32_t i = 0; i < st->hist_count; i++) {
        const eng_hist *h = &st->hist[i];
        eng_jw_obj(w);
        key_int(w, "seq", (int64_t)h->seq);
        key_period(w, "period", g->kind, h->period);
        key_name(w, "from", h->from);
        key_name(w, "to", h->to);
        eng_jw_end(w);
    }
    eng_jw_end(w);
    /* section 10's additions after section 8's keys, as the answer has them */
    key_benefits(w, &r->tiers[st->tier]);
    /* grace left while closes are failing; null without grace [T9] [T12] */
    eng_jw_key(w, "grace_left");
    if (r->grace > 0 && st->fails > 0)
        eng_jw_int(w, r->grace - (int64_t)st->fails);
    else
        eng_jw_null(w);
    eng_jw_end(w);
}

/* Claims in submit order [C8]; approved and paid are 0 until set, reason is
 * the reject reason, the denial code or null [C7]. */
static void view_claims(eng_jw *w, const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_pstate *st = e->partners[p].st;
    TLY_ASSERT(st->claims_all); /* eng_claims_fill: the caller's */
    head(w, e, p, with_seq);
    eng_jw_key(w, "claims");
    eng_jw_arr(w);
    for (uint32_t i = 0; i < st->claim_count; i++) {
        const eng_claim *c = &st->claims[i];
        TLY_ASSERT(c->loaded);
        eng_jw_obj(w);
        key_name(w, "claim", c->id);
        key_lit(w, "status", eng_claim_status_name(c->status));
        key_int(w, "requested", c->requested);
        key_int(w, "approved", c->approved);
        key_int(w, "paid", c->paid);
        key_name(w, "reason", c->reason);
        eng_jw_end(w);
    }
    eng_jw_end(w);
    eng_jw_end(w);
}

/* ---- the finance outputs' documents (SPEC section 11) ---- */

/* The names of what took effect, as section 11's report and journal rows
 * name them (eng_act_field order). */
static const char *const act_names[ENG_ACT_COUNT] = {
    "revenue",      "mdf_accrued", "mdf_clawed_back", "mdf_adjusted", "mdf_expired",
    "mdf_approved", "mdf_paid",    "rebate",          "referral",     "rebate_paid"};

static void act_fields(eng_jw *w, const eng_act *a)
{
    for (int f = 0; f < ENG_ACT_COUNT; f++)
        key_int(w, act_names[f], a->v[f]);
}

void eng_partner_row_write(eng_jw *w, const eng_program *g, const char *id, size_t id_len,
                           const eng_pstate *st)
{
    eng_jw_obj(w);
    key_str(w, "partner", id, id_len);
    key_name(w, "name", st->name);
    key_str(w, "program", g->name, g->name_len);
    key_lit(w, "kind", tly_partner_kind_name(st->kind));
    key_name(w, "region", st->region);
    key_name(w, "tier", g->rules.tiers[st->tier].name);
    int64_t avail = 0, open = 0, payable = 0;
    (void)eng_available(st, &avail); /* checked after every apply */
    (void)eng_rebate_totals(&g->rules, st, &open, &payable);
    key_int(w, "available", avail);
    key_int(w, "rebate_payable", payable);
    eng_jw_end(w);
}

/* What the close of the earliest open period will expire of a partner:
 * the buckets it ends, a deficit not netted [EX3]. */
static int64_t expiring_of(const eng_program *g, const eng_pstate *st)
{
    int32_t last = g->eop - g->rules.expiry_n + 1;
    int64_t sum = 0;
    for (uint32_t i = 0; i < st->bucket_count && st->buckets[i].period <= last; i++)
        (void)tly_money_addto(&sum, st->buckets[i].remaining); /* ≤ available's sum */
    return sum;
}

int64_t eng_expiring_of(const tly_engine *e, uint32_t p)
{
    const eng_partner *pp = &e->partners[p];
    return expiring_of(&e->programs[pp->program], pp->st);
}

/* A partner's expiring funds: {"partner","amount"}. */
static void view_expiring(eng_jw *w, const tly_engine *e, uint32_t p)
{
    head(w, e, p, false);
    key_int(w, "amount", eng_expiring_of(e, p));
    eng_jw_end(w);
}

const char *tly_engine_act_name(unsigned f)
{
    return f < ENG_ACT_COUNT ? act_names[f] : NULL;
}

/* The open figure of period in g's settled estimates, or 0. */
static int64_t open_rebate_of(const eng_program *g, int32_t period)
{
    for (uint32_t i = 0; i < g->open_count; i++)
        if (g->open_rebate[i].period == period)
            return g->open_rebate[i].amount;
    return 0;
}

void eng_report_write(eng_jw *w, const eng_program *g)
{
    eng_jw_obj(w);
    key_str(w, "program", g->name, g->name_len);
    key_str(w, "currency", g->currency, 3);
    key_period(w, "first", g->kind, g->first_period);
    key_period(w, "open", g->kind, g->eop);
    eng_jw_key(w, "periods");
    eng_jw_arr(w);
    /* every period with a booking or an open estimate, ascending */
    uint32_t i = 0, j = 0;
    while (i < g->rep_count || j < g->open_count) {
        int32_t pa = i < g->rep_count ? g->rep[i].period : INT32_MAX;
        int32_t pb = j < g->open_count ? g->open_rebate[j].period : INT32_MAX;
        int32_t period = pa < pb ? pa : pb;
        eng_act a = pa == period ? g->rep[i] : (eng_act){.period = period};
        (void)tly_money_addto(&a.v[ENG_ACT_REBATE], open_rebate_of(g, period));
        eng_jw_obj(w);
        key_period(w, "period", g->kind, period);
        act_fields(w, &a);
        eng_jw_end(w);
        i += pa == period;
        j += pb == period;
    }
    eng_jw_end(w);
    eng_jw_end(w);
}

void eng_view_write(eng_jw *w, const tly_engine *e, char view, uint32_t p, bool with_seq)
{
    TLY_ASSERT(e->partners[p].owned && e->partners[p].program != ENG_NONE);
    switch (view) {
    case 'b':
        view_balance(w, e, p, with_seq);
        break;
    case 'r':
        view_rebate(w, e, p, with_seq);
        break;
    case 't':
        view_tier(w, e, p, with_seq);
        break;
    case 'c':
        view_claims(w, e, p, with_seq);
        break;
    case 'P':
        eng_partner_row_write(w, &e->programs[e->partners[p].program], e->partners[p].id,
                              e->partners[p].id_len, e->partners[p].st);
        break;
    case 'e':
        view_expiring(w, e, p);
        break;
    default:
        TLY_ASSERT(!"unknown view");
    }
}

/* A view as a jansson tree; NULL for an unknown view letter. */
static json_t *eng_view_json(const tly_engine *e, char view, uint32_t p, bool with_seq)
{
    if (view != 'b' && view != 'r' && view != 't' && view != 'c' && view != 'P' && view != 'e')
        return NULL;
    eng_jw w;
    eng_jw_init_tree(&w);
    eng_view_write(&w, e, view, p, with_seq);
    return eng_jw_take(&w);
}

/* The engine behind a const one, for reading into its cache: what the
 * cache holds is not the engine's logical state (tly_engine_view), and
 * engines are never defined const (tly_engine_new allocates them). */
static tly_engine *cache_of(const tly_engine *e)
{
    return (tly_engine *)(uintptr_t)e;
}

json_t *tly_engine_view(const tly_engine *e, char view, const char *partner)
{
    size_t len = strlen(partner);
    uint32_t p;
    if (len > TLY_NAME_BYTES_MAX || eng_partner_find(cache_of(e), partner, len, &p) != TLY_OK ||
        p == ENG_NONE || !e->partners[p].owned || e->partners[p].program == ENG_NONE ||
        (view == 'c' && eng_claims_fill(cache_of(e), p) != TLY_OK) ||
        (view == 'r' && eng_arch_fill(cache_of(e), p) != TLY_OK) ||
        (view == 't' && eng_partner_cold(cache_of(e), p) != TLY_OK))
        return NULL;
    return eng_view_json(e, view, p, true);
}

json_t *tly_engine_report(const tly_engine *e, const char *program)
{
    uint32_t gi = eng_program_find(e, program, strlen(program));
    if (gi == ENG_NONE)
        return NULL;
    eng_jw w;
    eng_jw_init_tree(&w);
    eng_report_write(&w, &e->programs[gi]);
    return eng_jw_take(&w);
}

/* This shard's share of a program's liabilities; [M9] mdf_available is the
 * signed sum. */
void eng_liability_write(eng_jw *w, const eng_program *g, const eng_liab *l)
{
    eng_jw_obj(w);
    key_str(w, "program", g->name, g->name_len);
    key_str(w, "currency", g->currency, 3);
    key_int(w, "mdf_available", l->available);
    key_int(w, "mdf_pending", l->pending);
    key_int(w, "mdf_approved", l->approved);
    key_int(w, "rebate_accrued_open", l->open);
    key_int(w, "rebate_payable", l->payable);
    eng_jw_end(w);
}

/* Program gi's share now: its sums as of the last flush, plus, for each
 * member changed since, its share now less the share that flush stored;
 * TLY_OVERFLOW when a sum leaves int64. */
static tly_err liab_now(const tly_engine *e, uint32_t gi, eng_liab *out)
{
    const eng_program *g = &e->programs[gi];
    eng_liab l = g->liab;
    for (uint32_t i = 0; i < e->dirty_partner_count; i++) {
        const eng_partner *pp = &e->partners[e->dirty_partners[i]];
        eng_liab now;
        if (!pp->owned || pp->program != gi)
            continue;
        TRY(eng_liab_of(&g->rules, pp->st, &now));
        TRY(eng_liab_add(&l, &pp->liab, true));
        TRY(eng_liab_add(&l, &now, false));
    }
    *out = l;
    return TLY_OK;
}

/* A liabilities share as a jansson tree; NULL when a sum leaves int64. */
static json_t *eng_liability_json(const tly_engine *e, uint32_t gi)
{
    eng_liab l;
    if (liab_now(e, gi, &l) != TLY_OK)
        return NULL;
    eng_jw w;
    eng_jw_init_tree(&w);
    eng_liability_write(&w, &e->programs[gi], &l);
    return eng_jw_take(&w);
}

void eng_exc_write(eng_jw *w, const eng_exc *x)
{
    eng_jw_obj(w);
    key_int(w, "seq", (int64_t)x->seq);
    key_lit(w, "kind", tly_xkind_name((tly_xkind)x->kind));
    if (x->partner_len == ENG_NONE)
        key_str(w, "partner", NULL, 0);
    else
        key_str(w, "partner", x->text, x->partner_len);
    key_str(w, "detail", ENG_EXC_DETAIL(x), x->detail_len);
    /* what it is about, for finance to act on [section 11] */
    key_str(w, "event_id", ENG_EXC_ID(x), x->id_len);
    key_str(w, "source", ENG_EXC_SOURCE(x), x->source_len);
    eng_jw_key(w, "amount");
    if (x->has_amount)
        eng_jw_int(w, x->amount);
    else
        eng_jw_null(w);
    if (x->has_amount && x->currency[0] != '\0')
        key_str(w, "currency", x->currency, 3);
    else
        key_str(w, "currency", NULL, 0);
    eng_jw_end(w);
}

/* An exception as a jansson tree. */
static json_t *eng_exc_json(const eng_exc *x)
{
    eng_jw w;
    eng_jw_init_tree(&w);
    eng_exc_write(&w, x);
    return eng_jw_take(&w);
}

/* One exception of tly_engine_exceptions, with its order: raised by the
 * fold of record at_seq, n-th. */
typedef struct exc_doc {
    uint64_t at_seq;
    uint32_t n;
    json_t *doc;
} exc_doc;

typedef struct exc_docs {
    exc_doc *v;
    uint32_t count, cap;
} exc_docs;

static tly_err exc_docs_push(exc_docs *d, uint64_t seq, uint32_t n, json_t *doc)
{
    if (doc == NULL)
        return TLY_NOMEM;
    exc_doc x = {seq, n, doc};
    tly_err err = ENG_PUSH(d->v, d->count, d->cap, x);
    if (err != TLY_OK)
        json_decref(doc);
    return err;
}

/* A stored "X/<u64be at_seq><u32be n>" entry (seq below: at_seq). */
static tly_err exc_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    const uint8_t *k = (const uint8_t *)key + 2;
    uint32_t n = 0;
    if (klen != 2 + 12)
        return TLY_CORRUPT;
    uint64_t seq = tly_be64_get(k);
    for (int b = 0; b < 4; b++)
        n = (n << 8) | k[8 + b];
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    return doc == NULL ? TLY_CORRUPT : exc_docs_push(ctx, seq, n, doc);
}

static int cmp_exc(const void *a, const void *b)
{
    const exc_doc *x = a, *y = b;
    if (x->at_seq != y->at_seq)
        return x->at_seq < y->at_seq ? -1 : 1;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* In the order they were raised, (at_seq, n), the order of the stored
 * "X/" keys: an exception of a held event, raised at enrollment, sits
 * there with its own seq [D7]. With a store, the stored ones and those not
 * written yet. order: the documents, or the at_seq of each. */
static json_t *exceptions(const tly_engine *e, bool order)
{
    exc_docs d = {0};
    tly_err err = TLY_OK;
    bool stored = e->store.scan != NULL;
    if (stored)
        err = e->store.scan(e->store.ctx, "X/", 2, exc_visit, &d);
    for (uint32_t i = stored ? e->exc_flushed : 0; i < e->exc_count && err == TLY_OK; i++)
        err = exc_docs_push(&d, e->excs[i].at_seq, e->excs[i].n, eng_exc_json(&e->excs[i]));
    if (d.count > 0)
        qsort(d.v, d.count, sizeof *d.v, cmp_exc);
    json_t *arr = err == TLY_OK ? json_array() : NULL;
    for (uint32_t i = 0; i < d.count; i++) {
        if (arr != NULL && order)
            json_array_append_new(arr, json_integer((json_int_t)d.v[i].at_seq));
        else if (arr != NULL)
            json_array_append(arr, d.v[i].doc);
        json_decref(d.v[i].doc);
    }
    free(d.v);
    return arr;
}

json_t *tly_engine_exceptions(const tly_engine *e)
{
    return exceptions(e, false);
}

json_t *tly_engine_exception_order(const tly_engine *e)
{
    return exceptions(e, true);
}

static int cmp_name(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int cmp_program(const void *a, const void *b)
{
    const eng_program *x = *(const eng_program *const *)a, *y = *(const eng_program *const *)b;
    return cmp_name(x->name, x->name_len, y->name, y->name_len);
}

json_t *tly_engine_liabilities(const tly_engine *e)
{
    const eng_program **order = malloc((e->program_count + 1) * sizeof *order);
    if (order == NULL)
        return NULL;
    for (uint32_t i = 0; i < e->program_count; i++)
        order[i] = &e->programs[i];
    qsort(order, e->program_count, sizeof *order, cmp_program);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < e->program_count; i++) {
        json_t *o = eng_liability_json(e, (uint32_t)(order[i] - e->programs));
        if (o == NULL) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, o);
    }
    free(order);
    return arr;
}

/* The slots of the partners a walk visited. */
typedef struct slot_list {
    uint32_t *v;
    uint32_t count, cap;
} slot_list;

static tly_err note_member(tly_engine *e, uint32_t p, void *ctx)
{
    (void)e;
    slot_list *l = ctx;
    return ENG_PUSH(l->v, l->count, l->cap, p);
}

static int cmp_partner(const void *a, const void *b)
{
    const eng_partner *x = *(const eng_partner *const *)a, *y = *(const eng_partner *const *)b;
    return cmp_name(x->id, x->id_len, y->id, y->id_len);
}

/* Every owned enrolled partner, read into the cache when stored. */
json_t *tly_engine_partners(const tly_engine *e)
{
    slot_list l = {0};
    tly_err err = eng_members_each(cache_of(e), ENG_NONE, note_member, &l);
    const eng_partner **order = malloc((l.count + 1) * sizeof *order);
    if (err != TLY_OK || order == NULL) {
        free(l.v);
        free(order);
        return NULL;
    }
    for (uint32_t i = 0; i < l.count; i++)
        order[i] = &e->partners[l.v[i]];
    qsort(order, l.count, sizeof *order, cmp_partner);
    eng_jw w;
    eng_jw_init_tree(&w);
    eng_jw_arr(&w);
    for (uint32_t i = 0; i < l.count; i++)
        eng_jw_str(&w, order[i]->id, order[i]->id_len);
    eng_jw_end(&w);
    free(order);
    free(l.v);
    return eng_jw_take(&w);
}
