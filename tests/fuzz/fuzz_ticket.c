/* libFuzzer target: ticket_verify() on arbitrary bytes, with the bytes also
 * taken as a payload and signed, so that the parser behind the signature
 * check is reached too. An accepted ticket must sign again to the same
 * text (one encoding per ticket); a refusal says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64url.h"
#include "common/ticket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ed25519_key *key;

static void check(const char *text, size_t len)
{
        struct ticket t = { 0 };
        struct error err = { 0 };
        char again[EDGE_TICKET_MAX + 1];
        int r = ticket_verify(text, len, &key, 1, 1800000000, &t, &err);

        if (r < 0) {
                if (err.code != r || err.msg[0] == '\0')
                        abort();
                return;
        }
        if (ticket_sign(&t, key, again, sizeof(again), &err) < 0 || strlen(again) != len ||
            memcmp(again, text, len) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char text[EDGE_TICKET_MAX * 2 + 2];
        uint8_t sig[ED25519_SIGNATURE_SIZE];
        size_t n;

        if (!key && ed25519_key_generate(&key, NULL) < 0)
                abort();
        check((const char *)data, size);
        if (size > 500)
                return 0;
        if (ed25519_sign(key, data, size, sig, NULL) < 0 || base64url_encode(data, size, text, sizeof(text)) < 0)
                abort();
        n = strlen(text);
        text[n++] = '.';
        if (base64url_encode(sig, sizeof(sig), text + n, sizeof(text) - n) < 0)
                abort();
        check(text, strlen(text));
        return 0;
}
