/* The ledger's own keys, in files beside its database (mode 0600, made
 * once, never printed): PATH.ticket-key, the Ed25519 key console tickets
 * are signed with (its public half is what nodes configure as
 * ledger_public_key), and PATH.seal-key, 32 random bytes (base64url) that
 * seal the root passwords nodes report until they are handed out. The seal
 * key is not in the database so that a copy of the database alone does
 * not open what it seals. */
#include "ledger_private.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base64url.h"
#include "common/util.h"

#define SEAL_NONCE_SIZE 12
#define SEAL_TAG_SIZE 16
#define SEAL_TEXT_MAX 4096

static int key_path(char *out, size_t size, const char *db, const char *suffix, struct error *err)
{
        if ((size_t)snprintf(out, size, "%s.%s", db, suffix) >= size)
                return error_set(err, -ENAMETOOLONG, "`%s`: path too long", db);
        return 0;
}

static int ticket_key_open(struct ledger *ledger, const char *path, struct error *err)
{
        int r = ed25519_key_load_private(path, &ledger->ticket_key, err);

        if (r != -ENOENT)
                return r;
        r = ed25519_key_generate(&ledger->ticket_key, err);
        if (r == 0)
                r = ed25519_key_save_private(ledger->ticket_key, path, err);
        /* Another process made it first: that one is the key. */
        if (r == -EEXIST) {
                ledger->ticket_key = ed25519_key_free(ledger->ticket_key);
                r = ed25519_key_load_private(path, &ledger->ticket_key, err);
        }
        return r;
}

static int seal_key_read(struct ledger *ledger, const char *path, struct error *err)
{
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char text[64];
        ssize_t n;

        if (fd < 0)
                return error_set_errno(err, -errno, "open `%s`", path);
        n = read(fd, text, sizeof(text) - 1);
        if (n < 0)
                return error_set_errno(err, -errno, "read `%s`", path);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                n--;
        if (base64url_decode(text, (size_t)n, ledger->seal_key, sizeof(ledger->seal_key)) != LEDGER_SEAL_KEY_SIZE)
                return error_set(err, -EINVAL, "`%s`: not a base64url key of %d bytes", path,
                                 LEDGER_SEAL_KEY_SIZE);
        OPENSSL_cleanse(text, sizeof(text));
        return 0;
}

static int seal_key_open(struct ledger *ledger, const char *path, struct error *err)
{
        cleanup_close int fd = -1;
        char text[BASE64URL_ENCODED_LEN(LEDGER_SEAL_KEY_SIZE) + 2];
        size_t len;
        int r = seal_key_read(ledger, path, err);

        if (r != -ENOENT)
                return r;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
                return seal_key_read(ledger, path, err);
        if (fd < 0)
                return error_set_errno(err, -errno, "create `%s`", path);
        if (RAND_bytes(ledger->seal_key, LEDGER_SEAL_KEY_SIZE) != 1)
                return error_set(err, -EIO, "no random bytes for a key");
        base64url_encode(ledger->seal_key, LEDGER_SEAL_KEY_SIZE, text, sizeof(text));
        len = strlen(text);
        text[len++] = '\n';
        r = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -EIO;
        OPENSSL_cleanse(text, sizeof(text));
        if (r < 0) {
                unlink(path);
                return error_set(err, r, "write `%s`", path);
        }
        return 0;
}

int ledger_keys_open(struct ledger *ledger, const char *db, struct error *err)
{
        char path[4096];
        int r = key_path(path, sizeof(path), db, "ticket-key", err);

        if (r == 0)
                r = ticket_key_open(ledger, path, err);
        if (r == 0)
                r = key_path(path, sizeof(path), db, "seal-key", err);
        if (r == 0)
                r = seal_key_open(ledger, path, err);
        return r;
}

void ledger_keys_close(struct ledger *ledger)
{
        ledger->ticket_key = ed25519_key_free(ledger->ticket_key);
        OPENSSL_cleanse(ledger->seal_key, sizeof(ledger->seal_key));
}

/* One AES-256-GCM pass: encrypt (tag out) or decrypt (tag in). */
static int gcm(const uint8_t key[LEDGER_SEAL_KEY_SIZE], bool encrypt, const uint8_t nonce[SEAL_NONCE_SIZE],
               const char *aad, const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[SEAL_TAG_SIZE])
{
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n = 0, ok;

        if (!ctx)
                return -ENOMEM;
        ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, encrypt) == 1 &&
             EVP_CipherUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
             EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
        if (ok && !encrypt)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE, tag) == 1;
        ok = ok && EVP_CipherFinal_ex(ctx, out + n, &n) == 1;
        if (ok && encrypt)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, tag) == 1;
        EVP_CIPHER_CTX_free(ctx);
        return ok ? 0 : -EBADMSG;
}

int ledger_seal(struct ledger *ledger, const char *aad, const char *text, uint8_t **ret, size_t *ret_len,
                struct error *err)
{
        size_t len = strlen(text), total = SEAL_NONCE_SIZE + len + SEAL_TAG_SIZE;
        uint8_t *blob;

        if (len > SEAL_TEXT_MAX)
                return error_set(err, -E2BIG, "seal: more than %d bytes", SEAL_TEXT_MAX);
        blob = malloc(total);
        if (!blob)
                return error_set(err, -ENOMEM, "out of memory");
        if (RAND_bytes(blob, SEAL_NONCE_SIZE) != 1 ||
            gcm(ledger->seal_key, true, blob, aad, (const uint8_t *)text, len, blob + SEAL_NONCE_SIZE,
                blob + SEAL_NONCE_SIZE + len) < 0) {
                free(blob);
                return error_set(err, -EIO, "seal: AES-256-GCM failed");
        }
        *ret = blob;
        *ret_len = total;
        return 0;
}

int ledger_unseal(struct ledger *ledger, const char *aad, const uint8_t *blob, size_t len, char **ret_text,
                  struct error *err)
{
        uint8_t tag[SEAL_TAG_SIZE];
        size_t text_len;
        char *text;

        if (len < SEAL_NONCE_SIZE + SEAL_TAG_SIZE || len > SEAL_NONCE_SIZE + SEAL_TAG_SIZE + SEAL_TEXT_MAX)
                return error_set(err, -EBADMSG, "unseal: not a sealed value");
        text_len = len - SEAL_NONCE_SIZE - SEAL_TAG_SIZE;
        memcpy(tag, blob + len - SEAL_TAG_SIZE, SEAL_TAG_SIZE);
        text = calloc(1, text_len + 1);
        if (!text)
                return error_set(err, -ENOMEM, "out of memory");
        if (gcm(ledger->seal_key, false, blob, aad, blob + SEAL_NONCE_SIZE, text_len, (uint8_t *)text, tag) < 0) {
                OPENSSL_cleanse(text, text_len);
                free(text);
                return error_set(err, -EBADMSG, "unseal: the value does not open with this ledger's key");
        }
        *ret_text = text;
        return 0;
}
