/*
 * tly_limits.h — every limit of Tally, named with its unit last.
 *
 * Each constant says why it has its value. Tests hit each one at its edge
 * (value accepted, value + 1 rejected). Wire limits come from SPEC sections
 * 4 and 5 and may not change without a new schema version.
 */
#ifndef TLY_LIMITS_H
#define TLY_LIMITS_H

#include <stdint.h>

/* --- wire (SPEC section 4) --- */

/* Largest ingest, log-read or query frame. Bounds the memory one request can
 * pin in the ledger and keeps one request well inside one LMDB transaction. */
#define TLY_FRAME_BYTES_MAX (4u * 1024u * 1024u)

/* Events in one ingest request. Bounds the reply size and the work one
 * producer can put into one group commit. */
#define TLY_BATCH_EVENTS_MAX 4096u

/* Containers the MessagePack reader reads nested in one value (an event, a
 * request's envelope keys); anything deeper is malformed, and the bound keeps
 * the recursive skip safe on hostile input. One more than
 * TLY_EVENT_DEPTH_MAX, so that a value one level too deep in an event is
 * still read and refused as bad_field naming its key. */
#define TLY_MP_DEPTH_MAX (TLY_EVENT_DEPTH_MAX + 1u)

/* --- events (SPEC section 5) --- */

/* Levels an event's values nest, counting the event map as level 1 and each
 * value one level below its container, scalars included. Known fields reach
 * level 5 (rebate → brackets → bracket → from); unknown keys may use the
 * rest. Every reader handles exactly this depth: the validator refuses more
 * (bad_field), JSON import refuses more, and `tally audit export`'s JSON
 * (tly_json_from_mp) converts up to it. */
#define TLY_EVENT_DEPTH_MAX 8u

/* Event id: 1..64 bytes of [A-Za-z0-9._:-]. */
#define TLY_ID_BYTES_MAX 64u

/* Source (producer identity): UTF-8, 1..64 bytes [D12], no control
 * character (bytes below 0x20, 0x7f): the ledger, the idempotency index and
 * every log line hold it as C text, where a NUL would cut it short. */
#define TLY_SOURCE_BYTES_MAX 64u

/* Names: partner, program, sku, cert, person, claim, display name, region,
 * tier name: 1..128 bytes. */
#define TLY_NAME_BYTES_MAX 128u

/* Free text (claim activity, reject reason, adjust reason): 1..1024 bytes.
 * The SPEC does not bound these; 1 KiB is room for a sentence or two and
 * keeps one event far below the frame limit. */
#define TLY_TEXT_BYTES_MAX 1024u

/* Money: 1 ≤ amount ≤ 10^13 minor units (10^11 dollars): large enough for
 * any single sale, small enough that sums of millions of them cannot
 * overflow int64 and that amount × 10000 bps fits in int64. */
#define TLY_AMOUNT_MAX INT64_C(10000000000000)

/* Rates in basis points: 0..10000 (0 %..100 %). */
#define TLY_BPS_MAX 10000

/* Business time: not before 2000-01-01T00:00:00Z ... */
#define TLY_AT_MIN_MS INT64_C(946684800000)
/* ... and not more than one day after the recorded time. */
#define TLY_AT_FUTURE_MS INT64_C(86400000)

/* Quantity of a sale or return: 1..10^9 units; qty is informational [S4]. */
#define TLY_QTY_MAX INT64_C(1000000000)

/* Tiers in one program and brackets in one rebate schedule. Real programs
 * have 3..6 tiers and a handful of brackets; 16 is generous and keeps a
 * decoded event a fixed size. */
#define TLY_TIERS_MAX 16u
#define TLY_BRACKETS_MAX 16u

/* Section 10: a tier's benefits (at most 16, each 1..128 bytes), the
 * growth baseline (1..12 periods), tier grace (0..8 failing closes) and a
 * rate's digits (1..9 before the point, 0..9 after: 18 digits fit int64). */
#define TLY_BENEFITS_MAX 16u
#define TLY_BENEFIT_BYTES_MAX 128u
#define TLY_BASELINE_PERIODS_MAX INT64_C(12)
#define TLY_GRACE_PERIODS_MAX INT64_C(8)
#define TLY_RATE_INT_DIGITS_MAX 9
#define TLY_RATE_FRAC_DIGITS_MAX 9

/* certification.expires [T10]: after `at` and at most the last millisecond
 * of 9999 (9999-12-31T23:59:59.999Z), the last instant ISO-8601 text with a
 * four-digit year (JSON lines, tly_time_format) can name. */
#define TLY_EXPIRES_MAX_MS INT64_C(253402300799999)

/* Program version: 1..2^31-1. */
#define TLY_VERSION_MAX INT64_C(2147483647)

/* mdf_expiry_periods and tier_window_periods: 1..120 (ten years of months). */
#define TLY_PERIODS_SPAN_MAX INT64_C(120)

/* min_certs of a tier: 0..10000 certified (person, cert) pairs. */
#define TLY_CERTS_MAX INT64_C(10000)

/* Calendar years a period string may name (2000..9999). */
#define TLY_YEAR_MIN 2000
#define TLY_YEAR_MAX 9999

/* Highest period index a stored engine record may hold: the last month of
 * year TLY_YEAR_MAX, and past it (period indices count periods since year
 * 0, 12 a year for months, 4 for quarters). A consumer's store, read back
 * and rendered, refuses anything outside 0..this as corrupt, which keeps
 * every sum of a period and a span (expiry, tier window, baseline) far
 * from overflow. */
#define TLY_PERIOD_INDEX_MAX (12 * (TLY_YEAR_MAX + 1))

/* --- producers (client library, tally send) --- */

/* Seqs past the run's starting head that `tally send` tracks (one bit each)
 * to count as sent, exactly once, a duplicate its own unacknowledged
 * attempt appended: 2^30 bits is 128 MiB, reached only when a billion
 * records are appended while one send runs; a duplicate beyond it counts
 * as a duplicate. */
#define TLY_SEND_RUN_SEQS_MAX ((uint64_t)1u << 30)

/* Bytes a CSV row's fields take once split, each with its NUL, every
 * column counted (ignored ones too; an unquoted seven-column row of up to
 * 4095 bytes): a real row is a few hundred bytes, and a row is held in a
 * fixed buffer. A longer row is refused (malformed) and the import goes on
 * with the next line. The header is a row like any other. */
#define TLY_CSV_ROW_BYTES_MAX 4096u

/* Fields a CSV row (the header included) may have: an ERP export has a
 * few dozen columns; the row's field table is a fixed array. */
#define TLY_CSV_COLUMNS_MAX 256u

/* Bytes of a column name given to `tally send --columns FIELD=NAME`: a
 * spreadsheet heading is a few words. A header cell longer than this can
 * never be named, so it is an ignored column. */
#define TLY_CSV_COLUMN_NAME_BYTES_MAX 64u

/* Bytes a CSV row may take in the file, quotes, separators and line ends
 * included, before it is cut off as too long: three times the split bound
 * (a field of quotes doubles, and each field adds two quotes and a comma
 * where the split adds one NUL), so no row within TLY_CSV_ROW_BYTES_MAX is
 * ever cut. It bounds the parser's buffer and how far an unclosed quote
 * carries the parser before it resynchronises at the next line. */
#define TLY_CSV_ROW_FILE_BYTES_MAX (3u * TLY_CSV_ROW_BYTES_MAX + 2u)
_Static_assert(TLY_CSV_COLUMNS_MAX <= TLY_CSV_ROW_BYTES_MAX, "every field takes a byte");

