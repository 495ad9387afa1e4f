/* Reinstall: the service's own specification, read back from the store,
 * with what the request changes (template, keys, password). The new
 * template, keys, password hash and instance-id are recorded together with
 * the lock, then the guest is forced off, its disk made anew from the
 * template, its seed rewritten, and the domain started again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "guest_private.h"
#include "node/secret.h"
#include "node/logbook.h"
#include "node/template.h"

/* The service as a specification, as provision had it. */
int guest_spec_load(struct guests *g, int64_t id, struct service_spec **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *svc = NULL, *addr = NULL, *key = NULL;
        struct service_spec *s;
        int r;

        r = store_prepare(g->store,
                          "SELECT uuid, account_id, hostname, vcpus, memory_mib, disk_gib, port_speed_mbit, "
                          "traffic_gib, template, mac, paid_until FROM services WHERE id = ?1",
                          &svc, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(svc, 1, id);
        if (sqlite3_step(svc) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service record %lld: not found", (long long)id);
        s = calloc(1, sizeof(*s));
        if (!s)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(s->uuid, sizeof(s->uuid), "%s", (const char *)sqlite3_column_text(svc, 0));
        snprintf(s->account_id, sizeof(s->account_id), "%s", (const char *)sqlite3_column_text(svc, 1));
        snprintf(s->hostname, sizeof(s->hostname), "%s", (const char *)sqlite3_column_text(svc, 2));
        s->plan.vcpus = (uint32_t)sqlite3_column_int64(svc, 3);
        s->plan.memory_mib = (uint32_t)sqlite3_column_int64(svc, 4);
        s->plan.disk_gib = (uint32_t)sqlite3_column_int64(svc, 5);
        s->plan.port_speed_mbit = (uint32_t)sqlite3_column_int64(svc, 6);
        s->plan.traffic_gib = (uint32_t)sqlite3_column_int64(svc, 7);
        snprintf(s->template_name, sizeof(s->template_name), "%s", (const char *)sqlite3_column_text(svc, 8));
        snprintf(s->mac, sizeof(s->mac), "%s", (const char *)sqlite3_column_text(svc, 9));
        s->paid_until = sqlite3_column_type(svc, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(svc, 10);

        if (store_prepare(g->store,
                          "SELECT address, prefix, gateway FROM addresses WHERE service_id = ?1 ORDER BY position",
                          &addr, err) < 0 ||
            store_prepare(g->store, "SELECT public_key FROM ssh_keys WHERE service_id = ?1 ORDER BY position", &key,
                          err) < 0)
                goto fail;
        sqlite3_bind_int64(addr, 1, id);
        while (sqlite3_step(addr) == SQLITE_ROW && s->n_addresses < SPEC_ADDRESSES_MAX) {
                char field[32];
                snprintf(field, sizeof(field), "addresses[%zu]", s->n_addresses);
                if (spec_address_parse(field, (const char *)sqlite3_column_text(addr, 0), sqlite3_column_int64(addr, 1),
                                       (const char *)sqlite3_column_text(addr, 2), &s->addresses[s->n_addresses],
                                       err) < 0)
                        goto fail;
                s->n_addresses++;
        }
        sqlite3_bind_int64(key, 1, id);
        while (sqlite3_step(key) == SQLITE_ROW && s->n_ssh_keys < SPEC_SSH_KEYS_MAX) {
                char field[32];
                snprintf(field, sizeof(field), "ssh_keys[%zu]", s->n_ssh_keys);
                if (spec_ssh_key_parse(field, (const char *)sqlite3_column_text(key, 0), &s->ssh_keys[s->n_ssh_keys],
                                       err) < 0)
                        goto fail;
                s->n_ssh_keys++;
        }
        *ret = s;
        return 0;
fail:
        spec_free(s);
        return err && err->code ? err->code : -EIO;
}

/* Replaces the spec's keys with the request's, all parsed before any. */
static int keys_replace(struct service_spec *s, const struct guest_reinstall_request *req, struct error *err)
{
        struct spec_ssh_key keys[SPEC_SSH_KEYS_MAX] = { 0 };
        size_t n;

        if (req->n_ssh_keys > SPEC_SSH_KEYS_MAX)
                return error_set(err, -EINVAL, "ssh_keys: at most %d keys", SPEC_SSH_KEYS_MAX);
        for (n = 0; n < req->n_ssh_keys; n++) {
                char field[32];
                snprintf(field, sizeof(field), "ssh_keys[%zu]", n);
                if (spec_ssh_key_parse(field, req->ssh_keys[n], &keys[n], err) < 0) {
                        while (n > 0)
                                spec_ssh_key_clear(&keys[--n]);
                        return err->code;
                }
        }
        for (size_t i = 0; i < s->n_ssh_keys; i++)
                spec_ssh_key_clear(&s->ssh_keys[i]);
        memcpy(s->ssh_keys, keys, sizeof(keys));
        s->n_ssh_keys = n;
        return 0;
}

/* Records template, keys, password hash and instance-id, with the lock. */
static int record(struct guests *g, struct op *op, bool keys_changed, const char *hash, struct error *err)
{
        sqlite3 *db = store_db(g->store);
        cleanup_stmt sqlite3_stmt *upd = NULL, *del = NULL, *ins = NULL;
        int r;

        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return error_set(err, -EIO, "record reinstall: %s", sqlite3_errmsg(db));
        r = guest_lock_take(g, op->service_id, op->uuid, "reinstall", "force-off", err);
        if (r < 0)
                goto fail;
        r = -EIO;
        if (store_prepare(g->store,
                          "UPDATE services SET template = ?2, root_password_hash = ?3, instance_id = ?4, vcpus = ?5, "
                          "memory_mib = ?6, disk_gib = ?7, port_speed_mbit = ?8, traffic_gib = ?9 WHERE id = ?1",
                          &upd, err) < 0)
                goto fail;
        sqlite3_bind_int64(upd, 1, op->service_id);
        sqlite3_bind_text(upd, 2, op->spec->template_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(upd, 3, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(upd, 4, op->instance_id, -1, SQLITE_STATIC);
        guest_bind_plan(upd, 5, &op->spec->plan);
        if (sqlite3_step(upd) != SQLITE_DONE)
                goto sql_fail;
        if (keys_changed) {
                if (store_prepare(g->store, "DELETE FROM ssh_keys WHERE service_id = ?1", &del, err) < 0 ||
                    store_prepare(g->store,
                                  "INSERT INTO ssh_keys (service_id, position, public_key, fingerprint) "
                                  "VALUES (?1, ?2, ?3, ?4)",
                                  &ins, err) < 0)
                        goto fail;
                sqlite3_bind_int64(del, 1, op->service_id);
                if (sqlite3_step(del) != SQLITE_DONE)
                        goto sql_fail;
                for (size_t i = 0; i < op->spec->n_ssh_keys; i++) {
                        sqlite3_reset(ins);
                        sqlite3_bind_int64(ins, 1, op->service_id);
                        sqlite3_bind_int64(ins, 2, (int64_t)i);
                        sqlite3_bind_text(ins, 3, op->spec->ssh_keys[i].public_key, -1, SQLITE_STATIC);
                        sqlite3_bind_text(ins, 4, op->spec->ssh_keys[i].fingerprint, -1, SQLITE_STATIC);
                        if (sqlite3_step(ins) != SQLITE_DONE)
                                goto sql_fail;
                }
        }
        if (sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) == SQLITE_OK)
                return 0;
sql_fail:
        r = error_set(err, -EIO, "record reinstall: %s", sqlite3_errmsg(db));
fail:
        sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
        return r;
}


/* Template path, format and minimum disk into op; the spec names it. */
static int use_template(struct guests *g, struct op *op, struct error *err)
{
        struct template_info tpl;

        if (template_lookup(g->store, op->spec->template_name, &tpl, err) < 0)
                return error_set(err, -EINVAL, "template: `%s` is not on this node", op->spec->template_name);
        if (op->spec->plan.disk_gib < tpl.min_disk_gib)
                return error_set(err, -EINVAL, "template `%s` needs a disk of %u GiB; the plan has %u", tpl.name,
                                 tpl.min_disk_gib, op->spec->plan.disk_gib);
        str_copy(op->template_path, sizeof(op->template_path), tpl.path);
        str_copy(op->template_format, sizeof(op->template_format), tpl.format);
        return 0;
}

int guest_reinstall(struct guests *g, const char *uuid, const struct guest_reinstall_request *req, const char *actor,
                    guest_done_fn done, void *userdata, struct error *err)
{
        char state[32], hash[SECRET_HASH_SIZE];
        struct op *op;
        int64_t id = 0;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        if (req->template_name && spec_template_check("template", req->template_name, err) < 0)
                return err->code;
        if (req->root_password && spec_root_password_check("root_password", req->root_password, err) < 0)
                return err->code;
        op = guest_op_new(g, OP_REINSTALL, id, uuid, actor, done, userdata);
        if (!op)
                return error_set(err, -ENOMEM, "out of memory");
        r = guest_spec_load(g, id, &op->spec, err);
        if (r == 0 && req->template_name)
                str_copy(op->spec->template_name, sizeof(op->spec->template_name), req->template_name);
        if (r == 0 && req->plan)
                op->spec->plan = *req->plan;
        if (r == 0)
                r = use_template(g, op, err);
        if (r == 0 && req->replace_ssh_keys)
                r = keys_replace(op->spec, req, err);
        if (r == 0) {
                if (req->root_password)
                        str_copy(op->password, sizeof(op->password), req->root_password);
                else
                        r = secret_password_generate(op->password, err);
        }
        if (r == 0)
                r = secret_password_hash(op->password, hash, err);
        if (r == 0) {
                guest_instance_id_new(op->instance_id, sizeof(op->instance_id));
                r = record(g, op, req->replace_ssh_keys, hash, err);
        }
        explicit_bzero(hash, sizeof(hash));
        if (r < 0) {
                guest_op_free(op);
                return r;
        }
        guest_monitor_unwatch(g, uuid);
        guest_op_resume(op, "force-off");
        return 0;
}

void guest_reinstall_resume(struct op *op)
{
        struct guests *g = op->g;
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char hash[SECRET_HASH_SIZE];
        struct error err = { 0 };

        /* The password given out with the interrupted reinstall never
         * reached anyone: a new one, which the operator resets for the
         * customer (the audit log says so). */
        if (guest_spec_load(g, op->service_id, &op->spec, &err) < 0 || use_template(g, op, &err) < 0 ||
            secret_password_generate(op->password, &err) < 0 || secret_password_hash(op->password, hash, &err) < 0) {
                guest_op_fail(op, err.code, err.msg);
                return;
        }
        guest_instance_id_new(op->instance_id, sizeof(op->instance_id));
        if (store_prepare(g->store, "UPDATE services SET root_password_hash = ?2, instance_id = ?3 WHERE id = ?1",
                          &stmt, NULL) == 0) {
                sqlite3_bind_int64(stmt, 1, op->service_id);
                sqlite3_bind_text(stmt, 2, hash, -1, SQLITE_STATIC);
                sqlite3_bind_text(stmt, 3, op->instance_id, -1, SQLITE_STATIC);
                sqlite3_step(stmt);
        }
        explicit_bzero(hash, sizeof(hash));
        log_warn("finishing a reinstall cut short: its root password must be reset for the customer",
                 "service=%s", op->uuid);
        guest_op_resume(op, "force-off");
}

void guest_bind_plan(sqlite3_stmt *stmt, int first, const struct spec_plan *plan)
{
        sqlite3_bind_int64(stmt, first, plan->vcpus);
        sqlite3_bind_int64(stmt, first + 1, plan->memory_mib);
        sqlite3_bind_int64(stmt, first + 2, plan->disk_gib);
        sqlite3_bind_int64(stmt, first + 3, plan->port_speed_mbit);
        if (plan->traffic_gib)
                sqlite3_bind_int64(stmt, first + 4, plan->traffic_gib);
        else
                sqlite3_bind_null(stmt, first + 4);
}

int guest_resize(struct guests *g, const char *uuid, const struct spec_plan *plan, bool confirm_disk_shrink,
                 const char *actor, guest_done_fn done, void *userdata, struct error *err)
{
        cleanup_stmt sqlite3_stmt *upd = NULL;
        struct service_spec *current = NULL;
        struct json_object *result, *later;
        char state[32];
        int64_t id = 0;
        int r;

        r = guest_service_find(g, uuid, &id, state, sizeof(state), err);
        if (r < 0)
                return r;
        if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0)
                return error_set(err, -EBADFD, "service %s is %s", uuid, state);
        r = spec_plan_check("plan", plan, err);
        if (r < 0)
                return r;
        r = guest_spec_load(g, id, &current, err);
        if (r < 0)
                return r;
        if (plan->disk_gib < current->plan.disk_gib) {
                unsigned was = current->plan.disk_gib;
                const struct guest_reinstall_request req = { .plan = plan };

                spec_free(current);
                if (!confirm_disk_shrink)
                        return error_set(err, -EINVAL,
                                         "plan.disk_gib: %u GiB is smaller than the %u GiB disk: shrinking rebuilds "
                                         "the guest and erases its data; confirm with disk_shrink_confirmed",
                                         plan->disk_gib, was);
                return guest_reinstall(g, uuid, &req, actor, done, userdata, err);
        }
        later = json_object_new_array();
        if (plan->vcpus != current->plan.vcpus)
                json_object_array_add(later, json_object_new_string("vcpus"));
        if (plan->memory_mib != current->plan.memory_mib)
                json_object_array_add(later, json_object_new_string("memory_mib"));
        if (plan->disk_gib != current->plan.disk_gib)
                json_object_array_add(later, json_object_new_string("disk_gib"));
        spec_free(current);

        /* One statement, and only while no operation holds the lock. */
        r = store_prepare(g->store,
                          "UPDATE services SET vcpus = ?2, memory_mib = ?3, disk_gib = ?4, port_speed_mbit = ?5, "
                          "traffic_gib = ?6, updated_at = ?7 WHERE id = ?1 AND busy_operation IS NULL",
                          &upd, err);
        if (r == 0) {
                sqlite3_bind_int64(upd, 1, id);
                guest_bind_plan(upd, 2, plan);
                sqlite3_bind_int64(upd, 7, time_now_wall());
                if (sqlite3_step(upd) != SQLITE_DONE || sqlite3_changes(store_db(g->store)) != 1)
                        r = error_set(err, -EBUSY, "busy: another operation");
        }
        if (r < 0) {
                json_object_put(later);
                return r;
        }
        /* Port speed changes now, on the live port. */
        if (guest_network_apply(g, id, err) < 0) {
                log_error("resize: cannot apply the port speed now; it applies at the next start",
                          "service=%s error=\"%s\"", uuid, err->msg);
                error_clear(err);
        }
        logbook_audit(g->store, actor, "resize", uuid, "ok", "");
        logbook_activity(g->store, id, actor, "resized");
        result = json_object_new_object();
        json_object_object_add(result, "uuid", json_object_new_string(uuid));
        json_object_object_add(result, "state", json_object_new_string(state));
        json_object_object_add(result, "at_next_start", later);
        done(0, NULL, result, userdata);
        json_object_put(result);
        return 0;
}
