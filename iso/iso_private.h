/* What iso_store.c, iso_upload.c and iso_mount.c share. Not a contract
 * for anyone else. */
#pragma once

#include <limits.h>

#include "iso/iso.h"

struct iso_store {
        uv_loop_t *loop;
        struct store *store;
        struct guests *guests;
        char dir[PATH_MAX];
        uint64_t default_quota;
        unsigned max_uploads;
        gid_t qemu_gid;
        struct iso_upload *uploads; /* in flight */
        unsigned n_uploads;
        bool freeing;
};

/* One ISO's record. */
struct iso_record {
        char id[ISO_ID_MAX + 1];
        char account[TICKET_ACCOUNT_MAX + 1];
        char label[ISO_LABEL_MAX + 1];
        char state[16];
        uint64_t size;
        char sha256[65];
};

/* ISO_DIR/ID.iso into buf. */
int iso_path(const struct iso_store *s, const char *id, char *buf, size_t size);

/* Reads the record: -ENOENT "ISO `ID`: not found". */
int iso_record_get(struct iso_store *s, const char *id, struct iso_record *ret, struct error *err);

/* Queues the ledger's `iso` event (state uploaded|approved|…). size,
 * sha256, service, label: 0 / NULL to leave out. A failure is logged:
 * the change it tells of has happened. */
void iso_event(struct iso_store *s, const struct iso_record *r, const char *state, bool with_facts,
               const char *service);

/* Whether id is a well-formed ISO id. */
bool iso_id_valid(const char *id);

/* The upload's part of iso_store_free(): every upload aborted. */
void iso_uploads_abort_all(struct iso_store *s);
