/*
 * test_ledger.c — the ledger daemon end to end (SPEC sections 3, 4, 5).
 *
 * Every case starts the real `tally ledger` on free loopback ports with a
 * fresh data directory and drives it with the real `tally send` or with a raw
 * ZeroMQ DEALER/SUB in this process. The log is then inspected read-only
 * through the log store's reader API: head, lookups, seq continuity, the hash
 * chain and recorded_ms monotonicity [D12].
 *
 * The ledger, its processes and clients are testledger.h's (children die
 * with the test; no assertion depends on timing). The crash test is seeded
 * (TALLY_TEST_SEED overrides) and prints its seed.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "testledger.h"
#include "testutil.h"
#include "tly_auth.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_wire.h"

/* How long a request to a ledger that must not answer is given. Only a
 * missing answer passes, so a short wait cannot turn a failure into a pass. */
#define LT_SILENCE_MS 1500

#define LT_KEY_SEP '\x1f'

/* ------------------------------------------------------------------ */
/* events and requests                                                 */

typedef struct evlist {
    msgpack_sbuffer sb;
    size_t off[TLY_BATCH_EVENTS_MAX + 2];
    tly_span spans[TLY_BATCH_EVENTS_MAX + 1];
    uint32_t n;
} evlist;

static evlist *ev_new(void)
{
    evlist *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    msgpack_sbuffer_init(&e->sb);
    return e;
}

static void ev_free(evlist *e)
{
    if (!e)
        return;
    msgpack_sbuffer_destroy(&e->sb);
    free(e);
}

static void ev_add_raw(evlist *e, const void *buf, size_t len)
{
    ck_assert_uint_lt(e->n, TLY_BATCH_EVENTS_MAX + 1);
    e->off[e->n++] = e->sb.size;
    msgpack_sbuffer_write(&e->sb, buf, len);
    e->off[e->n] = e->sb.size; /* the end of event n-1, kept when n is cut back */
}

/* Adds the MessagePack form of one JSON event, as `tally send` makes it. */
static void ev_add_json(evlist *e, const char *json)
{
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    ck_assert_msg(j != NULL, "bad test JSON %s: %s", json, jerr.text);
    ck_assert_uint_lt(e->n, TLY_BATCH_EVENTS_MAX + 1);
    size_t before = e->sb.size;
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(j, &e->sb, &fe), TLY_OK);
    e->off[e->n++] = before;
    e->off[e->n] = e->sb.size;
    json_decref(j);
}

static void ev_add_sale(evlist *e, const char *id, long amount)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"acme\","
             "\"sku\":\"SKU-1\",\"qty\":1,\"amount\":%ld,\"currency\":\"USD\"}",
             id, TL_AT_MS, amount);
    ev_add_json(e, json);
}

static const tly_span *ev_spans(evlist *e)
{
    for (uint32_t i = 0; i < e->n; i++) {
        e->spans[i].ptr = (const uint8_t *)e->sb.data + e->off[i];
        e->spans[i].len = e->off[i + 1] - e->off[i];
    }
    return e->spans;
}

static void req_encode(msgpack_sbuffer *out, uint64_t req, const char *source, bool atomic,
                       evlist *e)
{
    ck_assert_int_eq(tly_wire_ingest_encode(out, req, source, atomic, ev_spans(e), e->n), TLY_OK);
}

typedef struct lt_reply {
    tly_err whole;
    uint64_t req;
    uint32_t count;
    tly_ingest_result *res; /* TLY_BATCH_EVENTS_MAX */
    char msg[160];
    bool has_req; /* the reply map holds "req" */
} lt_reply;

static lt_reply *reply_new(void)
{
    lt_reply *r = calloc(1, sizeof *r);
    r->res = calloc(TLY_BATCH_EVENTS_MAX, sizeof *r->res);
    ck_assert_ptr_nonnull(r->res);
    return r;
}

static void reply_free(lt_reply *r)
{
    if (r)
        free(r->res);
    free(r);
}

static void reply_decode(const uint8_t *buf, size_t len, lt_reply *r)
{
    r->whole = tly_wire_reply_decode(buf, len, &r->req, r->res, TLY_BATCH_EVENTS_MAX, &r->count,
                                     r->msg, sizeof r->msg);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)buf, len, NULL), MSGPACK_UNPACK_SUCCESS);
    r->has_req = tl_map_get(&u.data, "req") != NULL;
    msgpack_unpacked_destroy(&u);
}

/* Sends an ingest frame and decodes the reply into r. */
static void ingest_frame(void *sock, const void *buf, size_t len, lt_reply *r)
{
    size_t rlen;
    uint8_t *reply = tl_rpc(sock, buf, len, &rlen);
    reply_decode(reply, rlen, r);
    free(reply);
}

static void ingest(void *sock, uint64_t req, const char *source, bool atomic, evlist *e,
                   lt_reply *r)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    req_encode(&sb, req, source, atomic, e);
    ingest_frame(sock, sb.data, sb.size, r);
    msgpack_sbuffer_destroy(&sb);
    if (r->whole == TLY_OK) {
        ck_assert_uint_eq(r->req, req);
        ck_assert_uint_eq(r->count, e->n);
    }
}

static void assert_result_err(const lt_reply *r, uint32_t i, tly_err err, const char *field)
{
    ck_assert_uint_lt(i, r->count);
    ck_assert_msg(r->res[i].err == err, "result %u: got %s (%s), expected %s", i,
                  tly_err_name(r->res[i].err), r->res[i].message, tly_err_name(err));
    if (field)
        ck_assert_str_eq(r->res[i].field, field);
}

static void assert_result_seq(const lt_reply *r, uint32_t i, uint64_t seq, bool dup)
{
    ck_assert_uint_lt(i, r->count);
    ck_assert_msg(r->res[i].err == TLY_OK, "result %u: %s (%s)", i, tly_err_name(r->res[i].err),
                  r->res[i].message);
    ck_assert_uint_eq(r->res[i].seq, seq);
    ck_assert_int_eq(r->res[i].dup, dup);
}

/* ------------------------------------------------------------------ */
/* the log, read-only                                                  */

/* The stored value of record seq (malloc'd). */
static uint8_t *log_raw(const tl_ledger *L, uint64_t seq, size_t *len)
{
    tly_log *log = tl_log_open(L);
    tly_log_reader *rd = NULL;
    ck_assert_int_eq(tly_log_reader_open(log, seq, &rd), TLY_OK);
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
    ck_assert_uint_eq(rec.seq, seq);
    uint8_t *copy = malloc(rec.raw_len);
    memcpy(copy, rec.raw, rec.raw_len);
    *len = rec.raw_len;
    tly_log_reader_close(rd);
    tly_log_close(log);
    return copy;
}

/* Every record of the log, checked: seqs 1..head without gaps, the chain
 * recomputed from zero, recorded_ms never decreasing [D12], the event
 * readable, and no (source, id) twice. keys[seq-1] is "source\x1fid". */
typedef struct lt_scan {
    uint64_t count;
    char **keys;
} lt_scan;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void scan_record(lt_scan *s, const tly_record *rec, uint8_t prev[TLY_HASH_BYTES],
                        int64_t *prev_ms)
{
    ck_assert_uint_eq(rec->seq, s->count + 1);
    uint8_t h[TLY_HASH_BYTES];
    tly_chain_hash(prev, rec->seq, rec->recorded_ms, rec->source, rec->event, rec->event_len, h);
    ck_assert_msg(memcmp(h, rec->hash, TLY_HASH_BYTES) == 0, "chain broken at seq %llu",
                  (unsigned long long)rec->seq);
    memcpy(prev, h, TLY_HASH_BYTES);
    ck_assert_msg(rec->recorded_ms >= *prev_ms, "recorded_ms decreases at seq %llu [D12]",
                  (unsigned long long)rec->seq);
    *prev_ms = rec->recorded_ms;
    tly_ev_type type;
    tly_str id;
    ck_assert_int_eq(tly_event_peek_id(rec->event, rec->event_len, &type, &id), TLY_OK);
    char *key = malloc(rec->source.len + id.len + 2);
    memcpy(key, rec->source.ptr, rec->source.len);
    key[rec->source.len] = LT_KEY_SEP;
    memcpy(key + rec->source.len + 1, id.ptr, id.len);
    key[rec->source.len + 1 + id.len] = '\0';
    s->keys[s->count++] = key;
}

static void log_scan(const tl_ledger *L, lt_scan *s)
{
    tly_log *log = tl_log_open(L);
    uint64_t head = 0;
    uint8_t head_hash[TLY_HASH_BYTES];
    ck_assert_int_eq(tly_log_head(log, &head, head_hash), TLY_OK);
    s->count = 0;
    s->keys = calloc(head + 1, sizeof *s->keys);
    tly_log_reader *rd = NULL;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    uint8_t prev[TLY_HASH_BYTES] = {0};
    int64_t prev_ms = INT64_MIN;
    tly_record rec;
    tly_err err;
    while ((err = tly_log_reader_next(rd, &rec)) == TLY_OK) {
        ck_assert_uint_le(rec.seq, head);
        scan_record(s, &rec, prev, &prev_ms);
    }
    ck_assert_int_eq(err, TLY_NOT_FOUND);
    tly_log_reader_close(rd);
    tly_log_close(log);
    ck_assert_uint_eq(s->count, head);
    ck_assert_msg(head == 0 || memcmp(prev, head_hash, TLY_HASH_BYTES) == 0,
                  "head hash differs from the recomputed chain");
    char **sorted = malloc((head + 1) * sizeof *sorted);
    memcpy(sorted, s->keys, head * sizeof *sorted);
    qsort(sorted, head, sizeof *sorted, cmp_str);
    for (uint64_t i = 1; i < head; i++)
        ck_assert_msg(strcmp(sorted[i - 1], sorted[i]) != 0, "(source, id) twice in the log: %s",
                      sorted[i]);
    free(sorted);
}

static void scan_free(lt_scan *s)
{
    for (uint64_t i = 0; i < s->count; i++)
        free(s->keys[i]);
    free(s->keys);
}

/* Every PREFIX-i (i < n) of source is in the log once, where its lookup says. */
static void assert_all_present(const tl_ledger *L, const lt_scan *s, const char *source,
                               const char *prefix, int n)
{
    tly_log *log = tl_log_open(L);
    for (int i = 0; i < n; i++) {
        char id[80], key[160];
        int idn = snprintf(id, sizeof id, "%s-%d", prefix, i);
        int keyn = snprintf(key, sizeof key, "%s%c%s", source, LT_KEY_SEP, id);
        ck_assert_msg(idn > 0 && (size_t)idn < sizeof id && keyn > 0 && (size_t)keyn < sizeof key,
                      "(%s, %s-%d) does not fit the key buffer", source, prefix, i);
        uint64_t seq = 0;
        tly_str src = {source, (uint32_t)strlen(source)};
        tly_str ids = {id, (uint32_t)strlen(id)};
        tly_err err = tly_log_lookup(log, src, ids, &seq);
        ck_assert_msg(err == TLY_OK, "(%s, %s) is not in the log: %s", source, id,
                      tly_err_name(err));
        ck_assert_msg(seq >= 1 && seq <= s->count && strcmp(s->keys[seq - 1], key) == 0,
                      "lookup of (%s, %s) gives seq %llu holding another event", source, id,
                      (unsigned long long)seq);
    }
    tly_log_close(log);
}

/* ------------------------------------------------------------------ */
/* log-read                                                            */

static void logread_request(msgpack_sbuffer *sb, uint64_t from, uint32_t max)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, from, max);
}

/* Asks log-read for [from, from+max) and checks the records and the head. */
static void check_logread(void *lr, const tl_ledger *L, uint64_t from, uint32_t max,
                          uint32_t expect_count)
{
    tl_logread r = tl_logread_ask(L, lr, from, max, TL_REPLY_MS);
    ck_assert_msg(r.answered, "no reply from the ledger");
    ck_assert_msg(r.error[0] == '\0', "log-read error %s", r.error);
    ck_assert_uint_eq(r.head, tl_log_head(L));
    ck_assert_uint_eq(r.records, expect_count);
}

/* ------------------------------------------------------------------ */
/* 1. the conformance vectors through `tally send`                     */

typedef struct vec_state {
    tl_ledger *L;
    char group_path[700];
    FILE *group;
    char source[128];
    int groups;
    long sent, dups, rejected;
} vec_state;

/* Sends the group in hand with `tally send --source S FILE` [D3]. */
static void vec_flush(vec_state *v)
{
    if (!v->group)
        return;
    ck_assert_int_eq(fclose(v->group), 0);
    v->group = NULL;
    const char *args[] = {"--source", v->source, v->group_path, NULL};
    tl_sent s = tl_send_run(v->L, "group", args);
    ck_assert_msg(s.parsed && s.rc == 0, "group %d (%s): exit %d", v->groups, v->source, s.rc);
    v->sent += s.sent;
    v->dups += s.dups;
    v->rejected += s.rejected;
    v->groups++;
}

static void vec_line(vec_state *v, json_t *rec)
{
    const char *source = json_string_value(json_object_get(rec, "source"));
    json_t *ev = json_object_get(rec, "event");
    ck_assert_msg(source && json_is_object(ev), "vector line is not {source, event}");
    if (!v->group || strcmp(source, v->source) != 0) {
        vec_flush(v);
        snprintf(v->source, sizeof v->source, "%s", source);
        v->group = fopen(v->group_path, "w");
        ck_assert_ptr_nonnull(v->group);
    }
    char *text = json_dumps(ev, JSON_COMPACT);
    fprintf(v->group, "%s\n", text);
    free(text);
}

