"""HF Trainer-style checkpoint-N directories with save_total_limit=2."""
import json
import os
import random
import shutil
import struct

import harness


def make_model(rng, n):
    return [rng.getrandbits(16) for _ in range(n)]


class RotationTest(harness.MountTestCase):
    def test_keeping_the_last_two_bounds_the_store_and_reads_back(self):
        rng = random.Random(5)
        weights = {"wte": make_model(rng, 128 * 256), "h.0.attn": make_model(rng, 256 * 256),
                   "h.0.mlp": make_model(rng, 256 * 512), "ln_f": make_model(rng, 256)}
        run = os.path.join(self.mnt, "run")
        os.makedirs(run)
        expected = {}
        stored = []
        for step in range(1, 21):
            # A fine-tuning step: ~2% of the bf16 weights move by one ulp or two.
            for w in weights.values():
                for _ in range(len(w) // 50):
                    i = rng.randrange(len(w))
                    w[i] = (w[i] + rng.choice((-2, -1, 1, 2))) & 0xFFFF
            ckpt = os.path.join(run, "checkpoint-%d" % (step * 10))
            os.makedirs(ckpt)
            tensors = {k: ("BF16", [len(v)], struct.pack("<%dH" % len(v), *v)) for k, v in weights.items()}
            harness.write_safetensors(os.path.join(ckpt, "model.safetensors"), tensors, {"format": "pt"})
            with open(os.path.join(ckpt, "trainer_state.json"), "w") as f:
                json.dump({"global_step": step * 10, "log_history": [{"loss": 1.0 / step}] * step}, f)
            with open(os.path.join(ckpt, "config.json"), "w") as f:
                json.dump({"model_type": "gpt2", "n_embd": 256}, f)
            for name in os.listdir(ckpt):
                expected[os.path.join(ckpt, name)] = harness.sha256(os.path.join(ckpt, name))
            # Rotation, as Trainer does it.
            checkpoints = sorted(os.listdir(run), key=lambda n: int(n.split("-")[1]))
            for old in checkpoints[:-2]:
                shutil.rmtree(os.path.join(run, old))
                expected = {p: h for p, h in expected.items() if not p.startswith(os.path.join(run, old) + "/")}
            self.d.flush()
            self.d.tpdectl("gc")
            stored.append(self.d.stats()["stored_bytes"])
        self.assertEqual(sorted(os.listdir(run)), ["checkpoint-190", "checkpoint-200"])
        for path, digest in expected.items():
            self.assertEqual(harness.sha256(path), digest, path)
        # Bounded: after warm-up the store never grows past its early size.
        self.assertLessEqual(max(stored[4:]), stored[3] * 3 // 2, stored)
        self.assertEqual(self.d.stats()["detached_objects"], 0)
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
