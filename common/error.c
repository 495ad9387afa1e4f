#include "error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void error_vset(struct error *err, int code, bool with_errno, const char *fmt, va_list ap)
{
        size_t n;

        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        if (with_errno) {
                n = strlen(err->msg);
                snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(-code));
        }
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return code;
        va_start(ap, fmt);
        error_vset(err, code, false, fmt, ap);
        va_end(ap);
        return code;
}

int error_set_errno(struct error *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return code;
        va_start(ap, fmt);
        error_vset(err, code, true, fmt, ap);
        va_end(ap);
        return code;
}

int error_prefix(struct error *err, const char *fmt, ...)
{
        char prefix[256], old[sizeof(err->msg)];
        va_list ap;

        if (!err)
                return 0;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof(old));
        snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
        return err->code;
}

void error_clear(struct error *err)
{
        if (!err)
                return;
        err->code = 0;
        err->msg[0] = '\0';
}
