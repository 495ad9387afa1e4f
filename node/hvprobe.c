#include "hvprobe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

/* What the kernel prints once it has brought up CPUs, memory, interrupts,
 * timers and devices and looks for a root file system it was not given. */
#define BOOT_MARKER "Unable to mount root fs"
#define OUTPUT_WINDOW 512

const char *hv_accel_name(enum hv_accel accel)
{
        switch (accel) {
        case HV_ACCEL_KVM:
                return "kvm";
        case HV_ACCEL_TCG:
                return "tcg";
        default:
                return "probing";
        }
}

struct hvprobe_boot {
        uv_process_t process;
        uv_pipe_t out, err;
        uv_timer_t timer;
        unsigned handles_open;
        bool exited, timed_out, booted, cancelled;
        bool out_eof, err_eof;
        int64_t exit_status;
        int term_signal;
        unsigned timeout_s;
        char window[2 * OUTPUT_WINDOW + 1]; /* the last bytes of the serial console */
        size_t window_len;
        char last_error[160];               /* the last line QEMU wrote to stderr */
        hvprobe_boot_fn done;
        void *userdata;
};

static void boot_handle_closed(uv_handle_t *h)
{
        struct hvprobe_boot *b = h->data;
        char reason[256];

        if (--b->handles_open > 0)
                return;
        if (!b->cancelled) {
                if (b->booted)
                        snprintf(reason, sizeof(reason), "a guest kernel booted");
                else if (b->timed_out)
                        snprintf(reason, sizeof(reason), "a guest kernel did not finish booting within %u s",
                                 b->timeout_s);
                else if (b->term_signal && b->exit_status == 0)
                        snprintf(reason, sizeof(reason), "qemu was killed by signal %d", b->term_signal);
                else
                        snprintf(reason, sizeof(reason), "qemu exited with status %lld before the guest booted%s%s",
                                 (long long)b->exit_status, b->last_error[0] ? ": " : "", b->last_error);
                b->done(b->booted, reason, b->userdata);
        }
        free(b);
}

static void boot_finish(struct hvprobe_boot *b)
{
        uv_handle_t *handles[] = { (uv_handle_t *)&b->out, (uv_handle_t *)&b->err, (uv_handle_t *)&b->timer,
                                   (uv_handle_t *)&b->process };

        for (size_t i = 0; i < ARRAY_SIZE(handles); i++)
                if (!uv_is_closing(handles[i]))
                        uv_close(handles[i], boot_handle_closed);
}

/* The verdict waits for QEMU's exit and for the end of its output: the
 * marker may still be in the pipe when the exit is reported. */
static void boot_maybe_finish(struct hvprobe_boot *b)
{
        if (b->exited && b->out_eof && b->err_eof)
                boot_finish(b);
}

/* Kills QEMU once; its exit finishes the boot. */
static void boot_kill(struct hvprobe_boot *b)
{
        if (!b->exited)
                uv_process_kill(&b->process, SIGKILL);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
        struct hvprobe_boot *b = p->data;

        b->exited = true;
        b->exit_status = status;
        b->term_signal = term_signal;
        boot_maybe_finish(b);
}

static void on_timeout(uv_timer_t *t)
{
        struct hvprobe_boot *b = t->data;

        b->timed_out = true;
        boot_kill(b);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        (void)h;
        buf->base = malloc(suggested);
        buf->len = buf->base ? suggested : 0;
}

static void on_serial(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct hvprobe_boot *b = s->data;

        for (ssize_t i = 0; i < n; i++) {
                /* Keep a sliding window, so a marker split across reads is
                 * still found, in bounded memory. */
                if (b->window_len == sizeof(b->window) - 1) {
                        memmove(b->window, b->window + OUTPUT_WINDOW, b->window_len - OUTPUT_WINDOW);
                        b->window_len -= OUTPUT_WINDOW;
                }
                b->window[b->window_len++] = buf->base[i] ? buf->base[i] : ' ';
                b->window[b->window_len] = '\0';
                if (!b->booted && strstr(b->window, BOOT_MARKER)) {
                        b->booted = true;
                        boot_kill(b);
                }
        }
        free(buf->base);
        if (n < 0) {
                uv_read_stop(s);
                b->out_eof = true;
                boot_maybe_finish(b);
        }
}

static void on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct hvprobe_boot *b = s->data;

        if (n > 0) {
                size_t len = (size_t)n;
                char *p = buf->base;
                while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
                        len--;
                char *nl = memrchr(p, '\n', len);
                if (nl) {
                        len -= (size_t)(nl + 1 - p);
                        p = nl + 1;
                }
                if (len > 0)
                        snprintf(b->last_error, sizeof(b->last_error), "%.*s", (int)len, p);
        }
        free(buf->base);
        if (n < 0) {
                uv_read_stop(s);
                b->err_eof = true;
                boot_maybe_finish(b);
        }
}

