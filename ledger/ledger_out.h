/*
 * ledger_out.h — what the ledger sends, within byte budgets (internal to
 * ledger/).
 *
 * ZeroMQ bounds its queues in messages, not bytes, and a reply or a record
 * can be megabytes: a client that sends requests and never reads its replies,
 * or a stopped subscriber, would otherwise grow the ledger without bound.
 * Every reply and published record is therefore copied into a buffer that
 * ZeroMQ frees through a callback, and an atomic counter holds the bytes not
 * yet freed (queued for a peer, or being written). A send that would take
 * the counter over the budget is dropped, and so is one that meets a full
 * per-peer queue (ZMQ_SNDHWM, with ZMQ_ROUTER_MANDATORY so the ledger learns
 * of it). A dropped reply is a lost acknowledgement: the producer times out
 * and resends with the same ids (answered as duplicates with the original
 * seq). A dropped record is a gap: subscribers fill it from the log. Drops
 * are counted and logged at most once per TLY_LEDGER_DROP_LOG_MS.
 */
#ifndef TLY_LEDGER_OUT_H
#define TLY_LEDGER_OUT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct tly_outq {
    _Atomic size_t bytes; /* sent, not yet freed by ZeroMQ */
    size_t budget;        /* bytes at most */
    const char *what;     /* "ingest replies", ... for the log line */
    uint64_t dropped;     /* since start */
    uint64_t logged;      /* dropped as of the last log line */
    uint64_t last_log_ns; /* monotonic */
} tly_outq;

/* Sets up q with a budget of budget bytes. */
void tly__outq_init(tly_outq *q, size_t budget, const char *what);

/* Sends a reply on a ROUTER socket: the envelope frames env[0..env_count)
 * (the first routes it) then body, never blocking. Returns true when ZeroMQ
 * took it, false when it was dropped (budget full, the peer's queue full,
 * the peer gone); a drop is counted and logged. */
bool tly__outq_reply(tly_outq *q, void *sock, zmq_msg_t *env, uint32_t env_count, const void *body,
                     size_t len);

/* Publishes [topic, body] on a PUB socket within q's budget, never
 * blocking. False when dropped (counted and logged). */
bool tly__outq_publish(tly_outq *q, void *sock, const char *topic, const void *body, size_t len);

/* Returns freed heap memory to the system (malloc_trim) when the queues are
 * empty, at most once per TLY_LEDGER_TRIM_INTERVAL_MS; called when idle. */
void tly__outq_trim(tly_outq *const *queues, size_t count);

/* Sets the allocator up so that large buffers (replies, records) are
 * mmapped and go back to the system as soon as they are freed. */
void tly__outq_malloc_setup(void);

#endif
