/* The template store: names, what qemu-img must say of an image, rows,
 * removal, the jobs in flight and the sweep at start. The import itself is
 * in template_import.c. */
#include "template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "node/template_private.h"

bool template_name_valid(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > TEMPLATE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || !strchr("._-", c)))
                        return false;
        }
        return true;
}

bool template_os_name_valid(const char *os_name)
{
        size_t n = strlen(os_name);

        if (n == 0 || n > TEMPLATE_OS_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (os_name[i] < 0x20 || os_name[i] > 0x7e)
                        return false;
        return true;
}

/* --- what qemu-img says about an image --- */

static bool json_true(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
               json_object_get_boolean(v);
}

int template_image_check(const char *json, size_t len, uint64_t file_size, struct template_image *ret_image,
                         struct error *err)
{
        static const char *const backing_keys[] = { "backing-filename", "full-backing-filename",
                                                    "backing-filename-format" };
        cleanup_json struct json_object *o = NULL;
        struct json_object *specific = NULL, *data = NULL, *v;
        const char *format = NULL;
        int64_t vsize = 0;
        int r;

        r = json_parse_object(json, len, &o, err);
        if (r < 0) {
                error_prefix(err, "qemu-img info gave no usable answer");
                return r;
        }
        if (json_get_string(o, "format", true, &format, err) < 0 ||
            json_get_int64(o, "virtual-size", true, &vsize, err) < 0) {
                /* A field missing from qemu-img's answer is a bad answer. */
                if (err)
                        err->code = -EINVAL;
                error_prefix(err, "qemu-img info");
                return -EINVAL;
        }
        if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0)
                return error_set(err, -EINVAL, "format `%.32s` is not supported (qcow2 or raw)", format);
        for (size_t i = 0; i < ARRAY_SIZE(backing_keys); i++)
                if (json_object_object_get_ex(o, backing_keys[i], &v))
                        return error_set(err, -EINVAL,
                                         "the image has a backing file (`%.128s`): a template must stand alone",
                                         json_object_get_string(v));
        if (json_object_object_get_ex(o, "format-specific", &specific) &&
            json_object_object_get_ex(specific, "data", &data)) {
                if (json_object_object_get_ex(data, "data-file", &v))
                        return error_set(err, -EINVAL,
                                         "the image has an external data file (`%.128s`): a template must stand "
                                         "alone",
                                         json_object_get_string(v));
                if (json_object_object_get_ex(data, "encrypt", &v))
                        return error_set(err, -EINVAL, "the image is encrypted");
                if (json_true(data, "corrupt"))
                        return error_set(err, -EINVAL, "the image is marked corrupt");
        }
        if (json_true(o, "encrypted"))
                return error_set(err, -EINVAL, "the image is encrypted");
        if (json_true(o, "dirty-flag"))
                return error_set(err, -EINVAL, "the image is marked dirty (repair it with `qemu-img check -r all`)");
        if (strcmp(format, "raw") == 0 && (file_size % 512 != 0 || file_size < TEMPLATE_MIN_VIRTUAL_SIZE))
                return error_set(err, -EINVAL,
                                 "not a disk image: qemu-img calls it raw, but a raw image must be a whole number "
                                 "of 512-byte sectors and at least 1 MiB (this is %llu bytes)",
                                 (unsigned long long)file_size);
        if (vsize < (int64_t)TEMPLATE_MIN_VIRTUAL_SIZE || (uint64_t)vsize > TEMPLATE_MAX_VIRTUAL_SIZE)
                return error_set(err, -EINVAL, "virtual size %lld bytes is out of range (1 MiB to 16 TiB)",
                                 (long long)vsize);
        snprintf(ret_image->format, sizeof(ret_image->format), "%s", format);
        ret_image->virtual_size = (uint64_t)vsize;
        return 0;
}

/* --- rows --- */

int template_sql_fail(struct template_store *ts, struct error *err, const char *what)
{
        return error_set(err, -EIO, "%s: %s", what, sqlite3_errmsg(store_db(ts->store)));
}

#define TEMPLATE_COLUMNS "name, os_name, format, virtual_size, min_disk_gib, sha256, size_bytes, imported_at, path"

