/*
 * finance_out.c — tables, CSV and GL codes of the finance commands. See
 * finance_out.h.
 *
 * The tables are the partner views' (cli_table.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_fields.h"
#include "cli_table.h"
#include "finance_out.h"
#include "tly_json.h"
#include "tly_limits.h"
#include "tly_query.h"

/* ------------------------------------------------------------------------ */
/* Fields                                                                    */

static int64_t int_of(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

/* Element i of an array of integers. */
static int64_t int_of_index(const json_t *arr, size_t i)
{
    return (int64_t)json_integer_value(json_array_get(arr, i));
}

static const char *money(int64_t minor, int exp, char *buf, size_t cap)
{
    tly_query_format_money(minor, exp, buf, cap);
    return buf;
}

/* The currency of a program in currencies, or NULL. */
static const char *currency_of(const json_t *currencies, const char *program)
{
    return program ? json_string_value(json_object_get(currencies, program)) : NULL;
}

/* The "As of seq N" block, with label/value pairs before it. */
static void print_head(const json_t *reply, const char *const *pairs, size_t n)
{
    cli_table t;
    cli_table_init(&t, "ll");
    for (size_t i = 0; i + 1 < n; i += 2)
        cli_table_row(&t, pairs[i], pairs[i + 1]);
    char seq[40];
    snprintf(seq, sizeof seq, "seq %lld", (long long)int_of(reply, "seq"));
    cli_table_row(&t, "As of", seq);
    cli_table_print(&t, false);
}

/* [D8] A cross-shard answer whose shards were at different positions. */
static void print_differ_note(const json_t *reply)
{
    if (!json_is_true(json_object_get(reply, "shards_differ")))
        return;
    printf("\nNote: the shards had applied different log positions; figures reflect at least\n"
           "seq %lld. Run 'tally wait --seq N' first for an answer as of one position.\n",
           (long long)int_of(reply, "seq"));
}

/* ------------------------------------------------------------------------ */
/* Tables                                                                    */

void tly_fin_table_partners(const json_t *reply, const json_t *currencies)
{
    print_head(reply, NULL, 0);
    printf("\n");
    json_t *list = json_object_get(reply, "partners");
    size_t count = json_array_size(list);
    if (count == 0) {
        printf("No partners match.\n");
        print_differ_note(reply);
        return;
    }
    cli_table t;
    cli_table_init(&t, "llllllrrl");
    cli_table_row(&t, "Partner", "Name", "Program", "Kind", "Region", "Tier", "MDF available",
                  "Rebate payable", "Currency");
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        const char *cur = currency_of(currencies, cli_str_of(p, "program", NULL));
        int exp = tly_query_currency_exponent(cur);
        char a[TLY_QUERY_MONEY_CHARS], b[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, cli_str_of(p, "partner", "-"), cli_str_of(p, "name", "-"),
                      cli_str_of(p, "program", "-"), cli_str_of(p, "kind", "-"),
                      cli_str_of(p, "region", "-"), cli_str_of(p, "tier", "-"),
                      cli_money_of(p, "available", exp, a, sizeof a),
                      cli_money_of(p, "rebate_payable", exp, b, sizeof b), cur ? cur : "-");
    }
    cli_table_print(&t, true);
    printf("\n%zu partner%s\n", count, count == 1 ? "" : "s");
    print_differ_note(reply);
}

/* The report's figures, in section 11's order, and their headings. */
static const char *const REPORT_KEYS[] = {
    "revenue",      "mdf_accrued", "mdf_clawed_back", "mdf_adjusted", "mdf_expired",
    "mdf_approved", "mdf_paid",    "rebate",          "referral",     "rebate_paid"};
static const char *const REPORT_HEADS[] = {"Revenue",  "MDF accrued",  "Clawed back", "Adjusted",
                                           "Expired",  "MDF approved", "MDF paid",    "Rebate",
                                           "Referral", "Rebate paid"};
#define REPORT_FIGURES (sizeof REPORT_KEYS / sizeof REPORT_KEYS[0])
_Static_assert(REPORT_FIGURES + 2 <= CLI_TABLE_COLS_MAX, "the report fits a table");
_Static_assert(REPORT_FIGURES == sizeof REPORT_HEADS / sizeof REPORT_HEADS[0], "a heading each");

/* One report row: period, status, the figures (added into sums unless
 * sums is NULL; *overflow set when a sum does not fit). */
