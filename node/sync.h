/* The sync client (docs/sync-protocol.md): vpsd's connection out to the
 * billing ledger. It keeps one authenticated websocket (wss, the ledger's
 * certificate checked against the configured CA) open, reconnecting with
 * backoff; journals every command the ledger sends before applying it,
 * applies commands on one service in order and on different services
 * side by side, and acks each once its result is durable; sends the
 * outbox's events until the ledger has stored them, an inventory after
 * every connect, and the traffic buckets as usage reports.
 *
 * The node enforces leases whether or not this connection is up
 * (node/lease.c); nothing here is needed for a suspension to happen. */
#pragma once

#include <json-c/json.h>
#include <uv.h>

#include "common/error.h"
#include "node/guest.h"
#include "node/lease.h"
#include "node/store.h"

struct sync_config {
        const char *url;          /* wss://HOST[:PORT][/PATH] */
        const char *ca_file;      /* PEM: the CA(s) the ledger's certificate must chain to */
        const char *key_file;     /* the enrolment key, base64url on one line; 0600, owned by root */
        const char *node_id;      /* this node's id at the ledger */
        unsigned usage_interval;  /* seconds between usage reports */
        unsigned sample_interval; /* seconds between traffic samples (a bucket is reported once sampled whole) */
};

struct sync_client;

/* Reads the key (refusing a file others may read), then connects in the
 * background; a ledger that is down is retried, never an error here. */
struct iso_store;

/* isos may be NULL (the iso-* commands then fail). */
int sync_start(uv_loop_t *loop, struct store *store, struct guests *guests, struct leases *leases,
               struct iso_store *isos, const struct sync_config *config, struct sync_client **ret,
               struct error *err);

/* connected, the sequences and what waits: for `vpsctl ledger status`. */
struct json_object *sync_status(struct sync_client *client);

/* Closes the connection; commands being applied finish into the journal
 * (their acks go at the next connect). Accepts NULL; returns NULL. The
 * memory goes once the loop has run. */
struct sync_client *sync_stop(struct sync_client *client);
