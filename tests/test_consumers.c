/*
 * test_consumers.c — the consumer runtime: the shard view store, `tally
 * consume` over real logs (exactly once across restarts and kill -9, the
 * same partner views for any shard count), live following of a real
 * `tally ledger` fed by `tally send`, and following an events socket that
 * drops, repeats, reorders and garbles messages (never a missed or doubly
 * applied record).
 *
 * Seeded tests print their seed; set TALLY_TEST_SEED to replay one.
 */
#include <check.h>
#include <jansson.h>
#include <lmdb.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "testutil.h"
#include "tly_ahead.h"
#include "tly_cli.h"
#include "tly_engine.h"
#include "tly_foldgen.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_views.h"

/* A generated log big enough that a consumer is killed mid-fold, small
 * enough for a sanitizer build. */
#define KILL_LOG_EVENTS 40000u
#define KILL_ROUNDS 5
/* Longest wait before a kill, whatever the machine's speed. */
#define KILL_DELAY_MS_MAX 5000
#define SHARD_LOG_EVENTS 15000u
/* Several log-read requests (TLY_CONSUME_LOGREAD_RECORDS_MAX each). */
#define REMOTE_LOG_EVENTS 10000u
/* Generous: this is a liveness deadline, not a timing assertion. */
#define LIVE_DEADLINE_MS 60000

/* --- hand-written events (SPEC section 5) --- */

static const char *const small_events[] = {
    "{\"type\":\"program\",\"id\":\"p1\",\"at\":1735689600000,\"program\":\"apex\","
    "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
    "{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100},"
    "{\"name\":\"Silver\",\"min_revenue\":100000,\"min_certs\":1,\"mdf_bps\":200}],"
    "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
    "{\"from\":500000,\"bps\":200}]},\"mdf_expiry_periods\":2,\"tier_window_periods\":1}",
    "{\"type\":\"partner\",\"id\":\"e1\",\"at\":1735689700000,\"partner\":\"acme\","
    "\"name\":\"Acme\",\"program\":\"apex\",\"kind\":\"var\"}",
    "{\"type\":\"partner\",\"id\":\"e2\",\"at\":1735689700001,\"partner\":\"globex\","
    "\"name\":\"Globex\",\"program\":\"apex\",\"kind\":\"msp\",\"region\":\"EMEA\"}",
    "{\"type\":\"sale\",\"id\":\"s1\",\"at\":1735689800000,\"partner\":\"acme\","
    "\"sku\":\"x\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}",
    "{\"type\":\"sale\",\"id\":\"s2\",\"at\":1735689800001,\"partner\":\"globex\","
    "\"sku\":\"x\",\"qty\":2,\"amount\":250000,\"currency\":\"USD\"}",
    "{\"type\":\"return\",\"id\":\"r1\",\"at\":1735689900000,\"partner\":\"globex\","
    "\"sale\":\"s2\",\"qty\":1,\"amount\":50000,\"currency\":\"USD\"}",
    "{\"type\":\"certification\",\"id\":\"c1\",\"at\":1735690000000,\"partner\":\"acme\","
    "\"person\":\"ann\",\"cert\":\"net\",\"action\":\"earned\"}",
    "{\"type\":\"claim\",\"id\":\"k1\",\"at\":1735690100000,\"partner\":\"acme\","
    "\"claim\":\"cl1\",\"action\":\"submit\",\"amount\":500}",
    "{\"type\":\"claim\",\"id\":\"k2\",\"at\":1735690200000,\"partner\":\"acme\","
    "\"claim\":\"cl1\",\"action\":\"approve\",\"amount\":400}",
    "{\"type\":\"close\",\"id\":\"z1\",\"at\":1743465600000,\"program\":\"apex\","
    "\"period\":\"2025-Q1\"}",
    "{\"type\":\"sale\",\"id\":\"s3\",\"at\":1743465700000,\"partner\":\"acme\","
    "\"sku\":\"y\",\"qty\":1,\"amount\":10000,\"currency\":\"USD\"}",
    "{\"type\":\"sale\",\"id\":\"s4\",\"at\":1743465800000,\"partner\":\"nobody\","
    "\"sku\":\"x\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}",
};
#define SMALL_COUNT (sizeof small_events / sizeof small_events[0])

/* --- helpers --- */

static unsigned test_seed(void)
{
    const char *s = getenv("TALLY_TEST_SEED");
    unsigned seed = s && *s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL);
    printf("test seed %u (TALLY_TEST_SEED=%u to replay)\n", seed, seed);
    fflush(stdout);
    return seed;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Appends events (JSON texts) under source "test" to the log in data/log. */
static void append_json(const char *data, const char *const *events, size_t n)
{
    char *dir = path_join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    msgpack_sbuffer *bufs = calloc(n, sizeof *bufs);
    tly_log_item *items = calloc(n, sizeof *items);
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loads(events[i], 0, &je);
        ck_assert_msg(j != NULL, "bad test JSON %zu: %s", i, je.text);
        msgpack_sbuffer_init(&bufs[i]);
        ck_assert_int_eq(tly_json_event_to_mp(j, &bufs[i], NULL), TLY_OK);
        json_decref(j);
        tly_ev_type type;
        items[i].source = (tly_str){"test", 4};
        items[i].event = (const uint8_t *)bufs[i].data;
        items[i].event_len = bufs[i].size;
        ck_assert_int_eq(tly_event_peek_id(bufs[i].data, bufs[i].size, &type, &items[i].id),
                         TLY_OK);
    }
    tly_log_group g = {0, (uint32_t)n, false};
    ck_assert_int_eq(tly_log_append(log, tly_now_ms(), items, (uint32_t)n, &g, 1), TLY_OK);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(items[i].err, TLY_OK);
        msgpack_sbuffer_destroy(&bufs[i]);
    }
    free(bufs);
    free(items);
    tly_log_close(log);
    free(dir);
}

static uint64_t log_head(const char *data)
{
    char *dir = path_join(data, "log");
    tly_log *log;
    uint64_t head = 0;
    uint8_t hash[TLY_HASH_BYTES];
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_head(log, &head, hash), TLY_OK);
    tly_log_close(log);
    free(dir);
    return head;
}

/* A second data directory sharing src's log (a symlink), with views of its own. */
static char *data_sharing_log(const char *src)
{
    char *dst = tu_tmpdir();
    char *from = path_join(src, "log");
    char *to = path_join(dst, "log");
    ck_assert_int_eq(symlink(from, to), 0);
    free(from);
    free(to);
    return dst;
}

/* A new data directory whose log holds `events` generated events (seed). */
static char *data_with_log(uint64_t seed, uint64_t events)
{
    char *data = tu_tmpdir();
    char *dir = path_join(data, "log");
    ck_assert_int_eq(tly_rtgen_build_log(dir, seed, events), TLY_OK);
    free(dir);
    return data;
}

/* Runs `tally consume --exit-at-head` on data; returns its exit code. */
static int consume(const char *data, const char *shard, const char *batch)
{
    char *err = path_join(data, "consume.err");
    char *const argv[] = {(char *)tu_tally(),
                          "consume",
                          "--data",
                          (char *)data,
                          "--exit-at-head",
                          "--shard",
                          (char *)(shard ? shard : "0/1"),
                          "--batch",
                          (char *)(batch ? batch : "10000"),
                          NULL};
    int rc = tu_run(argv, NULL, NULL, err);
    if (rc != 0) {
        char *text = tu_read_file(err, NULL);
        fprintf(stderr, "consume %s failed (%d): %s\n", data, rc, text ? text : "");
        free(text);
    }
    free(err);
    return rc;
}

static tly_views *views_ro(const char *data, uint32_t k, uint32_t n)
{
    tly_views *v = NULL;
    ck_assert_int_eq(tly_views_open(data, k, n, TLY_VIEWS_READ, &v), TLY_OK);
    return v;
}

static uint64_t checkpoint_of(const char *data, uint32_t k, uint32_t n)
{
    tly_views *v = views_ro(data, k, n);
    uint64_t seq = 0;
    ck_assert_int_eq(tly_views_checkpoint(v, &seq), TLY_OK);
    tly_views_close(v);
    return seq;
}

/* The whole "views" database as bytes: (u32 klen, key, u32 vlen, val)*. */
typedef struct blob {
    char *p;
    size_t len;
} blob;

typedef struct dump {
    char *buf;
    size_t len;
    size_t cap;
    size_t entries;
    blob *sales; /* the "S/2/" and "Z/" values, dumped last in their own order */
    size_t sale_count;
} dump;

static void dump_add(dump *d, const void *p, size_t n)
{
    if (d->len + n > d->cap) {
        d->cap = (d->len + n) * 2 + 4096;
        d->buf = realloc(d->buf, d->cap);
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
}

static tly_err dump_visit(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    dump *d = ctx;
    /* Which sales a store registers is how it was folded (a --remote
     * consumer registers every sale), not what it holds: with one shard
     * every sale is its own either way. */
    if (klen == strlen(TLY_VIEWS_KEY_SALES) && memcmp(k, TLY_VIEWS_KEY_SALES, klen) == 0)
        return TLY_OK;
    /* A store that reads sales from the log keys its own by seq, one that
     * registers every sale by (source, id): the same records (each holds
     * its seq) under other keys, compared by value. */
    size_t zl = strlen(TLY_ENGINE_SEQ_SALE_PREFIX);
    if ((klen >= 4 && memcmp(k, "S/2/", 4) == 0) ||
        (klen >= zl && memcmp(k, TLY_ENGINE_SEQ_SALE_PREFIX, zl) == 0)) {
        d->sales = realloc(d->sales, (d->sale_count + 1) * sizeof *d->sales);
        blob *b = &d->sales[d->sale_count++];
        b->p = malloc(vlen);
        memcpy(b->p, v, vlen);
        b->len = vlen;
        d->entries++;
        return TLY_OK;
    }
    uint32_t kl = (uint32_t)klen, vl = (uint32_t)vlen;
    dump_add(d, &kl, sizeof kl);
    dump_add(d, k, klen);
    dump_add(d, &vl, sizeof vl);
    dump_add(d, v, vlen);
    d->entries++;
    return TLY_OK;
}

static int blob_cmp(const void *a, const void *b)
{
    const blob *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->p, y->p, x->len);
}

static dump dump_views(const char *data, uint32_t k, uint32_t n)
{
    dump d = {0};
    tly_views *v = views_ro(data, k, n);
    ck_assert_int_eq(tly_views_scan(v, "", 0, dump_visit, &d, NULL), TLY_OK);
    tly_views_close(v);
    if (d.sale_count > 0)
        qsort(d.sales, d.sale_count, sizeof *d.sales, blob_cmp);
    for (size_t i = 0; i < d.sale_count; i++) {
        uint32_t vl = (uint32_t)d.sales[i].len;
        dump_add(&d, &vl, sizeof vl);
        dump_add(&d, d.sales[i].p, d.sales[i].len);
        free(d.sales[i].p);
    }
    free(d.sales);
    d.sales = NULL;
    return d;
}

static void assert_same_views(const char *a, const char *b)
{
    dump x = dump_views(a, 0, 1), y = dump_views(b, 0, 1);
    ck_assert_uint_gt(x.entries, 0);
    ck_assert_msg(x.len == y.len && memcmp(x.buf, y.buf, x.len) == 0,
                  "views differ: %zu entries/%zu bytes vs %zu entries/%zu bytes", x.entries, x.len,
                  y.entries, y.len);
    free(x.buf);
    free(y.buf);
}

static json_t *get_json(tly_views *v, const char *key)
{
    char *val = NULL;
    size_t len;
    if (tly_views_get(v, key, strlen(key), &val, &len, NULL) != TLY_OK)
        return NULL;
    json_t *j = json_loadb(val, len, 0, NULL);
    free(val);
    return j;
}

/* Partner's document `view` rendered from the state (tly_views_doc); NULL
 * when it has none. */
static char *get_doc(tly_views *v, char view, const char *partner)
{
    char *doc = NULL;
    size_t len;
    tly_err err = tly_views_doc(v, view, partner, strlen(partner), &doc, &len, NULL);
    ck_assert_msg(err == TLY_OK || err == TLY_NOT_FOUND, "%c of %s: %s", view, partner,
                  tly_strerror(err));
    return doc;
}

static json_t *doc_json(tly_views *v, char view, const char *partner)
{
    char *doc = get_doc(v, view, partner);
    json_t *j = doc ? json_loads(doc, 0, NULL) : NULL;
    free(doc);
    return j;
}

static long long jint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "field %s missing", k);
    return (long long)json_integer_value(v);
}

/* --- view store --- */