static void report_row(cli_table *t, const json_t *p, int exp, int64_t *sums, bool *overflow)
{
    char cells[REPORT_FIGURES][TLY_QUERY_MONEY_CHARS];
    const char *row[CLI_TABLE_COLS_MAX] = {cli_str_of(p, "period", "-"),
                                           cli_str_of(p, "status", "-")};
    for (size_t f = 0; f < REPORT_FIGURES; f++) {
        row[f + 2] = cli_money_of(p, REPORT_KEYS[f], exp, cells[f], sizeof cells[f]);
        if (__builtin_add_overflow(sums[f], int_of(p, REPORT_KEYS[f]), &sums[f]))
            *overflow = true;
    }
    cli_table_add(t, row);
}

void tly_fin_table_report(const json_t *reply)
{
    const char *cur = cli_str_of(reply, "currency", NULL);
    int exp = tly_query_currency_exponent(cur);
    const char *head[] = {"Program", cli_str_of(reply, "program", "-"), "Currency",
                          cur ? cur : "-"};
    print_head(reply, head, 4);
    printf("\n");
    json_t *periods = json_object_get(reply, "periods");
    if (json_array_size(periods) == 0) {
        printf("No periods with figures yet.\n");
        return;
    }
    cli_table t;
    cli_table_init(&t, "llrrrrrrrrrr");
    const char *heads[CLI_TABLE_COLS_MAX] = {"Period", "Status"};
    memcpy(heads + 2, REPORT_HEADS, sizeof REPORT_HEADS);
    cli_table_add(&t, heads);
    int64_t sums[REPORT_FIGURES] = {0};
    bool overflow = false;
    size_t i;
    json_t *p;
    json_array_foreach(periods, i, p)
    {
        report_row(&t, p, exp, sums, &overflow);
    }
    char cells[REPORT_FIGURES][TLY_QUERY_MONEY_CHARS];
    const char *total[CLI_TABLE_COLS_MAX] = {"Total", ""};
    for (size_t f = 0; f < REPORT_FIGURES; f++)
        total[f + 2] = overflow ? "-" : money(sums[f], exp, cells[f], sizeof cells[f]);
    cli_table_add(&t, total);
    cli_table_print(&t, true);
}

/* One program of the expiring answer. */
static void expiring_program(const json_t *prog, const json_t *currencies)
{
    const char *name = cli_str_of(prog, "program", "-");
    const char *cur = currency_of(currencies, name);
    int exp = tly_query_currency_exponent(cur);
    json_t *parts = json_object_get(prog, "partners");
    size_t n = json_array_size(parts);
    char total[TLY_QUERY_MONEY_CHARS];
    if (n == 0) {
        printf("%s: the close of %s expires nothing.\n", name, cli_str_of(prog, "period", "-"));
        return;
    }
    printf("%s: the close of %s expires %s %s from %zu partner%s.\n", name,
           cli_str_of(prog, "period", "-"), cli_money_of(prog, "total", exp, total, sizeof total),
           cur ? cur : "", n, n == 1 ? "" : "s");
    cli_table t;
    cli_table_init(&t, "lr");
    cli_table_row(&t, "Partner", "Expiring");
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        char a[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, cli_str_of(p, "partner", "-"),
                      cli_money_of(p, "amount", exp, a, sizeof a));
    }
    cli_table_print(&t, true);
}

void tly_fin_table_expiring(const json_t *reply, const json_t *currencies)
{
    print_head(reply, NULL, 0);
    json_t *progs = json_object_get(reply, "programs");
    if (json_array_size(progs) == 0)
        printf("\nNo programs yet.\n");
    size_t i;
    json_t *prog;
    json_array_foreach(progs, i, prog)
    {
        printf("\n");
        expiring_program(prog, currencies);
    }
    print_differ_note(reply);
}

/* Account totals of a journal: debit and credit per account, in the order
 * accounts first appear. */
typedef struct account_sums {
    json_t *order; /* account names */
    json_t *sums;  /* account -> [debit, credit] */
    bool overflow;
} account_sums;

static void account_add(account_sums *s, const char *account, int side, int64_t amount)
{
    json_t *pair = json_object_get(s->sums, account);
    if (!pair) {
        pair = json_pack("[I, I]", (json_int_t)0, (json_int_t)0);
        if (!pair || json_object_set_new(s->sums, account, pair) != 0)
            abort();
        json_array_append_new(s->order, json_string(account));
    }
    int64_t v = (int64_t)json_integer_value(json_array_get(pair, (size_t)side));
    if (__builtin_add_overflow(v, amount, &v))
        s->overflow = true;
    json_array_set_new(pair, (size_t)side, json_integer(v));
}

