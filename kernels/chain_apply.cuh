// Kernels of the batched chain apply (kernels/chain_apply.h). Included by
// chain_apply.cu only.
#pragma once

#include <cub/block/block_scan.cuh>

#include "kernels/chain_apply.h"

namespace tpde::gpu {

inline constexpr int kDenseThreads = 256;
inline constexpr int kDenseElemsPerThread = 16;  // one 16-byte load per plane
static_assert(kDenseThreads * kDenseElemsPerThread == kDenseTileElems);
inline constexpr int kSparseThreads = 256;
inline constexpr int kSparseItems = 4;  // consecutive elements per thread: one 4-byte load per plane

// ChunkMode values (codec/chunk.h; kernels do not include the codec).
inline constexpr uint8_t kModeKey = 0;
inline constexpr uint8_t kModeDeltaDense = 1;
inline constexpr uint8_t kModeDeltaSparse = 2;

template <typename T>
__device__ __forceinline__ T Unzigzag(T z) {
  return static_cast<T>((z >> 1) ^ (T(0) - (z & 1)));
}

// v[i] = element e0 + i merged from `sizeof(T)` byte planes (16-byte loads;
// e0 is a multiple of 16 and the planes are padded to 16 bytes).
template <typename T>
__device__ __forceinline__ void LoadMerged16(const uint8_t* planes, uint32_t stride, uint32_t e0, T (&v)[16]) {
  constexpr int W = sizeof(T);
  uint4 q[W];
#pragma unroll
  for (int p = 0; p < W; ++p) q[p] = *reinterpret_cast<const uint4*>(planes + size_t(p) * stride + e0);  // all loads first
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = 0;
#pragma unroll
  for (int p = 0; p < W; ++p) {
    const uint32_t w[4] = {q[p].x, q[p].y, q[p].z, q[p].w};
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] |= static_cast<T>(static_cast<T>((w[i / 4] >> (8 * (i % 4))) & 0xFFu) << (8 * p));
  }
}

// 32-bit word k of the 16 * sizeof(T) little-endian bytes of v.
template <typename T, int k>
__device__ __forceinline__ uint32_t Word(const T (&v)[16]) {
  if constexpr (sizeof(T) == 1) {
    return uint32_t(v[4 * k]) | uint32_t(v[4 * k + 1]) << 8 | uint32_t(v[4 * k + 2]) << 16 | uint32_t(v[4 * k + 3]) << 24;
  } else if constexpr (sizeof(T) == 2) {
    return uint32_t(v[2 * k]) | uint32_t(v[2 * k + 1]) << 16;
  } else if constexpr (sizeof(T) == 4) {
    return v[k];
  } else {
    return static_cast<uint32_t>(v[k / 2] >> (32 * (k % 2)));
  }
}

template <typename T, int j>
__device__ __forceinline__ void StoreVec(uint4* out, const T (&v)[16]) {
  out[j] = make_uint4(Word<T, 4 * j>(v), Word<T, 4 * j + 1>(v), Word<T, 4 * j + 2>(v), Word<T, 4 * j + 3>(v));
}

// The keyframe and every dense delta of 16 elements of one job, summed in
// registers, written once.
template <typename T>
__device__ __forceinline__ void DenseElems(const JobDesc& job, const LinkDesc* __restrict__ links,
                                           const uint8_t* __restrict__ staging, uint32_t e0) {
  T acc[16];
  const LinkDesc key = links[job.first_link];
  LoadMerged16<T>(staging + key.planes_offset, key.plane_stride, e0, acc);
  for (uint32_t l = 1; l < job.num_links; ++l) {
    const LinkDesc d = links[job.first_link + l];
    if (d.mode != kModeDeltaDense) continue;
    T z[16];
    LoadMerged16<T>(staging + d.planes_offset, d.plane_stride, e0, z);
#pragma unroll
    for (int i = 0; i < 16; ++i) acc[i] = static_cast<T>(acc[i] + Unzigzag(z[i]));
  }
  uint8_t* out = job.out_dev + size_t(e0) * sizeof(T);
  if (e0 + 16 <= job.elem_count) {
    uint4* out4 = reinterpret_cast<uint4*>(out);
    StoreVec<T, 0>(out4, acc);
    if constexpr (sizeof(T) >= 2) StoreVec<T, 1>(out4, acc);
    if constexpr (sizeof(T) >= 4) {
      StoreVec<T, 2>(out4, acc);
      StoreVec<T, 3>(out4, acc);
    }
    if constexpr (sizeof(T) == 8) {
      StoreVec<T, 4>(out4, acc);
      StoreVec<T, 5>(out4, acc);
      StoreVec<T, 6>(out4, acc);
      StoreVec<T, 7>(out4, acc);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      if (e0 + i < job.elem_count) reinterpret_cast<T*>(out)[i] = acc[i];
    }
  }
}

