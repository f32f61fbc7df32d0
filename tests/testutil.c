/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
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

/* True when port can be bound on 127.0.0.1 right now. */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int tu_free_port(void)
{
    static unsigned state;
    if (state == 0)
        state = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int i = 0; i < TU_PORT_TRIES; i++) {
        state = state * 1103515245u + 12345u;
        int port = TU_PORT_LOW + (int)((state >> 8) % (TU_PORT_HIGH - TU_PORT_LOW));
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

bool tu_wait_listening(const char *endpoint, int timeout_ms)
{
    const char *colon = strrchr(endpoint, ':');
    if (!colon)
        return false;
    int port = atoi(colon + 1);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0)
            return true;
        tu_sleep_ms(20);
    }
    return false;
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
