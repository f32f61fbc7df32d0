/*
 * test_asof.c — answers as of a close and what-if comparisons (issue 11
 * items 3 and 4), on the seed102-v2 vector in a real log folded by real
 * `tally consume` processes, asked through the real `tally` binary.
 *
 *   - the close index (audit_closes.c) names, for every period the engine
 *     closes while folding the vector in-process, the seq of the close that
 *     closed it ([L1] [L3] [L7]: the vector holds an out-of-order close, an
 *     early one and one at the first millisecond of the next period), and
 *     only those;
 *   - `--as-of-close` answers of balance, rebate, tier, claims and
 *     liabilities equal those of `audit replay --to SEQ` at the close's
 *     seq, and a balance equals an independent in-process fold to it;
 *   - the replay is kept: a second question does not replay again;
 *   - unknown programs, periods of the wrong kind, before the first or not
 *     closed yet are exit 1, bad option use exit 2;
 *   - `audit replay --program FILE --compare` shows changed liabilities
 *     and the partners that move most, beside live figures equal to the
 *     live views at the same seq; a program the log does not have and a
 *     file that is no program event are exit 1.
 */
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "tly_audit.h"
#include "tly_engine.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_period.h"

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Appends the vector's events to DATA/log as their sources sent them
 * (resent ids are dups, not appended). */
static char *vector_log(void)
{
    char *path = tu_vector("seed102-v2-events.jsonl");
    char *text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    char *data = tu_tmpdir(), *log_dir = join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    int64_t now = tly_now_ms();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *rec = json_loads(line, 0, NULL);
        const char *src = json_string_value(json_object_get(rec, "source"));
        msgpack_sbuffer mp;
        msgpack_sbuffer_init(&mp);
        ck_assert_int_eq(tly_json_event_to_mp(json_object_get(rec, "event"), &mp, NULL), TLY_OK);
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(mp.data, mp.size, now, &ev, NULL), TLY_OK);
        tly_log_item it = {.source = {src, (uint32_t)strlen(src)},
                           .id = ev.id,
                           .event = (const uint8_t *)mp.data,
                           .event_len = mp.size};
        ck_assert_int_eq(tly_log_append(log, now, &it, 1, NULL, 0), TLY_OK);
        ck_assert_int_eq(it.err, TLY_OK);
        msgpack_sbuffer_destroy(&mp);
        json_decref(rec);
    }
    tly_log_close(log);
    free(log_dir);
    free(text);
    free(path);
    return data;
}

/* The vector's log folded into DATA/views by a real consumer. */
static char *vector_data(void)
{
    char *data = vector_log();
    char *const argv[] = {(char *)tu_tally(), "consume", "--data",         data,
                          "--shard",          "0/1",     "--exit-at-head", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    return data;
}

/* Runs tally with the arguments (NULL-terminated); *out and *err (may be
 * NULL) get what it printed (malloc'd). Returns the exit code. */
static int tally(const char *data, char **out, char **err, ...)
{
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < 39 && (a = va_arg(ap, const char *));)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *op = join(data, "cmd.out"), *ep = join(data, "cmd.err");
    int rc = tu_run(argv, NULL, op, ep);
    if (out)
        *out = tu_read_file(op, NULL);
    if (err)
        *err = tu_read_file(ep, NULL);
    free(op);
    free(ep);
    return rc;
}

/* A command's --json answer, which must succeed. */
static json_t *answer(const char *data, ...)
{
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    va_list ap;
    va_start(ap, data);
    for (const char *a; n < 38 && (a = va_arg(ap, const char *));)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n++] = "--json";
    argv[n] = NULL;
    char *op = join(data, "ans.out"), *ep = join(data, "ans.err");
    int rc = tu_run(argv, NULL, op, ep);
    char *text = tu_read_file(op, NULL), *etext = tu_read_file(ep, NULL);
    ck_assert_msg(rc == 0, "%s %s: exit %d: %s", argv[1], argv[2], rc, etext);
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_msg(j != NULL, "%s: not JSON: %s", argv[1], text);
    free(text);
    free(etext);
    free(op);
    free(ep);
    return j;
}

static void assert_same(json_t *got, json_t *want, const char *what)
{
    if (json_equal(got, want))
        return;
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    ck_abort_msg("%s:\n got  %s\n want %s", what, g, w);
}

