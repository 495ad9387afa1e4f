#include "spec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "node/service.h"

#define PATH_SIZE 160

/* ------------------------------------------------------------ JSON access */

static void path_key(char buf[PATH_SIZE], const char *field, const char *key)
{
        snprintf(buf, PATH_SIZE, "%s%s%s", field, field[0] ? "." : "", key);
}

static void path_index(char buf[PATH_SIZE], const char *field, size_t i)
{
        snprintf(buf, PATH_SIZE, "%s[%zu]", field, i);
}

/* A field name from outside is quoted back only when it is plainly a name. */
static bool name_printable(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

static int refuse_unknown(const char *field, struct json_object *obj, const char *const *known, struct error *err)
{
        char path[PATH_SIZE];

        json_object_object_foreach(obj, key, value) {
                bool ok = false;
                (void)value;
                for (const char *const *k = known; *k; k++)
                        ok = ok || strcmp(key, *k) == 0;
                if (ok)
                        continue;
                if (!name_printable(key))
                        return error_set(err, -EINVAL, "%s%sunknown field with an unusual name", field,
                                         field[0] ? ": " : "");
                path_key(path, field, key);
                return error_set(err, -EINVAL, "%s: unknown field", path);
        }
        return 0;
}

/* Absent and null are the same: "not given". */
static int get_member(struct json_object *obj, const char *path, const char *key, bool required,
                      struct json_object **ret, struct error *err)
{
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return error_set(err, -EINVAL, "%s: missing", path);
                *ret = NULL;
                return 0;
        }
        *ret = v;
        return 0;
}

static int get_string(struct json_object *obj, const char *field, const char *key, bool required, const char **ret,
                      struct error *err)
{
        struct json_object *v;
        char path[PATH_SIZE];
        int r;

