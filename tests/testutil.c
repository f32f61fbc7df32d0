/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/tally-test-XXXXXX", base && *base ? base : "/tmp");
    char *p = mkdtemp(tmpl);
    if (!p) {
        perror("mkdtemp");
        abort();
    }
    return strdup(p);
}

void tu_rmtree(char *path)
{
    if (!path)
        return;
    char *const argv[] = {"rm", "-rf", path, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execvp("rm", argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    free(path);
}

/* Ports tests listen on lie below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, 32768-60999 on Debian). A port from that
 * range can be taken, while its server is down (a kill -9 test), by a
 * client reconnecting to it: TCP connects a socket to itself when its
 * ephemeral local port equals the closed port it dials, and the restarted
 * server then fails with "Address already in use". */
#define TU_PORT_LOW 10000
#define TU_PORT_HIGH 32767
#define TU_PORT_TRIES 1000
/* Ports this process holds a reservation for (port_reserve), at most. */
#define TU_PORT_HELD_MAX 4096

/* True when a fresh TCP socket can bind (connect: false) or connect
 * (true) to 127.0.0.1:port right now. */
static bool port_try(int port, bool connect_to)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    const struct sockaddr *sa = (const struct sockaddr *)&a;
    bool ok = fd >= 0 && (connect_to ? connect(fd, sa, sizeof a) : bind(fd, sa, sizeof a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/*
 * Reservations across the test processes ctest runs side by side: a port
 * a test picked stays its own until the process ends, bound or not. A test
 * that stops a ledger and starts it again on the same ports (a restart, a
 * take-over) leaves them unbound in between, and a test beside it picking
 * ports at that moment took one (test_replicate's restart failed with
 * "Address already in use"). A reservation is a file named by the port in
 * TU_PORT_DIR, created exclusively, holding the owner's pid; the owner
 * removes its files when it exits, and a file whose owner is gone (a test
 * killed by its timeout) is taken over.
 */
#define TU_PORT_DIR "/tmp/tally-test-ports"

static int held_port[TU_PORT_HELD_MAX];
static pid_t held_pid[TU_PORT_HELD_MAX];
static int held_count;

static void port_file(int port, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%d", TU_PORT_DIR, port);
}

/* Removes the reservations of this process (not those a parent made
 * before forking it) when it exits normally. */
static void ports_release_all(void)
{
    char path[64];
    for (int i = 0; i < held_count; i++)
        if (held_pid[i] == getpid()) {
            port_file(held_port[i], path, sizeof path);
            unlink(path);
        }
}

static void port_release(int port)
{
    char path[64];
    for (int i = held_count - 1; i >= 0; i--)
        if (held_port[i] == port && held_pid[i] == getpid()) {
            port_file(port, path, sizeof path);
            unlink(path);
            held_port[i] = held_port[--held_count];
            held_pid[i] = held_pid[held_count];
            return;
        }
}

/* True when the reservation at path names a process that is gone; false
 * while its owner lives, or while it is being written (empty). */
static bool owner_gone(const char *path)
{
    char text[32] = "";
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    long owner = n > 0 ? strtol(text, NULL, 10) : 0;
    return owner > 0 && kill((pid_t)owner, 0) != 0 && errno == ESRCH;
}

/* True when this process now holds port's reservation: it made it now, or
 * took it over from a process that is gone. */
static bool port_reserve(int port)
{
    static bool registered;
    if (!registered) {
        (void)mkdir(TU_PORT_DIR, 0777);
        (void)chmod(TU_PORT_DIR, 01777);
        atexit(ports_release_all);
        registered = true;
    }
    if (held_count == TU_PORT_HELD_MAX)
        return false;
    char path[64];
    port_file(port, path, sizeof path);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            dprintf(fd, "%ld\n", (long)getpid());
            close(fd);
            held_port[held_count] = port;
            held_pid[held_count++] = getpid();
            return true;
        }
        if (errno != EEXIST || !owner_gone(path))
            return false; /* held (or being written) by a live process */
        unlink(path);     /* its owner is gone */
    }
    return false;
}

/* Removes the reservations whose owners are gone: Check runs each test in
 * a child that ends without running atexit's functions, so the runner
 * sweeps after its tests (a reservation left behind is only taken over
 * later, by pid). */
static void ports_sweep(void)
{
    DIR *d = opendir(TU_PORT_DIR);
    if (d == NULL)
        return;
    struct dirent *ent;
    char path[300];
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] < '0' || ent->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "%s/%s", TU_PORT_DIR, ent->d_name);
        if (owner_gone(path))
            unlink(path);
    }
    closedir(d);
}

