"""Guest lifecycle through vpsctl against the real libvirtd and TCG guests
from the tiny test template: provision, power, busy lock, terminate, bad
requests, and kill -9 of vpsd in the middle of operations."""

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
import uuid

import pytest

import memcheck
import libvirt_env
from conftest import VPSCTL

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcaVmvBmb0yb3ZwcTfWiR7f0r0kTvGm5CV2Ll0Bxw5k vpsd-test@example"
BOOT = 180  # seconds a TCG guest may take to print its ready marker (a loaded machine is slow)


def spec(**over):
    s = {
        "uuid": str(uuid.uuid4()),
        "account_id": "acct-42",
        "hostname": "web1",
        "plan": {"vcpus": 1, "memory_mib": 256, "disk_gib": 1, "port_speed_mbit": 100, "traffic_gib": None},
        "template": "tiny",
        "addresses": [{"address": "192.0.2.10", "prefix": 24, "gateway": "192.0.2.1"},
                      {"address": "2001:db8::10", "prefix": 64, "gateway": "2001:db8::1"}],
        "ssh_keys": [KEY],
    }
    s.update(over)
    return s


class Node:
    """A vpsd with guests: its bridge, its template, its paths."""

    def __init__(self, vpsd, bridge):
        self.vpsd = vpsd
        self.bridge = bridge
        self.run = vpsd.root / "guests"

    def provision(self, s, check=True):
        path = self.vpsd.root / f"spec-{s['uuid']}.json"
        path.write_text(json.dumps(s))
        r = self.vpsd.ctl("--json", "service", "provision", str(path), check=check)
        return json.loads(r.stdout) if r.returncode == 0 else r

    def console(self, u):
        return self.run / u / "console.log"

    def db(self):
        return sqlite3.connect(self.vpsd.state_dir / "vpsd.db")

    def files(self, u):
        return [self.vpsd.state_dir / "disks" / f"{u}.qcow2", self.vpsd.state_dir / "seeds" / f"{u}.iso",
                self.run / u]


@pytest.fixture
def node(vpsd_factory, libvirt, bridge, test_guest):
    v = vpsd_factory()
    v.start(hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=30)
    v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    n = Node(v, bridge)
    yield n
    # Whatever a test left: no domain of this vpsd survives it.
    with n.db() as db:
        for (u,) in db.execute("SELECT uuid FROM services"):
            libvirt_env.destroy_and_undefine(f"vpsd-{u}")
    assert v.stop(timeout=60) == 0, v.log_text()


def tap_of(u):
    """The guest port's name: vps + the UUID's first 12 hex digits."""
    return "vps" + u[:8] + u[9:13]


def domstate(u):
    return libvirt_env.domain_state(f"vpsd-{u}")


def test_provision_boots_with_its_seed(node):
    s = spec()
    r = node.provision(s)
    assert r["uuid"] == s["uuid"] and r["state"] == "running"
    password = r["root_password"]
    assert len(password) == 20

    assert domstate(s["uuid"]) == "running"
    log = libvirt_env.wait_console(str(node.console(s["uuid"])),
                                   ["VPSD-GUEST-READY hostname=web1", f"VPSD-SEED ssh-key={KEY}",
                                    "192.0.2.10/24", "2001:db8::10/64"], timeout=BOOT)
    assert password not in log

    shown = node.vpsd.ctl_json("service", "show", s["uuid"])
    assert shown["state"] == "running" and shown["busy"] is None
    assert [a["address"] for a in shown["addresses"]] == ["192.0.2.10", "2001:db8::10"]
    assert shown["ssh_keys"][0]["fingerprint"].startswith("SHA256:")
    assert shown["mac"].startswith("52:54:00:")

    with node.db() as db:
        (hashed,) = db.execute("SELECT root_password_hash FROM services WHERE uuid = ?", (s["uuid"],)).fetchone()
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert hashed.startswith("$6$") and again == hashed
    assert password not in node.vpsd.log_text(), "the password is never logged"
    disk, seed, run = node.files(s["uuid"])
    assert disk.exists() and seed.exists() and (run / "qmp.sock").is_socket()
    assert stat.S_IMODE(seed.stat().st_mode) == 0o400
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["virtual-size"] == 1 << 30, "the overlay is grown to the plan's disk"
    assert info["backing-filename"].endswith("/tiny.qcow2")


