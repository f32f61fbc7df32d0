/*
 * tly_query.c — the query logic of SPEC section 8 over the shard view
 * stores, the query client and money formatting. See tly_query.h.
 *
 * Reading is LMDB read-only: each request begins one read transaction per
 * shard it needs, back to back, reads, and aborts them. Read transactions
 * never block the consumers' writers and cost a few microseconds, which is
 * what keeps a query well under a millisecond.
 *
 * This file reads the stores with LMDB directly rather than through
 * tly_views.h: a cross-shard answer needs every shard's snapshot open at
 * once (the exceptions merge walks N cursors side by side), and --views
 * points at a views directory (DIR/K-of-N) rather than a data directory.
 * The layout and the "M/shard" check are the same as tly_views.c's.
 */
#include "tly_query.h"

#include <errno.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "query_internal.h"
#include "tly_be.h"
#include "tly_currency.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_keys.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_views.h"

/* Named databases a view environment may hold; we open only "views", but
 * LMDB needs room for the name table of the writer's environment. */
#define VIEWS_MAXDBS 8u

/* Length of an exception key: "X/" + u64be seq + u32be n. */
#define XKEY_BYTES 14u

/* One shard's environment; env is NULL until its store exists. */
typedef struct qshard {
    MDB_env *env;
    MDB_dbi dbi;
    bool has_dbi;  /* the "views" database exists (the consumer created it) */
    char name[24]; /* "K/N": what the store's "M/shard" must say */
    /* Renders the partner documents from the state (snap_doc); NULL until
     * the first. txn: the snapshot it was last bound to. */
    tly_view_reader *reader;
    tly_views_txn txn;
} qshard;

struct tly_query_store {
    char views[TLY_PATH_BYTES_MAX];
    char logdir[TLY_PATH_BYTES_MAX];
    bool has_logdir;
    tly_log *log;        /* opened lazily: the ledger may not have created it */
    uint32_t want;       /* shard count asked for, 0 to discover */
    uint32_t n;          /* shard count of the set in use, 0 while none */
    uint32_t open_count; /* shards of the set with env != NULL */
    bool crowded;        /* the last discovery met more than
                            TLY_QUERY_VIEWS_DIR_ENTRIES_MAX entries */
    qshard sh[TLY_SHARDS_MAX];
    tly__qfast fast;               /* scratch of the fast path (query_fast.c) */
    uint64_t fast_answers;         /* tly_query_store_fast_answers */
    char data[TLY_PATH_BYTES_MAX]; /* tly_query_store_set_data, "" when not set */
};

/* A read snapshot of one shard for the duration of one request. */
typedef struct snap {
    MDB_txn *txn;
    qshard *sh;
    uint64_t checkpoint;
} snap;

/* ------------------------------------------------------------------------ */
/* Opening and discovering the stores                                        */

static tly_err map_mdb(int rc)
{
    if (rc == 0)
        return TLY_OK;
    if (rc == MDB_NOTFOUND || rc == ENOENT)
        return TLY_NOT_FOUND;
    if (rc == ENOMEM)
        return TLY_NOMEM;
    if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
        return TLY_CORRUPT;
    return TLY_STORAGE;
}

/* VIEWS/K-of-N into buf; false when it does not fit. */
static bool shard_path(const tly_query_store *s, uint32_t k, uint32_t n, char *buf, size_t cap)
{
    return tly_layout_shard(s->views, k, n, buf, cap) == TLY_OK;
}

/* True when dir/data.mdb exists; *mtime gets its modification time. */
static bool store_exists(const char *dir, int64_t *mtime)
{
    char p[TLY_PATH_BYTES_MAX + 16];
    struct stat st;
    if (tly_layout_join(dir, TLY_LAYOUT_LMDB_DATA, p, sizeof p) != TLY_OK || stat(p, &st) != 0)
        return false;
    if (mtime)
        *mtime = (int64_t)st.st_mtime;
    return true;
}

static tly_err env_open(const char *dir, MDB_env **out)
{
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, VIEWS_MAXDBS);
    /* MDB_NOTLS: read transactions are not tied to a thread's slot, so a
     * request's transactions never collide with a stale slot of this
     * process. */
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, TLY_FILE_MODE);
    if (rc != 0) {
        if (env)
            mdb_env_close(env);
        tly_logf(TLY_LOG_ERROR, "query", "cannot open view store %s: %s", dir, mdb_strerror(rc));
        return map_mdb(rc);
    }
    *out = env;
    return TLY_OK;
}

static void close_all(tly_query_store *s)
{
    for (uint32_t k = 0; k < TLY_SHARDS_MAX; k++) {
        if (s->sh[k].env)
            mdb_env_close(s->sh[k].env);
        tly_view_reader_free(s->sh[k].reader);
        s->sh[k] = (qshard){0};
    }
    s->open_count = 0;
}

/* Opens the stores of the set s->n that exist and are not open yet. */
static void open_missing(tly_query_store *s)
{
    for (uint32_t k = 0; k < s->n; k++) {
        if (s->sh[k].env)
            continue;
        char p[TLY_PATH_BYTES_MAX + 32];
        if (shard_path(s, k, s->n, p, sizeof p) && store_exists(p, NULL) &&
            env_open(p, &s->sh[k].env) == TLY_OK) {
            snprintf(s->sh[k].name, sizeof s->sh[k].name, "%u/%u", k, s->n);
            s->open_count++;
        }
    }
}

/* Per shard count N seen in the views directory: which K exist, and the
 * newest data.mdb modification time among them. */
typedef struct nset {
    uint64_t present; /* bit K; N <= 64 fits */
    int64_t mtime;
} nset;

_Static_assert(TLY_SHARDS_MAX <= 64, "nset.present holds one bit per shard");

static uint32_t choose_n(const nset sets[TLY_SHARDS_MAX + 1])
{
    uint32_t best_full = 0, best_any = 0;
    for (uint32_t n = 1; n <= TLY_SHARDS_MAX; n++) {
        if (!sets[n].present)
            continue;
        uint64_t full = n == 64 ? UINT64_MAX : ((uint64_t)1 << n) - 1;
        if (sets[n].present == full && (!best_full || sets[n].mtime > sets[best_full].mtime))
            best_full = n;
        if (!best_any || sets[n].mtime > sets[best_any].mtime)
            best_any = n;
    }
    return best_full ? best_full : best_any;
}

/* The walk of discover_n: its store and the sets found so far. */
typedef struct discovery {
    const tly_query_store *s;
    nset sets[TLY_SHARDS_MAX + 1];
} discovery;

/* Counts store K-of-N into its set when its data file is there
 * (tly_layout_each_shard). */
