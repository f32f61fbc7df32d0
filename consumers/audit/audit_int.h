/*
 * audit_int.h — helpers shared by the audit_*.c files; not part of the
 * public audit API (tly_audit.h).
 */
#ifndef TLY_AUDIT_INT_H
#define TLY_AUDIT_INT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tly_be.h"
#include "tly_err.h"

/* Opens the LMDB environment in dir read-only, with room for maxdbs named
 * databases: a view store (the log is read through tly_log.h only). A dir
 * without data.mdb is TLY_NOT_FOUND (nothing is created).
 * Returns TLY_OK, TLY_NOT_FOUND or TLY_STORAGE (logged). */
tly_err tly_audit_env_open(const char *dir, unsigned maxdbs, MDB_env **out);

/* Begins a read transaction, adopting a map the writer grew meanwhile
 * (MDB_MAP_RESIZED) a bounded number of times. TLY_OK or TLY_STORAGE. */
tly_err tly_audit_txn_begin(MDB_env *env, MDB_txn **out);

/* Logs an LMDB failure ("tally audit: <what>: <lmdb text>") and maps it:
 * MDB_NOTFOUND to TLY_NOT_FOUND, ENOMEM to TLY_NOMEM, else TLY_STORAGE. */
tly_err tly_audit_lmdb_err(int rc, const char *what);

/* Big-endian integers as the log and view keys store them (be64:
 * tly_be64_get and tly_be64_put). */
uint32_t tly_audit_get_be32(const void *p);
void tly_audit_put_be32(void *p, uint32_t v);

/* Appends a formatted sentence to msg (cap bytes; NULL or 0: no-op). */
void tly_audit_msgf(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
