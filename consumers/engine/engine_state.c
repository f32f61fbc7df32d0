/*
 * engine_state.c — floor 3 (see engine_internal.h): the engine's tables.
 * Programs; the partner and sale caches, read from the view store on a
 * miss (tly_engine_set_store) and trimmed after each flush; walks over a
 * program's members; dirty marks, the exception list, the sale, claim and
 * pair keys, and the claim status names: the helpers every rule of floor
 * 2 shares. Calls the records (floor 4), the trace hook (floor 5) and the
 * base (floor 6) only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_state.h"
#include "tly_assert.h"
#include "tly_os.h"

/* Longest exception detail; details quote at most a few names. */
#define ENG_DETAIL_BYTES_MAX 512

/* Store key prefixes of the records read on a miss. */
#define KEY_SALE "S/2/"
#define KEY_CLAIM "S/3/"
#define KEY_PARTNER TLY_ENGINE_PARTNER_PREFIX
#define KEY_PREFIX_BYTES 4u

/* FNV-1a 64 of the id modulo the shard count (tly_engine.h). */
uint32_t tly_engine_shard_of(const char *partner, size_t len, uint32_t shard_count)
{
    TLY_ASSERT(shard_count >= 1);
    return (uint32_t)(eng_hash(partner, len) % shard_count);
}

/* True when this shard owns id. */
bool eng_owned(const tly_engine *e, const char *id, size_t len)
{
    return tly_engine_shard_of(id, len, e->shard_count) == e->shard;
}

/* Index of the program named name, or ENG_NONE. */
uint32_t eng_program_find(const tly_engine *e, const char *name, size_t len)
{
    return eng_map_get(&e->program_map, name, len, eng_hash(name, len));
}

/* Appends g and maps its name (which lives in the arena). */
tly_err eng_program_add(tly_engine *e, const eng_program *g, uint32_t *out)
{
    TRY(ENG_PUSH(e->programs, e->program_count, e->program_cap, *g));
    uint32_t gi = e->program_count - 1;
    TRY(eng_map_put(&e->program_map, g->name, g->name_len, eng_hash(g->name, g->name_len), gi));
    *out = gi;
    return TLY_OK;
}

/* ---- slots ---- */

/* A slot of a cache's vector *v (elements of elem bytes): a free one
 * reused, or a new one. The free list is kept as large as the vector, so
 * giving a slot back never allocates. */
static tly_err slot_take(void **v, size_t elem, eng_slots *s, uint32_t *out)
{
    if (s->free_count > 0) {
        *out = s->free[--s->free_count];
        s->live++;
        return TLY_OK;
    }
    uint32_t cap = s->cap;
    TRY(eng_grow(v, &cap, s->count + 1, elem));
    uint32_t fcap = s->free_cap;
    TRY(eng_grow((void **)&s->free, &fcap, cap, sizeof *s->free));
    s->cap = cap;
    s->free_cap = fcap;
    *out = s->count++;
    s->live++;
    return TLY_OK;
}

static void slot_give(eng_slots *s, uint32_t i)
{
    TLY_ASSERT(s->free_count < s->free_cap && s->live > 0);
    s->free[s->free_count++] = i;
    s->live--;
}

/* key = prefix ‖ body into buf (≥ KEY_PREFIX_BYTES + len; a prefix is
 * at most KEY_PREFIX_BYTES). */
static size_t store_key(char *buf, const char *prefix, const char *body, size_t len)
{
    size_t pl = strlen(prefix);
    TLY_ASSERT(pl <= KEY_PREFIX_BYTES);
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, body, len);
    return pl + len;
}

/* The stored value of prefix ‖ body: TLY_OK, TLY_NOT_FOUND (also without a
 * store), or the store's error. */
static tly_err store_get(const tly_engine *e, const char *prefix, const char *body, size_t len,
                         const void **val, size_t *vlen)
{
    if (e->store.get == NULL)
        return TLY_NOT_FOUND;
    char key[ENG_KEY_BYTES_MAX];
    TLY_ASSERT(KEY_PREFIX_BYTES + len <= sizeof key);
    size_t klen = store_key(key, prefix, body, len);
    return e->store.get(e->store.ctx, key, klen, val, vlen);
}

/* ---- partners ---- */

/* Puts a record for id (program gi, money state st or NULL) in a slot and
 * maps it; st is freed on failure. */
static tly_err partner_insert(tly_engine *e, const char *id, size_t len, uint64_t h, uint32_t gi,
                              eng_pstate *st, uint32_t *out)
{
    char *copy = eng_copy(id, len);
    uint32_t p;
    tly_err err =
        copy == NULL ? TLY_NOMEM
                     : slot_take((void **)&e->partners, sizeof *e->partners, &e->partner_slots, &p);
    if (err == TLY_OK && (err = eng_map_put(&e->partner_map, copy, (uint32_t)len, h, p)) != TLY_OK)
        slot_give(&e->partner_slots, p);
    if (err != TLY_OK) {
        free(copy);
        eng_pstate_free(st);
        return err;
    }
    e->partners[p] = (eng_partner){.id = copy,
                                   .id_len = (uint32_t)len,
                                   .program = gi,
                                   .owned = eng_owned(e, id, len),
                                   .used = e->cur_seq,
                                   .st = st};
    if (st != NULL)
        eng_trace_attach(e, st, id, len);
    *out = p;
    return TLY_OK;
}

/* The claim record val stored under key (its body after "S/3/") of the
 * partner (id, len): TLY_CORRUPT when the key is another's. */
static tly_err claim_unpack_of(const void *key, size_t klen, const void *val, size_t vlen,
                               const char *id, size_t len, eng_claim *out)
{
    tly_str partner;
    TRY(eng_unpack_claim(key, klen, val, vlen, &partner, out));
    if (partner.len == len && memcmp(partner.ptr, id, len) == 0)
        return TLY_OK;
    eng_claim_clear(out);
    return TLY_CORRUPT;
}

/* The stored record of claim of the partner (id, len) in bucket (0: under
 * the partner's own key) into *out: TLY_NOT_FOUND when there is none,
 * TLY_CORRUPT when the record under its key is another's. */
static tly_err claim_read(const tly_engine *e, const char *id, size_t len, uint32_t bucket,
                          tly_str claim, eng_claim *out)
{
    char key[ENG_CLAIM_KEY_BYTES_MAX];
    uint32_t klen = eng_claim_store_key(key, bucket, id, (uint32_t)len, claim.ptr, claim.len);
    const void *val;
    size_t vlen;
    TRY(store_get(e, KEY_CLAIM, key, klen, &val, &vlen));
    TRY(claim_unpack_of(key, klen, val, vlen, id, len, out));
    if (out->bucket == bucket)
        return TLY_OK;
    eng_claim_clear(out);
    return TLY_CORRUPT;
}

/* The bucket below b (at most claim_hi + 1) that holds claims of st, 0
 * when none does. */
static uint32_t claim_bucket_below(const eng_pstate *st, uint32_t b)
{
    while (st->claim_hi != 0 && b > st->claim_lo) {
        uint32_t d = st->claim_hi - --b;
        if (d >= ENG_CLAIM_MASK_BUCKETS || (st->claim_mask >> d & 1) != 0)
            return b;
    }
    return 0;
}

/* A walk over the places where st's claims may be stored, newest first:
 * each bucket holding some (an event names recent claims), then, when
 * some were filed before buckets, the partner's own keys (bucket 0). */
typedef struct claim_places {
    uint32_t below; /* the next bucket is below this one */
    bool done;
} claim_places;

static claim_places claim_places_of(const eng_pstate *st)
{
    return (claim_places){st->claim_hi + 1, false};
}

/* The next place of walk w into *b; false when none is left. */
static bool claim_place_next(const eng_pstate *st, claim_places *w, uint32_t *b)
{
    if (w->done)
        return false;
    uint32_t n = claim_bucket_below(st, w->below);
    if (n != 0) {
        w->below = n;
        *b = n;
        return true;
    }
    w->done = true;
    *b = 0;
    return st->claims_unbucketed;
}

/* The stored record of claim of partner pp, wherever its buckets say it
 * may be (claim_places), into *out: as claim_read. */
static tly_err claim_find(const tly_engine *e, const eng_partner *pp, tly_str claim, eng_claim *out)
{
    const eng_pstate *st = pp->st;
    claim_places w = claim_places_of(st);
    uint32_t b;
    while (claim_place_next(st, &w, &b)) {
        tly_err err = claim_read(e, pp->id, pp->id_len, b, claim, out);
        if (err != TLY_NOT_FOUND)
            return err;
    }
    return TLY_NOT_FOUND;
}

