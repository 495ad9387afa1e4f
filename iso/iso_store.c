/* The ISO store's records: the folder and what a crash left in it, the
 * quota, approval, rejection and removal, and the ledger's events. */
#include "iso_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "node/logbook.h"
#include "node/outbox.h"

#define ISO_SUFFIX ".iso"

bool iso_id_valid(const char *id)
{
        size_t n = strlen(id);

        return n >= 1 && n <= ISO_ID_MAX && strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

int iso_path(const struct iso_store *s, const char *id, char *buf, size_t size)
{
        if (!iso_id_valid(id))
                return -EINVAL;
        if ((size_t)snprintf(buf, size, "%s/%s" ISO_SUFFIX, s->dir, id) >= size)
                return -ENAMETOOLONG;
        return 0;
}

static void text_column(sqlite3_stmt *stmt, int col, char *out, size_t size)
{
        const unsigned char *t = sqlite3_column_text(stmt, col);

        snprintf(out, size, "%s", t ? (const char *)t : "");
}

int iso_record_get(struct iso_store *s, const char *id, struct iso_record *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        if (!iso_id_valid(id))
                return error_set(err, -EINVAL, "`%.64s` is not an ISO id (1 to 64 of a-z, 0-9, '-')", id);
        r = store_prepare(s->store, "SELECT account_id, label, state, size_bytes, sha256 FROM isos WHERE id = ?1",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "ISO %s: not found", id);
        *ret = (struct iso_record){ .size = (uint64_t)sqlite3_column_int64(stmt, 3) };
        str_copy(ret->id, sizeof(ret->id), id);
        text_column(stmt, 0, ret->account, sizeof(ret->account));
        text_column(stmt, 1, ret->label, sizeof(ret->label));
        text_column(stmt, 2, ret->state, sizeof(ret->state));
        text_column(stmt, 4, ret->sha256, sizeof(ret->sha256));
        return 0;
}

void iso_event(struct iso_store *s, const struct iso_record *r, const char *state, bool with_facts,
               const char *service)
{
        struct sync_msg m = { .kind = SYNC_ISO };
        struct error err = { 0 };

        snprintf(m.iso, sizeof(m.iso), "%s", r->id);
        snprintf(m.account_id, sizeof(m.account_id), "%s", r->account);
        snprintf(m.state, sizeof(m.state), "%s", state);
        if (with_facts) {
                m.size = (int64_t)r->size;
                snprintf(m.sha256, sizeof(m.sha256), "%s", r->sha256);
                snprintf(m.label, sizeof(m.label), "%s", r->label);
        }
        if (service)
                snprintf(m.service, sizeof(m.service), "%s", service);
        if (outbox_add(s->store, &m, &err) < 0)
                log_error("iso: cannot queue the ledger's event", "iso=%s state=%s error=\"%s\"", r->id, state,
                          err.msg);
        sync_msg_clear(&m);
}

/* --- what a crash left --- */

static bool record_exists(struct iso_store *s, const char *id)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;

        if (store_prepare(s->store, "SELECT 1 FROM isos WHERE id = ?1", &stmt, NULL) < 0)
                return true; /* when in doubt, keep the file */
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        return sqlite3_step(stmt) == SQLITE_ROW;
}

/* Upload temporaries (".upload-*"), and files no record names: an upload
 * a crash cut between its link and its commit. With O_TMPFILE a crash
 * leaves nothing at all; the named fallback leaves ".upload-*". */
