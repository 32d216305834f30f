#!/usr/bin/env python3
"""mount_bench: tpded against a plain local directory.

  sudo bench/mount_bench.py --tpded build/daemon/tpded --tpdectl build/tools/tpdectl \
      [--series tests/data/A-pretrain-fp32 ...] [--generated-gb 1] [--work /var/tmp/tpde-bench]

For each series (a directory of checkpoint-N/ directories), and for a
generated bf16 fine-tuning series of --generated-gb GB per checkpoint:
  write     time to copy each checkpoint directory into the mount vs into a
            plain directory on the same disk (page cache, no fsync: what a
            training job sees), as the ratio of the totals;
  commit    time from the end of the copy to every file committed
            (tpdectl flush);
  read      sequential read of the latest checkpoint's largest file: through
            a fresh mount (daemon cache cold), again with the kernel's pages
            dropped (daemon cache warm), again from the kernel page cache,
            and from the plain directory (page cache).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402


def copy_tree(src, dst):
    t0 = time.perf_counter()
    shutil.copytree(src, dst)
    return time.perf_counter() - t0


def read_file(path, drop_kernel_cache=False, block=1 << 20):
    """Sequential read of the whole file in `block`-byte reads: GB/s."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_kernel_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        size = 0
        t0 = time.perf_counter()
        while True:
            b = os.read(fd, block)
            if not b:
                break
            size += len(b)
        return size / (time.perf_counter() - t0) / 1e9
    finally:
        os.close(fd)


def generate_series(root, gb, count=3, seed=0):
    """bf16 fine-tuning: each checkpoint changes ~2% of the elements by an ulp."""
    import numpy as np
    rng = np.random.default_rng(seed)
    n = int(gb * 1e9) // 2
    shapes = [("model.embed.weight", n // 4), ("model.layers.weight", n // 2), ("lm_head.weight", n - n // 4 - n // 2)]
    tensors = {name: rng.integers(0x3C00, 0x3E00, size=k, dtype=np.uint16) for name, k in shapes}
    for i in range(count):
        d = os.path.join(root, "checkpoint-%d" % ((i + 1) * 100))
        os.makedirs(d)
        if i:
            for t in tensors.values():
                idx = rng.integers(0, t.size, size=t.size // 50)
                t[idx] += rng.choice(np.array([1, 0xFFFF], dtype=np.uint16), size=idx.size)
        harness.write_safetensors(os.path.join(d, "model.safetensors"),
                                  {k: ("BF16", [v.size], v.tobytes()) for k, v in tensors.items()})
        with open(os.path.join(d, "trainer_state.json"), "w") as f:
            f.write('{"global_step": %d}' % ((i + 1) * 100))
    return root


def bench_series(name, series, work, cache_mb, daemon_args=()):
    store, mnt, plain = (os.path.join(work, x) for x in ("store", "mnt", "plain"))
    for p in (store, mnt, plain):
        shutil.rmtree(p, ignore_errors=True)
    os.makedirs(plain)
    d = harness.Daemon(store, mnt, ["--cache-mb", str(cache_mb), *daemon_args]).start()
    ckpts = sorted(os.listdir(series), key=lambda s: int(s.rsplit("-", 1)[-1]) if s[-1].isdigit() else 0)
    for c in ckpts:  # warm the source into the page cache
        harness.tree_hashes(os.path.join(series, c))
    t_mount = t_plain = t_commit = 0.0
    for c in ckpts:
        t_plain += copy_tree(os.path.join(series, c), os.path.join(plain, c))
        t_mount += copy_tree(os.path.join(series, c), os.path.join(mnt, c))
        t0 = time.perf_counter()
        d.flush()
        t_commit += time.perf_counter() - t0
    logical = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(series) for f in fs)
    stats = d.stats()
    last = os.path.join(ckpts[-1], max(os.listdir(os.path.join(series, ckpts[-1])),
                                       key=lambda f: os.path.getsize(os.path.join(series, ckpts[-1], f))))
    d.stop()
    d.start()  # fresh mount: daemon and kernel caches cold
    cold = read_file(os.path.join(mnt, last))
    warm_daemon = read_file(os.path.join(mnt, last), drop_kernel_cache=True)
    warm_kernel = read_file(os.path.join(mnt, last))
    plain_read = read_file(os.path.join(plain, last))
    ok = harness.sha256(os.path.join(mnt, last)) == harness.sha256(os.path.join(series, last))
    d.stop()
    shutil.rmtree(work, ignore_errors=True)
    mb = logical / 1e6
    print(f"{name:<22} {mb:>8.1f} {stats['ratio']:>6.2f}x | write {t_mount:6.2f}s vs {t_plain:6.2f}s "
          f"= {t_mount / t_plain:4.2f}x | commit {t_commit:6.2f}s ({mb / t_commit:5.0f} MB/s) | read "
          f"cold {cold:5.2f} daemon-warm {warm_daemon:5.2f} page-cache {warm_kernel:5.2f} "
          f"plain {plain_read:5.2f} GB/s | {'identical' if ok else 'DIFFERS'}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tpded", required=True)
    ap.add_argument("--tpdectl", required=True)
    ap.add_argument("--series", nargs="*", default=[])
    ap.add_argument("--generated-gb", type=float, default=1.0)
    ap.add_argument("--cache-mb", type=int, default=2048)
    ap.add_argument("--work", default="/var/tmp/tpde-mount-bench")
    ap.add_argument("--daemon-arg", action="append", default=[], help="extra tpded option (repeatable)")
    a = ap.parse_args()
    harness.TPDED, harness.TPDECTL = os.path.abspath(a.tpded), os.path.abspath(a.tpdectl)
    for s in a.series:
        bench_series(os.path.basename(s.rstrip("/")), s, os.path.join(a.work, "run"), a.cache_mb, a.daemon_arg)
    if a.generated_gb > 0:
        gen = os.path.join(a.work + "-gen", "series")
        shutil.rmtree(os.path.dirname(gen), ignore_errors=True)
        t0 = time.perf_counter()
        generate_series(gen, a.generated_gb)
        print(f"(generated 3 x {a.generated_gb} GB in {time.perf_counter() - t0:.0f} s)", flush=True)
        bench_series(f"generated-{a.generated_gb:g}GB-bf16", gen, os.path.join(a.work, "run"), a.cache_mb,
                     a.daemon_arg)
        shutil.rmtree(os.path.dirname(gen), ignore_errors=True)


if __name__ == "__main__":
    main()
