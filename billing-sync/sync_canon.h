/* The canonical JSON form that sync MACs are computed over
 * (docs/sync-protocol.md, "Canonical form"): RFC 8785 (JCS) for JSON
 * without fractions. Keys sorted by their UTF-8 bytes, no white space,
 * minimal string escapes. Also the HMAC-SHA256 both ends use. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SYNC_HMAC_SIZE 32

/* True when s[len] is valid UTF-8 (no overlong forms, no surrogates). */
bool sync_utf8_valid(const char *s, size_t len);

/* Writes obj in canonical form into a new NUL-terminated *ret_text of
 * *ret_len bytes (ret_len may be NULL). Refuses (-EINVAL, naming the
 * path) fractions, strings that are not UTF-8 or hold a NUL, and output
 * beyond max bytes (-E2BIG). */
int sync_canon_write(struct json_object *obj, size_t max, char **ret_text, size_t *ret_len, struct error *err);

/* HMAC-SHA256 of the concatenation of parts[n] (lens[n] bytes each). */
int sync_hmac(const uint8_t *key, size_t key_len, const void *const *parts, const size_t *lens, size_t n,
              uint8_t out[SYNC_HMAC_SIZE]);
