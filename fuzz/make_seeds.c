/*
 * make_seeds.c — writes the seed corpus of fuzz/ from the conformance
 * vectors: the first event of each type of the first file (corpus/fuzz_event/
 * TYPE), and from each later file the first event of each type with the
 * most keys (TYPE-2, TYPE-3, ...: the v2 vectors' program, certification
 * with expires, rate and referral), and two ingest requests of the first
 * file (corpus/fuzz_ingest/). Run once by hand; the output is committed.
 *   make_seeds tests/vectors/seed101-events.jsonl \
 *       tests/vectors/seed102-v2-events.jsonl fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tly_event.h"
#include "tly_json.h"
#include "tly_wire.h"

static void write_file(const char *dir, const char *name, const void *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Reads one vectors file into evs: the first event of each type (first
 * file), or the first of each type with the most keys (later files). */
static void read_vectors(const char *path, bool most_keys, msgpack_sbuffer *evs, size_t *keys)
{
    FILE *in = fopen(path, "r");
    if (!in) {
        perror(path);
        exit(1);
    }
    static char line[65536];
    while (fgets(line, sizeof line, in)) {
        json_t *rec = json_loads(line, 0, NULL);
        json_t *event = json_object_get(rec, "event");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        tly_event ev;
        /* recorded 2027-01-01: after every vector's `at` */
        if (rec && tly_json_event_to_mp(event, &sb, NULL) == TLY_OK &&
            tly_event_decode(sb.data, sb.size, INT64_C(1798761600000), &ev, NULL) == TLY_OK &&
            (keys[ev.type] == 0 || (most_keys && json_object_size(event) > keys[ev.type]))) {
            if (keys[ev.type])
                msgpack_sbuffer_destroy(&evs[ev.type]);
            keys[ev.type] = json_object_size(event);
            evs[ev.type] = sb;
        } else {
            msgpack_sbuffer_destroy(&sb);
        }
        json_decref(rec);
    }
    fclose(in);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: make_seeds EVENTS.jsonl [MORE.jsonl...] CORPUS_DIR\n");
        return 2;
    }
    char dir_ev[400], dir_in[400];
    snprintf(dir_ev, sizeof dir_ev, "%s/fuzz_event", argv[argc - 1]);
    snprintf(dir_in, sizeof dir_in, "%s/fuzz_ingest", argv[argc - 1]);
    msgpack_sbuffer evs[TLY_EV_COUNT];
    for (int f = argc - 2; f >= 1; f--) { /* the first file last: its events stay in evs */
        size_t keys[TLY_EV_COUNT] = {0};
        read_vectors(argv[f], f > 1, evs, keys);
        for (int t = 0; t < TLY_EV_COUNT; t++) {
            const char *type = tly_ev_type_name((tly_ev_type)t);
            char name[64];
            if (f > 1)
                snprintf(name, sizeof name, "%s-%d", type, f);
            else
                snprintf(name, sizeof name, "%s", type);
            if (keys[t])
                write_file(dir_ev, name, evs[t].data, evs[t].size);
            if (keys[t] && f > 1)
                msgpack_sbuffer_destroy(&evs[t]);
        }
    }
    tly_span spans[3] = {{(const uint8_t *)evs[TLY_EV_SALE].data, evs[TLY_EV_SALE].size},
                         {(const uint8_t *)evs[TLY_EV_RETURN].data, evs[TLY_EV_RETURN].size},
                         {(const uint8_t *)evs[TLY_EV_CLAIM].data, evs[TLY_EV_CLAIM].size}};
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    tly_wire_ingest_encode(&req, 1, NULL, false, spans, 3);
    write_file(dir_in, "three-events", req.data, req.size);
    msgpack_sbuffer_clear(&req);
    spans[0] = (tly_span){(const uint8_t *)evs[TLY_EV_PROGRAM].data, evs[TLY_EV_PROGRAM].size};
    tly_wire_ingest_encode(&req, 2, "finance", true, spans, 1);
    write_file(dir_in, "atomic-program", req.data, req.size);
    msgpack_sbuffer_destroy(&req);
    return 0;
}
