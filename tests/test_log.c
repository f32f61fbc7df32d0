/*
 * test_log.c — the log store (ledger/tly_log.h, SPEC section 3) on real
 * LMDB environments in fresh temp directories.
 *
 * Run without arguments it is the Check suite. `test_log bench [DIR]`
 * instead measures appends (1,000,000 events of about 200 bytes in durable
 * batches of 1,000) and prints the rate; it asserts nothing about time.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_log.h"

#define ID_CAP 80u
#define T0_MS INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

/* ---------------------------------------------------------------------
 * A pool of test items: each owns its id and event bytes. Used in forked
 * children too, where Check calls must not run (they write into Check's
 * message stream even when they pass): failures abort.
 */
static void need(bool ok)
{
    if (!ok)
        abort();
}

typedef struct pool {
    uint32_t n, cap;
    size_t ev_cap;
    tly_log_item *items;
    char *ids;
    uint8_t *evs;
} pool;

static pool *pool_new(uint32_t cap, size_t ev_cap)
{
    pool *p = calloc(1, sizeof *p);
    need(p != NULL);
    p->cap = cap;
    p->ev_cap = ev_cap;
    p->items = calloc(cap, sizeof *p->items);
    p->ids = calloc(cap, ID_CAP);
    p->evs = calloc(cap, ev_cap);
    need(p->items && p->ids && p->evs);
    return p;
}

static void pool_free(pool *p)
{
    free(p->items);
    free(p->ids);
    free(p->evs);
    free(p);
}

/* Adds (source, id) with the event {"id": id, "v": variant, "pad": bin}
 * padded with pad bytes: the same (id, variant, pad) gives the same bytes. */
static tly_log_item *pool_add(pool *p, const char *source, const char *id, int variant, size_t pad)
{
    need(p->n < p->cap);
    char *idb = p->ids + (size_t)p->n * ID_CAP;
    uint8_t *evb = p->evs + (size_t)p->n * p->ev_cap;
    snprintf(idb, ID_CAP, "%s", id);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, idb, strlen(idb));
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, variant);
    msgpack_pack_str_with_body(&pk, "pad", 3);
    msgpack_pack_bin(&pk, pad);
    for (size_t i = 0; i < pad; i++) {
        char c = (char)('a' + (i + (size_t)variant) % 26);
        msgpack_pack_bin_body(&pk, &c, 1);
    }
    need(sb.size <= p->ev_cap);
    memcpy(evb, sb.data, sb.size);
    tly_log_item *it = &p->items[p->n++];
    *it = (tly_log_item){.source = {source, (uint32_t)strlen(source)},
                         .id = {idb, (uint32_t)strlen(idb)},
                         .event = evb,
                         .event_len = sb.size,
                         .err = TLY_OK};
    msgpack_sbuffer_destroy(&sb);
    return it;
}

/* Adds n items "<prefix><k>" for k in [from, from + n). */
static void pool_add_range(pool *p, const char *source, const char *prefix, uint32_t from,
                           uint32_t n, size_t pad)
{
    char id[ID_CAP];
    for (uint32_t k = from; k < from + n; k++) {
        snprintf(id, sizeof id, "%s%u", prefix, k);
        pool_add(p, source, id, 0, pad);
    }
}

static tly_log *open_writer(const char *dir, const tly_log_opts *opts)
{
    tly_log *log = NULL;
    tly_err err = tly_log_open_opts(dir, TLY_LOG_WRITE, opts, &log);
    ck_assert_msg(err == TLY_OK, "open writer: %s", tly_err_name(err));
    return log;
}

static uint64_t head_of(tly_log *log)
{
    uint64_t seq = UINT64_MAX;
    ck_assert_int_eq(tly_log_head(log, &seq, NULL), TLY_OK);
    return seq;
}

/* ---------------------------------------------------------------------
 * The SPEC formula, computed independently of tly_chain_hash: one
 * contiguous buffer through libcrypto's EVP interface.
 */
static void spec_hash(const uint8_t prev[32], uint64_t seq, int64_t recorded_ms, tly_str src,
                      const uint8_t *ev, size_t ev_len, uint8_t out[32])
{
    size_t n = 32 + 8 + 8 + 2 + src.len + ev_len;
    uint8_t *b = malloc(n), *q = b;
    memcpy(q, prev, 32);
    q += 32;
    for (int i = 56; i >= 0; i -= 8)
        *q++ = (uint8_t)(seq >> i);
    for (int i = 56; i >= 0; i -= 8)
        *q++ = (uint8_t)((uint64_t)recorded_ms >> i);
    *q++ = (uint8_t)(src.len >> 8);
    *q++ = (uint8_t)src.len;
    memcpy(q, src.ptr, src.len);
    memcpy(q + src.len, ev, ev_len);
    unsigned int len = 0;
    if (!EVP_Digest(b, n, out, &len, EVP_sha256(), NULL) || len != 32)
        abort();
    free(b);
}

/*
 * Reads the whole log through a handle and checks what `audit verify`
 * would [D14]: seq continuity from 1, the chain (independently recomputed),
 * recorded_ms never decreasing [D12]. With quiet (no writer running) the
 * head must also match the last record. Returns the record count, or -1
 * after printing the first problem. Usable in forked children (no Check
 * calls).
 */
static long scan_handle(tly_log *log, bool quiet)
{
    tly_log_reader *rd;
    tly_err err = tly_log_reader_open(log, 1, &rd);
    if (err != TLY_OK) {
        fprintf(stderr, "scan: reader_open: %s\n", tly_err_name(err));
        return -1;
    }
    uint8_t prev[32] = {0}, h[32];
    int64_t last_ms = INT64_MIN;
    long n = 0;
    tly_record rec;
    while ((err = tly_log_reader_next(rd, &rec)) == TLY_OK) {
        spec_hash(prev, rec.seq, rec.recorded_ms, rec.source, rec.event, rec.event_len, h);
        if (rec.seq != (uint64_t)n + 1 || rec.recorded_ms < last_ms ||
            memcmp(h, rec.hash, 32) != 0) {
            fprintf(stderr, "scan: record %llu breaks the chain\n", (unsigned long long)rec.seq);
            n = -1;
            break;
        }
        memcpy(prev, rec.hash, 32);
        last_ms = rec.recorded_ms;
        n++;
    }
    if (n >= 0 && err != TLY_NOT_FOUND) {
        fprintf(stderr, "scan: reader: %s\n", tly_err_name(err));
        n = -1;
    }
    tly_log_reader_close(rd);
    uint64_t head;
    uint8_t head_hash[32];
    if (n >= 0 && quiet &&
        (tly_log_head(log, &head, head_hash) != TLY_OK || head != (uint64_t)n ||
         memcmp(head_hash, prev, 32) != 0)) {
        fprintf(stderr, "scan: head disagrees with the records\n");
        n = -1;
    }
    return n;
}

/* scan_handle on a fresh READ handle of dir. */
static long scan_log(const char *dir)
{
    tly_log *log;
    tly_err err = tly_log_open(dir, TLY_LOG_READ, &log);
    if (err != TLY_OK) {
        fprintf(stderr, "scan: open: %s\n", tly_err_name(err));
        return -1;
    }
    long n = scan_handle(log, true);
    tly_log_close(log);
    return n;
}

/* Reads record seq through a fresh reader; the caller closes *rd. */
static tly_record read_one(tly_log *log, uint64_t seq, tly_log_reader **rd)
{
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, seq, rd), TLY_OK);
    ck_assert_int_eq(tly_log_reader_next(*rd, &rec), TLY_OK);
    return rec;
}

#define NO_SCAN (-1L)

/* The end of a case: closes the writer, checks that a fresh scan of the log
 * finds `records` records and an intact chain (NO_SCAN: not scanned), frees
 * the pool and removes the directory. */
static void finish(tly_log *log, pool *p, char *dir, long records)
{
    tly_log_close(log);
    if (records != NO_SCAN)
        ck_assert_int_eq(scan_log(dir), records);
    pool_free(p);
    tu_rmtree(dir);
}

