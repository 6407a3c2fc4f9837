/*
 * A minimal TAP producer for the C unit tests, read by automake's
 * tap-driver.sh. Tests count as they go and print the plan at the end.
 */
#ifndef DRAFTER_TAP_H
#define DRAFTER_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
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

#define is_int(got, want, ...)                                                  \
	do {                                                                    \
		long long _g = (long long)(got), _w = (long long)(want);        \
		if (!ok(_g == _w, __VA_ARGS__))                                 \
			printf("#   got %lld, want %lld\n", _g, _w);            \
	} while (0)

#define is_str(got, want, ...)                                                  \
	do {                                                                    \
		const char *_g = (got), *_w = (want);                           \
		if (!ok(_g && _w && strcmp(_g, _w) == 0, __VA_ARGS__))          \
			printf("#   got '%s', want '%s'\n", _g ? _g : "(null)", \
			       _w ? _w : "(null)");                             \
	} while (0)

#define skip(reason) \
	do { printf("ok %d # SKIP %s\n", ++tap_n, reason); fflush(stdout); } while (0)

#define diag(...) \
	do { printf("# "); printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
