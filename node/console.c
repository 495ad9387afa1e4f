#include "console.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/edge_link.h"
#include "common/log.h"
#include "common/util.h"
#include "node/command.h"
#include "node/console_cert.h"
#include "node/console_check.h"
#include "node/domain.h"
#include "iso/iso.h"

#define RESTART_MIN_MS 500
#define RESTART_MAX_MS 30000
#define STOP_DEADLINE_MS 10000 /* for the edge to stop when vpsd does */
#define FAILURE_WINDOW_S 60
#define FAILURE_TABLE_SIZE 4096
#define EDGE_ARGS_MAX 40

struct session {
        uint64_t edge_id;
        char uuid[37];
        int fd;              /* vpsd's copy of the console socket */
        int64_t opened_at;   /* monotonic seconds */
        bool closing;        /* CLOSE sent; waiting for the edge's CLOSED */
        struct session *next;
};

/* An ISO upload the edge is streaming into the store. */
struct upload_session {
        uint64_t edge_id;
        struct iso_upload *upload;
        struct upload_session *next;
};

struct failure {
        char address[EDGE_ADDRESS_MAX + 1];
        unsigned count;
        int64_t window_start;
};

struct console {
        uv_loop_t *loop;
        struct store *store;
        struct console_config config;
        char *strings;                 /* the config's strings, owned */
        struct ed25519_key *own_key;   /* vpsctl's tickets */
        struct ed25519_key *ledger_key;
        uv_process_t process;
        bool process_alive;
        struct edge_link *link;
        unsigned port;
        uv_timer_t restart, sweep;
        unsigned restart_ms;
        uint64_t started_ms;
        struct command *useradd;
        struct session *sessions;
        unsigned n_sessions;
        struct iso_store *isos;          /* may be NULL: no uploads */
        struct upload_session *uploads;
        struct failure failures[FAILURE_TABLE_SIZE];
        bool stopping;
        unsigned handles_open;
};

static void edge_spawn(struct console *c);

static int64_t mono_s(void) { return (int64_t)(time_now_mono_ms() / 1000); }

/* --- sessions --- */

static struct session *session_find(struct console *c, uint64_t id, struct session ***ret_link)
{
        for (struct session **p = &c->sessions; *p; p = &(*p)->next)
                if ((*p)->edge_id == id) {
                        if (ret_link)
                                *ret_link = p;
                        return *p;
                }
        return NULL;
}

static unsigned sessions_of(struct console *c, const char *uuid)
{
        unsigned n = 0;

        for (struct session *s = c->sessions; s; s = s->next)
                n += strcmp(s->uuid, uuid) == 0;
        return n;
}

/* Ends a session from vpsd's side: its copy shut down (the guest's socket
 * sees the end, and so does the edge's copy) and the edge told. */
static void session_end(struct console *c, struct session *s, const char *why)
{
        struct edge_msg m = { .type = EDGE_MSG_CLOSE, .session = s->edge_id };

        if (s->closing)
                return;
        s->closing = true;
        shutdown(s->fd, SHUT_RDWR);
        log_info("console session closed", "service=%s session=%llu why=\"%s\"", s->uuid,
                 (unsigned long long)s->edge_id, why);
        if (c->link)
                edge_link_send(c->link, &m, -1);
}

static void session_forget(struct console *c, uint64_t id)
{
        struct session **p, *s = session_find(c, id, &p);

        if (!s)
                return;
        *p = s->next;
        close(s->fd);
        c->n_sessions--;
        log_debug("console session ended", "service=%s session=%llu", s->uuid, (unsigned long long)id);
        free(s);
}

static void sessions_drop_all(struct console *c)
{
        while (c->sessions) {
                struct session *s = c->sessions;
                c->sessions = s->next;
                shutdown(s->fd, SHUT_RDWR);
                close(s->fd);
                free(s);
        }
        c->n_sessions = 0;
}

void console_close_service(struct console *c, const char *uuid, const char *why)
{
        if (!c)
                return;
        for (struct session *s = c->sessions; s; s = s->next)
                if (strcmp(s->uuid, uuid) == 0)
                        session_end(c, s, why);
}

/* --- uploads --- */

static struct upload_session *upload_find(struct console *c, uint64_t id, struct iso_upload *upload)
{
        for (struct upload_session *u = c->uploads; u; u = u->next)
                if ((upload && u->upload == upload) || (!upload && u->edge_id == id))
                        return u;
        return NULL;
}

