/* Template import: qemu-img info on the file vpsd opened → copy with
 * SHA-256 (thread pool) → qemu-img info on the copy → rename and sync
 * (thread pool) → row. Any failure goes to discard (thread pool), which
 * removes what the import made before done is called. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "node/template_private.h"

#define GIB (1ULL << 30)
#define QEMU_IMG_TIMEOUT_MS 30000
#define COPY_CHUNK (1024 * 1024)
/* Kept free in template_dir after an import, for the database and logs. */
#define SPACE_RESERVE (64ULL << 20)

static int row_exists(struct template_store *ts, const char *name, bool *ret, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(ts->store, "SELECT 1 FROM templates WHERE name = ?1", &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        r = sqlite3_step(stmt);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
                return template_sql_fail(ts, err, "look up template");
        *ret = r == SQLITE_ROW;
        return 0;
}

/* Removes what an import made; then reports j->r, j->err. */
static void work_discard(struct job *j)
{
        if (j->tmp_made && unlinkat(j->ts->dir_fd, j->tmp_name, 0) < 0 && errno != ENOENT)
                log_warn("template import: cannot remove the temporary file", "file=%s/%s error=\"%s\"",
                         j->ts->dir, j->tmp_name, strerror(errno));
        if (j->final_made && unlinkat(j->ts->dir_fd, j->final_name, 0) < 0 && errno != ENOENT)
                log_warn("template import: cannot remove the file", "file=%s/%s error=\"%s\"", j->ts->dir,
                         j->final_name, strerror(errno));
}

static void after_discard(struct job *j) { template_job_finish(j, NULL); }

static void import_fail(struct job *j, const struct error *err)
{
        j->r = err->code < 0 ? err->code : -EIO;
        if (err != &j->err)
                j->err = *err;
        template_job_queue(j, work_discard, after_discard);
}

/* Ends the import with -ECANCELED if vpsd is stopping. */
static bool import_stopping(struct job *j)
{
        struct error err = { 0 };

        if (!j->ts->shutting_down)
                return false;
        error_set(&err, -ECANCELED, "template %s: import cancelled: vpsd is stopping", j->name);
        import_fail(j, &err);
        return true;
}

static void on_source_info(int r, const struct error *err, const struct command_result *result, void *userdata);
static void on_copy_info(int r, const struct error *err, const struct command_result *result, void *userdata);

static int run_qemu_img_info(struct job *j, const char *path, int fd, command_done_fn done, struct error *err)
{
        const char *argv[] = { j->ts->qemu_img, "info", "--output=json", path, NULL };
        struct command_options opts = {
                .name = "qemu-img info",
                .timeout_ms = QEMU_IMG_TIMEOUT_MS,
                .pass_fds = &fd,
                .n_pass_fds = fd >= 0 ? 1 : 0,
        };

        return command_start(j->ts->loop, argv, &opts, done, j, &j->command, err);
}

/* The source's verdict from qemu-img: bounded, parsed, checked. */
static int image_verdict(struct job *j, int r, const struct error *err, const struct command_result *result,
                         uint64_t file_size, struct template_image *image)
{
        if (r < 0)
                return error_set(&j->err, r == -ETIMEDOUT ? -ETIMEDOUT : -EINVAL, "template %s: %s", j->name,
                                 err->msg);
        if (result->out_truncated)
                return error_set(&j->err, -EINVAL, "template %s: qemu-img info: answer longer than %d bytes",
                                 j->name, COMMAND_DEFAULT_MAX_OUTPUT);
        r = template_image_check(result->out, result->out_len, file_size, image, &j->err);
        if (r < 0)
                return error_prefix(&j->err, "template %s", j->name);
        return 0;
}

static void work_copy(struct job *j);
static void after_copy(struct job *j);

static void on_source_info(int r, const struct error *err, const struct command_result *result, void *userdata)
{
        struct job *j = userdata;
        uint64_t need;

        j->command = NULL;
        if (import_stopping(j))
                return;
        if (image_verdict(j, r, err, result, j->src_size, &j->image) < 0) {
                import_fail(j, &j->err);
                return;
        }
        need = (j->image.virtual_size + GIB - 1) / GIB;
        if (j->min_disk_gib == 0)
                j->min_disk_gib = (unsigned)need;
        else if (j->min_disk_gib < need) {
                error_set(&j->err, -EINVAL,
                          "template %s: min_disk_gib %u is smaller than the image's virtual size (%llu bytes, "
                          "%llu GiB rounded up)",
                          j->name, j->min_disk_gib, (unsigned long long)j->image.virtual_size,
                          (unsigned long long)need);
                import_fail(j, &j->err);
                return;
        }
        snprintf(j->final_name, sizeof(j->final_name), "%s.%s", j->name, j->image.format);
        snprintf(j->tmp_name, sizeof(j->tmp_name), "%s.%s.tmp", j->name, j->image.format);
        template_job_queue(j, work_copy, after_copy);
}

/* --- the copy, on the thread pool --- */

static int write_all(int fd, const unsigned char *buf, size_t n, off_t off)
{
        while (n > 0) {
                ssize_t w = pwrite(fd, buf, n, off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                buf += w;
                n -= (size_t)w;
                off += w;
        }
        return 0;
}

static bool all_zero(const unsigned char *buf, size_t n)
{
        return n == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, n - 1) == 0);
}

