/* base64url without padding (RFC 4648 §5): the alphabet of console tickets,
 * safe in a URL and a websocket query without escaping. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Characters needed for n bytes, without the terminating NUL. */
#define BASE64URL_ENCODED_LEN(n) (((n) * 4 + 2) / 3)

/* Writes the encoding of in[n] and a NUL to out[size]. -ENOBUFS when it
 * does not fit (out is then empty). */
int base64url_encode(const void *in, size_t n, char *out, size_t size);

/* Decodes text[len] into out[size]; returns the byte count, or -EINVAL for
 * a character outside the alphabet, padding, a length no encoding has, or
 * stray bits in the last character (each input has one encoding only),
 * -ENOBUFS when out is too small. */
int base64url_decode(const char *text, size_t len, uint8_t *out, size_t size);
