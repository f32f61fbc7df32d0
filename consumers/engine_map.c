/* engine_map.c — the engine's string arena, hash map and vectors. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

char *eng_arena_copy(eng_arena *a, const void *s, size_t len)
{
    size_t need = len + 1;
    eng_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < need) {
        /* A string larger than a quarter chunk gets a chunk of its own, so a
         * long reason does not waste the rest of a shared chunk. */
        size_t cap = need > ENG_ARENA_CHUNK_BYTES / 4 ? need : ENG_ARENA_CHUNK_BYTES;
        eng_chunk *n = malloc(sizeof *n + cap);
        if (n == NULL)
            return NULL;
        n->used = 0;
        n->cap = cap;
        if (cap == need && c != NULL) {
            /* keep the current chunk as head: it still has room */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            a->head = n;
        }
        c = n;
    }
    char *out = c->data + c->used;
    if (len > 0)
        memcpy(out, s, len);
    out[len] = '\0';
    c->used += need;
    return out;
}

void eng_arena_free(eng_arena *a)
{
    eng_chunk *c = a->head;
    while (c != NULL) {
        eng_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* FNV-1a 64: the same function decides shards (tly_engine_shard_of). */
uint64_t eng_hash(const void *s, size_t len)
{
    const unsigned char *p = s;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

uint32_t eng_map_get(const eng_map *m, const void *key, size_t len, uint64_t hash)
{
    if (m->cap == 0)
        return ENG_NONE;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        const eng_slot *s = &m->slots[i];
        if (s->key == NULL)
            return ENG_NONE;
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
    }
}

static void map_place(eng_slot *slots, uint32_t cap, const eng_slot *src)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)src->hash & mask;
    while (slots[i].key != NULL)
        i = (i + 1) & mask;
    slots[i] = *src;
}

static tly_err map_resize(eng_map *m)
{
    uint32_t cap = m->cap == 0 ? 64 : m->cap * 2;
    if (cap < m->cap)
        return TLY_NOMEM;
    eng_slot *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return TLY_NOMEM;
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            map_place(slots, cap, &m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return TLY_OK;
}

tly_err eng_map_put(eng_map *m, const char *key, uint32_t len, uint64_t hash, uint32_t val)
{
    /* Load factor ≤ 1/2 keeps probe chains short. */
    if ((m->count + 1) * 2 > m->cap) {
        tly_err err = map_resize(m);
        if (err != TLY_OK)
            return err;
    }
    eng_slot s = {.hash = hash, .key = key, .len = len, .val = val};
    map_place(m->slots, m->cap, &s);
    m->count++;
    return TLY_OK;
}

void eng_map_free(eng_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

tly_err eng_grow(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return TLY_OK;
    uint64_t ncap = *cap < 4 ? 4 : (uint64_t)*cap * 2;
    while (ncap < need)
        ncap *= 2;
    if (ncap > UINT32_MAX - 1 || ncap * elem > SIZE_MAX / 2)
        return TLY_NOMEM;
    void *n = realloc(*v, (size_t)ncap * elem);
    if (n == NULL)
        return TLY_NOMEM;
    *v = n;
    *cap = (uint32_t)ncap;
    return TLY_OK;
}
