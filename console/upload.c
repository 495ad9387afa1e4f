/* An ISO upload through the edge (docs/iso.md): PUT or POST
 * /iso/upload?ticket=T with the label in an X-Label header (or
 * `label=`). The ticket goes to vpsd, which answers with the write end of
 * a pipe (GRANT) or a refusal (UPLOAD_RESULT); the body is copied into
 * the pipe as it arrives and nowhere else. The client is not read while
 * the pipe is full: one pending piece at most, so memory stays bounded
 * whatever the upload's size. At the body's end the edge closes the pipe,
 * tells vpsd (UPLOAD_DONE) and answers the client with what vpsd says;
 * vpsd may end it earlier (over the quota), and then the edge answers at
 * once and reads no more of the body into the pipe. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "console/edge.h"

/* Body bytes held while the pipe is full or vpsd has not answered yet:
 * lws hands on at most its read buffer (64 KiB) a callback. */
#define PENDING_MAX (1024 * 1024)
/* After an early answer, the body is read and dropped up to this much, so
 * that the client reads the answer before the connection closes. */
#define DRAIN_MAX (64 * 1024 * 1024)

enum upload_state {
        UPLOAD_WAITING,   /* the ticket is with vpsd */
        UPLOAD_STREAMING, /* into the pipe */
        UPLOAD_SENT,      /* the body is all in the pipe; waiting for vpsd's verdict */
        UPLOAD_ANSWERED,  /* vpsd's verdict (or the edge's) is to be written */
        UPLOAD_DONE,      /* written */
};

struct edge_upload {
        struct edge *edge;
        struct lws *wsi; /* NULL once the connection has closed */
        uint64_t id;
        enum upload_state state;
        int fd;           /* the pipe's write end */
        uv_poll_t poll;
        bool poll_used, polling, rx_paused, body_complete, closing_poll;
        uint8_t *pending;
        size_t pending_len, pending_cap;
        uint64_t written, drained;
        int status;
        char text[EDGE_TEXT_MAX + 1];
        struct edge_upload *next;
};

static struct edge_upload *upload_find(struct edge *edge, uint64_t id)
{
        for (struct edge_upload *u = edge->uploads; u; u = u->next)
                if (u->id == id)
                        return u;
        return NULL;
}

static void upload_unlink(struct edge_upload *u)
{
        for (struct edge_upload **p = &u->edge->uploads; *p; p = &(*p)->next)
                if (*p == u) {
                        *p = u->next;
                        return;
                }
}

static void poll_closed(uv_handle_t *h)
{
        struct edge_upload *u = h->data;

        if (u->fd >= 0)
                close(u->fd);
        free(u->pending);
        free(u);
}

/* The pipe and the memory go once the connection has and libuv let go. */
static void upload_free(struct edge_upload *u)
{
        upload_unlink(u);
        if (u->poll_used) {
                uv_close((uv_handle_t *)&u->poll, poll_closed);
                return;
        }
        if (u->fd >= 0)
                close(u->fd);
        free(u->pending);
        free(u);
}

static void rx_set(struct edge_upload *u, bool on)
{
        if (!u->wsi || u->rx_paused == !on)
                return;
        lws_rx_flow_control(u->wsi, on ? 1 : 0);
        u->rx_paused = !on;
}

/* The verdict for the client; the body is no longer copied. */
static void upload_answer(struct edge_upload *u, int status, const char *text)
{
        if (u->state >= UPLOAD_ANSWERED)
                return;
        u->state = UPLOAD_ANSWERED;
        u->status = status;
        snprintf(u->text, sizeof(u->text), "%s", text);
        u->pending_len = 0;
        if (u->polling) {
                uv_poll_stop(&u->poll);
                u->polling = false;
        }
        if (u->fd >= 0) {
                close(u->fd);
                u->fd = -1;
        }
        if (u->wsi) {
                rx_set(u, true);
                lws_callback_on_writable(u->wsi);
        }
}

