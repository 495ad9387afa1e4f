/* The edge's HTTPS and websocket server: libwebsockets on the edge's libuv
 * loop (a foreign loop: lws adds its handles to ours). Pages and scripts
 * come from web_dir; websockets at /console/vnc and /console/serial carry
 * a ticket in their query (?ticket=…) and become sessions (session.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/lws_server.h"
#include "common/util.h"
#include "console/edge.h"

/* What lws keeps per websocket: the session, or that it was refused; per
 * HTTP connection: the ISO upload on it. */
struct ws_data {
        struct edge_session *session;
        bool refused;
        struct edge_upload *upload;
        int http_status; /* an answer of the edge's own before any upload (404, 405 …) */
};

static struct edge *edge_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

/* Allowed origins, or else the page's own: https:// and the Host the
 * browser asked for. A websocket without an Origin is no browser's. */
static bool origin_allowed(struct lws *wsi)
{
        struct edge *edge = edge_of(wsi);
        char origin[256], host[200], own[220];

        if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
                return false;
        for (unsigned i = 0; i < edge->config.n_origins; i++)
                if (strcmp(origin, edge->config.origins[i]) == 0)
                        return true;
        if (edge->config.n_origins > 0 || lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
                return false;
        snprintf(own, sizeof(own), "https://%s", host);
        return strcmp(origin, own) == 0;
}

/* RFC 6455's handshake as every browser sends it: version 13 and a key of
 * 16 bytes in base64. lws serves any other version (a draft's, a number
 * it cannot parse) as 13, and any key: one way of speaking is the one to
 * harden. */
static bool handshake_acceptable(struct lws *wsi)
{
        char version[8], key[32], raw[32];

        if (lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_VERSION) <= 0 || strcmp(version, "13") != 0)
                return false;
        return lws_hdr_copy(wsi, key, sizeof(key), WSI_TOKEN_KEY) == 24 &&
               lws_b64_decode_string(key, raw, sizeof(raw)) == 16;
}

/* Paths of pages and scripts: letters, digits and "/._-", no "..": the
 * file mount never sees anything else. */
static bool path_acceptable(const char *path)
{
        if (path[0] != '/' || strstr(path, ".."))
                return false;
        for (const char *p = path; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("/._-", *p)))
                        return false;
        return true;
}

/* The client's address, numeric. lws_get_peer_simple() answers a client
 * that has already reset the connection (its request still buffered) with
 * "getpeername: <error>" in place of an address; here that is -ENOTCONN,
 * and the request, whose client is gone, goes no further. */
static int peer_address(struct lws *wsi, char *buf, size_t size)
{
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);

        if (getpeername(lws_get_socket_fd(lws_get_network_wsi(wsi)), (struct sockaddr *)&sa, &len) < 0)
                return -errno;
        return edge_address_text(&sa, buf, size);
}

/* An accepted connection (FILTER_NETWORK_CONNECTION) counts against its
 * address, refused over the limit; the wsi lws makes for it carries the
 * count, from its adoption (SERVER_NEW_CLIENT_INSTANTIATED: at WSI_CREATE
 * lws has yet to clear the wsi's opaque pointer) to its end (WSI_DESTROY),
 * whatever the connection became. */
static int peer_accept(struct edge *edge, const struct lws_filter_network_conn_args *filt)
{
        if (edge->accepting) /* the last one's wsi was never made */
                edge_peer_release(edge, edge->accepting);
        edge->accepting = edge_peer_admit(edge, &filt->cli_addr);
        return edge->accepting ? 0 : -1;
}

static void peer_attach(struct lws *wsi)
{
        struct edge *edge = edge_of(wsi);

        if (edge->accepting) {
                lws_set_opaque_user_data(wsi, edge->accepting);
                edge->accepting = NULL;
        }
}

static void peer_detach(struct lws *wsi)
{
        struct edge_peer *p = lws_get_opaque_user_data(wsi);

        if (p) {
                lws_set_opaque_user_data(wsi, NULL);
                edge_peer_release(edge_of(wsi), p);
        }
}

static void ws_established(struct lws *wsi, struct ws_data *d)
{
        struct edge *edge = edge_of(wsi);
        char path[64], ticket[EDGE_TICKET_MAX + 2], address[EDGE_ADDRESS_MAX + 1] = "";
        enum console_kind kind;
        const char *t;

        d->refused = true;
        if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
                return;
        if (strcmp(path, "/console/vnc") == 0)
                kind = CONSOLE_VNC;
        else if (strcmp(path, "/console/serial") == 0)
                kind = CONSOLE_SERIAL;
        else
                return;
        /* lws decodes %XX (and +) in a query: a ticket with a byte no
         * message carries is refused here like any bad one (vpsd takes a
         * malformed message for a compromised edge and kills it). */
        t = lws_get_urlarg_by_name(wsi, "ticket=", ticket, sizeof(ticket));
        if (!t || !edge_ticket_valid(t) || peer_address(wsi, address, sizeof(address)) < 0)
                return;
        d->session = edge_session_new(edge, wsi, kind, t, address);
        d->refused = d->session == NULL;
}

