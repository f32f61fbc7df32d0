/*
 * audit_views.c — a set of shard view stores read as one; see audit_views.h.
 *
 * The stores are read with LMDB directly (layout: tly_engine.h and
 * tly_views.h) because an audit reads any views directory, including a
 * replay's --out, which has no data directory around it.
 */
#include "audit_views.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_int.h"
#include "tly_assert.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_views.h"

_Static_assert(TLY_SHARDS_MAX <= 64, "a shard set is tracked in a 64-bit mask");

typedef struct audit_shard {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint64_t checkpoint;
    const void *map_addr; /* an address in the store's map: its shard key's value */
} audit_shard;

struct tly_audit_viewset {
    uint32_t count;
    bool twin; /* its environments belong to another set (tly_audit_viewset_twin) */
    audit_shard shard[TLY_SHARDS_MAX];
};

/* ---- finding the shards ---- */

/* Modification time of views_dir/K-of-N/data.mdb (0 when absent). */
static long long data_mtime(const char *views_dir, uint32_t k, uint32_t n)
{
    char dir[TLY_PATH_BYTES_MAX + 64], path[TLY_PATH_BYTES_MAX + 64];
    struct stat st;
    if (tly_layout_shard(views_dir, k, n, dir, sizeof dir) != TLY_OK ||
        tly_layout_join(dir, TLY_LAYOUT_LMDB_DATA, path, sizeof path) != TLY_OK)
        return 0;
    return stat(path, &st) == 0 ? (long long)st.st_mtime : 0;
}

/* Picks the shard count of the complete set (every K of one N) written
 * most recently, as the query service does, so an audit reads what the
 * queries answer from. Returns 0 when there is none. */
static uint32_t pick_set(const char *views_dir, const uint64_t *mask)
{
    uint32_t best = 0;
    long long best_mtime = -1;
    for (uint32_t n = 1; n <= TLY_SHARDS_MAX; n++) {
        uint64_t all = n == 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
        if (mask[n] != all)
            continue;
        long long t = 0;
        for (uint32_t k = 0; k < n; k++) {
            long long m = data_mtime(views_dir, k, n);
            t = m > t ? m : t;
        }
        if (t > best_mtime) {
            best = n;
            best_mtime = t;
        }
    }
    return best;
}

/* A shard store's bit in the mask of its N (tly_layout_each_shard). */
static bool mark_store(void *mask, uint32_t k, uint32_t n)
{
    ((uint64_t *)mask)[n] |= UINT64_C(1) << k;
    return true;
}

static tly_err find_set(const char *views_dir, uint32_t *n, char *msg, size_t cap)
{
    uint64_t mask[TLY_SHARDS_MAX + 1] = {0};
    tly_err err =
        tly_layout_each_shard(views_dir, TLY_AUDIT_VIEWS_DIRENTS_MAX, mark_store, mask, NULL);
    if (err == TLY_NOT_FOUND) {
        tly_audit_msgf(msg, cap, "no views in %s (cannot read the directory)", views_dir);
        return TLY_NOT_FOUND;
    }
    if (err == TLY_TOO_LARGE) {
        tly_audit_msgf(msg, cap, TLY_LAYOUT_CROWDED_FMT, views_dir, TLY_AUDIT_VIEWS_DIRENTS_MAX);
        return TLY_TOO_LARGE;
    }
    *n = pick_set(views_dir, mask);
    if (*n == 0) {
        tly_audit_msgf(msg, cap, "no views in %s (no complete set of shard stores K-of-N)",
                       views_dir);
        return TLY_NOT_FOUND;
    }
    return TLY_OK;
}

/* ---- opening one shard ---- */

