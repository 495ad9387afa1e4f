"""vpsd-edge against hostile clients. The edge is the one process that
parses bytes from the internet, and a crash restarts it and drops every
customer's console session: no input may kill it or stall its loop. Each
test holds one good serial session open through its abuse and checks at
the end that the edge is the same process (vpsd never restarted it), that
the held session still echoes, and that a new session still opens. The
abuse: malformed and oversized HTTP, bad websocket handshakes, frames that
break RFC 6455 on a granted session, TLS garbage, renegotiation and
half-open handshakes, slow readers against a console that floods, and bad
ISO uploads."""

import concurrent.futures
import os
import shlex
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import console_client as cc
import edge_harness
from console_node import ConsoleNode, edge_pid, edge_valgrind_wrapper

SERVICE = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
ACCOUNT = "acct-42"


# ------------------------------------------------------------- raw clients

def tls_connect(port, timeout=5):
    return cc.tls().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """A client frame, as RFC 6455 wants it unless told otherwise: rsv bits,
    no mask, or a length that is not the payload's."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def status_of(response):
    """The status code of an HTTP answer, None when there was none."""
    if not response.startswith(b"HTTP/1."):
        return None
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


class RawWs:
    """A websocket by hand over TLS, so that its handshake and frames can
    be wrong on purpose."""

    def __init__(self, port, path, headers=None, host=True, extra=b""):
        self.sock = tls_connect(port)
        self.buf = b""
        if headers is None:
            headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
                       "Origin": f"https://127.0.0.1:{port}"}
        request = f"GET {path} HTTP/1.1\r\n" + (f"Host: 127.0.0.1:{port}\r\n" if host else "")
        request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.head = b""
        try:
            self.sock.sendall(request.encode() + extra)
            while b"\r\n\r\n" not in self.head:
                d = self.sock.recv(1)
                if not d:
                    break
                self.head += d
        except OSError:
            pass

    @property
    def upgraded(self):
        return self.head.startswith(b"HTTP/1.1 101")

    def send(self, data):
        self.sock.sendall(data)

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def read_frame(self, timeout=5):
        self.sock.settimeout(timeout)
        self._need(2)
        op, n, at = self.buf[0] & 0x0f, self.buf[1] & 0x7f, 2
        if n == 126:
            self._need(4)
            n, at = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._need(10)
            n, at = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return op, payload

    def echo(self, data, timeout=10, before=b""):
        """Sends data in one binary frame; returns what the echo target sent
        back, as much as data and what was sent before it."""
        self.send(frame(2, data))
        got = b""
        while len(got) < len(before) + len(data):
            op, p = self.read_frame(timeout)
            if op == 8:
                raise EOFError(f"closed: {p!r}")
            if op in (0, 1, 2):
                got += p
        return got

    def outcome(self, timeout=3):
        """What the edge does next, data frames collected: ("close", code,
        data), ("eof", data) when it hung up without a close frame, or
        ("open", data) when it did neither in time."""
        data = b""
        try:
            while True:
                op, p = self.read_frame(timeout)
                if op == 8:
                    return ("close", int.from_bytes(p[:2], "big") if len(p) >= 2 else None, data)
                if op in (0, 1, 2):
                    data += p
        except (socket.timeout, TimeoutError):
            return ("open", data)
        except (EOFError, OSError):
            return ("eof", data)

    def close(self):
        self.sock.close()


def exchange(port, payload, wait=3.0, hang_up=False):
    """Sends payload on a new TLS connection and reads until the edge
    closes or wait runs out: ("closed" or "open", what came back). With
    hang_up, closes right after sending."""
    try:
        s = tls_connect(port)
    except OSError as e:
        return ("refused", repr(e).encode())
    got = b""
    try:
        s.sendall(payload)
        if hang_up:
            return ("hung up", b"")
        s.settimeout(wait)
        while True:
            d = s.recv(65536)
            if not d:
                return ("closed", got)
            got += d
    except (socket.timeout, TimeoutError):
        return ("open", got)
    except OSError:
        return ("closed", got)
    finally:
        s.close()


def exchange_all(port, payloads, **kw):
    """exchange() for each payload, a few at a time: {name: result}."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(exchange, port, p, **kw) for name, p in payloads.items()}
        return {name: f.result() for name, f in futures.items()}


def edge_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------ the fixtures

# EDGE_VALGRIND=1 runs the edge under valgrind (by hand: about 100 s):
# each test's abuse, then no invalid access and no definite leak in the
# edge's valgrind log. The bound on the edge's memory after 4,000 uploads
# is left to valgrind then (its own memory moves more than that).
VALGRIND = os.environ.get("EDGE_VALGRIND") == "1"


