// Element types of the safetensors format and their widths.
//
// The TPDE codec works on raw bit patterns, so all it needs of a dtype is its
// width in bytes: 1, 2, 4 or 8. Floats and integers of the same width are
// coded alike (deltas are wrapping integer differences of the bit patterns).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tpde {

enum class DType : uint8_t {
  kF64 = 1, kF32, kF16, kBF16, kF8_E4M3, kF8_E5M2,
  kI64, kI32, kI16, kI8, kU64, kU32, kU16, kU8, kBool,
  kBytes = 255,  // not a tensor: an opaque byte stream (file header, blob)
};

// Parses a safetensors dtype name ("F32", "BF16", ...). nullopt if unknown.
std::optional<DType> ParseDType(std::string_view name);

// The safetensors name of `t` ("F32"); "BYTES" for kBytes.
std::string_view DTypeName(DType t);

// Width of one element in bytes (1, 2, 4 or 8).
size_t DTypeWidth(DType t);

}  // namespace tpde
