/* tcpproxy.c — see tcpproxy.h. */
#include "tcpproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tly_os.h"

/* Connections proxied at once, over all routes: test_replicate's ledger
 * holds two (its API connection and its publishing one). A reconnecting
 * client's attempts while frozen are refused at once, so they do not add
 * up; a connection beyond this is refused too. */
#define TP_CONNS_MAX 16
/* Bytes one direction of a connection holds between the read and the
 * write that passes them on (libnats writes up to 32 KiB at once). While
 * they wait, that direction is not read. */
#define TP_BUF_BYTES (64 * 1024)
/* Connections a listener's kernel queue holds before they are accepted. */
#define TP_BACKLOG 16
/* Poll entries: the pipe, the listeners, and a connection's two sockets. */
#define TP_POLLS_MAX (1 + TP_ROUTES_MAX + 2 * TP_CONNS_MAX)

enum { TP_CLIENT, TP_SERVER }; /* a connection's two sides */

typedef enum tp_cmd { TP_CMD_NONE, TP_CMD_FREEZE, TP_CMD_CUT, TP_CMD_THAW, TP_CMD_STOP } tp_cmd;

/* One proxied connection. buf[side] holds what was read from fd[side] and
 * is not yet written to the other side, from off[side] to len[side]. */
typedef struct tp_conn {
    int fd[2]; /* -1 and -1: a free slot */
    uint8_t buf[2][TP_BUF_BYTES];
    size_t len[2], off[2];
} tp_conn;

