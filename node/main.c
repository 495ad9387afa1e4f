/* vpsd: the node agent. Startup order matters and is commented where it
 * does; docs/operator-guide.md describes what an operator sees. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "node/network.h"
#include "node/notify.h"
#include "node/vpsd.h"

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: vpsd [OPTIONS]\n"
                "The vpsd node agent: runs customer guests and answers vpsctl on the control socket.\n"
                "\n"
                "  -c, --config FILE       configuration file (default " CONFIG_DEFAULT_PATH
                "; built-in defaults if it is absent)\n"
                "      --check-config      parse the configuration, print the result and exit\n"
                "      --probe-hypervisor  run the hypervisor probe now (no cache), print the verdict and exit\n"
                "  -h, --help              show this help\n"
                "  -V, --version           show the version\n"
                "\n"
                "Signals: SIGTERM or SIGINT stop cleanly; SIGHUP reloads the configuration.\n"
                "Configuration keys: docs/configuration.md.\n");
}

/* Loads the configuration named on the command line, or the default file
 * if it exists, or else keeps the built-in defaults. */
static int config_read(struct vpsd *v, struct config *cfg, struct error *err)
{
        config_init(cfg);
        if (!v->config_required && access(v->config_path, F_OK) < 0 && errno == ENOENT)
                return 0;
        return config_load(cfg, v->config_path, err);
}

static gid_t group_lookup(const char *name)
{
        struct group gr, *res = NULL;
        char buf[4096];

        if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res) {
                log_warn("control group does not exist: only root may use the control socket", "group=%s", name);
                return (gid_t)-1;
        }
        return res->gr_gid;
}

static void control_limits_from(const struct config *cfg, struct control_limits *limits)
{
        limits->group = group_lookup(cfg->control_group);
        limits->max_clients = cfg->control_max_clients;
        limits->max_request = cfg->control_max_request;
        limits->idle_timeout = 60;
}

/* Creates path and its missing parents. Parents get 0755 so that the
 * control group can reach a socket below them; the leaf gets mode. The
 * modes are set explicitly because vpsd runs with umask 077. */
static int mkdir_parents(const char *path, mode_t mode, struct error *err)
{
        char buf[PATH_MAX];

        if (str_copy(buf, sizeof(buf), path) < 0)
                return error_set(err, -ENAMETOOLONG, "path too long: `%s`", path);
        for (char *p = buf + 1;; p++) {
                bool leaf = *p == '\0';
                if (*p != '/' && !leaf)
                        continue;
                *p = '\0';
                if (mkdir(buf, 0700) == 0) {
                        if (chmod(buf, leaf ? mode : 0755) < 0)
                                return error_set_errno(err, -errno, "chmod `%s`", buf);
                } else if (errno != EEXIST)
                        return error_set_errno(err, -errno, "create directory `%s`", buf);
                if (leaf)
                        return 0;
                *p = '/';
        }
}

/* One vpsd per state dir: the lock is held as long as the process lives
 * and the kernel drops it when the process dies, however it dies. */
