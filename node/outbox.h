/* The outbox: events for the ledger (docs/sync-protocol.md, "Node →
 * ledger"), written in the same store as the change they tell of and
 * resent by the sync client until the ledger acknowledges them. Each event
 * gets the next event seq of the node, for ever increasing. */
#pragma once

#include "billing-sync/sync_codec.h"
#include "common/error.h"
#include "node/store.h"

/* Queues event (an event kind of the codec; its seq and, when 0, its time
 * are set here). The body is checked as the ledger would read it, so a
 * bad event is refused now, never later on the wire. */
int outbox_add(struct store *store, struct sync_msg *event, struct error *err);
