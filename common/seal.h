/* Secrets at rest: a short text sealed with AES-256-GCM under a 32-byte
 * key, for what must wait in a database until it can be handed on once
 * (a new guest's root password, between the node and the ledger, and at
 * the ledger until the portal fetches it). The label is authenticated with
 * it (additional data), so a sealed text moved to another column or
 * purpose does not open.
 *
 *   sealed = base64url(12-byte random nonce || ciphertext || 16-byte tag)
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SEAL_KEY_SIZE 32
#define SEAL_PLAIN_MAX 4096

/* *ret_sealed is new (free() it). */
int seal_text(const uint8_t key[SEAL_KEY_SIZE], const char *label, const char *plain, char **ret_sealed,
              struct error *err);

/* *ret_plain is new; wipe it (explicit_bzero) before free(). -EBADMSG
 * when the key, the label or a byte is wrong. */
int unseal_text(const uint8_t key[SEAL_KEY_SIZE], const char *label, const char *sealed, char **ret_plain,
                struct error *err);
