/*
 * The log module: level filtering, plain or JSON-lines output on stderr.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

static enum log_level max_level = LOG_LVL_INFO;
static bool use_json;
static const char *prog = "drafter";

void log_set_level(enum log_level level)
{
	max_level = level;
}

enum log_level log_get_level(void)
{
	return max_level;
}

int log_level_from_string(const char *s, enum log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (str_eq(s, names[i]))
			return *out = (enum log_level)i, 0;
	return -EINVAL;
}

void log_set_json(bool json)
{
	use_json = json;
}

void log_set_prog(const char *name)
{
	prog = name;
}

const char *log_prog(void)
{
	return prog;
}

static void json_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char buf[4096];
	int saved = errno;
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	errno = saved;
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (use_json) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		fprintf(stderr, "{\"time\":%lld.%03ld,\"level\":\"%s\",\"msg\":\"",
			(long long)ts.tv_sec, ts.tv_nsec / 1000000, names[level]);
		json_escape(stderr, buf);
		fputs("\"}\n", stderr);
	} else if (level == LOG_LVL_WARN) {
		fprintf(stderr, "%s: warning: %s\n", prog, buf);
	} else {
		fprintf(stderr, "%s: %s\n", prog, buf);
	}
	errno = saved;
}
