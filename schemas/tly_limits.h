/*
 * tly_limits.h — every limit of Tally, named with its unit last.
 *
 * Each constant says why it has its value. Tests hit each one at its edge
 * (value accepted, value + 1 rejected). Wire limits come from SPEC sections
 * 4 and 5 and may not change without a new schema version.
 */
#ifndef TLY_LIMITS_H
#define TLY_LIMITS_H

#include <stdint.h>

/* --- wire (SPEC section 4) --- */

/* Largest ingest, log-read or query frame. Bounds the memory one request can
 * pin in the ledger and keeps one request well inside one LMDB transaction. */
#define TLY_FRAME_BYTES_MAX (4u * 1024u * 1024u)

/* Events in one ingest request. Bounds the reply size and the work one
 * producer can put into one group commit. */
#define TLY_BATCH_EVENTS_MAX 4096u

/* Nesting depth accepted by the MessagePack reader. Events nest at most four
 * levels (request → events → program → tiers → tier); anything deeper is
 * malformed, and the bound keeps the recursive skip safe on hostile input. */
#define TLY_MP_DEPTH_MAX 8u

/* --- events (SPEC section 5) --- */

/* Event id: 1..64 bytes of [A-Za-z0-9._:-]. */
#define TLY_ID_BYTES_MAX 64u

/* Source (producer identity): UTF-8, 1..64 bytes [D12]. */
#define TLY_SOURCE_BYTES_MAX 64u

/* Names: partner, program, sku, cert, person, claim, display name, region,
 * tier name: 1..128 bytes. */
#define TLY_NAME_BYTES_MAX 128u

/* Free text (claim activity, reject reason, adjust reason): 1..1024 bytes.
 * The SPEC does not bound these; 1 KiB is room for a sentence or two and
 * keeps one event far below the frame limit. */
#define TLY_TEXT_BYTES_MAX 1024u

/* Money: 1 ≤ amount ≤ 10^13 minor units (10^11 dollars): large enough for
 * any single sale, small enough that sums of millions of them cannot
 * overflow int64 and that amount × 10000 bps fits in int64. */
#define TLY_AMOUNT_MAX INT64_C(10000000000000)

/* Rates in basis points: 0..10000 (0 %..100 %). */
#define TLY_BPS_MAX 10000

/* Business time: not before 2000-01-01T00:00:00Z ... */
#define TLY_AT_MIN_MS INT64_C(946684800000)
/* ... and not more than one day after the recorded time. */
#define TLY_AT_FUTURE_MS INT64_C(86400000)

/* Quantity of a sale or return: 1..10^9 units; qty is informational [S4]. */
#define TLY_QTY_MAX INT64_C(1000000000)

/* Tiers in one program and brackets in one rebate schedule. Real programs
 * have 3..6 tiers and a handful of brackets; 16 is generous and keeps a
 * decoded event a fixed size. */
#define TLY_TIERS_MAX 16u
#define TLY_BRACKETS_MAX 16u

/* Program version: 1..2^31-1. */
#define TLY_VERSION_MAX INT64_C(2147483647)

/* mdf_expiry_periods and tier_window_periods: 1..120 (ten years of months). */
#define TLY_PERIODS_SPAN_MAX INT64_C(120)

/* min_certs of a tier: 0..10000 certified (person, cert) pairs. */
#define TLY_CERTS_MAX INT64_C(10000)

/* Calendar years a period string may name (2000..9999). */
#define TLY_YEAR_MIN 2000
#define TLY_YEAR_MAX 9999

#endif
