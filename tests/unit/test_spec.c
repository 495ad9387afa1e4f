/* node/spec: a good specification parses into exactly what it says and
 * survives a round trip through spec_to_json(); every kind of bad field is
 * refused with its exact message; the validators work alone. The keys are
 * real ones made by ssh-keygen (the sk- ones wrap the same public points),
 * and their fingerprints are what `ssh-keygen -lf` printed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "node/spec.h"

#define KEY_ED25519 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinY"
#define FP_ED25519 "SHA256:5yeT8BRLJI4+9RDVwFmelsGP/KEXjmH4TXYllDkqfa8"
#define KEY_RSA2048                                                                                              \
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDuGga6+NDctGm/ZmWakpzuvw2p38yM1B3amq8MwoG5uj9G7r8AY29x7Dg7VwEFOeth" \
        "NVkpXC3CRfVEm7FAnRqLDgR5yX4usbB44J+vxIULgn35ml1lEo1jW3JB6OnGQuk5hxisyf7VRZSbLleZiq82LH2OTChY+61z/W48nDft" \
        "WGORdRTFp6UsebQdG1JeS/iqbFJynb7ClWTUMaU4NJKugmSF4tBWaZKAXaQ+o0Q/+yAWmMo4ilyGbQVpWiHtUlxqWwtKJNdi3LnJGiwb" \
        "Jjww1jw4ymEkrF0jTaY76kDlbuzhqm9dVS1AzhLzMqwt276fLNwOB63KXs2i2hXIMuYD"
#define FP_RSA2048 "SHA256:YycIrw8nQSqqRMZIDfANtESR+t5G2HBS2pbPckqUypI"
#define KEY_RSA1024                                                                                              \
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCr14pQL6leXm/7SxeH59/ET1FqRV68M4GkKDEWqICrrCFTj5hCSc8LfjPvOeZu/Yud" \
        "EpqEPs8PYWBnsENsfE02Rf59jEUTOiPzEF85STIelNXFkSlEPFvvNOH2xpcmehmg7JHoF1UZPJjC8CAiCZU6vq06zqwqey8CXw55Ms4E/w=="
#define KEY_ECDSA256                                                                                             \
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFMi0ObyfZfAxZmOZOxo+h0gbkU1EiOY" \
        "EdgUhzgQAk+RX91k5BnCqW+uvuu0mABBnnt3AgexeZfIEq180GZBqIA="
#define FP_ECDSA256 "SHA256:TZCWuai5JpGQHpG76h56sL6iZYkykaOO4uQHc2hE1AY"
#define KEY_ECDSA384                                                                                             \
        "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBE9IZtD7htA8C+urmKKv8s6Xsr92Zb+O" \
        "6ldhP/TMa1igmgZLUXxoXVKY89G26WscizioqbcTvGLk50goujqiTpO+aYwyHi70tkl6GiSyuUiY88jHjIsOCkodSXR8xW1xtw=="
#define FP_ECDSA384 "SHA256:E8JJhNAMniTw8mYPxlqG+20meGlCeYYnVWw1k2+XDnY"
#define KEY_ECDSA521                                                                                             \
        "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAHFEyHxjQDOT/DZ2zxMkkhp5xI6SpAc" \
        "0iQJR4nEda4cHQQnxyEOBGSyy46tJlm+bVrp3quhue+kB0dOLkX4Kd1JzwDYy0c/KW9VSBl15CJC+tUrjDOQN44330mDel6rPkklN7s0" \
        "vc2XBKboC144uel39chviIrVLh+a8mH1b/u5IlI1Hg=="
#define FP_ECDSA521 "SHA256:gEFysjt1ygbGEsOCs8vDIa90H9a3/8PggcQXgBOh/ZE"
#define KEY_SK_ED25519                                                                                           \
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8" \
        "MUZW/TQDNinYAAAABHNzaDo="
#define FP_SK_ED25519 "SHA256:c+EazSHHXJbvyZ6u8bY5GglABxDyGkMoBjhhDKyH2FI"
#define KEY_SK_ECDSA                                                                                             \
        "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYA" \
        "AABBBFMi0ObyfZfAxZmOZOxo+h0gbkU1EiOYEdgUhzgQAk+RX91k5BnCqW+uvuu0mABBnnt3AgexeZfIEq180GZBqIAAAAAEc3NoOg=="
#define FP_SK_ECDSA "SHA256:JmQ3JYSVue85xJU9m0mGmuc6OoeqggpODdBlSr7oi2k"
/* The ed25519 blob cut short by one byte, and with one byte too many. */
#define B64_ED25519_SHORT "AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNik="
#define B64_ED25519_LONG "AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinYAA=="
/* A blob saying "ssh-dss", and the ECDSA-256 point under the name nistp384. */
#define B64_DSS "AAAAB3NzaC1kc3MAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define B64_ECDSA_WRONG_CURVE                                                                                    \
        "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAzODQAAABBBFMi0ObyfZfAxZmOZOxo+h0gbkU1EiOYEdgUhzgQAk+RX91k5BnC" \
        "qW+uvuu0mABBnnt3AgexeZfIEq180GZBqIA="

#define UUID "1b4e28ba-2fa1-41d2-883f-0016d3cca427"

static const char good_json[] =
        "{\"uuid\": \"" UUID "\", \"account_id\": \"acct-42\", \"hostname\": \"web1.example.com\","
        " \"plan\": {\"vcpus\": 2, \"memory_mib\": 2048, \"disk_gib\": 40, \"port_speed_mbit\": 1000,"
        "            \"traffic_gib\": null},"
        " \"template\": \"debian-12\","
        " \"addresses\": ["
        "   {\"address\": \"192.0.2.11\", \"prefix\": 24, \"gateway\": \"192.0.2.1\"},"
        "   {\"family\": 6, \"address\": \"2001:DB8:0:0::11\", \"prefix\": 64, \"gateway\": \"2001:db8::1\"}],"
        " \"ssh_keys\": [\"" KEY_ED25519 " user@host\", \"  " KEY_RSA2048 "   laptop of  J. Doe  \"],"
        " \"paid_until\": 1798761600,"
        " \"root_password\": \"correct horse battery\"}";

/* The canonical form spec_to_json() gives for good_json. */
static const char good_canonical[] =
        "{\"uuid\":\"" UUID "\",\"account_id\":\"acct-42\",\"hostname\":\"web1.example.com\","
        "\"plan\":{\"vcpus\":2,\"memory_mib\":2048,\"disk_gib\":40,\"port_speed_mbit\":1000,\"traffic_gib\":null},"
        "\"template\":\"debian-12\",\"mac\":\"52:54:00:ed:5a:5f\","
        "\"addresses\":[{\"family\":4,\"address\":\"192.0.2.11\",\"prefix\":24,\"gateway\":\"192.0.2.1\"},"
        "{\"family\":6,\"address\":\"2001:db8::11\",\"prefix\":64,\"gateway\":\"2001:db8::1\"}],"
        "\"ssh_keys\":[\"" KEY_ED25519 " user@host\",\"" KEY_RSA2048 " laptop of  J. Doe\"],"
        "\"paid_until\":1798761600}";