static int child_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---------------------------------------------------------------------
 * Head, append, read back, chain.
 */
START_TEST(test_empty_head)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    uint64_t seq = 99;
    uint8_t hash[32], zeros[32] = {0};
    memset(hash, 0xaa, sizeof hash);
    ck_assert_int_eq(tly_log_head(log, &seq, hash), TLY_OK);
    ck_assert_uint_eq(seq, 0);
    ck_assert_mem_eq(hash, zeros, 32);
    ck_assert_uint_eq(tly_log_map_bytes(log), TLY_LOG_MAP_BYTES_INIT);
    tly_log_close(log);

    /* The same through a reader handle, which reads the environment. */
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    memset(hash, 0xaa, sizeof hash);
    seq = 99;
    ck_assert_int_eq(tly_log_head(log, &seq, hash), TLY_OK);
    ck_assert_uint_eq(seq, 0);
    ck_assert_mem_eq(hash, zeros, 32);
    tly_log_reader *rd;
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_NOT_FOUND);
    tly_log_reader_close(rd);
    tly_log_close(log);
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_append_read_back)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 512);
    pool_add(p, "dist-a", "s-1", 0, 10);
    pool_add(p, "dist-a", "s-2", 0, 100);
    pool_add(p, "certs", "c-1", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_int_eq(p->items[i].err, TLY_OK);
        ck_assert_uint_eq(p->items[i].seq, i + 1);
        ck_assert(!p->items[i].dup);
    }
    ck_assert_uint_eq(head_of(log), 3);

    tly_log_reader *rd;
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    for (uint32_t i = 0; i < 3; i++) {
        const tly_log_item *it = &p->items[i];
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        ck_assert_uint_eq(rec.seq, i + 1);
        ck_assert_int_eq(rec.recorded_ms, T0_MS);
        ck_assert_uint_eq(rec.source.len, it->source.len);
        ck_assert_mem_eq(rec.source.ptr, it->source.ptr, it->source.len);
        ck_assert_uint_eq(rec.event_len, it->event_len);
        ck_assert_mem_eq(rec.event, it->event, it->event_len);
        /* raw is the whole stored value and decodes to the same record */
        tly_record again;
        ck_assert_int_eq(tly_record_decode(rec.raw, rec.raw_len, &again), TLY_OK);
        ck_assert_uint_eq(again.seq, rec.seq);
    }
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_NOT_FOUND);
    tly_log_reader_close(rd);

    /* Reading from the middle starts there; past the end finds nothing. */
    rec = read_one(log, 2, &rd);
    ck_assert_uint_eq(rec.seq, 2);
    tly_log_reader_close(rd);
    ck_assert_int_eq(tly_log_reader_open(log, 4, &rd), TLY_OK);
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_NOT_FOUND);
    tly_log_reader_close(rd);

    uint64_t seq = 0;
    ck_assert_int_eq(tly_log_lookup(log, p->items[1].source, p->items[1].id, &seq), TLY_OK);
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(tly_log_lookup(log, p->items[2].source, p->items[1].id, &seq), TLY_NOT_FOUND);
    finish(log, p, dir, 3);
}
END_TEST

/* A log removed under its writer (an operator wiping it while the ledger
 * runs), then made anew at the same path by another writer (another
 * process): every append of the first writer is refused with TLY_STORAGE
 * and lands in neither file, so nothing is acknowledged into a file that
 * is gone. */
START_TEST(test_append_refused_after_log_replaced)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(4, 256);
    pool_add(p, "dist-a", "s-1", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, 1, NULL, 0), TLY_OK);
    char *gone = strdup(dir);
    tu_rmtree(gone);
    pool_add(p, "dist-a", "s-2", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, &p->items[1], 1, NULL, 0), TLY_STORAGE);
    ck_assert_int_eq(p->items[1].err, TLY_STORAGE);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        tly_log *other = NULL;
        _exit(tly_log_open(dir, TLY_LOG_WRITE, &other) == TLY_OK ? 0 : 1);
    }
    ck_assert_int_eq(child_status(pid), 0);
    pool_add(p, "dist-a", "s-3", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, &p->items[2], 1, NULL, 0), TLY_STORAGE);
    ck_assert_int_eq(p->items[2].err, TLY_STORAGE);
    ck_assert_uint_eq(head_of(log), 1);
    finish(log, p, dir, 0);
}
END_TEST

START_TEST(test_chain_hash_matches_spec)
{
    /* A fixed input through both implementations. */
    uint8_t prev[32] = {0}, a[32], b[32];
    const uint8_t ev[] = {0x81, 0xa2, 'i', 'd', 0xa1, 'x'};
    tly_str src = {"dist-a", 6};
    tly_chain_hash(prev, 1, T0_MS, src, ev, sizeof ev, a);
    spec_hash(prev, 1, T0_MS, src, ev, sizeof ev, b);
    ck_assert_mem_eq(a, b, 32);
    /* Every input takes part: change each one in turn. */
    uint8_t c[32];
    tly_chain_hash(a, 1, T0_MS, src, ev, sizeof ev, c);
    ck_assert_mem_ne(a, c, 32);
    tly_chain_hash(prev, 2, T0_MS, src, ev, sizeof ev, c);
    ck_assert_mem_ne(a, c, 32);
    tly_chain_hash(prev, 1, T0_MS + 1, src, ev, sizeof ev, c);
    ck_assert_mem_ne(a, c, 32);
    tly_chain_hash(prev, 1, T0_MS, (tly_str){"dist-b", 6}, ev, sizeof ev, c);
    ck_assert_mem_ne(a, c, 32);
    tly_chain_hash(prev, 1, T0_MS, src, ev, sizeof ev - 1, c);
    ck_assert_mem_ne(a, c, 32);

    /* The stored chain, record by record, against the formula. */
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(64, 512);
    pool_add_range(p, "dist-a", "a-", 0, 20, 50);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    p->n = 0;
    pool_add_range(p, "dist-b", "b-", 0, 30, 200);
    ck_assert_int_eq(tly_log_append(log, T0_MS + 5, p->items, p->n, NULL, 0), TLY_OK);
    uint8_t head_hash[32];
    uint64_t head;
    ck_assert_int_eq(tly_log_head(log, &head, head_hash), TLY_OK);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), 50); /* recomputes every hash */

    /* The first hash is computed from 32 zero bytes. */
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    tly_log_reader *rd;
    tly_record rec = read_one(log, 1, &rd);
    spec_hash(prev, 1, T0_MS, rec.source, rec.event, rec.event_len, b);
    ck_assert_mem_eq(rec.hash, b, 32);
    tly_log_reader_close(rd);
    rec = read_one(log, 50, &rd);
    ck_assert_mem_eq(rec.hash, head_hash, 32);
    tly_log_reader_close(rd);
    finish(log, p, dir, NO_SCAN);
}
END_TEST

START_TEST(test_seq_continuity_and_restart)
{
    char *dir = tu_tmpdir();
    pool *p = pool_new(300, 256);
    uint32_t k = 0;
    uint64_t expect = 1;
    for (int round = 0; round < 3; round++) {
        tly_log *log = open_writer(dir, NULL);
        ck_assert_uint_eq(head_of(log), expect - 1);
        /* Batches of varied sizes, including an empty one. */
        for (uint32_t size = 0; size < 60; size += 17) {
            p->n = 0;
            pool_add_range(p, "src", "e-", k, size, 30);
            k += size;
            ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
            for (uint32_t i = 0; i < size; i++)
                ck_assert_uint_eq(p->items[i].seq, expect++);
            ck_assert_uint_eq(head_of(log), expect - 1);
        }
        tly_log_close(log);
    }
    ck_assert_int_eq(scan_log(dir), (long)(expect - 1));
    pool_free(p);
    tu_rmtree(dir);
}
END_TEST

