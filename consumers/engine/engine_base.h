/*
 * engine_base.h — floor 6 of the engine, the lowest: what the engine is
 * built from, knowing nothing of programs, partners or money. The TRY
 * macro, the string arena, owned copies, the hash map and growable vectors
 * (engine_map.c), the JSON writer (engine_json.c); beside it, on the same
 * floor with headers of their own, the exception kinds (tly_xkind.c) and
 * money arithmetic (tly_money.c). Files here call nothing of the engine
 * above them; engine_internal.h draws the floors.
 */
#ifndef TLY_ENGINE_BASE_H
#define TLY_ENGINE_BASE_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_be.h"
#include "tly_err.h"
#include "tly_mpw.h"

/* Returns from the calling function with the error of x, if any. */
#define TRY(x)                                                                                     \
    do {                                                                                           \
        tly_err err_ = (x);                                                                        \
        if (err_ != TLY_OK)                                                                        \
            return err_;                                                                           \
    } while (0)

#define ENG_NONE UINT32_MAX

/* A string with its length, NUL-terminated: either in the arena (global
 * names, never freed one by one) or an owned copy (eng_copy, freed with
 * eng_name_free by whatever holds it). */
typedef struct eng_name {
    const char *ptr;
    uint32_t len;
} eng_name;

/* Arena chunk: large enough that chunk overhead is negligible, small
 * enough that an engine with few strings stays small. */
#define ENG_ARENA_CHUNK_BYTES (64u * 1024u)

/* ---- arena and map (engine_map.c) ---- */

typedef struct eng_chunk {
    struct eng_chunk *next;
    size_t used, cap;
    char data[];
} eng_chunk;

typedef struct eng_arena {
    eng_chunk *head;
} eng_arena;

/* Copies len bytes plus a NUL into the arena; NULL when out of memory. */
char *eng_arena_copy(eng_arena *a, const void *s, size_t len);
void eng_arena_free(eng_arena *a);

/* A pool of small blocks in two sizes: the sale cache takes and gives
 * back hundreds of thousands of small blocks per batch (a sale's key and
 * partner id), which malloc serves slowly (consolidating its bins); the
 * pool keeps freed blocks on a list per size for the next taker. Its
 * chunks go with the engine, so it holds the most blocks of each size
 * ever taken at once. Two sizes rather than one of 64 bytes: `bench fold`
 * keys are 25-30 bytes, and with one size the pool was 20.6 MB of the 3M
 * log's peak on one shard (heaptrack), half of it never written. */
#define ENG_POOL_SMALL_BYTES 32u
#define ENG_POOL_BLOCK_BYTES 64u
#define ENG_POOL_CHUNK_BLOCKS 1024u

typedef struct eng_pool {
    eng_chunk *chunks;
    void *free[2]; /* freed blocks of each size, linked through their first bytes */
} eng_pool;

/* A block of len ≤ ENG_POOL_BLOCK_BYTES bytes from the pool (one of
 * ENG_POOL_SMALL_BYTES when len fits), else from malloc; NULL when out of
 * memory. Give it back with eng_pool_put and the same len. */
char *eng_pool_get(eng_pool *p, size_t len);
void eng_pool_put(eng_pool *p, char *block, size_t len);
void eng_pool_free(eng_pool *p);

/* An owned copy of len bytes plus a NUL (malloc); NULL when out of memory. */
char *eng_copy(const void *s, size_t len);
/* Owned copy of s into *out (s.ptr NULL: *out is none); TLY_NOMEM. */
tly_err eng_name_copy(eng_name *out, const char *s, uint32_t len);
/* Frees an owned name and empties it; a none name is a no-op. */
void eng_name_free(eng_name *n);

typedef struct eng_slot {
    uint64_t hash;
    const char *key; /* NULL: empty slot; points into the arena */
    uint32_t len;
    uint32_t val;
} eng_slot;

/* A slot table this big or bigger is aligned to, and asks for, huge pages
 * (2 MB on x86-64 and arm64 Linux). */
#define ENG_MAP_HUGE_BYTES ((size_t)2u << 20)

/* A map holds at most ENG_MAP_LOAD_NUM/ENG_MAP_LOAD_DEN entries per slot;
 * the put that would pass it doubles the table first (eng_map_put says why
 * 3/4). */