START_TEST(test_views_readonly_missing_creates_nothing)
{
    char *data = tu_tmpdir();
    tly_views *v = NULL;
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v), TLY_NOT_FOUND);
    ck_assert_ptr_null(v);
    struct stat st;
    char *views = path_join(data, "views");
    ck_assert_int_ne(stat(views, &st), 0); /* nothing created */
    /* An existing but empty shard directory stays empty. */
    char *shard = path_join(data, "views/0-of-1");
    ck_assert_int_eq(mkdir(views, 0755), 0);
    ck_assert_int_eq(mkdir(shard, 0755), 0);
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v), TLY_NOT_FOUND);
    char *lock = path_join(shard, "lock.mdb");
    char *mdb = path_join(shard, "data.mdb");
    ck_assert_int_ne(stat(lock, &st), 0);
    ck_assert_int_ne(stat(mdb, &st), 0);
    free(lock);
    free(mdb);
    free(shard);
    free(views);
    tu_rmtree(data);
}
END_TEST

START_TEST(test_views_shard_mismatch_refused)
{
    char *data = tu_tmpdir();
    tly_views *v = NULL;
    ck_assert_int_eq(tly_views_open(data, 0, 2, TLY_VIEWS_WRITE, &v), TLY_OK);
    tly_views_close(v);
    v = NULL;
    /* The directory of shard 0/2 renamed to look like 1/2. */
    char *from = path_join(data, "views/0-of-2");
    char *to = path_join(data, "views/1-of-2");
    ck_assert_int_eq(rename(from, to), 0);
    ck_assert_int_eq(tly_views_open(data, 1, 2, TLY_VIEWS_WRITE, &v), TLY_USAGE);
    ck_assert_int_eq(tly_views_open(data, 1, 2, TLY_VIEWS_READ, &v), TLY_USAGE);
    ck_assert_ptr_null(v);
    /* One writer per store. */
    tly_views *w1 = NULL, *w2 = NULL;
    ck_assert_int_eq(tly_views_open(data, 0, 2, TLY_VIEWS_WRITE, &w1), TLY_OK);
    ck_assert_int_eq(tly_views_open(data, 0, 2, TLY_VIEWS_WRITE, &w2), TLY_UNAVAILABLE);
    ck_assert_ptr_null(w2);
    tly_views_close(w1);
    ck_assert_int_eq(tly_views_open(data, 0, 2, TLY_VIEWS_WRITE, &w2), TLY_OK);
    tly_views_close(w2);
    /* Out-of-range shards are usage errors too. */
    ck_assert_int_eq(tly_views_open(data, 2, 2, TLY_VIEWS_WRITE, &v), TLY_USAGE);
    ck_assert_int_eq(tly_views_open(data, 0, 0, TLY_VIEWS_WRITE, &v), TLY_USAGE);
    /* Through the command line: exit 1 with a message. */
    append_json(data, small_events, 1);
    ck_assert_int_eq(consume(data, "1/2", NULL), 1);
    free(from);
    free(to);
    tu_rmtree(data);
}
END_TEST

/* Opens shard 0 of 1 of data's view store for writing and a new engine
 * loaded from it (*e). */
static tly_views *open_loaded(const char *data, tly_engine **e)
{
    tly_views *v;
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_WRITE, &v), TLY_OK);
    ck_assert_int_eq(tly_engine_new(0, 1, e), TLY_OK);
    ck_assert_int_eq(tly_views_load(v, *e), TLY_OK);
    return v;
}

/* Folds data's log into e from its seq + 1 up to seq last. */
static void fold_until(const char *data, tly_engine *e, uint64_t last)
{
    char *dir = path_join(data, "log");
    tly_log *log;
    tly_log_reader *rd;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, tly_engine_seq(e) + 1, &rd), TLY_OK);
    tly_record rec;
    tly_event ev;
    while (tly_engine_seq(e) < last && tly_log_reader_next(rd, &rec) == TLY_OK) {
        ck_assert_int_eq(tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &ev, NULL),
                         TLY_OK);
        ck_assert_int_eq(tly_engine_apply(e, &rec, &ev), TLY_OK);
    }
    tly_log_reader_close(rd);
    tly_log_close(log);
    free(dir);
}

/* Folds data/log in process into engine e, from e's seq + 1 to the head. */
static void fold_log(const char *data, tly_engine *e)
{
    fold_until(data, e, UINT64_MAX);
}

/* Shard 0/1's store of data opened with LMDB itself, in a write
 * transaction on its "views" database; raw_commit ends it. */
typedef struct raw_store {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw_store;

static raw_store raw_begin(const char *data)
{
    char *dir = path_join(data, "views/0-of-1");
    raw_store r;
    ck_assert_int_eq(mdb_env_create(&r.env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(r.env, 2), 0);
    ck_assert_int_eq(mdb_env_open(r.env, dir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(r.env, NULL, 0, &r.txn), 0);
    ck_assert_int_eq(mdb_dbi_open(r.txn, "views", 0, &r.dbi), 0);
    free(dir);
    return r;
}

static void raw_commit(raw_store *r)
{
    ck_assert_int_eq(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* Writes key = val into shard 0/1's store of data with LMDB itself. */
static void raw_put(const char *data, const char *key, const char *val)
{
    raw_store r = raw_begin(data);
    MDB_val k = {strlen(key), (void *)key}, d = {strlen(val), (void *)val};
    ck_assert_int_eq(mdb_put(r.txn, r.dbi, &k, &d, 0), 0);
    raw_commit(&r);
}

/* Loads a fresh engine from shard 0/1 of data (opened with flags) and
 * returns the store's sales mode; *v_out keeps the store open. */
static tly_views_sales_mode load_sales(const char *data, int flags, tly_views **v_out,
                                       tly_engine **e_out)
{
    ck_assert_int_eq(tly_views_open(data, 0, 1, flags, v_out), TLY_OK);
    ck_assert_int_eq(tly_engine_new(0, 1, e_out), TLY_OK);
    ck_assert_int_eq(tly_views_load(*v_out, *e_out), TLY_OK);
    return tly_views_sales(*v_out);
}

/* "M/sales": undecided in a new store, decided once (before anything is
 * folded), written with the first commit, refused when it holds anything
 * but "own"; a read-only store cannot decide. */
START_TEST(test_views_sales_mode)
{
    char *data = tu_tmpdir();
    tly_views *v;
    tly_engine *e;
    ck_assert_int_eq(load_sales(data, TLY_VIEWS_WRITE, &v, &e), TLY_VIEWS_SALES_UNSET);
    ck_assert_int_eq(tly_views_set_sales(v, TLY_VIEWS_SALES_UNSET), TLY_USAGE);
    ck_assert_int_eq(tly_views_set_sales(v, TLY_VIEWS_SALES_OWN), TLY_OK);
    ck_assert_int_eq(tly_views_set_sales(v, TLY_VIEWS_SALES_ALL), TLY_USAGE);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    tly_engine_free(e);
    tly_views_close(v);
    ck_assert_int_eq(load_sales(data, TLY_VIEWS_READ, &v, &e), TLY_VIEWS_SALES_OWN);
    ck_assert_int_eq(tly_views_set_sales(v, TLY_VIEWS_SALES_OWN), TLY_USAGE);
    tly_engine_free(e);
    tly_views_close(v);
    raw_put(data, TLY_VIEWS_KEY_SALES, "all"); /* a value this Tally never writes */
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v), TLY_OK);
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    ck_assert_int_eq(tly_views_load(v, e), TLY_CORRUPT);
    tly_engine_free(e);
    tly_views_close(v);
    tu_rmtree(data);
}
END_TEST

/* The partner documents and partner list rows an older Tally stored go at
 * a consumer's first commit; the documents that are still stored stay, and
 * the partner's document is the one rendered from its state. */
START_TEST(test_views_drop_old_docs)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, SMALL_COUNT - 1);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    static const char *const old[] = {"V/b/acme", "V/r/acme", "V/t/globex",
                                      "V/c/zz",   "V/P/acme", "V/P/globex"};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        raw_put(data, old[i], "{\"stale\":true}");
    append_json(data, small_events + SMALL_COUNT - 1, 1);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    tly_views *v = views_ro(data, 0, 1);
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
        char *val = NULL;
        size_t len;
        ck_assert_int_eq(tly_views_get(v, old[i], strlen(old[i]), &val, &len, NULL), TLY_NOT_FOUND);
    }
    json_t *liab = get_json(v, "V/l/apex"), *b = doc_json(v, 'b', "acme");
    ck_assert_ptr_nonnull(liab);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(json_object_get(b, "stale"));
    json_decref(liab);
    json_decref(b);
    tly_views_close(v);
    tu_rmtree(data);
}
END_TEST

/* Pages of the mapping of file (a path) in this process's page table:
 * /proc/self/pagemap's present bit over the file's length from the
 * mapping's start. */
static size_t mapped_pages(const char *file)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    ck_assert_ptr_nonnull(maps);
    char line[1024];
    unsigned long lo = 0, hi = 0;
    while (fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (path && strncmp(path, file, strlen(file)) == 0 && path[strlen(file)] == '\n') {
            ck_assert_int_eq(sscanf(line, "%lx-%lx", &lo, &hi), 2);
            break;
        }
    }
    fclose(maps);
    ck_assert_msg(hi > lo, "%s is not mapped", file);
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (size_t)st.st_size / page, present = 0;
    FILE *pm = fopen("/proc/self/pagemap", "re");
    ck_assert_ptr_nonnull(pm);
    ck_assert_int_eq(fseeko(pm, (off_t)(lo / page * 8), SEEK_SET), 0);
    for (size_t i = 0; i < n && i < (hi - lo) / page; i++) {
        uint64_t e = 0;
        ck_assert_uint_eq(fread(&e, sizeof e, 1, pm), 1);
        present += e >> 63;
    }
    fclose(pm);
    return present;
}

enum { RESIDENT_PARTNERS = 700 }; /* their reads cross TLY_VIEWS_RESIDENT_BYTES_MAX once */

/* TLY_VIEWS_RESIDENT_BYTES_MAX at its edge: the engine's reads of the
 * store count a value's bytes and a page each, and the read that brings
 * the count to the limit drops the map's pages from this process (the
 * page cache keeps them), not the read before it. Each partner's balance
 * document, asked of an engine that has read nothing yet, is one read of
 * its record. */
START_TEST(test_views_resident_bytes_edge)
{
    char *data = tu_tmpdir();
    static char events[RESIDENT_PARTNERS + 1][160];
    const char *ptrs[RESIDENT_PARTNERS + 1] = {small_events[0]};
    for (int i = 1; i <= RESIDENT_PARTNERS; i++) {
        snprintf(events[i], sizeof events[i],
                 "{\"type\":\"partner\",\"id\":\"r%d\",\"at\":1735689700000,\"partner\":\"p%04d\","
                 "\"name\":\"Partner %d\",\"program\":\"apex\",\"kind\":\"var\"}",
                 i, i, i);
        ptrs[i] = events[i];
    }
    append_json(data, ptrs, RESIDENT_PARTNERS + 1);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    /* What each read will count, from the stored records. */
    size_t counted[RESIDENT_PARTNERS + 1] = {0};
    tly_views *v = views_ro(data, 0, 1);
    for (int i = 1; i <= RESIDENT_PARTNERS; i++) {
        char key[32], *val = NULL;
        size_t len = 0;
        snprintf(key, sizeof key, TLY_ENGINE_PARTNER_PREFIX "p%04d", i);
        ck_assert_int_eq(tly_views_get(v, key, strlen(key), &val, &len, NULL), TLY_OK);
        counted[i] = counted[i - 1] + len + TLY_VIEWS_PAGE_BYTES;
        free(val);
    }
    tly_views_close(v);
    int edge = 1; /* the read that reaches the limit */
    while (counted[edge] < TLY_VIEWS_RESIDENT_BYTES_MAX)
        edge++;
    ck_assert_int_lt(edge, RESIDENT_PARTNERS);
    char *file = path_join(data, "views/0-of-1/data.mdb");
    tly_engine *e;
    v = open_loaded(data, &e);
    size_t before = 0;
    for (int i = 1; i <= edge; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%04d", i);
        json_t *b = tly_engine_view(e, 'b', name);
        ck_assert_ptr_nonnull(b);
        json_decref(b);
        if (i == edge - 1)
            before = mapped_pages(file);
    }
    size_t after = mapped_pages(file);
    /* Up to the read before the edge the pages the reads touched stay
     * mapped; the edge's read dropped them all, and what is mapped after
     * it is what that one view touched since (the record it renders, the
     * tree's upper pages, its scans). */
    ck_assert_msg(after * 2 < before, "%zu pages mapped after %d reads, %zu after one more", before,
                  edge - 1, after);
    tly_engine_free(e);
    tly_views_close(v);
    free(file);
    tu_rmtree(data);
}
END_TEST

/* A fresh engine loaded from v renders acme's balance as e does, with
 * accrued as given. */
