/*
 * engine_store.c — floor 1 of the engine (see engine_internal.h): flush
 * (state, views, exceptions through the sink, then the cache's trim) and
 * load (state entries back from the view store). The records are
 * engine_records.c's (floor 4), the documents engine_views.c's (floor 2),
 * the tables engine_state.c's (floor 3).
 *
 * State keys, in the order load needs them (LMDB returns keys sorted):
 *   "S/0/<from><to>"           the rates of one currency pair (every shard)
 *   "S/1/<program>"            program rules, periods, liability sums
 *   "S/2/<u8 len src><src><id>" one registered sale (every shard)
 *   ("Z/<u64be seq>"            with a sale source: one of the shard's own
 *                               partners' sales, last in key order)
 *   "S/3/<0><be32 bucket><u8 len p><p><claim>" one claim (owning shard),
 *                              by the bucket of its submit's seq; written
 *                              before buckets "S/3/<u8 len p><p><claim>"
 *   "S/4/<partner>"            a partner: its enrollment (every shard
 *                              that saw it enroll), and for the owning
 *                              shard its money state, rows, certs, claim
 *                              count, held events and liability share
 *   "S/5/<u8 len p><p><period>" a chunk of an owned partner's archived rows
 *                              (written before "S/7/")
 *   "S/6/<partner>"            an owned partner's tier history
 *   "S/7/<period><u8 len p><p>" a chunk of an owned partner's archived rows
 * Programs come first because sales, claims and partners name them; claims
 * before partners because a partner (written before ordinals) lists its
 * claims by id; archived rows and histories after the partner that counts
 * them. With a store
 * only the rates and programs are loaded: the rest is read when an event
 * needs it.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rules.h"
#include "engine_stage.h"
#include "tly_assert.h"
#include "tly_os.h"

/* With flush drops, the partners a flush writes between two returns of
 * the heap's free pages to the system (flush_partners). Each return walks
 * the heap's free chunks, a few ms; fewer returns leave more of the
 * partners' memory counted until the stage is written. */
#define ENG_FLUSH_RELEASE_PARTNERS 25000u

/* One flush: the sink, and the two buffers every record and document of
 * the flush is built in (reused, so a document costs no allocation). */
typedef struct flush_ctx {
    tly_engine *e;
    tly_kv_put_fn fn;
    void *ctx;
    msgpack_sbuffer sb;
    tly_mpw pk;   /* writes into sb */
    eng_buf json; /* the document being written; also a sale record */
} flush_ctx;

/* key = prefix ‖ body */
static size_t mkkey(char *buf, const char *prefix, const char *body, size_t len)
{
    size_t pl = strlen(prefix);
    TLY_ASSERT(pl + len <= ENG_KEY_BYTES_MAX);
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, body, len);
    return pl + len;
}

/* Stores what the packer holds under prefix ‖ body, and empties it. */
static tly_err put_packed(flush_ctx *f, const char *prefix, const char *body, size_t len)
{
    char key[ENG_KEY_BYTES_MAX];
    size_t klen = mkkey(key, prefix, body, len);
    if (f->pk.failed || f->sb.data == NULL)
        return TLY_NOMEM;
    tly_err err = f->fn(f->ctx, key, klen, f->sb.data, f->sb.size);
    msgpack_sbuffer_clear(&f->sb);
    return err;
}

/* Starts a document in f->json, emptied (it may hold a sale record). */
static void json_begin(flush_ctx *f, eng_jw *w)
{
    f->json.len = 0;
    eng_jw_init_text(w, &f->json);
}

/* Stores the document f->json holds (one view or exception, written by
 * the text back end) under prefix ‖ body, and empties the buffer. */
static tly_err put_json(flush_ctx *f, const char *prefix, const char *body, size_t len)
{
    if (f->json.failed)
        return TLY_NOMEM;
    char key[ENG_KEY_BYTES_MAX];
    size_t klen = mkkey(key, prefix, body, len);
    tly_err err = f->fn(f->ctx, key, klen, f->json.data, f->json.len);
    f->json.len = 0;
    return err;
}

/* ---- flush ---- */

/* Moves amounts by period (ascending) into the sums of *v: sub or add. */
static tly_err shares_move(eng_share **v, uint32_t *n, uint32_t *cap, const eng_share *x,
                           uint32_t xn, bool sub)
{
    for (uint32_t i = 0; i < xn; i++) {
        uint32_t k = 0;
        while (k < *n && (*v)[k].period < x[i].period)
            k++;
        if (k == *n || (*v)[k].period != x[i].period) {
            TRY(eng_grow((void **)v, cap, *n + 1, sizeof **v));
            memmove(&(*v)[k + 1], &(*v)[k], (*n - k) * sizeof **v);
            (*v)[k] = (eng_share){.period = x[i].period};
            (*n)++;
        }
        TRY((sub ? tly_money_sub : tly_money_add)((*v)[k].amount, x[i].amount, &(*v)[k].amount));
        if ((*v)[k].amount == 0) { /* what is stored does not depend on the flushes */
            memmove(&(*v)[k], &(*v)[k + 1], (*n - k - 1) * sizeof **v);
            (*n)--;
        }
    }
    return TLY_OK;
}

/* Moves member st's open rebate figures in its program's estimate from
 * what its last flush stored to what they are now (as settle_share). */
