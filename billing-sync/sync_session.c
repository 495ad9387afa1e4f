/* One side of a sync session: the handshake as a small state machine, the
 * keys it derives, the MAC on every later message and the counter that
 * refuses replays (docs/sync-protocol.md). Pure: no I/O, no clock. */
#include "sync_private.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64url.h"
#include "common/json.h"
#include "common/util.h"
#include "sync_canon.h"

enum session_state {
        STATE_NEW,
        STATE_HELLO_SENT,     /* node: waits for the challenge */
        STATE_HELLO_RECEIVED, /* ledger: sends the challenge next */
        STATE_KEYED,          /* keys derived: node sends auth, ledger waits for it */
        STATE_AUTH_SENT,      /* node: waits for welcome */
        STATE_ESTABLISHED,
};

struct sync_session {
        enum sync_role role;
        enum session_state state;
        char node[SYNC_NODE_ID_MAX + 1];
        uint8_t key[SYNC_KEY_SIZE];
        uint8_t node_nonce[SYNC_NONCE_SIZE], ledger_nonce[SYNC_NONCE_SIZE];
        uint8_t send_key[SYNC_MAC_SIZE], receive_key[SYNC_MAC_SIZE];
        int64_t sent_n, received_n;
        unsigned rejects;
};

#define NONCE_TEXT_SIZE (BASE64URL_ENCODED_LEN(SYNC_NONCE_SIZE) + 1)

int sync_session_new(enum sync_role role, const char *node_id, const uint8_t key[SYNC_KEY_SIZE],
                     struct sync_session **ret_session, struct error *err)
{
        struct sync_session *s;
        size_t len = strlen(node_id);

        if (len == 0 || len > SYNC_NODE_ID_MAX ||
            strspn(node_id, "abcdefghijklmnopqrstuvwxyz0123456789._-") != len)
                return error_set(err, -EINVAL, "node id `%.64s`: 1 to %d of [a-z0-9._-]", node_id,
                                 SYNC_NODE_ID_MAX);
        s = calloc(1, sizeof(*s));
        if (!s)
                return error_set(err, -ENOMEM, "out of memory");
        s->role = role;
        memcpy(s->node, node_id, len + 1);
        memcpy(s->key, key, SYNC_KEY_SIZE);
        *ret_session = s;
        return 0;
}

struct sync_session *sync_session_free(struct sync_session *session)
{
        if (session) {
                OPENSSL_cleanse(session, sizeof(*session));
                free(session);
        }
        return NULL;
}

bool sync_session_established(const struct sync_session *session) { return session->state == STATE_ESTABLISHED; }
unsigned sync_session_rejects(const struct sync_session *session) { return session->rejects; }

/* H(K, "vpsd-sync/1 " label "\n" node "\n" NN "\n" LN), the texts as sent. */
static int derive(const struct sync_session *s, const char *label, uint8_t out[SYNC_MAC_SIZE])
{
        char nn[NONCE_TEXT_SIZE], ln[NONCE_TEXT_SIZE];
        char head[64];
        const void *parts[6];
        size_t lens[6];

        snprintf(head, sizeof(head), "vpsd-sync/1 %s\n", label);
        if (base64url_encode(s->node_nonce, SYNC_NONCE_SIZE, nn, sizeof(nn)) < 0 ||
            base64url_encode(s->ledger_nonce, SYNC_NONCE_SIZE, ln, sizeof(ln)) < 0)
                return -EINVAL;
        parts[0] = head, lens[0] = strlen(head);
        parts[1] = s->node, lens[1] = strlen(s->node);
        parts[2] = "\n", lens[2] = 1;
        parts[3] = nn, lens[3] = strlen(nn);
        parts[4] = "\n", lens[4] = 1;
        parts[5] = ln, lens[5] = strlen(ln);
        return sync_hmac(s->key, SYNC_KEY_SIZE, parts, lens, 6, out);
}

static int derive_keys(struct sync_session *s)
{
        bool node = s->role == SYNC_ROLE_NODE;
        int r = derive(s, "ledger-to-node", node ? s->receive_key : s->send_key);

        return r < 0 ? r : derive(s, "node-to-ledger", node ? s->send_key : s->receive_key);
}