uint32_t eng_claim_bucket_of(uint64_t seq)
{
    /* below UINT32_MAX, so that claim_hi + 1 is a bucket number too */
    uint64_t b = seq >> ENG_CLAIM_BUCKET_SHIFT;
    return b >= UINT32_MAX - 2 ? UINT32_MAX - 1 : (uint32_t)b + 1;
}

void eng_claim_bucket_add(eng_pstate *st, uint32_t b)
{
    TLY_ASSERT(b != 0);
    if (st->claim_hi == 0) {
        st->claim_hi = st->claim_lo = b;
        st->claim_mask = 1;
    } else if (b > st->claim_hi) {
        uint32_t d = b - st->claim_hi;
        st->claim_mask = d >= ENG_CLAIM_MASK_BUCKETS ? 1 : st->claim_mask << d | 1;
        st->claim_hi = b;
    } else {
        uint32_t d = st->claim_hi - b;
        if (d < ENG_CLAIM_MASK_BUCKETS)
            st->claim_mask |= UINT64_C(1) << d;
        if (b < st->claim_lo)
            st->claim_lo = b;
    }
}

/* Fills claim c (its id set) of partner (id, len) from the claims
 * tly_engine_load kept, or else from its stored record. */
static tly_err claim_fill(tly_engine *e, const char *id, size_t len, eng_claim *c)
{
    char key[ENG_CLAIM_KEY_BYTES_MAX];
    uint32_t klen = eng_claim_key(key, id, (uint32_t)len, c->id.ptr, c->id.len);
    uint32_t i = eng_map_get(&e->loose_map, key, klen, eng_hash(key, klen));
    if (i != ENG_NONE && !e->loose[i].taken) {
        eng_claim_clear(c);
        *c = e->loose[i].c;
        e->loose[i].taken = true;
        e->loose[i].c = (eng_claim){0};
        return TLY_OK;
    }
    eng_claim got;
    tly_err err = claim_read(e, id, len, c->bucket, (tly_str){c->id.ptr, c->id.len}, &got);
    if (err != TLY_OK)
        return err == TLY_NOT_FOUND ? TLY_CORRUPT : err;
    /* a record written before ordinals takes its place in the list */
    if (got.ordinal != ENG_NO_ORDINAL && got.ordinal != c->ordinal) {
        eng_claim_clear(&got);
        return TLY_CORRUPT;
    }
    got.ordinal = c->ordinal;
    eng_claim_clear(c);
    *c = got;
    return TLY_OK;
}

tly_err eng_claim_fill(tly_engine *e, uint32_t p, uint32_t ci)
{
    const eng_partner *pp = &e->partners[p];
    eng_claim *c = &pp->st->claims[ci];
    return c->loaded ? TLY_OK : claim_fill(e, pp->id, pp->id_len, c);
}

/* The index in st->claims (by ordinal ascending) where ordinal belongs. */
static uint32_t claim_pos(const eng_pstate *st, uint64_t ordinal)
{
    uint32_t i;
    ENG_LOWER_BOUND(st->claims, st->claim_count, ordinal, ordinal, i);
    return i;
}

/* Appends claim c, read from a record with a new-format ordinal of st
 * (below claim_total: TLY_CORRUPT otherwise), after st's claims; st owns
 * it then, also on failure. */
static tly_err claim_append(eng_pstate *st, eng_claim *c)
{
    tly_err err = c->ordinal == ENG_NO_ORDINAL || c->ordinal >= st->claim_total
                      ? TLY_CORRUPT
                      : eng_grow((void **)&st->claims, &st->claim_cap, st->claim_count + 1,
                                 sizeof *st->claims);
    if (err != TLY_OK) {
        eng_claim_clear(c);
        return err;
    }
    st->claims[st->claim_count++] = *c;
    return TLY_OK;
}

/* Puts claim c (as claim_append; not in memory: TLY_CORRUPT otherwise) in
 * its place among st's claims. *out: its index. */
static tly_err claim_insert(eng_pstate *st, eng_claim *c, uint32_t *out)
{
    uint32_t i = claim_pos(st, c->ordinal);
    if (i < st->claim_count && st->claims[i].ordinal == c->ordinal) {
        eng_claim_clear(c);
        return TLY_CORRUPT;
    }
    TRY(claim_append(st, c));
    eng_claim last = st->claims[st->claim_count - 1];
    memmove(&st->claims[i + 1], &st->claims[i], (st->claim_count - 1 - i) * sizeof *st->claims);
    st->claims[i] = last;
    *out = i;
    return TLY_OK;
}

static int claim_cmp(const void *a, const void *b)
{
    uint64_t x = ((const eng_claim *)a)->ordinal, y = ((const eng_claim *)b)->ordinal;
    return (x > y) - (x < y);
}

/* st's claims by ordinal (qsort must not see the NULL of an empty vector). */
static void claims_order(eng_pstate *st)
{
    if (st->claim_count > 1)
        qsort(st->claims, st->claim_count, sizeof *st->claims, claim_cmp);
}

/* Orders st's claims by ordinal after claim_append put some after them:
 * one sort, not an insertion each (a partner with 10,000 claims would
 * move 50 million of them). TLY_CORRUPT when two share an ordinal. */
static tly_err claims_sort(eng_pstate *st)
{
    claims_order(st);
    for (uint32_t i = 1; i < st->claim_count; i++)
        if (st->claims[i - 1].ordinal == st->claims[i].ordinal)
            return TLY_CORRUPT;
    return TLY_OK;
}

/* After a failed read of every claim: the ones read leave again (those
 * an event changed stay, in order), so st's claims are ordered and what
 * the store holds, as before. */
static void claims_drop_clean(eng_pstate *st)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < st->claim_count; i++) {
        if (st->claims[i].dirty)
            st->claims[kept++] = st->claims[i];
        else
            eng_claim_clear(&st->claims[i]);
    }
    st->claim_count = kept;
    claims_order(st);
}

/* The filter bits of claim id: ENG_CLAIM_FILTER_K slices of its hash. */
static void claim_filter_bits(const char *id, uint32_t len, uint32_t bits[ENG_CLAIM_FILTER_K])
{
    uint64_t h = eng_hash(id, len);
    for (uint32_t k = 0; k < ENG_CLAIM_FILTER_K; k++)
        bits[k] = (uint32_t)(h >> (21 * k)) % ENG_CLAIM_FILTER_BITS;
}

void eng_claim_filter_add(eng_pstate *st, const char *id, uint32_t len)
{
    uint32_t bits[ENG_CLAIM_FILTER_K];
    claim_filter_bits(id, len, bits);
    for (uint32_t k = 0; k < ENG_CLAIM_FILTER_K; k++)
        st->claim_filter[bits[k] / 64] |= UINT64_C(1) << (bits[k] % 64);
}

/* False when st never filed claim id; true when it may have. */
static bool claim_filter_may_hold(const eng_pstate *st, const char *id, uint32_t len)
{
    uint32_t bits[ENG_CLAIM_FILTER_K];
    claim_filter_bits(id, len, bits);
    for (uint32_t k = 0; k < ENG_CLAIM_FILTER_K; k++)
        if ((st->claim_filter[bits[k] / 64] & UINT64_C(1) << (bits[k] % 64)) == 0)
            return false;
    return true;
}

tly_err eng_claim_lookup(tly_engine *e, uint32_t p, tly_str claim, uint32_t *out)
{
    const eng_partner *pp = &e->partners[p];
    eng_pstate *st = pp->st;
    *out = ENG_NONE;
    /* the latest claims are the likeliest named */
    for (uint32_t i = st->claim_count; i-- > 0;) {
        const eng_name *id = &st->claims[i].id;
        if (id->len == claim.len && memcmp(id->ptr, claim.ptr, id->len) == 0) {
            *out = i;
            return TLY_OK;
        }
    }
    if (st->claims_all || !claim_filter_may_hold(st, claim.ptr, claim.len))
        return TLY_OK;
    eng_claim c;
    tly_err err = claim_find(e, pp, claim, &c);
    if (err != TLY_OK)
        return err == TLY_NOT_FOUND ? TLY_OK : err;
    return claim_insert(st, &c, out);
}

/* A scan of a partner's claim records into its state (eng_claims_fill):
 * the first `held` of its claims were in memory before, ordered. */
