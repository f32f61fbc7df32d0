/*
 * test_audit.c — `tally audit` (consumers/tly_audit.h, SPEC sections 3 and 7,
 * [D14], schemas/DIGEST.md) against real LMDB logs and view stores, mostly
 * through the real `tally` binary.
 *
 * Logs come from three sources: JSON events appended with tly_log_append
 * (known ids, controlled recorded_ms), the runtime's seeded generator
 * (tly_rtgen_build_log: every event type, partners in every shard), and a
 * raw LMDB writer below that builds logs with one deliberate fault each,
 * which tly_log_append would never write.
 *
 * `test_audit bench [EVENTS]` instead builds a log of EVENTS (default
 * 1,000,000) generated events and prints the verify and replay rates; it
 * asserts nothing about time.
 */
#include <check.h>
#include <jansson.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit_views.h"
#include "testutil.h"
#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_foldgen.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"

#define T0_MS INT64_C(1748736000000) /* 2025-06-01T00:00:00Z */
#define DAY_MS INT64_C(86400000)
#define GEN_SEED 7u

/* ------------------------------------------------------------------ helpers */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        abort(); /* also used by bench mode, outside any Check test */
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void make_dir(const char *path)
{
    ck_assert_msg(mkdir(path, 0755) == 0, "mkdir %s", path);
}

/* A sale event as JSON text with the given id and business time. */
static char *sale_json(const char *id, int64_t at_ms)
{
    char *s = malloc(256);
    snprintf(s, 256,
             "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"p-%s\","
             "\"sku\":\"sku-1\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}",
             id, (long long)at_ms, id);
    return s;
}

/* Appends JSON events to the log in log_dir with tly_log_append, all
 * recorded at now_ms. */
static void append_json(const char *log_dir, char **events, uint32_t n, int64_t now_ms)
{
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    tly_log_item *items = calloc(n, sizeof *items);
    msgpack_sbuffer *bufs = calloc(n, sizeof *bufs);
    for (uint32_t i = 0; i < n; i++) {
        json_t *j = json_loads(events[i], 0, NULL);
        ck_assert_ptr_nonnull(j);
        msgpack_sbuffer_init(&bufs[i]);
        ck_assert_int_eq(tly_json_event_to_mp(j, &bufs[i], NULL), TLY_OK);
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(bufs[i].data, bufs[i].size, now_ms, &ev, NULL), TLY_OK);
        items[i] = (tly_log_item){.source = {"test", 4},
                                  .id = ev.id,
                                  .event = (const uint8_t *)bufs[i].data,
                                  .event_len = bufs[i].size};
        json_decref(j);
    }
    tly_log_group g = {0, n, false};
    ck_assert_int_eq(tly_log_append(log, now_ms, items, n, &g, 1), TLY_OK);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq(items[i].err, TLY_OK);
        msgpack_sbuffer_destroy(&bufs[i]);
    }
    free(items);
    free(bufs);
    tly_log_close(log);
}

/* A data dir whose log holds n sales "S-0001".., one of them (seq
 * target_seq) with the id "TAMPER-TARGET", recorded at T0_MS. */
static char *sales_data(uint32_t n, uint32_t target_seq)
{
    char *data = tu_tmpdir();
    char *log_dir = join(data, "log");
    char **ev = calloc(n, sizeof *ev);
    for (uint32_t i = 0; i < n; i++) {
        char id[32];
        if (i + 1 == target_seq)
            snprintf(id, sizeof id, "TAMPER-TARGET");
        else
            snprintf(id, sizeof id, "S-%04u", i + 1);
        ev[i] = sale_json(id, T0_MS - DAY_MS);
    }
    append_json(log_dir, ev, n, T0_MS);
    for (uint32_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
    free(log_dir);
    return data;
}

/* A data dir with a generated log of `events` events. */
static char *gen_data(uint64_t events)
{
    char *data = tu_tmpdir();
    char *log_dir = join(data, "log");
    ck_assert_int_eq(tly_rtgen_build_log(log_dir, GEN_SEED, events), TLY_OK);
    free(log_dir);
    return data;
}

/* Runs `tally audit ARGS...` with stdout/stderr captured; returns the
 * exit code and the outputs (malloc'd, NUL-terminated) when asked. */
static int audit(char **out, char **err, const char *a1, const char *a2, const char *a3,
                 const char *a4, const char *a5, const char *a6, const char *a7)
{
    char *dir = tu_tmpdir();
    char *op = join(dir, "out"), *ep = join(dir, "err");
    char *const argv[] = {(char *)tu_tally(), "audit",    (char *)a1, (char *)a2, (char *)a3,
                          (char *)a4,         (char *)a5, (char *)a6, (char *)a7, NULL};
    int rc = tu_run(argv, NULL, op, ep);
    if (out)
        *out = tu_read_file(op, NULL);
    if (err)
        *err = tu_read_file(ep, NULL);
    free(op);
    free(ep);
    tu_rmtree(dir);
    return rc;
}

/* ------------------------------------------------------------------ verify */

START_TEST(verify_ok_json_log)
{
    char *data = sales_data(50, 7);
    char *out, *err;
    int rc = audit(&out, &err, "verify", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d, stderr: %s", rc, err);
    ck_assert_msg(strncmp(out, "ok: 50 records, head seq 50, head hash ", 39) == 0, "%s", out);
    /* The hash printed is the log's own head. */
    tly_log *log;
    char *log_dir = join(data, "log");
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_READ, &log), TLY_OK);
    uint64_t head;
    uint8_t hash[TLY_HASH_BYTES];
    char hex[2 * TLY_HASH_BYTES + 1];
    ck_assert_int_eq(tly_log_head(log, &head, hash), TLY_OK);
    tly_log_close(log);
    tly_hex_encode(hash, TLY_HASH_BYTES, hex);
    ck_assert_int_eq(strncmp(out + 39, hex, 64), 0);
    ck_assert_int_eq(out[39 + 64], '\n');
    /* Pinned: the events' bytes and recorded_ms are fixed, so the chain is
     * too. A change of the record or chain encoding shows here. */
    ck_assert_str_eq(hex, "e3da09e253705a5548966f79a1d6e8d96fea7c063139ca61fbc4c5ebfc6f1eb5");
    free(out);
    free(err);
    free(log_dir);
    tu_rmtree(data);
}
END_TEST

START_TEST(verify_ok_generated_log_json_output)
{
    char *data = gen_data(3000);
    char *out;
    ck_assert_int_eq(audit(&out, NULL, "verify", "--json", "--data", data, NULL, NULL, NULL), 0);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_true(json_object_get(j, "ok")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "records")), 3000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "head_seq")), 3000);
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "head_hash"))), 64);
    json_decref(j);
    free(out);
    tu_rmtree(data);
}
END_TEST

START_TEST(verify_missing_log_is_an_error)
{
    char *data = tu_tmpdir();
    char *err;
    ck_assert_int_eq(audit(NULL, &err, "verify", "--data", data, NULL, NULL, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "no log") != NULL, "%s", err);
    /* Nothing was created in the empty directory. */
    char *log_dir = join(data, "log");
    struct stat st;
    ck_assert_int_ne(stat(log_dir, &st), 0);
    free(err);
    free(log_dir);
    tu_rmtree(data);
}
END_TEST

/* Copies data/log/data.mdb into a fresh data dir (a file copy: the LMDB
 * file is self-contained; lock.mdb is recreated on open). */
static char *copy_data(const char *data)
{
    char *copy = tu_tmpdir();
    char *src_dir = join(data, "log"), *dst_dir = join(copy, "log");
    char *src = join(src_dir, "data.mdb"), *dst = join(dst_dir, "data.mdb");
    make_dir(dst_dir);
    size_t len;
    char *buf = tu_read_file(src, &len);
    ck_assert_ptr_nonnull(buf);
    ck_assert(tu_write_file(dst, buf, len));
    free(buf);
    free(src);
    free(dst);
    free(src_dir);
    free(dst_dir);
    return copy;
}

/* Replaces one byte inside the stored event whose id is `id`: the bytes
 * "\xa2id" <fixstr header> id are the event's "id" member (the idempotency
 * index stores the id after the source, without that prefix). */
static int tamper_event_id(const char *data, const char *id, char from, char to)
{
    char *log_dir = join(data, "log");
    char *path = join(log_dir, "data.mdb");
    size_t len, idlen = strlen(id);
    char *buf = tu_read_file(path, &len);
    char pat[80];
    memcpy(pat, "\xa2id", 3);
    pat[3] = (char)(0xa0 | idlen);
    memcpy(pat + 4, id, idlen);
    int hits = 0;
    for (size_t i = 0; i + 4 + idlen <= len; i++) {
        if (memcmp(buf + i, pat, 4 + idlen) != 0)
            continue;
        char *c = memchr(buf + i + 4, from, idlen);
        ck_assert_ptr_nonnull(c);
        *c = to;
        hits++;
    }
    ck_assert(tu_write_file(path, buf, len));
    free(buf);
    free(path);
    free(log_dir);
    return hits;
}

START_TEST(verify_names_a_tampered_event)
{
    char *data = sales_data(40, 23);
    char *copy = copy_data(data);
    /* Untouched, the copy verifies. */
    ck_assert_int_eq(audit(NULL, NULL, "verify", "--data", copy, NULL, NULL, NULL, NULL), 0);
    /* One byte of one event: "TAMPER-TARGET" becomes "TAMPER-XARGET", still a valid id. */
    ck_assert_int_ge(tamper_event_id(copy, "TAMPER-TARGET", 'T', 'X'), 1);
    char *out, *err;
    int rc = audit(&out, &err, "verify", "--data", copy, NULL, NULL, NULL, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "seq 23: hash mismatch") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);
    /* --json says the same. */
    rc = audit(&out, NULL, "verify", "--data", copy, "--json", NULL, NULL, NULL);
    ck_assert_int_eq(rc, 1);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert(json_is_false(json_object_get(j, "ok")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), 23);
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "hash mismatch");
    json_decref(j);
    free(out);
    /* The original is untouched and still verifies. */
    ck_assert_int_eq(audit(NULL, NULL, "verify", "--data", data, NULL, NULL, NULL, NULL), 0);
    tu_rmtree(copy);
    tu_rmtree(data);
}
END_TEST

