/* Control methods of the guest lifecycle: each checks its params and hands
 * the operation to node/guest.c, which replies when the operation ends. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "node/guest.h"
#include "node/service.h"
#include "node/spec.h"
#include "node/vpsd.h"

static void actor_of(struct control_call *call, char *buf, size_t size)
{
        snprintf(buf, size, "operator uid=%u", (unsigned)control_call_peer_uid(call));
}

static void operation_done(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct control_call *call = userdata;

        if (status < 0)
                control_call_fail(call, status, err->msg);
        else
                control_call_reply(call, json_object_get(result));
}

void control_service_provision(struct control_call *call, struct json_object *params, void *userdata)
{
        struct vpsd *v = userdata;
        struct service_spec *spec = NULL;
        struct error err = { 0 };
        char actor[64];

        if (v->hypervisor.accel == HV_ACCEL_PROBING) {
                control_call_fail(call, -EAGAIN, "the hypervisor probe is still running; try again shortly");
                return;
        }
        if (spec_from_json(params, &spec, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        actor_of(call, actor, sizeof(actor));
        guests_set_kvm(v->guests, v->hypervisor.accel == HV_ACCEL_KVM);
        if (guest_provision(v->guests, spec, actor, operation_done, call, &err) < 0)
                control_call_fail(call, err.code, err.msg);
}

/* What a request naming only a service does: a power action, or these. */
enum uuid_action {
        ACTION_POWER,     /* guest_power() with the power action */
        ACTION_TERMINATE,
        ACTION_PAUSE,
        ACTION_RESUME,
        ACTION_SUSPEND,   /* {reason?}: an operator's, for abuse handling */
        ACTION_UNSUSPEND,
        ACTION_RENEW,     /* {paid_until} */
};

#define REASON_MAX 200

/* An operator's suspension reason: short, printable, one line. */
static int reason_get(struct json_object *params, const char **ret, struct error *err)
{
        struct json_object *o = NULL;
        const char *text;

        *ret = "suspended by the operator";
        if (!json_object_object_get_ex(params, "reason", &o))
                return 0;
        if (!json_object_is_type(o, json_type_string))
                return error_set(err, -EINVAL, "parameter `reason`: a string is expected");
        text = json_object_get_string(o);
        if (!text[0] || strlen(text) > REASON_MAX)
                return error_set(err, -EINVAL, "parameter `reason`: 1 to %d characters", REASON_MAX);
        for (const char *c = text; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return error_set(err, -EINVAL, "parameter `reason`: no control characters");
        *ret = text;
        return 0;
}

/* service.start, .stop, .restart, .force-off, .terminate, .pause,
 * .resume, .suspend, .unsuspend and .renew: {"uuid": …} and what the
 * action takes besides. */
static void uuid_operation(struct control_call *call, struct json_object *params, struct vpsd *v,
                           enum uuid_action action, enum guest_power power)
{
        struct json_object *u = NULL, *until = NULL;
        struct error err = { 0 };
        const char *uuid, *reason = NULL;
        char actor[64];
        int r = -EINVAL;

        static const char *const plain[] = { "uuid", NULL };
        static const char *const with_reason[] = { "uuid", "reason", NULL };
        static const char *const with_until[] = { "uuid", "paid_until", NULL };
        const char *const *allowed = action == ACTION_SUSPEND ? with_reason
                                     : action == ACTION_RENEW ? with_until
                                                              : plain;

        if (control_params_check(params, allowed, &err) < 0 ||
            (action == ACTION_SUSPEND && reason_get(params, &reason, &err) < 0)) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        if (!json_object_object_get_ex(params, "uuid", &u) || !json_object_is_type(u, json_type_string)) {
                control_call_fail(call, -EINVAL, "parameter `uuid` (a string) is required");
                return;
        }
        if (action == ACTION_RENEW &&
            (!json_object_object_get_ex(params, "paid_until", &until) || !json_object_is_type(until, json_type_int))) {
                control_call_fail(call, -EINVAL, "parameter `paid_until` (Unix seconds) is required");
                return;
        }
        uuid = json_object_get_string(u);
        actor_of(call, actor, sizeof(actor));
        switch (action) {
        case ACTION_SUSPEND:
                r = guest_suspend(v->guests, uuid, GUEST_SUSPEND_OPERATOR, reason, actor, operation_done, call, &err);
                break;
        case ACTION_UNSUSPEND:
                r = guest_unsuspend(v->guests, uuid, actor, operation_done, call, &err);
                break;
        case ACTION_RENEW:
                r = v->leases ? lease_renew(v->leases, uuid, json_object_get_int64(until), actor, operation_done, call,
                                            &err)
                              : error_set(&err, -EAGAIN, "leases are not enforced yet; try again shortly");
                break;
        case ACTION_POWER:
                r = guest_power(v->guests, uuid, power, actor, operation_done, call, &err);
                break;
        case ACTION_TERMINATE:
                r = guest_terminate(v->guests, uuid, actor, operation_done, call, &err);
                break;
        case ACTION_PAUSE:
        case ACTION_RESUME:
                r = guest_pause(v->guests, uuid, action == ACTION_PAUSE, actor, operation_done, call, &err);
                break;
        }
        if (r < 0)
                control_call_fail(call, err.code, err.msg);
}

void control_service_start(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_POWER, GUEST_START);
}

