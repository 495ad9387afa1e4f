/* Control methods of the ISO store (docs/iso.md, docs/control-protocol.md):
 * each checks its params and calls iso/iso.h; what changes something is
 * recorded in the audit log by the store. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/ticket.h"
#include "common/util.h"
#include "node/logbook.h"
#include "node/vpsd.h"

static void actor_of(struct control_call *call, char *buf, size_t size)
{
        snprintf(buf, size, "operator uid=%u", (unsigned)control_call_peer_uid(call));
}

/* params has only the keys in allowed and the strings in required. */
static int params_take(struct json_object *params, const char *const *allowed, const char *const *required,
                       const char **values, struct error *err)
{
        int r = control_params_check(params, allowed, err);

        for (size_t i = 0; r == 0 && required[i]; i++) {
                r = json_get_string(params, required[i], true, &values[i], err);
                if (r == -ENOENT)
                        err->code = r = -EINVAL;
        }
        return r;
}

static void reply_iso(struct control_call *call, const char *id, const char *state)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "state", json_object_new_string(state));
        control_call_reply(call, o);
}

void control_iso_list(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "account", NULL };
        struct vpsd *v = userdata;
        struct json_object *result = NULL;
        const char *account = NULL;
        struct error err = { 0 };

        if (control_params_check(params, allowed, &err) < 0 ||
            json_get_string(params, "account", false, &account, &err) < 0 ||
            iso_list_json(v->isos, account, &result, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        control_call_reply(call, result);
}

/* approve, reject, remove: {id} (reject: and an optional reason). */
static void iso_decide(struct control_call *call, struct json_object *params, struct vpsd *v, const char *verb)
{
        static const char *const allowed[] = { "id", "reason", NULL }, *const required[] = { "id", NULL };
        const char *values[1] = { NULL }, *reason = NULL;
        struct error err = { 0 };
        char actor[64];
        int r;

        actor_of(call, actor, sizeof(actor));
        r = params_take(params, allowed, required, values, &err);
        if (r == 0)
                r = json_get_string(params, "reason", false, &reason, &err);
        if (r == 0 && reason && strcmp(verb, "rejected") != 0)
                r = error_set(&err, -EINVAL, "unknown parameter `reason`");
        if (r == 0)
                r = strcmp(verb, "approved") == 0   ? iso_approve(v->isos, values[0], NULL, actor, &err)
                    : strcmp(verb, "rejected") == 0 ? iso_reject(v->isos, values[0], reason, actor, &err)
                                                    : iso_remove(v->isos, values[0], actor, &err);
        if (r < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        reply_iso(call, values[0], verb);
}

void control_iso_approve(struct control_call *call, struct json_object *params, void *userdata)
{
        iso_decide(call, params, userdata, "approved");
}

void control_iso_reject(struct control_call *call, struct json_object *params, void *userdata)
{
        iso_decide(call, params, userdata, "rejected");
}

void control_iso_remove(struct control_call *call, struct json_object *params, void *userdata)
{
        iso_decide(call, params, userdata, "deleted");
}

static void cdrom_done(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct control_call *call = userdata;

        if (status < 0)
                control_call_fail(call, status, err->msg);
        else
                control_call_reply(call, json_object_get(result));
}

void control_iso_mount(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "id", NULL }, *const required[] = { "uuid", "id", NULL };
        struct vpsd *v = userdata;
        const char *values[2] = { NULL, NULL };
        struct error err = { 0 };
        char actor[64];

        actor_of(call, actor, sizeof(actor));
        if (params_take(params, allowed, required, values, &err) < 0 ||
            iso_mount(v->isos, values[0], values[1], actor, cdrom_done, call, &err) < 0)
                control_call_fail(call, err.code, err.msg);
}

void control_iso_eject(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", NULL }, *const required[] = { "uuid", NULL };
        struct vpsd *v = userdata;
        const char *values[1] = { NULL };
        struct error err = { 0 };
        char actor[64];

        actor_of(call, actor, sizeof(actor));
        if (params_take(params, allowed, required, values, &err) < 0 ||
            iso_eject(v->isos, values[0], actor, cdrom_done, call, &err) < 0)
                control_call_fail(call, err.code, err.msg);
}

void control_iso_boot(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "from", NULL }, *const required[] = { "uuid", "from", NULL };
        struct vpsd *v = userdata;
        const char *values[2] = { NULL, NULL };
        struct error err = { 0 };
        struct json_object *o;
        char actor[64];

        actor_of(call, actor, sizeof(actor));
        if (params_take(params, allowed, required, values, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        if (strcmp(values[1], "cdrom") != 0 && strcmp(values[1], "disk") != 0) {
                control_call_fail(call, -EINVAL, "parameter `from`: cdrom or disk");
                return;
        }
        if (iso_boot_set(v->isos, values[0], strcmp(values[1], "cdrom") == 0, actor, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(values[0]));
        json_object_object_add(o, "boot", json_object_new_string(values[1]));
        json_object_object_add(o, "at_next_start", json_object_new_boolean(1));
        control_call_reply(call, o);
}

/* https://HOST:PORT/iso/upload?ticket=… as console.ticket makes its URL. */
void control_iso_ticket(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "account", "max_bytes", NULL }, *const required[] = { "account", NULL };
        struct vpsd *v = userdata;
        const char *values[1] = { NULL };
        char ticket[EDGE_TICKET_MAX + 1], url[EDGE_TICKET_MAX + 200], address[64], actor[64];
        struct error err = { 0 };
        struct json_object *o;
        int64_t max_bytes = 0;
        unsigned port = 0;

        if (params_take(params, allowed, required, values, &err) < 0 ||
            json_get_int64(params, "max_bytes", true, &max_bytes, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        if (!v->console) {
                control_call_fail(call, -EBADFD, "the console is off: set console_listen in vpsd.conf");
                return;
        }
        if (max_bytes < 1 || console_iso_ticket_new(v->console, values[0], (uint64_t)max_bytes, ticket,
                                                    sizeof(ticket), &err) < 0) {
                control_call_fail(call, -EINVAL, max_bytes < 1 ? "max_bytes must be at least 1" : err.msg);
                return;
        }
        actor_of(call, actor, sizeof(actor));
        logbook_audit(v->store, actor, "iso.ticket", values[0], "ok", "");
        url[0] = '\0';
        if (config_console_listen(&v->cfg, address, sizeof(address), &port) == 0)
                snprintf(url, sizeof(url), "https://%s%s%s:%u/iso/upload?ticket=%s", strchr(address, ':') ? "[" : "",
                         address, strchr(address, ':') ? "]" : "", port, ticket);
        o = json_object_new_object();
        json_object_object_add(o, "account", json_object_new_string(values[0]));
        json_object_object_add(o, "max_bytes", json_object_new_int64(max_bytes));
        json_object_object_add(o, "ticket", json_object_new_string(ticket));
        json_object_object_add(o, "expires_at", json_object_new_int64(time_now_wall() + TICKET_LIFETIME_MAX));
        json_object_object_add(o, "url", json_object_new_string(url));
        control_call_reply(call, o);
}

/* {account} shows; {account?, bytes} sets the ledger's kind of quota
 * (no account: every account's), bytes -1 forgets it. */
void control_iso_quota(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "account", "bytes", NULL };
        struct vpsd *v = userdata;
        const char *account = NULL;
        struct error err = { 0 };
        uint64_t quota = 0, used = 0;
        struct json_object *o, *b = NULL;
        int64_t bytes = 0;

        if (control_params_check(params, allowed, &err) < 0 ||
            json_get_string(params, "account", false, &account, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        if (json_object_object_get_ex(params, "bytes", &b) &&
            (json_get_int64(params, "bytes", true, &bytes, &err) < 0 ||
             iso_quota_set(v->isos, account, bytes, &err) < 0)) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        if (!account) {
                control_call_reply(call, json_object_new_object());
                return;
        }
        if (iso_quota_get(v->isos, account, &quota, &used, &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "account", json_object_new_string(account));
        json_object_object_add(o, "quota", json_object_new_int64((int64_t)quota));
        json_object_object_add(o, "used", json_object_new_int64((int64_t)used));
        control_call_reply(call, o);
}
