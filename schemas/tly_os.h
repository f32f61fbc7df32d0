/*
 * tly_os.h — the operating-system edge every room may use: directories,
 * clocks, and the lines a process writes on stderr (error lines and a
 * progress line on a terminal). No command-line parsing here (tly_cli.h).
 */
#ifndef TLY_OS_H
#define TLY_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Prints "tally <cmd>: <message>" on stderr (printf-style). */
void tly_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when stderr is a terminal: progress lines are shown only then. */
bool tly_progress_enabled(void);

/* Redraws a one-line progress report on stderr ("\r<label> done/total ...")
 * at most every 100 ms; total 0 means unknown. No-op off a terminal. */
void tly_progress(const char *label, uint64_t done, uint64_t total);

/* Ends a progress line (prints a newline when one was drawn). */
void tly_progress_end(void);

/* Wall clock in Unix ms and a monotonic clock in ns. */
int64_t tly_now_ms(void);
uint64_t tly_mono_ns(void);

#endif
