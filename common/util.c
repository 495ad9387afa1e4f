#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <time.h>

int str_copy(char *dst, size_t size, const char *src)
{
        size_t n = strlen(src);

        if (n >= size) {
                if (size > 0)
                        dst[0] = '\0';
                return -ENAMETOOLONG;
        }
        memcpy(dst, src, n + 1);
        return 0;
}

int array_reserve(void *items_p, size_t *cap, size_t n, size_t size)
{
        void **items = items_p;
        size_t grown_cap;
        void *grown;

        if (n < *cap)
                return 0;
        grown_cap = *cap ? *cap * 2 : 16;
        while (grown_cap <= n && grown_cap <= SIZE_MAX / 2)
                grown_cap *= 2;
        if (grown_cap <= n || grown_cap > SIZE_MAX / size)
                return -ENOMEM;
        grown = realloc(*items, grown_cap * size);
        if (!grown)
                return -ENOMEM;
        *items = grown;
        *cap = grown_cap;
        return 0;
}

int64_t time_now_wall(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return ts.tv_sec;
}

uint64_t time_now_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void duration_format(char *buf, size_t size, int64_t seconds)
{
        int64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;

        if (seconds < 0)
                snprintf(buf, size, "-");
        else if (d > 0)
                snprintf(buf, size, "%" PRId64 "d%" PRId64 "h", d, h);
        else if (h > 0)
                snprintf(buf, size, "%" PRId64 "h%" PRId64 "m", h, m);
        else if (m > 0)
                snprintf(buf, size, "%" PRId64 "m%" PRId64 "s", m, s);
        else
                snprintf(buf, size, "%" PRId64 "s", s);
}

bool uuid_valid(const char *uuid)
{
        if (strlen(uuid) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                char c = uuid[i];
                if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
        }
        return true;
}
