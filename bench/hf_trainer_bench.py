#!/usr/bin/env python3
"""hf_trainer_bench: the workload tpde exists for, measured with a real client.

  bench/hf_trainer_bench.py --tpded TPDED --tpdectl TPDECTL --work DIR \
      [--scenario rotate|keepall|all] [--model gpt2|tiny] [--out results.json]

Hugging Face Trainer trains GPT-2 124M (n_embd 768, 12 layers, vocab 50257;
fp32 master weights, bf16 autocast on a GPU, AdamW), saving every 50 steps,
once into a plain directory and once into a tpded mount:
  rotate   6 saves with save_total_limit=3 (resume from the newest,
           delete the oldest);
  keepall  8 saves, every checkpoint kept.
Reported per run: total and largest time inside Trainer._save_checkpoint
(where HF also rotates old checkpoints), training wall time (minus the
benchmark's own sha256 callback), and for the mount: stored and on-disk
bytes with no manual gc, at the end and 10 s later; then, after a daemon
restart with the kernel's caches dropped, cold sequential read GB/s of the
newest model.safetensors and optimizer.pt, and
safetensors.torch.load_file(device="cuda") GB/s from the mount vs the plain
directory (cold). Every file that survives is compared by sha256 with its
bytes at save time.

`--model tiny` trains a small GPT-2 on the CPU; `--model emulated` needs no
transformers: it writes what Trainer writes (model.safetensors, optimizer.pt
twice its size, small JSON files; fp32 weights nudged each save) with the
same rotation, to check the harness on a machine without them. Needs root
(FUSE, drop_caches).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402
import mount_bench  # noqa: E402  (beside this file)

SCENARIOS = {"rotate": dict(saves=6, limit=3), "keepall": dict(saves=8, limit=None)}


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_gbps(path):
    return mount_bench.read_file(path, block=16 << 20)


def load_cuda_gbps(path):
    import torch
    from safetensors.torch import load_file
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tensors = load_file(path, device="cuda")
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = sum(t.numel() * t.element_size() for t in tensors.values())
    del tensors
    torch.cuda.empty_cache()
    return n / dt / 1e9


# ---- the training run (a child process: a clean GPU and page cache per run) ----

def emulate(output_dir, saves, limit, result_path, mb=64):
    """Trainer's files and rotation without transformers (see --model)."""
    import numpy as np
    rng = np.random.default_rng(0)
    w = rng.standard_normal(mb << 18).astype(np.float32)
    save_times, sums, kept = [], {}, []
    for k in range(1, saves + 1):
        w += rng.standard_normal(w.size).astype(np.float32) * np.float32(1e-4)
        t0 = time.perf_counter()
        d = os.path.join(output_dir, f"checkpoint-{50 * k}")
        os.makedirs(d)
        harness.write_safetensors(os.path.join(d, "model.safetensors"), {"w": ("F32", [w.size], w.tobytes())})
        with open(os.path.join(d, "optimizer.pt"), "wb") as f:
            f.write(np.concatenate([w, w * np.float32(0.5)]).tobytes())
        with open(os.path.join(d, "trainer_state.json"), "w") as f:
            json.dump({"global_step": 50 * k}, f)
        kept.append(d)
        if limit is not None and len(kept) > limit:
            shutil.rmtree(kept.pop(0))
        save_times.append(time.perf_counter() - t0)
        for name in sorted(os.listdir(d)):
            sums[os.path.relpath(os.path.join(d, name), output_dir)] = harness.sha256(os.path.join(d, name))
    json.dump({"save_seconds": save_times, "train_wall_seconds": sum(save_times), "sha256": sums},
              open(result_path, "w"), indent=1)


