"""The tiny test guest boots under libvirt (TCG) and applies its NoCloud seed.

Builds build/guest with tests/guest/build-guest.sh (cached), then boots:
  1. the BIOS disk template (qcow2 overlay, virtio) with an ISO seed on an IDE
     cdrom and a virtio NIC on a tap device - the way vpsd runs real guests;
  2. the kernel + initrd directly with a vfat seed on a second virtio disk;
  3. the kernel + initrd with no seed at all.
Run as root: /usr/bin/python3 -m pytest -v tests/integration/test_test_guest.py
Nothing is skipped: a missing prerequisite is a failure.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))
import libvirt_env  # noqa: E402

BUILD_GUEST = REPO / "tests" / "guest" / "build-guest.sh"
MAKE_SEED = REPO / "tests" / "guest" / "make-seed.sh"
GUEST_DIR = REPO / "build" / "guest"

BOOT_TIMEOUT = 60          # seconds from "virsh start" to VPSD-GUEST-READY
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcaVmvBmb0yb3ZwcTfWiR7f0r0kTvGm5CV2Ll0Bxw5k"
           " vpsd-test@example")
PASSWORD = "not-in-the-log-7f3a"


def _mac():
    b = os.urandom(3)
    return "52:54:00:%02x:%02x:%02x" % (b[0], b[1], b[2])


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def guest():
    """Build (or reuse) the guest; return its directory."""
    for tool in ("qemu-img", "virsh", "libvirtd", "virtlogd", "genisoimage", "mkfs.vfat", "mcopy"):
        assert shutil.which(tool), f"{tool} is not installed"
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(BUILD_GUEST), str(GUEST_DIR)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=900)
    assert p.returncode == 0, f"build-guest.sh failed:\n{p.stdout}"
    print(f"build-guest.sh: {time.monotonic() - t0:.1f}s: {p.stdout.strip().splitlines()[-1]}")
    for f in ("guest.qcow2", "vmlinuz", "initrd.img"):
        assert (GUEST_DIR / f).is_file(), f"{f} missing from {GUEST_DIR}"
    # a second run must be a no-op
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(BUILD_GUEST), str(GUEST_DIR)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and "up to date" in p.stdout, p.stdout
    assert time.monotonic() - t0 < 5, "cached build-guest.sh run is not instant"
    return GUEST_DIR


# ------------------------------------------------------------------ helpers
def make_seed(path, *args):
    p = subprocess.run(["bash", str(MAKE_SEED), str(path), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0, f"make-seed.sh failed:\n{p.stdout}"
    os.chmod(path, 0o644)
    return path


def domain_xml(name, rundir, disks, kernel=None, initrd=None, cmdline=None, nic=None):
    """disks: list of (path, device, bus, target, fmt, readonly)."""
    log = rundir / "serial.log"
    sock = rundir / "sock" / "serial.sock"
    boot = ""
    if kernel:
        boot = (f"<kernel>{escape(str(kernel))}</kernel><initrd>{escape(str(initrd))}</initrd>"
                f"<cmdline>{escape(cmdline)}</cmdline>")
    else:
        boot = "<boot dev='hd'/>"
    dx = []
    for path, device, bus, target, fmt, ro in disks:
        dx.append(f"""
    <disk type='file' device='{device}'>
      <driver name='qemu' type='{fmt}'/>
      <source file={quoteattr(str(path))}/>
      <target dev='{target}' bus='{bus}'/>
      {'<readonly/>' if ro else ''}
    </disk>""")
    nx = ""
    if nic:
        mac, tapname = nic
        nx = f"""
    <interface type='ethernet'>
      <mac address='{mac}'/>
      <target dev='{tapname}' managed='no'/>
      <model type='virtio'/>
    </interface>"""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{''.join(dx)}{nx}
    <serial type='unix'>
      <source mode='bind' path={quoteattr(str(sock))}/>
      <log file={quoteattr(str(log))} append='off'/>
      <target port='0'/>
    </serial>
    <graphics type='vnc' socket={quoteattr(str(rundir / 'sock' / 'vnc.sock'))}/>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


def boot(domains, rundir, xml, want, timeout=BOOT_TIMEOUT):
    """Start a domain, wait for all strings in `want` on the serial log."""
    name = re.search(r"<name>(.*?)</name>", xml).group(1)
    domains.append(name)
    t0 = time.monotonic()
    libvirt_env.define_and_start(xml)
    log = libvirt_env.wait_console(str(rundir / "serial.log"), want, timeout=timeout)
    print(f"{name}: VPSD-GUEST-READY after {time.monotonic() - t0:.1f}s")
    return log


def seed_lines(log):
    return [ln.strip() for ln in log.splitlines() if ln.startswith("VPSD-SEED ")]


def serial_command(rundir, command, timeout=20):
    """Type a command on the guest's serial console (a root shell) and return
    what the console printed until the command finished.  The end marker is
    computed by the shell, so the echo of the typed line never matches it."""
    end = "VPSD-CMD-END-42"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    s.connect(str(rundir / "sock" / "serial.sock"))
    buf = b""
    try:
        s.sendall(b"\n")
        deadline = time.monotonic() + timeout
        prompt_deadline = time.monotonic() + 3
        sent = False
        while time.monotonic() < deadline:
            if not sent and (b"# " in buf or time.monotonic() > prompt_deadline):
                s.sendall(command.encode() + b"; echo VPSD-CMD-END-$((40+2))\n")
                sent = True
            try:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            except socket.timeout:
                pass
            if sent and end.encode() in buf:
                return buf.decode("utf-8", "replace")
        raise AssertionError(f"the serial shell did not finish the command within {timeout}s;"
                             " got:\n" + buf.decode("utf-8", "replace")[-3000:])
    finally:
        s.close()


# ------------------------------------------------------------------ tests
def test_disk_template_boots_with_iso_seed_and_network(guest, libvirt, rundir, tap, domains):
    mac = _mac()
    host = "vpsd-tg-web1"
    iid = "iid-" + uuid.uuid4().hex[:12]
    tmpl = rundir / "template.qcow2"
    shutil.copyfile(guest / "guest.qcow2", tmpl)
    os.chmod(tmpl, 0o644)
    disk = libvirt_env.make_overlay(str(tmpl), str(rundir / "disk.qcow2"))
    seed = make_seed(rundir / "seed.iso", "--hostname", host, "--instance-id", iid,
                     "--ssh-key", SSH_KEY, "--password", PASSWORD,
                     "--mac", mac, "--address", "192.0.2.10/24", "--address", "2001:db8::10/64",
                     "--gateway4", "192.0.2.1", "--gateway6", "2001:db8::1")
    name = "vpsd-test-guest-%s" % uuid.uuid4().hex[:8]
    xml = domain_xml(name, rundir,
                     [(disk, "disk", "virtio", "vda", "qcow2", False),
                      (seed, "cdrom", "ide", "hdc", "raw", True)],
                     nic=(mac, tap))
    log = boot(domains, rundir, xml, ["VPSD-GUEST-READY"])

    assert "SYSLINUX" in log, "did not boot through the disk's syslinux"
    assert "VPSD-GUEST-BOOTING" in log
    assert f"VPSD-GUEST-READY hostname={host}" in log
    seeds = seed_lines(log)
    for want in (f"VPSD-SEED hostname={host}",
                 f"VPSD-SEED instance-id={iid}",
                 f"VPSD-SEED ssh-key={SSH_KEY}",
                 f"VPSD-SEED link=eth0 {mac}",
                 "VPSD-SEED address=eth0 192.0.2.10/24",
                 "VPSD-SEED address=eth0 2001:db8::10/64",
                 "VPSD-SEED gateway=eth0 192.0.2.1",
                 "VPSD-SEED gateway=eth0 2001:db8::1",
                 "VPSD-SEED password=root (text)"):
        assert want in seeds, f"{want!r} not in the seed report:\n" + "\n".join(seeds)
    assert not [s for s in seeds if "error=" in s], "\n".join(seeds)
    assert PASSWORD not in log, "the guest printed the password"

    # the serial console is a root shell, and the seed was really applied
    out = serial_command(
        rundir,
        "echo VPSD-T-$((6*7)); hostname; cat /root/.ssh/authorized_keys; "
        "ip -o addr show dev eth0; ip route; ip -6 route; cut -c1-8 /etc/shadow; "
        "echo VPSD-TTY1-SHELLS=$(for p in /proc/[0-9]*; do readlink $p/fd/0; done"
        " | grep -c '^/dev/tty1$')")
    assert "VPSD-T-42" in out
    assert re.search(r"^" + re.escape(host) + r"\r?$", out, re.M), out
    assert SSH_KEY in out
    assert "inet 192.0.2.10/24" in out and "inet6 2001:db8::10/64" in out, out
    assert "default via 192.0.2.1 dev eth0" in out, out
    assert "default via 2001:db8::1 dev eth0" in out, out
    assert "root:$6$" in out, out
    assert re.search(r"VPSD-TTY1-SHELLS=[1-9]", out), "no shell on the VGA console (tty1)"


def copy_kernel(guest, rundir):
    """Runtime copies QEMU's user can read, for a direct kernel boot."""
    copies = []
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(guest / name, rundir / name)
        os.chmod(rundir / name, 0o644)
        copies.append(rundir / name)
    return copies


