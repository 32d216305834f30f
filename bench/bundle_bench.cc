// bundle_bench: where the time of the control protocol's "bundle" goes, the
// daemon's half of tpde.load_file (daemon/bundle_memfd.h).
//
//   bundle_bench --gb 1 --dir /tmp/bundle-bench [--threads 0] [--repeats 3]
//
// Writes a synthetic safetensors file of --gb GB (fp32 tensors of GPT-2
// shapes, random mantissas: nearly incompressible, as fresh weights are),
// ingests it into a fresh store under --dir, and then, warm (its blob files
// in the page cache), times per repeat:
//   layout    FileReader::BundleLayout (chains resolved, no payload read)
//   fetch     WriteBundle into a sink that drops the bytes (RocksDB reads)
//   pwrite    MakeBundleMemfd(kPwrite): fetch + pwrite into a new memfd +
//             seal (the daemon, for a client that passes no buffers)
//   mapped    MakeBundleMemfd(kMapped): fetch + memcpy into a mapping + seal
//   fresh     FillBundleBuffers into new memfds, one per thread (up to 32),
//             1 MiB blocks round robin (pages allocated as written)
//   buffers   FillBundleBuffers into memfds that outlive the repeat (the
//             loader's reusable buffers: what a load does once they exist);
//             repeat 1 allocates their pages, later repeats only copy
// and prints GB/s of bundle bytes. Results: docs/benchmarks.md.
#include <fmt/format.h>

#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <algorithm>
#include <string>
#include <vector>

#include "daemon/bundle_memfd.h"
#include "store/store.h"

namespace fs = std::filesystem;

