/* node/qmp: the QMP client against a fake QEMU on the other end of a
 * socketpair, driven from the test on the same libuv loop (after systemd's
 * test-qmp-client): handshake, queueing, id matching, events anywhere,
 * error replies, timeouts, every kind of disconnect, and the close
 * contract. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/linebuf.h"
#include "common/util.h"
#include "node/qmp.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, " \
                 "\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define MAX_CALLS (QMP_MAX_PENDING + 8)
#define MAX_RECEIVED 512
#define GUARD_MS 5000

struct call_result {
        struct fixture *f;
        char tag[16];
        int n;            /* times the callback ran */
        int code;
        char msg[512];
        char result[256]; /* the "return" value as JSON */
};

struct fixture {
        uv_loop_t loop;
        uv_timer_t guard, pause;
        bool guard_fired, pause_fired;

        /* The fake QEMU. */
        uv_pipe_t server;
        uv_pipe_t listener; /* only for connects by path */
        bool server_open, listener_open;
        struct linebuf server_lines;
        struct json_object *received[MAX_RECEIVED];
        int n_received, n_taken;

        struct qmp *qmp;
        struct qmp_config config;
        struct call_result calls[MAX_CALLS];
        int n_calls;
        char trace[4096]; /* callbacks in order, space separated */
        int n_running, n_disconnected;
        struct error reason;
        char last_event_data[256];
        int64_t last_event_timestamp;

        int close_in_reply_of;  /* call index whose reply callback closes the qmp; -1: none */
        bool close_in_disconnect;
        const char *close_in_event; /* an event whose callback closes the qmp */
        const char *execute_in_reply; /* a command the next reply callback issues */
};

static void trace_add(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace_add(struct fixture *f, const char *fmt, ...)
{
        size_t n = strlen(f->trace);
        va_list ap;

        if (n > 0 && n < sizeof(f->trace) - 1)
                f->trace[n++] = ' ';
        va_start(ap, fmt);
        vsnprintf(f->trace + n, sizeof(f->trace) - n, fmt, ap);
        va_end(ap);
}

/* ---- the client's callbacks ---- */

static int call_add(struct fixture *f, const char *tag);

static void on_reply(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        struct call_result *c = userdata;
        struct fixture *f = c->f;

        assert_true(qmp == f->qmp || f->qmp == NULL);
        c->n++;
        if (err) {
                assert_null(result);
                assert_true(err->code < 0);
                c->code = err->code;
                snprintf(c->msg, sizeof(c->msg), "%s", err->msg);
                trace_add(f, "reply:%s:%d", c->tag, err->code);
        } else {
                assert_non_null(result);
                c->code = 0;
                snprintf(c->result, sizeof(c->result), "%s",
                         json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN));
                trace_add(f, "reply:%s:ok", c->tag);
        }
        if (f->close_in_reply_of == c - f->calls) {
                f->close_in_reply_of = -1;
                f->qmp = qmp_close(f->qmp);
        }
        if (f->execute_in_reply) {
                int i = call_add(f, f->execute_in_reply);
                const char *command = f->execute_in_reply;

                f->execute_in_reply = NULL;
                assert_int_equal(qmp_execute(qmp, command, NULL, 0, on_reply, &f->calls[i], NULL), 0);
        }
}

static void on_event(struct qmp *qmp, const char *name, struct json_object *data, int64_t timestamp_us,
                     void *userdata)
{
        struct fixture *f = userdata;

        assert_ptr_equal(qmp, f->qmp);
        trace_add(f, "event:%s", name);
        snprintf(f->last_event_data, sizeof(f->last_event_data), "%s",
                 data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : "(none)");
        f->last_event_timestamp = timestamp_us;
        if (f->close_in_event && strcmp(name, f->close_in_event) == 0)
                f->qmp = qmp_close(f->qmp);
}

static void on_state(struct qmp *qmp, enum qmp_state state, const struct error *reason, void *userdata)
{
        struct fixture *f = userdata;

        assert_ptr_equal(qmp, f->qmp);
        assert_int_equal(qmp_get_state(qmp), state);
        trace_add(f, "state:%s", qmp_state_name(state));
        if (state == QMP_RUNNING) {
                assert_null(reason);
                f->n_running++;
                return;
        }
        assert_int_equal(state, QMP_DISCONNECTED);
        assert_non_null(reason);
        assert_true(reason->code < 0);
        f->reason = *reason;
        f->n_disconnected++;
        if (f->close_in_disconnect)
                f->qmp = qmp_close(f->qmp);
}

/* ---- the fake QEMU ---- */

static void server_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        (void)h;
        buf->base = malloc(suggested);
        buf->len = buf->base ? suggested : 0;
}

static void server_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct fixture *f = s->data;
        char *line;
        size_t len;

        if (n > 0) {
                assert_int_equal(linebuf_append(&f->server_lines, buf->base, (size_t)n), 0);
                while (linebuf_next(&f->server_lines, &line, &len)) {
                        struct error err = { 0 };
                        struct json_object *obj = NULL;

                        /* The client sends one compact object per line. */
                        assert_int_equal(json_parse_object(line, len, &obj, &err), 0);
                        assert_true(f->n_received < MAX_RECEIVED);
                        f->received[f->n_received++] = obj;
                }
        }
        free(buf->base);
}

static void server_start(struct fixture *f)
{
        f->server.data = f;
        f->server_open = true;
        assert_int_equal(uv_read_start((uv_stream_t *)&f->server, server_alloc, server_on_read), 0);
}

static void server_written(uv_write_t *req, int status)
{
        (void)status;
        free(req);
}