/* The keys of the vector file in order of first appearance. */
static char **vec_expected(const char *path, size_t *count)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 4096, n = 0;
    char **keys = malloc(cap * sizeof *keys);
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        char key[256];
        snprintf(key, sizeof key, "%s%c%s", json_string_value(json_object_get(rec, "source")),
                 LT_KEY_SEP,
                 json_string_value(json_object_get(json_object_get(rec, "event"), "id")));
        json_decref(rec);
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(keys[i], key) == 0;
        if (seen)
            continue;
        if (n == cap)
            keys = realloc(keys, (cap *= 2) * sizeof *keys);
        keys[n++] = strdup(key);
    }
    free(line);
    fclose(f);
    *count = n;
    return keys;
}

START_TEST(test_vectors_through_send)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char *path = tu_vector("seed101-events.jsonl");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    vec_state v = {.L = &L};
    snprintf(v.group_path, sizeof v.group_path, "%s/group.jsonl", L.dir);
    char *line = NULL;
    size_t linecap = 0;
    long lines = 0;
    while (getline(&line, &linecap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(rec);
        vec_line(&v, rec);
        json_decref(rec);
        lines++;
    }
    vec_flush(&v);
    free(line);
    fclose(f);
    ck_assert_int_eq(lines, 3176);
    ck_assert_msg(v.sent == 3074 && v.dups == 102 && v.rejected == 0,
                  "%d groups: sent %ld, duplicates %ld, rejected %ld", v.groups, v.sent, v.dups,
                  v.rejected);
    ck_assert_uint_eq(tl_log_head(&L), 3074);

    /* seq N is the N-th distinct (source, id) of the file. */
    lt_scan s;
    log_scan(&L, &s);
    size_t n = 0;
    char **expected = vec_expected(path, &n);
    ck_assert_uint_eq(n, 3074);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(strcmp(s.keys[i], expected[i]) == 0, "seq %zu holds %s, expected %s", i + 1,
                      s.keys[i], expected[i]);
        free(expected[i]);
    }
    free(expected);
    scan_free(&s);

    /* The whole file again, each record with its own source. */
    const char *args[] = {path, NULL};
    tl_assert_sent(tl_send_run(&L, "resend", args), 0, 0, 3176, 0);
    ck_assert_uint_eq(tl_log_head(&L), 3074);
    free(path);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 2. idempotency                                                      */

/* Within one request: a second copy is a dup of the first, a second version
 * with other bytes a conflict. The log holds 4 events before. */
static void check_dups_in_one_request(tl_ledger *L, void *d, lt_reply *r)
{
    evlist *twice = ev_new();
    ev_add_sale(twice, "idem-4", 4000);
    ev_add_sale(twice, "idem-4", 4000);
    ev_add_sale(twice, "idem-4", 4001);
    ingest(d, 7, "dist-x", false, twice, r);
    assert_result_seq(r, 0, 5, false);
    assert_result_seq(r, 1, 5, true);
    assert_result_err(r, 2, TLY_CONFLICT, NULL);
    ck_assert_uint_eq(tl_log_head(L), 5);
    ev_free(twice);
    uint64_t seq = 0;
    ck_assert_int_eq(tl_log_lookup(L, "dist-x", "idem-4", &seq), TLY_OK);
    ck_assert_uint_eq(seq, 5);
}

/* Through `tally send`: ten events, a restart, the same file. The log holds
 * 5 events before. */
static void check_resend_after_restart(tl_ledger *L)
{
    char file[700];
    snprintf(file, sizeof file, "%s/ten.jsonl", L->dir);
    tl_write_sales(file, "ten", 10);
    const char *args[] = {"--source", "dist-z", file, NULL};
    tl_assert_sent(tl_send_run(L, "first", args), 0, 10, 0, 0);
    ck_assert_int_eq(tl_stop(L, SIGTERM), 0);
    tl_start(L, NULL);
    tl_assert_sent(tl_send_run(L, "again", args), 0, 0, 10, 0);
    ck_assert_uint_eq(tl_log_head(L), 15);
}

START_TEST(test_idempotency)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();

    evlist *a = ev_new();
    ev_add_sale(a, "idem-1", 1000);
    ev_add_sale(a, "idem-2", 2000);
    ingest(d, 1, "dist-x", false, a, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    assert_result_seq(r, 0, 1, false);
    assert_result_seq(r, 1, 2, false);

    /* The same bytes again: the original seqs, dup, nothing appended. */
    ingest(d, 2, "dist-x", false, a, r);
    assert_result_seq(r, 0, 1, true);
    assert_result_seq(r, 1, 2, true);

    /* The same id from another source is another event. */
    evlist *b = ev_new();
    ev_add_sale(b, "idem-1", 1000);
    ingest(d, 3, "dist-y", false, b, r);
    assert_result_seq(r, 0, 3, false);

    /* The same (source, id) with other bytes is a conflict; a new id in the
     * same request is still appended. */
    evlist *c = ev_new();
    ev_add_sale(c, "idem-1", 1001);
    ev_add_sale(c, "idem-3", 3000);
    ingest(d, 4, "dist-x", false, c, r);
    assert_result_err(r, 0, TLY_CONFLICT, NULL);
    assert_result_seq(r, 1, 4, false);
    ck_assert_uint_eq(tl_log_head(&L), 4);
    check_dups_in_one_request(&L, d, r);

    /* Dedupe survives a restart on the same data directory. */
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    zmq_close(d);
    tl_start(&L, NULL);
    d = tl_dealer(ctx, L.ingest);
    ingest(d, 5, "dist-x", false, a, r);
    assert_result_seq(r, 0, 1, true);
    assert_result_seq(r, 1, 2, true);
    ingest(d, 6, "dist-x", false, c, r);
    assert_result_err(r, 0, TLY_CONFLICT, NULL);
    assert_result_seq(r, 1, 4, true);
    ck_assert_uint_eq(tl_log_head(&L), 5);
    check_resend_after_restart(&L);

    ev_free(a);
    ev_free(b);
    ev_free(c);
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 3. validation through the wire                                      */

START_TEST(test_event_errors)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();
    evlist *e = ev_new();
    ev_add_sale(e, "ok-1", 100);
    /* 1: no amount */
    ev_add_json(e, "{\"type\":\"sale\",\"id\":\"bad-1\",\"at\":1735693342313,"
                   "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"currency\":\"USD\"}");
    /* 2: amount is a string */
    ev_add_json(e, "{\"type\":\"sale\",\"id\":\"bad-2\",\"at\":1735693342313,"
                   "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":\"12\","
                   "\"currency\":\"USD\"}");
    /* 3: unknown type */
    ev_add_json(e, "{\"type\":\"refund\",\"id\":\"bad-3\",\"at\":1735693342313}");
    /* 4: amount above 10^13 */
    ev_add_json(e, "{\"type\":\"sale\",\"id\":\"bad-4\",\"at\":1735693342313,"
                   "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":10000000000001,"
                   "\"currency\":\"USD\"}");
    /* 5: id outside [A-Za-z0-9._:-] */
    ev_add_json(e, "{\"type\":\"sale\",\"id\":\"bad 5\",\"at\":1735693342313,"
                   "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":5,"
                   "\"currency\":\"USD\"}");
    /* 6: at before 2000-01-01 */
    ev_add_json(e, "{\"type\":\"sale\",\"id\":\"bad-6\",\"at\":946684799999,"
                   "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":5,"
                   "\"currency\":\"USD\"}");
    ev_add_sale(e, "ok-2", 200);
    /* 8: not a map at all */
    const uint8_t five = 0x05;
    ev_add_raw(e, &five, 1);
    /* 9: at two days after now (the limit is recorded time + 1 day) */
    char json[512];
    snprintf(json, sizeof json,
             "{\"type\":\"sale\",\"id\":\"bad-9\",\"at\":%lld,\"partner\":\"acme\","
             "\"sku\":\"S\",\"qty\":1,\"amount\":5,\"currency\":\"USD\"}",
             (long long)time(NULL) * 1000LL + 2 * 86400000LL);
    ev_add_json(e, json);
    /* 10: a close naming a period that is not a period */
    ev_add_json(e, "{\"type\":\"close\",\"id\":\"bad-10\",\"at\":1735693342313,"
                   "\"program\":\"apex\",\"period\":\"2025-Q5\"}");
    ingest(d, 41, "dist-v", false, e, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    assert_result_seq(r, 0, 1, false);
    assert_result_err(r, 1, TLY_MISSING_FIELD, "amount");
    assert_result_err(r, 2, TLY_BAD_FIELD, "amount");
    assert_result_err(r, 3, TLY_BAD_TYPE, NULL);
    assert_result_err(r, 4, TLY_BAD_FIELD, "amount");
    assert_result_err(r, 5, TLY_BAD_FIELD, "id");
    assert_result_err(r, 6, TLY_BAD_FIELD, "at");
    assert_result_seq(r, 7, 2, false);
    assert_result_err(r, 8, TLY_MALFORMED, NULL);
    assert_result_err(r, 9, TLY_BAD_FIELD, "at");
    assert_result_err(r, 10, TLY_BAD_FIELD, "period");
    for (uint32_t i = 1; i < 7; i++)
        ck_assert_msg(r->res[i].message[0] != '\0', "result %u has no message", i);
    ck_assert_uint_eq(tl_log_head(&L), 2);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-v", "bad-1", &(uint64_t){0}), TLY_NOT_FOUND);

    ev_free(e);
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* The daemon still appends a valid request (proof it kept serving). */
static uint64_t still_serving(void *d, tl_ledger *L, uint64_t *head)
{
    static int k;
    char id[32];
    snprintf(id, sizeof id, "alive-%d", k++);
    evlist *e = ev_new();
    ev_add_sale(e, id, 1);
    lt_reply *r = reply_new();
    ingest(d, 1000 + (uint64_t)k, "dist-w", false, e, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    assert_result_seq(r, 0, *head + 1, false);
    *head += 1;
    ck_assert_uint_eq(tl_log_head(L), *head);
    ev_free(e);
    reply_free(r);
    return *head;
}

static void assert_whole(const lt_reply *r, tly_err err, bool has_req, uint64_t req)
{
    ck_assert_msg(r->whole == err, "whole-request error %s (%s), expected %s",
                  tly_err_name(r->whole), r->msg, tly_err_name(err));
    ck_assert_uint_eq(r->count, 0);
    ck_assert_msg(r->msg[0] != '\0', "whole-request error without a message");
    ck_assert_int_eq(r->has_req, has_req);
    if (has_req)
        ck_assert_uint_eq(r->req, req);
}

/* A request of exactly total bytes: {"req", "source", "events": [one sale],
 * "pad": bin}. Unknown keys are ignored, so only the size matters. */
static void sized_request(msgpack_sbuffer *out, uint64_t req, const char *id, size_t total)
{
    evlist *e = ev_new();
    ev_add_sale(e, id, 7);
    const tly_span *sp = ev_spans(e);
    size_t pad = total - 1024;
    for (int pass = 0; pass < 2; pass++) {
        msgpack_sbuffer_clear(out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "req", 3);
        msgpack_pack_uint64(&pk, req);
        msgpack_pack_str_with_body(&pk, "source", 6);
        msgpack_pack_str_with_body(&pk, "dist-w", 6);
        msgpack_pack_str_with_body(&pk, "events", 6);
        msgpack_pack_array(&pk, 1);
        msgpack_sbuffer_write(out, (const char *)sp[0].ptr, sp[0].len);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_bin(&pk, pad);
        size_t before = out->size;
        for (size_t i = 0; i < pad; i += 4096) {
            static const char zeros[4096];
            msgpack_sbuffer_write(out, zeros, pad - i < 4096 ? pad - i : 4096);
        }
        ck_assert_uint_eq(out->size - before, pad);
        pad += total - out->size; /* bin32 header stays the same size */
    }
    ck_assert_uint_eq(out->size, total);
    ev_free(e);
}

/* What the whole-request checks share: the ledger, a dealer on its ingest
 * socket, a reply, the log head so far and a scratch buffer. */
typedef struct {
    tl_ledger *L;
    void *d;
    lt_reply *r;
    uint64_t head;
    msgpack_sbuffer sb;
} wr_ctx;

/* Frames that are no request: not MessagePack, not a map, no events. */
static void whole_bad_shapes(wr_ctx *w)
{
    /* Not MessagePack (0xc1 is never used). */
    ingest_frame(w->d, "\xc1\xc1\xc1", 3, w->r);
    assert_whole(w->r, TLY_MALFORMED, false, 0);
    still_serving(w->d, w->L, &w->head);

    /* MessagePack, not a map: [1, 2]. */
    ingest_frame(w->d, "\x92\x01\x02", 3, w->r);
    assert_whole(w->r, TLY_MALFORMED, false, 0);
    still_serving(w->d, w->L, &w->head);

    /* A map without events: {"req": 5, "source": "s"}. */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(&w->sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 5);
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, "s", 1);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    assert_whole(w->r, TLY_MALFORMED, true, 5);
    still_serving(w->d, w->L, &w->head);
}

/* The source: declared without CURVE, at most 64 bytes. */
static void whole_source(wr_ctx *w)
{
    /* Without CURVE a request must declare its source [D3]. */
    evlist *one = ev_new();
    ev_add_sale(one, "nosource-1", 1);
    msgpack_sbuffer_clear(&w->sb);
    req_encode(&w->sb, 9, NULL, false, one);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    assert_whole(w->r, TLY_MALFORMED, true, 9);
    still_serving(w->d, w->L, &w->head);

    /* A source of 65 bytes is refused [D12]; 64 bytes is fine. */
    char src[70];
    memset(src, 's', 65);
    src[65] = '\0';
    msgpack_sbuffer_clear(&w->sb);
    req_encode(&w->sb, 10, src, false, one);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    ck_assert_msg(w->r->whole == TLY_MALFORMED || w->r->whole == TLY_BAD_FIELD,
                  "a 65-byte source: %s", tly_err_name(w->r->whole));
    ck_assert_int_eq(w->r->has_req, true);
    ck_assert_uint_eq(tl_log_head(w->L), w->head);
    src[64] = '\0';
    ingest(w->d, 11, src, false, one, w->r);
    assert_result_seq(w->r, 0, w->head + 1, false);
    w->head += 1;
    ck_assert_int_eq(tl_log_lookup(w->L, src, "nosource-1", &(uint64_t){0}), TLY_OK);
    ev_free(one);
}

/* The events array: not empty, at most 4096 events. */
static void whole_event_count(wr_ctx *w)
{
    /* An empty events array. */
    evlist *none = ev_new();
    msgpack_sbuffer_clear(&w->sb);
    req_encode(&w->sb, 6, "dist-w", false, none);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    assert_whole(w->r, TLY_MALFORMED, true, 6);
    still_serving(w->d, w->L, &w->head);
    ev_free(none);

    /* 4097 events, `req` after the events array: too_large, req echoed. */
    evlist *many = ev_new();
    for (uint32_t i = 0; i <= TLY_BATCH_EVENTS_MAX; i++) {
        char id[32];
        snprintf(id, sizeof id, "many-%u", i);
        ev_add_sale(many, id, 1);
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(&w->sb);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, "dist-w", 6);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, many->n);
    const tly_span *sp = ev_spans(many);
    for (uint32_t i = 0; i < many->n; i++)
        msgpack_sbuffer_write(&w->sb, (const char *)sp[i].ptr, sp[i].len);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, 77);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    assert_whole(w->r, TLY_TOO_LARGE, true, 77);
    still_serving(w->d, w->L, &w->head);

    /* Exactly 4096 events is the limit, accepted. */
    many->n = TLY_BATCH_EVENTS_MAX;
    ingest(w->d, 78, "dist-w", false, many, w->r);
    ck_assert_msg(w->r->whole == TLY_OK, "4096 events refused: %s (%s)", tly_err_name(w->r->whole),
                  w->r->msg);
    for (uint32_t i = 0; i < TLY_BATCH_EVENTS_MAX; i++)
        assert_result_seq(w->r, i, w->head + 1 + i, false);
    w->head += TLY_BATCH_EVENTS_MAX;
    still_serving(w->d, w->L, &w->head);
    ev_free(many);
}

