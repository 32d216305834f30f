#include "codec/layout.h"

#include <algorithm>

namespace tpde {

namespace {

Segment MakeSegment(std::string name, DType dtype, std::vector<uint64_t> shape, uint64_t offset, uint64_t elements,
                    size_t width, const LayoutOptions& options) {
  Segment s;
  s.name = std::move(name);
  s.dtype = dtype;
  s.shape = std::move(shape);
  s.file_offset = offset;
  s.num_elements = elements;
  s.width = static_cast<uint8_t>(width);
  s.chunk_elems = static_cast<uint32_t>(std::max<uint64_t>(1, options.chunk_bytes / width));
  return s;
}

void AssignFirstChunks(std::vector<Segment>* segments) {
  uint32_t next = 0;
  for (auto& s : *segments) {
    s.first_chunk = next;
    next += s.num_chunks();
  }
}

}  // namespace

const char* FileKindName(FileKind kind) {
  switch (kind) {
    case FileKind::kSafetensors: return "safetensors";
    case FileKind::kBinary: return "binary";
    case FileKind::kText: return "text";
  }
  return "?";
}

std::vector<Segment> PlanSafetensorsLayout(const SafetensorsHeader& header, const LayoutOptions& options) {
  std::vector<Segment> out;
  out.push_back(MakeSegment("", DType::kBytes, {}, 0, header.data_start, 1, options));
  for (const auto& t : header.tensors) {
    const size_t w = DTypeWidth(t.dtype);
    out.push_back(MakeSegment(t.name, t.dtype, t.shape, header.data_start + t.begin, (t.end - t.begin) / w, w,
                              options));
  }
  AssignFirstChunks(&out);
  return out;
}

std::vector<Segment> PlanBytesLayout(uint64_t file_size, FileKind kind, const LayoutOptions& options) {
  std::vector<Segment> out;
  if (kind == FileKind::kBinary) {
    const uint64_t words = file_size / 4;
    out.push_back(MakeSegment("", DType::kBytes, {}, 0, words, 4, options));
    if (file_size % 4 != 0) {
      out.push_back(MakeSegment("", DType::kBytes, {}, words * 4, file_size % 4, 1, options));
    }
  } else {
    out.push_back(MakeSegment("", DType::kBytes, {}, 0, file_size, 1, options));
  }
  AssignFirstChunks(&out);
  return out;
}

FileKind ClassifyBytes(std::string_view prefix, uint64_t file_size, const LayoutOptions& options) {
  if (file_size <= options.text_max_bytes) return FileKind::kText;
  return prefix.find('\0') == std::string_view::npos ? FileKind::kText : FileKind::kBinary;
}

uint32_t CountChunks(const std::vector<Segment>& segments) {
  uint32_t n = 0;
  for (const auto& s : segments) n += s.num_chunks();
  return n;
}

}  // namespace tpde
