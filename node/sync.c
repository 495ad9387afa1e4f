/* The sync client: the websocket to the ledger (libwebsockets on vpsd's
 * libuv loop), the handshake and per-message MACs of the codec's session,
 * and the commands applied from the journal (node/sync_journal.h). */
#include "sync.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "billing-sync/sync_canon.h"
#include "billing-sync/sync_codec.h"
#include "common/base64url.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lws_server.h"
#include "common/util.h"
#include "iso/iso.h"
#include "node/config.h"
#include "node/logbook.h"
#include "node/outbox.h"
#include "node/secret.h"
#include "node/spec.h"
#include "node/sync_journal.h"

#define SYNC_SUBPROTOCOL "vpsd-sync.1"
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define EVENTS_IN_FLIGHT 64     /* events sent and not yet acked, at most */
#define COMMANDS_RUNNING_MAX 64 /* commands being applied at once */
#define BUSY_RETRY_MS 1000      /* a service busy with another operation is tried again */
#define USAGE_BUCKET 300
#define BATCH_WINDOW_MS 2       /* commands wait this long for more to journal with them */
#define ACK_WINDOW_MS 3         /* acks wait this long to share one fsync (group commit) */

struct out {
        struct out *next;
        size_t len;
        unsigned char buf[]; /* LWS_PRE bytes, then the message */
};

struct running {
        struct sync_client *client;
        struct sync_msg cmd; /* kind, seq, service: what the result names */
};

struct sync_client {
        uv_loop_t *loop;
        struct store *store;
        struct guests *guests;
        struct leases *leases;
        struct iso_store *isos;
        char host[256], path[256];
        unsigned port;
        char node_id[SYNC_NODE_ID_MAX + 1];
        char ca_file[PATH_MAX];
        unsigned usage_interval, sample_interval;
        uint8_t key[SYNC_KEY_SIZE];
        uint8_t seal_key[SEAL_KEY_SIZE];

        struct lws_context *lws;
        struct lws *wsi;
        struct sync_session *session;
        /* The message being received, and whether to drop it whole. */
        char *rx;
        size_t rx_len;
        bool rx_refused;
        int rx_refusal;
        struct out *out_head, *out_tail;
        size_t out_count;

        /* Commands received and checked, journaled at the next kick with
         * everything else of that turn in one transaction. */
        struct sync_msg **pending;
        size_t n_pending, pending_cap;
        int64_t received_upto;    /* the last command seq journaled or pending */
        int64_t acked_upto;       /* command seq acked in this session */
        int64_t events_sent_upto; /* event seq sent in this session */
        int64_t events_acked_upto;
        unsigned backoff_ms;
        uv_timer_t reconnect_timer, kick_timer, usage_timer, ack_timer;
        unsigned timers_open;
        int64_t running_seqs[COMMANDS_RUNNING_MAX];
        size_t n_running;
        bool busy_wait; /* a command waits for a service's lock */
        bool close_after_send; /* a fatal refusal: close once it is written */
        bool stopping;
        bool established;
        int64_t connected_since;
        char last_error[256];
};

static void schedule_reconnect(struct sync_client *c);
static void kick(struct sync_client *c);
static void kick_batch(struct sync_client *c);

/* --- the key --- */

static int key_load(const char *path, uint8_t key[SYNC_KEY_SIZE], struct error *err)
{
        char text[128];
        struct stat st;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return error_set_errno(err, -errno, "ledger_key_file `%s`", path);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return error_set(err, -EINVAL, "ledger_key_file `%s`: not a regular file", path);
        }
        if ((st.st_mode & 077) || st.st_uid != geteuid()) {
                close(fd);
                return error_set(err, -EPERM, "ledger_key_file `%s`: must be mode 0600 and owned by vpsd's user", path);
        }
        n = read(fd, text, sizeof(text) - 1);
        close(fd);
        if (n < 0)
                return error_set_errno(err, -errno, "ledger_key_file `%s`", path);
        text[n] = '\0';
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
                text[--n] = '\0';
        if (base64url_decode(text, (size_t)n, key, SYNC_KEY_SIZE) != SYNC_KEY_SIZE) {
                secret_wipe(text, sizeof(text));
                return error_set(err, -EINVAL, "ledger_key_file `%s`: not base64url of %d bytes", path,
                                 SYNC_KEY_SIZE);
        }
        secret_wipe(text, sizeof(text));
        return 0;
}

/* --- sending --- */

static void out_clear(struct sync_client *c)
{
        while (c->out_head) {
                struct out *o = c->out_head;
                c->out_head = o->next;
                secret_wipe(o->buf, LWS_PRE + o->len);
                free(o);
        }
        c->out_tail = NULL;
        c->out_count = 0;
}

/* Builds msg in the session and queues it; written when the socket is. */
static int send_msg(struct sync_client *c, struct sync_msg *msg)
{
        struct error err = { 0 };
        char *text = NULL;
        size_t len = 0;
        struct out *o;
        int r;

        if (!c->wsi || !c->session)
                return -ENOTCONN;
        r = sync_session_build(c->session, msg, &text, &len, &err);
        if (r < 0) {
                log_error("sync: cannot build a message", "kind=%s error=\"%s\"", sync_kind_name(msg->kind), err.msg);
                return r;
        }
        o = malloc(sizeof(*o) + LWS_PRE + len);
        if (!o) {
                secret_wipe(text, len);
                free(text);
                return -ENOMEM;
        }
        o->next = NULL;
        o->len = len;
        memcpy(o->buf + LWS_PRE, text, len);
        secret_wipe(text, len);
        free(text);
        if (c->out_tail)
                c->out_tail->next = o;
        else
                c->out_head = o;
        c->out_tail = o;
        c->out_count++;
        lws_callback_on_writable(c->wsi);
        return 0;
}

