/*
 * tly_import.h — one input line of `tally send` to one event, without I/O.
 *
 * The per-line conversions of the JSON-lines and POS CSV importers, pure
 * functions of their text (no sockets, no files), so that the fuzz targets
 * fuzz/fuzz_jsonl.c and fuzz/fuzz_csv.c reach exactly what `tally send`
 * runs. The event returned is JSON; tly_json_event_to_mp turns it into the
 * MessagePack the ledger validates.
 */
#ifndef TLY_IMPORT_H
#define TLY_IMPORT_H

#include <jansson.h>

#include "tly_event.h"

/* CSV columns of a POS file [D18], and its header line. */
#define TLY_CSV_COLUMNS 7u
#define TLY_CSV_HEADER "id,partner,sku,qty,amount,currency,at"

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

/*
 * Converts one CSV data row (fields in TLY_CSV_HEADER order, RFC 4180
 * quoting) into a sale event. amount is a decimal with at most the
 * currency's minor-unit digits [D18]; at is an ISO date or time; text
 * columns must be UTF-8. Returns a new JSON object, or NULL with fe filled:
 * fe->field names the bad column, or is empty when the row does not have
 * TLY_CSV_COLUMNS columns.
 */
json_t *tly_import_csv_row(const char *line, tly_field_error *fe);

#endif
