/* tly_keys.c — CURVE key files; see tly_keys.h. */
#include "tly_keys.h"

#include <stdio.h>
#include <string.h>

bool tly_key_z85_valid(const char *key)
{
    static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              ".-:+=^!/*?&<>()[]{}@%$#";
    if (strlen(key) != TLY_Z85_KEY_CHARS)
        return false;
    for (size_t i = 0; i < TLY_Z85_KEY_CHARS; i++)
        if (!strchr(z85, key[i]))
            return false;
    return true;
}

tly_err tly_key_read_secret(const char *path, char *secret, char *msg, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, cap, "cannot read CURVE secret key %s", path);
        return TLY_IO;
    }
    char tok[TLY_Z85_KEY_CHARS + 2] = "";
    int start = 0, end = 0; /* where the token starts and ends in the file */
    int n = fscanf(f, " %n%41s%n", &start, tok, &end);
    fclose(f);
    /* %s stops at white space only: a NUL inside the token ("KEY\0...")
     * leaves it shorter than what was read, and the file is no key file. */
    if (n != 1 || (size_t)(end - start) != strlen(tok) || !tly_key_z85_valid(tok)) {
        snprintf(msg, cap, "%s: expected a 40-character Z85 secret key", path);
        return TLY_BAD_FIELD;
    }
    memcpy(secret, tok, TLY_Z85_KEY_CHARS + 1);
    return TLY_OK;
}