/* [D12] recorded_ms = max(now, previous recorded_ms), across restarts too. */
START_TEST(test_recorded_ms_monotonic)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 256);
    const int64_t now[] = {T0_MS + 2000, T0_MS + 1000, T0_MS + 3000, T0_MS - 5000};
    const int64_t want[] = {T0_MS + 2000, T0_MS + 2000, T0_MS + 3000, T0_MS + 3000};
    for (int i = 0; i < 4; i++) {
        if (i == 3) { /* the clock goes back while the ledger is down */
            tly_log_close(log);
            log = open_writer(dir, NULL);
        }
        char id[16];
        snprintf(id, sizeof id, "t-%d", i);
        p->n = 0;
        pool_add(p, "src", id, 0, 0);
        ck_assert_int_eq(tly_log_append(log, now[i], p->items, 1, NULL, 0), TLY_OK);
    }
    tly_log_reader *rd;
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        ck_assert_int_eq(rec.recorded_ms, want[i]);
    }
    tly_log_reader_close(rd);
    finish(log, p, dir, 4);
}
END_TEST

/* ---------------------------------------------------------------------
 * Idempotency.
 */
START_TEST(test_dup_and_conflict)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 256);
    pool_add(p, "dist-a", "s-1", 0, 10);
    pool_add(p, "dist-a", "s-2", 0, 10);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, 2, NULL, 0), TLY_OK);
    uint8_t hash_before[32], hash_after[32];
    uint64_t head;

    p->n = 0;
    tly_log_item *same = pool_add(p, "dist-a", "s-2", 0, 10);
    tly_log_item *diff = pool_add(p, "dist-a", "s-1", 1, 10);
    tly_log_item *other_src = pool_add(p, "dist-b", "s-1", 0, 10);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    ck_assert_int_eq(same->err, TLY_OK);
    ck_assert(same->dup);
    ck_assert_uint_eq(same->seq, 2);
    ck_assert_int_eq(diff->err, TLY_CONFLICT);
    ck_assert(!diff->dup);
    /* (source, id) is the key: the same id from another source is new. */
    ck_assert_int_eq(other_src->err, TLY_OK);
    ck_assert(!other_src->dup);
    ck_assert_uint_eq(other_src->seq, 3);
    ck_assert_int_eq(tly_log_head(log, &head, hash_before), TLY_OK);
    ck_assert_uint_eq(head, 3);

    /* A batch of only dups and conflicts appends nothing. */
    p->n = 0;
    pool_add(p, "dist-a", "s-1", 0, 10);
    pool_add(p, "dist-a", "s-2", 7, 10);
    ck_assert_int_eq(tly_log_append(log, T0_MS + 9, p->items, p->n, NULL, 0), TLY_OK);
    ck_assert(p->items[0].dup && p->items[0].seq == 1);
    ck_assert_int_eq(p->items[1].err, TLY_CONFLICT);
    ck_assert_int_eq(tly_log_head(log, &head, hash_after), TLY_OK);
    ck_assert_uint_eq(head, 3);
    ck_assert_mem_eq(hash_before, hash_after, 32);
    finish(log, p, dir, 3);
}
END_TEST

START_TEST(test_dup_within_batch)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 256);
    pool_add(p, "dist-a", "x", 0, 10);
    pool_add(p, "dist-a", "y", 0, 10);
    pool_add(p, "dist-a", "x", 0, 10); /* same bytes: dup of item 0 */
    pool_add(p, "dist-a", "x", 3, 10); /* different bytes: conflict */
    pool_add(p, "dist-a", "y", 0, 10);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    tly_log_item *it = p->items;
    ck_assert(it[0].err == TLY_OK && !it[0].dup && it[0].seq == 1);
    ck_assert(it[1].err == TLY_OK && !it[1].dup && it[1].seq == 2);
    ck_assert(it[2].err == TLY_OK && it[2].dup && it[2].seq == 1);
    ck_assert_int_eq(it[3].err, TLY_CONFLICT);
    ck_assert(it[4].err == TLY_OK && it[4].dup && it[4].seq == 2);
    ck_assert_uint_eq(head_of(log), 2);
    finish(log, p, dir, 2);
}
END_TEST

START_TEST(test_dedupe_survives_restart)
{
    char *dir = tu_tmpdir();
    pool *p = pool_new(600, 256);
    tly_log *log = open_writer(dir, NULL);
    pool_add_range(p, "dist-a", "s-", 0, 500, 20);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    tly_log_close(log);

    log = open_writer(dir, NULL);
    p->n = 0;
    pool_add_range(p, "dist-a", "s-", 250, 300, 20); /* 250 dups, 50 new */
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    for (uint32_t i = 0; i < 300; i++) {
        ck_assert_int_eq(p->items[i].err, TLY_OK);
        ck_assert(p->items[i].dup == (i < 250));
        ck_assert_uint_eq(p->items[i].seq, i < 250 ? 251 + i : 501 + (i - 250));
    }
    ck_assert_uint_eq(head_of(log), 550);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), 550);

    /* The index answers through a reader handle too. */
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    uint64_t seq = 0;
    ck_assert_int_eq(tly_log_lookup(log, p->items[299].source, p->items[299].id, &seq), TLY_OK);
    ck_assert_uint_eq(seq, 550);
    char long_id[TLY_ID_BYTES_MAX + 1];
    memset(long_id, 'x', sizeof long_id);
    ck_assert_int_eq(
        tly_log_lookup(log, p->items[0].source, (tly_str){long_id, sizeof long_id}, &seq),
        TLY_NOT_FOUND);
    ck_assert_uint_eq(seq, 550); /* untouched */
    finish(log, p, dir, NO_SCAN);
}
END_TEST

/* ---------------------------------------------------------------------
 * Atomic groups.
 */
START_TEST(test_atomic_conflict_aborts_group)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 256);
    pool_add(p, "fin", "stored", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, 1, NULL, 0), TLY_OK);

    p->n = 0;
    pool_add(p, "fin", "n1", 0, 0);     /* group 0, atomic */
    pool_add(p, "fin", "stored", 1, 0); /* conflict */
    pool_add(p, "fin", "n2", 0, 0);
    pool_add(p, "fin", "n1", 0, 0); /* group 1: n1 again, must now be new */
    pool_add(p, "fin", "n3", 0, 0);
    const tly_log_group g[] = {{0, 3, true}, {3, 2, false}};
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, g, 2), TLY_OK);
    tly_log_item *it = p->items;
    ck_assert_int_eq(it[0].err, TLY_ATOMIC_ABORTED);
    ck_assert_int_eq(it[1].err, TLY_CONFLICT);
    ck_assert_int_eq(it[2].err, TLY_ATOMIC_ABORTED);
    ck_assert(it[0].seq == 0 && it[2].seq == 0);
    /* The aborted group left no trace: the seqs it held are reused. */
    ck_assert(it[3].err == TLY_OK && !it[3].dup && it[3].seq == 2);
    ck_assert(it[4].err == TLY_OK && !it[4].dup && it[4].seq == 3);
    ck_assert_uint_eq(head_of(log), 3);
    uint64_t seq;
    ck_assert_int_eq(tly_log_lookup(log, it[2].source, it[2].id, &seq), TLY_NOT_FOUND);
    finish(log, p, dir, 3);
}
END_TEST

START_TEST(test_atomic_prefailed_aborts_group)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(8, 256);
    pool_add(p, "fin", "a", 0, 0);
    pool_add(p, "fin", "bad", 0, 0)->err = TLY_BAD_FIELD; /* rejected by validation */
    pool_add(p, "fin", "b", 0, 0);
    pool_add(p, "fin", "c", 0, 0); /* a non-atomic group after it */
    const tly_log_group g[] = {{0, 3, true}, {3, 1, false}};
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, g, 2), TLY_OK);
    ck_assert_int_eq(p->items[0].err, TLY_ATOMIC_ABORTED);
    ck_assert_int_eq(p->items[1].err, TLY_BAD_FIELD);
    ck_assert_int_eq(p->items[2].err, TLY_ATOMIC_ABORTED);
    ck_assert(p->items[3].err == TLY_OK && p->items[3].seq == 1);
    /* Without atomic, the same input appends the valid ones. */
    p->n = 0;
    pool_add(p, "fin", "a", 0, 0);
    pool_add(p, "fin", "bad", 0, 0)->err = TLY_MISSING_FIELD;
    pool_add(p, "fin", "b", 0, 0);
    const tly_log_group g2[] = {{0, 3, false}};
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, g2, 1), TLY_OK);
    ck_assert(p->items[0].err == TLY_OK && p->items[0].seq == 2);
    ck_assert_int_eq(p->items[1].err, TLY_MISSING_FIELD);
    ck_assert(p->items[2].err == TLY_OK && p->items[2].seq == 3);
    finish(log, p, dir, 3);
}
END_TEST