#define ENG_MAP_LOAD_NUM 3u
#define ENG_MAP_LOAD_DEN 4u

/* Open addressing, linear probing, power-of-two capacity, load ≤ 3/4.
 * Keys are borrowed: each must stay valid while it is in the map; the
 * caches remove theirs (eng_map_del) before freeing them. */
typedef struct eng_map {
    eng_slot *slots;
    uint32_t cap, count;
} eng_map;

uint64_t eng_hash(const void *s, size_t len);
/* Value of key, or ENG_NONE. */
uint32_t eng_map_get(const eng_map *m, const void *key, size_t len, uint64_t hash);
/* A hint that hash is about to be looked up; it changes nothing. Far:
 * loads the slot its probe starts at into the CPU's cache (ENG_NONE).
 * Near (that slot loaded): loads the key of the first slot with that hash
 * within ENG_MAP_PREFETCH_PROBES of the start and returns its value, not
 * compared (ENG_NONE: none there). */
uint32_t eng_map_prefetch(const eng_map *m, uint64_t hash, bool near);
/* Adds key (which must be absent and must stay valid while mapped) → val. */
tly_err eng_map_put(eng_map *m, const char *key, uint32_t len, uint64_t hash, uint32_t val);
/* Removes key, which must be present (asserted). */
void eng_map_del(eng_map *m, const void *key, size_t len, uint64_t hash);
/* Sets the value of key, which must be present (asserted). */
void eng_map_set(eng_map *m, const void *key, size_t len, uint64_t hash, uint32_t val);
/* Rebuilds the table at the smallest size that holds its entries within
 * the load limit, when that is smaller; on no memory it stays as it is. */
void eng_map_shrink(eng_map *m);
/* Rebuilds m at the smallest size for the kept entries, whose values map
 * through to: an entry of value v stays, with value to[v], unless to[v] is
 * ENG_NONE; kept of them do. One pass in slot order with the hashes the
 * table holds: no key is read, so a dropped entry's key may be gone. On
 * TLY_NOMEM m is as it was, values and keys that may be gone included. */
tly_err eng_map_remap(eng_map *m, const uint32_t *to, uint32_t kept);
void eng_map_free(eng_map *m);
/* The interned copy of s in map m and arena a: equal strings give the same
 * pointer, kept until the arena is freed. */
tly_err eng_intern(eng_map *m, eng_arena *a, const char *s, uint32_t len, eng_name *out);

/* Sets out to the first index of v[0..n) whose member is not below key
 * (v sorted by member, ascending): where key is, or would be inserted. */
#define ENG_LOWER_BOUND(v, n, member, key, out)                                                    \
    do {                                                                                           \
        uint32_t lo_ = 0, hi_ = (n);                                                               \
        while (lo_ < hi_) {                                                                        \
            uint32_t mid_ = lo_ + (hi_ - lo_) / 2;                                                 \
            if ((v)[mid_].member < (key))                                                          \
                lo_ = mid_ + 1;                                                                    \
            else                                                                                   \
                hi_ = mid_;                                                                        \
        }                                                                                          \
        (out) = lo_;                                                                               \
    } while (0)

/* Grows a vector *v of *cap elements of size elem so it holds need: an
 * empty one to need exactly, then by half again. Most vectors are a
 * partner's, of a few elements each (periods, buckets, certifications),
 * and a batch at 10M events of `bench fold` holds 100,000 partners: from
 * at least 4 and doubling, their slack was a third of the engine's heap
 * (acts 33 MB for 1.3 per partner); the peak of a one-shard fold fell
 * from 377 to 360 MiB, in the same time. */
tly_err eng_grow(void **v, uint32_t *cap, uint32_t need, size_t elem);
#define ENG_PUSH(vec, n, cap, value)                                                               \
    (eng_grow((void **)&(vec), &(cap), (n) + 1, sizeof *(vec)) != TLY_OK                           \
         ? TLY_NOMEM                                                                               \
         : ((vec)[(n)++] = (value), TLY_OK))

/* ---- JSON writer (engine_json.c) ----
 *
 * The section 8 objects are written once, against this writer, which has
 * two back ends: text (the bytes json_dumps(doc, JSON_COMPACT) gives for
 * the same tree, straight into a reusable buffer: the flush path) and tree
 * (jansson objects for the public API). One definition per view, so the
 * stored text and the API objects cannot drift. */

