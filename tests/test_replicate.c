/*
 * test_replicate.c — the log replicated into NATS JetStream (SPEC section
 * 12, [N1]–[N6]; issue 13 item 6).
 *
 * Every case runs a real cluster of three nats-server processes on free
 * loopback ports (scripts/nats-cluster.sh writes their configuration and
 * tells when JetStream is ready; the servers are this test's children, so
 * they die with it) and the real `tally ledger --replicate`. The stream is
 * read back through the ledger's own stream reader (ledger_repl.h) and
 * compared byte for byte with the log. No assertion depends on timing: a
 * deadline only keeps a broken build from hanging.
 */
#include <check.h>
#include <msgpack.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ledger_repl.h"
#include "tcpproxy.h"
#include "testledger.h"
#include "testutil.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_wire.h"

#define RT_NODES 3

typedef struct cluster {
    char dir[700];
    char urls[512];
    pid_t pid[RT_NODES + 1]; /* by node number 1..3 */
} cluster;

static const char *script(void)
{
    static char path[1024];
    const char *src = getenv("TALLY_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/scripts/nats-cluster.sh", src ? src : ".");
    return path;
}

/* Runs nats-cluster.sh CMD DIR; its stdout into out (may be NULL). */
static int cluster_script(const cluster *c, const char *cmd, char *out, size_t cap)
{
    char out_path[800], err_path[800];
    snprintf(out_path, sizeof out_path, "%s.%s.out", c->dir, cmd);
    snprintf(err_path, sizeof err_path, "%s.%s.err", c->dir, cmd);
    char *argv[] = {"sh", (char *)script(), (char *)cmd, (char *)c->dir, NULL};
    int rc = tu_run(argv, NULL, out_path, err_path);
    if (rc != 0)
        tl_dump_file("nats-cluster.sh", err_path);
    if (out) {
        char *text = tu_read_file(out_path, NULL);
        ck_assert_ptr_nonnull(text);
        snprintf(out, cap, "%s", text);
        out[strcspn(out, "\n")] = '\0';
        free(text);
    }
    return rc;
}

/* nats-server's path, looked up in $PATH (tl_spawn does not search it). */
static const char *nats_server(void)
{
    static char path[1024];
    const char *dirs = getenv("PATH");
    char list[4096];
    snprintf(list, sizeof list, "%s:/usr/sbin:/usr/bin", dirs ? dirs : "");
    for (char *save = NULL, *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/nats-server", d);
        if (access(path, X_OK) == 0)
            return path;
    }
    ck_abort_msg("nats-server is not installed (scripts/deps.sh installs it)");
    return NULL;
}

static void node_start(cluster *c, int n)
{
    char conf[800], log[800];
    snprintf(conf, sizeof conf, "%s/n%d.conf", c->dir, n);
    snprintf(log, sizeof log, "%s/n%d.log", c->dir, n);
    const char *argv[] = {nats_server(), "-c", conf, NULL};
    c->pid[n] = tl_spawn(argv, log, log);
}

static void node_kill(cluster *c, int n)
{
    tl_stop_pid(&c->pid[n], SIGKILL);
}

/* The configuration of three servers as one cluster under L's directory. */
static void cluster_init(const tl_ledger *L, cluster *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/nats", L->dir);
    ck_assert_int_eq(cluster_script(c, "init", c->urls, sizeof c->urls), 0);
}

/* Starts the three servers of cluster_init and waits for JetStream. */
static void cluster_run(cluster *c)
{
    for (int n = 1; n <= RT_NODES; n++)
        node_start(c, n);
    ck_assert_msg(cluster_script(c, "wait", NULL, 0) == 0, "JetStream did not become ready");
}

/* Three servers as one cluster under L's directory; waits for JetStream. */
static void cluster_start(const tl_ledger *L, cluster *c)
{
    cluster_init(L, c);
    cluster_run(c);
}

static void cluster_stop(cluster *c)
{
    for (int n = 1; n <= RT_NODES; n++)
        if (c->pid[n])
            tl_stop_pid(&c->pid[n], SIGTERM);
}

/* Starts L with --replicate (and extra, NULL-terminated, up to 13). */
static void start_replicated(tl_ledger *L, const cluster *c, const char *const *extra)
{
    const char *args[16] = {"--replicate", c->urls};
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    tl_start(L, args);
}

/* The stream's records 1..count equal log's, byte for byte, and the
 * stream holds no more (stream sequence = log seq [N1]). */
static void assert_stream_has_log(const cluster *c, const char *stream, tly_log *log,
                                  uint64_t count)
{
    tly_repl_opts ro = {c->urls, stream, 0, true, NULL};
    tly_repl *r = NULL;
    char msg[256] = "";
    ck_assert_msg(tly_repl_open(&ro, &r, msg, sizeof msg) == TLY_OK, "%s", msg);
    uint64_t last = 0;
    tly_err e = TLY_UNAVAILABLE;
    for (int k = 0; k < 30 && e == TLY_UNAVAILABLE; k++)
        e = tly_repl_last_seq(r, &last);
    ck_assert_int_eq(e, TLY_OK);
    ck_assert_uint_eq(last, count);
    tly_log_reader *lr = NULL;
    tly_repl_reader *sr = NULL;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &lr), TLY_OK);
    /* After a node's death the cluster may still be electing a leader: the
     * consumer is created once it has one. */
    tly_err err = TLY_UNAVAILABLE;
    for (int k = 0; k < 30 && err == TLY_UNAVAILABLE; k++)
        err = tly_repl_reader_open(r, 1, &sr);
    ck_assert_int_eq(err, TLY_OK);
    tly_log_stored *recs = malloc(TLY_REPL_CHUNK_RECORDS * sizeof *recs);
    uint64_t seen = 0;
    while (seen < count) {
        uint32_t n = 0;
        ck_assert_int_eq(tly_repl_reader_fetch(sr, recs, TLY_REPL_CHUNK_RECORDS, TL_REPLY_MS, &n),
                         TLY_OK);
        ck_assert_msg(n > 0, "the stream stopped at seq %llu", (unsigned long long)seen);
        for (uint32_t i = 0; i < n; i++) {
            tly_record rec;
            ck_assert_int_eq(tly_log_reader_next(lr, &rec), TLY_OK);
            ck_assert_uint_eq(rec.seq, seen + 1);
            ck_assert_msg(rec.raw_len == recs[i].raw_len &&
                              memcmp(rec.raw, recs[i].raw, rec.raw_len) == 0,
                          "the stream's record %llu is not the log's", (unsigned long long)rec.seq);
            seen++;
        }
    }
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_next(lr, &rec), TLY_NOT_FOUND);
    free(recs);
    tly_repl_reader_close(sr);
    tly_log_reader_close(lr);
    tly_repl_close(r);
}

/* The stream's records 1..count equal L's log's (assert_stream_has_log). */
static void assert_stream_is_log(const cluster *c, const char *stream, const tl_ledger *L,
                                 uint64_t count)
{
    tly_log *log = tl_log_open(L);
    assert_stream_has_log(c, stream, log, count);
    tly_log_close(log);
}

static void audit_verify(const tl_ledger *L)
{
    const char *args[] = {"audit", "verify", "--data", L->data, NULL};
    ck_assert_int_eq(tl_run(L, "audit", args), 0);
}

static void write_sales(const tl_ledger *L, const char *name, const char *prefix, int n, char *path,
                        size_t cap)
{
    snprintf(path, cap, "%s/%s.jsonl", L->dir, name);
    tl_write_sales(path, prefix, n);
}

/* [N1] [N2]: every acknowledged event is in the stream, at its seq, as
 * stored; a resend is a dup. */
START_TEST(test_replicated_ingest)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_start(&L, &c);
    start_replicated(&L, &c, NULL);
    char file[700];
    write_sales(&L, "a", "rep", 3000, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "first", args), 0, 3000, 0, 0);
    tl_assert_sent(tl_send_run(&L, "again", args), 0, 0, 3000, 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &L, 3000);
    audit_verify(&L);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* The ledger's log says why it refused to start. */
static void assert_refused(tl_ledger *L, const char *const *args, const char *needle)
{
    const char *argv[24] = {tu_tally(), "ledger",   "--data",  L->data,      "--ingest",
                            L->ingest,  "--events", L->events, "--log-read", L->logread};
    int n = 10;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char err[800];
    snprintf(err, sizeof err, "%s/refused.err", L->dir);
    pid_t pid = tl_spawn(argv, err, err);
    ck_assert_int_eq(tl_wait_exit(pid, TL_EXIT_MS), 1);
    char *text = tu_read_file(err, NULL);
    ck_assert_msg(text && strstr(text, needle), "expected '%s' in: %s", needle, text);
    free(text);
}