typedef struct claim_scan {
    const eng_partner *pp;
    uint32_t held;
} claim_scan;

static tly_err claim_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    const claim_scan *cs = ctx;
    eng_pstate *st = cs->pp->st;
    eng_claim c;
    if (klen < KEY_PREFIX_BYTES)
        return TLY_CORRUPT;
    TRY(claim_unpack_of((const char *)key + KEY_PREFIX_BYTES, klen - KEY_PREFIX_BYTES, val, vlen,
                        cs->pp->id, cs->pp->id_len, &c));
    uint32_t i;
    ENG_LOWER_BOUND(st->claims, cs->held, ordinal, c.ordinal, i);
    if (i < cs->held && st->claims[i].ordinal == c.ordinal) {
        eng_claim_clear(&c); /* in memory already, perhaps changed */
        return TLY_OK;
    }
    return claim_append(st, &c);
}

tly_err eng_claims_fill(tly_engine *e, uint32_t p)
{
    const eng_partner *pp = &e->partners[p];
    eng_pstate *st = pp->st;
    if (!st->claims_all) {
        if (e->store.scan == NULL)
            return TLY_CORRUPT; /* a store that reads claims one by one only */
        claim_scan cs = {pp, st->claim_count};
        tly_err err = TLY_OK;
        claim_places w = claim_places_of(st);
        uint32_t b;
        while (err == TLY_OK && claim_place_next(st, &w, &b)) {
            char prefix[KEY_PREFIX_BYTES + ENG_CLAIM_KEY_BYTES_MAX];
            memcpy(prefix, KEY_CLAIM, KEY_PREFIX_BYTES);
            /* the key of claim "" is the partner's prefix */
            uint32_t n =
                eng_claim_store_key(prefix + KEY_PREFIX_BYTES, b, pp->id, pp->id_len, "", 0);
            err = e->store.scan(e->store.ctx, prefix, KEY_PREFIX_BYTES + n, claim_visit, &cs);
        }
        if (err == TLY_OK)
            err = claims_sort(st);
        if (err == TLY_OK && st->claim_count != st->claim_total)
            err = TLY_CORRUPT;
        if (err != TLY_OK) {
            claims_drop_clean(st);
            return err;
        }
        st->claims_all = true;
    }
    for (uint32_t i = 0; i < st->claim_count; i++)
        TRY(eng_claim_fill(e, p, i));
    return TLY_OK;
}

/* Without a store: the claims tly_engine_load kept for the partner (id,
 * len) of a record with ordinals, all of them, into st by ordinal. */
static tly_err claims_take_loose(tly_engine *e, const char *id, size_t len, eng_pstate *st)
{
    uint32_t i = eng_map_get(&e->loose_partner_map, id, len, eng_hash(id, len));
    for (; i != ENG_NONE; i = e->loose[i].prev) {
        eng_loose_claim *l = &e->loose[i];
        if (l->taken)
            continue;
        eng_claim c = l->c;
        l->c = (eng_claim){0};
        l->taken = true;
        TRY(claim_append(st, &c));
    }
    TRY(claims_sort(st));
    if (st->claim_count != st->claim_total)
        return TLY_CORRUPT;
    st->claims_all = true;
    return TLY_OK;
}

/* What an owned partner's decoded record is checked against, read off
 * the engine beforehand, so that pstate_checked touches nothing of the
 * engine (a read-back's second thread runs it: eng_read_job_decode). */
static eng_decode_env decode_env(const tly_engine *e, uint32_t gi)
{
    bool store = e->store.get != NULL;
    eng_decode_env env = {.tier_count = UINT32_MAX, .bucket_max = UINT32_MAX};
    if (gi != ENG_NONE)
        env.tier_count = e->programs[gi].rules.tier_count;
    /* Every flush stores the MDF invariant (TLY_ASSERT there): a record
     * without it would stop a folding engine at its next flush instead of
     * being refused here. A document reader shows what is stored, broken
     * or not (`audit diff` reports it); an engine loaded whole, without a
     * store (tests), is given what it is given. */
    env.invariant = store && !e->reads_only;
    /* Claims in a bucket the log has not reached are a broken record, and
     * would have every look-up of an unknown id try buckets up to there. */
    if (store)
        env.bucket_max = eng_claim_bucket_of(e->seq);
    return env;
}

/* Decodes an owned partner's record into st (eng_unpack_pstate; names and
 * a NULL for a record whose history is kept apart) and checks it. */
static tly_err pstate_checked(const eng_decode_env *env, eng_map *names, eng_arena *a,
                              const void *val, size_t vlen, eng_pstate *st, eng_liab *liab)
{
    tly_err err = eng_unpack_pstate(val, vlen, names, a, st, liab);
    if (err == TLY_OK && (st->tier >= env->tier_count || st->claim_hi > env->bucket_max ||
                          (env->invariant && !eng_invariant_ok(st))))
        err = TLY_CORRUPT;
    return err;
}

/* After a decode into *scratch that ended with err: the state settled into
 * one block (*out), or, on err or without memory, the scratch freed with
 * what was read (*scratch NULL). */
static tly_err pstate_settled(tly_err err, eng_pstate **scratch, eng_pstate **out)
{
    eng_pstate *settled = err == TLY_OK ? eng_pstate_settle(*scratch) : NULL;
    if (settled == NULL) {
        eng_pstate_free(*scratch);
        *scratch = NULL;
        return err != TLY_OK ? err : TLY_NOMEM;
    }
    *out = settled;
    return TLY_OK;
}

/* The money state of an owned partner's record (its claims' ids). */
static tly_err pstate_read(tly_engine *e, const eng_partner_rec *head, uint32_t gi, const void *val,
                           size_t vlen, eng_pstate **out, eng_liab *liab)
{
    if (e->scratch == NULL && (e->scratch = eng_pstate_new()) == NULL)
        return TLY_NOMEM;
    eng_pstate *st = e->scratch;
    /* The bytes may go with the first claim read: copy the id first. */
    char id[TLY_NAME_BYTES_MAX];
    size_t len = head->id.len;
    memcpy(id, head->id.ptr, len);
    eng_decode_env env = decode_env(e, gi);
    tly_err err = pstate_checked(&env, &e->names, &e->arena, val, vlen, st, liab);
    /* Without a store the claims come from tly_engine_load, now; with one
     * each is read when needed (eng_claim_fill, eng_claim_lookup). */
    for (uint32_t i = 0; i < st->claim_count && err == TLY_OK && e->store.get == NULL; i++)
        err = claim_fill(e, id, len, &st->claims[i]);
    if (err == TLY_OK && e->store.get == NULL && !st->claims_legacy)
        err = claims_take_loose(e, id, len, st);
    return pstate_settled(err, &e->scratch, out);
}

/* Partner (id, len) of program gi into the cache with its state st (NULL:
 * another shard's partner) and what its record says of it; *out its
 * index. */
static tly_err partner_adopt(tly_engine *e, const char *id, size_t len, uint64_t h, uint32_t gi,
                             eng_pstate *st, const eng_liab *liab, uint64_t enroll_seq,
                             uint32_t *out)
{
    TRY(partner_insert(e, id, len, h, gi, st, out));
    e->partners[*out].liab = *liab;
    e->partners[*out].enroll_seq = enroll_seq;
    /* rules that reach back into its archive need those rows at hand; a
     * partner whose rows cannot be read does not stay cached without them
     * (eng_window_sum relies on them) */
    const eng_program *g = gi == ENG_NONE ? NULL : &e->programs[gi];
    if (st != NULL && g != NULL && eng_arch_needed(st, &g->rules, g->eop, g->arch_h)) {
        tly_err err = eng_arch_fill(e, *out);
        if (err != TLY_OK) {
            eng_partner_drop(e, *out);
            *out = ENG_NONE;
            return err;
        }
    }
    return TLY_OK;
}

/* A stored partner record into the cache. A record of an owned partner
 * that says it is not owned (or the reverse) was written by another shard
 * layout: TLY_CORRUPT. */
