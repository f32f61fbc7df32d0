/*
 * query_finance.c — the finance outputs of SPEC section 11 over every
 * shard: partners, report, expiring, journal. Each reads what the
 * consumers keep for it (consumers/engine/engine_store.c): the partner
 * list's rows rendered from the partners' records "S/4/" by the shard's
 * reader (tly__qscan_partners), the program's report sums per shard "V/R/<program>",
 * the funds the next close expires "E/<program key><partner>" and the
 * journals of closed periods "J/<program key><period><first partner>"
 * (chunks of partners' figures, tly_engine_journal_each), where a program
 * key is
 * u8 length ‖ name. A report sums one document per shard and a closed
 * period's journal reads only the partners active in it; an open period's
 * journal reads each partner's record (tly_engine_open_journal), the one
 * place its figures are kept until the close writes the period's rows
 * (writing them at every commit cost the fold more than the 10 % that
 * issue 11 allows).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "query_internal.h"
#include "tly_be.h"
#include "tly_engine.h"
#include "tly_limits.h"
#include "tly_period.h"

/* ---- helpers ---- */

/* The program key prefix (u8 length ‖ name) after a two-byte prefix. */
static size_t program_prefix(char *buf, const char *pfx, const char *program)
{
    size_t len = strlen(program);
    memcpy(buf, pfx, 2);
    buf[2] = (char)(unsigned char)len;
    memcpy(buf + 3, program, len);
    return 3 + len;
}

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* strcmp of two const char * elements (qsort). */
static int strcmp_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends a new reference to arr; false when out of memory. */
static bool push(json_t *arr, json_t *v)
{
    return v != NULL && json_array_append_new(arr, v) == 0;
}

/* ---- partners ---- */

typedef struct partner_filter {
    const char *program, *tier, *kind, *search;
    json_t *out;
    uint32_t kept; /* rows kept from the shard being scanned */
} partner_filter;

/* ASCII case-insensitive substring [PA1]. */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

static bool str_is(const json_t *o, const char *k, const char *want)
{
    const char *v = json_string_value(json_object_get(o, k));
    return want == NULL || (v != NULL && strcmp(v, want) == 0);
}

static tly_err partner_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key;
    (void)klen;
    partner_filter *f = ctx;
    json_t *row = json_loadb(val, vlen, 0, NULL);
    if (row == NULL)
        return TLY_CORRUPT;
    const char *id = json_string_value(json_object_get(row, "partner"));
    const char *name = json_string_value(json_object_get(row, "name"));
    bool keep = str_is(row, "program", f->program) && str_is(row, "tier", f->tier) &&
                str_is(row, "kind", f->kind) &&
                (f->search == NULL || (id && contains_ci(id, f->search)) ||
                 (name && contains_ci(name, f->search)));
    if (keep) {
        f->kept++;
        return push(f->out, row) ? TLY_OK : TLY_NOMEM;
    }
    json_decref(row);
    return TLY_OK;
}

static int by_partner(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "partner"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "partner"));
    return strcmp(x ? x : "", y ? y : "");
}

