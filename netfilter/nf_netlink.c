/* Batches and requests on the nf_tables netlink socket. */
#include "netfilter/nf_netlink.h"

#include <errno.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/util.h"

/* Room kept free for the message being built: libnftnl writes without
 * bounds, so no one message may be longer (element messages are cut well
 * below it). */
#define BATCH_MESSAGE_MAX (64 * 1024)
/* What one acknowledgment costs in our receive buffer (its skb's truesize,
 * generously): the kernel queues every ack before we read the first, and
 * drops what does not fit. */
#define ACK_TRUESIZE 1280
/* Dump replies come in skbs of up to 32 KiB; more is harmless. */
#define RECEIVE_BUFFER (64 * 1024)
#define DUMP_ATTEMPTS 5

int nf_socket_open(struct nf_socket *s, struct error *err)
{
        int on = 1;

        memset(s, 0, sizeof(*s));
        s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
        if (!s->nl)
                return error_set_errno(err, -errno, "netlink socket (NETLINK_NETFILTER)");
        if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                int r = -errno;
                nf_socket_close(s);
                return error_set_errno(err, r, "bind netlink socket");
        }
        /* Errors name the attribute (extended ack); acks do not echo our
         * whole message back (capped), which keeps big batches' acks small. */
        mnl_socket_setsockopt(s->nl, NETLINK_EXT_ACK, &on, sizeof(on));
        mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &on, sizeof(on));
        s->portid = mnl_socket_get_portid(s->nl);
        s->seq = (uint32_t)time_now_mono_ms();
        return 0;
}

void nf_socket_close(struct nf_socket *s)
{
        if (s->nl)
                mnl_socket_close(s->nl);
        s->nl = NULL;
}

/* Grows SO_SNDBUF or SO_RCVBUF to at least want bytes. The FORCE variants
 * pass the sysctl caps (we hold CAP_NET_ADMIN, or nf_tables would refuse
 * us anyway); the plain ones are the fallback. */
static void socket_buffer_grow(struct nf_socket *s, bool send, int want)
{
        int fd = mnl_socket_get_fd(s->nl);
        int *have = send ? &s->sndbuf : &s->rcvbuf;

        if (want <= *have)
                return;
        if (setsockopt(fd, SOL_SOCKET, send ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &want, sizeof(want)) < 0)
                setsockopt(fd, SOL_SOCKET, send ? SO_SNDBUF : SO_RCVBUF, &want, sizeof(want));
        *have = want;
}

/* ------------------------------------------------------------------ batch */

struct batch_msg {
        uint32_t seq;
        bool acked;
        char what[120];
        const struct nf_elem *const *elems;
        size_t n_elems;
};

/* The batch is one buffer, zeroed as it grows: libmnl (1.0.4) leaves the
 * padding of attributes unwritten, and the kernel should not be handed our
 * stale heap. */
struct nf_batch {
        struct nf_socket *s;
        char *buf;
        size_t len, buf_cap;
        struct batch_msg *msgs; /* [0] is BATCH_BEGIN, [n-1] BATCH_END once sent */
        size_t n, cap;
        uint32_t seq_base;
};

/* Where the next message goes, with BATCH_MESSAGE_MAX bytes of zeros. */
static char *batch_tail(struct nf_batch *b)
{
        if (b->buf_cap - b->len < BATCH_MESSAGE_MAX) {
                size_t cap = b->buf_cap ? b->buf_cap * 2 : 4 * BATCH_MESSAGE_MAX;
                char *buf = realloc(b->buf, cap);
                if (!buf)
                        return NULL;
                memset(buf + b->buf_cap, 0, cap - b->buf_cap);
                b->buf = buf;
                b->buf_cap = cap;
        }
        return b->buf + b->len;
}

/* Takes the message just built at the tail into the batch. */
static void batch_next(struct nf_batch *b)
{
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)(b->buf + b->len);

        b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

static struct batch_msg *msg_new(struct nf_batch *b)
{
        struct batch_msg *m;

        if (array_reserve(&b->msgs, &b->cap, b->n, sizeof(*b->msgs)) < 0)
                return NULL;
        m = &b->msgs[b->n];
        memset(m, 0, sizeof(*m));
        m->seq = b->seq_base + (uint32_t)b->n;
        b->n++;
        return m;
}