def test_power_operations(node):
    s = spec()
    node.provision(s)
    console = str(node.console(s["uuid"]))
    libvirt_env.wait_console(console, ["VPSD-GUEST-READY"], timeout=BOOT)

    r = node.vpsd.ctl_json("service", "stop", s["uuid"])
    assert r["state"] == "stopped" and domstate(s["uuid"]) == "shut off"
    r = node.vpsd.ctl_json("service", "start", s["uuid"])
    assert r["state"] == "running" and domstate(s["uuid"]) == "running"
    libvirt_env.wait_console(console, ["VPSD-GUEST-READY"], timeout=BOOT)
    before = libvirt_env.read_console_log(console).count("VPSD-GUEST-BOOTING")
    r = node.vpsd.ctl_json("service", "restart", s["uuid"])
    assert r["state"] == "running"
    deadline = time.monotonic() + BOOT
    while libvirt_env.read_console_log(console).count("VPSD-GUEST-BOOTING") <= before:
        assert time.monotonic() < deadline, "the guest did not boot again after restart"
        time.sleep(0.5)
    r = node.vpsd.ctl_json("service", "force-off", s["uuid"])
    assert r["state"] == "stopped" and domstate(s["uuid"]) == "shut off"
    assert node.vpsd.ctl_json("service", "show", s["uuid"])["state"] == "stopped"

    with node.db() as db:
        actions = [a for (a,) in db.execute(
            "SELECT action FROM activity_log a JOIN services s ON s.id = a.service_id WHERE s.uuid = ? ORDER BY a.id",
            (s["uuid"],))]
    assert actions == ["provisioned", "stopped", "started", "restarted", "forced off"]


