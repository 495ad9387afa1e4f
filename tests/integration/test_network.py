"""The guest filter and traffic through vpsd, with a real TCG guest's tap on
a bridge: the guest may send only from its own addresses (a spoof from
inside it is counted at the receiver: none arrive), traffic is counted into
the buckets `vpsctl traffic` reports, port speed follows a live resize, the
table is rebuilt when someone deletes it, and a terminated service's port
leaves it. Classes of bad frames, one by one, are tested against the library
in network namespaces (test_netfilter.py); this is the node wired together.

Test traffic stays on the test's own bridge, which has no address on the
host: its other end is a network namespace of the test's own (the guests'
gateway), so nothing reaches or leaves the host's network."""

import json
import os
import socket
import subprocess
import time

import pytest

import libvirt_env

from test_guest_lifecycle import BOOT, node, spec, tap_of, wait_for  # noqa: F401 (node is a fixture)

HOST = "192.0.2.1"
GUEST = "192.0.2.10"
SPOOF = "192.0.2.99"


def nft_json(*args):
    r = subprocess.run(["nft", "-j", *args], capture_output=True, text=True)
    return json.loads(r.stdout)["nftables"] if r.returncode == 0 else None


def set_elements(table, name):
    for item in nft_json("list", "set", "bridge", table, name) or []:
        if "set" in item:
            return json.dumps(item["set"].get("elem", []))
    return ""


def limits(table, port):
    """The rates (bytes/s) of the port's limit objects, both directions."""
    rates = []
    for item in nft_json("list", "limits", "table", "bridge", table) or []:
        limit = item.get("limit")
        if limit and port in limit["name"]:
            rates.append((limit["rate"], limit.get("per"), limit.get("rate_unit", "bytes")))
    return sorted(rates)


