/* vpsctl: the operator's command line. One request per run over the
 * control socket; human output by default, --json for scripts. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "common/json.h"
#include "common/linebuf.h"
#include "common/util.h"
#include "node/control_protocol.h"
#include "node/service.h"
#include "node/spec.h"
#include "node/template.h"

#define DEFAULT_SOCKET "/run/vpsd/control.sock"
#define REPLY_MAX (16 * 1024 * 1024)
#define REPLY_TIMEOUT_MS 60000
#define SERVICE_TIMEOUT_MS ((3600 + 300) * 1000)
/* An import copies the whole image: it ends when the copy does. */
#define IMPORT_TIMEOUT_MS (24 * 3600 * 1000)

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: vpsctl [--socket PATH] [--json] COMMAND\n"
                "Operate the vpsd on this node.\n"
                "\n"
                "Commands:\n"
                "  status                  version, uptime, schema, services by state, hypervisor\n"
                "  service list [--all]    services on this node (--all: terminated ones too)\n"
                "  service show UUID       one service in full\n"
                "  service provision FILE  create and start a service from its JSON specification\n"
                "                          (docs/service.md; FILE `-` reads standard input); prints the\n"
                "                          root password, once\n"
                "  service start|stop|restart|force-off UUID\n"
                "                          power: stop is an ACPI shutdown, forced off after stop_timeout\n"
                "  service pause|resume UUID\n"
                "                          stop or go on with the guest's vCPUs (QMP); memory, disks and\n"
                "                          network are kept\n"
                "  service suspend UUID [--reason TEXT]\n"
                "                          abuse handling: the guest is paused, its traffic dropped and its\n"
                "                          consoles closed, memory and disks kept (recorded as the operator's)\n"
                "  service unsuspend UUID  lift a suspension in place\n"
                "  service renew UUID UNTIL\n"
                "                          a new paid_until (Unix seconds or YYYY-MM-DDTHH:MM:SSZ); a lease\n"
                "                          suspension it ends is lifted\n"
                "  policy show | policy set KEY=VALUE...\n"
                "                          lease policy: grace_s, retention_s, autonomous_removal (true|false)\n"
                "  service terminate UUID  destroy the guest and its disk, release its addresses\n"
                "  service resize UUID KEY=VALUE... [--confirm-disk-shrink]\n"
                "                          a new plan: vcpus, memory_mib, disk_gib, port_speed_mbit,\n"
                "                          traffic_gib (a number or `unmetered`); vCPUs, memory and a\n"
                "                          larger disk take effect at the next start; a smaller disk\n"
                "                          rebuilds the guest and needs --confirm-disk-shrink\n"
                "  service reinstall UUID [--template NAME]\n"
                "                          a new disk from the template (the data is erased), the same\n"
                "                          keys, a new root password, printed once\n"
                "  traffic UUID [--period day|week|month|year]\n"
                "                          the service's traffic in and out: the last 24 hours by hour,\n"
                "                          7 or 30 days by day (month is the default), 12 months by month\n"
                "  console ticket UUID [--kind vnc|serial]\n"
                "                          a single-use console ticket for the service's account, valid\n"
                "                          60 s, and the page's URL (the console must be on: console_listen)\n"
                "  template import NAME FILE [--os NAME] [--min-disk GIB]\n"
                "                          copy an image (qcow2 or raw) into the template store, read-only;\n"
                "                          --os: the OS name shown (default NAME), --min-disk: the smallest\n"
                "                          disk in GiB a guest on it may have (default: its virtual size)\n"
                "  template list           templates on this node\n"
                "  ledger status           the link to the billing ledger: connected, the last command\n"
                "                          journaled and finished, events not yet stored by the ledger\n"
                "  template remove NAME    remove a template no service uses\n"
                "  iso list [--account ID] customer ISOs: id, account, label, size, state, where mounted\n"
                "  iso approve|remove ID   approve a pending ISO; remove one that is not mounted\n"
                "  iso reject ID [--reason TEXT]\n"
                "                          reject (and delete) an ISO that is not mounted\n"
                "  iso mount UUID ID | iso eject UUID\n"
                "                          an approved ISO of the service's account into its CD drive,\n"
                "                          or out: live when the guest runs, and at every later start\n"
                "  iso boot UUID cdrom|disk\n"
                "                          boot from the CD drive first, or from the disk, from the next start\n"
                "  iso ticket ACCOUNT --max-bytes N\n"
                "                          a single-use upload ticket for the account, valid 60 s, and the\n"
                "                          URL to PUT the ISO to (the console must be on: console_listen)\n"
                "  iso quota ACCOUNT [BYTES|default]\n"
                "                          the account's ISO quota and use; BYTES sets it (the ledger's\n"
                "                          kind), `default` goes back to iso_quota_bytes\n"
                "\n"
                "Options:\n"
                "  -s, --socket PATH  control socket (default $VPSD_CONTROL_SOCKET or " DEFAULT_SOCKET ")\n"
                "  -j, --json         print vpsd's JSON reply instead of text\n"
                "  -h, --help         show this help\n"
                "  -V, --version      show the version\n"
                "\n"
                "Exit status: 0 done, 1 refused by vpsd or vpsd unreachable, 2 bad usage.\n");
}

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
        va_list ap;

        fputs("vpsctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

static int connect_to(const char *path, struct error *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        cleanup_close int fd = -1;

        if (str_copy(sa.sun_path, sizeof(sa.sun_path), path) < 0)
                return error_set(err, -ENAMETOOLONG, "socket path `%s` is too long", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return error_set_errno(err, -errno, "socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                return error_set(err, -e, "cannot reach vpsd at %s: %s%s", path, strerror(e),
                                 e == ENOENT || e == ECONNREFUSED ? " (is vpsd running?)" : "");
        }
        return steal_fd(&fd);
}

/* Sends one request and waits (up to timeout_ms) for its reply line. */
static int call(const char *socket_path, const char *method, struct json_object *params, int timeout_ms,
                struct json_object **ret_result, char *code, size_t code_size, struct error *err)
{
        cleanup_free char *request = control_request_format(1, method, params);
        cleanup_close int fd = -1;
        struct linebuf lines;
        char buf[65536], *line;
        size_t len, sent = 0;
        int r;

        if (!request)
                return error_set(err, -ENOMEM, "out of memory");
        fd = connect_to(socket_path, err);
        if (fd < 0)
                return fd;
        while (sent < strlen(request)) {
                ssize_t n = send(fd, request + sent, strlen(request) - sent, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return error_set(err, -errno, "send to vpsd: %s", strerror(errno));
                sent += (size_t)n;
        }
        linebuf_init(&lines, REPLY_MAX);
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (linebuf_next(&lines, &line, &len)) {
                        r = control_reply_parse(line, len, 1, ret_result, code, code_size, err);
                        break;
                }
                r = poll(&pfd, 1, timeout_ms);
                if (r == 0) {
                        r = error_set(err, -ETIMEDOUT, "vpsd did not answer within %d s", timeout_ms / 1000);
                        break;
                }
                n = r < 0 ? -1 : recv(fd, buf, sizeof(buf), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = error_set(err, -errno, "read from vpsd: %s", strerror(errno));
                        break;
                }
                if (n == 0) {
                        r = error_set(err, -ECONNRESET, "vpsd closed the connection without a reply");
                        break;
                }
                r = linebuf_append(&lines, buf, (size_t)n);
                if (r < 0) {
                        r = error_set(err, r, "reply from vpsd is too large");
                        break;
                }
        }
        linebuf_free(&lines);
        return r;
}

static const char *jstr(struct json_object *o, const char *key)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return "-";
        return json_object_get_string(v);
}