int hvprobe_boot_start(uv_loop_t *loop, const char *qemu, const char *accel, const char *kernel, unsigned timeout_s,
                       hvprobe_boot_fn done, void *userdata, struct hvprobe_boot **ret_boot, struct error *err)
{
        bool kvm = strcmp(accel, "kvm") == 0;
        char accel_arg[32];
        char *args[] = {
                (char *)qemu, "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                "-serial", "stdio", "-no-reboot", "-m", "256", "-accel", accel_arg, "-cpu", kvm ? "host" : "max",
                "-kernel", (char *)kernel, "-append", "console=ttyS0 panic=-1 quiet", NULL,
        };
        uv_stdio_container_t stdio[3];
        uv_process_options_t opts = { 0 };
        struct hvprobe_boot *b;
        int r;

        snprintf(accel_arg, sizeof(accel_arg), "%s", accel);
        b = calloc(1, sizeof(*b));
        if (!b)
                return error_set(err, -ENOMEM, "out of memory");
        b->done = done;
        b->userdata = userdata;
        b->timeout_s = timeout_s;
        uv_pipe_init(loop, &b->out, 0);
        uv_pipe_init(loop, &b->err, 0);
        uv_timer_init(loop, &b->timer);
        b->out.data = b->err.data = b->timer.data = b->process.data = b;

        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&b->out;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&b->err;
        opts.file = qemu;
        opts.args = args;
        opts.exit_cb = on_exit_cb;
        opts.stdio = stdio;
        opts.stdio_count = 3;
        r = uv_spawn(loop, &b->process, &opts);
        if (r < 0) {
                /* libuv sets the process handle up even when the spawn
                 * fails: it is closed with the others. */
                b->handles_open = 4;
                b->cancelled = true;
                boot_finish(b);
                return error_set(err, r, "run `%s`: %s", qemu, uv_strerror(r));
        }
        b->handles_open = 4;
        uv_read_start((uv_stream_t *)&b->out, alloc_buf, on_serial);
        uv_read_start((uv_stream_t *)&b->err, alloc_buf, on_stderr);
        uv_timer_start(&b->timer, on_timeout, timeout_s * 1000ULL, 0);
        *ret_boot = b;
        return 0;
}

struct hvprobe_boot *hvprobe_boot_cancel(struct hvprobe_boot *b)
{
        if (!b)
                return NULL;
        b->cancelled = true;
        b->out_eof = b->err_eof = true;
        boot_kill(b);
        boot_maybe_finish(b);
        return NULL;
}

/* --- the whole probe --- */

struct hvprobe {
        struct store *store;
        struct hvprobe_boot *boot;
        char cache_key[PATH_MAX + 256];
        hvprobe_done_fn done;
        void *userdata;
};

/* -errno with a reason when the device cannot run a VM at all. */
static int kvm_device_check(const char *path, char *reason, size_t size)
{
        cleanup_close int fd = -1, vm = -1;
        int version;

        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                snprintf(reason, size, "open %s: %s", path, strerror(e));
                return -e;
        }
        version = ioctl(fd, KVM_GET_API_VERSION, 0);
        if (version != KVM_API_VERSION) {
                snprintf(reason, size, "%s is not a KVM device with API version %d", path, KVM_API_VERSION);
                return -ENODEV;
        }
        vm = ioctl(fd, KVM_CREATE_VM, 0);
        if (vm < 0) {
                int e = errno;
                snprintf(reason, size, "%s: cannot create a VM: %s", path, strerror(e));
                return -e;
        }
        return 0;
}

/* The newest /boot/vmlinuz-* (by modification time). */
static int find_boot_kernel(char *path, size_t size)
{
        DIR *d = opendir("/boot");
        struct dirent *de;
        time_t newest = 0;
        int r = -ENOENT;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char p[PATH_MAX];
                struct stat st;
                if (strncmp(de->d_name, "vmlinuz-", 8) != 0)
                        continue;
                snprintf(p, sizeof(p), "/boot/%s", de->d_name);
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime >= newest) {
                        newest = st.st_mtime;
                        r = str_copy(path, size, p);
                }
        }
        closedir(d);
        return r;
}

static void file_identity(char *buf, size_t size, const char *path)
{
        struct stat st;

        if (stat(path, &st) < 0)
                snprintf(buf, size, "%s:absent", path);
        else
                snprintf(buf, size, "%s:%lld:%lld:%lld:%lld", path, (long long)st.st_dev, (long long)st.st_ino,
                         (long long)st.st_size, (long long)st.st_mtime);
}

static void make_cache_key(struct hvprobe *p, const struct config *cfg, const char *kernel)
{
        char k[PATH_MAX + 64], q[PATH_MAX + 64], d[PATH_MAX + 64];
        struct utsname u;

        uname(&u);
        file_identity(k, sizeof(k), kernel);
        file_identity(q, sizeof(q), cfg->qemu_binary);
        file_identity(d, sizeof(d), cfg->kvm_device);
        snprintf(p->cache_key, sizeof(p->cache_key), "host=%s;kernel=%s;qemu=%s;device=%s", u.release, k, q, d);
}

