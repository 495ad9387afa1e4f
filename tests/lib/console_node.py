"""A node for the console tests: a vpsd whose store holds a service with
test servers on its console sockets (the guest's run folder as QEMU's user
makes it), and a test ledger's tickets for it. test_console.py and
test_console_valgrind.py share it."""

import os
import pwd
import sqlite3
import subprocess
import time

import console_client as cc
import edge_harness


def edge_pid(vpsd):
    out = subprocess.run(["pgrep", "-P", str(vpsd.proc.pid), "-f", "vpsd-edge"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


class ConsoleNode:
    def __init__(self, vpsd, ledger, port):
        self.vpsd = vpsd
        self.ledger = ledger
        self.port = port
        self.targets = []

    @classmethod
    def start(cls, vpsd, ready_timeout=10, **settings):
        """vpsd started with its console on a free port, trusting a fresh
        test ledger, its guests' run folders under its root."""
        ledger = cc.Ledger()
        port = edge_harness.free_port()
        key = ledger.public_pem(vpsd.root / "ledger.pub")
        vpsd.start(console_listen=f"127.0.0.1:{port}", ledger_public_key=key, guest_run_dir=vpsd.root / "guests",
                   **settings)
        vpsd.wait_log("console ready", timeout=ready_timeout)
        return cls(vpsd, ledger, port)

    def close_targets(self):
        for t in self.targets:
            t.close()

    @property
    def origin(self):
        return f"https://127.0.0.1:{self.port}"

    def url(self, kind, ticket):
        return f"wss://127.0.0.1:{self.port}/console/{kind}?ticket={ticket}"

    def db(self):
        return sqlite3.connect(self.vpsd.state_dir / "vpsd.db")

    def add_service(self, u, account="acct-42", state="running"):
        """A service row as provision leaves it, and a run folder as QEMU's
        user makes it, with test servers on its console sockets."""
        now = int(time.time())
        with self.db() as db:
            db.execute("INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, "
                       "port_speed_mbit, template, mac, created_at, updated_at) VALUES "
                       "(?, ?, 'web1', ?, 1, 256, 1, 100, 'tiny', ?, ?, ?)",
                       (u, account, state, "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3)), now, now))
        run = self.vpsd.root / "guests" / u
        run.mkdir(parents=True)
        vnc = edge_harness.EchoTarget(run / "vnc.sock", greeting=b"RFB 003.008\n")
        serial = edge_harness.EchoTarget(run / "serial.sock")
        self.targets += [vnc, serial]
        try:
            qemu = pwd.getpwnam("libvirt-qemu")
            for p in (run, run / "vnc.sock", run / "serial.sock"):
                os.chown(p, qemu.pw_uid, qemu.pw_gid)
        except KeyError:
            pass
        os.chmod(run, 0o750)
        return run

    def set_state(self, u, state, busy=None):
        with self.db() as db:
            db.execute("UPDATE services SET state = ?, busy_operation = ? WHERE uuid = ?", (state, busy, u))

    def open(self, kind, ticket, **kw):
        return cc.session(self.url(kind, ticket), self.origin, **kw)
