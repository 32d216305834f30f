// chain_policy_bench: how a chain-depth policy trades stored bytes against
// read depth and re-encoding, on a real checkpoint series.
//
//   build/bench/chain_policy_bench [--file model.safetensors] [--threads N]
//                                  [--extrapolate N] DIR...
//
// For each DIR (checkpoint-N/ subdirectories in natural order, versions
// 1..n), encodes every version of FILE once alone (KEY) and once against
// every other version as its reference, with the store's chunk codec
// (codec/chunk.h, 1 MiB chunks, zstd level 3), and prints the delta size
// by distance. Then it replays the run — versions arriving one at a time,
// every version kept, the newest always a keyframe (reverse deltas) — under
// each policy, and prints for the final store: stored bytes, the deepest and
// the mean chain (deltas decoded to read a version), and the re-encodes the
// run cost (each time a version's reference changes, it is encoded again in
// the background):
//
//   chain k      what the store does (StoreOptions::max_chain_depth = k):
//                when a version arrives its predecessor is demoted to a
//                delta against it unless the chain would exceed k deltas;
//                then it stays a keyframe (a keyframe every k + 1 versions).
//   skip         Subversion-style skip-deltas, reversed for a newest-keyframe
//                store: version v (1-based) is a delta against version
//                v + lowbit(v), or against the newest while that does not
//                exist yet, so every version is O(log n) deltas from the
//                newest ("Skip-Deltas", Subversion design notes,
//                notes/skip-deltas in the Subversion repository).
//   skip twice   the same targets, but a version is encoded at most twice:
//                demoted against its successor when that arrives (as in
//                `chain`), re-based against v + lowbit(v) when that arrives.
//
// "max during" is the deepest chain at any point of the run (what a read
// may meet while versions keep arriving). --extrapolate N replays the
// policies over N versions whose delta sizes follow the measured mean size
// by distance (extended linearly, capped at a keyframe): a model for runs
// longer than the series, printed apart from the measurements.
//
// Stored bytes count payloads plus the fixed chunk records (104 bytes each)
// of every version: what the store keeps per object apart from its
// manifest's segment table, which no policy changes.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "codec/chunk.h"
#include "codec/layout.h"
#include "codec/safetensors.h"
#include "codec/thread_pool.h"

namespace fs = std::filesystem;

namespace {

[[noreturn]] void Die(const std::string& msg) {
  fmt::print(stderr, "chain_policy_bench: {}\n", msg);
  std::exit(1);
}

struct Version {
  std::string name;  // checkpoint directory
  std::string bytes;
  std::vector<tpde::Segment> segments;
};

Version Load(const fs::path& path, const tpde::LayoutOptions& layout) {
  Version v;
  v.name = path.parent_path().filename().string();
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path.string());
  v.bytes.assign(std::istreambuf_iterator<char>(in), {});
  tpde::SafetensorsHeader header;
  const tpde::Status s = tpde::ParseSafetensorsHeader(v.bytes, v.bytes.size(), &header);
  if (!s.ok()) Die(path.string() + ": " + s.ToString());
  v.segments = tpde::PlanSafetensorsLayout(header, layout);
  return v;
}

bool SameLayout(const Version& a, const Version& b) {
  if (a.bytes.size() != b.bytes.size() || a.segments.size() != b.segments.size()) return false;
  for (size_t i = 0; i < a.segments.size(); ++i) {
    const tpde::Segment &x = a.segments[i], &y = b.segments[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.file_offset != y.file_offset) return false;
  }
  return true;
}

// Bytes the store keeps for `cur` encoded against `ref` (nullptr: keyframe).
uint64_t EncodedBytes(const Version& cur, const Version* ref, tpde::ThreadPool* pool) {
  struct Job {
    uint64_t offset;
    uint32_t elems;
    int width;
  };
  std::vector<Job> jobs;
  for (const tpde::Segment& seg : cur.segments) {
    for (uint32_t c = 0; c < seg.num_chunks(); ++c) {
      const uint64_t begin = uint64_t{c} * seg.chunk_elems;
      const uint64_t elems = std::min<uint64_t>(seg.chunk_elems, seg.num_elements - begin);
      jobs.push_back({seg.file_offset + begin * seg.width, static_cast<uint32_t>(elems), seg.width});
    }
  }
  std::vector<uint64_t> bytes(jobs.size());
  pool->ParallelFor(jobs.size(), [&](size_t i) {
    thread_local tpde::ChunkScratch scratch;
    tpde::ChunkRecord rec;
    std::string payload;
    const Job& j = jobs[i];
    const auto* c = reinterpret_cast<const uint8_t*>(cur.bytes.data()) + j.offset;
    const auto* r = ref ? reinterpret_cast<const uint8_t*>(ref->bytes.data()) + j.offset : nullptr;
    tpde::EncodeChunk(c, r, j.elems, j.width, tpde::ChunkEncodeOptions{}, &scratch, &rec, &payload);
    bytes[i] = payload.size() + tpde::kChunkRecordBytes;
  });
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  return total;
}

