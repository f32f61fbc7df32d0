/*
 * tly_explain.c — the collector and report of tly_explain.h.
 *
 * Lines are kept as the fold reports them (numbers for the sums, a JSON
 * object for the report). The checks recompute every balance field from
 * the lines alone and compare with the engine's views; the views come from
 * the same fold, so a difference means a movement the trace does not
 * report — exactly what this command exists to rule out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_base.h"
#include "tly_assert.h"
#include "tly_explain.h"
#include "tly_limits.h"
#include "tly_money.h"
#include "tly_period.h"

typedef struct xline {
    tly_trace_kind kind;
    uint64_t seq;
    int32_t period, bucket, bps;
    int64_t amount, basis, from;
    tly_rebate_mode mode;
    /* figure lines: X, B over k periods, the bonus, minimum and cap */
    bool has_baseline;
    int32_t baseline_k, bonus_bps;
    int64_t rebate_basis, baseline, rebate_min, cap;
    json_t *j; /* the report's line object; figure lines: {"tier"} of the
                * bonus; NULL for slices */
} xline;

typedef struct xret {
    uint64_t seq;
    char id[TLY_ID_BYTES_MAX + 1];
} xret;

struct tly_explain {
    tly_engine *e;
    char *partner;
    tly_err err; /* first failure inside the callback (out of memory) */
    bool have_kind;
    tly_period_kind kind;
    xline *lines;
    size_t count, cap;
    xret *rets; /* the partner's returns, in seq order */
    size_t ret_count, ret_cap;
    bool opened; /* open estimates added */
};

/* Grows *v (elements of size elem) to hold need; false when out of memory. */
static bool grow(void **v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*v, ncap * elem);
    if (n == NULL)
        return false;
    *v = n;
    *cap = ncap;
    return true;
}

/* ---- lines as JSON ---- */

static json_t *jstr(tly_str s)
{
    json_t *j = s.ptr == NULL || s.len == 0 ? json_null() : json_stringn(s.ptr, s.len);
    return j != NULL ? j : json_string("");
}

static json_t *jperiod(tly_period_kind kind, int32_t p)
{
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(kind, p, text);
    return json_string(text);
}

/* "1.0823" for units 10823 at scale 4: a rate as its exact decimal, from
 * integers [F1]. */
static void rate_text(int64_t units, int32_t scale, char *buf, size_t cap)
{
    char digits[24]; /* units < 10^19, scale ≤ 9: at most 19 digits */
    TLY_ASSERT(units >= 0 && scale >= 0 && scale <= TLY_RATE_FRAC_DIGITS_MAX);
    int n = snprintf(digits, sizeof digits, "%0*lld", scale + 1, (long long)units);
    TLY_ASSERT(n > scale && (size_t)n < sizeof digits);
    int whole = n - scale; /* at least one digit before the point */
    snprintf(buf, cap, "%.*s%s%s", whole, digits, scale > 0 ? "." : "", digits + whole);
}

/* A converted amount: the event's amount in its currency and the rate
 * used; "amount"/"sale_amount"/... are in the program's currency [F2]. */
static void fx_extras(json_t *o, const tly_trace_line *l)
{
    if (l->fx_currency.len == 0)
        return;
    char rate[48];
    rate_text(l->fx_units, l->fx_scale, rate, sizeof rate);
    json_object_set_new(o, "currency", jstr(l->fx_currency));
    json_object_set_new(o, "foreign_amount", json_integer(l->fx_amount));
    json_object_set_new(o, "rate", json_string(rate));
}

static json_t *jcap(int64_t cap)
{
    return cap == INT64_MAX ? json_null() : json_integer(cap);
}

/* Keys of the section 10 lines: the MDF cap, a referral fee, a grace
 * decision [K1] [Q1] [T9]. */
