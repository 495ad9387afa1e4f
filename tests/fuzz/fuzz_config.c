/* libFuzzer target: config_parse() on arbitrary bytes. Beyond "does not
 * crash": a refusal leaves the configuration untouched and says why, and
 * an accepted text yields values inside every key's bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count_key(const char *key, void *userdata)
{
        (void)key;
        (*(unsigned *)userdata)++;
}

static void check_path(const char *path, bool may_be_empty)
{
        if (path[0] == '\0' && may_be_empty)
                return;
        if (path[0] != '/')
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config cfg, before, defaults;
        struct error err = { 0 };
        unsigned changed = 0;
        int r;

        config_init(&cfg);
        defaults = cfg;
        before = cfg;
        r = config_parse(&cfg, "fuzz.conf", (const char *)data, size, &err);
        if (r < 0) {
                if (memcmp(&cfg, &before, sizeof(cfg)) != 0 || err.code != r || err.msg[0] == '\0')
                        abort();
                return 0;
        }
        if (r != 0)
                abort();
        check_path(cfg.state_dir, false);
        check_path(cfg.control_socket, false);
        check_path(cfg.kvm_device, false);
        check_path(cfg.kvm_probe_kernel, true);
        check_path(cfg.qemu_binary, false);
        if (cfg.control_group[0] == '\0' || cfg.control_group[0] == '-')
                abort();
        if (cfg.control_max_clients < 1 || cfg.control_max_clients > 4096)
                abort();
        if (cfg.control_max_request < 1024 || cfg.control_max_request > 16 * 1024 * 1024)
                abort();
        if (cfg.kvm_probe_timeout < 1 || cfg.kvm_probe_timeout > 600)
                abort();
        if ((unsigned)cfg.log_level > LOG_LEVEL_ERROR || (unsigned)cfg.hypervisor > HYPERVISOR_TCG)
                abort();
        if (strcmp(hypervisor_mode_name(cfg.hypervisor), "?") == 0)
                abort();
        config_diff(&defaults, &cfg, count_key, &changed);
        if (changed > 11)
                abort();
        return 0;
}
