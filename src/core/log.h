/*
 * Logging: every message the user sees goes through here, to stderr, as
 * "drafter: message" lines (or JSON lines with log_set_json). Core modules log
 * only at debug level; commands print the one error line of a failure.
 */
#ifndef DRAFTER_LOG_H
#define DRAFTER_LOG_H

#include <stdbool.h>

#include "core/util.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_level_from_string(const char *s, enum log_level *out);
void log_set_json(bool json);
/* The program name printed before messages ("drafter" by default). */
void log_set_prog(const char *prog);
const char *log_prog(void);

void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/*
 * Log at error level with errno set from the -errno value R, so "%m" prints
 * its text; returns R so that "return log_error_errno(r, ...)" reads well.
 */
#define log_error_errno(r, ...)                   \
	({                                        \
		int _r_ = (r);                    \
		errno = _r_ < 0 ? -_r_ : _r_;     \
		log_msg(LOG_LVL_ERROR, __VA_ARGS__); \
		_r_ < 0 ? _r_ : -_r_;             \
	})

#endif
