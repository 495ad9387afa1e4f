"""Benchmark (make bench; not a test): the node's side of the sync
protocol, vpsd against a ledger-side peer (tests/lib/sync_proto.py) that
sends pre-built, MAC'd commands as fast as the socket takes them.

1. Renew commands for 1,000 services: commands durably applied per second,
   from the first command sent to the ack of the last (an ack goes out only
   after an fsync of the WAL that holds the result). Goal >= 5,000/s. Peer:
   the same renews as single SQLite transactions made durable one by one
   (synchronous=FULL), the naive way, in the same run.
2. The ledger's suspend -> the guest paused (QMP stop answered) and its
   port dropped by the filter, i.e. the command's ack, one guest at a time
   over BENCH_GUESTS (100) running TCG guests: p50/p99. Goal p99 < 50 ms.
   Peer: `virsh suspend` of the same guests (pause only, no filter).
3. Lease expiry -> suspended: every guest's lease set to end at the same
   second; the time from paid_until to the node's `state` event arriving
   at the ledger side. Goal < 1 s.
BENCH_KEEP=1 keeps the folder (logs) in /tmp."""

import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
sys.path.insert(0, str(REPO / "tests" / "lib"))
import libvirt_env  # noqa: E402
import store_rows  # noqa: E402
from sync_proto import LedgerPeer  # noqa: E402

RENEWS = int(os.environ.get("BENCH_RENEWS", 1000))
GUESTS = int(os.environ.get("BENCH_GUESTS", 100))
NODE_ID = "bench-node"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, (len(values) * p + 99) // 100 - 1))]


