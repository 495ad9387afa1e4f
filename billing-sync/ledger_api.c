/* The API's routes: each a method, a path pattern ("*" takes one
 * segment) and a handler that reads its JSON fields strictly (an unknown
 * field is refused), calls one ledger operation and answers with what the
 * command line prints. Refusals map from errno: -ENOENT 404, -EEXIST 409,
 * -ENOSPC 402 (insufficient balance) or 409 (no capacity), -EPERM 409,
 * -EINVAL and -ERANGE 400, -EACCES 403. */
#include "ledger_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

#define SEGMENTS_MAX 6

struct call {
        struct ledger *ledger;
        const struct ledger_api_request *req;
        const char *seg[SEGMENTS_MAX]; /* the "*" segments, in order */
        struct json_object *in;        /* the body, an object (empty when none) */
        struct json_object *out;
        struct error err;
};

struct route {
        const char *method;
        const char *pattern; /* after /api/v1/ */
        const char *const *fields; /* accepted body fields (NULL-ended), NULL: no body */
        bool changes;
        int (*handle)(struct call *c);
};

static struct json_object *ok_object(void)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "ok", json_object_new_boolean(true));
        return o;
}

static const char *arg(const struct call *c, const char *name)
{
        size_t len = strlen(name);

        for (size_t i = 0; i < c->req->n_args; i++)
                if (strncmp(c->req->args[i], name, len) == 0 && c->req->args[i][len] == '=')
                        return c->req->args[i] + len + 1;
        return NULL;
}

/* A body field's refusal: one missing is a bad request (400), not a
 * missing object (404). */
static int field(struct call *c, int r)
{
        if (r != -ENOENT)
                return r;
        c->err.code = -EINVAL;
        return -EINVAL;
}

static int str(struct call *c, const char *key, bool required, const char **ret)
{
        return field(c, json_get_string(c->in, key, required, ret, &c->err));
}

static int boolean(struct call *c, const char *key, bool required, bool *ret)
{
        return field(c, json_get_bool(c->in, key, required, ret, &c->err));
}

static int strings(struct call *c, const char *key, bool required, const char **ret, size_t max, size_t *ret_n)
{
        return field(c, json_get_strings(c->in, key, required, ret, max, ret_n, &c->err));
}

static int num(struct call *c, const char *key, bool required, int64_t *ret)
{
        int r = field(c, json_get_int64(c->in, key, required, ret, &c->err));

        if (r == 0 && *ret < 0)
                return error_set(&c->err, -EINVAL, "field `%s` must not be negative", key);
        return r;
}

/* Integer fields keys[i] into out[i], in order, until the NULL key. */
static int nums(struct call *c, const char *const *keys, int64_t *const *out, bool required)
{
        int r = 0;

        for (size_t i = 0; r == 0 && keys[i]; i++)
                r = num(c, keys[i], required, out[i]);
        return r;
}

static int account_create(struct call *c)
{
        const char *id = NULL, *name = NULL;
        int r = str(c, "id", true, &id);

        if (r == 0)
                r = str(c, "name", false, &name);
        if (r == 0)
                r = ledger_account_create(c->ledger, id, name, c->req->now, &c->err);
        if (r == 0)
                c->out = ok_object();
        return r;
}

static int account_show(struct call *c) { return ledger_account_show(c->ledger, c->seg[0], &c->out, &c->err); }

static int account_top_up(struct call *c)
{
        const char *memo = NULL;
        int64_t cents = 0;
        int r = num(c, "amount", true, &cents);

        if (r == 0)
                r = str(c, "memo", false, &memo);
        return r < 0 ? r : ledger_top_up(c->ledger, c->seg[0], cents, memo, c->req->now, &c->out, &c->err);
}

static int plan_create(struct call *c)
{
        struct ledger_plan p = { .port_speed_mbit = 1000, .cycle_months = 1 };
        const char *name = NULL;
        int r = str(c, "name", true, &name);

        if (r == 0)
                r = nums(c, (const char *const[]){ "price", "vcpus", "memory_mib", "disk_gib", NULL },
                         (int64_t *const[]){ &p.price, &p.vcpus, &p.memory_mib, &p.disk_gib }, true);
        if (r == 0)
                r = nums(c, (const char *const[]){ "cycle_months", "port_speed_mbit", "traffic_gib", NULL },
                         (int64_t *const[]){ &p.cycle_months, &p.port_speed_mbit, &p.traffic_gib }, false);
        if (r == 0 && str_copy(p.name, sizeof(p.name), name) < 0)
                r = error_set(&c->err, -EINVAL, "plan name: 1 to %d of [a-z0-9._-]", LEDGER_NAME_MAX);
        if (r == 0)
                r = ledger_plan_create(c->ledger, &p, &c->err);
        if (r == 0)
                c->out = ok_object();
        return r;
}

