/*
 * test_explain.c — Check suite of `tally explain` and the engine's trace
 * hook (tly_engine_set_trace, consumers/engine/tly_explain.h).
 *
 * (1) For every partner of the seed101 vectors, of a seeded random stream
 *     (the generator of tests/test_engine.c, copied) and of a `tally gen`
 *     data set, the trace lines alone rebuild every MDF total, every bucket
 *     and every rebate period figure of the views — summed here,
 *     independently of tly_explain.c, and again through its report.
 * (2) A hand-written scenario whose lines are checked one by one.
 * (3) The hook changes nothing: the flushed state and views of an engine
 *     with a trace are byte-identical to one without.
 * (4) The CLI on real logs (tly_log_append): exit 0 and "matches", unknown
 *     partner exit 1, --period filters, --to stops early.
 * Seeds are printed; TALLY_SEED repeats another.
 */
#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "teststream.h"
#include "testutil.h"
#include "tly_currency.h"
#include "tly_engine.h"
#include "tly_explain.h"
#include "tly_json.h"
#include "tly_log.h"
#include "tly_money.h"
#include "tly_period.h"

/* recorded_ms given to in-process records: 2100-01-01, after every `at`. */
#define REC_MS INT64_C(4102444800000)

/* Quarter starts (Unix ms, UTC). */
#define Q1_25 INT64_C(1735689600000)
#define Q2_25 INT64_C(1743465600000)
#define DAY INT64_C(86400000)

/* Folds records [from, to) of a stream into e (record i has seq i + 1). */
static void fold(tly_engine *e, const stream *st, size_t from, size_t to, tly_explain *x)
{
    for (size_t i = from; i < to; i++) {
        const rec_buf *r = &st->recs[i];
        tly_event ev;
        tly_field_error fe;
        ck_assert_msg(tly_event_decode(r->bytes, r->len, REC_MS, &ev, &fe) == TLY_OK,
                      "decode %zu: %s %s", i + 1, fe.field, fe.message);
        tly_record rec = {.seq = i + 1,
                          .recorded_ms = REC_MS,
                          .source = {r->source, (uint32_t)strlen(r->source)},
                          .event = r->bytes,
                          .event_len = r->len};
        tly_err err = tly_engine_apply(e, &rec, &ev);
        ck_assert_msg(err == TLY_OK, "apply %zu: %s", i + 1, tly_err_name(err));
        if (x != NULL)
            tly_explain_note(x, &rec, &ev);
    }
}

/* Folds the whole stream with an explain of partner and returns its report
 * for period (NULL: every period; a new reference); *ok says whether it
 * matches the views. */
static json_t *explain_report(const stream *st, const char *partner, const char *period, bool *ok)
{
    tly_engine *e;
    tly_explain *x;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_explain_new(e, partner, &x), TLY_OK);
    fold(e, st, 0, st->count, x);
    json_t *rep = NULL;
    *ok = false;
    ck_assert_int_eq(tly_explain_report(x, period, &rep, ok), TLY_OK);
    tly_explain_free(x);
    tly_engine_free(e);
    return rep;
}

/* ---- seeded random streams ---- */

static uint64_t g_seed = UINT64_C(20261126);

/* ---- (1) the lines rebuild every figure: an independent summing ---- */

/* Section 10 cases a stream reached, beyond the kinds of lines. */
enum {
    COV_FX_ACCRUAL,  /* a converted sale [F2] */
    COV_FX_CLAWBACK, /* a converted return [F4] */
    COV_FX_REFERRAL, /* a converted referral [Q1] */
    COV_GROWTH,      /* a growth figure over a baseline > 0 [R11] */
    COV_UNDER_MIN,   /* a basis > 0 under the minimum [K2] */
    COV_REBATE_CAP,  /* a figure cut by rebate.cap [K3] */
    COV_BONUS,       /* a figure with a tier bonus [R14] */
    COV_GRACE_KEPT,  /* a tier kept by grace [T9]; a count reset and a grace
                      * running out are rarer: the v2 scenario has them */
    COV_COUNT
};

static const char *const cov_names[COV_COUNT] = {
    "converted sale",      "converted return",         "converted referral", "growth figure",
    "basis under minimum", "figure at the rebate cap", "tier bonus",         "tier kept by grace"};

typedef struct sums {
    json_t *by_partner;  /* partner -> {"totals","buckets","rows","gross","fx"} */
    uint32_t kinds_seen; /* bit per tly_trace_kind */
    uint64_t lines;
    uint64_t cov[COV_COUNT];
    /* an accrual the MDF cap cut: its capped line must come next [K1] */
    bool want_capped;
    uint64_t want_seq;
    int64_t want_cut, want_raw;
} sums;

static json_t *child(json_t *o, const char *k)
{
    json_t *c = json_object_get(o, k);
    if (c == NULL) {
        c = json_object();
        json_object_set_new(o, k, c);
    }
    return c;
}

static void bump(json_t *o, const char *k, int64_t d)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    json_object_set_new(o, k, json_integer(v + d));
}

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static void iset(json_t *o, const char *k, int64_t v)
{
    json_object_set_new(o, k, json_integer(v));
}

/* A grace decision [T9]: a failing close within the grace keeps the tier
 * and counts one more; a count restarts at 0 on a passing close or when
 * the grace ran out, and only then may the tier go down. */
static void check_grace(const tly_trace_line *l)
{
    ck_assert_int_ge(l->amount, 0);
    ck_assert_int_le(l->amount, l->grace);
    if (l->amount > 0) {
        ck_assert_int_eq(l->amount, l->fails_before + 1);
        ck_assert_int_eq(l->move, 0);
        ck_assert(l->ref.len == l->tier.len && memcmp(l->ref.ptr, l->tier.ptr, l->ref.len) == 0);
        return;
    }
    ck_assert_int_gt(l->fails_before, 0); /* a count of 0 that stays 0 is no decision */
    if (l->move < 0)
        ck_assert_int_eq(l->fails_before, l->grace);
}

/* Each line must describe itself consistently: an accrual is rhe(sale ×
 * bps) less a capped part [S7] [K1]; a clawback at most rhe(reduction ×
 * the sale's bps) [S3]; a referral fee rhe(referred × bps) [Q1]. */
static void check_line(const tly_trace_line *l)
{
    ck_assert_int_ge(l->seq, 1);
    ck_assert_ptr_nonnull(l->cause);
    if (l->kind == TLY_TRACE_ACCRUAL)
        ck_assert_int_le(l->amount, tly_money_bps(l->basis, l->bps));
    if (l->kind == TLY_TRACE_CLAWBACK)
        ck_assert_int_le(l->amount, tly_money_bps(l->basis, l->bps));
    if (l->kind == TLY_TRACE_REFERRAL)
        ck_assert_int_eq(l->amount, tly_money_bps(l->basis, l->bps));
    if (l->kind == TLY_TRACE_REBATE_SLICE) /* bracket bps + bonus, at most 100 % [R14] */
        ck_assert(l->bps >= l->bonus_bps && l->bps <= 10000);
    if (l->kind == TLY_TRACE_GRACE)
        check_grace(l);
    if (l->kind != TLY_TRACE_ADJUST_MDF && l->kind != TLY_TRACE_ADJUST_REBATE &&
        l->kind != TLY_TRACE_REVENUE && l->kind != TLY_TRACE_REBATE_FINAL &&
        l->kind != TLY_TRACE_REBATE_OPEN)
        ck_assert_int_ge(l->amount, 0);
}

/* The figure line of a row: what the checks of expect_rebates compare. */
static void sum_figure_line(json_t *row, const tly_trace_line *l)
{
    iset(row, "figure", l->amount);
    iset(row, "bps", l->bps);
    json_object_set_new(row, "status",
                        json_string(l->kind == TLY_TRACE_REBATE_FINAL ? "final" : "open"));
    iset(row, "revenue_at_figure", l->basis);
    iset(row, "x", l->rebate_basis);
    iset(row, "min", l->rebate_min);
    iset(row, "cap", l->cap);
    iset(row, "k", l->has_baseline ? l->baseline_periods : 0);
    if (l->has_baseline)
        iset(row, "baseline", l->baseline);
    json_object_set_new(row, "incremental", json_boolean(l->mode == TLY_REBATE_INCREMENTAL));
}

/* Rebate lines of one row: revenue, referral fees, adjustments, payouts,
 * the exact sum of the slices, and the figure line. */
static void sum_rebate_line(json_t *row, const tly_trace_line *l)
{
    switch (l->kind) {
    case TLY_TRACE_REVENUE:
        bump(row, "revenue", l->amount);
        break;
    case TLY_TRACE_REFERRAL:
        bump(row, "referral", l->amount);
        break;
    case TLY_TRACE_ADJUST_REBATE:
        bump(row, "adj", l->amount);
        break;
    case TLY_TRACE_PAYOUT:
        bump(row, "paid", l->amount);
        break;
    case TLY_TRACE_REBATE_SLICE: {
        tly_bps_sum s = {iget(row, "whole"), iget(row, "frac")};
        ck_assert_int_eq(tly_bps_sum_add(&s, l->basis, l->bps), TLY_OK);
        iset(row, "whole", s.whole);
        iset(row, "frac", s.frac);
        bump(row, "slices", 1);
        bump(row, "slice_sum", l->basis);
        break;
    }
    default:
        sum_figure_line(row, l);
    }
}