static void send_error(struct sync_client *c, int r, const char *reason)
{
        struct sync_msg msg = { .kind = SYNC_ERROR };

        str_copy(msg.code, sizeof(msg.code), sync_reject_code(r));
        snprintf(msg.reason, sizeof(msg.reason), "%s", reason);
        send_msg(c, &msg);
}

/* Acks every command finished since the last ack (acks are cumulative:
 * one per seq, in order, each telling its own result). */
static void flush_acks(struct sync_client *c)
{
        struct error err = { 0 };
        int64_t upto;

        if (!c->established || journal_finished_upto(c->store, &upto, &err) < 0 || upto <= c->acked_upto)
                return;
        /* An ack promises the result survives anything, power loss too. */
        if (journal_make_durable(c->store, &err) < 0) {
                log_error("sync: cannot make results durable; acks wait", "error=\"%s\"", err.msg);
                return;
        }
        /* Acks are cumulative: a run of applied commands needs only its
         * last; a failed one is acked on its own, with why. */
        for (int64_t seq = c->acked_upto + 1; seq <= upto; seq++) {
                struct sync_msg ack = { .kind = SYNC_COMMAND_ACK, .seq = seq };
                bool finished;

                if (journal_outcome(c->store, seq, &finished, ack.result, ack.error, &err) < 0 || !finished)
                        break;
                if (seq < upto && strcmp(ack.result, "applied") == 0)
                        continue;
                if (send_msg(c, &ack) < 0)
                        break;
                c->acked_upto = seq;
        }
}

static void on_ack_timer(uv_timer_t *t)
{
        flush_acks(t->data);
}

/* Acks go out ACK_WINDOW_MS after the first result that waits for one:
 * the results of that window share one fsync. */
static void send_acks(struct sync_client *c)
{
        if (c->established && !c->stopping && !uv_is_active((uv_handle_t *)&c->ack_timer))
                uv_timer_start(&c->ack_timer, on_ack_timer, ACK_WINDOW_MS, 0);
}

static bool send_event(struct sync_msg *event, void *userdata)
{
        struct sync_client *c = userdata;

        if (send_msg(c, event) < 0)
                return false;
        c->events_sent_upto = event->seq;
        return true;
}

/* Sends events from the outbox, at most EVENTS_IN_FLIGHT unacked. */
static void send_events(struct sync_client *c)
{
        struct error err = { 0 };
        int64_t in_flight = c->events_sent_upto - c->events_acked_upto;

        if (!c->established || in_flight >= EVENTS_IN_FLIGHT)
                return;
        if (outbox_each_pending(c->store, c->events_sent_upto, (unsigned)(EVENTS_IN_FLIGHT - in_flight), c->seal_key,
                                send_event, c, &err) < 0)
                log_error("sync: cannot read the outbox", "error=\"%s\"", err.msg);
}

/* --- applying commands --- */

static bool is_running(struct sync_client *c, int64_t seq)
{
        for (size_t i = 0; i < c->n_running; i++)
                if (c->running_seqs[i] == seq)
                        return true;
        return false;
}

static void running_remove(struct sync_client *c, int64_t seq)
{
        for (size_t i = 0; i < c->n_running; i++)
                if (c->running_seqs[i] == seq) {
                        c->running_seqs[i] = c->running_seqs[--c->n_running];
                        return;
                }
}

static void maybe_free(struct sync_client *c);

static void finish(struct sync_client *c, const struct sync_msg *cmd, int status, const char *error,
                   const char *root_password)
{
        struct error err = { 0 };

        if (journal_finish(c->store, cmd, status == 0, status == 0 ? NULL : error, root_password, c->seal_key,
                           time_now_wall(), &err) < 0)
                log_error("sync: cannot record a command's result", "seq=%" PRId64 " error=\"%s\"", cmd->seq,
                          err.msg);
        else
                log_info("sync: command done", "seq=%" PRId64 " kind=%s service=%s result=%s%s%s", cmd->seq,
                         sync_kind_name(cmd->kind), cmd->service[0] ? cmd->service : "-",
                         status == 0 ? "applied" : "failed", status == 0 ? "" : " error=", status == 0 ? "" : error);
}

static void command_done(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct running *run = userdata;
        struct sync_client *c = run->client;
        struct json_object *password = NULL;

        if (status == -EBUSY) {
                /* Another operation holds the service: try again shortly. */
                c->busy_wait = true;
        } else {
                if (status == 0 && result)
                        json_object_object_get_ex(result, "root_password", &password);
                finish(c, &run->cmd, status, err ? err->msg : "failed",
                       password ? json_object_get_string(password) : NULL);
        }
        running_remove(c, run->cmd.seq);
        free(run);
        kick(c);
        maybe_free(c);
}

static int apply_provision(struct sync_client *c, const struct sync_msg *cmd, const char *actor, struct running *run,
                           struct error *err)
{
        struct service_spec *spec = NULL;
        int r = spec_parse(cmd->spec, strlen(cmd->spec), &spec, err);

        return r < 0 ? r : guest_provision(c->guests, spec, actor, command_done, run, err);
}

static int apply_reinstall(struct sync_client *c, const struct sync_msg *cmd, const char *actor,
                           struct running *run, struct error *err)
{
        struct guest_reinstall_request req = {
                .template_name = cmd->template_name,
                .replace_ssh_keys = true,
                .ssh_keys = (const char *const *)cmd->ssh_keys,
                .n_ssh_keys = cmd->n_ssh_keys,
                .root_password = cmd->root_password[0] ? cmd->root_password : NULL,
        };

        return guest_reinstall(c->guests, cmd->service, &req, actor, command_done, run, err);
}

