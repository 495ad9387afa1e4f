"""The customer ISO store (docs/iso.md) through the real vpsd-edge: uploads
with tickets a test ledger signs, streamed over HTTPS; a real ISO made with
xorriso mounted live into a real TCG guest (QMP query-block through
libvirt) and booted from (the guest's kernel prints the command line the
ISO's isolinux gave it); and the refusals: over quota mid-stream, a fake
ISO, a replayed or wrong ticket, another account's or an unapproved ISO,
removal of a mounted one, kill -9 mid-upload. Nothing refused leaves a
file."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import console_client as cc
import edge_harness
import libvirt_env
import store_rows
from test_console_guest import cnode  # noqa: F401 (a fixture)
from test_guest_lifecycle import BOOT

ACCOUNT = "acct-42"


def iso_ticket(ledger, account, max_bytes, iat=None, exp=None):
    return ledger.iso_ticket(account, max_bytes, iat=iat, exp=exp)


def upload(port, ticket, body, label=None, method="PUT", chunk=1 << 20, after_first=None):
    """Streams body (bytes or a path) to /iso/upload; returns (status, json)
    or ("reset", None) when the connection died before an answer."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=cc.tls(), timeout=120)
    size = os.path.getsize(body) if isinstance(body, (str, Path)) else len(body)
    conn.putrequest(method, f"/iso/upload?ticket={ticket}")
    conn.putheader("Content-Length", str(size))
    if label is not None:
        conn.putheader("X-Label", label)
    conn.endheaders()
    try:
        if isinstance(body, (str, Path)):
            with open(body, "rb") as f:
                first = True
                while data := f.read(chunk):
                    conn.send(data)
                    if first and after_first:
                        after_first()
                    first = False
        else:
            for i in range(0, size, chunk):
                conn.send(body[i:i + chunk])
    except OSError:  # the answer may have come early and the connection closed (ssl errors too)
        pass
    try:
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    except (OSError, http.client.HTTPException):
        return "reset", None
    finally:
        conn.close()


def make_iso(path, volume="VPSDTEST", files=None):
    src = path.parent / (path.name + ".d")
    src.mkdir()
    for name, data in (files or {"hello.txt": b"hello from the ISO\n"}).items():
        (src / name).write_bytes(data)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", volume, "-o", str(path), str(src)], check=True,
                   capture_output=True)
    return path


def make_boot_iso(path, guest_dir, marker):
    """A bootable ISO (isolinux) holding the tiny guest's kernel and initrd,
    whose boot line carries marker: the guest prints its command line."""
    src = path.parent / "boot.d"
    (src / "isolinux").mkdir(parents=True)
    shutil.copy("/usr/lib/ISOLINUX/isolinux.bin", src / "isolinux")
    shutil.copy("/usr/lib/syslinux/modules/bios/ldlinux.c32", src / "isolinux")
    shutil.copy(guest_dir / "vmlinuz", src / "vmlinuz")
    shutil.copy(guest_dir / "initrd.img", src / "initrd.img")
    (src / "isolinux" / "isolinux.cfg").write_text(
        "SERIAL 0 115200\nDEFAULT iso\nPROMPT 0\nTIMEOUT 1\nLABEL iso\n  LINUX /vmlinuz\n  INITRD /initrd.img\n"
        f"  APPEND console=ttyS0,115200 panic=0 vpsd.isoboot={marker}\n")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "VPSDBOOT", "-o", str(path), "-b",
                    "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                    "-boot-info-table", str(src)], check=True, capture_output=True)
    return path


