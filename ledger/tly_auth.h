/*
 * tly_auth.h — CURVE authentication and roles for the ledger (SPEC section 4).
 *
 * The authorized-keys file has one line per producer:
 *     <z85-public-key> <source-name> <role>[,<role>...]
 * Blank lines and lines starting with '#' are ignored. Write roles: sales
 * (sale, return, referral), certs (certification), claims (claim submit and
 * cancel), finance (everything; rate is finance only). Read roles: reader
 * (the events and log-read sockets: the whole log), auditor (the same, and
 * every query), finance (everything), partner:ID (the query service answers
 * that partner's balance, rebate, tier and claims only; a partner portal's
 * key). A key without a read role is refused on the events socket and gets
 * `forbidden` on log-read. A ZAP handler thread accepts exactly the listed
 * keys and sets the ZeroMQ User-Id of each connection to the source name,
 * which the ledger reads from every request (zmq_msg_gets "User-Id").
 */
#ifndef TLY_AUTH_H
#define TLY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "tly_err.h"
#include "tly_event.h"
#include "tly_keys.h"
#include "tly_limits.h"

enum {
    TLY_ROLE_SALES = 1u << 0,
    TLY_ROLE_CERTS = 1u << 1,
    TLY_ROLE_CLAIMS = 1u << 2,
    TLY_ROLE_FINANCE = 1u << 3,
    TLY_ROLE_READER = 1u << 4,
    TLY_ROLE_AUDITOR = 1u << 5,
    TLY_ROLE_PARTNER = 1u << 6
};

/* The role "partner:ID" names its partner after this prefix. */
#define TLY_ROLE_PARTNER_PREFIX "partner:"

/* ZAP domains: sockets that serve any authorized key, and sockets that serve
 * the whole log (events), which admit reading roles only. */
#define TLY_ZAP_DOMAIN "tally"
#define TLY_ZAP_DOMAIN_LOG "tally-log"

typedef struct tly_auth tly_auth;

/* Loads an authorized-keys file. On error returns TLY_IO (unreadable) or
 * TLY_BAD_FIELD (a bad line, including one longer than
 * TLY_AUTH_LINE_BYTES_MAX or holding a NUL byte) and writes a sentence
 * naming the file and the line into msg ("PATH: line N: ..."). */
tly_err tly_auth_load(const char *path, tly_auth **out, char *msg, size_t cap);

/* Starts the ZAP handler on zmq context ctx (inproc://zeromq.zap.01). It runs
 * until the context is terminated. Call before binding CURVE sockets: the
 * handler is bound when this returns, so no client of theirs is ever let in
 * unchecked. TLY_OK, TLY_NOMEM, or TLY_IO when the handler's endpoint could
 * not be bound (logged). */
tly_err tly_auth_start(tly_auth *auth, void *ctx);

/* Waits for the ZAP thread (after zmq_ctx_term has begun) and frees auth.
 * NULL is a no-op. */
void tly_auth_free(tly_auth *auth);

/* Roles of an authenticated source name; 0 when unknown. */
unsigned tly_auth_roles(const tly_auth *auth, const char *source);

/* True when roles may read the whole log (events, log-read). */
bool tly_auth_reads_log(unsigned roles);

/* The partner a source's key answers for (its partner:ID role), or NULL.
 * Borrowed from auth. */
const char *tly_auth_partner(const tly_auth *auth, const char *source);

/* True when roles allow the event (type and, for claims, action). */
bool tly_auth_allows(unsigned roles, const tly_event *ev);

/* Reads a CURVE secret key file (first token: 40 Z85 characters) into
 * secret (41 bytes, NUL-terminated) and derives public (41 bytes). */
tly_err tly_auth_read_secret(const char *path, char *secret, char *public_key, char *msg,
                             size_t cap);

#endif
