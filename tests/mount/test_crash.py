"""kill -9 of the daemon while files are written and ingested."""
import os
import random
import subprocess
import sys
import time

import harness

SLOW_WRITER = r"""
import os, sys, time
with open(sys.argv[1], "wb") as f:
    sys.stdout.write("started\n"); sys.stdout.flush()
    while True:
        f.write(os.urandom(1 << 16))
        time.sleep(0.01)
"""


class CrashTest(harness.MountTestCase):
    def test_synced_and_closed_files_survive_kill_9(self):
        m = self.mnt
        rng = random.Random(1)
        subprocess.run(["cp", "-r", harness.DATA, os.path.join(m, "data")], check=True)
        self.d.flush()
        committed = harness.tree_hashes(os.path.join(m, "data"))
        expect = {}
        # Fsynced and still open when the daemon dies.
        synced = rng.randbytes(3 << 20)
        fs = open(os.path.join(m, "synced.bin"), "wb")  # left open: its mount dies under it
        fs.write(synced)
        fs.flush()
        os.fsync(fs.fileno())
        expect["synced.bin"] = synced
        # Closed: queued for ingest or being ingested when the daemon dies.
        for i in range(4):
            data = rng.randbytes(12 << 20)  # large: staged, several batches
            with open(os.path.join(m, "closed-%d.bin" % i), "wb") as f:
                f.write(data)
            expect["closed-%d.bin" % i] = data
        # Open for writing, never synced or closed.
        w = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, os.path.join(m, "partial.bin")],
                             stdout=subprocess.PIPE, text=True)
        self.assertEqual(w.stdout.readline().strip(), "started")
        time.sleep(0.3)
        self.d.kill()
        w.kill()
        w.wait()

        self.d.start()
        for name, data in expect.items():
            p = os.path.join(m, name)
            with open(p, "rb") as f:
                self.assertTrue(f.read() == data, name + " differs after the crash")
        self.assertFalse(os.path.exists(os.path.join(m, "partial.bin")),
                         "a file never closed or fsynced is visible after the crash")
        self.assertEqual(harness.tree_hashes(os.path.join(m, "data")), committed)
        self.d.flush()
        for name, data in expect.items():
            self.assertEqual(os.getxattr(os.path.join(m, name), "user.tpde.state"), b"committed")
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
