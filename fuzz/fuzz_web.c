/*
 * fuzz_web.c — libFuzzer target: one request to the web console (`tally
 * web`) as a hostile browser or client on the console's address may send
 * it, answered by web_serve (consumers/web/web_server.c), the function the
 * server calls for every request once libmicrohttpd has read it: the
 * checks every page shares (method, size, argument count, format), the
 * routing of the path and each page's arguments, questions and rendering,
 * the partner page's explain lines folded from DATA/log, and a statement
 * written by `tally statement` in a child process.
 *
 * The stack: LLVMFuzzerInitialize appends the stream of fuzz_stream.h to a
 * log in a private temporary DATA under $TMPDIR (removed at exit; smoke.sh
 * points TMPDIR into its work directory, which a crash leaves behind too),
 * replays it into DATA/views (tly_audit_replay, one shard) and answers the
 * console's questions from those views on a thread of its own, over a real
 * ZeroMQ socket (ipc://DATA/query.sock) as `tally query` answers them
 * (tly_query_request_decode, tly_query_answer_encode,
 * tly_query_reply_encode). Nothing writes to DATA after that: every input
 * meets the same state. A statement page runs this binary as `tally
 * statement` (web_statement.c runs /proc/self/exe): given "statement" as
 * its first argument the target is that command (tly_cmd_statement) and
 * exits with its code before libFuzzer starts.
 *
 * Input: byte 0 is flags, the rest fields separated by NUL bytes (a NUL
 * cannot reach the console: the library hands it C strings, cut at a
 * decoded %00):
 *   flags bits 0-1  the method: GET, HEAD, POST, PUT
 *         bit 2     the request announces a body
 *         bits 3-7  a header "X-Pad" of that many times WEB_PAD_UNIT bytes
 *                   (besides "Host: t"), toward TLY_WEB_REQUEST_BYTES_MAX
 *   fields          the path as the library decodes it, then query
 *                   arguments as name, value, name, value, ...; a name
 *                   without a value (the input ends after it) is an
 *                   argument without "=" (a NULL value). Arguments past
 *                   TLY_WEB_ARGS_MAX + 2 are not read.
 *
 * Properties beyond "no crash, no sanitizer report, no leak, no hang":
 * - the status is one tly_web.h names, and never 500 or 503 (nothing here
 *   is too large, memory does not run out and the service answers), except
 *   a statement's 500 (the child's own failure, its first line shown);
 * - a JSON reply is one JSON object, an error one with "error" and
 *   "message"; an HTML one is a whole page ("<!DOCTYPE html>" ...
 *   "</html>\n"); both NUL-terminated at body.len;
 * - the page does not show the request's bytes raw: a path or argument
 *   holding one of < > " ' between two bytes the console never writes
 *   itself (control bytes other than tab, newline and carriage return)
 *   does not appear as it is in an HTML reply.
 */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "fuzz_stream.h"
#include "tly_audit.h"
#include "tly_cmd.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_query.h"
#include "web_internal.h"

/* Bytes of the X-Pad header per unit of the flags' top five bits: 31 units
 * pass TLY_WEB_REQUEST_BYTES_MAX. */
#define WEB_PAD_UNIT 300u
/* Arguments read from an input: two past the bound, so "one too many" is
 * tried. */
#define WEB_FUZZ_ARGS (TLY_WEB_ARGS_MAX + 2u)

static char data_dir[TLY_PATH_BYTES_MAX / 4];
static char endpoint[TLY_PATH_BYTES_MAX / 2];
static tly_web_config cfg;
static tly_query_store *store;
static char pad[31 * WEB_PAD_UNIT + 1];

