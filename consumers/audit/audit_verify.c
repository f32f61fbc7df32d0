/*
 * audit_verify.c — `tally audit verify` [D14]: one pass over the log in one
 * read snapshot.
 *
 * The log is read through the ledger's raw scan (tly_log_scan) rather than
 * through tly_log_reader: the audit must name exactly what is wrong with a
 * record (a gap, a key that differs from the seq inside, a value that does
 * not decode), where the reader only says "corrupt", and an audit should not
 * lean on the code it audits more than it must: the scan hands over the
 * stored bytes unchecked. The chain hash and the record and event decoders
 * are shared on purpose: they are the definitions being checked, and the
 * export test recomputes the chain independently of them.
 *
 * Threads. The chain is sequential, but checking it is not: record n is
 * good when SHA-256 of the hash stored in record n-1 and n's fields equals
 * the hash stored in n, so a record can be checked as soon as its
 * predecessor's stored bytes are known. The main thread scans the log into
 * batches of consecutive entries; it and up to TLY_AUDIT_VERIFY_THREADS_MAX
 * - 1 workers check whole batches (key, record, chain, event, ids index),
 * each exactly as the single pass would if every record before it were
 * good; the main thread merges the batches' verdicts in seq order and stops
 * at the first that found a fault. So the verdict (the first bad seq and
 * its reason) is the single pass's, whichever thread found it. Each thread
 * looks up the ids index in a scan of its own on the same snapshot
 * (tly_log_scan_open_twin).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_int.h"
#include "tly_audit.h"
#include "tly_event.h"
#include "tly_log.h"

/* Bytes of a cache line on the machines Tally runs on (x86-64, arm64). */
#define VERIFY_CACHE_LINE_BYTES 64

/* Everything one thread carries from record to record while it checks a
 * batch. */
typedef struct verify_state {
    /* Each thread's state starts a cache line of its own: the states lie
     * side by side (one allocation), and a thread writes its own at every
     * record; sharing a line with the next one's head cost the 3M log's
     * verify a tenth of its time (perf: the stall fell on st->out). */
    _Alignas(VERIFY_CACHE_LINE_BYTES)
        tly_log_scan *scan; /* this thread's scan of the snapshot: ids lookups */
    uint64_t expect;        /* the seq the next record must have */
    uint8_t prev_hash[TLY_HASH_BYTES];
    int64_t prev_ms;
    tly_event ev; /* reused: it is large */
    tly_audit_verdict *out;
} verify_state;

/* Marks the verdict bad at seq with a formatted reason. Returns false so
 * callers can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static bool fail(verify_state *st, uint64_t seq,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    st->out->ok = false;
    st->out->bad_seq = seq;
    vsnprintf(st->out->error, sizeof st->out->error, fmt, ap);
    va_end(ap);
    return false;
}

/* Length of the UTF-8 sequence a lead byte starts; 0 for a bad lead. */
static size_t utf8_seq_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        return 2;
    if ((c & 0xf0) == 0xe0)
        return 3;
    return (c & 0xf8) == 0xf0 ? 4 : 0;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t len)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(s[i]);
        if (n == 0 || n > len - i)
            return false;
        uint32_t cp = n == 1 ? s[i] : s[i] & (0x7fu >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

/* The key and the seq inside the value must be the next seq [D14]. */
static bool check_key(verify_state *st, const tly_log_raw *raw)
{
    if (raw->key_len != 8)
        return fail(st, st->expect, "stored key is %zu bytes, not 8", raw->key_len);
    uint64_t k = tly_be64_get(raw->key);
    if (k > st->expect)
        return fail(st, st->expect, "missing (gap: the next stored seq is %llu)",
                    (unsigned long long)k);
    if (k < st->expect)
        return fail(st, k, "out of order (expected seq %llu)", (unsigned long long)st->expect);
    return true;
}

/* The stored record: shape, seq inside, source, chain hash, recorded_ms. */
static bool check_record(verify_state *st, const tly_log_raw *raw, tly_record *rec)
{
    uint64_t seq = st->expect;
    if (tly_record_decode(raw->val, raw->val_len, rec) != TLY_OK)
        return fail(st, seq, "record does not decode");
    if (rec->seq != seq)
        return fail(st, seq, "record says seq %llu", (unsigned long long)rec->seq);
    if (rec->source.len < 1 || rec->source.len > TLY_SOURCE_BYTES_MAX ||
        !utf8_valid((const uint8_t *)rec->source.ptr, rec->source.len))
        return fail(st, seq, "source is not 1..%u bytes of UTF-8", TLY_SOURCE_BYTES_MAX);
    uint8_t h[TLY_HASH_BYTES];
    tly_chain_hash(st->prev_hash, seq, rec->recorded_ms, rec->source, rec->event, rec->event_len,
                   h);
    if (memcmp(h, rec->hash, TLY_HASH_BYTES) != 0)
        return fail(st, seq, "hash mismatch");
    if (rec->recorded_ms < st->prev_ms)
        return fail(st, seq, "recorded_ms %lld is before the previous %lld",
                    (long long)rec->recorded_ms, (long long)st->prev_ms);
    return true;
}

/* The event validates with the record's recorded time [D14]. */
static bool check_event(verify_state *st, const tly_record *rec)
{
    tly_field_error fe;
    fe.field[0] = fe.message[0] = '\0'; /* not all 224 bytes: this runs for every record */
    tly_err err = tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, &st->ev, &fe);
    if (err == TLY_OK)
        return true;
    return fail(st, rec->seq, "event invalid: %s%s%s%s%s", tly_err_name(err),
                fe.field[0] ? " " : "", fe.field, fe.message[0] ? ": " : "", fe.message);
}

