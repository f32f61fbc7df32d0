/* tly_cli.c — shared command-line plumbing; see tly_cli.h. */
#include "tly_cli.h"
#include "tly_os.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tly_common_defaults(tly_common_opts *o)
{
    const char *env = getenv("TALLY_DATA");
    o->data = (env && *env) ? env : TLY_DEFAULT_DATA;
    o->ingest = TLY_DEFAULT_INGEST;
    o->events = TLY_DEFAULT_EVENTS;
    o->log_read = TLY_DEFAULT_LOG_READ;
    o->query = TLY_DEFAULT_QUERY;
    o->json = false;
}

int tly_opt_value(const char *name, int argc, char **argv, int *i, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "tally: option %s needs a value\n", name);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

int tly_common_flag(tly_common_opts *o, int argc, char **argv, int *i)
{
    if (strcmp(argv[*i], "--json") == 0) {
        o->json = true;
        return 1;
    }
    static const char *const names[] = {"--data", "--ingest", "--events", "--log-read", "--query"};
    const char **slots[] = {&o->data, &o->ingest, &o->events, &o->log_read, &o->query};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int rc = tly_opt_value(names[k], argc, argv, i, slots[k]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int tly_usagef(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tally %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'tally %s --help'.\n", cmd);
    va_end(ap);
    return TLY_EXIT_USAGE;
}

int tly_common_opt(tly_common_opts *o, int argc, char **argv, int *i, void (*usage)(FILE *out))
{
    int rc = tly_common_flag(o, argc, argv, i);
    if (rc != 0)
        return rc < 0 ? TLY_OPT_BAD : TLY_OPT_TAKEN;
    if (strcmp(argv[*i], "--help") != 0 && strcmp(argv[*i], "-h") != 0)
        return TLY_OPT_NONE;
    usage(stdout);
    return TLY_OPT_HELP;
}
