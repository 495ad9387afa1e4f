/* QMP client: one connection to one QEMU monitor, asynchronous on the
 * libuv loop. An explicit state machine
 *
 *   CONNECTING -> GREETING -> NEGOTIATING -> RUNNING -> DISCONNECTED
 *
 * (connect, wait for the {"QMP": ...} banner, send qmp_capabilities and
 * wait for its return, then commands). Commands issued before RUNNING are
 * queued and sent, in order, once running. Replies are matched to calls by
 * the "id" QEMU echoes; events may come between or before any replies.
 *
 * A struct qmp is one connection: DISCONNECTED is final. To reconnect
 * (after QEMU or vpsd restarted), qmp_close() the old one and qmp_connect()
 * again; the policy (when, how often) is the caller's.
 *
 * Library code: nothing here logs. Every failure reaches the caller as a
 * negative errno and a message naming the command or the cause. The
 * process must ignore SIGPIPE (vpsd does), so that writing to a QEMU that
 * died is an error, not a signal. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"

struct qmp;

enum qmp_state {
        QMP_CONNECTING,
        QMP_GREETING,
        QMP_NEGOTIATING,
        QMP_RUNNING,
        QMP_DISCONNECTED,
};

/* The verbs that take no arguments, for qmp_simple(). */
enum qmp_verb {
        QMP_STOP,
        QMP_CONT,
        QMP_SYSTEM_POWERDOWN,
        QMP_SYSTEM_RESET,
        QMP_SYSTEM_WAKEUP,
        QMP_QUIT,
        QMP_QUERY_STATUS,
        QMP_N_VERBS,
};

/* Defaults for the limits in struct qmp_config. */
#define QMP_DEFAULT_MAX_LINE (1024 * 1024)
#define QMP_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
/* Calls pending (queued or sent, not answered) at once, per connection. */
#define QMP_MAX_PENDING 256

/* Reply contract: called exactly once per call that qmp_execute() accepted:
 * on success with err NULL and result the "return" value (borrowed: take a
 * reference to keep it); on failure with result NULL and err->code < 0. */
typedef void (*qmp_reply_fn)(struct qmp *qmp, struct json_object *result, const struct error *err,
                             void *userdata);

/* An event, by name. data is NULL when the event has none; timestamp_us is
 * QEMU's wall clock in microseconds since the epoch (0 if it sent none).
 * Both are borrowed for the duration of the call. */
typedef void (*qmp_event_fn)(struct qmp *qmp, const char *name, struct json_object *data, int64_t timestamp_us,
                             void *userdata);

/* Called with QMP_RUNNING (reason NULL) once the handshake is done, and with
 * QMP_DISCONNECTED (reason->code < 0, reason->msg saying why) once when the
 * connection ends for any cause but qmp_close(). */
typedef void (*qmp_state_fn)(struct qmp *qmp, enum qmp_state state, const struct error *reason, void *userdata);

struct qmp_config {
        qmp_event_fn on_event; /* may be NULL */
        qmp_state_fn on_state; /* may be NULL */
        void *userdata;        /* passed to on_event and on_state */
        size_t max_line;       /* longest line accepted from QEMU; 0: QMP_DEFAULT_MAX_LINE */
        unsigned handshake_timeout_ms; /* connect to RUNNING; 0: QMP_DEFAULT_HANDSHAKE_TIMEOUT_MS */
};

/* Starts connecting to QEMU's monitor socket at path (`-qmp
 * unix:PATH,server=on,wait=off`) without blocking. Failures after this
 * returns (refused, no such socket, bad greeting, timeout) arrive as
 * QMP_DISCONNECTED through on_state. */
int qmp_connect(uv_loop_t *loop, const char *path, const struct qmp_config *config, struct qmp **ret_qmp,
                struct error *err);

/* The same over an already connected stream socket; takes ownership of fd,
 * even on failure. Starts in QMP_GREETING. */
int qmp_connect_fd(uv_loop_t *loop, int fd, const struct qmp_config *config, struct qmp **ret_qmp,
                   struct error *err);

/* Sends {"execute": command, "arguments": arguments, "id": N} (at once when
 * running, else once running). arguments: a JSON object or NULL, ownership
 * taken even on failure. timeout_ms counts from now (0: none); on expiry the
 * call fails with -ETIMEDOUT (QEMU may still carry the command out) and a
 * late reply is ignored. A QMP error reply fails the call with a negative
 * errno from its class and "qmp COMMAND: CLASS: DESC"; a disconnect fails it
 * with -ECONNRESET. Returns 0, and then the callback will be called exactly
 * once, never from inside this function; or a negative errno (-ENOTCONN once
 * disconnected, -EBUSY past QMP_MAX_PENDING, -EINVAL) and then it never is. */
int qmp_execute(struct qmp *qmp, const char *command, struct json_object *arguments, unsigned timeout_ms,
                qmp_reply_fn callback, void *userdata, struct error *err);

/* qmp_execute() of a verb without arguments: stop, cont, system_powerdown … */
int qmp_simple(struct qmp *qmp, enum qmp_verb verb, unsigned timeout_ms, qmp_reply_fn callback, void *userdata,
               struct error *err);

/* Closes the connection. Every pending call fails with -ECONNRESET inside
 * this function; after it returns no callback of this qmp is ever called
 * again. Safe from inside any of its callbacks. The memory is freed once
 * libuv has closed the handles: run the loop before uv_loop_close().
 * Accepts NULL; returns NULL. */
struct qmp *qmp_close(struct qmp *qmp);

enum qmp_state qmp_get_state(const struct qmp *qmp);

/* QEMU's version from the greeting; -ENODATA before it arrived. */
int qmp_get_version(const struct qmp *qmp, unsigned *ret_major, unsigned *ret_minor, unsigned *ret_micro);

/* "connecting", "greeting", …; "stop", "cont", … */
const char *qmp_state_name(enum qmp_state state);
const char *qmp_verb_name(enum qmp_verb verb);
