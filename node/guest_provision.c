/* Provision, before its first step: everything is checked against the
 * node's records first, then the service is recorded with its lock in one
 * transaction, so a refusal creates nothing and a crash after it is rolled
 * back by reconcile. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "guest_private.h"
#include "node/secret.h"
#include "node/template.h"

/* Derived MACs are tried again with the next attempt when another service
 * already has one: collisions of 24 bits are rare, not impossible. */
#define MAC_ATTEMPTS 16

static bool exists(struct store *store, const char *sql, const char *text)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(store, sql, &stmt, NULL) < 0)
                return true; /* refuse rather than risk a duplicate */
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
        return sqlite3_step(stmt) == SQLITE_ROW;
}

static int check_against_store(struct guests *g, struct service_spec *spec, struct template_info *tpl,
                               struct error *err)
{
        unsigned attempt;

        if (exists(g->store, "SELECT 1 FROM services WHERE uuid = ?1", spec->uuid))
                return error_set(err, -EEXIST, "service %s already exists on this node", spec->uuid);
        if (template_lookup(g->store, spec->template_name, tpl, err) < 0)
                return error_set(err, -EINVAL, "template: `%s` is not on this node", spec->template_name);
        if (spec->plan.disk_gib < tpl->min_disk_gib)
                return error_set(err, -EINVAL, "plan.disk_gib: %u GiB is smaller than template `%s` needs (%u GiB)",
                                 spec->plan.disk_gib, tpl->name, tpl->min_disk_gib);
        for (size_t i = 0; i < spec->n_addresses; i++)
                if (exists(g->store, "SELECT 1 FROM addresses WHERE address = ?1", spec->addresses[i].address))
                        return error_set(err, -EEXIST,
                                         "addresses[%zu]: %s is already used by another service on this node", i,
                                         spec->addresses[i].address);
        for (attempt = 1; exists(g->store, "SELECT 1 FROM services WHERE mac = ?1", spec->mac); attempt++) {
                if (!spec->mac_derived)
                        return error_set(err, -EEXIST, "mac: %s is already used by another service on this node",
                                         spec->mac);
                if (attempt == MAC_ATTEMPTS)
                        return error_set(err, -EEXIST, "mac: no free MAC derived from the UUID");
                if (spec_mac_derive(spec->uuid, attempt, spec->mac, err) < 0)
                        return err->code;
        }
        return 0;
}