/* Reads "M/shard" (must be "K/N") and "M/checkpoint" in the snapshot. */
static tly_err read_meta(audit_shard *s, uint32_t k, uint32_t n, char *msg, size_t cap)
{
    char want[32];
    int len = snprintf(want, sizeof want, "%u/%u", k, n);
    MDB_val key = {strlen(TLY_VIEWS_KEY_SHARD), TLY_VIEWS_KEY_SHARD}, v;
    int rc = mdb_get(s->txn, s->dbi, &key, &v);
    if (rc != 0 || v.mv_size != (size_t)len || memcmp(v.mv_data, want, v.mv_size) != 0) {
        tly_audit_msgf(msg, cap, "store %u-of-%u does not say it is shard %s", k, n, want);
        return rc == 0 || rc == MDB_NOTFOUND ? TLY_CORRUPT : tly_audit_lmdb_err(rc, "M/shard");
    }
    s->map_addr = v.mv_data; /* a read-only environment reads in its map */
    key.mv_size = strlen(TLY_VIEWS_KEY_CHECKPOINT);
    key.mv_data = TLY_VIEWS_KEY_CHECKPOINT;
    rc = mdb_get(s->txn, s->dbi, &key, &v);
    s->checkpoint = 0;
    if (rc == 0 && v.mv_size == 8)
        s->checkpoint = tly_be64_get(v.mv_data);
    else if (rc == 0) {
        tly_audit_msgf(msg, cap, "store %u-of-%u has a checkpoint of %zu bytes", k, n, v.mv_size);
        return TLY_CORRUPT;
    } else if (rc != MDB_NOTFOUND) {
        return tly_audit_lmdb_err(rc, "M/checkpoint");
    }
    return TLY_OK;
}

static tly_err open_shard(const char *views_dir, uint32_t k, uint32_t n, audit_shard *s, char *msg,
                          size_t cap)
{
    char path[TLY_PATH_BYTES_MAX + 64];
    tly_err err = tly_layout_shard(views_dir, k, n, path, sizeof path);
    if (err == TLY_OK)
        err = tly_audit_env_open(path, 4, &s->env);
    /* The database is opened in a transaction of its own, committed, so
     * that its handle belongs to the environment and serves every snapshot
     * taken after, a twin's too (tly_audit_viewset_twin). */
    MDB_txn *first = NULL;
    if (err == TLY_OK)
        err = tly_audit_txn_begin(s->env, &first);
    if (err == TLY_OK) {
        int rc = mdb_dbi_open(first, "views", 0, &s->dbi);
        rc = rc == 0 ? mdb_txn_commit(first) : (mdb_txn_abort(first), rc);
        err = rc == 0 ? TLY_OK : tly_audit_lmdb_err(rc, path);
    }
    if (err == TLY_OK)
        err = tly_audit_txn_begin(s->env, &s->txn);
    if (err == TLY_OK)
        err = read_meta(s, k, n, msg, cap);
    else if (err == TLY_NOT_FOUND) /* a dangling link, an empty or half-copied directory */
        tly_audit_msgf(msg, cap, "cannot open the store %s: it has no %s", path,
                       TLY_LAYOUT_LMDB_DATA);
    else
        tly_audit_msgf(msg, cap, "cannot open the store %s", path);
    return err;
}

tly_err tly_audit_viewset_open(const char *views_dir, tly_audit_viewset **out, char *msg,
                               size_t cap)
{
    uint32_t n;
    tly_err err = find_set(views_dir, &n, msg, cap);
    if (err != TLY_OK)
        return err;
    tly_audit_viewset *vs = calloc(1, sizeof *vs);
    if (!vs)
        return TLY_NOMEM;
    for (uint32_t k = 0; k < n && err == TLY_OK; k++) {
        err = open_shard(views_dir, k, n, &vs->shard[k], msg, cap);
        vs->count = k + 1;
    }
    if (err != TLY_OK) {
        tly_audit_viewset_close(vs);
        return err;
    }
    *out = vs;
    return TLY_OK;
}

tly_err tly_audit_viewset_twin(const tly_audit_viewset *vs, tly_audit_viewset **out)
{
    tly_audit_viewset *t = calloc(1, sizeof *t);
    if (!t)
        return TLY_NOMEM;
    t->twin = true;
    tly_err err = TLY_OK;
    for (uint32_t k = 0; k < vs->count && err == TLY_OK; k++) {
        t->shard[k] = vs->shard[k];
        t->shard[k].txn = NULL;
        t->count = k + 1;
        /* No retry on MDB_MAP_RESIZED here: adopting a new map size is not
         * allowed while vs's transactions are open, and a store that grew
         * has moved past vs's snapshot anyway. */
        int rc = mdb_txn_begin(vs->shard[k].env, NULL, MDB_RDONLY, &t->shard[k].txn);
        if (rc == MDB_MAP_RESIZED)
            err = TLY_UNAVAILABLE;
        else if (rc != 0)
            err = tly_audit_lmdb_err(rc, "read transaction");
        else if (mdb_txn_id(t->shard[k].txn) != mdb_txn_id(vs->shard[k].txn))
            err = TLY_UNAVAILABLE; /* a writer committed between the two */
    }
    if (err != TLY_OK) {
        tly_audit_viewset_close(t);
        return err;
    }
    *out = t;
    return TLY_OK;
}