/* --- consumers (engine cache, runtime, view store, bench fold) --- */

/* Shards one deployment splits its partners into. Each shard is a process
 * holding one read slot of the log environment (126 slots in all, shared
 * with the daemon, the query service and audits), so 64 leaves room for
 * the others. */
#define TLY_SHARDS_MAX 64u

/* Map size a new view environment starts with, and the largest it grows to
 * by doubling. The map is address space, not disk (the file grows with what
 * is written). A fold from scratch writes about 200 MB in its first commit
 * at 1M events; starting at 64 MiB, that commit met a full map and was
 * redone whole after the map grew. A shard of a million partners holds a
 * few GiB of views; 1 TiB is far beyond that, and a map full at that size
 * is TLY_STORAGE like a full disk. */
#define TLY_VIEWS_MAP_BYTES_INIT ((size_t)1u << 30)
#define TLY_VIEWS_MAP_BYTES_MAX ((size_t)1u << 40)

/* Map doublings one commit may do before it gives up: from the initial
 * size to the maximum is 10 doublings. */
#define TLY_VIEWS_GROW_RETRIES_MAX 16u

/* A read transaction retries after MDB_MAP_RESIZED (the consumer grew the
 * map under a reader): each growth doubles the map, so a handful suffice. */
#define TLY_VIEWS_RESIZE_RETRIES_MAX 8u

/* When a consumer drops the view store's map from its address space
 * (MADV_DONTNEED, tly_views.c), the pages staying in the page cache: every
 * TLY_VIEWS_RELEASE_PUTS puts of a commit (the write transaction reads each
 * page it changes through the map once, then works on its own copy, so
 * without a release each page counts twice in the RSS, in the map and in
 * LMDB's memory; 1,024 puts read at most 4 MiB of leaf pages), and every
 * TLY_VIEWS_RESIDENT_BYTES_MAX of what the engine's reads touch (a scan's
 * entries, a look-up's value and a page of TLY_VIEWS_PAGE_BYTES): a close
 * walks every member of its program in one record, between two of the
 * consumer's releases. With 16 MiB counted from the scan's values alone,
 * the 3M `bench fold` log (30,000 partners, 14 MB of partner records, 22
 * MB of pages) peaked at 412 MB with 55-70 MB of the map resident after a
 * walk; with 2 MiB counted this way at 351 MB, in the same time (10.6 and
 * 11.9 s against 10.9 and 12.1 s, alternated). 1,024 puts rather than
 * 4,096 (thirteenth session): the 10M log on two shards peaked at 252 MiB
 * per shard against 264 (512: 248), in no more time (45-48 s against
 * 50 s, and 3M on one shard 16.0-16.5 s against 17.6-24.7 s, alternated
 * on a busy machine); with 65,536, 360 MiB. */
#define TLY_VIEWS_RELEASE_PUTS 1024u
#define TLY_VIEWS_RESIDENT_BYTES_MAX ((size_t)2u << 20)
#define TLY_VIEWS_PAGE_BYTES 4096u

/* A commit of at least this many puts is followed by closing and opening
 * the view store's environment again: LMDB keeps its copies of the pages a
 * write transaction changed in a list of its own for the next one, and
 * frees them only with the environment, so after a catch-up's commit they
 * stayed taken while the engine filled up for the next batch (3M
 * `bench fold` log, one shard: 96 MB kept over the whole fold). Reopening
 * alone lowered that fold's peak from 294.6 to 280.6 MB; with the flush
 * dropping the partners and sales it wrote as it goes
 * (tly_engine_set_flush_drops), to 211 MB. A small commit (a consumer
 * at the head) keeps its few pages and its environment: opening one costs
 * a few file operations and a map. 4,096 puts change at most about 16 MiB
 * of pages. */
#define TLY_VIEWS_REOPEN_PUTS 4096u

/* A commit puts through one write cursor per region of the store, a
 * region being a key's first TLY_VIEWS_PUT_REGION_BYTES bytes (tly_views.c:
 * a cursor finds the next key of its region on the leaf page of the last
 * without a search from the root). A flush writes about six regions at a
 * time (state, archive, claims, documents, sales, exceptions); beyond
 * TLY_VIEWS_PUT_CURSORS a new region takes the slot of the oldest. */
#define TLY_VIEWS_PUT_CURSORS 8u
#define TLY_VIEWS_PUT_REGION_BYTES 4u

/* Longest view key: "V/P/" + a 128-byte partner name, with room to spare;
 * LMDB's own key limit is 511 bytes. */
#define TLY_VIEWS_KEY_BYTES_MAX 256u

/* The engine's cache over a shard's view store (tly_engine_set_store):
 * clean entries it keeps in memory after a flush, the least recently used
 * dropped first. Partners (owned ones with their money state and claims,
 * about 1-3 KiB each, and other shards' partners' enrollments): 4,096.
 * A consumer's flush drops the others as it writes them
 * (tly_engine_set_flush_drops), so the cache is what stays in memory
 * beside the commit's pages at the fold's peak: `bench fold`'s 3M log on
 * one shard peaked at 243 MB with 16,384 and 211 MB with 4,096, in the
 * same time (11.6-13.3 s against 11.4-12.9 s, alternated); a partner
 * beyond it costs a read of its record when an event names it, unless the
 * consumer read it back after the commit (TLY_CONSUME_READ_BACK_PARTNERS_MAX).
 * Sales (about 200 bytes each with their share of the map): returns name
 * recent sales, so 65,536 keep those in memory within about 13 MiB, and an
 * older one costs one read. What changed since the last flush stays in
 * memory until the next one, beyond these (TLY_CONSUME_DIRTY_ENTRIES_MAX
 * bounds it); without flush drops (tests, `audit replay`) the partners a
 * flush wrote stay cached until a flush of fewer follows. */
#define TLY_ENGINE_PARTNERS_CACHED_MAX 4096u
#define TLY_ENGINE_SALES_CACHED_MAX 65536u

/* A batch is committed early once the engine holds this many changed
 * entries (tly_engine_dirty: partners, sales, exceptions), whatever
 * --batch says. A changed sale pins about 200 bytes, a changed partner its
 * whole state, about 5 KiB at 10M events of `bench fold` (8 periods, 9
 * claims): a batch that changes many partners pins far more than one that
 * registers many sales (10M events, 100,000 partners, all changed by every
 * batch: about 500 MB; 1M events: about 100 MB). A default batch of
 * sell-through data changes fewer (500,000 records of `bench fold` about
 * 380,000 entries; the default is 400,000), so it is not cut short: every
 * extra commit rewrites every partner the batch touched. A close touches
 * every member of its program at once and may exceed it for that one
 * event. */
#define TLY_CONSUME_DIRTY_ENTRIES_MAX 500000u