static tly_err settle_opens(eng_program *g, eng_pstate *st)
{
    eng_share *now;
    uint32_t n;
    TRY(eng_open_figures(&g->rules, st, &now, &n));
    tly_err err = TLY_OK;
    if (n == st->open_count && (n == 0 || memcmp(now, st->opens, n * sizeof *now) == 0)) {
        free(now);
        return TLY_OK;
    }
    err =
        shares_move(&g->open_rebate, &g->open_count, &g->open_cap, st->opens, st->open_count, true);
    if (err == TLY_OK)
        err = shares_move(&g->open_rebate, &g->open_count, &g->open_cap, now, n, false);
    if (err != TLY_OK) {
        free(now);
        return err;
    }
    eng_pstate_release(st, st->opens);
    st->opens = now;
    st->open_count = n;
    g->dirty = true;
    return TLY_OK;
}

/* Moves owned member pp's share of its program's liabilities from what
 * its last flush stored to what it is now; the program's sums follow. A
 * settled share is unchanged, so settling again (a retried flush) adds
 * nothing. TLY_OVERFLOW when a sum leaves int64. */
static tly_err settle_share(tly_engine *e, eng_partner *pp)
{
    eng_program *g = &e->programs[pp->program];
    eng_liab now, sum = g->liab;
    TRY(settle_opens(g, pp->st));
    TRY(eng_liab_of(&g->rules, pp->st, &now));
    if (memcmp(&now, &pp->liab, sizeof now) == 0)
        return TLY_OK;
    TRY(eng_liab_add(&sum, &pp->liab, true));
    TRY(eng_liab_add(&sum, &now, false));
    g->liab = sum;
    g->dirty = true;
    pp->liab = now;
    return TLY_OK;
}

static tly_err flush_programs(flush_ctx *f, const bool *liab)
{
    tly_engine *e = f->e;
    for (uint32_t i = 0; i < e->program_count; i++) {
        const eng_program *g = &e->programs[i];
        if (g->dirty) {
            eng_pack_program(&f->pk, g);
            TRY(put_packed(f, "S/1/", g->name, g->name_len));
        }
        if (g->dirty || liab[i]) {
            eng_jw w;
            json_begin(f, &w);
            eng_liability_write(&w, g, &g->liab);
            TRY(put_json(f, "V/l/", g->name, g->name_len));
        }
        if (g->dirty) {
            eng_jw w;
            json_begin(f, &w);
            eng_report_write(&w, g);
            TRY(put_json(f, "V/R/", g->name, g->name_len));
        }
    }
    for (uint32_t i = 0; i < e->pair_count; i++) {
        const eng_rate_pair *rp = &e->pairs[i];
        if (!rp->dirty)
            continue;
        char pair[6];
        memcpy(pair, rp->from, 3);
        memcpy(pair + 3, rp->to, 3);
        eng_pack_rates(&f->pk, rp);
        TRY(put_packed(f, "S/0/", pair, sizeof pair));
    }
    return TLY_OK;
}

/* The store's record of changed sale s (flush_ctx f). */
static tly_err write_sale(void *ctx, const eng_sale *s)
{
    flush_ctx *f = ctx;
    if (!eng_pack_sale(&f->json, s))
        return TLY_NOMEM;
    char body[ENG_KEY_BYTES_MAX], key[ENG_KEY_BYTES_MAX];
    size_t klen = mkkey(key, eng_sale_store_prefix(f->e), body, eng_sale_store_body(f->e, s, body));
    return f->fn(f->ctx, key, klen, f->json.data, f->json.len);
}

/* The changed sales. With drops, when the trim after the flush would drop
 * some, those leave the cache as they are passed, and the vector's pages
 * they and the ones moved leave behind go back to the system as the walk
 * goes (eng_sales_flush_compact), before the partners' pages are written. */
static tly_err flush_sales(flush_ctx *f, bool drops)
{
    tly_engine *e = f->e;
    uint64_t cut = drops ? eng_cache_cut(e, false) : 0;
    if (cut > 0)
        return eng_sales_flush_compact(e, cut, write_sale, f);
    for (uint32_t i = 0; i < e->dirty_sale_count; i++)
        TRY(write_sale(f, &e->sales[e->dirty_sales[i]]));
    return TLY_OK;
}

/* The changed claims of owned partner pp. */
static tly_err flush_claims(flush_ctx *f, const eng_partner *pp)
{
    for (uint32_t i = 0; i < pp->st->claim_count; i++) {
        const eng_claim *c = &pp->st->claims[i];
        if (!c->dirty)
            continue;
        char key[ENG_CLAIM_KEY_BYTES_MAX];
        uint32_t klen =
            eng_claim_store_key(key, c->bucket, pp->id, pp->id_len, c->id.ptr, c->id.len);
        eng_pack_claim(&f->pk, c);
        TRY(put_packed(f, "S/3/", key, klen));
    }
    return TLY_OK;
}

/* Whether owned member pp keeps its archived rows in memory after a
 * flush: without a store always (they are the whole state); with one only
 * while the rules read back into them (eng_arch_needed). */
static bool archive_kept(const tly_engine *e, const eng_partner *pp)
{
    const eng_program *g = &e->programs[pp->program];
    const eng_pstate *st = pp->st;
    return e->store.get == NULL ||
           (st->arch_all && eng_arch_needed(st, &g->rules, g->eop, g->arch_h));
}

