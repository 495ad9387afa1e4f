/* The messages of docs/sync-protocol.md as one table: each kind lists its
 * fields, and one reader and one writer walk the table, so that a field
 * is checked the same way whichever side builds or receives it. */
#include "sync_private.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64url.h"
#include "common/json.h"
#include "common/util.h"
#include "sync_canon.h"

enum field_type {
        F_TEXT,      /* char array */
        F_INT,       /* int64_t within min..max */
        F_BOOL,
        F_BYTES,     /* 32 bytes as base64url */
        F_JSON,      /* char * holding a canonical JSON object */
        F_SSH_KEYS,
        F_BUCKETS,
        F_INVENTORY,
};

enum text_check {
        C_UUID,      /* lower-case canonical UUID */
        C_NODE_ID,   /* [a-z0-9._-] */
        C_NAME,      /* [A-Za-z0-9._-]: template names */
        C_ISO,       /* [a-z0-9-] */
        C_HEX,       /* 64 lower-case hex digits: a SHA-256 */
        C_PRINTABLE, /* printable ASCII */
        C_TEXT,      /* UTF-8 without control characters */
        C_ENUM,      /* one of values */
};

struct field {
        const char *name;
        enum field_type type;
        bool required;
        size_t offset, size;
        enum text_check check;
        const char *const *values;
        int64_t min, max;
};

#define MEMBER_SIZE(m) sizeof(((struct sync_msg *)0)->m)
#define TEXT(n, m, req, chk, vals) { n, F_TEXT, req, offsetof(struct sync_msg, m), MEMBER_SIZE(m), chk, vals, 0, 0 }
#define INT(n, m, lo, hi) { n, F_INT, true, offsetof(struct sync_msg, m), 0, 0, NULL, lo, hi }
/* Optional: absent on the wire when 0, so its range starts at 1. */
#define INT_OPT(n, m, hi) { n, F_INT, false, offsetof(struct sync_msg, m), 0, 0, NULL, 1, hi }
#define BOOL(n, m) { n, F_BOOL, true, offsetof(struct sync_msg, m), 0, 0, NULL, 0, 0 }
#define BYTES(n, m) { n, F_BYTES, true, offsetof(struct sync_msg, m), MEMBER_SIZE(m), 0, NULL, 0, 0 }
#define OTHER(n, type, m) { n, type, true, offsetof(struct sync_msg, m), 0, 0, NULL, 0, 0 }
#define SERVICE TEXT("service", service, true, C_UUID, NULL)
#define END { NULL, 0, false, 0, 0, 0, NULL, 0, 0 }

static const char *const suspend_reasons[] = { "unpaid", "abuse", "operator", NULL };
static const char *const power_actions[] = { "start", "stop", "restart", "force-off", NULL };
static const char *const service_states[] = { "provisioning", "running", "stopped", "suspended",
                                              "removal-queued", "terminated", NULL };
static const char *const iso_states[] = { "uploaded", "approved", "rejected", "mounted", "ejected", "deleted",
                                          NULL };
static const char *const ack_results[] = { "applied", "failed", NULL };
static const char *const error_codes[] = { "oversized", "malformed", "unsupported-version", "unauthenticated",
                                           "bad-mac", "replayed", "out-of-order", NULL };
static const char *const command_names[] = { "provision", "renew", "suspend", "unsuspend", "terminate",
                                              "power", "reinstall", "resize", "transfer", "set-policy",
                                              "iso-approve", "iso-reject", "iso-mount", "iso-eject", "iso-delete", NULL };

enum sender { BY_NODE = 1, BY_LEDGER = 2, BY_BOTH = 3 };

struct kind_def {
        const char *name;
        enum sender sender;
        struct field fields[8];
};

