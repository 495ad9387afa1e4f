/* Guest lifecycle: the long operations on a service's guest (provision,
 * power, terminate), each under the service's busy lock persisted in the
 * store with the operation's name and the step it reached, so that a crash
 * at any step is finished or rolled back at the next start
 * (guest_reconcile) and no lock ever needs a human.
 *
 * An operation the function accepted (returned 0) ends by calling its
 * guest_done_fn exactly once, on the loop; a refusal (negative return)
 * never calls it. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <uv.h>

#include "common/error.h"
#include "node/spec.h"
#include "node/store.h"
#include "node/virt.h"

struct guests;

struct guests_config {
        const char *state_dir;      /* disks/ and seeds/ live below it */
        const char *run_dir;        /* one folder per running guest below it */
        const char *bridge;         /* the node's bridge for guest ports */
        const char *qemu_img;       /* qemu-img */
        const char *genisoimage;    /* genisoimage, for the cidata seed */
        unsigned stop_timeout;      /* seconds an ACPI shutdown may take before forced off */
        const char *iso_dir;        /* the ISO store's files: ISO_DIR/ID.iso (iso/iso.h) */
        const char *crash_at;       /* tests only: "<operation>:<step>" to stop at (VPSD_CRASH_AT), or NULL */
};

enum guest_power {
        GUEST_START,
        GUEST_STOP,
        GUEST_RESTART,
        GUEST_FORCE_OFF,
};

/* status 0 with result (borrowed; take a reference to keep it), or -errno
 * with err saying why. */
typedef void (*guest_done_fn)(int status, const struct error *err, struct json_object *result, void *userdata);

int guests_new(uv_loop_t *loop, struct store *store, struct virt *virt, const struct guests_config *config,
               struct guests **ret_guests, struct error *err);

struct monitors;
/* The QMP monitors to keep of running guests (node/monitor.h). */
void guests_set_monitors(struct guests *guests, struct monitors *monitors);

struct network;
/* The guest filter (node/network.h): a port is filtered before its guest
 * first starts, changed with the plan, and removed with the service. */
void guests_set_network(struct guests *guests, struct network *network);
/* Called as a long operation (stop, restart, reinstall, terminate …)
 * takes a service's busy lock, before any of its work: what must end with
 * the guest's console (node/console.c) ends there. */
typedef void (*guest_lock_hook_fn)(const char *uuid, const char *operation, void *userdata);
void guests_set_lock_hook(struct guests *guests, guest_lock_hook_fn fn, void *userdata);

/* Whether new domains are of type kvm (else qemu/TCG): the probe's verdict. */
void guests_set_kvm(struct guests *guests, bool kvm);

/* Brings libvirt and the files in line with the store: finishes or rolls
 * back operations a crash cut short, removes domains and files of no live
 * service, starts services that should run and do not. */
int guests_reconcile(struct guests *guests, guest_done_fn done, void *userdata, struct error *err);

/* Validates against the node's records (template, duplicate UUID,
 * addresses and MAC of other services), then creates disk, seed and domain
 * and starts it. spec is taken over. The result holds the root password,
 * the only time it leaves the node. actor names who asked, for the audit log. */
int guest_provision(struct guests *guests, struct service_spec *spec, const char *actor, guest_done_fn done,
                    void *userdata, struct error *err);

int guest_power(struct guests *guests, const char *uuid, enum guest_power action, const char *actor,
                guest_done_fn done, void *userdata, struct error *err);

/* What a reinstall changes; NULL / false keep what the service has. */
struct guest_reinstall_request {
        const char *template_name;     /* another template, or the same */
        const struct spec_plan *plan;  /* a new plan (a confirmed disk shrink is a reinstall) */
        bool replace_ssh_keys;
        const char *const *ssh_keys;   /* the new keys' lines, when replace_ssh_keys */
        size_t n_ssh_keys;
        const char *root_password;     /* else a new one is generated */
};

