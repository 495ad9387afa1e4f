#include "ipam.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

static size_t width(int family) { return family == 4 ? 4 : 16; }

static u128 to_number(int family, const uint8_t a[16])
{
        u128 v = 0;

        for (size_t i = 0; i < width(family); i++)
                v = v << 8 | a[i];
        return v;
}

static void from_number(int family, u128 v, uint8_t out[16])
{
        memset(out, 0, 16);
        for (size_t i = width(family); i-- > 0; v >>= 8)
                out[i] = (uint8_t)v;
}

static u128 host_mask(int family, unsigned prefix)
{
        unsigned bits = (unsigned)width(family) * 8 - prefix;

        return bits >= 128 ? ~(u128)0 : ((u128)1 << bits) - 1;
}

int ipam_address_parse(int family, const char *text, uint8_t ret[16])
{
        memset(ret, 0, 16);
        return inet_pton(family == 4 ? AF_INET : AF_INET6, text, ret) == 1 ? 0 : -EINVAL;
}

void ipam_address_format(int family, const uint8_t address[16], char out[IPAM_TEXT_SIZE])
{
        if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, address, out, IPAM_TEXT_SIZE))
                out[0] = '\0';
}

void ipam_pool_format(const struct ipam_pool *pool, char out[IPAM_TEXT_SIZE + 4])
{
        char text[IPAM_TEXT_SIZE];

        ipam_address_format(pool->family, pool->network, text);
        snprintf(out, IPAM_TEXT_SIZE + 4, "%s/%u", text, pool->prefix);
}

int ipam_pool_parse(const char *cidr, const char *gateway, struct ipam_pool *ret_pool, struct error *err)
{
        struct ipam_pool pool = { 0 };
        char text[IPAM_TEXT_SIZE];
        const char *slash = strchr(cidr, '/');
        char *end = NULL;
        unsigned long prefix;
        u128 net, gw, mask;

        if (!slash || (size_t)(slash - cidr) >= sizeof(text))
                return error_set(err, -EINVAL, "pool `%.64s`: not ADDRESS/PREFIX", cidr);
        memcpy(text, cidr, (size_t)(slash - cidr));
        text[slash - cidr] = '\0';
        pool.family = strchr(text, ':') ? 6 : 4;
        prefix = strtoul(slash + 1, &end, 10);
        if (ipam_address_parse(pool.family, text, pool.network) < 0 || !slash[1] || *end || slash[1] == '+' ||
            slash[1] == '-')
                return error_set(err, -EINVAL, "pool `%.64s`: not ADDRESS/PREFIX", cidr);
        if (pool.family == 4 ? prefix < 8 || prefix > 30 : prefix < 48 || prefix > 126)
                return error_set(err, -EINVAL, "pool `%.64s`: the prefix must be %s", cidr,
                                 pool.family == 4 ? "8 to 30" : "48 to 126");
        pool.prefix = (unsigned)prefix;
        mask = host_mask(pool.family, pool.prefix);
        net = to_number(pool.family, pool.network);
        if (net & mask)
                return error_set(err, -EINVAL, "pool `%.64s`: host bits are set", cidr);
        if (ipam_address_parse(pool.family, gateway, pool.gateway) < 0)
                return error_set(err, -EINVAL, "gateway `%.64s`: not an IPv%d address", gateway, pool.family);
        gw = to_number(pool.family, pool.gateway);
        if ((gw & ~mask) != net || gw == net || (pool.family == 4 && gw == (net | mask)))
                return error_set(err, -EINVAL, "gateway `%.64s`: not a host address of %.64s", gateway, cidr);
        *ret_pool = pool;
        return 0;
}

static int compare_u128(const void *a, const void *b)
{
        u128 x = *(const u128 *)a, y = *(const u128 *)b;

        return x < y ? -1 : x > y;
}

int ipam_allocate(const struct ipam_pool *pool, const uint8_t (*used)[16], size_t n_used, uint8_t ret[16],
                  struct error *err)
{
        u128 mask = host_mask(pool->family, pool->prefix);
        u128 net = to_number(pool->family, pool->network), gw = to_number(pool->family, pool->gateway);
        u128 last = pool->family == 4 ? (net | mask) - 1 : net | mask;
        u128 *taken = calloc(n_used + 1, sizeof(*taken)), candidate = net + 1;
        size_t n = 0;

        if (!taken)
                return error_set(err, -ENOMEM, "out of memory");
        taken[n++] = gw;
        for (size_t i = 0; i < n_used; i++)
                taken[n++] = to_number(pool->family, used[i]);
        qsort(taken, n, sizeof(*taken), compare_u128);
        /* Walk the sorted taken addresses: the first gap above the network
         * address is the lowest free one. */
        for (size_t i = 0; i < n && candidate <= last; i++)
                if (taken[i] == candidate)
                        candidate++;
        free(taken);
        if (candidate > last) {
                char text[IPAM_TEXT_SIZE + 4];

                ipam_pool_format(pool, text);
                return error_set(err, -ENOSPC, "pool %s: no free address", text);
        }
        from_number(pool->family, candidate, ret);
        return 0;
}

int placement_choose(const struct placement_node *nodes, size_t n, const struct placement_need *need,
                     struct error *err)
{
        int best = -1;

        for (size_t i = 0; i < n; i++) {
                const struct placement_node *c = &nodes[i];

                if (c->free_vcpus < need->vcpus || c->free_memory_mib < need->memory_mib ||
                    c->free_disk_gib < need->disk_gib || (need->ipv4 && !c->free_ipv4) ||
                    (need->ipv6 && !c->free_ipv6))
                        continue;
                if (best < 0 || c->free_memory_mib > nodes[best].free_memory_mib)
                        best = (int)i;
        }
        if (best < 0)
                return error_set(err, -ENOSPC, "no node has room for %lld vCPUs, %lld MiB and %lld GiB%s%s",
                                 (long long)need->vcpus, (long long)need->memory_mib, (long long)need->disk_gib,
                                 need->ipv4 ? " and an IPv4 address" : "", need->ipv6 ? " and an IPv6 address" : "");
        return best;
}