static void info_from_row(sqlite3_stmt *stmt, struct template_info *t)
{
        const char *text;

        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", (const char *)sqlite3_column_text(stmt, 0));
        snprintf(t->os_name, sizeof(t->os_name), "%s", (const char *)sqlite3_column_text(stmt, 1));
        snprintf(t->format, sizeof(t->format), "%s", (const char *)sqlite3_column_text(stmt, 2));
        t->virtual_size = (uint64_t)sqlite3_column_int64(stmt, 3);
        t->min_disk_gib = (unsigned)sqlite3_column_int64(stmt, 4);
        snprintf(t->sha256, sizeof(t->sha256), "%s", (const char *)sqlite3_column_text(stmt, 5));
        t->size_bytes = (uint64_t)sqlite3_column_int64(stmt, 6);
        t->imported_at = sqlite3_column_int64(stmt, 7);
        text = (const char *)sqlite3_column_text(stmt, 8);
        snprintf(t->path, sizeof(t->path), "%s", text ? text : "");
}

struct json_object *template_info_json(const struct template_info *t)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(t->name));
        json_object_object_add(o, "os_name", json_object_new_string(t->os_name));
        json_object_object_add(o, "format", json_object_new_string(t->format));
        json_object_object_add(o, "virtual_size", json_object_new_int64((int64_t)t->virtual_size));
        json_object_object_add(o, "min_disk_gib", json_object_new_int64(t->min_disk_gib));
        json_object_object_add(o, "sha256", json_object_new_string(t->sha256));
        json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)t->size_bytes));
        json_object_object_add(o, "imported_at", json_object_new_int64(t->imported_at));
        json_object_object_add(o, "path", json_object_new_string(t->path));
        return o;
}

int template_lookup(struct store *store, const char *name, struct template_info *ret_info, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        r = store_prepare(store, "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE name = ?1", &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        r = sqlite3_step(stmt);
        if (r == SQLITE_DONE)
                return error_set(err, -ENOENT, "template %.64s: not found", name);
        if (r != SQLITE_ROW)
                return error_set(err, -EIO, "look up template: %s", sqlite3_errmsg(store_db(store)));
        info_from_row(stmt, ret_info);
        return 0;
}

int template_list_json(struct template_store *ts, struct json_object **ret_list, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *list = NULL;
        struct template_info t;
        int r;

        r = store_prepare(ts->store, "SELECT " TEMPLATE_COLUMNS " FROM templates ORDER BY name", &stmt, err);
        if (r < 0)
                return r;
        list = json_object_new_array();
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                info_from_row(stmt, &t);
                json_object_array_add(list, template_info_json(&t));
        }
        if (r != SQLITE_DONE)
                return template_sql_fail(ts, err, "list templates");
        *ret_list = steal_pointer(&list);
        return 0;
}

/* --- jobs --- */

struct job *template_job_find(struct template_store *ts, const char *name)
{
        for (struct job *j = ts->jobs; j; j = j->next)
                if (strcmp(j->name, name) == 0)
                        return j;
        return NULL;
}

struct job *template_job_new(struct template_store *ts, enum job_kind kind, const char *name)
{
        struct job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->ts = ts;
        j->kind = kind;
        j->src_fd = -1;
        snprintf(j->name, sizeof(j->name), "%s", name);
        j->work.data = j;
        j->next = ts->jobs;
        if (ts->jobs)
                ts->jobs->prev = j;
        ts->jobs = j;
        if (kind == JOB_IMPORT)
                ts->n_imports++;
        return j;
}

void template_job_free(struct job *j)
{
        struct template_store *ts = j->ts;

        if (j->prev)
                j->prev->next = j->next;
        else
                ts->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        if (j->kind == JOB_IMPORT)
                ts->n_imports--;
        if (j->src_fd >= 0)
                close(j->src_fd);
        free(j);
}

void template_job_finish(struct job *j, struct json_object *result)
{
        if (j->kind == JOB_IMPORT)
                j->import_done(j->r, j->r < 0 ? &j->err : NULL, result, j->userdata);
        else
                j->remove_done(j->r, j->r < 0 ? &j->err : NULL, j->userdata);
        template_job_free(j);
}

static void work_cb(uv_work_t *w)
{
        struct job *j = w->data;

        j->work_r = 0;
        error_clear(&j->work_err);
        j->work_fn(j);
}

static void after_work_cb(uv_work_t *w, int status)
{
        struct job *j = w->data;

        (void)status; /* never cancelled: jobs watch their own flag */
        j->after_fn(j);
}

void template_job_queue(struct job *j, void (*work_fn)(struct job *), void (*after_fn)(struct job *))
{
        int r;

        j->work_fn = work_fn;
        j->after_fn = after_fn;
        r = uv_queue_work(j->ts->loop, &j->work, work_cb, after_work_cb);
        if (r < 0) {
                /* Only for a bad argument: run it here rather than lose it. */
                work_cb(&j->work);
                after_fn(j);
        }
}

