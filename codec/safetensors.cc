#include "codec/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

namespace tpde {

namespace {

using Json = nlohmann::json;

uint64_t LoadLE64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Checked multiply: false on overflow.
bool MulOverflow(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

Status ParseTensor(const std::string& name, const Json& v, TensorInfo* t) {
  auto err = [&](std::string_view what) {
    return Status::Corruption(fmt::format("safetensors: tensor '{}': {}", name, what));
  };
  if (!v.is_object()) return err("entry is not a JSON object");
  for (const auto& [key, _] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return err(fmt::format("unknown field '{}'", key));
    }
  }
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return err("field 'dtype' missing or not a string");
  auto parsed = ParseDType(dt->get_ref<const std::string&>());
  if (!parsed) return err(fmt::format("unknown dtype '{}'", dt->get_ref<const std::string&>()));
  t->dtype = *parsed;

  auto shape = v.find("shape");
  if (shape == v.end() || !shape->is_array()) return err("field 'shape' missing or not an array");
  uint64_t elements = 1;
  for (const auto& d : *shape) {
    if (!d.is_number_unsigned()) return err("field 'shape' holds a value that is not a non-negative integer");
    uint64_t dim = d.get<uint64_t>();
    t->shape.push_back(dim);
    if (MulOverflow(elements, dim, &elements)) return err("shape element count overflows 64 bits");
  }
  uint64_t bytes = 0;
  if (MulOverflow(elements, DTypeWidth(t->dtype), &bytes)) return err("shape byte count overflows 64 bits");

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return err("field 'data_offsets' is not [begin, end] of non-negative integers");
  }
  t->begin = (*off)[0].get<uint64_t>();
  t->end = (*off)[1].get<uint64_t>();
  if (t->end < t->begin) return err(fmt::format("data_offsets [{}, {}] end before begin", t->begin, t->end));
  if (t->end - t->begin != bytes) {
    return err(fmt::format("data_offsets [{}, {}] hold {} bytes but {} of {} elements needs {}", t->begin,
                           t->end, t->end - t->begin, DTypeName(t->dtype), elements, bytes));
  }
  return Status::OK();
}

}  // namespace

Status ReadSafetensorsHeaderSize(std::string_view prefix, uint64_t file_size, uint64_t* header_bytes) {
  if (prefix.size() < 8 || file_size < 8) {
    return Status::Corruption(fmt::format("safetensors: file of {} bytes is shorter than the 8-byte header size",
                                          file_size));
  }
  uint64_t n = LoadLE64(prefix.data());
  if (n > kMaxSafetensorsHeaderBytes) {
    return Status::Corruption(fmt::format("safetensors: header size {} at offset 0 exceeds the limit of {} bytes",
                                          n, kMaxSafetensorsHeaderBytes));
  }
  if (n > file_size - 8) {
    return Status::Corruption(
        fmt::format("safetensors: header size {} at offset 0 runs past the end of the {}-byte file", n, file_size));
  }
  if (n < 2) return Status::Corruption(fmt::format("safetensors: header size {} is too small for a JSON object", n));
  *header_bytes = n;
  return Status::OK();
}

Status ParseSafetensorsHeader(std::string_view prefix, uint64_t file_size, SafetensorsHeader* out) {
  *out = SafetensorsHeader();
  uint64_t n = 0;
  TPDE_RETURN_IF_ERROR(ReadSafetensorsHeaderSize(prefix, file_size, &n));
  if (prefix.size() < 8 + n) {
    return Status::InvalidArgument(fmt::format("safetensors: need {} header bytes, given {}", 8 + n, prefix.size()));
  }
  std::string_view text = prefix.substr(8, n);
  if (text.front() != '{') return Status::Corruption("safetensors: header at offset 8 does not start with '{'");

  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/true);
  } catch (const Json::parse_error& e) {
    // e.byte is 1-based within the JSON text.
    return Status::Corruption(fmt::format("safetensors: bad JSON header near file offset {}: {}",
                                          8 + (e.byte > 0 ? e.byte - 1 : 0), e.what()));
  } catch (const std::exception& e) {
    return Status::Corruption(fmt::format("safetensors: bad JSON header: {}", e.what()));
  }
  if (!doc.is_object()) return Status::Corruption("safetensors: header is not a JSON object");

  out->header_bytes = n;
  out->data_start = 8 + n;
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return Status::Corruption("safetensors: '__metadata__' is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return Status::Corruption(fmt::format("safetensors: '__metadata__' value of '{}' is not a string", mk));
        }
        out->metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    TensorInfo t;
    t.name = key;
    TPDE_RETURN_IF_ERROR(ParseTensor(key, value, &t));
    out->tensors.push_back(std::move(t));
  }

  std::stable_sort(out->tensors.begin(), out->tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_bytes = file_size - out->data_start;
  uint64_t expect = 0;
  for (const auto& t : out->tensors) {
    if (t.begin != expect) {
      return Status::Corruption(fmt::format(
          "safetensors: tensor '{}' starts at data offset {} but the previous tensor ends at {} ({})", t.name,
          t.begin, expect, t.begin < expect ? "overlap" : "gap"));
    }
    expect = t.end;
  }
  if (expect != data_bytes) {
    return Status::Corruption(fmt::format("safetensors: tensors end at data offset {} but the data buffer holds {} bytes",
                                          expect, data_bytes));
  }
  return Status::OK();
}

}  // namespace tpde