@pytest.fixture
def node(vpsd_factory, tmp_path):
    # Every session here may be refused: no address limit on failed
    # tickets, and room for many sessions of one service.
    # Nor on connections from one address: the abuse comes from loopback
    # alone (test_connections_from_one_address_are_limited has the limit).
    settings = dict(console_max_failed_tickets=10000, console_max_sessions_per_service=64,
                    console_max_connections_per_address=0)
    if VALGRIND:
        settings["console_edge"], logs = edge_valgrind_wrapper(tmp_path / "valgrind", quiet=True)
    n = ConsoleNode.start(vpsd_factory(), **settings)
    n.add_service(SERVICE)
    yield n
    n.close_targets()
    assert n.vpsd.stop() == 0, n.vpsd.log_text()
    if VALGRIND:
        for log in logs.glob("edge.*.log"):
            assert log.read_text() == "", log.read_text()


class Held:
    """A good serial session opened before the abuse, and the edge's pid then."""

    def __init__(self, node):
        self.node = node
        self.pid = edge_pid(node.vpsd)
        assert self.pid
        self.ws = self.session()
        assert self.ws.echo(b"before") == b"before"
        self.checked = False

    def session(self, kind="serial"):
        ws = RawWs(self.node.port, f"/console/{kind}?ticket={self.node.ledger.ticket(SERVICE, ACCOUNT, kind=kind)}")
        assert ws.upgraded, ws.head
        return ws

    def survived(self):
        """The edge was neither restarted nor stalled: same pid, nothing in
        vpsd's log about its exit, the held session echoes, a new one opens."""
        self.checked = True
        log = self.node.vpsd.log_text()
        assert "vpsd-edge exited" not in log, log[-6000:]
        assert edge_pid(self.node.vpsd) == self.pid, "vpsd-edge was restarted"
        data = os.urandom(1000)
        assert self.ws.echo(data) == data
        fresh = self.session()
        assert fresh.echo(b"fresh") == b"fresh"
        fresh.close()


@pytest.fixture
def held(node):
    h = Held(node)
    yield h
    # A test that failed before its own check still says whether the edge lived.
    if not h.checked:
        h.survived()
    h.ws.close()


# --------------------------------------------------------------------- HTTP

