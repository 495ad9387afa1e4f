#include "command.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define LAST_LINE_MAX 200

/* One captured stream: the first max bytes, and the last line seen, which
 * may lie past what was kept. */
struct capture {
        uv_pipe_t pipe;
        char *data; /* max + 1 bytes once something arrives */
        size_t len, max;
        bool truncated, eof;
        char line[LAST_LINE_MAX + 1], last_line[LAST_LINE_MAX + 1];
        size_t line_len;
        char read_buf[16384];
};

struct command {
        uv_process_t process;
        uv_timer_t timer;
        struct capture out, err;
        unsigned handles_open;
        bool spawned, exited, timed_out, cancelled, finishing;
        int64_t exit_status;
        int term_signal;
        unsigned timeout_ms;
        char name[128];
        command_done_fn done;
        void *userdata;
};

static void capture_init(struct capture *c, size_t max) { c->max = max; }

/* Printable ASCII only: the line ends up in messages shown on a terminal. */
static void capture_line_byte(struct capture *c, char ch)
{
        if (ch == '\n') {
                if (c->line_len > 0) {
                        memcpy(c->last_line, c->line, c->line_len);
                        c->last_line[c->line_len] = '\0';
                }
                c->line_len = 0;
                return;
        }
        if (ch == '\r' || c->line_len == LAST_LINE_MAX)
                return;
        c->line[c->line_len++] = (ch >= 0x20 && ch < 0x7f) || ch == '\t' ? ch : '?';
}

static void capture_append(struct capture *c, const char *bytes, size_t n)
{
        size_t keep;

        for (size_t i = 0; i < n; i++)
                capture_line_byte(c, bytes[i]);
        if (!c->data) {
                c->data = malloc(c->max + 1);
                if (!c->data) {
                        c->truncated = true;
                        return;
                }
                c->data[0] = '\0';
        }
        keep = n <= c->max - c->len ? n : c->max - c->len;
        memcpy(c->data + c->len, bytes, keep);
        c->len += keep;
        c->data[c->len] = '\0';
        if (keep < n)
                c->truncated = true;
}

static const char *capture_last_line(struct capture *c)
{
        if (c->line_len > 0) /* a last line without its '\n' */
                capture_line_byte(c, '\n');
        return c->last_line;
}

static void format_error(struct command *cmd, int r, struct error *err)
{
        const char *line = capture_last_line(&cmd->err);
        char why[64];

        if (r == -ETIMEDOUT) {
                if (cmd->timeout_ms % 1000 == 0)
                        snprintf(why, sizeof(why), "timed out after %u s", cmd->timeout_ms / 1000);
                else
                        snprintf(why, sizeof(why), "timed out after %u ms", cmd->timeout_ms);
        } else if (cmd->term_signal)
                snprintf(why, sizeof(why), "killed by signal %d (%s)", cmd->term_signal,
                         strsignal(cmd->term_signal));
        else
                snprintf(why, sizeof(why), "exit status %lld", (long long)cmd->exit_status);
        error_set(err, r, "%s: %s%s%s", cmd->name, why, line[0] ? ": " : "", line);
}

static void command_free(struct command *cmd)
{
        free(cmd->out.data);
        free(cmd->err.data);
        free(cmd);
}

static void report(struct command *cmd)
{
        struct command_result result = {
                .exit_status = cmd->exit_status,
                .term_signal = cmd->term_signal,
                .timed_out = cmd->timed_out,
                .out = cmd->out.data ? cmd->out.data : "",
                .err = cmd->err.data ? cmd->err.data : "",
                .out_len = cmd->out.len,
                .err_len = cmd->err.len,
                .out_truncated = cmd->out.truncated,
                .err_truncated = cmd->err.truncated,
        };
        struct error err = { 0 };
        int r = 0;

        if (cmd->timed_out)
                r = -ETIMEDOUT;
        else if (cmd->term_signal || cmd->exit_status != 0)
                r = -EIO;
        if (r < 0)
                format_error(cmd, r, &err);
        cmd->done(r, r < 0 ? &err : NULL, &result, cmd->userdata);
}

static void on_handle_closed(uv_handle_t *h)
{
        struct command *cmd = h->data;

        if (--cmd->handles_open > 0)
                return;
        if (!cmd->cancelled)
                report(cmd);
        command_free(cmd);
}

static void close_all(struct command *cmd)
{
        uv_handle_t *handles[] = { (uv_handle_t *)&cmd->out.pipe, (uv_handle_t *)&cmd->err.pipe,
                                   (uv_handle_t *)&cmd->timer, (uv_handle_t *)&cmd->process };

        cmd->finishing = true;
        for (size_t i = 0; i < ARRAY_SIZE(handles); i++)
                if (!uv_is_closing(handles[i]))
                        uv_close(handles[i], on_handle_closed);
}

/* The child is reaped first (a closed process handle is never waited for,
 * and would leave a zombie). Its output counts up to EOF, unless it was
 * killed: then a descendant that escaped the kill may hold the pipes open,
 * and nothing more is awaited. */