/* ---- logs with one deliberate fault, written with raw LMDB ---- */

typedef enum fault {
    FAULT_NONE,
    FAULT_GAP,       /* the record at the fault seq is missing */
    FAULT_GARBAGE,   /* its value is not a record */
    FAULT_INNER_SEQ, /* the value says another seq than its key */
    FAULT_BAD_EVENT, /* chained correctly, but the event lacks "amount" */
    FAULT_MS_BACK,   /* recorded_ms goes back [D12] */
    FAULT_DUP_ID,    /* repeats the (source, id) of seq 1 */
    FAULT_FUTURE_AT, /* `at` more than a day after recorded_ms */
    FAULT_EXTRA_ID,  /* the index knows an id that no record holds */
} fault;

static void put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    int rc = mdb_put(txn, dbi, &key, &val, MDB_NOOVERWRITE);
    ck_assert_msg(rc == 0 || rc == MDB_KEYEXIST, "mdb_put: %s", mdb_strerror(rc));
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The event of seq s under fault f at fault_seq, as MessagePack. */
static void fault_event(uint64_t s, fault f, uint64_t fault_seq, int64_t rec_ms,
                        msgpack_sbuffer *out)
{
    char id[32], text[300];
    snprintf(id, sizeof id, "R-%llu",
             (unsigned long long)(f == FAULT_DUP_ID && s == fault_seq ? 1 : s));
    int64_t at = f == FAULT_FUTURE_AT && s == fault_seq ? rec_ms + 2 * DAY_MS : rec_ms - DAY_MS;
    if (f == FAULT_BAD_EVENT && s == fault_seq)
        snprintf(text, sizeof text,
                 "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,"
                 "\"partner\":\"p\",\"sku\":\"k\",\"qty\":1,\"currency\":\"USD\"}",
                 id, (long long)at);
    else {
        char *s2 = sale_json(id, at);
        snprintf(text, sizeof text, "%s", s2);
        free(s2);
    }
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_int_eq(tly_json_event_to_mp(j, out, NULL), TLY_OK);
    json_decref(j);
}

/* Writes one record (and its index entry) of a raw log. */
static void raw_record(MDB_txn *txn, MDB_dbi log, MDB_dbi ids, uint64_t s, fault f,
                       uint64_t fault_seq, uint8_t prev[TLY_HASH_BYTES])
{
    int64_t ms = T0_MS + (int64_t)s * 1000;
    if (f == FAULT_MS_BACK && s == fault_seq)
        ms = T0_MS; /* earlier than seq fault_seq - 1 */
    msgpack_sbuffer ev, rec;
    msgpack_sbuffer_init(&ev);
    msgpack_sbuffer_init(&rec);
    fault_event(s, f, fault_seq, ms, &ev);
    tly_str src = {"raw", 3};
    uint64_t inner = f == FAULT_INNER_SEQ && s == fault_seq ? s + 100 : s;
    uint8_t hash[TLY_HASH_BYTES], key[8], ikey[64];
    tly_chain_hash(prev, inner, ms, src, ev.data, ev.size, hash);
    ck_assert_int_eq(tly_record_encode(&rec, inner, ms, src, ev.data, ev.size, hash), TLY_OK);
    be64(key, s);
    if (f == FAULT_GARBAGE && s == fault_seq)
        put(txn, log, key, 8, "\xc1garbage", 8);
    else
        put(txn, log, key, 8, rec.data, rec.size);
    tly_event e;
    if (tly_event_decode(ev.data, ev.size, ms, &e, NULL) == TLY_OK ||
        (f == FAULT_FUTURE_AT && s == fault_seq)) {
        tly_str id = {NULL, 0};
        ck_assert_int_eq(tly_event_peek_id(ev.data, ev.size, &(tly_ev_type){0}, &id), TLY_OK);
        ikey[0] = 0;
        ikey[1] = 3;
        memcpy(ikey + 2, "raw", 3);
        memcpy(ikey + 5, id.ptr, id.len);
        put(txn, ids, ikey, 5 + id.len, key, 8);
    }
    memcpy(prev, hash, TLY_HASH_BYTES);
    msgpack_sbuffer_destroy(&ev);
    msgpack_sbuffer_destroy(&rec);
}

/* A data dir whose log has `count` sales chained as the ledger would, but
 * with fault f at seq fault_seq. */
static char *raw_data(uint64_t count, fault f, uint64_t fault_seq)
{
    char *data = tu_tmpdir();
    char *log_dir = join(data, "log");
    make_dir(log_dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log, ids;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, (size_t)64 << 20), 0); /* a few thousand records */
    ck_assert_int_eq(mdb_env_open(env, log_dir, MDB_NOSYNC, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "log", MDB_CREATE, &log), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "ids", MDB_CREATE, &ids), 0);
    uint8_t prev[TLY_HASH_BYTES] = {0};
    for (uint64_t s = 1; s <= count; s++)
        if (!(f == FAULT_GAP && s == fault_seq))
            raw_record(txn, log, ids, s, f, fault_seq, prev);
    if (f == FAULT_EXTRA_ID) {
        uint8_t seq[8];
        be64(seq, fault_seq);
        put(txn, ids, "\0\3rawGHOST", 10, seq, 8);
    }
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(log_dir);
    return data;
}

/* Verifies in process; returns the verdict. */
static tly_audit_verdict verify_dir(const char *data)
{
    char *log_dir = join(data, "log");
    tly_audit_verdict v;
    ck_assert_int_eq(tly_audit_verify(log_dir, NULL, NULL, &v), TLY_OK);
    free(log_dir);
    return v;
}

static const struct {
    fault f;
    const char *error; /* start of the verdict's reason */
} fault_cases[] = {
    {FAULT_GAP, "missing (gap: the next stored seq is 6)"},
    {FAULT_GARBAGE, "record does not decode"},
    {FAULT_INNER_SEQ, "record says seq 105"},
    {FAULT_BAD_EVENT, "event invalid: missing_field amount"},
    {FAULT_MS_BACK, "recorded_ms 1748736000000 is before the previous 1748736004000"},
    {FAULT_DUP_ID, "(source, id) is also at seq 1 (duplicate id)"},
    {FAULT_FUTURE_AT, "event invalid: bad_field at"},
};

START_TEST(verify_names_each_fault)
{
    /* The raw writer itself writes a log that verifies. */
    char *good = raw_data(9, FAULT_NONE, 0);
    tly_audit_verdict v = verify_dir(good);
    ck_assert_msg(v.ok, "%s", v.error);
    ck_assert_uint_eq(v.records, 9);
    tu_rmtree(good);

    char *data = raw_data(9, fault_cases[_i].f, 5);
    v = verify_dir(data);
    ck_assert(!v.ok);
    ck_assert_uint_eq(v.bad_seq, 5);
    ck_assert_uint_eq(v.records, 4);
    ck_assert_uint_eq(v.head_seq, 4);
    ck_assert_msg(strncmp(v.error, fault_cases[_i].error, strlen(fault_cases[_i].error)) == 0,
                  "case %d: %s", _i, v.error);
    /* Through the binary: exit 1 and the seq on stderr. */
    char *err;
    ck_assert_int_eq(audit(NULL, &err, "verify", "--data", data, NULL, NULL, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "seq 5: ") != NULL, "%s", err);
    free(err);
    tu_rmtree(data);
}
END_TEST

/* verify checks batches of TLY_AUDIT_VERIFY_BATCH_RECORDS records on
 * several threads: a fault on either side of a batch boundary, or deep in
 * the log, gets the verdict of the single pass (the reason as for seq 5
 * above, with the seqs it names moved along). */
START_TEST(verify_names_each_fault_past_the_first_batches)
{
    const uint64_t b = TLY_AUDIT_VERIFY_BATCH_RECORDS;
    const uint64_t at[] = {b, b + 1, 2 * b + 1, 5 * b - 7};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        uint64_t s = at[k];
        char want[TLY_AUDIT_ERROR_BYTES];
        snprintf(want, sizeof want, "%s", fault_cases[_i].error);
        if (fault_cases[_i].f == FAULT_GAP)
            snprintf(want, sizeof want, "missing (gap: the next stored seq is %llu)",
                     (unsigned long long)s + 1);
        if (fault_cases[_i].f == FAULT_INNER_SEQ)
            snprintf(want, sizeof want, "record says seq %llu", (unsigned long long)s + 100);
        if (fault_cases[_i].f == FAULT_MS_BACK)
            snprintf(want, sizeof want, "recorded_ms %lld is before the previous %lld",
                     (long long)T0_MS, (long long)(T0_MS + (int64_t)(s - 1) * 1000));
        char *data = raw_data(5 * b + 100, fault_cases[_i].f, s);
        tly_audit_verdict v = verify_dir(data);
        ck_assert(!v.ok);
        ck_assert_uint_eq(v.bad_seq, s);
        ck_assert_uint_eq(v.records, s - 1);
        ck_assert_uint_eq(v.head_seq, s - 1);
        ck_assert_msg(strncmp(v.error, want, strlen(want)) == 0, "case %d at %llu: %s", _i,
                      (unsigned long long)s, v.error);
        tu_rmtree(data);
    }
}
END_TEST

/* Two faults in different batches: the first in seq order is the verdict,
 * whichever thread finishes first; the head is the record before it. */
