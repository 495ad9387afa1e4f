#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

/* One row per key: how to parse it, where it goes, whether SIGHUP can
 * change it. A key's default lives in config_init(), in one place. */
struct config_key {
        const char *name;
        int (*parse)(const struct config_key *key, const char *value, void *field, char *why, size_t why_size);
        size_t offset;
        size_t size;
        unsigned min, max;      /* numbers; for paths, min 1 means required and max a length limit */
        const char *const *names; /* enums: names[i] is value i */
        bool reloadable;
};

static int parse_path(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        if (value[0] == '\0' && key->min == 0)
                return str_copy(field, key->size, value);
        if (value[0] != '/') {
                snprintf(why, why_size, "must be an absolute path");
                return -EINVAL;
        }
        if ((key->max && strlen(value) > key->max) || str_copy(field, key->size, value) < 0) {
                snprintf(why, why_size, "path longer than %zu bytes", key->max ? key->max : key->size - 1);
                return -ENAMETOOLONG;
        }
        return 0;
}

/* A Unix group name: letters, digits, '_', '-', '.', not starting with '-'. */
static int parse_name(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        size_t n = strlen(value);

        if (n == 0 || n >= key->size || value[0] == '-') {
                snprintf(why, why_size, "must be a name of 1 to %zu characters", key->size - 1);
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)value[i]) && !strchr("_-.", value[i])) {
                        snprintf(why, why_size, "may contain only letters, digits, '_', '-' and '.'");
                        return -EINVAL;
                }
        return str_copy(field, key->size, value);
}

/* A libvirt URI such as qemu:///system: printable, no spaces. */
static int parse_uri(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        size_t n = strlen(value);

        if (n == 0 || n >= key->size || !strstr(value, ":/")) {
                snprintf(why, why_size, "must be a libvirt URI such as qemu:///system");
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
                if (value[i] <= ' ' || value[i] == 0x7f) {
                        snprintf(why, why_size, "must not contain spaces or control characters");
                        return -EINVAL;
                }
        return str_copy(field, key->size, value);
}

/* "ADDRESS:PORT" or "[IPV6]:PORT" (port 1-65535), or empty: off. */
static int parse_listen(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        char address[64];
        unsigned port;
        struct config probe;

        if (value[0] == '\0')
                return str_copy(field, key->size, value);
        if (str_copy(probe.console_listen, sizeof(probe.console_listen), value) < 0 ||
            config_console_listen(&probe, address, sizeof(address), &port) < 0) {
                snprintf(why, why_size, "must be ADDRESS:PORT, such as 0.0.0.0:8443 or [::]:8443");
                return -EINVAL;
        }
        return str_copy(field, key->size, value);
}

static int parse_ledger_url(const struct config_key *key, const char *value, void *field, char *why,
                            size_t why_size)
{
        char host[256], path[256];
        unsigned port;

        if (value[0] && config_ledger_url(value, host, sizeof(host), &port, path, sizeof(path)) < 0) {
                snprintf(why, why_size, "must be wss://HOST[:PORT][/PATH], such as wss://ledger.example:8444/sync");
                return -EINVAL;
        }
        return str_copy(field, key->size, value);
}

static int parse_node_id(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        size_t len = strlen(value);

        if (len > 64 || strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
                snprintf(why, why_size, "must be 1 to 64 of a-z 0-9 . _ -");
                return -EINVAL;
        }
        return str_copy(field, key->size, value);
}

int config_ledger_url(const char *url, char *host, size_t host_size, unsigned *ret_port, char *path,
                      size_t path_size)
{
        const char *h = url + strlen("wss://"), *end, *slash, *colon;
        unsigned long port = 443;
        size_t host_len;

        if (strncmp(url, "wss://", 6) != 0)
                return -EINVAL;
        slash = strchr(h, '/');
        end = slash ? slash : h + strlen(h);
        if (*h == '[') { /* an IPv6 address */
                const char *close = memchr(h, ']', (size_t)(end - h));
                if (!close)
                        return -EINVAL;
                colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
                if (!colon && close + 1 != end)
                        return -EINVAL;
        } else {
                colon = memchr(h, ':', (size_t)(end - h));
        }
        host_len = (size_t)((colon ? colon : end) - h);
        if (colon) {
                char *tail = NULL;
                errno = 0;
                port = strtoul(colon + 1, &tail, 10);
                if (errno || tail != end || colon + 1 == end || port == 0 || port > 65535)
                        return -EINVAL;
        }
        if (host_len == 0 || host_len >= host_size || strcspn(h, " \t@?#") < host_len)
                return -EINVAL;
        memcpy(host, h, host_len);
        host[host_len] = '\0';
        if (host[0] == '[') { /* lws wants the address without brackets */
                memmove(host, host + 1, host_len - 2);
                host[host_len - 2] = '\0';
        }
        if (str_copy(path, path_size, slash ? slash : "/sync") < 0 || strcspn(path, " \t#") != strlen(path))
                return -EINVAL;
        *ret_port = (unsigned)port;
        return 0;
}

int config_console_listen(const struct config *cfg, char *address, size_t size, unsigned *ret_port)
{
        const char *v = cfg->console_listen, *colon = strrchr(v, ':'), *start = v, *end = colon;
        unsigned long port;
        char *tail = NULL;

        if (!colon || colon == v)
                return -EINVAL;
        if (v[0] == '[') {
                if (colon[-1] != ']')
                        return -EINVAL;
                start = v + 1;
                end = colon - 1;
        } else if (memchr(v, ':', (size_t)(colon - v)))
                return -EINVAL; /* an IPv6 address goes in brackets */
        if (end <= start || (size_t)(end - start) >= size)
                return -EINVAL;
        for (const char *p = start; p < end; p++)
                if (!isxdigit((unsigned char)*p) && !strchr(".:", *p))
                        return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &tail, 10);
        if (errno || !colon[1] || *tail || port < 1 || port > 65535)
                return -EINVAL;
        memcpy(address, start, (size_t)(end - start));
        address[end - start] = '\0';
        *ret_port = (unsigned)port;
        return 0;
}