static void v2_extras(json_t *o, const tly_trace_line *l)
{
    static const char *const moves[] = {"down", "kept", "up"};
    if (l->kind == TLY_TRACE_CAPPED) {
        json_object_set_new(o, "accrual_uncapped", json_integer(l->basis));
        json_object_set_new(o, "cap", jcap(l->cap));
    } else if (l->kind == TLY_TRACE_REFERRAL) {
        json_object_set_new(o, "deal", jstr(l->ref));
        json_object_set_new(o, "referred", json_integer(l->basis));
        json_object_set_new(o, "tier", jstr(l->tier));
        json_object_set_new(o, "bps", json_integer(l->bps));
    } else if (l->kind == TLY_TRACE_GRACE) {
        json_object_set_new(o, "tier_before", jstr(l->ref));
        json_object_set_new(o, "tier", jstr(l->tier));
        json_object_set_new(o, "grace", json_integer(l->grace));
        json_object_set_new(o, "failing_closes_before", json_integer(l->fails_before));
        json_object_set_new(o, "move", json_string(moves[l->move + 1]));
    }
}

static bool is_bucket_kind(tly_trace_kind k)
{
    return k == TLY_TRACE_CREDIT || k == TLY_TRACE_DEBIT || k == TLY_TRACE_RESERVE ||
           k == TLY_TRACE_RELEASE || k == TLY_TRACE_RELEASE_EXPIRED || k == TLY_TRACE_EXPIRY ||
           k == TLY_TRACE_DEFICIT_PAYOFF;
}

static bool is_claim_cause(const char *cause)
{
    static const char *const acts[] = {"submit", "approve", "reject", "cancel", "pay"};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(cause, acts[i]) == 0)
            return true;
    return false;
}

/* Kind-specific keys of a line: which sale, claim, tier and rate. */
static void line_extras(json_t *o, const tly_trace_line *l)
{
    if (is_bucket_kind(l->kind))
        json_object_set_new(o, "bucket", jperiod(l->period_kind, l->bucket));
    if (strcmp(l->cause, "return") == 0)
        json_object_set_new(o, "sale", jstr(l->ref));
    else if (is_claim_cause(l->cause))
        json_object_set_new(o, "claim", jstr(l->ref));
    if (l->kind == TLY_TRACE_ACCRUAL) {
        json_object_set_new(o, "sale_amount", json_integer(l->basis));
        json_object_set_new(o, "tier", jstr(l->tier));
        json_object_set_new(o, "bps", json_integer(l->bps));
    } else if (l->kind == TLY_TRACE_CLAWBACK) {
        json_object_set_new(o, "returned", json_integer(l->basis));
        json_object_set_new(o, "bps", json_integer(l->bps));
        /* the sale's accrual not yet clawed back was less [S3] */
        if (l->amount < tly_money_bps(l->basis, l->bps))
            json_object_set_new(o, "capped", json_true());
    }
    v2_extras(o, l);
    if (l->kind == TLY_TRACE_ACCRUAL || l->kind == TLY_TRACE_CLAWBACK ||
        l->kind == TLY_TRACE_REFERRAL)
        fx_extras(o, l);
    if (l->late)
        json_object_set_new(o, "late", json_true());
}

static json_t *line_json(const tly_trace_line *l)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)l->seq));
    json_object_set_new(o, "kind", json_string(tly_trace_kind_name(l->kind)));
    json_object_set_new(o, "cause", json_string(l->cause));
    json_object_set_new(o, "source", jstr(l->source));
    json_object_set_new(o, "id", jstr(l->id));
    json_object_set_new(o, "period", jperiod(l->period_kind, l->period));
    json_object_set_new(o, "amount", json_integer(l->amount));
    line_extras(o, l);
    return o;
}

/* A figure line's object: the tier whose bonus its rate includes. */
static json_t *figure_json(const tly_trace_line *l)
{
    json_t *o = json_object();
    if (o != NULL)
        json_object_set_new(o, "tier", jstr(l->tier));
    return o;
}

/* The trace callback: keeps the numbers, and the JSON of lines shown as
 * such (slices and figures are summarised per rebate period instead). */
static void on_line(void *ctx, const tly_trace_line *l)
{
    tly_explain *x = ctx;
    if (x->err != TLY_OK)
        return;
    if (!grow((void **)&x->lines, &x->cap, x->count + 1, sizeof *x->lines)) {
        x->err = TLY_NOMEM;
        return;
    }
    xline *o = &x->lines[x->count];
    *o = (xline){.kind = l->kind,
                 .seq = l->seq,
                 .period = l->period,
                 .bucket = l->bucket,
                 .bps = l->bps,
                 .amount = l->amount,
                 .basis = l->basis,
                 .from = l->from,
                 .mode = l->mode,
                 .has_baseline = l->has_baseline,
                 .baseline_k = l->baseline_periods,
                 .bonus_bps = l->bonus_bps,
                 .rebate_basis = l->rebate_basis,
                 .baseline = l->baseline,
                 .rebate_min = l->rebate_min,
                 .cap = l->cap};
    bool figure = l->kind == TLY_TRACE_REBATE_FINAL || l->kind == TLY_TRACE_REBATE_OPEN;
    if (l->kind != TLY_TRACE_REBATE_SLICE &&
        (o->j = figure ? figure_json(l) : line_json(l)) == NULL) {
        x->err = TLY_NOMEM;
        return;
    }
    x->have_kind = true;
    x->kind = l->period_kind;
    x->count++;
}

