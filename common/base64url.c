#include "base64url.h"

#include <errno.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int base64url_encode(const void *in, size_t n, char *out, size_t size)
{
        const uint8_t *p = in;
        size_t o = 0;

        if (size == 0 || BASE64URL_ENCODED_LEN(n) >= size) {
                if (size)
                        out[0] = '\0';
                return -ENOBUFS;
        }
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)p[i + 1] << 8;
                if (i + 2 < n)
                        v |= p[i + 2];
                out[o++] = alphabet[(v >> 18) & 63];
                out[o++] = alphabet[(v >> 12) & 63];
                if (i + 1 < n)
                        out[o++] = alphabet[(v >> 6) & 63];
                if (i + 2 < n)
                        out[o++] = alphabet[v & 63];
        }
        out[o] = '\0';
        return 0;
}

static int value_of(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

int base64url_decode(const char *text, size_t len, uint8_t *out, size_t size)
{
        size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0), o = 0;
        uint32_t acc = 0;
        unsigned bits = 0;

        if (len % 4 == 1)
                return -EINVAL;
        if (n > size)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++) {
                int v = value_of(text[i]);
                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* The bits left over must be zero: one encoding per input. */
        if (acc != 0)
                return -EINVAL;
        return (int)o;
}
