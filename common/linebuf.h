/* A bounded buffer that splits a byte stream into newline-terminated
 * lines: the framing of the control protocol. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct linebuf {
        char *data;
        size_t len;   /* bytes held */
        size_t start; /* where the next line begins */
        size_t tail;  /* where the unterminated last line begins */
        size_t max;   /* longest line accepted, without its '\n' */
};

void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_free(struct linebuf *lb);

/* Appends bytes. -E2BIG when the line being assembled would exceed max
 * (the stream cannot be resynchronised: drop the connection), -ENOMEM. */
int linebuf_append(struct linebuf *lb, const char *bytes, size_t n);

/* Takes the next complete line: *ret_line points into the buffer, valid
 * until the next append; the '\n' is replaced by a NUL. Returns true if
 * there was one. */
bool linebuf_next(struct linebuf *lb, char **ret_line, size_t *ret_len);

/* Bytes held that no linebuf_next() has returned yet. */
size_t linebuf_pending(const struct linebuf *lb);