static void upload_forget(struct console *c, struct upload_session *gone)
{
        for (struct upload_session **p = &c->uploads; *p; p = &(*p)->next)
                if (*p == gone) {
                        *p = gone->next;
                        free(gone);
                        return;
                }
}

/* The edge is gone or the console stops: nothing of an upload is kept. */
static void uploads_abort_all(struct console *c)
{
        while (c->uploads) {
                iso_upload_abort(c->uploads->upload);
                upload_forget(c, c->uploads);
        }
}

static void upload_answer(struct console *c, uint64_t edge_id, int status, const char *text)
{
        struct edge_msg m = { .type = EDGE_MSG_UPLOAD_RESULT, .session = edge_id, .status = (uint16_t)status };

        snprintf(m.text, sizeof(m.text), "%s", text);
        if (c->link)
                edge_link_send(c->link, &m, -1);
}

static void on_upload_result(struct iso_upload *upload, int status, const char *text, void *userdata)
{
        struct console *c = userdata;
        struct upload_session *u = upload_find(c, 0, upload);

        if (!u)
                return;
        upload_answer(c, u->edge_id, status, text);
        upload_forget(c, u);
}

void console_set_iso(struct console *c, struct iso_store *isos)
{
        if (c)
                c->isos = isos;
}

/* --- failed tickets per client address --- */

static struct failure *failure_slot(struct console *c, const char *address, bool create)
{
        struct failure *oldest = &c->failures[0];
        int64_t now = mono_s();

        for (size_t i = 0; i < FAILURE_TABLE_SIZE; i++) {
                struct failure *f = &c->failures[i];
                if (f->address[0] && now - f->window_start >= FAILURE_WINDOW_S)
                        f->address[0] = '\0';
                if (f->address[0] && strcmp(f->address, address) == 0)
                        return f;
                if (!f->address[0] || (oldest->address[0] && f->window_start < oldest->window_start))
                        oldest = f;
        }
        if (!create)
                return NULL;
        /* Full: the oldest window makes room (an attacker with many
         * addresses only forgets its own old failures). */
        str_copy(oldest->address, sizeof(oldest->address), address);
        oldest->count = 0;
        oldest->window_start = now;
        return oldest;
}

/* --- the edge's requests --- */