class Serial:
    """The guest's serial console: a root shell once it booted."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))

    def run(self, line):
        self.sock.sendall(b"\n" + line.encode() + b"\n")

    def close(self):
        self.sock.close()


def sniff_sources(port, seconds, action):
    """Runs action while counting, on the gateway's port of the bridge (what
    the filter let through), the IPv4 sources of ICMP echo requests."""
    from scapy.all import AsyncSniffer, ICMP, IP  # noqa: E402 (slow import, only here)
    sniffer = AsyncSniffer(iface=port, filter="icmp", store=True)
    sniffer.start()
    time.sleep(1)
    action()
    time.sleep(seconds)
    packets = sniffer.stop()
    seen = {}
    for p in packets:
        if IP in p and ICMP in p and p[ICMP].type == 8:
            seen[p[IP].src] = seen.get(p[IP].src, 0) + 1
    return seen


class Gateway:
    """The guests' gateway: a network namespace of the test's own on a veth
    port of the bridge, holding HOST."""

    def __init__(self, bridge):
        self.ns = f"vpsdgw{os.getpid()}"
        self.port = f"vpsgw{os.getpid() % 1000000}"
        self.close()
        run = lambda *a: subprocess.run(a, check=True)  # noqa: E731
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.port, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        run("ip", "link", "set", self.port, "master", bridge, "up")
        run("ip", "link", "set", bridge, "up")
        run("ip", "-n", self.ns, "addr", "add", f"{HOST}/24", "dev", "eth0")
        run("ip", "-n", self.ns, "link", "set", "eth0", "up")
        run("ip", "-n", self.ns, "link", "set", "lo", "up")

    def ping(self, *args):
        return subprocess.run(["ip", "netns", "exec", self.ns, "ping", *args], capture_output=True, text=True)

    def close(self):
        subprocess.run(["ip", "link", "del", self.port], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def lab(node):
    v = node.vpsd
    assert v.stop() == 0
    v.start(traffic_interval=1, filter_check_interval=1)
    gateway = Gateway(node.bridge)
    try:
        s = spec(addresses=[{"address": GUEST, "prefix": 24, "gateway": HOST}])
        node.provision(s)
        wait_for(lambda: "VPSD-GUEST-READY" in node.console(s["uuid"]).read_text(errors="replace"), BOOT,
                 "guest boot")
        # Nothing is typed before the shell prompts (libvirt_env.wait_shell).
        libvirt_env.wait_shell(str(node.console(s["uuid"])), timeout=BOOT)
        serial = Serial(node.run / s["uuid"] / "serial.sock")
        console = node.console(s["uuid"])

        def shell_answers():
            serial.run("echo shell-$((6*7))")
            time.sleep(0.5)
            return "shell-42" in console.read_text(errors="replace")
        wait_for(shell_answers, 60, "the guest's shell")
        yield node, s, serial, gateway
        serial.close()
    finally:
        gateway.close()


def traffic(v, u):
    return v.ctl_json("traffic", u, "--period", "day")["total"]


def test_guest_sends_only_from_its_addresses_and_is_counted(lab):
    node, s, serial, gateway = lab
    v, u, table = node.vpsd, s["uuid"], node.vpsd.settings["nft_table"]
    port = tap_of(u)
    assert port in set_elements(table, "ports"), "the port is in the filter before its guest runs"

    # The gateway reaches the guest and back through the filter.
    ping = gateway.ping("-c", "5", "-i", "0.2", "-W", "2", GUEST)
    assert ping.returncode == 0, ping.stdout

    # From inside: the guest's own address passes, a second one it was
    # not given does not reach the host.
    serial.run(f"ip addr add {SPOOF}/24 dev eth0")
    seen = sniff_sources(gateway.port, 6, lambda: serial.run(
        f"ping -c 3 -w 4 -I {SPOOF} {HOST} >/dev/null 2>&1 & ping -c 3 -w 4 {HOST} >/dev/null 2>&1"))
    assert seen.get(GUEST, 0) >= 3, seen
    assert seen.get(SPOOF, 0) == 0, f"spoofed packets reached the host: {seen}"

    # Counted into the buckets, both ways.
    wait_for(lambda: traffic(v, u)["in_packets"] >= 5 and traffic(v, u)["out_packets"] >= 8, 20, "traffic counted")
    before = traffic(v, u)
    text = v.ctl("traffic", u, "--period", "day").stdout
    assert "total" in text and "IN" in text

    # A restart of vpsd loses nothing: the totals only grow.
    assert v.stop() == 0
    v.start()
    v.wait_log("reconcile: done", timeout=60)
    after = traffic(v, u)
    assert after["in_bytes"] >= before["in_bytes"] and after["out_bytes"] >= before["out_bytes"]


def test_port_speed_follows_a_live_resize(lab):
    node, s, _, _ = lab
    v, u, table = node.vpsd, s["uuid"], node.vpsd.settings["nft_table"]
    port = tap_of(u)
    assert [r[0] for r in limits(table, port)] == [100 * 1000000 // 8] * 2 or \
        len(limits(table, port)) == 2, limits(table, port)
    before = limits(table, port)
    v.ctl("service", "resize", u, "port_speed_mbit=10")
    after = limits(table, port)
    assert after != before and len(after) == 2, (before, after)
    assert v.ctl_json("service", "show", u)["plan"]["port_speed_mbit"] == 10


def test_table_deleted_by_hand_is_rebuilt(lab):
    node, s, serial, gateway = lab
    v, u, table = node.vpsd, s["uuid"], node.vpsd.settings["nft_table"]
    subprocess.run(["nft", "delete", "table", "bridge", table], check=True)
    wait_for(lambda: tap_of(u) in set_elements(table, "ports"), 15, "table rebuilt")
    assert "the guest filter was changed from outside; rebuilding it" in v.log_text(this_run=True)
    # And it filters again.
    serial.run(f"ip addr add {SPOOF}/24 dev eth0")
    seen = sniff_sources(gateway.port, 6, lambda: serial.run(
        f"ping -c 3 -w 4 -I {SPOOF} {HOST} >/dev/null 2>&1 & ping -c 3 -w 4 {HOST} >/dev/null 2>&1"))
    assert seen.get(GUEST, 0) >= 3, seen
    assert seen.get(SPOOF, 0) == 0, seen


def test_terminated_port_leaves_the_filter(lab):
    node, s, _, _ = lab
    v, u, table = node.vpsd, s["uuid"], node.vpsd.settings["nft_table"]
    v.ctl("service", "terminate", u)
    assert tap_of(u) not in set_elements(table, "ports")
    assert tap_of(u) not in json.dumps(nft_json("list", "table", "bridge", table))
    # Its traffic stays on record.
    assert traffic(v, u)["in_packets"] >= 0
    r = v.ctl("traffic", u, "--period", "fortnight", check=False)
    assert r.returncode == 1 and "one of day, week, month, year" in r.stderr