/* True when port can be bound on 127.0.0.1 right now and this process now
 * holds its reservation. */
static bool port_free(int port)
{
    if (!port_reserve(port))
        return false;
    if (port_try(port, false))
        return true;
    port_release(port);
    return false;
}

/* The next port to try, pseudo-random in [TU_PORT_LOW, TU_PORT_HIGH):
 * processes side by side start from different seeds. */
static int port_candidate(void)
{
    static unsigned state;
    if (state == 0)
        state = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    state = state * 1103515245u + 12345u;
    return TU_PORT_LOW + (int)((state >> 8) % (TU_PORT_HIGH - TU_PORT_LOW));
}

int tu_free_port(void)
{
    for (int i = 0; i < TU_PORT_TRIES; i++) {
        int port = port_candidate();
        if (port_free(port))
            return port;
    }
    fprintf(stderr, "no free port below the ephemeral range\n");
    abort();
}

void tu_endpoint(char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%d", tu_free_port());
}

const char *tu_tally(void)
{
    const char *b = getenv("TALLY_BIN");
    return b && *b ? b : "./tally";
}

char *tu_vector(const char *name)
{
    const char *dir = getenv("TALLY_VECTORS");
    char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", dir && *dir ? dir : "tests/vectors", name);
    return strdup(buf);
}

static void redirect(int fd, const char *path, int flags)
{
    int f = open(path ? path : "/dev/null", flags, 0644);
    if (f < 0)
        _exit(126);
    dup2(f, fd);
    close(f);
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int tu_run(char *const argv[], const char *in_path, const char *out_path, const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        redirect(0, in_path, O_RDONLY);
        redirect(1, out_path, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(2, err_path, O_WRONLY | O_CREAT | O_TRUNC);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return status_code(st);
}

pid_t tu_spawn(char *const argv[], const char *log_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        redirect(0, NULL, O_RDONLY);
        redirect(1, log_path, O_WRONLY | O_CREAT | O_APPEND);
        redirect(2, log_path, O_WRONLY | O_CREAT | O_APPEND);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int tu_kill_wait(pid_t pid, int sig)
{
    kill(pid, sig);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return status_code(st);
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

bool tu_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* True when a connect() to 127.0.0.1:port succeeds now. */
static bool port_listening(int port)
{
    return port_try(port, true);
}

/* The port of "tcp://HOST:PORT" (or "HOST:PORT"); 0 when there is none. */
static int endpoint_port(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : 0;
}

bool tu_wait_listening(const char *endpoint, int timeout_ms)
{
    int port = endpoint_port(endpoint);
    if (port <= 0)
        return false;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (port_listening(port))
            return true;
        tu_sleep_ms(20);
    }
    return false;
}

/* Listening sockets a port has at the most (one, unless SO_REUSEPORT). */
#define TU_LISTENERS_MAX 8

/* The inodes of the sockets listening on TCP port (the IPv4 and IPv6
 * tables), at most TU_LISTENERS_MAX; -1 when neither table can be read. */
static int listen_inodes(int port, unsigned long *inodes)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    int n = 0;
    bool read = false;
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        read = true;
        char line[512], local[64];
        unsigned state;
        unsigned long inode;
        while (fgets(line, sizeof line, f)) {
            /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
            if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*u %*d %lu", local, &state, &inode) !=
                3)
                continue; /* the heading */
            const char *colon = strrchr(local, ':');
            if (state == 0x0A /* LISTEN */ && colon && strtol(colon + 1, NULL, 16) == port &&
                n < TU_LISTENERS_MAX)
                inodes[n++] = inode;
        }
        fclose(f);
    }
    return read ? n : -1;
}

