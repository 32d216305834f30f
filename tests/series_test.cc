// The real checkpoint series in tests/data (written by HF Trainer): import,
// export, compare every byte; and check the stored size against the "best"
// lossless baseline of ../shared/data/README.md, recomputed here
// independently of the codec: per tensor, the smallest of byte planes,
// zigzag integer difference in byte planes, and sparse (changed positions +
// changed values in byte planes), each stream zstd level 3, whole tensors.
#include <gtest/gtest.h>
#include <zstd.h>

#include <filesystem>
#include <map>

#include "codec/safetensors.h"
#include "store/store.h"
#include "store/tree_io.h"
#include "tests/test_util.h"

namespace tpde {
namespace {

namespace fs = std::filesystem;

const fs::path kData = TPDE_TEST_DATA_DIR;

size_t Zstd(const std::string& s) {
  if (s.empty()) return 0;
  std::string out(ZSTD_compressBound(s.size()), '\0');
  return std::min(s.size(), ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3));
}

size_t PlanesCost(const std::vector<uint64_t>& v, int width) {
  size_t total = 0;
  for (int i = 0; i < width; ++i) {
    std::string plane(v.size(), '\0');
    for (size_t e = 0; e < v.size(); ++e) plane[e] = static_cast<char>(v[e] >> (8 * i));
    total += Zstd(plane);
  }
  return total;
}

std::vector<uint64_t> Elements(const std::string& file, uint64_t begin, uint64_t end, int width) {
  std::vector<uint64_t> v((end - begin) / width);
  for (size_t e = 0; e < v.size(); ++e) {
    uint64_t x = 0;
    for (int i = 0; i < width; ++i) x |= uint64_t{static_cast<unsigned char>(file[begin + e * width + i])} << (8 * i);
    v[e] = x;
  }
  return v;
}

// Baseline bytes for `file` given the previous checkpoint `prev` ("" for none).
size_t BestBaseline(const std::string& file, const std::string& prev) {
  SafetensorsHeader h, ph;
  EXPECT_TRUE(ParseSafetensorsHeader(file, file.size(), &h).ok());
  std::map<std::string, TensorInfo> prev_tensors;
  if (!prev.empty() && ParseSafetensorsHeader(prev, prev.size(), &ph).ok()) {
    for (const auto& t : ph.tensors) prev_tensors[t.name] = t;
  }
  size_t total = Zstd(file.substr(0, h.data_start));
  for (const auto& t : h.tensors) {
    const int w = static_cast<int>(DTypeWidth(t.dtype));
    const auto cur = Elements(file, h.data_start + t.begin, h.data_start + t.end, w);
    size_t best = PlanesCost(cur, w);
    auto it = prev_tensors.find(t.name);
    if (it != prev_tensors.end() && it->second.dtype == t.dtype && it->second.shape == t.shape) {
      const auto ref = Elements(prev, ph.data_start + it->second.begin, ph.data_start + it->second.end, w);
      const uint64_t mask = w == 8 ? ~0ull : (1ull << (8 * w)) - 1;
      std::vector<uint64_t> zz(cur.size()), gaps, changed;
      uint64_t last = 0;
      for (size_t e = 0; e < cur.size(); ++e) {
        const uint64_t d = (cur[e] - ref[e]) & mask;
        const uint64_t sign = (d >> (8 * w - 1)) & 1;
        zz[e] = ((d << 1) ^ (sign ? mask : 0)) & mask;
        if (d != 0) {
          gaps.push_back(e + 1 - last);
          last = e + 1;
          changed.push_back(zz[e]);
        }
      }
      best = std::min(best, PlanesCost(zz, w));
      best = std::min(best, PlanesCost(gaps, 4) + PlanesCost(changed, w));
    }
    total += best;
  }
  return total;
}

TEST(RealSeries, ImportThenExportIsByteIdenticalAndMeetsTheBestBaseline) {
  ASSERT_TRUE(fs::is_directory(kData)) << kData;
  test::TempDir dir;
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open((dir.path() / "store").string(), StoreOptions(), &store).ok());
  Inode root;
  ASSERT_TRUE(store->Resolve("", &root).ok());
  size_t files = 0;
  Status s = ImportTree(store.get(), kData.string(), root.ino, [&](const std::string&, const IngestResult&) { ++files; });
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_GT(files, 30u);

  const fs::path out = dir.path() / "export";
  ASSERT_TRUE(ExportTree(store.get(), root, out.string(), nullptr).ok());
  size_t compared = 0;
  for (const auto& e : fs::recursive_directory_iterator(kData)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), kData);
    ASSERT_TRUE(fs::exists(out / rel)) << rel;
    EXPECT_TRUE(test::ReadFile(e.path()) == test::ReadFile(out / rel)) << rel << " differs";
    ++compared;
  }
  EXPECT_EQ(compared, files);

  for (const char* series : {"A-pretrain-fp32", "B-finetune-bf16"}) {
    StoreStats st;
    ASSERT_TRUE(store->Stats(series, &st).ok());
    std::vector<std::pair<std::string, const FileStats*>> models;
    for (const auto& f : st.per_file) {
      if (f.path.ends_with("model.safetensors")) models.emplace_back(f.path, &f);
    }
    std::sort(models.begin(), models.end(), [](const auto& a, const auto& b) { return NaturalLess(a.first, b.first); });
    uint64_t logical = 0, stored = 0, baseline = 0;
    std::string prev;
    for (const auto& [path, f] : models) {
      const std::string file = test::ReadFile(kData / path);
      logical += file.size();
      stored += f->stored_bytes;
      baseline += BestBaseline(file, prev);
      prev = file;
    }
    const double ratio = double(logical) / stored, best = double(logical) / baseline;
    std::printf("%s: %zu checkpoints, tpde %.3fx, best baseline %.3fx\n", series, models.size(), ratio, best);
    EXPECT_GE(ratio, best / 1.05) << series;
  }
  VerifyReport r;
  ASSERT_TRUE(store->Verify(&r).ok());
  EXPECT_TRUE(r.errors.empty());
}

}  // namespace
}  // namespace tpde
