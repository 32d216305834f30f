// Batched GPU chain apply: every stage of TPDE chunk decoding after the
// entropy stage, for a batch of chains, in two kernel launches per batch.
//
// Input is the decompressed streams of every link of every chain, laid out
// by the caller in one device staging buffer (see LinkDesc); the zstd stage
// runs on the host (kernels/gpu_chain_decoder.h does both). For each job
// (one output chunk of `elem_count` elements of `width` bytes):
//
//   out = key + sum of dense deltas + sum of sparse deltas  (mod 2^(8*width))
//
// element by element, where key is the byte-plane merge of the keyframe link,
// a dense delta the unzigzag of the byte-plane merge of a DELTA_DENSE link,
// and a sparse delta the unzigzag of a DELTA_SPARSE link's values scattered
// to its positions (gaps prefix-summed on the GPU, or positions decoded on
// the host for Elias-delta gap streams). SAME links add nothing. Because the
// deltas are integer differences they commute, so the keyframe and every
// dense delta are summed in registers in one pass over the chunk (one write
// of the output), and sparse deltas are scattered after it.
// The byte-plane and zigzag definitions are codec/byte_planes.h's; the
// batched interface follows DietGPU's GpuFloatCodec.h
// (github.com/facebookresearch/dietgpu): numInBatch independent problems,
// device descriptors, an explicit stream.
//
// Thread-safety: stateless; concurrent calls on different streams are fine.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tpde::gpu {

// How a DELTA_SPARSE link's positions are staged.
enum class GapForm : uint8_t {
  kPositions = 0,   // nnz uint32 element positions, increasing (decoded on the host)
  kGapPlanes = 1,   // 4 byte planes of nnz 32-bit gaps (gap_0 = pos_0 + 1), merged and prefix-summed on the GPU
};

// One link of a chain, as staged. Offsets are bytes from staging_dev; every
// offset and stride is a multiple of 16.
struct LinkDesc {
  uint64_t planes_offset = 0;  // `width` byte planes, plane i at planes_offset + i * plane_stride
  uint64_t gaps_offset = 0;    // DELTA_SPARSE: the positions or gap planes (GapForm)
  uint32_t plane_stride = 0;   // bytes between planes: >= the plane's elements rounded up to 16
  uint32_t gap_stride = 0;     // kGapPlanes: bytes between gap planes (as plane_stride)
  uint32_t nnz = 0;            // DELTA_SPARSE: changed elements (the planes hold nnz elements)
  uint8_t mode = 0;            // tpde::ChunkMode value
  GapForm gap_form = GapForm::kPositions;
  uint8_t reserved[2] = {};
};

// One output chunk.
struct JobDesc {
  uint8_t* out_dev = nullptr;  // elem_count * width bytes of device memory, 16-byte aligned
  uint32_t first_link = 0;     // its links: links[first_link, first_link + num_links), keyframe first
  uint32_t num_links = 0;      // 0: the job is skipped (its status is left as is)
  uint32_t elem_count = 0;     // elements, not bytes
  uint32_t width = 0;          // bytes per element: 1, 2, 4 or 8
};

// Per-job status bits, OR-ed into status_dev[job].
inline constexpr uint32_t kJobBadPositions = 1;  // a gap of 0 or a position past the chunk: corrupt input

// Elements of one chunk handled by one block of the dense pass.
inline constexpr uint32_t kDenseTileElems = 4096;

// Reconstructs numInBatch chunks on `stream`. jobs_dev[numInBatch] and the
// links they name (links_dev) are device memory, as are staging_dev and
// status_dev[numInBatch] (the caller zeroes it; a job with a non-zero status
// after the stream completes has unspecified output). max_elem_count: the
// largest elem_count of the batch (sizes the grid). Asynchronous: returns
// the launch error, if any; nothing is synchronised.
cudaError_t ChainApplyBatch(uint32_t numInBatch, const JobDesc* jobs_dev, const LinkDesc* links_dev,
                            const uint8_t* staging_dev, uint32_t max_elem_count, uint32_t* status_dev,
                            cudaStream_t stream);

}  // namespace tpde::gpu