static void server_send_n(struct fixture *f, const char *text, size_t len)
{
        uv_write_t *req = malloc(sizeof(*req) + len);
        uv_buf_t buf;

        assert_non_null(req);
        memcpy(req + 1, text, len);
        buf = uv_buf_init((char *)(req + 1), (unsigned)len);
        assert_int_equal(uv_write(req, (uv_stream_t *)&f->server, &buf, 1, server_written), 0);
}

static void server_send(struct fixture *f, const char *text) { server_send_n(f, text, strlen(text)); }

static void server_sendf(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void server_sendf(struct fixture *f, const char *fmt, ...)
{
        char text[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        server_send(f, text);
}

/* QEMU going away: the client reads EOF. */
static void server_close(struct fixture *f)
{
        if (f->server_open) {
                f->server_open = false;
                uv_close((uv_handle_t *)&f->server, NULL);
        }
}

/* ---- driving the loop ---- */

static void on_guard(uv_timer_t *t) { ((struct fixture *)t->data)->guard_fired = true; }
static void on_pause(uv_timer_t *t) { ((struct fixture *)t->data)->pause_fired = true; }

/* Runs the loop until cond holds; fails the test after GUARD_MS. */
#define RUN_UNTIL(f, cond)                                                                                        \
        do {                                                                                                      \
                (f)->guard_fired = false;                                                                         \
                uv_timer_start(&(f)->guard, on_guard, GUARD_MS, 0);                                              \
                while (!(cond)) {                                                                                 \
                        if ((f)->guard_fired)                                                                     \
                                fail_msg("still false after %d ms: %s (trace: %s)", GUARD_MS, #cond, (f)->trace); \
                        uv_run(&(f)->loop, UV_RUN_ONCE);                                                          \
                }                                                                                                 \
                uv_timer_stop(&(f)->guard);                                                                       \
        } while (0)

/* Lets the loop run for ms: for "nothing happens" checks. */
static void run_for(struct fixture *f, unsigned ms)
{
        f->pause_fired = false;
        uv_timer_start(&f->pause, on_pause, ms, 0);
        RUN_UNTIL(f, f->pause_fired);
}

/* Waits for the next request and checks its command; returns its id. */
static int64_t server_expect(struct fixture *f, const char *command)
{
        struct json_object *req, *id = NULL, *args = NULL;
        const char *execute = NULL;

        RUN_UNTIL(f, f->n_received > f->n_taken);
        req = f->received[f->n_taken++];
        assert_int_equal(json_get_string(req, "execute", true, &execute, NULL), 0);
        assert_string_equal(execute, command);
        assert_true(json_object_object_get_ex(req, "id", &id));
        assert_true(json_object_is_type(id, json_type_int));
        if (json_object_object_get_ex(req, "arguments", &args))
                assert_true(json_object_is_type(args, json_type_object));
        assert_true(json_object_object_length(req) == (args ? 3 : 2));
        return json_object_get_int64(id);
}

/* The last request taken by server_expect(). */
static struct json_object *server_last(struct fixture *f) { return f->received[f->n_taken - 1]; }

static void server_expect_nothing(struct fixture *f)
{
        run_for(f, 20);
        assert_int_equal(f->n_received, f->n_taken);
}

static void handshake(struct fixture *f)
{
        server_send(f, GREETING);
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)server_expect(f, "qmp_capabilities"));
        RUN_UNTIL(f, f->n_running == 1);
        assert_int_equal(qmp_get_state(f->qmp), QMP_RUNNING);
}

static int call_add(struct fixture *f, const char *tag)
{
        struct call_result *c;

        assert_true(f->n_calls < MAX_CALLS);
        c = &f->calls[f->n_calls];
        c->f = f;
        snprintf(c->tag, sizeof(c->tag), "%s", tag);
        return f->n_calls++;
}

/* Issues command (tagged with its own name) and returns its index. */
static int call(struct fixture *f, const char *command, struct json_object *args, unsigned timeout_ms)
{
        int i = call_add(f, command);

        assert_int_equal(qmp_execute(f->qmp, command, args, timeout_ms, on_reply, &f->calls[i], NULL), 0);
        return i;
}

/* ---- fixtures ---- */

static struct fixture *fixture_alloc(void)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        uv_timer_init(&f->loop, &f->guard);
        uv_timer_init(&f->loop, &f->pause);
        f->guard.data = f->pause.data = f;
        linebuf_init(&f->server_lines, 1 << 20);
        f->close_in_reply_of = -1;
        f->config = (struct qmp_config){ .on_event = on_event, .on_state = on_state, .userdata = f };
        return f;
}

