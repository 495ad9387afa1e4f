"""Benchmark (make bench; not a test): netfilter/ against its peers, for N
guest ports, N in 1, 100, 1000, 4000.

1. Loading every guest from scratch, and changing one guest at N=4000:
   - vpsd: nf_rebuild() and nf_guest_apply() (the library call's own time,
     measured by build/tests/nf_driver);
   - an Incus-style ruleset: one bridge chain with the per-interface rules
     Incus' nftables driver writes for MAC/IPv4/IPv6 filtering, loaded with
     `nft -f`; a change lists the chain with handles, then deletes the
     port's rules and adds new ones in one `nft -f`;
   - libvirt nwfilter `clean-traffic` bindings (`virsh
     nwfilter-binding-create`), the per-port way libvirt filters guests.
     They act in the host's own namespace (libvirtd's), on tap devices
     nfb0.. made for the purpose and removed after; libvirtd is started
     only if it is not running and stopped only if this run started it and
     nobody else uses it (tests/lib/libvirt_env.py). A binding costs about
     a second and a half, so nwfilter is measured up to NWFILTER_MAX ports
     (default 100) and the rest is estimated, and said so.
2. Forwarding throughput: iperf3 (TCP, 3 s, median of 5 runs interleaved
   across configurations, all loaded at once, the unmeasured ones dormant)
   between two guests through the bridge with 2 guests loaded and with
   4,000, for vpsd and for the
   Incus-style ruleset (with the two measured ports last in its chain: a
   guest added last pays for every rule before its own).

Everything but nwfilter runs in network namespaces (tests/lib/
netfilter_lab.py). Prints the figures and the ratios against the goals:
one change at 4,000 < 1 ms; full load >= 20x faster than nwfilter;
throughput at 4,000 >= 0.95 of at 2.

Environment: NWFILTER_MAX=0 skips nwfilter; BENCH_N="1 100" picks N."""

import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))
import netfilter_lab  # noqa: E402
from netfilter_lab import Driver, Guest, Lab, Netns, sh  # noqa: E402

N_VALUES = [int(n) for n in os.environ.get("BENCH_N", "1 100 1000 4000").split()]
NWFILTER_MAX = int(os.environ.get("NWFILTER_MAX", "100"))
CHANGES = 50


def fake_guests(n, first=0):
    return [Guest(f"s{i}", f"s{i}", "02:10:%02x:%02x:%02x:01" % (i >> 16, (i >> 8) & 255, i & 255),
                  ["10.%d.%d.2" % (100 + (i >> 8), i & 255)], ["fd78::%x" % (i + 1)])
            for i in range(first, first + n)]


# ------------------------------------------------------------------- vpsd

def vpsd_load_and_change(results):
    ns = Netns("bench-vpsd")
    driver = Driver(ns)
    try:
        for n in N_VALUES:
            guests = fake_guests(n)
            driver.ok("rebuild", guests=[])  # from scratch: an empty table first
            results.setdefault(n, {})["vpsd_load_s"] = driver.ok("rebuild", guests=[g.spec() for g in guests])["us"] / 1e6
        n = max(N_VALUES)
        guests = fake_guests(n)
        driver.ok("rebuild", guests=[g.spec() for g in guests])
        times = []
        for i in range(CHANGES):
            g = guests[(i * 7919) % n]
            times.append(driver.ok("apply", guest=g.spec(ipv4=g.ipv4 + ["10.99.%d.%d" % (i >> 8, i & 255 or 1)],
                                                          speed=100 + i))["us"])
        new = fake_guests(1, first=n)[0]
        add_us = driver.ok("apply", guest=new.spec())["us"]
        remove_us = driver.ok("remove", ifname=new.port)["us"]
        driver.ok("check")
        results["change"] = {"n": n, "median_us": statistics.median(times), "max_us": max(times),
                             "add_us": add_us, "remove_us": remove_us}
    finally:
        driver.close()
        ns.delete()


# ----------------------------------------------------------- Incus-style

LINK_LOCAL_HEX = "0xfe800000000000000000000000000000-0xfebfffffffffffffffffffffffffffff"


def incus_rules(g):
    """What Incus' nftables driver writes for one bridged NIC with
    security.mac_filtering, ipv4_filtering and ipv6_filtering on (raw
    payload matches take integers, hence the hex forms)."""
    p, mac = g.port, g.mac
    mac_hex = "0x" + mac.replace(":", "")
    ip6_hex = "0x" + ipaddress.IPv6Address(g.ipv6[0]).packed.hex()
    return [
        f'iifname "{p}" ether saddr != {mac} drop',
        f'iifname "{p}" ether type arp arp saddr ether != {mac} drop',
        f'iifname "{p}" ether type ip6 icmpv6 type 136 @nh,528,48 != {mac_hex} drop',
        f'iifname "{p}" ether type arp arp saddr ip != {g.ipv4[0]} drop',
        f'iifname "{p}" ether type ip ip saddr != {g.ipv4[0]} drop',
        f'iifname "{p}" ether type ip6 ip6 saddr != {{ fe80::/10, {g.ipv6[0]} }} drop',
        f'iifname "{p}" ether type ip6 icmpv6 type 136 @nh,384,128 != {{ {LINK_LOCAL_HEX}, {ip6_hex} }} drop',
        f'iifname "{p}" ether type ip6 icmpv6 type 134 drop',
        f'iifname "{p}" ether type != {{ arp, ip, ip6 }} drop',
    ]


