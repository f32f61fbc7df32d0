/* ledger_out.c — byte-budgeted sends of the ledger; see ledger_out.h. */
#include "ledger_out.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_limits.h"
#include "tly_os.h"

/* Prefix of every send buffer: which queue to credit when ZeroMQ frees it. */
typedef struct out_buf {
    tly_outq *q;
    _Atomic size_t len; /* stored last, see on_freed */
} out_buf;

/* ZeroMQ's free callback (runs on its I/O thread). ZeroMQ orders it after
 * out_msg on the sending thread, but with atomics inside libzmq that
 * ThreadSanitizer cannot see (the library is not instrumented): len,
 * stored last in out_msg with release and loaded first here with acquire,
 * carries the same order in C11 terms. */
static void on_freed(void *data, void *hint)
{
    (void)data;
    out_buf *b = hint;
    size_t len = atomic_load_explicit(&b->len, memory_order_acquire);
    atomic_fetch_sub(&b->q->bytes, len);
    free(b);
}

void tly__outq_init(tly_outq *q, size_t budget, const char *what)
{
    memset(q, 0, sizeof *q);
    atomic_init(&q->bytes, 0);
    q->budget = budget;
    q->what = what;
}

static void note_drop(tly_outq *q)
{
    q->dropped++;
    uint64_t now = tly_mono_ns();
    if (q->last_log_ns != 0 && now - q->last_log_ns < TLY_LEDGER_DROP_LOG_MS * 1000000ull)
        return;
    tly_logf(TLY_LOG_WARN, "ledger",
             "%s: dropped %llu message(s) (%llu in all): a peer is not reading, "
             "or the %zu-byte budget is full",
             q->what, (unsigned long long)(q->dropped - q->logged), (unsigned long long)q->dropped,
             q->budget);
    q->logged = q->dropped;
    q->last_log_ns = now;
}

/* A message of a copy of body[0..len), counted against q until freed.
 * False (nothing counted) when it would not fit the budget or on ENOMEM. */
static bool out_msg(tly_outq *q, const void *body, size_t len, zmq_msg_t *m)
{
    if (atomic_load(&q->bytes) + len > q->budget)
        return false;
    out_buf *b = malloc(sizeof *b + len);
    if (!b)
        return false;
    b->q = q;
    memcpy(b + 1, body, len);
    atomic_store_explicit(&b->len, len, memory_order_release);
    atomic_fetch_add(&q->bytes, len);
    if (zmq_msg_init_data(m, b + 1, len, on_freed, b) != 0) {
        atomic_fetch_sub(&q->bytes, len);
        free(b);
        return false;
    }
    return true;
}

bool tly__outq_reply(tly_outq *q, void *sock, zmq_msg_t *env, uint32_t env_count, const void *body,
                     size_t len)
{
    zmq_msg_t m;
    if (env_count == 0 || !out_msg(q, body, len, &m)) {
        note_drop(q);
        return false;
    }
    /* ROUTER_MANDATORY: the routing frame fails at once (EAGAIN: the peer's
     * queue is full; EHOSTUNREACH: it is gone), and then nothing was sent. */
    int rc = 0;
    for (uint32_t i = 0; i < env_count && rc >= 0; i++)
        rc = zmq_send(sock, zmq_msg_data(&env[i]), zmq_msg_size(&env[i]),
                      ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_msg_send(&m, sock, ZMQ_DONTWAIT);
    if (rc < 0) {
        zmq_msg_close(&m);
        note_drop(q);
        return false;
    }
    return true;
}

bool tly__outq_publish(tly_outq *q, void *sock, const char *topic, const void *body, size_t len)
{
    zmq_msg_t m;
    if (!out_msg(q, body, len, &m)) {
        note_drop(q);
        return false;
    }
    /* PUB never blocks: at a subscriber's SNDHWM it drops for that one. */
    if (zmq_send(sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&m, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        note_drop(q);
        return false;
    }
    return true;
}

void tly__outq_trim(tly_outq *const *queues, size_t count)
{
    static uint64_t last_ns;
    uint64_t now = tly_mono_ns();
    if (last_ns != 0 && now - last_ns < TLY_LEDGER_TRIM_INTERVAL_MS * 1000000ull)
        return;
    for (size_t i = 0; i < count; i++)
        if (atomic_load(&queues[i]->bytes) != 0)
            return;
    last_ns = now;
    malloc_trim(0);
}

void tly__outq_malloc_setup(void)
{
    /* A fixed threshold also stops glibc from raising it after the first
     * large free, which would keep later large buffers on the heap. */
    mallopt(M_MMAP_THRESHOLD, (int)TLY_LEDGER_MMAP_THRESHOLD_BYTES);
}