/* True when process pid holds a descriptor of one of the n sockets. */
static bool holds_socket(pid_t pid, const unsigned long *inodes, int n)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        char path[384], link[64];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        unsigned long inode;
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (sscanf(link, "socket:[%lu]", &inode) != 1)
            continue;
        for (int i = 0; i < n; i++)
            found = found || inode == inodes[i];
    }
    closedir(d);
    return found;
}

/* The parent of pid (/proc/PID/stat: "pid (comm) state ppid ..."); 0 when
 * unknown. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *end = strrchr(buf, ')'); /* comm may hold blanks and ')' */
    int ppid = 0;
    return end && sscanf(end + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : 0;
}

/* Who listens on port: 1 pid or a child of pid, -1 another process, 0
 * nobody (yet). 1 when /proc cannot tell. */
static int listener_owner(int port, pid_t pid)
{
    unsigned long inodes[TU_LISTENERS_MAX];
    int n = listen_inodes(port, inodes);
    if (n <= 0)
        return n < 0 ? 1 : 0;
    if (holds_socket(pid, inodes, n))
        return 1;
    DIR *d = opendir("/proc");
    if (!d)
        return 1;
    int owner = -1;
    for (struct dirent *e; owner < 0 && (e = readdir(d)) != NULL;) {
        pid_t p = (pid_t)atoi(e->d_name);
        if (p > 0 && parent_of(p) == pid && holds_socket(p, inodes, n))
            owner = 1;
    }
    closedir(d);
    return owner;
}

tu_listen tu_wait_listener(const char *endpoint, pid_t pid, int timeout_ms, int *status)
{
    int port = endpoint_port(endpoint);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (status)
                *status = status_code(st);
            return TU_LISTEN_EXITED;
        }
        int owner = port > 0 && port_listening(port) ? listener_owner(port, pid) : 0;
        if (owner != 0)
            return owner > 0 ? TU_LISTEN_OURS : TU_LISTEN_FOREIGN;
        tu_sleep_ms(20);
    }
    return TU_LISTEN_TIMEOUT;
}

/* ------------------------------------------------------------------------ */
/* tu_stack                                                                  */

/* Shards tu_stack_up starts at the most (a bound of its wait list). */
#define TU_STACK_SHARDS_MAX 32
/* Endpoints a wait list has at the most: four of ZeroMQ, the console,
 * and a metrics port per slot. */
#define TU_STACK_WAITS (5 + TU_STACK_METRICS_SLOT_CONSUMER + TU_STACK_SHARDS_MAX)
/* Arguments of `tally up`: the fixed ones, --metrics, then the extra. */
#define TU_STACK_ARGV_MAX (24 + TU_STACK_EXTRA_ARGS_MAX)
/* Port ranges one stack picks: seven, with room. */
#define TU_STACK_RANGES 16

/* The ports one stack has picked, as ranges (first port, count). */
typedef struct port_set {
    int lo[TU_STACK_RANGES], n[TU_STACK_RANGES];
    int count;
} port_set;

/* True when ports lo .. lo + n - 1 lie in the tests' range, are none of
 * p's, and are free now. */
static bool range_free(const port_set *p, int lo, int n)
{
    if (lo < TU_PORT_LOW || lo + n - 1 > TU_PORT_HIGH)
        return false;
    for (int i = 0; i < p->count; i++)
        if (lo < p->lo[i] + p->n[i] && p->lo[i] < lo + n)
            return false;
    for (int k = 0; k < n; k++)
        if (!port_free(lo + k)) {
            while (k-- > 0)
                port_release(lo + k);
            return false;
        }
    return true;
}

