"""vpsd-edge under valgrind (memcheck) through real use: vpsd runs it, as
on a node, through console_edge naming a wrapper that execs the edge
under valgrind; VNC and serial sessions (megabytes both ways), refusals,
a session ended by its service's suspension, a client gone mid-stream,
pages, uploads, and connections that never speak TLS; then vpsd's
SIGTERM stops the edge. No invalid access, no definite leak beyond lws's
own documented in tests/valgrind/lws.supp. No libvirtd, no guests (test
servers on the console sockets, as test_console.py). It found an
accepted upload on a keep-alive connection leaking its record and its
libuv handle (console/server.c, HTTP_DROP_PROTOCOL)."""

import asyncio
import os
import re
import socket
import time
import urllib.error
import urllib.request

import pytest
import websockets

import console_client as cc
from console_node import ConsoleNode, edge_pid, edge_valgrind_wrapper
from test_iso import make_iso, upload

SERVICE = "5d0e7c1a-6b2f-4c1e-9f3a-2b7c8d9e0f11"
SUSPENDED = "6e1f8d2b-7c3a-4d2f-8a4b-3c8d9e0f1a22"
ACCOUNT = "acct-42"
ENDED = 4000  # console/edge.h: EDGE_CLOSE_ENDED


async def suspended_while_open(node):
    """A serial session open when its service is suspended through vpsctl:
    vpsd ends it (console_close_service) and the browser sees 4000."""
    t = node.ledger.ticket(SUSPENDED, ACCOUNT, kind="serial")
    async with websockets.connect(node.url("serial", t), ssl=cc.tls(), origin=node.origin,
                                  compression=None) as ws:
        await ws.send(b"before")
        assert await asyncio.wait_for(ws.recv(), 30) == b"before"
        await asyncio.to_thread(node.vpsd.ctl, "service", "suspend", SUSPENDED)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def gone_mid_stream(node):
    """A client that sends a megabyte and vanishes without reading the
    echo: the edge drops a session with bytes still queued both ways."""
    t = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
    ws = await websockets.connect(node.url("serial", t), ssl=cc.tls(), origin=node.origin, compression=None,
                                  max_size=None)
    for _ in range(16):
        await ws.send(os.urandom(65536))
    await asyncio.sleep(0.5)
    ws.transport.abort()


def static_pages(node):
    base = f"https://127.0.0.1:{node.port}"
    for page in ("vnc.html", "serial.html", "novnc/core/rfb.js", "xterm/xterm.js"):
        with urllib.request.urlopen(f"{base}/{page}", context=cc.tls(), timeout=30) as r:
            assert r.status == 200 and len(r.read()) > 0, page
    for page in ("no-such-page.html", "novnc/../../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/{page}", context=cc.tls(), timeout=30)


def never_tls(port):
    """A port scanner's connect-and-close, plain text, half a TLS hello,
    noise."""
    hello = bytes.fromhex("160301002a0100002603030000")
    for payload in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00garbage\r\n\r\n" * 40, hello,
                    os.urandom(600)):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                if payload:
                    s.sendall(payload)


def test_edge_valgrind_clean_through_real_use(vpsd_factory, tmp_path):
    v = vpsd_factory()
    wrapper, logs = edge_valgrind_wrapper(v.root / "edge-valgrind")
    # Under valgrind the edge takes seconds to start.
    node = ConsoleNode.start(v, ready_timeout=120, console_edge=wrapper, console_max_failed_tickets=50)
    try:
        node.add_service(SERVICE, account=ACCOUNT)
        node.add_service(SUSPENDED, account=ACCOUNT)
        pid = edge_pid(v)

        # Good tickets: each console answers, bytes both ways.
        vnc = node.ledger.ticket(SERVICE, ACCOUNT, kind="vnc")
        assert node.open("vnc", vnc, send=b"hello", expect=b"RFB 003.008\nhello", timeout=30) == \
            ("open", b"RFB 003.008\nhello")
        data = os.urandom(4 << 20)
        got, _ = cc.echo_bulk(node.url("serial", node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")),
                              node.origin, data, timeout=60)
        assert got == data

        # Refused tickets, all alike; a path that is no console.
        now = int(time.time())
        bad = {
            "replayed": vnc,
            "forged": cc.Ledger().ticket(SERVICE, ACCOUNT),
            "expired": node.ledger.ticket(SERVICE, ACCOUNT, iat=now - 200, exp=now - 140),
            "wrong kind": node.ledger.ticket(SERVICE, ACCOUNT, kind="serial"),
            "garbage": "not-a-ticket",
        }
        outcomes = {name: node.open("vnc", t, timeout=30) for name, t in bad.items()}
        outcomes["no console"] = cc.session(node.url("ssh", node.ledger.ticket(SERVICE, ACCOUNT)), node.origin,
                                            timeout=30)
        assert set(outcomes.values()) == {("closed", cc.REFUSED, "closed")}, outcomes

        # Origins refused during the handshake.
        t = node.ledger.ticket(SERVICE, ACCOUNT)
        assert cc.session(node.url("vnc", t), "https://evil.example", timeout=30) == ("dropped",)
        assert cc.session(node.url("vnc", t), None, timeout=30) == ("dropped",)

        # A session ended by its service's suspension; a client gone mid-stream.
        assert asyncio.run(suspended_while_open(node)) == ENDED
        v.wait_log('why="suspend"')
        asyncio.run(gone_mid_stream(node))

        # Pages; uploads: a forged ticket refused with its body unread, a
        # wrong method, a good one streamed into the store (http.client
        # asks for keep-alive: the transaction ends before the connection).
        static_pages(node)
        assert upload(node.port, cc.Ledger().iso_ticket(ACCOUNT, 1 << 20), os.urandom(1 << 20)) == \
            (403, {"error": "the upload ticket is not valid"})
        assert upload(node.port, "x.y", b"", method="GET")[0] == 405
        status, answer = upload(node.port, node.ledger.iso_ticket(ACCOUNT, 1 << 20), make_iso(tmp_path / "a.iso"))
        assert status == 201, answer

        # Connections that never speak TLS; the edge lives on through them.
        never_tls(node.port)
        assert node.open("serial", node.ledger.ticket(SERVICE, ACCOUNT, kind="serial"), send=b"after",
                         expect=b"after", timeout=30) == ("open", b"after")
        assert edge_pid(v) == pid, "the edge was restarted"
    finally:
        node.close_targets()
        status = v.stop(timeout=120)

    assert status == 0, v.log_text()
    assert "vpsd-edge exited" not in v.log_text(), v.log_text()
    # Asked to stop while its link stood: it stopped as asked, status 0.
    assert "console: vpsd-edge stopped\"" in v.log_text(), v.log_text()
    assert "link to vpsd is gone" not in v.log_text(), v.log_text()
    found = sorted(logs.glob("edge.*.log"))
    assert [p.name for p in found] == [f"edge.{pid}.log"], found
    report = found[0].read_text()
    # vpsd's folder goes with the test; these stay in pytest's for a look.
    (tmp_path / found[0].name).write_text(report)
    (tmp_path / "vpsd.log").write_text(v.log_text())
    # The edge returned from main: the leak check ran, on no signal.
    assert "Process terminating with default action" not in report, report
    assert "HEAP SUMMARY" in report, report
    assert re.search(r"ERROR SUMMARY: 0 errors from 0 contexts", report), report
    assert re.search(r"definitely lost: [1-9]", report) is None, report
