/* The daemon's state, shared by main.c and the control methods. */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "node/config.h"
#include "node/console.h"
#include "node/control.h"
#include "node/hvprobe.h"
#include "node/monitor.h"
#include "node/store.h"
#include "node/sync.h"
#include "node/guest.h"
#include "node/lease.h"
#include "node/template.h"
#include "node/virt.h"
#include "iso/iso.h"

struct vpsd {
        uv_loop_t *loop;
        struct config cfg;
        char config_path[PATH_MAX];
        bool config_required; /* given with -c: it must exist */
        int lock_fd;
        struct store *store;
        struct template_store *templates;
        struct virt *virt;
        struct guests *guests;
        struct monitors *monitors;
        struct network *network;
        struct leases *leases;
        struct sync_client *sync; /* NULL when no ledger_url */
        struct control *control;
        struct console *console; /* NULL when console_listen is empty */
        struct iso_store *isos;
        struct hvprobe *probe;
        struct hvprobe_result hypervisor;
        int64_t started_at;
        uint64_t started_mono_ms;
        bool stopping;
        int exit_code; /* of a stop that was a failure */
        uv_signal_t sig_term, sig_int, sig_hup;
};

/* The methods of the control socket (node/control_methods.c). */
extern const struct control_method vpsd_control_methods[];

/* Refuses params with a key not in allowed (NULL-terminated): a typo in
 * a request must not be ignored. */
int control_params_check(struct json_object *params, const char *const *allowed, struct error *err);

/* The guest lifecycle's methods (node/control_guest.c). */
void control_service_provision(struct control_call *call, struct json_object *params, void *userdata);
void control_service_start(struct control_call *call, struct json_object *params, void *userdata);
void control_service_stop(struct control_call *call, struct json_object *params, void *userdata);
void control_service_restart(struct control_call *call, struct json_object *params, void *userdata);
void control_service_force_off(struct control_call *call, struct json_object *params, void *userdata);
void control_service_terminate(struct control_call *call, struct json_object *params, void *userdata);
void control_service_pause(struct control_call *call, struct json_object *params, void *userdata);
void control_service_resume(struct control_call *call, struct json_object *params, void *userdata);
void control_service_suspend(struct control_call *call, struct json_object *params, void *userdata);
void control_service_unsuspend(struct control_call *call, struct json_object *params, void *userdata);
void control_service_renew(struct control_call *call, struct json_object *params, void *userdata);
void control_service_reinstall(struct control_call *call, struct json_object *params, void *userdata);
void control_console_ticket(struct control_call *call, struct json_object *params, void *userdata);
void control_service_resize(struct control_call *call, struct json_object *params, void *userdata);

/* The ISO store's methods (node/control_iso.c). */
void control_iso_list(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_approve(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_reject(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_remove(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_mount(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_eject(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_boot(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_ticket(struct control_call *call, struct json_object *params, void *userdata);
void control_iso_quota(struct control_call *call, struct json_object *params, void *userdata);
