#include "secret.h"

#include <crypt.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* No 0 O o, 1 l I i: 55 characters, ~5.8 bits each. */
static const char password_alphabet[] = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
/* crypt(5)'s salt alphabet: 64 characters, so a byte & 63 is uniform. */
static const char salt_alphabet[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void secret_wipe(void *p, size_t size)
{
        if (p)
                explicit_bzero(p, size);
}

/* getrandom() blocks only until the kernel's pool is first seeded (early
 * boot), never afterwards; short reads happen on signals. */
static int random_bytes(void *buf, size_t size, struct error *err)
{
        uint8_t *p = buf;

        while (size > 0) {
                ssize_t n = getrandom(p, size, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_set_errno(err, -errno, "getrandom");
                }
                p += n;
                size -= (size_t)n;
        }
        return 0;
}

int secret_password_generate(char ret_password[SECRET_PASSWORD_SIZE], struct error *err)
{
        const size_t n = sizeof(password_alphabet) - 1;
        /* Bytes at or above the largest multiple of n are dropped, so that
         * every character is equally likely. */
        const unsigned limit = 256 / n * n;
        char password[SECRET_PASSWORD_SIZE];
        uint8_t pool[64];
        size_t got = 0, used = sizeof(pool);
        int r;

        while (got < SECRET_PASSWORD_LENGTH) {
                if (used == sizeof(pool)) {
                        r = random_bytes(pool, sizeof(pool), err);
                        if (r < 0) {
                                secret_wipe(password, sizeof(password));
                                secret_wipe(pool, sizeof(pool));
                                return r;
                        }
                        used = 0;
                }
                if (pool[used] < limit)
                        password[got++] = password_alphabet[pool[used] % n];
                used++;
        }
        password[got] = '\0';
        memcpy(ret_password, password, sizeof(password));
        secret_wipe(password, sizeof(password));
        secret_wipe(pool, sizeof(pool));
        return 0;
}

int secret_password_hash(const char *password, char ret_hash[SECRET_HASH_SIZE], struct error *err)
{
        char setting[3 + SECRET_SALT_LENGTH + 1] = "$6$";
        uint8_t random[SECRET_SALT_LENGTH];
        struct crypt_data *data;
        const char *hash;
        size_t len;
        int r;

        r = random_bytes(random, sizeof(random), err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < SECRET_SALT_LENGTH; i++)
                setting[3 + i] = salt_alphabet[random[i] & 63];
        setting[3 + SECRET_SALT_LENGTH] = '\0';
        /* struct crypt_data is 32 KiB: not for the stack of a pool thread. */
        data = calloc(1, sizeof(*data));
        if (!data)
                return error_set(err, -ENOMEM, "out of memory");
        hash = crypt_r(password, setting, data);
        /* libxcrypt returns a string starting with '*' on failure. */
        if (!hash || hash[0] != '$' || (len = strlen(hash)) >= SECRET_HASH_SIZE) {
                secret_wipe(data, sizeof(*data));
                free(data);
                return error_set(err, -EINVAL, "hash the password: crypt() refused it");
        }
        memcpy(ret_hash, hash, len + 1);
        secret_wipe(data, sizeof(*data));
        free(data);
        return 0;
}

/* Whether a and b are equal, in a time that depends on their lengths only. */
static bool equal_constant_time(const char *a, const char *b)
{
        size_t na = strlen(a), nb = strlen(b);
        unsigned char diff = na != nb;

        for (size_t i = 0; i < na && i < nb; i++)
                diff |= (unsigned char)(a[i] ^ b[i]);
        return diff == 0;
}

int secret_password_verify(const char *password, const char *hash)
{
        struct crypt_data *data;
        const char *computed;
        int r;

        if (hash[0] != '$')
                return -EINVAL;
        data = calloc(1, sizeof(*data));
        if (!data)
                return -ENOMEM;
        computed = crypt_r(password, hash, data);
        if (!computed || computed[0] != '$')
                r = -EINVAL;
        else
                r = equal_constant_time(computed, hash) ? 0 : -EACCES;
        secret_wipe(data, sizeof(*data));
        free(data);
        return r;
}