tly_err tly_explain_new(tly_engine *e, const char *partner, tly_explain **out)
{
    tly_explain *x = calloc(1, sizeof *x);
    if (x == NULL || (x->partner = strdup(partner)) == NULL) {
        free(x);
        return TLY_NOMEM;
    }
    x->e = e;
    tly_err err = tly_engine_set_trace(e, partner, on_line, x);
    if (err != TLY_OK) {
        free(x->partner);
        free(x);
        return err;
    }
    *out = x;
    return TLY_OK;
}

void tly_explain_free(tly_explain *x)
{
    if (x == NULL)
        return;
    (void)tly_engine_set_trace(x->e, NULL, NULL, NULL); /* removing never fails */
    for (size_t i = 0; i < x->count; i++)
        json_decref(x->lines[i].j);
    free(x->lines);
    free(x->rets);
    free(x->partner);
    free(x);
}

size_t tly_explain_line_count(const tly_explain *x)
{
    return x->count;
}

void tly_explain_note(tly_explain *x, const tly_record *rec, const tly_event *ev)
{
    bool kept = ev->type == TLY_EV_RETURN || ev->type == TLY_EV_REFERRAL;
    if (!kept || !tly_str_eq(ev->partner, x->partner) || x->err != TLY_OK)
        return;
    if (!grow((void **)&x->rets, &x->ret_cap, x->ret_count + 1, sizeof *x->rets)) {
        x->err = TLY_NOMEM;
        return;
    }
    xret *r = &x->rets[x->ret_count++];
    r->seq = rec->seq;
    memcpy(r->id, ev->id.ptr, ev->id.len);
    r->id[ev->id.len] = '\0';
}

/* A held return's or referral's line has no id: the collector noted it
 * by seq. */
static void fill_ids(tly_explain *x)
{
    for (size_t i = 0; i < x->count; i++) {
        json_t *j = x->lines[i].j;
        if (j == NULL || !json_is_null(json_object_get(j, "id")))
            continue;
        size_t lo = 0, hi = x->ret_count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (x->rets[mid].seq < x->lines[i].seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < x->ret_count && x->rets[lo].seq == x->lines[i].seq)
            json_object_set_new(j, "id", json_string(x->rets[lo].id));
    }
}

/* ---- MDF sums ---- */

enum {
    T_ACCRUED,
    T_CLAWED,
    T_ADJUSTED,
    T_EXPIRED,
    T_PENDING,
    T_APPROVED,
    T_PAID,
    T_DEFICIT,
    T_AVAILABLE,
    T_COUNT
};

static const char *const total_names[T_COUNT] = {"accrued", "clawed_back", "adjusted",
                                                 "expired", "pending",     "approved",
                                                 "paid",    "deficit",     "available"};

