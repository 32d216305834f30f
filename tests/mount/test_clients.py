"""cp, rsync and POSIX operations through the mount; xattrs; restart."""
import ctypes
import errno
import os
import shutil
import subprocess

import harness


class ClientsTest(harness.MountTestCase):
    def test_cp_and_rsync_read_back_identical(self):
        original = harness.tree_hashes(harness.DATA)
        subprocess.run(["cp", "-r", harness.DATA, os.path.join(self.mnt, "cp")], check=True)
        subprocess.run(["rsync", "-a", harness.DATA + "/", os.path.join(self.mnt, "rsync")], check=True)
        # Before and after ingest: spool first, then the store.
        for sub in ("cp", "rsync"):
            self.assertEqual(harness.tree_hashes(os.path.join(self.mnt, sub)), original, sub)
        self.d.settle()
        for sub in ("cp", "rsync"):
            self.assertEqual(harness.tree_hashes(os.path.join(self.mnt, sub)), original, sub)
            r = subprocess.run(["diff", "-r", harness.DATA, os.path.join(self.mnt, sub)], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stdout)
        # rsync -a keeps mtimes and modes.
        src = os.path.join(harness.DATA, "B-finetune-bf16/checkpoint-40/model.safetensors")
        dst = os.path.join(self.mnt, "rsync/B-finetune-bf16/checkpoint-40/model.safetensors")
        self.assertEqual(int(os.stat(src).st_mtime), int(os.stat(dst).st_mtime))
        self.assertEqual(os.stat(src).st_mode, os.stat(dst).st_mode)
        self.assertEqual(self.d.xattr(dst, "state"), "committed")
        # rsync wrote checkpoint-60 after it: checkpoint-40 is now a delta
        # against its successor (reverse chains: the newest is a keyframe).
        self.assertGreater(int(self.d.xattr(dst, "chain_depth")), 0)
        self.assertTrue(self.d.xattr(dst, "reference").endswith("model.safetensors"))
        self.assertLess(int(self.d.xattr(dst, "stored_bytes")), os.path.getsize(dst) // 5)
        stats = self.d.stats()
        self.assertGreater(stats["ratio"], 1.3)
        self.assertVerifies()
        # A restart serves the same bytes.
        self.d.stop()
        self.d.start()
        self.assertEqual(harness.tree_hashes(os.path.join(self.mnt, "cp")), original)

    def test_posix_operations(self):
        m = self.mnt
        p = os.path.join(m, "f")
        with open(p, "w") as f:
            f.write("hello\n")
        with open(p, "a") as f:
            f.write("world\n")
        self.assertEqual(open(p).read(), "hello\nworld\n")
        self.d.flush()
        # Random writes and truncation of a committed file.
        with open(p, "r+b") as f:
            f.seek(2)
            f.write(b"XY")
        os.truncate(p, 4)
        self.assertEqual(open(p, "rb").read(), b"heXY")
        os.truncate(p, 10)
        self.assertEqual(open(p, "rb").read(), b"heXY" + b"\0" * 6)
        # Attributes.
        os.chmod(p, 0o600)
        os.chown(p, 1234, 5678)
        os.utime(p, ns=(1_000_000_000_123, 1_600_000_000_000_000_000))
        st = os.stat(p)
        self.assertEqual((st.st_mode & 0o7777, st.st_uid, st.st_gid), (0o600, 1234, 5678))
        self.assertEqual(st.st_mtime_ns, 1_600_000_000_000_000_000)
        self.d.flush()
        self.assertEqual(os.stat(p).st_mtime_ns, 1_600_000_000_000_000_000)
        # Renames: plain, replacing, no-replace, exchange, directories.
        open(os.path.join(m, "g"), "w").write("gee")
        os.rename(p, os.path.join(m, "h"))
        os.replace(os.path.join(m, "g"), os.path.join(m, "h"))
        self.assertEqual(open(os.path.join(m, "h")).read(), "gee")
        open(os.path.join(m, "a"), "w").write("A")
        open(os.path.join(m, "b"), "w").write("B")
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
        AT_FDCWD, NOREPLACE, EXCHANGE = -100, 1, 2
        a, b = os.path.join(m, "a").encode(), os.path.join(m, "b").encode()
        self.assertEqual(renameat2(AT_FDCWD, a, AT_FDCWD, b, NOREPLACE), -1)
        self.assertEqual(ctypes.get_errno(), errno.EEXIST)
        self.assertEqual(renameat2(AT_FDCWD, a, AT_FDCWD, b, EXCHANGE), 0)
        self.assertEqual((open(a).read(), open(b).read()), ("B", "A"))
        os.makedirs(os.path.join(m, "d1/d2"))
        open(os.path.join(m, "d1/d2/x"), "w").write("x")
        os.rename(os.path.join(m, "d1"), os.path.join(m, "d3"))
        self.assertEqual(open(os.path.join(m, "d3/d2/x")).read(), "x")
        with self.assertRaises(OSError) as e:
            os.rmdir(os.path.join(m, "d3"))
        self.assertEqual(e.exception.errno, errno.ENOTEMPTY)
        # Symlinks.
        os.symlink("d3/d2/x", os.path.join(m, "link"))
        self.assertEqual(os.readlink(os.path.join(m, "link")), "d3/d2/x")
        self.assertEqual(open(os.path.join(m, "link")).read(), "x")
        # An unlinked file stays readable while open.
        with open(b, "rb") as f:
            os.unlink(b)
            self.assertEqual(f.read(), b"A")
        self.assertFalse(os.path.exists(b))
        # statfs reports the real disk.
        sv = os.statvfs(m)
        self.assertGreater(sv.f_blocks, 0)
        self.assertGreater(sv.f_files, 0)
        self.assertEqual(sorted(os.listdir(m)), ["a", "d3", "h", "link"])
        shutil.rmtree(os.path.join(m, "d3"))
        self.d.flush()
        self.assertVerifies()

    def test_a_second_daemon_on_the_same_store_fails_clearly(self):
        other = os.path.join(self.tmp, "mnt2")
        os.makedirs(other)
        r = subprocess.run([harness.TPDED, "--store", self.store, "--mount", other, "--foreground"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("in use by another process", r.stderr)
        # Offline commands refuse while the daemon serves the store.
        r = self.d.tpdectl("ls", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("served by tpded", r.stderr)


if __name__ == "__main__":
    harness.main()