def test_busy_while_provisioning(node, tmp_path):
    s = spec()
    path = node.vpsd.root / "spec.json"
    path.write_text(json.dumps(s))
    first = subprocess.Popen([str(node.vpsd.proc.args[0]).replace("vpsd", "vpsctl"), "--socket",
                              str(node.vpsd.socket), "service", "provision", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        r = node.vpsd.ctl("service", "start", s["uuid"], check=False)
        if "not found" not in r.stderr:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert r.returncode == 1 and r.stderr.strip() == "vpsctl: busy: provision", r.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert node.vpsd.ctl("service", "start", s["uuid"]).returncode == 0, "the lock is gone when it ends"


def test_terminate_removes_everything_and_releases_addresses(node):
    s = spec()
    node.provision(s)
    r = node.vpsd.ctl_json("service", "terminate", s["uuid"])
    assert r["state"] == "terminated"
    assert domstate(s["uuid"]) is None
    assert not any(p.exists() for p in node.files(s["uuid"]))
    shown = node.vpsd.ctl_json("service", "show", s["uuid"])
    assert shown["state"] == "terminated" and shown["addresses"] == []
    assert s["uuid"] not in node.vpsd.ctl("service", "list").stdout, "hidden from lists"
    # The addresses are free again.
    again = spec()
    assert node.provision(again)["state"] == "running"
    r = node.vpsd.ctl("service", "start", s["uuid"], check=False)
    assert r.returncode == 1 and "terminated" in r.stderr


@pytest.mark.parametrize("change,message", [
    ({"template": "nope"}, "template: `nope` is not on this node"),
    ({"plan": {"vcpus": 0, "memory_mib": 256, "disk_gib": 1, "port_speed_mbit": 100, "traffic_gib": None}},
     "plan.vcpus"),
    ({"plan": {"vcpus": 1, "memory_mib": 256, "disk_gib": 99999999, "port_speed_mbit": 100, "traffic_gib": None}},
     "plan.disk_gib"),
    ({"ssh_keys": ["ssh-ed25519 AAAAnotakey"]}, "ssh_keys[0]"),
    ({"hostname": "-bad-"}, "hostname"),
    ({"addresses": [{"address": "192.0.2.10", "prefix": 24, "gateway": "198.51.100.1"}]}, "addresses[0].gateway"),
])
def test_bad_provision_leaves_nothing(node, change, message):
    s = spec(**change)
    r = node.provision(s, check=False)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with node.db() as db:
        assert db.execute("SELECT count(*) FROM services").fetchone()[0] == 0
    assert domstate(s["uuid"]) is None
    assert not any(p.exists() for p in node.files(s["uuid"]))


def test_conflicts_with_other_services_refused(node):
    first = spec()
    node.provision(first)
    dup = node.provision(spec(uuid=first["uuid"]), check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    taken = spec()
    r = node.provision(taken, check=False)
    assert r.returncode == 1 and "addresses[0]: 192.0.2.10 is already used by another service" in r.stderr
    assert domstate(taken["uuid"]) is None and not any(p.exists() for p in node.files(taken["uuid"]))


def slow_tool(node, name, real):
    """A stand-in for a tool vpsd runs that first waits, so that vpsd can be
    killed while it is in that step."""
    path = node.vpsd.root / f"slow-{name}"
    path.write_text(f"#!/bin/sh\ntouch {node.vpsd.root}/{name}.started\nsleep 30\nexec {real} \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("step,tool,real", [
    ("disk", "qemu_img", "/usr/bin/qemu-img"),
    ("seed", "genisoimage", "/usr/bin/genisoimage"),
])
def test_kill_during_provision_rolls_back(node, step, tool, real):
    v = node.vpsd
    assert v.stop() == 0
    v.start(**{tool: slow_tool(node, tool, real)})
    s = spec()
    path = v.root / "spec.json"
    path.write_text(json.dumps(s))
    proc = subprocess.Popen([str(VPSCTL), "--socket", str(v.socket),
                             "service", "provision", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (v.root / f"{tool}.started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with node.db() as db:
        assert db.execute("SELECT busy_operation, busy_step FROM services WHERE uuid = ?",
                          (s["uuid"],)).fetchone() == ("provision", step)
    v.proc.send_signal(signal.SIGKILL)
    v.proc.wait()
    proc.wait(30)
    subprocess.run(["pkill", "-f", f"slow-{tool}"])

    v.start(**{tool: real})
    v.wait_log("reconcile: done", timeout=60)
    with node.db() as db:
        assert db.execute("SELECT count(*) FROM services").fetchone()[0] == 0, "the provision was rolled back"
        (result,) = db.execute("SELECT result FROM audit_log WHERE action = 'provision' AND target = ?",
                               (s["uuid"],)).fetchone()
        assert "rolled back" in result
    assert domstate(s["uuid"]) is None
    assert not any(p.exists() for p in node.files(s["uuid"]))
    # And the node works: the same service provisions now.
    assert node.provision(s)["state"] == "running"


def crash_at(node, operation, step, *vpsctl_args):
    """Restarts vpsd with VPSD_CRASH_AT so that it stops itself the moment
    `operation` has recorded `step`, runs the vpsctl command that starts the
    operation, and kills vpsd -9 right there. Returns the vpsctl process."""
    v = node.vpsd
    assert v.stop(timeout=60) == 0
    v.start(env={**os.environ, "VPSD_CRASH_AT": f"{operation}:{step}"})
    proc = subprocess.Popen([str(VPSCTL), "--socket", str(v.socket), *vpsctl_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    v.wait_log("crash point reached", timeout=120)
    with node.db() as db:
        busy = db.execute("SELECT busy_operation, busy_step FROM services WHERE busy_operation IS NOT NULL")
        assert busy.fetchall() == [(operation, step)]
    v.proc.send_signal(signal.SIGKILL)
    v.proc.wait()
    proc.wait(30)
    assert proc.returncode != 0, "the caller learns that its request did not complete"
    v.start()
    v.wait_log("reconcile: done", timeout=120)
    return proc


@pytest.mark.parametrize("step", ["disk", "seed", "domain"])
def test_kill_at_each_provision_step_rolls_back(node, step):
    s = spec()
    path = node.vpsd.root / "spec.json"
    path.write_text(json.dumps(s))
    crash_at(node, "provision", step, "service", "provision", str(path))
    with node.db() as db:
        assert db.execute("SELECT count(*) FROM services").fetchone()[0] == 0, "the provision was rolled back"
    assert domstate(s["uuid"]) is None
    assert not any(p.exists() for p in node.files(s["uuid"]))
    assert node.provision(s)["state"] == "running"


@pytest.mark.parametrize("step", ["undefine", "files", "release"])
def test_kill_at_each_terminate_step_is_finished(node, step):
    s = spec()
    node.provision(s)
    crash_at(node, "terminate", step, "service", "terminate", s["uuid"])
    shown = node.vpsd.ctl_json("service", "show", s["uuid"])
    assert shown["state"] == "terminated" and shown["busy"] is None and shown["addresses"] == []
    assert domstate(s["uuid"]) is None
    assert not any(p.exists() for p in node.files(s["uuid"]))
    assert not os.path.exists(f"/sys/class/net/{tap_of(s['uuid'])}"), "no tap is left"
    # The addresses are free again: another service takes them.
    assert node.provision(spec())["state"] == "running"


def test_reconcile_starts_what_should_run_and_removes_orphans(node):
    s = spec()
    node.provision(s)
    v = node.vpsd
    v.proc.send_signal(signal.SIGKILL)
    v.proc.wait()
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", f"vpsd-{s['uuid']}"], check=True)
    orphan = str(uuid.uuid4())
    # A domain and files of a service the node does not know.
    xml = libvirt_env.domain_xml(f"vpsd-{s['uuid']}").replace(s["uuid"], orphan)
    xml = xml.replace("<uuid>", "<uuid>").replace(f"<name>vpsd-{s['uuid']}</name>", f"<name>vpsd-{orphan}</name>")
    path = v.root / "orphan.xml"
    path.write_text(xml)
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", "define", str(path)], check=True)
    (v.state_dir / "disks" / f"{orphan}.qcow2").write_text("x")
    v.start()
    v.wait_log("reconcile: done", timeout=60)
    assert domstate(s["uuid"]) == "running", "a service that should run is started"
    assert domstate(orphan) is None, "a domain without a live service is removed"
    assert not (v.state_dir / "disks" / f"{orphan}.qcow2").exists()
    assert "removing a domain that belongs to no live service" in v.log_text()


def test_activity_log_shows_no_infrastructure(node):
    s = spec()
    node.provision(s)
    node.vpsd.ctl("service", "stop", s["uuid"])
    node.vpsd.ctl("service", "terminate", s["uuid"])
    with node.db() as db:
        rows = db.execute("SELECT actor, action, detail FROM activity_log").fetchall()
        audit = db.execute("SELECT actor, action, target, result FROM audit_log").fetchall()
    text = json.dumps(rows)
    tap = tap_of(s["uuid"])
    assert rows and "vpsd-" not in text and "/" not in text and tap not in text
    assert node.bridge not in text and os.uname().nodename not in text
    assert any(a[1] == "terminate" and a[2] == s["uuid"] and a[0].startswith("operator uid=0") for a in audit)


def test_poweroff_inside_the_guest_stops_the_service(node):
    """vpsd's QMP monitor sees the guest end itself: the service is stopped
    at once, and a restart of vpsd does not start it again."""
    s = spec()
    node.provision(s)
    libvirt_env.wait_console(str(node.console(s["uuid"])), ["VPSD-GUEST-READY"], timeout=BOOT)
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(node.run / s["uuid"] / "serial.sock"))
        c.sendall(b"\npoweroff -f\n")
        deadline = time.monotonic() + 60
        while node.vpsd.ctl_json("service", "show", s["uuid"])["state"] != "stopped":
            assert time.monotonic() < deadline, node.vpsd.log_text()
            time.sleep(0.2)
    assert domstate(s["uuid"]) == "shut off"
    with node.db() as db:
        actions = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert actions == ["provisioned", "stopped from inside the guest"]
    v = node.vpsd
    assert v.stop() == 0
    v.start()
    v.wait_log("reconcile: done", timeout=60)
    time.sleep(1)
    assert domstate(s["uuid"]) == "shut off", "reconcile leaves a guest that powered itself off alone"


def test_valgrind_clean_through_the_lifecycle(vpsd_factory, libvirt, bridge, test_guest):
    """vpsd under valgrind through import, provision, power, terminate and
    reconcile at start: no invalid access, no definite leak."""
    v = vpsd_factory()
    v.start(prefix=memcheck.prefix(),
            hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=5)
    v.wait_ready(timeout=60)
    v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    n = Node(v, bridge)
    s = spec()
    try:
        assert n.provision(s)["state"] == "running"
        assert v.ctl_json("service", "stop", s["uuid"])["state"] == "stopped"
        assert v.ctl_json("service", "start", s["uuid"])["state"] == "running"
        assert n.provision(spec(uuid=s["uuid"]), check=False).returncode == 1
        assert v.ctl_json("service", "terminate", s["uuid"])["state"] == "terminated"
    finally:
        libvirt_env.destroy_and_undefine(f"vpsd-{s['uuid']}")
    assert v.stop(timeout=120) == 0, v.log_text()


def test_reinstall_keeps_keys_and_gives_a_new_password(node, test_guest):
    s = spec()
    first = node.provision(s)
    console = str(node.console(s["uuid"]))
    libvirt_env.wait_console(console, ["VPSD-GUEST-READY"], timeout=BOOT)
    with node.db() as db:
        old_hash, old_iid = db.execute("SELECT root_password_hash, instance_id FROM services WHERE uuid = ?",
                                       (s["uuid"],)).fetchone()
    disk = node.files(s["uuid"])[0]
    marker = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True,
                            text=True, check=True).stdout
    # A second template under another name: reinstall may switch to it.
    node.vpsd.ctl("template", "import", "tiny2", str(test_guest / "guest.qcow2"))
    before = libvirt_env.read_console_log(console).count("VPSD-GUEST-BOOTING")

    r = node.vpsd.ctl_json("service", "reinstall", s["uuid"], "--template", "tiny2")
    assert r["state"] == "running" and len(r["root_password"]) == 20
    assert r["root_password"] != first["root_password"]
    assert domstate(s["uuid"]) == "running"
    deadline = time.monotonic() + BOOT
    while libvirt_env.read_console_log(console).count("VPSD-GUEST-READY") <= before:
        assert time.monotonic() < deadline, "the guest did not boot again"
        time.sleep(0.5)
    log = libvirt_env.read_console_log(console)
    assert log.count(f"VPSD-SEED ssh-key={KEY}") >= 2, "the keys were kept"
    shown = node.vpsd.ctl_json("service", "show", s["uuid"])
    assert shown["template"] == "tiny2" and shown["busy"] is None
    assert [a["address"] for a in shown["addresses"]] == ["192.0.2.10", "2001:db8::10"]
    with node.db() as db:
        new_hash, new_iid = db.execute("SELECT root_password_hash, instance_id FROM services WHERE uuid = ?",
                                       (s["uuid"],)).fetchone()
        actions = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert new_hash != old_hash and new_iid != old_iid
    assert actions == ["provisioned", "reinstalled"]
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["backing-filename"].endswith("/tiny2.qcow2"), "a new disk on the new template"
    assert marker != json.dumps(info)

    bad = node.vpsd.ctl("service", "reinstall", s["uuid"], "--template", "nope", check=False)
    assert bad.returncode == 1 and "template: `nope` is not on this node" in bad.stderr
    assert node.vpsd.ctl_json("service", "show", s["uuid"])["busy"] is None, "a refusal takes no lock"


def test_kill_during_reinstall_is_finished(node):
    v = node.vpsd
    s = spec()
    node.provision(s)
    assert v.stop(timeout=60) == 0
    v.start(qemu_img=slow_tool(node, "qemu_img", "/usr/bin/qemu-img"))
    proc = subprocess.Popen([str(VPSCTL), "--socket", str(v.socket),
                             "service", "reinstall", s["uuid"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (v.root / "qemu_img.started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with node.db() as db:
        assert db.execute("SELECT busy_operation, busy_step FROM services WHERE uuid = ?",
                          (s["uuid"],)).fetchone() == ("reinstall", "disk")
    v.proc.send_signal(signal.SIGKILL)
    v.proc.wait()
    proc.wait(30)
    subprocess.run(["pkill", "-f", "slow-qemu_img"])
    v.start(qemu_img="/usr/bin/qemu-img")
    v.wait_log("reconcile: done", timeout=120)
    shown = v.ctl_json("service", "show", s["uuid"])
    assert shown["state"] == "running" and shown["busy"] is None
    assert domstate(s["uuid"]) == "running"
    assert node.files(s["uuid"])[0].exists()
    assert "its root password must be reset" in v.log_text(this_run=True)


def test_resize(node):
    s = spec()
    node.provision(s)
    u = s["uuid"]
    r = node.vpsd.ctl_json("service", "resize", u, "vcpus=2", "memory_mib=384", "disk_gib=2", "port_speed_mbit=200",
                           "traffic_gib=500")
    assert sorted(r["at_next_start"]) == ["disk_gib", "memory_mib", "vcpus"]
    plan = node.vpsd.ctl_json("service", "show", u)["plan"]
    assert plan == {"vcpus": 2, "memory_mib": 384, "disk_gib": 2, "port_speed_mbit": 200, "traffic_gib": 500}
    assert "<vcpu placement='static'>1</vcpu>" in libvirt_env.domain_xml(f"vpsd-{u}"), "not before the next start"

    assert node.vpsd.ctl_json("service", "restart", u)["state"] == "running"
    xml = libvirt_env.domain_xml(f"vpsd-{u}")
    assert "<vcpu placement='static'>2</vcpu>" in xml and "<memory unit='KiB'>393216</memory>" in xml
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(node.files(u)[0])],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["virtual-size"] == 2 << 30, "the disk grew while the guest was off"

    bad = node.vpsd.ctl("service", "resize", u, "disk_gib=1", check=False)
    assert bad.returncode == 1 and "erases its data; confirm with disk_shrink_confirmed" in bad.stderr
    assert node.vpsd.ctl_json("service", "show", u)["plan"]["disk_gib"] == 2, "a refusal changes nothing"
    bad = node.vpsd.ctl("service", "resize", u, "vcpus=0", check=False)
    assert bad.returncode == 1 and "plan.vcpus" in bad.stderr
    bad = node.vpsd.ctl("service", "resize", u, "colour=3", check=False)
    assert bad.returncode == 1 and "plan: unknown field `colour`" in bad.stderr

    r = node.vpsd.ctl_json("service", "resize", u, "disk_gib=1", "--confirm-disk-shrink")
    assert r["state"] == "running" and len(r["root_password"]) == 20, "a shrink is a rebuild"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(node.files(u)[0])],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["virtual-size"] == 1 << 30
    with node.db() as db:
        actions = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert actions == ["provisioned", "resized", "restarted", "reinstalled"]


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.1)


def test_pause_and_resume_through_qmp(node):
    s = spec()
    node.provision(s)
    v, u = node.vpsd, s["uuid"]
    shown = v.ctl_json("service", "show", u)
    assert shown["paused"] is False and shown["booted_at"] >= shown["created_at"]
    # vpsd's monitor connects as QEMU comes up.
    wait_for(lambda: v.ctl("service", "pause", u, check=False).returncode == 0, 60, "pause")
    assert domstate(u) == "paused", "libvirt sees the vCPUs stopped too"
    shown = v.ctl_json("service", "show", u)
    assert shown["state"] == "running" and shown["paused"] is True
    assert "paused" in v.ctl("service", "show", u).stdout.splitlines()[1]
    r = v.ctl("service", "stop", u, check=False)
    assert r.returncode == 1 and "is paused: resume it first, or force it off" in r.stderr
    assert v.ctl("service", "resume", u).stdout.strip() == f"service {u}: running"
    assert domstate(u) == "running" and v.ctl_json("service", "show", u)["paused"] is False
    with node.db() as db:
        actions = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert actions[-2:] == ["paused", "resumed"]
    assert v.ctl("service", "resume", u).returncode == 0, "a guest that runs is left as it is"
    with node.db() as db:
        assert db.execute("SELECT count(*) FROM activity_log").fetchone()[0] == len(actions)
    r = v.ctl("service", "pause", str(uuid.uuid4()), check=False)
    assert r.returncode == 1 and "not found" in r.stderr


def test_qmp_events_update_the_service(node):
    """What happens to a guest around vpsd (an operator's virsh, the guest
    itself) reaches the service through QEMU's events on vpsd's monitor."""
    s = spec()
    node.provision(s)
    v, u = node.vpsd, s["uuid"]
    dom = f"vpsd-{u}"

    def shown():
        return v.ctl_json("service", "show", u)

    # vpsd's monitor is connected once a stop through it answers.
    wait_for(lambda: v.ctl("service", "pause", u, check=False).returncode == 0, 60, "monitor")
    v.ctl("service", "resume", u)
    libvirt_env.virsh("suspend", dom)                       # STOP
    wait_for(lambda: shown()["paused"] is True, what="STOP recorded")
    libvirt_env.virsh("resume", dom)                        # RESUME
    wait_for(lambda: shown()["paused"] is False, what="RESUME recorded")

    booted = shown()["booted_at"]
    time.sleep(1.1)
    libvirt_env.virsh("reset", dom)                         # RESET
    wait_for(lambda: shown()["booted_at"] > booted, what="RESET recorded")
    assert shown()["state"] == "running"

    iso = node.vpsd.root / "media.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), "-V", "MEDIA", "/etc/hostname"], check=True)
    # Where QEMU's user can read it (the test's own folders are private).
    public = f"/tmp/vpsd-media-{u}.iso"
    subprocess.run(["cp", str(iso), public], check=True)
    os.chmod(public, 0o644)
    try:
        libvirt_env.virsh("change-media", dom, "sda", public, "--insert", "--live")  # DEVICE_TRAY_MOVED
        with node.db() as db:
            wait_for(lambda: db.execute("SELECT count(*) FROM audit_log WHERE action = 'cd tray closed' "
                                        "AND target = ?", (u,)).fetchone()[0] >= 1, what="tray events")
        assert shown()["cdrom_tray_open"] is False
        # libvirt closes the tray after a change; opening it is QEMU's own verb.
        libvirt_env.virsh("qemu-monitor-command", dom, json.dumps(
            {"execute": "blockdev-open-tray", "arguments": {"id": "sata0-0-0"}}))
        wait_for(lambda: shown()["cdrom_tray_open"] is True, what="tray open recorded")
    finally:
        os.unlink(public)

    # The power button (the test guest has no ACPI daemon: it stays on;
    # a poweroff from inside has its own test above).
    libvirt_env.virsh("shutdown", "--mode", "acpi", dom)    # POWERDOWN
    with node.db() as db:
        wait_for(lambda: db.execute("SELECT count(*) FROM audit_log WHERE action = 'power button' "
                                    "AND target = ?", (u,)).fetchone()[0] == 1, what="POWERDOWN recorded")
        audit = [a for (a,) in db.execute("SELECT action || ' ' || detail FROM audit_log WHERE target = ? "
                                          "ORDER BY id", (u,))]
        activity = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert "reboot host-qmp-system-reset" in audit and "cd tray opened DEVICE_TRAY_MOVED" in audit
    # What the guest did after the reset is its own affair (a firmware or
    # kernel may reset once more); each reset is told.
    assert activity[:4] == ["provisioned", "paused", "resumed", "rebooted"], audit
    assert set(activity[4:]) <= {"rebooted"}, audit
    assert shown()["state"] == "running" and shown()["paused"] is False


def test_reconcile_leaves_another_vpsds_domains(node, vpsd_factory, test_guest):
    """Two vpsds on one libvirtd (a demo beside a node, parallel tests):
    each one's reconcile touches only the domains it made."""
    other = vpsd_factory("other")
    other.start(hypervisor="tcg", bridge=node.bridge, guest_run_dir=other.root / "guests")
    other.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    theirs = spec(addresses=[{"address": "198.51.100.7", "prefix": 24, "gateway": "198.51.100.1"}])
    path = other.root / "spec.json"
    path.write_text(json.dumps(theirs))
    other.ctl("service", "provision", str(path))
    try:
        ours = spec()
        node.provision(ours)
        v = node.vpsd
        assert v.stop() == 0
        v.start()
        v.wait_log("reconcile: done", timeout=60)
        assert domstate(theirs["uuid"]) == "running", "the other vpsd's guest is left alone"
        assert domstate(ours["uuid"]) == "running"
        assert "domains of another vpsd on this libvirtd are left alone" in v.log_text(this_run=True)
    finally:
        other.ctl("service", "terminate", theirs["uuid"], check=False)
        assert other.stop(timeout=60) == 0
