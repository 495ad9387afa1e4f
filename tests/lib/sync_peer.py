"""A node's side of the sync protocol (docs/sync-protocol.md), written from
the document alone, for tests: the handshake and its proofs, the MAC and
counter on every message, and ways to break each rule on purpose (raw
text, forged or tampered MACs, replays, gaps, oversized and binary
messages). Built on python3-websockets (asyncio), driven synchronously:
every call runs the peer's own event loop until it is done.

    peer = SyncPeer(url, "n1", key)          # key: the 32 bytes of `node add`
    welcome = peer.handshake(last_command_seq=0)
    cmd = peer.recv()                         # a command, MAC checked
    peer.send("command-ack", seq=cmd["seq"], result="applied")
    peer.event("state", service=uuid, state="running")
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import time

import websockets

SUBPROTOCOL = "vpsd-sync.1"
MSG_MAX = 512 * 1024


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


class SyncPeer:
    def __init__(self, url, node, key: bytes, cafile=None, timeout=10):
        self.url, self.node, self.key, self.timeout = url, node, key, timeout
        self.loop = asyncio.new_event_loop()
        ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
        if not cafile:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.ssl = ctx
        self.ws = None
        self.n = 0                # our counter
        self.received_n = 0       # the ledger's
        self.k_send = self.k_recv = None
        self.event_seq = 0

    # ---------------------------------------------------------------- plumbing
    def _run(self, coro, timeout=None):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout or self.timeout))

    def connect(self, subprotocol=SUBPROTOCOL, path="/sync"):
        url = self.url.rsplit("/", 1)[0] + path if path != "/sync" else self.url

        async def connect():
            # Made inside the loop: websockets binds a connection to the
            # loop that is running when it is made.
            return await websockets.connect(
                url, ssl=self.ssl, subprotocols=[subprotocol] if subprotocol else None, max_size=None,
                ping_interval=None, compression=None, close_timeout=2)
        self.ws = self._run(connect())
        return self

    def close(self):
        if self.ws is not None:
            try:
                self._run(self.ws.close(), timeout=5)
            except Exception:
                pass
        self.loop.close()

    def send_raw(self, data):
        """Text (str), binary (bytes) or fragments (a list of str)."""
        self._run(self.ws.send(iter(data) if isinstance(data, list) else data))

    def recv_raw(self, timeout=None):
        try:
            return self._run(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as e:
            raise Closed(e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else "") from None

    def wait_closed(self, timeout=None):
        """Reads until the ledger closes; returns (code, reason)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            try:
                self.recv_raw(timeout=max(0.1, deadline - time.monotonic()))
            except Closed as c:
                return c.code, c.reason
        raise AssertionError("the ledger did not close the connection")

    # ---------------------------------------------------------------- messages
    def derive(self, label, nn, ln):
        return hmac256(self.key, f"vpsd-sync/1 {label}\n{self.node}\n{nn}\n{ln}".encode())

    def seal(self, obj, key=None, n=None):
        """obj with our next n (or the one given) and its MAC."""
        obj = dict(obj)
        if n is None:
            self.n += 1
            n = self.n
        obj["n"] = n
        obj["mac"] = b64(hmac256(key or self.k_send, canonical(obj)))
        return obj

    def build(self, kind, **fields):
        return canonical(self.seal({"v": 1, "kind": kind, **fields})).decode()

    def send(self, kind, **fields):
        text = self.build(kind, **fields)
        self.send_raw(text)
        return text

    def recv(self, timeout=None, check_mac=True):
        """The next message, its MAC and counter checked once keyed."""
        msg = json.loads(self.recv_raw(timeout))
        if check_mac and self.k_recv is not None and "mac" in msg:
            body = {k: v for k, v in msg.items() if k != "mac"}
            want = b64(hmac256(self.k_recv, canonical(body)))
            assert hmac.compare_digest(want, msg["mac"]), f"bad MAC from the ledger: {msg}"
            assert msg["n"] > self.received_n, f"the ledger's counter went back: {msg}"
            self.received_n = msg["n"]
        return msg

    def recv_kind(self, kind, timeout=None):
        """Messages until one of kind (others are returned too, in order)."""
        seen = []
        while True:
            m = self.recv(timeout)
            seen.append(m)
            if m["kind"] == kind:
                return m, seen

    def handshake(self, last_command_seq=0, check_proof=True):
        """hello -> challenge -> auth -> welcome; returns the welcome, or
        the error the ledger answered with (then it closes)."""
        if self.ws is None:
            self.connect()
        nn = b64(os.urandom(32))
        self.send_raw(canonical({"v": 1, "kind": "hello", "node": self.node, "nonce": nn}).decode())
        ch = json.loads(self.recv_raw())
        assert ch["kind"] == "challenge", ch
        ln = ch["nonce"]
        if check_proof:
            assert hmac.compare_digest(unb64(ch["proof"]), self.derive("ledger-proof", nn, ln)), \
                "the ledger's proof is wrong"
        self.k_send = self.derive("node-to-ledger", nn, ln)
        self.k_recv = self.derive("ledger-to-node", nn, ln)
        self.send("auth", proof=b64(self.derive("node-proof", nn, ln)), last_command_seq=last_command_seq)
        return self.recv(check_mac=False)

    def event(self, kind, seq=None, at=None, **fields):
        if seq is None:
            self.event_seq += 1
            seq = self.event_seq
        return self.send(kind, seq=seq, at=int(time.time()) if at is None else at, **fields)

    def ack(self, seq, result="applied", **fields):
        return self.send("command-ack", seq=seq, result=result, **fields)

    def expect_error(self, code, timeout=None):
        m = self.recv(timeout)
        assert m["kind"] == "error" and m["code"] == code, m
        return m

    def commands(self, count, timeout=None):
        """The next count commands (skipping acks)."""
        out = []
        while len(out) < count:
            m = self.recv(timeout)
            if "seq" in m and m["kind"] not in ("event-ack", "error"):
                out.append(m)
        return out