static int plan_list(struct call *c) { return ledger_plan_list(c->ledger, &c->out, &c->err); }

static int node_add(struct call *c)
{
        struct ledger_node n = { 0 };
        const char *id = NULL;
        int r = str(c, "id", true, &id);

        if (r == 0)
                r = nums(c, (const char *const[]){ "vcpus", "memory_mib", "disk_gib", NULL },
                         (int64_t *const[]){ &n.vcpus, &n.memory_mib, &n.disk_gib }, true);
        if (r == 0)
                r = strings(c, "pools", false, n.pools, LEDGER_POOLS_MAX, &n.n_pools);
        if (r == 0)
                r = str(c, "console_url", false, &n.console_url);
        if (r == 0 && str_copy(n.id, sizeof(n.id), id) < 0)
                r = error_set(&c->err, -EINVAL, "node id: 1 to %d of [a-z0-9._-]", LEDGER_NAME_MAX);
        return r < 0 ? r : ledger_node_add(c->ledger, &n, c->req->now, &c->out, &c->err);
}

static int node_list(struct call *c) { return ledger_node_list(c->ledger, &c->out, &c->err); }

static int node_commands(struct call *c)
{
        const char *after = arg(c, "after");
        char *end = NULL;
        long long n = 0;

        if (after) {
                n = strtoll(after, &end, 10);
                if (!*after || *end || n < 0)
                        return error_set(&c->err, -EINVAL, "after: a command seq");
        }
        return ledger_node_commands(c->ledger, c->seg[0], n, &c->out, &c->err);
}

static int node_drift(struct call *c) { return ledger_node_drift(c->ledger, c->seg[0], &c->out, &c->err); }

static int node_policy(struct call *c)
{
        struct ledger_policy p = { 0 };
        int r = nums(c, (const char *const[]){ "grace_seconds", "retention_seconds", NULL },
                     (int64_t *const[]){ &p.grace_seconds, &p.retention_seconds }, true);

        if (r == 0)
                r = boolean(c, "autonomous_removal", true, &p.autonomous_removal);
        if (r == 0)
                r = num(c, "iso_quota_bytes", false, &p.iso_quota_bytes);
        /* 0 is how set-policy says "unchanged": not a quota one can ask for. */
        if (r == 0 && json_object_object_get_ex(c->in, "iso_quota_bytes", NULL) && p.iso_quota_bytes == 0)
                r = error_set(&c->err, -EINVAL, "iso_quota_bytes: at least 1 (leave it out to keep the node's)");
        if (r == 0)
                r = ledger_node_policy(c->ledger, c->seg[0], &p, c->req->now, &c->err);
        if (r == 0)
                c->out = ok_object();
        return r;
}

static int order(struct call *c)
{
        struct ledger_order o = { .template_name = "debian-12", .auto_renew = true };
        int r = str(c, "account", true, &o.account);

        if (r == 0)
                r = str(c, "plan", true, &o.plan);
        if (r == 0)
                r = str(c, "hostname", true, &o.hostname);
        if (r == 0)
                r = str(c, "template", false, &o.template_name);
        if (r == 0)
                r = strings(c, "ssh_keys", false, o.ssh_keys, LEDGER_SSH_KEYS_MAX, &o.n_ssh_keys);
        if (r == 0)
                r = boolean(c, "auto_renew", false, &o.auto_renew);
        return r < 0 ? r : ledger_order(c->ledger, &o, c->req->now, &c->out, &c->err);
}

static int service_list(struct call *c)
{
        const char *all = arg(c, "all");

        return ledger_service_list(c->ledger, arg(c, "account"), all && strcmp(all, "true") == 0, &c->out, &c->err);
}

static int service_show(struct call *c) { return ledger_service_show(c->ledger, c->seg[0], &c->out, &c->err); }

static int service_renew(struct call *c)
{
        const char *uuids[LEDGER_BULK_MAX];
        size_t n = 0;
        int r = strings(c, "services", true, uuids, LEDGER_BULK_MAX, &n);

        return r < 0 ? r : ledger_renew(c->ledger, uuids, n, c->req->now, &c->out, &c->err);
}

static int service_change_plan(struct call *c)
{
        const char *plan = NULL;
        bool confirm = false;
        int r = str(c, "plan", true, &plan);

        if (r == 0)
                r = boolean(c, "confirm_disk_shrink", false, &confirm);
        return r < 0 ? r : ledger_change_plan(c->ledger, c->seg[0], plan, confirm, c->req->now, &c->out, &c->err);
}