def incus_ruleset(guests, table="incus"):
    lines = [f"table bridge {table} {{", "  chain prerouting {",
             "    type filter hook prerouting priority -200; policy accept;"]
    for g in guests:
        lines += ["    " + r for r in incus_rules(g)]
    return "\n".join(lines + ["  }", "}", ""])


def nft_file(ns, text):
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
        f.write(text)
    try:
        t0 = time.monotonic()
        ns.run("nft", "-f", f.name)
        return time.monotonic() - t0
    finally:
        os.unlink(f.name)


def incus_load_and_change(results):
    ns = Netns("bench-incus")
    try:
        for n in N_VALUES:
            ns.run("nft", "delete table bridge incus", check=False)
            results.setdefault(n, {})["incus_load_s"] = nft_file(ns, incus_ruleset(fake_guests(n)))
        n = max(N_VALUES)
        guests = fake_guests(n)
        ns.run("nft", "delete table bridge incus", check=False)
        nft_file(ns, incus_ruleset(guests))
        list_s, apply_s = [], []
        for i in range(5):
            g = guests[(i * 7919) % n]
            t0 = time.monotonic()
            listing = ns.run("nft", "-a", "list", "chain", "bridge", "incus", "prerouting").stdout
            list_s.append(time.monotonic() - t0)
            handles = [line.rsplit("# handle ", 1)[1] for line in listing.splitlines()
                       if f'iifname "{g.port}" ' in line]
            changed = Guest(g.name, g.port, g.mac, [f"10.99.0.{i + 1}"], g.ipv6)
            text = "".join(f"delete rule bridge incus prerouting handle {h}\n" for h in handles)
            text += "".join(f"add rule bridge incus prerouting {r}\n" for r in incus_rules(changed))
            apply_s.append(nft_file(ns, text))
        results["incus_change"] = {"list_s": statistics.median(list_s), "apply_s": statistics.median(apply_s)}
    finally:
        ns.delete()


# --------------------------------------------------------------- nwfilter

def nwfilter_load(results):
    import libvirt_env
    sizes = [n for n in N_VALUES if n <= NWFILTER_MAX]
    if not sizes:
        return
    tables_before = sh("nft", "list", "tables").stdout.split("\n")
    handle = libvirt_env.ensure_libvirt()
    made_taps, made_bindings = [], []
    try:
        for n in sizes:
            for i in range(n):
                sh("ip", "tuntap", "add", "dev", f"nfb{i}", "mode", "tap")
                made_taps.append(f"nfb{i}")
            t0 = time.monotonic()
            for g in fake_guests(n):
                xml = (f"<filterbinding><owner><name>nfb-{g.port}</name><uuid>{uuid.uuid4()}</uuid></owner>"
                       f"<portdev name='nfb{g.port[1:]}'/><mac address='{g.mac}'/>"
                       f"<filterref filter='clean-traffic'><parameter name='IP' value='{g.ipv4[0]}'/>"
                       f"</filterref></filterbinding>")
                with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
                    f.write(xml)
                try:
                    libvirt_env.virsh("nwfilter-binding-create", f.name, timeout=120)
                    made_bindings.append(f"nfb{g.port[1:]}")
                finally:
                    os.unlink(f.name)
            results.setdefault(n, {})["nwfilter_load_s"] = time.monotonic() - t0
            cleanup_nwfilter(libvirt_env, made_bindings, made_taps)
    finally:
        cleanup_nwfilter(libvirt_env, made_bindings, made_taps)
        handle.stop()
        # ebtables(-nft) leaves the tables it made behind, empty: remove
        # those (its own names only; nothing else in this namespace is ours).
        for line in sh("nft", "list", "tables").stdout.split("\n"):
            if line in ("table bridge nat", "table bridge filter", "table bridge broute") and line not in tables_before:
                family, name = line.split()[1:3]
                listing = json.loads(sh("nft", "-j", "list", "table", family, name).stdout)["nftables"]
                if not any("rule" in item for item in listing):
                    sh("nft", "delete", "table", family, name, check=False)


def cleanup_nwfilter(libvirt_env, bindings, taps):
    while bindings:
        libvirt_env.virsh("nwfilter-binding-delete", bindings.pop(), check=False, timeout=120)
    while taps:
        sh("ip", "link", "del", taps.pop(), check=False)


# ------------------------------------------------------------- throughput

