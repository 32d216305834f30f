#include "codec/chain_decoder.h"

#include <fmt/format.h>

#include "codec/thread_pool.h"

namespace tpde {

Status CheckChainRequest(const ChainRequest& request) {
  if (request.num_links == 0 || request.links == nullptr) return Status::InvalidArgument("chain: no links");
  const ChunkRecord& key = *request.links[0].record;
  if (key.mode != ChunkMode::kKey) {
    return Status::InvalidArgument(fmt::format("chain: first link is {}, not KEY", ChunkModeName(key.mode)));
  }
  for (uint32_t i = 1; i < request.num_links; ++i) {
    const ChunkRecord& r = *request.links[i].record;
    if (r.mode == ChunkMode::kKey) return Status::InvalidArgument(fmt::format("chain: link {} is a second KEY", i));
    if (r.elem_count != key.elem_count || r.width != key.width) {
      return Status::InvalidArgument(fmt::format("chain: link {} has {} elements of {} bytes, keyframe {} of {}", i,
                                                 r.elem_count, r.width, key.elem_count, key.width));
    }
  }
  return Status::OK();
}

Status DecodeChain(const ChainRequest& request, ChunkScratch* scratch) {
  TPDE_RETURN_IF_ERROR(CheckChainRequest(request));
  // Each link's payload hash is checked; the content hash of the last one
  // covers the whole chain.
  for (uint32_t i = 0; i < request.num_links; ++i) {
    const ChainLink& link = request.links[i];
    Status s = DecodeChunk(*link.record, link.payload, request.out_host, scratch,
                           /*check_content=*/i + 1 == request.num_links);
    if (!s.ok()) return s.WithContext(fmt::format("chain link {} of {}", i, request.num_links));
  }
  return Status::OK();
}

namespace {

class CpuChainDecoder final : public ChainDecoder {
 public:
  explicit CpuChainDecoder(ThreadPool* pool) : pool_(pool) {}

  const char* name() const override { return "cpu"; }

  Status DecodeBatch(const ChainRequest* requests, size_t num_in_batch, Status* status_out) override {
    auto decode = [&](size_t i) {
      thread_local ChunkScratch scratch;
      status_out[i] = DecodeChain(requests[i], &scratch);
    };
    if (pool_ == nullptr || num_in_batch <= 1) {
      for (size_t i = 0; i < num_in_batch; ++i) decode(i);
    } else {
      pool_->ParallelFor(num_in_batch, decode);
    }
    for (size_t i = 0; i < num_in_batch; ++i) TPDE_RETURN_IF_ERROR(status_out[i]);
    return Status::OK();
  }

 private:
  ThreadPool* const pool_;
};

}  // namespace

std::unique_ptr<ChainDecoder> NewCpuChainDecoder(ThreadPool* pool) { return std::make_unique<CpuChainDecoder>(pool); }

}  // namespace tpde
