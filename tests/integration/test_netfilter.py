"""netfilter/ against the real kernel, inside network namespaces made for
the purpose (tests/lib/netfilter_lab.py): a bridge standing for the node,
guests on veth ports, an unmanaged host on the same bridge. Every frame is
built with scapy, sent from a namespace, and counted where it should or
should not arrive, by a capture at the receiver: a drop is observed, never
assumed. Run as root (make integration, or pytest this file)."""

import ipaddress
import itertools
import json
import statistics

import pytest

from netfilter_lab import Guest, Lab

from scapy.all import (ARP, BOOTP, DHCP, IP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6MLQuery2, ICMPv6MLReport2,
                       ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6ND_RS,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop, Raw,
                       RouterAlert)

BCAST = "ff:ff:ff:ff:ff:ff"
NODE_MAC, NODE_IP = "02:00:00:00:00:fe", "10.77.0.1"
UP_MAC, UP_IP, UP_IP6, UP_LL = "02:00:00:00:00:99", "10.77.0.99", "fd77::99", "fe80::99"
ROGUE_MAC = "02:00:00:00:00:55"

G1 = dict(mac="02:00:00:00:00:01", ip="10.77.0.11", ip6="fd77::11", ll="fe80::ff:fe00:1")
G2 = dict(mac="02:00:00:00:00:02", ip="10.77.0.12", ip6="fd77::12", ll="fe80::ff:fe00:2")


def guests():
    return [
        Guest("g1", "vg1", G1["mac"], [G1["ip"]], [G1["ip6"]]),
        Guest("g2", "vg2", G2["mac"], [G2["ip"]], [G2["ip6"]]),
        Guest("g3", "vg3", "02:00:00:00:00:03", ["10.77.0.13"]),
        Guest("g4", "vg4", "02:00:00:00:00:04", ["10.77.0.14"]),
    ]


@pytest.fixture(scope="module")
def lab():
    lab = Lab(guests(), others=[("up", UP_MAC)], kernel_ipv4=("g3", "g4"))
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def baseline(lab):
    """Every test starts from the same table: the four guests as planned."""
    for g in lab.guests.values():
        g.suspended, g.speed = False, 0
    lab.driver.ok("rebuild", guests=[g.spec() for g in lab.guests.values()])
    lab.driver.ok("check")
    yield


marks = (b"NFTEST%06d" % i for i in itertools.count())


def frame(pkt):
    """The frame's bytes and a unique mark appended after it: trailing bytes
    every layer ignores (Ethernet padding), so each frame can be recognised
    wherever it arrives, even with a VLAN tag stripped on the way."""
    mark = next(marks)
    return bytes(pkt) + mark, mark


def udp4(src_mac, dst_mac, src, dst, sport=4000, dport=4000):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"x" * 20)


def udp6(src_mac, dst_mac, src, dst, sport=4000, dport=4000):
    return Ether(src=src_mac, dst=dst_mac) / IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"x" * 20)


def arp(op, hwsrc, psrc, pdst, dst=BCAST, src=None):
    return Ether(src=src or hwsrc, dst=dst) / ARP(op=op, hwsrc=hwsrc, psrc=psrc, pdst=pdst,
                                                  hwdst="00:00:00:00:00:00" if op == 1 else UP_MAC)


def solicited_mac(addr6):
    b = ipaddress.IPv6Address(addr6).packed
    return "33:33:ff:%02x:%02x:%02x" % (b[13], b[14], b[15])


def solicited(addr6):
    b = ipaddress.IPv6Address(addr6).packed
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + b[13:]))


def na(src, dst_mac, dst, target, tlla=None, src_mac=G1["mac"]):
    pkt = Ether(src=src_mac, dst=dst_mac) / IPv6(src=src, dst=dst, hlim=255) / ICMPv6ND_NA(tgt=target, R=0, S=0, O=1)
    return pkt / ICMPv6NDOptDstLLAddr(lladdr=tlla) if tlla else pkt