/* --- remove --- */

static int services_using(struct template_store *ts, const char *name, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char uuids[256] = "";
        size_t len = 0;
        int r, n = 0;

        r = store_prepare(ts->store,
                          "SELECT uuid FROM services WHERE template = ?1 AND state != 'terminated' ORDER BY id",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (n < 3 && len < sizeof(uuids))
                        len += (size_t)snprintf(uuids + len, sizeof(uuids) - len, "%s%s", n ? ", " : "",
                                                (const char *)sqlite3_column_text(stmt, 0));
                n++;
        }
        if (r != SQLITE_DONE)
                return template_sql_fail(ts, err, "look up services");
        if (n > 0)
                return error_set(err, -EBUSY, "template %s: busy: used by %d service%s (%s%s)", name, n,
                                 n == 1 ? "" : "s", uuids, n > 3 ? ", …" : "");
        return 0;
}

/* In one transaction: the check that no service uses it and the delete. */
static int remove_row(struct template_store *ts, const char *name, char *path, size_t path_size, struct error *err)
{
        sqlite3 *db = store_db(ts->store);
        struct template_info info;
        int r;

        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return template_sql_fail(ts, err, "remove template");
        r = template_lookup(ts->store, name, &info, err);
        if (r == 0)
                r = services_using(ts, name, err);
        if (r == 0) {
                cleanup_stmt sqlite3_stmt *stmt = NULL;
                r = store_prepare(ts->store, "DELETE FROM templates WHERE name = ?1", &stmt, err);
                if (r == 0) {
                        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
                        if (sqlite3_step(stmt) != SQLITE_DONE)
                                r = template_sql_fail(ts, err, "remove template");
                }
        }
        if (r == 0 && sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK)
                r = template_sql_fail(ts, err, "remove template");
        if (r < 0) {
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
                return r;
        }
        snprintf(path, path_size, "%s", info.path);
        return 0;
}

static void work_unlink(struct job *j)
{
        if (unlink(j->remove_path) < 0 && errno != ENOENT)
                j->work_r = error_set_errno(&j->work_err, -errno, "remove `%s`", j->remove_path);
}

static void after_unlink(struct job *j)
{
        /* The row is gone, so the template is; a file that stays is
         * garbage the next start removes. */
        if (j->work_r < 0)
                log_warn("template removed, but not its file", "name=%s error=\"%s\"", j->name, j->work_err.msg);
        else
                log_info("template removed", "name=%s", j->name);
        j->r = 0;
        template_job_finish(j, NULL);
}

int template_remove(struct template_store *ts, const char *name, template_remove_fn done, void *userdata,
                    struct error *err)
{
        char path[PATH_MAX];
        struct job *j;
        int r;

        if (!template_name_valid(name))
                return error_set(err, -EINVAL, "template name `%.64s` is not valid", name);
        if (ts->shutting_down)
                return error_set(err, -ECANCELED, "template %s: vpsd is stopping", name);
        if (template_job_find(ts, name))
                return error_set(err, -EBUSY, "template %s: busy: %s in progress", name,
                                 template_job_find(ts, name)->kind == JOB_IMPORT ? "import" : "removal");
        r = remove_row(ts, name, path, sizeof(path), err);
        if (r < 0)
                return r;
        j = template_job_new(ts, JOB_REMOVE, name);
        if (!j) {
                log_warn("template removed, but not its file", "name=%s error=\"out of memory\"", name);
                return error_set(err, -ENOMEM, "out of memory");
        }
        snprintf(j->remove_path, sizeof(j->remove_path), "%s", path);
        j->remove_done = done;
        j->userdata = userdata;
        template_job_queue(j, work_unlink, after_unlink);
        return 0;
}

/* --- the store --- */

/* By name and format, not by path: the same folder may be spelt
 * differently in the configuration from one start to the next. */
static bool row_names_file(struct template_store *ts, const char *file)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        const char *dot = strrchr(file, '.');

        if (store_prepare(ts->store, "SELECT 1 FROM templates WHERE name = ?1 AND format = ?2", &stmt, NULL) < 0)
                return true; /* when in doubt, keep the file */
        sqlite3_bind_text(stmt, 1, file, (int)(dot - file), SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, dot + 1, -1, SQLITE_STATIC);
        return sqlite3_step(stmt) != SQLITE_DONE;
}