static void upload_tell_vpsd(struct edge_upload *u, enum edge_msg_type type)
{
        struct edge_msg m = { .type = type, .session = u->id, .size = u->written };

        if (u->edge->link)
                edge_link_send(u->edge->link, &m, -1);
}

/* All of the body is in the pipe: it closes (vpsd reads to its end) and
 * vpsd hears how much there was. */
static void upload_body_sent(struct edge_upload *u)
{
        if (u->polling) {
                uv_poll_stop(&u->poll);
                u->polling = false;
        }
        /* The stopped poll handle outlives its fd; it is closed with the
         * upload. vpsd's reader sees the end now. */
        close(u->fd);
        u->fd = -1;
        u->state = UPLOAD_SENT;
        upload_tell_vpsd(u, EDGE_MSG_UPLOAD_DONE);
}

static void on_pipe_writable(uv_poll_t *p, int status, int events);

/* Writes what is pending; returns false while the pipe is full. */
static bool pending_flush(struct edge_upload *u)
{
        while (u->pending_len) {
                ssize_t n = write(u->fd, u->pending, u->pending_len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!u->polling && uv_poll_start(&u->poll, UV_WRITABLE, on_pipe_writable) == 0)
                                u->polling = true;
                        rx_set(u, false);
                        return false;
                }
                if (n < 0) {
                        /* vpsd closed its end: its verdict is on the way. */
                        u->pending_len = 0;
                        rx_set(u, false);
                        return false;
                }
                u->written += (uint64_t)n;
                memmove(u->pending, u->pending + n, u->pending_len - (size_t)n);
                u->pending_len -= (size_t)n;
        }
        if (u->polling) {
                uv_poll_stop(&u->poll);
                u->polling = false;
        }
        return true;
}

static void upload_progress(struct edge_upload *u)
{
        if (u->state != UPLOAD_STREAMING || !pending_flush(u))
                return;
        if (u->body_complete)
                upload_body_sent(u);
        else
                rx_set(u, true);
}

static void on_pipe_writable(uv_poll_t *p, int status, int events)
{
        struct edge_upload *u = p->data;

        (void)events;
        if (status < 0) {
                u->pending_len = 0;
                return;
        }
        upload_progress(u);
}

static int pending_add(struct edge_upload *u, const void *data, size_t len)
{
        if (u->pending_len + len > PENDING_MAX)
                return -ENOBUFS;
        if (array_reserve(&u->pending, &u->pending_cap, u->pending_len + len, 1) < 0)
                return -ENOMEM;
        memcpy(u->pending + u->pending_len, data, len);
        u->pending_len += len;
        return 0;
}

struct edge_upload *edge_upload_new(struct edge *edge, struct lws *wsi, const char *ticket, const char *label,
                                    const char *address)
{
        struct edge_msg msg = { .type = EDGE_MSG_UPLOAD };
        struct edge_upload *u;

        if (str_copy(msg.ticket, sizeof(msg.ticket), ticket) < 0 ||
            str_copy(msg.address, sizeof(msg.address), address) < 0)
                return NULL;
        snprintf(msg.text, sizeof(msg.text), "%s", label);
        u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        u->edge = edge;
        u->wsi = wsi;
        u->fd = -1;
        u->id = msg.session = ++edge->next_session;
        if (!edge->link || edge_link_send(edge->link, &msg, -1) < 0) {
                free(u);
                return NULL;
        }
        u->next = edge->uploads;
        edge->uploads = u;
        /* Nothing of the body is read before vpsd said yes. */
        rx_set(u, false);
        return u;
}

