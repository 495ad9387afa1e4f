#include "seal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64url.h"

#define NONCE_SIZE 12
#define TAG_SIZE 16

/* One AES-256-GCM pass; out has room for len bytes. */
static int gcm(bool encrypt, const uint8_t key[SEAL_KEY_SIZE], const uint8_t nonce[NONCE_SIZE], const char *label,
               const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[TAG_SIZE])
{
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n = 0, ok;

        if (!ctx)
                return -ENOMEM;
        ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, encrypt) == 1 &&
             EVP_CipherUpdate(ctx, NULL, &n, (const uint8_t *)label, (int)strlen(label)) == 1 &&
             EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
        if (ok && !encrypt)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_SIZE, tag) == 1;
        if (ok)
                ok = EVP_CipherFinal_ex(ctx, out + n, &n) == 1;
        if (ok && encrypt)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, tag) == 1;
        EVP_CIPHER_CTX_free(ctx);
        return ok ? 0 : -EBADMSG;
}

int seal_text(const uint8_t key[SEAL_KEY_SIZE], const char *label, const char *plain, char **ret_sealed,
              struct error *err)
{
        size_t len = strlen(plain), raw_len = NONCE_SIZE + len + TAG_SIZE;
        uint8_t raw[NONCE_SIZE + SEAL_PLAIN_MAX + TAG_SIZE];
        char *text;

        if (len > SEAL_PLAIN_MAX)
                return error_set(err, -E2BIG, "seal: more than %d bytes", SEAL_PLAIN_MAX);
        if (RAND_bytes(raw, NONCE_SIZE) != 1)
                return error_set(err, -EIO, "seal: no random bytes");
        if (gcm(true, key, raw, label, (const uint8_t *)plain, len, raw + NONCE_SIZE, raw + NONCE_SIZE + len) < 0)
                return error_set(err, -EIO, "seal: AES-256-GCM failed");
        text = malloc(BASE64URL_ENCODED_LEN(raw_len) + 1);
        if (!text)
                return error_set(err, -ENOMEM, "out of memory");
        base64url_encode(raw, raw_len, text, BASE64URL_ENCODED_LEN(raw_len) + 1);
        OPENSSL_cleanse(raw, sizeof(raw));
        *ret_sealed = text;
        return 0;
}

int unseal_text(const uint8_t key[SEAL_KEY_SIZE], const char *label, const char *sealed, char **ret_plain,
                struct error *err)
{
        uint8_t raw[NONCE_SIZE + SEAL_PLAIN_MAX + TAG_SIZE];
        char *plain;
        int n = base64url_decode(sealed, strlen(sealed), raw, sizeof(raw));
        size_t len;

        if (n < NONCE_SIZE + TAG_SIZE)
                return error_set(err, -EBADMSG, "unseal: not a sealed text");
        len = (size_t)n - NONCE_SIZE - TAG_SIZE;
        plain = malloc(len + 1);
        if (!plain)
                return error_set(err, -ENOMEM, "out of memory");
        if (gcm(false, key, raw, label, raw + NONCE_SIZE, len, (uint8_t *)plain, raw + NONCE_SIZE + len) < 0) {
                OPENSSL_cleanse(plain, len);
                free(plain);
                return error_set(err, -EBADMSG, "unseal: wrong key, label or bytes");
        }
        plain[len] = '\0';
        OPENSSL_cleanse(raw, sizeof(raw));
        *ret_plain = plain;
        return 0;
}
