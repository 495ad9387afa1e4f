/* libvirt, from the loop: every libvirt call blocks (an RPC to libvirtd),
 * so each runs on the libuv thread pool and reports back on the loop. One
 * connection is shared by the pool's threads (libvirt connections are
 * thread-safe) and reopened when libvirtd went away. */
#pragma once

#include <uv.h>

#include "common/error.h"

struct virt;

enum virt_op {
        VIRT_DEFINE_START, /* arg: domain XML; defines (or redefines) and starts it */
        VIRT_START,        /* arg: domain name */
        VIRT_SHUTDOWN,     /* arg: name; ACPI power button */
        VIRT_DESTROY,      /* arg: name; hard off; not an error if already off */
        VIRT_UNDEFINE,     /* arg: name; destroy if running, then undefine; not an error if absent */
        VIRT_STATE,        /* arg: name; reports the state */
};

enum virt_state {
        VIRT_STATE_ABSENT,  /* no such domain */
        VIRT_STATE_OFF,     /* defined, not running */
        VIRT_STATE_RUNNING, /* running or paused: QEMU is there */
};

/* Called once on the loop: status 0 or -errno with message saying what
 * failed ("libvirt start `vpsd-…`: …"), and the domain's state afterwards. */
typedef void (*virt_done_fn)(int status, enum virt_state state, const char *message, void *userdata);

int virt_new(uv_loop_t *loop, const char *uri, struct virt **ret_virt, struct error *err);

/* Queues op on the thread pool; arg is copied. */
int virt_submit(struct virt *virt, enum virt_op op, const char *arg, virt_done_fn done, void *userdata,
                struct error *err);

/* Every domain whose name starts with prefix and that belongs to owner,
 * with its state: names[i] and states[i], n of them, valid during the
 * call. A domain whose metadata names another owner (domain.h) is left
 * out and counted in n_foreign; one with no owner at all (made before
 * owners were recorded) is listed. */
typedef void (*virt_list_fn)(int status, const char *message, char **names, const enum virt_state *states,
                             size_t n, size_t n_foreign, void *userdata);
int virt_list(struct virt *virt, const char *prefix, const char *owner, virt_list_fn done, void *userdata,
              struct error *err);

/* Closes the connection. Call when no submitted op is pending (the loop
 * has drained). Accepts NULL; returns NULL. */
struct virt *virt_free(struct virt *virt);

const char *virt_state_name(enum virt_state state);
