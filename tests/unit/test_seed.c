/* node/seed: the three NoCloud files of a full spec, byte for byte; the
 * variants (no key, no password, short host name, nameservers); that every
 * YAML-hostile value is refused by spec validation before it could reach a
 * seed, and that rendering refuses or escapes it should one get past; and
 * seed_write_dir()'s files, modes and symlink safety. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "node/seed.h"
#include "node/spec.h"

#define UUID "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
#define KEY_ED25519 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinY"
#define KEY_ECDSA256                                                                                             \
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFMi0ObyfZfAxZmOZOxo+h0gbkU1EiOY" \
        "EdgUhzgQAk+RX91k5BnCqW+uvuu0mABBnnt3AgexeZfIEq180GZBqIA="
#define HASH "$6$saltsaltsaltsalt$yFt3OZ1L77kfUmw7eEZm6YC6/8CKS3G45iRUWYUluvfSLcmsdcYJBTXxX3pcdOnUt4CaXJeJOoPxMOc8724/Q."

static const char full_json[] =
        "{\"uuid\": \"" UUID "\", \"account_id\": \"acct-42\", \"hostname\": \"web1.example.com\","
        " \"plan\": {\"vcpus\": 2, \"memory_mib\": 2048, \"disk_gib\": 40, \"port_speed_mbit\": 1000},"
        " \"template\": \"debian-12\", \"mac\": \"52:54:00:1B:4E:28\","
        " \"addresses\": ["
        "   {\"address\": \"192.0.2.11\", \"prefix\": 24, \"gateway\": \"192.0.2.1\"},"
        "   {\"address\": \"2001:db8::11\", \"prefix\": 64, \"gateway\": \"2001:db8::1\"},"
        "   {\"address\": \"198.51.100.7\", \"prefix\": 32},"
        "   {\"address\": \"2001:db8:1::7\", \"prefix\": 64}],"
        " \"ssh_keys\": [\"" KEY_ED25519 " user@host\", \"" KEY_ECDSA256 " it's #2: ok\"]}";

static const char full_meta_data[] = "instance-id: \"" UUID "-1\"\n"
                                     "local-hostname: \"web1.example.com\"\n";

static const char full_user_data[] = "#cloud-config\n"
                                     "hostname: \"web1\"\n"
                                     "fqdn: \"web1.example.com\"\n"
                                     "ssh_pwauth: false\n"
                                     "disable_root: false\n"
                                     "ssh_authorized_keys:\n"
                                     "  - \"" KEY_ED25519 " user@host\"\n"
                                     "  - \"" KEY_ECDSA256 " it's #2: ok\"\n"
                                     "chpasswd:\n"
                                     "  expire: false\n"
                                     "  users:\n"
                                     "    - name: root\n"
                                     "      password: \"" HASH "\"\n"
                                     "      type: hash\n";

static const char full_network_config[] = "version: 2\n"
                                          "ethernets:\n"
                                          "  eth0:\n"
                                          "    match:\n"
                                          "      macaddress: \"52:54:00:1b:4e:28\"\n"
                                          "    set-name: eth0\n"
                                          "    dhcp4: false\n"
                                          "    dhcp6: false\n"
                                          "    accept-ra: false\n"
                                          "    addresses:\n"
                                          "      - \"192.0.2.11/24\"\n"
                                          "      - \"2001:db8::11/64\"\n"
                                          "      - \"198.51.100.7/32\"\n"
                                          "      - \"2001:db8:1::7/64\"\n"
                                          "    gateway4: \"192.0.2.1\"\n"
                                          "    gateway6: \"2001:db8::1\"\n"
                                          "    nameservers:\n"
                                          "      addresses:\n"
                                          "        - \"192.0.2.53\"\n"
                                          "        - \"2001:db8::53\"\n";

static struct service_spec *parse_ok(const char *text)
{
        struct service_spec *spec = NULL;
        struct error err = { 0 };

        if (spec_parse(text, strlen(text), &spec, &err) < 0)
                fail_msg("spec_parse: %s", err.msg);
        return spec;
}

/* full_json with one member replaced (value JSON text) or removed (NULL). */
static struct service_spec *parse_changed(const char *key, const char *value, struct error *err)
{
        cleanup_json struct json_object *root = json_tokener_parse(full_json);
        struct service_spec *spec = NULL;
        const char *text;

