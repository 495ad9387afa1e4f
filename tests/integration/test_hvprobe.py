"""The hypervisor probe: the boot check itself (run under TCG here, the
mechanism KVM nodes use), its timeout, and vpsd's verdicts."""

import os
import subprocess
import time

from conftest import BUILD, VPSD

QEMU = "/usr/bin/qemu-system-x86_64"
BOOT = BUILD / "tests" / "hvprobe_boot"


def qemu_running(kernel):
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if str(kernel) in l]


def test_boot_check_boots_a_real_kernel(test_guest):
    start = time.monotonic()
    r = subprocess.run([str(BOOT), QEMU, "tcg", str(test_guest / "vmlinuz"), "120"],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "booted: a guest kernel booted"
    print(f"kernel reached root mounting under TCG in {time.monotonic() - start:.1f} s")
    assert not qemu_running(test_guest / "vmlinuz"), "qemu is gone after the verdict"


def test_boot_check_times_out_and_kills_qemu(test_guest):
    """What a hanging nested-KVM guest looks like to the probe."""
    r = subprocess.run([str(BOOT), QEMU, "tcg", str(test_guest / "vmlinuz"), "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert r.stdout.strip() == "failed: a guest kernel did not finish booting within 1 s"
    assert not qemu_running(test_guest / "vmlinuz")


def test_boot_check_reports_qemu_failure(tmp_path):
    r = subprocess.run([str(BOOT), QEMU, "tcg", str(tmp_path / "no-kernel"), "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert "qemu exited with status 1 before the guest booted" in r.stdout
    assert "no-kernel" in r.stdout, "QEMU's own last error line is kept"


def probe(tmp_path, **settings):
    conf = tmp_path / "probe.conf"
    conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    r = subprocess.run([str(VPSD), "-c", str(conf), "--probe-hypervisor"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_probe_verdicts(tmp_path, test_guest):
    assert probe(tmp_path, kvm_device=tmp_path / "absent") == \
        f"tcg: open {tmp_path}/absent: No such file or directory"
    assert probe(tmp_path, kvm_device="/dev/null") == "tcg: /dev/null is not a KVM device with API version 12"
    assert probe(tmp_path, hypervisor="tcg") == "tcg: configured: hypervisor = tcg"
    assert probe(tmp_path, hypervisor="kvm") == "kvm: configured: hypervisor = kvm (not probed)"


def test_probe_on_this_machine(tmp_path, test_guest):
    """The real probe on the real device, booting the test guest's kernel."""
    verdict = probe(tmp_path, kvm_probe_kernel=test_guest / "vmlinuz", kvm_probe_timeout=30)
    if not os.path.exists("/dev/kvm"):
        assert verdict == "tcg: open /dev/kvm: No such file or directory"
    else:
        # Either a KVM guest really booted, or the probe says why not
        # (nested KVM that hangs, a device that cannot create a VM, …).
        assert verdict == "kvm: a guest kernel booted" or verdict.startswith("tcg: "), verdict
    print("verdict on this machine:", verdict)


def test_status_shows_the_verdict(vpsd_factory):
    v = vpsd_factory().start(kvm_device="/dev/null")
    hv = v.ctl_json("status")["hypervisor"]
    assert hv == {"accel": "tcg", "configured": "auto", "reason": "/dev/null is not a KVM device with API version 12",
                  "cached": False, "probed_at": hv["probed_at"]}
    assert abs(hv["probed_at"] - time.time()) < 60
    assert "hypervisor  tcg (configured auto): /dev/null is not a KVM device" in v.ctl("status").stdout
    assert v.stop() == 0