/* A chunk where rows[0].chunk_prev says it is stored. */
static tly_err put_arch_chunk(flush_ctx *f, const eng_partner *pp, const eng_row *rows)
{
    char key[1 + TLY_NAME_BYTES_MAX + 4];
    bool old = rows[0].chunk_prev == ENG_ARCH_OLD;
    uint32_t klen = old ? eng_arch_key(key, pp->id, pp->id_len, rows[0].period)
                        : eng_arch_key7(key, pp->id, pp->id_len, rows[0].period);
    eng_pack_arch_chunk(&f->pk, rows);
    return put_packed(f, old ? ENG_ARCH_OLD_PREFIX : ENG_ARCH_PREFIX, key, klen);
}

/* The chunks owned partner pp's flush archives (its first plan->n rows),
 * and the archived chunks a payout changed; n is kept for clear_dirty,
 * which moves those rows once the commit holds them. */
static tly_err flush_archive(flush_ctx *f, eng_partner *pp, const eng_arch_plan *plan)
{
    const uint32_t k = ENG_ARCH_CHUNK_ROWS, n = plan->n;
    eng_pstate *st = pp->st;
    for (uint32_t i = 0; i < st->arch_n; i += k) {
        bool dirty = false;
        for (uint32_t j = i; j < i + k; j++)
            dirty |= st->arch[j].dirty;
        if (dirty)
            TRY(put_arch_chunk(f, pp, &st->arch[i]));
    }
    int32_t prev = st->arch_head; /* the chain goes on from the newest chunk */
    for (uint32_t i = 0; i < n; i += k) {
        st->rows[i].chunk_prev = prev; /* a redone flush sets the same */
        TRY(put_arch_chunk(f, pp, &st->rows[i]));
        prev = st->rows[i].period;
    }
    if (archive_kept(f->e, pp))
        TRY(eng_grow((void **)&st->arch, &st->arch_cap, st->arch_n + n, sizeof *st->arch));
    /* the room eng_arch_commit's rev takes */
    TRY(eng_pstate_grow(st, (void **)&st->rev, &st->rev_cap, plan->rev_count, sizeof *st->rev));
    st->arch_pending = n;
    return TLY_OK;
}

/* The body of a key under program g: u8 length ‖ name ‖ rest. */
static size_t program_body(char *buf, const eng_program *g, const char *rest, size_t len)
{
    buf[0] = (char)(unsigned char)g->name_len;
    memcpy(buf + 1, g->name, g->name_len);
    memcpy(buf + 1 + g->name_len, rest, len);
    return 1 + g->name_len + len;
}

/* Member p's expiring funds ("E/<program key><partner>"), a scan away for
 * the query service (its journal rows: flush_journal). They change only
 * when the oldest buckets do (a sale credits the newest), so the document
 * is written only when its amount differs from what the last flush stored.
 * Its row of the partner list is rendered from its record when read
 * (tly_view_reader_doc, view 'P'), not stored: every batch changed nearly
 * every row (a sale moves "available"), and at 10M events of `bench fold`
 * on one shard the rows were 14 MB of puts per commit and 21 MB of the
 * commit's peak. */
static tly_err flush_finance(flush_ctx *f, uint32_t p)
{
    eng_partner *pp = &f->e->partners[p];
    const eng_program *g = &f->e->programs[pp->program];
    eng_jw w;
    int64_t amount = eng_expiring_of(f->e, p);
    if (pp->exp_known && pp->exp_program == pp->program && pp->exp_amount == amount)
        return TLY_OK;
    char body[1 + TLY_NAME_BYTES_MAX + TLY_NAME_BYTES_MAX];
    json_begin(f, &w);
    eng_view_write(&w, f->e, 'e', p, false);
    TRY(put_json(f, "E/", body, program_body(body, g, pp->id, pp->id_len)));
    pp->exp_next = amount; /* kept by clear_dirty, once the whole flush succeeded */
    pp->exp_next_set = true;
    return TLY_OK;
}

/* Stores partner p's state and, when owned, its changed claims and (when
 * enrolled) its section 11 documents. Its balance, rebate, tier and claims
 * documents are rendered from that state when read (engine_reader.c). What
 * is stored keeps the MDF invariant (TLY_ASSERT, every build type). */
static tly_err flush_partner(flush_ctx *f, uint32_t p)
{
    eng_partner *pp = &f->e->partners[p];
    TLY_ASSERT(pp->st == NULL || eng_invariant_ok(pp->st));
    bool member = pp->owned && pp->program != ENG_NONE;
    const eng_program *g = pp->program == ENG_NONE ? NULL : &f->e->programs[pp->program];
    eng_arch_plan plan = {.head = ENG_ARCH_NONE}; /* a member's: eng_arch_plan_of */
    if (member)
        TRY(settle_share(f->e, pp));
    if (member)
        TRY(eng_arch_plan_of(pp->st, g, &plan));
    eng_pack_partner(&f->pk, pp, g, &plan);
    TRY(put_packed(f, TLY_ENGINE_PARTNER_PREFIX, pp->id, pp->id_len));
    if (pp->owned && pp->st->cold_dirty) {
        eng_pack_cold(&f->pk, pp->st);
        TRY(put_packed(f, ENG_COLD_PREFIX, pp->id, pp->id_len));
    }
    if (member)
        TRY(flush_archive(f, pp, &plan));
    if (pp->owned)
        TRY(flush_claims(f, pp));
    return member ? flush_finance(f, p) : TLY_OK;
}