static void expect_acme_loads_alike(tly_views *v, tly_engine *e, int64_t accrued)
{
    json_t *b = tly_engine_view(e, 'b', "acme");
    ck_assert_ptr_nonnull(b);
    tly_engine *e2;
    ck_assert_int_eq(tly_engine_new(0, 1, &e2), TLY_OK);
    ck_assert_int_eq(tly_views_load(v, e2), TLY_OK);
    json_t *b2 = tly_engine_view(e2, 'b', "acme");
    ck_assert_ptr_nonnull(b2);
    ck_assert(json_equal(b, b2));
    ck_assert_int_eq(json_integer_value(json_object_get(b2, "accrued")), accrued);
    json_decref(b);
    json_decref(b2);
    tly_engine_free(e2);
}

/* Sales of acme for commits near TLY_VIEWS_RELEASE_PUTS and
 * TLY_VIEWS_REOPEN_PUTS, after the program and its enrollment
 * (small_events[0..1]). */
enum { REOPEN_SALES = 2 * (TLY_VIEWS_REOPEN_PUTS + TLY_VIEWS_RELEASE_PUTS) + 8 };

/* A commit of TLY_VIEWS_RELEASE_PUTS - 1 puts releases the map not once
 * while it puts, one of exactly TLY_VIEWS_RELEASE_PUTS once. A commit of
 * TLY_VIEWS_REOPEN_PUTS - 1 puts keeps the environment; one of exactly
 * TLY_VIEWS_REOPEN_PUTS opens it again, and the store, the engine
 * folding into it and a fresh load all go on as before. Each sale adds one
 * put to a commit (its record), so the commits' sizes are set by how many
 * sales they fold. */
START_TEST(test_views_reopen_puts_edge)
{
    char *data = tu_tmpdir();
    static char sales[REOPEN_SALES][160];
    const char *ptrs[2 + REOPEN_SALES] = {small_events[0], small_events[1]};
    for (int i = 0; i < REOPEN_SALES; i++) {
        snprintf(sales[i], sizeof sales[i],
                 "{\"type\":\"sale\",\"id\":\"q%d\",\"at\":%lld,\"partner\":\"acme\","
                 "\"sku\":\"x\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}",
                 i, 1735689800000LL + i);
        ptrs[2 + i] = sales[i];
    }
    append_json(data, ptrs, 2 + REOPEN_SALES);
    tly_views *v;
    tly_engine *e;
    v = open_loaded(data, &e);
    /* The program, acme and one sale; then one sale, then two: what a
     * commit writes beside its sales (acme's records, the checkpoint). */
    fold_until(data, e, 3);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    fold_until(data, e, 4);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    /* Few regions: a cursor each, none made room for another. */
    ck_assert_uint_le(tly_views_stats_of(v).last_cursors, TLY_VIEWS_PUT_CURSORS);
    uint32_t one = tly_views_stats_of(v).last_puts;
    fold_until(data, e, 6);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    ck_assert_uint_eq(tly_views_stats_of(v).last_puts, one + 1);
    ck_assert_uint_eq(tly_views_stats_of(v).last_map_releases, 0);
    ck_assert_uint_eq(tly_views_stats_of(v).reopens, 0);
    /* Commits of each size around the two limits: one put short of each,
     * then exactly each. The map is released once every
     * TLY_VIEWS_RELEASE_PUTS puts; the environment reopened after a commit
     * of TLY_VIEWS_REOPEN_PUTS. */
    const uint32_t fixed = one - 1, sizes[] = {
                                        TLY_VIEWS_RELEASE_PUTS - 1,
                                        TLY_VIEWS_RELEASE_PUTS,
                                        TLY_VIEWS_REOPEN_PUTS - 1,
                                        TLY_VIEWS_REOPEN_PUTS,
                                    };
    uint64_t seq = 6;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        seq += sizes[i] - fixed;
        ck_assert_uint_le(seq, 2 + REOPEN_SALES);
        fold_until(data, e, seq);
        ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
        tly_views_stats st = tly_views_stats_of(v);
        ck_assert_uint_eq(st.last_puts, sizes[i]);
        ck_assert_uint_eq(st.last_map_releases, sizes[i] / TLY_VIEWS_RELEASE_PUTS);
        ck_assert_uint_eq(st.reopens, sizes[i] == TLY_VIEWS_REOPEN_PUTS);
    }
    ck_assert_uint_eq(tly_views_stats_of(v).last_map_releases,
                      TLY_VIEWS_REOPEN_PUTS / TLY_VIEWS_RELEASE_PUTS);
    /* After it: the engine reads acme back through the new environment and
     * folds on; what it committed loads into a fresh engine alike. */
    fold_log(data, e);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    uint64_t cp = 0;
    ck_assert_int_eq(tly_views_checkpoint(v, &cp), TLY_OK);
    ck_assert_uint_eq(cp, 2 + REOPEN_SALES);
    expect_acme_loads_alike(v, e, REOPEN_SALES * 100 / 100);
    tly_engine_free(e);
    tly_views_close(v);
    tu_rmtree(data);
}
END_TEST

/* A store removed under its writer, and made anew by another consumer
 * (another process) at the same path: the writer's next commit is refused
 * with TLY_USAGE and writes nothing into the new store, which keeps its
 * own (empty) checkpoint. */
START_TEST(test_views_replaced_store_refused)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, 4);
    tly_engine *e;
    tly_views *v = open_loaded(data, &e);
    fold_until(data, e, 3);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    tu_rmtree(strdup(tly_views_dir(v)));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        tly_views *other;
        _exit(tly_views_open(data, 0, 1, TLY_VIEWS_WRITE, &other) == TLY_OK ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fold_until(data, e, 4);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_USAGE);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_USAGE);
    tly_engine_free(e);
    tly_views_close(v);
    tly_views *fresh;
    uint64_t cp = 1;
    ck_assert_int_eq(tly_views_open(data, 0, 1, TLY_VIEWS_READ, &fresh), TLY_OK);
    ck_assert_int_eq(tly_views_checkpoint(fresh, &cp), TLY_OK);
    ck_assert_uint_eq(cp, 0);
    tly_views_close(fresh);
    tu_rmtree(data);
}
END_TEST

/* Counts the regions of a scan in key order: keys whose first
 * TLY_VIEWS_PUT_REGION_BYTES bytes differ from the key's before. The
 * shard's key, written when the store was created, is not counted. */
static tly_err count_regions(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)v;
    (void)vlen;
    if (klen == strlen(TLY_VIEWS_KEY_SHARD) && memcmp(k, TLY_VIEWS_KEY_SHARD, klen) == 0)
        return TLY_OK;
    static char last[TLY_VIEWS_PUT_REGION_BYTES];
    char region[TLY_VIEWS_PUT_REGION_BYTES] = {0};
    memcpy(region, k, klen < sizeof region ? klen : sizeof region);
    uint32_t *n = ctx;
    if (*n == 0 || memcmp(region, last, sizeof region) != 0)
        ++*n;
    memcpy(last, region, sizeof region);
    return TLY_OK;
}

START_TEST(test_views_commit_load_roundtrip)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, SMALL_COUNT);
    tly_views *v;
    tly_engine *e, *e2;
    v = open_loaded(data, &e);
    ck_assert_uint_eq(tly_engine_seq(e), 0);
    fold_log(data, e);
    ck_assert_int_eq(tly_views_commit(v, e), TLY_OK);
    /* This one commit wrote every key of the store but the shard's, over
     * more regions than it has write cursors (some cursors made room for
     * others): what the load below reads back must be what the engine
     * holds all the same. */
    uint32_t regions = 0;
    ck_assert_int_eq(tly_views_scan(v, "", 0, count_regions, &regions, NULL), TLY_OK);
    ck_assert_uint_gt(regions, TLY_VIEWS_PUT_CURSORS);
    ck_assert_uint_ge(tly_views_stats_of(v).last_cursors, regions);
    uint64_t cp = 0;
    ck_assert_int_eq(tly_views_checkpoint(v, &cp), TLY_OK);
    ck_assert_uint_eq(cp, SMALL_COUNT);
    /* The balance document rendered from the stored state is the engine's
     * answer without "seq". */
    json_t *stored = doc_json(v, 'b', "acme");
    ck_assert_ptr_nonnull(stored);
    json_t *live = tly_engine_view(e, 'b', "acme");
    ck_assert_ptr_nonnull(live);
    json_object_del(live, "seq");
    ck_assert_msg(json_equal(stored, live), "stored balance differs from the engine's");
    /* The engine's documents, while its store is open: it reads what it
     * flushed (claims, archived rows) back from there. */
    const char *names[] = {"acme", "globex"};
    const char kinds[] = {'b', 'r', 't', 'c'};
    json_t *before[2][4];
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 4; k++)
            ck_assert_ptr_nonnull(before[i][k] = tly_engine_view(e, kinds[k], names[i]));
    tly_views_close(v);
    /* Reopen and load: the restored engine answers the same. */
    v = open_loaded(data, &e2);
    ck_assert_uint_eq(tly_engine_seq(e2), SMALL_COUNT);
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < 4; k++) {
            json_t *b = tly_engine_view(e2, kinds[k], names[i]);
            ck_assert_msg(b && json_equal(before[i][k], b), "view %c/%s differs after load",
                          kinds[k], names[i]);
            json_decref(before[i][k]);
            json_decref(b);
        }
    }
    json_decref(stored);
    json_decref(live);
    tly_engine_free(e);
    tly_engine_free(e2);
    tly_views_close(v);
    tu_rmtree(data);
}
END_TEST

/* --- tally consume --- */

static tly_err count_held(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k;
    (void)klen;
    json_t *j = json_loadb(v, vlen, 0, NULL);
    ck_assert_ptr_nonnull(j);
    const char *kind = json_string_value(json_object_get(j, "kind"));
    if (kind && strcmp(kind, "held") == 0)
        ++*(int *)ctx;
    json_decref(j);
    return TLY_OK;
}

START_TEST(test_consume_small_log)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, SMALL_COUNT);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), log_head(data));
    ck_assert_uint_eq(log_head(data), SMALL_COUNT);
    tly_views *v = views_ro(data, 0, 1);
    json_t *b = doc_json(v, 'b', "acme");
    ck_assert_ptr_nonnull(b);
    /* Q1 sale 100000 at 100 bps + Q2 sale 10000 at Silver's 200 bps. */
    ck_assert_int_eq(jint(b, "accrued"), 1200);
    ck_assert_str_eq(json_string_value(json_object_get(b, "tier")), "Silver");
    /* The MDF invariant of SPEC section 6. */
    ck_assert_int_eq(jint(b, "accrued") - jint(b, "clawed_back") + jint(b, "adjusted") -
                         jint(b, "expired") - jint(b, "pending") - jint(b, "approved") -
                         jint(b, "paid"),
                     jint(b, "available"));
    json_decref(b);
    const char *docs[][2] = {{"r", "acme"}, {"t", "acme"}, {"c", "acme"}, {"b", "globex"}};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        json_t *j = doc_json(v, docs[i][0][0], docs[i][1]);
        ck_assert_msg(j != NULL, "%s of %s missing", docs[i][0], docs[i][1]);
        json_decref(j);
    }
    json_t *liab = get_json(v, "V/l/apex");
    ck_assert_ptr_nonnull(liab);
    json_decref(liab);
    ck_assert_ptr_null(get_doc(v, 'b', "nobody")); /* never enrolled */
    int held = 0;
    ck_assert_int_eq(tly_views_scan(v, "X/", 2, count_held, &held, NULL), TLY_OK);
    ck_assert_int_ge(held, 1); /* the sale of the never-enrolled "nobody" [E3] */
    tly_views_close(v);
    /* Running again with nothing new changes nothing. */
    dump before = dump_views(data, 0, 1);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    dump after = dump_views(data, 0, 1);
    ck_assert(before.len == after.len && memcmp(before.buf, after.buf, before.len) == 0);
    free(before.buf);
    free(after.buf);
    tu_rmtree(data);
}
END_TEST

START_TEST(test_consume_corrupt_record_stops)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, 3);
    /* A record whose event does not validate: only a broken ledger writes
     * one, so the consumer must stop rather than skip it. */
    const char *bad[] = {"{\"type\":\"sale\",\"id\":\"bad1\",\"at\":1735689800000,"
                         "\"partner\":\"acme\",\"sku\":\"x\",\"qty\":1,\"amount\":-5,"
                         "\"currency\":\"USD\"}"};
    append_json(data, bad, 1);
    append_json(data, small_events + 3, 2);
    ck_assert_int_eq(consume(data, NULL, NULL), 1);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), 3);
    char *err = path_join(data, "consume.err");
    char *text = tu_read_file(err, NULL);
    ck_assert_ptr_nonnull(strstr(text, "record 4"));
    free(text);
    free(err);
    tu_rmtree(data);
}
END_TEST