/* [N1]: a log is copied into an empty stream; a log that is not a stream's
 * is refused, and so is a log beyond its stream. */
START_TEST(test_copy_and_refuse)
{
    tl_ledger L, M;
    cluster c;
    tl_init(&L);
    tl_init(&M);
    cluster_start(&L, &c);
    tl_start(&L, NULL);
    char file[700];
    write_sales(&L, "a", "cp", 500, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "plain", args), 0, 500, 0, 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    const char *copy[] = {"--stream", "COPY", "--replicas", "3", NULL};
    start_replicated(&L, &c, copy);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_stream_is_log(&c, "COPY", &L, 500);

    tl_start(&M, NULL);
    write_sales(&M, "m", "other", 20, file, sizeof file);
    tl_assert_sent(tl_send_run(&M, "other", args), 0, 20, 0, 0);
    ck_assert_int_eq(tl_stop(&M, SIGTERM), 0);
    const char *refuse[] = {"--replicate", c.urls, "--stream", "COPY", NULL};
    assert_refused(&M, refuse, "is not the stream's");
    /* M's 20 records are not a stream of 10 (a stream made of L's log) */
    start_replicated(&L, &c, (const char *[]){"--stream", "SHORT", NULL});
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_refused(&M, (const char *[]){"--replicate", c.urls, "--stream", "SHORT", NULL},
                   "is not the stream's");
    cluster_stop(&c);
    tl_done(&M);
    tl_done(&L);
}
END_TEST

/* [N3]: a ledger started on the stream with an empty log (or one behind)
 * appends what the stream holds first; resends are dups with their
 * original seqs. */
START_TEST(test_catch_up)
{
    tl_ledger L, M;
    cluster c;
    tl_init(&L);
    tl_init(&M);
    cluster_start(&L, &c);
    start_replicated(&L, &c, NULL);
    char file[700], more[700];
    write_sales(&L, "a", "cu", 1000, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "first", args), 0, 1000, 0, 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);

    start_replicated(&M, &c, NULL);
    ck_assert_uint_eq(tl_log_head(&M), 1000);
    tl_assert_sent(tl_send_run(&M, "resend", args), 0, 0, 1000, 0);
    write_sales(&M, "b", "cu2", 500, more, sizeof more);
    const char *args2[] = {"--source", "dist-b", more, NULL};
    tl_assert_sent(tl_send_run(&M, "more", args2), 0, 500, 0, 0);
    ck_assert_int_eq(tl_stop(&M, SIGTERM), 0);

    start_replicated(&L, &c, NULL); /* 500 behind */
    ck_assert_uint_eq(tl_log_head(&L), 1500);
    tl_assert_sent(tl_send_run(&L, "resend2", args2), 0, 0, 500, 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &L, 1500);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &M, 1500);
    audit_verify(&M);
    cluster_stop(&c);
    tl_done(&M);
    tl_done(&L);
}
END_TEST

/* Sale prefix-i of partner acme, as MessagePack, appended to sb. */
static void sale_mp(msgpack_sbuffer *sb, const char *prefix, int i)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"type\":\"sale\",\"id\":\"%s-%d\",\"at\":%lld,\"partner\":\"acme\","
             "\"sku\":\"SKU-1\",\"qty\":1,\"amount\":%d,\"currency\":\"USD\"}",
             prefix, i, TL_AT_MS, 100 + i);
    json_t *j = json_loads(json, 0, NULL);
    tly_field_error fe;
    ck_assert_int_eq(tly_json_event_to_mp(j, sb, &fe), TLY_OK);
    json_decref(j);
}

/* A request of n sales ID-0.. as raw MessagePack. */
static void sales_request(msgpack_sbuffer *sb, uint64_t req, const char *prefix, int n)
{
    msgpack_sbuffer ev;
    msgpack_sbuffer_init(&ev);
    tly_span spans[64];
    size_t offs[65];
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++) {
        offs[i] = ev.size;
        sale_mp(&ev, prefix, i);
    }
    offs[n] = ev.size;
    for (int i = 0; i < n; i++)
        spans[i] = (tly_span){(const uint8_t *)ev.data + offs[i], offs[i + 1] - offs[i]};
    ck_assert_int_eq(tly_wire_ingest_encode(sb, req, "dist-raw", false, spans, (uint32_t)n),
                     TLY_OK);
    msgpack_sbuffer_destroy(&ev);
}

/* Sends the request and returns its per-event results' common code
 * (TLY_OK when all were accepted, their seqs into seqs). */
static tly_err ask(void *d, const msgpack_sbuffer *sb, int n, uint64_t *seqs)
{
    size_t rlen;
    uint8_t *reply = tl_rpc(d, sb->data, sb->size, &rlen);
    tly_ingest_result res[64];
    uint64_t req;
    uint32_t count = 0;
    char msg[160];
    tly_err whole = tly_wire_reply_decode(reply, rlen, &req, res, 64, &count, msg, sizeof msg);
    free(reply);
    if (whole != TLY_OK)
        return whole;
    ck_assert_uint_eq(count, (uint32_t)n);
    for (int i = 1; i < n; i++)
        ck_assert_msg(res[i].err == res[0].err, "one batch, one outcome: %s then %s",
                      tly_err_name(res[0].err), tly_err_name(res[i].err));
    for (int i = 0; i < n && seqs; i++)
        seqs[i] = res[i].seq;
    return res[0].err;
}

/* Fault (c): two of three nodes down: ingest answers `unavailable`,
 * nothing is acknowledged or appended; it resumes when a node returns. */
START_TEST(test_no_quorum)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_start(&L, &c);
    start_replicated(&L, &c, NULL);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sales_request(&sb, 1, "before", 10);
    uint64_t seqs[64];
    ck_assert_int_eq(ask(d, &sb, 10, seqs), TLY_OK);
    ck_assert_uint_eq(seqs[9], 10);
    node_kill(&c, 2);
    node_kill(&c, 3);
    msgpack_sbuffer_clear(&sb);
    sales_request(&sb, 2, "during", 10);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(ask(d, &sb, 10, NULL), TLY_UNAVAILABLE);
    ck_assert_uint_eq(tl_log_head(&L), 10);
    node_start(&c, 2);
    tly_err err = TLY_UNAVAILABLE;
    for (int k = 0; k < 600 && err == TLY_UNAVAILABLE; k++) {
        tu_sleep_ms(100); /* the stream elects a leader again: a deadline, not a bound */
        err = ask(d, &sb, 10, seqs);
    }
    ck_assert_int_eq(err, TLY_OK);
    ck_assert_uint_eq(seqs[0], 11);
    ck_assert_uint_eq(seqs[9], 20);
    node_start(&c, 3);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(d);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &L, 20);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* Fault (b): kill -9 one of the three servers under load from several
 * producers: every event is stored exactly once (acknowledged as sent, or
 * as a duplicate on its resend), none is lost, the stream is the log. */
START_TEST(test_node_killed_under_load)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_start(&L, &c);
    start_replicated(&L, &c, NULL);
    enum { PRODUCERS = 3, EVENTS = 20000 };
    char files[PRODUCERS][700], tags[PRODUCERS][16], sources[PRODUCERS][16];
    pid_t pids[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        snprintf(tags[p], sizeof tags[p], "load%d", p);
        snprintf(sources[p], sizeof sources[p], "dist-%d", p);
        write_sales(&L, tags[p], tags[p], EVENTS, files[p], sizeof files[p]);
        const char *args[] = {"--source", sources[p], files[p], NULL};
        pids[p] = tl_send_spawn(&L, tags[p], NULL, args);
    }
    tl_wait_head(&L, EVENTS / 2);
    node_kill(&c, 1);
    /* A batch in flight when the node died may have been stored by the
     * stream without its acknowledgement reaching the ledger: refused as
     * unavailable, found by the next catch-up, its resend a duplicate. */
    for (int p = 0; p < PRODUCERS; p++)
        tl_assert_delivered(tl_send_wait(&L, tags[p], pids[p]), EVENTS, tags[p]);
    ck_assert_uint_eq(tl_log_head(&L), (uint64_t)PRODUCERS * EVENTS);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &L, (uint64_t)PRODUCERS * EVENTS);
    audit_verify(&L);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* [N2] fencing: a second writer (here one started under the first one's
 * name, as a copy restored elsewhere would be) appended to the stream behind
 * a running ledger's back; that ledger's next batch fails on
 * expected-last-sequence (or on its lease, if its renewal noticed first):
 * nothing acknowledged, its log says why. */