/* The frame: at most 4 MiB. */
static void whole_frame_size(wr_ctx *w)
{
    /* A frame of 4 MiB + 1 byte: too_large, req echoed. */
    sized_request(&w->sb, 88, "big-1", (size_t)TLY_FRAME_BYTES_MAX + 1);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    assert_whole(w->r, TLY_TOO_LARGE, true, 88);
    ck_assert_int_eq(tl_log_lookup(w->L, "dist-w", "big-1", &(uint64_t){0}), TLY_NOT_FOUND);
    still_serving(w->d, w->L, &w->head);

    /* A frame of exactly 4 MiB is within the limit. */
    sized_request(&w->sb, 89, "big-2", TLY_FRAME_BYTES_MAX);
    ingest_frame(w->d, w->sb.data, w->sb.size, w->r);
    ck_assert_msg(w->r->whole == TLY_OK, "a 4 MiB frame was refused: %s (%s)",
                  tly_err_name(w->r->whole), w->r->msg);
    ck_assert_uint_eq(w->r->req, 89);
    assert_result_seq(w->r, 0, w->head + 1, false);
    w->head += 1;
    still_serving(w->d, w->L, &w->head);
}

START_TEST(test_whole_request_errors)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    wr_ctx w = {.L = &L, .d = tl_dealer(ctx, L.ingest), .r = reply_new()};
    msgpack_sbuffer_init(&w.sb);
    still_serving(w.d, &L, &w.head);

    whole_bad_shapes(&w);
    whole_source(&w);
    whole_event_count(&w);
    whole_frame_size(&w);

    msgpack_sbuffer_destroy(&w.sb);
    reply_free(w.r);
    zmq_close(w.d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* the envelope and ZeroMQ's own bound on a frame                      */

/* Sends `hops` routing frames ("hop-0", "hop-1", ..., as proxies in front
 * of the ledger would add) and then body on d; receives the multipart
 * reply, whose routing frames must be the first `echoed` of those sent.
 * Returns the reply's body (malloc'd, *rlen bytes). */
static uint8_t *envelope_rpc(void *d, unsigned hops, const msgpack_sbuffer *body, unsigned echoed,
                             size_t *rlen)
{
    char hop[16];
    for (unsigned i = 0; i < hops; i++) {
        int n = snprintf(hop, sizeof hop, "hop-%u", i);
        ck_assert_int_eq(zmq_send(d, hop, (size_t)n, ZMQ_SNDMORE), n);
    }
    tl_send_frame(d, body->data, body->size);
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    ck_assert_msg(zmq_poll(&it, 1, TL_REPLY_MS) == 1, "no reply from the ledger");
    for (unsigned i = 0;; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, d, 0), 0);
        if (!zmq_msg_more(&m)) {
            ck_assert_uint_eq(i, echoed);
            *rlen = zmq_msg_size(&m);
            uint8_t *out = malloc(*rlen);
            memcpy(out, zmq_msg_data(&m), *rlen);
            zmq_msg_close(&m);
            return out;
        }
        ck_assert_uint_lt(i, echoed);
        int n = snprintf(hop, sizeof hop, "hop-%u", i);
        ck_assert_msg(zmq_msg_size(&m) == (size_t)n && memcmp(zmq_msg_data(&m), hop, n) == 0,
                      "routing frame %u is not %s", i, hop);
        zmq_msg_close(&m);
    }
}

/* Asserts a whole-request refusal for the envelope: malformed, the message
 * naming the routing frames. */
static void assert_envelope_refused(const uint8_t *body, size_t len, lt_reply *r, bool has_req,
                                    uint64_t req)
{
    reply_decode(body, len, r);
    assert_whole(r, TLY_MALFORMED, has_req, req);
    ck_assert_msg(strstr(r->msg, "routing frames"), "message: %s", r->msg);
}

/* TLY_ENVELOPE_FRAMES_MAX at its edge, on ingest and log-read: a request
 * behind TLY_ENVELOPE_FRAMES_MAX - 1 routing frames of the DEALER's own
 * (its ROUTER adds the last, the peer's identity) is served and the reply
 * carries them all back; with one frame more it is refused whole,
 * `malformed`, and nothing is appended. The reply still reaches the peer:
 * the frames kept begin with its identity. */
START_TEST(test_envelope_frames_max)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();
    uint64_t head = 0;
    still_serving(d, &L, &head);
    const unsigned hops = TLY_ENVELOPE_FRAMES_MAX - 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    size_t len = 0;

    evlist *e = ev_new();
    ev_add_sale(e, "env-1", 3);
    req_encode(&sb, 21, "dist-env", false, e);
    uint8_t *body = envelope_rpc(d, hops, &sb, hops, &len);
    reply_decode(body, len, r);
    free(body);
    ck_assert_int_eq(r->whole, TLY_OK);
    assert_result_seq(r, 0, head + 1, false);
    head += 1;

    evlist *e2 = ev_new();
    ev_add_sale(e2, "env-2", 4);
    msgpack_sbuffer_clear(&sb);
    req_encode(&sb, 22, "dist-env", false, e2);
    body = envelope_rpc(d, hops + 1, &sb, hops, &len);
    assert_envelope_refused(body, len, r, true, 22);
    free(body);
    ck_assert_uint_eq(tl_log_head(&L), head);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-env", "env-2", &(uint64_t){0}), TLY_NOT_FOUND);
    still_serving(d, &L, &head);

    void *lr = tl_dealer(ctx, L.logread);
    logread_request(&sb, 1, 10);
    body = envelope_rpc(lr, hops, &sb, hops, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)body, len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *recs = tl_map_get(&u.data, "records");
    ck_assert_msg(recs && recs->type == MSGPACK_OBJECT_ARRAY, "log-read reply without records");
    ck_assert_uint_eq(recs->via.array.size, head);
    msgpack_unpacked_destroy(&u);
    free(body);
    body = envelope_rpc(lr, hops + 1, &sb, hops, &len);
    assert_envelope_refused(body, len, r, false, 0);
    free(body);

    ev_free(e);
    ev_free(e2);
    msgpack_sbuffer_destroy(&sb);
    reply_free(r);
    zmq_close(lr);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* TLY_FRAME_BYTES_HARD_MAX at its edge: a frame of exactly that many bytes
 * reaches the ledger, which answers too_large (it is over
 * TLY_FRAME_BYTES_MAX); one byte more is dropped by ZeroMQ itself, which
 * disconnects the peer (its monitor sees it) without an answer, and the
 * ledger serves the peer again once it reconnects: the next reply is that
 * of the next request. */
START_TEST(test_frame_bytes_hard_max)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_sock(ctx, ZMQ_DEALER, NULL, NULL);
    ck_assert_int_eq(zmq_socket_monitor(d, "inproc://hard-max", ZMQ_EVENT_DISCONNECTED), 0);
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_connect(mon, "inproc://hard-max"), 0);
    tl_connect(d, L.ingest);
    lt_reply *r = reply_new();
    uint64_t head = 0;
    still_serving(d, &L, &head);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);

    sized_request(&sb, 90, "hard-1", TLY_FRAME_BYTES_HARD_MAX);
    ingest_frame(d, sb.data, sb.size, r);
    assert_whole(r, TLY_TOO_LARGE, true, 90);

    sized_request(&sb, 91, "hard-2", (size_t)TLY_FRAME_BYTES_HARD_MAX + 1);
    tl_send_frame(d, sb.data, sb.size);
    zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
    ck_assert_msg(zmq_poll(&it, 1, TL_REPLY_MS) == 1, "the ledger kept an oversized peer");
    uint8_t ev[6];
    ck_assert_int_eq(zmq_recv(mon, ev, sizeof ev, 0), 6);
    uint16_t event;
    memcpy(&event, ev, 2);
    ck_assert_int_eq(event, ZMQ_EVENT_DISCONNECTED);
    still_serving(d, &L, &head);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-w", "hard-1", &(uint64_t){0}), TLY_NOT_FOUND);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-w", "hard-2", &(uint64_t){0}), TLY_NOT_FOUND);

    msgpack_sbuffer_destroy(&sb);
    reply_free(r);
    zmq_close(mon);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* many large requests at once: more event bytes than one commit holds   */

#define BIG_REQUESTS 24

/* A request of one sale padded (an unknown key, ignored) to about 4 MiB. */
static void big_request(msgpack_sbuffer *out, uint64_t req, const char *id)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"acme\","
                     "\"sku\":\"S\",\"qty\":1,\"amount\":5,\"currency\":\"USD\"}",
                     id, TL_AT_MS);
    ck_assert_int_lt(n, (int)sizeof head);
    msgpack_sbuffer ev;
    msgpack_sbuffer_init(&ev);
    json_t *j = json_loads(head, 0, NULL);
    ck_assert_int_eq(tly_json_event_to_mp(j, &ev, NULL), TLY_OK);
    json_decref(j);
    /* Re-open the map with one more entry: "pad": bin. */
    ck_assert_uint_eq((uint8_t)ev.data[0], 0x88); /* fixmap of 8 */
    ev.data[0] = (char)0x89;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ev, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, "pad", 3);
    size_t pad = TLY_FRAME_BYTES_MAX - 4096;
    msgpack_pack_bin(&pk, pad);
    char *zeros = calloc(1, pad);
    msgpack_sbuffer_write(&ev, zeros, pad);
    free(zeros);
    tly_span sp = {(const uint8_t *)ev.data, ev.size};
    msgpack_sbuffer_clear(out);
    ck_assert_int_eq(tly_wire_ingest_encode(out, req, "dist-big", false, &sp, 1), TLY_OK);
    ck_assert_uint_le(out->size, TLY_FRAME_BYTES_MAX);
    msgpack_sbuffer_destroy(&ev);
}

/* Requests that together exceed what one LMDB commit may hold (64 MiB of
 * events) arrive while the ledger is stopped (SIGSTOP), so they are drained
 * into one batch: every acknowledgement must name a stored record. */
START_TEST(test_oversized_batch)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    int hwm = 0;
    zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof hwm);
    lt_reply *r = reply_new();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    big_request(&sb, 1, "big-warmup");
    ingest_frame(d, sb.data, sb.size, r);
    assert_result_seq(r, 0, 1, false);

    ck_assert_int_eq(kill(L.pid, SIGSTOP), 0);
    for (int k = 0; k < BIG_REQUESTS; k++) {
        char id[32];
        snprintf(id, sizeof id, "big-%d", k);
        big_request(&sb, (uint64_t)k + 10, id);
        tl_send_frame(d, sb.data, sb.size);
    }
    tu_sleep_ms(500); /* lets ZeroMQ hand the frames to the kernel; not asserted */
    ck_assert_int_eq(kill(L.pid, SIGCONT), 0);
    int acked = 0;
    for (int k = 0; k < BIG_REQUESTS; k++) {
        uint8_t *buf;
        size_t len;
        ck_assert_msg(tl_recv(d, TL_REPLY_MS, &buf, &len), "reply %d of %d missing", k,
                      BIG_REQUESTS);
        reply_decode(buf, len, r);
        free(buf);
        ck_assert_int_eq(r->whole, TLY_OK);
        ck_assert_uint_eq(r->count, 1);
        if (r->res[0].err != TLY_OK)
            continue; /* refused (e.g. storage): the producer retries */
        char id[32];
        snprintf(id, sizeof id, "big-%llu", (unsigned long long)(r->req - 10));
        uint64_t seq = 0;
        ck_assert_msg(r->res[0].seq >= 1 && tl_log_lookup(&L, "dist-big", id, &seq) == TLY_OK &&
                          seq == r->res[0].seq,
                      "%s acknowledged with seq %llu but stored at %llu", id,
                      (unsigned long long)r->res[0].seq, (unsigned long long)seq);
        acked++;
    }
    fprintf(stderr, "test_ledger big: %d of %d requests acknowledged\n", acked, BIG_REQUESTS);
    lt_scan s;
    log_scan(&L, &s);
    ck_assert_uint_eq(s.count, 1 + (uint64_t)acked);
    scan_free(&s);
    msgpack_sbuffer_destroy(&sb);
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 4. atomic requests                                                  */

