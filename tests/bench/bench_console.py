"""Benchmark (make bench; not a test): the web console's proxy, vpsd-edge,
against websockify (Debian's, 0.10) in the same run, with the same client
(build/bench/ws_client, C and OpenSSL), the same target (build/bench/
echo_target, a C echo server on unix sockets) and the same TLS pair.

vpsd-edge runs as vpsd runs it: a real vpsd with console_listen, a test
ledger's key, and service rows whose serial.sock is the echo server, so
every session costs a ticket check and an fd passed (as test_console.py
does). websockify proxies to the echo server's first socket
(--unix-target), in its default mode: a process forked per connection.

Measured, each proxy in turn:
  - one session's throughput: frames of 64 KiB (bulk, as a screen update)
    and of 1 KiB (where a frame's own cost shows) sent back to back, at
    most 1 MiB unanswered, the echoed payload counted; MB/s = 10^6
    bytes/s; median of 3 runs of 10 s, with the CPU of the proxy (all its
    processes), the client and the echo server beside it, and MB/s per
    core of the proxy's CPU;
  - round trip of a 32-byte frame, one at a time: p50 and p99 over 5000,
    median of 3 runs;
  - 1,000 idle sessions held open (each echoed one byte first): the
    proxy's resident memory (all its processes; PSS too, which shares out
    what forked processes share) and CPU time, to open them and over 10 s
    of idleness. One websockify holds about 510 (its handlers select() on
    fds it numbers past 1023), so it serves these from 3 servers.
The throughput and round trips are also measured with no proxy at all:
build/bench/ws_echo, TLS and the websocket in one C process that echoes
itself (no console hop, no second process, no ticket). Every proxy does
at least that, so its figures are the best any proxy could show here:
when they fall short of a goal, the goal is beyond this machine and
client, not just beyond vpsd-edge.
Prints both and the ratios against the goals: >= 10x websockify's
throughput, p99 <= 1/5 of websockify's, 1,000 sessions under 64 MiB RSS.
BENCH_RUNS and BENCH_SECONDS shorten a trial; BENCH_KEEP=1 keeps the
folder (logs) in /tmp."""

import json
import os
import socket
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
sys.path.insert(0, str(REPO / "tests" / "lib"))
import console_client  # noqa: E402
import edge_harness  # noqa: E402
import store_rows  # noqa: E402

