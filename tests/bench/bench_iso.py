"""Benchmark (make bench; not a test): an ISO upload through vpsd-edge into
the ISO store against its two peers in the same run, on the same file and
disk: `sha256sum FILE` (what hashing alone costs) and `dd ... conv=fdatasync`
(a plain disk write of the same bytes, synced as the store syncs).

The file is a real ISO (xorriso) padded with random bytes to BENCH_ISO_GIB
GiB (default 2), so the upload goes the whole way: TLS through the edge,
the pipe, counting and SHA-256 on vpsd's upload thread, the write, the
sync, the validation and the record. The client is curl (TLS 1.3, from the
page cache). Each figure is the median of BENCH_RUNS runs (default 3);
MB/s = 10^6 bytes/s. Prints the ratio of the upload to the slower of the
two peers; the goal is >= 0.8. BENCH_KEEP=1 keeps the folder."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
sys.path.insert(0, str(REPO / "tests" / "lib"))
import edge_harness  # noqa: E402

GIB = float(os.environ.get("BENCH_ISO_GIB", 2))
RUNS = int(os.environ.get("BENCH_RUNS", 3))
SIZE = int(GIB * (1 << 30)) // 2048 * 2048


def progress(text):
    print(f"  ... {text}", file=sys.stderr, flush=True)


def make_file(work):
    src = work / "src"
    src.mkdir()
    (src / "README").write_text("vpsd ISO bench\n")
    iso = work / "bench.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "BENCH", "-o", str(iso), str(src)], check=True)
    with open(iso, "ab") as f:
        left = SIZE - iso.stat().st_size
        block = os.urandom(1 << 20)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return iso


def timed(argv, **kw):
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.monotonic() - start


def drop_written(path):
    path.unlink(missing_ok=True)
    subprocess.run(["sync"])


def main():
    work = Path(tempfile.mkdtemp(prefix="vpsd-bench-iso-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    vpsd = None
    try:
        progress(f"making a {GIB:g} GiB ISO")
        iso = make_file(work)
        subprocess.run(["cat", str(iso)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        port = edge_harness.free_port()
        conf = work / "vpsd.conf"
        conf.write_text(f"state_dir = {work}/state\ncontrol_socket = {work}/control.sock\n"
                        f"kvm_device = {work}/no-kvm\nnft_table = vpsdbenchiso{os.getpid()}\n"
                        f"console_listen = 127.0.0.1:{port}\nguest_run_dir = {work}/guests\n"
                        f"iso_quota_bytes = 1T\n")
        log = open(work / "vpsd.log", "wb")
        vpsd = subprocess.Popen([str(BUILD / "vpsd"), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while b"console ready" not in (work / "vpsd.log").read_bytes():
            assert time.monotonic() < deadline and vpsd.poll() is None, (work / "vpsd.log").read_text()
            time.sleep(0.1)
        ctl = [str(BUILD / "vpsctl"), "--socket", str(work / "control.sock")]
        sha, disk, up = [], [], []
        for run in range(RUNS):
            progress(f"run {run + 1} of {RUNS}: sha256sum")
            sha.append(timed(["sha256sum", str(iso)]))
            progress(f"run {run + 1} of {RUNS}: dd conv=fdatasync")
            out = work / "copy.bin"
            disk.append(timed(["dd", f"if={iso}", f"of={out}", "bs=1M", "conv=fdatasync", "status=none"]))
            drop_written(out)
            progress(f"run {run + 1} of {RUNS}: upload")
            t = json.loads(subprocess.run(ctl + ["--json", "iso", "ticket", "bench", "--max-bytes", str(SIZE)],
                                          check=True, capture_output=True, text=True).stdout)["ticket"]
            start = time.monotonic()
            r = subprocess.run(["curl", "-sk", "-T", str(iso), "-H", "Expect:", "-H", "X-Label: bench",
                                f"https://127.0.0.1:{port}/iso/upload?ticket={t}"], capture_output=True, text=True)
            up.append(time.monotonic() - start)
            answer = json.loads(r.stdout)
            assert "id" in answer, answer
            subprocess.run(ctl + ["iso", "remove", answer["id"]], check=True, capture_output=True)
            subprocess.run(["sync"])
        mb = SIZE / 1e6
        rates = {"upload through vpsd-edge": mb / statistics.median(up), "sha256sum": mb / statistics.median(sha),
                 "dd conv=fdatasync": mb / statistics.median(disk)}
        slower = min(rates["sha256sum"], rates["dd conv=fdatasync"])
        print(f"\nISO upload, {SIZE} bytes, median of {RUNS} runs:")
        for name, rate in rates.items():
            print(f"  {name:28s} {rate:8.0f} MB/s")
        ratio = rates["upload through vpsd-edge"] / slower
        print(f"  ratio upload / slower peer   {ratio:8.2f}x   (goal >= 0.80: {'met' if ratio >= 0.8 else 'not met'})")
    finally:
        if vpsd and vpsd.poll() is None:
            vpsd.terminate()
            vpsd.wait(30)
        subprocess.run(["nft", "delete", "table", "bridge", f"vpsdbenchiso{os.getpid()}"], capture_output=True)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
