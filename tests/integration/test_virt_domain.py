"""node/domain.c and node/virt.c against the real libvirtd: vpsd's domain
XML boots the test template under TCG with its seed, its consoles are unix
sockets in the run folder, vpsd's QMP monitor answers, and the libvirt
operations report what they did."""

import json
import os
import shutil
import socket
import subprocess
import time
import uuid

import libvirt_env
from conftest import BUILD, REPO

DRIVER = BUILD / "tests" / "virt_domain"
URI = "qemu:///system"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcaVmvBmb0yb3ZwcTfWiR7f0r0kTvGm5CV2Ll0Bxw5k vpsd-test@example"


def drive(*args, check=True):
    r = subprocess.run([str(DRIVER), args[0], URI, *args[1:]], capture_output=True, text=True, timeout=180)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def qmp(path, *commands):
    """Talks to vpsd's own QMP monitor: greeting, capabilities, commands."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(path))
    f = s.makefile("rwb")
    assert "QMP" in json.loads(f.readline())
    replies = []
    for cmd in ("qmp_capabilities", *commands):
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "event" not in msg:
                break
        replies.append(msg)
    s.close()
    return replies[1:]


def test_domain_boots_and_is_driven(test_guest, rundir, bridge, domains):
    service = str(uuid.uuid4())
    name = "vpsd-" + service
    template = rundir / "template.qcow2"
    shutil.copyfile(test_guest / "guest.qcow2", template)
    os.chmod(template, 0o444)
    disk = libvirt_env.make_overlay(str(template), str(rundir / "disk.qcow2"))
    seed = rundir / "seed.iso"
    mac = "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3))
    subprocess.run(["bash", str(REPO / "tests/guest/make-seed.sh"), str(seed), "--hostname", "web1",
                    "--ssh-key", KEY, "--mac", mac, "--address", "192.0.2.10/24", "--gateway4", "192.0.2.1"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(seed, 0o644)
    run_dir = rundir / "sock"
    tap = "vpst%d" % (os.getpid() % 100000)

    domains.append(name)
    assert drive("start", name, service, "tcg", "1", "256", disk, seed, mac, bridge, tap, run_dir) == "running"
    assert drive("state", name) == "running"

    xml = libvirt_env.domain_xml(name)
    assert "<domain type='qemu'" in xml
    assert os.path.exists(f"/sys/class/net/{bridge}/brif/{tap}"), "the tap is on the node's bridge"

    log = libvirt_env.wait_console(str(run_dir / "console.log"),
                                   ["VPSD-GUEST-READY hostname=web1", f"VPSD-SEED ssh-key={KEY}",
                                    "192.0.2.10/24"], timeout=180)
    assert "VPSD-SEED hostname=web1" in log

    for sock in ("vnc.sock", "serial.sock", "qmp.sock"):
        assert (run_dir / sock).is_socket(), f"{sock} is a unix socket in the run folder"
    # VNC speaks RFB on its unix socket; nothing listens on TCP.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(run_dir / "vnc.sock"))
        assert s.recv(12).startswith(b"RFB 003.")

    # vpsd's own QMP monitor pauses and resumes the vCPUs.
    assert qmp(run_dir / "qmp.sock", "stop", "query-status")[1]["return"]["status"] == "paused"
    assert qmp(run_dir / "qmp.sock", "cont", "query-status")[1]["return"]["running"] is True

    assert drive("destroy", name) == "off"
    assert drive("start", name) == "running"
    assert drive("undefine", name) == "absent"
    assert drive("state", name) == "absent"
    assert not libvirt_env.domain_exists(name)
    # Operations on what is gone: destroy and undefine are quiet, start says so.
    assert drive("destroy", name) == "absent"
    assert drive("undefine", name) == "absent"
    out = drive("start", name, check=False)
    assert out.startswith(f"error: libvirt start `{name}`: ") and "Domain not found" in out


def test_bad_xml_is_reported(libvirt, rundir, bridge, domains):
    """libvirt's refusal comes back as a message, nothing is left defined."""
    service = str(uuid.uuid4())
    name = "vpsd-" + service
    domains.append(name)
    out = drive("start", name, service, "tcg", "1", "256", rundir / "missing.qcow2", "", "52:54:00:00:00:01",
                bridge, "vpsx%d" % (os.getpid() % 100000), rundir / "sock", check=False)
    assert out.startswith("error: libvirt define and start `domain`: "), out
