/* The sync protocol's codec (docs/sync-protocol.md): every message between
 * a node and the ledger, parsed strictly and built canonically, and the
 * session that authenticates them (the HMAC-SHA256 challenge–response, a
 * MAC under a per-session, per-direction key on every message after it,
 * and the message counter that refuses replays). The node and the ledger
 * both link it; it knows nothing of either's store.
 *
 * Every refusal is a negative errno with err naming what is wrong, and
 * sync_reject_code() gives the protocol's error code for it:
 *   -E2BIG oversized, -EINVAL (and -ENOENT, -ERANGE) malformed,
 *   -EPROTONOSUPPORT unsupported-version, -EACCES unauthenticated,
 *   -EBADMSG bad-mac, -EALREADY replayed, -ENOMSG out-of-order. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SYNC_VERSION 1
#define SYNC_MSG_MAX (512 * 1024)   /* bytes of one websocket text message */
#define SYNC_KEY_SIZE 32            /* the key shared at enrolment */
#define SYNC_NONCE_SIZE 32
#define SYNC_MAC_SIZE 32
#define SYNC_NODE_ID_MAX 64
#define SYNC_ACCOUNT_ID_MAX 128
#define SYNC_TEXT_MAX 256           /* reasons and error texts */
#define SYNC_NAME_MAX 64            /* template and ISO names */
#define SYNC_LABEL_MAX 200          /* an ISO's label */
#define SYNC_SSH_KEYS_MAX 32
#define SYNC_SSH_KEY_MAX 4096
#define SYNC_PASSWORD_MAX 128
#define SYNC_BUCKETS_MAX 288
#define SYNC_INVENTORY_MAX 2048
#define SYNC_POLICY_SECONDS_MAX (90 * 86400)
#define SYNC_INT_MAX INT64_C(9007199254740991) /* 2^53 - 1: exact in every JSON reader */
#define SYNC_TIME_MAX INT64_C(253402300799)    /* 9999-12-31T23:59:59Z */
#define SYNC_REJECTS_MAX 16         /* refused messages before a session is closed */

enum sync_kind {
        /* handshake */
        SYNC_HELLO,
        SYNC_CHALLENGE,
        SYNC_AUTH,
        SYNC_WELCOME,
        /* control, either side or one */
        SYNC_ERROR,
        SYNC_COMMAND_ACK,
        SYNC_EVENT_ACK,
        /* commands: ledger -> node, with a seq */
        SYNC_PROVISION,
        SYNC_RENEW,
        SYNC_SUSPEND,
        SYNC_UNSUSPEND,
        SYNC_TERMINATE,
        SYNC_POWER,
        SYNC_REINSTALL,
        SYNC_RESIZE,
        SYNC_TRANSFER,
        SYNC_SET_POLICY,
        SYNC_ISO_APPROVE,
        SYNC_ISO_REJECT,
        SYNC_ISO_MOUNT,
        SYNC_ISO_EJECT,
        SYNC_ISO_DELETE,
        /* events: node -> ledger, with a seq and a time */
        SYNC_STATE,
        SYNC_RESULT,
        SYNC_USAGE,
        SYNC_REMOVAL_QUEUED,
        SYNC_INVENTORY,
        SYNC_ISO,
        SYNC_KIND_COUNT,
};

enum sync_role {
        SYNC_ROLE_NODE,
        SYNC_ROLE_LEDGER,
};

/* "provision", "command-ack" …; parse: -EINVAL for an unknown name. */
const char *sync_kind_name(enum sync_kind kind);
int sync_kind_parse(const char *name, enum sync_kind *ret_kind);
bool sync_kind_is_command(enum sync_kind kind);
bool sync_kind_is_event(enum sync_kind kind);

struct sync_bucket {
        int64_t start, size; /* size 300, 3600 or 86400; start a multiple of it */
        int64_t in_bytes, in_packets, out_bytes, out_packets;
};

struct sync_inventory_item {
        char service[37];
        char state[16];
        int64_t paid_until;
};

/* One message. Which fields a kind uses is in docs/sync-protocol.md; an
 * optional string is absent when empty. Pointers are owned: free with
 * sync_msg_clear() (a stack message) or sync_msg_free(). */
struct sync_msg {
        enum sync_kind kind;
        bool authenticated;  /* received with a MAC that verified */
        int64_t n;           /* the sender's message counter; set by the session */
        int64_t seq;         /* commands, events, and what an ack acks */
        int64_t at;          /* events */

        char node[SYNC_NODE_ID_MAX + 1];           /* hello */
        uint8_t nonce[SYNC_NONCE_SIZE];            /* hello, challenge: set by the session */
        uint8_t proof[SYNC_MAC_SIZE];              /* challenge, auth: set by the session */
        int64_t last_command_seq;                  /* auth */
        int64_t last_event_seq;                    /* welcome */