void tly_audit_viewset_close(tly_audit_viewset *vs)
{
    if (!vs)
        return;
    for (uint32_t k = 0; k < vs->count; k++) {
        if (vs->shard[k].txn)
            mdb_txn_abort(vs->shard[k].txn);
        if (vs->shard[k].env && !vs->twin)
            mdb_env_close(vs->shard[k].env);
    }
    free(vs);
}

uint32_t tly_audit_viewset_shards(const tly_audit_viewset *vs)
{
    return vs->count;
}

uint64_t tly_audit_viewset_checkpoint(const tly_audit_viewset *vs, uint32_t k)
{
    return vs->shard[k].checkpoint;
}

void tly_audit_viewset_seqs(const tly_audit_viewset *vs, uint64_t *lowest, uint64_t *highest)
{
    *lowest = UINT64_MAX;
    *highest = 0;
    for (uint32_t k = 0; k < vs->count; k++) {
        uint64_t c = vs->shard[k].checkpoint;
        *lowest = c < *lowest ? c : *lowest;
        *highest = c > *highest ? c : *highest;
    }
}

/* ---- streams ---- */

/* One shard's position in a family: the current entry, if any. A partner
 * family walks the partner records ("S/4/<partner>") and val is the
 * canonical text of the document its reader rendered from the state
 * (tly_view_reader_canonical), which lives until the head's next step;
 * mv_data NULL when that document is one json_loadb refuses. */
typedef struct stream_head {
    MDB_cursor *cur;
    MDB_val key, val;
    bool live;
    tly_view_reader *reader; /* partner families only */
    tly_views_txn txn;       /* the shard's snapshot, for the reader */
} stream_head;

/* Canonical docs of one exception seq, gathered from every shard. */
typedef struct doc_list {
    char **docs;
    size_t count, next, cap;
} doc_list;

/* The pages of the stores' maps read so far stop counting in the
 * process's resident memory; what is read next faults in the same bytes.
 * A stream does it every TLY_AUDIT_RELEASE_ITEMS items and when it closes.
 * Why this is safe: each store is opened read-only (MDB_RDONLY), so LMDB
 * maps its data.mdb read-only and shared, and the map holds only the page
 * cache's pages; tly_os_release_file_map leaves any other mapping alone.
 * Every page this process can reach belongs to its read transaction's
 * snapshot, which a writer in another process never overwrites while the
 * transaction lives (it writes into pages freed before the snapshot), so a
 * page faulted in again holds the same bytes at the same address. */
static void viewset_release(const tly_audit_viewset *vs)
{
    for (uint32_t k = 0; k < vs->count; k++)
        (void)tly_os_release_file_map(vs->shard[k].map_addr); /* NULL: a no-op */
}

/* Items between two releases: TLY_AUDIT_RELEASE_ITEMS, or fewer from
 * $TALLY_AUDIT_RELEASE_ITEMS (tests release after every item, to show the
 * documents read after a release are the same). */
static uint32_t release_items(void)
{
    return (uint32_t)tly_env_u64("TALLY_AUDIT_RELEASE_ITEMS", 1, TLY_AUDIT_RELEASE_ITEMS,
                                 TLY_AUDIT_RELEASE_ITEMS);
}

struct tly_audit_stream {
    tly_audit_viewset *vs;
    tly_audit_family family;
    char prefix[8];
    size_t prefix_len;
    stream_head head[TLY_SHARDS_MAX];
    uint8_t id[TLY_VIEWS_KEY_BYTES_MAX];
    char *doc;              /* the current item's doc (partner families) */
    doc_list pending;       /* exceptions of the current seq */
    uint32_t asked;         /* tly_audit_stream_next calls (viewset_release) */
    uint32_t release_every; /* release_items() */
};

static const char *const family_prefix[TLY_AUDIT_FAMILY_COUNT] = {
    TLY_ENGINE_PARTNER_PREFIX,
    TLY_ENGINE_PARTNER_PREFIX,
    TLY_ENGINE_PARTNER_PREFIX,
    TLY_ENGINE_PARTNER_PREFIX,
    "V/l/",
    "X/",
};