/* The seq of the close of period of program, from the index. */
static uint64_t close_seq(const char *data, const char *program, const char *period)
{
    tly_audit_closes *c = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    ck_assert_int_eq(tly_audit_closes_open(data, false, &c, msg, sizeof msg), TLY_OK);
    uint64_t seq = 0;
    tly_err err = tly_audit_closes_find(c, program, period, &seq, msg, sizeof msg);
    ck_assert_msg(err == TLY_OK, "%s %s: %s", program, period, msg);
    tly_audit_closes_free(c);
    return seq;
}

/* The earliest open period of program in e ("open" of its report). */
static char *open_period(const tly_engine *e, const char *program)
{
    json_t *r = tly_engine_report(e, program);
    const char *open = json_string_value(json_object_get(r, "open"));
    char *copy = open ? strdup(open) : NULL;
    json_decref(r);
    return copy;
}

/* Folds DATA/log into e (one shard, in memory) up to to_seq; into closes
 * (when not NULL) "<program> <period>" -> seq of every close after which
 * the engine's earliest open period of the program moved on. */
static void fold(const char *data, uint64_t to_seq, tly_engine *e, json_t *closes)
{
    char *log_dir = join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_READ, &log), TLY_OK);
    tly_log_reader *rd;
    ck_assert_int_eq(tly_log_reader_open(log, 1, &rd), TLY_OK);
    tly_record rec;
    while (tly_log_reader_next(rd, &rec) == TLY_OK && rec.seq <= to_seq) {
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &ev, NULL),
                         TLY_OK);
        char program[TLY_NAME_BYTES_MAX + 1] = "", *before = NULL;
        if (closes && ev.type == TLY_EV_CLOSE) {
            snprintf(program, sizeof program, "%.*s", (int)ev.program.len, ev.program.ptr);
            before = open_period(e, program);
        }
        ck_assert_int_eq(tly_engine_apply(e, &rec, &ev), TLY_OK);
        char *after = before ? open_period(e, program) : NULL;
        if (before && strcmp(before, after) != 0) {
            char key[TLY_NAME_BYTES_MAX + 16];
            snprintf(key, sizeof key, "%s %s", program, before);
            ck_assert_ptr_null(json_object_get(closes, key));
            json_object_set_new(closes, key, json_integer((json_int_t)rec.seq));
        }
        free(before);
        free(after);
    }
    tly_log_reader_close(rd);
    tly_log_close(log);
    free(log_dir);
}

/* The seq of the record (source, id). */
static uint64_t seq_of(const char *data, const char *source, const char *id)
{
    char *log_dir = join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_READ, &log), TLY_OK);
    uint64_t seq = 0;
    ck_assert_int_eq(
        tly_log_lookup(log, (tly_str){source, strlen(source)}, (tly_str){id, strlen(id)}, &seq),
        TLY_OK);
    tly_log_close(log);
    free(log_dir);
    return seq;
}

/* [L1] [L3] [L7] Every close the engine judges closing is indexed, with
 * its seq; nothing else is. */
START_TEST(index_agrees_with_the_engine)
{
    char *data = vector_log();
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    json_t *closes = json_object();
    fold(data, UINT64_MAX, e, closes);
    ck_assert_uint_ge(json_object_size(closes), 20);
    const char *key;
    json_t *seq;
    json_object_foreach(closes, key, seq)
    {
        char program[TLY_NAME_BYTES_MAX + 1], period[16];
        ck_assert_int_eq(sscanf(key, "%128s %15s", program, period), 2);
        ck_assert_uint_eq(close_seq(data, program, period), (uint64_t)json_integer_value(seq));
    }
    /* The engine's earliest open periods are not closed in the index. */
    static const char *const programs[] = {"apex", "nimbus"};
    tly_audit_closes *c;
    char msg[TLY_AUDIT_ERROR_BYTES] = "";
    ck_assert_int_eq(tly_audit_closes_open(data, true, &c, msg, sizeof msg), TLY_OK);
    for (int i = 0; i < 2; i++) {
        char *open = open_period(e, programs[i]);
        uint64_t s = 0;
        ck_assert_int_eq(tly_audit_closes_find(c, programs[i], open, &s, msg, sizeof msg),
                         TLY_UNAVAILABLE);
        ck_assert_msg(strstr(msg, "not closed yet") != NULL, "%s", msg);
        free(open);
        msg[0] = '\0';
    }
    tly_audit_closes_free(c);
    /* [L7] at the first millisecond of July closes June; [L3] an early close
     * of 2025-Q3 does not, the later one does. */
    ck_assert_uint_eq(close_seq(data, "nimbus", "2025-06"), seq_of(data, "finance", "FIN-0000745"));
    ck_assert_uint_eq(close_seq(data, "apex", "2025-Q3"), seq_of(data, "finance", "FIN-0000158"));
    /* The index is kept and read back the same. */
    char *index = join(data, "asof/closes.json");
    struct stat st;
    ck_assert_int_eq(stat(index, &st), 0);
    ck_assert_uint_eq(close_seq(data, "apex", "2025-Q3"), seq_of(data, "finance", "FIN-0000158"));
    free(index);
    json_decref(closes);
    tly_engine_free(e);
    tu_rmtree(data);
}
END_TEST