static bool note_store(void *ctx, uint32_t k, uint32_t n)
{
    discovery *dv = ctx;
    char p[TLY_PATH_BYTES_MAX + 32];
    int64_t mtime = 0;
    if (shard_path(dv->s, k, n, p, sizeof p) && store_exists(p, &mtime)) {
        dv->sets[n].present |= (uint64_t)1 << k;
        if (mtime > dv->sets[n].mtime)
            dv->sets[n].mtime = mtime;
    }
    return true;
}

/* Finds the shard count to use when none was given. With more than
 * TLY_QUERY_VIEWS_DIR_ENTRIES_MAX entries ("." and ".." aside) a store may
 * be among those not read: none is used (0) and s->crowded says why,
 * rather than answers from another set or a "no view store" that is wrong. */
static uint32_t discover_n(tly_query_store *s)
{
    discovery dv = {.s = s};
    tly_err err =
        tly_layout_each_shard(s->views, TLY_QUERY_VIEWS_DIR_ENTRIES_MAX, note_store, &dv, NULL);
    s->crowded = err == TLY_TOO_LARGE;
    return err == TLY_OK ? choose_n(dv.sets) : 0;
}

/* Brings the open set up to date before a request: cheap once complete. */
static void refresh(tly_query_store *s)
{
    if (s->n && s->open_count == s->n)
        return;
    uint32_t n = s->want ? s->want : discover_n(s);
    if (n != s->n) {
        close_all(s);
        s->n = n;
    }
    open_missing(s);
}

tly_err tly_query_store_open(const char *views_dir, const char *log_dir, uint32_t shard_count,
                             tly_query_store **out)
{
    if (!views_dir || strlen(views_dir) >= TLY_PATH_BYTES_MAX || shard_count > TLY_SHARDS_MAX ||
        (log_dir && strlen(log_dir) >= TLY_PATH_BYTES_MAX))
        return TLY_USAGE;
    tly_query_store *s = calloc(1, sizeof *s);
    if (!s)
        return TLY_NOMEM;
    snprintf(s->views, sizeof s->views, "%s", views_dir);
    if (log_dir) {
        snprintf(s->logdir, sizeof s->logdir, "%s", log_dir);
        s->has_logdir = true;
    }
    s->want = shard_count;
    tly__qfast_init(&s->fast); /* without it every answer takes the jansson way */
    refresh(s);
    *out = s;
    return TLY_OK;
}

void tly_query_store_close(tly_query_store *s)
{
    if (!s)
        return;
    close_all(s);
    tly_log_close(s->log);
    tly__qfast_free(&s->fast);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Read snapshots                                                            */

/* Begins a read transaction, adopting a map the writer has grown. */
static int txn_begin_ro(MDB_env *env, MDB_txn **txn)
{
    int rc = MDB_MAP_RESIZED;
    for (uint32_t i = 0; i < TLY_VIEWS_RESIZE_RETRIES_MAX && rc == MDB_MAP_RESIZED; i++) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED)
            mdb_env_set_mapsize(env, 0);
    }
    return rc;
}

/* Opens the "views" handle once the consumer has created the database. A
 * handle opened in a read transaction outlives it only if it commits. */
static tly_err ensure_dbi(qshard *sh)
{
    if (sh->has_dbi)
        return TLY_OK;
    MDB_txn *txn;
    int rc = txn_begin_ro(sh->env, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_dbi_open(txn, "views", 0, &sh->dbi);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? TLY_OK : map_mdb(rc);
    }
    /* A store renamed or copied under another K-of-N would answer for the
     * wrong partners: refuse it, as the consumer does (tly_views.h). */
    MDB_val k = {7, "M/shard"}, v;
    rc = mdb_get(txn, sh->dbi, &k, &v);
    if (rc == 0 && (v.mv_size != strlen(sh->name) || memcmp(v.mv_data, sh->name, v.mv_size))) {
        tly_logf(TLY_LOG_ERROR, "query", "the store opened as shard %s says it is shard %.*s",
                 sh->name, (int)(v.mv_size < 24 ? v.mv_size : 24), (const char *)v.mv_data);
        mdb_txn_abort(txn);
        return TLY_CORRUPT;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        return map_mdb(rc);
    sh->has_dbi = true;
    return TLY_OK;
}

static void snap_end(snap *sn)
{
    if (sn->txn)
        mdb_txn_abort(sn->txn);
    sn->txn = NULL;
}

/* Begins a snapshot of a shard and reads its checkpoint (0 when the
 * consumer has written nothing yet). */
static tly_err snap_begin(qshard *sh, snap *sn)
{
    *sn = (snap){.sh = sh};
    tly_err err = ensure_dbi(sh);
    if (err != TLY_OK)
        return err;
    int rc = txn_begin_ro(sh->env, &sn->txn);
    if (rc != 0) {
        sn->txn = NULL;
        return map_mdb(rc);
    }
    if (!sh->has_dbi)
        return TLY_OK;
    MDB_val k = {12, "M/checkpoint"}, v;
    rc = mdb_get(sn->txn, sh->dbi, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        sn->checkpoint = tly_be64_get(v.mv_data);
    else if (rc != MDB_NOTFOUND) {
        snap_end(sn);
        return rc == 0 ? TLY_CORRUPT : map_mdb(rc);
    }
    return TLY_OK;
}

/* Partner's document `view` ('b', 'r', 't', 'c') in snapshot sn of shard k
 * of s->n, rendered from the state by the shard's reader: *doc (JSON text)
 * lives until the shard's next render. TLY_NOT_FOUND when the partner is
 * not an enrolled partner of the shard. */
/* Binds shard k's reader to the snapshot sn (TLY_NOT_FOUND: the store has
 * no views yet). */
static tly_err snap_bind(tly_query_store *s, uint32_t k, const snap *sn)
{
    qshard *sh = sn->sh;
    return sh->has_dbi ? tly_views_reader_bind(&sh->reader, k, s->n, &sh->txn, sn->txn, sh->dbi,
                                               sn->checkpoint)
                       : TLY_NOT_FOUND;
}

static tly_err snap_doc(tly_query_store *s, uint32_t k, const snap *sn, char view,
                        const char *partner, size_t len, const char **doc, size_t *doc_len)
{
    tly_err err = snap_bind(s, k, sn);
    return err == TLY_OK ? tly_view_reader_doc(sn->sh->reader, view, partner, len, doc, doc_len)
                         : err;
}

/* The reply to view of partner straight from its state (the documents are
 * in the section 8 order: tly_view_reader_reply); false (out as it was)
 * for whatever the text way must answer, a reply over a frame included. */
static bool snap_reply(tly_query_store *s, uint32_t k, const snap *sn, char view,
                       const char *partner, size_t len, msgpack_sbuffer *out)
{
    if (snap_bind(s, k, sn) != TLY_OK)
        return false;
    size_t start = out->size;
    if (tly_view_reader_reply(sn->sh->reader, view, partner, len, out) != TLY_OK)
        return false;
    if (out->size - start <= TLY_FRAME_BYTES_MAX)
        return true;
    out->size = start;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */

static json_t *err_reply(tly_err err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *err_reply(tly_err err, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "error", json_string(tly_err_name(err)));
    json_object_set_new(o, "message", json_string(msg));
    if (field)
        json_object_set_new(o, "field", json_string(field));
    return o;
}

/* The key orders of SPEC section 8. */
static const char *const BALANCE_KEYS[] = {
    "partner", "program", "currency", "tier", "seq",     "accrued",   "clawed_back", "adjusted",
    "expired", "pending", "approved", "paid", "deficit", "available", "buckets",     NULL};
static const char *const BUCKET_KEYS[] = {"period", "remaining", "expires_after", NULL};
static const char *const REBATE_KEYS[] = {"partner", "seq",          "periods",
                                          "payable", "accrued_open", NULL};
static const char *const PERIOD_KEYS[] = {"period", "revenue", "rate_bps", "rebate",
                                          "status", "paid",    NULL};
static const char *const TIER_KEYS[] = {"partner",      "seq",  "tier",    "window_revenue",
                                        "active_certs", "next", "history", NULL};
static const char *const NEXT_KEYS[] = {"tier", "revenue_needed", "certs_needed", NULL};
static const char *const HISTORY_KEYS[] = {"seq", "period", "from", "to", NULL};
static const char *const CLAIMS_KEYS[] = {"partner", "seq", "claims", NULL};
static const char *const CLAIM_KEYS[] = {"claim", "status", "requested", "approved",
                                         "paid",  "reason", NULL};
static const char *const PROGRAM_KEYS[] = {"program",        "currency",
                                           "mdf_available",  "mdf_pending",
                                           "mdf_approved",   "rebate_accrued_open",
                                           "rebate_payable", NULL};
static const char *const EXCEPTION_KEYS[] = {"seq",    "kind",   "partner",  "detail", "event_id",
                                             "source", "amount", "currency", NULL};

static bool in_list(const char *key, const char *const *keys)
{
    for (; *keys; keys++)
        if (strcmp(key, *keys) == 0)
            return true;
    return false;
}

/* A copy of src with the listed keys first, in list order, then any other
 * keys as stored (values are shared, not copied). */
static json_t *order_obj(json_t *src, const char *const *keys)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(src, *k);
        if (v)
            json_object_set(o, *k, v);
    }
    const char *key;
    json_t *v;
    json_object_foreach(src, key, v)
    {
        if (!in_list(key, keys))
            json_object_set(o, key, v);
    }
    return o;
}

/* Reorders the objects of the array obj[member] in place of the array. */
static void order_elems(json_t *obj, const char *member, const char *const *keys)
{
    json_t *arr = json_object_get(obj, member);
    if (!json_is_array(arr))
        return;
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        json_array_append_new(out, json_is_object(e) ? order_obj(e, keys) : json_incref(e));
    }
    json_object_set_new(obj, member, out);
}