static tly_err partner_read(tly_engine *e, const void *val, size_t vlen, uint32_t *out)
{
    eng_partner_rec head;
    TRY(eng_peek_partner(val, vlen, &head));
    if (head.owned != eng_owned(e, head.id.ptr, head.id.len))
        return TLY_CORRUPT;
    uint32_t gi = ENG_NONE;
    if (head.program.ptr != NULL &&
        (gi = eng_program_find(e, head.program.ptr, head.program.len)) == ENG_NONE)
        return TLY_CORRUPT;
    uint64_t h = eng_hash(head.id.ptr, head.id.len);
    if (eng_map_get(&e->partner_map, head.id.ptr, head.id.len, h) != ENG_NONE)
        return TLY_CORRUPT;
    char id[TLY_NAME_BYTES_MAX];
    size_t len = head.id.len;
    memcpy(id, head.id.ptr, len);
    eng_pstate *st = NULL;
    eng_liab liab = {0};
    if (head.owned)
        TRY(pstate_read(e, &head, gi, val, vlen, &st, &liab));
    return partner_adopt(e, id, len, h, gi, st, &liab, head.enroll_seq, out);
}

tly_err eng_read_job_prepare(tly_engine *e, eng_read_job *j)
{
    j->kind = ENG_JOB_NONE;
    j->st = NULL;
    j->err = TLY_OK;
    if (eng_map_get(&e->partner_map, j->id, j->len, j->h) != ENG_NONE)
        return TLY_OK; /* in memory already */
    const void *val;
    size_t vlen;
    tly_err err = store_get(e, KEY_PARTNER, j->id, j->len, &val, &vlen);
    if (err == TLY_NOT_FOUND)
        return TLY_OK;
    TRY(err);
    /* whatever is not an owned partner's current record, the engine reads
     * itself, as an event naming it would (partner_lookup) */
    j->kind = ENG_JOB_ENGINE;
    eng_partner_rec head;
    uint32_t gi = ENG_NONE;
    if (eng_peek_partner(val, vlen, &head) != TLY_OK || head.id.len != j->len ||
        memcmp(head.id.ptr, j->id, j->len) != 0 || !head.owned || !head.cold_apart ||
        !eng_owned(e, j->id, j->len) ||
        (head.program.ptr != NULL &&
         (gi = eng_program_find(e, head.program.ptr, head.program.len)) == ENG_NONE))
        return TLY_OK;
    j->kind = ENG_JOB_DECODE;
    j->gi = gi;
    j->enroll_seq = head.enroll_seq;
    j->env = decode_env(e, gi);
    j->val = val;
    j->vlen = vlen;
    return TLY_OK;
}

void eng_read_job_decode(eng_read_job *j, eng_pstate **scratch)
{
    if (j->kind != ENG_JOB_DECODE)
        return;
    if (*scratch == NULL && (*scratch = eng_pstate_new()) == NULL) {
        j->err = TLY_NOMEM;
        return;
    }
    j->liab = (eng_liab){0};
    j->err = pstate_checked(&j->env, NULL, NULL, j->val, j->vlen, *scratch, &j->liab);
    j->err = pstate_settled(j->err, scratch, &j->st);
}

tly_err eng_read_job_adopt(tly_engine *e, eng_read_job *j, uint32_t *out)
{
    *out = ENG_NONE;
    if (j->kind == ENG_JOB_ENGINE)
        return eng_partner_find(e, j->id, j->len, out);
    if (j->kind != ENG_JOB_DECODE)
        return TLY_OK;
    TRY(j->err);
    eng_pstate *st = j->st;
    j->st = NULL;
    if (eng_map_get(&e->partner_map, j->id, j->len, j->h) != ENG_NONE) {
        eng_pstate_free(st); /* read since (eng_read_job_prepare) */
        return TLY_OK;
    }
    return partner_adopt(e, j->id, j->len, j->h, j->gi, st, &j->liab, j->enroll_seq, out);
}

/* The cached record of id, else the stored one, else (create) a new one. */
static tly_err partner_lookup(tly_engine *e, const char *id, size_t len, bool create, uint32_t *out)
{
    TLY_ASSERT(len <= TLY_NAME_BYTES_MAX);
    uint64_t h = eng_hash(id, len);
    uint32_t p = eng_map_get(&e->partner_map, id, len, h);
    if (p != ENG_NONE) {
        e->partners[p].used = e->cur_seq;
        *out = p;
        return TLY_OK;
    }
    const void *val;
    size_t vlen;
    tly_err err = store_get(e, KEY_PARTNER, id, len, &val, &vlen);
    if (err == TLY_OK) {
        /* a record under another partner's key is not read into the cache
         * (it would stand there for the partner it names) */
        eng_partner_rec head;
        TRY(eng_peek_partner(val, vlen, &head));
        if (head.id.len != len || memcmp(head.id.ptr, id, len) != 0)
            return TLY_CORRUPT;
        return partner_read(e, val, vlen, out);
    }
    *out = ENG_NONE;
    if (err != TLY_NOT_FOUND || !create)
        return err == TLY_NOT_FOUND ? TLY_OK : err;
    eng_pstate *st = NULL;
    if (eng_owned(e, id, len) && (st = eng_pstate_new()) == NULL)
        return TLY_NOMEM;
    return partner_insert(e, id, len, h, ENG_NONE, st, out);
}

tly_err eng_partner_find(tly_engine *e, const char *id, size_t len, uint32_t *out)
{
    return partner_lookup(e, id, len, false, out);
}

tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out)
{
    return partner_lookup(e, id, len, true, out);
}

tly_err eng_partner_cold(tly_engine *e, uint32_t p)
{
    const eng_partner *pp = &e->partners[p];
    eng_pstate *st = pp->st;
    if (st->cold)
        return TLY_OK;
    const void *val;
    size_t vlen;
    tly_err err = store_get(e, ENG_COLD_PREFIX, pp->id, pp->id_len, &val, &vlen);
    if (err != TLY_OK) /* its record counted entries the store must hold */
        return err == TLY_NOT_FOUND ? TLY_CORRUPT : err;
    return eng_unpack_cold(val, vlen, &e->names, &e->arena, st);
}

tly_err eng_cold_load(tly_engine *e, const char *id, size_t len, const void *val, size_t vlen)
{
    uint32_t p = eng_map_get(&e->partner_map, id, len, eng_hash(id, len));
    /* after its partner's record (key order), which counted what it holds */
    if (p == ENG_NONE || e->partners[p].st == NULL || e->partners[p].st->cold)
        return TLY_CORRUPT;
    return eng_unpack_cold(val, vlen, &e->names, &e->arena, e->partners[p].st);
}

/* ---- the archive ---- */

/* A scan of a partner's chunks under "S/5/": every one into st->arch
 * (fill), or only the one holding period (find, period ≥ 0). */
typedef struct arch_scan {
    eng_pstate *st;
    int32_t period; /* -1: every chunk */
    uint32_t seen;  /* rows scanned */
} arch_scan;

/* Chunk into st->arch unless its rows are there already (perhaps changed
 * since): its last row must not be newer than the archive's newest. */
static tly_err arch_take(eng_pstate *st, const eng_row *chunk)
{
    if (chunk[ENG_ARCH_CHUNK_ROWS - 1].period > st->arch_last)
        return TLY_CORRUPT;
    uint32_t i = eng_arch_pos(st, chunk[0].period);
    if (i < st->arch_n && st->arch[i].period == chunk[0].period)
        return TLY_OK;
    return eng_arch_insert(st, chunk);
}

static tly_err arch_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key;
    (void)klen;
    arch_scan *a = ctx;
    eng_row chunk[ENG_ARCH_CHUNK_ROWS];
    TRY(eng_unpack_arch_chunk(val, vlen, chunk));
    if (chunk[0].chunk_prev != ENG_ARCH_OLD)
        return TLY_CORRUPT; /* the form of "S/7/" under "S/5/" */
    a->seen += ENG_ARCH_CHUNK_ROWS;
    const eng_row *last = &chunk[ENG_ARCH_CHUNK_ROWS - 1];
    if (a->period >= 0 && (a->period < chunk[0].period || a->period > last->period))
        return last->period > a->st->arch_last ? TLY_CORRUPT : TLY_OK;
    return arch_take(a->st, chunk);
}

/* Scans owned partner p's chunks under "S/5/" (a). */
static tly_err arch_scan_run(tly_engine *e, uint32_t p, arch_scan *a)
{
    const eng_partner *pp = &e->partners[p];
    char prefix[KEY_PREFIX_BYTES + 1 + TLY_NAME_BYTES_MAX];
    memcpy(prefix, ENG_ARCH_OLD_PREFIX, KEY_PREFIX_BYTES);
    prefix[KEY_PREFIX_BYTES] = (char)(unsigned char)pp->id_len;
    memcpy(prefix + KEY_PREFIX_BYTES + 1, pp->id, pp->id_len);
    return e->store.scan(e->store.ctx, prefix, KEY_PREFIX_BYTES + 1 + pp->id_len, arch_visit, a);
}

