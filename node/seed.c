#include "seed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "node/secret.h"

/* A growing text that leaves no copy behind: the old block is wiped before
 * it is freed, since user-data carries the password hash. */
struct text {
        char *p;
        size_t len, size;
        int error; /* first failure, negative errno; appends stop after it */
};

static void text_append(struct text *t, const char *s, size_t n)
{
        char *bigger;
        size_t size;

        if (t->error)
                return;
        if (t->len + n + 1 > SEED_FILE_MAX) {
                t->error = -E2BIG;
                return;
        }
        if (t->len + n + 1 > t->size) {
                size = t->size ? t->size : 1024;
                while (size < t->len + n + 1)
                        size *= 2;
                bigger = malloc(size);
                if (!bigger) {
                        t->error = -ENOMEM;
                        return;
                }
                if (t->p) {
                        memcpy(bigger, t->p, t->len);
                        secret_wipe(t->p, t->size);
                        free(t->p);
                }
                t->p = bigger;
                t->size = size;
        }
        memcpy(t->p + t->len, s, n);
        t->len += n;
        t->p[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
        text_append(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(buf)) {
                if (!t->error)
                        t->error = -E2BIG;
                return;
        }
        text_append(t, buf, (size_t)n);
}

/* A double-quoted YAML scalar. Validated input has neither `"` nor `\`,
 * but they are escaped all the same; a control or non-ASCII byte is
 * refused, as its escape would mean different things to different readers. */
static void text_quoted(struct text *t, const char *s)
{
        text_puts(t, "\"");
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c < 0x20 || c > 0x7e) {
                        if (!t->error)
                                t->error = -EINVAL;
                        return;
                }
                if (c == '"' || c == '\\')
                        text_puts(t, "\\");
                text_append(t, s, 1);
        }
        text_puts(t, "\"");
}

/* "key: "value"\n" at an indent. */
static void text_field(struct text *t, const char *indent, const char *key, const char *value)
{
        text_printf(t, "%s%s: ", indent, key);
        text_quoted(t, value);
        text_puts(t, "\n");
}

static void text_item(struct text *t, const char *indent, const char *value)
{
        text_printf(t, "%s- ", indent);
        text_quoted(t, value);
        text_puts(t, "\n");
}

static char *text_steal(struct text *t)
{
        return steal_pointer(&t->p);
}

static void text_clear(struct text *t)
{
        if (t->p)
                secret_wipe(t->p, t->size);
        free(t->p);
        *t = (struct text){ 0 };
}

/* ------------------------------------------------------------ checks */

