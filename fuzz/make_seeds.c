/*
 * make_seeds.c — writes the seed corpus of fuzz/ from the conformance
 * vectors: the first event of each type (corpus/fuzz_event/) and two ingest
 * requests (corpus/fuzz_ingest/). Run once by hand; the output is committed.
 *   make_seeds tests/vectors/seed101-events.jsonl fuzz/corpus
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds EVENTS.jsonl CORPUS_DIR\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    char dir_ev[400], dir_in[400], line[65536];
    snprintf(dir_ev, sizeof dir_ev, "%s/fuzz_event", argv[2]);
    snprintf(dir_in, sizeof dir_in, "%s/fuzz_ingest", argv[2]);
    msgpack_sbuffer evs[TLY_EV_COUNT];
    bool have[TLY_EV_COUNT] = {false};
    while (fgets(line, sizeof line, in)) {
        json_t *rec = json_loads(line, 0, NULL);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        tly_event ev;
        if (rec && tly_json_event_to_mp(json_object_get(rec, "event"), &sb, NULL) == TLY_OK &&
            tly_event_decode(sb.data, sb.size, INT64_C(1767225600000), &ev, NULL) == TLY_OK &&
            !have[ev.type]) {
            have[ev.type] = true;
            evs[ev.type] = sb;
            write_file(dir_ev, tly_ev_type_name(ev.type), sb.data, sb.size);
        } else {
            msgpack_sbuffer_destroy(&sb);
        }
        json_decref(rec);
    }
    fclose(in);
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
