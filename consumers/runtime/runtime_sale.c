/*
 * runtime_sale.c — the sale source over a local log (tly_sale_source.h).
 */
#include "tly_sale_source.h"

#include <string.h>

tly_err tly_sale_source_find(tly_sale_source *s, tly_log *log, tly_str source, tly_str id,
                             bool *found, tly_engine_sale *out)
{
    *found = false;
    uint64_t seq = 0;
    tly_err err = tly_log_lookup(log, source, id, &seq);
    if (err != TLY_OK)
        return err == TLY_NOT_FOUND ? TLY_OK : err;
    tly_log_reader *rd;
    err = tly_log_reader_open(log, seq, &rd);
    if (err != TLY_OK)
        return err;
    tly_record rec;
    tly_field_error fe;
    err = tly_log_reader_next(rd, &rec);
    if (err == TLY_OK && rec.seq != seq)
        err = TLY_CORRUPT;
    if (err == TLY_OK &&
        tly_event_decode(rec.event, rec.event_len, rec.recorded_ms, &s->ev, &fe) != TLY_OK)
        err = TLY_CORRUPT; /* the ledger stored only events that decode */
    const tly_event *ev = &s->ev;
    if (err == TLY_OK && ev->type == TLY_EV_SALE && ev->partner.len <= sizeof s->partner) {
        memcpy(s->partner, ev->partner.ptr, ev->partner.len);
        *out = (tly_engine_sale){
            .seq = seq, .partner = {s->partner, ev->partner.len}, .at_ms = ev->at_ms};
        memcpy(out->currency, ev->currency.ptr, 3);
        *found = true;
    }
    /* Each look-up reads a random leaf of the log's ids index: a fold that
     * enrolls partners with held sales (or returns old sales) while the
     * sales are out of the engine's cache read hundreds of MB of the map,
     * which the decode-ahead's releases do not cover (10M events at
     * --batch 50000: the log's map reached 894 MB resident). */
    if (++s->lookups >= TLY_CONSUME_LOG_LOOKUPS_RELEASE) {
        tly_log_reader_release(rd);
        s->lookups = 0;
    }
    tly_log_reader_close(rd);
    return err;
}
