/*
 * engine_reader.c — floor 1 of the engine (see engine_internal.h): a
 * partner's balance, rebate, tier and claims documents and its row of the
 * partner list, rendered on demand from the state a view store holds
 * (tly_view_reader, tly_engine.h).
 *
 * The flush stores a partner's state ("S/4/<partner>", its claims under
 * "S/3/", its program under "S/1/"), not these four documents: they were
 * about five times the state they are made of, every commit rewrote them
 * for every partner its batch touched, and a query reads one partner's
 * out of the thousands a commit changes. Measured on `bench fold` logs,
 * one shard: 3M events, store 1,041 → 480 MB, peak RSS 834 → 443 MB, fold
 * 22–25 % faster; 1M events, store 248 → 143 MB, peak RSS 357 → 276 MB.
 * The documents are the same bytes: eng_view_write wrote them at the flush
 * and writes them here, from the same state.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"

/* Partners (and sales) a reader's engine keeps between documents: a
 * reader renders one at a time, and a snapshot it is rebound to may be
 * of another commit's state only when the checkpoint says so (then the
 * engine is made anew). */
#define READER_CACHED_MAX 1u

struct tly_view_reader {
    uint32_t shard, shard_count;
    tly_engine *e;       /* NULL until bound */
    uint64_t checkpoint; /* of the state e's programs were read from */
    eng_buf doc;         /* the last document, NUL-terminated */
    eng_jw_members sort; /* room to sort a canonical document's members */
};

tly_err tly_view_reader_new(uint32_t shard, uint32_t shard_count, tly_view_reader **out)
{
    if (shard_count == 0 || shard >= shard_count)
        return TLY_USAGE;
    tly_view_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return TLY_NOMEM;
    r->shard = shard;
    r->shard_count = shard_count;
    *out = r;
    return TLY_OK;
}

void tly_view_reader_free(tly_view_reader *r)
{
    if (r == NULL)
        return;
    tly_engine_free(r->e);
    eng_buf_free(&r->doc);
    free(r);
}

static tly_err load_visit(void *ctx, const void *key, size_t key_len, const void *val,
                          size_t val_len)
{
    return tly_engine_load(ctx, key, key_len, val, val_len);
}

tly_err tly_view_reader_bind(tly_view_reader *r, const tly_engine_store *store, uint64_t checkpoint)
{
    tly_engine_store s = *store;
    s.partners_cached_max = READER_CACHED_MAX;
    s.sales_cached_max = READER_CACHED_MAX;
    if (r->e != NULL && r->checkpoint == checkpoint) { /* the same state: its programs */
        tly_engine_set_store(r->e, &s);
        return TLY_OK;
    }
    tly_engine_free(r->e);
    r->e = NULL;
    tly_engine *e;
    TRY(tly_engine_new(r->shard, r->shard_count, &e));
    /* The documents read a partner and its program only (no rates). */
    static const char programs[] = "S/1/";
    tly_err err = s.scan(s.ctx, programs, sizeof programs - 1, load_visit, e);
    if (err != TLY_OK) {
        tly_engine_free(e);
        return err;
    }
    tly_engine_set_seq(e, checkpoint);
    tly_engine_set_store(e, &s);
    e->reads_only = true;
    r->e = e;
    r->checkpoint = checkpoint;
    return TLY_OK;
}

/* Reads what view of owned member p needs beyond its hot state. */
static tly_err render_fill(tly_view_reader *r, char view, uint32_t p)
{
    if (view == 'c')
        TRY(eng_claims_fill(r->e, p));
    if (view == 'r')
        TRY(eng_arch_fill(r->e, p));
    if (view == 't')
        TRY(eng_partner_cold(r->e, p));
    return TLY_OK;
}

/* Renders view of owned member p into r->doc, canonical or as written. */
static tly_err render(tly_view_reader *r, char view, uint32_t p, bool canonical)
{
    TRY(render_fill(r, view, p));
    eng_jw w;
    r->doc.len = 0;
    r->doc.failed = false;
    if (canonical)
        eng_jw_init_canonical(&w, &r->doc, &r->sort);
    else
        eng_jw_init_text(&w, &r->doc);
    eng_view_write(&w, r->e, view, p, false);
    if (r->doc.failed || !eng_buf_terminate(&r->doc))
        return TLY_NOMEM;
    return w.failed ? TLY_BAD_FIELD : TLY_OK;
}