/* The document letter of a partner family (tly_view_reader_doc); 0 for the
 * other families, whose documents are stored. */
static const char family_view[TLY_AUDIT_FAMILY_COUNT] = {'b', 'r', 't', 'c', 0, 0};

/* Moves head h to its next entry in the family (or marks it done); in a
 * partner family, to the next partner of the shard that has the document
 * (another shard's partner and one not enrolled have none). */
static tly_err head_step(tly_audit_stream *s, stream_head *h, MDB_cursor_op op)
{
    for (;;) {
        int rc = mdb_cursor_get(h->cur, &h->key, &h->val, op);
        h->live = rc == 0 && h->key.mv_size >= s->prefix_len &&
                  memcmp(h->key.mv_data, s->prefix, s->prefix_len) == 0;
        if (rc != 0 && rc != MDB_NOTFOUND)
            return tly_audit_lmdb_err(rc, "views cursor");
        if (!h->live || h->reader == NULL)
            return TLY_OK;
        const char *doc;
        size_t len;
        tly_err err = tly_view_reader_canonical(h->reader, family_view[s->family],
                                                (const char *)h->key.mv_data + s->prefix_len,
                                                h->key.mv_size - s->prefix_len, &doc, &len);
        if (err == TLY_OK || err == TLY_BAD_FIELD) { /* a NUL byte: not JSON (partner_doc) */
            h->val = err == TLY_OK ? (MDB_val){len, (void *)doc} : (MDB_val){0, NULL};
            return TLY_OK;
        }
        if (err != TLY_NOT_FOUND)
            return err;
        op = MDB_NEXT;
    }
}

/* Gives head h of shard k a reader bound to the shard's snapshot. */
static tly_err head_reader(tly_audit_stream *s, uint32_t k, stream_head *h)
{
    const audit_shard *sh = &s->vs->shard[k];
    return tly_views_reader_bind(&h->reader, k, s->vs->count, &h->txn, sh->txn, sh->dbi,
                                 sh->checkpoint);
}

tly_err tly_audit_stream_open(tly_audit_viewset *vs, tly_audit_family f, tly_audit_stream **out)
{
    tly_audit_stream *s = calloc(1, sizeof *s);
    if (!s)
        return TLY_NOMEM;
    s->vs = vs;
    s->family = f;
    s->release_every = release_items();
    s->prefix_len = strlen(family_prefix[f]);
    memcpy(s->prefix, family_prefix[f], s->prefix_len);
    tly_err err = TLY_OK;
    for (uint32_t k = 0; k < vs->count && err == TLY_OK; k++) {
        stream_head *h = &s->head[k];
        int rc = mdb_cursor_open(vs->shard[k].txn, vs->shard[k].dbi, &h->cur);
        if (rc != 0) {
            err = tly_audit_lmdb_err(rc, "views cursor");
            break;
        }
        h->key.mv_size = s->prefix_len;
        h->key.mv_data = s->prefix;
        if (family_view[f])
            err = head_reader(s, k, h);
        if (err == TLY_OK)
            err = head_step(s, h, MDB_SET_RANGE);
    }
    if (err != TLY_OK) {
        tly_audit_stream_close(s);
        return err;
    }
    *out = s;
    return TLY_OK;
}

static void pending_clear(doc_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->docs[i]);
    l->count = l->next = 0;
}

void tly_audit_stream_close(tly_audit_stream *s)
{
    if (!s)
        return;
    for (uint32_t k = 0; k < s->vs->count; k++) {
        if (s->head[k].cur)
            mdb_cursor_close(s->head[k].cur);
        tly_view_reader_free(s->head[k].reader);
    }
    pending_clear(&s->pending);
    free(s->pending.docs);
    free(s->doc);
    viewset_release(s->vs);
    free(s);
}

/* Byte order of two ids (shorter first on a common prefix). */
static int id_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* Index of the shard whose current key is smallest; -1 when all are done. */
static int min_head(const tly_audit_stream *s)
{
    int best = -1;
    for (uint32_t k = 0; k < s->vs->count; k++) {
        const stream_head *h = &s->head[k];
        if (h->live &&
            (best < 0 || id_cmp(h->key.mv_data, h->key.mv_size, s->head[best].key.mv_data,
                                s->head[best].key.mv_size) < 0))
            best = (int)k;
    }
    return best;
}

