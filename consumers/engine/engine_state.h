/*
 * engine_state.h — floor 3 of the engine (see engine_internal.h): the
 * helpers every rule shares. engine_state.c keeps the engine's tables
 * (partners, dirty marks, exceptions, keys); engine_mdf.c keeps one
 * partner's accounts (MDF buckets and deficit, rebate rows and figures,
 * the MDF invariant). The two never call each other; both may call the
 * trace hook (floor 4) and the base (floor 5).
 */
#ifndef TLY_ENGINE_STATE_H
#define TLY_ENGINE_STATE_H

#include "engine_trace.h"

/* ---- the engine's tables (engine_state.c) ---- */

/* True when this engine's shard owns partner id. */
bool eng_owned(const tly_engine *e, const char *id, size_t len);
/* Finds or creates the partner record of id; *out is its index. */
tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out);
/* Index of program name, or ENG_NONE. */
uint32_t eng_program_find(const tly_engine *e, const char *name, size_t len);
/* Marks p (and records it as touched by this apply), sale s or claim c as
 * changed since the last flush. */
tly_err eng_partner_dirty(tly_engine *e, uint32_t p);
tly_err eng_sale_dirty(tly_engine *e, uint32_t s);
tly_err eng_claim_dirty(tly_engine *e, uint32_t c);
/* Records an exception (printf-style detail) at pos; partner ENG_NONE for
 * none. Callers only record exceptions their shard keeps. */
tly_err eng_raise(tly_engine *e, eng_pos pos, tly_xkind kind, uint32_t partner, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
/* Appends x as it is (load restores stored exceptions with it). */
tly_err eng_exc_add(tly_engine *e, const eng_exc *x);
/* Interns a pair key; out->ptr is the stable identity. */
tly_err eng_pair_intern(tly_engine *e, const char *key, size_t len, eng_name *out);
/* Keys are u8 length ‖ first ‖ second: unambiguous for any bytes. Each
 * returns the key's length. */
/* The registry key of (source, id) into buf (≥ 1 + 64 + 64 bytes). */
uint32_t eng_sale_key(char *buf, const char *src, uint32_t src_len, const char *id,
                      uint32_t id_len);
/* The claim key (partner, claim) into buf (≥ 1 + 128 + 128 bytes). */
uint32_t eng_claim_key(char *buf, const char *partner, uint32_t plen, const char *claim,
                       uint32_t clen);
/* The certification pair key (person, cert) into buf (≥ 1 + 128 + 128). */
uint32_t eng_pair_key(char *buf, const char *person, uint32_t plen, const char *cert,
                      uint32_t clen);
/* Adds owned partner p to the members of g (closes evaluate them [T7]). */
tly_err eng_program_add_member(eng_program *g, uint32_t p);
/* A zeroed money state; NULL when out of memory. */
eng_pstate *eng_pstate_new(void);
/* Frees st and everything it owns; st may be NULL. */
void eng_pstate_free(eng_pstate *st);
/* Stable name of a claim status ("pending", ...). */
const char *eng_claim_status_name(uint8_t s);

/* ---- one partner's accounts (engine_mdf.c) ---- */

/* Books x ≥ 0 into the bucket of period, paying the deficit first [M1]. */
tly_err eng_credit(eng_pstate *st, int32_t period, int64_t x);
/* Takes x ≥ 0 from the buckets oldest first, the rest to the deficit [M6]. */
tly_err eng_debit(eng_pstate *st, int64_t x);
/* Σ bucket remainders − deficit; TLY_OVERFLOW when it leaves int64. */
tly_err eng_available(const eng_pstate *st, int64_t *out);
/* The rebate row of period, created when absent. */
tly_err eng_row_get(eng_pstate *st, int32_t period, eng_row **out);
/* The rebate row of period, or NULL. */
eng_row *eng_row_find(const eng_pstate *st, int32_t period);
/* Figure of a row: frozen when final, else the rules in force now [G4]. */
tly_err eng_row_figure(const eng_rules *r, const eng_row *row, int64_t *fig, int32_t *bps);
/* accrued_open and payable of a partner [P4] [R10]. */
tly_err eng_rebate_totals(const eng_rules *r, const eng_pstate *st, int64_t *open,
                          int64_t *payable);
/* Net revenue of periods from..to. */
tly_err eng_window_revenue(const eng_pstate *st, int32_t from, int32_t to, int64_t *out);
/* The MDF invariant of SPEC section 6; true when it holds. */
bool eng_invariant_ok(const eng_pstate *st);
/* Slices and figure of a rebate row under rules r, reported to t: kind is
 * TLY_TRACE_REBATE_FINAL or TLY_TRACE_REBATE_OPEN. */
void eng_trace_rebate(eng_trace *t, const eng_rules *r, const eng_row *row, tly_trace_kind kind,
                      int64_t figure);

#endif