def ns(src, target, slla=None, src_mac=G1["mac"], dst=None):
    dst = dst or solicited(target)
    pkt = Ether(src=src_mac, dst=solicited_mac(target)) / IPv6(src=src, dst=dst, hlim=255) / ICMPv6ND_NS(tgt=target)
    return pkt / ICMPv6NDOptSrcLLAddr(lladdr=slla) if slla else pkt


def mld_report(src, src_mac=G1["mac"]):
    return (Ether(src=src_mac, dst="33:33:00:00:00:16") / IPv6(src=src, dst="ff02::16", hlim=1)
            / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2())


def dhcp_discover(src_mac):
    return (Ether(src=src_mac, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(src_mac.replace(":", "")), xid=0x1234)
            / DHCP(options=[("message-type", "discover"), "end"]))


def deliveries(lab, sender, cases, receivers):
    """Sends each case's frame from sender and returns, per case name, the
    set of receivers (names) that got it."""
    built = [(name, *frame(pkt)) for name, pkt in cases]
    got = lab.capture([r for _, r in receivers], lambda: Lab.send(sender, [f for _, f, _ in built]))
    return {name: {rname for rname, r in receivers if any(mark in f for f in got[id(r)])}
            for name, _, mark in built}


def assert_deliveries(result, expected):
    wrong = {name: (sorted(result[name]), sorted(want)) for name, want in expected.items() if result[name] != set(want)}
    assert not wrong, "frames delivered (got, wanted): " + json.dumps(wrong, indent=1)


# ------------------------------------------------------------ from a guest