static struct fixture *fixture_new_with(unsigned handshake_timeout_ms)
{
        struct fixture *f = fixture_alloc();
        struct error err = { 0 };
        int fds[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        f->config.handshake_timeout_ms = handshake_timeout_ms;
        assert_int_equal(qmp_connect_fd(&f->loop, fds[0], &f->config, &f->qmp, &err), 0);
        assert_int_equal(qmp_get_state(f->qmp), QMP_GREETING);
        uv_pipe_init(&f->loop, &f->server, 0);
        assert_int_equal(uv_pipe_open(&f->server, fds[1]), 0);
        server_start(f);
        return f;
}

static struct fixture *fixture_new(void) { return fixture_new_with(0); }

static void fixture_free(struct fixture *f)
{
        f->qmp = qmp_close(f->qmp);
        server_close(f);
        if (f->listener_open)
                uv_close((uv_handle_t *)&f->listener, NULL);
        uv_close((uv_handle_t *)&f->guard, NULL);
        uv_close((uv_handle_t *)&f->pause, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        /* Every handle, the qmp's too, is closed: nothing leaks. */
        assert_int_equal(uv_loop_close(&f->loop), 0);
        for (int i = 0; i < f->n_received; i++)
                json_object_put(f->received[i]);
        linebuf_free(&f->server_lines);
        free(f);
}

static int setup(void **state)
{
        *state = fixture_new();
        return 0;
}

static int teardown(void **state)
{
        fixture_free(*state);
        return 0;
}

/* Each call's callback ran once, and failed with code. */
static void expect_failed(struct fixture *f, int i, int code, const char *msg)
{
        assert_int_equal(f->calls[i].n, 1);
        assert_int_equal(f->calls[i].code, code);
        if (msg)
                assert_string_equal(f->calls[i].msg, msg);
}

static void expect_ok(struct fixture *f, int i, const char *result)
{
        assert_int_equal(f->calls[i].n, 1);
        assert_int_equal(f->calls[i].code, 0);
        assert_string_equal(f->calls[i].result, result);
}

/* ---- tests ---- */

static void test_handshake(void **state)
{
        struct fixture *f = *state;
        unsigned major = 0, minor = 0, micro = 0;
        struct json_object *req;

        assert_int_equal(qmp_get_version(f->qmp, &major, &minor, &micro), -ENODATA);
        server_expect_nothing(f); /* QEMU speaks first */
        server_send(f, GREETING);
        server_expect(f, "qmp_capabilities");
        req = server_last(f);
        assert_false(json_object_object_get_ex(req, "arguments", NULL));
        assert_int_equal(qmp_get_state(f->qmp), QMP_NEGOTIATING);
        assert_int_equal(qmp_get_version(f->qmp, &major, &minor, &micro), 0);
        assert_int_equal(major, 7);
        assert_int_equal(minor, 2);
        assert_int_equal(micro, 22);
        assert_int_equal(f->n_running, 0);
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n",
                     (long long)json_object_get_int64(json_object_object_get(req, "id")));
        RUN_UNTIL(f, f->n_running == 1);
        assert_string_equal(f->trace, "state:running");
        assert_int_equal(qmp_get_state(f->qmp), QMP_RUNNING);
}

static void test_queued_until_running(void **state)
{
        struct fixture *f = *state;
        int stop, cont;

        stop = call(f, "stop", NULL, 0);
        cont = call(f, "cont", NULL, 0);
        server_expect_nothing(f);
        server_send(f, GREETING);
        /* Nothing but the negotiation before its return. */
        int64_t cap = server_expect(f, "qmp_capabilities");
        server_expect_nothing(f);
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)cap);
        int64_t id_stop = server_expect(f, "stop");
        int64_t id_cont = server_expect(f, "cont");
        assert_true(id_stop != id_cont && id_stop != cap && id_cont != cap);
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n{\"return\": {}, \"id\": %lld}\r\n", (long long)id_stop,
                     (long long)id_cont);
        RUN_UNTIL(f, f->calls[cont].n == 1);
        expect_ok(f, stop, "{}");
        expect_ok(f, cont, "{}");
        /* The queued calls went out before the state callback ran, and the
         * replies came in order. */
        assert_string_equal(f->trace, "state:running reply:stop:ok reply:cont:ok");
}

static void test_replies_out_of_order(void **state)
{
        struct fixture *f = *state;
        int a, b, c;
        int64_t ia, ib, ic;

        handshake(f);
        a = call(f, "query-status", NULL, 0);
        b = call(f, "query-name", NULL, 0);
        c = call(f, "query-kvm", NULL, 0);
        ia = server_expect(f, "query-status");
        ib = server_expect(f, "query-name");
        ic = server_expect(f, "query-kvm");
        server_sendf(f, "{\"return\": {\"enabled\": false, \"present\": false}, \"id\": %lld}\r\n", (long long)ic);
        RUN_UNTIL(f, f->calls[c].n == 1);
        assert_int_equal(f->calls[a].n, 0);
        server_sendf(f, "{\"id\": %lld, \"return\": {\"status\": \"paused\", \"running\": false}}\r\n", (long long)ia);
        server_sendf(f, "{\"return\": {\"name\": \"vm-1\"}, \"id\": %lld}\r\n", (long long)ib);
        RUN_UNTIL(f, f->calls[b].n == 1);
        expect_ok(f, a, "{\"status\":\"paused\",\"running\":false}");
        expect_ok(f, b, "{\"name\":\"vm-1\"}");
        expect_ok(f, c, "{\"enabled\":false,\"present\":false}");
        assert_string_equal(f->trace,
                            "state:running reply:query-kvm:ok reply:query-status:ok reply:query-name:ok");
}

