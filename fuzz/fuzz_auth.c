/*
 * fuzz_auth.c — libFuzzer target: the two files the ledger and the query
 * service read at start with CURVE on, the authorized-keys file
 * (tly_auth_load) and the CURVE secret key file (tly_auth_read_secret),
 * each given the input as its bytes. The bytes go into a memfd read back by
 * its /proc/self/fd path, so nothing is left on disk; nothing starts a
 * thread or a socket (tly_auth_start is not called).
 *
 * Properties beyond "no crash, no sanitizer report, no leak":
 * - the loader agrees with a model of the format tly_auth.h and README
 *   "Security" describe (model_line below): it loads the file exactly when
 *   the model finds no bad line, and otherwise refuses it with
 *   TLY_BAD_FIELD and "PATH: line N: ..." naming the model's first bad
 *   line (a line holding a NUL byte is bad: the file is text);
 * - loaded, every source the file lists has the roles and the partner of
 *   its lines (tly_auth_roles, tly_auth_partner), a source it does not list
 *   has none, and a partner:ID names a partner an event can name (1 to
 *   TLY_NAME_BYTES_MAX bytes of UTF-8);
 * - a refusal's message is one printable line (UTF-8 without control
 *   bytes): the ledger prints it to the operator's terminal;
 * - a secret key read is the file's first token (what fscanf's %s takes),
 *   40 Z85 characters, and it is read exactly when that token is a Z85
 *   key; the public key is the one zmq_curve_public derives from it.
 */
#define _GNU_SOURCE /* memfd_create */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include "tly_auth.h"

/* What the model makes of one line; roles 0 for a blank or comment line. */
typedef struct model_key {
    char source[TLY_SOURCE_BYTES_MAX + 1];
    unsigned roles;
    char partner[TLY_NAME_BYTES_MAX + 1];
} model_key;

/* The model's reading of a whole file: its key lines, and its first bad
 * line (0: none). Static: TLY_AUTH_KEYS_MAX entries are too many for the
 * stack of a fuzzing thread. */
static struct {
    model_key keys[TLY_AUTH_KEYS_MAX];
    size_t count;
    size_t bad_line;
} model;

static int file_fd = -1;
static char file_path[64];

/* Messages: non-empty, NUL-terminated within cap, UTF-8 without control
 * bytes. */
static void check_message(const char *msg, size_t cap)
{
    size_t len = strnlen(msg, cap);
    if (len == 0 || len == cap || !tly_utf8_valid(msg, len))
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
            abort();
}

/* Splits text at the bytes of seps (runs of them count as one), writing at
 * most max tokens; returns how many there were. */
static size_t split(char *text, const char *seps, char **tokens, size_t max)
{
    size_t n = 0;
    for (char *p = text + strspn(text, seps); *p; p += strspn(p, seps)) {
        size_t len = strcspn(p, seps);
        if (n < max)
            tokens[n] = p;
        n++;
        p += len;
        if (*p)
            *p++ = '\0';
    }
    return n;
}

/* The roles "a,b,...": each a name of the table or one partner:ID with ID
 * 1..TLY_NAME_BYTES_MAX bytes of UTF-8; at least one. */
static bool model_roles(char *text, model_key *k)
{
    static const char *const names[] = {"sales", "certs", "claims", "finance", "reader", "auditor"};
    static const unsigned bits[] = {TLY_ROLE_SALES,   TLY_ROLE_CERTS,  TLY_ROLE_CLAIMS,
                                    TLY_ROLE_FINANCE, TLY_ROLE_READER, TLY_ROLE_AUDITOR};
    char *roles[TLY_AUTH_LINE_BYTES_MAX / 2 + 1]; /* every other byte a comma */
    size_t n = split(text, ",", roles, sizeof roles / sizeof roles[0]);
    size_t prefix = strlen(TLY_ROLE_PARTNER_PREFIX);
    for (size_t i = 0; i < n; i++) {
        unsigned bit = 0;
        for (size_t t = 0; t < sizeof names / sizeof names[0]; t++)
            bit |= strcmp(roles[i], names[t]) == 0 ? bits[t] : 0;
        size_t len = strlen(roles[i]);
        if (!bit && (strncmp(roles[i], TLY_ROLE_PARTNER_PREFIX, prefix) != 0 || len == prefix ||
                     len - prefix > TLY_NAME_BYTES_MAX || k->partner[0] ||
                     !tly_utf8_valid(roles[i] + prefix, len - prefix)))
            return false;
        if (!bit) {
            memcpy(k->partner, roles[i] + prefix, len - prefix + 1);
            bit = TLY_ROLE_PARTNER;
        }
        k->roles |= bit;
    }
    return k->roles != 0;
}

/* One line of len bytes without its newline: false when it is bad, else
 * true with *k its key (roles 0: blank or comment). */
