/* The customer ISO store (docs/iso.md): uploads streamed through vpsd-edge
 * into ISO_DIR with their SHA-256 and size counted as they arrive and the
 * account's quota enforced on the way; validation (iso/iso_image.h);
 * approval by the ledger or the operator; mount and eject into a service's
 * CD drive through the guest layer (node/guest.h).
 *
 * An ISO is `ISO_DIR/ID.iso`, ID random (1-64 of [a-z0-9-]); what the
 * customer called it is a label, shown and never used as a path. It is
 * pending until approved; only an approved ISO may be mounted, and only
 * into a service of its own account. A rejected ISO is deleted. A mounted
 * one cannot be removed or rejected. Every change is queued for the ledger
 * (node/outbox.h, event `iso`).
 *
 * Errors are negative errnos with err naming the ISO and why:
 *   -ENOENT no such ISO or service, -EPERM another account's,
 *   -EBADFD not approved (mount) or not pending (approve, reject),
 *   -EBUSY mounted (remove, reject) or the service busy,
 *   -EDQUOT over quota. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"
#include "common/ticket.h"
#include "node/guest.h"
#include "node/store.h"

#define ISO_ID_MAX 64
#define ISO_LABEL_MAX 200

struct iso_store;
struct iso_upload;

struct iso_config {
        const char *dir;        /* ISO_DIR: created 0711; files 0600, approved ones 0440 group qemu_gid */
        uint64_t default_quota; /* bytes per account unless the ledger set a quota */
        unsigned max_uploads;   /* uploads at once on the node */
        gid_t qemu_gid;         /* QEMU's group: it opens a mounted ISO itself */
};

/* Opens the store on dir and cleans what a crash left: temporary upload
 * files, files without a record, records without a file. */
int iso_store_open(uv_loop_t *loop, struct store *store, struct guests *guests, const struct iso_config *config,
                   struct iso_store **ret_store, struct error *err);

/* A new default quota (vpsd.conf reloaded). */
void iso_store_set_default_quota(struct iso_store *store, uint64_t bytes);

/* Aborts every upload in flight and frees once their threads have ended
 * (the loop must run). Accepts NULL; returns NULL. */
struct iso_store *iso_store_free(struct iso_store *store);

/* --- records --- */

/* {"isos": [{id, account_id, label, size, sha256, format, state,
 * uploaded_at, approved_at, mounted_in: [UUID…]}…]}, account's only
 * when account is not NULL. */
int iso_list_json(struct iso_store *store, const char *account, struct json_object **ret_result, struct error *err);

/* Approves a pending ISO. account (the ledger's iso-approve names one)
 * must be its owner when given. Idempotent for an approved ISO. */
int iso_approve(struct iso_store *store, const char *id, const char *account, const char *actor, struct error *err);

/* Rejects a pending or approved ISO that is not mounted: its file and
 * record are deleted, the ledger hears `rejected` with the reason. */
int iso_reject(struct iso_store *store, const char *id, const char *reason, const char *actor, struct error *err);

/* Removes an ISO that is not mounted (operator's remove, ledger's
 * iso-delete); the ledger hears `deleted`. */
int iso_remove(struct iso_store *store, const char *id, const char *actor, struct error *err);

/* The ledger's quota for account, or for every account without one when
 * account is NULL; bytes < 0 forgets it (the default applies again). */
int iso_quota_set(struct iso_store *store, const char *account, int64_t bytes, struct error *err);

/* The quota that applies to account and the bytes its ISOs take. */
int iso_quota_get(struct iso_store *store, const char *account, uint64_t *ret_quota, uint64_t *ret_used,
                  struct error *err);

/* --- the service's CD drive --- */

/* Inserts an approved ISO of the service's account into its CD drive:
 * live (QMP) when the guest runs, and in the domain at every later start.
 * done is called once, as guest_done_fn promises; the ledger hears
 * `mounted`. */
int iso_mount(struct iso_store *store, const char *uuid, const char *id, const char *actor, guest_done_fn done,
              void *userdata, struct error *err);

/* Ejects whatever the service's CD drive holds (live when running); the
 * ledger hears `ejected`. A drive already empty is answered at once. */
int iso_eject(struct iso_store *store, const char *uuid, const char *actor, guest_done_fn done, void *userdata,
              struct error *err);

/* Whether the service boots from its CD drive first, from its next start
 * by vpsd on (the domain is defined anew at every start). */
int iso_boot_set(struct iso_store *store, const char *uuid, bool from_iso, const char *actor, struct error *err);

/* --- uploads (node/console.c, for vpsd-edge) --- */

/* The end of an upload, for the customer: status is an HTTP status (201
 * with text the ISO's id, else 4xx/5xx with text saying why, without a
 * path or any infrastructure name). Called once, on the loop, never from
 * inside iso_upload_begin(); not after iso_upload_abort(). */
typedef void (*iso_upload_result_fn)(struct iso_upload *upload, int status, const char *text, void *userdata);

/* Starts an upload for a verified ISO upload ticket (its nonce already
 * recorded) with label (printable ASCII; empty: "unnamed"): checks the
 * account's quota and the node's limits, and returns in *ret_fd the write
 * end of a pipe for the body (the caller passes it to the edge and closes
 * it). vpsd reads the other end on a thread of its own: it hashes and
 * counts every byte and stops at min(the ticket's max_bytes, the quota
 * left). A refusal: *ret_status and *ret_text for the customer. */
int iso_upload_begin(struct iso_store *store, const struct ticket *ticket, const char *label,
                     iso_upload_result_fn result, void *userdata, int *ret_fd, struct iso_upload **ret_upload,
                     int *ret_status, const char **ret_text, struct error *err);

/* The edge wrote all bytes bytes and closed the pipe: once the thread has
 * read them too, the image is validated and kept, or refused. */
void iso_upload_done(struct iso_upload *upload, uint64_t bytes);

/* The client or the edge went away: nothing is kept, and the result
 * callback is never called. */
void iso_upload_abort(struct iso_upload *upload);
