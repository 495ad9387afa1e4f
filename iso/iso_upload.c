/* The upload sink. The edge writes the body into a pipe; a thread of
 * vpsd's reads the other end, counts and hashes every byte and writes it
 * to an unnamed file in ISO_DIR (O_TMPFILE: a crash leaves nothing), and
 * stops the moment the count would pass the upload's limit (the ticket's
 * max_bytes or the account's quota left). At the end of the stream it
 * syncs the file and checks the image; the loop then waits for the edge's
 * word that it sent everything, checks the quota again under the store's
 * lock, links the file into place and records it pending.
 *
 * Backpressure all the way: the pipe holds at most PIPE_SIZE, the edge
 * stops reading the client while the pipe is full, and the thread reads
 * no faster than the disk takes it. */
#include "iso_private.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "iso/iso_image.h"
#include "node/outbox.h"

#define READ_SIZE (1 << 20)
#define PIPE_SIZE (1 << 20)

struct iso_upload {
        struct iso_store *s;
        struct iso_upload *next;
        char id[ISO_ID_MAX + 1];
        char account[TICKET_ACCOUNT_MAX + 1];
        char label[ISO_LABEL_MAX + 1];
        uint64_t limit;
        bool limit_is_quota; /* else the ticket's max_bytes */
        int pipe_fd;         /* the read end: the thread's */
        int file_fd;
        int cancel_fd;       /* an eventfd: wakes the thread to give up */
        char temp[PATH_MAX]; /* the named fallback's path, or empty with O_TMPFILE */
        uv_thread_t thread;
        uv_async_t async;
        /* Written by the thread, read on the loop once it has ended. */
        uint64_t received;
        bool over;
        int io_error;
        char io_what[64];
        char invalid[200];
        enum iso_image_kind kind;
        char sha256[65];
        /* The loop's. */
        bool thread_done, edge_done, aborted, finished, released;
        uint64_t edge_bytes;
        iso_upload_result_fn result;
        void *userdata;
};

/* --- the thread --- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static void thread_fail(struct iso_upload *u, int code, const char *what)
{
        u->io_error = code;
        snprintf(u->io_what, sizeof(u->io_what), "%s", what);
}

/* Reads the pipe to its end (or the limit, or a cancel). */
static void stream(struct iso_upload *u, uint8_t *buf, EVP_MD_CTX *md)
{
        struct pollfd fds[2] = { { .fd = u->pipe_fd, .events = POLLIN }, { .fd = u->cancel_fd, .events = POLLIN } };

        for (;;) {
                ssize_t n;
                int r;

                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        thread_fail(u, -errno, "poll");
                        return;
                }
                if (fds[1].revents) {
                        thread_fail(u, -ECANCELED, "cancelled");
                        return;
                }
                n = read(u->pipe_fd, buf, READ_SIZE);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0) {
                        thread_fail(u, -errno, "read");
                        return;
                }
                if (n == 0)
                        return;
                if (u->received + (uint64_t)n > u->limit) {
                        u->over = true;
                        return;
                }
                if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
                        thread_fail(u, -EIO, "sha256");
                        return;
                }
                r = write_all(u->file_fd, buf, (size_t)n);
                if (r < 0) {
                        thread_fail(u, r, "write");
                        return;
                }
                u->received += (uint64_t)n;
        }
}

static void check_image(struct iso_upload *u, uint8_t *buf)
{
        size_t head = u->received < ISO_IMAGE_HEAD_SIZE ? (size_t)u->received : ISO_IMAGE_HEAD_SIZE;
        size_t tail = u->received < ISO_IMAGE_TAIL_SIZE ? (size_t)u->received : ISO_IMAGE_TAIL_SIZE;
        uint8_t *tail_buf = buf + ISO_IMAGE_HEAD_SIZE;
        struct error err = { 0 };

        if (pread(u->file_fd, buf, head, 0) != (ssize_t)head ||
            pread(u->file_fd, tail_buf, tail, (off_t)(u->received - tail)) != (ssize_t)tail) {
                thread_fail(u, -EIO, "read back");
                return;
        }
        if (iso_image_check(buf, head, tail_buf, tail, u->received, &u->kind, &err) < 0)
                snprintf(u->invalid, sizeof(u->invalid), "%s", err.msg);
}

