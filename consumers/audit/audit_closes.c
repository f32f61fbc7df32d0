/*
 * audit_closes.c — the index of closes behind `--as-of-close`: for every
 * program of the log, its period kind, its first period and, for each
 * period closed so far, the seq of the close that closed it.
 *
 * The index is derived from the log with the engine's own rules, not from
 * the views: a program is known from its first program event in log order
 * and its first period is that event's [P5] [G1] (a later version never
 * changes the period kind [G2]); a close closes the program's earliest
 * open period when it names exactly that period in the program's kind
 * [L1] of a known program [L2] and is dated at or after the period's end
 * [L3] [L7]; any other close changes nothing. These are the checks of
 * eng_on_close (consumers/engine/engine_program.c) in the same order, and
 * test_asof folds the seed102-v2 vector through the engine and checks that
 * each close the engine judged closing is the one indexed here.
 *
 * Only program and close events are decoded (the type is peeked first), so
 * building the index reads the log but folds nothing. It is kept in
 * DATA/asof/closes.json with the seq scanned to and that record's hash;
 * the next question scans only the records appended since. A log whose
 * record at that seq has another hash (a different data directory under
 * the same path) drops the index and every replay kept beside it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_int.h"
#include "tly_audit.h"
#include "tly_event.h"
#include "tly_json.h"
#include "tly_layout.h"
#include "tly_log.h"
#include "tly_os.h"
#include "tly_period.h"

/* The index's file format; another number is rebuilt. */
#define CLOSES_FORMAT 1

typedef struct closes_program {
    char name[TLY_NAME_BYTES_MAX + 1];
    tly_period_kind kind;
    int32_t first;   /* first period */
    uint64_t seq;    /* its first program event */
    uint64_t *close; /* close[i]: seq of the close of period first + i */
    uint32_t count, cap;
} closes_program;

struct tly_audit_closes {
    uint64_t scanned; /* the last seq read */
    uint8_t hash[TLY_HASH_BYTES];
    closes_program *programs;
    uint32_t count, cap;
};

void tly_audit_closes_free(tly_audit_closes *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->count; i++)
        free(c->programs[i].close);
    free(c->programs);
    free(c);
}

static void closes_clear(tly_audit_closes *c)
{
    for (uint32_t i = 0; i < c->count; i++)
        free(c->programs[i].close);
    free(c->programs);
    *c = (tly_audit_closes){0};
}

static closes_program *program_find(const tly_audit_closes *c, const char *name, size_t len)
{
    for (uint32_t i = 0; i < c->count; i++)
        if (strlen(c->programs[i].name) == len && memcmp(c->programs[i].name, name, len) == 0)
            return &c->programs[i];
    return NULL;
}

static tly_err program_add(tly_audit_closes *c, const closes_program *p)
{
    if (c->count == TLY_AUDIT_CLOSES_PROGRAMS_MAX)
        return TLY_TOO_LARGE;
    if (c->count == c->cap) {
        uint32_t cap = c->cap ? 2 * c->cap : 8;
        closes_program *n = realloc(c->programs, cap * sizeof *n);
        if (!n)
            return TLY_NOMEM;
        c->programs = n;
        c->cap = cap;
    }
    c->programs[c->count++] = *p;
    return TLY_OK;
}

static tly_err close_add(closes_program *p, uint64_t seq)
{
    if (p->count == TLY_AUDIT_CLOSES_PERIODS_MAX)
        return TLY_TOO_LARGE;
    if (p->count == p->cap) {
        uint32_t cap = p->cap ? 2 * p->cap : 16;
        uint64_t *n = realloc(p->close, cap * sizeof *n);
        if (!n)
            return TLY_NOMEM;
        p->close = n;
        p->cap = cap;
    }
    p->close[p->count++] = seq;
    return TLY_OK;
}

/* ---- the rules (eng_on_program, eng_on_close) ---- */

/* The first program event of a name makes the program [P5] [G1]. */
static tly_err on_program(tly_audit_closes *c, const tly_event *ev, uint64_t seq)
{
    if (program_find(c, ev->program.ptr, ev->program.len))
        return TLY_OK; /* a later version keeps the kind [G2] */
    closes_program p = {
        .kind = ev->period_kind, .first = tly_period_of(ev->period_kind, ev->at_ms), .seq = seq};
    memcpy(p.name, ev->program.ptr, ev->program.len);
    return program_add(c, &p);
}

