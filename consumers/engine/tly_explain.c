/*
 * tly_explain.c — the collector and report of tly_explain.h.
 *
 * Lines are kept as the fold reports them (numbers for the sums, a JSON
 * object for the report). The checks recompute every balance field from
 * the lines alone and compare with the engine's views; the views come from
 * the same fold, so a difference means a movement the trace does not
 * report — exactly what this command exists to rule out.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_base.h"
#include "tly_explain.h"
#include "tly_money.h"
#include "tly_period.h"

typedef struct xline {
    tly_trace_kind kind;
    uint64_t seq;
    int32_t period, bucket, bps;
    int64_t amount, basis, from;
    tly_rebate_mode mode;
    json_t *j; /* the report's line object; NULL for rebate figure lines */
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
                 .mode = l->mode};
    bool figure = l->kind == TLY_TRACE_REBATE_SLICE || l->kind == TLY_TRACE_REBATE_FINAL ||
                  l->kind == TLY_TRACE_REBATE_OPEN;
    if (!figure && (o->j = line_json(l)) == NULL) {
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
    if (ev->type != TLY_EV_RETURN || !tly_str_eq(ev->partner, x->partner) || x->err != TLY_OK)
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

/* A held return's line has no id: the collector noted it by seq. */
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

static bool is_mdf_kind(tly_trace_kind k)
{
    return k <= TLY_TRACE_EXPIRY;
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
    int64_t revenue, adj, paid;
    const xline *figure; /* REBATE_FINAL or REBATE_OPEN; NULL: none */
    tly_bps_sum calc;
} xrow;

static tly_err row_lines(const tly_explain *x, int32_t period, json_t *ro, xrow *r)
{
    json_t *rev = json_array(), *adj = json_array(), *pay = json_array(), *sl = json_array();
    json_object_set_new(ro, "revenue_lines", rev);
    json_object_set_new(ro, "slices", sl);
    json_object_set_new(ro, "adjustments", adj);
    json_object_set_new(ro, "payouts", pay);
    *r = (xrow){0};
    for (size_t i = 0; i < x->count; i++) {
        const xline *l = &x->lines[i];
        if (l->period != period)
            continue;
        if (l->kind == TLY_TRACE_REVENUE) {
            json_array_append(rev, l->j);
            TRY(tly_money_addto(&r->revenue, l->amount));
        } else if (l->kind == TLY_TRACE_ADJUST_REBATE) {
            json_array_append(adj, l->j);
            TRY(tly_money_addto(&r->adj, l->amount));
        } else if (l->kind == TLY_TRACE_PAYOUT) {
            json_array_append(pay, l->j);
            TRY(tly_money_addto(&r->paid, l->amount));
        } else if (l->kind == TLY_TRACE_REBATE_FINAL || l->kind == TLY_TRACE_REBATE_OPEN) {
            r->figure = l; /* the close's: a final row is fixed once */
        }
    }
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
    }
    return TLY_OK;
}

/* Compares one view row with its lines; the figure = rhe(Σ slices) +
 * adjustments [R5] [R8]. */
static tly_err row_check(const json_t *vr, json_t *ro, xrow *r, const xline *fig, bool *ok)
{
    int64_t calc = 0, figure = 0;
    if (fig != NULL) {
        TRY(tly_bps_sum_round(&r->calc, &calc));
        TRY(tly_money_add(calc, r->adj, &figure));
    }
    const char *status = json_string_value(json_object_get(vr, "status"));
    bool final = status != NULL && strcmp(status, "final") == 0;
    bool same = fig != NULL && (fig->kind == TLY_TRACE_REBATE_FINAL) == final &&
                r->revenue == json_integer_value(json_object_get(vr, "revenue")) &&
                figure == fig->amount &&
                figure == json_integer_value(json_object_get(vr, "rebate")) &&
                fig->bps == json_integer_value(json_object_get(vr, "rate_bps")) &&
                r->paid == json_integer_value(json_object_get(vr, "paid"));
    json_object_set_new(ro, "calculated", json_integer(calc));
    json_object_set_new(ro, "matches", json_boolean(same));
    *ok = *ok && same;
    return TLY_OK;
}

/* One rebate period: its lines, bracket and figure, checked. */
static tly_err row_json(const tly_explain *x, const json_t *vr, int32_t period, json_t *ro,
                        bool *ok)
{
    xrow r;
    json_object_set(ro, "period", json_object_get(vr, "period"));
    TRY(row_lines(x, period, ro, &r));
    json_object_set_new(ro, "revenue", json_integer(r.revenue));
    const xline *fig = r.figure;
    json_t *br = json_object();
    json_object_set_new(br, "from", json_integer(fig ? fig->from : 0));
    json_object_set_new(br, "bps", json_integer(fig ? fig->bps : 0));
    json_object_set_new(ro, "bracket", br);
    json_object_set_new(ro, "mode",
                        json_string(fig != NULL && fig->mode == TLY_REBATE_INCREMENTAL
                                        ? "incremental"
                                        : "retroactive"));
    if (fig != NULL)
        TRY(row_slices(x, fig, ro, &r));
    json_object_set_new(ro, "rebate", json_integer(fig ? fig->amount : 0));
    json_object_set(ro, "status", json_object_get(vr, "status"));
    if (fig != NULL && fig->kind == TLY_TRACE_REBATE_FINAL)
        json_object_set_new(ro, "final_seq", json_integer((json_int_t)fig->seq));
    json_object_set_new(ro, "paid", json_integer(r.paid));
    return row_check(vr, ro, &r, fig, ok);
}

/* Every view row explained (only `period` when filtered); a line of a
 * period the view does not list is a difference too. */
static tly_err rebates_json(const tly_explain *x, const json_t *reb, int32_t period, json_t *out,
                            bool *ok)
{
    json_t *rows = json_array();
    json_object_set_new(out, "periods", rows);
    size_t i;
    json_t *vr;
    size_t seen = 0;
    json_array_foreach(json_object_get(reb, "periods"), i, vr)
    {
        const char *text = json_string_value(json_object_get(vr, "period"));
        tly_period_kind kind;
        int32_t p;
        if (text == NULL || tly_period_parse(text, strlen(text), &kind, &p) != TLY_OK)
            return TLY_CORRUPT;
        for (size_t k = 0; k < x->count; k++)
            seen += x->lines[k].period == p && x->lines[k].kind >= TLY_TRACE_REVENUE;
        if (period != INT32_MIN && p != period) {
            bool dummy = true;
            json_t *ro = json_object();
            TRY(row_json(x, vr, p, ro, &dummy)); /* checked even when not shown */
            *ok = *ok && dummy;
            json_decref(ro);
            continue;
        }
        json_t *ro = json_object();
        json_array_append_new(rows, ro);
        TRY(row_json(x, vr, p, ro, ok));
    }
    size_t all = 0;
    for (size_t k = 0; k < x->count; k++)
        all += x->lines[k].kind >= TLY_TRACE_REVENUE;
    *ok = *ok && seen == all;
    json_object_set_new(out, "matches", json_boolean(*ok));
    return TLY_OK;
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