START_TEST(test_consume_refuses_views_ahead_of_log)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, SMALL_COUNT);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    /* The log replaced by a shorter one (say, an older backup). */
    char *log = path_join(data, "log");
    char *const rm[] = {"rm", "-rf", log, NULL};
    ck_assert_int_eq(tu_run(rm, NULL, NULL, NULL), 0);
    append_json(data, small_events, 3);
    ck_assert_int_eq(consume(data, NULL, NULL), 1);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), SMALL_COUNT); /* untouched */
    char *err = path_join(data, "consume.err");
    char *text = tu_read_file(err, NULL);
    ck_assert_ptr_nonnull(strstr(text, "beyond the head"));
    free(text);
    free(err);
    free(log);
    tu_rmtree(data);
}
END_TEST

static int run_tally(const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
    char *const argv[] = {(char *)tu_tally(), (char *)a1, (char *)a2, (char *)a3,
                          (char *)a4,         (char *)a5, NULL};
    return tu_run(argv, NULL, NULL, NULL);
}

/* The limits of the command line at their edges (TLY_SHARDS_MAX,
 * TLY_CONSUME_BATCH_RECORDS_MAX): the value is accepted, one more is a
 * usage error (exit 2). */
START_TEST(test_consume_option_edges)
{
    char *data = tu_tmpdir();
    append_json(data, small_events, SMALL_COUNT);
    char max_shard[32], over_shard[32], max_batch[32], over_batch[32], over_shards[32];
    snprintf(max_shard, sizeof max_shard, "%u/%u", TLY_SHARDS_MAX - 1, TLY_SHARDS_MAX);
    snprintf(over_shard, sizeof over_shard, "0/%u", TLY_SHARDS_MAX + 1);
    snprintf(over_shards, sizeof over_shards, "%u", TLY_SHARDS_MAX + 1);
    snprintf(max_batch, sizeof max_batch, "%u", TLY_CONSUME_BATCH_RECORDS_MAX);
    snprintf(over_batch, sizeof over_batch, "%u", TLY_CONSUME_BATCH_RECORDS_MAX + 1);
    ck_assert_int_eq(consume(data, max_shard, max_batch), 0);
    ck_assert_int_eq(consume(data, "0/1", "1"), 0); /* a commit per record */
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), SMALL_COUNT);
    ck_assert_int_eq(run_tally("consume", "--data", data, "--shard", over_shard), 2);
    ck_assert_int_eq(run_tally("consume", "--data", data, "--shard", "2/2"), 2);
    ck_assert_int_eq(run_tally("consume", "--data", data, "--batch", over_batch), 2);
    ck_assert_int_eq(run_tally("consume", "--data", data, "--batch", "0"), 2);
    ck_assert_int_eq(run_tally("consume", "--bogus", NULL, NULL, NULL), 2);
    ck_assert_int_eq(run_tally("consume", "--help", NULL, NULL, NULL), 0);
    ck_assert_int_eq(run_tally("bench", "fold", "--shards", over_shards, NULL), 2);
    ck_assert_int_eq(run_tally("bench", "fold", "--events", "0", NULL), 2);
    tu_rmtree(data);
}
END_TEST

/* One run of `tally bench fold --growth` of a tiny log (its own size, below
 * the smallest of the plan), JSON on out. */
static void run_growth(const char *data, const char *out)
{
    char *const argv[] = {(char *)tu_tally(), "bench",    "fold", "--growth-max", "3000", "--data",
                          (char *)data,       "--shards", "2",    "--json",       NULL};
    ck_assert_int_eq(tu_run(argv, NULL, out, NULL), 0);
}

/* Checks one growth run's shards: every figure measured. */
static void check_growth_run(const json_t *run, json_int_t shards)
{
    ck_assert_int_eq(json_integer_value(json_object_get(run, "shards")), shards);
    json_t *per = json_object_get(run, "per_shard");
    ck_assert_uint_eq(json_array_size(per), (size_t)shards);
    size_t k;
    json_t *sh;
    json_array_foreach(per, k, sh)
    {
        ck_assert_int_eq(json_integer_value(json_object_get(sh, "shard")), (json_int_t)k);
        ck_assert_int_gt(json_integer_value(json_object_get(sh, "events_per_s")), 0);
        ck_assert(json_real_value(json_object_get(sh, "restart_s")) > 0);
        const char *kb[] = {"peak_rss_kb", "peak_anon_kb", "restart_peak_rss_kb",
                            "restart_peak_anon_kb", "store_bytes"};
        for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
            ck_assert_msg(json_integer_value(json_object_get(sh, kb[i])) > 0, "%s", kb[i]);
        /* Its stop line's figures: at least one commit, none longer than
         * the fold; 3,000 events of 30 partners fit the engine's cache. */
        ck_assert_int_ge(json_integer_value(json_object_get(sh, "commits")), 1);
        ck_assert(json_real_value(json_object_get(sh, "commit_s")) >= 0);
        ck_assert(json_real_value(json_object_get(sh, "commit_s")) <=
                  json_real_value(json_object_get(sh, "seconds")));
        ck_assert_int_eq(json_integer_value(json_object_get(sh, "read_back_partners")), 0);
        ck_assert(json_real_value(json_object_get(sh, "read_back_s")) == 0);
        /* A whole process's peak holds at least the anonymous part seen. */
        ck_assert_int_ge(json_integer_value(json_object_get(sh, "peak_rss_kb")),
                         json_integer_value(json_object_get(sh, "peak_anon_kb")));
    }
}

/* `tally bench fold --growth`: a log per size in DATA/growth-N (reused by
 * the next run), the ceiling, 1 and N shards with restart, RSS and store
 * size; --events and --growth exclude each other. */
START_TEST(test_bench_fold_growth)
{
    char *data = tu_tmpdir();
    char out[600];
    snprintf(out, sizeof out, "%s/growth.json", data);
    for (int pass = 0; pass < 2; pass++) {
        run_growth(data, out);
        json_error_t jerr;
        json_t *doc = json_load_file(out, 0, &jerr);
        ck_assert_msg(doc != NULL, "%s", jerr.text);
        json_t *sizes = json_object_get(doc, "growth");
        ck_assert_uint_eq(json_array_size(sizes), 1);
        json_t *size = json_array_get(sizes, 0);
        ck_assert_int_eq(json_integer_value(json_object_get(size, "events")), 3000);
        ck_assert_int_eq(json_integer_value(json_object_get(size, "partners")), 30);
        ck_assert(json_is_true(json_object_get(size, "reused")) == (pass == 1));
        ck_assert_int_gt(json_integer_value(json_object_get(size, "ceiling_events_per_s")), 0);
        json_t *runs = json_object_get(size, "runs");
        ck_assert_uint_eq(json_array_size(runs), 2);
        check_growth_run(json_array_get(runs, 0), 1);
        check_growth_run(json_array_get(runs, 1), 2);
        json_decref(doc);
    }
    char logdir[600];
    snprintf(logdir, sizeof logdir, "%s/growth-3000/log", data);
    struct stat st;
    ck_assert_int_eq(stat(logdir, &st), 0);
    ck_assert_int_eq(run_tally("bench", "fold", "--growth", "--events", "10"), 2);
    ck_assert_int_eq(run_tally("bench", "fold", "--growth-max", "0", NULL), 2);
    tu_rmtree(data);
}
END_TEST

/* `tally bench fold --partners N`: the same population at every size, in
 * its own DATA/growth-N-partners-P beside the default log (implies
 * --growth); 1..TLY_GEN_PARTNERS_MAX. */
START_TEST(test_bench_fold_growth_partners)
{
    char *data = tu_tmpdir();
    char out[600], dir[600];
    snprintf(out, sizeof out, "%s/growth.json", data);
    char *const argv[] = {(char *)tu_tally(),
                          "bench",
                          "fold",
                          "--partners",
                          "7",
                          "--growth-max",
                          "3000",
                          "--data",
                          (char *)data,
                          "--shards",
                          "1",
                          "--batch",
                          "1000",
                          "--json",
                          NULL};
    ck_assert_int_eq(tu_run(argv, NULL, out, NULL), 0);
    json_error_t jerr;
    json_t *doc = json_load_file(out, 0, &jerr);
    ck_assert_msg(doc != NULL, "%s", jerr.text);
    json_t *size = json_array_get(json_object_get(doc, "growth"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(size, "events")), 3000);
    ck_assert_int_eq(json_integer_value(json_object_get(size, "partners")), 7);
    json_t *runs = json_object_get(size, "runs");
    ck_assert_uint_eq(json_array_size(runs), 1);
    check_growth_run(json_array_get(runs, 0), 1);
    /* 3,000 records in batches of 1,000: three commits, from the stop line */
    json_t *shard = json_array_get(json_object_get(json_array_get(runs, 0), "per_shard"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(shard, "commits")), 3);
    json_decref(doc);
    /* The log folded holds the partners asked for: the views list them. */
    char views[600], listed[700];
    snprintf(views, sizeof views, "%s/growth-3000-partners-7/views", data);
    snprintf(listed, sizeof listed, "%s/partners.json", data);
    char *const list[] = {(char *)tu_tally(), "partners", "--views", views,
                          "--shards",         "1",        "--json",  NULL};
    ck_assert_int_eq(tu_run(list, NULL, listed, NULL), 0);
    doc = json_load_file(listed, 0, &jerr);
    ck_assert_msg(doc != NULL, "%s", jerr.text);
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "partners")), 7);
    json_decref(doc);
    struct stat st;
    snprintf(dir, sizeof dir, "%s/growth-3000", data);
    ck_assert_int_ne(stat(dir, &st), 0); /* the default population's log: not made */
    char max[32], over[32];
    snprintf(max, sizeof max, "%u", TLY_GEN_PARTNERS_MAX);
    snprintf(over, sizeof over, "%u", TLY_GEN_PARTNERS_MAX + 1u);
    ck_assert_int_eq(run_tally("bench", "fold", "--partners", "0", NULL), 2);
    ck_assert_int_eq(run_tally("bench", "fold", "--partners", over, NULL), 2);
    /* --partners implies --growth, which --events excludes */
    char *const both[] = {(char *)tu_tally(), "bench", "fold", "--partners", max,
                          "--events",         "10",    NULL};
    ck_assert_int_eq(tu_run(both, NULL, NULL, NULL), 2);
    tu_rmtree(data);
}
END_TEST

/* Copies records [from, to] of src's log into dst's log (same source, id
 * and bytes), as a ledger receiving the same events would store them. */
static void copy_records(const char *src, const char *dst, uint64_t from, uint64_t to)
{
    char *sdir = path_join(src, "log"), *ddir = path_join(dst, "log");
    tly_log *in, *out;
    tly_log_reader *rd;
    ck_assert_int_eq(tly_log_open(sdir, TLY_LOG_READ, &in), TLY_OK);
    ck_assert_int_eq(tly_log_open(ddir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &out), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(in, from, &rd), TLY_OK);
    tly_record rec;
    for (uint64_t s = from; s <= to; s++) {
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        tly_log_item it = {0};
        tly_ev_type type;
        it.source = rec.source;
        it.event = rec.event;
        it.event_len = rec.event_len;
        ck_assert_int_eq(tly_event_peek_id(rec.event, rec.event_len, &type, &it.id), TLY_OK);
        tly_log_group g = {0, 1, false};
        ck_assert_int_eq(tly_log_append(out, rec.recorded_ms, &it, 1, &g, 1), TLY_OK);
        ck_assert_int_eq(it.err, TLY_OK);
        ck_assert_uint_eq(it.seq, s);
    }
    tly_log_reader_close(rd);
    tly_log_close(in);
    tly_log_close(out);
    free(sdir);
    free(ddir);
}

static off_t file_size(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    struct stat st;
    off_t n = stat(p, &st) == 0 ? st.st_size : -1;
    free(p);
    return n;
}

START_TEST(test_consume_restart_resumes_exactly_once)
{
    /* A tiny initial map: the consumers grow it many times (abort, double,
     * flush again), under a reader of this process that holds the store
     * open and must follow the growth (MDB_MAP_RESIZED). */
    setenv("TALLY_VIEWS_MAP_INIT_BYTES", "262144", 1);
    char *full = data_with_log(7, 6000);
    ck_assert_int_eq(consume(full, NULL, "700"), 0);
    /* The same log, arriving in three parts with a consumer run after each. */
    char *parts = tu_tmpdir();
    uint64_t cuts[] = {1, 400, 2999, 6000};
    tly_views *reader = NULL;
    for (int i = 0; i < 3; i++) {
        copy_records(full, parts, cuts[i] + (i > 0), cuts[i + 1]);
        ck_assert_int_eq(consume(parts, NULL, "700"), 0);
        if (!reader)
            reader = views_ro(parts, 0, 1);
        uint64_t cp = 0;
        ck_assert_int_eq(tly_views_checkpoint(reader, &cp), TLY_OK);
        ck_assert_uint_eq(cp, cuts[i + 1]);
    }
    tly_views_close(reader);
    assert_same_views(full, parts);
    /* The store outgrew its first map by far: growth really happened. */
    char *shard = path_join(parts, "views/0-of-1");
    ck_assert_int_gt(file_size(shard, "data.mdb"), 4 * 262144);
    free(shard);
    tu_rmtree(full);
    tu_rmtree(parts);
}
END_TEST