class IsoNode:
    def __init__(self, vpsd, ledger, port):
        self.vpsd, self.ledger, self.port = vpsd, ledger, port

    @property
    def dir(self):
        return self.vpsd.state_dir / "isos"

    def db(self):
        return sqlite3.connect(self.vpsd.state_dir / "vpsd.db")

    def files(self):
        return sorted(p.name for p in self.dir.iterdir())

    def put(self, body, account=ACCOUNT, max_bytes=1 << 30, **kw):
        return upload(self.port, iso_ticket(self.ledger, account, max_bytes), body, **kw)

    def isos(self):
        return {i["id"]: i for i in self.vpsd.ctl_json("iso", "list")["isos"]}

    def events(self):
        with self.db() as db:
            return [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox WHERE kind = 'iso' ORDER BY seq")]

    def add_service(self, account=ACCOUNT, state="stopped"):
        u = str(uuid.uuid4())
        with self.db() as db:
            store_rows.insert_service(db, u, account, state)
        return u


@pytest.fixture
def inode(vpsd_factory):
    """vpsd with the edge and a 4 MiB quota per account; no guests."""
    v = vpsd_factory()
    ledger = cc.Ledger()
    port = edge_harness.free_port()
    v.start(console_listen=f"127.0.0.1:{port}", ledger_public_key=ledger.public_pem(v.root / "ledger.pub"),
            guest_run_dir=v.root / "guests", iso_quota_bytes="4M", console_max_failed_tickets=100)
    v.wait_log("console ready")
    yield IsoNode(v, ledger, port)
    assert v.stop() == 0, v.log_text()


def test_upload_approve_list_and_events(inode, tmp_path):
    iso = make_iso(tmp_path / "a.iso")
    status, body = inode.put(iso, label="../../etc/passwd; rm -rf /")
    assert status == 201, body
    i = inode.isos()[body["id"]]
    assert i["state"] == "pending" and i["account_id"] == ACCOUNT and i["format"] == "iso9660"
    assert i["label"] == "../../etc/passwd; rm -rf /", "a label is kept as text"
    assert i["sha256"] == hashlib.sha256(iso.read_bytes()).hexdigest() and i["size"] == iso.stat().st_size
    # Named by its id, 0600, nothing else in the folder, nothing outside it.
    assert inode.files() == [f"{body['id']}.iso"]
    assert (inode.dir / f"{body['id']}.iso").stat().st_mode & 0o777 == 0o600
    assert not (inode.dir.parent.parent / "etc").exists()
    # POST works as PUT does, and a label may come in the query.
    st, b2 = upload(inode.port, iso_ticket(inode.ledger, ACCOUNT, 1 << 20), iso, method="POST")
    assert st == 201, b2
    assert inode.vpsd.ctl_json("iso", "approve", body["id"])["state"] == "approved"
    assert inode.isos()[body["id"]]["approved_at"] is not None
    r = inode.vpsd.ctl_json("iso", "reject", b2["id"], "--reason", "not allowed")
    assert r["state"] == "rejected" and inode.files() == [f"{body['id']}.iso"]
    events = inode.events()
    assert [(e["iso"], e["state"]) for e in events] == [(body["id"], "uploaded"), (b2["id"], "uploaded"),
                                                         (body["id"], "approved"), (b2["id"], "rejected")]
    assert events[0]["size"] == iso.stat().st_size and events[0]["sha256"] == i["sha256"]
    assert events[0]["account_id"] == ACCOUNT
    quota = inode.vpsd.ctl_json("iso", "quota", ACCOUNT)
    assert quota == {"account": ACCOUNT, "quota": 4 << 20, "used": iso.stat().st_size}


def test_over_quota_is_stopped_mid_stream(inode):
    body = os.urandom(12 << 20)
    status, answer = inode.put(body)
    assert status in (413, "reset"), answer
    if status == 413:
        assert "quota" in answer["error"] and "/" not in answer["error"]
    inode.vpsd.wait_log("stopped mid-stream")
    log = inode.vpsd.log_text()
    stopped_at = int(log.split("stopped mid-stream")[0].rsplit("bytes=", 1)[1].split()[0])
    assert stopped_at <= 4 << 20, "vpsd never kept more than the quota"
    assert inode.files() == [] and inode.isos() == {}
    # The ticket's own maximum is a limit too.
    status, answer = inode.put(os.urandom(3 << 20), max_bytes=1 << 20)
    assert status in (413, "reset")
    if status == 413:
        assert "ticket" in answer["error"]
    assert inode.files() == [] and inode.events() == []


def test_fake_and_disguised_images_refused(inode, tmp_path):
    iso = make_iso(tmp_path / "a.iso").read_bytes()
    qcow2 = subprocess.run(["qemu-img", "create", "-f", "qcow2", "-b", str(tmp_path / "a.iso"), "-F", "raw",
                            str(tmp_path / "b.qcow2")], capture_output=True)
    assert qcow2.returncode == 0, qcow2.stderr
    cases = {
        "qcow2 with a backing file": ((tmp_path / "b.qcow2").read_bytes(), "qcow2"),
        "qcow2 magic on an ISO": (b"QFI\xfb" + iso[4:], "qcow2"),
        "VMDK": (b"KDMV" + iso[4:], "VMDK"),
        "raw zeros": (bytes(1 << 20), "not an ISO"),
        "text": (b"hello\n" * 1000, "too small for an ISO"),
    }
    for name, (data, why) in cases.items():
        status, answer = inode.put(data)
        assert status == 415, (name, status, answer)
        assert why in answer["error"], (name, answer)
    assert inode.files() == [] and inode.isos() == {}


def test_bad_tickets_refused_alike(inode, tmp_path):
    iso = make_iso(tmp_path / "a.iso")
    good = iso_ticket(inode.ledger, ACCOUNT, 1 << 20)
    assert upload(inode.port, good, iso)[0] == 201
    now = int(time.time())
    console = inode.ledger.ticket(str(uuid.uuid4()), ACCOUNT)
    bad = {
        "replayed": good,
        "forged": iso_ticket(cc.Ledger(), ACCOUNT, 1 << 20),
        "expired": iso_ticket(inode.ledger, ACCOUNT, 1 << 20, iat=now - 200, exp=now - 140),
        "console ticket": console,
        "garbage": "x.y",
    }
    for name, t in bad.items():
        status, answer = upload(inode.port, t, iso)
        assert (status, answer) == (403, {"error": "the upload ticket is not valid"}), name
    assert len(inode.isos()) == 1 and len(inode.files()) == 1
    # An upload ticket opens no console.
    assert cc.session(f"wss://127.0.0.1:{inode.port}/console/vnc?ticket={iso_ticket(inode.ledger, ACCOUNT, 1)}",
                      f"https://127.0.0.1:{inode.port}")[:2] == ("closed", cc.REFUSED)
    assert "an ISO upload ticket used for a console" in inode.vpsd.log_text()
    # Wrong method, wrong path.
    conn = http.client.HTTPSConnection("127.0.0.1", inode.port, context=cc.tls(), timeout=30)
    conn.request("GET", f"/iso/upload?ticket={good}")
    assert conn.getresponse().status == 405
    conn.close()


def test_mount_rules_without_a_running_guest(inode, tmp_path):
    iso = make_iso(tmp_path / "a.iso")
    mine = inode.add_service(ACCOUNT)
    theirs = inode.add_service("acct-7")
    _, a = inode.put(iso)
    _, b = inode.put(iso, account="acct-7")
    # Unapproved: refused.
    r = inode.vpsd.ctl("iso", "mount", mine, a["id"], check=False)
    assert r.returncode == 1 and "only an approved ISO" in r.stderr
    inode.vpsd.ctl("iso", "approve", a["id"])
    inode.vpsd.ctl("iso", "approve", b["id"])
    # Another account's: refused.
    r = inode.vpsd.ctl("iso", "mount", mine, b["id"], check=False)
    assert r.returncode == 1 and "another account" in r.stderr
    r = inode.vpsd.ctl("iso", "mount", theirs, a["id"], check=False)
    assert r.returncode == 1 and "another account" in r.stderr
    # A stopped service records it for its next start.
    r = inode.vpsd.ctl_json("iso", "mount", mine, a["id"])
    assert r == {"uuid": mine, "iso": a["id"], "live": False}
    assert inode.isos()[a["id"]]["mounted_in"] == [mine]
    # Mounted: neither removed nor rejected.
    for verb in ("remove", "reject"):
        r = inode.vpsd.ctl("iso", verb, a["id"], check=False)
        assert r.returncode == 1 and f"mounted in service {mine}" in r.stderr, r.stderr
    assert f"{a['id']}.iso" in inode.files()
    inode.vpsd.ctl("iso", "eject", mine)
    inode.vpsd.ctl("iso", "remove", a["id"])
    assert f"{a['id']}.iso" not in inode.files()
    assert [e["state"] for e in inode.events() if e["iso"] == a["id"]] == \
        ["uploaded", "approved", "mounted", "ejected", "deleted"]
    assert inode.vpsd.ctl("iso", "mount", mine, "../../etc", check=False).returncode == 2


def test_kill_mid_upload_leaves_nothing(vpsd_factory, tmp_path):
    v = vpsd_factory()
    ledger = cc.Ledger()
    port = edge_harness.free_port()
    settings = dict(console_listen=f"127.0.0.1:{port}", ledger_public_key=ledger.public_pem(v.root / "ledger.pub"),
                    guest_run_dir=v.root / "guests")
    v.start(**settings)
    v.wait_log("console ready")
    node = IsoNode(v, ledger, port)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(64 << 20))

    def kill():
        v.wait_log("iso upload started")
        time.sleep(0.2)
        v.proc.send_signal(signal.SIGKILL)
        v.proc.wait()

    status, _ = upload(port, iso_ticket(ledger, ACCOUNT, 1 << 30), big, after_first=kill, chunk=256 << 10)
    assert status != 201
    # What an older vpsd (or a file system without O_TMPFILE) might leave,
    # and a file without a record.
    (node.dir / ".upload-iso-0123").write_bytes(b"partial")
    (node.dir / "iso-dead.iso").write_bytes(b"no record")
    subprocess.run(["pkill", "-KILL", "-P", str(v.proc.pid)], capture_output=True)
    v.start(**settings)
    v.wait_log("console ready")
    assert node.files() == [] and node.isos() == {}
    assert "leftover of an interrupted upload" in v.log_text(this_run=True)
    assert v.stop() == 0


