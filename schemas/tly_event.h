/*
 * tly_event.h — the events of schema v1 (SPEC section 5) and of program
 * rules v2 (section 10), decoded and validated.
 *
 * tly_event_decode() reads one event's MessagePack bytes, checks every
 * structural rule of SPEC sections 5 and 10 and section 9 [G6] (types, ranges,
 * lengths, patterns, required fields) and fills a tly_event whose strings
 * point into the input buffer. Business rules (unknown partner, insufficient
 * funds, ...) are not checked here: the consumers decide them.
 */
#ifndef TLY_EVENT_H
#define TLY_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"
#include "tly_limits.h"
#include "tly_period.h"

/* A borrowed string: not NUL-terminated, lives as long as the buffer it
 * points into. ptr is NULL and len 0 for an absent optional field. */
typedef struct tly_str {
    const char *ptr;
    uint32_t len;
} tly_str;

/* The eleven event types. Values are stable (they index tables); rate and
 * referral are SPEC section 10's. */
typedef enum tly_ev_type {
    TLY_EV_PROGRAM = 0,
    TLY_EV_PARTNER,
    TLY_EV_SALE,
    TLY_EV_RETURN,
    TLY_EV_CERTIFICATION,
    TLY_EV_CLAIM,
    TLY_EV_CLOSE,
    TLY_EV_PAYOUT,
    TLY_EV_ADJUST,
    TLY_EV_RATE,     /* [F1] finance */
    TLY_EV_REFERRAL, /* [Q1] sales */
    TLY_EV_COUNT
} tly_ev_type;

typedef enum tly_partner_kind {
    TLY_KIND_VAR = 0,
    TLY_KIND_MSP,
    TLY_KIND_SI,
    TLY_KIND_OEM,
    TLY_KIND_ISV,
    TLY_KIND_DISTRIBUTOR,
    TLY_KIND_CONSULTANT,
    TLY_KIND_COUNT
} tly_partner_kind;

/* certification action: earned | expired | revoked;
 * claim action: submit | cancel | approve | reject | pay. */
typedef enum tly_action {
    TLY_ACT_EARNED = 0,
    TLY_ACT_EXPIRED,
    TLY_ACT_REVOKED,
    TLY_ACT_SUBMIT,
    TLY_ACT_CANCEL,
    TLY_ACT_APPROVE,
    TLY_ACT_REJECT,
    TLY_ACT_PAY,
    TLY_ACT_COUNT
} tly_action;

typedef enum tly_rebate_mode { TLY_REBATE_RETROACTIVE = 0, TLY_REBATE_INCREMENTAL } tly_rebate_mode;

typedef enum tly_account { TLY_ACCOUNT_MDF = 0, TLY_ACCOUNT_REBATE } tly_account;

/* rebate.basis [R11]: "revenue" (v1) | "growth". */
typedef enum tly_rebate_basis { TLY_BASIS_REVENUE = 0, TLY_BASIS_GROWTH } tly_rebate_basis;

/* tier_moves [T8]: "any" (v1) | "one_step". */
typedef enum tly_tier_moves { TLY_MOVES_ANY = 0, TLY_MOVES_ONE_STEP } tly_tier_moves;

/* An exact decimal: units / 10^scale, e.g. "1.0823" is {10823, 4}. A rate
 * has 1..TLY_RATE_INT_DIGITS_MAX digits before the point and
 * 0..TLY_RATE_FRAC_DIGITS_MAX after it, and is > 0 [F1]. */
typedef struct tly_decimal {
    int64_t units;
    int32_t scale;
} tly_decimal;