/* What each MDF line does to the totals and bucket remainders (SPEC 6). */
static void sum_mdf_line(json_t *t, json_t *b, const char *bucket, const tly_trace_line *l)
{
    int64_t a = l->amount;
    switch (l->kind) {
    case TLY_TRACE_ACCRUAL:
        bump(t, "accrued", a);
        break;
    case TLY_TRACE_CLAWBACK:
        bump(t, "clawed_back", a);
        break;
    case TLY_TRACE_ADJUST_MDF:
        bump(t, "adjusted", a);
        break;
    case TLY_TRACE_CREDIT:
        bump(b, bucket, a);
        break;
    case TLY_TRACE_DEBIT:
        bump(b, bucket, -a);
        break;
    case TLY_TRACE_DEFICIT:
        bump(t, "deficit", a);
        break;
    case TLY_TRACE_DEFICIT_PAYOFF:
        bump(t, "deficit", -a);
        break;
    case TLY_TRACE_RESERVE:
        bump(b, bucket, -a);
        bump(t, "pending", a);
        break;
    case TLY_TRACE_RELEASE:
        bump(t, "pending", -a);
        break;
    case TLY_TRACE_RELEASE_EXPIRED:
        bump(t, "pending", -a);
        bump(t, "expired", a);
        break;
    case TLY_TRACE_APPROVE:
        bump(t, "pending", -a);
        bump(t, "approved", a);
        break;
    case TLY_TRACE_PAY:
        bump(t, "approved", -a);
        bump(t, "paid", a);
        break;
    case TLY_TRACE_EXPIRY:
        bump(b, bucket, -a);
        bump(t, "expired", a);
        break;
    default:
        ck_abort_msg("not an MDF line: %d", (int)l->kind);
    }
}

/* An accrual the cap cut is followed by its capped line: accrual + cut =
 * rhe(amount × bps), and the period's gross accruals reach the cap (or
 * had reached it: nothing accrued) [K1]. gross: the partner's gross
 * accruals per period, the accrual included. */
static void sum_cap_line(sums *s, json_t *gross, const char *period, const tly_trace_line *l)
{
    bool wanted = s->want_capped;
    s->want_capped = false;
    if (l->kind == TLY_TRACE_CAPPED) {
        ck_assert_msg(wanted, "seq %" PRIu64 ": a capped line without a cut accrual", l->seq);
        ck_assert_int_eq(l->seq, s->want_seq);
        ck_assert_int_eq(l->amount, s->want_cut);
        ck_assert_int_eq(l->basis, s->want_raw);
        ck_assert_int_lt(l->cap, INT64_MAX);
        int64_t g = iget(gross, period);
        ck_assert_msg(g == l->cap || (s->want_cut == s->want_raw && g >= l->cap),
                      "seq %" PRIu64 ": gross %" PRId64 " of %s, cap %" PRId64, l->seq, g, period,
                      l->cap);
        return;
    }
    ck_assert_msg(!wanted, "seq %" PRIu64 ": a cut accrual without its capped line", s->want_seq);
    if (l->kind != TLY_TRACE_ACCRUAL)
        return;
    bump(gross, period, l->amount);
    int64_t raw = tly_money_bps(l->basis, l->bps);
    if (l->amount < raw) {
        s->want_capped = true;
        s->want_seq = l->seq;
        s->want_cut = raw - l->amount;
        s->want_raw = raw;
    }
}

/* A converted line's facts, checked once the program's currency is known
 * (check_fx): [kind, currency, amount in it, units, scale, basis, sale]. */
static void keep_fx(json_t *p, const tly_trace_line *l)
{
    bool converts = l->kind == TLY_TRACE_ACCRUAL || l->kind == TLY_TRACE_CLAWBACK ||
                    l->kind == TLY_TRACE_REFERRAL;
    if (!converts || l->fx_currency.len == 0)
        return;
    json_t *fx = json_object_get(p, "fx");
    if (fx == NULL)
        json_object_set_new(p, "fx", fx = json_array());
    json_array_append_new(fx,
                          json_pack("[i,s#,I,I,i,I,s#]", (int)l->kind, l->fx_currency.ptr,
                                    (int)l->fx_currency.len, (json_int_t)l->fx_amount,
                                    (json_int_t)l->fx_units, (int)l->fx_scale, (json_int_t)l->basis,
                                    l->ref.ptr ? l->ref.ptr : "", (int)l->ref.len));
}

/* The section 10 cases line l shows. */
static void cover_line(uint64_t cov[COV_COUNT], const tly_trace_line *l)
{
    bool fig = l->kind == TLY_TRACE_REBATE_FINAL || l->kind == TLY_TRACE_REBATE_OPEN;
    if (l->fx_currency.len > 0 && l->kind <= TLY_TRACE_CLAWBACK)
        cov[l->kind == TLY_TRACE_ACCRUAL ? COV_FX_ACCRUAL : COV_FX_CLAWBACK]++;
    cov[COV_FX_REFERRAL] += l->kind == TLY_TRACE_REFERRAL && l->fx_currency.len > 0;
    cov[COV_GROWTH] += fig && l->has_baseline && l->baseline > 0 && l->rebate_basis > 0;
    cov[COV_UNDER_MIN] += fig && l->rebate_basis > 0 && l->rebate_basis < l->rebate_min;
    cov[COV_BONUS] += fig && l->bonus_bps > 0 && l->bps > 0;
    cov[COV_GRACE_KEPT] += l->kind == TLY_TRACE_GRACE && l->amount > 0;
}

static void on_sum_line(void *ctx, const tly_trace_line *l)
{
    sums *s = ctx;
    check_line(l);
    s->kinds_seen |= 1u << l->kind;
    s->lines++;
    cover_line(s->cov, l);
    char pid[TLY_NAME_BYTES_MAX + 1], bucket[TLY_PERIOD_TEXT_BYTES], period[TLY_PERIOD_TEXT_BYTES];
    snprintf(pid, sizeof pid, "%.*s", (int)l->partner.len, l->partner.ptr);
    tly_period_format(l->period_kind, l->bucket, bucket);
    tly_period_format(l->period_kind, l->period, period);
    json_t *p = child(s->by_partner, pid);
    sum_cap_line(s, child(p, "gross"), period, l);
    keep_fx(p, l);
    if (l->kind == TLY_TRACE_GRACE || l->kind == TLY_TRACE_CAPPED)
        bump(p, l->kind == TLY_TRACE_GRACE ? "grace_lines" : "capped_lines", 1);
    else if (l->kind >= TLY_TRACE_REVENUE)
        sum_rebate_line(child(child(p, "rows"), period), l);
    else
        sum_mdf_line(child(p, "totals"), child(p, "buckets"), bucket, l);
}

/* rhe(amount × units × 10^d / 10^scale), in 128 bits: the conversion of
 * [F2], computed apart from the engine's. */
static int64_t convert_exact(int64_t amount, int64_t units, int scale, int d)
{
    __int128 num = (__int128)amount * units, den = 1;
    for (int i = 0; i < scale; i++)
        den *= 10;
    for (int i = 0; i < (d > 0 ? d : -d); i++) {
        if (d > 0)
            num *= 10;
        else
            den *= 10;
    }
    __int128 q = num / den, r = num % den;
    if (2 * r > den || (2 * r == den && (q & 1) != 0))
        q++;
    return (int64_t)q;
}

/* Every converted line of a partner whose program is in `currency`: an
 * accrual's and a referral's amount convert at their rate, a return's
 * cumulatively at its sale's rate [F2] [F4] [Q1]. */
static void check_fx(const json_t *p, const char *currency, const char *what)
{
    int ek, ec;
    ck_assert_int_eq(tly_currency_exponent(currency, &ek), TLY_OK);
    json_t *returned = json_object(); /* sale -> cumulative returned amount */
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(p, "fx"), i, f)
    {
        int kind = (int)json_integer_value(json_array_get(f, 0));
        ck_assert_int_eq(tly_currency_exponent(json_string_value(json_array_get(f, 1)), &ec),
                         TLY_OK);
        int64_t amount = json_integer_value(json_array_get(f, 2)), basis;
        int64_t units = json_integer_value(json_array_get(f, 3));
        int scale = (int)json_integer_value(json_array_get(f, 4));
        basis = json_integer_value(json_array_get(f, 5));
        int64_t want = convert_exact(amount, units, scale, ek - ec);
        if (kind == TLY_TRACE_CLAWBACK) {
            const char *sale = json_string_value(json_array_get(f, 6));
            int64_t before = iget(returned, sale);
            iset(returned, sale, before + amount);
            want = convert_exact(before + amount, units, scale, ek - ec) -
                   convert_exact(before, units, scale, ek - ec);
        }
        ck_assert_msg(basis == want, "%s: %s line %zu converts to %" PRId64 ", want %" PRId64, what,
                      tly_trace_kind_name((tly_trace_kind)kind), i, basis, want);
    }
    json_decref(returned);
}
static int cmp_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Buckets of the lines with remaining > 0, oldest first [M3], as the
 * balance view lists them (without expires_after). */
