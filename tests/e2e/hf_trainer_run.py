"""A tiny GPT-2 trained by HF Trainer (CPU, deterministic), saving every 5 steps
with save_total_limit=2 into argv[1]. Records the sha256 of every file as it
is written (via a callback on_save) in argv[1]/../run.sha256.json."""
import hashlib
import json
import os
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

out = sys.argv[1]
# Bit-reproducible: CPU, one thread, deterministic kernels. The mount run and
# the plain run must write the same checkpoints.
torch.manual_seed(0)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


class Data(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, 256, (256, 64), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


class Record(TrainerCallback):
    def __init__(self):
        self.sums = {}

    def on_save(self, args, state, control, **kw):
        d = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                self.sums[os.path.relpath(p, args.output_dir)] = hashlib.sha256(open(p, "rb").read()).hexdigest()


model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=64, n_embd=128, n_layer=2, n_head=4))
args = TrainingArguments(output_dir=out, max_steps=30, save_steps=5, save_total_limit=2, per_device_train_batch_size=16,
                         learning_rate=1e-4, logging_steps=5, report_to=[], seed=0, data_seed=0, use_cpu=True,
                         dataloader_num_workers=0)
rec = Record()
Trainer(model=model, args=args, train_dataset=Data(), callbacks=[rec]).train()
json.dump(rec.sums, open(os.path.join(out, "..", "run.sha256.json"), "w"), indent=1)
