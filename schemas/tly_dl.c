/*
 * tly_dl.c — shared libraries opened when first needed (tly_dl.h).
 */
#include "tly_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

/* The set's last function says whether it was loaded: it is set last. */
static bool loaded(const tly_dl_set *set)
{
    return set->count > 0 && set->table[set->count - 1] != NULL;
}

static tly_err load(const tly_dl_set *set, char *msg, size_t cap)
{
    if (loaded(set))
        return TLY_OK;
    void *handles[TLY_DL_LIBS_MAX];
    if (set->soname_count == 0 || set->soname_count > TLY_DL_LIBS_MAX) {
        snprintf(msg, cap, "%s: %zu libraries to open", set->what, set->soname_count);
        return TLY_UNAVAILABLE;
    }
    for (size_t i = 0; i < set->soname_count; i++) {
        handles[i] = dlopen(set->sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (handles[i] == NULL) {
            const char *why = dlerror();
            snprintf(msg, cap, "%s needs %s, which cannot be loaded: %s", set->what,
                     set->sonames[i], why ? why : "unknown error");
            return TLY_UNAVAILABLE;
        }
    }
    for (size_t f = 0; f < set->count; f++) {
        void *p = NULL;
        for (size_t i = 0; i < set->soname_count && p == NULL; i++)
            p = dlsym(handles[i], set->names[f]);
        if (p == NULL) {
            snprintf(msg, cap, "%s needs %s, which none of its libraries has", set->what,
                     set->names[f]);
            return TLY_UNAVAILABLE;
        }
        set->table[f] = p;
    }
    return TLY_OK;
}

tly_err tly_dl_load(const tly_dl_set *set, char *msg, size_t cap)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    tly_err err = load(set, msg, cap);
    pthread_mutex_unlock(&mu);
    return err;
}
