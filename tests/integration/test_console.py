"""The web console without guests: vpsd with console_listen starts the real
vpsd-edge, and a service row put in its store (after reconcile) has a run
folder whose vnc.sock and serial.sock are test servers. Tickets from a
test ledger and from vpsctl; every kind of bad ticket refused alike; the
edge killed and restarted; the edge's user kept out of guest sockets and
the database. Guests and browsers: test_console_guest.py."""

import os
import pwd
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import console_client as cc
import edge_harness
from console_node import ConsoleNode, edge_pid

SERVICE = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
OTHER = "2c5f39cb-3fb2-42e3-994a-1127e4ddb538"


@pytest.fixture
def node(vpsd_factory):
    n = ConsoleNode.start(vpsd_factory(), console_max_failed_tickets=50)
    n.add_service(SERVICE)
    yield n
    n.close_targets()
    assert n.vpsd.stop() == 0, n.vpsd.log_text()


def test_valid_tickets_reach_the_consoles(node):
    t = node.ledger.ticket(SERVICE, "acct-42", kind="vnc")
    assert node.open("vnc", t, expect=b"RFB 003.008\n") == ("open", b"RFB 003.008\n")
    t = node.ledger.ticket(SERVICE, "acct-42", kind="serial")
    assert node.open("serial", t, send=b"echo hello\r", expect=b"echo hello\r") == ("open", b"echo hello\r")
    node.vpsd.wait_log("console session opened")
    assert "account=\"acct-42\" kind=serial" in node.vpsd.log_text()


def test_vpsctl_ticket(node):
    r = node.vpsd.ctl_json("console", "ticket", SERVICE, "--kind", "serial")
    assert r["kind"] == "serial" and r["uuid"] == SERVICE
    assert r["url"] == f"https://127.0.0.1:{node.port}/serial.html#ticket={r['ticket']}"
    assert r["expires_at"] - time.time() <= 61
    assert node.open("serial", r["ticket"], send=b"x", expect=b"x") == ("open", b"x")
    human = node.vpsd.ctl("console", "ticket", SERVICE).stdout
    assert f"https://127.0.0.1:{node.port}/vnc.html#ticket=" in human
    assert node.vpsd.ctl("console", "ticket", OTHER, check=False).returncode == 1
    assert node.vpsd.ctl("console", "ticket", SERVICE, "--kind", "ssh", check=False).returncode == 2


def test_every_bad_ticket_is_refused_alike(node):
    node.add_service(OTHER, account="acct-7")
    now = int(time.time())
    good = node.ledger.ticket(SERVICE, "acct-42")
    assert node.open("vnc", good, expect=b"RFB")[0] == "open"
    forger = cc.Ledger()
    payload = cc.Ledger.payload(SERVICE, "acct-42")
    body, sig = node.ledger.sign(payload).split(".")
    tampered = cc.b64(payload.replace(b"acct-42", b"acct-43")) + "." + sig
    bad = {
        "expired": node.ledger.ticket(SERVICE, "acct-42", iat=now - 200, exp=now - 140),
        "too long a life": node.ledger.ticket(SERVICE, "acct-42", iat=now, exp=now + 61),
        "replayed": good,
        "forged": forger.ticket(SERVICE, "acct-42"),
        "tampered": tampered,
        "other account's": node.ledger.ticket(SERVICE, "acct-7"),
        "other service's": node.ledger.ticket(OTHER, "acct-42"),
        "wrong kind": node.ledger.ticket(SERVICE, "acct-42", kind="serial"),
        "unknown service": node.ledger.ticket(str(uuid.uuid4()), "acct-42"),
        "garbage": "not-a-ticket",
        "empty": "",
    }
    outcomes = {name: node.open("vnc", t) for name, t in bad.items()}
    # Suspended, terminated, stopped and busy services, with tickets that
    # would otherwise be good.
    for state, busy in (("suspended", None), ("terminated", None), ("stopped", None), ("running", "reinstall")):
        node.set_state(SERVICE, state, busy)
        outcomes[f"{state} {busy or ''}"] = node.open("vnc", node.ledger.ticket(SERVICE, "acct-42"))
    node.set_state(SERVICE, "running")
    assert set(outcomes.values()) == {("closed", cc.REFUSED, "closed")}, outcomes
    log = node.vpsd.log_text()
    for reason in ("expired", "lifetime", "replayed", "bad signature", "does not own", "not on this node",
                   "used for a vnc console", "suspended", "terminated", "stopped", "busy: reinstall", "malformed"):
        assert reason in log, reason
    assert good not in log, "a ticket is never logged"


def test_origin_checked(node):
    t = node.ledger.ticket(SERVICE, "acct-42")
    assert cc.session(node.url("vnc", t), "https://evil.example") == ("dropped",)
    assert cc.session(node.url("vnc", t), None) == ("dropped",)
    assert "origin not allowed" in node.vpsd.log_text()
    # The refused handshake did not spend the ticket.
    assert node.open("vnc", t, expect=b"RFB")[0] == "open"


