/* netfilter/nf: the one nftables table (family bridge) that filters every
 * guest port of the node, limits its speed and counts its traffic.
 *
 * The table holds a fixed set of chains and rules; everything about a guest
 * lives in set and map elements keyed by its port's interface name, so a
 * packet costs the same few hash lookups whether the node runs 1 guest or
 * 4,000 (docs/netfilter.md has the layout). Every change is one atomic
 * netlink batch: a packet sees the table before the change or after it,
 * never half of it.
 *
 * A struct nf is a netlink socket plus the model of what this handle last
 * committed: nf_rebuild() sets the whole model, nf_guest_apply() and
 * nf_guest_remove() change one guest of it and send only the difference,
 * and nf_check() compares the kernel's table against it. The node calls
 * nf_rebuild() at start, before anything else.
 *
 * Library code: nothing here logs, nothing here knows libvirt, SQLite or the
 * ledger. Every failure is a negative errno and a message naming the guest
 * port, and, for a refused batch, the message the kernel refused. Not
 * thread-safe: one handle per thread. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define NF_TABLE_DEFAULT "vpsd"
/* Addresses a guest may hold per family: a bound on what one change sends. */
#define NF_ADDRESSES_MAX 64
/* 100 Gbit/s: above that, 0 (unlimited) is the honest setting. */
#define NF_PORT_SPEED_MAX_MBIT 100000u
/* Guests one table holds; nf_rebuild() refuses more. */
#define NF_GUESTS_MAX 16384

/* One guest port, as the node plans it. The arrays are borrowed for the
 * duration of the call. */
struct nf_guest {
        char ifname[IFNAMSIZ];      /* the tap or veth on the bridge */
        uint8_t mac[6];
        const struct in_addr *ipv4; /* none: every IPv4 and ARP frame from it is dropped */
        size_t n_ipv4;
        const struct in6_addr *ipv6; /* global ones; the link-local derived from mac (EUI-64) is added by nf.
                                        None: every IPv6 frame from it is dropped, link-local too */
        size_t n_ipv6;
        bool suspended;             /* nothing passes, in either direction */
        uint32_t port_speed_mbit;   /* each direction; 0 = unlimited */
};

/* tx: what the guest sent (and the filter let through); rx: what was
 * delivered to it. Bytes are layer 3 bytes: the frame without its 14-byte
 * Ethernet header. They count from the guest's first nf_guest_apply() or
 * nf_rebuild(), and nf_rebuild() carries them over for a port it keeps. */
struct nf_counters {
        uint64_t rx_bytes, rx_packets, tx_bytes, tx_packets;
};

struct nf_port_counters {
        char ifname[IFNAMSIZ];
        struct nf_counters counters;
};

struct nf;

/* Opens a netlink socket for the table `table` (NULL: NF_TABLE_DEFAULT) in
 * the caller's network namespace. Touches nothing in the kernel. */
int nf_open(struct nf **ret, const char *table, struct error *err);
struct nf *nf_close(struct nf *nf);

/* Checks one guest as nf_guest_apply() would: interface name (1-15 of
 * [A-Za-z0-9_.-]), MAC (not zero, not multicast), addresses (not
 * unspecified, multicast, loopback or broadcast; IPv6 not link-local, which
 * is derived; none twice), counts and speed. -EINVAL with the port named. */
int nf_guest_validate(const struct nf_guest *g, struct error *err);

/* Deletes our table, if any, and creates it again holding exactly these
 * guests, in ONE batch; no other table is touched. Counters of the ports
 * that stay are carried over. On failure the kernel and the model are as
 * before. */
int nf_rebuild(struct nf *nf, const struct nf_guest *guests, size_t n, struct error *err);

/* Adds the guest, or replaces what its port had (addresses, suspension,
 * speed), in ONE batch holding only the difference. Counters are kept.
 * -ESTALE before the first nf_rebuild() of this handle. */
int nf_guest_apply(struct nf *nf, const struct nf_guest *g, struct error *err);

/* Removes the port and its counters in ONE batch. -ENOENT if it is not
 * managed; -ESTALE before the first nf_rebuild(). */
int nf_guest_remove(struct nf *nf, const char *ifname, struct error *err);

/* The counters of one managed port (-ENOENT if it has none). */
int nf_counters_read(struct nf *nf, const char *ifname, struct nf_counters *ret, struct error *err);

/* The counters of every port, from one netlink dump. *ret is malloc'd (the
 * caller frees it), sorted by ifname. */
int nf_counters_read_all(struct nf *nf, struct nf_port_counters **ret, size_t *ret_n, struct error *err);

/* Compares the table in the kernel with what this handle committed: table
 * flags, chains, rules, sets, every element, objects (not counter values).
 * 0: intact; -ENOENT: the table is gone; -EUCLEAN: it differs (the message
 * names the first difference); the node answers both with nf_rebuild().
 * -ESTALE before the first nf_rebuild(). */
int nf_check(struct nf *nf, struct error *err);

/* The number of guests in the model. */
size_t nf_guest_count(const struct nf *nf);