def test_malformed_and_oversized_requests(node, held):
    """Oversized request lines and headers, many headers, a header without
    a colon, NUL bytes, no Host, unknown methods, chunked garbage: none is
    served a page (a 2xx), and the oversized ones are cut off at once."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    oversized = {
        "request line of 100 KiB": b"GET /" + b"a" * (100 << 10) + b" HTTP/1.1\r\n" + host + b"\r\n",
        "header of 100 KiB": b"GET /vnc.html HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * (100 << 10) + b"\r\n\r\n",
        "5,000 headers": b"GET /vnc.html HTTP/1.1\r\n" + host + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
                         + b"\r\n",
        "a path of 8 KiB": b"GET /" + b"a/" * 4096 + b" HTTP/1.1\r\n" + host + b"\r\n",
    }
    refused = {
        "header without a colon": b"GET /vnc.html HTTP/1.1\r\n" + host + b"NoColonHere\r\n\r\n",
        "NUL in the path": b"GET /vnc.html\x00.png HTTP/1.1\r\n" + host + b"\r\n",
        "NUL in a header": b"GET /vnc.html HTTP/1.1\r\n" + host + b"X-A: a\x00b\r\n\r\n",
        "unknown method": b"BREW /vnc.html HTTP/1.1\r\n" + host + b"\r\n",
        "DELETE": b"DELETE /vnc.html HTTP/1.1\r\n" + host + b"\r\n",
        "OPTIONS *": b"OPTIONS * HTTP/1.1\r\n" + host + b"\r\n",
        "binary garbage": os.urandom(4000),
        "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        "h2c upgrade": b"GET /vnc.html HTTP/1.1\r\n" + host + b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                       b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "a request line alone": b"GET\r\n\r\n",
    }
    survivable = {
        "HTTP/9.9": b"GET /vnc.html HTTP/9.9\r\n" + host + b"\r\n",
        "no Host": b"GET /vnc.html HTTP/1.1\r\n\r\n",
        "chunked garbage": b"POST /vnc.html HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"zzzz\r\nxx\r\nffffffffffffffffffffff\r\n\r\n",
        "chunked upload garbage": b"PUT /iso/upload?ticket=x HTTP/1.1\r\n" + host +
                                  b"Transfer-Encoding: chunked\r\n\r\n-1\r\nxx\r\n0\r\n\r\n",
        "three pipelined": (b"GET /vnc.html HTTP/1.1\r\n" + host + b"\r\n") * 3,
        "negative Content-Length": b"POST /vnc.html HTTP/1.1\r\n" + host + b"Content-Length: -5\r\n\r\nabc",
        "two Content-Lengths": b"POST /vnc.html HTTP/1.1\r\n" + host + b"Content-Length: 3\r\nContent-Length: 9\r\n"
                               b"\r\nabc",
    }
    results = exchange_all(node.port, {**oversized, **refused, **survivable}, wait=2)
    for name in oversized:
        how, answer = results[name]
        assert how == "closed" and (status_of(answer) or 400) >= 400, (name, results[name])
    for name in refused:
        how, answer = results[name]
        assert not 100 <= (status_of(answer) or 0) < 300, (name, results[name])
    # A body promised and never sent, the connection then dropped.
    for length in (b"100000", b"99999999999999999999", b"18446744073709551615"):
        for target in (b"/vnc.html", b"/iso/upload?ticket=x", b"/console/serial"):
            exchange(node.port, b"POST " + target + b" HTTP/1.1\r\n" + host + b"Content-Length: " + length +
                     b"\r\n\r\nabc", hang_up=True)
    held.survived()


def test_paths_that_climb_out_of_the_web_folder(node, held):
    """Traversal spelt every way lws or a file system might undo: nothing
    outside the web folder is served."""
    secret = "root:x:0:0"
    assert secret in Path("/etc/passwd").read_text()
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    paths = ["/../../../../../../etc/passwd", "/novnc/../../../../../../etc/passwd",
             "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/novnc/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
             "/..%2f..%2f..%2f..%2f..%2fetc/passwd", "/%252e%252e/%252e%252e/etc/passwd",
             "/..\\..\\..\\..\\..\\etc\\passwd", "/novnc\\..\\..\\..\\..\\etc\\passwd",
             "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "//etc/passwd", "/./././../../../../etc/passwd",
             "/etc/passwd", "/novnc/....//....//....//etc/passwd", "/vnc.html/../../../../../etc/passwd",
             "/console/../../../../etc/passwd", "/iso/../../../../etc/passwd",
             "/iso/upload/../../../../../etc/passwd?ticket=x"]
    payloads = {p: f"GET {p} HTTP/1.1\r\n".encode() + host + b"Connection: close\r\n\r\n" for p in paths}
    for name, (how, answer) in exchange_all(node.port, payloads, wait=2).items():
        assert secret.encode() not in answer, name
        assert status_of(answer) != 200, (name, answer[:200])
    # The pages themselves are still served.
    how, answer = exchange(node.port, b"GET /vnc.html HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
    assert status_of(answer) == 200
    held.survived()


def test_query_strings_with_huge_or_repeated_tickets(node, held):
    """Tickets of 10 and 100 KiB, 2,000 ticket= arguments, and a good
    ticket behind a bad one, over plain HTTP and as websockets: no
    session, and the good ticket is not spent by any of them."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    good = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
    queries = {
        "10 KiB ticket": "ticket=" + "A" * (10 << 10),
        "100 KiB ticket": "ticket=" + "A" * (100 << 10),
        "2,000 tickets": "&".join(["ticket=x"] * 2000),
        "bad before good": f"ticket=x&ticket={good}",
        "empty name": "=&&&=&ticket",
        "percent garbage": "ticket=%zz%00%ff%",
    }
    payloads = {name: f"GET /console/serial?{q} HTTP/1.1\r\n".encode() + host + b"\r\n"
                for name, q in queries.items()}
    payloads.update({"upload " + name: f"PUT /iso/upload?{q} HTTP/1.1\r\n".encode() + host +
                     b"Content-Length: 0\r\n\r\n" for name, q in queries.items()})
    for name, (how, answer) in exchange_all(node.port, payloads, wait=2).items():
        assert not 200 <= (status_of(answer) or 0) < 300, (name, answer[:200])
    for name, q in queries.items():
        ws = RawWs(node.port, f"/console/serial?{q}")
        if ws.upgraded:
            assert ws.outcome()[:2] == ("close", cc.REFUSED), name
        ws.close()
    ws = RawWs(node.port, f"/console/serial?ticket={good}")
    assert ws.upgraded and ws.echo(b"good") == b"good"
    ws.close()
    held.survived()


def test_requests_whose_client_is_gone_before_they_are_read(node, held):
    """A websocket upgrade or an upload sent and the connection reset at
    once: by the time the edge reads the request, the peer has no address
    (getpeername fails). Its ticket must not go to vpsd with an address
    that is an error message (vpsd takes a malformed message for a
    compromised edge and kills it)."""
    host = f"Host: 127.0.0.1:{node.port}\r\n"
    upgrade = (f"GET /console/serial?ticket={{}} HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: https://127.0.0.1:{node.port}\r\n\r\n")
    upload = f"PUT /iso/upload?ticket={{}} HTTP/1.1\r\n{host}Content-Length: 10\r\n\r\n"
    for i in range(60):
        s = tls_connect(node.port)
        request = (upgrade if i % 2 else upload).format(node.ledger.ticket(SERVICE, ACCOUNT, kind="serial"))
        s.sendall(request.encode())
        # A reset, not a FIN: the kernel forgets the peer at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)
    held.survived()