# ------------------------------------------------------------- a real guest

@pytest.fixture
def gnode(cnode, test_guest):
    """test_console_guest's node: the edge, a test ledger and one running
    tiny guest of ACCOUNT."""
    v, ledger, port, s = cnode
    assert s["account_id"] == ACCOUNT
    yield IsoNode(v, ledger, port), s["uuid"], test_guest


def cdrom(u):
    """The CD drive as QEMU reports it (query-block through libvirt's monitor)."""
    out = libvirt_env.virsh("qemu-monitor-command", f"vpsd-{u}", '{"execute":"query-block"}').stdout
    for dev in json.loads(out)["return"]:
        if dev.get("qdev", "").endswith("sata0-0-0") or dev.get("device") == "sata0-0-0" or \
                "sata0-0-0" in dev.get("qdev", ""):
            return dev
    raise AssertionError(f"no CD drive in {out}")


def test_mount_live_and_boot_from_iso(gnode, tmp_path):
    node, u, guest = gnode
    marker = "m" + uuid.uuid4().hex[:12]
    iso = make_boot_iso(tmp_path / "boot.iso", guest, marker)
    status, body = node.put(iso, label="tiny installer", max_bytes=iso.stat().st_size)
    assert status == 201, body
    node.vpsd.ctl("iso", "approve", body["id"])
    assert "inserted" not in cdrom(u)
    r = node.vpsd.ctl_json("iso", "mount", u, body["id"])
    assert r == {"uuid": u, "iso": body["id"], "live": True}
    inserted = cdrom(u)["inserted"]
    assert inserted["file"].endswith(f"/isos/{body['id']}.iso") and inserted["ro"] is True
    assert inserted["drv"] == "raw"
    # Mounted: cannot be removed.
    assert node.vpsd.ctl("iso", "remove", body["id"], check=False).returncode == 1
    # Boot from it at the next start: the guest's firmware reads the ISO
    # and its isolinux starts the kernel with the marker.
    node.vpsd.ctl("iso", "boot", u, "cdrom")
    node.vpsd.ctl("service", "force-off", u)
    log = Path(node.vpsd.root / "guests" / u / "console.log")
    node.vpsd.ctl("service", "start", u)
    libvirt_env.wait_console(str(log), [f"vpsd.isoboot={marker}"], timeout=BOOT)
    assert cdrom(u)["inserted"]["file"].endswith(f"/isos/{body['id']}.iso"), "the medium is there after a start"
    # Eject live.
    r = node.vpsd.ctl_json("iso", "eject", u)
    assert r["live"] is True and r["iso"] is None
    assert "inserted" not in cdrom(u)
    node.vpsd.ctl("iso", "remove", body["id"])
    assert node.files() == []
    states = [e["state"] for e in node.events()]
    assert states == ["uploaded", "approved", "mounted", "ejected", "deleted"], states
    mounted = [e for e in node.events() if e["state"] == "mounted"][0]
    assert mounted["service"] == u
