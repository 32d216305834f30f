// GPU chain decoder: its output equals the CPU decoder's byte for byte, and
// corrupt input gives an error status, never output. Skips (with a message)
// on a machine without a CUDA device or a build without CUDA.
#include "kernels/gpu_chain_decoder.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "codec/checksum.h"
#include "codec/thread_pool.h"
#include "store/store.h"
#include "store/tree_io.h"
#include "tests/test_util.h"

namespace tpde {
namespace {

namespace fs = std::filesystem;

// One encoded chunk version.
struct Version {
  std::vector<uint8_t> bytes;
  ChunkRecord rec;
  std::string payload;
};

// A series of versions of one chunk, each encoded against the one before
// (or as a keyframe), and the chain requests that rebuild each version.
struct Series {
  int width = 0;
  std::vector<Version> versions;
  std::vector<std::vector<ChainLink>> chains;  // per version: keyframe first
  std::vector<std::vector<uint8_t>> out_cpu, out_gpu;
};

enum class Step { kSparseRandom, kSparseRuns, kDense, kSame, kKey };

// Builds a series of `count` elements of `width` bytes through `steps`.
Series MakeSeries(std::mt19937_64& rng, int width, size_t count, const std::vector<Step>& steps) {
  Series s;
  s.width = width;
  ChunkScratch scratch;
  std::vector<uint8_t> cur(count * width);
  for (auto& b : cur) b = static_cast<uint8_t>(rng());
  const uint64_t mask = width == 8 ? ~0ull : (1ull << (8 * width)) - 1;
  auto add = [&](size_t e, uint64_t d) {
    uint64_t v = 0;
    std::memcpy(&v, &cur[e * width], width);
    v = (v + d) & mask;
    std::memcpy(&cur[e * width], &v, width);
  };
  for (size_t i = 0; i <= steps.size(); ++i) {
    const Step step = i == 0 ? Step::kKey : steps[i - 1];
    switch (count == 0 ? Step::kSame : step) {
      case Step::kSparseRandom:
        for (size_t k = 0; k < count / 50 + 1; ++k) add(rng() % count, 1 + rng() % 7);
        break;
      case Step::kSparseRuns: {
        const size_t start = count ? rng() % count : 0;
        for (size_t e = start; e < std::min(count, start + count / 10 + 1); ++e) add(e, (rng() % 2) ? 1 : mask);
        break;
      }
      case Step::kDense:
        for (size_t e = 0; e < count; ++e) add(e, (rng() % 5) + mask - 1);
        break;
      case Step::kSame:
        break;
      case Step::kKey:
        for (auto& b : cur) b = static_cast<uint8_t>(rng());
        break;
    }
    Version v;
    v.bytes = cur;
    const uint8_t* ref = (i == 0 || (step == Step::kKey && count > 0)) ? nullptr : s.versions.back().bytes.data();
    EncodeChunk(cur.data(), ref, static_cast<uint32_t>(count), width, ChunkEncodeOptions(), &scratch, &v.rec,
                &v.payload);
    s.versions.push_back(std::move(v));
  }
  for (size_t i = 0; i < s.versions.size(); ++i) {
    size_t key = i;
    while (s.versions[key].rec.mode != ChunkMode::kKey) --key;
    std::vector<ChainLink> links;
    for (size_t j = key; j <= i; ++j) links.push_back({&s.versions[j].rec, s.versions[j].payload});
    s.chains.push_back(std::move(links));
  }
  s.out_cpu.assign(s.versions.size(), {});
  s.out_gpu.assign(s.versions.size(), {});
  return s;
}

class GpuChainDecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GpuDecoderOptions o;
    o.pool = &pool_;
    OpenDecoder(o);
  }
  void OpenDecoder(GpuDecoderOptions o) {
    gpu_.reset();
    Status s = GpuChainDecoder::Open(o, &gpu_);
    if (s.code() == Status::Code::kNotSupported) GTEST_SKIP() << "no GPU here: " << s.ToString();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Decodes every version of every series on both decoders, one batch
  // each, and compares the outputs with each other and with the bytes.
  void DecodeAndCompare(std::vector<Series>& all) {
    std::vector<ChainRequest> cpu_req, gpu_req;
    for (Series& s : all) {
      for (size_t i = 0; i < s.versions.size(); ++i) {
        s.out_cpu[i].assign(s.versions[i].bytes.size(), 0xAA);
        s.out_gpu[i].assign(s.versions[i].bytes.size(), 0x55);
        cpu_req.push_back({s.chains[i].data(), static_cast<uint32_t>(s.chains[i].size()), s.out_cpu[i].data()});
        gpu_req.push_back({s.chains[i].data(), static_cast<uint32_t>(s.chains[i].size()), s.out_gpu[i].data()});
      }
    }
    std::vector<Status> cpu_st(cpu_req.size()), gpu_st(gpu_req.size());
    ASSERT_TRUE(NewCpuChainDecoder(&pool_)->DecodeBatch(cpu_req.data(), cpu_req.size(), cpu_st.data()).ok());
    Status s = gpu_->DecodeBatch(gpu_req.data(), gpu_req.size(), gpu_st.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (Series& se : all) {
      for (size_t i = 0; i < se.versions.size(); ++i) {
        ASSERT_EQ(se.out_cpu[i], se.versions[i].bytes) << "width " << se.width << " version " << i;
        ASSERT_EQ(se.out_gpu[i], se.out_cpu[i]) << "width " << se.width << " version " << i << " of "
                                                << se.versions[i].bytes.size() / se.width << " elements";
      }
    }
    EXPECT_TRUE(gpu_->stats().gpu_enabled);
  }

  ThreadPool pool_{4};
  std::unique_ptr<GpuChainDecoder> gpu_;
};

// Every width; sizes 0, 1, odd, around a dense tile (4096 elements) and
// just above a 1 MiB chunk of fp32; chains of depth 1 to 16 mixing sparse
// (both gap codings), dense, SAME and mid-chain keyframes.
TEST_F(GpuChainDecoderTest, RandomChainsEqualTheCpuDecoder) {
  std::mt19937_64 rng(42);
  const std::vector<Step> pattern = {Step::kSparseRandom, Step::kDense, Step::kSame, Step::kSparseRuns,
                                     Step::kSparseRandom, Step::kKey,   Step::kDense, Step::kSparseRuns,
                                     Step::kSame,         Step::kDense, Step::kSparseRandom, Step::kSparseRuns,
                                     Step::kDense,        Step::kSame,  Step::kSparseRandom, Step::kDense};
  std::vector<Series> all;
  std::set<std::pair<int, int>> modes;  // (mode, gap coding) seen
  for (int width : {1, 2, 4, 8}) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{15}, size_t{17}, size_t{4095}, size_t{4097}, size_t{100003},
                         size_t{262145}}) {
      all.push_back(MakeSeries(rng, width, count, pattern));
      for (const Version& v : all.back().versions) {
        modes.insert({static_cast<int>(v.rec.mode), static_cast<int>(v.rec.gap_coding)});
      }
    }
  }
  DecodeAndCompare(all);
  EXPECT_TRUE(modes.count({int(ChunkMode::kDeltaSparse), int(GapCoding::kEliasDelta)}));
  EXPECT_TRUE(modes.count({int(ChunkMode::kDeltaSparse), int(GapCoding::kBytePlanes)}));
  EXPECT_TRUE(modes.count({int(ChunkMode::kDeltaDense), 0}));
  EXPECT_TRUE(modes.count({int(ChunkMode::kSame), 0}));
}