static int apply_resize(struct sync_client *c, const struct sync_msg *cmd, const char *actor, struct running *run,
                        struct error *err)
{
        cleanup_json struct json_object *obj = NULL;
        struct spec_plan plan;
        int r = json_parse_object(cmd->plan, strlen(cmd->plan), &obj, err);

        if (r == 0)
                r = spec_plan_from_json("plan", obj, &plan, err);
        return r < 0 ? r : guest_resize(c->guests, cmd->service, &plan, cmd->confirm_disk_shrink, actor, command_done,
                                        run, err);
}

static int apply_policy(struct sync_client *c, const struct sync_msg *cmd, const char *actor, struct error *err)
{
        cleanup_json struct json_object *changes = json_object_new_object();
        struct lease_policy policy;
        char detail[128];
        int r;

        json_object_object_add(changes, "grace_s", json_object_new_int64(cmd->grace_seconds));
        json_object_object_add(changes, "retention_s", json_object_new_int64(cmd->retention_seconds));
        json_object_object_add(changes, "autonomous_removal", json_object_new_boolean(cmd->autonomous_removal));
        r = lease_policy_update(c->store, changes, &policy, err);
        /* The ISO quota every account has on this node unless given its own. */
        if (r == 0 && cmd->iso_quota_bytes > 0)
                r = c->isos ? iso_quota_set(c->isos, NULL, cmd->iso_quota_bytes, err)
                            : error_set(err, -EOPNOTSUPP, "set-policy: this node has no ISO store");
        if (r < 0)
                return r;
        snprintf(detail, sizeof(detail),
                 "grace_s=%" PRId64 " retention_s=%" PRId64 " autonomous_removal=%s iso_quota_bytes=%" PRId64,
                 policy.grace_s, policy.retention_s, policy.autonomous_removal ? "true" : "false",
                 cmd->iso_quota_bytes);
        logbook_audit(c->store, actor, "policy", "", "ok", detail);
        return 0;
}

static const struct {
        const char *name;
        enum guest_power action;
} power_actions[] = {
        { "start", GUEST_START }, { "stop", GUEST_STOP }, { "restart", GUEST_RESTART }, { "force-off", GUEST_FORCE_OFF }
};

static bool at_once(enum sync_kind kind)
{
        return kind == SYNC_TRANSFER || kind == SYNC_SET_POLICY || kind == SYNC_ISO_APPROVE;
}

/* ISO rejections and deletions remove a file as well as a row: applied,
 * then finished (a crash between the two is found in the audit log). */
static int apply_iso_removal(struct sync_client *c, const struct sync_msg *cmd, const char *actor,
                             struct error *err)
{
        int r = cmd->kind == SYNC_ISO_REJECT ? iso_reject(c->isos, cmd->iso, cmd->reason, actor, err)
                                             : iso_remove(c->isos, cmd->iso, actor, err);

        if (r == -EBUSY)
                return r;
        finish(c, cmd, r, err->msg, NULL);
        return 1;
}

/* The commands that are only a change of records: applied and finished
 * in one transaction, so a crash leaves them either not begun or done. */
static int apply_at_once(struct sync_client *c, const struct sync_msg *cmd, const char *actor, struct error *err)
{
        sqlite3 *db = store_db(c->store);
        struct error ferr = { 0 };
        int r;

        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return error_set(err, -EIO, "journal: %s", sqlite3_errmsg(db));
        if (cmd->kind == SYNC_TRANSFER)
                r = guest_transfer(c->guests, cmd->service, cmd->account_id, actor, err);
        else if (cmd->kind == SYNC_ISO_APPROVE)
                r = iso_approve(c->isos, cmd->iso, cmd->account_id, actor, err);
        else
                r = apply_policy(c, cmd, actor, err);
        if (r == -EBUSY) {
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
                return r;
        }
        /* A refusal is an outcome too: recorded with the command. */
        if (journal_finish(c->store, cmd, r == 0, r == 0 ? NULL : err->msg, NULL, c->seal_key, time_now_wall(),
                           &ferr) < 0 ||
            sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK) {
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
                return error_set(err, -EIO, "journal: %s", ferr.msg[0] ? ferr.msg : sqlite3_errmsg(db));
        }
        if (cmd->kind == SYNC_SET_POLICY && r == 0)
                leases_kick(c->leases);
        log_info("sync: command done", "seq=%" PRId64 " kind=%s result=%s", cmd->seq, sync_kind_name(cmd->kind),
                 r == 0 ? "applied" : "failed");
        return 1;
}

/* Starts cmd. 0: running (command_done will be called, maybe already);
 * 1: done at once (synchronous kinds); < 0: refused, err says why. */