static tly_err flush_excs(flush_ctx *f)
{
    tly_engine *e = f->e;
    for (uint32_t i = e->exc_flushed; i < e->exc_count; i++) {
        const eng_exc *x = &e->excs[i];
        char body[12];
        tly_be64_put(body, x->at_seq);
        tly_be32_put(body + 8, x->n);
        eng_jw w;
        json_begin(f, &w);
        eng_exc_write(&w, x);
        TRY(put_json(f, "X/", body, sizeof body));
    }
    return TLY_OK;
}

/* A dirty partner by its id, for sorting. head: the id's first 8 bytes as
 * a big-endian number, zeros after a shorter id. Two ids whose heads
 * differ are in the order of their heads (a zero pads, and no byte is
 * below it); only equal heads need the ids, which lie all over the heap:
 * ids of up to 8 bytes (`bench fold`'s) are sorted without reading one
 * (ordering 100,000 partners twice a flush was 2 % of a 10M fold). */
typedef struct flush_ref {
    uint64_t head;
    const char *id;
    uint32_t len;
    uint32_t index;
} flush_ref;

static int ref_cmp(const void *a, const void *b)
{
    const flush_ref *x = a, *y = b;
    if (x->head != y->head)
        return x->head < y->head ? -1 : 1;
    int c = memcmp(x->id, y->id, x->len < y->len ? x->len : y->len);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static uint64_t id_head(const char *id, uint32_t len)
{
    unsigned char b[8] = {0};
    memcpy(b, id, len < sizeof b ? len : sizeof b);
    return tly_be64_get(b);
}

/* Puts dirty_partners[lo, hi) in the order of their ids, so the flush
 * writes each part of the store ("S/4/", "E/", ...) in key order: each put
 * lands next to the one before, on a page the write transaction holds
 * already, not on a random page of a store far larger than the CPU's
 * caches (3M events of `bench fold`: LMDB's share of a fold 19 % → 13 %).
 * Sales come in log order, which is usually their ids' order already.
 * Without memory for sorting the order stays as it is (only slower). */
static void sort_dirty_range(tly_engine *e, uint32_t lo, uint32_t hi)
{
    uint32_t n = hi - lo;
    flush_ref *r = malloc(((size_t)n + 1) * sizeof *r);
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < n; i++) {
        const eng_partner *pp = &e->partners[e->dirty_partners[lo + i]];
        r[i] =
            (flush_ref){id_head(pp->id, pp->id_len), pp->id, pp->id_len, e->dirty_partners[lo + i]};
    }
    qsort(r, n, sizeof *r, ref_cmp);
    for (uint32_t i = 0; i < n; i++)
        e->dirty_partners[lo + i] = r[i].index;
    free(r);
}

static void sort_dirty_partners(tly_engine *e)
{
    sort_dirty_range(e, 0, e->dirty_partner_count);
}

static int slot_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* With drops, the order the partners are written and dropped in: by slot,
 * the order the fold read them in and about the order of their memory, so
 * that what each run of ENG_FLUSH_RELEASE_PARTNERS frees lies together
 * and goes back to the system at the run's end; each run in id order for
 * the store (sort_dirty_range). In id order throughout, the partners
 * freed lay all over the heap between partners still held, and until the
 * last run nearly nothing went back while the stage grew (10M events on
 * one shard: the RSS rose from 250 to 269 MiB over the four runs, then
 * fell to 202 at the last return). */
static void order_for_release(tly_engine *e)
{
    uint32_t n = e->dirty_partner_count;
    if (n < 2)
        return; /* dirty_partners may be NULL, which qsort must not get */
    qsort(e->dirty_partners, n, sizeof *e->dirty_partners, slot_cmp);
    for (uint32_t lo = 0; lo < n; lo += ENG_FLUSH_RELEASE_PARTNERS)
        sort_dirty_range(e, lo,
                         n - lo < ENG_FLUSH_RELEASE_PARTNERS ? n : lo + ENG_FLUSH_RELEASE_PARTNERS);
}

/* A changed journal row: its act, its partner, and its (program, period)
 * as an index into the flush's sorted list of them. */
typedef struct jrow {
    uint32_t pair, p;
    const eng_act *act;
} jrow;

typedef struct jpair {
    uint32_t program;
    int32_t period;
} jpair;

static int jpair_cmp(const void *a, const void *b)
{
    const jpair *x = a, *y = b;
    if (x->program != y->program)
        return x->program < y->program ? -1 : 1;
    return (x->period > y->period) - (x->period < y->period);
}

/* Index of (program, period) in the n pairs (a handful change in a batch);
 * n when absent. */
static uint32_t jpair_find(const jpair *v, uint32_t n, uint32_t program, int32_t period)
{
    uint32_t k = 0;
    while (k < n && (v[k].program != program || v[k].period != period))
        k++;
    return k;
}

/* The journal rows to write: the acts of closed periods that the dirty
 * members still hold (partner ids ascending: the dirty list is sorted).
 * A close dirties every member and the flush after it drops what it wrote
 * (drop_closed_acts), so each closed period's rows are written exactly
 * once, at the flush after its close; an open period's figures live in the
 * partner records only, which every flush writes anyway (a row per
 * partner and period per commit was a third of what the section 11
 * aggregates cost the fold). *pairs: the (program, period) pairs they
 * fall in, unsorted. */
