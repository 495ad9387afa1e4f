/* node/command: external programs on a libuv loop, with /bin/sh scripts as
 * the programs under test: success, exit status, signal, timeout (also
 * with a descendant holding the pipes), output past the bound, a program
 * that does not exist, cancel, passed fds. Every test runs its own loop
 * and closes it, so a handle left open fails the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "node/command.h"

struct outcome {
        unsigned calls;
        int r;
        char message[512];
        struct command_result result;
        char *out, *err; /* copies: the result's buffers die with the command */
};

static void on_done(int r, const struct error *err, const struct command_result *result, void *userdata)
{
        struct outcome *o = userdata;

        o->calls++;
        o->r = r;
        snprintf(o->message, sizeof(o->message), "%s", err ? err->msg : "");
        o->result = *result;
        o->out = malloc(result->out_len + 1);
        o->err = malloc(result->err_len + 1);
        assert_non_null(o->out);
        assert_non_null(o->err);
        memcpy(o->out, result->out, result->out_len + 1);
        memcpy(o->err, result->err, result->err_len + 1);
        o->result.out = o->out;
        o->result.err = o->err;
}

static void outcome_free(struct outcome *o)
{
        free(o->out);
        free(o->err);
}

/* Runs `sh -c script` to completion on a fresh loop. */
static void run_script(const char *script, const struct command_options *options, struct outcome *o)
{
        const char *argv[] = { "/bin/sh", "-c", script, NULL };
        struct command *cmd = NULL;
        struct error err = { 0 };
        uv_loop_t loop;

        memset(o, 0, sizeof(*o));
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(command_start(&loop, argv, options, on_done, o, &cmd, &err), 0);
        assert_non_null(cmd);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(o->calls, 1);
}

static void test_success(void **state)
{
        struct command_options opts = { .timeout_ms = 10000 };
        struct outcome o;

        (void)state;
        /* stdin is /dev/null: cat ends at once instead of waiting. */
        run_script("cat; printf 'hello\\n'; printf 'warn\\n' >&2", &opts, &o);
        assert_int_equal(o.r, 0);
        assert_string_equal(o.message, "");
        assert_int_equal(o.result.exit_status, 0);
        assert_int_equal(o.result.term_signal, 0);
        assert_false(o.result.timed_out);
        assert_string_equal(o.result.out, "hello\n");
        assert_int_equal(o.result.out_len, 6);
        assert_string_equal(o.result.err, "warn\n");
        assert_false(o.result.out_truncated);
        outcome_free(&o);

        run_script("true", &opts, &o);
        assert_int_equal(o.r, 0);
        assert_string_equal(o.result.out, "");
        assert_int_equal(o.result.out_len, 0);
        outcome_free(&o);
}

static void test_exit_status(void **state)
{
        struct command_options opts = { .name = "qemu-img info", .timeout_ms = 10000 };
        struct outcome o;

        (void)state;
        run_script("echo partial; echo 'first line' >&2; printf \"Could not open 'x': No such file\\n\\n\" >&2; exit 1",
                   &opts, &o);
        assert_int_equal(o.r, -EIO);
        assert_int_equal(o.result.exit_status, 1);
        assert_int_equal(o.result.term_signal, 0);
        assert_string_equal(o.message, "qemu-img info: exit status 1: Could not open 'x': No such file");
        assert_string_equal(o.result.out, "partial\n");
        outcome_free(&o);

        /* No stderr: the status alone. The default name is argv[0]'s base. */
        opts.name = NULL;
        run_script("exit 3", &opts, &o);
        assert_int_equal(o.r, -EIO);
        assert_int_equal(o.result.exit_status, 3);
        assert_string_equal(o.message, "sh: exit status 3");
        outcome_free(&o);

        /* A last line without '\n', with control characters made harmless. */
        run_script("printf 'bad \\033[31mred' >&2; exit 2", &opts, &o);
        assert_string_equal(o.message, "sh: exit status 2: bad ?[31mred");
        outcome_free(&o);
}

static void test_signal(void **state)
{
        struct command_options opts = { .timeout_ms = 10000 };
        struct outcome o;

        (void)state;
        run_script("echo dying >&2; kill -TERM $$; sleep 5", &opts, &o);
        assert_int_equal(o.r, -EIO);
        assert_int_equal(o.result.term_signal, SIGTERM);
        assert_false(o.result.timed_out);
        assert_string_equal(o.message, "sh: killed by signal 15 (Terminated): dying");
        outcome_free(&o);
}

