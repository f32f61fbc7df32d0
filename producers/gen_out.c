/*
 * gen_out.c — how `tally gen` writes: a small JSON builder with a fixed key
 * order, per-source batches and exact resends. See gen.h.
 *
 * Records are not written one by one in time order: each source collects
 * its records and the batches are written together at the end of each
 * simulated day, at every close and when a batch is full. That is how the
 * real feeds arrive (a distributor's nightly file, the portal's queue), and
 * it lets `tally send` group consecutive records of one source into large
 * requests.
 */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

static void put(tly_gen_line *l, const char *s, size_t n)
{
    TLY_GEN_ASSERT(l->len + n < sizeof l->buf);
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void sep(tly_gen_line *l)
{
    if (l->comma)
        put(l, ",", 1);
}

void tly_gen_obj_begin(tly_gen_line *l)
{
    sep(l);
    put(l, "{", 1);
    l->comma = false;
}

void tly_gen_obj_end(tly_gen_line *l)
{
    put(l, "}", 1);
    l->comma = true;
}

void tly_gen_arr_begin(tly_gen_line *l)
{
    sep(l);
    put(l, "[", 1);
    l->comma = false;
}

void tly_gen_arr_end(tly_gen_line *l)
{
    put(l, "]", 1);
    l->comma = true;
}

/* Every string the generator writes is its own ASCII text: nothing needs
 * escaping, and the check keeps it that way as the tables grow. */
static void put_quoted(tly_gen_line *l, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        TLY_GEN_ASSERT(s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\');
    put(l, "\"", 1);
    put(l, s, n);
    put(l, "\"", 1);
}

void tly_gen_key(tly_gen_line *l, const char *key)
{
    sep(l);
    put_quoted(l, key);
    put(l, ":", 1);
    l->comma = false;
}

void tly_gen_kstr(tly_gen_line *l, const char *key, const char *val)
{
    tly_gen_key(l, key);
    put_quoted(l, val);
    l->comma = true;
}

void tly_gen_ki64(tly_gen_line *l, const char *key, int64_t val)
{
    char tmp[24];
    size_t n = 0;
    /* Digits of the magnitude as unsigned, so INT64_MIN is safe too. */
    uint64_t u = val < 0 ? 0 - (uint64_t)val : (uint64_t)val;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (val < 0)
        tmp[sizeof tmp - 1 - n++] = '-';
    tly_gen_key(l, key);
    put(l, tmp + sizeof tmp - n, n);
    l->comma = true;
}

void tly_gen_record_begin(tly_gen *g, int src, const char *type, bool ret, int64_t at_ms,
                          char *id_out)
{
    tly_gen_line *l = &g->line;
    tly_gen_source *s = &g->src[src];
    char id[32];
    uint64_t n = ++s->next_id[ret ? 1 : 0];
    if (src >= TLY_GEN_SRC_DIST0)
        snprintf(id, sizeof id, "%s-%c-%07llu", tly_gen_source_prefix[src], ret ? 'R' : 'S',
                 (unsigned long long)n);
    else
        snprintf(id, sizeof id, "%s-%07llu", tly_gen_source_prefix[src], (unsigned long long)n);
    if (id_out)
        memcpy(id_out, id, sizeof id);
    l->len = 0;
    l->comma = false;
    tly_gen_obj_begin(l);
    tly_gen_kstr(l, "source", tly_gen_source_name[src]);
    tly_gen_key(l, "event");
    tly_gen_obj_begin(l);
    tly_gen_kstr(l, "type", type);
    tly_gen_kstr(l, "id", id);
    tly_gen_ki64(l, "at", at_ms);
    g->cur_src = src;
}

static void batch_append(tly_gen_source *s, const char *buf, size_t len)
{
    if (s->batch_len + len > s->batch_cap) {
        size_t cap = s->batch_cap ? s->batch_cap : 64 * 1024;
        while (cap < s->batch_len + len)
            cap *= 2;
        char *p = realloc(s->batch, cap);
        if (!p) {
            /* Out of memory for a few hundred KB: nothing sensible to
             * continue with, and the output would be silently short. */
            fprintf(stderr, "tally gen: out of memory\n");
            exit(1);
        }
        s->batch = p;
        s->batch_cap = cap;
    }
    memcpy(s->batch + s->batch_len, buf, len);
    s->batch_len += len;
}

/* With probability --resend-pct, the source resends one of its recent
 * records byte for byte, as a producer does after a lost acknowledgement. */
static void maybe_resend(tly_gen *g, tly_gen_source *s)
{
    if (g->opt.resend_pct == 0 || tly_gen_rng_below(&g->rng_resend, 100) >= g->opt.resend_pct)
        return;
    uint32_t k = (uint32_t)tly_gen_rng_below(&g->rng_resend, s->ring_count);
    batch_append(s, s->ring[k], s->ring_len[k]);
    g->resent++;
}

void tly_gen_record_end(tly_gen *g)
{
    tly_gen_line *l = &g->line;
    tly_gen_source *s = &g->src[g->cur_src];
    tly_gen_obj_end(l);
    tly_gen_obj_end(l);
    put(l, "\n", 1);
    batch_append(s, l->buf, l->len);
    memcpy(s->ring[s->ring_next], l->buf, l->len);
    s->ring_len[s->ring_next] = (uint16_t)l->len;
    s->ring_next = (s->ring_next + 1) % TLY_GEN_RING_LINES;
    if (s->ring_count < TLY_GEN_RING_LINES)
        s->ring_count++;
    s->batch_lines++;
    g->emitted++;
    maybe_resend(g, s);
    /* Only original records count towards a full batch, so the order of the
     * original records does not depend on --resend-pct. */
    if (s->batch_lines >= TLY_GEN_BATCH_LINES_MAX)
        tly_gen_flush(g);
}

bool tly_gen_flush(tly_gen *g)
{
    bool ok = true;
    for (int i = 0; i < TLY_GEN_SRC_COUNT; i++) {
        tly_gen_source *s = &g->src[i];
        if (s->batch_len && fwrite(s->batch, 1, s->batch_len, g->out) != s->batch_len)
            ok = false;
        s->batch_len = 0;
        s->batch_lines = 0;
    }
    return ok && !ferror(g->out);
}

void tly_gen_out_free(tly_gen *g)
{
    for (int i = 0; i < TLY_GEN_SRC_COUNT; i++) {
        free(g->src[i].batch);
        g->src[i].batch = NULL;
    }
}
