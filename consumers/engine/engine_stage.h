/*
 * engine_stage.h — floor 6 of the engine, beside engine_base.h: a flush's
 * staged puts (engine_stage.c). A flush with drops (tly_engine_set_flush_drops)
 * writes its changed partners here first, dropping each from memory as it
 * goes, and only then into the store, in the same order: so the store's
 * write transaction, which takes a copy of every page it changes, finds the
 * memory the partners left free in whole runs instead of between partners
 * still held (at 10M events of `bench fold` on one shard that was 31-64 MB
 * of the commit's peak).
 */
#ifndef TLY_ENGINE_STAGE_H
#define TLY_ENGINE_STAGE_H

#include "engine_base.h"
#include "tly_engine.h"

/* Bytes of one block of staged puts (with its head, a little more); a put
 * larger than that gets a block of its own size. Each block leaves the RSS
 * once written (eng_stage_replay), so a smaller block follows the store's
 * growth more closely, for one mmap and munmap more per block. */
#define ENG_STAGE_BLOCK_BYTES ((size_t)1u << 20)

typedef struct eng_stage_block eng_stage_block;

/* Puts copied in order into a list of blocks. Zero-initialised is empty. */
typedef struct eng_stage {
    eng_stage_block *head, *tail;
    size_t bytes;    /* of the staged keys and values */
    uint32_t blocks; /* in the list */
} eng_stage;

/* A tly_kv_put_fn (ctx: the eng_stage): copies the pair to the end.
 * TLY_NOMEM without memory, TLY_TOO_LARGE for a value of 4 GiB or more. */
tly_err eng_stage_put(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len);

/* Puts every staged pair through put in the order staged, freeing each
 * block once it is written (its memory is free for what put allocates
 * next). Stops at the first error of put and returns it. The stage is
 * empty afterwards either way. */
tly_err eng_stage_replay(eng_stage *s, tly_kv_put_fn put, void *ctx);

/* Frees what is staged. */
void eng_stage_free(eng_stage *s);

#endif
