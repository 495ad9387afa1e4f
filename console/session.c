/* A console session: one websocket, one console socket from vpsd, and the
 * bytes between them. Each direction is bounded: past EDGE_HIGH_WATER
 * bytes queued toward a side, the other side is no longer read (the
 * console socket: uv_read_stop; the websocket: lws rx flow control) until
 * the queue drains below EDGE_LOW_WATER. A slow browser therefore slows
 * the guest's console, never the edge's memory or other sessions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "console/edge.h"

#define EDGE_HIGH_WATER (256 * 1024)
#define EDGE_LOW_WATER (64 * 1024)
#define EDGE_READ_SIZE (64 * 1024)
/* A frame of at most this leaves in one TLS record (16 KiB of plaintext)
 * with its 4-byte header, so one write; a 16 KiB frame would take two. */
#define EDGE_FRAME_MAX (16 * 1024 - 4)
/* Read buffers kept for the next read instead of freed: a malloc and free
 * of 64 KiB a read had glibc trim and regrow its heap, page faults and
 * all. At most this many (512 KiB), whatever the number of sessions. */
#define EDGE_SPARE_CHUNKS 8
#define EDGE_ANSWER_TIMEOUT_MS 10000 /* for vpsd's answer to a ticket */

enum session_state {
        SESSION_PENDING, /* the ticket is with vpsd */
        SESSION_OPEN,    /* bytes flow */
        SESSION_CLOSING, /* the websocket closes at its next writable callback */
};

/* One read from the console socket, waiting to be websocket frames. */
struct chunk {
        struct chunk *next;
        size_t len;
        size_t sent;          /* of len, already framed and written */
        unsigned char data[]; /* LWS_PRE bytes of room, then the payload */
};

struct edge_session {
        struct edge *edge;
        struct lws *wsi; /* NULL once the websocket has closed */
        uint64_t id;
        enum console_kind kind;
        enum session_state state;
        int close_code;
        bool flush_first; /* the console ended: what it said still goes out */
        uv_pipe_t pipe;
        bool pipe_used;
        bool reading;
        bool rx_paused;
        uv_timer_t timer; /* vpsd's answer, then idleness */
        uint64_t last_activity;
        unsigned handles_open;
        struct chunk *out_head, *out_tail;
        size_t out_bytes;
        struct chunk *in_hold; /* a frame's payload so far, toward the console */
        struct edge_session *prev, *next;
};

static void session_unlink(struct edge_session *s)
{
        struct edge *edge = s->edge;

        if (s->prev)
                s->prev->next = s->next;
        else if (edge->sessions == s)
                edge->sessions = s->next;
        if (s->next)
                s->next->prev = s->prev;
        s->prev = s->next = NULL;
}

static struct chunk *chunk_new(struct edge *edge)
{
        struct chunk *c = edge->spare_chunks;

        if (!c)
                return malloc(sizeof(struct chunk) + LWS_PRE + EDGE_READ_SIZE);
        edge->spare_chunks = c->next;
        edge->n_spare_chunks--;
        return c;
}

static void chunk_free(struct edge *edge, struct chunk *c)
{
        if (!c)
                return;
        if (edge->n_spare_chunks >= EDGE_SPARE_CHUNKS || edge->stopping) {
                free(c);
                return;
        }
        c->next = edge->spare_chunks;
        edge->spare_chunks = c;
        edge->n_spare_chunks++;
}

void edge_session_free_spares(struct edge *edge)
{
        while (edge->spare_chunks) {
                struct chunk *c = edge->spare_chunks;
                edge->spare_chunks = c->next;
                free(c);
        }
        edge->n_spare_chunks = 0;
}

static void session_free_if_done(struct edge_session *s)
{
        if (s->wsi || s->handles_open)
                return;
        chunk_free(s->edge, s->in_hold);
        while (s->out_head) {
                struct chunk *c = s->out_head;
                s->out_head = c->next;
                chunk_free(s->edge, c);
        }
        free(s);
}

static void handle_closed(uv_handle_t *h)
{
        struct edge_session *s = h->data;

        s->handles_open--;
        session_free_if_done(s);
}

static struct edge_session *session_find(struct edge *edge, uint64_t id)
{
        for (struct edge_session *s = edge->sessions; s; s = s->next)
                if (s->id == id)
                        return s;
        return NULL;
}

