/*
 * cmd_up.c — `tally up`: runs the whole stack on one machine and keeps it
 * running (SPEC section 2, [D17]).
 *
 * Children: `tally ledger`, N x `tally consume --shard K/N`, `tally query`
 * and `tally web` (the console on --web ADDR),
 * each this same binary (/proc/self/exe) with the same --data and endpoint
 * flags. A child that dies is logged (exit code or signal) and restarted
 * after a backoff: TLY_UP_BACKOFF_MS_MIN doubling to TLY_UP_BACKOFF_MS_MAX,
 * back to the minimum once a child had stayed up TLY_UP_STABLE_MS. SIGINT or
 * SIGTERM stops the children with SIGTERM, waits TLY_UP_STOP_GRACE_MS, then
 * SIGKILLs what is left, and exits 0.
 *
 * Signals are handled synchronously: SIGINT, SIGTERM and SIGCHLD stay
 * blocked and the loop takes them with sigtimedwait, so no state is touched
 * from a handler and no SIGCHLD is lost between a check and a sleep.
 * Children run in their own process group (a terminal's Ctrl-C reaches only
 * the supervisor, which stops them in order) and get SIGTERM if the
 * supervisor itself dies (PR_SET_PDEATHSIG).
 *
 * DIR/tally.pid holds the supervisor's pid under an flock: a second `tally
 * up` on the same DIR refuses to start while the first lives; a file left
 * by a crashed one is not locked and is taken over.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger_repl.h"
#include "tly_cli.h"
#include "tly_cmd.h"
#include "tly_layout.h"
#include "tly_limits.h"
#include "tly_metrics_http.h"
#include "tly_os.h"
#include "tly_web.h"

#define CMD "up"

/* Arguments of one child command line, with room to spare. */
#define CHILD_ARGS_MAX 24u

/* Pause between probes of the ledger's log-read port while it starts. */
#define READY_PROBE_MS 20

_Static_assert(TLY_UP_BACKOFF_MS_MIN > 0 && TLY_UP_BACKOFF_MS_MIN <= TLY_UP_BACKOFF_MS_MAX,
               "backoff doubles from a positive minimum up to the maximum");

typedef struct up_opts {
    tly_common_opts common;
    uint32_t shards;
    bool no_sync;
    bool insecure;
    const char *web;       /* --web ADDR: the console's address */
    bool no_metrics;       /* --no-metrics */
    char metrics_host[64]; /* the children's metrics host ("127.0.0.1", "[::1]") */
    uint32_t metrics_port; /* the first child's metrics port */
    bool metrics_loopback; /* the host is loopback */
    const char *replicate; /* --replicate URL[,URL...]: the ledger's (SPEC section 12) */
    bool standby;          /* --standby: the ledger is a standby of that stream */
} up_opts;

/* The metrics port of each child: the first --metrics port + its slot
 * (`tally web`, the console, takes METRICS_SLOT_WEB). */
enum { METRICS_SLOT_LEDGER, METRICS_SLOT_QUERY, METRICS_SLOT_WEB, METRICS_SLOT_CONSUMER };

typedef struct child {
    char name[32];    /* "ledger", "consume 0/2", "query" */
    char shard[24];   /* "K/N" for a consumer */
    char metrics[80]; /* its --metrics HOST:PORT; "" for none */
    char *argv[CHILD_ARGS_MAX];
    pid_t pid; /* 0 while not running */
    uint64_t started_ns;
    uint64_t restart_at_ns; /* when pid == 0: when to start it again */
    int backoff_ms;         /* delay before the next restart */
    uint32_t starts;        /* times it was started */
} child;

