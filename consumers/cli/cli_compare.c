/*
 * cli_compare.c — `tally audit replay --program FILE --compare`
 * (cli_compare.h).
 *
 * "Live" is an ordinary replay of the log to the what-if's seq, not the
 * running views: those are at their own checkpoints, while a replay to the
 * seq is what they held (or will hold) at it — `audit diff` checks the two
 * agree. Both sides are asked the same queries (liabilities, partners)
 * through the query library, so every figure is one `tally liabilities`
 * or `tally partners --views DIR` would print.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_compare.h"
#include "tly_audit.h"
#include "tly_cli.h"
#include "tly_limits.h"
#include "tly_os.h"
#include "tly_query.h"

static const char *const LIAB_KEYS[] = {"mdf_available", "mdf_pending", "mdf_approved",
                                        "rebate_accrued_open", "rebate_payable"};
static const char *const LIAB_LABELS[] = {"MDF available", "MDF pending", "MDF approved",
                                          "Rebate accrued (open)", "Rebate payable"};
#define LIAB_COUNT (sizeof LIAB_KEYS / sizeof LIAB_KEYS[0])

/* One side's answers. */
typedef struct side {
    json_t *liab;     /* the liabilities answer */
    json_t *partners; /* id -> partners row */
} side;

static int64_t iget(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* Asks the store in dir one query; NULL after printing why. */
static json_t *ask(const char *cmd, const char *dir, const char *q)
{
    tly_query_store *s = NULL;
    json_t *req = json_pack("{s:s}", "q", q), *reply = NULL;
    tly_err err = tly_query_store_open(dir, NULL, 0, &s);
    if (err == TLY_OK && req)
        err = tly_query_answer(s, req, &reply);
    tly_query_store_close(s);
    json_decref(req);
    if (err == TLY_OK && reply && !json_object_get(reply, "error"))
        return reply;
    tly_errorf(cmd, "cannot ask %s of %s: %s", q, dir,
               reply ? json_string_value(json_object_get(reply, "message")) : tly_strerror(err));
    json_decref(reply);
    return NULL;
}

/* Liabilities and the partner rows (by id) of the views in dir. */
static bool side_load(const char *cmd, const char *dir, side *s)
{
    s->liab = ask(cmd, dir, "liabilities");
    json_t *list = s->liab ? ask(cmd, dir, "partners") : NULL;
    s->partners = list ? json_object() : NULL;
    size_t i;
    json_t *row;
    json_array_foreach(s->partners ? json_object_get(list, "partners") : NULL, i, row)
        json_object_set(s->partners, json_string_value(json_object_get(row, "partner")), row);
    json_decref(list);
    return s->partners != NULL;
}

static void side_free(side *s)
{
    json_decref(s->liab);
    json_decref(s->partners);
}

/* The liabilities row of program in a side, or NULL. */
static json_t *liab_row(const side *s, const char *program)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(s->liab, "programs"), i, p)
    {
        const char *name = json_string_value(json_object_get(p, "program"));
        if (name && strcmp(name, program) == 0)
            return p;
    }
    return NULL;
}

/* what_if - live, clamped to int64 (two figures of opposite signs near
 * the ends of the range: a change no program reaches, shown at the end). */
static int64_t change(int64_t live, int64_t what_if)
{
    int64_t d;
    if (!__builtin_sub_overflow(what_if, live, &d))
        return d;
    return what_if > live ? INT64_MAX : INT64_MIN;
}

/* {"live","what_if","change"} of two figures. */
static json_t *triple(int64_t live, int64_t what_if)
{
    return json_pack("{s:I, s:I, s:I}", "live", (json_int_t)live, "what_if", (json_int_t)what_if,
                     "change", (json_int_t)change(live, what_if));
}

/* ---- movers ---- */

typedef struct mover {
    const char *id;
    const json_t *live, *what_if;
    uint64_t score; /* |change of available| + |change of payable| */
} mover;

