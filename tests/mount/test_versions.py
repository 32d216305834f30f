"""A committed version is complete or absent: rewrites, save loops and kill -9.

Every file read back after a crash is one of the complete versions written
to it (closed or fsynced), compared by sha256: never empty, never partial.
"""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import harness

# Rewrites `path` with `size` random bytes in 1 MiB writes, slowly, and says
# "rewriting" once it has started; never closes it.
SLOW_REWRITER = r"""
import os, sys, time
path, size = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.write(os.urandom(1 << 20)); f.flush()
    sys.stdout.write("rewriting\n"); sys.stdout.flush()
    for _ in range(size >> 20):
        f.write(os.urandom(1 << 20)); f.flush()
        time.sleep(0.05)
    time.sleep(3600)
"""

# torch.save(state, "last.pt") in a loop: open with O_TRUNC, write, close.
# Prints the sha256 of each version once all its bytes are written, before
# close: the daemon may die after sealing it but before close(2) returns, and
# that version is complete too.
SAVE_LOOP = r"""
import hashlib, os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
while True:
    data = rng.randbytes(rng.randrange(1 << 20, 6 << 20))
    with open(path, "wb") as f:
        for i in range(0, len(data), 1 << 18):
            f.write(data[i:i + (1 << 18)])
        f.flush()
        sys.stdout.write(hashlib.sha256(data).hexdigest() + "\n"); sys.stdout.flush()
"""


def digest(data):
    return hashlib.sha256(data).hexdigest()


class VersionsTest(harness.MountTestCase):
    # Closed files wait in the spool: the rewrite starts before the ingest.
    daemon_args = ("--ingest-delay-ms", "600000")

    def restart_with_prompt_ingest(self):
        i = self.d.args.index("--ingest-delay-ms")
        self.d.args[i + 1] = "0"
        self.d.start()

    def kill_during_rewrite(self, path, fsync_first):
        rng = random.Random(3)
        v1 = rng.randbytes(16 << 20)
        with open(path, "wb") as f:
            f.write(v1)
            if fsync_first:
                f.flush()
                os.fsync(f.fileno())
        self.assertEqual(self.d.xattr(path, "state"), "spooled")  # closed, not yet ingested
        w = subprocess.Popen([sys.executable, "-c", SLOW_REWRITER, path, str(64 << 20)],
                             stdout=subprocess.PIPE, text=True)
        self.assertEqual(w.stdout.readline().strip(), "rewriting")
        time.sleep(0.5)  # several MiB of the rewrite have landed
        self.d.kill()
        w.kill()
        w.wait()
        self.restart_with_prompt_ingest()
        with open(path, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), len(v1), "the closed version was replaced by the unfinished rewrite")
        self.assertTrue(got == v1)
        self.d.flush()
        self.assertEqual(self.d.xattr(path, "state"), "committed")
        self.assertTrue(open(path, "rb").read() == v1)
        self.assertVerifies()

    def test_a_rewrite_killed_before_close_leaves_the_closed_version(self):
        self.kill_during_rewrite(os.path.join(self.mnt, "ckpt.bin"), fsync_first=False)

    def test_a_rewrite_killed_before_close_leaves_the_fsynced_version(self):
        self.kill_during_rewrite(os.path.join(self.mnt, "ckpt.bin"), fsync_first=True)

    def test_readers_see_the_rewrite_and_the_closed_version_until_it_closes(self):
        path = os.path.join(self.mnt, "f.bin")
        v1, v2 = os.urandom(3 << 20), os.urandom(5 << 20)
        with open(path, "wb") as f:
            f.write(v1)
        with open(path, "r+b") as f:  # no O_TRUNC: a copy of v1, changed in place
            f.write(v2[:1 << 20])
            f.flush()
            self.assertTrue(open(path, "rb").read() == v2[:1 << 20] + v1[1 << 20:])
        with open(path, "wb") as f:
            f.write(v2)
        self.restart_with_prompt_ingest_after_stop()
        self.d.flush()
        self.assertTrue(open(path, "rb").read() == v2)
        self.assertVerifies()

    def restart_with_prompt_ingest_after_stop(self):
        self.d.stop()
        self.restart_with_prompt_ingest()


class SaveLoopTest(harness.MountTestCase):
    def test_kill_9_during_a_save_loop_to_one_name_leaves_a_complete_version(self):
        path = os.path.join(self.mnt, "last.pt")
        rng = random.Random(5)
        for round_ in range(5):
            loop = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, path, str(round_)],
                                    stdout=subprocess.PIPE, text=True)
            closed = [loop.stdout.readline().strip()]  # at least one version written
            time.sleep(rng.uniform(0.1, 1.5))
            # kill -9; the mount stays (dead) until the loop's next call fails
            # and it exits on its own, so every version it closed is printed.
            self.d.proc.send_signal(signal.SIGKILL)
            closed += [line.strip() for line in loop.stdout.read().splitlines()]
            loop.wait(timeout=30)
            self.d.kill()
            self.d.start()
            got = harness.sha256(path)
            self.assertTrue(got in closed, "round %d: last.pt (%d bytes) is none of the %d versions written"
                            % (round_, os.path.getsize(path), len(closed)))
            self.assertGreater(os.path.getsize(path), 0)
        self.d.flush()
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