/* Walks owned partner p's chain under "S/7/" from its newest chunk, each
 * into st->arch, back to the first or (period ≥ 0) to the one that would
 * hold period; *seen counts the rows walked. Periods fall along the chain
 * and it holds no more rows than the partner archived: a store whose
 * chain loops or runs on is corrupt. */
static tly_err arch_chain(tly_engine *e, uint32_t p, int32_t period, uint32_t *seen)
{
    const eng_partner *pp = &e->partners[p];
    eng_pstate *st = pp->st;
    *seen = 0;
    for (int32_t at = st->arch_head; at != ENG_ARCH_NONE;) {
        char key[1 + TLY_NAME_BYTES_MAX + 4];
        uint32_t klen = eng_arch_key7(key, pp->id, pp->id_len, at);
        const void *val;
        size_t vlen;
        tly_err err = store_get(e, ENG_ARCH_PREFIX, key, klen, &val, &vlen);
        if (err == TLY_NOT_FOUND)
            return TLY_CORRUPT; /* its record or the chunk before names it */
        TRY(err);
        eng_row chunk[ENG_ARCH_CHUNK_ROWS];
        TRY(eng_unpack_arch_chunk(val, vlen, chunk));
        *seen += ENG_ARCH_CHUNK_ROWS;
        if (chunk[0].period != at || chunk[0].chunk_prev == ENG_ARCH_OLD || *seen > st->arch_count)
            return TLY_CORRUPT;
        TRY(arch_take(st, chunk));
        if (period >= 0 && period >= at)
            break;
        at = chunk[0].chunk_prev;
    }
    return TLY_OK;
}

tly_err eng_arch_fill(tly_engine *e, uint32_t p)
{
    eng_pstate *st = e->partners[p].st;
    if (st->arch_all || e->store.scan == NULL)
        return TLY_OK;
    uint32_t chained;
    TRY(arch_chain(e, p, -1, &chained));
    arch_scan a = {st, -1, 0};
    TRY(arch_scan_run(e, p, &a));
    if (chained + a.seen != st->arch_count || st->arch_n != st->arch_count)
        return TLY_CORRUPT;
    st->arch_all = true;
    return TLY_OK;
}

/* The row of period in st->arch, or NULL. */
static eng_row *arch_find(eng_pstate *st, int32_t period)
{
    uint32_t i = eng_arch_pos(st, period);
    return i < st->arch_n && st->arch[i].period == period ? &st->arch[i] : NULL;
}

tly_err eng_arch_row(tly_engine *e, uint32_t p, int32_t period, eng_row **out)
{
    eng_pstate *st = e->partners[p].st;
    *out = NULL;
    if (st->arch_count == 0 || period > st->arch_last)
        return TLY_OK;
    if ((*out = arch_find(st, period)) != NULL || st->arch_all || e->store.scan == NULL)
        return TLY_OK;
    /* its chunk, when it had a row (a closed period without revenue has
     * none): along the chain, else (older than its first) under "S/5/" */
    uint32_t chained;
    TRY(arch_chain(e, p, period, &chained));
    if ((*out = arch_find(st, period)) == NULL) {
        arch_scan a = {st, period, 0};
        TRY(arch_scan_run(e, p, &a));
        *out = arch_find(st, period);
    }
    return TLY_OK;
}

/* Owned partner p of an archive key's partner (u8 length ‖ id at k), or
 * ENG_NONE. */
static uint32_t arch_owner(tly_engine *e, const char *k, size_t room)
{
    if (room < 1 || (size_t)(unsigned char)k[0] + 1 != room)
        return ENG_NONE;
    uint32_t plen = (unsigned char)k[0];
    uint32_t p = eng_map_get(&e->partner_map, k + 1, plen, eng_hash(k + 1, plen));
    return p != ENG_NONE && e->partners[p].st != NULL ? p : ENG_NONE;
}

/* Chunk (read from key, of p) joins the loaded archive: chunks load in
 * key order, so a partner's come oldest first ("S/5/", then "S/7/"). */
static tly_err arch_load_chunk(tly_engine *e, uint32_t p, const eng_row *chunk)
{
    eng_pstate *st = e->partners[p].st;
    if (st->arch_n >= st->arch_count || chunk[ENG_ARCH_CHUNK_ROWS - 1].period > st->arch_last ||
        (st->arch_n > 0 && st->arch[st->arch_n - 1].period >= chunk[0].period))
        return TLY_CORRUPT;
    TRY(eng_arch_insert(st, chunk));
    st->arch_all = st->arch_n == st->arch_count;
    return TLY_OK;
}

tly_err eng_arch_load(tly_engine *e, const void *key, size_t klen, const void *val, size_t vlen)
{
    const char *k = key;
    uint32_t p = klen < 1 + 4 ? ENG_NONE : arch_owner(e, k, klen - 4);
    if (p == ENG_NONE)
        return TLY_CORRUPT;
    eng_row chunk[ENG_ARCH_CHUNK_ROWS];
    TRY(eng_unpack_arch_chunk(val, vlen, chunk));
    char want[1 + TLY_NAME_BYTES_MAX + 4];
    if (chunk[0].chunk_prev != ENG_ARCH_OLD ||
        eng_arch_key(want, k + 1, (unsigned char)k[0], chunk[0].period) != klen ||
        memcmp(want, k, klen) != 0)
        return TLY_CORRUPT;
    return arch_load_chunk(e, p, chunk);
}

tly_err eng_arch7_load(tly_engine *e, const void *key, size_t klen, const void *val, size_t vlen)
{
    const char *k = key;
    uint32_t p = klen < 4 + 1 ? ENG_NONE : arch_owner(e, k + 4, klen - 4);
    if (p == ENG_NONE)
        return TLY_CORRUPT;
    eng_row chunk[ENG_ARCH_CHUNK_ROWS];
    TRY(eng_unpack_arch_chunk(val, vlen, chunk));
    char want[1 + TLY_NAME_BYTES_MAX + 4];
    if (chunk[0].chunk_prev == ENG_ARCH_OLD ||
        eng_arch_key7(want, k + 5, (unsigned char)k[4], chunk[0].period) != klen ||
        memcmp(want, k, klen) != 0)
        return TLY_CORRUPT;
    return arch_load_chunk(e, p, chunk);
}

tly_err eng_partner_load(tly_engine *e, const void *val, size_t len)
{
    uint32_t p;
    return partner_read(e, val, len, &p);
}

/* Keeps the claim under its key until its partner's record asks for it. */
tly_err eng_claim_stash(tly_engine *e, const void *key, size_t klen, const void *val, size_t len)
{
    eng_loose_claim l = {0};
    tly_str partner;
    TRY(eng_unpack_claim(key, klen, val, len, &partner, &l.c));
    if (l.c.bucket != 0) { /* kept by (partner, claim), as claim_fill finds it */
        key = (const char *)key + ENG_CLAIM_BUCKET_BYTES;
        klen -= ENG_CLAIM_BUCKET_BYTES;
    }
    l.key_len = (uint32_t)klen; /* eng_claim_key's: eng_unpack_claim checked it */
    uint64_t h = eng_hash(key, l.key_len);
    tly_err err = eng_map_get(&e->loose_map, key, l.key_len, h) == ENG_NONE ? TLY_OK : TLY_CORRUPT;
    if (err == TLY_OK && (l.key = eng_copy(key, l.key_len)) == NULL)
        err = TLY_NOMEM;
    /* chained to the partner's claims stashed before: the key holds the
     * partner after its length byte */
    uint64_t ph = eng_hash(partner.ptr, partner.len);
    l.prev = eng_map_get(&e->loose_partner_map, partner.ptr, partner.len, ph);
    if (err == TLY_OK)
        err = ENG_PUSH(e->loose, e->loose_count, e->loose_cap, l);
    if (err != TLY_OK) {
        free(l.key);
        eng_claim_clear(&l.c);
        return err;
    }
    uint32_t i = e->loose_count - 1;
    TRY(eng_map_put(&e->loose_map, l.key, l.key_len, h, i));
    if (l.prev != ENG_NONE)
        eng_map_del(&e->loose_partner_map, partner.ptr, partner.len, ph);
    return eng_map_put(&e->loose_partner_map, l.key + 1, partner.len, ph, i);
}

/* ---- sales ---- */