static void order_member(json_t *obj, const char *member, const char *const *keys)
{
    json_t *v = json_object_get(obj, member);
    if (json_is_object(v))
        json_object_set_new(obj, member, order_obj(v, keys));
}

/* The section 8 shape of a partner view: its keys in SPEC order, and the
 * members whose objects are ordered too (NULL: none); order_obj: the
 * listed keys present, in list order, then the others as stored. The
 * engine writes its documents in these orders (tly_view_reader_reply
 * relies on it); the jansson way orders them again. Every key list holds
 * "seq". */
typedef struct qshape {
    const char *const *keys;        /* the top level (NULL-terminated) */
    const char *elems;              /* an array member: its object elements */
    const char *const *elem_keys;   /*   in this order */
    const char *member;             /* an object member */
    const char *const *member_keys; /*   in this order */
} qshape;

static const qshape SHAPES[] = {
    {BALANCE_KEYS, "buckets", BUCKET_KEYS, NULL, NULL},
    {REBATE_KEYS, "periods", PERIOD_KEYS, NULL, NULL},
    {TIER_KEYS, "history", HISTORY_KEYS, "next", NEXT_KEYS},
    {CLAIMS_KEYS, "claims", CLAIM_KEYS, NULL, NULL},
};

/* The section 8 shape of a partner view (doc already carries "seq"). */
static json_t *shape_view(json_t *doc, char view)
{
    const qshape *sh = &SHAPES[view == 'b' ? 0 : view == 'r' ? 1 : view == 't' ? 2 : 3];
    json_t *o = order_obj(doc, sh->keys);
    if (sh->member)
        order_member(o, sh->member, sh->member_keys);
    order_elems(o, sh->elems, sh->elem_keys);
    return o;
}

/* The reply to a partner query of view whose document (JSON text,
 * rendered from the shard's state) is doc[0..len), at checkpoint seq: the
 * section 8 object in its key order; NULL when doc is not a JSON object
 * (or out of memory). */
