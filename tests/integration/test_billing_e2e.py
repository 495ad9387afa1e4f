"""The whole money story with both real processes: vps-ledger serving its
API and sync endpoint, vpsd joined to it, a real TCG guest. The ledger's
clock is a file the test moves; the node's is the wall clock, so whenever
a lease must end on the node the ledger's clock follows the wall clock."""

import calendar
import datetime
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

import libvirt_env
from ledger_harness import Ledger
from test_guest_lifecycle import domstate, wait_for

NODE_ID = "node-a"


def month_before(target: int):
    """(t0, months): an order at t0 on a plan of `months` months has its
    first cycle end exactly at target (docs/ledger.md: the order's day of
    the month, or the month's last day where it has none)."""
    d = datetime.datetime.fromtimestamp(target, datetime.timezone.utc)
    for months in (1, 2):
        y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
        if d.day <= calendar.monthrange(y, m + 1)[1]:
            return int(d.replace(year=y, month=m + 1).timestamp()), months
    raise AssertionError("no order date")


class Story:
    def __init__(self, ledger, vpsd):
        self.ledger = ledger
        self.vpsd = vpsd

    def wallet(self, account):
        a = self.ledger.api("GET", f"accounts/{account}")
        assert a["balance"] == sum(e["amount"] for e in a["log"]), "the balance is the sum of its log"
        assert all(e["balance_after"] >= 0 for e in a["log"])
        return a["balance"], [(e["kind"], e["amount"]) for e in a["log"]]

    def node_show(self, u):
        return self.vpsd.ctl_json("service", "show", u)

    def ledger_show(self, u):
        return self.ledger.api("GET", f"services/{u}")


def join(v, ledger, bridge, test_guest):
    """Enrols v's node at the ledger, starts v joined to it, imports the tiny
    template and waits for the link."""
    node = ledger.api("POST", "nodes", {"id": NODE_ID, "vcpus": 8, "memory_mib": 8192, "disk_gib": 100,
                                         "pools": ["192.0.2.0/24,192.0.2.1"]})
    key = v.root / "ledger.key"
    key.write_text(node["sync_key"] + "\n")
    key.chmod(0o600)
    v.start(hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=30,
            ledger_url=ledger.sync_url, ledger_ca_file=ledger.ca, ledger_key_file=key, ledger_node_id=NODE_ID,
            ledger_public_key=ledger.public_key(v.root / "ledger.pub"))
    v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    wait_for(lambda: v.ctl_json("ledger", "status")["connected"], 30, "joined")
    return Story(ledger, v)


def leave(v, ledger):
    ledger.stop_following()
    with sqlite3.connect(v.state_dir / "vpsd.db") as db:
        for (u,) in db.execute("SELECT uuid FROM services"):
            libvirt_env.destroy_and_undefine(f"vpsd-{u}")
    assert v.stop(timeout=60) == 0, v.log_text()
    ledger.stop()


@pytest.fixture
def story(vpsd_factory, tmp_path, libvirt, bridge, test_guest):
    ledger = Ledger(tmp_path / "ledger")
    ledger.start()
    v = vpsd_factory()
    try:
        yield join(v, ledger, bridge, test_guest)
    finally:
        leave(v, ledger)


