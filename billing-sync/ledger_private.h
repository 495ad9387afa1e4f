/* Between the ledger's files (ledger_db.c, ledger_accounts.c,
 * ledger_services.c). Not for other modules. */
#pragma once

#include <sqlite3.h>

#include "billing-sync/ledger_lease.h"
#include "billing-sync/ledger.h"
#include "billing-sync/sync_codec.h"
#include "common/ed25519.h"
#include "common/seal.h"

#define LEDGER_SEAL_KEY_SIZE SEAL_KEY_SIZE

struct ledger {
        struct store *store;
        /* Made with the database, kept beside it in 0600 files
         * (ledger_keys.c): the key console tickets are signed with, and
         * the key root passwords are sealed with. */
        struct ed25519_key *ticket_key;
        uint8_t seal_key[LEDGER_SEAL_KEY_SIZE];
};

/* Loads the ledger's keys from the files beside the database at path,
 * making each that is missing. */
int ledger_keys_open(struct ledger *ledger, const char *path, struct error *err);
void ledger_keys_close(struct ledger *ledger);

/* text sealed under the seal key with aad bound in (common/seal.h): *ret
 * of *ret_len bytes, malloc'd, as stored in service_secrets. */
int ledger_seal(struct ledger *ledger, const char *aad, const char *text, uint8_t **ret, size_t *ret_len,
                struct error *err);
/* The text sealed in blob[len] with aad, into a new *ret_text (wipe it
 * before freeing). -EBADMSG when it does not open. */
int ledger_unseal(struct ledger *ledger, const char *aad, const uint8_t *blob, size_t len, char **ret_text,
                  struct error *err);

/* A prepared statement with its parameters bound from types: 'i' an
 * int64_t, 't' a const char * (NULL binds NULL). */
int ledger_sql(struct ledger *ledger, sqlite3_stmt **ret_stmt, struct error *err, const char *sql,
               const char *types, ...);
/* Runs a statement that returns no rows; *ret_changes (may be NULL) the
 * rows it changed. */
int ledger_exec(struct ledger *ledger, int *ret_changes, struct error *err, const char *sql, const char *types, ...);
int ledger_sql_error(struct ledger *ledger, struct error *err, const char *what);

/* One transaction around each public operation: begin, then end with the
 * operation's result (commits on success, rolls back on failure). */
int ledger_begin(struct ledger *ledger, struct error *err);
int ledger_end(struct ledger *ledger, int r, struct error *err);

/* The account's balance; -ENOENT when there is no such account. */
int ledger_account_balance(struct ledger *ledger, const char *account, int64_t *ret, struct error *err);

/* Adds amount (signed cents) to account's wallet and logs it. */
int ledger_wallet_move(struct ledger *ledger, const char *account, int64_t amount, const char *kind,
                       const char *service, const char *memo, int64_t now, struct error *err);

/* Numbers msg with the node's next command seq and journals it. */
int ledger_queue(struct ledger *ledger, const char *node, struct sync_msg *msg, int64_t now, struct error *err);

struct ledger_service {
        char uuid[37];
        char account[LEDGER_ID_MAX + 1];
        char node[LEDGER_NAME_MAX + 1];
        char plan[LEDGER_NAME_MAX + 1];
        struct lease lease;
};
int ledger_service_load(struct ledger *ledger, const char *uuid, struct ledger_service *ret, struct error *err);
int ledger_service_save(struct ledger *ledger, const struct ledger_service *s, int64_t now, struct error *err);
/* The service's JSON (docs/ledger.md), addresses included. */
int ledger_service_json(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err);

/* Rows of a query as JSON objects keyed by column name. */
int ledger_rows_json(struct ledger *ledger, sqlite3_stmt *stmt, struct json_object **ret, struct error *err);
/* In each row, column (text SQLite's JSON functions made) as the JSON it
 * holds. */
void ledger_rows_parse_column(struct json_object *rows, const char *column);

/* Whether account has a service on node (only an active one when
 * active_only). */
bool ledger_account_on_node(struct ledger *ledger, const char *account, const char *node, bool active_only);
/* An iso event from node (ledger_iso.c): the ISO's record as the node
 * reports it. Another node's ISO, an account without a service on the
 * node, or a service not on it: nothing is recorded. */
int ledger_iso_event(struct ledger *ledger, const char *node, const struct sync_msg *e, struct error *err);

int ledger_plan_load(struct ledger *ledger, const char *name, struct ledger_plan *ret, struct error *err);

/* Queues a one-field command for a service (renew, suspend, unsuspend,
 * terminate) from its lease. */
int ledger_queue_lease(struct ledger *ledger, const struct ledger_service *s, enum sync_kind kind, int64_t now,
                       struct error *err);

/* Applies what is due at now to the leases of account (NULL: every
 * account), appending what it did to actions. */
int ledger_settle(struct ledger *ledger, const char *account, int64_t now, struct json_object *actions,
                  struct error *err);
