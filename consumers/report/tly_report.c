/*
 * tly_report.c — the room's entry: picks the format by the file's
 * extension, builds the blocks and has the renderer write them to a
 * temporary file beside the target, which is synced and renamed over it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "report_int.h"
#include "tly_report.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcasecmp(s + n - k, suffix) == 0;
}

tly_err tly_report_format_of(const char *path, tly_report_format *out)
{
    if (ends_with(path, ".html") || ends_with(path, ".htm"))
        *out = TLY_REPORT_HTML;
    else if (ends_with(path, ".pdf"))
        *out = TLY_REPORT_PDF;
    else
        return TLY_USAGE;
    return TLY_OK;
}

/* Renders d into the open temporary file fd (closed here). */
static tly_err render(const rb_doc *d, tly_report_format fmt, int fd, char *msg, size_t cap)
{
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        snprintf(msg, cap, "cannot open the temporary file: %s", strerror(errno));
        close(fd);
        return TLY_IO;
    }
    tly_err err = rb_libs_load(msg, cap);
    if (err == TLY_OK)
        err = fmt == TLY_REPORT_PDF ? rb_write_pdf(d, f) : rb_write_html(d, f);
    if (err == TLY_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        snprintf(msg, cap, "cannot write: %s", strerror(errno));
        err = TLY_IO;
    }
    if (fclose(f) != 0 && err == TLY_OK) {
        snprintf(msg, cap, "cannot write: %s", strerror(errno));
        err = TLY_IO;
    }
    if (err == TLY_TOO_LARGE)
        snprintf(msg, cap, "more than %u pages", TLY_STATEMENT_PAGES_MAX);
    else if (err != TLY_OK && msg[0] == '\0')
        snprintf(msg, cap, "%s", tly_strerror(err));
    return err;
}

tly_err tly_report_statement_write(const json_t *st, tly_report_format fmt, const char *path,
                                   char *msg, size_t cap)
{
    char tmp[TLY_PATH_BYTES_MAX + 16];
    msg[0] = '\0';
    if (strlen(path) >= TLY_PATH_BYTES_MAX) {
        snprintf(msg, cap, "the path is longer than %u bytes", TLY_PATH_BYTES_MAX - 1);
        return TLY_USAGE;
    }
    rb_doc d = {0};
    tly_err err = rb_doc_build(&d, st, msg, cap);
    if (err == TLY_NOMEM)
        snprintf(msg, cap, "out of memory");
    if (err != TLY_OK) {
        rb_doc_free(&d);
        return err;
    }
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(msg, cap, "cannot create %s: %s", tmp, strerror(errno));
        rb_doc_free(&d);
        return TLY_IO;
    }
    err = render(&d, fmt, fd, msg, cap);
    rb_doc_free(&d);
    if (err == TLY_OK && rename(tmp, path) != 0) {
        snprintf(msg, cap, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        err = TLY_IO;
    }
    if (err != TLY_OK)
        unlink(tmp);
    return err;
}
