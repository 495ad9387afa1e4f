"""node/qmp against a real QEMU (TCG): build/tests/qmp_probe drives the
client through connect, reconnect, query-status, stop, cont, 200 timed
stop/cont pairs and quit. A second QMP monitor on the same QEMU, read here
in Python, is the independent witness that the stops and resumes really
happened."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD

QEMU = "/usr/bin/qemu-system-x86_64"
PROBE = BUILD / "tests" / "qmp_probe"
ITERATIONS = 200


def qemu_version():
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"version (\d+\.\d+\.\d+)", out).group(1)


def wait_for_socket(path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"qemu exited with {proc.returncode}")
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError(f"qemu made no {path} within {timeout} s")


class Qemu:
    def __init__(self, folder: Path, machine: str):
        self.qmp = folder / "qmp.sock"
        self.witness = folder / "witness.sock"
        self.log = open(folder / "qemu.log", "wb")
        args = [QEMU, "-machine", machine, "-accel", "tcg", "-nodefaults", "-display", "none",
                "-qmp", f"unix:{self.qmp},server=on,wait=off",
                "-qmp", f"unix:{self.witness},server=on,wait=off"]
        if machine != "none":
            args += ["-m", "64"]  # a vCPU that runs the firmware, so stop has one to halt
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        wait_for_socket(self.qmp, self.proc)
        wait_for_socket(self.witness, self.proc)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def qemu_factory():
    made = []
    folder = Path(tempfile.mkdtemp(prefix="vpsd-qmp-", dir="/tmp"))

    def make(machine="none"):
        q = Qemu(folder, machine)
        made.append(q)
        return q

    yield make
    for q in made:
        q.kill()
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()


class Witness(threading.Thread):
    """Reads every event on the second monitor until QEMU closes it."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        assert "QMP" in json.loads(self.file.readline())
        self.sock.sendall(b'{"execute": "qmp_capabilities", "id": 1}\n')
        assert json.loads(self.file.readline()) == {"return": {}, "id": 1}
        self.events = []
        self.start()

    def run(self):
        for line in self.file:
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg["event"])

    def count(self, name):
        return self.events.count(name)


def run_probe(path, *args, timeout=120):
    r = subprocess.run([str(PROBE), str(path), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout.splitlines(), r.stderr


def test_probe_is_built():
    assert PROBE.exists(), f"{PROBE} is missing: the Makefile must list it in PROGRAMS"


@pytest.mark.parametrize("machine", ["none", "pc"])
def test_stop_cont_real_qemu(qemu_factory, machine):
    qemu = qemu_factory(machine)
    witness = Witness(qemu.witness)

    code, lines, stderr = run_probe(qemu.qmp, ITERATIONS)
    assert code == 0, "\n".join(lines) + stderr

    # What the client saw, in order (the timings aside).
    timings = [l for l in lines if l.startswith("rtt ")]
    samples = [l for l in lines if l.startswith("samples ")]
    facts = [l for l in lines if not l.startswith(("rtt ", "samples "))]
    assert facts[:12] == [
        f"connected {qemu_version()}",
        "status running running=true",
        "reconnected",
        "status running running=true",
        # QEMU announces the state change before it answers the command.
        "event STOP",
        "stop ok",
        "status paused running=false",
        "event RESUME",
        "cont ok",
        "status running running=true",
        "status running running=true",
        f"events STOP={ITERATIONS + 1} RESUME={ITERATIONS + 1}",
    ]
    assert facts[12] == "quit ok"
    # QEMU closes on quit; it resets the connection when it exits with
    # the request's trailing newline unread (it reads one byte at a time).
    assert facts[13] in ("disconnected: QEMU closed the connection",
                         "disconnected: QEMU reset the connection"), facts
    assert len(facts) == 14

    # QEMU really quit, and the witness saw every stop and resume.
    assert qemu.proc.wait(timeout=30) == 0
    witness.join(timeout=30)
    assert not witness.is_alive()
    assert witness.count("STOP") == ITERATIONS + 1
    assert witness.count("RESUME") == ITERATIONS + 1
    assert witness.count("SHUTDOWN") == 1

    assert [t.split()[1] for t in timings] == ["stop", "cont", "stop+cont"]
    for t in timings:
        fields = dict(f.split("=") for f in t.split()[2:])
        assert int(fields["n"]) == ITERATIONS
        assert 0 < float(fields["p50_us"]) <= float(fields["p99_us"]) <= float(fields["max_us"])
        print(f"machine={machine} {t}")
    assert [s.split()[1] for s in samples] == ["stop", "cont", "stop+cont"]
    assert all(len(s.split()) == 2 + ITERATIONS for s in samples)


def test_connect_refused(tmp_path):
    code, lines, _ = run_probe(tmp_path / "absent.sock", 1)
    assert code == 1
    assert lines == [f"error: qmp query-status: disconnected: connect `{tmp_path}/absent.sock`: "
                     "no such file or directory (-104)"]


def test_qemu_killed_mid_session(qemu_factory):
    qemu = qemu_factory("none")
    probe = subprocess.Popen([str(PROBE), str(qemu.qmp), "1000000"], stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        # The last status line before the timed loop.
        while seen.count("status running running=true") < 3:
            line = probe.stdout.readline()
            assert line, f"probe ended early: {seen}"
            seen.append(line.strip())
        time.sleep(0.3)
        qemu.proc.send_signal(signal.SIGKILL)
        out, _ = probe.communicate(timeout=30)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert probe.returncode == 1
    last = out.splitlines()
    # The call in flight fails with -ECONNRESET and names its command.
    assert len(last) == 1 and re.fullmatch(
        r"error: qmp (stop|cont): disconnected: QEMU (closed|reset) the connection "
        r"\(-104\)", last[0]), last
