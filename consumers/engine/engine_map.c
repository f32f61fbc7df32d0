/* engine_map.c — floor 5 of the engine (see engine_internal.h): the
 * engine's string arena, hash map and vectors. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine_base.h"

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

/* A zeroed slot table of cap slots. A million sales make a 48 MB table
 * that every new sale probes at a random place: with 4 KB pages nearly each
 * probe is a TLB miss as well as a cache miss. So a table of at least one
 * huge page is mapped directly (fresh pages are zero, no memset), aligned
 * to a huge page, and asks for huge pages (only a hint: the kernel may
 * decline, and then it is an ordinary mapping). */
static eng_slot *slots_alloc(uint32_t cap)
{
    size_t bytes = (size_t)cap * sizeof(eng_slot);
    if (bytes < ENG_MAP_HUGE_BYTES)
        return calloc(cap, sizeof(eng_slot));
    size_t span = bytes + ENG_MAP_HUGE_BYTES;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    size_t head = (ENG_MAP_HUGE_BYTES - (uintptr_t)p % ENG_MAP_HUGE_BYTES) % ENG_MAP_HUGE_BYTES;
    if (head > 0)
        munmap(p, head);
    munmap(p + head + bytes, span - head - bytes);
    p += head;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return (eng_slot *)p;
}

/* Frees a table from slots_alloc(cap); NULL is a no-op. */
static void slots_free(eng_slot *slots, uint32_t cap)
{
    size_t bytes = (size_t)cap * sizeof(eng_slot);
    if (slots == NULL)
        return;
    if (bytes < ENG_MAP_HUGE_BYTES)
        free(slots);
    else
        munmap(slots, bytes);
}

static tly_err map_resize(eng_map *m)
{
    uint32_t cap = m->cap == 0 ? 64 : m->cap * 2;
    if (cap < m->cap)
        return TLY_NOMEM;
    eng_slot *slots = slots_alloc(cap);
    if (slots == NULL)
        return TLY_NOMEM;
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            map_place(slots, cap, &m->slots[i]);
    slots_free(m->slots, m->cap);
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
    slots_free(m->slots, m->cap);
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
