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
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base64url.h"
#include "common/seal.h"
#include "common/util.h"

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

/* The sealed form is common/seal.c's text, kept as the column's bytes. */
int ledger_seal(struct ledger *ledger, const char *aad, const char *text, uint8_t **ret, size_t *ret_len,
                struct error *err)
{
        char *sealed = NULL;
        int r = seal_text(ledger->seal_key, aad, text, &sealed, err);

        if (r < 0)
                return r;
        *ret = (uint8_t *)sealed;
        *ret_len = strlen(sealed);
        return 0;
}

int ledger_unseal(struct ledger *ledger, const char *aad, const uint8_t *blob, size_t len, char **ret_text,
                  struct error *err)
{
        char *sealed = strndup((const char *)blob, len);
        int r;

        if (!sealed)
                return error_set(err, -ENOMEM, "out of memory");
        r = unseal_text(ledger->seal_key, aad, sealed, ret_text, err);
        free(sealed);
        return r;
}
