/* tly_cli.c — shared command-line plumbing; see tly_cli.h. */
#include "tly_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tly_event.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_os.h"

void tly_common_defaults(tly_common_opts *o)
{
    const char *env = getenv("TALLY_DATA");
    *o = (tly_common_opts){0};
    o->data_named = env && *env;
    o->data = o->data_named ? env : TLY_DEFAULT_DATA;
    o->ingest = TLY_DEFAULT_INGEST;
    o->events = TLY_DEFAULT_EVENTS;
    o->log_read = TLY_DEFAULT_LOG_READ;
    o->query = TLY_DEFAULT_QUERY;
}

int tly_usagef(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tally %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'tally %s --help'.\n", cmd);
    va_end(ap);
    return TLY_EXIT_USAGE;
}

int tly_cli_u64(const char *cmd, const char *name, const char *value, uint64_t min, uint64_t max,
                uint64_t *out)
{
    if (tly_parse_u64(value, min, max, out))
        return TLY_EXIT_OK;
    return tly_usagef(cmd, "%s takes %llu..%llu, not '%s'", name, (unsigned long long)min,
                      (unsigned long long)max, value);
}

const char *tly_cli_data_note(const tly_common_opts *o, char *buf, size_t cap)
{
    struct stat st;
    const char *why = NULL;
    if (o->data_named && stat(o->data, &st) != 0)
        why = strerror(errno);
    else if (o->data_named && !S_ISDIR(st.st_mode))
        why = strerror(ENOTDIR);
    if (why)
        snprintf(buf, cap, ", and data directory %s: %s", o->data, why);
    else if (cap > 0)
        buf[0] = '\0';
    return buf;
}

int tly_cli_unreachable(const char *cmd, const tly_common_opts *o)
{
    char note[TLY_CLI_DATA_NOTE_BYTES];
    tly_errorf(cmd, "query service not reachable at %s%s", o->query,
               tly_cli_data_note(o, note, sizeof note));
    return TLY_EXIT_FAIL;
}

/* The common flags, in one table: name, TLY_CO_* bit, takes a value. */
static const tly_opt common_opts[] = {
    {"--data", TLY_CO_DATA, TLY_OPT_PATH}, {"--ingest", TLY_CO_INGEST, true},
    {"--events", TLY_CO_EVENTS, true},     {"--log-read", TLY_CO_LOG_READ, true},
    {"--query", TLY_CO_QUERY, true},       {"--json", TLY_CO_JSON, false},
    {"--metrics", TLY_CO_METRICS, true},
};

static void set_common(tly_common_opts *o, int bit, const char *value)
{
    o->given |= (unsigned)bit;
    if (bit == TLY_CO_DATA) {
        o->data = value;
        o->data_named = true;
    }
    o->ingest = bit == TLY_CO_INGEST ? value : o->ingest;
    o->events = bit == TLY_CO_EVENTS ? value : o->events;
    o->log_read = bit == TLY_CO_LOG_READ ? value : o->log_read;
    o->query = bit == TLY_CO_QUERY ? value : o->query;
    o->json = o->json || bit == TLY_CO_JSON;
    o->metrics = bit == TLY_CO_METRICS ? value : o->metrics;
}

/* True when every comma-separated element of value names a ZeroMQ
 * transport the project uses and something after it: "bogus" or "" given
 * as an endpoint is a usage error here, where it was a misleading refusal
 * later ("refusing to bind bogus without CURVE", "query service not
 * reachable"). What ZeroMQ itself refuses past the prefix ("tcp://host"
 * without a port) is still reported where the socket is opened. */
