/*
 * tly_metrics.h — a registry of Prometheus metrics: counters, gauges and
 * histograms with fixed buckets, rendered in the text exposition format
 * (version 0.0.4).
 *
 * Every series is a handful of C11 atomics. The thread that counts (a
 * daemon's hot path) only adds to them with relaxed atomics, never takes a
 * lock and never allocates; a reader (the HTTP thread of metrics/, which
 * serves `--metrics ADDR`) only loads them. A family (one metric name) has
 * one HELP line, one type, and at most one label; each of its label values
 * is registered once, before it is counted, so hostile input never creates
 * a series.
 *
 * Lifecycle: tly_metrics_new, register series (tly_metrics_counter,
 * tly_metrics_gauge, tly_metrics_histogram), count, render while that
 * happens (tly_metrics_render, from any thread), tly_metrics_free once no
 * thread uses it. Registration may go on while another thread renders (a
 * series is published once it is whole) and may come from several threads
 * (a spin lock serializes them; it is rare and short). Handles live as long
 * as the registry.
 *
 * Every tly_metric_* call takes NULL and does nothing, and every
 * registration given a NULL registry returns NULL: code that counts needs
 * no "are metrics on?" test, and a daemon started without --metrics pays one
 * branch per count.
 *
 * Names follow Prometheus conventions (README "Metrics" lists every one):
 * tally_<room>_<what>_<unit>, counters end in _total, durations are
 * histograms in seconds (observed in nanoseconds: tly_metrics_seconds).
 */
#ifndef TLY_METRICS_H
#define TLY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

typedef struct tly_metrics tly_metrics;
typedef struct tly_metric tly_metric;

/* A histogram's buckets: ascending upper bounds in the unit it observes;
 * one unit is 1/scale of the rendered unit (scale 1e9 observes nanoseconds
 * and renders seconds; scale 1 renders the observed numbers). The +Inf
 * bucket is implied. At most TLY_METRICS_BUCKETS_MAX bounds. */
typedef struct tly_metric_buckets {
    const uint64_t *bounds;
    uint32_t count;
    uint64_t scale;
} tly_metric_buckets;

/* Durations: 100 µs .. 10 s, observed in nanoseconds, rendered in seconds. */
extern const tly_metric_buckets tly_metrics_seconds;
/* Sizes (events in a group commit, records in a batch): 1, 2, 4 .. 65536. */
extern const tly_metric_buckets tly_metrics_sizes;

/* A new empty registry into *out. TLY_OK or TLY_NOMEM. */
tly_err tly_metrics_new(tly_metrics **out);
/* Frees the registry and every handle it gave. NULL is a no-op. */
void tly_metrics_free(tly_metrics *m);

/*
 * Registers one series of family name and returns its handle; the same
 * name and label value again returns the same handle. help is the family's
 * (the first registration's is kept); label is the family's label name and
 * value this series' value, both NULL for a family without a label. name
 * and label must be Prometheus names ([a-zA-Z_][a-zA-Z0-9_]*), the type and
 * label of a family never change, and the registry holds at most
 * TLY_METRICS_FAMILIES_MAX families and TLY_METRICS_SERIES_MAX series:
 * breaking these is a programmer error (TLY_ASSERT). The strings are
 * copied. A NULL registry returns NULL.
 */
tly_metric *tly_metrics_counter(tly_metrics *m, const char *name, const char *help,
                                const char *label, const char *value);
tly_metric *tly_metrics_gauge(tly_metrics *m, const char *name, const char *help, const char *label,
                              const char *value);
tly_metric *tly_metrics_histogram(tly_metrics *m, const char *name, const char *help,
                                  const char *label, const char *value,
                                  const tly_metric_buckets *buckets);

/* Counter: adds n. */
void tly_metric_add(tly_metric *c, uint64_t n);
/* Gauge: sets v. */
void tly_metric_set(tly_metric *g, int64_t v);
/* Gauge: the value now (0 for NULL). */
int64_t tly_metric_get(const tly_metric *g);
/* Histogram: counts one observation of v units (nanoseconds for
 * tly_metrics_seconds). */
void tly_metric_observe(tly_metric *h, uint64_t v);

/*
 * The registry in the text exposition format into *text (malloc'd,
 * NUL-terminated; the caller frees it), *len its length: families in the
 * order they were registered, each with its HELP and TYPE lines, then its
 * series in the order they were registered. TLY_OK or TLY_NOMEM.
 */
tly_err tly_metrics_render(const tly_metrics *m, char **text, size_t *len);

#endif