static tly_err journal_collect(const tly_engine *e, jrow **rows, uint32_t *nrows, jpair **pairs,
                               uint32_t *npairs)
{
    uint32_t rcap = 0, pcap = 0;
    for (uint32_t i = 0; i < e->dirty_partner_count; i++) {
        uint32_t p = e->dirty_partners[i];
        const eng_partner *pp = &e->partners[p];
        if (!pp->owned || pp->program == ENG_NONE)
            continue;
        uint32_t closed = eng_acts_closed(pp->st, &e->programs[pp->program]);
        for (uint32_t a = 0; a < closed; a++) {
            const eng_act *act = &pp->st->acts[a];
            uint32_t k = jpair_find(*pairs, *npairs, pp->program, act->period);
            if (k == *npairs)
                TRY(ENG_PUSH(*pairs, *npairs, pcap, ((jpair){pp->program, act->period})));
            TRY(ENG_PUSH(*rows, *nrows, rcap, ((jrow){k, p, act})));
        }
    }
    return TLY_OK;
}

/* The changed journal rows in key order: by (program, period), and within
 * one by partner id; a counting sort (stable) over the pairs' order. */
static tly_err journal_rows(const tly_engine *e, jrow **out, uint32_t *count)
{
    jrow *rows = NULL, *sorted = NULL;
    jpair *pairs = NULL;
    uint32_t n = 0, np = 0, *rank = NULL, *at = NULL;
    tly_err err = journal_collect(e, &rows, &n, &pairs, &np);
    if (err == TLY_OK && n > 0) {
        jpair *order = malloc((size_t)np * sizeof *order);
        rank = calloc(np, sizeof *rank);
        at = calloc((size_t)np + 1, sizeof *at);
        sorted = malloc((size_t)n * sizeof *sorted);
        if (order && rank && at && sorted) {
            memcpy(order, pairs, (size_t)np * sizeof *order);
            qsort(order, np, sizeof *order, jpair_cmp);
            for (uint32_t k = 0; k < np; k++) /* the place of pairs[k] in key order */
                rank[k] = jpair_find(order, np, pairs[k].program, pairs[k].period);
            for (uint32_t i = 0; i < n; i++)
                at[rank[rows[i].pair] + 1]++;
            for (uint32_t k = 0; k < np; k++)
                at[k + 1] += at[k];
            for (uint32_t i = 0; i < n; i++)
                sorted[at[rank[rows[i].pair]]++] = rows[i];
        } else {
            err = TLY_NOMEM;
        }
        free(order);
    }
    free(rows);
    free(pairs);
    free(rank);
    free(at);
    if (err != TLY_OK) {
        free(sorted);
        return err;
    }
    *out = sorted;
    *count = n;
    return TLY_OK;
}

/* The journals of the periods just closed ("J/<program key><u32be period
 * + 2^31><first partner>", MessagePack: engine_records.h) in key order, in
 * chunks of up to ENG_JOURNAL_CHUNK_ROWS partners of one period: v[k..]
 * holds the rows in (program, period, partner) order. */
static tly_err flush_journal(flush_ctx *f)
{
    const tly_engine *e = f->e;
    jrow *v;
    uint32_t n;
    TRY(journal_rows(e, &v, &n));
    tly_err err = TLY_OK;
    char body[1 + TLY_NAME_BYTES_MAX + 4 + TLY_NAME_BYTES_MAX];
    for (uint32_t k = 0, end; k < n && err == TLY_OK; k = end) {
        end = k + 1;
        while (end < n && end - k < ENG_JOURNAL_CHUNK_ROWS && v[end].pair == v[k].pair)
            end++;
        const eng_partner *first = &e->partners[v[k].p];
        size_t head = program_body(body, &e->programs[first->program], "", 0);
        tly_be32_put(body + head, (uint32_t)v[k].act->period ^ UINT32_C(0x80000000));
        memcpy(body + head + 4, first->id, first->id_len);
        tly_mpw_array(&f->pk, end - k);
        for (uint32_t i = k; i < end; i++) {
            const eng_partner *pp = &e->partners[v[i].p];
            eng_pack_journal(&f->pk, pp->id, pp->id_len, v[i].act);
        }
        err = put_packed(f, "J/", body, head + 4 + first->id_len);
    }
    free(v);
    return err;
}

/* Notes a partner the flush drops for tly_engine_read_back, up to the
 * engine's read_back_max; without memory for its id it is not noted (the
 * read-back is an optimisation). */
static void note_read_back(tly_engine *e, const eng_partner *pp)
{
    _Static_assert(TLY_NAME_BYTES_MAX <= UINT8_MAX, "an id's length is one byte");
    if (e->read_back_count >= e->read_back_max)
        return;
    uint32_t at = e->read_back_bytes;
    if (eng_grow((void **)&e->read_back_ids, &e->read_back_cap, at + 1 + pp->id_len, 1) != TLY_OK)
        return;
    e->read_back_ids[at] = (char)pp->id_len;
    memcpy(e->read_back_ids + at + 1, pp->id, pp->id_len);
    e->read_back_bytes = at + 1 + pp->id_len;
    e->read_back_count++;
}

/* Forgets the list of partners to read back, giving its memory back. */
static void forget_read_back(tly_engine *e)
{
    free(e->read_back_ids);
    e->read_back_ids = NULL;
    e->read_back_bytes = e->read_back_cap = e->read_back_count = 0;
}

/* The read-back list in the store's key order: n refs (NULL without
 * memory, or with nothing to read). */
static flush_ref *read_back_sorted(const tly_engine *e)
{
    uint32_t n = e->read_back_count;
    flush_ref *r = n == 0 || e->broken || e->store.get == NULL ? NULL : malloc(n * sizeof *r);
    if (r == NULL)
        return NULL;
    const char *at = e->read_back_ids;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = (unsigned char)*at;
        r[i] = (flush_ref){id_head(at + 1, len), at + 1, len, i};
        at += 1 + len;
    }
    qsort(r, n, sizeof *r, ref_cmp);
    return r;
}