static json_t *line_buckets(json_t *b)
{
    const char *keys[256];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) if (json_integer_value(v) > 0)
    {
        ck_assert_uint_lt(n, 256);
        keys[n++] = k;
    }
    qsort(keys, n, sizeof keys[0], cmp_text);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, json_pack("{s:s,s:I}", "period", keys[i], "remaining",
                                             json_object_get(b, keys[i]) ? iget(b, keys[i]) : 0));
    return out;
}

static void expect_mdf(const json_t *p, const json_t *bal, const char *what)
{
    static const char *const keys[] = {"accrued", "clawed_back", "adjusted", "expired",
                                       "pending", "approved",    "paid",     "deficit"};
    json_t *t = json_object_get(p, "totals"), *b = json_object_get(p, "buckets");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(iget(t, keys[i]) == iget(bal, keys[i]),
                      "%s: %s lines %" PRId64 " balance %" PRId64, what, keys[i], iget(t, keys[i]),
                      iget(bal, keys[i]));
    int64_t avail = -iget(t, "deficit");
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) avail += json_integer_value(v);
    ck_assert_msg(avail == iget(bal, "available"),
                  "%s: available lines %" PRId64 " balance %" PRId64, what, avail,
                  iget(bal, "available"));
    json_t *lb = line_buckets(b), *vb = json_array();
    size_t i;
    json_array_foreach(json_object_get(bal, "buckets"), i, v)
        json_array_append_new(vb, json_pack("{s:O,s:O}", "period", json_object_get(v, "period"),
                                            "remaining", json_object_get(v, "remaining")));
    ck_assert_msg(json_equal(lb, vb), "%s: buckets differ", what);
    json_decref(lb);
    json_decref(vb);
}

/* X and B of a row from the revenue lines alone [R11]: B is the mean of
 * the k periods before it (no lines: 0), rounded half even; X = max(R −
 * B, 0), or max(R, 0) without a baseline. */