def test_failed_tickets_per_address_are_limited(vpsd_factory):
    n = ConsoleNode.start(vpsd_factory(), console_max_failed_tickets=3)
    n.add_service(SERVICE)
    for _ in range(3):
        assert n.open("vnc", cc.Ledger().ticket(SERVICE, "acct-42"))[:2] == ("closed", cc.REFUSED)
    assert n.open("vnc", n.ledger.ticket(SERVICE, "acct-42"))[:2] == ("closed", cc.REFUSED)
    assert "too many failed tickets from this address" in n.vpsd.log_text()
    n.close_targets()
    assert n.vpsd.stop() == 0


def test_sessions_per_service_are_limited(node):
    import asyncio
    import websockets

    async def run():
        held = []
        for _ in range(4):
            ws = await websockets.connect(node.url("serial", node.ledger.ticket(SERVICE, "acct-42", kind="serial")),
                                          ssl=cc.tls(), origin=node.origin)
            held.append(ws)
        await asyncio.sleep(0.5)
        fifth = await cc._session(node.url("serial", node.ledger.ticket(SERVICE, "acct-42", kind="serial")),
                                  node.origin)
        for ws in held:
            await ws.close()
        return fifth

    assert asyncio.run(run())[:2] == ("closed", cc.REFUSED)
    assert "console sessions at their limit" in node.vpsd.log_text()


def test_bulk_bytes_come_back_whole_and_in_order(node):
    """Megabytes both ways through the edge's framing (a console read cut
    into frames of one TLS record, written straight out or on
    writability) and its backpressure: the echo is exactly what was sent."""
    data = os.urandom(8 << 20)
    t = node.ledger.ticket(SERVICE, "acct-42", kind="serial")
    got, largest = cc.echo_bulk(node.url("serial", t), node.origin, data)
    assert got == data
    assert largest <= 16 * 1024 - 4, largest