        path_key(path, field, key);
        r = get_member(obj, path, key, required, &v, err);
        if (r < 0)
                return r;
        if (!v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return error_set(err, -EINVAL, "%s: must be a string", path);
        /* A "\u0000" escape: every C reader would see a shorter string. */
        if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
                return error_set(err, -EINVAL, "%s: contains a NUL character", path);
        *ret = json_object_get_string(v);
        return 0;
}

/* Numbers json-c saturated (beyond int64) still fail every range below. */
static int get_int(struct json_object *obj, const char *field, const char *key, bool required, bool *ret_present,
                   int64_t *ret, struct error *err)
{
        struct json_object *v;
        char path[PATH_SIZE];
        int r;

        path_key(path, field, key);
        r = get_member(obj, path, key, required, &v, err);
        if (r < 0)
                return r;
        *ret_present = v != NULL;
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return error_set(err, -EINVAL, "%s: must be an integer", path);
        *ret = json_object_get_int64(v);
        return 0;
}

/* ------------------------------------------------------------ names */

static bool is_lower_or_digit(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* "`x`" for a visible character, "byte 0x0a" for anything else. */
static const char *char_describe(char c, char buf[16])
{
        unsigned char u = (unsigned char)c;

        if (u > 0x20 && u < 0x7f)
                snprintf(buf, 16, "`%c`", c);
        else
                snprintf(buf, 16, "byte 0x%02x", u);
        return buf;
}

static int printable_check(const char *field, const char *s, struct error *err)
{
        for (size_t i = 0; s[i]; i++)
                if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
                        return error_set(err, -EINVAL, "%s: character %zu is not printable ASCII", field, i + 1);
        return 0;
}

int spec_hostname_check(const char *field, const char *hostname, struct error *err)
{
        size_t n = strlen(hostname), label = 0, len;
        const char *p = hostname, *last = hostname, *dot;
        char c[16];

        if (n == 0 || n > SPEC_HOSTNAME_MAX)
                return error_set(err, -EINVAL, "%s: must be 1 to %d characters", field, SPEC_HOSTNAME_MAX);
        for (size_t i = 0; i < n; i++)
                if (!is_lower_or_digit(hostname[i]) && hostname[i] != '-' && hostname[i] != '.')
                        return error_set(err, -EINVAL, "%s: character %zu (%s) is not a lower-case letter, digit, `-` or `.`",
                                         field, i + 1, char_describe(hostname[i], c));
        /* From here the text is known harmless and may be quoted back. */
        for (;; p = dot + 1) {
                label++;
                dot = strchr(p, '.');
                len = dot ? (size_t)(dot - p) : strlen(p);
                if (len == 0)
                        return error_set(err, -EINVAL, "%s: label %zu is empty", field, label);
                if (len > SPEC_HOSTNAME_LABEL_MAX)
                        return error_set(err, -EINVAL, "%s: label %zu is longer than %d characters", field, label,
                                         SPEC_HOSTNAME_LABEL_MAX);
                if (p[0] == '-' || p[len - 1] == '-')
                        return error_set(err, -EINVAL, "%s: label `%.*s` starts or ends with `-`", field, (int)len, p);
                last = p;
                if (!dot)
                        break;
        }
        /* RFC 1123 2.1: a name must not read as a dotted-decimal address. */
        if (strspn(last, "0123456789") == strlen(last))
                return error_set(err, -EINVAL, "%s: the last label `%s` is all digits", field, last);
        return 0;
}

int spec_account_id_check(const char *field, const char *account_id, struct error *err)
{
        size_t n = strlen(account_id);

        if (n == 0 || n > SPEC_ACCOUNT_ID_MAX)
                return error_set(err, -EINVAL, "%s: must be 1 to %d characters", field, SPEC_ACCOUNT_ID_MAX);
        return printable_check(field, account_id, err);
}

int spec_template_check(const char *field, const char *name, struct error *err)
{
        size_t n = strlen(name);
        char c[16];

        if (n == 0 || n > SPEC_TEMPLATE_MAX)
                return error_set(err, -EINVAL, "%s: must be 1 to %d characters", field, SPEC_TEMPLATE_MAX);
        if (!is_lower_or_digit(name[0]))
                return error_set(err, -EINVAL, "%s: character 1 (%s) is not a lower-case letter or digit", field,
                                 char_describe(name[0], c));
        for (size_t i = 1; i < n; i++)
                if (!is_lower_or_digit(name[i]) && !strchr("._-", name[i]))
                        return error_set(err, -EINVAL, "%s: character %zu (%s) is not a lower-case letter, digit, `.`, `_` or `-`",
                                         field, i + 1, char_describe(name[i], c));
        return 0;
}

int spec_root_password_check(const char *field, const char *password, struct error *err)
{
        size_t n = strlen(password);

        if (n < SPEC_ROOT_PASSWORD_MIN || n > SPEC_ROOT_PASSWORD_MAX)
                return error_set(err, -EINVAL, "%s: must be %d to %d characters", field, SPEC_ROOT_PASSWORD_MIN,
                                 SPEC_ROOT_PASSWORD_MAX);
        return printable_check(field, password, err);
}

/* ------------------------------------------------------------ plan */

static const struct plan_field {
        const char *name;
        size_t offset;
        int64_t min, max;
        bool nullable; /* null (stored as 0) means "no limit" */
} plan_fields[] = {
        { "vcpus", offsetof(struct spec_plan, vcpus), 1, 64, false },
        { "memory_mib", offsetof(struct spec_plan, memory_mib), 128, 1048576, false },
        { "disk_gib", offsetof(struct spec_plan, disk_gib), 1, 16384, false },
        { "port_speed_mbit", offsetof(struct spec_plan, port_speed_mbit), 1, 100000, false },
        { "traffic_gib", offsetof(struct spec_plan, traffic_gib), 1, 10000000, true },
};

static int plan_range_check(const char *field, const struct plan_field *f, int64_t value, struct error *err)
{
        char path[PATH_SIZE];

        if (value >= f->min && value <= f->max)
                return 0;
        path_key(path, field, f->name);
        return error_set(err, -EINVAL, "%s: %" PRId64 " is out of range %" PRId64 " to %" PRId64 "%s", path, value,
                         f->min, f->max, f->nullable ? " (null: unmetered)" : "");
}

int spec_plan_check(const char *field, const struct spec_plan *plan, struct error *err)
{
        for (size_t i = 0; i < ARRAY_SIZE(plan_fields); i++) {
                const struct plan_field *f = &plan_fields[i];
                uint32_t v;
                int r;

                memcpy(&v, (const char *)plan + f->offset, sizeof(v));
                if (v == 0 && f->nullable)
                        continue;
                r = plan_range_check(field, f, v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int spec_plan_from_json(const char *field, struct json_object *obj, struct spec_plan *ret_plan, struct error *err)
{
        static const char *const known[] = { "vcpus", "memory_mib", "disk_gib", "port_speed_mbit", "traffic_gib", NULL };
        struct spec_plan plan = { 0 };
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return error_set(err, -EINVAL, "%s: must be an object", field);
        r = refuse_unknown(field, obj, known, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(plan_fields); i++) {
                const struct plan_field *f = &plan_fields[i];
                bool present;
                int64_t v = 0;
                uint32_t u;

                r = get_int(obj, field, f->name, !f->nullable, &present, &v, err);
                if (r < 0)
                        return r;
                if (!present)
                        continue;
                r = plan_range_check(field, f, v, err);
                if (r < 0)
                        return r;
                u = (uint32_t)v;
                memcpy((char *)&plan + f->offset, &u, sizeof(u));
        }
        *ret_plan = plan;
        return 0;
}

/* ------------------------------------------------------------ MAC */

static int sha256(const void *data, size_t len, uint8_t out[32], struct error *err)
{
        unsigned int n = 0;

        if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
                return error_set(err, -ENOMEM, "SHA-256 failed");
        return 0;
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int spec_mac_parse(const char *field, const char *text, char ret_mac[SPEC_MAC_SIZE], struct error *err)
{
        uint8_t b[6];
        char mac[SPEC_MAC_SIZE];

        if (strlen(text) != SPEC_MAC_SIZE - 1)
                return error_set(err, -EINVAL, "%s: not a MAC address like 52:54:00:12:34:56", field);
        for (int i = 0; i < 6; i++) {
                int hi = hex_value(text[3 * i]), lo = hex_value(text[3 * i + 1]);
                if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
                        return error_set(err, -EINVAL, "%s: not a MAC address like 52:54:00:12:34:56", field);
                b[i] = (uint8_t)(hi << 4 | lo);
        }
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
        if (b[0] & 1)
                return error_set(err, -EINVAL, "%s: %s is a multicast address", field, mac);
        if (!(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]))
                return error_set(err, -EINVAL, "%s: %s is the all-zero address", field, mac);
        memcpy(ret_mac, mac, sizeof(mac));
        return 0;
}

int spec_mac_derive(const char *uuid, unsigned attempt, char ret_mac[SPEC_MAC_SIZE], struct error *err)
{
        char input[64];
        uint8_t h[32];
        int n, r;

        n = attempt == 0 ? snprintf(input, sizeof(input), "%s", uuid)
                         : snprintf(input, sizeof(input), "%s/%u", uuid, attempt);
        if (n < 0 || (size_t)n >= sizeof(input))
                return error_set(err, -EINVAL, "uuid: too long to derive a MAC from");
        r = sha256(input, (size_t)n, h, err);
        if (r < 0)
                return r;
        snprintf(ret_mac, SPEC_MAC_SIZE, "52:54:00:%02x:%02x:%02x", h[0], h[1], h[2]);
        return 0;
}

/* ------------------------------------------------------------ addresses */

static int address_text_parse(const char *text, int *ret_family, uint8_t bytes[16])
{
        if (strlen(text) >= SPEC_ADDRESS_TEXT_SIZE)
                return -EINVAL;
        memset(bytes, 0, 16);
        if (inet_pton(AF_INET, text, bytes) == 1) {
                *ret_family = 4;
                return 0;
        }
        if (inet_pton(AF_INET6, text, bytes) == 1) {
                *ret_family = 6;
                return 0;
        }
        return -EINVAL;
}

static void address_text(int family, const uint8_t bytes[16], char buf[SPEC_ADDRESS_TEXT_SIZE])
{
        if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes, buf, SPEC_ADDRESS_TEXT_SIZE))
                snprintf(buf, SPEC_ADDRESS_TEXT_SIZE, "?");
}

static bool all_zero(const uint8_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

/* Why an address cannot be a guest's (or its gateway's), or NULL. */
static const char *address_unusable(int family, const uint8_t b[16], bool gateway)
{
        static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        if (family == 4) {
                if (all_zero(b, 4))
                        return "the unspecified address";
                if (b[0] == 0)
                        return "in 0.0.0.0/8 (this network)";
                if (b[0] == 127)
                        return "a loopback address";
                if (b[0] == 169 && b[1] == 254)
                        return "a link-local address";
                if (b[0] >= 224 && b[0] < 240)
                        return "a multicast address";
                if (b[0] >= 240)
                        return "in 240.0.0.0/4 (reserved)";
                return NULL;
        }
        if (all_zero(b, 16))
                return "the unspecified address";
        if (all_zero(b, 15) && b[15] == 1)
                return "a loopback address";
        if (b[0] == 0xff)
                return "a multicast address";
        /* An IPv6 gateway is often the router's link-local address. */
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80 && !gateway)
                return "a link-local address";
        if (memcmp(b, v4_mapped, sizeof(v4_mapped)) == 0)
                return "an IPv4-mapped address";
        return NULL;
}

/* The prefix's network into net[16]; whether b's host part is all zeros or
 * all ones. */
static void address_split(const uint8_t b[16], size_t len, unsigned prefix, uint8_t net[16], bool *host_zero,
                          bool *host_ones)
{
        *host_zero = *host_ones = true;
        memset(net, 0, 16);
        for (size_t i = 0; i < len; i++) {
                unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
                uint8_t mask = (uint8_t)(0xff00 >> bits);
                net[i] = b[i] & mask;
                if (b[i] & ~mask)
                        *host_zero = false;
                if ((b[i] | mask) != 0xff)
                        *host_ones = false;
        }
}

static int gateway_parse(const char *field, const struct spec_address *a, const char *gateway,
                         struct spec_address *out, struct error *err)
{
        size_t len = a->family == 4 ? 4 : 16;
        uint8_t net[16], gnet[16];
        char netstr[SPEC_ADDRESS_TEXT_SIZE], gw[SPEC_ADDRESS_TEXT_SIZE] = "";
        bool zero, ones, link_local;
        const char *why;
        int family;

        if (address_text_parse(gateway, &family, out->gateway_bytes) < 0)
                return error_set(err, -EINVAL, "%s.gateway: not an IPv4 or IPv6 address", field);
        address_text(family, out->gateway_bytes, gw);
        if (family != a->family)
                return error_set(err, -EINVAL, "%s.gateway: %s is not IPv%d like %s", field, gw, a->family, a->address);
        why = address_unusable(family, out->gateway_bytes, true);
        if (why)
                return error_set(err, -EINVAL, "%s.gateway: %s is %s", field, gw, why);
        if (memcmp(out->gateway_bytes, a->address_bytes, len) == 0)
                return error_set(err, -EINVAL, "%s.gateway: %s is the address itself", field, gw);
        address_split(a->address_bytes, len, a->prefix, net, &zero, &ones);
        address_text(family, net, netstr);
        link_local = family == 6 && out->gateway_bytes[0] == 0xfe && (out->gateway_bytes[1] & 0xc0) == 0x80;
        address_split(out->gateway_bytes, len, a->prefix, gnet, &zero, &ones);
        if (!link_local && memcmp(net, gnet, len) != 0)
                return error_set(err, -EINVAL, "%s.gateway: %s is not inside %s/%u", field, gw, netstr, a->prefix);
        if (family == 4 && a->prefix <= 30 && (zero || ones))
                return error_set(err, -EINVAL, "%s.gateway: %s is the %s address of %s/%u", field, gw,
                                 zero ? "network" : "broadcast", netstr, a->prefix);
        out->has_gateway = true;
        memcpy(out->gateway, gw, sizeof(gw));
        return 0;
}

int spec_address_parse(const char *field, const char *address, int64_t prefix, const char *gateway,
                       struct spec_address *ret_address, struct error *err)
{
        struct spec_address a = { 0 };
        unsigned min_prefix, max_prefix;
        uint8_t net[16];
        char netstr[SPEC_ADDRESS_TEXT_SIZE];
        bool zero, ones;
        const char *why;
        size_t len;
        int r;

        if (address_text_parse(address, &a.family, a.address_bytes) < 0)
                return error_set(err, -EINVAL, "%s.address: not an IPv4 or IPv6 address", field);
        address_text(a.family, a.address_bytes, a.address);
        why = address_unusable(a.family, a.address_bytes, false);
        if (why)
                return error_set(err, -EINVAL, "%s.address: %s is %s", field, a.address, why);
        /* A wider on-link prefix would put much of the Internet on the link:
         * a typo, never a plan. */
        min_prefix = a.family == 4 ? 8 : 16;
        max_prefix = a.family == 4 ? 32 : 128;
        if (prefix < min_prefix || prefix > max_prefix)
                return error_set(err, -EINVAL, "%s.prefix: %" PRId64 " is out of range %u to %u for IPv%d", field,
                                 prefix, min_prefix, max_prefix, a.family);
        a.prefix = (unsigned)prefix;
        len = a.family == 4 ? 4 : 16;
        address_split(a.address_bytes, len, a.prefix, net, &zero, &ones);
        address_text(a.family, net, netstr);
        /* /31 (RFC 3021) and /32 have neither; IPv6 has no broadcast, and
         * all-zeros is the subnet-router anycast address (RFC 4291 2.6.1). */
        if (a.family == 4 && a.prefix <= 30 && (zero || ones))
                return error_set(err, -EINVAL, "%s.address: %s is the %s address of %s/%u", field, a.address,
                                 zero ? "network" : "broadcast", netstr, a.prefix);
        if (a.family == 6 && a.prefix <= 126 && zero)
                return error_set(err, -EINVAL, "%s.address: %s is the subnet-router anycast address of %s/%u", field,
                                 a.address, netstr, a.prefix);
        if (gateway) {
                r = gateway_parse(field, &a, gateway, &a, err);
                if (r < 0)
                        return r;
        }
        *ret_address = a;
        return 0;
}

int spec_address_from_json(const char *field, struct json_object *obj, struct spec_address *ret_address,
                           struct error *err)
{
        static const char *const known[] = { "family", "address", "prefix", "gateway", NULL };
        const char *address = NULL, *gateway = NULL;
        struct spec_address a;
        int64_t prefix = 0, family = 0;
        bool present, family_present;
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return error_set(err, -EINVAL, "%s: must be an object", field);
        r = refuse_unknown(field, obj, known, err);
        if (r < 0)
                return r;
        r = get_string(obj, field, "address", true, &address, err);
        if (r < 0)
                return r;
        r = get_int(obj, field, "prefix", true, &present, &prefix, err);
        if (r < 0)
                return r;
        r = get_string(obj, field, "gateway", false, &gateway, err);
        if (r < 0)
                return r;
        r = get_int(obj, field, "family", false, &family_present, &family, err);
        if (r < 0)
                return r;
        if (family_present && family != 4 && family != 6)
                return error_set(err, -EINVAL, "%s.family: must be 4 or 6", field);
        r = spec_address_parse(field, address, prefix, gateway, &a, err);
        if (r < 0)
                return r;
        if (family_present && family != a.family)
                return error_set(err, -EINVAL, "%s.family: %" PRId64 " does not match %s", field, family, a.address);
        *ret_address = a;
        return 0;
}

int spec_addresses_from_json(const char *field, struct json_object *array,
                             struct spec_address ret_addresses[SPEC_ADDRESSES_MAX], size_t *ret_n,
                             struct error *err)
{
        struct spec_address list[SPEC_ADDRESSES_MAX];
        size_t n, primary[2] = { SIZE_MAX, SIZE_MAX };
        char path[PATH_SIZE];
        int r;

        if (!json_object_is_type(array, json_type_array))
                return error_set(err, -EINVAL, "%s: must be an array", field);
        n = json_object_array_length(array);
        if (n > SPEC_ADDRESSES_MAX)
                return error_set(err, -EINVAL, "%s: more than %d addresses", field, SPEC_ADDRESSES_MAX);
        for (size_t i = 0; i < n; i++) {
                struct spec_address *a = &list[i], *p;
                size_t *first;

                path_index(path, field, i);
                r = spec_address_from_json(path, json_object_array_get_idx(array, i), a, err);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (list[j].family == a->family && memcmp(list[j].address_bytes, a->address_bytes, 16) == 0)
                                return error_set(err, -EINVAL, "%s.address: %s is already %s[%zu]", path, a->address,
                                                 field, j);
                first = &primary[a->family == 6];
                if (*first == SIZE_MAX) {
                        *first = i;
                        continue;
                }
                /* The first address of a family carries its default route:
                 * cloud-init hangs gateway4/gateway6 on the first address,
                 * and a guest has one default route per family. Another
                 * address may only repeat that gateway. */
                p = &list[*first];
                if (a->has_gateway && !p->has_gateway)
                        return error_set(err, -EINVAL, "%s.gateway: the first IPv%d address, %s[%zu], has none", path,
                                         a->family, field, *first);
                if (a->has_gateway && memcmp(p->gateway_bytes, a->gateway_bytes, 16) != 0)
                        return error_set(err, -EINVAL, "%s.gateway: %s is not the IPv%d gateway %s of %s[%zu]", path,
                                         a->gateway, a->family, p->gateway, field, *first);
        }
        memcpy(ret_addresses, list, n * sizeof(list[0]));
        *ret_n = n;
        return 0;
}

/* ------------------------------------------------------------ SSH keys */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Strict base64: padded, no white space, unused bits zero, so that one
 * blob has exactly one text (duplicates compare as text). */
static int base64_decode(const char *s, size_t len, uint8_t *out, size_t size, size_t *ret_len)
{
        size_t n = 0, pad = 0;
        uint32_t acc = 0;

        if (len == 0 || len % 4 != 0)
                return -EINVAL;
        if (s[len - 1] == '=')
                pad = s[len - 2] == '=' ? 2 : 1;
        if (len / 4 * 3 - pad > size)
                return -E2BIG;
        for (size_t i = 0; i < len; i++) {
                const char *p = i < len - pad ? strchr(b64_alphabet, s[i]) : NULL;
                uint32_t v;

                if (i < len - pad && (!p || !s[i]))
                        return -EINVAL;
                if (i >= len - pad && s[i] != '=')
                        return -EINVAL;
                v = p ? (uint32_t)(p - b64_alphabet) : 0;
                acc = acc << 6 | v;
                if (i % 4 == 3) {
                        out[n++] = (uint8_t)(acc >> 16);
                        if (i != len - 1 || pad < 2)
                                out[n++] = (uint8_t)(acc >> 8);
                        if (i != len - 1 || pad < 1)
                                out[n++] = (uint8_t)acc;
                        if (i == len - 1 && ((pad == 2 && (acc & 0xffff)) || (pad == 1 && (acc & 0xff))))
                                return -EINVAL;
                        acc = 0;
                }
        }
        *ret_len = n;
        return 0;
}

/* Unpadded, as OpenSSH prints fingerprints. out has room for 4/3 len + 1. */
static void base64_encode_unpadded(const uint8_t *in, size_t len, char *out)
{
        size_t o = 0;

        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                             (i + 2 < len ? in[i + 2] : 0);
                out[o++] = b64_alphabet[v >> 18 & 63];
                out[o++] = b64_alphabet[v >> 12 & 63];
                if (i + 1 < len)
                        out[o++] = b64_alphabet[v >> 6 & 63];
                if (i + 2 < len)
                        out[o++] = b64_alphabet[v & 63];
        }
        out[o] = '\0';
}

/* RFC 4251 section 5 wire format. */
struct blob_reader {
        const uint8_t *p;
        size_t left;
};

static bool blob_string(struct blob_reader *r, const uint8_t **ret, size_t *ret_len)
{
        uint32_t n;

        if (r->left < 4)
                return false;
        n = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
        if (n > r->left - 4)
                return false;
        *ret = r->p + 4;
        *ret_len = n;
        r->p += 4 + n;
        r->left -= 4 + n;
        return true;
}

static bool blob_string_is(struct blob_reader *r, const char *want)
{
        const uint8_t *s;
        size_t n;

        return blob_string(r, &s, &n) && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* A positive mpint in its shortest form; its size in bits. */
static bool blob_mpint_bits(struct blob_reader *r, unsigned *ret_bits)
{
        const uint8_t *s;
        size_t n;
        unsigned bits;

        if (!blob_string(r, &s, &n) || n == 0 || (s[0] & 0x80))
                return false;
        if (s[0] == 0) {
                if (n == 1 || !(s[1] & 0x80))
                        return false;
                s++;
                n--;
        }
        for (bits = 8; bits > 0 && !(s[0] & (1u << (bits - 1))); bits--)
                ;
        *ret_bits = (unsigned)(n - 1) * 8 + bits;
        return true;
}

/* An uncompressed point of the curve's size (not checked to be on it:
 * the guest's sshd does that, and a bad point only locks its owner out). */
static bool blob_ec_point(struct blob_reader *r, const char *curve, size_t point_len)
{
        const uint8_t *s;
        size_t n;

        return blob_string_is(r, curve) && blob_string(r, &s, &n) && n == point_len && s[0] == 0x04;
}

static bool blob_sk_application(struct blob_reader *r)
{
        const uint8_t *s;
        size_t n;

        return blob_string(r, &s, &n) && n > 0 && n <= 256 && !memchr(s, '\0', n);
}

static bool blob_ed25519(struct blob_reader *r)
{
        const uint8_t *s;
        size_t n;

        return blob_string(r, &s, &n) && n == 32;
}

enum key_kind { KEY_ED25519, KEY_RSA, KEY_ECDSA, KEY_SK_ED25519, KEY_SK_ECDSA };

static const struct key_type {
        const char *name;
        enum key_kind kind;
        const char *curve;
        size_t point_len;
} key_types[] = {
        { "ssh-ed25519", KEY_ED25519, NULL, 0 },
        { "ssh-rsa", KEY_RSA, NULL, 0 },
        { "ecdsa-sha2-nistp256", KEY_ECDSA, "nistp256", 65 },
        { "ecdsa-sha2-nistp384", KEY_ECDSA, "nistp384", 97 },
        { "ecdsa-sha2-nistp521", KEY_ECDSA, "nistp521", 133 },
        { "sk-ssh-ed25519@openssh.com", KEY_SK_ED25519, NULL, 0 },
        { "sk-ecdsa-sha2-nistp256@openssh.com", KEY_SK_ECDSA, "nistp256", 65 },
};

#define RSA_BITS_MIN 2048
#define RSA_BITS_MAX 16384

/* The blob after its type string; -EINVAL with the reason. */
static int key_blob_check(const char *field, const struct key_type *t, struct blob_reader *r, struct error *err)
{
        unsigned e_bits, n_bits = 0;
        bool ok;

        switch (t->kind) {
        case KEY_ED25519:
                ok = blob_ed25519(r);
                break;
        case KEY_RSA:
                ok = blob_mpint_bits(r, &e_bits) && blob_mpint_bits(r, &n_bits);
                if (ok && (n_bits < RSA_BITS_MIN || n_bits > RSA_BITS_MAX))
                        return error_set(err, -EINVAL, "%s: the RSA key has %u bits; %d to %d are accepted", field,
                                         n_bits, RSA_BITS_MIN, RSA_BITS_MAX);
                break;
        case KEY_ECDSA:
                ok = blob_ec_point(r, t->curve, t->point_len);
                break;
        case KEY_SK_ED25519:
                ok = blob_ed25519(r) && blob_sk_application(r);
                break;
        case KEY_SK_ECDSA:
                ok = blob_ec_point(r, t->curve, t->point_len) && blob_sk_application(r);
                break;
        default:
                ok = false;
        }
        if (!ok || r->left != 0)
                return error_set(err, -EINVAL, "%s: the key data is not a valid %s key", field, t->name);
        return 0;
}

static int key_blob_parse(const char *field, const struct key_type *t, const char *b64, size_t b64_len,
                          char fingerprint[SPEC_FINGERPRINT_SIZE], struct error *err)
{
        uint8_t blob[SPEC_SSH_KEY_TEXT_MAX / 4 * 3], digest[32];
        struct blob_reader r;
        const uint8_t *type;
        size_t len, type_len;
        int ret;

        if (base64_decode(b64, b64_len, blob, sizeof(blob), &len) < 0)
                return error_set(err, -EINVAL, "%s: the key data is not valid base64", field);
        r = (struct blob_reader){ blob, len };
        if (!blob_string(&r, &type, &type_len))
                return error_set(err, -EINVAL, "%s: the key data is not a valid %s key", field, t->name);
        if (type_len != strlen(t->name) || memcmp(type, t->name, type_len) != 0) {
                for (const struct key_type *k = key_types; k < key_types + ARRAY_SIZE(key_types); k++)
                        if (type_len == strlen(k->name) && memcmp(type, k->name, type_len) == 0)
                                return error_set(err, -EINVAL, "%s: the key data is a %s key, not %s", field,
                                                 k->name, t->name);
                return error_set(err, -EINVAL, "%s: the key data is not a %s key", field, t->name);
        }
        ret = key_blob_check(field, t, &r, err);
        if (ret < 0)
                return ret;
        ret = sha256(blob, len, digest, err);
        if (ret < 0)
                return ret;
        memcpy(fingerprint, "SHA256:", 7);
        base64_encode_unpadded(digest, sizeof(digest), fingerprint + 7);
        return 0;
}

int spec_ssh_key_parse(const char *field, const char *text, struct spec_ssh_key *ret_key, struct error *err)
{
        const char *type, *b64, *comment, *end;
        size_t type_len, b64_len, comment_len;
        const struct key_type *t = NULL;
        struct spec_ssh_key key = { 0 };
        int r;

        if (strlen(text) > SPEC_SSH_KEY_TEXT_MAX)
                return error_set(err, -EINVAL, "%s: longer than %d bytes", field, SPEC_SSH_KEY_TEXT_MAX);
        r = printable_check(field, text, err);
        if (r < 0)
                return r;
        /* TYPE BASE64 [COMMENT]: spaces between, the comment may have some. */
        type = text + strspn(text, " ");
        type_len = strcspn(type, " ");
        b64 = type + type_len + strspn(type + type_len, " ");
        b64_len = strcspn(b64, " ");
        comment = b64 + b64_len + strspn(b64 + b64_len, " ");
        end = comment + strlen(comment);
        while (end > comment && end[-1] == ' ')
                end--;
        comment_len = (size_t)(end - comment);
        if (type_len == 0 || b64_len == 0)
                return error_set(err, -EINVAL, "%s: not a public key line (TYPE BASE64 [COMMENT])", field);
        for (size_t i = 0; i < ARRAY_SIZE(key_types); i++)
                if (type_len == strlen(key_types[i].name) && memcmp(type, key_types[i].name, type_len) == 0)
                        t = &key_types[i];
        if (!t) {
                if (type_len > SPEC_SSH_KEY_TYPE_SIZE)
                        return error_set(err, -EINVAL, "%s: the key type is not supported", field);
                return error_set(err, -EINVAL, "%s: the key type `%.*s` is not supported", field, (int)type_len, type);
        }
        r = key_blob_parse(field, t, b64, b64_len, key.fingerprint, err);
        if (r < 0)
                return r;
        if (comment_len > SPEC_SSH_KEY_COMMENT_MAX)
                return error_set(err, -EINVAL, "%s: the comment is longer than %d characters", field,
                                 SPEC_SSH_KEY_COMMENT_MAX);
        for (size_t i = 0; i < comment_len; i++)
                if (comment[i] == '"' || comment[i] == '\\')
                        return error_set(err, -EINVAL, "%s: the comment contains `%c`, which is not allowed", field,
                                         comment[i]);
        if (asprintf(&key.public_key, "%s %.*s%s%.*s", t->name, (int)b64_len, b64, comment_len ? " " : "",
                     (int)comment_len, comment) < 0)
                return error_set(err, -ENOMEM, "%s: out of memory", field);
        snprintf(key.type, sizeof(key.type), "%s", t->name);
        *ret_key = key;
        return 0;
}

void spec_ssh_key_clear(struct spec_ssh_key *key)
{
        if (!key)
                return;
        free(key->public_key);
        *key = (struct spec_ssh_key){ 0 };
}

int spec_ssh_keys_from_json(const char *field, struct json_object *array,
                            struct spec_ssh_key ret_keys[SPEC_SSH_KEYS_MAX], size_t *ret_n, struct error *err)
{
        struct spec_ssh_key keys[SPEC_SSH_KEYS_MAX] = { 0 };
        char path[PATH_SIZE];
        size_t n;
        int r = 0;

        if (!json_object_is_type(array, json_type_array))
                return error_set(err, -EINVAL, "%s: must be an array", field);
        n = json_object_array_length(array);
        if (n > SPEC_SSH_KEYS_MAX)
                return error_set(err, -EINVAL, "%s: more than %d keys", field, SPEC_SSH_KEYS_MAX);
        for (size_t i = 0; i < n && r == 0; i++) {
                struct json_object *v = json_object_array_get_idx(array, i);

                path_index(path, field, i);
                if (!json_object_is_type(v, json_type_string))
                        r = error_set(err, -EINVAL, "%s: must be a string", path);
                else if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
                        r = error_set(err, -EINVAL, "%s: contains a NUL character", path);
                else
                        r = spec_ssh_key_parse(path, json_object_get_string(v), &keys[i], err);
                for (size_t j = 0; j < i && r == 0; j++)
                        if (strcmp(keys[j].fingerprint, keys[i].fingerprint) == 0)
                                r = error_set(err, -EINVAL, "%s: the same key as %s[%zu]", path, field, j);
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        spec_ssh_key_clear(&keys[i]);
                return r;
        }
        memcpy(ret_keys, keys, n * sizeof(keys[0]));
        *ret_n = n;
        return 0;
}

/* ------------------------------------------------------------ the whole */

struct service_spec *spec_free(struct service_spec *spec)
{
        if (!spec)
                return NULL;
        for (size_t i = 0; i < spec->n_ssh_keys; i++)
                spec_ssh_key_clear(&spec->ssh_keys[i]);
        explicit_bzero(spec, sizeof(*spec));
        free(spec);
        return NULL;
}

/* Copies a string that was checked to fit. */
static void copy_checked(char *dst, size_t size, const char *src)
{
        size_t n = strlen(src);

        if (n >= size)
                n = size - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static int spec_fill_names(struct json_object *obj, struct service_spec *s, struct error *err)
{
        const char *v = NULL;
        int r;

        r = get_string(obj, "", "uuid", true, &v, err);
        if (r < 0)
                return r;
        if (!uuid_valid(v))
                return error_set(err, -EINVAL, "uuid: not a canonical lower-case UUID");
        copy_checked(s->uuid, sizeof(s->uuid), v);

        r = get_string(obj, "", "account_id", true, &v, err);
        if (r < 0 || (r = spec_account_id_check("account_id", v, err)) < 0)
                return r;
        copy_checked(s->account_id, sizeof(s->account_id), v);

        r = get_string(obj, "", "hostname", true, &v, err);
        if (r < 0 || (r = spec_hostname_check("hostname", v, err)) < 0)
                return r;
        copy_checked(s->hostname, sizeof(s->hostname), v);
        return 0;
}

static int spec_fill(struct json_object *obj, struct service_spec *s, struct error *err)
{
        static const char *const known[] = { "uuid",  "account_id", "hostname",   "plan",          "template", "mac",
                                             "addresses", "ssh_keys", "paid_until", "root_password", NULL };
        struct json_object *v = NULL;
        const char *str = NULL;
        bool present;
        int r;

        r = refuse_unknown("", obj, known, err);
        if (r < 0 || (r = spec_fill_names(obj, s, err)) < 0)
                return r;

        r = get_member(obj, "plan", "plan", true, &v, err);
        if (r < 0 || (r = spec_plan_from_json("plan", v, &s->plan, err)) < 0)
                return r;

        r = get_string(obj, "", "template", true, &str, err);
        if (r < 0 || (r = spec_template_check("template", str, err)) < 0)
                return r;
        copy_checked(s->template_name, sizeof(s->template_name), str);

        r = get_string(obj, "", "mac", false, &str, err);
        if (r < 0)
                return r;
        s->mac_derived = !str;
        r = str ? spec_mac_parse("mac", str, s->mac, err) : spec_mac_derive(s->uuid, 0, s->mac, err);
        if (r < 0)
                return r;

        r = get_member(obj, "addresses", "addresses", false, &v, err);
        if (r < 0 || (v && (r = spec_addresses_from_json("addresses", v, s->addresses, &s->n_addresses, err)) < 0))
                return r;

        r = get_member(obj, "ssh_keys", "ssh_keys", false, &v, err);
        if (r < 0 || (v && (r = spec_ssh_keys_from_json("ssh_keys", v, s->ssh_keys, &s->n_ssh_keys, err)) < 0))
                return r;

        s->paid_until = -1;
        r = get_int(obj, "", "paid_until", false, &present, &s->paid_until, err);
        if (r < 0)
                return r;
        if (present && (s->paid_until < 0 || s->paid_until > SPEC_PAID_UNTIL_MAX))
                return error_set(err, -EINVAL, "paid_until: %" PRId64 " is out of range 0 to %" PRId64, s->paid_until,
                                 SPEC_PAID_UNTIL_MAX);

        r = get_string(obj, "", "root_password", false, &str, err);
        if (r < 0 || (str && (r = spec_root_password_check("root_password", str, err)) < 0))
                return r;
        if (str) {
                copy_checked(s->root_password, sizeof(s->root_password), str);
                s->has_root_password = true;
        }
        return 0;
}

int spec_from_json(struct json_object *obj, struct service_spec **ret_spec, struct error *err)
{
        struct service_spec *s;
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return error_set(err, -EINVAL, "the specification must be a JSON object");
        s = calloc(1, sizeof(*s));
        if (!s)
                return error_set(err, -ENOMEM, "out of memory");
        r = spec_fill(obj, s, err);
        if (r < 0) {
                spec_free(s);
                return r;
        }
        *ret_spec = s;
        return 0;
}

/* The parsed copy of the password is ours to wipe; buf is the caller's. */
static void password_wipe(struct json_object *obj)
{
        struct json_object *v;

        if (json_object_object_get_ex(obj, "root_password", &v) && json_object_is_type(v, json_type_string))
                explicit_bzero((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

int spec_parse(const char *buf, size_t len, struct service_spec **ret_spec, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        int r;

        if (len > SPEC_JSON_MAX)
                return error_set(err, -EINVAL, "the specification is larger than %d bytes", SPEC_JSON_MAX);
        r = json_parse_object(buf, len, &obj, err);
        if (r < 0)
                return r;
        r = spec_from_json(obj, ret_spec, err);
        password_wipe(obj);
        return r;
}

int spec_to_json(const struct service_spec *spec, struct json_object **ret_obj, struct error *err)
{
        cleanup_json struct json_object *o = json_object_new_object();
        struct json_object *plan, *list;

        if (!o)
                return error_set(err, -ENOMEM, "out of memory");
        json_object_object_add(o, "uuid", json_object_new_string(spec->uuid));
        json_object_object_add(o, "account_id", json_object_new_string(spec->account_id));
        json_object_object_add(o, "hostname", json_object_new_string(spec->hostname));
        plan = json_object_new_object();
        json_object_object_add(plan, "vcpus", json_object_new_int64(spec->plan.vcpus));
        json_object_object_add(plan, "memory_mib", json_object_new_int64(spec->plan.memory_mib));
        json_object_object_add(plan, "disk_gib", json_object_new_int64(spec->plan.disk_gib));
        json_object_object_add(plan, "port_speed_mbit", json_object_new_int64(spec->plan.port_speed_mbit));
        json_object_object_add(plan, "traffic_gib",
                               spec->plan.traffic_gib ? json_object_new_int64(spec->plan.traffic_gib) : NULL);
        json_object_object_add(o, "plan", plan);
        json_object_object_add(o, "template", json_object_new_string(spec->template_name));
        json_object_object_add(o, "mac", json_object_new_string(spec->mac));
        list = json_object_new_array();
        for (size_t i = 0; i < spec->n_addresses; i++) {
                const struct spec_address *a = &spec->addresses[i];
                struct json_object *ao = json_object_new_object();
                json_object_object_add(ao, "family", json_object_new_int(a->family));
                json_object_object_add(ao, "address", json_object_new_string(a->address));
                json_object_object_add(ao, "prefix", json_object_new_int((int)a->prefix));
                json_object_object_add(ao, "gateway", a->has_gateway ? json_object_new_string(a->gateway) : NULL);
                json_object_array_add(list, ao);
        }
        json_object_object_add(o, "addresses", list);
        list = json_object_new_array();
        for (size_t i = 0; i < spec->n_ssh_keys; i++)
                json_object_array_add(list, json_object_new_string(spec->ssh_keys[i].public_key));
        json_object_object_add(o, "ssh_keys", list);
        json_object_object_add(o, "paid_until", spec->paid_until >= 0 ? json_object_new_int64(spec->paid_until) : NULL);
        *ret_obj = steal_pointer(&o);
        return 0;
}
