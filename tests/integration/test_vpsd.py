"""vpsd the daemon, driven through vpsctl: status, services, lock, signals,
sd_notify, schema checks, and a valgrind run."""

import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

import memcheck
from conftest import SCHEMA_VERSION, VPSD, VPSCTL

UUID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


def insert_service(db_path, uuid=UUID, state="running", hostname="web1", account="acct-42"):
    """What the guest layer will write; here straight into SQLite, which vpsd
    reads as its truth."""
    now = int(time.time())
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        cur = db.execute(
            "INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib,"
            " port_speed_mbit, traffic_gib, template, mac, paid_until, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 2, 2048, 40, 1000, NULL, 'debian-12', ?, ?, ?, ?)",
            (uuid, account, hostname, state, "52:54:00:" + uuid[:2] + ":" + uuid[2:4] + ":" + uuid[4:6],
             now + 86400 * 30, now, now))
        sid = cur.lastrowid
        db.execute("INSERT INTO addresses (service_id, family, address, prefix, gateway, position)"
                   " VALUES (?, 4, ?, 24, '192.0.2.1', 0)", (sid, "192.0.2." + str(10 + sid)))
        db.execute("INSERT INTO addresses (service_id, family, address, prefix, gateway, position)"
                   " VALUES (?, 6, ?, 64, '2001:db8::1', 1)", (sid, "2001:db8::" + str(10 + sid)))
        db.execute("INSERT INTO ssh_keys (service_id, position, public_key, fingerprint)"
                   " VALUES (?, 0, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey test@example', 'SHA256:abc')", (sid,))
    return sid


def test_status_human_and_json(vpsd):
    human = vpsd.ctl("status").stdout
    assert "vpsd 0.1.0" in human
    assert f"schema      {SCHEMA_VERSION}" in human
    assert "0 running" in human
    assert "hypervisor  tcg" in human

    st = vpsd.ctl_json("status")
    assert st["version"] == "0.1.0"
    assert st["pid"] == vpsd.proc.pid
    assert st["schema_version"] == SCHEMA_VERSION
    assert st["uptime_s"] >= 0
    assert st["services"] == {"provisioning": 0, "running": 0, "stopped": 0, "suspended": 0,
                              "removal-queued": 0, "terminated": 0}
    assert st["hypervisor"]["accel"] == "tcg"
    assert st["hypervisor"]["configured"] == "auto"
    assert "no-kvm" in st["hypervisor"]["reason"]


def test_service_list_and_show(vpsd):
    db = vpsd.state_dir / "vpsd.db"
    assert "no services" in vpsd.ctl("service", "list").stdout
    insert_service(db)
    gone = "0a2f8c1e-0000-4000-8000-00000000dead"
    insert_service(db, uuid=gone, state="terminated", hostname="old")

    listed = vpsd.ctl("service", "list").stdout
    assert UUID in listed and "web1" in listed and "running" in listed
    assert gone not in listed, "terminated services are hidden by default"
    assert gone in vpsd.ctl("service", "list", "--all").stdout

    services = vpsd.ctl_json("service", "list")["services"]
    assert [s["uuid"] for s in services] == [UUID]

    shown = vpsd.ctl_json("service", "show", UUID)
    assert shown["uuid"] == UUID
    assert shown["account_id"] == "acct-42"
    assert shown["plan"] == {"vcpus": 2, "memory_mib": 2048, "disk_gib": 40,
                             "port_speed_mbit": 1000, "traffic_gib": None}
    assert [a["family"] for a in shown["addresses"]] == [4, 6]
    assert shown["addresses"][0]["gateway"] == "192.0.2.1"
    assert shown["ssh_keys"][0]["fingerprint"] == "SHA256:abc"
    assert shown["busy"] is None

    human = vpsd.ctl("service", "show", UUID).stdout
    assert "2 vCPU, 2048 MiB, 40 GiB disk, 1000 Mbit/s, unmetered" in human
    assert "2001:db8::" in human

    st = vpsd.ctl_json("status")
    assert st["services"]["running"] == 1 and st["services"]["terminated"] == 1


