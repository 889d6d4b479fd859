/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Minimal TAP producer for unit tests (meson `protocol: 'tap'`). Each check prints one
 * "ok N - name" / "not ok N - name" line; tap_done() prints the plan and returns the exit code.
 */
#ifndef MESHMASK_TAP_H
#define MESHMASK_TAP_H

#include <stdio.h>
#include <string.h>
#include <stdarg.h>
#include <stddef.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                                     \
	do {                                                                                       \
		long long g_ = (long long)(got), w_ = (long long)(want);                           \
		if (!ok(g_ == w_, __VA_ARGS__))                                                    \
			printf("#   got %lld, want %lld\n", g_, w_);                               \
	} while (0)

#define is_str(got, want, ...)                                                                     \
	do {                                                                                       \
		const char *g_ = (got), *w_ = (want);                                              \
		int eq_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_;                             \
		if (!ok(eq_, __VA_ARGS__))                                                         \
			printf("#   got  \"%s\"\n#   want \"%s\"\n", g_ ? g_ : "(null)",            \
			       w_ ? w_ : "(null)");                                                \
	} while (0)

/* Compare a byte span with a NUL-terminated expectation. */
#define is_mem(got, got_len, want, ...)                                                            \
	do {                                                                                       \
		const char *g_ = (got), *w_ = (want);                                              \
		size_t gl_ = (got_len), wl_ = strlen(w_);                                          \
		if (!ok(gl_ == wl_ && memcmp(g_, w_, wl_) == 0, __VA_ARGS__))                      \
			printf("#   got  \"%.*s\"\n#   want \"%s\"\n", (int)gl_, g_, w_);           \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
