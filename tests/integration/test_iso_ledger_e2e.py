"""A customer ISO's whole story with both real processes: vps-ledger
serving its API and sync endpoint, vpsd joined to it with its edge
(vpsd-edge) and a real TCG guest. The ledger mints the upload ticket for
the service's owner only; the ISO (made with xorriso) goes through the
node's edge; its `uploaded` event reaches the ledger; the ledger approves,
mounts it into the running guest (QMP query-block shows it), ejects and
deletes it; a set-policy with an ISO quota sent through the ledger limits
the next upload. The ledger's clock follows the wall clock: the node
checks a ticket's times against its own. Waits are "until", never timed."""

import hashlib
import os
import sqlite3
from urllib.parse import parse_qs, urlparse

import pytest

import edge_harness
import libvirt_env
from ledger_harness import Ledger
from test_guest_lifecycle import domstate, wait_for
from test_iso import cdrom, make_iso, upload

NODE_ID = "node-iso"


class Site:
    """The ledger, the node, and the customer's view through the ledger."""

    def __init__(self, ledger, vpsd, port):
        self.ledger, self.vpsd, self.port = ledger, vpsd, port

    def isos(self, account="alice"):
        return {i["id"]: i for i in self.ledger.api("GET", f"accounts/{account}/isos")}

    def node_isos(self):
        return {i["id"]: i for i in self.vpsd.ctl_json("iso", "list")["isos"]}

    def ticket(self, account, max_bytes, expect=None):
        return self.ledger.api("POST", f"accounts/{account}/iso-upload-ticket",
                               {"node": NODE_ID, "max_bytes": max_bytes}, expect=expect)

    def upload(self, ticket, path, label):
        """Through the URL the ledger gave: the node's edge, PUT /iso/upload."""
        url = urlparse(ticket["url"])
        assert (url.scheme, url.hostname, url.port, url.path) == ("https", "127.0.0.1", self.port, "/iso/upload")
        assert parse_qs(url.query)["ticket"] == [ticket["ticket"]]
        return upload(self.port, ticket["ticket"], path, label=label)

    def acked(self):
        """Every command the ledger queued for the node is acked."""
        node = [n for n in self.ledger.api("GET", "nodes") if n["id"] == NODE_ID][0]
        return node["acked_command_seq"] == node["last_command_seq"]


@pytest.fixture
def site(vpsd_factory, tmp_path, libvirt, bridge, test_guest):
    ledger = Ledger(tmp_path / "ledger")
    ledger.follow_wall_clock()
    ledger.start()
    v = vpsd_factory()
    port = edge_harness.free_port()
    try:
        node = ledger.api("POST", "nodes", {"id": NODE_ID, "vcpus": 8, "memory_mib": 8192, "disk_gib": 100,
                                             "pools": ["192.0.2.0/24,192.0.2.1"],
                                             "console_url": f"https://127.0.0.1:{port}"})
        key = v.root / "ledger.key"
        key.write_text(node["sync_key"] + "\n")
        key.chmod(0o600)
        v.start(hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=30,
                console_listen=f"127.0.0.1:{port}", console_max_failed_tickets=100,
                ledger_url=ledger.sync_url, ledger_ca_file=ledger.ca, ledger_key_file=key, ledger_node_id=NODE_ID,
                ledger_public_key=ledger.public_key(v.root / "ledger.pub"))
        v.wait_log("console ready")
        v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
        wait_for(lambda: v.ctl_json("ledger", "status")["connected"], 30, "joined")
        yield Site(ledger, v, port)
    finally:
        ledger.stop_following()
        if (v.state_dir / "vpsd.db").exists():
            with sqlite3.connect(v.state_dir / "vpsd.db") as db:
                for (u,) in db.execute("SELECT uuid FROM services"):
                    libvirt_env.destroy_and_undefine(f"vpsd-{u}")
        assert v.stop(timeout=60) == 0, v.log_text()
        ledger.stop()


