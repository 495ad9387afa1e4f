"""vps-ledger on the command line with a fake clock (--now): the whole money
story of a service, with the wallet and its credit log checked exactly at
every step, and the commands journaled for the node; plus orders without
balance, pro-rata plan changes, the disk-shrink confirmation, promise to
pay, bulk renewal, transfer and capacity."""
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "build" / "vps-ledger"

T0 = 1735732800            # 2025-01-01 12:00 UTC
FEB1 = 1738411200          # 2025-02-01 12:00
MAR1 = 1740830400          # 2025-03-01 12:00
APR1 = 1743508800          # 2025-04-01 12:00
DAY = 86400


class Ledger:
    def __init__(self, db):
        self.db = db

    def run(self, *args, now=T0, ok=True):
        p = subprocess.run([str(LEDGER), "--db", str(self.db), "--now", str(now), *map(str, args)],
                           capture_output=True, text=True, timeout=30)
        if ok:
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout)
        assert p.returncode != 0, p.stdout
        return p

    def wallet(self, account):
        a = self.run("account", "show", account)
        return a["balance"], [(e["kind"], e["amount"], e["balance_after"]) for e in a["log"]]

    def commands(self, node="n1"):
        return [(c["kind"], c["service"], json.loads(c["body"])) for c in self.run("node", "commands", node)]


@pytest.fixture
def ledger(tmp_path):
    if not LEDGER.exists():
        pytest.fail(f"{LEDGER} is missing: run make first")
    lg = Ledger(tmp_path / "ledger.db")
    lg.run("plan", "create", "small", "--price", "10", "--vcpus", 1, "--memory-mib", 1024, "--disk-gib", 20)
    lg.run("plan", "create", "big", "--price", "20.00", "--vcpus", 2, "--memory-mib", 2048, "--disk-gib", 40)
    lg.run("node", "add", "n1", "--vcpus", 8, "--memory-mib", 8192, "--disk-gib", 200,
           "--pool", "192.0.2.0/29,192.0.2.1", "--pool", "2001:db8::/64,2001:db8::1")
    lg.run("account", "create", "alice", "--name", "Alice")
    return lg


