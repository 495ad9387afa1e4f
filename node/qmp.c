#include "qmp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/json.h"
#include "common/linebuf.h"
#include "common/util.h"

/* Longest command name accepted; QEMU's are far shorter. */
#define QMP_MAX_COMMAND 64

struct qmp_call {
        struct qmp_call *prev, *next;
        uint64_t id;                   /* 0 until sent */
        uint64_t deadline;             /* loop time in ms; 0: none */
        unsigned timeout_ms;
        struct json_object *arguments; /* owned until sent */
        qmp_reply_fn callback;
        void *userdata;
        char command[QMP_MAX_COMMAND + 1];
};

struct qmp {
        uv_loop_t *loop;
        uv_pipe_t pipe;
        uv_timer_t timer; /* the nearest deadline: handshake, a call, or a deferred failure */
        uv_connect_t connect_req;
        struct qmp_config config;
        enum qmp_state state;
        struct linebuf lines;
        char read_buf[65536];

        /* Calls in the order they were issued: the sent ones (id != 0)
         * first, then those queued until the handshake is done. */
        struct qmp_call *calls_head, *calls_tail;
        unsigned n_calls;
        uint64_t next_id;
        uint64_t negotiate_id;
        uint64_t handshake_deadline;

        struct error failure; /* a disconnect the timer carries out: see fail_later() */
        struct error reason;  /* why we disconnected */
        unsigned version[3];
        bool have_version;
        bool closed;          /* qmp_close() was called: no callbacks but pending-call failures */
        unsigned handles_open;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct write_req {
        uv_write_t req;
        char data[];
};

static const char *const verb_names[QMP_N_VERBS] = {
        [QMP_STOP] = "stop",
        [QMP_CONT] = "cont",
        [QMP_SYSTEM_POWERDOWN] = "system_powerdown",
        [QMP_SYSTEM_RESET] = "system_reset",
        [QMP_SYSTEM_WAKEUP] = "system_wakeup",
        [QMP_QUIT] = "quit",
        [QMP_QUERY_STATUS] = "query-status",
};

static const char *const state_names[] = {
        [QMP_CONNECTING] = "connecting",
        [QMP_GREETING] = "greeting",
        [QMP_NEGOTIATING] = "negotiating",
        [QMP_RUNNING] = "running",
        [QMP_DISCONNECTED] = "disconnected",
};

const char *qmp_verb_name(enum qmp_verb verb)
{
        return (unsigned)verb < QMP_N_VERBS ? verb_names[verb] : NULL;
}

const char *qmp_state_name(enum qmp_state state)
{
        return (unsigned)state < ARRAY_SIZE(state_names) ? state_names[state] : "unknown";
}

enum qmp_state qmp_get_state(const struct qmp *qmp) { return qmp->state; }

int qmp_get_version(const struct qmp *qmp, unsigned *ret_major, unsigned *ret_minor, unsigned *ret_micro)
{
        if (!qmp->have_version)
                return -ENODATA;
        *ret_major = qmp->version[0];
        *ret_minor = qmp->version[1];
        *ret_micro = qmp->version[2];
        return 0;
}

/* QMP error classes (qapi/error.json) as errnos; the class itself stays in
 * the message. */
static int error_class_to_errno(const char *class)
{
        static const struct {
                const char *class;
                int code;
        } map[] = {
                { "CommandNotFound", -EOPNOTSUPP },
                { "DeviceNotFound", -ENODEV },
                { "DeviceNotActive", -ENXIO },
                { "KVMMissingCap", -EOPNOTSUPP },
        };

        for (size_t i = 0; i < ARRAY_SIZE(map); i++)
                if (strcmp(map[i].class, class) == 0)
                        return map[i].code;
        return -EIO; /* GenericError and classes newer than this table */
}

static void call_link(struct qmp *qmp, struct qmp_call *c)
{
        c->prev = qmp->calls_tail;
        if (qmp->calls_tail)
                qmp->calls_tail->next = c;
        else
                qmp->calls_head = c;
        qmp->calls_tail = c;
        qmp->n_calls++;
}

static void call_unlink(struct qmp *qmp, struct qmp_call *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                qmp->calls_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                qmp->calls_tail = c->prev;
        c->prev = c->next = NULL;
        qmp->n_calls--;
}

/* Unlinks c, then calls its callback (which may re-enter the qmp), then
 * frees it. */
static void call_finish(struct qmp *qmp, struct qmp_call *c, struct json_object *result, const struct error *err)
{
        call_unlink(qmp, c);
        c->callback(qmp, result, err, c->userdata);
        json_object_put(c->arguments);
        free(c);
}

static void call_fail(struct qmp *qmp, struct qmp_call *c, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void call_fail(struct qmp *qmp, struct qmp_call *c, int code, const char *fmt, ...)
{
        struct error err = { .code = code };
        char detail[sizeof(err.msg)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        snprintf(err.msg, sizeof(err.msg), "qmp %s: %s", c->command, detail);
        call_finish(qmp, c, NULL, &err);
}

/* Fails every call, one at a time from the head, so that a callback that
 * closes the qmp (and drains the rest itself) is harmless. */
static void calls_fail_all(struct qmp *qmp)
{
        while (qmp->calls_head)
                call_fail(qmp, qmp->calls_head, -ECONNRESET, "disconnected: %s", qmp->reason.msg);
}

static void handle_closed(uv_handle_t *h)
{
        struct qmp *qmp = h->data;

        if (--qmp->handles_open == 0 && qmp->closed) {
                linebuf_free(&qmp->lines);
                free(qmp);
        }
}

static void disconnect(struct qmp *qmp, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void disconnect(struct qmp *qmp, int code, const char *fmt, ...)
{
        va_list ap;

        if (qmp->state == QMP_DISCONNECTED)
                return;
        qmp->state = QMP_DISCONNECTED;
        qmp->reason.code = code;
        va_start(ap, fmt);
        vsnprintf(qmp->reason.msg, sizeof(qmp->reason.msg), fmt, ap);
        va_end(ap);

        /* The handles close now, so that QEMU sees the socket close; the
         * memory stays until qmp_close() and their close callbacks. */
        uv_close((uv_handle_t *)&qmp->pipe, handle_closed);
        uv_close((uv_handle_t *)&qmp->timer, handle_closed);
        calls_fail_all(qmp);
        if (!qmp->closed && qmp->config.on_state)
                qmp->config.on_state(qmp, QMP_DISCONNECTED, &qmp->reason, qmp->config.userdata);
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the nearest deadline. */
static void timer_update(struct qmp *qmp)
{
        uint64_t next = 0, now = uv_now(qmp->loop);

        if (qmp->state == QMP_DISCONNECTED)
                return;
        if (qmp->failure.code < 0)
                next = now;
        else {
                if (qmp->state != QMP_RUNNING)
                        next = qmp->handshake_deadline;
                for (struct qmp_call *c = qmp->calls_head; c; c = c->next)
                        if (c->deadline && (next == 0 || c->deadline < next))
                                next = c->deadline;
        }
        if (next == 0)
                uv_timer_stop(&qmp->timer);
        else
                uv_timer_start(&qmp->timer, on_timer, next > now ? next - now : 0, 0);
}

/* Errors found inside qmp_execute() are acted on from the loop, so that no
 * callback ever runs inside qmp_execute(). */
static void fail_later(struct qmp *qmp, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_later(struct qmp *qmp, int code, const char *fmt, ...)
{
        va_list ap;

        if (qmp->failure.code < 0)
                return;
        qmp->failure.code = code;
        va_start(ap, fmt);
        vsnprintf(qmp->failure.msg, sizeof(qmp->failure.msg), fmt, ap);
        va_end(ap);
        timer_update(qmp);
}

static void on_timer(uv_timer_t *t)
{
        struct qmp *qmp = t->data;
        uint64_t now = uv_now(qmp->loop);
        struct qmp_call *c;

        if (qmp->failure.code < 0) {
                disconnect(qmp, qmp->failure.code, "%s", qmp->failure.msg);
                return;
        }
        if (qmp->state != QMP_RUNNING && now >= qmp->handshake_deadline) {
                disconnect(qmp, -ETIMEDOUT, "no QMP %s within %u ms",
                           qmp->state == QMP_CONNECTING ? "connection"
                           : qmp->state == QMP_GREETING ? "greeting"
                                                        : "reply to qmp_capabilities",
                           qmp->config.handshake_timeout_ms);
                return;
        }
        for (;;) {
                for (c = qmp->calls_head; c; c = c->next)
                        if (c->deadline && c->deadline <= now)
                                break;
                if (!c)
                        break;
                if (c->id)
                        call_fail(qmp, c, -ETIMEDOUT, "no reply within %u ms", c->timeout_ms);
                else
                        call_fail(qmp, c, -ETIMEDOUT, "not sent: no QMP handshake within %u ms", c->timeout_ms);
                if (qmp->state == QMP_DISCONNECTED)
                        return;
        }
        timer_update(qmp);
}

static void on_written(uv_write_t *req, int status)
{
        struct qmp *qmp = req->handle->data;

        free(req);
        if (status < 0 && status != UV_ECANCELED)
                disconnect(qmp, status, "write: %s", uv_strerror(status));
}

/* Sends one request line. Failures are carried out by the timer. */
static void send_request(struct qmp *qmp, const char *command, struct json_object *arguments, uint64_t id)
{
        cleanup_json struct json_object *req = json_object_new_object();
        struct write_req *w;
        const char *text;
        size_t len;
        uv_buf_t buf;
        int r;

        if (!req || json_object_object_add(req, "execute", json_object_new_string(command)) < 0 ||
            (arguments && json_object_object_add(req, "arguments", json_object_get(arguments)) < 0) ||
            json_object_object_add(req, "id", json_object_new_int64((int64_t)id)) < 0) {
                fail_later(qmp, -ENOMEM, "out of memory");
                return;
        }
        text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
        len = text ? strlen(text) : 0;
        w = malloc(sizeof(*w) + len + 1);
        if (!text || !w) {
                free(w);
                fail_later(qmp, -ENOMEM, "out of memory");
                return;
        }
        memcpy(w->data, text, len);
        w->data[len] = '\n';
        buf = uv_buf_init(w->data, (unsigned)len + 1);
        r = uv_write(&w->req, (uv_stream_t *)&qmp->pipe, &buf, 1, on_written);
        if (r < 0) {
                free(w);
                fail_later(qmp, r, "write: %s", uv_strerror(r));
        }
}

static void call_send(struct qmp *qmp, struct qmp_call *c)
{
        c->id = qmp->next_id++;
        send_request(qmp, c->command, c->arguments, c->id);
        json_object_put(c->arguments);
        c->arguments = NULL;
}

static int protocol_error(struct qmp *qmp, const char *what, const struct error *detail)
{
        disconnect(qmp, -EPROTO, "protocol error: %s%s%s", what, detail ? ": " : "", detail ? detail->msg : "");
        return -EPROTO;
}

/* {"QMP": {"version": {"qemu": {"major": 7, …}, …}, "capabilities": [...]}} */
static int handle_greeting(struct qmp *qmp, struct json_object *msg)
{
        static const char *const parts[3] = { "major", "minor", "micro" };
        struct json_object *banner = NULL, *version = NULL, *qemu = NULL, *capabilities = NULL;
        struct error err = { 0 };
        int64_t n;

        if (json_get_object(msg, "QMP", true, &banner, &err) < 0)
                return protocol_error(qmp, "expected the QMP greeting", &err);
        if (json_get_object(banner, "version", true, &version, &err) < 0 ||
            json_get_object(version, "qemu", true, &qemu, &err) < 0)
                return protocol_error(qmp, "bad QMP greeting", &err);
        for (size_t i = 0; i < 3; i++) {
                if (json_get_int64(qemu, parts[i], true, &n, &err) < 0)
                        return protocol_error(qmp, "bad QMP greeting", &err);
                if (n < 0 || n > UINT16_MAX) {
                        error_set(&err, -ERANGE, "version field `%s` is out of range", parts[i]);
                        return protocol_error(qmp, "bad QMP greeting", &err);
                }
                qmp->version[i] = (unsigned)n;
        }
        if (!json_object_object_get_ex(banner, "capabilities", &capabilities) ||
            !json_object_is_type(capabilities, json_type_array)) {
                error_set(&err, -EINVAL, "field `capabilities` must be an array");
                return protocol_error(qmp, "bad QMP greeting", &err);
        }
        qmp->have_version = true;
        qmp->state = QMP_NEGOTIATING;
        /* No capability is asked for: out-of-band execution is not needed,
         * and without it QEMU answers in order of arrival. */
        qmp->negotiate_id = qmp->next_id++;
        send_request(qmp, "qmp_capabilities", NULL, qmp->negotiate_id);
        return 0;
}

static void handshake_done(struct qmp *qmp)
{
        qmp->state = QMP_RUNNING;
        for (struct qmp_call *c = qmp->calls_head; c; c = c->next)
                if (!c->id)
                        call_send(qmp, c);
        timer_update(qmp);
        if (qmp->config.on_state && !qmp->closed)
                qmp->config.on_state(qmp, QMP_RUNNING, NULL, qmp->config.userdata);
}

static int handle_event(struct qmp *qmp, struct json_object *msg)
{
        struct json_object *data = NULL, *timestamp = NULL;
        struct error err = { 0 };
        int64_t seconds = 0, microseconds = 0;
        const char *name = NULL;

        if (json_get_string(msg, "event", true, &name, &err) < 0 ||
            json_get_object(msg, "data", false, &data, &err) < 0 ||
            json_get_object(msg, "timestamp", false, &timestamp, &err) < 0 ||
            (timestamp && (json_get_int64(timestamp, "seconds", true, &seconds, &err) < 0 ||
                           json_get_int64(timestamp, "microseconds", true, &microseconds, &err) < 0)))
                return protocol_error(qmp, "bad event", &err);
        /* QEMU sends -1/-1 when it could not read the clock. */
        if (seconds < 0 || seconds > INT64_MAX / 1000000 - 1 || microseconds < 0 || microseconds >= 1000000)
                seconds = microseconds = 0;
        if (qmp->config.on_event && !qmp->closed)
                qmp->config.on_event(qmp, name, data, seconds * 1000000 + microseconds, qmp->config.userdata);
        return 0;
}

static struct qmp_call *call_find(struct qmp *qmp, struct json_object *id)
{
        int64_t n;

        /* We send positive integers; anything else is not ours. */
        if (!json_object_is_type(id, json_type_int))
                return NULL;
        n = json_object_get_int64(id);
        if (n <= 0)
                return NULL;
        for (struct qmp_call *c = qmp->calls_head; c; c = c->next)
                if (c->id == (uint64_t)n)
                        return c;
        return NULL;
}

/* {"return": VALUE, "id": N} or {"error": {"class": C, "desc": D}, "id": N} */
static int handle_reply(struct qmp *qmp, struct json_object *msg)
{
        struct json_object *value = NULL, *error = NULL, *id = NULL;
        const char *class = NULL, *desc = NULL;
        struct error err = { 0 };
        struct qmp_call *c;

        if (json_get_object(msg, "error", false, &error, &err) < 0 ||
            (error && (json_get_string(error, "class", true, &class, &err) < 0 ||
                       json_get_string(error, "desc", true, &desc, &err) < 0)))
                return protocol_error(qmp, "bad error reply", &err);
        if (!error && (!json_object_object_get_ex(msg, "return", &value) || !value))
                return protocol_error(qmp, "reply with a null return value", NULL);

        json_object_object_get_ex(msg, "id", &id);
        if (qmp->state == QMP_NEGOTIATING && json_object_is_type(id, json_type_int) &&
            json_object_get_int64(id) == (int64_t)qmp->negotiate_id) {
                if (error) {
                        disconnect(qmp, -EPROTO, "qmp_capabilities refused: %s: %s", class, desc);
                        return -EPROTO;
                }
                handshake_done(qmp);
                return 0;
        }
        c = call_find(qmp, id);
        if (!c)
                return 0; /* timed out already, or not ours: ignored */
        if (error) {
                struct error call_err;
                call_err.code = error_class_to_errno(class);
                snprintf(call_err.msg, sizeof(call_err.msg), "qmp %s: %s: %s", c->command, class, desc);
                call_finish(qmp, c, NULL, &call_err);
        } else
                call_finish(qmp, c, value, NULL);
        timer_update(qmp);
        return 0;
}

static void handle_line(struct qmp *qmp, const char *line, size_t len)
{
        cleanup_json struct json_object *msg = NULL;
        struct error err = { 0 };

        if (strspn(line, " \t\r") == len)
                return;
        if (json_parse_object(line, len, &msg, &err) < 0) {
                protocol_error(qmp, "bad message", &err);
                return;
        }
        if (qmp->state == QMP_GREETING)
                handle_greeting(qmp, msg);
        else if (json_object_object_get_ex(msg, "event", NULL))
                handle_event(qmp, msg);
        else if (json_object_object_get_ex(msg, "return", NULL) || json_object_object_get_ex(msg, "error", NULL))
                handle_reply(qmp, msg);
        else if (json_object_object_get_ex(msg, "QMP", NULL))
                protocol_error(qmp, "a second greeting", NULL);
        else
                protocol_error(qmp, "a message that is neither a reply nor an event", NULL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct qmp *qmp = h->data;

        (void)suggested;
        *buf = uv_buf_init(qmp->read_buf, sizeof(qmp->read_buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct qmp *qmp = s->data;
        char *line;
        size_t len;
        int r;

        if (n == UV_EOF) {
                disconnect(qmp, -ECONNRESET, "QEMU closed the connection");
                return;
        }
        /* QEMU reads its monitor one byte at a time and parses a command at
         * its closing brace: after `quit` it exits with our '\n' unread, and
         * the kernel then resets the connection instead of ending it. */
        if (n == UV_ECONNRESET) {
                disconnect(qmp, -ECONNRESET, "QEMU reset the connection");
                return;
        }
        if (n < 0) {
                disconnect(qmp, (int)n, "read: %s", uv_strerror((int)n));
                return;
        }
        r = linebuf_append(&qmp->lines, buf->base, (size_t)n);
        if (r == -E2BIG) {
                disconnect(qmp, -EPROTO, "protocol error: a line longer than %zu bytes", qmp->config.max_line);
                return;
        }
        if (r < 0) {
                disconnect(qmp, r, "out of memory");
                return;
        }
        /* Any callback may close the qmp: stop at once when it does. */
        while (qmp->state != QMP_DISCONNECTED && linebuf_next(&qmp->lines, &line, &len))
                handle_line(qmp, line, len);
}

static void start_reading(struct qmp *qmp)
{
        int r;

        qmp->state = QMP_GREETING;
        r = uv_read_start((uv_stream_t *)&qmp->pipe, on_alloc, on_read);
        if (r < 0)
                fail_later(qmp, r, "read: %s", uv_strerror(r));
}

static void on_connected(uv_connect_t *req, int status)
{
        struct qmp *qmp = req->data;

        if (qmp->state == QMP_DISCONNECTED)
                return; /* closed while connecting */
        if (status < 0) {
                disconnect(qmp, status, "connect `%s`: %s", qmp->path, uv_strerror(status));
                return;
        }
        start_reading(qmp);
}

static struct qmp *qmp_new(uv_loop_t *loop, const struct qmp_config *config)
{
        struct qmp *qmp = calloc(1, sizeof(*qmp));

        if (!qmp)
                return NULL;
        qmp->loop = loop;
        if (config)
                qmp->config = *config;
        if (qmp->config.max_line == 0)
                qmp->config.max_line = QMP_DEFAULT_MAX_LINE;
        if (qmp->config.handshake_timeout_ms == 0)
                qmp->config.handshake_timeout_ms = QMP_DEFAULT_HANDSHAKE_TIMEOUT_MS;
        linebuf_init(&qmp->lines, qmp->config.max_line);
        qmp->next_id = 1;
        uv_pipe_init(loop, &qmp->pipe, 0);
        uv_timer_init(loop, &qmp->timer);
        qmp->pipe.data = qmp->timer.data = qmp->connect_req.data = qmp;
        qmp->handles_open = 2;
        qmp->handshake_deadline = uv_now(loop) + qmp->config.handshake_timeout_ms;
        timer_update(qmp);
        return qmp;
}

int qmp_connect(uv_loop_t *loop, const char *path, const struct qmp_config *config, struct qmp **ret_qmp,
                struct error *err)
{
        struct qmp *qmp;

        if (strlen(path) >= sizeof(qmp->path))
                return error_set(err, -ENAMETOOLONG, "QMP socket path `%s` is longer than %zu bytes", path,
                                 sizeof(qmp->path) - 1);
        qmp = qmp_new(loop, config);
        if (!qmp)
                return error_set(err, -ENOMEM, "out of memory");
        str_copy(qmp->path, sizeof(qmp->path), path);
        qmp->state = QMP_CONNECTING;
        uv_pipe_connect(&qmp->connect_req, &qmp->pipe, qmp->path, on_connected);
        *ret_qmp = qmp;
        return 0;
}

int qmp_connect_fd(uv_loop_t *loop, int fd, const struct qmp_config *config, struct qmp **ret_qmp,
                   struct error *err)
{
        struct qmp *qmp = qmp_new(loop, config);
        int r;

        if (!qmp) {
                close(fd);
                return error_set(err, -ENOMEM, "out of memory");
        }
        r = uv_pipe_open(&qmp->pipe, fd);
        if (r < 0) {
                close(fd);
                qmp_close(qmp);
                return error_set(err, r, "QMP socket fd %d: %s", fd, uv_strerror(r));
        }
        start_reading(qmp);
        *ret_qmp = qmp;
        return 0;
}

static bool command_valid(const char *command)
{
        size_t len = strlen(command);

        return len > 0 && len <= QMP_MAX_COMMAND &&
               strspn(command, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

int qmp_execute(struct qmp *qmp, const char *command, struct json_object *arguments, unsigned timeout_ms,
                qmp_reply_fn callback, void *userdata, struct error *err)
{
        cleanup_json struct json_object *args = arguments;
        struct qmp_call *c;

        if (!command || !command_valid(command))
                return error_set(err, -EINVAL, "qmp: invalid command name");
        if (!callback)
                return error_set(err, -EINVAL, "qmp %s: no callback", command);
        if (args && !json_object_is_type(args, json_type_object))
                return error_set(err, -EINVAL, "qmp %s: arguments must be a JSON object", command);
        if (qmp->state == QMP_DISCONNECTED)
                return error_set(err, -ENOTCONN, "qmp %s: not connected: %s", command, qmp->reason.msg);
        if (qmp->n_calls >= QMP_MAX_PENDING)
                return error_set(err, -EBUSY, "qmp %s: %u calls already pending", command, qmp->n_calls);
        c = calloc(1, sizeof(*c));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        str_copy(c->command, sizeof(c->command), command);
        c->arguments = steal_pointer(&args);
        c->callback = callback;
        c->userdata = userdata;
        c->timeout_ms = timeout_ms;
        c->deadline = timeout_ms ? uv_now(qmp->loop) + timeout_ms : 0;
        call_link(qmp, c);
        if (qmp->state == QMP_RUNNING)
                call_send(qmp, c);
        timer_update(qmp);
        return 0;
}

int qmp_simple(struct qmp *qmp, enum qmp_verb verb, unsigned timeout_ms, qmp_reply_fn callback, void *userdata,
               struct error *err)
{
        const char *name = qmp_verb_name(verb);

        if (!name)
                return error_set(err, -EINVAL, "qmp: unknown verb %d", (int)verb);
        return qmp_execute(qmp, name, NULL, timeout_ms, callback, userdata, err);
}

struct qmp *qmp_close(struct qmp *qmp)
{
        if (!qmp || qmp->closed)
                return NULL;
        qmp->closed = true;
        if (qmp->state != QMP_DISCONNECTED)
                disconnect(qmp, -ECONNRESET, "closed");
        else
                calls_fail_all(qmp); /* closed from a callback while disconnecting */
        if (qmp->handles_open == 0) {
                linebuf_free(&qmp->lines);
                free(qmp);
        }
        return NULL;
}