def test_tickets_with_bytes_the_link_does_not_carry(node, held):
    """lws decodes %XX (and + in queries) in a ticket; the link to vpsd
    carries printable ASCII without spaces, and vpsd takes anything else
    for a compromised edge. Such a ticket is refused like any bad one."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    tickets = ["a%20b", "a+b", "%ff%fe", "%0d%0aX-Injected:%201", "%7f", "a%09b", "%01", "%c3%a9"]
    for t in tickets:
        ws = RawWs(node.port, f"/console/serial?ticket={t}")
        assert ws.upgraded, (t, ws.head)
        assert ws.outcome()[:2] == ("close", cc.REFUSED), t
        ws.close()
        how, answer = exchange(node.port, f"POST /iso/upload?ticket={t}&label={t} HTTP/1.1\r\n".encode() + host +
                               f"X-Label: {t}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(), wait=5)
        assert status_of(answer) == 403, (t, answer[:300])
    held.survived()


def test_a_flood_of_bad_requests_does_not_flood_the_log(node, held):
    """lws logs an oversized request at error level, one line each: past a
    burst of 100 and 20 a second, its lines are dropped and counted, and
    the count is said with the next line that passes."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    big = b"GET /vnc.html HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * (16 << 10) + b"\r\n\r\n"
    before = node.vpsd.log_text().count("libwebsockets")
    started = time.monotonic()
    exchange_all(node.port, {i: big for i in range(400)}, wait=2)
    elapsed = time.monotonic() - started
    lines = node.vpsd.log_text().count("libwebsockets") - before
    assert 100 <= lines <= 100 + 20 * elapsed + 5, (lines, elapsed)
    time.sleep(1)
    exchange(node.port, big, wait=2)
    node.vpsd.wait_log("dropped=")
    held.survived()


# ------------------------------------------------------ websocket handshake

def test_bad_websocket_handshakes(node, held):
    """Upgrades that break RFC 6455's handshake, an h2c upgrade, unknown
    paths and tickets past the limit never become sessions: each case
    carries a good ticket of its own, and it is unspent afterwards (it
    never reached vpsd)."""
    good = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13", "Origin": f"https://127.0.0.1:{node.port}"}

    def headers(*without, **changes):
        h = {k: v for k, v in good.items() if k not in without}
        h.update({k.replace("_", "-"): v for k, v in changes.items()})
        return h

    serial = "/console/serial?ticket={}"
    cases = {
        "version 12": (serial, headers(Sec_WebSocket_Version="12")),
        "version 8": (serial, headers(Sec_WebSocket_Version="8")),
        "version 99999999999": (serial, headers(Sec_WebSocket_Version="99999999999")),
        "version text": (serial, headers(Sec_WebSocket_Version="thirteen")),
        "no version": (serial, headers("Sec-WebSocket-Version")),
        "no key": (serial, headers("Sec-WebSocket-Key")),
        "empty key": (serial, headers(Sec_WebSocket_Key="")),
        "key of 3 bytes": (serial, headers(Sec_WebSocket_Key="YWJj")),
        "key of 17 bytes": (serial, headers(Sec_WebSocket_Key="QUFBQUFBQUFBQUFBQUFBQUE=")),
        "key of 300 bytes": (serial, headers(Sec_WebSocket_Key="QUFB" * 100)),
        "key not base64": (serial, headers(Sec_WebSocket_Key="!!!!!!!!!!!!!!!!!!!!!!==")),
        "Upgrade without Connection": (serial, headers("Connection")),
        "Connection without Upgrade": (serial, headers("Upgrade")),
        "Upgrade: h2c": (serial, headers(Upgrade="h2c", Connection="Upgrade, HTTP2-Settings",
                                         HTTP2_Settings="AAMAAABkAAQAAP__")),
        "Upgrade: gibberish": (serial, headers(Upgrade="gib\x01berish")),
        "no Origin": (serial, headers("Origin")),
        "unknown path": ("/console/ssh?ticket={}", good),
        "path below a console": ("/console/serial/x?ticket={}", good),
        "root": ("/?ticket={}", good),
        "a page": ("/vnc.html?ticket={}", good),
        "upload path": ("/iso/upload?ticket={}", good),
        "ticket of 10 KiB": ("/console/serial?ticket={}" + "A" * (10 << 10), good),
        "ticket just past the limit": ("/console/serial?ticket={}" + "A" * (1025 - 200), good),
        "ticket after 2,000 arguments": ("/console/serial?" + "a=b&" * 2000 + "ticket={}", good),
    }
    for name, (path, h) in cases.items():
        ticket = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
        assert len(ticket) < 1025 - 200
        ws = RawWs(node.port, path.format(ticket), headers=h)
        if ws.upgraded:
            # Upgraded, but refused at once, not a session.
            assert ws.outcome()[:2] == ("close", cc.REFUSED), name
        ws.close()
        ws = RawWs(node.port, serial.format(ticket))
        assert ws.upgraded and ws.echo(b"unspent") == b"unspent", name
        ws.close()
    ticket = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
    ws = RawWs(node.port, serial.format(ticket), host=False)
    assert not ws.upgraded or ws.outcome()[:2] == ("close", cc.REFUSED), "no Host"
    ws.close()
    held.survived()


