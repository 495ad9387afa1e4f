/* The reference ledger's store and rules (docs/ledger.md): accounts with
 * a prepaid wallet and its credit log, plans, nodes with capacity and
 * address pools, services and their leases, and the per-node command
 * journal the sync endpoint sends from. Each operation is one SQLite
 * transaction: it happens whole or not at all. Times come from the
 * caller (`now`), so that tests can move the clock.
 *
 * Results are JSON objects (docs/ledger.md shows them); the caller owns
 * them. Refusals: -ENOENT (no such account, plan, node or service),
 * -EEXIST, -ENOSPC (insufficient balance, no capacity, no address),
 * -EPERM (not allowed in the service's state), -EINVAL (bad input), each
 * with err saying which. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "billing-sync/sync_codec.h"
#include "common/error.h"
#include "node/store.h"

extern const struct migration ledger_migrations[];
extern const size_t ledger_migrations_count;

#define LEDGER_ID_MAX 128       /* account ids */
#define LEDGER_NAME_MAX 64      /* plan names, node ids, templates */
#define LEDGER_BULK_MAX 256     /* services in one bulk renewal */
#define LEDGER_SSH_KEYS_MAX 32
#define LEDGER_POOLS_MAX 16     /* per node */

struct ledger;

/* Opens (creating it 0600) and migrates the ledger's database. */
int ledger_open(const char *path, struct ledger **ret_ledger, struct error *err);
/* Accepts NULL; returns NULL. */
struct ledger *ledger_close(struct ledger *ledger);

int ledger_account_create(struct ledger *ledger, const char *id, const char *name, int64_t now, struct error *err);
/* Adds cents (> 0) to the wallet; then renews what was suspended for want
 * of it (see ledger_tick). */
int ledger_top_up(struct ledger *ledger, const char *account, int64_t cents, const char *memo, int64_t now,
                  struct json_object **ret, struct error *err);
/* Balance and credit log, the log checked against the balance. */
int ledger_account_show(struct ledger *ledger, const char *account, struct json_object **ret, struct error *err);

struct ledger_plan {
        char name[LEDGER_NAME_MAX + 1];
        int64_t vcpus, memory_mib, disk_gib, port_speed_mbit;
        int64_t traffic_gib; /* 0: unmetered */
        int64_t cycle_months;
        int64_t price;       /* cents a cycle */
};
int ledger_plan_create(struct ledger *ledger, const struct ledger_plan *plan, struct error *err);
int ledger_plan_list(struct ledger *ledger, struct json_object **ret, struct error *err);

struct ledger_node {
        char id[LEDGER_NAME_MAX + 1];
        const char *console_url; /* https://host[:port] of its console pages, or NULL */
        int64_t vcpus, memory_mib, disk_gib;
        const char *pools[LEDGER_POOLS_MAX]; /* "CIDR,GATEWAY" */
        size_t n_pools;
};
/* Adds a node and makes its sync key: *ret holds it (base64url), the only
 * time it is shown. */
int ledger_node_add(struct ledger *ledger, const struct ledger_node *node, int64_t now, struct json_object **ret,
                    struct error *err);
int ledger_node_list(struct ledger *ledger, struct json_object **ret, struct error *err);
/* The node's command journal after seq `after`. */
int ledger_node_commands(struct ledger *ledger, const char *node, int64_t after, struct json_object **ret,
                         struct error *err);

struct ledger_order {
        const char *account, *plan, *hostname, *template_name;
        const char *ssh_keys[LEDGER_SSH_KEYS_MAX];
        size_t n_ssh_keys;
        bool auto_renew;
};
/* Debits one cycle, chooses a node with room, allocates an IPv4 address
 * (and an IPv6 one where the node has a pool), and queues the provision. */
int ledger_order(struct ledger *ledger, const struct ledger_order *order, int64_t now, struct json_object **ret,
                 struct error *err);