/* The idempotency index maps this record's (source, id) to its seq: a
 * second record with the same identity, or an index that lost one, shows
 * here. */
static bool check_ids(verify_state *st, const tly_record *rec)
{
    const uint8_t *v;
    size_t len;
    tly_err err = tly_log_scan_ids_get(st->scan, rec->source, st->ev.id, &v, &len);
    if (err == TLY_NOT_FOUND)
        return fail(st, rec->seq, "(source, id) missing from the idempotency index");
    if (err != TLY_OK)
        return fail(st, rec->seq, "idempotency index: %s", tly_strerror(err));
    if (len != 8)
        return fail(st, rec->seq, "idempotency index value is not 8 bytes");
    uint64_t at = tly_be64_get(v);
    if (at != rec->seq)
        return fail(st, rec->seq, "(source, id) is also at seq %llu (duplicate id)",
                    (unsigned long long)at);
    return true;
}

/* Checks one stored record and advances the state. */
static bool check_one(verify_state *st, const tly_log_raw *raw)
{
    tly_record rec;
    if (!check_key(st, raw) || !check_record(st, raw, &rec) || !check_event(st, &rec) ||
        !check_ids(st, &rec))
        return false;
    memcpy(st->prev_hash, rec.hash, TLY_HASH_BYTES);
    st->prev_ms = rec.recorded_ms;
    st->expect++;
    return true;
}

/* Every index entry belongs to one record: more entries than records means
 * the index knows identities the log does not hold. */
static void check_ids_count(verify_state *st)
{
    uint64_t entries;
    tly_err err = tly_log_scan_ids_count(st->scan, &entries);
    if (err != TLY_OK)
        fail(st, 0, "idempotency index: %s", tly_strerror(err));
    else if (entries != st->out->records)
        fail(st, 0, "idempotency index holds %llu entries for %llu records",
             (unsigned long long)entries, (unsigned long long)st->out->records);
}

/* --- batches --- */

/* Consecutive stored entries that one thread checks, and its verdict. */
typedef struct verify_batch {
    uint64_t first_seq; /* the seq raws[0] must have: its position in the scan + 1 */
    bool has_prev;      /* false for the first batch: the chain starts at zeros */
    tly_log_raw prev;   /* the entry scanned before raws[0] */
    uint32_t count;
    bool done;           /* checked; under the pool's lock */
    tly_audit_verdict v; /* records: good ones from raws[0]; ok false at a fault */
    tly_log_raw raws[TLY_AUDIT_VERIFY_BATCH_RECORDS];
} verify_batch;

/* Checks b as the single pass would if every record before it were good:
 * the chain goes on from the hash and recorded_ms stored in the entry
 * before it. */
static void check_batch(verify_state *st, verify_batch *b)
{
    b->v = (tly_audit_verdict){.ok = true};
    st->out = &b->v;
    st->expect = b->first_seq;
    memset(st->prev_hash, 0, sizeof st->prev_hash);
    st->prev_ms = 0;
    if (b->has_prev) {
        tly_record prev;
        /* A predecessor that does not decode is a fault of the batch
         * before, which stops the merge first: this verdict is never read. */
        if (tly_record_decode(b->prev.val, b->prev.val_len, &prev) != TLY_OK) {
            fail(st, b->first_seq, "record before does not decode");
            return;
        }
        memcpy(st->prev_hash, prev.hash, TLY_HASH_BYTES);
        st->prev_ms = prev.recorded_ms;
    }
    for (uint32_t i = 0; i < b->count && check_one(st, &b->raws[i]); i++)
        ;
    /* The good records run from first_seq up to the one expected next. */
    b->v.records = st->expect - b->first_seq;
    if (b->v.records > 0) {
        b->v.head_seq = st->expect - 1;
        memcpy(b->v.head_hash, st->prev_hash, TLY_HASH_BYTES);
    }
}