static int console_connect(struct console *c, const char *uuid, enum console_kind kind, struct error *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        cleanup_close int fd = -1;

        if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s/%s", c->config.run_dir, uuid,
                             kind == CONSOLE_VNC ? DOMAIN_VNC_SOCKET : DOMAIN_SERIAL_SOCKET) >= sizeof(sa.sun_path))
                return error_set(err, -ENAMETOOLONG, "console socket path too long");
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return error_set_errno(err, -errno, "socket");
        /* A unix socket connects at once or not at all (EAGAIN: its
         * backlog is full); nothing here waits. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return error_set_errno(err, -errno, "connect `%s`", sa.sun_path);
        return steal_fd(&fd);
}

static void refuse(struct console *c, const struct edge_msg *m, const char *why, bool counts)
{
        struct edge_msg r = { .type = EDGE_MSG_REFUSE, .session = m->session };
        struct failure *f;

        if (counts && (f = failure_slot(c, m->address, true)))
                f->count++;
        log_warn("console ticket refused", "address=%s kind=%s reason=\"%s\"", m->address,
                 console_kind_name(m->kind), why);
        edge_link_send(c->link, &r, -1);
}

static void on_open(struct console *c, const struct edge_msg *m)
{
        struct ed25519_key *keys[] = { c->own_key, c->ledger_key };
        struct edge_msg grant = { .type = EDGE_MSG_GRANT, .session = m->session };
        struct failure *f = failure_slot(c, m->address, false);
        struct error err = { 0 };
        struct session *s;
        struct ticket t;
        int64_t service_id;
        int fd;

        if (session_find(c, m->session, NULL)) {
                refuse(c, m, "the edge reused a session id", false);
                return;
        }
        if (f && f->count >= c->config.max_failed_tickets) {
                refuse(c, m, "too many failed tickets from this address", false);
                return;
        }
        if (c->n_sessions >= c->config.max_sessions) {
                refuse(c, m, "console sessions at their limit", false);
                return;
        }
        if (console_ticket_check(c->store, keys, ARRAY_SIZE(keys), m->ticket, m->kind, time_now_wall(), &t,
                                 &service_id, &err) < 0) {
                refuse(c, m, err.msg, true);
                return;
        }
        if (sessions_of(c, t.service) >= c->config.max_sessions_per_service) {
                char why[96];
                snprintf(why, sizeof(why), "service %s: its console sessions at their limit", t.service);
                refuse(c, m, why, false);
                return;
        }
        fd = console_connect(c, t.service, m->kind, &err);
        if (fd < 0) {
                char why[600];
                snprintf(why, sizeof(why), "service %s: %s", t.service, err.msg);
                refuse(c, m, why, false);
                return;
        }
        s = calloc(1, sizeof(*s));
        if (!s || edge_link_send(c->link, &grant, fd) < 0) {
                free(s);
                close(fd);
                return;
        }
        s->edge_id = m->session;
        s->fd = fd;
        s->opened_at = mono_s();
        memcpy(s->uuid, t.service, sizeof(s->uuid));
        s->next = c->sessions;
        c->sessions = s;
        c->n_sessions++;
        log_info("console session opened", "service=%s account=\"%s\" kind=%s address=%s session=%llu", t.service,
                 t.account, console_kind_name(m->kind), m->address, (unsigned long long)m->session);
}

static bool failed_too_often(struct console *c, const char *address)
{
        struct failure *f = failure_slot(c, address, false);

        return f && f->count >= c->config.max_failed_tickets;
}

static void upload_refuse(struct console *c, const struct edge_msg *m, int status, const char *text, const char *why,
                          bool counts)
{
        struct failure *f;

        if (counts && (f = failure_slot(c, m->address, true)))
                f->count++;
        log_warn("iso upload refused", "address=%s status=%d reason=\"%s\"", m->address, status, why);
        upload_answer(c, m->session, status, text);
}

/* Every bad ticket gets the same answer; the log says why. */
static void on_upload(struct console *c, const struct edge_msg *m)
{
        struct ed25519_key *keys[] = { c->own_key, c->ledger_key };
        struct edge_msg grant = { .type = EDGE_MSG_GRANT, .session = m->session };
        static const char bad_ticket[] = "the upload ticket is not valid";
        struct upload_session *u;
        struct error err = { 0 };
        struct iso_upload *upload;
        const char *text = NULL;
        struct ticket t;
        int fd = -1, status = 0;

        if (upload_find(c, m->session, NULL)) {
                upload_refuse(c, m, 400, "bad request", "the edge reused a session id", false);
                return;
        }
        if (failed_too_often(c, m->address)) {
                upload_refuse(c, m, 429, "too many refused tickets; try again in a minute",
                              "too many failed tickets from this address", false);
                return;
        }
        if (!c->isos) {
                upload_refuse(c, m, 503, "ISO uploads are off on this node", "no ISO store", false);
                return;
        }
        if (ticket_verify(m->ticket, strlen(m->ticket), keys, ARRAY_SIZE(keys), time_now_wall(), &t, &err) < 0 ||
            ticket_nonce_use(c->store, &t, time_now_wall(), &err) < 0) {
                upload_refuse(c, m, 403, bad_ticket, err.msg, true);
                return;
        }
        u = calloc(1, sizeof(*u));
        if (!u) {
                upload_refuse(c, m, 500, "the upload could not be started", "out of memory", false);
                return;
        }
        if (iso_upload_begin(c->isos, &t, m->text, on_upload_result, c, &fd, &upload, &status, &text, &err) < 0) {
                free(u);
                upload_refuse(c, m, status, text, err.msg, t.type != TICKET_ISO_UPLOAD);
                return;
        }
        u->edge_id = m->session;
        u->upload = upload;
        u->next = c->uploads;
        c->uploads = u;
        if (edge_link_send(c->link, &grant, fd) < 0) {
                iso_upload_abort(upload);
                upload_forget(c, u);
        }
        close(fd);
}

static void on_upload_end(struct console *c, const struct edge_msg *m)
{
        struct upload_session *u = upload_find(c, m->session, NULL);

        if (!u)
                return;
        if (m->type == EDGE_MSG_UPLOAD_DONE) {
                iso_upload_done(u->upload, m->size);
                return;
        }
        iso_upload_abort(u->upload);
        upload_forget(c, u);
}

