/* The rules of our table. None mentions a guest: each looks the port's
 * interface name up, concatenated with what it checks, in a set, so the
 * same rules serve every guest and a guest is added by adding elements.
 * The layout, chain by chain, is in docs/netfilter.md. */
#include "netfilter/nf_ruleset.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <libnftnl/expr.h>
#include <libnftnl/udata.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Registers: the port's name fills four 32-bit registers and the next
 * fields of a concatenated key follow it, each padded to 4 bytes. Scratch
 * values use the first. */
#define REG_PORT NFT_REG32_00
#define REG_SECOND NFT_REG32_04

/* The kernel reports a 32-bit register that starts a 128-bit one by the
 * 128-bit number (NFT_REG32_04 as NFT_REG_2): use its numbering, so that
 * a rule we build and the same rule dumped print alike. */
static uint32_t reg(uint32_t reg32)
{
        return (reg32 - NFT_REG32_00) % 4 ? reg32 : NFT_REG_1 + (reg32 - NFT_REG32_00) / 4;
}

enum direction { FROM_GUEST, TO_GUEST };

struct builder {
        const char *table;
        struct nftnl_rule **rules;
        size_t n, cap;
        struct nftnl_rule *cur;
        bool failed;
};

static void rule_begin(struct builder *b, const char *chain, const char *comment)
{
        struct nftnl_udata_buf *udata = NULL;
        struct nftnl_rule *r;

        b->cur = NULL;
        if (b->failed)
                return;
        if (array_reserve(&b->rules, &b->cap, b->n, sizeof(*b->rules)) < 0)
                goto fail;
        r = nftnl_rule_alloc();
        if (!r)
                goto fail;
        b->rules[b->n++] = r;
        nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_BRIDGE);
        udata = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
        if (!udata || nftnl_rule_set_str(r, NFTNL_RULE_TABLE, b->table) < 0 ||
            nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain) < 0 ||
            !nftnl_udata_put_strz(udata, NFTNL_UDATA_RULE_COMMENT, comment) ||
            nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata)) < 0)
                goto fail;
        nftnl_udata_buf_free(udata);
        b->cur = r;
        return;
fail:
        nftnl_udata_buf_free(udata);
        b->failed = true;
}

/* Starts an expression of the current rule; NULL (and the build failed)
 * when there is no rule or no memory. */
static struct nftnl_expr *expr_add(struct builder *b, const char *name)
{
        struct nftnl_expr *e;

        if (!b->cur)
                return NULL;
        e = nftnl_expr_alloc(name);
        if (!e) {
                b->failed = true;
                return NULL;
        }
        nftnl_rule_add_expr(b->cur, e);
        return e;
}

static void put_meta(struct builder *b, uint32_t key, uint32_t dreg)
{
        struct nftnl_expr *e = expr_add(b, "meta");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg(dreg));
}

static void put_port(struct builder *b, enum direction dir)
{
        put_meta(b, dir == FROM_GUEST ? NFT_META_IIFNAME : NFT_META_OIFNAME, REG_PORT);
}

static void put_payload(struct builder *b, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg)
{
        struct nftnl_expr *e = expr_add(b, "payload");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg(dreg));
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
}

static void put_cmp(struct builder *b, uint32_t op, const void *data, uint32_t len)
{
        struct nftnl_expr *e = expr_add(b, "cmp");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, reg(REG_PORT));
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
        if (nftnl_expr_set_data(e, NFTNL_EXPR_CMP_DATA, data, len) < 0)
                b->failed = true;
}

/* The packet's bytes [offset, offset+len) at base equal (or, with op
 * NFT_CMP_NEQ, differ from) data. */
static void match_bytes(struct builder *b, uint32_t base, uint32_t offset, const void *data, uint32_t len, uint32_t op)
{
        put_payload(b, base, offset, len, REG_PORT);
        put_cmp(b, op, data, len);
}

static void match_u8(struct builder *b, uint32_t base, uint32_t offset, uint8_t value, uint32_t op)
{
        match_bytes(b, base, offset, &value, 1, op);
}

/* A big-endian 16-bit field. */
static void match_be16(struct builder *b, uint32_t base, uint32_t offset, uint16_t value)
{
        uint8_t be[2] = { value >> 8, value & 0xff };

        match_bytes(b, base, offset, be, 2, NFT_CMP_EQ);
}

static void match_l4proto(struct builder *b, uint8_t proto)
{
        put_meta(b, NFT_META_L4PROTO, REG_PORT);
        put_cmp(b, NFT_CMP_EQ, &proto, 1);
}