static json_t *partner_reply(const char *doc, size_t len, char view, uint64_t seq)
{
    json_t *o = json_loadb(doc, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_t *out = shape_view(o, view);
    json_decref(o);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */

/* tly__qopt_str (query_internal.h): every answer's string options, the
 * section 11 answers' included, are checked here. */
const char *tly__qopt_str(const json_t *req, const char *field, json_t **bad)
{
    json_t *v = json_object_get(req, field);
    if (!v || json_is_null(v))
        return NULL;
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len > TLY_NAME_BYTES_MAX ||
        strlen(json_string_value(v)) != len) {
        json_decref(*bad); /* an earlier field's refusal: the last is answered */
        *bad = err_reply(TLY_BAD_FIELD, field, "'%s' must be a string of 1 to %u bytes", field,
                         TLY_NAME_BYTES_MAX);
        return NULL;
    }
    return json_string_value(v);
}

/* The answer while no set of shard stores is in use (s->n == 0). */
static json_t *no_store_reply(const tly_query_store *s)
{
    if (s->crowded)
        return err_reply(TLY_TOO_LARGE, NULL, TLY_LAYOUT_CROWDED_FMT, s->views,
                         TLY_QUERY_VIEWS_DIR_ENTRIES_MAX);
    return err_reply(TLY_UNAVAILABLE, NULL, "no view store under %s yet", s->views);
}

static bool shards_ready(const tly_query_store *s, json_t **bad)
{
    if (s->n && s->open_count == s->n)
        return true;
    if (!s->n)
        *bad = no_store_reply(s);
    else
        *bad = err_reply(TLY_UNAVAILABLE, NULL, "%u of %u shard view stores under %s exist yet",
                         s->open_count, s->n, s->views);
    return false;
}

/* ------------------------------------------------------------------------ */
/* Partner queries                                                           */

static json_t *unknown_partner(tly_query_store *s, const char *partner);

static json_t *answer_partner(tly_query_store *s, const json_t *req, char view)
{
    json_t *bad = NULL;
    const char *partner = tly__qopt_str(req, "partner", &bad);
    if (bad)
        return bad;
    if (!partner)
        return err_reply(TLY_MISSING_FIELD, "partner", "'partner' is required");
    size_t len = strlen(partner);
    uint32_t k = s->n ? tly_engine_shard_of(partner, len, s->n) : 0;
    if (!s->n || !s->sh[k].env)
        return s->n ? err_reply(TLY_UNAVAILABLE, NULL, "shard %u/%u has no view store yet", k, s->n)
                    : no_store_reply(s);
    snap sn;
    tly_err err = snap_begin(&s->sh[k], &sn);
    if (err != TLY_OK)
        return err_reply(err, NULL, "cannot read shard %u/%u: %s", k, s->n, tly_strerror(err));
    const char *text;
    size_t text_len;
    json_t *out = NULL;
    err = snap_doc(s, k, &sn, view, partner, len, &text, &text_len);
    if (err == TLY_OK && (out = partner_reply(text, text_len, view, sn.checkpoint)) == NULL)
        err = TLY_CORRUPT;
    snap_end(&sn);
    if (err == TLY_NOT_FOUND)
        return unknown_partner(s, partner);
    if (err != TLY_OK)
        return err_reply(err, NULL, "view of '%s' unreadable: %s", partner, tly_strerror(err));
    return out;
}

/* The fast way for a partner query: the request read as answer_partner
 * reads it, the answer packed straight from the partner's state in one
 * snapshot (snap_reply). False (out empty) unless it is the plain case: a
 * bad argument, a store or partner that is missing, a name the direct way
 * refuses all take the jansson way, which says what is wrong. */
static bool answer_partner_fast(tly_query_store *s, const json_t *req, char view,
                                msgpack_sbuffer *out)
{
    json_t *p = json_object_get(req, "partner");
    size_t len = json_string_length(p);
    if (!json_is_string(p) || len == 0 || len > TLY_NAME_BYTES_MAX ||
        strlen(json_string_value(p)) != len)
        return false;
    const char *partner = json_string_value(p);
    refresh(s);
    uint32_t k = s->n ? tly_engine_shard_of(partner, len, s->n) : 0;
    snap sn;
    if (!s->n || !s->sh[k].env || snap_begin(&s->sh[k], &sn) != TLY_OK)
        return false;
    bool ok = snap_reply(s, k, &sn, view, partner, len, out);
    snap_end(&sn);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Cross-shard queries                                                       */

typedef struct tly__qsnaps {
    snap sn[TLY_SHARDS_MAX];
    uint32_t count;
    uint64_t seq_min;
    uint64_t seq_max;
} snapset;
/* query_internal.h names it tly__qsnaps */

static void snapset_end(snapset *ss)
{
    for (uint32_t k = 0; k < ss->count; k++)
        snap_end(&ss->sn[k]);
    ss->count = 0;
}

/* Snapshots every shard, back to back. */
static tly_err snapset_begin(tly_query_store *s, snapset *ss)
{
    ss->count = 0;
    ss->seq_min = UINT64_MAX;
    ss->seq_max = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        tly_err err = snap_begin(&s->sh[k], &ss->sn[k]);
        if (err != TLY_OK) {
            snapset_end(ss);
            return err;
        }
        ss->count++;
        uint64_t c = ss->sn[k].checkpoint;
        ss->seq_min = c < ss->seq_min ? c : ss->seq_min;
        ss->seq_max = c > ss->seq_max ? c : ss->seq_max;
    }
    return TLY_OK;
}

/* Starts a cross-shard answer {"seq": lowest checkpoint [D8], ...}. */
static json_t *cross_reply(const snapset *ss)
{
    json_t *o = json_object();
    if (o)
        json_object_set_new(o, "seq", json_integer((json_int_t)ss->seq_min));
    return o;
}

static void mark_differ(json_t *o, const snapset *ss)
{
    if (ss->seq_min != ss->seq_max)
        json_object_set_new(o, "shards_differ", json_true());
}

/* not_found for a partner, with the nearest known ids: "did you mean". */
static json_t *unknown_partner(tly_query_store *s, const char *partner)
{
    snapset ss;
    json_t *near = NULL;
    if (s->n && s->open_count == s->n && snapset_begin(s, &ss) == TLY_OK) {
        near = tly__suggest_partners(&ss, partner);
        snapset_end(&ss);
    }
    char list[TLY_QUERY_SUGGESTIONS_MAX * (TLY_NAME_BYTES_MAX + 4) + 1] = "";
    size_t used = 0;
    for (size_t i = 0; i < json_array_size(near); i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
                                 json_string_value(json_array_get(near, i)));
    json_t *out = json_array_size(near) > 0
                      ? err_reply(TLY_NOT_FOUND, "partner",
                                  "unknown partner '%s'; did you mean %s?", partner, list)
                      : err_reply(TLY_NOT_FOUND, "partner", "unknown partner '%s'", partner);
    if (out && near)
        json_object_set(out, "suggestions", near);
    json_decref(near);
    return out;
}

/* What a scan gives its visitor: every entry under the prefix as stored,
 * or (rows) the partner list's rows that may pass filter, rendered from
 * the records of the shard's members under TLY_ENGINE_PARTNER_PREFIX. */
typedef struct scan_how {
    bool rows;
    const tly__pfilter *filter;
    tly__qvisit visit;
    void *ctx;
} scan_how;

/* Entry (key, val) of shard k to how's visitor. */
static tly_err scan_give(const scan_how *how, const snapset *ss, uint32_t k, const MDB_val *key,
                         const MDB_val *val)
{
    if (!how->rows)
        return how->visit(how->ctx, key->mv_data, key->mv_size, val->mv_data, val->mv_size);
    const snap *sn = &ss->sn[k];
    const char *doc;
    size_t doc_len;
    tly_err err = tly_views_reader_bind(&sn->sh->reader, k, ss->count, &sn->sh->txn, sn->txn,
                                        sn->sh->dbi, sn->checkpoint);
    if (err == TLY_OK)
        err = tly_view_reader_row(sn->sh->reader, val->mv_data, val->mv_size, tly__pfilter_keeps,
                                  (void *)how->filter, &doc, &doc_len);
    if (err == TLY_NOT_FOUND) /* not a member, or not kept */
        return TLY_OK;
    return err == TLY_OK ? how->visit(how->ctx, key->mv_data, key->mv_size, doc, doc_len) : err;
}

static tly_err scan_after(const tly__qsnaps *ss, const void *prefix, size_t plen, const void *after,
                          size_t alen, uint32_t *kept, uint32_t limit, const scan_how *how)
{
    char from[TLY_VIEWS_KEY_BYTES_MAX + 1];
    if (plen + alen + 1 > sizeof from)
        return TLY_BAD_FIELD;
    memcpy(from, prefix, plen);
    size_t flen = plen;
    if (after) { /* the first key after prefix ‖ after: prefix ‖ after ‖ NUL */
        memcpy(from + plen, after, alen);
        from[plen + alen] = '\0';
        flen = plen + alen + 1;
    }
    tly_err err = TLY_OK;
    for (uint32_t k = 0; err == TLY_OK && k < ss->count; k++) {
        const snap *sn = &ss->sn[k];
        if (!sn->sh->has_dbi)
            continue;
        MDB_cursor *cur;
        int rc = mdb_cursor_open(sn->txn, sn->sh->dbi, &cur);
        if (rc != 0)
            return map_mdb(rc);
        MDB_val key = {flen, from}, val;
        *kept = 0;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        while (rc == 0 && err == TLY_OK && *kept < limit && key.mv_size >= plen &&
               memcmp(key.mv_data, prefix, plen) == 0) {
            err = scan_give(how, ss, k, &key, &val);
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        if (err == TLY_OK && rc != 0 && rc != MDB_NOTFOUND)
            err = map_mdb(rc);
    }
    return err;
}

tly_err tly__qscan_after(const tly__qsnaps *ss, const void *prefix, size_t plen, const void *after,
                         size_t alen, uint32_t *kept, uint32_t limit, tly__qvisit visit, void *ctx)
{
    scan_how how = {false, NULL, visit, ctx};
    return scan_after(ss, prefix, plen, after, alen, kept, limit, &how);
}

tly_err tly__qscan_partners(const tly__qsnaps *ss, const tly__pfilter *filter, const char *after,
                            uint32_t *kept, uint32_t limit, tly__qvisit visit, void *ctx)
{
    scan_how how = {true, filter, visit, ctx};
    return scan_after(ss, TLY_ENGINE_PARTNER_PREFIX, strlen(TLY_ENGINE_PARTNER_PREFIX), after,
                      after ? strlen(after) : 0, kept, limit, &how);
}

tly_err tly__qscan(const tly__qsnaps *ss, const void *prefix, size_t plen, tly__qvisit visit,
                   void *ctx)
{
    uint32_t kept = 0; /* no visitor counts: every entry under prefix */
    return tly__qscan_after(ss, prefix, plen, NULL, 0, &kept, UINT32_MAX, visit, ctx);
}

void tly__qsnaps_seq(const tly__qsnaps *ss, uint64_t *seq, bool *differ)
{
    *seq = ss->seq_min;
    *differ = ss->seq_min != ss->seq_max;
}

json_t *tly__qreply(const tly__qsnaps *ss)
{
    json_t *o = cross_reply(ss);
    if (o)
        mark_differ(o, ss);
    return o;
}

json_t *tly__qerr(tly_err err, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_reply(err, field, "%s", msg);
}

/* Runs a cross-shard answer over one snapshot of every shard. */
static json_t *answer_shards(tly_query_store *s, const json_t *req,
                             json_t *(*fn)(const tly__qsnaps *, const json_t *))
{
    json_t *bad = NULL;
    if (!shards_ready(s, &bad))
        return bad;
    snapset ss;
    tly_err err = snapset_begin(s, &ss);
    if (err != TLY_OK)
        return err_reply(err, NULL, "cannot read the view stores: %s", tly_strerror(err));
    json_t *out = fn(&ss, req);
    snapset_end(&ss);
    return out;
}

/* One program's liabilities, summed over the shards. */
typedef struct liab {
    char program[TLY_NAME_BYTES_MAX + 1];
    json_t *currency;
    int64_t sum[5];
} liab;

typedef struct liabs {
    liab *v;
    uint32_t count;
} liabs;

/* The summed fields, in SPEC order: PROGRAM_KEYS[2..6]. */
#define LIAB_SUMS 5

/* Finds or inserts (sorted by name) the entry of a program (len at most
 * TLY_NAME_BYTES_MAX); NULL when TLY_QUERY_PROGRAMS_MAX are held already. */
static liab *liab_slot(liabs *ls, const char *name, size_t len)
{
    uint32_t i = 0;
    for (; i < ls->count; i++) {
        int c = strncmp(ls->v[i].program, name, len);
        if (c == 0 && ls->v[i].program[len] == '\0')
            return &ls->v[i];
        if (c > 0 || (c == 0 && ls->v[i].program[len] != '\0'))
            break;
    }
    if (ls->count >= TLY_QUERY_PROGRAMS_MAX)
        return NULL;
    memmove(&ls->v[i + 1], &ls->v[i], (ls->count - i) * sizeof ls->v[0]);
    ls->count++;
    ls->v[i] = (liab){0};
    memcpy(ls->v[i].program, name, len);
    return &ls->v[i];
}

/* Adds one shard's share (JSON object) into l. */
static tly_err liab_add(liab *l, json_t *share)
{
    for (int f = 0; f < LIAB_SUMS; f++) {
        json_t *v = json_object_get(share, PROGRAM_KEYS[2 + f]);
        if (!json_is_integer(v))
            return TLY_CORRUPT;
        if (__builtin_add_overflow(l->sum[f], (int64_t)json_integer_value(v), &l->sum[f]))
            return TLY_OVERFLOW;
    }
    if (!l->currency)
        l->currency = json_incref(json_object_get(share, "currency"));
    return TLY_OK;
}

/* Adds the "V/l/<program>" shares of one shard. */
static tly_err liabs_add_shard(liabs *ls, const snap *sn)
{
    if (!sn->sh->has_dbi)
        return TLY_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(sn->txn, sn->sh->dbi, &cur);
    if (rc != 0)
        return map_mdb(rc);
    MDB_val k = {4, "V/l/"}, v;
    tly_err err = TLY_OK;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (uint32_t i = 0; rc == 0 && i <= TLY_QUERY_PROGRAMS_MAX; i++) {
        if (k.mv_size < 5 || memcmp(k.mv_data, "V/l/", 4) != 0)
            break;
        size_t len = k.mv_size - 4;
        bool long_name = len > TLY_NAME_BYTES_MAX;
        liab *l = long_name ? NULL : liab_slot(ls, (const char *)k.mv_data + 4, len);
        json_t *share = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        /* a name over the bound is a corrupt store; no slot left, too many programs */
        err = long_name || !share ? TLY_CORRUPT : !l ? TLY_TOO_LARGE : liab_add(l, share);
        json_decref(share);
        if (err != TLY_OK)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (err == TLY_OK && rc != 0 && rc != MDB_NOTFOUND)
        err = map_mdb(rc);
    return err;
}

static json_t *liabs_json(const liabs *ls)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < ls->count; i++) {
        const liab *l = &ls->v[i];
        json_t *o = json_object();
        json_object_set_new(o, "program", json_string(l->program));
        json_object_set(o, "currency", l->currency ? l->currency : json_null());
        for (int f = 0; f < LIAB_SUMS; f++)
            json_object_set_new(o, PROGRAM_KEYS[2 + f], json_integer(l->sum[f]));
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *answer_liabilities(tly_query_store *s)
{
    json_t *bad = NULL;
    if (!shards_ready(s, &bad))
        return bad;
    snapset ss;
    tly_err err = snapset_begin(s, &ss);
    if (err != TLY_OK)
        return err_reply(err, NULL, "cannot read the view stores: %s", tly_strerror(err));
    liabs ls = {calloc(TLY_QUERY_PROGRAMS_MAX, sizeof(liab)), 0};
    err = ls.v ? TLY_OK : TLY_NOMEM;
    for (uint32_t k = 0; err == TLY_OK && k < ss.count; k++)
        err = liabs_add_shard(&ls, &ss.sn[k]);
    json_t *out = err == TLY_OK ? cross_reply(&ss) : NULL;
    if (out) {
        json_object_set_new(out, "programs", liabs_json(&ls));
        mark_differ(out, &ss);
    } else if (err == TLY_TOO_LARGE) {
        out = err_reply(err, NULL, "cannot sum liabilities: more than %u programs",
                        TLY_QUERY_PROGRAMS_MAX);
    } else {
        out = err_reply(err, NULL, "cannot sum liabilities: %s", tly_strerror(err));
    }
    for (uint32_t i = 0; i < ls.count; i++)
        json_decref(ls.v[i].currency);
    free(ls.v);
    snapset_end(&ss);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Exceptions: a merge of every shard's "X/" keys by (seq, n, shard)         */

typedef struct xfilter {
    const char *partner;
    const char *kind;
    uint64_t from_seq;
} xfilter;

typedef struct xmerge {
    MDB_cursor *cur[TLY_SHARDS_MAX];
    MDB_val key[TLY_SHARDS_MAX];
    MDB_val val[TLY_SHARDS_MAX];
    bool live[TLY_SHARDS_MAX];
    uint32_t count;
} xmerge;

/* Moves shard k's cursor (op) and records whether it still is on an "X/"
 * key. A key of another length under "X/" is corrupt. */
static tly_err xm_step(xmerge *xm, uint32_t k, MDB_cursor_op op)
{
    int rc = mdb_cursor_get(xm->cur[k], &xm->key[k], &xm->val[k], op);
    xm->live[k] = rc == 0 && xm->key[k].mv_size >= 2 && memcmp(xm->key[k].mv_data, "X/", 2) == 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return map_mdb(rc);
    if (xm->live[k] && xm->key[k].mv_size != XKEY_BYTES)
        return TLY_CORRUPT;
    return TLY_OK;
}

static void xm_close(xmerge *xm)
{
    for (uint32_t k = 0; k < xm->count; k++)
        if (xm->cur[k])
            mdb_cursor_close(xm->cur[k]);
}

static tly_err xm_open(xmerge *xm, const snapset *ss, uint64_t from_seq)
{
    memset(xm, 0, sizeof *xm);
    uint8_t start[XKEY_BYTES] = {'X', '/'};
    tly_be64_put(start + 2, from_seq);
    for (uint32_t k = 0; k < ss->count; k++) {
        xm->count = k + 1;
        if (!ss->sn[k].sh->has_dbi)
            continue;
        int rc = mdb_cursor_open(ss->sn[k].txn, ss->sn[k].sh->dbi, &xm->cur[k]);
        if (rc != 0)
            return map_mdb(rc);
        xm->key[k] = (MDB_val){XKEY_BYTES, start};
        tly_err err = xm_step(xm, k, MDB_SET_RANGE);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

/* The shard whose current key is the smallest, or -1 when all are done. */
static int xm_min(const xmerge *xm)
{
    int best = -1;
    for (uint32_t k = 0; k < xm->count; k++) {
        if (!xm->live[k])
            continue;
        if (best < 0 || memcmp(xm->key[k].mv_data, xm->key[best].mv_data, XKEY_BYTES) < 0)
            best = (int)k;
    }
    return best;
}

static bool str_field_is(json_t *o, const char *field, const char *want)
{
    const char *v = json_string_value(json_object_get(o, field));
    return v && strcmp(v, want) == 0;
}

/* Appends the exception e (stored JSON) to arr when it passes the filter. */
static tly_err xm_emit(json_t *arr, const MDB_val *v, const xfilter *f, bool *emitted)
{
    json_t *e = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!json_is_object(e)) {
        json_decref(e);
        return TLY_CORRUPT;
    }
    *emitted = (!f->partner || str_field_is(e, "partner", f->partner)) &&
               (!f->kind || str_field_is(e, "kind", f->kind));
    if (*emitted)
        json_array_append_new(arr, order_obj(e, EXCEPTION_KEYS));
    json_decref(e);
    return TLY_OK;
}

/* Merges into arr; *next_seq is set (non-zero) when the page was cut. A
 * page is cut only between two seqs, so a "from_seq" resume never repeats
 * or skips an exception. */
static tly_err xm_run(xmerge *xm, const xfilter *f, json_t *arr, uint64_t *next_seq)
{
    uint32_t emitted = 0;
    uint64_t last_seq = 0;
    *next_seq = 0;
    for (uint64_t scanned = 0; scanned < TLY_QUERY_EXCEPTIONS_SCAN_MAX + 1; scanned++) {
        int k = xm_min(xm);
        if (k < 0)
            return TLY_OK;
        uint64_t seq = tly_be64_get((const uint8_t *)xm->key[k].mv_data + 2);
        bool full =
            emitted >= TLY_QUERY_EXCEPTIONS_PAGE_MAX || scanned >= TLY_QUERY_EXCEPTIONS_SCAN_MAX;
        if (full && seq != last_seq) {
            *next_seq = seq;
            return TLY_OK;
        }
        bool took = false;
        tly_err err = xm_emit(arr, &xm->val[k], f, &took);
        if (err == TLY_OK)
            err = xm_step(xm, (uint32_t)k, MDB_NEXT);
        if (err != TLY_OK)
            return err;
        emitted += took;
        last_seq = seq;
    }
    /* One seq holding more exceptions than the scan bound: a corrupt store. */
    return TLY_CORRUPT;
}

static json_t *parse_xfilter(const json_t *req, xfilter *f)
{
    *f = (xfilter){0}; /* every field set, also when a bad one returns early */
    json_t *bad = NULL;
    f->partner = tly__qopt_str(req, "partner", &bad);
    if (!bad)
        f->kind = tly__qopt_str(req, "kind", &bad);
    if (bad)
        return bad;
    json_t *from = json_object_get(req, "from_seq");
    f->from_seq = 0;
    if (from && !json_is_null(from)) {
        if (!json_is_integer(from) || json_integer_value(from) < 0)
            return err_reply(TLY_BAD_FIELD, "from_seq", "'from_seq' must be a seq (uint)");
        f->from_seq = (uint64_t)json_integer_value(from);
    }
    return NULL;
}

static json_t *answer_exceptions(tly_query_store *s, const json_t *req)
{
    xfilter f;
    json_t *bad = parse_xfilter(req, &f);
    if (bad || !shards_ready(s, &bad))
        return bad;
    snapset ss;
    tly_err err = snapset_begin(s, &ss);
    if (err != TLY_OK)
        return err_reply(err, NULL, "cannot read the view stores: %s", tly_strerror(err));
    xmerge *xm = malloc(sizeof *xm);
    json_t *arr = json_array();
    uint64_t next_seq = 0;
    err = !xm || !arr ? TLY_NOMEM : xm_open(xm, &ss, f.from_seq);
    if (err == TLY_OK)
        err = xm_run(xm, &f, arr, &next_seq);
    if (xm)
        xm_close(xm);
    free(xm);
    json_t *out = err == TLY_OK ? cross_reply(&ss) : NULL;
    if (out) {
        json_object_set_new(out, "exceptions", arr);
        mark_differ(out, &ss);
        if (next_seq)
            json_object_set_new(out, "next_seq", json_integer((json_int_t)next_seq));
    } else {
        json_decref(arr);
        out = err_reply(err, NULL, "cannot list exceptions: %s", tly_strerror(err));
    }
    snapset_end(&ss);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Status                                                                    */

/* The ledger head, read after the shards so that lag is never negative. */
static tly_err read_head(tly_query_store *s, uint64_t *head)
{
    *head = 0;
    if (!s->has_logdir)
        return TLY_OK;
    if (!s->log) {
        tly_err err = tly_log_open(s->logdir, TLY_LOG_READ, &s->log);
        if (err == TLY_NOT_FOUND)
            return TLY_OK;
        if (err != TLY_OK)
            return err;
    }
    uint8_t hash[TLY_HASH_BYTES];
    return tly_log_head(s->log, head, hash);
}

static json_t *shard_status(tly_query_store *s, uint32_t k, uint64_t *checkpoint)
{
    char name[32];
    snprintf(name, sizeof name, "%u/%u", k, s->n);
    json_t *o = json_object();
    json_object_set_new(o, "shard", json_string(name));
    *checkpoint = 0;
    if (!s->sh[k].env) {
        json_object_set_new(o, "checkpoint", json_integer(0));
        json_object_set_new(o, "present", json_false());
        return o;
    }
    snap sn;
    if (snap_begin(&s->sh[k], &sn) == TLY_OK) {
        *checkpoint = sn.checkpoint;
        snap_end(&sn);
    }
    json_object_set_new(o, "checkpoint", json_integer((json_int_t)*checkpoint));
    return o;
}

void tly_query_store_set_data(tly_query_store *s, const char *data_dir)
{
    if (strlen(data_dir) < sizeof s->data)
        memcpy(s->data, data_dir, strlen(data_dir) + 1);
}

static json_t *answer_status(tly_query_store *s)
{
    if (s->crowded)
        return no_store_reply(s); /* not "no shards": which ones is unknown */
    json_t *shards = json_array();
    uint64_t cps[TLY_SHARDS_MAX];
    for (uint32_t k = 0; k < s->n; k++)
        json_array_append_new(shards, shard_status(s, k, &cps[k]));
    uint64_t head;
    tly_err err = read_head(s, &head);
    if (err != TLY_OK) {
        json_decref(shards);
        return err_reply(err, NULL, "cannot read the log head: %s", tly_strerror(err));
    }
    size_t i;
    json_t *sh;
    json_array_foreach(shards, i, sh)
    {
        uint64_t lag = head > cps[i] ? head - cps[i] : 0;
        json_object_set_new(sh, "lag", json_integer((json_int_t)lag));
    }
    json_t *o = json_object();
    json_object_set_new(o, "head", json_integer((json_int_t)head));
    json_object_set_new(o, "shards", shards);
    if (s->data[0])
        json_object_set_new(o, "data", json_string(s->data));
    return o;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

tly_err tly_query_answer(tly_query_store *s, const json_t *req, json_t **reply)
{
    json_t *out = NULL;
    const char *q = json_string_value(json_object_get(req, "q"));
    if (!json_is_object(req))
        out = err_reply(TLY_MALFORMED, NULL, "a query is a map {\"q\": name, ...}");
    else if (!json_object_get(req, "q"))
        out = err_reply(TLY_MISSING_FIELD, "q", "'q' (the query name) is required");
    else if (!q)
        out = err_reply(TLY_BAD_FIELD, "q", "'q' must be a string");
    if (out) {
        *reply = out;
        return TLY_OK;
    }
    refresh(s);
    static const struct {
        const char *name;
        char view;
    } partner_qs[] = {{"balance", 'b'}, {"rebate", 'r'}, {"tier", 't'}, {"claims", 'c'}};
    for (size_t i = 0; !out && i < sizeof partner_qs / sizeof partner_qs[0]; i++)
        if (strcmp(q, partner_qs[i].name) == 0)
            out = answer_partner(s, req, partner_qs[i].view);
    if (out)
        ;
    else if (strcmp(q, "liabilities") == 0)
        out = answer_liabilities(s);
    else if (strcmp(q, "partners") == 0)
        out = answer_shards(s, req, tly__answer_partners);
    else if (strcmp(q, "report") == 0)
        out = answer_shards(s, req, tly__answer_report);
    else if (strcmp(q, "expiring") == 0)
        out = answer_shards(s, req, tly__answer_expiring);
    else if (strcmp(q, "journal") == 0)
        out = answer_shards(s, req, tly__answer_journal);
    else if (strcmp(q, "exceptions") == 0)
        out = answer_exceptions(s, req);
    else if (strcmp(q, "status") == 0)
        out = answer_status(s);
    else
        out = err_reply(TLY_BAD_FIELD, "q", "unknown query '%.64s'", q);
    *reply = out;
    return out ? TLY_OK : TLY_NOMEM;
}

/* The fast way of a cross-shard list answer (query_finance_fast.c), over
 * one snapshot of every shard; false (out empty) for the jansson way. */
static bool answer_shards_fast(tly_query_store *s, const json_t *req,
                               bool (*fn)(tly__qfast *, const tly__qsnaps *, const json_t *,
                                          msgpack_sbuffer *),
                               msgpack_sbuffer *out)
{
    refresh(s);
    json_t *bad = NULL;
    snapset ss;
    if (!shards_ready(s, &bad)) {
        json_decref(bad);
        return false;
    }
    if (snapset_begin(s, &ss) != TLY_OK)
        return false;
    bool ok = fn(&s->fast, &ss, req, out);
    snapset_end(&ss);
    return ok;
}

tly_err tly_query_answer_encode(tly_query_store *s, const json_t *req, msgpack_sbuffer *out)
{
    static const struct {
        const char *name;
        char view;
    } fast_qs[] = {{"balance", 'b'}, {"rebate", 'r'}, {"tier", 't'}, {"claims", 'c'}};
    const char *q = json_string_value(json_object_get(req, "q"));
    bool fast = false;
    for (size_t i = 0; q && !fast && i < sizeof fast_qs / sizeof fast_qs[0]; i++)
        fast = strcmp(q, fast_qs[i].name) == 0 && answer_partner_fast(s, req, fast_qs[i].view, out);
    if (q && !fast && strcmp(q, "partners") == 0)
        fast = answer_shards_fast(s, req, tly__qfast_partners, out);
    if (q && !fast && strcmp(q, "expiring") == 0)
        fast = answer_shards_fast(s, req, tly__qfast_expiring, out);
    if (fast) {
        s->fast_answers++;
        return TLY_OK;
    }
    json_t *reply = NULL;
    tly_err err = tly_query_answer(s, req, &reply);
    if (err == TLY_OK)
        tly_query_reply_encode(reply, out);
    json_decref(reply);
    return err;
}

uint64_t tly_query_store_fast_answers(const tly_query_store *s)
{
    return s->fast_answers;
}

/* ------------------------------------------------------------------------ */
/* JSON -> MessagePack                                                       */

static tly_err pack_value(msgpack_packer *pk, const json_t *v, unsigned depth);

static tly_err pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (len > UINT32_MAX)
        return TLY_TOO_LARGE;
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
    return TLY_OK;
}

static tly_err pack_object(msgpack_packer *pk, const json_t *v, unsigned depth)
{
    msgpack_pack_map(pk, json_object_size(v));
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m)
    {
        tly_err err = pack_str(pk, key, strlen(key));
        if (err == TLY_OK)
            err = pack_value(pk, m, depth + 1);
        if (err != TLY_OK)
            return err;
    }
    return TLY_OK;
}

static tly_err pack_value(msgpack_packer *pk, const json_t *v, unsigned depth)
{
    if (depth > TLY_MP_DEPTH_MAX)
        return TLY_TOO_LARGE;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return pack_object(pk, v, depth);
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(v));
        size_t i;
        json_t *e;
        json_array_foreach((json_t *)v, i, e)
        {
            tly_err err = pack_value(pk, e, depth + 1);
            if (err != TLY_OK)
                return err;
        }
        return TLY_OK;
    }
    case JSON_STRING:
        return pack_str(pk, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
        return TLY_OK;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return TLY_OK;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return TLY_OK;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return TLY_OK;
    default:
        return TLY_BAD_FIELD;
    }
}

tly_err tly_query_pack(const json_t *v, msgpack_sbuffer *out)
{
    size_t before = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    tly_err err = pack_value(&pk, v, 0);
    if (err != TLY_OK)
        out->size = before;
    return err;
}

/* ------------------------------------------------------------------------ */
/* Client                                                                    */

/* The query client's CURVE keys (tly_query_client_curve); unset: plain. */
static struct {
    bool set;
    char server[TLY_Z85_KEY_CHARS + 1];
    char secret[TLY_Z85_KEY_CHARS + 1];
    char pub[TLY_Z85_KEY_CHARS + 1];
} client_curve;

tly_err tly_query_client_curve(const char *server_key, const char *secret_file, char *msg,
                               size_t cap)
{
    if (!tly_key_z85_valid(server_key)) {
        snprintf(msg, cap, "the server key must be 40 Z85 characters");
        return TLY_USAGE;
    }
    tly_err err = tly_key_read_secret(secret_file, client_curve.secret, msg, cap);
    if (err == TLY_OK && zmq_curve_public(client_curve.pub, client_curve.secret) != 0) {
        snprintf(msg, cap, "%s: cannot derive the public key", secret_file);
        err = TLY_BAD_FIELD;
    }
    memcpy(client_curve.server, server_key, TLY_Z85_KEY_CHARS + 1);
    client_curve.set = err == TLY_OK;
    return err;
}

/* Makes sock a CURVE client when tly_query_client_curve was called. */
static void apply_client_curve(void *sock)
{
    if (!client_curve.set)
        return;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, client_curve.server, TLY_Z85_KEY_CHARS);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, client_curve.pub, TLY_Z85_KEY_CHARS);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, client_curve.secret, TLY_Z85_KEY_CHARS);
}