static void upload_thread(void *arg)
{
        struct iso_upload *u = arg;
        uint8_t *buf = malloc(READ_SIZE > ISO_IMAGE_HEAD_SIZE + ISO_IMAGE_TAIL_SIZE ? READ_SIZE
                                                                                      : ISO_IMAGE_HEAD_SIZE +
                                                                                                ISO_IMAGE_TAIL_SIZE);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint8_t digest[32];
        unsigned len = 0;

        if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                thread_fail(u, -ENOMEM, "start");
        else
                stream(u, buf, md);
        /* The edge's writes fail at once from here: over the limit, the
         * rest of the body is never read. */
        close(u->pipe_fd);
        u->pipe_fd = -1;
        if (!u->io_error && !u->over && fdatasync(u->file_fd) < 0)
                thread_fail(u, -errno, "sync");
        if (!u->io_error && !u->over)
                check_image(u, buf);
        if (!u->io_error && !u->over && EVP_DigestFinal_ex(md, digest, &len) == 1)
                for (unsigned i = 0; i < len && i < 32; i++)
                        snprintf(u->sha256 + 2 * i, 3, "%02x", digest[i]);
        EVP_MD_CTX_free(md);
        free(buf);
        uv_async_send(&u->async);
}

/* --- the loop --- */

static void upload_freed(uv_handle_t *h)
{
        struct iso_upload *u = h->data;
        struct iso_store *s = u->s;

        free(u);
        if (s->freeing && !s->uploads)
                free(s);
}

static void upload_unlink(struct iso_upload *u)
{
        for (struct iso_upload **p = &u->s->uploads; *p; p = &(*p)->next)
                if (*p == u) {
                        *p = u->next;
                        u->s->n_uploads--;
                        return;
                }
}

/* Once the thread has ended and the upload is over: its file goes (if it
 * was not linked into place), and so does it. */
static void upload_release_if_over(struct iso_upload *u)
{
        if (!u->thread_done || !(u->finished || u->aborted) || u->released)
                return;
        u->released = true;
        if (u->file_fd >= 0)
                close(u->file_fd);
        u->file_fd = -1;
        if (u->temp[0])
                unlink(u->temp);
        close(u->cancel_fd);
        upload_unlink(u);
        uv_close((uv_handle_t *)&u->async, upload_freed);
}

static void upload_finish(struct iso_upload *u, int status, const char *text)
{
        if (u->finished)
                return;
        u->finished = true;
        if (!u->aborted)
                u->result(u, status, text, u->userdata);
        upload_release_if_over(u);
}

static void upload_refuse(struct iso_upload *u, int status, const char *text, const char *why)
{
        log_warn("iso upload refused", "iso=%s account=\"%s\" bytes=%" PRIu64 " reason=\"%s\"", u->id, u->account,
                 u->received, why);
        upload_finish(u, status, text);
}