static int64_t row_basis(const json_t *rows, const char *period, const json_t *r, int64_t *b)
{
    int64_t k = iget(r, "k"), sum = 0, x = iget(r, "revenue");
    tly_period_kind kind;
    int32_t p;
    ck_assert_int_eq(tly_period_parse(period, strlen(period), &kind, &p), TLY_OK);
    for (int64_t i = 1; i <= k; i++) {
        char text[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(kind, p - (int32_t)i, text);
        sum += iget(json_object_get(rows, text), "revenue");
    }
    *b = k > 0 ? tly_round_half_even(sum, k) : 0;
    x -= *b;
    return x > 0 ? x : 0;
}

/* The figure of a row recomputed from its lines: rhe(Σ slices) (none and
 * rate 0 under the minimum; the slices cover X), capped, plus the
 * adjustments [R13] [K2] [K3] [R8]. */
static int64_t row_figure(const json_t *r, int64_t x, const char *what, const char *period,
                          uint64_t *capped)
{
    tly_bps_sum s = {iget(r, "whole"), iget(r, "frac")};
    int64_t calc;
    ck_assert_int_eq(tly_bps_sum_round(&s, &calc), TLY_OK);
    if (x < iget(r, "min"))
        ck_assert_msg(iget(r, "slices") == 0 && iget(r, "bps") == 0 && calc == 0,
                      "%s: %s under the minimum has slices or a rate", what, period);
    else if (json_is_true(json_object_get(r, "incremental")))
        ck_assert_msg(iget(r, "slice_sum") == x, "%s: %s: slices cover %" PRId64 " of %" PRId64,
                      what, period, iget(r, "slice_sum"), x);
    else
        ck_assert_msg(iget(r, "slices") == 1 && iget(r, "slice_sum") == x,
                      "%s: %s: a retroactive figure is one slice of X", what, period);
    if (calc > iget(r, "cap")) {
        calc = iget(r, "cap");
        (*capped)++;
    }
    return calc + iget(r, "adj");
}

static bool baseline_same(const json_t *vr, const json_t *r, int64_t b)
{
    json_t *v = json_object_get(vr, "baseline");
    if (iget(r, "k") == 0)
        return json_is_null(v) && json_object_get(r, "baseline") == NULL;
    return json_is_integer(v) && json_integer_value(v) == b && iget(r, "baseline") == b;
}

/* One row of the view against its lines: revenue, basis and baseline,
 * rate, figure, referral fees, paid, status. */
static void expect_row(const json_t *rows, const json_t *vr, const char *what, uint64_t *capped)
{
    const char *period = json_string_value(json_object_get(vr, "period"));
    json_t *r = json_object_get(rows, period);
    ck_assert_msg(r != NULL, "%s: no lines for rebate period %s", what, period);
    int64_t b, x = row_basis(rows, period, r, &b);
    int64_t figure = row_figure(r, x, what, period, capped);
    ck_assert_msg(
        iget(r, "revenue") == iget(vr, "revenue") && iget(r, "paid") == iget(vr, "paid") &&
            x == iget(r, "x") && x == iget(vr, "basis") && baseline_same(vr, r, b) &&
            iget(r, "figure") == iget(vr, "rebate") && figure == iget(vr, "rebate") &&
            iget(r, "referral") == iget(vr, "referral") && iget(r, "bps") == iget(vr, "rate_bps") &&
            json_equal(json_object_get(r, "status"), json_object_get(vr, "status")),
        "%s: rebate period %s: lines revenue %" PRId64 " paid %" PRId64 " X %" PRId64
        " (line %" PRId64 ") B %" PRId64 " figure %" PRId64 " (line %" PRId64 ") referral %" PRId64,
        what, period, iget(r, "revenue"), iget(r, "paid"), x, iget(r, "x"), b, figure,
        iget(r, "figure"), iget(r, "referral"));
}

/* Every rebate row, then payable and accrued_open: Σ final (figure +
 * referral − paid) and Σ open (figure + referral) [R10] [Q3] [P4]; no
 * line outside the view's rows. */
static void expect_rebates(const json_t *p, const json_t *reb, const char *what, uint64_t *capped)
{
    json_t *rows = json_object_get(p, "rows");
    size_t i;
    json_t *vr;
    int64_t payable = 0, open = 0;
    json_array_foreach(json_object_get(reb, "periods"), i, vr)
    {
        expect_row(rows, vr, what, capped);
        const json_t *r = json_object_get(rows, json_string_value(json_object_get(vr, "period")));
        int64_t due = iget(r, "figure") + iget(r, "referral");
        if (strcmp(json_string_value(json_object_get(r, "status")), "final") == 0)
            payable += due - iget(r, "paid");
        else
            open += due;
    }
    ck_assert_msg(payable == iget(reb, "payable") && open == iget(reb, "accrued_open"),
                  "%s: lines payable %" PRId64 " accrued_open %" PRId64, what, payable, open);
    ck_assert_msg(json_object_size(rows) == json_array_size(json_object_get(reb, "periods")),
                  "%s: lines for %zu rebate periods, the view has %zu", what,
                  json_object_size(rows), json_array_size(json_object_get(reb, "periods")));
}

/* Folds the stream with a trace of every partner; each partner's lines
 * must rebuild its balance and rebate views. Returns the kinds seen and
 * the section 10 cases reached (cov). */
static uint32_t check_all_partners(const stream *st, const char *label, uint64_t cov[COV_COUNT])
{
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    sums s = {.by_partner = json_object()};
    ck_assert_int_eq(tly_engine_set_trace(e, NULL, on_sum_line, &s), TLY_OK);
    fold(e, st, 0, st->count, NULL);
    tly_engine_trace_open(e);
    json_t *partners = tly_engine_partners(e);
    ck_assert_uint_gt(json_array_size(partners), 0);
    size_t i;
    json_t *pj;
    json_array_foreach(partners, i, pj)
    {
        const char *pid = json_string_value(pj);
        char what[256];
        snprintf(what, sizeof what, "%s, partner %s", label, pid);
        json_t *bal = tly_engine_view(e, 'b', pid), *reb = tly_engine_view(e, 'r', pid);
        json_t *p = child(s.by_partner, pid);
        expect_mdf(p, bal, what);
        expect_rebates(p, reb, what, &s.cov[COV_REBATE_CAP]);
        check_fx(p, json_string_value(json_object_get(bal, "currency")), what);
        json_decref(bal);
        json_decref(reb);
    }
    printf("%s: %zu partners, %" PRIu64 " lines, all sums match\n", label,
           json_array_size(partners), s.lines);
    json_decref(partners);
    json_decref(s.by_partner);
    tly_engine_free(e);
    memcpy(cov, s.cov, sizeof s.cov);
    return s.kinds_seen;
}

/* Through tly_explain: one fold per partner, the report must match. */
static void check_reports(const stream *st, const char *label)
{
    tly_engine *all;
    ck_assert_int_eq(tly_engine_new(0, 1, &all), TLY_OK);
    fold(all, st, 0, st->count, NULL);
    json_t *partners = tly_engine_partners(all);
    tly_engine_free(all);
    size_t i;
    json_t *pj;
    json_array_foreach(partners, i, pj)
    {
        bool ok = false;
        json_t *rep = explain_report(st, json_string_value(pj), NULL, &ok);
        if (!ok) {
            char *text = json_dumps(json_object_get(rep, "mdf"), JSON_COMPACT);
            ck_abort_msg("%s: report of %s does not match: %.2000s", label, json_string_value(pj),
                         text);
        }
        json_decref(rep);
    }
    json_decref(partners);
}

/* A `tally gen` data set of `events` events, as a stream. */
static void gen_with_tally(stream *st, uint64_t seed, int events, int partners)
{
    char *dir = tu_tmpdir();
    char path[1100], seed_s[32], ev_s[32], p_s[32];
    snprintf(path, sizeof path, "%s/gen.jsonl", dir);
    snprintf(seed_s, sizeof seed_s, "%" PRIu64, seed);
    snprintf(ev_s, sizeof ev_s, "%d", events);
    snprintf(p_s, sizeof p_s, "%d", partners);
    char *argv[] = {
        (char *)tu_tally(), "gen", "--seed", seed_s, "--events", ev_s, "--partners", p_s,
        "--resend-pct",     "2",   "--out",  path,   NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    load_jsonl(st, path);
    tu_rmtree(dir);
}

/* Source _i: 0 the vectors, 1 the engine tests' generator, 2 tally gen. */
static void load_source(int i, stream *st, char *label, size_t cap)
{
    if (i == 0) {
        char *path = tu_vector("seed101-events.jsonl");
        load_jsonl(st, path);
        free(path);
        ck_assert_uint_eq(st->count, 3074);
        snprintf(label, cap, "seed101 vectors");
    } else if (i == 1) {
        gen_stream(st, g_seed, 20000, 24);
        snprintf(label, cap, "random stream seed %" PRIu64, g_seed);
    } else {
        gen_with_tally(st, g_seed, 8000, 30);
        snprintf(label, cap, "tally gen seed %" PRIu64, g_seed);
    }
}

START_TEST(every_partner_sums)
{
    stream st = {0};
    char label[96];
    load_source(_i, &st, label, sizeof label);
    uint64_t cov[COV_COUNT];
    uint32_t kinds = check_all_partners(&st, label, cov);
    check_reports(&st, label);
    /* the random stream of the engine tests reaches every kind of line
     * and every section 10 case the checks above recompute */
    if (_i == 1) {
        for (int k = 0; k < TLY_TRACE_KIND_COUNT; k++)
            ck_assert_msg(kinds & (1u << k), "%s: no %s line", label,
                          tly_trace_kind_name((tly_trace_kind)k));
        for (int c = 0; c < COV_COUNT; c++) {
            printf("  %s: %" PRIu64 "\n", cov_names[c], cov[c]);
            ck_assert_msg(cov[c] > 0, "%s: no %s", label, cov_names[c]);
        }
    }
    stream_free(&st);
}
END_TEST

/* ---- (3) the hook changes nothing ---- */

/* Every flushed key and value, in order, as one byte string. */
static tly_err bytes_put(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    msgpack_sbuffer *sb = ctx;
    uint64_t lens[2] = {klen, vlen};
    msgpack_sbuffer_write(sb, (const char *)lens, sizeof lens);
    msgpack_sbuffer_write(sb, key, klen);
    msgpack_sbuffer_write(sb, val, vlen);
    return TLY_OK;
}

static void count_line(void *ctx, const tly_trace_line *l)
{
    (void)l;
    (*(uint64_t *)ctx)++;
}

/* Folds st with the trace set for partner (NULL: every partner; "" no
 * trace), flushing every 500 records into sb; returns the lines seen. */
static uint64_t fold_bytes(const stream *st, const char *partner, msgpack_sbuffer *sb)
{
    tly_engine *e;
    uint64_t lines = 0;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    if (partner == NULL || *partner != '\0')
        ck_assert_int_eq(tly_engine_set_trace(e, partner, count_line, &lines), TLY_OK);
    for (size_t i = 0; i < st->count; i += 500) {
        fold(e, st, i, i + 500 < st->count ? i + 500 : st->count, NULL);
        ck_assert_int_eq(tly_engine_flush(e, bytes_put, sb), TLY_OK);
    }
    json_t *x = tly_engine_exceptions(e), *l = tly_engine_liabilities(e);
    char *text = json_dumps(x, JSON_COMPACT), *ltext = json_dumps(l, JSON_COMPACT);
    msgpack_sbuffer_write(sb, text, strlen(text));
    msgpack_sbuffer_write(sb, ltext, strlen(ltext));
    free(text);
    free(ltext);
    json_decref(x);
    json_decref(l);
    tly_engine_free(e);
    return lines;
}

START_TEST(trace_changes_nothing)
{
    stream st = {0};
    gen_stream(&st, g_seed + 7, 8000, 16);
    msgpack_sbuffer plain, all, one;
    msgpack_sbuffer_init(&plain);
    msgpack_sbuffer_init(&all);
    msgpack_sbuffer_init(&one);
    ck_assert_uint_eq(fold_bytes(&st, "", &plain), 0);
    uint64_t n_all = fold_bytes(&st, NULL, &all);
    uint64_t n_one = fold_bytes(&st, "partner-003", &one);
    ck_assert_uint_gt(n_one, 0);
    ck_assert_uint_gt(n_all, n_one);
    ck_assert_msg(plain.size == all.size && memcmp(plain.data, all.data, plain.size) == 0,
                  "a trace of every partner changed the flushed state (seed %" PRIu64 ")",
                  g_seed + 7);
    ck_assert_msg(plain.size == one.size && memcmp(plain.data, one.data, plain.size) == 0,
                  "a trace of one partner changed the flushed state (seed %" PRIu64 ")",
                  g_seed + 7);
    msgpack_sbuffer_destroy(&plain);
    msgpack_sbuffer_destroy(&all);
    msgpack_sbuffer_destroy(&one);
    stream_free(&st);
}
END_TEST

/* ---- (2) a hand-written scenario, line by line ---- */

/* acme: USD, quarters; Base 0/0 at 100 bps, Silver 100000/1 at 200 bps;
 * retroactive rebate 0:100 1000000:200; buckets expire at the close of
 * their own period (N = 1); tier window 1. Days 2025-01-11 (T1),
 * 2025-04-06 (T2), 2025-04-11 (T3). */
#define T1 "1736553600000"
#define T2 "1743897600000"
#define T3 "1744329600000"

static const char *const scenario[][2] = {
    {"finance",
     "{\"type\":\"program\",\"id\":\"G1\",\"at\":1735689600000,\"program\":\"acme\","
     "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
     "{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
     "{\"name\":\"Silver\",\"min_revenue\":100000,\"min_certs\":1,\"mdf_bps\":200}],"
     "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
     "{\"from\":1000000,\"bps\":200}]},\"mdf_expiry_periods\":1,\"tier_window_periods\":1}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"E1\",\"at\":" T1 ",\"partner\":\"p1\","
                "\"name\":\"P One\",\"program\":\"acme\",\"kind\":\"var\"}"},
    {"certsys", "{\"type\":\"certification\",\"id\":\"C1\",\"at\":" T1 ",\"partner\":\"p1\","
                "\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"dist-a", "{\"type\":\"sale\",\"id\":\"S1\",\"at\":" T1 ",\"partner\":\"p1\",\"sku\":\"K\","
               "\"qty\":1,\"amount\":1000000,\"currency\":\"USD\"}"},
    {"dist-a", "{\"type\":\"return\",\"id\":\"R1\",\"at\":" T1 ",\"partner\":\"p1\","
               "\"sale\":\"S1\",\"qty\":1,\"amount\":250000,\"currency\":\"USD\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K1\",\"at\":" T1 ",\"partner\":\"p1\","
               "\"claim\":\"CL1\",\"action\":\"submit\",\"amount\":5000}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K2\",\"at\":" T1 ",\"partner\":\"p1\","
                "\"claim\":\"CL1\",\"action\":\"approve\",\"amount\":3000}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K3\",\"at\":" T1 ",\"partner\":\"p1\","
               "\"claim\":\"CL2\",\"action\":\"submit\",\"amount\":1000}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A1\",\"at\":" T1 ",\"partner\":\"p1\","
                "\"account\":\"rebate\",\"amount\":500,\"reason\":\"promo\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L1\",\"at\":" T2 ",\"program\":\"acme\","
                "\"period\":\"2025-Q1\"}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K4\",\"at\":" T2 ",\"partner\":\"p1\","
                "\"claim\":\"CL2\",\"action\":\"reject\",\"reason\":\"late\"}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K5\",\"at\":" T2 ",\"partner\":\"p1\","
                "\"claim\":\"CL1\",\"action\":\"pay\",\"amount\":1000}"},
    {"finance", "{\"type\":\"payout\",\"id\":\"Y1\",\"at\":" T2 ",\"partner\":\"p1\","
                "\"period\":\"2025-Q1\",\"amount\":8000}"},
    {"dist-a", "{\"type\":\"sale\",\"id\":\"S2\",\"at\":" T3 ",\"partner\":\"p1\",\"sku\":\"K\","
               "\"qty\":1,\"amount\":200000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A2\",\"at\":" T3 ",\"partner\":\"p1\","
                "\"account\":\"mdf\",\"amount\":-10000,\"reason\":\"correction\"}"},
    {"dist-a", "{\"type\":\"sale\",\"id\":\"S3\",\"at\":" T3 ",\"partner\":\"p1\",\"sku\":\"K\","
               "\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}"},
};
#define SCENARIO_EVENTS (sizeof scenario / sizeof scenario[0])

/* The lines of p1, hand-computed from SPEC section 6: the sale accrues at
 * Base 1% [S7]; the return claws back 1% of 2,500.00 [S3] and debits the
 * oldest bucket [M6]; CL1 reserves 50.00, its approval of 30.00 releases
 * 20.00 as a credit [M1]; the close fixes Q1's rebate (7,500.00 × 1% + 5.00
 * adjustment) and expires Q1's 35.00 [G5]; rejecting CL2 after that sends
 * its 10.00 to expired; the new tier Silver (2%) accrues on S2; the −100.00
 * adjustment empties Q2 and leaves a 60.00 deficit, which S3's 20.00
 * accrual pays off first [M1]; Q2's open estimate closes the trace. */
static const char scenario_lines[] =
    "4 accrual 2025-Q1 10000 basis=1000000 bps=100 tier=Base @dist-a/S1\n"
    "4 credit 2025-Q1 b=2025-Q1 10000 @dist-a/S1\n"
    "4 revenue 2025-Q1 1000000 @dist-a/S1\n"
    "5 clawback 2025-Q1 2500 basis=250000 bps=100 ref=S1 @dist-a/R1\n"
    "5 debit 2025-Q1 b=2025-Q1 2500 ref=S1 @dist-a/R1\n"
    "5 revenue 2025-Q1 -250000 ref=S1 @dist-a/R1\n"
    "6 reserve 2025-Q1 b=2025-Q1 5000 ref=CL1 @portal/K1\n"
    "7 release 2025-Q1 b=2025-Q1 2000 ref=CL1 @finance/K2\n"
    "7 credit 2025-Q1 b=2025-Q1 2000 ref=CL1 @finance/K2\n"
    "7 approve 2025-Q1 3000 ref=CL1 @finance/K2\n"
    "8 reserve 2025-Q1 b=2025-Q1 1000 ref=CL2 @portal/K3\n"
    "9 adjust_rebate 2025-Q1 500 @finance/A1\n"
    "10 rebate_slice 2025-Q1 0 basis=750000 bps=100 from=0 @finance/L1\n"
    "10 rebate_final 2025-Q1 8000 basis=750000 bps=100 from=0 @finance/L1\n"
    "10 expiry 2025-Q1 b=2025-Q1 3500 @finance/L1\n"
    "11 release_expired 2025-Q2 b=2025-Q1 1000 ref=CL2 @finance/K4\n"
    "12 pay 2025-Q2 1000 ref=CL1 @finance/K5\n"
    "13 payout 2025-Q1 8000 @finance/Y1\n"
    "14 accrual 2025-Q2 4000 basis=200000 bps=200 tier=Silver @dist-a/S2\n"
    "14 credit 2025-Q2 b=2025-Q2 4000 @dist-a/S2\n"
    "14 revenue 2025-Q2 200000 @dist-a/S2\n"
    "15 adjust_mdf 2025-Q2 -10000 @finance/A2\n"
    "15 debit 2025-Q2 b=2025-Q2 4000 @finance/A2\n"
    "15 deficit 2025-Q2 6000 @finance/A2\n"
    "16 accrual 2025-Q2 2000 basis=100000 bps=200 tier=Silver @dist-a/S3\n"
    "16 deficit_payoff 2025-Q2 b=2025-Q2 2000 @dist-a/S3\n"
    "16 revenue 2025-Q2 100000 @dist-a/S3\n"
    "16 rebate_slice 2025-Q2 0 basis=300000 bps=100 from=0 @/\n"
    "16 rebate_open 2025-Q2 3000 basis=300000 bps=100 from=0 @/\n";

/* The first n events of the scenario. */
static void scenario_head(stream *st, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stream_push_json(st, scenario[i][0], scenario[i][1]);
}

static void scenario_stream(stream *st)
{
    scenario_head(st, SCENARIO_EVENTS);
}

static bool is_bucket_line(tly_trace_kind k)
{
    return k == TLY_TRACE_CREDIT || k == TLY_TRACE_DEBIT || k == TLY_TRACE_RESERVE ||
           k == TLY_TRACE_RELEASE || k == TLY_TRACE_RELEASE_EXPIRED || k == TLY_TRACE_EXPIRY ||
           k == TLY_TRACE_DEFICIT_PAYOFF;
}

/* One line as text: seq kind period [b=bucket] amount [details] @source/id. */
static void text_line(void *ctx, const tly_trace_line *l)
{
    msgpack_sbuffer *sb = ctx;
    char period[TLY_PERIOD_TEXT_BYTES], bucket[TLY_PERIOD_TEXT_BYTES], buf[512];
    tly_period_format(l->period_kind, l->period, period);
    tly_period_format(l->period_kind, l->bucket, bucket);
    int n = snprintf(buf, sizeof buf, "%" PRIu64 " %s %s", l->seq, tly_trace_kind_name(l->kind),
                     period);
    if (is_bucket_line(l->kind))
        n += snprintf(buf + n, sizeof buf - (size_t)n, " b=%s", bucket);
    n += snprintf(buf + n, sizeof buf - (size_t)n, " %" PRId64, l->amount);
    bool figure = l->kind >= TLY_TRACE_REBATE_SLICE && l->kind <= TLY_TRACE_REBATE_OPEN;
    if (l->kind == TLY_TRACE_ACCRUAL || l->kind == TLY_TRACE_CLAWBACK || figure)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " basis=%" PRId64 " bps=%d", l->basis,
                      l->bps);
    if (l->kind == TLY_TRACE_ACCRUAL)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " tier=%.*s", (int)l->tier.len, l->tier.ptr);
    if (figure)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " from=%" PRId64, l->from);
    if (l->ref.len > 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " ref=%.*s", (int)l->ref.len, l->ref.ptr);
    n += snprintf(buf + n, sizeof buf - (size_t)n, " @%.*s/%.*s\n", (int)l->source.len,
                  l->source.ptr, (int)l->id.len, l->id.ptr);
    msgpack_sbuffer_write(sb, buf, (size_t)n);
}