/* Puts a sale in a slot and maps it. */
static tly_err sale_insert(tly_engine *e, const char *key, uint32_t klen, uint64_t h,
                           const eng_sale_rec *rec, uint32_t *out)
{
    size_t bytes = (size_t)klen + rec->partner.len + 1;
    char *block = eng_pool_get(&e->sale_blocks, bytes);
    if (block == NULL)
        return TLY_NOMEM;
    memcpy(block, key, klen);
    memcpy(block + klen, rec->partner.ptr, rec->partner.len);
    block[klen + rec->partner.len] = '\0';
    uint32_t s;
    tly_err err = slot_take((void **)&e->sales, sizeof *e->sales, &e->sale_slots, &s);
    if (err == TLY_OK && (err = eng_map_put(&e->sale_map, block, klen, h, s)) != TLY_OK) {
        e->sales[s] = (eng_sale){0}; /* a free slot is all zero */
        slot_give(&e->sale_slots, s);
    }
    if (err != TLY_OK) {
        eng_pool_put(&e->sale_blocks, block, bytes);
        return err;
    }
    eng_sale *sale = &e->sales[s];
    *sale = (eng_sale){.key = block,
                       .key_len = klen,
                       .partner_len = rec->partner.len,
                       .has_detail = rec->has_detail,
                       .used = e->cur_seq,
                       .seq = rec->seq,
                       .at_ms = rec->at_ms,
                       .d = rec->d};
    memcpy(sale->currency, rec->currency, 3);
    *out = s;
    return TLY_OK;
}

const char *eng_sale_store_prefix(const tly_engine *e)
{
    return e->sale_fn == NULL || e->store.seq_sales_in_s2 ? KEY_SALE : TLY_ENGINE_SEQ_SALE_PREFIX;
}

uint32_t eng_sale_store_body(const tly_engine *e, const eng_sale *s, char *buf)
{
    if (e->sale_fn == NULL) {
        memcpy(buf, s->key, s->key_len);
        return s->key_len;
    }
    tly_be64_put(buf, s->seq);
    return 8;
}

/* eng_sale_find with a sale source: the log knows the sale's seq, which
 * keys this shard's own sales in the store; another shard's partner's
 * sale is the log's copy, cached clean. Only a sale folded before the
 * record being applied counts, as in the registry. */
static tly_err sale_from_log(tly_engine *e, const char *key, uint32_t klen, uint64_t h,
                             uint32_t *out)
{
    tly_str source, id;
    eng_key2_split(key, klen, &source, &id);
    bool found = false;
    tly_engine_sale fact;
    TRY(e->sale_fn(e->sale_ctx, source, id, &found, &fact));
    if (!found || fact.seq >= e->cur_seq)
        return TLY_OK;
    eng_sale_rec rec = {.partner = fact.partner, .seq = fact.seq, .at_ms = fact.at_ms};
    memcpy(rec.currency, fact.currency, 3);
    if (eng_owned(e, fact.partner.ptr, fact.partner.len)) {
        /* every sale of this shard's partners is registered */
        char body[8]; /* the key of eng_sale_store_body with a sale source */
        tly_be64_put(body, fact.seq);
        const void *val;
        size_t vlen;
        tly_err err = store_get(e, eng_sale_store_prefix(e), body, sizeof body, &val, &vlen);
        if (err != TLY_OK)
            return err == TLY_NOT_FOUND ? TLY_CORRUPT : err;
        TRY(eng_unpack_sale(val, vlen, &rec));
        if (rec.seq != fact.seq)
            return TLY_CORRUPT;
    }
    return sale_insert(e, key, klen, h, &rec, out);
}

tly_err eng_sale_find(tly_engine *e, const char *key, uint32_t klen, uint32_t *out)
{
    uint64_t h = eng_hash(key, klen);
    uint32_t s = eng_map_get(&e->sale_map, key, klen, h);
    if (s != ENG_NONE) {
        e->sales[s].used = e->cur_seq;
        *out = s;
        return TLY_OK;
    }
    *out = ENG_NONE;
    if (e->sale_fn != NULL)
        return sale_from_log(e, key, klen, h, out);
    const void *val;
    size_t vlen;
    tly_err err = store_get(e, KEY_SALE, key, klen, &val, &vlen);
    if (err != TLY_OK)
        return err == TLY_NOT_FOUND ? TLY_OK : err;
    eng_sale_rec rec;
    TRY(eng_unpack_sale(val, vlen, &rec));
    return sale_insert(e, key, klen, h, &rec, out);
}

tly_err eng_sale_add(tly_engine *e, const char *key, uint32_t klen, tly_str partner,
                     const char cur[3], int64_t at_ms, uint32_t *out)
{
    eng_sale_rec rec = {.partner = partner, .seq = e->cur_seq, .at_ms = at_ms};
    memcpy(rec.currency, cur, 3);
    TRY(sale_insert(e, key, klen, eng_hash(key, klen), &rec, out));
    return eng_sale_dirty(e, *out);
}

tly_err eng_sale_load(tly_engine *e, const char *key, uint32_t klen, const void *val, size_t len)
{
    eng_sale_rec rec;
    TRY(eng_unpack_sale(val, len, &rec));
    uint64_t h = eng_hash(key, klen);
    if (klen < 1 || eng_map_get(&e->sale_map, key, klen, h) != ENG_NONE)
        return TLY_CORRUPT;
    uint32_t s;
    return sale_insert(e, key, klen, h, &rec, &s);
}

/* ---- member walks [T7] [G3] ---- */

typedef struct member_walk {
    tly_engine *e;
    uint32_t gi;
    eng_member_fn fn;
    void *ctx;
} member_walk;

/* fn for p when it is an owned member the walk has not visited yet. */
static tly_err member_call(member_walk *w, uint32_t p)
{
    eng_partner *pp = &w->e->partners[p];
    if (!pp->owned || pp->program == ENG_NONE || pp->visit == w->e->visit ||
        (w->gi != ENG_NONE && pp->program != w->gi))
        return TLY_OK;
    pp->visit = w->e->visit;
    return w->fn(w->e, p, w->ctx);
}

/* A stored partner record: its cached copy (which may be newer) when
 * there is one, else the record read into the cache when it is a member. */
static tly_err member_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    member_walk *w = ctx;
    tly_engine *e = w->e;
    const char *id = (const char *)key + KEY_PREFIX_BYTES;
    size_t len = klen - KEY_PREFIX_BYTES;
    if (klen <= KEY_PREFIX_BYTES || len > TLY_NAME_BYTES_MAX)
        return TLY_CORRUPT;
    if (!eng_owned(e, id, len))
        return TLY_OK;
    uint32_t p = eng_map_get(&e->partner_map, id, len, eng_hash(id, len));
    if (p == ENG_NONE) {
        eng_partner_rec head;
        TRY(eng_peek_partner(val, vlen, &head));
        const eng_program *g = w->gi == ENG_NONE ? NULL : &e->programs[w->gi];
        if (head.program.ptr == NULL ||
            (g != NULL && (head.program.len != g->name_len ||
                           memcmp(head.program.ptr, g->name, g->name_len) != 0)))
            return TLY_OK;
        TRY(partner_read(e, val, vlen, &p));
    }
    return member_call(w, p);
}

tly_err eng_members_each(tly_engine *e, uint32_t gi, eng_member_fn fn, void *ctx)
{
    member_walk w = {e, gi, fn, ctx};
    e->visit++;
    if (e->store.scan != NULL)
        TRY(e->store.scan(e->store.ctx, KEY_PARTNER, KEY_PREFIX_BYTES, member_visit, &w));
    /* Members the store does not hold yet: enrolled since the last flush. */
    for (uint32_t p = 0; p < e->partner_slots.count; p++)
        if (e->partners[p].id != NULL)
            TRY(member_call(&w, p));
    return TLY_OK;
}

/* ---- dirty marks and the trim ---- */

/* A partner read from a record that lists every claim (written before
 * ordinals) changes: its claims are read and marked, so that the flush
 * writes each with its ordinal before the partner's record stops listing
 * them. */
static tly_err claims_unlegacy(tly_engine *e, uint32_t p)
{
    eng_pstate *st = e->partners[p].st;
    TRY(eng_claims_fill(e, p));
    for (uint32_t i = 0; i < st->claim_count; i++) {
        st->claims[i].dirty = true;
        eng_claim_filter_add(st, st->claims[i].id.ptr, st->claims[i].id.len);
    }
    st->claims_legacy = false;
    return TLY_OK;
}