/* Holes in the source are hashed as the zeros they read as, and stay
 * holes in the copy; so do chunks that are all zeros. */
static int copy_range(struct job *j, int out, EVP_MD_CTX *md, unsigned char *buf, off_t off, off_t end, bool hole)
{
        while (off < end) {
                size_t n = (size_t)(end - off) < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
                ssize_t got;

                if (atomic_load(&j->cancel))
                        return error_set(&j->work_err, -ECANCELED, "template %s: import cancelled", j->name);
                if (hole) {
                        memset(buf, 0, n);
                        got = (ssize_t)n;
                } else {
                        got = pread(j->src_fd, buf, n, off);
                        if (got < 0 && errno == EINTR)
                                continue;
                        if (got < 0)
                                return error_set_errno(&j->work_err, -errno, "template %s: read `%s`", j->name,
                                                       j->source);
                        if (got == 0)
                                return error_set(&j->work_err, -EIO,
                                                 "template %s: `%s` shrank while it was being copied", j->name,
                                                 j->source);
                }
                if (EVP_DigestUpdate(md, buf, (size_t)got) != 1)
                        return error_set(&j->work_err, -EIO, "template %s: SHA-256 failed", j->name);
                if (!hole && !all_zero(buf, (size_t)got)) {
                        int r = write_all(out, buf, (size_t)got, off);
                        if (r < 0)
                                return error_set_errno(&j->work_err, r, "template %s: write `%s/%s`", j->name,
                                                       j->ts->dir, j->tmp_name);
                }
                off += got;
        }
        return 0;
}

static int copy_extents(struct job *j, int out, EVP_MD_CTX *md, unsigned char *buf, off_t size)
{
        off_t off = 0, data, hole;
        int r;

        while (off < size) {
                data = lseek(j->src_fd, off, SEEK_DATA);
                if (data < 0)
                        data = errno == ENXIO ? size : off; /* ENXIO: a hole to the end; else no hole info */
                if (data > size)
                        data = size;
                r = copy_range(j, out, md, buf, off, data, true);
                if (r < 0 || data >= size)
                        return r;
                hole = lseek(j->src_fd, data, SEEK_HOLE);
                if (hole <= data || hole > size)
                        hole = size;
                r = copy_range(j, out, md, buf, data, hole, false);
                if (r < 0)
                        return r;
                off = hole;
        }
        return 0;
}

