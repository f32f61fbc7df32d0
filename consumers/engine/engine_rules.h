/*
 * engine_rules.h — floor 2 of the engine (see engine_internal.h): the rules
 * of SPEC sections 6 and 9, one file per family of events, and the section
 * 8 documents. Floor 1 (tly_engine.c's dispatch, engine_store.c's flush)
 * calls them; they call floors 3 to 6 and never each other.
 */
#ifndef TLY_ENGINE_RULES_H
#define TLY_ENGINE_RULES_H

#include "engine_state.h"

/* printf arguments of a tly_str: "%.*s". */
#define STR_ARGS(s) (int)(s).len, (s).ptr

/* ---- programs and closes (engine_program.c) ---- */

/* A program event: the first version creates it, a later one replaces its
 * rules [G1] [G2] [G3] [G8]. */
tly_err eng_on_program(tly_engine *e, eng_pos pos, const tly_event *ev);
/* A close of the earliest open period: every owned member is closed [L1]
 * [L2] [T7]. */
tly_err eng_on_close(tly_engine *e, eng_pos pos, const tly_event *ev);
/* A rate event: the pair's rate from its at on [F1]. */
tly_err eng_on_rate(tly_engine *e, eng_pos pos, const tly_event *ev);

/* ---- enrollment, held events, sales, returns, certifications
 * (engine_sales.c) ---- */

/* A partner event: enrollment folds the held events [E1] [E2] [E3]. */
tly_err eng_on_partner(tly_engine *e, eng_pos pos, const tly_event *ev);
/* A sale of record rec (its source names the sale with ev's id). */
tly_err eng_on_sale(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev);
/* A return of the sale (rec's source, ev's sale). */
tly_err eng_on_return(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev);
/* A certification earned, expired or revoked [T4]. */
tly_err eng_on_cert(tly_engine *e, eng_pos pos, const tly_event *ev);
/* A referral of record rec: a fee, held, late and converted like a sale
 * [Q1]. */
tly_err eng_on_referral(tly_engine *e, const tly_record *rec, eng_pos pos, const tly_event *ev);

/* ---- claims, payouts and adjustments (engine_claims.c) ---- */

/* A claim, payout or adjust event; unknown_partner when the partner is
 * not enrolled [E7]. */
tly_err eng_on_partner_money(tly_engine *e, eng_pos pos, const tly_event *ev);

/* ---- the section 8 documents (engine_views.c) ---- */

/* The section 8 documents against a writer ('b', 'r', 't', 'c'), and the
 * section 11 partner row ('P') and expiring funds ('e'). with_seq adds
 * "seq" (API objects); the stored documents leave it out. */
void eng_view_write(eng_jw *w, const tly_engine *e, char view, uint32_t p, bool with_seq);
/* A member's row of `tally partners` [section 11] (view 'P'): partner id
 * of program g, its state st. */
void eng_partner_row_write(eng_jw *w, const eng_program *g, const char *id, size_t id_len,
                           const eng_pstate *st);
/* What the close of owned member p's earliest open period will expire of
 * its funds: the amount of its 'e' document. */
int64_t eng_expiring_of(const tly_engine *e, uint32_t p);
/* Program g's report sums of this shard, as stored under "V/R/". */
void eng_report_write(eng_jw *w, const eng_program *g);
/* Program g's liabilities share l, as stored under "V/l/". */
void eng_liability_write(eng_jw *w, const eng_program *g, const eng_liab *l);
/* Exception x as stored under "X/" and served: {"seq","kind","partner",
 * "detail"}. */
void eng_exc_write(eng_jw *w, const eng_exc *x);

#endif
