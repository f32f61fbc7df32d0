/*
 * fuzz_endpoints.c — libFuzzer target: DIR/endpoints.json as every client
 * command given DIR reads it (tly_common_endpoints: `tally send`, `status`,
 * `balance`, `web`, ... take each endpoint not given by flag from the file
 * `tally up` wrote). The input is the file's bytes, written into a private
 * temporary DIR made once under $TMPDIR (removed at exit; smoke.sh points
 * TMPDIR into its work directory, which a crash leaves behind too, so it
 * goes with it). Which endpoints were given by
 * flag follows the input's size: its low four bits, one per endpoint, so
 * every mix is tried. What the command prints (one line on stderr,
 * tly_errorf) is caught in a memfd; sanitizer reports still go to the real
 * stderr.
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - it returns TLY_EXIT_OK, printing nothing, exactly when the file is a
 *   JSON object (json_loadb with the same flags), else TLY_EXIT_FAIL;
 * - then each endpoint given by flag keeps its flag's value, each other
 *   one is the file's string under its key, or stays the default when the
 *   file has none there (a key holding no string is ignored), and
 *   endpoints_recorded says whether any was taken from the file; on
 *   TLY_EXIT_FAIL nothing changes;
 * - a refusal is one line "tally CMD: <path>: ...\n" of UTF-8 without
 *   control bytes (the file's bytes must not reach the user's terminal
 *   raw) that says why (it does not end in ": ").
 */
#define _GNU_SOURCE /* memfd_create */
#include <fcntl.h>
#include <jansson.h>
#include <sanitizer/common_interface_defs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tly_cli.h"
#include "tly_event.h"
#include "tly_layout.h"
#include "tly_limits.h"

#define CMD "fuzz"

static char dir[TLY_PATH_BYTES_MAX / 2];
static char path[TLY_PATH_BYTES_MAX];
static int capture_fd = -1; /* the memfd fd 2 points at during a call */
static int stderr_fd = -1;  /* the real stderr */

/* The endpoints, their keys in the file, their flags. */
static const struct {
    const char *key;
    unsigned bit;
} fields[] = {{"ingest", TLY_CO_INGEST},
              {"events", TLY_CO_EVENTS},
              {"log_read", TLY_CO_LOG_READ},
              {"query", TLY_CO_QUERY}};

static const char **field(tly_common_opts *o, size_t k)
{
    const char **slots[] = {&o->ingest, &o->events, &o->log_read, &o->query};
    return slots[k];
}

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fuzz-endpoints-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir) || tly_layout_endpoints(dir, path, sizeof path) != TLY_OK)
        abort();
    atexit(cleanup);
    capture_fd = memfd_create("fuzz_endpoints_stderr", 0);
    stderr_fd = dup(STDERR_FILENO);
    if (capture_fd < 0 || stderr_fd < 0)
        abort();
    __sanitizer_set_report_fd((void *)(intptr_t)stderr_fd);
    return 0;
}

/* Runs tly_common_endpoints on o with stderr caught into out (cap bytes,
 * NUL-terminated); *len gets the bytes printed. */
static int run_caught(tly_common_opts *o, char *out, size_t cap, size_t *len)
{
    if (ftruncate(capture_fd, 0) != 0 || lseek(capture_fd, 0, SEEK_SET) != 0)
        abort();
    fflush(stderr);
    if (dup2(capture_fd, STDERR_FILENO) < 0)
        abort();
    int rc = tly_common_endpoints(CMD, o);
    fflush(stderr);
    if (dup2(stderr_fd, STDERR_FILENO) < 0)
        abort();
    off_t end = lseek(capture_fd, 0, SEEK_CUR);
    ssize_t got = pread(capture_fd, out, cap - 1, 0);
    if (end < 0 || got < 0 || (size_t)got != ((size_t)end < cap - 1 ? (size_t)end : cap - 1))
        abort();
    out[got] = '\0';
    *len = (size_t)end;
    return rc;
}

/* The refusal: one line, "tally CMD: PATH: " and a reason, in UTF-8
 * without control bytes. */
static void check_refusal(const char *out, size_t len)
{
    char head[TLY_PATH_BYTES_MAX + 64];
    snprintf(head, sizeof head, "tally %s: %s: ", CMD, path);
    if (len < strlen(head) + 2 || len >= TLY_LOG_LINE_BYTES_MAX || out[len - 1] != '\n')
        abort();
    if (strncmp(out, head, strlen(head)) != 0 || !tly_utf8_valid(out, len))
        abort();
    for (size_t i = 0; i + 1 < len; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            abort();
    if (len >= 3 && out[len - 3] == ':' && out[len - 2] == ' ')
        abort(); /* "...: " and no reason */
}

/* What was taken: flags kept, the file's strings, the defaults elsewhere. */
static void check_taken(tly_common_opts *o, const tly_common_opts *before, const json_t *j)
{
    bool recorded = false;
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        const char *want = *field((tly_common_opts *)before, k);
        const char *s = json_string_value(json_object_get(j, fields[k].key));
        if (s && !(before->given & fields[k].bit)) {
            want = s;
            recorded = true;
        }
        const char *got = *field(o, k);
        if (!got || strcmp(got, want) != 0)
            abort();
    }
    if (o->endpoints_recorded != recorded || o->given != before->given)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
        abort();
    tly_common_opts o, before;
    tly_common_defaults(&o);
    o.data = dir;
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        if (size & (1u << k)) {
            o.given |= fields[k].bit;
            *field(&o, k) = fields[k].key; /* the flag's value: its name */
        }
    }
    before = o;
    char out[TLY_LOG_LINE_BYTES_MAX + 1];
    size_t len = 0;
    int rc = run_caught(&o, out, sizeof out, &len);
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    if (json_is_object(j)) {
        if (rc != TLY_EXIT_OK || len != 0)
            abort();
        check_taken(&o, &before, j);
    } else {
        if (rc != TLY_EXIT_FAIL)
            abort();
        check_taken(&o, &before, NULL); /* nothing taken */
        check_refusal(out, len);
    }
    json_decref(j);
    return 0;
}
