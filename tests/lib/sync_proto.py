"""The sync protocol (docs/sync-protocol.md) in Python, written from the
document alone: canonical JSON, the handshake's proofs and keys, MACs, and
a ledger-side peer that tests drive message by message to inject what a
real ledger never sends (forged, tampered, replayed, reordered, oversized).
The real ledger is build/vps-ledger; this is for fault injection only."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import queue
import ssl
import subprocess
import threading
from pathlib import Path

import websockets

SUBPROTOCOL = "vpsd-sync.1"


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(msg: dict) -> bytes:
    return json.dumps(msg, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def H(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha256).digest()


def derive(key: bytes, label: str, node: str, nn: str, ln: str) -> bytes:
    return H(key, f"vpsd-sync/1 {label}\n{node}\n{nn}\n{ln}".encode())


def make_tls(directory: Path, names=("127.0.0.1", "localhost")):
    """A throwaway CA and a server certificate it signed, for the given
    names (IP or DNS): returns (ca.pem, cert.pem, key.pem)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=vpsd test CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=ledger")
    san = ",".join(("IP:" if n[0].isdigit() else "DNS:") + n for n in names)
    ext = d / "ext.cnf"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class Session:
    """The ledger's side of one established session: builds MAC'd messages
    and checks the node's."""

    def __init__(self, key: bytes, node: str, nn: str, ln: str):
        self.send_key = derive(key, "ledger-to-node", node, nn, ln)
        self.receive_key = derive(key, "node-to-ledger", node, nn, ln)
        self.n = 0

    def build(self, msg: dict, n=None, key=None) -> str:
        msg = dict(msg, v=1)
        if n is None:
            self.n += 1
            n = self.n
        msg["n"] = n
        msg["mac"] = b64u(H(key or self.send_key, canonical(msg)))
        return canonical(msg).decode()

    def check(self, text: str) -> dict:
        msg = json.loads(text)
        mac = msg.pop("mac")
        assert hmac.compare_digest(unb64u(mac), H(self.receive_key, canonical(msg))), f"bad MAC on {msg}"
        return msg


class LedgerPeer:
    """A wss server that speaks the ledger's side for one node at a time.
    Tests call accept() to wait for a connection and the handshake, then
    send commands and read the node's messages synchronously."""

    def __init__(self, workdir: Path, node_id: str, key: bytes = None, prove_with: bytes = None):
        self.node_id = node_id
        self.key = key or os.urandom(32)
        self.prove_with = prove_with  # a wrong key: the ledger cannot prove itself
        self.ca, cert, certkey = make_tls(Path(workdir) / "tls")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, certkey)
        self.last_event_seq = 0
        self.events = []  # stored once each, as a ledger would
        self.connections = queue.Queue()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def key_file(self, path: Path) -> Path:
        path.write_text(b64u(self.key) + "\n")
        os.chmod(path, 0o600)
        return path

    @property
    def url(self):
        return f"wss://127.0.0.1:{self.port}/sync"

    def _run(self, started):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self._handler, "127.0.0.1", 0, ssl=self.ctx,
                                                 subprotocols=[SUBPROTOCOL], max_size=None)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            await asyncio.Future()

        try:
            self.loop.run_until_complete(main())
        except RuntimeError:
            pass  # stopped

    async def _handler(self, ws, path=None):
        conn = Connection(self, ws)
        try:
            await conn.handshake()
        except Exception as e:  # a refused handshake is what some tests want
            conn.failure = e
            self.connections.put(conn)
            return
        self.connections.put(conn)
        await conn.pump()

    def accept(self, timeout=30) -> "Connection":
        c = self.connections.get(timeout=timeout)
        if getattr(c, "failure", None):
            raise c.failure
        return c

    def accept_failure(self, timeout=30):
        c = self.connections.get(timeout=timeout)
        return getattr(c, "failure", None), c

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Connection:
    def __init__(self, peer: LedgerPeer, ws):
        self.peer = peer
        self.ws = ws
        self.inbox = queue.Queue()
        self.closed = threading.Event()
        self.session = None
        self.auth = None
        self.history = []  # every message of the node read so far

    async def handshake(self):
        hello = json.loads(await self.ws.recv())
        assert hello["kind"] == "hello" and hello["node"] == self.peer.node_id, hello
        ln = b64u(os.urandom(32))
        nn = hello["nonce"]
        proof = derive(self.peer.prove_with or self.peer.key, "ledger-proof", hello["node"], nn, ln)
        await self.ws.send(canonical({"v": 1, "kind": "challenge", "nonce": ln, "proof": b64u(proof)}).decode())
        self.session = Session(self.peer.key, hello["node"], nn, ln)
        text = await asyncio.wait_for(self.ws.recv(), 10)
        auth = self.session.check(text)
        assert auth["kind"] == "auth", auth
        want = derive(self.peer.key, "node-proof", hello["node"], nn, ln)
        assert hmac.compare_digest(unb64u(auth["proof"]), want)
        self.auth = auth
        await self.ws.send(self.session.build({"kind": "welcome", "last_event_seq": self.peer.last_event_seq}))

    async def pump(self):
        try:
            async for text in self.ws:
                self.inbox.put(text)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    # --- for tests (any thread) ---

    def send_text(self, text):
        asyncio.run_coroutine_threadsafe(self.ws.send(text), self.peer.loop).result(10)

    def send_texts(self, texts):
        """Many messages back to back, in one go on the peer's loop."""
        async def all_of():
            for t in texts:
                await self.ws.send(t)
        asyncio.run_coroutine_threadsafe(all_of(), self.peer.loop).result(600)

    def send(self, msg: dict, **kw):
        text = self.session.build(msg, **kw)
        self.send_text(text)
        return text

    def recv(self, timeout=30) -> dict:
        """The node's next message, its MAC checked."""
        return self.session.check(self.inbox.get(timeout=timeout))

    def recv_until(self, pred, timeout=30, ack_events=True, seen_before=False):
        """Reads until pred(msg); stores (and acks) events on the way. With
        seen_before, a message read earlier counts too."""
        import time
        if seen_before:
            for m in self.history:
                if pred(m):
                    return m
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not received within {timeout} s; got {seen}")
            try:
                m = self.recv(left)
            except queue.Empty:
                raise AssertionError(f"not received within {timeout} s; got {seen}")
            seen.append(m)
            self.history.append(m)
            if ack_events and "at" in m and "seq" in m:
                if m["seq"] > self.peer.last_event_seq:
                    self.peer.events.append(m)
                    self.peer.last_event_seq = m["seq"]
                self.send({"kind": "event-ack", "seq": m["seq"]})
            if pred(m):
                return m

    def close(self):
        asyncio.run_coroutine_threadsafe(self.ws.close(), self.peer.loop).result(10)
        self.closed.wait(10)
