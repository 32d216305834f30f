// File layout: how a file is cut into segments and chunks.
//
// A segment is a byte range of a file read as a vector of elements of one
// width: a tensor of a safetensors file, the file's header (8-byte size plus
// JSON, verbatim), or an opaque run of bytes of any other file. Segments
// tile the file in order, without gaps. Each segment is cut into chunks of
// `chunk_elems` elements (the last one shorter); chunk k of a segment covers
// elements [k * chunk_elems, min((k + 1) * chunk_elems, num_elements)).
//
// Thread-safety: plain data and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codec/dtype.h"
#include "codec/safetensors.h"

namespace tpde {

// How a file's content is laid out.
enum class FileKind : uint8_t {
  kSafetensors = 1,  // validated safetensors: header segment + one per tensor
  kBinary = 2,       // opaque binary: 4-byte planes (+ a 1-byte tail segment)
  kText = 3,         // small or textual file: one 1-byte segment (plain zstd)
};

const char* FileKindName(FileKind kind);

inline constexpr uint32_t kNoSegment = 0xFFFFFFFFu;

struct Segment {
  std::string name;             // tensor name; "" for a header or byte run
  DType dtype = DType::kBytes;  // kBytes for non-tensors
  std::vector<uint64_t> shape;  // tensor shape in elements; empty otherwise
  uint64_t file_offset = 0;     // bytes from the start of the file
  uint64_t num_elements = 0;
  uint8_t width = 1;            // bytes per element
  uint32_t chunk_elems = 1;     // elements per chunk
  uint32_t first_chunk = 0;     // index of its first chunk in the file's index
  uint32_t ref_segment = kNoSegment;  // matching segment of the reference file

  uint64_t num_bytes() const { return num_elements * width; }
  uint32_t num_chunks() const {
    return static_cast<uint32_t>((num_elements + chunk_elems - 1) / chunk_elems);
  }
};

struct LayoutOptions {
  uint64_t chunk_bytes = 1u << 20;      // target chunk size in bytes
  uint64_t text_max_bytes = 64u << 10;  // files up to this size are kText
};

// Segments for a validated safetensors file: the header (width 1), then each
// tensor in data order with the width of its dtype. Sets first_chunk.
std::vector<Segment> PlanSafetensorsLayout(const SafetensorsHeader& header, const LayoutOptions& options);

// Segments for any other file of `file_size` bytes. `kind` is kBinary or
// kText (see ClassifyBytes). Sets first_chunk.
std::vector<Segment> PlanBytesLayout(uint64_t file_size, FileKind kind, const LayoutOptions& options);

// kText for files no larger than options.text_max_bytes or whose first bytes
// (`prefix`) hold no NUL; kBinary otherwise.
FileKind ClassifyBytes(std::string_view prefix, uint64_t file_size, const LayoutOptions& options);

// Total chunks over `segments`.
uint32_t CountChunks(const std::vector<Segment>& segments);

}  // namespace tpde