static int files_clean(struct iso_store *s, struct error *err)
{
        DIR *d = opendir(s->dir);
        struct dirent *e;

        if (!d)
                return error_set_errno(err, -errno, "open ISO folder `%s`", s->dir);
        while ((e = readdir(d))) {
                char id[ISO_ID_MAX + 1];
                size_t n = strlen(e->d_name);
                bool drop;

                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                if (strncmp(e->d_name, ".upload-", 8) == 0)
                        drop = true;
                else if (n > strlen(ISO_SUFFIX) && n - strlen(ISO_SUFFIX) <= ISO_ID_MAX &&
                         strcmp(e->d_name + n - strlen(ISO_SUFFIX), ISO_SUFFIX) == 0) {
                        memcpy(id, e->d_name, n - strlen(ISO_SUFFIX));
                        id[n - strlen(ISO_SUFFIX)] = '\0';
                        drop = iso_id_valid(id) && !record_exists(s, id);
                } else
                        continue; /* not the store's: left alone */
                if (drop) {
                        log_warn("iso: removing a leftover of an interrupted upload", "file=%s/%s", s->dir,
                                 e->d_name);
                        if (unlinkat(dirfd(d), e->d_name, 0) < 0)
                                log_error("iso: cannot remove a leftover", "file=%s/%s error=\"%s\"", s->dir,
                                          e->d_name, strerror(errno));
                }
        }
        closedir(d);
        return 0;
}

/* A record whose file is gone cannot be mounted: it is dropped, and the
 * services that held it ejected in the record. */
static void records_clean(struct iso_store *s)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char ids[64][ISO_ID_MAX + 1];
        size_t n = 0;

        if (store_prepare(s->store, "SELECT id FROM isos", &stmt, NULL) < 0)
                return;
        while (sqlite3_step(stmt) == SQLITE_ROW && n < ARRAY_SIZE(ids)) {
                char path[PATH_MAX];
                text_column(stmt, 0, ids[n], sizeof(ids[n]));
                if (iso_path(s, ids[n], path, sizeof(path)) == 0 && access(path, F_OK) < 0 && errno == ENOENT)
                        n++;
        }
        for (size_t i = 0; i < n; i++) {
                cleanup_stmt sqlite3_stmt *eject = NULL, *del = NULL;
                log_error("iso: the file of a record is missing; dropping the record", "iso=%s", ids[i]);
                if (store_prepare(s->store, "UPDATE services SET iso_id = NULL WHERE iso_id = ?1", &eject, NULL) ==
                            0 &&
                    store_prepare(s->store, "DELETE FROM isos WHERE id = ?1", &del, NULL) == 0) {
                        sqlite3_bind_text(eject, 1, ids[i], -1, SQLITE_STATIC);
                        sqlite3_bind_text(del, 1, ids[i], -1, SQLITE_STATIC);
                        sqlite3_step(eject);
                        sqlite3_step(del);
                }
        }
}

int iso_store_open(uv_loop_t *loop, struct store *store, struct guests *guests, const struct iso_config *config,
                   struct iso_store **ret, struct error *err)
{
        struct iso_store *s;
        int r;

        /* QEMU's user passes through to a mounted ISO; nobody lists it. */
        if ((mkdir(config->dir, 0711) < 0 && errno != EEXIST) || chmod(config->dir, 0711) < 0)
                return error_set_errno(err, -errno, "create ISO folder `%s`", config->dir);
        s = calloc(1, sizeof(*s));
        if (!s)
                return error_set(err, -ENOMEM, "out of memory");
        s->loop = loop;
        s->store = store;
        s->guests = guests;
        s->default_quota = config->default_quota;
        s->max_uploads = config->max_uploads ? config->max_uploads : 1;
        s->qemu_gid = config->qemu_gid;
        if (str_copy(s->dir, sizeof(s->dir), config->dir) < 0) {
                free(s);
                return error_set(err, -ENAMETOOLONG, "ISO folder path too long");
        }
        r = files_clean(s, err);
        if (r < 0) {
                free(s);
                return r;
        }
        records_clean(s);
        *ret = s;
        return 0;
}

void iso_store_set_default_quota(struct iso_store *s, uint64_t bytes) { s->default_quota = bytes; }

struct iso_store *iso_store_free(struct iso_store *s)
{
        if (!s)
                return NULL;
        s->freeing = true;
        iso_uploads_abort_all(s);
        if (!s->uploads)
                free(s);
        return NULL;
}

/* --- quota --- */

int iso_quota_get(struct iso_store *s, const char *account, uint64_t *ret_quota, uint64_t *ret_used,
                  struct error *err)
{
        cleanup_stmt sqlite3_stmt *quota = NULL, *used = NULL;
        int r;