/* Marks p for the next flush and, when owned, as touched by this apply
 * (the after-event checks read the touched list). */
tly_err eng_partner_dirty(tly_engine *e, uint32_t p)
{
    eng_partner *pp = &e->partners[p];
    if (pp->owned && pp->touch_seq != e->cur_seq) {
        pp->touch_seq = e->cur_seq;
        TRY(ENG_PUSH(e->touched, e->touched_count, e->touched_cap, p));
    }
    if (pp->dirty)
        return TLY_OK;
    if (pp->read_back) { /* counted as changed from now on */
        pp->read_back = false;
        e->read_back_idle--;
    }
    if (pp->st != NULL && pp->st->claims_legacy)
        TRY(claims_unlegacy(e, p));
    TRY(ENG_PUSH(e->dirty_partners, e->dirty_partner_count, e->dirty_partner_cap, p));
    pp->dirty = true;
    return TLY_OK;
}

/* Marks sale s for the next flush. */
tly_err eng_sale_dirty(tly_engine *e, uint32_t s)
{
    if (e->sales[s].dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_sales, e->dirty_sale_count, e->dirty_sale_cap, s));
    e->sales[s].dirty = true;
    return TLY_OK;
}

/* The k-th smallest of v[0..n) (0-based, k < n; v is reordered): Wirth's
 * selection, O(n) on average, so a trim costs no sort. */
static uint64_t select_kth(uint64_t *v, uint32_t n, uint32_t k)
{
    int64_t l = 0, r = (int64_t)n - 1;
    while (l < r) {
        uint64_t x = v[k];
        int64_t i = l, j = r;
        do {
            while (v[i] < x)
                i++;
            while (x < v[j])
                j--;
            if (i <= j) {
                uint64_t t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        } while (i <= j);
        if (j < (int64_t)k)
            l = i;
        if ((int64_t)k < i)
            r = j;
    }
    return v[k];
}

/* Drops partner p from the cache (it is clean: the store holds it). */
void eng_partner_drop(tly_engine *e, uint32_t p)
{
    eng_partner *pp = &e->partners[p];
    if (pp->read_back)
        e->read_back_idle--;
    eng_map_del(&e->partner_map, pp->id, pp->id_len, eng_hash(pp->id, pp->id_len));
    free(pp->id);
    eng_pstate_free(pp->st);
    *pp = (eng_partner){0};
    slot_give(&e->partner_slots, p);
}

/* Frees sale s's key block and its slot, its map entry left to the caller. */
static void sale_free(tly_engine *e, uint32_t s)
{
    eng_sale *sale = &e->sales[s];
    eng_pool_put(&e->sale_blocks, sale->key, ENG_SALE_BLOCK_BYTES(sale));
    *sale = (eng_sale){0};
    slot_give(&e->sale_slots, s);
}

/* Drops sale s from the cache (it is clean: the store holds it). */
void eng_sale_drop(tly_engine *e, uint32_t s)
{
    eng_sale *sale = &e->sales[s];
    eng_map_del(&e->sale_map, sale->key, sale->key_len, eng_hash(sale->key, sale->key_len));
    sale_free(e, s);
}

/* Slot i of a cache: live (and clean, with clean_only), and the seq of its
 * last lookup. */
static bool cache_entry(const tly_engine *e, bool partners, uint32_t i, bool clean_only,
                        uint64_t *used)
{
    if (partners) {
        *used = e->partners[i].used;
        return e->partners[i].id != NULL && !(clean_only && e->partners[i].dirty);
    }
    *used = e->sales[i].used;
    return e->sales[i].key != NULL && !(clean_only && e->sales[i].dirty);
}

/* How many entries a trim of a cache over max drops: down to three
 * quarters of max, so that a trim is rare (the slack is a quarter). */
static uint32_t trim_drops(const eng_slots *s, uint32_t max)
{
    return s->live - (max - max / 4);
}

/* The lookup seqs of one cache's entries (cache_entry) into used: their
 * count. */
static uint32_t collect_used(const tly_engine *e, bool partners, bool clean_only, uint64_t *used)
{
    const eng_slots *s = partners ? &e->partner_slots : &e->sale_slots;
    uint32_t n = 0;
    uint64_t u;
    for (uint32_t i = 0; i < s->count; i++)
        if (cache_entry(e, partners, i, clean_only, &u))
            used[n++] = u;
    return n;
}

/* The drop-th oldest of the n lookups in used (reordered): UINT64_MAX when
 * every one goes, 0 when there are none. */
static uint64_t cut_of(uint64_t *used, uint32_t n, uint32_t drop)
{
    return n == 0 ? 0 : drop >= n ? UINT64_MAX : select_kth(used, n, drop - 1);
}

/* Drops clean entries of one cache, least recently used first, down to
 * three quarters of max (trim_drops): the drop-th oldest lookup is found
 * by selection, then one pass drops what is older (and as many of its
 * ties as needed). Without memory for the selection it drops nothing. */
static void trim_one(tly_engine *e, bool partners, uint32_t max)
{
    eng_slots *s = partners ? &e->partner_slots : &e->sale_slots;
    if (s->live <= max)
        return;
    uint64_t *used = malloc(((size_t)s->live + 1) * sizeof *used), u;
    if (used == NULL)
        return;
    uint32_t drop = trim_drops(s, max), n = collect_used(e, partners, true, used);
    uint64_t cut = cut_of(used, n, drop);
    uint32_t below = 0;
    for (uint32_t i = 0; i < n && cut != UINT64_MAX; i++)
        below += used[i] < cut;
    free(used);
    uint32_t ties = cut == UINT64_MAX ? 0 : drop - below; /* drops at the cut itself */
    for (uint32_t i = 0; i < s->count && n > 0; i++) {
        if (!cache_entry(e, partners, i, true, &u) || u > cut || (u == cut && ties == 0))
            continue;
        if (u == cut && cut != UINT64_MAX)
            ties--;
        if (partners)
            eng_partner_drop(e, i);
        else
            eng_sale_drop(e, i);
    }
}

uint64_t eng_cache_cut(tly_engine *e, bool partners)
{
    const eng_slots *s = partners ? &e->partner_slots : &e->sale_slots;
    uint32_t max = partners ? e->partners_max : e->sales_max;
    if (s->live <= max)
        return 0;
    uint64_t *used = malloc((size_t)s->live * sizeof *used);
    if (used == NULL)
        return 0;
    uint64_t cut = cut_of(used, collect_used(e, partners, false, used), trim_drops(s, max));
    free(used);
    return cut;
}

tly_err eng_sales_flush_compact(tly_engine *e, uint64_t cut, eng_sale_write_fn write, void *ctx)
{
    eng_slots *s = &e->sale_slots;
    /* Where each slot goes (ENG_NONE: dropped or free). The map is rebuilt
     * from it after the walk, in one pass over its table with the hashes
     * it holds, rather than probed at a random place (after a read of the
     * key for its hash) for each sale dropped or moved: at 10M events on
     * one shard those deletions alone were 1.8 % of the fold's time. */
    uint32_t *to = malloc(((size_t)s->count + 1) * sizeof *to);
    if (to == NULL)
        return TLY_NOMEM; /* nothing dropped yet */
    tly_err err = TLY_OK;
    uint32_t n = 0;
    e->dropped_in_flush = true; /* the first drop may come before a failure */
    for (uint32_t i = 0; i < s->count; i++) {
        eng_sale *sale = &e->sales[i];
        to[i] = ENG_NONE;
        if (sale->key != NULL) {
            if (err == TLY_OK && sale->dirty)
                err = write(ctx, sale);
            /* After a failure the walk only compacts what is left: the
             * engine is then reloaded (tly_engine_intact). */
            if (err == TLY_OK && sale->used < cut) {
                sale_free(e, i); /* its free slot is forgotten below */
            } else {
                sale->dirty = sale->dirty && err != TLY_OK;
                if (i != n)
                    e->sales[n] = *sale;
                to[i] = n++;
            }
        }
        /* Slots n..i are moved or dropped: their pages go back as the walk
         * goes, while the store takes the sales written. */
        if ((i + 1) % ENG_SALES_RELEASE_SLOTS == 0)
            tly_os_release_zero_pages(&e->sales[n], (size_t)(i + 1 - n) * sizeof *e->sales);
    }
    TLY_ASSERT(n == s->live);
    /* Slots from n on are unused (slot_take writes a slot before its
     * first read): their pages go back, zero when touched again. */
    tly_os_release_zero_pages(&e->sales[n], (size_t)(s->count - n) * sizeof *e->sales);
    s->count = n;
    s->free_count = 0;
    e->dirty_sale_count = 0;
    /* On no memory the map still names the sales where they were, and
     * keys that are gone: the flush fails with the drops done, and the
     * engine is reloaded (dropped_in_flush). */
    tly_err mapped = eng_map_remap(&e->sale_map, to, n);
    free(to);
    return err != TLY_OK ? err : mapped;
}

void eng_partners_compact(tly_engine *e)
{
    eng_slots *s = &e->partner_slots;
    uint32_t *to = malloc(((size_t)s->count + 1) * sizeof *to); /* old slot -> new */
    if (to == NULL)
        return; /* without memory the vector stays as it is, and serves */
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        eng_partner *pp = &e->partners[i];
        to[i] = pp->id == NULL ? ENG_NONE : n;
        if (pp->id == NULL)
            continue;
        if (i != n) {
            eng_map_set(&e->partner_map, pp->id, pp->id_len, eng_hash(pp->id, pp->id_len), n);
            e->partners[n] = *pp;
        }
        n++;
    }
    TLY_ASSERT(n == s->live);
    uint32_t d = 0;
    for (uint32_t k = 0; k < e->dirty_partner_count; k++)
        if (to[e->dirty_partners[k]] != ENG_NONE)
            e->dirty_partners[d++] = to[e->dirty_partners[k]];
    e->dirty_partner_count = d;
    free(to);
    /* Slots from n on are unused (partner_insert writes a slot whole
     * before its first read): their pages go back, zero when touched. */
    tly_os_release_zero_pages(&e->partners[n], (size_t)(s->count - n) * sizeof *e->partners);
    s->count = n;
    s->free_count = 0;
    eng_map_shrink(&e->partner_map);
}