static int copy_to(struct job *j, int out, off_t size)
{
        static const char hex[] = "0123456789abcdef";
        cleanup_free unsigned char *buf = malloc(COPY_CHUNK);
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned digest_len = 0;
        EVP_MD_CTX *md;
        int r;

        md = EVP_MD_CTX_new();
        if (!buf || !md) {
                EVP_MD_CTX_free(md);
                return error_set(&j->work_err, -ENOMEM, "out of memory");
        }
        r = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
        if (r == 0)
                r = copy_extents(j, out, md, buf, size);
        else
                error_set(&j->work_err, r, "template %s: SHA-256 unavailable", j->name);
        if (r == 0 && EVP_DigestFinal_ex(md, digest, &digest_len) != 1)
                r = error_set(&j->work_err, -EIO, "template %s: SHA-256 failed", j->name);
        EVP_MD_CTX_free(md);
        /* A pool thread never exits, so OpenSSL's state for it would
         * never be freed: free it now (it comes back on the next use). */
        OPENSSL_thread_stop();
        if (r < 0)
                return r;
        for (unsigned i = 0; i < digest_len && i < 32; i++) {
                j->sha256[2 * i] = hex[digest[i] >> 4];
                j->sha256[2 * i + 1] = hex[digest[i] & 15];
        }
        j->sha256[64] = '\0';
        return 0;
}

static int space_check(struct job *j)
{
        struct statvfs sv;
        uint64_t avail;

        if (fstatvfs(j->ts->dir_fd, &sv) < 0)
                return error_set_errno(&j->work_err, -errno, "template %s: statvfs `%s`", j->name, j->ts->dir);
        avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        if (avail < j->src_allocated + SPACE_RESERVE)
                return error_set(&j->work_err, -ENOSPC,
                                 "template %s: `%s` has %llu MiB free, the image needs %llu MiB (and %llu MiB "
                                 "stay free)",
                                 j->name, j->ts->dir, (unsigned long long)(avail >> 20),
                                 (unsigned long long)((j->src_allocated + (1 << 20) - 1) >> 20),
                                 (unsigned long long)(SPACE_RESERVE >> 20));
        return 0;
}

static void work_copy(struct job *j)
{
        cleanup_close int out = -1;
        struct stat st;
        int r;

        if (atomic_load(&j->cancel)) {
                j->work_r = error_set(&j->work_err, -ECANCELED, "template %s: import cancelled", j->name);
                return;
        }
        r = space_check(j);
        if (r < 0) {
                j->work_r = r;
                return;
        }
        /* What qemu-img saw is what is copied: the size is the one it was
         * shown, and the copy is checked again before it is named. */
        if (fstat(j->src_fd, &st) < 0 || (uint64_t)st.st_size != j->src_size) {
                j->work_r = error_set(&j->work_err, -EIO, "template %s: `%s` changed while it was being checked",
                                      j->name, j->source);
                return;
        }
        /* No import of this name is in flight but this one: whatever is
         * there is left over. */
        if (unlinkat(j->ts->dir_fd, j->tmp_name, 0) < 0 && errno != ENOENT) {
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: remove `%s/%s`", j->name,
                                            j->ts->dir, j->tmp_name);
                return;
        }
        out = openat(j->ts->dir_fd, j->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0) {
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: create `%s/%s`", j->name,
                                            j->ts->dir, j->tmp_name);
                return;
        }
        j->tmp_made = true;
        if (ftruncate(out, (off_t)j->src_size) < 0) {
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: size `%s/%s`", j->name,
                                            j->ts->dir, j->tmp_name);
                return;
        }
        r = copy_to(j, out, (off_t)j->src_size);
        if (r < 0) {
                j->work_r = r;
                return;
        }
        /* Read-only before it is durable and named: nothing ever sees a
         * writable template. */
        if (fchmod(out, 0444) < 0 || fsync(out) < 0) {
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: sync `%s/%s`", j->name,
                                            j->ts->dir, j->tmp_name);
                return;
        }
        j->size_bytes = j->src_size;
}

static void after_copy(struct job *j)
{
        char path[PATH_MAX + 128];
        struct error err = { 0 };

        if (import_stopping(j))
                return;
        if (j->work_r < 0) {
                import_fail(j, &j->work_err);
                return;
        }
        snprintf(path, sizeof(path), "%s/%s", j->ts->dir, j->tmp_name);
        if (run_qemu_img_info(j, path, -1, on_copy_info, &err) < 0) {
                err.code = -EIO;
                error_prefix(&err, "template %s", j->name);
                import_fail(j, &err);
        }
}