static const struct kind_def kinds[SYNC_KIND_COUNT] = {
        [SYNC_HELLO] = { "hello", BY_NODE, { TEXT("node", node, true, C_NODE_ID, NULL), BYTES("nonce", nonce), END } },
        [SYNC_CHALLENGE] = { "challenge", BY_LEDGER, { BYTES("nonce", nonce), BYTES("proof", proof), END } },
        [SYNC_AUTH] = { "auth", BY_NODE,
                        { BYTES("proof", proof), INT("last_command_seq", last_command_seq, 0, SYNC_INT_MAX), END } },
        [SYNC_WELCOME] = { "welcome", BY_LEDGER, { INT("last_event_seq", last_event_seq, 0, SYNC_INT_MAX), END } },
        [SYNC_ERROR] = { "error", BY_BOTH,
                         { TEXT("code", code, true, C_ENUM, error_codes), TEXT("reason", reason, true, C_TEXT, NULL),
                           END } },
        [SYNC_COMMAND_ACK] = { "command-ack", BY_NODE,
                               { INT("seq", seq, 1, SYNC_INT_MAX), TEXT("result", result, true, C_ENUM, ack_results),
                                 TEXT("error", error, false, C_TEXT, NULL), END } },
        [SYNC_EVENT_ACK] = { "event-ack", BY_LEDGER, { INT("seq", seq, 1, SYNC_INT_MAX), END } },

        [SYNC_PROVISION] = { "provision", BY_LEDGER, { SERVICE, OTHER("spec", F_JSON, spec), END } },
        [SYNC_RENEW] = { "renew", BY_LEDGER, { SERVICE, INT("paid_until", paid_until, 0, SYNC_TIME_MAX), END } },
        [SYNC_SUSPEND] = { "suspend", BY_LEDGER,
                           { SERVICE, TEXT("reason", reason, true, C_ENUM, suspend_reasons), END } },
        [SYNC_UNSUSPEND] = { "unsuspend", BY_LEDGER, { SERVICE, END } },
        [SYNC_TERMINATE] = { "terminate", BY_LEDGER, { SERVICE, END } },
        [SYNC_POWER] = { "power", BY_LEDGER, { SERVICE, TEXT("action", action, true, C_ENUM, power_actions), END } },
        [SYNC_REINSTALL] = { "reinstall", BY_LEDGER,
                             { SERVICE, TEXT("template", template_name, true, C_NAME, NULL),
                               OTHER("ssh_keys", F_SSH_KEYS, ssh_keys),
                               TEXT("root_password", root_password, false, C_PRINTABLE, NULL), END } },
        [SYNC_RESIZE] = { "resize", BY_LEDGER,
                          { SERVICE, OTHER("plan", F_JSON, plan), BOOL("confirm_disk_shrink", confirm_disk_shrink),
                            END } },
        [SYNC_TRANSFER] = { "transfer", BY_LEDGER,
                            { SERVICE, TEXT("account_id", account_id, true, C_PRINTABLE, NULL), END } },
        [SYNC_SET_POLICY] = { "set-policy", BY_LEDGER,
                              { INT("grace_seconds", grace_seconds, 0, SYNC_POLICY_SECONDS_MAX),
                                INT("retention_seconds", retention_seconds, 0, SYNC_POLICY_SECONDS_MAX),
                                BOOL("autonomous_removal", autonomous_removal),
                                INT_OPT("iso_quota_bytes", iso_quota_bytes, SYNC_INT_MAX), END } },
        [SYNC_ISO_APPROVE] = { "iso-approve", BY_LEDGER,
                               { TEXT("iso", iso, true, C_ISO, NULL),
                                 TEXT("account_id", account_id, true, C_PRINTABLE, NULL), END } },
        [SYNC_ISO_REJECT] = { "iso-reject", BY_LEDGER,
                              { TEXT("iso", iso, true, C_ISO, NULL), TEXT("reason", reason, false, C_TEXT, NULL),
                                END } },
        [SYNC_ISO_MOUNT] = { "iso-mount", BY_LEDGER, { SERVICE, TEXT("iso", iso, true, C_ISO, NULL), END } },
        [SYNC_ISO_EJECT] = { "iso-eject", BY_LEDGER, { SERVICE, END } },
        [SYNC_ISO_DELETE] = { "iso-delete", BY_LEDGER, { TEXT("iso", iso, true, C_ISO, NULL), END } },

        [SYNC_STATE] = { "state", BY_NODE,
                         { SERVICE, TEXT("state", state, true, C_ENUM, service_states),
                           TEXT("reason", reason, false, C_TEXT, NULL), END } },
        [SYNC_RESULT] = { "result", BY_NODE,
                          { INT("command_seq", command_seq, 1, SYNC_INT_MAX),
                            TEXT("op", op, true, C_ENUM, command_names),
                            TEXT("service", service, false, C_UUID, NULL), BOOL("ok", ok),
                            TEXT("error", error, false, C_TEXT, NULL),
                            TEXT("root_password", root_password, false, C_PRINTABLE, NULL), END } },
        [SYNC_USAGE] = { "usage", BY_NODE, { SERVICE, OTHER("buckets", F_BUCKETS, buckets), END } },
        [SYNC_REMOVAL_QUEUED] = { "removal-queued", BY_NODE,
                                  { SERVICE, INT("remove_after", remove_after, 0, SYNC_TIME_MAX), END } },
        [SYNC_INVENTORY] = { "inventory", BY_NODE, { OTHER("services", F_INVENTORY, services), END } },
        [SYNC_ISO] = { "iso", BY_NODE,
                       { TEXT("iso", iso, true, C_ISO, NULL), TEXT("account_id", account_id, true, C_PRINTABLE, NULL),
                         TEXT("state", state, true, C_ENUM, iso_states), INT_OPT("size", size, SYNC_INT_MAX),
                         TEXT("sha256", sha256, false, C_HEX, NULL), TEXT("service", service, false, C_UUID, NULL),
                         TEXT("label", label, false, C_TEXT, NULL), END } },
};