namespace {

void Check(const tpde::Status& s) {
  if (!s.ok()) {
    fmt::print(stderr, "bundle_bench: {}\n", s.ToString());
    std::exit(1);
  }
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GPT-2-shaped fp32 tensors until `bytes`; values with random mantissas.
void WriteSynthetic(const fs::path& path, uint64_t bytes) {
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> shapes = {
      {"attn.c_attn.weight", {768, 2304}}, {"attn.c_proj.weight", {768, 768}},
      {"mlp.c_fc.weight", {768, 3072}},    {"mlp.c_proj.weight", {3072, 768}}};
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (int layer = 0; offset < bytes; ++layer) {
    for (const auto& [name, shape] : shapes) {
      const uint64_t n = shape[0] * shape[1] * 4;
      header[fmt::format("h.{}.{}", layer, name)] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + n}}};
      sizes.push_back(n);
      offset += n;
    }
  }
  std::string h = header.dump();
  h.append((8 - (8 + h.size()) % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t hn = h.size();
  out.write(reinterpret_cast<const char*>(&hn), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  std::mt19937_64 rng(42);
  std::vector<uint32_t> buf;
  for (uint64_t n : sizes) {
    buf.resize(n / 4);
    for (auto& v : buf) {
      const uint64_t r = rng();
      // sign random, exponent 117..124 (|x| in [2^-10, 2^-3)), mantissa random
      v = static_cast<uint32_t>(((r >> 32) & 0x80000000u) | ((117u + ((r >> 23) & 7u)) << 23) | (r & 0x7fffffu));
    }
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bundle_bench: the daemon's half of tpde.load_file"};
  double gb = 1;
  std::string dir = "/tmp/tpde-bundle-bench";
  size_t threads = 0;
  int repeats = 3;
  app.add_option("--gb", gb, "file size in GB");
  app.add_option("--dir", dir, "scratch directory (removed first)");
  app.add_option("--threads", threads, "store pool threads (0: all cores)");
  app.add_option("--repeats", repeats, "timed repeats");
  CLI11_PARSE(app, argc, argv);

  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path source = fs::path(dir) / "model.safetensors";
  WriteSynthetic(source, static_cast<uint64_t>(gb * 1e9));
  tpde::StoreOptions opt;
  opt.threads = threads;
  std::unique_ptr<tpde::Store> store;
  Check(tpde::Store::Open((fs::path(dir) / "store").string(), opt, &store));
  tpde::Inode root;
  Check(store->Resolve("", &root));
  tpde::IngestResult ingested;
  auto t0 = std::chrono::steady_clock::now();
  Check(store->IngestFile(root.ino, "model.safetensors", source.string(), &ingested));
  fmt::print("ingest: {:.2f} GB in {:.2f} s, stored {:.2f} GB; pool {} threads\n", ingested.file_bytes / 1e9,
             Seconds(t0), ingested.stored_bytes / 1e9, threads == 0 ? std::thread::hardware_concurrency() : threads);
  fs::remove(source);

  const size_t num_buffers =
      std::min<size_t>(tpde::kMaxBundleBuffers, threads == 0 ? std::thread::hardware_concurrency() : threads);
  fmt::print("{:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}   (ms, GB/s of bundle bytes; buffers: {})\n", "repeat",
             "layout", "fetch", "pwrite", "mapped", "fresh", "buffers", num_buffers);
  std::vector<tpde::UniqueFd> buffers;
  std::vector<int> raw;
  for (int r = 0; r < repeats; ++r) {
    std::unique_ptr<tpde::FileReader> reader;
    Check(store->OpenReader(ingested.ino, &reader));
    t0 = std::chrono::steady_clock::now();
    tpde::ChainBundleLayout layout;
    Check(reader->BundleLayout(&layout));
    const double layout_s = Seconds(t0);
    const double bytes = static_cast<double>(layout.total_bytes());
    t0 = std::chrono::steady_clock::now();
    Check(reader->WriteBundle(layout, [](uint64_t, const void*, size_t) { return tpde::Status::OK(); }, nullptr));
    const double fetch_s = Seconds(t0);
    std::string line = fmt::format("{:>7} {:>10.1f} {:>4.0f} {:>5.2f}", r + 1, layout_s * 1e3, fetch_s * 1e3,
                                   bytes / fetch_s / 1e9);
    for (tpde::BundleFill fill : {tpde::BundleFill::kPwrite, tpde::BundleFill::kMapped}) {
      tpde::UniqueFd fd;
      t0 = std::chrono::steady_clock::now();
      Check(tpde::MakeBundleMemfd(*reader, layout, fill, nullptr, &fd));
      const double s = Seconds(t0);
      line += fmt::format(" {:>4.0f} {:>5.2f}", s * 1e3, bytes / s / 1e9);
    }
    const uint64_t buffer_bytes = tpde::BundleBufferBytes(layout.total_bytes(), num_buffers);
    auto make_buffers = [&](std::vector<tpde::UniqueFd>* owned, std::vector<int>* fds) {
      for (size_t i = 0; i < num_buffers; ++i) {
        owned->emplace_back(::memfd_create("bundle-bench", MFD_CLOEXEC));
        if (::ftruncate(owned->back().get(), static_cast<off_t>(buffer_bytes)) != 0) {
          Check(tpde::Status::IOError("ftruncate"));
        }
        fds->push_back(owned->back().get());
      }
    };
    {
      std::vector<tpde::UniqueFd> owned;
      std::vector<int> fds;
      make_buffers(&owned, &fds);
      t0 = std::chrono::steady_clock::now();
      Check(tpde::FillBundleBuffers(*reader, layout, fds, buffer_bytes, tpde::BundlePart::kAll, nullptr));
      const double s = Seconds(t0);
      line += fmt::format(" {:>4.0f} {:>5.2f}", s * 1e3, bytes / s / 1e9);
    }
    if (buffers.empty()) make_buffers(&buffers, &raw);
    t0 = std::chrono::steady_clock::now();
    Check(tpde::FillBundleBuffers(*reader, layout, raw, buffer_bytes, tpde::BundlePart::kAll, nullptr));
    const double s = Seconds(t0);
    line += fmt::format(" {:>4.0f} {:>5.2f}", s * 1e3, bytes / s / 1e9);
    fmt::print("{}\n", line);
  }
  buffers.clear();
  store.reset();
  fs::remove_all(dir);
  return 0;
}
