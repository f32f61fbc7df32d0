/* tly_import.c — one JSON line of `tally send` input to one event; see tly_import.h. */
#include "tly_import.h"

#include <stdio.h>
#include <string.h>

static json_t *import_fail(tly_field_error *fe, const char *field, const char *message)
{
    snprintf(fe->field, sizeof fe->field, "%s", field);
    snprintf(fe->message, sizeof fe->message, "%s", message);
    return NULL;
}

json_t *tly_import_json_line(const char *line, json_t **holder, const char **source,
                             tly_field_error *fe)
{
    *holder = NULL;
    *source = NULL;
    json_error_t jerr;
    json_t *root = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return import_fail(fe, "", "line is not a JSON object");
    }
    json_t *ev = json_object_get(root, "event");
    if (!json_is_object(ev) || json_object_get(root, "type"))
        return root;
    *holder = root;
    *source = json_string_value(json_object_get(root, "source"));
    return json_incref(ev);
}
