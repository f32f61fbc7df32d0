/*
 * test_send.c — `tally send` and the producer client library against a real
 * `tally ledger` (SPEC sections 3 and 4, [D10]).
 *
 * - Requests are closed by size as well as by count: an event that fits a
 *   request alone is never refused for size, whatever came before it; one
 *   byte more than that is rejected by send, unsent, with a clear line.
 * - "sent" counts what the run appended: after kill -9 of the ledger, the
 *   events an unacknowledged attempt committed come back `dup` with a seq
 *   above the log head at the run's start and count as sent; events that
 *   were in the log before the run (or twice in the input) stay duplicates.
 * - CSV as distributors send it (issue 12 item 6): --columns, a type
 *   column, BOM, CRLF, quotes; bad rows reported by line, the rest sent; a
 *   header that cannot be used refuses the file unsent.
 *
 * Every case starts the real ledger on free loopback ports with a fresh data
 * directory and runs the real `tally send`; the log is read back through the
 * log store's read-only API. Children get PR_SET_PDEATHSIG. No assertion
 * depends on timing: deadlines only keep a broken build from hanging, and
 * the crash case is seeded (TALLY_TEST_SEED repeats it).
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
#include "tly_client.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_mp.h"
#include "tly_wire.h"

/* Bytes of "x-pad" from which its MessagePack string header is str32 (5
 * bytes) whatever the length: sizes above it grow one byte per character. */
#define ST_PAD_STR32_MIN 65536u

/* ------------------------------------------------------------------ */
/* the log, read-only                                                  */

/* The stored event length of (source, id); 0 when it is not in the log. */
static size_t stored_event_len(const tl_ledger *L, const char *source, const char *id)
{
    tly_log *log = tl_log_open(L);
    tly_str s = {source, (uint32_t)strlen(source)}, i = {id, (uint32_t)strlen(id)};
    uint64_t seq = 0;
    size_t len = 0;
    tly_log_reader *rd = NULL;
    tly_record rec;
    if (tly_log_lookup(log, s, i, &seq) == TLY_OK) {
        ck_assert_int_eq(tly_log_reader_open(log, seq, &rd), TLY_OK);
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        len = rec.event_len;
        tly_log_reader_close(rd);
    }
    tly_log_close(log);
    return len;
}

/* ------------------------------------------------------------------ */
/* events of a given encoded size                                      */

/* A sale line (no newline) padded by the unknown key "x-pad" with pad
 * characters; malloc'd. */
static char *big_sale_text(const char *id, size_t pad)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"acme\","
                     "\"sku\":\"S\",\"qty\":1,\"amount\":5,\"currency\":\"USD\",\"x-pad\":\"",
                     id, TL_AT_MS);
    ck_assert_int_lt(n, (int)sizeof head);
    char *text = malloc((size_t)n + pad + 3);
    ck_assert_ptr_nonnull(text);
    memcpy(text, head, (size_t)n);
    memset(text + n, 'a', pad);
    memcpy(text + n + pad, "\"}", 3);
    return text;
}

/* Bytes the event of a JSON line encodes to, as `tally send` encodes it. */
static size_t event_bytes(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_json_event_to_mp(j, &sb, NULL), TLY_OK);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    return n;
}

/* Appends to f one sale line whose event encodes to exactly bytes bytes
 * (at least about 66 KiB: the pad's string header is then str32). */
static void put_big_sale(FILE *f, const char *id, size_t bytes)
{
    char *probe = big_sale_text(id, ST_PAD_STR32_MIN);
    size_t base = event_bytes(probe);
    free(probe);
    ck_assert_uint_ge(bytes, base);
    char *text = big_sale_text(id, ST_PAD_STR32_MIN + (bytes - base));
    ck_assert_uint_eq(event_bytes(text), bytes);
    fprintf(f, "%s\n", text);
    free(text);
}

/* The largest event a request numbered req from source carries alone: the
 * frame limit less what the wire encoder puts around a one-byte event. */
static size_t alone_max(uint64_t req, const char *source)
{
    static const uint8_t nil = 0xc0;
    tly_span sp = {&nil, 1};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_wire_ingest_encode(&sb, req, source, false, &sp, 1), TLY_OK);
    size_t envelope = sb.size - 1;
    msgpack_sbuffer_destroy(&sb);
    return TLY_FRAME_BYTES_MAX - envelope;
}

/* ------------------------------------------------------------------ */
/* the client library's size arithmetic                                */

/* tly_wire_ingest_envelope_bytes is what the encoder adds around the
 * events, for every size class of req, source and count. */
