/* libFuzzer target: the QMP client with arbitrary bytes as everything QEMU
 * says. Per input: a client over a socketpair, three calls queued before
 * the greeting (they go out as ids 2, 3, 4 after qmp_capabilities, id 1),
 * the input written as the server's side, then EOF. The client must end
 * DISCONNECTED, having called every call's callback exactly once and the
 * state callback at most once per state, never after qmp_close(). Two
 * hooks reach the re-entrant paths: the first successful reply issues
 * another call, and an event named X-CLOSE closes the client from inside
 * its callback. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_CALLS 4

struct run {
        struct qmp *qmp;
        bool closed;
        int n_running, n_disconnected;
        int replies[N_CALLS];
        int n_issued;
        bool chained;
};

struct slot {
        struct run *run;
        int index;
};

static struct slot slots[N_CALLS];

static void on_reply(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        struct slot *s = userdata;
        struct run *r = s->run;

        if ((result == NULL) == (err == NULL))
                abort();
        if (err && (err->code >= 0 || strncmp(err->msg, "qmp ", 4) != 0))
                abort();
        if (result && r->n_running != 1)
                abort(); /* an answer before the handshake finished */
        if (++r->replies[s->index] != 1)
                abort();
        if (result && !r->chained && r->n_issued < N_CALLS) {
                r->chained = true;
                slots[r->n_issued] = (struct slot){ r, r->n_issued };
                if (qmp_simple(qmp, QMP_SYSTEM_RESET, 0, on_reply, &slots[r->n_issued], NULL) == 0)
                        r->n_issued++;
        }
}

static void on_event(struct qmp *qmp, const char *name, struct json_object *data, int64_t timestamp_us,
                     void *userdata)
{
        struct run *r = userdata;

        (void)data;
        if (r->closed || qmp != r->qmp || !name || timestamp_us < 0)
                abort();
        if (strcmp(name, "X-CLOSE") == 0) {
                r->closed = true;
                r->qmp = qmp_close(r->qmp);
        }
}

static void on_state(struct qmp *qmp, enum qmp_state state, const struct error *reason, void *userdata)
{
        struct run *r = userdata;

        if (r->closed || qmp != r->qmp)
                abort();
        if (state == QMP_RUNNING) {
                if (reason || ++r->n_running != 1 || r->n_disconnected)
                        abort();
        } else if (state == QMP_DISCONNECTED) {
                if (!reason || reason->code >= 0 || reason->msg[0] == '\0' || ++r->n_disconnected != 1)
                        abort();
        } else
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uv_loop_t *loop;
        struct run r = { 0 };
        struct qmp_config config = { .on_event = on_event, .on_state = on_state, .userdata = &r };
        static const enum qmp_verb verbs[] = { QMP_QUERY_STATUS, QMP_STOP, QMP_CONT };
        int fds[2];

        if (!loop) {
                signal(SIGPIPE, SIG_IGN);
                loop = uv_default_loop();
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
                abort();
        if (qmp_connect_fd(loop, fds[0], &config, &r.qmp, NULL) < 0)
                abort();
        for (int i = 0; i < 3; i++) {
                slots[i] = (struct slot){ &r, i };
                if (qmp_simple(r.qmp, verbs[i], 0, on_reply, &slots[i], NULL) < 0)
                        abort();
                r.n_issued++;
        }
        /* The socket buffer holds far more than -max_len, so this never
         * blocks; then EOF, while the client may still write to us. */
        for (size_t off = 0; off < size;) {
                ssize_t n = write(fds[1], data + off, size - off);
                if (n <= 0)
                        abort();
                off += (size_t)n;
        }
        shutdown(fds[1], SHUT_WR);

        while (!r.closed && qmp_get_state(r.qmp) != QMP_DISCONNECTED)
                uv_run(loop, UV_RUN_ONCE);
        if (!r.closed && r.n_disconnected != 1)
                abort();
        for (int i = 0; i < r.n_issued; i++)
                if (r.replies[i] != 1)
                        abort();
        r.qmp = qmp_close(r.qmp);
        uv_run(loop, UV_RUN_DEFAULT); /* lets the handles close and the qmp go */
        close(fds[1]);
        return 0;
}