static int64_t jint(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static const char *format_time(char *buf, size_t size, struct json_object *o, const char *key)
{
        struct json_object *v;
        struct tm tm;
        time_t t;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return "-";
        t = (time_t)json_object_get_int64(v);
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
        return buf;
}

static void print_status(struct json_object *r)
{
        struct json_object *services = NULL, *hv = NULL;
        char up[32], at[32];

        json_object_object_get_ex(r, "services", &services);
        json_object_object_get_ex(r, "hypervisor", &hv);
        duration_format(up, sizeof(up), jint(r, "uptime_s"));
        printf("vpsd %s, pid %" PRId64 ", up %s\n", jstr(r, "version"), jint(r, "pid"), up);
        printf("schema      %" PRId64 "\n", jint(r, "schema_version"));
        printf("services   ");
        for (unsigned i = 0; i < SERVICE_STATE_COUNT; i++)
                printf(" %" PRId64 " %s%s", jint(services, service_state_name(i)), service_state_name(i),
                       i + 1 < SERVICE_STATE_COUNT ? "," : "\n");
        printf("hypervisor  %s (configured %s%s): %s\n", jstr(hv, "accel"), jstr(hv, "configured"),
               json_object_get_boolean(json_object_object_get(hv, "cached")) ? ", cached verdict" : "",
               jstr(hv, "reason"));
        if (jint(hv, "probed_at"))
                printf("probed at   %s\n", format_time(at, sizeof(at), hv, "probed_at"));
}

static const char *busy_text(char *buf, size_t size, struct json_object *s)
{
        struct json_object *busy;

        if (!json_object_object_get_ex(s, "busy", &busy) || !json_object_is_type(busy, json_type_object))
                return "-";
        snprintf(buf, size, "%s (%s)", jstr(busy, "operation"), jstr(busy, "step"));
        return buf;
}

static void print_service_list(struct json_object *r)
{
        struct json_object *list = json_object_object_get(r, "services");
        size_t n = json_object_array_length(list);
        char paid[32], busy[128];

        if (n == 0) {
                printf("no services\n");
                return;
        }
        printf("%-36s  %-14s  %-24s  %-16s  %-20s  %s\n", "UUID", "STATE", "HOSTNAME", "ACCOUNT", "PAID UNTIL",
               "BUSY");
        for (size_t i = 0; i < n; i++) {
                struct json_object *s = json_object_array_get_idx(list, i);
                /* A running guest whose vCPUs are stopped shows as paused. */
                bool paused = json_object_get_boolean(json_object_object_get(s, "paused"));
                printf("%-36s  %-14s  %-24s  %-16s  %-20s  %s\n", jstr(s, "uuid"), paused ? "paused" : jstr(s, "state"),
                       jstr(s, "hostname"), jstr(s, "account_id"), format_time(paid, sizeof(paid), s, "paid_until"),
                       busy_text(busy, sizeof(busy), s));
        }
}

static void print_service(struct json_object *s)
{
        struct json_object *plan = json_object_object_get(s, "plan");
        struct json_object *addresses = json_object_object_get(s, "addresses");
        struct json_object *keys = json_object_object_get(s, "ssh_keys");
        char t[32], busy[128];

        printf("uuid         %s\n", jstr(s, "uuid"));
        printf("state        %s%s%s%s\n", jstr(s, "state"),
               json_object_get_boolean(json_object_object_get(s, "paused")) ? ", paused" : "",
               json_object_object_get(s, "suspend_reason") ? ": " : "",
               json_object_object_get(s, "suspend_reason") ? jstr(s, "suspend_reason") : "");
        printf("busy         %s\n", busy_text(busy, sizeof(busy), s));
        printf("account      %s\n", jstr(s, "account_id"));
        printf("hostname     %s\n", jstr(s, "hostname"));
        printf("template     %s\n", jstr(s, "template"));
        printf("plan         %" PRId64 " vCPU, %" PRId64 " MiB, %" PRId64 " GiB disk, %" PRId64 " Mbit/s, ",
               jint(plan, "vcpus"), jint(plan, "memory_mib"), jint(plan, "disk_gib"), jint(plan, "port_speed_mbit"));
        if (json_object_object_get(plan, "traffic_gib"))
                printf("%" PRId64 " GiB/month\n", jint(plan, "traffic_gib"));
        else
                printf("unmetered\n");
        printf("mac          %s\n", jstr(s, "mac"));
        for (size_t i = 0; i < json_object_array_length(addresses); i++) {
                struct json_object *a = json_object_array_get_idx(addresses, i);
                printf("%-12s %s/%" PRId64 " gateway %s\n", i == 0 ? "addresses" : "", jstr(a, "address"),
                       jint(a, "prefix"), jstr(a, "gateway"));
        }
        for (size_t i = 0; i < json_object_array_length(keys); i++)
                printf("%-12s %s\n", i == 0 ? "ssh keys" : "",
                       jstr(json_object_array_get_idx(keys, i), "fingerprint"));
        printf("paid until   %s\n", format_time(t, sizeof(t), s, "paid_until"));
        {
                struct json_object *next = json_object_object_get(s, "next");
                if (next)
                        printf("next         %s at %s\n", jstr(next, "event"), format_time(t, sizeof(t), next, "at"));
        }
        if (json_object_object_get(s, "booted_at"))
                printf("booted       %s\n", format_time(t, sizeof(t), s, "booted_at"));
        printf("cd tray      %s\n", json_object_get_boolean(json_object_object_get(s, "cdrom_tray_open")) ? "open" : "closed");
        printf("created      %s\n", format_time(t, sizeof(t), s, "created_at"));
}

static const char *format_size(char *buf, size_t size, int64_t bytes);

static void print_traffic(struct json_object *r)
{
        struct json_object *rows = json_object_object_get(r, "rows"), *total = json_object_object_get(r, "total");
        bool by_hour = strcmp(jstr(r, "period"), "day") == 0, by_month = strcmp(jstr(r, "period"), "year") == 0;
        char in[32], out[32], when[32];

        printf("traffic of %s, the last %s (UTC)\n", jstr(r, "uuid"), jstr(r, "period"));
        printf("%-17s  %12s  %12s\n", by_hour ? "HOUR" : by_month ? "MONTH" : "DAY", "IN", "OUT");
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
                struct json_object *row = json_object_array_get_idx(rows, i);
                time_t t = (time_t)jint(row, "start");
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(when, sizeof(when), by_hour ? "%Y-%m-%d %H:00" : by_month ? "%Y-%m" : "%Y-%m-%d", &tm);
                printf("%-17s  %12s  %12s\n", when, format_size(in, sizeof(in), jint(row, "in_bytes")),
                       format_size(out, sizeof(out), jint(row, "out_bytes")));
        }
        printf("%-17s  %12s  %12s\n", "total", format_size(in, sizeof(in), jint(total, "in_bytes")),
               format_size(out, sizeof(out), jint(total, "out_bytes")));
}

