// GPU chain reconstruction benchmark (db_bench style: one tool, named
// benchmarks, one line of results each).
//
//   build/bench/gpu_chain_bench [--gb 1] [--depths 1,4,8] [--threads 0] [--only apply|e2e|hash]
//
// apply: the apply stage alone (kernels/chain_apply.h) on device-resident
//   staged streams, every delta dense (the most bytes per output byte):
//   output GB/s, and the bytes it moves (keyframe + deltas read, output
//   written) against a device-to-device copy measured here (read + write
//   counted). A checkpoint larger than one GPU batch of 1 GiB is processed
//   in 1 GiB batches.
// e2e: end-to-end reconstruction of GPT-2-shaped fp32 chunks (1 MiB each)
//   encoded by the real encoder from a synthetic training run (every weight
//   moves a little each step, as fp32 master weights do): payloads in host
//   memory to chunks in host memory, checked, through the GPU decoder vs
//   the CPU decoder on all cores.
// hash: the content check of chunks decoded into device memory: XXH3-64 of
//   every 1 MiB chunk of the checkpoint on the GPU (kernels/content_hash.h,
//   one warp per chunk) vs the host's XXH3 on all cores, and the
//   device-to-host copy the GPU hash replaces.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "codec/chain_decoder.h"
#include "codec/thread_pool.h"
#include "codec/checksum.h"
#include "kernels/chain_apply.h"
#include "kernels/content_hash.h"
#include "kernels/gpu_chain_decoder.h"

