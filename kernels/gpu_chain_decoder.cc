#include "codec/thread_annotations.h"
#include "kernels/gpu_chain_decoder.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "codec/checksum.h"
#include "codec/thread_pool.h"
#include "kernels/chain_apply.h"
#include "kernels/content_hash.h"

namespace tpde {

namespace {

constexpr uint64_t kAlign = 16;
uint64_t RoundUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Where one request of a GPU batch lives in the slot's buffers.
struct Planned {
  size_t request;        // index into the caller's requests
  uint32_t job;          // index of its JobDesc
  uint64_t out_offset;   // bytes into the output buffers
  uint64_t out_bytes;
};

// A GPU batch's buffers: one of the two in flight.
struct Slot {
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
  uint8_t* in_host = nullptr;  // pinned: job and link descriptors, then the staged streams
  uint8_t* in_dev = nullptr;
  uint8_t* out_host = nullptr;  // pinned
  uint8_t* out_dev = nullptr;
  uint32_t* status_host = nullptr;  // pinned
  uint32_t* status_dev = nullptr;
  // Device output: each job's content hash, computed on the GPU
  // (kernels/content_hash.h) over the job's output in out_dev.
  const uint8_t** hash_in_host = nullptr;  // pinned: max_jobs output pointers, then max_jobs byte counts
  const uint8_t** hash_in_dev = nullptr;
  uint64_t* hash_host = nullptr;  // pinned
  uint64_t* hash_dev = nullptr;
  size_t max_jobs = 0;
  // The batch in flight.
  std::vector<Planned> planned;
  uint64_t staged_bytes = 0;  // bytes of in_host to upload
  uint64_t links_offset = 0;  // where the link descriptors are staged
  uint64_t out_used = 0;      // bytes of out_dev to download
};

}  // namespace

// Makes `device` current for a scope and restores the caller's current
// device after it: the decoder runs on threads of its callers (a training
// loop, a FUSE worker), whose own device must not change under them.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = previous_ == device ? cudaSuccess : cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t status() const { return status_; }

 private:
  int previous_ = -1;
  cudaError_t status_ = cudaSuccess;
};

struct GpuChainDecoder::Impl {
  GpuDecoderOptions options;
  std::unique_ptr<ChainDecoder> cpu;  // the fallback
  std::string device_name;
  uint64_t in_bytes = 0;  // per slot: descriptors + staging_bytes
  Slot slots[2];
  std::mutex mu;  // one pipeline
  std::atomic<bool> enabled{true};
  std::atomic<uint64_t> gpu_bytes{0}, cpu_bytes{0};
  cudaEvent_t caller_ready = nullptr;  // recorded on the caller's stream (device output)

  Status Run(const ChainRequest* requests, size_t num_in_batch, uint8_t* const* out_dev, cudaStream_t caller_stream,
             Status* status_out);

  ~Impl() {
    DeviceGuard guard(options.device);
    FreeBuffers();
  }

  // Releases what Allocate took (all of it or the part it got to).
  void FreeBuffers() {
    if (caller_ready != nullptr) cudaEventDestroy(caller_ready);
    caller_ready = nullptr;
    for (Slot& s : slots) {
      if (s.stream != nullptr) cudaStreamSynchronize(s.stream);
      cudaFreeHost(s.in_host);
      cudaFreeHost(s.out_host);
      cudaFreeHost(s.status_host);
      cudaFreeHost(s.hash_in_host);
      cudaFreeHost(s.hash_host);
      cudaFree(s.in_dev);
      cudaFree(s.out_dev);
      cudaFree(s.status_dev);
      cudaFree(s.hash_in_dev);
      cudaFree(s.hash_dev);
      if (s.done != nullptr) cudaEventDestroy(s.done);
      if (s.stream != nullptr) cudaStreamDestroy(s.stream);
      s.in_host = s.in_dev = s.out_host = s.out_dev = nullptr;
      s.status_host = s.status_dev = nullptr;
      s.hash_in_host = s.hash_in_dev = nullptr;
      s.hash_host = s.hash_dev = nullptr;
      s.done = nullptr;
      s.stream = nullptr;
    }
  }