/* --- naming and recording --- */

static void work_publish(struct job *j)
{
        if (renameat(j->ts->dir_fd, j->tmp_name, j->ts->dir_fd, j->final_name) < 0) {
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: rename `%s` to `%s` in `%s`",
                                            j->name, j->tmp_name, j->final_name, j->ts->dir);
                return;
        }
        j->tmp_made = false;
        j->final_made = true;
        /* The new name is durable before the row that points at it. */
        if (fsync(j->ts->dir_fd) < 0)
                j->work_r = error_set_errno(&j->work_err, -errno, "template %s: sync `%s`", j->name, j->ts->dir);
}

static int insert_row(struct job *j, struct template_info *info, struct error *err)
{
        struct template_store *ts = j->ts;
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r;

        memset(info, 0, sizeof(*info));
        snprintf(info->name, sizeof(info->name), "%s", j->name);
        snprintf(info->os_name, sizeof(info->os_name), "%s", j->os_name);
        snprintf(info->format, sizeof(info->format), "%s", j->image.format);
        info->virtual_size = j->image.virtual_size;
        info->min_disk_gib = j->min_disk_gib;
        snprintf(info->sha256, sizeof(info->sha256), "%s", j->sha256);
        info->size_bytes = j->size_bytes;
        info->imported_at = time_now_wall();
        if (snprintf(info->path, sizeof(info->path), "%s/%s", ts->dir, j->final_name) >= (int)sizeof(info->path))
                return error_set(err, -ENAMETOOLONG, "template %s: path too long", j->name);
        r = store_prepare(ts->store,
                          "INSERT INTO templates (name, os_name, format, virtual_size, min_disk_gib, sha256,"
                          " size_bytes, imported_at, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                          &stmt, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, info->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, info->os_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, info->format, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 4, (sqlite3_int64)info->virtual_size);
        sqlite3_bind_int64(stmt, 5, info->min_disk_gib);
        sqlite3_bind_text(stmt, 6, info->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 7, (sqlite3_int64)info->size_bytes);
        sqlite3_bind_int64(stmt, 8, info->imported_at);
        sqlite3_bind_text(stmt, 9, info->path, -1, SQLITE_STATIC);
        r = sqlite3_step(stmt);
        if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
                return error_set(err, -EEXIST, "template %s: exists", j->name);
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "template %s: record: %s", j->name, sqlite3_errmsg(store_db(ts->store)));
        return 0;
}

static void after_publish(struct job *j)
{
        struct template_info info;
        struct error err = { 0 };

        if (import_stopping(j))
                return;
        if (j->work_r < 0) {
                import_fail(j, &j->work_err);
                return;
        }
        if (insert_row(j, &info, &err) < 0) {
                import_fail(j, &err);
                return;
        }
        log_info("template imported", "name=%s format=%s virtual_size=%llu sha256=%s source=\"%s\"", j->name,
                 j->image.format, (unsigned long long)j->image.virtual_size, j->sha256, j->source);
        j->r = 0;
        template_job_finish(j, template_info_json(&info));
}

static void on_copy_info(int r, const struct error *err, const struct command_result *result, void *userdata)
{
        struct job *j = userdata;
        struct template_image copy;

        j->command = NULL;
        if (import_stopping(j))
                return;
        if (image_verdict(j, r, err, result, j->size_bytes, &copy) < 0) {
                import_fail(j, &j->err);
                return;
        }
        if (strcmp(copy.format, j->image.format) != 0 || copy.virtual_size != j->image.virtual_size) {
                error_set(&j->err, -EIO, "template %s: `%s` changed while it was being copied", j->name, j->source);
                import_fail(j, &j->err);
                return;
        }
        template_job_queue(j, work_publish, after_publish);
}

/* --- import: what can be refused at once --- */

/* The file itself: no symbolic link anywhere in the path (vpsctl sends a
 * resolved path), a regular file, and never a FIFO to block on. */