/* The views of `tally audit replay --to SEQ` into DATA/name. */
static char *replay_to(const char *data, const char *name, uint64_t seq)
{
    char *out = join(data, name), to[32], *err = NULL;
    snprintf(to, sizeof to, "%llu", (unsigned long long)seq);
    int rc =
        tally(data, NULL, &err, "audit", "replay", "--data", data, "--out", out, "--to", to, NULL);
    ck_assert_msg(rc == 0, "replay --to %s: exit %d: %s", to, rc, err);
    free(err);
    return out;
}

/* Each partner query of partner as of the close of period equals the
 * query of the replay to the close's seq. */
static void assert_partner_as_of(const char *data, const char *views, const char *partner,
                                 const char *period, uint64_t seq)
{
    static const char *const cmds[] = {"balance", "rebate", "tier", "claims"};
    char *live = join(data, "views");
    char *replay = replay_to(data, "replay", seq);
    for (int i = 0; i < 4; i++) {
        json_t *got = answer(data, cmds[i], partner, "--data", data, "--views", live,
                             "--as-of-close", period, NULL);
        json_t *want = answer(data, cmds[i], partner, "--views", replay, NULL);
        char what[160];
        snprintf(what, sizeof what, "%s %s as of %s", cmds[i], partner, period);
        assert_same(got, want, what);
        ck_assert_int_eq(json_integer_value(json_object_get(got, "seq")), (json_int_t)seq);
        json_decref(got);
        json_decref(want);
    }
    (void)views;
    tu_rmtree(replay);
    free(live);
}

START_TEST(as_of_close_equals_a_replay_to_its_seq)
{
    char *data = vector_data();
    uint64_t q1 = close_seq(data, "apex", "2025-Q1");
    assert_partner_as_of(data, NULL, "litware-distributor-304", "2025-Q1", q1);
    uint64_t june = close_seq(data, "nimbus", "2025-06");
    assert_partner_as_of(data, NULL, "nod-var-856", "2025-06", june);
    /* liabilities of every program as the log stood after apex's close */
    char *replay = replay_to(data, "replay-q1", q1);
    json_t *got = answer(data, "liabilities", "--data", data, "--as-of-close", "2025-Q1",
                         "--program", "apex", NULL);
    json_t *want = answer(data, "liabilities", "--views", replay, NULL);
    assert_same(got, want, "liabilities as of apex 2025-Q1");
    json_decref(got);
    json_decref(want);
    /* an independent fold in this process to the close's seq */
    tly_engine *e;
    ck_assert_int_eq(tly_engine_new(0, 1, &e), TLY_OK);
    fold(data, q1, e, NULL);
    want = tly_engine_view(e, 'b', "datum-msp-614");
    got = answer(data, "balance", "datum-msp-614", "--data", data, "--program", "apex",
                 "--as-of-close", "2025-Q1", NULL);
    assert_same(got, want, "balance datum-msp-614 against an in-process fold");
    json_decref(got);
    json_decref(want);
    tly_engine_free(e);
    free(replay);
    tu_rmtree(data);
}
END_TEST

/* mtime and inode of a file, to tell a kept file from a rewritten one. */
static void file_id(const char *path, struct stat *st)
{
    ck_assert_msg(stat(path, st) == 0, "%s missing", path);
}