/* A commit can meet a full map after the engine has forgotten its changes
 * (LMDB saving its free list at mdb_txn_commit). The store must grow before
 * the consumer reloads and refolds, or every refold meets the same wall:
 * this log (the kill test's seed 1795711639) from a 128 KiB map did exactly
 * that until the consumer gave up. */
START_TEST(test_consume_full_map_at_commit_grows)
{
    char *ref = data_with_log(1795711639u, KILL_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, "500"), 0);
    char *data = data_sharing_log(ref);
    setenv("TALLY_VIEWS_MAP_INIT_BYTES", "131072", 1);
    int rc = consume(data, NULL, "500");
    unsetenv("TALLY_VIEWS_MAP_INIT_BYTES");
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), KILL_LOG_EVENTS);
    assert_same_views(ref, data);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

/* A flush that drops partners as it writes them (tally consume's engines,
 * tly_engine_set_flush_drops) cannot be redone when a put meets a full map
 * after a drop: the store grows, the consumer reloads its engine and
 * refolds from the checkpoint, and ends with the views of a fold that never
 * met it. A tiny cache makes nearly every partner a drop; a 128 KiB map
 * makes the puts meet its end. */
START_TEST(test_consume_full_map_after_drops_reloads)
{
    char *ref = data_with_log(1795711639u, KILL_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, "500"), 0);
    char *data = data_sharing_log(ref);
    setenv("TALLY_VIEWS_MAP_INIT_BYTES", "131072", 1);
    setenv("TALLY_ENGINE_CACHE_ENTRIES", "5", 1);
    int rc = consume(data, NULL, "500");
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    unsetenv("TALLY_VIEWS_MAP_INIT_BYTES");
    ck_assert_int_eq(rc, 0);
    char *errp = path_join(data, "consume.err");
    char *text = tu_read_file(errp, NULL);
    ck_assert_msg(text && strstr(text, "failed: storage failure"), "no reload in: %s", text);
    free(text);
    free(errp);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), KILL_LOG_EVENTS);
    assert_same_views(ref, data);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

START_TEST(test_consume_kill9_resumes_exactly_once)
{
    unsigned seed = test_seed();
    srand(seed);
    char *ref = data_with_log(seed, KILL_LOG_EVENTS);
    /* The uninterrupted run's duration only spreads the kill moments over
     * the fold (nothing asserts on time): a kill lands at a random point of
     * what is left to fold, at a batch commit or between two. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(consume(ref, NULL, "500"), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long fold_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("uninterrupted fold of %u events: %ld ms\n", KILL_LOG_EVENTS, fold_ms);
    /* The killed consumers start from a tiny map, so kills also land while
     * a commit is aborted, the map doubled and the batch flushed again.
     * In the last round their engines also keep a tiny cache and split
     * every read-back, so kills land while state is read back from the
     * store, half of it on a second thread. */
    setenv("TALLY_VIEWS_MAP_INIT_BYTES", "131072", 1);
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            setenv("TALLY_ENGINE_CACHE_ENTRIES", "5", 1);
            setenv("TALLY_CONSUME_READ_SPLIT_MIN", "1", 1);
        }
        char *data = data_sharing_log(ref);
        char *logp = path_join(data, "consume.log");
        uint64_t cp = 0;
        for (int k = 0; k < KILL_ROUNDS; k++) {
            char *const argv[] = {(char *)tu_tally(), "consume", "--data", data,
                                  "--exit-at-head",   "--batch", "500",    NULL};
            long left_ms = fold_ms * (long)(KILL_LOG_EVENTS - cp) / KILL_LOG_EVENTS + 20;
            if (left_ms > KILL_DELAY_MS_MAX)
                left_ms = KILL_DELAY_MS_MAX;
            int delay = (int)(rand() % left_ms);
            pid_t pid = tu_spawn(argv, logp);
            tu_sleep_ms(delay);
            int rc = tu_kill_wait(pid, SIGKILL);
            tly_views *v = NULL;
            if (tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v) == TLY_OK)
                tly_views_checkpoint(v, &cp);
            tly_views_close(v);
            printf("round %d kill %d after %d ms: status %d, checkpoint %llu\n", round, k, delay,
                   rc, (unsigned long long)cp);
        }
        ck_assert_int_eq(consume(data, NULL, "500"), 0);
        ck_assert_uint_eq(checkpoint_of(data, 0, 1), KILL_LOG_EVENTS);
        assert_same_views(ref, data);
        free(logp);
        tu_rmtree(data);
    }
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    unsetenv("TALLY_CONSUME_READ_SPLIT_MIN");
    tu_rmtree(ref);
}
END_TEST

/* --- shard counts --- */

typedef struct strs {
    char **v;
    size_t n;
} strs;

static tly_err collect(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k;
    (void)klen;
    strs *s = ctx;
    s->v = realloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n] = strndup(v, vlen);
    s->n++;
    return TLY_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every exception of all n shards, sorted (their order across shards is not
 * defined; their content is). */
static strs all_exceptions(const char *data, uint32_t n)
{
    strs s = {0};
    for (uint32_t k = 0; k < n; k++) {
        tly_views *v = views_ro(data, k, n);
        ck_assert_int_eq(tly_views_scan(v, "X/", 2, collect, &s, NULL), TLY_OK);
        tly_views_close(v);
    }
    qsort(s.v, s.n, sizeof *s.v, cmp_str);
    return s;
}

static void strs_free(strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Partner views of the n-shard run equal the 1-shard run's, byte for byte. */
static void compare_partners(const char *data, uint32_t n, uint32_t partners)
{
    tly_views *one = views_ro(data, 0, 1);
    tly_views *sh[4];
    for (uint32_t k = 0; k < n; k++)
        sh[k] = views_ro(data, k, n);
    const char kinds[] = {'b', 'r', 't', 'c'};
    uint32_t present = 0;
    for (uint32_t i = 0; i < partners; i++) {
        char name[32];
        tly_rtgen_partner_name(i, name, sizeof name);
        uint32_t k = tly_engine_shard_of(name, strlen(name), n);
        for (size_t j = 0; j < 4; j++) {
            char *a = get_doc(one, kinds[j], name), *b = get_doc(sh[k], kinds[j], name);
            ck_assert_msg((!a && !b) || (a && b && strcmp(a, b) == 0),
                          "%c of %s differs between 1 and %u shards", kinds[j], name, n);
            ck_assert_ptr_null(get_doc(sh[(k + 1) % n], kinds[j], name)); /* owner's only */
            present += a != NULL;
            free(a);
            free(b);
        }
    }
    ck_assert_uint_gt(present, partners); /* most partners have views */
    for (uint32_t k = 0; k < n; k++)
        tly_views_close(sh[k]);
    tly_views_close(one);
    strs x = all_exceptions(data, 1), y = all_exceptions(data, n);
    ck_assert_uint_eq(x.n, y.n);
    for (size_t i = 0; i < x.n; i++)
        ck_assert_str_eq(x.v[i], y.v[i]);
    strs_free(&x);
    strs_free(&y);
}

START_TEST(test_shards_give_identical_partner_views)
{
    char *data = data_with_log(3, SHARD_LOG_EVENTS);
    const char *shards[] = {"0/1", "0/2", "1/2", "0/4", "1/4", "2/4", "3/4"};
    for (size_t i = 0; i < sizeof shards / sizeof shards[0]; i++)
        ck_assert_int_eq(consume(data, shards[i], NULL), 0);
    tly_rtgen *g;
    ck_assert_int_eq(tly_rtgen_new(3, SHARD_LOG_EVENTS, &g), TLY_OK);
    uint32_t partners = tly_rtgen_partner_count(g);
    tly_rtgen_free(g);
    compare_partners(data, 2, partners);
    compare_partners(data, 4, partners);
    tu_rmtree(data);
}
END_TEST

/* The sales mode shard k of n was folded in (tly_views_sales). */
static tly_views_sales_mode sales_mode(const char *data, uint32_t k, uint32_t n)
{
    tly_views *v = views_ro(data, k, n);
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(k, n, &e), TLY_OK);
    ck_assert_int_eq(tly_views_load(v, e), TLY_OK);
    tly_views_sales_mode m = tly_views_sales(v);
    tly_engine_free(e);
    tly_views_close(v);
    return m;
}

static tly_err count_visit(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k, (void)klen, (void)v, (void)vlen;
    ++*(uint64_t *)ctx;
    return TLY_OK;
}

/* Entries of shard k of n under prefix. */
static uint64_t entries_under(const char *data, uint32_t k, uint32_t n, const char *prefix)
{
    tly_views *v = views_ro(data, k, n);
    uint64_t count = 0;
    ck_assert_int_eq(tly_views_scan(v, prefix, strlen(prefix), count_visit, &count, NULL), TLY_OK);
    tly_views_close(v);
    return count;
}

/* Keeps the key it is shown: after a scan of everything, the last one. */
static tly_err last_key_visit(void *ctx, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)v, (void)vlen;
    char *last = ctx;
    snprintf(last, 64, "%.*s", (int)(klen < 63 ? klen : 63), (const char *)k);
    return TLY_OK;
}

/* The first bytes of shard k of n's last key. */
static void last_key(const char *data, uint32_t k, uint32_t n, char last[64])
{
    tly_views *v = views_ro(data, k, n);
    last[0] = 0;
    ck_assert_int_eq(tly_views_scan(v, "", 0, last_key_visit, last, NULL), TLY_OK);
    tly_views_close(v);
}

/* Sales registered in shard k of n: "S/2/" entries (keyed by (source,
 * id), or by seq in a store written before "Z/") and "Z/" ones (a
 * shard's own, by seq). */
static uint64_t sales_stored(const char *data, uint32_t k, uint32_t n)
{
    return entries_under(data, k, n, "S/2/") +
           entries_under(data, k, n, TLY_ENGINE_SEQ_SALE_PREFIX);
}

/* Issue 9 item 2: beside DIR/log a shard registers its own partners'
 * sales only and reads another's from the log when a return names it (the
 * generator's returns name other partners' sales, ids of later sales and
 * of other events): every sale is stored once across the shards, and the
 * views and exceptions are those of stores that register every sale
 * ($TALLY_CONSUME_ALL_SALES, what a --remote consumer does) and of one
 * shard, byte for byte. */
START_TEST(test_shards_register_own_sales)
{
    char *own = data_with_log(5, SHARD_LOG_EVENTS);
    char *all = data_sharing_log(own);
    const char *shards[] = {"0/1", "0/2", "1/2"};
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(consume(own, shards[i], "700"), 0);
    setenv("TALLY_CONSUME_ALL_SALES", "1", 1);
    for (size_t i = 1; i < 3; i++)
        ck_assert_int_eq(consume(all, shards[i], "700"), 0);
    unsetenv("TALLY_CONSUME_ALL_SALES");
    uint64_t every = sales_stored(own, 0, 1);
    ck_assert_uint_gt(every, SHARD_LOG_EVENTS / 4);
    ck_assert_uint_eq(sales_stored(own, 0, 2) + sales_stored(own, 1, 2), every);
    for (uint32_t k = 0; k < 2; k++) {
        ck_assert_uint_lt(sales_stored(own, k, 2), every * 3 / 4);
        ck_assert_uint_eq(sales_stored(all, k, 2), every);
        ck_assert_int_eq(sales_mode(own, k, 2), TLY_VIEWS_SALES_OWN);
        ck_assert_int_eq(sales_mode(all, k, 2), TLY_VIEWS_SALES_ALL);
        /* own sales by seq, last in the store (so that a commit appends
         * them); every sale by (source, id) */
        char last[64];
        last_key(own, k, 2, last);
        ck_assert_msg(
            strncmp(last, TLY_ENGINE_SEQ_SALE_PREFIX, strlen(TLY_ENGINE_SEQ_SALE_PREFIX)) == 0,
            "shard %u/2: the last key is %s, not a sale", k, last);
        ck_assert_uint_eq(entries_under(own, k, 2, "S/2/"), 0);
        ck_assert_uint_eq(entries_under(all, k, 2, TLY_ENGINE_SEQ_SALE_PREFIX), 0);
    }
    tly_rtgen *g;
    ck_assert_int_eq(tly_rtgen_new(5, SHARD_LOG_EVENTS, &g), TLY_OK);
    uint32_t partners = tly_rtgen_partner_count(g);
    tly_rtgen_free(g);
    compare_partners(own, 2, partners);
    strs x = all_exceptions(own, 2), y = all_exceptions(all, 2);
    ck_assert_uint_eq(x.n, y.n);
    size_t mismatched = 0;
    for (size_t i = 0; i < x.n; i++) {
        ck_assert_str_eq(x.v[i], y.v[i]);
        mismatched += strstr(x.v[i], "\"return_partner_mismatch\"") != NULL;
    }
    ck_assert_uint_gt(mismatched, 0);
    strs_free(&x);
    strs_free(&y);
    tu_rmtree(all);
    tu_rmtree(own);
}
END_TEST

