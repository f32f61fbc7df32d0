/*
 * tly_import.h — one JSON line of `tally send` to one event, without I/O.
 *
 * The per-line conversion of the JSON-lines importer, a pure function of
 * its text (no sockets, no files), so that the fuzz target fuzz/fuzz_jsonl.c
 * reaches exactly what `tally send` runs (CSV files: tly_csv.h). The
 * event returned is JSON; tly_json_event_to_mp turns it into the
 * MessagePack the ledger validates.
 */
#ifndef TLY_IMPORT_H
#define TLY_IMPORT_H

#include <jansson.h>

#include "tly_event.h"

/*
 * Parses one JSON line: a bare event object, or a record {"source": S,
 * "event": E} as in the vectors and `tally audit export` (a record has an
 * object `event` and no `type`). Duplicate keys are refused, as they would
 * make the event's bytes ambiguous.
 *
 * Returns the event (a new reference) with *source set to the record's
 * source if it is a string (NULL for a bare event or a record without one;
 * not checked: see tly_source_valid), borrowed from *holder, which the
 * caller json_decref's after it is done with *source (*holder is NULL for a
 * bare event). On failure (not a JSON object: malformed) returns NULL with
 * *holder NULL and fe set, fe->field empty.
 */
json_t *tly_import_json_line(const char *line, json_t **holder, const char **source,
                             tly_field_error *fe);

#endif
