/* The messages between vpsd and vpsd-edge over their socketpair
 * (SOCK_SEQPACKET: one message per datagram, so no framing, and a file
 * descriptor rides along with SCM_RIGHTS). Both ends use this codec; each
 * checks every message it receives, the privileged end most of all.
 *
 *   edge -> vpsd  READY   the edge listens and has dropped its privileges
 *   edge -> vpsd  OPEN    session, console kind, client address, ticket
 *   vpsd -> edge  GRANT   session; the connected console socket is attached
 *   vpsd -> edge  REFUSE  session (never why: the client learns nothing)
 *   vpsd -> edge  CLOSE   session: end it now (vpsd also shuts its copy down)
 *   edge -> vpsd  CLOSED  session ended; vpsd drops its copy and counts it
 *
 * An ISO upload (docs/iso.md) is a session too:
 *   edge -> vpsd  UPLOAD         session, client address, ticket, text = the label
 *   vpsd -> edge  GRANT          session; the write end of a pipe is attached: the body goes there
 *   edge -> vpsd  UPLOAD_DONE    session, size = the body's bytes, all written and the pipe closed
 *   edge -> vpsd  UPLOAD_ABORT   session: the client went away; vpsd keeps nothing
 *   vpsd -> edge  UPLOAD_RESULT  session, status (an HTTP status), text = the ISO id or why not,
 *                                for the customer: at any time, ending the upload */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum console_kind {
        CONSOLE_VNC,
        CONSOLE_SERIAL,
        CONSOLE_KIND_COUNT,
};

/* "vnc", "serial"; parse: -EINVAL for anything else. */
const char *console_kind_name(enum console_kind kind);
int console_kind_parse(const char *name, enum console_kind *ret_kind);

enum edge_msg_type {
        EDGE_MSG_READY = 1,
        EDGE_MSG_OPEN,
        EDGE_MSG_GRANT,
        EDGE_MSG_REFUSE,
        EDGE_MSG_CLOSE,
        EDGE_MSG_CLOSED,
        EDGE_MSG_UPLOAD,
        EDGE_MSG_UPLOAD_DONE,
        EDGE_MSG_UPLOAD_ABORT,
        EDGE_MSG_UPLOAD_RESULT,
};

#define EDGE_TICKET_MAX 1024 /* bytes of a ticket, as the client sent it */
#define EDGE_ADDRESS_MAX 64  /* "ipv6%scope" or "a.b.c.d", no port */
#define EDGE_TEXT_MAX 200    /* a label or a customer-facing message: printable ASCII, spaces too */
#define EDGE_MSG_MAX 2048    /* one message on the wire */

struct edge_msg {
        enum edge_msg_type type;
        uint64_t session;              /* chosen by the edge, unique while it runs */
        enum console_kind kind;        /* OPEN */
        char address[EDGE_ADDRESS_MAX + 1]; /* OPEN: the client's address; READY: the address listened on */
        char ticket[EDGE_TICKET_MAX + 1];   /* OPEN */
        uint16_t port;                 /* READY: the port listened on */
        char text[EDGE_TEXT_MAX + 1];  /* UPLOAD: the label; UPLOAD_RESULT: the ISO id or why not */
        uint16_t status;               /* UPLOAD_RESULT: an HTTP status */
        uint64_t size;                 /* UPLOAD_DONE: bytes written to the pipe */
};

/* Whether a message of type carries the upload fields (text, status, size). */
bool edge_msg_is_upload(enum edge_msg_type type);

/* A ticket as a message carries it: at most EDGE_TICKET_MAX bytes of
 * printable ASCII without spaces. */
bool edge_ticket_valid(const char *ticket);

/* Encodes msg into buf[size]; returns its length or -EINVAL (a field out
 * of range, or a string edge_msg_decode() would refuse) / -ENOBUFS. */
int edge_msg_encode(const struct edge_msg *msg, uint8_t *buf, size_t size);

/* Decodes and validates one message: the type known, every length within
 * its limit, strings without NUL or control characters, nothing trailing.
 * err names what is wrong. */
int edge_msg_decode(const uint8_t *buf, size_t len, struct edge_msg *ret_msg, struct error *err);

/* Sends one message with fd attached when fd >= 0 (never blocks: the
 * socket is non-blocking; -EAGAIN when its buffer is full). */
int edge_msg_send(int sock, const struct edge_msg *msg, int fd);

/* Receives one message and the fd that came with it (-1 if none; any
 * extra fds are closed). -EAGAIN when none waits, -ECONNRESET at the
 * peer's end, -EBADMSG for a malformed one (err says why). */
int edge_msg_recv(int sock, struct edge_msg *ret_msg, int *ret_fd, struct error *err);
