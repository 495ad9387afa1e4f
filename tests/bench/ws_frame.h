/* The websocket frame header (RFC 6455, 5.2) as the bench's C helpers read
 * it: ws_client the echoes, ws_echo the client's frames. */
#ifndef BENCH_WS_FRAME_H
#define BENCH_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* How many bytes the header has, once its first two are known. */
static inline size_t ws_header_size(const unsigned char *h)
{
        size_t len7 = h[1] & 0x7f;
        return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
}

/* A whole header's payload length; *mask_at is where its mask starts. */
static inline uint64_t ws_payload_length(const unsigned char *h, size_t *mask_at)
{
        size_t len7 = h[1] & 0x7f;
        uint64_t len = len7;

        *mask_at = 2;
        if (len7 == 126) {
                len = (uint64_t)h[2] << 8 | h[3];
                *mask_at = 4;
        } else if (len7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                        len = len << 8 | h[2 + i];
                *mask_at = 10;
        }
        return len;
}

#endif