START_TEST(verify_names_the_first_of_two_faults)
{
    const uint64_t b = TLY_AUDIT_VERIFY_BATCH_RECORDS;
    char *data = raw_data(6 * b, FAULT_BAD_EVENT, 5 * b + 3);
    char id[32];
    snprintf(id, sizeof id, "R-%llu", (unsigned long long)(2 * b + 9));
    ck_assert_int_eq(tamper_event_id(data, id, 'R', 'X'), 1); /* a hash mismatch */
    tly_audit_verdict v = verify_dir(data);
    ck_assert(!v.ok);
    ck_assert_uint_eq(v.bad_seq, 2 * b + 9);
    ck_assert_str_eq(v.error, "hash mismatch");
    ck_assert_uint_eq(v.records, 2 * b + 8);
    ck_assert_uint_eq(v.head_seq, 2 * b + 8);
    char *err;
    ck_assert_int_eq(audit(NULL, &err, "verify", "--data", data, NULL, NULL, NULL, NULL), 1);
    char want[96];
    snprintf(want, sizeof want, "tally audit verify: seq %llu: hash mismatch\n",
             (unsigned long long)(2 * b + 9));
    ck_assert_str_eq(err, want);
    free(err);
    tu_rmtree(data);
}
END_TEST

START_TEST(verify_counts_the_index)
{
    char *data = raw_data(9, FAULT_EXTRA_ID, 3);
    tly_audit_verdict v = verify_dir(data);
    ck_assert(!v.ok);
    ck_assert_uint_eq(v.bad_seq, 0);
    ck_assert_uint_eq(v.records, 9);
    ck_assert_str_eq(v.error, "idempotency index holds 10 entries for 9 records");
    char *err;
    ck_assert_int_eq(audit(NULL, &err, "verify", "--data", data, NULL, NULL, NULL, NULL), 1);
    ck_assert_str_eq(err, "tally audit verify: idempotency index holds 10 entries for 9 "
                          "records\n");
    free(err);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ export */

/* Standard base64 decoding, written here so that the test does not lean on
 * the code it checks. Returns the decoded length, or -1. */
static long b64_decode(const char *s, uint8_t *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(s), n = 0;
    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t acc = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *p = s[i + k] == '=' ? NULL : strchr(alphabet, s[i + k]);
            if (s[i + k] == '=')
                pad++;
            else if (!p || !s[i + k] || pad)
                return -1;
            acc = acc << 6 | (uint32_t)(p ? p - alphabet : 0);
        }
        out[n++] = (uint8_t)(acc >> 16);
        if (pad < 2)
            out[n++] = (uint8_t)(acc >> 8);
        if (pad < 1)
            out[n++] = (uint8_t)acc;
    }
    return (long)n;
}

/* The chain step of SPEC section 3 with a stock SHA-256. */
static void chain_step(uint8_t h[32], uint64_t seq, int64_t ms, const char *src, const uint8_t *ev,
                       size_t ev_len)
{
    uint8_t buf[16 + 2 + 64];
    size_t sl = strlen(src);
    be64(buf, seq);
    be64(buf + 8, (uint64_t)ms);
    buf[16] = (uint8_t)(sl >> 8);
    buf[17] = (uint8_t)sl;
    memcpy(buf + 18, src, sl);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n;
    ck_assert(EVP_DigestInit_ex(md, EVP_sha256(), NULL));
    ck_assert(EVP_DigestUpdate(md, h, 32) && EVP_DigestUpdate(md, buf, 18 + sl));
    ck_assert(EVP_DigestUpdate(md, ev, ev_len) && EVP_DigestFinal_ex(md, h, &n));
    EVP_MD_CTX_free(md);
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* Checks one export line's keys, in order, and folds it into the chain. */
static void check_export_line(json_t *j, uint64_t want_seq, uint8_t h[32], uint8_t *evbuf)
{
    static const char *const keys[] = {"seq",  "recorded_ms", "source",
                                       "hash", "event_b64",   "event"};
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        ck_assert_uint_lt(k, 6);
        ck_assert_str_eq(key, keys[k++]);
    }
    ck_assert_uint_eq(k, 6);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), (json_int_t)want_seq);
    long n = b64_decode(json_string_value(json_object_get(j, "event_b64")), evbuf);
    ck_assert_int_gt(n, 0);
    chain_step(h, want_seq, json_integer_value(json_object_get(j, "recorded_ms")),
               json_string_value(json_object_get(j, "source")), evbuf, (size_t)n);
    char hex[65];
    to_hex(h, 32, hex);
    ck_assert_str_eq(hex, json_string_value(json_object_get(j, "hash")));
    ck_assert(json_is_object(json_object_get(j, "event")));
}

START_TEST(export_recomputes_to_verify_head)
{
    char *data = gen_data(2000);
    char *out, *vout;
    ck_assert_int_eq(audit(&out, NULL, "export", "--data", data, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(audit(&vout, NULL, "verify", "--data", data, "--json", NULL, NULL, NULL), 0);
    uint8_t h[32] = {0}, *evbuf = malloc(1 << 20);
    uint64_t seq = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j != NULL, "line %llu is not JSON", (unsigned long long)seq + 1);
        check_export_line(j, ++seq, h, evbuf);
        json_decref(j);
    }
    ck_assert_uint_eq(seq, 2000);
    json_t *v = json_loads(vout, 0, NULL);
    char hex[65];
    to_hex(h, 32, hex);
    ck_assert_str_eq(hex, json_string_value(json_object_get(v, "head_hash")));
    json_decref(v);
    free(evbuf);
    free(out);
    free(vout);
    tu_rmtree(data);
}
END_TEST

START_TEST(export_range)
{
    char *data = sales_data(30, 1);
    char *out;
    ck_assert_int_eq(audit(&out, NULL, "export", "--data", data, "--from", "10", "--to", "20"), 0);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), 10 + lines);
        json_t *ev = json_object_get(j, "event");
        ck_assert_str_eq(json_string_value(json_object_get(ev, "type")), "sale");
        ck_assert_int_eq(json_integer_value(json_object_get(ev, "amount")), 100000);
        json_decref(j);
        lines++;
    }
    ck_assert_int_eq(lines, 11);
    free(out);
    /* Past the head: nothing, successfully. */
    ck_assert_int_eq(audit(&out, NULL, "export", "--data", data, "--from", "31", NULL, NULL), 0);
    ck_assert_str_eq(out, "");
    free(out);
    ck_assert_int_eq(audit(NULL, NULL, "export", "--data", data, "--from", "x", NULL, NULL), 2);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ replay and digest */

/* The stdout of `tally audit replay` into data/name with the given shards,
 * which must succeed. */
static char *replay(const char *data, const char *name, const char *shards, const char *x1,
                    const char *x2)
{
    char *out_dir = join(data, name), *out, *err;
    int rc = x1 ? audit(&out, &err, "replay", "--data", data, "--out", out_dir, x1, x2)
                : audit(&out, &err, "replay", "--data", data, "--out", out_dir, "--shards", shards);
    ck_assert_msg(rc == 0, "replay %s: exit %d: %s", name, rc, err);
    free(err);
    free(out_dir);
    return out;
}

/* A replay of data on one shard with --timing: its digests, and the
 * counts its timing line gives (folds resumed after a full map, commits). */
static char *replay_timed(const char *data, const char *name, unsigned *resumed, unsigned *commits)
{
    char *out_dir = join(data, name), *out, *err;
    int rc = audit(&out, &err, "replay", "--data", data, "--out", out_dir, "--timing", NULL);
    ck_assert_msg(rc == 0, "replay %s: exit %d: %s", name, rc, err);
    const char *line = strstr(err, "shard(s); ");
    ck_assert_msg(line != NULL &&
                      sscanf(line, "shard(s); %u fold(s) resumed after a full map; %u commit(s)",
                             resumed, commits) == 2,
                  "%s", err);
    free(err);
    free(out_dir);
    return out;
}

/* The line of a digest output that starts with `family `. */
static char *digest_line(const char *text, const char *family)
{
    size_t n = strlen(family);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, family, n) == 0 && p[n] == ' ')
            return strndup(p, strcspn(p, "\n"));
    ck_abort_msg("no %s line in: %s", family, text);
    return NULL;
}

/* A replay that commits every 97 records with a cache of 5 partners reads
 * most partners back after every commit, as a consumer does, and with
 * TALLY_CONSUME_READ_SPLIT_MIN=1 a second thread decodes half of every
 * read-back (tly_helper_read_back): the digests are those of a replay
 * that holds everything, on 1 shard and on 2. */
START_TEST(replay_split_read_back_same_digests)
{
    char *data = gen_data(3000);
    char *want = replay(data, "r-plain", "1", NULL, NULL);
    setenv("TALLY_ENGINE_CACHE_ENTRIES", "5", 1);
    setenv("TALLY_AUDIT_REPLAY_BATCH_RECORDS", "97", 1);
    setenv("TALLY_CONSUME_READ_SPLIT_MIN", "1", 1);
    char *one = replay(data, "r-split1", "1", NULL, NULL);
    char *two = replay(data, "r-split2", "2", NULL, NULL);
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    unsetenv("TALLY_AUDIT_REPLAY_BATCH_RECORDS");
    unsetenv("TALLY_CONSUME_READ_SPLIT_MIN");
    ck_assert_str_eq(one, want);
    ck_assert_str_eq(two, want);
    free(one);
    free(two);
    free(want);
    free(data);
}
END_TEST

/* A replay bounds its memory as a consumer does (its flushes drop the
 * partners they write beyond the cache), so a commit that meets the end of
 * the view store's map after a drop cannot be redone: the shard is loaded
 * again from its last commit and folds on from there, to the digests of a
 * replay that never met it. A cache of 5 makes nearly every partner a
 * drop; a 128 KiB map makes the commits meet its end, and the --timing
 * line counts the resumed folds. */
START_TEST(replay_full_map_after_drops_resumes)
{
    char *data = gen_data(3000);
    char *want = replay(data, "r-plain", "1", NULL, NULL);
    setenv("TALLY_VIEWS_MAP_INIT_BYTES", "131072", 1);
    setenv("TALLY_ENGINE_CACHE_ENTRIES", "5", 1);
    unsigned resumed = 0, commits = 0;
    char *got = replay_timed(data, "r-tiny", &resumed, &commits);
    unsetenv("TALLY_VIEWS_MAP_INIT_BYTES");
    unsetenv("TALLY_ENGINE_CACHE_ENTRIES");
    ck_assert_str_eq(got, want);
    ck_assert_uint_gt(resumed, 0);
    free(got);
    free(want);
    free(data);
}
END_TEST