void edge_upload_body(struct edge_upload *u, const void *data, size_t len)
{
        if (u->state >= UPLOAD_ANSWERED) {
                u->drained += len;
                if (u->drained > DRAIN_MAX && u->wsi)
                        lws_set_timeout(u->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                return;
        }
        if (pending_add(u, data, len) < 0) {
                upload_tell_vpsd(u, EDGE_MSG_UPLOAD_ABORT);
                upload_answer(u, 503, "the node cannot take the upload this fast; try again");
                return;
        }
        if (u->state == UPLOAD_WAITING)
                rx_set(u, false);
        else
                upload_progress(u);
}

void edge_upload_body_complete(struct edge_upload *u)
{
        u->body_complete = true;
        if (u->state == UPLOAD_STREAMING)
                upload_progress(u);
}

int edge_upload_writable(struct edge_upload *u)
{
        unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        char body[EDGE_TEXT_MAX * 2 + 64];
        int n;

        if (u->state != UPLOAD_ANSWERED)
                return 0;
        /* The text is printable ASCII without quotes' meaning to JSON
         * checked: a quote or a backslash is dropped. */
        n = snprintf(body, sizeof(body), "{\"%s\":\"", u->status == 201 ? "id" : "error");
        for (const char *t = u->text; *t && (size_t)n < sizeof(body) - 4; t++)
                if (*t != '"' && *t != '\\')
                        body[n++] = *t;
        n += snprintf(body + n, sizeof(body) - (size_t)n, "\"}\n");
        u->state = UPLOAD_DONE;
        if (lws_add_http_common_headers(u->wsi, (unsigned)u->status, "application/json", (lws_filepos_t)n, &p, end) ||
            lws_add_http_header_by_token(u->wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p, end) ||
            lws_finalize_write_http_header(u->wsi, start, &p, end))
                return -1;
        memcpy(start, body, (size_t)n);
        if (lws_write(u->wsi, start, (size_t)n, LWS_WRITE_HTTP_FINAL) != n)
                return -1;
        log_info("edge: upload answered", "session=%llu status=%d bytes=%llu", (unsigned long long)u->id,
                 u->status, (unsigned long long)u->written);
        /* Done with the connection once the client had the whole body;
         * else after the answer (the rest of the body is dropped). On a
         * keep-alive connection the transaction's end frees u (server.c,
         * HTTP_DROP_PROTOCOL): nothing of it is touched after. */
        if (u->body_complete)
                return lws_http_transaction_completed(u->wsi) ? -1 : 0;
        return 0;
}

void edge_upload_closed(struct edge_upload *u)
{
        u->wsi = NULL;
        if (u->state < UPLOAD_ANSWERED)
                upload_tell_vpsd(u, EDGE_MSG_UPLOAD_ABORT);
        upload_free(u);
}

static void upload_grant(struct edge_upload *u, int fd)
{
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || uv_poll_init(u->edge->loop, &u->poll, fd) < 0) {
                close(fd);
                upload_tell_vpsd(u, EDGE_MSG_UPLOAD_ABORT);
                upload_answer(u, 500, "the upload could not be started");
                return;
        }
        u->fd = fd;
        u->poll.data = u;
        u->poll_used = true;
        u->state = UPLOAD_STREAMING;
        upload_progress(u);
}

bool edge_upload_message(struct edge *edge, const struct edge_msg *msg, int fd)
{
        struct edge_upload *u = upload_find(edge, msg->session);

        if (!u)
                return false;
        if (msg->type == EDGE_MSG_GRANT && fd >= 0 && u->state == UPLOAD_WAITING) {
                upload_grant(u, fd);
                return true;
        }
        if (fd >= 0)
                close(fd);
        if (msg->type == EDGE_MSG_UPLOAD_RESULT)
                upload_answer(u, msg->status >= 200 && msg->status <= 599 ? msg->status : 500,
                              msg->text[0] ? msg->text : "the upload failed");
        return true;
}

void edge_upload_abort_all(struct edge *edge)
{
        for (struct edge_upload *u = edge->uploads; u; u = u->next)
                upload_answer(u, 503, "the node's upload service restarted; try again");
}
