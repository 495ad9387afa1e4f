/* Ed25519 keys and signatures through OpenSSL's libcrypto: what console
 * tickets are signed with. A key holds a public half and, when this
 * process made it, a private half. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define ED25519_SIGNATURE_SIZE 64
#define ED25519_PUBLIC_KEY_SIZE 32

struct ed25519_key;

/* A fresh key pair from the system's random source. */
int ed25519_key_generate(struct ed25519_key **ret_key, struct error *err);

/* A public key from a PEM file ("-----BEGIN PUBLIC KEY-----", SPKI): -EINVAL
 * when the file holds anything but an Ed25519 public key. */
int ed25519_key_load_public(const char *path, struct ed25519_key **ret_key, struct error *err);

/* A key pair from a PEM private key file (PKCS#8): tools and tests that
 * play the ledger. */
int ed25519_key_load_private(const char *path, struct ed25519_key **ret_key, struct error *err);

/* Writes key's private half as PEM (PKCS#8) to a new file path, mode
 * 0600; -EEXIST when the file exists (nothing is overwritten). */
int ed25519_key_save_private(const struct ed25519_key *key, const char *path, struct error *err);

/* The public half as PEM (SPKI) in a new *ret_pem. */
int ed25519_key_public_pem(const struct ed25519_key *key, char **ret_pem, struct error *err);

/* Signs msg[len]; -EINVAL for a key without its private half. */
int ed25519_sign(const struct ed25519_key *key, const void *msg, size_t len, uint8_t sig[ED25519_SIGNATURE_SIZE],
                 struct error *err);

/* Whether sig is key's signature of msg[len]. */
bool ed25519_verify(const struct ed25519_key *key, const void *msg, size_t len,
                    const uint8_t sig[ED25519_SIGNATURE_SIZE]);

/* The raw 32-byte public key. */
int ed25519_key_public(const struct ed25519_key *key, uint8_t out[ED25519_PUBLIC_KEY_SIZE]);

/* Accepts NULL; returns NULL. The private half is cleared by libcrypto. */
struct ed25519_key *ed25519_key_free(struct ed25519_key *key);