struct nf_batch *nf_batch_new(struct nf_socket *s)
{
        struct nf_batch *b = calloc(1, sizeof(*b));
        struct batch_msg *m;
        char *tail;

        if (!b)
                return NULL;
        b->s = s;
        b->seq_base = s->seq;
        if (!(m = msg_new(b)) || !(tail = batch_tail(b)))
                return nf_batch_free(b);
        snprintf(m->what, sizeof(m->what), "batch begin");
        nftnl_batch_begin(tail, m->seq);
        batch_next(b);
        return b;
}

struct nf_batch *nf_batch_free(struct nf_batch *b)
{
        if (b) {
                free(b->buf);
                free(b->msgs);
                free(b);
        }
        return NULL;
}

/* Starts a message at the tail; batch_next() takes it once built. */
static struct nlmsghdr *batch_add(struct nf_batch *b, uint16_t type, uint16_t flags, const struct nf_elem *const *elems,
                                  size_t n, const char *what, va_list ap)
{
        struct batch_msg *m = msg_new(b);
        char *tail = batch_tail(b);

        if (!m || !tail)
                return NULL;
        vsnprintf(m->what, sizeof(m->what), what, ap);
        m->elems = elems;
        m->n_elems = n;
        return nftnl_nlmsg_build_hdr(tail, type, NFPROTO_BRIDGE, flags | NLM_F_ACK, m->seq);
}

void nf_kind_free(enum nf_kind kind, void *obj)
{
        if (!obj)
                return;
        switch (kind) {
        case NF_KIND_TABLE:
                nftnl_table_free(obj);
                break;
        case NF_KIND_CHAIN:
                nftnl_chain_free(obj);
                break;
        case NF_KIND_SET:
        case NF_KIND_ELEMS:
                nftnl_set_free(obj);
                break;
        case NF_KIND_RULE:
                nftnl_rule_free(obj);
                break;
        case NF_KIND_OBJ:
                nftnl_obj_free(obj);
                break;
        }
}

int nf_batch_put(struct nf_batch *b, enum nf_kind kind, void *obj, bool keep, uint16_t type, uint16_t flags,
                 const struct nf_elem *const *elems, size_t n, const char *what, ...)
{
        struct nlmsghdr *nlh = NULL;
        va_list ap;

        va_start(ap, what);
        if (obj)
                nlh = batch_add(b, type, flags, elems, n, what, ap);
        va_end(ap);
        if (nlh) {
                switch (kind) {
                case NF_KIND_TABLE:
                        nftnl_table_nlmsg_build_payload(nlh, obj);
                        break;
                case NF_KIND_CHAIN:
                        nftnl_chain_nlmsg_build_payload(nlh, obj);
                        break;
                case NF_KIND_SET:
                        nftnl_set_nlmsg_build_payload(nlh, obj);
                        break;
                case NF_KIND_ELEMS:
                        nftnl_set_elems_nlmsg_build_payload(nlh, obj);
                        break;
                case NF_KIND_RULE:
                        nftnl_rule_nlmsg_build_payload(nlh, obj);
                        break;
                case NF_KIND_OBJ:
                        nftnl_obj_nlmsg_build_payload(nlh, obj);
                        break;
                }
                batch_next(b);
        }
        if (!keep)
                nf_kind_free(kind, obj);
        return nlh ? 0 : -ENOMEM;
}

