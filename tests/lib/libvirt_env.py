"""libvirt test environment for vpsd's integration tests (stdlib only).

Typical use from a pytest fixture::

    env = libvirt_env.ensure_libvirt()      # starts virtlogd/libvirtd if needed
    try:
        rundir = libvirt_env.make_runtime_dir("mytest")
        ...
        name = libvirt_env.define_and_start(xml)
        ...
    finally:
        libvirt_env.destroy_and_undefine(name)
        libvirt_env.remove_runtime_dir(rundir)
        env.stop()                          # stops only what was started

Daemons.  There is no systemd here, so ``ensure_libvirt`` starts
``virtlogd -d`` and ``libvirtd -d`` itself when ``virsh -c qemu:///system
version`` does not answer, and waits (bounded) until it does.  Daemons that
were already running are left alone forever.  Daemons started by this module
are recorded in a small state file under /run (guarded by flock) together with
every live user (pid + token); ``stop()`` drops its user and stops the
recorded daemons only when no other live user remains, so two pytest
processes sharing the machine do not pull libvirtd from under each other.
libvirtd's own log goes to /var/log/libvirt/libvirtd.log (warnings and up).

File permissions.  QEMU runs as the user libvirt-qemu.  libvirt's DAC driver
chowns the disk images, ISOs and kernel files of a domain to libvirt-qemu
when it starts (and only the writable ones back when it stops), but it never
fixes directories.  Runtime copies of guest files therefore go into a fresh
directory under /var/lib/libvirt/images (0711 root, so qemu can traverse it)
created with mode 0755 by ``make_runtime_dir``; its ``sock`` subdirectory is
owned by libvirt-qemu for unix sockets that QEMU creates (serial, VNC, QMP).
Templates from build/ are copied, not referenced in place: libvirt would
otherwise chown the build output to libvirt-qemu and leave it so.
Serial logs written with ``<log file=.../>`` are opened by virtlogd (root),
mode 0600: read them as root with ``read_console_log``.
"""

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

URI = "qemu:///system"
VIRSH = ["virsh", "-q", "-c", URI]
IMAGES_DIR = "/var/lib/libvirt/images"
QEMU_USER = "libvirt-qemu"

STATE_DIR = "/run/vpsd-test-libvirt"
STATE_FILE = os.path.join(STATE_DIR, "state.json")
LOCK_FILE = os.path.join(STATE_DIR, "lock")

# name -> (argv, pid file, socket, process name in /proc/PID/comm)
DAEMONS = {
    "virtlogd": (["virtlogd", "-d"], "/run/virtlogd.pid",
                 "/run/libvirt/virtlogd-sock", "virtlogd"),
    "libvirtd": (["libvirtd", "-d"], "/run/libvirtd.pid",
                 "/run/libvirt/libvirt-sock", "libvirtd"),
}
START_ORDER = ["virtlogd", "libvirtd"]


class LibvirtEnvError(RuntimeError):
    pass


