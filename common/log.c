#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {
        [LOG_LEVEL_DEBUG] = "debug",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_WARN] = "warn",
        [LOG_LEVEL_ERROR] = "error",
};

/* Read from the thread pool, written only on the loop (config reload): a
 * torn read of an int is impossible on the platforms we run on. */
static volatile enum log_level current_level = LOG_LEVEL_INFO;

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }
bool log_enabled(enum log_level level) { return level >= current_level; }

int log_level_parse(const char *name, enum log_level *ret_level)
{
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
                if (strcmp(name, level_names[i]) == 0) {
                        *ret_level = (enum log_level)i;
                        return 0;
                }
        return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
        if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
                return "?";
        return level_names[level];
}

/* Appends src to out[*len], escaping control characters; in a quoted
 * message also '"' and '\'. Stops silently when out is full. */
static void append_escaped(char *out, size_t size, size_t *len, const char *src, bool quoted)
{
        for (const unsigned char *p = (const unsigned char *)src; *p && *len + 5 < size; p++) {
                if (*p < 0x20 || *p == 0x7f)
                        *len += (size_t)snprintf(out + *len, size - *len, "\\x%02x", *p);
                else if (quoted && (*p == '"' || *p == '\\')) {
                        out[(*len)++] = '\\';
                        out[(*len)++] = (char)*p;
                } else
                        out[(*len)++] = (char)*p;
        }
        out[*len] = '\0';
}

void log_write(enum log_level level, const char *msg, const char *fields_fmt, ...)
{
        char line[4096], fields[3072], stamp[32];
        struct timespec ts;
        struct tm tm;
        size_t len;
        va_list ap;
        int saved_errno = errno;

        if (!log_enabled(level))
                return;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        len = (size_t)snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s msg=\"", stamp,
                               ts.tv_nsec / 1000000, log_level_name(level));
        append_escaped(line, sizeof(line) - 2, &len, msg, true);
        line[len++] = '"';
        line[len] = '\0';

        va_start(ap, fields_fmt);
        vsnprintf(fields, sizeof(fields), fields_fmt, ap);
        va_end(ap);
        if (fields[0]) {
                line[len++] = ' ';
                line[len] = '\0';
                append_escaped(line, sizeof(line) - 1, &len, fields, false);
        }
        line[len++] = '\n';

        /* One write: lines from several threads never interleave. A failed
         * write to stderr has nowhere to be reported. */
        ssize_t r = write(STDERR_FILENO, line, len);
        (void)r;
        errno = saved_errno;
}