void *nf_kind_parse(enum nf_kind kind, const struct nlmsghdr *nlh, const char *table)
{
        const char *of = NULL;
        void *obj = NULL;

        switch (kind) {
        case NF_KIND_TABLE:
                if ((obj = nftnl_table_alloc()) && nftnl_table_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_table_get_str(obj, NFTNL_TABLE_NAME);
                break;
        case NF_KIND_CHAIN:
                if ((obj = nftnl_chain_alloc()) && nftnl_chain_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_chain_get_str(obj, NFTNL_CHAIN_TABLE);
                break;
        case NF_KIND_SET:
                if ((obj = nftnl_set_alloc()) && nftnl_set_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_set_get_str(obj, NFTNL_SET_TABLE);
                break;
        case NF_KIND_ELEMS:
                if ((obj = nftnl_set_alloc()) && nftnl_set_elems_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_set_get_str(obj, NFTNL_SET_TABLE);
                break;
        case NF_KIND_RULE:
                if ((obj = nftnl_rule_alloc()) && nftnl_rule_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_rule_get_str(obj, NFTNL_RULE_TABLE);
                break;
        case NF_KIND_OBJ:
                if ((obj = nftnl_obj_alloc()) && nftnl_obj_nlmsg_parse(nlh, obj) == 0)
                        of = nftnl_obj_get_str(obj, NFTNL_OBJ_TABLE);
                break;
        }
        if (!of || strcmp(of, table) != 0) {
                nf_kind_free(kind, obj);
                return NULL;
        }
        return obj;
}

size_t nf_batch_count(const struct nf_batch *b)
{
        return b->n - 1;
}

/* The message we sent with this sequence number, found in the batch's
 * pages (only needed to explain an error). */
static const struct nlmsghdr *batch_find(const struct nf_batch *b, uint32_t seq)
{
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)b->buf;
        int len = (int)b->len;

        for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
                if (nlh->nlmsg_seq == seq)
                        return nlh;
        return NULL;
}

/* The index of the element whose attribute holds byte `offset` of the
 * message, or -1. */
static long element_at(const struct nlmsghdr *nlh, uint32_t offset)
{
        const struct nlattr *attr, *elem;
        long i = 0;

        mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg))
        {
                if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS)
                        continue;
                mnl_attr_for_each_nested(elem, attr)
                {
                        uint32_t start = (uint32_t)((const char *)elem - (const char *)nlh);
                        if (offset >= start && offset < start + elem->nla_len)
                                return i;
                        i++;
                }
        }
        return -1;
}

struct ack {
        uint32_t seq;
        int error;
        const char *text;  /* the kernel's extended-ack message, or NULL */
        uint32_t offset;   /* of the attribute it points at, or 0 */
};

static int ack_tlv_cb(const struct nlattr *attr, void *data)
{
        struct ack *a = data;

        if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
                a->text = mnl_attr_get_str(attr);
        else if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS && mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
                a->offset = mnl_attr_get_u32(attr);
        return MNL_CB_OK;
}

/* Parses one NLMSG_ERROR (an ack when error is 0). false if it is not one. */
static bool ack_parse(const struct nlmsghdr *nlh, struct ack *a)
{
        const struct nlmsgerr *e;
        size_t header;

        memset(a, 0, sizeof(*a));
        if (nlh->nlmsg_type != NLMSG_ERROR || mnl_nlmsg_get_payload_len(nlh) < sizeof(*e))
                return false;
        e = mnl_nlmsg_get_payload(nlh);
        a->seq = e->msg.nlmsg_seq;
        a->error = e->error;
        if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
                header = sizeof(*e);
                if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
                        header += e->msg.nlmsg_len - sizeof(e->msg);
                mnl_attr_parse(nlh, (unsigned)header, ack_tlv_cb, a);
        }
        return true;
}

static int batch_error(const struct nf_batch *b, const struct batch_msg *m, const struct ack *a, struct error *err)
{
        char element[160] = "";
        long i;

        if (a->offset && m->elems) {
                const struct nlmsghdr *sent = batch_find(b, m->seq);
                i = sent ? element_at(sent, a->offset) : -1;
                if (i >= 0 && (size_t)i < m->n_elems) {
                        size_t n = (size_t)snprintf(element, sizeof(element), ": element ");
                        nf_elem_format(m->elems[i], element + n, sizeof(element) - n);
                }
        }
        if (a->text && a->text[0])
                return error_set(err, a->error, "%s%s: %s (%s)", m->what, element, strerror(-a->error), a->text);
        return error_set(err, a->error, "%s%s: %s", m->what, element, strerror(-a->error));
}

/* Reads acknowledgments until none is pending; waits up to wait_ms for the
 * first. Records the first refusal (by batch order) in *first. */