static int mac_of(const uint8_t key[SYNC_MAC_SIZE], struct json_object *obj, uint8_t out[SYNC_MAC_SIZE],
                  struct error *err)
{
        cleanup_free char *canon = NULL;
        size_t len = 0;
        int r = sync_canon_write(obj, SYNC_MSG_MAX, &canon, &len, err);

        if (r < 0)
                return r;
        if (sync_hmac(key, SYNC_MAC_SIZE, (const void *const[]){ canon }, &len, 1, out) < 0)
                return error_set(err, -EIO, "HMAC-SHA256 failed");
        return 0;
}

/* What the session itself puts into a handshake message before it is
 * built, and the state it moves to once it is. */
static int prepare(struct sync_session *s, struct sync_msg *msg, enum session_state *ret_next, struct error *err)
{
        enum session_state want = STATE_ESTABLISHED;
        bool node = s->role == SYNC_ROLE_NODE;

        *ret_next = s->state;
        if (!sync_kind_sent_by(msg->kind, s->role))
                return error_set(err, -EINVAL, "%s: not sent by the %s", sync_kind_name(msg->kind),
                                 node ? "node" : "ledger");
        switch (msg->kind) {
        case SYNC_ERROR:
                return 0;
        case SYNC_HELLO:
                want = STATE_NEW;
                *ret_next = STATE_HELLO_SENT;
                break;
        case SYNC_CHALLENGE:
                want = STATE_HELLO_RECEIVED;
                *ret_next = STATE_KEYED;
                break;
        case SYNC_AUTH:
                want = STATE_KEYED;
                *ret_next = STATE_AUTH_SENT;
                break;
        default:
                break;
        }
        if (s->state != want)
                return error_set(err, -EPROTO, "%s: not at this point of the handshake", sync_kind_name(msg->kind));
        if (msg->kind == SYNC_HELLO) {
                if (RAND_bytes(s->node_nonce, SYNC_NONCE_SIZE) != 1)
                        return error_set(err, -EIO, "no random bytes for a nonce");
                memcpy(msg->nonce, s->node_nonce, SYNC_NONCE_SIZE);
                memcpy(msg->node, s->node, sizeof(msg->node));
        } else if (msg->kind == SYNC_CHALLENGE) {
                if (RAND_bytes(s->ledger_nonce, SYNC_NONCE_SIZE) != 1)
                        return error_set(err, -EIO, "no random bytes for a nonce");
                memcpy(msg->nonce, s->ledger_nonce, SYNC_NONCE_SIZE);
                if (derive_keys(s) < 0 || derive(s, "ledger-proof", msg->proof) < 0)
                        return error_set(err, -EIO, "HMAC-SHA256 failed");
        } else if (msg->kind == SYNC_AUTH) {
                if (derive(s, "node-proof", msg->proof) < 0)
                        return error_set(err, -EIO, "HMAC-SHA256 failed");
        }
        return 0;
}

static bool keyed(const struct sync_session *s) { return s->state >= STATE_KEYED; }

int sync_session_build(struct sync_session *session, struct sync_msg *msg, char **ret_text, size_t *ret_len,
                       struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        enum session_state next;
        uint8_t mac[SYNC_MAC_SIZE];
        char mac_text[BASE64URL_ENCODED_LEN(SYNC_MAC_SIZE) + 1];
        bool with_mac;
        int r = prepare(session, msg, &next, err);

        if (r < 0)
                return r;
        /* The challenge is what makes the keys: it goes out without a MAC. */
        with_mac = keyed(session) && msg->kind != SYNC_CHALLENGE;
        msg->n = with_mac ? session->sent_n + 1 : 0;
        r = sync_msg_encode(msg, &obj, err);
        if (r < 0)
                return r;
        if (with_mac) {
                r = mac_of(session->send_key, obj, mac, err);
                if (r < 0)
                        return r;
                base64url_encode(mac, sizeof(mac), mac_text, sizeof(mac_text));
                if (json_object_object_add(obj, "mac", json_object_new_string(mac_text)) < 0)
                        return error_set(err, -ENOMEM, "out of memory");
        }
        r = sync_canon_write(obj, SYNC_MSG_MAX, ret_text, ret_len, err);
        if (r < 0)
                return r;
        if (with_mac)
                session->sent_n = msg->n;
        session->state = next;
        return 0;
}