static void test_timeout(void **state)
{
        struct command_options opts = { .name = "slow", .timeout_ms = 300 };
        uint64_t start = time_now_mono_ms();
        struct outcome o;

        (void)state;
        run_script("echo started; sleep 30", &opts, &o);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_true(o.result.timed_out);
        assert_int_equal(o.result.term_signal, SIGKILL);
        assert_string_equal(o.message, "slow: timed out after 300 ms");
        assert_string_equal(o.result.out, "started\n");
        assert_true(time_now_mono_ms() - start < 5000);
        outcome_free(&o);
}

/* A descendant in the background holds stdout open: the kill of the
 * process group reaches it too, and the loop does not wait for it. */
static void test_timeout_with_descendant(void **state)
{
        struct command_options opts = { .timeout_ms = 2000 };
        uint64_t start = time_now_mono_ms();
        struct outcome o;

        (void)state;
        run_script("sleep 60 & sleep 60; echo never", &opts, &o);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_string_equal(o.message, "sh: timed out after 2 s");
        assert_true(time_now_mono_ms() - start < 10000);
        outcome_free(&o);

        /* The child exits, a descendant keeps the pipe: the timeout ends
         * the wait, and kills nothing it could mistake for another. */
        start = time_now_mono_ms();
        opts.timeout_ms = 500;
        run_script("setsid sleep 3 & echo done", &opts, &o);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_int_equal(o.result.exit_status, 0);
        assert_string_equal(o.result.out, "done\n");
        assert_true(time_now_mono_ms() - start < 2500);
        outcome_free(&o);
}