/* The array's elements sorted with cmp (a new array). */
static json_t *sorted(json_t *arr, int (*cmp)(const void *, const void *))
{
    size_t n = json_array_size(arr);
    json_t **v = malloc((n ? n : 1) * sizeof *v);
    json_t *out = v ? json_array() : NULL;
    for (size_t i = 0; out && i < n; i++)
        v[i] = json_array_get(arr, i);
    if (out && n)
        qsort(v, n, sizeof *v, cmp);
    for (size_t i = 0; out && i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    return out;
}

/* The page size of a partners request: "max" (1..TLY_QUERY_PARTNERS_PAGE_MAX,
 * the default); *bad when it is out of range. */
static uint32_t page_max(const json_t *req, json_t **bad)
{
    json_t *v = json_object_get(req, "max");
    if (v == NULL || json_is_null(v))
        return TLY_QUERY_PARTNERS_PAGE_MAX;
    json_int_t n = json_integer_value(v);
    if (!json_is_integer(v) || n < 1 || n > (json_int_t)TLY_QUERY_PARTNERS_PAGE_MAX) {
        json_decref(*bad); /* an earlier field's refusal: the last is answered */
        *bad =
            tly__qerr(TLY_BAD_FIELD, "max", "'max' must be 1 to %u", TLY_QUERY_PARTNERS_PAGE_MAX);
        return 0;
    }
    return (uint32_t)n;
}

uint32_t tly__qpage_max(const json_t *req, json_t **bad)
{
    return page_max(req, bad);
}

/* The first max rows of list (sorted) into out's "partners", and "next"
 * (the last id given) when more follow. */
static bool partners_page(json_t *out, json_t *list, uint32_t max)
{
    if (json_array_size(list) <= max)
        return json_object_set(out, "partners", list) == 0;
    json_t *page = json_array();
    for (uint32_t i = 0; page && i < max; i++)
        json_array_append(page, json_array_get(list, i));
    json_t *last = json_object_get(json_array_get(list, max - 1), "partner");
    return page && json_object_set_new(out, "partners", page) == 0 &&
           json_object_set(out, "next", last) == 0;
}

/* The partners by id, a page at a time: each shard gives at most a page
 * after the cursor ("after"), so the page is among what they give. */
json_t *tly__answer_partners(const tly__qsnaps *ss, const json_t *req)
{
    json_t *bad = NULL;
    partner_filter f = {.program = tly__qopt_str(req, "program", &bad),
                        .tier = tly__qopt_str(req, "tier", &bad),
                        .kind = tly__qopt_str(req, "kind", &bad),
                        .search = tly__qopt_str(req, "search", &bad),
                        .out = json_array()};
    const char *after = tly__qopt_str(req, "after", &bad);
    uint32_t max = page_max(req, &bad);
    if (bad || f.out == NULL) {
        json_decref(f.out);
        return bad;
    }
    /* one more than a page from each shard: whether another page follows */
    tly__pfilter pf;
    tly__pfilter_init(&pf, f.program, f.tier, f.kind, f.search);
    tly_err err = tly__qscan_partners(ss, &pf, after, &f.kept, max + 1, partner_visit, &f);
    json_t *out = err == TLY_OK ? tly__qreply(ss) : NULL;
    json_t *list = out ? sorted(f.out, by_partner) : NULL;
    json_decref(f.out);
    if (err != TLY_OK)
        return tly__qerr(err, NULL, "cannot list partners: %s", tly_strerror(err));
    bool ok = list != NULL && partners_page(out, list, max);
    json_decref(list);
    if (!ok) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* ---- report ---- */

/* What took effect in a period, in section 11's order (the stored rows
 * carry the same names). */
static const char *const ACT_KEYS[] = {
    "revenue",      "mdf_accrued", "mdf_clawed_back", "mdf_adjusted", "mdf_expired",
    "mdf_approved", "mdf_paid",    "rebate",          "referral",     "rebate_paid"};
#define ACT_KEY_COUNT (sizeof ACT_KEYS / sizeof ACT_KEYS[0])

/* A program's report summed over the shards, periods first..last. */
typedef struct report_sum {
    const char *program;
    json_t *currency;
    tly_period_kind kind;
    int32_t first, open;
    bool seen;
    int64_t (*sums)[ACT_KEY_COUNT]; /* TLY_PERIODS_REPORT_MAX periods from first */
    int32_t last; /* the latest period with a non-zero figure, first - 1 if none */
    bool beyond;  /* a row TLY_PERIODS_REPORT_MAX or more periods after first */
} report_sum;

/* Parses the period text of key k in o. */
static bool period_of(const json_t *o, const char *k, tly_period_kind *kind, int32_t *p)
{
    const char *t = json_string_value(json_object_get(o, k));
    return t != NULL && tly_period_parse(t, strlen(t), kind, p) == TLY_OK;
}

/* Adds one shard's "V/R/<program>" document. */
static tly_err report_add(report_sum *r, const json_t *doc)
{
    tly_period_kind k1, k2;
    int32_t first, open;
    if (!period_of(doc, "first", &k1, &first) || !period_of(doc, "open", &k2, &open) || k1 != k2)
        return TLY_CORRUPT;
    if (!r->seen) {
        *r = (report_sum){.program = r->program,
                          .sums = r->sums,
                          .kind = k1,
                          .first = first,
                          .open = open,
                          .seen = true,
                          .last = first - 1,
                          .currency = json_incref(json_object_get(doc, "currency"))};
    }
    if (k1 != r->kind || first != r->first)
        return TLY_CORRUPT;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, "periods"), i, row)
    {
        tly_period_kind k;
        int32_t p;
        if (!period_of(row, "period", &k, &p) || k != r->kind || p < r->first)
            return TLY_CORRUPT;
        if (p - r->first >= (int32_t)TLY_PERIODS_REPORT_MAX) {
            r->beyond = true;
            return TLY_CORRUPT;
        }
        for (size_t f = 0; f < ACT_KEY_COUNT; f++) {
            int64_t *cell = &r->sums[p - r->first][f];
            if (__builtin_add_overflow(*cell, iget(row, ACT_KEYS[f]), cell))
                return TLY_OVERFLOW;
        }
    }
    return TLY_OK;
}