/* A batch is also committed early once the consumer's resident anonymous
 * memory (tly_os_anon_resident, read every TLY_CONSUME_VIEWS_RELEASE_RECORDS
 * records) and what its commit will add on top of it would reach
 * TLY_CONSUME_ANON_BYTES_MAX, whatever --batch and the entry count say:
 * what a batch holds depends on the data's shape, not on its number of
 * entries alone. What a commit adds is what the last one added
 * (tly_views_stats' last_anon_rise), at least TLY_CONSUME_COMMIT_RISE_MIN;
 * TLY_CONSUME_COMMIT_RISE_FIRST before any. Measured (thirty-seventh
 * session, one shard, MiB of anonymous memory at a commit's start and at
 * most during it):
 *   - `bench fold --growth`'s 10M log (100,000 partners, 100 events
 *     each), 400,000-record batches: the first commit 157 → 225, the
 *     others from 188-218 up by 8-20 at most (their flushes free about as
 *     much as LMDB copies);
 *   - its 1M log held at 100,000 partners (`--partners 100000`, 10
 *     events each): the first commit 158 → 242 (a batch of 337,896
 *     records, cut by the entries), a later one from 246; the fold peaked
 *     at 271 MiB in all (284 MB), over the 256 MB bound, with no limit
 *     reached.
 * The first commit of a process adds the most: the engine's states, grown
 * event by event, leave a fragmented heap that LMDB's page copies cannot
 * reuse. A commit after a close adds more than others (the closed
 * period's journal, every member's rows): the 10M log's last, 53 MiB.
 * The mapped files add about 10-16 MiB (the log's resident pages,
 * TLY_CONSUME_LOG_RESIDENT_BYTES_MAX, and the store's between releases).
 * With the bound at 228 MiB the 1M log above peaked at 251,692 KiB (258
 * MB); at 220, 249,360 KiB (255 MB), and the 10M log at 242,092 KiB in 29
 * commits (25 without the bound, at 235,000-244,000 KiB); at 216, 242,492
 * and 231,632 KiB in 31 commits. `tally audit replay` ends its batches at
 * the same bound, once for each shard it folds in its one process
 * (tly_helper_bound): the 10M log replayed on one shard peaked at 234,808
 * KiB with it, 261,964 without. $TALLY_CONSUME_ANON_BYTES overrides the
 * bound (tests: 1 commits every TLY_CONSUME_VIEWS_RELEASE_RECORDS
 * records). */
#define TLY_CONSUME_ANON_BYTES_MAX ((uint64_t)220u << 20)
#define TLY_CONSUME_COMMIT_RISE_FIRST ((uint64_t)96u << 20)
#define TLY_CONSUME_COMMIT_RISE_MIN ((uint64_t)16u << 20)

/* Partners a consumer's flush notes, of those it wrote and dropped, to read
 * back once its commit is done (tly_engine_read_back): a batch that changed
 * more partners than the cache holds finds them in memory in the next,
 * read in key order, instead of reading each from a random page of the
 * store when an event names it. They were all in memory at the batch's
 * end; read back, they count as changed entries until the next flush
 * (tly_engine_dirty), so a batch that turns to other partners commits
 * early rather than hold both sets. Half of TLY_CONSUME_DIRTY_ENTRIES_MAX
 * leaves a batch room for its sales. */
#define TLY_CONSUME_READ_BACK_PARTNERS_MAX (TLY_CONSUME_DIRTY_ENTRIES_MAX / 2u)

/* Partners a consumer's read-back must hold before a second thread decodes
 * half of their records (tly_engine_read_back_begin): below it a thread's
 * start costs more than it saves. $TALLY_CONSUME_READ_SPLIT_MIN overrides
 * it (tests: 1 splits every read-back). */
#define TLY_CONSUME_READ_SPLIT_MIN 4096u

/* Records a consumer folds between two releases of the view store's map
 * (tly_views_release): a record whose partner, claims or sale are not in
 * the engine's cache reads pages of the store, and at 10M events (100,000
 * partners) a batch of 500,000 records read 1.2 GB of a 2.8 GB store, all
 * of it counted in the consumer's RSS until the commit. Measured at 1M
 * events, 8,192 records read up to 54 MB; 2,048 keep it near 16 MB, and
 * the pages still in use (the tree's upper levels) fault back in from the
 * page cache for well under a ms per release. */
#define TLY_CONSUME_VIEWS_RELEASE_RECORDS 2048u

/* Records folded per view transaction by default, and at most (--batch).
 * A flush rewrites every partner the batch touched (state and four JSON
 * views), so its cost grows with the partners touched, not the records;
 * but a very large transaction pays in page faults for its dirty pages.
 * Measured on 1M records over 10,000 partners (one shard, decode-ahead):
 * 500,000-record batches 1.77-1.87 s, one batch of 1M 2.03-2.36 s, and
 * (before the view-writer rework) 100,000-record batches 7.1 s. The
 * maximum bounds the work a crash throws away (a few seconds of folding);
 * a batch whose transaction outgrows LMDB's dirty-page limit is halved and
 * redone. 400,000 rather than 500,000 (seventh session): what a batch pins
 * until its commit (its new sales, LMDB's copies of the pages the commit
 * changes) is the peak of a fold, and `bench fold`'s 1M log on one shard
 * peaked at 263 MB with 500,000 and 246 MB with 400,000 (228 MB with
 * 333,334), at the same fold time (2.8-3.2 s); its 10M log (100,000
 * partners, each rewritten once per batch) took 62.0 s against 59.2 s and
 * peaked at 929 MB against 966 MB. */
#define TLY_CONSUME_BATCH_RECORDS_DEFAULT 400000u
#define TLY_CONSUME_BATCH_RECORDS_MAX 1000000u

/* A batch is committed after this long even when it is not full, so the
 * checkpoint (`tally status`, `tally wait`) moves during a long catch-up
 * by a slow engine; 5 s keeps a half-second flush a small share. */
#define TLY_CONSUME_COMMIT_INTERVAL_MS 5000u

/* Bytes of log records a consumer reads from the log's map before it drops
 * the map's pages from its address space (tly_log_reader_release): reading
 * 10M records from scratch touches 2.3 GB of the map, all of which counted
 * in its RSS. The pages stay in the page cache; 4 MiB costs one madvise
 * per about 17,000 records and bounds the log's share of the RSS near it
 * (with TLY_CONSUME_LOG_LOOKUPS_RELEASE 256 rather than 16 MiB and 1,024:
 * the 3M `bench fold` log on one shard peaked at 335 MB against 351, in
 * the same time, alternated; the 10M log at 737 against 741 MB). */
#define TLY_CONSUME_LOG_RESIDENT_BYTES_MAX ((size_t)4u << 20)

/* Sales a consumer looks up in the log (another shard's, or its own when
 * out of its cache and store: tly_consume.c log_sale) between two releases
 * of the log's map: each reads up to one page per level of the ids index
 * and the record's page, and the kernel maps the cached pages around each
 * page it faults in with it (fault-around, 64 KiB), so a look-up can count
 * 300 KiB in the RSS: 256 of them let the log's map reach 94 MB of the
 * 10M log of 100,000 partners (`bench fold --growth --partners 100000`,
 * one shard, thirty-seventh session, a fold peaking at 273 MiB), 32 keep
 * it under 20 MB. A release is one madvise. */
#define TLY_CONSUME_LOG_LOOKUPS_RELEASE 32u

/* How long the consumer waits on the events socket before it polls the
 * log anyway: a dropped PUB message, or a ledger that is not publishing,
 * delays folding by at most this. Also the pace of waiting for DIR/log. */
#define TLY_CONSUME_IDLE_POLL_MS 200

/* Records asked for in one log-read request (the ledger may send fewer to
 * keep the reply under TLY_FRAME_BYTES_MAX), and how long to wait for the
 * reply before the request is sent again on a fresh socket. */
#define TLY_CONSUME_LOGREAD_RECORDS_MAX 4096u
#define TLY_CONSUME_LOGREAD_TIMEOUT_MS 5000