        assert_non_null(root);
        if (value)
                json_object_object_add(root, key, json_tokener_parse(value));
        else
                json_object_object_del(root, key);
        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (spec_parse(text, strlen(text), &spec, err) < 0)
                return NULL;
        return spec;
}

static const char *const nameservers[] = { "192.0.2.53", "2001:DB8:0::53" };

static void test_full(void **state)
{
        cleanup_spec struct service_spec *spec = parse_ok(full_json);
        struct seed_params params = { UUID "-1", HASH, nameservers, 2 };
        struct seed_files files = { 0 };
        struct error err = { 0 };

        (void)state;
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        assert_string_equal(files.meta_data, full_meta_data);
        assert_string_equal(files.user_data, full_user_data);
        assert_string_equal(files.network_config, full_network_config);
        seed_files_clear(&files);
        assert_null(files.user_data);
        seed_files_clear(NULL);
}

static void test_password_only(void **state)
{
        static const char user_data[] = "#cloud-config\n"
                                        "hostname: \"web1\"\n"
                                        "ssh_pwauth: true\n"
                                        "chpasswd:\n"
                                        "  expire: false\n"
                                        "  users:\n"
                                        "    - name: root\n"
                                        "      password: \"" HASH "\"\n"
                                        "      type: hash\n"
                                        "write_files:\n"
                                        "  - path: /etc/ssh/sshd_config.d/10-vpsd-root-password.conf\n"
                                        "    permissions: \"0644\"\n"
                                        "    content: |\n"
                                        "      # From vpsd's cloud-init seed: this server was set up without an SSH\n"
                                        "      # key, so root logs in with its password.\n"
                                        "      PermitRootLogin yes\n"
                                        "      PasswordAuthentication yes\n";
        static const char network_config[] = "version: 2\n"
                                             "ethernets:\n"
                                             "  eth0:\n"
                                             "    match:\n"
                                             "      macaddress: \"52:54:00:ed:5a:5f\"\n"
                                             "    set-name: eth0\n"
                                             "    dhcp4: false\n"
                                             "    dhcp6: false\n"
                                             "    accept-ra: false\n"
                                             "    addresses:\n"
                                             "      - \"203.0.113.9/28\"\n"
                                             "    gateway4: \"203.0.113.1\"\n";
        static const char json[] =
                "{\"uuid\": \"" UUID "\", \"account_id\": \"a\", \"hostname\": \"web1\", \"template\": \"t\","
                " \"plan\": {\"vcpus\": 1, \"memory_mib\": 512, \"disk_gib\": 10, \"port_speed_mbit\": 100},"
                " \"addresses\": [{\"address\": \"203.0.113.9\", \"prefix\": 28, \"gateway\": \"203.0.113.1\"}]}";
        cleanup_spec struct service_spec *spec = parse_ok(json);
        struct seed_params params = { "iid-7", HASH, NULL, 0 };
        struct seed_files files = { 0 };
        struct error err = { 0 };

        (void)state;
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        assert_string_equal(files.meta_data, "instance-id: \"iid-7\"\nlocal-hostname: \"web1\"\n");
        assert_string_equal(files.user_data, user_data);
        assert_string_equal(files.network_config, network_config);
        seed_files_clear(&files);

        /* Neither key nor password: nothing about root at all. */
        params.password_hash = NULL;
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        assert_string_equal(files.user_data, "#cloud-config\nhostname: \"web1\"\nssh_pwauth: true\n");
        seed_files_clear(&files);
}

