// GpuChainDecoder: the ChainDecoder (codec/chain_decoder.h) of machines with
// a CUDA GPU.
//
// A batch of chains is cut into GPU batches of at most `batch_bytes` of
// output. For each GPU batch:
//   1. host, on the pool's threads: each link's payload hash is checked and
//      its streams are zstd-decoded (raw streams copied) straight into a
//      pinned staging buffer, byte planes padded to 16 bytes; Elias-delta gap
//      streams are decoded to positions there too (they are a few KB);
//   2. one host-to-device copy of the staging buffer, the two kernels of
//      kernels/chain_apply.h (byte-plane merge, unzigzag, keyframe + dense
//      deltas summed in one pass, sparse gaps prefix-summed and scattered),
//      then, for host output, one device-to-host copy of the output into
//      pinned memory; for device output, each chunk's XXH3-64 on the GPU
//      (kernels/content_hash.h), only the hashes copied back, and each chunk
//      copied to its caller's device buffer; all on the GPU batch's stream;
//   3. host: host output is copied to its caller's buffer and its content
//      hash checked there (bytes that come back to the host are checked on
//      the host); device output's hashes are compared (docs/format.md).
// Two GPU batches are in flight: step 1 of batch b+1 runs while the GPU
// works on batch b, and step 3 of b while the GPU works on b+1.
//
// Fallback: a chain whose links do not fit a GPU batch, and every chain of a
// batch hit by a CUDA error, is decoded by the CPU decoder instead; the first
// CUDA error is logged (through `log`) and turns the GPU path off for the
// decoder's lifetime. A read never fails because of the GPU.
//
// Memory: 2 x (staging_bytes + batch_bytes) of pinned host memory and as
// much device memory, allocated once, at the first GPU batch (a pooled
// workspace, no allocation per batch; nothing until a batch needs the GPU).
// If it cannot be allocated, the CPU decodes (logged once) and nothing of a
// partial allocation is kept.
//
// Thread-safety: DecodeBatch may be called from several threads; GPU batches
// are serialised (one pipeline per decoder). The calling thread's current
// CUDA device is the same after a call as before it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "codec/chain_decoder.h"
#include "codec/status.h"

namespace tpde {

class ThreadPool;

struct GpuDecoderOptions {
  int device = 0;                    // CUDA device index
  ThreadPool* pool = nullptr;        // the zstd stage and the host copies (not owned; nullptr: calling thread)
  // 1 MiB <= batch_bytes <= staging_bytes <= 1 GiB (offsets in a batch are
  // 32-bit on the device); Open refuses others with InvalidArgument.
  uint64_t batch_bytes = 64u << 20;  // output bytes per GPU batch
  uint64_t staging_bytes = 256u << 20;  // decoded stream bytes per GPU batch (all links of its chains)
  std::function<void(const std::string&)> log;  // one line per event (default: stderr)
};

struct GpuDecoderStats {
  uint64_t gpu_bytes = 0;  // chunk bytes reconstructed on the GPU
  uint64_t cpu_bytes = 0;  // chunk bytes the CPU fallback reconstructed
  bool gpu_enabled = false;
  std::string device_name;
};

class GpuChainDecoder : public ChainDecoder {
 public:
  // NotSupported when the build has no CUDA or the machine no usable device
  // (the message says which).
  static Status Open(const GpuDecoderOptions& options, std::unique_ptr<GpuChainDecoder>* out);

  ~GpuChainDecoder() override;

  const char* name() const override { return "gpu"; }
  Status DecodeBatch(const ChainRequest* requests, size_t num_in_batch, Status* status_out) override;

  // Decodes into device memory: out_dev[i] (a host array of num_in_batch
  // device pointers on options.device) receives request i's chunk;
  // requests[i].out_host is not used. `stream` (a cudaStream_t; nullptr: the
  // legacy default stream) orders the work after what the caller queued on
  // it; everything is complete when this returns. Every chunk's content
  // hash is computed on the GPU and checked (no decoded bytes come back to
  // the host): a request whose status is not OK may have had bytes written
  // to out_dev[i], which the caller must not use. The CPU fallback decodes
  // on the host, checks there and copies up.
  Status DecodeBatchToDevice(const ChainRequest* requests, size_t num_in_batch, uint8_t* const* out_dev,
                             void* stream, Status* status_out);

  GpuDecoderStats stats() const;

  struct Impl;

 private:
  explicit GpuChainDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether this build has the CUDA path at all.
bool GpuSupportCompiled();

}  // namespace tpde
