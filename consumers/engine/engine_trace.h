/*
 * engine_trace.h — floor 5 of the engine (see engine_internal.h): the
 * trace hook behind `tally explain` (engine_trace.c). It reads the data
 * model and writes only the trace's own state; it calls nothing above
 * floor 6. The public half (tly_engine_set_trace, tly_trace_kind_name) is
 * in tly_engine.h.
 */
#ifndef TLY_ENGINE_TRACE_H
#define TLY_ENGINE_TRACE_H

#include "engine_internal.h"

/* Starts the lines of one event for owned partner p: seq, cause, the
 * event's source and id (when seq is the record being applied, else
 * empty), effective period and lateness. No-op when p is not traced. */
void eng_trace_begin(tly_engine *e, uint32_t p, uint64_t seq, const char *cause, int32_t period,
                     bool late);
/* For a held event folded at enrollment: the source (and a sale's id) from
 * the sale key the engine kept, when begin found no record. */
void eng_trace_held(eng_pstate *st, const char *key, uint32_t key_len, bool is_sale);
/* Reports one movement with the context of the current event. */
void eng_trace_emit(eng_trace *t, tly_trace_kind kind, int32_t bucket, int64_t amount);
/* Reports a line built by the caller (from t->cur). */
void eng_trace_line(eng_trace *t, const tly_trace_line *line);
/* Attaches the trace to an owned pstate of partner id (new, or read back
 * from the store) when it is traced. */
void eng_trace_attach(tly_engine *e, eng_pstate *st, const char *id, size_t len);
/* Frees t and the partner name it owns; t may be NULL. */
void eng_trace_free(eng_trace *t);

/* One pointer test when tracing is off: the calls stay behind it. */
#define ENG_TRACE_BEGIN(st, ...)                                                                   \
    do {                                                                                           \
        if ((st)->trace != NULL)                                                                   \
            eng_trace_begin(__VA_ARGS__);                                                          \
    } while (0)

#define ENG_TRACE(st, kind, bucket, amount)                                                        \
    do {                                                                                           \
        if ((st)->trace != NULL)                                                                   \
            eng_trace_emit((st)->trace, (kind), (bucket), (amount));                               \
    } while (0)

#endif
