"""Rows put straight into vpsd's store (SQLite, its truth) by tests and
benchmarks that need services without provisioning guests: a service as
provision leaves it from the tiny template."""

import os
import time


def insert_service(db, u, account, state, hostname="web1", mac=None, paid_until=None):
    """One service row through db, an open sqlite3 connection (the caller
    commits); mac: a random 52:54:00 one when not given."""
    now = int(time.time())
    mac = mac or "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3))
    db.execute("INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, "
               "port_speed_mbit, template, mac, paid_until, created_at, updated_at) VALUES "
               "(?, ?, ?, ?, 1, 256, 1, 100, 'tiny', ?, ?, ?, ?)",
               (u, account, hostname, state, mac, paid_until, now, now))
