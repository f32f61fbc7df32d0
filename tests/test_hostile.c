/*
 * test_hostile.c — hostile producers against the real ledger (issue 8,
 * items 1, 7 and 8): everything the ledger accepts is handled by every
 * reader, and what no reader could handle is refused at the door.
 *
 * Each case starts the real `tally ledger` on free loopback ports with a
 * fresh data directory, sends raw MessagePack requests over a DEALER (the
 * shapes `tally send` cannot express: floats, bins, ext, huge ints), then
 * stops it and runs the real `tally audit verify`, `export` and `replay` on
 * the log. Children die with this process (PR_SET_PDEATHSIG).
 */
#include <check.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "testledger.h"
#include "testutil.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_wire.h"

/* ------------------------------------------------------------------ */
/* the ledger under test                                               */

/* A fresh ledger on free ports (without fsync: no case needs durability). */
static void ledger_start(tl_ledger *L)
{
    tl_init(L);
    const char *extra[] = {"--no-sync", NULL};
    tl_start(L, extra);
}

/* ------------------------------------------------------------------ */
/* requests                                                            */

/* A reply to one request: the whole-request error, or one result per event. */
typedef struct ht_reply {
    tly_err whole;
    uint64_t req;
    uint32_t count;
    tly_ingest_result results[64];
} ht_reply;

/* Sends one request frame and decodes the reply. */
static void rpc(void *sock, const msgpack_sbuffer *frame, ht_reply *out)
{
    size_t len = 0;
    uint8_t *reply = tl_rpc(sock, frame->data, frame->size, &len);
    char msg[160];
    out->whole = tly_wire_reply_decode(reply, len, &out->req, out->results, 64, &out->count, msg,
                                       sizeof msg);
    free(reply);
    ck_assert_msg(out->whole != TLY_MALFORMED || out->count == 0, "reply unreadable");
}

/* A request {"req", "source" (src_len bytes), "events": events[0..n)}. */
static void request(msgpack_sbuffer *out, uint64_t req, const char *src, size_t src_len,
                    msgpack_sbuffer *const *events, uint32_t n)
{
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint64(&pk, req);
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, src, src_len);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++)
        msgpack_sbuffer_write(out, events[i]->data, events[i]->size);
}

/* A sale with id and one more key "x-note" holding the raw value v. */
static msgpack_sbuffer *sale_with_note(const char *id, const void *v, size_t vlen)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"acme\","
             "\"sku\":\"SKU-9\",\"qty\":3,\"amount\":123450,\"currency\":\"USD\"}",
             id, TL_AT_MS);
    json_t *j = json_loads(text, 0, NULL);
    msgpack_sbuffer *sb = malloc(sizeof *sb);
    msgpack_sbuffer_init(sb);
    ck_assert_int_eq(tly_json_event_to_mp(j, sb, NULL), TLY_OK);
    json_decref(j);
    ck_assert_uint_eq((uint8_t)sb->data[0], 0x88);
    sb->data[0] = (char)0x89;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, "x-note", 6);
    msgpack_sbuffer_write(sb, v, vlen);
    return sb;
}

static void free_event(msgpack_sbuffer *sb)
{
    msgpack_sbuffer_free(sb);
}

/* ------------------------------------------------------------------ */
/* the shapes                                                          */