# ------------------------------------------------- frames on a granted session

# Frames RFC 6455 says end the connection (section 5): the edge (lws) must
# close the session, with a close frame or without.
BROKEN_FRAMES = {
    "reserved bits": frame(2, b"abc", rsv=7),
    "RSV1 without an extension": frame(2, b"abc", rsv=4),
    **{f"reserved opcode {op}": frame(op, b"abc") for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    "ping of 126 bytes": frame(9, b"p" * 126),
    "close of 200 bytes": frame(8, b"\x03\xe8" + b"c" * 198),
    "fragmented ping": frame(9, b"pp", fin=False) + frame(0, b"pp"),
    "continuation without a start": frame(0, b"abc"),
    "new message inside a fragmented one": frame(1, b"ab", fin=False) + frame(2, b"cd"),
    "length with the top bit set": frame(2, b"", length=1 << 63),
    "close with a 1-byte payload": frame(8, b"\x03"),
    "close with code 0": frame(8, b"\x00\x00"),
    "close with code 1005": frame(8, (1005).to_bytes(2, "big")),
    "close with code 65535": frame(8, b"\xff\xff"),
}


def test_frames_that_break_rfc6455_close_the_session(node, held):
    for name, wire in BROKEN_FRAMES.items():
        ws = held.session()
        assert ws.echo(b"granted") == b"granted", name
        ws.send(wire)
        outcome = ws.outcome(timeout=5)
        assert outcome[0] in ("close", "eof"), (name, outcome)
        ws.close()
    held.survived()


def test_frames_the_session_survives_or_ends_cleanly(node, held):
    """Frames RFC 6455 allows or that a console may take as bytes: the
    session carries on and its bytes come back whole (or it closes, but the
    edge lives)."""
    ws = held.session()
    # Invalid UTF-8 in text frames: the console is a byte stream; they are
    # carried as they are.
    bad_text = b"\xff\xfe\xc0\x80\xed\xa0\x80"
    ws.send(frame(1, bad_text))
    assert ws.echo(b"|", before=bad_text) == bad_text + b"|"
    # 2,000 pings and pongs at once; at least the last ping is answered.
    ws.send(b"".join(frame(9, b"%d" % i) for i in range(2000)) + b"".join(frame(10, b"x") for _ in range(2000)))
    assert ws.echo(b"after pings") == b"after pings"
    # Fragments of every size, control frames between them.
    ws.send(frame(2, b"a" * 10, fin=False) + frame(9, b"mid") + frame(0, b"b" * 70000, fin=False) +
            frame(10, b"") + frame(0, b"c", fin=True))
    whole = b"a" * 10 + b"b" * 70000 + b"c"
    assert ws.echo(b"!", before=whole) == whole + b"!"
    # Empty frames, and a zero-length final continuation.
    ws.send(frame(2, b"") * 1000 + frame(2, b"x", fin=False) + frame(0, b""))
    assert ws.echo(b"y", before=b"x") == b"xy"
    # An unmasked client frame: RFC 6455 says close; lws 4.1.6 takes it.
    ws.send(frame(2, b"unmasked", mask=False))
    outcome = ws.outcome(timeout=2)
    assert outcome in (("open", b"unmasked"),) or outcome[0] in ("close", "eof"), outcome
    ws.close()
    # A close frame with a valid code and a reason that is not UTF-8.
    ws = held.session()
    ws.send(frame(8, (1000).to_bytes(2, "big") + b"\xff\xfe"))
    assert ws.outcome()[0] in ("close", "eof")
    ws.close()
    held.survived()


def test_frames_sent_with_the_handshake(node, held):
    """Frames written in the same TLS record as the upgrade, before the
    101 (and so before vpsd's grant): lws holds them while the session
    waits and hands them on after. But lws 4.1.6 builds its 101 in its
    read buffer, bytes 400 to about 530 (handshake_0405()), over anything
    the client sent there in the same read: frames there end the session,
    or reach its console with the 101's bytes in them. Either way it is
    that client's own session (browsers wait for the 101); the edge lives.
    Past byte 530 they come through whole."""
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version": "13", "Origin": f"https://127.0.0.1:{node.port}", "X-Pad": "p" * 600}
    ticket = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
    ws = RawWs(node.port, f"/console/serial?ticket={ticket}", headers=headers,
               extra=frame(2, b"early") + frame(2, b"bird"))
    assert ws.upgraded
    assert ws.echo(b"!", before=b"earlybird") == b"earlybird!"
    ws.close()
    for extra in (frame(2, b"early"), frame(2, b"early") * 100, frame(2, os.urandom(3000)), frame(9, b"p") * 500):
        ticket = node.ledger.ticket(SERVICE, ACCOUNT, kind="serial")
        ws = RawWs(node.port, f"/console/serial?ticket={ticket}", extra=extra)
        assert ws.upgraded
        ws.outcome(timeout=1)
        ws.close()
    held.survived()


def test_frames_promising_more_than_they_send(node, held):
    """A frame of 2^40 bytes with a few KiB sent, then a hang-up; one of
    126 bytes with 10 sent, then silence, then a hang-up; a megabyte of one
    never-ending frame: the held session and new ones are not affected."""
    ws = held.session()
    ws.send(frame(2, b"x" * 5000, length=1 << 40)[:5000 + 14])
    time.sleep(0.2)
    ws.close()
    ws = held.session()
    ws.send(frame(2, b"y" * 10, length=126)[:10 + 8])
    time.sleep(0.2)
    ws.close()
    ws = held.session()
    # A never-ending frame: its pieces are held up to 64 KiB, then go on to
    # the console; all but the last hold come back.
    ws.send(frame(2, os.urandom(1 << 20), length=1 << 40)[:(1 << 20) + 14])
    got = 0
    while got < (1 << 20) - (64 << 10):
        op, p = ws.read_frame(timeout=10)
        assert op in (0, 2), op
        got += len(p)
    ws.close()
    held.survived()


# ---------------------------------------------------------------------- TLS

def client_hello():
    """A real ClientHello, as Python's ssl sends it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = cc.tls().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def tls_by_hand(port):
    """A TLS connection over a raw socket: (socket, ssl object, its BIOs),
    so that raw bytes can follow the handshake."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = cc.tls().wrap_bio(incoming, outgoing)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            data = raw.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)
    raw.sendall(outgoing.read())
    return raw, tls, incoming, outgoing


def closed_within(sock, seconds):
    """True when the peer closes (or resets) sock within seconds; what it
    sends before (an alert) is read and dropped."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True
    return False


def s_client(port, version, lines, gap):
    """openssl s_client's output for lines typed gap seconds apart (its
    commands: R renegotiates, K updates keys both ways)."""
    script = "sleep 0.3; " + "".join(f"printf '%s' {shlex.quote(line)}; sleep {gap}; " for line in lines)
    r = subprocess.run(["sh", "-c", f"({script} sleep 0.5) | openssl s_client -connect 127.0.0.1:{port} {version}"],
                       capture_output=True, timeout=30)
    return (r.stdout + r.stderr).decode(errors="replace")


def test_tls_garbage_and_renegotiation(node, held):
    hello = client_hello()
    cases = {
        "garbage after a ClientHello": hello + os.urandom(4096),
        "half a hello, then garbage": hello[:len(hello) // 2] + os.urandom(4096),
        "a record of 64 KiB promised": b"\x16\x03\x01\xff\xff" + os.urandom(1000),
        "an SSLv2 hello": bytes.fromhex("802b0103010012000000100100800300800700c0060040040080020080") + os.urandom(16),
        "an alert first": b"\x15\x03\x03\x00\x02\x02\x28",
        "change cipher spec first": b"\x14\x03\x03\x00\x01\x01" * 100,
        "empty records": b"\x16\x03\x01\x00\x00" * 1000,
    }
    for name, payload in cases.items():
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(payload)
        assert closed_within(s, 5), name
        s.close()
    # After a finished handshake: raw bytes where records should be, a
    # record too long, and a record that does not decrypt.
    for name, payload in {"raw garbage": os.urandom(3000), "a record of 2^14+2048+1": b"\x17\x03\x03\x48\x01" +
                          os.urandom(100), "a record that does not decrypt": b"\x17\x03\x03\x00\x40" +
                          os.urandom(64)}.items():
        raw, tls, incoming, outgoing = tls_by_hand(node.port)
        raw.sendall(payload)
        assert closed_within(raw, 5), name
        raw.close()
    # A request sent one byte a record: it is still a request.
    raw, tls, incoming, outgoing = tls_by_hand(node.port)
    for b in f"GET /vnc.html HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nConnection: close\r\n\r\n".encode():
        tls.write(bytes([b]))
        raw.sendall(outgoing.read())
    got = b""
    raw.settimeout(5)
    while b"\r\n\r\n" not in got:
        data = raw.recv(65536)
        if not data:
            break
        incoming.write(data)
        try:
            got += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert status_of(got) == 200, got[:200]
    raw.close()
    # Client-initiated renegotiation (TLS 1.2; Python's ssl cannot ask for
    # it, openssl s_client can): refused, the connection ends, and the
    # request behind it is not served.
    get = f"GET /vnc.html HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n"
    out = s_client(node.port, "-tls1_2", [get, "R\n", get], gap=0.5)
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-2000:]
    assert out.count("HTTP/1.1 200 OK") == 1, out[-2000:]
    # TLS 1.3 key updates, the peer's asked for too: honoured, the
    # connection goes on.
    out = s_client(node.port, "-tls1_3", ["K\n"] * 20 + [get], gap=0.02)
    assert out.count("KEYUPDATE") == 20 and "HTTP/1.1 200 OK" in out, out[-2000:]
    held.survived()


def test_half_open_handshakes(node, held):
    """200 connections that send half a ClientHello and wait: the held
    session goes on, a new one opens at once, the edge's loop does not
    spin, and the edge drops them itself within lws's timeout."""
    hello = client_hello()
    pid = edge_pid(node.vpsd)

    def cpu_ticks():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    waiting = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(hello[:len(hello) // 2])
        waiting.append(s)
    time.sleep(0.5)
    ticks = cpu_ticks()
    started = time.monotonic()
    assert held.ws.echo(b"among them") == b"among them"
    fresh = held.session()
    assert fresh.echo(b"new") == b"new"
    assert time.monotonic() - started < 2
    fresh.close()
    time.sleep(1)
    # Waiting costs nothing: well under a tenth of a CPU second in this second.
    assert cpu_ticks() - ticks < 10 + (os.sysconf("SC_CLK_TCK") // 10)
    # lws's handshake timeout (10 s) ends them.
    deadline = time.monotonic() + 20
    for s in waiting:
        assert closed_within(s, max(0.1, deadline - time.monotonic())), "a half-open handshake was kept"
        s.close()
    held.survived()


# -------------------------------------------------------------- slow readers

FLOOD = "3d6f4adc-4fc2-43f4-a05b-2238e5ecf649"


class FloodTarget(edge_harness.UnixTarget):
    """A console that never stops talking: each connection gets 64 KiB
    writes for as long as it takes them; sent counts the bytes taken."""

    def __init__(self, path):
        self.sent = 0
        super().__init__(path)

    def serve(self, c):
        block = os.urandom(64 << 10)
        while True:
            c.sendall(block)
            self.sent += len(block)


def test_slow_readers_keep_the_edge_bounded(node, held):
    """16 websockets that never read from a console that floods them, and 8
    that send megabytes to the echo console and never read its answer: the
    edge stops reading the console (and the client) at its high-water mark,
    so its memory stays within what that allows and the flood is held back
    at the console; a slow reader that starts reading gets its bytes."""
    node.add_service(FLOOD, serial=FloodTarget)
    flood = node.targets[-1]
    pid = edge_pid(node.vpsd)
    rss_before = edge_rss_kib(pid)
    readers = []
    for _ in range(16):
        ws = RawWs(node.port, f"/console/serial?ticket={node.ledger.ticket(FLOOD, ACCOUNT, kind='serial')}")
        assert ws.upgraded
        readers.append(ws)
    writers = []
    for _ in range(8):
        ws = held.session()
        ws.sock.setblocking(False)
        writers.append(ws)
    block = frame(2, os.urandom(60 << 10))
    deadline = time.monotonic() + 4
    sent = [0] * len(writers)
    while time.monotonic() < deadline:
        for i, ws in enumerate(writers):
            try:
                ws.sock.send(block)  # TLS: all of it or nothing
                sent[i] += len(block)
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
        time.sleep(0.01)
    # Every writer was stopped long before 4 s of loopback speed.
    assert max(sent) < 16 << 20, sent
    rss = edge_rss_kib(pid)
    # Per session: 256 KiB queued each way, a 64 KiB read and lws's 64 KiB
    # receive buffer, TLS's own: well under 1 MiB. Without the marks, the
    # flood alone is gigabytes by now.
    assert rss - rss_before < 24 * 1024, (rss_before, rss)
    assert flood.sent < 16 * (8 << 20), flood.sent
    assert held.ws.echo(b"through the flood") == b"through the flood"
    # A reader that wakes up gets its bytes, in order of arrival.
    got = 0
    while got < 4 << 20:
        op, p = readers[0].read_frame(timeout=10)
        assert op == 2
        got += len(p)
    for ws in readers + writers:
        ws.close()
    held.survived()


# ------------------------------------------------------------- ISO uploads

def test_bad_uploads(node, held):
    """A bad ticket with and without a body, a Content-Length of a
    petabyte and no body (bad ticket and good), and a good upload cut off
    mid-body with a reset: answered or dropped, nothing left in the ISO
    store, the edge alive."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    isos = node.vpsd.state_dir / "isos"

    def put(ticket, length, body=b""):
        return f"PUT /iso/upload?ticket={ticket} HTTP/1.1\r\n".encode() + host + \
            f"Content-Length: {length}\r\nX-Label: hostile\r\n\r\n".encode() + body

    how, answer = exchange(node.port, put("bad", 1 << 20, os.urandom(1 << 20)))
    assert status_of(answer) == 403, answer[:300]
    # The refusal comes without waiting for a body that never comes.
    s = tls_connect(node.port)
    s.sendall(put("bad", 10 ** 15))
    s.settimeout(5)
    assert status_of(s.recv(4096)) == 403
    s.close()
    # Good tickets: a petabyte promised and nothing sent, then a hang-up;
    # 3 MiB of 64 sent, then a reset.
    s = tls_connect(node.port)
    s.sendall(put(node.ledger.iso_ticket(ACCOUNT, 1 << 30), 10 ** 15))
    node.vpsd.wait_log("iso upload started")
    s.close()
    s = tls_connect(node.port)
    s.sendall(put(node.ledger.iso_ticket(ACCOUNT, 1 << 30), 64 << 20))
    for _ in range(3):
        s.sendall(os.urandom(1 << 20))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and node.vpsd.log_text().count("iso upload started") > \
            node.vpsd.log_text().count("iso upload aborted"):
        time.sleep(0.1)
    assert node.vpsd.log_text().count("iso upload started") == 2
    assert node.vpsd.log_text().count("iso upload aborted") == 2, node.vpsd.log_text()[-3000:]
    assert not isos.exists() or list(isos.iterdir()) == []
    held.survived()


def test_uploads_on_one_kept_alive_connection(node, held):
    """lws keeps an HTTP/1.1 connection for the next request after an
    upload's answer, whatever the answer's Connection: close says, and drops
    the upload's per-connection data without a CLOSED_HTTP: 4,000 refused
    uploads on one connection once leaked an upload each (about 2 MB)."""
    host = f"Host: 127.0.0.1:{node.port}\r\n".encode()
    request = b"POST /iso/upload?ticket=bad HTTP/1.1\r\n" + host + b"Content-Length: 0\r\n\r\n"
    pid = edge_pid(node.vpsd)
    s = tls_connect(node.port)
    s.settimeout(5)

    def refuse(n):
        for _ in range(n):
            s.sendall(request)
            got = b""
            while not got.endswith(b"}\n"):
                data = s.recv(65536)
                assert data, "the edge closed the connection"
                got += data
            assert status_of(got) == 403, got[:300]

    refuse(200)  # the allocator's warm-up
    rss = edge_rss_kib(pid)
    refuse(4000)
    if not VALGRIND:  # valgrind's own memory moves more than that
        assert edge_rss_kib(pid) - rss < 512, (rss, edge_rss_kib(pid))
    s.close()
    held.survived()


# ---------------------------------------------- connections from one address

def test_connections_from_one_address_are_limited(vpsd_factory):
    """One address holds at most console_max_connections_per_address
    connections at once, however far each got (here: TCP only, or half a
    TLS hello): the next is closed at once and logged once; another
    address is served; as its connections close, the address is let in
    again. A session held before stays up throughout."""
    n = ConsoleNode.start(vpsd_factory(), console_max_connections_per_address=6)
    n.add_service(SERVICE)
    try:
        h = Held(n)  # one connection from 127.0.0.1
        hello = client_hello()
        idle = []
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", n.port), timeout=5)
            if i % 2:
                s.sendall(hello[:len(hello) // 2])
            idle.append(s)
        time.sleep(0.3)
        over = [socket.create_connection(("127.0.0.1", n.port), timeout=5) for _ in range(3)]
        for s in over:
            assert closed_within(s, 3), "a connection over the limit was kept"
            s.close()
        n.vpsd.wait_log("too many open from one address")
        assert n.vpsd.log_text().count("too many open from one address") == 1
        # Another address (loopback is a /8) is its own count.
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.connect(("127.0.0.1", n.port))
        tls = cc.tls().wrap_socket(other)
        tls.close()
        assert h.ws.echo(b"held") == b"held"
        for s in idle:
            s.close()
        time.sleep(0.5)
        h.survived()  # a fresh session from 127.0.0.1 opens again
        h.ws.close()
    finally:
        n.close_targets()
        assert n.vpsd.stop() == 0, n.vpsd.log_text()
