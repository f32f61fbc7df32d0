/* tly_auth.c — authorized keys, ZAP handler and roles; see tly_auth.h. */
#include "tly_auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tly_os.h"

typedef struct auth_key {
    uint8_t key[32];
    char source[TLY_SOURCE_BYTES_MAX + 1];
    unsigned roles;
    char partner[TLY_NAME_BYTES_MAX + 1]; /* with TLY_ROLE_PARTNER */
} auth_key;

struct tly_auth {
    auth_key keys[TLY_AUTH_KEYS_MAX];
    size_t count;
    void *sock; /* the handler's, bound by tly_auth_start, then the thread's */
    pthread_t thread;
    bool running;
};

/* "partner:ID": the partner-portal role, answering one partner's figures.
 * ID is a partner an event can name (1..TLY_NAME_BYTES_MAX bytes of UTF-8):
 * another (a file saved in Latin-1) would let the key answer for none. */
static bool parse_partner_role(const char *r, auth_key *k)
{
    size_t n = strlen(TLY_ROLE_PARTNER_PREFIX), len = strlen(r);
    if (strncmp(r, TLY_ROLE_PARTNER_PREFIX, n) != 0 || len == n || len - n > TLY_NAME_BYTES_MAX ||
        !tly_utf8_valid(r + n, len - n) || k->partner[0] != '\0')
        return false;
    memcpy(k->partner, r + n, len - n + 1);
    k->roles |= TLY_ROLE_PARTNER;
    return true;
}