typedef struct up_state {
    up_opts o;
    char shards_arg[16];
    child kids[TLY_UP_CHILDREN_MAX];
    uint32_t count;
    sigset_t blocked;  /* SIGINT, SIGTERM, SIGCHLD: taken by sigtimedwait */
    sigset_t original; /* restored in children before exec */
    int pid_fd;
    bool pid_taken; /* DIR/tally.pid is ours */
    char pid_path[TLY_PATH_BYTES_MAX + 16];
    bool config_error; /* a child failed its first start: stop, exit 1 */
} up_state;

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tally up [--data DIR] [--shards N] [--ingest EP] [--events EP]\n"
            "                [--log-read EP] [--query EP] [--web ADDR] [--no-sync] [--insecure]\n"
            "                [--metrics HOST:PORT | --no-metrics]\n"
            "                [--replicate URL[,URL...] [--standby]]\n"
            "\n"
            "Starts the whole stack on this machine and supervises it: the ledger, N\n"
            "consumers (one per shard), the query service and the web console (tally\n"
            "web, on --web ADDR, default %s), each a child process of\n"
            "this binary with the same --data and endpoint flags. Prints one line per\n"
            "child started; restarts a child that dies after %d ms, doubling up to\n"
            "%d ms while it keeps dying (reset once it stayed up %d s), and logs why\n"
            "it died. SIGINT or SIGTERM stops every child (SIGTERM, then SIGKILL after\n"
            "%d s) and exits 0. DIR/tally.pid names the running supervisor; a second\n"
            "'tally up' on the same DIR refuses to start.\n"
            "\n"
            "  --data DIR    data directory (default $TALLY_DATA, else %s)\n"
            "  --shards N    consumer shards, 1..%u (default: number of online CPUs)\n"
            "  --web ADDR    the web console's HOST:PORT\n"
            "  --no-sync     ledger does not fsync (faster, not durable: tests, demos)\n"
            "  --insecure    let the ledger, query service and console bind non-loopback\n"
            "                endpoints (no CURVE: run 'tally ledger' yourself for that),\n"
            "                and the children serve metrics on a non-loopback host\n"
            "  --metrics HOST:PORT  the first metrics port: the ledger serves Prometheus\n"
            "                metrics there, the query service on PORT+1, consumer K on\n"
            "                PORT+%u+K (PORT+2 is the console's); default: the ingest\n"
            "                port + %u on 127.0.0.1 (7420 for the default 7410). Each\n"
            "                child's address is printed when it starts and recorded in\n"
            "                DIR/endpoints.json under \"metrics\"\n"
            "  --no-metrics  serve no metrics\n"
            "  --replicate URL[,URL...]  the ledger replicates the log into the NATS\n"
            "                JetStream stream TALLY_LOG on these servers (SPEC section 12;\n"
            "                'tally ledger --replicate' for its other flags)\n"
            "  --standby     with --replicate: the ledger is a standby that follows the\n"
            "                stream (the consumers fold what it follows) and takes over\n"
            "                as writer when the writer's lease lapses\n"
            "\n"
            "Exit codes: 0 stopped cleanly, 1 error (e.g. already running), 2 usage.\n",
            TLY_DEFAULT_WEB, TLY_UP_BACKOFF_MS_MIN, TLY_UP_BACKOFF_MS_MAX, TLY_UP_STABLE_MS / 1000,
            TLY_UP_STOP_GRACE_MS / 1000, TLY_DEFAULT_DATA, TLY_SHARDS_MAX,
            (unsigned)METRICS_SLOT_CONSUMER, TLY_UP_METRICS_PORT_OFFSET);
}

static uint32_t default_shards(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > (long)TLY_SHARDS_MAX ? TLY_SHARDS_MAX : (uint32_t)n;
}

enum {
    OPT_SHARDS = 1,
    OPT_NO_SYNC,
    OPT_INSECURE,
    OPT_WEB,
    OPT_NO_METRICS,
    OPT_REPLICATE,
    OPT_STANDBY
};

static const tly_opt up_opts_table[] = {
    {"--shards", OPT_SHARDS, true},          {"--no-sync", OPT_NO_SYNC, false},
    {"--insecure", OPT_INSECURE, false},     {"--web", OPT_WEB, true},
    {"--no-metrics", OPT_NO_METRICS, false}, {"--replicate", OPT_REPLICATE, true},
    {"--standby", OPT_STANDBY, false},
};

static int up_opt(void *ctx, int id, const char *v)
{
    up_opts *o = ctx;
    uint64_t n;
    if (id == OPT_SHARDS) {
        if (!tly_parse_u64(v, 1, TLY_SHARDS_MAX, &n))
            return tly_usagef(CMD, "--shards takes 1..%u", TLY_SHARDS_MAX);
        o->shards = (uint32_t)n;
    }
    o->no_sync = o->no_sync || id == OPT_NO_SYNC;
    o->insecure = o->insecure || id == OPT_INSECURE;
    o->web = id == OPT_WEB ? v : o->web;
    o->no_metrics = o->no_metrics || id == OPT_NO_METRICS;
    o->replicate = id == OPT_REPLICATE ? v : o->replicate;
    o->standby = o->standby || id == OPT_STANDBY;
    if (id == TLY_OPT_ARG)
        return tly_usagef(CMD, "unexpected argument '%s'", v);
    return TLY_EXIT_OK;
}