def test_money_story(ledger):
    ledger.run("account", "top-up", "alice", "15")
    assert ledger.wallet("alice") == (1500, [("top-up", 1500, 1500)])

    svc = ledger.run("order", "alice", "small", "--hostname", "web1", "--ssh-key", "ssh-ed25519 AAAA a@b")
    uuid = svc["uuid"]
    assert (svc["state"], svc["period_start"], svc["paid_until"], svc["price"]) == ("active", T0, FEB1, 1000)
    assert [a["address"] for a in svc["addresses"]] == ["192.0.2.2", "2001:db8::2"]
    assert ledger.wallet("alice") == (500, [("top-up", 1500, 1500), ("order", -1000, 500)])
    (kind, service, body), = ledger.commands()
    assert (kind, service, body["seq"]) == ("provision", uuid, 1)
    assert body["spec"]["paid_until"] == FEB1 and body["spec"]["ssh_keys"] == ["ssh-ed25519 AAAA a@b"]

    ledger.run("account", "top-up", "alice", "5.00", now=T0 + DAY)
    assert ledger.run("tick", now=FEB1 - 1) == {"actions": []}

    # Due with enough in the wallet: renewed from it.
    t = ledger.run("tick", now=FEB1)
    assert t["actions"] == [{"service": uuid, "action": "renew", "paid_until": MAR1, "amount": 1000}]
    assert ledger.wallet("alice") == (0, [("top-up", 1500, 1500), ("order", -1000, 500),
                                          ("top-up", 500, 1000), ("renewal", -1000, 0)])
    s = ledger.run("service", "show", uuid)
    assert (s["state"], s["period_start"], s["paid_until"]) == ("active", FEB1, MAR1)

    # Due with too little: suspended, no money moves.
    t = ledger.run("tick", now=MAR1)
    assert t["actions"] == [{"service": uuid, "action": "suspend"}]
    assert ledger.run("service", "show", uuid)["state"] == "suspended"
    assert ledger.wallet("alice")[0] == 0 and len(ledger.wallet("alice")[1]) == 4

    # Funds during retention: renewed and unsuspended by the top-up itself.
    t = ledger.run("account", "top-up", "alice", "10", now=MAR1 + DAY)
    assert t["actions"] == [{"service": uuid, "action": "renew+unsuspend", "paid_until": APR1, "amount": 1000}]
    s = ledger.run("service", "show", uuid)
    assert (s["state"], s["period_start"], s["paid_until"]) == ("active", MAR1, APR1)
    assert ledger.wallet("alice") == (0, [("top-up", 1500, 1500), ("order", -1000, 500), ("top-up", 500, 1000),
                                          ("renewal", -1000, 0), ("top-up", 1000, 1000), ("renewal", -1000, 0)])

    # Expires again; retention runs out: terminated, hidden, kept for admins.
    assert ledger.run("tick", now=APR1)["actions"] == [{"service": uuid, "action": "suspend"}]
    assert ledger.run("tick", now=APR1 + 3 * DAY - 1) == {"actions": []}
    assert ledger.run("tick", now=APR1 + 3 * DAY)["actions"] == [{"service": uuid, "action": "terminate"}]
    assert ledger.run("tick", now=APR1 + 30 * DAY) == {"actions": []}
    assert ledger.run("service", "list", "--account", "alice") == []
    (ended,) = ledger.run("service", "list", "--all")
    assert (ended["uuid"], ended["state"], ended["addresses"]) == (uuid, "terminated", [])
    balance, log = ledger.wallet("alice")
    assert balance == 0 and len(log) == 6 and sum(e[1] for e in log) == 0

    # What the node was told, in order, each with the next seq.
    sent = ledger.commands()
    assert [(k, b["seq"]) for k, _, b in sent] == [("provision", 1), ("renew", 2), ("suspend", 3), ("renew", 4),
                                                   ("unsuspend", 5), ("suspend", 6), ("terminate", 7)]
    assert [b["paid_until"] for k, _, b in sent if k == "renew"] == [MAR1, APR1]
    assert sent[2][2]["reason"] == "unpaid"

    # The freed addresses go to the next order.
    ledger.run("account", "top-up", "alice", "10", now=APR1 + 4 * DAY)
    again = ledger.run("order", "alice", "small", "--hostname", "web2", now=APR1 + 4 * DAY)
    assert [a["address"] for a in again["addresses"]] == ["192.0.2.2", "2001:db8::2"]


def test_no_balance_no_order(ledger):
    ledger.run("account", "top-up", "alice", "9.99")
    p = ledger.run("order", "alice", "small", "--hostname", "web1", ok=False)
    assert p.returncode == 1 and "insufficient balance: 999 cents, 1000 needed" in p.stderr
    assert ledger.wallet("alice") == (999, [("top-up", 999, 999)])
    assert ledger.run("service", "list", "--all") == [] and ledger.commands() == []
    p = ledger.run("order", "bob", "small", "--hostname", "web1", ok=False)
    assert "account `bob`: no such account" in p.stderr


def test_plan_change_pro_rata(ledger):
    jan1 = 1735689600  # 2025-01-01 00:00, a 31-day cycle
    ledger.run("account", "top-up", "alice", "30", now=jan1)
    uuid = ledger.run("order", "alice", "small", "--hostname", "web1", now=jan1)["uuid"]
    # An hour in: 10.00 more a cycle for 743 of 744 hours is 9.9866, rounded up.
    up = ledger.run("service", "change-plan", uuid, "big", now=jan1 + 3600)
    assert up["amount"] == 999 and up["service"]["price"] == 2000 and up["service"]["plan"] == "big"
    # Back down at the same moment: the credit rounds down.
    p = ledger.run("service", "change-plan", uuid, "small", now=jan1 + 3600, ok=False)
    assert "smaller disk" in p.stderr and "confirm" in p.stderr
    down = ledger.run("service", "change-plan", uuid, "small", "--confirm-disk-shrink", now=jan1 + 3600)
    assert down["amount"] == -998
    assert ledger.wallet("alice") == (3000 - 1000 - 999 + 998, [("top-up", 3000, 3000), ("order", -1000, 2000),
                                                                ("upgrade", -999, 1001), ("downgrade", 998, 1999)])
    resizes = [b for k, _, b in ledger.commands() if k == "resize"]
    assert [r["plan"]["disk_gib"] for r in resizes] == [40, 20]
    assert [r["confirm_disk_shrink"] for r in resizes] == [False, True]


