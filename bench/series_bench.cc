// series_bench: compression ratio and store throughput on checkpoint series
// (db_bench style: one table per run).
//
//   build/bench/series_bench [--threads N] DIR...
//
// For each DIR (a directory of checkpoint-N/ subdirectories), prints the
// ratio (logical bytes / stored bytes) of
//   zstd        each whole file, zstd level 3 (what a compressing file
//               system or `zstd` gives);
//   planes      tpde keyframes only (byte planes, no deltas: chain depth 0);
//   tpde        tpde defaults (keyframe + TPDE delta chains, depth 8);
// and the import (encode + commit), export (decode) and verify MB/s of the
// default store. Ratios count every byte the store keeps for a file
// (payloads and manifest), not RocksDB's own file overhead.
#include <fmt/format.h>
#include <zstd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/file_reader.h"
#include "store/store.h"
#include "store/tree_io.h"

namespace fs = std::filesystem;
using tpde::Status;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Check(const Status& s) {
  if (!s.ok()) {
    fmt::print(stderr, "series_bench: {}\n", s.ToString());
    std::exit(1);
  }
}

uint64_t ZstdTreeBytes(const fs::path& dir, uint64_t* logical) {
  uint64_t stored = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    std::string out(ZSTD_compressBound(s.size()), '\0');
    stored += std::min(s.size(), ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3));
    *logical += s.size();
  }
  return stored;
}

struct StoreRun {
  uint64_t logical = 0, stored = 0;
  double import_s = 0, export_s = 0, verify_s = 0;
};

StoreRun RunStore(const fs::path& dir, const fs::path& scratch, tpde::StoreOptions opt, bool full) {
  fs::remove_all(scratch);
  std::unique_ptr<tpde::Store> store;
  Check(tpde::Store::Open((scratch / "store").string(), opt, &store));
  tpde::Inode root;
  Check(store->Resolve("", &root));
  StoreRun r;
  auto t0 = std::chrono::steady_clock::now();
  Check(tpde::ImportTree(store.get(), dir.string(), root.ino, nullptr));
  r.import_s = Seconds(t0);
  tpde::StoreStats st;
  Check(store->Stats("", &st));
  r.logical = st.logical_bytes;
  r.stored = st.stored_bytes;
  if (full) {
    t0 = std::chrono::steady_clock::now();
    Check(tpde::ExportTree(store.get(), root, (scratch / "export").string(), nullptr));
    r.export_s = Seconds(t0);
    tpde::VerifyReport vr;
    t0 = std::chrono::steady_clock::now();
    Check(store->Verify(&vr));
    r.verify_s = Seconds(t0);
    if (!vr.errors.empty()) Check(Status::Corruption(vr.errors[0]));
  }
  store.reset();
  fs::remove_all(scratch);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"series_bench: tpde ratio and throughput on checkpoint series"};
  std::vector<std::string> dirs;
  size_t threads = 0;
  std::string scratch = (fs::temp_directory_path() / "tpde-series-bench").string();
  app.add_option("DIR", dirs, "checkpoint series directories")->required();
  app.add_option("--threads", threads, "encode/decode threads (0: all cores)");
  app.add_option("--scratch", scratch, "scratch directory for the stores");
  CLI11_PARSE(app, argc, argv);

  fmt::print("{:<24} {:>10} {:>8} {:>8} {:>8} {:>11} {:>11} {:>11}\n", "series", "MB", "zstd", "planes", "tpde",
             "import", "export", "verify");
  for (const auto& d : dirs) {
    uint64_t logical = 0;
    const uint64_t zstd = ZstdTreeBytes(d, &logical);
    tpde::StoreOptions keyframes;
    keyframes.threads = threads;
    keyframes.max_chain_depth = 0;
    tpde::StoreOptions deflt;
    deflt.threads = threads;
    const StoreRun planes = RunStore(d, scratch, keyframes, false);
    const StoreRun tp = RunStore(d, scratch, deflt, true);
    const double mb = tp.logical / 1e6;
    fmt::print("{:<24} {:>10.1f} {:>7.3f}x {:>7.3f}x {:>7.3f}x {:>6.0f} MB/s {:>6.0f} MB/s {:>6.0f} MB/s\n",
               fs::path(d).filename().string(), mb, double(logical) / zstd, double(planes.logical) / planes.stored,
               double(tp.logical) / tp.stored, mb / tp.import_s, mb / tp.export_s, mb / tp.verify_s);
  }
  return 0;
}