static void range_take(port_set *p, int lo, int n)
{
    if (p->count == TU_STACK_RANGES) {
        fprintf(stderr, "tu_stack: more than %d port ranges\n", TU_STACK_RANGES);
        abort();
    }
    p->lo[p->count] = lo;
    p->n[p->count++] = n;
}

/* A free port, none of p's, whose span ports from port + off on are free
 * and none of p's too (span 0: no more); all of them become p's. */
static int pick_ports(port_set *p, int off, int span)
{
    for (int i = 0; i < TU_PORT_TRIES; i++) {
        int port = port_candidate();
        /* off 0: the span starts at the port itself (reserved once) */
        if (!range_free(p, port, off == 0 && span > 0 ? span : 1))
            continue;
        if (off != 0 && span > 0 && !range_free(p, port + off, span)) {
            port_release(port);
            continue;
        }
        range_take(p, port, 1);
        if (span > 0)
            range_take(p, port + off, span);
        return port;
    }
    fprintf(stderr, "no %d free ports below the ephemeral range\n", 1 + span);
    abort();
}

int tu_free_ports(int n)
{
    port_set p = {0};
    return pick_ports(&p, 0, n);
}

/* A fresh directory and free ports for one try: the metrics ports too,
 * given (o->metrics) or derived from the ingest port. */
static void stack_pick(tu_stack *s, const tu_stack_opts *o, int shards)
{
    port_set p = {0};
    int span = TU_STACK_METRICS_SLOT_CONSUMER + shards;
    s->dir = tu_tmpdir();
    snprintf(s->log, sizeof s->log, "%s/up.log", s->dir);
    int ingest = o->metrics ? pick_ports(&p, 0, 0) : pick_ports(&p, TU_STACK_METRICS_OFFSET, span);
    snprintf(s->ingest, sizeof s->ingest, "tcp://127.0.0.1:%d", ingest);
    snprintf(s->events, sizeof s->events, "tcp://127.0.0.1:%d", pick_ports(&p, 0, 0));
    snprintf(s->log_read, sizeof s->log_read, "tcp://127.0.0.1:%d", pick_ports(&p, 0, 0));
    snprintf(s->query, sizeof s->query, "tcp://127.0.0.1:%d", pick_ports(&p, 0, 0));
    s->web_port = pick_ports(&p, 0, 0);
    snprintf(s->web, sizeof s->web, "127.0.0.1:%d", s->web_port);
    s->metrics = o->metrics ? pick_ports(&p, 0, span) : ingest + TU_STACK_METRICS_OFFSET;
}

/* One try's command line. */
typedef struct stack_cmd {
    char shards[16], metrics[32];
    char *argv[TU_STACK_ARGV_MAX];
} stack_cmd;

static void stack_cmd_make(stack_cmd *c, const tu_stack *s, const tu_stack_opts *o, int shards)
{
    snprintf(c->shards, sizeof c->shards, "%d", shards);
    snprintf(c->metrics, sizeof c->metrics, "127.0.0.1:%d", s->metrics);
    const char *const fixed[] = {tu_tally(),   "up",        "--data",  s->dir,     "--shards",
                                 c->shards,    "--ingest",  s->ingest, "--events", s->events,
                                 "--log-read", s->log_read, "--query", s->query,   "--web",
                                 s->web,       "--no-sync"};
    int n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        c->argv[n++] = (char *)fixed[i];
    if (o->metrics) {
        c->argv[n++] = "--metrics";
        c->argv[n++] = c->metrics;
    }
    for (int i = 0; o->args && o->args[i]; i++) {
        if (i == TU_STACK_EXTRA_ARGS_MAX) {
            fprintf(stderr, "tu_stack: more than %d extra arguments\n", TU_STACK_EXTRA_ARGS_MAX);
            abort();
        }
        c->argv[n++] = (char *)o->args[i];
    }
    c->argv[n] = NULL;
}

