/*
 * tly_os.h — the operating-system edge every room may use: directories,
 * clocks, a daemon's stop flag, and the lines a process writes on stderr
 * (error lines and a progress line on a terminal). No command-line parsing
 * here (tly_cli.h).
 */
#ifndef TLY_OS_H
#define TLY_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tly_err.h"

/* Data is private by default: directories Tally creates are 0700 and the
 * files 0600, whatever the caller's umask (tally's main sets umask 077, so
 * these modes are exact). README "Security" says how to let an auditors'
 * group read a data directory. */
#define TLY_DIR_MODE 0700
#define TLY_FILE_MODE 0600

/*
 * mkdir -p: creates dir (mode TLY_DIR_MODE) and each of its missing parents; what
 * exists already is fine. dir is 1..TLY_PATH_BYTES_MAX bytes. Returns TLY_OK,
 * TLY_USAGE for an empty or longer dir, or TLY_STORAGE when a mkdir fails:
 * errno is then that mkdir's and, unless failed_len is NULL, *failed_len is
 * the length of the prefix of dir that could not be created. Prints nothing.
 */
tly_err tly_mkdirs(const char *dir, size_t *failed_len);

/* rm -rf path (files, directories, not following links); a missing path
 * is fine. Prints nothing. */
void tly_rmtree(const char *path);

/* Parses a decimal unsigned integer in [min, max] (from the command line
 * or the environment); false otherwise. */
bool tly_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * The flag a daemon's SIGINT/SIGTERM handler sets and its loop reads
 * (non-zero: stop). A lock-free atomic, not a volatile sig_atomic_t: the
 * kernel runs the handler on any thread that does not block the signal (a
 * libnats thread of a replicated ledger, its commit thread, a consumer's
 * decode-ahead thread), and the only objects C11 lets a handler share with
 * another thread are lock-free atomics.
 */
typedef atomic_int tly_stop_flag;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler may set a tly_stop_flag");

/* Sleeps ms milliseconds (nothing for ms <= 0); a signal may end it early. */
void tly_sleep_ms(int64_t ms);

/* $name parsed as tly_parse_u64 with min and max, or dflt when it is unset
 * or not such a number (the tests' overrides of a limit). A value set and
 * refused is logged once per process ("ignoring $NAME=..."). */
uint64_t tly_env_u64(const char *name, uint64_t min, uint64_t max, uint64_t dflt);

/*
 * Lines on stderr. A command's own error is one line "tally <cmd>:
 * <message>" (SPEC section 7). A daemon (tally ledger, consume, query, up:
 * the commands that call tly_log_daemon first) logs instead, each line
 *
 *   2026-05-01T09:30:12.345Z INFO  tally ledger: serving ingest ...
 *
 * an ISO-8601 UTC timestamp with milliseconds, the level padded to five
 * columns, then the same "tally <cmd>: <message>". The level is coloured
 * (ERROR red, WARN yellow) only when stderr is a terminal and NO_COLOR is
 * not set (tly_colour_enabled). Each line is written with one write(2), so
 * the lines of processes sharing a stderr (tally up's children) never
 * interleave within a line.
 */
typedef enum { TLY_LOG_ERROR, TLY_LOG_WARN, TLY_LOG_INFO } tly_log_level;

/* From now on this process logs as a daemon (see above). */
void tly_log_daemon(void);

/* One line at level: "tally <cmd>: <message>" (cmd NULL: "tally: "), with
 * the timestamp and level of a daemon's line. */
void tly_logf(tly_log_level level, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tly_logf at TLY_LOG_ERROR. */
void tly_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when output to fd may be coloured: fd is a terminal and NO_COLOR is
 * not set (to anything, the empty string included: see README). */
bool tly_colour_enabled(int fd);

/* True when stderr is a terminal: progress lines are shown only then. */
bool tly_progress_enabled(void);

/* Redraws a one-line progress report on stderr ("\r<label> done/total ...")
 * at most every 100 ms; total 0 means unknown. No-op off a terminal. */
void tly_progress(const char *label, uint64_t done, uint64_t total);

/* Ends a progress line (prints a newline when one was drawn). */
void tly_progress_end(void);

/*
 * Drops this process's page-table entries for the whole mapping that
 * contains addr (madvise MADV_DONTNEED), when that mapping is a read-only
 * shared mapping of a file ("r--s" in /proc/self/maps): such a mapping
 * holds no data of its own, only the page cache's pages, which stay there;
 * touching an address again faults in the file's current page. Anything
 * else (writable, private, anonymous, not found) is left alone. Meant for
 * LMDB maps (opened without MDB_WRITEMAP) that a long fold reads through
 * and would otherwise keep counted in its RSS. Returns true when it
 * dropped them.
 */
bool tly_os_release_file_map(const void *addr);

/* Gives the whole pages inside [addr, addr + len) of this process's own
 * memory (the heap, not a file's map) back to the system: they read as
 * zero bytes afterwards and count in the RSS only once written again. For
 * memory whose every byte there is zero or unused (free slots of a
 * vector); pages only partly inside are left alone. */
void tly_os_release_zero_pages(void *addr, size_t len);

/* Gives the whole free pages of the C library's heap back to the system
 * (glibc's malloc_trim: the free memory inside the heap too, not only at
 * its top). Freed memory otherwise stays counted in the RSS until malloc
 * hands it out again. It walks every free chunk, so it is for moments
 * after much was freed (a large commit), not for every call. No-op
 * without glibc. */
void tly_os_release_free_heap(void);

/* This process's resident anonymous memory in bytes: its RSS without the
 * pages of files it maps (/proc/self/statm, resident less shared). What a
 * consumer's batch holds in memory shows here; the view store's and the
 * log's mapped pages, which their releases bound, do not. False when it
 * cannot be read (no /proc). A read costs a few microseconds. */
bool tly_os_anon_resident(uint64_t *bytes);

/* True when path names the file open as fd (same device and inode): a lock
 * file a writer holds open and flocked is still the one at its path, so no
 * other writer can have locked the path since. Used on every commit: it
 * stats the lock file, never the data file (a stat of a file between two of
 * its fdatasyncs made each commit about 50 us slower on this machine). */
bool tly_os_same_file(const char *path, int fd);

/* Wall clock in Unix ms and a monotonic clock in ns. */
int64_t tly_now_ms(void);
uint64_t tly_mono_ns(void);

/* The time ms (>= 0) milliseconds from now on clock clk, as
 * pthread_cond_timedwait takes a deadline: CLOCK_REALTIME for a condition
 * variable made with default attributes, CLOCK_MONOTONIC for one whose
 * attributes name it. */
struct timespec tly_deadline_in(clockid_t clk, int ms);

#endif