def test_promise_to_pay(ledger):
    ledger.run("account", "top-up", "alice", "10")
    uuid = ledger.run("order", "alice", "small", "--hostname", "web1")["uuid"]
    p = ledger.run("service", "promise", uuid, now=FEB1 - 3 * DAY - 1, ok=False)
    assert "last 3 days" in p.stderr
    s = ledger.run("service", "promise", uuid, now=FEB1 - 2 * DAY)
    assert (s["paid_until"], s["promised_until"]) == (FEB1, FEB1 + 7 * DAY)
    assert "already" in ledger.run("service", "promise", uuid, now=FEB1 - DAY, ok=False).stderr
    assert ledger.commands()[-1][2]["paid_until"] == FEB1 + 7 * DAY
    assert ledger.run("tick", now=FEB1 + 7 * DAY - 1) == {"actions": []}
    # Paid at last: the cycle runs from the original due date.
    ledger.run("account", "top-up", "alice", "10", now=FEB1 + 6 * DAY)
    t = ledger.run("tick", now=FEB1 + 7 * DAY)
    assert t["actions"] == [{"service": uuid, "action": "renew", "paid_until": MAR1, "amount": 1000}]
    assert ledger.run("service", "show", uuid)["promised_until"] == 0


def test_bulk_renewal_all_or_none(ledger):
    ledger.run("account", "top-up", "alice", "30")
    a = ledger.run("order", "alice", "small", "--hostname", "a")["uuid"]
    b = ledger.run("order", "alice", "small", "--hostname", "b")["uuid"]
    p = ledger.run("service", "renew", a, b, ok=False)
    assert "insufficient balance" in p.stderr
    assert ledger.wallet("alice")[0] == 1000
    assert ledger.run("service", "show", a)["paid_until"] == FEB1
    ledger.run("account", "top-up", "alice", "10")
    r = ledger.run("service", "renew", a, b)
    assert [x["paid_until"] for x in r["actions"]] == [MAR1, MAR1]
    assert ledger.wallet("alice")[0] == 0
    assert ledger.run("service", "renew", a, a, ok=False).returncode == 1


def test_transfer(ledger):
    ledger.run("account", "create", "bob")
    ledger.run("account", "top-up", "alice", "10")
    uuid = ledger.run("order", "alice", "small", "--hostname", "web1")["uuid"]
    ledger.run("service", "transfer", uuid, "bob")
    assert ledger.run("service", "list", "--account", "alice") == []
    assert [s["uuid"] for s in ledger.run("service", "list", "--account", "bob")] == [uuid]
    assert ledger.commands()[-1][2] == {"v": 1, "kind": "transfer", "seq": 2, "service": uuid, "account_id": "bob"}
    assert "no such account" in ledger.run("service", "transfer", uuid, "carol", ok=False).stderr


def test_capacity_and_addresses(ledger):
    ledger.run("account", "top-up", "alice", "1000")
    # The /29 has five addresses for services; memory allows eight small ones.
    for i in range(5):
        ledger.run("order", "alice", "small", "--hostname", f"h{i}")
    p = ledger.run("order", "alice", "small", "--hostname", "h5", ok=False)
    assert "no node has room" in p.stderr and "IPv4" in p.stderr
    assert ledger.wallet("alice")[0] == 100000 - 5 * 1000
    ledger.run("node", "add", "n2", "--vcpus", 2, "--memory-mib", 2048, "--disk-gib", 100,
               "--pool", "198.51.100.0/24,198.51.100.1")
    s = ledger.run("order", "alice", "big", "--hostname", "h6")
    assert s["node"] == "n2" and [a["address"] for a in s["addresses"]] == ["198.51.100.2"]
    p = ledger.run("order", "alice", "big", "--hostname", "h7", ok=False)
    assert "no node has room for 2 vCPUs" in p.stderr


def test_usage_errors(ledger):
    p = ledger.run("account", "top-up", "alice", "1.234", ok=False)
    assert p.returncode == 2
    p = ledger.run("service", "list", "--bogus", ok=False)
    assert p.returncode == 2 and "--bogus" in p.stderr
    p = ledger.run("frobnicate", ok=False)
    assert p.returncode == 2