/* The ring of batches between the scan and the checking threads. Batch k
 * lives in ring[k % slots]; merged <= claimed <= filled <= merged + slots. */
typedef struct verify_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* any change of the counters or of a batch's done */
    verify_batch *ring;
    uint32_t slots;
    uint64_t filled;  /* batches scanned */
    uint64_t claimed; /* batches a thread took */
    uint64_t merged;  /* batches whose verdict the main thread took */
    bool quit;        /* no batch will be checked any more */
} verify_pool;

/* With the lock held and a scanned batch unclaimed: claims it, checks it
 * with the lock released, marks it done. */
static void check_next(verify_pool *p, verify_state *st)
{
    verify_batch *b = &p->ring[p->claimed++ % p->slots];
    pthread_mutex_unlock(&p->mu);
    check_batch(st, b);
    pthread_mutex_lock(&p->mu);
    b->done = true;
    pthread_cond_broadcast(&p->cv);
}

/* A worker thread's argument. */
typedef struct verify_worker {
    verify_pool *pool;
    verify_state *st;
} verify_worker;

/* A worker: checks batches in the order scanned until the pool quits. */
static void *worker_main(void *arg)
{
    verify_worker *w = arg;
    verify_pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->claimed == p->filled)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit)
            break;
        check_next(p, w->st);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* --- the main thread: scan, check, merge --- */

/* One verification. */
typedef struct verify_run {
    verify_pool pool;
    verify_state *st;      /* the main thread's; its scan is the snapshot */
    uint64_t scanned;      /* entries scanned */
    tly_log_raw last;      /* the last of them */
    tly_err scan_err;      /* TLY_OK while the scan goes on, TLY_NOT_FOUND at its end */
    tly_audit_verdict sum; /* the batches merged so far */
    uint64_t total;        /* the progress total: the snapshot's last seq */
    tly_audit_progress_fn progress;
    void *ctx;
} verify_run;

/* Scans the next entries into b (no lock needed: nobody else touches a
 * slot that is not yet filled). */
static void fill_batch(verify_run *r, verify_batch *b)
{
    b->first_seq = r->scanned + 1;
    b->has_prev = r->scanned > 0;
    b->prev = r->last;
    b->count = 0;
    b->done = false;
    while (b->count < TLY_AUDIT_VERIFY_BATCH_RECORDS) {
        r->scan_err = tly_log_scan_next(r->st->scan, &b->raws[b->count]);
        if (r->scan_err != TLY_OK)
            break;
        r->last = b->raws[b->count++];
        r->scanned++;
    }
}

/* Merges the checked batches that come next in seq order (lock held).
 * True when one of them found a fault: the verdict is complete. */
static bool merge_done(verify_run *r)
{
    verify_pool *p = &r->pool;
    while (p->merged < p->filled && p->ring[p->merged % p->slots].done) {
        const tly_audit_verdict *v = &p->ring[p->merged++ % p->slots].v;
        r->sum.records += v->records;
        if (v->records > 0) {
            r->sum.head_seq = v->head_seq;
            memcpy(r->sum.head_hash, v->head_hash, TLY_HASH_BYTES);
        }
        if (!v->ok) {
            r->sum.ok = false;
            r->sum.bad_seq = v->bad_seq;
            memcpy(r->sum.error, v->error, sizeof r->sum.error);
            return true;
        }
        if (r->progress)
            r->progress(r->ctx, r->sum.records, r->total);
    }
    return false;
}

/* The main thread's loop: merges what is done, scans while the ring has
 * room, else checks a batch itself, else waits. Ends at the first fault or
 * when everything scanned is merged, and makes the workers quit. */
