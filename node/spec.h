/* The service specification as the ledger or an operator sends it: parsed
 * and validated whole before anything is created. The JSON form is
 * docs/service.md's full form with these differences on input: `ssh_keys` is
 * a list of public key lines, `root_password` may be given, `mac` may be
 * left out (then derived from the UUID), `state` and the times are not
 * part of it. Unknown fields are refused at every level.
 *
 * Every refusal is -EINVAL (or -ENOMEM) with a message that starts with the
 * field's path, e.g. "addresses[1].gateway: 198.51.100.1 is not inside
 * 192.0.2.0/24". Text from outside is quoted back only once it is known to
 * be harmless (a canonical address, a checked key type), never a password.
 *
 * The validators for single parts take the field's name for their messages,
 * so later operations reuse them alone: reinstall takes new keys (and a new
 * password), resize takes a new plan. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SPEC_JSON_MAX (256 * 1024)    /* bytes of a whole specification */
#define SPEC_UUID_SIZE 37
#define SPEC_ACCOUNT_ID_MAX 128
#define SPEC_HOSTNAME_MAX 253
#define SPEC_HOSTNAME_LABEL_MAX 63
#define SPEC_TEMPLATE_MAX 64
#define SPEC_MAC_SIZE 18              /* "52:54:00:1b:4e:28" + NUL */
#define SPEC_ADDRESSES_MAX 64
#define SPEC_ADDRESS_TEXT_SIZE 46     /* INET6_ADDRSTRLEN */
#define SPEC_SSH_KEYS_MAX 32
#define SPEC_SSH_KEY_TEXT_MAX 4096    /* a whole key line; RSA-16384 needs ~2.8 KiB */
#define SPEC_SSH_KEY_COMMENT_MAX 256
#define SPEC_SSH_KEY_TYPE_SIZE 40     /* longest: sk-ecdsa-sha2-nistp256@openssh.com */
#define SPEC_FINGERPRINT_SIZE 51      /* "SHA256:" + 43 base64 characters + NUL */
#define SPEC_ROOT_PASSWORD_MIN 8
#define SPEC_ROOT_PASSWORD_MAX 128
#define SPEC_PAID_UNTIL_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

struct spec_plan {
        uint32_t vcpus;           /* 1 .. 64 */
        uint32_t memory_mib;      /* 128 .. 1048576 */
        uint32_t disk_gib;        /* 1 .. 16384 */
        uint32_t port_speed_mbit; /* 1 .. 100000 */
        uint32_t traffic_gib;     /* 1 .. 10000000 a month; 0: unmetered (JSON null) */
};

struct spec_address {
        int family;                             /* 4 or 6 */
        char address[SPEC_ADDRESS_TEXT_SIZE];   /* canonical text (inet_ntop) */
        uint8_t address_bytes[16];              /* network order; IPv4 uses 4 */
        unsigned prefix;                        /* IPv4 8 .. 32, IPv6 16 .. 128 */
        bool has_gateway;
        char gateway[SPEC_ADDRESS_TEXT_SIZE];   /* "" when !has_gateway */
        uint8_t gateway_bytes[16];
};

struct spec_ssh_key {
        char *public_key; /* canonical "TYPE BASE64[ COMMENT]", owned */
        char type[SPEC_SSH_KEY_TYPE_SIZE];
        char fingerprint[SPEC_FINGERPRINT_SIZE]; /* as `ssh-keygen -l` prints it */
};

struct service_spec {
        char uuid[SPEC_UUID_SIZE];
        char account_id[SPEC_ACCOUNT_ID_MAX + 1];
        char hostname[SPEC_HOSTNAME_MAX + 1];
        struct spec_plan plan;
        char template_name[SPEC_TEMPLATE_MAX + 1];
        char mac[SPEC_MAC_SIZE];
        bool mac_derived; /* mac came from spec_mac_derive(uuid, 0) */
        struct spec_address addresses[SPEC_ADDRESSES_MAX];
        size_t n_addresses;
        struct spec_ssh_key ssh_keys[SPEC_SSH_KEYS_MAX];
        size_t n_ssh_keys;
        int64_t paid_until; /* -1 when not given */
        bool has_root_password;
        char root_password[SPEC_ROOT_PASSWORD_MAX + 1]; /* wiped by spec_free() */
};

/* Parses and validates a whole specification from buf[len] (at most
 * SPEC_JSON_MAX bytes, one JSON object). *ret_spec is set on success only.
 * The parsed copy of root_password is wiped; buf holds it still, and is the
 * caller's to wipe. */
int spec_parse(const char *buf, size_t len, struct service_spec **ret_spec, struct error *err);

