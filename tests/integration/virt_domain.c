/* Test driver for node/domain.c and node/virt.c against the real libvirtd:
 *   virt_domain start URI NAME UUID tcg|kvm VCPUS MEMORY_MIB DISK SEED MAC BRIDGE TAP RUN_DIR
 *   virt_domain start|shutdown|destroy|undefine|state URI NAME
 * Prints "<state>" or "error: <message>" and exits 0 or 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/domain.h"
#include "node/virt.h"

static int exit_code = 1;

static void on_done(int status, enum virt_state state, const char *message, void *userdata)
{
        (void)userdata;
        if (status < 0)
                printf("error: %s\n", message);
        else
                printf("%s\n", virt_state_name(state));
        exit_code = status < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
        static const struct {
                const char *name;
                enum virt_op op;
        } ops[] = { { "start", VIRT_START }, { "shutdown", VIRT_SHUTDOWN }, { "destroy", VIRT_DESTROY }, { "undefine", VIRT_UNDEFINE },
                    { "state", VIRT_STATE } };
        uv_loop_t *loop = uv_default_loop();
        struct error err = { 0 };
        struct virt *virt = NULL;
        char *xml = NULL;
        int r = -1;

        if (argc < 4 || virt_new(loop, argv[2], &virt, &err) < 0) {
                fprintf(stderr, "usage: see the comment in tests/integration/virt_domain.c %s\n", err.msg);
                return 2;
        }
        if (strcmp(argv[1], "start") == 0 && argc == 14) {
                struct domain_params p = {
                        .name = argv[3], .uuid = argv[4], .kvm = strcmp(argv[5], "kvm") == 0,
                        .vcpus = (unsigned)atoi(argv[6]), .memory_mib = (unsigned)atoi(argv[7]),
                        .disk_path = argv[8], .seed_path = argv[9], .mac = argv[10], .bridge = argv[11],
                        .tap = argv[12], .run_dir = argv[13],
                };
                r = domain_xml(&p, &xml, &err);
                if (r == 0)
                        r = virt_submit(virt, VIRT_DEFINE_START, xml, on_done, NULL, &err);
        } else
                for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
                        if (strcmp(argv[1], ops[i].name) == 0 && argc == 4)
                                r = virt_submit(virt, ops[i].op, argv[3], on_done, NULL, &err);
        if (r < 0) {
                printf("error: %s\n", err.msg[0] ? err.msg : "bad arguments");
                virt_free(virt);
                return 2;
        }
        uv_run(loop, UV_RUN_DEFAULT);
        free(xml);
        virt_free(virt);
        uv_loop_close(loop);
        return exit_code;
}
