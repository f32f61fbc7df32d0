/*
 * test_tidy.c — scripts/tidy.sh fails on each kind of violation and passes
 * a clean tree.
 *
 * The source tree ($TALLY_SOURCE_DIR, set by ctest) is copied into a temp
 * directory: the files git lists (tracked, and untracked ones it does not
 * ignore: what tidy.sh checks). tidy.sh runs there on the copy as it is
 * (it must pass), then once per violation injected into one file, which is
 * restored after each run. Each violation must make tidy exit non-zero with
 * a report naming the file and the rule; a function of exactly 70 lines
 * and a line of exactly 100 columns must pass. Links no project library
 * (testutil.c only).
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

static char g_tree[64]; /* the copy of the source tree */

/* Runs a shell command; returns its exit code (-1 when it did not exit). */
static int sh(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void copy_tree(void)
{
    const char *src = getenv("TALLY_SOURCE_DIR");
    ck_assert_msg(src && *src, "TALLY_SOURCE_DIR is not set (ctest sets it)");
    strcpy(g_tree, "/tmp/tally-tidy-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tree));
    /* The files git lists, else (no git checkout) all but .git and build*. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { if git rev-parse --git-dir >/dev/null 2>&1; then"
             "  git ls-files --cached --others --exclude-standard;"
             " else find . -name .git -prune -o -name 'build*' -type d -prune -o -type f -print;"
             " fi; } | while IFS= read -r f; do [ -f \"$f\" ] && printf '%%s\\n' \"$f\"; done"
             " | tar -cf - -T - | tar -xf - -C '%s'",
             src, g_tree);
    ck_assert_msg(sh(cmd) == 0, "copying %s to %s failed", src, g_tree);
}

static void remove_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tree);
    sh(cmd);
}

/* tidy.sh's exit code and output (malloc'd) on the copy. */
typedef struct {
    int rc;
    char *out;
} tidy_run;

static tidy_run run_tidy(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sh '%s/scripts/tidy.sh' '%s' 2>&1", g_tree, g_tree);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int st = pclose(p);
    return (tidy_run){st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

static char *path_in_tree(const char *rel)
{
    char *path = malloc(strlen(g_tree) + strlen(rel) + 2);
    sprintf(path, "%s/%s", g_tree, rel);
    return path;
}

static char *read_text(const char *rel)
{
    char *path = path_in_tree(rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    free(path);
    return text;
}

static void write_text(const char *rel, const char *text)
{
    char *path = path_in_tree(rel);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
    free(path);
}

/* How a file is changed: text appended at the end, or a line inserted as
 * its own block before the first #include. */
typedef enum { APPEND, BEFORE_INCLUDES } where;

/* Runs tidy with rel changed by add (as `at` says), then restores rel. */
static tidy_run run_changed(const char *rel, where at, const char *add)
{
    char *orig = read_text(rel);
    char *changed = malloc(strlen(orig) + strlen(add) + 4);
    if (at == APPEND) {
        sprintf(changed, "%s%s", orig, add);
    } else {
        char *inc = strstr(orig, "#include");
        ck_assert_msg(inc != NULL, "%s has no #include", rel);
        sprintf(changed, "%.*s%s\n\n%s", (int)(inc - orig), orig, add, inc);
    }
    write_text(rel, changed);
    tidy_run r = run_tidy();
    write_text(rel, orig);
    free(changed);
    free(orig);
    return r;
}

/* tidy failed, and a report line names rel and the rule ("[rule]"). */
static void assert_caught(tidy_run r, const char *rel, const char *rule)
{
    char want[256];
    snprintf(want, sizeof want, "%s:", rel);
    const char *line = strstr(r.out, want);
    ck_assert_msg(r.rc == 1, "tidy exit %d, expected 1 for [%s] in %s:\n%s", r.rc, rule, rel,
                  r.out);
    ck_assert_msg(line != NULL, "tidy does not name %s:\n%s", rel, r.out);
    snprintf(want, sizeof want, "[%s]", rule);
    bool named = false;
    for (; line && !named; line = strstr(line + 1, rel)) {
        const char *eol = strchr(line, '\n');
        const char *hit = strstr(line, want);
        named = hit && (!eol || hit < eol);
    }
    ck_assert_msg(named, "tidy reports %s, but not as [%s]:\n%s", rel, rule, r.out);
    free(r.out);
}

static void assert_clean(tidy_run r, const char *what)
{
    ck_assert_msg(r.rc == 0, "%s: tidy exit %d:\n%s", what, r.rc, r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "files clean"));
    free(r.out);
}

/* A function (test: a Check test) whose body has `lines` lines, after an
 * empty line. */
static char *function_of(int lines, bool test)
{
    char *text = malloc(64 + (size_t)lines * 32);
    char *p = text + sprintf(text, test ? "\nSTART_TEST(tidy_probe)\n{\n"
                                        : "\nint tidy_probe(int x)\n{\n");
    for (int i = 0; i < lines - 1; i++)
        p += sprintf(p, test ? "    ck_assert(1);\n" : "    x += 1;\n");
    sprintf(p, test ? "    ck_assert(1);\n}\nEND_TEST\n" : "    return x;\n}\n");
    return text;
}

/* A comment line "/ * aaa...a * /" of `cols` columns, after an empty line. */
static char *line_of(int cols)
{
    char *text = malloc((size_t)cols + 8);
    char *p = text + sprintf(text, "\n/* ");
    memset(p, 'a', (size_t)cols - 6);
    sprintf(p + cols - 6, " */\n");
    return text;
}

START_TEST(test_clean_tree_passes)
{
    assert_clean(run_tidy(), "the tree as it is");
}
END_TEST

START_TEST(test_function_length)
{
    char *f70 = function_of(70, false), *f71 = function_of(71, false);
    assert_clean(run_changed("schemas/tly_err.c", APPEND, f70), "a function of 70 lines");
    assert_caught(run_changed("schemas/tly_err.c", APPEND, f71), "schemas/tly_err.c", "length");
    free(f70);
    free(f71);
    /* A test body counts like any function. */
    char *t70 = function_of(70, true), *t71 = function_of(71, true);
    assert_clean(run_changed("tests/test_log.c", APPEND, t70), "a test of 70 lines");
    assert_caught(run_changed("tests/test_log.c", APPEND, t71), "tests/test_log.c", "length");
    free(t70);
    free(t71);
}
END_TEST

START_TEST(test_line_length)
{
    char *l100 = line_of(100), *l101 = line_of(101);
    ck_assert_uint_eq(strlen(l100), 1 + 100 + 1);
    assert_clean(run_changed("schemas/tly_err.c", APPEND, l100), "a line of 100 columns");
    assert_caught(run_changed("schemas/tly_err.c", APPEND, l101), "schemas/tly_err.c", "columns");
    free(l100);
    free(l101);
}
END_TEST

START_TEST(test_format)
{
    assert_caught(run_changed("ledger/tly_log.c", APPEND, "\nint  tidy_probe ;\n"),
                  "ledger/tly_log.c", "format");
}
END_TEST

/* The engine is the pure fold: no LMDB (nor ZeroMQ, clock, files). */
START_TEST(test_engine_includes_lmdb)
{
    assert_caught(run_changed("consumers/engine/tly_money.c", BEFORE_INCLUDES, "#include <lmdb.h>"),
                  "consumers/engine/tly_money.c", "include");
}
END_TEST

/* Only the command layer includes tly_cmd.h. */
START_TEST(test_library_includes_cmd)
{
    assert_caught(run_changed("producers/tly_client.c", BEFORE_INCLUDES, "#include \"tly_cmd.h\""),
                  "producers/tly_client.c", "include");
}
END_TEST

/* schemas/ is the bottom of the graph: it includes nothing above it. */
START_TEST(test_schemas_includes_views)
{
    assert_caught(run_changed("schemas/tly_err.c", BEFORE_INCLUDES, "#include \"tly_views.h\""),
                  "schemas/tly_err.c", "include");
    /* The same header spelled as a system header is still the views'. */
    assert_caught(run_changed("schemas/tly_err.c", BEFORE_INCLUDES, "#include <tly_views.h>"),
                  "schemas/tly_err.c", "include");
}
END_TEST

/* Internal headers stay in their folder; consumers never append. */
START_TEST(test_internal_header_and_append)
{
    assert_caught(
        run_changed("producers/tly_send.c", BEFORE_INCLUDES, "#include \"log_internal.h\""),
        "producers/tly_send.c", "include");
    assert_caught(run_changed("consumers/query/tly_query.c", APPEND,
                              "\nvoid tidy_probe(void)\n{\n    tly_log_append(0, 0, 0, 0);\n}\n"),
                  "consumers/query/tly_query.c", "call");
}
END_TEST

static Suite *tidy_suite(void)
{
    Suite *s = suite_create("tidy");
    TCase *tc = tu_tcase(s, "tidy", 300);
    tcase_add_unchecked_fixture(tc, copy_tree, remove_tree);
    tu_add_tests(tc, TU_TESTS(test_clean_tree_passes, test_function_length, test_line_length,
                              test_format, test_engine_includes_lmdb, test_library_includes_cmd,
                              test_schemas_includes_views, test_internal_header_and_append));
    return s;
}

int main(void)
{
    return tu_run_suite(tidy_suite());
}
