/* The two logs every action writes: the customer activity log (the
 * service's public UUID and the action, nothing of the infrastructure) and
 * the admin audit log (everything, including who asked and the result). */
#pragma once

#include <stdint.h>

#include "node/store.h"

/* actor: "operator …", "ledger …", "customer …" or anything else (the
 * node itself); the activity log keeps only its kind. action is a fixed
 * word from the caller's code, never text from outside. */
void logbook_activity(struct store *store, int64_t service_id, const char *actor, const char *action);

/* target: a service UUID or template name; result: "ok" or the error. */
void logbook_audit(struct store *store, const char *actor, const char *action, const char *target,
                   const char *result, const char *detail);