/* The totals per account, then the journal's total (debits = credits). */
static void print_account_totals(account_sums *s, int exp, int64_t total)
{
    cli_table t;
    cli_table_init(&t, "lrr");
    cli_table_row(&t, "Account", "Debit", "Credit");
    size_t i;
    json_t *name;
    json_array_foreach(s->order, i, name)
    {
        json_t *pair = json_object_get(s->sums, json_string_value(name));
        char d[TLY_QUERY_MONEY_CHARS], c[TLY_QUERY_MONEY_CHARS];
        cli_table_row(&t, json_string_value(name), money(int_of_index(pair, 0), exp, d, sizeof d),
                      money(int_of_index(pair, 1), exp, c, sizeof c));
    }
    char a[TLY_QUERY_MONEY_CHARS], b[TLY_QUERY_MONEY_CHARS];
    const char *sum = s->overflow ? "-" : money(total, exp, a, sizeof a);
    cli_table_row(&t, "Total", sum, s->overflow ? "-" : money(total, exp, b, sizeof b));
    cli_table_print(&t, true);
}

void tly_fin_table_journal(const json_t *reply)
{
    const char *cur = cli_str_of(reply, "currency", NULL);
    int exp = tly_query_currency_exponent(cur);
    const char *head[] = {"Program",  cli_str_of(reply, "program", "-"),
                          "Period",   cli_str_of(reply, "period", "-"),
                          "Currency", cur ? cur : "-"};
    print_head(reply, head, 6);
    printf("\n");
    json_t *entries = json_object_get(reply, "entries");
    if (json_array_size(entries) == 0) {
        printf("No entries: nothing took effect in this period.\n");
        return;
    }
    account_sums s = {json_array(), json_object(), false};
    if (!s.order || !s.sums)
        abort();
    cli_table t;
    cli_table_init(&t, "llllr");
    cli_table_row(&t, "Partner", "Kind", "Debit", "Credit", "Amount");
    int64_t total = 0;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        char a[TLY_QUERY_MONEY_CHARS];
        int64_t amount = int_of(e, "amount");
        cli_table_row(&t, cli_str_of(e, "partner", "-"), cli_str_of(e, "kind", "-"),
                      cli_str_of(e, "debit", "-"), cli_str_of(e, "credit", "-"),
                      money(amount, exp, a, sizeof a));
        account_add(&s, cli_str_of(e, "debit", "-"), 0, amount);
        account_add(&s, cli_str_of(e, "credit", "-"), 1, amount);
        if (__builtin_add_overflow(total, amount, &total))
            s.overflow = true;
    }
    cli_table_print(&t, true);
    printf("\n%zu entr%s, each debiting and crediting its amount.\n\n", json_array_size(entries),
           json_array_size(entries) == 1 ? "y" : "ies");
    print_account_totals(&s, exp, total);
    json_decref(s.order);
    json_decref(s.sums);
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                       */

/* One field: as is, or quoted (quotes doubled) when it holds a comma, a
 * quote or a line end (RFC 4180). */
static void csv_field(const char *s, bool first)
{
    if (!first)
        putchar(',');
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* A value: a string as is, an integer in decimal (money in minor units),
 * anything else empty. */
static void csv_value(const json_t *v, bool first)
{
    char num[24] = "";
    if (json_is_integer(v))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
    csv_field(json_is_string(v) ? json_string_value(v) : num, first);
}

static void csv_header(const char *const *cols, size_t n)
{
    for (size_t c = 0; c < n; c++)
        csv_field(cols[c], c == 0);
    putchar('\n');
}

/* The header, then one row per element of list with the fields cols. */
static void csv_rows(const json_t *list, const char *const *cols, size_t n)
{
    csv_header(cols, n);
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        for (size_t c = 0; c < n; c++)
            csv_value(json_object_get(o, cols[c]), c == 0);
        putchar('\n');
    }
}

void tly_fin_csv_partners(const json_t *reply)
{
    static const char *const cols[] = {"partner", "name", "program",   "kind",
                                       "region",  "tier", "available", "rebate_payable"};
    csv_rows(json_object_get(reply, "partners"), cols, sizeof cols / sizeof cols[0]);
}

void tly_fin_csv_report(const json_t *reply)
{
    const char *cols[REPORT_FIGURES + 2] = {"period", "status"};
    memcpy(cols + 2, REPORT_KEYS, sizeof REPORT_KEYS);
    csv_rows(json_object_get(reply, "periods"), cols, REPORT_FIGURES + 2);
}

