/*
 * tly_auth.h — CURVE authentication and roles for the ledger (SPEC section 4).
 *
 * The authorized-keys file has one line per producer:
 *     <z85-public-key> <source-name> <role>[,<role>...]
 * Blank lines and lines starting with '#' are ignored. Roles: sales (sale,
 * return), certs (certification), claims (claim submit and cancel), finance
 * (everything). A ZAP handler thread accepts exactly the listed keys and sets
 * the ZeroMQ User-Id of each connection to the source name, which the ledger
 * reads from every request (zmq_msg_gets "User-Id").
 */
#ifndef TLY_AUTH_H
#define TLY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "tly_err.h"
#include "tly_event.h"

enum {
    TLY_ROLE_SALES = 1u << 0,
    TLY_ROLE_CERTS = 1u << 1,
    TLY_ROLE_CLAIMS = 1u << 2,
    TLY_ROLE_FINANCE = 1u << 3
};

/* Authorized keys at most; a partner program has tens of producers. */
#define TLY_AUTH_KEYS_MAX 1024u
/* Length of a Z85-encoded CURVE key. */
#define TLY_Z85_KEY_CHARS 40u

typedef struct tly_auth tly_auth;

/* Loads an authorized-keys file. On error returns TLY_IO (unreadable) or
 * TLY_BAD_FIELD (a bad line) and writes a sentence naming the line into msg. */
tly_err tly_auth_load(const char *path, tly_auth **out, char *msg, size_t cap);

/* Starts the ZAP handler on zmq context ctx (inproc://zeromq.zap.01). It runs
 * until the context is terminated. Call before binding CURVE sockets. */
tly_err tly_auth_start(tly_auth *auth, void *ctx);

/* Waits for the ZAP thread (after zmq_ctx_term has begun) and frees auth.
 * NULL is a no-op. */
void tly_auth_free(tly_auth *auth);

/* Roles of an authenticated source name; 0 when unknown. */
unsigned tly_auth_roles(const tly_auth *auth, const char *source);

/* True when roles allow the event (type and, for claims, action). */
bool tly_auth_allows(unsigned roles, const tly_event *ev);

/* Reads a CURVE secret key file (first token: 40 Z85 characters) into
 * secret (41 bytes, NUL-terminated) and derives public (41 bytes). */
tly_err tly_auth_read_secret(const char *path, char *secret, char *public_key, char *msg,
                             size_t cap);

#endif