/* Commands and events carry these besides their own fields. */
static const struct field seq_field = INT("seq", seq, 1, SYNC_INT_MAX);
static const struct field at_field = INT("at", at, 0, SYNC_TIME_MAX);
static const struct field n_field = INT("n", n, 1, SYNC_INT_MAX);

const char *sync_kind_name(enum sync_kind kind)
{
        return (unsigned)kind < SYNC_KIND_COUNT ? kinds[kind].name : "unknown";
}

int sync_kind_parse(const char *name, enum sync_kind *ret_kind)
{
        for (unsigned k = 0; k < SYNC_KIND_COUNT; k++)
                if (strcmp(kinds[k].name, name) == 0) {
                        *ret_kind = (enum sync_kind)k;
                        return 0;
                }
        return -EINVAL;
}

bool sync_kind_is_command(enum sync_kind kind) { return kind >= SYNC_PROVISION && kind <= SYNC_ISO_DELETE; }
bool sync_kind_is_event(enum sync_kind kind) { return kind >= SYNC_STATE && kind <= SYNC_ISO; }

bool sync_kind_sent_by(enum sync_kind kind, enum sync_role role)
{
        return (unsigned)kind < SYNC_KIND_COUNT &&
               (kinds[kind].sender & (role == SYNC_ROLE_NODE ? BY_NODE : BY_LEDGER));
}

void sync_msg_clear(struct sync_msg *msg)
{
        if (!msg)
                return;
        free(msg->spec);
        free(msg->plan);
        for (size_t i = 0; i < msg->n_ssh_keys; i++)
                free(msg->ssh_keys[i]);
        free(msg->ssh_keys);
        free(msg->buckets);
        free(msg->services);
        memset(msg, 0, sizeof(*msg));
}

struct sync_msg *sync_msg_free(struct sync_msg *msg)
{
        sync_msg_clear(msg);
        free(msg);
        return NULL;
}