START_TEST(scenario_line_by_line)
{
    stream st = {0};
    scenario_stream(&st);
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_engine_set_trace(e, "p1", text_line, &sb), TLY_OK);
    fold(e, &st, 0, st.count, NULL);
    tly_engine_trace_open(e);
    msgpack_sbuffer_write(&sb, "", 1);
    ck_assert_msg(strcmp(sb.data, scenario_lines) == 0, "lines differ\n got:\n%s\nwant:\n%s",
                  sb.data, scenario_lines);
    /* the balance the lines add up to, as computed by hand */
    json_t *bal = tly_engine_view(e, 'b', "p1");
    json_t *want = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "accrued", 16000,
                             "clawed_back", 2500, "adjusted", -10000, "expired", 4500, "pending", 0,
                             "approved", 2000, "paid", 1000, "deficit", 4000, "available", -4000);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v)
        ck_assert_msg(json_equal(json_object_get(bal, k), v), "balance %s", k);
    json_decref(want);
    json_decref(bal);
    msgpack_sbuffer_destroy(&sb);
    tly_engine_free(e);
    stream_free(&st);
}
END_TEST

/* The report of the scenario: sums, the Q1 row, and the period filter. */
START_TEST(scenario_report)
{
    stream st = {0};
    scenario_stream(&st);
    bool ok = false;
    json_t *rep = explain_report(&st, "p1", "2025-Q1", &ok);
    ck_assert(ok);
    json_t *mdf = json_object_get(rep, "mdf");
    ck_assert(json_is_true(json_object_get(mdf, "matches_balance")));
    ck_assert_int_eq(iget(json_object_get(mdf, "totals"), "available"), -4000);
    /* Q1 lines only: accrual, credit, clawback, debit, reserve, release,
     * credit, approve, reserve, expiry */
    ck_assert_uint_eq(json_array_size(json_object_get(mdf, "lines")), 10);
    json_t *pt = json_object_get(mdf, "period_totals");
    ck_assert_int_eq(iget(pt, "accrued"), 10000);
    ck_assert_int_eq(iget(pt, "expired"), 3500);
    json_t *rows = json_object_get(json_object_get(rep, "rebates"), "periods");
    ck_assert_uint_eq(json_array_size(rows), 1);
    json_t *q1 = json_array_get(rows, 0);
    json_t *want = json_loads(
        "{\"period\":\"2025-Q1\",\"revenue\":750000,\"bracket\":{\"from\":0,\"bps\":100},"
        "\"mode\":\"retroactive\",\"calculated\":7500,\"rebate\":8000,\"status\":\"final\","
        "\"final_seq\":10,\"paid\":8000,\"matches\":true}",
        0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v)
        ck_assert_msg(json_equal(json_object_get(q1, k), v), "Q1 row: %s", k);
    json_t *rev = json_object_get(q1, "revenue_lines");
    ck_assert_uint_eq(json_array_size(rev), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rev, 1), "id")), "R1");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rev, 1), "sale")), "S1");
    ck_assert_int_eq(iget(json_array_get(rev, 1), "amount"), -250000);
    json_decref(want);
    json_decref(rep);
    stream_free(&st);
}
END_TEST

