/* The hypervisor probe: does a full KVM guest work on this node? On some
 * hosts (nested virtualisation) /dev/kvm opens and answers ioctls, yet
 * guests hang; so besides checking the device the probe boots a real Linux
 * kernel under QEMU with KVM and waits for it to get as far as mounting
 * its root file system. The verdict is cached in the store, keyed by what
 * it was taken on (kernel, QEMU binary, device, host kernel), and guests
 * use TCG whenever KVM is not proven to work. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "node/config.h"
#include "node/store.h"

enum hv_accel {
        HV_ACCEL_PROBING,
        HV_ACCEL_KVM,
        HV_ACCEL_TCG,
};

struct hvprobe_result {
        enum hv_accel accel;
        char reason[256]; /* why, for the operator */
        bool from_cache;
        int64_t probed_at; /* wall clock */
};

const char *hv_accel_name(enum hv_accel accel);

/* One boot of kernel under QEMU with accel ("kvm" or "tcg"): booted is true
 * when the kernel reached root mounting within timeout_s seconds. */
struct hvprobe_boot;
typedef void (*hvprobe_boot_fn)(bool booted, const char *reason, void *userdata);
int hvprobe_boot_start(uv_loop_t *loop, const char *qemu, const char *accel, const char *kernel, unsigned timeout_s,
                       hvprobe_boot_fn done, void *userdata, struct hvprobe_boot **ret_boot, struct error *err);
/* Kills the QEMU and never calls done. Accepts NULL; returns NULL. */
struct hvprobe_boot *hvprobe_boot_cancel(struct hvprobe_boot *boot);

/* The whole probe, by cfg->hypervisor: done is called once with the
 * verdict (possibly before this returns, for a cached or configured one).
 * With use_cache false, a fresh probe replaces the cached verdict. */
struct hvprobe;
typedef void (*hvprobe_done_fn)(const struct hvprobe_result *result, void *userdata);
int hvprobe_start(uv_loop_t *loop, const struct config *cfg, struct store *store, bool use_cache,
                  hvprobe_done_fn done, void *userdata, struct hvprobe **ret_probe, struct error *err);
struct hvprobe *hvprobe_cancel(struct hvprobe *probe);