/* Through `tally send --atomic`: one bad line rejects its whole batch. The
 * log holds 7 events before and after. */
static void check_send_atomic(tl_ledger *L)
{
    char file[700];
    snprintf(file, sizeof file, "%s/atomic.jsonl", L->dir);
    tl_write_sales(file, "snd", 4);
    FILE *f = fopen(file, "a");
    fprintf(f, "{\"type\":\"sale\",\"id\":\"snd-bad\",\"at\":1735693342313,\"partner\":\"p\","
               "\"sku\":\"S\",\"qty\":0,\"amount\":1,\"currency\":\"USD\"}\n");
    fclose(f);
    const char *args[] = {"--atomic", "--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(L, "atomic", args), 1, 0, 0, 5);
    ck_assert_uint_eq(tl_log_head(L), 7);
    char *err = tl_send_stderr(L, "atomic");
    ck_assert_msg(strstr(err, "line 5 (id snd-bad): bad_field [qty]") != NULL, "stderr: %s", err);
    ck_assert_msg(strstr(err, "line 1 (id snd-0): atomic_aborted") != NULL, "stderr: %s", err);
    free(err);
}

START_TEST(test_atomic)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();

    evlist *pre = ev_new();
    ev_add_sale(pre, "pre-1", 10);
    ingest(d, 1, "dist-a", false, pre, r);
    assert_result_seq(r, 0, 1, false);

    evlist *bad = ev_new();
    ev_add_sale(bad, "at-1", 10);
    ev_add_sale(bad, "at-2", 20);
    ev_add_json(bad, "{\"type\":\"sale\",\"id\":\"at-3\",\"at\":1735693342313,"
                     "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"currency\":\"USD\"}");
    ev_add_sale(bad, "at-4", 40);
    ingest(d, 2, "dist-a", true, bad, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    assert_result_err(r, 0, TLY_ATOMIC_ABORTED, NULL);
    assert_result_err(r, 1, TLY_ATOMIC_ABORTED, NULL);
    assert_result_err(r, 2, TLY_MISSING_FIELD, "amount");
    assert_result_err(r, 3, TLY_ATOMIC_ABORTED, NULL);
    ck_assert_uint_eq(tl_log_head(&L), 1);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-a", "at-1", &(uint64_t){0}), TLY_NOT_FOUND);

    /* A conflict also aborts the whole atomic request. */
    evlist *conf = ev_new();
    ev_add_sale(conf, "at-5", 50);
    ev_add_sale(conf, "pre-1", 11);
    ingest(d, 3, "dist-a", true, conf, r);
    assert_result_err(r, 0, TLY_ATOMIC_ABORTED, NULL);
    assert_result_err(r, 1, TLY_CONFLICT, NULL);
    ck_assert_uint_eq(tl_log_head(&L), 1);

    /* Valid atomic request: all appended, consecutive seqs. */
    evlist *good = ev_new();
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "good-%d", i);
        ev_add_sale(good, id, 100 + i);
    }
    ingest(d, 4, "dist-a", true, good, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    for (uint32_t i = 0; i < 5; i++)
        assert_result_seq(r, i, 2 + i, false);
    ck_assert_uint_eq(tl_log_head(&L), 6);

    /* A resend inside an atomic request stays a dup; the rest is appended. */
    evlist *mixed = ev_new();
    ev_add_sale(mixed, "good-0", 100);
    ev_add_sale(mixed, "good-9", 109);
    ingest(d, 5, "dist-a", true, mixed, r);
    assert_result_seq(r, 0, 2, true);
    assert_result_seq(r, 1, 7, false);
    ck_assert_uint_eq(tl_log_head(&L), 7);
    ev_free(mixed);

    check_send_atomic(&L);

    ev_free(pre);
    ev_free(bad);
    ev_free(conf);
    ev_free(good);
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 5. group commit under concurrent producers                          */

#define GC_PRODUCERS 4
#define GC_EVENTS 5000

#define PRODUCERS_MAX 4

/* Concurrent `tally send` runs: producer k sends PREFIX-0 .. PREFIX-(n-1)
 * from DIR/NAME-k.jsonl under source NAME-k (its tag too). */
typedef struct producers {
    int count;
    const char *prefix;
    int events;
    pid_t pids[PRODUCERS_MAX];
    char files[PRODUCERS_MAX][700], sources[PRODUCERS_MAX][32];
} producers;

/* Writes the files and starts count producers with the send options opts
 * (NULL-terminated, at most 8). */
static void producers_start(producers *p, const tl_ledger *L, int count, const char *name,
                            const char *prefix, int events, const char *const *opts)
{
    ck_assert_int_le(count, PRODUCERS_MAX);
    p->count = count;
    p->prefix = prefix;
    p->events = events;
    for (int k = 0; k < count; k++) {
        snprintf(p->sources[k], sizeof p->sources[k], "%s-%d", name, k);
        snprintf(p->files[k], sizeof p->files[k], "%s/%s.jsonl", L->dir, p->sources[k]);
        tl_write_sales(p->files[k], prefix, events);
    }
    for (int k = 0; k < count; k++) {
        const char *args[12] = {"--source", p->sources[k]};
        int n = 2;
        for (const char *const *o = opts; *o && n < 10; o++)
            args[n++] = *o;
        args[n++] = p->files[k];
        args[n] = NULL;
        p->pids[k] = tl_send_spawn(L, p->sources[k], NULL, args);
    }
}

/* The log passes log_scan and holds every event of every producer once. */
static void producers_all_present(const producers *p, const tl_ledger *L)
{
    lt_scan s;
    log_scan(L, &s);
    for (int k = 0; k < p->count; k++)
        assert_all_present(L, &s, p->sources[k], p->prefix, p->events);
    scan_free(&s);
}

START_TEST(test_concurrent_producers)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    producers p;
    const char *opts[] = {"--batch", "50", NULL};
    producers_start(&p, &L, GC_PRODUCERS, "producer", "gc", GC_EVENTS, opts);
    for (int k = 0; k < GC_PRODUCERS; k++)
        tl_assert_sent(tl_send_wait(&L, p.sources[k], p.pids[k]), 0, GC_EVENTS, 0, 0);
    ck_assert_uint_eq(tl_log_head(&L), GC_PRODUCERS * GC_EVENTS);
    producers_all_present(&p, &L);

    /* TLY_LOGREAD_RECORDS_MAX at its edge: a log-read asking for that many
     * records gets them all, one asking for one more (or far more) gets
     * that many, and the rest from the next request. */
    _Static_assert(GC_PRODUCERS * GC_EVENTS > TLY_LOGREAD_RECORDS_MAX + 100, "log long enough");
    void *ctx = tl_ctx();
    void *lr = tl_dealer(ctx, L.logread);
    check_logread(lr, &L, 1, TLY_LOGREAD_RECORDS_MAX, TLY_LOGREAD_RECORDS_MAX);
    check_logread(lr, &L, 1, TLY_LOGREAD_RECORDS_MAX + 1, TLY_LOGREAD_RECORDS_MAX);
    check_logread(lr, &L, 1, 100000, TLY_LOGREAD_RECORDS_MAX);
    check_logread(lr, &L, TLY_LOGREAD_RECORDS_MAX + 1, 1, 1);
    check_logread(lr, &L, GC_PRODUCERS * GC_EVENTS - 99, TLY_LOGREAD_RECORDS_MAX, 100);
    zmq_close(lr);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 6. crash: SIGKILL the ledger under load, restart, nothing lost or doubled */

#define CR_PRODUCERS 3
#define CR_EVENTS 3000

/* `tally audit verify` agrees with the chain check of log_scan. */
static void audit_verify(const tl_ledger *L)
{
    const char *args[] = {"audit", "verify", "--data", L->data, NULL};
    ck_assert_int_eq(tl_run(L, "audit", args), 0);
}

START_TEST(test_crash_recovery)
{
    unsigned seed = tu_test_seed("test_ledger crash");
    srand(seed);
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    producers p;
    const char *opts[] = {"--ack-timeout-ms", "500", "--batch", "20", "--window", "4", NULL};
    producers_start(&p, &L, CR_PRODUCERS, "crash-src", "cr", CR_EVENTS, opts);
    /* Kill at random points of progress (a head the producers will reach),
     * not at random times, so every kill lands while they are sending. */
    const uint64_t total = CR_PRODUCERS * CR_EVENTS;
    int kills = 2 + (int)(rand() % 2);
    uint64_t target = 0;
    for (int k = 0; k < kills; k++) {
        uint64_t span = total * 3 / 4 / (uint64_t)kills;
        target = (uint64_t)k * span + 1 + (uint64_t)rand() % span;
        uint64_t head = tl_wait_head(&L, target);
        ck_assert_int_eq(tl_stop(&L, SIGKILL), 128 + SIGKILL);
        uint64_t after = tl_log_head(&L);
        fprintf(stderr, "test_ledger crash: kill %d at head >= %llu (seen %llu, durable %llu)\n",
                k + 1, (unsigned long long)target, (unsigned long long)head,
                (unsigned long long)after);
        ck_assert_uint_ge(after, head); /* what a reader saw committed stays */
        tu_sleep_ms(rand() % 300);
        tl_start(&L, NULL);
    }
    long sent = 0;
    for (int k = 0; k < CR_PRODUCERS; k++) {
        tl_sent s = tl_send_wait(&L, p.sources[k], p.pids[k]);
        char who[64];
        snprintf(who, sizeof who, "producer %d (seed %u)", k, seed);
        tl_assert_delivered(s, CR_EVENTS, who);
        sent += s.sent;
    }
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    ck_assert_uint_eq(tl_log_head(&L), total);
    ck_assert_int_le(sent, (long)total); /* acks lost in a crash come back as duplicates */
    fprintf(stderr, "test_ledger crash: %ld acknowledged as new, %ld as duplicates\n", sent,
            (long)total - sent);
    producers_all_present(&p, &L);
    audit_verify(&L);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* a full disk is an error reply, never a corrupted log (SPEC section 3) */

#define FULL_EVENTS 200
#define FULL_REQUESTS_MAX 400

static evlist *full_request(int k)
{
    evlist *e = ev_new();
    for (int i = 0; i < FULL_EVENTS; i++) {
        char id[48];
        snprintf(id, sizeof id, "full-%d-%d", k, i);
        ev_add_sale(e, id, 1 + i);
    }
    return e;
}

/* True when the whole request was appended at first..; false when every
 * event got `storage`. Anything else fails. */
static bool full_outcome(const lt_reply *r, uint64_t first)
{
    ck_assert_msg(r->whole == TLY_OK, "whole-request %s (%s)", tly_err_name(r->whole), r->msg);
    if (r->res[0].err == TLY_STORAGE) {
        for (uint32_t i = 0; i < r->count; i++)
            assert_result_err(r, i, TLY_STORAGE, NULL);
        return false;
    }
    for (uint32_t i = 0; i < r->count; i++)
        assert_result_seq(r, i, first + i, false);
    return true;
}

START_TEST(test_storage_full)
{
    tl_ledger L;
    tl_init(&L);
    const char *env[] = {"TALLY_LOG_MAP_MAX_BYTES=1048576", NULL};
    tl_start_env(&L, NULL, env);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();
    uint64_t head = 0;
    int full = -1;
    for (int k = 0; k < FULL_REQUESTS_MAX && full < 0; k++) {
        evlist *e = full_request(k);
        ingest(d, (uint64_t)k + 1, "dist-full", false, e, r);
        if (full_outcome(r, head + 1))
            head += FULL_EVENTS;
        else
            full = k;
        ev_free(e);
    }
    ck_assert_msg(full > 0, "a 1 MiB log never filled (or nothing fit)");
    ck_assert_uint_eq(tl_log_head(&L), head);

    /* Still serving: dups of stored events need no space; the full request
     * is refused again. */
    evlist *first = full_request(0);
    ingest(d, 1000, "dist-full", false, first, r);
    for (uint32_t i = 0; i < FULL_EVENTS; i++)
        assert_result_seq(r, i, 1 + i, true);
    evlist *last = full_request(full);
    ingest(d, 1001, "dist-full", false, last, r);
    ck_assert(!full_outcome(r, head + 1));
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    lt_scan s;
    log_scan(&L, &s);
    scan_free(&s);

    /* With room again (no ceiling), the refused request is appended. */
    tl_start(&L, NULL);
    zmq_close(d);
    d = tl_dealer(ctx, L.ingest);
    ingest(d, 1002, "dist-full", false, last, r);
    ck_assert(full_outcome(r, head + 1));
    head += FULL_EVENTS;
    ck_assert_uint_eq(tl_log_head(&L), head);
    log_scan(&L, &s);
    scan_free(&s);

    ev_free(first);
    ev_free(last);
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 7. CURVE, roles, loopback                                           */

/* The CURVE ledger of test_curve_roles: its keys and the files sent. */
typedef struct {
    tl_keys server, sales, fin, stranger;
    char f_sale[700], f_close[700], f_spoof[700];
} curve_env;

/* Starts a CURVE ledger that knows the sales and finance keys (not the
 * stranger's) and writes the files to send. */
static void curve_start(tl_ledger *L, curve_env *c)
{
    tl_make_keys(L, "server", &c->server);
    tl_make_keys(L, "sales", &c->sales);
    tl_make_keys(L, "finance", &c->fin);
    tl_make_keys(L, "stranger", &c->stranger);
    char authz[700], text[512];
    snprintf(authz, sizeof authz, "%s/authorized_keys", L->dir);
    snprintf(text, sizeof text,
             "# producers of the test\n%s dist-curve sales\n\n%s fin-curve finance\n", c->sales.pub,
             c->fin.pub);
    tl_write_text(authz, text);
    const char *extra[] = {"--curve-secret", c->server.file, "--authorized-keys", authz, NULL};
    tl_start(L, extra);

    snprintf(c->f_sale, sizeof c->f_sale, "%s/sale.jsonl", L->dir);
    snprintf(c->f_close, sizeof c->f_close, "%s/close.jsonl", L->dir);
    snprintf(c->f_spoof, sizeof c->f_spoof, "%s/spoof.jsonl", L->dir);
    tl_write_text(c->f_sale,
                  "{\"type\":\"sale\",\"id\":\"cs-1\",\"at\":1735693342313,\"partner\":"
                  "\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":500,\"currency\":\"USD\"}\n"
                  "{\"type\":\"close\",\"id\":\"cs-2\",\"at\":1735693342313,"
                  "\"program\":\"apex\",\"period\":\"2025-Q1\"}\n");
    tl_write_text(c->f_close, "{\"type\":\"close\",\"id\":\"cf-1\",\"at\":1735693342313,"
                              "\"program\":\"apex\",\"period\":\"2025-Q1\"}\n");
    tl_write_text(c->f_spoof,
                  "{\"type\":\"sale\",\"id\":\"cs-3\",\"at\":1735693342313,\"partner\":"
                  "\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":5,\"currency\":\"USD\"}\n");
}

/* A plain DEALER sends to a CURVE endpoint and must get nothing back. The
 * send itself may time out: once the server refuses the handshake, the
 * socket drops its pipe until it reconnects and has nowhere to queue. */
static void plain_gets_nothing(void *plain, const msgpack_sbuffer *sb, const char *what)
{
    if (!tl_send_request(plain, sb->data, sb->size))
        return;
    uint8_t *reply = NULL;
    size_t rlen = 0;
    ck_assert_msg(!tl_recv(plain, LT_SILENCE_MS, &reply, &rlen), "%s", what);
}

/* An unknown key and a plain socket get no answer; nothing is appended. */
static void curve_strangers(tl_ledger *L, const curve_env *c, void *ctx)
{
    /* An unknown key: ZAP denies the handshake, no ack ever comes. */
    const char *a_unknown[] = {
        "--curve-server-key", c->server.pub, "--curve-secret",   c->stranger.file,
        "--retries",          "2",           "--ack-timeout-ms", "300",
        c->f_spoof,           NULL};
    tl_sent s = tl_send_run(L, "unknown", a_unknown);
    ck_assert_int_eq(s.rc, 1);
    ck_assert_uint_eq(tl_log_head(L), 0);

    /* A plain (non-CURVE) DEALER gets no answer either. */
    void *plain = tl_dealer(ctx, L->ingest);
    evlist *e = ev_new();
    ev_add_sale(e, "plain-1", 5);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    req_encode(&sb, 1, "dist-curve", false, e);
    plain_gets_nothing(plain, &sb, "a plain client got a reply");
    ck_assert_uint_eq(tl_log_head(L), 0);
    ev_free(e);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(plain);
}

/* Each key sends under its own name and within its role. */
static void curve_roles(tl_ledger *L, const curve_env *c)
{
    /* The sales key: the sale is appended under its name, the close is forbidden. */
    const char *a_sales[] = {"--curve-server-key", c->server.pub, "--curve-secret",
                             c->sales.file,        c->f_sale,     NULL};
    tl_assert_sent(tl_send_run(L, "sales", a_sales), 1, 1, 0, 1);
    char *err = tl_send_stderr(L, "sales");
    ck_assert_msg(strstr(err, "line 2 (id cs-2): forbidden") != NULL, "stderr: %s", err);
    free(err);
    uint64_t seq = 0;
    ck_assert_int_eq(tl_log_lookup(L, "dist-curve", "cs-1", &seq), TLY_OK);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(tl_log_lookup(L, "dist-curve", "cs-2", &seq), TLY_NOT_FOUND);

    /* Declaring another source than the key's name is forbidden. */
    const char *a_spoof[] = {"--curve-server-key", c->server.pub, "--curve-secret", c->sales.file,
                             "--source",           "dist-other",  c->f_spoof,       NULL};
    tl_assert_sent(tl_send_run(L, "spoof", a_spoof), 1, 0, 0, 1);
    err = tl_send_stderr(L, "spoof");
    ck_assert_msg(strstr(err, "forbidden") != NULL, "stderr: %s", err);
    free(err);
    ck_assert_int_eq(tl_log_lookup(L, "dist-other", "cs-3", &seq), TLY_NOT_FOUND);
    ck_assert_int_eq(tl_log_lookup(L, "dist-curve", "cs-3", &seq), TLY_NOT_FOUND);

    /* Declaring its own name is fine. */
    const char *a_own[] = {"--curve-server-key", c->server.pub, "--curve-secret", c->sales.file,
                           "--source",           "dist-curve",  c->f_spoof,       NULL};
    tl_assert_sent(tl_send_run(L, "own", a_own), 0, 1, 0, 0);

    /* The finance key may close. */
    const char *a_fin[] = {"--curve-server-key", c->server.pub, "--curve-secret",
                           c->fin.file,          c->f_close,    NULL};
    tl_assert_sent(tl_send_run(L, "finance", a_fin), 0, 1, 0, 0);
    ck_assert_int_eq(tl_log_lookup(L, "fin-curve", "cf-1", &seq), TLY_OK);
    ck_assert_uint_eq(tl_log_head(L), 3);
}

START_TEST(test_curve_roles)
{
    tl_ledger L;
    tl_init(&L);
    curve_env c;
    curve_start(&L, &c);
    void *ctx = tl_ctx();
    curve_strangers(&L, &c, ctx);
    curve_roles(&L, &c);

    /* log-read is behind CURVE too: an authorized key reads, a plain socket
     * gets nothing. */
    void *lr = tl_connect(tl_sock(ctx, ZMQ_DEALER, c.server.pub, &c.fin), L.logread);
    check_logread(lr, &L, 1, 10, 3);
    zmq_close(lr);
    void *lr_plain = tl_dealer(ctx, L.logread);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    logread_request(&sb, 1, 10);
    plain_gets_nothing(lr_plain, &sb, "a plain client read the log of a CURVE ledger");
    zmq_close(lr_plain);

    msgpack_sbuffer_destroy(&sb);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* Every event type against every role (SPEC sections 4 and 10): sales may
 * send sale, return and referral, certs certification, claims claim submit
 * and cancel, finance everything (rate only finance). */
#define RM_KINDS 13

static const char *const rm_events[RM_KINDS] = {
    "{\"type\":\"sale\",\"id\":\"%s-0\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"sku\":\"S\",\"qty\":1,\"amount\":5,\"currency\":\"USD\"}",
    "{\"type\":\"return\",\"id\":\"%s-1\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"sale\":\"x-0\",\"qty\":1,\"amount\":5,\"currency\":\"USD\"}",
    "{\"type\":\"certification\",\"id\":\"%s-2\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"person\":\"ann\",\"cert\":\"cx\",\"action\":\"earned\"}",
    "{\"type\":\"claim\",\"id\":\"%s-3\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"claim\":\"c1\",\"action\":\"submit\",\"amount\":100}",
    "{\"type\":\"claim\",\"id\":\"%s-4\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"claim\":\"c1\",\"action\":\"cancel\"}",
    "{\"type\":\"claim\",\"id\":\"%s-5\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"claim\":\"c1\",\"action\":\"approve\",\"amount\":100}",
    "{\"at\":1735689600000,\"currency\":\"USD\",\"id\":\"%s-6\",\"mdf_expiry_periods\":2,"
    "\"period\":\"quarter\",\"program\":\"apex\",\"rebate\":{\"brackets\":[{\"bps\":100,"
    "\"from\":0}],\"mode\":\"retroactive\"},\"tier_window_periods\":2,\"tiers\":[{\"mdf_bps\":"
    "100,\"min_certs\":0,\"min_revenue\":0,\"name\":\"Authorized\"}],\"type\":\"program\","
    "\"version\":1}",
    "{\"type\":\"partner\",\"id\":\"%s-7\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"name\":\"Acme\",\"program\":\"apex\",\"kind\":\"var\"}",
    "{\"type\":\"close\",\"id\":\"%s-8\",\"at\":1735693342313,\"program\":\"apex\","
    "\"period\":\"2025-Q1\"}",
    "{\"type\":\"payout\",\"id\":\"%s-9\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"period\":\"2025-Q1\",\"amount\":5}",
    "{\"type\":\"adjust\",\"id\":\"%s-10\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"account\":\"mdf\",\"amount\":-5,\"reason\":\"correction\"}",
    "{\"type\":\"rate\",\"id\":\"%s-11\",\"at\":1735693342313,\"currency\":\"EUR\","
    "\"to\":\"USD\",\"rate\":\"1.0823\"}",
    "{\"type\":\"referral\",\"id\":\"%s-12\",\"at\":1735693342313,\"partner\":\"acme\","
    "\"deal\":\"D-1\",\"amount\":5,\"currency\":\"USD\"}",
};

typedef struct rm_role {
    const char *name;  /* source name and key file name */
    const char *roles; /* as written in authorized_keys */
    const char *allow; /* RM_KINDS characters: '1' allowed */
    tl_keys keys;
} rm_role;

START_TEST(test_curve_role_matrix)
{
    tl_ledger L;
    tl_init(&L);
    rm_role roles[] = {{"r-sales", "sales", "1100000000001", {{0}, {0}, {0}}},
                       {"r-certs", "certs", "0010000000000", {{0}, {0}, {0}}},
                       {"r-claims", "claims", "0001100000000", {{0}, {0}, {0}}},
                       {"r-finance", "finance", "1111111111111", {{0}, {0}, {0}}},
                       {"r-mixed", "sales,certs", "1110000000001", {{0}, {0}, {0}}}};
    const size_t n_roles = sizeof roles / sizeof roles[0];
    tl_keys server;
    tl_make_keys(&L, "server", &server);
    char authz[700], text[2048] = "";
    snprintf(authz, sizeof authz, "%s/authorized_keys", L.dir);
    for (size_t i = 0; i < n_roles; i++) {
        tl_make_keys(&L, roles[i].name, &roles[i].keys);
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s %s %s\n", roles[i].keys.pub, roles[i].name,
                 roles[i].roles);
    }
    tl_write_text(authz, text);
    const char *extra[] = {"--curve-secret", server.file, "--authorized-keys", authz, NULL};
    tl_start(&L, extra);
    void *ctx = tl_ctx();
    lt_reply *r = reply_new();
    for (size_t i = 0; i < n_roles; i++) {
        void *d = tl_connect(tl_sock(ctx, ZMQ_DEALER, server.pub, &roles[i].keys), L.ingest);
        evlist *e = ev_new();
        for (int k = 0; k < RM_KINDS; k++) {
            char json[1024];
            snprintf(json, sizeof json, rm_events[k], roles[i].name);
            ev_add_json(e, json);
        }
        ingest(d, 1, NULL, false, e, r);
        ck_assert_msg(r->whole == TLY_OK, "%s: %s (%s)", roles[i].name, tly_err_name(r->whole),
                      r->msg);
        for (int k = 0; k < RM_KINDS; k++) {
            bool allowed = roles[i].allow[k] == '1';
            ck_assert_msg(allowed ? r->res[k].err == TLY_OK : r->res[k].err == TLY_FORBIDDEN,
                          "role %s, event %d: %s (%s)", roles[i].roles, k,
                          tly_err_name(r->res[k].err), r->res[k].message);
            char id[64];
            snprintf(id, sizeof id, "%s-%d", roles[i].name, k);
            uint64_t seq = 0;
            ck_assert_int_eq(tl_log_lookup(&L, roles[i].name, id, &seq),
                             allowed ? TLY_OK : TLY_NOT_FOUND);
            if (allowed)
                ck_assert_uint_eq(seq, r->res[k].seq);
        }
        ev_free(e);
        zmq_close(d);
    }
    reply_free(r);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

START_TEST(test_loopback_only_without_curve)
{
    tl_ledger L;
    tl_init(&L);
    char wide[64];
    snprintf(wide, sizeof wide, "tcp://0.0.0.0:%d", tu_free_port());
    char out[700];
    snprintf(out, sizeof out, "%s/refused.log", L.dir);
    const char *argv[] = {tu_tally(), "ledger", "--data",     L.data,    "--ingest", wide,
                          "--events", L.events, "--log-read", L.logread, NULL};
    int rc = tl_wait_exit(tl_spawn(argv, out, out), TL_EXIT_MS);
    ck_assert_msg(rc > 0 && rc < 128, "tally ledger on %s without CURVE: exit %d", wide, rc);
    char *text = tu_read_file(out, NULL);
    ck_assert_msg(text && strstr(text, wide), "the refusal does not name %s: %s", wide, text);
    free(text);

    /* --insecure allows it; 0.0.0.0 includes the loopback interface. */
    snprintf(L.ingest, sizeof L.ingest, "%s", wide);
    char loop[64];
    snprintf(loop, sizeof loop, "tcp://127.0.0.1:%s", strrchr(wide, ':') + 1);
    const char *extra[] = {"--insecure", NULL};
    tl_start(&L, extra);
    snprintf(L.ingest, sizeof L.ingest, "%s", loop);
    char file[700];
    snprintf(file, sizeof file, "%s/one.jsonl", L.dir);
    tl_write_sales(file, "wide", 1);
    const char *args[] = {"--source", "dist-wide", file, NULL};
    tl_assert_sent(tl_send_run(&L, "wide", args), 0, 1, 0, 0);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* start-up: one writer per log, option and key-file errors            */

/* Runs `tally ledger ARGS...` (on free ports, in DIR/data unless ARGS say
 * otherwise) expecting it to refuse to start; returns its exit code and
 * leaves its output in DIR/refused.log. */
static int ledger_refuses(const tl_ledger *L, const char *const *args)
{
    const char *argv[40];
    int n = 0;
    char ing[64], ev[64], lr[64], out[700];
    tu_endpoint(ing, sizeof ing);
    tu_endpoint(ev, sizeof ev);
    tu_endpoint(lr, sizeof lr);
    const char *fixed[] = {tu_tally(), "ledger",   "--data", L->data,      "--ingest",
                           ing,        "--events", ev,       "--log-read", lr};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    for (; *args && n < 39; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    snprintf(out, sizeof out, "%s/refused.log", L->dir);
    unlink(out);
    return tl_wait_exit(tl_spawn(argv, out, out), TL_EXIT_MS);
}

static void assert_refusal_says(const tl_ledger *L, const char *needle)
{
    char out[700];
    snprintf(out, sizeof out, "%s/refused.log", L->dir);
    char *text = tu_read_file(out, NULL);
    ck_assert_msg(text && strstr(text, needle), "expected '%s' in: %s", needle, text);
    free(text);
}

START_TEST(test_startup_refusals)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);

    /* A second ledger on the same data directory must not start. */
    const char *none[] = {NULL};
    ck_assert_int_eq(ledger_refuses(&L, none), 1);
    assert_refusal_says(&L, L.logdir);
    char file[700];
    snprintf(file, sizeof file, "%s/one.jsonl", L.dir);
    tl_write_sales(file, "solo", 3);
    const char *args[] = {"--source", "dist-solo", file, NULL};
    tl_assert_sent(tl_send_run(&L, "solo", args), 0, 3, 0, 0);

    /* Usage errors exit 2. */
    const char *bogus[] = {"--bogus", NULL};
    ck_assert_int_eq(ledger_refuses(&L, bogus), 2);
    tl_keys k;
    tl_make_keys(&L, "server", &k);
    const char *half[] = {"--curve-secret", k.file, NULL};
    ck_assert_int_eq(ledger_refuses(&L, half), 2);

    /* A bad authorized-keys line: exit 1, the line named. */
    char other[700], authz[700], text[256];
    snprintf(other, sizeof other, "%s/other-data", L.dir);
    snprintf(authz, sizeof authz, "%s/bad_keys", L.dir);
    snprintf(text, sizeof text, "%s dist-a sales\nnot-a-key dist-b sales\n", k.pub);
    tl_write_text(authz, text);
    const char *badkeys[] = {"--data", other, "--curve-secret", k.file, "--authorized-keys",
                             authz,    NULL};
    ck_assert_int_eq(ledger_refuses(&L, badkeys), 1);
    assert_refusal_says(&L, "line 2");
    snprintf(text, sizeof text, "%s dist-a sellers\n", k.pub);
    tl_write_text(authz, text);
    ck_assert_int_eq(ledger_refuses(&L, badkeys), 1);
    assert_refusal_says(&L, "line 1");

    ck_assert_uint_eq(tl_log_head(&L), 3);
    tl_done(&L);
}
END_TEST

/* An authorized-keys file of TLY_AUTH_KEYS_MAX keys after a comment line:
 * the all-zero key (Z85 "0" x 40) as dist-fill, key's as dist-WHO last;
 * over, one more all-zero key after them. */
static void write_auth_keys(const char *path, const tl_keys *key, const char *who, bool over)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# %u keys%s\n", TLY_AUTH_KEYS_MAX, over ? " and one more" : "");
    for (unsigned i = 0; i + 1 < TLY_AUTH_KEYS_MAX; i++)
        fprintf(f, "%040d dist-fill sales\n", 0);
    fprintf(f, "%s dist-%s sales\n", key->pub, who);
    if (over)
        fprintf(f, "%040d dist-fill sales\n", 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* An authorized-keys file whose first line is a comment of
 * TLY_AUTH_LINE_BYTES_MAX bytes before its newline (over: one more) and
 * whose second holds key's key as dist-WHO. */
static void write_long_comment_keys(const char *path, const tl_keys *key, const char *who,
                                    bool over)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputc('#', f);
    for (size_t i = 1; i < TLY_AUTH_LINE_BYTES_MAX + (over ? 1u : 0u); i++)
        fputc('x', f);
    fprintf(f, "\n%s dist-%s sales\n", key->pub, who);
    ck_assert_int_eq(fclose(f), 0);
}

/* A bound of the authorized-keys file at its edge: the file write makes one
 * past it refuses the ledger's start with exit 1 and says want; the file at
 * the edge is loaded whole (the key it names last, who's, sends a sale). */
static void auth_file_edge(const char *who,
                           void (*write)(const char *path, const tl_keys *key, const char *who,
                                         bool over),
                           const char *want)
{
    tl_ledger L;
    tl_init(&L);
    tl_keys server, key;
    tl_make_keys(&L, "server", &server);
    tl_make_keys(&L, who, &key);
    char authz[700];
    snprintf(authz, sizeof authz, "%s/authorized_keys", L.dir);
    const char *extra[] = {"--curve-secret", server.file, "--authorized-keys", authz, NULL};

    write(authz, &key, who, true);
    ck_assert_int_eq(ledger_refuses(&L, extra), 1);
    assert_refusal_says(&L, want);

    write(authz, &key, who, false);
    tl_start(&L, extra);
    char file[700], source[64], id[64];
    snprintf(file, sizeof file, "%s/%s.jsonl", L.dir, who);
    snprintf(source, sizeof source, "dist-%s", who);
    snprintf(id, sizeof id, "%s-0", who);
    tl_write_sales(file, who, 1);
    const char *args[] = {"--curve-server-key", server.pub, "--curve-secret", key.file, file, NULL};
    tl_assert_sent(tl_send_run(&L, who, args), 0, 1, 0, 0);
    ck_assert_int_eq(tl_log_lookup(&L, source, id, &(uint64_t){0}), TLY_OK);
    tl_done(&L);
}

/* TLY_AUTH_KEYS_MAX at its edge: a file of that many keys is loaded whole,
 * one more key refuses the start with the line named. The extra key is the
 * all-zero key: decoded into a slot past the table (as it once was) it
 * zeroed the count and was let in. */
START_TEST(test_auth_keys_max)
{
    char want[64];
    snprintf(want, sizeof want, "line %u: more than %u keys", TLY_AUTH_KEYS_MAX + 2,
             TLY_AUTH_KEYS_MAX);
    auth_file_edge("last", write_auth_keys, want);
}
END_TEST

/* TLY_AUTH_LINE_BYTES_MAX at its edge: a comment line of that many bytes is
 * one line (read in 512-byte pieces, as it once was, its tail was taken for
 * a key line), one byte more refuses the start with the line named. */
START_TEST(test_auth_line_bytes_max)
{
    char want[64];
    snprintf(want, sizeof want, "line 1: longer than %u bytes", TLY_AUTH_LINE_BYTES_MAX);
    auth_file_edge("long", write_long_comment_keys, want);
}
END_TEST

/* An authorized-keys file whose second line, after a comment, gives key's
 * key to dist-WHO with the roles "claims,sales"; over: a NUL byte before
 * ",sales" (read as a string, the line once ended there: the key was let in
 * with claims alone). */
static void write_nul_keys(const char *path, const tl_keys *key, const char *who, bool over)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# one key\n%s dist-%s claims", key->pub, who);
    if (over)
        fputc('\0', f);
    fprintf(f, ",sales\n");
    ck_assert_int_eq(fclose(f), 0);
}

/* A NUL byte in an authorized-keys line refuses the start, the file and the
 * line named, as any malformed line does; without it the line's every role
 * holds (its key sends a sale). The query service loads the file with the
 * same loader and refuses it the same way. */
START_TEST(test_auth_line_nul)
{
    const char *want = "authorized_keys: line 2: a NUL byte";
    auth_file_edge("nul", write_nul_keys, want);

    tl_ledger L;
    tl_init(&L);
    tl_keys server, key;
    tl_make_keys(&L, "server", &server);
    tl_make_keys(&L, "nul", &key);
    char authz[700], ep[64], out[700];
    snprintf(authz, sizeof authz, "%s/authorized_keys", L.dir);
    write_nul_keys(authz, &key, "nul", true);
    tu_endpoint(ep, sizeof ep);
    snprintf(out, sizeof out, "%s/refused.log", L.dir);
    const char *argv[] = {tu_tally(),
                          "query",
                          "--data",
                          L.data,
                          "--query",
                          ep,
                          "--curve-secret",
                          server.file,
                          "--authorized-keys",
                          authz,
                          NULL};
    ck_assert_int_eq(tl_wait_exit(tl_spawn(argv, out, out), TL_EXIT_MS), 1);
    assert_refusal_says(&L, want);
    tl_done(&L);
}
END_TEST

/* An authorized-keys file whose first line gives a partner portal the
 * all-zero key and the role partner:Müller (over: the ü in Latin-1, a byte
 * that is not UTF-8) and whose second holds key's key as dist-WHO. */
static void write_partner_keys(const char *path, const tl_keys *key, const char *who, bool over)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%040d portal partner:%s\n", 0, over ? "M\xfcller" : "M\xc3\xbcller");
    fprintf(f, "%s dist-%s sales\n", key->pub, who);
    ck_assert_int_eq(fclose(f), 0);
}

/* A partner:ID names a partner an event can name (UTF-8): an ID that is
 * not UTF-8 (a file saved in Latin-1) refuses the start with the line
 * named, where it was taken and the portal's key answered for a partner no
 * event can name (fuzz_auth found it); the same ID in UTF-8 is taken. */
START_TEST(test_auth_partner_utf8)
{
    auth_file_edge("portal", write_partner_keys, "line 1: roles must be");
}
END_TEST

/* A secret key file is its key and white space: a NUL right after the key
 * ("KEY\0...", a file written from a buffer) refuses the start, where the
 * key was taken and the rest ignored (fuzz_auth found it). */
START_TEST(test_curve_secret_nul)
{
    tl_ledger L;
    tl_init(&L);
    tl_keys server;
    tl_make_keys(&L, "server", &server);
    char secret[700], authz[700], text[128];
    snprintf(secret, sizeof secret, "%s/nul.key", L.dir);
    snprintf(authz, sizeof authz, "%s/authorized_keys", L.dir);
    snprintf(text, sizeof text, "%s dist-a sales\n", server.pub);
    tl_write_text(authz, text);
    size_t key_chars = strlen(server.sec);
    char bytes[sizeof server.sec + 2];
    memcpy(bytes, server.sec, key_chars);
    memcpy(bytes + key_chars, "\0x\n", 3);
    ck_assert(tu_write_file(secret, bytes, key_chars + 3));
    const char *args[] = {"--curve-secret", secret, "--authorized-keys", authz, NULL};
    ck_assert_int_eq(ledger_refuses(&L, args), 1);
    assert_refusal_says(&L, "expected a 40-character Z85 secret key");
    tl_done(&L);
}
END_TEST

/* Rounds of test_auth_bound_on_start: bound by the handler's own thread,
 * the endpoint was still free in most rounds, so a handful always finds it. */
#define AUTH_START_ROUNDS 20

/* tly_auth_start returns with the ZAP handler bound. libzmq lets a CURVE
 * client in unchecked while no handler is bound, so a handler that binds
 * later than the CURVE sockets (from its own thread) could let a stranger
 * read the events socket: the endpoint must be taken here already. */
START_TEST(test_auth_bound_on_start)
{
    tl_ledger L;
    tl_init(&L);
    tl_keys key;
    tl_make_keys(&L, "reader", &key);
    char authz[700];
    snprintf(authz, sizeof authz, "%s/authorized_keys", L.dir);
    FILE *f = fopen(authz, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s reader reader\n", key.pub);
    ck_assert_int_eq(fclose(f), 0);
    for (int i = 0; i < AUTH_START_ROUNDS; i++) {
        char msg[256] = "";
        tly_auth *auth = NULL;
        ck_assert_int_eq(tly_auth_load(authz, &auth, msg, sizeof msg), TLY_OK);
        void *ctx = zmq_ctx_new();
        ck_assert_int_eq(tly_auth_start(auth, ctx), TLY_OK);
        void *probe = zmq_socket(ctx, ZMQ_REP);
        int rc = zmq_bind(probe, "inproc://zeromq.zap.01");
        int e = zmq_errno();
        zmq_close(probe);
        zmq_ctx_term(ctx);
        tly_auth_free(auth);
        ck_assert_msg(rc != 0 && e == EADDRINUSE,
                      "round %d: the ZAP endpoint was free after tly_auth_start", i);
    }
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 8. SIGTERM while producers send                                     */

#define ST_RAW_REQUESTS 10
#define ST_RAW_EVENTS 20
#define ST_BG_EVENTS 6000

static evlist *raw_request_events(int r)
{
    evlist *e = ev_new();
    for (int i = 0; i < ST_RAW_EVENTS; i++) {
        char id[32];
        snprintf(id, sizeof id, "raw-%d", r * ST_RAW_EVENTS + i);
        ev_add_sale(e, id, 1 + i);
    }
    return e;
}

static int g_unavailable; /* `unavailable` replies seen, for the log */

/* Records the seqs of an accepted reply in acked[] (0: not acknowledged). */
static void note_acks(const lt_reply *r, uint64_t acked[][ST_RAW_EVENTS])
{
    if (r->whole != TLY_OK) {
        ck_assert_msg(r->whole == TLY_UNAVAILABLE, "whole error %s", tly_err_name(r->whole));
        g_unavailable++;
        return;
    }
    ck_assert_uint_ge(r->req, 1);
    ck_assert_uint_le(r->req, ST_RAW_REQUESTS);
    for (uint32_t i = 0; i < r->count; i++) {
        ck_assert_msg(r->res[i].err == TLY_OK, "raw event refused: %s",
                      tly_err_name(r->res[i].err));
        acked[r->req - 1][i] = r->res[i].seq;
    }
}

/* Sends the raw requests on d around a SIGTERM to the ledger: three
 * acknowledged before the signal, the rest around it. Notes every ack in
 * acked[] and waits for the ledger to exit 0. */
static void send_around_sigterm(tl_ledger *L, void *d, lt_reply *r, const msgpack_sbuffer *frames,
                                uint64_t acked[][ST_RAW_EVENTS])
{
    for (int k = 0; k < 3; k++) {
        ingest_frame(d, frames[k].data, frames[k].size, r);
        ck_assert_int_eq(r->whole, TLY_OK);
        note_acks(r, acked);
    }
    tl_send_frame(d, frames[3].data, frames[3].size);
    kill(L->pid, SIGTERM);
    for (int k = 4; k < ST_RAW_REQUESTS; k++)
        tl_send_frame(d, frames[k].data, frames[k].size);
    int code = tl_wait_exit(L->pid, TL_EXIT_MS);
    L->pid = 0;
    ck_assert_int_eq(code, 0);
    uint8_t *buf;
    size_t len;
    while (tl_recv(d, 300, &buf, &len)) {
        reply_decode(buf, len, r);
        free(buf);
        note_acks(r, acked);
    }
}

/* Every acknowledged event is in the log at its acknowledged seq. Returns
 * how many were acknowledged. */
static int assert_acked_in_log(const tl_ledger *L, uint64_t acked[][ST_RAW_EVENTS])
{
    int n_acked = 0;
    for (int k = 0; k < ST_RAW_REQUESTS; k++)
        for (int i = 0; i < ST_RAW_EVENTS; i++) {
            if (!acked[k][i])
                continue;
            char id[32];
            snprintf(id, sizeof id, "raw-%d", k * ST_RAW_EVENTS + i);
            uint64_t seq = 0;
            ck_assert_msg(tl_log_lookup(L, "dist-raw", id, &seq) == TLY_OK && seq == acked[k][i],
                          "acknowledged %s (seq %llu) lost by SIGTERM", id,
                          (unsigned long long)acked[k][i]);
            n_acked++;
        }
    return n_acked;
}

/* Resends every raw request on d: acknowledged events are duplicates at
 * their acknowledged seq. Returns how many unacknowledged events were
 * stored all the same. */
static int resend_raw(void *d, lt_reply *r, const msgpack_sbuffer *frames,
                      uint64_t acked[][ST_RAW_EVENTS])
{
    int unacked_stored = 0;
    for (int k = 0; k < ST_RAW_REQUESTS; k++) {
        ingest_frame(d, frames[k].data, frames[k].size, r);
        ck_assert_int_eq(r->whole, TLY_OK);
        for (int i = 0; i < ST_RAW_EVENTS; i++) {
            ck_assert_int_eq(r->res[i].err, TLY_OK);
            if (acked[k][i])
                assert_result_seq(r, (uint32_t)i, acked[k][i], true);
            else if (r->res[i].dup)
                unacked_stored++;
        }
    }
    return unacked_stored;
}

START_TEST(test_sigterm_keeps_acks)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/bg.jsonl", L.dir);
    tl_write_sales(file, "bg", ST_BG_EVENTS);
    const char *args[] = {"--source", "dist-bg", "--ack-timeout-ms", "500",
                          "--batch",  "20",      "--window",         "2",
                          file,       NULL};
    pid_t bg = tl_send_spawn(&L, "bg", NULL, args);
    tl_wait_head(&L, 500);

    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    lt_reply *r = reply_new();
    evlist *reqs[ST_RAW_REQUESTS];
    msgpack_sbuffer frames[ST_RAW_REQUESTS];
    uint64_t acked[ST_RAW_REQUESTS][ST_RAW_EVENTS] = {{0}};
    for (int k = 0; k < ST_RAW_REQUESTS; k++) {
        reqs[k] = raw_request_events(k);
        msgpack_sbuffer_init(&frames[k]);
        req_encode(&frames[k], (uint64_t)k + 1, "dist-raw", false, reqs[k]);
    }
    send_around_sigterm(&L, d, r, frames, acked);
    int n_acked = assert_acked_in_log(&L, acked);
    fprintf(stderr,
            "test_ledger sigterm: %d raw events acknowledged before exit, %d requests "
            "answered unavailable\n",
            n_acked, g_unavailable);

    /* Restart: resends of acknowledged events are duplicates at the same seq. */
    tl_start(&L, NULL);
    zmq_close(d);
    d = tl_dealer(ctx, L.ingest);
    int unacked_stored = resend_raw(d, r, frames, acked);
    fprintf(stderr, "test_ledger sigterm: %d raw events stored without an ack\n", unacked_stored);
    tl_sent s = tl_send_wait(&L, "bg", bg);
    tl_assert_delivered(s, ST_BG_EVENTS, "background producer");
    ck_assert_uint_eq(tl_log_head(&L), ST_BG_EVENTS + ST_RAW_REQUESTS * ST_RAW_EVENTS);
    lt_scan scan;
    log_scan(&L, &scan);
    assert_all_present(&L, &scan, "dist-bg", "bg", ST_BG_EVENTS);
    assert_all_present(&L, &scan, "dist-raw", "raw", ST_RAW_REQUESTS * ST_RAW_EVENTS);
    scan_free(&scan);

    for (int k = 0; k < ST_RAW_REQUESTS; k++) {
        ev_free(reqs[k]);
        msgpack_sbuffer_destroy(&frames[k]);
    }
    reply_free(r);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 9. log-read and the events PUB                                      */

static void check_logread_error(void *lr, const void *buf, size_t len)
{
    size_t rlen;
    uint8_t *reply = tl_rpc(lr, buf, len, &rlen);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)reply, rlen, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *err = tl_map_get(&u.data, "error");
    ck_assert_msg(err && err->type == MSGPACK_OBJECT_STR, "no error for a bad log-read request");
    ck_assert_ptr_null(tl_map_get(&u.data, "records"));
    msgpack_unpacked_destroy(&u);
    free(reply);
}

START_TEST(test_logread)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/lr.jsonl", L.dir);
    tl_write_sales(file, "lr", 25);
    const char *args[] = {"--source", "dist-lr", file, NULL};
    tl_assert_sent(tl_send_run(&L, "lr", args), 0, 25, 0, 0);

    void *ctx = tl_ctx();
    void *lr = tl_dealer(ctx, L.logread);
    check_logread(lr, &L, 1, 10, 10);
    check_logread(lr, &L, 20, 10, 6);   /* up to the head */
    check_logread(lr, &L, 26, 10, 0);   /* past the head */
    check_logread(lr, &L, 0, 3, 3);     /* 0 reads from 1 */
    check_logread_error(lr, "\xc1", 1); /* not MessagePack */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2); /* {"from": "1", "max": 10} */
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_str_with_body(&pk, "1", 1);
    msgpack_pack_str_with_body(&pk, "max", 3);
    msgpack_pack_uint32(&pk, 10);
    check_logread_error(lr, sb.data, sb.size);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1); /* {"from": 1} */
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_uint32(&pk, 1);
    check_logread_error(lr, sb.data, sb.size);
    check_logread(lr, &L, 1, 10, 10); /* still serving */

    msgpack_sbuffer_destroy(&sb);
    zmq_close(lr);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* Checks a published record against the log and that seqs arrive in
 * increasing order (*last); returns its event id. */
static void check_published(const tl_ledger *L, const uint8_t *raw, size_t len, char *id,
                            size_t cap, uint64_t *last)
{
    tly_record rec;
    ck_assert_int_eq(tly_record_decode(raw, len, &rec), TLY_OK);
    ck_assert_msg(rec.seq > *last, "published seq %llu after %llu", (unsigned long long)rec.seq,
                  (unsigned long long)*last);
    *last = rec.seq;
    size_t slen;
    uint8_t *stored = log_raw(L, rec.seq, &slen);
    ck_assert_msg(slen == len && memcmp(stored, raw, len) == 0,
                  "published record %llu differs from the stored bytes",
                  (unsigned long long)rec.seq);
    free(stored);
    tly_ev_type type;
    tly_str sid;
    ck_assert_int_eq(tly_event_peek_id(rec.event, rec.event_len, &type, &sid), TLY_OK);
    ck_assert_int_eq(type, TLY_EV_SALE);
    snprintf(id, cap, "%.*s", (int)sid.len, sid.ptr);
}

START_TEST(test_events_pub)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    void *sub = tl_connect(tl_sock(ctx, ZMQ_SUB, NULL, NULL), L.events);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "sale", 4), 0);
    lt_reply *r = reply_new();
    char topic[32], id[80];
    uint8_t *raw = NULL;
    size_t len = 0;
    uint64_t last_seq = 0;

    /* A subscription takes effect some time after connect: send sales until
     * one is seen (each is a new event, so each is published once). */
    bool got = false;
    for (int k = 0; !got; k++) {
        ck_assert_msg(k < 100, "no sale published to a subscriber");
        evlist *e = ev_new();
        char sid[32];
        snprintf(sid, sizeof sid, "pub-%d", k);
        ev_add_sale(e, sid, 10 + k);
        ingest(d, (uint64_t)k + 1, "dist-pub", false, e, r);
        assert_result_seq(r, 0, (uint64_t)k + 1, false);
        ev_free(e);
        got = tl_sub_recv(sub, 200, topic, sizeof topic, &raw, &len);
    }
    ck_assert_str_eq(topic, "sale");
    check_published(&L, raw, len, id, sizeof id, &last_seq);
    ck_assert_msg(strncmp(id, "pub-", 4) == 0, "published %s", id);
    free(raw);

    /* A partner event is not published on the "sale" topic; the sale after it is. */
    evlist *e = ev_new();
    ev_add_json(e, "{\"type\":\"partner\",\"id\":\"pub-partner\",\"at\":1735693342313,"
                   "\"partner\":\"acme\",\"name\":\"Acme\",\"program\":\"apex\","
                   "\"kind\":\"var\"}");
    ev_add_sale(e, "pub-final", 99);
    ingest(d, 500, "dist-pub", false, e, r);
    ck_assert_int_eq(r->whole, TLY_OK);
    ck_assert_int_eq(r->res[0].err, TLY_OK);
    uint64_t final_seq = r->res[1].seq;
    bool final = false;
    while (!final) {
        ck_assert_msg(tl_sub_recv(sub, TL_REPLY_MS, topic, sizeof topic, &raw, &len),
                      "pub-final (seq %llu) was not published", (unsigned long long)final_seq);
        ck_assert_str_eq(topic, "sale");
        check_published(&L, raw, len, id, sizeof id, &last_seq);
        final = strcmp(id, "pub-final") == 0;
        free(raw);
    }
    ev_free(e);
    reply_free(r);
    zmq_close(sub);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* Receives the records published after seq `after` (earlier ones still
 * queued are skipped) and checks they are exactly ids[0..n) in seq order
 * from after + 1, each on its event type's topic and as stored. */