/* Messages the events socket queues before ZeroMQ drops new ones. Drops are
 * harmless (gaps are filled from the log); the bound caps the memory a fast
 * ledger can pin in a slow consumer. */
#define TLY_CONSUME_SUB_HWM 100000

/* Times a consumer reloads its engine from the view store after a failed
 * commit (the engine may have forgotten changes it flushed into the
 * aborted transaction) before it stops with an error. */
#define TLY_CONSUME_RELOAD_RETRIES_MAX 3u

/* Events a bench generates at most (bench fold, its --growth-max, bench
 * query and bench ingest --events), and the latency samples bench fold
 * keeps (8 MiB of u64) for the query-read percentiles. */
#define TLY_BENCH_EVENTS_MAX 100000000u
#define TLY_BENCH_LATENCY_SAMPLES_MAX 1000000u

/* bench query: client threads at most; requests one client keeps in
 * flight at most (--window); seconds one measured run lasts at most (each
 * run also has a warm-up of TLY_BENCH_QUERY_WARMUP_MS, which is not
 * counted); how long it waits for a service it started to answer. */
#define TLY_BENCH_QUERY_CLIENTS_MAX 64u
#define TLY_BENCH_QUERY_WINDOW_MAX 64u
#define TLY_BENCH_QUERY_SECONDS_MAX 3600u
#define TLY_BENCH_QUERY_WARMUP_MS 500u
#define TLY_BENCH_QUERY_READY_MS 10000u

/* --- query and supervision (query service, CLI queries, status, wait, up) --- */

/* Largest query request frame. A request is a small map ({"q", "partner",
 * filters}); 64 KiB is far above any honest one and bounds what a hostile
 * client can make the service allocate before it answers. */
#define TLY_QUERY_REQUEST_BYTES_MAX (64u * 1024u)

/* Largest frame the query service lets ZeroMQ receive (ZMQ_MAXMSGSIZE), so
 * that a request over TLY_QUERY_REQUEST_BYTES_MAX still gets a too_large
 * answer. Beyond it ZeroMQ drops the frame and disconnects the peer without
 * an answer: the wire's own frame limit, the most any Tally socket takes. */
#define TLY_QUERY_FRAME_BYTES_HARD_MAX TLY_FRAME_BYTES_MAX

/* Routing frames the service echoes back in front of a reply: a DEALER adds
 * none, a REQ adds an empty delimiter, a chain of proxies a few more. */
#define TLY_QUERY_ENVELOPE_FRAMES_MAX 8u

/* Exceptions in one reply before it is cut at the next seq boundary with a
 * "next_seq" cursor (the client asks again with "from_seq"): keeps a reply
 * of ~200-byte exceptions near 4 MiB / 2, under TLY_FRAME_BYTES_MAX. */
#define TLY_QUERY_EXCEPTIONS_PAGE_MAX 10000u

/* Pages `tally exceptions` fetches at most: 100,000 pages of 10,000 is a
 * billion exceptions, more than any log this tool is sized for. */
#define TLY_QUERY_EXCEPTIONS_PAGES_MAX 100000u

/* Programs one liabilities answer sums at most. A deployment runs a handful
 * of programs; 4096 bounds the merge of the shards' shares. */
#define TLY_QUERY_PROGRAMS_MAX 4096u

/* Periods one `tally report` spans, from the program's first: 600 is fifty
 * years of months; a store that names a later period is corrupt. */
#define TLY_PERIODS_REPORT_MAX 600u

/* Ids an unknown partner's error suggests (the nearest by edit distance,
 * within a third of its length or 2). */
#define TLY_QUERY_SUGGESTIONS_MAX 3u

/* Rows of one `partners` answer: a page of at most 4096 rows (a row is at
 * most ~700 bytes, so a page stays well under the 4 MiB reply frame); the
 * answer names the last id as "next" when more follow, and the command
 * asks again "after" it. */
#define TLY_QUERY_PARTNERS_PAGE_MAX 4096u

/* Bytes of a statement the console serves (a PDF of a long period is a few
 * hundred KiB; a larger file is an error, not a reply). */
#define TLY_WEB_STATEMENT_BYTES_MAX (16u * 1024u * 1024u)

/* `tally journal --accounts FILE`: the file is six account keys mapped to
 * GL codes, a few hundred bytes; 64 KiB is room for any formatting and
 * bounds what a wrong file (a log, say) makes the CLI read. A GL code is a
 * short account number or name ("4010-200", "MDF Liability"); 64 bytes
 * fits any chart of accounts we know of and keeps a table column sane. */
#define TLY_ACCOUNTS_FILE_BYTES_MAX (64u * 1024u)
#define TLY_GL_CODE_BYTES_MAX 64u

/* How long the CLI waits for a query reply before it says the service is
 * not reachable: the service answers in well under a millisecond, so five
 * seconds only ever expires when nothing is listening. */
#define TLY_QUERY_TIMEOUT_MS 5000

/* `tally status` tries the service this long before it reads --data
 * directly, so a stopped stack still gets an answer quickly. */
#define TLY_STATUS_PROBE_MS 1000

/* --- tally web (the read-only console, consumers/web/) --- */

/* Largest request the console reads: the path, the query arguments' names
 * and values and the header names and values, summed as the server
 * decodes them. A console request is a path and a few filters; 8 KiB holds
 * any honest one with a browser's headers and bounds what a client makes
 * a connection hold. A larger one is answered 413 without being served. */
#define TLY_WEB_REQUEST_BYTES_MAX (8u * 1024u)

/* Memory libmicrohttpd may use per connection (its read buffer and the
 * parsed headers): room for a request of TLY_WEB_REQUEST_BYTES_MAX with the
 * request line and separators, so that the console's own count decides
 * first; beyond it the library answers an error itself. */
#define TLY_WEB_CONNECTION_MEMORY_BYTES (64u * 1024u)
_Static_assert(TLY_WEB_CONNECTION_MEMORY_BYTES >= 4u * TLY_WEB_REQUEST_BYTES_MAX,
               "a request the console accepts fits the library's connection memory");

/* Connections served at once (one thread each): a console has a handful
 * of finance users; a connection over the limit is closed unanswered. */
#define TLY_WEB_CONNECTIONS_MAX 64u

/* Seconds an idle keep-alive connection holds its slot. */
#define TLY_WEB_IDLE_TIMEOUT_S 30u

/* Query arguments one request may carry: every page takes at most a few
 * filters and "format". */
#define TLY_WEB_ARGS_MAX 16u

/* Largest page the console renders: a partner page holds the explain
 * lines, a list page the service's answer (at most TLY_FRAME_BYTES_MAX of
 * MessagePack); HTML adds markup around each figure. Over it: 500. */
#define TLY_WEB_PAGE_BYTES_MAX (64u * 1024u * 1024u)

/* Explain lines a partner page shows (the newest are cut after a note;
 * ?format=json has them all). */
#define TLY_WEB_EXPLAIN_LINES_MAX 5000u

/* `tally wait`: default and largest --timeout, and the pause between polls
 * (short next to a fold batch, long enough not to load the service). */
#define TLY_WAIT_TIMEOUT_S_DEFAULT 60u
#define TLY_WAIT_TIMEOUT_S_MAX 86400u
#define TLY_WAIT_POLL_MS 50

/* The largest log position a command takes (`wait --seq`, `exceptions
 * --from-seq`): it travels to the query service as a JSON and MessagePack
 * integer, which the service reads as int64. */
#define TLY_SEQ_ARG_MAX ((uint64_t)INT64_MAX)