def test_upload_approve_mount_eject_delete_through_the_ledger(site, tmp_path):
    L, v = site.ledger, site.vpsd
    L.api("POST", "plans", {"name": "tiny", "price": 500, "vcpus": 1, "memory_mib": 256, "disk_gib": 1})
    for account in ("alice", "bob"):
        L.api("POST", "accounts", {"id": account})
        L.api("POST", f"accounts/{account}/top-up", {"amount": 5000})
    # bob has no service on the node: no ticket for him, before or after alice orders.
    assert site.ticket("bob", 1 << 20, expect=403) == {"error": "iso upload refused"}
    u = L.api("POST", "orders", {"account": "alice", "plan": "tiny", "hostname": "web1", "template": "tiny"})["uuid"]
    wait_for(lambda: domstate(u) == "running", 180, "guest running")
    assert site.ticket("bob", 1 << 20, expect=403) == {"error": "iso upload refused"}

    # Upload through the node's edge with the ticket the ledger minted.
    iso = make_iso(tmp_path / "tools.iso", files={"readme.txt": b"tools for web1\n"})
    status, body = site.upload(site.ticket("alice", iso.stat().st_size), iso, "Tools CD")
    assert status == 201, body
    iso_id = body["id"]
    wait_for(lambda: iso_id in site.isos(), 60, "the uploaded event at the ledger")
    assert site.isos()[iso_id] == {"id": iso_id, "label": "Tools CD", "size": iso.stat().st_size,
                                   "sha256": hashlib.sha256(iso.read_bytes()).hexdigest(), "state": "pending",
                                   "mounted_in": []}
    assert site.node_isos()[iso_id]["account_id"] == "alice"
    assert site.isos("bob") == {}

    # Mounting waits for approval; the provider approves through the ledger.
    L.api("POST", f"isos/{iso_id}/mount", {"account": "alice", "service": u}, expect=409)
    L.api("POST", f"isos/{iso_id}/approve")
    wait_for(lambda: site.isos()[iso_id]["state"] == "approved", 60, "approved at the ledger")
    assert site.node_isos()[iso_id]["state"] == "approved"

    # Another account can neither mount it nor eject alice's drive.
    assert L.api("POST", f"isos/{iso_id}/mount", {"account": "bob", "service": u}, expect=403) == \
        {"error": "iso refused"}
    assert L.api("POST", f"services/{u}/iso-eject", {"account": "bob"}, expect=403) == {"error": "iso refused"}

    # Mounted live into the running guest: QEMU has it in the CD drive.
    assert "inserted" not in cdrom(u)
    L.api("POST", f"isos/{iso_id}/mount", {"account": "alice", "service": u})
    wait_for(lambda: site.isos()[iso_id]["mounted_in"] == [u], 60, "mounted at the ledger")
    inserted = cdrom(u)["inserted"]
    assert inserted["file"].endswith(f"/isos/{iso_id}.iso") and inserted["ro"] is True
    L.api("POST", f"isos/{iso_id}/delete", {"account": "alice"}, expect=409)

    L.api("POST", f"services/{u}/iso-eject", {"account": "alice"})
    wait_for(lambda: site.isos()[iso_id]["mounted_in"] == [], 60, "ejected at the ledger")
    assert "inserted" not in cdrom(u)

    L.api("POST", f"isos/{iso_id}/delete", {"account": "alice"})
    wait_for(lambda: site.isos() == {}, 60, "deleted at the ledger")
    assert iso_id not in site.node_isos()
    assert not (v.state_dir / "isos" / f"{iso_id}.iso").exists()
    assert [i["state"] for i in L.api("GET", "isos?account=alice")] == ["deleted"]
    # Every command the ledger sent was applied, none failed.
    wait_for(site.acked, 60, "commands acked")
    results = {c["kind"]: c["result"] for c in L.api("GET", f"nodes/{NODE_ID}/commands")}
    assert {k: results[k] for k in ("iso-approve", "iso-mount", "iso-eject", "iso-delete")} == \
        dict.fromkeys(("iso-approve", "iso-mount", "iso-eject", "iso-delete"), "applied")

    # A quota sent with set-policy limits the next upload on the node.
    L.api("POST", f"nodes/{NODE_ID}/policy", {"grace_seconds": 3600, "retention_seconds": 3 * 86400,
                                               "autonomous_removal": False, "iso_quota_bytes": 1 << 20})
    wait_for(site.acked, 60, "set-policy acked")
    assert v.ctl_json("iso", "quota", "alice")["quota"] == 1 << 20
    big = make_iso(tmp_path / "big.iso", files={"data.bin": os.urandom(3 << 20)})
    status, answer = site.upload(site.ticket("alice", 64 << 20), big, "too big")
    assert status == 413 and "quota" in answer["error"], (status, answer)
    assert site.node_isos() == {} and site.isos() == {}
    policy = [n for n in L.api("GET", "nodes") if n["id"] == NODE_ID][0]["policy"]
    assert policy["iso_quota_bytes"] == 1 << 20
