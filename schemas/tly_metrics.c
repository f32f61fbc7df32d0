/* tly_metrics.c — the metrics registry and its text format; see tly_metrics.h. */
#include "tly_metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_assert.h"
#include "tly_limits.h"

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind;

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

typedef struct family {
    char name[TLY_METRICS_NAME_BYTES_MAX];
    char help[TLY_METRICS_HELP_BYTES_MAX];
    char label[TLY_METRICS_NAME_BYTES_MAX]; /* "" for none */
    kind kind;
} family;

struct tly_metric {
    uint32_t family;
    char value[TLY_METRICS_LABEL_BYTES_MAX]; /* the label's value */
    _Atomic uint64_t count;                  /* counter; histogram: observations */
    _Atomic int64_t gauge;
    _Atomic uint64_t sum; /* histogram: sum of observations, in units */
    _Atomic uint64_t buckets[TLY_METRICS_BUCKETS_MAX + 1]; /* per bucket, +Inf last */
    tly_metric_buckets bounds;
};

/* Families and series are published by their counts (release): a reader
 * that loads a count (acquire) sees every entry below it whole. */
struct tly_metrics {
    family families[TLY_METRICS_FAMILIES_MAX];
    tly_metric series[TLY_METRICS_SERIES_MAX];
    _Atomic uint32_t family_count;
    _Atomic uint32_t series_count;
    atomic_flag lock; /* registration only */
};

static const uint64_t seconds_ns[] = {
    100000u,     250000u,     500000u,     1000000u,     2500000u,   5000000u,
    10000000u,   25000000u,   50000000u,   100000000u,   250000000u, 500000000u,
    1000000000u, 2500000000u, 5000000000u, 10000000000u,
};
const tly_metric_buckets tly_metrics_seconds = {
    seconds_ns, sizeof seconds_ns / sizeof seconds_ns[0], 1000000000u};

static const uint64_t sizes[] = {1u,   2u,    4u,    8u,    16u,   32u,    64u,    128u,  256u,
                                 512u, 1024u, 2048u, 4096u, 8192u, 16384u, 32768u, 65536u};
const tly_metric_buckets tly_metrics_sizes = {sizes, sizeof sizes / sizeof sizes[0], 1u};

_Static_assert(sizeof seconds_ns / sizeof seconds_ns[0] <= TLY_METRICS_BUCKETS_MAX,
               "latency buckets fit");
_Static_assert(sizeof sizes / sizeof sizes[0] <= TLY_METRICS_BUCKETS_MAX, "size buckets fit");

tly_err tly_metrics_new(tly_metrics **out)
{
    tly_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return TLY_NOMEM;
    atomic_init(&m->family_count, 0);
    atomic_init(&m->series_count, 0);
    atomic_flag_clear(&m->lock);
    *out = m;
    return TLY_OK;
}

void tly_metrics_free(tly_metrics *m)
{
    free(m);
}

/* A Prometheus metric or label name that fits the registry's buffers. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= TLY_METRICS_NAME_BYTES_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* The family named name, registered with k and label when new. Under the
 * lock. */
static uint32_t family_of(tly_metrics *m, const char *name, const char *help, const char *label,
                          kind k)
{
    uint32_t n = atomic_load_explicit(&m->family_count, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        family *f = &m->families[i];
        if (strcmp(f->name, name) == 0) {
            TLY_ASSERT(f->kind == k && strcmp(f->label, label ? label : "") == 0);
            return i;
        }
    }
    TLY_ASSERT(n < TLY_METRICS_FAMILIES_MAX);
    TLY_ASSERT(valid_name(name) && (!label || valid_name(label)));
    TLY_ASSERT(strlen(help) < TLY_METRICS_HELP_BYTES_MAX);
    family *f = &m->families[n];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->help, sizeof f->help, "%s", help);
    snprintf(f->label, sizeof f->label, "%s", label ? label : "");
    f->kind = k;
    atomic_store_explicit(&m->family_count, n + 1, memory_order_release);
    return n;
}

static tly_metric *add_series(tly_metrics *m, const char *name, const char *help, const char *label,
                              const char *value, kind k, const tly_metric_buckets *b)
{
    if (!m)
        return NULL;
    TLY_ASSERT(!label == !value);
    TLY_ASSERT(!value || strlen(value) < TLY_METRICS_LABEL_BYTES_MAX);
    TLY_ASSERT(k != KIND_HISTOGRAM || (b && b->count <= TLY_METRICS_BUCKETS_MAX && b->scale > 0));
    while (atomic_flag_test_and_set_explicit(&m->lock, memory_order_acquire))
        ;
    uint32_t f = family_of(m, name, help, label, k);
    uint32_t n = atomic_load_explicit(&m->series_count, memory_order_relaxed);
    tly_metric *s = NULL;
    for (uint32_t i = 0; i < n && !s; i++)
        if (m->series[i].family == f && strcmp(m->series[i].value, value ? value : "") == 0)
            s = &m->series[i];
    if (!s) {
        TLY_ASSERT(n < TLY_METRICS_SERIES_MAX);
        s = &m->series[n];
        s->family = f;
        snprintf(s->value, sizeof s->value, "%s", value ? value : "");
        if (b)
            s->bounds = *b;
        atomic_store_explicit(&m->series_count, n + 1, memory_order_release);
    }
    atomic_flag_clear_explicit(&m->lock, memory_order_release);
    return s;
}

