/* audit_util.c — LMDB and byte helpers shared by the audit; see audit_int.h. */
#include "audit_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"

tly_err tly_audit_lmdb_err(int rc, const char *what)
{
    if (rc == MDB_NOTFOUND)
        return TLY_NOT_FOUND;
    fprintf(stderr, "tally audit: %s: %s\n", what, mdb_strerror(rc));
    return rc == ENOMEM ? TLY_NOMEM : TLY_STORAGE;
}

tly_err tly_audit_env_open(const char *dir, unsigned maxdbs, MDB_env **out)
{
    char path[TLY_PATH_BYTES_MAX + 16];
    struct stat st;
    if (tly_layout_join(dir, TLY_LAYOUT_LMDB_DATA, path, sizeof path) != TLY_OK)
        return TLY_NOT_FOUND;
    /* Check first: a read-only open must never leave an empty environment
     * behind in a mistyped directory. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return TLY_NOT_FOUND;
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, maxdbs);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(env, TLY_LOG_READERS_MAX);
    if (rc == 0)
        /* MDB_NOTLS: a read transaction is not tied to the thread that
         * began it, so one thread can begin a twin's for another
         * (tly_audit_viewset_twin). */
        rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, TLY_FILE_MODE);
    if (rc != 0) {
        mdb_env_close(env);
        return tly_audit_lmdb_err(rc, dir);
    }
    *out = env;
    return TLY_OK;
}

tly_err tly_audit_txn_begin(MDB_env *env, MDB_txn **out)
{
    int rc = 0;
    for (unsigned i = 0; i <= TLY_LOG_RESIZE_RETRIES_MAX; i++) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, out);
        if (rc != MDB_MAP_RESIZED)
            break;
        /* The writer grew the map: adopt the new size and try again. */
        rc = mdb_env_set_mapsize(env, 0);
        if (rc != 0)
            break;
        rc = MDB_MAP_RESIZED;
    }
    return rc == 0 ? TLY_OK : tly_audit_lmdb_err(rc, "read transaction");
}

uint32_t tly_audit_get_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

void tly_audit_put_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

void tly_audit_msgf(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}