static void expect_published(void *sub, const tl_ledger *L, uint64_t after, const char *const *ids,
                             uint32_t n)
{
    char topic[32];
    uint8_t *raw = NULL;
    size_t len = 0;
    for (uint32_t i = 0; i < n;) {
        ck_assert_msg(tl_sub_recv(sub, TL_REPLY_MS, topic, sizeof topic, &raw, &len),
                      "record %llu (%s) was not published", (unsigned long long)(after + 1 + i),
                      ids[i]);
        tly_record rec;
        ck_assert_int_eq(tly_record_decode(raw, len, &rec), TLY_OK);
        if (rec.seq > after) {
            ck_assert_uint_eq(rec.seq, after + 1 + i);
            size_t slen;
            uint8_t *stored = log_raw(L, rec.seq, &slen);
            ck_assert(slen == len && memcmp(stored, raw, len) == 0);
            free(stored);
            tly_ev_type type;
            tly_str id;
            ck_assert_int_eq(tly_event_peek_id(rec.event, rec.event_len, &type, &id), TLY_OK);
            ck_assert_str_eq(topic, tly_ev_type_name(type));
            ck_assert_msg(tly_str_eq(id, ids[i]), "record %llu is %.*s, expected %s",
                          (unsigned long long)rec.seq, (int)id.len, id.ptr, ids[i]);
            i++;
        }
        free(raw);
    }
}