/* `tally up`: first restart delay of a child that died, doubled on each
 * further death up to the maximum, and reset to the first once the child
 * had stayed up TLY_UP_STABLE_MS: a crash loop costs little CPU, a rare
 * crash is repaired at once. */
#define TLY_UP_BACKOFF_MS_MIN 100
#define TLY_UP_BACKOFF_MS_MAX 10000
#define TLY_UP_STABLE_MS 10000

/* How long `tally up` waits for its children to exit after SIGTERM before
 * it sends SIGKILL. A consumer finishes its current batch commit first;
 * ten seconds covers a large batch on a slow disk. */
#define TLY_UP_STOP_GRACE_MS 10000

/* How long `tally up` waits for the ledger's log-read socket to accept
 * connections before it starts the consumers anyway (they wait too). */
#define TLY_UP_LEDGER_READY_MS 5000

/* Children of one `tally up`: the ledger, the query service, the web
 * console and at most TLY_SHARDS_MAX consumers. */
#define TLY_UP_CHILDREN_MAX (TLY_SHARDS_MAX + 3u)

/* One log line (tly_logf), timestamp and level included: a message names at
 * most a couple of paths (TLY_PATH_BYTES_MAX each) and endpoints; a longer
 * one is cut. Written with one write(2): lines of processes sharing stderr
 * do not interleave. */
#define TLY_LOG_LINE_BYTES_MAX 8192u

/* --- audit (verify, export, digest, replay, diff) --- */

/* One line of verdict text ("seq 1234: event invalid: amount: ..."): the
 * event decoder's field (64) and message (160) plus room for the context. */
#define TLY_AUDIT_ERROR_BYTES 320u

/* Records verify and export handle between two progress reports: frequent
 * enough for a smooth bar, rare enough to cost nothing. */
#define TLY_AUDIT_PROGRESS_RECORDS 4096u

/* Documents an audit stream (a digest's, a diff's) reads between two
 * releases of the view stores' mapped pages (audit_views.c), which it
 * releases again when it closes: every document is rendered from records
 * read through the map, and without it `audit digest` of the 10M-event
 * store of `bench fold --growth` held 0.9 GB of the store's pages in its
 * resident memory (71 MB with it, in the same time). */
#define TLY_AUDIT_RELEASE_ITEMS 4096u

/* Threads `audit verify` checks records on: one per online core, at most
 * this many. The hash chain is sequential but checking it is not (record n
 * is checked against the hash stored in record n-1), so batches of records
 * are checked in parallel and the verdicts merged in seq order. */
#define TLY_AUDIT_VERIFY_THREADS_MAX 8u

/* Threads `audit digest` (and `audit replay`'s digests) and `audit diff`
 * walk the view families on: one per online core, at most this many, each
 * family on one thread (a digest is one hash over the family's items in
 * order, a diff one merge of two sorted walks). More threads than the six
 * families would wait. */
#define TLY_AUDIT_FAMILY_THREADS_MAX 6u

/* View sets one walk of the families reads side by side: a diff's live
 * views and its replay. */
#define TLY_AUDIT_VIEWSETS_MAX 2u

/* Consecutive records one verify thread checks at a time: large enough that
 * handing a batch over costs nothing per record, small enough that a fault
 * near the start is found without checking much past it. */
#define TLY_AUDIT_VERIFY_BATCH_RECORDS 1024u

/* Batches read ahead per verify thread (the queue between the scan and the
 * checking threads): 4 keeps every thread busy while the first in seq
 * order is still being checked. With the other two bounds this is at most
 * 32 batches of 32-byte entries, 1 MiB. */
#define TLY_AUDIT_VERIFY_BATCHES_PER_THREAD 4u

/* Times `audit verify` opens one read snapshot per thread and finds that
 * the ledger committed between two of them before it checks on one thread:
 * the threads' snapshots must be the same one, and a commit lands between
 * two opens (a microsecond apart) rarely. */
#define TLY_AUDIT_VERIFY_SNAPSHOT_TRIES 16u

/* Records a replay folds per view-store commit. A failed replay is redone
 * from scratch, so commits are not for crash recovery: each one costs an
 * fsync and a flush of every doc changed since the last, so fewer is
 * faster (measured on a 1M-event log: 10,000 gives ~9k events/s, 100,000
 * ~206k, 500,000 ~280k). 500,000 records (~20k dirty pages with 10,000
 * partners) stay far below LMDB's limit of 2^17 dirty pages. */
#define TLY_AUDIT_REPLAY_BATCH_RECORDS 500000u

/* Difference lines `audit diff` prints before it only counts: a diff of a
 * wholly different store would otherwise print millions of lines. */
#define TLY_AUDIT_DIFF_LINES_MAX 1000u

/* Characters of a JSON value a diff line shows before it cuts with "...". */
#define TLY_AUDIT_DIFF_VALUE_CHARS_MAX 120u

/* Directory entries a views directory may hold while digest looks for its
 * "K-of-N" shards: TLY_SHARDS_MAX shards of a few shard counts, and more. */
#define TLY_AUDIT_VIEWS_DIRENTS_MAX 4096u

/* Programs the close index of `--as-of-close` (DATA/asof/closes.json)
 * holds: as many as a liabilities answer sums. */
#define TLY_AUDIT_CLOSES_PROGRAMS_MAX TLY_QUERY_PROGRAMS_MAX

/* Closed periods the index holds per program: as many as a report spans
 * (fifty years of months). */
#define TLY_AUDIT_CLOSES_PERIODS_MAX TLY_PERIODS_REPORT_MAX

/* Partners `audit replay --compare` lists per program as the ones whose MDF
 * available and rebate payable change most: a page a controller reads; the
 * full picture is a replay's --views away. */
#define TLY_AUDIT_COMPARE_MOVERS_MAX 10u

/* Shards of the replay an `--as-of-close` answer reads: one per online
 * core up to this many (a replay folds each shard on its own thread, and
 * every thread reads the whole log, so more shards than cores only cost). */
#define TLY_AUDIT_ASOF_SHARDS_MAX 4u

/* Requests the query service answers per wake-up before it polls (and
 * looks at its stop flag) again: every request waiting, up to this many.
 * A stop waits for at most this many answers, well under a millisecond. */
#define TLY_QUERY_DRAIN_MAX 64u

/* The query service's fast way from a stored view document to its reply
 * (consumers/query/query_fast.c) reads documents of at most this many
 * values, nested at most this deep; a larger or deeper one (a partner with
 * thousands of claims) takes the jansson way, which gives the same bytes
 * slower. A balance is about 30 values; 4096 of 40 bytes is 160 KiB of
 * scratch per service. */
#define TLY_QUERY_FAST_VALUES_MAX 4096u
#define TLY_QUERY_FAST_DEPTH_MAX 8u

/* Entries of DIR/views the query service reads when it looks for shard
 * stores: far more than the at most TLY_SHARDS_MAX stores of a few shard
 * counts a directory ever holds. */
#define TLY_QUERY_VIEWS_DIR_ENTRIES_MAX 4096u

/* Stored exceptions one exceptions reply examines (matching a filter or
 * not) before it is cut with "next_seq": bounds the work of one request
 * when a filter matches little, so other clients are not held up long. */
#define TLY_QUERY_EXCEPTIONS_SCAN_MAX 1000000u

/* Longest path or endpoint the command line and the data directory's layout accept. */
#define TLY_PATH_BYTES_MAX 1024u

/* --- ledger daemon (ledger/tly_ledger.c) --- */