def test_service_show_errors(vpsd):
    r = vpsd.ctl("service", "show", "00000000-0000-4000-8000-000000000000", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "vpsctl: not_found: service 00000000-0000-4000-8000-000000000000: not found"
    r = vpsd.ctl("service", "show", "../../etc/passwd", check=False)
    assert r.returncode == 2 and "not a service UUID" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    ([], "missing command"),
    (["frobnicate"], "unknown command `frobnicate`"),
    (["service"], "unknown command `service`"),
    (["service", "list", "extra"], "unknown command"),
    (["status", "--all"], "--all goes with `service list` only"),
    (["--bogus", "status"], "try `vpsctl --help`"),
])
def test_vpsctl_usage_errors(vpsd, args, message):
    r = vpsd.ctl(*args, check=False)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_vpsctl_when_vpsd_is_down(tmp_path):
    r = subprocess.run([str(VPSCTL), "--socket", str(tmp_path / "none.sock"), "status"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"vpsctl: cannot reach vpsd at {tmp_path}/none.sock: "
                                "No such file or directory (is vpsd running?)")
    assert "--socket" in subprocess.run([str(VPSCTL), "--help"], capture_output=True, text=True).stdout


def test_second_vpsd_on_same_state_dir_refused(vpsd):
    r = subprocess.run([str(VPSD), "-c", str(vpsd.config)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert f"another vpsd (pid {vpsd.proc.pid}) is running on state dir" in r.stderr
    assert vpsd.ctl("status").returncode == 0, "the first one still serves"


def test_sigterm_stops_cleanly(vpsd_factory):
    v = vpsd_factory().start()
    assert v.socket.exists()
    assert v.stop() == 0
    assert not v.socket.exists(), "the control socket is removed"
    assert "vpsd stopped" in v.log_text()
    # The lock died with the process: a new vpsd starts on the same dir.
    v.start()
    assert v.stop() == 0


def test_sighup_reloads_config(vpsd_factory):
    v = vpsd_factory().start(log_level="info")
    v.ctl("status")
    assert "control: request" not in v.log_text()

    v.write_config(log_level="debug")
    v.signal(signal.SIGHUP)
    v.wait_log("configuration reloaded")
    v.ctl("status")
    v.wait_log("control: request")

    # A bad file is refused as a whole; the running configuration stays.
    v.config.write_text(v.config.read_text() + "log_level = loud\n")
    v.signal(signal.SIGHUP)
    v.wait_log("config reload failed; keeping the running configuration")
    assert "key `log_level`" in v.log_text()
    assert v.ctl_json("status")["version"] == "0.1.0"

    # A key that needs a restart is reported, not half-applied.
    v.write_config(log_level="debug", hypervisor="tcg")
    v.signal(signal.SIGHUP)
    v.wait_log("takes effect only at restart\" key=hypervisor")
    assert v.ctl_json("status")["hypervisor"]["configured"] == "auto"
    assert v.stop() == 0


def test_sd_notify(vpsd_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        v = vpsd_factory().start(env={**os.environ, "NOTIFY_SOCKET": path})
        assert sock.recv(4096) == b"READY=1"
        v.signal(signal.SIGHUP)
        assert sock.recv(4096) == b"RELOADING=1"
        assert sock.recv(4096) == b"READY=1"
        assert v.stop() == 0
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_newer_schema_refused(vpsd_factory):
    v = vpsd_factory()
    v.state_dir.mkdir()
    db = v.state_dir / "vpsd.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE future (x)")
        c.execute("PRAGMA user_version = 99")
    v.start(wait=False)
    assert v.proc.wait(20) == 1
    assert (f"has schema version 99, newer than the {SCHEMA_VERSION} this vpsd knows"
            in v.log_text())
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 99
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'services'").fetchone() is None


def test_fresh_state_dir_is_private(vpsd):
    # Others may pass through (QEMU's user reaches disks and templates below
    # it) but not list it; what is inside keeps its own modes.
    assert (vpsd.state_dir.stat().st_mode & 0o777) == 0o711
    assert ((vpsd.state_dir / "vpsd.db").stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(vpsd.state_dir / "vpsd.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"services", "addresses", "ssh_keys", "activity_log", "audit_log", "command_journal",
            "outbox"} <= tables


def test_valgrind_clean(vpsd_factory):
    """The daemon under valgrind: no invalid access, no definite leak, through
    a start, every control method, bad requests and a SIGTERM."""
    v = vpsd_factory()
    v.start(prefix=memcheck.prefix())
    v.state_dir.joinpath("vpsd.db")
    insert_service(v.state_dir / "vpsd.db")
    v.ctl("status")
    v.ctl("service", "list")
    v.ctl("service", "show", UUID)
    v.ctl("service", "show", "00000000-0000-4000-8000-000000000000", check=False)
    s = v.connect()
    s.sendall(b'{"id": 1, "method": "nope"}\n{broken\n' + b"x" * 70000 + b"\n")
    time.sleep(0.5)
    s.close()
    v.signal(signal.SIGHUP)
    v.wait_log("configuration reloaded", timeout=30)
    assert v.stop(timeout=60) == 0, v.log_text()