/* One request: a new sale, a dup of the first warm-up sale, a refused
 * sale, a new partner, then `more` new sales; checks the results and
 * what is published. Small requests are committed by the main thread,
 * large ones by the commit thread: both publish the same way. */
static void pub_mixed(void *d, void *sub, const tl_ledger *L, uint64_t req, uint32_t more,
                      uint64_t *head)
{
    static char names[24][32];
    const char *ids[24];
    evlist *e = ev_new();
    char first[32];
    snprintf(first, sizeof first, "mix-%llu-a", (unsigned long long)req);
    ev_add_sale(e, first, 11);
    memcpy(names[0], first, sizeof first);
    ev_add_sale(e, "warm-0", 10);
    ev_add_sale(e, "mix-refused", 0); /* amount 0: bad_field */
    snprintf(names[1], sizeof names[1], "mix-%llu-p", (unsigned long long)req);
    char json[400];
    snprintf(json, sizeof json,
             "{\"type\":\"partner\",\"id\":\"%s\",\"at\":1735693342313,\"partner\":\"acme\","
             "\"name\":\"Acme\",\"program\":\"apex\",\"kind\":\"var\"}",
             names[1]);
    ev_add_json(e, json);
    for (uint32_t k = 0; k < more; k++) {
        char sid[32];
        snprintf(sid, sizeof sid, "mix-%llu-%u", (unsigned long long)req, k);
        ev_add_sale(e, sid, 20 + k);
        memcpy(names[2 + k], sid, sizeof sid);
    }
    lt_reply *r = reply_new();
    ingest(d, req, "dist-mix", false, e, r);
    assert_result_seq(r, 0, *head + 1, false);
    assert_result_seq(r, 1, 1, true);
    assert_result_err(r, 2, TLY_BAD_FIELD, "amount");
    for (uint32_t k = 0; k < more + 1; k++)
        assert_result_seq(r, 3 + k, *head + 2 + k, false);
    for (uint32_t k = 0; k < more + 2; k++)
        ids[k] = names[k];
    expect_published(sub, L, *head, ids, more + 2);
    *head += more + 2;
    reply_free(r);
    ev_free(e);
}

