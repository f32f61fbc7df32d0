/*
 * cmd_web.c — `tally web`: the read-only finance console (issue 12 item 1;
 * the server is consumers/web/, see tly_web.h for its pages).
 *
 * The console is a client of the query service, routed like the view
 * commands: --query EP, else the endpoint `tally up` recorded in
 * DIR/endpoints.json, else the default. It reads DIR/log for a partner's
 * explain lines. It binds a loopback address unless --insecure: the pages
 * show every partner's figures to whoever reaches them, and there is no
 * login (a reverse proxy with authentication goes in front for that).
 *
 * Under systemd (Type=notify, consumers/cli/tally-web.service.in) it sends
 * READY=1 once listening and STOPPING=1 on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_metrics_http.h"
#include "tly_web.h"

#define CMD "web"

typedef struct web_opts {
    tly_common_opts common;
    const char *web; /* --web HOST:PORT */
    bool insecure;
} web_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally web [--web ADDR] [--data DIR] [--query EP] [--insecure]\n"
            "\n"
            "Serves the read-only finance console over HTTP on ADDR (HOST:PORT, default\n"
            "%s; an IPv6 host in brackets): partner search and list, a page per\n"
            "partner (balance, buckets, claims, rebate and referral rows, tier, chart,\n"
            "explain lines, statement links), each program's period report, liabilities,\n"
            "expiring funds and exceptions. Pages are rendered from the query service's\n"
            "answers; every page also answers ?format=json with the service's objects.\n"
            "\n"
            "  --web ADDR    address to listen on\n"
            "  --data DIR    data directory (default $TALLY_DATA, else %s): its\n"
            "                endpoints.json names the query service, DIR/log gives the\n"
            "                explain lines (read, never written)\n"
            "  --query EP    the query service\n"
            "  --insecure    allow an address other machines reach (the console has no\n"
            "                login: anyone who reaches it reads every partner's figures)\n"
            "  --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                (tally_web_requests_total{page}, _request_duration_seconds)\n"
            "\n"
            "Stops on SIGINT or SIGTERM. Exit codes: 0 stopped cleanly, 1 error (e.g. the\n"
            "address is in use), 2 usage (e.g. a non-loopback address without --insecure).\n",
            TLY_DEFAULT_WEB, TLY_DEFAULT_DATA);
}

enum { OPT_WEB = 1, OPT_INSECURE };

static const tly_opt web_opts_table[] = {
    {"--web", OPT_WEB, true},
    {"--insecure", OPT_INSECURE, false},
};

static int web_opt(void *ctx, int id, const char *v)
{
    web_opts *o = ctx;
    if (id == OPT_WEB)
        o->web = v;
    else if (id == OPT_INSECURE)
        o->insecure = true;
    else
        return tly_usagef(CMD, "unexpected argument '%s'", v);
    return TLY_EXIT_OK;
}

/* Parses and checks the address. Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, web_opts *o, tly_web_addr *addr)
{
    tly_common_defaults(&o->common);
    o->web = TLY_DEFAULT_WEB;
    const tly_cli_spec spec = {CMD,
                               TLY_CO_DATA | TLY_CO_QUERY | TLY_CO_METRICS,
                               web_opts_table,
                               sizeof web_opts_table / sizeof web_opts_table[0],
                               web_opt,
                               o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP) {
        usage(stdout);
        return TLY_EXIT_OK;
    }
    if (rc != TLY_EXIT_OK)
        return rc;
    if (tly_web_addr_parse(o->web, addr) != TLY_OK)
        return tly_usagef(CMD, "--web: '%s' is not HOST:PORT (127.0.0.1:7414, [::1]:7414)", o->web);
    char msg[256];
    if (o->common.metrics &&
        tly_metrics_addr_check(o->common.metrics, o->insecure, msg, sizeof msg) != TLY_OK)
        return tly_usagef(CMD, "--metrics: %s", msg);
    if (!addr->loopback && !o->insecure)
        return tly_usagef(CMD,
                          "--web %s is reachable from other machines and the console has no "
                          "login: use a loopback address, or --insecure",
                          o->web);
    rc = tly_common_endpoints(CMD, &o->common);
    return rc == TLY_EXIT_OK ? -1 : rc;
}

/* Waits for SIGINT or SIGTERM (blocked, so no handler runs). */
static void wait_stop(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    tly_logf(TLY_LOG_INFO, CMD, "signal %d, stopping", sig);
}

int tly_cmd_web(int argc, char **argv)
{
    web_opts o = {0};
    tly_web_addr addr;
    int rc = parse(argc, argv, &o, &addr);
    if (rc >= 0)
        return rc;
    tly_log_daemon();
    /* Blocked before the server's threads start, so they inherit the mask
     * and the signal reaches only sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    tly_web_config cfg = {.query = o.common.query, .data = o.common.data, .addr = addr};
    tly_web *w = NULL;
    tly_metrics_http *http = NULL;
    char msg[256] = "";
    if (o.common.metrics && tly_metrics_new(&cfg.metrics) != TLY_OK)
        return TLY_EXIT_FAIL;
    if (tly_web_start(&cfg, &w, msg, sizeof msg) != TLY_OK) {
        tly_errorf(CMD, "--web %s: %s", o.web, msg[0] ? msg : "cannot start");
        tly_metrics_free(cfg.metrics);
        return TLY_EXIT_FAIL;
    }
    if (cfg.metrics && tly_metrics_http_start(o.common.metrics, o.insecure, cfg.metrics, &http, msg,
                                              sizeof msg) != TLY_OK) {
        tly_errorf(CMD, "--metrics %s: %s", o.common.metrics, msg);
        tly_web_stop(w);
        tly_metrics_free(cfg.metrics);
        return TLY_EXIT_FAIL;
    }
    tly_logf(TLY_LOG_INFO, CMD, "console on http://%s/ (query service %s, data %s)", o.web,
             o.common.query, o.common.data);
    sd_notify(0, "READY=1");
    wait_stop();
    sd_notify(0, "STOPPING=1");
    tly_metrics_http_stop(http);
    tly_web_stop(w);
    tly_metrics_free(cfg.metrics);
    return TLY_EXIT_OK;
}