static void on_message(const struct edge_msg *m, int fd, void *userdata)
{
        struct console *c = userdata;

        if (fd >= 0)
                close(fd); /* the edge never passes vpsd anything */
        switch (m->type) {
        case EDGE_MSG_READY:
                c->port = m->port;
                c->restart_ms = RESTART_MIN_MS;
                log_info("console ready", "address=%s port=%u", m->address, m->port);
                break;
        case EDGE_MSG_OPEN:
                on_open(c, m);
                break;
        case EDGE_MSG_CLOSED:
                session_forget(c, m->session);
                break;
        case EDGE_MSG_UPLOAD:
                on_upload(c, m);
                break;
        case EDGE_MSG_UPLOAD_DONE:
        case EDGE_MSG_UPLOAD_ABORT:
                on_upload_end(c, m);
                break;
        default:
                log_warn("console: unexpected message from the edge", "type=%d", (int)m->type);
                break;
        }
}

/* The edge closed its end or spoke nonsense: it is killed and restarted. */
static void on_lost(const struct error *err, void *userdata)
{
        struct console *c = userdata;

        if (!c->stopping)
                log_error("console: the edge's link is lost; killing it", "error=\"%s\"", err ? err->msg : "");
        c->link = edge_link_close(c->link);
        uploads_abort_all(c);
        /* While vpsd stops, the edge closing its end is it stopping. */
        if (c->process_alive && !c->stopping)
                uv_process_kill(&c->process, SIGKILL);
}

/* --- the edge process --- */

static void handle_closed(uv_handle_t *h)
{
        struct console *c = h->data;

        if (--c->handles_open == 0 && c->stopping) {
                ed25519_key_free(c->own_key);
                ed25519_key_free(c->ledger_key);
                free(c->strings);
                free(c);
        }
}

static void on_restart(uv_timer_t *t)
{
        edge_spawn(t->data);
}

static void on_stop_deadline(uv_timer_t *t)
{
        struct console *c = t->data;

        log_error("console: vpsd-edge did not stop in time; killing it", "after_ms=%u", STOP_DEADLINE_MS);
        if (c->process_alive)
                uv_process_kill(&c->process, SIGKILL);
}

static void on_edge_exit(uv_process_t *p, int64_t status, int term_signal)
{
        struct console *c = p->data;

        c->process_alive = false;
        c->port = 0;
        c->link = edge_link_close(c->link);
        sessions_drop_all(c);
        uploads_abort_all(c);
        uv_close((uv_handle_t *)p, handle_closed);
        if (c->stopping) {
                if (status || term_signal)
                        log_warn("console: vpsd-edge stopped badly", "status=%lld signal=%d", (long long)status,
                                 term_signal);
                else
                        log_info("console: vpsd-edge stopped");
                uv_close((uv_handle_t *)&c->restart, handle_closed);
                return;
        }
        log_error("console: vpsd-edge exited; restarting it", "status=%lld signal=%d restart_in_ms=%u",
                  (long long)status, term_signal, c->restart_ms);
        /* A crash loop backs off; an edge that served a minute starts over. */
        if (time_now_mono_ms() - c->started_ms > 60000)
                c->restart_ms = RESTART_MIN_MS;
        uv_timer_start(&c->restart, on_restart, c->restart_ms, 0);
        c->restart_ms = c->restart_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : c->restart_ms * 2;
}

