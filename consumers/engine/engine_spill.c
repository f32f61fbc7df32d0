/*
 * engine_spill.c — a batch's new sales out of the sale cache
 * (engine_state.h, eng_spill_sales).
 *
 * Why: with a sale source every sale of this shard's partners is stored
 * under its seq, and a catch-up registers one per sale record, each held
 * in the cache (a slot, its key block, its map entry: about 280 bytes with
 * the vector's growth room) until the flush writes it. A spilled sale is
 * its stored record (about 60 bytes) and an index entry (16), in a run
 * mapped from the system and unmapped once the flush wrote it. The 1M log
 * of `bench fold` on one shard (10,000 partners) peaked at 102.7 MB
 * against 121.8 MB; at 10M (100,000 partners) the peak stayed where it
 * was, the partners' states being most of a batch's memory there
 * (docs/performance-log.md, the twenty-ninth session).
 *
 * A run holds the spilled sales' index entries by seq ascending, then
 * their records in the order spilled. A sale changed after its spill (a
 * return) is read back into the cache and, changed, is written by the
 * flush after the runs (or spilled again into a newer run): the newest
 * copy wins, in lookups (newest run first) and in the store (written
 * last).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine_state.h"
#include "tly_assert.h"

typedef struct spill_entry {
    uint64_t seq;
    uint32_t off, len; /* the record, from the run's records */
} spill_entry;

struct eng_spill_run {
    size_t map_bytes; /* of the mapping, this head included */
    uint32_t count;
    uint64_t lo, hi; /* seqs of the first and last entry */
    spill_entry ent[];
};

/* The run's records, after its entries. */
static const char *run_records(const eng_spill_run *r)
{
    return (const char *)(r->ent + r->count);
}

static int entry_cmp(const void *a, const void *b)
{
    uint64_t x = ((const spill_entry *)a)->seq, y = ((const spill_entry *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Maps a run for n sales of the largest size each: a page never written
 * never counts in the RSS, so the room the records do not fill costs
 * address space only. */
static eng_spill_run *run_map(uint32_t n, size_t *bytes)
{
    *bytes = sizeof(eng_spill_run) + (size_t)n * (sizeof(spill_entry) + ENG_SALE_RECORD_BYTES_MAX);
    void *m = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void run_unmap(eng_spill_run *r)
{
    (void)munmap(r, r->map_bytes);
}

tly_err eng_spill_sales(tly_engine *e, uint32_t n)
{
    TLY_ASSERT(e->sale_fn != NULL && n <= e->dirty_sale_count);
    if (n > ENG_SPILL_RUN_SALES_MAX)
        n = ENG_SPILL_RUN_SALES_MAX;
    if (n == 0)
        return TLY_OK;
    /* Everything that can fail comes first: after it the spill cannot. */
    if (e->spill_count == e->spill_cap && eng_grow((void **)&e->spills, &e->spill_cap,
                                                   e->spill_count + 1, sizeof *e->spills) != TLY_OK)
        return TLY_NOMEM;
    if (e->spill_buf.cap < ENG_SALE_RECORD_BYTES_MAX) {
        char *d = realloc(e->spill_buf.data, ENG_SALE_RECORD_BYTES_MAX);
        if (d == NULL)
            return TLY_NOMEM;
        e->spill_buf.data = d;
        e->spill_buf.cap = ENG_SALE_RECORD_BYTES_MAX;
    }
    size_t bytes;
    eng_spill_run *r = run_map(n, &bytes);
    if (r == NULL)
        return TLY_NOMEM;
    r->count = n;
    char *rec = (char *)(r->ent + n);
    uint32_t off = 0;
    bool sorted = true;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = e->dirty_sales[i];
        eng_sale *sale = &e->sales[s];
        bool packed = eng_pack_sale(&e->spill_buf, sale); /* its buffer is large enough */
        TLY_ASSERT(packed);
        memcpy(rec + off, e->spill_buf.data, e->spill_buf.len);
        r->ent[i] = (spill_entry){sale->seq, off, (uint32_t)e->spill_buf.len};
        sorted = sorted && (i == 0 || r->ent[i - 1].seq < sale->seq);
        off += (uint32_t)e->spill_buf.len;
        sale->dirty = false;
        eng_sale_drop(e, s);
    }
    if (!sorted)
        qsort(r->ent, n, sizeof *r->ent, entry_cmp);
    r->lo = r->ent[0].seq;
    r->hi = r->ent[n - 1].seq;
    r->map_bytes = bytes; /* its pages past the records were never touched */
    e->spills[e->spill_count++] = r;
    e->spilled += n;
    memmove(e->dirty_sales, e->dirty_sales + n,
            (size_t)(e->dirty_sale_count - n) * sizeof *e->dirty_sales);
    e->dirty_sale_count -= n;
    return TLY_OK;
}

bool eng_spill_find(const tly_engine *e, uint64_t seq, const void **val, size_t *len)
{
    for (uint32_t i = e->spill_count; i-- > 0;) {
        const eng_spill_run *r = e->spills[i];
        if (seq < r->lo || seq > r->hi)
            continue;
        uint32_t lo = 0, hi = r->count; /* the first entry ≥ seq in [lo, hi) */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (r->ent[mid].seq < seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < r->count && r->ent[lo].seq == seq) {
            *val = run_records(r) + r->ent[lo].off;
            *len = r->ent[lo].len;
            return true;
        }
    }
    return false;
}

tly_err eng_spill_each(tly_engine *e, eng_spill_fn fn, void *ctx, bool release)
{
    tly_err err = TLY_OK;
    for (uint32_t i = 0; i < e->spill_count && err == TLY_OK; i++) {
        eng_spill_run *r = e->spills[i];
        for (uint32_t k = 0; k < r->count && err == TLY_OK; k++)
            err = fn(ctx, r->ent[k].seq, run_records(r) + r->ent[k].off, r->ent[k].len);
        if (release) {
            e->spilled -= r->count;
            run_unmap(r);
            e->spills[i] = NULL;
        }
    }
    if (release) {
        /* the runs not reached are dropped all the same: the flush failed,
         * and the engine must be loaded again (dropped_in_flush) */
        eng_spill_free(e);
    }
    return err;
}

void eng_spill_free(tly_engine *e)
{
    for (uint32_t i = 0; i < e->spill_count; i++)
        if (e->spills[i] != NULL)
            run_unmap(e->spills[i]);
    free(e->spills);
    e->spills = NULL;
    e->spill_count = e->spill_cap = 0;
    e->spilled = 0;
    eng_buf_free(&e->spill_buf);
}
