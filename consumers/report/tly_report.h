/*
 * tly_report.h — documents for people, drawn with cairo and pango: the
 * partner statement of SPEC section 11 as a PDF (A4, vector, real fonts,
 * page breaks) or as one self-contained HTML file (inline CSS, the chart
 * as inline SVG drawn by cairo's SVG surface).
 *
 * The room renders; it does not ask anything. The command layer
 * (consumers/cli/cmd_statement.c) gathers the figures from the query
 * service and the explain fold at one seq and hands them over as one
 * statement object (JSON, money in integer minor units):
 *
 *   {"partner","name"?,"program","currency","period","status" (open|closed),
 *    "seq","activity": bool,
 *    "opening","closing"      available MDF before and after the period,
 *    "movements":{"accrued","clawed_back","adjusted","expired","pending",
 *                 "approved","paid","deficit"}    what the period's lines moved,
 *    "lines":[explain line...]  every line of the period, by seq
 *                               (tly_explain.h: "seq","kind","cause","source",
 *                               "id","period","amount", and extras by kind),
 *    "claims":[claims answer rows], "rebates":[rebate answer rows up to the
 *    period], "payable","accrued_open",
 *    "tier":{the tier answer: "tier","benefits","window_revenue",
 *            "active_certs","next","grace_left"},
 *    "expiring":{"period","amount"},
 *    "chart":[{"period","available","revenue"}]  per program period: the
 *            available MDF at its end and the cumulative net revenue}
 *
 * Money is formatted with the currency's ISO 4217 exponent by integer
 * arithmetic (tly_query_format_money); only drawing coordinates are
 * floating point. Missing optional fields show as "-".
 */
#ifndef TLY_REPORT_H
#define TLY_REPORT_H

#include <jansson.h>
#include <stddef.h>

#include "tly_err.h"

typedef enum tly_report_format {
    TLY_REPORT_HTML = 0,
    TLY_REPORT_PDF,
} tly_report_format;

/* The format a file name asks for by its extension (".html", ".htm",
 * ".pdf", ASCII case ignored). Returns TLY_OK, or TLY_USAGE for any other
 * name. */
tly_err tly_report_format_of(const char *path, tly_report_format *out);

/*
 * Writes the statement st (see above) to path in format fmt, replacing
 * the file: it is written beside path and renamed over it, so a reader
 * never sees half a statement. Returns TLY_OK; TLY_BAD_FIELD (st lacks a
 * required field: msg names it), TLY_TOO_LARGE (more than
 * TLY_STATEMENT_PAGES_MAX pages), TLY_IO (the file: msg says why) or
 * TLY_NOMEM. st is borrowed.
 */
tly_err tly_report_statement_write(const json_t *st, tly_report_format fmt, const char *path,
                                   char *msg, size_t cap);

#endif