        char service[37];
        char *spec;                                /* provision: canonical JSON of docs/service.md's input form */
        char *plan;                                /* resize: canonical JSON of the plan object */
        int64_t paid_until;                        /* renew */
        char reason[SYNC_TEXT_MAX + 1];            /* suspend (unpaid|abuse|operator), state, error, iso-reject */
        char action[16];                           /* power */
        char template_name[SYNC_NAME_MAX + 1];     /* reinstall */
        char **ssh_keys;                           /* reinstall */
        size_t n_ssh_keys;
        char root_password[SYNC_PASSWORD_MAX + 1]; /* reinstall (optional), result */
        bool confirm_disk_shrink;                  /* resize */
        char account_id[SYNC_ACCOUNT_ID_MAX + 1];  /* transfer, iso-approve, iso */
        int64_t grace_seconds, retention_seconds;  /* set-policy */
        bool autonomous_removal;                   /* set-policy */
        int64_t iso_quota_bytes;                   /* set-policy (optional; 0: unchanged) */
        char iso[SYNC_NAME_MAX + 1];               /* iso-*, iso */
        char label[SYNC_LABEL_MAX + 1];            /* iso (optional): what the customer called it */
        char sha256[65];                           /* iso (optional): lower-case hex */
        int64_t size;                              /* iso (optional): bytes */

        char state[16];                            /* state, iso */
        int64_t command_seq;                       /* result */
        char op[16];                               /* result: the command's kind */
        bool ok;                                   /* result */
        char error[SYNC_TEXT_MAX + 1];             /* result, command-ack (optional) */
        char result[16];                           /* command-ack: applied|failed */
        char code[32];                             /* error */
        struct sync_bucket *buckets;               /* usage */
        size_t n_buckets;
        int64_t remove_after;                      /* removal-queued */
        struct sync_inventory_item *services;      /* inventory */
        size_t n_services;
};

void sync_msg_clear(struct sync_msg *msg);
/* Accepts NULL; returns NULL. */
struct sync_msg *sync_msg_free(struct sync_msg *msg);

/* Sets msg->spec / msg->plan / msg->ssh_keys from text (checked, made
 * canonical) and strings: what a sender fills before building. */
int sync_msg_set_json(char **field, const char *json_text, struct error *err);
int sync_msg_add_ssh_key(struct sync_msg *msg, const char *line, struct error *err);

/* A message without the session's envelope ("n", "mac") as canonical
 * JSON, and back: what a command journal or an outbox keeps, to build
 * again with sync_session_build() when it is (re)sent. */
int sync_msg_to_body(const struct sync_msg *msg, char **ret_text, struct error *err);
int sync_msg_from_body(const char *text, struct sync_msg *ret_msg, struct error *err);

/* The protocol's error code for a refusal ("malformed", "bad-mac" …), and
 * whether it ends the session (unsupported-version, unauthenticated). */
const char *sync_reject_code(int r);
bool sync_reject_is_fatal(int r);

/* A received command or event seq against the last one applied (or
 * stored): 0 when it is the next, 1 when it was applied already (ack it
 * again, do not apply it), -ENOMSG after a gap. */
int sync_seq_check(int64_t last, int64_t seq, struct error *err);

struct sync_session;

/* A session of a node (node_id is its own) or of the ledger with one node
 * (node_id from sync_hello_peek(), key from the ledger's records). The key
 * is copied and wiped when the session is freed. */
int sync_session_new(enum sync_role role, const char *node_id, const uint8_t key[SYNC_KEY_SIZE],
                     struct sync_session **ret_session, struct error *err);
/* Accepts NULL; returns NULL. */
struct sync_session *sync_session_free(struct sync_session *session);

/* True once the handshake has completed on this side (node: welcome
 * received; ledger: auth received). */
bool sync_session_established(const struct sync_session *session);

/* Builds msg as the next message of this session into a new *ret_text
 * (canonical JSON, *ret_len bytes): checks the kind may be sent by this
 * side now and every field; fills the handshake's nonce and proof and the
 * counter msg->n; adds the MAC once the keys exist. */
int sync_session_build(struct sync_session *session, struct sync_msg *msg, char **ret_text, size_t *ret_len,
                       struct error *err);

/* Checks one received message, in this order: size, JSON, version, kind
 * (known, sent by the other side, allowed at this point of the
 * handshake), MAC, counter, fields. On success *ret_msg is the parsed
 * message, the counter moves and the handshake advances; a refusal
 * changes nothing but the count of refusals. */
int sync_session_receive(struct sync_session *session, const char *buf, size_t len, struct sync_msg **ret_msg,
                         struct error *err);

/* Refusals in this session so far; the caller closes at SYNC_REJECTS_MAX. */
unsigned sync_session_rejects(const struct sync_session *session);

/* The ledger's first look at a connection's first message: the node id of
 * a well-formed hello, so that it can find the node's key. */
int sync_hello_peek(const char *buf, size_t len, char node_id[SYNC_NODE_ID_MAX + 1], struct error *err);