/* Requests drained into one group commit. Bounds the replies held and the
 * latency one commit adds to the first request of the batch. */
#define TLY_COMMIT_REQUESTS_MAX 512u
/* Events in one group commit: about 4 MiB of records at typical sizes, one
 * LMDB transaction that commits in a few ms. A request is taken into the
 * batch only while it fits whole, so every batch holds whole requests. */
#define TLY_COMMIT_EVENTS_MAX 16384u
/* A batch of one request of at most this many events, taken while the
 * commit thread is idle and nothing else waits, is committed by the main
 * thread itself: the two thread hand-offs are a good part of what a lone
 * event waits beyond its fsyncs, and there is nothing to overlap. */
#define TLY_LEDGER_INLINE_EVENTS_MAX 16u
/* Routing frames before the body (a DEALER adds one; REQ via proxies more). */
#define TLY_ENVELOPE_FRAMES_MAX 8u
/* Frames above this size are dropped by ZeroMQ itself (the peer is
 * disconnected); frames up to it but over TLY_FRAME_BYTES_MAX get a
 * too_large reply. Bounds the memory one hostile peer can take. */
#define TLY_FRAME_BYTES_HARD_MAX (64u * 1024u * 1024u)
/* Records in one log-read reply (also bounded by TLY_FRAME_BYTES_MAX). */
#define TLY_LOGREAD_RECORDS_MAX 4096u
/* Log-read requests served between two ingest batches, so catch-up readers
 * cannot starve producers. */
#define TLY_LOGREAD_PER_TURN 8u
/* Poll timeout: how often the loop looks at the stop flag when idle. */
#define TLY_LEDGER_POLL_MS 200
/* How long the last replies may take to leave at shutdown. */
#define TLY_LEDGER_LINGER_MS 1000
/* Published records queued per subscriber before PUB drops for that
 * subscriber (it refills from the log when it sees the gap). Records are
 * mostly a few hundred bytes; the byte bound is TLY_LEDGER_EVENTS_BYTES_MAX. */
#define TLY_EVENTS_HWM 20000

/* --- the ledger's memory budget (ledger/ledger_out.h) ---
 * Replies and published records wait in ZeroMQ's queues until a peer reads
 * them; these bound those bytes whatever clients do. In all, the ledger holds
 * at most: its batches (2 x TLY_COMMIT_EVENTS_MAX items, a few MiB), the
 * replies budget, the events budget, and per connected producer up to
 * TLY_LEDGER_PEER_REQUESTS_MAX requests not yet read (only while a group
 * commit is full). README "Operating it" repeats this. */

/* One encoded per-event result at most: {"error": code (≤ 16 bytes),
 * "message": ≤ 159 bytes, "field": ≤ 63 bytes} with MessagePack headers. */
#define TLY_LEDGER_RESULT_BYTES_MAX 288u

/* One ingest reply at most: the map, "req" and a result per event. */
#define TLY_LEDGER_REPLY_BYTES_MAX (64u + TLY_BATCH_EVENTS_MAX * TLY_LEDGER_RESULT_BYTES_MAX)

/* Replies (ingest and log-read) sent and not yet read by their peers, in
 * bytes, across all connections. Beyond it replies are dropped (the producer
 * resends). 256 MiB is over 200 maximal ingest replies or 60 full log-read
 * replies in flight: far above what honest clients keep unread. */
#define TLY_LEDGER_REPLIES_BYTES_MAX ((size_t)256u << 20)

/* Replies queued for one connection (ZMQ_SNDHWM). A producer keeps at most
 * TLY_CLIENT_WINDOW_MAX (64) requests in flight, so an honest one never
 * meets it; one that does not read is cut off here, at most 64 maximal
 * replies (75 MiB), well before the total budget. */
#define TLY_LEDGER_PEER_REPLIES_MAX 64

/* Requests queued from one connection before ZeroMQ stops reading it
 * (ZMQ_RCVHWM); the same window. */
#define TLY_LEDGER_PEER_REQUESTS_MAX 64

/* Log-read replies queued for one reader: a reader has one request out. */
#define TLY_LEDGER_LOGREAD_PEER_REPLIES_MAX 4

/* Published records not yet written to every subscriber, in bytes. A
 * stopped subscriber holds at most this (then publishing pauses and every
 * subscriber fills the gap from the log). */
#define TLY_LEDGER_EVENTS_BYTES_MAX ((size_t)64u << 20)

/* A log-read reply at most: the first record is always served whatever its
 * size, so a reply can exceed TLY_FRAME_BYTES_MAX by one record's envelope
 * (seq, recorded_ms, source, hash, the event's bin header: under 1 KiB). */
#define TLY_LOGREAD_REPLY_BYTES_MAX (TLY_FRAME_BYTES_MAX + 1024u)

/* How often a drop is logged at most (with the count since the last line). */
#define TLY_LEDGER_DROP_LOG_MS 10000u

/* How often idle memory is handed back to the system at most. */
#define TLY_LEDGER_TRIM_INTERVAL_MS 1000u

/* Buffers from this size on are mmapped and unmapped when freed. */
#define TLY_LEDGER_MMAP_THRESHOLD_BYTES (128u * 1024u)

/* --- client library (producers/tly_client.h) --- */

/* Default time to wait for an ack before reconnecting and resending. */
#define TLY_ACK_TIMEOUT_MS 5000

/* `tally send --ack-timeout-ms` and `--retries`: the largest values taken
 * (an hour per attempt; a million resends of one request). */
#define TLY_ACK_TIMEOUT_MS_MAX 3600000u
#define TLY_SEND_RETRIES_MAX 1000000u

/* `tally send --timeout`: how long send waits with requests in flight and
 * no acknowledgement at all before it gives up (exit 1, the unconfirmed
 * events named). Five minutes covers a ledger restart, a long fsync stall
 * and a `tally up` backoff many times over, and still ends a script that
 * points at the wrong port or a stopped stack within minutes. Progress
 * restarts the clock, so a long import is never cut short. 0 waits for
 * ever (the behaviour before --timeout). */
#define TLY_SEND_TIMEOUT_S_DEFAULT 300u
#define TLY_SEND_TIMEOUT_S_MAX 86400u
_Static_assert(TLY_SEND_TIMEOUT_S_DEFAULT * 1000u > TLY_ACK_TIMEOUT_MS,
               "send gives up only after at least one resend");

/* Ingest endpoints one producer takes ("--ingest A,B", SPEC [N5]): a
 * writer and its standbys, a handful at most. */
#define TLY_CLIENT_ENDPOINTS_MAX 8u

/* Requests in flight on one connection at most. */
#define TLY_CLIENT_WINDOW_MAX 64u

/* Backoff before resending after `storage`/`unavailable` or a timeout:
 * doubles from the first value to the cap. */
#define TLY_RETRY_BACKOFF_MS_FIRST 100

#define TLY_RETRY_BACKOFF_MS_MAX 5000

/* --- log store (ledger/tly_log.h) --- */

/* Full requests (TLY_BATCH_EVENTS_MAX events each) one tly_log_append call
 * may carry. Group commit pays one fsync for many requests; 16 full requests
 * are 64k events, far beyond the batch size where the fsync cost stops
 * mattering (about 1,000 events). */
#define TLY_LOG_BATCH_REQUESTS_MAX 16u

/* Items in one tly_log_append call. Sizes the per-item scratch space the
 * writer keeps (about 1.5 MiB at this bound). */