START_TEST(test_fenced_writer)
{
    tl_ledger L, M;
    cluster c;
    tl_init(&L);
    tl_init(&M);
    cluster_start(&L, &c);
    const char *named[] = {"--name", "ledger-L", NULL};
    start_replicated(&L, &c, named);
    void *ctx = tl_ctx();
    void *d = tl_dealer(ctx, L.ingest);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sales_request(&sb, 1, "first", 5);
    uint64_t seqs[64];
    ck_assert_int_eq(ask(d, &sb, 5, seqs), TLY_OK);
    start_replicated(&M, &c, named); /* catches up 5, takes the lease, appends 5 */
    char file[700];
    write_sales(&M, "m", "other", 5, file, sizeof file);
    const char *args[] = {"--source", "dist-m", file, NULL};
    tl_assert_sent(tl_send_run(&M, "other", args), 0, 5, 0, 0);
    ck_assert_int_eq(tl_stop(&M, SIGTERM), 0);
    msgpack_sbuffer_clear(&sb);
    sales_request(&sb, 2, "late", 5);
    ck_assert_int_eq(ask(d, &sb, 5, NULL), TLY_UNAVAILABLE);
    char *log = tu_read_file(L.logfile, NULL);
    ck_assert_msg(log && (strstr(log, "fenced at seq 6") || strstr(log, "deposed")),
                  "the ledger's log: %s", log);
    free(log);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(d);
    zmq_ctx_term(ctx);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    ck_assert_uint_le(tl_log_head(&L), 10);
    audit_verify(&L);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &M, 10);
    cluster_stop(&c);
    tl_done(&M);
    tl_done(&L);
}
END_TEST

/* Appends n sales (ids prefix-0..) to log as one batch, as a ledger's
 * commit would: through the log's replica when one is set. */
static tly_err append_sales(tly_log *log, const char *prefix, int n)
{
    tly_log_item items[16];
    msgpack_sbuffer mp[16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        msgpack_sbuffer_init(&mp[i]);
        sale_mp(&mp[i], prefix, i);
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(mp[i].data, mp[i].size, TL_AT_MS, &ev, NULL), TLY_OK);
        items[i] = (tly_log_item){.source = {"dist-direct", 11},
                                  .id = ev.id,
                                  .event = (const uint8_t *)mp[i].data,
                                  .event_len = mp[i].size};
    }
    tly_err err = tly_log_append(log, TL_AT_MS, items, (uint32_t)n, NULL, 0);
    for (int i = 0; i < n; i++)
        msgpack_sbuffer_destroy(&mp[i]);
    return err;
}

static uint64_t head_of(tly_log *log)
{
    uint64_t head = 0;
    tly_log_head(log, &head, NULL);
    return head;
}

/* As the ledger does after a refusal: catches up, then appends n sales
 * (ids prefix-0..) as the next batch; again until the servers are back and
 * the stream has its quorum (600 tries 100 ms apart: a deadline, not a
 * bound). The last try's answer. */
static tly_err catch_up_and_append(tly_repl *r, tly_log *log, const char *prefix, int n)
{
    char msg[256] = "";
    tly_err err = TLY_UNAVAILABLE;
    for (int k = 0; k < 600 && err != TLY_OK; k++) {
        err = tly_repl_catch_up(r, log, msg, sizeof msg);
        ck_assert_msg(err == TLY_OK || err == TLY_UNAVAILABLE, "%s", msg);
        if (err == TLY_OK)
            err = append_sales(log, prefix, n);
        if (err != TLY_OK)
            tu_sleep_ms(100);
    }
    return err;
}

/* No record of log is an event whose id starts with prefix. */
static void assert_no_event_of(tly_log *log, const char *prefix)
{
    size_t len = strlen(prefix);
    tly_log_reader *rd = NULL;
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    while (tly_log_reader_next(rd, &rec) == TLY_OK) {
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &ev, NULL),
                         TLY_OK);
        ck_assert_msg(ev.id.len < len || memcmp(ev.id.ptr, prefix, len) != 0,
                      "record %llu is of the %s batch", (unsigned long long)rec.seq, prefix);
    }
    tly_log_reader_close(rd);
}

/* A writer of its own: the log L.dir/a (no fsync) attached to a 3-replica
 * stream through urls, with 5 "first" records replicated. */
