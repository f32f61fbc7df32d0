/*
 * web_statement.c — the partner statement of the console:
 * /partners/ID/statement.html and /partners/ID/statement.pdf [?period=P].
 * The statement is `tally statement` itself (consumers/report through
 * consumers/cli), run as a child of this process's own binary into a fresh
 * temporary directory, so the console serves exactly what the command
 * writes and links nothing of the command layer. Without ?period the
 * partner's latest rebate period is stated.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tly_limits.h"
#include "web_internal.h"

/* The latest rebate period of the partner, or NULL (out holds the reply
 * of a failed question). */
static char *latest_period(const web_req *r, const char *id, web_reply *out)
{
    json_t *reb = web_ask(r, json_pack("{s:s, s:s}", "q", "rebate", "partner", id), out);
    json_t *rows = json_object_get(reb, "periods");
    const char *p = json_string_value(
        json_object_get(json_array_get(rows, json_array_size(rows) - 1), "period"));
    char *copy = p ? strdup(p) : NULL;
    json_decref(reb);
    return copy;
}

/* Runs `tally statement ID --period P --out PATH` (this binary), its
 * stderr into errpath; the child's exit code, or -1. */
static int run_statement(const web_req *r, const char *id, const char *period, const char *path,
                         const char *errpath)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        const char *argv[] = {self,       "statement",   id,
                              "--period", period,        "--out",
                              path,       "--data",      r->cfg->data ? r->cfg->data : ".",
                              "--query",  r->cfg->query, NULL};
        execv(self, (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The file at path as the reply's body (at most TLY_WEB_STATEMENT_BYTES_MAX;
 * *too_large set when it is larger). */
static bool body_of_file(const char *path, web_reply *out, bool *too_large)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    char chunk[65536];
    size_t got, total = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && total <= TLY_WEB_STATEMENT_BYTES_MAX) {
        web_putn(&out->body, chunk, got);
        total += got;
    }
    fclose(f);
    *too_large = total > TLY_WEB_STATEMENT_BYTES_MAX;
    return total > 0 && !*too_large && !out->body.failed;
}

/* The first line of the child's stderr, for an error page. */
static void first_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f && fgets(out, (int)cap, f))
        out[strcspn(out, "\n")] = '\0';
    if (f)
        fclose(f);
    if (!out[0])
        snprintf(out, cap, "the statement could not be written");
}

void web_statement_reply(const web_req *r, int rc, const char *path, const char *errpath, bool pdf,
                         web_reply *out)
{
    bool too_large = false;
    if (rc == 0 && body_of_file(path, out, &too_large)) {
        out->status = 200;
        out->type = pdf ? "application/pdf" : "text/html; charset=utf-8";
        return;
    }
    char msg[256];
    web_buf_free(&out->body);
    out->body = (web_buf){0};
    first_line(errpath, msg, sizeof msg);
    if (too_large)
        snprintf(msg, sizeof msg,
                 "the statement is larger than %u bytes, the most the console serves",
                 TLY_WEB_STATEMENT_BYTES_MAX);
    web_error(r, out, rc == 1 ? 404 : 500, rc == 1 ? "not_found" : "io", msg, NULL);
}

/* Writes the statement into a fresh directory and serves it. */
static void serve_statement(const web_req *r, const char *id, const char *period, bool pdf,
                            web_reply *out)
{
    char dir[] = "/tmp/tally-web-XXXXXX", path[64], errpath[64];
    if (mkdtemp(dir) == NULL) {
        web_error(r, out, 500, "io", "no temporary directory for the statement", NULL);
        return;
    }
    snprintf(path, sizeof path, "%s/statement.%s", dir, pdf ? "pdf" : "html");
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    int rc = run_statement(r, id, period, path, errpath);
    web_statement_reply(r, rc, path, errpath, pdf, out);
    unlink(path);
    unlink(errpath);
    rmdir(dir);
}

void web_page_statement(const web_req *r, const char *id, const char *what, web_reply *out)
{
    static const char *const names[] = {"period"};
    bool pdf = strcmp(what, "statement.pdf") == 0;
    if (!pdf && strcmp(what, "statement.html") != 0) {
        web_error(r, out, 404, "not_found", "no such page", NULL);
        return;
    }
    if (!web_args_check(r, names, 1, out))
        return;
    const char *given = web_arg_get(r, "period");
    char *period = given ? strdup(given) : latest_period(r, id, out);
    if (period == NULL) {
        if (out->status == 0)
            web_error(r, out, 404, "not_found", "the partner has no rebate period to state yet",
                      NULL);
        return;
    }
    serve_statement(r, id, period, pdf, out);
    free(period);
}