/* Signed effect of one line on each total and on the bucket sum. */
static tly_err add_line(int64_t t[T_COUNT], int64_t *buckets, const xline *l)
{
    int64_t a = l->amount;
    switch (l->kind) {
    case TLY_TRACE_ACCRUAL:
        return tly_money_addto(&t[T_ACCRUED], a);
    case TLY_TRACE_CLAWBACK:
        return tly_money_addto(&t[T_CLAWED], a);
    case TLY_TRACE_ADJUST_MDF:
        return tly_money_addto(&t[T_ADJUSTED], a);
    case TLY_TRACE_CREDIT:
        return tly_money_addto(buckets, a);
    case TLY_TRACE_DEBIT:
        return tly_money_addto(buckets, -a);
    case TLY_TRACE_DEFICIT:
        return tly_money_addto(&t[T_DEFICIT], a);
    case TLY_TRACE_DEFICIT_PAYOFF:
        return tly_money_addto(&t[T_DEFICIT], -a);
    case TLY_TRACE_RESERVE:
        TRY(tly_money_addto(buckets, -a));
        return tly_money_addto(&t[T_PENDING], a);
    case TLY_TRACE_RELEASE:
        return tly_money_addto(&t[T_PENDING], -a);
    case TLY_TRACE_RELEASE_EXPIRED:
        TRY(tly_money_addto(&t[T_PENDING], -a));
        return tly_money_addto(&t[T_EXPIRED], a);
    case TLY_TRACE_APPROVE:
        TRY(tly_money_addto(&t[T_PENDING], -a));
        return tly_money_addto(&t[T_APPROVED], a);
    case TLY_TRACE_PAY:
        TRY(tly_money_addto(&t[T_APPROVED], -a));
        return tly_money_addto(&t[T_PAID], a);
    case TLY_TRACE_EXPIRY:
        TRY(tly_money_addto(buckets, -a));
        return tly_money_addto(&t[T_EXPIRED], a);
    default:
        return TLY_OK; /* rebate lines */
    }
}

/* Totals of the lines whose period is `period` (INT32_MIN: all). */
static tly_err sum_lines(const tly_explain *x, int32_t period, int64_t t[T_COUNT])
{
    int64_t buckets = 0;
    memset(t, 0, T_COUNT * sizeof t[0]);
    for (size_t i = 0; i < x->count; i++)
        if (period == INT32_MIN || x->lines[i].period == period)
            TRY(add_line(t, &buckets, &x->lines[i]));
    /* available = Σ bucket remainders − deficit (SPEC section 6) */
    return tly_money_sub(buckets, t[T_DEFICIT], &t[T_AVAILABLE]);
}

static json_t *totals_json(const int64_t t[T_COUNT])
{
    json_t *o = json_object();
    for (int i = 0; i < T_COUNT; i++)
        json_object_set_new(o, total_names[i], json_integer(t[i]));
    return o;
}

static void add_difference(json_t *diffs, const char *field, int64_t lines, json_int_t balance)
{
    json_t *d = json_object();
    json_object_set_new(d, "field", json_string(field));
    json_object_set_new(d, "lines", json_integer(lines));
    json_object_set_new(d, "balance", json_integer(balance));
    json_array_append_new(diffs, d);
}

/* ---- buckets from the lines ---- */

typedef struct xbucket {
    int32_t period;
    int64_t remaining;
} xbucket;

static int cmp_bucket(const void *a, const void *b)
{
    int32_t x = ((const xbucket *)a)->period, y = ((const xbucket *)b)->period;
    return (x > y) - (x < y);
}

/* Bucket remainders the lines leave, oldest first, those > 0 [M3]. */
static tly_err line_buckets(const tly_explain *x, json_t *out)
{
    xbucket *b = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < x->count; i++) {
        const xline *l = &x->lines[i];
        int sign = l->kind == TLY_TRACE_CREDIT ? 1
                   : l->kind == TLY_TRACE_DEBIT || l->kind == TLY_TRACE_RESERVE ||
                           l->kind == TLY_TRACE_EXPIRY
                       ? -1
                       : 0;
        if (sign == 0)
            continue;
        size_t k = 0;
        while (k < n && b[k].period != l->bucket)
            k++;
        if (k == n) {
            if (!grow((void **)&b, &cap, n + 1, sizeof *b)) {
                free(b);
                return TLY_NOMEM;
            }
            b[n++] = (xbucket){l->bucket, 0};
        }
        b[k].remaining += sign * l->amount; /* bounded by the checked totals */
    }
    qsort(b, n, sizeof *b, cmp_bucket);
    for (size_t k = 0; k < n; k++) {
        if (b[k].remaining <= 0)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "period", jperiod(x->kind, b[k].period));
        json_object_set_new(o, "remaining", json_integer(b[k].remaining));
        json_array_append_new(out, o);
    }
    free(b);
    return TLY_OK;
}

/* Buckets of the balance view reduced to {period, remaining}. */
static json_t *view_buckets(const json_t *bal)
{
    json_t *out = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(bal, "buckets"), i, b)
    {
        json_t *o = json_object();
        json_object_set(o, "period", json_object_get(b, "period"));
        json_object_set(o, "remaining", json_object_get(b, "remaining"));
        json_array_append_new(out, o);
    }
    return out;
}

