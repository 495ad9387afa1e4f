"""Fixtures for the integration tests: a real vpsd on a temporary state
directory, vpsctl against it, and cleanup of everything they start even
when a test fails. Run with Debian's /usr/bin/python3 (make integration)."""

import json
import os
import re
import shutil
import tempfile
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
VPSD = BUILD / "vpsd"
VPSCTL = BUILD / "vpsctl"
sys.path.insert(0, str(REPO / "tests" / "lib"))
# The schema version this vpsd migrates to: the number of rows of
# store_migrations[] in node/migrations.c, so that a new migration does not
# mean editing every test that looks at the version.
SCHEMA_VERSION = len(re.findall(r"^\s*\{ \d+, \"", (REPO / "node" / "migrations.c").read_text(), re.M))


def pytest_configure(config):
    for binary in (VPSD, VPSCTL):
        if not binary.exists():
            raise pytest.UsageError(f"{binary} is missing: run `make` first")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI nothing may be skipped: a skip there is a missing prerequisite,
    and that is a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is a failure: {report.longrepr}"


_tables = iter(range(1, 1 << 30))


class Vpsd:
    """One vpsd process on its own state dir, control socket and nftables
    table (so that vpsds of parallel tests never rebuild each other's)."""

    def __init__(self, root: Path):
        self.root = root
        self.state_dir = root / "state"
        self.socket = root / "run" / "control.sock"
        self.config = root / "vpsd.conf"
        self.log_path = root / "vpsd.log"
        self.proc = None
        self.settings = {
            "state_dir": str(self.state_dir),
            "control_socket": str(self.socket),
            # No KVM probe boot in ordinary tests: they are not about it.
            "kvm_device": str(root / "no-kvm"),
            "nft_table": f"vpsdt{os.getpid()}x{next(_tables)}",
        }

    def write_config(self, **settings):
        self.settings.update({k: str(v) for k, v in settings.items()})
        self.config.write_text("".join(f"{k} = {v}\n" for k, v in self.settings.items()))

    def start(self, wait=True, prefix=(), env=None, **settings):
        self.write_config(**settings)
        # What this run logs starts here: a restarted vpsd appends.
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*prefix, str(VPSD), "-c", str(self.config)],
                                     stdout=self.log, stderr=self.log, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vpsd exited with {self.proc.returncode}:\n{self.log_text()}")
            if "vpsd ready" in self.log_text(this_run=True) and self.socket.exists():
                return
            time.sleep(0.05)
        raise AssertionError(f"vpsd not ready within {timeout} s:\n{self.log_text()}")

    def log_text(self, this_run=False):
        """The log; with this_run, only what the latest start wrote."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            if this_run:
                f.seek(getattr(self, "log_start", 0))
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=10):
        """Waits for text in what the latest start logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text(this_run=True):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log_text()}")

    def ctl(self, *args, check=True, **kw):
        r = subprocess.run([str(VPSCTL), "--socket", str(self.socket), *args],
                           capture_output=True, text=True, timeout=60, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"vpsctl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.socket))
        return s

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"vpsd did not stop on SIGTERM:\n{self.log_text()}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def drop_table(self):
        """vpsd leaves its table when it stops (running guests stay
        filtered); a test's table goes with the test."""
        subprocess.run(["nft", "delete", "table", "bridge", self.settings["nft_table"]], capture_output=True)


@pytest.fixture
def vpsd_factory():
    """Makes Vpsd instances; every one is stopped and its files removed at the
    end, test failed or not. Their folders are world-traversable (not under
    pytest's private tmp) so that other users can reach the control socket
    and, later, libvirt's QEMU user its guests' files."""
    made = []
    base = Path(tempfile.mkdtemp(prefix="vpsd-test-", dir="/tmp"))
    os.chmod(base, 0o755)

    def make(name="vpsd"):
        root = base / name
        root.mkdir()
        os.chmod(root, 0o755)
        v = Vpsd(root)
        made.append(v)
        return v

    yield make
    for v in made:
        v.kill()
        v.drop_table()
        if v.proc is not None:
            v.log.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def vpsd(vpsd_factory):
    """A running vpsd on defaults (but its own paths)."""
    v = vpsd_factory()
    v.start()
    yield v
    assert v.stop() == 0, v.log_text()


def request_line(sock, payload: bytes):
    """Sends raw bytes and reads one reply line."""
    sock.sendall(payload)
    return read_line(sock)


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else None


GUEST_DIR = BUILD / "guest"


@pytest.fixture(scope="session")
def test_guest():
    """The tiny test guest (tests/guest/build-guest.sh), built once and cached
    in build/guest: kernel, initramfs and a bootable qcow2 template."""
    subprocess.run(["bash", str(REPO / "tests" / "guest" / "build-guest.sh"), str(GUEST_DIR)],
                   check=True, timeout=600)
    for name in ("vmlinuz", "initrd.img", "guest.qcow2"):
        assert (GUEST_DIR / name).exists(), f"build-guest.sh made no {name}"
    return GUEST_DIR


# ------------------------------------------------------------------ libvirt
import libvirt_env  # noqa: E402  (tests/lib, on sys.path above)


@pytest.fixture(scope="session")
def libvirt():
    """libvirtd and virtlogd, started if they were not running and stopped
    again at the end only if this session started them."""
    handle = libvirt_env.ensure_libvirt()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def rundir(libvirt):
    """A runtime folder QEMU's user can traverse, removed afterwards; its
    `sock` subfolder belongs to libvirt-qemu, for sockets QEMU creates."""
    d = Path(libvirt_env.make_runtime_dir("vpsd-test-guest"))
    try:
        yield d
    finally:
        libvirt_env.remove_runtime_dir(str(d))


@pytest.fixture
def tap():
    name = "vpsdtg%d" % (os.getpid() % 1000000)
    libvirt_env.create_tap(name)
    try:
        yield name
    finally:
        libvirt_env.delete_tap(name)


@pytest.fixture
def bridge():
    """A bridge for guest ports, left down: nothing a guest sends reaches
    the host's network stack."""
    name = "vpsbrt%d" % (os.getpid() % 100000)
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def domains(libvirt):
    """Collects started domains; destroys and undefines them afterwards."""
    names = []
    try:
        yield names
    finally:
        for n in names:
            libvirt_env.destroy_and_undefine(n)
        for n in names:
            assert not libvirt_env.domain_exists(n), f"domain {n} still defined"
