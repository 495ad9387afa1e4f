/* External programs (qemu-img, genisoimage …) run from the libuv loop:
 * an argv, never a shell; stdout and stderr captured up to a bound each
 * (the rest is read and dropped, so the child never blocks on a full
 * pipe); a timeout after which the child's whole process group is killed;
 * one completion callback. The child runs in a session of its own, so a
 * kill reaches whatever it started too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"

#define COMMAND_DEFAULT_MAX_OUTPUT (64 * 1024)
#define COMMAND_MAX_PASS_FDS 4

struct command;

struct command_options {
        const char *name;       /* what messages call it ("qemu-img info"); NULL: argv[0]'s base name */
        unsigned timeout_ms;    /* required: the child is killed (SIGKILL) after this long */
        size_t max_output;      /* bytes kept of stdout and of stderr each; 0: COMMAND_DEFAULT_MAX_OUTPUT */
        const int *pass_fds;    /* become fds 3, 4, … in the child (e.g. for /dev/fd/3) */
        size_t n_pass_fds;      /* at most COMMAND_MAX_PASS_FDS */
};

struct command_result {
        int64_t exit_status;     /* the status it exited with, when no signal ended it */
        int term_signal;         /* the signal that ended it, else 0 */
        bool timed_out;
        const char *out, *err;   /* what it wrote, NUL-terminated (may hold NULs: use the lengths) */
        size_t out_len, err_len;
        bool out_truncated, err_truncated; /* it wrote more than max_output */
};

/* Called once, after the child has exited and its pipes are closed. r is 0
 * when it exited with status 0, -ETIMEDOUT when it had not exited and
 * closed its output by the timeout (it is killed then), -EIO when it exited with another status or a signal ended it;
 * err then names the program and the last line it wrote to stderr:
 * "qemu-img info: exit status 1: Could not open 'x': No such file".
 * result and err are valid during the call only; the command is freed
 * when the callback returns. */
typedef void (*command_done_fn)(int r, const struct error *err, const struct command_result *result,
                                void *userdata);

/* Starts argv[0] (an absolute path: no PATH search) with argv, stdin on
 * /dev/null and vpsd's environment. On failure (e.g. -ENOENT: the program
 * does not exist) nothing runs and done is never called. */
int command_start(uv_loop_t *loop, const char *const *argv, const struct command_options *options,
                  command_done_fn done, void *userdata, struct command **ret_command, struct error *err);

/* Kills the child's process group; done is never called. The command is
 * freed once the child has been reaped, on the loop. Accepts NULL; returns
 * NULL. Not to be called from the command's own done. */
struct command *command_cancel(struct command *command);