void tly_fin_csv_expiring(const json_t *reply)
{
    static const char *const cols[] = {"program", "period", "partner", "amount"};
    csv_header(cols, 4);
    size_t i, k;
    json_t *prog, *p;
    json_array_foreach(json_object_get(reply, "programs"), i, prog)
    {
        json_array_foreach(json_object_get(prog, "partners"), k, p)
        {
            csv_value(json_object_get(prog, "program"), true);
            csv_value(json_object_get(prog, "period"), false);
            csv_value(json_object_get(p, "partner"), false);
            csv_value(json_object_get(p, "amount"), false);
            putchar('\n');
        }
    }
}

void tly_fin_csv_journal(const json_t *reply)
{
    static const char *const cols[] = {"partner", "kind", "debit", "credit", "amount"};
    csv_rows(json_object_get(reply, "entries"), cols, sizeof cols / sizeof cols[0]);
}

/* ------------------------------------------------------------------------ */
/* GL accounts                                                               */

/* The account keys of SPEC section 11. */
static const char *const ACCOUNT_KEYS[] = {
    "contra_revenue_mdf",    "mdf_liability",    "cash",
    "contra_revenue_rebate", "rebate_liability", "referral_expense"};
#define ACCOUNT_KEY_COUNT (sizeof ACCOUNT_KEYS / sizeof ACCOUNT_KEYS[0])

static bool account_known(const char *key)
{
    for (size_t i = 0; i < ACCOUNT_KEY_COUNT; i++)
        if (strcmp(key, ACCOUNT_KEYS[i]) == 0)
            return true;
    return false;
}

/* The file's bytes (at most TLY_ACCOUNTS_FILE_BYTES_MAX) as JSON. */
static tly_err accounts_read(const char *path, json_t **doc, char *msg, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, cap, "cannot read accounts file %s: %s", path, strerror(errno));
        return TLY_IO;
    }
    char *buf = malloc(TLY_ACCOUNTS_FILE_BYTES_MAX + 1);
    size_t len = buf ? fread(buf, 1, TLY_ACCOUNTS_FILE_BYTES_MAX + 1, f) : 0;
    bool failed = !buf || ferror(f);
    fclose(f);
    tly_err err = failed ? TLY_IO : len > TLY_ACCOUNTS_FILE_BYTES_MAX ? TLY_TOO_LARGE : TLY_OK;
    json_error_t je;
    *doc = err == TLY_OK ? json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    free(buf);
    if (err == TLY_IO)
        snprintf(msg, cap, "cannot read accounts file %s", path);
    else if (err == TLY_TOO_LARGE)
        snprintf(msg, cap, "accounts file %s is over %u bytes", path, TLY_ACCOUNTS_FILE_BYTES_MAX);
    else if (!json_is_object(*doc)) {
        snprintf(msg, cap, "accounts file %s: %s", path,
                 *doc ? "not a JSON object {\"account\": \"GL code\", ...}"
                      : tly_json_load_why(NULL, &je));
        err = TLY_MALFORMED;
    }
    return err;
}

tly_err tly_fin_accounts_load(const char *path, json_t **map, char *msg, size_t cap)
{
    json_t *doc = NULL;
    tly_err err = accounts_read(path, &doc, msg, cap);
    const char *key;
    json_t *v;
    json_object_foreach(err == TLY_OK ? doc : NULL, key, v)
    {
        size_t len = json_string_length(v);
        if (!account_known(key)) {
            snprintf(msg, cap,
                     "accounts file %s: unknown account '%s' (the accounts are "
                     "contra_revenue_mdf, mdf_liability, cash, contra_revenue_rebate, "
                     "rebate_liability, referral_expense)",
                     path, key);
            err = TLY_MALFORMED;
        } else if (!json_is_string(v) || len == 0 || len > TLY_GL_CODE_BYTES_MAX ||
                   strlen(json_string_value(v)) != len) {
            snprintf(msg, cap, "accounts file %s: '%s' must map to a GL code of 1 to %u bytes",
                     path, key, TLY_GL_CODE_BYTES_MAX);
            err = TLY_MALFORMED;
        }
        if (err != TLY_OK)
            break;
    }
    if (err != TLY_OK) {
        json_decref(doc);
        return err;
    }
    *map = doc;
    return TLY_OK;
}

void tly_fin_accounts_apply(json_t *journal, const json_t *map)
{
    static const char *const sides[] = {"debit", "credit"};
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(journal, "entries"), i, e)
    {
        for (int s = 0; s < 2; s++) {
            json_t *code = json_object_get(map, cli_str_of(e, sides[s], ""));
            if (json_is_string(code))
                json_object_set(e, sides[s], code);
        }
    }
}