static void test_events_interleaved(void **state)
{
        struct fixture *f = *state;
        int stop, cont;
        int64_t is, ic;

        /* An event may even come before the handshake is done. */
        server_send(f, GREETING);
        int64_t cap = server_expect(f, "qmp_capabilities");
        server_send(f, "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, \"event\": \"RESET\", "
                       "\"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\r\n");
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)cap);
        RUN_UNTIL(f, f->n_running == 1);
        assert_string_equal(f->last_event_data, "{\"guest\":true,\"reason\":\"guest-reset\"}");
        assert_int_equal(f->last_event_timestamp, 1700000000LL * 1000000 + 5);

        stop = call(f, "stop", NULL, 0);
        cont = call(f, "cont", NULL, 0);
        is = server_expect(f, "stop");
        ic = server_expect(f, "cont");
        /* Events before, between and after two replies, in one write, so
         * the client reads them in one go. */
        server_sendf(f,
                     "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                     "{\"return\": {}, \"id\": %lld}\r\n"
                     "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"RESUME\"}\r\n"
                     "{\"return\": {}, \"id\": %lld}\r\n"
                     "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 4}, \"event\": \"DEVICE_TRAY_MOVED\", "
                     "\"data\": {\"device\": \"ide1-cd0\", \"tray-open\": true, \"id\": \"cd0\"}}\r\n",
                     (long long)is, (long long)ic);
        RUN_UNTIL(f, strstr(f->trace, "DEVICE_TRAY_MOVED"));
        expect_ok(f, stop, "{}");
        expect_ok(f, cont, "{}");
        assert_string_equal(f->trace, "event:RESET state:running event:STOP reply:stop:ok event:RESUME "
                                      "reply:cont:ok event:DEVICE_TRAY_MOVED");
        /* The event's own "id" field is data, not a reply id. */
        assert_string_equal(f->last_event_data, "{\"device\":\"ide1-cd0\",\"tray-open\":true,\"id\":\"cd0\"}");
        assert_int_equal(f->last_event_timestamp, 1000004);

        /* An event split across reads is delivered once it is whole. */
        f->trace[0] = '\0';
        server_send(f, "{\"timestamp\": {\"seconds\": -1, \"microseconds\": -1}, \"event\": \"SHUT");
        run_for(f, 20);
        assert_string_equal(f->trace, "");
        server_send(f, "DOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"
                       "{\"event\": \"POWERDOWN\"}\r\n");
        RUN_UNTIL(f, strstr(f->trace, "POWERDOWN"));
        assert_string_equal(f->trace, "event:SHUTDOWN event:POWERDOWN");
        assert_string_equal(f->last_event_data, "(none)");
        assert_int_equal(f->last_event_timestamp, 0); /* no clock, no timestamp */
}

static void test_error_reply(void **state)
{
        struct fixture *f = *state;
        int stop, nope, dev;

        handshake(f);
        stop = call(f, "stop", NULL, 0);
        nope = call(f, "x-nope", NULL, 0);
        dev = call(f, "eject", json_tokener_parse("{\"id\": \"cd9\"}"), 0);
        server_sendf(f, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'a' is "
                        "unexpected\"}}\r\n", (long long)server_expect(f, "stop"));
        server_sendf(f, "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
                        "x-nope has not been found\"}}\r\n", (long long)server_expect(f, "x-nope"));
        server_sendf(f, "{\"id\": %lld, \"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'cd9' not "
                        "found\"}}\r\n", (long long)server_expect(f, "eject"));
        RUN_UNTIL(f, f->calls[dev].n == 1);
        expect_failed(f, stop, -EIO, "qmp stop: GenericError: Parameter 'a' is unexpected");
        expect_failed(f, nope, -EOPNOTSUPP, "qmp x-nope: CommandNotFound: The command x-nope has not been found");
        expect_failed(f, dev, -ENODEV, "qmp eject: DeviceNotFound: Device 'cd9' not found");
        /* An error reply is an answer, not a fault: still running. */
        assert_int_equal(qmp_get_state(f->qmp), QMP_RUNNING);
}

static void test_eof_before_greeting(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        int stop;

        stop = call(f, "stop", NULL, 0);
        server_close(f);
        RUN_UNTIL(f, f->n_disconnected == 1);
        expect_failed(f, stop, -ECONNRESET, "qmp stop: disconnected: QEMU closed the connection");
        assert_int_equal(f->reason.code, -ECONNRESET);
        assert_string_equal(f->reason.msg, "QEMU closed the connection");
        assert_string_equal(f->trace, "reply:stop:-104 state:disconnected");
        assert_int_equal(qmp_get_state(f->qmp), QMP_DISCONNECTED);
        /* Final: new calls are refused at once, and their callback never runs. */
        assert_int_equal(qmp_execute(f->qmp, "cont", NULL, 0, on_reply, &f->calls[call_add(f, "cont")], &err),
                         -ENOTCONN);
        assert_string_equal(err.msg, "qmp cont: not connected: QEMU closed the connection");
        run_for(f, 20);
        assert_int_equal(f->calls[stop].n, 1);
        assert_int_equal(f->calls[1].n, 0);
        assert_int_equal(f->n_disconnected, 1);
}

static void test_eof_during_negotiation(void **state)
{
        struct fixture *f = *state;
        int a, b;

        a = call(f, "query-status", NULL, 0);
        b = call(f, "stop", NULL, 1000);
        server_send(f, GREETING);
        server_expect(f, "qmp_capabilities");
        server_close(f);
        RUN_UNTIL(f, f->n_disconnected == 1);
        expect_failed(f, a, -ECONNRESET, NULL);
        expect_failed(f, b, -ECONNRESET, NULL);
        assert_int_equal(f->n_running, 0);
        run_for(f, 20);
        assert_int_equal(f->calls[a].n + f->calls[b].n, 2);
}

static void test_eof_with_calls_pending(void **state)
{
        struct fixture *f = *state;
        int a, b, c;
        int64_t ib;

        handshake(f);
        a = call(f, "query-status", NULL, 5000);
        b = call(f, "stop", NULL, 5000);
        c = call(f, "cont", NULL, 0);
        server_expect(f, "query-status");
        ib = server_expect(f, "stop");
        server_expect(f, "cont");
        /* One answer and an event, then QEMU dies. */
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"STOP\"}\r\n", (long long)ib);
        server_close(f);
        RUN_UNTIL(f, f->n_disconnected == 1);
        expect_ok(f, b, "{}");
        expect_failed(f, a, -ECONNRESET, "qmp query-status: disconnected: QEMU closed the connection");
        expect_failed(f, c, -ECONNRESET, "qmp cont: disconnected: QEMU closed the connection");
        assert_string_equal(f->trace, "state:running reply:stop:ok event:STOP reply:query-status:-104 "
                                      "reply:cont:-104 state:disconnected");
        /* The timeouts died with the connection. */
        run_for(f, 50);
        assert_int_equal(f->calls[a].n, 1);
}

