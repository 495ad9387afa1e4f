/* The schema, as numbered migrations. Append only: a migration that has
 * shipped is never edited; a change is a new migration at the end.
 * Times are Unix seconds (UTC); money never lives on the node. */
#include "store.h"

#include "common/util.h"

static const char migration_0001[] =
        /* A service is what the ledger sold. `state` follows the service
         * life in ARCHITECTURE.md; `busy_*` is the persisted busy lock of a
         * long operation and the step it reached. */
        "CREATE TABLE services ("
        "  id INTEGER PRIMARY KEY,"
        "  uuid TEXT NOT NULL UNIQUE CHECK (length(uuid) = 36),"
        "  account_id TEXT NOT NULL CHECK (length(account_id) BETWEEN 1 AND 128),"
        "  hostname TEXT NOT NULL CHECK (length(hostname) BETWEEN 1 AND 253),"
        "  state TEXT NOT NULL CHECK (state IN ('provisioning', 'running', 'stopped', 'suspended',"
        "                                       'removal-queued', 'terminated')),"
        "  vcpus INTEGER NOT NULL CHECK (vcpus > 0),"
        "  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),"
        "  disk_gib INTEGER NOT NULL CHECK (disk_gib > 0),"
        "  port_speed_mbit INTEGER NOT NULL CHECK (port_speed_mbit > 0),"
        "  traffic_gib INTEGER CHECK (traffic_gib IS NULL OR traffic_gib > 0)," /* NULL: unmetered */
        "  template TEXT NOT NULL,"
        "  mac TEXT NOT NULL UNIQUE,"
        "  paid_until INTEGER,"
        "  suspend_reason TEXT,"
        "  busy_operation TEXT,"
        "  busy_step TEXT,"
        "  busy_since INTEGER,"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");"
        "CREATE INDEX services_state ON services (state);"
        /* The first address of a family (lowest position) is the primary. An
         * address belongs to one service on this node; terminate deletes it. */
        "CREATE TABLE addresses ("
        "  id INTEGER PRIMARY KEY,"
        "  service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,"
        "  family INTEGER NOT NULL CHECK (family IN (4, 6)),"
        "  address TEXT NOT NULL UNIQUE,"
        "  prefix INTEGER NOT NULL CHECK (prefix BETWEEN 0 AND 128),"
        "  gateway TEXT,"
        "  position INTEGER NOT NULL,"
        "  UNIQUE (service_id, position)"
        ");"
        "CREATE TABLE ssh_keys ("
        "  id INTEGER PRIMARY KEY,"
        "  service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,"
        "  position INTEGER NOT NULL,"
        "  public_key TEXT NOT NULL,"
        "  fingerprint TEXT NOT NULL,"
        "  UNIQUE (service_id, position)"
        ");"
        /* What the customer may see about their service: names it by public
         * UUID only, never by infrastructure identifiers. */
        "CREATE TABLE activity_log ("
        "  id INTEGER PRIMARY KEY,"
        "  service_id INTEGER NOT NULL REFERENCES services (id),"
        "  at INTEGER NOT NULL,"
        "  actor TEXT NOT NULL CHECK (actor IN ('customer', 'ledger', 'operator', 'node')),"
        "  action TEXT NOT NULL,"
        "  detail TEXT NOT NULL DEFAULT ''"
        ");"
        "CREATE INDEX activity_log_service ON activity_log (service_id, at);"
        /* What operators and the ledger did on this node, for the audit
         * trail: who (peer uid, ledger), what, on what, with what result. */
        "CREATE TABLE audit_log ("
        "  id INTEGER PRIMARY KEY,"
        "  at INTEGER NOT NULL,"
        "  actor TEXT NOT NULL,"
        "  action TEXT NOT NULL,"
        "  target TEXT NOT NULL DEFAULT '',"
        "  result TEXT NOT NULL,"
        "  detail TEXT NOT NULL DEFAULT ''"
        ");"
        /* Ledger commands by their per-node sequence number: a command is
         * journaled before it is applied and acked after its result is
         * durable, so none is applied twice. */
        "CREATE TABLE command_journal ("
        "  seq INTEGER PRIMARY KEY CHECK (seq > 0),"
        "  kind TEXT NOT NULL,"
        "  service_uuid TEXT,"
        "  body TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('received', 'applying', 'applied', 'failed')),"
        "  result TEXT,"
        "  received_at INTEGER NOT NULL,"
        "  finished_at INTEGER"
        ");"
        /* Events for the ledger, resent until acked. */
        "CREATE TABLE outbox ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  kind TEXT NOT NULL,"
        "  service_uuid TEXT,"
        "  body TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  acked_at INTEGER"
        ");"
        "CREATE INDEX outbox_unacked ON outbox (seq) WHERE acked_at IS NULL;"
        /* Facts the node learnt about itself and caches across restarts
         * (the hypervisor probe's verdict and what it was taken on). */
        "CREATE TABLE node_facts ("
        "  key TEXT PRIMARY KEY,"
        "  value TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");";

