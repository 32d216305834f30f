// A file's chain bundle (codec/chain_bundle.h) in a sealed memfd, for the
// loader (the control protocol's "bundle", daemon/control_protocol.h): the
// payloads reach the client through shared memory, not the socket.
//
// Fill strategies (bench/bundle_bench.cc measures them):
//   kPwrite  one memfd, pwrite() from the pool's threads. Every pwrite to a
//            tmpfs file takes its inode lock, so the copies into the memfd
//            run one at a time whatever the thread count.
//   kMapped  one memfd through a shared writable mapping that the pool's
//            threads fill with memcpy: no inode lock, but a page fault per
//            4 KiB page (tmpfs mappings get huge pages only where
//            shmem_enabled allows).
//   kParts   the bundle cut into up to `max_parts` consecutive memfds of
//            whole pages, pwrite() from the pool's threads: a lock per part,
//            so the copies run on as many cores as there are parts. The
//            client maps the parts back to back into one range.
// Each part is sealed against shrinking, growing and writing (F_SEAL_SHRINK
// | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL): a client that maps it cannot
// be sent SIGBUS or see it change.
//
// Errors: IOError for a memfd that cannot be created, sized, mapped or
// sealed (ENOMEM, ENOSPC of the tmpfs); the reader's Corruption or IOError
// for a payload. Nothing is left behind on an error. Thread-safety: calls
// are independent; `pool` serialises its ParallelFor calls (see
// codec/thread_pool.h).
#pragma once

#include <cstdint>
#include <vector>

#include "codec/chain_bundle.h"
#include "codec/status.h"
#include "codec/thread_pool.h"
#include "daemon/unique_fd.h"
#include "store/file_reader.h"

namespace tpde {

enum class BundleFill { kPwrite, kMapped, kParts };

// A bundle in consecutive memfds: part i holds bytes [sum of bytes[0..i),
// + bytes[i]); every part but the last is a whole number of pages.
struct BundleParts {
  std::vector<UniqueFd> fds;
  std::vector<uint64_t> bytes;
  uint64_t total_bytes() const;
};

// The bundle of `reader`'s file laid out as `layout` (reader.BundleLayout)
// in new sealed memfds (one, or up to `max_parts` for kParts). `pool`: the
// threads that fetch payloads and copy them (nullptr: the reader's).
Status MakeBundleMemfds(const FileReader& reader, const ChainBundleLayout& layout, BundleFill fill, size_t max_parts,
                        ThreadPool* pool, BundleParts* out);

// The loader's own buffers, passed with a "bundle" request: memfds it keeps
// mapped across loads, so a load allocates no pages and faults none in on
// either side once the buffers exist (tmpfs page allocation, not copying,
// is what a fresh memfd costs: bench/bundle_bench.cc). Checks that every
// descriptor is a memfd or other shmem file (F_GET_SEALS answers only for
// those: no file on disk or on the mount is written through here), that all
// are `*part_bytes` long, a whole number of pages. InvalidArgument
// otherwise.
Status CheckBundleBuffers(const std::vector<int>& fds, uint64_t* part_bytes);

// Writes the bundle into checked buffers: byte o of the bundle to byte
// o % part_bytes of buffer o / part_bytes, the buffers filled in parallel
// (one inode lock each). The caller checked that fds.size() * part_bytes
// >= layout.total_bytes().
Status FillBundleBuffers(const FileReader& reader, const ChainBundleLayout& layout, const std::vector<int>& fds,
                         uint64_t part_bytes, ThreadPool* pool);

}  // namespace tpde