/* QEMU exiting with bytes of ours unread: the kernel resets the connection
 * (what `quit` does, see qmp.c). Same outcome as an EOF. */
static void test_reset_by_peer(void **state)
{
        struct fixture *f = *state;
        int a;

        handshake(f);
        uv_read_stop((uv_stream_t *)&f->server);
        a = call(f, "quit", NULL, 0);
        run_for(f, 20);
        server_close(f);
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -ECONNRESET);
        assert_string_equal(f->reason.msg, "QEMU reset the connection");
        expect_failed(f, a, -ECONNRESET, "qmp quit: disconnected: QEMU reset the connection");
}

static void test_timeout(void **state)
{
        struct fixture *f = *state;
        int slow, queued, next;
        int64_t islow;

        /* A call still queued when its time is up is never sent. */
        queued = call(f, "system_reset", NULL, 30);
        RUN_UNTIL(f, f->calls[queued].n == 1);
        expect_failed(f, queued, -ETIMEDOUT, "qmp system_reset: not sent: no QMP handshake within 30 ms");
        handshake(f);

        slow = call(f, "query-status", NULL, 50);
        islow = server_expect(f, "query-status");
        RUN_UNTIL(f, f->calls[slow].n == 1);
        expect_failed(f, slow, -ETIMEDOUT, "qmp query-status: no reply within 50 ms");

        /* The late reply is ignored; the connection carries on. */
        next = call(f, "cont", NULL, 1000);
        int64_t inext = server_expect(f, "cont");
        server_sendf(f, "{\"return\": {\"status\": \"running\"}, \"id\": %lld}\r\n{\"return\": {}, \"id\": %lld}\r\n",
                     (long long)islow, (long long)inext);
        RUN_UNTIL(f, f->calls[next].n == 1);
        expect_ok(f, next, "{}");
        assert_int_equal(f->calls[slow].n, 1);
        assert_int_equal(f->n_received, f->n_taken); /* system_reset never went out */
        assert_int_equal(qmp_get_state(f->qmp), QMP_RUNNING);
        assert_string_equal(f->trace, "reply:system_reset:-110 state:running reply:query-status:-110 reply:cont:ok");
}

static void test_handshake_timeout(void **state)
{
        struct fixture *f = fixture_new_with(40);
        int a;

        (void)state;
        a = call(f, "stop", NULL, 0);
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -ETIMEDOUT);
        assert_string_equal(f->reason.msg, "no QMP greeting within 40 ms");
        expect_failed(f, a, -ECONNRESET, "qmp stop: disconnected: no QMP greeting within 40 ms");
        fixture_free(f);

        f = fixture_new_with(40);
        server_send(f, GREETING);
        server_expect(f, "qmp_capabilities");
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_string_equal(f->reason.msg, "no QMP reply to qmp_capabilities within 40 ms");
        fixture_free(f);
}

/* The client disconnects with reason after the server sends each of these
 * (after the greeting, unless the case is about the greeting). */
static void expect_protocol_error_n(bool greeted, const char *send, size_t len, const char *reason)
{
        struct fixture *f = fixture_new();
        int a;

        if (greeted)
                handshake(f);
        a = call(f, "query-status", NULL, 0);
        server_send_n(f, send, len);
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -EPROTO);
        if (strncmp(f->reason.msg, reason, strlen(reason)) != 0)
                fail_msg("after %s: reason \"%s\", want \"%s…\"", send, f->reason.msg, reason);
        expect_failed(f, a, -ECONNRESET, NULL);
        assert_int_equal(qmp_get_state(f->qmp), QMP_DISCONNECTED);
        fixture_free(f);
}

static void expect_protocol_error(bool greeted, const char *send, const char *reason)
{
        expect_protocol_error_n(greeted, send, strlen(send), reason);
}

static void test_bad_greeting(void **state)
{
        (void)state;
        expect_protocol_error(false, "{\"event\": \"STOP\"}\r\n",
                              "protocol error: expected the QMP greeting: field `QMP` is missing");
        expect_protocol_error(false, "{\"QMP\": {}}\r\n",
                              "protocol error: bad QMP greeting: field `version` is missing");
        expect_protocol_error(false, "{\"QMP\": []}\r\n",
                              "protocol error: expected the QMP greeting: field `QMP` must be an object");
        expect_protocol_error(false,
                              "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": \"0\", \"minor\": 2, \"major\": 7}}, "
                              "\"capabilities\": []}}\r\n",
                              "protocol error: bad QMP greeting: field `micro` must be an integer");
        expect_protocol_error(false,
                              "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": -2, \"major\": 7}}, "
                              "\"capabilities\": []}}\r\n",
                              "protocol error: bad QMP greeting: version field `minor` is out of range");
        expect_protocol_error(false,
                              "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "
                              "\"capabilities\": \"oob\"}}\r\n",
                              "protocol error: bad QMP greeting: field `capabilities` must be an array");
        expect_protocol_error(false, "[1, 2]\r\n", "protocol error: bad message: expected a JSON object");
        expect_protocol_error(false, "{\"QMP\": \n", "protocol error: bad message: JSON text ends early");
}