/* Sales and returns of an unenrolled partner are folded at enrollment
 * with their own seq [E3] [D7]; the engine keeps only the return's sale,
 * the report finds the return's own id. */
START_TEST(held_events_keep_their_ids)
{
    stream st = {0};
    scenario_head(&st, 1); /* the program only */
    static const char *const held[][2] = {
        {"dist-b", "{\"type\":\"sale\",\"id\":\"S9\",\"at\":" T1 ",\"partner\":\"p2\","
                   "\"sku\":\"K\",\"qty\":1,\"amount\":40000,\"currency\":\"USD\"}"},
        {"dist-b", "{\"type\":\"return\",\"id\":\"R9\",\"at\":" T1 ",\"partner\":\"p2\","
                   "\"sale\":\"S9\",\"qty\":1,\"amount\":10000,\"currency\":\"USD\"}"},
        {"finance", "{\"type\":\"partner\",\"id\":\"E2\",\"at\":" T1 ",\"partner\":\"p2\","
                    "\"name\":\"P Two\",\"program\":\"acme\",\"kind\":\"msp\"}"}};
    for (size_t i = 0; i < 3; i++)
        stream_push_json(&st, held[i][0], held[i][1]);
    bool ok = false;
    json_t *rep = explain_report(&st, "p2", NULL, &ok);
    ck_assert(ok);
    json_t *lines = json_object_get(json_object_get(rep, "mdf"), "lines");
    json_t *acc = json_array_get(lines, 0), *claw = json_array_get(lines, 2);
    ck_assert_str_eq(json_string_value(json_object_get(acc, "kind")), "accrual");
    ck_assert_int_eq(iget(acc, "seq"), 2);
    ck_assert_str_eq(json_string_value(json_object_get(acc, "id")), "S9");
    ck_assert_str_eq(json_string_value(json_object_get(claw, "kind")), "clawback");
    ck_assert_int_eq(iget(claw, "seq"), 3);
    ck_assert_str_eq(json_string_value(json_object_get(claw, "source")), "dist-b");
    ck_assert_str_eq(json_string_value(json_object_get(claw, "id")), "R9");
    ck_assert_int_eq(iget(claw, "amount"), 100);
    json_decref(rep);
    stream_free(&st);
}
END_TEST

/* A clawback is capped at the accrual not yet clawed back [S3]: sale 2.50
 * accrues rhe(0.025) = 0.02; returning 1.50 claws rhe(0.015) = 0.02 back;
 * returning the last 1.00 would claw 0.01, capped to 0. */
START_TEST(capped_clawback_marked)
{
    stream st = {0};
    scenario_head(&st, 2); /* program, p1 */
    static const char *const evs[] = {
        "{\"type\":\"sale\",\"id\":\"S7\",\"at\":" T1 ",\"partner\":\"p1\",\"sku\":\"K\","
        "\"qty\":1,\"amount\":250,\"currency\":\"USD\"}",
        "{\"type\":\"return\",\"id\":\"R7\",\"at\":" T1 ",\"partner\":\"p1\",\"sale\":\"S7\","
        "\"qty\":1,\"amount\":150,\"currency\":\"USD\"}",
        "{\"type\":\"return\",\"id\":\"R8\",\"at\":" T1 ",\"partner\":\"p1\",\"sale\":\"S7\","
        "\"qty\":1,\"amount\":100,\"currency\":\"USD\"}"};
    for (size_t i = 0; i < 3; i++)
        stream_push_json(&st, "dist-a", evs[i]);
    bool ok = false;
    json_t *rep = explain_report(&st, "p1", NULL, &ok);
    ck_assert(ok);
    json_t *lines = json_object_get(json_object_get(rep, "mdf"), "lines");
    /* accrual, credit, clawback R7, debit, clawback R8 (nothing to debit) */
    ck_assert_uint_eq(json_array_size(lines), 5);
    json_t *r7 = json_array_get(lines, 2), *r8 = json_array_get(lines, 4);
    ck_assert_int_eq(iget(r7, "amount"), 2);
    ck_assert_ptr_null(json_object_get(r7, "capped"));
    ck_assert_str_eq(json_string_value(json_object_get(r8, "id")), "R8");
    ck_assert_int_eq(iget(r8, "amount"), 0);
    ck_assert_int_eq(iget(r8, "returned"), 100);
    ck_assert(json_is_true(json_object_get(r8, "capped")));
    json_decref(rep);
    stream_free(&st);
}
END_TEST

/* ---- (4) the CLI on real logs ---- */

/* Appends a stream to DATA/log with tly_log_append, as the ledger would. */
static void write_log(const char *data, const stream *st)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/log", data);
    tly_log *log = NULL;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    enum { CHUNK = 512 };
    tly_log_item items[CHUNK];
    for (size_t i = 0; i < st->count; i += CHUNK) {
        uint32_t n = (uint32_t)(st->count - i < CHUNK ? st->count - i : CHUNK);
        for (uint32_t k = 0; k < n; k++) {
            const rec_buf *r = &st->recs[i + k];
            tly_ev_type t;
            items[k] = (tly_log_item){.source = {r->source, (uint32_t)strlen(r->source)},
                                      .event = r->bytes,
                                      .event_len = r->len};
            ck_assert_int_eq(tly_event_peek_id(r->bytes, r->len, &t, &items[k].id), TLY_OK);
        }
        tly_log_group g = {0, n, false};
        ck_assert_int_eq(tly_log_append(log, REC_MS, items, n, &g, 1), TLY_OK);
        for (uint32_t k = 0; k < n; k++)
            ck_assert_int_eq(items[k].err, TLY_OK);
    }
    tly_log_close(log);
}

typedef struct run_out {
    int rc;
    char *out, *err;
} run_out;

/* Runs `tally explain ARGS... --data data`; NULL-terminated args. */
static run_out explain(const char *data, const char *const *args)
{
    char *dir = tu_tmpdir();
    char out[1100], err[1100];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    char *argv[16] = {(char *)tu_tally(), "explain"};
    int n = 2;
    for (; *args != NULL && n < 12; args++)
        argv[n++] = (char *)*args;
    argv[n++] = "--data";
    argv[n++] = (char *)data;
    argv[n] = NULL;
    run_out r = {.rc = tu_run(argv, NULL, out, err)};
    size_t len;
    r.out = tu_read_file(out, &len);
    r.err = tu_read_file(err, &len);
    tu_rmtree(dir);
    return r;
}

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
}

static json_t *run_json(const run_out *r)
{
    json_error_t je;
    json_t *j = json_loads(r->out, 0, &je);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", je.text, r->out);
    return j;
}

/* explain --period keeps one effective period. */
static void check_explain_period(const char *data)
{
    run_out r = explain(data, (const char *[]){"p1", "--json", "--period", "2025-Q2", NULL});
    ck_assert_int_eq(r.rc, 0);
    json_t *j = run_json(&r);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(json_object_get(j, "mdf"), "lines"), i, l)
        ck_assert_str_eq(json_string_value(json_object_get(l, "period")), "2025-Q2");
    json_t *rows = json_object_get(json_object_get(j, "rebates"), "periods");
    ck_assert_uint_eq(json_array_size(rows), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "period")),
                     "2025-Q2");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "status")), "open");
    json_decref(j);
    run_free(&r);
}

START_TEST(cli_scenario)
{
    stream st = {0};
    scenario_stream(&st);
    char *data = tu_tmpdir();
    write_log(data, &st);

    run_out r = explain(data, (const char *[]){"p1", "--json", NULL});
    ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
    json_t *j = run_json(&r);
    ck_assert_int_eq(iget(j, "seq"), 16);
    ck_assert(json_is_true(json_object_get(json_object_get(j, "mdf"), "matches_balance")));
    ck_assert_uint_eq(json_array_size(json_object_get(json_object_get(j, "rebates"), "periods")),
                      2);
    json_decref(j);
    run_free(&r);

    /* human output ends with the verdict */
    r = explain(data, (const char *[]){"p1", NULL});
    ck_assert_int_eq(r.rc, 0);
    ck_assert_msg(strstr(r.out, "matches balance at seq 16\n") != NULL, "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "tier Silver"));
    run_free(&r);

    check_explain_period(data);

    /* --to stops early: after the return, before any claim */
    r = explain(data, (const char *[]){"p1", "--json", "--to", "5", NULL});
    ck_assert_int_eq(r.rc, 0);
    j = run_json(&r);
    ck_assert_int_eq(iget(j, "seq"), 5);
    json_t *t = json_object_get(json_object_get(j, "mdf"), "totals");
    ck_assert_int_eq(iget(t, "accrued"), 10000);
    ck_assert_int_eq(iget(t, "available"), 7500);
    json_decref(j);
    run_free(&r);

    /* an unknown partner: exit 1, one line on stderr [D15] */
    r = explain(data, (const char *[]){"nobody", NULL});
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "unknown partner"));
    ck_assert_ptr_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1);
    ck_assert_str_eq(r.out, "");
    run_free(&r);

    static const struct {
        const char *args[4];
        int rc;
    } failures[] = {
        {{"p1", "--period", "2025-Q5", NULL}, 2}, /* usage errors: exit 2 */
        {{NULL}, 2},
        /* a month where the program has quarters, --to beyond the head: exit 1 */
        {{"p1", "--period", "2025-04", NULL}, 1},
        {{"p1", "--to", "99", NULL}, 1},
    };
    for (size_t k = 0; k < sizeof failures / sizeof failures[0]; k++) {
        r = explain(data, failures[k].args);
        ck_assert_msg(r.rc == failures[k].rc, "case %zu: exit %d, expected %d", k, r.rc,
                      failures[k].rc);
        run_free(&r);
    }

    tu_rmtree(data);
    stream_free(&st);
}
END_TEST