/* The websocket closes with code at its next writable callback. */
static void session_close(struct edge_session *s, int code)
{
        if (s->state == SESSION_CLOSING)
                return;
        if (s->state == SESSION_PENDING)
                s->edge->n_pending--;
        s->state = SESSION_CLOSING;
        s->close_code = code;
        if (s->pipe_used && s->reading) {
                uv_read_stop((uv_stream_t *)&s->pipe);
                s->reading = false;
        }
        if (s->wsi) {
                /* lws reads the peer's close acknowledgment. */
                if (s->rx_paused)
                        lws_rx_flow_control(s->wsi, 1);
                s->rx_paused = false;
                lws_callback_on_writable(s->wsi);
        }
}

static void on_timer(uv_timer_t *t)
{
        struct edge_session *s = t->data;
        uint64_t idle_ms = (uint64_t)s->edge->config.idle_timeout * 1000, now = uv_now(s->edge->loop);

        if (s->state == SESSION_PENDING) {
                log_warn("edge: vpsd did not answer a ticket in time", "session=%llu", (unsigned long long)s->id);
                session_close(s, EDGE_CLOSE_REFUSED);
                return;
        }
        if (s->state != SESSION_OPEN)
                return;
        if (now - s->last_activity >= idle_ms) {
                log_info("edge: idle session closed", "session=%llu", (unsigned long long)s->id);
                session_close(s, EDGE_CLOSE_ENDED);
                return;
        }
        uv_timer_start(&s->timer, on_timer, idle_ms - (now - s->last_activity), 0);
}

struct edge_session *edge_session_new(struct edge *edge, struct lws *wsi, enum console_kind kind,
                                      const char *ticket, const char *address)
{
        struct edge_msg msg = { .type = EDGE_MSG_OPEN, .kind = kind };
        struct edge_session *s;

        if (edge->n_sessions >= edge->config.max_sessions || edge->n_pending >= edge->config.max_pending) {
                log_warn("edge: session refused: too many at once", "sessions=%u pending=%u", edge->n_sessions,
                         edge->n_pending);
                return NULL;
        }
        if (strlen(ticket) > EDGE_TICKET_MAX || str_copy(msg.ticket, sizeof(msg.ticket), ticket) < 0 ||
            str_copy(msg.address, sizeof(msg.address), address) < 0)
                return NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->edge = edge;
        s->wsi = wsi;
        s->id = msg.session = ++edge->next_session;
        s->kind = kind;
        if (edge_link_send(edge->link, &msg, -1) < 0) {
                free(s);
                return NULL;
        }
        uv_timer_init(edge->loop, &s->timer);
        s->timer.data = s;
        s->handles_open = 1;
        uv_timer_start(&s->timer, on_timer, EDGE_ANSWER_TIMEOUT_MS, 0);
        s->next = edge->sessions;
        if (s->next)
                s->next->prev = s;
        edge->sessions = s;
        edge->n_sessions++;
        edge->n_pending++;
        /* Nothing from the browser is read before the console is there. */
        lws_rx_flow_control(wsi, 0);
        s->rx_paused = true;
        return s;
}

/* --- console socket -> websocket --- */

static void alloc_chunk(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct edge_session *s = h->data;
        struct chunk *c = chunk_new(s->edge);

        (void)suggested;
        buf->base = c ? (char *)c->data + LWS_PRE : NULL;
        buf->len = c ? EDGE_READ_SIZE : 0;
}

static int session_send(struct edge_session *s);
static void session_read_if_drained(struct edge_session *s);

static void on_console_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
        struct edge_session *s = stream->data;
        struct chunk *c = buf->base ? (struct chunk *)((unsigned char *)buf->base - LWS_PRE - sizeof(struct chunk))
                                    : NULL;

        if (n <= 0) {
                chunk_free(s->edge, c);
                if (n < 0) { /* EOF or an error: the console has gone (vpsd may have shut it) */
                        s->flush_first = n == UV_EOF;
                        session_close(s, EDGE_CLOSE_ENDED);
                }
                return;
        }
        c->next = NULL;
        c->len = (size_t)n;
        c->sent = 0;
        if (s->out_tail)
                s->out_tail->next = c;
        else
                s->out_head = c;
        s->out_tail = c;
        s->out_bytes += (size_t)n;
        s->last_activity = uv_now(s->edge->loop);
        if (s->out_bytes >= EDGE_HIGH_WATER && s->reading) {
                uv_read_stop(stream);
                s->reading = false;
        }
        if (!s->wsi)
                return;
        /* With nothing before it, straight out: a writable callback first
         * costs lws two epoll changes each way and a wait, more than the
         * write. A socket that takes less is rare; lws then keeps the rest
         * and the next frame waits for writability. */
        if (s->out_head == c && s->state == SESSION_OPEN && !lws_partial_buffered(s->wsi)) {
                if (session_send(s) < 0)
                        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                else
                        session_read_if_drained(s);
                return;
        }
        lws_callback_on_writable(s->wsi);
}