def test_from_guest_only_its_own_addresses_pass(lab):
    g1, up, node = lab.guests["g1"], lab.others["up"], lab.node
    m = G1["mac"]
    cases = {
        # (frame, who must receive it: empty = dropped)
        "ipv4 from its address": (udp4(m, UP_MAC, G1["ip"], UP_IP), ["up"]),
        "ipv6 from its global address": (udp6(m, UP_MAC, G1["ip6"], UP_IP6), ["up"]),
        "ipv6 from its derived link-local": (udp6(m, UP_MAC, G1["ll"], UP_LL), ["up"]),
        "arp request": (arp(1, m, G1["ip"], UP_IP), ["up", "node"]),
        "arp reply": (arp(2, m, G1["ip"], UP_IP, dst=UP_MAC), ["up"]),
        "arp probe from 0.0.0.0": (arp(1, m, "0.0.0.0", G1["ip"]), ["up", "node"]),
        "dhcp discover": (dhcp_discover(m), ["up", "node"]),
        "ns from its link-local with its mac": (ns(G1["ll"], UP_LL, slla=m), ["up", "node"]),
        "ns without options": (ns(G1["ip6"], UP_IP6), ["up", "node"]),
        "na for its address with its mac": (na(G1["ip6"], UP_MAC, UP_IP6, G1["ip6"], tlla=m), ["up"]),
        "na for its address, no options": (na(G1["ip6"], UP_MAC, UP_IP6, G1["ip6"]), ["up"]),
        "dad ns for its address": (ns("::", G1["ip6"]), ["up", "node"]),
        "mldv2 report from ::": (mld_report("::"), ["up", "node"]),
        "rs with its mac": (Ether(src=m, dst="33:33:00:00:00:02") / IPv6(src=G1["ll"], dst="ff02::2", hlim=255)
                            / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=m), ["up", "node"]),
        "ipv4 to the node": (udp4(m, NODE_MAC, G1["ip"], NODE_IP), ["node"]),

        "spoofed source mac": (udp4(ROGUE_MAC, UP_MAC, G1["ip"], UP_IP), []),
        "spoofed ipv4 source": (udp4(m, UP_MAC, "10.77.0.50", UP_IP), []),
        "another guest's ipv4": (udp4(m, UP_MAC, G2["ip"], UP_IP), []),
        "arp with another sender ip": (arp(1, m, G2["ip"], UP_IP), []),
        "arp with another sender mac": (arp(1, ROGUE_MAC, G1["ip"], UP_IP, src=m), []),
        "arp reply with another sender ip": (arp(2, m, "10.77.0.50", UP_IP, dst=UP_MAC), []),
        "spoofed ipv6 source": (udp6(m, UP_MAC, "fd77::50", UP_IP6), []),
        "another guest's ipv6": (udp6(m, UP_MAC, G2["ip6"], UP_IP6), []),
        "another link-local": (udp6(m, UP_MAC, "fe80::1234", UP_LL), []),
        "udp from ::": (udp6(m, "33:33:00:00:00:01", "::", "ff02::1"), []),
        "dad ns for another's address": (ns("::", G2["ip6"]), []),
        "na for another's address": (na(G1["ip6"], UP_MAC, UP_IP6, G2["ip6"], tlla=m), []),
        "na with another mac": (na(G1["ip6"], UP_MAC, UP_IP6, G1["ip6"], tlla=ROGUE_MAC), []),
        "na with its mac twice": (na(G1["ip6"], UP_MAC, UP_IP6, G1["ip6"], tlla=m) / ICMPv6NDOptDstLLAddr(lladdr=m),
                                  []),
        "ns with another mac": (ns(G1["ll"], UP_LL, slla=ROGUE_MAC), []),
        "router advertisement": (Ether(src=m, dst="33:33:00:00:00:01") / IPv6(src=G1["ll"], dst="ff02::1", hlim=255)
                                 / ICMPv6ND_RA(), []),
        "redirect": (Ether(src=m, dst=UP_MAC) / IPv6(src=G1["ll"], dst=UP_LL, hlim=255)
                     / ICMPv6ND_Redirect(tgt="fe80::1", dst="2001:db8::1"), []),
        "dhcp server reply": (Ether(src=m, dst=UP_MAC) / IP(src=G1["ip"], dst=UP_IP) / UDP(sport=67, dport=68)
                              / BOOTP(op=2, yiaddr=UP_IP), []),
        "dhcpv6 server reply": (udp6(m, UP_MAC, G1["ip6"], UP_IP6, sport=547, dport=546), []),
        "vlan tagged": (Ether(src=m, dst=UP_MAC) / Dot1Q(vlan=7) / IP(src=G1["ip"], dst=UP_IP) / UDP(), []),
        "q-in-q": (Ether(src=m, dst=UP_MAC) / Dot1AD(vlan=5) / Dot1Q(vlan=7) / IP(src=G1["ip"], dst=UP_IP) / UDP(),
                   []),
        "unknown ethertype": (Ether(src=m, dst=UP_MAC, type=0x88b5) / Raw(b"hello"), []),
        "spoofed ipv4 to the node": (udp4(m, NODE_MAC, "10.77.0.50", NODE_IP), []),
        "spoofed arp to the node": (arp(1, m, G2["ip"], NODE_IP), []),
        "another mac to the node": (udp4(ROGUE_MAC, NODE_MAC, G1["ip"], NODE_IP), []),
    }
    result = deliveries(lab, g1, [(n, c[0]) for n, c in cases.items()], [("up", up), ("node", node)])
    assert_deliveries(result, {n: c[1] for n, c in cases.items()})


def test_a_family_without_addresses_is_dropped_whole(lab):
    g1, up = lab.guests["g1"], lab.others["up"]
    m = G1["mac"]
    v6 = {"ipv6 from its link-local": udp6(m, UP_MAC, G1["ll"], UP_LL), "mldv2 report from ::": mld_report("::"),
          "dad ns": ns("::", G1["ll"])}
    v4 = {"ipv4": udp4(m, UP_MAC, G1["ip"], UP_IP), "arp": arp(1, m, G1["ip"], UP_IP),
          "arp probe": arp(1, m, "0.0.0.0", G1["ip"]), "dhcp discover": dhcp_discover(m)}

    lab.driver.ok("apply", guest=g1.spec(ipv6=[]))
    result = deliveries(lab, g1, list(v6.items()) + list(v4.items()), [("up", up)])
    assert_deliveries(result, {**{n: [] for n in v6}, **{n: ["up"] for n in v4}})

    lab.driver.ok("apply", guest=g1.spec(ipv4=[]))
    result = deliveries(lab, g1, list(v6.items()) + list(v4.items()), [("up", up)])
    assert_deliveries(result, {**{n: ["up"] for n in v6}, **{n: [] for n in v4}})
    lab.driver.ok("check")