  void Log(const std::string& line) {
    if (options.log) {
      options.log(line);
    } else {
      std::fprintf(stderr, "tpde gpu: %s\n", line.c_str());
    }
  }

  // Turns the GPU path off after a CUDA error (logged once).
  void Disable(cudaError_t err, const char* what) {
    if (enabled.exchange(false)) {
      Log(fmt::format("{}: {} ({}); reads go on on the CPU", what, cudaGetErrorString(err), static_cast<int>(err)));
    }
  }

  void ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
    if (options.pool != nullptr && n > 1) {
      options.pool->ParallelFor(n, fn);
    } else {
      for (size_t i = 0; i < n; ++i) fn(i);
    }
  }

  // Sizes of the batches (no CUDA calls).
  void Plan() {
    const size_t max_jobs = options.batch_bytes / kAlign + 1;  // each job has >= 16 bytes of output slot
    in_bytes = RoundUp(options.staging_bytes);
    for (Slot& s : slots) s.max_jobs = std::min<size_t>(max_jobs, 1 << 16);
  }

  // The buffers and streams, at the first GPU batch: a daemon
  // whose reads never reach the GPU (the newest checkpoint is a keyframe)
  // never takes pinned or device memory from the training job.
  bool allocated = false;
  Status Allocate() TPDE_REQUIRES(mu) {
    allocated = true;
    if (cudaError_t err = cudaEventCreateWithFlags(&caller_ready, cudaEventDisableTiming); err != cudaSuccess) {
      return Status::IOError(fmt::format("GPU event: {}", cudaGetErrorString(err)));
    }
    for (Slot& s : slots) {
      const uint64_t desc_bytes = RoundUp(s.max_jobs * sizeof(gpu::JobDesc));
      cudaError_t err = cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking);
      if (err == cudaSuccess) err = cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming);
      if (err == cudaSuccess) err = cudaMallocHost(&s.in_host, desc_bytes + in_bytes);
      if (err == cudaSuccess) err = cudaMalloc(&s.in_dev, desc_bytes + in_bytes);
      if (err == cudaSuccess) err = cudaMallocHost(&s.out_host, options.batch_bytes);
      if (err == cudaSuccess) err = cudaMalloc(&s.out_dev, options.batch_bytes);
      if (err == cudaSuccess) err = cudaMallocHost(&s.status_host, s.max_jobs * sizeof(uint32_t));
      if (err == cudaSuccess) err = cudaMalloc(&s.status_dev, s.max_jobs * sizeof(uint32_t));
      // Per job: its output pointer, then (after all pointers) its byte count.
      static_assert(sizeof(const uint8_t*) == sizeof(uint64_t), "pointers and byte counts share one array");
      const size_t hash_in_bytes = s.max_jobs * (sizeof(const uint8_t*) + sizeof(uint64_t));
      if (err == cudaSuccess) err = cudaMallocHost(&s.hash_in_host, hash_in_bytes);
      if (err == cudaSuccess) err = cudaMalloc(&s.hash_in_dev, hash_in_bytes);
      if (err == cudaSuccess) err = cudaMallocHost(&s.hash_host, s.max_jobs * sizeof(uint64_t));
      if (err == cudaSuccess) err = cudaMalloc(&s.hash_dev, s.max_jobs * sizeof(uint64_t));
      if (err != cudaSuccess) {
        FreeBuffers();  // nothing half-allocated stays pinned or on the device
        return Status::IOError(fmt::format("GPU buffers ({} MiB pinned, {} MiB on the device): {}",
                                           2 * (desc_bytes + in_bytes + options.batch_bytes) >> 20,
                                           2 * (desc_bytes + in_bytes + options.batch_bytes) >> 20,
                                           cudaGetErrorString(err)));
      }
    }
    return Status::OK();
  }

  // Decoded stream bytes one chain needs in the staging buffer.
  static uint64_t StagingBytes(const ChainRequest& r) {
    uint64_t n = 0;
    for (uint32_t l = 0; l < r.num_links; ++l) {
      const ChunkRecord& rec = *r.links[l].record;
      switch (rec.mode) {
        case ChunkMode::kKey:
        case ChunkMode::kDeltaDense: n += rec.width * RoundUp(rec.elem_count); break;
        case ChunkMode::kDeltaSparse:
          n += rec.width * RoundUp(rec.nnz);
          n += rec.gap_coding == GapCoding::kBytePlanes ? 4 * RoundUp(rec.nnz) : RoundUp(uint64_t{rec.nnz} * 4);
          break;
        case ChunkMode::kSame: break;
      }
    }
    return n;
  }

  // Step 1: lays out `batch` (request indices) in slot `s` and decodes the
  // streams into its staging buffer. Requests that fail get their status
  // and no job links.
  void Stage(Slot& s, const ChainRequest* requests, const std::vector<size_t>& batch, Status* status_out,
             uint32_t* max_elems) {
    s.planned.clear();
    const uint64_t desc_bytes = RoundUp(s.max_jobs * sizeof(gpu::JobDesc));
    auto* jobs = reinterpret_cast<gpu::JobDesc*>(s.in_host);
    std::vector<gpu::LinkDesc> links;
    uint64_t offset = 0, out_offset = 0;
    *max_elems = 0;
    for (size_t j = 0; j < batch.size(); ++j) {
      const ChainRequest& r = requests[batch[j]];
      const ChunkRecord& last = *r.links[r.num_links - 1].record;
      gpu::JobDesc& job = jobs[j];
      job = {};
      job.out_dev = s.out_dev + out_offset;
      job.first_link = static_cast<uint32_t>(links.size());
      job.num_links = r.num_links;
      job.elem_count = last.elem_count;
      job.width = last.width;
      *max_elems = std::max(*max_elems, last.elem_count);
      for (uint32_t l = 0; l < r.num_links; ++l) {
        const ChunkRecord& rec = *r.links[l].record;
        gpu::LinkDesc d;
        d.mode = static_cast<uint8_t>(rec.mode);
        const uint64_t plane_elems = rec.mode == ChunkMode::kDeltaSparse ? rec.nnz
                                     : rec.mode == ChunkMode::kSame      ? 0
                                                                         : rec.elem_count;
        d.plane_stride = static_cast<uint32_t>(RoundUp(plane_elems));
        d.planes_offset = desc_bytes + offset;
        offset += uint64_t{rec.width} * d.plane_stride;
        if (rec.mode == ChunkMode::kDeltaSparse) {
          d.nnz = rec.nnz;
          d.gaps_offset = desc_bytes + offset;
          if (rec.gap_coding == GapCoding::kBytePlanes) {
            d.gap_form = gpu::GapForm::kGapPlanes;
            d.gap_stride = static_cast<uint32_t>(RoundUp(rec.nnz));
            offset += 4 * uint64_t{d.gap_stride};
          } else {
            d.gap_form = gpu::GapForm::kPositions;
            offset += RoundUp(uint64_t{rec.nnz} * 4);
          }
        }
        links.push_back(d);
      }
      s.planned.push_back({batch[j], static_cast<uint32_t>(j), out_offset, last.content_bytes()});
      s.hash_in_host[j] = job.out_dev;
      reinterpret_cast<uint64_t*>(s.hash_in_host + s.max_jobs)[j] = last.content_bytes();
      out_offset += RoundUp(last.content_bytes());
    }
    // The link descriptors follow the streams (their count varies).
    s.links_offset = desc_bytes + offset;
    std::memcpy(s.in_host + s.links_offset, links.data(), links.size() * sizeof(gpu::LinkDesc));
    s.staged_bytes = s.links_offset + links.size() * sizeof(gpu::LinkDesc);
    s.out_used = out_offset;

    // Decode the streams on the pool, one task per link (chains are few
    // and long at depth; links are many and alike).
    std::vector<uint32_t> link_job(links.size());
    for (size_t j = 0; j < batch.size(); ++j) {
      for (uint32_t l = 0; l < jobs[j].num_links; ++l) link_job[jobs[j].first_link + l] = static_cast<uint32_t>(j);
    }
    std::vector<Status> link_status(links.size());
    ParallelFor(links.size(), [&](size_t i) {
      thread_local ChunkScratch scratch;
      thread_local std::vector<uint8_t> gap_stream;
      const uint32_t j = link_job[i];
      const uint32_t l = static_cast<uint32_t>(i - jobs[j].first_link);
      const ChainLink& link = requests[batch[j]].links[l];
      const ChunkRecord& rec = *link.record;
      const gpu::LinkDesc& d = links[i];
      uint8_t* dst[kMaxChunkStreams] = {};
      uint8_t* planes = s.in_host + d.planes_offset;
      const int first_plane = rec.mode == ChunkMode::kDeltaSparse ? 1 : 0;
      if (first_plane == 1) {
        gap_stream.resize(rec.gap_bytes);
        dst[0] = gap_stream.data();
      }
      for (int p = 0; p < rec.width && first_plane + p < rec.num_streams; ++p) {
        dst[first_plane + p] = planes + static_cast<uint64_t>(p) * d.plane_stride;
      }
      Status st = DecodeStreamsChecked(rec, link.payload, dst, &scratch);
      if (st.ok() && rec.mode == ChunkMode::kDeltaSparse) {
        uint8_t* gaps = s.in_host + d.gaps_offset;
        if (rec.gap_coding == GapCoding::kBytePlanes) {
          // 4 planes of nnz bytes, restaged at the padded stride; the GPU
          // merges them and prefix-sums the gaps.
          for (uint64_t p = 0; p < 4; ++p) std::memcpy(gaps + p * d.gap_stride, gap_stream.data() + p * rec.nnz, rec.nnz);
        } else {
          st = DecodeSparsePositions(
              rec, std::string_view(reinterpret_cast<const char*>(gap_stream.data()), gap_stream.size()),
              reinterpret_cast<uint32_t*>(gaps));
        }
      }
      link_status[i] = std::move(st);
    });
    for (size_t j = 0; j < batch.size(); ++j) {
      status_out[batch[j]] = Status::OK();
      for (uint32_t l = 0; l < jobs[j].num_links; ++l) {
        const Status& st = link_status[jobs[j].first_link + l];
        if (st.ok()) continue;
        status_out[batch[j]] = st.WithContext(fmt::format("chain link {} of {}", l, jobs[j].num_links));
        jobs[j].num_links = 0;  // skipped by the kernels
        break;
      }
    }
  }

  // Step 2: uploads, runs the kernels, downloads. False on a CUDA error.
  bool Launch(Slot& s, uint32_t num_jobs, uint32_t max_elems, uint8_t* const* out_dev) {
    cudaError_t err = cudaMemcpyAsync(s.in_dev, s.in_host, s.staged_bytes, cudaMemcpyHostToDevice, s.stream);
    if (err == cudaSuccess) err = cudaMemsetAsync(s.status_dev, 0, num_jobs * sizeof(uint32_t), s.stream);
    if (err == cudaSuccess) {
      err = gpu::ChainApplyBatch(num_jobs, reinterpret_cast<const gpu::JobDesc*>(s.in_dev),
                                 reinterpret_cast<const gpu::LinkDesc*>(s.in_dev + s.links_offset), s.in_dev, max_elems,
                                 s.status_dev, s.stream);
    }
    if (out_dev != nullptr) {
      // Device output: each chunk's content hash on the GPU (only the
      // hashes come back), and each chunk to its caller's buffer.
      const uint64_t* bytes_dev = reinterpret_cast<const uint64_t*>(s.hash_in_dev + s.max_jobs);
      if (err == cudaSuccess) {
        err = cudaMemcpyAsync(s.hash_in_dev, s.hash_in_host, num_jobs * sizeof(uint8_t*), cudaMemcpyHostToDevice,
                              s.stream);
      }
      if (err == cudaSuccess) {
        err = cudaMemcpyAsync(const_cast<uint64_t*>(bytes_dev), s.hash_in_host + s.max_jobs,
                              num_jobs * sizeof(uint64_t), cudaMemcpyHostToDevice, s.stream);
      }
      if (err == cudaSuccess) {
        err = gpu::ContentHashBatch(num_jobs, s.hash_in_dev, bytes_dev, s.hash_dev, s.stream);
      }
      if (err == cudaSuccess) {
        err = cudaMemcpyAsync(s.hash_host, s.hash_dev, num_jobs * sizeof(uint64_t), cudaMemcpyDeviceToHost, s.stream);
      }
      for (size_t i = 0; err == cudaSuccess && i < s.planned.size(); ++i) {
        const Planned& p = s.planned[i];
        if (p.out_bytes > 0) {
          err = cudaMemcpyAsync(out_dev[p.request], s.out_dev + p.out_offset, p.out_bytes, cudaMemcpyDeviceToDevice,
                                s.stream);
        }
      }
    } else if (err == cudaSuccess) {
      err = cudaMemcpyAsync(s.out_host, s.out_dev, s.out_used, cudaMemcpyDeviceToHost, s.stream);
    }
    if (err == cudaSuccess) {
      err = cudaMemcpyAsync(s.status_host, s.status_dev, num_jobs * sizeof(uint32_t), cudaMemcpyDeviceToHost, s.stream);
    }
    if (err == cudaSuccess) err = cudaEventRecord(s.done, s.stream);
    if (err != cudaSuccess) {
      Disable(err, "GPU batch launch");
      return false;
    }
    return true;
  }

  // Step 3: waits for the slot, hands out its chunks. False on a CUDA error
  // (nothing handed out).
  bool Finish(Slot& s, const ChainRequest* requests, Status* status_out, bool device_out) {
    cudaError_t err = cudaEventSynchronize(s.done);
    if (err != cudaSuccess) {
      Disable(err, "GPU batch");
      return false;
    }
    std::atomic<uint64_t> bytes{0};
    ParallelFor(s.planned.size(), [&](size_t i) {
      const Planned& p = s.planned[i];
      Status& st = status_out[p.request];
      if (!st.ok()) return;  // failed in the zstd stage
      const ChainRequest& r = requests[p.request];
      if (s.status_host[p.job] != 0) {
        st = Status::Corruption("chunk gaps point outside the chunk");
        return;
      }
      // Host output: copied first, then hashed in the caller's buffer while
      // it is in cache; on a mismatch the status says the bytes are not the
      // chunk. Device output: hashed on the GPU.
      const ChunkRecord& last = *r.links[r.num_links - 1].record;
      uint64_t hash = 0;
      if (device_out) {
        hash = s.hash_host[p.job];
      } else {
        if (p.out_bytes > 0) std::memcpy(r.out_host, s.out_host + p.out_offset, p.out_bytes);
        hash = Checksum(r.out_host, p.out_bytes);
      }
      if (hash != last.content_hash) {
        st = Status::Corruption("decoded chunk checksum mismatch");
        return;
      }
      bytes += p.out_bytes;
    });
    gpu_bytes += bytes.load();
    return true;
  }

  // Device output is copied up on the caller's stream, after what it
  // queued there, and is complete on return.
  void DecodeOnCpu(const ChainRequest* requests, const std::vector<size_t>& which, uint8_t* const* out_dev,
                   cudaStream_t caller_stream, Status* status_out) {
    std::vector<ChainRequest> rs;
    rs.reserve(which.size());
    for (size_t i : which) rs.push_back(requests[i]);
    std::vector<std::vector<uint8_t>> host;  // device output: decoded here, then copied up
    if (out_dev != nullptr) {
      host.resize(rs.size());
      for (size_t k = 0; k < rs.size(); ++k) {
        host[k].resize(rs[k].links[rs[k].num_links - 1].record->content_bytes());
        rs[k].out_host = host[k].data();
      }
    }
    std::vector<Status> st(rs.size());
    cpu->DecodeBatch(rs.data(), rs.size(), st.data());
    for (size_t k = 0; out_dev != nullptr && k < rs.size(); ++k) {
      if (!st[k].ok() || host[k].empty()) continue;
      cudaError_t err = cudaMemcpyAsync(out_dev[which[k]], host[k].data(), host[k].size(), cudaMemcpyHostToDevice,
                                        caller_stream);
      if (err != cudaSuccess) st[k] = Status::IOError(fmt::format("copy to the GPU: {}", cudaGetErrorString(err)));
    }
    if (out_dev != nullptr) {
      // `host` is freed on return: the copies must be done.
      if (cudaError_t err = cudaStreamSynchronize(caller_stream); err != cudaSuccess) {
        for (auto& x : st) {
          if (x.ok()) x = Status::IOError(fmt::format("copy to the GPU: {}", cudaGetErrorString(err)));
        }
      }
    }
    uint64_t bytes = 0;
    for (size_t k = 0; k < which.size(); ++k) {
      status_out[which[k]] = st[k];
      if (st[k].ok()) bytes += rs[k].links[rs[k].num_links - 1].record->content_bytes();
    }
    cpu_bytes += bytes;
  }
};