void control_service_stop(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_POWER, GUEST_STOP);
}

void control_service_restart(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_POWER, GUEST_RESTART);
}

void control_service_force_off(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_POWER, GUEST_FORCE_OFF);
}

void control_service_terminate(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_TERMINATE, 0);
}

void control_service_pause(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_PAUSE, 0);
}

void control_service_resume(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_RESUME, 0);
}

/* service.reinstall: {uuid, template?, ssh_keys? (list of key lines),
 * root_password?}; absent fields keep what the service has. */
void control_service_reinstall(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "template", "ssh_keys", "root_password", NULL };
        struct vpsd *v = userdata;
        struct guest_reinstall_request req = { 0 };
        const char *keys[SPEC_SSH_KEYS_MAX];
        struct json_object *list = NULL;
        const char *uuid = NULL;
        struct error err = { 0 };
        char actor[64];

        if (control_params_check(params, allowed, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        if (json_get_string(params, "uuid", true, &uuid, &err) < 0 ||
            json_get_string(params, "template", false, &req.template_name, &err) < 0 ||
            json_get_string(params, "root_password", false, &req.root_password, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        if (json_object_object_get_ex(params, "ssh_keys", &list)) {
                if (!json_object_is_type(list, json_type_array) ||
                    json_object_array_length(list) > SPEC_SSH_KEYS_MAX) {
                        control_call_fail(call, -EINVAL, "parameter `ssh_keys` must be a list of at most 32 keys");
                        return;
                }
                for (size_t i = 0; i < json_object_array_length(list); i++) {
                        struct json_object *k = json_object_array_get_idx(list, i);
                        if (!json_object_is_type(k, json_type_string)) {
                                control_call_fail(call, -EINVAL, "parameter `ssh_keys` must hold strings");
                                return;
                        }
                        keys[i] = json_object_get_string(k);
                }
                req.replace_ssh_keys = true;
                req.ssh_keys = keys;
                req.n_ssh_keys = json_object_array_length(list);
        }
        actor_of(call, actor, sizeof(actor));
        if (guest_reinstall(v->guests, uuid, &req, actor, operation_done, call, &err) < 0)
                control_call_fail(call, err.code, err.msg);
}

/* service.resize: {uuid, plan: {vcpus?, memory_mib?, disk_gib?,
 * port_speed_mbit?, traffic_gib?}, disk_shrink_confirmed?}; what the plan
 * leaves out stays as it is. */
void control_service_resize(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "plan", "disk_shrink_confirmed", NULL };
        struct vpsd *v = userdata;
        cleanup_json struct json_object *shown = NULL;
        struct json_object *changes = NULL, *current = NULL, *confirm = NULL;
        struct spec_plan plan;
        const char *uuid = NULL;
        struct error err = { 0 };
        char actor[64];

        if (control_params_check(params, allowed, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        if (json_get_string(params, "uuid", true, &uuid, &err) < 0 ||
            json_get_object(params, "plan", true, &changes, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        if (json_object_object_get_ex(params, "disk_shrink_confirmed", &confirm) &&
            !json_object_is_type(confirm, json_type_boolean)) {
                control_call_fail(call, -EINVAL, "parameter `disk_shrink_confirmed` must be true or false");
                return;
        }
        if (service_show_json(v->store, uuid, &shown, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        json_object_object_get_ex(shown, "plan", &current);
        json_object_object_foreach(changes, k, val) {
                if (!json_object_object_get_ex(current, k, NULL)) {
                        snprintf(err.msg, sizeof(err.msg), "plan: unknown field `%.64s`", k);
                        control_call_fail(call, -EINVAL, err.msg);
                        return;
                }
                json_object_object_add(current, k, json_object_get(val));
        }
        if (spec_plan_from_json("plan", current, &plan, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        actor_of(call, actor, sizeof(actor));
        if (guest_resize(v->guests, uuid, &plan, confirm && json_object_get_boolean(confirm), actor, operation_done,
                         call, &err) < 0)
                control_call_fail(call, err.code, err.msg);
}

void control_service_suspend(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_SUSPEND, 0);
}

void control_service_unsuspend(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_UNSUSPEND, 0);
}

void control_service_renew(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, ACTION_RENEW, 0);
}