/* A close of a known program [L2] naming its earliest open period [L1],
 * dated at or after that period's end [L3] [L7], closes it. */
static tly_err on_close(tly_audit_closes *c, const tly_event *ev, uint64_t seq)
{
    closes_program *p = program_find(c, ev->program.ptr, ev->program.len);
    if (!p)
        return TLY_OK;
    int32_t open = p->first + (int32_t)p->count;
    if (ev->period_text_kind != p->kind || ev->period != open)
        return TLY_OK;
    if (ev->at_ms < tly_period_start_ms(p->kind, open + 1))
        return TLY_OK;
    return close_add(p, seq);
}

/* Folds one record into the index: program and close events only. */
static tly_err index_record(tly_audit_closes *c, const tly_record *rec, char *msg, size_t cap)
{
    tly_ev_type type;
    tly_str id;
    tly_err err = tly_event_peek_id(rec->event, rec->event_len, &type, &id);
    if (err == TLY_OK && type != TLY_EV_PROGRAM && type != TLY_EV_CLOSE)
        return TLY_OK;
    tly_event ev;
    if (err == TLY_OK)
        err = tly_event_decode(rec->event, rec->event_len, rec->recorded_ms, &ev, NULL);
    if (err != TLY_OK) {
        tly_audit_msgf(msg, cap, "seq %llu: event does not decode: run 'tally audit verify'",
                       (unsigned long long)rec->seq);
        return TLY_CORRUPT;
    }
    err = type == TLY_EV_PROGRAM ? on_program(c, &ev, rec->seq) : on_close(c, &ev, rec->seq);
    if (err == TLY_TOO_LARGE && type == TLY_EV_PROGRAM)
        tly_audit_msgf(msg, cap,
                       "seq %llu: program %.*s is past the %u programs the close index holds",
                       (unsigned long long)rec->seq, (int)ev.program.len, ev.program.ptr,
                       TLY_AUDIT_CLOSES_PROGRAMS_MAX);
    else if (err == TLY_TOO_LARGE)
        tly_audit_msgf(msg, cap,
                       "seq %llu: a close of program %.*s past the %u periods the close index "
                       "holds per program",
                       (unsigned long long)rec->seq, (int)ev.program.len, ev.program.ptr,
                       TLY_AUDIT_CLOSES_PERIODS_MAX);
    return err;
}

/* ---- reading the log ---- */

/* True when the log's record at c->scanned still has the hash the index
 * was built to (the index belongs to this log). Reads that one record. */
static bool anchor_holds(tly_log *log, const tly_audit_closes *c)
{
    if (c->scanned == 0)
        return true;
    tly_log_reader *rd = NULL;
    tly_record rec;
    bool ok = tly_log_reader_open(log, c->scanned, &rd) == TLY_OK &&
              tly_log_reader_next(rd, &rec) == TLY_OK && rec.seq == c->scanned &&
              memcmp(rec.hash, c->hash, TLY_HASH_BYTES) == 0;
    tly_log_reader_close(rd);
    return ok;
}

/* Reads the records after c->scanned, up to the head of one snapshot. */
static tly_err index_scan(tly_log *log, tly_audit_closes *c, char *msg, size_t cap)
{
    tly_log_reader *rd = NULL;
    tly_err err = tly_log_reader_open(log, c->scanned + 1, &rd);
    tly_record rec;
    while (err == TLY_OK && (err = tly_log_reader_next(rd, &rec)) == TLY_OK) {
        err = index_record(c, &rec, msg, cap);
        if (err == TLY_OK) {
            c->scanned = rec.seq;
            memcpy(c->hash, rec.hash, TLY_HASH_BYTES);
        }
    }
    tly_log_reader_close(rd);
    if (err == TLY_CORRUPT && !(msg && msg[0]))
        tly_audit_msgf(msg, cap, "seq %llu: record does not decode: run 'tally audit verify'",
                       (unsigned long long)c->scanned + 1);
    return err == TLY_NOT_FOUND ? TLY_OK : err;
}

/* ---- the file ---- */

/* Lowercase or uppercase hex of 2 * n digits into out; false on a bad one. */
static bool hex_decode(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char ch = hex[i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0)
            return false;
        out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] << 4) | v : v);
    }
    return true;
}

