/*
 * engine_views.c — the SPEC section 8 objects, built with jansson in the
 * SPEC's key order (jansson keeps insertion order, so the stored JSON text
 * reads like the SPEC).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

/* Names are UTF-8 (MessagePack str); a string jansson refuses becomes "". */
static json_t *jstr(const char *s, size_t len)
{
    json_t *j = s == NULL ? json_null() : json_stringn(s, len);
    return j != NULL ? j : json_string("");
}

static json_t *jname(eng_name n)
{
    return n.ptr == NULL ? json_null() : jstr(n.ptr, n.len);
}

static json_t *jperiod(tly_period_kind kind, int32_t p)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(kind, p, text);
    return json_string(text);
}

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v);
}

static void set_int(json_t *o, const char *k, int64_t v)
{
    json_object_set_new(o, k, json_integer(v));
}

static json_t *head(const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_partner *pp = &e->partners[p];
    json_t *o = json_object();
    set(o, "partner", jstr(pp->id, pp->id_len));
    if (with_seq)
        set_int(o, "seq", (int64_t)e->seq);
    return o;
}

/* [M3] live buckets with remaining > 0, oldest first; [M4] expires_after
 * is A + N - 1 with the current N. */
static json_t *view_balance(const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_partner *pp = &e->partners[p];
    const eng_program *g = &e->programs[pp->program];
    const eng_pstate *st = pp->st;
    json_t *o = json_object();
    set(o, "partner", jstr(pp->id, pp->id_len));
    set(o, "program", jstr(g->name, g->name_len));
    set(o, "currency", jstr(g->currency, 3));
    set(o, "tier", jname(g->rules.tiers[st->tier].name));
    if (with_seq)
        set_int(o, "seq", (int64_t)e->seq);
    set_int(o, "accrued", st->accrued);
    set_int(o, "clawed_back", st->clawed_back);
    set_int(o, "adjusted", st->adjusted);
    set_int(o, "expired", st->expired);
    set_int(o, "pending", st->pending);
    set_int(o, "approved", st->approved);
    set_int(o, "paid", st->paid);
    set_int(o, "deficit", st->deficit);
    int64_t avail = 0;
    (void)eng_available(st, &avail); /* checked after every apply */
    set_int(o, "available", avail);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < st->bucket_count; i++) {
        const eng_bucket *b = &st->buckets[i];
        if (b->remaining <= 0)
            continue;
        json_t *bo = json_object();
        set(bo, "period", jperiod(g->kind, b->period));
        set_int(bo, "remaining", b->remaining);
        set(bo, "expires_after", jperiod(g->kind, b->period + g->rules.expiry_n - 1));
        json_array_append_new(arr, bo);
    }
    set(o, "buckets", arr);
    return o;
}

/* Rows are the periods with a sale, return or rebate adjustment [R4];
 * revenue is net R [R3]; figures may be negative through adjustments [R5]. */
static json_t *view_rebate(const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    const eng_pstate *st = e->partners[p].st;
    json_t *o = head(e, p, with_seq);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < st->row_count; i++) {
        const eng_row *row = &st->rows[i];
        int64_t fig = 0;
        int32_t bps = 0;
        (void)eng_row_figure(&g->rules, row, &fig, &bps); /* checked after every apply */
        json_t *ro = json_object();
        set(ro, "period", jperiod(g->kind, row->period));
        set_int(ro, "revenue", row->revenue);
        set_int(ro, "rate_bps", bps);
        set_int(ro, "rebate", fig);
        set(ro, "status", json_string(row->final ? "final" : "open"));
        set_int(ro, "paid", row->paid);
        json_array_append_new(arr, ro);
    }
    set(o, "periods", arr);
    int64_t open = 0, payable = 0;
    (void)eng_rebate_totals(&g->rules, st, &open, &payable);
    set_int(o, "payable", payable);
    set_int(o, "accrued_open", open);
    return o;
}

/* [T2] window of the next close; [T3] next tier, needs floored at 0. */
static json_t *view_tier(const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_program *g = &e->programs[e->partners[p].program];
    const eng_rules *r = &g->rules;
    const eng_pstate *st = e->partners[p].st;
    json_t *o = head(e, p, with_seq);
    set(o, "tier", jname(r->tiers[st->tier].name));
    int64_t window = 0;
    (void)eng_window_revenue(st, g->eop - r->window_w + 1, g->eop, &window);
    set_int(o, "window_revenue", window);
    set_int(o, "active_certs", st->cert_count);
    if (st->tier + 1 < r->tier_count) {
        const eng_tier *t = &r->tiers[st->tier + 1];
        json_t *n = json_object();
        set(n, "tier", jname(t->name));
        int64_t rev = 0;
        if (tly_money_sub(t->min_revenue, window, &rev) != TLY_OK || rev < 0)
            rev = 0; /* window ≥ 0 when the subtraction fails upward */
        int64_t certs = t->min_certs - (int64_t)st->cert_count;
        set_int(n, "revenue_needed", rev);
        set_int(n, "certs_needed", certs > 0 ? certs : 0);
        set(o, "next", n);
    } else {
        set(o, "next", json_null());
    }
    json_t *arr = json_array();
    for (uint32_t i = 0; i < st->hist_count; i++) {
        const eng_hist *h = &st->hist[i];
        json_t *ho = json_object();
        set_int(ho, "seq", (int64_t)h->seq);
        set(ho, "period", jperiod(g->kind, h->period));
        set(ho, "from", jname(h->from));
        set(ho, "to", jname(h->to));
        json_array_append_new(arr, ho);
    }
    set(o, "history", arr);
    return o;
}