static bool parse_roles(char *text, auth_key *k)
{
    static const struct {
        const char *name;
        unsigned bit;
    } table[] = {{"sales", TLY_ROLE_SALES},   {"certs", TLY_ROLE_CERTS},
                 {"claims", TLY_ROLE_CLAIMS}, {"finance", TLY_ROLE_FINANCE},
                 {"reader", TLY_ROLE_READER}, {"auditor", TLY_ROLE_AUDITOR}};
    unsigned *roles = &k->roles;
    *roles = 0;
    k->partner[0] = '\0';
    char *save = NULL;
    for (char *r = strtok_r(text, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (strcmp(r, table[i].name) == 0)
                bit = table[i].bit;
        if (!bit && !parse_partner_role(r, k))
            return false;
        *roles |= bit;
    }
    return *roles != 0;
}

static tly_err parse_line(tly_auth *a, char *line, size_t lineno, char *msg, size_t cap)
{
    char *save = NULL;
    char *key = strtok_r(line, " \t\r\n", &save);
    if (!key || key[0] == '#')
        return TLY_OK;
    /* Before anything is decoded into the next slot: with the table full
     * there is none. */
    if (a->count >= TLY_AUTH_KEYS_MAX) {
        snprintf(msg, cap, "line %zu: more than %u keys", lineno, TLY_AUTH_KEYS_MAX);
        return TLY_BAD_FIELD;
    }
    char *source = strtok_r(NULL, " \t\r\n", &save);
    char *roles = strtok_r(NULL, " \t\r\n", &save);
    auth_key *k = &a->keys[a->count];
    if (!source || !roles || strtok_r(NULL, " \t\r\n", &save)) {
        snprintf(msg, cap, "line %zu: expected '<z85-key> <source> <roles>'", lineno);
        return TLY_BAD_FIELD;
    }
    if (strlen(key) != TLY_Z85_KEY_CHARS || !zmq_z85_decode(k->key, key)) {
        snprintf(msg, cap, "line %zu: public key is not 40 Z85 characters", lineno);
        return TLY_BAD_FIELD;
    }
    if (!tly_source_valid(source, strlen(source))) {
        snprintf(msg, cap,
                 "line %zu: source name must be 1..%u bytes of UTF-8 without control characters",
                 lineno, TLY_SOURCE_BYTES_MAX);
        return TLY_BAD_FIELD;
    }
    if (!parse_roles(roles, k)) {
        snprintf(msg, cap,
                 "line %zu: roles must be sales, certs, claims, finance, reader, auditor or "
                 "one partner:ID",
                 lineno);
        return TLY_BAD_FIELD;
    }
    for (size_t i = 0; i < a->count; i++) {
        /* Roles are looked up by the authenticated name, so one name (say,
         * two keys of one producer during a key rotation) has one role set. */
        if (strcmp(a->keys[i].source, source) == 0 &&
            (a->keys[i].roles != k->roles || strcmp(a->keys[i].partner, k->partner) != 0)) {
            snprintf(msg, cap, "line %zu: source '%s' is listed earlier with other roles", lineno,
                     source);
            return TLY_BAD_FIELD;
        }
    }
    strcpy(k->source, source);
    a->count++;
    return TLY_OK;
}

/* The longest key line fits: key, source, every role and a partner:ID. */
_Static_assert(TLY_Z85_KEY_CHARS + 1 + TLY_SOURCE_BYTES_MAX + 1 +
                       sizeof "sales,certs,claims,finance,reader,auditor," +
                       sizeof TLY_ROLE_PARTNER_PREFIX + TLY_NAME_BYTES_MAX <=
                   TLY_AUTH_LINE_BYTES_MAX,
               "an authorized-keys line holds any key line");

/* What read_line found. */
enum { LINE_LONG, LINE_READ, LINE_NUL };

/* Reads one line of f without its newline into line (TLY_AUTH_LINE_BYTES_MAX
 * + 1 bytes, NUL-terminated). Returns LINE_READ, EOF at the end of the file,
 * LINE_LONG for a line longer than TLY_AUTH_LINE_BYTES_MAX, or LINE_NUL for
 * one holding a NUL byte: as a string it would end there, and the roles
 * after it would be dropped unseen. */
static int read_line(FILE *f, char *line)
{
    size_t len = 0;
    int c = getc(f);
    if (c == EOF)
        return EOF;
    for (; c != EOF && c != '\n'; c = getc(f)) {
        if (len == TLY_AUTH_LINE_BYTES_MAX)
            return LINE_LONG;
        if (c == '\0')
            return LINE_NUL;
        line[len++] = (char)c;
    }
    line[len] = '\0';
    return LINE_READ;
}

tly_err tly_auth_load(const char *path, tly_auth **out, char *msg, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, cap, "cannot read authorized keys %s", path);
        return TLY_IO;
    }
    tly_auth *a = calloc(1, sizeof *a);
    if (!a) {
        fclose(f);
        return TLY_NOMEM;
    }
    char line[TLY_AUTH_LINE_BYTES_MAX + 1];
    char why[192] = "";
    size_t lineno = 0;
    tly_err err = TLY_OK;
    int got;
    while (err == TLY_OK && (got = read_line(f, line)) != EOF) {
        lineno++;
        err = TLY_BAD_FIELD;
        if (got == LINE_LONG)
            snprintf(why, sizeof why, "line %zu: longer than %u bytes", lineno,
                     TLY_AUTH_LINE_BYTES_MAX);
        else if (got == LINE_NUL)
            snprintf(why, sizeof why, "line %zu: a NUL byte (the file is text)", lineno);
        else
            err = parse_line(a, line, lineno, why, sizeof why);
    }
    fclose(f);
    if (err != TLY_OK) {
        snprintf(msg, cap, "%s: %s", path, why);
        free(a);
        return err;
    }
    *out = a;
    return TLY_OK;
}

static const auth_key *find_key(const tly_auth *a, const uint8_t *key)
{
    for (size_t i = 0; i < a->count; i++)
        if (memcmp(a->keys[i].key, key, 32) == 0)
            return &a->keys[i];
    return NULL;
}

/* Receives one ZAP request (RFC 27) into frames; returns the frame count or -1. */
static int zap_recv(void *sock, zmq_msg_t *frames, int max)
{
    int n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
            return -1;
        }
        more = zmq_msg_more(&m);
        if (n < max)
            frames[n++] = m;
        else
            zmq_msg_close(&m);
    }
    return n;
}

