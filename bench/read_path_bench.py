#!/usr/bin/env python3
"""read_path_bench: the read of the newest checkpoint's model through the mount.

  sudo bench/read_path_bench.py --tpded build/daemon/tpded --tpdectl build/tools/tpdectl \
      [--gb 0.5] [--repeats 3] [--variant NAME=[VAR=value ...] [tpded options ...]] ...

Writes one GPT-2-shaped fp32 model.safetensors (normal(0, 0.02) weights,
about --gb GB) through a tpded mount and waits for it to commit: the newest
version, a keyframe. Then for each variant (by default one, "default"):
restarts the daemon with the variant's environment and options, and reads
the file sequentially in --block-mb MiB reads into one reused buffer (the reader's
own cost kept small), --repeats times, each on a fresh daemon:
  restart   the store's files in the kernel's page cache, tpded's caches
            empty (what a resume reads after a daemon restart);
  cold      the same after dropping the kernel's caches (the disk).
Prints GB/s and the daemon's CPU seconds per GB read (from /proc), and
checks the bytes read against the bytes written (sha256, once per variant,
outside the timed reads).
"""
import argparse
import os
import shlex
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402


def gpt2_tensors(gb, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    d, vocab = 768, 50257
    layer = [("attn.c_attn.weight", (d, 3 * d)), ("attn.c_attn.bias", (3 * d,)), ("attn.c_proj.weight", (d, d)),
             ("attn.c_proj.bias", (d,)), ("ln_1.weight", (d,)), ("ln_1.bias", (d,)), ("ln_2.weight", (d,)),
             ("ln_2.bias", (d,)), ("mlp.c_fc.weight", (d, 4 * d)), ("mlp.c_fc.bias", (4 * d,)),
             ("mlp.c_proj.weight", (4 * d, d)), ("mlp.c_proj.bias", (d,))]
    per_layer = sum(int(np.prod(s)) for _, s in layer) * 4
    layers = max(1, int((gb * 1e9 - vocab * d * 4) // per_layer))
    out = {"wte.weight": ("F32", (vocab, d), (rng.standard_normal((vocab, d), dtype=np.float32) * 0.02).tobytes())}
    for i in range(layers):
        for name, shape in layer:
            t = rng.standard_normal(shape, dtype=np.float32) * 0.02
            out["h.%d.%s" % (i, name)] = ("F32", shape, t.tobytes())
    return out


def cpu_seconds(pid):
    """utime + stime of a process and its threads, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_through(path, daemon_pid, drop_caches, block):
    if drop_caches:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    buf = bytearray(block)
    fd = os.open(path, os.O_RDONLY)
    cpu0 = cpu_seconds(daemon_pid)
    t0 = time.perf_counter()
    n = 0
    try:
        while True:
            k = os.readv(fd, [buf])
            if k == 0:
                break
            n += k
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    return n / dt / 1e9, (cpu_seconds(daemon_pid) - cpu0) / (n / 1e9)


def parse_variant(text):
    name, _, rest = text.partition("=")
    env, args = {}, []
    for tok in shlex.split(rest):
        if not args and "=" in tok and not tok.startswith("-"):
            k, _, v = tok.partition("=")
            env[k] = v
        else:
            args.append(tok)
    return name, env, args


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tpded", required=True)
    ap.add_argument("--tpdectl", required=True)
    ap.add_argument("--gb", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp/tpde-read-path-bench")
    ap.add_argument("--block-mb", type=int, default=1, help="bytes per read(2), MiB")
    ap.add_argument("--no-cold", action="store_true", help="skip the reads after dropping the kernel's caches")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=[VAR=value ...] [tpded options ...] (repeatable; default: 'default=')")
    a = ap.parse_args()
    harness.TPDED, harness.TPDECTL = os.path.abspath(a.tpded), os.path.abspath(a.tpdectl)
    shutil.rmtree(a.work, ignore_errors=True)
    store, mnt = os.path.join(a.work, "store"), os.path.join(a.work, "mnt")
    d = harness.Daemon(store, mnt).start()
    path = os.path.join(mnt, "model.safetensors")
    plain = os.path.join(a.work, "model.safetensors")
    harness.write_safetensors(plain, gpt2_tensors(a.gb))
    want = harness.sha256(plain)
    t0 = time.perf_counter()
    shutil.copyfile(plain, path)
    d.flush()
    os.remove(plain)
    size = os.path.getsize(path)
    stats = d.stats()
    d.stop()
    print(f"model.safetensors {size / 1e9:.2f} GB, stored {stats['ratio']:.3f}x, written and committed in "
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores", flush=True)
    for text in a.variant or ["default="]:
        name, env, args = parse_variant(text)
        d = harness.Daemon(store, mnt, args)
        results = {"restart": [], "cold": []}
        ok = False
        for kind in ("restart",) + (() if a.no_cold else ("cold",)):
            for _ in range(a.repeats):
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                try:
                    d.start()
                finally:
                    for k, v in saved.items():
                        if v is None:
                            os.environ.pop(k, None)
                        else:
                            os.environ[k] = v
                time.sleep(1)  # the daemon's start-up work (recovery, gc) out of the way
                results[kind].append(read_through(path, d.proc.pid, kind == "cold", a.block_mb << 20))
                if kind == "restart" and len(results[kind]) == 1:
                    ok = harness.sha256(path) == want  # once per variant, outside the timed reads
                d.stop()
        line = f"{name:<14}"
        for kind, runs in results.items():
            if runs:
                line += (f" | {kind} " + " ".join(f"{g:5.2f}" for g, _ in runs) + " GB/s, daemon CPU "
                         + " ".join(f"{c:4.2f}" for _, c in runs) + " s/GB")
        print(line + (" | identical" if ok else " | DIFFERS"), flush=True)
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