static void match_icmpv6_type(struct builder *b, uint8_t type)
{
        match_l4proto(b, IPPROTO_ICMPV6);
        match_u8(b, NFT_PAYLOAD_TRANSPORT_HEADER, 0, type, NFT_CMP_EQ);
}

static void match_udp_ports(struct builder *b, uint16_t sport, uint16_t dport)
{
        uint8_t ports[4] = { sport >> 8, sport & 0xff, dport >> 8, dport & 0xff };

        match_l4proto(b, IPPROTO_UDP);
        match_bytes(b, NFT_PAYLOAD_TRANSPORT_HEADER, 0, ports, 4, NFT_CMP_EQ);
}

static void put_lookup(struct builder *b, uint32_t sreg, enum nf_set_id set, uint32_t flags)
{
        struct nftnl_expr *e = expr_add(b, "lookup");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, reg(sreg));
        if (nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, nf_set_def(set)->name) < 0)
                b->failed = true;
        /* Always set, because the kernel always reports it: a rule we build
         * and the same rule dumped must print alike. */
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, flags);
}

/* The port's name, then fields loaded from the packet at (base, offset,
 * len) into the registers after it, looked up in set. */
struct field_load {
        uint32_t base, offset, len;
};

static void match_port_key(struct builder *b, enum direction dir, enum nf_set_id set, const struct field_load *fields,
                           size_t n_fields, uint32_t flags)
{
        uint32_t next = REG_SECOND;

        put_port(b, dir);
        for (size_t i = 0; i < n_fields; i++) {
                put_payload(b, fields[i].base, fields[i].offset, fields[i].len, next);
                next += (fields[i].len + 3) / 4;
        }
        put_lookup(b, REG_PORT, set, flags);
}

static void put_objref_map(struct builder *b, enum direction dir, enum nf_set_id set)
{
        struct nftnl_expr *e;

        put_port(b, dir);
        e = expr_add(b, "objref");
        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_SET_SREG, reg(REG_PORT));
        if (nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_SET_NAME, nf_set_def(set)->name) < 0)
                b->failed = true;
}

static void put_verdict(struct builder *b, int verdict, const char *chain)
{
        struct nftnl_expr *e = expr_add(b, "immediate");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, verdict);
        if (chain && nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain) < 0)
                b->failed = true;
}

static void rule_drop(struct builder *b, const char *chain, const char *comment)
{
        rule_begin(b, chain, comment);
        put_verdict(b, NF_DROP, NULL);
}

#define LL NFT_PAYLOAD_LL_HEADER
#define NH NFT_PAYLOAD_NETWORK_HEADER
#define TH NFT_PAYLOAD_TRANSPORT_HEADER

/* ARP for Ethernet and IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4): the
 * only ARP whose sender and target fields sit where the rules read them. */
static const uint8_t arp_ether_ipv4[6] = { 0x00, 0x01, 0x08, 0x00, 0x06, 0x04 };

static void chains_base(struct builder *b)
{
        rule_begin(b, "prerouting", "frames from a managed guest port");
        put_port(b, FROM_GUEST);
        put_lookup(b, REG_PORT, NF_SET_PORTS, 0);
        put_verdict(b, NFT_GOTO, "from_guest");

        rule_begin(b, "postrouting", "frames to a managed guest port");
        put_port(b, TO_GUEST);
        put_lookup(b, REG_PORT, NF_SET_PORTS, 0);
        put_verdict(b, NFT_GOTO, "to_guest");
}


/* Frames of ethertype `type` go to chain if the port has that family. */
static void dispatch(struct builder *b, uint16_t type, const char *chain, const char *comment)
{
        static const struct field_load ether_type = { LL, 12, 2 };

        rule_begin(b, "from_guest", comment);
        match_be16(b, LL, 12, type);
        match_port_key(b, FROM_GUEST, NF_SET_FAMILIES, &ether_type, 1, 0);
        put_verdict(b, NFT_GOTO, chain);
}

