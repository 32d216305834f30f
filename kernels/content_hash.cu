#include "kernels/content_hash.cuh"

namespace tpde::gpu {

cudaError_t ContentHashBatch(uint32_t numInBatch, const uint8_t* const* in_dev, const uint64_t* bytes_dev,
                             uint64_t* hash_dev, cudaStream_t stream) {
  if (numInBatch == 0) return cudaSuccess;
  const uint32_t blocks = (numInBatch + xxh3::kWarpsPerBlock - 1) / xxh3::kWarpsPerBlock;
  xxh3::HashKernel<<<blocks, xxh3::kThreads, 0, stream>>>(numInBatch, in_dev, bytes_dev, hash_dev);
  return cudaGetLastError();
}

}  // namespace tpde::gpu
