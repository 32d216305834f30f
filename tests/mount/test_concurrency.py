"""4 writer processes on different files, 4 readers on committed files."""
import hashlib
import multiprocessing
import os
import random
import subprocess

import harness


def writer(root, wid, queue):
    rng = random.Random(wid)
    out = {}
    d = os.path.join(root, "w%d" % wid)
    os.makedirs(d)
    for i in range(6):
        data = rng.randbytes(rng.randrange(1, 3 << 20))
        p = os.path.join(d, "ckpt-%d.bin" % i)
        with open(p, "wb") as f:
            for off in range(0, len(data), 1 << 17):  # many write calls
                f.write(data[off:off + (1 << 17)])
            if i % 2:
                f.flush()
                os.fsync(f.fileno())
        out[p] = hashlib.sha256(data).hexdigest()
    queue.put(out)


def reader(paths, rounds, queue):
    bad = []
    for _ in range(rounds):
        for p, digest in paths.items():
            if harness.sha256(p) != digest:
                bad.append(p)
    queue.put(bad)


class ConcurrencyTest(harness.MountTestCase):
    def test_four_writers_and_four_readers(self):
        subprocess.run(["cp", "-r", harness.DATA, os.path.join(self.mnt, "data")], check=True)
        self.d.flush()
        committed = {os.path.join(self.mnt, "data", rel): h for rel, h in harness.tree_hashes(harness.DATA).items()}
        q = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=writer, args=(self.mnt, w, q)) for w in range(4)]
        procs += [multiprocessing.Process(target=reader, args=(committed, 3, q)) for _ in range(4)]
        for p in procs:
            p.start()
        results = [q.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            self.assertEqual(p.exitcode, 0)
        written = {}
        for r in results:
            if isinstance(r, dict):
                written.update(r)
            else:
                self.assertEqual(r, [], "readers saw wrong bytes")
        self.assertEqual(len(written), 24)
        for p, digest in written.items():
            self.assertEqual(harness.sha256(p), digest, p)
        self.d.flush()
        for p, digest in written.items():
            self.assertEqual(harness.sha256(p), digest, p)
        self.assertVerifies()


if __name__ == "__main__":
    harness.main()