        /* The account's own row first, then the ledger's '*'. */
        r = store_prepare(s->store,
                          "SELECT quota_bytes FROM iso_quotas WHERE account_id IN (?1, '*') "
                          "ORDER BY account_id = '*' LIMIT 1",
                          &quota, err);
        if (r == 0)
                r = store_prepare(s->store, "SELECT coalesce(sum(size_bytes), 0) FROM isos WHERE account_id = ?1",
                                  &used, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(quota, 1, account, -1, SQLITE_STATIC);
        sqlite3_bind_text(used, 1, account, -1, SQLITE_STATIC);
        *ret_quota = sqlite3_step(quota) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(quota, 0) : s->default_quota;
        if (sqlite3_step(used) != SQLITE_ROW)
                return error_set(err, -EIO, "iso quota: %s", sqlite3_errmsg(store_db(s->store)));
        *ret_used = (uint64_t)sqlite3_column_int64(used, 0);
        return 0;
}

int iso_quota_set(struct iso_store *s, const char *account, int64_t bytes, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        const char *key = account ? account : "*";
        int r;

        if (strlen(key) < 1 || strlen(key) > TICKET_ACCOUNT_MAX)
                return error_set(err, -EINVAL, "an account id has 1 to %d characters", TICKET_ACCOUNT_MAX);
        if (bytes < 0)
                r = store_prepare(s->store, "DELETE FROM iso_quotas WHERE account_id = ?1", &stmt, err);
        else
                r = store_prepare(s->store,
                                  "INSERT INTO iso_quotas (account_id, quota_bytes, updated_at) VALUES (?1, ?2, ?3) "
                                  "ON CONFLICT (account_id) DO UPDATE SET quota_bytes = ?2, updated_at = ?3",
                                  &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (bytes >= 0) {
                sqlite3_bind_int64(stmt, 2, bytes);
                sqlite3_bind_int64(stmt, 3, time_now_wall());
        }
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "iso quota: %s", sqlite3_errmsg(store_db(s->store)));
        return 0;
}

/* --- listing --- */

static struct json_object *mounted_in(struct iso_store *s, const char *id)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *list = json_object_new_array();

        if (store_prepare(s->store,
                          "SELECT uuid FROM services WHERE iso_id = ?1 AND state <> 'terminated' ORDER BY uuid",
                          &stmt, NULL) < 0)
                return list;
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        while (sqlite3_step(stmt) == SQLITE_ROW)
                json_object_array_add(list, json_object_new_string((const char *)sqlite3_column_text(stmt, 0)));
        return list;
}

int iso_list_json(struct iso_store *s, const char *account, struct json_object **ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct json_object *list, *o;
        int r;

        r = store_prepare(s->store,
                          "SELECT id, account_id, label, size_bytes, sha256, format, state, uploaded_at, approved_at "
                          "FROM isos WHERE ?1 IS NULL OR account_id = ?1 ORDER BY uploaded_at, id",
                          &stmt, err);
        if (r < 0)
                return r;
        if (account)
                sqlite3_bind_text(stmt, 1, account, -1, SQLITE_STATIC);
        list = json_object_new_array();
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                static const char *const names[] = { "id", "account_id", "label" };
                o = json_object_new_object();
                for (int i = 0; i < 3; i++)
                        json_object_object_add(o, names[i],
                                               json_object_new_string((const char *)sqlite3_column_text(stmt, i)));
                json_object_object_add(o, "size", json_object_new_int64(sqlite3_column_int64(stmt, 3)));
                json_object_object_add(o, "sha256", json_object_new_string((const char *)sqlite3_column_text(stmt, 4)));
                json_object_object_add(o, "format", json_object_new_string((const char *)sqlite3_column_text(stmt, 5)));
                json_object_object_add(o, "state", json_object_new_string((const char *)sqlite3_column_text(stmt, 6)));
                json_object_object_add(o, "uploaded_at", json_object_new_int64(sqlite3_column_int64(stmt, 7)));
                json_object_object_add(o, "approved_at", sqlite3_column_type(stmt, 8) == SQLITE_NULL
                                                                 ? NULL
                                                                 : json_object_new_int64(sqlite3_column_int64(stmt, 8)));
                json_object_object_add(o, "mounted_in", mounted_in(s, (const char *)sqlite3_column_text(stmt, 0)));
                json_object_array_add(list, o);
        }
        o = json_object_new_object();
        json_object_object_add(o, "isos", list);
        *ret = o;
        return 0;
}