static int state_lock(struct vpsd *v, struct error *err)
{
        char path[PATH_MAX + 16], pid[32];
        cleanup_close int fd = -1;
        int n;

        snprintf(path, sizeof(path), "%s/vpsd.lock", v->cfg.state_dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return error_set_errno(err, -errno, "open lock `%s`", path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return error_set_errno(err, -errno, "lock `%s`", path);
                n = (int)pread(fd, pid, sizeof(pid) - 1, 0);
                pid[n > 0 ? n : 0] = '\0';
                pid[strcspn(pid, "\n")] = '\0';
                return error_set(err, -EBUSY, "another vpsd (pid %s) is running on state dir `%s`",
                                 pid[0] ? pid : "?", v->cfg.state_dir);
        }
        n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
                return error_set_errno(err, -errno, "write lock `%s`", path);
        v->lock_fd = steal_fd(&fd);
        return 0;
}

static void on_hypervisor(const struct hvprobe_result *result, void *userdata)
{
        struct vpsd *v = userdata;

        v->hypervisor = *result;
        if (v->guests)
                guests_set_kvm(v->guests, result->accel == HV_ACCEL_KVM);
        log_info("hypervisor probe", "accel=%s cached=%s reason=\"%s\"", hv_accel_name(result->accel),
                 result->from_cache ? "yes" : "no", result->reason);
}

static void stop(struct vpsd *v)
{
        if (v->stopping)
                return;
        v->stopping = true;
        notify_send("STOPPING=1");
        log_info("stopping");
        v->control = control_stop(v->control);
        v->console = console_stop(v->console);
        if (v->guests)
                guests_set_lock_hook(v->guests, NULL, NULL);
        v->probe = hvprobe_cancel(v->probe);
        v->monitors = monitors_free(v->monitors);
        if (v->guests)
                guests_set_monitors(v->guests, NULL);
        /* Commands being applied finish into the journal; their acks go at
         * the next start. */
        v->sync = sync_stop(v->sync);
        /* After the monitors: a mount waiting for QMP has failed by now. */
        v->isos = iso_store_free(v->isos);
        v->leases = leases_free(v->leases);
        /* A last traffic sample; the table stays and keeps filtering. */
        if (v->guests)
                guests_set_network(v->guests, NULL);
        v->network = network_free(v->network);
        /* Imports in flight end with -ECANCELED and remove what they
         * made; the loop runs until they have. */
        template_store_shutdown(v->templates);
        uv_close((uv_handle_t *)&v->sig_term, NULL);
        uv_close((uv_handle_t *)&v->sig_int, NULL);
        uv_close((uv_handle_t *)&v->sig_hup, NULL);
}

static void report_unapplied(const char *key, void *userdata)
{
        (void)userdata;
        if (!config_key_reloadable(key))
                log_warn("config reload: key changed but takes effect only at restart", "key=%s", key);
}

static void reload(struct vpsd *v)
{
        struct config next, applied;
        struct control_limits limits;
        struct error err = { 0 };

        notify_send("RELOADING=1");
        if (config_read(v, &next, &err) < 0) {
                log_error("config reload failed; keeping the running configuration", "error=\"%s\"", err.msg);
                notify_send("READY=1");
                return;
        }
        config_diff(&v->cfg, &next, report_unapplied, NULL);
        /* Only the reloadable keys change now; the rest keep their values
         * until a restart, so what runs always matches what was checked. */
        applied = v->cfg;
        str_copy(applied.control_group, sizeof(applied.control_group), next.control_group);
        applied.control_max_clients = next.control_max_clients;
        applied.control_max_request = next.control_max_request;
        applied.log_level = next.log_level;
        applied.iso_quota_bytes = next.iso_quota_bytes;
        control_limits_from(&applied, &limits);
        if (control_set_limits(v->control, &limits, &err) < 0) {
                log_error("config reload failed; keeping the running configuration", "error=\"%s\"", err.msg);
                notify_send("READY=1");
                return;
        }
        v->cfg = applied;
        if (v->isos)
                iso_store_set_default_quota(v->isos, v->cfg.iso_quota_bytes);
        log_set_level(v->cfg.log_level);
        log_info("configuration reloaded", "path=%s log_level=%s", v->config_path, log_level_name(v->cfg.log_level));
        notify_send("READY=1");
}

static void on_signal(uv_signal_t *s, int signum)
{
        struct vpsd *v = s->data;

        if (signum == SIGHUP)
                reload(v);
        else
                stop(v);
}

static void on_service_locked(const char *uuid, const char *operation, void *userdata)
{
        struct vpsd *v = userdata;

        console_close_service(v->console, uuid, operation);
}

/* The console's files beside vpsd's own binary unless configured. */
static void beside_vpsd(const char *configured, const char *name, char *buf, size_t size)
{
        char self[PATH_MAX];
        ssize_t n;
        char *slash;

        if (configured[0]) {
                snprintf(buf, size, "%s", configured);
                return;
        }
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        slash = strrchr(self, '/');
        if (slash)
                *slash = '\0';
        snprintf(buf, size, "%s/%s", self, name);
}

/* The web console, when console_listen names where (docs/console.md). */
static int console_begin(struct vpsd *v, struct error *err)
{
        char address[64], edge[PATH_MAX], web[PATH_MAX], dir[PATH_MAX + 16], cert[PATH_MAX + 32], key[PATH_MAX + 32];
        struct console_config cc;
        unsigned port;
        int r;

        if (!v->cfg.console_listen[0])
                return 0;
        if (config_console_listen(&v->cfg, address, sizeof(address), &port) < 0)
                return error_set(err, -EINVAL, "console_listen `%s` is not ADDRESS:PORT", v->cfg.console_listen);
        snprintf(dir, sizeof(dir), "%s/console", v->cfg.state_dir);
        if (!v->cfg.console_cert[0] || !v->cfg.console_key[0]) {
                r = mkdir_parents(dir, 0700, err);
                if (r < 0)
                        return r;
        }
        snprintf(cert, sizeof(cert), "%s", v->cfg.console_cert[0] ? v->cfg.console_cert : dir);
        snprintf(key, sizeof(key), "%s", v->cfg.console_key[0] ? v->cfg.console_key : dir);
        if (!v->cfg.console_cert[0])
                strncat(cert, "/cert.pem", sizeof(cert) - strlen(cert) - 1);
        if (!v->cfg.console_key[0])
                strncat(key, "/key.pem", sizeof(key) - strlen(key) - 1);
        beside_vpsd(v->cfg.console_edge, "vpsd-edge", edge, sizeof(edge));
        beside_vpsd(v->cfg.console_web_dir, "web", web, sizeof(web));
        cc = (struct console_config){
                .edge_path = edge,
                .web_dir = web,
                .listen_address = address,
                .port = port,
                .cert = cert,
                .key = key,
                .user = v->cfg.console_user,
                .origins = v->cfg.console_allowed_origins,
                .ledger_public_key = v->cfg.ledger_public_key,
                .run_dir = v->cfg.guest_run_dir,
                .idle_timeout = v->cfg.console_idle_timeout,
                .max_lifetime = v->cfg.console_max_lifetime,
                .max_sessions = v->cfg.console_max_sessions,
                .max_sessions_per_service = v->cfg.console_max_sessions_per_service,
                .max_failed_tickets = v->cfg.console_max_failed_tickets,
                .max_per_address = v->cfg.console_max_connections_per_address,
                .log_level = log_level_name(v->cfg.log_level),
        };
        r = console_start(v->loop, v->store, &cc, &v->console, err);
        if (r < 0)
                return r;
        console_set_iso(v->console, v->isos);
        guests_set_lock_hook(v->guests, on_service_locked, v);
        return 0;
}

/* After reconcile: the control socket, and the service manager is told. */
static void on_reconciled(int status, const struct error *reconcile_err, struct json_object *result, void *userdata)
{
        struct vpsd *v = userdata;
        char sock_dir[PATH_MAX];
        struct control_limits limits;
        struct error err = { 0 };
        char *slash;
        int r = 0;

        (void)status;
        (void)reconcile_err;
        (void)result;
        if (v->stopping)
                return;
        str_copy(sock_dir, sizeof(sock_dir), v->cfg.control_socket);
        slash = strrchr(sock_dir, '/');
        if (slash && slash != sock_dir) {
                *slash = '\0';
                r = mkdir_parents(sock_dir, 0755, &err);
        }
        control_limits_from(&v->cfg, &limits);
        /* Tickets are taken only from a node that reconcile made whole. */
        if (r == 0)
                r = console_begin(v, &err);
        /* Leases are enforced on a node that reconcile made whole. */
        if (r == 0)
                r = leases_new(v->loop, v->store, v->guests, &v->leases, &err);
        /* The ledger's commands, on a node whose leases are enforced. */
        if (r == 0 && v->cfg.ledger_url[0]) {
                const struct sync_config sc = {
                        .url = v->cfg.ledger_url,
                        .ca_file = v->cfg.ledger_ca_file,
                        .key_file = v->cfg.ledger_key_file,
                        .node_id = v->cfg.ledger_node_id,
                        .usage_interval = v->cfg.ledger_usage_interval,
                        .sample_interval = v->cfg.traffic_interval,
                };
                r = sync_start(v->loop, v->store, v->guests, v->leases, v->isos, &sc, &v->sync, &err);
        }
        if (r == 0)
                r = control_start(v->loop, v->cfg.control_socket, &limits, vpsd_control_methods, v, &v->control,
                                  &err);
        if (r < 0) {
                log_error("vpsd cannot start", "error=\"%s\"", err.msg);
                v->exit_code = 1;
                stop(v);
                return;
        }
        log_info("vpsd ready", "version=" VPSD_VERSION " pid=%d state_dir=%s control_socket=%s schema=%u",
                 (int)getpid(), v->cfg.state_dir, v->cfg.control_socket, store_schema_version(v->store));
        notify_send("READY=1");
}

static int start(struct vpsd *v, struct error *err)
{
        char db_path[PATH_MAX + 16], template_dir[PATH_MAX], iso_dir[PATH_MAX + 16];
        int r;

        /* Files vpsd creates are its own unless it says otherwise. */
        umask(077);
        r = mkdir_parents(v->cfg.state_dir, 0711, err);
        if (r < 0)
                return r;
        r = state_lock(v, err);
        if (r < 0)
                return r;
        snprintf(db_path, sizeof(db_path), "%s/vpsd.db", v->cfg.state_dir);
        r = store_open(db_path, &v->store, err);
        if (r < 0)
                return r;
        /* Before the control socket: an import may be asked for at once,
         * and what an interrupted one left must be gone by then. 0755 so
         * that QEMU, under its own user, can reach the 0444 images when
         * template_dir is outside the private state dir. */
        r = config_template_dir(&v->cfg, template_dir, sizeof(template_dir));
        if (r < 0)
                return error_set(err, r, "template dir: path too long");
        r = mkdir_parents(template_dir, 0755, err);
        if (r < 0)
                return r;
        r = template_store_open(v->loop, v->store, template_dir, v->cfg.qemu_img, &v->templates, err);
        if (r < 0)
                return r;

        r = virt_new(v->loop, v->cfg.libvirt_uri, &v->virt, err);
        if (r < 0)
                return r;
        snprintf(iso_dir, sizeof(iso_dir), "%s/isos", v->cfg.state_dir);
        {
                const struct guests_config gc = {
                        .iso_dir = iso_dir,
                        .state_dir = v->cfg.state_dir,
                        .run_dir = v->cfg.guest_run_dir,
                        .bridge = v->cfg.bridge,
                        .qemu_img = v->cfg.qemu_img,
                        .genisoimage = v->cfg.genisoimage,
                        .stop_timeout = v->cfg.stop_timeout,
                        /* The crash tests' hook (docs/tests.md); unset on a real node. */
                        .crash_at = getenv("VPSD_CRASH_AT"),
                };
                r = mkdir_parents(v->cfg.guest_run_dir, 0711, err);
                if (r < 0)
                        return r;
                r = guests_new(v->loop, v->store, v->virt, &gc, &v->guests, err);
                if (r < 0)
                        return r;
                r = monitors_new(v->loop, v->store, v->virt, &v->monitors, err);
                if (r < 0)
                        return r;
                guests_set_monitors(v->guests, v->monitors);
        }
        {
                struct passwd *qemu = getpwnam("libvirt-qemu");
                const struct iso_config ic = {
                        .dir = iso_dir,
                        .default_quota = v->cfg.iso_quota_bytes,
                        .max_uploads = v->cfg.iso_max_uploads,
                        .qemu_gid = qemu ? qemu->pw_gid : 0,
                };
                /* Before reconcile starts guests: what a crash left of an
                 * upload goes first. */
                r = iso_store_open(v->loop, v->store, v->guests, &ic, &v->isos, err);
                if (r < 0)
                        return r;
        }
        {
                const struct network_config nc = {
                        .table = v->cfg.nft_table,
                        .sample_interval_s = v->cfg.traffic_interval,
                        .check_interval_s = v->cfg.filter_check_interval,
                };
                /* Every port is filtered as the store says before reconcile
                 * starts a guest: a node that cannot filter runs none. */
                r = network_new(v->loop, v->store, &nc, &v->network, err);
                if (r < 0)
                        return r;
                r = network_start(v->network, err);
                if (r < 0)
                        return r;
                guests_set_network(v->guests, v->network);
        }

        uv_signal_init(v->loop, &v->sig_term);
        uv_signal_init(v->loop, &v->sig_int);
        uv_signal_init(v->loop, &v->sig_hup);
        v->sig_term.data = v->sig_int.data = v->sig_hup.data = v;
        uv_signal_start(&v->sig_term, on_signal, SIGTERM);
        uv_signal_start(&v->sig_int, on_signal, SIGINT);
        uv_signal_start(&v->sig_hup, on_signal, SIGHUP);

        /* The probe may take seconds; vpsd serves meanwhile and reports
         * "probing" until the verdict arrives. */
        v->hypervisor.accel = HV_ACCEL_PROBING;
        r = hvprobe_start(v->loop, &v->cfg, v->store, true, on_hypervisor, v, &v->probe, err);
        if (r < 0)
                return r;
        /* libvirt and the files are brought in line with the store before
         * any request is taken: requests then see a consistent node. */
        return guests_reconcile(v->guests, on_reconciled, v, err);
}

static void on_probe_only(const struct hvprobe_result *result, void *userdata)
{
        int *exit_code = userdata;

        printf("%s: %s\n", hv_accel_name(result->accel), result->reason);
        *exit_code = 0;
}

static int probe_only(struct vpsd *v)
{
        struct error err = { 0 };
        struct hvprobe *probe = NULL;
        int exit_code = 1;

        if (hvprobe_start(v->loop, &v->cfg, NULL, false, on_probe_only, &exit_code, &probe, &err) < 0) {
                fprintf(stderr, "vpsd: %s\n", err.msg);
                return 1;
        }
        uv_run(v->loop, UV_RUN_DEFAULT);
        hvprobe_cancel(probe);
        uv_run(v->loop, UV_RUN_DEFAULT);
        return exit_code;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'C' },
                { "probe-hypervisor", no_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        struct vpsd v = { .lock_fd = -1 };
        struct error err = { 0 };
        bool check_only = false, probe = false;
        int c, r;

        str_copy(v.config_path, sizeof(v.config_path), CONFIG_DEFAULT_PATH);
        opterr = 0; /* one line of our own for a bad option, not getopt's */
        while ((c = getopt_long(argc, argv, ":c:hV", options, NULL)) != -1) {
                switch (c) {
                case 'c':
                        if (str_copy(v.config_path, sizeof(v.config_path), optarg) < 0) {
                                fprintf(stderr, "vpsd: configuration path too long\n");
                                return 2;
                        }
                        v.config_required = true;
                        break;
                case 'C':
                        check_only = true;
                        break;
                case 'P':
                        probe = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("vpsd %s\n", VPSD_VERSION);
                        return 0;
                case ':':
                        fprintf(stderr, "vpsd: option `%s` needs a value\n", argv[optind - 1]);
                        return 2;
                default:
                        fprintf(stderr, "vpsd: bad option `%s`; try `vpsd --help`\n", argv[optind - 1]);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "vpsd: unexpected argument `%s`; try `vpsd --help`\n", argv[optind]);
                return 2;
        }
        if (config_read(&v, &v.cfg, &err) < 0) {
                fprintf(stderr, "vpsd: %s\n", err.msg);
                return 1;
        }
        if (check_only) {
                printf("%s: ok\n", v.config_required || access(v.config_path, F_OK) == 0 ? v.config_path
                                                                                        : "built-in defaults");
                return 0;
        }
        log_set_level(v.cfg.log_level);
        /* A control client that goes away mid-reply must not kill vpsd. */
        signal(SIGPIPE, SIG_IGN);
        v.loop = uv_default_loop();
        if (probe)
                return probe_only(&v);

        v.started_at = time_now_wall();
        v.started_mono_ms = time_now_mono_ms();
        r = start(&v, &err);
        if (r < 0) {
                log_error("vpsd cannot start", "error=\"%s\"", err.msg);
                if (v.control || v.probe)
                        stop(&v);
                template_store_shutdown(v.templates);
                uv_run(v.loop, UV_RUN_DEFAULT);
                template_store_free(v.templates);
                monitors_free(v.monitors);
                network_free(v.network);
                iso_store_free(v.isos);
                uv_run(v.loop, UV_RUN_DEFAULT);
                guests_free(v.guests);
                virt_free(v.virt);
                store_close(v.store);
                return 1;
        }
        uv_run(v.loop, UV_RUN_DEFAULT);
        v.templates = template_store_free(v.templates);
        v.guests = guests_free(v.guests);
        v.virt = virt_free(v.virt);
        v.store = store_close(v.store);
        uv_loop_close(v.loop);
        if (v.lock_fd >= 0)
                close(v.lock_fd);
        log_info("vpsd stopped");
        return v.exit_code;
}
