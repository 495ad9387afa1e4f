/* The sync endpoint: websocket /sync, subprotocol vpsd-sync.1, the
 * ledger's side of docs/sync-protocol.md.
 *
 * A connection starts without a session: its first message must be a
 * hello, whose node id finds the node's key. An unknown id gets a session
 * under a random key, so that it is answered exactly like a wrong key (a
 * challenge, then "authentication failed" at auth): ids cannot be probed.
 * Once established, the connection sends its node's journal from the
 * node's last applied command on, one command a writable callback (so
 * output never piles up), and stores each event once before acking it.
 *
 * Output is bounded by construction: the handshake's two messages, at most
 * SYNC_REJECTS_MAX errors (the connection closes at that many refusals),
 * one cumulative event-ack, and the journal read from the store one
 * command at a time. */
#include "ledger_server.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

struct sync_error {
        char code[32];
        char reason[SYNC_TEXT_MAX + 1];
};

struct sync_conn {
        struct ledger_server *server;
        struct lws *wsi;
        struct sync_conn *next;
        struct sync_session *session; /* from the hello on */
        char node[SYNC_NODE_ID_MAX + 1];
        bool known;                   /* the node exists: its key is real */
        bool established;
        /* Receiving one message, maybe in fragments. */
        char *rx;
        size_t rx_len;
        bool rx_oversized, rx_binary;
        /* To send, in this order. */
        bool challenge_due, welcome_due;
        struct sync_error errors[SYNC_REJECTS_MAX];
        unsigned n_errors;
        int64_t event_ack;            /* 0: none due */
        int64_t next_command;         /* the next journal seq to send */
        unsigned refusals;            /* those the session did not count */
        /* Closing once the errors are out. */
        bool closing;
        enum lws_close_status close_code;
        const char *close_reason;
        /* One message with lws's head room. */
        unsigned char *tx;
        size_t tx_size;
};

struct sync_ws {
        struct sync_conn *conn;
};

size_t ledger_sync_session_size(void) { return sizeof(struct sync_ws); }

static struct ledger_server *server_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

static const char *node_name(const struct sync_conn *c) { return c->node[0] ? c->node : "-"; }

static unsigned refusals(const struct sync_conn *c)
{
        return c->refusals + (c->session ? sync_session_rejects(c->session) : 0);
}

/* Text for the peer and the log: printable ASCII, at most SYNC_TEXT_MAX. */
static void reason_copy(char *dst, const char *src)
{
        size_t i = 0;

        for (; src[i] && i < SYNC_TEXT_MAX; i++)
                dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
        dst[i] = '\0';
}

static void close_after_output(struct sync_conn *c, enum lws_close_status code, const char *why)
{
        if (c->closing)
                return;
        c->closing = true;
        c->close_code = code;
        c->close_reason = why;
        c->established = false;
        lws_callback_on_writable(c->wsi);
}

/* A refused message: logged with its code and reason, answered with an
 * error, and the connection closed when the protocol says so or after
 * SYNC_REJECTS_MAX refusals. counted: whether the session counted it. */
