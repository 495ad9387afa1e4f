/* The ledger's schema, as numbered migrations in the style of the node's
 * (node/migrations.c) but for its own database. Append only: a migration
 * that has shipped is never edited. Money is integer cents; times are
 * Unix seconds (UTC). */
#include "ledger.h"

#include "common/util.h"

static const char migration_0001[] =
        /* A customer account and its prepaid wallet. `balance` is a cache
         * of the sum of its credit log, written by the same transaction as
         * each log entry; it is never negative. */
        "CREATE TABLE accounts ("
        "  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),"
        "  name TEXT NOT NULL DEFAULT '',"
        "  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),"
        "  created_at INTEGER NOT NULL"
        ");"
        /* Every movement of money, append only. */
        "CREATE TABLE credit_log ("
        "  id INTEGER PRIMARY KEY,"
        "  account_id TEXT NOT NULL REFERENCES accounts (id),"
        "  at INTEGER NOT NULL,"
        "  amount INTEGER NOT NULL CHECK (amount != 0),"
        "  balance_after INTEGER NOT NULL CHECK (balance_after >= 0),"
        "  kind TEXT NOT NULL CHECK (kind IN ('top-up', 'order', 'renewal', 'upgrade', 'downgrade')),"
        "  service_uuid TEXT,"
        "  memo TEXT NOT NULL DEFAULT ''"
        ");"
        "CREATE INDEX credit_log_account ON credit_log (account_id, id);"
        /* What is sold: resources and a price per cycle of calendar months. */
        "CREATE TABLE plans ("
        "  name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),"
        "  vcpus INTEGER NOT NULL CHECK (vcpus BETWEEN 1 AND 64),"
        "  memory_mib INTEGER NOT NULL CHECK (memory_mib BETWEEN 128 AND 1048576),"
        "  disk_gib INTEGER NOT NULL CHECK (disk_gib BETWEEN 1 AND 16384),"
        "  port_speed_mbit INTEGER NOT NULL CHECK (port_speed_mbit BETWEEN 1 AND 100000),"
        "  traffic_gib INTEGER CHECK (traffic_gib IS NULL OR traffic_gib > 0)," /* NULL: unmetered */
        "  cycle_months INTEGER NOT NULL CHECK (cycle_months BETWEEN 1 AND 36),"
        "  price INTEGER NOT NULL CHECK (price >= 0)"
        ");"
        /* A node: its capacity, its sync key (base64url; the database is
         * 0600 and the key is never printed but once, at `node add`), and
         * its two sequences: the last command queued for it, the last
         * command it acked and the last event stored from it. */
        "CREATE TABLE nodes ("
        "  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),"
        "  sync_key TEXT NOT NULL,"
        "  vcpus INTEGER NOT NULL CHECK (vcpus > 0),"
        "  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),"
        "  disk_gib INTEGER NOT NULL CHECK (disk_gib > 0),"
        "  last_command_seq INTEGER NOT NULL DEFAULT 0,"
        "  acked_command_seq INTEGER NOT NULL DEFAULT 0,"
        "  last_event_seq INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL"
        ");"
        "CREATE TABLE pools ("
        "  id INTEGER PRIMARY KEY,"
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  family INTEGER NOT NULL CHECK (family IN (4, 6)),"
        "  network TEXT NOT NULL,"
        "  prefix INTEGER NOT NULL,"
        "  gateway TEXT NOT NULL,"
        "  UNIQUE (network, prefix)"
        ");"
        /* A sold service and its lease (billing-sync/ledger_lease.h). An ended
         * service stays for admins with state 'terminated'. */
        "CREATE TABLE services ("
        "  uuid TEXT PRIMARY KEY CHECK (length(uuid) = 36),"
        "  account_id TEXT NOT NULL REFERENCES accounts (id),"
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  plan TEXT NOT NULL REFERENCES plans (name),"
        "  hostname TEXT NOT NULL,"
        "  template TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'terminated')),"
        "  period_start INTEGER NOT NULL,"
        "  paid_until INTEGER NOT NULL,"
        "  promised_until INTEGER NOT NULL DEFAULT 0,"
        "  cycle_months INTEGER NOT NULL,"
        "  anchor_day INTEGER NOT NULL CHECK (anchor_day BETWEEN 1 AND 31),"
        "  price INTEGER NOT NULL CHECK (price >= 0),"
        "  auto_renew INTEGER NOT NULL CHECK (auto_renew IN (0, 1)),"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");"
        "CREATE INDEX services_account ON services (account_id);"
        "CREATE INDEX services_due ON services (state, paid_until);"
        /* An address belongs to one live service; terminate frees it. */
        "CREATE TABLE addresses ("
        "  address TEXT PRIMARY KEY,"
        "  pool_id INTEGER NOT NULL REFERENCES pools (id),"
        "  service_uuid TEXT NOT NULL REFERENCES services (uuid)"
        ");"
        /* The per-node command journal: what the sync endpoint sends, from
         * the node's last ack on (docs/sync-protocol.md). `body` is the
         * command as sync_msg_to_body() writes it. */
        "CREATE TABLE commands ("
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  seq INTEGER NOT NULL CHECK (seq > 0),"
        "  kind TEXT NOT NULL,"
        "  service_uuid TEXT,"
        "  body TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  acked_at INTEGER,"
        "  PRIMARY KEY (node_id, seq)"
        ") WITHOUT ROWID;";