/* Rewrites shard 0/1 of data as a store written before "Z/": its own sales
 * under "S/2/<seq>" and "M/sales" "own". */
static void to_s2_layout(const char *data)
{
    raw_store r = raw_begin(data);
    MDB_cursor *cur;
    ck_assert_int_eq(mdb_cursor_open(r.txn, r.dbi, &cur), 0);
    size_t zl = strlen(TLY_ENGINE_SEQ_SALE_PREFIX), moved = 0;
    MDB_val k = {zl, TLY_ENGINE_SEQ_SALE_PREFIX}, d;
    int rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == zl + 8 &&
           memcmp(k.mv_data, TLY_ENGINE_SEQ_SALE_PREFIX, zl) == 0) {
        char key[4 + 8];
        memcpy(key, "S/2/", 4);
        memcpy(key + 4, (const char *)k.mv_data + zl, 8);
        MDB_val nk = {sizeof key, key}, nd = {d.mv_size, malloc(d.mv_size)};
        memcpy(nd.mv_data, d.mv_data, d.mv_size);
        ck_assert_int_eq(mdb_cursor_del(cur, 0), 0);
        ck_assert_int_eq(mdb_put(r.txn, r.dbi, &nk, &nd, 0), 0);
        free(nd.mv_data);
        moved++;
        k = (MDB_val){zl, TLY_ENGINE_SEQ_SALE_PREFIX};
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    }
    ck_assert(rc == 0 || rc == MDB_NOTFOUND);
    ck_assert_uint_gt(moved, 0);
    mdb_cursor_close(cur);
    MDB_val sk = {strlen(TLY_VIEWS_KEY_SALES), TLY_VIEWS_KEY_SALES}, sv = {3, "own"};
    ck_assert_int_eq(mdb_put(r.txn, r.dbi, &sk, &sv, 0), 0);
    raw_commit(&r);
}

/* A store written before "Z/" keeps its own sales under "S/2/<seq>": the
 * returns of the log's second half find the first half's sales there, the
 * new sales go there too, and the views are those of a store written with
 * "Z/" (whose sales, appended last, fill their pages). Looking for the
 * first half's sales under "Z/" would stop the second consumer on a
 * corrupt store. */
START_TEST(test_seq_sales_in_s2_fold_on)
{
    char *ref = data_with_log(13, SHARD_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, "700"), 0);
    ck_assert_uint_eq(entries_under(ref, 0, 1, "S/2/"), 0);
    ck_assert_uint_gt(entries_under(ref, 0, 1, TLY_ENGINE_SEQ_SALE_PREFIX), SHARD_LOG_EVENTS / 4);
    char *data = tu_tmpdir();
    copy_records(ref, data, 1, SHARD_LOG_EVENTS / 2);
    ck_assert_int_eq(consume(data, NULL, "700"), 0);
    to_s2_layout(data);
    copy_records(ref, data, SHARD_LOG_EVENTS / 2 + 1, SHARD_LOG_EVENTS);
    ck_assert_int_eq(consume(data, NULL, "700"), 0);
    ck_assert_uint_eq(entries_under(data, 0, 1, TLY_ENGINE_SEQ_SALE_PREFIX), 0);
    ck_assert_uint_eq(sales_stored(data, 0, 1), sales_stored(ref, 0, 1));
    assert_same_views(ref, data);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

/* The number before what in the line the last `tally consume` on data
 * logs when it stops ("N records in ..; K commits in ..; P partners read
 * back in .."). */
static unsigned long long stop_figure(const char *data, const char *what)
{
    char *err = path_join(data, "consume.err");
    char *text = tu_read_file(err, NULL);
    ck_assert_ptr_nonnull(text);
    const char *at = strstr(text, what);
    ck_assert_msg(at != NULL, "no '%s' in %s", what, text);
    while (at > text && at[-1] >= '0' && at[-1] <= '9')
        at--;
    unsigned long long n = strtoull(at, NULL, 10);
    free(text);
    free(err);
    return n;
}

/* Partners it read back at its batches' starts. */
static unsigned long long read_back_of(const char *data)
{
    return stop_figure(data, " partners read back in ");
}

/* Commits it made. */
static unsigned long long commits_of(const char *data)
{
    return stop_figure(data, " commits in ");
}

/* An engine cache of three partners and three sales (every lookup a read
 * of the store, every commit a trim) gives the views of the default cache,
 * byte for byte, on 1 shard and on 2 (returns across shards included);
 * each batch then reads back the partners the last one changed and
 * dropped (tly_engine_read_back), and with the default cache, which holds
 * them all, none. The 2-shard consumers split every read-back, a second
 * thread decoding half of it (TALLY_CONSUME_READ_SPLIT_MIN=1). */
START_TEST(test_consume_small_cache_same_views)
{
    char *ref = data_with_log(11, SHARD_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, NULL), 0);
    ck_assert_uint_eq(read_back_of(ref), 0);
    char *data = data_sharing_log(ref);
    setenv("TALLY_ENGINE_CACHE_ENTRIES", "3", 1);
    const char *shards[] = {"0/1", "0/2", "1/2"};
    for (size_t i = 0; i < sizeof shards / sizeof shards[0]; i++) {
        if (i == 1)
            setenv("TALLY_CONSUME_READ_SPLIT_MIN", "1", 1);
        ck_assert_int_eq(consume(data, shards[i], "700"), 0);
        ck_assert_uint_gt(read_back_of(data), 0);
    }
    unsetenv("TALLY_CONSUME_READ_SPLIT_MIN");
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    assert_same_views(ref, data);
    tly_rtgen *g;
    ck_assert_int_eq(tly_rtgen_new(11, SHARD_LOG_EVENTS, &g), TLY_OK);
    uint32_t partners = tly_rtgen_partner_count(g);
    tly_rtgen_free(g);
    compare_partners(data, 2, partners);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

/* Occurrences of needle in text. */
static unsigned count_of(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A test override set to what its range refuses is named on stderr, once,
 * and the default folds: the same views as without it. */
START_TEST(test_consume_refused_override_said_once)
{
    char *ref = data_with_log(12, SHARD_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, NULL), 0);
    char *data = data_sharing_log(ref);
    setenv("TALLY_ENGINE_CACHE_ENTRIES", "many", 1);
    setenv("TALLY_CONSUME_READ_SPLIT_MIN", "-1", 1);
    int rc = consume(data, NULL, "700");
    unsetenv("TALLY_CONSUME_READ_SPLIT_MIN");
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_gt(commits_of(data), 2);
    char *err_path = path_join(data, "consume.err");
    char *err = tu_read_file(err_path, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(count_of(err, "ignoring $TALLY_ENGINE_CACHE_ENTRIES=many: not a whole number "
                                "in 1..4294967295; using the default") == 1,
                  "%s", err);
    ck_assert_msg(count_of(err, "ignoring $TALLY_CONSUME_READ_SPLIT_MIN=-1") == 1, "%s", err);
    assert_same_views(ref, data);
    free(err);
    free(err_path);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

/* A consumer's memory bound (TLY_CONSUME_ANON_BYTES_MAX, read every
 * TLY_CONSUME_VIEWS_RELEASE_RECORDS records) commits a batch early, and the
 * pass that read it ends there: with a bound of one byte every batch is
 * TLY_CONSUME_VIEWS_RELEASE_RECORDS records, none is the remainder of a
 * --batch cut short, and the views are the same byte for byte. */
START_TEST(test_consume_memory_bound_commits_early)
{
    const unsigned long long per = TLY_CONSUME_VIEWS_RELEASE_RECORDS;
    ck_assert_uint_gt(3000, per); /* --batch 3000 below: cut once each */
    char *ref = data_with_log(13, SHARD_LOG_EVENTS);
    ck_assert_int_eq(consume(ref, NULL, "3000"), 0);
    ck_assert_uint_eq(commits_of(ref), (SHARD_LOG_EVENTS + 2999) / 3000);
    char *data = data_sharing_log(ref);
    setenv("TALLY_CONSUME_ANON_BYTES", "1", 1);
    int rc = consume(data, NULL, "3000");
    unsetenv("TALLY_CONSUME_ANON_BYTES");
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(commits_of(data), (SHARD_LOG_EVENTS + per - 1) / per);
    assert_same_views(ref, data);
    tu_rmtree(data);
    tu_rmtree(ref);
}
END_TEST

/* --- live: tally ledger + tally send --- */

static void write_jsonl(const char *path, const char *const *events, size_t n)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", events[i]);
    fclose(f);
}

static int send_file(const char *ingest, const char *path)
{
    char *const argv[] = {(char *)tu_tally(), "send",         "--source",   "test",
                          "--ingest",         (char *)ingest, (char *)path, NULL};
    return tu_run(argv, NULL, NULL, NULL);
}

/* Polls a shard's checkpoint until it reaches want or the deadline passes. */
static uint64_t wait_checkpoint(const char *data, uint64_t want)
{
    uint64_t cp = 0;
    for (int waited = 0; waited < LIVE_DEADLINE_MS && cp < want; waited += 50) {
        tly_views *v = NULL;
        if (tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v) == TLY_OK)
            tly_views_checkpoint(v, &cp);
        tly_views_close(v);
        if (cp < want)
            tu_sleep_ms(50);
    }
    return cp;
}

START_TEST(test_live_follow_ledger)
{
    char *data = tu_tmpdir(), *remote = tu_tmpdir();
    char ing[64], evt[64], lr[64];
    tu_endpoint(ing, sizeof ing);
    tu_endpoint(evt, sizeof evt);
    tu_endpoint(lr, sizeof lr);
    char *llog = path_join(data, "ledger.log"), *clog = path_join(data, "consume.log");
    char *rlog = path_join(remote, "consume.log");
    char *const ledger[] = {(char *)tu_tally(), "ledger", "--data",     data, "--ingest",  ing,
                            "--events",         evt,      "--log-read", lr,   "--no-sync", NULL};
    /* The local consumer starts before the ledger, as under `tally up`: it
     * asks log-read until DIR/log exists, then reads DIR/log. */
    char *const local[] = {(char *)tu_tally(), "consume", "--data", data, "--events", evt,
                           "--log-read",       lr,        NULL};
    pid_t cp1 = tu_spawn(local, clog);
    pid_t lp = tu_spawn(ledger, llog);
    ck_assert(tu_wait_listening(ing, 10000));
    ck_assert(tu_wait_listening(lr, 10000));
    /* Part one is in the log before the remote consumer starts: it catches up. */
    char *f1 = path_join(data, "part1.jsonl"), *f2 = path_join(data, "part2.jsonl");
    write_jsonl(f1, small_events, 6);
    write_jsonl(f2, small_events + 6, SMALL_COUNT - 6);
    ck_assert_int_eq(send_file(ing, f1), 0);
    /* No log in `remote`: with --log-read given it reads through the ledger. */
    char *const far[] = {(char *)tu_tally(), "consume", "--data", remote, "--events", evt,
                         "--log-read",       lr,        NULL};
    pid_t cp2 = tu_spawn(far, rlog);
    ck_assert_uint_eq(wait_checkpoint(data, 6), 6);
    ck_assert_uint_eq(wait_checkpoint(remote, 6), 6);
    /* Part two arrives while they follow the events socket. */
    ck_assert_int_eq(send_file(ing, f2), 0);
    ck_assert_uint_eq(wait_checkpoint(data, SMALL_COUNT), SMALL_COUNT);
    ck_assert_uint_eq(wait_checkpoint(remote, SMALL_COUNT), SMALL_COUNT);
    ck_assert_int_eq(tu_kill_wait(cp1, SIGTERM), 0);
    ck_assert_int_eq(tu_kill_wait(cp2, SIGTERM), 0);
    ck_assert_int_eq(tu_kill_wait(lp, SIGTERM), 0);
    assert_same_views(data, remote);
    free(f1);
    free(f2);
    free(llog);
    free(clog);
    free(rlog);
    tu_rmtree(data);
    tu_rmtree(remote);
}
END_TEST

/* A consumer on "another machine" (no DIR/log) catches up through the
 * ledger's log-read socket, many requests per batch, and exits at the head
 * with the same views as a local consumer of the same log. */