START_TEST(test_atomic_with_dups)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(16, 256);
    pool_add(p, "fin", "old", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, 1, NULL, 0), TLY_OK);

    /* Group 0 (atomic, succeeds): a dup of a stored record, a new item and
     * its in-group copy. Group 1 (atomic, fails): a dup of group 0's item,
     * a new item, its copy and a conflict. */
    p->n = 0;
    pool_add(p, "fin", "old", 0, 0);
    pool_add(p, "fin", "n1", 0, 0);
    pool_add(p, "fin", "n1", 0, 0);
    pool_add(p, "fin", "n1", 0, 0);
    pool_add(p, "fin", "n2", 0, 0);
    pool_add(p, "fin", "n2", 0, 0);
    pool_add(p, "fin", "old", 9, 0);
    const tly_log_group g[] = {{0, 3, true}, {3, 4, true}};
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, g, 2), TLY_OK);
    tly_log_item *it = p->items;
    ck_assert(it[0].err == TLY_OK && it[0].dup && it[0].seq == 1);
    ck_assert(it[1].err == TLY_OK && !it[1].dup && it[1].seq == 2);
    ck_assert(it[2].err == TLY_OK && it[2].dup && it[2].seq == 2);
    /* A dup of an item appended by an earlier group stays a dup. */
    ck_assert(it[3].err == TLY_OK && it[3].dup && it[3].seq == 2);
    ck_assert_int_eq(it[4].err, TLY_ATOMIC_ABORTED);
    /* A dup of an item of its own aborted group is aborted with it. */
    ck_assert_int_eq(it[5].err, TLY_ATOMIC_ABORTED);
    ck_assert(!it[5].dup && it[5].seq == 0);
    ck_assert_int_eq(it[6].err, TLY_CONFLICT);
    ck_assert_uint_eq(head_of(log), 2);
    finish(log, p, dir, 2);
}
END_TEST

/* ---------------------------------------------------------------------
 * Map growth and storage failures.
 */
START_TEST(test_map_growth)
{
    char *dir = tu_tmpdir();
    const tly_log_opts opts = {.map_bytes_init = 1u << 20};
    tly_log *log = open_writer(dir, &opts);
    ck_assert_uint_eq(tly_log_map_bytes(log), 1u << 20);
    pool *p = pool_new(500, 1200);
    /* 4,000 events of about 1 KiB: four times the initial map. */
    for (uint32_t b = 0; b < 8; b++) {
        p->n = 0;
        pool_add_range(p, "src", "g-", b * 500, 500, 1000);
        ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
        ck_assert_uint_eq(p->items[499].seq, (b + 1) * 500);
    }
    ck_assert_uint_ge(tly_log_map_bytes(log), 4u << 20);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), 4000);
    /* Reopened, the environment keeps its grown size. */
    log = open_writer(dir, &opts);
    ck_assert_uint_ge(tly_log_map_bytes(log), 4u << 20);
    ck_assert_uint_eq(head_of(log), 4000);
    finish(log, p, dir, NO_SCAN);
}
END_TEST

/* A map that may not grow past its maximum behaves like a full disk. */
START_TEST(test_map_max_is_storage_error)
{
    char *dir = tu_tmpdir();
    const tly_log_opts small = {.map_bytes_init = 1u << 20, .map_bytes_max = 2u << 20};
    tly_log *log = open_writer(dir, &small);
    pool *p = pool_new(3000, 1200);
    pool_add_range(p, "src", "m-", 0, 100, 1000);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    uint8_t hash0[32], hash1[32];
    uint64_t head;
    ck_assert_int_eq(tly_log_head(log, &head, hash0), TLY_OK);

    p->n = 0;
    pool_add(p, "src", "m-7", 0, 1000); /* a dup of a committed record */
    pool_add_range(p, "src", "big-", 0, 2998, 1000);
    pool_add(p, "src", "big-5", 0, 1000); /* a dup of an item of this batch */
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_STORAGE);
    ck_assert(p->items[0].err == TLY_OK && p->items[0].dup && p->items[0].seq == 8);
    for (uint32_t i = 1; i < p->n; i++)
        ck_assert(p->items[i].err == TLY_STORAGE && p->items[i].seq == 0 && !p->items[i].dup);
    ck_assert_int_eq(tly_log_head(log, &head, hash1), TLY_OK);
    ck_assert_uint_eq(head, 100);
    ck_assert_mem_eq(hash0, hash1, 32);
    ck_assert_uint_eq(tly_log_map_bytes(log), 2u << 20);
    /* The writer goes on: a small batch still fits. */
    uint32_t n_big = p->n;
    pool *q = pool_new(1, 1200);
    pool_add(q, "src", "m-100", 0, 1000);
    ck_assert_int_eq(tly_log_append(log, T0_MS, q->items, 1, NULL, 0), TLY_OK);
    ck_assert_uint_eq(q->items[0].seq, 101);
    pool_free(q);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), 101);

    /* The condition clears (a larger maximum): the same batch goes in. */
    const tly_log_opts large = {.map_bytes_max = 16u << 20};
    log = open_writer(dir, &large);
    for (uint32_t i = 0; i < n_big; i++) {
        p->items[i].err = TLY_OK;
        p->items[i].dup = false;
    }
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, n_big, NULL, 0), TLY_OK);
    ck_assert(p->items[0].dup && p->items[0].seq == 8);
    ck_assert(!p->items[1].dup && p->items[1].seq == 102);
    ck_assert_uint_eq(p->items[n_big - 2].seq, 101 + 2998);
    ck_assert(p->items[n_big - 1].dup && p->items[n_big - 1].seq == 107);
    finish(log, p, dir, 101 + 2998);
}
END_TEST

/* $TALLY_LOG_MAP_MAX_BYTES caps the map when the options do not. */
START_TEST(test_map_max_from_environment)
{
    char *dir = tu_tmpdir();
    setenv("TALLY_LOG_MAP_MAX_BYTES", "1048576", 1);
    tly_log *log = open_writer(dir, NULL);
    unsetenv("TALLY_LOG_MAP_MAX_BYTES");
    ck_assert_uint_eq(tly_log_map_bytes(log), 1u << 20);
    pool *p = pool_new(2000, 1200);
    pool_add_range(p, "src", "e-", 0, 2000, 1000);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_STORAGE);
    ck_assert_uint_eq(head_of(log), 0);
    finish(log, p, dir, NO_SCAN);
}
END_TEST

/*
 * A real write failure: the file may not grow (RLIMIT_FSIZE, SIGXFSZ
 * ignored, so writes fail with EFBIG as on a full disk). Runs in a child so
 * the limit dies with it; the child exits with the number of the first
 * failed check.
 */