static void test_no_addresses_keys_only(void **state)
{
        struct error err = { 0 };
        cleanup_spec struct service_spec *spec = parse_changed("addresses", NULL, &err);
        struct seed_params params = { "i", NULL, NULL, 0 };
        struct seed_files files = { 0 };

        (void)state;
        assert_non_null(spec);
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        assert_string_equal(files.network_config, "version: 2\n"
                                                  "ethernets:\n"
                                                  "  eth0:\n"
                                                  "    match:\n"
                                                  "      macaddress: \"52:54:00:1b:4e:28\"\n"
                                                  "    set-name: eth0\n"
                                                  "    dhcp4: false\n"
                                                  "    dhcp6: false\n"
                                                  "    accept-ra: false\n");
        assert_null(strstr(files.user_data, "chpasswd"));
        assert_non_null(strstr(files.user_data, "ssh_pwauth: false\n"));
        seed_files_clear(&files);
}

/* Host names that YAML would read as something else are valid names; the
 * quotes keep them strings. */
static void test_yaml_lookalike_hostnames(void **state)
{
        static const char *const names[] = { "yes", "no", "on", "off", "true", "null", "0x1f", "1e3", "0o17",
                                             "nan", "inf", "y", "n", "0123abc" };
        struct seed_params params = { "i", NULL, NULL, 0 };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                char value[64], want[128];
                struct error err = { 0 };
                struct seed_files files = { 0 };
                cleanup_spec struct service_spec *spec = NULL;

                snprintf(value, sizeof(value), "\"%s\"", names[i]);
                spec = parse_changed("hostname", value, &err);
                if (!spec)
                        fail_msg("%s: %s", names[i], err.msg);
                assert_int_equal(seed_render(spec, &params, &files, &err), 0);
                snprintf(want, sizeof(want), "#cloud-config\nhostname: \"%s\"\nssh_pwauth: false\n", names[i]);
                assert_memory_equal(files.user_data, want, strlen(want));
                snprintf(want, sizeof(want), "instance-id: \"i\"\nlocal-hostname: \"%s\"\n", names[i]);
                assert_string_equal(files.meta_data, want);
                seed_files_clear(&files);
        }
}

/* Everything that could end a YAML scalar, start a comment, a mapping, an
 * alias, a tag, a flow collection or a new line is refused by validation
 * in every value a seed carries from the spec. */
static void test_hostile_values_refused(void **state)
{
        static const char *const hostnames[] = {
                "\"web1\\nssh_pwauth: true\"", "\"web1: x\"", "\"\\\"web1\"", "\"web1'\"", "\"web1#x\"", "\"web1 #x\"",
                "\"web1\\\\\"", "\"{web1}\"", "\"[web1]\"", "\"&web1\"", "\"*web1\"", "\"!web1\"", "\"|\"", "\">\"",
                "\"%web1\"", "\"@web1\"", "\"`web1`\"", "\"web,1\"", "\"? web1\"", "\"- web1\"", "\"web1\\r\"",
                "\"web1\\t\"", "\"web1\\u2028\"", "\"web1\\u0085\"", "\"WEB1\"", "\"web1 \"", "\"~\"", "\"---\"",
        };
        static const char *const keys[] = {
                "[\"" KEY_ED25519 " a\\\"b\"]",         "[\"" KEY_ED25519 " a\\\\b\"]",
                "[\"" KEY_ED25519 " a\\nb\"]",          "[\"" KEY_ED25519 " a\\rb\"]",
                "[\"" KEY_ED25519 " a\\tb\"]",          "[\"" KEY_ED25519 " a\\u00e9\"]",
                "[\"" KEY_ED25519 " a\\u2028b\"]",      "[\"" KEY_ED25519 "\\n- injected\"]",
                "[\"" KEY_ED25519 "\\\"\\nx: y\"]",     "[\"" KEY_ED25519 " a\\u0000b\"]",
        };
        static const char *const macs[] = { "\"52:54:00:12:34:56\\n\"", "\"52:54:00:12:34:\\\"6\"",
                                            "\"52:54:00:12:34:56 #\"" };
        static const char *const addresses[] = {
                "[{\"address\": \"192.0.2.11\\n\", \"prefix\": 24}]",
                "[{\"address\": \"192.0.2.11\\\"\", \"prefix\": 24}]",
                "[{\"address\": \"192.0.2.11\", \"prefix\": 24, \"gateway\": \"192.0.2.1 #\"}]",
        };
        struct error err = { 0 };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(hostnames); i++) {
                print_message("  hostname %s\n", hostnames[i]);
                assert_null(parse_changed("hostname", hostnames[i], &err));
                assert_int_equal(err.code, -EINVAL);
                assert_memory_equal(err.msg, "hostname: ", 10);
        }
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                print_message("  ssh_keys %s\n", keys[i]);
                assert_null(parse_changed("ssh_keys", keys[i], &err));
                assert_int_equal(err.code, -EINVAL);
                assert_memory_equal(err.msg, "ssh_keys[0]: ", 13);
        }
        for (size_t i = 0; i < ARRAY_SIZE(macs); i++) {
                assert_null(parse_changed("mac", macs[i], &err));
                assert_string_equal(err.msg, "mac: not a MAC address like 52:54:00:12:34:56");
        }
        for (size_t i = 0; i < ARRAY_SIZE(addresses); i++) {
                assert_null(parse_changed("addresses", addresses[i], &err));
                assert_memory_equal(err.msg, "addresses[0].", 13);
        }
}