static bool in_period(const xline *l, int32_t period)
{
    return period == INT32_MIN || l->period == period;
}

/* Lines of the MDF part: the movements, and the cut an accrual's cap
 * made (which moves nothing) [K1]. */
static bool is_mdf_kind(tly_trace_kind k)
{
    return k <= TLY_TRACE_EXPIRY || k == TLY_TRACE_CAPPED;
}

/* Lines of a rebate row [R4] [Q3]. */
static bool is_rebate_kind(tly_trace_kind k)
{
    return (k >= TLY_TRACE_REVENUE && k <= TLY_TRACE_PAYOUT) || k == TLY_TRACE_REFERRAL;
}

/* The "mdf" object; *ok false when a total or a bucket differs. */
static tly_err mdf_json(const tly_explain *x, const json_t *bal, int32_t period, json_t *mdf,
                        bool *ok)
{
    json_t *lines = json_array();
    json_object_set_new(mdf, "lines", lines);
    for (size_t i = 0; i < x->count; i++)
        if (x->lines[i].j != NULL && is_mdf_kind(x->lines[i].kind) &&
            in_period(&x->lines[i], period))
            json_array_append(lines, x->lines[i].j);
    int64_t t[T_COUNT];
    TRY(sum_lines(x, INT32_MIN, t));
    json_object_set_new(mdf, "totals", totals_json(t));
    if (period != INT32_MIN) {
        int64_t pt[T_COUNT];
        TRY(sum_lines(x, period, pt));
        json_object_set_new(mdf, "period_totals", totals_json(pt));
    }
    json_t *buckets = json_array();
    json_object_set_new(mdf, "buckets", buckets);
    TRY(line_buckets(x, buckets));
    json_t *diffs = json_array();
    for (int i = 0; i < T_COUNT; i++) {
        json_int_t want = json_integer_value(json_object_get(bal, total_names[i]));
        if (t[i] != want)
            add_difference(diffs, total_names[i], t[i], want);
    }
    json_t *vb = view_buckets(bal);
    if (!json_equal(vb, buckets))
        add_difference(diffs, "buckets", 0, 0);
    json_decref(vb);
    *ok = json_array_size(diffs) == 0;
    json_object_set_new(mdf, "matches_balance", json_boolean(*ok));
    json_object_set_new(mdf, "differences", diffs);
    return TLY_OK;
}

/* ---- rebates ---- */

/* What the lines of one rebate period add up to. */
typedef struct xrow {
    int64_t revenue, adj, paid, referral;
    const xline *figure; /* REBATE_FINAL or REBATE_OPEN; NULL: none */
    tly_bps_sum calc;
    size_t slices;
    int64_t basis, baseline; /* X and B recomputed from the lines [R11] */
} xrow;

/* Adds line l to the row's list key and its amount to *sum. */
static tly_err row_take(json_t *ro, const char *key, const xline *l, int64_t *sum)
{
    json_array_append(json_object_get(ro, key), l->j);
    return tly_money_addto(sum, l->amount);
}

