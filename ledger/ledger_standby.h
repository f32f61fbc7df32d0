/*
 * ledger_standby.h — writer and standby on one stream (SPEC section 12,
 * [N4]): the writer's lease, renewed by a thread of its own, and the
 * standby's follower, a thread that appends the stream to the standby's log
 * and takes the lease over when the writer stops renewing it (or at once on
 * `tally ledger promote`).
 *
 * Timing: the writer renews every takeover_after / TLY_LEASE_RENEWALS and
 * acknowledges nothing once its last renewal is older than
 * takeover_after * 3/4 (it fences itself before a standby may take over);
 * a standby takes over when it has seen no renewal for takeover_after.
 * Fencing by expected-last-sequence [N2] covers whatever a clock gets wrong.
 */
#ifndef LEDGER_STANDBY_H
#define LEDGER_STANDBY_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger_repl.h"
#include "tly_log.h"

typedef struct tly_lease tly_lease;

/* Takes the lease for name and starts renewing it. rev is the revision the
 * caller holds it at (a standby that just took it over), or 0: then the
 * lease is taken here: created when absent, taken back when it holds this
 * name, taken over when its holder has not renewed it for takeover_after_ms
 * (this waits to see), refused (TLY_CONFLICT, msg names the holder) when
 * the holder renews it. TLY_UNAVAILABLE when the bucket does not answer. */
tly_err tly_lease_start(tly_repl *r, const char *name, int takeover_after_ms, uint64_t rev,
                        tly_lease **out, char *msg, size_t cap);

/* True while the lease is this writer's and fresh (renewed within
 * takeover_after * 3/4). Any thread. */
bool tly_lease_valid(tly_lease *l);

/* True once another ledger took the lease (a renewal found it changed):
 * this writer is deposed for good. Any thread. */
bool tly_lease_deposed(tly_lease *l);

/* Stops renewing (the lease then lapses). NULL is a no-op. */
void tly_lease_stop(tly_lease *l);

typedef struct tly_follower tly_follower;

/* Starts the follower of a standby: appends the stream's records beyond the
 * log's head to it (checked, tly_log_append_stored) and sends each new head
 * (a uint64_t) to the ZeroMQ PAIR endpoint notify of zctx; watches the
 * lease and, when it takes it over, sends UINT64_MAX there and stops. The
 * log is the follower's to append to until tly_follower_stop. A negative
 * takeover_after_ms makes a read replica: it takes over only when a
 * promote names it. */
tly_err tly_follower_start(tly_repl *r, tly_log *log, const char *name, int takeover_after_ms,
                           void *zctx, const char *notify, tly_follower **out);

/* The lease revision the follower took over at (0 when it did not). */
uint64_t tly_follower_lease_rev(const tly_follower *f);

/* True when the follower stopped on a record it could not take (logged):
 * the standby then serves what it has and never takes over. */
bool tly_follower_failed(const tly_follower *f);

/* Stops and joins the thread. NULL is a no-op. */
void tly_follower_stop(tly_follower *f);

#endif
