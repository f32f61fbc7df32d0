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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The families are digested in parallel (tly_audit_each_family): a
 * family's digest is one hash over its items in order, but families are
 * independent. */
typedef struct digest_run {
    char msg[TLY_AUDIT_FAMILY_COUNT][TLY_AUDIT_ERROR_BYTES];
    uint8_t sha[TLY_AUDIT_FAMILY_COUNT][TLY_HASH_BYTES];
} digest_run;

static tly_err digest_one(void *ctx, tly_audit_family f, tly_audit_viewset *const *sets)
{
    digest_run *r = ctx;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    tly_err err =
        md ? digest_family(sets[0], f, md, r->sha[f], r->msg[f], sizeof r->msg[f]) : TLY_NOMEM;
    EVP_MD_CTX_free(md);
    return err;
}

/* Digests an open view set. The error reported is that of the first
 * family in order that failed, whatever thread met it. */
static tly_err digest_set(tly_audit_viewset *vs, tly_audit_digest *out, char *msg, size_t cap)
{
    digest_run *r = calloc(1, sizeof *r);
    if (!r)
        return TLY_NOMEM;
    tly_audit_digest d = {.shard_count = tly_audit_viewset_shards(vs)};
    tly_audit_viewset_seqs(vs, &d.seq, &d.seq_max);
    tly_err errs[TLY_AUDIT_FAMILY_COUNT], err = TLY_OK;
    tly_audit_each_family(&vs, 1, digest_one, r, errs);
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT && err == TLY_OK; f++) {
        err = errs[f];
        memcpy(d.sha[f], r->sha[f], TLY_HASH_BYTES);
        if (err != TLY_OK)
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