def train(output_dir, saves, limit, model_size, result_path):
    if model_size == "emulated":
        return emulate(output_dir, saves, limit, result_path)
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    cuda = torch.cuda.is_available()
    if model_size == "gpt2":
        config = GPT2Config()  # 124M: n_embd 768, 12 layers, vocab 50257
        seq, batch = 256, 8
    else:
        config = GPT2Config(vocab_size=512, n_positions=64, n_embd=128, n_layer=2, n_head=4)
        seq, batch = 64, 8
    torch.manual_seed(0)

    class Data(torch.utils.data.Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(1)
            self.x = torch.randint(0, config.vocab_size, (4096, seq), generator=g)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.x[i]}

    save_times, parts = [], []
    original = Trainer._save_checkpoint

    def timed_save(self, *args, **kwargs):
        parts.append({})
        t0 = time.perf_counter()
        r = original(self, *args, **kwargs)
        save_times.append(time.perf_counter() - t0)
        return r

    Trainer._save_checkpoint = timed_save
    profile_save_parts(parts)

    class Record(TrainerCallback):
        """sha256 of every file of a checkpoint as it was saved (timed, and
        subtracted from the wall time: it is the benchmark's, not HF's)."""

        def __init__(self):
            self.sums, self.seconds = {}, 0.0

        def on_save(self, args, state, control, **kw):
            t0 = time.perf_counter()
            d = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                if os.path.isfile(p):
                    self.sums[os.path.relpath(p, args.output_dir)] = harness.sha256(p)
            self.seconds += time.perf_counter() - t0

    rec = Record()
    args = TrainingArguments(output_dir=output_dir, max_steps=50 * saves, save_steps=50, save_total_limit=limit,
                             per_device_train_batch_size=batch, learning_rate=1e-4, logging_steps=50, report_to=[],
                             seed=0, bf16=cuda, use_cpu=not cuda, dataloader_num_workers=2)
    t0 = time.perf_counter()
    Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=Data(), callbacks=[rec]).train()
    wall = time.perf_counter() - t0 - rec.seconds
    json.dump({"save_seconds": save_times, "save_parts": parts, "train_wall_seconds": wall, "sha256": rec.sums},
              open(result_path, "w"), indent=1)


def profile_save_parts(parts):
    """Times the calls a save spends its time in (per save, into parts[-1]):
    where the mount costs more than the plain directory."""
    import safetensors.torch
    import torch
    import transformers.modeling_utils as modeling_utils
    import transformers.trainer as trainer_module

    def wrap(owner, name, label):
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if parts:
                    parts[-1][label] = parts[-1].get(label, 0.0) + time.perf_counter() - t0
        setattr(owner, name, timed)

    wrap(torch, "save", "torch.save")
    wrap(os, "fsync", "os.fsync")
    wrap(shutil, "rmtree", "shutil.rmtree")
    # model.safetensors: HF calls safetensors' save_file through the name it
    # imported (modeling_utils.safe_save_file), so that name is wrapped.
    wrap(safetensors.torch, "save_file", "safetensors.save_file")
    for module in (modeling_utils, trainer_module):
        if hasattr(module, "safe_save_file"):
            wrap(module, "safe_save_file", "safetensors.save_file")


# ---- the driver ----

def run_training(output_dir, scenario, model, work):
    result = os.path.join(work, "train-result.json")
    cfg = SCENARIOS[scenario]
    cmd = [sys.executable, os.path.abspath(__file__), "--train", output_dir, "--saves", str(cfg["saves"]),
           "--model", model, "--result", result]
    if cfg["limit"] is not None:
        cmd += ["--limit", str(cfg["limit"])]
    subprocess.run(cmd, check=True)
    return json.load(open(result))


def checked(root, sums):
    """Files that survive, compared with their bytes at save time."""
    same = total = 0
    for rel, digest in sums.items():
        p = os.path.join(root, rel)
        if os.path.exists(p):
            total += 1
            same += harness.sha256(p) == digest
    return same, total