START_TEST(the_replay_is_kept_and_reused)
{
    char *data = vector_data();
    uint64_t q2 = close_seq(data, "apex", "2025-Q2");
    char dir[64];
    snprintf(dir, sizeof dir, "asof/seq-%llu", (unsigned long long)q2);
    char *views = join(data, dir);
    json_t *first = answer(data, "tier", "graphic-oem-685", "--data", data, "--program", "apex",
                           "--as-of-close", "2025-Q2", NULL);
    /* one replay at the close's seq, its shards at that seq, no build left */
    char *shard = NULL, *index = join(data, "asof/closes.json");
    for (int n = 1; n <= 4 && !shard; n++) {
        char name[32];
        snprintf(name, sizeof name, "0-of-%d/data.mdb", n);
        shard = join(views, name);
        if (access(shard, F_OK) != 0) {
            free(shard);
            shard = NULL;
        }
    }
    ck_assert_msg(shard != NULL, "no replay in %s", views);
    struct stat a, b, ia, ib;
    file_id(shard, &a);
    file_id(index, &ia);
    json_t *again = answer(data, "tier", "graphic-oem-685", "--data", data, "--program", "apex",
                           "--as-of-close", "2025-Q2", NULL);
    json_t *other = answer(data, "claims", "humongous-msp-139", "--data", data, "--program", "apex",
                           "--as-of-close", "2025-Q2", NULL);
    file_id(shard, &b);
    file_id(index, &ib);
    ck_assert(a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
              a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
    ck_assert(ia.st_ino == ib.st_ino && ia.st_mtim.tv_nsec == ib.st_mtim.tv_nsec);
    assert_same(again, first, "the same question twice");
    ck_assert_int_eq(json_integer_value(json_object_get(other, "seq")), (json_int_t)q2);
    char *build = join(data, "asof");
    char *ls[] = {"/bin/sh", "-c", "ls \"$0\" | grep -c build-", build, NULL};
    char *out = join(data, "ls.out");
    ck_assert_int_eq(tu_run(ls, NULL, out, NULL), 1); /* grep found none */
    free(out);
    free(build);
    json_decref(first);
    json_decref(again);
    json_decref(other);
    free(shard);
    free(index);
    free(views);
    tu_rmtree(data);
}
END_TEST

/* An as-of question that has no answer, by exit code and message. */
static void assert_refused(const char *data, int code, const char *text, const char *program,
                           const char *period)
{
    char *err = NULL;
    int rc = tally(data, NULL, &err, "balance", "datum-msp-614", "--data", data, "--program",
                   program, "--as-of-close", period, NULL);
    ck_assert_msg(rc == code && strstr(err, text), "%s %s: exit %d: %s", program, period, rc, err);
    free(err);
}

START_TEST(unknown_and_open_closes_are_errors)
{
    char *data = vector_data();
    assert_refused(data, 1, "unknown program 'apexx' (the log has: apex, nimbus)", "apexx",
                   "2025-Q1");
    assert_refused(data, 1, "not closed yet", "apex", "2027-Q1");
    assert_refused(data, 1, "quarterly periods", "apex", "2025-03");
    assert_refused(data, 1, "was never open", "apex", "2024-Q4");
    assert_refused(data, 2, "takes a period", "apex", "2025-Q5");
    char *err = NULL;
    ck_assert_int_eq(
        tally(data, NULL, &err, "liabilities", "--data", data, "--as-of-close", "2025-Q1", NULL),
        2);
    ck_assert_ptr_nonnull(strstr(err, "needs --program"));
    free(err);
    ck_assert_int_eq(tally(data, NULL, &err, "rebate", "nod-var-856", "--program", "nimbus", NULL),
                     2);
    ck_assert_ptr_nonnull(strstr(err, "--program goes with --as-of-close"));
    free(err);
    /* without --program the partner's program is asked of the live views */
    char *live = join(data, "views");
    ck_assert_int_eq(tally(data, NULL, &err, "rebate", "nod-var-856", "--data", data, "--views",
                           live, "--as-of-close", "2025-Q1", NULL),
                     1);
    ck_assert_msg(strstr(err, "monthly periods") != NULL, "%s", err);
    free(err);
    free(live);
    tu_rmtree(data);
}
END_TEST

/* The vector's first apex program event with every MDF rate doubled, as
 * version 2, written to DATA/name. */
static char *what_if_file(const char *data, const char *name, const char *program)
{
    char *path = tu_vector("seed102-v2-events.jsonl");
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[65536];
    json_t *ev = NULL;
    while (!ev && fgets(line, sizeof line, f)) {
        json_t *rec = json_loads(line, 0, NULL);
        json_t *e = json_object_get(rec, "event");
        if (strcmp(json_string_value(json_object_get(e, "type")), "program") == 0 &&
            strcmp(json_string_value(json_object_get(e, "program")), "apex") == 0)
            ev = json_incref(e);
        json_decref(rec);
    }
    fclose(f);
    free(path);
    ck_assert_ptr_nonnull(ev);
    size_t i;
    json_t *tier;
    json_array_foreach(json_object_get(ev, "tiers"), i, tier) json_object_set_new(
        tier, "mdf_bps", json_integer(2 * json_integer_value(json_object_get(tier, "mdf_bps"))));
    json_object_set_new(ev, "version", json_integer(2));
    json_object_set_new(ev, "program", json_string(program));
    json_object_del(ev, "id");
    char *file = join(data, name);
    ck_assert_int_eq(json_dump_file(ev, file, 0), 0);
    json_decref(ev);
    return file;
}

/* Checks one program of a comparison: live as the live views say, the
 * changes, and the movers in order. */
static void assert_program(json_t *p, json_t *live_row, bool changes)
{
    json_t *live = json_object_get(p, "live"), *wi = json_object_get(p, "what_if"),
           *d = json_object_get(p, "change");
    const char *key;
    json_t *v;
    bool any = false;
    json_object_foreach(live, key, v)
    {
        ck_assert(json_equal(v, json_object_get(live_row, key)));
        json_int_t change = json_integer_value(json_object_get(wi, key)) - json_integer_value(v);
        ck_assert_int_eq(json_integer_value(json_object_get(d, key)), change);
        any = any || change != 0;
    }
    ck_assert(any == changes);
    json_t *movers = json_object_get(p, "movers");
    ck_assert(changes ? json_array_size(movers) > 0 : json_array_size(movers) == 0);
    ck_assert_uint_le(json_array_size(movers), TLY_AUDIT_COMPARE_MOVERS_MAX);
    long long prev = -1;
    size_t i;
    json_t *m;
    json_array_foreach(movers, i, m)
    {
        json_t *a = json_object_get(m, "available"), *r = json_object_get(m, "rebate_payable");
        ck_assert_ptr_nonnull(json_object_get(json_object_get(m, "tier"), "what_if"));
        long long s = llabs((long long)json_integer_value(json_object_get(a, "change"))) +
                      llabs((long long)json_integer_value(json_object_get(r, "change")));
        ck_assert(s > 0 && (prev < 0 || s <= prev));
        prev = s;
        ck_assert_int_eq(json_integer_value(json_object_get(a, "change")),
                         json_integer_value(json_object_get(a, "what_if")) -
                             json_integer_value(json_object_get(a, "live")));
    }
}

START_TEST(what_if_compare_shows_changes_and_movers)
{
    char *data = vector_data(), *file = what_if_file(data, "apex-v2.json", "apex");
    char *out = join(data, "wi");
    json_t *c = answer(data, "audit", "replay", "--data", data, "--out", out, "--program", file,
                       "--compare", NULL);
    char *live = join(data, "views");
    json_t *liab = answer(data, "liabilities", "--views", live, NULL);
    ck_assert(json_equal(json_object_get(c, "seq"), json_object_get(liab, "seq")));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "what_if"), "program")),
                     "apex");
    json_t *progs = json_object_get(c, "programs");
    ck_assert_uint_eq(json_array_size(progs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(progs, i);
        const char *name = json_string_value(json_object_get(p, "program"));
        json_t *row = json_array_get(json_object_get(liab, "programs"), i);
        ck_assert_str_eq(name, json_string_value(json_object_get(row, "program")));
        assert_program(p, row, strcmp(name, "apex") == 0);
    }
    /* the human table */
    char *text = NULL, *out2 = join(data, "wi2");
    ck_assert_int_eq(tally(data, &text, NULL, "audit", "replay", "--data", data, "--out", out2,
                           "--program", file, "--compare", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(text, "apex (USD)"));
    ck_assert_ptr_nonnull(strstr(text, "Partners that change most"));
    ck_assert_ptr_nonnull(strstr(text, "No partner of nimbus changes."));
    free(text);
    free(out2);
    json_decref(c);
    json_decref(liab);
    free(live);
    free(out);
    free(file);
    tu_rmtree(data);
}
END_TEST

/* A what-if file that cannot be compared: exit 1 with the reason. */
static void assert_bad_file(const char *data, const char *file, const char *text, int code)
{
    char *err = NULL, *out = join(data, "bad-out");
    int rc = tally(data, NULL, &err, "audit", "replay", "--data", data, "--out", out, "--program",
                   file, "--compare", NULL);
    ck_assert_msg(rc == code && strstr(err, text), "%s: exit %d: %s", file, rc, err);
    free(err);
    free(out);
}

START_TEST(what_if_bad_files_are_errors)
{
    char *data = vector_log();
    char *typo = what_if_file(data, "typo.json", "apexx");
    assert_bad_file(data, typo, "program 'apexx' is not in the log (the log has: apex, nimbus)", 1);
    char *sale = join(data, "sale.json"), *junk = join(data, "junk.json");
    const char *s = "{\"type\":\"sale\",\"id\":\"S1\",\"at\":1735689600000,\"partner\":\"p\","
                    "\"sku\":\"k\",\"qty\":1,\"amount\":100,\"currency\":\"USD\"}";
    ck_assert(tu_write_file(sale, s, strlen(s)));
    assert_bad_file(data, sale, "the event must be of type program", 1);
    ck_assert(tu_write_file(junk, "{\"type\":", 8));
    assert_bad_file(data, junk, "not a JSON object", 1);
    char *err = NULL, *out = join(data, "o");
    ck_assert_int_eq(
        tally(data, NULL, &err, "audit", "replay", "--data", data, "--out", out, "--compare", NULL),
        2);
    ck_assert_ptr_nonnull(strstr(err, "--compare goes with --program"));
    free(err);
    free(out);
    free(typo);
    free(sale);
    free(junk);
    tu_rmtree(data);
}
END_TEST

/* ------------------------------------------------------------------ limits */

/* Appends events (JSON texts) to the log of data (created when new), all
 * recorded at now_ms, one append each. */
static void append_events(const char *data, char *const *events, uint32_t n, int64_t now_ms)
{
    char *log_dir = join(data, "log");
    tly_log *log;
    ck_assert_int_eq(tly_log_open(log_dir, TLY_LOG_WRITE | TLY_LOG_NO_SYNC, &log), TLY_OK);
    for (uint32_t i = 0; i < n; i++) {
        json_t *j = json_loads(events[i], 0, NULL);
        ck_assert_msg(j != NULL, "%s", events[i]);
        msgpack_sbuffer mp;
        msgpack_sbuffer_init(&mp);
        ck_assert_int_eq(tly_json_event_to_mp(j, &mp, NULL), TLY_OK);
        tly_event ev;
        ck_assert_int_eq(tly_event_decode(mp.data, mp.size, now_ms, &ev, NULL), TLY_OK);
        tly_log_item it = {.source = {"test", 4},
                           .id = ev.id,
                           .event = (const uint8_t *)mp.data,
                           .event_len = mp.size};
        ck_assert_int_eq(tly_log_append(log, now_ms, &it, 1, NULL, 0), TLY_OK);
        ck_assert_int_eq(it.err, TLY_OK);
        msgpack_sbuffer_destroy(&mp);
        json_decref(j);
    }
    tly_log_close(log);
    free(log_dir);
}

/* A monthly program event of one tier, as JSON text (malloc'd). */
static char *program_event(const char *id, const char *program, int64_t at_ms)
{
    char *s = malloc(512);
    snprintf(s, 512,
             "{\"type\":\"program\",\"id\":\"%s\",\"at\":%lld,\"program\":\"%s\","
             "\"version\":1,\"currency\":\"USD\",\"period\":\"month\",\"tiers\":"
             "[{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100}],"
             "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100}]},"
             "\"mdf_expiry_periods\":4,\"tier_window_periods\":2}",
             id, (long long)at_ms, program);
    return s;
}

/* The close of monthly period p of program, dated at the next one's start. */
static char *close_event(const char *id, const char *program, int32_t p)
{
    char text[TLY_PERIOD_TEXT_BYTES], *s = malloc(256);
    tly_period_format(TLY_PERIOD_MONTH, p, text);
    snprintf(s, 256,
             "{\"type\":\"close\",\"id\":\"%s\",\"at\":%lld,\"program\":\"%s\",\"period\":\"%s\"}",
             id, (long long)tly_period_start_ms(TLY_PERIOD_MONTH, p + 1), program, text);
    return s;
}

static void free_events(char **events, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(events[i]);
    free(events);
}

/* The close index holds TLY_AUDIT_CLOSES_PROGRAMS_MAX programs; the log's
 * next program is refused (exit 1) with its seq and the limit. */
START_TEST(close_index_holds_programs_up_to_the_limit)
{
    const uint32_t max = TLY_AUDIT_CLOSES_PROGRAMS_MAX;
    char *data = tu_tmpdir();
    int64_t at =
        tly_period_start_ms(TLY_PERIOD_MONTH, tly_period_of(TLY_PERIOD_MONTH, tly_now_ms())) - 1;
    char **ev = calloc(max + 1, sizeof *ev);
    for (uint32_t i = 0; i <= max; i++) {
        char id[32], name[32];
        snprintf(id, sizeof id, "PG-%05u", i);
        snprintf(name, sizeof name, "pg-%05u", i);
        ev[i] = program_event(id, name, at);
    }
    append_events(data, ev, max, tly_now_ms());
    tly_audit_closes *c = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES] = "", last[32];
    ck_assert_int_eq(tly_audit_closes_open(data, false, &c, msg, sizeof msg), TLY_OK);
    snprintf(last, sizeof last, "pg-%05u", max - 1);
    ck_assert_uint_eq(tly_audit_closes_program_seq(c, last), max);
    tly_audit_closes_free(c);
    append_events(data, ev + max, 1, tly_now_ms());
    c = NULL;
    ck_assert_int_eq(tly_audit_closes_open(data, false, &c, msg, sizeof msg), TLY_TOO_LARGE);
    ck_assert_ptr_null(c);
    char want[128];
    snprintf(want, sizeof want, "seq %u: program pg-%05u is past the %u programs", max + 1, max,
             max);
    ck_assert_msg(strstr(msg, want) != NULL, "%s", msg);
    char *err = NULL;
    int rc = tally(data, NULL, &err, "balance", "p-1", "--data", data, "--program", last,
                   "--as-of-close", "2025-01", NULL);
    ck_assert_msg(rc == 1 && strstr(err, want) != NULL, "exit %d: %s", rc, err);
    free(err);
    free_events(ev, max + 1);
    tu_rmtree(data);
}
END_TEST

