"""The node's sync client against a ledger-side peer written from
docs/sync-protocol.md (tests/lib/sync_proto.py), which sends what a real
ledger never would: forged, tampered, replayed, reordered, oversized and
binary messages. The whole story with the real vps-ledger is in
test_billing_e2e.py."""

import json
import os
import queue
import signal
import sqlite3
import time

import pytest

import memcheck
import store_rows
import sync_proto
from sync_proto import LedgerPeer

NODE_ID = "node-a"


@pytest.fixture
def ledger_node(vpsd_factory, tmp_path):
    """A vpsd joined to a peer ledger, the handshake done."""
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID)
    key = peer.key_file(v.root / "ledger.key")
    v.start(ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    conn = peer.accept()
    yield v, peer, conn
    assert v.stop() == 0, v.log_text()
    peer.close()


def db(v):
    return sqlite3.connect(f"file:{v.state_dir / 'vpsd.db'}?mode=ro", uri=True)


def policy(seq, grace=0, retention=3 * 86400, autonomous=False):
    return {"kind": "set-policy", "seq": seq, "grace_seconds": grace, "retention_seconds": retention,
            "autonomous_removal": autonomous}


def ack_of(conn, seq, timeout=30):
    return conn.recv_until(lambda m: m["kind"] == "command-ack" and m["seq"] == seq, timeout, seen_before=True)


def audit_count(v, seq):
    with db(v) as d:
        return d.execute("SELECT count(*) FROM audit_log WHERE actor = ?", (f"ledger command {seq}",)).fetchone()[0]


def test_handshake_inventory_and_a_command(ledger_node):
    v, peer, conn = ledger_node
    assert conn.auth["last_command_seq"] == 0
    inv = conn.recv_until(lambda m: m["kind"] == "inventory")
    assert inv["services"] == []
    conn.send(policy(1, grace=3600, retention=86400))
    ack = ack_of(conn, 1)
    assert ack["result"] == "applied"
    assert v.ctl_json("policy", "show") == {"grace_s": 3600, "retention_s": 86400, "autonomous_removal": False}
    result = conn.recv_until(lambda m: m["kind"] == "result", seen_before=True)
    assert result["command_seq"] == 1 and result["op"] == "set-policy" and result["ok"] is True
    status = v.ctl_json("ledger", "status")
    assert status["connected"] is True and status["last_command_seq"] == 1
    assert status["commands_finished_upto"] == 1


def test_a_resent_command_is_acked_again_never_applied_twice(ledger_node):
    v, peer, conn = ledger_node
    conn.send(policy(1, grace=60))
    assert ack_of(conn, 1)["result"] == "applied"
    conn.send(policy(1, grace=120))  # the ledger lost the ack and resends
    assert ack_of(conn, 1)["result"] == "applied"
    assert v.ctl_json("policy", "show")["grace_s"] == 60
    assert audit_count(v, 1) == 1
    # After a reconnect the node says where its journal ends.
    conn.close()
    conn = peer.accept()
    assert conn.auth["last_command_seq"] == 1
    conn.send(policy(2, grace=90))
    assert ack_of(conn, 2)["result"] == "applied"
    assert v.ctl_json("policy", "show")["grace_s"] == 90


def test_bad_messages_are_refused_and_change_nothing(ledger_node):
    v, peer, conn = ledger_node
    conn.recv_until(lambda m: m["kind"] == "inventory")
    s = conn.session

    def refused(text=None, code=None, send=None):
        (send or conn.send_text)(text)
        err = conn.recv_until(lambda m: m["kind"] == "error")
        assert err["code"] == code, err

    forged = s.build(policy(1, grace=1), key=os.urandom(32))
    refused(forged, "bad-mac")
    good = json.loads(s.build(policy(1, grace=2)))
    tampered = dict(good, grace_seconds=3)
    refused(sync_proto.canonical(tampered).decode(), "bad-mac")
    truncated = s.build(policy(1, grace=4))[:-20]
    refused(truncated, "malformed")
    refused(s.build(policy(3, grace=5)), "out-of-order")
    refused(s.build({"kind": "renew", "seq": 1, "service": "not-a-uuid", "paid_until": 1}), "malformed")
    refused(s.build({"kind": "set-policy", "seq": 1, "grace_seconds": 1}), "malformed")
    refused(s.build({"kind": "event-ack", "seq": 99}), "out-of-order")
    refused(s.build({"kind": "inventory", "seq": 1, "at": 1, "services": []}), "malformed")
    big = s.build({"kind": "suspend", "seq": 1, "service": "0" * 36, "reason": "x" * (600 * 1024)})
    refused(big, "oversized")
    refused("[1, 2]", "malformed")

    def binary(_):
        import asyncio
        asyncio.run_coroutine_threadsafe(conn.ws.send(b"\x00\x01"), peer.loop).result(10)
    refused(None, "malformed", send=binary)
    # A replay of a message already accepted: n is not above the last.
    text = s.build(policy(1, grace=7))
    conn.send_text(text)
    assert ack_of(conn, 1)["result"] == "applied"
    refused(text, "replayed")

    with db(v) as d:
        assert d.execute("SELECT seq, body FROM command_journal").fetchall()[0][0] == 1
        assert d.execute("SELECT count(*) FROM command_journal").fetchone()[0] == 1
    assert v.ctl_json("policy", "show")["grace_s"] == 7
    assert not conn.closed.is_set(), "the connection survives what it can"
    assert "sync: message refused" in v.log_text() and "code=bad-mac" in v.log_text()
    # What it cannot: another version of the protocol ends the session.
    refused(json.dumps({"v": 2, "kind": "renew"}), "unsupported-version")
    assert conn.closed.wait(10)
    conn = peer.accept()
    assert conn.auth["last_command_seq"] == 1


def test_sixteen_refusals_close_the_session(ledger_node):
    v, peer, conn = ledger_node
    for _ in range(16):
        conn.send_text(conn.session.build(policy(1), key=os.urandom(32)))
    assert conn.closed.wait(20), "closed after 16 refusals"
    conn = peer.accept()  # and it comes back, a new session
    conn.send(policy(1, grace=11))
    assert ack_of(conn, 1)["result"] == "applied"


def test_a_ledger_without_the_key_gets_nothing(vpsd_factory, tmp_path):
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID, prove_with=os.urandom(32))
    key = peer.key_file(v.root / "ledger.key")
    v.start(ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    failure, conn = peer.accept_failure()
    assert failure is not None, "the node never sends auth to a ledger that cannot prove the key"
    v.wait_log("the ledger's proof is wrong")
    assert v.ctl_json("ledger", "status")["connected"] is False
    assert v.stop() == 0
    peer.close()


def test_a_wrong_ca_is_never_trusted(vpsd_factory, tmp_path):
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path / "a", NODE_ID)
    other_ca, _, _ = sync_proto.make_tls(tmp_path / "other")
    key = peer.key_file(v.root / "ledger.key")
    v.start(ledger_url=peer.url, ledger_ca_file=other_ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    v.wait_log("sync: cannot reach the ledger")
    with pytest.raises(queue.Empty):
        peer.connections.get(timeout=2)
    assert v.stop() == 0
    peer.close()


@pytest.mark.parametrize("mode,content", [(0o644, None), (0o600, "not base64url!\n"), (0o600, "c2hvcnQ\n")])
def test_the_key_file_must_be_private_and_well_formed(vpsd_factory, tmp_path, mode, content):
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID)
    key = peer.key_file(v.root / "ledger.key")
    if content:
        key.write_text(content)
    os.chmod(key, mode)
    v.start(wait=False, ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    assert v.proc.wait(30) == 1
    assert "ledger_key_file" in v.log_text()
    assert sync_proto.b64u(peer.key) not in v.log_text()
    peer.close()


def test_config_needs_every_ledger_key(vpsd_factory):
    v = vpsd_factory()
    v.write_config(ledger_url="wss://127.0.0.1:1/sync")
    from conftest import VPSD
    import subprocess
    r = subprocess.run([str(VPSD), "-c", str(v.config), "--check-config"], capture_output=True, text=True)
    assert r.returncode == 1 and "ledger_url needs ledger_ca_file, ledger_key_file and ledger_node_id" in r.stderr
    v.write_config(ledger_url="https://x/sync", ledger_ca_file="/x", ledger_key_file="/y", ledger_node_id="n")
    r = subprocess.run([str(VPSD), "-c", str(v.config), "--check-config"], capture_output=True, text=True)
    assert r.returncode == 1 and "must be wss://HOST[:PORT][/PATH]" in r.stderr


def test_kill9_during_a_stream_applies_every_command_once(ledger_node):
    v, peer, conn = ledger_node
    total = 200
    for seq in range(1, 101):
        conn.send(policy(seq, grace=seq))
    time.sleep(0.05)
    v.proc.send_signal(signal.SIGKILL)
    v.proc.wait()
    conn.closed.wait(20)
    v.start()
    conn = peer.accept()
    last = conn.auth["last_command_seq"]
    assert 0 <= last <= 100
    # The ledger resends from the node's last journaled seq on.
    for seq in range(last + 1, total + 1):
        conn.send(policy(seq, grace=seq))
    ack_of(conn, total, timeout=120)
    with db(v) as d:
        rows = d.execute("SELECT seq, state FROM command_journal ORDER BY seq").fetchall()
        audit = dict(d.execute("SELECT actor, count(*) FROM audit_log WHERE actor LIKE 'ledger command %' "
                               "GROUP BY actor").fetchall())
        results = d.execute("SELECT body FROM outbox WHERE kind = 'result'").fetchall()
    assert [r[0] for r in rows] == list(range(1, total + 1))
    assert all(state == "applied" for _, state in rows)
    assert all(audit.get(f"ledger command {seq}") == 1 for seq in range(1, total + 1)), audit
    seqs = sorted(json.loads(b)["command_seq"] for (b,) in results)
    assert seqs == list(range(1, total + 1)), "one result per command"
    assert v.ctl_json("policy", "show")["grace_s"] == total


def test_ledger_commands_drive_a_real_guest(vpsd_factory, tmp_path, libvirt, bridge, test_guest):
    """provision → result with the root password (sealed in the outbox until
    stored, then gone); suspend and renew/unsuspend; a long command on one
    service does not hold back another; terminate."""
    from test_guest_lifecycle import domstate, spec
    import libvirt_env

    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID)
    key = peer.key_file(v.root / "ledger.key")
    v.start(hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=30,
            ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    conn = peer.accept()
    s = spec(paid_until=int(time.time()) + 3600)
    u = s["uuid"]
    try:
        conn.send({"kind": "provision", "seq": 1, "service": u, "spec": s})
        # Node-wide and other-service commands do not wait for the provision.
        conn.send(policy(2, grace=5))
        conn.send({"kind": "renew", "seq": 3, "service": u, "paid_until": int(time.time()) + 7200})
        result = conn.recv_until(lambda m: m["kind"] == "result" and m["command_seq"] == 2, ack_events=False)
        assert result["ok"] is True
        # The provision's result: the password, sealed at rest until acked.
        result = conn.recv_until(lambda m: m["kind"] == "result" and m["command_seq"] == 1, timeout=180,
                                 ack_events=False)
        assert result["ok"] is True and len(result["root_password"]) == 20
        password = result["root_password"]
        raw = b"".join(p.read_bytes() for p in v.state_dir.glob("vpsd.db*"))
        assert password.encode() not in raw, "never in clear on disk"
        with db(v) as d:
            assert d.execute("SELECT sealed_secret IS NOT NULL FROM outbox WHERE seq = ?",
                             (result["seq"],)).fetchone()[0] == 1
        conn.send({"kind": "event-ack", "seq": result["seq"]})
        ack_of(conn, 3)
        with db(v) as d:
            for _ in range(100):
                if d.execute("SELECT count(*) FROM outbox WHERE sealed_secret IS NOT NULL").fetchone()[0] == 0:
                    break
                time.sleep(0.1)
            assert d.execute("SELECT count(*) FROM outbox WHERE sealed_secret IS NOT NULL").fetchone()[0] == 0
        assert domstate(u) == "running"
        assert v.ctl_json("service", "show", u)["paid_until"] > time.time() + 3600
        conn.send({"kind": "suspend", "seq": 4, "service": u, "reason": "unpaid"})
        ack_of(conn, 4)
        assert domstate(u) == "paused"
        assert v.ctl_json("service", "show", u)["suspend_kind"] == "ledger"
        conn.send({"kind": "unsuspend", "seq": 5, "service": u})
        ack_of(conn, 5)
        assert domstate(u) == "running"
        conn.send({"kind": "transfer", "seq": 6, "service": u, "account_id": "acct-7"})
        ack_of(conn, 6)
        assert v.ctl_json("service", "show", u)["account_id"] == "acct-7"
        booted = v.ctl_json("service", "show", u)["booted_at"]
        conn.send({"kind": "power", "seq": 7, "service": u, "action": "restart"})
        ack_of(conn, 7, timeout=120)
        assert domstate(u) == "running" and v.ctl_json("service", "show", u)["booted_at"] >= booted
        plan = dict(s["plan"], port_speed_mbit=20)
        conn.send({"kind": "resize", "seq": 8, "service": u, "plan": plan, "confirm_disk_shrink": False})
        assert ack_of(conn, 8)["result"] == "applied"
        assert v.ctl_json("service", "show", u)["plan"]["port_speed_mbit"] == 20
        conn.send({"kind": "reinstall", "seq": 9, "service": u, "template": "tiny", "ssh_keys": s["ssh_keys"]})
        again = conn.recv_until(lambda m: m["kind"] == "result" and m["command_seq"] == 9, timeout=180,
                                seen_before=True)
        assert again["ok"] is True and len(again["root_password"]) == 20 and again["root_password"] != password
        conn.send({"kind": "power", "seq": 10, "service": u, "action": "jump"})
        conn.recv_until(lambda m: m["kind"] == "error" and m["code"] == "malformed", seen_before=True)
        conn.send({"kind": "terminate", "seq": 10, "service": u})
        ack_of(conn, 10, timeout=120)
        assert domstate(u) is None and v.ctl_json("service", "show", u)["state"] == "terminated"
        conn.recv_until(lambda m: m["kind"] == "state" and m["state"] == "terminated", seen_before=True)
        states = [m["state"] for m in peer.events if m["kind"] == "state" and m["service"] == u]
        assert states[-3:] == ["suspended", "running", "terminated"], states
    finally:
        libvirt_env.destroy_and_undefine(f"vpsd-{u}")
        assert v.stop(timeout=60) == 0, v.log_text()
        peer.close()


def test_valgrind_clean_sync_client(vpsd_factory, tmp_path):
    """vpsd under valgrind through a session, refusals, a lost connection
    and a stop: no invalid access, no definite leak (lws on vpsd's loop
    included)."""
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID)
    key = peer.key_file(v.root / "ledger.key")
    v.start(prefix=memcheck.prefix(), wait=False,
            ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID)
    v.wait_ready(timeout=120)
    conn = peer.accept(timeout=120)
    conn.send(policy(1, grace=30))
    ack_of(conn, 1, timeout=120)
    conn.send_text(conn.session.build(policy(2), key=os.urandom(32)))
    conn.recv_until(lambda m: m["kind"] == "error", timeout=120)
    conn.close()
    conn = peer.accept(timeout=120)
    conn.send(policy(2, grace=40))
    ack_of(conn, 2, timeout=120)
    assert v.stop(timeout=120) == 0, v.log_text()
    peer.close()


