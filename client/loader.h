// Loader: reads a committed file of a tpde mount straight into the caller's
// memory — host memory, or GPU memory through the GPU chain decoder — from
// the compressed chunks, with no full-size host copy of the file.
//
// Open finds the mount that holds `path` (libmount over
// /proc/self/mountinfo: a "fuse.tpde" mount whose source is tpde:STORE),
// opens the file for reading through the mount (so the kernel checks the
// caller's permissions) and passes that descriptor, with this process's
// bundle buffers (memfds, see ReleaseBuffers), to its daemon on
// STORE/control.sock (or $TPDE_CONTROL_SOCKET), which writes the file's
// chain bundle (codec/chain_bundle.h) into them (daemon/control_protocol.h
// "bundle"). Reads then decode
// in this process: zstd on this process's CPU threads, and, for GPU
// destinations, the later stages on the GPU (kernels/gpu_chain_decoder.h),
// pipelined with pinned host-to-device copies. The daemon needs no GPU.
//
// Errors (Status, never exceptions): InvalidArgument "not in a tpde mount";
// IOError "the tpde daemon of STORE is not running", or with the errno
// text of the open ("Permission denied"); NotFound for a missing file; NotFound with "not committed" when the file is still being written
// or ingested after `wait_seconds` (Open polls every 50 ms until then);
// Corruption for a chunk that fails its checksums (nothing of it is
// returned); NotSupported for a GPU read where there is no usable GPU.
//
// Thread-safety: a LoadedFile may be read from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "codec/status.h"

namespace tpde {

struct LoaderOptions {
  double wait_seconds = 0;  // how long Open waits for a file not committed yet
  size_t threads = 0;       // CPU threads for zstd and host decoding (0: all cores)
};

class LoadedFile {
 public:
  static Status Open(const std::string& path, const LoaderOptions& options, std::unique_ptr<LoadedFile>* out);
  ~LoadedFile();

  // The bundle lives in shared memory of this process (memfds the daemon
  // writes into, about the compressed size of the file). A closed file's
  // buffers are kept for the next Open (the largest set only), which then
  // allocates nothing; ReleaseBuffers frees them. Thread-safe.
  static void ReleaseBuffers();

  uint64_t file_bytes() const;
  int chain_depth() const;  // deltas applied to read this version (0: the newest)

  // Reads n ranges of the file, [offsets[i], offsets[i] + sizes[i]) into
  // dst[i] (host arrays of n). Each range must start and end on chunk
  // boundaries (every tensor of a safetensors file does; InvalidArgument
  // otherwise). device < 0: dst are host pointers, decoded on the CPU;
  // device >= 0: dst are device pointers on that CUDA device, decoded on
  // it, ordered after `stream` (a cudaStream_t, nullptr for the default
  // stream) and complete on return. Sizes in bytes.
  Status ReadRanges(size_t n, const uint64_t* offsets, const uint64_t* sizes, void* const* dst, int device,
                    void* stream);

  // Any byte range into host memory (the safetensors header, a slice).
  Status ReadHost(uint64_t offset, uint64_t size, void* dst);

  struct Impl;

 private:
  explicit LoadedFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpde
