// ChainBundle: a laid-out bundle parses back to the same chains and decodes
// to the source bytes; damaged bundles are Corruption, never out-of-bounds
// views.
#include "codec/chain_bundle.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace tpde {
namespace {

struct Built {
  std::vector<std::vector<uint8_t>> versions;  // chunk 0's versions, chunk 1 is a keyframe
  std::vector<ChunkRecord> recs;
  std::vector<std::string> payloads;
  std::vector<uint8_t> bundle;
  uint64_t file_bytes = 0;
};

// Two chunks: chunk 0 a chain keyframe + 2 deltas (fp32-like), chunk 1 a
// keyframe of 1-byte elements.
Built Build() {
  Built b;
  std::mt19937 rng(5);
  ChunkScratch scratch;
  std::vector<uint8_t> v(4000 * 4);
  for (auto& x : v) x = static_cast<uint8_t>(rng());
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      for (size_t e = 0; e < v.size(); e += 4 * 7) v[e] ^= static_cast<uint8_t>(1 + rng() % 3);
    }
    b.versions.push_back(v);
  }
  b.recs.resize(4);
  b.payloads.resize(4);
  for (int i = 0; i < 3; ++i) {
    EncodeChunk(b.versions[i].data(), i == 0 ? nullptr : b.versions[i - 1].data(), 4000, 4, ChunkEncodeOptions(),
                &scratch, &b.recs[i], &b.payloads[i]);
  }
  std::vector<uint8_t> tail(777, 'x');
  EncodeChunk(tail.data(), nullptr, 777, 1, ChunkEncodeOptions(), &scratch, &b.recs[3], &b.payloads[3]);
  b.versions.push_back(tail);

  ChainBundleLayout layout;
  const ChunkRecord* chain0[] = {&b.recs[0], &b.recs[1], &b.recs[2]};
  const ChunkRecord* chain1[] = {&b.recs[3]};
  layout.AddChunk(0, chain0, 3);
  layout.AddChunk(4000 * 4, chain1, 1);
  b.file_bytes = 4000 * 4 + 777;
  b.bundle.resize(layout.total_bytes());
  layout.WriteTables(b.file_bytes, b.bundle.data());
  EXPECT_EQ(layout.tables_bytes(), layout.PayloadOffset(0, 0));
  for (uint32_t l = 0; l < 3; ++l) {
    std::memcpy(b.bundle.data() + layout.PayloadOffset(0, l), b.payloads[l].data(), b.payloads[l].size());
  }
  std::memcpy(b.bundle.data() + layout.PayloadOffset(1, 0), b.payloads[3].data(), b.payloads[3].size());
  return b;
}

std::string_view View(const std::vector<uint8_t>& v) {
  return std::string_view(reinterpret_cast<const char*>(v.data()), v.size());
}

TEST(ChainBundle, RoundTripDecodesToTheSourceBytes) {
  Built b = Build();
  ParsedChainBundle p;
  Status s = ParseChainBundle(View(b.bundle), &p);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.file_bytes, b.file_bytes);
  EXPECT_EQ(p.chunks[0].num_links, 3u);
  EXPECT_EQ(p.chunks[1].file_offset, 16000u);
  ChunkScratch scratch;
  std::vector<uint8_t> out(16000);
  ASSERT_TRUE(DecodeChain(p.Request(0, out.data()), &scratch).ok());
  EXPECT_EQ(out, b.versions[2]);
  out.assign(777, 0);
  ASSERT_TRUE(DecodeChain(p.Request(1, out.data()), &scratch).ok());
  EXPECT_EQ(out, b.versions[3]);
}

TEST(ChainBundle, DamagedBundlesAreCorruption) {
  const Built b = Build();
  ParsedChainBundle p;
  // Truncated anywhere.
  for (size_t n : {size_t{0}, size_t{47}, size_t{48}, size_t{100}, b.bundle.size() - 1}) {
    std::vector<uint8_t> t(b.bundle.begin(), b.bundle.begin() + n);
    EXPECT_TRUE(ParseChainBundle(View(t), &p).IsCorruption()) << n;
  }
  // A flipped byte in the header or tables: Corruption or, where the tables
  // still line up, a bundle whose payload hashes catch it (never a crash).
  for (size_t i = 0; i < 48 + 2 * 16 + 4 * kChainBundleLinkBytes; ++i) {
    std::vector<uint8_t> t = b.bundle;
    t[i] ^= 0x80;
    Status s = ParseChainBundle(View(t), &p);
    if (s.ok()) {
      ChunkScratch scratch;
      std::vector<uint8_t> out(16000);
      Status d = DecodeChain(p.Request(0, out.data()), &scratch);
      EXPECT_TRUE(!d.ok() || out == b.versions[2]) << "byte " << i;
    } else {
      EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    }
  }
  // Chunks that leave a hole in the file.
  std::vector<uint8_t> t = b.bundle;
  t[48 + 16] ^= 1;  // chunk 1's file offset
  EXPECT_TRUE(ParseChainBundle(View(t), &p).IsCorruption());
}

}  // namespace
}  // namespace tpde
