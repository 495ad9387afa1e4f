/* What every libwebsockets server of vpsd sets the same way: TLS from a
 * PEM pair, HTTP/1.1 only, no user switch by lws, and lws's own log lines
 * routed into ours. The edge (console/) and the ledger (billing-sync/)
 * both serve with it. Kept out of libcommon.a and libvpsd.a: only the
 * programs that link libwebsockets build it. */
#pragma once

#include <libwebsockets.h>

struct lws_server_tls {
        const char *address; /* an IPv4 or IPv6 address to listen on */
        int port;            /* 0: any free port */
        const char *cert;    /* PEM certificate chain */
        const char *key;     /* PEM private key */
};

/* Clears info and fills the listening and TLS part of it; the caller adds
 * its protocols, loop and limits. */
void lws_server_info_init(struct lws_context_creation_info *info, const struct lws_server_tls *tls);

/* lws's errors and warnings as our log lines, under who ("edge", "ledger"). */
void lws_server_log_to(const char *who);

/* The port the context's default vhost listens on, -1 when none. */
int lws_server_port(struct lws_context *context);

/* For LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 for a websocket, -1 (hang up)
 * for anything else. lws would also take "Upgrade: h2c" and speak HTTP/2
 * on the connection, ALPN's http/1.1 notwithstanding (RFC 7540 forbids
 * h2c over TLS): a second protocol stack, and websockets over h2 streams,
 * for nothing our clients need. */
int lws_server_confirm_upgrade(const char *upgrade);
