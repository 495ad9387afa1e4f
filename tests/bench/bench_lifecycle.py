"""Benchmark (make bench; not a test): provision-to-running latency of vpsd
against the floor of raw `virsh create` of the same domain XML, 20 guests,
4 at a time, excluding guest boot; then QMP stop/cont round trips across the
20 guests with vpsd's QMP client (build/tests/qmp_probe).

vpsd's time covers what a provision does: checks, records, qemu-img overlay,
cloud-init seed image, define and start. The peer's covers only `virsh
create` of the equivalent XML with the disk and seed made beforehand: the
floor no provisioning can beat. Prints both and the ratio (goal <= 1.2)."""

import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
sys.path.insert(0, str(REPO / "tests" / "lib"))
import libvirt_env  # noqa: E402

N, PARALLEL = 20, 4
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcaVmvBmb0yb3ZwcTfWiR7f0r0kTvGm5CV2Ll0Bxw5k bench@example"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, (len(values) * p + 99) // 100 - 1))]


def timed(fn, items):
    """Runs fn over items, PARALLEL at a time; returns each call's seconds."""
    def one(item):
        t0 = time.monotonic()
        fn(item)
        return time.monotonic() - t0
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, items))


def main():
    subprocess.run(["bash", str(REPO / "tests/guest/build-guest.sh"), str(BUILD / "guest")], check=True,
                   stdout=subprocess.DEVNULL)
    handle = libvirt_env.ensure_libvirt()
    root = Path(tempfile.mkdtemp(prefix="vpsd-bench-", dir="/tmp"))
    os.chmod(root, 0o755)
    bridge = "vpsbrb%d" % (os.getpid() % 10000)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    sock = root / "control.sock"
    conf = root / "vpsd.conf"
    conf.write_text(f"state_dir = {root}/state\ncontrol_socket = {sock}\nbridge = {bridge}\n"
                    f"guest_run_dir = {root}/guests\nhypervisor = tcg\nkvm_device = {root}/none\n"
                    f"nft_table = vpsdbench{os.getpid()}\n")
    log = open(root / "vpsd.log", "wb")
    vpsd = subprocess.Popen([str(BUILD / "vpsd"), "-c", str(conf)], stdout=log, stderr=log)
    ctl = [str(BUILD / "vpsctl"), "--socket", str(sock)]
    names = []
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(ctl + ["status"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and vpsd.poll() is None, "vpsd did not start"
            time.sleep(0.1)
        subprocess.run(ctl + ["template", "import", "tiny", str(BUILD / "guest/guest.qcow2")], check=True,
                       stdout=subprocess.DEVNULL)

        specs = []
        for i in range(N):
            s = {"uuid": str(uuid.uuid4()), "account_id": "bench", "hostname": f"bench{i}",
                 "plan": {"vcpus": 1, "memory_mib": 128, "disk_gib": 1, "port_speed_mbit": 100, "traffic_gib": None},
                 "template": "tiny", "addresses": [{"address": f"192.0.2.{10 + i}", "prefix": 24,
                                                    "gateway": "192.0.2.1"}], "ssh_keys": [KEY]}
            path = root / f"spec{i}.json"
            path.write_text(json.dumps(s))
            specs.append((s, path))

        def provision(item):
            subprocess.run(ctl + ["--json", "service", "provision", str(item[1])], check=True,
                           stdout=subprocess.DEVNULL)

        vpsd_times = timed(provision, specs)
        # The peer: the same XML, with disks and seeds made beforehand.
        peer = []
        for s, _ in specs:
            u = s["uuid"]
            xml = libvirt_env.domain_xml(f"vpsd-{u}")
            subprocess.run(ctl + ["service", "terminate", u], check=True, stdout=subprocess.DEVNULL)
            pu = str(uuid.uuid4())
            d = root / "peer" / pu
            (d / "run").mkdir(parents=True)
            shutil.chown(d / "run", "libvirt-qemu", "libvirt-qemu")
            disk, seed = d / "disk.qcow2", d / "seed.iso"
            libvirt_env.make_overlay(str(root / "state/templates/tiny.qcow2"), str(disk))
            subprocess.run(["bash", str(REPO / "tests/guest/make-seed.sh"), str(seed), "--hostname", "peer"],
                           check=True, stdout=subprocess.DEVNULL)
            xml = (xml.replace(u, pu).replace(f"{root}/state/disks/{pu}.qcow2", str(disk))
                   .replace(f"{root}/state/seeds/{pu}.iso", str(seed))
                   .replace(f"{root}/guests/{pu}", str(d / "run")))
            xml = "\n".join(l for l in xml.splitlines() if "<mac address" not in l and "<target dev='vps" not in l)
            path = d / "domain.xml"
            path.write_text(xml)
            peer.append((f"vpsd-{pu}", path, d / "run" / "qmp.sock"))

        def create(item):
            subprocess.run(["virsh", "-q", "-c", "qemu:///system", "create", str(item[1])], check=True,
                           stdout=subprocess.DEVNULL)
            names.append(item[0])

        peer_times = timed(create, peer)

        # QMP stop/cont round trips across the 20 guests once they have
        # booted (a booting TCG guest starves QEMU's monitor thread), with
        # vpsd's client.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not all(
                "VPSD-GUEST-READY" in (q.parent / "console.log").read_text(errors="replace")
                for _, _, q in peer if (q.parent / "console.log").exists()):
            time.sleep(1)
        rtts = {"stop": [], "cont": []}
        for name, _, qmp in peer:
            out = subprocess.run([str(BUILD / "tests/qmp_probe"), str(qmp), "50"], capture_output=True, text=True,
                                 timeout=120).stdout
            for line in out.splitlines():
                words = line.split()
                if words[:1] == ["samples"] and words[1] in rtts:
                    rtts[words[1]].extend(float(us) for us in words[2:])
    finally:
        for n in names:
            libvirt_env.destroy_and_undefine(n)
        vpsd.send_signal(signal.SIGTERM)
        vpsd.wait(60)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "bridge", f"vpsdbench{os.getpid()}"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        handle.stop()

    vm, pm = statistics.mean(vpsd_times), statistics.mean(peer_times)
    print(f"provision-to-running, {N} guests, {PARALLEL} at a time (guest boot excluded):")
    print(f"  vpsd provision     mean {vm * 1000:7.1f} ms  p50 {pct(vpsd_times, 50) * 1000:7.1f} ms  "
          f"p99 {pct(vpsd_times, 99) * 1000:7.1f} ms")
    print(f"  virsh create floor mean {pm * 1000:7.1f} ms  p50 {pct(peer_times, 50) * 1000:7.1f} ms  "
          f"p99 {pct(peer_times, 99) * 1000:7.1f} ms")
    print(f"  ratio vpsd / virsh create (mean): {vm / pm:.2f}  (goal <= 1.2)")
    for verb, values in rtts.items():
        if values:
            print(f"QMP {verb} round trip, {N} guests x 50 = {len(values)} calls pooled, vpsd's client: "
                  f"p50 {pct(values, 50) / 1000:.2f} ms, p99 {pct(values, 99) / 1000:.2f} ms")


if __name__ == "__main__":
    main()