static int storage_child(const char *dir)
{
    tly_log *log;
    if (tly_log_open(dir, TLY_LOG_WRITE, &log) != TLY_OK)
        return 1;
    pool *p = pool_new(2001, 1200);
    pool_add_range(p, "src", "ok-", 0, 10, 100);
    if (tly_log_append(log, T0_MS, p->items, p->n, NULL, 0) != TLY_OK)
        return 2;
    uint8_t hash0[32], hash1[32];
    uint64_t head;
    tly_log_head(log, &head, hash0);

    char path[1100];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct rlimit old, lim;
    if (stat(path, &st) != 0 || getrlimit(RLIMIT_FSIZE, &old) != 0)
        return 3;
    lim = (struct rlimit){(rlim_t)st.st_size, old.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
        return 4;

    p->n = 0;
    pool_add(p, "src", "ok-3", 0, 100); /* dup of a committed record */
    pool_add_range(p, "src", "big-", 0, 2000, 1000);
    if (tly_log_append(log, T0_MS + 1, p->items, p->n, NULL, 0) != TLY_STORAGE)
        return 5;
    if (p->items[0].err != TLY_OK || !p->items[0].dup || p->items[0].seq != 4)
        return 6;
    for (uint32_t i = 1; i < p->n; i++)
        if (p->items[i].err != TLY_STORAGE || p->items[i].seq != 0)
            return 7;
    if (tly_log_head(log, &head, hash1) != TLY_OK || head != 10 || memcmp(hash0, hash1, 32))
        return 8;

    /* The disk has room again: the same batch is accepted in full. */
    if (setrlimit(RLIMIT_FSIZE, &old) != 0)
        return 9;
    for (uint32_t i = 0; i < p->n; i++)
        p->items[i].err = TLY_OK;
    if (tly_log_append(log, T0_MS + 1, p->items, p->n, NULL, 0) != TLY_OK)
        return 10;
    if (!p->items[0].dup || p->items[1].seq != 11 || p->items[2000].seq != 2010)
        return 11;
    tly_log_close(log);
    pool_free(p);
    return 0;
}

START_TEST(test_storage_error_full_disk)
{
    char *dir = tu_tmpdir();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(storage_child(dir));
    ck_assert_int_ge(pid, 0);
    ck_assert_int_eq(child_status(pid), 0);
    /* The log verifies end to end: nothing of the failed commit shows. */
    ck_assert_int_eq(scan_log(dir), 2010);
    tu_rmtree(dir);
}
END_TEST

/* ---------------------------------------------------------------------
 * Readers.
 */

/* In a second process, reads the whole log again and again through one
 * READ handle while the parent appends and grows the map (the handle must
 * adopt the new size), until the parent closes the pipe; a last pass must
 * see every record. Exit 0 when every pass verified. */
static int reader_child(const char *dir, int done_fd, long total)
{
    tly_log *log;
    if (tly_log_open(dir, TLY_LOG_READ, &log) != TLY_OK)
        return 1;
    size_t map0 = tly_log_map_bytes(log);
    long last = 0;
    for (;;) {
        struct pollfd pfd = {done_fd, POLLIN, 0};
        bool done = poll(&pfd, 1, 0) > 0; /* readable only at EOF */
        long n = scan_handle(log, done);
        if (n < last)
            return 2; /* a failed pass, or records disappeared */
        last = n;
        if (done)
            break;
    }
    size_t map1 = tly_log_map_bytes(log);
    tly_log_close(log);
    if (last != total)
        return 3;
    return map1 > map0 ? 0 : 4;
}

START_TEST(test_reader_in_other_process)
{
    char *dir = tu_tmpdir();
    const tly_log_opts opts = {.map_bytes_init = 1u << 20};
    tly_log *log = open_writer(dir, &opts);
    pool *p = pool_new(250, 600);
    pool_add_range(p, "src", "r-", 0, 10, 500);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    tly_log_close(log);

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        _exit(reader_child(dir, fds[0], 10 + 40 * 250));
    }
    ck_assert_int_ge(pid, 0);
    close(fds[0]);
    log = open_writer(dir, &opts);
    for (uint32_t b = 0; b < 40; b++) { /* about 5 MB: the map grows 1 -> 8 MiB */
        p->n = 0;
        pool_add_range(p, "src", "w-", b * 250, 250, 500);
        ck_assert_int_eq(tly_log_append(log, T0_MS + b, p->items, p->n, NULL, 0), TLY_OK);
    }
    ck_assert_uint_ge(tly_log_map_bytes(log), 4u << 20);
    tly_log_close(log);
    close(fds[1]);
    ck_assert_int_eq(child_status(pid), 0);
    pool_free(p);
    tu_rmtree(dir);
}
END_TEST

/* READ on a missing directory, or one without a log, finds nothing and
 * creates nothing. */
START_TEST(test_read_missing)
{
    char *dir = tu_tmpdir();
    char path[1100];
    tly_log *log = (tly_log *)0x1;
    snprintf(path, sizeof path, "%s/nope", dir);
    ck_assert_int_eq(tly_log_open(path, TLY_LOG_READ, &log), TLY_NOT_FOUND);
    ck_assert_ptr_eq(log, (tly_log *)0x1); /* untouched on failure */
    struct stat st;
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_NOT_FOUND);
    char *const argv[] = {"rmdir", dir, NULL}; /* succeeds only when empty */
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    free(dir);
}
END_TEST

/* Writes value at key seq in "log" with raw LMDB, as a disk error or an
 * intruder would. */
static void raw_put(const char *dir, uint64_t seq, const void *val, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(seq >> (56 - 8 * i));
    MDB_val k = {8, key}, v = {len, (void *)val};
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "log", 0, &dbi), 0);
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Appends n records to a fresh log at dir. */
static void fill(const char *dir, uint32_t n)
{
    tly_log *log = open_writer(dir, NULL);
    pool *p = pool_new(n, 256);
    pool_add_range(p, "src", "f-", 0, n, 20);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    tly_log_close(log);
    pool_free(p);
}

/* Reads from 1 through a READ handle; expects `good` records, then err. */
static void expect_read(const char *dir, uint32_t good, tly_err err)
{
    tly_log *log;
    tly_log_reader *rd;
    tly_record rec;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    for (uint32_t i = 0; i < good; i++)
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), err);
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), err); /* sticky */
    tly_log_reader_close(rd);
    tly_log_close(log);
}

START_TEST(test_reader_detects_corrupt)
{
    char *dir = tu_tmpdir();
    fill(dir, 3);
    const uint8_t junk[] = {0x93, 0x04, 0x01, 0xc0};
    raw_put(dir, 4, junk, sizeof junk);
    expect_read(dir, 3, TLY_CORRUPT);
    /* The writer checks the head record at open. */
    tly_log *log = (tly_log *)0x1;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_WRITE, &log), TLY_CORRUPT);
    ck_assert_ptr_eq(log, (tly_log *)0x1);
    tu_rmtree(dir);

    /* A well-formed record stored under the wrong key. */
    dir = tu_tmpdir();
    fill(dir, 3);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint8_t h[32] = {0};
    ck_assert_int_eq(tly_record_encode(&sb, 5, T0_MS, (tly_str){"src", 3}, "x", 1, h), TLY_OK);
    raw_put(dir, 4, sb.data, sb.size);
    expect_read(dir, 3, TLY_CORRUPT);
    tu_rmtree(dir);

    /* A gap: seq 4 missing, 5 present. */
    dir = tu_tmpdir();
    fill(dir, 3);
    raw_put(dir, 5, sb.data, sb.size);
    expect_read(dir, 3, TLY_CORRUPT);
    msgpack_sbuffer_destroy(&sb);

    /* A corrupt record in the middle, read from further on, is not seen. */
    tu_rmtree(dir);
    dir = tu_tmpdir();
    fill(dir, 5);
    raw_put(dir, 2, junk, sizeof junk);
    expect_read(dir, 1, TLY_CORRUPT);
    tly_log_reader *rd;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    tly_record rec = read_one(log, 3, &rd);
    ck_assert_uint_eq(rec.seq, 3);
    tly_log_reader_close(rd);
    tly_log_close(log);
    tu_rmtree(dir);
}
END_TEST

/* The raw reader: the same records' stored bytes as the decoding reader
 * gives, seq by seq; a value that does not decode is passed on as stored
 * (its caller publishes the ledger's own records), a gap is corrupt, and
 * that sticks. */