/* A replay ends a batch at the consumers' memory bound (tly_helper_bound)
 * as a consumer does, checked with the stores' release every
 * TLY_CONSUME_VIEWS_RELEASE_RECORDS records: with a bound of one byte
 * every batch ends at its first check, and the digests are those of a
 * replay in one batch, on one shard and on two. A batch ended early ends
 * there: the next counts its records afresh, so with batches of 3,000
 * records they still end at every check (before, they were counted from
 * the log's start and a short batch followed each early one). */
START_TEST(replay_memory_bound_commits_early)
{
    const unsigned events = 3 * TLY_CONSUME_VIEWS_RELEASE_RECORDS + 856;
    char *data = gen_data(events);
    unsigned resumed = 0, commits = 0;
    char *want = replay_timed(data, "r-plain", &resumed, &commits);
    ck_assert_uint_eq(commits, 1);
    setenv("TALLY_CONSUME_ANON_BYTES", "1", 1);
    char *bound = replay_timed(data, "r-bound", &resumed, &commits);
    ck_assert_uint_eq(commits, events / TLY_CONSUME_VIEWS_RELEASE_RECORDS + 1);
    setenv("TALLY_AUDIT_REPLAY_BATCH_RECORDS", "3000", 1);
    char *both = replay_timed(data, "r-both", &resumed, &commits);
    ck_assert_uint_eq(commits, events / TLY_CONSUME_VIEWS_RELEASE_RECORDS + 1);
    char *two = replay(data, "r-two", "2", NULL, NULL);
    unsetenv("TALLY_CONSUME_ANON_BYTES");
    char *batches = replay_timed(data, "r-batches", &resumed, &commits);
    unsetenv("TALLY_AUDIT_REPLAY_BATCH_RECORDS");
    ck_assert_uint_eq(commits, (events + 2999) / 3000);
    ck_assert_str_eq(bound, want);
    ck_assert_str_eq(both, want);
    ck_assert_str_eq(two, want);
    ck_assert_str_eq(batches, want);
    free(bound);
    free(both);
    free(two);
    free(batches);
    free(want);
    free(data);
}
END_TEST

START_TEST(digest_does_not_depend_on_shards)
{
    char *data = gen_data(3000);
    char *d1 = replay(data, "r1", "1", NULL, NULL);
    char *d2 = replay(data, "r2", "2", NULL, NULL);
    char *d4 = replay(data, "r4", "4", NULL, NULL);
    ck_assert_msg(strncmp(d1, "seq 3000\nmdf ", 13) == 0, "%s", d1);
    ck_assert_str_eq(d1, d2);
    ck_assert_str_eq(d1, d4);
    /* Seven lines: seq and six families, each a 64-digit digest. */
    int lines = 0;
    for (const char *p = d1; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ck_assert_int_eq(lines, 7);
    /* `audit digest` of a replay's directory prints the same bytes, its
     * families walked on one thread or on one thread each. */
    char *r2 = join(data, "r2"), *dd;
    ck_assert_int_eq(audit(&dd, NULL, "digest", "--views", r2, NULL, NULL, NULL, NULL), 0);
    ck_assert_str_eq(dd, d1);
    free(dd);
    char threads[16];
    snprintf(threads, sizeof threads, "%u", TLY_AUDIT_FAMILY_THREADS_MAX);
    const char *each[] = {"1", threads};
    for (int i = 0; i < 2; i++) {
        setenv("TALLY_AUDIT_FAMILY_THREADS", each[i], 1);
        ck_assert_int_eq(audit(&dd, NULL, "digest", "--views", r2, NULL, NULL, NULL, NULL), 0);
        unsetenv("TALLY_AUDIT_FAMILY_THREADS");
        ck_assert_str_eq(dd, d1);
        free(dd);
    }
    free(r2);
    /* The digest sees the figures: a shorter replay differs, in every family
     * that changed, while the seq line says where it stopped. */
    char *half = join(data, "half"), *dh;
    ck_assert_int_eq(audit(&dh, NULL, "replay", "--data", data, "--out", half, "--to", "1500"), 0);
    ck_assert(strncmp(dh, "seq 1500\n", 9) == 0);
    char *a = digest_line(d1, "mdf"), *b = digest_line(dh, "mdf");
    ck_assert_str_ne(a, b);
    free(a);
    free(b);
    free(half);
    free(dh);
    free(d1);
    free(d2);
    free(d4);
    tu_rmtree(data);
}
END_TEST

START_TEST(replay_answers_queries_and_refuses_a_used_out)
{
    char *data = gen_data(2000);
    char *d2 = replay(data, "r2", "2", NULL, NULL);
    free(d2);
    /* `tally balance --views DIR` answers from the replay. */
    char name[32], *r2 = join(data, "r2"), *out, *err;
    tly_rtgen_partner_name(0, name, sizeof name);
    char *dir = tu_tmpdir();
    char *op = join(dir, "out");
    char *const argv[] = {(char *)tu_tally(), "balance", name, "--json", "--views", r2, NULL};
    ck_assert_int_eq(tu_run(argv, NULL, op, NULL), 0);
    out = tu_read_file(op, NULL);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(j, "partner")), name);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), 2000);
    json_decref(j);
    free(out);
    free(op);
    tu_rmtree(dir);
    /* A second replay into the same place is refused; nothing is touched. */
    ck_assert_int_eq(audit(NULL, &err, "replay", "--data", data, "--out", r2, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "already holds views") != NULL, "%s", err);
    free(err);
    ck_assert_int_eq(audit(NULL, NULL, "digest", "--views", r2, NULL, NULL, NULL, NULL), 0);
    /* Usage errors. */
    ck_assert_int_eq(audit(NULL, NULL, "replay", "--data", data, NULL, NULL, NULL, NULL), 2);
    ck_assert_int_eq(audit(NULL, NULL, "replay", "--out", r2, "--shards", "0", NULL, NULL), 2);
    ck_assert_int_eq(audit(NULL, NULL, "replay", "--out", r2, "--until", "yesterday", NULL, NULL),
                     2);
    free(r2);
    tu_rmtree(data);
}
END_TEST

/* A program of one tier at `bps`, version `version`, as JSON text. */
static char *program_json(const char *id, int version, int bps, int64_t at_ms)
{
    char *s = malloc(512);
    snprintf(s, 512,
             "{\"type\":\"program\",\"id\":\"%s\",\"at\":%lld,\"program\":\"apex\","
             "\"version\":%d,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":"
             "[{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":%d}],"
             "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
             "\"mdf_expiry_periods\":4,\"tier_window_periods\":2}",
             id, (long long)at_ms, version, bps);
    return s;
}

/* `tally balance P --json --views DIR`'s "accrued". */
static long long accrued_in(const char *views, const char *partner)
{
    char *dir = tu_tmpdir(), *op = join(dir, "out");
    char *const argv[] = {(char *)tu_tally(), "balance", (char *)partner, "--json", "--views",
                          (char *)views,      NULL};
    ck_assert_int_eq(tu_run(argv, NULL, op, NULL), 0);
    char *out = tu_read_file(op, NULL);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    long long v = (long long)json_integer_value(json_object_get(j, "accrued"));
    json_decref(j);
    free(out);
    free(op);
    tu_rmtree(dir);
    return v;
}

START_TEST(replay_what_if_replaces_a_programs_rules)
{
    /* apex v1 at 100 bps, two sales of 1,000.00; v2 at 300 bps, one more. */
    char *data = tu_tmpdir(), *log_dir = join(data, "log");
    int64_t at = T0_MS - 10 * DAY_MS;
    char partner[256], sales[3][256];
    snprintf(partner, sizeof partner,
             "{\"type\":\"partner\",\"id\":\"E1\",\"at\":%lld,\"partner\":\"p-A\","
             "\"name\":\"A\",\"program\":\"apex\",\"kind\":\"var\"}",
             (long long)at);
    for (int i = 0; i < 3; i++)
        snprintf(sales[i], sizeof sales[i],
                 "{\"type\":\"sale\",\"id\":\"S%d\",\"at\":%lld,\"partner\":\"p-A\","
                 "\"sku\":\"sku-1\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}",
                 i, (long long)at);
    char *ev[] = {
        program_json("P1", 1, 100, at), strdup(partner), strdup(sales[0]), strdup(sales[1]),
        program_json("P2", 2, 300, at), strdup(sales[2])};
    append_json(log_dir, ev, 6, T0_MS);
    char *plain = replay(data, "plain", "1", NULL, NULL);
    char *views = join(data, "plain");
    /* 100000 x 1% twice, then x 3% [the rules in force at each sale] */
    ck_assert_int_eq(accrued_in(views, "p-A"), 1000 + 1000 + 3000);
    free(views);
    /* What-if: apex at 5% from the first event on; v2 is skipped. */
    char *file = join(data, "what-if.json"), *rules = program_json("X", 1, 500, at);
    ck_assert(tu_write_file(file, rules, strlen(rules)));
    char *wi = join(data, "wi"), *out, *err;
    int rc = audit(&out, &err, "replay", "--data", data, "--out", wi, "--program", file);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_int_eq(accrued_in(wi, "p-A"), 3 * 5000);
    /* The log itself is unchanged: an ordinary replay still gives 5000. */
    ck_assert_str_ne(out, plain);
    free(out);
    free(err);
    /* A file that is not a program event is refused with its reason. */
    char *bad = join(data, "bad.json"), *wi2 = join(data, "wi2");
    ck_assert(tu_write_file(bad, ev[2], strlen(ev[2])));
    ck_assert_int_eq(audit(NULL, &err, "replay", "--data", data, "--out", wi2, "--program", bad),
                     1);
    ck_assert_msg(strstr(err, "program") != NULL, "%s", err);
    free(err);
    free(bad);
    free(wi2);
    free(wi);
    free(rules);
    free(file);
    free(plain);
    for (int i = 0; i < 6; i++)
        free(ev[i]);
    free(log_dir);
    tu_rmtree(data);
}
END_TEST