def throughput(results, rounds=5):
    """Every configuration is loaded once, as its own table, and all but the
    one measured are dormant (unhooked): switching costs nothing and leaves
    no table being torn down in the background during a measurement. Each
    is measured `rounds` times, interleaved, and the median kept: the
    machine runs other work (TCG guests), and drift then falls on every
    configuration alike."""
    g1 = Guest("g1", "vg1", "02:00:00:00:00:01", ["10.77.0.11"], ["fd77::11"])
    g2 = Guest("g2", "vg2", "02:00:00:00:00:02", ["10.77.0.12"], ["fd77::12"])
    many = max(max(N_VALUES), 2)
    lab = Lab([g1, g2], kernel_ipv4=("g1", "g2"), agents=False)
    tables = {"vpsd_2": "vpsd2", f"vpsd_{many}": "vpsdmany", "incus_2": "incus2", f"incus_{many}": "incusmany"}
    try:
        for n, suffix in ((2, "2"), (many, "many")):
            driver = Driver(lab.node, table="vpsd" + suffix)
            lab.processes.append(driver)
            driver.ok("rebuild", guests=[g1.spec(), g2.spec()] + [g.spec() for g in fake_guests(n - 2)])
            nft_file(lab.node, incus_ruleset(fake_guests(n - 2) + [g1, g2], table="incus" + suffix))
        samples = {name: [] for name in ["none", *tables]}
        for _ in range(rounds):
            for name in samples:
                nft_file(lab.node, "".join(f"add table bridge {t}{'' if key == name else ' { flags dormant; }'}\n"
                                           for key, t in tables.items()))
                samples[name].append(Lab.iperf(g1, g2) / 1e9)
        results["throughput"] = {name: statistics.median(v) for name, v in samples.items()}
        results["throughput"]["n"] = many
        results["throughput"]["samples"] = samples
    finally:
        lab.close()


# ----------------------------------------------------------------- report

def report(results):
    print("\n== load every guest from scratch (seconds)")
    print(f"{'N':>6} {'vpsd':>10} {'Incus-style':>12} {'nwfilter':>10}   nwfilter/vpsd")
    per_binding = None
    for n in N_VALUES:
        r = results.get(n, {})
        nw = r.get("nwfilter_load_s")
        if nw:
            per_binding = nw / n
        est = f"~{per_binding * n:.0f} (est.)" if nw is None and per_binding else (f"{nw:.3f}" if nw else "-")
        ratio = (nw or (per_binding or 0) * n) / r["vpsd_load_s"] if r.get("vpsd_load_s") else 0
        print(f"{n:>6} {r.get('vpsd_load_s', 0):>10.4f} {r.get('incus_load_s', 0):>12.3f} {est:>10}   "
              f"{ratio:,.0f}x{'' if nw else ' (est.)' if per_binding else ''}")
    if per_binding:
        print(f"(nwfilter: {per_binding:.2f} s a binding at the largest N measured; the estimates scale that "
              f"linearly, a lower bound: a binding got slower as bindings grew)")
    c, ic = results.get("change"), results.get("incus_change")
    if c:
        print(f"\n== one change at N={c['n']}")
        print(f"vpsd: median {c['median_us']:.0f} us, max {c['max_us']:.0f} us over {CHANGES} changes; "
              f"add a guest {c['add_us']} us, remove {c['remove_us']} us")
    if ic:
        print(f"Incus-style: list the chain {ic['list_s'] * 1e3:.0f} ms + nft -f {ic['apply_s'] * 1e3:.0f} ms")
    t = results.get("throughput")
    if t:
        n = t["n"]
        print(f"\n== forwarding throughput, iperf3 TCP between two guests (Gbit/s, median of "
              f"{len(t['samples']['none'])} interleaved runs; no filter: {t['none']:.2f})")
        print(f"vpsd:        2 guests {t['vpsd_2']:.2f}, {n} guests {t[f'vpsd_{n}']:.2f} "
              f"-> {t[f'vpsd_{n}'] / t['vpsd_2']:.2f}")
        print(f"Incus-style: 2 guests {t['incus_2']:.2f}, {n} guests {t[f'incus_{n}']:.2f} "
              f"-> {t[f'incus_{n}'] / t['incus_2']:.2f}")
    print("\n== goals")
    if c:
        print(f"one change at {c['n']} < 1 ms: {c['median_us'] / 1000:.3f} ms "
              f"{'met' if c['median_us'] < 1000 else 'MISSED'}")
    measured = [(n, results[n]) for n in N_VALUES if results.get(n, {}).get("nwfilter_load_s")]
    for n, r in measured:
        ratio = r["nwfilter_load_s"] / r["vpsd_load_s"]
        print(f"full load >= 20x faster than nwfilter (N={n}, measured): {ratio:,.0f}x "
              f"{'met' if ratio >= 20 else 'MISSED'}")
    if t:
        ratio = t[f"vpsd_{t['n']}"] / t["vpsd_2"]
        print(f"throughput at {t['n']} >= 0.95 of at 2: {ratio:.2f} {'met' if ratio >= 0.95 else 'MISSED'}")


def main():
    if os.geteuid() != 0:
        sys.exit("bench_netfilter: run as root (network namespaces)")
    netfilter_lab.sweep_stale()
    results = {}
    vpsd_load_and_change(results)
    incus_load_and_change(results)
    if NWFILTER_MAX > 0:
        nwfilter_load(results)
    throughput(results)
    report(results)


if __name__ == "__main__":
    main()
