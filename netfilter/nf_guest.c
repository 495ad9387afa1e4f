/* One guest: its validation, and the elements and objects it puts in the
 * table. */
#include "netfilter/nf_guest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

bool nf_ifname_valid(const char *ifname, size_t size)
{
        size_t n = strnlen(ifname, size);

        if (n == 0 || n >= IFNAMSIZ || n == size)
                return false;
        if (strcmp(ifname, ".") == 0 || strcmp(ifname, "..") == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = ifname[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_.-", c)))
                        return false;
        }
        return true;
}

/* An interface name for a message: printable, even when it is not valid. */
static void ifname_printable(char out[4 * IFNAMSIZ + 1], const char *ifname)
{
        size_t o = 0;

        for (size_t i = 0; i < IFNAMSIZ && ifname[i]; i++) {
                unsigned char c = (unsigned char)ifname[i];
                if (c >= 0x20 && c < 0x7f)
                        out[o++] = (char)c;
                else
                        o += (size_t)sprintf(out + o, "\\x%02x", c);
        }
        out[o] = '\0';
}

static bool ipv4_allocatable(struct in_addr a)
{
        uint32_t h = ntohl(a.s_addr);

        return (h >> 24) != 0 && (h >> 24) != 127 && (h >> 28) != 0xe && h != 0xffffffffu;
}

static bool ipv6_allocatable(const struct in6_addr *a)
{
        return !IN6_IS_ADDR_UNSPECIFIED(a) && !IN6_IS_ADDR_LOOPBACK(a) && !IN6_IS_ADDR_MULTICAST(a) &&
               !IN6_IS_ADDR_LINKLOCAL(a);
}

static int validate_addresses(const struct nf_guest *g, const char *port, struct error *err)
{
        char text[INET6_ADDRSTRLEN];

        if (g->n_ipv4 > NF_ADDRESSES_MAX || g->n_ipv6 > NF_ADDRESSES_MAX)
                return error_set(err, -EINVAL, "guest port `%s`: more than %d addresses of one family", port,
                                 NF_ADDRESSES_MAX);
        if ((g->n_ipv4 && !g->ipv4) || (g->n_ipv6 && !g->ipv6))
                return error_set(err, -EINVAL, "guest port `%s`: address count without addresses", port);
        for (size_t i = 0; i < g->n_ipv4; i++) {
                inet_ntop(AF_INET, &g->ipv4[i], text, sizeof(text));
                if (!ipv4_allocatable(g->ipv4[i]))
                        return error_set(err, -EINVAL,
                                         "guest port `%s`: IPv4 %s is unspecified, loopback, multicast or broadcast",
                                         port, text);
                for (size_t j = 0; j < i; j++)
                        if (g->ipv4[j].s_addr == g->ipv4[i].s_addr)
                                return error_set(err, -EINVAL, "guest port `%s`: IPv4 %s given twice", port, text);
        }
        for (size_t i = 0; i < g->n_ipv6; i++) {
                inet_ntop(AF_INET6, &g->ipv6[i], text, sizeof(text));
                if (IN6_IS_ADDR_LINKLOCAL(&g->ipv6[i]))
                        return error_set(err, -EINVAL,
                                         "guest port `%s`: IPv6 %s is link-local: that one is derived from the MAC",
                                         port, text);
                if (!ipv6_allocatable(&g->ipv6[i]))
                        return error_set(err, -EINVAL, "guest port `%s`: IPv6 %s is unspecified, loopback or multicast",
                                         port, text);
                for (size_t j = 0; j < i; j++)
                        if (IN6_ARE_ADDR_EQUAL(&g->ipv6[j], &g->ipv6[i]))
                                return error_set(err, -EINVAL, "guest port `%s`: IPv6 %s given twice", port, text);
        }
        return 0;
}

int nf_guest_validate(const struct nf_guest *g, struct error *err)
{
        static const uint8_t zero[6] = { 0 };
        char port[4 * IFNAMSIZ + 1];

        ifname_printable(port, g->ifname);
        if (!nf_ifname_valid(g->ifname, sizeof(g->ifname)))
                return error_set(err, -EINVAL,
                                 "guest port `%s`: an interface name is 1 to %d of A-Z a-z 0-9 _ . - (not . or ..)",
                                 port, IFNAMSIZ - 1);
        if (memcmp(g->mac, zero, sizeof(zero)) == 0)
                return error_set(err, -EINVAL, "guest port `%s`: MAC 00:00:00:00:00:00 is not an address", port);
        if (g->mac[0] & 1)
                return error_set(err, -EINVAL, "guest port `%s`: MAC %02x:%02x:%02x:%02x:%02x:%02x is multicast", port,
                                 g->mac[0], g->mac[1], g->mac[2], g->mac[3], g->mac[4], g->mac[5]);
        if (g->port_speed_mbit > NF_PORT_SPEED_MAX_MBIT)
                return error_set(err, -EINVAL, "guest port `%s`: port speed %u Mbit/s is over %u (use 0: unlimited)",
                                 port, g->port_speed_mbit, NF_PORT_SPEED_MAX_MBIT);
        return validate_addresses(g, port, err);
}

void nf_link_local_from_mac(const uint8_t mac[6], struct in6_addr *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->s6_addr[0] = 0xfe;
        ret->s6_addr[1] = 0x80;
        ret->s6_addr[8] = mac[0] ^ 0x02;
        ret->s6_addr[9] = mac[1];
        ret->s6_addr[10] = mac[2];
        ret->s6_addr[11] = 0xff;
        ret->s6_addr[12] = 0xfe;
        ret->s6_addr[13] = mac[3];
        ret->s6_addr[14] = mac[4];
        ret->s6_addr[15] = mac[5];
}

void nf_obj_name(char *buf, size_t size, bool tx, const char *ifname)
{
        snprintf(buf, size, "%s_%s", tx ? "tx" : "rx", ifname);
}

/* ---------------------------------------------------------- footprint */

static struct nf_elem *elem_new(struct nf_footprint *fp, enum nf_set_id set, const char *ifname)
{
        struct nf_elem *e;

        if (array_reserve(&fp->elems, &fp->cap_elems, fp->n_elems, sizeof(*fp->elems)) < 0)
                return NULL;
        e = &fp->elems[fp->n_elems++];
        memset(e, 0, sizeof(*e));
        e->set = (uint8_t)set;
        /* The port name fills the key's first 16 bytes, zero-padded as
         * `meta iifname` loads it. */
        memcpy(e->key, ifname, strnlen(ifname, IFNAMSIZ - 1));
        e->key_len = (uint8_t)nf_set_key_len(set);
        return e;
}

/* Appends an element of set for the port: its key is the port name
 * followed by the n fields' values, each at its padded offset. */
static int elem_add(struct nf_footprint *fp, enum nf_set_id set, const char *ifname, const void *const *values,
                    const char *data, uint64_t version)
{
        const struct nf_set_def *def = nf_set_def(set);
        struct nf_elem *e = elem_new(fp, set, ifname);
        size_t offset = nf_field_key_len(NF_FIELD_IFNAME);

        if (!e)
                return -ENOMEM;
        for (unsigned i = 1; i < def->n_fields; i++) {
                static const size_t value_len[] = { [NF_FIELD_ETHER] = 6, [NF_FIELD_IPV4] = 4, [NF_FIELD_IPV6] = 16,
                                                    [NF_FIELD_ETHERTYPE] = 2 };
                memcpy(e->key + offset, values[i - 1], value_len[def->fields[i]]);
                offset += nf_field_key_len(def->fields[i]);
        }
        if (data)
                snprintf(e->data, sizeof(e->data), "%s", data);
        e->version = version;
        return 0;
}

static int obj_add(struct nf_footprint *fp, uint32_t type, const char *name, uint64_t rate_bytes)
{
        struct nf_obj *o;

        if (array_reserve(&fp->objs, &fp->cap_objs, fp->n_objs, sizeof(*fp->objs)) < 0)
                return -ENOMEM;
        o = &fp->objs[fp->n_objs++];
        memset(o, 0, sizeof(*o));
        o->type = type;
        snprintf(o->name, sizeof(o->name), "%s", name);
        o->rate_bytes = rate_bytes;
        return 0;
}

static int footprint_ipv4(struct nf_footprint *fp, const struct nf_guest *g)
{
        static const struct in_addr probe = { 0 };
        static const uint8_t ip[2] = { ETH_P_IP >> 8, ETH_P_IP & 0xff }, arp[2] = { ETH_P_ARP >> 8, ETH_P_ARP & 0xff };
        int r = 0;

        if (g->n_ipv4 == 0)
                return 0;
        for (size_t i = 0; i < g->n_ipv4 && r == 0; i++) {
                r = elem_add(fp, NF_SET_IP4, g->ifname, (const void *[]){ &g->ipv4[i] }, NULL, 0);
                if (r == 0)
                        r = elem_add(fp, NF_SET_ARP, g->ifname, (const void *[]){ g->mac, &g->ipv4[i] }, NULL, 0);
        }
        if (r == 0) /* ARP probes (RFC 5227): sender IP 0.0.0.0, from its MAC */
                r = elem_add(fp, NF_SET_ARP, g->ifname, (const void *[]){ g->mac, &probe }, NULL, 0);
        if (r == 0)
                r = elem_add(fp, NF_SET_FAMILIES, g->ifname, (const void *[]){ ip }, NULL, 0);
        if (r == 0)
                r = elem_add(fp, NF_SET_FAMILIES, g->ifname, (const void *[]){ arp }, NULL, 0);
        return r;
}

static void solicited_node(const struct in6_addr *a, struct in6_addr *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->s6_addr[0] = 0xff;
        ret->s6_addr[1] = 0x02;
        ret->s6_addr[11] = 0x01;
        ret->s6_addr[12] = 0xff;
        memcpy(&ret->s6_addr[13], &a->s6_addr[13], 3);
}

static int footprint_ipv6(struct nf_footprint *fp, const struct nf_guest *g)
{
        static const uint8_t ip6[2] = { ETH_P_IPV6 >> 8, ETH_P_IPV6 & 0xff };
        struct in6_addr link_local, group, groups[NF_ADDRESSES_MAX + 1];
        size_t n_groups = 0;
        int r;

        if (g->n_ipv6 == 0)
                return 0;
        nf_link_local_from_mac(g->mac, &link_local);
        r = elem_add(fp, NF_SET_IP6, g->ifname, (const void *[]){ &link_local }, NULL, 0);
        solicited_node(&link_local, &groups[n_groups++]);
        for (size_t i = 0; i < g->n_ipv6 && r == 0; i++) {
                bool seen = false;
                r = elem_add(fp, NF_SET_IP6, g->ifname, (const void *[]){ &g->ipv6[i] }, NULL, 0);
                solicited_node(&g->ipv6[i], &group);
                for (size_t j = 0; j < n_groups; j++) /* addresses ending alike share a group */
                        seen = seen || IN6_ARE_ADDR_EQUAL(&groups[j], &group);
                if (!seen)
                        groups[n_groups++] = group;
        }
        for (size_t i = 0; i < n_groups && r == 0; i++)
                r = elem_add(fp, NF_SET_SOLICITED, g->ifname, (const void *[]){ &groups[i] }, NULL, 0);
        if (r == 0)
                r = elem_add(fp, NF_SET_IP6_PORTS, g->ifname, NULL, NULL, 0);
        if (r == 0)
                r = elem_add(fp, NF_SET_FAMILIES, g->ifname, (const void *[]){ ip6 }, NULL, 0);
        return r;
}

/* Counters always, limits when the port has a speed, both directions. */
static int footprint_objects(struct nf_footprint *fp, const struct nf_guest *g)
{
        uint64_t rate = (uint64_t)g->port_speed_mbit * 1000000 / 8;
        char name[NF_NAME_MAX];
        int r = 0;

        for (int tx = 1; tx >= 0 && r == 0; tx--) {
                nf_obj_name(name, sizeof(name), tx, g->ifname);
                r = obj_add(fp, NFT_OBJECT_COUNTER, name, 0);
                if (r == 0)
                        r = elem_add(fp, tx ? NF_MAP_TX_COUNTER : NF_MAP_RX_COUNTER, g->ifname, NULL, name, 0);
                if (r == 0 && rate) {
                        r = obj_add(fp, NFT_OBJECT_LIMIT, name, rate);
                        if (r == 0)
                                r = elem_add(fp, tx ? NF_MAP_TX_LIMIT : NF_MAP_RX_LIMIT, g->ifname, NULL, name, rate);
                }
        }
        return r;
}

int nf_footprint_add(struct nf_footprint *fp, const struct nf_guest *g)
{
        int r;

        r = elem_add(fp, NF_SET_PORTS, g->ifname, NULL, NULL, 0);
        if (r == 0 && g->suspended)
                r = elem_add(fp, NF_SET_SUSPENDED, g->ifname, NULL, NULL, 0);
        if (r == 0)
                r = elem_add(fp, NF_SET_MACS, g->ifname, (const void *[]){ g->mac }, NULL, 0);
        if (r == 0)
                r = footprint_ipv4(fp, g);
        if (r == 0)
                r = footprint_ipv6(fp, g);
        if (r == 0)
                r = footprint_objects(fp, g);
        return r;
}

int nf_elem_cmp(const struct nf_elem *a, const struct nf_elem *b)
{
        int c;

        if (a->set != b->set)
                return a->set < b->set ? -1 : 1;
        c = memcmp(a->key, b->key, NF_KEY_MAX);
        if (c)
                return c;
        c = strcmp(a->data, b->data);
        if (c)
                return c;
        return a->version < b->version ? -1 : a->version > b->version;
}

int nf_obj_cmp(const struct nf_obj *a, const struct nf_obj *b)
{
        if (a->type != b->type)
                return a->type < b->type ? -1 : 1;
        return strcmp(a->name, b->name);
}

bool nf_obj_equal(const struct nf_obj *a, const struct nf_obj *b)
{
        return nf_obj_cmp(a, b) == 0 && a->rate_bytes == b->rate_bytes;
}

static int elem_qsort_cmp(const void *a, const void *b)
{
        return nf_elem_cmp(a, b);
}

static int obj_qsort_cmp(const void *a, const void *b)
{
        return nf_obj_cmp(a, b);
}

void nf_footprint_sort(struct nf_footprint *fp)
{
        if (fp->n_elems)
                qsort(fp->elems, fp->n_elems, sizeof(*fp->elems), elem_qsort_cmp);
        if (fp->n_objs)
                qsort(fp->objs, fp->n_objs, sizeof(*fp->objs), obj_qsort_cmp);
}

void nf_footprint_free(struct nf_footprint *fp)
{
        free(fp->elems);
        free(fp->objs);
        memset(fp, 0, sizeof(*fp));
}

void nf_elem_format(const struct nf_elem *e, char *buf, size_t size)
{
        const struct nf_set_def *def = nf_set_def(e->set);
        size_t len, offset = 0;

        len = (size_t)snprintf(buf, size, "%s {", def->name);
        for (unsigned i = 0; i < def->n_fields && len < size; i++) {
                const uint8_t *v = e->key + offset;
                char text[INET6_ADDRSTRLEN];
                const char *sep = i ? " ." : "";

                switch (def->fields[i]) {
                case NF_FIELD_IFNAME:
                        len += (size_t)snprintf(buf + len, size - len, "%s \"%.*s\"", sep, IFNAMSIZ, (const char *)v);
                        break;
                case NF_FIELD_ETHER:
                        len += (size_t)snprintf(buf + len, size - len, "%s %02x:%02x:%02x:%02x:%02x:%02x", sep, v[0],
                                                v[1], v[2], v[3], v[4], v[5]);
                        break;
                case NF_FIELD_IPV4:
                case NF_FIELD_IPV6:
                        inet_ntop(def->fields[i] == NF_FIELD_IPV4 ? AF_INET : AF_INET6, v, text, sizeof(text));
                        len += (size_t)snprintf(buf + len, size - len, "%s %s", sep, text);
                        break;
                case NF_FIELD_ETHERTYPE:
                        len += (size_t)snprintf(buf + len, size - len, "%s 0x%02x%02x", sep, v[0], v[1]);
                        break;
                }
                offset += nf_field_key_len(def->fields[i]);
        }
        if (len < size && e->data[0])
                len += (size_t)snprintf(buf + len, size - len, " : %s", e->data);
        if (len < size)
                snprintf(buf + len, size - len, " }");
}

struct nf_guest *nf_guest_dup(const struct nf_guest *g)
{
        struct nf_guest *copy = calloc(1, sizeof(*copy));
        struct in_addr *ipv4 = NULL;
        struct in6_addr *ipv6 = NULL;

        if (!copy)
                return NULL;
        *copy = *g;
        if (g->n_ipv4) {
                ipv4 = malloc(g->n_ipv4 * sizeof(*ipv4));
                if (!ipv4)
                        goto fail;
                memcpy(ipv4, g->ipv4, g->n_ipv4 * sizeof(*ipv4));
        }
        if (g->n_ipv6) {
                ipv6 = malloc(g->n_ipv6 * sizeof(*ipv6));
                if (!ipv6)
                        goto fail;
                memcpy(ipv6, g->ipv6, g->n_ipv6 * sizeof(*ipv6));
        }
        copy->ipv4 = ipv4;
        copy->ipv6 = ipv6;
        return copy;
fail:
        free(ipv4);
        free(copy);
        return NULL;
}

struct nf_guest *nf_guest_free(struct nf_guest *g)
{
        if (g) {
                free((void *)g->ipv4);
                free((void *)g->ipv6);
                free(g);
        }
        return NULL;
}

struct nftnl_set *nf_elems_build(const char *table, enum nf_set_id set, const struct nf_elem *const *elems, size_t n,
                                 bool with_data)
{
        const struct nf_set_def *def = nf_set_def(set);
        struct nftnl_set *s = nftnl_set_alloc();

        if (!s)
                return NULL;
        nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_BRIDGE);
        if (nftnl_set_set_str(s, NFTNL_SET_TABLE, table) < 0 || nftnl_set_set_str(s, NFTNL_SET_NAME, def->name) < 0)
                goto fail;
        for (size_t i = 0; i < n; i++) {
                struct nftnl_set_elem *e = nftnl_set_elem_alloc();
                if (!e)
                        goto fail;
                nftnl_set_elem_add(s, e);
                if (nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, elems[i]->key, elems[i]->key_len) < 0)
                        goto fail;
                if (!with_data)
                        continue;
                if ((def->flags & NFT_SET_OBJECT) && nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_OBJREF, elems[i]->data) < 0)
                        goto fail;
        }
        return s;
fail:
        nftnl_set_free(s);
        return NULL;
}

struct nftnl_obj *nf_obj_build(const char *table, const struct nf_obj *o)
{
        if (o->type == NFT_OBJECT_LIMIT)
                return nf_ruleset_limit(table, o->name, o->rate_bytes);
        return nf_ruleset_counter(table, o->name, o->packets, o->bytes);
}