static bool text_ok(const char *s, size_t len, enum text_check check, const char *const *values)
{
        switch (check) {
        case C_UUID:
                return len == 36 && uuid_valid(s);
        case C_NODE_ID:
                return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == len;
        case C_NAME:
                return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
        case C_ISO:
                return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
        case C_HEX:
                return len == 64 && strspn(s, "0123456789abcdef") == len;
        case C_PRINTABLE:
                for (size_t i = 0; i < len; i++)
                        if (s[i] < 0x20 || s[i] > 0x7e)
                                return false;
                return true;
        case C_TEXT:
                for (size_t i = 0; i < len; i++)
                        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                                return false;
                return sync_utf8_valid(s, len);
        case C_ENUM:
                for (; *values; values++)
                        if (strcmp(*values, s) == 0)
                                return true;
                return false;
        }
        return false;
}

static int get_text(struct json_object *obj, const char *key, bool required, size_t max, enum text_check check,
                    const char *const *values, char *out, struct error *err)
{
        const char *s = NULL;
        size_t len;
        int r = json_get_string(obj, key, required, &s, err);

        if (r < 0 || !s)
                return r;
        len = strlen(s);
        if (len == 0 || len > max)
                return error_set(err, -EINVAL, "field `%s` must have 1 to %zu characters", key, max);
        if (!text_ok(s, len, check, values))
                return error_set(err, -EINVAL, "field `%s` has a value that is not allowed", key);
        if (out)
                memcpy(out, s, len + 1);
        return 0;
}

static int get_int(struct json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                   struct error *err)
{
        int64_t v = 0;
        int r = json_get_int64(obj, key, true, &v, err);

        if (r < 0)
                return r;
        if (v < min || v > max)
                return error_set(err, -ERANGE, "field `%s` must be from %lld to %lld", key, (long long)min,
                                 (long long)max);
        *out = v;
        return 0;
}

/* Every key of obj is one of names[n]. */
static int check_keys(struct json_object *obj, const char *const *names, size_t n, struct error *err)
{
        json_object_object_foreach(obj, key, val) {
                bool known = false;

                (void)val;
                for (size_t i = 0; i < n && !known; i++)
                        known = strcmp(names[i], key) == 0;
                if (!known)
                        return error_set(err, -EINVAL, "unknown field `%.64s`", key);
        }
        return 0;
}

static int get_array(struct json_object *obj, const char *key, size_t max, struct json_object **ret,
                     struct error *err)
{
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(obj, key, &v))
                return error_set(err, -ENOENT, "field `%s` is missing", key);
        if (!json_object_is_type(v, json_type_array))
                return error_set(err, -EINVAL, "field `%s` must be an array", key);
        if (json_object_array_length(v) > max)
                return error_set(err, -EINVAL, "field `%s` has more than %zu items", key, max);
        *ret = v;
        return 0;
}

static int read_buckets(struct json_object *arr, struct sync_msg *msg, struct error *err)
{
        static const char *const names[] = { "start", "size", "in_bytes", "in_packets", "out_bytes", "out_packets" };
        size_t n = json_object_array_length(arr);

        msg->buckets = calloc(n ? n : 1, sizeof(*msg->buckets));
        if (!msg->buckets)
                return error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_array_get_idx(arr, i);
                struct sync_bucket *b = &msg->buckets[i];
                int64_t *slots[] = { &b->start, &b->size, &b->in_bytes, &b->in_packets, &b->out_bytes, &b->out_packets };
                int r = 0;

                if (!json_object_is_type(o, json_type_object))
                        r = error_set(err, -EINVAL, "must be an object");
                if (r == 0)
                        r = check_keys(o, names, ARRAY_SIZE(names), err);
                for (size_t k = 0; r == 0 && k < ARRAY_SIZE(names); k++)
                        r = get_int(o, names[k], 0, SYNC_INT_MAX, slots[k], err);
                if (r == 0 && b->size != 300 && b->size != 3600 && b->size != 86400)
                        r = error_set(err, -EINVAL, "field `size` must be 300, 3600 or 86400");
                if (r == 0 && b->start % b->size != 0)
                        r = error_set(err, -EINVAL, "field `start` must be a multiple of `size`");
                if (r < 0)
                        return error_prefix(err, "buckets[%zu]", i);
                msg->n_buckets = i + 1;
        }
        return 0;
}