START_TEST(replay_until_cuts_by_recorded_time)
{
    /* 20 sales recorded on 2025-06-01, 15 more on 2025-06-11. */
    char *data = tu_tmpdir(), *log_dir = join(data, "log");
    char *ev[20];
    for (int batch = 0; batch < 2; batch++) {
        int n = batch ? 15 : 20;
        int64_t now = T0_MS + batch * 10 * DAY_MS;
        for (int i = 0; i < n; i++) {
            char id[32];
            snprintf(id, sizeof id, "U-%d-%02d", batch, i);
            ev[i] = sale_json(id, now - DAY_MS);
        }
        append_json(log_dir, ev, (uint32_t)n, now);
        for (int i = 0; i < n; i++)
            free(ev[i]);
    }
    char *cut = replay(data, "cut", "1", "--until", "2025-06-05T00:00:00Z");
    ck_assert_msg(strncmp(cut, "seq 20\n", 7) == 0, "%s", cut);
    char *all = replay(data, "all", "1", "--until", "2025-06-11");
    ck_assert_msg(strncmp(all, "seq 35\n", 7) == 0, "%s", all);
    /* before the first record there is nothing to replay: exit 1, said so */
    char *none_dir = join(data, "none"), *none = NULL, *err = NULL;
    ck_assert_int_eq(
        audit(&none, &err, "replay", "--data", data, "--out", none_dir, "--until", "2025-05-31"),
        1);
    ck_assert_msg(strstr(err, "before the log's first record") != NULL, "%s", err);
    free(err);
    /* ... and leaves nothing in --out: its empty stores refused the next
     * replay there ("already holds views"). */
    ck_assert_int_ne(access(none_dir, F_OK), 0);
    free(none);
    none = NULL;
    err = NULL;
    ck_assert_int_eq(
        audit(&none, &err, "replay", "--data", data, "--out", none_dir, "--until", "2025-06-11"),
        0);
    ck_assert_msg(strncmp(none, "seq 35\n", 7) == 0, "%s", none);
    free(err);
    free(none_dir);
    /* Sales of partners never enrolled are held: the exceptions differ. */
    char *a = digest_line(cut, "exceptions"), *b = digest_line(all, "exceptions");
    ck_assert_str_ne(a, b);
    free(a);
    free(b);
    free(cut);
    free(all);
    free(none);
    free(log_dir);
    tu_rmtree(data);
}
END_TEST

/* A data dir whose log holds the conformance vectors (tests/vectors), sent
 * record by record as their sources would: resends come back as dups and
 * are not appended. */
static char *vector_data(void)
{
    char *path = tu_vector("seed101-events.jsonl");
    char *text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    char *data = tu_tmpdir(), *log_dir = join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    int64_t now = tly_now_ms();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *rec = json_loads(line, 0, NULL);
        const char *src = json_string_value(json_object_get(rec, "source"));
        msgpack_sbuffer mp;
        msgpack_sbuffer_init(&mp);
        ck_assert_int_eq(tly_json_event_to_mp(json_object_get(rec, "event"), &mp, NULL), TLY_OK);
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(mp.data, mp.size, now, &ev, NULL), TLY_OK);
        tly_log_item it = {.source = {src, (uint32_t)strlen(src)},
                           .id = ev.id,
                           .event = (const uint8_t *)mp.data,
                           .event_len = mp.size};
        tly_log_group g = {0, 1, false};
        ck_assert_int_eq(tly_log_append(log, now, &it, 1, &g, 1), TLY_OK);
        ck_assert_int_eq(it.err, TLY_OK);
        msgpack_sbuffer_destroy(&mp);
        json_decref(rec);
    }
    tly_log_close(log);
    free(log_dir);
    free(text);
    free(path);
    return data;
}

/* The sales mode a store under dir records ("M/sales"), malloc'd; NULL when
 * it records none (every sale registered). */
static char *store_sales_mode(const char *dir, const char *shard)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, shard);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
    ck_assert_msg(mdb_env_open(env, path, MDB_RDONLY, 0644) == 0, "%s", path);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "views", 0, &dbi), 0);
    MDB_val k = {strlen("M/sales"), "M/sales"}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    ck_assert(rc == 0 || rc == MDB_NOTFOUND);
    char *mode = rc == 0 ? strndup(v.mv_data, v.mv_size) : NULL;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return mode;
}

START_TEST(vector_digests_do_not_depend_on_shards)
{
    char *data = vector_data();
    char *d1 = replay(data, "r1", "1", NULL, NULL);
    ck_assert_msg(strncmp(d1, "seq 3074\n", 9) == 0, "%s", d1);
    /* Shard counts that split the vector partners every which way. */
    static const char *const counts[] = {"2", "3", "5", "16"};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%s", counts[i]);
        char *dn = replay(data, name, counts[i], NULL, NULL);
        ck_assert_msg(strcmp(dn, d1) == 0, "%s shards:\n%s\n1 shard:\n%s", counts[i], dn, d1);
        free(dn);
    }
    /* Each shard stored its own partners' sales only, as a consumer beside
     * the log does, and read the others' from the log (the vectors return
     * sales of every partner, so the digests above are of that path). */
    char *r16 = join(data, "r16");
    for (int k = 0; k < 16; k++) {
        char shard[16];
        snprintf(shard, sizeof shard, "%d-of-16", k);
        char *mode = store_sales_mode(r16, shard);
        ck_assert_msg(mode && strcmp(mode, "own/Z") == 0, "%s: %s", shard, mode ? mode : "(none)");
        free(mode);
    }
    free(r16);
    /* The vectors raise exceptions: the family is not empty. */
    char *x = digest_line(d1, "exceptions");
    ck_assert_str_ne(x, "exceptions "
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(x);
    free(d1);
    tu_rmtree(data);
}
END_TEST

/* The partner families' lines of a digest output are want's: each of
 * "mdf", "rebates", "tiers" and "claims" with its 64 hex digits. */
static void expect_partner_digests(const char *out, const char *const want[4], const char *what)
{
    static const char *const families[] = {"mdf", "rebates", "tiers", "claims"};
    for (int f = 0; f < 4; f++) {
        char *line = digest_line(out, families[f]);
        ck_assert_msg(strcmp(line + strlen(families[f]) + 1, want[f]) == 0, "%s: %s, pinned %s",
                      what, line, want[f]);
        free(line);
    }
}

/* The partner families' digests are those the jansson path gave (commit
 * 41d3d0c: each document rendered as text, read back with json_loadb and
 * written with json_dumps(JSON_COMPACT | JSON_SORT_KEYS)), now that the
 * canonical text is rendered straight from the state
 * (tly_view_reader_canonical): of the vectors on one shard, and of a
 * generated log (every event type) on two, released after every item. */
START_TEST(partner_digests_pinned)
{
    static const char *const vectors[4] = {
        "a372ea342e4d5b0113a598fae698fe6b7ef00f5e1ddd202c595e2c7504b7f8a2",
        "3f670a4533ded95b4281cbac715074ef65cc2ef825eca8edce1fa5ee0810a120",
        "9b6ded6abadd777b8b93c1e1b3539d654b37fa76cb4dfafeb185527064e358fe",
        "1030d8e38d0a24fcc2adfb0a24ec286ed94fe79eec521e655692a3dc3e687f77"};
    static const char *const generated[4] = {
        "7fde58c73618893d95ba656ddce039750d6243263b8dda71c203997f06a23ca1",
        "9072e1406a7d1fd9e667c31c11032ab180c5b5b660bc76941c76c47d57e87eb3",
        "b32cd5f453dee87e0e13d16b8e121de53178834d789fb308cdea2d8c0e581ae5",
        "153cd92a7e6ed8902b7a57b671ababfc4f2d5ab12a7cbe54a9da0c05016ee6af"};
    char *data = vector_data();
    char *out = replay(data, "r1", "1", NULL, NULL);
    expect_partner_digests(out, vectors, "vectors");
    free(out);
    tu_rmtree(data);
    data = gen_data(3000);
    out = replay(data, "r2", "2", NULL, NULL);
    char *r2 = join(data, "r2"), *again;
    setenv("TALLY_AUDIT_RELEASE_ITEMS", "1", 1);
    ck_assert_int_eq(audit(&again, NULL, "digest", "--views", r2, NULL, NULL, NULL, NULL), 0);
    unsetenv("TALLY_AUDIT_RELEASE_ITEMS");
    ck_assert_str_eq(again, out);
    expect_partner_digests(out, generated, "generated");
    free(again);
    free(r2);
    free(out);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ diff */

/* Folds the log of data into live views with real consumers (shards 0..n-1
 * of n, each exiting at the head). */
static void consume_all(const char *data, int n)
{
    for (int k = 0; k < n; k++) {
        char shard[32];
        snprintf(shard, sizeof shard, "%d/%d", k, n);
        char *const argv[] = {(char *)tu_tally(), "consume", "--data",         (char *)data,
                              "--shard",          shard,     "--exit-at-head", NULL};
        ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    }
}

/* Opens a live shard store for writing with raw LMDB. */
static void open_store(const char *data, const char *shard, MDB_env **env, MDB_txn **txn,
                       MDB_dbi *dbi)
{
    char path[512];
    snprintf(path, sizeof path, "%s/views/%s", data, shard);
    ck_assert_int_eq(mdb_env_create(env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(*env, 4), 0);
    ck_assert_int_eq(mdb_env_open(*env, path, 0, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(*env, NULL, 0, txn), 0);
    ck_assert_int_eq(mdb_dbi_open(*txn, "views", 0, dbi), 0);
}

/* The stored state of an owned partner (engine_records.c): its owned flag
 * and its live buckets, each [period, remaining]. */
#define REC_OWNED 3
#define REC_BUCKETS 18

/* Adds 1 to the first live bucket of the first owned partner with one in
 * a shard's stored state, so its balance document (rendered from that
 * state) says 1 more "available"; returns the partner's id (malloc'd). */
static char *corrupt_balance(const char *data, const char *shard)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    open_store(data, shard, &env, &txn, &dbi);
    ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k = {4, "S/4/"}, v;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_object *rem = NULL;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && rem == NULL; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ck_assert(k.mv_size > 4 && memcmp(k.mv_data, "S/4/", 4) == 0);
        ck_assert_int_eq(msgpack_unpack_next(&u, v.mv_data, v.mv_size, NULL),
                         MSGPACK_UNPACK_SUCCESS);
        const msgpack_object_array *rec = &u.data.via.array;
        if (rec->size <= REC_BUCKETS || !rec->ptr[REC_OWNED].via.boolean ||
            rec->ptr[REC_BUCKETS].via.array.size == 0)
            continue;
        rem = &rec->ptr[REC_BUCKETS].via.array.ptr[0].via.array.ptr[1];
        if (rem->type != MSGPACK_OBJECT_POSITIVE_INTEGER || rem->via.u64 == 0)
            rem = NULL;
        else
            break;
    }
    ck_assert_ptr_nonnull(rem);
    char *partner = strndup((const char *)k.mv_data + 4, k.mv_size - 4);
    rem->via.u64++;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ck_assert_int_eq(msgpack_pack_object(&pk, u.data), 0);
    MDB_val nv = {sb.size, sb.data};
    mdb_cursor_close(cur);
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    return partner;
}

/* Deletes the first exception of a shard; returns its seq. */
static uint64_t drop_exception(const char *data, const char *shard)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    open_store(data, shard, &env, &txn, &dbi);
    ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k = {2, "X/"}, v;
    ck_assert_int_eq(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE), 0);
    ck_assert_uint_eq(k.mv_size, 14);
    ck_assert(memcmp(k.mv_data, "X/", 2) == 0);
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = seq << 8 | ((const uint8_t *)k.mv_data)[2 + i];
    ck_assert_int_eq(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return seq;
}

