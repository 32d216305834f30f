// GpuChainDecoder in a build without CUDA: there is never a GPU.
#include "kernels/gpu_chain_decoder.h"

namespace tpde {

struct GpuChainDecoder::Impl {};

GpuChainDecoder::GpuChainDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuChainDecoder::~GpuChainDecoder() = default;

bool GpuSupportCompiled() { return false; }

Status GpuChainDecoder::Open(const GpuDecoderOptions&, std::unique_ptr<GpuChainDecoder>*) {
  return Status::NotSupported("this tpde was built without CUDA (nvcc was not found)");
}

GpuDecoderStats GpuChainDecoder::stats() const { return {}; }

Status GpuChainDecoder::DecodeBatch(const ChainRequest*, size_t, Status*) {
  return Status::NotSupported("this tpde was built without CUDA");
}

Status GpuChainDecoder::DecodeBatchToDevice(const ChainRequest*, size_t, uint8_t* const*, void*, Status*) {
  return Status::NotSupported("this tpde was built without CUDA");
}

}  // namespace tpde