START_TEST(test_envelope_bytes)
{
    const uint64_t reqs[] = {
        0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    const uint32_t counts[] = {1, 15, 16, TLY_BATCH_EVENTS_MAX};
    const char *sources[] = {NULL, "s", "source-of-exactly-31-characters",
                             "source-of-exactly-32-characters!"};
    static const uint8_t nil = 0xc0;
    tly_span *spans = malloc(TLY_BATCH_EVENTS_MAX * sizeof *spans);
    for (uint32_t i = 0; i < TLY_BATCH_EVENTS_MAX; i++)
        spans[i] = (tly_span){&nil, 1};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (size_t r = 0; r < sizeof reqs / sizeof reqs[0]; r++)
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
            for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++)
                for (int atomic = 0; atomic < 2; atomic++) {
                    msgpack_sbuffer_clear(&sb);
                    ck_assert_int_eq(
                        tly_wire_ingest_encode(&sb, reqs[r], sources[s], atomic, spans, counts[c]),
                        TLY_OK);
                    ck_assert_uint_eq(
                        tly_wire_ingest_envelope_bytes(reqs[r], sources[s], atomic, counts[c]) +
                            counts[c],
                        sb.size);
                }
    msgpack_sbuffer_destroy(&sb);
    free(spans);
}
END_TEST

/* tly_client_fit: the longest prefix that fits by count and by bytes. Only
 * the lengths of the spans are read. */