START_TEST(test_remote_catch_up_through_log_read)
{
    char *data = tu_tmpdir(), *far = tu_tmpdir();
    char *dir = path_join(data, "log");
    ck_assert_int_eq(tly_rtgen_build_log(dir, 11, REMOTE_LOG_EVENTS), TLY_OK);
    free(dir);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    char ing[64], evt[64], lr[64];
    tu_endpoint(ing, sizeof ing);
    tu_endpoint(evt, sizeof evt);
    tu_endpoint(lr, sizeof lr);
    char *llog = path_join(data, "ledger.log"), *rerr = path_join(far, "consume.err");
    char *const ledger[] = {(char *)tu_tally(), "ledger", "--data",     data, "--ingest",  ing,
                            "--events",         evt,      "--log-read", lr,   "--no-sync", NULL};
    pid_t lp = tu_spawn(ledger, llog);
    ck_assert(tu_wait_listening(lr, 10000));
    char *const remote[] = {(char *)tu_tally(), "consume", "--data",         far, "--remote",
                            "--log-read",       lr,        "--exit-at-head", NULL};
    ck_assert_int_eq(tu_run(remote, NULL, NULL, rerr), 0);
    ck_assert_uint_eq(checkpoint_of(far, 0, 1), REMOTE_LOG_EVENTS);
    /* Through log-read too, a batch the memory bound ends (here every
     * TLY_CONSUME_VIEWS_RELEASE_RECORDS records) leaves the rest of its
     * reply to the next batch, which the pass fills before it ends: no
     * commit of a --batch's remainder. */
    char *tight = tu_tmpdir(), *terr = path_join(tight, "consume.err");
    char *const bounded[] = {
        (char *)tu_tally(), "consume", "--data",         tight, "--remote", "--log-read", lr,
        "--batch",          "3000",    "--exit-at-head", NULL};
    setenv("TALLY_CONSUME_ANON_BYTES", "1", 1);
    int trc = tu_run(bounded, NULL, NULL, terr);
    unsetenv("TALLY_CONSUME_ANON_BYTES");
    ck_assert_int_eq(trc, 0);
    ck_assert_uint_eq(commits_of(tight),
                      (REMOTE_LOG_EVENTS + TLY_CONSUME_VIEWS_RELEASE_RECORDS - 1) /
                          TLY_CONSUME_VIEWS_RELEASE_RECORDS);
    assert_same_views(data, tight);
    free(terr);
    tu_rmtree(tight);
    ck_assert_int_eq(tu_kill_wait(lp, SIGTERM), 0);
    assert_same_views(data, far);
    ck_assert_int_eq(sales_mode(data, 0, 1), TLY_VIEWS_SALES_OWN);
    ck_assert_int_eq(sales_mode(far, 0, 1), TLY_VIEWS_SALES_ALL);
    /* A store that reads other shards' sales from DIR/log cannot go on
     * without it: --remote on it is refused before anything is read. */
    char *const moved[] = {(char *)tu_tally(), "consume", "--data",         data, "--remote",
                           "--log-read",       lr,        "--exit-at-head", NULL};
    ck_assert_int_ne(tu_run(moved, NULL, NULL, rerr), 0);
    char *why = tu_read_file(rerr, NULL);
    ck_assert_msg(why && strstr(why, "not --remote"), "consume --remote said: %s", why);
    free(why);
    free(llog);
    free(rerr);
    tu_rmtree(data);
    tu_rmtree(far);
}
END_TEST

/* --- an events socket that drops, repeats and reorders --- */

/* Events of the fault tests: enough that every kind of fault occurs many
 * times, few enough for a sanitizer build. */
#define FAULT_LOG_EVENTS 2000u
/* Parts the log grows by while the consumer follows it (waiting for the
 * consumer to fold each); the remote test sends each with `tally send`. */
#define FAULT_PARTS 8
#define FAULT_REMOTE_PARTS 25
/* Records per commit (and publication) at most, as the ledger's group
 * commits: small, so that most records can be applied as published. */
#define FAULT_GROUP_MAX 12
/* Per mille of records hit by each kind of record fault. */
#define FAULT_PERMILLE 70
/* A log whose length is not a multiple of the tiny batch. */
#define TINY_BATCH 7u
#define TINY_BATCH_LOG_EVENTS 2003u
_Static_assert(TINY_BATCH_LOG_EVENTS % TINY_BATCH != 0, "a last, partial batch");

enum {
    FAULT_GAP,       /* a record never published */
    FAULT_TWICE,     /* a record published twice in a row */
    FAULT_SWAP,      /* a record published after the one behind it */
    FAULT_OLD,       /* an earlier record published again later */
    FAULT_GARBAGE,   /* a body that is not a record */
    FAULT_SINGLE,    /* a message of one frame */
    FAULT_LONG,      /* (topic, the next record, one frame too many) */
    FAULT_BAD_EVENT, /* a record of the next seq whose event does not decode */
    FAULT_KINDS
};

static const char *const fault_names[FAULT_KINDS] = {
    "gaps",           "doubles",       "swaps",        "old resends",
    "garbage bodies", "single frames", "three frames", "bad events"};

/* The test's own events socket. XPUB is a PUB that also hands over the
 * subscriptions, so the test knows when the consumer is listening. */
typedef struct fault_pub {
    void *ctx;
    void *sock;
    char ep[64];
    unsigned counts[FAULT_KINDS];
} fault_pub;

/* One stored record, copied out of its read transaction. */
typedef struct pub_rec {
    uint64_t seq;
    const char *topic;
    uint8_t *raw;
    size_t len;
} pub_rec;

static void pub_open(fault_pub *p)
{
    memset(p, 0, sizeof *p);
    p->ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(p->ctx);
    p->sock = zmq_socket(p->ctx, ZMQ_XPUB);
    ck_assert_ptr_nonnull(p->sock);
    int zero = 0; /* no linger; SNDHWM 0: no silent drops but ours */
    ck_assert_int_eq(zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero), 0);
    ck_assert_int_eq(zmq_setsockopt(p->sock, ZMQ_SNDHWM, &zero, sizeof zero), 0);
    int rc = -1;
    for (int tries = 0; tries < 20 && rc != 0; tries++) { /* a port taken meanwhile */
        tu_endpoint(p->ep, sizeof p->ep);
        rc = zmq_bind(p->sock, p->ep);
    }
    ck_assert_int_eq(rc, 0);
}

static void pub_close(fault_pub *p)
{
    zmq_close(p->sock);
    zmq_ctx_term(p->ctx);
}

/* Waits for the consumer's subscription: from then on nothing is lost to a
 * late join, every gap is one the test made. */
static void pub_wait_subscriber(fault_pub *p)
{
    zmq_pollitem_t it = {p->sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, LIVE_DEADLINE_MS), 1);
    uint8_t buf[8];
    ck_assert_int_ge(zmq_recv(p->sock, buf, sizeof buf, 0), 1);
    ck_assert_uint_eq(buf[0], 1); /* a subscribe, not an unsubscribe */
}

static void pub_send(fault_pub *p, const char *topic, const void *body, size_t len)
{
    ck_assert_int_eq(zmq_send(p->sock, topic, strlen(topic), ZMQ_SNDMORE), (int)strlen(topic));
    ck_assert_int_eq(zmq_send(p->sock, body, len, 0), (int)len);
}

/* Messages no ledger sends, each of which the consumer must drop without
 * applying anything; next is the record the consumer needs next. */
static void pub_junk(fault_pub *p, const pub_rec *next)
{
    static const uint8_t garbage[] = {0x95, 0x01, 0xc1, 0xff, 0x00};
    pub_send(p, "sale", garbage, sizeof garbage);
    p->counts[FAULT_GARBAGE]++;
    ck_assert_int_eq(zmq_send(p->sock, next->raw, next->len, 0), (int)next->len);
    p->counts[FAULT_SINGLE]++;
    ck_assert_int_eq(zmq_send(p->sock, next->topic, strlen(next->topic), ZMQ_SNDMORE),
                     (int)strlen(next->topic));
    ck_assert_int_eq(zmq_send(p->sock, next->raw, next->len, ZMQ_SNDMORE), (int)next->len);
    ck_assert_int_eq(zmq_send(p->sock, "x", 1, 0), 1);
    p->counts[FAULT_LONG]++;
    /* A well-formed record of the next seq whose event is not MessagePack:
     * only the log may say that a record is corrupt. */
    static const uint8_t bad_event[] = {0xc1};
    uint8_t hash[TLY_HASH_BYTES] = {0};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_record_encode(&sb, next->seq, 0, (tly_str){"test", 4}, bad_event,
                                       sizeof bad_event, hash),
                     TLY_OK);
    pub_send(p, "sale", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    p->counts[FAULT_BAD_EVENT]++;
}

/* Records [from, to] of data's log, copied. */
static pub_rec *read_records(const char *data, uint64_t from, uint64_t to)
{
    char *dir = path_join(data, "log");
    tly_log *log;
    tly_log_reader *rd;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, from, &rd), TLY_OK);
    pub_rec *recs = calloc(to - from + 1, sizeof *recs);
    for (uint64_t i = 0; i <= to - from; i++) {
        tly_record rec;
        tly_ev_type type;
        tly_str id;
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        ck_assert_uint_eq(rec.seq, from + i);
        ck_assert_int_eq(tly_event_peek_id(rec.event, rec.event_len, &type, &id), TLY_OK);
        recs[i].seq = rec.seq;
        recs[i].topic = tly_ev_type_name(type);
        recs[i].raw = malloc(rec.raw_len);
        memcpy(recs[i].raw, rec.raw, rec.raw_len);
        recs[i].len = rec.raw_len;
    }
    tly_log_reader_close(rd);
    tly_log_close(log);
    free(dir);
    return recs;
}

static void pub_rec_send(fault_pub *p, const pub_rec *r)
{
    pub_send(p, r->topic, r->raw, r->len);
}

/* Publishes n records as a ledger would, with faults drawn from rand():
 * gaps, doubles, swaps, resends of older records and junk. */
static void publish_faulty(fault_pub *p, const pub_rec *recs, size_t n)
{
    for (size_t i = 0; i < n;) {
        int r = rand() % 1000;
        if (r < FAULT_PERMILLE) {
            p->counts[FAULT_GAP]++;
            i++;
        } else if (r < 2 * FAULT_PERMILLE) {
            pub_rec_send(p, &recs[i]);
            pub_rec_send(p, &recs[i]);
            p->counts[FAULT_TWICE]++;
            i++;
        } else if (r < 3 * FAULT_PERMILLE && i + 1 < n) {
            pub_rec_send(p, &recs[i + 1]);
            pub_rec_send(p, &recs[i]);
            p->counts[FAULT_SWAP]++;
            i += 2;
        } else if (r < 4 * FAULT_PERMILLE && i > 0) {
            pub_rec_send(p, &recs[i]);
            pub_rec_send(p, &recs[(size_t)rand() % i]);
            p->counts[FAULT_OLD]++;
            i++;
        } else if (r < 4 * FAULT_PERMILLE + 10) {
            pub_junk(p, &recs[i]);
        } else {
            pub_rec_send(p, &recs[i]);
            i++;
        }
    }
}

static void pub_recs_free(pub_rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(recs[i].raw);
    free(recs);
}

/* Records [from, to] of data's log published with faults. */
static void publish_range(fault_pub *p, const char *data, uint64_t from, uint64_t to)
{
    size_t n = (size_t)(to - from + 1);
    pub_rec *recs = read_records(data, from, to);
    publish_faulty(p, recs, n);
    pub_junk(p, &recs[n - 1]);
    pub_recs_free(recs, n);
}

/* Appends records [from, to] of ref's log to data's log in groups of 1 to
 * FAULT_GROUP_MAX, each published with faults right after its commit, as
 * the ledger publishes each group commit. */
static void grow_and_publish(fault_pub *p, const char *ref, const char *data, uint64_t from,
                             uint64_t to)
{
    size_t n = (size_t)(to - from + 1);
    pub_rec *recs = read_records(ref, from, to);
    pub_junk(p, &recs[0]); /* before its commit: a bad event of the next seq */
    for (uint64_t s = from; s <= to;) {
        uint64_t end = s + (uint64_t)rand() % FAULT_GROUP_MAX;
        if (end > to)
            end = to;
        copy_records(ref, data, s, end);
        publish_faulty(p, recs + (s - from), (size_t)(end - s + 1));
        s = end + 1;
    }
    pub_recs_free(recs, n);
}

/* Every kind of fault happened (printed for the record). */
static void pub_check_counts(const fault_pub *p)
{
    for (int k = 0; k < FAULT_KINDS; k++) {
        printf("%s%u %s", k ? ", " : "faults: ", p->counts[k], fault_names[k]);
        ck_assert_uint_gt(p->counts[k], 0);
    }
    printf("\n");
    fflush(stdout);
}

/* Polls shard 0/1's checkpoint of data until it reaches want. Fails at once
 * when the consumer pid has exited, else after LIVE_DEADLINE_MS (a
 * liveness deadline, not a timing assertion). */