static int apply(struct sync_client *c, const struct sync_msg *cmd, struct running *run, struct error *err)
{
        char actor[40];

        journal_actor(cmd->seq, actor);
        switch (cmd->kind) {
        case SYNC_PROVISION:
                return apply_provision(c, cmd, actor, run, err);
        case SYNC_RENEW:
                return lease_renew(c->leases, cmd->service, cmd->paid_until, actor, command_done, run, err);
        case SYNC_SUSPEND:
                return guest_suspend(c->guests, cmd->service,
                                     strcmp(cmd->reason, "operator") == 0 ? GUEST_SUSPEND_OPERATOR
                                                                           : GUEST_SUSPEND_LEDGER,
                                     cmd->reason, actor, command_done, run, err);
        case SYNC_UNSUSPEND:
                return guest_unsuspend(c->guests, cmd->service, actor, command_done, run, err);
        case SYNC_TERMINATE:
                return guest_terminate(c->guests, cmd->service, actor, command_done, run, err);
        case SYNC_POWER:
                for (size_t i = 0; i < ARRAY_SIZE(power_actions); i++)
                        if (strcmp(cmd->action, power_actions[i].name) == 0)
                                return guest_power(c->guests, cmd->service, power_actions[i].action, actor,
                                                   command_done, run, err);
                return error_set(err, -EINVAL, "power: unknown action `%s`", cmd->action);
        case SYNC_REINSTALL:
                return apply_reinstall(c, cmd, actor, run, err);
        case SYNC_RESIZE:
                return apply_resize(c, cmd, actor, run, err);
        case SYNC_TRANSFER:
        case SYNC_SET_POLICY:
                return apply_at_once(c, cmd, actor, err);
        case SYNC_ISO_APPROVE:
        case SYNC_ISO_REJECT:
        case SYNC_ISO_DELETE:
        case SYNC_ISO_MOUNT:
        case SYNC_ISO_EJECT:
                if (!c->isos)
                        return error_set(err, -EOPNOTSUPP, "%s: this node has no ISO store",
                                         sync_kind_name(cmd->kind));
                if (cmd->kind == SYNC_ISO_APPROVE)
                        return apply_at_once(c, cmd, actor, err);
                if (cmd->kind == SYNC_ISO_MOUNT)
                        return iso_mount(c->isos, cmd->service, cmd->iso, actor, command_done, run, err);
                if (cmd->kind == SYNC_ISO_EJECT)
                        return iso_eject(c->isos, cmd->service, actor, command_done, run, err);
                return apply_iso_removal(c, cmd, actor, err);
        default:
                return error_set(err, -EOPNOTSUPP, "%s: not supported by this node", sync_kind_name(cmd->kind));
        }
}

/* Whether applying cmd again ends where applying it once does: those are
 * applied again when a crash cut them short (a renew whose unsuspend did
 * not happen yet must still lift it); the others are looked up in the
 * audit log first, and finished, not repeated, when they took effect. */
static bool idempotent(enum sync_kind kind)
{
        return kind == SYNC_RENEW || kind == SYNC_SUSPEND || kind == SYNC_UNSUSPEND;
}

struct scan {
        struct sync_client *c;
        char held[COMMANDS_RUNNING_MAX * 2][37]; /* services with an earlier open command */
        size_t n_held;
};

static bool service_held(struct scan *s, const char *uuid)
{
        for (size_t i = 0; i < s->n_held; i++)
                if (strcmp(s->held[i], uuid) == 0)
                        return true;
        return false;
}

static void start_command(struct sync_client *c, int64_t seq, bool applying, const struct sync_msg *cmd)
{
        struct error err = { 0 };
        struct running *run;
        int r;

        if (applying && !idempotent(cmd->kind)) {
                bool found = false, ok = false;
                char why[SYNC_TEXT_MAX + 1];

                if (journal_audit_outcome(c->store, seq, &found, &ok, why, &err) == 0 && found) {
                        /* It took effect before the crash: finished, not
                         * applied again (a new root password is lost). */
                        finish(c, cmd, ok ? 0 : -EIO, why, NULL);
                        return;
                }
        }
        /* Marked, so that a crash is found out at the next start; those
         * applied again anyway need no mark. */
        if (!applying && !idempotent(cmd->kind) && journal_mark_applying(c->store, seq, &err) < 0) {
                log_error("sync: cannot mark a command", "seq=%" PRId64 " error=\"%s\"", seq, err.msg);
                return;
        }
        run = calloc(1, sizeof(*run));
        if (!run)
                return;
        run->client = c;
        run->cmd.kind = cmd->kind;
        run->cmd.seq = seq;
        str_copy(run->cmd.service, sizeof(run->cmd.service), cmd->service);
        c->running_seqs[c->n_running++] = seq;
        r = apply(c, cmd, run, &err);
        if (r == 0)
                return; /* command_done comes (or came) */
        running_remove(c, seq);
        free(run);
        if (r == -EBUSY) {
                c->busy_wait = true;
                return;
        }
        if (r < 0 && at_once(cmd->kind)) /* the store failed: tried again at the next start */
                log_error("sync: cannot apply a command", "seq=%" PRId64 " error=\"%s\"", seq, err.msg);
        else if (r < 0)
                finish(c, cmd, r, err.msg, NULL);
}

static bool consider(int64_t seq, bool applying, const struct sync_msg *cmd, void *userdata)
{
        struct scan *s = userdata;
        struct sync_client *c = s->c;
        bool held = cmd->service[0] && service_held(s, cmd->service);

        if (cmd->service[0] && !held && s->n_held < ARRAY_SIZE(s->held))
                str_copy(s->held[s->n_held++], sizeof(s->held[0]), cmd->service);
        if (held || is_running(c, seq))
                return true;
        if (c->n_running >= COMMANDS_RUNNING_MAX || s->n_held >= ARRAY_SIZE(s->held))
                return false;
        start_command(c, seq, applying, cmd);
        return true;
}

/* Starts every open command whose service has no earlier open one. */
static void run_commands(struct sync_client *c)
{
        struct scan *s = calloc(1, sizeof(*s));
        struct error err = { 0 };

        if (!s)
                return;
        s->c = c;
        c->busy_wait = false;
        if (journal_open_each(c->store, consider, s, &err) < 0)
                log_error("sync: cannot read the journal", "error=\"%s\"", err.msg);
        free(s);
}

/* Journals what arrived since the last turn; with the commands that can
 * start now, one transaction: a batch of renews costs one commit. */
static void journal_pending(struct sync_client *c)
{
        struct error err = { 0 };
        size_t i;

        for (i = 0; i < c->n_pending; i++) {
                if (journal_add(c->store, c->pending[i], time_now_wall(), &err) < 0) {
                        log_error("sync: cannot journal a command; the ledger sends it again",
                                  "seq=%" PRId64 " error=\"%s\"", c->pending[i]->seq, err.msg);
                        break;
                }
        }
        if (i < c->n_pending) {
                /* What was not journaled comes again after a reconnect. */
                journal_last(c->store, &c->received_upto, NULL);
                if (c->wsi) {
                        c->close_after_send = true;
                        lws_callback_on_writable(c->wsi);
                }
        }
        for (i = 0; i < c->n_pending; i++)
                c->pending[i] = sync_msg_free(c->pending[i]);
        c->n_pending = 0;
}

