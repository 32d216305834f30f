// Kernels of kernels/content_hash.h: XXH3-64, seed 0, one warp per buffer.
// Constants, offsets and steps are xxhash.h 0.8's (XXH3_64bits with the
// default secret); the names of its functions are kept in comments so each
// step can be checked against it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/content_hash.h"

namespace tpde::gpu {
namespace xxh3 {

constexpr uint64_t kPrime32_1 = 0x9E3779B1u;
constexpr uint64_t kPrime32_2 = 0x85EBCA77u;
constexpr uint64_t kPrime32_3 = 0xC2B2AE3Du;
constexpr uint64_t kPrime64_1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime64_2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kPrime64_3 = 0x165667B19E3779F9ull;
constexpr uint64_t kPrime64_4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kPrime64_5 = 0x27D4EB2F165667C5ull;

constexpr uint32_t kSecretBytes = 192;    // XXH_SECRET_DEFAULT_SIZE
constexpr uint32_t kSecretSizeMin = 136;  // XXH3_SECRET_SIZE_MIN
constexpr uint32_t kStripeBytes = 64;     // XXH_STRIPE_LEN
constexpr uint32_t kStripesPerBlock = (kSecretBytes - kStripeBytes) / 8;  // 16
constexpr uint32_t kBlockBytes = kStripeBytes * kStripesPerBlock;        // 1024
constexpr uint32_t kMidsizeMax = 240;     // XXH3_MIDSIZE_MAX

// XXH3_kSecret.
__constant__ uint8_t kSecret[kSecretBytes] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

// Little-endian loads at any address (the GPU is little-endian; misaligned
// word loads are not allowed, so those are assembled from bytes).
__device__ __forceinline__ uint64_t Read64(const uint8_t* p) {
  if ((reinterpret_cast<uintptr_t>(p) & 7) == 0) return *reinterpret_cast<const uint64_t*>(p);
  uint64_t v = 0;
#pragma unroll
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

__device__ __forceinline__ uint32_t Read32(const uint8_t* p) {
  if ((reinterpret_cast<uintptr_t>(p) & 3) == 0) return *reinterpret_cast<const uint32_t*>(p);
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

__device__ __forceinline__ uint64_t Secret64(const uint8_t* secret, uint32_t offset) { return Read64(secret + offset); }

__device__ __forceinline__ uint64_t Rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

__device__ __forceinline__ uint64_t Bswap64(uint64_t x) {
  const uint32_t lo = static_cast<uint32_t>(x), hi = static_cast<uint32_t>(x >> 32);
  return (uint64_t{__byte_perm(lo, 0, 0x0123)} << 32) | __byte_perm(hi, 0, 0x0123);
}

// XXH3_mul128_fold64.
__device__ __forceinline__ uint64_t MulFold64(uint64_t a, uint64_t b) { return (a * b) ^ __umul64hi(a, b); }

// XXH64_avalanche.
__device__ __forceinline__ uint64_t Xxh64Avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= kPrime64_2;
  h ^= h >> 29;
  h *= kPrime64_3;
  h ^= h >> 32;
  return h;
}

// XXH3_avalanche.
__device__ __forceinline__ uint64_t Avalanche(uint64_t h) {
  h ^= h >> 37;
  h *= 0x165667919E3779F9ull;
  h ^= h >> 32;
  return h;
}

// XXH3_rrmxmx.
__device__ __forceinline__ uint64_t Rrmxmx(uint64_t h, uint64_t len) {
  h ^= Rotl64(h, 49) ^ Rotl64(h, 24);
  h *= 0x9FB21C651E98DF25ull;
  h ^= (h >> 35) + len;
  h *= 0x9FB21C651E98DF25ull;
  return h ^ (h >> 28);
}

// XXH3_mix16B, seed 0.
__device__ __forceinline__ uint64_t Mix16B(const uint8_t* in, const uint8_t* secret, uint32_t secret_offset) {
  return MulFold64(Read64(in) ^ Secret64(secret, secret_offset), Read64(in + 8) ^ Secret64(secret, secret_offset + 8));
}

// XXH3_len_0to16_64b .. XXH3_len_129to240_64b, seed 0: one thread.
__device__ uint64_t HashShort(const uint8_t* in, uint64_t len, const uint8_t* secret) {
  if (len > 128) {  // XXH3_len_129to240_64b
    uint64_t acc = len * kPrime64_1;
    const uint32_t rounds = static_cast<uint32_t>(len / 16);
    for (uint32_t i = 0; i < 8; ++i) acc += Mix16B(in + 16 * i, secret, 16 * i);
    acc = Avalanche(acc);
    for (uint32_t i = 8; i < rounds; ++i) acc += Mix16B(in + 16 * i, secret, 16 * (i - 8) + 3);
    acc += Mix16B(in + len - 16, secret, kSecretSizeMin - 17);
    return Avalanche(acc);
  }
  if (len > 16) {  // XXH3_len_17to128_64b
    uint64_t acc = len * kPrime64_1;
    if (len > 32) {
      if (len > 64) {
        if (len > 96) {
          acc += Mix16B(in + 48, secret, 96);
          acc += Mix16B(in + len - 64, secret, 112);
        }
        acc += Mix16B(in + 32, secret, 64);
        acc += Mix16B(in + len - 48, secret, 80);
      }
      acc += Mix16B(in + 16, secret, 32);
      acc += Mix16B(in + len - 32, secret, 48);
    }
    acc += Mix16B(in, secret, 0);
    acc += Mix16B(in + len - 16, secret, 16);
    return Avalanche(acc);
  }
  if (len > 8) {  // XXH3_len_9to16_64b
    const uint64_t lo = Read64(in) ^ (Secret64(secret, 24) ^ Secret64(secret, 32));
    const uint64_t hi = Read64(in + len - 8) ^ (Secret64(secret, 40) ^ Secret64(secret, 48));
    return Avalanche(len + Bswap64(lo) + hi + MulFold64(lo, hi));
  }
  if (len >= 4) {  // XXH3_len_4to8_64b
    const uint64_t input64 = Read32(in + len - 4) + (uint64_t{Read32(in)} << 32);
    const uint64_t bitflip = Secret64(secret, 8) ^ Secret64(secret, 16);
    return Rrmxmx(input64 ^ bitflip, len);
  }
  if (len > 0) {  // XXH3_len_1to3_64b
    const uint32_t combined = (uint32_t{in[0]} << 16) | (uint32_t{in[len >> 1]} << 24) | uint32_t{in[len - 1]} |
                              (static_cast<uint32_t>(len) << 8);
    const uint64_t bitflip = uint64_t{Read32(secret) ^ Read32(secret + 4)};
    return Xxh64Avalanche(uint64_t{combined} ^ bitflip);
  }
  return Xxh64Avalanche(Secret64(secret, 56) ^ Secret64(secret, 64));
}

constexpr uint32_t kWarpsPerBlock = 4;
constexpr uint32_t kThreads = 32 * kWarpsPerBlock;

// One warp per buffer. Thread t handles accumulator lane L = t % 8 of the
// stripes t / 8, t / 8 + 4, t / 8 + 8, t / 8 + 12 of each block; the four
// threads of a lane then hold the same sums (XXH3_accumulate_512: acc[L] +=
// lo32(key) * hi32(key), acc[L ^ 1] += data), and each carries acc[L].
__global__ void __launch_bounds__(kThreads)
    HashKernel(uint32_t num, const uint8_t* const* in_dev, const uint64_t* bytes_dev, uint64_t* hash_dev) {
  __shared__ __align__(8) uint8_t secret[kSecretBytes];
  for (uint32_t i = threadIdx.x; i < kSecretBytes; i += blockDim.x) secret[i] = kSecret[i];
  __syncthreads();

  const uint32_t job = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (job >= num) return;
  const uint32_t t = threadIdx.x % 32;
  const uint8_t* in = in_dev[job];
  const uint64_t len = bytes_dev[job];
  if (len <= kMidsizeMax) {
    if (t == 0) hash_dev[job] = HashShort(in, len, secret);
    return;
  }

  const uint32_t lane = t % 8, group = t / 8;
  // XXH3_INIT_ACC.
  constexpr uint64_t kInit[8] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3,
                                 kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};
  uint64_t acc = kInit[lane];
  // Adds the stripes [0, stripes) of the block at `block` (secret offset 8
  // per stripe), as XXH3_accumulate does.
  auto accumulate = [&](const uint8_t* block, uint32_t stripes) {
    uint64_t self = 0, swap = 0;
#pragma unroll
    for (uint32_t k = 0; k < 4; ++k) {
      const uint32_t s = group + 4 * k;
      if (s < stripes) {
        const uint64_t data = Read64(block + s * kStripeBytes + lane * 8);
        const uint64_t key = data ^ Secret64(secret, s * 8 + lane * 8);
        swap += data;
        self += (key & 0xFFFFFFFFull) * (key >> 32);
      }
    }
    self += __shfl_xor_sync(0xFFFFFFFFu, self, 8);
    self += __shfl_xor_sync(0xFFFFFFFFu, self, 16);
    swap += __shfl_xor_sync(0xFFFFFFFFu, swap, 8);
    swap += __shfl_xor_sync(0xFFFFFFFFu, swap, 16);
    acc += self + __shfl_xor_sync(0xFFFFFFFFu, swap, 1);  // data of lane L ^ 1
  };

  // XXH3_hashLong_internal_loop.
  const uint64_t blocks = (len - 1) / kBlockBytes;
  for (uint64_t n = 0; n < blocks; ++n) {
    accumulate(in + n * kBlockBytes, kStripesPerBlock);
    // XXH3_scrambleAcc.
    acc ^= acc >> 47;
    acc ^= Secret64(secret, kSecretBytes - kStripeBytes + lane * 8);
    acc *= kPrime32_1;
  }
  accumulate(in + blocks * kBlockBytes, static_cast<uint32_t>(((len - 1) - kBlockBytes * blocks) / kStripeBytes));
  {  // the last stripe, at len - 64, with the secret at 192 - 64 - 7
    uint64_t self = 0, swap = 0;
    if (group == 0) {
      const uint64_t data = Read64(in + len - kStripeBytes + lane * 8);
      const uint64_t key = data ^ Secret64(secret, kSecretBytes - kStripeBytes - 7 + lane * 8);
      swap = data;
      self = (key & 0xFFFFFFFFull) * (key >> 32);
    }
    self = __shfl_sync(0xFFFFFFFFu, self, lane);  // from the group-0 thread of this lane
    swap = __shfl_sync(0xFFFFFFFFu, swap, lane ^ 1);
    acc += self + swap;
  }

  // XXH3_mergeAccs(acc, secret + 11, len * PRIME64_1).
  uint64_t accs[8];
#pragma unroll
  for (uint32_t i = 0; i < 8; ++i) accs[i] = __shfl_sync(0xFFFFFFFFu, acc, i);
  if (t == 0) {
    uint64_t result = len * kPrime64_1;
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) {
      result += MulFold64(accs[2 * i] ^ Secret64(secret, 11 + 16 * i), accs[2 * i + 1] ^ Secret64(secret, 11 + 16 * i + 8));
    }
    hash_dev[job] = Avalanche(result);
  }
}

}  // namespace xxh3
}  // namespace tpde::gpu
