#include "codec/dtype.h"

#include <array>
#include <utility>

namespace tpde {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t width;
};

constexpr std::array<DTypeInfo, 16> kDTypes = {{
    {DType::kF64, "F64", 8},       {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},       {DType::kBF16, "BF16", 2},
    {DType::kF8_E4M3, "F8_E4M3", 1}, {DType::kF8_E5M2, "F8_E5M2", 1},
    {DType::kI64, "I64", 8},       {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},       {DType::kI8, "I8", 1},
    {DType::kU64, "U64", 8},       {DType::kU32, "U32", 4},
    {DType::kU16, "U16", 2},       {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},     {DType::kBytes, "BYTES", 1},
}};
}  // namespace

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name && d.type != DType::kBytes) return d.type;
  }
  return std::nullopt;
}

std::string_view DTypeName(DType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d.name;
  }
  return "?";
}

size_t DTypeWidth(DType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d.width;
  }
  return 1;
}

}  // namespace tpde