static uint64_t magnitude(int64_t v)
{
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

static int by_score(const void *a, const void *b)
{
    const mover *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(x->id, y->id);
}

static json_t *mover_json(const mover *m)
{
    json_t *tier =
        json_pack("{s:s?, s:s?}", "live", json_string_value(json_object_get(m->live, "tier")),
                  "what_if", json_string_value(json_object_get(m->what_if, "tier")));
    return json_pack("{s:s, s:o, s:o, s:o}", "partner", m->id, "tier", tier, "available",
                     triple(iget(m->live, "available"), iget(m->what_if, "available")),
                     "rebate_payable",
                     triple(iget(m->live, "rebate_payable"), iget(m->what_if, "rebate_payable")));
}

/* The partners of program that change most, largest first. */
static json_t *movers_of(const side *live, const side *wi, const char *program)
{
    size_t n = json_object_size(wi->partners), count = 0;
    mover *m = calloc(n ? n : 1, sizeof *m);
    json_t *out = json_array();
    const char *id;
    json_t *row;
    json_object_foreach(m && out ? wi->partners : NULL, id, row)
    {
        const char *p = json_string_value(json_object_get(row, "program"));
        const json_t *before = json_object_get(live->partners, id);
        if (!p || strcmp(p, program) != 0 || !before)
            continue;
        uint64_t a = magnitude(change(iget(before, "available"), iget(row, "available")));
        uint64_t b = magnitude(change(iget(before, "rebate_payable"), iget(row, "rebate_payable")));
        uint64_t score = a > UINT64_MAX - b ? UINT64_MAX : a + b;
        if (score > 0)
            m[count++] = (mover){id, before, row, score};
    }
    if (m && count)
        qsort(m, count, sizeof *m, by_score);
    for (size_t i = 0; out && i < count && i < TLY_AUDIT_COMPARE_MOVERS_MAX; i++)
        json_array_append_new(out, mover_json(&m[i]));
    free(m);
    return out;
}

/* ---- the answer ---- */

static json_t *program_json(const side *live, const side *wi, const json_t *lrow)
{
    const char *name = json_string_value(json_object_get(lrow, "program"));
    const json_t *wrow = liab_row(wi, name);
    json_t *a = json_object(), *b = json_object(), *d = json_object();
    for (size_t k = 0; k < LIAB_COUNT; k++) {
        int64_t x = iget(lrow, LIAB_KEYS[k]), y = iget(wrow, LIAB_KEYS[k]);
        json_object_set_new(a, LIAB_KEYS[k], json_integer((json_int_t)x));
        json_object_set_new(b, LIAB_KEYS[k], json_integer((json_int_t)y));
        json_object_set_new(d, LIAB_KEYS[k], json_integer((json_int_t)change(x, y)));
    }
    return json_pack("{s:s, s:O, s:o, s:o, s:o, s:o}", "program", name, "currency",
                     json_object_get(wrow ? wrow : lrow, "currency"), "live", a, "what_if", b,
                     "change", d, "movers", movers_of(live, wi, name));
}

static json_t *compare_json(const side *live, const side *wi, uint64_t seq, const char *program,
                            int64_t version)
{
    json_t *progs = json_array();
    size_t i;
    json_t *lrow;
    json_array_foreach(json_object_get(live->liab, "programs"), i, lrow)
        json_array_append_new(progs, program_json(live, wi, lrow));
    return json_pack("{s:I, s:{s:s, s:I}, s:o}", "seq", (json_int_t)seq, "what_if", "program",
                     program, "version", (json_int_t)version, "programs", progs);
}

/* ---- the table ---- */

#define CELL_CHARS 64u
#define COLS_MAX 8u

/* A table of at most COLS_MAX columns, first left-aligned, others right. */
typedef struct grid {
    uint32_t cols, rows, cap;
    char (*cell)[COLS_MAX][CELL_CHARS];
} grid;

static void grid_row(grid *g, const char *const *cells)
{
    if (g->rows == g->cap) {
        uint32_t cap = g->cap ? 2 * g->cap : 16;
        void *n = realloc(g->cell, cap * sizeof *g->cell);
        if (!n)
            abort(); /* a few rows: the process is out of memory */
        g->cell = n;
        g->cap = cap;
    }
    for (uint32_t c = 0; c < g->cols; c++)
        snprintf(g->cell[g->rows][c], CELL_CHARS, "%s", cells[c] ? cells[c] : "");
    g->rows++;
}

static void grid_print(grid *g)
{
    size_t w[COLS_MAX] = {0};
    for (uint32_t r = 0; r < g->rows; r++)
        for (uint32_t c = 0; c < g->cols; c++)
            w[c] = strlen(g->cell[r][c]) > w[c] ? strlen(g->cell[r][c]) : w[c];
    for (uint32_t r = 0; r < g->rows; r++) {
        for (uint32_t c = 0; c < g->cols; c++)
            printf(c == 0 ? "%-*s" : "  %*s", (int)w[c], g->cell[r][c]);
        printf("\n");
    }
    free(g->cell);
    *g = (grid){0};
}

typedef char money_text[TLY_QUERY_MONEY_CHARS];

static const char *money(const json_t *o, const char *k, int exp, money_text buf)
{
    tly_query_format_money(iget(o, k), exp, buf, TLY_QUERY_MONEY_CHARS);
    return buf;
}

static void print_liabilities(const json_t *p, int exp)
{
    grid g = {.cols = 4};
    const json_t *a = json_object_get(p, "live"), *b = json_object_get(p, "what_if"),
                 *d = json_object_get(p, "change");
    char head[CELL_CHARS];
    snprintf(head, sizeof head, "%s (%s)", json_string_value(json_object_get(p, "program")),
             json_string_value(json_object_get(p, "currency")));
    grid_row(&g, (const char *const[]){head, "Live", "What-if", "Change"});
    for (size_t k = 0; k < LIAB_COUNT; k++) {
        money_text x, y, z;
        grid_row(&g, (const char *const[]){LIAB_LABELS[k], money(a, LIAB_KEYS[k], exp, x),
                                           money(b, LIAB_KEYS[k], exp, y),
                                           money(d, LIAB_KEYS[k], exp, z)});
    }
    grid_print(&g);
}

static void print_movers(const json_t *p, int exp)
{
    const json_t *movers = json_object_get(p, "movers");
    if (json_array_size(movers) == 0) {
        printf("\nNo partner of %s changes.\n", json_string_value(json_object_get(p, "program")));
        return;
    }
    printf("\nPartners that change most (MDF available, rebate payable):\n");
    grid g = {.cols = 8};
    grid_row(&g, (const char *const[]){"Partner", "Tier", "Available", "What-if", "Change",
                                       "Payable", "What-if", "Change"});
    size_t i;
    json_t *m;
    json_array_foreach(movers, i, m)
    {
        const json_t *t = json_object_get(m, "tier"), *a = json_object_get(m, "available"),
                     *r = json_object_get(m, "rebate_payable");
        char tier[CELL_CHARS];
        const char *lt = json_string_value(json_object_get(t, "live")),
                   *wt = json_string_value(json_object_get(t, "what_if"));
        snprintf(tier, sizeof tier, "%s%s%s", lt ? lt : "-",
                 lt && wt && strcmp(lt, wt) ? " -> " : "", lt && wt && strcmp(lt, wt) ? wt : "");
        money_text v[6];
        grid_row(&g, (const char *const[]){
                         json_string_value(json_object_get(m, "partner")), tier,
                         money(a, "live", exp, v[0]), money(a, "what_if", exp, v[1]),
                         money(a, "change", exp, v[2]), money(r, "live", exp, v[3]),
                         money(r, "what_if", exp, v[4]), money(r, "change", exp, v[5])});
    }
    grid_print(&g);
}

static void print_compare(const json_t *c, const char *file_program)
{
    const json_t *wi = json_object_get(c, "what_if");
    printf("What-if at seq %lld: program %s under the rules of version %lld, beside the log as\n"
           "it is at the same seq (live).\n",
           (long long)iget(c, "seq"), file_program, (long long)iget(wi, "version"));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(c, "programs"), i, p)
    {
        int exp = tly_query_currency_exponent(json_string_value(json_object_get(p, "currency")));
        printf("\n");
        print_liabilities(p, exp);
        print_movers(p, exp);
    }
}