static int source_open(const char *name, const char *path, struct error *err)
{
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW,
                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd;

        fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS)
                fd = open(path, (int)how.flags);
        if (fd < 0 && errno == ELOOP)
                return error_set(err, -EINVAL,
                                 "template %s: `%s`: a symbolic link is in the path (give the file itself)", name,
                                 path);
        if (fd < 0) {
                int e = errno;
                return error_set(err, e == ENOENT ? -ENOENT : -EINVAL, "template %s: `%s`: %s", name, path,
                                 strerror(e));
        }
        return fd;
}

static int import_prepare(struct template_store *ts, const struct template_import_request *req, struct error *err)
{
        bool exists = false;
        int r;

        if (!template_name_valid(req->name))
                return error_set(err, -EINVAL,
                                 "template name `%.64s` is not valid: 1 to 64 of a-z, 0-9, '.', '_' and '-', "
                                 "starting with a letter or digit",
                                 req->name);
        if (req->os_name && !template_os_name_valid(req->os_name))
                return error_set(err, -EINVAL, "template %s: os name must be 1 to %d printable ASCII characters",
                                 req->name, TEMPLATE_OS_NAME_MAX);
        if (req->min_disk_gib > TEMPLATE_MAX_MIN_DISK_GIB)
                return error_set(err, -EINVAL, "template %s: min_disk_gib must be at most %d", req->name,
                                 TEMPLATE_MAX_MIN_DISK_GIB);
        if (req->path[0] != '/')
                return error_set(err, -EINVAL, "template %s: `%.256s` is not an absolute path", req->name,
                                 req->path);
        if (strlen(req->path) >= PATH_MAX)
                return error_set(err, -EINVAL, "template %s: path too long", req->name);
        if (ts->shutting_down)
                return error_set(err, -ECANCELED, "template %s: vpsd is stopping", req->name);
        if (template_job_find(ts, req->name))
                return error_set(err, -EBUSY, "template %s: busy: %s in progress", req->name,
                                 template_job_find(ts, req->name)->kind == JOB_IMPORT ? "import" : "removal");
        r = row_exists(ts, req->name, &exists, err);
        if (r < 0)
                return r;
        if (exists)
                return error_set(err, -EEXIST, "template %s: exists", req->name);
        if (ts->n_imports >= TEMPLATE_MAX_IMPORTS)
                return error_set(err, -EAGAIN, "template %s: %d imports are running; try again later", req->name,
                                 TEMPLATE_MAX_IMPORTS);
        return 0;
}

int template_import(struct template_store *ts, const struct template_import_request *req, template_import_fn done,
                    void *userdata, struct error *err)
{
        cleanup_close int fd = -1;
        struct stat st;
        struct job *j;
        int r;

        r = import_prepare(ts, req, err);
        if (r < 0)
                return r;
        fd = source_open(req->name, req->path, err);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return error_set_errno(err, -errno, "template %s: stat `%s`", req->name, req->path);
        if (!S_ISREG(st.st_mode))
                return error_set(err, -EINVAL, "template %s: `%s` is not a regular file%s", req->name, req->path,
                                 S_ISDIR(st.st_mode) ? " (a directory)" : "");
        j = template_job_new(ts, JOB_IMPORT, req->name);
        if (!j)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(j->os_name, sizeof(j->os_name), "%s", req->os_name ? req->os_name : req->name);
        snprintf(j->source, sizeof(j->source), "%s", req->path);
        j->min_disk_gib = req->min_disk_gib;
        j->src_size = (uint64_t)st.st_size;
        j->src_allocated = (uint64_t)st.st_blocks * 512;
        j->import_done = done;
        j->userdata = userdata;
        j->src_fd = steal_fd(&fd);
        /* qemu-img reads the file vpsd opened, by /dev/fd/3, not the path
         * again: the path could point elsewhere by now. */
        r = run_qemu_img_info(j, "/dev/fd/3", j->src_fd, on_source_info, err);
        if (r < 0) {
                /* vpsd's own failure (qemu_img is wrong), not the file's. */
                template_job_free(j);
                err->code = -EIO;
                error_prefix(err, "template %s", req->name);
                return -EIO;
        }
        return 0;
}

void template_import_cancel(struct job *j)
{
        j->command = command_cancel(j->command);
        import_stopping(j);
}
