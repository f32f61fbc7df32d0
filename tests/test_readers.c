/*
 * test_readers.c — the read side and the ledger's resource bounds (issue 8):
 * private data files whatever the caller's umask, read roles on the events,
 * log-read and query sockets, memory bounded by configuration against
 * clients that never read, log-read serving records of any size, and the
 * CURVE clients of the read side (`tally consume`, the query commands).
 *
 * Every case runs the real `tally` binary ($TALLY_BIN) as child processes on
 * free loopback ports with a fresh data directory, and talks to it with real
 * ZeroMQ sockets from this process. Children are started with
 * PR_SET_PDEATHSIG so that a failing or timed-out case leaves no process
 * behind; a passing case removes its directory. No assertion depends on
 * timing: deadlines only keep a broken build from hanging, and a silence is
 * only ever asserted together with a ZeroMQ monitor event that proves the
 * handshake was refused. The memory cases print their measured figures.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "testledger.h"
#include "testutil.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_query.h"
#include "tly_wire.h"

/* The ledger works through a load it was given (a deadline only). */
#define RT_PROGRESS_MS 180000
/* How long a socket whose handshake was refused is watched for a message
 * that must not come (the refusal itself is proven by the monitor). */
#define RT_SILENCE_MS 1000

#define RT_MIB ((size_t)1 << 20)

/* Under AddressSanitizer the ledger's heap is ASan's: freed memory waits in
 * its quarantine and every byte has shadow memory, so its RSS says nothing
 * about the budgets. The sanitizer run drives the same loads (the replies
 * load smaller: the ledger is several times slower) and checks everything
 * else; it prints the figures, and the release run asserts them. */
#if defined(__SANITIZE_ADDRESS__)
#define RT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT_SANITIZED 1
#endif
#endif
#ifndef RT_SANITIZED
#define RT_SANITIZED 0
#endif

/* The memory cases. 16 clients that never read send 1024 requests each of
 * TLY_BATCH_EVENTS_MAX invalid events (the integer 1): about 68 MB of
 * requests, each answered by a reply of about 40 times its size. Under a
 * sanitizer 256 each: still several times what one peer may have queued. */
#define RT_MEM_CLIENTS 16
#define RT_MEM_REQUESTS (RT_SANITIZED ? 256 : 1024)
/* Besides the budgets the ledger holds its two batches (a few MiB), the
 * requests read ahead from each peer (TLY_LEDGER_PEER_REQUESTS_MAX of 4 KiB
 * here), ZeroMQ's own buffers and the allocator's slack. */
#define RT_MEM_SLACK_BYTES (64 * RT_MIB)
/* Once the clients are gone the ledger's memory is back within this of its
 * base, after at most RT_MEM_SETTLE_MS. */
#define RT_MEM_SETTLED_BYTES (64 * RT_MIB)
#define RT_MEM_SETTLE_MS 20000
/* The stopped subscriber: records of about 1 MiB, four times the events
 * budget in all. */
#define RT_BIG_EVENTS 256
#define RT_BIG_NOTE_BYTES RT_MIB
/* Receive buffer of a client that does not read: small, so that the
 * ledger meets its bounds rather than the kernel absorbing the backlog. */
#define RT_STALLED_RCVBUF 65536

/* ------------------------------------------------------------------ */
/* tally send                                                          */

/* Sends the JSON lines in text with `tally send OPTS...` (NULL-terminated:
 * the source or the CURVE keys) and checks that all `count` were sent. */
static void send_lines(const tl_ledger *L, const char *tag, const char *const *opts,
                       const char *text, long count)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s.jsonl", L->dir, tag);
    tl_write_text(path, text);
    const char *args[16];
    int n = 0;
    for (; *opts && n < 14; opts++)
        args[n++] = *opts;
    args[n++] = path;
    args[n] = NULL;
    tl_assert_sent(tl_send_run(L, tag, args), 0, count, 0, 0);
}

/* `count` sales with ids PREFIX-0.. for partner acme, as JSON lines. */
static char *sales_lines(const char *prefix, int count)
{
    size_t cap = (size_t)count * 256 + 1, used = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    text[0] = '\0';
    for (int i = 0; i < count; i++)
        used += (size_t)snprintf(text + used, cap - used,
                                 "{\"type\":\"sale\",\"id\":\"%s-%d\",\"at\":%lld,\"partner\":"
                                 "\"acme\",\"sku\":\"SKU-1\",\"qty\":1,\"amount\":%d,"
                                 "\"currency\":\"USD\"}\n",
                                 prefix, i, TL_AT_MS + i, 1000 + i);
    return text;
}

/* The ledger is healthy: a normal `tally send` of a few events succeeds. */
static void assert_healthy(const tl_ledger *L, const char *prefix)
{
    char *lines = sales_lines(prefix, 3);
    const char *opts[] = {"--source", "dist-health", NULL};
    send_lines(L, prefix, opts, lines, 3);
    free(lines);
}

/* ------------------------------------------------------------------ */
/* CURVE keys                                                          */

/* One key of the role tests: its source name and roles in authorized_keys
 * and what it may do on each socket. */
typedef struct rt_role {
    const char *name;
    const char *roles;
    bool reads_log;   /* events and log-read */
    bool asks_all;    /* every query */
    const char *mine; /* the partner a partner:ID key asks about */
    tl_keys keys;
} rt_role;

#define RT_ROLES 8
static void roles_init(rt_role r[RT_ROLES])
{
    const rt_role init[RT_ROLES] = {
        {"r-sales", "sales", false, false, NULL, {{0}, {0}, {0}}},
        {"r-certs", "certs", false, false, NULL, {{0}, {0}, {0}}},
        {"r-claims", "claims", false, false, NULL, {{0}, {0}, {0}}},
        {"r-finance", "finance", true, true, NULL, {{0}, {0}, {0}}},
        {"r-reader", "reader", true, false, NULL, {{0}, {0}, {0}}},
        {"r-auditor", "auditor", true, true, NULL, {{0}, {0}, {0}}},
        {"r-partner", "partner:acme", false, false, "acme", {{0}, {0}, {0}}},
        {"r-mixed", "sales,reader", true, false, NULL, {{0}, {0}, {0}}},
    };
    memcpy(r, init, sizeof init);
}

/* Makes every role's keys, the server's and a stranger's (not listed), and
 * writes DIR/authorized_keys into authz. */
static void roles_keys(const tl_ledger *L, rt_role r[RT_ROLES], tl_keys *server, tl_keys *stranger,
                       char *authz, size_t cap)
{
    tl_make_keys(L, "server", server);
    tl_make_keys(L, "stranger", stranger);
    char text[4096] = "# the keys of test_readers\n";
    for (int i = 0; i < RT_ROLES; i++) {
        tl_make_keys(L, r[i].name, &r[i].keys);
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s %s %s\n", r[i].keys.pub, r[i].name,
                 r[i].roles);
    }
    snprintf(authz, cap, "%s/authorized_keys", L->dir);
    tl_write_text(authz, text);
}

/* ------------------------------------------------------------------ */
/* raw ZeroMQ                                                          */

/* A socket that never reads: one message queued in ZeroMQ at most and a
 * small kernel receive buffer, so the backlog stays in the ledger. */
static void set_stalled(void *s)
{
    int one = 1, rcvbuf = RT_STALLED_RCVBUF, sndtimeo = RT_PROGRESS_MS;
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_RCVHWM, &one, sizeof one), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo), 0);
}

/* A socket of a refused key: a request waits a short while for a
 * connection attempt to go out on. */
static void set_refused(void *s)
{
    int sndtimeo = RT_SILENCE_MS;
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo), 0);
}

