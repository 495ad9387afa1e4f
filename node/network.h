/* The node's side of the guest filter (netfilter/nf.h): what each service's
 * port may send, whether it is suspended and how fast it may go come from
 * the store. vpsd's nftables table is rebuilt from the store at start,
 * changed one guest at a time by the lifecycle, checked on a timer and
 * rebuilt when someone changed it, and its counters are sampled into the
 * traffic buckets (node/traffic.h).
 *
 * Netlink calls run on the loop: each is one batch to the kernel and its
 * acknowledgments, well under a millisecond for one guest; only the
 * rebuild at start grows with the number of guests. */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "node/store.h"

struct network;

struct network_config {
        const char *table;           /* nftables table name (family bridge) */
        unsigned sample_interval_s;  /* counters into the traffic buckets */
        unsigned check_interval_s;   /* the table checked, and rebuilt if changed */
};

int network_new(uv_loop_t *loop, struct store *store, const struct network_config *config,
                struct network **ret_network, struct error *err);

/* Rebuilds the table from the store (counters of ports that stay carry
 * over) and starts the timers. Before it returns, every live service's
 * port is filtered: call it before any guest starts. */
int network_start(struct network *network, struct error *err);

/* The service's port as the store has it now (MAC, addresses, suspended or
 * not, port speed), added or changed in one batch. */
int network_guest_apply(struct network *network, int64_t service_id, struct error *err);

/* Counts the port's last traffic into the buckets, then takes it out of
 * the table. A port the table does not hold is fine. */
int network_guest_remove(struct network *network, int64_t service_id, struct error *err);

/* Samples every port's counters into the traffic buckets now. */
int network_sample(struct network *network, struct error *err);

/* Stops the timers and, after a last sample, closes the netlink socket.
 * The table stays in the kernel: guests that run stay filtered while vpsd
 * is away. The memory goes once the loop has run. Accepts NULL; returns
 * NULL. */
struct network *network_free(struct network *network);