namespace tpde {
namespace {

using Clock = std::chrono::steady_clock;

#define CHECK_CUDA(x)                                                                 \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                   \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

constexpr uint32_t kChunkElems = 1u << 18;  // 1 MiB of fp32

double CopyBandwidth(uint64_t bytes) {
  uint8_t *a, *b;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 1, bytes));
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  CHECK_CUDA(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  cudaEventRecord(t0);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(t1);
  CHECK_CUDA(cudaEventSynchronize(t1));
  float ms = 0;
  cudaEventElapsedTime(&ms, t0, t1);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * reps / (ms / 1e3) / 1e9;  // read + write
}

void BenchApply(double gb, const std::vector<int>& depths, double copy_gbs) {
  const uint64_t total = static_cast<uint64_t>(gb * (1ull << 30));
  const uint64_t batch = std::min<uint64_t>(total, 1ull << 30);
  const uint32_t jobs_per_batch = static_cast<uint32_t>(batch / (kChunkElems * 4));
  const uint32_t batches = static_cast<uint32_t>((total + batch - 1) / batch);
  for (int depth : depths) {
    const uint32_t links_per_job = depth + 1;
    const uint64_t stride = kChunkElems;  // plane bytes
    const uint64_t link_bytes = 4 * stride;
    uint8_t* staging;
    uint8_t* out;
    gpu::JobDesc* jobs_dev;
    gpu::LinkDesc* links_dev;
    uint32_t* status_dev;
    CHECK_CUDA(cudaMalloc(&staging, link_bytes * links_per_job * jobs_per_batch));
    CHECK_CUDA(cudaMalloc(&out, batch));
    CHECK_CUDA(cudaMalloc(&jobs_dev, jobs_per_batch * sizeof(gpu::JobDesc)));
    CHECK_CUDA(cudaMalloc(&links_dev, uint64_t{jobs_per_batch} * links_per_job * sizeof(gpu::LinkDesc)));
    CHECK_CUDA(cudaMalloc(&status_dev, jobs_per_batch * sizeof(uint32_t)));
    CHECK_CUDA(cudaMemset(staging, 0x3c, link_bytes * links_per_job * jobs_per_batch));
    CHECK_CUDA(cudaMemset(status_dev, 0, jobs_per_batch * sizeof(uint32_t)));
    std::vector<gpu::JobDesc> jobs(jobs_per_batch);
    std::vector<gpu::LinkDesc> links(uint64_t{jobs_per_batch} * links_per_job);
    for (uint32_t j = 0; j < jobs_per_batch; ++j) {
      jobs[j] = {out + uint64_t{j} * kChunkElems * 4, j * links_per_job, links_per_job, kChunkElems, 4};
      for (uint32_t l = 0; l < links_per_job; ++l) {
        gpu::LinkDesc& d = links[j * links_per_job + l];
        d.mode = l == 0 ? 0 : 1;  // KEY, then DELTA_DENSE
        d.planes_offset = (uint64_t{j} * links_per_job + l) * link_bytes;
        d.plane_stride = static_cast<uint32_t>(stride);
      }
    }
    CHECK_CUDA(cudaMemcpy(jobs_dev, jobs.data(), jobs.size() * sizeof(jobs[0]), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(links_dev, links.data(), links.size() * sizeof(links[0]), cudaMemcpyHostToDevice));
    auto run = [&] {
      for (uint32_t b = 0; b < batches; ++b) {
        CHECK_CUDA(gpu::ChainApplyBatch(jobs_per_batch, jobs_dev, links_dev, staging, kChunkElems, status_dev, nullptr));
      }
    };
    run();  // warm up
    CHECK_CUDA(cudaDeviceSynchronize());
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    const int reps = 5;
    cudaEventRecord(t0);
    for (int r = 0; r < reps; ++r) run();
    cudaEventRecord(t1);
    CHECK_CUDA(cudaEventSynchronize(t1));
    float ms = 0;
    cudaEventElapsedTime(&ms, t0, t1);
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    const double out_bytes = double(batches) * jobs_per_batch * kChunkElems * 4 * reps;
    const double secs = ms / 1e3;
    const double moved = out_bytes * (depth + 2);  // keyframe + depth deltas read, output written
    std::printf("apply  %5.1f GB  depth %2d  output %7.1f GB/s  moved %7.1f GB/s  = %4.0f%% of copy (%.0f GB/s)\n", gb,
                depth, out_bytes / secs / 1e9, moved / secs / 1e9, 100 * moved / secs / 1e9 / copy_gbs, copy_gbs);
    std::fflush(stdout);
    cudaFree(staging);
    cudaFree(out);
    cudaFree(jobs_dev);
    cudaFree(links_dev);
    cudaFree(status_dev);
  }
}

// A synthetic fp32 training run of `chunks` 1 MiB chunks over `depth`
// steps, encoded as a reverse chain would store the oldest version: the
// keyframe of version 0 plus `depth` deltas (decoding the oldest of a
// rotation is the deepest read).
struct Encoded {
  std::vector<ChunkRecord> recs;  // [chunk][link]
  std::vector<std::string> payloads;
  int links = 0;
};

Encoded EncodeRun(size_t chunks, int depth, ThreadPool* pool) {
  Encoded e;
  e.links = depth + 1;
  e.recs.resize(chunks * e.links);
  e.payloads.resize(chunks * e.links);
  pool->ParallelFor(chunks, [&](size_t c) {
    thread_local ChunkScratch scratch;
    std::mt19937 rng(static_cast<uint32_t>(c));
    std::normal_distribution<float> init(0.f, 0.02f), step(0.f, 1e-4f);
    std::vector<float> cur(kChunkElems), prev;
    for (auto& w : cur) w = init(rng);
    for (int l = 0; l < e.links; ++l) {
      if (l > 0) {
        prev = cur;
        for (auto& w : cur) w += step(rng);
      }
      EncodeChunk(reinterpret_cast<const uint8_t*>(cur.data()),
                  l == 0 ? nullptr : reinterpret_cast<const uint8_t*>(prev.data()), kChunkElems, 4,
                  ChunkEncodeOptions(), &scratch, &e.recs[c * e.links + l], &e.payloads[c * e.links + l]);
    }
  });
  return e;
}

void BenchEndToEnd(double gb, const std::vector<int>& depths, ThreadPool* pool) {
  const size_t chunks = static_cast<size_t>(gb * 1024);
  GpuDecoderOptions o;
  o.pool = pool;
  std::unique_ptr<GpuChainDecoder> gpu;
  Status s = GpuChainDecoder::Open(o, &gpu);
  if (!s.ok()) {
    std::printf("e2e: %s\n", s.ToString().c_str());
    return;
  }
  auto cpu = NewCpuChainDecoder(pool);
  std::vector<uint8_t> out(chunks * kChunkElems * 4);
  for (int depth : depths) {
    Encoded e = EncodeRun(chunks, depth, pool);
    uint64_t stored = 0;
    for (const auto& p : e.payloads) stored += p.size();
    std::vector<ChainLink> links(e.recs.size());
    for (size_t i = 0; i < links.size(); ++i) links[i] = {&e.recs[i], e.payloads[i]};
    std::vector<ChainRequest> req(chunks);
    for (size_t c = 0; c < chunks; ++c) {
      req[c] = {&links[c * e.links], static_cast<uint32_t>(e.links), out.data() + c * kChunkElems * 4};
    }
    std::vector<Status> st(chunks);
    for (ChainDecoder* d : {static_cast<ChainDecoder*>(cpu.get()), static_cast<ChainDecoder*>(gpu.get())}) {
      Status r = d->DecodeBatch(req.data(), req.size(), st.data());  // warm up (page faults of out)
      double best = 1e30;
      for (int rep = 0; rep < 3 && r.ok(); ++rep) {
        const auto t0 = Clock::now();
        r = d->DecodeBatch(req.data(), req.size(), st.data());
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
      }
      if (!r.ok()) {
        std::printf("e2e %s: %s\n", d->name(), r.ToString().c_str());
        continue;
      }
      std::printf("e2e    %5.2f GB  depth %2d  %s  %6.2f GB/s of output  (stored %.2f GB, %zu threads)\n",
                  chunks / 1024.0, depth, d->name(), chunks * double(kChunkElems) * 4 / best / 1e9, stored / 1e9,
                  pool->size());
      std::fflush(stdout);
    }
  }
  const GpuDecoderStats gs = gpu->stats();
  std::printf("gpu decoder: %s, gpu bytes %llu, cpu fallback bytes %llu\n", gs.device_name.c_str(),
              static_cast<unsigned long long>(gs.gpu_bytes), static_cast<unsigned long long>(gs.cpu_bytes));
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(std::stoi(x));
  return v;
}

void BenchHash(double gb, ThreadPool* pool) {
  const uint64_t chunk = 1ull << 20;
  const uint32_t n = static_cast<uint32_t>(gb * (1ull << 30) / chunk);
  const uint64_t bytes = uint64_t{n} * chunk;
  std::vector<uint8_t> host(bytes);
  std::mt19937_64 rng(1);
  for (uint64_t i = 0; i < bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&host[i], &v, 8);
  }
  uint8_t* data_dev;
  const uint8_t** ptrs_dev;
  uint64_t *bytes_dev, *hash_dev;
  CHECK_CUDA(cudaMalloc(&data_dev, bytes));
  CHECK_CUDA(cudaMalloc(&ptrs_dev, n * sizeof(uint8_t*)));
  CHECK_CUDA(cudaMalloc(&bytes_dev, n * sizeof(uint64_t)));
  CHECK_CUDA(cudaMalloc(&hash_dev, n * sizeof(uint64_t)));
  std::vector<const uint8_t*> ptrs(n);
  std::vector<uint64_t> sizes(n, chunk);
  for (uint32_t i = 0; i < n; ++i) ptrs[i] = data_dev + uint64_t{i} * chunk;
  CHECK_CUDA(cudaMemcpy(data_dev, host.data(), bytes, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(ptrs_dev, ptrs.data(), n * sizeof(uint8_t*), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(bytes_dev, sizes.data(), n * sizeof(uint64_t), cudaMemcpyHostToDevice));
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  CHECK_CUDA(gpu::ContentHashBatch(n, ptrs_dev, bytes_dev, hash_dev, nullptr));  // warm up
  CHECK_CUDA(cudaDeviceSynchronize());
  float best_ms = 1e30f;
  for (int r = 0; r < 5; ++r) {
    cudaEventRecord(t0);
    CHECK_CUDA(gpu::ContentHashBatch(n, ptrs_dev, bytes_dev, hash_dev, nullptr));
    cudaEventRecord(t1);
    CHECK_CUDA(cudaEventSynchronize(t1));
    float ms = 0;
    cudaEventElapsedTime(&ms, t0, t1);
    best_ms = std::min(best_ms, ms);
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  std::vector<uint64_t> gpu_hash(n), cpu_hash(n);
  CHECK_CUDA(cudaMemcpy(gpu_hash.data(), hash_dev, n * sizeof(uint64_t), cudaMemcpyDeviceToHost));
  double best_cpu = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto c0 = Clock::now();
    pool->ParallelFor(n, [&](size_t i) { cpu_hash[i] = Checksum(host.data() + i * chunk, chunk); });
    best_cpu = std::min(best_cpu, std::chrono::duration<double>(Clock::now() - c0).count());
  }
  // What the GPU hash replaces: the chunks' copy back to (pinned) host memory.
  uint8_t* pinned;
  CHECK_CUDA(cudaMallocHost(&pinned, bytes));
  const auto d0 = Clock::now();
  CHECK_CUDA(cudaMemcpy(pinned, data_dev, bytes, cudaMemcpyDeviceToHost));
  const double d2h = std::chrono::duration<double>(Clock::now() - d0).count();
  const bool same = gpu_hash == cpu_hash;
  std::printf("hash %.2f GiB in %u chunks of 1 MiB: GPU XXH3 %.1f GB/s (%.2f ms); host XXH3 on %zu threads %.1f GB/s; "
              "device-to-host copy it replaces %.1f GB/s; hashes %s\n",
              bytes / double(1ull << 30), n, bytes / (best_ms * 1e-3) / 1e9, best_ms, pool->size(),
              bytes / best_cpu / 1e9, bytes / d2h / 1e9, same ? "identical" : "DIFFER");
  cudaFreeHost(pinned);
  cudaFree(data_dev);
  cudaFree(ptrs_dev);
  cudaFree(bytes_dev);
  cudaFree(hash_dev);
  if (!same) std::exit(1);
}

}  // namespace
}  // namespace tpde

int main(int argc, char** argv) {
  CLI::App app{"GPU chain reconstruction benchmark"};
  double gb = 1;
  double apply_gb = 0;
  std::string depths = "1,4,8", only;
  size_t threads = 0;
  app.add_option("--gb", gb, "checkpoint size in GiB (end to end)");
  app.add_option("--apply-gb", apply_gb, "checkpoint size in GiB for the apply stage (default: --gb)");
  app.add_option("--depths", depths, "deltas per chain, comma separated");
  app.add_option("--threads", threads, "CPU threads (0: all cores)");
  app.add_option("--only", only, "apply, e2e or hash");
  CLI11_PARSE(app, argc, argv);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  tpde::ThreadPool pool(threads);
  std::printf("device %s, %d SMs; %zu CPU threads\n", prop.name, prop.multiProcessorCount, pool.size());
  const auto list = tpde::ParseList(depths);
  if (only.empty() || only == "apply") {
    const double copy = tpde::CopyBandwidth(1ull << 30);
    std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy);
    tpde::BenchApply(apply_gb > 0 ? apply_gb : gb, list, copy);
  }
  if (only.empty() || only == "e2e") tpde::BenchEndToEnd(gb, list, &pool);
  if (only.empty() || only == "hash") tpde::BenchHash(gb, &pool);
  return 0;
}