/* The first metrics address: --metrics, else 127.0.0.1 and the ingest
 * port + TLY_UP_METRICS_PORT_OFFSET (the default's when ingest names no
 * TCP port), into o->metrics_host and o->metrics_port. Exit code. */
static int resolve_metrics(up_opts *o)
{
    char addr[80], msg[256];
    if (o->no_metrics && o->common.metrics)
        return tly_usagef(CMD, "--metrics and --no-metrics exclude each other");
    if (o->no_metrics)
        return TLY_EXIT_OK;
    const char *colon = strrchr(o->common.ingest, ':');
    uint64_t port;
    if (!colon || !tly_parse_u64(colon + 1, 1, 65535 - TLY_UP_METRICS_PORT_OFFSET, &port))
        port = 7410;
    snprintf(addr, sizeof addr, "127.0.0.1:%llu",
             (unsigned long long)port + TLY_UP_METRICS_PORT_OFFSET);
    if (o->common.metrics)
        snprintf(addr, sizeof addr, "%s", o->common.metrics);
    if (tly_metrics_addr_check(addr, o->insecure, msg, sizeof msg) != TLY_OK)
        return tly_usagef(CMD, "%s", msg);
    o->metrics_loopback = tly_metrics_addr_check(addr, false, msg, sizeof msg) == TLY_OK;
    colon = strrchr(addr, ':');
    (void)tly_parse_u64(colon + 1, 1, 65535, &port); /* checked above */
    if (port + METRICS_SLOT_CONSUMER + o->shards - 1 > 65535)
        return tly_usagef(CMD, "--metrics %s: the ports of %u shards run past 65535", addr,
                          o->shards);
    snprintf(o->metrics_host, sizeof o->metrics_host, "%.*s", (int)(colon - addr), addr);
    o->metrics_port = (uint32_t)port;
    return TLY_EXIT_OK;
}

/* [up] The values up hands on to its children, checked as the children
 * check them: a malformed one is a usage error here, before any child
 * starts, where the child refused it after its siblings had started and
 * up stopped them all and exited 1. Exit code. */
static int check_child_values(const up_opts *o)
{
    tly_web_addr addr;
    char msg[256];
    if (tly_web_addr_parse(o->web, &addr) != TLY_OK)
        return tly_usagef(CMD, "--web: '%s' is not HOST:PORT (127.0.0.1:7414, [::1]:7414)", o->web);
    if (!addr.loopback && !o->insecure)
        return tly_usagef(CMD,
                          "--web %s is reachable from other machines and the console has no "
                          "login: use a loopback address, or --insecure",
                          o->web);
    tly_repl_opts ro = {o->replicate, NULL, 0, false, "--replicate"};
    if (o->replicate && tly_repl_check(&ro, msg, sizeof msg) != TLY_OK)
        return tly_usagef(CMD, "%s", msg);
    return TLY_EXIT_OK;
}

static int parse(int argc, char **argv, up_opts *o)
{
    tly_common_defaults(&o->common);
    o->shards = default_shards();
    o->web = TLY_DEFAULT_WEB;
    const tly_cli_spec spec = {CMD,           TLY_CO_DATA | TLY_CO_ENDPOINTS | TLY_CO_METRICS,
                               up_opts_table, sizeof up_opts_table / sizeof up_opts_table[0],
                               up_opt,        o};
    int rc = tly_cli_parse(&spec, &o->common, argc, argv);
    if (rc == TLY_CLI_HELP)
        usage(stdout);
    if (rc == TLY_EXIT_OK && o->standby && !o->replicate)
        return tly_usagef(CMD, "--standby goes with --replicate");
    if (rc == TLY_EXIT_OK)
        rc = check_child_values(o);
    return rc == TLY_EXIT_OK ? resolve_metrics(o) : rc;
}

/* The metrics address of slot (METRICS_SLOT_*) into buf; "" with
 * --no-metrics. */
static void metrics_addr(const up_opts *o, uint32_t slot, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!o->no_metrics)
        snprintf(buf, cap, "%s:%u", o->metrics_host, o->metrics_port + slot);
}

/* ------------------------------------------------------------------------ */
/* Children                                                                  */

static uint64_t mono_ms(void)
{
    return tly_mono_ns() / 1000000u;
}