static void refuse(struct sync_conn *c, int r, const char *reason, bool counted)
{
        const char *code = sync_reject_code(r);
        struct sync_error *e;

        if (!counted)
                c->refusals++;
        log_warn("ledger: sync message refused", "node=%s code=%s reason=\"%s\"%s", node_name(c), code, reason,
                 c->session && !c->known ? " unknown_node=true" : "");
        /* The peer learns only that it failed: an unknown node and a wrong
         * key read the same. */
        if (r == -EACCES && c->session)
                reason = "authentication failed";
        if (c->n_errors < SYNC_REJECTS_MAX) {
                e = &c->errors[c->n_errors++];
                str_copy(e->code, sizeof(e->code), code);
                reason_copy(e->reason, reason);
        }
        if (sync_reject_is_fatal(r))
                close_after_output(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "refused");
        else if (refusals(c) >= SYNC_REJECTS_MAX)
                close_after_output(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many refused messages");
        lws_callback_on_writable(c->wsi);
}

/* The first message: a hello whose node id finds the key. */
static void receive_hello(struct sync_conn *c, const char *buf, size_t len)
{
        struct ledger_server *server = c->server;
        uint8_t key[SYNC_KEY_SIZE];
        struct sync_msg *msg = NULL;
        struct error err = { 0 };
        int r = sync_hello_peek(buf, len, c->node, &err);

        if (r < 0) {
                c->node[0] = '\0';
                refuse(c, r, err.msg, false);
                return;
        }
        r = ledger_node_key(server->ledger, c->node, key, &err);
        c->known = r == 0;
        if (r == -ENOENT)
                r = RAND_bytes(key, sizeof(key)) == 1 ? 0 : -EIO;
        if (r == 0)
                r = sync_session_new(SYNC_ROLE_LEDGER, c->node, key, &c->session, &err);
        OPENSSL_cleanse(key, sizeof(key));
        if (r == 0)
                r = sync_session_receive(c->session, buf, len, &msg, &err);
        sync_msg_free(msg);
        if (r < 0) {
                log_error("ledger: sync: cannot start a session", "node=%s error=\"%s\"", node_name(c), err.msg);
                close_after_output(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "internal error");
                return;
        }
        c->challenge_due = true;
        lws_callback_on_writable(c->wsi);
}

/* auth checked: the node is who it says. The newer connection of a node
 * wins; the journal is sent from the node's last applied command on. */
static void established(struct sync_conn *c, const struct sync_msg *auth)
{
        struct ledger_server *server = c->server;
        struct error err = { 0 };
        int r;

        if (!c->known) {
                refuse(c, -EACCES, "authentication failed", false);
                return;
        }
        r = ledger_node_connected(server->ledger, c->node, auth->last_command_seq, ledger_server_now(server), &err);
        if (r < 0) {
                log_error("ledger: sync: node refused", "node=%s error=\"%s\"", c->node, err.msg);
                refuse(c, -EINVAL, r == -ERANGE ? "last_command_seq is beyond this ledger's journal" : "internal error",
                       false);
                close_after_output(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "refused");
                return;
        }
        for (struct sync_conn *o = server->conns; o; o = o->next)
                if (o != c && o->established && strcmp(o->node, c->node) == 0) {
                        log_info("ledger: sync: older connection replaced", "node=%s", c->node);
                        close_after_output(o, LWS_CLOSE_STATUS_NORMAL, "replaced by a newer connection");
                }
        c->established = true;
        c->next_command = auth->last_command_seq + 1;
        c->welcome_due = true;
        log_info("ledger: sync: node connected", "node=%s last_command_seq=%lld", c->node,
                 (long long)auth->last_command_seq);
        lws_callback_on_writable(c->wsi);
}

static void receive_ack(struct sync_conn *c, const struct sync_msg *ack)
{
        struct ledger_server *server = c->server;
        struct error err = { 0 };
        int r = ledger_command_ack(server->ledger, c->node, ack, ledger_server_now(server), &err);

        if (r == -ERANGE)
                refuse(c, -EINVAL, err.msg, false);
        else if (r < 0)
                log_error("ledger: sync: cannot record an ack", "node=%s seq=%lld error=\"%s\"", c->node,
                          (long long)ack->seq, err.msg);
        else if (ack->result[0] && strcmp(ack->result, "failed") == 0)
                log_warn("ledger: sync: command failed on the node", "node=%s seq=%lld", c->node,
                         (long long)ack->seq);
}

static void receive_event(struct sync_conn *c, const struct sync_msg *event)
{
        struct ledger_server *server = c->server;
        struct error err = { 0 };
        int r = ledger_event_receive(server->ledger, c->node, event, ledger_server_now(server), &err);

        if (r == -ENOMSG) {
                refuse(c, r, err.msg, false);
                return;
        }
        if (r < 0) {
                /* Not stored, so not acked: the node sends it again. */
                log_error("ledger: sync: cannot store an event", "node=%s seq=%lld error=\"%s\"", c->node,
                          (long long)event->seq, err.msg);
                return;
        }
        /* Stored now or before (r == 1): acked (again) either way. */
        if (event->seq > c->event_ack)
                c->event_ack = event->seq;
        lws_callback_on_writable(c->wsi);
}

static void receive_error(struct sync_conn *c, const struct sync_msg *msg)
{
        struct ledger_node_seqs seqs;

        log_warn("ledger: sync: the node refused a message", "node=%s code=%s reason=\"%s\"", c->node, msg->code,
                 msg->reason);
        /* A gap at the node: send again from its last ack on. */
        if (strcmp(msg->code, "out-of-order") == 0 &&
            ledger_node_seqs(c->server->ledger, c->node, &seqs, NULL) == 0) {
                c->next_command = seqs.acked_command_seq + 1;
                lws_callback_on_writable(c->wsi);
        }
}

static void receive_message(struct sync_conn *c, const char *buf, size_t len)
{
        struct sync_msg *msg = NULL;
        struct error err = { 0 };
        bool was_established;
        int r;

        if (c->rx_oversized) {
                refuse(c, -E2BIG, "more than 524288 bytes", false);
                return;
        }
        if (c->rx_binary) {
                refuse(c, -EINVAL, "a binary message", false);
                return;
        }
        if (!c->session) {
                receive_hello(c, buf, len);
                return;
        }
        was_established = sync_session_established(c->session);
        r = sync_session_receive(c->session, buf, len, &msg, &err);
        if (r < 0) {
                refuse(c, r, err.msg, true);
                return;
        }
        if (!was_established && msg->kind == SYNC_AUTH)
                established(c, msg);
        else if (msg->kind == SYNC_COMMAND_ACK)
                receive_ack(c, msg);
        else if (sync_kind_is_event(msg->kind))
                receive_event(c, msg);
        else if (msg->kind == SYNC_ERROR)
                receive_error(c, msg);
        sync_msg_free(msg);
}

/* One fragment; a message is handled when its last fragment is in. */
static void receive_fragment(struct sync_conn *c, const void *in, size_t len)
{
        struct lws *wsi = c->wsi;

        if (lws_is_first_fragment(wsi)) {
                c->rx_len = 0;
                c->rx_oversized = false;
                c->rx_binary = lws_frame_is_binary(wsi);
        }
        /* Bigger than the limit: the rest is read and dropped, never kept. */
        if (!c->rx_oversized && c->rx_len + len > SYNC_MSG_MAX)
                c->rx_oversized = true;
        if (!c->rx_oversized && !c->rx_binary) {
                if (!c->rx) {
                        c->rx = malloc(SYNC_MSG_MAX);
                        if (!c->rx) {
                                close_after_output(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                                return;
                        }
                }
                memcpy(c->rx + c->rx_len, in, len);
                c->rx_len += len;
        }
        if (!lws_is_final_fragment(wsi))
                return;
        if (c->closing)
                return;
        receive_message(c, c->rx, c->rx_len);
}

static int write_text(struct sync_conn *c, const char *text, size_t len)
{
        if (c->tx_size < LWS_PRE + len) {
                unsigned char *tx = realloc(c->tx, LWS_PRE + len);

                if (!tx)
                        return -ENOMEM;
                c->tx = tx;
                c->tx_size = LWS_PRE + len;
        }
        memcpy(c->tx + LWS_PRE, text, len);
        return lws_write(c->wsi, c->tx + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len ? -EIO : 0;
}

static int send_msg(struct sync_conn *c, struct sync_msg *msg)
{
        cleanup_free char *text = NULL;
        struct error err = { 0 };
        size_t len = 0;
        int r = sync_session_build(c->session, msg, &text, &len, &err);

        if (r < 0) {
                log_error("ledger: sync: cannot build a message", "node=%s kind=%s error=\"%s\"", node_name(c),
                          sync_kind_name(msg->kind), err.msg);
                return r;
        }
        return write_text(c, text, len);
}

/* An error: MAC'd in the session once there is one; before the hello,
 * built in clear by a session of its own. */
static int send_error(struct sync_conn *c, const struct sync_error *e)
{
        struct sync_msg msg = { .kind = SYNC_ERROR };
        struct sync_session *clear = NULL;
        uint8_t key[SYNC_KEY_SIZE] = { 0 };
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r;

        str_copy(msg.code, sizeof(msg.code), e->code);
        str_copy(msg.reason, sizeof(msg.reason), e->reason);
        if (c->session)
                return send_msg(c, &msg);
        r = sync_session_new(SYNC_ROLE_LEDGER, "unknown", key, &clear, NULL);
        if (r == 0)
                r = sync_session_build(clear, &msg, &text, &len, NULL);
        sync_session_free(clear);
        return r < 0 ? r : write_text(c, text, len);
}

/* The next command of the journal, if any is due. */
static int send_command(struct sync_conn *c, bool *ret_more)
{
        struct ledger_node_seqs seqs;
        struct sync_msg msg = { 0 };
        struct error err = { 0 };
        int r = ledger_node_seqs(c->server->ledger, c->node, &seqs, &err);

        *ret_more = false;
        if (r < 0 || c->next_command > seqs.last_command_seq)
                return r;
        r = ledger_command_load(c->server->ledger, c->node, c->next_command, &msg, &err);
        if (r < 0) {
                log_error("ledger: sync: cannot read the journal", "node=%s error=\"%s\"", c->node, err.msg);
                return r;
        }
        r = send_msg(c, &msg);
        sync_msg_clear(&msg);
        if (r == 0) {
                c->next_command++;
                *ret_more = c->next_command <= seqs.last_command_seq;
        }
        return r;
}

/* One message a call: the handshake, the errors, the event-ack, then the
 * journal. Returns -1 to close. */
static int writable(struct sync_conn *c)
{
        bool more = false;
        int r = 0;

        if (c->challenge_due) {
                struct sync_msg msg = { .kind = SYNC_CHALLENGE };
                c->challenge_due = false;
                r = send_msg(c, &msg);
                more = true;
        } else if (c->n_errors > 0) {
                struct sync_error e = c->errors[0];
                memmove(c->errors, c->errors + 1, --c->n_errors * sizeof(c->errors[0]));
                r = send_error(c, &e);
                more = true;
        } else if (c->closing) {
                lws_close_reason(c->wsi, c->close_code, (unsigned char *)c->close_reason, strlen(c->close_reason));
                return -1;
        } else if (c->welcome_due) {
                struct ledger_node_seqs seqs;
                struct sync_msg msg = { .kind = SYNC_WELCOME };
                c->welcome_due = false;
                r = ledger_node_seqs(c->server->ledger, c->node, &seqs, NULL);
                msg.last_event_seq = seqs.last_event_seq;
                if (r == 0)
                        r = send_msg(c, &msg);
                more = true;
        } else if (c->established && c->event_ack > 0) {
                struct sync_msg msg = { .kind = SYNC_EVENT_ACK, .seq = c->event_ack };
                c->event_ack = 0;
                r = send_msg(c, &msg);
                more = true;
        } else if (c->established) {
                r = send_command(c, &more);
        }
        if (r < 0)
                return -1;
        if (more)
                lws_callback_on_writable(c->wsi);
        return 0;
}

void ledger_sync_wake(struct ledger_server *server)
{
        for (struct sync_conn *c = server->conns; c; c = c->next)
                if (c->established)
                        lws_callback_on_writable(c->wsi);
}

static bool path_is_sync(struct lws *wsi)
{
        char path[16];

        return lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) > 0 && strcmp(path, "/sync") == 0;
}

static void conn_free(struct sync_conn *c)
{
        struct sync_conn **p = &c->server->conns;

        while (*p && *p != c)
                p = &(*p)->next;
        if (*p)
                *p = c->next;
        sync_session_free(c->session);
        free(c->rx);
        free(c->tx);
        free(c);
}

int ledger_sync_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct sync_ws *ws = user;
        struct ledger_server *server;
        struct sync_conn *c;

        switch (reason) {
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                return path_is_sync(wsi) ? 0 : 1;
        case LWS_CALLBACK_ESTABLISHED:
                server = server_of(wsi);
                c = calloc(1, sizeof(*c));
                if (!c)
                        return -1;
                c->server = server;
                c->wsi = wsi;
                c->next = server->conns;
                server->conns = c;
                ws->conn = c;
                return 0;
        case LWS_CALLBACK_RECEIVE:
                if (ws->conn)
                        receive_fragment(ws->conn, in, len);
                return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
                return ws->conn ? writable(ws->conn) : -1;
        case LWS_CALLBACK_CLOSED:
                if (ws->conn) {
                        if (ws->conn->established)
                                log_info("ledger: sync: node disconnected", "node=%s", ws->conn->node);
                        conn_free(ws->conn);
                        ws->conn = NULL;
                }
                return 0;
        default:
                return 0;
        }
}