/* The endpoints of the wait list, in the order the stack binds them;
 * returns their count. */
static int stack_waits(const tu_stack *s, unsigned wait, int shards, char eps[][64])
{
    const char *const zmq[] = {s->ingest, s->events, s->log_read, s->query};
    const unsigned bits[] = {TU_WAIT_INGEST, TU_WAIT_EVENTS, TU_WAIT_LOG_READ, TU_WAIT_QUERY};
    int n = 0;
    for (int k = 0; k < 4; k++)
        if (wait & bits[k])
            snprintf(eps[n++], 64, "%s", zmq[k]);
    if (wait & TU_WAIT_WEB)
        snprintf(eps[n++], 64, "tcp://%s", s->web);
    for (int k = 0; (wait & TU_WAIT_METRICS) && k < TU_STACK_METRICS_SLOT_CONSUMER + shards; k++)
        snprintf(eps[n++], 64, "tcp://127.0.0.1:%d", s->metrics + k);
    return n;
}

static bool file_says(const char *path, const char *text)
{
    char *t = tu_read_file(path, NULL);
    bool found = t && strstr(t, text);
    free(t);
    return found;
}

/* Ends a failed try: stops `tally up` if it runs, says what happened in
 * s->why with the end of the try's log, removes the try's directory. */
static void stack_fail(tu_stack *s, const char *what)
{
    if (s->pid > 0)
        s->status = tu_kill_wait(s->pid, SIGTERM);
    s->pid = 0;
    size_t len = 0;
    char *log = tu_read_file(s->log, &len);
    int n = snprintf(s->why, sizeof s->why, "try %d of %d: %s; the end of its log:\n", s->tries,
                     TU_STACK_TRIES, what);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof s->why ? (size_t)n : sizeof s->why - 1;
    size_t room = sizeof s->why - used - 1;
    const char *tail = log ? log + (len > room ? len - room : 0) : "(none)";
    snprintf(s->why + used, sizeof s->why - used, "%s", tail);
    free(log);
    tu_rmtree(s->dir);
    s->dir = NULL;
}

/* How one try of tu_stack_up ended. */
typedef enum stack_end { STACK_UP, STACK_AGAIN, STACK_FAILED } stack_end;

/* Starts `tally up` once and waits for the wait list: STACK_AGAIN when the
 * try lost a port to another process. */
static stack_end stack_try(tu_stack *s, const tu_stack_opts *o, int shards)
{
    stack_pick(s, o, shards);
    if (o->on_try)
        o->on_try(s, s->tries, o->arg);
    stack_cmd c;
    stack_cmd_make(&c, s, o, shards);
    s->pid = tu_spawn(c.argv, s->log);
    char eps[TU_STACK_WAITS][64], what[200];
    int n = stack_waits(s, o->wait ? o->wait : TU_WAIT_ALL, shards, eps);
    tu_listen r = TU_LISTEN_OURS;
    int i = 0;
    while (i < n &&
           (r = tu_wait_listener(eps[i], s->pid, TU_STACK_WAIT_MS, &s->status)) == TU_LISTEN_OURS)
        i++;
    int st;
    if (r == TU_LISTEN_OURS && waitpid(s->pid, &st, WNOHANG) == s->pid) {
        s->status = status_code(st);
        r = TU_LISTEN_EXITED; /* every port listened, then it went */
    }
    if (r == TU_LISTEN_OURS)
        return STACK_UP;
    const char *ep = i < n ? eps[i] : NULL;
    if (r == TU_LISTEN_EXITED) {
        s->pid = 0;
        snprintf(what, sizeof what, "tally up exited (status %d) %s%s%s", s->status,
                 ep ? "before " : "once every endpoint listened", ep ? ep : "",
                 ep ? " listened" : "");
    } else if (r == TU_LISTEN_FOREIGN) {
        snprintf(what, sizeof what, "another process listens on %s", ep);
    } else {
        snprintf(what, sizeof what, "nothing listens on %s after %d ms", ep, TU_STACK_WAIT_MS);
    }
    bool lost = r == TU_LISTEN_FOREIGN || (r == TU_LISTEN_EXITED && file_says(s->log, "in use"));
    stack_fail(s, what);
    return lost ? STACK_AGAIN : STACK_FAILED;
}

