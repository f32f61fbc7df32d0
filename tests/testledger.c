/* testledger.c — see testledger.h. */
#include "testledger.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "testutil.h"
#include "tly_wire.h"

/* ------------------------------------------------------------------ */
/* processes                                                           */

extern char **environ;

static void redirect_fd(int fd, const char *path, int flags)
{
    int f = open(path ? path : "/dev/null", flags, 0644);
    if (f < 0)
        _exit(126);
    dup2(f, fd);
    close(f);
}

/* The child's environment: env's entries first (getenv finds the first of
 * a name), then this process's; built before the fork, since the child
 * must not allocate. */
static char **child_environ(const char *const *env)
{
    size_t n = 0, m = 0;
    while (env && env[n])
        n++;
    while (environ[m])
        m++;
    char **all = malloc((n + m + 1) * sizeof *all);
    ck_assert_ptr_nonnull(all);
    for (size_t i = 0; i < n; i++)
        all[i] = (char *)env[i];
    for (size_t i = 0; i < m; i++)
        all[n + i] = environ[i];
    all[n + m] = NULL;
    return all;
}

pid_t tl_spawn_env(const char *const *argv, const char *const *env, const char *out,
                   const char *err)
{
    pid_t parent = getpid();
    char **envp = child_environ(env);
    fflush(NULL);
    pid_t pid = fork();
    /* The child calls nothing but async-signal-safe functions until exec:
     * the parent has other threads (ZeroMQ's), and an assertion here, even
     * a passing one (Check records a mark point: malloc, a lock, a write),
     * could wait forever on a lock one of them held at the fork (it did,
     * once, under ASan: the child never reached its redirects). */
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        redirect_fd(0, NULL, O_RDONLY);
        redirect_fd(1, out, O_WRONLY | O_CREAT | O_APPEND);
        if (err && out && strcmp(err, out) == 0)
            dup2(1, 2);
        else
            redirect_fd(2, err, O_WRONLY | O_CREAT | O_APPEND);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    ck_assert_int_ge(pid, 0);
    return pid;
}

pid_t tl_spawn(const char *const *argv, const char *out, const char *err)
{
    return tl_spawn_env(argv, NULL, out, err);
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int tl_wait_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return status_code(st);
        if (r < 0 && errno != EINTR)
            return -2;
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        tu_sleep_ms(10);
    }
}

bool tl_exited(pid_t pid, int *code)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) != pid)
        return false;
    *code = status_code(st);
    return true;
}

int tl_stop_pid(pid_t *pid, int sig)
{
    ck_assert_int_gt(*pid, 0);
    kill(*pid, sig);
    int code = tl_wait_exit(*pid, TL_EXIT_MS);
    *pid = 0;
    return code;
}

void tl_wait_ready(pid_t pid, const char *const *eps, const char *log, const char *what)
{
    for (int waited = 0; *eps;) {
        int code;
        if (tl_exited(pid, &code)) {
            tl_dump_file(what, log);
            ck_abort_msg("%s exited with %d while starting", what, code);
        }
        if (tu_wait_listening(*eps, 0)) { /* one attempt; 20 ms pause when refused */
            eps++;
            continue;
        }
        waited += 20;
        if (waited > TL_READY_MS) {
            tl_dump_file(what, log);
            ck_abort_msg("%s is not listening on %s", what, *eps);
        }
    }
}

void tl_dump_file(const char *what, const char *path)
{
    char *text = tu_read_file(path, NULL);
    fprintf(stderr, "---- %s (%s) ----\n%s\n----\n", what, path, text ? text : "(none)");
    free(text);
}

void tl_write_text(const char *path, const char *text)
{
    ck_assert_msg(tu_write_file(path, text, strlen(text)), "cannot write %s", path);
}

/* ------------------------------------------------------------------ */
/* the ledger                                                          */

void tl_init(tl_ledger *L)
{
    memset(L, 0, sizeof *L);
    char *tmp = tu_tmpdir();
    snprintf(L->dir, sizeof L->dir, "%s", tmp);
    free(tmp);
    snprintf(L->data, sizeof L->data, "%s/data", L->dir);
    snprintf(L->logdir, sizeof L->logdir, "%s/data/log", L->dir);
    snprintf(L->logfile, sizeof L->logfile, "%s/ledger.log", L->dir);
    tu_endpoint(L->ingest, sizeof L->ingest);
    tu_endpoint(L->events, sizeof L->events);
    tu_endpoint(L->logread, sizeof L->logread);
}

/* The log of the ledger this test process started last (tl_rpc prints it
 * when a reply does not come). */
static char last_started_log[sizeof((tl_ledger *)0)->logfile];

