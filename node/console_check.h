/* Whether the node lets a ticket open a console: its signature and times
 * (common/ticket.h), then the node's records. A nonce is used once: it is
 * recorded as soon as the signature holds, before any other check, so a
 * replay is refused whatever else changed. */
#pragma once

#include <stdint.h>

#include "common/ed25519.h"
#include "common/ticket.h"
#include "node/store.h"

/* Nonces remembered at most; past that, tickets are refused until old
 * ones expire (a minute or so): the store never grows without bound. */
#define CONSOLE_NONCES_MAX 100000

/* Records a verified ticket's nonce (either type: one table serves
 * both); -EALREADY when it was seen. Expired ones go first. */
int ticket_nonce_use(struct store *store, const struct ticket *t, int64_t now, struct error *err);

/* Checks text for a console of kind at now: signed by one of keys, in
 * time, nonce unused (then recorded), kind as asked, the account owns the
 * service, the service is running and no operation holds it. Fills the
 * ticket and the service's row id. err says why not, for the operator. */
int console_ticket_check(struct store *store, struct ed25519_key *const *keys, size_t n_keys, const char *text,
                         enum console_kind kind, int64_t now, struct ticket *ret_ticket, int64_t *ret_service_id,
                         struct error *err);

/* Signs a ticket for the service's own account, valid for lifetime
 * seconds from now (the operator's `vpsctl console ticket`). */
int console_ticket_mint(struct store *store, const struct ed25519_key *key, const char *uuid,
                        enum console_kind kind, int64_t now, unsigned lifetime, char *out, size_t size,
                        struct error *err);
