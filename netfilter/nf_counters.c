/* Reading the per-port counter objects "tx_<port>" and "rx_<port>". */
#include "netfilter/nf_private.h"

#include <errno.h>
#include <linux/netfilter.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* One counter object as read. */
struct counter_read {
        char ifname[IFNAMSIZ];
        bool tx;
        uint64_t packets, bytes;
};

struct counters_dump {
        const char *table;
        struct counter_read *reads;
        size_t n, cap;
};

/* Parses a counter object; false if it is not one of our port counters. */
static bool counter_parse(const struct nlmsghdr *nlh, const char *table, struct counter_read *ret)
{
        struct nftnl_obj *o = nf_kind_parse(NF_KIND_OBJ, nlh, table);
        const char *name = o ? nftnl_obj_get_str(o, NFTNL_OBJ_NAME) : NULL;
        bool ours = name && nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) == NFT_OBJECT_COUNTER &&
                    (strncmp(name, "tx_", 3) == 0 || strncmp(name, "rx_", 3) == 0) &&
                    nf_ifname_valid(name + 3, IFNAMSIZ);

        if (ours) {
                memset(ret, 0, sizeof(*ret));
                snprintf(ret->ifname, sizeof(ret->ifname), "%s", name + 3);
                ret->tx = name[0] == 't';
                ret->packets = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS);
                ret->bytes = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES);
        }
        nf_kind_free(NF_KIND_OBJ, o);
        return ours;
}

static int counters_dump_cb(const struct nlmsghdr *nlh, void *data)
{
        struct counters_dump *d = data;
        struct counter_read read;

        if (!counter_parse(nlh, d->table, &read))
                return MNL_CB_OK;
        if (array_reserve(&d->reads, &d->cap, d->n, sizeof(*d->reads)) < 0) {
                errno = ENOMEM;
                return MNL_CB_ERROR;
        }
        d->reads[d->n++] = read;
        return MNL_CB_OK;
}

static void counters_dump_reset(void *data)
{
        ((struct counters_dump *)data)->n = 0;
}

static int counter_read_cmp(const void *a, const void *b)
{
        return strncmp(((const struct counter_read *)a)->ifname, ((const struct counter_read *)b)->ifname, IFNAMSIZ);
}

static void counters_add(struct nf_counters *c, const struct counter_read *read)
{
        if (read->tx) {
                c->tx_packets = read->packets;
                c->tx_bytes = read->bytes;
        } else {
                c->rx_packets = read->packets;
                c->rx_bytes = read->bytes;
        }
}

/* A request for our table's objects: one (name given) or all of a type. */
static struct nlmsghdr *obj_request(char *buf, const char *table, const char *name, uint32_t type)
{
        struct nftnl_obj *o = nftnl_obj_alloc();
        struct nlmsghdr *nlh;

        if (!o)
                return NULL;
        nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_BRIDGE);
        nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, type);
        nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
        if (name)
                nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name);
        if (!nftnl_obj_is_set(o, NFTNL_OBJ_TABLE) || (name && !nftnl_obj_is_set(o, NFTNL_OBJ_NAME))) {
                nftnl_obj_free(o);
                return NULL;
        }
        nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETOBJ, NFPROTO_BRIDGE, name ? NLM_F_ACK : NLM_F_DUMP, 0);
        nftnl_obj_nlmsg_build_payload(nlh, o);
        nftnl_obj_free(o);
        return nlh;
}

int nf_counters_dump(struct nf *nf, struct nf_port_counters **ret, size_t *ret_n)
{
        char buf[NF_REQUEST_MAX] __attribute__((aligned(NLMSG_ALIGNTO))) = { 0 };
        struct counters_dump d = { .table = nf->table };
        struct nf_request req = { counters_dump_cb, counters_dump_reset, &d };
        struct nlmsghdr *nlh = obj_request(buf, nf->table, NULL, NFT_OBJECT_COUNTER);
        struct nf_port_counters *out;
        size_t n = 0;
        int r;

        if (!nlh)
                return -ENOMEM;
        r = nf_socket_request(&nf->sock, nlh, &req);
        if (r < 0) {
                free(d.reads);
                return r;
        }
        /* A dump of a table that does not exist is empty, not an error:
         * ask for the table itself to tell the two apart. */
        if (d.n == 0) {
                struct nftnl_table *t = nf_ruleset_table(nf->table);
                if (!t)
                        return -ENOMEM;
                nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_BRIDGE, NLM_F_ACK, 0);
                nftnl_table_nlmsg_build_payload(nlh, t);
                nftnl_table_free(t);
                r = nf_socket_request(&nf->sock, nlh, &(struct nf_request){ NULL, NULL, NULL });
                if (r < 0)
                        return r;
        }
        if (d.n)
                qsort(d.reads, d.n, sizeof(*d.reads), counter_read_cmp);
        out = calloc(d.n ? d.n : 1, sizeof(*out));
        if (!out) {
                free(d.reads);
                return -ENOMEM;
        }
        for (size_t i = 0; i < d.n; i++) {
                if (n == 0 || strcmp(out[n - 1].ifname, d.reads[i].ifname) != 0)
                        memcpy(out[n++].ifname, d.reads[i].ifname, IFNAMSIZ);
                counters_add(&out[n - 1].counters, &d.reads[i]);
        }
        free(d.reads);
        *ret = out;
        *ret_n = n;
        return 0;
}

int nf_counters_read_all(struct nf *nf, struct nf_port_counters **ret, size_t *ret_n, struct error *err)
{
        int r = nf_counters_dump(nf, ret, ret_n);

        if (r < 0)
                return error_set_errno(err, r, "table %s: read counters", nf->table);
        return 0;
}

static int counter_one_cb(const struct nlmsghdr *nlh, void *data)
{
        struct counters_dump *d = data;

        if (d->n < d->cap && counter_parse(nlh, d->table, &d->reads[d->n]))
                d->n++;
        return MNL_CB_OK;
}

int nf_counters_read(struct nf *nf, const char *ifname, struct nf_counters *ret, struct error *err)
{
        char buf[NF_REQUEST_MAX] __attribute__((aligned(NLMSG_ALIGNTO))) = { 0 };
        struct nf_counters c = { 0 };

        if (!nf_ifname_valid(ifname, IFNAMSIZ))
                return error_set(err, -EINVAL, "guest port `%.*s`: not a valid interface name", IFNAMSIZ, ifname);
        for (int tx = 1; tx >= 0; tx--) {
                struct counter_read read;
                struct counters_dump d = { .table = nf->table, .reads = &read, .cap = 1 };
                char name[NF_NAME_MAX];
                struct nlmsghdr *nlh;
                int r;

                nf_obj_name(name, sizeof(name), tx, ifname);
                nlh = obj_request(buf, nf->table, name, NFT_OBJECT_COUNTER);
                if (!nlh)
                        return error_set(err, -ENOMEM, "guest port `%s`: read counters", ifname);
                r = nf_socket_request(&nf->sock, nlh, &(struct nf_request){ counter_one_cb, NULL, &d });
                if (r == 0 && d.n == 0)
                        r = -ENOENT;
                if (r < 0)
                        return error_set_errno(err, r, "guest port `%s`: read counter %s", ifname, name);
                counters_add(&c, &read);
        }
        *ret = c;
        return 0;
}