static struct service_spec *parse_ok(const char *text)
{
        struct service_spec *spec = NULL;
        struct error err = { 0 };
        int r = spec_parse(text, strlen(text), &spec, &err);

        if (r < 0)
                fail_msg("spec_parse: %s", err.msg);
        assert_non_null(spec);
        return spec;
}

static void expect_parse_refused(const char *text, size_t len, const char *msg)
{
        struct service_spec *spec = (struct service_spec *)0x1;
        struct error err = { 0 };

        assert_int_equal(spec_parse(text, len, &spec, &err), -EINVAL);
        assert_int_equal(err.code, -EINVAL);
        assert_string_equal(err.msg, msg);
        assert_ptr_equal(spec, (struct service_spec *)0x1);
}

/* Sets (value JSON text) or deletes (value NULL) the member at a dotted
 * path; a numeric component indexes an array, one past the end appends. */
static void set_path(struct json_object *root, const char *path, const char *value)
{
        char buf[128], *save = NULL, *part, *next;
        struct json_object *cur = root, *v = NULL;

        snprintf(buf, sizeof(buf), "%s", path);
        part = strtok_r(buf, ".", &save);
        while ((next = strtok_r(NULL, ".", &save))) {
                if (json_object_is_type(cur, json_type_array))
                        cur = json_object_array_get_idx(cur, (size_t)atoi(part));
                else
                        assert_true(json_object_object_get_ex(cur, part, &cur));
                assert_non_null(cur);
                part = next;
        }
        if (value) {
                v = json_tokener_parse(value);
                if (!v && strcmp(value, "null") != 0)
                        fail_msg("bad JSON in test: %s", value);
        }
        if (json_object_is_type(cur, json_type_array)) {
                size_t i = (size_t)atoi(part);
                if (!value)
                        json_object_array_del_idx(cur, i, 1);
                else if (i == json_object_array_length(cur))
                        json_object_array_add(cur, v);
                else
                        json_object_array_put_idx(cur, i, v);
        } else if (!value) {
                json_object_object_del(cur, part);
        } else {
                json_object_object_add(cur, part, v);
        }
}

/* good_json with one change, parsed, must be refused with exactly msg. */
static void expect_changed_refused(const char *path, const char *value, const char *msg)
{
        cleanup_json struct json_object *root = json_tokener_parse(good_json);
        const char *text;

        assert_non_null(root);
        set_path(root, path, value);
        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        expect_parse_refused(text, strlen(text), msg);
}