START_TEST(test_reader_raw)
{
    char *dir = tu_tmpdir();
    fill(dir, 3);
    const uint8_t junk[] = {0x93, 0x04, 0x01, 0xc0};
    raw_put(dir, 4, junk, sizeof junk);
    tly_log *log;
    tly_log_reader *rd, *raw_rd;
    tly_record rec;
    uint64_t seq = 0;
    const uint8_t *raw;
    size_t len;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, 2, &rd), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, 2, &raw_rd), TLY_OK);
    for (uint64_t want = 2; want <= 3; want++) {
        ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
        ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_OK);
        ck_assert_uint_eq(seq, want);
        ck_assert_uint_eq(rec.seq, want);
        ck_assert_uint_eq(len, rec.raw_len);
        ck_assert_mem_eq(raw, rec.raw, len);
    }
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_CORRUPT);
    ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_OK);
    ck_assert_uint_eq(seq, 4);
    ck_assert_uint_eq(len, sizeof junk);
    ck_assert_mem_eq(raw, junk, sizeof junk);
    ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_NOT_FOUND);
    tly_log_reader_close(rd);
    tly_log_reader_close(raw_rd);
    tly_log_close(log);
    tu_rmtree(dir);

    /* A gap: seq 4 missing, 5 present. */
    dir = tu_tmpdir();
    fill(dir, 3);
    raw_put(dir, 5, junk, sizeof junk);
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    ck_assert_int_eq(tly_log_reader_open(log, 3, &raw_rd), TLY_OK);
    ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_OK);
    ck_assert_uint_eq(seq, 3);
    ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_CORRUPT);
    ck_assert_int_eq(tly_log_reader_next_raw(raw_rd, &seq, &raw, &len), TLY_CORRUPT); /* sticky */
    tly_log_reader_close(raw_rd);
    tly_log_close(log);
    tu_rmtree(dir);
}
END_TEST

/* ---------------------------------------------------------------------
 * The record format.
 */

/* Packs [seq, ms, source, event, hash] with the given kinds and sizes. */
typedef struct rec_spec {
    int count;       /* array length */
    int64_t seq;     /* packed as int */
    bool source_bin; /* source as bin instead of str */
    uint32_t source_len;
    bool event_str; /* event as str instead of bin */
    uint32_t hash_len;
    bool trailing; /* one extra byte */
} rec_spec;

static tly_err decode_spec(rec_spec s)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char src[200];
    uint8_t hash[64] = {0};
    memset(src, 's', sizeof src);
    msgpack_pack_array(&pk, (size_t)s.count);
    msgpack_pack_int64(&pk, s.seq);
    if (s.count >= 2)
        msgpack_pack_int64(&pk, T0_MS);
    if (s.count >= 3 && s.source_bin)
        msgpack_pack_bin_with_body(&pk, src, s.source_len);
    else if (s.count >= 3)
        msgpack_pack_str_with_body(&pk, src, s.source_len);
    if (s.count >= 4 && s.event_str)
        msgpack_pack_str_with_body(&pk, "ev", 2);
    else if (s.count >= 4)
        msgpack_pack_bin_with_body(&pk, "ev", 2);
    if (s.count >= 5)
        msgpack_pack_bin_with_body(&pk, hash, s.hash_len);
    for (int i = 5; i < s.count; i++)
        msgpack_pack_nil(&pk);
    if (s.trailing)
        msgpack_pack_nil(&pk);
    tly_record rec;
    memset(&rec, 0, sizeof rec);
    tly_err err = tly_record_decode(sb.data, sb.size, &rec);
    if (err == TLY_OK) {
        ck_assert_int_eq(rec.seq, s.seq);
        ck_assert_int_eq(rec.recorded_ms, T0_MS);
        ck_assert_uint_eq(rec.source.len, s.source_len);
        ck_assert_uint_eq(rec.event_len, 2);
        ck_assert_ptr_eq(rec.raw, sb.data);
        ck_assert_uint_eq(rec.raw_len, sb.size);
    } else {
        ck_assert_int_eq(rec.seq, 0); /* untouched on failure */
    }
    msgpack_sbuffer_destroy(&sb);
    return err;
}

START_TEST(test_record_decode_strict)
{
    const rec_spec ok = {5, 7, false, 3, false, 32, false};
    ck_assert_int_eq(decode_spec(ok), TLY_OK);
    rec_spec s = ok;
    s.count = 4;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s.count = 6;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.trailing = true;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.hash_len = 31;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.hash_len = 33;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.source_bin = true;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.event_str = true;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.seq = -1;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.seq = 0;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    /* source length at its edges [D12]: 1..TLY_SOURCE_BYTES_MAX */
    s = ok, s.source_len = 0;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    s = ok, s.source_len = TLY_SOURCE_BYTES_MAX;
    ck_assert_int_eq(decode_spec(s), TLY_OK);
    s = ok, s.source_len = TLY_SOURCE_BYTES_MAX + 1;
    ck_assert_int_eq(decode_spec(s), TLY_CORRUPT);
    /* truncated at every length */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint8_t h[32] = {1};
    ck_assert_int_eq(tly_record_encode(&sb, 1, T0_MS, (tly_str){"s", 1}, "abc", 3, h), TLY_OK);
    tly_record rec;
    for (size_t len = 0; len < sb.size; len++)
        ck_assert_int_eq(tly_record_decode(sb.data, len, &rec), TLY_CORRUPT);
    ck_assert_int_eq(tly_record_decode(sb.data, sb.size, &rec), TLY_OK);
    ck_assert_mem_eq(rec.hash, h, 32);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* ---------------------------------------------------------------------
 * Limits of this module, each at its edge.
 */

/* n items of TLY_FRAME_BYTES_MAX bytes each, sharing one buffer. */
typedef struct big_items {
    uint32_t n;
    uint8_t *buf;
    tly_log_item *items;
    char (*ids)[16];
} big_items;

static big_items big_items_new(size_t n, const char *prefix)
{
    big_items b = {(uint32_t)n, calloc(1, TLY_FRAME_BYTES_MAX), calloc(n, sizeof *b.items),
                   calloc(n, 16)};
    ck_assert(b.buf && b.items && b.ids);
    for (uint32_t i = 0; i < b.n; i++) {
        snprintf(b.ids[i], 16, "%s%u", prefix, i);
        b.items[i] = (tly_log_item){.source = {"s", 1},
                                    .id = {b.ids[i], (uint32_t)strlen(b.ids[i])},
                                    .event = b.buf,
                                    .event_len = TLY_FRAME_BYTES_MAX};
    }
    return b;
}

static void big_items_free(big_items *b)
{
    free(b->buf);
    free(b->items);
    free(b->ids);
}
START_TEST(test_item_limits)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    char src64[TLY_SOURCE_BYTES_MAX + 2], id64[TLY_ID_BYTES_MAX + 2];
    memset(src64, 'S', sizeof src64 - 1);
    memset(id64, 'I', sizeof id64 - 1);
    src64[TLY_SOURCE_BYTES_MAX + 1] = id64[TLY_ID_BYTES_MAX + 1] = '\0';
    pool *p = pool_new(16, 256);
    tly_log_item *it[8];
    it[0] = pool_add(p, "s", "ok", 0, 0);
    it[0]->source.ptr = src64;
    it[0]->source.len = TLY_SOURCE_BYTES_MAX; /* at the limit */
    it[1] = pool_add(p, "s", "ok2", 0, 0);
    it[1]->source.ptr = src64;
    it[1]->source.len = TLY_SOURCE_BYTES_MAX + 1;
    it[2] = pool_add(p, "s", id64, 0, 0);
    it[2]->id.len = TLY_ID_BYTES_MAX;
    it[3] = pool_add(p, "s", id64, 1, 0);
    it[3]->id.len = TLY_ID_BYTES_MAX + 1;
    it[4] = pool_add(p, "", "empty-source", 0, 0);
    it[5] = pool_add(p, "s", "", 0, 0);
    it[6] = pool_add(p, "s", "empty-event", 0, 0);
    it[6]->event_len = 0;
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    ck_assert(it[0]->err == TLY_OK && it[0]->seq == 1);
    ck_assert_int_eq(it[1]->err, TLY_BAD_FIELD);
    ck_assert(it[2]->err == TLY_OK && it[2]->seq == 2);
    ck_assert_int_eq(it[3]->err, TLY_BAD_FIELD);
    ck_assert_int_eq(it[4]->err, TLY_BAD_FIELD);
    ck_assert_int_eq(it[5]->err, TLY_BAD_FIELD);
    ck_assert_int_eq(it[6]->err, TLY_MALFORMED);
    ck_assert_uint_eq(head_of(log), 2);

    /* An event of exactly TLY_FRAME_BYTES_MAX bytes is stored; one more is
     * too large. The bytes need not be an event: the log stores bytes. */
    uint8_t *big = calloc(1, TLY_FRAME_BYTES_MAX + 1);
    ck_assert_ptr_nonnull(big);
    big[0] = 0x80;
    tly_log_item bi[2] = {
        {.source = {"s", 1}, .id = {"big", 3}, .event = big, .event_len = TLY_FRAME_BYTES_MAX},
        {.source = {"s", 1}, .id = {"big2", 4}, .event = big, .event_len = TLY_FRAME_BYTES_MAX + 1},
    };
    ck_assert_int_eq(tly_log_append(log, T0_MS, bi, 2, NULL, 0), TLY_OK);
    ck_assert(bi[0].err == TLY_OK && bi[0].seq == 3);
    ck_assert_int_eq(bi[1].err, TLY_TOO_LARGE);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), 3);
    free(big);
    pool_free(p);
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_batch_limits)
{
    char *dir = tu_tmpdir();
    tly_log *log;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    /* TLY_LOG_BATCH_ITEMS_MAX items: accepted; one more: refused whole. */
    pool *p = pool_new(TLY_LOG_BATCH_ITEMS_MAX + 1, 48);
    pool_add_range(p, "s", "", 0, TLY_LOG_BATCH_ITEMS_MAX + 1, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_TOO_LARGE);
    ck_assert(p->items[0].err == TLY_OK && p->items[0].seq == 0); /* untouched */
    ck_assert_uint_eq(head_of(log), 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, TLY_LOG_BATCH_ITEMS_MAX, NULL, 0),
                     TLY_OK);
    ck_assert_uint_eq(p->items[TLY_LOG_BATCH_ITEMS_MAX - 1].seq, TLY_LOG_BATCH_ITEMS_MAX);

    /* One group of TLY_LOG_COMMIT_BYTES_MAX event bytes: accepted; one more
     * byte: refused whole. Items may share one buffer: only ids differ. */
    big_items bi = big_items_new(TLY_LOG_COMMIT_BYTES_MAX / TLY_FRAME_BYTES_MAX + 1, "big-");
    uint32_t n = bi.n - 1;
    bi.items[n].event_len = 1;
    tly_log_group one = {0, n + 1, false};
    ck_assert_int_eq(tly_log_append(log, T0_MS, bi.items, n + 1, &one, 1), TLY_TOO_LARGE);
    ck_assert(bi.items[0].err == TLY_OK && bi.items[0].seq == 0); /* untouched */
    /* A pre-failed item's bytes do not count. */
    bi.items[n].err = TLY_BAD_FIELD;
    ck_assert_int_eq(tly_log_append(log, T0_MS, bi.items, n + 1, &one, 1), TLY_OK);
    ck_assert_uint_eq(bi.items[n - 1].seq, TLY_LOG_BATCH_ITEMS_MAX + n);
    ck_assert_int_eq(bi.items[n].err, TLY_BAD_FIELD);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(dir), TLY_LOG_BATCH_ITEMS_MAX + n);
    big_items_free(&bi);
    pool_free(p);
    tu_rmtree(dir);
}
END_TEST