/* One program of the file into c; false when the entry is not one. */
static bool program_from_json(tly_audit_closes *c, const json_t *o)
{
    const char *name = json_string_value(json_object_get(o, "program"));
    const char *first = json_string_value(json_object_get(o, "first"));
    json_t *closes = json_object_get(o, "closes");
    json_int_t seq = json_integer_value(json_object_get(o, "seq"));
    closes_program p = {.seq = (uint64_t)seq};
    if (!name || strlen(name) == 0 || strlen(name) > TLY_NAME_BYTES_MAX || !first ||
        tly_period_parse(first, strlen(first), &p.kind, &p.first) != TLY_OK ||
        !json_is_array(closes) || seq < 1)
        return false;
    memcpy(p.name, name, strlen(name));
    size_t i;
    json_t *v;
    json_array_foreach(closes, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            close_add(&p, (uint64_t)json_integer_value(v)) != TLY_OK) {
            free(p.close);
            return false;
        }
    }
    if (program_add(c, &p) != TLY_OK) {
        free(p.close);
        return false;
    }
    return true;
}

/* Reads the index file into c; an absent or unreadable file (or another
 * format) leaves c empty: the index is rebuilt from seq 1. */
static void index_read(const char *path, tly_audit_closes *c)
{
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    const char *hex = json_string_value(json_object_get(doc, "hash"));
    json_t *progs = json_object_get(doc, "programs");
    json_int_t scanned = json_integer_value(json_object_get(doc, "scanned"));
    bool ok = json_integer_value(json_object_get(doc, "format")) == CLOSES_FORMAT && hex &&
              strlen(hex) == 2 * TLY_HASH_BYTES && json_is_array(progs) && scanned >= 0 &&
              hex_decode(hex, c->hash, TLY_HASH_BYTES);
    size_t i;
    json_t *o;
    json_array_foreach(ok ? progs : NULL, i, o) ok = ok && program_from_json(c, o);
    c->scanned = ok ? (uint64_t)scanned : 0;
    if (!ok)
        closes_clear(c);
    json_decref(doc);
}

static json_t *index_json(const tly_audit_closes *c)
{
    char hex[2 * TLY_HASH_BYTES + 1], first[TLY_PERIOD_TEXT_BYTES];
    tly_hex_encode(c->hash, TLY_HASH_BYTES, hex);
    json_t *progs = json_array();
    json_t *doc = json_pack("{s:i, s:I, s:s, s:o}", "format", CLOSES_FORMAT, "scanned",
                            (json_int_t)c->scanned, "hash", hex, "programs", progs);
    for (uint32_t i = 0; doc && i < c->count; i++) {
        const closes_program *p = &c->programs[i];
        tly_period_format(p->kind, p->first, first);
        json_t *closes = json_array();
        for (uint32_t k = 0; closes && k < p->count; k++)
            json_array_append_new(closes, json_integer((json_int_t)p->close[k]));
        json_array_append_new(progs, json_pack("{s:s, s:s, s:s, s:I, s:o*}", "program", p->name,
                                               "period", tly_period_kind_name(p->kind), "first",
                                               first, "seq", (json_int_t)p->seq, "closes", closes));
    }
    return doc;
}

/* Writes the index: a temporary file renamed over the old one, so a
 * reader sees one whole file or the other. */