START_TEST(diff_finds_a_corrupted_view)
{
    char *data = gen_data(3000);
    consume_all(data, 2);
    char *out, *err;
    int rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
    ck_assert_str_eq(out, "all views match at seq 3000\n");
    free(out);
    free(err);
    /* The live digest equals a replay's. */
    char *live, *rep = replay(data, "r3", "3", NULL, NULL);
    ck_assert_int_eq(audit(&live, NULL, "digest", "--data", data, NULL, NULL, NULL, NULL), 0);
    ck_assert_str_eq(live, rep);
    free(live);
    /* The same with the stores' mapped pages released after every document
     * read (TLY_AUDIT_RELEASE_ITEMS at its least): what is read after a
     * release is what was there. */
    setenv("TALLY_AUDIT_RELEASE_ITEMS", "1", 1);
    rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
    ck_assert_str_eq(out, "all views match at seq 3000\n");
    free(out);
    free(err);
    ck_assert_int_eq(audit(&live, NULL, "digest", "--data", data, NULL, NULL, NULL, NULL), 0);
    unsetenv("TALLY_AUDIT_RELEASE_ITEMS");
    ck_assert_str_eq(live, rep);
    free(live);

    char *partner = corrupt_balance(data, "0-of-2");
    uint64_t xseq = drop_exception(data, "1-of-2");
    rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s%s", rc, out, err);
    char want[256];
    snprintf(want, sizeof want, "partner %s mdf: field \"available\": live ", partner);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    snprintf(want, sizeof want, "exception at seq %llu (", (unsigned long long)xseq);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(strstr(out, "only in the replay") != NULL, "%s", out);
    /* The changed balance no longer adds up [SPEC 6 invariant]. */
    snprintf(want, sizeof want, "partner %s mdf: invariant broken: available ", partner);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    /* The bucket that holds it, and exactly these four lines. */
    snprintf(want, sizeof want, "partner %s mdf: field \"buckets\": live ", partner);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ck_assert_msg(lines == 4, "%s", out);
    free(out);
    free(err);
    /* And the digest shows it too. */
    ck_assert_int_eq(audit(&live, NULL, "digest", "--data", data, NULL, NULL, NULL, NULL), 0);
    char *a = digest_line(live, "mdf"), *b = digest_line(rep, "mdf");
    ck_assert_str_ne(a, b);
    free(a);
    free(b);
    a = digest_line(live, "rebates");
    b = digest_line(rep, "rebates");
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    free(live);
    free(rep);
    free(partner);
    tu_rmtree(data);
}
END_TEST

START_TEST(digest_refuses_shards_at_different_checkpoints)
{
    char *data = gen_data(1500);
    consume_all(data, 2);
    /* Grow the log, and let only shard 0 follow. */
    char *log_dir = join(data, "log");
    char *ev[3];
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "LATE-%d", i);
        ev[i] = sale_json(id, tly_now_ms() - DAY_MS);
    }
    append_json(log_dir, ev, 3, tly_now_ms());
    for (int i = 0; i < 3; i++)
        free(ev[i]);
    char *const argv[] = {(char *)tu_tally(), "consume", "--data",         data,
                          "--shard",          "0/2",     "--exit-at-head", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    char *err, *out;
    ck_assert_int_eq(audit(NULL, &err, "digest", "--data", data, NULL, NULL, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "seq 1500..1503") != NULL, "%s", err);
    free(err);
    /* diff still compares, each shard at its own checkpoint. */
    int rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
    ck_assert_str_eq(out, "all views match at seq 1500 (shards at seq 1500..1503)\n");
    free(out);
    free(err);
    free(log_dir);
    tu_rmtree(data);
}
END_TEST

/* An override its range refuses ($TALLY_AUDIT_RELEASE_ITEMS starts at 1)
 * is named once, though every view family's stream reads it, and the
 * default digests the same. */
START_TEST(digest_names_a_refused_override_once)
{
    char *data = gen_data(600);
    consume_all(data, 1);
    char *want, *out, *err;
    ck_assert_int_eq(audit(&want, NULL, "digest", "--data", data, NULL, NULL, NULL, NULL), 0);
    setenv("TALLY_AUDIT_RELEASE_ITEMS", "0", 1);
    int rc = audit(&out, &err, "digest", "--data", data, NULL, NULL, NULL, NULL);
    unsetenv("TALLY_AUDIT_RELEASE_ITEMS");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, want);
    const char *line = "ignoring $TALLY_AUDIT_RELEASE_ITEMS=0: not a whole number in 1..";
    const char *first = strstr(err, line);
    ck_assert_msg(first != NULL && strstr(first + 1, line) == NULL, "%s", err);
    free(want);
    free(out);
    free(err);
    tu_rmtree(data);
}
END_TEST

/* A shard store that is not there (an empty directory, a link to nothing)
 * is named with what is missing, not only "cannot open". */
START_TEST(digest_names_a_missing_store)
{
    char *views = tu_tmpdir();
    char *shard = join(views, "0-of-1");
    ck_assert_int_eq(mkdir(shard, 0755), 0);
    char *err;
    ck_assert_int_eq(audit(NULL, &err, "digest", "--views", views, NULL, NULL, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "0-of-1: it has no data.mdb") != NULL, "%s", err);
    free(err);
    ck_assert_int_eq(rmdir(shard), 0);
    ck_assert_int_eq(symlink("/nonexistent-tally-store", shard), 0);
    ck_assert_int_eq(audit(NULL, &err, "digest", "--views", views, NULL, NULL, NULL, NULL), 1);
    ck_assert_msg(strstr(err, "0-of-1: it has no data.mdb") != NULL, "%s", err);
    free(err);
    free(shard);
    tu_rmtree(views);
}
END_TEST

/* Lines of text (its newlines). */
static int count_lines(const char *text)
{
    int lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    return lines;
}

/* Puts the liabilities document "{}" of n programs the log does not have,
 * "zz-<from>".."zz-<from + n - 1>", into a live shard store: one
 * difference each, only in the live views. */
static void put_fake_liabilities(const char *data, const char *shard, uint32_t from, uint32_t n)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    open_store(data, shard, &env, &txn, &dbi);
    for (uint32_t i = from; i < from + n; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "V/l/zz-%05u", i);
        put(txn, dbi, key, (size_t)len, "{}", 2);
    }
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Streams family f of a and b side by side: the same items, byte for
 * byte; returns how many. */
static size_t same_items(tly_audit_viewset *a, tly_audit_viewset *b, tly_audit_family f)
{
    tly_audit_stream *sa, *sb;
    ck_assert_int_eq(tly_audit_stream_open(a, f, &sa), TLY_OK);
    ck_assert_int_eq(tly_audit_stream_open(b, f, &sb), TLY_OK);
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    size_t n = 0;
    for (;;) {
        tly_audit_item x, y;
        tly_err ea = tly_audit_stream_next(sa, &x, msg, sizeof msg);
        tly_err eb = tly_audit_stream_next(sb, &y, msg, sizeof msg);
        ck_assert_int_eq(ea, eb);
        if (ea != TLY_OK)
            break;
        ck_assert(x.id_len == y.id_len && memcmp(x.id, y.id, x.id_len) == 0);
        ck_assert(x.doc_len == y.doc_len && memcmp(x.doc, y.doc, x.doc_len) == 0);
        n++;
    }
    tly_audit_stream_close(sa);
    tly_audit_stream_close(sb);
    return n;
}

/* `audit digest` hashes the families on several threads, each reading a
 * twin of the view set (its own transactions at the same snapshots): a
 * twin streams every family's items as the set does. Once a writer has
 * committed to a store since the set was opened, no twin is made
 * (TLY_UNAVAILABLE: the digest then runs on the set's own thread). */
