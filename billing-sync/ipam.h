/* Address pools of a node and the choice of a node for an order, pure.
 * A pool is one IPv4 or IPv6 prefix with its gateway; an address is free
 * when no live service holds it. Allocation takes the lowest free address
 * and never the network address, the IPv4 broadcast address or the
 * gateway, so a freed address is the next one handed out again. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define IPAM_TEXT_SIZE 46 /* INET6_ADDRSTRLEN */

struct ipam_pool {
        int family;          /* 4 or 6 */
        uint8_t network[16]; /* network order; IPv4 uses 4 */
        unsigned prefix;     /* IPv4 8 .. 30, IPv6 48 .. 126 */
        uint8_t gateway[16];
};

/* "192.0.2.0/24" and "192.0.2.1": the prefix must be the network's (no
 * host bits) and the gateway inside it, neither its network nor its
 * broadcast address. */
int ipam_pool_parse(const char *cidr, const char *gateway, struct ipam_pool *ret_pool, struct error *err);

/* Text <-> bytes of one address of family. */
int ipam_address_parse(int family, const char *text, uint8_t ret[16]);
void ipam_address_format(int family, const uint8_t address[16], char out[IPAM_TEXT_SIZE]);
void ipam_pool_format(const struct ipam_pool *pool, char out[IPAM_TEXT_SIZE + 4]);

/* The lowest address of pool that is not in used[n_used] (in any order;
 * addresses outside the pool are ignored). -ENOSPC when the pool is full. */
int ipam_allocate(const struct ipam_pool *pool, const uint8_t (*used)[16], size_t n_used, uint8_t ret[16],
                  struct error *err);

struct placement_node {
        int64_t free_vcpus, free_memory_mib, free_disk_gib;
        bool free_ipv4, free_ipv6; /* a pool of the family with a free address */
};

struct placement_need {
        int64_t vcpus, memory_mib, disk_gib;
        bool ipv4, ipv6;
};

/* The index of the node to place need on: of those with room for it (and
 * a free address of each family it needs), the one with the most free
 * memory, the first of equals. -ENOSPC when none has room. */
int placement_choose(const struct placement_node *nodes, size_t n, const struct placement_need *need,
                     struct error *err);
