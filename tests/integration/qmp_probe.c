/* Test driver for node/qmp against a real QEMU: connects to its QMP socket,
 * closes and connects again (what vpsd does after a restart), then
 * query-status, stop, query-status, cont, query-status, ITERATIONS timed
 * stop/cont pairs, query-status, and quit, and prints what it observed, one
 * fact a line:
 *
 *   connected 7.2.22 | reconnected | status running running=true |
 *   stop ok | event STOP | cont ok | event RESUME | events STOP=N RESUME=N |
 *   rtt stop p50_us=… p99_us=… | samples stop <µs> <µs> … | quit ok |
 *   disconnected: <reason>
 *
 * Exit status 0 when the whole sequence ran, 1 at the first failure (the
 * line "error: …" says which). Usage: qmp_probe SOCKET [ITERATIONS] */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/qmp.h"

#define TIMEOUT_MS 10000

enum step {
        STEP_FIRST_STATUS, /* on the first connection, which is then closed */
        STEP_STATUS_START,
        STEP_STOP,
        STEP_STATUS_STOPPED,
        STEP_CONT,
        STEP_STATUS_RUNNING,
        STEP_LOOP_STOP,
        STEP_LOOP_CONT,
        STEP_STATUS_END,
        STEP_QUIT,
        STEP_WAIT_DISCONNECT,
};

struct probe {
        uv_loop_t *loop;
        uv_timer_t watchdog;
        const char *path;
        struct qmp *qmp;
        int connects;
        enum step step;
        int iterations, done;
        uint64_t sent_ns;
        uint64_t *stop_ns, *cont_ns, *pair_ns;
        int n_stop_events, n_resume_events;
        bool verbose_events;
        int exit_code;
};

static void finish(struct probe *p, int code)
{
        p->exit_code = code;
        p->qmp = qmp_close(p->qmp);
        if (!uv_is_closing((uv_handle_t *)&p->watchdog))
                uv_close((uv_handle_t *)&p->watchdog, NULL);
        fflush(stdout);
}

static void on_reply(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata);

static void issue(struct probe *p, enum qmp_verb verb)
{
        struct error err = { 0 };

        p->sent_ns = uv_hrtime();
        if (qmp_simple(p->qmp, verb, TIMEOUT_MS, on_reply, p, &err) < 0) {
                printf("error: %s\n", err.msg);
                finish(p, 1);
        }
}

