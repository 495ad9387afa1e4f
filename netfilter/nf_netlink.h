/* Talking to nf_tables: batches and requests on one netlink socket.
 *
 * A batch is one logical change: BATCH_BEGIN, messages, BATCH_END in one
 * sendmsg(), which the kernel commits or aborts as a whole. Every message
 * asks for an acknowledgment and every one is read back, so when the kernel
 * refuses the batch the error names the message it refused (and, for a set
 * element, the element, from the extended ack's attribute offset). */
#pragma once

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "netfilter/nf_guest.h"

struct nf_socket {
        struct mnl_socket *nl;
        uint32_t portid;
        uint32_t seq;
        int sndbuf, rcvbuf; /* what we set; grown for big batches */
};

int nf_socket_open(struct nf_socket *s, struct error *err);
void nf_socket_close(struct nf_socket *s);

struct nf_batch;

struct nf_batch *nf_batch_new(struct nf_socket *s);
struct nf_batch *nf_batch_free(struct nf_batch *b);

/* The libnftnl objects a batch carries and a dump returns. ELEMS is a
 * struct nftnl_set holding elements (NEWSETELEM, DELSETELEM). */
enum nf_kind { NF_KIND_TABLE, NF_KIND_CHAIN, NF_KIND_SET, NF_KIND_ELEMS, NF_KIND_RULE, NF_KIND_OBJ };

/* Adds obj, a struct nftnl_<kind>, as one message of type NFT_MSG_*
 * (family bridge, NLM_F_ACK added), then frees obj unless keep. obj NULL
 * (its allocation failed) gives -ENOMEM. what (printf format) names the
 * message in errors; elems, when not NULL, are the n elements it carries,
 * in order (borrowed until nf_batch_send() returns). */
int nf_batch_put(struct nf_batch *b, enum nf_kind kind, void *obj, bool keep, uint16_t type, uint16_t flags,
                 const struct nf_elem *const *elems, size_t n, const char *what, ...)
        __attribute__((format(printf, 9, 10)));

/* A dumped message as a struct nftnl_<kind> of table `table`; NULL when it
 * belongs to another table, does not parse, or memory ran out. */
void *nf_kind_parse(enum nf_kind kind, const struct nlmsghdr *nlh, const char *table);
void nf_kind_free(enum nf_kind kind, void *obj);

/* Messages added so far. */
size_t nf_batch_count(const struct nf_batch *b);

/* Sends the batch and reads every acknowledgment. 0 when the kernel
 * committed it; else the first refusal, named. */
int nf_batch_send(struct nf_batch *b, struct error *err);

/* Room for one request message (a table, set or object name and a type).
 * Zero it before building: libmnl leaves attribute padding unwritten. */
#define NF_REQUEST_MAX 1024

/* A request (a GET, or a dump with NLM_F_DUMP) and its replies: cb gets
 * each reply message. A dump the kernel marks interrupted (the ruleset
 * changed meanwhile) is asked again, after reset(data), a few times. */
struct nf_request {
        mnl_cb_t cb;
        void (*reset)(void *data);
        void *data;
};
int nf_socket_request(struct nf_socket *s, struct nlmsghdr *req, const struct nf_request *r);
