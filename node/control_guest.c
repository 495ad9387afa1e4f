/* Control methods of the guest lifecycle: each checks its params and hands
 * the operation to node/guest.c, which replies when the operation ends. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "node/guest.h"
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

/* service.start, .stop, .restart, .force-off and .terminate: {"uuid": …}. */
static void uuid_operation(struct control_call *call, struct json_object *params, struct vpsd *v, int action)
{
        struct json_object *u = NULL;
        struct error err = { 0 };
        char actor[64];
        int r;

        json_object_object_foreach(params, key, value) {
                (void)value;
                if (strcmp(key, "uuid") != 0) {
                        snprintf(err.msg, sizeof(err.msg), "unknown parameter `%.64s`", key);
                        control_call_fail(call, -EINVAL, err.msg);
                        return;
                }
        }
        if (!json_object_object_get_ex(params, "uuid", &u) || !json_object_is_type(u, json_type_string)) {
                control_call_fail(call, -EINVAL, "parameter `uuid` (a string) is required");
                return;
        }
        actor_of(call, actor, sizeof(actor));
        if (action < 0)
                r = guest_terminate(v->guests, json_object_get_string(u), actor, operation_done, call, &err);
        else
                r = guest_power(v->guests, json_object_get_string(u), (enum guest_power)action, actor,
                                operation_done, call, &err);
        if (r < 0)
                control_call_fail(call, err.code, err.msg);
}

void control_service_start(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, GUEST_START);
}

void control_service_stop(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, GUEST_STOP);
}

void control_service_restart(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, GUEST_RESTART);
}

void control_service_force_off(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, GUEST_FORCE_OFF);
}

void control_service_terminate(struct control_call *call, struct json_object *params, void *userdata)
{
        uuid_operation(call, params, userdata, -1);
}