tly_err tly_view_reader_row(tly_view_reader *r, const void *val, size_t len, tly_view_row_keep keep,
                            void *ctx, const char **doc, size_t *doc_len)
{
    tly_engine *e = r->e;
    if (e == NULL)
        return TLY_USAGE;
    eng_partner_rec rec;
    TRY(eng_peek_partner(val, len, &rec));
    if (rec.owned != eng_owned(e, rec.id.ptr, rec.id.len))
        return TLY_CORRUPT; /* as the cache refuses it (partner_read) */
    if (!rec.owned || rec.program.ptr == NULL)
        return TLY_NOT_FOUND;
    uint32_t gi = eng_program_find(e, rec.program.ptr, rec.program.len);
    eng_member_head mh;
    if (gi == ENG_NONE || eng_peek_member(val, len, &mh) != TLY_OK ||
        mh.tier >= e->programs[gi].rules.tier_count)
        return TLY_CORRUPT;
    const eng_program *g = &e->programs[gi];
    const char *kind = tly_partner_kind_name(mh.kind);
    tly_view_row_head h = {
        .partner = rec.id,
        .name = mh.name,
        .program = rec.program,
        .kind = {kind, (uint32_t)strlen(kind)},
        .tier = {g->rules.tiers[mh.tier].name.ptr, g->rules.tiers[mh.tier].name.len}};
    if (keep != NULL && !keep(ctx, &h))
        return TLY_NOT_FOUND;
    eng_pstate *st = eng_pstate_new();
    if (st == NULL)
        return TLY_NOMEM;
    eng_liab liab;
    tly_err err = eng_unpack_pstate(val, len, &e->names, &e->arena, st, &liab);
    if (err == TLY_OK) {
        eng_jw w;
        r->doc.len = 0;
        r->doc.failed = false;
        eng_jw_init_text(&w, &r->doc);
        eng_partner_row_write(&w, g, rec.id.ptr, rec.id.len, st);
        err = !r->doc.failed && eng_buf_terminate(&r->doc) ? TLY_OK : TLY_NOMEM;
    }
    eng_pstate_free(st);
    if (err != TLY_OK)
        return err;
    *doc = r->doc.data;
    *doc_len = r->doc.len;
    return TLY_OK;
}

/* The enrolled member of this shard named partner (len bytes) into *p. */
static tly_err reader_member(tly_view_reader *r, const char *partner, size_t len, uint32_t *p)
{
    if (len == 0 || len > TLY_NAME_BYTES_MAX)
        return TLY_NOT_FOUND;
    TRY(eng_partner_find(r->e, partner, len, p));
    const eng_partner *pp = *p == ENG_NONE ? NULL : &r->e->partners[*p];
    return pp != NULL && pp->owned && pp->program != ENG_NONE ? TLY_OK : TLY_NOT_FOUND;
}

tly_err tly_view_reader_reply(tly_view_reader *r, char view, const char *partner, size_t len,
                              msgpack_sbuffer *out)
{
    if (r->e == NULL || (view != 'b' && view != 'r' && view != 't' && view != 'c'))
        return TLY_USAGE;
    size_t start = out->size;
    uint32_t p;
    tly_err err = reader_member(r, partner, len, &p);
    if (err == TLY_OK)
        err = render_fill(r, view, p);
    if (err == TLY_OK) {
        eng_jw w;
        eng_jw_init_mp(&w, out);
        eng_view_write(&w, r->e, view, p, true); /* e->seq: the bound checkpoint */
        err = w.mp.failed ? TLY_BAD_FIELD : TLY_OK;
    }
    eng_cache_trim(r->e, 0);
    if (err != TLY_OK)
        out->size = start;
    return err;
}

/* tly_view_reader_doc, or tly_view_reader_canonical when canonical. */
static tly_err reader_doc(tly_view_reader *r, char view, const char *partner, size_t len,
                          bool canonical, const char **doc, size_t *doc_len)
{
    if (r->e == NULL || (view != 'b' && view != 'r' && view != 't' && view != 'c' && view != 'P'))
        return TLY_USAGE;
    uint32_t p;
    tly_err err = reader_member(r, partner, len, &p);
    if (err == TLY_OK)
        err = render(r, view, p, canonical);
    eng_cache_trim(r->e, 0);
    if (err != TLY_OK)
        return err;
    *doc = r->doc.data;
    *doc_len = r->doc.len;
    return TLY_OK;
}

tly_err tly_view_reader_doc(tly_view_reader *r, char view, const char *partner, size_t len,
                            const char **doc, size_t *doc_len)
{
    return reader_doc(r, view, partner, len, false, doc, doc_len);
}

tly_err tly_view_reader_canonical(tly_view_reader *r, char view, const char *partner, size_t len,
                                  const char **doc, size_t *doc_len)
{
    return reader_doc(r, view, partner, len, true, doc, doc_len);
}