START_TEST(test_client_fit)
{
    char ep[64];
    tu_endpoint(ep, sizeof ep); /* nothing listens; the client connects lazily */
    tly_client_opts o = {.endpoint = ep};
    tly_client *c = NULL;
    char msg[256];
    ck_assert_int_eq(tly_client_open(&o, &c, msg, sizeof msg), TLY_OK);
    const size_t e = alone_max(1, "dist-big");
    static const uint8_t byte;
    tly_span sp[TLY_BATCH_EVENTS_MAX + 1];
    for (uint32_t i = 0; i <= TLY_BATCH_EVENTS_MAX; i++)
        sp[i] = (tly_span){&byte, 1};
    ck_assert_uint_eq(tly_client_request_bytes(c, "dist-big", false, 1, e), TLY_FRAME_BYTES_MAX);
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, TLY_BATCH_EVENTS_MAX + 1),
                      TLY_BATCH_EVENTS_MAX);
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, 0), 0);
    sp[0].len = e;
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, 2), 1);
    sp[0].len = e + 1;
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, 2), 0);
    sp[0].len = e / 2;
    sp[1].len = e - e / 2; /* two events filling the frame exactly */
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, 3), 2);
    sp[1].len++;
    ck_assert_uint_eq(tly_client_fit(c, "dist-big", false, sp, 3), 1);
    /* atomic and the source are part of the envelope */
    ck_assert_uint_eq(tly_client_request_bytes(c, NULL, true, 1, 0),
                      tly_wire_ingest_envelope_bytes(1, NULL, true, 1));
    tly_client_close(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* requests split by size                                              */

/* Opens DIR/NAME for writing into f; the path goes to path. */
static FILE *open_input(const tl_ledger *L, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", L->dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Runs `tally send --source dist-big FILE` (with --log-read) to the end. */
static tl_sent send_big(const tl_ledger *L, const char *tag, const char *file)
{
    const char *args[] = {"--source", "dist-big", file, NULL};
    return tl_send_wait(L, tag, tl_send_spawn(L, tag, L->logread, args));
}

/* Events just under and exactly at the largest size that fits a request
 * alone, then several large events among small ones that must split into
 * several requests: every one is accepted, stored at its size. */
static void check_large_accepted(const tl_ledger *L, size_t e)
{
    char path[700];
    FILE *f = open_input(L, "alone.jsonl", path, sizeof path);
    put_big_sale(f, "alone-1", e - 1);
    put_big_sale(f, "alone-2", e - 2);
    put_big_sale(f, "alone-max", e);
    ck_assert_int_eq(fclose(f), 0);
    tl_assert_sent(send_big(L, "alone", path), 0, 3, 0, 0);
    ck_assert_uint_eq(stored_event_len(L, "dist-big", "alone-max"), e);
    ck_assert_uint_eq(stored_event_len(L, "dist-big", "alone-1"), e - 1);

    f = open_input(L, "split.jsonl", path, sizeof path);
    tl_put_sales(f, "small", 0, 3);
    put_big_sale(f, "split-0", e / 3 + 1000);
    tl_put_sales(f, "small", 3, 4);
    put_big_sale(f, "split-1", e / 3 + 1000);
    put_big_sale(f, "split-2", e / 3 + 1000);
    put_big_sale(f, "split-3", e / 2);
    tl_put_sales(f, "small", 4, 10);
    put_big_sale(f, "split-4", e - 10);
    tl_put_sales(f, "small", 10, 12);
    ck_assert_int_eq(fclose(f), 0);
    tl_assert_sent(send_big(L, "split", path), 0, 17, 0, 0);
    ck_assert_uint_eq(stored_event_len(L, "dist-big", "split-4"), e - 10);
    ck_assert_uint_eq(stored_event_len(L, "dist-big", "split-3"), e / 2);
    ck_assert_uint_eq(tl_log_head(L), 20);
}

/* One byte over the largest size that fits alone: rejected by send with a
 * line naming it, never sent; the events around it are sent. */
static void check_one_byte_over(const tl_ledger *L, size_t e)
{
    char path[700];
    FILE *f = open_input(L, "over.jsonl", path, sizeof path);
    tl_put_sales(f, "around", 0, 1);
    put_big_sale(f, "over", e + 1);
    tl_put_sales(f, "around", 1, 2);
    ck_assert_int_eq(fclose(f), 0);
    tl_assert_sent(send_big(L, "over", path), 1, 2, 0, 1);
    char *err = tl_send_stderr(L, "over");
    char want[160];
    snprintf(want, sizeof want, "line 2 (id over): too_large: event is %zu bytes, at most %zu fit",
             e + 1, e);
    ck_assert_msg(strstr(err, want) && strstr(err, "not sent"), "send said:\n%s", err);
    free(err);
    ck_assert_uint_eq(stored_event_len(L, "dist-big", "over"), 0);
    ck_assert_uint_eq(tl_log_head(L), 22);
}

START_TEST(test_send_large_events)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    /* Every request of these runs is numbered below 128: one envelope size. */
    size_t e = alone_max(1, "dist-big");
    check_large_accepted(&L, e);
    check_one_byte_over(&L, e);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* kill -9 of the ledger while send runs: own events stay "sent"        */

#define CC_EVENTS 3000 /* fresh events per producer */
#define CC_OLD 200     /* events of dist-b in the log before the runs */

/* Starts a crash-test producer: small requests, a short ack timeout. */
static pid_t crash_producer(const tl_ledger *L, const char *tag, const char *source,
                            const char *file)
{
    const char *args[] = {"--source", source, "--ack-timeout-ms", "500",
                          "--batch",  "20",   "--window",         "4",
                          file,       NULL};
    return tl_send_spawn(L, tag, L->logread, args);
}

/* Kills the ledger with SIGKILL 2 or 3 times at random points of progress
 * between first and last (heads the producers will reach), restarting it
 * each time. */
static void kill_while_sending(tl_ledger *L, uint64_t first, uint64_t last)
{
    int kills = 2 + rand() % 2;
    uint64_t span = (last - first) / (uint64_t)kills;
    for (int k = 0; k < kills; k++) {
        uint64_t target = first + (uint64_t)k * span + 1 + (uint64_t)rand() % span;
        uint64_t head = tl_wait_head(L, target);
        ck_assert_int_eq(tl_stop(L, SIGKILL), 128 + SIGKILL);
        fprintf(stderr, "test_send crash: kill %d at head %llu\n", k + 1, (unsigned long long)head);
        tu_sleep_ms(rand() % 300);
        tl_start(L, NULL);
    }
}

/* Prints what a producer said about recovered events (for the log only). */
static void show_recovered(const tl_ledger *L, const char *tag)
{
    char *err = tl_send_stderr(L, tag);
    const char *line = strstr(err, "tally send: ");
    ck_assert_msg(!strstr(err, "note: the log head"), "%s: head unknown:\n%s", tag, err);
    fprintf(stderr, "test_send crash %s: %s", tag, line ? line : "no recovered events\n");
    free(err);
}

/* Producer a sends CC_EVENTS fresh events; producer b sends the CC_OLD
 * events already in the log, CC_EVENTS fresh ones and one of those twice.
 * The ledger is killed under them. a: sent CC_EVENTS, duplicates 0; b:
 * sent CC_EVENTS, duplicates CC_OLD + 1. */
START_TEST(test_send_crash_counts)
{
    srand(tu_test_seed("test_send crash"));
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char old[700], fa[700], fb[700];
    FILE *f = open_input(&L, "old.jsonl", old, sizeof old);
    tl_put_sales(f, "old", 0, CC_OLD);
    ck_assert_int_eq(fclose(f), 0);
    const char *args[] = {"--source", "dist-b", old, NULL};
    tl_assert_sent(tl_send_wait(&L, "old", tl_send_spawn(&L, "old", L.logread, args)), 0, CC_OLD, 0,
                   0);
    f = open_input(&L, "a.jsonl", fa, sizeof fa);
    tl_put_sales(f, "a", 0, CC_EVENTS);
    ck_assert_int_eq(fclose(f), 0);
    f = open_input(&L, "b.jsonl", fb, sizeof fb);
    tl_put_sales(f, "old", 0, CC_OLD);
    tl_put_sales(f, "b", 0, CC_EVENTS);
    tl_put_sale(f, "b-5", 5);
    ck_assert_int_eq(fclose(f), 0);
    pid_t pa = crash_producer(&L, "a", "dist-a", fa);
    pid_t pb = crash_producer(&L, "b", "dist-b", fb);
    kill_while_sending(&L, CC_OLD + 50, CC_OLD + 2 * CC_EVENTS * 3 / 4);
    tl_assert_sent(tl_send_wait(&L, "a", pa), 0, CC_EVENTS, 0, 0);
    tl_assert_sent(tl_send_wait(&L, "b", pb), 0, CC_EVENTS, CC_OLD + 1, 0);
    show_recovered(&L, "a");
    show_recovered(&L, "b");
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    ck_assert_uint_eq(tl_log_head(&L), CC_OLD + 2 * CC_EVENTS);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* lost acknowledgements on demand: a stand-in ledger                  */

/* Requests (by number) the stand-in tracks, and events it stores. */
#define FK_REQS_MAX 1024u
#define FK_EVENTS_MAX 4096u

/* A ledger in this process, on the test's endpoints, that stores (id ->
 * seq) like the real one, answers a resent event `dup` with its seq, and
 * withholds the reply to the first attempt of every drop_every-th request
 * after committing it: what a crash between commit and acknowledgement
 * does, made certain. log-read answers the head, or logread_err. */
typedef struct fake {
    void *ctx, *ingest, *logread;
    uint64_t head;
    char (*ids)[TLY_ID_BYTES_MAX + 1]; /* ids[seq - 1] */
    bool seen[FK_REQS_MAX];
    uint32_t drop_every;
    tly_err logread_err;
    uint32_t dropped;
    tly_ingest_req *req;
} fake;

/* Binds the stand-in to L's ingest and log-read endpoints with old events
 * old-0 .. old-(old-1) at seqs 1..old. */
static void fake_open(fake *f, const tl_ledger *L, uint32_t old, uint32_t drop_every)
{
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    f->ingest = zmq_socket(f->ctx, ZMQ_ROUTER);
    f->logread = zmq_socket(f->ctx, ZMQ_ROUTER);
    ck_assert_int_eq(zmq_bind(f->ingest, L->ingest), 0);
    ck_assert_int_eq(zmq_bind(f->logread, L->logread), 0);
    f->ids = calloc(FK_EVENTS_MAX, sizeof *f->ids);
    f->req = malloc(sizeof *f->req);
    for (f->head = 0; f->head < old; f->head++)
        snprintf(f->ids[f->head], sizeof f->ids[0], "old-%llu", (unsigned long long)f->head);
    f->drop_every = drop_every;
}

static void fake_close(fake *f)
{
    int zero = 0;
    zmq_setsockopt(f->ingest, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(f->logread, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(f->ingest);
    zmq_close(f->logread);
    zmq_ctx_term(f->ctx);
    free(f->ids);
    free(f->req);
}

/* The "id" of an encoded event, into out. */
static void fake_event_id(tly_span ev, char *out)
{
    tly_mp_reader r;
    tly_mp_init(&r, ev.ptr, ev.len);
    uint32_t n = 0;
    ck_assert(tly_mp_read_map(&r, &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t klen, vlen;
        ck_assert(tly_mp_read_str(&r, &k, &klen));
        if (klen == 2 && memcmp(k, "id", 2) == 0 && tly_mp_read_str(&r, &v, &vlen)) {
            snprintf(out, TLY_ID_BYTES_MAX + 1, "%.*s", (int)vlen, v);
            return;
        }
        ck_assert(tly_mp_skip(&r, NULL, NULL));
    }
    ck_abort_msg("event without an id");
}

/* Appends the event, or finds it: the result the ledger would give. */
static tly_ingest_result fake_commit(fake *f, tly_span ev)
{
    tly_ingest_result res = {.err = TLY_OK};
    char id[TLY_ID_BYTES_MAX + 1];
    fake_event_id(ev, id);
    for (uint64_t s = 0; s < f->head; s++)
        if (strcmp(f->ids[s], id) == 0) {
            res.seq = s + 1;
            res.dup = true;
            return res;
        }
    ck_assert_uint_lt(f->head, FK_EVENTS_MAX);
    memcpy(f->ids[f->head++], id, sizeof id);
    res.seq = f->head;
    return res;
}

/* Receives [identity, body] from a ROUTER; false when nothing waits. */
static bool fake_recv(void *sock, zmq_msg_t *who, zmq_msg_t *body)
{
    zmq_msg_init(who);
    zmq_msg_init(body);
    if (zmq_msg_recv(who, sock, ZMQ_DONTWAIT) < 0)
        return false;
    ck_assert(zmq_msg_more(who));
    ck_assert_int_ge(zmq_msg_recv(body, sock, 0), 0);
    return true;
}

/* Sends [identity, reply] and frees what fake_recv filled. */
static void fake_reply(void *sock, zmq_msg_t *who, zmq_msg_t *body, msgpack_sbuffer *sb)
{
    zmq_send(sock, zmq_msg_data(who), zmq_msg_size(who), ZMQ_SNDMORE);
    zmq_send(sock, sb->data, sb->size, 0);
    zmq_msg_close(who);
    zmq_msg_close(body);
}

/* Serves one waiting ingest request, if any. */
static void fake_ingest(fake *f)
{
    zmq_msg_t who, body;
    if (!fake_recv(f->ingest, &who, &body))
        return;
    tly_ingest_req *rq = f->req;
    ck_assert_int_eq(tly_wire_ingest_decode(zmq_msg_data(&body), zmq_msg_size(&body), rq, NULL, 0),
                     TLY_OK);
    ck_assert_uint_lt(rq->req, FK_REQS_MAX);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_reply_begin(&pk, rq->req, rq->event_count);
    for (uint32_t i = 0; i < rq->event_count; i++) {
        tly_ingest_result res = fake_commit(f, rq->events[i]);
        tly_wire_reply_result(&pk, &res);
    }
    bool drop = !f->seen[rq->req] && rq->req % f->drop_every == 0;
    f->seen[rq->req] = true;
    f->dropped += drop;
    if (drop) {
        zmq_msg_close(&who);
        zmq_msg_close(&body);
    } else {
        fake_reply(f->ingest, &who, &body, &sb);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Serves one waiting log-read request, if any: the head, or logread_err. */
static void fake_logread(fake *f)
{
    zmq_msg_t who, body;
    if (!fake_recv(f->logread, &who, &body))
        return;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (f->logread_err != TLY_OK) {
        tly_wire_reply_error(&pk, false, 0, f->logread_err, "not for this key");
    } else {
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "records", 7);
        msgpack_pack_array(&pk, 0);
        msgpack_pack_str_with_body(&pk, "head", 4);
        msgpack_pack_uint64(&pk, f->head);
    }
    fake_reply(f->logread, &who, &body, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* Serves until the send process pid exits; returns its result. */
static tl_sent fake_serve(fake *f, const tl_ledger *L, const char *tag, pid_t pid)
{
    int rc = -1;
    bool done = false;
    for (int waited = 0; !done && waited <= TL_RUN_MS; waited += 20) {
        zmq_pollitem_t it[] = {{f->ingest, 0, ZMQ_POLLIN, 0}, {f->logread, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, 20) > 0) {
            fake_logread(f);
            fake_ingest(f);
        }
        done = tl_exited(pid, &rc);
    }
    if (!done)
        tl_wait_exit(pid, 0); /* over the deadline: killed */
    return tl_send_result(L, tag, rc);
}

#define FK_OLD 50    /* events in the stand-in's log before the run */
#define FK_FRESH 600 /* new events the run sends */

/* The input: the FK_OLD old events, FK_FRESH fresh ones, one of them twice. */
static void fake_input(const tl_ledger *L, char *path, size_t cap)
{
    FILE *f = open_input(L, "fake.jsonl", path, cap);
    tl_put_sales(f, "old", 0, FK_OLD);
    tl_put_sales(f, "fresh", 0, FK_FRESH);
    tl_put_sale(f, "fresh-7", 7);
    ck_assert_int_eq(fclose(f), 0);
}

/* Every third request's acknowledgement is lost after its commit. With the
 * head known, the run's own events come back dup and count as sent; the
 * old events and the repeated line stay duplicates. With log-read
 * forbidden, the same run counts them as duplicates and says why. */
START_TEST(test_send_lost_acks)
{
    tl_ledger L;
    tl_init(&L);
    char path[700];
    fake_input(&L, path, sizeof path);
    const char *args[] = {"--source", "dist-f", "--ack-timeout-ms", "200",
                          "--batch",  "20",     "--window",         "4",
                          path,       NULL};
    for (int forbidden = 0; forbidden < 2; forbidden++) {
        fake f;
        fake_open(&f, &L, FK_OLD, 3);
        f.logread_err = forbidden ? TLY_FORBIDDEN : TLY_OK;
        const char *tag = forbidden ? "forbidden" : "known";
        tl_sent s = fake_serve(&f, &L, tag, tl_send_spawn(&L, tag, L.logread, args));
        ck_assert_uint_gt(f.dropped, 0);
        ck_assert_uint_eq(f.head, FK_OLD + FK_FRESH);
        fake_close(&f);
        char *err = tl_send_stderr(&L, tag);
        if (!forbidden) {
            tl_assert_sent(s, 0, FK_FRESH, FK_OLD + 1, 0);
            ck_assert_msg(strstr(err, "acknowledged as duplicates were appended by this run"),
                          "send said:\n%s", err);
        } else {
            ck_assert_msg(s.parsed && s.rc == 0 && s.rejected == 0 &&
                              s.sent + s.dups == FK_OLD + FK_FRESH + 1 && s.dups > FK_OLD + 1,
                          "forbidden: sent %ld, duplicates %ld", s.sent, s.dups);
            ck_assert_msg(strstr(err, "not known (log-read answered forbidden)"), "send said:\n%s",
                          err);
        }
        free(err);
    }
    tu_rmtree(strdup(L.dir));
}
END_TEST

/* ------------------------------------------------------------------ */
/* without the head, duplicates stay duplicates and a note says why     */

START_TEST(test_send_head_unknown)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char path[700], dead[64];
    FILE *f = open_input(&L, "ten.jsonl", path, sizeof path);
    tl_put_sales(f, "ten", 0, 10);
    ck_assert_int_eq(fclose(f), 0);
    tu_endpoint(dead, sizeof dead); /* nothing listens here */
    const char *args[] = {"--source", "dist-u", "--ack-timeout-ms", "300", path, NULL};
    tl_assert_sent(tl_send_wait(&L, "first", tl_send_spawn(&L, "first", L.logread, args)), 0, 10, 0,
                   0);
    struct {
        const char *tag, *logread, *note;
    } runs[] = {{"none", NULL, "(no log-read endpoint (give --log-read))"},
                {"dead", dead, "no answer from"},
                {"known", L.logread, NULL}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        tl_sent s =
            tl_send_wait(&L, runs[i].tag, tl_send_spawn(&L, runs[i].tag, runs[i].logread, args));
        tl_assert_sent(s, 0, 0, 10, 0);
        char *err = tl_send_stderr(&L, runs[i].tag);
        bool noted = strstr(err, "note: the log head at the start was not known") != NULL;
        ck_assert_msg(noted == (runs[i].note != NULL) &&
                          (!runs[i].note || strstr(err, runs[i].note)),
                      "%s: send said:\n%s", runs[i].tag, err);
        free(err);
    }
    ck_assert_uint_eq(tl_log_head(&L), 10);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* tally send --csv: files as distributors send them (issue 12 item 6) */

/* The stored event of (source, id), decoded into *ev; returns the record's
 * bytes, which *ev points into (free them after). */
/* The seq the log holds (source, id) at. */
static uint64_t stored_seq(const tl_ledger *L, const char *source, const char *id)
{
    tly_log *log = tl_log_open(L);
    tly_str s = {source, (uint32_t)strlen(source)}, i = {id, (uint32_t)strlen(id)};
    uint64_t seq = 0;
    ck_assert_msg(tly_log_lookup(log, s, i, &seq) == TLY_OK, "%s is not stored", id);
    tly_log_close(log);
    return seq;
}

static uint8_t *stored_event(const tl_ledger *L, const char *source, const char *id, tly_event *ev)
{
    uint64_t seq = stored_seq(L, source, id);
    tly_log *log = tl_log_open(L);
    tly_log_reader *rd = NULL;
    ck_assert_int_eq(tly_log_reader_open(log, seq, &rd), TLY_OK);
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
    uint8_t *copy = malloc(rec.event_len);
    memcpy(copy, rec.event, rec.event_len);
    tly_field_error fe;
    ck_assert_int_eq(tly_event_decode(copy, rec.event_len, rec.recorded_ms, ev, &fe), TLY_OK);
    tly_log_reader_close(rd);
    tly_log_close(log);
    return copy;
}

static void check_stored(const tl_ledger *L, const char *id, tly_ev_type type, const char *name,
                         int64_t amount, const char *currency)
{
    tly_event ev;
    uint8_t *raw = stored_event(L, "dist-erp", id, &ev);
    ck_assert_int_eq(ev.type, type);
    ck_assert_int_eq(ev.amount, amount);
    ck_assert(tly_str_eq(ev.currency, currency));
    tly_str got = type == TLY_EV_SALE ? ev.sku : type == TLY_EV_RETURN ? ev.sale : ev.deal;
    ck_assert_msg(tly_str_eq(got, name), "%s: '%.*s'", id, (int)got.len, got.ptr);
    free(raw);
}

/* An ERP export: a BOM, CRLF, its own headings mapped by --columns, an
 * ignored comment column, quoted fields (a comma, doubled quotes, a line
 * end), a sale, its return and a referral by the type column; a bad amount
 * and a stray quote are reported by their lines and the rows after them are
 * sent. Sent again, every row is a duplicate: the same bytes. */
START_TEST(test_send_csv_distributor)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/erp.csv", L.dir);
    tl_write_text(path,
                  "\xef\xbb\xbfType,InvoiceNo,Partner,Item,Quantity,Net,Currency,Date,Sale,"
                  "Deal,Comment\r\n"
                  ",INV-1,acme,\"HW-7, rack\",2,1234.50,USD,2025-03-01,,,\"a \"\"note\"\"\"\r\n"
                  "return,RET-1,acme,HW-7,1,617.25,USD,2025-03-02,INV-1,,\r\n"
                  "referral,REF-1,acme,,,5000,JPY,2025-03-03,,Big deal,\r\n"
                  "sale,INV-2,acme,SKU-2,1,12.5,JPY,2025-03-01,,,\r\n"
                  ",INV-3,acme,\"two\r\nlines\",1,1,USD,2025-03-01,,,\r\n"
                  ",INV-4,acme,12\" rack,1,1,USD,2025-03-01,,,\r\n"
                  ",,,,,,,,,,\r\n"
                  ",INV-5,acme,SKU-5,1,0.05,EUR,2025-03-02,,,\r\n");
    const char *args[] = {
        "--csv",    "--columns", "id=InvoiceNo,sku=Item,qty=Quantity,amount=Net,at=Date",
        "--source", "dist-erp",  path,
        NULL};
    tl_assert_sent(tl_send_run(&L, "erp", args), 1, 5, 0, 2);
    char *err = tl_send_stderr(&L, "erp");
    ck_assert_msg(strstr(err, "line 5 (id INV-2): bad_field [amount]: JPY has 0 decimals: 12.5 "
                              "(column 'Net')\n") != NULL,
                  "%s", err);
    ck_assert_msg(strstr(err, "line 8 (id ?): malformed: a stray quote") != NULL, "%s", err);
    free(err);
    check_stored(&L, "INV-1", TLY_EV_SALE, "HW-7, rack", 123450, "USD");
    check_stored(&L, "RET-1", TLY_EV_RETURN, "INV-1", 61725, "USD");
    check_stored(&L, "REF-1", TLY_EV_REFERRAL, "Big deal", 5000, "JPY");
    check_stored(&L, "INV-3", TLY_EV_SALE, "two\r\nlines", 100, "USD");
    check_stored(&L, "INV-5", TLY_EV_SALE, "SKU-5", 5, "EUR");
    tl_assert_sent(tl_send_run(&L, "again", args), 1, 0, 5, 2);
    ck_assert_uint_eq(tl_log_head(&L), 5);
    tl_done(&L);
}
END_TEST

/* A header that cannot be used refuses the file before anything is sent
 * (exit 1, one line saying why); bad --columns text is a usage error. */
START_TEST(test_send_csv_refused)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    static const struct {
        const char *text, *columns, *said;
        int rc;
    } cases[] = {
        {"id,partner,sku,qty,amount,currency\nA,acme,S,1,1,USD\n", NULL,
         "CSV line 1: header: no column 'at'", 1},
        {"\n\nid,partner,sku,amount,currency,at,ID\nA,acme,S,1,USD,2025-03-01,B\n", NULL,
         "CSV line 3: header: columns 1 and 7 are both named 'id'", 1},
        {"id,partner,sku,amount,currency,at\nA,acme,S,1,USD,2025-03-01\n", "amount=Net",
         "header: no column 'Net' (--columns amount=Net)", 1},
        {"", NULL, "empty CSV", 1},
        {"id\n", "price=Net", "--columns: 'price=Net' is not FIELD=NAME", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[700], tag[16];
        snprintf(path, sizeof path, "%s/refused-%zu.csv", L.dir, i);
        snprintf(tag, sizeof tag, "refused-%zu", i);
        tl_write_text(path, cases[i].text);
        const char *args[] = {"--csv", "--source", "dist-erp", path, NULL, NULL, NULL};
        if (cases[i].columns) {
            args[3] = "--columns";
            args[4] = cases[i].columns;
            args[5] = path;
        }
        tl_sent s = tl_send_run(&L, tag, args);
        ck_assert_int_eq(s.rc, cases[i].rc);
        char *err = tl_send_stderr(&L, tag);
        ck_assert_msg(strstr(err, cases[i].said) != NULL, "case %zu said: %s", i, err);
        free(err);
    }
    const char *no_csv[] = {"--columns", "id=A", "--source", "dist-erp", "-", NULL};
    ck_assert_int_eq(tl_send_run(&L, "no-csv", no_csv).rc, 2);
    ck_assert_uint_eq(tl_log_head(&L), 0);
    tl_done(&L);
}
END_TEST

/* --receipts: one line per acknowledged event, 'LINE ID SEQ appended|
 * duplicate', each seq the one the log holds the event at; a rejected
 * event has none; sent again, the same seqs as duplicates; a file that
 * cannot be written is exit 1 before anything is sent. */
START_TEST(test_send_receipts)
{
    tl_ledger L;
    tl_init(&L);
    tl_start(&L, NULL);
    char path[700], rec1[700], rec2[700];
    snprintf(path, sizeof path, "%s/in.jsonl", L.dir);
    snprintf(rec1, sizeof rec1, "%s/r1.txt", L.dir);
    snprintf(rec2, sizeof rec2, "%s/r2.txt", L.dir);
    static const char sale[] = "{\"type\":\"sale\",\"id\":\"%s\",\"at\":1735693342313,"
                               "\"partner\":\"acme\",\"sku\":\"S\",\"qty\":1,"
                               "\"amount\":%s,\"currency\":\"USD\"}\n";
    char text[1024] = "";
    const char *ids[] = {"R-1", "R-2", "R-BAD", "R-3"};
    for (int i = 0; i < 4; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), sale, ids[i],
                 i == 2 ? "-5" : "100");
    tl_write_text(path, text);
    const char *args[] = {"--source", "dist-erp", "--receipts", rec1, path, NULL};
    tl_assert_sent(tl_send_run(&L, "r1", args), 1, 3, 0, 1);
    char *got = tu_read_file(rec1, NULL);
    char want[512];
    snprintf(want, sizeof want, "1 R-1 %llu appended\n2 R-2 %llu appended\n4 R-3 %llu appended\n",
             (unsigned long long)stored_seq(&L, "dist-erp", "R-1"),
             (unsigned long long)stored_seq(&L, "dist-erp", "R-2"),
             (unsigned long long)stored_seq(&L, "dist-erp", "R-3"));
    ck_assert_str_eq(got, want);
    free(got);
    args[3] = rec2;
    tl_assert_sent(tl_send_run(&L, "r2", args), 1, 0, 3, 1);
    got = tu_read_file(rec2, NULL);
    snprintf(want, sizeof want,
             "1 R-1 %llu duplicate\n2 R-2 %llu duplicate\n4 R-3 %llu duplicate\n",
             (unsigned long long)stored_seq(&L, "dist-erp", "R-1"),
             (unsigned long long)stored_seq(&L, "dist-erp", "R-2"),
             (unsigned long long)stored_seq(&L, "dist-erp", "R-3"));
    ck_assert_str_eq(got, want);
    free(got);
    char nowhere[800];
    snprintf(nowhere, sizeof nowhere, "%s/no/such/dir/r.txt", L.dir);
    args[3] = nowhere;
    tl_sent s = tl_send_run(&L, "r3", args);
    ck_assert_int_eq(s.rc, 1);
    char *err = tl_send_stderr(&L, "r3");
    ck_assert_msg(strstr(err, "cannot write the receipts") != NULL, "%s", err);
    free(err);
    ck_assert_uint_eq(tl_log_head(&L), 3);
    tl_done(&L);
}
END_TEST

static Suite *send_suite(void)
{
    Suite *s = suite_create("send");
    TCase *lib = tu_tcase(s, "library", 60);
    tu_add_tests(lib, TU_TESTS(test_envelope_bytes, test_client_fit));
    tcase_add_test(tu_tcase(s, "large", 240), test_send_large_events);
    tcase_add_test(tu_tcase(s, "lost_acks", 120), test_send_lost_acks);
    tcase_add_test(tu_tcase(s, "crash", 300), test_send_crash_counts);
    tcase_add_test(tu_tcase(s, "head", 120), test_send_head_unknown);
    TCase *csv = tu_tcase(s, "csv", 120);
    tu_add_tests(csv, TU_TESTS(test_send_csv_distributor, test_send_csv_refused));
    tcase_add_test(tu_tcase(s, "receipts", 120), test_send_receipts);
    return s;
}

int main(void)
{
    return tu_run_suite(send_suite());
}