struct tp_proxy {
    int routes;
    int listen_fd[TP_ROUTES_MAX];
    int port[TP_ROUTES_MAX];
    struct sockaddr_in target[TP_ROUTES_MAX];
    int wake[2]; /* a pipe: the thread polls [0], a control writes [1] */
    pthread_t thread;
    bool frozen; /* the thread's; written under mu */
    tp_conn conns[TP_CONNS_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tp_cmd cmd;       /* under mu: the control in hand, NONE once applied */
    uint32_t refused; /* under mu: connections refused since the last freeze */
};

/* ---- sockets (the thread's) ---- */

/* Non-blocking, not inherited by the test's child processes (a child
 * holding a copy would keep a cut connection open), no Nagle delay. */
static void fd_setup(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Closes fd with an RST rather than a FIN: what its kernel still holds,
 * either way, is dropped. */
static void abort_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void conn_abort(tp_conn *c)
{
    for (int side = 0; side < 2; side++) {
        if (c->fd[side] >= 0)
            abort_fd(c->fd[side]);
        c->fd[side] = -1;
        c->len[side] = c->off[side] = 0;
    }
}

static void cut_all(tp_proxy *p)
{
    for (int i = 0; i < TP_CONNS_MAX; i++)
        conn_abort(&p->conns[i]);
}

/* Listens on 127.0.0.1 at a port the kernel picks; the socket, or -1. */
static int listen_any(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    fd_setup(fd);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, TP_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* A connection to route r: forwarded to its target, or refused (aborted)
 * while frozen or when every slot is taken. */
static void on_accept(tp_proxy *p, int r)
{
    int cfd = accept(p->listen_fd[r], NULL, NULL);
    if (cfd < 0)
        return; /* the client gave up already */
    fd_setup(cfd);
    tp_conn *c = NULL;
    for (int i = 0; i < TP_CONNS_MAX && !c; i++)
        if (p->conns[i].fd[TP_CLIENT] < 0)
            c = &p->conns[i];
    if (p->frozen || !c) {
        abort_fd(cfd);
        pthread_mutex_lock(&p->mu);
        if (p->frozen)
            p->refused++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    /* A blocking connect: on loopback it is answered at once. */
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&p->target[r], sizeof p->target[r]) != 0) {
        if (sfd >= 0)
            close(sfd);
        abort_fd(cfd);
        return;
    }
    fd_setup(sfd);
    c->fd[TP_CLIENT] = cfd;
    c->fd[TP_SERVER] = sfd;
}

/* Reads what fd[side] has into buf[side] (which is empty); false when the
 * connection is over. */
static bool pump_in(tp_conn *c, int side)
{
    ssize_t n = recv(c->fd[side], c->buf[side], TP_BUF_BYTES, 0);
    if (n > 0) {
        c->len[side] = (size_t)n;
        c->off[side] = 0;
    }
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

/* Writes what the other side's buffer holds to fd[side]; false when the
 * connection is over. */
static bool pump_out(tp_conn *c, int side)
{
    int from = !side;
    ssize_t n =
        send(c->fd[side], c->buf[from] + c->off[from], c->len[from] - c->off[from], MSG_NOSIGNAL);
    if (n > 0 && (c->off[from] += (size_t)n) == c->len[from])
        c->len[from] = c->off[from] = 0;
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

/* Moves a connection's data as poll found its two sockets (pf[0] the
 * client's, pf[1] the server's); aborts it when either side is over. */
static void serve(tp_conn *c, const struct pollfd *pf)
{
    for (int side = 0; side < 2; side++) {
        short ev = pf[side].revents;
        bool ok = !(ev & (POLLERR | POLLNVAL)) && !((ev & POLLHUP) && !(ev & POLLIN));
        if (ok && (ev & POLLIN))
            ok = pump_in(c, side);
        if (ok && (ev & POLLOUT))
            ok = pump_out(c, side);
        if (!ok) {
            conn_abort(c);
            return;
        }
    }
}

/* ---- the thread ---- */

/* Fills pf in a fixed layout: the pipe, TP_ROUTES_MAX listeners, then two
 * sockets per connection slot (-1, which poll skips, where there is none).
 * A side is read when its buffer is empty, the client's not while frozen;
 * it is written to when the other side's buffer holds something. */
static void build_polls(const tp_proxy *p, struct pollfd *pf)
{
    pf[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    for (int r = 0; r < TP_ROUTES_MAX; r++)
        pf[1 + r] = (struct pollfd){.fd = r < p->routes ? p->listen_fd[r] : -1, .events = POLLIN};
    for (int i = 0; i < TP_CONNS_MAX; i++) {
        const tp_conn *c = &p->conns[i];
        for (int side = 0; side < 2; side++) {
            short ev = 0;
            if (c->len[side] == 0 && !(p->frozen && side == TP_CLIENT))
                ev |= POLLIN;
            if (c->len[!side] > 0)
                ev |= POLLOUT;
            pf[1 + TP_ROUTES_MAX + 2 * i + side] = (struct pollfd){.fd = c->fd[side], .events = ev};
        }
    }
}

/* Applies the control in hand; false on TP_CMD_STOP. */
static bool take_command(tp_proxy *p)
{
    char drain[16];
    while (read(p->wake[0], drain, sizeof drain) > 0)
        continue;
    pthread_mutex_lock(&p->mu);
    tp_cmd cmd = p->cmd;
    if (cmd == TP_CMD_FREEZE) {
        p->frozen = true;
        p->refused = 0;
    } else if (cmd == TP_CMD_THAW) {
        p->frozen = false;
    } else if (cmd == TP_CMD_CUT || cmd == TP_CMD_STOP) {
        cut_all(p);
    }
    p->cmd = TP_CMD_NONE;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return cmd != TP_CMD_STOP;
}

/* Serves the connections first, with the events this poll found for them;
 * then accepts, then the control: a slot freed and taken again within one
 * round is not served with the events of its former sockets. */
static void *run(void *arg)
{
    tp_proxy *p = arg;
    struct pollfd pf[TP_POLLS_MAX];
    for (;;) {
        build_polls(p, pf);
        if (poll(pf, TP_POLLS_MAX, -1) < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* EFAULT, EINVAL, ENOMEM: nothing a test can go on from */
        }
        for (int i = 0; i < TP_CONNS_MAX; i++)
            if (p->conns[i].fd[TP_CLIENT] >= 0)
                serve(&p->conns[i], &pf[1 + TP_ROUTES_MAX + 2 * i]);
        for (int r = 0; r < p->routes; r++)
            if (pf[1 + r].revents & POLLIN)
                on_accept(p, r);
        if ((pf[0].revents & POLLIN) && !take_command(p))
            return NULL;
    }
}

/* ---- the controls ---- */

static void command(tp_proxy *p, tp_cmd cmd)
{
    pthread_mutex_lock(&p->mu);
    while (p->cmd != TP_CMD_NONE) /* another control in hand */
        pthread_cond_wait(&p->cv, &p->mu);
    p->cmd = cmd;
    /* One byte at most is ever in the pipe: a control waits for its own. */
    if (write(p->wake[1], "", 1) != 1)
        abort();
    while (p->cmd != TP_CMD_NONE)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tp_freeze(tp_proxy *p)
{
    command(p, TP_CMD_FREEZE);
}

void tp_cut(tp_proxy *p)
{
    command(p, TP_CMD_CUT);
}

void tp_thaw(tp_proxy *p)
{
    command(p, TP_CMD_THAW);
}

bool tp_wait_refused(tp_proxy *p, uint32_t n, int timeout_ms)
{
    struct timespec dl = tly_deadline_in(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->refused < n && rc == 0)
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
    bool got = p->refused >= n;
    pthread_mutex_unlock(&p->mu);
    return got;
}

int tp_port(const tp_proxy *p, int route)
{
    return route >= 0 && route < p->routes ? p->port[route] : -1;
}

/* ---- life ---- */

/* Closes what p holds (the thread is not running) and frees it. */
static void release(tp_proxy *p)
{
    cut_all(p);
    for (int r = 0; r < TP_ROUTES_MAX; r++)
        if (p->listen_fd[r] >= 0)
            close(p->listen_fd[r]);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* The fields that are not zero when p is new: no socket, the cv on the
 * monotonic clock (tp_wait_refused's deadline). */
static void init(tp_proxy *p, int n)
{
    p->routes = n;
    p->wake[0] = p->wake[1] = -1;
    for (int r = 0; r < TP_ROUTES_MAX; r++)
        p->listen_fd[r] = -1;
    for (int i = 0; i < TP_CONNS_MAX; i++)
        p->conns[i].fd[TP_CLIENT] = p->conns[i].fd[TP_SERVER] = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->mu, NULL);
}

tp_proxy *tp_start(const tp_target *targets, int n)
{
    if (n < 1 || n > TP_ROUTES_MAX) {
        errno = EINVAL;
        return NULL;
    }
    tp_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    init(p, n);
    bool ok = true;
    for (int r = 0; r < n && ok; r++) {
        p->target[r] = (struct sockaddr_in){.sin_family = AF_INET};
        p->target[r].sin_port = htons((uint16_t)targets[r].port);
        ok = targets[r].port > 0 && targets[r].port <= 65535 &&
             inet_pton(AF_INET, targets[r].host, &p->target[r].sin_addr) == 1;
        if (!ok)
            errno = EINVAL;
        else
            ok = (p->listen_fd[r] = listen_any(&p->port[r])) >= 0;
    }
    ok = ok && pipe(p->wake) == 0;
    for (int i = 0; ok && i < 2; i++)
        fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
    ok = ok && fcntl(p->wake[0], F_SETFL, O_NONBLOCK) == 0;
    ok = ok && (errno = pthread_create(&p->thread, NULL, run, p)) == 0;
    if (!ok) {
        release(p);
        return NULL;
    }
    return p;
}

void tp_stop(tp_proxy *p)
{
    if (!p)
        return;
    command(p, TP_CMD_STOP);
    pthread_join(p->thread, NULL);
    release(p);
}
