"""A node for the console tests: vpsd with its web console and no
guests. Started with console_listen, vpsd runs the real vpsd-edge; a
service row put in its store (after reconcile) has a run folder, as
QEMU's user makes it, whose vnc.sock and serial.sock are test servers
(edge_harness.EchoTarget, or any class made like it); a test ledger
signs its tickets. test_console.py, test_console_hostile.py and
test_console_valgrind.py share it."""

import os
import pwd
import shlex
import sqlite3
import subprocess
from pathlib import Path

import console_client as cc
import edge_harness
import memcheck
import store_rows

REPO = Path(__file__).resolve().parents[2]
EDGE = REPO / "build" / "vpsd-edge"


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

    @classmethod
    def start(cls, vpsd, ready_timeout=10, **settings):
        """vpsd started with its console on a free port, trusting a fresh
        test ledger, its guests' run folders under its root; settings are
        more vpsd.conf keys (or overrides)."""
        ledger = cc.Ledger()
        port = edge_harness.free_port()
        config = dict(console_listen=f"127.0.0.1:{port}", ledger_public_key=ledger.public_pem(vpsd.root / "ledger.pub"),
                      guest_run_dir=vpsd.root / "guests")
        config.update(settings)
        vpsd.start(**config)
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

    def add_service(self, u, account="acct-42", state="running", serial=None):
        """A service row as provision leaves it, and a run folder as QEMU's
        user makes it, with test servers on its console sockets: an echo
        (or serial(path), a server of the caller's) on serial.sock."""
        with self.db() as db:
            store_rows.insert_service(db, u, account, state)
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


def edge_valgrind_wrapper(folder: Path, quiet=False):
    """The program vpsd starts as its edge (console_edge): vpsd-edge under
    memcheck with the arguments vpsd gave it, a log per pid in
    folder/logs. vpsd starts the program as root; the edge itself becomes
    its user once it has bound its port and read its key (console/main.c),
    so valgrind opens its log before that and writes it through that fd
    to the end. The folders stay root's (0755: the edge's user may read,
    never replace, the report on it). --vgdb=no: the FIFOs valgrind makes
    in /tmp at start as root could not be removed by the edge's user at
    exit, and would stay behind (memcheck.prefix() says so). quiet: the log says nothing unless
    something is wrong."""
    logs = folder / "logs"
    logs.mkdir(parents=True)
    os.chmod(folder, 0o755)
    os.chmod(logs, 0o755)
    script = folder / "vpsd-edge-valgrind"
    command = memcheck.prefix(f"--log-file={logs}/edge.%p.log", quiet=quiet) + [str(EDGE)]
    script.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(c) for c in command) + ' "$@"\n')
    os.chmod(script, 0o755)
    return script, logs