/* Appends "--flag value" pairs and flags to a child's argv. */
static void add_arg(child *c, uint32_t *n, const char *a)
{
    if (*n + 1 >= CHILD_ARGS_MAX)
        abort(); /* programmer error: CHILD_ARGS_MAX too small */
    c->argv[(*n)++] = (char *)a;
    c->argv[*n] = NULL;
}

static void add_pair(child *c, uint32_t *n, const char *flag, const char *value)
{
    add_arg(c, n, flag);
    add_arg(c, n, value);
}

static child *new_child(up_state *u, const char *name, const char *sub, uint32_t *n);

/* Gives c its --metrics (slot's port), and --insecure for a consumer when
 * the host is not loopback (the ledger and the query service have it
 * with up's --insecure already). */
static void add_metrics(up_state *u, child *c, uint32_t *n, uint32_t slot)
{
    metrics_addr(&u->o, slot, c->metrics, sizeof c->metrics);
    if (!c->metrics[0])
        return;
    add_pair(c, n, "--metrics", c->metrics);
    if (slot >= METRICS_SLOT_CONSUMER && !u->o.metrics_loopback)
        add_arg(c, n, "--insecure");
}

static child *new_child(up_state *u, const char *name, const char *sub, uint32_t *n)
{
    child *c = &u->kids[u->count++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->backoff_ms = TLY_UP_BACKOFF_MS_MIN;
    *n = 0;
    add_arg(c, n, "tally");
    add_arg(c, n, sub);
    add_pair(c, n, "--data", u->o.common.data);
    return c;
}

/* The command lines: each child gets exactly the flags it understands. */
static void plan_children(up_state *u)
{
    const tly_common_opts *co = &u->o.common;
    uint32_t n;
    child *c = new_child(u, "ledger", "ledger", &n);
    add_pair(c, &n, "--ingest", co->ingest);
    add_pair(c, &n, "--events", co->events);
    add_pair(c, &n, "--log-read", co->log_read);
    if (u->o.no_sync)
        add_arg(c, &n, "--no-sync");
    if (u->o.insecure)
        add_arg(c, &n, "--insecure");
    if (u->o.replicate)
        add_pair(c, &n, "--replicate", u->o.replicate);
    if (u->o.standby)
        add_arg(c, &n, "--standby");
    add_metrics(u, c, &n, METRICS_SLOT_LEDGER);
    for (uint32_t k = 0; k < u->o.shards; k++) {
        char name[32];
        snprintf(name, sizeof name, "consume %u/%u", k, u->o.shards);
        c = new_child(u, name, "consume", &n);
        snprintf(c->shard, sizeof c->shard, "%u/%u", k, u->o.shards);
        add_pair(c, &n, "--shard", c->shard);
        add_pair(c, &n, "--events", co->events);
        add_pair(c, &n, "--log-read", co->log_read);
        add_metrics(u, c, &n, METRICS_SLOT_CONSUMER + k);
    }
    snprintf(u->shards_arg, sizeof u->shards_arg, "%u", u->o.shards);
    c = new_child(u, "query", "query", &n);
    add_pair(c, &n, "--query", co->query);
    add_pair(c, &n, "--shards", u->shards_arg);
    if (u->o.insecure)
        add_arg(c, &n, "--insecure");
    add_metrics(u, c, &n, METRICS_SLOT_QUERY);
    c = new_child(u, "web", "web", &n);
    add_pair(c, &n, "--query", co->query);
    add_pair(c, &n, "--web", u->o.web);
    metrics_addr(&u->o, METRICS_SLOT_WEB, c->metrics, sizeof c->metrics);
    if (c->metrics[0])
        add_pair(c, &n, "--metrics", c->metrics);
    if (u->o.insecure || (c->metrics[0] && !u->o.metrics_loopback))
        add_arg(c, &n, "--insecure");
}

/* In the child, between fork and exec: own process group, default signal
 * mask, and SIGTERM when the supervisor dies. */
static void child_exec(const up_state *u, child *c)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        _exit(1); /* the supervisor is already gone */
    sigprocmask(SIG_SETMASK, &u->original, NULL);
    execv("/proc/self/exe", c->argv);
    tly_logf(TLY_LOG_ERROR, "up", "cannot exec %s: %s", c->name, strerror(errno));
    _exit(127);
}