/* Partner p (ENG_NONE: none) was read back: it counts as held. */
static uint32_t read_back_mark(tly_engine *e, uint32_t p)
{
    if (p == ENG_NONE)
        return 0;
    e->partners[p].read_back = true;
    e->read_back_idle++;
    return 1;
}

/* Reads back the partners of r[0..n) in order; *read counts them. False
 * when one could not be read, which ends the read-back. */
static bool read_back_refs(tly_engine *e, const flush_ref *r, uint32_t n, uint32_t *read)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p;
        if (eng_map_get(&e->partner_map, r[i].id, r[i].len, eng_hash(r[i].id, r[i].len)) !=
            ENG_NONE)
            continue; /* in memory already */
        if (eng_partner_find(e, r[i].id, r[i].len, &p) != TLY_OK)
            return false;
        *read += read_back_mark(e, p);
    }
    return true;
}

uint32_t tly_engine_read_back(tly_engine *e)
{
    uint32_t read = 0;
    flush_ref *r = read_back_sorted(e);
    if (r != NULL)
        (void)read_back_refs(e, r, e->read_back_count, &read);
    free(r);
    forget_read_back(e);
    return read;
}

struct tly_engine_read_split {
    flush_ref *refs;   /* the whole list, sorted; the engine's half first */
    uint32_t mine;     /* refs the engine reads itself */
    eng_read_job *job; /* the rest, prepared */
    uint32_t jobs;
    eng_pstate *scratch; /* the decoding thread's */
};

tly_engine_read_split *tly_engine_read_back_begin(tly_engine *e, uint32_t min)
{
    if (e->read_back_count < min || e->read_back_count < 2)
        return NULL;
    tly_engine_read_split *s = calloc(1, sizeof *s);
    flush_ref *r = s != NULL ? read_back_sorted(e) : NULL;
    uint32_t n = e->read_back_count, mine = n / 2;
    eng_read_job *job = r != NULL ? calloc(n - mine, sizeof *job) : NULL;
    if (job == NULL) {
        free(r);
        free(s);
        return NULL;
    }
    *s = (tly_engine_read_split){.refs = r, .mine = mine, .job = job};
    /* A store error ends the list there, as it would end the read-back. */
    for (uint32_t i = mine; i < n; i++) {
        eng_read_job *j = &job[i - mine];
        *j = (eng_read_job){.id = r[i].id, .len = r[i].len, .h = eng_hash(r[i].id, r[i].len)};
        if (eng_read_job_prepare(e, j) != TLY_OK)
            break;
        s->jobs++;
    }
    return s;
}

void tly_engine_read_split_decode(tly_engine_read_split *s)
{
    for (uint32_t i = 0; i < s->jobs; i++)
        eng_read_job_decode(&s->job[i], &s->scratch);
    eng_pstate_free(s->scratch);
    s->scratch = NULL;
}

uint32_t tly_engine_read_back_finish(tly_engine *e, tly_engine_read_split *s,
                                     void (*wait)(void *ctx), void *ctx)
{
    uint32_t read = 0;
    bool go = read_back_refs(e, s->refs, s->mine, &read);
    if (wait != NULL)
        wait(ctx);
    for (uint32_t i = 0; i < s->jobs; i++) {
        uint32_t p;
        if (go && (go = eng_read_job_adopt(e, &s->job[i], &p) == TLY_OK))
            read += read_back_mark(e, p);
        eng_pstate_free(s->job[i].st); /* not adopted */
    }
    free(s->job);
    free(s->refs);
    free(s);
    forget_read_back(e);
    return read;
}

/* After a flush: the partners read back that no event changed are clean
 * entries of the cache now, kept or dropped by its trim like the others. */
static void settle_read_back(tly_engine *e)
{
    for (uint32_t p = 0; p < e->partner_slots.count && e->read_back_idle > 0; p++)
        if (e->partners[p].read_back) {
            e->partners[p].read_back = false;
            e->read_back_idle--;
        }
}

/* The dirty partners, in id order (sort_dirty_partners), or with drops in
 * runs by id (order_for_release); liab marks their programs. With drops,
 * a partner the trim after this flush would drop (looked up before the
 * cut) leaves the cache as soon as it is written, and every
 * ENG_FLUSH_RELEASE_PARTNERS of them the heap's free pages go back to the
 * system (the caller stages the puts, so the store's pages are not taking
 * that memory yet). */
static tly_err flush_partners(flush_ctx *f, bool drops, bool *liab)
{
    tly_engine *e = f->e;
    uint64_t cut = drops ? eng_cache_cut(e, true) : 0;
    for (uint32_t i = 0; i < e->dirty_partner_count; i++) {
        uint32_t p = e->dirty_partners[i];
        const eng_partner *pp = &e->partners[p];
        if (pp->owned && pp->program != ENG_NONE)
            liab[pp->program] = true;
        TRY(flush_partner(f, p));
        if (pp->used < cut) {
            note_read_back(e, pp);
            eng_partner_drop(e, p);
            e->dropped_in_flush = true;
        }
        if (drops && (i + 1) % ENG_FLUSH_RELEASE_PARTNERS == 0)
            tly_os_release_free_heap();
    }
    return TLY_OK;
}