// Grid: x = tiles of kDenseTileElems elements, y = jobs (from job_offset).
__global__ void __launch_bounds__(kDenseThreads) DenseKernel(const JobDesc* __restrict__ jobs,
                                                             const LinkDesc* __restrict__ links,
                                                             const uint8_t* __restrict__ staging, uint32_t job_offset) {
  const JobDesc job = jobs[job_offset + blockIdx.y];
  const uint32_t e0 = blockIdx.x * kDenseTileElems + threadIdx.x * kDenseElemsPerThread;
  if (job.num_links == 0 || e0 >= job.elem_count) return;
  switch (job.width) {
    case 1: DenseElems<uint8_t>(job, links, staging, e0); break;
    case 2: DenseElems<uint16_t>(job, links, staging, e0); break;
    case 4: DenseElems<uint32_t>(job, links, staging, e0); break;
    case 8: DenseElems<unsigned long long>(job, links, staging, e0); break;
  }
}

using SparseScan = cub::BlockScan<unsigned long long, kSparseThreads>;

// Scatters one DELTA_SPARSE link into the job's output. Every thread of the
// block calls it (it has block barriers).
template <typename T>
__device__ void SparseLink(const JobDesc& job, const LinkDesc& d, const uint8_t* __restrict__ staging,
                           SparseScan::TempStorage& temp, unsigned long long& carry, uint32_t* status) {
  constexpr int W = sizeof(T);
  T* out = reinterpret_cast<T*>(job.out_dev);
  const uint8_t* values = staging + d.planes_offset;
  const uint8_t* gaps = staging + d.gaps_offset;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (uint64_t base = 0; base < d.nnz; base += kSparseThreads * kSparseItems) {
    const uint64_t k0 = base + threadIdx.x * kSparseItems;  // a multiple of 4: 4-byte loads stay in the padding
    const bool any = k0 < d.nnz;
    unsigned long long pos1[kSparseItems] = {};  // position + 1 of each item
    bool bad = false;
    if (d.gap_form == GapForm::kGapPlanes) {
      unsigned long long g[kSparseItems] = {};
      if (any) {
        uint32_t b[4];
#pragma unroll
        for (int p = 0; p < 4; ++p) b[p] = *reinterpret_cast<const uint32_t*>(gaps + size_t(p) * d.gap_stride + k0);
#pragma unroll
        for (int i = 0; i < kSparseItems; ++i) {
          uint32_t gap = 0;
#pragma unroll
          for (int p = 0; p < 4; ++p) gap |= ((b[p] >> (8 * i)) & 0xFFu) << (8 * p);
          if (k0 + i < d.nnz) {
            g[i] = gap;
            bad |= gap == 0;
          }
        }
      }
      const unsigned long long running = carry;
      unsigned long long total;
      SparseScan(temp).InclusiveSum(g, pos1, total);
      __syncthreads();  // every thread has read carry and the scan storage
      if (threadIdx.x == 0) carry = running + total;
#pragma unroll
      for (int i = 0; i < kSparseItems; ++i) pos1[i] += running;
    } else if (any) {
#pragma unroll
      for (int i = 0; i < kSparseItems; ++i) {
        if (k0 + i < d.nnz) pos1[i] = reinterpret_cast<const uint32_t*>(gaps)[k0 + i] + 1ull;
      }
    }
    if (any) {
      uint32_t b[W];
#pragma unroll
      for (int p = 0; p < W; ++p) b[p] = *reinterpret_cast<const uint32_t*>(values + size_t(p) * d.plane_stride + k0);
#pragma unroll
      for (int i = 0; i < kSparseItems; ++i) {
        if (k0 + i >= d.nnz) break;
        if (pos1[i] == 0 || pos1[i] > job.elem_count) bad = true;
        if (bad) break;
        T z = 0;
#pragma unroll
        for (int p = 0; p < W; ++p) z |= static_cast<T>(static_cast<T>((b[p] >> (8 * i)) & 0xFFu) << (8 * p));
        T* e = out + (pos1[i] - 1);
        *e = static_cast<T>(*e + Unzigzag(z));
      }
    }
    if (bad) atomicOr(status, kJobBadPositions);
    __syncthreads();  // the scan storage and carry are reused
  }
  __syncthreads();  // the next sparse link sees this one's writes
}

// One block per job: its sparse links, in order (a link's positions are
// distinct; two links may share positions, so links do not overlap).
__global__ void __launch_bounds__(kSparseThreads) SparseKernel(const JobDesc* __restrict__ jobs,
                                                               const LinkDesc* __restrict__ links,
                                                               const uint8_t* __restrict__ staging, uint32_t* status) {
  __shared__ SparseScan::TempStorage temp;
  __shared__ unsigned long long carry;
  const JobDesc job = jobs[blockIdx.x];
  for (uint32_t l = 1; l < job.num_links; ++l) {
    const LinkDesc d = links[job.first_link + l];
    if (d.mode != kModeDeltaSparse) continue;
    switch (job.width) {
      case 1: SparseLink<uint8_t>(job, d, staging, temp, carry, &status[blockIdx.x]); break;
      case 2: SparseLink<uint16_t>(job, d, staging, temp, carry, &status[blockIdx.x]); break;
      case 4: SparseLink<uint32_t>(job, d, staging, temp, carry, &status[blockIdx.x]); break;
      case 8: SparseLink<unsigned long long>(job, d, staging, temp, carry, &status[blockIdx.x]); break;
    }
  }
}

}  // namespace tpde::gpu
