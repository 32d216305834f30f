#!/usr/bin/env python3
"""gpu_mount_bench: cold reads of delta-coded checkpoints through the mount,
with the GPU decoder (tpded --gpu auto) and without (--gpu off).

  sudo bench/gpu_mount_bench.py --tpded ... --tpdectl ... [--gb 1] [--versions 5] [--work DIR]

Writes --versions checkpoints of a GPT-2-shaped fp32 model of --gb GB
(every weight moves a little per step, as fp32 master weights do) into the
mount, lets the collector make the older ones deltas against their
successors (reverse chains: checkpoint-1 is the deepest, depth
versions - 1), then, for each --gpu setting, restarts the daemon (its cache
cold, the kernel's pages dropped) and reads checkpoint-1 (the deepest
chain) and the middle one sequentially in 1 MiB reads. Every read is
compared by sha256 with the bytes written. Prints GB/s and the daemon's
decode counters (tpdectl stats).

--loader: also tpde.load_file(device="cuda") (python/tpde, libtpde_client
from $TPDE_CLIENT_LIB) of the newest and the deepest checkpoint, cold (fresh
daemon, kernel caches dropped) and warm, against
safetensors.torch.load_file(device="cuda") of the same bytes in a plain
directory, hot (page cache) and cold: GB/s of tensor bytes landed in GPU
memory, and every tensor compared with torch.equal.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402


def timed_read(path):
    fd = os.open(path, os.O_RDONLY)
    h = hashlib.sha256()
    size = 0
    t0 = time.perf_counter()
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            size += len(b)
            h.update(b)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - t0) / 1e9, h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tpded", required=True)
    ap.add_argument("--tpdectl", required=True)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--work", default="/var/tmp/tpde-gpu-bench")
    ap.add_argument("--loader", action="store_true")
    ap.add_argument("--skip-reads", action="store_true")
    a = ap.parse_args()
    harness.TPDED, harness.TPDECTL = os.path.abspath(a.tpded), os.path.abspath(a.tpdectl)
    import numpy as np

    shutil.rmtree(a.work, ignore_errors=True)
    store, mnt = os.path.join(a.work, "store"), os.path.join(a.work, "mnt")
    os.makedirs(a.work)
    rng = np.random.default_rng(0)
    n = int(a.gb * 1e9) // 4
    layers = 12
    per = n // (layers + 1)
    w = {"wte": (rng.standard_normal(per, dtype=np.float32) * 0.02)}
    for i in range(layers):
        w["h.%d.mlp" % i] = rng.standard_normal(per, dtype=np.float32) * 0.02
    d = harness.Daemon(store, mnt, ["--gpu", "off"]).start()
    digests = {}
    t0 = time.perf_counter()
    for v in range(1, a.versions + 1):
        if v > 1:
            for k in w:
                w[k] += rng.standard_normal(per, dtype=np.float32) * 1e-4
        ck = os.path.join(mnt, "checkpoint-%d" % v)
        os.makedirs(ck)
        path = os.path.join(ck, "model.safetensors")
        harness.write_safetensors(path, {k: ("F32", [per], x.tobytes()) for k, x in w.items()})
        digests[v] = harness.sha256(path)
        if a.loader:
            os.makedirs(os.path.join(a.work, "plain", "checkpoint-%d" % v))
            shutil.copyfile(path, os.path.join(a.work, "plain", "checkpoint-%d" % v, "model.safetensors"))
    d.settle()
    print("wrote and settled %d versions of %.2f GB in %.1f s" % (a.versions, a.gb, time.perf_counter() - t0))
    for v in range(1, a.versions + 1):
        print("  checkpoint-%d: chain depth %s" % (v, d.xattr(os.path.join(mnt, "checkpoint-%d" % v, "model.safetensors"), "chain_depth")))
    d.stop()
    results = {}
    if a.loader:
        results["loader"] = bench_loader(a, store, mnt)
    for gpu in (() if a.skip_reads else ("off", "auto")):
        for v in (1, (a.versions + 1) // 2, a.versions):
            d = harness.Daemon(store, mnt, ["--gpu", gpu]).start()
            subprocess.run(["sync"])
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            path = os.path.join(mnt, "checkpoint-%d" % v, "model.safetensors")
            depth = d.xattr(path, "chain_depth")
            gbs, digest = timed_read(path)
            ok = digest == digests[v]
            stats = d.tpdectl("stats").stdout.strip().splitlines()
            print("gpu=%-4s checkpoint-%d (depth %s): cold read %.2f GB/s, %s" % (gpu, v, depth, gbs, "identical" if ok else "DIFFERS"))
            for line in stats:
                if line.startswith("decoded"):
                    print("    " + line)
            results["%s/%d" % (gpu, v)] = {"depth": depth, "gbs": gbs, "identical": ok}
            d.stop()
            if not ok:
                sys.exit(1)
    print(json.dumps(results))


def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def bench_loader(a, store, mnt):
    import torch
    import tpde
    from safetensors.torch import load_file as st_load

    def timed(fn):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        return out, sum(t.numel() * t.element_size() for t in out.values()) / dt / 1e9

    res = {}
    torch.zeros(1, device="cuda")  # CUDA context up front
    for v in (a.versions, 1):
        plain = os.path.join(a.work, "plain", "checkpoint-%d" % v, "model.safetensors")
        path = os.path.join(mnt, "checkpoint-%d" % v, "model.safetensors")
        drop_caches()
        ref, st_cold = timed(lambda: st_load(plain, device="cuda"))
        _, st_hot = timed(lambda: st_load(plain, device="cuda"))
        d = harness.Daemon(store, mnt, ["--gpu", "off"]).start()
        depth = d.xattr(path, "chain_depth")
        drop_caches()
        got, tp_cold = timed(lambda: tpde.load_file(path, device="cuda"))
        same = sorted(got) == sorted(ref) and all(
            got[k].dtype == ref[k].dtype and torch.equal(got[k].view(torch.uint8), ref[k].view(torch.uint8)) for k in ref)
        del got
        _, tp_warm = timed(lambda: tpde.load_file(path, device="cuda"))
        d.stop()
        print("loader checkpoint-%d (depth %s): tpde.load_file cuda cold %.2f GB/s, warm %.2f GB/s; "
              "safetensors plain dir cold %.2f GB/s, hot %.2f GB/s; %s" %
              (v, depth, tp_cold, tp_warm, st_cold, st_hot, "identical" if same else "DIFFERENT"))
        sys.stdout.flush()
        res["checkpoint-%d" % v] = {"depth": depth, "tpde_cold": tp_cold, "tpde_warm": tp_warm,
                                    "st_cold": st_cold, "st_hot": st_hot, "identical": same}
        del ref
        if not same:
            sys.exit(1)
    return res


if __name__ == "__main__":
    main()
