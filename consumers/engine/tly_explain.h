/*
 * tly_explain.h — explainable balances: every MDF and rebate figure of one
 * partner traced to the events that moved it (`tally explain`).
 *
 * A collector sets the engine's trace hook (tly_engine_set_trace) for one
 * partner and keeps every line the fold reports. After the fold it builds
 * a report: the MDF lines with their sums checked against the engine's own
 * balance view, and per rebate period the revenue lines, the bracket, the
 * adjustments and the payouts checked against the rebate view.
 *
 * Report (JSON object, keys in this order):
 *   {"partner","program","currency","seq","period"?,
 *    "mdf":{"lines":[line...],"totals":{accrued, clawed_back, adjusted,
 *           expired, pending, approved, paid, deficit, available},
 *           "period_totals"?:{...},"buckets":[{"period","remaining"}],
 *           "matches_balance":bool,"differences":[{"field","lines","balance"}]},
 *    "rebates":{"periods":[{"period","revenue_lines":[...],
 *           "referral_lines":[...],"slices":[{"from","bps","amount"}],
 *           "adjustments":[...],"payouts":[...],"revenue","baseline_periods":
 *           [{"period","revenue"}],"basis","baseline","bracket":{"from","bps"},
 *           "mode","bonus":{"tier","bps"}|null,"minimum","cap","rebate",
 *           "referral","status","final_seq"?,"paid","calculated","capped",
 *           "matches":bool}],"payable","accrued_open","matches":bool},
 *    "grace":[line...]}
 * A line is {"seq","kind","cause","source","id","period","amount"} plus,
 * by kind: "bucket" (bucket moves), "sale" (a return's), "claim", "tier",
 * "bps", "sale_amount" (accrual), "returned" (clawback: the reduction in
 * the program's currency), "accrual_uncapped" and "cap" (capped),
 * "deal", "referred" (referral), "tier_before", "grace",
 * "failing_closes_before", "move" (grace: amount is the count now),
 * "currency", "foreign_amount", "rate" (a converted accrual, clawback or
 * referral: the event's amount in its currency and the rate, an exact
 * decimal string), "late": true.
 * The rebate part recomputes each row from its lines alone: basis X and
 * baseline B from the revenue lines [R11], the figure min(rhe(Σ slices),
 * cap) + adjustments [K2] [K3] [R13], referral fees [Q3], then payable
 * and accrued_open; all are checked against the rebate view.
 * "totals" always sum every line (they are what the balance is checked
 * against); with a period filter "lines", "period_totals", the rebate
 * periods and "grace" are restricted to that effective period.
 */
#ifndef TLY_EXPLAIN_H
#define TLY_EXPLAIN_H

#include <jansson.h>
#include <stdbool.h>

#include "tly_engine.h"
#include "tly_err.h"

typedef struct tly_explain tly_explain;

/* Creates a collector for partner and sets e's trace hook to it. Create it
 * before folding the first record into e; e must outlive it. Returns
 * TLY_OK or TLY_NOMEM. Free with tly_explain_free (NULL is a no-op), which
 * removes the hook. */
tly_err tly_explain_new(tly_engine *e, const char *partner, tly_explain **out);
void tly_explain_free(tly_explain *x);

/* Offers each record folded (after tly_engine_apply): the collector keeps
 * the ids of the partner's returns, which the engine forgets for a return
 * held until enrollment. */
void tly_explain_note(tly_explain *x, const tly_record *rec, const tly_event *ev);

/* Lines collected so far. */
size_t tly_explain_line_count(const tly_explain *x);

/*
 * Builds the report as of the engine's seq (adds the open rebate
 * estimates first; call once). period: NULL, or a period text ("2026-Q3",
 * "2026-07") restricting the lines shown. *out is a new reference;
 * *matches is true when every sum agrees with the views.
 * Returns TLY_OK, TLY_NOT_FOUND (the partner is not enrolled), TLY_BAD_FIELD
 * (period does not parse or is of the other kind than the program's) or
 * TLY_NOMEM.
 */
tly_err tly_explain_report(tly_explain *x, const char *period, json_t **out, bool *matches);

#endif