static tly_err row_lines(const tly_explain *x, int32_t period, json_t *ro, xrow *r)
{
    static const char *const keys[] = {"revenue_lines", "referral_lines", "slices", "adjustments",
                                       "payouts"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        json_object_set_new(ro, keys[k], json_array());
    *r = (xrow){0};
    for (size_t i = 0; i < x->count; i++) {
        const xline *l = &x->lines[i];
        if (l->period != period)
            continue;
        if (l->kind == TLY_TRACE_REVENUE)
            TRY(row_take(ro, "revenue_lines", l, &r->revenue));
        else if (l->kind == TLY_TRACE_REFERRAL) /* [Q3] */
            TRY(row_take(ro, "referral_lines", l, &r->referral));
        else if (l->kind == TLY_TRACE_ADJUST_REBATE)
            TRY(row_take(ro, "adjustments", l, &r->adj));
        else if (l->kind == TLY_TRACE_PAYOUT)
            TRY(row_take(ro, "payouts", l, &r->paid));
        else if (l->kind == TLY_TRACE_REBATE_FINAL || l->kind == TLY_TRACE_REBATE_OPEN)
            r->figure = l; /* the close's: a final row is fixed once */
    }
    return TLY_OK;
}

/* Net revenue of period p: the sum of its revenue lines [S6]. */
static tly_err period_revenue(const tly_explain *x, int32_t p, int64_t *out)
{
    int64_t sum = 0;
    for (size_t i = 0; i < x->count; i++)
        if (x->lines[i].kind == TLY_TRACE_REVENUE && x->lines[i].period == p)
            TRY(tly_money_addto(&sum, x->lines[i].amount));
    *out = sum;
    return TLY_OK;
}

/* X and B of the row from the revenue lines alone: growth over the mean
 * of the k periods before it (a period without revenue counts 0), else
 * max(R, 0) [R11]; the k periods are listed, oldest first. */
static tly_err row_basis(const tly_explain *x, const xline *fig, int32_t period, json_t *ro,
                         xrow *r)
{
    bool growth = fig != NULL && fig->has_baseline && fig->baseline_k > 0;
    int64_t v = r->revenue, sum = 0;
    json_t *base = json_array();
    json_object_set_new(ro, "baseline_periods", base);
    for (int32_t k = growth ? fig->baseline_k : 0; k >= 1; k--) {
        int64_t rev;
        TRY(period_revenue(x, period - k, &rev));
        TRY(tly_money_addto(&sum, rev));
        json_t *o = json_object();
        json_object_set_new(o, "period", jperiod(x->kind, period - k));
        json_object_set_new(o, "revenue", json_integer(rev));
        json_array_append_new(base, o);
    }
    r->baseline = growth ? tly_round_half_even(sum, fig->baseline_k) : 0;
    TRY(tly_money_sub(v, r->baseline, &v));
    r->basis = v > 0 ? v : 0;
    json_object_set_new(ro, "basis", json_integer(r->basis));
    json_object_set_new(ro, "baseline", growth ? json_integer(r->baseline) : json_null());
    return TLY_OK;
}

/* Slices of the row's figure line (they precede it in the trace). */
static tly_err row_slices(const tly_explain *x, const xline *fig, json_t *ro, xrow *r)
{
    json_t *sl = json_object_get(ro, "slices");
    const xline *first = fig;
    while (first > x->lines && first[-1].kind == TLY_TRACE_REBATE_SLICE)
        first--;
    for (const xline *l = first; l < fig; l++) {
        json_t *o = json_object();
        json_object_set_new(o, "from", json_integer(l->from));
        json_object_set_new(o, "bps", json_integer(l->bps));
        json_object_set_new(o, "amount", json_integer(l->basis));
        json_array_append_new(sl, o);
        TRY(tly_bps_sum_add(&r->calc, l->basis, l->bps));
        r->slices++;
    }
    return TLY_OK;
}

/* The bracket reached, the tier bonus in its rate, the minimum and the
 * cap of the figure line [R13] [R14] [K2] [K3]. */
static void row_bracket(const xline *fig, json_t *ro)
{
    json_t *br = json_object();
    json_object_set_new(br, "from", json_integer(fig ? fig->from : 0));
    json_object_set_new(br, "bps", json_integer(fig ? fig->bps : 0));
    json_object_set_new(ro, "bracket", br);
    json_object_set_new(ro, "mode",
                        json_string(fig != NULL && fig->mode == TLY_REBATE_INCREMENTAL
                                        ? "incremental"
                                        : "retroactive"));
    json_t *bonus = json_null();
    if (fig != NULL && fig->bonus_bps > 0) {
        bonus = json_object();
        json_object_set(bonus, "tier", json_object_get(fig->j, "tier"));
        json_object_set_new(bonus, "bps", json_integer(fig->bonus_bps));
    }
    json_object_set_new(ro, "bonus", bonus);
    json_object_set_new(ro, "minimum", json_integer(fig ? fig->rebate_min : 0));
    json_object_set_new(ro, "cap", jcap(fig ? fig->cap : INT64_MAX));
}

static bool view_baseline_is(const json_t *vr, bool growth, int64_t b)
{
    const json_t *v = json_object_get(vr, "baseline");
    return growth ? json_is_integer(v) && json_integer_value(v) == b : json_is_null(v);
}

/* The basis agrees three ways (lines, figure line, view), and under the
 * minimum there is no slice and rate 0 [R11] [K2]. */
static bool basis_same(const json_t *vr, const xrow *r, const xline *fig)
{
    bool growth = fig->has_baseline;
    bool under = r->basis < fig->rebate_min;
    return r->basis == fig->rebate_basis &&
           r->basis == json_integer_value(json_object_get(vr, "basis")) &&
           (!growth || r->baseline == fig->baseline) && view_baseline_is(vr, growth, r->baseline) &&
           (!under || (r->slices == 0 && fig->bps == 0));
}

/* Compares one view row with its lines; the figure = min(rhe(Σ slices),
 * cap) + adjustments [R5] [R8] [K3]. */
static tly_err row_check(const json_t *vr, json_t *ro, xrow *r, const xline *fig, bool *ok)
{
    int64_t calc = 0, figure = 0;
    if (fig != NULL) {
        TRY(tly_bps_sum_round(&r->calc, &calc));
        TRY(tly_money_add(calc > fig->cap ? fig->cap : calc, r->adj, &figure));
    }
    const char *status = json_string_value(json_object_get(vr, "status"));
    bool final = status != NULL && strcmp(status, "final") == 0;
    bool same = fig != NULL && (fig->kind == TLY_TRACE_REBATE_FINAL) == final &&
                r->revenue == json_integer_value(json_object_get(vr, "revenue")) &&
                basis_same(vr, r, fig) && figure == fig->amount &&
                figure == json_integer_value(json_object_get(vr, "rebate")) &&
                fig->bps == json_integer_value(json_object_get(vr, "rate_bps")) &&
                r->referral == json_integer_value(json_object_get(vr, "referral")) &&
                r->paid == json_integer_value(json_object_get(vr, "paid"));
    json_object_set_new(ro, "calculated", json_integer(calc));
    json_object_set_new(ro, "capped", json_boolean(fig != NULL && calc > fig->cap));
    json_object_set_new(ro, "matches", json_boolean(same));
    *ok = *ok && same;
    return TLY_OK;
}

/* What a row adds to payable (final) or accrued_open: its figure and
 * referral fees, less what was paid on a final one [R10] [Q3] [P4]. */
typedef struct xdue {
    int64_t payable, open;
} xdue;

static tly_err row_due(const xrow *r, const xline *fig, xdue *due)
{
    int64_t d;
    TRY(tly_money_add(fig != NULL ? fig->amount : 0, r->referral, &d));
    if (fig == NULL || fig->kind != TLY_TRACE_REBATE_FINAL)
        return tly_money_addto(&due->open, d);
    TRY(tly_money_sub(d, r->paid, &d));
    return tly_money_addto(&due->payable, d);
}

/* One rebate period: its lines, basis, bracket and figure, checked. */
static tly_err row_json(const tly_explain *x, const json_t *vr, int32_t period, json_t *ro,
                        xdue *due, bool *ok)
{
    xrow r;
    json_object_set(ro, "period", json_object_get(vr, "period"));
    TRY(row_lines(x, period, ro, &r));
    json_object_set_new(ro, "revenue", json_integer(r.revenue));
    const xline *fig = r.figure;
    TRY(row_basis(x, fig, period, ro, &r));
    row_bracket(fig, ro);
    if (fig != NULL)
        TRY(row_slices(x, fig, ro, &r));
    json_object_set_new(ro, "rebate", json_integer(fig ? fig->amount : 0));
    json_object_set_new(ro, "referral", json_integer(r.referral));
    json_object_set(ro, "status", json_object_get(vr, "status"));
    if (fig != NULL && fig->kind == TLY_TRACE_REBATE_FINAL)
        json_object_set_new(ro, "final_seq", json_integer((json_int_t)fig->seq));
    json_object_set_new(ro, "paid", json_integer(r.paid));
    TRY(row_due(&r, fig, due));
    return row_check(vr, ro, &r, fig, ok);
}

/* payable and accrued_open of the lines beside the view's [R10] [Q3]. */
static void dues_json(const json_t *reb, const xdue *due, json_t *out, bool *ok)
{
    json_object_set_new(out, "payable", json_integer(due->payable));
    json_object_set_new(out, "accrued_open", json_integer(due->open));
    *ok = *ok && due->payable == json_integer_value(json_object_get(reb, "payable")) &&
          due->open == json_integer_value(json_object_get(reb, "accrued_open"));
}

/* Every view row explained (only `period` when filtered); a line of a
 * period the view does not list is a difference too. */
static tly_err rebates_json(const tly_explain *x, const json_t *reb, int32_t period, json_t *out,
                            bool *ok)
{
    json_t *rows = json_array();
    json_object_set_new(out, "periods", rows);
    size_t i, seen = 0, all = 0;
    json_t *vr;
    xdue due = {0, 0};
    json_array_foreach(json_object_get(reb, "periods"), i, vr)
    {
        const char *text = json_string_value(json_object_get(vr, "period"));
        tly_period_kind kind;
        int32_t p;
        if (text == NULL || tly_period_parse(text, strlen(text), &kind, &p) != TLY_OK)
            return TLY_CORRUPT;
        for (size_t k = 0; k < x->count; k++)
            seen += x->lines[k].period == p && is_rebate_kind(x->lines[k].kind);
        json_t *ro = json_object();
        bool shown = period == INT32_MIN || p == period;
        if (shown)
            json_array_append_new(rows, ro);
        tly_err err = row_json(x, vr, p, ro, &due, ok); /* checked even when not shown */
        if (!shown)
            json_decref(ro);
        TRY(err);
    }
    for (size_t k = 0; k < x->count; k++)
        all += is_rebate_kind(x->lines[k].kind);
    *ok = *ok && seen == all;
    dues_json(reb, &due, out, ok);
    json_object_set_new(out, "matches", json_boolean(*ok));
    return TLY_OK;
}

/* The grace decisions of the closes (only `period`'s when filtered) [T9]. */
static void grace_json(const tly_explain *x, int32_t period, json_t *o)
{
    json_t *lines = json_array();
    json_object_set_new(o, "grace", lines);
    for (size_t i = 0; i < x->count; i++)
        if (x->lines[i].kind == TLY_TRACE_GRACE && in_period(&x->lines[i], period))
            json_array_append(lines, x->lines[i].j);
}

/* ---- the report ---- */

static tly_err parse_filter(const tly_explain *x, const char *text, int32_t *period)
{
    *period = INT32_MIN;
    if (text == NULL)
        return TLY_OK;
    tly_period_kind kind;
    if (tly_period_parse(text, strlen(text), &kind, period) != TLY_OK ||
        (x->have_kind && kind != x->kind))
        return TLY_BAD_FIELD;
    return TLY_OK;
}

static void report_head(json_t *o, const json_t *bal, const char *period)
{
    json_object_set(o, "partner", json_object_get(bal, "partner"));
    json_object_set(o, "program", json_object_get(bal, "program"));
    json_object_set(o, "currency", json_object_get(bal, "currency"));
    json_object_set(o, "seq", json_object_get(bal, "seq"));
    if (period != NULL)
        json_object_set_new(o, "period", json_string(period));
}

static tly_err report_body(tly_explain *x, const json_t *bal, const json_t *reb, int32_t p,
                           json_t *o, bool *matches)
{
    bool mdf_ok = false, reb_ok = true;
    json_t *mdf = json_object(), *rebates = json_object();
    json_object_set_new(o, "mdf", mdf);
    json_object_set_new(o, "rebates", rebates);
    TRY(mdf_json(x, bal, p, mdf, &mdf_ok));
    TRY(rebates_json(x, reb, p, rebates, &reb_ok));
    grace_json(x, p, o);
    *matches = mdf_ok && reb_ok;
    return TLY_OK;
}

tly_err tly_explain_report(tly_explain *x, const char *period, json_t **out, bool *matches)
{
    json_t *bal = tly_engine_view(x->e, 'b', x->partner);
    json_t *reb = tly_engine_view(x->e, 'r', x->partner);
    tly_err err = bal == NULL || reb == NULL ? TLY_NOT_FOUND : x->err;
    if (err == TLY_OK && !x->opened) {
        x->opened = true;
        tly_engine_trace_open(x->e);
        err = x->err;
    }
    int32_t p = INT32_MIN;
    if (err == TLY_OK)
        err = parse_filter(x, period, &p);
    json_t *o = err == TLY_OK ? json_object() : NULL;
    if (err == TLY_OK) {
        fill_ids(x);
        report_head(o, bal, period);
        err = report_body(x, bal, reb, p, o, matches);
    }
    json_decref(bal);
    json_decref(reb);
    if (err != TLY_OK) {
        json_decref(o);
        return err;
    }
    *out = o;
    return TLY_OK;
}
