/* Logging: one line per event on stderr, as key=value fields after a
 * quoted message, e.g.
 *   ts=2026-11-23T19:40:01.120Z level=info msg="control socket ready" path=/run/vpsd/control.sock
 * Control characters in a line are escaped, so bytes from outside can never
 * forge a second log line. Library code does not log; the caller that knows
 * the context does. Never pass a secret (password, key, ticket) to these. */
#pragma once

#include <stdbool.h>

enum log_level {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARN,
        LOG_LEVEL_ERROR,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);

/* "debug", "info", "warn", "error" -> level; -EINVAL for anything else. */
int log_level_parse(const char *name, enum log_level *ret_level);
const char *log_level_name(enum log_level level);

/* Fields are a printf format of space-separated key=value pairs (may be
 * empty). The whole line is written with one write(2), so lines from the
 * thread pool never interleave. */
void log_write(enum log_level level, const char *msg, const char *fields_fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_LEVEL_DEBUG, msg, "" __VA_ARGS__)
#define log_info(msg, ...) log_write(LOG_LEVEL_INFO, msg, "" __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_LEVEL_WARN, msg, "" __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_LEVEL_ERROR, msg, "" __VA_ARGS__)
