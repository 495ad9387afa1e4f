"""vpsd with its web console and no guests, as the console tests use it:
vpsd started with console_listen runs the real vpsd-edge, and a service row
put in its store (after reconcile) has a run folder whose vnc.sock and
serial.sock are test servers (edge_harness.EchoTarget, or any class made
like it)."""

import os
import pwd
import sqlite3
import subprocess
import time

import console_client as cc
import edge_harness


def edge_pid(vpsd):
    """The pid of vpsd's vpsd-edge child, None when there is none."""
    out = subprocess.run(["pgrep", "-P", str(vpsd.proc.pid), "-f", "vpsd-edge"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


class ConsoleNode:
    def __init__(self, vpsd, ledger, port):
        self.vpsd = vpsd
        self.ledger = ledger
        self.port = port
        self.targets = []

    @property
    def origin(self):
        return f"https://127.0.0.1:{self.port}"

    def url(self, kind, ticket):
        return f"wss://127.0.0.1:{self.port}/console/{kind}?ticket={ticket}"

    def db(self):
        return sqlite3.connect(self.vpsd.state_dir / "vpsd.db")

    def add_service(self, u, account="acct-42", state="running", serial=None):
        """A service row as provision leaves it, and a run folder as QEMU's
        user makes it, with test servers on its console sockets: an echo
        (or serial(path), a server of the caller's) on serial.sock."""
        now = int(time.time())
        with self.db() as db:
            db.execute("INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib, "
                       "port_speed_mbit, template, mac, created_at, updated_at) VALUES "
                       "(?, ?, 'web1', ?, 1, 256, 1, 100, 'tiny', ?, ?, ?)",
                       (u, account, state, "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3)), now, now))
        run = self.vpsd.root / "guests" / u
        run.mkdir(parents=True)
        vnc = edge_harness.EchoTarget(run / "vnc.sock", greeting=b"RFB 003.008\n")
        serial = (serial or edge_harness.EchoTarget)(run / "serial.sock")
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

    def close_targets(self):
        for t in self.targets:
            t.close()


def start(vpsd_factory, **settings):
    """A vpsd serving its console on a free port, ledger tickets trusted;
    settings are more vpsd.conf keys (or overrides)."""
    v = vpsd_factory()
    ledger = cc.Ledger()
    port = edge_harness.free_port()
    config = dict(console_listen=f"127.0.0.1:{port}", ledger_public_key=ledger.public_pem(v.root / "ledger.pub"),
                  guest_run_dir=v.root / "guests")
    config.update(settings)
    v.start(**config)
    v.wait_log("console ready")
    return ConsoleNode(v, ledger, port)