/* Deepest nesting a view needs: object, array, object (one spare). */
#define ENG_JW_DEPTH_MAX 4u

/* Most members of one object the canonical text sorts: the partner
 * documents' widest, the balance, has 15 with "seq" (one spare). */
#define ENG_JW_MEMBERS_MAX 16u

/* Canonical text: each open object's members so far, where each starts in
 * the buffer (its key's opening quote) and its key, to sort them at the
 * object's end. Kept apart from eng_jw, whose other uses need none. */
typedef struct eng_jw_members {
    size_t at[ENG_JW_DEPTH_MAX][ENG_JW_MEMBERS_MAX];
    const char *key[ENG_JW_DEPTH_MAX][ENG_JW_MEMBERS_MAX];
} eng_jw_members;

/* A growable byte buffer, reused across documents; failed is sticky. */
typedef struct eng_buf {
    char *data; /* owned; freed by eng_buf_free */
    size_t len, cap;
    bool failed; /* an allocation failed: the contents are incomplete */
} eng_buf;

/* Puts a NUL after the contents (not counted in len); false when out of
 * memory. */
bool eng_buf_terminate(eng_buf *b);
void eng_buf_free(eng_buf *b);

typedef struct eng_jw {
    eng_buf *text;                   /* text back end */
    eng_jw_members *sorted;          /* text: canonical (members sorted); NULL: as written */
    tly_mpw mp;                      /* MessagePack back end (mp.b set); neither: tree */
    bool comma;                      /* text: the next member or element needs a ',' */
    const char *key;                 /* tree: name of the next member */
    char closer[ENG_JW_DEPTH_MAX];   /* text, mp: '}' or ']' of each open one */
    json_t *stack[ENG_JW_DEPTH_MAX]; /* tree: open containers (borrowed) */
    size_t at[ENG_JW_DEPTH_MAX];     /* mp: where each open one's head is; sorted: its body */
    uint32_t n[ENG_JW_DEPTH_MAX];    /* mp: members or elements so far; sorted: members */
    uint32_t depth;
    json_t *root;
    bool failed; /* tree: an allocation failed; sorted: a NUL byte (mp: mp.failed) */
} eng_jw;

/* Starts a document appended to b (its len is not reset). */
void eng_jw_init_text(eng_jw *w, eng_buf *b);
/* Starts a canonical document appended to b: schemas/DIGEST.md's text,
 * the bytes json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) gives for the
 * text back end's document read back with json_loadb, written straight
 * from the calls: the text back end's bytes with each object's members
 * reordered by key (strcmp, as jansson compares keys without NUL bytes)
 * when the object ends, in m. Objects have at most ENG_JW_MEMBERS_MAX
 * members and no key twice (asserted). w->failed when a string held a NUL
 * byte: json_loadb refuses the text back end's "\u0000", so the caller
 * takes the text way and reports what that gives. */
void eng_jw_init_canonical(eng_jw *w, eng_buf *b, eng_jw_members *m);
void eng_jw_init_tree(eng_jw *w);
/* Starts a document appended to b as MessagePack: the bytes msgpack-c packs
 * for the tree back end's document (maps in insertion order, integers in
 * their smallest form, the fix forms where they fit), without the tree.
 * w->mp.failed when b could not grow or a string held a NUL byte (the text
 * back end writes it as \u0000, which jansson refuses to read back: the
 * caller takes the text way and reports what that gives). */
void eng_jw_init_mp(eng_jw *w, msgpack_sbuffer *b);
/* Tree back end: the finished document (caller owns it), or NULL when an
 * allocation failed. */
json_t *eng_jw_take(eng_jw *w);
void eng_jw_obj(eng_jw *w);
void eng_jw_arr(eng_jw *w);
void eng_jw_end(eng_jw *w);
/* k is a literal that lives as long as the writer. */
void eng_jw_key(eng_jw *w, const char *k);
/* NULL writes null; bytes that are not UTF-8 (as jansson checks it) write
 * "" exactly as json_stringn's refusal did. */
void eng_jw_str(eng_jw *w, const char *s, size_t len);
void eng_jw_int(eng_jw *w, int64_t v);
void eng_jw_null(eng_jw *w);

#endif