/* Frames while the socket takes them whole: lws keeps what a write could
 * not send (lws_partial_buffered()), and the next frame waits for
 * writability. */
static int session_send(struct edge_session *s)
{
        struct chunk *c;

        while ((c = s->out_head)) {
                size_t n = c->len - c->sent < EDGE_FRAME_MAX ? c->len - c->sent : EDGE_FRAME_MAX;
                /* lws writes the frame's header into the bytes before it:
                 * LWS_PRE of room before the first frame of a chunk, and
                 * payload already written (or copied by lws) before the rest. */
                if (lws_write(s->wsi, c->data + LWS_PRE + c->sent, n, LWS_WRITE_BINARY) < (int)n)
                        return -1;
                c->sent += n;
                s->out_bytes -= n;
                if (c->sent == c->len) {
                        s->out_head = c->next;
                        if (!s->out_head)
                                s->out_tail = NULL;
                        chunk_free(s->edge, c);
                }
                if (s->out_head && lws_partial_buffered(s->wsi))
                        break;
        }
        if (s->out_head || s->state == SESSION_CLOSING)
                lws_callback_on_writable(s->wsi);
        return 0;
}

static void session_read_if_drained(struct edge_session *s)
{
        if (!s->reading && s->state == SESSION_OPEN && s->out_bytes < EDGE_LOW_WATER &&
            uv_read_start((uv_stream_t *)&s->pipe, alloc_chunk, on_console_read) == 0)
                s->reading = true;
}

int edge_session_writable(struct edge_session *s)
{
        if (s->state == SESSION_CLOSING && !(s->flush_first && s->out_head)) {
                return edge_ws_close(s->wsi, s->close_code);
        }
        if (session_send(s) < 0)
                return -1;
        session_read_if_drained(s);
        return 0;
}

/* --- websocket -> console socket --- */

struct write_req {
        uv_write_t req;
        struct edge_session *s;
        char data[];
};

static void rx_resume_if_drained(struct edge_session *s)
{
        if (s->rx_paused && s->wsi && s->state == SESSION_OPEN &&
            uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) < EDGE_LOW_WATER) {
                lws_rx_flow_control(s->wsi, 1);
                s->rx_paused = false;
        }
}

static void on_console_written(uv_write_t *req, int status)
{
        struct write_req *w = (struct write_req *)req;
        struct edge_session *s = w->s;

        free(w);
        if (status < 0) {
                session_close(s, EDGE_CLOSE_ENDED);
                return;
        }
        rx_resume_if_drained(s);
}

static void console_write(struct edge_session *s, const void *data, size_t len)
{
        uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
        struct write_req *w;
        int n = 0;

        /* Straight to the socket when it takes it; copy only the rest. */
        if (uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) == 0) {
                n = uv_try_write((uv_stream_t *)&s->pipe, &buf, 1);
                if (n < 0 && n != UV_EAGAIN) {
                        session_close(s, EDGE_CLOSE_ENDED);
                        return;
                }
                if (n < 0)
                        n = 0;
                if ((size_t)n == len)
                        return;
        }
        w = malloc(sizeof(*w) + len - (size_t)n);
        if (!w) {
                session_close(s, EDGE_CLOSE_ENDED);
                return;
        }
        w->s = s;
        memcpy(w->data, (const char *)data + n, len - (size_t)n);
        buf = uv_buf_init(w->data, (unsigned)(len - (size_t)n));
        if (uv_write(&w->req, (uv_stream_t *)&s->pipe, &buf, 1, on_console_written) < 0) {
                free(w);
                session_close(s, EDGE_CLOSE_ENDED);
                return;
        }
        if (uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) >= EDGE_HIGH_WATER && !s->rx_paused) {
                lws_rx_flow_control(s->wsi, 0);
                s->rx_paused = true;
        }
}

static void hold_flush(struct edge_session *s)
{
        struct chunk *h = s->in_hold;

        s->in_hold = NULL;
        if (s->state == SESSION_OPEN)
                console_write(s, h->data, h->len);
        chunk_free(s->edge, h);
}

