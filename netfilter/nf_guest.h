/* What one guest puts in the table: its set and map elements and its
 * stateful objects (its "footprint"), and the copy of a guest the model
 * keeps. Pure: no netlink here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netfilter/nf.h"
#include "netfilter/nf_ruleset.h"

/* One set or map element. For an object map, data is the object's name;
 * else "". version distinguishes two
 * elements that send alike but refer to different objects of one name (a
 * limit at a new rate), so a speed change replaces the element too. */
struct nf_elem {
        uint8_t set; /* enum nf_set_id */
        uint8_t key_len;
        uint8_t key[NF_KEY_MAX];
        char data[NF_NAME_MAX];
        uint64_t version;
};

/* A counter (starting from packets/bytes) or a limit (rate_bytes per s). */
struct nf_obj {
        uint32_t type; /* NFT_OBJECT_COUNTER or NFT_OBJECT_LIMIT */
        char name[NF_NAME_MAX];
        uint64_t rate_bytes;
        uint64_t packets, bytes;
};

struct nf_footprint {
        struct nf_elem *elems;
        size_t n_elems, cap_elems;
        struct nf_obj *objs;
        size_t n_objs, cap_objs;
};

/* Appends what g puts in the table (g must be valid). -ENOMEM. */
int nf_footprint_add(struct nf_footprint *fp, const struct nf_guest *g);
/* Sorts elements by set then key, objects by type then name, so that two
 * footprints can be merged and one set's elements are contiguous. */
void nf_footprint_sort(struct nf_footprint *fp);
void nf_footprint_free(struct nf_footprint *fp);

int nf_elem_cmp(const struct nf_elem *a, const struct nf_elem *b);
/* Orders by identity only: type and name (a counter's value is no part). */
int nf_obj_cmp(const struct nf_obj *a, const struct nf_obj *b);
/* Same identity and same settings: nothing to send. */
bool nf_obj_equal(const struct nf_obj *a, const struct nf_obj *b);

/* "ip4 { "vnet0" . 10.0.0.2 }" for messages. */
void nf_elem_format(const struct nf_elem *e, char *buf, size_t size);

/* Object names: "tx_vnet0" (from the guest) and "rx_vnet0" (to it): the
 * prefix has a fixed length, so no two ports share a name, and the names
 * need no quoting in `nft list counter bridge vpsd tx_vnet0`. */
void nf_obj_name(char *buf, size_t size, bool tx, const char *ifname);

/* The link-local address the guest derives from its MAC (modified EUI-64,
 * RFC 4291 appendix A). */
void nf_link_local_from_mac(const uint8_t mac[6], struct in6_addr *ret);

/* Interface names we accept: 1-15 of [A-Za-z0-9_.-], not "." or "..". */
bool nf_ifname_valid(const char *ifname, size_t size);

/* A deep copy the model owns (arrays malloc'd), and its release. */
struct nf_guest *nf_guest_dup(const struct nf_guest *g);
struct nf_guest *nf_guest_free(struct nf_guest *g);

/* libnftnl forms: a set holding these elements of one set (for NEWSETELEM
 * with their data, for DELSETELEM keys only), and an object. NULL when out
 * of memory. */
struct nftnl_set *nf_elems_build(const char *table, enum nf_set_id set, const struct nf_elem *const *elems, size_t n,
                                 bool with_data);
struct nftnl_obj *nf_obj_build(const char *table, const struct nf_obj *o);
