/*
 * tly_layout.c — the data directory's layout (tly_layout.h).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tly_layout.h"
#include "tly_limits.h"

__attribute__((format(printf, 3, 4))) static tly_err fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, cap, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return TLY_USAGE;
    }
    return TLY_OK;
}

/* An empty directory: joined, the path would be at the root of the file
 * system ("/log", "/0-of-1"), never what was meant. TLY_USAGE, buf "". */
static tly_err refuse_empty(char *buf, size_t cap)
{
    if (cap > 0)
        buf[0] = '\0';
    return TLY_USAGE;
}

tly_err tly_layout_join(const char *dir, const char *name, char *buf, size_t cap)
{
    if (dir[0] == '\0')
        return refuse_empty(buf, cap);
    return fmt(buf, cap, "%s/%s", dir, name);
}

tly_err tly_layout_log(const char *data, char *buf, size_t cap)
{
    return tly_layout_join(data, TLY_LAYOUT_LOG, buf, cap);
}

tly_err tly_layout_views(const char *data, char *buf, size_t cap)
{
    return tly_layout_join(data, TLY_LAYOUT_VIEWS, buf, cap);
}

tly_err tly_layout_pid(const char *data, char *buf, size_t cap)
{
    return tly_layout_join(data, TLY_LAYOUT_PID, buf, cap);
}

tly_err tly_layout_endpoints(const char *data, char *buf, size_t cap)
{
    return tly_layout_join(data, TLY_LAYOUT_ENDPOINTS, buf, cap);
}

tly_err tly_layout_shard(const char *views_dir, uint32_t k, uint32_t n, char *buf, size_t cap)
{
    if (views_dir[0] == '\0')
        return refuse_empty(buf, cap);
    return fmt(buf, cap, "%s/%u-of-%u", views_dir, k, n);
}

tly_err tly_layout_shard_name(uint32_t k, uint32_t n, char *buf, size_t cap)
{
    return fmt(buf, cap, "%u-of-%u", k, n);
}

tly_err tly_layout_each_shard(const char *views_dir, uint32_t max,
                              bool (*visit)(void *ctx, uint32_t k, uint32_t n), void *ctx,
                              uint32_t *entries)
{
    DIR *d = opendir(views_dir);
    if (!d)
        return TLY_NOT_FOUND;
    tly_err err = TLY_OK;
    uint32_t seen = 0;
    bool go = true;
    struct dirent *e;
    while (go && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (seen == max) {
            err = TLY_TOO_LARGE;
            seen = max + 1;
            break;
        }
        seen++;
        uint32_t k, n;
        if (tly_layout_shard_parse(e->d_name, &k, &n))
            go = visit(ctx, k, n);
    }
    closedir(d);
    if (entries)
        *entries = seen;
    return err;
}

bool tly_layout_shard_parse(const char *name, uint32_t *k, uint32_t *n)
{
    unsigned a, b;
    char tail, again[32];
    if (name[0] < '0' || name[0] > '9' || sscanf(name, "%u-of-%u%c", &a, &b, &tail) != 2)
        return false;
    /* Printing the numbers back rules out leading zeros and signs. */
    if (fmt(again, sizeof again, "%u-of-%u", a, b) != TLY_OK || strcmp(again, name) != 0)
        return false;
    if (b < 1 || b > TLY_SHARDS_MAX || a >= b)
        return false;
    *k = a;
    *n = b;
    return true;
}

tly_err tly_layout_asof(const char *data, char *buf, size_t cap)
{
    return tly_layout_join(data, TLY_LAYOUT_ASOF, buf, cap);
}

tly_err tly_layout_asof_index(const char *data, char *buf, size_t cap)
{
    return fmt(buf, cap, "%s/%s/%s", data, TLY_LAYOUT_ASOF, TLY_LAYOUT_ASOF_INDEX);
}

tly_err tly_layout_asof_views(const char *data, uint64_t seq, char *buf, size_t cap)
{
    return fmt(buf, cap, "%s/%s/seq-%llu", data, TLY_LAYOUT_ASOF, (unsigned long long)seq);
}

tly_err tly_layout_asof_build(const char *data, uint64_t seq, long pid, char *buf, size_t cap)
{
    return fmt(buf, cap, "%s/%s/build-%llu-%ld", data, TLY_LAYOUT_ASOF, (unsigned long long)seq,
               pid);
}