tly_metric *tly_metrics_counter(tly_metrics *m, const char *name, const char *help,
                                const char *label, const char *value)
{
    return add_series(m, name, help, label, value, KIND_COUNTER, NULL);
}

tly_metric *tly_metrics_gauge(tly_metrics *m, const char *name, const char *help, const char *label,
                              const char *value)
{
    return add_series(m, name, help, label, value, KIND_GAUGE, NULL);
}

tly_metric *tly_metrics_histogram(tly_metrics *m, const char *name, const char *help,
                                  const char *label, const char *value,
                                  const tly_metric_buckets *buckets)
{
    return add_series(m, name, help, label, value, KIND_HISTOGRAM, buckets);
}

void tly_metric_add(tly_metric *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->count, n, memory_order_relaxed);
}

void tly_metric_set(tly_metric *g, int64_t v)
{
    if (g)
        atomic_store_explicit(&g->gauge, v, memory_order_relaxed);
}

int64_t tly_metric_get(const tly_metric *g)
{
    return g ? atomic_load_explicit(&g->gauge, memory_order_relaxed) : 0;
}

void tly_metric_observe(tly_metric *h, uint64_t v)
{
    if (!h)
        return;
    uint32_t i = 0;
    while (i < h->bounds.count && v > h->bounds.bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

/* ---- the text format ---- */

/* Writes s with the escapes of a HELP text (label false: \\ and \n) or a
 * label value (label true: also \"). */
static void put_escaped(FILE *out, const char *s, bool label)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else if (*s == '"' && label)
            fputs("\\\"", out);
        else
            fputc(*s, out);
    }
}

/* "{label="value"" and, for a bucket, ",le="bound"", then "}" — nothing
 * for a series without labels. */
static void put_labels(FILE *out, const family *f, const tly_metric *s, const char *le)
{
    if (!f->label[0] && !le)
        return;
    fputc('{', out);
    if (f->label[0]) {
        fprintf(out, "%s=\"", f->label);
        put_escaped(out, s->value, true);
        fputc('"', out);
    }
    if (le)
        fprintf(out, "%sle=\"%s\"", f->label[0] ? "," : "", le);
    fputc('}', out);
}

/* A number of units in the rendered unit: exact for scale 1. */
static void put_scaled(char *buf, size_t cap, uint64_t units, uint64_t scale)
{
    if (scale == 1)
        snprintf(buf, cap, "%llu", (unsigned long long)units);
    else
        snprintf(buf, cap, "%.9g", (double)units / (double)scale);
}

/* The _bucket lines (cumulative), _sum and _count of one histogram. _count
 * is the +Inf bucket as read, so the two always agree. */
static void put_histogram(FILE *out, const family *f, const tly_metric *s)
{
    uint64_t total = 0;
    char le[32];
    for (uint32_t i = 0; i <= s->bounds.count; i++) {
        total += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < s->bounds.count)
            put_scaled(le, sizeof le, s->bounds.bounds[i], s->bounds.scale);
        fprintf(out, "%s_bucket", f->name);
        put_labels(out, f, s, i < s->bounds.count ? le : "+Inf");
        fprintf(out, " %llu\n", (unsigned long long)total);
    }
    put_scaled(le, sizeof le, atomic_load_explicit(&s->sum, memory_order_relaxed), s->bounds.scale);
    fprintf(out, "%s_sum", f->name);
    put_labels(out, f, s, NULL);
    fprintf(out, " %s\n%s_count", le, f->name);
    put_labels(out, f, s, NULL);
    fprintf(out, " %llu\n", (unsigned long long)total);
}

static void put_series(FILE *out, const family *f, const tly_metric *s)
{
    if (f->kind == KIND_HISTOGRAM) {
        put_histogram(out, f, s);
        return;
    }
    fputs(f->name, out);
    put_labels(out, f, s, NULL);
    if (f->kind == KIND_COUNTER)
        fprintf(out, " %llu\n",
                (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
    else
        fprintf(out, " %lld\n", (long long)atomic_load_explicit(&s->gauge, memory_order_relaxed));
}

tly_err tly_metrics_render(const tly_metrics *m, char **text, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&buf, &n);
    if (!out)
        return TLY_NOMEM;
    tly_metrics *mm = (tly_metrics *)m; /* the counts are atomics: loading is not writing */
    uint32_t families = atomic_load_explicit(&mm->family_count, memory_order_acquire);
    uint32_t series = atomic_load_explicit(&mm->series_count, memory_order_acquire);
    for (uint32_t i = 0; i < families; i++) {
        const family *f = &m->families[i];
        fprintf(out, "# HELP %s ", f->name);
        put_escaped(out, f->help, false);
        fprintf(out, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
        for (uint32_t k = 0; k < series; k++)
            if (m->series[k].family == i)
                put_series(out, f, &m->series[k]);
    }
    if (fclose(out) != 0 || !buf) {
        free(buf);
        return TLY_NOMEM;
    }
    *text = buf;
    *len = n;
    return TLY_OK;
}