/* The close index holds TLY_AUDIT_CLOSES_PERIODS_MAX closed periods of a
 * program; the close of the next is refused (exit 1) with its seq and the
 * limit. The periods run from TLY_YEAR_MIN, recorded after the last. */
START_TEST(close_index_holds_periods_up_to_the_limit)
{
    const uint32_t max = TLY_AUDIT_CLOSES_PERIODS_MAX;
    char *data = tu_tmpdir();
    int32_t first = TLY_YEAR_MIN * 12;
    int64_t now = tly_period_start_ms(TLY_PERIOD_MONTH, first + (int32_t)max + 2);
    char **ev = calloc(max + 2, sizeof *ev);
    ev[0] = program_event("PG-1", "pm", tly_period_start_ms(TLY_PERIOD_MONTH, first));
    for (uint32_t i = 0; i <= max; i++) {
        char id[32];
        snprintf(id, sizeof id, "CL-%05u", i);
        ev[i + 1] = close_event(id, "pm", first + (int32_t)i);
    }
    append_events(data, ev, max + 1, now);
    tly_audit_closes *c = NULL;
    char msg[TLY_AUDIT_ERROR_BYTES] = "", period[TLY_PERIOD_TEXT_BYTES];
    ck_assert_int_eq(tly_audit_closes_open(data, false, &c, msg, sizeof msg), TLY_OK);
    tly_period_format(TLY_PERIOD_MONTH, first + (int32_t)max - 1, period);
    uint64_t seq = 0;
    ck_assert_int_eq(tly_audit_closes_find(c, "pm", period, &seq, msg, sizeof msg), TLY_OK);
    ck_assert_uint_eq(seq, max + 1);
    tly_audit_closes_free(c);
    append_events(data, ev + max + 1, 1, now);
    c = NULL;
    ck_assert_int_eq(tly_audit_closes_open(data, false, &c, msg, sizeof msg), TLY_TOO_LARGE);
    char want[128];
    snprintf(want, sizeof want, "seq %u: a close of program pm past the %u periods", max + 2, max);
    ck_assert_msg(strstr(msg, want) != NULL, "%s", msg);
    char *err = NULL;
    int rc = tally(data, NULL, &err, "balance", "p-1", "--data", data, "--program", "pm",
                   "--as-of-close", period, NULL);
    ck_assert_msg(rc == 1 && strstr(err, want) != NULL, "exit %d: %s", rc, err);
    free(err);
    free_events(ev, max + 2);
    tu_rmtree(data);
}
END_TEST

