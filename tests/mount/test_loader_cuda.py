"""tpde.load_file(device="cuda") against safetensors.torch.load_file(device=
"cuda") (when the safetensors package is installed) and the mount's bytes,
bit for bit; memory accounting. Skips where torch sees no GPU: it runs on
the GPU machine (scripts/device-gpu.sh loader)."""
import os
import unittest

import harness
import test_loader as base  # the module, not its classes: their CPU tests run in test_loader.py
from test_loader import CUDA, st_torch, tensor_bytes, torch, tpde  # noqa: F401


@unittest.skipUnless(CUDA, "no CUDA device (the GPU loader tests run on the GPU machine)")
class CudaLoaderTest(base.LoaderTest):
    # Only the tests below (the CPU ones run in test_loader.py).
    test_load_file_cpu_equals_the_mount_for_every_series = None
    test_safe_open_keys_metadata_and_slices = None
    test_clear_errors = None
    test_daemon_not_running = None

    def test_load_file_cuda_equals_safetensors(self):
        files = self.copy_series()
        gen = torch.Generator().manual_seed(1)
        rand = {}
        for dt, name in [("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"), ("F64", "float64"),
                         ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"),
                         ("BOOL", "bool"), ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")]:
            if not hasattr(torch, name):
                continue
            n = 1 + int(torch.randint(0, 300000, (1,), generator=gen))
            raw = torch.randint(0, 256, (n * torch.tensor([], dtype=getattr(torch, name)).element_size(),),
                                dtype=torch.uint8, generator=gen)
            if dt == "BOOL":
                raw = raw % 2
            rand["t_" + dt] = (dt, [n], raw.numpy().tobytes())
        for v in range(5):  # depth 0 and 4 after settling
            d = os.path.join(self.mnt, "rand", "checkpoint-%d" % v)
            os.makedirs(d)
            harness.write_safetensors(os.path.join(d, "model.safetensors"), rand)
            rand = {k: (dt, s, bytes((x + (i % 97 == v)) % 256 if dt != "BOOL" else x for i, x in enumerate(r)))
                    for k, (dt, s, r) in rand.items()}
        self.d.settle()
        files += [os.path.join(self.mnt, "rand", "checkpoint-%d" % v, "model.safetensors") for v in (0, 4)]
        before = torch.cuda.memory_allocated()
        for path in files:
            got = tpde.load_file(path, device="cuda")
            if st_torch is not None:
                ref = st_torch.load_file(path, device="cuda")
                self.assertEqual(sorted(got), sorted(ref))
                for k in ref:
                    self.assertEqual(got[k].dtype, ref[k].dtype, k)
                    self.assertTrue(torch.equal(got[k].view(torch.uint8), ref[k].view(torch.uint8)), "%s of %s" % (k, path))
            self.assertSameTensors(got, path)
            del got
            ref = None
        self.assertEqual(torch.cuda.memory_allocated(), before)
        with tpde.safe_open(files[-2], device="cuda") as f:
            self.assertEqual(f.chain_depth, 4)

    def test_out_of_gpu_memory_leaks_nothing(self):
        path = os.path.join(self.mnt, "big.safetensors")
        a = torch.arange(16 << 20, dtype=torch.float32)  # 64 MiB
        harness.write_safetensors(path, {"a": ("F32", [16 << 20], tensor_bytes(a))})
        self.d.flush()
        tpde.load_file(path, device="cuda")  # the decoder's buffers exist before the GPU is filled
        torch.cuda.empty_cache()  # no cached block of torch's may serve the next allocation
        free, _ = torch.cuda.mem_get_info()
        hog = torch.empty(free - (32 << 20), dtype=torch.uint8, device="cuda")  # leaves 32 MiB
        before = torch.cuda.memory_allocated()
        with self.assertRaises(torch.cuda.OutOfMemoryError):
            tpde.load_file(path, device="cuda")
        self.assertEqual(torch.cuda.memory_allocated(), before)
        del hog



if __name__ == "__main__":
    harness.main()
