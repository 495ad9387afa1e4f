/* One end of the vpsd <-> vpsd-edge socketpair on a libuv loop: messages
 * (common/edge_proto.h) in as callbacks, out through a bounded queue so
 * that a sender never blocks and a peer that stops reading cannot make
 * this side buffer without bound. */
#pragma once

#include <uv.h>

#include "common/edge_proto.h"
#include "common/error.h"

/* Messages queued for a peer that does not read, at most; one more and
 * the link is given up as lost. */
#define EDGE_LINK_MAX_QUEUED 4096

struct edge_link;

struct edge_link_callbacks {
        /* A valid message; fd (or -1) is the callee's to keep or close. */
        void (*message)(const struct edge_msg *msg, int fd, void *userdata);
        /* The link is gone: the peer closed it, sent a malformed message
         * (err says what), or stopped reading. Nothing more is delivered;
         * the callee frees the link. */
        void (*lost)(const struct error *err, void *userdata);
};

/* Takes fd (a SOCK_SEQPACKET socket, made non-blocking here). */
int edge_link_open(uv_loop_t *loop, int fd, const struct edge_link_callbacks *callbacks, void *userdata,
                   struct edge_link **ret_link, struct error *err);

/* Sends msg with a duplicate of fd attached when fd >= 0 (the caller keeps
 * fd). Queues when the socket is full. -EINVAL for a message that cannot
 * be encoded (edge_msg_encode(); the link lives on), -ENOBUFS when the
 * queue is full (the link is then reported lost), -ENOTCONN once it is
 * lost. */
int edge_link_send(struct edge_link *link, const struct edge_msg *msg, int fd);

/* Closes the socket and drops the queue; the memory goes once the loop has
 * closed the handle. Accepts NULL; returns NULL. */
struct edge_link *edge_link_close(struct edge_link *link);
