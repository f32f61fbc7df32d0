/* tly_os.c — the operating-system edge shared by every room; see tly_os.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tly_os.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <pthread.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tly_limits.h"

tly_err tly_mkdirs(const char *dir, size_t *failed_len)
{
    char path[TLY_PATH_BYTES_MAX + 1];
    size_t len = strlen(dir);
    if (len == 0 || len > TLY_PATH_BYTES_MAX)
        return TLY_USAGE;
    memcpy(path, dir, len + 1);
    /* Each prefix ending before a '/' (past the first byte, so "/" itself is
     * not tried alone), then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, TLY_DIR_MODE) != 0 && errno != EEXIST) {
            if (failed_len)
                *failed_len = i;
            return TLY_STORAGE;
        }
        path[i] = c;
    }
    return TLY_OK;
}

static bool log_daemon;

void tly_log_daemon(void)
{
    log_daemon = true;
}

bool tly_colour_enabled(int fd)
{
    return getenv("NO_COLOR") == NULL && isatty(fd) == 1;
}

/* "2026-05-01T09:30:12.345Z " into buf (at least 32 bytes). */
static void log_stamp(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ ", ts.tv_nsec / 1000000L);
}

static void vlogf(tly_log_level level, const char *cmd, const char *fmt, va_list ap)
{
    static const char *const names[] = {"ERROR", "WARN ", "INFO "};
    static const char *const colours[] = {"\033[31m", "\033[33m", ""};
    char line[TLY_LOG_LINE_BYTES_MAX];
    size_t n = 0;
    if (log_daemon) {
        bool colour = tly_colour_enabled(STDERR_FILENO) && colours[level][0];
        log_stamp(line, sizeof line);
        n = strlen(line);
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s%s ", colour ? colours[level] : "",
                              names[level], colour ? "\033[0m" : "");
    }
    n += (size_t)snprintf(line + n, sizeof line - n, cmd ? "tally %s: " : "tally: %s",
                          cmd ? cmd : "");
    if (n < sizeof line - 1) {
        int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
        n = m < 0 ? n : n + (size_t)m;
    }
    n = n < sizeof line - 1 ? n : sizeof line - 2; /* a longer message is cut */
    line[n++] = '\n';
    fflush(stderr);
    (void)!write(STDERR_FILENO, line, n);
}

void tly_logf(tly_log_level level, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogf(level, cmd, fmt, ap);
    va_end(ap);
}

void tly_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogf(TLY_LOG_ERROR, cmd, fmt, ap);
    va_end(ap);
}

static bool progress_drawn;
static uint64_t progress_last_ns;

bool tly_progress_enabled(void)
{
    return isatty(STDERR_FILENO) != 0;
}

void tly_progress(const char *label, uint64_t done, uint64_t total)
{
    if (!tly_progress_enabled())
        return;
    uint64_t now = tly_mono_ns();
    if (progress_drawn && now - progress_last_ns < 100000000ull && done != total)
        return;
    progress_last_ns = now;
    progress_drawn = true;
    if (total > 0) {
        unsigned pct = (unsigned)(done * 100 / total);
        char bar[31];
        unsigned fill = pct * 30 / 100;
        for (unsigned k = 0; k < 30; k++)
            bar[k] = k < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3u%% %llu/%llu", label, bar, pct, (unsigned long long)done,
                (unsigned long long)total);
    } else {
        fprintf(stderr, "\r%s %llu", label, (unsigned long long)done);
    }
    fflush(stderr);
}

void tly_progress_end(void)
{
    if (progress_drawn) {
        fputc('\n', stderr);
        progress_drawn = false;
    }
}