def test_frames_of_every_size_and_a_frame_cut_mid_way_arrive_whole(node):
    """The edge holds a frame's pieces (one a TLS record) and writes the
    frame to the console when it ends, at most 64 KiB at a time: sizes
    around the record and the hold, fragmented messages, and a frame whose
    second half comes a while after its first all come back whole and in
    order."""
    import asyncio
    import websockets

    sizes = [1, 100, 16379, 16380, 16384, 65535, 65536, 65537, 200000, 3]
    payloads = [os.urandom(n) for n in sizes]

    async def run():
        t = node.ledger.ticket(SERVICE, "acct-42", kind="serial")
        async with websockets.connect(node.url("serial", t), ssl=cc.tls(), origin=node.origin, max_size=None,
                                      compression=None) as ws:
            async def fragments():
                for p in payloads[:3]:
                    await asyncio.sleep(0.05)
                    yield p
            sent = bytearray()
            for p in payloads:
                await ws.send(p)
                sent += p
            await ws.send(fragments())
            sent += b"".join(payloads[:3])
            got = bytearray()
            while len(got) < len(sent):
                got += await asyncio.wait_for(ws.recv(), 30)
            return bytes(got) == bytes(sent)

    assert asyncio.run(run())

    # By hand: one masked frame of 40,000 bytes, its first 30,000 sent,
    # then a pause, then the rest; a one-byte frame right behind it.
    ticket = node.ledger.ticket(SERVICE, "acct-42", kind="serial")
    raw = cc.tls().wrap_socket(socket.create_connection(("127.0.0.1", node.port), timeout=10))
    raw.sendall((f"GET /console/serial?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"Sec-WebSocket-Version: 13\r\nOrigin: {node.origin}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head

    def frame(payload):
        mask = os.urandom(4)
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536
                                                     else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        return b"\x82" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    big, tail = os.urandom(40000), b"!"
    wire = frame(big)
    raw.sendall(wire[:30000])
    time.sleep(0.5)
    raw.sendall(wire[30000:] + frame(tail))
    def payloads_of(got):
        """Server frames are unmasked: each header stripped, the payloads kept."""
        data, i = b"", 0
        while i + 2 <= len(got):
            n, at = got[i + 1] & 0x7f, i + 2
            if n == 126:
                n, at = int.from_bytes(got[at:at + 2], "big"), at + 2
            elif n == 127:
                n, at = int.from_bytes(got[at:at + 8], "big"), at + 8
            if at + n > len(got):
                break
            data, i = data + got[at:at + n], at + n
        return data

    got = b""
    while len(payloads_of(got)) < len(big) + len(tail):
        chunk = raw.recv(65536)
        assert chunk, "the session closed"
        got += chunk
    raw.close()
    data = payloads_of(got)
    assert data == big + tail


def test_vpsd_raises_its_open_file_limit_for_sessions(vpsd_factory):
    """vpsd keeps a copy of each console socket it passes: under a soft
    limit of 1024 (systemd's), 1,000 sessions would not fit beside its own
    fds. It raises the soft limit itself, within the hard one."""
    v = vpsd_factory()
    ledger = cc.Ledger()
    v.start(prefix=("prlimit", "--nofile=1024:8192", "--"), console_listen=f"127.0.0.1:{edge_harness.free_port()}",
            ledger_public_key=ledger.public_pem(v.root / "l.pub"), guest_run_dir=v.root / "guests",
            console_max_sessions=3000)
    v.wait_log("console ready")
    limits = Path(f"/proc/{v.proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+4024\s+8192", limits), limits
    v.stop()
    v.start(prefix=("prlimit", "--nofile=1024:2048", "--"), console_max_sessions=3000)
    v.wait_log("console ready")
    assert "leaves room for fewer sessions than console_max_sessions" in v.log_text(this_run=True)
    assert re.search(r"Max open files\s+2048\s+2048", Path(f"/proc/{v.proc.pid}/limits").read_text())
    assert v.stop() == 0


def test_edge_killed_is_restarted(node):
    pid = edge_pid(node.vpsd)
    assert pid
    os.kill(pid, signal.SIGKILL)
    node.vpsd.wait_log("vpsd-edge exited; restarting it")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if node.vpsd.log_text().count("console ready") >= 2:
            break
        time.sleep(0.1)
    assert edge_pid(node.vpsd) not in (None, pid)
    t = node.ledger.ticket(SERVICE, "acct-42")
    assert node.open("vnc", t, expect=b"RFB")[0] == "open"


def test_connections_that_never_speak_tls_leave_the_edge_and_its_sessions(node):
    """A port scanner's connect-and-close, plain text, half a TLS hello:
    lws closes those before any per-connection data exists (a NULL user
    in CLOSED_HTTP once crashed the edge, and a restart drops every
    customer's session). An open session lives on through them."""
    import asyncio
    import websockets

    pid = edge_pid(node.vpsd)
    hello = bytes.fromhex("160301002a0100002603030000")  # a ClientHello's start, cut short

    async def run():
        t = node.ledger.ticket(SERVICE, "acct-42", kind="serial")
        async with websockets.connect(node.url("serial", t), ssl=cc.tls(), origin=node.origin,
                                      compression=None) as ws:
            await ws.send(b"before")
            assert await asyncio.wait_for(ws.recv(), 10) == b"before"
            for payload in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hello, os.urandom(600)):
                for _ in range(5):
                    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
                        if payload:
                            s.sendall(payload)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            await ws.send(b"after")
            assert await asyncio.wait_for(ws.recv(), 10) == b"after"

    asyncio.run(run())
    assert edge_pid(node.vpsd) == pid
    assert "vpsd-edge exited" not in node.vpsd.log_text()


def test_edge_runs_unprivileged_and_cannot_reach_guests_or_state(node):
    pid = edge_pid(node.vpsd)
    status = Path(f"/proc/{pid}/status").read_text()
    edge_uid = pwd.getpwnam("vpsd-edge").pw_uid
    assert f"Uid:\t{edge_uid}\t{edge_uid}\t{edge_uid}\t{edge_uid}" in status
    assert "NoNewPrivs:\t1" in status
    assert "Groups:\t\n" in status or "Groups:\t \n" in status
    # As its user, as a shell there would be: no guest socket, no database.
    probe = ("import socket, sys\n"
             "fails = 0\n"
             "for path in sys.argv[1:3]:\n"
             "    s = socket.socket(socket.AF_UNIX)\n"
             "    try: s.connect(path)\n"
             "    except OSError: fails += 1\n"
             "try: open(sys.argv[3], 'rb')\n"
             "except OSError: fails += 1\n"
             "print(fails)\n")
    run = node.vpsd.root / "guests" / SERVICE
    r = subprocess.run(["setpriv", f"--reuid={edge_uid}", f"--regid={pwd.getpwnam('vpsd-edge').pw_gid}",
                        "--clear-groups", "/usr/bin/python3", "-c", probe, str(run / "vnc.sock"),
                        str(run / "serial.sock"), str(node.vpsd.state_dir / "vpsd.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "3", r.stderr


def test_static_pages_and_headers(node):
    import urllib.request
    import urllib.error
    for page in ("vnc.html", "serial.html", "novnc/core/rfb.js", "xterm/xterm.js"):
        with urllib.request.urlopen(f"https://127.0.0.1:{node.port}/{page}", context=cc.tls()) as r:
            assert r.status == 200
            assert "default-src 'self'" in r.headers["content-security-policy"]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"https://127.0.0.1:{node.port}/novnc/../../../etc/passwd", context=cc.tls())
