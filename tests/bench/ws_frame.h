/* The websocket frame header (RFC 6455, 5.2) as the bench's C helpers read
 * it: ws_client the echoes, ws_echo the client's frames. */
#ifndef BENCH_WS_FRAME_H
#define BENCH_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* A streaming reader's state: the header being gathered, then the frame
 * it describes while its payload goes by. */
struct ws_rx {
        unsigned char header[14];
        size_t header_len;
        int opcode;
        uint64_t payload_left;
        unsigned char mask[4]; /* all zero for an unmasked (server's) frame */
        unsigned mask_at;      /* payload bytes unmasked so far */
};

/* Takes one header byte; true once the header is whole and r describes
 * its frame. */
static inline bool ws_rx_header_byte(struct ws_rx *r, unsigned char byte)
{
        size_t mask_at;

        r->header[r->header_len++] = byte;
        if (r->header_len < 2 || r->header_len < ws_header_size(r->header))
                return false;
        r->payload_left = ws_payload_length(r->header, &mask_at);
        memset(r->mask, 0, sizeof(r->mask));
        if (r->header[1] & 0x80)
                memcpy(r->mask, r->header + mask_at, 4);
        r->mask_at = 0;
        r->opcode = r->header[0] & 0x0f;
        r->header_len = 0;
        return true;
}

#endif
