/*
 * tly_assert.h — assertions that stay on in release builds.
 *
 * TLY_ASSERT is for programmer errors only: a broken invariant of the log or
 * of the engine must stop the process before it stores anything. Bad
 * network, disk or user input is an error return, never an assertion.
 * Unlike assert() it does not depend on NDEBUG.
 */
#ifndef TLY_ASSERT_H
#define TLY_ASSERT_H

/* Prints "tally: <file>:<line>: assertion failed: <cond>" on stderr and
 * aborts. Never returns. */
_Noreturn void tly__panic(const char *cond, const char *file, int line);

#define TLY_ASSERT(cond) ((cond) ? (void)0 : tly__panic(#cond, __FILE__, __LINE__))

#endif