/* Every shape of unknown-key value the ledger accepts. */
static const tu_shape accepted[] = {
    TU_SHAPE("nil", "\xc0"),
    TU_SHAPE("true", "\xc3"),
    TU_SHAPE("false", "\xc2"),
    TU_SHAPE("int min", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    TU_SHAPE("int max", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("uint max", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("float32", "\xca\x3f\xc0\x00\x00"),
    TU_SHAPE("float64", "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18"),
    TU_SHAPE("float64 max", "\xcb\x7f\xef\xff\xff\xff\xff\xff\xff"),
    TU_SHAPE("str", "\xa5hello"),
    TU_SHAPE("str controls", "\xa3\x01\x1f\x7f"),
    TU_SHAPE("str UTF-8", "\xa9\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"),
    TU_SHAPE("bin", "\xc4\x03\x01\x02\xff"),
    TU_SHAPE("array", "\x93\x01\xa1"
                      "a\xc0"),
    TU_SHAPE("map", "\x83\xa1"
                    "a\x01\xa0\x02\xa2"
                    "b\x01\x92\xc2\xc3"),
    /* the value is level 2, the int at the bottom level 8 */
    TU_SHAPE("nested to the limit", "\x91\x91\x91\x91\x91\x91\x01"),
    TU_SHAPE("maps to the limit", "\x81\xa1"
                                  "a\x81\xa1"
                                  "b\x81\xa1"
                                  "c\x81\xa1"
                                  "d\x81\xa1"
                                  "e\x81\xa1"
                                  "f\xc4\x01\x00"),
};

/* Shapes no reader could handle, and the field their refusal names. */
static const struct {
    tu_shape shape;
    const char *field;
} refused[] = {
    {TU_SHAPE("NaN", "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("+inf", "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("-inf", "\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"), "x-note"},
    {TU_SHAPE("float32 NaN", "\xca\x7f\xc0\x00\x00"), "x-note"},
    {TU_SHAPE("ext", "\xd4\x01\x00"), "x-note"},
    {TU_SHAPE("ext 8", "\xc7\x01\x05\xaa"), "x-note"},
    /* {"x-note":[[[[[[[1]]]]]]]}: the int at level 9 */
    {TU_SHAPE("nesting limit + 1", "\x91\x91\x91\x91\x91\x91\x91\x01"), "x-note"},
    {TU_SHAPE("int key", "\x81\x01\x02"), "x-note"},
    {TU_SHAPE("invalid UTF-8", "\xa2\xc3\x28"), "x-note"},
    {TU_SHAPE("NUL in a str", "\xa3"
                              "a\x00"
                              "b"),
     "x-note"},
    {TU_SHAPE("NaN in a map", "\x81\xa1y\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "x-note.y"},
};

#define N_ACCEPTED (sizeof accepted / sizeof accepted[0])
#define N_REFUSED (sizeof refused / sizeof refused[0])

/* ------------------------------------------------------------------ */
/* the readers                                                         */

/* Runs `tally audit SUB --data DATA [extra]`; returns its exit code and
 * leaves stdout in out_path. */
static int audit(const tl_ledger *L, const char *sub, const char *extra1, const char *extra2,
                 const char *out_path)
{
    char err_path[600];
    snprintf(err_path, sizeof err_path, "%s/audit-%s.err", L->dir, sub);
    char *argv[] = {(char *)tu_tally(), "audit",        (char *)sub,    "--data",
                    (char *)L->data,    (char *)extra1, (char *)extra2, NULL};
    int rc = tu_run(argv, NULL, out_path, err_path);
    if (rc != 0) {
        char *text = tu_read_file(err_path, NULL);
        fprintf(stderr, "tally audit %s: exit %d: %s\n", sub, rc, text ? text : "");
        free(text);
    }
    return rc;
}

/* Checks the export of the log: one line per record, in seq order, each
 * holding the exact event bytes (event_b64) and the event as JSON with its
 * x-note. want[i] are the bytes of seq i + 1. */
static void check_export(const char *path, msgpack_sbuffer *const *want, size_t n)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0, lines = 0;
    while (getline(&line, &cap, f) > 0) {
        ck_assert_uint_lt(lines, n);
        json_error_t je;
        json_t *rec = json_loads(line, 0, &je);
        ck_assert_msg(rec != NULL, "export line %zu is not JSON: %s", lines + 1, je.text);
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "seq")), (json_int_t)lines + 1);
        json_t *ev = json_object_get(rec, "event");
        ck_assert_msg(json_object_get(ev, "x-note") != NULL, "line %zu has no x-note", lines + 1);
        const char *b64 = json_string_value(json_object_get(rec, "event_b64"));
        ck_assert_ptr_nonnull(b64);
        uint8_t bytes[1024];
        size_t len = 0;
        ck_assert_int_eq(tly_b64_decode(b64, strlen(b64), bytes, sizeof bytes, &len), TLY_OK);
        ck_assert_uint_eq(len, want[lines]->size);
        ck_assert_int_eq(memcmp(bytes, want[lines]->data, len), 0);
        json_decref(rec);
        lines++;
    }
    free(line);
    fclose(f);
    ck_assert_uint_eq(lines, n);
}

/* ------------------------------------------------------------------ */
/* cases                                                               */

/* Every accepted shape is appended; verify, export and replay of the log
 * succeed, and export shows every record. Every refused shape is refused
 * with bad_field naming the key, and nothing of it is appended. */
START_TEST(test_every_accepted_shape_reaches_every_reader)
{
    tl_ledger L;
    ledger_start(&L);
    void *ctx = tl_ctx();
    void *sock = tl_dealer(ctx, L.ingest);
    msgpack_sbuffer *good[N_ACCEPTED], *bad[N_REFUSED];
    for (size_t i = 0; i < N_ACCEPTED; i++) {
        char id[32];
        snprintf(id, sizeof id, "OK-%zu", i);
        good[i] = sale_with_note(id, accepted[i].bytes, accepted[i].len);
    }
    for (size_t i = 0; i < N_REFUSED; i++) {
        char id[32];
        snprintf(id, sizeof id, "BAD-%zu", i);
        bad[i] = sale_with_note(id, refused[i].shape.bytes, refused[i].shape.len);
    }
    /* the refused ones first, in one request: none is appended */
    msgpack_sbuffer frame;
    ht_reply reply;
    request(&frame, 1, "dist-a", 6, bad, N_REFUSED);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    ck_assert_int_eq(reply.whole, TLY_OK);
    ck_assert_uint_eq(reply.count, N_REFUSED);
    for (size_t i = 0; i < N_REFUSED; i++) {
        const tly_ingest_result *r = &reply.results[i];
        ck_assert_msg(r->err == TLY_BAD_FIELD, "%s: %s", refused[i].shape.name,
                      tly_err_name(r->err));
        ck_assert_msg(strcmp(r->field, refused[i].field) == 0, "%s: field '%s'",
                      refused[i].shape.name, r->field);
    }
    /* then every accepted shape: seqs 1..N */
    request(&frame, 2, "dist-a", 6, good, N_ACCEPTED);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    ck_assert_int_eq(reply.whole, TLY_OK);
    ck_assert_uint_eq(reply.count, N_ACCEPTED);
    for (size_t i = 0; i < N_ACCEPTED; i++)
        ck_assert_msg(reply.results[i].err == TLY_OK && reply.results[i].seq == i + 1, "%s: %s %s",
                      accepted[i].name, tly_err_name(reply.results[i].err),
                      reply.results[i].message);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);

    char out[600], views[600];
    snprintf(out, sizeof out, "%s/export.jsonl", L.dir);
    snprintf(views, sizeof views, "%s/replay", L.dir);
    ck_assert_int_eq(audit(&L, "verify", NULL, NULL, NULL), 0);
    ck_assert_int_eq(audit(&L, "export", NULL, NULL, out), 0);
    check_export(out, good, N_ACCEPTED);
    ck_assert_int_eq(audit(&L, "replay", "--out", views, NULL), 0);
    for (size_t i = 0; i < N_ACCEPTED; i++)
        free_event(good[i]);
    for (size_t i = 0; i < N_REFUSED; i++)
        free_event(bad[i]);
    tl_done(&L);
}
END_TEST

/* Names may hold any UTF-8 but NUL, control characters included (SPEC
 * section 5 bounds only their length): a program, a partner and sales with
 * such names reach every reader. A NUL (which made replay fail on the view
 * documents) is bad_field naming the field. */
START_TEST(test_names_with_control_characters_reach_every_reader)
{
    static const char *const events[] = {
        "{\"type\":\"program\",\"id\":\"P\",\"at\":1735693342313,\"program\":\"p\\u0001\","
        "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":[{\"name\":"
        "\"t\\t\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],\"rebate\":{\"mode\":"
        "\"incremental\",\"brackets\":[{\"from\":0,\"bps\":100}]},\"mdf_expiry_periods\":2,"
        "\"tier_window_periods\":2}",
        "{\"type\":\"partner\",\"id\":\"E\",\"at\":1735693342313,\"partner\":\"a\\u0002b\","
        "\"name\":\"\\u001b[31mred\",\"program\":\"p\\u0001\",\"kind\":\"var\"}",
        "{\"type\":\"sale\",\"id\":\"S\",\"at\":1735693342313,\"partner\":\"a\\u0002b\","
        "\"sku\":\"k\\u007f\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}",
        "{\"type\":\"sale\",\"id\":\"S2\",\"at\":1735693342313,\"partner\":\"a\\u0002c\","
        "\"sku\":\"k\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}",
    };
    enum { N = sizeof events / sizeof events[0] };
    tl_ledger L;
    ledger_start(&L);
    void *ctx = tl_ctx();
    void *sock = tl_dealer(ctx, L.ingest);
    msgpack_sbuffer *evs[N];
    for (size_t i = 0; i < N; i++) {
        json_error_t je;
        json_t *j = json_loads(events[i], JSON_ALLOW_NUL, &je);
        ck_assert_msg(j != NULL, "event %zu: %s", i, je.text);
        evs[i] = msgpack_sbuffer_new();
        ck_assert_int_eq(tly_json_event_to_mp(j, evs[i], NULL), TLY_OK);
        json_decref(j);
    }
    msgpack_sbuffer frame;
    ht_reply reply;
    request(&frame, 1, "finance", 7, evs, N);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    ck_assert_int_eq(reply.whole, TLY_OK);
    for (size_t i = 0; i < N; i++)
        ck_assert_msg(reply.results[i].err == TLY_OK, "event %zu: %s", i, reply.results[i].message);
    msgpack_sbuffer *nul = msgpack_sbuffer_new();
    json_t *j =
        json_loads("{\"type\":\"sale\",\"id\":\"S3\",\"at\":1735693342313,\"partner\":"
                   "\"a\\u0000b\",\"sku\":\"k\",\"qty\":1,\"amount\":1,\"currency\":\"USD\"}",
                   JSON_ALLOW_NUL, NULL);
    ck_assert_int_eq(tly_json_event_to_mp(j, nul, NULL), TLY_OK);
    json_decref(j);
    request(&frame, 2, "finance", 7, &nul, 1);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    free_event(nul);
    ck_assert_int_eq(reply.results[0].err, TLY_BAD_FIELD);
    ck_assert_str_eq(reply.results[0].field, "partner");
    zmq_close(sock);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    char out[600], views[600];
    snprintf(out, sizeof out, "%s/export.jsonl", L.dir);
    snprintf(views, sizeof views, "%s/replay", L.dir);
    ck_assert_int_eq(audit(&L, "verify", NULL, NULL, NULL), 0);
    ck_assert_int_eq(audit(&L, "export", NULL, NULL, out), 0);
    ck_assert_int_eq(audit(&L, "replay", "--out", views, NULL), 0);
    for (size_t i = 0; i < N; i++)
        free_event(evs[i]);
    tl_done(&L);
}
END_TEST

/* A NUL or another control byte in the declared source is malformed for
 * the whole request: nothing is appended under a cut-short name. */
START_TEST(test_source_control_bytes_malformed)
{
    tl_ledger L;
    ledger_start(&L);
    void *ctx = tl_ctx();
    void *sock = tl_dealer(ctx, L.ingest);
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {{"dist-a\0other", 12}, {"\0", 1}, {"dist-a\n", 7}, {"\x1b[0m", 4}, {"a\x7f", 2}};
    msgpack_sbuffer *ev = sale_with_note("S-1", "\x01", 1);
    msgpack_sbuffer frame;
    ht_reply reply;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request(&frame, 10 + i, bad[i].s, bad[i].len, &ev, 1);
        rpc(sock, &frame, &reply);
        msgpack_sbuffer_destroy(&frame);
        ck_assert_msg(reply.whole == TLY_MALFORMED, "source %zu: %s", i, tly_err_name(reply.whole));
        ck_assert_uint_eq(reply.req, 10 + i);
    }
    /* the same event from "dist-a" is the first record: nothing came before */
    request(&frame, 20, "dist-a", 6, &ev, 1);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    ck_assert_int_eq(reply.whole, TLY_OK);
    ck_assert_int_eq(reply.results[0].err, TLY_OK);
    ck_assert(!reply.results[0].dup);
    ck_assert_uint_eq(reply.results[0].seq, 1);
    free_event(ev);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* Every per-event bad_field, missing_field and bad_type the ledger sends
 * names its field. */
START_TEST(test_per_event_errors_name_their_field)
{
    static const char *const events[] = {
        "{\"type\":\"sale\",\"id\":\"E1\",\"at\":1735693342313}",
        "{\"type\":\"sale\",\"id\":\"E2\",\"at\":1735693342313,\"partner\":\"a\",\"sku\":\"k\","
        "\"qty\":0,\"amount\":1,\"currency\":\"USD\"}",
        "{\"type\":\"refund\",\"id\":\"E3\",\"at\":1735693342313}",
        "{\"id\":\"E4\"}",
        "{\"type\":\"sale\",\"id\":\"bad id\",\"at\":1735693342313}",
        "{\"type\":\"sale\",\"id\":\"E6\",\"at\":1}",
        "{\"type\":\"claim\",\"id\":\"E7\",\"at\":1735693342313,\"partner\":\"a\",\"claim\":\"c\","
        "\"action\":\"pay\"}",
    };
    enum { N = sizeof events / sizeof events[0] };
    tl_ledger L;
    ledger_start(&L);
    void *ctx = tl_ctx();
    void *sock = tl_dealer(ctx, L.ingest);
    msgpack_sbuffer *evs[N + 1];
    for (size_t i = 0; i < N; i++) {
        json_t *j = json_loads(events[i], 0, NULL);
        evs[i] = msgpack_sbuffer_new();
        ck_assert_int_eq(tly_json_event_to_mp(j, evs[i], NULL), TLY_OK);
        json_decref(j);
    }
    evs[N] = sale_with_note("E8", "\xd4\x01\x00", 3);
    msgpack_sbuffer frame;
    ht_reply reply;
    request(&frame, 1, "dist-a", 6, evs, N + 1);
    rpc(sock, &frame, &reply);
    msgpack_sbuffer_destroy(&frame);
    ck_assert_int_eq(reply.whole, TLY_OK);
    ck_assert_uint_eq(reply.count, N + 1);
    for (size_t i = 0; i <= N; i++) {
        const tly_ingest_result *r = &reply.results[i];
        ck_assert_msg(r->err == TLY_BAD_FIELD || r->err == TLY_MISSING_FIELD ||
                          r->err == TLY_BAD_TYPE,
                      "event %zu: %s", i, tly_err_name(r->err));
        ck_assert_msg(r->field[0] != '\0', "event %zu: %s without a field", i,
                      tly_err_name(r->err));
    }
    for (size_t i = 0; i <= N; i++)
        free_event(evs[i]);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* `tally send` (JSON lines) appends an x-note nested to the limit and
 * refuses one nested a level deeper before sending; the export of the log
 * has the first. */
START_TEST(test_send_json_lines_at_the_limit)
{
    tl_ledger L;
    ledger_start(&L);
    char path[600];
    snprintf(path, sizeof path, "%s/in.jsonl", L.dir);
    const char *base = "{\"type\":\"sale\",\"id\":\"%s\",\"at\":1735693342313,\"partner\":"
                       "\"acme\",\"sku\":\"k\",\"qty\":1,\"amount\":5,\"currency\":\"USD\","
                       "\"x-note\":%s}\n";
    char text[1024];
    int n = snprintf(text, sizeof text, base, "J-1", "[[[[[[1]]]]]]");
    snprintf(text + n, sizeof text - (size_t)n, base, "J-2", "[[[[[[[1]]]]]]]");
    tl_write_text(path, text);
    const char *args[] = {"--source", "dist-a", path, NULL};
    tl_sent s = tl_send_wait(&L, "limit", tl_send_spawn(&L, "limit", L.logread, args));
    tl_assert_sent(s, 1, 1, 0, 1); /* one rejected */
    char *report = tl_send_stderr(&L, "limit");
    ck_assert_msg(strstr(report, "line 2 (id J-2): bad_field [x-note]") != NULL, "report: %s",
                  report);
    free(report);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    char exp[600];
    snprintf(exp, sizeof exp, "%s/export.jsonl", L.dir);
    ck_assert_int_eq(audit(&L, "export", NULL, NULL, exp), 0);
    ck_assert_int_eq(audit(&L, "verify", NULL, NULL, NULL), 0);
    tl_done(&L);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tu_tcase(s, "readers", 120);
    tu_add_tests(tc, TU_TESTS(test_every_accepted_shape_reaches_every_reader,
                              test_names_with_control_characters_reach_every_reader,
                              test_source_control_bytes_malformed,
                              test_per_event_errors_name_their_field,
                              test_send_json_lines_at_the_limit));
    return s;
}

int main(void)
{
    return tu_run_suite(hostile_suite());
}