/* ---- the stack, made once ---- */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void cleanup(void)
{
    if (data_dir[0])
        nftw(data_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Appends the stream to DATA/log as the ledger would. */
static void write_log(const char *dir)
{
    enum { N = sizeof stream / sizeof stream[0] };
    static msgpack_sbuffer sb[N];
    tly_log_item items[N];
    for (size_t i = 0; i < N; i++) {
        tly_event ev;
        tly_ev_type t;
        decode_event("fuzz_web", stream[i][1], &sb[i], &ev);
        items[i] = (tly_log_item){.source = {stream[i][0], (uint32_t)strlen(stream[i][0])},
                                  .event = (const uint8_t *)sb[i].data,
                                  .event_len = sb[i].size};
        if (tly_event_peek_id(sb[i].data, sb[i].size, &t, &items[i].id) != TLY_OK)
            abort();
    }
    tly_log *log = NULL;
    tly_log_group g = {0, N, false};
    if (tly_log_open(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log) != TLY_OK ||
        tly_log_append(log, REC_MS, items, N, &g, 1) != TLY_OK)
        abort();
    for (size_t i = 0; i < N; i++)
        if (items[i].err != TLY_OK)
            abort();
    tly_log_close(log);
    for (size_t i = 0; i < N; i++)
        msgpack_sbuffer_destroy(&sb[i]);
}

/* Receives one frame into m, again when a signal interrupts the wait
 * (libFuzzer's timer may land on this thread); whether more follow. */
static bool recv_frame(void *sock, zmq_msg_t *m)
{
    while (zmq_msg_recv(m, sock, 0) < 0)
        if (errno != EINTR)
            abort();
    return zmq_msg_more(m);
}

/* The query service's thread: answers every request on sock (a ROUTER:
 * the client's identity, then its request), as `tally query` does
 * without CURVE. */
static void *serve_queries(void *sock)
{
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (!recv_frame(sock, &id) || recv_frame(sock, &body))
            abort(); /* the client sends one frame; nothing else connects */
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        json_t *reply = NULL;
        json_t *req = tly_query_request_decode(zmq_msg_data(&body), zmq_msg_size(&body), &reply);
        if (req && tly_query_answer_encode(store, req, &out) != TLY_OK)
            abort(); /* out of memory */
        if (reply)
            tly_query_reply_encode(reply, &out);
        json_decref(reply);
        json_decref(req);
        while (zmq_msg_send(&id, sock, ZMQ_SNDMORE) < 0)
            if (errno != EINTR)
                abort();
        while (zmq_send(sock, out.data, out.size, 0) < 0)
            if (errno != EINTR)
                abort();
        msgpack_sbuffer_destroy(&out);
        zmq_msg_close(&body);
    }
    return NULL;
}

/* The statement child's leak suppressions, those of tests/lsan.supp:
 * fontconfig's process-lifetime caches (pango's font map loads it). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\n";
}

/* A sanitizer report in the statement child (a leak at its exit included)
 * aborts the fuzzer too, so the input is kept as a crash. */
static void child_died(void)
{
    kill(getppid(), SIGABRT);
}

/* Runs `tally statement` with the arguments the console gave (argv[1] is
 * "statement") and exits with its code. Its stderr is the console's file
 * for the error page; sanitizer reports go to the fuzzer's stdout instead,
 * and the command's own stdout to /dev/null. */
static void statement_child(int argc, char **argv)
{
    umask(077);
    int report = dup(STDOUT_FILENO);
    if (report < 0 || !freopen("/dev/null", "w", stdout))
        _exit(1);
    __sanitizer_set_report_fd((void *)(intptr_t)report);
    __sanitizer_set_death_callback(child_died);
    exit(tly_cmd_statement(argc - 1, argv + 1));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (*argc >= 2 && strcmp((*argv)[1], "statement") == 0)
        statement_child(*argc, *argv);
    const char *tmp = getenv("TMPDIR");
    snprintf(data_dir, sizeof data_dir, "%s/fuzz-web-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(data_dir))
        abort();
    atexit(cleanup);
    char logdir[sizeof data_dir + 8], views[sizeof data_dir + 8], msg[512] = "";
    snprintf(logdir, sizeof logdir, "%s/log", data_dir);
    snprintf(views, sizeof views, "%s/views", data_dir);
    write_log(logdir);
    tly_audit_replay_opts o = {.log_dir = logdir, .out_dir = views, .shard_count = 1};
    uint64_t last = 0;
    if (tly_audit_replay(&o, NULL, NULL, &last, msg, sizeof msg) != TLY_OK ||
        last != sizeof stream / sizeof stream[0]) {
        fprintf(stderr, "fuzz_web: replay: %s\n", msg);
        abort();
    }
    if (tly_query_store_open(views, logdir, 1, &store) != TLY_OK)
        abort();
    snprintf(endpoint, sizeof endpoint, "ipc://%s/query.sock", data_dir);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    pthread_t t;
    if (!sock || zmq_bind(sock, endpoint) != 0 ||
        pthread_create(&t, NULL, serve_queries, sock) != 0)
        abort();
    pthread_detach(t);
    cfg = (tly_web_config){.query = endpoint, .data = data_dir};
    memset(pad, 'p', sizeof pad - 1);
    return 0;
}

/* ---- one input ---- */

/* A byte the console never writes itself: a control byte other than tab,
 * newline and carriage return. */
static bool foreign(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

/* s shown raw in body: it holds a character escaping replaces (< > " ';
 * not &, with which every escape starts) between two foreign bytes (so
 * neither the console's own markup nor its edge next to an escaped text
 * can hold it), and appears as it is. */
static bool shown_raw(const char *body, const char *s)
{
    const char *first = NULL, *last = NULL;
    for (const char *p = s ? s : ""; *p; p++)
        if (foreign((unsigned char)*p)) {
            first = first ? first : p;
            last = p;
        }
    if (!first)
        return false;
    for (const char *p = first + 1; p < last; p++)
        if (strchr("<>\"'", *p))
            return strstr(body, s) != NULL;
    return false;
}

static void check_reply(const web_req *r, const web_reply *out)
{
    const web_buf *b = &out->body;
    int st = out->status;
    /* A statement's 500 is the child's failure, code "io" (web_statement.c). */
    const char *text = b->data ? b->data : "";
    bool io = strstr(text, r->json ? "{\"error\":\"io\"" : "data-code=\"io\"") != NULL;
    if (b->failed || (st == 500 && !io) || st == 503 ||
        (st != 200 && st != 302 && st != 400 && st != 404 && st != 405 && st != 413 && st != 500)) {
        fprintf(stderr, "fuzz_web: %s: status %d%s: %.2000s\n", r->path, st,
                b->failed ? " (failed)" : "", b->data ? b->data : "");
        abort();
    }
    if (b->len > 0 && (b->data == NULL || b->data[b->len] != '\0'))
        abort();
    if (out->type != NULL || st == 302)
        return;
    if (out->json) {
        json_error_t je;
        json_t *j = json_loadb(b->data, b->len, 0, &je);
        if (!json_is_object(j) || (st != 200 && (!json_is_string(json_object_get(j, "error")) ||
                                                 !json_is_string(json_object_get(j, "message"))))) {
            fprintf(stderr, "fuzz_web: %s: not a JSON reply (%s): %.2000s\n", r->path, je.text,
                    b->data);
            abort();
        }
        json_decref(j);
        return;
    }
    static const char head[] = "<!DOCTYPE html>", tail[] = "</html>\n";
    if (b->len < sizeof head + sizeof tail || memcmp(b->data, head, sizeof head - 1) != 0 ||
        strcmp(b->data + b->len - (sizeof tail - 1), tail) != 0) {
        fprintf(stderr, "fuzz_web: %s: not a whole page: %.2000s\n", r->path, b->data);
        abort();
    }
    bool raw = shown_raw(b->data, r->path);
    for (uint32_t i = 0; !raw && i < r->nargs; i++)
        raw = shown_raw(b->data, r->args[i].name) || shown_raw(b->data, r->args[i].value);
    if (raw) {
        fprintf(stderr, "fuzz_web: %s: the request shown unescaped: %.4000s\n", r->path, b->data);
        abort();
    }
}

/* The next field of [*at, end) (end points at a NUL), or NULL when none is
 * left. */
static const char *next_field(const uint8_t **at, const uint8_t *end)
{
    if (*at >= end)
        return NULL;
    const char *s = (const char *)*at;
    const uint8_t *nul = memchr(*at, 0, (size_t)(end - *at));
    *at = nul ? nul + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* A copy with a NUL after it, so the last field is a C string too. */
    uint8_t *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    copy[size] = 0;
    const uint8_t *at = copy + 1, *end = copy + size;
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT"};
    const char *path = next_field(&at, end);
    web_req r = {.cfg = &cfg, .path = path ? path : ""};
    web_req_add(&r, "Host", "t", false);
    size_t padn = (size_t)(data[0] >> 3) * WEB_PAD_UNIT;
    if (padn)
        web_req_add(&r, "X-Pad", pad + sizeof pad - 1 - padn, false);
    for (uint32_t n = 0; n < WEB_FUZZ_ARGS; n++) {
        const char *name = next_field(&at, end);
        if (!name)
            break;
        web_req_add(&r, name, next_field(&at, end), true);
    }
    web_reply out = {.status = 200};
    web_serve(&r, methods[data[0] & 3], (data[0] & 4) != 0, &out);
    check_reply(&r, &out);
    web_buf_free(&out.body);
    free(copy);
    return 0;
}