static tly_err call_on(void *sock, const char *endpoint, const msgpack_sbuffer *body,
                       int timeout_ms, json_t **reply)
{
    apply_client_curve(sock);
    int zero = 0;
    int64_t max = TLY_FRAME_BYTES_MAX;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_connect(sock, endpoint) != 0)
        return errno == EINVAL || errno == EPROTONOSUPPORT ? TLY_USAGE : TLY_IO;
    if (zmq_send(sock, body->data, body->size, 0) < 0)
        return TLY_IO;
    /* A signal caught while waiting (EINTR) is not the service's failure:
     * the wait goes on for the time left. */
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    uint64_t deadline = tly_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    int rc = zmq_poll(&it, 1, timeout_ms);
    while (rc < 0 && errno == EINTR) {
        uint64_t now = tly_mono_ns();
        long left = timeout_ms < 0    ? -1
                    : now >= deadline ? 0
                                      : (long)((deadline - now + 999999u) / 1000000u);
        rc = zmq_poll(&it, 1, left);
    }
    if (rc < 0)
        return TLY_IO;
    if (rc == 0)
        return TLY_TIMEOUT;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
        zmq_msg_close(&msg);
        return TLY_IO;
    }
    json_t *j = tly_json_from_mp(zmq_msg_data(&msg), zmq_msg_size(&msg));
    zmq_msg_close(&msg);
    if (!json_is_object(j)) {
        json_decref(j);
        return TLY_MALFORMED;
    }
    *reply = j;
    return TLY_OK;
}

