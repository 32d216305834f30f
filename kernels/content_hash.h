// Batched GPU content hash: XXH3-64 (seed 0, default secret) of each of a
// batch of device buffers, equal bit for bit to the host's Checksum()
// (codec/checksum.h), so a chunk decoded into device memory is checked where
// it lies instead of being copied back to the host to be hashed.
//
// Algorithm: XXH3-64 as specified in xxHash's doc/xxhash_spec.md and
// implemented in xxhash.h 0.8 (https://github.com/Cyan4973/xxHash). Its long
// form (> 240 bytes) keeps 8 64-bit accumulators that stripes of 64 bytes
// update by addition; they are mixed non-linearly ("scrambled") only at the
// end of each 1024-byte block. One warp hashes one buffer: its 32 threads
// take the 16 stripes x 8 lanes of a block (4 stripes each, coalesced), sum
// their additions with warp shuffles, and 8 threads carry the accumulators
// from block to block. So a buffer's hash is a serial chain of n / 1024
// block steps, and a batch runs one warp per buffer side by side: a 1 MiB
// chunk is 1024 steps. 1024 chunks (1024 warps) do not fill an H100 (about
// 770 GB/s measured); 4096 do (about 2.5 TB/s, docs/benchmarks.md). Short
// buffers (<= 240 bytes) take xxhash's short paths on one thread.
//
// Thread-safety: stateless; concurrent calls on different streams are fine.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tpde::gpu {

// Hashes numInBatch buffers on `stream`: in_dev[i] (bytes_dev[i] bytes, any
// alignment) -> hash_dev[i]. in_dev, bytes_dev and hash_dev are device
// arrays of numInBatch entries; the buffers are device memory. Asynchronous:
// returns the launch error, if any.
cudaError_t ContentHashBatch(uint32_t numInBatch, const uint8_t* const* in_dev, const uint64_t* bytes_dev,
                             uint64_t* hash_dev, cudaStream_t stream);

}  // namespace tpde::gpu
