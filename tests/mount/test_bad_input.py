"""Malformed safetensors are stored as bytes; a full spool disk gives ENOSPC."""
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


if __name__ == "__main__":
    harness.main()
