#include "linebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void linebuf_init(struct linebuf *lb, size_t max)
{
        memset(lb, 0, sizeof(*lb));
        lb->max = max;
}

void linebuf_free(struct linebuf *lb)
{
        free(lb->data);
        memset(lb, 0, sizeof(*lb));
}

size_t linebuf_pending(const struct linebuf *lb) { return lb->len - lb->start; }

int linebuf_append(struct linebuf *lb, const char *bytes, size_t n)
{
        size_t tail = lb->len - lb->tail; /* length of the unterminated line so far */
        char *p;

        /* Check every line before keeping a byte, so a refused append
         * changes nothing. */
        for (size_t i = 0; i < n; i++) {
                if (bytes[i] == '\n')
                        tail = 0;
                else if (++tail > lb->max)
                        return -E2BIG;
        }
        /* Drop what was consumed: the buffer holds only pending bytes. */
        if (lb->start > 0) {
                memmove(lb->data, lb->data + lb->start, lb->len - lb->start);
                lb->len -= lb->start;
                lb->start = 0;
        }
        p = realloc(lb->data, lb->len + n + 1);
        if (!p)
                return -ENOMEM;
        lb->data = p;
        memcpy(lb->data + lb->len, bytes, n);
        lb->len += n;
        lb->data[lb->len] = '\0';
        lb->tail = lb->len - tail;
        return 0;
}

bool linebuf_next(struct linebuf *lb, char **ret_line, size_t *ret_len)
{
        char *begin = lb->data + lb->start;
        char *nl;

        if (lb->start >= lb->len)
                return false;
        nl = memchr(begin, '\n', lb->len - lb->start);
        if (!nl)
                return false;
        *nl = '\0';
        *ret_line = begin;
        *ret_len = (size_t)(nl - begin);
        lb->start += *ret_len + 1;
        return true;
}
