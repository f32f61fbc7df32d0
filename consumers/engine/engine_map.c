/* engine_map.c — floor 6 of the engine (see engine_internal.h): the
 * engine's string arena, owned copies, hash map and vectors. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine_base.h"
#include "tly_assert.h"

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

/* The size class of a block of len bytes: 0 small, 1 large, -1 malloc. */
static int pool_class(size_t len)
{
    return len <= ENG_POOL_SMALL_BYTES ? 0 : len <= ENG_POOL_BLOCK_BYTES ? 1 : -1;
}

char *eng_pool_get(eng_pool *p, size_t len)
{
    int k = pool_class(len);
    if (k < 0)
        return malloc(len);
    size_t size = k == 0 ? ENG_POOL_SMALL_BYTES : ENG_POOL_BLOCK_BYTES;
    if (p->free[k] == NULL) {
        eng_chunk *c = malloc(sizeof *c + size * ENG_POOL_CHUNK_BLOCKS);
        if (c == NULL)
            return NULL;
        c->next = p->chunks;
        c->used = c->cap = size * ENG_POOL_CHUNK_BLOCKS;
        p->chunks = c;
        for (uint32_t i = 0; i < ENG_POOL_CHUNK_BLOCKS; i++)
            eng_pool_put(p, c->data + (size_t)i * size, size);
    }
    char *b = p->free[k];
    memcpy(&p->free[k], b, sizeof p->free[k]);
    return b;
}

void eng_pool_put(eng_pool *p, char *block, size_t len)
{
    int k = pool_class(len);
    if (k < 0) {
        free(block);
        return;
    }
    memcpy(block, &p->free[k], sizeof p->free[k]);
    p->free[k] = block;
}

