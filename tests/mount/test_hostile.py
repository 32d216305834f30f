"""Paths, permissions and the control socket, as a hostile or careless user meets them."""
import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time

import harness


class PathsTest(harness.MountTestCase):
    def test_a_name_over_255_bytes_is_enametoolong(self):
        long_name = os.path.join(self.mnt, "a" * 256)
        for make in (lambda: open(long_name, "w"), lambda: os.mkdir(long_name)):
            with self.assertRaises(OSError) as e:
                make()
            self.assertEqual(e.exception.errno, errno.ENAMETOOLONG)
        with open(os.path.join(self.mnt, "b" * 255), "w") as f:  # 255 is fine
            f.write("x")

    def test_a_second_daemon_on_a_live_mount_point_is_refused(self):
        r = subprocess.run([harness.TPDED, "--store", os.path.join(self.tmp, "store2"), "--mount", self.mnt,
                            "--foreground"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already a mount point", r.stderr)
        with open(os.path.join(self.mnt, "still.txt"), "w") as f:  # the first one still serves
            f.write("ok")

    def test_a_non_empty_mount_point_is_refused_unless_asked(self):
        d = os.path.join(self.tmp, "busy")
        os.makedirs(d)
        open(os.path.join(d, "precious.txt"), "w").close()
        with self.assertRaises(RuntimeError) as e:
            harness.Daemon(os.path.join(self.tmp, "store2"), d).start()
        self.assertIn("not empty", str(e.exception))
        other = harness.Daemon(os.path.join(self.tmp, "store2"), d, ["--nonempty"]).start()
        other.stop()
        self.assertTrue(os.path.exists(os.path.join(d, "precious.txt")))

    def test_a_store_path_cannot_inject_mount_options(self):
        store = os.path.join(self.tmp, "x,allow_other")
        mnt = os.path.join(self.tmp, "mnt2")
        other = harness.Daemon(store, mnt).start()
        try:
            with open("/proc/mounts") as f:
                line = next(l for l in f if l.split()[1] == mnt)
            self.assertNotIn("allow_other", line.split()[3].split(","))
        finally:
            other.stop()

    def test_the_store_is_owner_only(self):
        with open(os.path.join(self.mnt, "secret.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        self.d.flush()
        for d, dirs, files in os.walk(self.store):
            for name in dirs + files:
                p = os.path.join(d, name)
                mode = os.lstat(p).st_mode
                self.assertEqual(mode & 0o077 & ~0o060 if name == "control.sock" else mode & 0o077, 0,
                                 "%s is mode %o" % (p, mode & 0o777))
        self.assertEqual(os.stat(self.store).st_mode & 0o077, 0)


class ControlTest(harness.MountTestCase):
    def test_tpdectl_that_cannot_reach_the_socket_says_permission_denied(self):
        if shutil.which("runuser") is None:
            self.skipTest("needs runuser")
        r = subprocess.run(["runuser", "-u", "nobody", "--", harness.TPDECTL, "flush", "--store", self.store],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("permission denied", r.stderr)

    def test_flush_does_not_wait_for_files_closed_after_it(self):
        stop = threading.Event()

        def busy_writer():
            i = 0
            while not stop.is_set():
                with open(os.path.join(self.mnt, "busy-%d.bin" % (i % 50)), "wb") as f:
                    f.write(os.urandom(256 << 10))
                i += 1

        t = threading.Thread(target=busy_writer)
        t.start()
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            r = subprocess.run([harness.TPDECTL, "flush", "--store", self.store], capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            stats = subprocess.run([harness.TPDECTL, "stats", "--store", self.store], capture_output=True,
                                   text=True, timeout=60)
            self.assertEqual(stats.returncode, 0, stats.stderr)
            self.assertLess(time.monotonic() - t0, 120)
        finally:
            stop.set()
            t.join()

    def test_verify_right_after_rm_never_reports_a_healthy_store_as_corrupt(self):
        for i in range(8):
            d = os.path.join(self.mnt, "run", "checkpoint-%d" % i)
            os.makedirs(d)
            with open(os.path.join(d, "model.bin"), "wb") as f:
                f.write(os.urandom(1 << 20) * 2)
            self.d.flush()
            if i >= 2:
                shutil.rmtree(os.path.join(self.mnt, "run", "checkpoint-%d" % (i - 2)))
                self.assertVerifies()  # while the collector re-encodes and reclaims

    def test_offline_tools_refuse_a_store_with_files_still_spooled(self):
        self.d.stop()
        self.d.args += ["--ingest-delay-ms", "600000"]
        self.d.start()
        with open(os.path.join(self.mnt, "late.bin"), "wb") as f:
            f.write(b"not ingested yet")
        self.d.stop()
        for cmd in (["ls", "/"], ["verify"], ["stats"]):
            r = subprocess.run([harness.TPDECTL, *cmd, "--store", self.store], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0, cmd)
            self.assertIn("start tpded", r.stderr)
        self.d.args = self.d.args[:-2]
        self.d.start()
        self.d.flush()
        self.assertEqual(open(os.path.join(self.mnt, "late.bin"), "rb").read(), b"not ingested yet")


if __name__ == "__main__":
    harness.main()