static void test_capabilities_refused(void **state)
{
        struct fixture *f = *state;
        int a;

        a = call(f, "stop", NULL, 0);
        server_send(f, GREETING);
        server_sendf(f, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n",
                     (long long)server_expect(f, "qmp_capabilities"));
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -EPROTO);
        assert_string_equal(f->reason.msg, "qmp_capabilities refused: GenericError: no");
        expect_failed(f, a, -ECONNRESET, "qmp stop: disconnected: qmp_capabilities refused: GenericError: no");
        assert_int_equal(f->n_running, 0);
}

static void test_bad_messages(void **state)
{
        (void)state;
        expect_protocol_error(true, "garbage\r\n", "protocol error: bad message: invalid JSON at byte 0");
        expect_protocol_error(true, "{\"return\": {}, \"id\": 2} trailing\r\n",
                              "protocol error: bad message: unexpected bytes after the JSON object");
        expect_protocol_error_n(true, "{\"event\": \"ST\0P\"}\r\n", sizeof("{\"event\": \"ST\0P\"}\r\n") - 1,
                                "protocol error: bad message: JSON text contains a NUL byte");
        expect_protocol_error(true, "{\"event\": \"ST\\u0000P\"}\r\n",
                              "protocol error: bad event: field `event` contains a NUL character");
        expect_protocol_error(true, "{\"event\": 5}\r\n", "protocol error: bad event: field `event` must be a string");
        expect_protocol_error(true, "{\"event\": \"STOP\", \"data\": [1]}\r\n",
                              "protocol error: bad event: field `data` must be an object");
        expect_protocol_error(true, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1}}\r\n",
                              "protocol error: bad event: field `microseconds` is missing");
        expect_protocol_error(true, "{\"error\": \"no\", \"id\": 2}\r\n",
                              "protocol error: bad error reply: field `error` must be an object");
        expect_protocol_error(true, "{\"error\": {\"class\": \"GenericError\"}, \"id\": 2}\r\n",
                              "protocol error: bad error reply: field `desc` is missing");
        expect_protocol_error(true, "{\"return\": null, \"id\": 2}\r\n",
                              "protocol error: reply with a null return value");
        expect_protocol_error(true, GREETING, "protocol error: a second greeting");
        expect_protocol_error(true, "{\"hello\": 1}\r\n",
                              "protocol error: a message that is neither a reply nor an event");
        /* Nesting deeper than the JSON bound. */
        expect_protocol_error(true,
                              "{\"return\": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]], \"id\": 2}\r\n",
                              "protocol error: bad message: invalid JSON");
}

static void test_unknown_ids_ignored(void **state)
{
        struct fixture *f = *state;
        int a;
        int64_t ia;

        handshake(f);
        a = call(f, "query-status", NULL, 0);
        ia = server_expect(f, "query-status");
        server_send(f, "{\"return\": {}, \"id\": 999}\r\n"
                       "{\"return\": {}, \"id\": \"1\"}\r\n"
                       "{\"return\": {}, \"id\": -1}\r\n"
                       "{\"return\": {}, \"id\": 1.5}\r\n"
                       "{\"return\": {}, \"id\": 99999999999999999999999}\r\n"
                       "{\"return\": {}}\r\n"
                       /* QEMU's answer to a line it could not parse has no id. */
                       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n"
                       "\r\n");
        run_for(f, 20);
        assert_int_equal(f->calls[a].n, 0);
        server_sendf(f, "{\"return\": {\"running\": true}, \"id\": %lld}\r\n", (long long)ia);
        RUN_UNTIL(f, f->calls[a].n == 1);
        expect_ok(f, a, "{\"running\":true}");
        assert_int_equal(qmp_get_state(f->qmp), QMP_RUNNING);
}

static char *line_of(size_t len, const char *event)
{
        /* {"event": "EVENT", "data": {"s": "aaa…"}} padded to len bytes. */
        char *line = malloc(len + 1);
        int head;

        assert_non_null(line);
        head = snprintf(line, len + 1, "{\"event\": \"%s\", \"data\": {\"s\": \"", event);
        memset(line + head, 'a', len - (size_t)head - 3);
        memcpy(line + len - 3, "\"}}", 4);
        assert_int_equal(strlen(line), len);
        return line;
}

static void test_oversized_line(void **state)
{
        struct fixture *f = *state;
        cleanup_free char *at_max = line_of(QMP_DEFAULT_MAX_LINE - 1, "BIG"); /* + '\r' = the limit */
        cleanup_free char *over = line_of(QMP_DEFAULT_MAX_LINE + 1, "HUGE");
        int a;

        handshake(f);
        a = call(f, "query-status", NULL, 0);
        server_send(f, at_max);
        server_send(f, "\r\n");
        RUN_UNTIL(f, strstr(f->trace, "event:BIG"));
        assert_int_equal(strlen(f->last_event_data), sizeof(f->last_event_data) - 1);
        /* One byte more, and no newline needed to know. */
        server_send(f, over);
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -EPROTO);
        assert_string_equal(f->reason.msg, "protocol error: a line longer than 1048576 bytes");
        expect_failed(f, a, -ECONNRESET, NULL);
        assert_null(strstr(f->trace, "HUGE"));
}

