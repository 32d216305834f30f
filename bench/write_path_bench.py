#!/usr/bin/env python3
"""write_path_bench: where a save's time goes on the write path.

  bench/write_path_bench.py --tpded TPDED --work DIR [--mb 1500] [--block-kb 1024]
      [--rounds 3] [--variant NAME=TPDED_ARGS ...] [--out results.json]

Writes one file of --mb MiB (random bytes, prepared in memory first) in
--block-kb writes, into a plain directory and into a tpded mount per variant,
and times the write() calls and the close() apart: with FUSE's writeback
cache, write() lands in the page cache and close() waits until the kernel
has sent every dirty page to the daemon. Reports MB/s of each phase, the
daemon's CPU seconds (user + system, from /proc) per round, and the kernel
and the filesystem under the work directory. Ingest is deferred in every
mount variant (--ingest-delay-ms), so only the write path is measured. A
variant is NAME=ARGS, ARGS the extra tpded arguments split on spaces; the
default variants: "spool-disk" (the spool beside the store) and "spool-shm"
(the spool in /dev/shm). Needs root (FUSE).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402

DEFER = ["--ingest-delay-ms=600000"]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_once(path, data, block):
    view = memoryview(data)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in range(0, len(view), block):
        os.write(fd, view[off:off + block])
    t1 = time.perf_counter()
    os.close(fd)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def rounds(directory, data, block, n, pid=None):
    out = []
    for k in range(n):
        cpu0 = cpu_seconds(pid) if pid else 0.0
        w, c = write_once(os.path.join(directory, f"file-{k}"), data, block)
        mb = len(data) / 1e6
        r = {"write_s": w, "close_s": c, "mb_per_s": mb / (w + c), "write_mb_per_s": mb / w}
        if pid:
            r["daemon_cpu_s"] = cpu_seconds(pid) - cpu0
        out.append(r)
    return out


def df_type(path):
    r = subprocess.run(["df", "-T", path], capture_output=True, text=True)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 else "?"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tpded", required=True)
    p.add_argument("--work", default="/var/tmp/tpde-write-bench")
    p.add_argument("--mb", type=int, default=1500)
    p.add_argument("--block-kb", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variant", action="append", default=[])
    p.add_argument("--out")
    a = p.parse_args()
    variants = dict(v.split("=", 1) for v in a.variant) or {
        "spool-disk": "", "spool-shm": "--spool /dev/shm/tpde-write-bench-spool"}
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    data = os.urandom(a.mb << 20)
    block = a.block_kb << 10
    res = {"kernel": platform.release(), "cores": os.cpu_count(), "work_fs": df_type(a.work), "mb": a.mb,
           "block_kb": a.block_kb}
    plain = os.path.join(a.work, "plain")
    os.makedirs(plain)
    res["plain"] = rounds(plain, data, block, a.rounds)
    shutil.rmtree(plain)
    harness.TPDED = a.tpded
    for name, args in variants.items():
        store, mnt = os.path.join(a.work, f"store-{name}"), os.path.join(a.work, f"mnt-{name}")
        extra = DEFER + args.split()
        for x in extra:
            if x.startswith("/dev/shm/"):
                shutil.rmtree(x, ignore_errors=True)
        d = harness.Daemon(store, mnt, extra_args=extra)
        d.start()
        try:
            res[name] = rounds(mnt, data, block, a.rounds, pid=d.proc.pid)
        finally:
            d.stop()
        shutil.rmtree(store, ignore_errors=True)
        for x in extra:
            if x.startswith("/dev/shm/"):
                shutil.rmtree(x, ignore_errors=True)
    print(json.dumps(res, indent=1))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