/* Origins as a browser sends them: https://host or https://host:port, at
 * most 16, separated by spaces. */
static int parse_origins(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        unsigned n = 0;

        for (const char *p = value; *p;) {
                size_t len = strcspn(p, " ");
                if (len > 0) {
                        if (++n > 16 || (strncmp(p, "https://", 8) != 0 && strncmp(p, "http://", 7) != 0) ||
                            memchr(p, '/', len) != p + 5 + (p[4] == 's')) {
                                snprintf(why, why_size, "must be up to 16 origins such as https://console.example.net");
                                return -EINVAL;
                        }
                        for (size_t i = 0; i < len; i++)
                                if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) {
                                        snprintf(why, why_size, "must be printable ASCII");
                                        return -EINVAL;
                                }
                }
                p += len;
                while (*p == ' ')
                        p++;
        }
        if (str_copy(field, key->size, value) < 0) {
                snprintf(why, why_size, "longer than %zu bytes", key->size - 1);
                return -EINVAL;
        }
        return 0;
}

static int parse_uint(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        unsigned long long n = 0;
        const char *p = value;

        if (*p == '\0')
                goto bad;
        for (; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        goto bad;
                n = n * 10 + (unsigned)(*p - '0');
                if (n > key->max)
                        goto bad;
        }
        if (n < key->min)
                goto bad;
        *(unsigned *)field = (unsigned)n;
        return 0;
bad:
        snprintf(why, why_size, "must be a whole number from %u to %u", key->min, key->max);
        return -EINVAL;
}

/* A size in bytes: a whole number with an optional K, M, G or T suffix
 * (binary: 1K = 1024), up to 2^53 - 1. */
static int parse_bytes(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        static const char suffixes[] = "KMGT";
        uint64_t n = 0, scale = 1;
        const char *p = value, *s;

        (void)key;
        for (; isdigit((unsigned char)*p); p++) {
                n = n * 10 + (unsigned)(*p - '0');
                if (n > (UINT64_C(1) << 53))
                        goto bad;
        }
        if (p == value)
                goto bad;
        if (*p && (s = strchr(suffixes, *p)) && !p[1])
                scale = UINT64_C(1) << (10 * (s - suffixes + 1));
        else if (*p)
                goto bad;
        if (n > ((UINT64_C(1) << 53) - 1) / scale)
                goto bad;
        *(uint64_t *)field = n * scale;
        return 0;
bad:
        snprintf(why, why_size, "must be a size in bytes, with an optional K, M, G or T (up to 2^53 - 1 bytes)");
        return -EINVAL;
}