static void test_close_fails_calls_inside(void **state)
{
        struct fixture *f = *state;
        int a, b;

        handshake(f);
        a = call(f, "stop", NULL, 1000);
        b = call(f, "cont", NULL, 0);
        server_expect(f, "stop");
        server_expect(f, "cont");
        f->qmp = qmp_close(f->qmp);
        assert_null(f->qmp);
        /* Inside qmp_close(), and with no state callback. */
        expect_failed(f, a, -ECONNRESET, "qmp stop: disconnected: closed");
        expect_failed(f, b, -ECONNRESET, "qmp cont: disconnected: closed");
        assert_string_equal(f->trace, "state:running reply:stop:-104 reply:cont:-104");
        /* Whatever QEMU still says reaches nobody. */
        server_send(f, "{\"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": 2}\r\n");
        run_for(f, 50);
        assert_string_equal(f->trace, "state:running reply:stop:-104 reply:cont:-104");
}

static void test_close_before_connected(void **state)
{
        struct fixture *f = *state;
        int a;

        a = call(f, "stop", NULL, 10);
        f->qmp = qmp_close(f->qmp);
        expect_failed(f, a, -ECONNRESET, "qmp stop: disconnected: closed");
        run_for(f, 30);
        assert_int_equal(f->calls[a].n, 1);
        assert_null(qmp_close(NULL));
}

static void test_close_from_reply_callback(void **state)
{
        struct fixture *f = *state;
        int a, b;
        int64_t ia, ib;

        handshake(f);
        a = call(f, "stop", NULL, 0);
        b = call(f, "cont", NULL, 0);
        ia = server_expect(f, "stop");
        ib = server_expect(f, "cont");
        f->close_in_reply_of = a;
        /* All in one read: the event and the second reply come after the
         * callback closed the qmp, and must not be delivered. */
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": %lld}\r\n",
                     (long long)ia, (long long)ib);
        RUN_UNTIL(f, f->qmp == NULL);
        expect_ok(f, a, "{}");
        expect_failed(f, b, -ECONNRESET, "qmp cont: disconnected: closed");
        run_for(f, 20);
        assert_string_equal(f->trace, "state:running reply:stop:ok reply:cont:-104");
}

static void test_close_from_event_callback(void **state)
{
        struct fixture *f = *state;
        int a;
        int64_t ia;

        handshake(f);
        a = call(f, "quit", NULL, 0);
        ia = server_expect(f, "quit");
        f->close_in_event = "SHUTDOWN";
        server_sendf(f, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n"
                        "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"STOP\"}\r\n", (long long)ia);
        RUN_UNTIL(f, f->qmp == NULL);
        expect_failed(f, a, -ECONNRESET, "qmp quit: disconnected: closed");
        run_for(f, 20);
        assert_string_equal(f->trace, "state:running event:SHUTDOWN reply:quit:-104");
}

static void test_close_from_state_callback(void **state)
{
        struct fixture *f = *state;
        int a;

        handshake(f);
        a = call(f, "stop", NULL, 0);
        server_expect(f, "stop");
        f->close_in_disconnect = true; /* what a caller that reconnects does */
        server_close(f);
        RUN_UNTIL(f, f->qmp == NULL);
        expect_failed(f, a, -ECONNRESET, NULL);
        assert_string_equal(f->trace, "state:running reply:stop:-104 state:disconnected");
}

static void test_close_during_disconnect_drain(void **state)
{
        struct fixture *f = *state;
        int a, b, c;

        handshake(f);
        a = call(f, "stop", NULL, 0);
        b = call(f, "cont", NULL, 0);
        c = call(f, "quit", NULL, 0);
        server_expect(f, "stop");
        server_expect(f, "cont");
        server_expect(f, "quit");
        /* The first failure closes the qmp: the rest fail inside that
         * qmp_close(), once each, and no state callback follows. */
        f->close_in_reply_of = a;
        server_close(f);
        RUN_UNTIL(f, f->qmp == NULL);
        expect_failed(f, a, -ECONNRESET, NULL);
        expect_failed(f, b, -ECONNRESET, NULL);
        expect_failed(f, c, -ECONNRESET, NULL);
        assert_string_equal(f->trace, "state:running reply:stop:-104 reply:cont:-104 reply:quit:-104");
}

static void test_execute_from_reply_callback(void **state)
{
        struct fixture *f = *state;
        int a;

        handshake(f);
        a = call(f, "stop", NULL, 0);
        f->execute_in_reply = "cont";
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)server_expect(f, "stop"));
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)server_expect(f, "cont"));
        RUN_UNTIL(f, f->n_calls == 2 && f->calls[1].n == 1);
        expect_ok(f, a, "{}");
        expect_ok(f, 1, "{}");
}

static void test_simple_verbs(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };

        handshake(f);
        for (int v = 0; v < QMP_N_VERBS; v++) {
                int i = call_add(f, qmp_verb_name(v));

                assert_int_equal(qmp_simple(f->qmp, v, 1000, on_reply, &f->calls[i], NULL), 0);
                server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)server_expect(f, qmp_verb_name(v)));
                assert_false(json_object_object_get_ex(server_last(f), "arguments", NULL));
                RUN_UNTIL(f, f->calls[i].n == 1);
                expect_ok(f, i, "{}");
        }
        assert_string_equal(qmp_verb_name(QMP_STOP), "stop");
        assert_string_equal(qmp_verb_name(QMP_SYSTEM_POWERDOWN), "system_powerdown");
        assert_null(qmp_verb_name(QMP_N_VERBS));
        assert_int_equal(qmp_simple(f->qmp, QMP_N_VERBS, 0, on_reply, NULL, &err), -EINVAL);
}

