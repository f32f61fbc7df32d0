/*
 * finance_out.h — how the finance commands (`tally partners | report |
 * expiring | journal`, cmd_finance.c) show the SPEC section 11 objects:
 * tables for people, CSV for spreadsheets, and the GL account codes of
 * `journal --accounts FILE`.
 *
 * Command layer only (consumers/cli); not a room's API. Every function
 * takes the reply as the query service answers it (borrowed) and writes to
 * stdout. Money in tables is the decimal amount of the currency (minor
 * units / 10^exponent, integer arithmetic); in CSV it stays minor units.
 */
#ifndef TLY_FINANCE_OUT_H
#define TLY_FINANCE_OUT_H

#include <jansson.h>
#include <stddef.h>

#include "tly_err.h"

/* Human tables. currencies maps program -> currency code (from the
 * liabilities answer: partner rows and expiring entries do not carry it);
 * it may be NULL, and a program missing from it shows 2 decimals and "-". */
void tly_fin_table_partners(const json_t *reply, const json_t *currencies);
void tly_fin_table_report(const json_t *reply);
void tly_fin_table_expiring(const json_t *reply, const json_t *currencies);
void tly_fin_table_journal(const json_t *reply);

/* CSV (RFC 4180, CRLF-free: LF line ends, a field quoted when it holds a
 * comma, a quote or a line end): one header row, one row per element of
 * the answer's list. expiring has one row per (program, partner), the
 * program's own fields first. */
void tly_fin_csv_partners(const json_t *reply);
void tly_fin_csv_report(const json_t *reply);
void tly_fin_csv_expiring(const json_t *reply);
void tly_fin_csv_journal(const json_t *reply);

/*
 * Reads `journal --accounts FILE`: a JSON object mapping account keys of
 * SPEC section 11 (contra_revenue_mdf, mdf_liability, cash,
 * contra_revenue_rebate, rebate_liability, referral_expense) to GL codes,
 * strings of 1..TLY_GL_CODE_BYTES_MAX bytes. On success *map is a new
 * reference; otherwise msg holds one line saying what is wrong (a file
 * that cannot be read, is over TLY_ACCOUNTS_FILE_BYTES_MAX, is not a JSON
 * object, names an unknown key or maps one to something else than a code)
 * and the return is TLY_USAGE, TLY_IO, TLY_TOO_LARGE or TLY_MALFORMED.
 */
tly_err tly_fin_accounts_load(const char *path, json_t **map, char *msg, size_t cap);

/* Replaces the debit and credit account keys of the journal's entries
 * with their codes in map; keys the map does not name stay as they are. */
void tly_fin_accounts_apply(json_t *journal, const json_t *map);

#endif
