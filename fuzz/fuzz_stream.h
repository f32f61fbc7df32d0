/*
 * fuzz_stream.h — the fixed stream of events the store-based targets build
 * their state from (fuzz_state and fuzz_engine_load fold it into a view
 * store, fuzz_store.h; fuzz_web appends it to a log and replays that into
 * the view store its query service answers from): two programs, a
 * quarterly one and a monthly growth one; enrolled partners with sales, a
 * return, certifications, claims in every state, closes, a payout,
 * adjustments, a referral; an unenrolled partner with held events; an
 * enrolled one with nothing. And decode_event, which turns one of them into
 * its MessagePack bytes and decoded event.
 */
#ifndef FUZZ_STREAM_H
#define FUZZ_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <msgpack.h>

#include "tly_event.h"
#include "tly_json.h"

/* recorded_ms of every record: 2100-01-01, after every `at` below. */
#define REC_MS INT64_C(4102444800000)

/* The events folded into the store, JSON as `tally send` reads it, each
 * after its source. Times: 2025-01-01 is 1735689600000, a day 86400000. */
static const char *const stream[][2] = {
    {"finance", "{\"type\":\"program\",\"id\":\"F1\",\"at\":1735689600000,\"program\":\"apex\","
                "\"version\":1,\"currency\":\"USD\",\"period\":\"quarter\",\"tiers\":["
                "{\"name\":\"Authorized\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":100,"
                "\"benefits\":[],\"rebate_bonus_bps\":0,\"referral_bps\":300},"
                "{\"name\":\"Silver\",\"min_revenue\":2100000,\"min_certs\":1,\"mdf_bps\":150,"
                "\"benefits\":[\"NFR licenses\"],\"rebate_bonus_bps\":10,\"referral_bps\":400},"
                "{\"name\":\"Gold\",\"min_revenue\":6300000,\"min_certs\":3,\"mdf_bps\":200,"
                "\"benefits\":[\"NFR licenses\",\"beta access\"],\"rebate_bonus_bps\":25,"
                "\"referral_bps\":500}],"
                "\"rebate\":{\"mode\":\"retroactive\",\"brackets\":[{\"from\":0,\"bps\":100},"
                "{\"from\":2600000,\"bps\":200}],\"min\":10000,\"cap\":310000},"
                "\"mdf_expiry_periods\":2,\"tier_window_periods\":2,\"mdf_cap_per_period\":390000,"
                "\"tier_moves\":\"one_step\",\"tier_grace_periods\":1}"},
    {"finance", "{\"type\":\"program\",\"id\":\"F2\",\"at\":1735689660000,\"program\":\"nimbus\","
                "\"version\":1,\"currency\":\"EUR\",\"period\":\"month\",\"tiers\":["
                "{\"name\":\"Registered\",\"min_revenue\":0,\"min_certs\":0,\"mdf_bps\":80,"
                "\"benefits\":[],\"rebate_bonus_bps\":0,\"referral_bps\":300},"
                "{\"name\":\"Gold\",\"min_revenue\":500000,\"min_certs\":2,\"mdf_bps\":150,"
                "\"benefits\":[\"partner account manager\"],\"rebate_bonus_bps\":25,"
                "\"referral_bps\":500}],"
                "\"rebate\":{\"mode\":\"incremental\",\"brackets\":[{\"from\":0,\"bps\":50},"
                "{\"from\":870000,\"bps\":150}],\"basis\":\"growth\",\"baseline_periods\":3,"
                "\"min\":100000,\"cap\":2500000},"
                "\"mdf_expiry_periods\":3,\"tier_window_periods\":3,\"mdf_cap_per_period\":43000,"
                "\"tier_moves\":\"any\",\"tier_grace_periods\":2}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F3\",\"at\":1735776000000,\"partner\":\"p1\","
                "\"name\":\"Acme VAR\",\"program\":\"apex\",\"kind\":\"var\",\"region\":\"EMEA\"}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F4\",\"at\":1735776000000,\"partner\":\"p2\","
                "\"name\":\"Margie\",\"program\":\"nimbus\",\"kind\":\"consultant\"}"},
    {"finance", "{\"type\":\"partner\",\"id\":\"F5\",\"at\":1735776000000,\"partner\":\"p4\","
                "\"name\":\"Quiet OEM\",\"program\":\"apex\",\"kind\":\"oem\"}"},
    /* p3 never enrolls: these two are held in its record */
    {"pos", "{\"type\":\"sale\",\"id\":\"S0\",\"at\":1735862400000,\"partner\":\"p3\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":120000,\"currency\":\"USD\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C0\",\"at\":1735862400000,"
              "\"partner\":\"p3\",\"person\":\"eve\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C1\",\"at\":1735862400000,"
              "\"partner\":\"p1\",\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"earned\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C2\",\"at\":1735862400000,"
              "\"partner\":\"p1\",\"person\":\"bob\",\"cert\":\"net-pro\",\"action\":\"earned\","
              "\"expires\":1798761600000}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S1\",\"at\":1735862400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":2,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S2\",\"at\":1735948800000,\"partner\":\"p1\","
            "\"sku\":\"Y\",\"qty\":1,\"amount\":400000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"return\",\"id\":\"R1\",\"at\":1736035200000,\"partner\":\"p1\","
            "\"sale\":\"S1\",\"qty\":1,\"amount\":100000,\"currency\":\"USD\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K1\",\"at\":1736121600000,\"partner\":\"p1\","
               "\"claim\":\"c1\",\"action\":\"submit\",\"amount\":20000,\"activity\":\"webinar\"}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K2\",\"at\":1736208000000,\"partner\":\"p1\","
                "\"claim\":\"c1\",\"action\":\"approve\",\"amount\":15000}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K3\",\"at\":1736294400000,\"partner\":\"p1\","
                "\"claim\":\"c1\",\"action\":\"pay\",\"amount\":15000}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K4\",\"at\":1736294400000,\"partner\":\"p1\","
               "\"claim\":\"c2\",\"action\":\"submit\",\"amount\":5000}"},
    {"finance", "{\"type\":\"claim\",\"id\":\"K5\",\"at\":1736380800000,\"partner\":\"p1\","
                "\"claim\":\"c2\",\"action\":\"reject\",\"reason\":\"no receipts\"}"},
    {"portal", "{\"type\":\"claim\",\"id\":\"K6\",\"at\":1736380800000,\"partner\":\"p1\","
               "\"claim\":\"c3\",\"action\":\"submit\",\"amount\":1000}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S3\",\"at\":1736467200000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":900000,\"currency\":\"EUR\"}"},
    {"crm", "{\"type\":\"referral\",\"id\":\"D1\",\"at\":1736467200000,\"partner\":\"p2\","
            "\"deal\":\"DEAL-1\",\"amount\":50000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L1\",\"at\":1738454400000,\"program\":\"nimbus\","
                "\"period\":\"2025-01\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S4\",\"at\":1739145600000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":700000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L2\",\"at\":1740873600000,\"program\":\"nimbus\","
                "\"period\":\"2025-02\"}"},
    /* an open month of the incremental growth program: two slices */
    {"pos", "{\"type\":\"sale\",\"id\":\"S6\",\"at\":1741564800000,\"partner\":\"p2\","
            "\"sku\":\"Z\",\"qty\":1,\"amount\":1900000,\"currency\":\"EUR\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L3\",\"at\":1743552000000,\"program\":\"apex\","
                "\"period\":\"2025-Q1\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S5\",\"at\":1743638400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":250000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"payout\",\"id\":\"Y1\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"period\":\"2025-Q1\",\"amount\":1000}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A1\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"account\":\"mdf\",\"amount\":-2500,\"reason\":\"duplicate invoice\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A2\",\"at\":1743638400000,\"partner\":\"p1\","
                "\"account\":\"rebate\",\"amount\":100,\"reason\":\"goodwill\"}"},
    {"finance", "{\"type\":\"adjust\",\"id\":\"A3\",\"at\":1743638400000,\"partner\":\"p2\","
                "\"account\":\"mdf\",\"amount\":300,\"reason\":\"event\"}"},
    {"certs", "{\"type\":\"certification\",\"id\":\"C3\",\"at\":1743724800000,"
              "\"partner\":\"p1\",\"person\":\"ann\",\"cert\":\"sales\",\"action\":\"revoked\"}"},
    /* six more quarters of apex: p1's first four and p4's first four final
     * rows go to the archive, a chunk each ("S/7/") */
    {"pos", "{\"type\":\"sale\",\"id\":\"S7\",\"at\":1747267200000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L4\",\"at\":1751414400000,\"program\":\"apex\","
                "\"period\":\"2025-Q2\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S8\",\"at\":1755216000000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S9\",\"at\":1755302400000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":500000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L5\",\"at\":1759363200000,\"program\":\"apex\","
                "\"period\":\"2025-Q3\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S10\",\"at\":1763164800000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S11\",\"at\":1763251200000,\"partner\":\"p1\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":500000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L6\",\"at\":1767312000000,\"program\":\"apex\","
                "\"period\":\"2025-Q4\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S12\",\"at\":1771113600000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L7\",\"at\":1775088000000,\"program\":\"apex\","
                "\"period\":\"2026-Q1\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S13\",\"at\":1778803200000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L8\",\"at\":1782950400000,\"program\":\"apex\","
                "\"period\":\"2026-Q2\"}"},
    {"pos", "{\"type\":\"sale\",\"id\":\"S14\",\"at\":1786752000000,\"partner\":\"p4\","
            "\"sku\":\"X\",\"qty\":1,\"amount\":3000000,\"currency\":\"USD\"}"},
    {"finance", "{\"type\":\"close\",\"id\":\"L9\",\"at\":1790899200000,\"program\":\"apex\","
                "\"period\":\"2026-Q3\"}"},
};

/* Decodes one event of the JSON text into ev, which borrows from sb (the
 * caller destroys it); aborts when it does not decode (the text is fixed):
 * who names the target in the message. */
static void decode_event(const char *who, const char *text, msgpack_sbuffer *sb, tly_event *ev)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    msgpack_sbuffer_init(sb);
    tly_field_error fe = {{0}, {0}};
    if (j == NULL || tly_json_event_to_mp(j, sb, &fe) != TLY_OK ||
        tly_event_decode(sb->data, sb->size, REC_MS, ev, &fe) != TLY_OK) {
        fprintf(stderr, "%s: %s: %s %s %s\n", who, text, j ? "" : je.text, fe.field, fe.message);
        abort();
    }
    json_decref(j);
}

#endif