/* Claims in submit order [C8]; approved and paid are 0 until set, reason is
 * the reject reason, the denial code or null [C7]. */
static json_t *view_claims(const tly_engine *e, uint32_t p, bool with_seq)
{
    const eng_pstate *st = e->partners[p].st;
    json_t *o = head(e, p, with_seq);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < st->claim_count; i++) {
        const eng_claim *c = &e->claims[st->claims[i]];
        json_t *co = json_object();
        set(co, "claim", jstr(c->id, c->id_len));
        set(co, "status", json_string(eng_claim_status_name(c->status)));
        set_int(co, "requested", c->requested);
        set_int(co, "approved", c->approved);
        set_int(co, "paid", c->paid);
        set(co, "reason", jname(c->reason));
        json_array_append_new(arr, co);
    }
    set(o, "claims", arr);
    return o;
}

json_t *eng_view_json(const tly_engine *e, char view, uint32_t p, bool with_seq)
{
    assert(e->partners[p].owned && e->partners[p].program != ENG_NONE);
    switch (view) {
    case 'b':
        return view_balance(e, p, with_seq);
    case 'r':
        return view_rebate(e, p, with_seq);
    case 't':
        return view_tier(e, p, with_seq);
    case 'c':
        return view_claims(e, p, with_seq);
    default:
        return NULL;
    }
}

json_t *tly_engine_view(const tly_engine *e, char view, const char *partner)
{
    size_t len = strlen(partner);
    uint32_t p = eng_map_get(&e->partner_map, partner, len, eng_hash(partner, len));
    if (p == ENG_NONE || !e->partners[p].owned || e->partners[p].program == ENG_NONE)
        return NULL;
    return eng_view_json(e, view, p, true);
}

/* This shard's share of a program's liabilities; [M9] mdf_available is the
 * signed sum. NULL when a sum leaves int64. */
json_t *eng_liability_json(const tly_engine *e, const eng_program *g)
{
    int64_t avail = 0, pending = 0, approved = 0, open = 0, payable = 0;
    for (uint32_t i = 0; i < g->member_count; i++) {
        const eng_pstate *st = e->partners[g->members[i]].st;
        int64_t a, o, p;
        if (eng_available(st, &a) != TLY_OK || eng_rebate_totals(&g->rules, st, &o, &p) != TLY_OK ||
            tly_money_addto(&avail, a) != TLY_OK ||
            tly_money_addto(&pending, st->pending) != TLY_OK ||
            tly_money_addto(&approved, st->approved) != TLY_OK ||
            tly_money_addto(&open, o) != TLY_OK || tly_money_addto(&payable, p) != TLY_OK)
            return NULL;
    }
    json_t *o = json_object();
    set(o, "program", jstr(g->name, g->name_len));
    set(o, "currency", jstr(g->currency, 3));
    set_int(o, "mdf_available", avail);
    set_int(o, "mdf_pending", pending);
    set_int(o, "mdf_approved", approved);
    set_int(o, "rebate_accrued_open", open);
    set_int(o, "rebate_payable", payable);
    return o;
}

json_t *eng_exc_json(const tly_engine *e, const eng_exc *x)
{
    json_t *o = json_object();
    set_int(o, "seq", (int64_t)x->seq);
    set(o, "kind", json_string(eng_exc_kind_name(x->kind)));
    if (x->partner == ENG_NONE)
        set(o, "partner", json_null());
    else
        set(o, "partner", jstr(e->partners[x->partner].id, e->partners[x->partner].id_len));
    set(o, "detail", jname(x->detail));
    return o;
}

static int cmp_exc(const void *a, const void *b)
{
    const eng_exc *x = *(const eng_exc *const *)a, *y = *(const eng_exc *const *)b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* Ordered by (seq, n), the order of the stored "X/" keys: an exception of a
 * held event, raised at enrollment, sits at its own seq [D7]. */
json_t *tly_engine_exceptions(const tly_engine *e)
{
    const eng_exc **order = malloc((e->exc_count + 1) * sizeof *order);
    if (order == NULL)
        return NULL;
    for (uint32_t i = 0; i < e->exc_count; i++)
        order[i] = &e->excs[i];
    qsort(order, e->exc_count, sizeof *order, cmp_exc);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < e->exc_count; i++)
        json_array_append_new(arr, eng_exc_json(e, order[i]));
    free(order);
    return arr;
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
        json_t *o = eng_liability_json(e, order[i]);
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

static int cmp_partner(const void *a, const void *b)
{
    const eng_partner *x = *(const eng_partner *const *)a, *y = *(const eng_partner *const *)b;
    return cmp_name(x->id, x->id_len, y->id, y->id_len);
}

json_t *tly_engine_partners(const tly_engine *e)
{
    const eng_partner **order = malloc((e->partner_count + 1) * sizeof *order);
    if (order == NULL)
        return NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->partner_count; i++)
        if (e->partners[i].owned && e->partners[i].program != ENG_NONE)
            order[n++] = &e->partners[i];
    qsort(order, n, sizeof *order, cmp_partner);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(arr, jstr(order[i]->id, order[i]->id_len));
    free(order);
    return arr;
}
