/* What the parts of netfilter/ share: the handle and its model. Nothing
 * outside netfilter/ (and its tests) includes this. */
#pragma once

#include <linux/netfilter/nf_tables.h>

#include "netfilter/nf.h"
#include "netfilter/nf_guest.h"
#include "netfilter/nf_netlink.h"

struct nf {
        struct nf_socket sock;
        char table[NFT_TABLE_MAXNAMELEN];
        bool built;               /* a rebuild succeeded: the model is what the kernel holds */
        struct nf_guest **guests; /* the model: copies, sorted by ifname */
        size_t n_guests, cap_guests;
};

/* The footprint of these guests (the model's, or a rebuild's), sorted. */
int nf_guests_footprint(struct nf_guest *const *guests, size_t n, struct nf_footprint *ret);

/* Every counter object of our table, by port. -ENOENT when there is no
 * table. */
int nf_counters_dump(struct nf *nf, struct nf_port_counters **ret, size_t *ret_n);
