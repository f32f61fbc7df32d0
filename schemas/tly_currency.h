/*
 * tly_currency.h — ISO 4217 minor units and exact decimal-to-minor-unit
 * conversion, for importing human-written amounts (`tally send --csv`,
 * SPEC [D18]). No floating point: the text is read digit by digit.
 */
#ifndef TLY_CURRENCY_H
#define TLY_CURRENCY_H

#include <stddef.h>
#include <stdint.h>

#include "tly_err.h"

/*
 * Minor-unit digits of an ISO 4217 currency (USD 2, JPY 0, KWD 3).
 * code3: three bytes (need not be NUL-terminated). Returns TLY_OK and *exp,
 * or TLY_NOT_FOUND for a code not in Tally's table (the table covers the
 * active ISO 4217 currencies; an importer should refuse an unknown code
 * rather than guess its scale).
 */
tly_err tly_currency_exponent(const char *code3, int *exp);

/*
 * Converts the decimal text s[0..len) ("1234.50", "7", "-0.25") into minor
 * units for a currency with exp minor-unit digits: "1234.5" with exp 2 is
 * 123450. Grammar: optional '-' or '+', one or more digits, optionally '.'
 * and one or more digits. More fraction digits than exp is TLY_BAD_FIELD
 * even when they are zeros ([D18]: "12.340" is not a USD amount), as is a
 * magnitude above TLY_AMOUNT_MAX, an empty string, spaces or separators.
 * Zero converts to 0; the event validator then decides whether 0 is
 * allowed. Returns TLY_OK and writes *out, or TLY_BAD_FIELD.
 */
tly_err tly_decimal_to_minor(const char *s, size_t len, int exp, int64_t *out);

/* Longest money text: sign, 19 digits, 6 group commas, point, 4 decimals,
 * a space and a 3-letter code, NUL. */
#define TLY_MONEY_TEXT_BYTES 40u

/*
 * minor units as a decimal for people: thousands grouped with commas,
 * exponent (clamped to 0..4) decimals, e.g. (-123456, 2) "-1,234.56".
 * out gets at most cap bytes (TLY_MONEY_TEXT_BYTES is always enough).
 */
void tly_money_text(int64_t minor, int exponent, char *out, size_t cap);

/* The same followed by the currency code, "1,234.56 USD"; a code without
 * a known exponent is shown with none ("1234 XXX"). */
void tly_money_text_cur(int64_t minor, const char *code3, char *out, size_t cap);

#endif