static void maybe_finish(struct command *cmd)
{
        if (cmd->finishing || !cmd->exited)
                return;
        if ((cmd->out.eof && cmd->err.eof) || cmd->timed_out || cmd->cancelled)
                close_all(cmd);
}

static void kill_group(struct command *cmd)
{
        /* The child called setsid() (UV_PROCESS_DETACHED): its pid is its
         * process group's id. Once it has exited the id may be reused. */
        if (cmd->spawned && !cmd->exited)
                uv_kill(-cmd->process.pid, SIGKILL);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
        struct command *cmd = p->data;

        cmd->exited = true;
        cmd->exit_status = status;
        cmd->term_signal = term_signal;
        maybe_finish(cmd);
}

static void on_timeout(uv_timer_t *t)
{
        struct command *cmd = t->data;

        cmd->timed_out = true;
        kill_group(cmd);
        maybe_finish(cmd);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct command *cmd = h->data;
        struct capture *c = h == (uv_handle_t *)&cmd->out.pipe ? &cmd->out : &cmd->err;

        (void)suggested;
        /* libuv reads into the buffer and calls on_read before it asks for
         * another, so one buffer per stream serves every read. */
        buf->base = c->read_buf;
        buf->len = sizeof(c->read_buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct command *cmd = s->data;
        struct capture *c = s == (uv_stream_t *)&cmd->out.pipe ? &cmd->out : &cmd->err;

        if (n > 0)
                capture_append(c, buf->base, (size_t)n);
        if (n < 0) {
                uv_read_stop(s);
                c->eof = true;
                maybe_finish(cmd);
        }
}

static const char *base_name(const char *path)
{
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

int command_start(uv_loop_t *loop, const char *const *argv, const struct command_options *options,
                  command_done_fn done, void *userdata, struct command **ret_command, struct error *err)
{
        uv_stdio_container_t stdio[3 + COMMAND_MAX_PASS_FDS];
        uv_process_options_t opts = { 0 };
        size_t max = options->max_output ? options->max_output : COMMAND_DEFAULT_MAX_OUTPUT;
        struct command *cmd;
        int r;

        if (!argv[0] || argv[0][0] != '/')
                return error_set(err, -EINVAL, "run `%s`: not an absolute path", argv[0] ? argv[0] : "");
        if (options->timeout_ms == 0 || options->n_pass_fds > COMMAND_MAX_PASS_FDS)
                return error_set(err, -EINVAL, "run `%s`: bad options", argv[0]);
        cmd = calloc(1, sizeof(*cmd));
        if (!cmd)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(cmd->name, sizeof(cmd->name), "%s", options->name ? options->name : base_name(argv[0]));
        cmd->timeout_ms = options->timeout_ms;
        cmd->done = done;
        cmd->userdata = userdata;
        capture_init(&cmd->out, max);
        capture_init(&cmd->err, max);
        uv_pipe_init(loop, &cmd->out.pipe, 0);
        uv_pipe_init(loop, &cmd->err.pipe, 0);
        uv_timer_init(loop, &cmd->timer);
        cmd->out.pipe.data = cmd->err.pipe.data = cmd->timer.data = cmd->process.data = cmd;
        cmd->handles_open = 4;

        stdio[0].flags = UV_IGNORE; /* /dev/null */
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&cmd->out.pipe;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&cmd->err.pipe;
        for (size_t i = 0; i < options->n_pass_fds; i++) {
                stdio[3 + i].flags = UV_INHERIT_FD;
                stdio[3 + i].data.fd = options->pass_fds[i];
        }
        opts.file = argv[0];
        opts.args = (char **)argv;
        opts.exit_cb = on_exit_cb;
        opts.stdio = stdio;
        opts.stdio_count = 3 + (int)options->n_pass_fds;
        /* A session of its own, so that a kill of the group reaches the
         * programs it starts; the handle stays referenced and reaped. */
        opts.flags = UV_PROCESS_DETACHED;
        r = uv_spawn(loop, &cmd->process, &opts);
        if (r < 0) {
                /* On Unix the process handle is initialised even when the
                 * spawn fails, and must be closed like the others. */
                cmd->cancelled = true;
                close_all(cmd);
                return error_set(err, r, "%s: cannot run `%s`: %s", cmd->name, argv[0], strerror(-r));
        }
        cmd->spawned = true;
        uv_read_start((uv_stream_t *)&cmd->out.pipe, alloc_buf, on_read);
        uv_read_start((uv_stream_t *)&cmd->err.pipe, alloc_buf, on_read);
        uv_timer_start(&cmd->timer, on_timeout, options->timeout_ms, 0);
        *ret_command = cmd;
        return 0;
}

struct command *command_cancel(struct command *cmd)
{
        if (!cmd || cmd->cancelled)
                return NULL;
        cmd->cancelled = true;
        kill_group(cmd);
        maybe_finish(cmd);
        return NULL;
}