/* ---- public ---- */

/* Replays log_dir to seq into dir (made by mkdtemp). */
static int replay_live(const char *cmd, const char *log_dir, uint32_t shards, uint64_t seq,
                       const char *dir)
{
    tly_audit_replay_opts o = {
        .log_dir = log_dir, .out_dir = dir, .shard_count = shards, .to_seq = seq};
    uint64_t last = 0;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    tly_err err = tly_audit_replay(&o, NULL, NULL, &last, msg, sizeof msg);
    if (err == TLY_OK && last == seq)
        return TLY_EXIT_OK;
    tly_errorf(cmd, "the live replay to seq %llu: %s", (unsigned long long)seq,
               msg[0]          ? msg
               : err == TLY_OK ? "stopped early"
                               : tly_strerror(err));
    return TLY_EXIT_FAIL;
}

int tly_compare_print(const char *cmd, const char *log_dir, const char *what_if_dir,
                      uint32_t shard_count, uint64_t seq, const char *program, int64_t version,
                      const char *tmp_parent, bool json)
{
    char dir[TLY_PATH_BYTES_MAX];
    snprintf(dir, sizeof dir, "%s/tally-compare-XXXXXX", tmp_parent);
    if (!mkdtemp(dir)) {
        tly_errorf(cmd, "cannot create a directory in %s", tmp_parent);
        return TLY_EXIT_FAIL;
    }
    side live = {0}, wi = {0};
    int rc = replay_live(cmd, log_dir, shard_count, seq, dir);
    if (rc == TLY_EXIT_OK && (!side_load(cmd, dir, &live) || !side_load(cmd, what_if_dir, &wi)))
        rc = TLY_EXIT_FAIL;
    json_t *c = rc == TLY_EXIT_OK ? compare_json(&live, &wi, seq, program, version) : NULL;
    if (rc == TLY_EXIT_OK && !c) {
        tly_errorf(cmd, "%s", tly_strerror(TLY_NOMEM));
        rc = TLY_EXIT_FAIL;
    }
    if (c && json) {
        json_dumpf(c, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("\n");
    } else if (c) {
        print_compare(c, program);
    }
    json_decref(c);
    side_free(&live);
    side_free(&wi);
    tly_rmtree(dir);
    return rc;
}