void eng_pool_free(eng_pool *p)
{
    for (eng_chunk *c = p->chunks, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    *p = (eng_pool){0};
}

/* malloc'd copy of len bytes and a NUL. */
char *eng_copy(const void *s, size_t len)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    if (len > 0)
        memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

/* Owned copy of (s, len) into *out; s NULL gives the none name. */
tly_err eng_name_copy(eng_name *out, const char *s, uint32_t len)
{
    *out = (eng_name){NULL, 0};
    if (s == NULL)
        return TLY_OK;
    char *c = eng_copy(s, len);
    if (c == NULL)
        return TLY_NOMEM;
    *out = (eng_name){c, len};
    return TLY_OK;
}

/* Frees an owned name (the engine made the copy, so the cast is sound). */
void eng_name_free(eng_name *n)
{
    free((void *)(uintptr_t)n->ptr);
    *n = (eng_name){NULL, 0};
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

/* Slots eng_map_prefetch's near step reads: a probe that runs longer is
 * left to the look-up. */
#define ENG_MAP_PREFETCH_PROBES 8u

uint32_t eng_map_prefetch(const eng_map *m, uint64_t hash, bool near)
{
    if (m->cap == 0)
        return ENG_NONE;
    uint32_t mask = m->cap - 1, i = (uint32_t)hash & mask;
    if (!near) {
        __builtin_prefetch(&m->slots[i]);
        return ENG_NONE;
    }
    for (uint32_t n = 0; n < ENG_MAP_PREFETCH_PROBES; n++, i = (i + 1) & mask) {
        const eng_slot *s = &m->slots[i];
        if (s->key == NULL)
            return ENG_NONE; /* not there */
        if (s->hash == hash) {
            __builtin_prefetch(s->key);
            return s->val;
        }
    }
    return ENG_NONE;
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

/* Moves m's entries into a new table of cap slots (which holds them),
 * by the hashes the table holds (no key is read). to NULL: every entry as
 * it is; else an entry of value v goes with value to[v], or not at all when
 * that is ENG_NONE. TLY_NOMEM leaves m as it was. */
static tly_err map_rehash(eng_map *m, uint32_t cap, const uint32_t *to)
{
    eng_slot *slots = slots_alloc(cap);
    if (slots == NULL)
        return TLY_NOMEM;
    uint32_t placed = 0;
    for (uint32_t i = 0; i < m->cap; i++) {
        eng_slot s = m->slots[i];
        if (s.key == NULL || (to != NULL && to[s.val] == ENG_NONE))
            continue;
        if (to != NULL)
            s.val = to[s.val];
        map_place(slots, cap, &s);
        placed++;
    }
    slots_free(m->slots, m->cap);
    m->slots = slots;
    m->cap = cap;
    m->count = placed;
    return TLY_OK;
}

/* The smallest table (never under 64 slots) that holds count entries
 * within the load limit. */
static uint32_t cap_for(uint32_t count)
{
    uint32_t cap = 64;
    while ((uint64_t)count * ENG_MAP_LOAD_DEN > (uint64_t)cap * ENG_MAP_LOAD_NUM)
        cap *= 2;
    return cap;
}

static tly_err map_resize(eng_map *m)
{
    uint32_t cap = m->cap == 0 ? 64 : m->cap * 2;
    if (cap < m->cap)
        return TLY_NOMEM;
    return map_rehash(m, cap, NULL);
}

tly_err eng_map_put(eng_map *m, const char *key, uint32_t len, uint64_t hash, uint32_t val)
{
    /* Load factor ≤ 3/4: a hit probes about 2.5 slots, a miss (every new
     * sale's key) about 8.5, each slot 24 bytes. The sales map is the
     * largest, and it peaks with the batch: at 1/2 the 1M-event `bench fold`
     * log on one shard peaked at 258 MB RSS, at 3/4 at 246 MB, in the same
     * fold time (a table half as large, and a doubling fewer). */
    if ((uint64_t)(m->count + 1) * ENG_MAP_LOAD_DEN > (uint64_t)m->cap * ENG_MAP_LOAD_NUM) {
        tly_err err = map_resize(m);
        if (err != TLY_OK)
            return err;
    }
    eng_slot s = {.hash = hash, .key = key, .len = len, .val = val};
    map_place(m->slots, m->cap, &s);
    m->count++;
    return TLY_OK;
}

/* Index of key's slot; key must be present. */
static uint32_t map_slot_of(const eng_map *m, const void *key, size_t len, uint64_t hash)
{
    TLY_ASSERT(m->cap > 0);
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        const eng_slot *s = &m->slots[i];
        TLY_ASSERT(s->key != NULL);
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0)
            return i;
    }
}

/* Backward-shift deletion: every later slot of the probe run whose home
 * is not in (hole, slot] moves into the hole, so no tombstone is left and
 * lookups stay exact. */
void eng_map_del(eng_map *m, const void *key, size_t len, uint64_t hash)
{
    uint32_t mask = m->cap - 1;
    uint32_t hole = map_slot_of(m, key, len, hash);
    for (uint32_t j = (hole + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)m->slots[j].hash & mask;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        m->slots[hole] = m->slots[j];
        hole = j;
    }
    m->slots[hole] = (eng_slot){0};
    m->count--;
}

void eng_map_set(eng_map *m, const void *key, size_t len, uint64_t hash, uint32_t val)
{
    m->slots[map_slot_of(m, key, len, hash)].val = val;
}

void eng_map_shrink(eng_map *m)
{
    uint32_t cap = cap_for(m->count);
    if (cap < m->cap)
        (void)map_rehash(m, cap, NULL); /* without memory the larger table still serves */
}

tly_err eng_map_remap(eng_map *m, const uint32_t *to, uint32_t kept)
{
    TRY(map_rehash(m, cap_for(kept), to));
    TLY_ASSERT(m->count == kept);
    return TLY_OK;
}

tly_err eng_intern(eng_map *m, eng_arena *a, const char *s, uint32_t len, eng_name *out)
{
    uint64_t h = eng_hash(s, len);
    uint32_t v = eng_map_get(m, s, len, h);
    if (v != ENG_NONE) {
        const eng_slot *slot = &m->slots[map_slot_of(m, s, len, h)];
        *out = (eng_name){slot->key, slot->len};
        return TLY_OK;
    }
    char *k = eng_arena_copy(a, s, len);
    if (k == NULL)
        return TLY_NOMEM;
    TRY(eng_map_put(m, k, len, h, 0));
    *out = (eng_name){k, len};
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
    uint64_t ncap = *cap == 0 ? need : (uint64_t)*cap + *cap / 2 + 1;
    while (ncap < need)
        ncap += ncap / 2 + 1;
    if (ncap > UINT32_MAX - 1 || ncap * elem > SIZE_MAX / 2)
        return TLY_NOMEM;
    void *n = realloc(*v, (size_t)ncap * elem);
    if (n == NULL)
        return TLY_NOMEM;
    *v = n;
    *cap = (uint32_t)ncap;
    return TLY_OK;
}
