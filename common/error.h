/* The error object fallible functions fill (after crun): the function
 * returns a negative errno, and the message names the object it failed on,
 * e.g. "open `/var/lib/vpsd/vpsd.db`: Permission denied". The caller that
 * knows the context decides whether to log it, show it or wrap it. */
#pragma once

#include <stddef.h>

struct error {
        int code;       /* negative errno, 0 when no error was set */
        char msg[512];
};

/* Sets the error and returns code (negative), so that callers can write
 * `return error_set(err, -EINVAL, "key `%s`: not a number", key);`.
 * err may be NULL. */
int error_set(struct error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Same, with ": <strerror(-code)>" appended. */
int error_set_errno(struct error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Puts "prefix: " in front of the message already set. Returns err->code. */
int error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void error_clear(struct error *err);