static void drive(verify_run *r)
{
    verify_pool *p = &r->pool;
    pthread_mutex_lock(&p->mu);
    while (!merge_done(r)) {
        bool scanning = r->scan_err == TLY_OK;
        if (!scanning && p->merged == p->filled)
            break;
        if (scanning && p->filled < p->merged + p->slots) {
            verify_batch *b = &p->ring[p->filled % p->slots];
            pthread_mutex_unlock(&p->mu);
            fill_batch(r, b);
            pthread_mutex_lock(&p->mu);
            if (b->count > 0) {
                p->filled++;
                pthread_cond_broadcast(&p->cv);
            }
        } else if (p->claimed < p->filled) {
            check_next(p, r->st);
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    p->quit = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Runs the verification with threads - 1 workers beside the main thread
 * (sts[0], whose scan is the snapshot; sts[k] a twin of it). TLY_OK with
 * r->sum, or the scan's error, or TLY_NOMEM. */
static tly_err run_threads(verify_run *r, verify_state *sts, uint32_t threads)
{
    verify_pool *p = &r->pool;
    p->slots = threads * TLY_AUDIT_VERIFY_BATCHES_PER_THREAD;
    p->ring = malloc(p->slots * sizeof *p->ring);
    verify_worker w[TLY_AUDIT_VERIFY_THREADS_MAX];
    pthread_t tid[TLY_AUDIT_VERIFY_THREADS_MAX];
    if (!p->ring)
        return TLY_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    uint32_t started = 0;
    for (uint32_t k = 1; k < threads; k++) {
        w[k] = (verify_worker){p, &sts[k]};
        if (pthread_create(&tid[k], NULL, worker_main, &w[k]) != 0)
            break; /* fewer threads check the same batches */
        started = k;
    }
    drive(r);
    for (uint32_t k = 1; k <= started; k++)
        pthread_join(tid[k], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->ring);
    if (r->sum.ok && r->scan_err != TLY_NOT_FOUND)
        return r->scan_err;
    return TLY_OK;
}

/* Threads to check on: one per online core, 1..TLY_AUDIT_VERIFY_THREADS_MAX. */
static uint32_t threads_wanted(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > (long)TLY_AUDIT_VERIFY_THREADS_MAX ? TLY_AUDIT_VERIFY_THREADS_MAX : (uint32_t)n;
}

/* Closes scans[0..n) (twins first). */
static void close_scans(tly_log_scan **scans, uint32_t n)
{
    while (n > 0)
        tly_log_scan_close(scans[--n]);
}

/* Opens *n scans of one snapshot into scans (scans[0] first, the others
 * twins of it). When the ledger keeps committing between the opens, or a
 * twin cannot be opened, fewer: *n is lowered (to 1 at least). TLY_OK, or
 * the error of opening scans[0]. */
static tly_err open_scans(tly_log *log, tly_log_scan **scans, uint32_t *n)
{
    for (uint32_t attempt = 0; attempt < TLY_AUDIT_VERIFY_SNAPSHOT_TRIES; attempt++) {
        tly_err err = tly_log_scan_open(log, &scans[0]);
        if (err != TLY_OK)
            return err;
        uint32_t k = 1;
        while (k < *n && (err = tly_log_scan_open_twin(scans[0], &scans[k])) == TLY_OK)
            k++;
        if (err != TLY_UNAVAILABLE) {
            *n = k;
            return TLY_OK;
        }
        close_scans(scans, k);
    }
    *n = 1;
    return tly_log_scan_open(log, &scans[0]);
}

/* Verifies the log in threads' scans of one snapshot; see tly_audit_verify. */
static tly_err verify_log(tly_log *log, verify_state *sts, uint32_t threads,
                          tly_audit_progress_fn progress, void *ctx, tly_audit_verdict *out)
{
    tly_log_scan *scans[TLY_AUDIT_VERIFY_THREADS_MAX];
    tly_err err = open_scans(log, scans, &threads);
    if (err != TLY_OK)
        return err;
    for (uint32_t k = 0; k < threads; k++)
        sts[k].scan = scans[k];
    verify_run *r = calloc(1, sizeof *r);
    if (!r) {
        close_scans(scans, threads);
        return TLY_NOMEM;
    }
    *r = (verify_run){.st = &sts[0], .sum = {.ok = true}, .progress = progress, .ctx = ctx};
    r->total = tly_log_scan_last_seq(scans[0]);
    err = run_threads(r, sts, threads);
    if (err == TLY_OK && progress)
        progress(ctx, r->sum.records, r->total);
    if (err == TLY_OK && r->sum.ok) {
        sts[0].out = &r->sum;
        check_ids_count(&sts[0]);
    }
    if (err == TLY_OK)
        *out = r->sum;
    free(r);
    close_scans(scans, threads);
    return err;
}

tly_err tly_audit_verify(const char *log_dir, tly_audit_progress_fn progress, void *ctx,
                         tly_audit_verdict *out)
{
    tly_log *log;
    tly_err err = tly_log_open(log_dir, TLY_LOG_READ, &log);
    if (err != TLY_OK)
        return err;
    uint32_t threads = threads_wanted();
    verify_state *sts = aligned_alloc(_Alignof(verify_state), threads * sizeof *sts);
    if (sts)
        memset(sts, 0, threads * sizeof *sts);
    err = sts ? verify_log(log, sts, threads, progress, ctx, out) : TLY_NOMEM;
    free(sts);
    tly_log_close(log);
    return err;
}
