// A file's chain bundle (codec/chain_bundle.h) in shared memory, for the
// loader (the control protocol's "bundle", daemon/control_protocol.h): the
// payloads reach the client through memfds, not the socket.
//
// Two ways, both measured by bench/bundle_bench.cc:
//   FillBundleBuffers  into the loader's own buffers (memfds it passes with
//                      the request and keeps mapped across loads), dealt
//                      out in 1 MiB blocks round robin (BundleBufferSpot):
//                      a load allocates no pages once the buffers exist,
//                      and the pool's threads, taking chunks in file order,
//                      write into different buffers at once (pwrite to a
//                      tmpfs file holds its inode lock). What the loader
//                      uses.
//   MakeBundleMemfd    into one new memfd the daemon passes back, sealed
//                      against shrinking, growing and writing (F_SEAL_SHRINK
//                      | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL), for a
//                      client without buffers: slower (page allocation and
//                      one inode lock), simple.
//
// Errors: IOError for a memfd that cannot be created, sized, mapped,
// written or sealed (ENOMEM); InvalidArgument for buffers that are not
// memfds or too small; the reader's Corruption or IOError for a payload.
// Thread-safety: calls are independent; concurrent calls share `pool`'s
// workers (codec/thread_pool.h).
#pragma once

#include <cstdint>
#include <vector>

#include "codec/chain_bundle.h"
#include "codec/status.h"
#include "codec/thread_pool.h"
#include "daemon/unique_fd.h"
#include "store/file_reader.h"

namespace tpde {

enum class BundleFill {
  kPwrite,  // pwrite() from the pool's threads (one inode lock)
  kMapped,  // memcpy into a shared writable mapping (a page fault per 4 KiB)
};

// The bundle of `reader`'s file laid out as `layout` (reader.BundleLayout)
// in a new sealed memfd of layout.total_bytes() bytes. `pool`: the threads
// that fetch payloads and copy them (nullptr: the reader's).
Status MakeBundleMemfd(const FileReader& reader, const ChainBundleLayout& layout, BundleFill fill, ThreadPool* pool,
                       UniqueFd* out);

// Checks descriptors passed as bundle buffers: memfds or other shmem files
// (F_GET_SEALS answers only for those: no file on disk or on the mount is
// written through here), all `*buffer_bytes` long, whole kBundleBlockBytes
// blocks, at most kMaxBundleBuffers. InvalidArgument otherwise.
Status CheckBundleBuffers(const std::vector<int>& fds, uint64_t* buffer_bytes);

// Writes the bundle into checked buffers at BundleBufferSpot(offset,
// fds.size()): the tables (kTables), the payloads, chunks taken in file
// order on the pool (kPayloads), or both (kAll). `written` (optional): as
// FileReader::WriteBundle's, for progress. InvalidArgument if
// BundleBufferBytes(total, fds.size()) > buffer_bytes.
enum class BundlePart { kAll, kTables, kPayloads };
Status FillBundleBuffers(const FileReader& reader, const ChainBundleLayout& layout, const std::vector<int>& fds,
                         uint64_t buffer_bytes, BundlePart part, ThreadPool* pool,
                         const FileReader::ChunkWritten& written = nullptr);

}  // namespace tpde
