"""Malformed safetensors are stored as bytes; a full spool disk gives ENOSPC."""
import contextlib
import errno
import os
import time
import shutil
import subprocess
import tempfile

import harness


class BadInputTest(harness.MountTestCase):
    def test_malformed_safetensors_read_back_identical(self):
        good = os.path.join(harness.DATA, "B-finetune-bf16/checkpoint-20/model.safetensors")
        data = open(good, "rb").read()
        cases = {
            "truncated": data[: len(data) // 2],
            "bad_json": data[:8] + b"{not json" + data[17:],
            "huge_header": (1 << 62).to_bytes(8, "little") + data[8:4096],
            "tiny": b"\x01",
            "empty": b"",
        }
        for name, content in cases.items():
            d = os.path.join(self.mnt, "bad", name)
            os.makedirs(d)
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(content)
        self.d.flush()
        for name, content in cases.items():
            with open(os.path.join(self.mnt, "bad", name, "model.safetensors"), "rb") as f:
                self.assertTrue(f.read() == content, name)
        kinds = {f["path"]: f["kind"] for f in self.d.stats()["per_file"]}
        self.assertEqual(kinds["bad/truncated/model.safetensors"], "binary")
        self.assertVerifies()


class SmallDiskTestCase(harness.MountTestCase):
    """A daemon with part of its layout on a small tmpfs (self.disk)."""

    disk_size = "8m"
    store_on_disk = False  # else only the spool is on the small disk

    def setUp(self):
        harness.skip_unless_fuse()
        self.tmp = tempfile.mkdtemp(prefix="tpde-mount-")
        self.disk = os.path.join(self.tmp, "disk")
        os.makedirs(self.disk)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + self.disk_size, "tmpfs", self.disk], check=True)
        self.mnt = os.path.join(self.tmp, "mnt")
        if self.store_on_disk:  # the default layout: the spool inside the store
            self.store = os.path.join(self.disk, "store")
            self.d = harness.Daemon(self.store, self.mnt).start()
        else:
            self.store = os.path.join(self.tmp, "store")
            self.d = harness.Daemon(self.store, self.mnt, spool=self.disk).start()

    def tearDown(self):
        super().tearDown()
        subprocess.run(["umount", "-l", self.disk], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


class FullSpoolTest(SmallDiskTestCase):
    def fill_spool(self, name):
        with self.assertRaises(OSError) as e:
            with open(os.path.join(self.mnt, name), "wb") as f:
                for _ in range(16):
                    f.write(os.urandom(1 << 20))
                    f.flush()
        self.assertIn(e.exception.errno, (errno.ENOSPC, errno.EIO))

    def test_full_spool_gives_enospc_and_no_partial_version(self):
        keep = os.urandom(2 << 20)
        old = os.urandom(1 << 20)
        for name, data in (("keep.bin", keep), ("old.bin", old)):
            with open(os.path.join(self.mnt, name), "wb") as f:
                f.write(data)
        self.d.flush()
        self.fill_spool("big.bin")  # a new file: it never had a complete version
        self.fill_spool("old.bin")  # a rewrite: the file keeps its last complete version
        time.sleep(1.1)  # the kernel's cached name entries expire
        for restarted in (False, True):
            self.assertFalse(os.path.exists(os.path.join(self.mnt, "big.bin")), "restarted=%s" % restarted)
            with open(os.path.join(self.mnt, "old.bin"), "rb") as f:
                got = f.read()
                self.assertTrue(got == old, "restarted=%s len %d vs %d, prefix same %s" % (restarted, len(got), len(old), got[:4096] == old[:4096]))
            with open(os.path.join(self.mnt, "keep.bin"), "rb") as f:
                self.assertTrue(f.read() == keep)
            self.d.stop()
            self.d.start()
        # Space is back: writing works again.
        with open(os.path.join(self.mnt, "after.bin"), "wb") as f:
            f.write(b"after")
        self.d.flush()
        self.assertEqual(open(os.path.join(self.mnt, "after.bin"), "rb").read(), b"after")
        self.assertVerifies()


class FullStoreDiskTest(SmallDiskTestCase):
    """Store and spool on one small disk (the default layout), filled up."""

    disk_size = "128m"
    store_on_disk = True

    def test_a_full_disk_gives_enospc_keeps_serving_and_recovers_by_itself(self):
        filler = os.path.join(self.disk, "filler")  # someone else's file on the same disk
        with open(filler, "wb") as f:
            f.write(b"\0" * (48 << 20))
        written, failed, errors = {}, 0, {}
        for i in range(24):  # 8 MiB each, incompressible: more than the disk holds
            data = os.urandom(8 << 20)
            name = "f%d.bin" % i
            try:
                with open(os.path.join(self.mnt, name), "wb") as f:
                    f.write(data)
                written[name] = data
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC, name)
                failed += 1
                errors[name] = repr(e)
        self.assertGreater(failed, 0, "the disk never filled")
        self.assertIsNone(self.d.proc.poll(), "the daemon died on a full disk")
        # Every file is its complete version or absent, and reads are served.
        # A file whose close(2) failed is never committed; it goes when the
        # kernel releases it, which FUSE does asynchronously (after pending
        # writeback), so until then it may be listed as spooled.
        time.sleep(1.1)  # cached name entries expire
        names = sorted(n for n in os.listdir(self.mnt) if n in written)
        for name in os.listdir(self.mnt):
            if name not in written:
                self.assertNotEqual(self.d.xattr(os.path.join(self.mnt, name), "state"), "committed",
                                    "%s failed (%s) but is committed" % (name, errors.get(name)))
        for name in names:
            with open(os.path.join(self.mnt, name), "rb") as f:
                self.assertTrue(f.read() == written[name], name)
        # Space is freed: the store resumes and the waiting ingests go through
        # by themselves, with no restart.
        os.unlink(filler)
        deadline = time.time() + 60
        while True:
            try:
                self.d.flush()
                break
            except AssertionError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        for name in names:
            self.assertEqual(self.d.xattr(os.path.join(self.mnt, name), "state"), "committed", name)
        for name in names[:-2]:
            os.unlink(os.path.join(self.mnt, name))
        with open(os.path.join(self.mnt, "after.bin"), "wb") as f:
            f.write(b"after")
        self.d.stop()
        self.d.start()
        self.assertEqual(sorted(os.listdir(self.mnt)), sorted(names[-2:] + ["after.bin"]),
                         "after a restart only complete versions are left")
        self.assertEqual(open(os.path.join(self.mnt, "after.bin"), "rb").read(), b"after")
        for name in names[-2:]:
            self.assertTrue(open(os.path.join(self.mnt, name), "rb").read() == written[name], name)
        self.assertVerifies()

    def store_bytes(self):
        """Bytes the store's files take on the disk, its reserve file aside."""
        total = 0
        for root, _, files in os.walk(self.store):
            for name in files:
                if name != "reserve":
                    with contextlib.suppress(FileNotFoundError):
                        total += os.stat(os.path.join(root, name)).st_blocks * 512
        return total

    def test_rm_works_on_a_completely_full_disk_and_gives_the_space_back(self):
        kept = {}
        for i in range(4):  # committed checkpoint-sized files, incompressible
            kept["c%d.bin" % i] = os.urandom(12 << 20)
            with open(os.path.join(self.mnt, "c%d.bin" % i), "wb") as f:
                f.write(kept["c%d.bin" % i])
        self.d.flush()
        # Someone else fills the disk to the last block.
        filler = os.path.join(self.disk, "filler")
        with open(filler, "wb", buffering=0) as f:
            for block in (1 << 20, 4096):  # then the last partial megabyte
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * block)
        self.assertLess(os.statvfs(self.disk).f_bavail * os.statvfs(self.disk).f_frsize, 1 << 20)
        with self.assertRaises(OSError) as e:
            with open(os.path.join(self.mnt, "new.bin"), "wb") as f:
                f.write(os.urandom(4 << 20))
        self.assertEqual(e.exception.errno, errno.ENOSPC)
        # Deleting needs no free space (the store's reserve carries the
        # metadata), and the deleted files' space comes back by itself: new
        # writes go through again with the filler still there.
        before = self.store_bytes()
        for name in ("c0.bin", "c1.bin"):
            os.unlink(os.path.join(self.mnt, name))
            del kept[name]
        deadline = time.time() + 30
        while True:
            try:
                with open(os.path.join(self.mnt, "after.bin"), "wb") as f:
                    f.write(b"after" * 1000)
                self.d.flush()
                break
            except (OSError, AssertionError):
                self.assertLess(time.time(), deadline, "writes did not resume after the deletions")
                time.sleep(1)
        deadline = time.time() + 30
        while before - self.store_bytes() < (20 << 20):
            self.assertLess(time.time(), deadline, "the store still takes %d of %d bytes" % (self.store_bytes(), before))
            time.sleep(0.5)
        self.assertIsNone(self.d.proc.poll(), "the daemon died on a full disk")
        time.sleep(1.1)  # cached name entries expire
        listed = os.listdir(self.mnt)
        if "new.bin" in listed:  # its close(2) failed: never committed, gone once the kernel releases it
            self.assertNotEqual(self.d.xattr(os.path.join(self.mnt, "new.bin"), "state"), "committed")
            listed.remove("new.bin")
        self.assertEqual(sorted(listed), sorted(list(kept) + ["after.bin"]))
        for name, data in kept.items():
            with open(os.path.join(self.mnt, name), "rb") as f:
                self.assertTrue(f.read() == data, name)
        self.assertVerifies()

if __name__ == "__main__":
    harness.main()