static int parse_enum(const struct config_key *key, const char *value, void *field, char *why, size_t why_size)
{
        size_t len = 0;

        for (unsigned i = 0; key->names[i]; i++)
                if (strcmp(value, key->names[i]) == 0) {
                        *(int *)field = (int)i;
                        return 0;
                }
        len = (size_t)snprintf(why, why_size, "must be one of");
        for (unsigned i = 0; key->names[i] && len < why_size; i++)
                len += (size_t)snprintf(why + len, why_size - len, "%s %s", i ? "," : "", key->names[i]);
        return -EINVAL;
}

static const char *const log_level_names[] = { "debug", "info", "warn", "error", NULL };
static const char *const hypervisor_names[] = { "auto", "kvm", "tcg", NULL };

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct config_key config_keys[] = {
        { "state_dir", parse_path, FIELD(state_dir), 1, 0, NULL, false },
        /* A Unix socket's path must fit sun_path. */
        { "control_socket", parse_path, FIELD(control_socket), 1, 107, NULL, false },
        { "control_group", parse_name, FIELD(control_group), 0, 0, NULL, true },
        { "control_max_clients", parse_uint, FIELD(control_max_clients), 1, 4096, NULL, true },
        { "control_max_request", parse_uint, FIELD(control_max_request), 1024, 16 * 1024 * 1024, NULL, true },
        { "log_level", parse_enum, FIELD(log_level), 0, 0, log_level_names, true },
        { "hypervisor", parse_enum, FIELD(hypervisor), 0, 0, hypervisor_names, false },
        { "kvm_device", parse_path, FIELD(kvm_device), 1, 0, NULL, false },
        { "kvm_probe_kernel", parse_path, FIELD(kvm_probe_kernel), 0, 0, NULL, false },
        { "kvm_probe_timeout", parse_uint, FIELD(kvm_probe_timeout), 1, 600, NULL, false },
        { "qemu_binary", parse_path, FIELD(qemu_binary), 1, 0, NULL, false },
        { "qemu_img", parse_path, FIELD(qemu_img), 1, 0, NULL, false },
        { "template_dir", parse_path, FIELD(template_dir), 0, 0, NULL, false },
        { "libvirt_uri", parse_uri, FIELD(libvirt_uri), 0, 0, NULL, false },
        { "bridge", parse_name, FIELD(bridge), 0, 0, NULL, false },
        /* A guest's sockets are GUEST_RUN_DIR/UUID/serial.sock: sun_path
         * holds 107 bytes, UUID and name take 50 of them. */
        { "guest_run_dir", parse_path, FIELD(guest_run_dir), 1, 57, NULL, false },
        { "stop_timeout", parse_uint, FIELD(stop_timeout), 1, 3600, NULL, false },
        { "genisoimage", parse_path, FIELD(genisoimage), 1, 0, NULL, false },
        { "nft_table", parse_name, FIELD(nft_table), 0, 0, NULL, false },
        { "traffic_interval", parse_uint, FIELD(traffic_interval), 1, 3600, NULL, false },
        { "filter_check_interval", parse_uint, FIELD(filter_check_interval), 1, 3600, NULL, false },
        { "console_listen", parse_listen, FIELD(console_listen), 0, 0, NULL, false },
        { "console_cert", parse_path, FIELD(console_cert), 0, 0, NULL, false },
        { "console_key", parse_path, FIELD(console_key), 0, 0, NULL, false },
        { "console_edge", parse_path, FIELD(console_edge), 0, 0, NULL, false },
        { "console_web_dir", parse_path, FIELD(console_web_dir), 0, 0, NULL, false },
        { "console_user", parse_name, FIELD(console_user), 0, 0, NULL, false },
        { "console_allowed_origins", parse_origins, FIELD(console_allowed_origins), 0, 0, NULL, false },
        { "ledger_public_key", parse_path, FIELD(ledger_public_key), 0, 0, NULL, false },
        { "console_idle_timeout", parse_uint, FIELD(console_idle_timeout), 0, 86400, NULL, false },
        { "console_max_lifetime", parse_uint, FIELD(console_max_lifetime), 60, 7 * 86400, NULL, false },
        { "console_max_sessions", parse_uint, FIELD(console_max_sessions), 1, 20000, NULL, false },
        { "console_max_sessions_per_service", parse_uint, FIELD(console_max_sessions_per_service), 1, 64, NULL,
          false },
        { "console_max_failed_tickets", parse_uint, FIELD(console_max_failed_tickets), 1, 10000, NULL, false },
        { "console_max_connections_per_address", parse_uint, FIELD(console_max_connections_per_address), 0, 100000,
          NULL, false },
        { "ledger_url", parse_ledger_url, FIELD(ledger_url), 0, 0, NULL, false },
        { "ledger_ca_file", parse_path, FIELD(ledger_ca_file), 0, 0, NULL, false },
        { "ledger_key_file", parse_path, FIELD(ledger_key_file), 0, 0, NULL, false },
        { "ledger_node_id", parse_node_id, FIELD(ledger_node_id), 0, 0, NULL, false },
        { "ledger_usage_interval", parse_uint, FIELD(ledger_usage_interval), 1, 86400, NULL, false },
        { "iso_quota_bytes", parse_bytes, FIELD(iso_quota_bytes), 0, 0, NULL, true },
        { "iso_max_uploads", parse_uint, FIELD(iso_max_uploads), 1, 64, NULL, false },
};