CLIENT = BUILD / "bench" / "ws_client"
ECHO = BUILD / "bench" / "echo_target"
FLOOR = BUILD / "bench" / "ws_echo"
SESSIONS, PER_SERVICE = 1000, 64
SERVICES = -(-SESSIONS // PER_SERVICE)
RUNS = int(os.environ.get("BENCH_RUNS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 10))
FRAMES = (65536, 1024)  # bulk (a screen update), and a small frame's own cost
# websockify's forked handlers inherit fds from their parent, and select()
# refuses a number above 1023 ("filedescriptor out of range"): one
# websockify holds about 510 sessions. The idle measurement runs it as this
# many servers, a share each.
WEBSOCKIFY_SERVERS = 3
ROUND_TRIPS, SMALL = 5000, 32
ACCOUNT = "bench"
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------- processes
def process_children():
    """Every process's children, from one pass over /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid, children=None):
    """pid and every process under it."""
    children = process_children() if children is None else children
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def memory_kib(pids):
    """(RSS, PSS) summed over pids, KiB."""
    rss = pss = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


class Cpu:
    """CPU seconds of process trees over a stretch of wall time, sampled
    four times a second: websockify's handlers are processes that end with
    their session, taking their CPU time with them. A process first seen
    after the start counts whole."""

    def __init__(self, **trees):
        self.trees = {k: p if isinstance(p, (list, tuple)) else [p] for k, p in trees.items()}
        self.first, self.last = {}, {}
        self.sample(initial=True)
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self, initial=False):
        children = process_children()
        for k, roots in self.trees.items():
            for root in roots:
                for p in descendants(root, children):
                    c = cpu_seconds([p])
                    if (k, p) not in self.first:
                        self.first[(k, p)] = c if initial else 0.0
                    self.last[(k, p)] = c

    def run(self):
        while not self.done.wait(0.25):
            self.sample()

    def stop(self):
        """CPU seconds of each tree, and the wall seconds."""
        self.done.set()
        self.thread.join()
        self.sample()
        wall = time.monotonic() - self.t0
        used = {k: sum(self.last[kp] - self.first[kp] for kp in self.last if kp[0] == k) for k in self.trees}
        return used, wall

    def percent(self):
        used, wall = self.stop()
        return {k: 100 * v / wall for k, v in used.items()}


# --------------------------------------------------------- the two proxies
def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proxy:
    name = ""
    port = 0
    pid = 0  # the process whose tree is the proxy

    def path(self):
        """The websocket path of one session."""
        raise NotImplementedError

    def origin(self):
        return f"https://127.0.0.1:{self.port}"


class Edge(Proxy):
    name = "vpsd-edge"

    def __init__(self, root, cert, key):
        self.root = root
        self.ledger = console_client.Ledger()
        self.port = edge_harness.free_port()
        self.services = [str(uuid.uuid4()) for _ in range(SERVICES)]
        self.next = 0
        conf = root / "vpsd.conf"
        self.control = root / "run" / "control.sock"
        settings = {
            "state_dir": root / "state", "control_socket": self.control, "kvm_device": root / "no-kvm",
            "nft_table": f"vpsdbenchc{os.getpid()}", "guest_run_dir": root / "guests",
            "console_listen": f"127.0.0.1:{self.port}", "console_cert": cert, "console_key": key,
            "ledger_public_key": self.ledger.public_pem(root / "ledger.pub"),
            "console_max_sessions": SESSIONS + 100, "console_max_sessions_per_service": PER_SERVICE,
            "console_idle_timeout": 0, "log_level": "warn",
            # 1,000 sessions come from one address here: no limit on that.
            "console_max_connections_per_address": 0,
        }
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.log_path = root / "vpsd.log"
        self.log = open(self.log_path, "ab")
        self.vpsd = subprocess.Popen([str(BUILD / "vpsd"), "-c", str(conf)], stdout=self.log, stderr=self.log)
        self.pid = self.wait_edge()
        # Service rows as provision leaves them, put in after reconcile.
        with sqlite3.connect(root / "state" / "vpsd.db") as db:
            for i, u in enumerate(self.services):
                store_rows.insert_service(db, u, ACCOUNT, "running", hostname=f"bench{i}")
        for u in self.services:
            (root / "guests" / u).mkdir(parents=True)

    def wait_edge(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.vpsd.poll() is not None:
                raise SystemExit(f"vpsd exited:\n{self.log_path.read_text()}")
            out = subprocess.run(["pgrep", "-P", str(self.vpsd.pid), "-x", "vpsd-edge"], capture_output=True,
                                 text=True).stdout.split()
            if out and self.control.exists() and self.listening():
                return int(out[0])
            time.sleep(0.1)
        raise SystemExit(f"vpsd-edge not up within 30 s:\n{self.log_path.read_text()}")

    def listening(self):
        return listening(self.port)

    def sockets(self):
        return [self.root / "guests" / u / "serial.sock" for u in self.services]

    def path(self):
        """Services in turn, so that 1,000 sessions stay within each one's limit."""
        u = self.services[self.next % len(self.services)]
        self.next += 1
        return f"/console/serial?ticket={self.ledger.ticket(u, ACCOUNT, kind='serial')}"

    def stop(self):
        self.vpsd.send_signal(signal.SIGTERM)
        try:
            self.vpsd.wait(30)
        except subprocess.TimeoutExpired:
            self.vpsd.kill()
            self.vpsd.wait()
        self.log.close()


class Floor(Proxy):
    """ws_echo: TLS and websocket in one C process that echoes itself; no
    proxy does less, so no proxy is faster on this machine."""
    name = "no proxy"

    def __init__(self, cert, key):
        self.port = edge_harness.free_port()
        self.proc = subprocess.Popen([str(FLOOR), str(self.port), str(cert), str(key)], stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("ws_echo did not start")

    def path(self):
        return "/"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Websockify(Proxy):
    name = "websockify"

    def __init__(self, root, cert, key, target):
        self.port = edge_harness.free_port()
        self.log = open(root / "websockify.log", "ab")
        self.proc = subprocess.Popen(["websockify", f"--cert={cert}", f"--key={key}", f"127.0.0.1:{self.port}",
                                      f"--unix-target={target}"], stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while not listening(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("websockify did not start")
            time.sleep(0.1)

    def path(self):
        return "/"

    def stop(self):
        # Its forked handlers are in its process group: they go with it.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


# --------------------------------------------------------- measurements
def progress(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def client(*args, timeout=120):
    r = subprocess.run([str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"ws_client {' '.join(map(str, args[:2]))} failed: {r.stderr}")
    return json.loads(r.stdout)


def throughput(proxy, echo_pid, frame):
    cpu = Cpu(proxy=proxy.pid, echo=echo_pid)
    r = client("throughput", proxy.port, proxy.path(), proxy.origin(), SECONDS, frame, timeout=SECONDS + 60)
    pct = cpu.percent()
    return {"mb_s": r["bytes"] / r["seconds"] / 1e6, "proxy_cpu": pct["proxy"], "echo_cpu": pct["echo"],
            "client_cpu": 100 * r["cpu_seconds"] / r["seconds"]}


def round_trip(proxy):
    return client("latency", proxy.port, proxy.path(), proxy.origin(), ROUND_TRIPS, SMALL)


def idle_sessions(name, groups, roots, root, extra=None):
    """Opens SESSIONS over groups [(port, paths, count)], one client each,
    all at once, and holds them; memory and CPU of the trees under roots."""
    before_rss, _ = memory_kib([p for r in roots for p in descendants(r)])
    trees = {"proxy": roots, **(extra or {})}
    opening = Cpu(**trees)
    t0 = time.monotonic()
    holds = []
    for i, (port, paths, count) in enumerate(groups):
        f = root / f"paths-{name}-{i}"
        f.write_text("".join(p + "\n" for p in paths))
        holds.append(subprocess.Popen([str(CLIENT), "hold", str(port), str(f), f"https://127.0.0.1:{port}",
                                       str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        opened, failures = 0, []
        for h in holds:
            line = h.stdout.readline()
            if not line.startswith("open "):
                raise SystemExit(f"ws_client hold: {line!r} {h.stderr.read()}")
            opened += int(line.split()[1])
        open_seconds = time.monotonic() - t0
        open_cpu, _ = opening.stop()
        time.sleep(2)
        pids = [p for r in roots for p in descendants(r)]
        rss, pss = memory_kib(pids)
        idle = Cpu(**trees)
        time.sleep(10)
        idle_cpu = idle.percent()
    finally:
        for h in holds:
            h.stdin.close()
        for h in holds:
            h.wait(120)
            err = h.stderr.read().strip()
            if err:
                failures.append(err.splitlines()[0])
    return {"opened": opened, "open_seconds": open_seconds, "open_cpu": open_cpu, "idle_cpu": idle_cpu,
            "rss_mib": rss / 1024, "pss_mib": pss / 1024, "before_rss_mib": before_rss / 1024,
            "processes": len(pids), "failures": failures}


def main():
    for binary in (CLIENT, ECHO, FLOOR, BUILD / "vpsd", BUILD / "vpsd-edge"):
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: run `make bench`")
    root = Path(tempfile.mkdtemp(prefix="vpsd-bench-console-", dir="/tmp"))
    os.chmod(root, 0o755)
    cert, key = edge_harness.make_cert(root)
    edge = echo = floor = None
    servers = []
    results = {"vpsd-edge": {}, "websockify": {}, "no proxy": {}}
    try:
        edge = Edge(root, cert, key)
        echo = subprocess.Popen([str(ECHO), *map(str, edge.sockets())], stdout=subprocess.PIPE, text=True)
        assert echo.stdout.readline().strip() == "ready"
        servers = [Websockify(root, cert, key, edge.sockets()[0]) for _ in range(WEBSOCKIFY_SERVERS)]
        ws = servers[0]
        floor = Floor(cert, key)
        proxies = (edge, ws, floor)

        for p in proxies:  # warm both: first connections, page cache
            client("latency", p.port, p.path(), p.origin(), 100, SMALL)
        for frame in FRAMES:
            runs = {p.name: [] for p in proxies}
            for _ in range(RUNS):
                for p in proxies:
                    runs[p.name].append(throughput(p, echo.pid, frame))
                    progress(f"{p.name} throughput, {frame}-byte frames: {runs[p.name][-1]}")
            for name, rs in runs.items():
                results[name][f"throughput {frame}"] = sorted(rs, key=lambda r: r["mb_s"])[len(rs) // 2]
                results[name][f"throughput {frame} runs"] = [round(r["mb_s"], 1) for r in rs]
        rtts = {p.name: [] for p in proxies}
        for _ in range(RUNS):
            for p in proxies:
                rtts[p.name].append(round_trip(p))
                progress(f"{p.name} round trip {rtts[p.name][-1]}")
        for name, rs in rtts.items():
            results[name]["rtt"] = {k: statistics.median(r[k] for r in rs) for k in ("p50_us", "p99_us", "max_us")}

        time.sleep(2)  # the edge's last sessions closed
        progress(f"vpsd-edge: opening {SESSIONS} sessions")
        results["vpsd-edge"]["idle"] = idle_sessions(
            "vpsd-edge", [(edge.port, [edge.path() for _ in range(SESSIONS)], SESSIONS)], [edge.pid], root,
            extra={"vpsd": edge.vpsd.pid})
        progress(f"vpsd-edge idle sessions {results['vpsd-edge']['idle']}")
        progress(f"websockify: opening {SESSIONS} sessions on {len(servers)} servers")
        share = -(-SESSIONS // len(servers))
        groups = [(w.port, ["/"], min(share, SESSIONS - i * share)) for i, w in enumerate(servers)]
        results["websockify"]["idle"] = idle_sessions("websockify", groups, [w.pid for w in servers], root)
        progress(f"websockify idle sessions {results['websockify']['idle']}")
    finally:
        for thing in (*servers, edge, floor):
            if thing:
                thing.stop()
        if echo:
            echo.terminate()
            echo.wait()
        subprocess.run(["nft", "delete", "table", "bridge", f"vpsdbenchc{os.getpid()}"], capture_output=True)
        if os.environ.get("BENCH_KEEP"):
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results)


def report(results):
    e, w, f = results["vpsd-edge"], results["websockify"], results["no proxy"]
    print(f"web console proxies: vpsd-edge (through a real vpsd, tickets checked) vs websockify "
          f"{websockify_version()} (forking), same C client, same echo target, TLS 1.3, same certificate; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for frame in FRAMES:
        print(f"one session's throughput, {frame}-byte frames echoed, median of {RUNS} x {SECONDS} s "
              f"(MB/s = 10^6 bytes/s; per CPU: MB per second of the proxy's CPU):")
        for name, r in (("vpsd-edge", e), ("websockify", w), ("no proxy", f)):
            t = r[f"throughput {frame}"]
            per_cpu = t["mb_s"] / (t["proxy_cpu"] / 100) if t["proxy_cpu"] else float("inf")
            print(f"  {name:<11} {t['mb_s']:8.1f} MB/s  {per_cpu:7.1f} MB/s per CPU   (runs "
                  f"{r[f'throughput {frame} runs']}; CPU % of a core: proxy {t['proxy_cpu']:.0f}, "
                  f"client {t['client_cpu']:.0f}, echo {t['echo_cpu']:.0f})")
        te, tw = e[f"throughput {frame}"], w[f"throughput {frame}"]
        ratio = te["mb_s"] / tw["mb_s"]
        eff = (te["mb_s"] / te["proxy_cpu"]) / (tw["mb_s"] / tw["proxy_cpu"])
        print(f"  ratio vpsd-edge / websockify: {ratio:.2f}x, per CPU {eff:.2f}x  "
              f"(goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
        floor = f[f"throughput {frame}"]["mb_s"] / tw["mb_s"]
        print(f"  no proxy at all (ws_echo) / websockify: {floor:.2f}x: the most any proxy can reach with this "
              f"client on this machine{'; 10x is beyond it' if floor < 10 else ''}")
    print(f"round trip of a {SMALL}-byte frame, {ROUND_TRIPS} one at a time, median of {RUNS} runs:")
    for name, r in (("vpsd-edge", e), ("websockify", w), ("no proxy", f)):
        t = r["rtt"]
        print(f"  {name:<11} p50 {t['p50_us']:7.1f} us   p99 {t['p99_us']:7.1f} us   max {t['max_us']:8.1f} us")
    ratio = e["rtt"]["p99_us"] / w["rtt"]["p99_us"]
    print(f"  p99 vpsd-edge / websockify: {ratio:.2f}, p50 {e['rtt']['p50_us'] / w['rtt']['p50_us']:.2f}  "
          f"(goal p99 <= 0.20: {'met' if ratio <= 0.2 else 'NOT met'})")
    floor = f["rtt"]["p99_us"] / w["rtt"]["p99_us"]
    print(f"  p99 no proxy at all / websockify: {floor:.2f}: the least any proxy can reach"
          f"{'; 0.20 is below it' if floor > 0.2 else ''}")
    print(f"{SESSIONS:,} idle sessions (each echoed one byte), held 10 s "
          f"(websockify as {WEBSOCKIFY_SERVERS} servers: one holds about 510):")
    for name, r in (("vpsd-edge", e), ("websockify", w)):
        i = r["idle"]
        extra = ""
        if "vpsd" in i["open_cpu"]:
            extra = f" (+ vpsd's ticket checks {i['open_cpu']['vpsd']:.2f} s)"
        print(f"  {name:<11} {i['opened']:,} open in {i['open_seconds']:.1f} s; RSS {i['rss_mib']:7.1f} MiB "
              f"(PSS {i['pss_mib']:.1f}; {i['processes']} process(es); {i['before_rss_mib']:.1f} MiB before); "
              f"CPU to open {i['open_cpu']['proxy']:.2f} s{extra}; idle CPU {i['idle_cpu']['proxy']:.2f} %")
        for f in i["failures"]:
            print(f"              {f}")
    rss = e["idle"]["rss_mib"]
    print(f"  vpsd-edge RSS for {e['idle']['opened']:,} sessions: {rss:.1f} MiB  "
          f"(goal < 64 MiB: {'met' if rss < 64 and e['idle']['opened'] >= SESSIONS else 'NOT met'}); "
          f"websockify / vpsd-edge: RSS {w['idle']['rss_mib'] / rss:.0f}x, PSS {w['idle']['pss_mib'] / rss:.0f}x")


def websockify_version():
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "websockify"], capture_output=True, text=True)
    return out.stdout.strip() or "(version unknown)"


if __name__ == "__main__":
    main()