/* The report's periods: first to the latest with a non-zero figure [RP4]. */
static json_t *report_periods(report_sum *r)
{
    for (int32_t i = 0; i < (int32_t)TLY_PERIODS_REPORT_MAX; i++)
        for (size_t f = 0; f < ACT_KEY_COUNT; f++)
            if (r->sums[i][f] != 0)
                r->last = r->first + i;
    json_t *arr = json_array();
    for (int32_t p = r->first; arr && p <= r->last; p++) {
        json_t *o = json_object();
        char text[TLY_PERIOD_TEXT_BYTES];
        tly_period_format(r->kind, p, text);
        json_object_set_new(o, "period", json_string(text));
        json_object_set_new(o, "status", json_string(p < r->open ? "closed" : "open"));
        for (size_t f = 0; f < ACT_KEY_COUNT; f++)
            json_object_set_new(o, ACT_KEYS[f], json_integer(r->sums[p - r->first][f]));
        if (!push(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static tly_err report_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    report_sum *r = ctx;
    if (klen != 4 + strlen(r->program)) /* another program sharing the prefix */
        return TLY_OK;
    (void)key;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    tly_err err = doc ? report_add(r, doc) : TLY_CORRUPT;
    json_decref(doc);
    return err;
}

/* The reply of a summed report. */
static json_t *report_reply(const tly__qsnaps *ss, report_sum *r)
{
    json_t *out = tly__qreply(ss), *periods = report_periods(r);
    if (out == NULL || periods == NULL) {
        json_decref(out);
        json_decref(periods);
        return NULL;
    }
    json_object_set_new(out, "program", json_string(r->program));
    json_object_set(out, "currency", r->currency);
    json_object_set_new(out, "periods", periods);
    return out;
}

json_t *tly__answer_report(const tly__qsnaps *ss, const json_t *req)
{
    json_t *bad = NULL;
    report_sum r = {.program = tly__qopt_str(req, "program", &bad)};
    if (bad)
        return bad;
    if (r.program == NULL)
        return tly__qerr(TLY_MISSING_FIELD, "program", "'program' is required");
    r.sums = calloc(TLY_PERIODS_REPORT_MAX, sizeof *r.sums);
    if (r.sums == NULL)
        return NULL;
    char prefix[4 + TLY_NAME_BYTES_MAX];
    memcpy(prefix, "V/R/", 4);
    memcpy(prefix + 4, r.program, strlen(r.program));
    tly_err err = tly__qscan(ss, prefix, 4 + strlen(r.program), report_visit, &r);
    json_t *out;
    if (r.beyond)
        out = tly__qerr(err, NULL,
                        "cannot sum the report: a period %u or more periods after the "
                        "program's first (a corrupt store)",
                        TLY_PERIODS_REPORT_MAX);
    else if (err != TLY_OK)
        out = tly__qerr(err, NULL, "cannot sum the report: %s", tly_strerror(err));
    else if (!r.seen)
        out = tly__qerr(TLY_NOT_FOUND, "program", "unknown program '%s'", r.program);
    else
        out = report_reply(ss, &r);
    json_decref(r.currency);
    free(r.sums);
    return out;
}

/* ---- expiring ---- */

/* Every program's funds the next close expires, as the scan finds them. */
typedef struct expiring {
    const char *only; /* --program, or NULL */
    json_t *programs; /* name -> {"program","period","total","partners"} */
    tly_err err;
} expiring;

/* A program's entry, from its report document (its earliest open period). */
static tly_err expiring_program(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen)
{
    expiring *x = ctx;
    char name[TLY_NAME_BYTES_MAX + 1];
    if (klen - 4 > TLY_NAME_BYTES_MAX)
        return TLY_CORRUPT;
    memcpy(name, (const char *)key + 4, klen - 4);
    name[klen - 4] = '\0';
    if ((x->only && strcmp(x->only, name) != 0) || json_object_get(x->programs, name))
        return TLY_OK;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    json_t *open = doc ? json_object_get(doc, "open") : NULL;
    if (!json_is_string(open)) {
        json_decref(doc);
        return TLY_CORRUPT;
    }
    json_t *o = json_pack("{s:s, s:O, s:I, s:[]}", "program", name, "period", open, "total",
                          (json_int_t)0, "partners");
    json_decref(doc);
    return o && json_object_set_new(x->programs, name, o) == 0 ? TLY_OK : TLY_NOMEM;
}

/* One partner's amount under "E/<program key><partner>". */
static tly_err expiring_partner(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen)
{
    expiring *x = ctx;
    const unsigned char *k = key;
    size_t plen = k[2];
    if (klen < 3 + plen)
        return TLY_CORRUPT;
    char name[TLY_NAME_BYTES_MAX + 1];
    memcpy(name, k + 3, plen);
    name[plen] = '\0';
    json_t *prog = json_object_get(x->programs, name);
    if (prog == NULL) /* filtered out, or a program without a report yet */
        return TLY_OK;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    if (doc == NULL)
        return TLY_CORRUPT;
    int64_t amount = iget(doc, "amount"), total = iget(prog, "total");
    tly_err err = TLY_OK;
    if (amount != 0) {
        if (__builtin_add_overflow(total, amount, &total))
            err = TLY_OVERFLOW;
        json_object_set_new(prog, "total", json_integer(total));
        json_t *row = json_pack("{s:O, s:I}", "partner", json_object_get(doc, "partner"), "amount",
                                (json_int_t)amount);
        if (err == TLY_OK && !push(json_object_get(prog, "partners"), row))
            err = TLY_NOMEM;
    }
    json_decref(doc);
    return err;
}

/* Largest first, ties by partner id [EX1]. */
static int by_amount(const void *a, const void *b)
{
    int64_t x = iget(*(json_t *const *)a, "amount"), y = iget(*(json_t *const *)b, "amount");
    if (x != y)
        return x > y ? -1 : 1;
    return by_partner(a, b);
}

/* The programs by name, each with its partners sorted. */
static json_t *expiring_list(json_t *programs)
{
    json_t *names = json_array(), *out = json_array();
    const char *name;
    json_t *o;
    json_object_foreach(programs, name, o)
    {
        json_array_append_new(names, json_string(name));
    }
    json_t *ordered = NULL;
    if (names && out) {
        size_t n = json_array_size(names);
        const char **v = calloc(n ? n : 1, sizeof *v);
        for (size_t i = 0; v && i < n; i++)
            v[i] = json_string_value(json_array_get(names, i));
        if (v && n)
            qsort(v, n, sizeof *v, strcmp_ptr);
        for (size_t i = 0; v && i < n; i++) {
            json_t *prog = json_object_get(programs, v[i]);
            json_t *parts = sorted(json_object_get(prog, "partners"), by_amount);
            json_object_set_new(prog, "partners", parts);
            json_array_append(out, prog);
        }
        ordered = v ? out : NULL;
        free(v);
    }
    json_decref(names);
    if (ordered == NULL)
        json_decref(out);
    return ordered;
}

json_t *tly__answer_expiring(const tly__qsnaps *ss, const json_t *req)
{
    json_t *bad = NULL;
    expiring x = {.only = tly__qopt_str(req, "program", &bad), .programs = json_object()};
    if (bad || x.programs == NULL) {
        json_decref(x.programs);
        return bad;
    }
    tly_err err = tly__qscan(ss, "V/R/", 4, expiring_program, &x);
    if (err == TLY_OK)
        err = tly__qscan(ss, "E/", 2, expiring_partner, &x);
    json_t *out = NULL;
    if (err != TLY_OK)
        out = tly__qerr(err, NULL, "cannot list expiring funds: %s", tly_strerror(err));
    else if (x.only && json_object_size(x.programs) == 0)
        out = tly__qerr(TLY_NOT_FOUND, "program", "unknown program '%s'", x.only);
    else if ((out = tly__qreply(ss)) != NULL)
        json_object_set_new(out, "programs", expiring_list(x.programs));
    json_decref(x.programs);
    return out;
}

/* ---- journal ---- */

/* The entry kinds of section 11 in their order [JN3]: the stored row's
 * fields that make the amount (the first added, the second subtracted, the
 * third added), and the accounts of a positive amount [JN1]. */
static const struct {
    const char *kind, *plus, *minus, *plus2, *debit, *credit;
} JOURNAL_KINDS[] = {
    {"mdf_accrual", "mdf_accrued", "mdf_clawed_back", "mdf_adjusted", "contra_revenue_mdf",
     "mdf_liability"},
    {"mdf_expiry", "mdf_expired", NULL, NULL, "mdf_liability", "contra_revenue_mdf"},
    {"mdf_payment", "mdf_paid", NULL, NULL, "mdf_liability", "cash"},
    {"rebate_accrual", "rebate", NULL, NULL, "contra_revenue_rebate", "rebate_liability"},
    {"referral_accrual", "referral", NULL, NULL, "referral_expense", "rebate_liability"},
    {"rebate_payment", "rebate_paid", NULL, NULL, "rebate_liability", "cash"},
};
#define JOURNAL_KIND_COUNT (sizeof JOURNAL_KINDS / sizeof JOURNAL_KINDS[0])

/* A journal row as the object {"partner", figure names...}, pushed. */
static tly_err journal_push(void *rows, const char *partner, size_t len,
                            const int64_t v[TLY_ENGINE_ACT_FIELDS])
{
    json_t *row = json_object();
    bool ok = row != NULL && json_object_set_new(row, "partner", json_stringn(partner, len)) == 0;
    for (unsigned f = 0; ok && f < TLY_ENGINE_ACT_FIELDS; f++)
        ok = json_object_set_new(row, tly_engine_act_name(f), json_integer(v[f])) == 0;
    if (!ok) {
        json_decref(row);
        return TLY_NOMEM;
    }
    return push(rows, row) ? TLY_OK : TLY_NOMEM;
}

/* An open period's figures of one partner record (TLY_ENGINE_PARTNER_PREFIX),
 * when it is a member of the program with something in the period. */
typedef struct open_scan {
    json_t *rows;
    const char *program;
    int32_t period;
} open_scan;

static tly_err open_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key;
    (void)klen;
    const open_scan *o = ctx;
    const char *id;
    size_t len;
    int64_t v[TLY_ENGINE_ACT_FIELDS];
    tly_err err =
        tly_engine_open_journal(val, vlen, o->program, strlen(o->program), o->period, &id, &len, v);
    if (err == TLY_NOT_FOUND)
        return TLY_OK;
    return err == TLY_OK ? journal_push(o->rows, id, len, v) : err;
}

/* One stored journal chunk of a closed period ("J/<program key><period>
 * <first partner>", MessagePack), each partner's figures pushed as the
 * object {"partner", figure names...}. */
static tly_err journal_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    const unsigned char *k = key;
    size_t at = klen >= 3 ? 3 + (size_t)k[2] + 4 : SIZE_MAX; /* the first partner's id */
    if (at >= klen || klen - at > TLY_NAME_BYTES_MAX)
        return TLY_CORRUPT;
    return tly_engine_journal_each(val, vlen, journal_push, ctx);
}

/* The amount of kind k in row; TLY_OVERFLOW when it leaves int64. */
static tly_err journal_amount(const json_t *row, size_t k, int64_t *out)
{
    int64_t a = iget(row, JOURNAL_KINDS[k].plus);
    if (JOURNAL_KINDS[k].minus && __builtin_sub_overflow(a, iget(row, JOURNAL_KINDS[k].minus), &a))
        return TLY_OVERFLOW;
    if (JOURNAL_KINDS[k].plus2 && __builtin_add_overflow(a, iget(row, JOURNAL_KINDS[k].plus2), &a))
        return TLY_OVERFLOW;
    *out = a;
    return TLY_OK;
}

/* One partner's entries, nonzero ones in kind order; a negative amount is
 * shown positive with debit and credit swapped [JN1]. */
static tly_err journal_entries(const json_t *row, json_t *entries)
{
    for (size_t k = 0; k < JOURNAL_KIND_COUNT; k++) {
        int64_t a;
        if (journal_amount(row, k, &a) != TLY_OK || a == INT64_MIN)
            return TLY_OVERFLOW;
        if (a == 0)
            continue;
        bool neg = a < 0;
        json_t *e = json_pack("{s:O, s:s, s:s, s:s, s:I}", "partner",
                              json_object_get(row, "partner"), "kind", JOURNAL_KINDS[k].kind,
                              "debit", neg ? JOURNAL_KINDS[k].credit : JOURNAL_KINDS[k].debit,
                              "credit", neg ? JOURNAL_KINDS[k].debit : JOURNAL_KINDS[k].credit,
                              "amount", (json_int_t)(neg ? -a : a));
        if (!push(entries, e))
            return TLY_NOMEM;
    }
    return TLY_OK;
}

/* The report document of one program (its key's length) in any shard. */
typedef struct program_doc {
    size_t klen;
    json_t *doc;
} program_doc;

/* The program's report document: its currency and period kind. */
static tly_err journal_program(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen)
{
    (void)key;
    program_doc *d = ctx;
    if (d->doc != NULL || klen != d->klen) /* another program sharing the prefix */
        return TLY_OK;
    d->doc = json_loadb(val, vlen, 0, NULL);
    return d->doc ? TLY_OK : TLY_CORRUPT;
}

/* Checks the request; *period its period, *open the program's earliest
 * open period, *cur the currency. */
static json_t *journal_check(const tly__qsnaps *ss, const json_t *req, const char **program,
                             int32_t *period, int32_t *open, json_t **cur)
{
    json_t *bad = NULL;
    *program = tly__qopt_str(req, "program", &bad);
    const char *ptext = tly__qopt_str(req, "period", &bad);
    if (bad)
        return bad;
    if (*program == NULL || ptext == NULL)
        return tly__qerr(TLY_MISSING_FIELD, *program ? "period" : "program",
                         "'program' and 'period' are required");
    char prefix[4 + TLY_NAME_BYTES_MAX];
    size_t len = strlen(*program);
    memcpy(prefix, "V/R/", 4);
    memcpy(prefix + 4, *program, len);
    program_doc d = {4 + len, NULL};
    tly_err err = tly__qscan(ss, prefix, 4 + len, journal_program, &d);
    json_t *doc = d.doc;
    /* gk: the quarter's form is named when the program's open period is unreadable */
    tly_period_kind pk, gk = TLY_PERIOD_QUARTER;
    if (err != TLY_OK || doc == NULL) {
        json_decref(doc);
        return err != TLY_OK
                   ? tly__qerr(err, NULL, "cannot read: %s", tly_strerror(err))
                   : tly__qerr(TLY_NOT_FOUND, "program", "unknown program '%s'", *program);
    }
    bool known = period_of(doc, "open", &gk, open);
    bool parsed = tly_period_parse(ptext, strlen(ptext), &pk, period) == TLY_OK;
    bool ok = known && parsed && pk == gk;
    *cur = json_incref(json_object_get(doc, "currency"));
    json_decref(doc);
    if (!parsed) /* not the kind's form, or a year out of range: say which forms */
        return tly__qerr(TLY_BAD_FIELD, "period",
                         "'%s' is not a period: a quarter (2026-Q3) or a month (2026-07) of "
                         "the years %d to %d",
                         ptext, TLY_YEAR_MIN, TLY_YEAR_MAX);
    if (!ok) /* [JN4] */
        return tly__qerr(TLY_BAD_FIELD, "period", "'%s' is not a %s of program %s", ptext,
                         gk == TLY_PERIOD_MONTH ? "month (2026-07)" : "quarter (2026-Q3)",
                         *program);
    return NULL;
}

json_t *tly__answer_journal(const tly__qsnaps *ss, const json_t *req)
{
    const char *program;
    int32_t period, open;
    json_t *cur = NULL, *bad = journal_check(ss, req, &program, &period, &open, &cur);
    if (bad) {
        json_decref(cur);
        return bad;
    }
    char prefix[2 + 1 + TLY_NAME_BYTES_MAX + 4];
    size_t plen = program_prefix(prefix, "J/", program);
    tly_be32_put(prefix + plen, (uint32_t)period ^ UINT32_C(0x80000000));
    plen += 4;
    json_t *rows = json_array(), *entries = json_array(), *list = NULL;
    open_scan o = {rows, program, period};
    tly_err err = rows == NULL || entries == NULL ? TLY_NOMEM
                  : period < open ? tly__qscan(ss, prefix, plen, journal_visit, rows)
                                  : tly__qscan(ss, TLY_ENGINE_PARTNER_PREFIX,
                                               strlen(TLY_ENGINE_PARTNER_PREFIX), open_visit, &o);
    if (err == TLY_OK && (list = sorted(rows, by_partner)) == NULL)
        err = TLY_NOMEM;
    for (size_t i = 0; err == TLY_OK && i < json_array_size(list); i++)
        err = journal_entries(json_array_get(list, i), entries);
    json_t *out = err == TLY_OK ? tly__qreply(ss) : NULL;
    if (out) {
        json_object_set_new(out, "program", json_string(program));
        json_object_set_new(out, "period",
                            json_string(json_string_value(json_object_get(req, "period"))));
        json_object_set(out, "currency", cur);
        json_object_set(out, "entries", entries);
    } else if (err != TLY_OK) {
        out = tly__qerr(err, NULL, "cannot build the journal: %s", tly_strerror(err));
    }
    json_decref(rows);
    json_decref(list);
    json_decref(entries);
    json_decref(cur);
    return out;
}

/* ---- the nearest partner ids of an unknown one ---- */

/* Edit distance of a and b (each at most TLY_NAME_BYTES_MAX bytes). */
static uint32_t edit_distance(const char *a, size_t al, const char *b, size_t bl)
{
    uint32_t row[TLY_NAME_BYTES_MAX + 1];
    for (size_t j = 0; j <= bl; j++)
        row[j] = (uint32_t)j;
    for (size_t i = 1; i <= al; i++) {
        uint32_t diag = row[0];
        row[0] = (uint32_t)i;
        for (size_t j = 1; j <= bl; j++) {
            uint32_t up = row[j];
            uint32_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bl];
}

typedef struct nearest {
    const char *want;
    size_t want_len;
    uint32_t limit; /* suggest only ids this close */
    char ids[TLY_QUERY_SUGGESTIONS_MAX][TLY_NAME_BYTES_MAX + 1];
    uint32_t dist[TLY_QUERY_SUGGESTIONS_MAX];
    uint32_t count;
} nearest;

/* A partner record: its id, when the partner list shows it, is a
 * suggestion as close as it is to the one wanted. */
static tly_err nearest_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    nearest *n = ctx;
    bool member;
    tly_err err = tly_engine_partner_member(val, vlen, &member);
    if (err != TLY_OK || !member)
        return err;
    const char *id = (const char *)key + strlen(TLY_ENGINE_PARTNER_PREFIX);
    size_t len = klen - strlen(TLY_ENGINE_PARTNER_PREFIX);
    if (len > TLY_NAME_BYTES_MAX)
        return TLY_CORRUPT;
    uint32_t d = edit_distance(n->want, n->want_len, id, len);
    if (d > n->limit)
        return TLY_OK;
    /* insertion into the few best, by distance then id */
    uint32_t at = n->count;
    while (at > 0 &&
           (n->dist[at - 1] > d || (n->dist[at - 1] == d && strncmp(n->ids[at - 1], id, len) > 0)))
        at--;
    if (at >= TLY_QUERY_SUGGESTIONS_MAX)
        return TLY_OK;
    uint32_t last = n->count < TLY_QUERY_SUGGESTIONS_MAX ? n->count : TLY_QUERY_SUGGESTIONS_MAX - 1;
    memmove(n->ids[at + 1], n->ids[at], (last - at) * sizeof n->ids[0]);
    memmove(&n->dist[at + 1], &n->dist[at], (last - at) * sizeof n->dist[0]);
    memcpy(n->ids[at], id, len);
    n->ids[at][len] = '\0';
    n->dist[at] = d;
    if (n->count < TLY_QUERY_SUGGESTIONS_MAX)
        n->count++;
    return TLY_OK;
}

json_t *tly__suggest_partners(const tly__qsnaps *ss, const char *partner)
{
    nearest *n = calloc(1, sizeof *n);
    json_t *out = json_array();
    if (n == NULL || out == NULL) {
        free(n);
        json_decref(out);
        return NULL;
    }
    n->want = partner;
    n->want_len = strlen(partner);
    n->limit = n->want_len / 3 > 2 ? (uint32_t)(n->want_len / 3) : 2;
    if (tly__qscan(ss, TLY_ENGINE_PARTNER_PREFIX, strlen(TLY_ENGINE_PARTNER_PREFIX), nearest_visit,
                   n) == TLY_OK)
        for (uint32_t i = 0; i < n->count; i++)
            json_array_append_new(out, json_string(n->ids[i]));
    free(n);
    return out;
}