/* Should a value get past validation (a spec built by hand), rendering
 * escapes quotes and backslashes and refuses control and non-ASCII bytes. */
static void test_render_defends_itself(void **state)
{
        cleanup_spec struct service_spec *spec = parse_ok(full_json);
        struct seed_params params = { "i", NULL, NULL, 0 };
        struct seed_files files = { 0 }, untouched = { 0 };
        struct error err = { 0 };
        char *saved;

        (void)state;
        strcpy(spec->hostname, "a\"b\\c");
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        assert_string_equal(files.meta_data, "instance-id: \"i\"\nlocal-hostname: \"a\\\"b\\\\c\"\n");
        seed_files_clear(&files);

        strcpy(spec->hostname, "web1\nssh_pwauth: true");
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        assert_string_equal(err.msg, "seed: a value cannot be written as YAML");
        assert_memory_equal(&files, &untouched, sizeof(files));
        strcpy(spec->hostname, "web\xc3\xa9");
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        strcpy(spec->hostname, "web1");

        saved = spec->ssh_keys[0].public_key;
        spec->ssh_keys[0].public_key = (char *)KEY_ED25519 " a\tb";
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        spec->ssh_keys[0].public_key = saved;
}

static void test_bad_params(void **state)
{
        static const char *const bad_ids[] = { "", "iid 1", "iid\n1", "iid\"", "iid#1", "i/d", "iid\u00e9" };
        static const char *const bad_hashes[] = { "", "plain", "$6$salt$ha sh", "$6$salt$hash\"", "$6$salt$hash\n",
                                                  "!locked", "$6$" };
        static const char *const bad_dns[] = { "192.0.2.300", "dns.example", "192.0.2.1\n", "" };
        static const char *const four[] = { "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4" };
        cleanup_spec struct service_spec *spec = parse_ok(full_json);
        struct seed_params params = { "i", NULL, NULL, 0 };
        struct seed_files files = { 0 };
        struct error err = { 0 };
        char long_id[SEED_INSTANCE_ID_MAX + 2];

        (void)state;
        params.instance_id = NULL;
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        assert_string_equal(err.msg, "instance-id: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
        for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
                params.instance_id = bad_ids[i];
                assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
                assert_string_equal(err.msg, "instance-id: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
        }
        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        params.instance_id = long_id;
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        long_id[SEED_INSTANCE_ID_MAX] = '\0';
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        seed_files_clear(&files);
        params.instance_id = "vpsd-" UUID "-2:x.y_z";
        assert_int_equal(seed_render(spec, &params, &files, &err), 0);
        seed_files_clear(&files);

        for (size_t i = 0; i < ARRAY_SIZE(bad_hashes); i++) {
                params.password_hash = bad_hashes[i];
                assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
                assert_string_equal(err.msg, "password hash: not a crypt(3) hash");
        }
        params.password_hash = NULL;

        for (size_t i = 0; i < ARRAY_SIZE(bad_dns); i++) {
                params.nameservers = &bad_dns[i];
                params.n_nameservers = 1;
                assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
                assert_string_equal(err.msg, "nameservers[0]: not an IPv4 or IPv6 address");
        }
        params.nameservers = four;
        params.n_nameservers = 4;
        assert_int_equal(seed_render(spec, &params, &files, &err), -EINVAL);
        assert_string_equal(err.msg, "nameservers: more than 3");
        assert_null(files.meta_data);
}

/* ------------------------------------------------------------ seed_write_dir */

static char *read_text(const char *path, mode_t *ret_mode)
{
        struct stat st;
        char *buf;
        FILE *f = fopen(path, "re");

        assert_non_null(f);
        assert_int_equal(fstat(fileno(f), &st), 0);
        *ret_mode = st.st_mode & 07777;
        buf = calloc(1, (size_t)st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
        fclose(f);
        return buf;
}

static void test_write_dir(void **state)
{
        cleanup_spec struct service_spec *spec = parse_ok(full_json);
        struct seed_params params = { UUID "-1", HASH, nameservers, 2 };
        char dir[] = "/tmp/test-seed-XXXXXX", path[128], target[128];
        struct error err = { 0 };
        mode_t mode, old_umask;
        char *text;

        (void)state;
        assert_non_null(mkdtemp(dir));
        /* A symlink planted where the temporary file goes, and one in place
         * of a seed file: neither is written through. */
        snprintf(target, sizeof(target), "%s/target", dir);
        close(open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        snprintf(path, sizeof(path), "%s/.user-data.tmp", dir);
        assert_int_equal(symlink(target, path), 0);
        snprintf(path, sizeof(path), "%s/meta-data", dir);
        assert_int_equal(symlink(target, path), 0);

        old_umask = umask(0);
        assert_int_equal(seed_write_dir(dir, spec, &params, &err), 0);
        umask(old_umask);

        snprintf(path, sizeof(path), "%s/meta-data", dir);
        text = read_text(path, &mode);
        assert_string_equal(text, full_meta_data);
        assert_int_equal(mode, 0600);
        free(text);
        snprintf(path, sizeof(path), "%s/user-data", dir);
        text = read_text(path, &mode);
        assert_string_equal(text, full_user_data);
        assert_int_equal(mode, 0600);
        free(text);
        snprintf(path, sizeof(path), "%s/network-config", dir);
        text = read_text(path, &mode);
        assert_string_equal(text, full_network_config);
        assert_int_equal(mode, 0600);
        free(text);
        text = read_text(target, &mode);
        assert_string_equal(text, "");
        free(text);
        snprintf(path, sizeof(path), "%s/.user-data.tmp", dir);
        assert_int_equal(access(path, F_OK), -1);

        /* A second write (reinstall) replaces the files. */
        params.instance_id = UUID "-2";
        assert_int_equal(seed_write_dir(dir, spec, &params, &err), 0);
        snprintf(path, sizeof(path), "%s/meta-data", dir);
        text = read_text(path, &mode);
        assert_non_null(strstr(text, UUID "-2"));
        free(text);

        for (const char *const *n = (const char *const[]){ "meta-data", "user-data", "network-config", "target", NULL };
             *n; n++) {
                snprintf(path, sizeof(path), "%s/%s", dir, *n);
                assert_int_equal(unlink(path), 0);
        }
        assert_int_equal(rmdir(dir), 0);

        assert_int_equal(seed_write_dir(dir, spec, &params, &err), -ENOENT);
        snprintf(path, sizeof(path), "seed `%s`: open: No such file or directory", dir);
        assert_string_equal(err.msg, path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_password_only),
                cmocka_unit_test(test_no_addresses_keys_only),
                cmocka_unit_test(test_yaml_lookalike_hostnames),
                cmocka_unit_test(test_hostile_values_refused),
                cmocka_unit_test(test_render_defends_itself),
                cmocka_unit_test(test_bad_params),
                cmocka_unit_test(test_write_dir),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