static const char migration_0002[] =
        /* Read-only OS images that guest disks are overlays on
         * (node/template.c). The file at `path` is written, made 0444 and
         * named before its row is inserted; a file without a row is
         * garbage that vpsd removes at start. `format` is always given to
         * QEMU explicitly, never probed. A service names its template by
         * `services.template`; a template in use by a service that is not
         * terminated cannot be removed. */
        "CREATE TABLE templates ("
        "  name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),"
        "  os_name TEXT NOT NULL CHECK (length(os_name) BETWEEN 1 AND 64),"
        "  format TEXT NOT NULL CHECK (format IN ('qcow2', 'raw')),"
        "  virtual_size INTEGER NOT NULL CHECK (virtual_size > 0)," /* bytes */
        "  min_disk_gib INTEGER NOT NULL CHECK (min_disk_gib > 0),"
        "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"       /* of the file's bytes, lower-case hex */
        "  size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),"     /* the file's length */
        "  imported_at INTEGER NOT NULL,"
        "  path TEXT NOT NULL UNIQUE"
        ");"
        "CREATE INDEX services_template ON services (template);";

static const char migration_0003[] =
        /* What provisioning records beyond the plan: the root password's
         * crypt(3) hash (the password itself is never stored) and the
         * cloud-init instance-id of the current install. */
        "ALTER TABLE services ADD COLUMN root_password_hash TEXT;"
        "ALTER TABLE services ADD COLUMN instance_id TEXT;";

static const char migration_0004[] =
        /* What QEMU's events say about a guest that runs (node/monitor.c):
         * its vCPUs are paused (STOP until RESUME), its CD tray is open
         * (DEVICE_TRAY_MOVED), and when it last booted (a start by vpsd,
         * or a RESET: a reboot from inside). */
        "ALTER TABLE services ADD COLUMN paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1));"
        "ALTER TABLE services ADD COLUMN cdrom_tray_open INTEGER NOT NULL DEFAULT 0 CHECK (cdrom_tray_open IN (0, 1));"
        "ALTER TABLE services ADD COLUMN booted_at INTEGER;";

static const char migration_0005[] =
        /* Traffic (node/traffic.c): the last sample of each guest port's
         * counters, and what they grew by, in 5-minute, hourly and daily
         * buckets (`size` in seconds, `start` aligned to it, UTC). in = to
         * the guest, out = from it. */
        "CREATE TABLE traffic_counters ("
        "  service_id INTEGER PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,"
        "  in_bytes INTEGER NOT NULL, in_packets INTEGER NOT NULL,"
        "  out_bytes INTEGER NOT NULL, out_packets INTEGER NOT NULL,"
        "  sampled_at INTEGER NOT NULL"
        ");"
        "CREATE TABLE traffic_buckets ("
        "  service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,"
        "  size INTEGER NOT NULL CHECK (size IN (300, 3600, 86400)),"
        "  start INTEGER NOT NULL,"
        "  in_bytes INTEGER NOT NULL, in_packets INTEGER NOT NULL,"
        "  out_bytes INTEGER NOT NULL, out_packets INTEGER NOT NULL,"
        "  PRIMARY KEY (service_id, size, start)"
        ") WITHOUT ROWID;";

static const char migration_0006[] =
        /* Console ticket nonces (node/console_check.c): each accepted once,
         * remembered until its ticket could no longer be accepted anyway
         * (expires_at: exp + the clock skew), then purged. */
        "CREATE TABLE console_nonces ("
        "  nonce TEXT PRIMARY KEY CHECK (length(nonce) = 22),"
        "  expires_at INTEGER NOT NULL"
        ") WITHOUT ROWID;"
        "CREATE INDEX console_nonces_expiry ON console_nonces (expires_at);";

static const char migration_0007[] =
        /* Suspension (node/guest_suspend.c, node/lease.c): when and why a
         * service was suspended: `lease` (its paid lease ended: the node's
         * own decision, after which retention runs), `ledger` or
         * `operator` (held until lifted); and the power state it goes back
         * to when it is lifted. */
        "ALTER TABLE services ADD COLUMN suspended_at INTEGER;"
        "ALTER TABLE services ADD COLUMN suspend_kind TEXT CHECK (suspend_kind IN ('lease', 'ledger', 'operator'));"
        "ALTER TABLE services ADD COLUMN resume_state TEXT CHECK (resume_state IN ('running', 'stopped'));"
        "CREATE INDEX services_paid_until ON services (paid_until) WHERE paid_until IS NOT NULL;";