/* Batches mixing new events of two types with a dup and a refused event
 * publish exactly their new records, in seq order, each on its type's
 * topic, whichever thread committed them. */
START_TEST(test_events_pub_mixed)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    void *sub = tl_connect(tl_sock(ctx, ZMQ_SUB, NULL, NULL), L.events);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    lt_reply *r = reply_new();
    char topic[32];
    uint8_t *raw = NULL;
    size_t len = 0;
    uint64_t head = 0;
    /* Sales until the subscription shows (see test_events_pub). */
    for (bool got = false; !got; head++) {
        ck_assert_msg(head < 100, "no record published to a subscriber");
        evlist *e = ev_new();
        char sid[32];
        snprintf(sid, sizeof sid, "warm-%llu", (unsigned long long)head);
        ev_add_sale(e, sid, 10);
        ingest(d, head + 1, "dist-mix", false, e, r);
        assert_result_seq(r, 0, head + 1, false);
        ev_free(e);
        got = tl_sub_recv(sub, 200, topic, sizeof topic, &raw, &len);
        free(raw);
    }
    ck_assert_uint_gt(TLY_LEDGER_INLINE_EVENTS_MAX, 4);
    pub_mixed(d, sub, &L, 1000, 0, &head);  /* 4 events: the main thread commits */
    pub_mixed(d, sub, &L, 1001, 20, &head); /* 24 events: the commit thread */
    pub_mixed(d, sub, &L, 1002, 1, &head);
    ck_assert_msg(!tl_sub_recv(sub, 300, topic, sizeof topic, &raw, &len),
                  "a record was published twice, or a dup or refused event was");
    reply_free(r);
    zmq_close(sub);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 10. tally send --csv [D18]                                          */