// Many small GPU batches: the two-slot pipeline hands every batch out.
TEST_F(GpuChainDecoderTest, ManyBatchesThroughThePipeline) {
  GpuDecoderOptions o;
  o.pool = &pool_;
  o.batch_bytes = 1 << 20;
  o.staging_bytes = 3 << 20;
  OpenDecoder(o);
  if (!gpu_) return;
  std::mt19937_64 rng(7);
  std::vector<Series> all;
  for (int i = 0; i < 24; ++i) {
    all.push_back(MakeSeries(rng, 2 << (i % 3), 60000 + i * 1000, {Step::kDense, Step::kSparseRandom, Step::kDense}));
  }
  DecodeAndCompare(all);
}

// A flipped payload byte, a wrong reference, and gaps that point outside
// the chunk each give that request an error and leave the others whole.
TEST_F(GpuChainDecoderTest, CorruptInputIsAnErrorNeverOutput) {
  std::mt19937_64 rng(3);
  Series a = MakeSeries(rng, 4, 5000, {Step::kDense, Step::kSparseRandom});
  Series b = MakeSeries(rng, 4, 5000, {Step::kDense});

  // 1: a flipped byte in the dense delta's payload.
  std::vector<ChainLink> flipped = a.chains[1];
  std::string bad_payload(flipped[1].payload);
  bad_payload[bad_payload.size() / 2] ^= 1;
  flipped[1].payload = bad_payload;
  // 2: a's delta applied to b's keyframe (every hash of the links is right).
  std::vector<ChainLink> wrong_ref = {b.chains[0][0], a.chains[1][1]};
  // 3: a DELTA_SPARSE link whose byte-planed gaps run past the chunk, with
  // a payload hash that matches (raw streams).
  ChunkRecord sparse;
  sparse.mode = ChunkMode::kDeltaSparse;
  sparse.width = 4;
  sparse.num_streams = 5;
  sparse.gap_coding = GapCoding::kBytePlanes;
  sparse.elem_count = 5000;
  sparse.nnz = 2;
  sparse.gap_bytes = 8;
  std::string raw(8 + 8, '\0');
  raw[0] = 1;                      // gap 1: position 0
  raw[1] = static_cast<char>(0x10);  // gap 0x10 + 0x30 << 8: position past 5000
  raw[3] = 0x30;                    // byte 1 of gap 1 (planes of nnz bytes each)
  for (int st = 0; st < 5; ++st) sparse.stream_bytes[st] = st == 0 ? 8 : 2;
  sparse.payload_hash = Checksum(raw.data(), raw.size());
  sparse.content_hash = 0;
  std::vector<ChainLink> bad_gaps = {a.chains[0][0], {&sparse, raw}};

  std::vector<uint8_t> out[4];
  for (auto& o : out) o.assign(5000 * 4, 0);
  std::vector<ChainRequest> req = {{flipped.data(), 2, out[0].data()},
                                   {wrong_ref.data(), 2, out[1].data()},
                                   {bad_gaps.data(), 2, out[2].data()},
                                   {a.chains[2].data(), 3, out[3].data()}};
  std::vector<Status> st(req.size());
  EXPECT_FALSE(gpu_->DecodeBatch(req.data(), req.size(), st.data()).ok());
  EXPECT_TRUE(st[0].IsCorruption()) << st[0].ToString();
  EXPECT_TRUE(st[1].IsCorruption()) << st[1].ToString();
  EXPECT_TRUE(st[2].IsCorruption()) << st[2].ToString();
  EXPECT_TRUE(st[3].ok()) << st[3].ToString();
  EXPECT_EQ(out[3], a.versions[2].bytes);
  // Chains that failed before the GPU wrote nothing out (a content
  // mismatch is found in the caller's buffer: its status says so).
  EXPECT_EQ(out[0], std::vector<uint8_t>(5000 * 4, 0));
  EXPECT_EQ(out[2], std::vector<uint8_t>(5000 * 4, 0));
  // A malformed chain (a delta first) is InvalidArgument.
  std::vector<ChainLink> headless = {a.chains[1][1]};
  ChainRequest r{headless.data(), 1, out[0].data()};
  Status one;
  EXPECT_FALSE(gpu_->DecodeBatch(&r, 1, &one).ok());
  EXPECT_TRUE(one.IsInvalidArgument()) << one.ToString();
}