# -------------------------------------------------------------- to a guest

def test_to_guest_only_what_is_addressed_to_it(lab):
    up, g1, g2 = lab.others["up"], lab.guests["g1"], lab.guests["g2"]
    cases = {
        "unicast to its mac": (udp4(UP_MAC, G2["mac"], UP_IP, G2["ip"]), ["g2"]),
        "unicast to its mac, spoofed source (unmanaged port)": (udp4(ROGUE_MAC, G2["mac"], "1.2.3.4", G2["ip"]), ["g2"]),
        "arp request for its address": (arp(1, UP_MAC, UP_IP, G2["ip"]), ["g2"]),
        "ns to its solicited-node group": (ns(UP_LL, G2["ip6"], slla=UP_MAC, src_mac=UP_MAC), ["g2"]),
        "ra to all nodes": (Ether(src=UP_MAC, dst="33:33:00:00:00:01") / IPv6(src=UP_LL, dst="ff02::1", hlim=255)
                            / ICMPv6ND_RA(), ["g1", "g2"]),
        "na to all nodes": (na(UP_LL, "33:33:00:00:00:01", "ff02::1", UP_IP6, src_mac=UP_MAC), ["g1", "g2"]),

        "unicast to g1": (udp4(UP_MAC, G1["mac"], UP_IP, G1["ip"]), ["g1"]),
        "unicast to an unknown mac (flooded)": (udp4(UP_MAC, "02:00:00:00:00:77", UP_IP, "10.77.0.77"), []),
        "ipv4 broadcast": (udp4(UP_MAC, BCAST, UP_IP, "10.77.0.255"), []),
        "arp request for g1's address": (arp(1, UP_MAC, UP_IP, G1["ip"]), ["g1"]),
        "arp request for nobody's address": (arp(1, UP_MAC, UP_IP, "10.77.0.77"), []),
        "broadcast arp reply": (arp(2, UP_MAC, UP_IP, G2["ip"], dst=BCAST), []),
        "ns to g1's solicited-node group": (ns(UP_LL, G1["ip6"], src_mac=UP_MAC), ["g1"]),
        "ipv4 multicast": (udp4(UP_MAC, "01:00:5e:00:00:fb", UP_IP, "224.0.0.251"), []),
        "mld query to all nodes": (Ether(src=UP_MAC, dst="33:33:00:00:00:01") / IPv6(src=UP_LL, dst="ff02::1", hlim=1)
                                   / ICMPv6MLQuery2(), []),
        "other multicast": (Ether(src=UP_MAC, dst="03:00:00:00:00:01", type=0x88b5) / Raw(b"hi"), []),
    }
    result = deliveries(lab, up, [(n, c[0]) for n, c in cases.items()], [("g1", g1), ("g2", g2)])
    assert_deliveries(result, {n: c[1] for n, c in cases.items()})


def test_suspended_guest_passes_nothing_either_way(lab):
    up, g2 = lab.others["up"], lab.guests["g2"]
    to_g2 = [("to", udp4(UP_MAC, G2["mac"], UP_IP, G2["ip"])), ("arp to", arp(1, UP_MAC, UP_IP, G2["ip"]))]
    from_g2 = [("from", udp4(G2["mac"], UP_MAC, G2["ip"], UP_IP)), ("arp from", arp(1, G2["mac"], G2["ip"], UP_IP))]

    for suspended, want_g2, want_up in ((True, [], []), (False, ["g2"], ["up"])):
        lab.driver.ok("apply", guest=g2.spec(suspended=suspended))
        assert_deliveries(deliveries(lab, up, to_g2, [("g2", g2)]), {n: want_g2 for n, _ in to_g2})
        assert_deliveries(deliveries(lab, g2, from_g2, [("up", up)]), {n: want_up for n, _ in from_g2})
        lab.driver.ok("check")


# ---------------------------------------------------------------- counters

