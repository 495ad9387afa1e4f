/* The cloud-init NoCloud seed of a guest: the files `meta-data`, `user-data`
 * (#cloud-config) and `network-config` (netplan version 2) rendered from a
 * validated service_spec. The text is what both readers understand: real
 * cloud-init (22.4 as in Debian 12, and later) and the test guest's subset
 * (docs/test-guest.md). Every value from outside is written as a
 * double-quoted YAML scalar; spec validation already keeps quotes,
 * backslashes and control characters out of them, and rendering refuses
 * such characters again rather than write them.
 *
 * What the guest gets:
 * - host name: `hostname` is the first label; a dotted name is also the
 *   `fqdn` and meta-data's local-hostname.
 * - root login: with SSH keys, the keys for root (`disable_root: false`)
 *   and no password login over SSH (`ssh_pwauth: false`); without keys,
 *   `ssh_pwauth: true` and an sshd drop-in permitting root to log in with
 *   the password (Debian and Ubuntu otherwise refuse root passwords over
 *   SSH). The password hash, if given, is set for root either way
 *   (`chpasswd.users`, `type: hash`) and does not expire.
 * - network: one interface matched by the spec's MAC and named eth0, its
 *   addresses, and the primary addresses' gateways as gateway4/gateway6,
 *   no DHCP and no router advertisements (every address is
 *   static; the node's filter drops packets from anything else).
 *   Not `routes: [{to: default}]`: cloud-init 22.4's own renderers (ENI,
 *   networkd, sysconfig; netplan gets the text as is) fail on "default"
 *   and turn "::/0" into "::/64". netplan 0.104+ warns that gateway4/6 are
 *   deprecated, and applies them. */
#pragma once

#include <stddef.h>

#include "common/error.h"
#include "node/spec.h"

#define SEED_INSTANCE_ID_MAX 128
#define SEED_NAMESERVERS_MAX 3 /* what glibc's resolver reads */
#define SEED_FILE_MAX (256 * 1024)

struct seed_params {
        /* cloud-init runs its once-per-instance modules (keys, password,
         * network) when this changes: a new value for every install and
         * reinstall, e.g. "<uuid>-<install count>". [A-Za-z0-9._:-]{1,128}. */
        const char *instance_id;
        /* crypt(3) hash for root ("$6$..."), or NULL for none. Pass one when
         * the spec has no SSH keys, or nobody can log in. */
        const char *password_hash;
        /* Resolver addresses for the guest, or NULL (n_nameservers 0). */
        const char *const *nameservers;
        size_t n_nameservers;
};

struct seed_files {
        char *meta_data;
        char *user_data; /* holds the password hash: wiped by seed_files_clear() */
        char *network_config;
};

/* Renders the three files. On failure *ret_files is untouched. */
int seed_render(const struct service_spec *spec, const struct seed_params *params, struct seed_files *ret_files,
                struct error *err);

/* Wipes and frees the texts; leaves *files zeroed. Accepts NULL. */
void seed_files_clear(struct seed_files *files);

/* Renders and writes dir/meta-data, dir/user-data and dir/network-config,
 * mode 0600, each replaced atomically (written beside, then renamed), never
 * through a symlink. dir must exist. The caller makes them readable for
 * QEMU and builds the `cidata` image. */
int seed_write_dir(const char *dir, const struct service_spec *spec, const struct seed_params *params,
                   struct error *err);