/* The journals first: they read the closed periods' figures of the dirty
 * partners, which a flush with drops frees as it goes. Then the sales
 * (with drops, their vector's pages go back to the system once they are
 * written: flush_sales), then the partners: settling their shares moves
 * their programs' sums, which the programs' records and liability
 * documents then store. A flush reads no partner from the store (the
 * snapshot there would predate what this flush wrote), so nothing after
 * reads a dropped one.
 *
 * With drops the partners' puts are staged (engine_stage.h) and go to the
 * store only once every partner written is out of memory and the heap's
 * free pages are back with the system: the write transaction's copies of
 * the pages it changes then take the memory the partners left, in whole
 * runs. Written straight away, each partner's put came before the next
 * partner's memory was freed, and the pieces freed between partners still
 * held were too small for a page: at 10M events of `bench fold` on one
 * shard 31-64 MB of free heap stayed counted at each commit. Without drops
 * the puts go straight to the store, in the same order. */
static tly_err flush_all(flush_ctx *f)
{
    tly_engine *e = f->e;
    bool *liab = calloc(e->program_count + 1, sizeof *liab);
    if (liab == NULL)
        return TLY_NOMEM;
    sort_dirty_partners(e);
    bool drops = e->flush_drops && e->store.get != NULL;
    tly_err err = flush_journal(f);
    if (err == TLY_OK)
        err = flush_sales(f, drops);
    eng_stage stage = {0};
    tly_kv_put_fn put = f->fn;
    void *put_ctx = f->ctx;
    if (drops) {
        f->fn = eng_stage_put;
        f->ctx = &stage;
        order_for_release(e);
    }
    if (err == TLY_OK)
        err = flush_partners(f, drops, liab);
    f->fn = put;
    f->ctx = put_ctx;
    if (drops && err == TLY_OK && e->dropped_in_flush)
        eng_partners_compact(e);
    if (drops)
        tly_os_release_free_heap();
    if (err == TLY_OK)
        err = eng_stage_replay(&stage, put, put_ctx);
    eng_stage_free(&stage);
    if (err == TLY_OK)
        err = flush_programs(f, liab);
    free(liab);
    TRY(err);
    return flush_excs(f);
}

/* After a flush: the acts of closed periods are in their journal rows and
 * nothing books into them again (eng_acts_closed). */
static void drop_closed_acts(const tly_engine *e, eng_partner *pp)
{
    if (pp->program == ENG_NONE)
        return;
    eng_pstate *st = pp->st;
    uint32_t n = eng_acts_closed(st, &e->programs[pp->program]);
    if (n > 0)
        memmove(st->acts, st->acts + n, (st->act_count - n) * sizeof *st->acts);
    st->act_count -= n;
}

/* After a flush: with a store, the claims it wrote leave the partner's
 * memory (eng_claim_lookup reads one back when an event names it). */
static void drop_claims(const tly_engine *e, eng_pstate *st)
{
    if (e->store.get == NULL)
        return;
    for (uint32_t c = 0; c < st->claim_count; c++)
        eng_claim_clear(&st->claims[c]);
    st->claim_count = 0;
    st->claims_all = st->claim_total == 0;
}

/* After a flush: the rows it archived leave the partner's rows. */
static void archive_rows(const tly_engine *e, eng_partner *pp)
{
    if (pp->owned && pp->program != ENG_NONE)
        eng_arch_commit(pp->st, archive_kept(e, pp), e->programs[pp->program].arch_h);
}

static void clear_dirty(tly_engine *e)
{
    for (uint32_t i = 0; i < e->program_count; i++)
        e->programs[i].dirty = false;
    for (uint32_t i = 0; i < e->pair_count; i++)
        e->pairs[i].dirty = false;
    for (uint32_t i = 0; i < e->dirty_partner_count; i++) {
        eng_partner *pp = &e->partners[e->dirty_partners[i]];
        if (pp->id == NULL) /* dropped by the flush (flush_all) */
            continue;
        pp->dirty = false;
        if (pp->st != NULL)
            pp->st->cold_dirty = false;
        if (pp->exp_next_set) {
            pp->exp_known = true;
            pp->exp_program = pp->program;
            pp->exp_amount = pp->exp_next;
            pp->exp_next_set = false;
        }
        for (uint32_t c = 0; pp->st != NULL && c < pp->st->claim_count; c++)
            pp->st->claims[c].dirty = false;
        if (pp->st == NULL)
            continue;
        drop_claims(e, pp->st);
        drop_closed_acts(e, pp); /* written: a failed flush writes them again */
        archive_rows(e, pp);
    }
    for (uint32_t i = 0; i < e->dirty_sale_count; i++) {
        eng_sale *sale = &e->sales[e->dirty_sales[i]];
        if (sale->key != NULL) /* else dropped by the flush (flush_sales) */
            sale->dirty = false;
    }
    e->dirty_partner_count = e->dirty_sale_count = 0;
    e->exc_flushed = e->exc_count;
}

tly_err tly_engine_flush(tly_engine *e, tly_kv_put_fn put_fn, void *ctx)
{
    flush_ctx f = {.e = e, .fn = put_fn, .ctx = ctx};
    msgpack_sbuffer_init(&f.sb);
    f.pk = (tly_mpw){.b = &f.sb};
    e->dropped_in_flush = false;
    forget_read_back(e); /* a flush before the last one's list was read */
    tly_err err = flush_all(&f);
    msgpack_sbuffer_destroy(&f.sb);
    eng_buf_free(&f.json);
    if (err != TLY_OK) {
        e->broken |= e->dropped_in_flush;
        return err;
    }
    uint32_t touched = e->dirty_partner_count;
    clear_dirty(e);
    if (e->store.get != NULL)
        eng_cache_trim(e, touched);
    settle_read_back(e);
    return TLY_OK;
}

