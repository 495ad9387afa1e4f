/* Small helpers every part of vpsd uses: cleanup attributes, string copies
 * that cannot overflow, and time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}
static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

#define cleanup_free __attribute__((cleanup(freep)))
#define cleanup_close __attribute__((cleanup(closep)))
#define cleanup_fclose __attribute__((cleanup(fclosep)))

/* Hand ownership out of a cleanup_* local: returns the value, leaves NULL. */
#define steal_pointer(pp) ({ __typeof__(*(pp)) _p = *(pp); *(pp) = NULL; _p; })
#define steal_fd(fdp) ({ int _fd = *(fdp); *(fdp) = -1; _fd; })

/* Copies src into dst[size], always terminated. Returns -ENAMETOOLONG (and
 * leaves dst empty) when src does not fit, so a truncated path is never used. */
int str_copy(char *dst, size_t size, const char *src);

/* Makes room for one more item in the malloc'd array *items_p (*cap items
 * of size bytes, n in use), doubling it as often as it takes (a byte
 * buffer may grow by many at once). -ENOMEM leaves it as it was. items_p
 * is the address of the array pointer (any item type). */
int array_reserve(void *items_p, size_t *cap, size_t n, size_t size);

/* Seconds since the epoch (wall clock) and a monotonic clock in ms. */
/* A service UUID as the node and the ledger write it: lower-case canonical,
 * 36 characters (8-4-4-4-12 hex digits). */
bool uuid_valid(const char *uuid);

int64_t time_now_wall(void);
uint64_t time_now_mono_ms(void);

/* "3d4h", "12m5s": a duration for people. */
void duration_format(char *buf, size_t size, int64_t seconds);