static void start_child(up_state *u, child *c)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(u, c);
    if (pid < 0) {
        tly_logf(TLY_LOG_WARN, "up", "cannot start %s: %s; retrying in %d ms", c->name,
                 strerror(errno), c->backoff_ms);
        c->restart_at_ns = tly_mono_ns() + (uint64_t)c->backoff_ms * 1000000u;
        return;
    }
    c->pid = pid;
    c->started_ns = tly_mono_ns();
    c->starts++;
    tly_logf(TLY_LOG_INFO, "up", "started %s (pid %d)%s%s%s", c->name, (int)pid,
             c->metrics[0] ? ", metrics http://" : "", c->metrics, c->metrics[0] ? "/metrics" : "");
    fflush(stdout);
}

static child *find_child(up_state *u, pid_t pid)
{
    for (uint32_t i = 0; i < u->count; i++)
        if (u->kids[i].pid == pid)
            return &u->kids[i];
    return NULL;
}

static void describe_status(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with code %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "stopped (status %#x)", st);
}

/* Schedules the restart of a child that died: the backoff starts over when
 * it had been up long enough to count as healthy. */
static void schedule_restart(child *c, int st)
{
    uint64_t now = tly_mono_ns();
    uint64_t up_ms = (now - c->started_ns) / 1000000u;
    if (up_ms >= TLY_UP_STABLE_MS)
        c->backoff_ms = TLY_UP_BACKOFF_MS_MIN;
    char why[96];
    describe_status(st, why, sizeof why);
    tly_logf(TLY_LOG_WARN, "up", "%s (pid %d) %s after %llu ms; restarting in %d ms", c->name,
             (int)c->pid, why, (unsigned long long)up_ms, c->backoff_ms);
    c->pid = 0;
    c->restart_at_ns = now + (uint64_t)c->backoff_ms * 1000000u;
    c->backoff_ms =
        c->backoff_ms * 2 > TLY_UP_BACKOFF_MS_MAX ? TLY_UP_BACKOFF_MS_MAX : c->backoff_ms * 2;
}

/* A configuration error, not a crash: the child exited by itself with
 * code 1 or 2 (its own error line is above) within TLY_UP_STABLE_MS of its
 * first start. Restarting would only repeat it; a crash (a signal) or a
 * later failure is restarted. */
static bool config_error(const child *c, int st)
{
    uint64_t up_ms = (tly_mono_ns() - c->started_ns) / 1000000u;
    return c->starts == 1 && up_ms < TLY_UP_STABLE_MS && WIFEXITED(st) &&
           (WEXITSTATUS(st) == TLY_EXIT_FAIL || WEXITSTATUS(st) == TLY_EXIT_USAGE);
}

/* Reaps every child that has exited. When stopping, nothing restarts.
 * Returns the number of children still running. */
static uint32_t reap(up_state *u, bool stopping)
{
    for (uint32_t i = 0; i <= TLY_UP_CHILDREN_MAX; i++) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            break;
        child *c = find_child(u, pid);
        if (!c)
            continue;
        if (!stopping && config_error(c, st)) {
            tly_logf(TLY_LOG_ERROR, CMD,
                     "%s (pid %d) exited with code %d at its first start: a configuration "
                     "error (its message is above), not restarted; stopping",
                     c->name, (int)pid, WEXITSTATUS(st));
            c->pid = 0;
            c->restart_at_ns = UINT64_MAX;
            u->config_error = true;
        } else if (stopping) {
            char why[96];
            describe_status(st, why, sizeof why);
            tly_logf(TLY_LOG_INFO, "up", "%s (pid %d) %s", c->name, (int)pid, why);
            c->pid = 0;
        } else {
            schedule_restart(c, st);
        }
    }
    uint32_t live = 0;
    for (uint32_t i = 0; i < u->count; i++)
        live += u->kids[i].pid != 0;
    return live;
}

static void restart_due(up_state *u)
{
    uint64_t now = tly_mono_ns();
    for (uint32_t i = 0; i < u->count; i++) {
        child *c = &u->kids[i];
        if (c->pid == 0 && c->restart_at_ns <= now)
            start_child(u, c);
    }
}

/* Milliseconds until the next pending restart (capped at a second, so the
 * loop wakes up regularly even with nothing to do). */
static int next_wake_ms(const up_state *u)
{
    uint64_t now = tly_mono_ns();
    uint64_t wake = now + 1000000000u;
    for (uint32_t i = 0; i < u->count; i++)
        if (u->kids[i].pid == 0 && u->kids[i].restart_at_ns < wake)
            wake = u->kids[i].restart_at_ns;
    return wake <= now ? 0 : (int)((wake - now) / 1000000u) + 1;
}