def test_usage_reports_send_each_whole_bucket_once(vpsd_factory, tmp_path):
    """Traffic buckets sampled whole go to the ledger as usage events, each
    once; the bucket still filling waits."""
    v = vpsd_factory()
    peer = LedgerPeer(tmp_path, NODE_ID)
    key = peer.key_file(v.root / "ledger.key")
    v.start()
    assert v.stop() == 0
    u = "3f0c1f3e-2f6a-4a8e-9a52-0d1d2c3b4a59"
    now = int(time.time())
    done = (now - 3600) // 300 * 300
    filling = now // 300 * 300
    with sqlite3.connect(v.state_dir / "vpsd.db") as d:
        store_rows.insert_service(d, u, "acct", "stopped", hostname="h", mac="52:54:00:aa:bb:cc")
        sid = d.execute("SELECT id FROM services WHERE uuid = ?", (u,)).fetchone()[0]
        for start, n in ((done, 1000), (done + 300, 2000), (filling, 5)):
            d.execute("INSERT INTO traffic_buckets VALUES (?, 300, ?, ?, ?, ?, ?)", (sid, start, n, 1, 2 * n, 2))
    v.start(ledger_url=peer.url, ledger_ca_file=peer.ca, ledger_key_file=key, ledger_node_id=NODE_ID,
            ledger_usage_interval=1, traffic_interval=1)
    conn = peer.accept()
    usage = conn.recv_until(lambda m: m["kind"] == "usage")
    assert usage["service"] == u
    assert [(b["start"], b["size"], b["in_bytes"], b["out_bytes"]) for b in usage["buckets"]] == \
        [(done, 300, 1000, 2000), (done + 300, 300, 2000, 4000)]
    # A few more report rounds: nothing is sent twice.
    time.sleep(3)
    while True:
        try:
            m = conn.recv(timeout=1)
        except queue.Empty:
            break
        assert m["kind"] != "usage" or all(b["start"] >= filling for b in m["buckets"]), m
    assert v.stop() == 0
    peer.close()
