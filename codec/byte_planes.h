// Byte-plane transforms on raw bit patterns (internal to the codec).
//
// Elements are `width`-byte little-endian unsigned integers (width 1, 2, 4 or
// 8). Plane i holds byte i of every element, so a buffer of `count` elements
// becomes `width` planes of `count` bytes each, laid out back to back
// (plane i at planes + i * count). Deltas are wrapping differences
// cur - ref (mod 2^(8*width)) mapped through zigzag, so that small positive
// and negative differences both have zero high bytes.
//
// No function allocates; buffers must not overlap unless stated.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tpde::internal {

// src: count*width bytes -> planes: count*width bytes.
void SplitPlanes(const uint8_t* src, size_t count, int width, uint8_t* planes);

// planes -> dst, the inverse of SplitPlanes.
void MergePlanes(const uint8_t* planes, size_t count, int width, uint8_t* dst);

// Writes zigzag(cur - ref) of each element to `zz` (count*width bytes, as
// elements, not planes). Returns how many elements differ.
size_t ZigzagDelta(const uint8_t* cur, const uint8_t* ref, size_t count, int width, uint8_t* zz);

// dst[e] += unzigzag(element e of planes), in place; dst holds the reference
// on entry and the current chunk on return.
void ApplyDensePlanes(const uint8_t* planes, size_t count, int width, uint8_t* dst);

// Collects the positions of the non-zero elements of `zz` (count elements)
// into `positions` (at most count entries) and their values, as planes of
// nnz bytes, into `planes`. Returns nnz.
size_t GatherNonZero(const uint8_t* zz, size_t count, int width, uint32_t* positions, uint8_t* planes);

// dst[positions[k]] += unzigzag(element k of planes) for k < nnz.
// Positions must be < the element count of dst (checked by the caller).
void ApplySparsePlanes(const uint32_t* positions, const uint8_t* planes, size_t nnz, int width, uint8_t* dst);

}  // namespace tpde::internal