START_TEST(viewset_twin_reads_the_same_snapshot)
{
    char *data = gen_data(3000);
    char *views = join(data, "views");
    free(replay(data, "views", "1", NULL, NULL));
    tly_audit_viewset *vs, *twin;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    ck_assert_int_eq(tly_audit_viewset_open(views, &vs, msg, sizeof msg), TLY_OK);
    ck_assert_int_eq(tly_audit_viewset_twin(vs, &twin), TLY_OK);
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT; f++) {
        size_t n = same_items(vs, twin, (tly_audit_family)f);
        ck_assert_msg(n > 0, "family %d is empty", f);
    }
    tly_audit_viewset_close(twin);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        put_fake_liabilities(data, "0-of-1", 0, 1); /* a writer of its own */
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(tly_audit_viewset_twin(vs, &twin), TLY_UNAVAILABLE);
    tly_audit_viewset_close(vs);
    free(views);
    free(data);
}
END_TEST

/* A data dir with a generated log folded by one live consumer. */
static char *live_data(void)
{
    char *data = gen_data(300);
    consume_all(data, 1);
    return data;
}

/* audit diff prints TLY_AUDIT_DIFF_LINES_MAX difference lines and no
 * count; one difference more and it prints as many, then only counts. */
START_TEST(diff_prints_lines_up_to_the_limit)
{
    char *data = live_data(), *out, *err;
    put_fake_liabilities(data, "0-of-1", 0, TLY_AUDIT_DIFF_LINES_MAX);
    int rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_int_eq(count_lines(out), (int)TLY_AUDIT_DIFF_LINES_MAX);
    ck_assert_msg(strstr(out, "program zz-00000 liabilities: only in the live views\n") != NULL,
                  "%s", out);
    ck_assert_msg(strstr(out, "differences in all") == NULL, "%s", out);
    free(out);
    free(err);
    put_fake_liabilities(data, "0-of-1", TLY_AUDIT_DIFF_LINES_MAX, 1);
    rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_int_eq(count_lines(out), (int)TLY_AUDIT_DIFF_LINES_MAX + 1);
    char want[64];
    snprintf(want, sizeof want, "\n... %u differences in all\n", TLY_AUDIT_DIFF_LINES_MAX + 1);
    ck_assert_msg(strlen(out) > strlen(want) && strcmp(out + strlen(out) - strlen(want), want) == 0,
                  "%s", out);
    free(out);
    free(err);
    /* The families are compared in parallel but printed in order, the
     * limit counted over all of them: a balance changed too gives its
     * three mdf lines first (the field, the bucket, the invariant), and
     * the liabilities' lines are cut three earlier. */
    free(corrupt_balance(data, "0-of-1"));
    rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_int_eq(count_lines(out), (int)TLY_AUDIT_DIFF_LINES_MAX + 1);
    const char *line = out;
    for (int i = 0; i < 3; i++, line = strchr(line, '\n') + 1)
        ck_assert_msg(strncmp(line, "partner ", 8) == 0 && strstr(line, " mdf: ") != NULL &&
                          strstr(line, " mdf: ") < strchr(line, '\n'),
                      "%s", out);
    ck_assert_msg(strncmp(line, "program zz-00000 liabilities: ", 30) == 0, "%s", out);
    char last[64];
    snprintf(last, sizeof last, "program zz-%05u ", TLY_AUDIT_DIFF_LINES_MAX - 4);
    ck_assert_msg(strstr(out, last) != NULL, "%s", out);
    snprintf(last, sizeof last, "program zz-%05u ", TLY_AUDIT_DIFF_LINES_MAX - 3);
    ck_assert_msg(strstr(out, last) == NULL, "%s", out);
    snprintf(want, sizeof want, "\n... %u differences in all\n", TLY_AUDIT_DIFF_LINES_MAX + 4);
    ck_assert_msg(strlen(out) > strlen(want) && strcmp(out + strlen(out) - strlen(want), want) == 0,
                  "%s", out);
    /* The same lines on one thread, and on one thread per family. */
    char threads[16];
    snprintf(threads, sizeof threads, "%u", TLY_AUDIT_FAMILY_THREADS_MAX);
    const char *each[] = {"1", threads};
    for (int i = 0; i < 2; i++) {
        char *again;
        setenv("TALLY_AUDIT_FAMILY_THREADS", each[i], 1);
        rc = audit(&again, NULL, "diff", "--data", data, NULL, NULL, NULL, NULL);
        unsetenv("TALLY_AUDIT_FAMILY_THREADS");
        ck_assert_int_eq(rc, 1);
        ck_assert_str_eq(again, out);
        free(again);
    }
    free(out);
    free(err);
    tu_rmtree(data);
}
END_TEST

/* Gives the first liabilities document of a live shard store a member
 * "note", a string of len 'x's; returns its program (malloc'd). */
static char *add_note(const char *data, const char *shard, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    open_store(data, shard, &env, &txn, &dbi);
    ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k = {4, "V/l/"}, v;
    ck_assert_int_eq(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE), 0);
    ck_assert(k.mv_size > 4 && memcmp(k.mv_data, "V/l/", 4) == 0);
    char *program = strndup((const char *)k.mv_data + 4, k.mv_size - 4);
    json_t *doc = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    char *note = malloc(len + 1);
    memset(note, 'x', len);
    note[len] = '\0';
    json_object_set_new(doc, "note", json_string(note));
    char *text = json_dumps(doc, JSON_COMPACT);
    MDB_val nv = {strlen(text), text};
    ck_assert_int_eq(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(text);
    free(note);
    json_decref(doc);
    return program;
}

/* A diff line shows a value of TLY_AUDIT_DIFF_VALUE_CHARS_MAX characters
 * whole; one longer is cut there, followed by "...". */
START_TEST(diff_cuts_a_value_past_the_limit)
{
    char *data = live_data(), *out, *err;
    const size_t max = TLY_AUDIT_DIFF_VALUE_CHARS_MAX;
    char *want = malloc(max + 256), *xs = malloc(max + 1);
    memset(xs, 'x', max);
    /* "x...x" with its quotes: max characters. */
    char *program = add_note(data, "0-of-1", max - 2);
    xs[max - 2] = '\0';
    snprintf(want, max + 256,
             "program %s liabilities: field \"note\": live \"%s\", replay (absent)\n", program, xs);
    int rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, want);
    free(out);
    free(err);
    free(program);
    /* One more: its first max characters (the closing quote is cut). */
    program = add_note(data, "0-of-1", max - 1);
    xs[max - 2] = 'x';
    xs[max - 1] = '\0';
    snprintf(want, max + 256,
             "program %s liabilities: field \"note\": live \"%s..., replay (absent)\n", program,
             xs);
    rc = audit(&out, &err, "diff", "--data", data, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, want);
    free(out);
    free(err);
    free(program);
    free(xs);
    free(want);
    tu_rmtree(data);
}
END_TEST

/* A view key of TLY_VIEWS_KEY_BYTES_MAX bytes is read; one byte longer is
 * a corrupt store, named with the key's size, not read past its buffer. */
