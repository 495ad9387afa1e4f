/* The fixed part of our table, as libnftnl objects: the table, its sets and
 * maps (empty), its chains and every rule, plus builders for set elements
 * and stateful objects. Nothing here talks to the kernel, so the unit tests
 * can build, serialize and parse all of it. The layout is in
 * docs/netfilter.md. */
#pragma once

#include <libnftnl/chain.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <stddef.h>
#include <stdint.h>

/* Every set and map, in the order they are created. */
enum nf_set_id {
        NF_SET_PORTS,       /* ifname: the ports we manage */
        NF_SET_SUSPENDED,   /* ifname */
        NF_SET_IP6_PORTS,   /* ifname: ports with IPv6 allocated */
        NF_SET_MACS,        /* ifname . ether_addr */
        NF_SET_IP4,         /* ifname . ipv4_addr */
        NF_SET_ARP,         /* ifname . ether_addr . ipv4_addr (sender) */
        NF_SET_IP6,         /* ifname . ipv6_addr */
        NF_SET_SOLICITED,   /* ifname . ipv6_addr: solicited-node groups */
        NF_SET_FAMILIES,    /* ifname . ether_type: IPv4 and ARP, IPv6, if it has addresses of them */
        NF_MAP_TX_COUNTER,  /* ifname : counter */
        NF_MAP_RX_COUNTER,  /* ifname : counter */
        NF_MAP_TX_LIMIT,    /* ifname : limit */
        NF_MAP_RX_LIMIT,    /* ifname : limit */
        NF_SET_COUNT,
};

enum nf_field {
        NF_FIELD_IFNAME,
        NF_FIELD_ETHER,
        NF_FIELD_IPV4,
        NF_FIELD_IPV6,
        NF_FIELD_ETHERTYPE,
};

#define NF_FIELDS_MAX 3
/* Longest key: ifname . ipv6_addr. */
#define NF_KEY_MAX 32
/* Names we give chains and objects ("tx_" + an interface name). */
#define NF_NAME_MAX 24

struct nf_set_def {
        const char *name;
        enum nf_field fields[NF_FIELDS_MAX];
        unsigned n_fields;
        uint32_t flags;    /* NFT_SET_OBJECT (object map) or 0 */
        uint32_t obj_type; /* NFT_OBJECT_*, for object maps */
};

const struct nf_set_def *nf_set_def(enum nf_set_id id);
/* The key's length: every field padded to 4 bytes, as in registers. */
uint32_t nf_set_key_len(enum nf_set_id id);
/* A field's length in a key (padded) and in the packet (not padded). */
uint32_t nf_field_key_len(enum nf_field f);

/* Rules and chains, in the order they are created. */
struct nf_chain_def {
        const char *name;
        int hook; /* NF_BR_*, or -1 for a regular chain */
};

size_t nf_chain_count(void);
const struct nf_chain_def *nf_chain_def(size_t i);

/* The allocating builders below return NULL only when out of memory. */
struct nftnl_table *nf_ruleset_table(const char *table);
struct nftnl_set *nf_ruleset_set(const char *table, enum nf_set_id id);
struct nftnl_chain *nf_ruleset_chain(const char *table, size_t i);

/* Every rule of the table, in chain order then rule order. *ret is an
 * array of *ret_n rules; free with nf_ruleset_rules_free(). */
int nf_ruleset_rules(const char *table, struct nftnl_rule ***ret, size_t *ret_n);
void nf_ruleset_rules_free(struct nftnl_rule **rules, size_t n);
/* The rule's comment (its user data), for messages; "" if it has none. */
const char *nf_ruleset_rule_comment(const struct nftnl_rule *r);

/* A rule's expressions as libnftnl prints them, plus its comment: what
 * nf_check() compares, so that a rule parsed from a kernel dump compares
 * equal to the one we built. */
int nf_ruleset_rule_text(const struct nftnl_rule *r, char *buf, size_t size);

/* Stateful objects: a counter starting from packets/bytes, or a limit that
 * matches (so the rule drops) over rate_bytes per second. */
struct nftnl_obj *nf_ruleset_counter(const char *table, const char *name, uint64_t packets, uint64_t bytes);
struct nftnl_obj *nf_ruleset_limit(const char *table, const char *name, uint64_t rate_bytes);
