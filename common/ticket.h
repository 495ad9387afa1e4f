/* Tickets a ledger signs for a customer, valid once within a minute:
 * a console ticket (docs/console.md) opens one console of one service; an
 * ISO upload ticket (docs/iso.md) lets one account upload one ISO of at
 * most max_bytes.
 *
 *   ticket  = base64url(payload) "." base64url(Ed25519 signature of payload)
 *   payload = "vpsd-console-ticket-1\n" "service=UUID\n" "account=ID\n"
 *             "kind=vnc|serial\n" "iat=SECONDS\n" "exp=SECONDS\n" "nonce=NONCE\n"
 *           | "vpsd-iso-upload-ticket-1\n" "account=ID\n" "max_bytes=N\n"
 *             "iat=SECONDS\n" "exp=SECONDS\n" "nonce=NONCE\n"
 *
 * Pure: no store, no clock of its own. What the node's records must say
 * (nonce unused, account owns service, service running; the account's
 * quota) is checked by the caller (node/console_check.c, iso/). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/ed25519.h"
#include "common/edge_proto.h"
#include "common/error.h"

#define TICKET_LIFETIME_MAX 60 /* seconds from iat to exp, at most */
#define TICKET_CLOCK_SKEW 10   /* seconds the signer's clock may be off the node's */
#define TICKET_NONCE_LEN 22    /* base64url of 16 random bytes */
#define TICKET_ACCOUNT_MAX 128
#define TICKET_MAX_BYTES UINT64_C(9007199254740991) /* 2^53 - 1: exact in every JSON reader */

enum ticket_type {
        TICKET_CONSOLE,
        TICKET_ISO_UPLOAD,
};

struct ticket {
        enum ticket_type type;
        char service[37];         /* console */
        char account[TICKET_ACCOUNT_MAX + 1];
        enum console_kind kind;   /* console */
        uint64_t max_bytes;       /* ISO upload: 1 to TICKET_MAX_BYTES */
        int64_t issued_at;
        int64_t expires_at;
        char nonce[TICKET_NONCE_LEN + 1];
};

/* Signs t with key into out[size] (EDGE_TICKET_MAX + 1 is always enough). */
int ticket_sign(const struct ticket *t, const struct ed25519_key *key, char *out, size_t size, struct error *err);

/* A fresh random nonce into t->nonce. */
int ticket_nonce_new(struct ticket *t, struct error *err);

/* Checks text[len] (either type: the caller checks ret_ticket->type): the form, a signature by one of keys[n_keys], and the
 * times at now (exp - iat from 1 to TICKET_LIFETIME_MAX; iat at most
 * TICKET_CLOCK_SKEW ahead of now; now before exp + TICKET_CLOCK_SKEW).
 * The signature is checked before anything in the payload is believed.
 * err says why a ticket is refused, for the operator's log only. */
int ticket_verify(const char *text, size_t len, struct ed25519_key *const *keys, size_t n_keys, int64_t now,
                  struct ticket *ret_ticket, struct error *err);