static bool cache_lookup(struct hvprobe *p, struct hvprobe_result *ret)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *o = NULL;
        const char *key = NULL, *accel = NULL, *reason = NULL;
        int64_t at = 0;
        const char *text;

        if (store_prepare(p->store, "SELECT value FROM node_facts WHERE key = 'hypervisor_probe'", &stmt, NULL) < 0 ||
            sqlite3_step(stmt) != SQLITE_ROW)
                return false;
        text = (const char *)sqlite3_column_text(stmt, 0);
        if (!text || json_parse_object(text, strlen(text), &o, NULL) < 0 ||
            json_get_string(o, "key", true, &key, NULL) < 0 || json_get_string(o, "accel", true, &accel, NULL) < 0 ||
            json_get_string(o, "reason", true, &reason, NULL) < 0 || json_get_int64(o, "at", true, &at, NULL) < 0)
                return false;
        if (strcmp(key, p->cache_key) != 0)
                return false;
        ret->accel = strcmp(accel, "kvm") == 0 ? HV_ACCEL_KVM : HV_ACCEL_TCG;
        snprintf(ret->reason, sizeof(ret->reason), "%s", reason);
        ret->from_cache = true;
        ret->probed_at = at;
        return true;
}

static void cache_store(struct hvprobe *p, const struct hvprobe_result *r)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        cleanup_json struct json_object *o = json_object_new_object();

        json_object_object_add(o, "key", json_object_new_string(p->cache_key));
        json_object_object_add(o, "accel", json_object_new_string(hv_accel_name(r->accel)));
        json_object_object_add(o, "reason", json_object_new_string(r->reason));
        json_object_object_add(o, "at", json_object_new_int64(r->probed_at));
        if (store_prepare(p->store,
                          "INSERT INTO node_facts (key, value, updated_at) VALUES ('hypervisor_probe', ?1, ?2) "
                          "ON CONFLICT (key) DO UPDATE SET value = ?1, updated_at = ?2",
                          &stmt, NULL) < 0)
                return;
        sqlite3_bind_text(stmt, 1, json_object_to_json_string(o), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 2, r->probed_at);
        if (sqlite3_step(stmt) != SQLITE_DONE)
                log_warn("hypervisor probe: cannot cache the verdict", "error=\"%s\"",
                         sqlite3_errmsg(store_db(p->store)));
}

static void probe_report(struct hvprobe *p, enum hv_accel accel, const char *reason, bool cache)
{
        struct hvprobe_result r = { .accel = accel, .probed_at = time_now_wall() };

        snprintf(r.reason, sizeof(r.reason), "%s", reason);
        if (cache && p->store)
                cache_store(p, &r);
        p->done(&r, p->userdata);
}

static void on_boot_done(bool booted, const char *reason, void *userdata)
{
        struct hvprobe *p = userdata;

        p->boot = NULL;
        probe_report(p, booted ? HV_ACCEL_KVM : HV_ACCEL_TCG, reason, true);
}

int hvprobe_start(uv_loop_t *loop, const struct config *cfg, struct store *store, bool use_cache,
                  hvprobe_done_fn done, void *userdata, struct hvprobe **ret_probe, struct error *err)
{
        struct hvprobe_result cached = { 0 };
        char reason[256], kernel[PATH_MAX];
        struct hvprobe *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return error_set(err, -ENOMEM, "out of memory");
        p->store = store;
        p->done = done;
        p->userdata = userdata;
        *ret_probe = p;

        if (cfg->hypervisor == HYPERVISOR_TCG) {
                probe_report(p, HV_ACCEL_TCG, "configured: hypervisor = tcg", false);
                return 0;
        }
        if (cfg->hypervisor == HYPERVISOR_KVM) {
                probe_report(p, HV_ACCEL_KVM, "configured: hypervisor = kvm (not probed)", false);
                return 0;
        }
        if (kvm_device_check(cfg->kvm_device, reason, sizeof(reason)) < 0) {
                probe_report(p, HV_ACCEL_TCG, reason, false);
                return 0;
        }
        if (cfg->kvm_probe_kernel[0])
                r = str_copy(kernel, sizeof(kernel), cfg->kvm_probe_kernel);
        else
                r = find_boot_kernel(kernel, sizeof(kernel));
        if (r < 0) {
                probe_report(p, HV_ACCEL_TCG, "no kernel to boot for the KVM probe (set kvm_probe_kernel)", false);
                return 0;
        }
        make_cache_key(p, cfg, kernel);
        if (use_cache && store && cache_lookup(p, &cached)) {
                p->done(&cached, p->userdata);
                return 0;
        }
        log_info("hypervisor probe: booting a kernel under KVM", "kernel=%s timeout=%u", kernel,
                 cfg->kvm_probe_timeout);
        r = hvprobe_boot_start(loop, cfg->qemu_binary, "kvm", kernel, cfg->kvm_probe_timeout, on_boot_done, p,
                               &p->boot, err);
        if (r < 0) {
                snprintf(reason, sizeof(reason), "%s", err->msg);
                probe_report(p, HV_ACCEL_TCG, reason, false);
        }
        return 0;
}

struct hvprobe *hvprobe_cancel(struct hvprobe *p)
{
        if (!p)
                return NULL;
        hvprobe_boot_cancel(p->boot);
        free(p);
        return NULL;
}