#define TLY_LOG_BATCH_ITEMS_MAX (TLY_LOG_BATCH_REQUESTS_MAX * TLY_BATCH_EVENTS_MAX)

/* Event bytes in one commit. A call carrying more is committed in several
 * transactions, split between groups. Keeps a transaction (the records plus
 * index pages) well inside LMDB's dirty list of 2^17 pages, so it never
 * spills, and bounds the memory LMDB holds for it. 16 full frames. */
#define TLY_LOG_COMMIT_BYTES_MAX ((size_t)TLY_LOG_BATCH_REQUESTS_MAX * TLY_FRAME_BYTES_MAX)

/* Map size a new environment starts with. Small enough to be harmless on a
 * test machine, large enough that a normal day never remaps. */
#define TLY_LOG_MAP_BYTES_INIT ((size_t)64u << 20)

/* Largest map the writer grows to by doubling (1 TiB). It is address space,
 * not disk: the file only grows as pages are written. A map full at this
 * size is reported as TLY_STORAGE, like a full disk. */
#define TLY_LOG_MAP_BYTES_MAX ((size_t)1u << 40)

/* Concurrent read transactions (LMDB reader slots) across all processes: the
 * daemon, one consumer per shard, the query service and audits. 126 is
 * LMDB's default and fills exactly one 4 KiB lock page. */
#define TLY_LOG_READERS_MAX 126u

/* Attempts to begin a read transaction after MDB_MAP_RESIZED: the writer can
 * grow the map again between our resize and our retry, but not without
 * bound since every growth doubles the map. */
#define TLY_LOG_RESIZE_RETRIES_MAX 8u

/* How long map growth waits for this process's open readers to close
 * (growth remaps the file under them). Readers in the daemon are short; if
 * one is held longer, the append fails with TLY_STORAGE and the next one
 * retries. */
#define TLY_LOG_GROW_WAIT_MS 1000u

/* --- replication on NATS JetStream (ledger/ledger_repl.h, SPEC section 12) --- */

/* The stream the log is replicated into when --stream is not given. */
#define TLY_REPL_STREAM_DEFAULT "TALLY_LOG"
/* A stream name: 1..32 bytes of [A-Za-z0-9_-] (JetStream forbids '.', '*',
 * '>' and blanks; the lease bucket adds "_LEASE" to it). */
#define TLY_REPL_STREAM_NAME_BYTES_MAX 32u
/* Servers in one --replicate list: a cluster is 3 or 5 nodes; 16 leaves
 * room for a super-cluster's seeds. */
#define TLY_REPL_URLS_MAX 16u
/* One URL of the list: "nats://user:password@host:port" fits easily. */
#define TLY_REPL_URL_BYTES_MAX 256u
/* --replicas: JetStream replicates a stream on at most 5 nodes. */
#define TLY_REPL_REPLICAS_MAX 5
#define TLY_REPL_REPLICAS_DEFAULT 3
/* One record as a stream message at most: an event fills at most a frame,
 * its envelope (seq, recorded_ms, source, hash, bin header) is under 1 KiB.
 * The servers' max_payload must take it (scripts/nats-cluster.sh: 8 MB). */
#define TLY_REPL_RECORD_BYTES_MAX (TLY_FRAME_BYTES_MAX + 1024u)
/* How long a group commit waits without any acknowledgement from the
 * stream before the batch is `unavailable` [N2] (while acknowledgements
 * keep coming, a large batch on a busy cluster may take longer in all):
 * well under the producers' TLY_ACK_TIMEOUT_MS, so a producer hears
 * `unavailable` and moves on [N5] rather than timing out; far above a
 * healthy R3 round trip (~1 ms). */
#define TLY_REPL_ACK_TIMEOUT_MS 2000
/* A record's stream message carries the first TLY_REPL_MSG_ID_HASH_BYTES
 * bytes of its chain hash, in hex, as its message id (Nats-Msg-Id), and
 * every record of a batch after its first expects the one before as the
 * stream's last (Nats-Expected-Last-Msg-Id): the stream then stores only a
 * chain (ledger_repl.c, publish_one). 16 bytes: no two records of a log
 * share an id, and the servers keep each id for
 * TLY_REPL_DUPLICATES_WINDOW_MS only. */
#define TLY_REPL_MSG_ID_HASH_BYTES 16u
/* The duplicate window of a stream the ledger creates: JetStream keeps
 * every message id seen within it, by default for two minutes (at 50,000
 * records a second, six million ids on each server). The ledger needs
 * only the last one (the expected last id), which the servers keep
 * whatever the window; nothing is published twice on purpose. */
#define TLY_REPL_DUPLICATES_WINDOW_MS 1000
/* How long one JetStream API call (stream info, create, get) waits. */
#define TLY_REPL_API_WAIT_MS 2000
/* Attempts at creating the stream [N1], each waiting TLY_REPL_API_WAIT_MS:
 * a cluster that has just elected its leaders may not place an R3 stream
 * within one wait while the machine is busy (seen once in test_replicate,
 * three servers and a test suite sharing two cores); a creation that timed
 * out but happened is found by the next attempt. */
#define TLY_REPL_CREATE_TRIES 5
/* Attempts at looking the stream up when a ledger, an auditor or a mirror
 * opens it [N1], each lasting TLY_REPL_API_WAIT_MS: only the stream's
 * leader answers, and a cluster that has just regained its quorum answers
 * no lookup while it elects the stream's and the meta group's leaders
 * (each after a randomized election timeout of seconds, longer on a busy
 * machine) and a returning node recovers its state (test_replicate
 * test_no_quorum, the stream read back right after node 3 was restarted:
 * "stream TALLY_LOG: Timeout", 2026-12-07). 10 tries, 20 s, outlast a
 * couple of election rounds; a cluster without quorum is still reported. */
#define TLY_REPL_LOOKUP_TRIES 10
/* Attempts at creating the consumer a catch-up, a standby or a mirror
 * reads the stream with, each waiting TLY_REPL_API_WAIT_MS, for the same
 * reason: a ledger starting on a busy machine once timed out creating its
 * catch-up's ordered consumer (test_replicate test_catch_up, the suites
 * under `ctest -j2`, 2026-12-03). */
#define TLY_REPL_READER_OPEN_TRIES 5
/* How long connecting to the cluster may take at start, and the pause
 * between reconnect attempts after losing a server (reconnects go on for
 * ever: a ledger outlives a cluster restart). */
#define TLY_REPL_CONNECT_TIMEOUT_MS 2000
#define TLY_REPL_RECONNECT_WAIT_MS 100
/* Records copied or caught up per LMDB transaction (and per wait for the
 * stream's acknowledgements when a log is copied into an empty stream). */
#define TLY_REPL_CHUNK_RECORDS 4096u
/* How long a catch-up waits for the next message of the stream before it
 * gives up (the stream said it holds it: only a lost quorum delays it). */
#define TLY_REPL_FETCH_WAIT_MS 5000
/* How long closing a stream reader waits for the servers to confirm its
 * unsubscribe before destroying it anyway (ledger_repl.c, sub_close). */
#define TLY_REPL_DRAIN_MS 2000
/* How long a mirror's fetch waits to fill a chunk: a pull fetch returns
 * with a whole chunk or when its wait is over, so a mirror of a busy stream
 * appends chunks (one durable commit each) rather than what 100 ms brought,
 * and a quiet stream's records reach the mirror within this. */