/* Pays one more cycle of each service from its owner's wallet, all or
 * none; a suspended service whose lease then reaches past now is
 * unsuspended. */
int ledger_renew(struct ledger *ledger, const char *const *uuids, size_t n, int64_t now, struct json_object **ret,
                 struct error *err);
/* Moves a service to another plan of the same cycle: the difference
 * pro-rata to the end of the paid cycle, charged or credited
 * (billing-sync/money.h); a smaller disk only with confirm_disk_shrink. */
int ledger_change_plan(struct ledger *ledger, const char *uuid, const char *plan, bool confirm_disk_shrink,
                       int64_t now, struct json_object **ret, struct error *err);
int ledger_promise(struct ledger *ledger, const char *uuid, int64_t now, struct json_object **ret,
                   struct error *err);
int ledger_transfer(struct ledger *ledger, const char *uuid, const char *account, int64_t now, struct error *err);
/* The provider's correction of a lease (compensation, a goodwill
 * extension, or cutting a test service short): the paid period now ends at
 * paid_until (after now and after the period's start); no money moves,
 * a promise made in the cycle is forgotten, and the node gets `renew`. */
int ledger_set_paid_until(struct ledger *ledger, const char *uuid, int64_t paid_until, int64_t now,
                          struct json_object **ret, struct error *err);

int ledger_set_auto_renew(struct ledger *ledger, const char *uuid, bool on, int64_t now, struct error *err);

/* Services of account (NULL: all); terminated ones only when all. */
int ledger_service_list(struct ledger *ledger, const char *account, bool all, struct json_object **ret,
                        struct error *err);
int ledger_service_show(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err);

/* Applies what is due at now to every lease: renewals from the wallet,
 * suspensions, terminations after retention. *ret lists what it did. */
int ledger_tick(struct ledger *ledger, int64_t now, struct json_object **ret, struct error *err);

/* The ledger's console-ticket key, public half, as PEM: what nodes
 * configure as ledger_public_key. */
int ledger_ticket_public_pem(struct ledger *ledger, char **ret_pem, struct error *err);

/* Portal operations on a service (docs/ledger.md, "HTTP API"), each one
 * transaction; refused (-EPERM) unless the service is active. power: start,
 * stop, restart or force-off. reinstall: the node makes a fresh root
 * password and reports it once (ledger_root_password_take). */
int ledger_power(struct ledger *ledger, const char *uuid, const char *action, int64_t now, struct error *err);
int ledger_reinstall(struct ledger *ledger, const char *uuid, const char *template_name, const char *const *ssh_keys,
                     size_t n_ssh_keys, int64_t now, struct error *err);
/* The root password a node reported for the service, once: it is deleted
 * as it is handed out. -ENOENT when there is none (not yet, or taken). */
int ledger_root_password_take(struct ledger *ledger, const char *uuid, char **ret_password, struct error *err);
/* The service's traffic buckets as the node reported them. */
int ledger_traffic(struct ledger *ledger, const char *uuid, struct json_object **ret, struct error *err);
/* A console ticket (common/ticket.h) for account on the service, kind
 * "vnc" or "serial", valid 60 s from now, with the node's console URL.
 * -EACCES, always with the same words, unless the account owns the
 * service and it is active. */
int ledger_console_ticket(struct ledger *ledger, const char *uuid, const char *account, const char *kind,
                          int64_t now, struct json_object **ret, struct error *err);
/* The node's last inventory against the ledger's records of it. */
int ledger_node_drift(struct ledger *ledger, const char *node, struct json_object **ret, struct error *err);

/* A node's policy (set-policy, docs/sync-protocol.md): grace and
 * retention 0 to SYNC_POLICY_SECONDS_MAX, the ISO quota of every account
 * on the node (0: unchanged, as the node has it). */
struct ledger_policy {
        int64_t grace_seconds, retention_seconds;
        bool autonomous_removal;
        int64_t iso_quota_bytes;
};
/* Keeps the policy as the node's current one and queues set-policy. */
int ledger_node_policy(struct ledger *ledger, const char *node, const struct ledger_policy *policy, int64_t now,
                       struct error *err);

