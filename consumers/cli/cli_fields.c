/*
 * cli_fields.c — reply fields as table cells, CURVE for the query client.
 * See cli_fields.h.
 */
#include "cli_fields.h"

#include "tly_cli.h"
#include "tly_query.h"

const char *cli_str_of(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

const char *cli_money_of(const json_t *o, const char *key, int exp, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return "-";
    tly_query_format_money((int64_t)json_integer_value(v), exp, buf, cap);
    return buf;
}

int cli_use_curve(const char *cmd, const char *server_key, const char *secret)
{
    char msg[256] = "";
    if (!server_key != !secret)
        return tly_usagef(cmd, "--curve-server-key and --curve-secret go together");
    if (!server_key)
        return TLY_EXIT_OK;
    tly_err err = tly_query_client_curve(server_key, secret, msg, sizeof msg);
    if (err == TLY_USAGE)
        return tly_usagef(cmd, "%s", msg);
    if (err != TLY_OK) {
        tly_errorf(cmd, "%s", msg);
        return TLY_EXIT_FAIL;
    }
    return TLY_EXIT_OK;
}
