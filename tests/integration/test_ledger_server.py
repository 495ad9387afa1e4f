"""`vps-ledger serve` for real: the JSON API over TLS with urllib, and the
sync endpoint with a node peer written from docs/sync-protocol.md alone
(tests/lib/sync_peer.py). The server's clock is a file (--now-file), so
that a lease can end without waiting for it; nothing here gates on how
long anything takes (waits are "until", with a generous bound)."""
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

import memcheck
from sync_peer import MSG_MAX, SyncPeer, b64, canonical, unb64

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "build" / "vps-ledger"
T0 = 1735732800            # 2025-01-01 12:00 UTC
FEB1 = 1738411200          # 2025-02-01 12:00
DAY = 86400
TOKEN = "test-token-0123456789"


def make_cert(folder: Path):
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


class Server:
    def __init__(self, folder: Path):
        self.folder = folder
        self.db = folder / "ledger.db"
        self.clock = folder / "now"
        self.token = folder / "token"
        self.log_path = folder / "ledger.log"
        self.cert, self.key = make_cert(folder)
        self.token.write_text(TOKEN + "\n")
        os.chmod(self.token, 0o600)
        self.set_now(T0)
        self.port = free_port()
        self.proc = None
        self.ctx = ssl.create_default_context(cafile=str(self.cert))

    def cli(self, *args, ok=True):
        p = subprocess.run([str(LEDGER), "--db", str(self.db), "--now", str(self.now), *map(str, args)],
                           capture_output=True, text=True, timeout=30)
        if ok:
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout) if p.stdout.strip().startswith(("{", "[")) else p.stdout
        return p

    def set_now(self, t):
        self.now = t
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(f"{t}\n")
        tmp.rename(self.clock)

    def start(self, prefix=(), tick_interval=1):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*prefix, str(LEDGER), "--db", str(self.db), "serve", "--listen", f"127.0.0.1:{self.port}",
             "--cert", str(self.cert), "--key", str(self.key), "--api-token-file", str(self.token),
             "--tick-interval", str(tick_interval), "--now-file", str(self.clock)],
            stdout=self.log, stderr=self.log)
        wait_until("the server listening", lambda: self.proc.poll() is not None or "vps-ledger serving" in self.log_text(),
                   timeout=60)
        assert self.proc.poll() is None, self.log_text()
        return self

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("vps-ledger did not stop on SIGTERM")
        return self.proc.returncode if self.proc else None

    # ------------------------------------------------------------------ API
    def api(self, method, path, body=None, token=TOKEN, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/api/v1/{path}", data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None):
        status, out = self.api(method, path, body)
        assert status == 200, (status, out)
        return out

    def url(self):
        return f"wss://127.0.0.1:{self.port}/sync"

    def peer(self, node="n1", key=None):
        return SyncPeer(self.url(), node, key if key is not None else self.keys[node], cafile=str(self.cert))

    def rows(self, sql, *params):
        con = sqlite3.connect(str(self.db), timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


@pytest.fixture
def server(tmp_path):
    if not LEDGER.exists():
        pytest.fail(f"{LEDGER} is missing: run make first")
    s = Server(tmp_path)
    # LEDGER_VALGRIND=1 runs the server under valgrind (by hand: slow).
    prefix = memcheck.prefix("--errors-for-leak-kinds=definite,indirect", "--log-file=" + str(tmp_path / "valgrind.log"),
                             quiet=False) if os.environ.get("LEDGER_VALGRIND") else ()
    s.start(prefix=prefix)
    s.keys = {}
    s.ok("POST", "plans", {"name": "small", "price": 1000, "vcpus": 1, "memory_mib": 1024, "disk_gib": 20})
    n = s.ok("POST", "nodes", {"id": "n1", "vcpus": 8, "memory_mib": 8192, "disk_gib": 200,
                                "pools": ["192.0.2.0/28,192.0.2.1"], "console_url": "https://n1.example:8443"})
    s.keys["n1"] = unb64(n["sync_key"])
    for account in ("alice", "bob"):
        s.ok("POST", "accounts", {"id": account})
    s.ok("POST", "accounts/alice/top-up", {"amount": 10000})
    yield s
    status = s.stop()
    assert status == 0, s.log_text() + (tmp_path / "valgrind.log").read_text() if prefix else s.log_text()


def order(server, account="alice", **kw):
    return server.ok("POST", "orders", {"account": account, "plan": "small", "hostname": "web1", **kw})["uuid"]


# ------------------------------------------------------------- handshake


def test_handshake(server):
    peer = server.peer()
    welcome = peer.handshake()
    assert welcome["kind"] == "welcome" and welcome["last_event_seq"] == 0
    peer.close()
    assert "node connected\" node=n1" in server.log_text()


def test_wrong_key_and_unknown_node_are_refused_alike(server):
    answers = []
    for node, key in (("n1", os.urandom(32)), ("nosuchnode", os.urandom(32))):
        peer = server.peer(node, key)
        err = peer.handshake(check_proof=False)   # the ledger's proof cannot verify under a wrong key
        answers.append((err["kind"], err["code"], err["reason"], peer.wait_closed()[0]))
        peer.close()
    assert answers[0] == answers[1] == ("error", "unauthenticated", "authentication failed", 1008)
    # The log knows which, the peer does not.
    assert "unknown_node=true" in server.log_text()


def test_messages_before_hello_and_other_versions_close(server):
    peer = server.peer().connect()
    peer.send_raw(canonical({"v": 1, "kind": "command-ack", "seq": 1, "result": "applied"}).decode())
    assert peer.expect_error("unauthenticated")
    assert peer.wait_closed()[0] == 1008
    peer.close()
    peer = server.peer().connect()
    peer.send_raw(canonical({"v": 2, "kind": "hello", "node": "n1", "nonce": b64(os.urandom(32))}).decode())
    assert peer.expect_error("unsupported-version")
    assert peer.wait_closed()[0] == 1008
    peer.close()


# ------------------------------------------------------------- commands


def test_commands_in_order_resent_from_the_last_ack(server):
    a = order(server)
    b = order(server)
    peer = server.peer()
    peer.handshake()
    c1, c2 = peer.commands(2)
    assert [(c["seq"], c["kind"], c["service"]) for c in (c1, c2)] == [(1, "provision", a), (2, "provision", b)]
    assert c1["spec"]["uuid"] == a
    peer.ack(1)
    # A command queued while connected arrives at once (no reconnect).
    server.ok("POST", f"services/{a}/power", {"action": "restart"})
    (c3,) = peer.commands(1)
    assert (c3["seq"], c3["kind"], c3["action"]) == (3, "power", "restart")
    peer.close()
    wait_until("ack 1 recorded", lambda: server.rows("SELECT acked_command_seq FROM nodes")[0][0] == 1)

    # Reconnect having applied 1: 2 and 3 again, in order, never 1.
    peer = server.peer()
    peer.handshake(last_command_seq=1)
    assert [c["seq"] for c in peer.commands(2)] == [2, 3]
    peer.ack(3, result="failed", error="guest busy")
    wait_until("ack 3 recorded", lambda: server.rows("SELECT acked_command_seq FROM nodes")[0][0] == 3)
    assert server.rows("SELECT seq, result, error, acked_at IS NOT NULL FROM commands ORDER BY seq") == [
        (1, "applied", None, 1), (2, None, None, 1), (3, "failed", "guest busy", 1)]
    # An ack beyond the journal is refused; the session goes on.
    peer.ack(99)
    peer.expect_error("malformed")
    peer.close()

    # The node applied everything: nothing is sent.
    peer = server.peer()
    peer.handshake(last_command_seq=3)
    server.ok("POST", f"services/{b}/power", {"action": "stop"})
    (c4,) = peer.commands(1)
    assert c4["seq"] == 4
    peer.close()


def test_newer_connection_wins(server):
    old = server.peer()
    old.handshake()
    new = server.peer()
    new.handshake()
    code, reason = old.wait_closed()
    assert code == 1000 and "newer" in reason
    order(server)
    (cmd,) = new.commands(1)
    assert cmd["kind"] == "provision"
    old.close()
    new.close()


# ------------------------------------------------------------- events


def test_events_stored_once_and_applied(server):
    uuid = order(server)
    peer = server.peer()
    peer.handshake()
    peer.commands(1)
    peer.event("state", seq=1, service=uuid, state="running")
    assert peer.recv_kind("event-ack")[0]["seq"] == 1
    # Sent again (a lost ack): acked again, stored once.
    peer.event("state", seq=1, service=uuid, state="running")
    assert peer.recv_kind("event-ack")[0]["seq"] == 1
    assert server.rows("SELECT count(*) FROM events") == [(1,)]
    assert server.ok("GET", f"services/{uuid}")["node_state"] == "running"
    # A gap: refused, nothing stored, the session goes on.
    peer.event("state", seq=3, service=uuid, state="stopped")
    peer.expect_error("out-of-order")
    peer.event("usage", seq=2, service=uuid, buckets=[
        {"start": 1735732800, "size": 300, "in_bytes": 10, "in_packets": 1, "out_bytes": 20, "out_packets": 2}])
    assert peer.recv_kind("event-ack")[0]["seq"] == 2
    peer.event("removal-queued", seq=3, service=uuid, remove_after=T0 + 3 * DAY)
    assert peer.recv_kind("event-ack")[0]["seq"] == 3
    peer.close()
    assert server.rows("SELECT seq, kind FROM events ORDER BY seq") == [(1, "state"), (2, "usage"), (3, "removal-queued")]
    traffic = server.ok("GET", f"services/{uuid}/traffic")
    assert traffic["buckets"] == [{"start": 1735732800, "size": 300, "in_bytes": 10, "in_packets": 1,
                                   "out_bytes": 20, "out_packets": 2}]
    assert server.ok("GET", f"services/{uuid}")["node_remove_after"] == T0 + 3 * DAY

    # After a reconnect the welcome says where the node resumes.
    peer = server.peer()
    assert peer.handshake(last_command_seq=1)["last_event_seq"] == 3
    peer.close()


def test_inventory_drift(server):
    a = order(server)
    b = order(server)
    stranger = "11111111-2222-4333-8444-555555555555"
    assert server.ok("GET", "nodes/n1/drift") == {"node": "n1", "inventory_at": None, "drift": []}
    peer = server.peer()
    peer.handshake(last_command_seq=2)
    paid = server.ok("GET", f"services/{a}")["paid_until"]
    peer.event("inventory", services=[{"service": a, "state": "running", "paid_until": paid},
                                      {"service": stranger, "state": "stopped", "paid_until": 5}])
    peer.recv_kind("event-ack")
    peer.close()
    drift = server.ok("GET", "nodes/n1/drift")
    assert drift["inventory_at"] == T0
    assert sorted((d["service"], d["issue"]) for d in drift["drift"]) == sorted(
        [(b, "missing-on-node"), (stranger, "unknown-to-ledger")])


def test_root_password_sealed_and_handed_out_once(server):
    uuid = order(server)
    password = "Xq7-root-pass-" + b64(os.urandom(9))
    peer = server.peer()
    peer.handshake()
    peer.commands(1)
    peer.ack(1)
    peer.event("result", command_seq=1, op="provision", service=uuid, ok=True, root_password=password)
    peer.recv_kind("event-ack")
    peer.close()
    # Not in the database's files in clear (nor in the log).
    for f in server.folder.glob("ledger.db*"):
        assert password.encode() not in f.read_bytes(), f
    assert password not in server.log_text()
    status, out = server.api("POST", f"services/{uuid}/root-password")
    assert (status, out) == (200, {"service": uuid, "root_password": password})
    status, out = server.api("POST", f"services/{uuid}/root-password")
    assert status == 404 and "error" in out
    assert server.rows("SELECT count(*) FROM service_secrets") == [(0,)]

    # A reinstall queues its command; the node's new password comes the same way.
    server.ok("POST", f"services/{uuid}/reinstall", {"template": "debian-12", "ssh_keys": ["ssh-ed25519 AAAA k"]})
    body = json.loads(server.rows("SELECT body FROM commands WHERE kind = 'reinstall'")[0][0])
    assert body["template"] == "debian-12" and "root_password" not in body


# ------------------------------------------------------------- refusals


def valid_event(peer, uuid, seq):
    return peer.build("state", seq=seq, at=T0, service=uuid, state="running")


def test_refusals_keep_the_session_where_the_doc_says(server):
    uuid = order(server)
    peer = server.peer()
    peer.handshake()
    peer.commands(1)

    def survives(seq):
        peer.send_raw(valid_event(peer, uuid, seq))
        assert peer.recv_kind("event-ack")[0]["seq"] == seq

    # forged: a MAC under another key
    forged = peer.seal({"v": 1, "kind": "state", "seq": 1, "at": T0, "service": uuid, "state": "running"},
                       key=os.urandom(32))
    peer.send_raw(canonical(forged).decode())
    peer.expect_error("bad-mac")
    survives(1)
    # tampered: one value changed after the MAC
    text = valid_event(peer, uuid, 2).replace('"running"', '"stopped"')
    peer.send_raw(text)
    peer.expect_error("bad-mac")
    # replayed: the same message twice
    text = valid_event(peer, uuid, 2)
    peer.send_raw(text)
    assert peer.recv_kind("event-ack")[0]["seq"] == 2
    peer.send_raw(text)
    peer.expect_error("replayed")
    # reordered: a gap in the event seq
    peer.send_raw(valid_event(peer, uuid, 4))
    peer.expect_error("out-of-order")
    # truncated
    peer.send_raw(valid_event(peer, uuid, 3)[:-10])
    peer.expect_error("malformed")
    # oversized, in one frame and in fragments that add up
    peer.send_raw("{" + " " * MSG_MAX + "}")
    peer.expect_error("oversized")
    peer.send_raw(["{" + " " * (MSG_MAX // 2)] * 3 + ["}"])
    peer.expect_error("oversized")
    # binary, and not an object
    peer.send_raw(valid_event(peer, uuid, 3).encode())
    peer.expect_error("malformed")
    peer.send_raw("[1, 2]")
    peer.expect_error("malformed")
    survives(3)
    peer.close()
    log = server.log_text()
    for code in ("bad-mac", "replayed", "out-of-order", "malformed", "oversized"):
        assert f"code={code}" in log


def test_sixteen_refusals_close(server):
    peer = server.peer()
    peer.handshake()
    for _ in range(15):
        peer.send_raw("not json")
        peer.expect_error("malformed")
    peer.send_raw("not json")
    peer.expect_error("malformed")
    code, reason = peer.wait_closed()
    assert code == 1008
    peer.close()


# ------------------------------------------------------------- API


def test_api_needs_the_token(server):
    assert server.api("GET", "plans", token=None)[0] == 401
    assert server.api("GET", "plans", token="wrong")[0] == 401
    assert server.api("GET", "plans", token=TOKEN + "x")[0] == 401
    status, out = server.api("POST", "accounts", {"id": "mallory"}, token="wrong")
    assert status == 401 and out == {"error": "unauthorized"}
    assert server.api("GET", "accounts/mallory")[0] == 404


def test_http1_only_no_h2c(server):
    """An "Upgrade: h2c" (HTTP/2 in the clear, over TLS here) is hung up on,
    not switched to: lws would speak HTTP/2 on it, ALPN notwithstanding.
    The API on the next connection answers as before."""
    request = (f"GET /api/v1/plans HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Authorization: Bearer {TOKEN}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n").encode()
    with server.ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                                server_hostname="127.0.0.1") as s:
        s.sendall(request)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ssl.SSLError, ConnectionResetError):
            pass
    assert b" 101 " not in answer.split(b"\r\n", 1)[0], answer
    assert answer == b"", answer
    assert server.api("GET", "plans")[0] == 200


def test_api_errors_change_nothing(server):
    before = server.ok("GET", "accounts/alice")
    commands = server.rows("SELECT count(*) FROM commands")
    refusals = [
        ("POST", "orders", {"account": "bob", "plan": "small", "hostname": "web1"}, 402),   # no balance
        ("POST", "orders", {"account": "alice", "plan": "huge", "hostname": "web1"}, 404),
        ("POST", "orders", {"account": "alice", "plan": "small", "hostname": "Web 1"}, 400),
        ("POST", "orders", {"account": "alice", "plan": "small", "hostname": "w", "colour": "red"}, 400),
        ("POST", "accounts", {"id": "alice"}, 409),
        ("POST", "accounts/alice/top-up", {"amount": -5}, 400),
        ("POST", "accounts/alice/top-up", {"amount": "5"}, 400),
        ("POST", "services/renew", {"services": ["00000000-0000-4000-8000-000000000000"]}, 404),
        ("GET", "services/00000000-0000-4000-8000-000000000000", None, 404),
        ("GET", "no/such/thing", None, 404),
        ("GET", "orders", None, 405),
    ]
    for method, path, body, want in refusals:
        status, out = server.api(method, path, body)
        assert status == want and set(out) == {"error"}, (path, body, status, out)
    for raw in (b"{", b"[]", b"null", b'{"id": "x",}', b"\xff\xfe"):
        status, out = server.api("POST", "accounts", raw=raw)
        assert status == 400 and set(out) == {"error"}, (raw, status, out)
    status, out = server.api("POST", "accounts", raw=b'{"id": "' + b"x" * (70 * 1024) + b'"}')
    assert status == 413
    # No capacity: the message names no node.
    server.ok("POST", "plans", {"name": "giant", "price": 1, "vcpus": 64, "memory_mib": 1048576, "disk_gib": 16384})
    status, out = server.api("POST", "orders", {"account": "alice", "plan": "giant", "hostname": "g"})
    assert status == 409 and "n1" not in out["error"]
    assert server.ok("GET", "accounts/alice") == before
    assert server.rows("SELECT count(*) FROM commands") == commands


def test_api_covers_the_money_operations(server):
    uuid = order(server, ssh_keys=["ssh-ed25519 AAAA a@b"], auto_renew=False)
    svc = server.ok("GET", f"services/{uuid}")
    assert (svc["state"], svc["paid_until"], svc["auto_renew"]) == ("active", FEB1, False)
    assert [s["uuid"] for s in server.ok("GET", "services?account=alice")] == [uuid]
    assert server.ok("GET", "services?account=bob") == []
    assert server.ok("POST", f"services/{uuid}/auto-renew", {"auto_renew": True})["auto_renew"] is True
    server.ok("POST", "plans", {"name": "big", "price": 2000, "vcpus": 2, "memory_mib": 2048, "disk_gib": 40})
    out = server.ok("POST", f"services/{uuid}/change-plan", {"plan": "big"})
    assert out["service"]["plan"] == "big" and out["amount"] == 1000
    out = server.ok("POST", "services/renew", {"services": [uuid]})
    assert out["actions"][0]["action"] == "renew"
    assert server.ok("POST", f"services/{uuid}/transfer", {"account": "bob"})["account_id"] == "bob"
    plans = server.ok("GET", "plans")
    assert [p["name"] for p in plans] == ["big", "small"]
    nodes = server.ok("GET", "nodes")
    assert nodes[0]["id"] == "n1" and nodes[0]["services"] == 1
    kinds = [c["kind"] for c in server.ok("GET", "nodes/n1/commands?after=0")]
    assert kinds == ["provision", "resize", "renew", "transfer"]
    assert [c["seq"] for c in server.ok("GET", "nodes/n1/commands?after=3")] == [4]
    status, out = server.api("POST", f"services/{uuid}/promise")
    assert status == 409  # not in the cycle's last 3 days
    assert server.ok("POST", "tick") == {"actions": []}
    account = server.ok("GET", "accounts/alice")
    assert [e["kind"] for e in account["log"]] == ["top-up", "order", "upgrade", "renewal"]


# ------------------------------------------------------------- console tickets


def test_console_ticket_only_for_the_owner(server):
    uuid = order(server)
    pem = server.cli("key", "public")
    public = load_pem_public_key(pem.encode())
    status, t = server.api("POST", f"services/{uuid}/console-ticket", {"account": "alice", "kind": "vnc"})
    assert status == 200, t
    payload_b64, sig_b64 = t["ticket"].split(".")
    payload = unb64(payload_b64)
    public.verify(unb64(sig_b64), payload)   # raises when it does not verify
    fields = dict(line.split("=", 1) for line in payload.decode().splitlines()[1:])
    assert payload.decode().startswith("vpsd-console-ticket-1\n")
    assert (fields["service"], fields["account"], fields["kind"]) == (uuid, "alice", "vnc")
    assert int(fields["exp"]) - int(fields["iat"]) == 60 and int(fields["iat"]) == T0
    assert t["url"] == f"https://n1.example:8443/vnc.html#ticket={t['ticket']}"
    status, s = server.api("POST", f"services/{uuid}/console-ticket", {"account": "alice", "kind": "serial"})
    assert status == 200 and s["url"].startswith("https://n1.example:8443/serial.html#ticket=")

    refused = []
    for account, service in (("bob", uuid), ("alice", "00000000-0000-4000-8000-000000000000"),
                             ("nobody", uuid), ("alice", "not-a-uuid")):
        refused.append(server.api("POST", f"services/{service}/console-ticket", {"account": account, "kind": "vnc"}))
    # Terminated (the lease ran out through retention): refused the same way.
    server.ok("POST", f"services/{uuid}/auto-renew", {"auto_renew": False})
    server.set_now(FEB1 + 4 * DAY)
    server.ok("POST", "tick")
    wait_until("terminated", lambda: server.ok("GET", f"services/{uuid}")["state"] == "terminated")
    refused.append(server.api("POST", f"services/{uuid}/console-ticket", {"account": "alice", "kind": "vnc"}))
    assert all(r == (403, {"error": "console refused"}) for r in refused), refused
    # The ticket key never leaves the key file, nor reaches the log.
    assert "PRIVATE" not in server.log_text()
    assert oct(os.stat(str(server.db) + ".ticket-key").st_mode & 0o777) == "0o600"
    assert oct(os.stat(str(server.db) + ".seal-key").st_mode & 0o777) == "0o600"


# ------------------------------------------------------------- tick


def test_tick_suspends_on_time_and_tells_the_node(server):
    uuid = order(server, auto_renew=False)
    peer = server.peer()
    peer.handshake()
    peer.commands(1)
    peer.ack(1)
    server.set_now(FEB1 - 1)
    time.sleep(0)  # the server ticks on its own; nothing is due yet
    assert server.ok("GET", f"services/{uuid}")["state"] == "active"
    server.set_now(FEB1)
    # No API call: the server's own tick acts, and the node hears at once.
    (cmd,) = peer.commands(1, timeout=30)
    assert (cmd["kind"], cmd["service"], cmd["reason"]) == ("suspend", uuid, "unpaid")
    assert server.ok("GET", f"services/{uuid}")["state"] == "suspended"
    peer.close()


def test_token_file_must_be_private(tmp_path):
    s = Server(tmp_path)
    os.chmod(s.token, 0o644)
    p = subprocess.run([str(LEDGER), "--db", str(s.db), "serve", "--listen", "127.0.0.1:0", "--cert", str(s.cert),
                        "--key", str(s.key), "--api-token-file", str(s.token)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "0600" in p.stderr


# ------------------------------------------------------------- node policy


def last_command(server, node="n1"):
    c = server.ok("GET", f"nodes/{node}/commands")[-1]
    return json.loads(c["body"])


def test_node_policy_queued_kept_and_shown(server):
    assert server.ok("GET", "nodes")[0]["policy"] is None
    peer = server.peer()
    peer.handshake()
    server.ok("POST", "nodes/n1/policy", {"grace_seconds": 3600, "retention_seconds": 3 * DAY,
                                          "autonomous_removal": True, "iso_quota_bytes": 8 << 20})
    (cmd,) = peer.commands(1)
    assert {k: cmd[k] for k in ("kind", "grace_seconds", "retention_seconds", "autonomous_removal",
                                "iso_quota_bytes")} == {"kind": "set-policy", "grace_seconds": 3600,
                                                        "retention_seconds": 3 * DAY, "autonomous_removal": True,
                                                        "iso_quota_bytes": 8 << 20}
    assert server.ok("GET", "nodes")[0]["policy"] == {"grace_seconds": 3600, "retention_seconds": 3 * DAY,
                                                      "autonomous_removal": True, "iso_quota_bytes": 8 << 20,
                                                      "at": T0}
    # Without a quota: the node keeps its own, and so does the ledger's record.
    server.ok("POST", "nodes/n1/policy", {"grace_seconds": 0, "retention_seconds": 60, "autonomous_removal": False})
    (cmd,) = peer.commands(1)
    assert cmd["kind"] == "set-policy" and "iso_quota_bytes" not in cmd and cmd["retention_seconds"] == 60
    policy = server.ok("GET", "nodes")[0]["policy"]
    assert (policy["retention_seconds"], policy["autonomous_removal"], policy["iso_quota_bytes"]) == (60, False, 8 << 20)
    peer.close()

    commands = server.rows("SELECT count(*) FROM commands")
    for body, want in (({"grace_seconds": 90 * DAY + 1, "retention_seconds": 0, "autonomous_removal": False}, 400),
                       ({"grace_seconds": -1, "retention_seconds": 0, "autonomous_removal": False}, 400),
                       ({"grace_seconds": 0, "retention_seconds": 0}, 400),
                       ({"grace_seconds": 0, "retention_seconds": 0, "autonomous_removal": False,
                         "iso_quota_bytes": 0}, 400),
                       ({"grace_seconds": 0, "retention_seconds": 0, "autonomous_removal": False, "x": 1}, 400)):
        status, out = server.api("POST", "nodes/n1/policy", body)
        assert status == want and set(out) == {"error"}, (body, status, out)
    status, out = server.api("POST", "nodes/nosuch/policy",
                             {"grace_seconds": 0, "retention_seconds": 0, "autonomous_removal": False})
    assert status == 404
    assert server.rows("SELECT count(*) FROM commands") == commands
    # The command line does the same.
    server.cli("node", "policy", "n1", "--grace", "10", "--retention", "20", "--autonomous-removal")
    assert last_command(server)["kind"] == "set-policy" and last_command(server)["autonomous_removal"] is True
    assert server.cli("node", "policy", "n1", "--grace", "10", ok=False).returncode == 2


# ------------------------------------------------------------- ISOs

ISO_A = "iso-" + "a" * 20
ISO_B = "iso-" + "b" * 20
SHA = "0123456789abcdef" * 4


def iso_event(peer, **fields):
    peer.event("iso", **fields)
    return peer.recv_kind("event-ack")[0]


def test_iso_records_from_events_and_owner_actions(server):
    mine = order(server)                      # alice, on n1
    server.ok("POST", "accounts/bob/top-up", {"amount": 5000})
    bob = order(server, account="bob")
    peer = server.peer()
    peer.handshake(last_command_seq=2)
    iso_event(peer, iso=ISO_A, account_id="alice", state="uploaded", size=4096, sha256=SHA, label="Debian 12")
    # An account the node does not serve: not recorded.
    iso_event(peer, iso=ISO_B, account_id="mallory", state="uploaded", size=1, sha256=SHA, label="x")
    listed = server.ok("GET", "accounts/alice/isos")
    assert listed == [{"id": ISO_A, "label": "Debian 12", "size": 4096, "sha256": SHA, "state": "pending",
                       "mounted_in": []}]
    assert "n1" not in json.dumps(listed)
    assert server.ok("GET", "accounts/bob/isos") == []
    assert server.api("GET", "accounts/nobody/isos")[0] == 404
    assert [i["id"] for i in server.ok("GET", "isos")] == [ISO_A]

    # Not approved yet: alice cannot mount it (her own ISO: told why).
    status, out = server.api("POST", f"isos/{ISO_A}/mount", {"account": "alice", "service": mine})
    assert (status, out) == (409, {"error": "the ISO is not approved yet"})
    server.ok("POST", f"isos/{ISO_A}/approve")
    cmd = last_command(server)
    assert (cmd["kind"], cmd["iso"], cmd["account_id"]) == ("iso-approve", ISO_A, "alice")
    iso_event(peer, iso=ISO_A, account_id="alice", state="approved")
    assert server.ok("GET", "accounts/alice/isos")[0]["state"] == "approved"
    assert server.api("POST", f"isos/{ISO_A}/approve")[0] == 409

    # Every refusal that could tell others' ISOs and services apart reads the same.
    before = server.rows("SELECT count(*) FROM commands")
    refusals = [
        (f"isos/{ISO_A}/mount", {"account": "bob", "service": bob}),           # another's ISO
        (f"isos/{ISO_A}/mount", {"account": "alice", "service": bob}),         # another's service
        (f"isos/{ISO_B}/mount", {"account": "alice", "service": mine}),        # no such ISO
        (f"isos/{ISO_A}/mount", {"account": "alice", "service": "not-a-uuid"}),
        (f"isos/{ISO_A}/delete", {"account": "bob"}),
        (f"isos/{ISO_B}/delete", {"account": "bob"}),
        (f"services/{mine}/iso-eject", {"account": "bob"}),
        ("services/00000000-0000-4000-8000-000000000000/iso-eject", {"account": "alice"}),
    ]
    for path, body in refusals:
        assert server.api("POST", path, body) == (403, {"error": "iso refused"}), (path, body)
    assert server.rows("SELECT count(*) FROM commands") == before

    server.ok("POST", f"isos/{ISO_A}/mount", {"account": "alice", "service": mine})
    cmd = last_command(server)
    assert (cmd["kind"], cmd["service"], cmd["iso"]) == ("iso-mount", mine, ISO_A)
    iso_event(peer, iso=ISO_A, account_id="alice", state="mounted", service=mine)
    assert server.ok("GET", "accounts/alice/isos")[0]["mounted_in"] == [mine]
    status, out = server.api("POST", f"isos/{ISO_A}/delete", {"account": "alice"})
    assert (status, out) == (409, {"error": "the ISO is mounted: eject it first"})
    assert server.api("POST", f"isos/{ISO_A}/reject", {"reason": "x"})[0] == 409
    server.ok("POST", f"services/{mine}/iso-eject", {"account": "alice"})
    assert (last_command(server)["kind"], last_command(server)["service"]) == ("iso-eject", mine)
    iso_event(peer, iso=ISO_A, account_id="alice", state="ejected", service=mine)
    assert server.ok("GET", "accounts/alice/isos")[0]["mounted_in"] == []
    server.ok("POST", f"isos/{ISO_A}/delete", {"account": "alice"})
    assert last_command(server) | {"seq": 0} == {"v": 1, "kind": "iso-delete", "iso": ISO_A, "seq": 0}
    iso_event(peer, iso=ISO_A, account_id="alice", state="deleted")
    assert server.ok("GET", "accounts/alice/isos") == []
    assert server.ok("GET", "isos?account=alice")[0]["state"] == "deleted"
    # Gone: refused like any ISO not one's own.
    assert server.api("POST", f"isos/{ISO_A}/delete", {"account": "alice"}) == (403, {"error": "iso refused"})

    # The provider rejects another upload, with a reason.
    iso_event(peer, iso=ISO_B, account_id="bob", state="uploaded", size=2048, sha256=SHA, label="win")
    server.ok("POST", f"isos/{ISO_B}/reject", {"reason": "licence"})
    assert last_command(server) | {"seq": 0} == {"v": 1, "kind": "iso-reject", "iso": ISO_B, "reason": "licence",
                                                 "seq": 0}
    iso_event(peer, iso=ISO_B, account_id="bob", state="rejected")
    assert server.ok("GET", "accounts/bob/isos")[0]["state"] == "rejected"
    assert server.api("POST", "isos/iso-nosuch/approve")[0] == 404
    peer.close()


def test_iso_mount_needs_the_isos_node_and_a_node_speaks_for_its_own(server):
    mine = order(server)                                   # n1
    n2 = server.ok("POST", "nodes", {"id": "n2", "vcpus": 8, "memory_mib": 65536, "disk_gib": 200,
                                     "pools": ["198.51.100.0/28,198.51.100.1"]})
    server.keys["n2"] = unb64(n2["sync_key"])
    other = order(server)                                  # n2: the most free memory
    assert server.ok("GET", f"services/{other}")["node"] == "n2"
    p1 = server.peer()
    p1.handshake(last_command_seq=1)
    iso_event(p1, iso=ISO_A, account_id="alice", state="uploaded", size=4096, sha256=SHA, label="a")
    iso_event(p1, iso=ISO_A, account_id="alice", state="approved")
    p1.close()
    # n2 cannot speak for n1's ISO.
    p2 = server.peer("n2")
    p2.handshake(last_command_seq=1)
    iso_event(p2, iso=ISO_A, account_id="alice", state="deleted")
    iso_event(p2, iso=ISO_A, account_id="alice", state="mounted", service=other)
    p2.close()
    assert server.ok("GET", "accounts/alice/isos")[0] | {"mounted_in": None} == {
        "id": ISO_A, "label": "a", "size": 4096, "sha256": SHA, "state": "approved", "mounted_in": None}
    assert server.ok("GET", "accounts/alice/isos")[0]["mounted_in"] == []
    # The ISO lives on n1: a service of n2 cannot have it.
    assert server.api("POST", f"isos/{ISO_A}/mount", {"account": "alice", "service": other}) == (
        403, {"error": "iso refused"})
    server.ok("POST", f"isos/{ISO_A}/mount", {"account": "alice", "service": mine})
    assert last_command(server, "n1")["kind"] == "iso-mount"
    assert last_command(server, "n2")["kind"] == "provision"


def test_iso_upload_ticket_only_for_the_owner(server):
    uuid = order(server)
    public = load_pem_public_key(server.cli("key", "public").encode())
    status, t = server.api("POST", "accounts/alice/iso-upload-ticket", {"node": "n1", "max_bytes": 1 << 30})
    assert status == 200, t
    payload_b64, sig_b64 = t["ticket"].split(".")
    payload = unb64(payload_b64)
    public.verify(unb64(sig_b64), payload)
    lines = payload.decode().splitlines()
    assert lines[0] == "vpsd-iso-upload-ticket-1"
    fields = dict(line.split("=", 1) for line in lines[1:])
    assert (fields["account"], fields["max_bytes"], int(fields["iat"]), int(fields["exp"])) == (
        "alice", str(1 << 30), T0, T0 + 60)
    assert t["expires_at"] == T0 + 60
    assert t["url"] == f"https://n1.example:8443/iso/upload?ticket={t['ticket']}"
    assert server.cli("iso", "ticket", "alice", "--node", "n1", "--max-bytes", "10")["ticket"]

    for body in ({"node": "n1", "max_bytes": (64 << 30) + 1}, {"node": "n1", "max_bytes": 0},
                 {"node": "n1"}, {"node": "n1", "max_bytes": 1, "account": "alice"}):
        status, out = server.api("POST", "accounts/alice/iso-upload-ticket", body)
        assert status == 400 and set(out) == {"error"}, (body, status, out)
    refused = [server.api("POST", f"accounts/{account}/iso-upload-ticket", {"node": node, "max_bytes": 10})
               for account, node in (("bob", "n1"), ("nobody", "n1"), ("alice", "nosuch"))]
    # Terminated: no more tickets.
    server.ok("POST", f"services/{uuid}/auto-renew", {"auto_renew": False})
    server.set_now(FEB1 + 4 * DAY)
    server.ok("POST", "tick")
    wait_until("terminated", lambda: server.ok("GET", f"services/{uuid}")["state"] == "terminated")
    refused.append(server.api("POST", "accounts/alice/iso-upload-ticket", {"node": "n1", "max_bytes": 10}))
    assert all(r == (403, {"error": "iso upload refused"}) for r in refused), refused