/* Whether kind may arrive now, and whether it must carry a MAC. */
static int gate(const struct sync_session *s, enum sync_kind kind, bool has_mac, bool *ret_mac, struct error *err)
{
        const char *name = sync_kind_name(kind);
        enum session_state want;

        if (!sync_kind_sent_by(kind, s->role == SYNC_ROLE_NODE ? SYNC_ROLE_LEDGER : SYNC_ROLE_NODE))
                return error_set(err, -EINVAL, "%s: not sent by the %s", name,
                                 s->role == SYNC_ROLE_NODE ? "ledger" : "node");
        *ret_mac = keyed(s);
        switch (kind) {
        case SYNC_ERROR:
                /* A peer that cannot make the keys refuses in clear; once
                 * established, an error without a MAC could be anyone's. */
                if (!has_mac && s->state != STATE_ESTABLISHED)
                        *ret_mac = false;
                return 0;
        case SYNC_HELLO: want = STATE_NEW; *ret_mac = false; break;
        case SYNC_CHALLENGE: want = STATE_HELLO_SENT; *ret_mac = false; break;
        case SYNC_AUTH: want = STATE_KEYED; break;
        case SYNC_WELCOME: want = STATE_AUTH_SENT; break;
        default:
                if (s->state != STATE_ESTABLISHED)
                        return error_set(err, -EACCES, "%s: the handshake has not completed", name);
                return 0;
        }
        if (s->state != want)
                return error_set(err, want == STATE_NEW || want == STATE_HELLO_SENT ? -EINVAL : -EACCES,
                                 "%s: not expected at this point of the handshake", name);
        return 0;
}

static int check_mac(struct sync_session *s, struct json_object *obj, const char *mac_text, struct error *err)
{
        uint8_t want[SYNC_MAC_SIZE], got[SYNC_MAC_SIZE];
        int r;

        if (!mac_text)
                return error_set(err, -EBADMSG, "no MAC");
        if (base64url_decode(mac_text, strlen(mac_text), got, sizeof(got)) != (int)sizeof(got))
                return error_set(err, -EBADMSG, "the MAC is not base64url of %d bytes", SYNC_MAC_SIZE);
        r = mac_of(s->receive_key, obj, want, err);
        if (r < 0)
                return r;
        if (CRYPTO_memcmp(want, got, sizeof(want)) != 0)
                return error_set(err, -EBADMSG, "the MAC does not verify");
        return 0;
}

/* The handshake's own checks, once a message's form is known good. */
static int advance(struct sync_session *s, const struct sync_msg *msg, struct error *err)
{
        uint8_t want[SYNC_MAC_SIZE];

        switch (msg->kind) {
        case SYNC_HELLO:
                /* The same words as a wrong proof: ids cannot be probed. */
                if (strcmp(msg->node, s->node) != 0)
                        return error_set(err, -EACCES, "authentication failed");
                memcpy(s->node_nonce, msg->nonce, SYNC_NONCE_SIZE);
                s->state = STATE_HELLO_RECEIVED;
                return 0;
        case SYNC_CHALLENGE:
                memcpy(s->ledger_nonce, msg->nonce, SYNC_NONCE_SIZE);
                if (derive(s, "ledger-proof", want) < 0)
                        return error_set(err, -EIO, "HMAC-SHA256 failed");
                if (CRYPTO_memcmp(want, msg->proof, sizeof(want)) != 0) {
                        memset(s->ledger_nonce, 0, SYNC_NONCE_SIZE);
                        return error_set(err, -EACCES, "authentication failed: the ledger's proof is wrong");
                }
                if (derive_keys(s) < 0)
                        return error_set(err, -EIO, "HMAC-SHA256 failed");
                s->state = STATE_KEYED;
                return 0;
        case SYNC_AUTH:
                if (derive(s, "node-proof", want) < 0)
                        return error_set(err, -EIO, "HMAC-SHA256 failed");
                if (CRYPTO_memcmp(want, msg->proof, sizeof(want)) != 0)
                        return error_set(err, -EACCES, "authentication failed");
                s->state = STATE_ESTABLISHED;
                return 0;
        case SYNC_WELCOME:
                s->state = STATE_ESTABLISHED;
                return 0;
        default:
                return 0;
        }
}