static int insert_rows(struct guests *g, const struct service_spec *spec, const char *password_hash,
                       const char *instance_id, int64_t *ret_id, struct error *err)
{
        sqlite3 *db = store_db(g->store);
        cleanup_stmt sqlite3_stmt *svc = NULL, *addr = NULL, *key = NULL;
        int64_t now = time_now_wall(), id;
        int r;

        r = store_prepare(g->store,
                          "INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, "
                          "port_speed_mbit, traffic_gib, template, mac, paid_until, root_password_hash, instance_id, "
                          "busy_operation, busy_step, busy_since, created_at, updated_at) VALUES (?1, ?2, ?3, "
                          "'provisioning', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'provision', 'disk', ?14, ?14, ?14)",
                          &svc, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(svc, 1, spec->uuid, -1, SQLITE_STATIC);
        sqlite3_bind_text(svc, 2, spec->account_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(svc, 3, spec->hostname, -1, SQLITE_STATIC);
        sqlite3_bind_int64(svc, 4, spec->plan.vcpus);
        sqlite3_bind_int64(svc, 5, spec->plan.memory_mib);
        sqlite3_bind_int64(svc, 6, spec->plan.disk_gib);
        sqlite3_bind_int64(svc, 7, spec->plan.port_speed_mbit);
        if (spec->plan.traffic_gib)
                sqlite3_bind_int64(svc, 8, spec->plan.traffic_gib);
        sqlite3_bind_text(svc, 9, spec->template_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(svc, 10, spec->mac, -1, SQLITE_STATIC);
        if (spec->paid_until >= 0)
                sqlite3_bind_int64(svc, 11, spec->paid_until);
        sqlite3_bind_text(svc, 12, password_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(svc, 13, instance_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(svc, 14, now);

        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return error_set(err, -EIO, "record service: %s", sqlite3_errmsg(db));
        if (sqlite3_step(svc) != SQLITE_DONE)
                goto fail;
        id = sqlite3_last_insert_rowid(db);
        if (store_prepare(g->store,
                          "INSERT INTO addresses (service_id, family, address, prefix, gateway, position) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                          &addr, NULL) < 0 ||
            store_prepare(g->store,
                          "INSERT INTO ssh_keys (service_id, position, public_key, fingerprint) VALUES (?1, ?2, ?3, ?4)",
                          &key, NULL) < 0)
                goto fail;
        for (size_t i = 0; i < spec->n_addresses; i++) {
                const struct spec_address *a = &spec->addresses[i];
                sqlite3_reset(addr);
                sqlite3_bind_int64(addr, 1, id);
                sqlite3_bind_int(addr, 2, a->family);
                sqlite3_bind_text(addr, 3, a->address, -1, SQLITE_STATIC);
                sqlite3_bind_int(addr, 4, (int)a->prefix);
                if (a->has_gateway)
                        sqlite3_bind_text(addr, 5, a->gateway, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(addr, 5);
                sqlite3_bind_int64(addr, 6, (int64_t)i);
                if (sqlite3_step(addr) != SQLITE_DONE)
                        goto fail;
        }
        for (size_t i = 0; i < spec->n_ssh_keys; i++) {
                sqlite3_reset(key);
                sqlite3_bind_int64(key, 1, id);
                sqlite3_bind_int64(key, 2, (int64_t)i);
                sqlite3_bind_text(key, 3, spec->ssh_keys[i].public_key, -1, SQLITE_STATIC);
                sqlite3_bind_text(key, 4, spec->ssh_keys[i].fingerprint, -1, SQLITE_STATIC);
                if (sqlite3_step(key) != SQLITE_DONE)
                        goto fail;
        }
        if (sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK)
                goto fail;
        *ret_id = id;
        return 0;
fail:
        error_set(err, -EIO, "record service %s: %s", spec->uuid, sqlite3_errmsg(db));
        sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
        return err ? err->code : -EIO;
}

int guest_provision(struct guests *g, struct service_spec *spec, const char *actor, guest_done_fn done,
                    void *userdata, struct error *err)
{
        struct template_info tpl;
        char hash[SECRET_HASH_SIZE], instance_id[40];
        struct op *op;
        int64_t id = 0;
        int r;

        r = check_against_store(g, spec, &tpl, err);
        if (r < 0)
                goto refuse;
        op = guest_op_new(g, OP_PROVISION, 0, spec->uuid, actor, done, userdata);
        if (!op) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto refuse;
        }
        if (spec->has_root_password)
                str_copy(op->password, sizeof(op->password), spec->root_password);
        else if (secret_password_generate(op->password, err) < 0) {
                guest_op_free(op);
                r = err->code;
                goto refuse;
        }
        /* The seed's instance-id changes with every install, so cloud-init
         * applies a reinstall's seed afresh. */
        guest_instance_id_new(instance_id, sizeof(instance_id));
        r = secret_password_hash(op->password, hash, err);
        if (r == 0)
                r = insert_rows(g, spec, hash, instance_id, &id, err);
        explicit_bzero(hash, sizeof(hash));
        if (r < 0) {
                /* Nothing was recorded or created: free quietly. */
                guest_op_free(op);
                goto refuse;
        }
        op->service_id = id;
        guest_paths_init(g, spec->uuid, &op->paths);
        str_copy(op->template_path, sizeof(op->template_path), tpl.path);
        str_copy(op->template_format, sizeof(op->template_format), tpl.format);
        str_copy(op->instance_id, sizeof(op->instance_id), instance_id);
        op->spec = spec;
        guest_op_resume(op, "disk");
        return 0;
refuse:
        spec_free(spec);
        return r;
}
