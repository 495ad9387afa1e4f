/* Root passwords of guests: generated, hashed for the seed, wiped. Nothing
 * here logs, and no message ever contains a password or a hash.
 *
 * Hashes are SHA-512-crypt ("$6$", 5000 rounds, 16-character salt), not
 * yescrypt ("$y$", the default of current Debian and Ubuntu): the hash goes
 * into a template's /etc/shadow, where the template's own crypt() must
 * understand it. glibc has read $6$ since 2.7 (2007) and every libxcrypt
 * does; busybox (the test guest, Alpine and other small images) reads $6$
 * but not $y$, and neither do the older releases a customer may still
 * install. A hash the template cannot read locks root out. The cost is a
 * cheaper hash to brute-force should the seed leak, which matters little for
 * a generated password (20 characters, ~115 bits) and is a reason to prefer
 * a generated password to a chosen one. */
#pragma once

#include <stddef.h>

#include "common/error.h"

#define SECRET_PASSWORD_LENGTH 20
#define SECRET_PASSWORD_SIZE (SECRET_PASSWORD_LENGTH + 1)
#define SECRET_SALT_LENGTH 16
#define SECRET_HASH_SIZE 128 /* "$6$" + salt + "$" + 86 characters = 106, + NUL */

/* A random password of SECRET_PASSWORD_LENGTH characters from an alphabet
 * without look-alikes (no 0/O/o, 1/l/I/i), for reading off a screen. */
int secret_password_generate(char ret_password[SECRET_PASSWORD_SIZE], struct error *err);

/* "$6$<16 random salt characters>$<hash>" of password. */
int secret_password_hash(const char *password, char ret_hash[SECRET_HASH_SIZE], struct error *err);

/* 0 when password matches hash, -EACCES when not, -EINVAL when hash is not
 * a crypt hash. Compares in constant time. */
int secret_password_verify(const char *password, const char *hash);

/* explicit_bzero(): not optimised away even right before a free(). */
void secret_wipe(void *p, size_t size);
