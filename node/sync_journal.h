/* The node's half of the sync protocol's durable state (docs/sync-protocol.md,
 * "Sequences, journal, acks and resending"), in the store:
 *
 * - the command journal: a command is journaled when it arrives (so it is
 *   applied whatever happens next, a restart included), applied, and
 *   finished with its result and its `result` event in one transaction;
 *   the ack goes out only then;
 * - the outbox's sending side: events above the ledger's last stored seq,
 *   and their acknowledgement, which also forgets sealed secrets.
 *
 * Pure store: no I/O but SQLite, no clock but the one passed in. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "billing-sync/sync_codec.h"
#include "common/error.h"
#include "common/seal.h"
#include "node/store.h"

#define SYNC_SEAL_LABEL "vpsd outbox root_password"

/* The highest command seq journaled (0: none yet): the `last_command_seq`
 * a node sends in `auth`. */
int journal_last(struct store *store, int64_t *ret_seq, struct error *err);

/* Journals cmd (a command whose seq is journal_last() + 1) as received. */
int journal_add(struct store *store, const struct sync_msg *cmd, int64_t now, struct error *err);

/* The highest seq up to which every command has finished: what may be
 * acked (acks are cumulative). */
int journal_finished_upto(struct store *store, int64_t *ret_seq, struct error *err);

/* How seq ended: *ret_finished false while it is open; else result
 * ("applied" or "failed") and, when failed, why. */
int journal_outcome(struct store *store, int64_t seq, bool *ret_finished, char result[16],
                    char error[SYNC_TEXT_MAX + 1], struct error *err);

/* Open commands (received or applying) in seq order: seq, state and the
 * command itself; fn returns false to stop. */
typedef bool (*journal_open_fn)(int64_t seq, bool applying, const struct sync_msg *cmd, void *userdata);
int journal_open_each(struct store *store, journal_open_fn fn, void *userdata, struct error *err);

int journal_mark_applying(struct store *store, int64_t seq, struct error *err);

/* Whether the audit log shows that the command seq already took effect
 * (its actor is journal_actor()): a command cut short by a crash after
 * its operation ended is finished, not applied again. */
void journal_actor(int64_t seq, char buf[40]);
int journal_audit_outcome(struct store *store, int64_t seq, bool *ret_found, bool *ret_ok,
                          char error[SYNC_TEXT_MAX + 1], struct error *err);

/* Finishes cmd: its outcome and its `result` event (with the one-time
 * root password sealed under seal_key, when there is one), both or
 * neither; inside the caller's transaction when it holds one. */
int journal_finish(struct store *store, const struct sync_msg *cmd, bool ok, const char *error,
                   const char *root_password, const uint8_t seal_key[SEAL_KEY_SIZE], int64_t now,
                   struct error *err);

/* Unacked events with seq above after, in order, at most max: fn gets each
 * as a message (seq and a root password unsealed in it) and returns false
 * to stop. */
typedef bool (*outbox_pending_fn)(struct sync_msg *event, void *userdata);
int outbox_each_pending(struct store *store, int64_t after, unsigned max, const uint8_t seal_key[SEAL_KEY_SIZE],
                        outbox_pending_fn fn, void *userdata, struct error *err);

/* The ledger stored every event up to seq: they are acked, and their
 * sealed secrets are gone. */
int outbox_acked(struct store *store, int64_t seq, int64_t now, struct error *err);

/* Makes every transaction committed so far durable on disk (the store
 * runs WAL with synchronous=NORMAL: commits survive a crash of vpsd, not a
 * power loss): one fsync of the WAL for everything before it. Called
 * before acks are sent, so that one fsync covers a whole batch of them. */
int journal_make_durable(struct store *store, struct error *err);

/* Events not acked yet. */
int outbox_unacked_count(struct store *store, int64_t *ret_count, struct error *err);