static void chain_from_guest(struct builder *b)
{
        static const struct field_load ether_saddr = { LL, 6, 6 };

        rule_begin(b, "from_guest", "a suspended guest sends nothing");
        put_port(b, FROM_GUEST);
        put_lookup(b, REG_PORT, NF_SET_SUSPENDED, 0);
        put_verdict(b, NF_DROP, NULL);

        /* Negated lookups only on what every frame has (port, Ethernet
         * header): a rule that cannot read its field does not match, so a
         * negated check on a short packet would let it pass. Elsewhere the
         * chains accept what matches and drop the rest. */
        rule_begin(b, "from_guest", "source MAC must be the guest's");
        match_port_key(b, FROM_GUEST, NF_SET_MACS, &ether_saddr, 1, NFT_LOOKUP_F_INV);
        put_verdict(b, NF_DROP, NULL);

        /* VLAN and Q-in-Q frames read as 0x8100/0x88a8 here (the kernel
         * puts an offloaded tag back for payload reads), so they match none
         * of these and reach the drop below, as do all other ethertypes and
         * a family the guest has no address in. Not a verdict map keyed by
         * port: the kernel re-validates every element of a verdict map
         * (loop detection) at each commit that adds one, which would make
         * adding a guest cost O(guests). */
        dispatch(b, ETH_P_IP, "guest_ip4", "IPv4, if it has IPv4 addresses");
        dispatch(b, ETH_P_IPV6, "guest_ip6", "IPv6, if it has IPv6 addresses");
        dispatch(b, ETH_P_ARP, "guest_arp", "ARP, if it has IPv4 addresses");
        rule_drop(b, "from_guest", "any other ethertype, VLAN and Q-in-Q included");
}

static void chain_guest_arp(struct builder *b)
{
        static const struct field_load sender[] = { { NH, 8, 6 }, { NH, 14, 4 } };
        static const uint8_t request[2] = { 0, 1 }, reply[2] = { 0, 2 };
        struct nftnl_expr *e;

        rule_begin(b, "guest_arp", "Ethernet/IPv4 ARP only");
        match_bytes(b, NH, 0, arp_ether_ipv4, sizeof(arp_ether_ipv4), NFT_CMP_NEQ);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_arp", "requests and replies only");
        put_payload(b, NH, 6, 2, REG_PORT);
        e = expr_add(b, "range");
        if (e) {
                nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_SREG, reg(REG_PORT));
                nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_OP, NFT_RANGE_NEQ);
                if (nftnl_expr_set_data(e, NFTNL_EXPR_RANGE_FROM_DATA, request, 2) < 0 ||
                    nftnl_expr_set_data(e, NFTNL_EXPR_RANGE_TO_DATA, reply, 2) < 0)
                        b->failed = true;
        }
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_arp", "sender MAC and IP must be the guest's (IP 0.0.0.0: a probe)");
        match_port_key(b, FROM_GUEST, NF_SET_ARP, sender, ARRAY_SIZE(sender), 0);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_drop(b, "guest_arp", "any other ARP");
}

static void chain_guest_ip4(struct builder *b)
{
        static const struct field_load saddr = { NH, 12, 4 };
        static const uint8_t unspecified_to_broadcast[8] = { 0, 0, 0, 0, 255, 255, 255, 255 };

        rule_begin(b, "guest_ip4", "no DHCP server replies");
        match_udp_ports(b, 67, 68);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_ip4", "source must be one of its addresses");
        match_port_key(b, FROM_GUEST, NF_SET_IP4, &saddr, 1, 0);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_begin(b, "guest_ip4", "DHCP discovery: 0.0.0.0:68 to 255.255.255.255:67");
        match_bytes(b, NH, 12, unspecified_to_broadcast, sizeof(unspecified_to_broadcast), NFT_CMP_EQ);
        match_udp_ports(b, 68, 67);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_drop(b, "guest_ip4", "any other IPv4");
}

static void chain_guest_ip6(struct builder *b)
{
        static const struct field_load saddr = { NH, 8, 16 };
        static const uint8_t unspecified[16] = { 0 };

        rule_begin(b, "guest_ip6", "no router advertisements");
        match_icmpv6_type(b, 134);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_ip6", "no redirects");
        match_icmpv6_type(b, 137);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_ip6", "no DHCPv6 server replies");
        match_udp_ports(b, 547, 546);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_ip6", "neighbor advertisements speak for its addresses and MAC only");
        match_icmpv6_type(b, 136);
        put_verdict(b, NFT_JUMP, "guest_na");

        rule_begin(b, "guest_ip6", "neighbor solicitations carry its MAC only");
        match_icmpv6_type(b, 135);
        put_verdict(b, NFT_JUMP, "guest_ns");

        rule_begin(b, "guest_ip6", "router solicitations carry its MAC only");
        match_icmpv6_type(b, 133);
        put_verdict(b, NFT_JUMP, "guest_rs");

        rule_begin(b, "guest_ip6", "source must be one of its addresses or its derived link-local");
        match_port_key(b, FROM_GUEST, NF_SET_IP6, &saddr, 1, 0);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_begin(b, "guest_ip6", "source :: only for DAD and MLDv2 reports");
        match_bytes(b, NH, 8, unspecified, sizeof(unspecified), NFT_CMP_EQ);
        put_verdict(b, NFT_GOTO, "guest_ip6_unspec");

        rule_drop(b, "guest_ip6", "any other IPv6");
}