static void edge_spawn(struct console *c)
{
        static const struct edge_link_callbacks callbacks = { on_message, on_lost };
        char port[16], idle[16], max[16], pending[16], per_address[16];
        const char *args[EDGE_ARGS_MAX + 1];
        uv_stdio_container_t stdio[4];
        uv_process_options_t options = { 0 };
        struct error err = { 0 };
        char *origins = NULL, *save = NULL;
        int sp[2], r;
        size_t n = 0;

        if (c->stopping)
                return;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                log_error("console: socketpair failed", "error=\"%s\"", strerror(errno));
                uv_timer_start(&c->restart, on_restart, RESTART_MAX_MS, 0);
                return;
        }
        snprintf(port, sizeof(port), "%u", c->config.port);
        snprintf(idle, sizeof(idle), "%u", c->config.idle_timeout);
        snprintf(max, sizeof(max), "%u", c->config.max_sessions);
        snprintf(pending, sizeof(pending), "%u", c->config.max_sessions < 256 ? c->config.max_sessions : 256);
        snprintf(per_address, sizeof(per_address), "%u", c->config.max_per_address);
        args[n++] = c->config.edge_path;
        args[n++] = "--link-fd", args[n++] = "3";
        args[n++] = "--listen", args[n++] = c->config.listen_address;
        args[n++] = "--port", args[n++] = port;
        args[n++] = "--cert", args[n++] = c->config.cert;
        args[n++] = "--key", args[n++] = c->config.key;
        args[n++] = "--web-dir", args[n++] = c->config.web_dir;
        args[n++] = "--user", args[n++] = c->config.user;
        args[n++] = "--idle-timeout", args[n++] = idle;
        args[n++] = "--max-sessions", args[n++] = max;
        args[n++] = "--max-pending", args[n++] = pending;
        args[n++] = "--max-per-address", args[n++] = per_address;
        args[n++] = "--log-level", args[n++] = c->config.log_level;
        origins = strdup(c->config.origins);
        for (char *o = origins ? strtok_r(origins, " ", &save) : NULL; o && n + 2 < EDGE_ARGS_MAX;
             o = strtok_r(NULL, " ", &save))
                args[n++] = "--origin", args[n++] = o;
        args[n] = NULL;

        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = 1;
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = 2;
        stdio[3].flags = UV_INHERIT_FD;
        stdio[3].data.fd = sp[1];
        options.file = c->config.edge_path;
        options.args = (char **)args;
        options.stdio = stdio;
        options.stdio_count = 4;
        options.exit_cb = on_edge_exit;
        c->process.data = c;
        r = uv_spawn(c->loop, &c->process, &options);
        free(origins);
        close(sp[1]);
        if (r < 0) {
                log_error("console: cannot start vpsd-edge", "path=%s error=\"%s\"", c->config.edge_path,
                          uv_strerror(r));
                close(sp[0]);
                uv_close((uv_handle_t *)&c->process, NULL);
                uv_timer_start(&c->restart, on_restart, RESTART_MAX_MS, 0);
                return;
        }
        c->handles_open++;
        c->process_alive = true;
        c->started_ms = time_now_mono_ms();
        if (edge_link_open(c->loop, sp[0], &callbacks, c, &c->link, &err) < 0) {
                log_error("console: link to vpsd-edge", "error=\"%s\"", err.msg);
                uv_process_kill(&c->process, SIGKILL);
        }
        log_info("console: vpsd-edge started", "pid=%d", c->process.pid);
}

static void on_useradd(int r, const struct error *err, const struct command_result *result, void *userdata)
{
        struct console *c = userdata;

        (void)result;
        c->useradd = NULL;
        if (r < 0)
                log_error("console: cannot create the edge's user", "user=%s error=\"%s\"", c->config.user,
                          err->msg);
        else
                log_info("console: created the edge's user", "user=%s", c->config.user);
        edge_spawn(c);
}

/* Every session older than max_lifetime ends. */
static void on_sweep(uv_timer_t *t)
{
        struct console *c = t->data;
        int64_t now = mono_s();

        for (struct session *s = c->sessions; s; s = s->next)
                if (now - s->opened_at >= (int64_t)c->config.max_lifetime)
                        session_end(c, s, "lifetime reached");
}

/* Copies the config's strings into one allocation the console owns. */
static int config_copy(struct console *c, const struct console_config *in)
{
        const char **fields[] = { &c->config.edge_path, &c->config.web_dir, &c->config.listen_address,
                                  &c->config.cert,      &c->config.key,     &c->config.user,
                                  &c->config.origins,   &c->config.ledger_public_key, &c->config.run_dir,
                                  &c->config.log_level };
        size_t total = 0;
        char *p;

        c->config = *in;
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
                total += strlen(*fields[i] ? *fields[i] : "") + 1;
        p = c->strings = malloc(total);
        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                const char *v = *fields[i] ? *fields[i] : "";
                strcpy(p, v);
                *fields[i] = p;
                p += strlen(v) + 1;
        }
        return 0;
}

/* vpsd keeps a copy of every console socket it passes, to end a session
 * itself: max_sessions fds beyond its own (guests' monitors, control
 * clients, libvirt, SQLite). A service manager's soft limit (1024 under
 * systemd) would refuse sessions well below console_max_sessions; vpsd
 * waits with epoll, never select(), so the soft limit goes up, as far as
 * the hard one lets it. */
#define CONSOLE_FDS_OWN 1024

static void console_reserve_fds(unsigned max_sessions)
{
        rlim_t want = (rlim_t)max_sessions + CONSOLE_FDS_OWN;
        struct rlimit nofile;

        if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur >= want)
                return;
        nofile.rlim_cur = nofile.rlim_max < want ? nofile.rlim_max : want;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur < want)
                log_warn("console: the open-file limit leaves room for fewer sessions than console_max_sessions",
                         "limit=%llu wanted=%llu", (unsigned long long)nofile.rlim_cur, (unsigned long long)want);
}