/* Waits up to ms for one of the blocked signals; returns it, or 0. */
static int take_signal(up_state *u, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(&u->blocked, NULL, &ts);
    return sig < 0 ? 0 : sig;
}

/* ------------------------------------------------------------------------ */
/* Startup and shutdown                                                      */

/* Whether a TCP endpoint on this machine accepts connections; true for an
 * endpoint we cannot probe (not tcp:// on a loopback or wildcard host). */
static bool tcp_listening(const char *ep)
{
    const char *colon = strrchr(ep, ':');
    bool local = strncmp(ep, "tcp://127.0.0.1:", 16) == 0 ||
                 strncmp(ep, "tcp://localhost:", 16) == 0 || strncmp(ep, "tcp://*:", 8) == 0 ||
                 strncmp(ep, "tcp://0.0.0.0:", 14) == 0;
    if (!local || !colon)
        return true;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Lets the ledger bind before the consumers connect (they would wait and
 * retry anyway: this only keeps their logs quiet). Returns early on a
 * stop signal (re-raised for the main loop) or a child's exit. */
static void await_ledger(up_state *u)
{
    for (int waited = 0; waited < TLY_UP_LEDGER_READY_MS; waited += READY_PROBE_MS) {
        if (tcp_listening(u->o.common.log_read))
            return;
        int sig = take_signal(u, READY_PROBE_MS);
        if (sig == SIGINT || sig == SIGTERM) {
            raise(sig); /* stays pending: the main loop takes it */
            return;
        }
        if (sig == SIGCHLD)
            return;
    }
    tly_logf(TLY_LOG_WARN, "up", "ledger not listening on %s after %d ms; starting the rest",
             u->o.common.log_read, TLY_UP_LEDGER_READY_MS);
}

static void signal_all(up_state *u, int sig)
{
    for (uint32_t i = 0; i < u->count; i++)
        if (u->kids[i].pid > 0)
            kill(u->kids[i].pid, sig);
}

/* Stops every child: SIGTERM, up to TLY_UP_STOP_GRACE_MS for them to exit
 * (a second SIGINT/SIGTERM cuts it short), then SIGKILL. */
static void stop_all(up_state *u, int why)
{
    tly_logf(TLY_LOG_INFO, CMD, "%s, stopping %u children",
             why == SIGINT    ? "SIGINT received"
             : why == SIGTERM ? "SIGTERM received"
                              : "a configuration error",
             u->count);
    signal_all(u, SIGTERM);
    uint64_t deadline = mono_ms() + TLY_UP_STOP_GRACE_MS;
    uint32_t live = reap(u, true);
    while (live > 0 && mono_ms() < deadline) {
        int sig = take_signal(u, (int)(deadline - mono_ms()));
        if (sig == SIGINT || sig == SIGTERM)
            break;
        live = reap(u, true);
    }
    if (live > 0) {
        tly_logf(TLY_LOG_WARN, "up", "%u children still running, sending SIGKILL", live);
        signal_all(u, SIGKILL);
        for (uint32_t i = 0; i < u->count; i++) {
            int st;
            if (u->kids[i].pid > 0 && waitpid(u->kids[i].pid, &st, 0) > 0)
                u->kids[i].pid = 0;
        }
    }
    tly_logf(TLY_LOG_INFO, "up", "all children stopped");
}

/* The supervisor's loop runs for the life of the stack: it ends only on
 * SIGINT or SIGTERM, so it is bounded by the operator, not by a count. */
static int supervise(up_state *u)
{
    for (;;) {
        int sig = take_signal(u, next_wake_ms(u));
        if (sig == SIGINT || sig == SIGTERM) {
            stop_all(u, sig);
            return TLY_EXIT_OK;
        }
        reap(u, false);
        if (u->config_error) {
            stop_all(u, 0);
            return TLY_EXIT_FAIL;
        }
        restart_due(u);
    }
}

/* ------------------------------------------------------------------------ */
/* The pid file                                                              */

/* Takes DIR/tally.pid: TLY_EXIT_OK, or prints why not and returns 1. */
static int take_pid_file(up_state *u)
{
    const char *dir = u->o.common.data;
    /* mkdir -p (the pid file lives in it); DIR must fit a TLY_PATH_BYTES_MAX
     * buffer with its NUL. */
    if (strlen(dir) >= TLY_PATH_BYTES_MAX || tly_mkdirs(dir, NULL) != TLY_OK) {
        tly_errorf(CMD, "cannot create data directory %s: %s", dir, strerror(errno));
        return TLY_EXIT_FAIL;
    }
    (void)tly_layout_pid(dir, u->pid_path, sizeof u->pid_path); /* fits: dir is bounded above */
    u->pid_fd = open(u->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, TLY_FILE_MODE);
    if (u->pid_fd < 0) {
        tly_errorf(CMD, "cannot open %s: %s", u->pid_path, strerror(errno));
        return TLY_EXIT_FAIL;
    }
    if (flock(u->pid_fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t n = pread(u->pid_fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        tly_errorf(CMD, "another 'tally up' (pid %s) is running on %s", buf[0] ? buf : "?", dir);
        close(u->pid_fd);
        return TLY_EXIT_FAIL;
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (ftruncate(u->pid_fd, 0) != 0 || pwrite(u->pid_fd, line, (size_t)len, 0) != len) {
        tly_errorf(CMD, "cannot write %s: %s", u->pid_path, strerror(errno));
        close(u->pid_fd);
        return TLY_EXIT_FAIL;
    }
    u->pid_taken = true;
    return TLY_EXIT_OK;
}

/* Removes the pid file while still holding its lock, so a new supervisor
 * never sees our stale pid. */
static void drop_pid_file(up_state *u)
{
    unlink(u->pid_path);
    close(u->pid_fd);
}

/* ------------------------------------------------------------------------ */
/* Failing fast on a configuration error                                     */

/* The address a tcp:// endpoint on this machine binds: loopback for host
 * 127.0.0.1 or localhost, any for the wildcard or 0.0.0.0. False for one
 * that cannot be probed here (another host, IPv6, an interface name,
 * ipc://): the child's own bind decides those. */
static bool local_tcp(const char *ep, struct sockaddr_in *a)
{
    static const char *const hosts[] = {
        "tcp://127.0.0.1:", "tcp://localhost:", "tcp://*:", "tcp://0.0.0.0:"};
    for (size_t k = 0; k < sizeof hosts / sizeof hosts[0]; k++) {
        size_t n = strlen(hosts[k]);
        uint64_t port;
        if (strncmp(ep, hosts[k], n) != 0 || !tly_parse_u64(ep + n, 1, 65535, &port))
            continue;
        *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a->sin_addr.s_addr = htonl(k < 2 ? INADDR_LOOPBACK : INADDR_ANY);
        return true;
    }
    return false;
}

/* True when something already listens on the endpoint's port: a bind with
 * SO_REUSEADDR (as ZeroMQ binds) fails with EADDRINUSE. */
static bool port_taken(const char *ep)
{
    struct sockaddr_in a;
    if (!local_tcp(ep, &a))
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return false;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool taken = bind(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

/* True when another process holds the flock of path (a missing file is
 * held by nobody). */
static bool lock_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the probe's own lock */
    return held;
}

/* The locks of DIR a child will take: the log's writer lock and each
 * shard's consumer lock. Prints the first one held and returns false. */
static bool locks_free(const up_state *u)
{
    const char *dir = u->o.common.data;
    char path[TLY_PATH_BYTES_MAX + 64], sub[TLY_PATH_BYTES_MAX + 32];
    if (tly_layout_log(dir, sub, sizeof sub) == TLY_OK &&
        tly_layout_join(sub, TLY_LAYOUT_WRITER_LOCK, path, sizeof path) == TLY_OK &&
        lock_held(path)) {
        tly_errorf(CMD, "the data directory %s is locked: another ledger writes its log (%s)", dir,
                   path);
        return false;
    }
    for (uint32_t k = 0; k < u->o.shards; k++) {
        char views[TLY_PATH_BYTES_MAX];
        if (tly_layout_views(dir, views, sizeof views) == TLY_OK &&
            tly_layout_shard(views, k, u->o.shards, sub, sizeof sub) == TLY_OK &&
            tly_layout_join(sub, TLY_LAYOUT_CONSUMER_LOCK, path, sizeof path) == TLY_OK &&
            lock_held(path)) {
            tly_errorf(CMD,
                       "the data directory %s is locked: another consumer folds shard %u/%u "
                       "(%s)",
                       dir, k, u->o.shards, path);
            return false;
        }
    }
    return true;
}

/* Every child's metrics port free (the children are planned). Prints the
 * first one taken and returns false. */
static bool metrics_free(const up_state *u)
{
    for (uint32_t i = 0; i < u->count; i++) {
        char ep[96];
        snprintf(ep, sizeof ep, "tcp://%s", u->kids[i].metrics);
        if (u->kids[i].metrics[0] && port_taken(ep)) {
            tly_errorf(CMD,
                       "metrics of %s on %s: the port is in use by another process (give "
                       "another first port with --metrics, or --no-metrics)",
                       u->kids[i].name, u->kids[i].metrics);
            return false;
        }
    }
    return true;
}

/* [up] Before any child starts: every endpoint free, no lock of DIR held
 * by another process. A configuration error is one line and exit 1, never
 * a restart loop. */
static int preflight(const up_state *u)
{
    const tly_common_opts *c = &u->o.common;
    const char *const names[] = {"--ingest", "--events", "--log-read", "--query"};
    const char *const eps[] = {c->ingest, c->events, c->log_read, c->query};
    for (int k = 0; k < 4; k++) {
        if (port_taken(eps[k])) {
            tly_errorf(CMD,
                       "%s %s: the port is in use by another process (another stack? "
                       "give free ports with --ingest, --events, --log-read, --query)",
                       names[k], eps[k]);
            return TLY_EXIT_FAIL;
        }
    }
    char web[TLY_NAME_BYTES_MAX + 8]; /* the console's HOST:PORT probed as tcp:// */
    snprintf(web, sizeof web, "tcp://%s", u->o.web);
    if (port_taken(web)) {
        tly_errorf(CMD, "--web %s: the port is in use by another process", u->o.web);
        return TLY_EXIT_FAIL;
    }
    return metrics_free(u) && locks_free(u) ? TLY_EXIT_OK : TLY_EXIT_FAIL;
}

/* Records the endpoints in DIR/endpoints.json for client commands given
 * --data DIR, and each child's metrics address under "metrics" (keyed by
 * the child's name: "ledger", "query", "consume K/N"). */
static int record_endpoints(const up_state *u)
{
    char msg[TLY_PATH_BYTES_MAX + 128];
    tly_endpoint_extra extra[TLY_UP_CHILDREN_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < u->count; i++)
        if (u->kids[i].metrics[0])
            extra[n++] = (tly_endpoint_extra){"metrics", u->kids[i].name, u->kids[i].metrics};
    if (tly_endpoints_write_extra(&u->o.common, extra, n, msg, sizeof msg) == TLY_OK)
        return TLY_EXIT_OK;
    tly_errorf(CMD, "%s", msg);
    return TLY_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */

static void block_signals(up_state *u)
{
    /* SIGCHLD back to its default in case we inherited SIG_IGN, which would
     * make the kernel reap children itself and leave waitpid nothing. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigemptyset(&u->blocked);
    sigaddset(&u->blocked, SIGINT);
    sigaddset(&u->blocked, SIGTERM);
    sigaddset(&u->blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &u->blocked, &u->original);
}

int tly_cmd_up(int argc, char **argv)
{
    up_state *u = calloc(1, sizeof *u);
    if (!u)
        return TLY_EXIT_FAIL;
    int rc = parse(argc, argv, &u->o);
    if (rc == TLY_EXIT_OK) {
        tly_log_daemon();
        plan_children(u);
        rc = take_pid_file(u);
    }
    u->o.common.web = u->o.web; /* recorded as "web" in endpoints.json */
    if (rc == TLY_EXIT_OK && (rc = preflight(u)) == TLY_EXIT_OK)
        rc = record_endpoints(u);
    if (rc != TLY_EXIT_OK) {
        if (u->pid_taken)
            drop_pid_file(u);
        free(u);
        return rc < 0 ? TLY_EXIT_OK : rc;
    }
    block_signals(u);
    tly_logf(TLY_LOG_INFO, "up", "data in %s, %u shard%s, query service on %s", u->o.common.data,
             u->o.shards, u->o.shards == 1 ? "" : "s", u->o.common.query);
    start_child(u, &u->kids[0]);
    await_ledger(u);
    for (uint32_t i = 1; i < u->count; i++)
        start_child(u, &u->kids[i]);
    rc = supervise(u);
    drop_pid_file(u);
    sigprocmask(SIG_SETMASK, &u->original, NULL);
    free(u);
    return rc;
}