// The real series of tests/data through a store whose batched decoder is
// the GPU's: every file exported equals its source byte for byte.
TEST_F(GpuChainDecoderTest, RealSeriesThroughTheStore) {
  // The GPU machine runs this binary from another checkout path.
  const fs::path data = std::getenv("TPDE_TEST_DATA") ? std::getenv("TPDE_TEST_DATA") : TPDE_TEST_DATA_DIR;
  test::TempDir dir;
  StoreOptions options;
  options.chain_decoder = std::shared_ptr<ChainDecoder>(gpu_.release());
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open((dir.path() / "store").string(), options, &store).ok());
  Inode root;
  ASSERT_TRUE(store->Resolve("", &root).ok());
  ASSERT_TRUE(ImportTree(store.get(), data.string(), root.ino, nullptr).ok());
  ASSERT_TRUE(store->CollectGarbage().ok());
  const fs::path out = dir.path() / "out";
  ASSERT_TRUE(ExportTree(store.get(), root, out.string(), nullptr).ok());
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(data)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), data);
    EXPECT_TRUE(test::ReadFile(e.path()) == test::ReadFile(out / rel)) << rel << " differs";
    ++files;
  }
  EXPECT_GT(files, 10);
  auto* gpu = static_cast<GpuChainDecoder*>(options.chain_decoder.get());
  EXPECT_GT(gpu->stats().gpu_bytes, 0u);
  EXPECT_TRUE(gpu->stats().gpu_enabled);
}

}  // namespace
}  // namespace tpde