def counters(lab, port):
    return lab.driver.ok("counters", ifname=port)["counters"]


def test_counters_are_exact(lab):
    up, g1, g2 = lab.others["up"], lab.guests["g1"], lab.guests["g2"]
    before1, before2 = counters(lab, "vg1"), counters(lab, "vg2")
    sent = [udp4(G1["mac"], UP_MAC, G1["ip"], UP_IP) / Raw(b"y" * n) for n in (0, 1, 100, 500, 1000, 1400, 17)]
    sent += [udp6(G1["mac"], UP_MAC, G1["ip6"], UP_IP6) / Raw(b"z" * n) for n in (3, 800)]
    dropped = [udp4(G1["mac"], UP_MAC, "10.77.0.50", UP_IP), udp4(ROGUE_MAC, UP_MAC, G1["ip"], UP_IP)]
    to_g2 = [udp4(UP_MAC, G2["mac"], UP_IP, G2["ip"]) / Raw(b"w" * n) for n in (10, 900, 1450)]
    not_g2 = [udp4(UP_MAC, "02:00:00:00:00:77", UP_IP, "10.77.0.77")]

    got = lab.capture([up, g2], lambda: (Lab.send(g1, sent + dropped), Lab.send(up, to_g2 + not_g2)))
    assert len([f for f in got[id(up)] if f[6:12] == bytes.fromhex("020000000001")]) == len(sent)

    after1, after2 = counters(lab, "vg1"), counters(lab, "vg2")
    # Layer 3 bytes: each frame without its 14-byte Ethernet header.
    assert after1["tx_packets"] - before1["tx_packets"] == len(sent)
    assert after1["tx_bytes"] - before1["tx_bytes"] == sum(len(bytes(p)) - 14 for p in sent)
    assert after1["rx_packets"] == before1["rx_packets"] and after1["rx_bytes"] == before1["rx_bytes"]
    assert after2["rx_packets"] - before2["rx_packets"] == len(to_g2)
    assert after2["rx_bytes"] - before2["rx_bytes"] == sum(len(bytes(p)) - 14 for p in to_g2)
    assert after2["tx_packets"] == before2["tx_packets"]

    every = lab.driver.ok("counters_all")["ports"]
    assert sorted(every) == ["vg1", "vg2", "vg3", "vg4"]
    assert every["vg1"] == after1 and every["vg2"] == after2

    # An address change keeps them; a rebuild carries them over.
    lab.driver.ok("apply", guest=lab.guests["g1"].spec(ipv4=[G1["ip"], "10.77.0.21"], speed=100))
    assert counters(lab, "vg1") == after1
    lab.driver.ok("rebuild", guests=[g.spec() for g in lab.guests.values()])
    assert counters(lab, "vg1") == after1 and counters(lab, "vg2") == after2
    lab.driver.ok("check")


# ------------------------------------------------------------- port speed

def test_port_speed_both_directions_and_live_change(lab):
    g3, g4 = lab.guests["g3"], lab.guests["g4"]
    results = {}
    for label, g3_speed, g4_speed, limit in (("g3 sends at 20", 20, 0, 20), ("changed live to 60", 60, 0, 60),
                                              ("g4 receives at 30", 0, 30, 30)):
        t = lab.driver.ok("apply", guest=g3.spec(speed=g3_speed))
        lab.driver.ok("apply", guest=g4.spec(speed=g4_speed))
        mbit = Lab.iperf(g3, g4, seconds=4) / 1e6
        results[label] = (round(mbit, 1), limit, t["us"])
    lab.driver.ok("check")
    print("port speed (Mbit/s measured, limit, apply us):", results)
    for label, (mbit, limit, _) in results.items():
        assert 0.75 * limit <= mbit <= 1.1 * limit, f"{label}: {mbit} Mbit/s against a limit of {limit}: {results}"


# --------------------------------------------------------------- reconcile

def nft(lab, *args):
    return lab.node.run("nft", *args).stdout


