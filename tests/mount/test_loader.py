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
import sys
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
            for index in [(slice(3, 7), slice(10, 20)), -1, 5, slice(None), (slice(10, 50, 3), slice(None, None, 2)),
                          (Ellipsis, 3), slice(0, 0), slice(58, 100), (slice(None), 7)]:
                got, want = s[index], a[index]
                self.assertEqual(got.shape, want.shape, index)
                self.assertEqual(tensor_bytes(got), tensor_bytes(want), index)
        with self.assertRaisesRegex(ValueError, "closed"):
            f.get_tensor("a")
        with self.assertRaisesRegex(ValueError, "closed"):
            f.chain_depth

    def test_keys_in_file_order_as_in_safetensors(self):
        path = os.path.join(self.mnt, "order.safetensors")
        # Data in the file in the order z, m, a: safetensors 0.8 lists keys
        # (and fills load_file's dict) in file order, and so does tpde.
        harness.write_safetensors(path, {"z": ("F32", [2], b"\1" * 8), "m": ("F32", [2], b"\2" * 8),
                                         "a": ("F32", [2], b"\3" * 8)})
        self.d.flush()
        with tpde.safe_open(path) as f:
            self.assertEqual(f.keys(), ["z", "m", "a"])
        self.assertEqual(list(tpde.load_file(path)), ["z", "m", "a"])
        if st_torch is not None:
            self.assertEqual(list(tpde.load_file(path)), list(st_torch.load_file(path)))

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

    def ask_bundle(self, fd, buffers=()):
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(os.path.join(self.store, "control.sock"))
            line = json.dumps({"cmd": "bundle", "path": "m.safetensors"}).encode() + b"\n"
            if fd is None:
                s.sendall(line)
            else:
                socket.send_fds(s, [line], [fd, *buffers])
            msg, fds, _, _ = socket.recv_fds(s, 1 << 16, 64)
            while not msg.endswith(b"\n"):
                more = s.recv(1 << 16)
                if not more:
                    break
                msg += more
            for d in fds:
                os.close(d)
            return json.loads(msg), len(fds)

    def test_bundle_needs_a_readable_descriptor_of_this_mount(self):
        """The daemon serves a bundle only for a file the caller opened for
        reading through the mount: the kernel checked its permissions then."""
        path = os.path.join(self.mnt, "m.safetensors")
        harness.write_safetensors(path, {"a": ("F32", [16384], os.urandom(65536))})  # a bundle over a page
        self.d.flush()
        outside = os.path.join(self.tmp, "outside.bin")
        with open(outside, "wb") as f:
            f.write(b"x")

        reply, fds = self.ask_bundle(None)
        self.assertFalse(reply["ok"])
        self.assertIn("carries no descriptor", reply["error"])
        self.assertEqual(fds, 0)
        with open(outside, "rb") as f:
            reply, fds = self.ask_bundle(f.fileno())
        self.assertFalse(reply["ok"])
        self.assertIn("not a file of this tpde mount", reply["error"])
        self.assertEqual(fds, 0)
        w = os.open(os.path.join(self.mnt, "scratch.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            reply, fds = self.ask_bundle(w)
        finally:
            os.close(w)
        self.assertFalse(reply["ok"])
        self.assertIn("not open for reading", reply["error"])
        with open(path, "rb") as f:
            reply, fds = self.ask_bundle(f.fileno())
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(fds, 1)  # no buffers passed: a sealed memfd comes back
        # Buffers of the caller's: memfds only, of one size in whole 1 MiB blocks.
        with open(path, "rb") as f, open(outside, "r+b") as plain:
            reply, fds = self.ask_bundle(f.fileno(), [plain.fileno()])
        self.assertIn("is not a memfd", reply["error"])
        odd = os.memfd_create("odd")
        os.ftruncate(odd, 4096)
        try:
            with open(path, "rb") as f:
                reply, fds = self.ask_bundle(f.fileno(), [odd])
            self.assertIn("whole blocks", reply["error"])
        finally:
            os.close(odd)


    def test_bundle_buffers_dealt_in_blocks_and_reused(self):
        """The daemon writes a bundle into the caller's memfds, 1 MiB blocks
        round robin; the loader maps them in order, streams, and reuses them."""
        path = os.path.join(self.mnt, "big.safetensors")
        g = torch.Generator().manual_seed(7)
        tensors = {"t%d" % i: torch.rand(1 << 20, generator=g) for i in range(3)}
        harness.write_safetensors(path, {k: ("F32", [1 << 20], tensor_bytes(v)) for k, v in tensors.items()})
        self.d.flush()
        one = 1 << 20
        buffers = [os.memfd_create("b%d" % i) for i in range(2)]
        try:
            for b in buffers:
                os.ftruncate(b, one)
            with open(path, "rb") as f:
                reply, fds = self.ask_bundle(f.fileno(), buffers)
            self.assertFalse(reply["ok"])
            need = reply["need_bytes"]
            self.assertGreater(need, 2 * one)
            per = -(-need // one // 2) * one  # blocks, round robin over 2 buffers
            for b in buffers:
                os.ftruncate(b, per)
            with open(path, "rb") as f:
                reply, fds = self.ask_bundle(f.fileno(), buffers)
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(fds, 0)
            bundle = b"".join(os.pread(buffers[k % 2], one, (k // 2) * one) for k in range(-(-need // one)))[:need]
            self.assertEqual(bundle[:8], b"TPDECB01")
            # The same bytes as the daemon's own sealed memfd.
            with open(path, "rb") as f:
                import socket
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(os.path.join(self.store, "control.sock"))
                    socket.send_fds(s, [json.dumps({"cmd": "bundle", "path": "big"}).encode() + b"\n"], [f.fileno()])
                    msg, got_fds, _, _ = socket.recv_fds(s, 1 << 16, 4)
            try:
                self.assertEqual(os.pread(got_fds[0], need, 0), bundle)
            finally:
                for d in got_fds:
                    os.close(d)
        finally:
            for b in buffers:
                os.close(b)
        got = tpde.load_file(path)
        for k, v in tensors.items():
            self.assertEqual(tensor_bytes(got[k]), tensor_bytes(v), k)
        # The buffers are reused by the next loads: a smaller file, then new
        # bytes under the first name, each exactly its own.
        small = os.path.join(self.mnt, "small.safetensors")
        harness.write_safetensors(small, {"s": ("F32", [4], tensor_bytes(torch.arange(4.0)))})
        for i in range(3):
            tensors["t%d" % i] = torch.rand(1 << 20, generator=g)
        harness.write_safetensors(path, {k: ("F32", [1 << 20], tensor_bytes(v)) for k, v in tensors.items()})
        self.d.flush()
        self.assertEqual(tensor_bytes(tpde.load_file(small)["s"]), tensor_bytes(torch.arange(4.0)))
        got = tpde.load_file(path)
        for k, v in tensors.items():
            self.assertEqual(tensor_bytes(got[k]), tensor_bytes(v), k)
        tpde.release_buffers()
        self.assertEqual(tensor_bytes(tpde.load_file(small)["s"]), tensor_bytes(torch.arange(4.0)))
        # Closed while the daemon may still be streaming: its buffers are not
        # reused, the daemon goes on serving, the next loads are exact.
        for _ in range(3):
            with tpde.safe_open(path) as f:
                self.assertEqual(len(f.keys()), 3)
        got = tpde.load_file(path)
        for k, v in tensors.items():
            self.assertEqual(tensor_bytes(got[k]), tensor_bytes(v), k)
        self.d.stats()


    def test_a_damaged_store_fails_the_load_never_returns_wrong_bytes(self):
        """Blob files cut short under the running daemon: the streamed bundle
        fails (or a payload fails its checksum); the load raises, returns
        nothing, and the daemon goes on serving."""
        path = os.path.join(self.mnt, "big.safetensors")
        g = torch.Generator().manual_seed(3)
        tensors = {"t%d" % i: torch.rand(1 << 20, generator=g) for i in range(4)}
        harness.write_safetensors(path, {k: ("F32", [1 << 20], tensor_bytes(v)) for k, v in tensors.items()})
        self.d.flush()
        blobs = [os.path.join(r, n) for r, _, names in os.walk(self.store) for n in names if n.endswith(".blob")]
        if not blobs:
            self.skipTest("the payloads are not in blob files in this configuration")
        for b in blobs:
            os.truncate(b, os.path.getsize(b) // 3)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        with self.assertRaises(tpde.TpdeError) as caught:
            tpde.load_file(path)
        self.assertRegex(str(caught.exception), "bundle|checksum|corrupt|Corruption|I/O error")
        self.d.stats()  # still serving
        # An intact file still loads (the buffers of the failed load are not reused blindly).
        small = os.path.join(self.mnt, "small.safetensors")
        harness.write_safetensors(small, {"s": ("F32", [4], tensor_bytes(torch.arange(4.0)))})
        self.d.flush()
        self.assertEqual(tensor_bytes(tpde.load_file(small)["s"]), tensor_bytes(torch.arange(4.0)))


class LoaderPermissionTest(harness.MountTestCase):
    """Another user who can reach the control socket still loads only the
    files its permissions let it read."""

    def setUp(self):
        if torch is None:
            self.skipTest("python3-torch is not installed")
        if shutil.which("runuser") is None or os.geteuid() != 0:
            self.skipTest("needs root and runuser")
        self.daemon_args = ("--allow-other", "--control-socket", "/tmp/tpde-loader-perm-%d.sock" % os.getpid())
        super().setUp()
        os.chmod(self.tmp, 0o755)
        os.chmod(self.daemon_args[2], 0o666)  # as if nobody were in the daemon's group
        old = os.environ.get("TPDE_CONTROL_SOCKET")
        os.environ["TPDE_CONTROL_SOCKET"] = self.daemon_args[2]
        self.addCleanup(lambda: os.environ.pop("TPDE_CONTROL_SOCKET") if old is None
                        else os.environ.__setitem__("TPDE_CONTROL_SOCKET", old))

    def load_as_nobody(self, path):
        code = "import tpde, sys\ntry:\n    tpde.load_file(sys.argv[1])\n    print('loaded')\n" \
               "except PermissionError as e:\n    print('denied', e)\n"
        r = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", code, path],
                           capture_output=True, text=True, timeout=120)
        if "No module named" in r.stderr or "libtpde_client not found" in r.stderr:
            self.skipTest("nobody cannot read the tpde package or library here: " + r.stderr.strip()[-200:])
        return r.stdout + r.stderr

    def test_a_file_the_user_cannot_read_is_refused(self):
        private = os.path.join(self.mnt, "private.safetensors")
        public = os.path.join(self.mnt, "public.safetensors")
        for p in (private, public):
            harness.write_safetensors(p, {"a": ("F32", [4], b"\0" * 16)})
        os.chmod(private, 0o600)
        os.chmod(public, 0o644)
        # (tpdectl flush would look for the socket in the store: wait instead)
        self.assertEqual(set(tpde.load_file(public, wait=60)), {"a"})  # root reads both
        self.assertEqual(set(tpde.load_file(private, wait=60)), {"a"})
        self.assertIn("loaded", self.load_as_nobody(public))
        self.assertIn("denied", self.load_as_nobody(private))


if __name__ == "__main__":
    harness.main()