# ------------------------------------------------------------------ helpers
def run(argv, check=True, timeout=60, **kw):
    """Run a command, capture text output; raise LibvirtEnvError on failure."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, **kw)
    except FileNotFoundError as e:
        raise LibvirtEnvError(f"{argv[0]}: not installed ({e})") from None
    except subprocess.TimeoutExpired:
        raise LibvirtEnvError(f"{' '.join(argv)}: timed out after {timeout}s") from None
    if check and p.returncode != 0:
        raise LibvirtEnvError(f"{' '.join(argv)} failed ({p.returncode}): "
                              f"{(p.stderr or p.stdout).strip()}")
    return p


def virsh(*args, check=True, timeout=60):
    return run(VIRSH + list(args), check=check, timeout=timeout)


def _pid_alive(pid, comm=None):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if comm is not None:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    return False
            with open(f"/proc/{pid}/stat") as f:   # a zombie is not running
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except OSError:
            return False
    return True


def _read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def daemon_pid(name):
    """PID of a running daemon according to its pid file, or None."""
    _, pidfile, _, comm = DAEMONS[name]
    pid = _read_pidfile(pidfile)
    if pid and _pid_alive(pid, comm):
        return pid
    return None


def _sock_listening(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def daemon_running(name):
    """True if the daemon runs: by its pid file, or (started some other way)
    because its socket accepts connections."""
    return daemon_pid(name) is not None or _sock_listening(DAEMONS[name][2])


def libvirt_responds(timeout=15):
    try:
        p = subprocess.run(VIRSH + ["version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False
    return p.returncode == 0


@contextlib.contextmanager
def _locked_state():
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    with open(LOCK_FILE, "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            try:
                with open(STATE_FILE) as f:
                    state = json.load(f)
            except (OSError, ValueError):
                state = {}
            state.setdefault("started", {})
            state.setdefault("users", [])
            # forget users whose process is gone and daemons that died
            # A user is "PID:TOKEN" (gone with its process) or "held:TOKEN"
            # (the demo's, kept until released explicitly).
            state["users"] = [u for u in state["users"]
                              if u.startswith("held:") or _pid_alive(int(u.split(":")[0]))]
            state["started"] = {n: pid for n, pid in state["started"].items()
                                if n in DAEMONS and _pid_alive(pid, DAEMONS[n][3])}
            yield state
            tmp = STATE_FILE + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f)
            os.replace(tmp, STATE_FILE)
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)


def _start_daemon(name):
    argv, pidfile, sock, comm = DAEMONS[name]
    if shutil.which(argv[0]) is None:
        raise LibvirtEnvError(f"{argv[0]} is not installed (package libvirt-daemon-system)")
    env = dict(os.environ)
    if name == "libvirtd":
        os.makedirs("/var/log/libvirt", exist_ok=True)
        env.setdefault("LIBVIRT_LOG_OUTPUTS", "3:file:/var/log/libvirt/libvirtd.log")
    # "-d" forks; the parent exits once the daemon is set up (or failed).
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env, timeout=60,
                       start_new_session=True, cwd="/")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = daemon_pid(name)
        if pid:
            return pid
        time.sleep(0.1)
    raise LibvirtEnvError(f"{' '.join(argv)} did not start (exit {p.returncode}): "
                          f"{p.stdout.strip()} - see /var/log/libvirt/libvirtd.log")


def _stop_pid(pid, comm, timeout=20):
    """SIGTERM, wait for exit, SIGKILL after timeout.  Returns when gone."""
    if not _pid_alive(pid, comm):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, comm):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_alive(pid, comm):
        time.sleep(0.1)


# ------------------------------------------------------------------ handle
class LibvirtHandle:
    """Returned by ensure_libvirt().  ``started`` lists the daemons this call
    started; ``stop()`` is idempotent."""

    def __init__(self, token, started):
        self.token = token
        self.started = dict(started)
        self._stopped = False

    def stop(self, timeout=20):
        if self._stopped:
            return
        self._stopped = True
        with _locked_state() as state:
            with contextlib.suppress(ValueError):
                state["users"].remove(self.token)
            if state["users"]:
                return          # someone else still uses the daemons we started
            for name in reversed(START_ORDER):
                pid = state["started"].pop(name, None)
                if pid:
                    _stop_pid(pid, DAEMONS[name][3], timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def ensure_libvirt(wait=60):
    """Make sure libvirtd (and virtlogd, which QEMU domains need for their
    logs) run and answer on qemu:///system.  Returns a LibvirtHandle."""
    if os.geteuid() != 0:
        raise LibvirtEnvError("the libvirt tests must run as root (qemu:///system)")
    token = f"{os.getpid()}:{os.urandom(4).hex()}"
    started = {}
    with _locked_state() as state:
        state["users"].append(token)
        try:
            for name in START_ORDER:
                if not daemon_running(name):
                    pid = _start_daemon(name)
                    state["started"][name] = pid
                    started[name] = pid
        except BaseException:
            state["users"].remove(token)
            if not state["users"]:
                for name in reversed(START_ORDER):
                    if name in started:
                        _stop_pid(state["started"].pop(name), DAEMONS[name][3])
            raise
    handle = LibvirtHandle(token, started)
    deadline = time.monotonic() + wait
    last = ""
    while True:
        p = subprocess.run(VIRSH + ["version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=wait)
        if p.returncode == 0:
            return handle
        last = p.stderr.strip()
        if time.monotonic() > deadline:
            handle.stop()
            raise LibvirtEnvError(f"libvirtd does not answer on {URI} after {wait}s: {last}"
                                  " - see /var/log/libvirt/libvirtd.log")
        time.sleep(0.5)


# ------------------------------------------------------------------ domains
def domain_exists(name):
    return virsh("domuuid", name, check=False).returncode == 0


def domain_state(name):
    p = virsh("domstate", name, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def define_and_start(xml):
    """Define a persistent domain from XML text and start it; return its name.
    If the start fails the domain is undefined again."""
    name = ET.fromstring(xml).findtext("name")
    if not name:
        raise LibvirtEnvError("domain XML has no <name>")
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(xml)
        path = f.name
    try:
        virsh("define", path)
    finally:
        os.unlink(path)
    try:
        virsh("start", name, timeout=120)
    except LibvirtEnvError:
        destroy_and_undefine(name)
        raise
    return name


def destroy_and_undefine(name, timeout=30):
    """Stop (hard) and undefine a domain; quiet if it is already gone.
    Never raises."""
    try:
        if not name or not domain_exists(name):
            return
        virsh("destroy", name, check=False, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and domain_state(name) not in (None, "shut off"):
            time.sleep(0.2)
        virsh("undefine", name, "--nvram", check=False, timeout=timeout)
        if domain_exists(name):
            virsh("undefine", name, check=False, timeout=timeout)
    except Exception:     # noqa: BLE001 - cleanup must not raise
        pass


def domain_xml(name):
    return virsh("dumpxml", name).stdout


# ------------------------------------------------------------------ files
def make_runtime_dir(prefix="vpsd-test"):
    """Create a private-ish runtime dir QEMU can traverse: <images>/<prefix>-XXXX
    mode 0755 (root), plus <dir>/sock owned by libvirt-qemu (mode 0750) for
    sockets QEMU creates."""
    d = tempfile.mkdtemp(prefix=prefix + "-", dir=IMAGES_DIR)
    os.chmod(d, 0o755)
    sock = os.path.join(d, "sock")
    os.mkdir(sock, 0o750)
    shutil.chown(sock, QEMU_USER, QEMU_USER)
    return d


def remove_runtime_dir(path):
    """Remove a directory made by make_runtime_dir.  Never raises."""
    if path and os.path.realpath(path).startswith(IMAGES_DIR + "/"):
        shutil.rmtree(path, ignore_errors=True)


def make_overlay(backing, path, fmt="qcow2"):
    """qcow2 overlay on a (read-only) template, like vpsd's guest disks."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
         os.path.abspath(backing), path])
    return path


def read_console_log(path):
    """Text of a serial console log (virtlogd or QEMU file chardev); "" if
    the file does not exist yet."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def wait_console(path, needles, timeout=60, interval=0.25):
    """Wait until every string in ``needles`` is in the console log.  Returns
    the log text; raises LibvirtEnvError naming the missing strings on
    timeout (with the log's tail)."""
    if isinstance(needles, str):
        needles = [needles]
    deadline = time.monotonic() + timeout
    while True:
        text = read_console_log(path)
        missing = [n for n in needles if n not in text]
        if not missing:
            return text
        if time.monotonic() > deadline:
            tail = "\n".join(text.splitlines()[-40:])
            raise LibvirtEnvError(f"console log {path}: {missing!r} not seen within "
                                  f"{timeout}s; last lines:\n{tail}")
        time.sleep(interval)


# The test guest's root shell on its serial port, started and prompting
# (tests/guest/build-guest.sh: its profile prints this banner, then the prompt).
SHELL_BANNER = "root shell on /dev/ttyS0"


def wait_shell(path, timeout=120):
    """Wait until the guest's serial shell has started and printed its
    prompt. Nothing may be typed before: bytes that reach the UART while the
    shell opens ttyS0 (the 8250 driver resets the port then) can leave its
    receive interrupt lost under TCG, and the console deaf for good."""
    wait_console(path, [SHELL_BANNER], timeout=timeout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = read_console_log(path)
        if "# " in text[text.rindex(SHELL_BANNER):]:
            break
        time.sleep(0.1)
    time.sleep(0.3)


# ------------------------------------------------------------------ tap devices
def create_tap(name):
    """Create a tap device for <interface type='ethernet'><target dev=NAME
    managed='no'/>.  It stays DOWN and has IPv6 off, so nothing the guest
    sends reaches the host's network stack (and the host sends nothing)."""
    if len(name) > 15:
        raise LibvirtEnvError(f"tap name {name!r} is longer than 15 characters")
    delete_tap(name)
    run(["ip", "tuntap", "add", "dev", name, "mode", "tap"])
    with contextlib.suppress(OSError):
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    return name


def delete_tap(name):
    """Remove a tap device; quiet if it does not exist.  Never raises."""
    with contextlib.suppress(Exception):
        if os.path.exists(f"/sys/class/net/{name}"):
            run(["ip", "link", "del", "dev", name], check=False)


# ------------------------------------------------------------------ CLI
def _hold(state_file):
    """Start the daemons if needed, for a caller that outlives this process
    (make demo): the hold is recorded in state_file until release."""
    handle = ensure_libvirt()
    held = "held:" + os.urandom(4).hex()
    with _locked_state() as state:
        state["users"] = [held if u == handle.token else u for u in state["users"]]
    handle._stopped = True
    with open(state_file, "w") as f:
        json.dump({"token": held, "started": handle.started}, f)
    if handle.started:
        print("libvirt: started " + ", ".join(handle.started))
    else:
        print("libvirt: libvirtd and virtlogd were already running")


def _release(state_file):
    """Drop a hold; stop the daemons that were started for it when nobody
    else uses them."""
    with open(state_file) as f:
        token = json.load(f)["token"]
    LibvirtHandle(token, {}).stop()
    os.unlink(state_file)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: libvirt_env.py start|stop STATE_FILE")
    try:
        (_hold if sys.argv[1] == "start" else _release)(sys.argv[2])
    except LibvirtEnvError as e:
        sys.exit(f"libvirt: {e}")
