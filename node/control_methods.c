/* What vpsctl can ask: each method validates its params, calls the
 * service API and replies. Requests that change something are recorded in
 * the audit log by the method that makes the change. */
#include <errno.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "node/control_protocol.h"
#include "node/logbook.h"
#include "node/service.h"
#include "node/traffic.h"
#include "node/template.h"
#include "node/vpsd.h"

/* Refuses params the method does not know: a typo must not be ignored. */
int control_params_check(struct json_object *params, const char *const *allowed, struct error *err)
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

        if (control_params_check(params, allowed, &err) < 0 || service_count_by_state(v->store, counts, &err) < 0) {
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

        if (control_params_check(params, allowed, &err) < 0) {
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

        if (control_params_check(params, allowed, &err) < 0 || param_string(params, "uuid", &uuid, &err) < 0 ||
            service_show_json(v->store, uuid, &service, &err) < 0 || lease_annotate(v->store, service, &err) < 0) {
                json_object_put(service);
                fail(call, &err);
                return;
        }
        control_call_reply(call, service);
}

/* ledger.status: the sync client's link and queues. */
static void method_ledger_status(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { NULL };
        struct vpsd *v = userdata;
        struct error err = { 0 };

        if (control_params_check(params, allowed, &err) < 0) {
                fail(call, &err);
                return;
        }
        control_call_reply(call, sync_status(v->sync));
}

/* policy.show: the lease policy (grace, retention, autonomous removal). */
static void method_policy_show(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { NULL };
        struct vpsd *v = userdata;
        struct lease_policy p;
        struct error err = { 0 };

        if (control_params_check(params, allowed, &err) < 0 || lease_policy_load(v->store, &p, &err) < 0) {
                fail(call, &err);
                return;
        }
        control_call_reply(call, lease_policy_json(&p));
}

/* policy.set: any of grace_s, retention_s, autonomous_removal; the whole
 * policy in reply. */
static void method_policy_set(struct control_call *call, struct json_object *params, void *userdata)
{
        struct vpsd *v = userdata;
        struct lease_policy p;
        struct error err = { 0 };
        char actor[48];

        if (lease_policy_update(v->store, params, &p, &err) < 0) {
                fail(call, &err);
                return;
        }
        snprintf(actor, sizeof(actor), "operator uid=%u", (unsigned)control_call_peer_uid(call));
        logbook_audit(v->store, actor, "policy", "", "ok",
                      json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN));
        leases_kick(v->leases);
        control_call_reply(call, lease_policy_json(&p));
}

/* service.traffic: {uuid, period?} (day, week, month (default), year). */
static void method_service_traffic(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "period", NULL };
        struct vpsd *v = userdata;
        struct json_object *report = NULL, *p = NULL;
        enum traffic_period period = TRAFFIC_MONTH;
        struct error err = { 0 };
        const char *uuid = NULL;
        int64_t id;

        if (control_params_check(params, allowed, &err) < 0 || param_string(params, "uuid", &uuid, &err) < 0) {
                fail(call, &err);
                return;
        }
        if (json_object_object_get_ex(params, "period", &p) &&
            (!json_object_is_type(p, json_type_string) ||
             traffic_period_parse(json_object_get_string(p), &period) < 0)) {
                control_call_fail(call, -EINVAL, "parameter `period`: one of day, week, month, year");
                return;
        }
        if (service_id_find(v->store, uuid, &id, &err) < 0 ||
            traffic_report_json(v->store, id, period, time_now_wall(), &report, &err) < 0) {
                fail(call, &err);
                return;
        }
        json_object_object_add(report, "uuid", json_object_new_string(uuid));
        control_call_reply(call, report);
}

/* --- templates --- */

/* A template call that ends later: who asked and about what, for the
 * audit log, and the call to answer. */
struct template_call {
        struct control_call *call;
        struct vpsd *v;
        char actor[32];
        const char *action;
        char target[TEMPLATE_NAME_MAX + 1];
};

static struct template_call *template_call_new(struct control_call *call, struct vpsd *v, const char *action,
                                               const char *name)
{
        struct template_call *tc = calloc(1, sizeof(*tc));

        if (!tc)
                return NULL;
        tc->call = call;
        tc->v = v;
        tc->action = action;
        snprintf(tc->actor, sizeof(tc->actor), "operator uid=%u", (unsigned)control_call_peer_uid(call));
        /* What the operator typed, bounded: a refused name is recorded too. */
        snprintf(tc->target, sizeof(tc->target), "%s", name);
        return tc;
}

/* Records the outcome in the audit log and answers the call. */
static void template_call_end(struct template_call *tc, const struct error *err, struct json_object *result)
{
        logbook_audit(tc->v->store, tc->actor, tc->action, tc->target, err ? control_error_name(err->code) : "ok",
                      err ? err->msg : "");
        if (err) {
                json_object_put(result);
                control_call_fail(tc->call, err->code, err->msg);
        } else
                control_call_reply(tc->call, result ? result : json_object_new_object());
        free(tc);
}

