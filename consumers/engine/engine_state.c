/*
 * engine_state.c — floor 3 (see engine_internal.h): the engine's tables.
 * Partner records, dirty marks, the exception list, interned pair keys,
 * the registry and claim keys, and the claim status names: the helpers
 * every rule of floor 2 shares. Calls the trace hook (floor 4) and the
 * base (floor 5) only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_state.h"
#include "tly_assert.h"

/* Longest exception detail; details quote at most a few names. */
#define ENG_DETAIL_BYTES_MAX 512

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

/* The partner record of id, created (unenrolled; with a money state when
 * owned, traced when the trace wants it) on first sight. */
tly_err eng_partner_get(tly_engine *e, const char *id, size_t len, uint32_t *out)
{
    uint64_t h = eng_hash(id, len);
    uint32_t p = eng_map_get(&e->partner_map, id, len, h);
    if (p != ENG_NONE) {
        *out = p;
        return TLY_OK;
    }
    char *key = eng_arena_copy(&e->arena, id, len);
    if (key == NULL)
        return TLY_NOMEM;
    eng_partner rec = {
        .id = key, .id_len = (uint32_t)len, .program = ENG_NONE, .owned = eng_owned(e, id, len)};
    if (rec.owned && (rec.st = eng_pstate_new()) == NULL)
        return TLY_NOMEM;
    if (rec.st != NULL)
        eng_trace_attach(e, rec.st, id, len);
    tly_err err = ENG_PUSH(e->partners, e->partner_count, e->partner_cap, rec);
    if (err != TLY_OK) {
        eng_pstate_free(rec.st);
        return err;
    }
    p = e->partner_count - 1;
    TRY(eng_map_put(&e->partner_map, key, (uint32_t)len, h, p));
    *out = p;
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
    TRY(ENG_PUSH(e->dirty_partners, e->dirty_partner_count, e->dirty_partner_cap, p));
    pp->dirty = true;
    return TLY_OK;
}

/* Marks registry entry s for the next flush. */
tly_err eng_sale_dirty(tly_engine *e, uint32_t s)
{
    if (e->sales[s].dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_sales, e->dirty_sale_count, e->dirty_sale_cap, s));
    e->sales[s].dirty = true;
    return TLY_OK;
}

/* Marks claim c for the next flush. */
tly_err eng_claim_dirty(tly_engine *e, uint32_t c)
{
    if (e->claims[c].dirty)
        return TLY_OK;
    TRY(ENG_PUSH(e->dirty_claims, e->dirty_claim_count, e->dirty_claim_cap, c));
    e->claims[c].dirty = true;
    return TLY_OK;
}

/* Appends x to the exception list (flushed from exc_flushed on). */
tly_err eng_exc_add(tly_engine *e, const eng_exc *x)
{
    return ENG_PUSH(e->excs, e->exc_count, e->exc_cap, *x);
}

/* Formats the detail into the arena (truncated to ENG_DETAIL_BYTES_MAX)
 * and appends the exception at pos, advancing pos's counter [D7]. */
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
    eng_exc x = {.seq = pos.seq, .n = (*pos.n)++, .kind = kind, .partner = partner};
    x.detail.ptr = eng_arena_copy(&e->arena, buf, (size_t)len);
    x.detail.len = (uint32_t)len;
    if (x.detail.ptr == NULL)
        return TLY_NOMEM;
    return eng_exc_add(e, &x);
}

/* The interned copy of a (person, cert) pair key: equal keys get the same
 * pointer, so an active pair compares by pointer. */
tly_err eng_pair_intern(tly_engine *e, const char *key, size_t len, eng_name *out)
{
    uint64_t h = eng_hash(key, len);
    uint32_t v = eng_map_get(&e->pair_map, key, len, h);
    if (v != ENG_NONE) {
        /* the map value is unused: the slot's key pointer is the identity */
        uint32_t mask = e->pair_map.cap - 1;
        for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
            const eng_slot *s = &e->pair_map.slots[i];
            if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
                *out = (eng_name){s->key, s->len};
                return TLY_OK;
            }
        }
    }
    char *k = eng_arena_copy(&e->arena, key, len);
    if (k == NULL)
        return TLY_NOMEM;
    TRY(eng_map_put(&e->pair_map, k, (uint32_t)len, h, 0));
    *out = (eng_name){k, (uint32_t)len};
    return TLY_OK;
}

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

/* Registry key of a sale: (source, id). */
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

/* Key of an active certification: (person, cert) [T4]. */
uint32_t eng_pair_key(char *buf, const char *person, uint32_t plen, const char *cert, uint32_t clen)
{
    return key2(buf, person, plen, cert, clen);
}

/* Appends p to g's members. */
tly_err eng_program_add_member(eng_program *g, uint32_t p)
{
    return ENG_PUSH(g->members, g->member_count, g->member_cap, p);
}

/* A zeroed money state (calloc); NULL when out of memory. */
eng_pstate *eng_pstate_new(void)
{
    return calloc(1, sizeof(eng_pstate));
}

/* Frees st's vectors and st; names live in the arena. */
void eng_pstate_free(eng_pstate *st)
{
    if (st == NULL)
        return;
    free(st->buckets);
    free(st->rows);
    free(st->hist);
    free(st->certs);
    free(st->claims);
    free(st->held);
    free(st);
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
