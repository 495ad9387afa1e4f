/* What guest.c and guest_reconcile.c share: the engine, one operation in
 * flight on one service, and the paths a guest's pieces live at. Not a
 * contract for anyone else. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "node/guest.h"

struct guests {
        uv_loop_t *loop;
        struct store *store;
        struct virt *virt;
        struct guests_config config;
        char state_dir[PATH_MAX];
        char run_dir[PATH_MAX];
        char bridge[32];
        char qemu_img[PATH_MAX];
        char genisoimage[PATH_MAX];
        char iso_dir[PATH_MAX];     /* empty: no ISO store */
        uid_t qemu_uid; /* QEMU runs as this user: it creates the sockets in the run folder */
        gid_t qemu_gid;
        bool kvm;
        unsigned ops_running;
        struct monitors *monitors; /* may be NULL */
        struct network *network;   /* the guest filter; may be NULL (tests of the lifecycle alone) */
        guest_lock_hook_fn lock_hook; /* may be NULL */
        void *lock_hook_data;
        char owner[33];            /* this vpsd's node id (node_facts), in its domains' metadata */
        char crash_at[64];         /* test hook: "<operation>:<step>", see op_next() */
};

/* Where a service's guest lives. The domain and tap names are
 * infrastructure identifiers: logs for the operator only. */
struct guest_paths {
        char domain[48]; /* vpsd-UUID */
        char tap[16];    /* vps + 12 hex digits of the UUID: 15 characters, the most a name may have */
        char disk[PATH_MAX];
        char seed[PATH_MAX];
        char seed_dir[PATH_MAX]; /* the seed's files while the image is made */
        char run[PATH_MAX];
};

/* A cloud-init instance-id for a new install: cloud-init applies a seed
 * afresh (keys, password, network) when it changes. */
void guest_instance_id_new(char *buf, size_t size);

void guest_paths_init(const struct guests *g, const char *uuid, struct guest_paths *ret);

/* Removes disk, seed (and its files) and run folder; absent is fine. */
void guest_files_remove(const struct guest_paths *paths);

enum op_kind {
        OP_PROVISION,
        OP_START,
        OP_STOP,
        OP_RESTART,
        OP_FORCE_OFF,
        OP_TERMINATE,
        OP_REINSTALL,
};

struct op {
        struct guests *g;
        enum op_kind kind;
        int64_t service_id;
        char uuid[SPEC_UUID_SIZE];
        char actor[96];
        struct guest_paths paths;
        struct service_spec *spec; /* provision: until the seed is written */
        char template_path[PATH_MAX];
        char template_format[8];
        char password[SPEC_ROOT_PASSWORD_MAX + 1]; /* provision: returned once, then wiped */
        char instance_id[40];
        uv_timer_t timer; /* stop: polls the domain until it is off */
        bool timer_used;
        unsigned waited;  /* seconds waited for an ACPI shutdown */
        bool recovering;  /* started by reconcile, not by a request */
        bool booted;      /* this op defined and started the domain */
        struct error error; /* the first failure, reported after a rollback */
        void (*then)(struct op *op); /* what follows the libvirt call in flight */
        guest_done_fn done;
        void *userdata;
};

/* Undoes a provision at whatever step it reached: domain, files and the
 * service's rows go; the audit log keeps the story. */
void guest_provision_rollback(struct op *op);

/* Starts op at the persisted step `step` (reconcile resumes with these). */
void guest_op_resume(struct op *op, const char *step);

/* Creates an op for a service row; the caller fills what its kind needs. */
struct op *guest_op_new(struct guests *g, enum op_kind kind, int64_t service_id, const char *uuid,
                        const char *actor, guest_done_fn done, void *userdata);

/* Keeps (or drops) vpsd's QMP monitor of a guest that now runs (or goes). */
void guest_monitor_watch(struct guests *g, int64_t service_id, const char *uuid);
void guest_monitor_unwatch(struct guests *g, const char *uuid);

/* A service's id and state by UUID: -ENOENT, or -EBUSY "busy: …" while
 * an operation holds it. */
int guest_service_find(struct guests *g, const char *uuid, int64_t *ret_id, char *state, size_t state_size,
                       struct error *err);

/* The service as a specification (no root password), read back from the store. */
int guest_spec_load(struct guests *g, int64_t id, struct service_spec **ret_spec, struct error *err);

/* Binds plan's five columns (vcpus … traffic_gib) from parameter first on. */
void guest_bind_plan(sqlite3_stmt *stmt, int first, const struct spec_plan *plan);

/* Takes the service's busy lock for operation at step; -EBUSY "busy: …". */
int guest_lock_take(struct guests *g, int64_t id, const char *uuid, const char *operation, const char *step,
                    struct error *err);

/* A reinstall cut short by a crash: done again from its disk step, with a
 * new root password (the one given out was lost with the crash). */
void guest_reinstall_resume(struct op *op);

/* Ends an op with a failure (provision rolls back, the others release). */
void guest_op_fail(struct op *op, int code, const char *message);

/* Frees an op that never started (nothing recorded, no callback). */
void guest_op_free(struct op *op);

const char *guest_op_name(enum op_kind kind);

/* The service's port in the guest filter as the store has it now; 0
 * without a filter. */
int guest_network_apply(struct guests *g, int64_t service_id, struct error *err);

/* Whether the service's vCPUs are paused (QMP STOP without RESUME since). */
bool guest_paused(struct guests *g, int64_t id);
int guest_op_kind_parse(const char *name, enum op_kind *ret_kind);