/* Parses a stored doc, which must be a JSON object. */
static json_t *load_doc(const MDB_val *val, char *msg, size_t cap, const char *what)
{
    json_t *o = json_loadb(val->mv_data, val->mv_size, JSON_REJECT_DUPLICATES, NULL);
    if (o && json_is_object(o))
        return o;
    json_decref(o);
    tly_audit_msgf(msg, cap, "%s is not a JSON object", what);
    return NULL;
}

/* The canonical text of an object: compact, keys in byte order. */
static char *canonical(const json_t *o)
{
    return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
}

/* The canonical text of the partner whose key is shard `first`'s, as its
 * reader rendered it (head_step), into s->doc, and steps that shard on.
 * Nothing to merge: a partner's documents are one shard's, and one in two
 * shards is refused. A document json_loadb would refuse is reported as
 * the other families report theirs (load_doc), the errors in the order
 * merge_key gave them before the partner families left it. */
static tly_err partner_doc(tly_audit_stream *s, int first, char *msg, size_t cap)
{
    MDB_val key = s->head[first].key;
    tly_err err = TLY_OK;
    for (uint32_t k = (uint32_t)first; k < s->vs->count && err == TLY_OK; k++) {
        stream_head *h = &s->head[k];
        if (!h->live || id_cmp(h->key.mv_data, h->key.mv_size, key.mv_data, key.mv_size))
            continue;
        if (h->val.mv_data == NULL) {
            tly_audit_msgf(msg, cap, "a view doc is not a JSON object");
            return TLY_CORRUPT;
        }
        if (k != (uint32_t)first) {
            tly_audit_msgf(msg, cap, "\"%.*s\" is stored in more than one shard", (int)key.mv_size,
                           (const char *)key.mv_data);
            return TLY_CORRUPT;
        }
        free(s->doc);
        s->doc = malloc(h->val.mv_size + 1);
        if (s->doc == NULL)
            return TLY_NOMEM;
        memcpy(s->doc, h->val.mv_data, h->val.mv_size);
        s->doc[h->val.mv_size] = '\0';
        err = head_step(s, h, MDB_NEXT);
    }
    return err;
}

/* Adds the integer fields of share into acc (liabilities of one program);
 * text fields must agree. */
static tly_err add_share(json_t *acc, const json_t *share, char *msg, size_t cap)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)share, key, v)
    {
        json_t *a = json_object_get(acc, key);
        if (!a) {
            json_object_set(acc, key, v);
            continue;
        }
        if (json_is_integer(a) && json_is_integer(v)) {
            json_int_t sum;
            if (__builtin_add_overflow(json_integer_value(a), json_integer_value(v), &sum))
                return TLY_OVERFLOW;
            json_integer_set(a, sum);
        } else if (!json_equal(a, v)) {
            tly_audit_msgf(msg, cap, "shards disagree on liabilities field \"%s\"", key);
            return TLY_CORRUPT;
        }
    }
    return TLY_OK;
}

/* Merges the liabilities entries with key equal to shard `first`'s key
 * from every shard into one object, and steps those shards on. */
static tly_err merge_key(tly_audit_stream *s, int first, json_t **out, char *msg, size_t cap)
{
    MDB_val key = s->head[first].key;
    json_t *acc = NULL;
    tly_err err = TLY_OK;
    for (uint32_t k = (uint32_t)first; k < s->vs->count && err == TLY_OK; k++) {
        stream_head *h = &s->head[k];
        if (!h->live || id_cmp(h->key.mv_data, h->key.mv_size, key.mv_data, key.mv_size))
            continue;
        json_t *o = load_doc(&h->val, msg, cap, "a view doc");
        if (!o)
            err = TLY_CORRUPT;
        else if (!acc)
            acc = o;
        else {
            err = add_share(acc, o, msg, cap);
            json_decref(o);
        }
        if (err == TLY_OK)
            err = head_step(s, h, MDB_NEXT);
    }
    if (err != TLY_OK) {
        json_decref(acc);
        return err;
    }
    *out = acc;
    return TLY_OK;
}

/* The canonical text of the liabilities of the program whose key is shard
 * `first`'s, summed over the shards, into s->doc. */