/* A frame arrives in pieces, one a TLS record (16 KiB): the pieces of an
 * unfinished frame are held, up to EDGE_READ_SIZE, and go to the console
 * in one write when the frame ends. Each write wakes the guest's side, and
 * a write a record cost the console (QEMU) four times the work of one a
 * frame. A frame that is whole in one piece, as every keystroke and
 * pointer move is, goes straight on. */
void edge_session_received(struct edge_session *s, const void *data, size_t len)
{
        struct chunk *h = s->in_hold;
        bool more;

        if (s->state != SESSION_OPEN || len == 0)
                return;
        s->last_activity = uv_now(s->edge->loop);
        more = lws_remaining_packet_payload(s->wsi) > 0;
        if (h && h->len + len > EDGE_READ_SIZE) {
                hold_flush(s);
                h = NULL;
                if (s->state != SESSION_OPEN)
                        return;
        }
        if (!h && (!more || len >= EDGE_READ_SIZE || !(h = chunk_new(s->edge)))) {
                console_write(s, data, len);
                return;
        }
        if (!s->in_hold) {
                h->len = 0;
                s->in_hold = h;
        }
        memcpy(h->data + h->len, data, len);
        h->len += len;
        if (!more || h->len == EDGE_READ_SIZE)
                hold_flush(s);
}

/* --- vpsd's answers --- */

static void session_grant(struct edge_session *s, int fd)
{
        int r;

        uv_pipe_init(s->edge->loop, &s->pipe, 0);
        s->pipe.data = s;
        s->pipe_used = true;
        s->handles_open++;
        r = uv_pipe_open(&s->pipe, fd);
        if (r < 0) {
                close(fd);
                session_close(s, EDGE_CLOSE_ENDED);
                return;
        }
        s->edge->n_pending--;
        s->state = SESSION_OPEN;
        s->last_activity = uv_now(s->edge->loop);
        if (uv_read_start((uv_stream_t *)&s->pipe, alloc_chunk, on_console_read) == 0)
                s->reading = true;
        rx_resume_if_drained(s);
        if (s->edge->config.idle_timeout)
                uv_timer_start(&s->timer, on_timer, (uint64_t)s->edge->config.idle_timeout * 1000, 0);
        else
                uv_timer_stop(&s->timer);
        log_debug("edge: session open", "session=%llu kind=%s", (unsigned long long)s->id,
                  console_kind_name(s->kind));
}

void edge_session_message(struct edge *edge, const struct edge_msg *msg, int fd)
{
        struct edge_session *s = session_find(edge, msg->session);
        struct edge_msg closed = { .type = EDGE_MSG_CLOSED, .session = msg->session };

        if (!s || (msg->type == EDGE_MSG_GRANT && s->state != SESSION_PENDING)) {
                /* Its websocket went first: vpsd hears it is over. */
                if (fd >= 0)
                        close(fd);
                if (msg->type == EDGE_MSG_GRANT)
                        edge_link_send(edge->link, &closed, -1);
                return;
        }
        switch (msg->type) {
        case EDGE_MSG_GRANT:
                if (fd < 0) {
                        session_close(s, EDGE_CLOSE_REFUSED);
                        break;
                }
                session_grant(s, fd);
                return;
        case EDGE_MSG_REFUSE:
                session_close(s, EDGE_CLOSE_REFUSED);
                break;
        case EDGE_MSG_CLOSE:
                session_close(s, EDGE_CLOSE_ENDED);
                break;
        default:
                break;
        }
        if (fd >= 0)
                close(fd);
}

void edge_session_ws_closed(struct edge_session *s)
{
        struct edge_msg closed = { .type = EDGE_MSG_CLOSED, .session = s->id };

        if (s->state == SESSION_PENDING)
                s->edge->n_pending--;
        s->state = SESSION_CLOSING;
        s->wsi = NULL;
        s->edge->n_sessions--;
        session_unlink(s);
        /* vpsd counts the session until it hears this; a GRANT still on
         * its way is answered with CLOSED too (edge_session_message). */
        if (s->edge->link)
                edge_link_send(s->edge->link, &closed, -1);
        uv_close((uv_handle_t *)&s->timer, handle_closed);
        if (s->pipe_used)
                uv_close((uv_handle_t *)&s->pipe, handle_closed);
}

void edge_session_close_all(struct edge *edge)
{
        for (struct edge_session *s = edge->sessions; s; s = s->next)
                session_close(s, EDGE_CLOSE_ENDED);
}
