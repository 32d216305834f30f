"""tpde.load_file / tpde.safe_open (python/tpde over libtpde_client) against
the same files read through the mount: same keys, dtypes, shapes and bits.

CPU, everywhere (Debian's python3-torch); the CUDA tests are in
test_loader_cuda.py.
Environment: TPDE_CLIENT_LIB (libtpde_client.so) and PYTHONPATH with
python/ are set by ctest.
"""
import json
import os
import shutil
import struct
import subprocess
import threading
import time
import unittest

import harness

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

if torch is not None:
    import tpde

try:
    import safetensors.torch as st_torch
except ImportError:
    st_torch = None

CUDA = torch is not None and torch.cuda.is_available()


def read_reference(path):
    """name -> (dtype string, shape, raw bytes), parsed independently of tpde."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], raw[8 + n + b:8 + n + e])
    return out


def tensor_bytes(t):
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    return t.view(-1).view(torch.uint8).numpy().tobytes()


@unittest.skipIf(torch is None, "python3-torch is not installed")
class LoaderTest(harness.MountTestCase):
    def copy_series(self):
        """Every series of tests/data into the mount; settled, so older
        checkpoints are deltas (chains of depth 1 and 2)."""
        files = []
        for series in sorted(os.listdir(harness.DATA)):
            shutil.copytree(os.path.join(harness.DATA, series), os.path.join(self.mnt, series))
            for root, _, names in os.walk(os.path.join(self.mnt, series)):
                files += [os.path.join(root, n) for n in names if n.endswith(".safetensors")]
        self.d.settle()
        return sorted(files)

    def assertSameTensors(self, got, path):
        ref = read_reference(path)
        self.assertEqual(sorted(got), sorted(ref))
        for name, (dtype, shape, raw) in ref.items():
            t = got[name]
            self.assertEqual(list(t.shape), shape, name)
            self.assertEqual(str(t.dtype).replace("torch.", ""), tpde._DTYPES[dtype], name)
            self.assertEqual(tensor_bytes(t), raw, "%s of %s differs" % (name, path))

    def test_load_file_cpu_equals_the_mount_for_every_series(self):
        files = self.copy_series()
        self.assertGreater(len(files), 3)
        depths = set()
        for path in files:
            got = tpde.load_file(path, device="cpu")
            self.assertSameTensors(got, path)
            with tpde.safe_open(path, device="cpu") as f:
                depths.add(f.chain_depth)
        self.assertIn(0, depths)
        self.assertTrue(depths - {0}, "no delta-coded checkpoint was loaded: %s" % depths)

    def test_safe_open_keys_metadata_and_slices(self):
        path = os.path.join(self.mnt, "m.safetensors")
        a = torch.arange(0, 6000, dtype=torch.float32).reshape(60, 100)
        b = torch.arange(0, 300, dtype=torch.int16).reshape(3, 100).to(torch.bfloat16)
        harness.write_safetensors(path, {"a": ("F32", [60, 100], tensor_bytes(a)),
                                         "b": ("BF16", [3, 100], tensor_bytes(b)),
                                         "empty": ("F32", [0, 4], b"")},
                                  metadata={"format": "pt", "step": "7"})
        self.d.flush()
        with tpde.safe_open(path, framework="pt", device="cpu") as f:
            self.assertEqual(f.keys(), ["a", "b", "empty"])
            self.assertEqual(f.metadata(), {"format": "pt", "step": "7"})
            self.assertTrue(torch.equal(f.get_tensor("a"), a))
            self.assertEqual(tensor_bytes(f.get_tensor("b")), tensor_bytes(b))
            self.assertEqual(f.get_tensor("empty").shape, (0, 4))
            s = f.get_slice("a")
            self.assertEqual(s.get_shape(), [60, 100])
            self.assertEqual(s.get_dtype(), "F32")
            self.assertTrue(torch.equal(s[3:7, 10:20], a[3:7, 10:20]))
            self.assertTrue(torch.equal(s[-1], a[-1]))

    def test_clear_errors(self):
        outside = os.path.join(self.tmp, "plain.safetensors")
        with open(outside, "wb") as f:
            f.write(b"x")
        with self.assertRaisesRegex(ValueError, "not in a tpde mount"):
            tpde.load_file(outside)
        with self.assertRaises(FileNotFoundError):
            tpde.load_file(os.path.join(self.mnt, "missing.safetensors"))
        notst = os.path.join(self.mnt, "notes.txt")
        with open(notst, "w") as f:
            f.write("not a safetensors file\n" * 100)
        self.d.flush()
        with self.assertRaisesRegex(ValueError, "not a safetensors file"):
            tpde.load_file(notst)
        # A file still open for writing: not committed; waiting ends with a clear error.
        busy = os.path.join(self.mnt, "busy.safetensors")
        f = open(busy, "wb")
        f.write(b"\0" * 100)
        f.flush()
        try:
            t0 = time.monotonic()
            with self.assertRaises(tpde.NotCommittedError):
                tpde.load_file(busy, wait=0.5)
            self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        finally:
            f.close()
        # ... and one committed during the wait is loaded.
        late = os.path.join(self.mnt, "late.safetensors")
        g = open(late, "wb")
        x = torch.arange(10, dtype=torch.float32)

        def finish():
            time.sleep(0.3)
            header = json.dumps({"x": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}).encode()
            header += b" " * (-(8 + len(header)) % 8)
            g.write(struct.pack("<Q", len(header)) + header + tensor_bytes(x))
            g.close()
        threading.Thread(target=finish).start()
        self.assertTrue(torch.equal(tpde.load_file(late, wait=30)["x"], x))
        # A dtype this torch lacks (F8 on torch < 2.1) names the dtype.
        if not hasattr(torch, "float8_e4m3fn"):
            p8 = os.path.join(self.mnt, "f8.safetensors")
            harness.write_safetensors(p8, {"q": ("F8_E4M3", [4], b"\1\2\3\4")})
            self.d.flush()
            with self.assertRaisesRegex(TypeError, "F8_E4M3"):
                tpde.load_file(p8)

    def test_daemon_not_running(self):
        path = os.path.join(self.mnt, "m.safetensors")
        harness.write_safetensors(path, {"a": ("F32", [4], b"\0" * 16)})
        self.d.flush()
        os.rename(os.path.join(self.store, "control.sock"), os.path.join(self.store, "moved.sock"))
        try:
            with self.assertRaisesRegex(tpde.TpdeError, "not running"):
                tpde.load_file(path)
        finally:
            os.rename(os.path.join(self.store, "moved.sock"), os.path.join(self.store, "control.sock"))

if __name__ == "__main__":
    harness.main()
