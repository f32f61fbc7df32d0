/* ledger_standby.c — the writer's lease and the standby's follower; see
 * ledger_standby.h. */
#include "ledger_standby.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "tly_limits.h"
#include "tly_os.h"

#define LEASE_KEY "writer"
#define PROMOTE_KEY "promote"

struct tly_lease {
    tly_repl *r;
    char name[TLY_LEASE_NAME_BYTES_MAX + 1];
    int takeover_after_ms;
    uint64_t rev; /* the lease thread's */
    pthread_t thread;
    bool thread_running;
    atomic_bool stop;
    atomic_bool deposed;
    _Atomic uint64_t renewed_ns; /* of the last renewal that succeeded */
};

struct tly_follower {
    tly_repl *r;
    tly_log *log;
    char name[TLY_LEASE_NAME_BYTES_MAX + 1];
    int takeover_after_ms;
    void *pair;
    pthread_t thread;
    bool thread_running;
    atomic_bool stop;
    atomic_bool failed;
    _Atomic uint64_t took_rev;
    /* the lease as the follower last saw it */
    uint64_t seen_rev;
    uint64_t seen_at_ns;
    uint64_t promote_rev;
};

static uint64_t ms_ns(int ms)
{
    return (uint64_t)ms * 1000000u;
}

/* Sleeps ms in short steps, returning early once *stop is set. */
static void nap(atomic_bool *stop, int ms)
{
    for (int t = 0; t < ms && !atomic_load(stop); t += 20)
        tly_sleep_ms(ms - t < 20 ? ms - t : 20);
}

/* ---- the writer's lease ---- */

static void *lease_main(void *arg)
{
    tly_lease *l = arg;
    int every_ms = l->takeover_after_ms / TLY_LEASE_RENEWALS;
    bool warned = false;
    while (!atomic_load(&l->stop)) {
        nap(&l->stop, every_ms);
        if (atomic_load(&l->stop))
            break;
        uint64_t rev = 0;
        tly_err err = tly_repl_lease_cas(l->r, LEASE_KEY, l->name, l->rev, &rev);
        if (err == TLY_OK) {
            l->rev = rev;
            atomic_store(&l->renewed_ns, tly_mono_ns());
            warned = false;
        } else if (err == TLY_CONFLICT) {
            atomic_store(&l->deposed, true);
            tly_logf(TLY_LOG_ERROR, "ledger",
                     "deposed: another ledger took the writer's lease of stream %s; this one "
                     "acknowledges nothing from now on",
                     tly_repl_stream(l->r));
            break;
        } else if (!warned) {
            warned = true;
            tly_logf(TLY_LOG_WARN, "ledger", "cannot renew the writer's lease (no quorum?)");
        }
    }
    return NULL;
}

/* Waits up to takeover_after for the holder to renew; takes the lease over
 * when it does not. */
static tly_err take_over_stale(tly_lease *l, const char *holder, uint64_t rev, char *msg,
                               size_t cap)
{
    uint64_t end = tly_mono_ns() + ms_ns(l->takeover_after_ms);
    tly_logf(TLY_LOG_INFO, "ledger", "the writer's lease is held by %s: waiting %d ms for it",
             holder, l->takeover_after_ms);
    while (tly_mono_ns() < end) {
        tly_sleep_ms(TLY_STANDBY_POLL_MS);
        char now_holder[TLY_LEASE_NAME_BYTES_MAX + 1];
        uint64_t now_rev = 0;
        tly_err err = tly_repl_lease_get(l->r, LEASE_KEY, now_holder, sizeof now_holder, &now_rev);
        if (err == TLY_OK && now_rev != rev) {
            snprintf(msg, cap,
                     "the writer's lease of stream %s is held by %s, who renews it: this "
                     "ledger would be a second writer (start it with --standby)",
                     tly_repl_stream(l->r), now_holder);
            return TLY_CONFLICT;
        }
    }
    tly_err err = tly_repl_lease_cas(l->r, LEASE_KEY, l->name, rev, &l->rev);
    if (err == TLY_CONFLICT)
        snprintf(msg, cap, "the writer's lease of stream %s was taken meanwhile",
                 tly_repl_stream(l->r));
    return err;
}