void config_init(struct config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        str_copy(cfg->state_dir, sizeof(cfg->state_dir), "/var/lib/vpsd");
        str_copy(cfg->control_socket, sizeof(cfg->control_socket), "/run/vpsd/control.sock");
        str_copy(cfg->control_group, sizeof(cfg->control_group), "vpsd");
        cfg->control_max_clients = 64;
        cfg->control_max_request = 64 * 1024;
        cfg->log_level = LOG_LEVEL_INFO;
        cfg->hypervisor = HYPERVISOR_AUTO;
        str_copy(cfg->kvm_device, sizeof(cfg->kvm_device), "/dev/kvm");
        cfg->kvm_probe_timeout = 20;
        str_copy(cfg->qemu_binary, sizeof(cfg->qemu_binary), "/usr/bin/qemu-system-x86_64");
        str_copy(cfg->qemu_img, sizeof(cfg->qemu_img), "/usr/bin/qemu-img");
        str_copy(cfg->libvirt_uri, sizeof(cfg->libvirt_uri), "qemu:///system");
        str_copy(cfg->bridge, sizeof(cfg->bridge), "vpsbr0");
        str_copy(cfg->guest_run_dir, sizeof(cfg->guest_run_dir), "/run/vpsd/guests");
        cfg->stop_timeout = 120;
        str_copy(cfg->genisoimage, sizeof(cfg->genisoimage), "/usr/bin/genisoimage");
        str_copy(cfg->nft_table, sizeof(cfg->nft_table), "vpsd");
        cfg->traffic_interval = 60;
        cfg->filter_check_interval = 60;
        cfg->ledger_usage_interval = 300;
        str_copy(cfg->console_user, sizeof(cfg->console_user), "vpsd-edge");
        cfg->console_idle_timeout = 900;
        cfg->console_max_lifetime = 4 * 3600;
        cfg->console_max_sessions = 1000;
        cfg->console_max_sessions_per_service = 4;
        cfg->console_max_failed_tickets = 10;
        cfg->console_max_connections_per_address = 64;
        cfg->iso_quota_bytes = UINT64_C(20) << 30;
        cfg->iso_max_uploads = 4;
}

int config_template_dir(const struct config *cfg, char *buf, size_t size)
{
        if (cfg->template_dir[0])
                return str_copy(buf, size, cfg->template_dir);
        if ((size_t)snprintf(buf, size, "%s/templates", cfg->state_dir) >= size) {
                if (size > 0)
                        buf[0] = '\0';
                return -ENAMETOOLONG;
        }
        return 0;
}

