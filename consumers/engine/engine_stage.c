/*
 * engine_stage.c — a flush's staged puts (engine_stage.h).
 *
 * Blocks are mapped straight from the system (as the maps' large slot
 * tables are, engine_map.c), not taken from the heap, and go back to it
 * as soon as they are written (a block freed into the heap would stay
 * counted in the RSS until malloc handed it out again): the write
 * transaction's pages, which take the heap's free memory, grow while the
 * stage shrinks.
 *
 * A pair is stored as u32 key length, u32 value length (host order: the
 * bytes never leave the process), the key, the value.
 */
#include "engine_stage.h"

#include <string.h>
#include <sys/mman.h>

struct eng_stage_block {
    eng_stage_block *next;
    size_t len, cap;
    unsigned char data[];
};

#define PAIR_HEAD_BYTES 8u

tly_err eng_stage_put(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    eng_stage *s = ctx;
    if (key_len > UINT32_MAX || val_len > UINT32_MAX)
        return TLY_TOO_LARGE;
    size_t need = PAIR_HEAD_BYTES + key_len + val_len;
    eng_stage_block *b = s->tail;
    if (b == NULL || b->cap - b->len < need) {
        size_t cap = need > ENG_STAGE_BLOCK_BYTES ? need : ENG_STAGE_BLOCK_BYTES;
        void *m =
            mmap(NULL, sizeof *b + cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return TLY_NOMEM;
        b = m;
        *b = (eng_stage_block){.cap = cap};
        if (s->tail != NULL)
            s->tail->next = b;
        else
            s->head = b;
        s->tail = b;
        s->blocks++;
    }
    uint32_t lens[2] = {(uint32_t)key_len, (uint32_t)val_len};
    unsigned char *at = b->data + b->len;
    memcpy(at, lens, sizeof lens);
    memcpy(at + PAIR_HEAD_BYTES, key, key_len);
    if (val_len > 0)
        memcpy(at + PAIR_HEAD_BYTES + key_len, val, val_len);
    b->len += need;
    s->bytes += key_len + val_len;
    return TLY_OK;
}

/* Unmaps the stage's first block. */
static void drop_head(eng_stage *s)
{
    eng_stage_block *b = s->head;
    s->head = b->next;
    (void)munmap(b, sizeof *b + b->cap);
}

/* Puts the pairs of block b through put. */
static tly_err replay_block(const eng_stage_block *b, tly_kv_put_fn put, void *ctx)
{
    for (size_t at = 0; at < b->len;) {
        uint32_t lens[2];
        memcpy(lens, b->data + at, sizeof lens);
        const unsigned char *key = b->data + at + PAIR_HEAD_BYTES;
        TRY(put(ctx, key, lens[0], key + lens[0], lens[1]));
        at += PAIR_HEAD_BYTES + (size_t)lens[0] + lens[1];
    }
    return TLY_OK;
}

tly_err eng_stage_replay(eng_stage *s, tly_kv_put_fn put, void *ctx)
{
    tly_err err = TLY_OK;
    while (s->head != NULL && err == TLY_OK) {
        err = replay_block(s->head, put, ctx);
        drop_head(s);
    }
    eng_stage_free(s);
    return err;
}

void eng_stage_free(eng_stage *s)
{
    while (s->head != NULL)
        drop_head(s);
    *s = (eng_stage){0};
}