/* Every partner of the vector log explains itself and matches. */
START_TEST(cli_vectors)
{
    stream st = {0};
    char *path = tu_vector("seed101-events.jsonl");
    load_jsonl(&st, path);
    free(path);
    char *data = tu_tmpdir();
    write_log(data, &st);
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    fold(e, &st, 0, st.count, NULL);
    json_t *partners = tly_engine_partners(e);
    size_t i;
    json_t *pj;
    json_array_foreach(partners, i, pj)
    {
        run_out r = explain(data, (const char *[]){json_string_value(pj), NULL});
        ck_assert_msg(r.rc == 0, "%s: rc %d: %s", json_string_value(pj), r.rc, r.err);
        ck_assert_msg(strstr(r.out, "matches balance at seq 3074\n") != NULL, "%s",
                      json_string_value(pj));
        run_free(&r);
    }
    /* the JSON totals are the balance view's fields */
    const char *p = json_string_value(json_array_get(partners, 0));
    run_out r = explain(data, (const char *[]){p, "--json", NULL});
    ck_assert_int_eq(r.rc, 0);
    json_t *j = run_json(&r), *bal = tly_engine_view(e, 'b', p);
    json_t *t = json_object_get(json_object_get(j, "mdf"), "totals");
    const char *k;
    json_t *v;
    json_object_foreach(t, k, v)
        ck_assert_msg(json_equal(v, json_object_get(bal, k)), "%s: %s", p, k);
    json_decref(bal);
    json_decref(j);
    run_free(&r);
    json_decref(partners);
    tly_engine_free(e);
    tu_rmtree(data);
    stream_free(&st);
}
END_TEST

/* ---- (5) section 10 in words: a v2 program, line by line and tables ---- */

/* acme2: USD, quarters; Base (1 % MDF, 1 % referral fee) and Gold from
 * 1,000.00 (2 % MDF, +0.50 % rebate bonus, 2 % referral fee); a growth
 * rebate over 2 baseline periods at 1 %, minimum 1,000.00, cap 400.00; an
 * MDF cap of 300.00 per period; one-step moves, a grace of 2 failing
 * closes, a tier window of 1. Days 2025-01-02 (D1), -01-11 (D10), -01-21
 * (D20); then 5 or 10 days into each later quarter. */
#define V2_D1 "1735776000000"
#define V2_D10 "1736553600000"
#define V2_D20 "1737417600000"
#define V2_Q2_5 "1743897600000"
#define V2_Q2_10 "1744329600000"
#define V2_Q3_5 "1751760000000"
#define V2_Q4_5 "1759708800000"
#define V2_Q4_10 "1760140800000"
#define V2_Q5_5 "1767657600000"
#define V2_Q6_5 "1775433600000"
#define V2_Q7_5 "1783296000000"
#define V2_CLOSE(id, at, p)                                                                        \
    {                                                                                              \
        "finance", "{\"type\":\"close\",\"id\":\"" id "\",\"at\":" at ",\"program\":\"acme2\","    \
                   "\"period\":\"" p "\"}"                                                         \
    }
#define V2_SALE(id, at, amount, cur)                                                               \
    {                                                                                              \
        "dist-a", "{\"type\":\"sale\",\"id\":\"" id "\",\"at\":" at ",\"partner\":\"p1\","         \
                  "\"sku\":\"K\",\"qty\":1,\"amount\":" amount ",\"currency\":\"" cur "\"}"        \
    }

static const char *const v2_scenario[][2] = {
    {"finance",
     "{\"type\":\"program\",\"id\":\"G1\",\"at\":1735689600000,\"program\":\"acme2\","
     "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
     "{\"name\":\"Base\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100,\"referral_bps\":100,"
     "\"benefits\":[\"partner portal\"]},"
     "{\"name\":\"Gold\",\"min_revenue\":100000,\"min_certs\":0,\"mdf_bps\":200,"
     "\"rebate_bonus_bps\":50,\"referral_bps\":200,"
     "\"benefits\":[\"NFR units\",\"a partner account manager\"]}],"
     "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}],"
     "\"basis\":\"growth\",\"baseline_periods\":2,\"min\":100000,\"cap\":40000},"
     "\"mdf_expiry_periods\":4,\"tier_window_periods\":1,\"mdf_cap_per_period\":30000,"
     "\"tier_moves\":\"one_step\",\"tier_grace_periods\":2}"},
    {"finance", "{\"type\":\"rate\",\"id\":\"X1\",\"at\":" V2_D1 ",\"currency\":\"EUR\","
                "\"to\":\"USD\",\"rate\":\"1.0823\"}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"E1\",\"at\":" V2_D1 ",\"partner\":\"p1\","
                "\"name\":\"P One\",\"program\":\"acme2\",\"kind\":\"var\"}"},
    V2_SALE("S1", V2_D10, "100000", "EUR"),
    V2_SALE("S2", V2_D10, "3000000", "USD"),
    {"dist-a", "{\"type\":\"return\",\"id\":\"R1\",\"at\":" V2_D10 ",\"partner\":\"p1\","
               "\"sale\":\"S1\",\"qty\":1,\"amount\":50000,\"currency\":\"EUR\"}"},
    {"sales", "{\"type\":\"referral\",\"id\":\"F1\",\"at\":" V2_D10 ",\"partner\":\"p1\","
              "\"deal\":\"Acme deal\",\"amount\":200000,\"currency\":\"EUR\"}"},
    V2_CLOSE("L0", V2_D20, "2025-Q1"), /* early [L3] */
    V2_CLOSE("L1", V2_Q2_5, "2025-Q1"),
    V2_SALE("S3", V2_Q2_10, "5000000", "USD"),
    V2_CLOSE("L2", V2_Q3_5, "2025-Q2"),
    V2_CLOSE("L3", V2_Q4_5, "2025-Q3"),
    V2_SALE("S4", V2_Q4_10, "2550000", "USD"),
    V2_CLOSE("L4", V2_Q5_5, "2025-Q4"),
    V2_CLOSE("L5", V2_Q6_5, "2026-Q1"),
    V2_CLOSE("L6", V2_Q7_5, "2026-Q2"),
    V2_CLOSE("L7", "1791244800000", "2026-Q3"),
    {"finance", "{\"type\":\"payout\",\"id\":\"Y1\",\"at\":1791244800000,\"partner\":\"p1\","
                "\"period\":\"2025-Q1\",\"amount\":10000}"},
};
#define V2_EVENTS (sizeof v2_scenario / sizeof v2_scenario[0])

static void v2_stream(stream *st)
{
    for (size_t i = 0; i < V2_EVENTS; i++)
        stream_push_json(st, v2_scenario[i][0], v2_scenario[i][1]);
}

/* A grace line as text: seq period count/grace before->after move. */
static void grace_line(void *ctx, const tly_trace_line *l)
{
    if (l->kind != TLY_TRACE_GRACE)
        return;
    char period[TLY_PERIOD_TEXT_BYTES], buf[400];
    tly_period_format(l->period_kind, l->period, period);
    int n =
        snprintf(buf, sizeof buf, "%" PRIu64 " %s %" PRId64 "/%d %.*s->%.*s %s\n", l->seq, period,
                 l->amount, l->grace, (int)l->ref.len, l->ref.ptr, (int)l->tier.len, l->tier.ptr,
                 l->move < 0   ? "down"
                 : l->move > 0 ? "up"
                               : "kept");
    msgpack_sbuffer_write(ctx, buf, (size_t)n);
}

/* Hand-computed from SPEC section 10. S1: EUR 1,000.00 at 1.0823 = USD
 * 1,082.30 accrues 10.82 at Base [F2]; S2's 300.00 is cut to the 289.18
 * the 300.00 cap leaves [K1]; R1 returns EUR 500.00 = USD 541.15 at S1's
 * rate [F4]; F1 refers EUR 2,000.00 = USD 2,164.60, a 21.65 fee [Q1]. Q1
 * closes at 1 % of 30,541.15 growth over a 0 baseline = 305.41; Q2's
 * baseline is rhe(30,541.15 / 2) = 15,270.58 (half even), its growth
 * 34,729.42 at 1 % + Gold's 0.50 % = 520.94, capped at 400.00 [R11] [R13]
 * [K3]; Q4's 500.00 growth over 25,000.00 is under the 1,000.00 minimum
 * [K2]. The tier: Gold kept by grace after Q3, the count reset by Q4,
 * kept twice more and lost at the third failing close [T9]. */