static int print_status(struct json_object *result)
{
        struct json_object *status = NULL, *running = NULL;

        if (!json_object_object_get_ex(result, "status", &status) || !json_object_is_type(status, json_type_string) ||
            !json_object_object_get_ex(result, "running", &running) ||
            !json_object_is_type(running, json_type_boolean)) {
                printf("error: query-status returned %s\n", json_object_to_json_string(result));
                return -EINVAL;
        }
        printf("status %s running=%s\n", json_object_get_string(status),
               json_object_get_boolean(running) ? "true" : "false");
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static void print_percentiles(const char *name, uint64_t *ns, int n)
{
        qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
        /* Nearest rank. */
        printf("rtt %s n=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n", name, n, ns[(n * 50 + 99) / 100 - 1] / 1e3,
               ns[(n * 99 + 99) / 100 - 1] / 1e3, ns[n - 1] / 1e3);
        /* Every sample too, so that a benchmark can pool many guests'. */
        printf("samples %s", name);
        for (int i = 0; i < n; i++)
                printf(" %.1f", ns[i] / 1e3);
        printf("\n");
}

static int connect_again(struct probe *p);

static void on_reply(struct qmp *qmp, struct json_object *result, const struct error *err, void *userdata)
{
        struct probe *p = userdata;
        uint64_t rtt = uv_hrtime() - p->sent_ns;

        (void)qmp;
        if (err) {
                printf("error: %s (%d)\n", err->msg, err->code);
                finish(p, 1);
                return;
        }
        switch (p->step) {
        case STEP_FIRST_STATUS:
                if (print_status(result) < 0) {
                        finish(p, 1);
                        return;
                }
                /* Close from inside a reply callback, then a new qmp. */
                p->qmp = qmp_close(p->qmp);
                p->step = STEP_STATUS_START;
                if (connect_again(p) < 0)
                        finish(p, 1);
                return;
        case STEP_STATUS_START:
        case STEP_STATUS_STOPPED:
        case STEP_STATUS_RUNNING:
                if (print_status(result) < 0) {
                        finish(p, 1);
                        return;
                }
                p->step++;
                /* Only the events of the first stop and cont are printed. */
                if (p->step == STEP_LOOP_STOP)
                        p->verbose_events = false;
                issue(p, p->step == STEP_CONT ? QMP_CONT : QMP_STOP);
                return;
        case STEP_STOP:
        case STEP_CONT:
                printf("%s ok\n", p->step == STEP_STOP ? "stop" : "cont");
                p->step++;
                issue(p, QMP_QUERY_STATUS);
                return;
        case STEP_LOOP_STOP:
                p->stop_ns[p->done] = rtt;
                p->pair_ns[p->done] = rtt;
                p->step = STEP_LOOP_CONT;
                issue(p, QMP_CONT);
                return;
        case STEP_LOOP_CONT:
                p->cont_ns[p->done] = rtt;
                p->pair_ns[p->done] += rtt;
                if (++p->done < p->iterations) {
                        p->step = STEP_LOOP_STOP;
                        issue(p, QMP_STOP);
                        return;
                }
                p->step = STEP_STATUS_END;
                issue(p, QMP_QUERY_STATUS);
                return;
        case STEP_STATUS_END:
                if (print_status(result) < 0) {
                        finish(p, 1);
                        return;
                }
                printf("events STOP=%d RESUME=%d\n", p->n_stop_events, p->n_resume_events);
                print_percentiles("stop", p->stop_ns, p->iterations);
                print_percentiles("cont", p->cont_ns, p->iterations);
                print_percentiles("stop+cont", p->pair_ns, p->iterations);
                p->step = STEP_QUIT;
                issue(p, QMP_QUIT);
                return;
        case STEP_QUIT:
                printf("quit ok\n");
                p->step = STEP_WAIT_DISCONNECT;
                return;
        case STEP_WAIT_DISCONNECT:
                break;
        }
        printf("error: unexpected reply at step %d\n", p->step);
        finish(p, 1);
}

static void on_event(struct qmp *qmp, const char *name, struct json_object *data, int64_t timestamp_us,
                     void *userdata)
{
        struct probe *p = userdata;

        (void)qmp;
        (void)data;
        (void)timestamp_us;
        if (strcmp(name, "STOP") == 0)
                p->n_stop_events++;
        else if (strcmp(name, "RESUME") == 0)
                p->n_resume_events++;
        if (p->verbose_events)
                printf("event %s\n", name);
}

static void on_state(struct qmp *qmp, enum qmp_state state, const struct error *reason, void *userdata)
{
        struct probe *p = userdata;
        unsigned major, minor, micro;

        if (state == QMP_DISCONNECTED) {
                printf("disconnected: %s\n", reason->msg);
                finish(p, p->step == STEP_WAIT_DISCONNECT ? 0 : 1);
                return;
        }
        if (p->connects == 1) {
                qmp_get_version(qmp, &major, &minor, &micro);
                printf("connected %u.%u.%u\n", major, minor, micro);
        } else
                printf("reconnected\n");
        fflush(stdout);
}

static int connect_again(struct probe *p)
{
        struct qmp_config config = { .on_event = on_event, .on_state = on_state, .userdata = p };
        struct error err = { 0 };

        p->connects++;
        if (qmp_connect(p->loop, p->path, &config, &p->qmp, &err) < 0) {
                printf("error: %s\n", err.msg);
                return -1;
        }
        /* Queued until the handshake is done. */
        p->sent_ns = uv_hrtime();
        if (qmp_simple(p->qmp, QMP_QUERY_STATUS, TIMEOUT_MS, on_reply, p, &err) < 0) {
                printf("error: %s\n", err.msg);
                return -1;
        }
        return 0;
}

static void on_watchdog(uv_timer_t *t)
{
        struct probe *p = t->data;

        printf("error: still at step %d after 120 s\n", p->step);
        finish(p, 1);
}

int main(int argc, char **argv)
{
        struct probe p = { .loop = uv_default_loop(), .verbose_events = true, .exit_code = 1 };

        if (argc < 2 || argc > 3) {
                fprintf(stderr, "usage: qmp_probe SOCKET [ITERATIONS]\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0); /* the test reads lines as they come */
        p.path = argv[1];
        p.iterations = argc == 3 ? atoi(argv[2]) : 200;
        if (p.iterations < 1 || p.iterations > 1000000) {
                fprintf(stderr, "qmp_probe: ITERATIONS must be 1..1000000\n");
                return 2;
        }
        p.stop_ns = calloc((size_t)p.iterations, sizeof(uint64_t));
        p.cont_ns = calloc((size_t)p.iterations, sizeof(uint64_t));
        p.pair_ns = calloc((size_t)p.iterations, sizeof(uint64_t));
        if (!p.stop_ns || !p.cont_ns || !p.pair_ns)
                return 1;
        uv_timer_init(p.loop, &p.watchdog);
        p.watchdog.data = &p;
        uv_timer_start(&p.watchdog, on_watchdog, 120000, 0);
        if (connect_again(&p) < 0)
                finish(&p, 1);
        uv_run(p.loop, UV_RUN_DEFAULT);
        uv_loop_close(p.loop);
        free(p.stop_ns);
        free(p.cont_ns);
        free(p.pair_ns);
        return p.exit_code;
}