static int service_paid_until(struct call *c)
{
        int64_t until = 0;
        int r = num(c, "paid_until", true, &until);

        return r < 0 ? r : ledger_set_paid_until(c->ledger, c->seg[0], until, c->req->now, &c->out, &c->err);
}

static int service_promise(struct call *c) { return ledger_promise(c->ledger, c->seg[0], c->req->now, &c->out, &c->err); }

static int service_transfer(struct call *c)
{
        const char *account = NULL;
        int r = str(c, "account", true, &account);

        if (r == 0)
                r = ledger_transfer(c->ledger, c->seg[0], account, c->req->now, &c->err);
        return r < 0 ? r : ledger_service_show(c->ledger, c->seg[0], &c->out, &c->err);
}

static int service_auto_renew(struct call *c)
{
        bool on = false;
        int r = boolean(c, "auto_renew", true, &on);

        if (r == 0)
                r = ledger_set_auto_renew(c->ledger, c->seg[0], on, c->req->now, &c->err);
        return r < 0 ? r : ledger_service_show(c->ledger, c->seg[0], &c->out, &c->err);
}

static int service_power(struct call *c)
{
        const char *action = NULL;
        int r = str(c, "action", true, &action);

        if (r == 0)
                r = ledger_power(c->ledger, c->seg[0], action, c->req->now, &c->err);
        if (r == 0)
                c->out = ok_object();
        return r;
}

static int service_reinstall(struct call *c)
{
        const char *keys[LEDGER_SSH_KEYS_MAX];
        const char *template_name = NULL;
        size_t n = 0;
        int r = str(c, "template", true, &template_name);

        if (r == 0)
                r = strings(c, "ssh_keys", false, keys, LEDGER_SSH_KEYS_MAX, &n);
        if (r == 0)
                r = ledger_reinstall(c->ledger, c->seg[0], template_name, keys, n, c->req->now, &c->err);
        if (r == 0)
                c->out = ok_object();
        return r;
}

static int service_root_password(struct call *c)
{
        char *password = NULL;
        int r = ledger_root_password_take(c->ledger, c->seg[0], &password, &c->err);

        if (r < 0)
                return r;
        c->out = json_object_new_object();
        json_object_object_add(c->out, "service", json_object_new_string(c->seg[0]));
        json_object_object_add(c->out, "root_password", json_object_new_string(password));
        explicit_bzero(password, strlen(password));
        free(password);
        return 0;
}

static int service_traffic(struct call *c) { return ledger_traffic(c->ledger, c->seg[0], &c->out, &c->err); }

static int service_console_ticket(struct call *c)
{
        const char *account = NULL, *kind = NULL;
        int r = str(c, "account", true, &account);

        if (r == 0)
                r = str(c, "kind", true, &kind);
        return r < 0 ? r :
               ledger_console_ticket(c->ledger, c->seg[0], account, kind, c->req->now, &c->out, &c->err);
}

static int account_isos(struct call *c) { return ledger_iso_list(c->ledger, c->seg[0], false, &c->out, &c->err); }

static int iso_list(struct call *c) { return ledger_iso_list(c->ledger, arg(c, "account"), true, &c->out, &c->err); }

static int iso_upload_ticket(struct call *c)
{
        const char *node = NULL;
        int64_t max_bytes = 0;
        int r = str(c, "node", true, &node);

        if (r == 0)
                r = num(c, "max_bytes", true, &max_bytes);
        return r < 0 ? r :
               ledger_iso_upload_ticket(c->ledger, c->seg[0], node, max_bytes, c->req->now, &c->out, &c->err);
}

/* The owner's ISO actions: the account, and the service to mount into. */
static int iso_mount(struct call *c)
{
        const char *account = NULL, *service = NULL;
        int r = str(c, "account", true, &account);

        if (r == 0)
                r = str(c, "service", true, &service);
        return r < 0 ? r : ledger_iso_mount(c->ledger, c->seg[0], account, service, c->req->now, &c->err);
}

static int iso_delete(struct call *c)
{
        const char *account = NULL;
        int r = str(c, "account", true, &account);

        return r < 0 ? r : ledger_iso_delete(c->ledger, c->seg[0], account, c->req->now, &c->err);
}

static int service_iso_eject(struct call *c)
{
        const char *account = NULL;
        int r = str(c, "account", true, &account);

        return r < 0 ? r : ledger_iso_eject(c->ledger, c->seg[0], account, c->req->now, &c->err);
}