def newest_checkpoint(root):
    ckpts = [d for d in os.listdir(root) if d.startswith("checkpoint-")]
    return os.path.join(root, max(ckpts, key=lambda d: int(d.split("-")[1])))


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def bench_scenario(a, scenario):
    out = {"scenario": scenario}
    cuda = a.model == "gpt2"
    # Plain directory.
    plain = os.path.join(a.work, f"plain-{scenario}")
    shutil.rmtree(plain, ignore_errors=True)
    r = run_training(os.path.join(plain, "run"), scenario, a.model, a.work)
    out["plain"] = {"save_total_s": sum(r["save_seconds"]), "save_max_s": max(r["save_seconds"]),
                    "saves_s": r["save_seconds"], "save_parts": r.get("save_parts"),
                    "train_wall_s": r["train_wall_seconds"],
                    "live_bytes": du(os.path.join(plain, "run"))}
    newest_plain = newest_checkpoint(os.path.join(plain, "run"))

    # Through the mount.
    store, mnt = os.path.join(a.work, f"store-{scenario}"), os.path.join(a.work, f"mnt-{scenario}")
    shutil.rmtree(store, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    harness.TPDED, harness.TPDECTL = a.tpded, a.tpdectl
    d = harness.Daemon(store, mnt, extra_args=a.tpded_arg)
    d.start()
    try:
        r = run_training(os.path.join(mnt, "run"), scenario, a.model, a.work)
        m = {"save_total_s": sum(r["save_seconds"]), "save_max_s": max(r["save_seconds"]),
             "saves_s": r["save_seconds"], "save_parts": r.get("save_parts"), "train_wall_s": r["train_wall_seconds"]}
        if a.saves_only:  # no flush: an --ingest-delay-ms run would wait it out
            m["same_sha256"], m["files_checked"] = checked(os.path.join(mnt, "run"), r["sha256"])
            out["mount"] = m
            return finish(out)
        t0 = time.perf_counter()
        d.flush()
        m["commit_after_last_save_s"] = time.perf_counter() - t0
        st = d.stats()
        m["live_logical_bytes"] = st["logical_bytes"]
        m["end"] = {"stored_bytes": st["stored_bytes"], "disk_bytes": st["disk_bytes"], "store_dir_bytes": du(store),
                    "pending_demotions": st.get("pending_demotions"), "garbage_bytes": st.get("garbage_bytes")}
        time.sleep(10)
        st = d.stats()
        m["after_10s"] = {"stored_bytes": st["stored_bytes"], "disk_bytes": st["disk_bytes"],
                          "store_dir_bytes": du(store), "pending_demotions": st.get("pending_demotions"),
                          "garbage_bytes": st.get("garbage_bytes")}
        m["ratio_logical_to_disk_10s"] = st["logical_bytes"] / max(1, m["after_10s"]["disk_bytes"])
        m["same_sha256"], m["files_checked"] = checked(os.path.join(mnt, "run"), r["sha256"])
        newest = newest_checkpoint(os.path.join(mnt, "run"))
        m["newest_chain_depth"] = int(d.xattr(os.path.join(newest, "model.safetensors"), "chain_depth"))

        # Cold reads: daemon restarted, kernel caches dropped (disk), then
        # restarted again with the store's pages cached (daemon cold only).
        for label, drop in (("cold_disk", True), ("daemon_restart", False)):
            for name in ("model.safetensors", "optimizer.pt"):
                d.stop()
                dropped = drop_caches() if drop else False
                d.start()
                m[f"read_{label}_{name}_gbps"] = read_gbps(os.path.join(newest, name))
                if drop:
                    m["caches_dropped"] = dropped
        if cuda:
            d.stop()
            drop_caches()
            d.start()
            m["load_cuda_cold_gbps"] = load_cuda_gbps(os.path.join(newest, "model.safetensors"))
            drop_caches()
            out["plain"]["load_cuda_cold_gbps"] = load_cuda_gbps(os.path.join(newest_plain, "model.safetensors"))
            out["plain"]["load_cuda_hot_gbps"] = load_cuda_gbps(os.path.join(newest_plain, "model.safetensors"))
        drop_caches()
        for name in ("model.safetensors", "optimizer.pt"):
            out["plain"][f"read_cold_disk_{name}_gbps"] = read_gbps(os.path.join(newest_plain, name))
        m["verify"] = d.tpdectl("verify", check=False).stdout.strip().splitlines()[-1]
        out["mount"] = m
    finally:
        d.stop()
        print(d.read_log()[-4000:], file=sys.stderr)
    return finish(out)


def finish(out):
    out["save_ratio"] = out["mount"]["save_total_s"] / out["plain"]["save_total_s"]
    out["max_single_save_ratio"] = max(x / y for x, y in zip(out["mount"]["saves_s"], out["plain"]["saves_s"]))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tpded")
    p.add_argument("--tpdectl")
    p.add_argument("--work", default="/var/tmp/tpde-hf-bench")
    p.add_argument("--scenario", default="all", choices=["rotate", "keepall", "all"])
    p.add_argument("--model", default="gpt2", choices=["gpt2", "tiny", "emulated"])
    p.add_argument("--out")
    p.add_argument("--tpded-arg", action="append", default=[],
                   help="an extra tpded argument (repeat), e.g. --tpded-arg=--ingest-delay-ms=600000")
    p.add_argument("--saves-only", action="store_true", help="measure the saves only (no reads, no space)")
    # Child mode: one training run.
    p.add_argument("--train")
    p.add_argument("--saves", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--result")
    a = p.parse_args()
    if a.train:
        train(a.train, a.saves, a.limit, a.model, a.result)
        return
    os.makedirs(a.work, exist_ok=True)
    results = []
    for s in (["rotate", "keepall"] if a.scenario == "all" else [a.scenario]):
        results.append(bench_scenario(a, s))
        print(json.dumps(results[-1], indent=1), flush=True)
    if a.out:
        json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
