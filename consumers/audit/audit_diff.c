/*
 * audit_diff.c — `tally audit diff`: the live views against a replay of the
 * log.
 *
 * Live shards usually stand at different checkpoints (each folds at its own
 * pace), so the replay uses the live shard count and stops each shard at
 * that shard's checkpoint, read in the same snapshot as the views compared.
 * The comparison then walks both sets family by family in the canonical
 * order of audit_views.h: a partner (or program, or exception) present on
 * one side only is one line; a doc that differs is one line per top-level
 * field that differs. Every live balance is also checked against the MDF
 * invariant of SPEC section 6 (one line when it does not hold).
 */
/* nftw is an XSI function: ask for it before any header. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "audit_views.h"
#include "tly_audit.h"
#include "tly_os.h"

/* The state of one family's comparison. Families are compared in
 * parallel, each into a buffer of its own (open_memstream), and the
 * buffers printed in family order (compare_sets); every difference is one
 * line, and where each of the first TLY_AUDIT_DIFF_LINES_MAX begins is
 * kept, so that the lines printed in all can be cut at that many. */
typedef struct diff_run {
    FILE *out;
    char *buf; /* out's bytes once closed */
    size_t len;
    uint64_t differences;
    long line_at[TLY_AUDIT_DIFF_LINES_MAX];
    char msg[TLY_AUDIT_ERROR_BYTES];
} diff_run;

/* Counts a difference; true when its line should still be printed. */
static bool report(diff_run *d)
{
    if (d->differences >= TLY_AUDIT_DIFF_LINES_MAX) {
        d->differences++;
        return false;
    }
    d->line_at[d->differences++] = ftell(d->out);
    return true;
}

/* Writes "what" for an item: "partner P", "program P" or "exception at
 * seq S (kind K, partner P)". */
static void describe(FILE *out, tly_audit_family f, const tly_audit_item *it)
{
    if (f == TLY_AUDIT_EXCEPTIONS) {
        json_t *o = json_loads(it->doc, 0, NULL);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *partner = json_string_value(json_object_get(o, "partner"));
        fprintf(out, "exception at seq %llu (%s, partner %s)",
                (unsigned long long)tly_be64_get(it->id), kind ? kind : "?",
                partner ? partner : "none");
        json_decref(o);
        return;
    }
    fprintf(out, "%s %.*s", f == TLY_AUDIT_LIABILITIES ? "program" : "partner", (int)it->id_len,
            (const char *)it->id);
}

/* One side only. */
static void report_missing(diff_run *d, tly_audit_family f, const tly_audit_item *it,
                           const char *where)
{
    if (!report(d))
        return;
    describe(d->out, f, it);
    fprintf(d->out, " %s: only in the %s\n", tly_audit_family_name(f), where);
}

/* Prints a JSON value cut to TLY_AUDIT_DIFF_VALUE_CHARS_MAX characters. */
static void print_value(FILE *out, const json_t *v)
{
    if (!v) {
        fputs("(absent)", out);
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!text)
        return;
    size_t len = strlen(text);
    if (len > TLY_AUDIT_DIFF_VALUE_CHARS_MAX)
        fprintf(out, "%.*s...", (int)TLY_AUDIT_DIFF_VALUE_CHARS_MAX, text);
    else
        fputs(text, out);
    free(text);
}

/* One line for a field that differs. */
static void report_field(diff_run *d, tly_audit_family f, const tly_audit_item *it, const char *key,
                         const json_t *live, const json_t *replay)
{
    if (!report(d))
        return;
    describe(d->out, f, it);
    fprintf(d->out, " %s: field \"%s\": live ", tly_audit_family_name(f), key);
    print_value(d->out, live);
    fputs(", replay ", d->out);
    print_value(d->out, replay);
    fputc('\n', d->out);
}

/* Reports each top-level field whose values differ, over the union of the
 * two docs' keys. */
static void compare_docs(diff_run *d, tly_audit_family f, const tly_audit_item *live,
                         const tly_audit_item *replay)
{
    json_t *a = json_loads(live->doc, 0, NULL), *b = json_loads(replay->doc, 0, NULL);
    const char *key;
    json_t *v;
    json_object_foreach(a, key, v)
    {
        json_t *w = json_object_get(b, key);
        if (!w || !json_equal(v, w))
            report_field(d, f, live, key, v, w);
    }
    json_object_foreach(b, key, v)
    {
        if (!json_object_get(a, key))
            report_field(d, f, live, key, NULL, v);
    }
    json_decref(a);
    json_decref(b);
}

/* An integer member of a balance doc; false when absent or not one. */
static bool member(const json_t *doc, const char *key, json_int_t *out)
{
    const json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

/* accrued − clawed_back + adjusted − expired − pending − approved − paid
 * (SPEC section 6); false when a member is missing or the sum overflows. */
static bool mdf_total(const json_t *doc, json_int_t *out)
{
    static const char *const keys[] = {"accrued", "clawed_back", "adjusted", "expired",
                                       "pending", "approved",    "paid"};
    json_int_t sum = 0, v;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!member(doc, keys[i], &v))
            return false;
        bool bad = i == 0 || i == 2 ? __builtin_add_overflow(sum, v, &sum)
                                    : __builtin_sub_overflow(sum, v, &sum);
        if (bad)
            return false;
    }
    *out = sum;
    return true;
}