static int read_inventory(struct json_object *arr, struct sync_msg *msg, struct error *err)
{
        static const char *const names[] = { "service", "state", "paid_until" };
        size_t n = json_object_array_length(arr);

        msg->services = calloc(n ? n : 1, sizeof(*msg->services));
        if (!msg->services)
                return error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_array_get_idx(arr, i);
                struct sync_inventory_item *it = &msg->services[i];
                int r = 0;

                if (!json_object_is_type(o, json_type_object))
                        r = error_set(err, -EINVAL, "must be an object");
                if (r == 0)
                        r = check_keys(o, names, ARRAY_SIZE(names), err);
                if (r == 0)
                        r = get_text(o, "service", true, sizeof(it->service) - 1, C_UUID, NULL, it->service, err);
                if (r == 0)
                        r = get_text(o, "state", true, sizeof(it->state) - 1, C_ENUM, service_states, it->state,
                                     err);
                if (r == 0)
                        r = get_int(o, "paid_until", 0, SYNC_TIME_MAX, &it->paid_until, err);
                if (r < 0)
                        return error_prefix(err, "services[%zu]", i);
                msg->n_services = i + 1;
        }
        return 0;
}

static int read_ssh_keys(struct json_object *arr, struct sync_msg *msg, struct error *err)
{
        size_t n = json_object_array_length(arr);

        msg->ssh_keys = calloc(n ? n : 1, sizeof(*msg->ssh_keys));
        if (!msg->ssh_keys)
                return error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_array_get_idx(arr, i);
                const char *s = json_object_get_string(o);
                size_t len = (size_t)json_object_get_string_len(o);

                if (!json_object_is_type(o, json_type_string) || len == 0 || len > SYNC_SSH_KEY_MAX ||
                    strlen(s) != len || !text_ok(s, len, C_PRINTABLE, NULL))
                        return error_set(err, -EINVAL, "ssh_keys[%zu]: must be a key line of 1 to %d printable "
                                         "characters", i, SYNC_SSH_KEY_MAX);
                msg->ssh_keys[i] = strdup(s);
                if (!msg->ssh_keys[i])
                        return error_set(err, -ENOMEM, "out of memory");
                msg->n_ssh_keys = i + 1;
        }
        return 0;
}

static int read_field(struct json_object *obj, const struct field *f, struct sync_msg *msg, struct error *err)
{
        char *slot = (char *)msg + f->offset;
        struct json_object *v = NULL;
        char b64[BASE64URL_ENCODED_LEN(SYNC_MAC_SIZE) + 1];
        int r;

        switch (f->type) {
        case F_TEXT:
                return get_text(obj, f->name, f->required, f->size - 1, f->check, f->values, slot, err);
        case F_INT:
                if (!f->required && !json_object_object_get_ex(obj, f->name, NULL))
                        return 0;
                return get_int(obj, f->name, f->min, f->max, (int64_t *)(void *)slot, err);
        case F_BOOL:
                if (!json_object_object_get_ex(obj, f->name, &v))
                        return error_set(err, -ENOENT, "field `%s` is missing", f->name);
                if (!json_object_is_type(v, json_type_boolean))
                        return error_set(err, -EINVAL, "field `%s` must be true or false", f->name);
                *(bool *)(void *)slot = json_object_get_boolean(v);
                return 0;
        case F_BYTES:
                r = get_text(obj, f->name, true, sizeof(b64) - 1, C_PRINTABLE, NULL, b64, err);
                if (r < 0)
                        return r;
                if (base64url_decode(b64, strlen(b64), (uint8_t *)slot, f->size) != (int)f->size)
                        return error_set(err, -EINVAL, "field `%s` must be base64url of %zu bytes", f->name,
                                         f->size);
                return 0;
        case F_JSON:
                r = json_get_object(obj, f->name, true, &v, err);
                if (r < 0)
                        return r;
                r = sync_canon_write(v, SYNC_MSG_MAX, (char **)(void *)slot, NULL, err);
                return r < 0 ? error_prefix(err, "field `%s`", f->name) : 0;
        case F_SSH_KEYS:
                r = get_array(obj, f->name, SYNC_SSH_KEYS_MAX, &v, err);
                return r < 0 ? r : read_ssh_keys(v, msg, err);
        case F_BUCKETS:
                r = get_array(obj, f->name, SYNC_BUCKETS_MAX, &v, err);
                return r < 0 ? r : read_buckets(v, msg, err);
        case F_INVENTORY:
                r = get_array(obj, f->name, SYNC_INVENTORY_MAX, &v, err);
                return r < 0 ? r : read_inventory(v, msg, err);
        }
        return error_set(err, -EINVAL, "field `%s`: unknown type", f->name);
}