static void on_kick(uv_timer_t *t)
{
        struct sync_client *c = t->data;
        sqlite3 *db = store_db(c->store);
        bool tx = sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) == SQLITE_OK;

        journal_pending(c);
        run_commands(c);
        if (tx && sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK) {
                log_error("sync: cannot commit the journal", "error=\"%s\"", sqlite3_errmsg(db));
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
        }
        send_acks(c);
        send_events(c);
        if (c->busy_wait && !c->stopping)
                uv_timer_start(&c->kick_timer, on_kick, BUSY_RETRY_MS, 0);
}

/* Runs the journal, the acks and the outbox on the loop's next turn: never
 * inside a guest callback that may have come before its call returned. */
static void kick(struct sync_client *c)
{
        if (!c->stopping)
                uv_timer_start(&c->kick_timer, on_kick, 0, 0);
}

/* A command that arrives waits up to BATCH_WINDOW_MS for the ones behind
 * it: a ledger catching up sends many, and a batch costs one commit. */
static void kick_batch(struct sync_client *c)
{
        if (!c->stopping && (!uv_is_active((uv_handle_t *)&c->kick_timer) ||
                             uv_timer_get_due_in(&c->kick_timer) > BATCH_WINDOW_MS))
                uv_timer_start(&c->kick_timer, on_kick, BATCH_WINDOW_MS, 0);
}

/* --- receiving --- */

/* Takes cmd (true) when it is the next command: it is journaled at the
 * next kick, before anything is acked. */
static bool on_command(struct sync_client *c, struct sync_msg *cmd)
{
        struct error err = { 0 };
        int r = sync_seq_check(c->received_upto, cmd->seq, &err);

        if (r == 1) {
                /* Sent again after a lost ack: acked again once finished,
                 * never applied twice. */
                if (cmd->seq <= c->acked_upto) {
                        struct sync_msg ack = { .kind = SYNC_COMMAND_ACK, .seq = cmd->seq };
                        bool finished;
                        if (journal_outcome(c->store, cmd->seq, &finished, ack.result, ack.error, &err) == 0 &&
                            finished)
                                send_msg(c, &ack);
                }
                return false;
        }
        if (r == 0 && array_reserve(&c->pending, &c->pending_cap, c->n_pending + 1, sizeof(*c->pending)) < 0)
                r = error_set(&err, -ENOMEM, "out of memory");
        if (r < 0) {
                log_warn("sync: command refused", "seq=%" PRId64 " kind=%s code=%s reason=\"%s\"", cmd->seq,
                         sync_kind_name(cmd->kind), sync_reject_code(r), err.msg);
                send_error(c, r, err.msg);
                return false;
        }
        log_debug("sync: command received", "seq=%" PRId64 " kind=%s service=%s", cmd->seq,
                  sync_kind_name(cmd->kind), cmd->service[0] ? cmd->service : "-");
        c->pending[c->n_pending++] = cmd;
        c->received_upto = cmd->seq;
        kick_batch(c);
        return true;
}

static void queue_inventory(struct sync_client *c)
{
        struct sync_msg event = { .kind = SYNC_INVENTORY };
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct error err = { 0 };
        size_t cap = 0;

        if (store_prepare(c->store,
                          "SELECT uuid, state, coalesce(paid_until, 0) FROM services WHERE state != 'terminated' "
                          "ORDER BY id LIMIT ?1",
                          &stmt, &err) < 0)
                return;
        sqlite3_bind_int(stmt, 1, SYNC_INVENTORY_MAX);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
                struct sync_inventory_item *it;

                if (array_reserve(&event.services, &cap, event.n_services + 1, sizeof(*event.services)) < 0)
                        break;
                it = &event.services[event.n_services++];
                memset(it, 0, sizeof(*it));
                str_copy(it->service, sizeof(it->service), (const char *)sqlite3_column_text(stmt, 0));
                str_copy(it->state, sizeof(it->state), (const char *)sqlite3_column_text(stmt, 1));
                it->paid_until = sqlite3_column_int64(stmt, 2);
        }
        if (outbox_add(c->store, &event, &err) < 0)
                log_error("sync: cannot queue the inventory", "error=\"%s\"", err.msg);
        sync_msg_clear(&event);
}

static void on_established(struct sync_client *c, const struct sync_msg *welcome)
{
        struct error err = { 0 };

        c->established = true;
        c->backoff_ms = 0;
        c->connected_since = time_now_wall();
        c->last_error[0] = '\0';
        /* What the ledger stored is done with; the rest is (re)sent. */
        if (outbox_acked(c->store, welcome->last_event_seq, time_now_wall(), &err) < 0)
                log_error("sync: cannot record acked events", "error=\"%s\"", err.msg);
        c->events_sent_upto = c->events_acked_upto = welcome->last_event_seq;
        if (!c->n_pending)
                journal_last(c->store, &c->received_upto, NULL);
        c->acked_upto = 0;
        if (journal_finished_upto(c->store, &c->acked_upto, &err) == 0 && c->acked_upto > 0)
                c->acked_upto--; /* the last finished one is acked again: its ack may have been lost */
        log_info("sync: connected to the ledger", "node=%s last_event_seq=%" PRId64, c->node_id,
                 welcome->last_event_seq);
        queue_inventory(c);
        kick(c);
}