static void zap_reply(void *sock, zmq_msg_t *reqid, const char *code, const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(sock, code[0] == '2' ? "OK" : "unknown key", code[0] == '2' ? 2 : 11, ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
}

static void *zap_thread(void *arg)
{
    tly_auth *a = arg;
    void *sock = a->sock;
    for (;;) {
        zmq_msg_t f[8];
        int n = zap_recv(sock, f, 8);
        if (n < 0)
            break; /* context terminated */
        const auth_key *k = NULL;
        /* frames: version, request id, domain, address, identity, mechanism, key */
        if (n == 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
            zmq_msg_size(&f[6]) == 32)
            k = find_key(a, zmq_msg_data(&f[6]));
        /* A socket that serves the whole log (events) admits readers only:
         * PUB cannot refuse one message, so the connection is refused. */
        size_t dl = strlen(TLY_ZAP_DOMAIN_LOG);
        if (k && zmq_msg_size(&f[2]) == dl &&
            memcmp(zmq_msg_data(&f[2]), TLY_ZAP_DOMAIN_LOG, dl) == 0 &&
            !tly_auth_reads_log(k->roles))
            k = NULL;
        if (n >= 2)
            zap_reply(sock, &f[1], k ? "200" : "400", k ? k->source : "");
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    zmq_close(sock);
    return NULL;
}

/* The handler is bound here, before the thread starts. Bound by the thread
 * itself, it could come after the caller's CURVE sockets, and a client whose
 * handshake came before it got in without a key check: libzmq 4.3 lets every
 * key through while nothing is bound at inproc://zeromq.zap.01, so a stranger
 * could subscribe to the events socket and read the whole log. The socket
 * then belongs to the thread (pthread_create is the full barrier ZeroMQ asks
 * of a socket that changes threads). */
tly_err tly_auth_start(tly_auth *auth, void *ctx)
{
    void *sock = zmq_socket(ctx, ZMQ_REP);
    if (!sock)
        return TLY_NOMEM;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(sock, "inproc://zeromq.zap.01") != 0) {
        tly_logf(TLY_LOG_ERROR, NULL, "ZAP handler: bind failed: %s", zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return TLY_IO;
    }
    auth->sock = sock;
    if (pthread_create(&auth->thread, NULL, zap_thread, auth) != 0) {
        zmq_close(sock);
        return TLY_NOMEM;
    }
    auth->running = true;
    return TLY_OK;
}

void tly_auth_free(tly_auth *auth)
{
    if (!auth)
        return;
    if (auth->running)
        pthread_join(auth->thread, NULL);
    free(auth);
}

unsigned tly_auth_roles(const tly_auth *auth, const char *source)
{
    for (size_t i = 0; i < auth->count; i++)
        if (strcmp(auth->keys[i].source, source) == 0)
            return auth->keys[i].roles;
    return 0;
}

bool tly_auth_allows(unsigned roles, const tly_event *ev)
{
    if (roles & TLY_ROLE_FINANCE)
        return true;
    switch (ev->type) {
    case TLY_EV_SALE:
    case TLY_EV_RETURN:
    case TLY_EV_REFERRAL: /* SPEC section 10: sales */
        return (roles & TLY_ROLE_SALES) != 0;
    case TLY_EV_CERTIFICATION:
        return (roles & TLY_ROLE_CERTS) != 0;
    case TLY_EV_CLAIM:
        return (roles & TLY_ROLE_CLAIMS) != 0 &&
               (ev->action == TLY_ACT_SUBMIT || ev->action == TLY_ACT_CANCEL);
    default: /* program, partner, close, payout, adjust, rate: finance only */
        return false;
    }
}

tly_err tly_auth_read_secret(const char *path, char *secret, char *public_key, char *msg,
                             size_t cap)
{
    tly_err err = tly_key_read_secret(path, secret, msg, cap);
    if (err == TLY_OK && zmq_curve_public(public_key, secret) != 0) {
        snprintf(msg, cap, "%s: cannot derive the public key", path);
        return TLY_BAD_FIELD;
    }
    return err;
}

bool tly_auth_reads_log(unsigned roles)
{
    return (roles & (TLY_ROLE_READER | TLY_ROLE_AUDITOR | TLY_ROLE_FINANCE)) != 0;
}

const char *tly_auth_partner(const tly_auth *auth, const char *source)
{
    for (size_t i = 0; i < auth->count; i++)
        if (strcmp(auth->keys[i].source, source) == 0 && (auth->keys[i].roles & TLY_ROLE_PARTNER))
            return auth->keys[i].partner;
    return NULL;
}
