"""The control socket against raw clients: framing, bad requests, limits
and who may connect (SO_PEERCRED / SO_PEERGROUPS)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import SCHEMA_VERSION, read_line, request_line


def read_lines(sock, n):
    data = b""
    while data.count(b"\n") < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return [json.loads(l) for l in data.splitlines()]


def test_good_request(vpsd):
    with vpsd.connect() as s:
        r = request_line(s, b'{"id": 7, "method": "status"}\n')
    assert r["id"] == 7 and r["ok"] is True and r["result"]["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("line,code,fragment", [
    (b"{broken", "invalid", "invalid JSON"),
    (b"[1, 2]", "invalid", "expected a JSON object"),
    (b'{"method": "status"}', "invalid", "field `id` is missing"),
    (b'{"id": "7", "method": "status"}', "invalid", "field `id` must be an integer"),
    (b'{"id": 1, "method": "Status"}', "invalid", "not a method name"),
    (b'{"id": 1, "method": "status", "params": []}', "invalid", "field `params` must be an object"),
    (b'{"id": 1, "method": "status", "extra": 1}', "invalid", "unknown field `extra`"),
    (b'{"id": 1, "method": "status"} trailing', "invalid", "unexpected bytes"),
    (b'{"id": 1, "method": "service.show", "params": {}}', "invalid", "field `uuid` is missing"),
    (b'{"id": 1, "method": "service.show", "params": {"uuid": 5}}', "invalid", "must be a string"),
    (b'{"id": 1, "method": "service.show", "params": {"uuid": "x", "y": 1}}', "invalid",
     "unknown parameter `y`"),
    (b'{"id": 1, "method": "service.list", "params": {"all": "yes"}}', "invalid", "true or false"),
    (b'{"id": 1, "method": "status", "params": {"verbose": true}}', "invalid", "unknown parameter"),
    (b'{"id": 1, "method": "reboot.node"}', "unknown_method", "unknown method `reboot.node`"),
    (b'\xff\xfe{"id": 1}', "invalid", "JSON"),
])
def test_bad_requests_refused_and_connection_survives(vpsd, line, code, fragment):
    with vpsd.connect() as s:
        r = request_line(s, line + b"\n")
        assert r["ok"] is False
        assert r["error"]["code"] == code
        assert fragment in r["error"]["message"]
        # The same connection still serves.
        assert request_line(s, b'{"id": 2, "method": "status"}\n')["ok"] is True
    assert vpsd.proc.poll() is None


def test_refusal_echoes_id_when_readable(vpsd):
    with vpsd.connect() as s:
        r = request_line(s, b'{"id": 41, "method": "NOPE"}\n')
        assert r["id"] == 41 and r["ok"] is False
        r = request_line(s, b'{"id": 41, "method": "nope.nope"}\n')
        assert r["id"] == 41 and r["error"]["code"] == "unknown_method"
        r = request_line(s, b"{not json}\n")
        assert r["id"] is None


def test_pipelined_requests_answered_in_order(vpsd):
    with vpsd.connect() as s:
        s.sendall(b"".join(b'{"id": %d, "method": "status"}\n' % i for i in range(1, 21)))
        replies = read_lines(s, 20)
    assert [r["id"] for r in replies] == list(range(1, 21))


def test_request_split_across_writes(vpsd):
    with vpsd.connect() as s:
        for byte in b'{"id": 3, "method": "status"}\n':
            s.send(bytes([byte]))
        assert read_line(s)["id"] == 3


def test_oversized_request_refused_and_closed(vpsd_factory):
    v = vpsd_factory().start(control_max_request=1024)
    with v.connect() as s:
        s.sendall(b'{"id": 1, "method": "status", "params": {"pad": "' + b"x" * 2000)
        r = read_line(s)
        assert r["ok"] is False and r["error"]["code"] == "too_large"
        assert "longer than 1024 bytes" in r["error"]["message"]
        assert s.recv(100) == b"", "the connection is closed: the stream cannot be resynchronised"
    assert v.ctl("status").returncode == 0
    assert v.stop() == 0


def test_client_limit(vpsd_factory):
    v = vpsd_factory().start(control_max_clients=2)
    a, b = v.connect(), v.connect()
    try:
        assert request_line(a, b'{"id": 1, "method": "status"}\n')["ok"]
        assert request_line(b, b'{"id": 1, "method": "status"}\n')["ok"]
        with v.connect() as c:
            r = read_line(c)
            assert r["error"]["code"] == "try_again"
    finally:
        a.close()
        b.close()
    time.sleep(0.2)
    assert v.ctl("status").returncode == 0, "slots come back when clients leave"
    assert v.stop() == 0


def run_as(v, user, group, extra_groups=()):
    """Sends a status request from a process with other credentials."""
    # A refused peer may be answered and disconnected before it has sent
    # its request: the send then fails, and the refusal is still there to
    # read.
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.sendall(b'{\"id\": 1, \"method\": \"status\"}\\n')\n"
            "except BrokenPipeError:\n"
            "    pass\n"
            "d = b''\n"
            "while not d.endswith(b'\\n'):\n"
            "    c = s.recv(65536)\n"
            "    if not c: break\n"
            "    d += c\n"
            "sys.stdout.write(d.decode())")
    r = subprocess.run([sys.executable, "-c", code, str(v.socket)], user=user, group=group,
                       extra_groups=list(extra_groups), capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_peer_credentials(vpsd_factory):
    # nogroup (65534) stands for the operators' group here.
    v = vpsd_factory().start(control_group="nogroup")
    st = os.stat(v.socket)
    assert st.st_gid == 65534 and (st.st_mode & 0o777) == 0o660
    os.chmod(v.socket.parent, 0o755)

    assert run_as(v, 65534, 65534)["ok"] is True, "primary group member allowed"
    assert run_as(v, 4242, 4242, [65534])["ok"] is True, "supplementary group member allowed"

    # Open the file to everyone: the kernel's word on the peer still decides.
    os.chmod(v.socket, 0o666)
    r = run_as(v, 4242, 4242)
    assert r["ok"] is False and r["error"]["code"] == "forbidden"
    v.wait_log("connection refused: not root nor in the control group")
    assert "uid=4242" in v.log_text()
    assert v.stop() == 0


def test_root_only_without_group(vpsd_factory):
    v = vpsd_factory().start(control_group="no-such-group-here")
    assert (os.stat(v.socket).st_mode & 0o777) == 0o600
    os.chmod(v.socket, 0o666)
    os.chmod(v.socket.parent, 0o755)
    assert run_as(v, 65534, 65534)["error"]["code"] == "forbidden"
    assert v.ctl("status").returncode == 0
    assert v.stop() == 0


def test_stale_socket_replaced_live_one_kept(vpsd_factory):
    v = vpsd_factory()
    v.socket.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(v.socket))
    stale.close()  # a socket file nobody listens on, as a crashed vpsd leaves
    v.start()
    assert v.ctl("status").returncode == 0

    other = vpsd_factory("other")
    other.start(wait=False, control_socket=v.socket)
    assert other.proc.wait(20) == 1
    assert "is in use by another process" in other.log_text()
    assert v.ctl("status").returncode == 0
    assert v.stop() == 0
