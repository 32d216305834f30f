// Strict reader for the safetensors header
// (format: https://github.com/huggingface/safetensors, README "Format").
//
// File layout: an 8-byte little-endian unsigned header size N, then N bytes
// of UTF-8 JSON (possibly padded with trailing spaces), then the data buffer.
// The JSON maps tensor names to {"dtype", "shape", "data_offsets": [b, e]}
// with offsets in bytes relative to the start of the data buffer, plus an
// optional "__metadata__" map of string to string.
//
// Validation is strict: a known dtype; a shape of non-negative integers whose
// element count times the dtype width equals e - b (no overflow); offsets
// that, sorted, start at 0, are contiguous, do not overlap, and end exactly at
// the end of the file. Anything else is an error that names the field or byte
// offset; the parser never crashes or aborts on any input. tpde stores a file
// that fails validation as plain bytes, so validation errors lose nothing.
//
// Thread-safety: the functions are pure; call them from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "codec/dtype.h"
#include "codec/status.h"

namespace tpde {

// The largest header tpde accepts, in bytes (the reference implementation's
// limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;  // elements per dimension
  uint64_t begin = 0;           // byte offset in the data buffer
  uint64_t end = 0;             // one past the last byte, in the data buffer

  uint64_t num_elements() const { return (end - begin) / DTypeWidth(dtype); }
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N: bytes of JSON, padding included
  uint64_t data_start = 0;    // 8 + N: file offset of the data buffer
  std::vector<TensorInfo> tensors;  // sorted by data offset
  std::map<std::string, std::string> metadata;
};

// Reads N from the first 8 bytes of a file of `file_size` bytes and checks
// that 8 + N fits in the file and N <= kMaxSafetensorsHeaderBytes.
// `prefix` must hold at least 8 bytes.
Status ReadSafetensorsHeaderSize(std::string_view prefix, uint64_t file_size,
                                 uint64_t* header_bytes);

// Parses and validates a whole header. `prefix` holds at least the first
// 8 + N bytes of the file; `file_size` is the size of the whole file.
Status ParseSafetensorsHeader(std::string_view prefix, uint64_t file_size,
                              SafetensorsHeader* out);

}  // namespace tpde