static void wait_folded(const char *data, uint64_t want, pid_t pid)
{
    uint64_t cp = 0;
    for (int waited = 0; cp < want; waited += 20) {
        int status = 0;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0,
                      "the consumer exited (status 0x%x) at checkpoint %llu of %llu", status,
                      (unsigned long long)cp, (unsigned long long)want);
        ck_assert_msg(waited < LIVE_DEADLINE_MS, "checkpoint %llu of %llu after %d ms",
                      (unsigned long long)cp, (unsigned long long)want, waited);
        tly_views *v = NULL;
        if (tly_views_open(data, 0, 1, TLY_VIEWS_READ, &v) == TLY_OK)
            tly_views_checkpoint(v, &cp);
        tly_views_close(v);
        if (cp < want)
            tu_sleep_ms(20);
    }
    ck_assert_uint_eq(cp, want); /* never beyond the log */
}

/* Cut points 0 = cuts[0] < cuts[1] < ... < cuts[FAULT_PARTS] = events,
 * spread at random around equal parts. */
static void random_cuts(uint64_t *cuts, uint64_t events)
{
    uint64_t part = events / FAULT_PARTS;
    cuts[0] = 0;
    for (int k = 1; k < FAULT_PARTS; k++)
        cuts[k] = (uint64_t)k * part - part / 4 + (uint64_t)rand() % (part / 2);
    cuts[FAULT_PARTS] = events;
}

/* A consumer reading DIR/log, following an events socket that drops,
 * repeats and reorders records and sends junk, while the log grows: it
 * applies every record exactly once and ends byte-equal to an
 * uninterrupted fold of the same log. */
START_TEST(test_follow_faulty_events_local)
{
    unsigned seed = test_seed();
    srand(seed);
    char *ref = tu_tmpdir(), *data = tu_tmpdir();
    char *dir = path_join(ref, "log");
    ck_assert_int_eq(tly_rtgen_build_log(dir, seed, FAULT_LOG_EVENTS), TLY_OK);
    free(dir);
    ck_assert_int_eq(consume(ref, NULL, NULL), 0);
    uint64_t cuts[FAULT_PARTS + 1];
    random_cuts(cuts, FAULT_LOG_EVENTS);
    /* The first part is in the log before the consumer starts. */
    copy_records(ref, data, 1, cuts[1]);
    fault_pub p;
    pub_open(&p);
    char batch[16], *clog = path_join(data, "consume.log");
    snprintf(batch, sizeof batch, "%d", 1 + rand() % 300);
    printf("parts of about %u records, --batch %s\n", FAULT_LOG_EVENTS / FAULT_PARTS, batch);
    char *const argv[] = {(char *)tu_tally(), "consume", "--data", data, "--events", p.ep,
                          "--batch",          batch,     NULL};
    pid_t pid = tu_spawn(argv, clog);
    pub_wait_subscriber(&p);
    wait_folded(data, cuts[1], pid);
    /* Each further part: the consumer is at the head when it starts. */
    for (int k = 1; k < FAULT_PARTS; k++) {
        grow_and_publish(&p, ref, data, cuts[k] + 1, cuts[k + 1]);
        wait_folded(data, cuts[k + 1], pid);
    }
    ck_assert_int_eq(tu_kill_wait(pid, SIGTERM), 0);
    pub_close(&p);
    pub_check_counts(&p);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), FAULT_LOG_EVENTS);
    assert_same_views(ref, data);
    free(clog);
    tu_rmtree(ref);
    tu_rmtree(data);
}
END_TEST

/* Splits the JSON lines of path into FAULT_REMOTE_PARTS files path.0,
 * path.1, ...; returns their names (malloc'd). */
static char **split_lines(const char *path, size_t lines)
{
    FILE *in = fopen(path, "r");
    ck_assert_ptr_nonnull(in);
    char **names = calloc(FAULT_REMOTE_PARTS, sizeof *names);
    char *line = NULL;
    size_t cap = 0, i = 0;
    for (int k = 0; k < FAULT_REMOTE_PARTS; k++) {
        size_t n = strlen(path) + 16;
        names[k] = malloc(n);
        snprintf(names[k], n, "%s.%d", path, k);
        FILE *out = fopen(names[k], "w");
        ck_assert_ptr_nonnull(out);
        size_t end = lines * (size_t)(k + 1) / FAULT_REMOTE_PARTS;
        for (; i < end; i++) {
            ck_assert_int_gt(getline(&line, &cap, in), 0);
            fputs(line, out);
        }
        fclose(out);
    }
    ck_assert_int_lt(getline(&line, &cap, in), 0); /* all lines placed */
    free(line);
    fclose(in);
    return names;
}

/* `tally send FILE` of {"source","event"} records; its exit code. */
static int send_records(const char *ingest, const char *path)
{
    char *const argv[] = {(char *)tu_tally(), "send",       "--ingest",
                          (char *)ingest,     (char *)path, NULL};
    return tu_run(argv, NULL, NULL, NULL);
}

/* A remote consumer (--remote: log-read only) of a real ledger fed by
 * `tally send`, whose events socket is one only the test publishes to,
 * with gaps, doubles, reorderings and junk: it fills every gap through
 * log-read and ends byte-equal to a local uninterrupted fold. */
START_TEST(test_follow_faulty_events_remote)
{
    unsigned seed = test_seed();
    srand(seed);
    char *data = tu_tmpdir(), *far = tu_tmpdir();
    char ing[64], evt[64], lr[64], seed_s[16], events_s[16], batch[16];
    tu_endpoint(ing, sizeof ing);
    tu_endpoint(evt, sizeof evt);
    tu_endpoint(lr, sizeof lr);
    snprintf(seed_s, sizeof seed_s, "%u", seed);
    snprintf(events_s, sizeof events_s, "%u", FAULT_LOG_EVENTS);
    snprintf(batch, sizeof batch, "%d", 1 + rand() % 300);
    char *gen = path_join(data, "gen.jsonl");
    char *const gen_argv[] = {(char *)tu_tally(), "gen",   "--seed", seed_s, "--events",
                              events_s,           "--out", gen,      NULL};
    ck_assert_int_eq(tu_run(gen_argv, NULL, NULL, NULL), 0);
    char **parts = split_lines(gen, FAULT_LOG_EVENTS);
    char *llog = path_join(data, "ledger.log"), *clog = path_join(far, "consume.log");
    char *const ledger[] = {(char *)tu_tally(), "ledger", "--data",     data, "--ingest",  ing,
                            "--events",         evt,      "--log-read", lr,   "--no-sync", NULL};
    pid_t lp = tu_spawn(ledger, llog);
    ck_assert(tu_wait_listening(ing, 10000));
    ck_assert(tu_wait_listening(lr, 10000));
    fault_pub p;
    pub_open(&p);
    printf("--batch %s\n", batch);
    char *const remote[] = {
        (char *)tu_tally(), "consume", "--data",  far,   "--remote", "--log-read", lr,
        "--events",         p.ep,      "--batch", batch, NULL};
    pid_t cp = tu_spawn(remote, clog);
    pub_wait_subscriber(&p);
    uint64_t head = 0;
    for (int k = 0; k < FAULT_REMOTE_PARTS; k++) {
        ck_assert_int_eq(send_records(ing, parts[k]), 0);
        uint64_t from = head + 1;
        head = log_head(data); /* every event acknowledged: committed */
        ck_assert_uint_gt(head, from - 1);
        publish_range(&p, data, from, head);
        wait_folded(far, head, cp);
    }
    ck_assert_uint_eq(head, FAULT_LOG_EVENTS);
    ck_assert_int_eq(tu_kill_wait(cp, SIGTERM), 0);
    ck_assert_int_eq(tu_kill_wait(lp, SIGTERM), 0);
    pub_close(&p);
    pub_check_counts(&p);
    ck_assert_int_eq(consume(data, NULL, NULL), 0);
    ck_assert_uint_eq(checkpoint_of(data, 0, 1), FAULT_LOG_EVENTS);
    assert_same_views(data, far);
    for (int k = 0; k < FAULT_REMOTE_PARTS; k++)
        free(parts[k]);
    free(parts);
    free(gen);
    free(llog);
    free(clog);
    tu_rmtree(data);
    tu_rmtree(far);
}
END_TEST

/* Batches of 7 over a log that ends with a partial one give the same views
 * as a single batch of TLY_CONSUME_BATCH_RECORDS_MAX. */
START_TEST(test_consume_tiny_batch_same_views)
{
    char *one = data_with_log(5, TINY_BATCH_LOG_EVENTS);
    char *tiny = data_sharing_log(one);
    char max_batch[16], tiny_batch[16];
    snprintf(max_batch, sizeof max_batch, "%u", TLY_CONSUME_BATCH_RECORDS_MAX);
    snprintf(tiny_batch, sizeof tiny_batch, "%u", TINY_BATCH);
    ck_assert_int_eq(consume(one, NULL, max_batch), 0);
    ck_assert_int_eq(consume(tiny, NULL, tiny_batch), 0);
    ck_assert_uint_eq(checkpoint_of(one, 0, 1), TINY_BATCH_LOG_EVENTS);
    ck_assert_uint_eq(checkpoint_of(tiny, 0, 1), TINY_BATCH_LOG_EVENTS);
    assert_same_views(one, tiny);
    tu_rmtree(one);
    tu_rmtree(tiny);
}
END_TEST

/* The decode-ahead's look ahead (tly_ahead_peek) at a chunk's edges: none
 * before the first item; within a chunk the items after the last one
 * handed out, up to the chunk's last (TLY_AHEAD_CHUNK_RECORDS) and not
 * past it; in the last, shorter chunk up to the log's head; and it moves
 * nothing (the next item is the one peeked at). */
START_TEST(test_ahead_peek_edges)
{
    const uint32_t n = 2 * TLY_AHEAD_CHUNK_RECORDS + 22;
    char *data = data_with_log(31, n);
    char *dir = path_join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    tly_ahead *a;
    ck_assert_int_eq(tly_ahead_start(log, 1, n, &a), TLY_OK);
    ck_assert_ptr_null(tly_ahead_peek(a, 0));
    const tly_ahead_item *it;
    for (uint64_t seq = 1; seq <= n; seq++) {
        ck_assert_int_eq(tly_ahead_next(a, &it), TLY_OK);
        ck_assert_uint_eq(it->rec.seq, seq);
        /* the chunk's last record, or the log's */
        uint64_t last =
            (seq - 1) / TLY_AHEAD_CHUNK_RECORDS * TLY_AHEAD_CHUNK_RECORDS + TLY_AHEAD_CHUNK_RECORDS;
        last = last < n ? last : n;
        for (uint64_t k = 0; seq + 1 + k <= last; k++) {
            const tly_ahead_item *p = tly_ahead_peek(a, (uint32_t)k);
            ck_assert_msg(p != NULL && p->rec.seq == seq + 1 + k, "peek %llu at seq %llu",
                          (unsigned long long)k, (unsigned long long)seq);
        }
        ck_assert_ptr_null(tly_ahead_peek(a, (uint32_t)(last - seq)));
        ck_assert_ptr_null(tly_ahead_peek(a, UINT32_MAX));
    }
    ck_assert_int_eq(tly_ahead_next(a, &it), TLY_NOT_FOUND);
    tly_ahead_stop(a);
    tly_log_close(log);
    free(dir);
    tu_rmtree(data);
}
END_TEST

static Suite *consumers_suite(void)
{
    Suite *s = suite_create("consumers");
    TCase *views = tu_tcase(s, "views", 0);
    tu_add_tests(views, TU_TESTS(test_views_readonly_missing_creates_nothing,
                                 test_views_shard_mismatch_refused, test_views_sales_mode,
                                 test_views_commit_load_roundtrip, test_views_drop_old_docs,
                                 test_views_resident_bytes_edge, test_views_reopen_puts_edge,
                                 test_views_replaced_store_refused));
    TCase *consume = tu_tcase(s, "consume", 600);
    tu_add_tests(
        consume,
        TU_TESTS(test_consume_small_log, test_consume_corrupt_record_stops,
                 test_consume_refuses_views_ahead_of_log, test_consume_option_edges,
                 test_consume_restart_resumes_exactly_once, test_consume_kill9_resumes_exactly_once,
                 test_consume_full_map_at_commit_grows, test_consume_full_map_after_drops_reloads,
                 test_shards_give_identical_partner_views, test_consume_small_cache_same_views,
                 test_consume_refused_override_said_once, test_consume_memory_bound_commits_early,
                 test_shards_register_own_sales, test_seq_sales_in_s2_fold_on,
                 test_bench_fold_growth, test_bench_fold_growth_partners, test_ahead_peek_edges));
    TCase *live = tu_tcase(s, "live", 300);
    tu_add_tests(live, TU_TESTS(test_live_follow_ledger, test_remote_catch_up_through_log_read));
    TCase *faults = tu_tcase(s, "faults", 300);
    tu_add_tests(faults, TU_TESTS(test_follow_faulty_events_local, test_follow_faulty_events_remote,
                                  test_consume_tiny_batch_same_views));
    return s;
}

int main(void)
{
    return tu_run_suite(consumers_suite());
}