/* Receives one [topic, record] message of the events socket within
 * timeout_ms and returns the record's seq (0: none came). */
static uint64_t sub_recv_seq(void *sub, int timeout_ms)
{
    char topic[64];
    uint8_t *raw = NULL;
    size_t len = 0;
    if (!tl_sub_recv(sub, timeout_ms, topic, sizeof topic, &raw, &len))
        return 0;
    tly_record rec;
    ck_assert_int_eq(tly_record_decode(raw, len, &rec), TLY_OK);
    uint64_t seq = rec.seq;
    free(raw);
    return seq;
}

/* Watches a socket's handshakes: call before connecting it. */
static void *monitor(void *ctx, void *s)
{
    static int counter;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://rt-monitor-%d", counter++);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    ck_assert_int_eq(zmq_socket_monitor(s, ep, events), 0);
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_connect(mon, ep), 0);
    return mon;
}

/* The first handshake outcome the monitor reports: 1 succeeded, -1 refused
 * (*status gets ZAP's status code for an authentication failure), 0 none
 * within TL_REPLY_MS. */
static int handshake(void *mon, int *status)
{
    zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, TL_REPLY_MS) <= 0)
        return 0;
    uint8_t ev[6];
    ck_assert_int_eq(zmq_recv(mon, ev, sizeof ev, 0), 6);
    char addr[256];
    ck_assert_int_ge(zmq_recv(mon, addr, sizeof addr, 0), 0);
    uint16_t event;
    uint32_t value;
    memcpy(&event, ev, 2);
    memcpy(&value, ev + 2, 4);
    *status = (int)value;
    return event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED ? 1 : -1;
}

/* Asserts that the socket watched by mon was refused by authentication. */
static void assert_refused(void *mon, const char *who)
{
    int status = 0;
    int outcome = handshake(mon, &status);
    ck_assert_msg(outcome == -1, "%s: handshake %s", who,
                  outcome == 1 ? "succeeded" : "neither succeeded nor failed");
    ck_assert_msg(status == 400, "%s: ZAP status %d, expected 400", who, status);
}

static void assert_admitted(void *mon, const char *who)
{
    int status = 0;
    ck_assert_msg(handshake(mon, &status) == 1, "%s: handshake refused (%d)", who, status);
}

/* ------------------------------------------------------------------ */
/* MessagePack and ingest                                              */

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_int64(pk, v);
}

/* A sale of partner acme; with note_len > 0 it carries an unknown key
 * "x-note" holding a string of that many bytes. Appended to sb. */
static void pack_sale(msgpack_sbuffer *sb, const char *id, size_t note_len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, note_len ? 9 : 8);
    pack_kv_str(&pk, "type", "sale");
    pack_kv_str(&pk, "id", id);
    pack_kv_int(&pk, "at", TL_AT_MS);
    pack_kv_str(&pk, "partner", "acme");
    pack_kv_str(&pk, "sku", "SKU-1");
    pack_kv_int(&pk, "qty", 1);
    pack_kv_int(&pk, "amount", 100);
    pack_kv_str(&pk, "currency", "USD");
    if (note_len) {
        char *note = malloc(note_len);
        ck_assert_ptr_nonnull(note);
        memset(note, 'n', note_len);
        msgpack_pack_str_with_body(&pk, "x-note", 6);
        msgpack_pack_str_with_body(&pk, note, note_len);
        free(note);
    }
}

/* A request {"req", "source"?, "events": [one sale]} into out (cleared). */
static void sale_request(msgpack_sbuffer *out, uint64_t req, const char *source, const char *id,
                         size_t note_len)
{
    msgpack_sbuffer ev;
    msgpack_sbuffer_init(&ev);
    pack_sale(&ev, id, note_len);
    tly_span span = {(const uint8_t *)ev.data, ev.size};
    msgpack_sbuffer_clear(out);
    ck_assert_int_eq(tly_wire_ingest_encode(out, req, source, false, &span, 1), TLY_OK);
    msgpack_sbuffer_destroy(&ev);
}

/* Sends one ingest frame and returns the result of its single event;
 * *seq gets its seq when accepted. */
static tly_err ingest_one(void *d, const msgpack_sbuffer *frame, uint64_t *seq)
{
    uint8_t *reply = NULL;
    size_t len = 0;
    tl_send_frame(d, frame->data, frame->size);
    ck_assert_msg(tl_recv(d, TL_REPLY_MS, &reply, &len), "no ingest reply");
    uint64_t req;
    tly_ingest_result res[1];
    uint32_t count = 0;
    char msg[160];
    tly_err whole = tly_wire_reply_decode(reply, len, &req, res, 1, &count, msg, sizeof msg);
    free(reply);
    ck_assert_msg(whole == TLY_OK, "ingest: whole-request error %s (%s)", tly_err_name(whole), msg);
    ck_assert_uint_eq(count, 1);
    if (seq)
        *seq = res[0].seq;
    return res[0].err;
}

/* Sends a sale (req, id) and asserts it was appended; returns its seq. */
static uint64_t ingest_sale(void *d, uint64_t req, const char *source, const char *id,
                            size_t note_len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sale_request(&sb, req, source, id, note_len);
    uint64_t seq = 0;
    tly_err err = ingest_one(d, &sb, &seq);
    ck_assert_msg(err == TLY_OK, "sale %s: %s", id, tly_err_name(err));
    msgpack_sbuffer_destroy(&sb);
    return seq;
}

/* ------------------------------------------------------------------ */
/* 1. private data files                                               */

static int g_tree_entries; /* entries the walk looked at */

static int check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    g_tree_entries++;
    mode_t mode = st->st_mode & 07777;
    if (flag == FTW_D)
        ck_assert_msg(mode == TLY_DIR_MODE, "%s: mode %04o, expected %04o", path, mode,
                      TLY_DIR_MODE);
    else if (flag == FTW_F)
        ck_assert_msg(mode == TLY_FILE_MODE, "%s: mode %04o, expected %04o", path, mode,
                      TLY_FILE_MODE);
    else
        ck_abort_msg("%s: neither a directory nor a regular file (%d)", path, flag);
    return 0;
}

static void assert_mode(const char *data, const char *rel, mode_t want)
{
    char path[900];
    snprintf(path, sizeof path, "%s%s", data, rel);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
    ck_assert_msg((st.st_mode & 07777) == want, "%s: mode %04o, expected %04o", path,
                  st.st_mode & 07777, want);
}

/* Runs a ledger, a few events and `tally consume --exit-at-head` with the
 * given umask inherited from this process, then checks every mode. */