/* A label as the customer gave it, printable ASCII (spaces too), cut to
 * what the protocol carries: a label only, never a path (vpsd names the
 * file by a random id). */
static void label_clean(char *label)
{
        char *out = label;

        for (const char *p = label; *p && out - label < EDGE_TEXT_MAX; p++)
                if ((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e)
                        *out++ = *p;
        *out = '\0';
}

/* PUT or POST /iso/upload?ticket=T[&label=L] (or X-Label: L). -1: the
 * client has gone, the connection is to be closed. */
static int http_upload(struct lws *wsi, struct ws_data *d)
{
        struct edge *edge = edge_of(wsi);
        char path[64] = "", ticket[EDGE_TICKET_MAX + 2], label[EDGE_TEXT_MAX * 3 + 1] = "",
             address[EDGE_ADDRESS_MAX + 1] = "";
        const char *t;

        if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_PUT_URI) <= 0 &&
            lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_POST_URI) <= 0) {
                d->http_status = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0 ? 405 : 400;
                return 0;
        }
        if (strcmp(path, "/iso/upload") != 0) {
                d->http_status = 404;
                return 0;
        }
        t = lws_get_urlarg_by_name(wsi, "ticket=", ticket, sizeof(ticket));
        if (!t || !edge_ticket_valid(t)) {
                d->http_status = 403;
                return 0;
        }
        if (peer_address(wsi, address, sizeof(address)) < 0)
                return -1;
        if (lws_hdr_custom_copy(wsi, label, sizeof(label), "x-label:", 8) <= 0) {
                const char *l = lws_get_urlarg_by_name(wsi, "label=", label, sizeof(label));
                memmove(label, l ? l : "", strlen(l ? l : "") + 1);
        }
        label_clean(label);
        d->upload = edge_upload_new(edge, wsi, t, label, address);
        if (!d->upload)
                d->http_status = 503;
        return 0;
}

