"""vpsd-edge without vpsd: a stand-in broker that speaks the edge's side of
the socketpair (common/edge_proto.h) and answers every ticket the way a
test tells it, by connecting a unix socket target and passing the fd. The
edge under test is the real binary, as root dropping to its user."""

import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

READY, OPEN, GRANT, REFUSE, CLOSE, CLOSED = range(1, 7)
KINDS = ("vnc", "serial")
HEADER = struct.Struct("<BBHQHH")


def encode(mtype, session=0, kind=0, port=0, address=b"", ticket=b""):
    return HEADER.pack(mtype, kind, port, session, len(address), len(ticket)) + address + ticket


def decode(data):
    mtype, kind, port, session, alen, tlen = HEADER.unpack_from(data)
    body = data[HEADER.size:]
    assert len(body) == alen + tlen, "edge sent a message whose lengths do not add up"
    return {"type": mtype, "kind": KINDS[kind], "port": port, "session": session,
            "address": body[:alen].decode(), "ticket": body[alen:].decode()}


def make_cert(folder: Path):
    """A self-signed pair for localhost, as the tests' TLS identity."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Edge:
    """The edge binary and the broker thread; answer(msg) decides: a path
    to connect (granted) or None (refused)."""

    def __init__(self, binary, web_dir, folder: Path, answer, extra=(), env=None):
        self.folder = folder
        self.answer = answer
        self.opens = []
        self.closed = set()
        self.granted = {}
        self.log_path = folder / "edge.log"
        cert, key = make_cert(folder)
        self.port = free_port()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        os.set_inheritable(theirs.fileno(), True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "--link-fd", str(theirs.fileno()), "--listen", "127.0.0.1", "--port", str(self.port),
             "--cert", str(cert), "--key", str(key), "--web-dir", str(web_dir), *extra],
            pass_fds=(theirs.fileno(),), stdout=self.log, stderr=self.log, env=env)
        theirs.close()
        msg = decode(self.sock.recv(4096))
        assert msg["type"] == READY and msg["port"] == self.port, msg
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            msg = decode(data)
            if msg["type"] == OPEN:
                self.opens.append(msg)
                target = self.answer(msg)
                if target is None:
                    self.sock.send(encode(REFUSE, msg["session"]))
                    continue
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(str(target))
                self.granted[msg["session"]] = c
                socket.send_fds(self.sock, [encode(GRANT, msg["session"])], [c.fileno()])
            elif msg["type"] == CLOSED:
                self.closed.add(msg["session"])
                c = self.granted.pop(msg["session"], None)
                if c:
                    c.close()

    def close_session(self, session):
        """What vpsd does to end a session: CLOSE, and its copy shut down."""
        c = self.granted.get(session)
        if c:
            c.shutdown(socket.SHUT_RDWR)
        self.sock.send(encode(CLOSE, session))

    def url(self, kind, ticket="t"):
        return f"wss://127.0.0.1:{self.port}/console/{kind}?ticket={ticket}"

    def origin(self):
        return f"https://127.0.0.1:{self.port}"

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        self.log.close()
        return self.proc.returncode


class UnixTarget:
    """A unix socket server standing for a guest's console socket: a thread
    a connection, each running serve(c) until it returns or the peer goes."""

    def __init__(self, path: Path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1024)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.serve(c)
        except OSError:
            pass
        finally:
            c.close()

    def serve(self, c):
        raise NotImplementedError

    def close(self):
        self.server.close()


class EchoTarget(UnixTarget):
    """Echoes what it is sent (with greeting, says that first)."""

    def __init__(self, path: Path, greeting=b""):
        self.greeting = greeting
        super().__init__(path)

    def serve(self, c):
        if self.greeting:
            c.sendall(self.greeting)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