/* More than TLY_LOG_COMMIT_BYTES_MAX in one call, in groups: several
 * commits, each of whole groups, one chain. A failure of the second commit
 * leaves the first one appended and reports the rest as storage errors. */
START_TEST(test_commit_split)
{
    for (int fail = 0; fail < 2; fail++) {
        char *dir = tu_tmpdir();
        /* 66 MiB holds the first commit (16 frames) but not the second. */
        const tly_log_opts opts = {.map_bytes_init = 66u << 20, .map_bytes_max = 66u << 20};
        tly_log *log;
        ck_assert_int_eq(
            tly_log_open_opts(dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, fail ? &opts : NULL, &log),
            TLY_OK);
        big_items bi = big_items_new(TLY_LOG_COMMIT_BYTES_MAX / TLY_FRAME_BYTES_MAX + 1, "b-");
        tly_log_group *g = calloc(bi.n, sizeof *g);
        for (uint32_t i = 0; i < bi.n; i++)
            g[i] = (tly_log_group){i, 1, i % 2 == 0};
        tly_err err = tly_log_append(log, T0_MS, bi.items, bi.n, g, bi.n);
        ck_assert_int_eq(err, fail ? TLY_STORAGE : TLY_OK);
        for (uint32_t i = 0; i + 1 < bi.n; i++)
            ck_assert(bi.items[i].err == TLY_OK && bi.items[i].seq == i + 1);
        ck_assert_int_eq(bi.items[bi.n - 1].err, fail ? TLY_STORAGE : TLY_OK);
        ck_assert_uint_eq(bi.items[bi.n - 1].seq, fail ? 0 : bi.n);
        ck_assert_uint_eq(head_of(log), bi.n - (uint32_t)fail);
        tly_log_close(log);
        ck_assert_int_eq(scan_log(dir), bi.n - (uint32_t)fail);
        free(g);
        big_items_free(&bi);
        tu_rmtree(dir);
    }
}
END_TEST

/* TLY_LOG_READERS_MAX read transactions at once; one more fails cleanly. */
START_TEST(test_readers_max)
{
    char *dir = tu_tmpdir();
    fill(dir, 2);
    tly_log *log;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_READ, &log), TLY_OK);
    tly_log_reader *rd[TLY_LOG_READERS_MAX + 1];
    for (uint32_t i = 0; i < TLY_LOG_READERS_MAX; i++)
        ck_assert_int_eq(tly_log_reader_open(log, 1, &rd[i]), TLY_OK);
    tly_log_reader *extra = (tly_log_reader *)0x1;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &extra), TLY_STORAGE);
    ck_assert_ptr_eq(extra, (tly_log_reader *)0x1);
    tly_log_reader_close(rd[0]);
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd[0]), TLY_OK);
    tly_record rec;
    ck_assert_int_eq(tly_log_reader_next(rd[TLY_LOG_READERS_MAX - 1], &rec), TLY_OK);
    for (uint32_t i = 0; i < TLY_LOG_READERS_MAX; i++)
        tly_log_reader_close(rd[i]);
    tly_log_close(log);
    tu_rmtree(dir);
}
END_TEST

/* A process that dies with readers open leaves its slots taken; they are
 * reclaimed (mdb_reader_check) instead of failing every later reader. */
static int die_with_readers(const char *dir)
{
    tly_log *log;
    tly_log_reader *rd;
    if (tly_log_open(dir, TLY_LOG_READ, &log) != TLY_OK)
        return 1;
    for (uint32_t i = 0; i < TLY_LOG_READERS_MAX; i++)
        if (tly_log_reader_open(log, 1, &rd) != TLY_OK)
            return 2;
    return 0; /* exits without closing anything */
}

START_TEST(test_stale_reader_slots_reclaimed)
{
    char *dir = tu_tmpdir();
    fill(dir, 2);
    for (int round = 0; round < 2; round++) {
        /* This process keeps the environment open throughout (a reader
         * handle, then a writer): otherwise the next open would find the
         * lock file unused and reset the reader table itself. */
        tly_log *log;
        ck_assert_int_eq(tly_log_open(dir, round == 0 ? TLY_LOG_READ : TLY_LOG_WRITE, &log),
                         TLY_OK);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            _exit(die_with_readers(dir));
        ck_assert_int_ge(pid, 0);
        ck_assert_int_eq(child_status(pid), 0);
        tly_log_reader *rd[TLY_LOG_READERS_MAX];
        for (uint32_t i = 0; i < TLY_LOG_READERS_MAX; i++)
            ck_assert_int_eq(tly_log_reader_open(log, 1, &rd[i]), TLY_OK);
        for (uint32_t i = 0; i < TLY_LOG_READERS_MAX; i++)
            tly_log_reader_close(rd[i]);
        tly_log_close(log);
    }
    tu_rmtree(dir);
}
END_TEST