#define TLY_REPL_MIRROR_WAIT_MS 1000
/* A mirror's durable consumer [N6]: its name, "tally_<host>_<8 hex digits
 * of the mirror log's path>" cut to this many bytes, and how long the
 * servers keep it after its reader is gone (a mirror stopped for longer
 * starts from its own head again anyway: its log is the checkpoint). */
#define TLY_REPL_DURABLE_BYTES_MAX 48u
#define TLY_REPL_DURABLE_INACTIVE_S 86400
/* --takeover-after: seconds without a renewal of the writer's lease before
 * a standby takes over [N4]. 5 s rides out a GC-like pause or a slow
 * cluster election; 1 s is the least (a few renewals must fit in it), an
 * hour the most anyone would wait. */
#define TLY_TAKEOVER_AFTER_S_DEFAULT 5u
#define TLY_TAKEOVER_AFTER_S_MAX 3600u
/* Renewals of the lease per takeover_after: one lost renewal (a slow
 * round trip) never costs the lease. */
#define TLY_LEASE_RENEWALS 4
/* How long a standby's follower waits for the stream's next records before
 * it looks at the lease again: bounds the standby's lag behind a quiet
 * stream and its reaction to `tally ledger promote`. */
#define TLY_STANDBY_POLL_MS 100
/* A ledger's name in the lease (--name; default HOST:DATA-DIR). */
#define TLY_LEASE_NAME_BYTES_MAX 256u
_Static_assert(TLY_REPL_ACK_TIMEOUT_MS < TLY_ACK_TIMEOUT_MS,
               "a producer hears unavailable before its own timeout");
_Static_assert(TLY_REPL_CHUNK_RECORDS <= TLY_LOG_BATCH_ITEMS_MAX, "a chunk is one append");

/* --- authorized keys (ledger/tly_auth.h) --- */

/* Authorized keys at most; a partner program has tens of producers. */
#define TLY_AUTH_KEYS_MAX 1024u

/* Bytes of one authorized-keys line before its newline: a key line is at
 * most ~300 (a 40-character key, a source name, every role and one
 * partner:ID); the rest is room for a comment. A longer line is refused,
 * never read as two. */
#define TLY_AUTH_LINE_BYTES_MAX 1024u

/* --- tally gen (producers/gen.h) --- */

/* --events: a hundred million lines is ~20 GB of JSON, far beyond any test
 * or benchmark, and keeps every per-event counter well inside 32 bits. */
#define TLY_GEN_EVENTS_MAX 100000000u

/* --partners: a million partners costs ~100 MB of state; more is not a
 * realistic single vendor's channel. */
#define TLY_GEN_PARTNERS_MAX 1000000u

/* --months: the simulated time span; ten years of months, the longest span
 * any period arithmetic in the engine is bounded by (TLY_PERIODS_SPAN_MAX). */
#define TLY_GEN_MONTHS_MAX 120u

/* Longest JSON record the generator writes. The biggest is a program event
 * with four tiers and three brackets (~700 bytes); the builder asserts. */
#define TLY_GEN_LINE_BYTES_MAX 1024u

/* Records of one source kept for exact resends (--resend-pct): a producer
 * retrying after a timeout resends something recent, never ancient. */
#define TLY_GEN_RING_LINES 64u

/* Records of one source held before they are written: sources send in
 * batches (a distributor's nightly POS feed); well below the 4096 events of
 * one ingest request so `tally send` never has to split a group. */
#define TLY_GEN_BATCH_LINES_MAX 1024u

/* --- tally summary --- */

/* Partners listed by default in the top list, and at most. */
#define TLY_SUMMARY_TOP_DEFAULT 10u

#define TLY_SUMMARY_TOP_MAX 1000u

/* Pages of exceptions read at most (each TLY_QUERY_EXCEPTIONS_PAGE_MAX). */
#define TLY_SUMMARY_EXCEPTION_PAGES_MAX 100000u

/* --- tally statement (consumers/cli/cmd_statement.c, consumers/report/) --- */

/* Times the statement reads its answers again when they came from
 * different log positions (a shard applied records in between), and the
 * pause between tries: a ledger that keeps taking records for this long
 * is not quiet enough for one statement at one seq. */
#define TLY_STATEMENT_ATTEMPTS_MAX 50u
#define TLY_STATEMENT_RETRY_MS 100u

/* Periods the chart shows at most (the latest ones): 10 years of months
 * stay readable on an A4 page; the table under it lists the same ones. */
#define TLY_STATEMENT_CHART_PERIODS_MAX 120u

/* Pages of one PDF statement at most: about 20,000 explain lines, far more
 * than one partner's period holds; more is refused, not cut. */
#define TLY_STATEMENT_PAGES_MAX 400u

/* Lines of one period a statement lists at most (its pages bound it too). */
#define TLY_STATEMENT_LINES_MAX 20000u

/* --- tally bench ingest --- */

/* Producers at most (threads). */
#define TLY_BENCH_PRODUCERS_MAX 64u

/* Batch sizes measured in one run at most. */
#define TLY_BENCH_BATCHES_MAX 8u

/* Events of the one-event-per-request latency run. */
#define TLY_BENCH_SINGLE_EVENTS 5000u

/* Two-fsync floor samples taken before and again after the one-event run
 * (each a 4 KiB data page synced, then a meta write through O_DSYNC: what
 * an LMDB commit waits for at least). */
#define TLY_BENCH_FLOOR_SAMPLES 500u

/* --- tally gen's simulation (producers/gen_sim.c) --- */

/* Ticks in a row at the end of the span that wrote nothing before the run
 * gives up: the span is too short for the events asked (e.g. every
 * partner enrolls later than the span lasts). */
#define TLY_GEN_STALL_TICKS_MAX 100000u

/* --- metrics (--metrics ADDR, schemas/tly_metrics.h, metrics/) --- */

/* Metric families in one registry: the ledger has about a dozen, a
 * consumer or the query service fewer; room for the console's. */
#define TLY_METRICS_FAMILIES_MAX 64u

/* Series in one registry: the ledger's counters by event type and by error
 * code (tly_err's list, twice) are the most, about a hundred. */
#define TLY_METRICS_SERIES_MAX 256u

/* Bounds of one histogram (the +Inf bucket is extra): sixteen cover 100 µs
 * to 10 s in 1-2.5-5 steps, seventeen the powers of two to 65536. */
#define TLY_METRICS_BUCKETS_MAX 20u

/* A metric or label name, and a HELP text, with their NUL. */
#define TLY_METRICS_NAME_BYTES_MAX 64u
#define TLY_METRICS_HELP_BYTES_MAX 200u

/* A label value with its NUL: event types, error codes, query kinds and
 * shard names are short. */
#define TLY_METRICS_LABEL_BYTES_MAX 48u

/* Scrapes served at once: Prometheus scrapes one at a time; a few more let
 * an operator's curl in while a slow client holds one. */
#define TLY_METRICS_CONNECTIONS_MAX 8u

/* A connection idle this long is closed, so a client that connects and
 * sends nothing cannot hold a slot for good. */
#define TLY_METRICS_CONNECTION_TIMEOUT_S 10u

/* The window a consumer's fold rate gauge averages over: long enough that
 * one batch does not make it jump, short enough to show a stall. */
#define TLY_METRICS_RATE_WINDOW_MS 5000u

/* `tally up`: the metrics ports follow the ingest port at this distance
 * (7410 -> 7420), the ledger's first, then the query service's, the
 * console's, and consumer K's at + 3 + K. */
#define TLY_UP_METRICS_PORT_OFFSET 10u

#endif
