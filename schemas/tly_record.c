/*
 * tly_record.c — the stored record: its MessagePack encoding, its strict
 * decoding and the chain hash (SPEC section 3).
 */

/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but
 * EVP needs a heap context per digest (or a shared one, which a stateless
 * function cannot own), and the writer hashes every event. The low-level
 * calls hash on a stack context, without allocation, and are what the team
 * rules name as allowed. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <openssl/sha.h>
#include <string.h>

#include "tly_assert.h"
#include "tly_be.h"
#include "tly_limits.h"
#include "tly_mp.h"
#include "tly_record.h"

_Static_assert(SHA256_DIGEST_LENGTH == TLY_HASH_BYTES, "the chain hash is SHA-256");

void tly_chain_hash(const uint8_t prev[TLY_HASH_BYTES], uint64_t seq, int64_t recorded_ms,
                    tly_str source, const void *event, size_t event_len,
                    uint8_t out[TLY_HASH_BYTES])
{
    TLY_ASSERT(source.len <= UINT16_MAX);
    /* prev ‖ u64be(seq) ‖ u64be(recorded_ms) ‖ u16be(len(source)) */
    uint8_t head[TLY_HASH_BYTES + 8 + 8 + 2];
    memcpy(head, prev, TLY_HASH_BYTES);
    tly_be64_put(head + TLY_HASH_BYTES, seq);
    tly_be64_put(head + TLY_HASH_BYTES + 8, (uint64_t)recorded_ms);
    head[TLY_HASH_BYTES + 16] = (uint8_t)(source.len >> 8);
    head[TLY_HASH_BYTES + 17] = (uint8_t)source.len;

    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, head, sizeof head);
    SHA256_Update(&ctx, source.ptr, source.len);
    SHA256_Update(&ctx, event, event_len);
    SHA256_Final(out, &ctx);
}

tly_err tly_record_encode(msgpack_sbuffer *out, uint64_t seq, int64_t recorded_ms, tly_str source,
                          const void *event, size_t event_len, const uint8_t hash[TLY_HASH_BYTES])
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    /* msgpack-c returns -1 only when the sbuffer cannot grow. */
    int rc = msgpack_pack_array(&pk, 5);
    rc |= msgpack_pack_uint64(&pk, seq);
    rc |= msgpack_pack_int64(&pk, recorded_ms);
    rc |= msgpack_pack_str_with_body(&pk, source.ptr, source.len);
    rc |= msgpack_pack_bin_with_body(&pk, event, event_len);
    rc |= msgpack_pack_bin_with_body(&pk, hash, TLY_HASH_BYTES);
    return rc == 0 ? TLY_OK : TLY_NOMEM;
}

tly_err tly_record_decode(const void *buf, size_t len, tly_record *rec)
{
    tly_mp_reader r;
    tly_mp_init(&r, buf, len);
    uint32_t count, source_len, event_len, hash_len;
    tly_record d = {.raw = buf, .raw_len = len};
    const char *source;
    if (!tly_mp_read_array(&r, &count) || count != 5)
        return TLY_CORRUPT;
    if (!tly_mp_read_uint(&r, &d.seq) || d.seq == 0)
        return TLY_CORRUPT;
    if (!tly_mp_read_int(&r, &d.recorded_ms))
        return TLY_CORRUPT;
    if (!tly_mp_read_str(&r, &source, &source_len) || source_len == 0 ||
        source_len > TLY_SOURCE_BYTES_MAX)
        return TLY_CORRUPT;
    if (!tly_mp_read_bin(&r, &d.event, &event_len))
        return TLY_CORRUPT;
    if (!tly_mp_read_bin(&r, &d.hash, &hash_len) || hash_len != TLY_HASH_BYTES)
        return TLY_CORRUPT;
    if (tly_mp_remaining(&r) != 0)
        return TLY_CORRUPT;
    d.source = (tly_str){source, source_len};
    d.event_len = event_len;
    *rec = d;
    return TLY_OK;
}
