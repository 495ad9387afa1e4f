/* Test driver for the hypervisor probe's boot check: boots KERNEL under
 * QEMU with ACCEL and prints the verdict, so the integration tests can
 * exercise the real mechanism (under TCG on machines without KVM) and its
 * timeout. Usage: hvprobe_boot QEMU ACCEL KERNEL TIMEOUT_S */
#include <stdio.h>
#include <stdlib.h>

#include "node/hvprobe.h"

static void on_done(bool booted, const char *reason, void *userdata)
{
        int *code = userdata;

        printf("%s: %s\n", booted ? "booted" : "failed", reason);
        *code = booted ? 0 : 3;
}

int main(int argc, char **argv)
{
        struct hvprobe_boot *boot = NULL;
        struct error err = { 0 };
        int code = 1;

        if (argc != 5) {
                fprintf(stderr, "usage: hvprobe_boot QEMU ACCEL KERNEL TIMEOUT_S\n");
                return 2;
        }
        if (hvprobe_boot_start(uv_default_loop(), argv[1], argv[2], argv[3], (unsigned)atoi(argv[4]), on_done, &code,
                               &boot, &err) < 0) {
                fprintf(stderr, "hvprobe_boot: %s\n", err.msg);
                return 1;
        }
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
        uv_loop_close(uv_default_loop());
        return code;
}