/* The fields of kind besides its table: seq and at of commands and events. */
static size_t implied_fields(enum sync_kind kind, const struct field **out)
{
        size_t n = 0;

        if (sync_kind_is_command(kind) || sync_kind_is_event(kind))
                out[n++] = &seq_field;
        if (sync_kind_is_event(kind))
                out[n++] = &at_field;
        return n;
}

/* A provision's service object names the service it is for. */
static int check_provision(struct sync_msg *msg, struct error *err)
{
        cleanup_json struct json_object *spec = NULL;
        const char *uuid = NULL;
        int r = json_parse_object(msg->spec, strlen(msg->spec), &spec, err);

        if (r == 0)
                r = json_get_string(spec, "uuid", true, &uuid, err);
        if (r < 0)
                return error_prefix(err, "field `spec`");
        if (strcmp(uuid, msg->service) != 0)
                return error_set(err, -EINVAL, "field `spec`: its uuid is not the service's");
        return 0;
}

static int decode_fields(struct json_object *obj, struct sync_msg *msg, struct error *err)
{
        const struct kind_def *def = &kinds[msg->kind];
        const char *names[16] = { "v", "kind", "n" };
        const struct field *implied[2];
        size_t n_names = 3, n_implied = implied_fields(msg->kind, implied);
        int r;

        for (size_t i = 0; i < n_implied; i++)
                names[n_names++] = implied[i]->name;
        for (const struct field *f = def->fields; f->name; f++)
                names[n_names++] = f->name;
        r = check_keys(obj, names, n_names, err);
        if (r == 0 && json_object_object_get_ex(obj, "n", NULL))
                r = read_field(obj, &n_field, msg, err);
        for (size_t i = 0; r == 0 && i < n_implied; i++)
                r = read_field(obj, implied[i], msg, err);
        for (const struct field *f = def->fields; r == 0 && f->name; f++)
                r = read_field(obj, f, msg, err);
        if (r == 0 && msg->kind == SYNC_PROVISION)
                r = check_provision(msg, err);
        return r;
}

int sync_msg_envelope(struct json_object *obj, enum sync_kind *ret_kind, struct error *err)
{
        const char *kind_name = NULL;
        int64_t version = 0;
        int r = json_get_int64(obj, "v", true, &version, err);

        if (r < 0)
                return r;
        if (version != SYNC_VERSION)
                return error_set(err, -EPROTONOSUPPORT, "version %lld is not supported (only %d)",
                                 (long long)version, SYNC_VERSION);
        r = json_get_string(obj, "kind", true, &kind_name, err);
        if (r < 0)
                return r;
        if (sync_kind_parse(kind_name, ret_kind) < 0)
                return error_set(err, -EINVAL, "unknown kind `%.32s`", kind_name);
        return 0;
}

int sync_msg_decode(struct json_object *obj, struct sync_msg *msg, struct error *err)
{
        enum sync_kind kind;
        int r;

        memset(msg, 0, sizeof(*msg));
        r = sync_msg_envelope(obj, &kind, err);
        if (r < 0)
                return r;
        msg->kind = kind;
        r = decode_fields(obj, msg, err);
        if (r < 0) {
                sync_msg_clear(msg);
                return error_prefix(err, "%s", kinds[kind].name);
        }
        return 0;
}