/* Growth waits for this process's readers (TLY_LOG_GROW_WAIT_MS), then
 * fails the append as a storage error; after the reader closes it works. */
START_TEST(test_growth_waits_for_open_reader)
{
    char *dir = tu_tmpdir();
    const tly_log_opts opts = {.map_bytes_init = 1u << 20};
    tly_log *log = open_writer(dir, &opts);
    pool *p = pool_new(2000, 1200);
    pool_add_range(p, "s", "x-", 0, 10, 10);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    tly_log_reader *rd;
    tly_record rec = read_one(log, 1, &rd);
    p->n = 0;
    pool_add_range(p, "s", "y-", 0, 2000, 1000);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_STORAGE);
    ck_assert_uint_eq(tly_log_map_bytes(log), 1u << 20);
    /* The snapshot is still readable: the map was not moved under it. */
    ck_assert_uint_eq(rec.seq, 1);
    ck_assert_int_eq(tly_log_reader_next(rd, &rec), TLY_OK);
    ck_assert_uint_eq(rec.seq, 2);
    tly_log_reader_close(rd);
    for (uint32_t i = 0; i < p->n; i++)
        p->items[i].err = TLY_OK;
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, p->n, NULL, 0), TLY_OK);
    ck_assert_uint_eq(head_of(log), 2010);
    finish(log, p, dir, 2010);
}
END_TEST

START_TEST(test_single_writer)
{
    char *dir = tu_tmpdir();
    tly_log *log = open_writer(dir, NULL);
    tly_log *second = (tly_log *)0x1;
    ck_assert_int_eq(tly_log_open(dir, TLY_LOG_WRITE, &second), TLY_UNAVAILABLE);
    ck_assert_ptr_eq(second, (tly_log *)0x1);
    tly_log_close(log);
    log = open_writer(dir, NULL); /* released at close */
    tly_log_close(log);
    tly_log_close(NULL); /* a no-op */
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_writer_creates_parents_and_no_sync)
{
    char *dir = tu_tmpdir();
    char path[1100];
    snprintf(path, sizeof path, "%s/a/b/log", dir);
    tly_log *log;
    ck_assert_int_eq(tly_log_open(path, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    pool *p = pool_new(4, 256);
    pool_add(p, "s", "one", 0, 0);
    ck_assert_int_eq(tly_log_append(log, T0_MS, p->items, 1, NULL, 0), TLY_OK);
    tly_log_close(log);
    ck_assert_int_eq(scan_log(path), 1);
    pool_free(p);
    tu_rmtree(dir);
}
END_TEST

/* ---------------------------------------------------------------------
 * Measurement mode (not run by ctest): `test_log bench [DIR]`.
 */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A realistic sale of about 200 bytes into sb (cleared first). */
static void bench_event(msgpack_sbuffer *sb, const char *id, uint32_t k)
{
    char partner[32], sku[32], notes[80];
    snprintf(partner, sizeof partner, "partner-%06u", k % 5000);
    snprintf(sku, sizeof sku, "SKU-ACME-%07u", k % 100000);
    snprintf(notes, sizeof notes, "POS batch import, store %05u, register %03u", k % 977, k % 13);
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
#define BENCH_STR(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
    BENCH_STR("type"), BENCH_STR("sale");
    BENCH_STR("id"), BENCH_STR(id);
    BENCH_STR("at"), msgpack_pack_int64(&pk, T0_MS + k);
    BENCH_STR("partner"), BENCH_STR(partner);
    BENCH_STR("sku"), BENCH_STR(sku);
    BENCH_STR("qty"), msgpack_pack_int(&pk, 1 + (int)(k % 7));
    BENCH_STR("amount"), msgpack_pack_int64(&pk, 1000 + (int64_t)(k % 100000) * 37);
    BENCH_STR("currency"), BENCH_STR("USD");
    BENCH_STR("notes"), BENCH_STR(notes);
#undef BENCH_STR
}

/* `test_log bench [DIR [BATCH [nosync]]]`: 1,000,000 events in batches of
 * BATCH (default 1,000, at most 4,096), durable unless nosync. */
static int bench(int argc, char **argv)
{
    enum { TOTAL = 1000000, BATCH_MAX = 4096 };
    const char *dir_arg = argc >= 3 && strcmp(argv[2], "-") != 0 ? argv[2] : NULL;
    uint32_t BATCH = argc >= 4 ? (uint32_t)atoi(argv[3]) : 1000;
    bool nosync = argc >= 5 && strcmp(argv[4], "nosync") == 0;
    if (BATCH == 0 || BATCH > BATCH_MAX || TOTAL % BATCH != 0)
        return 2;
    char *tmp = dir_arg ? NULL : tu_tmpdir();
    const char *dir = dir_arg ? dir_arg : tmp;
    tly_log *log;
    if (tly_log_open(dir, TLY_LOG_WRITE | (nosync ? TLY_LOG_NO_SYNC : 0), &log) != TLY_OK)
        return 1;
    static uint8_t evs[BATCH_MAX][256];
    static char ids[BATCH_MAX][32];
    static tly_log_item items[BATCH_MAX];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    size_t bytes = 0;
    double in_append = 0, t0 = now_s();
    for (uint32_t b = 0; b < TOTAL / BATCH; b++) {
        for (uint32_t i = 0; i < BATCH; i++) {
            uint32_t k = b * BATCH + i;
            snprintf(ids[i], sizeof ids[i], "pos-2026-%09u", k); /* increasing, like POS */
            bench_event(&sb, ids[i], k);
            memcpy(evs[i], sb.data, sb.size);
            items[i] = (tly_log_item){.source = {"dist-emea-01", 12},
                                      .id = {ids[i], (uint32_t)strlen(ids[i])},
                                      .event = evs[i],
                                      .event_len = sb.size};
            bytes += sb.size;
        }
        double t1 = now_s();
        if (tly_log_append(log, T0_MS + b, items, BATCH, NULL, 0) != TLY_OK)
            return 2;
        in_append += now_s() - t1;
    }
    double t = now_s() - t0;
    printf("appended %d events of %zu bytes on average in %s batches of %u\n"
           "  wall %.2f s (%.0f events/s); inside tly_log_append %.2f s (%.0f events/s)\n"
           "  map %zu MiB\n",
           TOTAL, bytes / TOTAL, nosync ? "no-sync" : "durable", BATCH, t, TOTAL / t, in_append,
           TOTAL / in_append, tly_log_map_bytes(log) >> 20);
    /* Bytes this process caused to be written to disk (Linux). */
    char *io = tu_read_file("/proc/self/io", NULL);
    const char *wb = io ? strstr(io, "write_bytes: ") : NULL;
    if (wb)
        printf("  disk writes %.0f bytes per event\n", atof(wb + 13) / TOTAL);
    free(io);
    msgpack_sbuffer_destroy(&sb);
    tly_log_close(log);
    tu_rmtree(tmp);
    return 0;
}

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tu_tcase(s, "core", 120);
    tu_add_tests(
        tc,
        TU_TESTS(test_empty_head, test_append_read_back, test_chain_hash_matches_spec,
                 test_seq_continuity_and_restart, test_recorded_ms_monotonic, test_dup_and_conflict,
                 test_dup_within_batch, test_dedupe_survives_restart,
                 test_atomic_conflict_aborts_group, test_atomic_prefailed_aborts_group,
                 test_atomic_with_dups, test_map_growth, test_map_max_is_storage_error,
                 test_map_max_from_environment, test_storage_error_full_disk,
                 test_reader_in_other_process, test_read_missing, test_reader_detects_corrupt,
                 test_reader_raw, test_record_decode_strict, test_item_limits, test_batch_limits,
                 test_commit_split, test_readers_max, test_stale_reader_slots_reclaimed,
                 test_growth_waits_for_open_reader, test_single_writer,
                 test_writer_creates_parents_and_no_sync, test_append_refused_after_log_replaced));
    return s;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "bench") == 0)
        return bench(argc, argv);
    return tu_run_suite(log_suite());
}
