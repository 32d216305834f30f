"""Malformed safetensors are stored as bytes; a full spool disk gives ENOSPC."""
import errno
import os
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


class FullSpoolTest(harness.MountTestCase):
    def setUp(self):
        harness.skip_unless_fuse()
        self.tmp = tempfile.mkdtemp(prefix="tpde-mount-")
        self.spool = os.path.join(self.tmp, "spool")
        os.makedirs(self.spool)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", self.spool], check=True)
        self.store = os.path.join(self.tmp, "store")
        self.mnt = os.path.join(self.tmp, "mnt")
        self.d = harness.Daemon(self.store, self.mnt, spool=self.spool).start()

    def tearDown(self):
        super().tearDown()
        subprocess.run(["umount", "-l", self.spool], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_full_spool_gives_enospc_and_committed_files_stay_readable(self):
        keep = os.urandom(2 << 20)
        with open(os.path.join(self.mnt, "keep.bin"), "wb") as f:
            f.write(keep)
        self.d.flush()
        with self.assertRaises(OSError) as e:
            with open(os.path.join(self.mnt, "big.bin"), "wb") as f:
                for _ in range(16):
                    f.write(os.urandom(1 << 20))
                    f.flush()
        self.assertIn(e.exception.errno, (errno.ENOSPC, errno.EIO))
        os.unlink(os.path.join(self.mnt, "big.bin"))
        self.d.flush()  # an ingest of the partial file may hold its spool copy until it ends
        with open(os.path.join(self.mnt, "keep.bin"), "rb") as f:
            self.assertTrue(f.read() == keep)
        # Space is back: writing works again.
        with open(os.path.join(self.mnt, "after.bin"), "wb") as f:
            f.write(b"after")
        self.d.flush()
        self.assertEqual(open(os.path.join(self.mnt, "after.bin"), "rb").read(), b"after")
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
