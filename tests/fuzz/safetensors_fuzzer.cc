// libFuzzer target: the safetensors header reader must return a Status for
// any input, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "codec/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view file(reinterpret_cast<const char*>(data), size);
  tpde::SafetensorsHeader header;
  tpde::Status s = tpde::ParseSafetensorsHeader(file, file.size(), &header);
  if (s.ok()) {
    // A valid header describes tensors that tile the file exactly.
    uint64_t end = header.data_start;
    for (const auto& t : header.tensors) end = header.data_start + t.end;
    if (end != size) __builtin_trap();
  }
  return 0;
}