static void test_execute_arguments(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        struct json_object *args = NULL;
        int a;

        handshake(f);
        a = call(f, "eject", json_tokener_parse("{\"id\": \"cd0\", \"force\": true}"), 0);
        server_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)server_expect(f, "eject"));
        assert_true(json_object_object_get_ex(server_last(f), "arguments", &args));
        assert_string_equal(json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN),
                            "{\"id\":\"cd0\",\"force\":true}");
        RUN_UNTIL(f, f->calls[a].n == 1);

        /* Refusals take the arguments too (ASan would see a leak). */
        assert_int_equal(qmp_execute(f->qmp, "eject", json_tokener_parse("[1]"), 0, on_reply, NULL, &err), -EINVAL);
        assert_string_equal(err.msg, "qmp eject: arguments must be a JSON object");
        assert_int_equal(qmp_execute(f->qmp, "stop\n", json_object_new_object(), 0, on_reply, NULL, &err), -EINVAL);
        assert_int_equal(qmp_execute(f->qmp, "", NULL, 0, on_reply, NULL, &err), -EINVAL);
        assert_int_equal(qmp_execute(f->qmp, "stop", json_object_new_object(), 0, NULL, NULL, &err), -EINVAL);
        server_expect_nothing(f);
}

static void count_reply(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        (void)qmp;
        (void)result;
        if (err && err->code == -ECONNRESET)
                (*(int *)userdata)++;
}

static void test_pending_limit(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        int failed = 0;

        for (int i = 0; i < QMP_MAX_PENDING; i++)
                assert_int_equal(qmp_execute(f->qmp, "stop", NULL, 0, count_reply, &failed, NULL), 0);
        assert_int_equal(qmp_execute(f->qmp, "stop", NULL, 0, count_reply, &failed, &err), -EBUSY);
        assert_string_equal(err.msg, "qmp stop: 256 calls already pending");
        f->qmp = qmp_close(f->qmp);
        assert_int_equal(failed, QMP_MAX_PENDING);
}

/* ---- connecting by path ---- */

static void on_server_connection(uv_stream_t *listener, int status)
{
        struct fixture *f = listener->data;

        assert_int_equal(status, 0);
        uv_pipe_init(&f->loop, &f->server, 0);
        assert_int_equal(uv_accept(listener, (uv_stream_t *)&f->server), 0);
        server_start(f);
}

static void test_connect_path(void **state)
{
        struct fixture *f = fixture_alloc();
        struct error err = { 0 };
        char dir[] = "/tmp/test-qmp-XXXXXX", path[128], missing[128], long_path[200];
        int a;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/qmp.sock", dir);
        snprintf(missing, sizeof(missing), "%s/absent.sock", dir);
        uv_pipe_init(&f->loop, &f->listener, 0);
        f->listener.data = f;
        f->listener_open = true;
        assert_int_equal(uv_pipe_bind(&f->listener, path), 0);
        assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 4, on_server_connection), 0);

        assert_int_equal(qmp_connect(&f->loop, path, &f->config, &f->qmp, &err), 0);
        assert_int_equal(qmp_get_state(f->qmp), QMP_CONNECTING);
        a = call(f, "query-status", NULL, 0);
        RUN_UNTIL(f, f->server_open);
        handshake(f);
        server_sendf(f, "{\"return\": {\"status\": \"running\"}, \"id\": %lld}\r\n",
                     (long long)server_expect(f, "query-status"));
        RUN_UNTIL(f, f->calls[a].n == 1);
        expect_ok(f, a, "{\"status\":\"running\"}");
        f->qmp = qmp_close(f->qmp);

        /* Reconnecting is a new qmp; a refused connect is a disconnect. */
        f->n_running = f->n_disconnected = 0;
        assert_int_equal(qmp_connect(&f->loop, missing, &f->config, &f->qmp, &err), 0);
        a = call(f, "stop", NULL, 0);
        RUN_UNTIL(f, f->n_disconnected == 1);
        assert_int_equal(f->reason.code, -ENOENT);
        char want[256];
        snprintf(want, sizeof(want), "connect `%s`: no such file or directory", missing);
        assert_string_equal(f->reason.msg, want);
        expect_failed(f, a, -ECONNRESET, NULL);
        f->qmp = qmp_close(f->qmp);

        memset(long_path, 'x', sizeof(long_path) - 1);
        long_path[0] = '/';
        long_path[sizeof(long_path) - 1] = '\0';
        assert_int_equal(qmp_connect(&f->loop, long_path, &f->config, &f->qmp, &err), -ENAMETOOLONG);
        assert_null(f->qmp);

        fixture_free(f);
        unlink(path);
        rmdir(dir);
}

static void test_connect_fd_refused(void **state)
{
        struct fixture *f = fixture_alloc();
        struct error err = { 0 };

        (void)state;
        assert_int_equal(qmp_connect_fd(&f->loop, -1, &f->config, &f->qmp, &err), -EBADF);
        assert_string_equal(err.msg, "QMP socket fd -1: bad file descriptor");
        assert_null(f->qmp);
        fixture_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queued_until_running, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replies_out_of_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events_interleaved, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eof_before_greeting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eof_during_negotiation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eof_with_calls_pending, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset_by_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
                cmocka_unit_test(test_handshake_timeout),
                cmocka_unit_test(test_bad_greeting),
                cmocka_unit_test_setup_teardown(test_capabilities_refused, setup, teardown),
                cmocka_unit_test(test_bad_messages),
                cmocka_unit_test_setup_teardown(test_unknown_ids_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversized_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_fails_calls_inside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_before_connected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_from_reply_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_from_event_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_from_state_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_during_disconnect_drain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_execute_from_reply_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_simple_verbs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_execute_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pending_limit, setup, teardown),
                cmocka_unit_test(test_connect_path),
                cmocka_unit_test(test_connect_fd_refused),
        };

        /* A write to a QEMU that died must be an error, not a signal (vpsd
         * ignores SIGPIPE the same way). */
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
