"""vpsd's configuration file through the real binary: every key good, every
kind of bad refused in one line naming file, line and key."""

import subprocess

import pytest

from conftest import VPSD


def check(tmp_path, text, name="vpsd.conf"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return subprocess.run([str(VPSD), "-c", str(path), "--check-config"], capture_output=True, text=True)


def test_empty_and_full_configs(tmp_path):
    r = check(tmp_path, "")
    assert r.returncode == 0 and r.stdout.strip() == f"{tmp_path}/vpsd.conf: ok"
    full = """
# every key, with spaces and comments
state_dir = /var/lib/vpsd
control_socket=/run/vpsd/control.sock
   control_group = vpsd
control_max_clients = 64
control_max_request = 65536
log_level = debug
hypervisor = auto
kvm_device = /dev/kvm
kvm_probe_kernel =
kvm_probe_timeout = 20
qemu_binary = /usr/bin/qemu-system-x86_64\r
"""
    assert check(tmp_path, full).returncode == 0


@pytest.mark.parametrize("text,error", [
    ("colour = blue\n", "vpsd.conf:1: key `colour`: unknown key"),
    ("\n\nstate_dir /var\n", "vpsd.conf:3: expected `key = value`"),
    ("= x\n", "vpsd.conf:1: missing key before `=`"),
    ("state_dir = relative/dir\n", "vpsd.conf:1: key `state_dir`: `relative/dir` must be an absolute path"),
    ("state_dir =\n", "vpsd.conf:1: key `state_dir`: `` must be an absolute path"),
    ("log_level = loud\n", "vpsd.conf:1: key `log_level`: `loud` must be one of debug, info, warn, error"),
    ("hypervisor = xen\n", "vpsd.conf:1: key `hypervisor`: `xen` must be one of auto, kvm, tcg"),
    ("kvm_probe_timeout = 0\n", "vpsd.conf:1: key `kvm_probe_timeout`: `0` must be a whole number from 1 to 600"),
    ("kvm_probe_timeout = -5\n", "must be a whole number from 1 to 600"),
    ("kvm_probe_timeout = 99999999999999999999\n", "must be a whole number from 1 to 600"),
    ("control_max_clients = 12abc\n", "key `control_max_clients`: `12abc` must be a whole number"),
    ("control_group = -wheel\n", "key `control_group`: `-wheel` must be a name"),
    ("control_group = wh eel\n", "may contain only letters, digits"),
    ("log_level = info\nlog_level = debug\n", "vpsd.conf:2: key `log_level`: set twice (first on line 1)"),
    ("state_dir = /" + "a" * 5000 + "\n", "vpsd.conf:1: line longer than 4096 bytes"),
    (b"log_level = info\x00\n", "vpsd.conf:1: line contains a NUL byte"),
    ("control_socket = /" + "s" * 107 + "\n", "key `control_socket`: `/sss"),
    ("control_socket = /" + "s" * 107 + "\n", "path longer than 107 bytes"),
])
def test_bad_config_refused_in_one_line(tmp_path, text, error):
    r = check(tmp_path, text)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"vpsd: {tmp_path}/vpsd.conf")
    assert error in lines[0]


def test_missing_and_odd_files(tmp_path):
    r = subprocess.run([str(VPSD), "-c", str(tmp_path / "absent.conf"), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    r = subprocess.run([str(VPSD), "-c", str(tmp_path), "--check-config"], capture_output=True, text=True)
    assert r.returncode == 1 and "not a regular file" in r.stderr
    r = check(tmp_path, "#" * (1024 * 1024 + 1))
    assert r.returncode == 1 and "larger than 1048576 bytes" in r.stderr


def test_bad_config_at_start_changes_nothing(vpsd_factory):
    v = vpsd_factory()
    v.settings["log_level"] = "chatty"
    v.start(wait=False)
    assert v.proc.wait(20) == 1
    assert not v.state_dir.exists(), "nothing is created before the configuration is valid"


@pytest.mark.parametrize("args,message", [
    (["--nope"], "bad option `--nope`"),
    (["-c"], "option `-c` needs a value"),
    (["extra"], "unexpected argument `extra`"),
])
def test_bad_arguments(args, message):
    r = subprocess.run([str(VPSD), *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"vpsd: {message}; try `vpsd --help`"] or \
        r.stderr.strip() == f"vpsd: {message}"


def test_help_lists_every_option():
    out = subprocess.run([str(VPSD), "--help"], capture_output=True, text=True).stdout
    for option in ("--config", "--check-config", "--probe-hypervisor", "--help", "--version"):
        assert option in out
