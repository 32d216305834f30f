#include "codec/chunk.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tests/test_util.h"

namespace tpde {
namespace {

struct Encoded {
  ChunkRecord rec;
  std::string payload;
};

Encoded Encode(const std::string& cur, const std::string* ref, int width) {
  ChunkScratch scratch;
  Encoded e;
  EncodeChunk(reinterpret_cast<const uint8_t*>(cur.data()),
              ref ? reinterpret_cast<const uint8_t*>(ref->data()) : nullptr,
              static_cast<uint32_t>(cur.size() / width), width, ChunkEncodeOptions(), &scratch, &e.rec, &e.payload);
  return e;
}

// Decodes `e` on top of `ref` (or nothing) and returns the bytes.
std::string Decode(const Encoded& e, const std::string* ref, Status* status) {
  ChunkScratch scratch;
  std::string buf = ref ? *ref : std::string(e.rec.content_bytes(), '\0');
  *status = DecodeChunk(e.rec, e.payload, reinterpret_cast<uint8_t*>(buf.data()), &scratch);
  return buf;
}

// Round-trips through record serialization too.
void ExpectRoundTrip(const std::string& cur, const std::string* ref, int width, ChunkMode expect_mode) {
  Encoded e = Encode(cur, ref, width);
  EXPECT_EQ(e.rec.mode, expect_mode) << "width " << width << " bytes " << cur.size();
  std::string wire;
  SerializeChunkRecord(e.rec, &wire);
  ASSERT_EQ(wire.size(), kChunkRecordBytes);
  Encoded parsed{{}, e.payload};
  ASSERT_TRUE(ParseChunkRecord(wire, &parsed.rec).ok());
  Status s;
  const std::string out = Decode(parsed, ref, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(out == cur) << "decoded bytes differ; width " << width << " bytes " << cur.size();
}

class ChunkWidth : public ::testing::TestWithParam<int> {};

TEST_P(ChunkWidth, KeyframeRoundTripsAtEverySize) {
  const int w = GetParam();
  std::mt19937_64 rng(w);
  for (size_t n : {0, 1, 7, 4097, 65537}) {
    ExpectRoundTrip(test::RandomBytes(rng, n * w), nullptr, w, ChunkMode::kKey);
  }
}

TEST_P(ChunkWidth, IdenticalChunkIsSame) {
  const int w = GetParam();
  std::mt19937_64 rng(w + 10);
  const std::string ref = test::RandomBytes(rng, 1000 * w);
  ExpectRoundTrip(ref, &ref, w, ChunkMode::kSame);
  Encoded e = Encode(ref, &ref, w);
  EXPECT_TRUE(e.payload.empty());
}

TEST_P(ChunkWidth, FewChangesAreSparse) {
  const int w = GetParam();
  std::mt19937_64 rng(w + 20);
  const std::string ref = test::RandomBytes(rng, 50000 * w);
  std::string cur = ref;
  test::Perturb(rng, &cur, w, 0.01);
  ExpectRoundTrip(cur, &ref, w, ChunkMode::kDeltaSparse);
  EXPECT_LT(Encode(cur, &ref, w).payload.size(), cur.size() / 20);
}

TEST_P(ChunkWidth, ManySmallChangesAreDense) {
  const int w = GetParam();
  if (w == 1) GTEST_SKIP() << "a byte-wide small step is not cheaper than the byte itself";
  std::mt19937_64 rng(w + 30);
  const std::string ref = test::RandomBytes(rng, 50000 * w);
  std::string cur = ref;
  test::Perturb(rng, &cur, w, 1.0);
  ExpectRoundTrip(cur, &ref, w, ChunkMode::kDeltaDense);
}

TEST_P(ChunkWidth, UnrelatedReferenceFallsBackToKey) {
  const int w = GetParam();
  std::mt19937_64 rng(w + 40);
  std::string ref = test::RandomBytes(rng, 20000 * w);
  std::string cur(20000 * w, '\0');  // compressible as a keyframe, far from ref
  ExpectRoundTrip(cur, &ref, w, ChunkMode::kKey);
}

TEST_P(ChunkWidth, WrappingDifferencesRoundTrip) {
  const int w = GetParam();
  std::string ref(4096 * w, '\xff');
  std::string cur(4096 * w, '\0');
  for (size_t i = 0; i < cur.size(); i += 3 * w) cur[i] = '\x01';
  Encoded e = Encode(cur, &ref, w);
  Status s;
  EXPECT_EQ(Decode(e, &ref, &s), cur);
  EXPECT_TRUE(s.ok());
}

INSTANTIATE_TEST_SUITE_P(Widths, ChunkWidth, ::testing::Values(1, 2, 4, 8));

TEST(Chunk, CorruptPayloadIsDetectedNotReturned) {
  std::mt19937_64 rng(7);
  const std::string ref = test::RandomBytes(rng, 40000);
  std::string cur = ref;
  test::Perturb(rng, &cur, 4, 0.02);
  for (const std::string* r : {static_cast<const std::string*>(nullptr), &ref}) {
    Encoded e = Encode(cur, r, 4);
    ASSERT_FALSE(e.payload.empty());
    Encoded bad = e;
    bad.payload[bad.payload.size() / 2] ^= 0x40;
    Status s;
    Decode(bad, r, &s);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    bad = e;
    bad.payload.pop_back();
    Decode(bad, r, &s);
    EXPECT_TRUE(s.IsCorruption());
  }
}

TEST(Chunk, WrongReferenceFailsTheContentChecksum) {
  std::mt19937_64 rng(8);
  const std::string ref = test::RandomBytes(rng, 40000);
  std::string cur = ref;
  test::Perturb(rng, &cur, 4, 0.02);
  Encoded e = Encode(cur, &ref, 4);
  std::string other = ref;
  other[100] ^= 1;
  Status s;
  Decode(e, &other, &s);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("decoded chunk checksum"), std::string::npos);
}

TEST(Chunk, RecordParserRejectsNonsense) {
  ChunkRecord r;
  std::string wire;
  SerializeChunkRecord(r, &wire);
  std::string bad = wire;
  bad[0] = 9;  // mode
  EXPECT_TRUE(ParseChunkRecord(bad, &r).IsCorruption());
  bad = wire;
  bad[1] = 3;  // width
  EXPECT_TRUE(ParseChunkRecord(bad, &r).IsCorruption());
  bad = wire;
  bad[2] = 5;  // streams for KEY width 1
  EXPECT_TRUE(ParseChunkRecord(bad, &r).IsCorruption());
  EXPECT_TRUE(ParseChunkRecord(wire.substr(0, 50), &r).IsCorruption());
}

}  // namespace
}  // namespace tpde