struct Outcome {
  uint64_t stored = 0;
  int max_depth = 0;
  double mean_depth = 0;
  int reencodes = 0;
  int max_depth_during = 0;  // deepest chain at any point of the run
};

// ref[v] for v in [0, n): the version v is a delta against, or -1 (keyframe).
Outcome Evaluate(const std::vector<int>& ref, const std::vector<uint64_t>& key,
                 const std::vector<std::vector<uint64_t>>& delta) {
  Outcome o;
  const int n = static_cast<int>(ref.size());
  int depth_sum = 0;
  for (int v = 0; v < n; ++v) {
    o.stored += ref[v] < 0 ? key[v] : delta[v][ref[v]];
    int d = 0;
    for (int u = v; ref[u] >= 0; u = ref[u]) ++d;
    o.max_depth = std::max(o.max_depth, d);
    depth_sum += d;
  }
  o.mean_depth = double(depth_sum) / n;
  return o;
}

// Replays versions 0..n-1 arriving in order; `policy(v, newest, ref)` is
// the reference of version v < newest once `newest` exists (-1: keyframe).
// Counts each change of a version's reference as one re-encode, and the
// deepest chain of any intermediate state (reads during the run).
template <typename Policy>
Outcome Replay(int n, Policy policy, const std::vector<uint64_t>& key,
               const std::vector<std::vector<uint64_t>>& delta) {
  std::vector<int> ref(n, -1);
  int reencodes = 0, max_depth_during = 0;
  for (int newest = 1; newest < n; ++newest) {
    for (int v = 0; v < newest; ++v) {
      const int r = policy(v, newest, ref);
      if (r != ref[v]) {
        ref[v] = r;
        ++reencodes;
      }
    }
    for (int v = 0; v <= newest; ++v) {
      int d = 0;
      for (int u = v; ref[u] >= 0; u = ref[u]) ++d;
      max_depth_during = std::max(max_depth_during, d);
    }
  }
  Outcome o = Evaluate(ref, key, delta);
  o.reencodes = reencodes;
  o.max_depth_during = max_depth_during;
  return o;
}

// The store's rule: demote the newest's predecessor when the chain through
// it stays within k deltas.
Outcome ChainPolicy(int n, int k, const std::vector<uint64_t>& key, const std::vector<std::vector<uint64_t>>& delta) {
  return Replay(
      n,
      [k](int v, int newest, const std::vector<int>& ref) {
        if (v != newest - 1 || ref[v] >= 0) return ref[v];
        // Deltas already hanging below v (its chain of older versions).
        int below = 0;
        for (int u = v - 1; u >= 0 && ref[u] == u + 1; --u) ++below;
        return below + 1 <= k ? newest : -1;
      },
      key, delta);
}

int LowBit(int x) { return x & -x; }

// v + lowbit(v) in 1-based numbering, for 0-based v.
int SkipTarget(int v) { return (v + 1) + LowBit(v + 1) - 1; }

// Re-encoded against the newest at every arrival until its target exists.
Outcome SkipPolicy(int n, const std::vector<uint64_t>& key, const std::vector<std::vector<uint64_t>>& delta) {
  return Replay(
      n, [](int v, int newest, const std::vector<int>&) { return std::min(SkipTarget(v), newest); }, key, delta);
}