def test_hand_changes_are_detected_and_rebuild_repairs(lab):
    g1, up = lab.guests["g1"], lab.others["up"]
    spoof = [("spoof", udp4(G1["mac"], UP_MAC, "10.77.0.50", UP_IP))]
    specs = [g.spec() for g in lab.guests.values()]
    # Another table, of the same family and of another: rebuild must not touch them.
    lab.node.run("nft", "add table bridge other; add set bridge other s { type ifname; elements = { vg1 } }; "
                 "add chain bridge other c { type filter hook prerouting priority 0; }; "
                 "add rule bridge other c iifname @s counter; add table inet other2")
    def others():  # stateless: the other table's counter sees our traffic
        return nft(lab, "-s", "list", "table", "bridge", "other") + nft(lab, "-s", "list", "table", "inet", "other2")
    others_before = others()

    def spoof_reaches_up():
        return deliveries(lab, g1, spoof, [("up", up)])["spoof"] == {"up"}

    def broken(command, code=-117, leaks=False):
        """Changes the table by hand: nf_check must say so (the error is
        returned), and a rebuild must make it whole, filtering again."""
        lab.node.run("nft", command)
        r = lab.driver.call(op="check")
        assert not r["ok"] and r["code"] == code, (command, r)
        assert spoof_reaches_up() == leaks, command
        lab.driver.ok("rebuild", guests=specs)
        lab.driver.ok("check")
        assert not spoof_reaches_up(), command
        return r["error"]

    assert not spoof_reaches_up()
    assert "missing" in broken("delete table bridge vpsd", code=-2, leaks=True)
    assert "7 rules where we made 6" in broken("insert rule bridge vpsd from_guest accept", leaks=True)
    assert "dormant" in broken("add table bridge vpsd { flags dormant; }", leaks=True)
    assert "not ours" in broken("add element bridge vpsd ip4 { \"vg1\" . 10.77.0.50 }", leaks=True)
    assert "was changed" in broken("replace rule bridge vpsd guest_ip4 handle "
                                   + nft(lab, "-a", "list", "chain", "bridge", "vpsd", "guest_ip4")
                                   .split("handle ")[-1].split()[0] + " accept", leaks=True)
    assert "rules where we made" in broken("add rule bridge vpsd to_guest accept")
    assert "missing" in broken("delete element bridge vpsd ip4 { \"vg2\" . 10.77.0.12 }")
    assert "not ours" in broken("add element bridge vpsd families { \"vg2\" . vlan }")
    assert "not ours" in broken("add chain bridge vpsd extra")
    assert "chain prerouting" in broken("add chain bridge vpsd prerouting { policy drop; }")
    assert "not ours" in broken("add counter bridge vpsd extra")
    assert "missing" in broken("delete element bridge vpsd rx_counters { \"vg4\" }; delete counter bridge vpsd rx_vg4")

    lab.driver.ok("apply", guest=lab.guests["g3"].spec(speed=10))
    assert "limit tx_vg3 was changed" in broken(
        "delete element bridge vpsd tx_limits { \"vg3\" }; delete limit bridge vpsd tx_vg3; "
        "add limit bridge vpsd tx_vg3 { rate over 1 mbytes/second; }; "
        "add element bridge vpsd tx_limits { \"vg3\" : \"tx_vg3\" }")

    assert others() == others_before
    lab.node.run("nft", "delete table bridge other; delete table inet other2")


# --------------------------------------------------------------- bad input

BAD = [
    ({"ifname": "a-name-too-long-for-linux"}, "interface name"),
    ({"ifname": "bad/name"}, "interface name"),
    ({"ifname": ""}, "interface name"),
    ({"ifname": ".."}, "interface name"),
    ({"mac": "01:00:5e:00:00:01"}, "multicast"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "multicast"),
    ({"mac": "00:00:00:00:00:00"}, "not an address"),
    ({"ipv4": ["224.0.0.1"]}, "multicast"),
    ({"ipv4": ["0.0.0.0"]}, "unspecified"),
    ({"ipv4": ["255.255.255.255"]}, "broadcast"),
    ({"ipv4": ["127.0.0.1"]}, "loopback"),
    ({"ipv4": ["10.77.0.11", "10.77.0.11"]}, "twice"),
    ({"ipv6": ["ff02::1"]}, "multicast"),
    ({"ipv6": ["::"]}, "unspecified"),
    ({"ipv6": ["fe80::1"]}, "link-local"),
    ({"ipv6": ["fd77::1", "fd77::1"]}, "twice"),
    ({"ipv4": ["10.0.0.%d" % i for i in range(1, 66)]}, "more than"),
    ({"speed": 10**6}, "port speed"),
]