/* ---- load ---- */

static tly_err load_program(tly_engine *e, const void *val, size_t len)
{
    eng_program g;
    TRY(eng_unpack_program(&e->arena, val, len, &g));
    uint32_t gi, before = e->program_count;
    tly_err err = eng_program_find(e, g.name, g.name_len) != ENG_NONE
                      ? TLY_CORRUPT /* two records of one program */
                      : eng_program_add(e, &g, &gi);
    if (err != TLY_OK && e->program_count == before) { /* else the engine owns them */
        free(g.rep);
        free(g.open_rebate);
    }
    return err;
}

/* The rates of one pair, absent so far. */
static tly_err load_rates(tly_engine *e, const void *val, size_t len)
{
    eng_rate_pair rp;
    TRY(eng_unpack_rates(val, len, &rp));
    for (uint32_t i = 0; i < e->pair_count; i++) {
        if (memcmp(e->pairs[i].from, rp.from, 3) == 0 && memcmp(e->pairs[i].to, rp.to, 3) == 0) {
            free(rp.rates);
            return TLY_CORRUPT;
        }
    }
    tly_err err = ENG_PUSH(e->pairs, e->pair_count, e->pair_cap, rp);
    if (err != TLY_OK)
        free(rp.rates);
    return err;
}

/* "X/" entries restore the in-memory exception list (optional: the query
 * service reads them from the store; tly_engine_exceptions needs them). */
/* A string member of doc as a tly_str (len 0 when absent or null). */
static tly_str doc_str(const json_t *doc, const char *k)
{
    const json_t *v = json_object_get(doc, k);
    return json_is_string(v) ? (tly_str){json_string_value(v), (uint32_t)json_string_length(v)}
                             : (tly_str){NULL, 0};
}

/* What a stored exception is about: its event, amount and currency. */
static bool doc_about(const json_t *doc, eng_about *a)
{
    const json_t *amount = json_object_get(doc, "amount");
    tly_str cur = doc_str(doc, "currency");
    *a = (eng_about){.source = doc_str(doc, "source"),
                     .id = doc_str(doc, "event_id"),
                     .has_amount = json_is_integer(amount),
                     .amount = json_is_integer(amount) ? json_integer_value(amount) : 0};
    if (cur.len == 3)
        memcpy(a->currency, cur.ptr, 3);
    return (json_is_integer(amount) || json_is_null(amount)) && (cur.len == 3 || cur.len == 0);
}

static tly_err load_exception(tly_engine *e, const uint8_t *k, const void *val, size_t vlen)
{
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    if (doc == NULL)
        return TLY_CORRUPT;
    eng_exc x = {.at_seq = tly_be64_get(k)};
    for (int b = 0; b < 4; b++)
        x.n = (x.n << 8) | k[8 + b];
    json_t *kind = json_object_get(doc, "kind"), *partner = json_object_get(doc, "partner");
    json_t *seq = json_object_get(doc, "seq");
    tly_str detail = doc_str(doc, "detail");
    eng_about about;
    tly_err err = TLY_CORRUPT;
    x.kind = TLY_X_COUNT;
    if (json_is_string(kind) && detail.ptr != NULL && json_is_integer(seq) &&
        json_integer_value(seq) >= 0 && (uint64_t)json_integer_value(seq) <= x.at_seq &&
        (json_is_string(partner) || json_is_null(partner)) && doc_about(doc, &about))
        x.kind = tly_xkind_parse(json_string_value(kind), json_string_length(kind));
    x.seq = (uint64_t)json_integer_value(seq);
    if (x.kind != TLY_X_COUNT)
        err = eng_exc_add(e, &x, doc_str(doc, "partner"), detail, &about);
    json_decref(doc);
    TRY(err);
    e->exc_flushed = e->exc_count;
    return TLY_OK;
}

tly_err tly_engine_load(tly_engine *e, const void *key, size_t key_len, const void *val,
                        size_t val_len)
{
    const char *k = key;
    if (key_len == 2 + 12 && memcmp(k, "X/", 2) == 0)
        return load_exception(e, (const uint8_t *)k + 2, val, val_len);
    if (key_len < 5 || memcmp(k, "S/", 2) != 0 || k[3] != '/')
        return TLY_CORRUPT;
    switch (k[2]) {
    case '0':
        return load_rates(e, val, val_len);
    case '1':
        return load_program(e, val, val_len);
    case '2':
        return key_len - 4 > 1 + TLY_SOURCE_BYTES_MAX + TLY_NAME_BYTES_MAX
                   ? TLY_CORRUPT
                   : eng_sale_load(e, k + 4, (uint32_t)(key_len - 4), val, val_len);
    case '3':
        return eng_claim_stash(e, k + 4, key_len - 4, val, val_len);
    case '4':
        return eng_partner_load(e, val, val_len);
    case '5':
        return eng_arch_load(e, k + 4, key_len - 4, val, val_len);
    case '6':
        return eng_cold_load(e, k + 4, key_len - 4, val, val_len);
    case '7':
        return eng_arch7_load(e, k + 4, key_len - 4, val, val_len);
    default:
        return TLY_CORRUPT;
    }
}
