#include "control.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/linebuf.h"
#include "common/log.h"
#include "common/util.h"
#include "node/control_protocol.h"

/* A client that does not read its replies is dropped past this many bytes
 * queued, rather than buffered without bound. */
#define CONTROL_MAX_QUEUED_WRITE (4 * 1024 * 1024)

struct client {
        uv_pipe_t pipe; /* first: the handle's address is the client's */
        uv_timer_t idle;
        struct control *control;
        struct linebuf lines;
        struct ucred cred;
        struct control_call *call; /* the request in flight, if any */
        bool closing;
        bool close_after_write;
        bool reading;
        bool processing; /* inside client_process(): a reply made there must not recurse */
        unsigned handles_open;
        struct client *prev, *next;
};

struct control_call {
        struct client *client; /* NULL once the client has gone */
        struct control_request request;
};

struct control {
        uv_loop_t *loop;
        uv_pipe_t listener;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        struct control_limits limits;
        const struct control_method *methods;
        void *userdata;
        struct client *clients;
        unsigned n_clients;
        bool listening;
};

struct write_req {
        uv_write_t req;
        struct client *client;
        char *data;
};

static void client_close(struct client *c);
static void client_process(struct client *c);

static void client_handle_closed(uv_handle_t *h)
{
        struct client *c = h->data;

        if (--c->handles_open > 0)
                return;
        linebuf_free(&c->lines);
        free(c);
}

static void client_close(struct client *c)
{
        struct control *control = c->control;

        if (c->closing)
                return;
        c->closing = true;
        if (c->call)
                c->call->client = NULL; /* its reply will be dropped */
        if (c->prev)
                c->prev->next = c->next;
        else
                control->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        control->n_clients--;
        uv_close((uv_handle_t *)&c->idle, client_handle_closed);
        uv_close((uv_handle_t *)&c->pipe, client_handle_closed);
}

static void write_done(uv_write_t *req, int status)
{
        struct write_req *w = (struct write_req *)req;
        struct client *c = w->client;

        free(w->data);
        free(w);
        if (c->closing)
                return;
        if (status < 0 || (c->close_after_write && uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0))
                client_close(c);
}

/* Queues line (ownership taken) for the client. */
static void client_send(struct client *c, char *line)
{
        struct write_req *w;
        uv_buf_t buf;

        if (!line) {
                client_close(c);
                return;
        }
        if (c->closing || uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > CONTROL_MAX_QUEUED_WRITE) {
                log_warn("control: dropping a client that does not read its replies", "pid=%d uid=%u",
                         (int)c->cred.pid, c->cred.uid);
                free(line);
                client_close(c);
                return;
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                free(line);
                client_close(c);
                return;
        }
        w->client = c;
        w->data = line;
        buf = uv_buf_init(line, (unsigned)strlen(line));
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, write_done) < 0) {
                free(line);
                free(w);
                client_close(c);
        }
}

static void client_refuse(struct client *c, int64_t id, int code, const char *message, bool then_close)
{
        if (then_close)
                c->close_after_write = true;
        client_send(c, control_reply_error(id, code, message));
}

static void call_finish(struct control_call *call, char *line)
{
        struct client *c = call->client;

        control_request_done(&call->request);
        free(call);
        if (!c) {
                free(line);
                return;
        }
        c->call = NULL;
        client_send(c, line);
        if (!c->closing) {
                uv_timer_again(&c->idle);
                if (!c->processing)
                        client_process(c);
        }
}

void control_call_reply(struct control_call *call, struct json_object *result)
{
        call_finish(call, control_reply_ok(call->request.id, result));
}

void control_call_fail(struct control_call *call, int code, const char *message)
{
        call_finish(call, control_reply_error(call->request.id, code, message));
}

uid_t control_call_peer_uid(const struct control_call *call)
{
        return call->client ? call->client->cred.uid : (uid_t)-1;
}