static tly_err program_doc(tly_audit_stream *s, int first, char *msg, size_t cap)
{
    json_t *o;
    tly_err err = merge_key(s, first, &o, msg, cap);
    if (err != TLY_OK)
        return err;
    /* The view seq is where the store stands, not part of the figures. */
    json_object_del(o, "seq");
    free(s->doc);
    s->doc = canonical(o);
    json_decref(o);
    return s->doc != NULL ? TLY_OK : TLY_NOMEM;
}

/* The next partner (or program) item. */
static tly_err next_named(tly_audit_stream *s, tly_audit_item *item, char *msg, size_t cap)
{
    int first = min_head(s);
    if (first < 0)
        return TLY_NOT_FOUND;
    const MDB_val *key = &s->head[first].key;
    size_t id_len = key->mv_size - s->prefix_len;
    _Static_assert(sizeof s->id == TLY_VIEWS_KEY_BYTES_MAX, "an id fits its key's buffer");
    if (key->mv_size > TLY_VIEWS_KEY_BYTES_MAX) {
        tly_audit_msgf(msg, cap, "a view key of %zu bytes (at most %u)", key->mv_size,
                       TLY_VIEWS_KEY_BYTES_MAX);
        return TLY_CORRUPT;
    }
    memcpy(s->id, (const uint8_t *)key->mv_data + s->prefix_len, id_len);
    tly_err err =
        family_view[s->family] ? partner_doc(s, first, msg, cap) : program_doc(s, first, msg, cap);
    if (err != TLY_OK)
        return err;
    *item = (tly_audit_item){s->id, id_len, s->doc, strlen(s->doc)};
    return TLY_OK;
}

static tly_err pending_push(doc_list *l, char *doc)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->docs, cap * sizeof *p);
        if (!p)
            return TLY_NOMEM;
        l->docs = p;
        l->cap = cap;
    }
    l->docs[l->count++] = doc;
    return TLY_OK;
}

static int doc_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return id_cmp(x, strlen(x), y, strlen(y));
}

/* Seq of an exception key "X/" u64be(seq) u32be(n); false when malformed. */
static bool exception_seq(const MDB_val *key, uint64_t *seq)
{
    if (key->mv_size != 2 + 8 + 4)
        return false;
    *seq = tly_be64_get((const uint8_t *)key->mv_data + 2);
    return true;
}

/* Gathers the exceptions of seq from shard h into the pending list. */
static tly_err gather_seq(tly_audit_stream *s, stream_head *h, uint64_t seq, char *msg, size_t cap)
{
    uint64_t at;
    tly_err err = TLY_OK;
    while (err == TLY_OK && h->live && exception_seq(&h->key, &at) && at == seq) {
        json_t *o = load_doc(&h->val, msg, cap, "an exception");
        if (!o)
            return TLY_CORRUPT;
        char *doc = canonical(o);
        json_decref(o);
        err = doc ? pending_push(&s->pending, doc) : TLY_NOMEM;
        if (err != TLY_OK)
            free(doc);
        else
            err = head_step(s, h, MDB_NEXT);
    }
    return err;
}

/* Refills the pending list with every exception of the lowest seq left. */
static tly_err refill_exceptions(tly_audit_stream *s, char *msg, size_t cap)
{
    int first = min_head(s);
    if (first < 0)
        return TLY_NOT_FOUND;
    uint64_t seq;
    if (!exception_seq(&s->head[first].key, &seq)) {
        tly_audit_msgf(msg, cap, "an exception key of %zu bytes", s->head[first].key.mv_size);
        return TLY_CORRUPT;
    }
    pending_clear(&s->pending);
    for (uint32_t k = 0; k < s->vs->count; k++) {
        tly_err err = gather_seq(s, &s->head[k], seq, msg, cap);
        if (err != TLY_OK)
            return err;
    }
    /* Shards number the exceptions of one seq independently: order them by
     * their text so that the order does not depend on the shard count. */
    qsort(s->pending.docs, s->pending.count, sizeof *s->pending.docs, doc_cmp);
    tly_be64_put(s->id, seq);
    return TLY_OK;
}

static tly_err next_exception(tly_audit_stream *s, tly_audit_item *item, char *msg, size_t cap)
{
    if (s->pending.next == s->pending.count) {
        tly_err err = refill_exceptions(s, msg, cap);
        if (err != TLY_OK)
            return err;
    }
    const char *doc = s->pending.docs[s->pending.next++];
    *item = (tly_audit_item){s->id, 8, doc, strlen(doc)};
    return TLY_OK;
}

