/*
 * Small helpers shared by every module: scope-bound cleanup of resources,
 * ownership hand-off, checked number parsing and a few string utilities.
 */
#ifndef DRAFTER_UTIL_H
#define DRAFTER_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		(void)close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		(void)fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Define a cleanup function for a pointer type freed by FUNC(ptr). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)        \
	static inline void func##p(type *p)            \
	{                                              \
		if (*p)                                \
			func(*p);                      \
	}

/* Hand ownership on: return the value and leave the variable empty. */
#define TAKE_PTR(p)                               \
	({                                        \
		__typeof__(p) _p_ = (p);          \
		(p) = NULL;                       \
		_p_;                              \
	})
#define TAKE_FD(fd)                     \
	({                              \
		int _fd_ = (fd);        \
		(fd) = -EBADF;          \
		_fd_;                   \
	})

/* Checked parsers: 0 on success, -EINVAL on junk, -ERANGE when out of range. */
int parse_u64(const char *s, uint64_t *out);
int parse_i64(const char *s, int64_t *out);
int parse_u32(const char *s, uint32_t *out);
int parse_bool(const char *s, bool *out);
/* "500ms", "1m0s", "1h2m3.5s", "250" (nanoseconds when no unit) → nanoseconds. */
int parse_duration_ns(const char *s, uint64_t *out);
/* "64KiB", "1MiB", "4096", "2G" → bytes. */
int parse_size(const char *s, uint64_t *out);
/* Format nanoseconds the way Go's time.Duration prints them ("1m0s", "500ms"). */
void format_duration(uint64_t ns, char *buf, size_t len);
/* "1.5 GiB" style, for progress and reports. */
void format_bytes(uint64_t bytes, char *buf, size_t len);

bool str_empty(const char *s);
bool str_eq(const char *a, const char *b);
bool str_startswith(const char *s, const char *prefix);
/* Whether LEN bytes at BUF are all zero. */
bool mem_is_zero(const void *buf, size_t len);
/* strdup that aborts on out-of-memory; NULL stays NULL. */
char *xstrdup(const char *s);
void *xcalloc(size_t n, size_t size);
/* asprintf that aborts on out-of-memory. */
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xvasprintf(const char *fmt, va_list ap) _printf_(1, 0);
void *xreallocarray(void *p, size_t n, size_t size);

/* Create every missing parent directory of PATH (mode 0755). */
int mkdir_parents(const char *path);
/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* CLOCK_REALTIME in ns: for times compared with other processes' (QEMU's events, logs). */
uint64_t realtime_ns(void);
/* Name the calling thread (what ps -L, top -H and perf show), best effort: 15 bytes at most. */
void thread_name(const char *name);
/* The signals that ask a drafter command to stop: SIGINT, SIGTERM and SIGHUP, as MASK. */
void stop_signals(sigset_t *mask);
/* LEN bytes from the kernel's random source (ids, nonces): 0 or -errno. */
int random_bytes(void *buf, size_t len);
/*
 * Lower the calling thread's scheduling priority to nice value NICE (Linux
 * keeps one per thread; threads it creates afterwards inherit it). Nothing
 * happens when it is already that low. 0 or -errno.
 */
int thread_lower_priority(int nice);
/*
 * Move every thread of process PID to SCHED_IDLE: it then runs only on a
 * core nothing else wants. The number of threads moved, or -errno when PID's
 * threads cannot be listed.
 */
int process_to_idle(pid_t pid);
/*
 * The next data range of file FD at or after POS and before END:
 * [*DATA, *HOLE), with *HOLE at most END. 1 when there is one, 0 when only a
 * hole is left before END, -errno. A file system without SEEK_DATA has no
 * holes: everything from POS to END is data.
 */
int next_data(int fd, uint64_t pos, uint64_t end, uint64_t *data, uint64_t *hole);

#endif
