/* vpsd's own QMP monitor of every running guest (the `qmp.sock` in its run
 * folder): QEMU's events reach the service's state without asking libvirt,
 * and pause/resume go through it. A guest that powers itself off (a
 * customer's `poweroff`) becomes a stopped service at once, so reconcile
 * will not start it again behind the customer's back.
 *
 * Events that arrive while an operation holds the service's lock belong to
 * that operation and change nothing here. */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "node/qmp.h"
#include "node/store.h"
#include "node/virt.h"

struct monitors;

int monitors_new(uv_loop_t *loop, struct store *store, struct virt *virt, struct monitors **ret, struct error *err);

/* Connects (again) to the guest's monitor, retrying while QEMU is coming up. */
void monitor_watch(struct monitors *m, int64_t service_id, const char *uuid, const char *qmp_socket);

/* Forgets the guest's monitor (it stopped, or is about to be removed). */
void monitor_unwatch(struct monitors *m, const char *uuid);

/* Runs a simple verb (stop, cont …) on the guest's monitor: -ENOTCONN when
 * vpsd has no monitor of that guest. */
int monitor_simple(struct monitors *m, const char *uuid, enum qmp_verb verb, qmp_reply_fn done, void *userdata,
                   struct error *err);

/* Runs command with arguments (a JSON object or NULL, ownership taken)
 * on the guest's monitor: -ENOTCONN when vpsd has no monitor of it. */
int monitor_execute(struct monitors *m, const char *uuid, const char *command, struct json_object *arguments,
                    qmp_reply_fn done, void *userdata, struct error *err);

/* Closes every monitor; the memory goes once the loop has run. Accepts
 * NULL; returns NULL. */
struct monitors *monitors_free(struct monitors *m);
