"""Test harness: a tpded serving a fresh store on a temporary mount point.

Each mount test imports this module. Paths of the binaries and of the
bundled series come from the environment set by ctest (TPDED, TPDECTL,
TPDE_TEST_DATA). Tests need root (FUSE mounts); without /dev/fuse they skip.
"""
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

TPDED = os.environ.get("TPDED", "tpded")
TPDECTL = os.environ.get("TPDECTL", "tpdectl")
DATA = os.environ.get("TPDE_TEST_DATA", "")


def skip_unless_fuse():
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        raise unittest.SkipTest("needs /dev/fuse and root to mount FUSE")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_hashes(root):
    """{relative path: sha256} of every regular file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            out[os.path.relpath(p, root)] = sha256(p)
    return out


def is_mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


class Daemon:
    """tpded in the foreground as a child process, so tests can kill it."""

    def __init__(self, store, mount, extra_args=(), spool=None):
        self.store, self.mount = store, mount
        self.args = [TPDED, "--store", store, "--mount", mount, "--foreground", *extra_args]
        if os.environ.get("TPDE_DEBUG_FUSE"):
            self.args.append("--debug-fuse")
        if spool:
            self.args += ["--spool", spool]
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(store), "tpded-%d.log" % time.monotonic_ns())

    def start(self):
        os.makedirs(self.mount, exist_ok=True)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not is_mounted(self.mount):
            if self.proc.poll() is not None:
                raise RuntimeError("tpded exited: " + self.read_log())
            if time.time() > deadline:
                raise RuntimeError("tpded did not mount: " + self.read_log())
            time.sleep(0.05)
        return self

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        """SIGTERM: clean unmount."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.proc = None
        assert not is_mounted(self.mount), "still mounted after SIGTERM"

    def kill(self):
        """kill -9, then lazily detach the dead mount as an admin would."""
        self.proc.send_signal(signal.SIGKILL)  # a no-op if the test killed it already
        self.proc.wait(timeout=30)
        self.proc = None
        subprocess.run(["umount", "-l", self.mount], check=False)

    def tpdectl(self, *args, check=True):
        r = subprocess.run([TPDECTL, *args, "--store", self.store], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError("tpdectl %s failed: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def flush(self):
        self.tpdectl("flush")

    def settle(self):
        """Every closed file committed and the collector's work done (older
        versions demoted to deltas, deleted ones reclaimed)."""
        self.tpdectl("flush")
        self.tpdectl("gc")

    def stats(self):
        return json.loads(self.tpdectl("stats", "--json").stdout)

    def xattr(self, path, name):
        return os.getxattr(path, "user.tpde." + name).decode()


class MountTestCase(unittest.TestCase):
    """Gives each test a fresh store and a running daemon in self.d."""

    daemon_args = ()

    def setUp(self):
        skip_unless_fuse()
        self.tmp = tempfile.mkdtemp(prefix="tpde-mount-")
        self.store = os.path.join(self.tmp, "store")
        self.mnt = os.path.join(self.tmp, "mnt")
        self.d = Daemon(self.store, self.mnt, self.daemon_args).start()

    def tearDown(self):
        with contextlib.suppress(Exception):
            if self.d.proc:
                self.d.stop()
        with contextlib.suppress(Exception):  # the daemon's own account, for failures
            notes = [l for l in self.d.read_log().splitlines() if "serving" not in l and "unmounted" not in l]
            if notes:
                sys.stderr.write("---- tpded log ----\n" + "\n".join(notes) + "\n")
        with contextlib.suppress(Exception):
            if is_mounted(self.mnt):
                subprocess.run(["umount", "-l", self.mnt], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assertVerifies(self):
        r = self.d.tpdectl("verify", check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(": OK", r.stdout)


def write_safetensors(path, tensors, metadata=None, fsync=False):
    """A plain writer of the safetensors format (independent of tpde and of
    the safetensors package): tensors maps name -> (dtype, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for _, (_, _, data) in tensors.items():
            f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def main():
    unittest.main(verbosity=2)