int64_t tly_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tly_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec tly_deadline_in(clockid_t clk, int ms)
{
    struct timespec dl;
    clock_gettime(clk, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

bool tly_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = (uint64_t)v;
    return true;
}

void tly_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Names of the overrides whose value was refused, each said once: a store
 * reads its override at every reopening (each commit), and an operator
 * needs one line, not one a batch. Only the first TLY_ENV_WARNED_MAX
 * names are remembered; a process reads fewer. */
#define TLY_ENV_WARNED_MAX 16u
static pthread_mutex_t env_warned_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *env_warned[TLY_ENV_WARNED_MAX];
static uint32_t env_warned_count;

static bool env_warn_first(const char *name)
{
    bool first = true;
    pthread_mutex_lock(&env_warned_mu);
    for (uint32_t i = 0; i < env_warned_count && first; i++)
        first = strcmp(env_warned[i], name) != 0;
    if (first && env_warned_count < TLY_ENV_WARNED_MAX)
        env_warned[env_warned_count++] = name;
    pthread_mutex_unlock(&env_warned_mu);
    return first;
}

uint64_t tly_env_u64(const char *name, uint64_t min, uint64_t max, uint64_t dflt)
{
    const char *s = getenv(name);
    uint64_t v;
    if (tly_parse_u64(s, min, max, &v))
        return v;
    if (s != NULL && *s != '\0' && env_warn_first(name))
        tly_logf(TLY_LOG_WARN, NULL,
                 "ignoring $%s=%.40s: not a whole number in %" PRIu64 "..%" PRIu64
                 "; using the default",
                 name, s, min, max);
    return dflt;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tly_rmtree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Lines of /proc/self/maps looked at, at most: a process of Tally has a few
 * hundred mappings. */
#define OS_MAPS_LINES_MAX 65536u

/* The hex number at *p (at most 16 digits), *p moved past it; false when
 * there is none. */
static bool maps_hex(const char **p, uintptr_t *out)
{
    uintptr_t v = 0;
    int n = 0;
    for (;; n++, (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0 || n == 16)
            break;
        v = v << 4 | (uintptr_t)d;
    }
    *out = v;
    return n > 0 && n <= 16;
}

/* Finds the mapping holding addr: its bounds and whether it is r--s. The
 * lines ("start-end perms ...") come in address order, so the search stops
 * at the first that starts beyond addr; parsed by hand, as a process that
 * links Tally's libraries has hundreds of them and sscanf cost more than
 * the release saved. */
static bool find_mapping(uintptr_t a, uintptr_t *lo, uintptr_t *hi, bool *ro_shared)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return false;
    char line[512];
    bool found = false, at_start = true; /* of a line: a long path comes in pieces */
    for (unsigned n = 0; n < OS_MAPS_LINES_MAX && fgets(line, sizeof line, f); n++) {
        const char *p = line;
        uintptr_t start, end;
        bool whole = at_start;
        at_start = strchr(line, '\n') != NULL;
        if (!whole || !maps_hex(&p, &start) || *p++ != '-' || !maps_hex(&p, &end) || *p++ != ' ')
            continue;
        if (a < start)
            break;
        if (a >= end)
            continue;
        *lo = start;
        *hi = end;
        *ro_shared = strncmp(p, "r--s", 4) == 0;
        found = true;
        break;
    }
    fclose(f);
    return found;
}

void tly_os_release_zero_pages(void *addr, size_t len)
{
    long page = sysconf(_SC_PAGESIZE); /* once a flush: no cached copy to share */
    if (page <= 0)
        return;
    uintptr_t ps = (uintptr_t)page, a = (uintptr_t)addr;
    uintptr_t lo = (a + ps - 1) / ps * ps, hi = (a + len) / ps * ps;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void tly_os_release_free_heap(void)
{
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}

bool tly_os_anon_resident(uint64_t *bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return false;
    unsigned long long size, resident, shared;
    bool ok = fscanf(f, "%llu %llu %llu", &size, &resident, &shared) == 3 && page > 0 &&
              shared <= resident;
    fclose(f);
    if (ok)
        *bytes = (uint64_t)(resident - shared) * (uint64_t)page;
    return ok;
}

bool tly_os_release_file_map(const void *addr)
{
    uintptr_t lo, hi;
    bool ro_shared;
    if (!addr || !find_mapping((uintptr_t)addr, &lo, &hi, &ro_shared) || !ro_shared)
        return false;
    return madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0;
}

bool tly_os_same_file(const char *path, int fd)
{
    struct stat a, b;
    return fd >= 0 && fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}