static int batch_read_acks(struct nf_batch *b, int wait_ms, size_t *acked, struct error *first_err, size_t *first)
{
        int fd = mnl_socket_get_fd(b->s->nl);
        char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        if (wait_ms && poll(&pfd, 1, wait_ms) <= 0)
                return 0;
        for (;;) {
                ssize_t len = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
                int left = (int)len;
                if (len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                if (len < 0 && errno == EINTR)
                        continue;
                if (len < 0)
                        return -errno;
                for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
                        struct ack a;
                        size_t i;
                        if (!ack_parse(nlh, &a) || a.seq - b->seq_base >= b->n)
                                continue; /* not an answer to this batch */
                        i = a.seq - b->seq_base;
                        if (!b->msgs[i].acked)
                                (*acked)++;
                        b->msgs[i].acked = true;
                        if (a.error < 0 && i < *first) {
                                *first = i;
                                batch_error(b, &b->msgs[i], &a, first_err);
                        }
                }
        }
}

int nf_batch_send(struct nf_batch *b, struct error *err)
{
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        struct batch_msg *end = msg_new(b);
        char *tail = batch_tail(b);
        size_t total, acked = 0, first = SIZE_MAX, expected;
        int r;

        if (!end || !tail)
                return error_set(err, -ENOMEM, "batch end");
        snprintf(end->what, sizeof(end->what), "batch end");
        nftnl_batch_end(tail, end->seq);
        batch_next(b);
        total = b->len;
        expected = b->n - 2; /* begin and end ask for none */
        socket_buffer_grow(b->s, true, (int)total + 4096);
        socket_buffer_grow(b->s, false, (int)(expected * ACK_TRUESIZE) + RECEIVE_BUFFER);
        b->s->seq += (uint32_t)b->n;

        if (sendto(mnl_socket_get_fd(b->s->nl), b->buf, b->len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
                return error_set_errno(err, -errno, "send batch of %zu messages (%zu bytes)", b->n, total);
        /* nfnetlink handles the batch inside sendmsg(), so every answer is
         * queued by now; the wait is only a safety net. */
        r = batch_read_acks(b, 0, &acked, err, &first);
        if (r == 0 && acked < expected && first == SIZE_MAX)
                r = batch_read_acks(b, 2000, &acked, err, &first);
        if (r == -ENOBUFS)
                return error_set(err, -ENOBUFS, "batch of %zu messages: acknowledgments lost (receive buffer full)",
                                 b->n);
        if (r < 0)
                return error_set_errno(err, r, "read batch acknowledgments");
        if (first != SIZE_MAX)
                return err ? err->code : -EIO;
        if (acked < expected)
                return error_set(err, -EPROTO, "batch: the kernel acknowledged %zu of %zu messages", acked, expected);
        return 0;
}

/* --------------------------------------------------------------- requests */

/* Whether the buffer holds the end of a dump (or an error ending it). */
static bool holds_end(const char *buf, ssize_t len)
{
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
        int left = (int)len;

        for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left))
                if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR)
                        return true;
        return false;
}

int nf_socket_request(struct nf_socket *s, struct nlmsghdr *req, const struct nf_request *r)
{
        cleanup_free char *buf = malloc(RECEIVE_BUFFER);

        if (!buf)
                return -ENOMEM;
        for (int attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
                ssize_t len;
                int ret;

                req->nlmsg_seq = ++s->seq;
                if (attempt && r->reset)
                        r->reset(r->data);
                if (mnl_socket_sendto(s->nl, req, req->nlmsg_len) < 0)
                        return -errno;
                do {
                        len = mnl_socket_recvfrom(s->nl, buf, RECEIVE_BUFFER);
                        if (len < 0)
                                return -errno;
                        errno = 0;
                        ret = mnl_cb_run(buf, (size_t)len, req->nlmsg_seq, s->portid, r->cb, r->data);
                } while (ret > 0);
                if (ret == 0)
                        return 0;
                if (errno != EINTR)
                        return errno ? -errno : -EIO;
                /* The ruleset changed during the dump: read the rest of it
                 * away, then ask again. */
                while (!holds_end(buf, len))
                        if ((len = mnl_socket_recvfrom(s->nl, buf, RECEIVE_BUFFER)) < 0)
                                return -errno;
        }
        return -EINTR;
}
