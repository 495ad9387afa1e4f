"""The template store through vpsctl and the raw control protocol: imports
of the real test guest and of a raw image (hash, mode, bytes), every
refusal leaving nothing behind, remove (and its refusal while a service
uses the template), and imports cut short by SIGKILL and SIGTERM."""

import filecmp
import hashlib
import json
import os
import sqlite3
import subprocess
import time

import pytest

import memcheck
from conftest import VPSCTL, request_line
from test_vpsd import insert_service, UUID

GIB = 1 << 30


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def call(v, method, **params):
    """One request over the raw protocol: what vpsctl's own checks would
    stop before vpsd sees it."""
    with v.connect() as s:
        s.settimeout(60)
        return request_line(s, json.dumps({"id": 1, "method": method, "params": params}).encode() + b"\n")


def template_dir(v):
    return v.state_dir / "templates"


def listing(v):
    return sorted(os.listdir(template_dir(v)))


def templates(v):
    return v.ctl_json("template", "list")["templates"]


def audit(v):
    with sqlite3.connect(v.state_dir / "vpsd.db") as db:
        return db.execute("SELECT actor, action, target, result, detail FROM audit_log ORDER BY id").fetchall()


def make_raw(path, size, data_at=(1 << 20,)):
    """A sparse raw image with a little real data."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), str(size)], check=True)
    with open(path, "r+b") as f:
        for offset in data_at:
            f.seek(offset)
            f.write(os.urandom(4096))


def test_import_test_guest(vpsd, test_guest):
    image = test_guest / "guest.qcow2"
    r = vpsd.ctl("template", "import", "debian-12", str(image), "--os", "Debian 12 (test guest)")
    assert r.stdout.startswith("imported template debian-12: Debian 12 (test guest), qcow2, virtual size 64 MiB, "
                               "min disk 1 GiB\n")

    [t] = templates(vpsd)
    assert t["name"] == "debian-12"
    assert t["os_name"] == "Debian 12 (test guest)"
    assert t["format"] == "qcow2"
    assert t["virtual_size"] == 64 << 20
    assert t["min_disk_gib"] == 1
    assert t["sha256"] == sha256(image)
    assert t["size_bytes"] == image.stat().st_size
    assert abs(t["imported_at"] - time.time()) < 60
    stored = template_dir(vpsd) / "debian-12.qcow2"
    assert t["path"] == str(stored)
    assert (stored.stat().st_mode & 0o7777) == 0o444
    assert filecmp.cmp(image, stored, shallow=False)
    assert listing(vpsd) == ["debian-12.qcow2"]
    assert (template_dir(vpsd).stat().st_mode & 0o777) == 0o755

    human = vpsd.ctl("template", "list").stdout
    assert "debian-12" in human and "qcow2" in human and "64 MiB" in human and "1 GiB" in human
    assert t["sha256"][:12] + "…" in human and t["sha256"] not in human

    assert audit(vpsd) == [("operator uid=0", "template.import", "debian-12", "ok", "")]
    assert "template imported\" name=debian-12" in vpsd.log_text()


def test_import_raw(vpsd, tmp_path):
    image = tmp_path / "disk.raw"
    make_raw(image, 256 << 20, data_at=(0, 5 << 20, 255 << 20))
    t = vpsd.ctl_json("template", "import", "raw-disk", str(image), "--min-disk", "8")
    assert t["format"] == "raw"
    assert t["virtual_size"] == 256 << 20
    assert t["min_disk_gib"] == 8
    assert t["os_name"] == "raw-disk", "the OS name defaults to the template's name"
    assert t["sha256"] == sha256(image)
    stored = template_dir(vpsd) / "raw-disk.raw"
    assert filecmp.cmp(image, stored, shallow=False)
    # Holes stay holes: the copy takes no more room than the source.
    assert stored.stat().st_blocks <= image.stat().st_blocks
    assert templates(vpsd) == [t]

    # Without --min-disk: the virtual size rounded up to whole GiB.
    image2 = tmp_path / "odd.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image2), str(GIB + 512)], check=True)
    t2 = vpsd.ctl_json("template", "import", "odd", str(image2))
    assert (t2["format"], t2["virtual_size"], t2["min_disk_gib"]) == ("qcow2", GIB + 512, 2)


def test_relative_path_and_symlink_from_vpsctl(vpsd, tmp_path):
    """vpsctl resolves FILE where the operator stands, so a relative path or
    a link works from the command line; vpsd itself takes neither."""
    image = tmp_path / "disk.raw"
    make_raw(image, 4 << 20)
    vpsd.ctl("template", "import", "rel", "disk.raw", cwd=tmp_path)
    os.symlink(image, tmp_path / "link.raw")
    t = vpsd.ctl_json("template", "import", "via-link", str(tmp_path / "link.raw"))
    assert t["sha256"] == sha256(image)
    assert [t["name"] for t in templates(vpsd)] == ["rel", "via-link"]


@pytest.fixture
def refusals(vpsd_factory, test_guest, tmp_path):
    """A vpsd with one template, and the files the refusals are tried on."""
    v = vpsd_factory().start()
    v.ctl("template", "import", "debian-12", str(test_guest / "guest.qcow2"))
    (tmp_path / "dir").mkdir()
    os.symlink(test_guest / "guest.qcow2", tmp_path / "link.qcow2")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "linked-dir")
    make_raw(tmp_path / "real" / "disk.raw", 2 << 20)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(test_guest / "guest.qcow2"),
                    "-F", "qcow2", str(tmp_path / "overlay.qcow2")], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + str(tmp_path / "data.img"),
                    str(tmp_path / "external.qcow2"), "8M"], check=True)
    (tmp_path / "notes.txt").write_text("not an image\n" * 100)
    (tmp_path / "odd.raw").write_bytes(b"\0" * ((2 << 20) + 100))
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(tmp_path / "disk.vmdk"), "8M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "big.qcow2"), "10G"], check=True)
    yield v, test_guest / "guest.qcow2", tmp_path
    assert v.stop() == 0, v.log_text()


REFUSALS = [
    # (params, code, message fragment); "{t}" is the tmp_path, "{g}" the guest image
    ({"name": "debian-12", "path": "{g}"}, "exists", "template debian-12: exists"),
    ({"name": "../x", "path": "{g}"}, "invalid", "template name `../x` is not valid"),
    ({"name": "UPPER", "path": "{g}"}, "invalid", "template name `UPPER` is not valid"),
    ({"name": "", "path": "{g}"}, "invalid", "template name `` is not valid"),
    ({"name": "n", "path": "guest.qcow2"}, "invalid", "template n: `guest.qcow2` is not an absolute path"),
    ({"name": "n", "path": "{t}/missing.qcow2"}, "not_found", "missing.qcow2`: No such file or directory"),
    ({"name": "n", "path": "{t}/dir"}, "invalid", "is not a regular file (a directory)"),
    ({"name": "n", "path": "/dev/zero"}, "invalid", "template n: `/dev/zero` is not a regular file"),
    ({"name": "n", "path": "{t}/link.qcow2"}, "invalid", "a symbolic link is in the path"),
    ({"name": "n", "path": "{t}/linked-dir/disk.raw"}, "invalid", "a symbolic link is in the path"),
    ({"name": "n", "path": "{t}/overlay.qcow2"}, "invalid", "the image has a backing file"),
    ({"name": "n", "path": "{t}/external.qcow2"}, "invalid", "the image has an external data file"),
    ({"name": "n", "path": "{t}/notes.txt"}, "invalid",
     "not a disk image: qemu-img calls it raw, but a raw image must be a whole number of 512-byte sectors "
     "and at least 1 MiB (this is 1300 bytes)"),
    ({"name": "n", "path": "{t}/odd.raw"}, "invalid", "whole number of 512-byte sectors"),
    ({"name": "n", "path": "{t}/disk.vmdk"}, "invalid", "format `vmdk` is not supported (qcow2 or raw)"),
    ({"name": "n", "path": "{t}/big.qcow2", "min_disk_gib": 9}, "invalid",
     "template n: min_disk_gib 9 is smaller than the image's virtual size (10737418240 bytes, 10 GiB rounded up)"),
    ({"name": "n", "path": "{g}", "min_disk_gib": 0}, "invalid", "`min_disk_gib` must be from 1 to 65536"),
    ({"name": "n", "path": "{g}", "min_disk_gib": "2"}, "invalid", "field `min_disk_gib` must be an integer"),
    ({"name": "n", "path": "{g}", "os_name": "two\nlines"}, "invalid", "os name must be 1 to 64 printable"),
    ({"name": "n", "path": "{g}", "os_name": "x" * 65}, "invalid", "os name must be 1 to 64 printable"),
    ({"name": "n", "path": "{g}", "format": "qcow2"}, "invalid", "unknown parameter `format`"),
    ({"path": "{g}"}, "invalid", "field `name` is missing"),
    ({"name": "n"}, "invalid", "field `path` is missing"),
]


def test_refusals_leave_nothing(refusals):
    v, guest, tmp = refusals
    before_files, before_list = listing(v), templates(v)
    assert before_files == ["debian-12.qcow2"]
    for params, code, fragment in REFUSALS:
        params = {k: p.format(t=tmp, g=guest) if isinstance(p, str) else p for k, p in params.items()}
        r = call(v, "template.import", **params)
        assert r["ok"] is False, (params, r)
        assert r["error"]["code"] == code, (params, r)
        assert fragment in r["error"]["message"], (params, r)
        assert listing(v) == before_files, params
        assert templates(v) == before_list, params
    # Every refusal that named a template is in the audit log.
    refused = [row for row in audit(v) if row[3] != "ok"]
    assert len(refused) == len([p for p, _, _ in REFUSALS if "name" in p])
    assert ("operator uid=0", "template.import", "../x", "invalid",
            "template name `../x` is not valid: 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or "
            "digit") in refused


def test_refusals_through_vpsctl(refusals):
    v, guest, tmp = refusals
    r = v.ctl("template", "import", "debian-12", str(guest), check=False)
    assert (r.returncode, r.stderr) == (1, "vpsctl: exists: template debian-12: exists\n")
    r = v.ctl("template", "import", "n", str(tmp / "overlay.qcow2"), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("vpsctl: invalid: template n: the image has a backing file (`")
    r = v.ctl("template", "import", "n", str(tmp / "missing.qcow2"), check=False)
    assert (r.returncode, r.stderr) == (1, f"vpsctl: `{tmp}/missing.qcow2`: No such file or directory\n")
    assert listing(v) == ["debian-12.qcow2"]


@pytest.mark.parametrize("args,message", [
    (["template"], "unknown command `template`"),
    (["template", "frob"], "unknown command `template frob`"),
    (["template", "import", "x"], "usage: vpsctl template import NAME FILE"),
    (["template", "import", "../x", "/f"], "`../x` is not a template name"),
    (["template", "import", "UPPER", "/f"], "`UPPER` is not a template name"),
    (["template", "import", "x", "/f", "--min-disk", "0"], "--min-disk: a whole number of GiB from 1 to 65536"),
    (["template", "import", "x", "/f", "--min-disk", "2x"], "--min-disk: a whole number"),
    (["template", "import", "x", "/f", "--os", "a\tb"], "--os: 1 to 64 printable ASCII characters"),
    (["template", "list", "--os", "x"], "--os and --min-disk go with `template import` only"),
    (["status", "--min-disk", "2"], "--os and --min-disk go with `template import` only"),
    (["template", "list", "x"], "unknown command `template list`"),
    (["template", "remove"], "unknown command `template remove`"),
    (["template", "remove", "a/b"], "`a/b` is not a template name"),
])
def test_vpsctl_template_usage_errors(vpsd, args, message):
    r = vpsd.ctl(*args, check=False)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_help_lists_template_commands():
    out = subprocess.run([str(VPSCTL), "--help"], capture_output=True, text=True, check=True).stdout
    for text in ("template import NAME FILE [--os NAME] [--min-disk GIB]", "template list", "template remove NAME"):
        assert text in out


def test_remove(vpsd, test_guest):
    vpsd.ctl("template", "import", "a", str(test_guest / "guest.qcow2"))
    vpsd.ctl("template", "import", "b", str(test_guest / "guest.qcow2"))
    assert vpsd.ctl("template", "remove", "a").stdout == "removed template a\n"
    assert [t["name"] for t in templates(vpsd)] == ["b"]
    assert listing(vpsd) == ["b.qcow2"]
    r = vpsd.ctl("template", "remove", "a", check=False)
    assert (r.returncode, r.stderr) == (1, "vpsctl: not_found: template a: not found\n")
    assert vpsd.ctl_json("template", "remove", "b") == {"name": "b"}
    assert listing(vpsd) == [] and templates(vpsd) == []
    assert "no templates" in vpsd.ctl("template", "list").stdout
    assert [row[1:4] for row in audit(vpsd)] == [
        ("template.import", "a", "ok"), ("template.import", "b", "ok"), ("template.remove", "a", "ok"),
        ("template.remove", "a", "not_found"), ("template.remove", "b", "ok")]


def test_remove_refused_while_a_service_uses_it(vpsd, test_guest):
    vpsd.ctl("template", "import", "debian-12", str(test_guest / "guest.qcow2"))
    insert_service(vpsd.state_dir / "vpsd.db")  # template 'debian-12'
    r = vpsd.ctl("template", "remove", "debian-12", check=False)
    assert r.returncode == 1
    assert r.stderr == f"vpsctl: busy: template debian-12: busy: used by 1 service ({UUID})\n"
    assert listing(vpsd) == ["debian-12.qcow2"] and len(templates(vpsd)) == 1

    # A terminated service keeps its history, not the template.
    with sqlite3.connect(vpsd.state_dir / "vpsd.db") as db:
        db.execute("UPDATE services SET state = 'terminated'")
    vpsd.ctl("template", "remove", "debian-12")
    assert listing(vpsd) == []


def start_import(v, name, path):
    return subprocess.Popen([str(VPSCTL), "--socket", str(v.socket), "template", "import", name, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_tmp(v, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tmp = [f for f in listing(v) if f.endswith(".tmp")]
        if tmp:
            return tmp
        time.sleep(0.005)
    raise AssertionError(f"no temporary file appeared:\n{v.log_text()}")


@pytest.fixture
def big_raw(tmp_path):
    """Large enough that its copy (hashing 8 GiB, mostly holes) takes seconds."""
    path = tmp_path / "big.raw"
    make_raw(path, 8 * GIB, data_at=(0, GIB, 7 * GIB))
    return path


def test_kill_during_import_leaves_nothing(vpsd_factory, big_raw, tmp_path):
    v = vpsd_factory().start()
    importer = start_import(v, "big", big_raw)
    assert wait_for_tmp(v) == ["big.raw.tmp"]

    # Same name while it runs: busy, and the import goes on.
    r = call(v, "template.import", name="big", path=str(big_raw))
    assert r["error"] == {"code": "busy", "message": "template big: busy: import in progress"}
    # Two imports at once, not three.
    second = start_import(v, "big-2", big_raw)
    deadline = time.monotonic() + 20
    while len(wait_for_tmp(v)) < 2:
        assert time.monotonic() < deadline, listing(v)
        time.sleep(0.005)
    r = call(v, "template.import", name="big-3", path=str(big_raw))
    assert r["error"] == {"code": "try_again", "message": "template big-3: 2 imports are running; try again later"}

    v.proc.kill()
    v.proc.wait()
    for p in (importer, second):
        p.wait(30)
        assert p.returncode == 1
    assert listing(v) == ["big-2.raw.tmp", "big.raw.tmp"], "what the crash left"

    # The log and the socket file of the killed vpsd are still there: ready
    # is when the new one answers.
    v.start(wait=False)
    deadline = time.monotonic() + 30
    while v.ctl("status", "--json", check=False).stdout.find(f'"pid":{v.proc.pid}') < 0:
        assert time.monotonic() < deadline and v.proc.poll() is None, v.log_text()
        time.sleep(0.05)
    assert listing(v) == []
    assert templates(v) == []
    assert "removed a file left by an interrupted import" in v.log_text()
    # The name is free again.
    make_raw(tmp_path / "small.raw", 2 << 20)
    v.ctl("template", "import", "big", str(tmp_path / "small.raw"))
    assert listing(v) == ["big.raw"]
    assert v.stop() == 0


def test_sigterm_during_import(vpsd_factory, big_raw):
    v = vpsd_factory().start()
    importer = start_import(v, "big", big_raw)
    wait_for_tmp(v)
    assert v.stop() == 0, v.log_text()
    importer.wait(30)
    assert importer.returncode == 1
    assert listing(v) == []
    with sqlite3.connect(v.state_dir / "vpsd.db") as db:
        assert db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
        assert db.execute("SELECT result, detail FROM audit_log").fetchall() == [
            ("internal", "template big: import cancelled: vpsd is stopping")]


def test_template_dir_setting(vpsd_factory, test_guest, tmp_path):
    d = tmp_path / "elsewhere" / "templates"
    v = vpsd_factory().start(template_dir=f"{d}//")
    t = v.ctl_json("template", "import", "t", str(test_guest / "guest.qcow2"))
    assert t["path"] == str(d / "t.qcow2")
    assert os.listdir(d) == ["t.qcow2"]
    assert (d.stat().st_mode & 0o777) == 0o755
    assert not (v.state_dir / "templates").exists()
    assert v.stop() == 0
    # The same folder spelt otherwise: its template is no orphan.
    v.start(template_dir=d)
    assert os.listdir(d) == ["t.qcow2"]
    assert v.stop() == 0


def test_qemu_img_missing(vpsd_factory, test_guest, tmp_path):
    v = vpsd_factory().start(qemu_img=tmp_path / "no-qemu-img")
    r = call(v, "template.import", name="t", path=str(test_guest / "guest.qcow2"))
    assert r["error"]["code"] == "internal"
    assert r["error"]["message"] == (f"template t: qemu-img info: cannot run `{tmp_path}/no-qemu-img`: "
                                     "No such file or directory")
    assert listing(v) == []
    assert v.stop() == 0


def test_valgrind_clean_imports(vpsd_factory, test_guest, tmp_path):
    """The asynchronous paths under valgrind: an import, refusals at once
    and after qemu-img, a list, a remove, and a stop with an import in
    flight."""
    v = vpsd_factory()
    v.start(prefix=memcheck.prefix())
    v.ctl("template", "import", "debian-12", str(test_guest / "guest.qcow2"))
    (tmp_path / "notes.txt").write_text("text\n")
    assert call(v, "template.import", name="x", path=str(tmp_path / "notes.txt"))["error"]["code"] == "invalid"
    assert call(v, "template.import", name="x", path="rel")["error"]["code"] == "invalid"
    v.ctl("template", "list")
    v.ctl("template", "remove", "debian-12")
    make_raw(tmp_path / "big.raw", 2 * GIB)
    importer = start_import(v, "big", tmp_path / "big.raw")
    wait_for_tmp(v, timeout=60)
    assert v.stop(timeout=120) == 0, v.log_text()
    importer.wait(30)
    assert listing(v) == []


def test_import_needs_root(vpsd_factory, test_guest):
    """vpsd reads FILE with root's rights: a member of the control group
    (nogroup here) must not get a file it could not read itself."""
    v = vpsd_factory().start(control_group="nogroup")
    os.chmod(v.socket.parent, 0o755)
    code = ("import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.sendall(json.dumps({'id': 1, 'method': sys.argv[2], 'params': json.loads(sys.argv[3])}).encode()"
            " + b'\\n')\n"
            "d = b''\n"
            "while not d.endswith(b'\\n'):\n"
            "    c = s.recv(65536)\n"
            "    if not c: break\n"
            "    d += c\n"
            "sys.stdout.write(d.decode())")

    def as_nobody(method, **params):
        r = subprocess.run(["/usr/bin/python3", "-c", code, str(v.socket), method, json.dumps(params)],
                           user=65534, group=65534, capture_output=True, text=True, timeout=20, check=True)
        return json.loads(r.stdout)

    r = as_nobody("template.import", name="t", path=str(test_guest / "guest.qcow2"))
    assert r["error"] == {"code": "forbidden",
                          "message": "template import needs root: vpsd reads the file with root's rights"}
    assert listing(v) == []
    assert audit(v)[-1][:4] == ("operator uid=65534", "template.import", "t", "forbidden")
    # Listing and removing read nothing on the operator's behalf.
    v.ctl("template", "import", "t", str(test_guest / "guest.qcow2"))
    assert [t["name"] for t in as_nobody("template.list")["result"]["templates"]] == ["t"]
    assert as_nobody("template.remove", name="t")["result"] == {"name": "t"}
    assert listing(v) == []
    assert v.stop() == 0
