/* vpsd-edge: what its files share. main.c reads the arguments vpsd passed,
 * builds the server (server.c) as root, drops to the edge's user, and runs
 * the loop; session.c copies bytes between a websocket and the console
 * socket vpsd passed for it. Nothing here knows SQLite, libvirt or tickets:
 * a ticket is an opaque string forwarded to vpsd. */
#pragma once

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/edge_link.h"
#include "common/edge_proto.h"

#define EDGE_ORIGINS_MAX 16

struct edge_config {
        char listen_address[64];      /* an IPv4 or IPv6 address */
        unsigned port;                /* 0: any free port (READY says which) */
        const char *cert;             /* PEM certificate chain */
        const char *key;              /* PEM private key */
        const char *web_dir;          /* the pages and their scripts */
        const char *user;             /* the user to run as */
        const char *origins[EDGE_ORIGINS_MAX]; /* allowed Origin values; none: the page's own */
        unsigned n_origins;
        unsigned idle_timeout;        /* seconds without a byte either way */
        unsigned max_sessions;        /* websockets at once, pending or open */
        unsigned max_pending;         /* of which waiting for vpsd's answer */
        unsigned max_per_address;     /* connections open at once from one address; 0: any */
};

struct edge_session;
struct edge_upload;
struct chunk;
struct edge_peer;

#define EDGE_PEER_BUCKETS 1024

struct edge {
        uv_loop_t *loop;
        struct edge_config config;
        struct lws_context *lws;
        struct edge_link *link;
        struct edge_session *sessions; /* every session whose websocket is up */
        struct edge_upload *uploads;   /* ISO uploads in progress (upload.c) */
        unsigned n_sessions;
        unsigned n_pending;
        uint64_t next_session;
        struct chunk *spare_chunks; /* read buffers to use again (session.c) */
        unsigned n_spare_chunks;
        /* Connections open from each client address (server.c). */
        struct edge_peer *peers[EDGE_PEER_BUCKETS];
        struct edge_peer *accepting; /* admitted, its wsi not yet made */
        bool stopping;
        int exit_code;
};

/* server.c: the lws context on the loop, listening (before the privilege
 * drop: it binds and reads the key); destroyed by edge_server_stop(). */
int edge_server_start(struct edge *edge, struct error *err);
void edge_server_stop(struct edge *edge);
int edge_server_port(struct edge *edge);
/* Sends a close frame with code; returns -1 for the writable callback. */
int edge_ws_close(struct lws *wsi, int code);

/* session.c */
/* A websocket is up at path (…/vnc or …/serial) with ticket; asks vpsd.
 * Returns the session to keep with the wsi, or NULL when refused at once
 * (the caller closes the websocket as refused). */
struct edge_session *edge_session_new(struct edge *edge, struct lws *wsi, enum console_kind kind,
                                      const char *ticket, const char *address);
/* lws callbacks for the session's websocket. */
int edge_session_writable(struct edge_session *s);
void edge_session_received(struct edge_session *s, const void *data, size_t len);
void edge_session_ws_closed(struct edge_session *s);
/* vpsd answered (GRANT with fd, REFUSE) or asks to close (CLOSE). */
void edge_session_message(struct edge *edge, const struct edge_msg *msg, int fd);
/* Every session closed: vpsd is gone or the edge stops. */
void edge_session_close_all(struct edge *edge);
/* The read buffers kept for reuse freed, once the loop has ended. */
void edge_session_free_spares(struct edge *edge);

/* peers.c: connections open from each client address. Admitted: the
 * count to release when the connection ends; NULL: refused (over
 * max_per_address, or no memory). */
struct edge_peer *edge_peer_admit(struct edge *edge, const struct sockaddr_storage *address);
void edge_peer_release(struct edge *edge, struct edge_peer *peer);
void edge_peers_free(struct edge *edge);
/* A client's address as text: IPv4 (also when mapped into IPv6) or IPv6. */
int edge_address_text(const struct sockaddr_storage *address, char *buf, size_t size);

/* upload.c: an ISO upload on an HTTP connection (docs/iso.md). */
/* PUT/POST /iso/upload arrived with ticket and label: asks vpsd. NULL
 * when it cannot even ask (the caller answers 503). */
struct edge_upload *edge_upload_new(struct edge *edge, struct lws *wsi, const char *ticket, const char *label,
                                    const char *address);
void edge_upload_body(struct edge_upload *u, const void *data, size_t len);
void edge_upload_body_complete(struct edge_upload *u);
/* The HTTP writable callback: the answer, once there is one. */
int edge_upload_writable(struct edge_upload *u);
void edge_upload_closed(struct edge_upload *u);
/* A message from vpsd for an upload; false when it is not an upload's. */
bool edge_upload_message(struct edge *edge, const struct edge_msg *msg, int fd);
/* vpsd is gone: every upload is answered with an error. */
void edge_upload_abort_all(struct edge *edge);

/* What every refusal looks like to a client, whatever the reason. */
#define EDGE_CLOSE_REFUSED 4001
#define EDGE_CLOSE_ENDED 4000