void tl_start_env(tl_ledger *L, const char *const *extra, const char *const *env)
{
    snprintf(last_started_log, sizeof last_started_log, "%s", L->logfile);
    const char *argv[40];
    int n = 0;
    const char *fixed[] = {tu_tally(), "ledger",   "--data",  L->data,      "--ingest",
                           L->ingest,  "--events", L->events, "--log-read", L->logread};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    for (; extra && *extra && n < 39; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    L->pid = tl_spawn_env(argv, env, L->logfile, L->logfile);
    const char *eps[] = {L->ingest, L->events, L->logread, NULL};
    tl_wait_ready(L->pid, eps, L->logfile, "tally ledger");
}

void tl_start(tl_ledger *L, const char *const *extra)
{
    tl_start_env(L, extra, NULL);
}

int tl_stop(tl_ledger *L, int sig)
{
    return tl_stop_pid(&L->pid, sig);
}

void tl_done(tl_ledger *L)
{
    if (L->pid > 0)
        ck_assert_int_eq(tl_stop(L, SIGTERM), 0);
    tu_rmtree(strdup(L->dir));
}

/* ------------------------------------------------------------------ */
/* tally commands                                                      */

int tl_run(const tl_ledger *L, const char *tag, const char *const *args)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = tu_tally();
    for (; *args && n < 39; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    char out[700], err[700];
    snprintf(out, sizeof out, "%s/%s.out", L->dir, tag);
    snprintf(err, sizeof err, "%s/%s.err", L->dir, tag);
    unlink(out);
    unlink(err);
    int code = tl_wait_exit(tl_spawn(argv, out, err), TL_RUN_MS);
    if (code != 0)
        tl_dump_file(tag, err);
    return code;
}

char *tl_output(const tl_ledger *L, const char *tag, const char *ext)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s.%s", L->dir, tag, ext);
    char *text = tu_read_file(path, NULL);
    return text ? text : strdup("");
}

/* ------------------------------------------------------------------ */
/* tally send                                                          */

static void send_paths(const tl_ledger *L, const char *tag, char *out, char *err, size_t cap)
{
    snprintf(out, cap, "%s/send-%s.out", L->dir, tag);
    snprintf(err, cap, "%s/send-%s.err", L->dir, tag);
}

pid_t tl_send_spawn(const tl_ledger *L, const char *tag, const char *logread,
                    const char *const *args)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = tu_tally();
    argv[n++] = "send";
    argv[n++] = "--ingest";
    argv[n++] = L->ingest;
    if (logread) {
        argv[n++] = "--log-read";
        argv[n++] = logread;
    }
    for (; *args && n < 39; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    char out[700], err[700];
    send_paths(L, tag, out, err, sizeof out);
    unlink(out);
    unlink(err);
    return tl_spawn(argv, out, err);
}

tl_sent tl_send_result(const tl_ledger *L, const char *tag, int rc)
{
    tl_sent s = {0};
    s.rc = rc;
    char out[700], err[700];
    send_paths(L, tag, out, err, sizeof out);
    char *text = tu_read_file(out, NULL);
    s.parsed = text && sscanf(text, "sent %ld, duplicates %ld, rejected %ld", &s.sent, &s.dups,
                              &s.rejected) == 3;
    if (!s.parsed)
        tl_dump_file("tally send stderr", err);
    free(text);
    return s;
}

tl_sent tl_send_wait(const tl_ledger *L, const char *tag, pid_t pid)
{
    return tl_send_result(L, tag, tl_wait_exit(pid, TL_RUN_MS));
}

tl_sent tl_send_run(const tl_ledger *L, const char *tag, const char *const *args)
{
    return tl_send_wait(L, tag, tl_send_spawn(L, tag, NULL, args));
}

char *tl_send_stderr(const tl_ledger *L, const char *tag)
{
    char out[700], err[700];
    send_paths(L, tag, out, err, sizeof out);
    char *text = tu_read_file(err, NULL);
    return text ? text : strdup("");
}

/* A send that ended without its summary (killed at TL_RUN_MS, or failed):
 * what the ledger said meanwhile goes to stderr first, so that a failure
 * under load can be read afterwards (test_replicate's node-killed case once
 * ran out its time with the ledger answering "storage"). */
static void assert_summary(tl_sent s, const char *who)
{
    if (s.parsed)
        return;
    if (last_started_log[0] != '\0')
        tl_dump_file("the last ledger started", last_started_log);
    ck_abort_msg("%s: tally send printed no summary (exit %d)", who, s.rc);
}