/* A new disk from the template (the old one's data is gone), a new seed
 * with a new instance-id, the same addresses, host name and MAC; the guest
 * boots again. The result holds the new root password, once. */
int guest_reinstall(struct guests *guests, const char *uuid, const struct guest_reinstall_request *request,
                    const char *actor, guest_done_fn done, void *userdata, struct error *err);

/* A new plan. vCPUs, memory and a larger disk are recorded now and take
 * effect at the guest's next start by vpsd (stop/start or restart): the
 * result lists them under "at_next_start". A smaller disk erases the data
 * (a reinstall on the new plan) and is refused unless confirm_disk_shrink.
 * done may be called before this returns. */
int guest_resize(struct guests *guests, const char *uuid, const struct spec_plan *plan, bool confirm_disk_shrink,
                 const char *actor, guest_done_fn done, void *userdata, struct error *err);

/* Destroys the domain, deletes disk, seed and run folder and releases the
 * addresses; the record stays, terminated, for the audit trail. */
int guest_terminate(struct guests *guests, const char *uuid, const char *actor, guest_done_fn done,
                    void *userdata, struct error *err);

/* Pauses (QMP stop) or resumes (cont) a running guest's vCPUs through
 * vpsd's QMP monitor; memory, disks and network are kept. Refused while an
 * operation holds the service. A guest already so is answered at once
 * (done is called before this returns). */
int guest_pause(struct guests *guests, const char *uuid, bool pause, const char *actor, guest_done_fn done,
                void *userdata, struct error *err);

enum guest_suspend_kind {
        GUEST_SUSPEND_LEASE,    /* its paid lease ended: the node's own decision; retention runs */
        GUEST_SUSPEND_LEDGER,   /* the ledger said so */
        GUEST_SUSPEND_OPERATOR, /* abuse handling on the node */
};

/* Suspends a running or stopped service: recorded first (why, when, the
 * power state to go back to), then its port passes nothing, its vCPUs are
 * paused through QMP and its console sessions end; memory and disks are
 * kept. A service already suspended is answered at once. */
int guest_suspend(struct guests *guests, const char *uuid, enum guest_suspend_kind kind, const char *reason,
                  const char *actor, guest_done_fn done, void *userdata, struct error *err);

/* Lifts a suspension (or a removal-queued state) in place: the port
 * passes again and the guest goes on where it was paused (or starts, if
 * its QEMU is gone). */
int guest_unsuspend(struct guests *guests, const char *uuid, const char *actor, guest_done_fn done,
                    void *userdata, struct error *err);

/* A lease-suspended service whose retention ended becomes removal-queued
 * (the ledger is told through the outbox). */
int guest_removal_queue(struct guests *guests, int64_t service_id, const char *uuid, struct error *err);

/* A new owner account: recorded at once (refused while an operation
 * holds the service, or once it is terminated), and the old owner's open
 * console sessions end. */
int guest_transfer(struct guests *guests, const char *uuid, const char *account_id, const char *actor,
                   struct error *err);

/* The service's CD drive (node/guest_cdrom.c): the file at path (an ISO,
 * always given to QEMU as raw, read-only) inserted under iso_id, or the
 * drive ejected when iso_id is NULL. Live through QMP when the guest runs;
 * recorded for every later start either way (a stopped service just
 * records it). account, when given, must own the service. */
int guest_cdrom_set(struct guests *guests, const char *uuid, const char *account, const char *iso_id,
                    const char *path, const char *actor, guest_done_fn done, void *userdata, struct error *err);

/* What the drive holds: the ISO id, or "" when it is empty. */
int guest_cdrom_get(struct guests *guests, const char *uuid, char *iso_id, size_t size, struct error *err);

/* Boot from the CD drive first (else the disk), from the next start on. */
int guest_boot_iso_set(struct guests *guests, const char *uuid, bool from_iso, const char *actor,
                       struct error *err);

/* Frees when no operation is running (the loop has drained). Accepts
 * NULL; returns NULL. */
struct guests *guests_free(struct guests *guests);

const char *guest_power_name(enum guest_power action);