static int iso_approve(struct call *c) { return ledger_iso_approve(c->ledger, c->seg[0], c->req->now, &c->err); }

static int iso_reject(struct call *c)
{
        const char *reason = NULL;
        int r = str(c, "reason", false, &reason);

        return r < 0 ? r : ledger_iso_reject(c->ledger, c->seg[0], reason, c->req->now, &c->err);
}

static int tick(struct call *c) { return ledger_tick(c->ledger, c->req->now, &c->out, &c->err); }

static const char *const f_account[] = { "id", "name", NULL };
static const char *const f_top_up[] = { "amount", "memo", NULL };
static const char *const f_plan[] = { "name", "price", "vcpus", "memory_mib", "disk_gib", "cycle_months",
                                      "port_speed_mbit", "traffic_gib", NULL };
static const char *const f_node[] = { "id", "vcpus", "memory_mib", "disk_gib", "pools", "console_url", NULL };
static const char *const f_order[] = { "account", "plan", "hostname", "template", "ssh_keys", "auto_renew", NULL };
static const char *const f_renew[] = { "services", NULL };
static const char *const f_change[] = { "plan", "confirm_disk_shrink", NULL };
static const char *const f_auto_renew[] = { "auto_renew", NULL };
static const char *const f_power[] = { "action", NULL };
static const char *const f_reinstall[] = { "template", "ssh_keys", NULL };
static const char *const f_ticket[] = { "account", "kind", NULL };
static const char *const f_policy[] = { "grace_seconds", "retention_seconds", "autonomous_removal", "iso_quota_bytes",
                                        NULL };
static const char *const f_upload_ticket[] = { "node", "max_bytes", NULL };
static const char *const f_iso_mount[] = { "account", "service", NULL };
static const char *const f_account_only[] = { "account", NULL };
static const char *const f_reason[] = { "reason", NULL };
static const char *const f_none[] = { NULL };
static const char *const f_paid_until[] = { "paid_until", NULL };

static const struct route routes[] = {
        { "POST", "accounts", f_account, true, account_create },
        { "GET", "accounts/*", NULL, false, account_show },
        { "POST", "accounts/*/top-up", f_top_up, true, account_top_up },
        { "POST", "plans", f_plan, true, plan_create },
        { "GET", "plans", NULL, false, plan_list },
        { "POST", "nodes", f_node, true, node_add },
        { "GET", "nodes", NULL, false, node_list },
        { "GET", "nodes/*/commands", NULL, false, node_commands },
        { "GET", "nodes/*/drift", NULL, false, node_drift },
        { "POST", "nodes/*/policy", f_policy, true, node_policy },
        { "GET", "accounts/*/isos", NULL, false, account_isos },
        { "POST", "accounts/*/iso-upload-ticket", f_upload_ticket, false, iso_upload_ticket },
        { "GET", "isos", NULL, false, iso_list },
        { "POST", "isos/*/mount", f_iso_mount, true, iso_mount },
        { "POST", "isos/*/delete", f_account_only, true, iso_delete },
        { "POST", "isos/*/approve", f_none, true, iso_approve },
        { "POST", "isos/*/reject", f_reason, true, iso_reject },
        { "POST", "orders", f_order, true, order },
        { "GET", "services", NULL, false, service_list },
        { "POST", "services/renew", f_renew, true, service_renew },
        { "GET", "services/*", NULL, false, service_show },
        { "POST", "services/*/change-plan", f_change, true, service_change_plan },
        { "POST", "services/*/promise", f_none, true, service_promise },
        { "POST", "services/*/paid-until", f_paid_until, true, service_paid_until },
        { "POST", "services/*/transfer", f_account_only, true, service_transfer },
        { "POST", "services/*/auto-renew", f_auto_renew, true, service_auto_renew },
        { "POST", "services/*/power", f_power, true, service_power },
        { "POST", "services/*/reinstall", f_reinstall, true, service_reinstall },
        { "POST", "services/*/root-password", f_none, true, service_root_password },
        { "GET", "services/*/traffic", NULL, false, service_traffic },
        { "POST", "services/*/console-ticket", f_ticket, false, service_console_ticket },
        { "POST", "services/*/iso-eject", f_account_only, true, service_iso_eject },
        { "POST", "tick", f_none, true, tick },
};