static void writer_start(const tl_ledger *L, const char *urls, const char *stream, tly_repl **ra,
                         tly_log **la)
{
    char a_dir[800], msg[256] = "";
    snprintf(a_dir, sizeof a_dir, "%s/a", L->dir);
    tly_repl_opts ro = {urls, stream, 3, false, NULL};
    ck_assert_int_eq(tly_log_open(a_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, la), TLY_OK);
    ck_assert_msg(tly_repl_open(&ro, ra, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_msg(tly_repl_attach(*ra, *la, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_int_eq(append_sales(*la, "first", 5), TLY_OK);
}

/* After a refused batch of 3 "lost" records: the writer catches up and
 * writes 3 more, at seqs 6..8 of its log and of the stream, and nothing of
 * the lost batch is in the log (which the stream is, record for record:
 * the catch-up checked the chain). */
static void writer_goes_on(tly_repl *ra, tly_log *la)
{
    ck_assert_int_eq(catch_up_and_append(ra, la, "after", 3), TLY_OK);
    ck_assert_uint_eq(head_of(la), 8);
    uint64_t last = 0;
    ck_assert_int_eq(tly_repl_last_seq(ra, &last), TLY_OK);
    ck_assert_uint_eq(last, 8);
    assert_no_event_of(la, "lost");
}

/* A cluster of its own and a writer of its own on it (writer_start), for
 * the tests of batches given up on. */
typedef struct writer_case {
    tl_ledger L;
    cluster c;
    tly_repl *ra;
    tly_log *la;
} writer_case;

static void writer_case_start(writer_case *w, const char *stream)
{
    tl_init(&w->L);
    cluster_start(&w->L, &w->c);
    w->ra = NULL;
    w->la = NULL;
    writer_start(&w->L, w->c.urls, stream, &w->ra, &w->la);
}

static void writer_case_stop(writer_case *w)
{
    tly_repl_close(w->ra);
    tly_log_close(w->la);
    cluster_stop(&w->c);
    tl_done(&w->L);
}

/* [N2] a batch given up on because the connection it was published on
 * broke can never reach the stream afterwards. A writer appends 5 records,
 * the three servers are killed, and its next batch (3 "lost" records) is
 * refused. Before the fix libnats kept those records in its reconnect
 * buffer and sent them once the servers were back: they landed after the
 * refusal, behind the writer's back (in test case
 * node_killed_under_load, a ctest -j2 run of 2026-12-06, such late records
 * kept landing after the catch-up that followed, a record of the next batch
 * landed on top of them, "seq 13774: its hash does not chain to the record
 * before", and the ledger answered `storage` until the send gave up). Now
 * the writer publishes on a connection that is never reconnected and is
 * closed with the batch: after the servers' return the writer catches up,
 * its next batch takes seqs 6..8, and nothing of the lost batch is
 * anywhere. This case passes on the code before as well (the restarted
 * servers' stream had no leader yet when libnats sent the batch):
 * test_refused_batch_not_resent is the one that fails there. */
START_TEST(test_lost_batch_stays_lost)
{
    writer_case w;
    writer_case_start(&w, "LOST");
    for (int n = 1; n <= RT_NODES; n++)
        node_kill(&w.c, n);
    ck_assert_int_eq(append_sales(w.la, "lost", 3), TLY_UNAVAILABLE);
    for (int n = 1; n <= RT_NODES; n++)
        node_start(&w.c, n);
    writer_goes_on(w.ra, w.la);
    writer_case_stop(&w);
}
END_TEST

/* [N1] [N2] A stream that lost records it had acknowledged is refilled
 * from the writer's log. JetStream acknowledges a record once a quorum
 * holds it, before its servers write it to disk: with all three killed at
 * once (test_lost_batch_stays_lost under ctest -j2) the stream came back
 * at seq 1 of 5, and every later append was refused as fenced, for ever.
 * Here the log gets ahead of the stream by appending without its replica.
 * The writer's catch-up (at attach, and after a refused batch) publishes
 * what the stream lacks when the stream's last record is the log's; a
 * log whose record there is another is still refused. */
START_TEST(test_stream_behind_refilled)
{
    writer_case w;
    writer_case_start(&w, "BEHIND"); /* 5 records, on the stream */
    char msg[256] = "";
    tly_log_set_replica(w.la, NULL);
    ck_assert_int_eq(append_sales(w.la, "ahead", 4), TLY_OK);
    ck_assert_uint_eq(head_of(w.la), 9);
    uint64_t last = 0;
    ck_assert_int_eq(tly_repl_last_seq(w.ra, &last), TLY_OK);
    ck_assert_uint_eq(last, 5);
    ck_assert_msg(tly_repl_attach(w.ra, w.la, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_int_eq(tly_repl_last_seq(w.ra, &last), TLY_OK);
    ck_assert_uint_eq(last, 9);
    /* the same after a refused batch: the catch-up refills, the batch goes on */
    tly_log_set_replica(w.la, NULL);
    ck_assert_int_eq(append_sales(w.la, "ahead2", 2), TLY_OK);
    ck_assert_msg(tly_repl_catch_up(w.ra, w.la, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_msg(tly_repl_attach(w.ra, w.la, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_int_eq(append_sales(w.la, "after", 3), TLY_OK);
    ck_assert_uint_eq(head_of(w.la), 14);
    ck_assert_int_eq(tly_repl_last_seq(w.ra, &last), TLY_OK);
    ck_assert_uint_eq(last, 14);
    /* another log, longer than the stream, whose record 14 is not the stream's */
    char b_dir[800];
    snprintf(b_dir, sizeof b_dir, "%s/b", w.L.dir);
    tly_log *lb = NULL;
    ck_assert_int_eq(tly_log_open(b_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &lb), TLY_OK);
    ck_assert_int_eq(append_sales(lb, "other", 15), TLY_OK);
    tly_repl *rb = NULL;
    tly_repl_opts ro = {w.c.urls, "BEHIND", 3, false, NULL};
    ck_assert_msg(tly_repl_open(&ro, &rb, msg, sizeof msg) == TLY_OK, "%s", msg);
    ck_assert_int_eq(tly_repl_attach(rb, lb, msg, sizeof msg), TLY_CORRUPT);
    ck_assert_msg(strstr(msg, "is not the stream's") != NULL, "%s", msg);
    ck_assert_int_eq(tly_repl_last_seq(w.ra, &last), TLY_OK);
    ck_assert_uint_eq(last, 14);
    tly_repl_close(rb);
    tly_log_close(lb);
    writer_case_stop(&w);
}
END_TEST

/* Makes the servers of cluster_init keep their client URLs to themselves
 * (no_advertise): a client then knows only the URLs it was given, and
 * cannot reconnect around a proxy in front of them. */
static void cluster_no_advertise(const cluster *c)
{
    for (int n = 1; n <= RT_NODES; n++) {
        char path[800], conf[8192];
        snprintf(path, sizeof path, "%s/n%d.conf", c->dir, n);
        char *text = tu_read_file(path, NULL);
        ck_assert_ptr_nonnull(text);
        char *at = strstr(text, "cluster {\n");
        ck_assert_ptr_nonnull(at);
        at += strlen("cluster {\n");
        int len = snprintf(conf, sizeof conf, "%.*s    no_advertise: true\n%s", (int)(at - text),
                           text, at);
        ck_assert(len > 0 && (size_t)len < sizeof conf);
        ck_assert(tu_write_file(path, conf, (size_t)len));
        free(text);
    }
}

/* A proxy (tcpproxy.h) with a route to each server of c; their URLs, as
 * c->urls has the servers', into urls. */
static tp_proxy *proxy_cluster(const cluster *c, char *urls, size_t cap)
{
    tp_target targets[RT_NODES];
    const char *at = c->urls;
    for (int n = 0; n < RT_NODES; n++) {
        ck_assert_int_eq(sscanf(at, "nats://127.0.0.1:%d", &targets[n].port), 1);
        targets[n].host = "127.0.0.1";
        at = strchr(at, ',');
        ck_assert(n == RT_NODES - 1 || at);
        at = at ? at + 1 : NULL;
    }
    tp_proxy *px = tp_start(targets, RT_NODES);
    ck_assert_ptr_nonnull(px);
    size_t len = 0;
    for (int n = 0; n < RT_NODES; n++)
        len += (size_t)snprintf(urls + len, cap - len, "%snats://127.0.0.1:%d", n ? "," : "",
                                tp_port(px, n));
    ck_assert_uint_lt(len, cap);
    return px;
}

/* [N2] a batch given up on while its connection was broken never reaches
 * the stream once the servers can be reached again. libnats 3.4 (conn.c)
 * keeps what is published on a connection that broke and may reconnect in
 * a reconnect buffer, and sends it once reconnected (what it had written
 * before the break is flushed or dropped with the socket, never sent
 * again). Before e4d24a0 a batch went out on such a connection: it waited
 * there, was refused after TLY_REPL_ACK_TIMEOUT_MS without an answer, and
 * landed in the stream after the reconnect, where the catch-up took it into
 * the log ("record 6 is of the lost batch"). Now a batch's connection is
 * never reconnected: the batch fails on it, or cannot connect.
 * The writer reaches each server through a proxy, and the servers do not
 * advertise their own URLs: the proxy is the only way in. After 5 records,
 * the proxy cuts every connection and refuses new ones; the first refused
 * one shows the writer's client is reconnecting (libnats has switched to
 * its reconnect buffer before it tries), and only then is the next batch
 * (3 "lost" records) written. Once it is refused, the proxy lets
 * connections through again; the writer catches up, its next batch takes
 * seqs 6..8, and nothing of the lost batch is in the log or the stream. */
START_TEST(test_refused_batch_not_resent)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_init(&L, &c);
    cluster_no_advertise(&c);
    cluster_run(&c);
    char urls[256];
    tp_proxy *px = proxy_cluster(&c, urls, sizeof urls);
    tly_repl *ra = NULL;
    tly_log *la = NULL;
    writer_start(&L, urls, "RESENT", &ra, &la);
    tp_freeze(px);
    tp_cut(px);
    ck_assert_msg(tp_wait_refused(px, 1, TL_REPLY_MS), "the writer's client did not reconnect");
    ck_assert_int_eq(append_sales(la, "lost", 3), TLY_UNAVAILABLE);
    tp_thaw(px);
    writer_goes_on(ra, la);
    assert_stream_has_log(&c, "RESENT", la, 8);
    tly_repl_close(ra);
    tly_log_close(la);
    tp_stop(px);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* A JetStream context on a connection of its own to c's servers (*nc):
 * the test's own view of the stream. */
static jsCtx *js_open(const cluster *c, natsConnection **nc)
{
    jsCtx *js = NULL;
    ck_assert_int_eq(natsConnection_ConnectTo(nc, c->urls), NATS_OK);
    ck_assert_int_eq(natsConnection_JetStream(&js, *nc, NULL), NATS_OK);
    return js;
}

/* Publishes into stream (on c) the record that would follow log's head, a
 * sale "late-0", with expected last seq = that head: a record of a batch
 * given up on that reached a server late (it chains onto the log, as such
 * a batch's first record does). Its seq. */
static uint64_t publish_late_record(const cluster *c, const char *stream, tly_log *log)
{
    uint64_t head = 0;
    uint8_t prev[TLY_HASH_BYTES], hash[TLY_HASH_BYTES];
    ck_assert_int_eq(tly_log_head(log, &head, prev), TLY_OK);
    msgpack_sbuffer ev, rec;
    msgpack_sbuffer_init(&ev);
    msgpack_sbuffer_init(&rec);
    sale_mp(&ev, "late", 0);
    tly_str source = {"dist-direct", 11};
    tly_chain_hash(prev, head + 1, TL_AT_MS, source, ev.data, ev.size, hash);
    ck_assert_int_eq(tly_record_encode(&rec, head + 1, TL_AT_MS, source, ev.data, ev.size, hash),
                     TLY_OK);
    natsConnection *nc = NULL;
    jsCtx *js = js_open(c, &nc);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectLastSeq = head;
    char subject[64];
    snprintf(subject, sizeof subject, "%s.log", stream);
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_Publish(&pa, js, subject, rec.data, (int)rec.size, &po, &jerr), NATS_OK);
    ck_assert_uint_eq(pa->Sequence, head + 1);
    jsPubAck_Destroy(pa);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    msgpack_sbuffer_destroy(&ev);
    msgpack_sbuffer_destroy(&rec);
    return head + 1;
}

/* The headers a record's message carries (ledger_repl.c publish_one): its
 * id, the first TLY_REPL_MSG_ID_HASH_BYTES bytes of its chain hash in hex,
 * and after the first record of a batch the id of the record before as the
 * expected last one (NULL: none, prev_id ""). Checks record seq of log
 * against message seq of stream on c; and that the stream, as the ledger
 * created it, keeps ids for TLY_REPL_DUPLICATES_WINDOW_MS. */
static void assert_msg_ids(const cluster *c, const char *stream, tly_log *log, uint64_t seq,
                           bool has_prev)
{
    natsConnection *nc = NULL;
    jsCtx *js = js_open(c, &nc);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_GetStreamInfo(&si, js, stream, NULL, &jerr), NATS_OK);
    ck_assert_int_eq(si->Config->Duplicates, (int64_t)TLY_REPL_DUPLICATES_WINDOW_MS * 1000000);
    jsStreamInfo_Destroy(si);
    char want[2][2 * TLY_REPL_MSG_ID_HASH_BYTES + 1];
    tly_log_reader *rd = NULL;
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, seq - 1, &rd), TLY_OK);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        tly_hex_encode(rec.hash, TLY_REPL_MSG_ID_HASH_BYTES, want[k]);
    }
    tly_log_reader_close(rd);
    natsMsg *m = NULL;
    ck_assert_int_eq(js_GetMsg(&m, js, stream, seq, NULL, &jerr), NATS_OK);
    const char *id = NULL, *prev = NULL;
    ck_assert_int_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
    ck_assert_str_eq(id, want[1]);
    natsStatus s = natsMsgHeader_Get(m, "Nats-Expected-Last-Msg-Id", &prev);
    if (has_prev) {
        ck_assert_int_eq(s, NATS_OK);
        ck_assert_str_eq(prev, want[0]);
    } else {
        ck_assert_int_eq(s, NATS_NOT_FOUND);
    }
    natsMsg_Destroy(m);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* [N2] A record of a batch given up on that reaches the stream late (held
 * by a paused server, or sent late on a connection alive but slow: README
 * "Replication") lands only as the next link of the chain, and the next
 * batch never lands on top of it. The test plays such a record: a writer
 * appends 5 records, then the record that would follow them is published
 * straight into the stream at seq 6. The writer's next batch (3 "next"
 * records, seqs 6..8) is refused: 6 for its seq. Before, 7 then landed on
 * top of the late record (expected last seq 6 held), the stream no longer
 * chained, and the catch-up refused it for good ("does not chain"). Now 7
 * and 8 expect the message id of the writer's own 6 as the stream's last
 * and are refused too; the catch-up takes the late record into the log,
 * the next batch takes seqs 7..9, and the stream is the log byte for
 * byte, without a record of the refused batch. */
START_TEST(test_late_record_fences_the_next_batch)
{
    writer_case w;
    writer_case_start(&w, "LATE");
    ck_assert_uint_eq(publish_late_record(&w.c, "LATE", w.la), 6);
    ck_assert_int_eq(append_sales(w.la, "next", 3), TLY_UNAVAILABLE);
    ck_assert_int_eq(catch_up_and_append(w.ra, w.la, "after", 3), TLY_OK);
    ck_assert_uint_eq(head_of(w.la), 9);
    assert_no_event_of(w.la, "next");
    assert_stream_has_log(&w.c, "LATE", w.la, 9);
    assert_msg_ids(&w.c, "LATE", w.la, 2, true);  /* the second of the first batch */
    assert_msg_ids(&w.c, "LATE", w.la, 7, false); /* the first of the last batch */
    assert_msg_ids(&w.c, "LATE", w.la, 9, true);
    writer_case_stop(&w);
}
END_TEST

/* The node number (1..3) of the stream's leader. */
static int stream_leader(const cluster *c, const char *stream)
{
    natsConnection *nc = NULL;
    jsCtx *js = js_open(c, &nc);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_GetStreamInfo(&si, js, stream, NULL, &jerr), NATS_OK);
    ck_assert_ptr_nonnull(si->Cluster);
    int n = 0;
    ck_assert_int_eq(sscanf(si->Cluster->Leader, "n%d", &n), 1);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    ck_assert(n >= 1 && n <= RT_NODES);
    return n;
}

/* [N4] a read replica (a standby that never takes over) follows on after
 * the stream's leader is killed while it waits for the next record: libnats
 * 3.4 recreates the ordered consumer it reads with from seq 1 when it had
 * delivered nothing since it was opened, and the standby took that record
 * for a stream that is not its log's and stopped following for good
 * (`nats-soak.sh 30 DIR nodes`, "seq 258501: it carries seq 1"). */
START_TEST(test_standby_after_leader_lost)
{
    tl_ledger A, B;
    cluster c;
    tl_init(&A);
    tl_init(&B);
    cluster_start(&A, &c);
    start_replicated(&A, &c, NULL);
    char file[700];
    write_sales(&A, "first", "one", 100, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&A, "first", args), 0, 100, 0, 0);
    /* Started now, B catches up to 100 and its follower opens a reader at
     * 101 that delivers nothing until the leader is gone (given the time
     * to open it; killed sooner, the test shows less, not wrongly). */
    start_replicated(&B, &c, (const char *[]){"--standby", "--no-takeover", NULL});
    tl_wait_head(&B, 100);
    tu_sleep_ms(2000);
    node_kill(&c, stream_leader(&c, TLY_REPL_STREAM_DEFAULT));
    write_sales(&A, "second", "two", 100, file, sizeof file);
    tl_sent sent = tl_send_run(&A, "second", args);
    tl_assert_delivered(sent, 100, "second");
    tl_wait_head(&B, 200);
    char *log = tu_read_file(B.logfile, NULL);
    ck_assert_msg(log && !strstr(log, "following stops here"), "the standby's log: %s", log);
    free(log);
    ck_assert_int_eq(tl_stop(&B, SIGTERM), 0);
    ck_assert_int_eq(tl_stop(&A, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &B, 200);
    cluster_stop(&c);
    tl_done(&B);
    tl_done(&A);
}
END_TEST

/* The mirror of data_dir read the stream through its durable pull consumer
 * [N6], which the servers keep: delivered and acknowledged up to seq. */
static void assert_durable(const cluster *c, const char *data_dir, uint64_t seq)
{
    char log_dir[800], name[TLY_REPL_DURABLE_BYTES_MAX + 1];
    snprintf(log_dir, sizeof log_dir, "%s/log", data_dir);
    tly_repl_durable_name(log_dir, name, sizeof name);
    ck_assert_int_eq(strncmp(name, "tally_", 6), 0);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(natsConnection_ConnectTo(&nc, c->urls), NATS_OK);
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_msg(js_GetConsumerInfo(&ci, js, TLY_REPL_STREAM_DEFAULT, name, NULL, &jerr) ==
                      NATS_OK,
                  "no durable consumer %s (%d)", name, (int)jerr);
    ck_assert_str_eq(ci->Config->Durable, name);
    /* room for a whole fetch unacknowledged: the servers' default (1,000)
     * would cut each fetch of a catch-up short and make it wait out its
     * expiry */
    ck_assert_int_eq(ci->Config->MaxAckPending, 2 * (int64_t)TLY_REPL_CHUNK_RECORDS);
    ck_assert_uint_eq(ci->Delivered.Stream, seq);
    ck_assert_uint_eq(ci->AckFloor.Stream, seq);
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* [N6]: an auditor elsewhere reads the stream into a mirror of its own,
 * from its head + 1 on each time, and verifies or replays it. */
START_TEST(test_audit_nats)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_start(&L, &c);
    start_replicated(&L, &c, NULL);
    char file[700], mirror[700], out[700];
    snprintf(mirror, sizeof mirror, "%s/mirror", L.dir);
    snprintf(out, sizeof out, "%s/replayed", L.dir);
    write_sales(&L, "a", "au", 300, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "first", args), 0, 300, 0, 0);
    const char *verify[] = {"audit", "verify", "--data", mirror, "--nats", c.urls, NULL};
    ck_assert_int_eq(tl_run(&L, "verify1", verify), 0);
    char *text = tl_output(&L, "verify1", "out");
    ck_assert_msg(strstr(text, "ok: 300 records"), "%s", text);
    free(text);
    write_sales(&L, "b", "au2", 200, file, sizeof file);
    tl_assert_sent(tl_send_run(&L, "second", args), 0, 200, 0, 0);
    ck_assert_int_eq(tl_run(&L, "verify2", verify), 0);
    text = tl_output(&L, "verify2", "out");
    ck_assert_msg(strstr(text, "ok: 500 records"), "%s", text);
    free(text);
    const char *replay[] = {"audit", "replay", "--data", mirror, "--out",
                            out,     "--nats", c.urls,   NULL};
    ck_assert_int_eq(tl_run(&L, "replay", replay), 0);
    assert_durable(&c, mirror, 500);
    /* the ledger's own log is its writer's: refused; no such stream: refused */
    const char *own[] = {"audit", "verify", "--data", L.data, "--nats", c.urls, NULL};
    ck_assert_int_eq(tl_run(&L, "own", own), 1);
    const char *none[] = {"audit", "verify",   "--data", mirror, "--nats",
                          c.urls,  "--stream", "NONE",   NULL};
    ck_assert_int_eq(tl_run(&L, "none", none), 1);
    const char *lone[] = {"audit", "verify", "--data", mirror, "--stream", "X", NULL};
    ck_assert_int_eq(tl_run(&L, "lone", lone), 2);
    /* a consumer elsewhere: its own mirror, folded to the head */
    char cdata[700];
    snprintf(cdata, sizeof cdata, "%s/consumer", L.dir);
    const char *keep[] = {tu_tally(), "consume", "--data", cdata, "--shard",
                          "1/2",      "--nats",  c.urls,   NULL};
    char keep_log[700];
    snprintf(keep_log, sizeof keep_log, "%s/keep.log", L.dir);
    pid_t keeper = tl_spawn(keep, keep_log, keep_log); /* shard 1/2 keeps the mirror */
    char clog[700];
    snprintf(clog, sizeof clog, "%s/consumer/log", L.dir);
    uint64_t mirrored = 0;
    for (int k = 0; k < TL_PROGRESS_MS / 50 && mirrored < 500; k++) {
        tly_log *log = NULL;
        if (tly_log_open(clog, TLY_LOG_READ, &log) == TLY_OK)
            tly_log_head(log, &mirrored, NULL);
        tly_log_close(log);
        tu_sleep_ms(50);
    }
    ck_assert_uint_eq(mirrored, 500);
    /* shard 0/2 on the same directory folds the mirror the other one keeps */
    const char *consume[] = {"consume", "--data",         cdata, "--shard", "0/2", "--nats",
                             c.urls,    "--exit-at-head", NULL};
    ck_assert_int_eq(tl_run(&L, "consume", consume), 0);
    ck_assert_int_eq(tl_stop_pid(&keeper, SIGTERM), 0);
    const char *status[] = {"status", "--data", cdata, "--json", NULL};
    ck_assert_int_eq(tl_run(&L, "status", status), 0);
    text = tl_output(&L, "status", "out");
    ck_assert_msg(strstr(text, "\"head\":500") && strstr(text, "\"checkpoint\":500"), "%s", text);
    free(text);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* `tally up --replicate`: the stack on one machine with its ledger
 * replicated. */
START_TEST(test_up_replicate)
{
    tl_ledger L;
    cluster c;
    tl_init(&L);
    cluster_start(&L, &c);
    char query[64], web[64], log[700];
    tu_endpoint(query, sizeof query);
    snprintf(web, sizeof web, "127.0.0.1:%d", tu_free_port());
    snprintf(log, sizeof log, "%s/up.log", L.dir);
    const char *argv[] = {tu_tally(), "up",       "--data",      L.data,       "--ingest",
                          L.ingest,   "--events", L.events,      "--log-read", L.logread,
                          "--query",  query,      "--web",       web,          "--no-metrics",
                          "--shards", "1",        "--replicate", c.urls,       NULL};
    pid_t up = tl_spawn(argv, log, log);
    const char *eps[] = {L.ingest, L.logread, NULL};
    tl_wait_ready(up, eps, log, "tally up");
    char file[700];
    write_sales(&L, "a", "up", 400, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "up", args), 0, 400, 0, 0);
    ck_assert_int_eq(tl_stop_pid(&up, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &L, 400);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

/* Waits until the file holds needle (a deadline, not a bound). */
static void wait_log_line(const char *path, const char *needle)
{
    for (int k = 0; k < TL_PROGRESS_MS / 50; k++) {
        char *text = tu_read_file(path, NULL);
        bool found = text && strstr(text, needle);
        free(text);
        if (found)
            return;
        tu_sleep_ms(50);
    }
    tl_dump_file("log", path);
    ck_abort_msg("'%s' never appeared in %s", needle, path);
}

/* [N4] a standby serves log-read from what it followed and answers ingest
 * `unavailable` (its events socket is checked in test_takeover). */
static void standby_serves(const tl_ledger *B, uint64_t head)
{
    void *ctx = tl_ctx();
    void *lr = tl_dealer(ctx, B->logread);
    tl_logread r = tl_logread_ask(B, lr, 1, 100, TL_REPLY_MS);
    ck_assert_msg(r.answered && !r.error[0], "log-read of the standby: '%s'", r.error);
    ck_assert_uint_eq(r.records, 100);
    ck_assert_uint_ge(r.head, head);
    void *d = tl_dealer(ctx, B->ingest);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sales_request(&sb, 1, "to-standby", 3);
    ck_assert_int_eq(ask(d, &sb, 3, NULL), TLY_UNAVAILABLE);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(d);
    zmq_close(lr);
    zmq_ctx_term(ctx);
}

/* Fault (a) once, (d), (e) and promote [N4] [N5]: the writer is killed
 * under load, the standby takes over, the producer (given both endpoints)
 * moves on and resends; every event is in the new writer's log exactly
 * once, the chain verifies there and on the stream. The old writer
 * restarted with its data catches up and is refused; as a standby it is
 * promoted back, and the deposed one steps down. */
START_TEST(test_takeover)
{
    tl_ledger A, B;
    cluster c;
    tl_init(&A);
    tl_init(&B);
    cluster_start(&A, &c);
    start_replicated(&A, &c, (const char *[]){"--name", "A", "--takeover-after", "1", NULL});
    start_replicated(&B, &c,
                     (const char *[]){"--name", "B", "--takeover-after", "1", "--standby", NULL});
    tl_ledger both = A; /* `tally send --ingest A,B` */
    char list[sizeof A.ingest * 2 + 2];
    snprintf(list, sizeof list, "%s,%s", A.ingest, B.ingest);
    ck_assert_uint_lt(strlen(list), sizeof both.ingest);
    memcpy(both.ingest, list, strlen(list) + 1);
    char file[700];
    write_sales(&A, "first", "to", 2000, file, sizeof file);
    const char *args[] = {"--source", "dist-a", "--ack-timeout-ms", "1000", file, NULL};
    tl_assert_sent(tl_send_run(&both, "first", args), 0, 2000, 0, 0);
    tl_wait_head(&B, 2000); /* the standby follows */
    standby_serves(&B, 2000);
    void *ctx = tl_ctx();
    void *sub = tl_connect(tl_sock(ctx, ZMQ_SUB, NULL, NULL), B.events);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    write_sales(&A, "load", "ld", 20000, file, sizeof file);
    pid_t p = tl_send_spawn(&both, "load", NULL, args);
    char topic[32];
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    ck_assert_msg(tl_sub_recv(sub, TL_PROGRESS_MS, topic, sizeof topic, &rec, &rec_len),
                  "the standby published nothing it followed");
    ck_assert_str_eq(topic, "sale");
    free(rec);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    tl_wait_head(&A, 4000);
    tl_stop_pid(&A.pid, SIGKILL);
    wait_log_line(B.logfile, "now the writer");
    tl_sent s = tl_send_wait(&both, "load", p);
    tl_assert_delivered(s, 20000, "send");
    ck_assert_uint_eq(tl_log_head(&B), 22000);
    audit_verify(&B);

    /* (d) the deposed writer with its old data: repaired, then refused */
    const char *again[] = {"--replicate", c.urls, "--name", "A", "--takeover-after", "1", NULL};
    assert_refused(&A, again, "who renews it");
    ck_assert_uint_eq(tl_log_head(&A), 22000);

    /* promote: A as a standby, promoted back; B steps down */
    start_replicated(&A, &c,
                     (const char *[]){"--name", "A", "--takeover-after", "1", "--standby", NULL});
    const char *promote[] = {"ledger", "promote", "--replicate", c.urls, "--name", "A", NULL};
    ck_assert_int_eq(tl_run(&A, "promote", promote), 0);
    wait_log_line(A.logfile, "now the writer");
    wait_log_line(B.logfile, "following stream");
    write_sales(&A, "after", "af", 100, file, sizeof file);
    tl_assert_sent(tl_send_run(&both, "after", args), 0, 100, 0, 0);
    tl_wait_head(&B, 22100);
    ck_assert_int_eq(tl_stop(&A, SIGTERM), 0);
    ck_assert_int_eq(tl_stop(&B, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &A, 22100);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &B, 22100);
    cluster_stop(&c);
    tl_done(&B);
    tl_done(&A);
}
END_TEST

/* [N6] a read replica (--standby --no-takeover) follows the stream for
 * local readers and never takes over when the lease lapses; a promote
 * that names it does make it the writer. */
START_TEST(test_read_replica)
{
    tl_ledger L, R;
    cluster c;
    tl_init(&L);
    tl_init(&R);
    cluster_start(&L, &c);
    start_replicated(&L, &c, (const char *[]){"--name", "L", "--takeover-after", "1", NULL});
    start_replicated(&R, &c,
                     (const char *[]){"--name", "R", "--takeover-after", "1", "--standby",
                                      "--no-takeover", NULL});
    char file[700];
    write_sales(&L, "a", "rr", 200, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "first", args), 0, 200, 0, 0);
    tl_wait_head(&R, 200);
    tl_stop_pid(&L.pid, SIGKILL);
    tu_sleep_ms(3000); /* three times --takeover-after: only an absence passes */
    standby_serves(&R, 200);
    char *log = tu_read_file(R.logfile, NULL);
    ck_assert_msg(log && !strstr(log, "took the writer's lease"), "%s", log);
    free(log);
    const char *promote[] = {"ledger", "promote", "--replicate", c.urls, "--name", "R", NULL};
    ck_assert_int_eq(tl_run(&R, "promote", promote), 0);
    wait_log_line(R.logfile, "now the writer");
    tl_ledger to_r = L;
    memcpy(to_r.ingest, R.ingest, sizeof R.ingest);
    write_sales(&L, "b", "rr2", 50, file, sizeof file);
    tl_assert_sent(tl_send_run(&to_r, "second", args), 0, 50, 0, 0);
    ck_assert_int_eq(tl_stop(&R, SIGTERM), 0);
    assert_stream_is_log(&c, TLY_REPL_STREAM_DEFAULT, &R, 250);
    cluster_stop(&c);
    tl_done(&R);
    tl_done(&L);
}
END_TEST

/* [N5] `tally bench ingest --ingest STANDBY,WRITER`: the producers hear
 * `unavailable` from the standby and move to the writer; every event of
 * both runs lands (a second run's ids are its own, not duplicates). */
START_TEST(test_bench_endpoints)
{
    tl_ledger L, R;
    cluster c;
    tl_init(&L);
    tl_init(&R);
    cluster_start(&L, &c);
    start_replicated(&L, &c, (const char *[]){"--name", "L", NULL});
    start_replicated(&R, &c, (const char *[]){"--name", "R", "--standby", "--no-takeover", NULL});
    char both[1200], scratch[800];
    snprintf(both, sizeof both, "%s,%s", R.ingest, L.ingest);
    snprintf(scratch, sizeof scratch, "%s/bench", L.dir);
    ck_assert_int_eq(mkdir(scratch, 0700), 0);
    const char *argv[] = {"bench", "ingest",   "--ingest", both,          "--batches",
                          "100",   "--events", "2000",     "--producers", "2",
                          "--dir", scratch,    NULL};
    for (int run = 1; run <= 2; run++) {
        ck_assert_int_eq(tl_run(&L, "bench", argv), 0);
        char *out = tl_output(&L, "bench", "out");
        const char *row = strstr(out, "\n100 ");
        ck_assert_msg(row != NULL && strstr(out, "FAILURES") == NULL, "%s", out);
        ck_assert_msg(strstr(out, "to the running ledgers") != NULL, "%s", out);
        free(out);
        uint64_t want = (uint64_t)run * (2000 + TLY_BENCH_SINGLE_EVENTS);
        ck_assert_uint_eq(tl_log_head(&L), want);
        tl_wait_head(&R, want);
    }
    ck_assert_int_eq(tl_stop(&R, SIGTERM), 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    cluster_stop(&c);
    tl_done(&R);
    tl_done(&L);
}
END_TEST

/* Usage errors of the new flags, each at its limit's edge (exit 2). */
START_TEST(test_replicate_usage)
{
    tl_ledger L;
    tl_init(&L);
    char many[TLY_REPL_URLS_MAX * 32] = "", edge[TLY_REPL_URLS_MAX * 32] = "";
    for (unsigned i = 0; i <= TLY_REPL_URLS_MAX; i++) {
        char *dst = i < TLY_REPL_URLS_MAX ? edge : many;
        snprintf(dst + strlen(dst), 32, "%snats://127.0.0.1:%u", dst[0] ? "," : "", 1 + i);
        if (i < TLY_REPL_URLS_MAX)
            snprintf(many, sizeof many, "%s", edge);
    }
    char long_url[TLY_REPL_URL_BYTES_MAX + 2];
    memset(long_url, 'x', sizeof long_url - 1);
    long_url[sizeof long_url - 1] = '\0';
    char name_max[TLY_REPL_STREAM_NAME_BYTES_MAX + 2];
    memset(name_max, 'S', sizeof name_max - 1);
    name_max[sizeof name_max - 1] = '\0';
    const char *bad[][5] = {
        {"--replicate", "nats://127.0.0.1:1", "--replicas", "0", NULL},
        {"--replicate", "nats://127.0.0.1:1", "--replicas", "6", NULL},
        {"--replicate", "nats://127.0.0.1:1", "--stream", "A.B", NULL},
        {"--replicate", "nats://127.0.0.1:1", "--stream", name_max, NULL},
        {"--replicate", "nats://127.0.0.1:1,", NULL},
        {"--replicate", many, NULL},
        {"--replicate", long_url, NULL},
        {"--stream", "X", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[12] = {"ledger", "--data", L.data};
        int n = 3;
        for (int k = 0; bad[i][k]; k++)
            argv[n++] = bad[i][k];
        argv[n] = NULL;
        ck_assert_msg(tl_run(&L, "usage", argv) == 2, "case %zu not a usage error", i);
    }
    /* At the edges: 16 URLs and a 32-byte name are taken (no server: exit 1). */
    name_max[TLY_REPL_STREAM_NAME_BYTES_MAX] = '\0';
    const char *ok[] = {"ledger",   "--data", L.data,       "--replicate", edge,
                        "--stream", name_max, "--replicas", "5",           NULL};
    ck_assert_int_eq(tl_run(&L, "edge", ok), 1);
    char *err = tl_output(&L, "edge", "err");
    ck_assert_msg(strstr(err, "cannot connect"), "%s", err);
    free(err);
    tl_done(&L);
}
END_TEST

/* One nats-server with JetStream and no cluster, under L's directory, on
 * a free port: user "admin" may do anything, user "reader" may not
 * publish JetStream's consumer API, so its requests to create a consumer
 * go unanswered (each times out), and user "blind" may not ask for a
 * stream's info, so its lookups go unanswered as while the stream elects
 * a leader. Waits until JetStream answers admin; writes the port to *port. */
static pid_t single_start(const tl_ledger *L, int *port)
{
    char conf[700], log[700], text[1024];
    *port = tu_free_port();
    snprintf(conf, sizeof conf, "%s/single.conf", L->dir);
    snprintf(log, sizeof log, "%s/single.log", L->dir);
    snprintf(text, sizeof text,
             "listen: 127.0.0.1:%d\n"
             "max_payload: 8MB\n"
             "jetstream { store_dir: \"%s/single-js\" }\n"
             "authorization { users = [\n"
             "  { user: admin, password: admin }\n"
             "  { user: reader, password: reader,\n"
             "    permissions: { publish: { deny: [\"$JS.API.CONSUMER.>\"] } } }\n"
             "  { user: blind, password: blind,\n"
             "    permissions: { publish: { deny: [\"$JS.API.STREAM.INFO.>\"] } } }\n"
             "] }\n",
             *port, L->dir);
    tl_write_text(conf, text);
    const char *argv[] = {nats_server(), "-c", conf, NULL};
    pid_t pid = tl_spawn(argv, log, log);
    char url[128];
    snprintf(url, sizeof url, "nats://admin:admin@127.0.0.1:%d", *port);
    bool ready = false;
    for (int k = 0; k < TL_PROGRESS_MS / 100 && !ready; k++) {
        natsConnection *nc = NULL;
        jsCtx *js = NULL;
        jsAccountInfo *ai = NULL;
        ready = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
                natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
                js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK;
        jsAccountInfo_Destroy(ai);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        if (!ready)
            tu_sleep_ms(100);
    }
    if (!ready)
        tl_dump_file("nats-server", log);
    ck_assert_msg(ready, "JetStream did not become ready on port %d", *port);
    return pid;
}

/* How many of "attempt 1 of N", "attempt 2 of N", ... text holds. */
static int attempts_logged(const char *text, int of)
{
    int k = 0;
    for (;;) {
        char want[64];
        snprintf(want, sizeof want, "attempt %d of %d", k + 1, of);
        if (!strstr(text, want))
            return k;
        k++;
    }
}

/* TLY_REPL_CREATE_TRIES, TLY_REPL_READER_OPEN_TRIES and
 * TLY_REPL_LOOKUP_TRIES at their edge: a stream that cannot be created
 * (three replicas on one server) is tried exactly TLY_REPL_CREATE_TRIES
 * times, a consumer whose creation times out every time exactly
 * TLY_REPL_READER_OPEN_TRIES times, and a stream whose lookup times out
 * every time exactly TLY_REPL_LOOKUP_TRIES times, each failing with a clear
 * error and exit 1. */
START_TEST(test_retry_limits)
{
    tl_ledger L;
    tl_init(&L);
    int port;
    pid_t server = single_start(&L, &port);
    char admin[128], reader[128], blind[128];
    snprintf(admin, sizeof admin, "nats://admin:admin@127.0.0.1:%d", port);
    snprintf(reader, sizeof reader, "nats://reader:reader@127.0.0.1:%d", port);
    snprintf(blind, sizeof blind, "nats://blind:blind@127.0.0.1:%d", port);

    const char *r3[] = {"ledger", "--data",     L.data,    "--ingest",    L.ingest, "--events",
                        L.events, "--log-read", L.logread, "--replicate", admin,    "--stream",
                        "THREE",  "--replicas", "3",       NULL};
    ck_assert_int_eq(tl_run(&L, "r3", r3), 1);
    char *err = tl_output(&L, "r3", "err");
    ck_assert_msg(attempts_logged(err, TLY_REPL_CREATE_TRIES) == TLY_REPL_CREATE_TRIES, "%s", err);
    ck_assert_msg(strstr(err, "cannot create stream THREE (replicas 3)"), "%s", err);
    free(err);

    /* A stream of 20 records, then an auditor that cannot create a consumer. */
    const char *r1[] = {"--replicate", admin, "--replicas", "1", NULL};
    tl_start(&L, r1);
    char file[700];
    write_sales(&L, "a", "rl", 20, file, sizeof file);
    const char *args[] = {"--source", "dist-a", file, NULL};
    tl_assert_sent(tl_send_run(&L, "send", args), 0, 20, 0, 0);
    ck_assert_int_eq(tl_stop(&L, SIGTERM), 0);
    char mirror[700];
    snprintf(mirror, sizeof mirror, "%s/mirror", L.dir);
    const char *verify[] = {"audit", "verify", "--data", mirror, "--nats", reader, NULL};
    ck_assert_int_eq(tl_run(&L, "verify", verify), 1);
    err = tl_output(&L, "verify", "err");
    ck_assert_msg(attempts_logged(err, TLY_REPL_READER_OPEN_TRIES) ==
                      TLY_REPL_READER_OPEN_TRIES - 1,
                  "%s", err);
    free(err);
    /* An auditor whose lookups of the stream are never answered. */
    const char *lookup[] = {"audit", "verify", "--data", mirror, "--nats", blind, NULL};
    ck_assert_int_eq(tl_run(&L, "lookup", lookup), 1);
    err = tl_output(&L, "lookup", "err");
    ck_assert_msg(attempts_logged(err, TLY_REPL_LOOKUP_TRIES) == TLY_REPL_LOOKUP_TRIES, "%s", err);
    ck_assert_msg(strstr(err, "stream TALLY_LOG: Timeout"), "%s", err);
    free(err);
    /* admin may: the same mirror verifies */
    const char *ok[] = {"audit", "verify", "--data", mirror, "--nats", admin, NULL};
    ck_assert_int_eq(tl_run(&L, "ok", ok), 0);
    char *out = tl_output(&L, "ok", "out");
    ck_assert_msg(strstr(out, "ok: 20 records"), "%s", out);
    free(out);
    tl_stop_pid(&server, SIGTERM);
    tl_done(&L);
}
END_TEST

/* One replicated row of `tally bench ingest --replicate` ("100 R3 ..."):
 * the ledger's events/s and the stream's own ceiling, both measured, and
 * no failure. */
static void bench_row(const char *out, const char *label)
{
    const char *row = strstr(out, label);
    ck_assert_msg(row != NULL, "no row %s in:\n%s", label, out);
    double eps, p50, p99, raw, ratio, ceiling;
    ck_assert_int_eq(sscanf(row + strlen(label), "%lf %lf %lf %lf %lf%% %lf", &eps, &p50, &p99,
                            &raw, &ratio, &ceiling),
                     6);
    ck_assert_msg(eps > 0 && ceiling > 0 && p50 > 0, "row %s: %.40s", label, row);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(row, "\n"), row);
    ck_assert_msg(strstr(line, "FAILURES") == NULL, "%s", line);
}

/* issue 13 item 7: the bench runs the ledger replicated with 1 and 3
 * replicas and measures the stream's ceiling beside it, then deletes every
 * stream it made. */
START_TEST(test_bench_replicate)
{
    tl_ledger L;
    tl_init(&L);
    cluster c;
    cluster_start(&L, &c);
    char scratch[800];
    snprintf(scratch, sizeof scratch, "%s/bench", L.dir);
    ck_assert_int_eq(mkdir(scratch, 0700), 0);
    const char *argv[] = {"bench", "ingest",   "--replicate", c.urls,        "--batches",
                          "100",   "--events", "3000",        "--producers", "2",
                          "--dir", scratch,    NULL};
    ck_assert_int_eq(tl_run(&L, "bench", argv), 0);
    char *out = tl_output(&L, "bench", "out"), *err = tl_output(&L, "bench", "err");
    bench_row(out, "100 R1");
    bench_row(out, "100 R3");
    /* every stream the bench created is gone */
    int created = 0;
    for (const char *at = err; (at = strstr(at, "created stream ")) != NULL; created++) {
        at += strlen("created stream ");
        char name[64];
        ck_assert_int_eq(sscanf(at, "%63s", name), 1);
        tly_repl_opts ro = {c.urls, name, 0, true, NULL};
        tly_repl *r = NULL;
        char msg[256];
        ck_assert_msg(tly_repl_open(&ro, &r, msg, sizeof msg) == TLY_NOT_FOUND, "stream %s is left",
                      name);
    }
    ck_assert_int_eq(created, 4); /* R1 and R3: the ledger's and the ceiling's */
    free(out);
    free(err);
    cluster_stop(&c);
    tl_done(&L);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("replicate");
    TCase *tc = tu_tcase(s, "replicate", 600);
    tu_add_tests(tc, TU_TESTS(test_replicate_usage, test_replicated_ingest, test_copy_and_refuse,
                              test_catch_up, test_no_quorum, test_fenced_writer,
                              test_lost_batch_stays_lost, test_stream_behind_refilled,
                              test_refused_batch_not_resent, test_late_record_fences_the_next_batch,
                              test_standby_after_leader_lost, test_node_killed_under_load,
                              test_takeover, test_audit_nats, test_up_replicate, test_read_replica,
                              test_bench_replicate, test_bench_endpoints));
    TCase *limits = tu_tcase(s, "limits", 120);
    tu_add_tests(limits, TU_TESTS(test_retry_limits));
    return tu_run_suite(s);
}
