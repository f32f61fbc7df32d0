/*
 * test_install.c — what `cmake --install` puts on a machine, checked as an
 * operator and a producer's developer would use it.
 *
 * The build under test is the directory of $TALLY_BIN (its CMakeCache.txt
 * names cmake, the compiler, the version and the install directories). One
 * install with DESTDIR=<tmp>/dest and --prefix /usr is made before the tests
 * (an unchecked fixture); then:
 *
 *   - every file is there: the binary, libtally-client (.so, SONAME link,
 *     real file), its headers, tally-client.pc, eight man pages, the bash
 *     completion, three systemd units;
 *   - `tally --version` and `tally version` print "tally <PROJECT_VERSION>",
 *     `tally status --json` carries it as "version";
 *   - `man -l` renders each page without a warning (groff when man is not
 *     installed); each command's page names every flag its --help names, and
 *     every command `tally --help` lists has a page;
 *   - a small C program compiles and links against the installed library
 *     with `pkg-config --cflags --libs tally-client` alone (PKG_CONFIG_PATH
 *     and PKG_CONFIG_SYSROOT_DIR point into DESTDIR) and runs;
 *   - the client component alone, into another prefix, installs only the
 *     library and names that prefix in its .pc;
 *   - `systemd-analyze verify` accepts each unit (copies whose ExecStart
 *     names DESTDIR's binary, since verify resolves ExecStart on this
 *     machine; MANPATH lets it find the man pages of Documentation=), and
 *     the template's ExecStart turns the instance 0-of-2 into --shard 0/2;
 *   - `bash -n` accepts the completion, which completes `tally ba` to
 *     balance (and subcommands, `tally ledger promote` among them, and
 *     flags);
 *   - tally ledger, tally consume and tally query send READY=1 to
 *     $NOTIFY_SOCKET once they serve and STOPPING=1 when they stop.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

#define CMD_BYTES 8192

static char g_build[1024];  /* the build directory (of $TALLY_BIN) */
static char *g_tmp;         /* scratch, removed at the end */
static char g_dest[1200];   /* DESTDIR */
static char g_bin[1400];    /* DESTDIR/usr/bin/tally */
static char g_libdir[1400]; /* DESTDIR/usr/<libdir> */
static int g_install_rc = -1;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* The value of NAME in the build's CMakeCache.txt ("" when absent); a
 * static buffer, valid until the next call. */