/* An NDP message of fixed part `length` whose only allowed option is one
 * link-layer address option (type `option`, 8 bytes) carrying the guest's
 * MAC. With target_checked, its target address (bytes 8-23) must be one of
 * the guest's. Legitimate NDP has no extension headers, so the IPv6 payload
 * length is the message's: no options, or exactly that one. */
static void chain_ndp(struct builder *b, const char *chain, uint8_t length, uint8_t option, bool target_checked)
{
        static const struct field_load target = { TH, 8, 16 };
        const struct field_load lladdr = { TH, length + 2u, 6 };
        const uint8_t option_header[2] = { option, 1 };

        rule_begin(b, chain, "no extension headers");
        match_u8(b, NH, 6, IPPROTO_ICMPV6, NFT_CMP_NEQ);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, chain, "no options");
        match_be16(b, NH, 4, length);
        if (target_checked)
                match_port_key(b, FROM_GUEST, NF_SET_IP6, &target, 1, 0);
        put_verdict(b, NFT_RETURN, NULL);

        rule_begin(b, chain, "one link-layer address option, the guest's MAC");
        match_be16(b, NH, 4, length + 8);
        match_bytes(b, TH, length, option_header, 2, NFT_CMP_EQ);
        if (target_checked)
                match_port_key(b, FROM_GUEST, NF_SET_IP6, &target, 1, 0);
        match_port_key(b, FROM_GUEST, NF_SET_MACS, &lladdr, 1, 0);
        put_verdict(b, NFT_RETURN, NULL);

        rule_drop(b, chain, "anything else");
}

static void chain_guest_ip6_unspec(struct builder *b)
{
        static const struct field_load target = { TH, 8, 16 };
        static const uint8_t ff02[2] = { 0xff, 0x02 };

        rule_begin(b, "guest_ip6_unspec", "only to ff02::/16");
        match_bytes(b, NH, 24, ff02, 2, NFT_CMP_NEQ);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "guest_ip6_unspec", "duplicate address detection for one of its addresses");
        match_icmpv6_type(b, 135);
        match_port_key(b, FROM_GUEST, NF_SET_IP6, &target, 1, 0);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_begin(b, "guest_ip6_unspec", "MLDv2 reports");
        match_icmpv6_type(b, 143);
        put_verdict(b, NFT_GOTO, "tx_pass");

        rule_drop(b, "guest_ip6_unspec", "anything else from ::");
}

/* What passed the filter: over the port's speed it is dropped, otherwise
 * counted and accepted. A port without a limit element is unlimited: the
 * objref lookup misses and the rule does not match. */
static void chain_pass(struct builder *b, enum direction dir)
{
        const char *chain = dir == FROM_GUEST ? "tx_pass" : "rx_pass";

        rule_begin(b, chain, "over the port speed");
        put_objref_map(b, dir, dir == FROM_GUEST ? NF_MAP_TX_LIMIT : NF_MAP_RX_LIMIT);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, chain, "count");
        put_objref_map(b, dir, dir == FROM_GUEST ? NF_MAP_TX_COUNTER : NF_MAP_RX_COUNTER);

        rule_begin(b, chain, "deliver");
        put_verdict(b, NF_ACCEPT, NULL);
}

