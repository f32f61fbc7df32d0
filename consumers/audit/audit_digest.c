/*
 * audit_digest.c — one SHA-256 per view family over the canonical encoding
 * of schemas/DIGEST.md:
 *
 *   digest(family) = SHA-256 of the concatenation, over the family's items
 *                    in canonical order (audit_views.h), of
 *                    u32be(len(id)) ‖ id ‖ u32be(len(doc)) ‖ doc
 *
 * Nothing in it depends on the shard count, the directory or the machine,
 * so digests of two view sets compare byte for byte.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_int.h"
#include "audit_views.h"
#include "tly_audit.h"
#include "tly_json.h"
#include "tly_limits.h"

static const char *const family_names[TLY_AUDIT_FAMILY_COUNT] = {
    "mdf", "rebates", "tiers", "claims", "liabilities", "exceptions",
};

const char *tly_audit_family_name(tly_audit_family f)
{
    return (unsigned)f < TLY_AUDIT_FAMILY_COUNT ? family_names[f] : "unknown";
}

/* Feeds one item's framing and bytes to the hash. */
static bool hash_item(EVP_MD_CTX *md, const tly_audit_item *it)
{
    uint8_t len[4];
    tly_audit_put_be32(len, (uint32_t)it->id_len);
    if (!EVP_DigestUpdate(md, len, 4) || !EVP_DigestUpdate(md, it->id, it->id_len))
        return false;
    tly_audit_put_be32(len, (uint32_t)it->doc_len);
    return EVP_DigestUpdate(md, len, 4) && EVP_DigestUpdate(md, it->doc, it->doc_len);
}

/* Hashes every item of one family. */
static tly_err digest_family(tly_audit_viewset *vs, tly_audit_family f, EVP_MD_CTX *md,
                             uint8_t out[TLY_HASH_BYTES], char *msg, size_t cap)
{
    tly_audit_stream *s;
    tly_err err = tly_audit_stream_open(vs, f, &s);
    if (err != TLY_OK)
        return err;
    if (!EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        err = TLY_NOMEM;
    tly_audit_item it;
    while (err == TLY_OK && (err = tly_audit_stream_next(s, &it, msg, cap)) == TLY_OK)
        if (!hash_item(md, &it))
            err = TLY_NOMEM;
    tly_audit_stream_close(s);
    if (err != TLY_NOT_FOUND)
        return err;
    unsigned int n = 0;
    return EVP_DigestFinal_ex(md, out, &n) && n == TLY_HASH_BYTES ? TLY_OK : TLY_NOMEM;
}

/* The families are digested in parallel, each by one thread with a view
 * set of its own (a twin of the first, at the same snapshots): a family is
 * one hash over its items in order, so it cannot be split, but families
 * are independent. A thread takes the next family not yet taken. */
typedef struct digest_run {
    tly_audit_viewset *vs[TLY_AUDIT_DIGEST_THREADS_MAX];
    _Atomic int next; /* the next family to take */
    tly_err err[TLY_AUDIT_FAMILY_COUNT];
    char msg[TLY_AUDIT_FAMILY_COUNT][TLY_AUDIT_ERROR_BYTES];
    uint8_t sha[TLY_AUDIT_FAMILY_COUNT][TLY_HASH_BYTES];
} digest_run;

typedef struct digest_thread {
    digest_run *run;
    tly_audit_viewset *vs;
} digest_thread;

static void *digest_main(void *arg)
{
    digest_thread *t = arg;
    digest_run *r = t->run;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    for (int f; (f = atomic_fetch_add(&r->next, 1)) < TLY_AUDIT_FAMILY_COUNT;)
        r->err[f] = md ? digest_family(t->vs, (tly_audit_family)f, md, r->sha[f], r->msg[f],
                                       sizeof r->msg[f])
                       : TLY_NOMEM;
    EVP_MD_CTX_free(md);
    return NULL;
}

/* Threads to digest with: one per online CPU, at most
 * TLY_AUDIT_DIGEST_THREADS_MAX, at least one. */
static uint32_t digest_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1
                    : (uint32_t)(cpus < (long)TLY_AUDIT_DIGEST_THREADS_MAX
                                     ? cpus
                                     : TLY_AUDIT_DIGEST_THREADS_MAX);
}

/* Digests an open view set. The result and the error reported are those
 * of the families in order, whatever thread met them: the first family
 * that failed names the error. */
static tly_err digest_set(tly_audit_viewset *vs, tly_audit_digest *out, char *msg, size_t cap)
{
    digest_run *r = calloc(1, sizeof *r);
    if (!r)
        return TLY_NOMEM;
    tly_audit_digest d = {.shard_count = tly_audit_viewset_shards(vs)};
    d.seq = UINT64_MAX;
    for (uint32_t k = 0; k < d.shard_count; k++) {
        uint64_t c = tly_audit_viewset_checkpoint(vs, k);
        d.seq = c < d.seq ? c : d.seq;
        d.seq_max = c > d.seq_max ? c : d.seq_max;
    }
    /* Fewer threads when a twin cannot be had (a store moved on since vs
     * was opened): the families are the same either way. */
    uint32_t n = 1, want = digest_threads();
    r->vs[0] = vs;
    while (n < want && tly_audit_viewset_twin(vs, &r->vs[n]) == TLY_OK)
        n++;
    digest_thread t[TLY_AUDIT_DIGEST_THREADS_MAX];
    pthread_t tid[TLY_AUDIT_DIGEST_THREADS_MAX];
    bool started[TLY_AUDIT_DIGEST_THREADS_MAX] = {false};
    for (uint32_t i = 0; i < n; i++)
        t[i] = (digest_thread){r, r->vs[i]};
    for (uint32_t i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, digest_main, &t[i]) == 0;
    digest_main(&t[0]); /* takes whatever a thread that did not start leaves */
    for (uint32_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        tly_audit_viewset_close(r->vs[i]);
    }
    tly_err err = TLY_OK;
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT && err == TLY_OK; f++) {
        err = r->err[f];
        memcpy(d.sha[f], r->sha[f], TLY_HASH_BYTES);
        if (err != TLY_OK && msg && cap)
            tly_audit_msgf(msg, cap, "%s", r->msg[f]);
    }
    free(r);
    if (err == TLY_OK)
        *out = d;
    return err;
}

tly_err tly_audit_digest_views(const char *views_dir, tly_audit_digest *out, char *msg, size_t cap)
{
    tly_audit_viewset *vs;
    tly_err err = tly_audit_viewset_open(views_dir, &vs, msg, cap);
    if (err != TLY_OK)
        return err;
    err = digest_set(vs, out, msg, cap);
    tly_audit_viewset_close(vs);
    return err;
}

void tly_audit_digest_print(const tly_audit_digest *d, FILE *out)
{
    fprintf(out, "seq %llu\n", (unsigned long long)d->seq);
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT; f++) {
        char hex[2 * TLY_HASH_BYTES + 1];
        tly_hex_encode(d->sha[f], TLY_HASH_BYTES, hex);
        fprintf(out, "%s %s\n", family_names[f], hex);
    }
}
