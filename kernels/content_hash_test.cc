// The GPU content hash equals the host's XXH3-64 (codec/checksum.h) for
// every length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240, long
// forms around block boundaries, whole chunks) and any start alignment.
#include "kernels/content_hash.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "codec/checksum.h"

namespace tpde {
namespace {

bool HaveGpu(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    *why = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device";
    return false;
  }
  return true;
}

struct Case {
  uint64_t offset;  // bytes into the input buffer: any alignment
  uint64_t bytes;
};

TEST(ContentHashTest, EqualsTheHostXxh3ForEveryLengthClassAndAlignment) {
  std::string why;
  if (!HaveGpu(&why)) GTEST_SKIP() << "no GPU here: " << why;

  std::vector<Case> cases;
  uint64_t end = 0;
  auto add = [&](uint64_t bytes, uint64_t misalign) {
    const uint64_t offset = (end + 15) / 16 * 16 + misalign;
    cases.push_back({offset, bytes});
    end = offset + bytes;
  };
  for (uint64_t n = 0; n <= 2100; ++n) add(n, n % 8);  // every short form, blocks 1 and 2
  for (uint64_t n : {4095ull, 4096ull, 4097ull, 65536ull, 1ull << 20, (1ull << 20) + 7, (4ull << 20) - 1}) {
    add(n, 0);
    add(n, 3);
  }
  std::mt19937_64 rng(7);
  std::vector<uint8_t> host(end + 16);
  for (auto& b : host) b = static_cast<uint8_t>(rng());

  uint8_t* data_dev = nullptr;
  const uint8_t** ptrs_dev = nullptr;
  uint64_t* bytes_dev = nullptr;
  uint64_t* hash_dev = nullptr;
  ASSERT_EQ(cudaMalloc(&data_dev, host.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ptrs_dev, cases.size() * sizeof(uint8_t*)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&bytes_dev, cases.size() * sizeof(uint64_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&hash_dev, cases.size() * sizeof(uint64_t)), cudaSuccess);
  std::vector<const uint8_t*> ptrs;
  std::vector<uint64_t> bytes;
  for (const Case& c : cases) {
    ptrs.push_back(data_dev + c.offset);
    bytes.push_back(c.bytes);
  }
  ASSERT_EQ(cudaMemcpy(data_dev, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ptrs_dev, ptrs.data(), ptrs.size() * sizeof(uint8_t*), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(bytes_dev, bytes.data(), bytes.size() * sizeof(uint64_t), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(gpu::ContentHashBatch(static_cast<uint32_t>(cases.size()), ptrs_dev, bytes_dev, hash_dev, nullptr),
            cudaSuccess);
  std::vector<uint64_t> got(cases.size());
  ASSERT_EQ(cudaMemcpy(got.data(), hash_dev, got.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost), cudaSuccess);

  int mismatches = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const uint64_t want = Checksum(host.data() + cases[i].offset, cases[i].bytes);
    if (got[i] != want && ++mismatches <= 10) {
      ADD_FAILURE() << cases[i].bytes << " bytes at offset " << cases[i].offset << ": gpu " << std::hex << got[i]
                    << " host " << want;
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size() << " buffers";
  cudaFree(data_dev);
  cudaFree(ptrs_dev);
  cudaFree(bytes_dev);
  cudaFree(hash_dev);
}

}  // namespace
}  // namespace tpde
