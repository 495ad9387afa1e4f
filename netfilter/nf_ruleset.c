/* The fixed part of our table: the table itself, its sets and chains, and
 * the stateful objects a guest gets. The rules are in nf_ruleset_rules.c. */
#include "netfilter/nf_ruleset.h"

#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_bridge.h>
#include <libnftnl/udata.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* nftables' datatype numbers (nftables src/datatype.h), so that `nft list`
 * prints our keys as names and addresses; the kernel does not read them. */
enum { NFT_TYPE_IPADDR = 7, NFT_TYPE_IP6ADDR = 8, NFT_TYPE_ETHERADDR = 9, NFT_TYPE_ETHERTYPE = 10,
       NFT_TYPE_IFNAME = 41, NFT_TYPE_BITS = 6 };

/* libnftnl 1.2.4 writes an objref's set name without its NUL and reads it
 * back with strdup(): a name whose length is a multiple of 4 gets no zero
 * padding and parses back with trailing garbage (the kernel, which reads
 * the attribute's length, is not affected). The object maps' names avoid
 * such lengths; tests/unit/test_nf_ruleset.c round-trips every rule. */
static const struct nf_set_def set_defs[NF_SET_COUNT] = {
        [NF_SET_PORTS] = { "ports", { NF_FIELD_IFNAME }, 1, 0, 0 },
        [NF_SET_SUSPENDED] = { "suspended", { NF_FIELD_IFNAME }, 1, 0, 0 },
        [NF_SET_IP6_PORTS] = { "ip6_ports", { NF_FIELD_IFNAME }, 1, 0, 0 },
        [NF_SET_MACS] = { "macs", { NF_FIELD_IFNAME, NF_FIELD_ETHER }, 2, 0, 0 },
        [NF_SET_IP4] = { "ip4", { NF_FIELD_IFNAME, NF_FIELD_IPV4 }, 2, 0, 0 },
        [NF_SET_ARP] = { "arp", { NF_FIELD_IFNAME, NF_FIELD_ETHER, NF_FIELD_IPV4 }, 3, 0, 0 },
        [NF_SET_IP6] = { "ip6", { NF_FIELD_IFNAME, NF_FIELD_IPV6 }, 2, 0, 0 },
        [NF_SET_SOLICITED] = { "solicited", { NF_FIELD_IFNAME, NF_FIELD_IPV6 }, 2, 0, 0 },
        [NF_SET_FAMILIES] = { "families", { NF_FIELD_IFNAME, NF_FIELD_ETHERTYPE }, 2, 0, 0 },
        [NF_MAP_TX_COUNTER] = { "tx_counters", { NF_FIELD_IFNAME }, 1, NFT_SET_OBJECT, NFT_OBJECT_COUNTER },
        [NF_MAP_RX_COUNTER] = { "rx_counters", { NF_FIELD_IFNAME }, 1, NFT_SET_OBJECT, NFT_OBJECT_COUNTER },
        [NF_MAP_TX_LIMIT] = { "tx_limits", { NF_FIELD_IFNAME }, 1, NFT_SET_OBJECT, NFT_OBJECT_LIMIT },
        [NF_MAP_RX_LIMIT] = { "rx_limits", { NF_FIELD_IFNAME }, 1, NFT_SET_OBJECT, NFT_OBJECT_LIMIT },
};

const struct nf_set_def *nf_set_def(enum nf_set_id id)
{
        return &set_defs[id];
}

uint32_t nf_field_key_len(enum nf_field f)
{
        switch (f) {
        case NF_FIELD_IFNAME:
        case NF_FIELD_IPV6:
                return 16;
        case NF_FIELD_ETHER:
                return 8;
        case NF_FIELD_IPV4:
        case NF_FIELD_ETHERTYPE:
                return 4;
        }
        return 0;
}

static uint32_t field_type(enum nf_field f)
{
        static const uint32_t types[] = {
                [NF_FIELD_IFNAME] = NFT_TYPE_IFNAME, [NF_FIELD_ETHER] = NFT_TYPE_ETHERADDR,
                [NF_FIELD_IPV4] = NFT_TYPE_IPADDR,   [NF_FIELD_IPV6] = NFT_TYPE_IP6ADDR,
                [NF_FIELD_ETHERTYPE] = NFT_TYPE_ETHERTYPE,
        };
        return types[f];
}

uint32_t nf_set_key_len(enum nf_set_id id)
{
        uint32_t len = 0;

        for (unsigned i = 0; i < set_defs[id].n_fields; i++)
                len += nf_field_key_len(set_defs[id].fields[i]);
        return len;
}

static const struct nf_chain_def chain_defs[] = {
        { "prerouting", NF_BR_PRE_ROUTING },
        { "postrouting", NF_BR_POST_ROUTING },
        { "from_guest", -1 },
        { "guest_arp", -1 },
        { "guest_ip4", -1 },
        { "guest_ip6", -1 },
        { "guest_na", -1 },
        { "guest_ns", -1 },
        { "guest_rs", -1 },
        { "guest_ip6_unspec", -1 },
        { "tx_pass", -1 },
        { "to_guest", -1 },
        { "rx_pass", -1 },
};

size_t nf_chain_count(void)
{
        return ARRAY_SIZE(chain_defs);
}

