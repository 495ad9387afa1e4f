#include "edge_link.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"

struct queued {
        struct queued *next;
        struct edge_msg msg;
        int fd;
};

struct edge_link {
        uv_poll_t poll;
        int fd;
        struct edge_link_callbacks cb;
        void *userdata;
        struct queued *head, *tail;
        unsigned n_queued;
        bool lost;
        bool delivering; /* inside a message callback, which may close the link */
        bool closed;
};

static void queue_drop(struct edge_link *link)
{
        while (link->head) {
                struct queued *q = link->head;
                link->head = q->next;
                if (q->fd >= 0)
                        close(q->fd);
                free(q);
        }
        link->tail = NULL;
        link->n_queued = 0;
}

static void link_lost(struct edge_link *link, const struct error *err)
{
        if (link->lost)
                return;
        link->lost = true;
        uv_poll_stop(&link->poll);
        queue_drop(link);
        link->cb.lost(err, link->userdata);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void poll_update(struct edge_link *link)
{
        if (!link->lost && !link->closed)
                uv_poll_start(&link->poll, UV_READABLE | (link->head ? UV_WRITABLE : 0), on_poll);
}

/* Sends what is queued, in order, until the socket is full. */
static int queue_flush(struct edge_link *link)
{
        while (link->head) {
                struct queued *q = link->head;
                int r = edge_msg_send(link->fd, &q->msg, q->fd);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0)
                        return r;
                link->head = q->next;
                if (!link->head)
                        link->tail = NULL;
                link->n_queued--;
                if (q->fd >= 0)
                        close(q->fd);
                free(q);
        }
        return 0;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct edge_link *link = p->data;
        struct error err = { 0 };

        if (status < 0) {
                error_set(&err, status, "socketpair: %s", uv_strerror(status));
                link_lost(link, &err);
                return;
        }
        if (events & UV_WRITABLE) {
                int r = queue_flush(link);
                if (r < 0) {
                        error_set_errno(&err, r, "send");
                        link_lost(link, &err);
                        return;
                }
        }
        if (events & UV_READABLE) {
                /* A bounded batch per wake-up: a busy peer cannot starve
                 * the rest of the loop. */
                for (int i = 0; i < 64 && !link->lost && !link->closed; i++) {
                        struct edge_msg msg;
                        int fd = -1, r = edge_msg_recv(link->fd, &msg, &fd, &err);
                        if (r == -EAGAIN)
                                break;
                        if (r < 0) {
                                link_lost(link, &err);
                                return;
                        }
                        link->delivering = true;
                        link->cb.message(&msg, fd, link->userdata);
                        link->delivering = false;
                }
        }
        poll_update(link);
}

int edge_link_open(uv_loop_t *loop, int fd, const struct edge_link_callbacks *callbacks, void *userdata,
                   struct edge_link **ret_link, struct error *err)
{
        struct edge_link *link;
        int flags = fcntl(fd, F_GETFL), r;

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                r = error_set_errno(err, -errno, "socketpair: set non-blocking");
                close(fd);
                return r;
        }
        link = calloc(1, sizeof(*link));
        if (!link) {
                close(fd);
                return error_set(err, -ENOMEM, "out of memory");
        }
        r = uv_poll_init(loop, &link->poll, fd);
        if (r < 0) {
                free(link);
                close(fd);
                return error_set(err, r, "socketpair: poll: %s", uv_strerror(r));
        }
        link->fd = fd;
        link->cb = *callbacks;
        link->userdata = userdata;
        link->poll.data = link;
        uv_poll_start(&link->poll, UV_READABLE, on_poll);
        *ret_link = link;
        return 0;
}

int edge_link_send(struct edge_link *link, const struct edge_msg *msg, int fd)
{
        uint8_t scratch[EDGE_MSG_MAX];
        struct queued *q;
        struct error err = { 0 };
        int r;

        if (link->lost || link->closed)
                return -ENOTCONN;
        if (!link->head) {
                r = edge_msg_send(link->fd, msg, fd); /* -EINVAL: it cannot be encoded */
                if (r != -EAGAIN)
                        return r;
        }
        /* A message that cannot be encoded is the caller's refusal, now: in
         * the queue it would fail only when flushed, and take the link with
         * it. */
        r = edge_msg_encode(msg, scratch, sizeof(scratch));
        if (r < 0)
                return r;
        if (link->n_queued >= EDGE_LINK_MAX_QUEUED) {
                error_set(&err, -ENOBUFS, "the peer does not read: %u messages queued", link->n_queued);
                link_lost(link, &err);
                return -ENOBUFS;
        }
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->msg = *msg;
        q->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
        if (fd >= 0 && q->fd < 0) {
                free(q);
                return -errno;
        }
        if (link->tail)
                link->tail->next = q;
        else
                link->head = q;
        link->tail = q;
        link->n_queued++;
        poll_update(link);
        return 0;
}

static void link_freed(uv_handle_t *h)
{
        struct edge_link *link = h->data;

        close(link->fd);
        free(link);
}

struct edge_link *edge_link_close(struct edge_link *link)
{
        if (!link || link->closed)
                return NULL;
        link->closed = true;
        queue_drop(link);
        uv_close((uv_handle_t *)&link->poll, link_freed);
        return NULL;
}
