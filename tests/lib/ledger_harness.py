"""The real reference ledger (build/vps-ledger serve) for tests: its TLS
pair, API token and database in a folder, its clock in a file the test
moves (or keeps on the wall clock), and a small JSON client of its API."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import sync_proto

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "build" / "vps-ledger"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ledger:
    def __init__(self, workdir: Path, address="127.0.0.1", netns=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.netns = netns
        self.port = free_port()
        self.db = self.dir / "ledger.db"
        self.ca, self.cert, self.key = sync_proto.make_tls(self.dir / "tls", names=(address, "localhost"))
        self.token = self.dir / "api-token"
        self.token.write_text(os.urandom(16).hex() + "\n")
        os.chmod(self.token, 0o600)
        self.now_file = self.dir / "now"
        self.set_now(int(time.time()))
        self._follow = None
        self.proc = None
        self.log_path = self.dir / "ledger.log"
        self.ctx = ssl.create_default_context(cafile=str(self.ca))

    # --- the clock ---

    def set_now(self, t):
        self.stop_following()
        tmp = self.now_file.with_suffix(".tmp")
        tmp.write_text(f"{int(t)}\n")
        tmp.replace(self.now_file)

    def follow_wall_clock(self, offset=0):
        """The ledger's clock runs with the wall clock (+ offset)."""
        self.stop_following()
        stop = threading.Event()

        def run():
            while not stop.is_set():
                tmp = self.now_file.with_suffix(".tmp")
                tmp.write_text(f"{int(time.time()) + offset}\n")
                tmp.replace(self.now_file)
                stop.wait(0.2)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._follow = (stop, t)

    def stop_following(self):
        if getattr(self, "_follow", None):
            self._follow[0].set()
            self._follow[1].join(5)
            self._follow = None

    # --- the process ---

    def cli(self, *args, check=True):
        r = subprocess.run([str(LEDGER), "--db", str(self.db), *args], capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"vps-ledger {' '.join(args)}: {r.stderr}")
        return r

    def public_key(self, path: Path):
        path.write_text(self.cli("key", "public").stdout)
        return path

    def start(self):
        argv = [str(LEDGER), "--db", str(self.db), "serve", "--listen", f"{self.address}:{self.port}",
                "--cert", str(self.cert), "--key", str(self.key), "--api-token-file", str(self.token),
                "--tick-interval", "1", "--now-file", str(self.now_file)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vps-ledger exited {self.proc.returncode}: {self.log_text()}")
            try:
                self.api("GET", "plans")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise AssertionError(f"vps-ledger not serving: {self.log_text()}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("vps-ledger did not stop on SIGTERM")
        return self.proc.returncode if self.proc else None

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def sync_url(self):
        return f"wss://{self.address}:{self.port}/sync"

    # --- the API ---

    def api(self, method, path, body=None, expect=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://{self.address}:{self.port}/api/v1/{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token.read_text().strip()}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        out = json.loads(text) if text else None
        if expect is None and status >= 300:
            raise AssertionError(f"{method} {path}: {status} {out}")
        if expect is not None:
            assert status == expect, (status, out)
        return out