/* Links the unnamed file to ISO_DIR/ID.iso. */
static int file_link(struct iso_upload *u, const char *path)
{
        char proc[64];

        if (u->temp[0]) {
                if (rename(u->temp, path) < 0)
                        return -errno;
                u->temp[0] = '\0';
                return 0;
        }
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", u->file_fd);
        return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

static int record_insert(struct iso_upload *u, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        int r = store_prepare(u->s->store,
                              "INSERT INTO isos (id, account_id, label, size_bytes, sha256, format, state, uploaded_at) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                              &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_text(stmt, 1, u->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, u->account, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, u->label, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 4, (int64_t)u->received);
        sqlite3_bind_text(stmt, 5, u->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 6, iso_image_kind_name(u->kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 7, time_now_wall());
        if (sqlite3_step(stmt) != SQLITE_DONE)
                return error_set(err, -EIO, "iso: %s", sqlite3_errmsg(store_db(u->s->store)));
        return 0;
}

/* Everything arrived and the image holds: kept, pending, if the quota
 * still has room (checked under the write lock: no other commit between). */
static void upload_commit(struct iso_upload *u)
{
        sqlite3 *db = store_db(u->s->store);
        struct iso_record rec = { .size = u->received };
        struct error err = { 0 };
        char path[PATH_MAX];
        uint64_t quota, used;
        bool linked = false;
        int r;

        if (u->edge_bytes != u->received) {
                upload_refuse(u, 400, "the upload ended before all its bytes arrived", "short");
                return;
        }
        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK) {
                upload_refuse(u, 503, "the node is busy; try again later", sqlite3_errmsg(db));
                return;
        }
        r = iso_quota_get(u->s, u->account, &quota, &used, &err);
        if (r == 0 && used + u->received > quota)
                r = error_set(&err, -EDQUOT, "quota of %" PRIu64 " bytes: %" PRIu64 " used", quota, used);
        if (r == 0 && iso_path(u->s, u->id, path, sizeof(path)) < 0)
                r = error_set(&err, -ENAMETOOLONG, "path too long");
        if (r == 0) {
                r = file_link(u, path);
                if (r < 0)
                        error_set_errno(&err, r, "link into place");
                linked = r == 0;
        }
        if (r == 0)
                r = record_insert(u, &err);
        if (r == 0 && sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK)
                r = error_set(&err, -EIO, "commit: %s", sqlite3_errmsg(db));
        if (r < 0) {
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
                if (linked)
                        unlink(path);
                if (r == -EDQUOT)
                        upload_refuse(u, 413, "the account's ISO quota has no room for this upload", err.msg);
                else
                        upload_refuse(u, 500, "the upload could not be stored", err.msg);
                return;
        }
        str_copy(rec.id, sizeof(rec.id), u->id);
        str_copy(rec.account, sizeof(rec.account), u->account);
        str_copy(rec.label, sizeof(rec.label), u->label);
        str_copy(rec.sha256, sizeof(rec.sha256), u->sha256);
        iso_event(u->s, &rec, "uploaded", true, NULL);
        log_info("iso uploaded", "iso=%s account=\"%s\" bytes=%" PRIu64 " sha256=%s format=%s", u->id, u->account,
                 u->received, u->sha256, iso_image_kind_name(u->kind));
        upload_finish(u, 201, u->id);
}

/* What the thread found decides, unless the edge has yet to finish. */
static void upload_decide(struct iso_upload *u)
{
        char text[EDGE_TEXT_MAX + 1];

        if (u->finished || u->aborted)
                return;
        if (u->over) {
                snprintf(text, sizeof(text), "the upload is larger than %s (%" PRIu64 " bytes)",
                         u->limit_is_quota ? "the account's ISO quota left" : "the ticket allows", u->limit);
                upload_refuse(u, 413, text, "over the limit: stopped mid-stream");
        } else if (u->io_error) {
                upload_refuse(u, 500, "the upload could not be stored", u->io_what);
        } else if (u->invalid[0] && u->edge_done) {
                upload_refuse(u, 415, u->invalid, u->invalid);
        } else if (u->edge_done) {
                upload_commit(u);
        }
}

static void on_thread_done(uv_async_t *a)
{
        struct iso_upload *u = a->data;

        if (u->thread_done)
                return;
        uv_thread_join(&u->thread);
        u->thread_done = true;
        upload_decide(u);
        upload_release_if_over(u);
}

void iso_upload_done(struct iso_upload *u, uint64_t bytes)
{
        u->edge_done = true;
        u->edge_bytes = bytes;
        if (u->thread_done)
                upload_decide(u);
}

void iso_upload_abort(struct iso_upload *u)
{
        uint64_t one = 1;

        if (u->aborted || u->finished)
                return;
        u->aborted = true;
        if (!u->thread_done && write(u->cancel_fd, &one, sizeof(one)) < 0)
                log_error("iso: cannot wake an upload's thread", "iso=%s", u->id);
        log_info("iso upload aborted", "iso=%s account=\"%s\"", u->id, u->account);
        upload_release_if_over(u);
}

void iso_uploads_abort_all(struct iso_store *s)
{
        for (struct iso_upload *u = s->uploads, *next; u; u = next) {
                next = u->next;
                iso_upload_abort(u);
        }
}

/* --- the start --- */

static int id_new(char *buf, size_t size)
{
        uint8_t raw[10];

        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return -EIO;
        snprintf(buf, size, "iso-");
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(buf + 4 + 2 * i, size - 4 - 2 * i, "%02x", raw[i]);
        return 0;
}

/* An unnamed 0600 file in ISO_DIR; where the file system has no
 * O_TMPFILE, a named one that the next start removes if it is left. */
static int file_open(struct iso_upload *u, struct error *err)
{
        int fd = open(u->s->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
                return fd >= 0 ? fd : error_set_errno(err, -errno, "open an upload file in `%s`", u->s->dir);
        snprintf(u->temp, sizeof(u->temp), "%s/.upload-%s", u->s->dir, u->id);
        fd = open(u->temp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                u->temp[0] = '\0';
                return error_set_errno(err, -errno, "create an upload file in `%s`", u->s->dir);
        }
        return fd;
}

static bool account_uploading(struct iso_store *s, const char *account)
{
        for (struct iso_upload *u = s->uploads; u; u = u->next)
                if (!u->finished && !u->aborted && strcmp(u->account, account) == 0)
                        return true;
        return false;
}

static int refusal(int r, int status, const char *text, int *ret_status, const char **ret_text)
{
        *ret_status = status;
        *ret_text = text;
        return r;
}

/* The upload's limit: the ticket's, or less when the quota has less left. */
static int limit_set(struct iso_upload *u, uint64_t max_bytes, struct error *err)
{
        uint64_t quota, used;
        int r = iso_quota_get(u->s, u->account, &quota, &used, err);

        if (r < 0)
                return r;
        if (used >= quota)
                return error_set(err, -EDQUOT, "account `%s`: ISO quota of %" PRIu64 " bytes used up", u->account,
                                 quota);
        u->limit = max_bytes;
        if (quota - used < max_bytes) {
                u->limit = quota - used;
                u->limit_is_quota = true;
        }
        return 0;
}

int iso_upload_begin(struct iso_store *s, const struct ticket *t, const char *label, iso_upload_result_fn result,
                     void *userdata, int *ret_fd, struct iso_upload **ret, int *ret_status, const char **ret_text,
                     struct error *err)
{
        static const char internal[] = "the upload could not be started";
        struct iso_upload *u;
        int p[2], r;

        if (t->type != TICKET_ISO_UPLOAD)
                return refusal(error_set(err, -EINVAL, "a console ticket used for an upload"), 403,
                               "the upload ticket is not valid", ret_status, ret_text);
        if (s->n_uploads >= s->max_uploads)
                return refusal(error_set(err, -EAGAIN, "%u uploads at once already", s->n_uploads), 503,
                               "too many uploads on this node at once; try again later", ret_status, ret_text);
        if (account_uploading(s, t->account))
                return refusal(error_set(err, -EBUSY, "account `%s` has an upload in progress", t->account), 409,
                               "another upload of this account is in progress", ret_status, ret_text);
        u = calloc(1, sizeof(*u));
        if (!u)
                return refusal(error_set(err, -ENOMEM, "out of memory"), 500, internal, ret_status, ret_text);
        u->s = s;
        u->result = result;
        u->userdata = userdata;
        u->pipe_fd = u->file_fd = u->cancel_fd = -1;
        str_copy(u->account, sizeof(u->account), t->account);
        snprintf(u->label, sizeof(u->label), "%s", label && label[0] ? label : "unnamed");
        r = limit_set(u, t->max_bytes, err);
        if (r == -EDQUOT) {
                free(u);
                return refusal(r, 413, "the account's ISO quota is used up", ret_status, ret_text);
        }
        if (r == 0 && id_new(u->id, sizeof(u->id)) < 0)
                r = error_set(err, -EIO, "no random bytes for an ISO id");
        if (r == 0)
                r = u->file_fd = file_open(u, err);
        if (r >= 0 && (u->cancel_fd = eventfd(0, EFD_CLOEXEC)) < 0)
                r = error_set_errno(err, -errno, "eventfd");
        if (r >= 0 && pipe2(p, O_CLOEXEC) < 0)
                r = error_set_errno(err, -errno, "pipe");
        if (r < 0) {
                if (u->file_fd >= 0)
                        close(u->file_fd);
                if (u->cancel_fd >= 0)
                        close(u->cancel_fd);
                if (u->temp[0])
                        unlink(u->temp);
                free(u);
                return refusal(r, 500, internal, ret_status, ret_text);
        }
        /* A bigger pipe: fewer wake-ups each side (best effort). */
        fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
        u->pipe_fd = p[0];
        uv_async_init(s->loop, &u->async, on_thread_done);
        u->async.data = u;
        if (uv_thread_create(&u->thread, upload_thread, u) != 0) {
                close(p[0]);
                close(p[1]);
                close(u->file_fd);
                close(u->cancel_fd);
                if (u->temp[0])
                        unlink(u->temp);
                uv_close((uv_handle_t *)&u->async, upload_freed);
                return refusal(error_set(err, -EAGAIN, "cannot start a thread"), 503,
                               "too many uploads on this node at once; try again later", ret_status, ret_text);
        }
        u->next = s->uploads;
        s->uploads = u;
        s->n_uploads++;
        log_info("iso upload started", "iso=%s account=\"%s\" label=\"%s\" limit=%" PRIu64, u->id, u->account,
                 u->label, u->limit);
        *ret_fd = p[1];
        *ret = u;
        return 0;
}
