/* The control socket: a Unix stream socket where vpsctl (and any operator
 * tool) sends control-protocol requests (node/control_protocol.h). Who may
 * connect is decided from the kernel's credentials for the peer
 * (SO_PEERCRED, SO_PEERGROUPS): root, or a member of the control group.
 * A client has one request in flight at a time; its next line is read only
 * after the reply, so a client cannot queue work without bound. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"

struct control;
struct control_call;

/* Handles one request. Must end, now or later on the loop, with exactly one
 * control_call_reply() or control_call_fail(); params belong to the call. */
typedef void (*control_method_fn)(struct control_call *call, struct json_object *params, void *userdata);

struct control_method {
        const char *name;
        control_method_fn fn;
};

struct control_limits {
        gid_t group;           /* (gid_t)-1: root only */
        unsigned max_clients;  /* connections at once */
        size_t max_request;    /* bytes in one request line */
        unsigned idle_timeout; /* seconds before a silent client is dropped */
};

/* Binds and listens on path (an existing socket there is replaced only if
 * nobody answers on it). methods must outlive the control. */
int control_start(uv_loop_t *loop, const char *path, const struct control_limits *limits,
                  const struct control_method *methods, void *userdata, struct control **ret_control,
                  struct error *err);

/* New limits for new connections and requests (SIGHUP). */
int control_set_limits(struct control *control, const struct control_limits *limits, struct error *err);

/* Stops listening, removes the socket file and drops every client; handles
 * finish closing on the loop. Accepts NULL; returns NULL. */
struct control *control_stop(struct control *control);

/* Replies to a call and frees it; result ownership is taken. */
void control_call_reply(struct control_call *call, struct json_object *result);
void control_call_fail(struct control_call *call, int code, const char *message);
uid_t control_call_peer_uid(const struct control_call *call);
