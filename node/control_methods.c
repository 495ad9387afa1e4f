/* What vpsctl can ask: each method validates its params, calls the
 * service API and replies. Requests that change something are recorded in
 * the audit log by the method that makes the change. */
#include <errno.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "node/service.h"
#include "node/vpsd.h"

/* Refuses params the method does not know: a typo must not be ignored. */
static int params_check(struct json_object *params, const char *const *allowed, struct error *err)
{
        json_object_object_foreach(params, key, value) {
                bool ok = false;
                (void)value;
                for (const char *const *a = allowed; *a; a++)
                        ok = ok || strcmp(key, *a) == 0;
                if (!ok)
                        return error_set(err, -EINVAL, "unknown parameter `%.64s`", key);
        }
        return 0;
}

/* A required string parameter. Missing is a bad request ("invalid"), not
 * a missing object ("not_found"). */
static int param_string(struct json_object *params, const char *key, const char **ret, struct error *err)
{
        int r = json_get_string(params, key, true, ret, err);

        if (r == -ENOENT)
                err->code = r = -EINVAL;
        return r;
}

static void fail(struct control_call *call, const struct error *err)
{
        control_call_fail(call, err->code, err->msg);
}

static void method_status(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { NULL };
        struct vpsd *v = userdata;
        unsigned counts[SERVICE_STATE_COUNT];
        struct json_object *o, *services, *hv;
        struct error err = { 0 };

        if (params_check(params, allowed, &err) < 0 || service_count_by_state(v->store, counts, &err) < 0) {
                fail(call, &err);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "version", json_object_new_string(VPSD_VERSION));
        json_object_object_add(o, "pid", json_object_new_int64(getpid()));
        json_object_object_add(o, "started_at", json_object_new_int64(v->started_at));
        json_object_object_add(o, "uptime_s",
                               json_object_new_int64((int64_t)((time_now_mono_ms() - v->started_mono_ms) / 1000)));
        json_object_object_add(o, "schema_version", json_object_new_int64(store_schema_version(v->store)));
        services = json_object_new_object();
        for (unsigned i = 0; i < SERVICE_STATE_COUNT; i++)
                json_object_object_add(services, service_state_name(i), json_object_new_int64(counts[i]));
        json_object_object_add(o, "services", services);
        hv = json_object_new_object();
        json_object_object_add(hv, "accel", json_object_new_string(hv_accel_name(v->hypervisor.accel)));
        json_object_object_add(hv, "configured", json_object_new_string(hypervisor_mode_name(v->cfg.hypervisor)));
        json_object_object_add(hv, "reason", json_object_new_string(v->hypervisor.reason));
        json_object_object_add(hv, "cached", json_object_new_boolean(v->hypervisor.from_cache));
        json_object_object_add(hv, "probed_at",
                               v->hypervisor.probed_at ? json_object_new_int64(v->hypervisor.probed_at) : NULL);
        json_object_object_add(o, "hypervisor", hv);
        control_call_reply(call, o);
}

static void method_service_list(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "all", NULL };
        struct vpsd *v = userdata;
        struct json_object *all = NULL, *list = NULL, *o;
        struct error err = { 0 };

        if (params_check(params, allowed, &err) < 0) {
                fail(call, &err);
                return;
        }
        if (json_object_object_get_ex(params, "all", &all) && !json_object_is_type(all, json_type_boolean)) {
                control_call_fail(call, -EINVAL, "parameter `all` must be true or false");
                return;
        }
        if (service_list_json(v->store, all && json_object_get_boolean(all), &list, &err) < 0) {
                fail(call, &err);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "services", list);
        control_call_reply(call, o);
}

static void method_service_show(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", NULL };
        struct vpsd *v = userdata;
        struct json_object *service = NULL;
        struct error err = { 0 };
        const char *uuid = NULL;

        if (params_check(params, allowed, &err) < 0 || param_string(params, "uuid", &uuid, &err) < 0 ||
            service_show_json(v->store, uuid, &service, &err) < 0) {
                fail(call, &err);
                return;
        }
        control_call_reply(call, service);
}

const struct control_method vpsd_control_methods[] = {
        { "status", method_status },
        { "service.list", method_service_list },
        { "service.show", method_service_show },
        { NULL, NULL },
};
