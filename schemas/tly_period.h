/*
 * tly_period.h — calendar periods (quarters and months, UTC) and time text.
 *
 * A period is an index on a fixed grid: for quarters year*4 + (q-1), for
 * months year*12 + (m-1). Indices of one kind compare in time order and
 * consecutive periods differ by 1, so "A + N - 1" of SPEC section 6 is plain
 * integer arithmetic. [P1] A period holds start <= t < next start, UTC.
 */
#ifndef TLY_PERIOD_H
#define TLY_PERIOD_H

#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

typedef enum tly_period_kind { TLY_PERIOD_QUARTER = 0, TLY_PERIOD_MONTH = 1 } tly_period_kind;

/* Longest period text plus NUL ("2026-Q3", "2026-07"). */
#define TLY_PERIOD_TEXT_BYTES 8u

/* Longest ISO-8601 text written by tly_time_format plus NUL
 * ("2026-07-01T12:34:56.789Z"). */
#define TLY_TIME_TEXT_BYTES 25u

/* Period index of the instant at_ms (Unix ms, UTC). at_ms may be negative. */
int32_t tly_period_of(tly_period_kind kind, int64_t at_ms);

/* Start instant (Unix ms, UTC) of period index p. */
int64_t tly_period_start_ms(tly_period_kind kind, int32_t p);

/* Parses "YYYY-Qn" (quarter) or "YYYY-MM" (month), years TLY_YEAR_MIN..MAX.
 * Writes the kind and index on success; TLY_BAD_FIELD otherwise. */
tly_err tly_period_parse(const char *s, size_t len, tly_period_kind *kind, int32_t *index);

/* Writes the text of period p into buf (at least TLY_PERIOD_TEXT_BYTES). */
void tly_period_format(tly_period_kind kind, int32_t p, char *buf);

/* Parses ISO-8601 time: "YYYY-MM-DD", "YYYY-MM-DDThh:mm[:ss[.fff]]" with an
 * optional "Z" or "+hh:mm"/"-hh:mm" offset; no offset means UTC [P6]; a date
 * alone is midnight UTC [D18]. Fractions beyond milliseconds are truncated.
 * Returns TLY_OK and writes *ms, or TLY_BAD_FIELD. */
tly_err tly_time_parse(const char *s, size_t len, int64_t *ms);

/* Writes at_ms as "YYYY-MM-DDThh:mm:ss.fffZ" into buf (TLY_TIME_TEXT_BYTES). */
void tly_time_format(int64_t at_ms, char *buf);

#endif