static bool model_line(const uint8_t *line, size_t len, model_key *k)
{
    char text[TLY_AUTH_LINE_BYTES_MAX + 1];
    char *tok[4];
    uint8_t key[32];
    memset(k, 0, sizeof *k);
    if (len > TLY_AUTH_LINE_BYTES_MAX || memchr(line, '\0', len))
        return false;
    memcpy(text, line, len);
    text[len] = '\0';
    size_t n = split(text, " \t\r", tok, 4);
    if (n == 0 || tok[0][0] == '#')
        return true;
    if (model.count == TLY_AUTH_KEYS_MAX || n != 3)
        return false;
    if (strlen(tok[0]) != TLY_Z85_KEY_CHARS || !zmq_z85_decode(key, tok[0]))
        return false;
    if (!tly_source_valid(tok[1], strlen(tok[1])) || !model_roles(tok[2], k))
        return false;
    strcpy(k->source, tok[1]);
    /* One source name, one role set (and partner). */
    for (size_t i = 0; i < model.count; i++)
        if (strcmp(model.keys[i].source, k->source) == 0 &&
            (model.keys[i].roles != k->roles || strcmp(model.keys[i].partner, k->partner) != 0))
            return false;
    return true;
}

/* Runs the model over the file: model.count keys, or model.bad_line. */
static void model_file(const uint8_t *data, size_t size)
{
    model.count = 0;
    model.bad_line = 0;
    size_t lineno = 0;
    for (size_t at = 0; at < size;) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
        model_key k;
        lineno++;
        if (!model_line(data + at, len, &k)) {
            model.bad_line = lineno;
            return;
        }
        if (k.roles)
            model.keys[model.count++] = k;
        at += len + 1;
    }
}

/* A loaded file against the model: every source with its roles and partner;
 * every partner a name an event can carry. */
static void check_loaded(const tly_auth *auth)
{
    for (size_t i = 0; i < model.count; i++) {
        const model_key *k = &model.keys[i];
        const char *partner = tly_auth_partner(auth, k->source);
        if (tly_auth_roles(auth, k->source) != k->roles)
            abort();
        if ((partner != NULL) != (k->partner[0] != '\0'))
            abort();
        if (partner && strcmp(partner, k->partner) != 0)
            abort();
        if (partner &&
            (strlen(partner) > TLY_NAME_BYTES_MAX || !tly_utf8_valid(partner, strlen(partner))))
            abort();
    }
    /* No source is empty or longer than TLY_SOURCE_BYTES_MAX. */
    char unknown[TLY_SOURCE_BYTES_MAX + 2];
    memset(unknown, 'x', sizeof unknown - 1);
    unknown[sizeof unknown - 1] = '\0';
    if (tly_auth_roles(auth, "") || tly_auth_roles(auth, unknown) || tly_auth_partner(auth, "") ||
        tly_auth_partner(auth, unknown))
        abort();
}

/* The authorized-keys file, against the model. */
static void fuzz_auth_file(const uint8_t *data, size_t size)
{
    tly_auth *auth = NULL;
    char msg[256] = "";
    tly_err err = tly_auth_load(file_path, &auth, msg, sizeof msg);
    model_file(data, size);
    if (err != TLY_OK) {
        size_t path_len = strlen(file_path), line = 0;
        check_message(msg, sizeof msg);
        if (err != TLY_BAD_FIELD || strncmp(msg, file_path, path_len) != 0 ||
            sscanf(msg + path_len, ": line %zu: ", &line) != 1 || line != model.bad_line)
            abort();
        return;
    }
    if (!auth || model.bad_line != 0)
        abort();
    check_loaded(auth);
    tly_auth_free(auth);
}

/* The secret key file: read exactly when its first token (fscanf's %s:
 * bytes up to white space) is a Z85 key, and then that token. */
static void fuzz_secret_file(const uint8_t *data, size_t size)
{
    char secret[TLY_Z85_KEY_CHARS + 1], pub[TLY_Z85_KEY_CHARS + 1], again[TLY_Z85_KEY_CHARS + 1];
    char msg[256] = "";
    tly_err err = tly_auth_read_secret(file_path, secret, pub, msg, sizeof msg);
    size_t at = 0, len = 0;
    while (at < size && isspace(data[at]))
        at++;
    while (at + len < size && !isspace(data[at + len]))
        len++;
    char token[TLY_Z85_KEY_CHARS + 1] = "";
    uint8_t key[32];
    bool is_key = len == TLY_Z85_KEY_CHARS && memchr(data + at, '\0', len) == NULL;
    if (is_key) {
        memcpy(token, data + at, len);
        is_key = zmq_z85_decode(key, token) != NULL;
    }
    if (err != TLY_OK) {
        check_message(msg, sizeof msg);
        if (err != TLY_BAD_FIELD || is_key)
            abort();
        return;
    }
    if (!is_key || strcmp(secret, token) != 0 || !tly_key_z85_valid(pub))
        abort();
    if (zmq_curve_public(again, secret) != 0 || strcmp(again, pub) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_fd < 0) {
        file_fd = memfd_create("fuzz_auth", 0);
        if (file_fd < 0)
            abort();
        snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    }
    if (ftruncate(file_fd, 0) != 0 || (size > 0 && pwrite(file_fd, data, size, 0) != (ssize_t)size))
        abort();
    fuzz_auth_file(data, size);
    fuzz_secret_file(data, size);
    return 0;
}