tly_err tly_query_call(const char *endpoint, const json_t *req, int timeout_ms, json_t **reply)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    tly_err err = tly_query_pack(req, &body);
    if (err != TLY_OK) {
        msgpack_sbuffer_destroy(&body);
        return err;
    }
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    err = sock ? call_on(sock, endpoint, &body, timeout_ms, reply) : TLY_IO;
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    msgpack_sbuffer_destroy(&body);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Money                                                                     */

/* The shared ISO 4217 table; an unknown or malformed code shows 2 digits,
 * which is what most currencies use (display only: stored money is minor
 * units and never depends on this). */
int tly_query_currency_exponent(const char *currency)
{
    int exp = 2;
    if (!currency || strlen(currency) != 3 || tly_currency_exponent(currency, &exp) != TLY_OK)
        return 2;
    return exp;
}

void tly_query_format_money(int64_t minor, int exponent, char *out, size_t cap)
{
    tly_money_text(minor, exponent, out, cap);
}

void tly_query_format_bps(int64_t bps, char *out, size_t cap)
{
    uint64_t mag = bps < 0 ? (uint64_t)0 - (uint64_t)bps : (uint64_t)bps;
    snprintf(out, cap, "%s%llu.%02llu%%", bps < 0 ? "-" : "", (unsigned long long)(mag / 100),
             (unsigned long long)(mag % 100));
}
