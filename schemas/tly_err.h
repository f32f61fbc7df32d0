/*
 * tly_err.h — the single error list of Tally.
 *
 * Every fallible function in Tally returns a tly_err. The list below is the
 * only place error codes are defined: the enum, tly_err_name() (the stable
 * wire code of SPEC section 4) and tly_strerror() (a sentence for people)
 * are generated from it. Codes are never renumbered or renamed; new codes
 * go at the end of their group.
 *
 * The first group are the wire codes of SPEC section 4. The second group are
 * internal conditions that never travel in an ingest reply but are reported
 * by the command line and the services.
 */
#ifndef TLY_ERR_H
#define TLY_ERR_H

#define TLY_ERR_LIST(X)                                                                            \
    X(OK, "ok", "success")                                                                         \
    X(MALFORMED, "malformed", "not MessagePack or not a map")                                      \
    X(TOO_LARGE, "too_large", "frame or batch larger than the limit")                              \
    X(BAD_TYPE, "bad_type", "unknown event type")                                                  \
    X(MISSING_FIELD, "missing_field", "a required field is absent")                                \
    X(BAD_FIELD, "bad_field", "a field has the wrong type or is out of range")                     \
    X(CONFLICT, "conflict", "same id already accepted with different bytes")                       \
    X(FORBIDDEN, "forbidden", "not allowed for this source or role")                               \
    X(ATOMIC_ABORTED, "atomic_aborted", "another event of the atomic request failed")              \
    X(STORAGE, "storage", "storage failure (disk full or I/O): retry later")                       \
    X(UNAVAILABLE, "unavailable", "service unavailable (shutting down)")                           \
    /* internal, never in an ingest reply */                                                       \
    X(NOMEM, "nomem", "out of memory")                                                             \
    X(IO, "io", "input/output error")                                                              \
    X(NOT_FOUND, "not_found", "not found")                                                         \
    X(TIMEOUT, "timeout", "timed out")                                                             \
    X(CORRUPT, "corrupt", "data fails verification")                                               \
    X(USAGE, "usage", "invalid usage")                                                             \
    X(OVERFLOW, "overflow", "arithmetic overflow")

typedef enum tly_err {
#define TLY_ERR_ENUM_(id, name, text) TLY_##id,
    TLY_ERR_LIST(TLY_ERR_ENUM_)
#undef TLY_ERR_ENUM_
        TLY_ERR_COUNT
} tly_err;

/* Stable machine code of err ("missing_field"); "unknown" for an out-of-range value.
 * The returned string is static. */
const char *tly_err_name(tly_err err);

/* One-sentence description of err for people. The returned string is static. */
const char *tly_strerror(tly_err err);

/* Parses a wire code back into its enum value. Returns TLY_OK and sets *out on a
 * match, TLY_NOT_FOUND otherwise. */
tly_err tly_err_from_name(const char *name, tly_err *out);

#endif
