#include "codec/byte_planes.h"

#include <cstring>
#include <type_traits>

namespace tpde::internal {

namespace {

template <typename U>
U Load(const uint8_t* p) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return v;
}

template <typename U>
void Store(uint8_t* p, U v) {
  std::memcpy(p, &v, sizeof(U));
}

template <typename U>
U Zigzag(U d) {
  using S = std::make_signed_t<U>;
  return static_cast<U>((d << 1) ^ static_cast<U>(static_cast<S>(d) >> (sizeof(U) * 8 - 1)));
}

template <typename U>
U Unzigzag(U z) {
  return static_cast<U>((z >> 1) ^ (U(0) - (z & 1)));
}

template <typename U>
void Split(const uint8_t* src, size_t count, uint8_t* planes) {
  constexpr int W = sizeof(U);
  for (size_t e = 0; e < count; ++e) {
    U v = Load<U>(src + e * W);
    for (int i = 0; i < W; ++i) planes[i * count + e] = static_cast<uint8_t>(v >> (8 * i));
  }
}

template <typename U>
U Gather(const uint8_t* planes, size_t count, size_t e) {
  constexpr int W = sizeof(U);
  U v = 0;
  for (int i = 0; i < W; ++i) v |= static_cast<U>(planes[i * count + e]) << (8 * i);
  return v;
}

template <typename U>
void Merge(const uint8_t* planes, size_t count, uint8_t* dst) {
  for (size_t e = 0; e < count; ++e) Store<U>(dst + e * sizeof(U), Gather<U>(planes, count, e));
}

template <typename U>
size_t Delta(const uint8_t* cur, const uint8_t* ref, size_t count, uint8_t* zz) {
  size_t nnz = 0;
  for (size_t e = 0; e < count; ++e) {
    U d = static_cast<U>(Load<U>(cur + e * sizeof(U)) - Load<U>(ref + e * sizeof(U)));
    nnz += d != 0;
    Store<U>(zz + e * sizeof(U), Zigzag(d));
  }
  return nnz;
}

template <typename U>
void ApplyDense(const uint8_t* planes, size_t count, uint8_t* dst) {
  for (size_t e = 0; e < count; ++e) {
    U v = Load<U>(dst + e * sizeof(U));
    Store<U>(dst + e * sizeof(U), static_cast<U>(v + Unzigzag(Gather<U>(planes, count, e))));
  }
}

// Branch-free compaction: every position is written, only non-zero ones
// advance the cursor. `positions` needs room for `count` entries.
template <typename U>
size_t GatherNZ(const uint8_t* zz, size_t count, uint32_t* positions) {
  size_t nnz = 0;
  for (size_t e = 0; e < count; ++e) {
    U v = Load<U>(zz + e * sizeof(U));
    positions[nnz] = static_cast<uint32_t>(e);
    nnz += v != 0;
  }
  return nnz;
}

template <typename U>
void SplitGathered(const uint8_t* zz, const uint32_t* positions, size_t nnz, uint8_t* planes) {
  constexpr int W = sizeof(U);
  for (size_t k = 0; k < nnz; ++k) {
    U v = Load<U>(zz + static_cast<size_t>(positions[k]) * W);
    for (int i = 0; i < W; ++i) planes[i * nnz + k] = static_cast<uint8_t>(v >> (8 * i));
  }
}

template <typename U>
void ApplySparse(const uint32_t* positions, const uint8_t* planes, size_t nnz, uint8_t* dst) {
  for (size_t k = 0; k < nnz; ++k) {
    uint8_t* p = dst + static_cast<size_t>(positions[k]) * sizeof(U);
    Store<U>(p, static_cast<U>(Load<U>(p) + Unzigzag(Gather<U>(planes, nnz, k))));
  }
}

// Calls fn.template operator()<U>() for the unsigned type of `width` bytes.
template <typename Fn>
auto ByWidth(int width, Fn&& fn) {
  switch (width) {
    case 2: return fn.template operator()<uint16_t>();
    case 4: return fn.template operator()<uint32_t>();
    case 8: return fn.template operator()<uint64_t>();
    default: return fn.template operator()<uint8_t>();
  }
}

}  // namespace

void SplitPlanes(const uint8_t* src, size_t count, int width, uint8_t* planes) {
  if (count == 0) return;
  if (width == 1) {
    std::memcpy(planes, src, count);
    return;
  }
  ByWidth(width, [&]<typename U>() { Split<U>(src, count, planes); });
}

void MergePlanes(const uint8_t* planes, size_t count, int width, uint8_t* dst) {
  if (count == 0) return;
  if (width == 1) {
    std::memcpy(dst, planes, count);
    return;
  }
  ByWidth(width, [&]<typename U>() { Merge<U>(planes, count, dst); });
}

size_t ZigzagDelta(const uint8_t* cur, const uint8_t* ref, size_t count, int width, uint8_t* zz) {
  return ByWidth(width, [&]<typename U>() { return Delta<U>(cur, ref, count, zz); });
}

void ApplyDensePlanes(const uint8_t* planes, size_t count, int width, uint8_t* dst) {
  ByWidth(width, [&]<typename U>() { ApplyDense<U>(planes, count, dst); });
}

size_t GatherNonZero(const uint8_t* zz, size_t count, int width, uint32_t* positions, uint8_t* planes) {
  return ByWidth(width, [&]<typename U>() {
    size_t nnz = GatherNZ<U>(zz, count, positions);
    SplitGathered<U>(zz, positions, nnz, planes);
    return nnz;
  });
}

void ApplySparsePlanes(const uint32_t* positions, const uint8_t* planes, size_t nnz, int width, uint8_t* dst) {
  ByWidth(width, [&]<typename U>() { ApplySparse<U>(positions, planes, nnz, dst); });
}

}  // namespace tpde::internal