/* Whether path (segments split at "/") matches pattern; fills c->seg. */
static bool match(const char *pattern, char *const *segs, size_t n, struct call *c)
{
        char copy[128];
        char *save = NULL, *p;
        size_t i = 0, wild = 0;

        str_copy(copy, sizeof(copy), pattern);
        for (p = strtok_r(copy, "/", &save); p; p = strtok_r(NULL, "/", &save), i++) {
                if (i >= n)
                        return false;
                if (strcmp(p, "*") == 0)
                        c->seg[wild++] = segs[i];
                else if (strcmp(p, segs[i]) != 0)
                        return false;
        }
        return i == n;
}

void ledger_api_error(struct ledger_api_response *resp, int status, const char *text)
{
        resp->status = status;
        resp->body = json_object_new_object();
        json_object_object_add(resp->body, "error", json_object_new_string(text));
}

static void refuse(struct call *c, int r, struct ledger_api_response *resp)
{
        switch (r) {
        case -ENOENT: ledger_api_error(resp, 404, c->err.msg); return;
        case -EEXIST: ledger_api_error(resp, 409, c->err.msg); return;
        case -EPERM: ledger_api_error(resp, 409, c->err.msg); return;
        case -EACCES: ledger_api_error(resp, 403, c->err.msg); return;
        case -EINVAL:
        case -ERANGE: ledger_api_error(resp, 400, c->err.msg); return;
        case -ENOSPC:
                /* A node's name is the provider's business, not the customer's. */
                if (strstr(c->err.msg, "insufficient balance"))
                        ledger_api_error(resp, 402, "insufficient balance");
                else
                        ledger_api_error(resp, 409, "no capacity for this plan");
                return;
        default:
                snprintf(resp->log, sizeof(resp->log), "%s", c->err.msg);
                ledger_api_error(resp, 500, "internal error");
        }
}

static const struct route *find_route(const struct ledger_api_request *req, struct call *c, bool *ret_path_known)
{
        char path[512], *segs[SEGMENTS_MAX + 1], *save = NULL, *p;
        size_t n = 0;

        *ret_path_known = false;
        if (strncmp(req->path, "/api/v1/", 8) != 0 || str_copy(path, sizeof(path), req->path + 8) < 0)
                return NULL;
        for (p = strtok_r(path, "/", &save); p && n <= SEGMENTS_MAX; p = strtok_r(NULL, "/", &save))
                segs[n++] = p;
        if (n == 0 || n > SEGMENTS_MAX)
                return NULL;
        for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
                memset(c->seg, 0, sizeof(c->seg));
                if (!match(routes[i].pattern, segs, n, c))
                        continue;
                *ret_path_known = true;
                if (strcmp(routes[i].method, req->method) == 0) {
                        /* The segments point into path: keep copies. */
                        for (size_t k = 0; k < SEGMENTS_MAX && c->seg[k]; k++)
                                c->seg[k] = strdup(c->seg[k]);
                        return &routes[i];
                }
        }
        memset(c->seg, 0, sizeof(c->seg));
        return NULL;
}

static int read_body(const struct route *route, const struct ledger_api_request *req, struct call *c)
{
        if (!route->fields || !req->body || req->body_len == 0) {
                c->in = json_object_new_object();
                if (route->fields && route->fields[0])
                        return error_set(&c->err, -EINVAL, "a JSON object is expected as the body");
                return 0;
        }
        if (req->body_len > LEDGER_API_BODY_MAX)
                return error_set(&c->err, -E2BIG, "the body is larger than %d bytes", LEDGER_API_BODY_MAX);
        if (json_parse_object(req->body, req->body_len, &c->in, &c->err) < 0) {
                error_prefix(&c->err, "the body is not a JSON object");
                return -EINVAL;
        }
        return json_check_keys(c->in, route->fields, &c->err);
}

void ledger_api_handle(struct ledger *ledger, const struct ledger_api_request *req, struct ledger_api_response *resp)
{
        struct call c = { .ledger = ledger, .req = req };
        const struct route *route;
        bool known;
        int r;

        memset(resp, 0, sizeof(*resp));
        route = find_route(req, &c, &known);
        if (!route) {
                ledger_api_error(resp, known ? 405 : 404, known ? "method not allowed" : "no such endpoint");
                return;
        }
        r = read_body(route, req, &c);
        if (r == 0)
                r = route->handle(&c);
        if (r < 0) {
                json_object_put(c.out);
                if (r == -E2BIG)
                        ledger_api_error(resp, 413, c.err.msg);
                else
                        refuse(&c, r, resp);
        } else {
                resp->status = 200;
                resp->body = c.out ? c.out : ok_object();
                resp->changed = route->changes;
        }
        json_object_put(c.in);
        for (size_t k = 0; k < SEGMENTS_MAX; k++)
                free((char *)c.seg[k]);
}