static const char migration_0002[] =
        /* Where a node's console pages are (https://host:port), for the
         * URLs that come with a console ticket. */
        "ALTER TABLE nodes ADD COLUMN console_url TEXT;"
        /* What the node says of a service (its state events), and when it
         * would remove it on its own (removal-queued). */
        "ALTER TABLE services ADD COLUMN node_state TEXT;"
        "ALTER TABLE services ADD COLUMN node_state_at INTEGER;"
        "ALTER TABLE services ADD COLUMN node_remove_after INTEGER;"
        /* How the node acked each command. */
        "ALTER TABLE commands ADD COLUMN result TEXT CHECK (result IS NULL OR result IN ('applied', 'failed'));"
        "ALTER TABLE commands ADD COLUMN error TEXT;"
        /* Every event a node sent, stored once, numbered with the node's
         * event seq. `body` is the event as sync_msg_to_body() writes it,
         * without a root password (that goes sealed into service_secrets). */
        "CREATE TABLE events ("
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  seq INTEGER NOT NULL CHECK (seq > 0),"
        "  kind TEXT NOT NULL,"
        "  service_uuid TEXT,"
        "  at INTEGER NOT NULL,"
        "  body TEXT NOT NULL,"
        "  received_at INTEGER NOT NULL,"
        "  PRIMARY KEY (node_id, seq)"
        ") WITHOUT ROWID;"
        "CREATE INDEX events_service ON events (service_uuid, seq);"
        /* The one-time root password of a provision or reinstall, sealed
         * (AES-256-GCM under the key file beside the database, the
         * service's UUID as associated data) until it is handed out once. */
        "CREATE TABLE service_secrets ("
        "  service_uuid TEXT PRIMARY KEY REFERENCES services (uuid),"
        "  command_seq INTEGER NOT NULL,"
        "  sealed BLOB NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ");"
        /* Traffic buckets from usage events; a bucket sent again replaces
         * the old numbers (the node's counters only grow within one). */
        "CREATE TABLE usage ("
        "  service_uuid TEXT NOT NULL,"
        "  size INTEGER NOT NULL CHECK (size IN (300, 3600, 86400)),"
        "  start INTEGER NOT NULL,"
        "  in_bytes INTEGER NOT NULL, in_packets INTEGER NOT NULL,"
        "  out_bytes INTEGER NOT NULL, out_packets INTEGER NOT NULL,"
        "  PRIMARY KEY (service_uuid, size, start)"
        ") WITHOUT ROWID;"
        /* The node's last inventory: what it holds, to compare with what
         * the ledger sold it. */
        "CREATE TABLE inventory ("
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  service_uuid TEXT NOT NULL,"
        "  state TEXT NOT NULL,"
        "  paid_until INTEGER NOT NULL,"
        "  PRIMARY KEY (node_id, service_uuid)"
        ") WITHOUT ROWID;"
        "ALTER TABLE nodes ADD COLUMN inventory_at INTEGER;";

static const char migration_0003[] =
        /* The policy last sent to each node with set-policy (NULL: never):
         * what the node applies to every lease, and the ISO quota each
         * account has there (NULL: never sent, the node's own). */
        "ALTER TABLE nodes ADD COLUMN policy_grace_seconds INTEGER;"
        "ALTER TABLE nodes ADD COLUMN policy_retention_seconds INTEGER;"
        "ALTER TABLE nodes ADD COLUMN policy_autonomous_removal INTEGER;"
        "ALTER TABLE nodes ADD COLUMN policy_iso_quota_bytes INTEGER;"
        "ALTER TABLE nodes ADD COLUMN policy_at INTEGER;"
        /* Customer ISOs as the node's iso events report them
         * (docs/iso.md): the node is the truth of their state. An id is
         * random on its node (iso- + 20 hex digits); one reported by
         * another node is not this one's. */
        "CREATE TABLE isos ("
        "  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),"
        "  node_id TEXT NOT NULL REFERENCES nodes (id),"
        "  account_id TEXT NOT NULL,"
        "  label TEXT NOT NULL DEFAULT '',"
        "  size INTEGER,"
        "  sha256 TEXT,"
        "  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'deleted')),"
        "  uploaded_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");"
        "CREATE INDEX isos_account ON isos (account_id, uploaded_at);"
        /* What each service's CD drive holds (one drive, one ISO; an ISO
         * may be in several drives). */
        "CREATE TABLE iso_mounts ("
        "  service_uuid TEXT PRIMARY KEY REFERENCES services (uuid),"
        "  iso_id TEXT NOT NULL REFERENCES isos (id),"
        "  at INTEGER NOT NULL"
        ");"
        "CREATE INDEX iso_mounts_iso ON iso_mounts (iso_id);";

const struct migration ledger_migrations[] = {
        { 1, "accounts, credit log, plans, nodes, pools, services, addresses, command journal", migration_0001 },
        { 2, "node console URL, node-side service state, acks' results, events, sealed secrets, usage, inventory",
          migration_0002 },
        { 3, "node policy, customer ISOs and what each service's CD drive holds", migration_0003 },
};
const size_t ledger_migrations_count = ARRAY_SIZE(ledger_migrations);