static void modes_under(mode_t mask)
{
    tl_ledger L;
    tl_init(&L);
    mode_t old = umask(mask);
    tl_start(&L, NULL);
    char *lines = sales_lines("m", 5);
    const char *opts[] = {"--source", "dist-modes", NULL};
    send_lines(&L, "send", opts, lines, 5);
    free(lines);
    const char *consume[] = {"consume", "--data", L.data, "--exit-at-head", NULL};
    ck_assert_int_eq(tl_run(&L, "consume", consume), 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    umask(old);

    const char *dirs[] = {"", "/log", "/views", "/views/0-of-1"};
    const char *files[] = {"/log/data.mdb", "/log/lock.mdb", "/views/0-of-1/data.mdb",
                           "/views/0-of-1/lock.mdb"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        assert_mode(L.data, dirs[i], TLY_DIR_MODE);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        assert_mode(L.data, files[i], TLY_FILE_MODE);
    /* And everything else under DIR, whatever it is called. */
    g_tree_entries = 0;
    ck_assert_int_eq(nftw(L.data, check_entry, 16, FTW_PHYS), 0);
    ck_assert_int_ge(g_tree_entries, 8);
    tl_done(&L);
}

START_TEST(test_private_modes_umask_0)
{
    modes_under(0);
}
END_TEST

START_TEST(test_private_modes_umask_022)
{
    modes_under(022);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 2. read roles on the events and log-read sockets                    */

/* A CURVE ledger that knows every role's key (not the stranger's). */
typedef struct curve_ledger {
    tl_ledger L;
    rt_role roles[RT_ROLES];
    tl_keys server, stranger;
    char authz[700];
    void *ctx;
} curve_ledger;

static void curve_start(curve_ledger *c)
{
    tl_init(&c->L);
    roles_init(c->roles);
    roles_keys(&c->L, c->roles, &c->server, &c->stranger, c->authz, sizeof c->authz);
    const char *extra[] = {"--curve-secret", c->server.file, "--authorized-keys",
                           c->authz,         "--no-sync",    NULL};
    tl_start(&c->L, extra);
    c->ctx = tl_ctx();
}

/* Key i of the role tests; RT_ROLES is the stranger. */
static const tl_keys *key_of(const curve_ledger *c, int i)
{
    return i < RT_ROLES ? &c->roles[i].keys : &c->stranger;
}

static const char *name_of(const curve_ledger *c, int i)
{
    return i < RT_ROLES ? c->roles[i].name : "stranger";
}

static bool reads_log(const curve_ledger *c, int i)
{
    return i < RT_ROLES && c->roles[i].reads_log;
}

/* A subscriber per key, each watched by a monitor. */
typedef struct subs {
    void *sock[RT_ROLES + 1];
    void *mon[RT_ROLES + 1];
    uint64_t last[RT_ROLES + 1]; /* the last seq each received */
} subs;

static void subs_open(curve_ledger *c, subs *s)
{
    for (int i = 0; i <= RT_ROLES; i++) {
        s->sock[i] = tl_sock(c->ctx, ZMQ_SUB, c->server.pub, key_of(c, i));
        ck_assert_int_eq(zmq_setsockopt(s->sock[i], ZMQ_SUBSCRIBE, "", 0), 0);
        s->mon[i] = monitor(c->ctx, s->sock[i]);
        tl_connect(s->sock[i], c->L.events);
        s->last[i] = 0;
    }
}

static void subs_close(subs *s)
{
    for (int i = 0; i <= RT_ROLES; i++) {
        zmq_close(s->mon[i]);
        zmq_close(s->sock[i]);
    }
}

/* Takes what subscriber i has received so far, waiting up to wait_ms for
 * the first message; seqs must increase. */
static void sub_take(subs *s, int i, int wait_ms)
{
    uint64_t seq;
    while ((seq = sub_recv_seq(s->sock[i], wait_ms)) != 0) {
        ck_assert_uint_gt(seq, s->last[i]);
        s->last[i] = seq;
        wait_ms = 0;
    }
}

/* A subscription takes effect some time after the handshake: sends sales
 * with the finance key until every reading key has received one. */
static void publish_until_heard(curve_ledger *c, void *fin, subs *s)
{
    for (int k = 0; k < 100; k++) {
        char id[32];
        snprintf(id, sizeof id, "ev-%d", k);
        ingest_sale(fin, (uint64_t)k + 1, NULL, id, 0);
        bool all = true;
        for (int i = 0; i < RT_ROLES; i++) {
            if (!reads_log(c, i))
                continue;
            sub_take(s, i, s->last[i] ? 0 : 100);
            all = all && s->last[i] != 0;
        }
        if (all)
            return;
    }
    ck_abort_msg("a reading key received no published record");
}

/* The events socket admits reader, auditor and finance keys only: each of
 * them receives every record up to a final one, the others are refused at
 * the handshake and receive nothing. */
START_TEST(test_events_roles)
{
    curve_ledger c;
    curve_start(&c);
    subs s;
    subs_open(&c, &s);
    int fin_i = 3;
    ck_assert_str_eq(c.roles[fin_i].roles, "finance");
    void *fin =
        tl_connect(tl_sock(c.ctx, ZMQ_DEALER, c.server.pub, &c.roles[fin_i].keys), c.L.ingest);
    publish_until_heard(&c, fin, &s);
    uint64_t final = ingest_sale(fin, 1000, NULL, "ev-final", 0);
    for (int i = 0; i <= RT_ROLES; i++) {
        if (!reads_log(&c, i))
            continue;
        while (s.last[i] < final) {
            uint64_t before = s.last[i];
            sub_take(&s, i, TL_REPLY_MS);
            ck_assert_msg(s.last[i] > before, "%s: seq %llu was not published to it",
                          name_of(&c, i), (unsigned long long) final);
        }
        assert_admitted(s.mon[i], name_of(&c, i));
    }
    for (int i = 0; i <= RT_ROLES; i++) {
        if (reads_log(&c, i))
            continue;
        assert_refused(s.mon[i], name_of(&c, i));
        ck_assert_msg(sub_recv_seq(s.sock[i], RT_SILENCE_MS) == 0,
                      "%s (%s) received a published record", name_of(&c, i),
                      i < RT_ROLES ? c.roles[i].roles : "unknown key");
    }
    zmq_close(fin);
    subs_close(&s);
    zmq_ctx_term(c.ctx);
    tl_done(&c.L);
}
END_TEST

/* Log-read with key i: records for a reading key, forbidden for another
 * listed key, no answer (the handshake is refused) for the stranger. */
static void logread_as(curve_ledger *c, int i, uint64_t head)
{
    void *lr = tl_sock(c->ctx, ZMQ_DEALER, c->server.pub, key_of(c, i));
    void *mon = monitor(c->ctx, lr);
    tl_connect(lr, c->L.logread);
    const char *who = name_of(c, i);
    if (i == RT_ROLES) {
        set_refused(lr);
        assert_refused(mon, who);
        tl_logread r = tl_logread_ask(&c->L, lr, 1, 100, RT_SILENCE_MS);
        ck_assert_msg(!r.answered, "an unknown key was answered by log-read");
    } else {
        tl_logread r = tl_logread_ask(&c->L, lr, 1, 100, TL_REPLY_MS);
        ck_assert_msg(r.answered, "%s: no log-read reply", who);
        if (reads_log(c, i)) {
            ck_assert_msg(r.error[0] == '\0', "%s (%s): log-read error %s", who, c->roles[i].roles,
                          r.error);
            ck_assert_uint_eq(r.records, head);
            ck_assert_uint_eq(r.head, head);
        } else {
            ck_assert_msg(strcmp(r.error, "forbidden") == 0, "%s (%s): log-read gave '%s' (%u)",
                          who, c->roles[i].roles, r.error, r.records);
        }
        assert_admitted(mon, who);
    }
    zmq_close(mon);
    zmq_close(lr);
}

START_TEST(test_logread_roles)
{
    curve_ledger c;
    curve_start(&c);
    void *fin = tl_connect(tl_sock(c.ctx, ZMQ_DEALER, c.server.pub, &c.roles[3].keys), c.L.ingest);
    for (int k = 0; k < 5; k++) {
        char id[32];
        snprintf(id, sizeof id, "lr-%d", k);
        ingest_sale(fin, (uint64_t)k + 1, NULL, id, 0);
    }
    uint64_t head = tl_log_head(&c.L);
    ck_assert_uint_eq(head, 5);
    for (int i = 0; i <= RT_ROLES; i++)
        logread_as(&c, i, head);

    /* Reading is not writing: the reader key may not send a sale. */
    ck_assert_str_eq(c.roles[4].roles, "reader");
    void *rd = tl_connect(tl_sock(c.ctx, ZMQ_DEALER, c.server.pub, &c.roles[4].keys), c.L.ingest);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sale_request(&sb, 1, NULL, "rd-1", 0);
    ck_assert_int_eq(ingest_one(rd, &sb, NULL), TLY_FORBIDDEN);
    ck_assert_uint_eq(tl_log_head(&c.L), head);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(rd);
    zmq_close(fin);
    zmq_ctx_term(c.ctx);
    tl_done(&c.L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 3. read roles on the query service                                  */

/* A program, two partners, their sales and claims (shapes of the seed101
 * vector), sent by finance. */
static const char QUERY_EVENTS[] =
    "{\"at\":1735689600000,\"currency\":\"USD\",\"id\":\"FIN-1\",\"mdf_expiry_periods\":2,"
    "\"period\":\"quarter\",\"program\":\"apex\",\"rebate\":{\"brackets\":[{\"bps\":100,"
    "\"from\":0},{\"bps\":200,\"from\":3600000}],\"mode\":\"retroactive\"},"
    "\"tier_window_periods\":2,\"tiers\":[{\"mdf_bps\":100,\"min_certs\":0,\"min_revenue\":0,"
    "\"name\":\"Authorized\"},{\"mdf_bps\":150,\"min_certs\":1,\"min_revenue\":2800000,"
    "\"name\":\"Silver\"}],\"type\":\"program\",\"version\":1}\n"
    "{\"at\":1735689901000,\"id\":\"FIN-2\",\"kind\":\"var\",\"name\":\"Acme Var\","
    "\"partner\":\"acme\",\"program\":\"apex\",\"region\":\"EMEA\",\"type\":\"partner\"}\n"
    "{\"at\":1735689902000,\"id\":\"FIN-3\",\"kind\":\"si\",\"name\":\"Beta Si\","
    "\"partner\":\"beta\",\"program\":\"apex\",\"region\":\"APAC\",\"type\":\"partner\"}\n"
    "{\"amount\":2888400,\"at\":1735722142313,\"currency\":\"USD\",\"id\":\"S-1\","
    "\"partner\":\"acme\",\"qty\":2,\"sku\":\"SRV-0006\",\"type\":\"sale\"}\n"
    "{\"amount\":825690,\"at\":1735722150066,\"currency\":\"USD\",\"id\":\"S-2\","
    "\"partner\":\"beta\",\"qty\":3,\"sku\":\"SRV-0017\",\"type\":\"sale\"}\n"
    "{\"action\":\"submit\",\"activity\":\"webinar\",\"amount\":748,\"at\":1737969805215,"
    "\"claim\":\"CLM-acme-001\",\"id\":\"C-1\",\"partner\":\"acme\",\"type\":\"claim\"}\n"
    "{\"action\":\"submit\",\"activity\":\"training event\",\"amount\":3735,"
    "\"at\":1737969806215,\"claim\":\"CLM-beta-001\",\"id\":\"C-2\",\"partner\":\"beta\","
    "\"type\":\"claim\"}\n";
#define QUERY_EVENT_COUNT 7

#define RT_PARTNER_QS 4
#define RT_GLOBAL_QS 3
#define RT_QUERIES (RT_PARTNER_QS * 2 + RT_GLOBAL_QS)
static const char *const partner_qs[RT_PARTNER_QS] = {"balance", "rebate", "tier", "claims"};
static const char *const global_qs[RT_GLOBAL_QS] = {"liabilities", "exceptions", "status"};
static const char *const partners[2] = {"acme", "beta"};

/* Query n of the matrix as JSON text; *partner gets its partner (or NULL). */
static void query_text(int n, char *buf, size_t cap, const char **partner)
{
    *partner = NULL;
    if (n < RT_PARTNER_QS * 2) {
        *partner = partners[n % 2];
        snprintf(buf, cap, "{\"q\":\"%s\",\"partner\":\"%s\"}", partner_qs[n / 2], *partner);
    } else {
        snprintf(buf, cap, "{\"q\":\"%s\"}", global_qs[n - RT_PARTNER_QS * 2]);
    }
}

/* Asks the query service; NULL when no answer comes within timeout_ms. */
static json_t *ask(void *sock, const char *text, int timeout_ms)
{
    json_error_t jerr;
    json_t *req = json_loads(text, 0, &jerr);
    ck_assert_msg(req != NULL, "bad test JSON %s: %s", text, jerr.text);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(tly_query_pack(req, &sb), TLY_OK);
    bool sent = tl_send_request(sock, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    json_decref(req);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!sent || !tl_recv(sock, timeout_ms, &buf, &len))
        return NULL;
    json_t *reply = tly_json_from_mp(buf, len);
    free(buf);
    ck_assert_msg(json_is_object(reply), "%s: the reply is not a map", text);
    return reply;
}

static const char *error_of(const json_t *reply)
{
    return json_string_value(json_object_get(reply, "error"));
}

/* Starts `tally query` with CURVE on c's keys over DIR's views. */
static pid_t query_start(const curve_ledger *c, char *ep, size_t cap)
{
    tu_endpoint(ep, cap);
    char log[700];
    snprintf(log, sizeof log, "%s/query.log", c->L.dir);
    const char *argv[] = {
        tu_tally(), "query",          "--data",       c->L.data,           "--query",
        ep,         "--curve-secret", c->server.file, "--authorized-keys", c->authz,
        NULL};
    pid_t pid = tl_spawn(argv, log, log);
    const char *eps[] = {ep, NULL};
    tl_wait_ready(pid, eps, log, "tally query");
    return pid;
}

/* The finance key's answers: the reference every permitted answer equals.
 * Each is a real answer (no error; a partner query names its partner). */
static void reference_answers(curve_ledger *c, const char *ep, json_t *want[RT_QUERIES])
{
    void *s = tl_connect(tl_sock(c->ctx, ZMQ_DEALER, c->server.pub, &c->roles[3].keys), ep);
    for (int n = 0; n < RT_QUERIES; n++) {
        char text[128];
        const char *partner;
        query_text(n, text, sizeof text, &partner);
        want[n] = ask(s, text, TL_REPLY_MS);
        ck_assert_msg(want[n] != NULL, "finance: no answer to %s", text);
        ck_assert_msg(!error_of(want[n]), "finance: %s answered %s", text, error_of(want[n]));
        if (partner)
            ck_assert_str_eq(json_string_value(json_object_get(want[n], "partner")), partner);
    }
    zmq_close(s);
}

/* Key i asks every query: a permitted one gets finance's answer, any other
 * `forbidden`. */
static void ask_all_as(curve_ledger *c, int i, const char *ep, json_t *const want[RT_QUERIES])
{
    const rt_role *r = &c->roles[i];
    void *s = tl_sock(c->ctx, ZMQ_DEALER, c->server.pub, &r->keys);
    void *mon = monitor(c->ctx, s);
    tl_connect(s, ep);
    for (int n = 0; n < RT_QUERIES; n++) {
        char text[128];
        const char *partner;
        query_text(n, text, sizeof text, &partner);
        json_t *got = ask(s, text, TL_REPLY_MS);
        ck_assert_msg(got != NULL, "%s (%s): no answer to %s", r->name, r->roles, text);
        bool allowed = r->asks_all || (partner && r->mine && strcmp(partner, r->mine) == 0);
        char *dump = json_dumps(got, JSON_COMPACT);
        if (allowed)
            ck_assert_msg(json_equal(got, want[n]), "%s (%s) asked %s: %s", r->name, r->roles, text,
                          dump);
        else
            ck_assert_msg(error_of(got) && strcmp(error_of(got), "forbidden") == 0,
                          "%s (%s) asked %s: %s, expected forbidden", r->name, r->roles, text,
                          dump);
        free(dump);
        json_decref(got);
    }
    assert_admitted(mon, r->name);
    zmq_close(mon);
    zmq_close(s);
}

START_TEST(test_query_roles)
{
    curve_ledger c;
    curve_start(&c);
    const char *opts[] = {"--curve-server-key", c.server.pub, "--curve-secret",
                          c.roles[3].keys.file, NULL};
    send_lines(&c.L, "query-events", opts, QUERY_EVENTS, QUERY_EVENT_COUNT);
    const char *consume[] = {"consume", "--data", c.L.data, "--exit-at-head", NULL};
    ck_assert_int_eq(tl_run(&c.L, "consume", consume), 0);
    char ep[64];
    pid_t q = query_start(&c, ep, sizeof ep);
    json_t *want[RT_QUERIES];
    reference_answers(&c, ep, want);
    for (int i = 0; i < RT_ROLES; i++)
        ask_all_as(&c, i, ep, want);

    /* An unknown key is refused at the handshake: no answer at all. */
    void *s = tl_sock(c.ctx, ZMQ_DEALER, c.server.pub, &c.stranger);
    set_refused(s);
    void *mon = monitor(c.ctx, s);
    tl_connect(s, ep);
    assert_refused(mon, "stranger");
    json_t *got = ask(s, "{\"q\":\"status\"}", RT_SILENCE_MS);
    ck_assert_msg(got == NULL, "an unknown key was answered by the query service");
    zmq_close(mon);
    zmq_close(s);

    for (int n = 0; n < RT_QUERIES; n++)
        json_decref(want[n]);
    ck_assert_int_eq(tl_stop_pid(&q, SIGTERM), 0);
    zmq_ctx_term(c.ctx);
    tl_done(&c.L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 4. memory bounded by configuration                                  */

typedef struct rt_mem {
    size_t hwm, rss, anon, file; /* VmHWM, VmRSS, RssAnon, RssFile in bytes */
} rt_mem;

static size_t proc_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in /proc/PID/status", key);
    return (size_t)strtoull(p + strlen(key), NULL, 10) * 1024u;
}

static rt_mem proc_mem(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = tu_read_file(path, NULL);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    rt_mem m = {proc_field(text, "VmHWM:"), proc_field(text, "VmRSS:"),
                proc_field(text, "RssAnon:"), proc_field(text, "RssFile:")};
    free(text);
    return m;
}

static void print_mem(const char *what, const char *when, rt_mem m)
{
    fprintf(stderr,
            "test_readers: %s: %-6s VmHWM %6.1f MiB, VmRSS %6.1f MiB, RssAnon %6.1f MiB, "
            "RssFile %6.1f MiB\n",
            what, when, (double)m.hwm / RT_MIB, (double)m.rss / RT_MIB, (double)m.anon / RT_MIB,
            (double)m.file / RT_MIB);
}

/* Asserts got < limit (bytes), except under a sanitizer (RT_SANITIZED). */
static void assert_under(const char *what, size_t got, size_t limit)
{
    if (got < limit)
        return;
    fprintf(stderr, "test_readers: %s: %zu MiB, limit %zu MiB%s\n", what, got / RT_MIB,
            limit / RT_MIB, RT_SANITIZED ? " (not asserted under a sanitizer)" : "");
    ck_assert_msg(RT_SANITIZED, "%s: %zu MiB, not under %zu MiB", what, got / RT_MIB,
                  limit / RT_MIB);
}

/* Polls until the ledger's RssAnon (anon) or VmRSS is under limit, for at
 * most RT_MEM_SETTLE_MS (not under a sanitizer); returns the last reading. */
static rt_mem settle(pid_t pid, bool anon, size_t limit)
{
    rt_mem m = proc_mem(pid);
    for (int waited = 0;
         !RT_SANITIZED && (anon ? m.anon : m.rss) >= limit && waited < RT_MEM_SETTLE_MS;
         waited += 100) {
        tu_sleep_ms(100);
        m = proc_mem(pid);
    }
    return m;
}

static void assert_logged(const tl_ledger *L, const char *needle)
{
    char *text = tu_read_file(L->logfile, NULL);
    ck_assert_msg(text && strstr(text, needle), "the ledger did not log \"%s\":\n%s", needle,
                  text ? text : "");
    free(text);
}

/* A request of TLY_BATCH_EVENTS_MAX events, each the integer 1 (not an
 * event: each result is an error with a message). */
static void invalid_request(msgpack_sbuffer *out)
{
    static const uint8_t one = 0x01;
    tly_span *spans = malloc(TLY_BATCH_EVENTS_MAX * sizeof *spans);
    ck_assert_ptr_nonnull(spans);
    for (uint32_t i = 0; i < TLY_BATCH_EVENTS_MAX; i++)
        spans[i] = (tly_span){&one, 1};
    ck_assert_int_eq(tly_wire_ingest_encode(out, 1, "dist-mem", false, spans, TLY_BATCH_EVENTS_MAX),
                     TLY_OK);
    free(spans);
}

/* One such request from a client that reads: its reply is far larger than
 * the request (the load below relies on it). Returns the reply's size. */
static size_t reply_ratio(const tl_ledger *L, void *ctx, const msgpack_sbuffer *frame)
{
    void *d = tl_connect(tl_sock(ctx, ZMQ_DEALER, NULL, NULL), L->ingest);
    tl_send_frame(d, frame->data, frame->size);
    uint8_t *reply = NULL;
    size_t len = 0;
    ck_assert_msg(tl_recv(d, TL_REPLY_MS, &reply, &len), "no reply to the invalid request");
    uint64_t req;
    uint32_t count = 0;
    tly_ingest_result *res = calloc(TLY_BATCH_EVENTS_MAX, sizeof *res);
    ck_assert_int_eq(
        tly_wire_reply_decode(reply, len, &req, res, TLY_BATCH_EVENTS_MAX, &count, NULL, 0),
        TLY_OK);
    ck_assert_uint_eq(count, TLY_BATCH_EVENTS_MAX);
    ck_assert_int_ne(res[0].err, TLY_OK);
    ck_assert_int_ne(res[TLY_BATCH_EVENTS_MAX - 1].err, TLY_OK);
    ck_assert_uint_ge(len, 16 * frame->size);
    /* within the reply budget's bound on one reply */
    ck_assert_uint_le(len, TLY_LEDGER_REPLY_BYTES_MAX);
    free(res);
    free(reply);
    zmq_close(d);
    return len;
}

/* Counts the clients' final sales ("mem-final-C") in the log. */
static int finals_logged(const tl_ledger *L)
{
    tly_log *log = tl_log_open(L);
    int found = 0;
    for (int c = 0; c < RT_MEM_CLIENTS; c++) {
        char id[32];
        snprintf(id, sizeof id, "mem-final-%d", c);
        tly_str src = {"dist-mem", 8}, sid = {id, (uint32_t)strlen(id)};
        uint64_t seq;
        found += tly_log_lookup(log, src, sid, &seq) == TLY_OK;
    }
    tly_log_close(log);
    return found;
}

/* Each client sends RT_MEM_REQUESTS invalid requests and then one valid
 * sale, never reading; returns once the ledger has appended every final
 * sale, so it has handled every request before it. */
static void load_never_reading(const tl_ledger *L, void *d[RT_MEM_CLIENTS],
                               const msgpack_sbuffer *frame)
{
    for (int r = 0; r < RT_MEM_REQUESTS; r++)
        for (int c = 0; c < RT_MEM_CLIENTS; c++)
            tl_send_frame(d[c], frame->data, frame->size);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int c = 0; c < RT_MEM_CLIENTS; c++) {
        char id[32];
        snprintf(id, sizeof id, "mem-final-%d", c);
        sale_request(&sb, 2, "dist-mem", id, 0);
        tl_send_frame(d[c], sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    for (int waited = 0; finals_logged(L) < RT_MEM_CLIENTS; waited += 100) {
        ck_assert_msg(waited < RT_PROGRESS_MS, "the ledger did not get through the load");
        tu_sleep_ms(100);
    }
}

/* Clients that send and never read: the ledger's peak stays within its
 * documented budget, it logs the drops, its memory comes back once they are
 * gone, and it goes on serving. */
START_TEST(test_replies_budget)
{
    tl_ledger L;
    tl_init(&L);
    const char *extra[] = {"--no-sync", NULL};
    tl_start(&L, extra);
    void *ctx = tl_ctx();
    msgpack_sbuffer frame;
    msgpack_sbuffer_init(&frame);
    invalid_request(&frame);
    size_t reply = reply_ratio(&L, ctx, &frame);
    assert_healthy(&L, "before");
    rt_mem base = proc_mem(L.pid);
    fprintf(stderr,
            "test_readers: replies budget: %d clients x %d requests of %zu bytes (%.1f MB), "
            "each reply %zu bytes\n",
            RT_MEM_CLIENTS, RT_MEM_REQUESTS, frame.size,
            (double)frame.size * RT_MEM_CLIENTS * RT_MEM_REQUESTS / 1e6, reply);
    print_mem("replies budget", "base", base);

    void *d[RT_MEM_CLIENTS];
    for (int c = 0; c < RT_MEM_CLIENTS; c++) {
        d[c] = tl_sock(ctx, ZMQ_DEALER, NULL, NULL);
        set_stalled(d[c]);
        tl_connect(d[c], L.ingest);
    }
    load_never_reading(&L, d, &frame);
    rt_mem peak = proc_mem(L.pid);
    print_mem("replies budget", "loaded", peak);
    size_t limit =
        base.rss + TLY_LEDGER_REPLIES_BYTES_MAX + TLY_LEDGER_EVENTS_BYTES_MAX + RT_MEM_SLACK_BYTES;
    assert_under("ledger peak (VmHWM) under the clients that never read", peak.hwm, limit);
    assert_logged(&L, "replies: dropped");

    for (int c = 0; c < RT_MEM_CLIENTS; c++)
        zmq_close(d[c]);
    rt_mem after = settle(L.pid, false, base.rss + RT_MEM_SETTLED_BYTES);
    print_mem("replies budget", "after", after);
    assert_under("ledger VmRSS after the clients left", after.rss, base.rss + RT_MEM_SETTLED_BYTES);
    assert_healthy(&L, "after");
    msgpack_sbuffer_destroy(&frame);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* Small sales until a new subscriber receives one: the ledger publishes. */
static void published_again(void *ctx, const tl_ledger *L, void *d)
{
    void *sub = tl_sock(ctx, ZMQ_SUB, NULL, NULL);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    tl_connect(sub, L->events);
    bool heard = false;
    for (int k = 0; !heard; k++) {
        ck_assert_msg(k < 100, "the ledger no longer publishes");
        char id[32];
        snprintf(id, sizeof id, "again-%d", k);
        ingest_sale(d, 5000 + (uint64_t)k, "dist-big", id, 0);
        heard = sub_recv_seq(sub, 100) != 0;
    }
    zmq_close(sub);
}

/* A subscriber that connects and never reads while a producer sends
 * records of about 1 MiB: the ledger's memory stays within the events
 * budget, the drops are logged, producers are still served. */
START_TEST(test_stopped_subscriber)
{
    tl_ledger L;
    tl_init(&L);
    const char *extra[] = {"--no-sync", NULL};
    tl_start(&L, extra);
    void *ctx = tl_ctx();
    void *sub = tl_sock(ctx, ZMQ_SUB, NULL, NULL);
    set_stalled(sub);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    tl_connect(sub, L.events);
    void *d = tl_connect(tl_sock(ctx, ZMQ_DEALER, NULL, NULL), L.ingest);
    /* Small sales until the subscription is in place (one arrives); from
     * then on the subscriber never reads. */
    bool heard = false;
    for (int k = 0; !heard; k++) {
        ck_assert_msg(k < 100, "no record published to the subscriber");
        char id[32];
        snprintf(id, sizeof id, "warm-%d", k);
        ingest_sale(d, (uint64_t)k + 1, "dist-big", id, 0);
        heard = sub_recv_seq(sub, 100) != 0;
    }
    rt_mem base = proc_mem(L.pid);
    print_mem("stopped subscriber", "base", base);
    for (int k = 0; k < RT_BIG_EVENTS; k++) {
        char id[32];
        snprintf(id, sizeof id, "big-%d", k);
        ingest_sale(d, 1000 + (uint64_t)k, "dist-big", id, RT_BIG_NOTE_BYTES);
    }
    rt_mem peak = proc_mem(L.pid);
    print_mem("stopped subscriber", "loaded", peak);
    size_t limit =
        base.rss + TLY_LEDGER_REPLIES_BYTES_MAX + TLY_LEDGER_EVENTS_BYTES_MAX + RT_MEM_SLACK_BYTES;
    assert_under("ledger peak (VmHWM) under a stopped subscriber", peak.hwm, limit);
    /* The records queued for the subscriber are heap memory; the log's
     * pages the ledger read to publish them are file pages (RssFile). */
    size_t anon_limit = base.anon + TLY_LEDGER_EVENTS_BYTES_MAX + RT_MEM_SLACK_BYTES;
    assert_under("ledger RssAnon under a stopped subscriber", peak.anon, anon_limit);
    assert_logged(&L, "events: dropped");
    assert_healthy(&L, "after-big");

    /* Once it leaves, the records queued for it are released (well below
     * the budget they filled) and publishing resumes for a new subscriber. */
    zmq_close(sub);
    size_t released = base.anon + TLY_LEDGER_EVENTS_BYTES_MAX / 2;
    rt_mem after = settle(L.pid, true, released);
    print_mem("stopped subscriber", "after", after);
    assert_under("ledger RssAnon after the subscriber left", after.anon, released);
    published_again(ctx, &L, d);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 5. log-read serves records of any size                              */

/* A request of one sale whose "x-note" makes the frame exactly
 * TLY_FRAME_BYTES_MAX, so its record alone outgrows a log-read frame. */
static void frame_filling_request(msgpack_sbuffer *out, uint64_t req, const char *id)
{
    size_t note = TLY_FRAME_BYTES_MAX - 1024;
    sale_request(out, req, "dist-lr", id, note);
    ck_assert_uint_le(out->size, TLY_FRAME_BYTES_MAX);
    note += TLY_FRAME_BYTES_MAX - out->size;
    sale_request(out, req, "dist-lr", id, note);
    ck_assert_uint_eq(out->size, TLY_FRAME_BYTES_MAX);
}

/* Every `from` up to the head gets at least one record, in order. */
static void logread_every_from(const tl_ledger *L, void *lr, uint64_t head)
{
    for (uint64_t from = 1; from <= head + 1; from++) {
        tl_logread r = tl_logread_ask(L, lr, from, 5, TL_REPLY_MS);
        ck_assert_msg(r.answered && r.error[0] == '\0', "log-read from %llu: %s",
                      (unsigned long long)from, r.answered ? r.error : "no reply");
        ck_assert_uint_eq(r.head, head);
        ck_assert_uint_le(r.bytes, TLY_LOGREAD_REPLY_BYTES_MAX);
        if (from <= head)
            ck_assert_msg(r.records >= 1 && r.records <= head - from + 1,
                          "log-read from %llu served %u records (head %llu)",
                          (unsigned long long)from, r.records, (unsigned long long)head);
        else
            ck_assert_uint_eq(r.records, 0);
    }
}

/* The checkpoint of shard 0/1 in DIR per `tally status --json`. */
static uint64_t status_checkpoint(const tl_ledger *L, const char *dir)
{
    char dead[64];
    tu_endpoint(dead, sizeof dead); /* nothing listens there */
    const char *args[] = {"status", "--data", dir, "--query", dead, "--json", NULL};
    ck_assert_int_eq(tl_run(L, "status", args), 0);
    char *out = tl_output(L, "status", "out");
    json_error_t jerr;
    json_t *st = json_loads(out, 0, &jerr);
    ck_assert_msg(st != NULL, "tally status --json printed: %s", out);
    json_t *shard = json_array_get(json_object_get(st, "shards"), 0);
    ck_assert_msg(json_is_integer(json_object_get(shard, "checkpoint")), "status: %s", out);
    uint64_t cp = (uint64_t)json_integer_value(json_object_get(shard, "checkpoint"));
    json_decref(st);
    free(out);
    return cp;
}

START_TEST(test_logread_big_records)
{
    tl_ledger L;
    tl_init(&L);
    const char *extra[] = {"--no-sync", NULL};
    tl_start(&L, extra);
    void *ctx = tl_ctx();
    void *d = tl_connect(tl_sock(ctx, ZMQ_DEALER, NULL, NULL), L.ingest);
    ingest_sale(d, 1, "dist-lr", "lr-first", 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int k = 0; k < 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "lr-big-%d", k);
        frame_filling_request(&sb, 2 + (uint64_t)k, id);
        uint64_t seq = 0;
        ck_assert_int_eq(ingest_one(d, &sb, &seq), TLY_OK);
        ck_assert_uint_eq(seq, 2 + (uint64_t)k);
    }
    msgpack_sbuffer_destroy(&sb);
    ingest_sale(d, 9, "dist-lr", "lr-last", 0);
    uint64_t head = tl_log_head(&L);
    ck_assert_uint_eq(head, 5);

    void *lr = tl_connect(tl_sock(ctx, ZMQ_DEALER, NULL, NULL), L.logread);
    tl_logread r = tl_logread_ask(&L, lr, 2, 5, TL_REPLY_MS);
    ck_assert_msg(r.answered && r.error[0] == '\0', "log-read {from 2, max 5}: %s",
                  r.answered ? r.error : "no reply");
    ck_assert_uint_ge(r.records, 1); /* from seq 2 on, each the stored bytes */
    /* The edge: one record alone makes a reply over the frame limit. */
    ck_assert_uint_gt(r.bytes, TLY_FRAME_BYTES_MAX);
    ck_assert_uint_le(r.bytes, TLY_LOGREAD_REPLY_BYTES_MAX);
    logread_every_from(&L, lr, head);

    /* A remote consumer with its own data directory reaches the head. */
    char other[700];
    snprintf(other, sizeof other, "%s/remote", L.dir);
    const char *consume[] = {"consume", "--remote", "--log-read", L.logread,        "--events",
                             L.events,  "--data",   other,        "--exit-at-head", NULL};
    ck_assert_int_eq(tl_run(&L, "consume-remote", consume), 0);
    char otherlog[800];
    snprintf(otherlog, sizeof otherlog, "%s/log", other);
    ck_assert_msg(access(otherlog, F_OK) != 0, "the remote consumer made a local log");
    ck_assert_uint_eq(status_checkpoint(&L, other), head);

    zmq_close(lr);
    zmq_close(d);
    zmq_ctx_term(ctx);
    tl_done(&L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 6. CURVE clients: tally consume and the query commands              */

/* Asserts that the stderr of the tl_run `tag` says `a` or `b` (b may be
 * NULL): a failure that tells why. */
static void assert_said(const tl_ledger *L, const char *tag, const char *a, const char *b)
{
    char *err = tl_output(L, tag, "err");
    ck_assert_msg(strstr(err, a) || (b && strstr(err, b)),
                  "%s: stderr says neither \"%s\" nor \"%s\": %s", tag, a, b ? b : "", err);
    free(err);
}

/* `tally consume --remote --exit-at-head` of c's CURVE ledger into dir,
 * with --curve-server-key server and --curve-secret secret where given
 * (NULL: left out); returns its exit status. */
static int consume_as(const curve_ledger *c, const char *tag, const char *dir, const char *server,
                      const char *secret)
{
    const char *args[20] = {"consume",   "--remote", "--log-read", c->L.logread,    "--events",
                            c->L.events, "--data",   dir,          "--exit-at-head"};
    int n = 9;
    if (server) {
        args[n++] = "--curve-server-key";
        args[n++] = server;
    }
    if (secret) {
        args[n++] = "--curve-secret";
        args[n++] = secret;
    }
    args[n] = NULL;
    return tl_run(&c->L, tag, args);
}

/* Five sales sent with the finance key; returns the head (5). */
static uint64_t five_sales(curve_ledger *c)
{
    ck_assert_str_eq(c->roles[3].roles, "finance");
    void *fin =
        tl_connect(tl_sock(c->ctx, ZMQ_DEALER, c->server.pub, &c->roles[3].keys), c->L.ingest);
    for (int k = 0; k < 5; k++) {
        char id[32];
        snprintf(id, sizeof id, "cc-%d", k);
        ingest_sale(fin, (uint64_t)k + 1, NULL, id, 0);
    }
    zmq_close(fin);
    uint64_t head = tl_log_head(&c->L);
    ck_assert_uint_eq(head, 5);
    return head;
}

/* A remote `tally consume` with a reader key reaches a CURVE ledger's head;
 * with a sales key (log-read answers `forbidden`) or an unknown key (the
 * handshake is refused: no answer) --exit-at-head fails, folding nothing;
 * one of the two flags alone is a usage error. */
START_TEST(test_consume_curve)
{
    curve_ledger c;
    curve_start(&c);
    uint64_t head = five_sales(&c);
    char dir[700], log[800];
    ck_assert_str_eq(c.roles[4].roles, "reader");
    snprintf(dir, sizeof dir, "%s/reader", c.L.dir);
    ck_assert_int_eq(consume_as(&c, "consume-reader", dir, c.server.pub, c.roles[4].keys.file), 0);
    snprintf(log, sizeof log, "%s/log", dir);
    ck_assert_msg(access(log, F_OK) != 0, "the remote consumer made a local log");
    ck_assert_uint_eq(status_checkpoint(&c.L, dir), head);

    ck_assert_str_eq(c.roles[0].roles, "sales");
    snprintf(dir, sizeof dir, "%s/sales", c.L.dir);
    ck_assert_int_eq(consume_as(&c, "consume-sales", dir, c.server.pub, c.roles[0].keys.file), 1);
    assert_said(&c.L, "consume-sales", "forbidden", NULL);
    ck_assert_uint_eq(status_checkpoint(&c.L, dir), 0);

    snprintf(dir, sizeof dir, "%s/stranger", c.L.dir);
    ck_assert_int_eq(consume_as(&c, "consume-stranger", dir, c.server.pub, c.stranger.file), 1);
    assert_said(&c.L, "consume-stranger", "no reply", NULL);
    ck_assert_uint_eq(status_checkpoint(&c.L, dir), 0);

    snprintf(dir, sizeof dir, "%s/usage", c.L.dir);
    ck_assert_int_eq(consume_as(&c, "consume-key-only", dir, c.server.pub, NULL), 2);
    assert_said(&c.L, "consume-key-only", "go together", NULL);
    ck_assert_int_eq(consume_as(&c, "consume-secret-only", dir, NULL, c.roles[4].keys.file), 2);
    assert_said(&c.L, "consume-secret-only", "go together", NULL);
    ck_assert_msg(access(dir, F_OK) != 0, "a usage error made the data directory");
    zmq_ctx_term(c.ctx);
    tl_done(&c.L);
}
END_TEST

/* `tally VIEW [PARTNER] --json --query ep` with key k over CURVE (NULL:
 * without --curve-secret); returns its exit status. */
static int view_as(const curve_ledger *c, const char *tag, const char *view, const char *partner,
                   const char *ep, const tl_keys *k)
{
    const char *args[16] = {view};
    int n = 1;
    if (partner)
        args[n++] = partner;
    const char *rest[] = {"--json", "--query", ep, "--curve-server-key", c->server.pub};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        args[n++] = rest[i];
    if (k) {
        args[n++] = "--curve-secret";
        args[n++] = k->file;
    }
    args[n] = NULL;
    return tl_run(&c->L, tag, args);
}

/* The one-line JSON object the tl_run `tag` printed; a new reference. */
static json_t *printed_json(const tl_ledger *L, const char *tag)
{
    char *out = tl_output(L, tag, "out");
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    ck_assert_msg(json_is_object(j), "%s printed: %s", tag, out);
    ck_assert_msg(!json_object_get(j, "error"), "%s printed an error: %s", tag, out);
    free(out);
    return j;
}

/* Asserts that the rt_runs a and b printed equal JSON objects. */
static void same_answer(const tl_ledger *L, const char *a, const char *b)
{
    json_t *ja = printed_json(L, a), *jb = printed_json(L, b);
    char *da = json_dumps(ja, JSON_COMPACT), *db = json_dumps(jb, JSON_COMPACT);
    ck_assert_msg(json_equal(ja, jb), "%s printed %s\n%s printed %s", a, da, b, db);
    free(da);
    free(db);
    json_decref(ja);
    json_decref(jb);
}

/* The query service answers key k what the view stores say: the same
 * command with --views DIR/views (no service) prints the same object. */
static void assert_answered(const curve_ledger *c, const char *tag, const char *view,
                            const char *partner, const char *ep, const tl_keys *k)
{
    ck_assert_int_eq(view_as(c, tag, view, partner, ep, k), 0);
    char views[700], local[64];
    snprintf(views, sizeof views, "%s/views", c->L.data);
    snprintf(local, sizeof local, "%s-views", tag);
    const char *args[6] = {view};
    int n = 1;
    if (partner)
        args[n++] = partner;
    const char *rest[] = {"--json", "--views", views, NULL};
    memcpy(args + n, rest, sizeof rest);
    ck_assert_int_eq(tl_run(&c->L, local, args), 0);
    same_answer(&c->L, tag, local);
}

/* A refused query: exit 1, forbidden on stderr, nothing on stdout. */
static void assert_forbidden(const curve_ledger *c, const char *tag, const char *view,
                             const char *partner, const char *ep, const tl_keys *k)
{
    ck_assert_int_eq(view_as(c, tag, view, partner, ep, k), 1);
    assert_said(&c->L, tag, "forbidden", "may not ask");
    char *out = tl_output(&c->L, tag, "out");
    ck_assert_msg(out[0] == '\0', "%s printed: %s", tag, out);
    free(out);
}

/* The query commands against a CURVE query service: the partner:acme key
 * gets acme's balance (finance's answer), is refused beta's balance and
 * the liabilities, which finance gets; one flag alone is a usage error. */
START_TEST(test_query_curve_cli)
{
    curve_ledger c;
    curve_start(&c);
    const tl_keys *fin = &c.roles[3].keys, *acme = &c.roles[6].keys;
    ck_assert_str_eq(c.roles[6].roles, "partner:acme");
    const char *opts[] = {"--curve-server-key", c.server.pub, "--curve-secret", fin->file, NULL};
    send_lines(&c.L, "cli-events", opts, QUERY_EVENTS, QUERY_EVENT_COUNT);
    const char *consume[] = {"consume", "--data", c.L.data, "--exit-at-head", NULL};
    ck_assert_int_eq(tl_run(&c.L, "consume", consume), 0);
    char ep[64];
    pid_t q = query_start(&c, ep, sizeof ep);

    assert_answered(&c, "bal-fin", "balance", "acme", ep, fin);
    assert_answered(&c, "bal-acme", "balance", "acme", ep, acme);
    same_answer(&c.L, "bal-acme", "bal-fin");
    json_t *bal = printed_json(&c.L, "bal-acme");
    ck_assert_str_eq(json_string_value(json_object_get(bal, "partner")), "acme");
    json_decref(bal);

    assert_forbidden(&c, "bal-beta", "balance", "beta", ep, acme);
    assert_forbidden(&c, "liab-acme", "liabilities", NULL, ep, acme);
    assert_answered(&c, "liab-fin", "liabilities", NULL, ep, fin);

    ck_assert_int_eq(view_as(&c, "bal-key-only", "balance", "acme", ep, NULL), 2);
    assert_said(&c.L, "bal-key-only", "go together", NULL);
    ck_assert_int_eq(tl_stop_pid(&q, SIGTERM), 0);
    zmq_ctx_term(c.ctx);
    tl_done(&c.L);
}
END_TEST

/* tly_os_release_file_map drops the pages of a read-only shared file
 * mapping (a reader's LMDB map) and leaves every other mapping alone: the
 * file's bytes read back the same after a release, and a private or
 * writable mapping keeps its data (MADV_DONTNEED would zero a private
 * one). */
START_TEST(test_release_file_map)
{
    char *dir = tu_tmpdir();
    char path[1100];
    snprintf(path, sizeof path, "%s/map", dir);
    size_t size = 4 * (size_t)sysconf(_SC_PAGESIZE);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    for (size_t i = 0; i < size; i++)
        ck_assert_int_eq(write(fd, &(char){(char)(i * 7)}, 1), 1);
    const char *ro = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    char *rw = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *anon = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(ro != MAP_FAILED && rw != MAP_FAILED && anon != MAP_FAILED);
    memset(anon, 0x5a, size);
    ck_assert(tly_os_release_file_map(ro + size / 2)); /* any address inside it */
    for (size_t i = 0; i < size; i++)
        ck_assert_int_eq(ro[i], (char)(i * 7));
    ck_assert(!tly_os_release_file_map(rw));
    ck_assert(!tly_os_release_file_map(anon + size - 1));
    ck_assert_int_eq(anon[size - 1], 0x5a);
    ck_assert(!tly_os_release_file_map(NULL));
    munmap((void *)ro, size);
    munmap(rw, size);
    munmap(anon, size);
    close(fd);
    tly_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *readers_suite(void)
{
    Suite *s = suite_create("readers");
    TCase *m = tu_tcase(s, "private_modes", 120);
    tu_add_tests(m, TU_TESTS(test_private_modes_umask_0, test_private_modes_umask_022));
    TCase *r = tu_tcase(s, "read_roles", 120);
    tu_add_tests(r, TU_TESTS(test_events_roles, test_logread_roles, test_query_roles));
    TCase *b = tu_tcase(s, "memory_bounds", 600);
    tu_add_tests(b, TU_TESTS(test_replies_budget, test_stopped_subscriber));
    tcase_add_test(tu_tcase(s, "big_records", 300), test_logread_big_records);
    tcase_add_test(tu_tcase(s, "release_map", 30), test_release_file_map);
    TCase *k = tu_tcase(s, "curve_clients", 300);
    tu_add_tests(k, TU_TESTS(test_consume_curve, test_query_curve_cli));
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return tu_run_suite(readers_suite());
}