static void expect_changed_accepted(const char *path, const char *value)
{
        cleanup_json struct json_object *root = json_tokener_parse(good_json);
        cleanup_spec struct service_spec *spec = NULL;

        assert_non_null(root);
        set_path(root, path, value);
        spec = parse_ok(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

struct bad_case {
        const char *path;
        const char *value; /* JSON text; NULL deletes */
        const char *msg;
};

static void run_cases(const struct bad_case *cases, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                print_message("  %s = %s\n", cases[i].path, cases[i].value ? cases[i].value : "(deleted)");
                expect_changed_refused(cases[i].path, cases[i].value, cases[i].msg);
        }
}

#define RUN(cases) run_cases(cases, ARRAY_SIZE(cases))

/* ------------------------------------------------------------ good */

static void test_good_spec(void **state)
{
        cleanup_spec struct service_spec *spec = parse_ok(good_json);

        (void)state;
        assert_string_equal(spec->uuid, UUID);
        assert_string_equal(spec->account_id, "acct-42");
        assert_string_equal(spec->hostname, "web1.example.com");
        assert_int_equal(spec->plan.vcpus, 2);
        assert_int_equal(spec->plan.memory_mib, 2048);
        assert_int_equal(spec->plan.disk_gib, 40);
        assert_int_equal(spec->plan.port_speed_mbit, 1000);
        assert_int_equal(spec->plan.traffic_gib, 0);
        assert_string_equal(spec->template_name, "debian-12");
        assert_string_equal(spec->mac, "52:54:00:ed:5a:5f");
        assert_true(spec->mac_derived);
        assert_int_equal(spec->n_addresses, 2);
        assert_int_equal(spec->addresses[0].family, 4);
        assert_string_equal(spec->addresses[0].address, "192.0.2.11");
        assert_memory_equal(spec->addresses[0].address_bytes, "\xc0\x00\x02\x0b", 4);
        assert_int_equal(spec->addresses[0].prefix, 24);
        assert_true(spec->addresses[0].has_gateway);
        assert_string_equal(spec->addresses[0].gateway, "192.0.2.1");
        assert_int_equal(spec->addresses[1].family, 6);
        assert_string_equal(spec->addresses[1].address, "2001:db8::11"); /* canonical */
        assert_int_equal(spec->addresses[1].prefix, 64);
        assert_string_equal(spec->addresses[1].gateway, "2001:db8::1");
        assert_int_equal(spec->n_ssh_keys, 2);
        assert_string_equal(spec->ssh_keys[0].public_key, KEY_ED25519 " user@host");
        assert_string_equal(spec->ssh_keys[0].type, "ssh-ed25519");
        assert_string_equal(spec->ssh_keys[0].fingerprint, FP_ED25519);
        /* Spaces around the fields go; those inside the comment stay. */
        assert_string_equal(spec->ssh_keys[1].public_key, KEY_RSA2048 " laptop of  J. Doe");
        assert_string_equal(spec->ssh_keys[1].fingerprint, FP_RSA2048);
        assert_int_equal(spec->paid_until, 1798761600);
        assert_true(spec->has_root_password);
        assert_string_equal(spec->root_password, "correct horse battery");
}

static void test_round_trip(void **state)
{
        cleanup_spec struct service_spec *spec = parse_ok(good_json), *again = NULL;
        cleanup_json struct json_object *o = NULL, *o2 = NULL;
        struct error err = { 0 };
        const char *text;

        (void)state;
        assert_int_equal(spec_to_json(spec, &o, &err), 0);
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        assert_string_equal(text, good_canonical);
        assert_null(strstr(text, "horse")); /* the password stays in */

        again = parse_ok(text);
        assert_false(again->mac_derived);
        assert_false(again->has_root_password);
        assert_string_equal(again->uuid, spec->uuid);
        assert_string_equal(again->account_id, spec->account_id);
        assert_string_equal(again->hostname, spec->hostname);
        assert_memory_equal(&again->plan, &spec->plan, sizeof(spec->plan));
        assert_string_equal(again->template_name, spec->template_name);
        assert_string_equal(again->mac, spec->mac);
        assert_int_equal(again->n_addresses, spec->n_addresses);
        assert_memory_equal(again->addresses, spec->addresses, spec->n_addresses * sizeof(spec->addresses[0]));
        assert_int_equal(again->n_ssh_keys, spec->n_ssh_keys);
        for (size_t i = 0; i < spec->n_ssh_keys; i++) {
                assert_string_equal(again->ssh_keys[i].public_key, spec->ssh_keys[i].public_key);
                assert_string_equal(again->ssh_keys[i].fingerprint, spec->ssh_keys[i].fingerprint);
                assert_string_equal(again->ssh_keys[i].type, spec->ssh_keys[i].type);
        }
        assert_int_equal(again->paid_until, spec->paid_until);

        /* And the canonical form is a fixed point. */
        assert_int_equal(spec_to_json(again, &o2, &err), 0);
        assert_string_equal(json_object_to_json_string_ext(o2, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), good_canonical);
}

static void test_minimal_spec(void **state)
{
        static const char text[] = "{\"uuid\": \"" UUID "\", \"account_id\": \"a\", \"hostname\": \"h\","
                                   " \"plan\": {\"vcpus\": 1, \"memory_mib\": 128, \"disk_gib\": 1,"
                                   " \"port_speed_mbit\": 1}, \"template\": \"t\"}";
        cleanup_spec struct service_spec *spec = parse_ok(text);

        (void)state;
        assert_int_equal(spec->plan.traffic_gib, 0);
        assert_int_equal(spec->n_addresses, 0);
        assert_int_equal(spec->n_ssh_keys, 0);
        assert_int_equal(spec->paid_until, -1);
        assert_false(spec->has_root_password);
        assert_string_equal(spec->mac, "52:54:00:ed:5a:5f");
}

static void test_limits_accepted(void **state)
{
        (void)state;
        expect_changed_accepted("plan", "{\"vcpus\": 64, \"memory_mib\": 1048576, \"disk_gib\": 16384,"
                                        " \"port_speed_mbit\": 100000, \"traffic_gib\": 10000000}");
        expect_changed_accepted("plan.traffic_gib", "1");
        expect_changed_accepted("plan.traffic_gib", NULL);
        expect_changed_accepted("paid_until", "0");
        expect_changed_accepted("paid_until", "253402300799");
        expect_changed_accepted("paid_until", "null");
        expect_changed_accepted("root_password", "\"12345678\"");
        expect_changed_accepted("root_password", "\" ~!@#$%^&*()_+{}|:<>?`-=[]\\\\;',./\\\"\"");
        expect_changed_accepted("hostname", "\"0web\"");
        expect_changed_accepted("hostname", "\"a-b.c-d.e\"");
        expect_changed_accepted("hostname", "\"x.y2\"");
        expect_changed_accepted("template", "\"0\"");
        expect_changed_accepted("template", "\"ubuntu-24.04_minimal\"");
        expect_changed_accepted("account_id", "\" ~ \"");
        expect_changed_accepted("addresses", "[]");
        expect_changed_accepted("addresses", "null");
        expect_changed_accepted("ssh_keys", "[]");
        expect_changed_accepted("addresses.0", "{\"address\": \"192.0.2.0\", \"prefix\": 31, \"gateway\": \"192.0.2.1\"}");
        expect_changed_accepted("addresses.0", "{\"address\": \"192.0.2.1\", \"prefix\": 31, \"gateway\": \"192.0.2.0\"}");
        expect_changed_accepted("addresses.0", "{\"address\": \"192.0.2.255\", \"prefix\": 32}");
        expect_changed_accepted("addresses.0", "{\"address\": \"10.0.0.1\", \"prefix\": 8}");
        expect_changed_accepted("addresses.1", "{\"address\": \"2001:db8::\", \"prefix\": 127, \"gateway\": \"2001:db8::1\"}");
        expect_changed_accepted("addresses.1", "{\"address\": \"2001:db8::11\", \"prefix\": 128}");
        expect_changed_accepted("addresses.1", "{\"address\": \"2001:db8::11\", \"prefix\": 16}");
        /* An IPv6 gateway may be the router's link-local address. */
        expect_changed_accepted("addresses.1.gateway", "\"fe80::1\"");
        /* More addresses: the same gateway again, or none. */
        expect_changed_accepted("addresses.2", "{\"address\": \"192.0.2.12\", \"prefix\": 24, \"gateway\": \"192.0.2.1\"}");
        expect_changed_accepted("addresses.2", "{\"address\": \"198.51.100.7\", \"prefix\": 32}");
        expect_changed_accepted("mac", "\"02:00:00:00:00:01\"");
        expect_changed_accepted("ssh_keys.0", "\"" KEY_ED25519 "\"");
}

static void test_mac(void **state)
{
        char mac[SPEC_MAC_SIZE];
        struct error err = { 0 };
        cleanup_json struct json_object *root = json_tokener_parse(good_json);
        cleanup_spec struct service_spec *spec = NULL;

        (void)state;
        /* python3: hashlib.sha256(b"<uuid>").digest()[:3] */
        assert_int_equal(spec_mac_derive(UUID, 0, mac, &err), 0);
        assert_string_equal(mac, "52:54:00:ed:5a:5f");
        assert_int_equal(spec_mac_derive(UUID, 1, mac, &err), 0);
        assert_string_equal(mac, "52:54:00:c4:f6:9d");

        assert_int_equal(spec_mac_parse("m", "52:54:00:AB:cd:EF", mac, &err), 0);
        assert_string_equal(mac, "52:54:00:ab:cd:ef");

        set_path(root, "mac", "\"52:54:00:AB:CD:01\"");
        spec = parse_ok(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        assert_string_equal(spec->mac, "52:54:00:ab:cd:01");
        assert_false(spec->mac_derived);
}

static void test_key_types(void **state)
{
        static const struct {
                const char *line, *type, *fingerprint;
        } keys[] = {
                { KEY_ED25519, "ssh-ed25519", FP_ED25519 },
                { KEY_RSA2048, "ssh-rsa", FP_RSA2048 },
                { KEY_ECDSA256, "ecdsa-sha2-nistp256", FP_ECDSA256 },
                { KEY_ECDSA384, "ecdsa-sha2-nistp384", FP_ECDSA384 },
                { KEY_ECDSA521, "ecdsa-sha2-nistp521", FP_ECDSA521 },
                { KEY_SK_ED25519 " token@host", "sk-ssh-ed25519@openssh.com", FP_SK_ED25519 },
                { KEY_SK_ECDSA, "sk-ecdsa-sha2-nistp256@openssh.com", FP_SK_ECDSA },
        };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                struct spec_ssh_key key = { 0 };
                struct error err = { 0 };

                if (spec_ssh_key_parse("k", keys[i].line, &key, &err) < 0)
                        fail_msg("%s: %s", keys[i].type, err.msg);
                assert_string_equal(key.public_key, keys[i].line);
                assert_string_equal(key.type, keys[i].type);
                assert_string_equal(key.fingerprint, keys[i].fingerprint);
                spec_ssh_key_clear(&key);
                assert_null(key.public_key);
        }
        spec_ssh_key_clear(NULL);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_text(void **state)
{
        static const char nul[] = "{\"uuid\": \0}";
        char *big;

        (void)state;
        expect_parse_refused("", 0, "JSON text ends early");
        expect_parse_refused("[1]", 3, "expected a JSON object");
        expect_parse_refused("{\"a\": 1} x", 10, "unexpected bytes after the JSON object at byte 9");
        expect_parse_refused(nul, sizeof(nul) - 1, "JSON text contains a NUL byte");
        expect_parse_refused("{\"a\": 1,}", 9, "invalid JSON at byte 8: unexpected character");

        big = malloc(SPEC_JSON_MAX + 1);
        assert_non_null(big);
        memset(big, ' ', SPEC_JSON_MAX + 1);
        big[0] = '{';
        big[SPEC_JSON_MAX] = '}';
        expect_parse_refused(big, SPEC_JSON_MAX + 1, "the specification is larger than 262144 bytes");
        free(big);
}

static void test_bad_top_level(void **state)
{
        static const struct bad_case cases[] = {
                { "state", "\"running\"", "state: unknown field" },
                { "Root_Password", "\"x\"", "Root_Password: unknown field" },
                { "a b", "1", "unknown field with an unusual name" },
                { "uuid", NULL, "uuid: missing" },
                { "uuid", "null", "uuid: missing" },
                { "uuid", "5", "uuid: must be a string" },
                { "uuid", "\"1B4E28BA-2FA1-41D2-883F-0016D3CCA427\"", "uuid: not a canonical lower-case UUID" },
                { "uuid", "\"1b4e28ba2fa141d2883f0016d3cca427\"", "uuid: not a canonical lower-case UUID" },
                { "uuid", "\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\\u0000\"", "uuid: contains a NUL character" },
                { "account_id", NULL, "account_id: missing" },
                { "account_id", "[]", "account_id: must be a string" },
                { "account_id", "\"\"", "account_id: must be 1 to 128 characters" },
                { "account_id", "\"a\\u0001b\"", "account_id: character 2 is not printable ASCII" },
                { "account_id", "\"caf\\u00e9\"", "account_id: character 4 is not printable ASCII" },
                { "account_id", "\"a\\nb\"", "account_id: character 2 is not printable ASCII" },
                { "template", NULL, "template: missing" },
                { "template", "true", "template: must be a string" },
                { "template", "\"\"", "template: must be 1 to 64 characters" },
                { "template", "\"Debian\"", "template: character 1 (`D`) is not a lower-case letter or digit" },
                { "template", "\".hidden\"", "template: character 1 (`.`) is not a lower-case letter or digit" },
                { "template", "\"debian/12\"",
                  "template: character 7 (`/`) is not a lower-case letter, digit, `.`, `_` or `-`" },
                { "template", "\"debian 12\"",
                  "template: character 7 (byte 0x20) is not a lower-case letter, digit, `.`, `_` or `-`" },
                { "mac", "5", "mac: must be a string" },
                { "mac", "\"52:54:00:12:34\"", "mac: not a MAC address like 52:54:00:12:34:56" },
                { "mac", "\"52-54-00-12-34-56\"", "mac: not a MAC address like 52:54:00:12:34:56" },
                { "mac", "\"52:54:00:12:34:5g\"", "mac: not a MAC address like 52:54:00:12:34:56" },
                { "mac", "\"52:54:00:12:34:567\"", "mac: not a MAC address like 52:54:00:12:34:56" },
                { "mac", "\"01:00:5E:00:00:01\"", "mac: 01:00:5e:00:00:01 is a multicast address" },
                { "mac", "\"ff:ff:ff:ff:ff:ff\"", "mac: ff:ff:ff:ff:ff:ff is a multicast address" },
                { "mac", "\"00:00:00:00:00:00\"", "mac: 00:00:00:00:00:00 is the all-zero address" },
                { "paid_until", "\"1798761600\"", "paid_until: must be an integer" },
                { "paid_until", "1.5", "paid_until: must be an integer" },
                { "paid_until", "-1", "paid_until: -1 is out of range 0 to 253402300799" },
                { "paid_until", "253402300800", "paid_until: 253402300800 is out of range 0 to 253402300799" },
                { "paid_until", "99999999999999999999",
                  "paid_until: 9223372036854775807 is out of range 0 to 253402300799" },
                { "root_password", "5", "root_password: must be a string" },
                { "root_password", "\"short\"", "root_password: must be 8 to 128 characters" },
                { "root_password", "\"pass\\tword\"", "root_password: character 5 is not printable ASCII" },
                { "root_password", "\"p\\u00e4ssword\"", "root_password: character 2 is not printable ASCII" },
                { "root_password", "\"password\\u0000\"", "root_password: contains a NUL character" },
        };

        (void)state;
        RUN(cases);
        expect_parse_refused("{}", 2, "uuid: missing");
}

static void test_bad_hostname(void **state)
{
        static const struct bad_case cases[] = {
                { "hostname", NULL, "hostname: missing" },
                { "hostname", "{}", "hostname: must be a string" },
                { "hostname", "\"\"", "hostname: must be 1 to 253 characters" },
                { "hostname", "\"Web1\"", "hostname: character 1 (`W`) is not a lower-case letter, digit, `-` or `.`" },
                { "hostname", "\"web_1\"", "hostname: character 4 (`_`) is not a lower-case letter, digit, `-` or `.`" },
                { "hostname", "\"web 1\"",
                  "hostname: character 4 (byte 0x20) is not a lower-case letter, digit, `-` or `.`" },
                { "hostname", "\"web1\\n\"",
                  "hostname: character 5 (byte 0x0a) is not a lower-case letter, digit, `-` or `.`" },
                { "hostname", "\"w\\u00e9b\"",
                  "hostname: character 2 (byte 0xc3) is not a lower-case letter, digit, `-` or `.`" },
                { "hostname", "\".web\"", "hostname: label 1 is empty" },
                { "hostname", "\"web.\"", "hostname: label 2 is empty" },
                { "hostname", "\"web..example\"", "hostname: label 2 is empty" },
                { "hostname", "\"-web\"", "hostname: label `-web` starts or ends with `-`" },
                { "hostname", "\"web.example-\"", "hostname: label `example-` starts or ends with `-`" },
                { "hostname", "\"-\"", "hostname: label `-` starts or ends with `-`" },
                { "hostname", "\"web.123\"", "hostname: the last label `123` is all digits" },
                { "hostname", "\"192.0.2.1\"", "hostname: the last label `1` is all digits" },
                { "hostname", "\"7\"", "hostname: the last label `7` is all digits" },
        };
        char long_label[80], long_name[300];

        (void)state;
        RUN(cases);

        memset(long_label, 'a', 64);
        strcpy(long_label + 64, "\"");
        snprintf(long_name, sizeof(long_name), "\"x.%s", long_label);
        expect_changed_refused("hostname", long_name, "hostname: label 2 is longer than 63 characters");
        long_label[63] = '"';
        long_label[64] = '\0';
        snprintf(long_name, sizeof(long_name), "\"x.%s", long_label);
        expect_changed_accepted("hostname", long_name);

        /* Labels of 63, 63, 63 and 61: 253 in all, then 254. */
        memset(long_name, 'a', 255);
        long_name[0] = '"';
        for (int i = 64; i < 256; i += 64)
                long_name[i] = '.';
        strcpy(long_name + 254, "\"");
        expect_changed_accepted("hostname", long_name);
        strcpy(long_name + 254, "b\"");
        expect_changed_refused("hostname", long_name, "hostname: must be 1 to 253 characters");
}

static void test_bad_plan(void **state)
{
        static const struct bad_case cases[] = {
                { "plan", NULL, "plan: missing" },
                { "plan", "[]", "plan: must be an object" },
                { "plan", "2", "plan: must be an object" },
                { "plan.cpus", "2", "plan.cpus: unknown field" },
                { "plan.vcpus", NULL, "plan.vcpus: missing" },
                { "plan.vcpus", "null", "plan.vcpus: missing" },
                { "plan.vcpus", "\"2\"", "plan.vcpus: must be an integer" },
                { "plan.vcpus", "2.0", "plan.vcpus: must be an integer" },
                { "plan.vcpus", "true", "plan.vcpus: must be an integer" },
                { "plan.vcpus", "0", "plan.vcpus: 0 is out of range 1 to 64" },
                { "plan.vcpus", "65", "plan.vcpus: 65 is out of range 1 to 64" },
                { "plan.vcpus", "-1", "plan.vcpus: -1 is out of range 1 to 64" },
                { "plan.vcpus", "4294967298", "plan.vcpus: 4294967298 is out of range 1 to 64" },
                { "plan.memory_mib", NULL, "plan.memory_mib: missing" },
                { "plan.memory_mib", "127", "plan.memory_mib: 127 is out of range 128 to 1048576" },
                { "plan.memory_mib", "1048577", "plan.memory_mib: 1048577 is out of range 128 to 1048576" },
                { "plan.disk_gib", NULL, "plan.disk_gib: missing" },
                { "plan.disk_gib", "0", "plan.disk_gib: 0 is out of range 1 to 16384" },
                { "plan.disk_gib", "16385", "plan.disk_gib: 16385 is out of range 1 to 16384" },
                { "plan.port_speed_mbit", NULL, "plan.port_speed_mbit: missing" },
                { "plan.port_speed_mbit", "0", "plan.port_speed_mbit: 0 is out of range 1 to 100000" },
                { "plan.port_speed_mbit", "100001", "plan.port_speed_mbit: 100001 is out of range 1 to 100000" },
                { "plan.traffic_gib", "\"unmetered\"", "plan.traffic_gib: must be an integer" },
                { "plan.traffic_gib", "0", "plan.traffic_gib: 0 is out of range 1 to 10000000 (null: unmetered)" },
                { "plan.traffic_gib", "10000001",
                  "plan.traffic_gib: 10000001 is out of range 1 to 10000000 (null: unmetered)" },
        };

        (void)state;
        RUN(cases);
}

static void test_bad_addresses(void **state)
{
        static const struct bad_case cases[] = {
                { "addresses", "{}", "addresses: must be an array" },
                { "addresses", "\"192.0.2.11/24\"", "addresses: must be an array" },
                { "addresses.0", "\"192.0.2.11\"", "addresses[0]: must be an object" },
                { "addresses.0.mask", "\"255.255.255.0\"", "addresses[0].mask: unknown field" },
                { "addresses.0.address", NULL, "addresses[0].address: missing" },
                { "addresses.0.address", "3221225995", "addresses[0].address: must be a string" },
                { "addresses.0.address", "\"192.0.2.256\"", "addresses[0].address: not an IPv4 or IPv6 address" },
                { "addresses.0.address", "\"192.0.2.011\"", "addresses[0].address: not an IPv4 or IPv6 address" },
                { "addresses.0.address", "\"192.0.2.11/24\"", "addresses[0].address: not an IPv4 or IPv6 address" },
                { "addresses.0.address", "\" 192.0.2.11\"", "addresses[0].address: not an IPv4 or IPv6 address" },
                { "addresses.0.address", "\"\"", "addresses[0].address: not an IPv4 or IPv6 address" },
                { "addresses.1.address", "\"fe80::11%eth0\"", "addresses[1].address: not an IPv4 or IPv6 address" },
                { "addresses.1.address", "\"0000:0000:0000:0000:0000:0000:0000:0000:0000\"",
                  "addresses[1].address: not an IPv4 or IPv6 address" },
                { "addresses.0.prefix", NULL, "addresses[0].prefix: missing" },
                { "addresses.0.prefix", "\"24\"", "addresses[0].prefix: must be an integer" },
                { "addresses.0.prefix", "7", "addresses[0].prefix: 7 is out of range 8 to 32 for IPv4" },
                { "addresses.0.prefix", "33", "addresses[0].prefix: 33 is out of range 8 to 32 for IPv4" },
                { "addresses.0.prefix", "-24", "addresses[0].prefix: -24 is out of range 8 to 32 for IPv4" },
                { "addresses.1.prefix", "15", "addresses[1].prefix: 15 is out of range 16 to 128 for IPv6" },
                { "addresses.1.prefix", "129", "addresses[1].prefix: 129 is out of range 16 to 128 for IPv6" },
                { "addresses.0.family", "\"4\"", "addresses[0].family: must be an integer" },
                { "addresses.0.family", "5", "addresses[0].family: must be 4 or 6" },
                { "addresses.0.family", "6", "addresses[0].family: 6 does not match 192.0.2.11" },
                { "addresses.1.family", "4", "addresses[1].family: 4 does not match 2001:db8::11" },
                /* Addresses no guest can have. */
                { "addresses.0.address", "\"0.0.0.0\"", "addresses[0].address: 0.0.0.0 is the unspecified address" },
                { "addresses.0.address", "\"0.1.2.3\"", "addresses[0].address: 0.1.2.3 is in 0.0.0.0/8 (this network)" },
                { "addresses.0.address", "\"127.0.0.1\"", "addresses[0].address: 127.0.0.1 is a loopback address" },
                { "addresses.0.address", "\"169.254.1.1\"", "addresses[0].address: 169.254.1.1 is a link-local address" },
                { "addresses.0.address", "\"224.0.0.1\"", "addresses[0].address: 224.0.0.1 is a multicast address" },
                { "addresses.0.address", "\"239.255.255.255\"",
                  "addresses[0].address: 239.255.255.255 is a multicast address" },
                { "addresses.0.address", "\"240.0.0.1\"", "addresses[0].address: 240.0.0.1 is in 240.0.0.0/4 (reserved)" },
                { "addresses.0.address", "\"255.255.255.255\"",
                  "addresses[0].address: 255.255.255.255 is in 240.0.0.0/4 (reserved)" },
                { "addresses.1.address", "\"::\"", "addresses[1].address: :: is the unspecified address" },
                { "addresses.1.address", "\"::1\"", "addresses[1].address: ::1 is a loopback address" },
                { "addresses.1.address", "\"ff02::1\"", "addresses[1].address: ff02::1 is a multicast address" },
                { "addresses.1.address", "\"fe80::11\"", "addresses[1].address: fe80::11 is a link-local address" },
                { "addresses.1.address", "\"febf::11\"", "addresses[1].address: febf::11 is a link-local address" },
                { "addresses.1.address", "\"::ffff:192.0.2.11\"",
                  "addresses[1].address: ::ffff:192.0.2.11 is an IPv4-mapped address" },
                { "addresses.0.address", "\"192.0.2.0\"", "addresses[0].address: 192.0.2.0 is the network address of 192.0.2.0/24" },
                { "addresses.0.address", "\"192.0.2.255\"",
                  "addresses[0].address: 192.0.2.255 is the broadcast address of 192.0.2.0/24" },
                { "addresses.1.address", "\"2001:db8::\"",
                  "addresses[1].address: 2001:db8:: is the subnet-router anycast address of 2001:db8::/64" },
                /* Gateways. */
                { "addresses.0.gateway", "1", "addresses[0].gateway: must be a string" },
                { "addresses.0.gateway", "\"router\"", "addresses[0].gateway: not an IPv4 or IPv6 address" },
                { "addresses.0.gateway", "\"2001:db8::1\"", "addresses[0].gateway: 2001:db8::1 is not IPv4 like 192.0.2.11" },
                { "addresses.1.gateway", "\"192.0.2.1\"", "addresses[1].gateway: 192.0.2.1 is not IPv6 like 2001:db8::11" },
                { "addresses.0.gateway", "\"198.51.100.1\"", "addresses[0].gateway: 198.51.100.1 is not inside 192.0.2.0/24" },
                { "addresses.1.gateway", "\"2001:db8:1::1\"",
                  "addresses[1].gateway: 2001:db8:1::1 is not inside 2001:db8::/64" },
                { "addresses.0.gateway", "\"192.0.2.11\"", "addresses[0].gateway: 192.0.2.11 is the address itself" },
                { "addresses.1.gateway", "\"2001:db8:0::11\"", "addresses[1].gateway: 2001:db8::11 is the address itself" },
                { "addresses.0.gateway", "\"192.0.2.0\"", "addresses[0].gateway: 192.0.2.0 is the network address of 192.0.2.0/24" },
                { "addresses.0.gateway", "\"192.0.2.255\"",
                  "addresses[0].gateway: 192.0.2.255 is the broadcast address of 192.0.2.0/24" },
                { "addresses.0.gateway", "\"127.0.0.1\"", "addresses[0].gateway: 127.0.0.1 is a loopback address" },
                { "addresses.0.gateway", "\"169.254.0.1\"", "addresses[0].gateway: 169.254.0.1 is a link-local address" },
                { "addresses.0.gateway", "\"224.0.0.1\"", "addresses[0].gateway: 224.0.0.1 is a multicast address" },
                { "addresses.1.gateway", "\"ff02::2\"", "addresses[1].gateway: ff02::2 is a multicast address" },
                { "addresses.1.gateway", "\"::\"", "addresses[1].gateway: :: is the unspecified address" },
                /* The list as a whole. */
                { "addresses.2", "{\"address\": \"192.0.2.11\", \"prefix\": 25}",
                  "addresses[2].address: 192.0.2.11 is already addresses[0]" },
                { "addresses.2", "{\"address\": \"2001:db8:0:0:0:0:0:11\", \"prefix\": 64}",
                  "addresses[2].address: 2001:db8::11 is already addresses[1]" },
                { "addresses.2", "{\"address\": \"192.0.2.12\", \"prefix\": 24, \"gateway\": \"192.0.2.254\"}",
                  "addresses[2].gateway: 192.0.2.254 is not the IPv4 gateway 192.0.2.1 of addresses[0]" },
                { "addresses.2", "{\"address\": \"2001:db8::12\", \"prefix\": 64, \"gateway\": \"fe80::1\"}",
                  "addresses[2].gateway: fe80::1 is not the IPv6 gateway 2001:db8::1 of addresses[1]" },
                { "addresses",
                  "[{\"address\": \"198.51.100.7\", \"prefix\": 32}, {\"address\": \"2001:db8::11\", \"prefix\": 64},"
                  " {\"address\": \"192.0.2.11\", \"prefix\": 24, \"gateway\": \"192.0.2.1\"}]",
                  "addresses[2].gateway: the first IPv4 address, addresses[0], has none" },
        };
        cleanup_json struct json_object *root = json_tokener_parse(good_json), *list = json_object_new_array();
        char a[64];
        const char *text;

        (void)state;
        RUN(cases);

        /* 64 addresses are fine, 65 are not. */
        for (int i = 1; i <= 65; i++) {
                snprintf(a, sizeof(a), "{\"address\": \"198.51.100.%d\", \"prefix\": 32}", i);
                json_object_array_add(list, json_tokener_parse(a));
        }
        json_object_object_add(root, "addresses", json_object_get(list));
        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        expect_parse_refused(text, strlen(text), "addresses: more than 64 addresses");
        json_object_array_del_idx(list, 64, 1);
        {
                cleanup_spec struct service_spec *spec =
                        parse_ok(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                assert_int_equal(spec->n_addresses, 64);
        }
}

/* Minimal base64 for blobs built here. */
static void b64(const uint8_t *in, size_t len, char *out)
{
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = 0;

        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                             (i + 2 < len ? in[i + 2] : 0);
                out[o++] = a[v >> 18 & 63];
                out[o++] = a[v >> 12 & 63];
                out[o++] = i + 1 < len ? a[v >> 6 & 63] : '=';
                out[o++] = i + 2 < len ? a[v & 63] : '=';
        }
        out[o] = '\0';
}

static size_t put_string(uint8_t *p, const void *s, size_t n)
{
        p[0] = (uint8_t)(n >> 24);
        p[1] = (uint8_t)(n >> 16);
        p[2] = (uint8_t)(n >> 8);
        p[3] = (uint8_t)n;
        memcpy(p + 4, s, n);
        return 4 + n;
}

/* "ssh-rsa BASE64" with e = 65537 and an n of `bits` bits (all ones). */
static char *rsa_line(unsigned bits)
{
        uint8_t blob[4200], n[2100] = { 0 };
        size_t len = 0, n_len = (bits + 8) / 8; /* a leading zero byte when bits % 8 == 0 */
        char *line = malloc(6000);

        assert_non_null(line);
        memset(n + n_len - bits / 8, 0xff, bits / 8);
        if (bits % 8)
                n[0] = (uint8_t)((1u << (bits % 8)) - 1);
        len += put_string(blob + len, "ssh-rsa", 7);
        len += put_string(blob + len, "\x01\x00\x01", 3);
        len += put_string(blob + len, n, n_len);
        strcpy(line, "ssh-rsa ");
        b64(blob, len, line + 8);
        return line;
}

static void test_bad_ssh_keys(void **state)
{
        static const struct bad_case cases[] = {
                { "ssh_keys", "{}", "ssh_keys: must be an array" },
                { "ssh_keys", "\"" KEY_ED25519 "\"", "ssh_keys: must be an array" },
                { "ssh_keys.0", "5", "ssh_keys[0]: must be a string" },
                { "ssh_keys.0", "{\"public_key\": \"" KEY_ED25519 "\"}", "ssh_keys[0]: must be a string" },
                { "ssh_keys.1", "\"" KEY_ED25519 "\\u0000\"", "ssh_keys[1]: contains a NUL character" },
                { "ssh_keys.0", "\"\"", "ssh_keys[0]: not a public key line (TYPE BASE64 [COMMENT])" },
                { "ssh_keys.0", "\"   \"", "ssh_keys[0]: not a public key line (TYPE BASE64 [COMMENT])" },
                { "ssh_keys.0", "\"ssh-ed25519\"", "ssh_keys[0]: not a public key line (TYPE BASE64 [COMMENT])" },
                { "ssh_keys.0", "\"ssh-ed25519\\tAAAA\"", "ssh_keys[0]: character 12 is not printable ASCII" },
                { "ssh_keys.0", "\"" KEY_ED25519 " a\\nssh-rsa AAAA b\"", "ssh_keys[0]: character 83 is not printable ASCII" },
                { "ssh_keys.0", "\"" KEY_ED25519 " caf\\u00e9\"", "ssh_keys[0]: character 85 is not printable ASCII" },
                { "ssh_keys.0", "\"ssh-dss AAAAB3NzaC1kc3MAAAAAAAAAAAAAAAAAAAAAAAAAAA== old\"",
                  "ssh_keys[0]: the key type `ssh-dss` is not supported" },
                { "ssh_keys.0", "\"ssh-ed25519-cert-v01@openssh.com AAAA\"",
                  "ssh_keys[0]: the key type `ssh-ed25519-cert-v01@openssh.com` is not supported" },
                { "ssh_keys.0", "\"command=\\\"sh\\\" " KEY_ED25519 "\"",
                  "ssh_keys[0]: the key type `command=\"sh\"` is not supported" },
                { "ssh_keys.0", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa AAAA\"",
                  "ssh_keys[0]: the key type is not supported" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAA!AAA\"", "ssh_keys[0]: the key data is not valid base64" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinY=\"",
                  "ssh_keys[0]: the key data is not valid base64" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinYAA\"",
                  "ssh_keys[0]: the key data is not valid base64" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinYAB==\"",
                  "ssh_keys[0]: the key data is not valid base64" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNik=\\u003d\"",
                  "ssh_keys[0]: the key data is not valid base64" },
                { "ssh_keys.0", "\"ssh-ed25519 " B64_ED25519_SHORT "\"",
                  "ssh_keys[0]: the key data is not a valid ssh-ed25519 key" },
                { "ssh_keys.0", "\"ssh-ed25519 " B64_ED25519_LONG "\"",
                  "ssh_keys[0]: the key data is not a valid ssh-ed25519 key" },
                { "ssh_keys.0", "\"ssh-ed25519 AAAA\"", "ssh_keys[0]: the key data is not a valid ssh-ed25519 key" },
                { "ssh_keys.0", "\"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAII7kRk7r26d6vrbHiCrLmSYlKDFtDjS8MUZW/TQDNinY\"",
                  "ssh_keys[0]: the key data is a ssh-ed25519 key, not ssh-rsa" },
                { "ssh_keys.0", "\"ssh-ed25519 " B64_DSS "\"", "ssh_keys[0]: the key data is not a ssh-ed25519 key" },
                { "ssh_keys.0", "\"ecdsa-sha2-nistp256 " B64_ECDSA_WRONG_CURVE "\"",
                  "ssh_keys[0]: the key data is not a valid ecdsa-sha2-nistp256 key" },
                { "ssh_keys.0", "\"" KEY_RSA1024 "\"", "ssh_keys[0]: the RSA key has 1024 bits; 2048 to 16384 are accepted" },
                { "ssh_keys.0", "\"" KEY_ED25519 " say \\\"hi\\\"\"", "ssh_keys[0]: the comment contains `\"`, which is not allowed" },
                { "ssh_keys.0", "\"" KEY_ED25519 " a\\\\b\"", "ssh_keys[0]: the comment contains `\\`, which is not allowed" },
                { "ssh_keys.1", "\"" KEY_ED25519 " same key, other comment\"", "ssh_keys[1]: the same key as ssh_keys[0]" },
                { "ssh_keys.2", "\"" KEY_SK_ED25519 "\"", NULL },
        };
        char comment[300], text[600], *line;

        (void)state;
        run_cases(cases, ARRAY_SIZE(cases) - 1);

        /* An sk- key is another key than the plain one of the same point. */
        expect_changed_accepted(cases[ARRAY_SIZE(cases) - 1].path, cases[ARRAY_SIZE(cases) - 1].value);

        memset(comment, 'c', 257);
        comment[257] = '\0';
        snprintf(text, sizeof(text), "\"" KEY_ED25519 " %s\"", comment);
        expect_changed_refused("ssh_keys.0", text, "ssh_keys[0]: the comment is longer than 256 characters");
        comment[256] = '\0';
        snprintf(text, sizeof(text), "\"" KEY_ED25519 " %s\"", comment);
        expect_changed_accepted("ssh_keys.0", text);

        /* RSA moduli at and beyond the limits (synthetic: only the size and
         * the encoding are checked). */
        line = rsa_line(2047);
        {
                struct spec_ssh_key key = { 0 };
                struct error err = { 0 };
                assert_int_equal(spec_ssh_key_parse("k", line, &key, &err), -EINVAL);
                assert_string_equal(err.msg, "k: the RSA key has 2047 bits; 2048 to 16384 are accepted");
                free(line);
                line = rsa_line(16385);
                assert_int_equal(spec_ssh_key_parse("k", line, &key, &err), -EINVAL);
                assert_string_equal(err.msg, "k: the RSA key has 16385 bits; 2048 to 16384 are accepted");
                free(line);
                line = rsa_line(16384);
                assert_int_equal(spec_ssh_key_parse("k", line, &key, &err), 0);
                spec_ssh_key_clear(&key);
                free(line);
                line = rsa_line(2048);
                assert_int_equal(spec_ssh_key_parse("k", line, &key, &err), 0);
                spec_ssh_key_clear(&key);
                /* A line over the bound is refused before it is read. */
                line = realloc(line, SPEC_SSH_KEY_TEXT_MAX + 2);
                memset(line, 'A', SPEC_SSH_KEY_TEXT_MAX + 1);
                line[SPEC_SSH_KEY_TEXT_MAX + 1] = '\0';
                assert_int_equal(spec_ssh_key_parse("k", line, &key, &err), -EINVAL);
                assert_string_equal(err.msg, "k: longer than 4096 bytes");
                free(line);
        }
}

static void test_too_many_keys(void **state)
{
        cleanup_json struct json_object *root = json_tokener_parse(good_json), *list = json_object_new_array();
        char key[400];
        const char *text;

        (void)state;
        for (int i = 0; i <= SPEC_SSH_KEYS_MAX; i++) {
                /* Same key, so the count check must come first. */
                snprintf(key, sizeof(key), "%s k%d", KEY_ED25519, i);
                json_object_array_add(list, json_object_new_string(key));
        }
        json_object_object_add(root, "ssh_keys", json_object_get(list));
        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        expect_parse_refused(text, strlen(text), "ssh_keys: more than 32 keys");
}

/* ------------------------------------------------------------ validators alone */

static void test_validators_alone(void **state)
{
        struct spec_plan plan = { 4, 4096, 80, 1000, 0 }, before;
        struct spec_address addr, addr_before;
        struct spec_ssh_key keys[SPEC_SSH_KEYS_MAX], key = { 0 };
        struct error err = { 0 };
        cleanup_json struct json_object *o = NULL, *list = NULL;
        size_t n = 99;

        (void)state;
        assert_int_equal(spec_hostname_check("params.hostname", "web2", &err), 0);
        assert_int_equal(spec_hostname_check("params.hostname", "web_2", &err), -EINVAL);
        assert_string_equal(err.msg,
                            "params.hostname: character 4 (`_`) is not a lower-case letter, digit, `-` or `.`");
        assert_int_equal(spec_template_check("params.template", "ubuntu-24.04", &err), 0);
        assert_int_equal(spec_account_id_check("a", "x", &err), 0);

        /* resize: a plan from a struct, and one from JSON. */
        assert_int_equal(spec_plan_check("params.plan", &plan, &err), 0);
        plan.memory_mib = 64;
        assert_int_equal(spec_plan_check("params.plan", &plan, &err), -EINVAL);
        assert_string_equal(err.msg, "params.plan.memory_mib: 64 is out of range 128 to 1048576");
        plan.memory_mib = 4096;
        before = plan;
        o = json_tokener_parse("{\"vcpus\": 8, \"memory_mib\": 8192, \"disk_gib\": 160, \"port_speed_mbit\": 10000,"
                               " \"traffic_gib\": 20000}");
        assert_int_equal(spec_plan_from_json("params.plan", o, &plan, &err), 0);
        assert_int_equal(plan.vcpus, 8);
        assert_int_equal(plan.traffic_gib, 20000);
        plan = before;
        json_object_object_add(o, "vcpus", json_object_new_int(100));
        assert_int_equal(spec_plan_from_json("params.plan", o, &plan, &err), -EINVAL);
        assert_string_equal(err.msg, "params.plan.vcpus: 100 is out of range 1 to 64");
        assert_memory_equal(&plan, &before, sizeof(plan)); /* untouched */

        /* reinstall: new keys, one at a time or as a list. */
        assert_int_equal(spec_ssh_key_parse("params.ssh_keys[0]", KEY_ECDSA256 " new", &key, &err), 0);
        assert_string_equal(key.fingerprint, FP_ECDSA256);
        spec_ssh_key_clear(&key);
        list = json_tokener_parse("[\"" KEY_ED25519 "\", \"" KEY_SK_ECDSA " yubikey\"]");
        assert_int_equal(spec_ssh_keys_from_json("params.ssh_keys", list, keys, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(keys[1].public_key, KEY_SK_ECDSA " yubikey");
        for (size_t i = 0; i < n; i++)
                spec_ssh_key_clear(&keys[i]);
        json_object_array_add(list, json_object_new_string("ssh-rsa AAAA"));
        n = 99;
        assert_int_equal(spec_ssh_keys_from_json("params.ssh_keys", list, keys, &n, &err), -EINVAL);
        assert_string_equal(err.msg, "params.ssh_keys[2]: the key data is not a valid ssh-rsa key");
        assert_int_equal(n, 99);

        /* An address from its parts. */
        assert_int_equal(spec_address_parse("a", "198.51.100.7", 24, "198.51.100.1", &addr, &err), 0);
        assert_string_equal(addr.gateway, "198.51.100.1");
        addr_before = addr;
        assert_int_equal(spec_address_parse("a", "198.51.100.7", 24, "192.0.2.1", &addr, &err), -EINVAL);
        assert_string_equal(err.msg, "a.gateway: 192.0.2.1 is not inside 198.51.100.0/24");
        assert_memory_equal(&addr, &addr_before, sizeof(addr));
        assert_int_equal(spec_address_parse("a", "198.51.100.7", 25, NULL, &addr, &err), 0);
        assert_false(addr.has_gateway);
        assert_string_equal(addr.gateway, "");

        assert_int_equal(spec_root_password_check("p", "12345678", &err), 0);
        assert_int_equal(spec_root_password_check("p", "1234567", &err), -EINVAL);
        assert_null(strstr(err.msg, "1234567"));

        /* NULL-safe free. */
        assert_null(spec_free(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good_spec),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_minimal_spec),
                cmocka_unit_test(test_limits_accepted),
                cmocka_unit_test(test_mac),
                cmocka_unit_test(test_key_types),
                cmocka_unit_test(test_bad_text),
                cmocka_unit_test(test_bad_top_level),
                cmocka_unit_test(test_bad_hostname),
                cmocka_unit_test(test_bad_plan),
                cmocka_unit_test(test_bad_addresses),
                cmocka_unit_test(test_bad_ssh_keys),
                cmocka_unit_test(test_too_many_keys),
                cmocka_unit_test(test_validators_alone),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
