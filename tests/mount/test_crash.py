"""kill -9 of the daemon while files are written and ingested."""
import errno
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


class DamagedLogTest(harness.MountTestCase):
    def test_a_damaged_log_never_turns_into_empty_files(self):
        """Small files live in the WAL until a flush; a damaged WAL drops its
        tail. A file whose content record went with it is reported (EIO,
        verify), never served as a committed 0-byte file."""
        rng = random.Random(9)
        files = {}
        for i in range(40):
            data = rng.randbytes(rng.randrange(1000, 20000))
            with open(os.path.join(self.mnt, "f%02d.bin" % i), "wb") as f:
                f.write(data)
            files["f%02d.bin" % i] = data
        self.d.flush()
        self.d.kill()  # the commits are in the WAL only
        logs = sorted(p for p in os.listdir(self.store) if p.endswith(".log"))
        self.assertTrue(logs)
        wal = os.path.join(self.store, logs[-1])
        size = os.path.getsize(wal)
        with open(wal, "r+b") as f:  # one flipped byte in the middle
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        self.d.start()
        damaged = 0
        for name, data in files.items():
            p = os.path.join(self.mnt, name)
            if not os.path.exists(p):
                continue  # its creation was in the lost tail: absent, not empty
            try:
                with open(p, "rb") as f:
                    got = f.read()
            except OSError as e:
                self.assertEqual(e.errno, errno.EIO, name)
                damaged += 1
                continue
            self.assertTrue(got == data, "%s: %d bytes served, %d written" % (name, len(got), len(data)))
        r = self.d.tpdectl("verify", check=False)
        if damaged:
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no content was ever committed", r.stdout + r.stderr)

    def test_a_store_that_no_longer_opens_is_salvaged_by_repair(self):
        rng = random.Random(10)
        files = {}
        for i, size in enumerate([5000, 3 << 20, 12 << 20, 100, 3 << 20, 12 << 20]):  # WAL-committed and staged
            data = rng.randbytes(size)
            with open(os.path.join(self.mnt, "g%d.bin" % i), "wb") as f:
                f.write(data)
            files["g%d.bin" % i] = data
        self.d.flush()
        self.d.stop()
        for name in os.listdir(self.store):  # the store's catalogue of files is gone
            if name.startswith("MANIFEST-"):
                os.unlink(os.path.join(self.store, name))
        r = self.d.tpdectl("ls", "/", check=False)
        self.assertNotEqual(r.returncode, 0, "a store without its MANIFEST opened")
        r = self.d.tpdectl("repair", check=False)
        # RocksDB 7.8's repair registers no blob file (and the repaired store
        # would delete them): the payloads come back from the files set aside.
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"repaired .*: [1-9][0-9]* chunk payloads")
        self.d.start()
        for name, data in files.items():
            with open(os.path.join(self.mnt, name), "rb") as f:
                self.assertTrue(f.read() == data, name)
        self.assertVerifies()
        self.assertFalse(os.path.exists(os.path.join(self.store, "salvage-blobs")))
        # The repaired store writes, deletes and compacts like any other.
        os.unlink(os.path.join(self.mnt, "g2.bin"))
        del files["g2.bin"]
        files["new.bin"] = rng.randbytes(12 << 20)
        with open(os.path.join(self.mnt, "new.bin"), "wb") as f:
            f.write(files["new.bin"])
        self.d.settle()
        self.assertNotIn("error", self.d.read_log().lower())
        for name, data in files.items():
            with open(os.path.join(self.mnt, name), "rb") as f:
                self.assertTrue(f.read() == data, name)
        self.assertVerifies()

    def test_repair_reports_a_damaged_blob_file_never_returns_its_bytes(self):
        rng = random.Random(11)
        files = {}
        for i in range(3):
            files["h%d.bin" % i] = rng.randbytes(12 << 20)
            with open(os.path.join(self.mnt, "h%d.bin" % i), "wb") as f:
                f.write(files["h%d.bin" % i])
        self.d.flush()
        self.d.stop()
        for name in os.listdir(self.store):
            if name.startswith("MANIFEST-"):
                os.unlink(os.path.join(self.store, name))
        blobs = sorted(n for n in os.listdir(self.store) if n.endswith(".blob"))
        self.assertTrue(blobs)
        with open(os.path.join(self.store, blobs[0]), "r+b") as f:  # one flipped byte in a payload
            f.seek(4 << 20)
            b = f.read(1)
            f.seek(4 << 20)
            f.write(bytes([b[0] ^ 0x40]))
        r = self.d.tpdectl("repair", check=False)
        self.assertIn("repaired", r.stdout, r.stderr)
        self.assertNotEqual(r.returncode, 0, "verify after repair must name the damaged file")
        self.d.start()
        damaged = 0
        for name, data in files.items():
            try:
                with open(os.path.join(self.mnt, name), "rb") as f:
                    got = f.read()
            except OSError as e:
                self.assertEqual(e.errno, errno.EIO, name)
                damaged += 1
                continue
            self.assertTrue(got == data, name)
        self.assertEqual(damaged, 1)

if __name__ == "__main__":
    harness.main()