void eng_cache_trim(tly_engine *e, uint32_t touched)
{
    TLY_ASSERT(e->store.get != NULL && e->exc_flushed == e->exc_count);
    for (uint32_t i = 0; i < e->exc_count; i++)
        free(e->excs[i].text);
    e->exc_count = e->exc_flushed = 0;
    /* The store holds them all now. The vector goes too: one batch that
     * raises many (the first of `bench fold`'s 10M log, 175,641) would
     * otherwise keep its pages for the rest of the fold (12 MB). */
    free(e->excs);
    e->excs = NULL;
    e->exc_cap = 0;
    /* The partners a batch changed were all in memory at its peak: with the
     * default limits they stay until a smaller batch follows, so a
     * catch-up that touches more than the limit per batch does not read
     * them all back from the store in the next one (one shard of `bench
     * fold --growth`: 10M events 134 s -> 110 s, 3M 9-13 % less; peak
     * memory +2 %). */
    bool defaults = e->store.partners_cached_max == 0 && !e->flush_drops;
    uint32_t keep = defaults && touched > e->partners_max ? touched : e->partners_max;
    trim_one(e, true, keep);
    trim_one(e, false, e->sales_max);
}

/* ---- exceptions ---- */

tly_err eng_exc_add(tly_engine *e, const eng_exc *x, tly_str partner, tly_str detail,
                    const eng_about *about)
{
    size_t plen = partner.ptr == NULL ? 0 : partner.len;
    size_t bytes = plen + detail.len + about->source.len + about->id.len;
    char *text = malloc(bytes + 1);
    if (text == NULL)
        return TLY_NOMEM;
    char *at = text;
    const tly_str parts[4] = {
        {partner.ptr ? partner.ptr : "", (uint32_t)plen}, detail, about->source, about->id};
    for (int i = 0; i < 4; i++) {
        memcpy(at, parts[i].ptr ? parts[i].ptr : "", parts[i].len);
        at += parts[i].len;
    }
    *at = '\0';
    eng_exc c = *x;
    c.text = text;
    c.partner_len = partner.ptr == NULL ? ENG_NONE : partner.len;
    c.detail_len = detail.len;
    c.source_len = about->source.len;
    c.id_len = about->id.len;
    c.has_amount = about->has_amount;
    c.amount = about->amount;
    memcpy(c.currency, about->currency, 3);
    tly_err err = ENG_PUSH(e->excs, e->exc_count, e->exc_cap, c);
    if (err != TLY_OK)
        free(text);
    return err;
}

/* Formats the detail (truncated to ENG_DETAIL_BYTES_MAX) and appends the
 * exception at pos, advancing pos's counter [D7]. */
tly_err eng_raise(tly_engine *e, eng_pos pos, tly_xkind kind, uint32_t partner, const char *fmt,
                  ...)
{
    char buf[ENG_DETAIL_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    if ((size_t)len >= sizeof buf)
        len = (int)sizeof buf - 1; /* truncated: details are for people */
    tly_str who = {NULL, 0};
    if (partner != ENG_NONE)
        who = (tly_str){e->partners[partner].id, e->partners[partner].id_len};
    (*pos.n)++;
    eng_about about = e->about;
    if (about.has_amount && about.currency[0] == '\0' && partner != ENG_NONE &&
        e->partners[partner].program != ENG_NONE)
        memcpy(about.currency, e->programs[e->partners[partner].program].currency, 3);
    eng_exc x = {.seq = pos.seq, .at_seq = e->cur_seq, .n = e->raised++, .kind = kind};
    return eng_exc_add(e, &x, who, (tly_str){buf, (uint32_t)len}, &about);
}

/* ---- keys ---- */

/* Keys are u8 length ‖ first ‖ second: unambiguous for any bytes. The
 * first part is at most 255 bytes (asserted). */
static uint32_t key2(char *buf, const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    TLY_ASSERT(alen <= 255);
    buf[0] = (char)(unsigned char)alen;
    memcpy(buf + 1, a, alen);
    memcpy(buf + 1 + alen, b, blen);
    return 1 + alen + blen;
}

void eng_key2_split(const char *key, uint32_t klen, tly_str *a, tly_str *b)
{
    uint32_t alen = (unsigned char)key[0];
    *a = (tly_str){key + 1, alen};
    *b = (tly_str){key + 1 + alen, klen - 1 - alen};
}

/* Key of a sale: (source, id). */
uint32_t eng_sale_key(char *buf, const char *src, uint32_t src_len, const char *id, uint32_t id_len)
{
    return key2(buf, src, src_len, id, id_len);
}

/* Key of a claim: (partner, claim) [C1]. */
uint32_t eng_claim_key(char *buf, const char *partner, uint32_t plen, const char *claim,
                       uint32_t clen)
{
    return key2(buf, partner, plen, claim, clen);
}

uint32_t eng_claim_store_key(char *buf, uint32_t bucket, const char *partner, uint32_t plen,
                             const char *claim, uint32_t clen)
{
    if (bucket == 0)
        return eng_claim_key(buf, partner, plen, claim, clen);
    buf[0] = 0;
    tly_be32_put(buf + 1, bucket);
    return ENG_CLAIM_BUCKET_BYTES +
           eng_claim_key(buf + ENG_CLAIM_BUCKET_BYTES, partner, plen, claim, clen);
}

/* Key of an active certification: (person, cert) [T4]. */
uint32_t eng_pair_key(char *buf, const char *person, uint32_t plen, const char *cert, uint32_t clen)
{
    return key2(buf, person, plen, cert, clen);
}

/* Key of an archived chunk under "S/5/": (partner, period), so the
 * chunks of a partner sort by period. */
uint32_t eng_arch_key(char *buf, const char *partner, uint32_t plen, int32_t period)
{
    char be[4];
    tly_be32_put(be, (uint32_t)period); /* periods are ≥ 0: they sort as numbers */
    return key2(buf, partner, plen, be, sizeof be);
}

uint32_t eng_arch_key7(char *buf, const char *partner, uint32_t plen, int32_t period)
{
    tly_be32_put(buf, (uint32_t)period);
    buf[4] = (char)(unsigned char)plen;
    memcpy(buf + 5, partner, plen);
    return 5 + plen;
}

/* Claim status names, in enum eng_claim_status order (claims view). */
static const char *const claim_status_names[] = {"pending",  "approved",  "paid",
                                                 "rejected", "cancelled", "denied"};

/* Name of status s; s must be a status (asserted). */
const char *eng_claim_status_name(uint8_t s)
{
    TLY_ASSERT(s <= ENG_CLAIM_DENIED);
    return claim_status_names[s];
}