static const char *cache_get(const char *name)
{
    static char value[1024];
    char path[1100];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", g_build);
    char *text = tu_read_file(path, NULL);
    value[0] = '\0';
    size_t n = strlen(name);
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        char *colon = strchr(line, ':');
        if (strncmp(line, name, n) == 0 && line[n] == ':' && colon && (!end || colon < end)) {
            char *eq = strchr(colon, '=');
            size_t len = eq ? (size_t)((end ? end : eq + strlen(eq)) - eq - 1) : 0;
            if (eq && len < sizeof value) {
                memcpy(value, eq + 1, len);
                value[len] = '\0';
            }
            break;
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    return value;
}

/* Runs `sh -c CMD`; returns its exit status, with its stdout and stderr in
 * *out and *err (malloc'd; either may be NULL to discard). */
static int sh(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char **out, char **err, const char *fmt, ...)
{
    char cmd[CMD_BYTES], opath[1200], epath[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ck_assert_msg(n > 0 && (size_t)n < sizeof cmd, "command too long");
    snprintf(opath, sizeof opath, "%s/sh.out", g_tmp);
    snprintf(epath, sizeof epath, "%s/sh.err", g_tmp);
    char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
    int rc = tu_run(argv, NULL, opath, epath);
    if (out)
        *out = tu_read_file(opath, NULL);
    if (err)
        *err = tu_read_file(epath, NULL);
    return rc;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* True when the text of a man page names --flag (roff spells it \-\-flag). */
static bool page_has_flag(const char *page, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = page; (p = strstr(p, "\\-\\-")) != NULL; p += 4) {
        const char *name = p + 4;
        /* compare flag+2 with name, where the page writes '\-' for '-' */
        const char *f = flag + 2;
        while (*f && *name) {
            if (*f == '-' && name[0] == '\\' && name[1] == '-')
                name += 2;
            else if (*f == *name)
                name++;
            else
                break;
            f++;
        }
        char next = *name;
        bool word_end = !(next >= 'a' && next <= 'z') && !(next >= '0' && next <= '9') &&
                        !(next == '\\' && name[1] == '-') && next != '-';
        if (*f == '\0' && word_end && (size_t)(f - flag) == n)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* The install (unchecked fixture: once, in the runner's process)           */

static void install_setup(void)
{
    const char *bin = tu_tally();
    const char *slash = strrchr(bin, '/');
    if (slash)
        snprintf(g_build, sizeof g_build, "%.*s", (int)(slash - bin), bin);
    else
        snprintf(g_build, sizeof g_build, ".");
    g_tmp = tu_tmpdir();
    snprintf(g_dest, sizeof g_dest, "%s/dest", g_tmp);
    snprintf(g_bin, sizeof g_bin, "%s/usr/%s/tally", g_dest, cache_get("CMAKE_INSTALL_BINDIR"));
    snprintf(g_libdir, sizeof g_libdir, "%s/usr/%s", g_dest, cache_get("CMAKE_INSTALL_LIBDIR"));
    char *err = NULL;
    g_install_rc = sh(NULL, &err, "DESTDIR='%s' '%s' --install '%s' --prefix /usr", g_dest,
                      cache_get("CMAKE_COMMAND"), g_build);
    if (g_install_rc != 0)
        fprintf(stderr, "cmake --install failed (%d): %s\n", g_install_rc, err ? err : "");
    free(err);
}

static void install_teardown(void)
{
    tu_rmtree(g_tmp);
    g_tmp = NULL;
}

/* ------------------------------------------------------------------------ */
/* Files and version                                                         */

static const char *const man_pages[] = {
    "tally",       "tally-ledger", "tally-send",    "tally-consume", "tally-query",
    "tally-audit", "tally-up",     "tally-finance", "tally-web",     "tally-statement"};
#define MAN_PAGES (sizeof man_pages / sizeof man_pages[0])

static const char *const units[] = {"tally-ledger.service", "tally-consume@.service",
                                    "tally-query.service", "tally-web.service"};
#define UNITS (sizeof units / sizeof units[0])

static const char *const headers[] = {"tly_client.h", "tly_err.h",    "tly_event.h", "tly_json.h",
                                      "tly_limits.h", "tly_period.h", "tly_wire.h"};

START_TEST(every_file_is_installed)
{
    ck_assert_msg(g_install_rc == 0, "cmake --install failed");
    char path[2048];
    ck_assert_msg(access(g_bin, X_OK) == 0, "%s is not an executable", g_bin);
    const char *version = cache_get("CMAKE_PROJECT_VERSION");
    const char *libs[] = {"libtally-client.so", "libtally-client.so.0", NULL};
    for (int i = 0; libs[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_libdir, libs[i]);
        ck_assert_msg(exists(path), "%s is missing", path);
    }
    snprintf(path, sizeof path, "%s/libtally-client.so.%s", g_libdir, version);
    ck_assert_msg(exists(path), "%s is missing", path);
    snprintf(path, sizeof path, "%s/pkgconfig/tally-client.pc", g_libdir);
    ck_assert_msg(exists(path), "%s is missing", path);
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        snprintf(path, sizeof path, "%s/usr/include/tally/%s", g_dest, headers[i]);
        ck_assert_msg(exists(path), "%s is missing", path);
    }
    for (size_t i = 0; i < MAN_PAGES; i++) {
        snprintf(path, sizeof path, "%s/usr/share/man/man1/%s.1", g_dest, man_pages[i]);
        ck_assert_msg(exists(path), "%s is missing", path);
    }
    snprintf(path, sizeof path, "%s/usr/share/bash-completion/completions/tally", g_dest);
    ck_assert_msg(exists(path), "%s is missing", path);
    for (size_t i = 0; i < UNITS; i++) {
        snprintf(path, sizeof path, "%s/usr/lib/systemd/system/%s", g_dest, units[i]);
        ck_assert_msg(exists(path), "%s is missing", path);
    }
}
END_TEST

START_TEST(version_matches_the_project)
{
    ck_assert_int_eq(g_install_rc, 0);
    char want[128];
    snprintf(want, sizeof want, "tally %s\n", cache_get("CMAKE_PROJECT_VERSION"));
    ck_assert_msg(strcmp(want, "tally \n") != 0, "no CMAKE_PROJECT_VERSION in the cache");
    const char *forms[] = {"--version", "version"};
    for (int i = 0; i < 2; i++) {
        char *out = NULL;
        ck_assert_int_eq(sh(&out, NULL, "'%s' %s", g_bin, forms[i]), 0);
        ck_assert_msg(out && strcmp(out, want) == 0, "tally %s printed '%s', want '%s'", forms[i],
                      out ? out : "", want);
        free(out);
    }
    /* status --json, read from an empty data directory (no service). */
    char *out = NULL;
    int port = tu_free_port();
    ck_assert_int_eq(sh(NULL, NULL, "mkdir -p '%s/sdata/views'", g_tmp), 0);
    ck_assert_int_eq(sh(&out, NULL,
                        "'%s' status --json --data '%s/sdata' --query tcp://127.0.0.1:%d", g_bin,
                        g_tmp, port),
                     0);
    snprintf(want, sizeof want, "\"version\":\"%s\"", cache_get("CMAKE_PROJECT_VERSION"));
    ck_assert_msg(out && strstr(out, want), "status --json: %s (want %s)", out ? out : "", want);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Man pages                                                                 */

START_TEST(man_pages_render_without_warnings)
{
    ck_assert_int_eq(g_install_rc, 0);
    bool have_man = sh(NULL, NULL, "command -v man") == 0;
    for (size_t i = 0; i < MAN_PAGES; i++) {
        char page[1600], *out = NULL, *err = NULL;
        snprintf(page, sizeof page, "%s/usr/share/man/man1/%s.1", g_dest, man_pages[i]);
        int rc = have_man ? sh(&out, &err, "LC_ALL=C MANWIDTH=80 man --warnings=w -l '%s'", page)
                          : sh(&out, &err, "LC_ALL=C groff -man -ww -Tascii '%s'", page);
        ck_assert_msg(rc == 0, "%s: exit %d: %s", page, rc, err ? err : "");
        ck_assert_msg(err && err[0] == '\0', "%s renders with warnings:\n%s", page, err);
        ck_assert_msg(out && strstr(out, "NAME") && strstr(out, man_pages[i]),
                      "%s renders without its NAME section", page);
        free(out);
        free(err);
    }
}
END_TEST

/* Each command (with its subcommand) and the page that documents it. */
static const struct {
    const char *cmd, *page;
} documented[] = {
    {"up", "tally-up"},
    {"ledger", "tally-ledger"},
    {"consume", "tally-consume"},
    {"query", "tally-query"},
    {"web", "tally-web"},
    {"send", "tally-send"},
    {"gen", "tally-send"},
    {"status", "tally-up"},
    {"wait", "tally-up"},
    {"balance", "tally-query"},
    {"rebate", "tally-query"},
    {"tier", "tally-query"},
    {"claims", "tally-query"},
    {"liabilities", "tally-query"},
    {"exceptions", "tally-query"},
    {"partners", "tally-finance"},
    {"report", "tally-finance"},
    {"expiring", "tally-finance"},
    {"journal", "tally-finance"},
    {"summary", "tally-up"},
    {"explain", "tally-up"},
    {"statement", "tally-statement"},
    {"audit verify", "tally-audit"},
    {"audit export", "tally-audit"},
    {"audit digest", "tally-audit"},
    {"audit replay", "tally-audit"},
    {"audit diff", "tally-audit"},
    {"bench ingest", "tally-send"},
    {"bench fold", "tally-consume"},
    {"bench query", "tally-query"},
    {"version", "tally"},
};
#define DOCUMENTED (sizeof documented / sizeof documented[0])

/* The page of a command ("audit" -> the page of "audit verify"), NULL for
 * a command without one. */
static const char *page_of(const char *cmd)
{
    size_t n = strlen(cmd);
    for (size_t i = 0; i < DOCUMENTED; i++)
        if (strncmp(documented[i].cmd, cmd, n) == 0 &&
            (documented[i].cmd[n] == '\0' || documented[i].cmd[n] == ' '))
            return documented[i].page;
    return NULL;
}

/* The commands listed under "Commands:" in `tally [CMD] --help`, one a line
 * (malloc'd). */
static char *listed_commands(const char *cmd)
{
    char *out = NULL;
    ck_assert_int_eq(
        sh(&out, NULL,
           "'%s' %s --help | sed -n '/^Commands:/,/^$/s/^  \\([a-z][a-z-]*\\)  .*/\\1/p'", g_bin,
           cmd),
        0);
    ck_assert_ptr_nonnull(out);
    return out;
}

/* Every command `tally --help` lists, and every subcommand of audit and
 * bench, has a page; tally(1) names every command. */
START_TEST(every_command_has_a_page)
{
    ck_assert_int_eq(g_install_rc, 0);
    char path[1600];
    snprintf(path, sizeof path, "%s/usr/share/man/man1/tally.1", g_dest);
    char *top = tu_read_file(path, NULL), *out = listed_commands("");
    ck_assert_ptr_nonnull(top);
    int commands = 0;
    for (char *save = NULL, *cmd = strtok_r(out, "\n", &save); cmd;
         cmd = strtok_r(NULL, "\n", &save), commands++) {
        ck_assert_msg(page_of(cmd), "tally %s has no man page (tests/test_install.c)", cmd);
        char want[64];
        snprintf(want, sizeof want, ".B %s\n", cmd);
        ck_assert_msg(strstr(top, want), "tally(1) does not list '%s'", cmd);
    }
    ck_assert_int_ge(commands, 15);
    free(out);
    static const char *const with_subcommands[] = {"audit", "bench"};
    for (size_t i = 0; i < 2; i++) {
        out = listed_commands(with_subcommands[i]);
        ck_assert_msg(out[0], "tally %s --help lists no commands", with_subcommands[i]);
        for (char *save = NULL, *sub = strtok_r(out, "\n", &save); sub;
             sub = strtok_r(NULL, "\n", &save)) {
            char full[64];
            snprintf(full, sizeof full, "%s %s", with_subcommands[i], sub);
            ck_assert_msg(page_of(full), "tally %s has no man page (tests/test_install.c)", full);
        }
        free(out);
    }
    free(top);
}
END_TEST

/* Each page names every flag the --help of its commands names. */
START_TEST(pages_name_every_flag_of_the_help)
{
    ck_assert_int_eq(g_install_rc, 0);
    for (size_t i = 0; i < DOCUMENTED; i++) {
        char path[1600], *flags = NULL;
        snprintf(path, sizeof path, "%s/usr/share/man/man1/%s.1", g_dest, documented[i].page);
        char *page = tu_read_file(path, NULL);
        ck_assert_ptr_nonnull(page);
        ck_assert_int_eq(sh(&flags, NULL,
                            "'%s' %s --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u", g_bin,
                            documented[i].cmd),
                         0);
        for (char *save = NULL, *f = strtok_r(flags, "\n", &save); f;
             f = strtok_r(NULL, "\n", &save))
            ck_assert_msg(page_has_flag(page, f), "%s(1) does not name %s of 'tally %s --help'",
                          documented[i].page, f, documented[i].cmd);
        free(flags);
        free(page);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The client library                                                        */

static const char client_program[] =
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "#include <tly_client.h>\n"
    "#include <tly_json.h>\n"
    "int main(void)\n"
    "{\n"
    "    json_error_t je;\n"
    "    json_t *ev = json_loads(\"{\\\"type\\\":\\\"certification\\\",\\\"id\\\":\\\"c1\\\"}\",\n"
    "                            0, &je);\n"
    "    msgpack_sbuffer mp;\n"
    "    msgpack_sbuffer_init(&mp);\n"
    "    if (!ev || tly_json_event_to_mp(ev, &mp, NULL) != TLY_OK || mp.size == 0)\n"
    "        return 3;\n"
    "    tly_client_opts o;\n"
    "    memset(&o, 0, sizeof o);\n"
    "    o.endpoint = \"tcp://127.0.0.1:9\";\n"
    "    tly_client *c = NULL;\n"
    "    char msg[256];\n"
    "    if (tly_client_open(&o, &c, msg, sizeof msg) != TLY_OK)\n"
    "        return 4;\n"
    "    tly_span span = {(const uint8_t *)mp.data, mp.size};\n"
    "    unsigned fit = tly_client_fit(c, \"dist-a\", false, &span, 1);\n"
    "    tly_client_close(c);\n"
    "    printf(\"fit %u, %s\\n\", fit, tly_err_name(TLY_CONFLICT));\n"
    "    msgpack_sbuffer_destroy(&mp);\n"
    "    json_decref(ev);\n"
    "    return 0;\n"
    "}\n";

START_TEST(client_links_with_pkg_config_alone)
{
    ck_assert_int_eq(g_install_rc, 0);
    char src[1200], exe[1200];
    snprintf(src, sizeof src, "%s/client.c", g_tmp);
    snprintf(exe, sizeof exe, "%s/client", g_tmp);
    ck_assert(tu_write_file(src, client_program, strlen(client_program)));
    /* A sanitizer build's library needs the program built the same way. */
    const char *san =
        strcmp(cache_get("TALLY_SANITIZE"), "ON") == 0 ? "-fsanitize=address,undefined" : "";
    char *out = NULL, *err = NULL;
    int rc = sh(&out, &err,
                "export PKG_CONFIG_PATH='%s/pkgconfig' PKG_CONFIG_SYSROOT_DIR='%s'; "
                "flags=$(pkg-config --cflags --libs tally-client) || exit 90; echo \"$flags\"; "
                "'%s' -std=c11 -Wall -Wextra -Werror %s -o '%s' '%s' $flags",
                g_libdir, g_dest, cache_get("CMAKE_C_COMPILER"), san, exe, src);
    ck_assert_msg(rc == 0, "building against tally-client failed (%d):\n%s%s", rc, out ? out : "",
                  err ? err : "");
    ck_assert_msg(out && strstr(out, g_dest), "pkg-config flags do not point into DESTDIR: %s",
                  out ? out : "");
    free(out);
    free(err);
    rc = sh(&out, &err, "LD_LIBRARY_PATH='%s' '%s'", g_libdir, exe);
    ck_assert_msg(rc == 0, "the client program exited %d: %s", rc, err ? err : "");
    ck_assert_msg(out && strncmp(out, "fit 1, conflict", 15) == 0, "client program: %s",
                  out ? out : "");
    free(out);
    free(err);
}
END_TEST

/* The client component alone, to another prefix: the library, headers and
 * .pc only, and the .pc names that prefix. */
START_TEST(client_component_alone)
{
    ck_assert_int_eq(g_install_rc, 0);
    char pfx[1200], path[2048], *out = NULL, *err = NULL;
    snprintf(pfx, sizeof pfx, "%s/prefix", g_tmp);
    int rc = sh(NULL, &err, "'%s' --install '%s' --prefix '%s' --component client",
                cache_get("CMAKE_COMMAND"), g_build, pfx);
    ck_assert_msg(rc == 0, "cmake --install --component client: %s", err ? err : "");
    free(err);
    snprintf(path, sizeof path, "%s/%s/tally", pfx, cache_get("CMAKE_INSTALL_BINDIR"));
    ck_assert_msg(!exists(path), "the client component installed the binary");
    snprintf(path, sizeof path, "%s/share/man", pfx);
    ck_assert_msg(!exists(path), "the client component installed man pages");
    snprintf(path, sizeof path, "%s/include/tally/tly_client.h", pfx);
    ck_assert_msg(exists(path), "%s is missing", path);
    rc = sh(&out, NULL, "PKG_CONFIG_PATH='%s/%s/pkgconfig' pkg-config --cflags tally-client", pfx,
            cache_get("CMAKE_INSTALL_LIBDIR"));
    snprintf(path, sizeof path, "-I%s/include/tally", pfx);
    ck_assert_msg(rc == 0 && out && strstr(out, path), "pkg-config --cflags: %s (want %s)",
                  out ? out : "", path);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* systemd units                                                             */

static char *read_unit(const char *name)
{
    char path[1600];
    snprintf(path, sizeof path, "%s/usr/lib/systemd/system/%s", g_dest, name);
    char *text = tu_read_file(path, NULL);
    ck_assert_msg(text, "%s is missing", path);
    return text;
}

START_TEST(units_are_hardened_notify_services)
{
    ck_assert_int_eq(g_install_rc, 0);
    static const char *const want[] = {"\nType=notify\n",
                                       "\nUser=tally\n",
                                       "\nEnvironment=TALLY_DATA=/var/lib/tally\n",
                                       "\nNoNewPrivileges=yes\n",
                                       "\nProtectSystem=strict\n",
                                       "\nReadWritePaths=/var/lib/tally\n",
                                       "\nPrivateTmp=yes\n",
                                       " /usr/bin/tally ",
                                       "\nWantedBy=multi-user.target\n"};
    for (size_t i = 0; i < UNITS; i++) {
        char *text = read_unit(units[i]);
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            /* ExecStart names the prefix's binary (as a word of its own). */
            const char *w = want[k];
            bool found = strstr(text, w) != NULL;
            if (!found && strcmp(w, " /usr/bin/tally ") == 0)
                found = strstr(text, "\nExecStart=/usr/bin/tally ") != NULL;
            ck_assert_msg(found, "%s lacks '%s'", units[i], w);
        }
        free(text);
    }
}
END_TEST

/* verify resolves ExecStart on this machine: copies of the units whose
 * ExecStart names DESTDIR's binary stand in for them; MANPATH lets it check
 * the man pages of Documentation=. The template is verified as an instance. */
START_TEST(systemd_analyze_verifies_the_units)
{
    ck_assert_int_eq(g_install_rc, 0);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/units", g_tmp);
    ck_assert_int_eq(sh(NULL, NULL, "mkdir -p '%s'", dir), 0);
    for (size_t i = 0; i < UNITS; i++) {
        char *err = NULL;
        int rc =
            sh(NULL, &err, "sed 's|/usr/bin/tally|%s|g' '%s/usr/lib/systemd/system/%s' > '%s/%s'",
               g_bin, g_dest, units[i], dir, units[i]);
        ck_assert_msg(rc == 0, "%s: %s", units[i], err ? err : "");
        free(err);
    }
    ck_assert_int_eq(
        sh(NULL, NULL, "ln -sf 'tally-consume@.service' '%s/tally-consume@0-of-2.service'", dir),
        0);
    static const char *const verify[] = {"tally-ledger.service", "tally-consume@0-of-2.service",
                                         "tally-query.service", "tally-web.service"};
    for (size_t i = 0; i < sizeof verify / sizeof verify[0]; i++) {
        char *out = NULL, *err = NULL;
        int rc = sh(&out, &err, "cd '%s' && MANPATH='%s/usr/share/man' systemd-analyze verify '%s'",
                    dir, g_dest, verify[i]);
        ck_assert_msg(rc == 0, "systemd-analyze verify %s: exit %d\n%s%s", verify[i], rc,
                      out ? out : "", err ? err : "");
        ck_assert_msg(err && err[0] == '\0', "systemd-analyze verify %s warns:\n%s", verify[i],
                      err);
        free(out);
        free(err);
    }
}
END_TEST

/* The template's ExecStart, expanded as systemd would for an instance
 * (%i, then %% and $$), run by sh with a stand-in tally that prints its
 * arguments. */
static char *template_argv(const char *instance, const char *opts)
{
    char *text = read_unit("tally-consume@.service");
    char *line = strstr(text, "\nExecStart=");
    ck_assert_ptr_nonnull(line);
    line += strlen("\nExecStart=");
    char cmd[2048];
    size_t n = 0;
    for (const char *p = line; *p && *p != '\n' && n + 64 < sizeof cmd; p++) {
        if (p[0] == '%' && p[1] == 'i') {
            n += (size_t)snprintf(cmd + n, sizeof cmd - n, "%s", instance);
            p++;
        } else if ((p[0] == '%' && p[1] == '%') || (p[0] == '$' && p[1] == '$')) {
            cmd[n++] = *p++;
        } else {
            cmd[n++] = *p;
        }
    }
    cmd[n] = '\0';
    free(text);
    char stub[1200], *out = NULL, *err = NULL;
    snprintf(stub, sizeof stub, "%s/stub-tally", g_tmp);
    const char *body = "#!/bin/sh\nprintf '%s\\n' \"$@\"\n";
    ck_assert(tu_write_file(stub, body, strlen(body)));
    ck_assert_int_eq(chmod(stub, 0755), 0);
    char *bin = strstr(cmd, "/usr/bin/tally");
    ck_assert_msg(bin, "ExecStart does not name /usr/bin/tally: %s", cmd);
    char run[4096];
    snprintf(run, sizeof run, "%.*s%s%s", (int)(bin - cmd), cmd, stub,
             bin + strlen("/usr/bin/tally"));
    int rc = sh(&out, &err, "TALLY_CONSUME_OPTS='%s'; export TALLY_CONSUME_OPTS; %s", opts, run);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", run, rc, err ? err : "");
    free(err);
    return out;
}

START_TEST(consume_template_turns_the_instance_into_a_shard)
{
    ck_assert_int_eq(g_install_rc, 0);
    char *out = template_argv("0-of-2", "");
    ck_assert_str_eq(out, "consume\n--shard\n0/2\n");
    free(out);
    out = template_argv("11-of-16", "--batch 1000 --remote");
    ck_assert_str_eq(out, "consume\n--shard\n11/16\n--batch\n1000\n--remote\n");
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Bash completion                                                           */

/* The completions bash offers for the words of a command line (the last one
 * being completed), one a line, with the installed tally first in PATH. */
static char *complete_words(const char *words)
{
    char *out = NULL, *err = NULL;
    int rc = sh(&out, &err,
                "PATH='%s/usr/bin':$PATH bash --norc --noprofile -c '"
                ". \"%s/usr/share/bash-completion/completions/tally\" || exit 91; "
                "complete -p tally | grep -q -- \"-F _tally\" || exit 92; "
                "COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
                "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}; _tally; "
                "printf \"%%s\\n\" \"${COMPREPLY[@]}\"'",
                g_dest, g_dest, words);
    ck_assert_msg(rc == 0, "completing [%s]: exit %d: %s", words, rc, err ? err : "");
    free(err);
    return out;
}

START_TEST(completion_completes_commands_and_flags)
{
    ck_assert_int_eq(g_install_rc, 0);
    char *err = NULL;
    int rc = sh(NULL, &err, "bash -n '%s/usr/share/bash-completion/completions/tally'", g_dest);
    ck_assert_msg(rc == 0, "bash -n: %s", err ? err : "");
    free(err);
    char *out = complete_words("tally ba");
    ck_assert_str_eq(out, "balance\n");
    free(out);
    out = complete_words("tally audit re");
    ck_assert_str_eq(out, "replay\n");
    free(out);
    out = complete_words("tally bench f");
    ck_assert_str_eq(out, "fold\n");
    free(out);
    /* tally ledger's one subcommand is named on a usage line of its help,
     * not under "Commands:". */
    out = complete_words("tally ledger p");
    ck_assert_str_eq(out, "promote\n");
    free(out);
    out = complete_words("tally ledger promote --str");
    ck_assert_str_eq(out, "--stream\n");
    free(out);
    out = complete_words("tally wait --ti");
    ck_assert_str_eq(out, "--timeout\n");
    free(out);
    out = complete_words("tally --ver");
    ck_assert_str_eq(out, "--version\n");
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* sd_notify                                                                 */

/* A datagram socket bound at DIR/notify, exported as $NOTIFY_SOCKET. */
static int notify_socket(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", g_tmp);
    unlink(sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    return fd;
}

/* Waits for the next notification and checks it holds want. */
static void expect_notify(int fd, const char *who, const char *want)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    ck_assert_msg(n > 0, "%s: no notification (want %s): %s", who, want,
                  n < 0 ? strerror(errno) : "empty");
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, want), "%s notified '%s', want %s", who, buf, want);
}

static pid_t start(const char *who, char *const argv[], int fd)
{
    pid_t pid = tu_spawn(argv, NULL);
    expect_notify(fd, who, "READY=1");
    return pid;
}

static void stop(const char *who, pid_t pid, int fd)
{
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    expect_notify(fd, who, "STOPPING=1");
    ck_assert_int_eq(tu_kill_wait(pid, 0), 0);
}

START_TEST(services_notify_ready_and_stopping)
{
    ck_assert_int_eq(g_install_rc, 0);
    /* ipc:// in the test's directory, not TCP ports: a port found free
     * when the test starts could be taken by a test running beside it
     * before the service that wants it binds, seconds later under ASan
     * (a query service that cannot bind exits before READY=1). */
    char data[1200], ingest[1200], events[1200], logread[1200], query[1200];
    snprintf(data, sizeof data, "%s/ndata", g_tmp);
    snprintf(ingest, sizeof ingest, "ipc://%s/ingest.sock", g_tmp);
    snprintf(events, sizeof events, "ipc://%s/events.sock", g_tmp);
    snprintf(logread, sizeof logread, "ipc://%s/logread.sock", g_tmp);
    snprintf(query, sizeof query, "ipc://%s/query.sock", g_tmp);
    int fd = notify_socket();
    char *const ledger[] = {g_bin,      "ledger", "--data",     data,    "--ingest",  ingest,
                            "--events", events,   "--log-read", logread, "--no-sync", NULL};
    char *const consume[] = {g_bin,      "consume", "--data",     data,    "--shard", "0/1",
                             "--events", events,    "--log-read", logread, NULL};
    char *const query_argv[] = {g_bin, "query", "--data", data, "--query", query, NULL};
    pid_t lp = start("tally ledger", ledger, fd);
    pid_t cp = start("tally consume", consume, fd);
    stop("tally consume", cp, fd);
    pid_t qp = start("tally query", query_argv, fd);
    stop("tally query", qp, fd);
    stop("tally ledger", lp, fd);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("install");
    TCase *tc = tu_tcase(s, "install", 300);
    tcase_add_unchecked_fixture(tc, install_setup, install_teardown);
    tu_add_tests(tc, TU_TESTS(every_file_is_installed, version_matches_the_project,
                              man_pages_render_without_warnings, every_command_has_a_page,
                              pages_name_every_flag_of_the_help, client_links_with_pkg_config_alone,
                              client_component_alone, units_are_hardened_notify_services,
                              systemd_analyze_verifies_the_units,
                              consume_template_turns_the_instance_into_a_shard,
                              completion_completes_commands_and_flags,
                              services_notify_ready_and_stopping));
    return tu_run_suite(s);
}