static int add(struct json_object *obj, const char *key, struct json_object *v, struct error *err)
{
        if (!v || json_object_object_add(obj, key, v) < 0) {
                json_object_put(v);
                return error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static struct json_object *ints_object(const char *const *names, const int64_t *values, size_t n)
{
        struct json_object *o = json_object_new_object();

        for (size_t i = 0; o && i < n; i++)
                if (json_object_object_add(o, names[i], json_object_new_int64(values[i])) < 0)
                        return json_object_put(o), NULL;
        return o;
}

static struct json_object *write_array(const struct field *f, const struct sync_msg *msg)
{
        struct json_object *arr = json_object_new_array();
        size_t n = f->type == F_SSH_KEYS ? msg->n_ssh_keys : f->type == F_BUCKETS ? msg->n_buckets : msg->n_services;

        for (size_t i = 0; arr && i < n; i++) {
                struct json_object *item = NULL;

                if (f->type == F_SSH_KEYS) {
                        item = json_object_new_string(msg->ssh_keys[i]);
                } else if (f->type == F_BUCKETS) {
                        static const char *const names[] = { "start", "size", "in_bytes", "in_packets",
                                                             "out_bytes", "out_packets" };
                        const struct sync_bucket *b = &msg->buckets[i];
                        int64_t v[] = { b->start, b->size, b->in_bytes, b->in_packets, b->out_bytes, b->out_packets };
                        item = ints_object(names, v, ARRAY_SIZE(v));
                } else {
                        const struct sync_inventory_item *it = &msg->services[i];
                        item = ints_object((const char *const[]){ "paid_until" }, &it->paid_until, 1);
                        if (item && (json_object_object_add(item, "service", json_object_new_string(it->service)) < 0 ||
                                     json_object_object_add(item, "state", json_object_new_string(it->state)) < 0))
                                item = (json_object_put(item), NULL);
                }
                if (!item || json_object_array_add(arr, item) < 0)
                        return json_object_put(item), json_object_put(arr), NULL;
        }
        return arr;
}

static int write_field(struct json_object *obj, const struct field *f, const struct sync_msg *msg,
                       struct error *err)
{
        const char *slot = (const char *)msg + f->offset;
        char b64[BASE64URL_ENCODED_LEN(SYNC_MAC_SIZE) + 1];
        struct json_object *v = NULL;
        int r;

        switch (f->type) {
        case F_TEXT:
                if (!f->required && slot[0] == '\0')
                        return 0;
                return add(obj, f->name, json_object_new_string(slot), err);
        case F_INT:
                if (!f->required && *(const int64_t *)(const void *)slot == 0)
                        return 0;
                return add(obj, f->name, json_object_new_int64(*(const int64_t *)(const void *)slot), err);
        case F_BOOL:
                return add(obj, f->name, json_object_new_boolean(*(const bool *)(const void *)slot), err);
        case F_BYTES:
                if (base64url_encode(slot, f->size, b64, sizeof(b64)) < 0)
                        return error_set(err, -EINVAL, "field `%s`: cannot encode", f->name);
                return add(obj, f->name, json_object_new_string(b64), err);
        case F_JSON: {
                const char *text = *(char *const *)(const void *)slot;

                if (!text)
                        return error_set(err, -ENOENT, "field `%s` is missing", f->name);
                r = json_parse_object(text, strlen(text), &v, err);
                if (r < 0)
                        return error_prefix(err, "field `%s`", f->name);
                return add(obj, f->name, v, err);
        }
        case F_SSH_KEYS:
        case F_BUCKETS:
        case F_INVENTORY:
                return add(obj, f->name, write_array(f, msg), err);
        }
        return error_set(err, -EINVAL, "field `%s`: unknown type", f->name);
}

int sync_msg_encode(const struct sync_msg *msg, struct json_object **ret_obj, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        struct sync_msg check = { 0 };
        const struct field *implied[2];
        size_t n_implied;
        int r;

        if ((unsigned)msg->kind >= SYNC_KIND_COUNT)
                return error_set(err, -EINVAL, "unknown kind %d", (int)msg->kind);
        obj = json_object_new_object();
        if (!obj)
                return error_set(err, -ENOMEM, "out of memory");
        r = add(obj, "v", json_object_new_int(SYNC_VERSION), err);
        if (r == 0)
                r = add(obj, "kind", json_object_new_string(kinds[msg->kind].name), err);
        if (r == 0 && msg->n > 0)
                r = write_field(obj, &n_field, msg, err);
        n_implied = implied_fields(msg->kind, implied);
        for (size_t i = 0; r == 0 && i < n_implied; i++)
                r = write_field(obj, implied[i], msg, err);
        for (const struct field *f = kinds[msg->kind].fields; r == 0 && f->name; f++)
                r = write_field(obj, f, msg, err);
        if (r < 0)
                return error_prefix(err, "%s", kinds[msg->kind].name);
        /* What a receiver would refuse is never sent. */
        r = sync_msg_decode(obj, &check, err);
        sync_msg_clear(&check);
        if (r < 0)
                return r;
        *ret_obj = steal_pointer(&obj);
        return 0;
}

int sync_msg_to_body(const struct sync_msg *msg, char **ret_text, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        struct sync_msg bare = *msg;
        int r;

        bare.n = 0;
        r = sync_msg_encode(&bare, &obj, err);
        return r < 0 ? r : sync_canon_write(obj, SYNC_MSG_MAX, ret_text, NULL, err);
}

int sync_msg_from_body(const char *text, struct sync_msg *ret_msg, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        int r = json_parse_object(text, strlen(text), &obj, err);

        if (r == 0 && json_object_object_get_ex(obj, "n", NULL))
                r = error_set(err, -EINVAL, "a stored message has no `n`");
        return r < 0 ? r : sync_msg_decode(obj, ret_msg, err);
}

int sync_msg_set_json(char **field, const char *json_text, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        char *text = NULL;
        int r = json_parse_object(json_text, strlen(json_text), &obj, err);

        if (r == 0)
                r = sync_canon_write(obj, SYNC_MSG_MAX, &text, NULL, err);
        if (r < 0)
                return r;
        free(*field);
        *field = text;
        return 0;
}

int sync_msg_add_ssh_key(struct sync_msg *msg, const char *line, struct error *err)
{
        char **grown;

        if (msg->n_ssh_keys >= SYNC_SSH_KEYS_MAX)
                return error_set(err, -E2BIG, "more than %d SSH keys", SYNC_SSH_KEYS_MAX);
        grown = realloc(msg->ssh_keys, (msg->n_ssh_keys + 1) * sizeof(*grown));
        if (!grown)
                return error_set(err, -ENOMEM, "out of memory");
        msg->ssh_keys = grown;
        msg->ssh_keys[msg->n_ssh_keys] = strdup(line);
        if (!msg->ssh_keys[msg->n_ssh_keys])
                return error_set(err, -ENOMEM, "out of memory");
        msg->n_ssh_keys++;
        return 0;
}

const char *sync_reject_code(int r)
{
        switch (r) {
        case -E2BIG: return "oversized";
        case -EPROTONOSUPPORT: return "unsupported-version";
        case -EACCES: return "unauthenticated";
        case -EBADMSG: return "bad-mac";
        case -EALREADY: return "replayed";
        case -ENOMSG: return "out-of-order";
        default: return "malformed";
        }
}

bool sync_reject_is_fatal(int r) { return r == -EPROTONOSUPPORT || r == -EACCES; }

int sync_seq_check(int64_t last, int64_t seq, struct error *err)
{
        if (seq <= last)
                return 1;
        if (seq != last + 1)
                return error_set(err, -ENOMSG, "seq %lld after %lld: a gap", (long long)seq, (long long)last);
        return 0;
}