/* Σ buckets[].remaining − deficit; false when malformed or overflowing. */
static bool bucket_total(const json_t *doc, json_int_t *out)
{
    json_int_t sum = 0, v;
    size_t i;
    json_t *b;
    if (!json_is_array(json_object_get(doc, "buckets")) || !member(doc, "deficit", &v))
        return false;
    if (__builtin_sub_overflow(sum, v, &sum))
        return false;
    json_array_foreach(json_object_get(doc, "buckets"), i, b)
    {
        if (!member(b, "remaining", &v) || __builtin_add_overflow(sum, v, &sum))
            return false;
    }
    *out = sum;
    return true;
}

/* Checks a live balance doc against the MDF invariant of SPEC section 6,
 * which the audit checks on its own: a view can be wrong in a way that a
 * replay with the same engine reproduces, but not while it balances. */
static void check_invariant(diff_run *d, const tly_audit_item *it)
{
    json_t *doc = json_loads(it->doc, 0, NULL);
    json_int_t available = 0, total = 0, buckets = 0;
    bool ok = member(doc, "available", &available) && mdf_total(doc, &total) &&
              bucket_total(doc, &buckets);
    if (!ok || total != available || buckets != available) {
        if (report(d)) {
            describe(d->out, TLY_AUDIT_MDF, it);
            fprintf(d->out,
                    " mdf: invariant broken: available %lld, accrued - clawed_back + adjusted"
                    " - expired - pending - approved - paid = %lld, buckets - deficit = %lld\n",
                    (long long)available, (long long)total, (long long)buckets);
        }
    }
    json_decref(doc);
}

/* Order of two items: by id, and for exceptions then by doc. */
static int item_cmp(tly_audit_family f, const tly_audit_item *a, const tly_audit_item *b)
{
    size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
    int c = memcmp(a->id, b->id, n);
    if (c == 0)
        c = (a->id_len > b->id_len) - (a->id_len < b->id_len);
    if (c == 0 && f == TLY_AUDIT_EXCEPTIONS) {
        c = strcmp(a->doc, b->doc);
        c = (c > 0) - (c < 0);
    }
    return c;
}

/* Steps a stream; *more is false at its end. */
static tly_err step(tly_audit_stream *s, tly_audit_item *it, bool *more, diff_run *d)
{
    tly_err err = tly_audit_stream_next(s, it, d->msg, sizeof d->msg);
    *more = err == TLY_OK;
    return err == TLY_NOT_FOUND ? TLY_OK : err;
}

/* Steps the live stream, checking each balance doc it yields. */
static tly_err step_live(tly_audit_stream *s, tly_audit_family f, tly_audit_item *it, bool *more,
                         diff_run *d)
{
    tly_err err = step(s, it, more, d);
    if (err == TLY_OK && *more && f == TLY_AUDIT_MDF)
        check_invariant(d, it);
    return err;
}

/* Walks one family of both sets in step (a merge of two sorted lists). */
static tly_err diff_streams(diff_run *d, tly_audit_family f, tly_audit_stream *ls,
                            tly_audit_stream *rs)
{
    tly_audit_item li, ri;
    bool lm = false, rm = false;
    tly_err err = step_live(ls, f, &li, &lm, d);
    if (err == TLY_OK)
        err = step(rs, &ri, &rm, d);
    while (err == TLY_OK && (lm || rm)) {
        int c = !lm ? 1 : !rm ? -1 : item_cmp(f, &li, &ri);
        if (c < 0)
            report_missing(d, f, &li, "live views");
        else if (c > 0)
            report_missing(d, f, &ri, "replay");
        else if (li.doc_len != ri.doc_len || memcmp(li.doc, ri.doc, li.doc_len) != 0)
            compare_docs(d, f, &li, &ri);
        if (c <= 0)
            err = step_live(ls, f, &li, &lm, d);
        if (err == TLY_OK && c >= 0)
            err = step(rs, &ri, &rm, d);
    }
    return err;
}