static tly_err acquire(tly_lease *l, char *msg, size_t cap)
{
    char holder[TLY_LEASE_NAME_BYTES_MAX + 1];
    uint64_t rev = 0;
    tly_err err = tly_repl_lease_get(l->r, LEASE_KEY, holder, sizeof holder, &rev);
    if (err == TLY_NOT_FOUND)
        err = tly_repl_lease_cas(l->r, LEASE_KEY, l->name, 0, &l->rev);
    else if (err == TLY_OK && strcmp(holder, l->name) == 0)
        err = tly_repl_lease_cas(l->r, LEASE_KEY, l->name, rev, &l->rev);
    else if (err == TLY_OK)
        err = take_over_stale(l, holder, rev, msg, cap);
    if (err == TLY_UNAVAILABLE)
        snprintf(msg, cap, "the lease bucket of stream %s does not answer", tly_repl_stream(l->r));
    else if (err == TLY_CONFLICT && !msg[0])
        snprintf(msg, cap, "the writer's lease of stream %s was taken meanwhile",
                 tly_repl_stream(l->r));
    return err;
}

tly_err tly_lease_start(tly_repl *r, const char *name, int takeover_after_ms, uint64_t rev,
                        tly_lease **out, char *msg, size_t cap)
{
    tly_lease *l = calloc(1, sizeof *l);
    if (!l)
        return TLY_NOMEM;
    l->r = r;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->takeover_after_ms = takeover_after_ms;
    l->rev = rev;
    msg[0] = '\0';
    tly_err err = tly_repl_lease_open(r, msg, cap);
    if (err == TLY_OK && rev == 0)
        err = acquire(l, msg, cap);
    atomic_store(&l->renewed_ns, tly_mono_ns());
    if (err == TLY_OK && pthread_create(&l->thread, NULL, lease_main, l) != 0)
        err = TLY_NOMEM;
    if (err != TLY_OK) {
        free(l);
        return err;
    }
    l->thread_running = true;
    *out = l;
    return TLY_OK;
}

bool tly_lease_valid(tly_lease *l)
{
    uint64_t age = tly_mono_ns() - atomic_load(&l->renewed_ns);
    return !atomic_load(&l->deposed) && age < ms_ns(l->takeover_after_ms) / 4 * 3;
}

bool tly_lease_deposed(tly_lease *l)
{
    return atomic_load(&l->deposed);
}

void tly_lease_stop(tly_lease *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    if (l->thread_running)
        pthread_join(l->thread, NULL);
    free(l);
}

/* ---- the standby's follower ---- */

/* True when a `tally ledger promote` for this name (or any) came since the
 * follower started. */
static bool promote_asked(tly_follower *f)
{
    char val[TLY_LEASE_NAME_BYTES_MAX + 1];
    uint64_t rev = 0;
    if (tly_repl_lease_get(f->r, PROMOTE_KEY, val, sizeof val, &rev) != TLY_OK ||
        rev == f->promote_rev)
        return false;
    f->promote_rev = rev;
    /* a read replica (no take-over) is promoted only by its own name */
    bool any = strcmp(val, "*") == 0 && f->takeover_after_ms >= 0;
    return any || strcmp(val, f->name) == 0;
}

/* Looks at the lease; takes it over when its holder has not renewed it for
 * takeover_after, or at once when promoted. True once it is ours. */
static bool watch_lease(tly_follower *f)
{
    bool promote = promote_asked(f);
    char holder[TLY_LEASE_NAME_BYTES_MAX + 1];
    uint64_t rev = 0;
    tly_err err = tly_repl_lease_get(f->r, LEASE_KEY, holder, sizeof holder, &rev);
    if (err == TLY_UNAVAILABLE)
        return false; /* no quorum: nobody can write, nobody takes over */
    uint64_t now = tly_mono_ns();
    if (err == TLY_OK && rev != f->seen_rev) {
        f->seen_rev = rev;
        f->seen_at_ns = now;
    }
    if (!promote && (f->takeover_after_ms < 0 || now - f->seen_at_ns < ms_ns(f->takeover_after_ms)))
        return false;
    uint64_t took = 0;
    if (tly_repl_lease_cas(f->r, LEASE_KEY, f->name, err == TLY_OK ? rev : 0, &took) != TLY_OK)
        return false;
    tly_logf(TLY_LOG_INFO, "ledger", "took the writer's lease of stream %s over%s (held by %s)",
             tly_repl_stream(f->r), promote ? " on promote" : "",
             err == TLY_OK ? holder : "nobody");
    atomic_store(&f->took_rev, took);
    return true;
}

/* Appends what arrived; false when the follower must stop (a record it
 * cannot take: logged). */