static const struct control_method *method_find(struct control *control, const char *name)
{
        for (const struct control_method *m = control->methods; m->name; m++)
                if (strcmp(m->name, name) == 0)
                        return m;
        return NULL;
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Reads only while no request is in flight: a client cannot queue work,
 * and its unread lines wait in the kernel's socket buffer. */
static void client_set_reading(struct client *c, bool on)
{
        if (c->closing || c->reading == on)
                return;
        if (on ? uv_read_start((uv_stream_t *)&c->pipe, alloc_buf, on_read) < 0
               : uv_read_stop((uv_stream_t *)&c->pipe) < 0) {
                client_close(c);
                return;
        }
        c->reading = on;
}

static void client_dispatch(struct client *c, char *line, size_t len)
{
        struct control *control = c->control;
        struct error err = { 0 };
        const struct control_method *m;
        struct control_call *call;
        int64_t id;

        call = calloc(1, sizeof(*call));
        if (!call) {
                client_refuse(c, -1, -ENOMEM, "out of memory", true);
                return;
        }
        if (control_request_parse(line, len, &call->request, &id, &err) < 0) {
                free(call);
                log_info("control: bad request refused", "uid=%u error=\"%s\"", c->cred.uid, err.msg);
                client_refuse(c, id, -EINVAL, err.msg, false);
                return;
        }
        m = method_find(control, call->request.method);
        if (!m) {
                char msg[128];
                snprintf(msg, sizeof(msg), "unknown method `%s`", call->request.method);
                control_request_done(&call->request);
                free(call);
                client_refuse(c, id, -EOPNOTSUPP, msg, false);
                return;
        }
        log_debug("control: request", "uid=%u method=%s id=%lld", c->cred.uid, m->name, (long long)id);
        call->client = c;
        c->call = call;
        m->fn(call, call->request.params, control->userdata);
}

/* Dispatches buffered request lines, one at a time. */
static void client_process(struct client *c)
{
        char *line;
        size_t len;

        c->processing = true;
        while (!c->closing && !c->call && linebuf_next(&c->lines, &line, &len))
                if (len > 0)
                        client_dispatch(c, line, len);
        c->processing = false;
        client_set_reading(c, !c->call);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        (void)h;
        if (suggested > 65536)
                suggested = 65536;
        buf->base = malloc(suggested);
        buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct client *c = s->data;
        int r;

        if (n < 0) {
                free(buf->base);
                client_close(c);
                return;
        }
        r = n > 0 ? linebuf_append(&c->lines, buf->base, (size_t)n) : 0;
        free(buf->base);
        if (r == -E2BIG) {
                char msg[96];
                snprintf(msg, sizeof(msg), "request longer than %zu bytes", c->control->limits.max_request);
                log_info("control: oversized request refused", "uid=%u", c->cred.uid);
                client_set_reading(c, false);
                client_refuse(c, -1, -E2BIG, msg, true);
                return;
        }
        if (r < 0) {
                client_close(c);
                return;
        }
        uv_timer_again(&c->idle);
        client_process(c);
}

static void on_idle(uv_timer_t *t)
{
        struct client *c = t->data;

        if (c->call)
                return; /* the server is the slow one; wait for it */
        log_debug("control: idle client dropped", "uid=%u", c->cred.uid);
        client_close(c);
}

static bool peer_allowed(int fd, const struct ucred *cred, gid_t group)
{
        gid_t groups[NGROUPS_MAX];
        socklen_t len = sizeof(groups);

        if (cred->uid == 0)
                return true;
        if (group == (gid_t)-1)
                return false;
        if (cred->gid == group)
                return true;
        /* The peer's supplementary groups, as the kernel saw them at
         * connect time: never from the payload. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == group)
                        return true;
        return false;
}

static void on_connection(uv_stream_t *server, int status)
{
        struct control *control = server->data;
        struct client *c;
        socklen_t len = sizeof(c->cred);
        uv_os_fd_t fd;

        if (status < 0) {
                log_warn("control: accept failed", "error=\"%s\"", uv_strerror(status));
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return;
        c->control = control;
        linebuf_init(&c->lines, control->limits.max_request);
        uv_pipe_init(control->loop, &c->pipe, 0);
        uv_timer_init(control->loop, &c->idle);
        c->pipe.data = c->idle.data = c;
        c->handles_open = 2;
        c->next = control->clients;
        if (c->next)
                c->next->prev = c;
        control->clients = c;
        control->n_clients++;

        if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 || uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                client_close(c);
                return;
        }
        uv_timer_start(&c->idle, on_idle, control->limits.idle_timeout * 1000ULL,
                       control->limits.idle_timeout * 1000ULL);
        if (!peer_allowed(fd, &c->cred, control->limits.group)) {
                log_warn("control: connection refused: not root nor in the control group", "pid=%d uid=%u gid=%u",
                         (int)c->cred.pid, c->cred.uid, c->cred.gid);
                client_refuse(c, -1, -EACCES, "permission denied: root or the control group only", true);
                return;
        }
        if (control->n_clients > control->limits.max_clients) {
                log_warn("control: connection refused: too many clients", "max=%u", control->limits.max_clients);
                client_refuse(c, -1, -EAGAIN, "too many control connections; try again", true);
                return;
        }
        client_set_reading(c, true);
}

/* Replaces a socket file only if nobody listens on it: a stale one from a
 * vpsd that died, never a live one of another process. */
static int remove_stale_socket(const char *path, struct error *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        cleanup_close int fd = -1;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : error_set_errno(err, -errno, "stat `%s`", path);
        if (!S_ISSOCK(st.st_mode))
                return error_set(err, -EEXIST, "`%s` exists and is not a socket", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return error_set_errno(err, -errno, "socket");
        str_copy(sa.sun_path, sizeof(sa.sun_path), path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return error_set(err, -EADDRINUSE, "control socket `%s` is in use by another process", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return error_set_errno(err, -errno, "remove stale socket `%s`", path);
        return 0;
}

static int socket_set_access(const char *path, gid_t group, struct error *err)
{
        /* Group members may connect; SO_PEERCRED still checks each peer. */
        if (group != (gid_t)-1) {
                if (chown(path, 0, group) < 0 && geteuid() == 0)
                        return error_set_errno(err, -errno, "chown `%s`", path);
                if (chmod(path, 0660) < 0)
                        return error_set_errno(err, -errno, "chmod `%s`", path);
        } else if (chmod(path, 0600) < 0)
                return error_set_errno(err, -errno, "chmod `%s`", path);
        return 0;
}

int control_start(uv_loop_t *loop, const char *path, const struct control_limits *limits,
                  const struct control_method *methods, void *userdata, struct control **ret_control,
                  struct error *err)
{
        struct control *control;
        int r;

        control = calloc(1, sizeof(*control));
        if (!control)
                return error_set(err, -ENOMEM, "out of memory");
        if (str_copy(control->path, sizeof(control->path), path) < 0) {
                free(control);
                return error_set(err, -ENAMETOOLONG, "control socket path `%s` is longer than %zu bytes", path,
                                 sizeof(control->path) - 1);
        }
        control->loop = loop;
        control->limits = *limits;
        control->methods = methods;
        control->userdata = userdata;

        r = remove_stale_socket(path, err);
        if (r < 0) {
                free(control);
                return r;
        }
        uv_pipe_init(loop, &control->listener, 0);
        control->listener.data = control;
        control->listening = true;
        r = uv_pipe_bind(&control->listener, path);
        if (r < 0) {
                error_set(err, r, "bind `%s`: %s", path, uv_strerror(r));
                goto fail;
        }
        r = socket_set_access(path, limits->group, err);
        if (r < 0)
                goto fail;
        r = uv_listen((uv_stream_t *)&control->listener, 64, on_connection);
        if (r < 0) {
                error_set(err, r, "listen on `%s`: %s", path, uv_strerror(r));
                goto fail;
        }
        *ret_control = control;
        return 0;
fail:
        control_stop(control);
        return r;
}

int control_set_limits(struct control *control, const struct control_limits *limits, struct error *err)
{
        int r = socket_set_access(control->path, limits->group, err);

        if (r < 0)
                return r;
        control->limits = *limits;
        return 0;
}

static void listener_closed(uv_handle_t *h) { free(h->data); }

struct control *control_stop(struct control *control)
{
        if (!control)
                return NULL;
        while (control->clients)
                client_close(control->clients);
        unlink(control->path);
        uv_close((uv_handle_t *)&control->listener, listener_closed);
        return NULL;
}
