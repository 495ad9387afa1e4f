"""Network namespaces for netfilter/'s integration test and benchmark
(stdlib only). Everything lives in namespaces this module creates, named
nft<pid>-<role>: nothing is sent outside them, and nftables is per
namespace, so the host's own tables are never touched.

A Lab is one "node" namespace holding a bridge (br0, which stands for the
node itself) and, for each guest, a veth port on the bridge whose far end
(eth0) lives in a namespace of its own; plus optional unmanaged ports
(another host on the same bridge). ``Lab.driver`` runs build/tests/nf_driver
in the node namespace. ``Lab.close()`` removes every namespace and process,
and is safe to call twice; use it in a finally."""

import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "build" / "tests" / "nf_driver"
AGENT = REPO / "tests" / "integration" / "netns_agent.py"
PYTHON = "/usr/bin/python3"
PREFIX = "nft"


def sh(*cmd, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def sweep_stale():
    """Removes namespaces an earlier run of this module left behind (its
    process is gone): ours are named nft<pid>-..."""
    for line in sh("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX) or "-" not in name:
            continue
        pid = name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            sh("ip", "netns", "del", name, check=False)


class Netns:
    def __init__(self, role):
        self.name = f"{PREFIX}{os.getpid()}-{role}"
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "netns", "add", self.name)
        # No IPv6 on interfaces made here unless asked: a quiet namespace
        # sends nothing by itself, so counters and sniffers see only the
        # test's frames.
        self.run("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        self.ip("link", "set", "lo", "up")

    def run(self, *cmd, check=True, **kw):
        return sh("ip", "netns", "exec", self.name, *cmd, check=check, **kw)

    def ip(self, *args, check=True):
        return sh("ip", "-n", self.name, *args, check=check)

    def popen(self, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, cmd)], **kw)

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


class LineProcess:
    """A process speaking JSON lines on stdin/stdout."""

    def __init__(self, netns, *cmd):
        self.proc = netns.popen(*cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{req.get('op') or req.get('cmd')}: the helper exited ({self.proc.poll()})")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()


class Driver(LineProcess):
    """build/tests/nf_driver: one struct nf in the node namespace."""

    def __init__(self, netns, table="vpsd"):
        super().__init__(netns, DRIVER, table)

    def ok(self, op, **kw):
        r = self.call(op=op, **kw)
        if not r["ok"]:
            raise AssertionError(f"nf_driver {op}: {r['error']}")
        return r


class Guest:
    def __init__(self, name, port, mac, ipv4=(), ipv6=(), suspended=False, speed=0):
        self.name, self.port, self.mac = name, port, mac
        self.ipv4, self.ipv6 = list(ipv4), list(ipv6)
        self.suspended, self.speed = suspended, speed
        self.netns = None
        self.agent = None

    def spec(self, **override):
        d = {"ifname": self.port, "mac": self.mac, "ipv4": self.ipv4, "ipv6": self.ipv6,
             "suspended": self.suspended, "speed": self.speed}
        d.update(override)
        return d


class Lab:
    def __init__(self, guests, others=(), node_ipv4="10.77.0.1/24", node_mac="02:00:00:00:00:fe",
                 kernel_ipv4=(), agents=True):
        """guests: Guest objects, each given a port and a namespace; others:
        (name, mac) of unmanaged hosts on the bridge; kernel_ipv4: names of
        guests whose namespace gets its IPv4 address configured (for real
        sockets, e.g. iperf3)."""
        sweep_stale()
        self.spaces, self.processes = [], []
        self.guests = {g.name: g for g in guests}
        self.others = {}
        try:
            self.node = self._netns("node")
            # br_netfilter (built in here) would hand bridged frames to
            # iptables and trim them to their IP length on the way, cutting
            # the marks the tests append; this namespace has no iptables.
            self.node.run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0",
                          "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0",
                          check=False)
            self.node.ip("link", "add", "br0", "address", node_mac, "type", "bridge", "mcast_snooping", "0")
            self.node.ip("addr", "add", node_ipv4, "dev", "br0")
            for g in guests:
                g.netns = self._port(g.name, g.port, g.mac)
                if g.name in kernel_ipv4:
                    g.netns.ip("addr", "add", f"{g.ipv4[0]}/24", "dev", "eth0")
            for name, mac in others:
                self.others[name] = self._port(name, f"up{name}"[:15], mac)
            self.node.ip("link", "set", "br0", "up")
            self.node.agent = self._agent(self.node) if agents else None
            for g in guests:
                g.agent = self._agent(g.netns) if agents else None
            for ns in self.others.values():
                ns.agent = self._agent(ns) if agents else None
            self.driver = Driver(self.node)
            self.processes.append(self.driver)
        except BaseException:
            self.close()
            raise

    def _netns(self, role):
        ns = Netns(role)
        self.spaces.append(ns)
        return ns

    def _port(self, role, port, mac):
        ns = self._netns(role)
        self.node.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        self.node.ip("link", "set", port, "master", "br0", "up")
        ns.ip("link", "set", "eth0", "address", mac, "up")
        return ns

    def _agent(self, ns):
        agent = LineProcess(ns, PYTHON, AGENT)
        self.processes.append(agent)
        return agent

    def close(self):
        for p in getattr(self, "processes", []):
            p.close()
        self.processes = []
        for ns in getattr(self, "spaces", []):
            ns.delete()
        self.spaces = []

    # ------------------------------------------------------------ traffic

    def capture(self, receivers, send, settle=0.3):
        """Starts a capture on each receiver (an object with .agent: a Guest,
        the node or an unmanaged host's namespace), runs send(), waits
        settle seconds and returns {receiver: [frame bytes, ...]}. The
        node's receiver captures on br0 (what reaches the node itself)."""
        ifaces = {id(r): ("br0" if r is self.node else "eth0") for r in receivers}
        for r in receivers:
            assert r.agent.call(cmd="sniff", iface=ifaces[id(r)])["ok"]
        time.sleep(0.05)
        send()
        time.sleep(settle)
        got = {}
        for r in receivers:
            reply = r.agent.call(cmd="collect", iface=ifaces[id(r)])
            assert reply["ok"], reply
            got[id(r)] = [bytes.fromhex(f) for f in reply["frames"]]
        return got

    @staticmethod
    def iperf(client, server, seconds=3):
        """TCP throughput from guest client to guest server (bits/s as
        received; both with their IPv4 configured), the first second left
        out: a port's limit starts with a full bucket."""
        ip = server.ipv4[0]
        proc = server.netns.popen("iperf3", "-s", "-1", "-p", "5201", stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(50):
                r = client.netns.run("iperf3", "-c", ip, "-p", "5201", "-t", seconds, "-O", "1", "-J", check=False,
                                     timeout=seconds + 30)
                out = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
                if r.returncode == 0 and "sum_received" in out.get("end", {}):
                    return out["end"]["sum_received"]["bits_per_second"]
                if "connect" not in out.get("error", "connect"):  # anything but "server not up yet"
                    raise RuntimeError(f"iperf3: {out.get('error')}")
                time.sleep(0.1)
            raise RuntimeError(f"iperf3 failed: {r.stdout[-500:]} {r.stderr}")
        finally:
            proc.kill()
            proc.wait()

    @staticmethod
    def send(sender, frames):
        reply = sender.agent.call(cmd="send", iface="eth0", frames=[bytes(f).hex() for f in frames])
        assert reply["ok"], reply