START_TEST(digest_refuses_a_view_key_past_the_limit)
{
    char *data = live_data(), *views = join(data, "views"), *out, *err;
    char key[TLY_VIEWS_KEY_BYTES_MAX + 2];
    memset(key, 'k', sizeof key);
    memcpy(key, "V/l/", 4);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    open_store(data, "0-of-1", &env, &txn, &dbi);
    put(txn, dbi, key, TLY_VIEWS_KEY_BYTES_MAX, "{}", 2);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    int rc = audit(&out, &err, "digest", "--views", views, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    open_store(data, "0-of-1", &env, &txn, &dbi);
    put(txn, dbi, key, TLY_VIEWS_KEY_BYTES_MAX + 1, "{}", 2);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    rc = audit(&out, &err, "digest", "--views", views, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    char want[64];
    snprintf(want, sizeof want, "a view key of %u bytes (at most %u)", TLY_VIEWS_KEY_BYTES_MAX + 1,
             TLY_VIEWS_KEY_BYTES_MAX);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    free(out);
    free(err);
    free(views);
    tu_rmtree(data);
}
END_TEST

/* Creates empty files dir/f-<from>..dir/f-<from + n - 1>. */
static void fill_dir(const char *dir, uint32_t from, uint32_t n)
{
    for (uint32_t i = from; i < from + n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/f-%05u", dir, i);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
    }
}

/* A views directory of TLY_AUDIT_VIEWS_DIRENTS_MAX entries (its store
 * among them) is digested; one entry more is refused, where the store could
 * have been among those not read. The same bound on a replay's --out. */
START_TEST(audit_refuses_a_directory_past_its_entries)
{
    char *data = live_data(), *views = join(data, "views"), *err;
    fill_dir(views, 0, TLY_AUDIT_VIEWS_DIRENTS_MAX - 1);
    int rc = audit(NULL, &err, "digest", "--views", views, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    fill_dir(views, TLY_AUDIT_VIEWS_DIRENTS_MAX - 1, 1);
    rc = audit(NULL, &err, "digest", "--views", views, NULL, NULL, NULL, NULL);
    char want[64];
    snprintf(want, sizeof want, "holds more than %u entries", TLY_AUDIT_VIEWS_DIRENTS_MAX);
    ck_assert_msg(rc == 1 && strstr(err, want) != NULL, "exit %d: %s", rc, err);
    free(err);
    /* A replay's --out: with its one store as many entries is replayed
     * into (and digested); one more is refused before any work. */
    char *out = join(data, "out");
    make_dir(out);
    fill_dir(out, 0, TLY_AUDIT_VIEWS_DIRENTS_MAX - 1);
    rc = audit(NULL, &err, "replay", "--data", data, "--out", out, "--shards", "1");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    char *out2 = join(data, "out2");
    make_dir(out2);
    fill_dir(out2, 0, TLY_AUDIT_VIEWS_DIRENTS_MAX);
    rc = audit(NULL, &err, "replay", "--data", data, "--out", out2, "--shards", "1");
    snprintf(want, sizeof want, "more than the %u a views directory holds",
             TLY_AUDIT_VIEWS_DIRENTS_MAX);
    ck_assert_msg(rc == 1 && strstr(err, want) != NULL, "exit %d: %s", rc, err);
    char *store = join(out2, "0-of-1");
    struct stat st;
    ck_assert_int_ne(stat(store, &st), 0);
    free(store);
    free(err);
    free(out2);
    free(out);
    free(views);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ live stack */

/* True once pid has exited (reaped, status in *code); false while it runs. */
static bool exited(pid_t pid, int *code)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) != pid)
        return false;
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
}

/* Runs `tally audit verify --json` on a live data dir: must be ok; returns
 * the records it saw. */
static long long verify_live(const char *data)
{
    char *out, *err;
    int rc = audit(&out, &err, "verify", "--json", "--data", data, NULL, NULL, NULL);
    ck_assert_msg(rc == 0, "verify while the ledger runs: exit %d: %s%s", rc, out, err);
    json_t *j = json_loads(out, 0, NULL);
    ck_assert(json_is_true(json_object_get(j, "ok")));
    long long n = json_integer_value(json_object_get(j, "records"));
    json_decref(j);
    free(out);
    free(err);
    return n;
}

/* Runs the tally binary with the given arguments; returns its exit code
 * and its stdout when asked. */
static int run(char **out, char *const *argv)
{
    char *dir = tu_tmpdir(), *op = join(dir, "out");
    int rc = tu_run(argv, NULL, op, NULL);
    if (out)
        *out = tu_read_file(op, NULL);
    free(op);
    tu_rmtree(dir);
    return rc;
}

/* `tally up` on data, two shards, with the given endpoints and a free
 * console port (stacks run side by side); its log into err. No metrics:
 * their ports follow --ingest's, and a test beside this one may hold one
 * (a fresh-clone run failed so: "cannot serve metrics on 127.0.0.1:31492:
 * Address already in use", the stack stopped, `tally send` gave up). */
static pid_t spawn_stack(const char *data, const char *ingest, const char *pub, const char *logread,
                         const char *query, const char *err)
{
    char web[32];
    snprintf(web, sizeof web, "127.0.0.1:%d", tu_free_port());
    const char *const up[] = {tu_tally(),   "up",        "--data",       data,       "--shards",
                              "2",          "--ingest",  ingest,         "--events", pub,
                              "--log-read", logread,     "--query",      query,      "--web",
                              web,          "--no-sync", "--no-metrics", NULL};
    return tu_spawn((char *const *)up, err);
}

START_TEST(audit_a_running_stack)
{
    char *data = tu_tmpdir(), *events = join(data, "gen.jsonl");
    char ingest[32], pub[32], logread[32], query[32];
    tu_endpoint(ingest, sizeof ingest);
    tu_endpoint(pub, sizeof pub);
    tu_endpoint(logread, sizeof logread);
    tu_endpoint(query, sizeof query);
    char *const gen[] = {(char *)tu_tally(), "gen", "--seed", "5", "--events", "20000", NULL};
    char *dir = tu_tmpdir(), *err = join(dir, "err");
    ck_assert_int_eq(tu_run(gen, NULL, events, NULL), 0);
    pid_t up_pid = spawn_stack(data, ingest, pub, logread, query, err);
    ck_assert(tu_wait_listening(ingest, 20000));
    char *const send[] = {(char *)tu_tally(), "send", events, "--ingest", ingest, NULL};
    pid_t send_pid = tu_spawn(send, NULL);
    /* Verify again and again while events arrive: every snapshot is a
     * valid log, and none is shorter than the one before. */
    long long seen = 0;
    int code = -1;
    for (int i = 0; i < 1000 && !exited(send_pid, &code); i++) {
        long long n = verify_live(data);
        ck_assert_int_ge(n, seen);
        seen = n;
    }
    if (code < 0)
        code = tu_kill_wait(send_pid, 0);
    ck_assert_int_eq(code, 0);
    long long head = verify_live(data);
    ck_assert_int_gt(head, 19000);
    char seq[32];
    snprintf(seq, sizeof seq, "%lld", head);
    char *const wait[] = {(char *)tu_tally(), "wait", "--seq",     seq,   "--query", query,
                          "--data",           data,   "--timeout", "120", NULL};
    ck_assert_int_eq(run(NULL, wait), 0);
    /* The live views equal a replay, while everything still runs. */
    char *out;
    int rc = audit(&out, NULL, "diff", "--data", data, NULL, NULL, NULL, NULL);
    char want[64];
    snprintf(want, sizeof want, "all views match at seq %lld\n", head);
    ck_assert_msg(rc == 0, "diff: exit %d: %s", rc, out);
    ck_assert_str_eq(out, want);
    free(out);
    char *live, *rep = replay(data, "replay3", "3", NULL, NULL);
    ck_assert_int_eq(audit(&live, NULL, "digest", "--data", data, NULL, NULL, NULL, NULL), 0);
    ck_assert_str_eq(live, rep);
    free(live);
    free(rep);
    ck_assert_int_eq(tu_kill_wait(up_pid, SIGTERM), 0);
    free(events);
    free(err);
    tu_rmtree(dir);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *audit_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tu_tcase(s, "verify", 120);
    tu_add_tests(tc, TU_TESTS(verify_ok_json_log, verify_ok_generated_log_json_output,
                              verify_missing_log_is_an_error, verify_names_a_tampered_event,
                              verify_counts_the_index));
    tcase_add_loop_test(tc, verify_names_each_fault, 0,
                        (int)(sizeof fault_cases / sizeof fault_cases[0]));
    tcase_add_loop_test(tc, verify_names_each_fault_past_the_first_batches, 0,
                        (int)(sizeof fault_cases / sizeof fault_cases[0]));
    tcase_add_test(tc, verify_names_the_first_of_two_faults);
    tc = tu_tcase(s, "export", 120);
    tu_add_tests(tc, TU_TESTS(export_recomputes_to_verify_head, export_range));
    tc = tu_tcase(s, "replay", 300);
    tu_add_tests(
        tc, TU_TESTS(digest_does_not_depend_on_shards, replay_split_read_back_same_digests,
                     replay_full_map_after_drops_resumes, replay_memory_bound_commits_early,
                     replay_answers_queries_and_refuses_a_used_out,
                     replay_until_cuts_by_recorded_time, replay_what_if_replaces_a_programs_rules,
                     vector_digests_do_not_depend_on_shards, partner_digests_pinned));
    tc = tu_tcase(s, "diff", 300);
    tu_add_tests(
        tc, TU_TESTS(diff_finds_a_corrupted_view, digest_refuses_shards_at_different_checkpoints,
                     digest_names_a_missing_store, digest_names_a_refused_override_once,
                     viewset_twin_reads_the_same_snapshot, diff_prints_lines_up_to_the_limit,
                     diff_cuts_a_value_past_the_limit, digest_refuses_a_view_key_past_the_limit,
                     audit_refuses_a_directory_past_its_entries));
    tc = tu_tcase(s, "live", 600);
    tcase_add_test(tc, audit_a_running_stack);
    return s;
}

/* ------------------------------------------------------------------ bench */

static double seconds_since(uint64_t t0_ns)
{
    return (double)(tly_mono_ns() - t0_ns) / 1e9;
}

/* CPU seconds this process has used: on a shared machine the wall clock
 * also counts other processes' turns, so both are printed. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Times one replay into data/name; prints the rate. */
static void bench_replay(const char *data, uint32_t shards, uint64_t events)
{
    char name[32];
    snprintf(name, sizeof name, "replay-%u", shards);
    char *log_dir = join(data, "log"), *out_dir = join(data, name);
    tly_audit_replay_opts o = {.log_dir = log_dir, .out_dir = out_dir, .shard_count = shards};
    uint64_t last = 0, t0 = tly_mono_ns();
    double c0 = cpu_seconds();
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_replay(&o, NULL, NULL, &last, msg, sizeof msg);
    double s = seconds_since(t0), c = cpu_seconds() - c0;
    printf("replay %u shard(s): %s, seq %llu, %.2f s wall (%.0f events/s), %.2f s CPU "
           "(%.0f events/s)\n",
           shards, tly_err_name(err), (unsigned long long)last, s, (double)events / s, c,
           (double)events / c);
    tly_audit_digest d;
    t0 = tly_mono_ns();
    err = tly_audit_digest_views(out_dir, &d, msg, sizeof msg);
    printf("digest of %u shard(s): %s, %.2f s\n", shards, tly_err_name(err), seconds_since(t0));
    free(log_dir);
    free(out_dir);
}

/* `test_audit bench [EVENTS [DIR]]`: measures verify and replay on a
 * generated log. Prints figures; asserts nothing about time. */
static int bench(int argc, char **argv)
{
    uint64_t events = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000u;
    char *data = argc > 3 ? strdup(argv[3]) : tu_tmpdir();
    char *log_dir = join(data, "log");
    uint64_t t0 = tly_mono_ns();
    tly_err err = tly_rtgen_build_log(log_dir, GEN_SEED, events);
    printf("built %llu events: %s, %.2f s\n", (unsigned long long)events, tly_err_name(err),
           seconds_since(t0));
    tly_audit_verdict v;
    t0 = tly_mono_ns();
    double c0 = cpu_seconds();
    err = tly_audit_verify(log_dir, NULL, NULL, &v);
    double s = seconds_since(t0), c = cpu_seconds() - c0;
    printf("verify: %s, ok %d, %llu records, %.2f s wall (%.0f records/s), %.2f s CPU "
           "(%.0f records/s)\n",
           tly_err_name(err), v.ok, (unsigned long long)v.records, s, (double)v.records / s, c,
           (double)v.records / c);
    FILE *null = fopen("/dev/null", "w");
    uint64_t n = 0, bad = 0;
    t0 = tly_mono_ns();
    err = tly_audit_export(log_dir, 0, 0, null, NULL, NULL, &n, &bad);
    s = seconds_since(t0);
    printf("export: %s, %llu lines, %.2f s, %.0f records/s\n", tly_err_name(err),
           (unsigned long long)n, s, (double)n / s);
    fclose(null);
    bench_replay(data, 1, events);
    bench_replay(data, 4, events);
    free(log_dir);
    if (argc > 3)
        free(data);
    else
        tu_rmtree(data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "bench") == 0)
        return bench(argc, argv);
    return tu_run_suite(audit_suite());
}