typedef struct tly_tier {
    tly_str name;        /* 1..TLY_NAME_BYTES_MAX, unique within the program */
    int64_t min_revenue; /* 0..TLY_AMOUNT_MAX, non-decreasing along the list */
    int64_t min_certs;   /* 0..TLY_CERTS_MAX, non-decreasing along the list */
    int32_t mdf_bps;     /* 0..TLY_BPS_MAX */
    /* section 10, optional */
    uint32_t benefit_count;             /* 0..TLY_BENEFITS_MAX */
    tly_str benefits[TLY_BENEFITS_MAX]; /* each 1..TLY_BENEFIT_BYTES_MAX */
    int32_t rebate_bonus_bps;           /* 0..TLY_BPS_MAX, default 0 [R14] */
    int32_t referral_bps;               /* 0..TLY_BPS_MAX, default 0 [Q1] */
} tly_tier;

typedef struct tly_bracket {
    int64_t from; /* 0 for the first, strictly ascending, ≤ TLY_AMOUNT_MAX */
    int32_t bps;  /* 0..TLY_BPS_MAX */
} tly_bracket;

/*
 * A decoded event. Only the fields of its type are meaningful; the others are
 * zero. Which fields each type has, and their ranges, is SPEC section 5 and
 * schemas/SCHEMA.md.
 */
typedef struct tly_event {
    tly_ev_type type;
    tly_str id;    /* 1..TLY_ID_BYTES_MAX of [A-Za-z0-9._:-] */
    int64_t at_ms; /* business time, Unix ms UTC */

    /* program, partner, close */
    tly_str program;
    /* program */
    int64_t version;             /* 1..TLY_VERSION_MAX */
    tly_str currency;            /* also sale, return, rate (from), referral: [A-Z]{3} */
    tly_period_kind period_kind; /* program: "quarter" | "month" */
    uint32_t tier_count;         /* 1..TLY_TIERS_MAX */
    tly_tier tiers[TLY_TIERS_MAX];
    tly_rebate_mode rebate_mode;
    uint32_t bracket_count; /* 1..TLY_BRACKETS_MAX */
    tly_bracket brackets[TLY_BRACKETS_MAX];
    int64_t mdf_expiry_periods;  /* 1..TLY_PERIODS_SPAN_MAX */
    int64_t tier_window_periods; /* 1..TLY_PERIODS_SPAN_MAX */
    /* program, section 10 (all optional; the defaults are v1's) */
    tly_rebate_basis rebate_basis; /* rebate.basis [R11] */
    int64_t baseline_periods;      /* rebate.baseline_periods: 1..TLY_BASELINE_PERIODS_MAX,
                                    * present iff growth; else 0 */
    int64_t rebate_min;            /* rebate.min: 0..TLY_AMOUNT_MAX, default 0 [K2] */
    int64_t rebate_cap;            /* rebate.cap: 1..TLY_AMOUNT_MAX [K3] */
    bool has_rebate_cap;
    int64_t mdf_cap_per_period; /* 1..TLY_AMOUNT_MAX [K1] */
    bool has_mdf_cap;
    tly_tier_moves tier_moves;  /* [T8] */
    int64_t tier_grace_periods; /* 0..TLY_GRACE_PERIODS_MAX, default 0 [T9] */

    /* partner, sale, return, certification, claim, payout, adjust */
    tly_str partner;
    /* partner */
    tly_str name;
    tly_partner_kind kind;
    tly_str region; /* optional */

    /* sale, return */
    tly_str sku;  /* sale */
    tly_str sale; /* return: id of the original sale, same source */
    int64_t qty;  /* 1..TLY_QTY_MAX */

    /* sale, return, claim (submit/approve/pay), payout: 1..TLY_AMOUNT_MAX;
     * adjust: signed, 1 ≤ |amount| ≤ TLY_AMOUNT_MAX */
    int64_t amount;
    bool has_amount;

    /* certification */
    tly_str person;
    tly_str cert;
    /* certification, claim */
    tly_action action;
    /* certification (earned only [T13]): > at_ms; ISO-8601 in JSON lines [T10] */
    int64_t expires_ms;
    bool has_expires;

    /* rate [F1]: 1 `currency` = `rate` `to`; currency != to; both [A-Z]{3}
     * with a known minor-unit exponent [F6] (tly_currency_exponent) */
    tly_str to;
    tly_decimal rate;
    /* referral [Q1]: partner, amount, currency and the deal's name */
    tly_str deal; /* 1..TLY_NAME_BYTES_MAX */

    /* claim */
    tly_str claim;
    tly_str activity; /* optional, submit */
    tly_str reason;   /* claim: optional (reject); adjust: required */

    /* close, payout: the period text parsed. For a payout the kind is that
     * of the text ("2026-Q3" quarter, "2026-07" month). */
    tly_period_kind period_text_kind;
    int32_t period; /* index, see tly_period.h */

    /* adjust */
    tly_account account;
} tly_event;