void tl_assert_sent(tl_sent s, int rc, long sent, long dups, long rejected)
{
    assert_summary(s, "tally send");
    ck_assert_msg(s.rc == rc && s.sent == sent && s.dups == dups && s.rejected == rejected,
                  "tally send: exit %d, sent %ld, duplicates %ld, rejected %ld; expected exit "
                  "%d, sent %ld, duplicates %ld, rejected %ld",
                  s.rc, s.sent, s.dups, s.rejected, rc, sent, dups, rejected);
}

void tl_assert_delivered(tl_sent s, long total, const char *who)
{
    assert_summary(s, who);
    ck_assert_msg(s.rc == 0 && s.sent + s.dups == total && s.rejected == 0,
                  "%s: exit %d, sent %ld, duplicates %ld, rejected %ld; expected exit 0 and "
                  "%ld sent or duplicates, none rejected",
                  who, s.rc, s.sent, s.dups, s.rejected, total);
}

void tl_put_sale(FILE *f, const char *id, int i)
{
    fprintf(f,
            "{\"type\":\"sale\",\"id\":\"%s\",\"at\":%lld,\"partner\":\"partner-%d\","
            "\"sku\":\"SKU-%d\",\"qty\":%d,\"amount\":%d,\"currency\":\"USD\"}\n",
            id, TL_AT_MS + i, i % 37, i % 11, 1 + i % 5, 100 + i);
}

void tl_put_sales(FILE *f, const char *prefix, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        tl_put_sale(f, id, i);
    }
}

void tl_write_sales(const char *path, const char *prefix, int n)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    tl_put_sales(f, prefix, 0, n);
    ck_assert_int_eq(fclose(f), 0);
}

/* ------------------------------------------------------------------ */
/* CURVE keys                                                          */

void tl_make_keys(const tl_ledger *L, const char *name, tl_keys *k)
{
    ck_assert_int_eq(zmq_curve_keypair(k->pub, k->sec), 0);
    snprintf(k->file, sizeof k->file, "%s/%s.key", L->dir, name);
    char text[64];
    int n = snprintf(text, sizeof text, "%s\n", k->sec);
    ck_assert(tu_write_file(k->file, text, (size_t)n));
}

/* ------------------------------------------------------------------ */
/* the log, read-only                                                  */

tly_log *tl_log_open(const tl_ledger *L)
{
    tly_log *log = NULL;
    tly_err err = tly_log_open(L->logdir, TLY_LOG_READ, &log);
    ck_assert_msg(err == TLY_OK, "cannot open %s read-only: %s", L->logdir, tly_err_name(err));
    return log;
}

uint64_t tl_log_head(const tl_ledger *L)
{
    tly_log *log = tl_log_open(L);
    uint64_t head = 0;
    ck_assert_int_eq(tly_log_head(log, &head, NULL), TLY_OK);
    tly_log_close(log);
    return head;
}

uint64_t tl_wait_head(const tl_ledger *L, uint64_t target)
{
    for (int waited = 0;; waited += 5) {
        uint64_t head = tl_log_head(L);
        if (head >= target)
            return head;
        ck_assert_msg(waited < TL_PROGRESS_MS, "log head stuck at %llu below %llu",
                      (unsigned long long)head, (unsigned long long)target);
        tu_sleep_ms(5);
    }
}

tly_err tl_log_lookup(const tl_ledger *L, const char *source, const char *id, uint64_t *seq)
{
    tly_log *log = tl_log_open(L);
    tly_str s = {source, (uint32_t)strlen(source)};
    tly_str i = {id, (uint32_t)strlen(id)};
    tly_err err = tly_log_lookup(log, s, i, seq);
    tly_log_close(log);
    return err;
}

/* Checks the served records: consecutive seqs from `from`, each exactly the
 * stored bytes. */
static void check_records(const tl_ledger *L, const msgpack_object *recs, uint64_t from)
{
    tly_log *log = tl_log_open(L);
    tly_log_reader *rd = NULL;
    ck_assert_int_eq(tly_log_reader_open(log, from, &rd), TLY_OK);
    for (uint32_t i = 0; i < recs->via.array.size; i++) {
        const msgpack_object *b = &recs->via.array.ptr[i];
        ck_assert_int_eq(b->type, MSGPACK_OBJECT_BIN);
        tly_record rec, stored;
        ck_assert_int_eq(tly_record_decode(b->via.bin.ptr, b->via.bin.size, &rec), TLY_OK);
        ck_assert_uint_eq(rec.seq, from + i);
        ck_assert_int_eq(tly_log_reader_next(rd, &stored), TLY_OK);
        ck_assert_msg(stored.raw_len == b->via.bin.size &&
                          memcmp(stored.raw, b->via.bin.ptr, stored.raw_len) == 0,
                      "log-read record %llu differs from the stored bytes",
                      (unsigned long long)rec.seq);
    }
    tly_log_reader_close(rd);
    tly_log_close(log);
}