static int receive(struct sync_session *s, const char *buf, size_t len, struct sync_msg *msg, struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        cleanup_free char *mac_text = NULL;
        const char *kind_name = NULL, *m = NULL;
        int64_t n = 0;
        enum sync_kind kind;
        bool want_mac = false;
        int r;

        if (len > SYNC_MSG_MAX)
                return error_set(err, -E2BIG, "%zu bytes, more than %d", len, SYNC_MSG_MAX);
        r = json_parse_object(buf, len, &obj, err);
        if (r == 0)
                r = sync_msg_envelope(obj, &kind, err);
        if (r < 0)
                return r;
        kind_name = sync_kind_name(kind);
        r = json_get_string(obj, "mac", false, &m, err);
        if (r < 0)
                return r;
        if (m && !(mac_text = strdup(m)))
                return error_set(err, -ENOMEM, "out of memory");
        json_object_object_del(obj, "mac");
        r = gate(s, kind, mac_text != NULL, &want_mac, err);
        if (r < 0)
                return r;
        if (want_mac) {
                r = check_mac(s, obj, mac_text, err);
                /* A handshake message that fails its MAC is a failed login. */
                if (r == -EBADMSG && (kind == SYNC_AUTH || kind == SYNC_WELCOME))
                        r = error_set(err, -EACCES, "authentication failed: the MAC does not verify");
                if (r < 0)
                        return error_prefix(err, "%s", kind_name);
                r = json_get_int64(obj, "n", true, &n, err);
                if (r < 0)
                        return error_prefix(err, "%s", kind_name);
                if (n <= s->received_n)
                        return error_set(err, -EALREADY, "%s: message %lld after %lld: replayed or reordered",
                                         kind_name, (long long)n, (long long)s->received_n);
        } else if (mac_text || json_object_object_get_ex(obj, "n", NULL)) {
                return error_set(err, -EINVAL, "%s: no `mac` or `n` before the keys exist", kind_name);
        }
        r = sync_msg_decode(obj, msg, err);
        if (r < 0)
                return r;
        r = advance(s, msg, err);
        if (r < 0) {
                sync_msg_clear(msg);
                return r;
        }
        msg->authenticated = want_mac;
        if (want_mac)
                s->received_n = n;
        return 0;
}

int sync_session_receive(struct sync_session *session, const char *buf, size_t len, struct sync_msg **ret_msg,
                         struct error *err)
{
        struct sync_msg *msg = calloc(1, sizeof(*msg));
        int r;

        if (!msg)
                return error_set(err, -ENOMEM, "out of memory");
        r = receive(session, buf, len, msg, err);
        if (r < 0) {
                session->rejects++;
                free(msg);
                return r;
        }
        *ret_msg = msg;
        return 0;
}

int sync_hello_peek(const char *buf, size_t len, char node_id[SYNC_NODE_ID_MAX + 1], struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        struct sync_msg msg;
        int r;

        if (len > SYNC_MSG_MAX)
                return error_set(err, -E2BIG, "%zu bytes, more than %d", len, SYNC_MSG_MAX);
        r = json_parse_object(buf, len, &obj, err);
        if (r == 0)
                r = sync_msg_decode(obj, &msg, err);
        if (r < 0)
                return r;
        if (msg.kind != SYNC_HELLO) {
                sync_msg_clear(&msg);
                return error_set(err, -EACCES, "%s before hello", sync_kind_name(msg.kind));
        }
        memcpy(node_id, msg.node, SYNC_NODE_ID_MAX + 1);
        sync_msg_clear(&msg);
        return 0;
}