def test_direct_kernel_boot_with_vfat_seed(guest, libvirt, rundir, domains):
    kernel, initrd = copy_kernel(guest, rundir)
    host = "vpsd-tg-fat"
    seed = make_seed(rundir / "seed.img", "--vfat", "--hostname", host, "--ssh-key", SSH_KEY)
    name = "vpsd-test-guest-%s" % uuid.uuid4().hex[:8]
    xml = domain_xml(name, rundir, [(seed, "disk", "virtio", "vdb", "raw", True)],
                     kernel=kernel, initrd=initrd,
                     cmdline="console=tty0 console=ttyS0,115200 panic=0")
    log = boot(domains, rundir, xml, [f"VPSD-GUEST-READY hostname={host}"])
    seeds = seed_lines(log)
    assert "VPSD-SEED source=/dev/vda" in seeds, "\n".join(seeds)
    assert f"VPSD-SEED ssh-key={SSH_KEY}" in seeds
    assert f"VPSD-SEED instance-id=iid-{host}" in seeds
    assert not [s for s in seeds if "error=" in s], "\n".join(seeds)


def test_no_seed(guest, libvirt, rundir, domains):
    kernel, initrd = copy_kernel(guest, rundir)
    name = "vpsd-test-guest-%s" % uuid.uuid4().hex[:8]
    xml = domain_xml(name, rundir, [], kernel=kernel, initrd=initrd,
                     cmdline="console=tty0 console=ttyS0,115200 panic=0 vpsd.seedwait=2")
    log = boot(domains, rundir, xml, ["VPSD-GUEST-READY hostname=vpsd-guest"])
    assert seed_lines(log) == ["VPSD-SEED none"], "\n".join(seed_lines(log))