static void on_template_imported(int r, const struct error *err, struct json_object *template, void *userdata)
{
        (void)r;
        template_call_end(userdata, err, template);
}

static void on_template_removed(int r, const struct error *err, void *userdata)
{
        struct template_call *tc = userdata;
        struct json_object *o = NULL;

        if (r == 0) {
                o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(tc->target));
        }
        template_call_end(tc, err, o);
}

/* Checks the import's params; err says which is wrong. */
static int template_import_params(struct json_object *params, struct template_import_request *req,
                                  struct error *err)
{
        static const char *const allowed[] = { "name", "path", "os_name", "min_disk_gib", NULL };
        int64_t min_disk = 0;
        struct json_object *v = NULL;

        if (control_params_check(params, allowed, err) < 0 || param_string(params, "name", &req->name, err) < 0 ||
            param_string(params, "path", &req->path, err) < 0 ||
            json_get_string(params, "os_name", false, &req->os_name, err) < 0 ||
            json_get_int64(params, "min_disk_gib", false, &min_disk, err) < 0)
                return err->code;
        if (json_object_object_get_ex(params, "min_disk_gib", &v) && v &&
            (min_disk < 1 || min_disk > TEMPLATE_MAX_MIN_DISK_GIB))
                return error_set(err, -EINVAL, "parameter `min_disk_gib` must be from 1 to %d",
                                 TEMPLATE_MAX_MIN_DISK_GIB);
        req->min_disk_gib = (unsigned)min_disk;
        return 0;
}

static void method_template_import(struct control_call *call, struct json_object *params, void *userdata)
{
        struct vpsd *v = userdata;
        struct template_import_request req = { 0 };
        struct template_call *tc;
        struct error err = { 0 };
        const char *name = NULL;

        /* A request without a usable name is refused before the audit log:
         * there is nothing to name in it. */
        if (template_import_params(params, &req, &err) < 0) {
                if (json_get_string(params, "name", true, &name, NULL) < 0) {
                        fail(call, &err);
                        return;
                }
        }
        tc = template_call_new(call, v, "template.import", name ? name : req.name);
        if (!tc) {
                control_call_fail(call, -ENOMEM, "out of memory");
                return;
        }
        /* vpsd opens the file as root: for anyone else that would read
         * files they may not (another guest's disk, as a "raw" image). */
        if (err.code == 0 && control_call_peer_uid(call) != 0)
                error_set(&err, -EPERM, "template import needs root: vpsd reads the file with root's rights");
        if (err.code < 0 || template_import(v->templates, &req, on_template_imported, tc, &err) < 0)
                template_call_end(tc, &err, NULL);
}

static void method_template_list(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { NULL };
        struct vpsd *v = userdata;
        struct json_object *list = NULL, *o;
        struct error err = { 0 };

        if (control_params_check(params, allowed, &err) < 0 || template_list_json(v->templates, &list, &err) < 0) {
                fail(call, &err);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "templates", list);
        control_call_reply(call, o);
}

static void method_template_remove(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "name", NULL };
        struct vpsd *v = userdata;
        struct template_call *tc;
        struct error err = { 0 };
        const char *name = NULL;

        if (control_params_check(params, allowed, &err) < 0 || param_string(params, "name", &name, &err) < 0) {
                fail(call, &err);
                return;
        }
        tc = template_call_new(call, v, "template.remove", name);
        if (!tc) {
                control_call_fail(call, -ENOMEM, "out of memory");
                return;
        }
        if (template_remove(v->templates, name, on_template_removed, tc, &err) < 0)
                template_call_end(tc, &err, NULL);
}

const struct control_method vpsd_control_methods[] = {
        { "status", method_status },
        { "service.list", method_service_list },
        { "service.show", method_service_show },
        { "service.traffic", method_service_traffic },
        { "service.provision", control_service_provision },
        { "service.start", control_service_start },
        { "service.stop", control_service_stop },
        { "service.restart", control_service_restart },
        { "service.force-off", control_service_force_off },
        { "service.terminate", control_service_terminate },
        { "service.pause", control_service_pause },
        { "service.resume", control_service_resume },
        { "service.suspend", control_service_suspend },
        { "service.unsuspend", control_service_unsuspend },
        { "service.renew", control_service_renew },
        { "policy.show", method_policy_show },
        { "ledger.status", method_ledger_status },
        { "policy.set", method_policy_set },
        { "service.reinstall", control_service_reinstall },
        { "service.resize", control_service_resize },
        { "console.ticket", control_console_ticket },
        { "template.import", method_template_import },
        { "template.list", method_template_list },
        { "template.remove", method_template_remove },
        { "iso.list", control_iso_list },
        { "iso.approve", control_iso_approve },
        { "iso.reject", control_iso_reject },
        { "iso.remove", control_iso_remove },
        { "iso.mount", control_iso_mount },
        { "iso.eject", control_iso_eject },
        { "iso.boot", control_iso_boot },
        { "iso.ticket", control_iso_ticket },
        { "iso.quota", control_iso_quota },
        { NULL, NULL },
};