/* Details of a validation failure, for the reply and for people. */
typedef struct tly_field_error {
    char field[64];    /* e.g. "amount", "tiers[2].mdf_bps"; "" if none */
    char message[160]; /* one sentence */
} tly_field_error;

/*
 * Decodes and validates one event.
 *
 * buf/len: exactly one MessagePack map (trailing bytes are malformed).
 * recorded_ms: the time the ledger records the event; `at` must lie in
 *   [TLY_AT_MIN_MS, recorded_ms + TLY_AT_FUTURE_MS].
 * ev: written on success; its strings borrow from buf. On failure it may
 *   hold part of the event and must not be read (every caller stops at the
 *   error). The tier and bracket arrays are written for a program only
 *   (past tier_count and bracket_count, zero); for any other type, whose
 *   counts are 0, they keep what they held.
 * fe: written on failure (may be NULL).
 *
 * Values no field rule reads (unknown keys at any level, keys the type does
 * not use) must be what JSON lines can carry — no ext, no NaN or infinity,
 * str keys, strings and keys of UTF-8 without NUL, nested at most
 * TLY_EVENT_DEPTH_MAX levels — so that every reader (export, replay,
 * verify) handles every accepted event; otherwise TLY_BAD_FIELD naming the
 * key (the innermost key above the refused value, e.g. "x-note",
 * "tiers[1].x-note", "x-note.y").
 *
 * Returns TLY_OK, TLY_MALFORMED (not a map / not MessagePack), TLY_BAD_TYPE,
 * TLY_MISSING_FIELD or TLY_BAD_FIELD. A TLY_BAD_TYPE, TLY_MISSING_FIELD or
 * TLY_BAD_FIELD always names its field in fe->field (printable UTF-8).
 */
tly_err tly_event_decode(const void *buf, size_t len, int64_t recorded_ms, tly_event *ev,
                         tly_field_error *fe);

/* Reads only the `type` and `id` of an event, without full validation; used
 * where only the identity is needed. Returns TLY_OK or the decode error. */
tly_err tly_event_peek_id(const void *buf, size_t len, tly_ev_type *type, tly_str *id);

/* Stable text of a type ("sale"), kind, action, mode or account. */
const char *tly_ev_type_name(tly_ev_type type);
const char *tly_partner_kind_name(tly_partner_kind kind);
const char *tly_action_name(tly_action action);

/* Parses a type name; TLY_OK or TLY_BAD_TYPE. */
tly_err tly_ev_type_parse(const char *s, size_t len, tly_ev_type *out);

/* True when s equals the NUL-terminated c string. */
bool tly_str_eq(tly_str s, const char *c);

/* Additions (schemas owner): text of the other enums, and the text checks
 * the decoder applies, for modules that validate outside an event (the
 * ledger checks `source` is UTF-8 [D12]). */
const char *tly_rebate_mode_name(tly_rebate_mode mode);
const char *tly_account_name(tly_account account);
const char *tly_period_kind_name(tly_period_kind kind);
/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool tly_utf8_valid(const char *s, size_t len);
/* True when s[0..len) is an event id: 1..TLY_ID_BYTES_MAX of [A-Za-z0-9._:-]. */
bool tly_id_valid(const char *s, size_t len);
/* True when s[0..len) is a source [D12]: 1..TLY_SOURCE_BYTES_MAX bytes of
 * UTF-8 without control bytes (below 0x20, 0x7f). */
bool tly_source_valid(const char *s, size_t len);

#endif