def test_bad_input_is_refused_and_changes_nothing(lab):
    g1 = lab.guests["g1"]
    table = nft(lab, "list", "table", "bridge", "vpsd")
    for override, words in BAD:
        spec = g1.spec(**override)
        r = lab.driver.call(op="apply", guest=spec)
        assert not r["ok"] and r["code"] == -22 and words in r["error"], (override, r)
        assert "guest port `" in r["error"], r
        r = lab.driver.call(op="rebuild", guests=[lab.guests["g2"].spec(), spec])
        assert not r["ok"] and r["code"] == -22 and words in r["error"], (override, r)
    r = lab.driver.call(op="rebuild", guests=[g1.spec(), g1.spec()])
    assert not r["ok"] and "given twice" in r["error"], r
    r = lab.driver.call(op="remove", ifname="nosuchport")
    assert not r["ok"] and r["code"] == -2, r
    assert nft(lab, "list", "table", "bridge", "vpsd") == table
    lab.driver.ok("check")


def test_refused_batch_names_the_element_and_changes_nothing(lab):
    """A guest whose element already sits in the kernel (put there by hand):
    the kernel refuses the batch, the error names the element, and nothing
    of the batch was applied."""
    lab.node.run("nft", "add element bridge vpsd macs { \"vg7\" . 02:00:00:00:00:07 }")
    table = nft(lab, "list", "table", "bridge", "vpsd")
    r = lab.driver.call(op="apply", guest=Guest("g7", "vg7", "02:00:00:00:00:07", ["10.77.0.17"]).spec())
    assert not r["ok"] and r["code"] == -17, r
    assert "guest port `vg7`" in r["error"] and '"vg7" . 02:00:00:00:00:07' in r["error"], r
    assert nft(lab, "list", "table", "bridge", "vpsd") == table


# ------------------------------------------------------------------- scale

def test_changes_at_4000_guests(lab):
    """Change, add and remove single guests in a table of 4,000, and check
    the table whole afterwards. How long each takes is the benchmark's to
    say (bench_netfilter.py): a test never gates on a time."""
    many = [Guest(f"s{i}", f"s{i}", "02:10:%02x:%02x:%02x:01" % (i >> 16, (i >> 8) & 255, i & 255),
                  ["10.%d.%d.2" % (100 + (i >> 8), i & 255)], ["fd78::%x" % (i + 1)], speed=100 if i % 2 else 0)
            for i in range(4000)]
    r = lab.driver.ok("rebuild", guests=[g.spec() for g in many])
    rebuild_us = r["us"]
    times = []
    for i in range(30):
        g = many[i * 97]
        times.append(lab.driver.ok("apply", guest=g.spec(ipv4=g.ipv4 + ["10.99.0.%d" % (i + 1)], speed=50))["us"])
    # Adding and removing a guest, not only changing one, must not grow
    # with the table either.
    added = [Guest(f"n{i}", f"n{i}", "02:20:00:00:00:%02x" % (i + 1), ["10.98.0.%d" % (i + 1)],
                   ["fd79::%x" % (i + 1)], speed=10) for i in range(10)]
    adds = [lab.driver.ok("apply", guest=g.spec())["us"] for g in added]
    removes = [lab.driver.ok("remove", ifname=g.port)["us"] for g in added]
    lab.driver.ok("check")
    assert len(lab.driver.ok("counters_all")["ports"]) == 4000
    for what, t in (("change", times), ("add", adds), ("remove", removes)):
        print(f"{what} at 4000 guests: median {statistics.median(t)} us (rebuild {rebuild_us} us)")