static bool follow_some(tly_follower *f, tly_repl_reader **rd, tly_log_stored *recs)
{
    uint64_t head = 0;
    tly_log_head(f->log, &head, NULL);
    if (!*rd && tly_repl_reader_open(f->r, head + 1, rd) != TLY_OK) {
        tly_sleep_ms(TLY_STANDBY_POLL_MS);
        return true;
    }
    uint32_t n = 0;
    if (tly_repl_reader_fetch(*rd, recs, TLY_REPL_CHUNK_RECORDS, TLY_STANDBY_POLL_MS, &n) !=
        TLY_OK) {
        tly_repl_reader_close(*rd);
        *rd = NULL;
        return true;
    }
    if (n == 0)
        return true;
    uint64_t bad = 0;
    char why[160] = "";
    tly_err err = tly_log_append_stored(f->log, recs, n, &bad, why, sizeof why);
    if (err == TLY_CORRUPT) {
        tly_logf(TLY_LOG_ERROR, "ledger",
                 "standby: stream %s, seq %llu: %s: following stops here, this ledger will not "
                 "take over",
                 tly_repl_stream(f->r), (unsigned long long)bad, why);
        atomic_store(&f->failed, true);
        return false;
    }
    if (err != TLY_OK) { /* storage: read the same records again later */
        tly_repl_reader_close(*rd);
        *rd = NULL;
        tly_sleep_ms(TLY_STANDBY_POLL_MS);
        return true;
    }
    tly_log_head(f->log, &head, NULL);
    zmq_send(f->pair, &head, sizeof head, 0);
    return true;
}

static void *follow_main(void *arg)
{
    tly_follower *f = arg;
    tly_repl_reader *rd = NULL;
    tly_log_stored *recs = malloc(TLY_REPL_CHUNK_RECORDS * sizeof *recs);
    while (recs && !atomic_load(&f->stop)) {
        if (!follow_some(f, &rd, recs))
            break;
        if (watch_lease(f)) {
            /* Told for sure, unless the follower is stopped meanwhile
             * (tly_follower_stop joins this thread). */
            uint64_t promoted = UINT64_MAX;
            while (zmq_send(f->pair, &promoted, sizeof promoted, ZMQ_DONTWAIT) < 0 &&
                   zmq_errno() == EAGAIN && !atomic_load(&f->stop))
                tly_sleep_ms(TLY_STANDBY_POLL_MS);
            break;
        }
    }
    tly_repl_reader_close(rd);
    free(recs);
    return NULL;
}

tly_err tly_follower_start(tly_repl *r, tly_log *log, const char *name, int takeover_after_ms,
                           void *zctx, const char *notify, tly_follower **out)
{
    char msg[256];
    if (tly_repl_lease_open(r, msg, sizeof msg) != TLY_OK) {
        tly_logf(TLY_LOG_ERROR, "ledger", "%s", msg);
        return TLY_UNAVAILABLE;
    }
    tly_follower *f = calloc(1, sizeof *f);
    if (!f)
        return TLY_NOMEM;
    f->r = r;
    f->log = log;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->takeover_after_ms = takeover_after_ms;
    /* Which promote is old: the one the key holds now, read before this
     * returns, so that a promote asked once the ledger is reachable (its
     * sockets are bound after this) is always new. Read by the thread,
     * a promote asked between the ledger's bind and the thread's first
     * read was taken for an old one and never acted on (test_takeover
     * under ASan: the promoted standby never became the writer). */
    char val[TLY_LEASE_NAME_BYTES_MAX + 1];
    if (tly_repl_lease_get(r, PROMOTE_KEY, val, sizeof val, &f->promote_rev) != TLY_OK)
        f->promote_rev = 0;
    f->seen_at_ns = tly_mono_ns();
    f->pair = zmq_socket(zctx, ZMQ_PAIR);
    if (!f->pair || zmq_connect(f->pair, notify) != 0 ||
        pthread_create(&f->thread, NULL, follow_main, f) != 0) {
        if (f->pair)
            zmq_close(f->pair);
        free(f);
        return TLY_NOMEM;
    }
    f->thread_running = true;
    *out = f;
    return TLY_OK;
}

uint64_t tly_follower_lease_rev(const tly_follower *f)
{
    return atomic_load(&f->took_rev);
}

bool tly_follower_failed(const tly_follower *f)
{
    return atomic_load(&f->failed);
}

void tly_follower_stop(tly_follower *f)
{
    if (!f)
        return;
    atomic_store(&f->stop, true);
    if (f->thread_running)
        pthread_join(f->thread, NULL);
    int linger = 0;
    zmq_setsockopt(f->pair, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(f->pair);
    free(f);
}