// Encoded at most twice: demoted against its successor when that arrives
// (as the chain does), re-based against its target when that arrives.
Outcome SkipTwicePolicy(int n, const std::vector<uint64_t>& key, const std::vector<std::vector<uint64_t>>& delta) {
  return Replay(
      n, [](int v, int newest, const std::vector<int>&) { return SkipTarget(v) <= newest ? SkipTarget(v) : v + 1; },
      key, delta);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chain_policy_bench: chain-depth policies on checkpoint series"};
  std::vector<std::string> dirs;
  std::string file = "model.safetensors";
  size_t threads = 0;
  int extrapolate = 0;
  app.add_option("DIR", dirs, "checkpoint series directories")->required();
  app.add_option("--file", file, "file name inside each checkpoint directory (safetensors)");
  app.add_option("--threads", threads, "encode threads (0: all cores)");
  app.add_option("--extrapolate", extrapolate, "also model a run of this many versions from the sizes by distance");
  CLI11_PARSE(app, argc, argv);

  tpde::ThreadPool pool(threads);
  const tpde::LayoutOptions layout;
  for (const std::string& dir : dirs) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_directory() && fs::exists(e.path() / file)) names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end(),  // natural order: checkpoint-900 < checkpoint-1000
              [](const std::string& a, const std::string& b) { return ::strverscmp(a.c_str(), b.c_str()) < 0; });
    std::vector<Version> versions;
    for (const std::string& name : names) versions.push_back(Load(fs::path(dir) / name / file, layout));
    const int n = static_cast<int>(versions.size());
    if (n < 2) Die(dir + ": fewer than two versions of " + file);
    for (int v = 1; v < n; ++v) {
      if (!SameLayout(versions[v], versions[0])) Die(dir + ": " + versions[v].name + " has another layout");
    }

    std::vector<uint64_t> key(n);
    std::vector<std::vector<uint64_t>> delta(n, std::vector<uint64_t>(n, 0));
    for (int v = 0; v < n; ++v) {
      key[v] = EncodedBytes(versions[v], nullptr, &pool);
      for (int r = 0; r < n; ++r) {
        if (r != v) delta[v][r] = EncodedBytes(versions[v], &versions[r], &pool);
      }
    }
    const uint64_t logical = versions[0].bytes.size() * n;

    fmt::print("{}: {} x {} versions, {:.2f} MB each\n", fs::path(dir).filename().string(), file, n,
               versions[0].bytes.size() / 1e6);
    fmt::print("  delta size / keyframe size, by distance (mean over pairs, both directions)\n");
    double key_mean = 0;
    for (uint64_t k : key) key_mean += double(k) / n;
    std::vector<double> distance_ratio(n, 1.0);
    for (int d = 1; d < n; ++d) {
      double sum = 0;
      int pairs = 0;
      for (int v = 0; v + d < n; ++v) {
        sum += delta[v][v + d] + delta[v + d][v];
        pairs += 2;
      }
      distance_ratio[d] = sum / pairs / key_mean;
      fmt::print("    distance {:>2}: {:.3f}\n", d, distance_ratio[d]);
    }
    fmt::print("  {:<12} {:>12} {:>8} {:>10} {:>11} {:>10} {:>10}\n", "policy", "stored MB", "ratio", "max depth",
               "mean depth", "re-encodes", "max during");
    auto row = [&](const std::string& name, const Outcome& o) {
      fmt::print("  {:<12} {:>12.3f} {:>7.3f}x {:>10} {:>11.2f} {:>10} {:>10}\n", name, o.stored / 1e6,
                 double(logical) / o.stored, o.max_depth, o.mean_depth, o.reencodes, o.max_depth_during);
    };
    Outcome keyframes;
    for (uint64_t k : key) keyframes.stored += k;
    row("keyframes", keyframes);
    for (int k : {1, 2, 4, 8}) row(fmt::format("chain {}", k), ChainPolicy(n, k, key, delta));
    row("skip", SkipPolicy(n, key, delta));
    row("skip twice", SkipTwicePolicy(n, key, delta));
    if (extrapolate > n) {
      // The measured mean size by distance, extended linearly from its last
      // two distances and capped at a keyframe: a model, not a measurement.
      // A delta never shrinks with distance in the model (a measured dip is
      // noise), so the slope is at least 0.
      std::vector<double> by_distance(extrapolate, 1.0);
      for (int d = 1; d < n; ++d) by_distance[d] = distance_ratio[d];
      const double slope = n > 2 ? std::max(0.0, distance_ratio[n - 1] - distance_ratio[n - 2]) : 0;
      for (int d = n; d < extrapolate; ++d) by_distance[d] = std::min(1.0, by_distance[d - 1] + slope);
      std::vector<uint64_t> mkey(extrapolate, 1000000);
      std::vector<std::vector<uint64_t>> mdelta(extrapolate, std::vector<uint64_t>(extrapolate, 0));
      for (int v = 0; v < extrapolate; ++v) {
        for (int r = 0; r < extrapolate; ++r) mdelta[v][r] = static_cast<uint64_t>(1e6 * by_distance[std::abs(v - r)]);
      }
      fmt::print("  model of {} versions (sizes by distance as measured, extended linearly; keyframe = 1.000)\n",
                 extrapolate);
      fmt::print("  {:<12} {:>12} {:>8} {:>10} {:>11} {:>10} {:>10}\n", "policy", "per version", "", "max depth",
                 "mean depth", "re-encodes", "max during");
      auto mrow = [&](const std::string& name, const Outcome& o) {
        fmt::print("  {:<12} {:>12.3f} {:>8} {:>10} {:>11.2f} {:>10} {:>10}\n", name, o.stored / 1e6 / extrapolate, "",
                   o.max_depth, o.mean_depth, o.reencodes, o.max_depth_during);
      };
      for (int k : {4, 8, 16}) mrow(fmt::format("chain {}", k), ChainPolicy(extrapolate, k, mkey, mdelta));
      mrow("skip", SkipPolicy(extrapolate, mkey, mdelta));
      mrow("skip twice", SkipTwicePolicy(extrapolate, mkey, mdelta));
    }
  }
  return 0;
}
