/*
 * Implementation of the shared helpers declared in util.h: number, duration
 * and size parsing with full error checking, and small allocation wrappers.
 */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "core/util.h"

int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	int r = parse_u64(s, &v);

	if (r < 0)
		return r;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	/* The spellings Go's strconv.ParseBool accepts. */
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (strcmp(s, yes[i]) == 0)
			return *out = true, 0;
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (strcmp(s, no[i]) == 0)
			return *out = false, 0;
	return -EINVAL;
}

static const struct {
	const char *name;
	uint64_t ns;
} duration_units[] = {
	{ "ns", 1ULL },
	{ "us", 1000ULL },
	{ "µs", 1000ULL },
	{ "ms", 1000000ULL },
	{ "s", 1000000000ULL },
	{ "m", 60000000000ULL },
	{ "h", 3600000000000ULL },
};

int parse_duration_ns(const char *s, uint64_t *out)
{
	long double total = 0;

	if (!s || !*s)
		return -EINVAL;
	if (strcmp(s, "0") == 0)
		return *out = 0, 0;
	/* A bare integer is nanoseconds, as in the original's JSON. */
	if (parse_u64(s, out) == 0)
		return 0;
	while (*s) {
		char *end;
		long double v;
		size_t best = 0, best_len = 0;

		if (!isdigit((unsigned char)*s) && *s != '.')
			return -EINVAL;
		errno = 0;
		v = strtold(s, &end);
		if (errno || end == s)
			return -EINVAL;
		s = end;
		for (size_t i = 0; i < ARRAY_SIZE(duration_units); i++) {
			size_t n = strlen(duration_units[i].name);
			if (strncmp(s, duration_units[i].name, n) == 0 && n > best_len)
				best = i, best_len = n;
		}
		if (!best_len)
			return -EINVAL;
		s += best_len;
		total += v * (long double)duration_units[best].ns;
	}
	if (total > (long double)UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)llroundl(total);
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{ "", 1ULL },
		{ "B", 1ULL },
		{ "K", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "k", 1ULL << 10 },
		{ "KB", 1000ULL },
		{ "M", 1ULL << 20 }, { "MiB", 1ULL << 20 }, { "MB", 1000000ULL },
		{ "G", 1ULL << 30 }, { "GiB", 1ULL << 30 }, { "GB", 1000000000ULL },
		{ "T", 1ULL << 40 }, { "TiB", 1ULL << 40 }, { "TB", 1000000000000ULL },
	};
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v > UINT64_MAX / units[i].mult)
				return -ERANGE;
			*out = v * units[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

void format_duration(uint64_t ns, char *buf, size_t len)
{
	uint64_t h, m, s, frac;

	if (ns == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	if (ns < 1000ULL) {
		snprintf(buf, len, "%" PRIu64 "ns", ns);
		return;
	}
	if (ns < 1000000ULL) {
		snprintf(buf, len, "%g" "us", (double)ns / 1e3);
		return;
	}
	if (ns < 1000000000ULL) {
		snprintf(buf, len, "%g" "ms", (double)ns / 1e6);
		return;
	}
	h = ns / 3600000000000ULL;
	m = ns / 60000000000ULL % 60;
	s = ns / 1000000000ULL % 60;
	frac = ns % 1000000000ULL;
	char sec[48];
	if (frac) {
		snprintf(sec, sizeof sec, "%" PRIu64 ".%09" PRIu64, s, frac);
		/* trim trailing zeros of the fraction */
		char *e = sec + strlen(sec) - 1;
		while (*e == '0')
			*e-- = '\0';
	} else {
		snprintf(sec, sizeof sec, "%" PRIu64, s);
	}
	if (h)
		snprintf(buf, len, "%" PRIu64 "h%" PRIu64 "m%ss", h, m, sec);
	else if (m)
		snprintf(buf, len, "%" PRIu64 "m%ss", m, sec);
	else
		snprintf(buf, len, "%ss", sec);
}

void format_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t i = 0;

	while (v >= 1024 && i + 1 < ARRAY_SIZE(unit))
		v /= 1024, i++;
	if (i == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[i]);
}

bool str_empty(const char *s)
{
	return !s || !*s;
}

bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

bool str_startswith(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool mem_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	static const uint8_t zero[64];

	/* the first 64 bytes against zeros, then the rest against itself shifted */
	if (len <= 64)
		return memcmp(p, zero, len) == 0;
	return memcmp(p, zero, 64) == 0 && memcmp(p, p + 64, len - 64) == 0;
}

static void oom(void)
{
	fputs("drafter: out of memory\n", stderr);
	abort();
}

char *xstrdup(const char *s)
{
	char *r;

	if (!s)
		return NULL;
	r = strdup(s);
	if (!r)
		oom();
	return r;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom();
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0)
		oom();
	return s;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
	void *r = reallocarray(p, n ? n : 1, size ? size : 1);

	if (!r)
		oom();
	return r;
}

int mkdir_parents(const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);

	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void thread_name(const char *name)
{
	(void)pthread_setname_np(pthread_self(), name);
}

int random_bytes(void *buf, size_t len)
{
	size_t got = 0;

	/* Large requests may come back short, and a signal can interrupt the wait for entropy at boot. */
	while (got < len) {
		ssize_t n = getrandom((char *)buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

void stop_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGHUP);
}

int thread_lower_priority(int nice)
{
	id_t tid = (id_t)syscall(SYS_gettid);
	int now;

	errno = 0;
	now = getpriority(PRIO_PROCESS, tid);
	if (now == -1 && errno)
		return -errno;
	if (now >= nice)
		return 0;
	return setpriority(PRIO_PROCESS, tid, nice) < 0 ? -errno : 0;
}

int process_to_idle(pid_t pid)
{
	struct sched_param idle = { 0 };
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long tid = strtol(e->d_name, &end, 10);
		/* a thread that exited meanwhile is no error */
		if (*end == 0 && tid > 0 && sched_setscheduler((pid_t)tid, SCHED_IDLE, &idle) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int next_data(int fd, uint64_t pos, uint64_t end, uint64_t *data, uint64_t *hole)
{
	if (pos >= end)
		return 0;
	off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO)
			return 0;
		if (errno != EINVAL && errno != EOPNOTSUPP)
			return -errno;
		*data = pos, *hole = end;
		return 1;
	}
	if ((uint64_t)d >= end)
		return 0;
	off_t h = lseek(fd, d, SEEK_HOLE);
	*data = (uint64_t)d;
	*hole = h < 0 || (uint64_t)h > end ? end : (uint64_t)h;
	return 1;
}