/* 64 MiB, 1.5 GiB: sizes for people. */
static const char *format_size(char *buf, size_t size, int64_t bytes)
{
        static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
        double v = (double)bytes;
        unsigned u = 0;

        while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%" PRId64 " bytes", bytes);
        else if (v == (double)(int64_t)v)
                snprintf(buf, size, "%" PRId64 " %s", (int64_t)v, units[u]);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

static void print_provisioned(struct json_object *r)
{
        printf("service %s installed: %s\n", jstr(r, "uuid"), jstr(r, "state"));
        printf("root password: %s\n(shown once, and stored on the node only as a hash)\n", jstr(r, "root_password"));
}

static void print_resized(struct json_object *r)
{
        struct json_object *later = json_object_object_get(r, "at_next_start");

        if (json_object_object_get(r, "root_password")) {
                print_provisioned(r);
                return;
        }
        printf("service %s resized", jstr(r, "uuid"));
        for (size_t i = 0; i < json_object_array_length(later); i++)
                printf("%s%s", i ? ", " : "; at its next start: ",
                       json_object_get_string(json_object_array_get_idx(later, i)));
        printf("\n");
}

static void print_service_state(struct json_object *r)
{
        struct json_object *paused = json_object_object_get(r, "paused");

        printf("service %s: %s%s\n", jstr(r, "uuid"), jstr(r, "state"),
               json_object_get_boolean(paused) ? ", paused" : "");
}

/* Reads a specification: bounded, and a JSON object (vpsd checks the rest). */
static int read_spec(const char *path, struct json_object **ret, struct error *err)
{
        cleanup_fclose FILE *f = strcmp(path, "-") == 0 ? NULL : fopen(path, "re");
        FILE *in = strcmp(path, "-") == 0 ? stdin : f;
        static char buf[SPEC_JSON_MAX + 1];
        size_t n;

        if (!in)
                return error_set_errno(err, -errno, "open `%s`", path);
        n = fread(buf, 1, sizeof(buf), in);
        if (ferror(in))
                return error_set(err, -EIO, "read `%s`", path);
        if (n > SPEC_JSON_MAX)
                return error_set(err, -E2BIG, "%s: larger than %d bytes", path, SPEC_JSON_MAX);
        if (json_parse_object(buf, n, ret, err) < 0)
                return error_prefix(err, "%s", path);
        return 0;
}

/* Unix seconds, or an ISO 8601 UTC time YYYY-MM-DDTHH:MM:SSZ. */
static int time_parse(const char *text, int64_t *ret)
{
        struct tm tm = { 0 };
        const char *end;
        char *num_end = NULL;
        long long n;

        if (text[0] >= '0' && text[0] <= '9' && !strchr(text, '-')) {
                errno = 0;
                n = strtoll(text, &num_end, 10);
                if (errno || *num_end || n < 0)
                        return -EINVAL;
                *ret = n;
                return 0;
        }
        end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (!end || *end)
                return -EINVAL;
        *ret = (int64_t)timegm(&tm);
        return 0;
}

/* policy set KEY=VALUE…: grace_s and retention_s in seconds,
 * autonomous_removal true or false. */
static int policy_params(char **args, int n, struct json_object **ret)
{
        struct json_object *o = json_object_new_object();

        for (int i = 0; i < n; i++) {
                char *eq = strchr(args[i], '='), *end = NULL;
                long long v;
                if (!eq || eq == args[i]) {
                        json_object_put(o);
                        die(2, "`%s` is not KEY=VALUE", args[i]);
                        return -EINVAL;
                }
                *eq = '\0';
                if (strcmp(eq + 1, "true") == 0 || strcmp(eq + 1, "false") == 0) {
                        json_object_object_add(o, args[i], json_object_new_boolean(eq[1] == 't'));
                        continue;
                }
                errno = 0;
                v = strtoll(eq + 1, &end, 10);
                if (errno || !eq[1] || *end) {
                        json_object_put(o);
                        die(2, "%s: `%s` is not a number, true or false", args[i], eq + 1);
                        return -EINVAL;
                }
                json_object_object_add(o, args[i], json_object_new_int64(v));
        }
        *ret = o;
        return 0;
}

static void print_policy(struct json_object *r)
{
        int64_t grace = jint(r, "grace_s"), retention = jint(r, "retention_s");

        printf("grace               %" PRId64 " s (%.1f days) after paid_until, then suspended\n", grace,
               (double)grace / 86400);
        printf("retention           %" PRId64 " s (%.1f days) after a lease suspension, then removal-queued\n",
               retention, (double)retention / 86400);
        printf("autonomous removal  %s\n", json_object_get_boolean(json_object_object_get(r, "autonomous_removal"))
                                                   ? "yes: removal-queued services are terminated by the node"
                                                   : "no: data is destroyed only on the ledger's terminate");
}

static void print_ledger(struct json_object *r)
{
        if (!json_object_get_boolean(json_object_object_get(r, "configured"))) {
                printf("no ledger configured (ledger_url)\n");
                return;
        }
        printf("node id             %s\n", jstr(r, "node_id"));
        printf("connected           %s\n", json_object_get_boolean(json_object_object_get(r, "connected")) ? "yes"
                                                                                                          : "no");
        printf("commands            %" PRId64 " journaled, every one up to %" PRId64 " finished, %" PRId64
               " being applied\n",
               jint(r, "last_command_seq"), jint(r, "commands_finished_upto"), jint(r, "commands_running"));
        printf("events waiting      %" PRId64 "\n", jint(r, "events_unacked"));
        if (json_object_object_get(r, "last_error"))
                printf("last error          %s\n", jstr(r, "last_error"));
}

static void print_renewed(struct json_object *r)
{
        char t[32];

        if (json_object_object_get(r, "paid_until"))
                printf("service %s: paid until %s\n", jstr(r, "uuid"), format_time(t, sizeof(t), r, "paid_until"));
        else
                printf("service %s: renewed; %s again\n", jstr(r, "uuid"), jstr(r, "state"));
}

/* params {"uuid": uuid}, or exit status 2 for a malformed UUID. */
static int uuid_params(const char *uuid, struct json_object **params)
{
        if (!uuid_valid(uuid))
                return die(2, "`%.64s` is not a service UUID (36 lower-case hex digits and dashes)", uuid);
        *params = json_object_new_object();
        json_object_object_add(*params, "uuid", json_object_new_string(uuid));
        return 0;
}

/* service provision|start|stop|restart|force-off|terminate|pause|resume|…: 0, or an exit status. */
static int service_command(char **args, int nargs, const char *template_name, bool confirm_shrink,
                           const char **method,
                           struct json_object **params, void (**print)(struct json_object *))
{
        static const struct {
                const char *verb, *method;
        } ops[] = { { "start", "service.start" },         { "stop", "service.stop" },
                    { "restart", "service.restart" },     { "force-off", "service.force-off" },
                    { "terminate", "service.terminate" }, { "pause", "service.pause" },
                    { "resume", "service.resume" },       { "unsuspend", "service.unsuspend" } };
        struct error err = { 0 };

        if (nargs >= 4 && strcmp(args[1], "resize") == 0) {
                struct json_object *plan = json_object_new_object();
                if (!uuid_valid(args[2])) {
                        json_object_put(plan);
                        return die(2, "`%.64s` is not a service UUID (36 lower-case hex digits and dashes)", args[2]);
                }
                for (int i = 3; i < nargs; i++) {
                        char *eq = strchr(args[i], '='), *end = NULL;
                        long long n;
                        if (!eq || eq == args[i]) {
                                json_object_put(plan);
                                return die(2, "`%s` is not KEY=VALUE", args[i]);
                        }
                        *eq = '\0';
                        if (strcmp(args[i], "traffic_gib") == 0 && strcmp(eq + 1, "unmetered") == 0) {
                                json_object_object_add(plan, args[i], NULL);
                                continue;
                        }
                        errno = 0;
                        n = strtoll(eq + 1, &end, 10);
                        if (errno || !*(eq + 1) || *end) {
                                json_object_put(plan);
                                return die(2, "%s: `%s` is not a number", args[i], eq + 1);
                        }
                        json_object_object_add(plan, args[i], json_object_new_int64(n));
                }
                *method = "service.resize";
                *print = print_resized;
                *params = json_object_new_object();
                json_object_object_add(*params, "uuid", json_object_new_string(args[2]));
                json_object_object_add(*params, "plan", plan);
                if (confirm_shrink)
                        json_object_object_add(*params, "disk_shrink_confirmed", json_object_new_boolean(1));
                return 0;
        }
        if (nargs == 3 && strcmp(args[1], "reinstall") == 0) {
                if (!uuid_valid(args[2]))
                        return die(2, "`%.64s` is not a service UUID (36 lower-case hex digits and dashes)", args[2]);
                *method = "service.reinstall";
                *print = print_provisioned;
                *params = json_object_new_object();
                json_object_object_add(*params, "uuid", json_object_new_string(args[2]));
                if (template_name)
                        json_object_object_add(*params, "template", json_object_new_string(template_name));
                return 0;
        }
        if (nargs == 3 && strcmp(args[1], "provision") == 0) {
                if (read_spec(args[2], params, &err) < 0)
                        return die(2, "%s", err.msg);
                *method = "service.provision";
                *print = print_provisioned;
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
                if (nargs == 3 && strcmp(args[1], ops[i].verb) == 0) {
                        if (!uuid_valid(args[2]))
                                return die(2, "`%.64s` is not a service UUID (36 lower-case hex digits and dashes)",
                                           args[2]);
                        *method = ops[i].method;
                        *print = print_service_state;
                        *params = json_object_new_object();
                        json_object_object_add(*params, "uuid", json_object_new_string(args[2]));
                        return 0;
                }
        return die(2, "unknown command `service %s`; try `vpsctl --help`", nargs > 1 ? args[1] : "");
}

static void print_console_ticket(struct json_object *r)
{
        char at[32];

        printf("%s console of %s, ticket valid until %s (once):\n", jstr(r, "kind"), jstr(r, "uuid"),
               format_time(at, sizeof(at), r, "expires_at"));
        printf("%s\n", jstr(r, "url"));
}

static void print_template_imported(struct json_object *t)
{
        char vsize[32];

        printf("imported template %s: %s, %s, virtual size %s, min disk %" PRId64 " GiB\n", jstr(t, "name"),
               jstr(t, "os_name"), jstr(t, "format"), format_size(vsize, sizeof(vsize), jint(t, "virtual_size")),
               jint(t, "min_disk_gib"));
        printf("sha256 %s\n", jstr(t, "sha256"));
}

static void print_template_list(struct json_object *r)
{
        struct json_object *list = json_object_object_get(r, "templates");
        size_t n = json_object_array_length(list);
        char vsize[32], at[32];

        if (n == 0) {
                printf("no templates\n");
                return;
        }
        printf("%-24s  %-24s  %-6s  %10s  %8s  %-13s  %s\n", "NAME", "OS", "FORMAT", "VSIZE", "MIN DISK", "SHA256",
               "IMPORTED");
        for (size_t i = 0; i < n; i++) {
                struct json_object *t = json_object_array_get_idx(list, i);
                char disk[24];
                snprintf(disk, sizeof(disk), "%" PRId64 " GiB", jint(t, "min_disk_gib"));
                printf("%-24s  %-24s  %-6s  %10s  %8s  %.12s…  %s\n", jstr(t, "name"), jstr(t, "os_name"),
                       jstr(t, "format"), format_size(vsize, sizeof(vsize), jint(t, "virtual_size")), disk,
                       jstr(t, "sha256"), format_time(at, sizeof(at), t, "imported_at"));
        }
}

static void print_iso_list(struct json_object *r)
{
        struct json_object *list = json_object_object_get(r, "isos");
        char size[32];

        if (json_object_array_length(list) == 0) {
                printf("no ISOs\n");
                return;
        }
        printf("%-26s %-10s %-9s %10s  %-24s %s\n", "ID", "ACCOUNT", "STATE", "SIZE", "MOUNTED IN", "LABEL");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                struct json_object *o = json_object_array_get_idx(list, i), *m = json_object_object_get(o, "mounted_in");
                printf("%-26s %-10s %-9s %10s  %-24s %s\n", jstr(o, "id"), jstr(o, "account_id"), jstr(o, "state"),
                       format_size(size, sizeof(size), jint(o, "size")),
                       json_object_array_length(m) ? json_object_get_string(json_object_array_get_idx(m, 0)) : "-",
                       jstr(o, "label"));
        }
}

static void print_iso_state(struct json_object *r) { printf("ISO %s: %s\n", jstr(r, "id"), jstr(r, "state")); }

static void print_iso_drive(struct json_object *r)
{
        const char *iso = jstr(r, "iso");

        printf("service %s: CD drive %s%s%s\n", jstr(r, "uuid"), iso[0] ? "holds " : "empty", iso,
               json_object_get_boolean(json_object_object_get(r, "live")) ? " (live)" : " (from the next start)");
}

static void print_iso_boot(struct json_object *r)
{
        printf("service %s boots from its %s first from its next start\n", jstr(r, "uuid"), jstr(r, "boot"));
}

static void print_iso_ticket(struct json_object *r)
{
        char when[32];

        printf("upload ticket for account %s, at most %" PRId64 " bytes, valid until %s (once):\n%s\n",
               jstr(r, "account"), jint(r, "max_bytes"), format_time(when, sizeof(when), r, "expires_at"),
               jstr(r, "ticket"));
        if (jstr(r, "url")[0])
                printf("upload with: curl -k -T FILE -H 'X-Label: NAME' '%s'\n", jstr(r, "url"));
}

static void print_iso_quota(struct json_object *r)
{
        char quota[32], used[32];

        if (!json_object_object_get(r, "account")) {
                printf("ISO quota set\n");
                return;
        }
        printf("account %s: %s of %s ISO quota used\n", jstr(r, "account"), format_size(used, sizeof(used), jint(r, "used")),
               format_size(quota, sizeof(quota), jint(r, "quota")));
}

static int iso_id_arg(const char *id, struct json_object *params)
{
        size_t n = strlen(id);

        if (n < 1 || n > 64 || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
                return die(2, "`%.64s` is not an ISO id (1 to 64 of a-z, 0-9, '-')", id);
        json_object_object_add(params, "id", json_object_new_string(id));
        return 0;
}

/* `iso …`: fills method, params and print, or returns an exit code. */
static int iso_command(char **args, int nargs, const char *account, const char *max_bytes, const char *reason,
                       const char **method, struct json_object **params, void (**print)(struct json_object *))
{
        const char *verb = nargs >= 2 ? args[1] : "";
        struct json_object *p = *params = json_object_new_object();

        if (strcmp(verb, "list") == 0 && nargs == 2) {
                if (account)
                        json_object_object_add(p, "account", json_object_new_string(account));
                *method = "iso.list", *print = print_iso_list;
        } else if ((strcmp(verb, "approve") == 0 || strcmp(verb, "remove") == 0 || strcmp(verb, "reject") == 0) &&
                   nargs == 3) {
                if (iso_id_arg(args[2], p))
                        return 2;
                if (reason)
                        json_object_object_add(p, "reason", json_object_new_string(reason));
                *method = strcmp(verb, "approve") == 0 ? "iso.approve" : strcmp(verb, "remove") == 0 ? "iso.remove"
                                                                                                    : "iso.reject";
                *print = print_iso_state;
        } else if (strcmp(verb, "mount") == 0 && nargs == 4) {
                if (!uuid_valid(args[2]))
                        return die(2, "`%.64s` is not a service UUID", args[2]);
                json_object_object_add(p, "uuid", json_object_new_string(args[2]));
                if (iso_id_arg(args[3], p))
                        return 2;
                *method = "iso.mount", *print = print_iso_drive;
        } else if ((strcmp(verb, "eject") == 0 && nargs == 3) ||
                   (strcmp(verb, "boot") == 0 && nargs == 4)) {
                if (!uuid_valid(args[2]))
                        return die(2, "`%.64s` is not a service UUID", args[2]);
                json_object_object_add(p, "uuid", json_object_new_string(args[2]));
                if (nargs == 4 && strcmp(args[3], "cdrom") != 0 && strcmp(args[3], "disk") != 0)
                        return die(2, "usage: vpsctl iso boot UUID cdrom|disk");
                if (nargs == 4)
                        json_object_object_add(p, "from", json_object_new_string(args[3]));
                *method = nargs == 4 ? "iso.boot" : "iso.eject";
                *print = nargs == 4 ? print_iso_boot : print_iso_drive;
        } else if (strcmp(verb, "ticket") == 0 && nargs == 3) {
                char *end = NULL;
                long long n = max_bytes ? strtoll(max_bytes, &end, 10) : 0;
                if (!max_bytes || !*max_bytes || *end || n < 1)
                        return die(2, "usage: vpsctl iso ticket ACCOUNT --max-bytes N (N at least 1)");
                json_object_object_add(p, "account", json_object_new_string(args[2]));
                json_object_object_add(p, "max_bytes", json_object_new_int64(n));
                *method = "iso.ticket", *print = print_iso_ticket;
        } else if (strcmp(verb, "quota") == 0 && (nargs == 3 || nargs == 4)) {
                json_object_object_add(p, "account", json_object_new_string(args[2]));
                if (nargs == 4) {
                        char *end = NULL;
                        long long n = strcmp(args[3], "default") == 0 ? -1 : strtoll(args[3], &end, 10);
                        if (end && (!*args[3] || *end || n < 0))
                                return die(2, "usage: vpsctl iso quota ACCOUNT [BYTES|default]");
                        json_object_object_add(p, "bytes", json_object_new_int64(n));
                }
                *method = "iso.quota", *print = print_iso_quota;
        } else {
                return die(2, "usage: vpsctl iso list|approve|reject|remove|mount|eject|boot|ticket|quota …; "
                              "try `vpsctl --help`");
        }
        return 0;
}

static void print_template_removed(struct json_object *r) { printf("removed template %s\n", jstr(r, "name")); }

/* `template …`: fills method, params and print, or returns an exit code. */
static int template_command(char **args, int nargs, const char *os_name, const char *min_disk, const char **method,
                            struct json_object **params, void (**print)(struct json_object *), int *timeout_ms)
{
        const char *sub = nargs >= 2 ? args[1] : "";
        bool import = strcmp(sub, "import") == 0;

        if ((os_name || min_disk) && !import)
                return die(2, "--os and --min-disk go with `template import` only");
        if (import && nargs == 4) {
                cleanup_free char *path = NULL;
                char *end = NULL;
                long gib = 0;

                if (!template_name_valid(args[2]))
                        return die(2, "`%.64s` is not a template name (1 to 64 of a-z, 0-9, '.', '_', '-')",
                                   args[2]);
                if (os_name && !template_os_name_valid(os_name))
                        return die(2, "--os: 1 to %d printable ASCII characters", TEMPLATE_OS_NAME_MAX);
                if (min_disk) {
                        errno = 0;
                        gib = strtol(min_disk, &end, 10);
                        if (errno || end == min_disk || *end || gib < 1 || gib > TEMPLATE_MAX_MIN_DISK_GIB)
                                return die(2, "--min-disk: a whole number of GiB from 1 to %d",
                                           TEMPLATE_MAX_MIN_DISK_GIB);
                }
                /* vpsd opens the file itself, by a path without symbolic
                 * links: resolve it here, where the operator's cwd is. */
                path = realpath(args[3], NULL);
                if (!path)
                        return die(1, "`%s`: %s", args[3], strerror(errno));
                *params = json_object_new_object();
                json_object_object_add(*params, "name", json_object_new_string(args[2]));
                json_object_object_add(*params, "path", json_object_new_string(path));
                if (os_name)
                        json_object_object_add(*params, "os_name", json_object_new_string(os_name));
                if (min_disk)
                        json_object_object_add(*params, "min_disk_gib", json_object_new_int64(gib));
                *method = "template.import";
                *print = print_template_imported;
                *timeout_ms = IMPORT_TIMEOUT_MS;
                return 0;
        }
        if (strcmp(sub, "list") == 0 && nargs == 2) {
                *method = "template.list";
                *print = print_template_list;
                return 0;
        }
        if (strcmp(sub, "remove") == 0 && nargs == 3) {
                if (!template_name_valid(args[2]))
                        return die(2, "`%.64s` is not a template name (1 to 64 of a-z, 0-9, '.', '_', '-')",
                                   args[2]);
                *params = json_object_new_object();
                json_object_object_add(*params, "name", json_object_new_string(args[2]));
                *method = "template.remove";
                *print = print_template_removed;
                return 0;
        }
        if (import)
                return die(2, "usage: vpsctl template import NAME FILE [--os NAME] [--min-disk GIB]");
        return die(2, "unknown command `%s%s%s`; try `vpsctl --help`", args[0], nargs >= 2 ? " " : "", sub);
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' }, { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
                { "all", no_argument, NULL, 'a' },          { "os", required_argument, NULL, 'o' },
                { "min-disk", required_argument, NULL, 'm' }, { "template", required_argument, NULL, 't' },
                { "confirm-disk-shrink", no_argument, NULL, 'C' }, { "period", required_argument, NULL, 'p' },
                { "kind", required_argument, NULL, 'k' },   { "reason", required_argument, NULL, 'r' },
                { "account", required_argument, NULL, 'A' }, { "max-bytes", required_argument, NULL, 'M' },
                {},
        };
        const char *socket_path = getenv("VPSD_CONTROL_SOCKET");
        cleanup_json struct json_object *result = NULL;
        struct json_object *params = NULL;
        void (*print)(struct json_object *) = NULL;
        const char *method = NULL, *os_name = NULL, *min_disk = NULL, *template_name = NULL, *period = NULL;
        const char *kind = NULL, *reason = NULL, *account = NULL, *max_bytes = NULL;
        int timeout_ms = REPLY_TIMEOUT_MS;
        struct error err = { 0 };
        bool json = false, all = false, confirm_shrink = false;
        char code[64] = "";
        int c, nargs;
        char **args;

        if (!socket_path || !*socket_path)
                socket_path = DEFAULT_SOCKET;
        opterr = 0; /* one line of our own for a bad option, not getopt's */
        while ((c = getopt_long(argc, argv, ":s:jhV", options, NULL)) != -1) {
                switch (c) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'a':
                        all = true;
                        break;
                case 'o':
                        os_name = optarg;
                        break;
                case 'm':
                        min_disk = optarg;
                        break;
                case 't':
                        template_name = optarg;
                        break;
                case 'C':
                        confirm_shrink = true;
                        break;
                case 'p':
                        period = optarg;
                        break;
                case 'r':
                        reason = optarg;
                        break;
                case 'k':
                        kind = optarg;
                        break;
                case 'A':
                        account = optarg;
                        break;
                case 'M':
                        max_bytes = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("vpsctl %s\n", VPSD_VERSION);
                        return 0;
                case ':':
                        return die(2, "option `%s` needs a value", argv[optind - 1]);
                default:
                        return die(2, "bad option `%s`; try `vpsctl --help`", argv[optind - 1]);
                }
        }
        args = argv + optind;
        nargs = argc - optind;
        if (nargs == 0)
                return die(2, "missing command; try `vpsctl --help`");

        if (strcmp(args[0], "status") == 0 && nargs == 1) {
                method = "status";
                print = print_status;
        } else if (strcmp(args[0], "service") == 0 && nargs == 2 && strcmp(args[1], "list") == 0) {
                method = "service.list";
                print = print_service_list;
                params = json_object_new_object();
                if (all)
                        json_object_object_add(params, "all", json_object_new_boolean(1));
        } else if (strcmp(args[0], "service") == 0 && nargs == 3 && strcmp(args[1], "show") == 0) {
                if (uuid_params(args[2], &params))
                        return 2;
                method = "service.show";
                print = print_service;
        } else if (strcmp(args[0], "service") == 0 && nargs == 3 && strcmp(args[1], "suspend") == 0) {
                if (uuid_params(args[2], &params))
                        return 2;
                method = "service.suspend";
                print = print_service_state;
                if (reason)
                        json_object_object_add(params, "reason", json_object_new_string(reason));
        } else if (strcmp(args[0], "service") == 0 && nargs == 4 && strcmp(args[1], "renew") == 0) {
                int64_t until;
                if (time_parse(args[3], &until) < 0)
                        return die(2, "`%.64s` is not a time: Unix seconds or YYYY-MM-DDTHH:MM:SSZ", args[3]);
                if (uuid_params(args[2], &params))
                        return 2;
                json_object_object_add(params, "paid_until", json_object_new_int64(until));
                method = "service.renew";
                print = print_renewed;
                timeout_ms = SERVICE_TIMEOUT_MS;
        } else if (strcmp(args[0], "ledger") == 0 && nargs == 2 && strcmp(args[1], "status") == 0) {
                method = "ledger.status";
                print = print_ledger;
        } else if (strcmp(args[0], "policy") == 0 && nargs == 2 && strcmp(args[1], "show") == 0) {
                method = "policy.show";
                print = print_policy;
        } else if (strcmp(args[0], "policy") == 0 && nargs >= 3 && strcmp(args[1], "set") == 0) {
                if (policy_params(args + 2, nargs - 2, &params) < 0)
                        return 2;
                method = "policy.set";
                print = print_policy;
        } else if (strcmp(args[0], "service") == 0 && nargs >= 2 && strcmp(args[1], "list") != 0 &&
                   strcmp(args[1], "show") != 0) {
                int r = service_command(args, nargs, template_name, confirm_shrink, &method, &params, &print);
                if (r != 0)
                        return r;
                /* A stop may wait stop_timeout (at most an hour) for the guest. */
                timeout_ms = SERVICE_TIMEOUT_MS;
        } else if (strcmp(args[0], "traffic") == 0 && nargs == 2) {
                if (uuid_params(args[1], &params))
                        return 2;
                method = "service.traffic";
                print = print_traffic;
                if (period)
                        json_object_object_add(params, "period", json_object_new_string(period));
        } else if (strcmp(args[0], "console") == 0 && nargs == 3 && strcmp(args[1], "ticket") == 0) {
                if (kind && strcmp(kind, "vnc") != 0 && strcmp(kind, "serial") != 0)
                        return die(2, "--kind: vnc or serial");
                if (uuid_params(args[2], &params))
                        return 2;
                method = "console.ticket";
                print = print_console_ticket;
                if (kind)
                        json_object_object_add(params, "kind", json_object_new_string(kind));
        } else if (strcmp(args[0], "template") == 0) {
                int r = template_command(args, nargs, os_name, min_disk, &method, &params, &print, &timeout_ms);
                if (r != 0)
                        return r;
        } else if (strcmp(args[0], "iso") == 0) {
                int r = iso_command(args, nargs, account, max_bytes, reason, &method, &params, &print);
                if (r != 0)
                        return r;
        } else
                return die(2, "unknown command `%s`; try `vpsctl --help`", args[0]);
        if (account && strcmp(method, "iso.list") != 0)
                return die(2, "--account goes with `iso list` only");
        if (max_bytes && strcmp(method, "iso.ticket") != 0)
                return die(2, "--max-bytes goes with `iso ticket` only");
        if (kind && strcmp(method, "console.ticket") != 0)
                return die(2, "--kind goes with `console ticket` only");
        if (reason && strcmp(method, "service.suspend") != 0 && strcmp(method, "iso.reject") != 0)
                return die(2, "--reason goes with `service suspend` and `iso reject` only");
        if (period && strcmp(method, "service.traffic") != 0)
                return die(2, "--period goes with `traffic` only");
        if (all && strcmp(method, "service.list") != 0)
                return die(2, "--all goes with `service list` only");
        if (confirm_shrink && strcmp(method, "service.resize") != 0)
                return die(2, "--confirm-disk-shrink goes with `service resize` only");
        if (template_name && strcmp(method, "service.reinstall") != 0)
                return die(2, "--template goes with `service reinstall` only");
        if ((os_name || min_disk) && strcmp(method, "template.import") != 0)
                return die(2, "--os and --min-disk go with `template import` only");

        if (call(socket_path, method, params, timeout_ms, &result, code, sizeof(code), &err) < 0) {
                /* "busy: provision" says its code already. */
                if (err.code == -EREMOTE && strncmp(err.msg, code, strlen(code)) != 0)
                        return die(1, "%s: %s", code, err.msg);
                if (err.code == -EREMOTE)
                        return die(1, "%s", err.msg);
                return die(1, "%s", err.msg);
        }
        if (json)
                printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY |
                                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
        else
                print(result);
        return 0;
}
