/*
 * tly_xkind.h — the single list of exception kinds [D6].
 *
 * An exception is a business outcome the engine records instead of moving
 * money (SPEC section 9 [D6]): it is stored under "X/" keys as
 * {"seq","kind","partner","detail"} and served by `tally exceptions`. The
 * list below is the only place the kinds are defined: the enum, the stable
 * wire name ("kind" in the stored and served documents, and the denial
 * code a claim's "reason" shows) and the parser are generated from it.
 * Names are on the wire and in the view stores: never rename one; a new
 * kind goes at the end. Only folded events raise them; duplicates and
 * rejected events never reach the engine [D11].
 *
 * Public: the engine, the query service, the commands and the tests all
 * take the kinds from here.
 */
#ifndef TLY_XKIND_H
#define TLY_XKIND_H

#include <stddef.h>

#define TLY_XKIND_LIST(X)                                                                          \
    /* an event of an unenrolled partner, kept until enrollment [E3] */                            \
    X(HELD, "held")                                                                                \
    /* a sale or return before the earliest open period [P2] */                                    \
    X(LATE, "late")                                                                                \
    X(CURRENCY_MISMATCH, "currency_mismatch")                                                      \
    X(UNKNOWN_SALE, "unknown_sale")                                                                \
    X(RETURN_PARTNER_MISMATCH, "return_partner_mismatch")                                          \
    X(OVER_RETURN, "over_return")                                                                  \
    X(UNKNOWN_PARTNER, "unknown_partner")                                                          \
    X(INSUFFICIENT_FUNDS, "insufficient_funds")                                                    \
    X(UNKNOWN_CLAIM, "unknown_claim")                                                              \
    X(DUPLICATE_CLAIM, "duplicate_claim")                                                          \
    X(INVALID_TRANSITION, "invalid_transition")                                                    \
    X(APPROVE_EXCEEDS_REQUESTED, "approve_exceeds_requested")                                      \
    X(PAY_EXCEEDS_APPROVED, "pay_exceeds_approved")                                                \
    X(PAYOUT_NOT_FINAL, "payout_not_final")                                                        \
    X(OVERPAYMENT, "overpayment")                                                                  \
    X(STALE_VERSION, "stale_version")                                                              \
    X(PROGRAM_CHANGE_REJECTED, "program_change_rejected")                                          \
    X(UNKNOWN_PROGRAM, "unknown_program")                                                          \
    X(CLOSE_OUT_OF_ORDER, "close_out_of_order")                                                    \
    X(PARTNER_PROGRAM_CHANGE, "partner_program_change")                                            \
    X(CERT_NOT_ACTIVE, "cert_not_active")                                                          \
    X(EARLY_CLOSE, "early_close")

typedef enum tly_xkind {
#define TLY_XKIND_ENUM_(id, name) TLY_X_##id,
    TLY_XKIND_LIST(TLY_XKIND_ENUM_)
#undef TLY_XKIND_ENUM_
        TLY_X_COUNT
} tly_xkind;

/* Stable wire name of kind ("over_return"); kind < TLY_X_COUNT (asserted).
 * The returned string is static. */
const char *tly_xkind_name(tly_xkind kind);

/* Kind of the wire name s (len bytes, no NUL needed); TLY_X_COUNT when s
 * names no kind. */
tly_xkind tly_xkind_parse(const char *s, size_t len);

#endif