static tly_err index_write(const char *path, const tly_audit_closes *c)
{
    char tmp[TLY_PATH_BYTES_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    json_t *doc = index_json(c);
    int rc = doc ? json_dump_file(doc, tmp, JSON_COMPACT) : -1;
    json_decref(doc);
    if (rc != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return TLY_STORAGE;
    }
    return TLY_OK;
}

/* ---- public ---- */

/* Opens the log and brings c up to its head: from the file when it
 * belongs to this log, else from seq 1 (and the kept replays go). */
static tly_err closes_update(const char *data, bool keep, tly_audit_closes *c, char *msg,
                             size_t cap)
{
    char log_dir[TLY_PATH_BYTES_MAX], dir[TLY_PATH_BYTES_MAX], path[TLY_PATH_BYTES_MAX];
    if (tly_layout_log(data, log_dir, sizeof log_dir) != TLY_OK ||
        tly_layout_asof(data, dir, sizeof dir) != TLY_OK ||
        tly_layout_asof_index(data, path, sizeof path) != TLY_OK) {
        tly_audit_msgf(msg, cap, "path too long: %s", data);
        return TLY_USAGE;
    }
    tly_log *log = NULL;
    tly_err err = tly_log_open(log_dir, TLY_LOG_READ, &log);
    if (err != TLY_OK) {
        tly_audit_msgf(msg, cap, "%s in %s", err == TLY_NOT_FOUND ? "no log" : tly_strerror(err),
                       log_dir);
        return err;
    }
    index_read(path, c);
    if (!anchor_holds(log, c)) {
        closes_clear(c);
        if (keep)
            tly_rmtree(dir); /* replays of another log */
    }
    uint64_t before = c->scanned;
    err = index_scan(log, c, msg, cap);
    tly_log_close(log);
    if (err == TLY_OK && keep && (c->scanned != before || access(path, F_OK) != 0) &&
        (tly_mkdirs(dir, NULL) != TLY_OK || index_write(path, c) != TLY_OK)) {
        tly_audit_msgf(msg, cap, "cannot write %s", path);
        err = TLY_STORAGE;
    }
    return err;
}

tly_err tly_audit_closes_open(const char *data, bool keep, tly_audit_closes **out, char *msg,
                              size_t cap)
{
    tly_audit_closes *c = calloc(1, sizeof *c);
    if (!c)
        return TLY_NOMEM;
    tly_err err = closes_update(data, keep, c, msg, cap);
    if (err != TLY_OK) {
        tly_audit_closes_free(c);
        return err;
    }
    *out = c;
    return TLY_OK;
}

uint64_t tly_audit_closes_scanned(const tly_audit_closes *c)
{
    return c->scanned;
}

uint64_t tly_audit_closes_program_seq(const tly_audit_closes *c, const char *program)
{
    const closes_program *p = program_find(c, program, strlen(program));
    return p ? p->seq : 0;
}

void tly_audit_closes_names(const tly_audit_closes *c, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < c->count && o < cap; i++) {
        int n = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", c->programs[i].name);
        o += n > 0 ? (size_t)n : 0;
    }
    if (c->count == 0)
        snprintf(buf, cap, "none");
}

/* Why period p of program g has no close: before its first period, or
 * still open (the earliest open period is named). */
static tly_err not_closed(const closes_program *g, int32_t p, const char *text, char *msg,
                          size_t cap)
{
    char first[TLY_PERIOD_TEXT_BYTES], open[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(g->kind, g->first, first);
    tly_period_format(g->kind, g->first + (int32_t)g->count, open);
    if (p < g->first) {
        tly_audit_msgf(msg, cap, "program %s starts at %s: %s was never open", g->name, first,
                       text);
        return TLY_NOT_FOUND;
    }
    tly_audit_msgf(msg, cap, "%s of program %s is not closed yet (its earliest open period is %s)",
                   text, g->name, open);
    return TLY_UNAVAILABLE;
}

tly_err tly_audit_closes_find(const tly_audit_closes *c, const char *program, const char *period,
                              uint64_t *seq, char *msg, size_t cap)
{
    const closes_program *g = program_find(c, program, strlen(program));
    if (!g) {
        char names[TLY_AUDIT_ERROR_BYTES];
        tly_audit_closes_names(c, names, sizeof names);
        tly_audit_msgf(msg, cap, "unknown program '%s' (the log has: %s)", program, names);
        return TLY_NOT_FOUND;
    }
    tly_period_kind kind;
    int32_t p;
    if (tly_period_parse(period, strlen(period), &kind, &p) != TLY_OK || kind != g->kind) {
        tly_audit_msgf(msg, cap, "program %s has %s periods (like 2025-%s), not '%s'", g->name,
                       g->kind == TLY_PERIOD_QUARTER ? "quarterly" : "monthly",
                       g->kind == TLY_PERIOD_QUARTER ? "Q1" : "01", period);
        return TLY_BAD_FIELD;
    }
    char text[TLY_PERIOD_TEXT_BYTES];
    tly_period_format(kind, p, text);
    if (p < g->first || p - g->first >= (int32_t)g->count)
        return not_closed(g, p, text, msg, cap);
    *seq = g->close[p - g->first];
    return TLY_OK;
}