static const char migration_0008[] =
        /* The sync client (node/sync*.c). Every change of a service's state
         * queues a `state` event for the ledger in the same transaction as
         * the change, wherever in vpsd it is made (the protocol's body
         * without its seq, which is the row's). */
        "CREATE TRIGGER services_state_event AFTER UPDATE OF state ON services "
        "WHEN NEW.state IS NOT OLD.state BEGIN "
        "  INSERT INTO outbox (kind, service_uuid, body, created_at) VALUES ('state', NEW.uuid, "
        "    CASE WHEN NEW.state = 'suspended' AND NEW.suspend_reason IS NOT NULL "
        "      THEN json_object('v', 1, 'kind', 'state', 'at', unixepoch(), 'service', NEW.uuid, "
        "                       'state', NEW.state, 'reason', substr(NEW.suspend_reason, 1, 256)) "
        "      ELSE json_object('v', 1, 'kind', 'state', 'at', unixepoch(), 'service', NEW.uuid, "
        "                       'state', NEW.state) END, unixepoch());"
        "END;"
        /* The one-time root password of a `result` event, sealed with a key
         * derived from the ledger key (AES-256-GCM), until the ledger has
         * acknowledged it; then it is gone from the node. */
        "ALTER TABLE outbox ADD COLUMN sealed_secret TEXT;"
        /* Commands wait for an earlier one on the same service. */
        "CREATE INDEX command_journal_open ON command_journal (seq) WHERE state IN ('received', 'applying');";

static const char migration_0009[] =
        /* The customer ISO store (iso/, docs/iso.md). An ISO's file is
         * ISO_DIR/ID.iso, named by its random id, never by what the
         * customer called it (`label`, shown only). It is linked into
         * place before its row is inserted; a file without a row is an
         * upload a crash cut short, removed at start. pending: uploaded and
         * valid, waiting for the ledger or the operator; approved: may be
         * mounted into the account's services; rejected ISOs are deleted
         * with their files (the outbox keeps the story). */
        "CREATE TABLE isos ("
        "  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^a-z0-9-]*'),"
        "  account_id TEXT NOT NULL CHECK (length(account_id) BETWEEN 1 AND 128),"
        "  label TEXT NOT NULL CHECK (length(label) BETWEEN 1 AND 200),"
        "  size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),"
        "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
        "  format TEXT NOT NULL CHECK (format IN ('iso9660', 'udf')),"
        "  state TEXT NOT NULL CHECK (state IN ('pending', 'approved')),"
        "  uploaded_at INTEGER NOT NULL,"
        "  approved_at INTEGER"
        ");"
        "CREATE INDEX isos_account ON isos (account_id);"
        /* The quota of ISO bytes (pending and approved) an account may
         * keep on this node, as the ledger set it; account_id '*' is the
         * ledger's value for every account without its own. Neither:
         * iso_quota_bytes from vpsd.conf. */
        "CREATE TABLE iso_quotas ("
        "  account_id TEXT PRIMARY KEY CHECK (length(account_id) BETWEEN 1 AND 128),"
        "  quota_bytes INTEGER NOT NULL CHECK (quota_bytes >= 0),"
        "  updated_at INTEGER NOT NULL"
        ");"
        /* What the service's CD drive holds (an approved ISO of its
         * account, live through QMP and in the domain at every start), and
         * whether it boots from it first at its next start. */
        "ALTER TABLE services ADD COLUMN iso_id TEXT REFERENCES isos (id);"
        "ALTER TABLE services ADD COLUMN boot_iso INTEGER NOT NULL DEFAULT 0 CHECK (boot_iso IN (0, 1));";

const struct migration store_migrations[] = {
        { 1, "services, addresses, ssh keys, logs, journal, outbox", migration_0001 },
        { 2, "templates", migration_0002 },
        { 3, "root password hash and instance-id", migration_0003 },
        { 4, "guest runtime facts from QMP events", migration_0004 },
        { 5, "traffic counters and buckets", migration_0005 },
        { 6, "console ticket nonces", migration_0006 },
        { 7, "suspension: when, why, and the state to go back to", migration_0007 },
        { 8, "sync: state events, sealed secrets, the open commands", migration_0008 },
        { 9, "customer ISO store", migration_0009 },
};
const size_t store_migrations_count = ARRAY_SIZE(store_migrations);