static bool endpoints_ok(const char *value)
{
    static const char *const transports[] = {"tcp://", "ipc://", "inproc://"};
    const char *p = value;
    for (;;) {
        size_t len = strcspn(p, ",");
        bool ok = false;
        for (size_t k = 0; k < sizeof transports / sizeof transports[0] && !ok; k++) {
            size_t t = strlen(transports[k]);
            ok = len > t && strncmp(p, transports[k], t) == 0;
        }
        if (!ok)
            return false;
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

/* The option named arg (up to its '=', if any) in table; NULL if none. */
static const tly_opt *find_opt(const tly_opt *table, size_t n, const char *arg, size_t name_len)
{
    for (size_t k = 0; k < n; k++)
        if (strlen(table[k].name) == name_len && strncmp(table[k].name, arg, name_len) == 0)
            return &table[k];
    return NULL;
}

/* One option at argv[*i] (starting with "--" or '-'): its value found,
 * then handed on. Exit code. */
static int parse_option(const tly_cli_spec *s, tly_common_opts *c, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const tly_opt *o = find_opt(s->opts, s->opts ? s->opt_count : 0, arg, len);
    bool common = false;
    if (!o) {
        o = find_opt(common_opts, sizeof common_opts / sizeof common_opts[0], arg, len);
        common = o != NULL;
        if (o && !(s->common & (unsigned)o->id))
            o = NULL;
    }
    if (!o)
        return tly_usagef(s->cmd, "unknown option '%.*s'", (int)len, arg);
    const char *value = NULL;
    if (o->value && eq)
        value = eq + 1;
    else if (o->value && *i + 1 < argc)
        value = argv[++*i];
    else if (o->value)
        return tly_usagef(s->cmd, "option %s needs a value", o->name);
    else if (eq)
        return tly_usagef(s->cmd, "option %s takes no value", o->name);
    /* An empty --data would put the data at the root of the file system
     * ("/log", "/views"), and any empty path a message that names none. */
    if (o->value == TLY_OPT_PATH && value[0] == '\0')
        return tly_usagef(s->cmd, "%s: empty path", o->name);
    if (common) {
        if ((o->id & TLY_CO_ENDPOINTS) && !endpoints_ok(value))
            return tly_usagef(s->cmd,
                              "%s: '%s' is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH)",
                              o->name, value);
        set_common(c, o->id, value);
        return TLY_EXIT_OK;
    }
    return s->handle(s->ctx, o->id, value);
}

int tly_cli_parse(const tly_cli_spec *s, tly_common_opts *c, int argc, char **argv)
{
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc = TLY_EXIT_OK;
        if (options && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0))
            return TLY_CLI_HELP;
        if (options && strcmp(arg, "--") == 0)
            options = false;
        else if (options && arg[0] == '-' && arg[1] != '\0')
            rc = parse_option(s, c, argc, argv, &i);
        else if (s->handle)
            rc = s->handle(s->ctx, TLY_OPT_ARG, arg);
        else
            rc = tly_usagef(s->cmd, "unexpected argument '%s'", arg);
        if (rc != TLY_EXIT_OK)
            return rc;
    }
    return TLY_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* The endpoints a `tally up` recorded                                       */

/* The endpoint fields of the file, with their flags. */
static const struct {
    const char *key;
    unsigned bit;
    size_t offset;
} endpoint_fields[] = {
    {"ingest", TLY_CO_INGEST, offsetof(tly_common_opts, ingest)},
    {"events", TLY_CO_EVENTS, offsetof(tly_common_opts, events)},
    {"log_read", TLY_CO_LOG_READ, offsetof(tly_common_opts, log_read)},
    {"query", TLY_CO_QUERY, offsetof(tly_common_opts, query)},
};

static const char **endpoint_slot(tly_common_opts *o, size_t k)
{
    return (const char **)((char *)o + endpoint_fields[k].offset);
}

static const char *endpoint_of(const tly_common_opts *o, size_t k)
{
    return *(const char *const *)((const char *)o + endpoint_fields[k].offset);
}

/* The recorded endpoints stay allocated for the life of the process: a
 * command reads them once and points its options at them. */
static json_t *recorded;

int tly_common_endpoints(const char *cmd, tly_common_opts *o)
{
    char path[TLY_PATH_BYTES_MAX];
    if (tly_layout_endpoints(o->data, path, sizeof path) != TLY_OK)
        return tly_usagef(cmd, "--data path too long: %s", o->data);
    if (access(path, F_OK) != 0)
        return TLY_EXIT_OK;
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!json_is_object(j)) {
        tly_errorf(cmd, "%s: not the endpoints file 'tally up' writes: %s", path,
                   tly_json_load_why(j, &jerr));
        json_decref(j);
        return TLY_EXIT_FAIL;
    }
    json_decref(recorded);
    recorded = j;
    for (size_t k = 0; k < sizeof endpoint_fields / sizeof endpoint_fields[0]; k++) {
        const char *ep = json_string_value(json_object_get(j, endpoint_fields[k].key));
        if (ep && !(o->given & endpoint_fields[k].bit)) {
            *endpoint_slot(o, k) = ep;
            o->endpoints_recorded = true;
        }
    }
    return TLY_EXIT_OK;
}

/* Writes text to fd whole; false on error (errno set). */
static bool write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        text += n;
        len -= (size_t)n;
    }
    return true;
}

/* Writes text into path through path.tmp, fsync and rename, then syncs
 * the directory dir. */
static tly_err write_atomic(const char *dir, const char *path, const char *text, char *msg,
                            size_t cap)
{
    char tmp[TLY_PATH_BYTES_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, TLY_FILE_MODE);
    bool ok = fd >= 0 && write_all(fd, text, strlen(text)) && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        snprintf(msg, cap, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return TLY_STORAGE;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return TLY_OK;
}

/* Adds extra's entries to j (the file's object). */
static void add_extra(json_t *j, const tly_endpoint_extra *extra, size_t n)
{
    for (size_t k = 0; j && k < n; k++) {
        json_t *into = j;
        if (extra[k].group) {
            into = json_object_get(j, extra[k].group);
            if (!into) {
                into = json_object();
                json_object_set_new(j, extra[k].group, into);
            }
        }
        json_object_set_new(into, extra[k].key, json_string(extra[k].value));
    }
}

tly_err tly_endpoints_write(const tly_common_opts *o, char *msg, size_t cap)
{
    return tly_endpoints_write_extra(o, NULL, 0, msg, cap);
}

tly_err tly_endpoints_write_extra(const tly_common_opts *o, const tly_endpoint_extra *extra,
                                  size_t n_extra, char *msg, size_t cap)
{
    char path[TLY_PATH_BYTES_MAX];
    if (tly_layout_endpoints(o->data, path, sizeof path) != TLY_OK) {
        snprintf(msg, cap, "data directory path too long: %s", o->data);
        return TLY_USAGE;
    }
    json_t *j = json_object();
    for (size_t k = 0; j && k < sizeof endpoint_fields / sizeof endpoint_fields[0]; k++)
        json_object_set_new(j, endpoint_fields[k].key, json_string(endpoint_of(o, k)));
    if (j && o->web)
        json_object_set_new(j, "web", json_string(o->web));
    add_extra(j, extra, n_extra);
    if (j)
        json_object_set_new(j, "pid", json_integer((json_int_t)getpid()));
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        snprintf(msg, cap, "out of memory");
        return TLY_NOMEM;
    }
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line) {
        text = line;
        memcpy(text + n, "\n", 2);
    }
    tly_err err = write_atomic(o->data, path, text, msg, cap);
    free(text);
    return err;
}