/* Customer ISOs (ledger_iso.c, docs/iso.md): records kept from the
 * node's iso events, and commands queued for the ISO's node. */
#define LEDGER_ISO_UPLOAD_MAX (INT64_C(64) << 30) /* bytes an upload ticket allows, at most */
#define LEDGER_ISO_REFUSED "iso refused"
#define LEDGER_ISO_UPLOAD_REFUSED "iso upload refused"

/* The ISOs of account (NULL: every account). For a customer (admin
 * false): id, label, size, sha256, state, mounted_in, deleted ones left
 * out; an admin also sees the node, the account and the times. */
int ledger_iso_list(struct ledger *ledger, const char *account, bool admin, struct json_object **ret,
                    struct error *err);
/* The owner's actions: -EACCES with LEDGER_ISO_REFUSED, whatever the
 * reason, unless account owns the ISO (and, to mount, the service too,
 * active and on the ISO's node); -EPERM when the ISO is not approved
 * (mount) or is mounted (delete). */
int ledger_iso_mount(struct ledger *ledger, const char *iso, const char *account, const char *service, int64_t now,
                     struct error *err);
int ledger_iso_eject(struct ledger *ledger, const char *service, const char *account, int64_t now,
                     struct error *err);
int ledger_iso_delete(struct ledger *ledger, const char *iso, const char *account, int64_t now, struct error *err);
/* The provider's: approve a pending ISO (for its own account), reject a
 * pending or approved one that is not mounted (reason may be NULL). */
int ledger_iso_approve(struct ledger *ledger, const char *iso, int64_t now, struct error *err);
int ledger_iso_reject(struct ledger *ledger, const char *iso, const char *reason, int64_t now, struct error *err);
/* An ISO upload ticket (common/ticket.h) for account on node, valid 60 s
 * from now, with the node's upload URL. -EINVAL unless max_bytes is 1 to
 * LEDGER_ISO_UPLOAD_MAX; -EACCES with LEDGER_ISO_UPLOAD_REFUSED, whatever
 * the reason, unless account has an active service on node. */
int ledger_iso_upload_ticket(struct ledger *ledger, const char *account, const char *node, int64_t max_bytes,
                             int64_t now, struct json_object **ret, struct error *err);

/* The sync endpoint's store (ledger_journal.c). */
struct ledger_node_seqs {
        int64_t last_command_seq;  /* the last command queued */
        int64_t acked_command_seq; /* the last the node acked */
        int64_t last_event_seq;    /* the last event stored */
};
/* The node's sync key; -ENOENT for an unknown node. */
int ledger_node_key(struct ledger *ledger, const char *node, uint8_t key[SYNC_KEY_SIZE], struct error *err);
int ledger_node_seqs(struct ledger *ledger, const char *node, struct ledger_node_seqs *ret, struct error *err);
/* The node authenticated saying it applied every command up to applied:
 * that counts as its ack. -ERANGE when applied is beyond the journal. */
int ledger_node_connected(struct ledger *ledger, const char *node, int64_t applied, int64_t now, struct error *err);
/* Command seq of node's journal into *ret (clear it after); -ENOENT when none. */
int ledger_command_load(struct ledger *ledger, const char *node, int64_t seq, struct sync_msg *ret,
                        struct error *err);
/* A command-ack: every command up to its seq acked, its result stored.
 * -ERANGE when the seq is beyond the journal. */
int ledger_command_ack(struct ledger *ledger, const char *node, const struct sync_msg *ack, int64_t now,
                       struct error *err);
/* An event from node, stored once and applied, in one transaction: 0
 * stored, 1 stored before (ack it again), -ENOMSG after a gap. */
int ledger_event_receive(struct ledger *ledger, const char *node, const struct sync_msg *event, int64_t now,
                         struct error *err);
