/* The API's HTTP side: the bearer token, the method, the path and the
 * query, a body of at most LEDGER_API_BODY_MAX bytes, then one answer
 * written from the writable callback (headers, then the body). What a
 * request means is ledger_api.c's. */
#include "ledger_server.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/ledger_api.h"
#include "common/log.h"
#include "common/lws_server.h"
#include "common/util.h"

#define ARG_MAX 256
#define BODY_DRAIN_MAX (1024 * 1024)

struct http_req {
        char method[8];
        char path[256];
        char args[LEDGER_API_ARGS_MAX][ARG_MAX];
        size_t n_args;
        bool authorized;
        char *body;
        size_t body_len;
        bool body_too_big;
        bool close_after;     /* answered before its body was read */
        /* The answer: headers first, then the body. */
        int status;
        unsigned char *out;   /* LWS_PRE + out_len */
        size_t out_len;
        bool headers_sent;
};

size_t ledger_http_session_size(void) { return sizeof(struct http_req); }

static struct ledger_server *server_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

static void req_reset(struct http_req *q)
{
        free(q->body);
        if (q->out) {
                /* It may hold a root password or a ticket. */
                OPENSSL_cleanse(q->out, LWS_PRE + q->out_len);
                free(q->out);
        }
        memset(q, 0, sizeof(*q));
}

static void respond(struct lws *wsi, struct http_req *q, int status, struct json_object *body)
{
        const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        size_t len = strlen(text);

        log_info("ledger: api", "method=%s path=%s status=%d", q->method[0] ? q->method : "-", q->path, status);
        q->status = status;
        q->out = malloc(LWS_PRE + len);
        if (q->out) {
                memcpy(q->out + LWS_PRE, text, len);
                q->out_len = len;
        } else {
                q->status = 500;
        }
        lws_callback_on_writable(wsi);
}

static void respond_error(struct lws *wsi, struct http_req *q, int status, const char *text)
{
        struct ledger_api_response resp = { 0 };

        ledger_api_error(&resp, status, text);
        respond(wsi, q, status, resp.body);
        json_object_put(resp.body);
}

static bool authorized(struct lws *wsi, struct ledger_server *server)
{
        char header[LEDGER_API_TOKEN_MAX + 16];
        bool ok;

        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) >= (int)sizeof(header) ||
            lws_hdr_copy(wsi, header, sizeof(header), WSI_TOKEN_HTTP_AUTHORIZATION) <= 7 ||
            strncmp(header, "Bearer ", 7) != 0) {
                OPENSSL_cleanse(header, sizeof(header));
                return false;
        }
        ok = ledger_server_token_ok(server, header + 7, strlen(header + 7));
        OPENSSL_cleanse(header, sizeof(header));
        return ok;
}

static void read_args(struct lws *wsi, struct http_req *q)
{
        for (int i = 0; q->n_args < LEDGER_API_ARGS_MAX; i++) {
                int n = lws_hdr_copy_fragment(wsi, q->args[q->n_args], ARG_MAX, WSI_TOKEN_HTTP_URI_ARGS, i);

                if (n < 0)
                        break;
                if (n > 0)
                        q->n_args++;
        }
}

static void handle(struct lws *wsi, struct http_req *q)
{
        struct ledger_server *server = server_of(wsi);
        struct ledger_api_request req = { .method = q->method, .path = q->path, .n_args = q->n_args,
                                          .body = q->body, .body_len = q->body_len,
                                          .now = ledger_server_now(server) };
        struct ledger_api_response resp;

        for (size_t i = 0; i < q->n_args; i++)
                req.args[i] = q->args[i];
        if (q->body_too_big) {
                respond_error(wsi, q, 413, "the body is larger than 65536 bytes");
                return;
        }
        ledger_api_handle(server->ledger, &req, &resp);
        if (resp.status == 500)
                log_error("ledger: api: internal error", "path=%s error=\"%s\"", q->path, resp.log);
        if (resp.changed)
                ledger_server_changed(server);
        respond(wsi, q, resp.status, resp.body);
        json_object_put(resp.body);
}

/* The request line and headers are in: decide, or wait for the body. */
static int request(struct lws *wsi, struct http_req *q, const char *path)
{
        char length[24];
        bool has_body;

        req_reset(q);
        str_copy(q->path, sizeof(q->path), path);
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
                str_copy(q->method, sizeof(q->method), "GET");
        else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
                str_copy(q->method, sizeof(q->method), "POST");
        has_body = strcmp(q->method, "POST") == 0 &&
                   lws_hdr_copy(wsi, length, sizeof(length), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
                   strtoull(length, NULL, 10) > 0;
        /* Answered before a body is read: the connection ends after it. */
        q->close_after = has_body;
        if (!authorized(wsi, server_of(wsi))) {
                respond_error(wsi, q, 401, "unauthorized");
                return 0;
        }
        if (!q->method[0]) {
                respond_error(wsi, q, 405, "method not allowed");
                return 0;
        }
        /* A body somewhat too big is read and dropped, so that the client
         * reads the answer rather than a reset; a much bigger one is not
         * waited for. */
        if (has_body && strtoull(length, NULL, 10) > BODY_DRAIN_MAX) {
                respond_error(wsi, q, 413, "the body is larger than 65536 bytes");
                return 0;
        }
        read_args(wsi, q);
        if (!has_body) {
                handle(wsi, q);
                return 0;
        }
        q->close_after = false;
        return 0; /* the body follows: LWS_CALLBACK_HTTP_BODY */
}

static void body_part(struct http_req *q, const void *in, size_t len)
{
        char *body;

        if (q->body_too_big || q->body_len + len > LEDGER_API_BODY_MAX) {
                q->body_too_big = true;
                return;
        }
        body = realloc(q->body, q->body_len + len + 1);
        if (!body) {
                q->body_too_big = true;
                return;
        }
        memcpy(body + q->body_len, in, len);
        q->body = body;
        q->body_len += len;
        q->body[q->body_len] = '\0';
}

static int write_answer(struct lws *wsi, struct http_req *q)
{
        unsigned char head[LWS_PRE + 512], *start = head + LWS_PRE, *p = start, *end = head + sizeof(head) - 1;

        if (!q->status)
                return 0;
        if (!q->headers_sent) {
                if (lws_add_http_common_headers(wsi, (unsigned int)q->status, "application/json", q->out_len, &p, end) ||
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                (const unsigned char *)"no-store", 8, &p, end) ||
                    (q->status == 401 &&
                     lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
                                                 (const unsigned char *)"Bearer", 6, &p, end)) ||
                    lws_finalize_write_http_header(wsi, start, &p, end))
                        return -1;
                q->headers_sent = true;
                lws_callback_on_writable(wsi);
                return 0;
        }
        if (lws_write(wsi, q->out + LWS_PRE, q->out_len, LWS_WRITE_HTTP_FINAL) < (int)q->out_len)
                return -1;
        /* A body not (all) read: the connection cannot go on. */
        if (q->body_too_big || q->close_after) {
                req_reset(q);
                return -1;
        }
        req_reset(q);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int ledger_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct http_req *q = user;

        switch (reason) {
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                return lws_server_confirm_upgrade(in); /* no h2c */
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                return 1; /* a websocket without vpsd-sync.1 */
        case LWS_CALLBACK_HTTP:
                return request(wsi, q, in);
        case LWS_CALLBACK_HTTP_BODY:
                if (!q->status)
                        body_part(q, in, len);
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (!q->status)
                        handle(wsi, q);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                return write_answer(wsi, q);
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        case LWS_CALLBACK_CLOSED_HTTP:
                if (q)
                        req_reset(q);
                return 0;
        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}