static void on_message(struct sync_client *c, const char *buf, size_t len)
{
        struct sync_msg *msg = NULL;
        struct error err = { 0 };
        int r = sync_session_receive(c->session, buf, len, &msg, &err);

        if (r < 0) {
                log_warn("sync: message refused", "code=%s reason=\"%s\"", sync_reject_code(r), err.msg);
                snprintf(c->last_error, sizeof(c->last_error), "%s: %s", sync_reject_code(r), err.msg);
                send_error(c, r, err.msg);
                if (sync_reject_is_fatal(r) || sync_session_rejects(c->session) >= SYNC_REJECTS_MAX) {
                        c->close_after_send = true;
                        lws_callback_on_writable(c->wsi);
                }
                return;
        }
        switch (msg->kind) {
        case SYNC_CHALLENGE: {
                struct sync_msg auth = { .kind = SYNC_AUTH };
                /* Commands still waiting to be journaled count as received:
                 * they are journaled before anything else runs. */
                if (journal_last(c->store, &auth.last_command_seq, &err) == 0) {
                        if (c->n_pending && c->pending[c->n_pending - 1]->seq > auth.last_command_seq)
                                auth.last_command_seq = c->pending[c->n_pending - 1]->seq;
                        send_msg(c, &auth);
                }
                break;
        }
        case SYNC_WELCOME:
                on_established(c, msg);
                break;
        case SYNC_EVENT_ACK:
                if (msg->seq > c->events_sent_upto) {
                        send_error(c, -ENOMSG, "event-ack above the last event sent");
                        break;
                }
                if (outbox_acked(c->store, msg->seq, time_now_wall(), &err) < 0)
                        log_error("sync: cannot record acked events", "error=\"%s\"", err.msg);
                if (msg->seq > c->events_acked_upto)
                        c->events_acked_upto = msg->seq;
                kick(c);
                break;
        case SYNC_ERROR:
                log_warn("sync: the ledger refused a message", "code=%s reason=\"%s\"", msg->code, msg->reason);
                snprintf(c->last_error, sizeof(c->last_error), "ledger: %s: %s", msg->code, msg->reason);
                break;
        default:
                if (sync_kind_is_command(msg->kind) && on_command(c, msg))
                        return; /* kept until journaled */
                break;
        }
        sync_msg_free(msg);
}

/* Collects a message's fragments; one over SYNC_MSG_MAX is dropped whole
 * and refused once complete, never held. */
static void on_receive(struct sync_client *c, const void *in, size_t len)
{
        bool first = lws_is_first_fragment(c->wsi), last = lws_is_final_fragment(c->wsi) &&
                                                         !lws_remaining_packet_payload(c->wsi);

        if (first && !c->rx_len && !c->rx_refused && lws_frame_is_binary(c->wsi)) {
                c->rx_refused = true;
                c->rx_refusal = -EINVAL;
        }
        if (!c->rx_refused) {
                if (c->rx_len + len > SYNC_MSG_MAX) {
                        c->rx_refused = true;
                        c->rx_refusal = -E2BIG;
                } else {
                        char *grown = realloc(c->rx, c->rx_len + len + 1);
                        if (!grown) {
                                c->rx_refused = true;
                                c->rx_refusal = -ENOMEM;
                        } else {
                                c->rx = grown;
                                memcpy(c->rx + c->rx_len, in, len);
                                c->rx_len += len;
                        }
                }
        }
        if (!last)
                return;
        if (c->rx_refused) {
                const char *why = c->rx_refusal == -E2BIG ? "more than 524288 bytes" : "a binary message";
                log_warn("sync: message refused", "code=%s reason=\"%s\"", sync_reject_code(c->rx_refusal), why);
                send_error(c, c->rx_refusal == -ENOMEM ? -E2BIG : c->rx_refusal, why);
        } else {
                on_message(c, c->rx, c->rx_len);
        }
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        c->rx_refused = false;
}

/* --- the connection --- */

static void connection_gone(struct sync_client *c, const char *why)
{
        if (c->established)
                log_warn("sync: connection to the ledger lost", "reason=\"%s\"", why);
        else
                log_info("sync: cannot reach the ledger", "reason=\"%s\"", why);
        if (why[0] && !c->last_error[0])
                snprintf(c->last_error, sizeof(c->last_error), "%s", why);
        c->wsi = NULL;
        c->established = false;
        c->close_after_send = false;
        c->session = sync_session_free(c->session);
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        c->rx_refused = false;
        out_clear(c);
        schedule_reconnect(c);
}

static int callback_sync(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct sync_client *c = lws_get_opaque_user_data(wsi);
        struct error err = { 0 };

        (void)user;
        if (!c)
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        switch (reason) {
        case LWS_CALLBACK_CLIENT_ESTABLISHED: {
                struct sync_msg hello = { .kind = SYNC_HELLO };
                c->wsi = wsi;
                if (sync_session_new(SYNC_ROLE_NODE, c->node_id, c->key, &c->session, &err) < 0) {
                        log_error("sync: cannot start a session", "error=\"%s\"", err.msg);
                        return -1;
                }
                str_copy(hello.node, sizeof(hello.node), c->node_id);
                return send_msg(c, &hello) < 0 ? -1 : 0;
        }
        case LWS_CALLBACK_CLIENT_RECEIVE:
                on_receive(c, in, len);
                return 0;
        case LWS_CALLBACK_CLIENT_WRITEABLE: {
                struct out *o = c->out_head;
                if (!o)
                        return c->close_after_send ? -1 : 0;
                if (lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT) < (int)o->len)
                        return -1;
                c->out_head = o->next;
                if (!c->out_head)
                        c->out_tail = NULL;
                c->out_count--;
                secret_wipe(o->buf, LWS_PRE + o->len);
                free(o);
                if (c->out_head || c->close_after_send)
                        lws_callback_on_writable(wsi);
                else
                        send_events(c); /* the next window of the outbox */
                return 0;
        }
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                connection_gone(c, in && len ? (const char *)in : "connection error");
                return 0;
        case LWS_CALLBACK_CLIENT_CLOSED:
                connection_gone(c, "closed");
                return 0;
        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}