bool tu_stack_up(tu_stack *s, const tu_stack_opts *o)
{
    static const tu_stack_opts defaults = {0};
    o = o ? o : &defaults;
    int shards = o->shards > 0 ? o->shards : 1;
    if (shards > TU_STACK_SHARDS_MAX) {
        fprintf(stderr, "tu_stack_up: more than %d shards\n", TU_STACK_SHARDS_MAX);
        abort();
    }
    memset(s, 0, sizeof *s);
    s->status = -1;
    for (s->tries = 1;; s->tries++) {
        stack_end end = stack_try(s, o, shards);
        if (end == STACK_UP)
            return true;
        if (end == STACK_FAILED || s->tries == TU_STACK_TRIES)
            return false;
        size_t len = strlen(s->why);
        fprintf(stderr, "tu_stack_up: %s%s", s->why, len && s->why[len - 1] == '\n' ? "" : "\n");
        fprintf(stderr, "tu_stack_up: starting again on fresh ports\n");
    }
}

int tu_stack_stop(tu_stack *s, int sig)
{
    if (s->pid > 0)
        s->status = tu_kill_wait(s->pid, sig);
    s->pid = 0;
    return s->status;
}

int tu_stack_down(tu_stack *s)
{
    int rc = s->dir ? tu_stack_stop(s, SIGTERM) : -1;
    tu_rmtree(s->dir);
    s->dir = NULL;
    return rc;
}

unsigned tu_test_seed(const char *what)
{
    const char *env = getenv("TALLY_TEST_SEED");
    unsigned seed =
        env && *env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "%s: seed %u (TALLY_TEST_SEED=%u to repeat)\n", what, seed, seed);
    return seed;
}

TCase *tu_tcase(Suite *s, const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

void tu_add_tests(TCase *tc, const TTest *const *tests)
{
    for (; *tests; tests++)
        tcase_add_test(tc, *tests);
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    ports_sweep();
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed < 255 ? failed : 255;
}

/* got with only the keys want has, at every depth (new reference): the
 * seed101 answers show the section 8 fields only, and an engine that
 * implements section 10 adds fields (tests/vectors/README.md). */
json_t *tu_json_project(json_t *got, json_t *want)
{
    if (json_is_object(got) && json_is_object(want)) {
        json_t *out = json_object();
        const char *k;
        json_t *w;
        json_object_foreach(want, k, w)
        {
            json_t *g = json_object_get(got, k);
            if (g != NULL)
                json_object_set_new(out, k, tu_json_project(g, w));
        }
        return out;
    }
    if (json_is_array(got) && json_is_array(want) &&
        json_array_size(got) == json_array_size(want)) {
        json_t *out = json_array();
        for (size_t i = 0; i < json_array_size(got); i++)
            json_array_append_new(out,
                                  tu_json_project(json_array_get(got, i), json_array_get(want, i)));
        return out;
    }
    return json_incref(got);
}

int tu_run_tally(const char *out, const char *err, ...)
{
    char *argv[TU_TALLY_ARGS_MAX];
    int n = 0;
    argv[n++] = (char *)tu_tally();
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < TU_TALLY_ARGS_MAX - 1 && (a = va_arg(ap, const char *));)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return tu_run(argv, NULL, out, err);
}