GpuChainDecoder::GpuChainDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuChainDecoder::~GpuChainDecoder() = default;

bool GpuSupportCompiled() { return true; }

Status GpuChainDecoder::Open(const GpuDecoderOptions& options, std::unique_ptr<GpuChainDecoder>* out) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return Status::NotSupported(fmt::format("no CUDA device: {}", cudaGetErrorString(err)));
  if (options.device < 0 || options.device >= count) {
    return Status::NotSupported(fmt::format("no CUDA device {} ({} found)", options.device, count));
  }
  // Offsets inside a batch are 32-bit on the device (gpu::JobDesc).
  constexpr uint64_t kMaxBatchBytes = 1ull << 30;
  if (options.batch_bytes < (1u << 20) || options.staging_bytes < options.batch_bytes ||
      options.staging_bytes > kMaxBatchBytes) {
    return Status::InvalidArgument("GPU batch: 1 MiB <= batch_bytes <= staging_bytes <= 1 GiB");
  }
  DeviceGuard guard(options.device);
  err = guard.status();
  cudaDeviceProp prop{};
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, options.device);
  if (err != cudaSuccess) return Status::NotSupported(fmt::format("CUDA device {}: {}", options.device, cudaGetErrorString(err)));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->cpu = NewCpuChainDecoder(options.pool);
  impl->device_name = prop.name;
  impl->Plan();
  out->reset(new GpuChainDecoder(std::move(impl)));
  return Status::OK();
}