int console_start(uv_loop_t *loop, struct store *store, const struct console_config *config,
                  struct console **ret_console, struct error *err)
{
        struct console *c = calloc(1, sizeof(*c));
        char host[256] = "localhost";
        int r;

        if (!c || config_copy(c, config) < 0) {
                free(c);
                return error_set(err, -ENOMEM, "out of memory");
        }
        c->loop = loop;
        c->store = store;
        c->restart_ms = RESTART_MIN_MS;
        console_reserve_fds(c->config.max_sessions);
        gethostname(host, sizeof(host) - 1);
        r = ed25519_key_generate(&c->own_key, err);
        if (r == 0 && c->config.ledger_public_key[0])
                r = ed25519_key_load_public(c->config.ledger_public_key, &c->ledger_key, err);
        if (r == 0)
                r = console_cert_ensure(c->config.cert, c->config.key, host, err);
        if (r < 0) {
                ed25519_key_free(c->own_key);
                ed25519_key_free(c->ledger_key);
                free(c->strings);
                free(c);
                return error_prefix(err, "console");
        }
        uv_timer_init(loop, &c->restart);
        uv_timer_init(loop, &c->sweep);
        c->restart.data = c->sweep.data = c;
        c->handles_open = 2;
        uv_timer_start(&c->sweep, on_sweep, 1000, 1000);
        if (!getpwnam(c->config.user)) {
                const char *argv[] = { "/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir",
                                       "/nonexistent", "--shell", "/usr/sbin/nologin", c->config.user, NULL };
                const struct command_options options = { .timeout_ms = 30000 };
                if (command_start(loop, argv, &options, on_useradd, c, &c->useradd, err) < 0)
                        log_error("console: cannot run useradd", "error=\"%s\"", err->msg);
                else {
                        *ret_console = c;
                        return 0;
                }
        }
        edge_spawn(c);
        *ret_console = c;
        return 0;
}

int console_ticket_new(struct console *c, const char *uuid, enum console_kind kind, char *out, size_t size,
                       struct error *err)
{
        return console_ticket_mint(c->store, c->own_key, uuid, kind, time_now_wall(), TICKET_LIFETIME_MAX, out, size,
                                   err);
}

int console_iso_ticket_new(struct console *c, const char *account, uint64_t max_bytes, char *out, size_t size,
                           struct error *err)
{
        int64_t now = time_now_wall();
        struct ticket t = { .type = TICKET_ISO_UPLOAD, .max_bytes = max_bytes, .issued_at = now,
                            .expires_at = now + TICKET_LIFETIME_MAX };
        int r;

        if (max_bytes < 1 || max_bytes > TICKET_MAX_BYTES)
                return error_set(err, -EINVAL, "max_bytes must be from 1 to %" PRIu64, TICKET_MAX_BYTES);
        if (str_copy(t.account, sizeof(t.account), account) < 0 || !account[0])
                return error_set(err, -EINVAL, "an account id has 1 to %d characters", TICKET_ACCOUNT_MAX);
        for (const char *p = account; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return error_set(err, -EINVAL, "an account id is printable ASCII");
        r = ticket_nonce_new(&t, err);
        if (r < 0)
                return r;
        return ticket_sign(&t, c->own_key, out, size, err);
}

unsigned console_port(const struct console *c) { return c ? c->port : 0; }

struct console *console_stop(struct console *c)
{
        if (!c || c->stopping)
                return NULL;
        c->stopping = true;
        c->useradd = command_cancel(c->useradd);
        sessions_drop_all(c);
        uploads_abort_all(c);
        /* The edge hears SIGTERM while its link still stands, so it stops
         * as asked (status 0) rather than as after vpsd's crash; its exit
         * closes the link and the timer (on_edge_exit). */
        if (c->process_alive) {
                uv_process_kill(&c->process, SIGTERM);
                uv_timer_start(&c->restart, on_stop_deadline, STOP_DEADLINE_MS, 0);
        } else {
                c->link = edge_link_close(c->link);
                uv_close((uv_handle_t *)&c->restart, handle_closed);
        }
        uv_close((uv_handle_t *)&c->sweep, handle_closed);
        return NULL;
}
