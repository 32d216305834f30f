// Chunk encode/decode throughput per mode, on real checkpoint data from
// tests/data (HF Trainer series) cut into 1 MiB chunks.
//
//   build/bench/codec_bench [--benchmark_filter=...]
//
// Bytes are logical chunk bytes (elements x width). Per-thread rates are
// the Threads(1) rows; totals for the machine are the Threads(N) rows
// (real time, all threads together).
#include <benchmark/benchmark.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "codec/chunk.h"
#include "codec/safetensors.h"

namespace tpde {
namespace {

const std::filesystem::path kData = TPDE_TEST_DATA_DIR;
constexpr size_t kChunkBytes = 1u << 20;

// The first kChunkBytes of the tensor data of a safetensors file.
std::string TensorBytes(const std::string& rel) {
  std::ifstream in(kData / rel, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string file = ss.str();
  SafetensorsHeader h;
  if (!ParseSafetensorsHeader(file, file.size(), &h).ok()) throw std::runtime_error("cannot read " + rel);
  return file.substr(h.data_start, std::min<size_t>(kChunkBytes, file.size() - h.data_start));
}

struct Case {
  const char* name;
  std::string cur, ref;  // ref empty: keyframe
  int width;
};

const Case& GetCase(int i) {
  static const Case cases[] = {
      {"KEY/fp32", TensorBytes("A-pretrain-fp32/checkpoint-900/model.safetensors"), "", 4},
      {"DENSE/fp32", TensorBytes("A-pretrain-fp32/checkpoint-900/model.safetensors"),
       TensorBytes("A-pretrain-fp32/checkpoint-800/model.safetensors"), 4},
      {"KEY/bf16", TensorBytes("B-finetune-bf16/checkpoint-40/model.safetensors"), "", 2},
      {"SPARSE/bf16", TensorBytes("B-finetune-bf16/checkpoint-40/model.safetensors"),
       TensorBytes("B-finetune-bf16/checkpoint-20/model.safetensors"), 2},
      {"SAME/bf16", TensorBytes("B-finetune-bf16/checkpoint-40/model.safetensors"),
       TensorBytes("B-finetune-bf16/checkpoint-40/model.safetensors"), 2},
  };
  return cases[i];
}

void BM_Encode(benchmark::State& state) {
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  ChunkScratch scratch;
  ChunkRecord rec;
  std::string payload;
  const auto* ref = c.ref.empty() ? nullptr : reinterpret_cast<const uint8_t*>(c.ref.data());
  for (auto _ : state) {
    EncodeChunk(reinterpret_cast<const uint8_t*>(c.cur.data()), ref, static_cast<uint32_t>(c.cur.size() / c.width),
                c.width, ChunkEncodeOptions(), &scratch, &rec, &payload);
    benchmark::DoNotOptimize(payload.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(c.cur.size()));
  state.SetLabel(std::string(c.name) + " -> " + ChunkModeName(rec.mode) +
                 " ratio " + std::to_string(double(c.cur.size()) / std::max<size_t>(1, payload.size())).substr(0, 6));
}

void BM_Decode(benchmark::State& state) {
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  ChunkScratch scratch;
  ChunkRecord rec;
  std::string payload;
  const auto* ref = c.ref.empty() ? nullptr : reinterpret_cast<const uint8_t*>(c.ref.data());
  EncodeChunk(reinterpret_cast<const uint8_t*>(c.cur.data()), ref, static_cast<uint32_t>(c.cur.size() / c.width),
              c.width, ChunkEncodeOptions(), &scratch, &rec, &payload);
  std::string buf = c.ref.empty() ? std::string(c.cur.size(), '\0') : c.ref;
  for (auto _ : state) {
    if (rec.mode != ChunkMode::kKey) {  // deltas apply in place: restore the reference
      state.PauseTiming();
      std::memcpy(buf.data(), c.ref.data(), buf.size());
      state.ResumeTiming();
    }
    Status s = DecodeChunk(rec, payload, reinterpret_cast<uint8_t*>(buf.data()), &scratch);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(c.cur.size()));
  state.SetLabel(std::string(c.name) + " as " + ChunkModeName(rec.mode));
}

void Cases(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < 5; ++i) b->Arg(i);
  b->Threads(1);
  b->Threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  b->UseRealTime();
}

BENCHMARK(BM_Encode)->Apply(Cases);
BENCHMARK(BM_Decode)->Apply(Cases);

}  // namespace
}  // namespace tpde

BENCHMARK_MAIN();