static int instance_id_check(const char *id, struct error *err)
{
        size_t n = id ? strlen(id) : 0;

        if (n == 0 || n > SEED_INSTANCE_ID_MAX || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789._:-") != n)
                return error_set(err, -EINVAL, "instance-id: must be 1 to %d characters of A-Z a-z 0-9 . _ : -",
                                 SEED_INSTANCE_ID_MAX);
        return 0;
}

/* The hash is never quoted back. */
static int password_hash_check(const char *hash, struct error *err)
{
        size_t n = strlen(hash);

        if (n < 4 || n >= 256 || hash[0] != '$' ||
            strspn(hash, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./$=,") != n)
                return error_set(err, -EINVAL, "password hash: not a crypt(3) hash");
        return 0;
}

static int nameservers_check(const struct seed_params *params, char out[][SPEC_ADDRESS_TEXT_SIZE],
                             struct error *err)
{
        uint8_t bytes[16];

        if (params->n_nameservers > SEED_NAMESERVERS_MAX)
                return error_set(err, -EINVAL, "nameservers: more than %d", SEED_NAMESERVERS_MAX);
        for (size_t i = 0; i < params->n_nameservers; i++) {
                const char *s = params->nameservers[i];
                int af = strchr(s, ':') ? AF_INET6 : AF_INET;
                if (strlen(s) >= SPEC_ADDRESS_TEXT_SIZE || inet_pton(af, s, bytes) != 1 ||
                    !inet_ntop(af, bytes, out[i], SPEC_ADDRESS_TEXT_SIZE))
                        return error_set(err, -EINVAL, "nameservers[%zu]: not an IPv4 or IPv6 address", i);
        }
        return 0;
}

/* ------------------------------------------------------------ the files */

static void render_meta_data(struct text *t, const struct service_spec *spec, const char *instance_id)
{
        text_field(t, "", "instance-id", instance_id);
        text_field(t, "", "local-hostname", spec->hostname);
}

/* Asks sshd for root password logins where cloud-init's ssh_pwauth alone
 * does not: Debian and Ubuntu default to PermitRootLogin prohibit-password,
 * and Ubuntu's 60-cloudimg-settings.conf turns password logins off before
 * cloud-init 22.4's edit of sshd_config is read. Drop-ins are read first
 * and the first value wins, so this one sorts early. */
static const char sshd_root_password[] =
        "write_files:\n"
        "  - path: /etc/ssh/sshd_config.d/10-vpsd-root-password.conf\n"
        "    permissions: \"0644\"\n"
        "    content: |\n"
        "      # From vpsd's cloud-init seed: this server was set up without an SSH\n"
        "      # key, so root logs in with its password.\n"
        "      PermitRootLogin yes\n"
        "      PasswordAuthentication yes\n";

static void render_user_data(struct text *t, const struct service_spec *spec, const char *password_hash)
{
        size_t label = strcspn(spec->hostname, ".");
        char short_name[SPEC_HOSTNAME_LABEL_MAX + 1];

        snprintf(short_name, sizeof(short_name), "%.*s", (int)label, spec->hostname);
        text_puts(t, "#cloud-config\n");
        text_field(t, "", "hostname", short_name);
        if (spec->hostname[label] == '.')
                text_field(t, "", "fqdn", spec->hostname);
        if (spec->n_ssh_keys > 0) {
                text_puts(t, "ssh_pwauth: false\n");
                text_puts(t, "disable_root: false\n");
                text_puts(t, "ssh_authorized_keys:\n");
                for (size_t i = 0; i < spec->n_ssh_keys; i++)
                        text_item(t, "  ", spec->ssh_keys[i].public_key);
        } else {
                text_puts(t, "ssh_pwauth: true\n");
        }
        if (password_hash) {
                text_puts(t, "chpasswd:\n"
                             "  expire: false\n"
                             "  users:\n"
                             "    - name: root\n");
                text_field(t, "      ", "password", password_hash);
                text_puts(t, "      type: hash\n");
                if (spec->n_ssh_keys == 0)
                        text_puts(t, sshd_root_password);
        }
}

static void render_network_config(struct text *t, const struct service_spec *spec,
                                  char nameservers[][SPEC_ADDRESS_TEXT_SIZE], size_t n_nameservers)
{
        const struct spec_address *primary[2] = { NULL, NULL };
        char cidr[SPEC_ADDRESS_TEXT_SIZE + 4];

        text_puts(t, "version: 2\n"
                     "ethernets:\n"
                     "  eth0:\n"
                     "    match:\n");
        text_field(t, "      ", "macaddress", spec->mac);
        text_puts(t, "    set-name: eth0\n"
                     "    dhcp4: false\n"
                     "    dhcp6: false\n"
                     "    accept-ra: false\n");
        if (spec->n_addresses > 0)
                text_puts(t, "    addresses:\n");
        for (size_t i = 0; i < spec->n_addresses; i++) {
                const struct spec_address *a = &spec->addresses[i];
                snprintf(cidr, sizeof(cidr), "%s/%u", a->address, a->prefix);
                text_item(t, "      ", cidr);
                if (!primary[a->family == 6])
                        primary[a->family == 6] = a;
        }
        /* Validation lets only the first address of a family set its
         * gateway, which is where cloud-init attaches gateway4/6. */
        if (primary[0] && primary[0]->has_gateway)
                text_field(t, "    ", "gateway4", primary[0]->gateway);
        if (primary[1] && primary[1]->has_gateway)
                text_field(t, "    ", "gateway6", primary[1]->gateway);
        if (n_nameservers > 0)
                text_puts(t, "    nameservers:\n"
                             "      addresses:\n");
        for (size_t i = 0; i < n_nameservers; i++)
                text_item(t, "        ", nameservers[i]);
}

int seed_render(const struct service_spec *spec, const struct seed_params *params, struct seed_files *ret_files,
                struct error *err)
{
        char nameservers[SEED_NAMESERVERS_MAX][SPEC_ADDRESS_TEXT_SIZE];
        struct text meta = { 0 }, user = { 0 }, net = { 0 };
        int r;

        r = instance_id_check(params->instance_id, err);
        if (r < 0)
                return r;
        if (params->password_hash && (r = password_hash_check(params->password_hash, err)) < 0)
                return r;
        r = nameservers_check(params, nameservers, err);
        if (r < 0)
                return r;
        render_meta_data(&meta, spec, params->instance_id);
        render_user_data(&user, spec, params->password_hash);
        render_network_config(&net, spec, nameservers, params->n_nameservers);
        r = meta.error ? meta.error : user.error ? user.error : net.error;
        if (r < 0) {
                text_clear(&meta);
                text_clear(&user);
                text_clear(&net);
                if (r == -ENOMEM)
                        return error_set(err, r, "seed: out of memory");
                return error_set(err, r, "seed: a value cannot be written as YAML");
        }
        ret_files->meta_data = text_steal(&meta);
        ret_files->user_data = text_steal(&user);
        ret_files->network_config = text_steal(&net);
        return 0;
}

static void wipe_free(char *s)
{
        if (!s)
                return;
        secret_wipe(s, strlen(s));
        free(s);
}

void seed_files_clear(struct seed_files *files)
{
        if (!files)
                return;
        wipe_free(files->meta_data);
        wipe_free(files->user_data);
        wipe_free(files->network_config);
        *files = (struct seed_files){ 0 };
}

static void seed_files_clearp(struct seed_files *files)
{
        seed_files_clear(files);
}

/* dirfd/name.tmp, then renamed over dirfd/name: a reader sees the old file
 * or the new one, never half of one. O_NOFOLLOW|O_EXCL after an unlink:
 * nothing planted in the directory redirects the write. */
static int write_file_at(int dirfd, const char *dir, const char *name, const char *content, struct error *err)
{
        char tmp[64];
        size_t len = strlen(content), done = 0;
        cleanup_close int fd = -1;

        snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
        if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
                return error_set_errno(err, -errno, "seed `%s/%s`: unlink", dir, tmp);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set_errno(err, -errno, "seed `%s/%s`: open", dir, tmp);
        /* Exactly 0600 whatever the umask; the caller opens it up for QEMU. */
        if (fchmod(fd, 0600) < 0) {
                int e = -errno;
                unlinkat(dirfd, tmp, 0);
                return error_set_errno(err, e, "seed `%s/%s`: chmod", dir, tmp);
        }
        while (done < len) {
                ssize_t n = write(fd, content + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = -errno;
                        unlinkat(dirfd, tmp, 0);
                        return error_set_errno(err, e, "seed `%s/%s`: write", dir, tmp);
                }
                done += (size_t)n;
        }
        if (fsync(fd) < 0) {
                int e = -errno;
                unlinkat(dirfd, tmp, 0);
                return error_set_errno(err, e, "seed `%s/%s`: fsync", dir, tmp);
        }
        if (renameat(dirfd, tmp, dirfd, name) < 0) {
                int e = -errno;
                unlinkat(dirfd, tmp, 0);
                return error_set_errno(err, e, "seed `%s/%s`: rename to %s", dir, tmp, name);
        }
        return 0;
}

int seed_write_dir(const char *dir, const struct service_spec *spec, const struct seed_params *params,
                   struct error *err)
{
        __attribute__((cleanup(seed_files_clearp))) struct seed_files files = { 0 };
        cleanup_close int dirfd = -1;
        int r;

        r = seed_render(spec, params, &files, err);
        if (r < 0)
                return r;
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return error_set_errno(err, -errno, "seed `%s`: open", dir);
        r = write_file_at(dirfd, dir, "meta-data", files.meta_data, err);
        if (r < 0)
                return r;
        r = write_file_at(dirfd, dir, "user-data", files.user_data, err);
        if (r < 0)
                return r;
        r = write_file_at(dirfd, dir, "network-config", files.network_config, err);
        if (r < 0)
                return r;
        if (fsync(dirfd) < 0)
                return error_set_errno(err, -errno, "seed `%s`: fsync", dir);
        return 0;
}