static tly_err diff_family(diff_run *d, tly_audit_family f, tly_audit_viewset *live,
                           tly_audit_viewset *replay)
{
    tly_audit_stream *ls = NULL, *rs = NULL;
    tly_err err = tly_audit_stream_open(live, f, &ls);
    if (err == TLY_OK)
        err = tly_audit_stream_open(replay, f, &rs);
    if (err == TLY_OK)
        err = diff_streams(d, f, ls, rs);
    tly_audit_stream_close(ls);
    tly_audit_stream_close(rs);
    return err;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf of the replay directory (only what this diff created). */
static void remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Replays into tmp with the live shard count and checkpoints. */
static tly_err replay_like(const char *log_dir, const char *tmp, tly_audit_viewset *live,
                           tly_audit_progress_fn progress, void *ctx, char *msg, size_t cap)
{
    uint64_t stops[TLY_SHARDS_MAX];
    uint32_t n = tly_audit_viewset_shards(live);
    for (uint32_t k = 0; k < n; k++)
        stops[k] = tly_audit_viewset_checkpoint(live, k);
    tly_audit_replay_opts o = {
        .log_dir = log_dir, .out_dir = tmp, .shard_count = n, .shard_to_seq = stops};
    uint64_t last;
    return tly_audit_replay(&o, progress, ctx, &last, msg, cap);
}

/* One family of the live views (sets[0]) against the replay (sets[1]),
 * into its own buffer (tly_audit_each_family). */
static tly_err diff_one(void *ctx, tly_audit_family f, tly_audit_viewset *const *sets)
{
    diff_run *d = &((diff_run *)ctx)[f];
    d->out = open_memstream(&d->buf, &d->len);
    if (!d->out)
        return TLY_NOMEM;
    tly_err err = diff_family(d, f, sets[0], sets[1]);
    if (fclose(d->out) != 0 && err == TLY_OK)
        err = TLY_NOMEM;
    d->out = NULL;
    return err;
}

/* Compares every family; prints their lines in family order, at most
 * TLY_AUDIT_DIFF_LINES_MAX in all, and the verdict line when all match.
 * A family that failed has its lines printed as far as it came, and its
 * error is returned: what one walk of the families in order would give. */
static tly_err compare_sets(FILE *out, uint64_t *differences, tly_audit_viewset *live,
                            tly_audit_viewset *replay, char *msg, size_t cap)
{
    diff_run *runs = calloc(TLY_AUDIT_FAMILY_COUNT, sizeof *runs);
    if (!runs)
        return TLY_NOMEM;
    tly_audit_viewset *sets[2] = {live, replay};
    tly_err errs[TLY_AUDIT_FAMILY_COUNT], err = TLY_OK;
    tly_audit_each_family(sets, 2, diff_one, runs, errs);
    uint64_t total = 0;
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT && err == TLY_OK; f++) {
        diff_run *d = &runs[f];
        uint64_t room = total < TLY_AUDIT_DIFF_LINES_MAX ? TLY_AUDIT_DIFF_LINES_MAX - total : 0;
        uint64_t lines =
            d->differences < TLY_AUDIT_DIFF_LINES_MAX ? d->differences : TLY_AUDIT_DIFF_LINES_MAX;
        size_t upto = room < lines ? (size_t)d->line_at[room] : d->len;
        if (d->buf)
            fwrite(d->buf, 1, upto, out);
        total += d->differences;
        err = errs[f];
        if (err != TLY_OK)
            tly_audit_msgf(msg, cap, "%s", d->msg);
    }
    for (int f = 0; f < TLY_AUDIT_FAMILY_COUNT; f++)
        free(runs[f].buf);
    free(runs);
    if (err != TLY_OK)
        return err;
    uint64_t seq, seq_max;
    tly_audit_viewset_seqs(live, &seq, &seq_max);
    if (total > TLY_AUDIT_DIFF_LINES_MAX)
        fprintf(out, "... %llu differences in all\n", (unsigned long long)total);
    else if (total == 0 && seq == seq_max)
        fprintf(out, "all views match at seq %llu\n", (unsigned long long)seq);
    else if (total == 0)
        fprintf(out, "all views match at seq %llu (shards at seq %llu..%llu)\n",
                (unsigned long long)seq, (unsigned long long)seq, (unsigned long long)seq_max);
    *differences = total;
    return TLY_OK;
}

tly_err tly_audit_diff(const char *log_dir, const char *views_dir, const char *tmp_parent,
                       FILE *out, tly_audit_progress_fn progress, void *ctx, uint64_t *differences,
                       char *msg, size_t cap)
{
    tly_audit_viewset *live = NULL, *replay = NULL;
    tly_err err = tly_audit_viewset_open(views_dir, &live, msg, cap);
    if (err != TLY_OK)
        return err;
    char tmp[TLY_PATH_BYTES_MAX];
    snprintf(tmp, sizeof tmp, "%s/tally-audit-diff-XXXXXX", tmp_parent);
    if (!mkdtemp(tmp)) {
        tly_audit_msgf(msg, cap, "cannot create a directory in %s", tmp_parent);
        tly_audit_viewset_close(live);
        return TLY_STORAGE;
    }
    err = replay_like(log_dir, tmp, live, progress, ctx, msg, cap);
    if (err == TLY_OK)
        err = tly_audit_viewset_open(tmp, &replay, msg, cap);
    if (err == TLY_OK)
        err = compare_sets(out, differences, live, replay, msg, cap);
    tly_audit_viewset_close(replay);
    tly_audit_viewset_close(live);
    remove_tree(tmp);
    return err;
}