START_TEST(v2_report)
{
    stream st = {0};
    v2_stream(&st);
    bool ok = false;
    json_t *rep = explain_report(&st, "p1", NULL, &ok);
    ck_assert(ok);
    json_t *rows = json_object_get(json_object_get(rep, "rebates"), "periods");
    ck_assert_uint_eq(json_array_size(rows), 3);
    json_t *q1 = json_array_get(rows, 0), *q2 = json_array_get(rows, 1),
           *q4 = json_array_get(rows, 2);
    ck_assert_int_eq(iget(q1, "rebate"), 30541);
    ck_assert_int_eq(iget(q1, "referral"), 2165);
    ck_assert_int_eq(iget(q2, "baseline"), 1527058);
    ck_assert_int_eq(iget(q2, "basis"), 3472942);
    ck_assert_int_eq(iget(q2, "calculated"), 52094);
    ck_assert(json_is_true(json_object_get(q2, "capped")));
    ck_assert_int_eq(iget(q2, "rebate"), 40000);
    ck_assert_int_eq(iget(json_object_get(q2, "bonus"), "bps"), 50);
    ck_assert_int_eq(iget(q4, "basis"), 50000);
    ck_assert_int_eq(iget(json_object_get(q4, "bracket"), "bps"), 0);
    ck_assert_int_eq(iget(q4, "rebate"), 0);
    ck_assert_int_eq(iget(json_object_get(rep, "rebates"), "payable"),
                     30541 + 2165 - 10000 + 40000);
    json_t *grace = json_object_get(rep, "grace");
    ck_assert_uint_eq(json_array_size(grace), 5);
    static const int64_t counts[] = {1, 0, 1, 2, 0};
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(iget(json_array_get(grace, i), "amount"), counts[i]);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(grace, 4), "move")), "down");
    json_decref(rep);
    stream_free(&st);
}
END_TEST

/* Each grace decision of p1: kept, reset by a passing close, kept twice,
 * and the count running out: Gold goes down one step [T8] [T9]. */
START_TEST(v2_grace_runs_out)
{
    stream st = {0};
    v2_stream(&st);
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_engine_set_trace(e, "p1", grace_line, &sb), TLY_OK);
    fold(e, &st, 0, st.count, NULL);
    msgpack_sbuffer_write(&sb, "", 1);
    ck_assert_str_eq(sb.data, "12 2025-Q3 1/2 Gold->Gold kept\n"
                              "14 2025-Q4 0/2 Gold->Gold kept\n"
                              "15 2026-Q1 1/2 Gold->Gold kept\n"
                              "16 2026-Q2 2/2 Gold->Gold kept\n"
                              "17 2026-Q3 0/2 Gold->Base down\n");
    msgpack_sbuffer_destroy(&sb);
    tly_engine_free(e);
    stream_free(&st);
}
END_TEST

/* Runs `tally ARGS...` (NULL-terminated), output captured. */
static run_out run_tally(const char *const *args)
{
    char *dir = tu_tmpdir();
    char out[1100], err[1100];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    char *argv[24] = {(char *)tu_tally()};
    int n = 1;
    for (; *args != NULL && n < 23; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    run_out r = {.rc = tu_run(argv, NULL, out, err)};
    size_t len;
    r.out = tu_read_file(out, &len);
    r.err = tu_read_file(err, &len);
    tu_rmtree(dir);
    return r;
}

/* True when a line of out starts with label and holds value. */
static bool line_has(const char *out, const char *label, const char *value)
{
    size_t n = strlen(label);
    for (const char *l = out; l != NULL && *l != '\0'; l = strchr(l, '\n'), l = l ? l + 1 : l) {
        const char *end = strchr(l, '\n');
        size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        if (strncmp(line, label, n) == 0 && strstr(line, value) != NULL)
            return true;
    }
    return false;
}

static void expect_words(const run_out *r, const char *const *words, const char *what)
{
    ck_assert_msg(r->rc == 0, "%s: rc %d: %s", what, r->rc, r->err);
    for (; *words != NULL; words++)
        ck_assert_msg(strstr(r->out, *words) != NULL, "%s: no '%s' in:\n%s", what, *words, r->out);
}

/* Every section 10 line of `tally explain` in words. */
static void check_v2_explain(const char *data)
{
    static const char *const words[] = {
        "sale dist-a/S1: EUR 1,000.00 at 1.0823 = USD 1,082.30 at 1.00% (tier Base)",
        "capped at 300.00 for 2025-Q1 (accrual 300.00 before the cap)",
        "capped at 300.00 for 2025-Q2 (accrual 1,000.00 before the cap)",
        "return dist-a/R1 of sale S1: returned EUR 500.00 at 1.0823 = USD 541.15 at 1.00%",
        "deal 'Acme deal' (sales/F1): EUR 2,000.00 at 1.0823 = USD 2,164.60 referred at 1.00% "
        "(tier Base)",
        "capped at 300.00 for 2025-Q4 (accrual 510.00 before the cap)",
        "growth over baseline 15,270.58, the mean of 2024-Q4 0.00, 2025-Q1 30,541.15",
        "bracket from 0.00 at 1.50% incl. Gold bonus 0.50%",
        "capped at 400.00 for 2025-Q2 (rebate cap)",
        "under the minimum 1,000.00: rate 0",
        "kept Gold by grace: 1 more failing close",
        "passing close: failing closes back to 0 (Gold)",
        "kept Gold by grace: no more failing closes",
        "grace used up after 3 failing closes: Gold -> Base",
        "627.06",
        "matches balance at seq 18\n",
        NULL};
    run_out r = explain(data, (const char *[]){"p1", NULL});
    expect_words(&r, words, "explain");
    run_free(&r);
}

/* The tables of rebate, tier and exceptions from replayed views: basis,
 * baseline and referral fees; benefits, the next tier's and the grace;
 * early_close. */
static void check_v2_tables(const char *data)
{
    char views[1100], at12[1100];
    snprintf(views, sizeof views, "%s/views", data);
    snprintf(at12, sizeof at12, "%s/views12", data);
    run_out r =
        run_tally((const char *[]){"audit", "replay", "--data", data, "--out", views, NULL});
    ck_assert_msg(r.rc == 0, "replay: %s", r.err);
    run_free(&r);
    r = run_tally((const char *[]){"rebate", "p1", "--views", views, NULL});
    expect_words(&r, (const char *[]){"Basis", "Baseline", "Referral fees", NULL}, "rebate");
    ck_assert_msg(line_has(r.out, "2025-Q1", "30,541.15  growth over baseline 0.00") &&
                      line_has(r.out, "2025-Q1", "21.65") &&
                      line_has(r.out, "2025-Q2", "34,729.42  growth over baseline 15,270.58") &&
                      line_has(r.out, "2025-Q4", "0.00%") && line_has(r.out, "Payable", "627.06"),
                  "rebate: %s", r.out);
    run_free(&r);
    r = run_tally((const char *[]){"tier", "p1", "--views", views, NULL});
    expect_words(&r, (const char *[]){"Base", NULL}, "tier");
    ck_assert_msg(line_has(r.out, "Benefits", "partner portal") &&
                      line_has(r.out, "Next benefits", "NFR units, a partner account manager") &&
                      strstr(r.out, "Grace") == NULL,
                  "tier: %s", r.out);
    run_free(&r);
    /* after the close of 2025-Q3: Gold kept by grace */
    r = run_tally(
        (const char *[]){"audit", "replay", "--data", data, "--out", at12, "--to", "12", NULL});
    ck_assert_msg(r.rc == 0, "replay --to 12: %s", r.err);
    run_free(&r);
    r = run_tally((const char *[]){"tier", "p1", "--views", at12, NULL});
    ck_assert_msg(r.rc == 0 &&
                      line_has(r.out, "Grace", "kept Gold by grace: 1 more failing close") &&
                      line_has(r.out, "Benefits", "NFR units, a partner account manager") &&
                      line_has(r.out, "Next tier", "none (top tier)"),
                  "tier at 12: %s", r.out);
    run_free(&r);
    r = run_tally((const char *[]){"exceptions", "--views", views, "--kind", "early_close", NULL});
    expect_words(&r, (const char *[]){"early_close", "1 exception\n", NULL}, "exceptions");
    run_free(&r);
}

START_TEST(cli_v2_words)
{
    stream st = {0};
    v2_stream(&st);
    char *data = tu_tmpdir();
    write_log(data, &st);
    check_v2_explain(data);
    check_v2_tables(data);
    tu_rmtree(data);
    stream_free(&st);
}
END_TEST

static Suite *explain_suite(void)
{
    Suite *s = suite_create("explain");
    TCase *tc = tu_tcase(s, "sums", 600);
    tcase_add_loop_test(tc, every_partner_sums, 0, 3);
    tcase_add_test(tc, trace_changes_nothing);
    tc = tu_tcase(s, "scenario", 0);
    tu_add_tests(tc, TU_TESTS(scenario_line_by_line, scenario_report, held_events_keep_their_ids,
                              capped_clawback_marked, v2_report, v2_grace_runs_out));
    tc = tu_tcase(s, "cli", 300);
    tu_add_tests(tc, TU_TESTS(cli_scenario, cli_vectors, cli_v2_words));
    return s;
}

int main(void)
{
    const char *seed = getenv("TALLY_SEED");
    if (seed != NULL && *seed != '\0')
        g_seed = strtoull(seed, NULL, 10);
    printf("seed %" PRIu64 " (set TALLY_SEED to repeat another)\n", g_seed);
    return tu_run_suite(explain_suite());
}