tly_err tly_audit_stream_next(tly_audit_stream *s, tly_audit_item *item, char *msg, size_t cap)
{
    if (++s->asked % s->release_every == 0)
        viewset_release(s->vs);
    if (s->family == TLY_AUDIT_EXCEPTIONS)
        return next_exception(s, item, msg, cap);
    return next_named(s, item, msg, cap);
}

/* ---- every family, in parallel ---- */

/* One thread of tly_audit_each_family, with its handles on the sets. */
typedef struct family_thread {
    tly_audit_viewset *sets[TLY_AUDIT_VIEWSETS_MAX];
    uint32_t nsets;
    tly_audit_family_fn fn;
    void *ctx;
    _Atomic int *next; /* the next family to take, shared */
    tly_err *err;
} family_thread;

/* The order the families are taken in: the longest first, so that no
 * thread starts a long one while the others run out of work. Measured on
 * the 10M-event store of `bench fold --growth` (a digest on one thread, a
 * busy machine): exceptions 3.9 s (stored documents, through jansson),
 * rebates 2.4, claims 1.5, tiers 0.9, mdf 0.6, liabilities 0. On two
 * threads, three runs alternated: 4.1-5.2 s in this order, 5.5-6.9 s in
 * the families' own. */
static const tly_audit_family take_order[TLY_AUDIT_FAMILY_COUNT] = {
    TLY_AUDIT_EXCEPTIONS, TLY_AUDIT_REBATES, TLY_AUDIT_CLAIMS,
    TLY_AUDIT_TIERS,      TLY_AUDIT_MDF,     TLY_AUDIT_LIABILITIES,
};

static void *family_main(void *arg)
{
    family_thread *t = arg;
    for (int i; (i = atomic_fetch_add(t->next, 1)) < TLY_AUDIT_FAMILY_COUNT;) {
        tly_audit_family f = take_order[i];
        t->err[f] = t->fn(t->ctx, f, t->sets);
    }
    return NULL;
}

/* Threads to walk the families on: one per online CPU, at most
 * TLY_AUDIT_FAMILY_THREADS_MAX, at least one; $TALLY_AUDIT_FAMILY_THREADS
 * sets it within those (tests: one thread, or one per family). */
static uint32_t family_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t n = cpus < 1 ? 1 : (uint64_t)cpus;
    n = n < TLY_AUDIT_FAMILY_THREADS_MAX ? n : TLY_AUDIT_FAMILY_THREADS_MAX;
    return (uint32_t)tly_env_u64("TALLY_AUDIT_FAMILY_THREADS", 1, TLY_AUDIT_FAMILY_THREADS_MAX, n);
}

/* Gives thread t twins of every set; false (none kept) when one cannot
 * be had. */
static bool twin_all(family_thread *t, tly_audit_viewset *const *sets)
{
    for (uint32_t i = 0; i < t->nsets; i++)
        if (tly_audit_viewset_twin(sets[i], &t->sets[i]) != TLY_OK) {
            while (i-- > 0)
                tly_audit_viewset_close(t->sets[i]);
            return false;
        }
    return true;
}

void tly_audit_each_family(tly_audit_viewset *const *sets, uint32_t nsets, tly_audit_family_fn fn,
                           void *ctx, tly_err err[TLY_AUDIT_FAMILY_COUNT])
{
    TLY_ASSERT(nsets <= TLY_AUDIT_VIEWSETS_MAX);
    _Atomic int next = 0;
    family_thread t[TLY_AUDIT_FAMILY_THREADS_MAX];
    pthread_t tid[TLY_AUDIT_FAMILY_THREADS_MAX];
    bool started[TLY_AUDIT_FAMILY_THREADS_MAX] = {false};
    uint32_t n = 0, want = family_threads();
    for (; n < want; n++) {
        t[n] = (family_thread){.nsets = nsets, .fn = fn, .ctx = ctx, .next = &next, .err = err};
        if (n == 0)
            memcpy(t[0].sets, sets, nsets * sizeof *sets);
        else if (!twin_all(&t[n], sets))
            break; /* a store moved on since the sets were opened */
    }
    for (uint32_t i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, family_main, &t[i]) == 0;
    family_main(&t[0]); /* and whatever a thread that did not start leaves */
    for (uint32_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        for (uint32_t k = 0; k < nsets; k++)
            tly_audit_viewset_close(t[i].sets[k]);
    }
}