def test_the_whole_story(story):
    L, v = story.ledger, story.vpsd
    due = int(time.time()) + 25
    t0, months = month_before(due)
    L.set_now(t0)
    L.api("POST", "plans", {"name": "tiny", "price": 500, "vcpus": 1, "memory_mib": 256, "disk_gib": 1,
                            "cycle_months": months})
    L.api("POST", "accounts", {"id": "alice"})
    # No balance, no order.
    L.api("POST", "orders", {"account": "alice", "plan": "tiny", "hostname": "web1", "template": "tiny"},
          expect=402)
    assert story.wallet("alice") == (0, [])
    L.api("POST", "accounts/alice/top-up", {"amount": 500})
    o = L.api("POST", "orders", {"account": "alice", "plan": "tiny", "hostname": "web1", "template": "tiny"})
    u = o["uuid"]
    assert o["paid_until"] == due
    assert story.wallet("alice") == (0, [("top-up", 500), ("order", -500)])

    # The guest runs, and its one-time root password reaches the ledger.
    wait_for(lambda: domstate(u) == "running", 120, "guest running")
    wait_for(lambda: story.ledger_show(u)["node_state"] == "running", 60, "ledger told")
    pw = L.api("POST", f"services/{u}/root-password")
    assert len(pw["root_password"]) == 20
    L.api("POST", f"services/{u}/root-password", expect=404)  # once
    assert story.node_show(u)["paid_until"] == due

    # Renewal at the due date with too little balance: suspended on time,
    # by the node itself, at paid_until.
    v.ctl("policy", "set", "retention_s=3")
    L.follow_wall_clock()
    wait_for(lambda: story.node_show(u)["state"] in ("suspended", "removal-queued"), 60, "suspended")
    shown = story.node_show(u)
    assert due <= shown["suspended_at"] <= due + 1, (due, shown["suspended_at"])
    assert domstate(u) == "paused"
    wait_for(lambda: story.ledger_show(u)["state"] == "suspended", 30, "the ledger suspends too")
    # Node retention (3 s here) queues it for removal and tells the ledger.
    wait_for(lambda: story.node_show(u)["state"] == "removal-queued", 30, "removal-queued")
    wait_for(lambda: story.ledger_show(u)["node_state"] == "removal-queued", 30, "ledger told of removal")
    assert domstate(u) == "paused", "data kept"

    # Funds during retention: renewed from the wallet, running again in place.
    L.api("POST", "accounts/alice/top-up", {"amount": 500})
    wait_for(lambda: story.node_show(u)["state"] == "running", 60, "running again")
    assert domstate(u) == "running"
    paid2 = story.ledger_show(u)["paid_until"]
    assert paid2 > due and story.node_show(u)["paid_until"] == paid2
    assert story.wallet("alice") == (0, [("top-up", 500), ("order", -500), ("top-up", 500), ("renewal", -500)])

    # Expire again (the ledger's clock moves to the next due date): suspended
    # for non-payment; retention over: terminated, data gone, addresses freed.
    L.set_now(paid2 + 1)
    wait_for(lambda: story.node_show(u)["state"] == "suspended", 60, "suspended again")
    assert story.node_show(u)["suspend_kind"] == "ledger"
    L.set_now(paid2 + 3 * 86400 + 1)
    wait_for(lambda: story.node_show(u)["state"] == "terminated", 120, "terminated")
    assert domstate(u) is None
    assert story.ledger_show(u)["state"] == "terminated"
    assert u not in [x["uuid"] for x in L.api("GET", "services?account=alice")]
    assert u in [x["uuid"] for x in L.api("GET", "services?account=alice&all=true")]
    assert story.wallet("alice") == (0, [("top-up", 500), ("order", -500), ("top-up", 500), ("renewal", -500)])


def order(L, account="bob", balance=100000, price=100):
    L.api("POST", "plans", {"name": "p", "price": price, "vcpus": 1, "memory_mib": 256, "disk_gib": 1})
    L.api("POST", "accounts", {"id": account})
    L.api("POST", f"accounts/{account}/top-up", {"amount": balance})
    return L.api("POST", "orders", {"account": account, "plan": "p", "hostname": "h", "template": "tiny"})["uuid"]


def test_with_the_ledger_gone_a_lease_still_ends_on_time(story):
    L, v = story.ledger, story.vpsd
    due = int(time.time()) + 20
    t0, months = month_before(due)
    L.set_now(t0)
    L.api("POST", "plans", {"name": "tiny", "price": 500, "vcpus": 1, "memory_mib": 256, "disk_gib": 1,
                            "cycle_months": months})
    L.api("POST", "accounts", {"id": "carol"})
    L.api("POST", "accounts/carol/top-up", {"amount": 500})
    u = L.api("POST", "orders", {"account": "carol", "plan": "tiny", "hostname": "c", "template": "tiny"})["uuid"]
    wait_for(lambda: domstate(u) == "running", 120, "guest running")
    L.kill()  # kill -9: the node is on its own
    wait_for(lambda: not v.ctl_json("ledger", "status")["connected"], 30, "link down")
    wait_for(lambda: story.node_show(u)["state"] == "suspended", 60, "suspended")
    shown = story.node_show(u)
    assert due <= shown["suspended_at"] <= due + 1 and shown["suspend_kind"] == "lease"
    assert domstate(u) == "paused"
    # The ledger comes back: it hears what happened from the outbox.
    L.follow_wall_clock()
    L.start()
    wait_for(lambda: story.ledger_show(u)["node_state"] == "suspended", 60, "ledger told")