const struct nf_chain_def *nf_chain_def(size_t i)
{
        return &chain_defs[i];
}

struct nftnl_table *nf_ruleset_table(const char *table)
{
        struct nftnl_table *t = nftnl_table_alloc();

        if (!t)
                return NULL;
        nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_BRIDGE);
        if (nftnl_table_set_str(t, NFTNL_TABLE_NAME, table) < 0) {
                nftnl_table_free(t);
                return NULL;
        }
        return t;
}

/* nftables' user data saying the key is in host byte order. */
static int set_key_byteorder_host(struct nftnl_set *s)
{
        struct nftnl_udata_buf *udata = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
        int r = -ENOMEM;

        if (udata && nftnl_udata_put_u32(udata, NFTNL_UDATA_SET_KEYBYTEORDER, 1) &&
            nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata)) == 0)
                r = 0;
        nftnl_udata_buf_free(udata);
        return r;
}

struct nftnl_set *nf_ruleset_set(const char *table, enum nf_set_id id)
{
        const struct nf_set_def *def = &set_defs[id];
        struct nftnl_set *s = nftnl_set_alloc();
        uint32_t key_type = 0;

        if (!s)
                return NULL;
        for (unsigned i = 0; i < def->n_fields; i++)
                key_type = key_type << NFT_TYPE_BITS | field_type(def->fields[i]);
        nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_BRIDGE);
        if (nftnl_set_set_str(s, NFTNL_SET_TABLE, table) < 0 || nftnl_set_set_str(s, NFTNL_SET_NAME, def->name) < 0) {
                nftnl_set_free(s);
                return NULL;
        }
        /* The kernel wants an ID on every new set (it names sets created
         * in the same batch); ours are looked up by name anyway. */
        nftnl_set_set_u32(s, NFTNL_SET_ID, (uint32_t)id + 1);
        nftnl_set_set_u32(s, NFTNL_SET_FLAGS, def->flags);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, nf_set_key_len(id));
        if (def->flags & NFT_SET_OBJECT)
                nftnl_set_set_u32(s, NFTNL_SET_OBJ_TYPE, def->obj_type);
        /* An interface name is a string in host byte order: without saying
         * so, `nft list` prints these keys reversed (as ""). */
        if (def->n_fields == 1 && set_key_byteorder_host(s) < 0) {
                nftnl_set_free(s);
                return NULL;
        }
        return s;
}

struct nftnl_chain *nf_ruleset_chain(const char *table, size_t i)
{
        const struct nf_chain_def *def = &chain_defs[i];
        struct nftnl_chain *c = nftnl_chain_alloc();

        if (!c)
                return NULL;
        nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_BRIDGE);
        if (nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table) < 0 || nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, def->name) < 0)
                goto fail;
        if (def->hook >= 0) {
                nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, def->hook);
                /* The bridge family's filter priority. Any would do: a drop
                 * here is final whatever other tables accept. */
                nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, NF_BR_PRI_FILTER_BRIDGED);
                nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
                if (nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter") < 0)
                        goto fail;
        }
        return c;
fail:
        nftnl_chain_free(c);
        return NULL;
}

/* ---------------------------------------------------------------- objects */

static struct nftnl_obj *obj_new(const char *table, const char *name, uint32_t type)
{
        struct nftnl_obj *o = nftnl_obj_alloc();

        if (!o)
                return NULL;
        nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_BRIDGE);
        nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, type);
        /* nftnl_obj_set_str() returns nothing: a failed copy leaves the
         * attribute unset. */
        nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
        nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name);
        if (!nftnl_obj_is_set(o, NFTNL_OBJ_TABLE) || !nftnl_obj_is_set(o, NFTNL_OBJ_NAME)) {
                nftnl_obj_free(o);
                return NULL;
        }
        return o;
}

struct nftnl_obj *nf_ruleset_counter(const char *table, const char *name, uint64_t packets, uint64_t bytes)
{
        struct nftnl_obj *o = obj_new(table, name, NFT_OBJECT_COUNTER);

        if (!o)
                return NULL;
        nftnl_obj_set_u64(o, NFTNL_OBJ_CTR_PKTS, packets);
        nftnl_obj_set_u64(o, NFTNL_OBJ_CTR_BYTES, bytes);
        return o;
}

/* Bytes per second, unit 1 s, no extra burst: the kernel's bucket then
 * holds one second at the rate, which also lets a 64 KiB GSO packet
 * through at the lowest speed (1 Mbit/s is 125,000 bytes a second). */
struct nftnl_obj *nf_ruleset_limit(const char *table, const char *name, uint64_t rate_bytes)
{
        struct nftnl_obj *o = obj_new(table, name, NFT_OBJECT_LIMIT);

        if (!o)
                return NULL;
        nftnl_obj_set_u64(o, NFTNL_OBJ_LIMIT_RATE, rate_bytes);
        nftnl_obj_set_u64(o, NFTNL_OBJ_LIMIT_UNIT, 1);
        nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_BURST, 0);
        nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_TYPE, NFT_LIMIT_PKT_BYTES);
        nftnl_obj_set_u32(o, NFTNL_OBJ_LIMIT_FLAGS, NFT_LIMIT_F_INV);
        return o;
}
