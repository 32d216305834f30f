#include "codec/elias_delta.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace tpde::internal {
namespace {

std::vector<uint32_t> RoundTrip(const std::vector<uint32_t>& positions, uint32_t limit) {
  std::string bits;
  EliasDeltaEncodeGaps(positions.data(), positions.size(), &bits);
  std::vector<uint32_t> out(positions.size());
  Status s = EliasDeltaDecodeGaps(bits, positions.size(), limit, out.data());
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(EliasDelta, KnownCodes) {
  // Gaps 1, 2, 17: codes "1", "0100", "001010001" (Elias 1975, table).
  std::string bits;
  const uint32_t positions[] = {0, 2, 19};
  EliasDeltaEncodeGaps(positions, 3, &bits);
  ASSERT_EQ(bits.size(), 2u);  // 1 + 4 + 9 = 14 bits
  EXPECT_EQ(static_cast<uint8_t>(bits[0]), 0b10100001);
  EXPECT_EQ(static_cast<uint8_t>(bits[1]), 0b01000100);
}

TEST(EliasDelta, RoundTripsDenseSparseAndExtremeGaps) {
  std::mt19937_64 rng(1);
  for (double density : {1.0, 0.5, 0.01, 0.0001}) {
    std::vector<uint32_t> pos;
    std::bernoulli_distribution pick(density);
    for (uint32_t i = 0; i < 200000; ++i) {
      if (pick(rng)) pos.push_back(i);
    }
    EXPECT_EQ(RoundTrip(pos, 200000), pos) << density;
  }
  std::vector<uint32_t> extreme = {0xFFFFFFFEu};
  EXPECT_EQ(RoundTrip(extreme, 0xFFFFFFFFu), extreme);
  EXPECT_EQ(RoundTrip({}, 10), std::vector<uint32_t>{});
}

TEST(EliasDelta, RejectsTruncatedAndOutOfRangeStreams) {
  std::vector<uint32_t> pos = {5, 100, 1000, 5000};
  std::string bits;
  EliasDeltaEncodeGaps(pos.data(), pos.size(), &bits);
  std::vector<uint32_t> out(pos.size());
  EXPECT_TRUE(EliasDeltaDecodeGaps(bits.substr(0, 2), pos.size(), 10000, out.data()).IsCorruption());
  EXPECT_TRUE(EliasDeltaDecodeGaps(bits, pos.size(), 4000, out.data()).IsCorruption());
  EXPECT_TRUE(EliasDeltaDecodeGaps(std::string(16, '\0'), 3, 10000, out.data()).IsCorruption());
}

}  // namespace
}  // namespace tpde::internal