static const struct lws_protocols protocols[] = {
        { .name = SYNC_SUBPROTOCOL, .callback = callback_sync, .rx_buffer_size = 65536 },
        { 0 },
};

static void connect_now(struct sync_client *c)
{
        struct lws_client_connect_info ci;

        memset(&ci, 0, sizeof(ci));
        ci.context = c->lws;
        ci.address = c->host;
        ci.port = (int)c->port;
        ci.path = c->path;
        ci.host = c->host;
        ci.origin = c->host;
        ci.protocol = SYNC_SUBPROTOCOL;
        ci.ssl_connection = LCCSCF_USE_SSL;
        ci.opaque_user_data = c;
        ci.pwsi = &c->wsi;
        c->last_error[0] = '\0';
        if (!lws_client_connect_via_info(&ci)) {
                c->wsi = NULL;
                schedule_reconnect(c);
        }
}

static void on_reconnect(uv_timer_t *t)
{
        struct sync_client *c = t->data;

        if (!c->stopping && !c->wsi)
                connect_now(c);
}

/* Backoff from 0.5 s doubling to 30 s, with jitter so that a ledger's
 * restart is not met by every node in the same second. */
static void schedule_reconnect(struct sync_client *c)
{
        unsigned jitter;

        if (c->stopping)
                return;
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (c->backoff_ms > BACKOFF_MAX_MS)
                c->backoff_ms = BACKOFF_MAX_MS;
        jitter = (unsigned)(random() % (c->backoff_ms / 4 + 1));
        uv_timer_start(&c->reconnect_timer, on_reconnect, c->backoff_ms + jitter, 0);
}

/* --- usage reports --- */

/* Every 5-minute bucket sampled whole since the last report, one usage
 * event per service (at most SYNC_BUCKETS_MAX buckets each), and the
 * report's end, all in one transaction. */
static void report_usage(struct sync_client *c)
{
        cleanup_stmt sqlite3_stmt *since = NULL, *stmt = NULL, *mark = NULL;
        sqlite3 *db = store_db(c->store);
        int64_t now = time_now_wall(), from = 0;
        int64_t until = (now - c->sample_interval) / USAGE_BUCKET * USAGE_BUCKET;
        struct sync_msg event = { .kind = SYNC_USAGE };
        struct error err = { 0 };
        size_t cap = 0;
        int r;

        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                return;
        r = store_prepare(c->store, "SELECT CAST(value AS INTEGER) FROM node_facts WHERE key = 'usage_reported_until'",
                          &since, &err);
        if (r == 0 && sqlite3_step(since) == SQLITE_ROW)
                from = sqlite3_column_int64(since, 0);
        if (r == 0)
                r = store_prepare(c->store,
                                  "SELECT s.uuid, b.start, b.in_bytes, b.in_packets, b.out_bytes, b.out_packets "
                                  "FROM traffic_buckets b JOIN services s ON s.id = b.service_id "
                                  "WHERE b.size = ?1 AND b.start >= ?2 AND b.start + ?1 <= ?3 "
                                  "ORDER BY s.uuid, b.start",
                                  &stmt, &err);
        if (r == 0) {
                sqlite3_bind_int(stmt, 1, USAGE_BUCKET);
                sqlite3_bind_int64(stmt, 2, from);
                sqlite3_bind_int64(stmt, 3, until);
        }
        while (r == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
                const char *uuid = (const char *)sqlite3_column_text(stmt, 0);
                struct sync_bucket *b;

                if (event.n_buckets && (strcmp(event.service, uuid) != 0 || event.n_buckets == SYNC_BUCKETS_MAX)) {
                        r = outbox_add(c->store, &event, &err);
                        event.n_buckets = 0;
                }
                if (r < 0 || array_reserve(&event.buckets, &cap, event.n_buckets + 1, sizeof(*b)) < 0)
                        break;
                str_copy(event.service, sizeof(event.service), uuid);
                b = &event.buckets[event.n_buckets++];
                *b = (struct sync_bucket){ .start = sqlite3_column_int64(stmt, 1), .size = USAGE_BUCKET,
                                           .in_bytes = sqlite3_column_int64(stmt, 2),
                                           .in_packets = sqlite3_column_int64(stmt, 3),
                                           .out_bytes = sqlite3_column_int64(stmt, 4),
                                           .out_packets = sqlite3_column_int64(stmt, 5) };
        }
        if (r == 0 && event.n_buckets)
                r = outbox_add(c->store, &event, &err);
        if (r == 0)
                r = store_prepare(c->store,
                                  "INSERT OR REPLACE INTO node_facts (key, value, updated_at) "
                                  "VALUES ('usage_reported_until', ?1, ?2)",
                                  &mark, &err);
        if (r == 0) {
                sqlite3_bind_int64(mark, 1, until > from ? until : from);
                sqlite3_bind_int64(mark, 2, now);
                if (sqlite3_step(mark) != SQLITE_DONE)
                        r = -EIO;
        }
        sqlite3_exec(db, r == 0 ? STORE_TX_COMMIT : STORE_TX_ROLLBACK, NULL, NULL, NULL);
        if (r < 0)
                log_error("sync: cannot queue usage reports", "error=\"%s\"", err.msg);
        sync_msg_clear(&event);
        kick(c);
}

static void on_usage(uv_timer_t *t)
{
        report_usage(t->data);
}

/* An event queued anywhere in vpsd (a trigger, the lease scheduler, the
 * operator) goes out on the loop's next turn, after its transaction. */
