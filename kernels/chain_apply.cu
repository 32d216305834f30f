#include "kernels/chain_apply.cuh"

namespace tpde::gpu {

cudaError_t ChainApplyBatch(uint32_t numInBatch, const JobDesc* jobs_dev, const LinkDesc* links_dev,
                            const uint8_t* staging_dev, uint32_t max_elem_count, uint32_t* status_dev,
                            cudaStream_t stream) {
  if (numInBatch == 0 || max_elem_count == 0) return cudaSuccess;
  const uint32_t tiles = (max_elem_count + kDenseTileElems - 1) / kDenseTileElems;
  constexpr uint32_t kMaxGridY = 65535;
  for (uint32_t first = 0; first < numInBatch; first += kMaxGridY) {
    const dim3 grid(tiles, std::min(kMaxGridY, numInBatch - first));
    DenseKernel<<<grid, kDenseThreads, 0, stream>>>(jobs_dev, links_dev, staging_dev, first);
  }
  SparseKernel<<<numInBatch, kSparseThreads, 0, stream>>>(jobs_dev, links_dev, staging_dev, status_dev);
  return cudaGetLastError();
}

}  // namespace tpde::gpu