/* The edge's own answer to a request it will not forward. */
static int http_status_write(struct lws *wsi, int status)
{
        unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        const char *text = status == 404 ? "{\"error\":\"not found\"}\n"
                           : status == 405 ? "{\"error\":\"use PUT or POST\"}\n"
                           : status == 403 ? "{\"error\":\"the upload ticket is not valid\"}\n"
                           : status == 503 ? "{\"error\":\"the node cannot take uploads now; try again\"}\n"
                                           : "{\"error\":\"bad request\"}\n";
        size_t n = strlen(text);

        if (lws_add_http_common_headers(wsi, (unsigned)status, "application/json", (lws_filepos_t)n, &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
        memcpy(start, text, n);
        lws_write(wsi, start, n, LWS_WRITE_HTTP_FINAL);
        return -1;
}

/* lws 4.1.6 on a foreign libuv loop hangs up without the close frame that
 * lws_close_reason() prepares, so the frame is written here (opcode
 * LWS_WRITE_CLOSE, 4, which lws keeps out of its public enum) and the
 * connection closed after it. */
int edge_ws_close(struct lws *wsi, int code)
{
        unsigned char frame[LWS_PRE + 8] = { 0 };

        frame[LWS_PRE] = (unsigned char)(code >> 8);
        frame[LWS_PRE + 1] = (unsigned char)code;
        memcpy(frame + LWS_PRE + 2, "closed", 6);
        lws_write(wsi, frame + LWS_PRE, 8, (enum lws_write_protocol)4);
        return -1;
}

/* Sent with every page and script: they load only their own scripts and
 * talk only to this server; nobody may frame them. */
static const struct lws_protocol_vhost_options header_no_store = { NULL, NULL, "cache-control:", "no-store" };
static const struct lws_protocol_vhost_options header_referrer = { &header_no_store, NULL, "referrer-policy:",
                                                                   "no-referrer" };
static const struct lws_protocol_vhost_options header_nosniff = { &header_referrer, NULL,
                                                                  "x-content-type-options:", "nosniff" };
static const struct lws_protocol_vhost_options headers = {
        &header_nosniff, NULL, "content-security-policy:",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self' wss:; "
        "frame-ancestors 'none'"
};

static int callback_console(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct ws_data *d = user;
        char uri[256];

        /* Before any per-connection data exists: */
        switch (reason) {
        case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
                return !path_acceptable(in);
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                return lws_server_confirm_upgrade(in); /* no h2c */
        case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
                /* user: the accepted connection's address; in: its fd */
                return peer_accept(edge_of(wsi), user);
        case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
                peer_attach(wsi);
                break;
        case LWS_CALLBACK_WSI_DESTROY:
                peer_detach(wsi);
                break;
        default:
                break;
        }
        /* lws closes a connection that never got as far as HTTP (a bare
         * connect, plain text, a TLS hello cut short) with CLOSED_HTTP
         * and no per-connection data: nothing of ours to end. */
        if (!d)
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        switch (reason) {
        case LWS_CALLBACK_HTTP:
                if (http_upload(wsi, d) < 0)
                        return -1;
                /* A request without a body (or refused before it) is
                 * answered now; an upload when vpsd has spoken. */
                if (d->http_status)
                        lws_callback_on_writable(wsi);
                return 0;
        case LWS_CALLBACK_HTTP_BODY:
                if (d->upload)
                        edge_upload_body(d->upload, in, len);
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (d->upload)
                        edge_upload_body_complete(d->upload);
                else if (d->http_status)
                        lws_callback_on_writable(wsi);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (d->upload)
                        return edge_upload_writable(d->upload);
                if (d->http_status)
                        return http_status_write(wsi, d->http_status);
                return 0;
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                /* lws frees the per-connection data after this, and not
                 * only when the connection closes: also at the end of each
                 * keep-alive transaction (the upload's answer called
                 * lws_http_transaction_completed()), with no CLOSED_HTTP,
                 * before the next request on the connection. An upload
                 * left in it was lost: one struct a request, pipelined for
                 * ever. It ends here, as at CLOSED_HTTP. */
        case LWS_CALLBACK_CLOSED_HTTP:
                if (d->upload)
                        edge_upload_closed(d->upload);
                d->upload = NULL;
                return 0;
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                if (!handshake_acceptable(wsi)) {
                        log_info("edge: websocket refused: not an RFC 6455 handshake");
                        return 1;
                }
                if (!origin_allowed(wsi)) {
                        lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_ORIGIN);
                        log_info("edge: websocket refused: origin not allowed", "origin=\"%s\"", uri);
                        return 1;
                }
                return 0;
        case LWS_CALLBACK_ESTABLISHED:
                ws_established(wsi, d);
                if (d->refused)
                        lws_callback_on_writable(wsi);
                return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
                if (d->refused) {
                        return edge_ws_close(wsi, EDGE_CLOSE_REFUSED);
                }
                return d->session ? edge_session_writable(d->session) : -1;
        case LWS_CALLBACK_RECEIVE:
                if (d->session)
                        edge_session_received(d->session, in, len);
                return 0;
        case LWS_CALLBACK_CLOSED:
                if (d->session)
                        edge_session_ws_closed(d->session);
                d->session = NULL;
                return 0;
        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}

static const struct lws_protocols protocols[] = {
        /* First: a websocket without a subprotocol, and plain HTTP, land here. */
        { .name = "vpsd-console", .callback = callback_console, .per_session_data_size = sizeof(struct ws_data),
          .rx_buffer_size = 65536 },
        { 0 },
};

int edge_server_start(struct edge *edge, struct error *err)
{
        /* Uploads go to the protocol's callback, not to the files. */
        static struct lws_http_mount upload_mount = {
                .mountpoint = "/iso",
                .mountpoint_len = 4,
                .origin = "vpsd-console",
                .origin_protocol = LWSMPRO_CALLBACK,
        };
        static struct lws_http_mount mount = {
                .mount_next = &upload_mount,
                .mountpoint = "/",
                .mountpoint_len = 1,
                .def = "index.html",
                .origin_protocol = LWSMPRO_FILE,
        };
        struct lws_server_tls tls = { edge->config.listen_address, (int)edge->config.port, edge->config.cert,
                                      edge->config.key };
        struct lws_context_creation_info info;
        void *loops[] = { edge->loop };

        mount.origin = edge->config.web_dir;
        lws_server_info_init(&info, &tls);
        info.options |= LWS_SERVER_OPTION_LIBUV;
        info.foreign_loops = loops;
        info.protocols = protocols;
        info.mounts = &mount;
        info.headers = &headers;
        info.user = edge;
        /* lws reads TLS into this one buffer (per thread, not per
         * connection) and hands the websocket's payload on in pieces of its
         * size: at lws's default, 4 KiB, each became its own write to the
         * console socket. */
        info.pt_serv_buf_size = 64 * 1024;
        /* Two fds a session (websocket, console), and some to spare. */
        info.fd_limit_per_thread = edge->config.max_sessions * 2 + 256;
        lws_server_log_to("edge");
        edge->lws = lws_create_context(&info);
        if (!edge->lws)
                return error_set(err, -EIO, "libwebsockets: cannot serve on %s port %u (see its messages above)",
                                 edge->config.listen_address, edge->config.port);
        return 0;
}

int edge_server_port(struct edge *edge) { return lws_server_port(edge->lws); }

void edge_server_stop(struct edge *edge)
{
        if (!edge->lws)
                return;
        lws_context_destroy(edge->lws);
        edge->lws = NULL;
}