static const struct config_key *key_find(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
                if (strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
}

static char *trim(char *s)
{
        char *end;

        while (*s == ' ' || *s == '\t')
                s++;
        end = s + strlen(s);
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                *--end = '\0';
        return s;
}

static int parse_line(struct config *cfg, const char *name, unsigned lineno, char *line, unsigned *seen_on,
                      struct error *err)
{
        char why[256] = "";
        const struct config_key *key;
        char *eq, *k, *v;
        size_t index;
        int r;

        k = trim(line);
        if (*k == '\0' || *k == '#')
                return 0;
        eq = strchr(k, '=');
        if (!eq)
                return error_set(err, -EINVAL, "%s:%u: expected `key = value`", name, lineno);
        *eq = '\0';
        k = trim(k);
        v = trim(eq + 1);
        if (*k == '\0')
                return error_set(err, -EINVAL, "%s:%u: missing key before `=`", name, lineno);
        key = key_find(k);
        if (!key)
                return error_set(err, -EINVAL, "%s:%u: key `%.64s`: unknown key", name, lineno, k);
        index = (size_t)(key - config_keys);
        if (seen_on[index])
                return error_set(err, -EINVAL, "%s:%u: key `%s`: set twice (first on line %u)", name, lineno,
                                 key->name, seen_on[index]);
        seen_on[index] = lineno;
        r = key->parse(key, v, (char *)cfg + key->offset, why, sizeof(why));
        if (r < 0)
                return error_set(err, r, "%s:%u: key `%s`: `%.128s` %s", name, lineno, key->name, v, why);
        return 0;
}

int config_parse(struct config *cfg, const char *name, const char *text, size_t len, struct error *err)
{
        struct config next = *cfg;
        unsigned seen_on[ARRAY_SIZE(config_keys)] = { 0 };
        char line[CONFIG_MAX_LINE + 1];
        unsigned lineno = 0;
        size_t pos = 0;
        int r;

        if (len > CONFIG_MAX_FILE_SIZE)
                return error_set(err, -EFBIG, "%s: larger than %d bytes", name, CONFIG_MAX_FILE_SIZE);
        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

                lineno++;
                if (n > CONFIG_MAX_LINE)
                        return error_set(err, -EINVAL, "%s:%u: line longer than %d bytes", name, lineno,
                                         CONFIG_MAX_LINE);
                if (memchr(text + pos, '\0', n))
                        return error_set(err, -EINVAL, "%s:%u: line contains a NUL byte", name, lineno);
                memcpy(line, text + pos, n);
                line[n] = '\0';
                r = parse_line(&next, name, lineno, line, seen_on, err);
                if (r < 0)
                        return r;
                pos += n + 1;
        }
        /* A ledger needs all of its keys, or none. */
        if (next.ledger_url[0] && (!next.ledger_ca_file[0] || !next.ledger_key_file[0] || !next.ledger_node_id[0]))
                return error_set(err, -EINVAL, "%s: ledger_url needs ledger_ca_file, ledger_key_file and ledger_node_id",
                                 name);
        *cfg = next;
        return 0;
}

int config_load(struct config *cfg, const char *path, struct error *err)
{
        cleanup_close int fd = -1;
        cleanup_free char *text = NULL;
        struct stat st;
        size_t len = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return error_set_errno(err, -errno, "open `%s`", path);
        if (fstat(fd, &st) < 0)
                return error_set_errno(err, -errno, "stat `%s`", path);
        if (!S_ISREG(st.st_mode))
                return error_set(err, -EINVAL, "%s: not a regular file", path);
        if (st.st_size > CONFIG_MAX_FILE_SIZE)
                return error_set(err, -EFBIG, "%s: larger than %d bytes", path, CONFIG_MAX_FILE_SIZE);
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return error_set(err, -ENOMEM, "out of memory");
        /* Read what is there now; the size may change under us. */
        for (;;) {
                ssize_t n = read(fd, text + len, (size_t)st.st_size + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return error_set_errno(err, -errno, "read `%s`", path);
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > (size_t)st.st_size)
                        return error_set(err, -EAGAIN, "%s: changed while being read", path);
        }
        return config_parse(cfg, path, text, len, err);
}

bool config_key_reloadable(const char *name)
{
        const struct config_key *key = key_find(name);

        return key && key->reloadable;
}

void config_diff(const struct config *a, const struct config *b, void (*fn)(const char *key, void *userdata),
                 void *userdata)
{
        for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
                const struct config_key *k = &config_keys[i];
                const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
                bool is_string = k->parse == parse_path || k->parse == parse_name || k->parse == parse_uri ||
                                 k->parse == parse_listen || k->parse == parse_origins;

                /* Bytes after a string's NUL may differ and mean nothing. */
                if (is_string ? strcmp(fa, fb) != 0 : memcmp(fa, fb, k->size) != 0)
                        fn(k->name, userdata);
        }
}

const char *hypervisor_mode_name(enum hypervisor_mode mode)
{
        if ((unsigned)mode >= ARRAY_SIZE(hypervisor_names) - 1)
                return "?";
        return hypervisor_names[mode];
}