static void logread_decode(const tl_ledger *L, const uint8_t *buf, size_t len, uint64_t from,
                           tl_logread *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)buf, len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *err = tl_map_get(&u.data, "error");
    const msgpack_object *recs = tl_map_get(&u.data, "records");
    const msgpack_object *head = tl_map_get(&u.data, "head");
    if (err) {
        ck_assert_int_eq(err->type, MSGPACK_OBJECT_STR);
        ck_assert_ptr_null(recs);
        snprintf(out->error, sizeof out->error, "%.*s", (int)err->via.str.size, err->via.str.ptr);
    } else {
        ck_assert_msg(recs && recs->type == MSGPACK_OBJECT_ARRAY, "log-read reply has no records");
        ck_assert_msg(head && head->type == MSGPACK_OBJECT_POSITIVE_INTEGER, "no head");
        out->records = recs->via.array.size;
        out->head = head->via.u64;
        check_records(L, recs, from ? from : 1);
    }
    msgpack_unpacked_destroy(&u);
}

tl_logread tl_logread_ask(const tl_ledger *L, void *lr, uint64_t from, uint32_t max, int timeout_ms)
{
    tl_logread out = {0};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tly_wire_logread_encode(&pk, from, max);
    bool sent = tl_send_request(lr, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    uint8_t *reply = NULL;
    if (!sent || !tl_recv(lr, timeout_ms, &reply, &out.bytes))
        return out;
    out.answered = true;
    logread_decode(L, reply, out.bytes, from, &out);
    free(reply);
    return out;
}

/* ------------------------------------------------------------------ */
/* raw ZeroMQ and MessagePack                                          */

void *tl_ctx(void)
{
    void *ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

void *tl_sock(void *ctx, int type, const char *server_pub, const tl_keys *k)
{
    void *s = zmq_socket(ctx, type);
    ck_assert_ptr_nonnull(s);
    int linger = 0, sndtimeo = TL_REPLY_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    if (server_pub) {
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->pub, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->sec, 40), 0);
    }
    return s;
}

void *tl_connect(void *s, const char *ep)
{
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    return s;
}

void *tl_dealer(void *ctx, const char *ep)
{
    return tl_connect(tl_sock(ctx, ZMQ_DEALER, NULL, NULL), ep);
}

void tl_send_frame(void *sock, const void *buf, size_t len)
{
    ck_assert_int_eq(zmq_send(sock, buf, len, 0), (int)len);
}

bool tl_send_request(void *sock, const void *buf, size_t len)
{
    if (zmq_send(sock, buf, len, 0) == (int)len)
        return true;
    ck_assert_int_eq(zmq_errno(), EAGAIN);
    return false;
}

bool tl_recv(void *sock, int timeout_ms, uint8_t **buf, size_t *len)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int rc;
    while ((rc = zmq_poll(&it, 1, timeout_ms)) < 0 && zmq_errno() == EINTR)
        ;
    if (rc <= 0)
        return false;
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
    ck_assert_msg(!zmq_msg_more(&m), "expected a single-frame reply");
    *len = zmq_msg_size(&m);
    *buf = malloc(*len + 1);
    memcpy(*buf, zmq_msg_data(&m), *len);
    zmq_msg_close(&m);
    return true;
}

uint8_t *tl_rpc(void *sock, const void *buf, size_t len, size_t *rlen)
{
    tl_send_frame(sock, buf, len);
    uint8_t *reply = NULL;
    if (!tl_recv(sock, TL_REPLY_MS, &reply, rlen)) {
        if (last_started_log[0] != '\0') /* what the ledger said meanwhile */
            tl_dump_file("the last ledger started", last_started_log);
        ck_abort_msg("no reply from the ledger");
    }
    return reply;
}

bool tl_sub_recv(void *sub, int timeout_ms, char *topic, size_t cap, uint8_t **rec, size_t *len)
{
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sub, 0), 0);
    ck_assert_msg(zmq_msg_more(&m), "events message without a record frame");
    size_t n = zmq_msg_size(&m) < cap - 1 ? zmq_msg_size(&m) : cap - 1;
    memcpy(topic, zmq_msg_data(&m), n);
    topic[n] = '\0';
    zmq_msg_close(&m);
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sub, 0), 0);
    ck_assert_msg(!zmq_msg_more(&m), "events message with more than 2 frames");
    *len = zmq_msg_size(&m);
    *rec = malloc(*len);
    memcpy(*rec, zmq_msg_data(&m), *len);
    zmq_msg_close(&m);
    return true;
}

const msgpack_object *tl_map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}
