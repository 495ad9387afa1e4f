#include "ed25519.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct ed25519_key {
        EVP_PKEY *pkey;
        bool has_private;
};

/* The last libcrypto error in words, and its queue emptied. */
static const char *crypto_reason(char *buf, size_t size)
{
        unsigned long e = ERR_get_error();

        ERR_clear_error();
        if (!e)
                return "unknown error";
        ERR_error_string_n(e, buf, size);
        return buf;
}

static int key_wrap(EVP_PKEY *pkey, bool has_private, struct ed25519_key **ret_key, struct error *err)
{
        struct ed25519_key *key;

        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519) {
                EVP_PKEY_free(pkey);
                return error_set(err, -EINVAL, "not an Ed25519 key");
        }
        key = calloc(1, sizeof(*key));
        if (!key) {
                EVP_PKEY_free(pkey);
                return error_set(err, -ENOMEM, "out of memory");
        }
        key->pkey = pkey;
        key->has_private = has_private;
        *ret_key = key;
        return 0;
}

int ed25519_key_generate(struct ed25519_key **ret_key, struct error *err)
{
        EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        char why[256];

        if (!pkey)
                return error_set(err, -EIO, "generate an Ed25519 key: %s", crypto_reason(why, sizeof(why)));
        return key_wrap(pkey, true, ret_key, err);
}

static int key_load(const char *path, bool private, struct ed25519_key **ret_key, struct error *err)
{
        cleanup_fclose FILE *f = fopen(path, "re");
        EVP_PKEY *pkey;
        char why[256];
        int r;

        if (!f)
                return error_set_errno(err, -errno, "open `%s`", path);
        pkey = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
        if (!pkey)
                return error_set(err, -EINVAL, "`%s`: no PEM %s key: %s", path, private ? "private" : "public",
                                 crypto_reason(why, sizeof(why)));
        r = key_wrap(pkey, private, ret_key, err);
        if (r < 0)
                error_prefix(err, "`%s`", path);
        return r;
}

int ed25519_key_load_public(const char *path, struct ed25519_key **ret_key, struct error *err)
{
        return key_load(path, false, ret_key, err);
}

int ed25519_key_load_private(const char *path, struct ed25519_key **ret_key, struct error *err)
{
        return key_load(path, true, ret_key, err);
}

int ed25519_key_save_private(const struct ed25519_key *key, const char *path, struct error *err)
{
        cleanup_close int fd = -1;
        FILE *f;
        bool ok;

        if (!key->has_private)
                return error_set(err, -EINVAL, "`%s`: the key has no private half", path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set_errno(err, -errno, "create `%s`", path);
        f = fdopen(fd, "w");
        if (!f)
                return error_set_errno(err, -errno, "open `%s`", path);
        fd = -1;
        ok = PEM_write_PrivateKey(f, key->pkey, NULL, NULL, 0, NULL, NULL) == 1;
        ERR_clear_error();
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
                ok = false;
        if (fclose(f) != 0 || !ok) {
                unlink(path);
                return error_set(err, -EIO, "write `%s`", path);
        }
        return 0;
}

int ed25519_key_public_pem(const struct ed25519_key *key, char **ret_pem, struct error *err)
{
        BIO *bio = BIO_new(BIO_s_mem());
        char *data = NULL, *pem;
        long len;

        if (!bio)
                return error_set(err, -ENOMEM, "out of memory");
        if (PEM_write_bio_PUBKEY(bio, key->pkey) != 1) {
                BIO_free(bio);
                ERR_clear_error();
                return error_set(err, -EIO, "write the public key as PEM");
        }
        len = BIO_get_mem_data(bio, &data);
        pem = len > 0 ? strndup(data, (size_t)len) : NULL;
        BIO_free(bio);
        if (!pem)
                return error_set(err, -ENOMEM, "out of memory");
        *ret_pem = pem;
        return 0;
}

int ed25519_sign(const struct ed25519_key *key, const void *msg, size_t len, uint8_t sig[ED25519_SIGNATURE_SIZE],
                 struct error *err)
{
        EVP_MD_CTX *ctx;
        size_t sig_len = ED25519_SIGNATURE_SIZE;
        char why[256];
        int ok;

        if (!key->has_private)
                return error_set(err, -EINVAL, "sign: the key has no private half");
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return error_set(err, -ENOMEM, "out of memory");
        /* Ed25519 hashes inside: no digest is named. */
        ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &sig_len, msg, len) == 1 && sig_len == ED25519_SIGNATURE_SIZE;
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return error_set(err, -EIO, "sign: %s", crypto_reason(why, sizeof(why)));
        return 0;
}

bool ed25519_verify(const struct ed25519_key *key, const void *msg, size_t len,
                    const uint8_t sig[ED25519_SIGNATURE_SIZE])
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok;

        if (!ctx)
                return false;
        ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, ED25519_SIGNATURE_SIZE, msg, len) == 1;
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

int ed25519_key_public(const struct ed25519_key *key, uint8_t out[ED25519_PUBLIC_KEY_SIZE])
{
        size_t n = ED25519_PUBLIC_KEY_SIZE;

        if (EVP_PKEY_get_raw_public_key(key->pkey, out, &n) != 1 || n != ED25519_PUBLIC_KEY_SIZE) {
                ERR_clear_error();
                return -EIO;
        }
        return 0;
}

struct ed25519_key *ed25519_key_free(struct ed25519_key *key)
{
        if (!key)
                return NULL;
        EVP_PKEY_free(key->pkey);
        free(key);
        return NULL;
}