def test_kill9_of_both_during_a_stream_applies_each_command_once(story):
    L, v = story.ledger, story.vpsd
    L.follow_wall_clock()
    u = order(L)
    wait_for(lambda: domstate(u) == "running", 120, "guest running")
    rng = random.Random(7)
    renewals = 60
    for i in range(renewals):
        L.api("POST", "services/renew", {"services": [u]})
        if i % 15 == 7:
            time.sleep(rng.random() * 0.3)
            if rng.randrange(2):
                L.kill()
                L.start()
            else:
                v.proc.send_signal(signal.SIGKILL)
                v.proc.wait()
                v.start()
    last = L.api("GET", f"nodes/{NODE_ID}/commands")[-1]["seq"]
    wait_for(lambda: v.ctl_json("ledger", "status")["commands_finished_upto"] >= last, 120, "all applied")
    with sqlite3.connect(v.state_dir / "vpsd.db") as db:
        journal = db.execute("SELECT seq, kind, state FROM command_journal ORDER BY seq").fetchall()
        audit = dict(db.execute("SELECT actor, count(*) FROM audit_log WHERE actor LIKE 'ledger command %' "
                                "GROUP BY actor").fetchall())
    assert [j[0] for j in journal] == list(range(1, last + 1)), "every command journaled once, none skipped"
    assert all(state == "applied" for _, _, state in journal), journal
    renews = [seq for seq, kind, _ in journal if kind == "renew"]
    assert len(renews) == renewals
    assert all(audit.get(f"ledger command {seq}") == 1 for seq in renews), "each renew took effect once"
    assert story.node_show(u)["paid_until"] == story.ledger_show(u)["paid_until"]


def test_the_provider_corrects_a_lease_end(story):
    L, v = story.ledger, story.vpsd
    L.follow_wall_clock()
    u = order(L, account="dave", balance=100, price=100)
    wait_for(lambda: domstate(u) == "running", 120, "guest running")
    before = story.ledger_show(u)
    L.api("POST", f"services/{u}/paid-until", {"paid_until": int(time.time()) - 10}, expect=400)
    L.api("POST", f"services/{u}/paid-until", {"paid_until": "soon"}, expect=400)
    assert story.ledger_show(u) == before, "a refusal changes nothing"
    end = int(time.time()) + 8
    assert L.api("POST", f"services/{u}/paid-until", {"paid_until": end})["paid_until"] == end
    wait_for(lambda: story.node_show(u)["paid_until"] == end, 30, "the node has the new lease end")
    # The wallet is empty: at that second the node suspends it by itself.
    wait_for(lambda: story.node_show(u)["state"] == "suspended", 60, "suspended")
    assert end <= story.node_show(u)["suspended_at"] <= end + 1
    assert story.wallet("dave") == (0, [("top-up", 100), ("order", -100)])


def ordered_to_end_soon(L, account, seconds):
    """An order whose first cycle ends `seconds` from now (the ledger's clock
    set back by the cycle); the wallet holds that one cycle only."""
    due = int(time.time()) + seconds
    t0, months = month_before(due)
    L.set_now(t0)
    L.api("POST", "plans", {"name": "tiny", "price": 500, "vcpus": 1, "memory_mib": 256, "disk_gib": 1,
                            "cycle_months": months})
    L.api("POST", "accounts", {"id": account})
    L.api("POST", f"accounts/{account}/top-up", {"amount": 500})
    return L.api("POST", "orders", {"account": account, "plan": "tiny", "hostname": "c", "template": "tiny"})["uuid"], due


def test_with_the_link_cut_a_lease_still_ends_on_time(vpsd_factory, tmp_path, libvirt, bridge, test_guest):
    """The ledger in a network namespace of the test's own, reached over a
    veth pair; the link cut while a lease ends."""
    tag = os.getpid() % 10000
    ns, outside, inside = f"vpsdl{tag}", f"vlo{tag}", f"vli{tag}"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", ns)
        run("ip", "addr", "add", "10.213.0.1/30", "dev", outside)
        run("ip", "link", "set", outside, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", "10.213.0.2/30", "dev", inside)
        run("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        ledger = Ledger(tmp_path / "ledger", address="10.213.0.2", netns=ns)
        ledger.start()
        v = vpsd_factory()
        try:
            story = join(v, ledger, bridge, test_guest)
            u, due = ordered_to_end_soon(ledger, "erin", 25)
            wait_for(lambda: domstate(u) == "running", 120, "guest running")
            run("ip", "link", "set", outside, "down")  # the link is cut
            wait_for(lambda: story.node_show(u)["state"] == "suspended", 60, "suspended")
            shown = story.node_show(u)
            assert due <= shown["suspended_at"] <= due + 1 and shown["suspend_kind"] == "lease"
            assert domstate(u) == "paused"
            run("ip", "link", "set", outside, "up")  # and back: the ledger hears of it
            ledger.follow_wall_clock()
            wait_for(lambda: story.ledger_show(u)["node_state"] == "suspended", 120, "ledger told")
        finally:
            leave(v, ledger)
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