/* The same from an already parsed JSON object (control request params). */
int spec_from_json(struct json_object *obj, struct service_spec **ret_spec, struct error *err);

/* The canonical input form: spec_from_json() of it gives the same spec,
 * with mac given (mac_derived false). The root password never goes out. */
int spec_to_json(const struct service_spec *spec, struct json_object **ret_obj, struct error *err);

/* Wipes the root password and frees everything. Accepts NULL, returns NULL. */
struct service_spec *spec_free(struct service_spec *spec);

static inline void spec_freep(struct service_spec **spec)
{
        spec_free(*spec);
}
#define cleanup_spec __attribute__((cleanup(spec_freep)))

/* ---- validators for single parts; `field` names the part in messages */

/* RFC 1123 host name: labels of lower-case letters, digits and inner
 * hyphens, 1-63 each, 253 in all, the last not all digits. */
int spec_hostname_check(const char *field, const char *hostname, struct error *err);
/* 1-128 characters of printable ASCII. */
int spec_account_id_check(const char *field, const char *account_id, struct error *err);
/* A template name: [a-z0-9][a-z0-9._-]{0,63}. */
int spec_template_check(const char *field, const char *name, struct error *err);
/* 8-128 characters of printable ASCII. The message never quotes it. */
int spec_root_password_check(const char *field, const char *password, struct error *err);
/* Every value inside its range. */
int spec_plan_check(const char *field, const struct spec_plan *plan, struct error *err);
/* A plan object {vcpus, memory_mib, disk_gib, port_speed_mbit, traffic_gib}. */
int spec_plan_from_json(const char *field, struct json_object *obj, struct spec_plan *ret_plan, struct error *err);

/* A unicast, non-zero MAC "xx:xx:xx:xx:xx:xx" (either case) into its
 * lower-case form. */
int spec_mac_parse(const char *field, const char *text, char ret_mac[SPEC_MAC_SIZE], struct error *err);
/* 52:54:00 (QEMU's prefix) and three bytes of SHA-256 over the UUID: stable
 * across restarts and reinstalls. 24 bits collide (two services in ~4100
 * share one with a chance of 40 %), so the caller checks the MAC is unused
 * on the node (services.mac is UNIQUE) and on a clash asks again with
 * attempt 1, 2, ... which hashes "UUID/attempt" instead. */
int spec_mac_derive(const char *uuid, unsigned attempt, char ret_mac[SPEC_MAC_SIZE], struct error *err);

/* One address from its parts (gateway NULL: none): family from inet_pton,
 * a usable unicast address (not loopback, multicast, unspecified,
 * link-local, IPv4-mapped, reserved), prefix within the family's range, not
 * the network, broadcast or subnet-router address of its prefix; the
 * gateway of the same family, inside the prefix (IPv6 may also use a
 * link-local gateway) and not the address itself. */
int spec_address_parse(const char *field, const char *address, int64_t prefix, const char *gateway,
                       struct spec_address *ret_address, struct error *err);
/* The same from {address, prefix, gateway?, family?}; family, when given,
 * must match the address. */
int spec_address_from_json(const char *field, struct json_object *obj, struct spec_address *ret_address,
                           struct error *err);
/* A list of at most SPEC_ADDRESSES_MAX addresses: each as above, no address
 * twice. The first address of each family is the primary and alone sets
 * the family's gateway (a guest has one default route each); another
 * address may only repeat it. */
int spec_addresses_from_json(const char *field, struct json_object *array,
                             struct spec_address ret_addresses[SPEC_ADDRESSES_MAX], size_t *ret_n,
                             struct error *err);

/* One OpenSSH public key line "TYPE BASE64 [COMMENT]", parsed: a supported
 * type (ssh-ed25519, ssh-rsa of 2048-16384 bits, ecdsa-sha2-nistp256/384/521,
 * sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com), strict
 * base64 of a blob whose structure matches the type, and a comment of
 * printable ASCII without `"` or `\` (so no YAML or authorized_keys reader
 * can misread it). Fills the canonical line and the SHA256 fingerprint;
 * release with spec_ssh_key_clear(). */
int spec_ssh_key_parse(const char *field, const char *text, struct spec_ssh_key *ret_key, struct error *err);
void spec_ssh_key_clear(struct spec_ssh_key *key);
/* A list of at most SPEC_SSH_KEYS_MAX key lines, no key twice. On success
 * the caller owns ret_keys[0 .. *ret_n - 1]. */
int spec_ssh_keys_from_json(const char *field, struct json_object *array,
                            struct spec_ssh_key ret_keys[SPEC_SSH_KEYS_MAX], size_t *ret_n, struct error *err);