static bool has_suffix(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A file named like a template: NAME.qcow2 or NAME.raw. */
static bool template_file_name(const char *file)
{
        char name[TEMPLATE_NAME_MAX + 1];
        const char *dot = strrchr(file, '.');

        if (!dot || (strcmp(dot, ".qcow2") != 0 && strcmp(dot, ".raw") != 0) ||
            (size_t)(dot - file) > TEMPLATE_NAME_MAX)
                return false;
        snprintf(name, sizeof(name), "%.*s", (int)(dot - file), file);
        return template_name_valid(name);
}

static int sweep(struct template_store *ts, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct dirent *e;
        DIR *d;
        int fd, r;

        fd = openat(ts->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                return error_set_errno(err, r, "read directory `%s`", ts->dir);
        }
        while ((e = readdir(d))) {
                char path[PATH_MAX + 256];
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                struct stat st;
                bool regular = e->d_type == DT_REG;
                if (e->d_type == DT_UNKNOWN)
                        regular = fstatat(ts->dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
                snprintf(path, sizeof(path), "%s/%s", ts->dir, e->d_name);
                if (regular && has_suffix(e->d_name, ".tmp")) {
                        if (unlinkat(ts->dir_fd, e->d_name, 0) == 0)
                                log_info("template store: removed a file left by an interrupted import", "file=%s",
                                         path);
                } else if (regular && template_file_name(e->d_name) && !row_names_file(ts, e->d_name)) {
                        if (unlinkat(ts->dir_fd, e->d_name, 0) == 0)
                                log_warn("template store: removed a template file no row names", "file=%s", path);
                } else if (!(regular && template_file_name(e->d_name)))
                        log_warn("template store: unexpected file left alone", "file=%s", path);
        }
        closedir(d);

        if (store_prepare(ts->store, "SELECT name, path FROM templates ORDER BY name", &stmt, err) < 0)
                return err->code;
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                struct stat st;
                const char *path = (const char *)sqlite3_column_text(stmt, 1);
                if (stat(path, &st) < 0)
                        log_warn("template store: a template's file is missing", "name=%s file=%s",
                                 (const char *)sqlite3_column_text(stmt, 0), path);
        }
        return 0;
}

int template_store_open(uv_loop_t *loop, struct store *store, const char *dir, const char *qemu_img,
                        struct template_store **ret_ts, struct error *err)
{
        struct template_store *ts;
        int r;

        ts = calloc(1, sizeof(*ts));
        if (!ts)
                return error_set(err, -ENOMEM, "out of memory");
        /* OpenSSL's one-time set-up (configuration, error state) on this
         * thread, where its exit handler frees it, not on a pool thread. */
        if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
                free(ts);
                return error_set(err, -EIO, "template store: OpenSSL does not start");
        }
        ts->loop = loop;
        ts->store = store;
        if (str_copy(ts->dir, sizeof(ts->dir), dir) < 0 || str_copy(ts->qemu_img, sizeof(ts->qemu_img), qemu_img) < 0) {
                free(ts);
                return error_set(err, -ENAMETOOLONG, "template store: path too long");
        }
        /* Paths recorded in rows read /dir/NAME.FORMAT, never /dir//... */
        for (size_t n = strlen(ts->dir); n > 1 && ts->dir[n - 1] == '/'; n--)
                ts->dir[n - 1] = '\0';
        ts->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ts->dir_fd < 0) {
                r = error_set_errno(err, -errno, "open template dir `%s`", dir);
                free(ts);
                return r;
        }
        r = sweep(ts, err);
        if (r < 0) {
                close(ts->dir_fd);
                free(ts);
                return r;
        }
        *ret_ts = ts;
        return 0;
}

void template_store_shutdown(struct template_store *ts)
{
        if (!ts || ts->shutting_down)
                return;
        ts->shutting_down = true;
        for (struct job *j = ts->jobs, *next; j; j = next) {
                next = j->next;
                atomic_store(&j->cancel, true);
                /* A job waiting for qemu-img is ended here; one on the pool
                 * sees the flag, and its after-work ends it. */
                if (j->command)
                        template_import_cancel(j);
        }
}

struct template_store *template_store_free(struct template_store *ts)
{
        if (!ts)
                return NULL;
        /* The loop has run out, so no job is left; one that were would
         * still be referenced by the pool, and is not freed under it. */
        if (ts->jobs) {
                log_error("template store freed with jobs in flight");
                return NULL;
        }
        close(ts->dir_fd);
        free(ts);
        return NULL;
}
