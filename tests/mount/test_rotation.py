"""HF Trainer-style checkpoint-N directories with save_total_limit=2 and 3,
and no manual gc: the daemon's collector alone keeps the store bounded."""
import json
import os
import random
import shutil
import time

import harness


def settled_stats(daemon, timeout=20):
    """Stats once the collector, which runs in the background after every
    ingest and deletion, has demoted, re-based and reclaimed what it had to:
    nothing pending and RocksDB's files within 25% of the stored bytes (a
    deletion's space comes back only after its compaction). After `timeout`
    seconds, whatever the stats say."""
    deadline = time.time() + timeout
    while True:
        st = daemon.stats()
        idle = st["pending_demotions"] == 0 and st["detached_objects"] == 0
        if (idle and st["disk_bytes"] <= st["stored_bytes"] * 5 // 4) or time.time() > deadline:
            return st
        time.sleep(0.2)


class RotationTest(harness.MountTestCase):
    def rotate(self, keep):
        rng = random.Random(5 + keep)
        # 12 MB of bf16 weights: large enough for its own chunk lane and blob files.
        weights = bytearray(rng.randbytes(12 << 20))
        run = os.path.join(self.mnt, "run")
        os.makedirs(run)
        expected = {}
        history = []
        for step in range(1, 21):
            # A fine-tuning step: ~2% of the bf16 weights move by one ulp.
            for _ in range(len(weights) // 100):
                i = rng.randrange(len(weights) // 2) * 2
                weights[i] ^= 1
            ckpt = os.path.join(run, "checkpoint-%d" % (step * 10))
            os.makedirs(ckpt)
            tensors = {"w": ("BF16", [len(weights) // 2], bytes(weights))}
            harness.write_safetensors(os.path.join(ckpt, "model.safetensors"), tensors, {"format": "pt"})
            with open(os.path.join(ckpt, "trainer_state.json"), "w") as f:
                json.dump({"global_step": step * 10, "log_history": [{"loss": 1.0 / step}] * step}, f)
            for name in os.listdir(ckpt):
                expected[os.path.join(ckpt, name)] = harness.sha256(os.path.join(ckpt, name))
            # Rotation, as Trainer does it.
            checkpoints = sorted(os.listdir(run), key=lambda n: int(n.split("-")[1]))
            for old in checkpoints[:-keep]:
                shutil.rmtree(os.path.join(run, old))
                expected = {p: h for p, h in expected.items() if not p.startswith(os.path.join(run, old) + "/")}
            if step % 5 == 0:
                self.d.flush()
                history.append(settled_stats(self.d))
        self.assertEqual(len(os.listdir(run)), keep)
        for path, digest in expected.items():
            self.assertEqual(harness.sha256(path), digest, path)
        for st in history:
            self.assertEqual(st["pending_demotions"], 0, st)
            self.assertEqual(st["detached_objects"], 0, st)
            # Bounded with no manual gc: less than the live files, and RocksDB's
            # files within 25% of what the live versions store.
            self.assertLess(st["stored_bytes"], st["logical_bytes"], st)
            self.assertLessEqual(st["disk_bytes"], st["stored_bytes"] * 5 // 4, st)
        self.assertLessEqual(history[-1]["stored_bytes"], history[0]["stored_bytes"] * 3 // 2)
        # The newest checkpoint is a keyframe, the older ones deltas.
        newest = os.path.join(run, checkpoints[-1], "model.safetensors")
        self.assertEqual(self.d.xattr(newest, "chain_depth"), "0")
        oldest = os.path.join(run, sorted(os.listdir(run), key=lambda n: int(n.split("-")[1]))[0],
                              "model.safetensors")
        self.assertEqual(self.d.xattr(oldest, "chain_depth"), str(keep - 1))
        self.assertVerifies()

    def test_keeping_the_last_two(self):
        self.rotate(2)

    def test_keeping_the_last_three(self):
        self.rotate(3)


if __name__ == "__main__":
    harness.main()