static void check_stored_sale(const tl_ledger *L, const char *source, const char *id,
                              int64_t amount, int64_t at_ms, const char *currency)
{
    uint64_t seq = 0;
    ck_assert_int_eq(tl_log_lookup(L, source, id, &seq), TLY_OK);
    size_t len;
    uint8_t *raw = log_raw(L, seq, &len);
    tly_record rec;
    ck_assert_int_eq(tly_record_decode(raw, len, &rec), TLY_OK);
    tly_event ev;
    tly_field_error fe;
    ck_assert_int_eq(tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &ev, &fe), TLY_OK);
    ck_assert_int_eq(ev.type, TLY_EV_SALE);
    ck_assert_int_eq(ev.amount, amount);
    ck_assert_int_eq(ev.at_ms, at_ms);
    ck_assert(tly_str_eq(ev.currency, currency));
    free(raw);
}

/* `tally send -` reads standard input; blank lines count in the reported
 * line numbers. */
static void check_send_stdin(tl_ledger *L)
{
    char in[700], out[700], errp[700];
    snprintf(in, sizeof in, "%s/stdin.jsonl", L->dir);
    snprintf(out, sizeof out, "%s/stdin.out", L->dir);
    snprintf(errp, sizeof errp, "%s/stdin.err", L->dir);
    tl_write_text(in, "{\"type\":\"sale\",\"id\":\"in-1\",\"at\":1735693342313,"
                      "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":7,"
                      "\"currency\":\"USD\"}\n"
                      "\n"
                      "{\"type\":\"sale\",\"id\":\"in-2\",\"at\":1735693342313,"
                      "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":-7,"
                      "\"currency\":\"USD\"}\n");
    char *const a_stdin[] = {(char *)tu_tally(), "send",    "--ingest", L->ingest,
                             "--source",         "dist-in", "-",        NULL};
    ck_assert_int_eq(tu_run(a_stdin, in, out, errp), 1);
    char *text = tu_read_file(out, NULL);
    ck_assert_str_eq(text, "sent 1, duplicates 0, rejected 1\n");
    free(text);
    text = tu_read_file(errp, NULL);
    ck_assert_msg(strstr(text, "line 3 (id in-2): bad_field [amount]") != NULL, "%s", text);
    free(text);
}

START_TEST(test_send_csv)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/pos.csv", L.dir);
    tl_write_text(file, "id,partner,sku,qty,amount,currency,at\n"
                        "pos-1,acme,SKU-1,2,1234.50,USD,2025-03-01\n"
                        "pos-2,acme,SKU-2,1,1000,JPY,2025-03-01T12:30:00Z\n"
                        "pos-3,acme,SKU-3,1,1.234,USD,2025-03-01\n"
                        "pos-4,\"Acme, Inc.\",SKU-4,3,0.05,EUR,2025-03-02\n");
    const char *args[] = {"--csv", "--source", "dist-pos", file, NULL};
    tl_assert_sent(tl_send_run(&L, "csv", args), 1, 3, 0, 1);
    char *err = tl_send_stderr(&L, "csv");
    ck_assert_msg(strstr(err, "line 4 ") != NULL && strstr(err, "[amount]") != NULL,
                  "the rejected row is not reported with its line and field: %s", err);
    free(err);
    /* 2025-03-01T00:00:00Z and 12:30 that day. */
    check_stored_sale(&L, "dist-pos", "pos-1", 123450, 1740787200000LL, "USD");
    check_stored_sale(&L, "dist-pos", "pos-2", 1000, 1740832200000LL, "JPY");
    check_stored_sale(&L, "dist-pos", "pos-4", 5, 1740873600000LL, "EUR");
    ck_assert_int_eq(tl_log_lookup(&L, "dist-pos", "pos-3", &(uint64_t){0}), TLY_NOT_FOUND);

    /* JSON lines may give `at` as ISO-8601 text (SPEC section 5). */
    char jfile[700];
    snprintf(jfile, sizeof jfile, "%s/iso.jsonl", L.dir);
    tl_write_text(jfile, "{\"type\":\"sale\",\"id\":\"iso-1\",\"at\":\"2025-03-01T12:30:00Z\","
                         "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":7,"
                         "\"currency\":\"USD\"}\n"
                         "{\"type\":\"sale\",\"id\":\"iso-2\",\"at\":\"2025-03-01T14:30:00+02:00\","
                         "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,\"amount\":8,"
                         "\"currency\":\"USD\"}\n");
    const char *a_iso[] = {"--source", "dist-pos", jfile, NULL};
    tl_assert_sent(tl_send_run(&L, "iso", a_iso), 0, 2, 0, 0);
    check_stored_sale(&L, "dist-pos", "iso-1", 7, 1740832200000LL, "USD");
    check_stored_sale(&L, "dist-pos", "iso-2", 8, 1740832200000LL, "USD");

    check_send_stdin(&L);

    /* Windows line ends are fine. */
    char crlf[700];
    snprintf(crlf, sizeof crlf, "%s/crlf.csv", L.dir);
    tl_write_text(crlf, "id,partner,sku,qty,amount,currency,at\r\n"
                        "pos-5,acme,SKU-5,1,19.99,USD,2025-03-01\r\n");
    const char *a_crlf[] = {"--csv", "--source", "dist-pos", crlf, NULL};
    tl_assert_sent(tl_send_run(&L, "crlf", a_crlf), 0, 1, 0, 0);
    check_stored_sale(&L, "dist-pos", "pos-5", 1999, 1740787200000LL, "USD");

    /* A file without the POS header is refused as a whole. */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/nohdr.csv", L.dir);
    tl_write_text(bad, "pos-9,acme,SKU-1,2,1.50,USD,2025-03-01\n");
    const char *a_bad[] = {"--csv", "--source", "dist-pos", bad, NULL};
    tl_sent s = tl_send_run(&L, "nohdr", a_bad);
    ck_assert_int_eq(s.rc, 1);
    ck_assert_int_eq(tl_log_lookup(&L, "dist-pos", "pos-9", &(uint64_t){0}), TLY_NOT_FOUND);
    tl_done(&L);
}
END_TEST

/* The reject line names the row's id and a SPEC error code (section 4):
 * a CSV amount with too many decimals is a field out of its pattern. */
START_TEST(test_send_csv_reject_line)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/pos.csv", L.dir);
    tl_write_text(file, "id,partner,sku,qty,amount,currency,at\n"
                        "pos-3,acme,SKU-3,1,1.234,USD,2025-03-01\n");
    const char *args[] = {"--csv", "--source", "dist-pos", file, NULL};
    tl_assert_sent(tl_send_run(&L, "csv", args), 1, 0, 0, 1);
    char *err = tl_send_stderr(&L, "csv");
    ck_assert_msg(strstr(err, "line 2 (id pos-3): bad_field [amount]") != NULL,
                  "expected 'line 2 (id pos-3): bad_field [amount]: ...', got: %s", err);
    free(err);
    tl_done(&L);
}
END_TEST

/* The `at` bound is the recorded time, not the wall clock (issue 8): the
 * head of this log was recorded 10 days ahead of the wall clock (as after a
 * clock step back of 10 days), so the next batch is recorded then too and
 * an event 12 hours past it is within the bound; 2 days past it is not. */
#define AT_DAY_MS INT64_C(86400000)

/* Appends one sale recorded at recorded_ms to a fresh log in L->logdir. */
static void seed_log_at(tl_ledger *L, int64_t recorded_ms)
{
    char text[256];
    snprintf(text, sizeof text,
             "{\"type\":\"sale\",\"id\":\"seed\",\"at\":%lld,\"partner\":\"p1\","
             "\"sku\":\"k\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}",
             (long long)recorded_ms);
    json_t *ev = json_loads(text, 0, NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_json_event_to_mp(ev, &sb, NULL), TLY_OK);
    tly_log *log = NULL;
    ck_assert_int_eq(tly_log_open(L->logdir, TLY_LOG_WRITE, &log), TLY_OK);
    tly_log_item it = {.source = {"dist-at", 7},
                       .id = {"seed", 4},
                       .event = (const uint8_t *)sb.data,
                       .event_len = sb.size};
    ck_assert_int_eq(tly_log_append(log, recorded_ms, &it, 1, NULL, 0), TLY_OK);
    ck_assert_int_eq(it.err, TLY_OK);
    tly_log_close(log);
    msgpack_sbuffer_destroy(&sb);
    json_decref(ev);
}

START_TEST(test_at_bound_recorded_time)
{
    tl_ledger L;
    tl_init(&L);
    int64_t ahead = (int64_t)time(NULL) * 1000 + 10 * AT_DAY_MS;
    seed_log_at(&L, ahead);
    tl_start(&L, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/at.jsonl", L.dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    const int64_t at[] = {ahead + AT_DAY_MS / 2, ahead + 2 * AT_DAY_MS};
    for (int i = 0; i < 2; i++)
        fprintf(f,
                "{\"type\":\"sale\",\"id\":\"a%d\",\"at\":%lld,\"partner\":\"p1\","
                "\"sku\":\"k\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}\n",
                i, (long long)at[i]);
    fclose(f);
    const char *args[] = {"--source", "dist-at", file, NULL};
    /* 12 h past the recorded time: accepted; 2 days past it: bad_field. */
    tl_assert_sent(tl_send_run(&L, "at", args), 1, 1, 0, 1);
    ck_assert_uint_eq(tl_log_head(&L), 2);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *ledger_suite(void)
{
    Suite *s = suite_create("ledger");
    tcase_add_test(tu_tcase(s, "vectors", 240), test_vectors_through_send);
    tcase_add_test(tu_tcase(s, "idempotency", 60), test_idempotency);
    TCase *v = tu_tcase(s, "validation", 120);
    tu_add_tests(v, TU_TESTS(test_event_errors, test_whole_request_errors,
                             test_at_bound_recorded_time, test_envelope_frames_max));
    tcase_add_test(tu_tcase(s, "hard_frame", 120), test_frame_bytes_hard_max);
    tcase_add_test(tu_tcase(s, "big_batch", 120), test_oversized_batch);
    tcase_add_test(tu_tcase(s, "atomic", 60), test_atomic);
    tcase_add_test(tu_tcase(s, "group_commit", 180), test_concurrent_producers);
    tcase_add_test(tu_tcase(s, "crash", 240), test_crash_recovery);
    tcase_add_test(tu_tcase(s, "storage", 120), test_storage_full);
    TCase *c = tu_tcase(s, "curve", 60);
    tu_add_tests(c,
                 TU_TESTS(test_curve_roles, test_curve_role_matrix,
                          test_loopback_only_without_curve, test_startup_refusals,
                          test_auth_keys_max, test_auth_line_bytes_max, test_auth_line_nul,
                          test_auth_partner_utf8, test_curve_secret_nul, test_auth_bound_on_start));
    tcase_add_test(tu_tcase(s, "sigterm", 180), test_sigterm_keeps_acks);
    TCase *r = tu_tcase(s, "log_read", 60);
    tu_add_tests(r, TU_TESTS(test_logread, test_events_pub, test_events_pub_mixed));
    TCase *csv = tu_tcase(s, "csv", 60);
    tu_add_tests(csv, TU_TESTS(test_send_csv, test_send_csv_reject_line));
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return tu_run_suite(ledger_suite());
}