static void test_big_output_truncated(void **state)
{
        struct command_options opts = { .timeout_ms = 20000, .max_output = 1000 };
        struct outcome o;

        (void)state;
        /* 4 MiB each way, far more than a pipe holds: the child finishes
         * because the excess is read and dropped. */
        run_script("head -c 4194304 /dev/zero | tr '\\0' x; head -c 4194304 /dev/zero >&2; echo 'the end' >&2",
                   &opts, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(o.result.out_len, 1000);
        assert_true(o.result.out_truncated);
        assert_int_equal(strspn(o.result.out, "x"), 1000);
        assert_int_equal(o.result.out[1000], '\0');
        assert_int_equal(o.result.err_len, 1000);
        assert_true(o.result.err_truncated);
        outcome_free(&o);

        /* The last stderr line is found past the bound. */
        run_script("head -c 100000 /dev/zero | tr '\\0' y >&2; echo >&2; echo 'disk full' >&2; exit 1", &opts, &o);
        assert_string_equal(o.message, "sh: exit status 1: disk full");
        outcome_free(&o);

        /* The default bound is 64 KiB. */
        opts.max_output = 0;
        run_script("head -c 100000 /dev/zero", &opts, &o);
        assert_int_equal(o.result.out_len, COMMAND_DEFAULT_MAX_OUTPUT);
        assert_true(o.result.out_truncated);
        outcome_free(&o);
}

static void test_not_found(void **state)
{
        const char *argv[] = { "/nonexistent/qemu-img", "info", NULL };
        const char *relative[] = { "sh", "-c", "true", NULL };
        struct command_options opts = { .name = "qemu-img info", .timeout_ms = 1000 };
        struct command *cmd = NULL;
        struct error err = { 0 };
        struct outcome o = { 0 };
        uv_loop_t loop;

        (void)state;
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(command_start(&loop, argv, &opts, on_done, &o, &cmd, &err), -ENOENT);
        assert_null(cmd);
        assert_string_equal(err.msg,
                            "qemu-img info: cannot run `/nonexistent/qemu-img`: No such file or directory");
        /* No PATH search: a program is named by its absolute path. */
        assert_int_equal(command_start(&loop, relative, &opts, on_done, &o, &cmd, &err), -EINVAL);
        assert_string_equal(err.msg, "run `sh`: not an absolute path");
        opts.timeout_ms = 0;
        assert_int_equal(command_start(&loop, argv, &opts, on_done, &o, &cmd, &err), -EINVAL);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(o.calls, 0);
}

struct cancel_ctx {
        struct command *cmd;
        uv_timer_t timer;
};

static void on_cancel_timer(uv_timer_t *t)
{
        struct cancel_ctx *c = t->data;

        c->cmd = command_cancel(c->cmd);
        uv_close((uv_handle_t *)t, NULL);
}

static bool pid_alive(pid_t pid)
{
        char path[64], buf[512];
        FILE *f;
        bool alive;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return false;
        /* A zombie is dead for this purpose, only not reaped yet. */
        alive = fgets(buf, sizeof(buf), f) && !strstr(buf, ") Z ");
        fclose(f);
        return alive;
}

static void test_cancel(void **state)
{
        const char *argv[] = { "/bin/sh", "-c", "sleep 60 & echo $$ $! > \"$0\"; sleep 60", NULL, NULL };
        struct command_options opts = { .timeout_ms = 60000 };
        char pidfile[] = "/tmp/test-command-XXXXXX";
        uint64_t start = time_now_mono_ms();
        struct cancel_ctx c = { 0 };
        struct outcome o = { 0 };
        struct error err = { 0 };
        uv_loop_t loop;
        FILE *f;
        int pid = 0, background = 0, fd;

        (void)state;
        fd = mkstemp(pidfile);
        assert_true(fd >= 0);
        close(fd);
        argv[3] = pidfile; /* $0 of the script */
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(command_start(&loop, argv, &opts, on_done, &o, &c.cmd, &err), 0);
        uv_timer_init(&loop, &c.timer);
        c.timer.data = &c;
        uv_timer_start(&c.timer, on_cancel_timer, 300, 0);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(o.calls, 0);
        assert_true(time_now_mono_ms() - start < 5000);
        f = fopen(pidfile, "r");
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d %d", &pid, &background), 2);
        fclose(f);
        unlink(pidfile);
        assert_false(pid_alive(pid));
        /* Its background sleep was in the same process group. The kill
         * was sent; its death may take a moment to show. */
        for (int i = 0; i < 200 && pid_alive(background); i++)
                usleep(10000);
        assert_false(pid_alive(background));

        assert_null(command_cancel(NULL));
}

/* Cancel right after start: the child is reaped, never reported. */
static void test_cancel_at_once(void **state)
{
        const char *argv[] = { "/bin/sh", "-c", "sleep 60", NULL };
        struct command_options opts = { .timeout_ms = 60000 };
        struct outcome o = { 0 };
        struct command *cmd = NULL;
        struct error err = { 0 };
        uv_loop_t loop;

        (void)state;
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(command_start(&loop, argv, &opts, on_done, &o, &cmd, &err), 0);
        assert_null(command_cancel(cmd));
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(o.calls, 0);
}

static void test_pass_fds(void **state)
{
        const char *argv[] = { "/bin/sh", "-c", "cat /dev/fd/3; cat <&4", NULL };
        char path[] = "/tmp/test-command-XXXXXX", path2[] = "/tmp/test-command-XXXXXX";
        struct outcome o = { 0 };
        struct command *cmd = NULL;
        struct error err = { 0 };
        uv_loop_t loop;
        int fds[2];

        (void)state;
        fds[0] = mkstemp(path);
        assert_true(fds[0] >= 0);
        assert_int_equal(write(fds[0], "three\n", 6), 6);
        unlink(path);
        fds[1] = mkstemp(path2);
        assert_true(fds[1] >= 0);
        assert_int_equal(write(fds[1], "four\n", 5), 5);
        assert_int_equal(lseek(fds[1], 0, SEEK_SET), 0);
        unlink(path2);
        struct command_options opts = { .timeout_ms = 10000, .pass_fds = fds, .n_pass_fds = 2 };
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(command_start(&loop, argv, &opts, on_done, &o, &cmd, &err), 0);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(o.r, 0);
        /* fd 3 is reopened through /dev/fd (from the start), fd 4 read
         * where its offset stands. */
        assert_string_equal(o.result.out, "three\nfour\n");
        close(fds[0]);
        close(fds[1]);
        outcome_free(&o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_success),
                cmocka_unit_test(test_exit_status),
                cmocka_unit_test(test_signal),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_timeout_with_descendant),
                cmocka_unit_test(test_big_output_truncated),
                cmocka_unit_test(test_not_found),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_cancel_at_once),
                cmocka_unit_test(test_pass_fds),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