GpuDecoderStats GpuChainDecoder::stats() const {
  GpuDecoderStats s;
  s.gpu_bytes = impl_->gpu_bytes.load();
  s.cpu_bytes = impl_->cpu_bytes.load();
  s.gpu_enabled = impl_->enabled.load();
  s.device_name = impl_->device_name;
  return s;
}

Status GpuChainDecoder::DecodeBatch(const ChainRequest* requests, size_t num_in_batch, Status* status_out) {
  return impl_->Run(requests, num_in_batch, nullptr, nullptr, status_out);
}

Status GpuChainDecoder::DecodeBatchToDevice(const ChainRequest* requests, size_t num_in_batch,
                                            uint8_t* const* out_dev, void* stream, Status* status_out) {
  return impl_->Run(requests, num_in_batch, out_dev, static_cast<cudaStream_t>(stream), status_out);
}

Status GpuChainDecoder::Impl::Run(const ChainRequest* requests, size_t num_in_batch, uint8_t* const* out_dev,
                                  cudaStream_t caller_stream, Status* status_out) {
  Impl& im = *this;
  std::vector<size_t> cpu_side;  // requests the CPU decodes
  std::vector<std::vector<size_t>> batches;
  {
    std::vector<size_t> cur;
    uint64_t in = 0, out = 0;
    for (size_t i = 0; i < num_in_batch; ++i) {
      Status st = CheckChainRequest(requests[i]);
      if (!st.ok()) {
        status_out[i] = st;
        continue;
      }
      const uint64_t need_in = Impl::StagingBytes(requests[i]) + RoundUp(requests[i].num_links * sizeof(gpu::LinkDesc));
      const uint64_t need_out = RoundUp(requests[i].links[requests[i].num_links - 1].record->content_bytes());
      if (!im.enabled || need_in > im.in_bytes || need_out > im.options.batch_bytes) {
        cpu_side.push_back(i);
        continue;
      }
      if (!cur.empty() && (in + need_in > im.in_bytes || out + need_out > im.options.batch_bytes ||
                           cur.size() == im.slots[0].max_jobs)) {
        batches.push_back(std::move(cur));
        cur.clear();
        in = out = 0;
      }
      cur.push_back(i);
      in += need_in;
      out += need_out;
    }
    if (!cur.empty()) batches.push_back(std::move(cur));
  }

  if (!batches.empty()) {
    std::lock_guard<std::mutex> lock(im.mu);
    DeviceGuard guard(im.options.device);
    if (guard.status() != cudaSuccess) im.enabled = false;
    if (im.enabled && !im.allocated) {
      if (Status a = im.Allocate(); !a.ok()) {
        im.Log(a.ToString() + "; reads go on on the CPU");
        im.enabled = false;
      }
    }
    if (im.enabled && out_dev != nullptr) {
      // After what the caller queued on its stream (its buffers may be
      // memory a kernel of its own still uses).
      cudaError_t err = cudaEventRecord(im.caller_ready, caller_stream);
      for (Slot& s : im.slots) {
        if (err == cudaSuccess) err = cudaStreamWaitEvent(s.stream, im.caller_ready, 0);
      }
      if (err != cudaSuccess) im.Disable(err, "ordering after the caller's stream");
    }
    // Pipeline: batch b is staged (zstd on the pool) while the GPU runs
    // b - 1; b - 1 is handed out while the GPU runs b.
    size_t finished = 0;  // batches handed out, in order
    bool ok = im.enabled;
    using Clock = std::chrono::steady_clock;
    double stage_s = 0, launch_s = 0, finish_s = 0;
    auto lap = [](Clock::time_point& t) {
      const auto now = Clock::now();
      const double d = std::chrono::duration<double>(now - t).count();
      t = now;
      return d;
    };
    for (size_t b = 0; ok && b < batches.size(); ++b) {
      Slot& s = im.slots[b % 2];
      uint32_t max_elems = 0;
      auto t = Clock::now();
      im.Stage(s, requests, batches[b], status_out, &max_elems);
      stage_s += lap(t);
      ok = im.Launch(s, static_cast<uint32_t>(batches[b].size()), max_elems, out_dev);
      launch_s += lap(t);
      if (ok && b > 0) {
        ok = im.Finish(im.slots[(b - 1) % 2], requests, status_out, out_dev != nullptr);
        if (ok) finished = b;
      }
      finish_s += lap(t);
    }
    if (ok) {
      auto t = Clock::now();
      ok = im.Finish(im.slots[(batches.size() - 1) % 2], requests, status_out, out_dev != nullptr);
      if (ok) finished = batches.size();
      finish_s += lap(t);
    }
    if (std::getenv("TPDE_GPU_TRACE") != nullptr) {
      std::fprintf(stderr, "tpde gpu: %zu batches: staging (zstd, copies, hashes) %.1f ms, launch %.1f ms, "
                   "waiting + checking %.1f ms\n", batches.size(), stage_s * 1e3, launch_s * 1e3, finish_s * 1e3);
    }
    if (!ok) {
      // A CUDA error (or no buffers): every batch not handed out goes to the CPU.
      for (Slot& s : im.slots) {
        if (s.stream != nullptr) cudaStreamSynchronize(s.stream);
      }
      for (size_t b = finished; b < batches.size(); ++b) {
        cpu_side.insert(cpu_side.end(), batches[b].begin(), batches[b].end());
      }
    }
  }
  if (!cpu_side.empty()) {
    DeviceGuard guard(im.options.device);
    im.DecodeOnCpu(requests, cpu_side, out_dev, caller_stream, status_out);
  }
  for (size_t i = 0; i < num_in_batch; ++i) TPDE_RETURN_IF_ERROR(status_out[i]);
  return Status::OK();
}

}  // namespace tpde
