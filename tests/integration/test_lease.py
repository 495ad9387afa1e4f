"""Leases enforced on the node with real TCG guests: a lease that ends
suspends the service on time with no ledger at all (vCPUs paused through
QMP, the port dropped by the filter), a renew lifts it in place, retention
queues it for removal (and autonomous removal terminates it), an operator's
suspension is held, and a suspended guest stays paused across a vpsd
restart and an outside resume."""

import json
import time

from test_guest_lifecycle import domstate, node, spec, tap_of, wait_for  # noqa: F401 (node is a fixture)
from test_network import set_elements


def show(v, u):
    return v.ctl_json("service", "show", u)


def events(node, u):
    with node.db() as db:
        return [json.loads(b)["state"] for (b,) in
                db.execute("SELECT body FROM outbox WHERE service_uuid = ? AND kind = 'state' ORDER BY seq",
                           (u,))]


def test_lease_end_suspends_on_time_and_renew_lifts_it(node):
    v = node.vpsd
    table = v.settings["nft_table"]
    paid_until = int(time.time()) + 4
    s = spec(paid_until=paid_until)
    node.provision(s)
    u = s["uuid"]
    assert show(v, u)["next"] == {"event": "suspend", "at": paid_until}
    wait_for(lambda: show(v, u)["state"] == "suspended", 30, "suspension")
    shown = show(v, u)
    # On time, by vpsd's own record (whole seconds), whatever the test's
    # polling saw.
    assert paid_until <= shown["suspended_at"] <= paid_until + 1, (paid_until, shown["suspended_at"])
    assert shown["suspend_kind"] == "lease" and shown["suspend_reason"] == "lease ended"
    assert shown["next"]["event"] == "removal-queued"
    assert shown["next"]["at"] == shown["suspended_at"] + 3 * 86400
    wait_for(lambda: domstate(u) == "paused", 30, "vCPUs paused")
    assert tap_of(u) in set_elements(table, "suspended"), "the port passes nothing"
    r = v.ctl("service", "start", u, check=False)
    assert r.returncode == 1 and f"service {u} is suspended" in r.stderr

    until = int(time.time()) + 3600
    v.ctl("service", "renew", u, str(until))
    wait_for(lambda: show(v, u)["state"] == "running", 30, "running again")
    assert domstate(u) == "running" and show(v, u)["paid_until"] == until
    assert tap_of(u) not in set_elements(table, "suspended")
    assert events(node, u) == ["running", "suspended", "running"]
    with node.db() as db:
        activity = [a for (a,) in db.execute("SELECT action FROM activity_log ORDER BY id")]
    assert activity[-2:] == ["suspended for non-payment", "unsuspended"]


def test_retention_queues_for_removal_and_autonomous_removal_terminates(node):
    v = node.vpsd
    policy = v.ctl_json("policy", "set", "retention_s=2")
    assert policy == {"grace_s": 0, "retention_s": 2, "autonomous_removal": False}
    s = spec(paid_until=int(time.time()) + 1)
    node.provision(s)
    u = s["uuid"]
    wait_for(lambda: show(v, u)["state"] == "removal-queued", 30, "removal-queued")
    assert domstate(u) == "paused", "data is kept until the ledger terminates"
    assert events(node, u)[-2:] == ["suspended", "removal-queued"]
    with node.db() as db:
        queued = [json.loads(b) for (b,) in db.execute(
            "SELECT body FROM outbox WHERE service_uuid = ? AND kind = 'removal-queued'", (u,))]
    assert [q["remove_after"] for q in queued] == [0], "the node removes nothing on its own by default"
    # Funds during retention: the ledger renews, the service runs again.
    v.ctl("service", "renew", u, str(int(time.time()) + 3600))
    wait_for(lambda: show(v, u)["state"] == "running", 30, "running again")

    v.ctl("policy", "set", "autonomous_removal=true", "retention_s=1")
    v.ctl("service", "renew", u, str(int(time.time())))
    wait_for(lambda: show(v, u)["state"] == "terminated", 60, "terminated by the node")
    assert domstate(u) is None


def test_operator_suspension_is_held_and_enforced(node):
    v = node.vpsd
    v.ctl("policy", "set", "retention_s=1")
    s = spec(paid_until=int(time.time()) + 3600)
    node.provision(s)
    u = s["uuid"]
    # The monitor answers once QEMU is up.
    wait_for(lambda: v.ctl("service", "pause", u, check=False).returncode == 0, 60, "monitor")
    v.ctl("service", "resume", u)
    assert v.ctl("service", "suspend", u, "--reason", "abuse ticket 42").stdout.strip() == \
        f"service {u}: suspended"
    assert domstate(u) == "paused"
    time.sleep(2.5)
    shown = show(v, u)
    assert shown["state"] == "suspended" and shown["suspend_kind"] == "operator", "no retention for abuse holds"
    assert shown["suspend_reason"] == "abuse ticket 42" and shown["next"] is None

    # Across a restart of vpsd and a resume around it, it stays paused.
    assert v.stop() == 0
    v.start()
    v.wait_log("reconcile: done", timeout=60)
    import libvirt_env
    libvirt_env.virsh("resume", f"vpsd-{u}")
    wait_for(lambda: domstate(u) == "paused", 30, "paused again")
    assert "pausing a suspended guest" in v.log_text(this_run=True)

    assert v.ctl("service", "unsuspend", u).stdout.strip() == f"service {u}: running"
    assert domstate(u) == "running" and show(v, u)["state"] == "running"
    with node.db() as db:
        (detail,) = db.execute("SELECT detail FROM audit_log WHERE action = 'suspend' AND target = ?",
                               (u,)).fetchone()
    assert detail == "abuse ticket 42"


def test_bad_lease_requests_change_nothing(node):
    v = node.vpsd
    s = spec(paid_until=int(time.time()) + 3600)
    node.provision(s)
    u = s["uuid"]
    for args, message in [
        (("policy", "set", "grace_s=-1"), "grace_s: -1 is not within"),
        (("policy", "set", "retention_s=99999999999"), "retention_s"),
        (("policy", "set", "colour=blue"), "not a number, true or false"),
        (("policy", "set", "colour=1"), "unknown key `colour`"),
        (("service", "renew", u, "tomorrow"), "is not a time"),
        (("service", "suspend", u, "--reason", "a\x01b"), "no control characters"),
    ]:
        r = v.ctl(*args, check=False)
        assert r.returncode in (1, 2) and message in r.stderr, (args, r.stderr)
    assert v.ctl_json("policy", "show") == {"grace_s": 0, "retention_s": 259200, "autonomous_removal": False}
    assert show(v, u)["state"] == "running" and show(v, u)["paid_until"] == s["paid_until"]