/* A log of program pm (mdf_bps 100) and `moving` partners mv-00.. of it,
 * partner i with one sale of (i + 1) * 10,000 in 2025-01, folded into
 * DATA/views; and pm again as version 2 with mdf_bps 200 in DATA/pm-v2.json
 * (malloc'd path in *file). Under it each partner's MDF available grows by
 * its own (i + 1) * 100 (no close: nothing expires, nothing is payable). */
static char *movers_data(uint32_t moving, char **file)
{
    char *data = tu_tmpdir();
    int32_t jan = 2025 * 12;
    int64_t t0 = tly_period_start_ms(TLY_PERIOD_MONTH, jan);
    uint32_t n = 1 + 2 * moving;
    char **ev = calloc(n, sizeof *ev);
    ev[0] = program_event("PG-1", "pm", t0);
    for (uint32_t i = 0; i < moving; i++) {
        ev[1 + 2 * i] = malloc(256);
        snprintf(ev[1 + 2 * i], 256,
                 "{\"type\":\"partner\",\"id\":\"PA-%02u\",\"at\":%lld,\"partner\":"
                 "\"mv-%02u\",\"program\":\"pm\",\"name\":\"Mover %u\",\"kind\":\"var\","
                 "\"region\":\"EMEA\"}",
                 i, (long long)t0 + 1000, i, i);
        ev[2 + 2 * i] = malloc(256);
        snprintf(ev[2 + 2 * i], 256,
                 "{\"type\":\"sale\",\"id\":\"SA-%02u\",\"at\":%lld,\"partner\":\"mv-%02u\","
                 "\"sku\":\"k\",\"qty\":1,\"amount\":%u,\"currency\":\"USD\"}",
                 i, (long long)t0 + 2000, i, (i + 1) * 10000);
    }
    append_events(data, ev, n, tly_now_ms());
    free_events(ev, n);
    char *const argv[] = {(char *)tu_tally(), "consume", "--data",         data,
                          "--shard",          "0/1",     "--exit-at-head", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    char *v2 = program_event("PG-2", "pm", t0);
    json_t *j = json_loads(v2, 0, NULL);
    free(v2);
    json_object_set_new(j, "version", json_integer(2));
    json_object_set_new(json_array_get(json_object_get(j, "tiers"), 0), "mdf_bps",
                        json_integer(200));
    *file = join(data, "pm-v2.json");
    ck_assert_int_eq(json_dump_file(j, *file, 0), 0);
    json_decref(j);
    return data;
}

/* TLY_AUDIT_COMPARE_MOVERS_MAX at its edge: with exactly that many
 * partners moving, all are listed; with one more, that many are, the ones
 * that change most, largest first (the smallest mover, mv-00, is left
 * out). */
START_TEST(what_if_compare_lists_movers_up_to_the_limit)
{
    for (uint32_t over = 0; over < 2; over++) {
        uint32_t moving = TLY_AUDIT_COMPARE_MOVERS_MAX + over;
        char *file = NULL, *data = movers_data(moving, &file), *out = join(data, "wi");
        json_t *c = answer(data, "audit", "replay", "--data", data, "--out", out, "--program", file,
                           "--compare", NULL);
        json_t *p = json_array_get(json_object_get(c, "programs"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(p, "program")), "pm");
        json_t *movers = json_object_get(p, "movers");
        ck_assert_uint_eq(json_array_size(movers), TLY_AUDIT_COMPARE_MOVERS_MAX);
        for (uint32_t i = 0; i < TLY_AUDIT_COMPARE_MOVERS_MAX; i++) {
            uint32_t want = moving - 1 - i; /* mv-NN moves by (NN + 1) * 100 */
            json_t *m = json_array_get(movers, i);
            char id[16];
            snprintf(id, sizeof id, "mv-%02u", want);
            ck_assert_str_eq(json_string_value(json_object_get(m, "partner")), id);
            json_t *a = json_object_get(m, "available");
            ck_assert_int_eq(json_integer_value(json_object_get(a, "change")), (want + 1) * 100);
        }
        json_decref(c);
        free(out);
        free(file);
        tu_rmtree(data);
    }
}
END_TEST

static Suite *asof_suite(void)
{
    Suite *s = suite_create("asof");
    TCase *tc = tu_tcase(s, "asof", 300);
    tu_add_tests(tc,
                 TU_TESTS(index_agrees_with_the_engine, as_of_close_equals_a_replay_to_its_seq,
                          the_replay_is_kept_and_reused, unknown_and_open_closes_are_errors,
                          what_if_compare_shows_changes_and_movers, what_if_bad_files_are_errors,
                          close_index_holds_programs_up_to_the_limit,
                          close_index_holds_periods_up_to_the_limit,
                          what_if_compare_lists_movers_up_to_the_limit));
    return s;
}

int main(void)
{
    return tu_run_suite(asof_suite());
}