class Node:
    def __init__(self, root, peer, bridge):
        self.root = root
        self.sock = root / "control.sock"
        self.conf = root / "vpsd.conf"
        self.db = root / "state" / "vpsd.db"
        key = peer.key_file(root / "ledger.key")
        self.conf.write_text(
            f"state_dir = {root}/state\ncontrol_socket = {self.sock}\nbridge = {bridge}\n"
            f"guest_run_dir = {root}/guests\nhypervisor = tcg\nkvm_device = {root}/none\n"
            f"nft_table = vpsdsync{os.getpid()}\nledger_url = {peer.url}\nledger_ca_file = {peer.ca}\n"
            f"ledger_key_file = {key}\nledger_node_id = {NODE_ID}\nlog_level = warn\n")
        self.log = open(root / "vpsd.log", "ab")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([str(BUILD / "vpsd"), "-c", str(self.conf)], stdout=self.log, stderr=self.log)
        for _ in range(600):
            if self.ctl("status", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("vpsd did not start; see " + str(self.root / "vpsd.log"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(120)

    def ctl(self, *args, check=True):
        return subprocess.run([str(BUILD / "vpsctl"), "--socket", str(self.sock), *args], capture_output=True,
                              text=True, check=check, timeout=600)


def insert_services(db, n, paid_until):
    uuids = [str(uuid.uuid4()) for _ in range(n)]
    with sqlite3.connect(db) as d:
        for i, u in enumerate(uuids):
            store_rows.insert_service(d, u, "bench", "stopped", hostname=f"r{i}", paid_until=paid_until,
                                      mac="52:54:01:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255))
    return uuids


def bench_renews(node, peer, conn):
    """Section 1: 1,000 renews, and the naive durable SQLite peer."""
    node.stop()
    until = int(time.time()) + 30 * 86400
    uuids = insert_services(node.db, RENEWS, until)
    node.start()
    conn = peer.accept(60)
    base = conn.auth["last_command_seq"]
    texts = [conn.session.build({"kind": "renew", "seq": base + i + 1, "service": u, "paid_until": until + 86400})
             for i, u in enumerate(uuids)]
    t0 = time.monotonic()
    conn.send_texts(texts)
    conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == base + RENEWS, timeout=600,
                    ack_events=False)
    vpsd_rate = RENEWS / (time.monotonic() - t0)
    with sqlite3.connect(node.db) as d:
        done = d.execute("SELECT count(*) FROM command_journal WHERE kind = 'renew' AND state = 'applied'").fetchone()[0]
    assert done == RENEWS, done

    # Peer: each renew its own durable transaction, as a straightforward
    # journal would do it, on a copy of the same table.
    copy = node.root / "peer.db"
    with sqlite3.connect(node.db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    d = sqlite3.connect(copy, isolation_level=None)
    d.execute("PRAGMA journal_mode = WAL")
    d.execute("PRAGMA synchronous = FULL")
    t0 = time.monotonic()
    for i, u in enumerate(uuids):
        d.execute("BEGIN IMMEDIATE")
        d.execute("INSERT INTO command_journal (seq, kind, service_uuid, body, state, received_at) "
                  "VALUES (?, 'renew', ?, ?, 'applied', 0)", (10 ** 9 + i, u, texts[i]))
        d.execute("UPDATE services SET paid_until = paid_until + 1 WHERE uuid = ?", (u,))
        d.execute("COMMIT")
    peer_rate = RENEWS / (time.monotonic() - t0)
    d.close()
    return conn, vpsd_rate, peer_rate


def main():
    # A timeout's SIGTERM still cleans up (the guests, the bridge, the table).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    subprocess.run(["bash", str(REPO / "tests/guest/build-guest.sh"), str(BUILD / "guest")], check=True,
                   stdout=subprocess.DEVNULL)
    handle = libvirt_env.ensure_libvirt()
    root = Path(tempfile.mkdtemp(prefix="vpsd-bench-sync-", dir="/tmp"))
    os.chmod(root, 0o755)
    bridge = "vpsbrs%d" % (os.getpid() % 10000)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    peer = LedgerPeer(root / "peer", NODE_ID)
    node = Node(root, peer, bridge)
    guests = []
    try:
        node.start()
        conn = peer.accept(60)
        conn, vpsd_rate, peer_rate = bench_renews(node, peer, conn)
        print(f"renew commands, {RENEWS} services: vpsd {vpsd_rate:,.0f}/s durably applied and acked; "
              f"peer (one durable SQLite transaction each) {peer_rate:,.0f}/s; ratio {vpsd_rate / peer_rate:.2f}; "
              f"goal >= 5,000/s: {'met' if vpsd_rate >= 5000 else 'not met'}", flush=True)

        if not GUESTS:
            return
        # Guests for sections 2 and 3, provisioned through the protocol.
        node.ctl("template", "import", "tiny", str(BUILD / "guest" / "guest.qcow2"))
        seq = conn.auth["last_command_seq"] + RENEWS
        far = int(time.time()) + 86400
        for i in range(GUESTS):
            u = str(uuid.uuid4())
            guests.append(u)
            spec = {"uuid": u, "account_id": "bench", "hostname": f"g{i}", "template": "tiny",
                    "plan": {"vcpus": 1, "memory_mib": 128, "disk_gib": 1, "port_speed_mbit": 100,
                             "traffic_gib": None},
                    "addresses": [{"address": f"10.{99 + i // 250}.{i % 250}.10", "prefix": 24,
                                   "gateway": f"10.{99 + i // 250}.{i % 250}.1"}],
                    "ssh_keys": [], "paid_until": far}
            seq += 1
            conn.send({"kind": "provision", "seq": seq, "service": u, "spec": spec})
        conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == seq, timeout=3600)
        # Measured once every guest has booted and gone idle: 100 TCG
        # guests booting at once take both cores, and every QMP answer with
        # them (vpsd's and virsh's alike).
        for u in guests:
            try:
                libvirt_env.wait_console(str(root / "guests" / u / "console.log"), ["VPSD-GUEST-READY"],
                                         timeout=900)
            except libvirt_env.LibvirtEnvError:
                print(f"guest {u} printed no ready marker within 15 min; measuring anyway", flush=True)
        time.sleep(10)

        lat = []
        for u in guests:
            seq += 1
            t0 = time.monotonic()
            conn.send({"kind": "suspend", "seq": seq, "service": u, "reason": "unpaid"})
            ack = conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == seq, timeout=120)
            lat.append((time.monotonic() - t0) * 1000)
            assert ack["result"] == "applied", ack
        for u in guests:
            seq += 1
            conn.send({"kind": "unsuspend", "seq": seq, "service": u})
        conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == seq, timeout=600)
        peer_lat = []
        for u in guests:
            t0 = time.monotonic()
            subprocess.run(["virsh", "-q", "suspend", f"vpsd-{u}"], check=True, capture_output=True)
            peer_lat.append((time.monotonic() - t0) * 1000)
            subprocess.run(["virsh", "-q", "resume", f"vpsd-{u}"], check=True, capture_output=True)
        p99, peer_p99 = pct(lat, 99), pct(peer_lat, 99)
        print(f"ledger suspend -> paused and filtered, {GUESTS} guests: p50 {statistics.median(lat):.1f} ms, "
              f"p99 {p99:.1f} ms; peer `virsh suspend` (pause only) p50 {statistics.median(peer_lat):.1f} ms, "
              f"p99 {peer_p99:.1f} ms; ratio p99 {p99 / peer_p99:.2f}; goal p99 < 50 ms: "
              f"{'met' if p99 < 50 else 'not met'}", flush=True)

        # Section 3: every lease ends at the same second.
        end = int(time.time()) + 5
        for u in guests:
            seq += 1
            conn.send({"kind": "renew", "seq": seq, "service": u, "paid_until": end})
        conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == seq, timeout=120)
        seen = {}
        deadline = time.monotonic() + 120
        while len(seen) < len(guests) and time.monotonic() < deadline:
            m = conn.recv(timeout=max(1, deadline - time.monotonic()))
            if "at" in m and "seq" in m:
                conn.send({"kind": "event-ack", "seq": m["seq"]})
            if m["kind"] == "state" and m["state"] == "suspended" and m["service"] in guests:
                seen.setdefault(m["service"], time.time() - end)
        delays = sorted(seen.values())
        print(f"lease expiry -> suspended, {len(guests)} leases ending at one second: "
              f"{len(seen)} suspended; delay p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"max {delays[-1] * 1000:.0f} ms; goal < 1 s: {'met' if delays[-1] < 1 else 'not met'}", flush=True)
    finally:
        for u in guests:
            libvirt_env.destroy_and_undefine(f"vpsd-{u}")
        if node.proc and node.proc.poll() is None:
            node.stop()
        subprocess.run(["nft", "delete", "table", "bridge", f"vpsdsync{os.getpid()}"], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        peer.close()
        handle.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
