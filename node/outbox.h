/* The outbox: events for the ledger, written in the same store as the
 * change they tell of, resent by the sync client until acknowledged
 * (docs/sync-protocol.md). Each has its own sequence number. */
#pragma once

#include <json-c/json.h>

#include "common/error.h"
#include "node/store.h"

/* Appends an event of kind (e.g. "service.state") about the service uuid
 * (may be NULL) with body (borrowed; serialised now). */
int outbox_add(struct store *store, const char *kind, const char *uuid, struct json_object *body,
               struct error *err);