static void chain_to_guest(struct builder *b)
{
        static const struct field_load ether_daddr = { LL, 0, 6 }, arp_target = { NH, 24, 4 },
                                       ip6_daddr = { NH, 24, 16 };
        static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        static const uint8_t arp_request[8] = { 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01 };
        static const uint8_t ipv6_multicast[2] = { 0x33, 0x33 }, all_nodes_mac[6] = { 0x33, 0x33, 0, 0, 0, 1 };
        static const uint8_t all_nodes[16] = { 0xff, 0x02, [15] = 1 };
        static const uint8_t all_nodes_types[2] = { 134, 136 };

        rule_begin(b, "to_guest", "a suspended guest receives nothing");
        put_port(b, TO_GUEST);
        put_lookup(b, REG_PORT, NF_SET_SUSPENDED, 0);
        put_verdict(b, NF_DROP, NULL);

        rule_begin(b, "to_guest", "unicast to its MAC");
        match_port_key(b, TO_GUEST, NF_SET_MACS, &ether_daddr, 1, 0);
        put_verdict(b, NFT_GOTO, "rx_pass");

        rule_begin(b, "to_guest", "broadcast ARP requests for one of its IPv4 addresses");
        match_bytes(b, LL, 0, broadcast, 6, NFT_CMP_EQ);
        match_be16(b, LL, 12, 0x0806);
        match_bytes(b, NH, 0, arp_request, sizeof(arp_request), NFT_CMP_EQ);
        match_port_key(b, TO_GUEST, NF_SET_IP4, &arp_target, 1, 0);
        put_verdict(b, NFT_GOTO, "rx_pass");

        rule_begin(b, "to_guest", "neighbor solicitations to its solicited-node groups");
        match_bytes(b, LL, 0, ipv6_multicast, 2, NFT_CMP_EQ);
        match_be16(b, LL, 12, 0x86dd);
        match_icmpv6_type(b, 135);
        match_port_key(b, TO_GUEST, NF_SET_SOLICITED, &ip6_daddr, 1, 0);
        put_verdict(b, NFT_GOTO, "rx_pass");

        for (size_t i = 0; i < ARRAY_SIZE(all_nodes_types); i++) {
                rule_begin(b, "to_guest",
                           i == 0 ? "router advertisements to all nodes" : "neighbor advertisements to all nodes");
                match_bytes(b, LL, 0, all_nodes_mac, 6, NFT_CMP_EQ);
                match_be16(b, LL, 12, 0x86dd);
                match_bytes(b, NH, 24, all_nodes, 16, NFT_CMP_EQ);
                match_icmpv6_type(b, all_nodes_types[i]);
                put_port(b, TO_GUEST);
                put_lookup(b, REG_PORT, NF_SET_IP6_PORTS, 0);
                put_verdict(b, NFT_GOTO, "rx_pass");
        }

        rule_drop(b, "to_guest", "anything else: other unicast, broadcast, multicast");
}

int nf_ruleset_rules(const char *table, struct nftnl_rule ***ret, size_t *ret_n)
{
        struct builder b = { .table = table };

        chains_base(&b);
        chain_from_guest(&b);
        chain_guest_arp(&b);
        chain_guest_ip4(&b);
        chain_guest_ip6(&b);
        chain_ndp(&b, "guest_na", 24, 2, true);
        chain_ndp(&b, "guest_ns", 24, 1, false);
        chain_ndp(&b, "guest_rs", 8, 1, false);
        chain_guest_ip6_unspec(&b);
        chain_pass(&b, FROM_GUEST);
        chain_to_guest(&b);
        chain_pass(&b, TO_GUEST);
        if (b.failed) {
                nf_ruleset_rules_free(b.rules, b.n);
                return -ENOMEM;
        }
        *ret = b.rules;
        *ret_n = b.n;
        return 0;
}

void nf_ruleset_rules_free(struct nftnl_rule **rules, size_t n)
{
        for (size_t i = 0; i < n; i++)
                nftnl_rule_free(rules[i]);
        free(rules);
}

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
        if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && nftnl_udata_len(attr) > 0 &&
            ((const char *)nftnl_udata_get(attr))[nftnl_udata_len(attr) - 1] == '\0')
                *(const char **)data = nftnl_udata_get(attr);
        return 0;
}

const char *nf_ruleset_rule_comment(const struct nftnl_rule *r)
{
        const char *comment = "";
        uint32_t len = 0;
        const void *udata = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);

        if (udata)
                nftnl_udata_parse(udata, len, comment_cb, &comment);
        return comment;
}

int nf_ruleset_rule_text(const struct nftnl_rule *r, char *buf, size_t size)
{
        struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
        struct nftnl_expr *e;
        size_t len;

        if (!it)
                return -ENOMEM;
        len = (size_t)snprintf(buf, size, "\"%s\"", nf_ruleset_rule_comment(r));
        while ((e = nftnl_expr_iter_next(it)) && len < size) {
                len += (size_t)snprintf(buf + len, size - len, " [ %s ", nftnl_expr_get_str(e, NFTNL_EXPR_NAME));
                if (len < size) {
                        int n = nftnl_expr_snprintf(buf + len, size - len, e, NFTNL_OUTPUT_DEFAULT, 0);
                        len += n > 0 ? (size_t)n : 0;
                }
                if (len < size)
                        len += (size_t)snprintf(buf + len, size - len, "]");
        }
        nftnl_expr_iter_destroy(it);
        return len < size ? 0 : -ENOBUFS;
}
