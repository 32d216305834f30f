"""torch.save / torch.load of a model and optimizer every training step."""
import copy
import os
import unittest

import harness

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


@unittest.skipIf(torch is None, "python3-torch is not installed")
class TorchTest(harness.MountTestCase):
    def test_every_step_saved_and_loaded_back_equal(self):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        saved = []
        for step in range(6):
            x = torch.randn(32, 64)
            loss = (model(x) - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            d = os.path.join(self.mnt, "run", "step-%d" % step)
            os.makedirs(d)
            torch.save(model.state_dict(), os.path.join(d, "model.pt"))
            torch.save(opt.state_dict(), os.path.join(d, "optimizer.pt"))
            # What was saved, kept in memory: the mount must give back exactly this.
            saved.append((copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())))
        self.d.settle()
        for step, (weights, optim) in enumerate(saved):
            d = os.path.join(self.mnt, "run", "step-%d" % step)
            self.assertTrue(equal(torch.load(os.path.join(d, "model.pt")), weights), step)
            self.assertTrue(equal(torch.load(os.path.join(d, "optimizer.pt")), optim), step)
        # The newest step is a keyframe, earlier ones deltas against their successors.
        newest = os.path.join(self.mnt, "run", "step-5", "optimizer.pt")
        self.assertEqual(self.d.xattr(newest, "chain_depth"), "0")
        older = os.path.join(self.mnt, "run", "step-4", "optimizer.pt")
        self.assertTrue(self.d.xattr(older, "reference").endswith("step-5/optimizer.pt"))
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