static void on_store_change(void *userdata, int op, const char *db, const char *table, sqlite3_int64 rowid)
{
        (void)db;
        (void)rowid;
        if (op == SQLITE_INSERT && strcmp(table, "outbox") == 0)
                kick(userdata);
}

/* --- life --- */

int sync_start(uv_loop_t *loop, struct store *store, struct guests *guests, struct leases *leases,
               struct iso_store *isos, const struct sync_config *config, struct sync_client **ret,
               struct error *err)
{
        struct lws_context_creation_info info;
        struct sync_client *c = calloc(1, sizeof(*c));
        void *loops[] = { loop };
        static const void *const seal_label = "vpsd-sync/1 outbox-seal";
        size_t seal_label_len = strlen(seal_label);
        int r;

        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        *c = (struct sync_client){ .loop = loop, .store = store, .guests = guests, .leases = leases, .isos = isos,
                                   .usage_interval = config->usage_interval,
                                   .sample_interval = config->sample_interval };
        r = config_ledger_url(config->url, c->host, sizeof(c->host), &c->port, c->path, sizeof(c->path));
        if (r < 0) {
                free(c);
                return error_set(err, r, "ledger_url `%s`: not wss://HOST[:PORT][/PATH]", config->url);
        }
        str_copy(c->node_id, sizeof(c->node_id), config->node_id);
        str_copy(c->ca_file, sizeof(c->ca_file), config->ca_file);
        r = key_load(config->key_file, c->key, err);
        if (r < 0) {
                free(c);
                return r;
        }
        /* The outbox's secrets are sealed under a key of their own, made
         * from the enrolment key: the database alone opens none. */
        sync_hmac(c->key, sizeof(c->key), &seal_label, &seal_label_len, 1, c->seal_key);

        memset(&info, 0, sizeof(info));
        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.foreign_loops = loops;
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.client_ssl_ca_filepath = c->ca_file;
        info.uid = -1;
        info.gid = -1;
        info.timeout_secs = 20;
        lws_server_log_to("sync");
        c->lws = lws_create_context(&info);
        if (!c->lws) {
                secret_wipe(c, sizeof(*c));
                free(c);
                return error_set(err, -EIO, "libwebsockets: cannot make the ledger client (see its messages above)");
        }
        uv_timer_init(loop, &c->reconnect_timer);
        uv_timer_init(loop, &c->kick_timer);
        uv_timer_init(loop, &c->usage_timer);
        uv_timer_init(loop, &c->ack_timer);
        c->reconnect_timer.data = c->kick_timer.data = c->usage_timer.data = c->ack_timer.data = c;
        c->timers_open = 4;
        uv_timer_start(&c->usage_timer, on_usage, (uint64_t)c->usage_interval * 1000,
                       (uint64_t)c->usage_interval * 1000);
        sqlite3_update_hook(store_db(store), on_store_change, c);
        /* Commands journaled before a restart go on at once, ledger or not. */
        kick(c);
        connect_now(c);
        log_info("sync: started", "node=%s ledger=%s:%u%s", c->node_id, c->host, c->port, c->path);
        *ret = c;
        return 0;
}

struct json_object *sync_status(struct sync_client *c)
{
        struct json_object *o = json_object_new_object();
        int64_t last = 0, finished = 0, unacked = 0;

        if (!c) {
                json_object_object_add(o, "configured", json_object_new_boolean(false));
                return o;
        }
        journal_last(c->store, &last, NULL);
        journal_finished_upto(c->store, &finished, NULL);
        outbox_unacked_count(c->store, &unacked, NULL);
        json_object_object_add(o, "configured", json_object_new_boolean(true));
        json_object_object_add(o, "node_id", json_object_new_string(c->node_id));
        json_object_object_add(o, "connected", json_object_new_boolean(c->established));
        json_object_object_add(o, "connected_since", c->established ? json_object_new_int64(c->connected_since)
                                                                      : NULL);
        json_object_object_add(o, "last_command_seq", json_object_new_int64(last));
        json_object_object_add(o, "commands_finished_upto", json_object_new_int64(finished));
        json_object_object_add(o, "commands_running", json_object_new_int64((int64_t)c->n_running));
        json_object_object_add(o, "events_unacked", json_object_new_int64(unacked));
        json_object_object_add(o, "last_error", c->last_error[0] ? json_object_new_string(c->last_error) : NULL);
        return o;
}

static void timer_closed(uv_handle_t *h)
{
        struct sync_client *c = h->data;

        c->timers_open--;
        maybe_free(c);
}

/* The memory goes when the loop is done with it: timers closed and no
 * command still being applied. */
static void maybe_free(struct sync_client *c)
{
        if (!c->stopping || c->timers_open || c->n_running)
                return;
        for (size_t i = 0; i < c->n_pending; i++)
                sync_msg_free(c->pending[i]);
        free(c->pending);
        secret_wipe(c, sizeof(*c));
        free(c);
}

struct sync_client *sync_stop(struct sync_client *c)
{
        if (!c)
                return NULL;
        c->stopping = true;
        sqlite3_update_hook(store_db(c->store), NULL, NULL);
        /* Received is journaled: applied at the next start. */
        journal_pending(c);
        out_clear(c);
        if (c->lws) {
                lws_context_destroy(c->lws);
                c->lws = NULL;
        }
        c->wsi = NULL;
        c->session = sync_session_free(c->session);
        free(c->rx);
        c->rx = NULL;
        uv_close((uv_handle_t *)&c->reconnect_timer, timer_closed);
        uv_close((uv_handle_t *)&c->kick_timer, timer_closed);
        uv_close((uv_handle_t *)&c->usage_timer, timer_closed);
        uv_close((uv_handle_t *)&c->ack_timer, timer_closed);
        return NULL;
}
