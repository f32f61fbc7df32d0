/*
 * tly_keys.h — CURVE key files, as every client and server reads them.
 *
 * A secret key file holds the 40 Z85 characters of a CURVE secret key as its
 * first token (what `zmq_curve_keypair` prints; anything after it is
 * ignored). Deriving the public key and setting socket options needs
 * libzmq and stays with the caller.
 */
#ifndef TLY_KEYS_H
#define TLY_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "tly_err.h"

/* Characters of a Z85-encoded CURVE key. */
#define TLY_Z85_KEY_CHARS 40u

/* True when key is exactly TLY_Z85_KEY_CHARS Z85 characters. */
bool tly_key_z85_valid(const char *key);

/*
 * Reads the secret key in path into secret (TLY_Z85_KEY_CHARS + 1 bytes,
 * NUL-terminated). Returns TLY_OK, TLY_IO (unreadable) or TLY_BAD_FIELD (not
 * a key), writing a sentence into msg on error.
 */
tly_err tly_key_read_secret(const char *path, char *secret, char *msg, size_t cap);

#endif