/* --- approval, rejection, removal --- */

int iso_approve(struct iso_store *s, const char *id, const char *account, const char *actor, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct iso_record rec;
        int r = iso_record_get(s, id, &rec, err);

        if (r < 0)
                return r;
        if (account && strcmp(account, rec.account) != 0)
                return error_set(err, -EPERM, "ISO %s: not account `%s`'s", id, account);
        if (strcmp(rec.state, "approved") == 0)
                return 0;
        r = store_prepare(s->store, "UPDATE isos SET state = 'approved', approved_at = ?2 WHERE id = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "ISO %s: %s", id, sqlite3_errmsg(store_db(s->store)));
        iso_event(s, &rec, "approved", false, NULL);
        logbook_audit(s->store, actor, "iso.approve", id, "ok", rec.account);
        log_info("iso approved", "iso=%s account=\"%s\" actor=\"%s\"", id, rec.account, actor);
        return 0;
}

/* Services not terminated whose drive holds id: -EBUSY naming the first. */
static int mounted_check(struct iso_store *s, const char *id, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(s->store, "SELECT uuid FROM services WHERE iso_id = ?1 AND state <> 'terminated' LIMIT 1",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
                return error_set(err, -EBUSY, "ISO %s: mounted in service %s: eject it first", id,
                                 sqlite3_column_text(stmt, 0));
        return 0;
}

/* The record and then the file go; a terminated service that still names
 * the ISO forgets it (its row stays for the audit trail). */
static int iso_delete(struct iso_store *s, const struct iso_record *rec, struct error *err)
{
        cleanup_stmt sqlite3_stmt *forget = NULL, *del = NULL;
        char path[PATH_MAX];
        int r;

        r = store_prepare(s->store, "UPDATE services SET iso_id = NULL WHERE iso_id = ?1", &forget, err);
        if (r == 0)
                r = store_prepare(s->store, "DELETE FROM isos WHERE id = ?1", &del, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(forget, 1, rec->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(del, 1, rec->id, -1, SQLITE_STATIC);
        if (sqlite3_step(forget) != SQLITE_DONE || sqlite3_step(del) != SQLITE_DONE)
                return error_set(err, -EIO, "ISO %s: %s", rec->id, sqlite3_errmsg(store_db(s->store)));
        /* Without its record the file is garbage the next start removes,
         * should this unlink fail. */
        if (iso_path(s, rec->id, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
                log_error("iso: cannot remove a file", "iso=%s error=\"%s\"", rec->id, strerror(errno));
        return 0;
}

/* Reject and remove: the ISO, not mounted, deleted; the ledger hears state. */
static int iso_drop(struct iso_store *s, const char *id, const char *state, const char *action, const char *detail,
                    const char *actor, struct error *err)
{
        struct iso_record rec;
        int r = iso_record_get(s, id, &rec, err);

        if (r == 0)
                r = mounted_check(s, id, err);
        if (r == 0)
                r = iso_delete(s, &rec, err);
        if (r < 0)
                return r;
        iso_event(s, &rec, state, false, NULL);
        logbook_audit(s->store, actor, action, id, "ok", detail ? detail : rec.account);
        log_info("iso deleted", "iso=%s account=\"%s\" actor=\"%s\" as=%s detail=\"%s\"", id, rec.account, actor, state,
                 detail ? detail : "");
        return 0;
}

int iso_reject(struct iso_store *s, const char *id, const char *reason, const char *actor, struct error *err)
{
        return iso_drop(s, id, "rejected", "iso.reject", reason ? reason : "", actor, err);
}

int iso_remove(struct iso_store *s, const char *id, const char *actor, struct error *err)
{
        return iso_drop(s, id, "deleted", "iso.remove", NULL, actor, err);
}
