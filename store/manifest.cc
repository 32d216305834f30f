#include "store/manifest.h"

#include <fmt/format.h>
#include <zstd.h>

#include <algorithm>

#include "codec/checksum.h"
#include "store/coding.h"

namespace tpde {

namespace {
constexpr uint32_t kManifestMagic = 0x4D445054;  // "TPDM" little-endian
constexpr uint16_t kManifestVersion = 2;
constexpr uint16_t kFlagZstd = 1;
constexpr uint32_t kMaxManifestBodyBytes = 1u << 30;
constexpr size_t kEnvelopeBytes = 4 + 2 + 2 + 4;  // magic, version, flags, body size

void SerializeBody(const Manifest& m, std::string* out);
Status ParseBody(std::string_view in, Manifest* m);
}  // namespace

uint64_t Manifest::payload_bytes() const {
  uint64_t n = 0;
  for (const auto& c : chunks) n += c.payload_bytes();
  return n;
}

uint64_t Manifest::chunk_file_offset(uint32_t c) const {
  const ChunkRecord& r = chunks[c];
  const Segment& s = segments[r.segment];
  return s.file_offset + r.elem_begin * s.width;
}

uint32_t Manifest::ChunkAt(uint64_t offset) const {
  // Last chunk whose start is <= offset.
  uint32_t lo = 0, hi = static_cast<uint32_t>(chunks.size());
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (chunk_file_offset(mid) <= offset) lo = mid; else hi = mid;
  }
  return lo;
}

void SerializeManifest(const Manifest& m, std::string* out) {
  std::string body;
  SerializeBody(m, &body);
  std::string packed(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compress(packed.data(), packed.size(), body.data(), body.size(), 3);
  const bool zstd = !ZSTD_isError(n) && n < body.size();
  out->clear();
  PutFixed32(out, kManifestMagic);
  PutFixed16(out, kManifestVersion);
  PutFixed16(out, zstd ? kFlagZstd : 0);
  PutFixed32(out, static_cast<uint32_t>(body.size()));
  out->append(zstd ? std::string_view(packed.data(), n) : std::string_view(body));
  PutFixed64(out, Checksum(body.data(), body.size()));
}

Status ParseManifest(std::string_view in, Manifest* out) {
  Reader r(in);
  uint32_t magic = 0, body_bytes = 0;
  uint16_t version = 0, flags = 0;
  if (in.size() < kEnvelopeBytes + 8 || !r.Fixed32(&magic) || magic != kManifestMagic) {
    return Status::Corruption("manifest: bad magic");
  }
  if (!r.Fixed16(&version)) return Status::Corruption("manifest: truncated envelope");
  if (version != kManifestVersion) {
    return Status::NotSupported(
        fmt::format("manifest of format version {}; this tpde reads version {}", version, kManifestVersion));
  }
  if (!r.Fixed16(&flags) || (flags & ~kFlagZstd) != 0 || !r.Fixed32(&body_bytes) ||
      body_bytes > kMaxManifestBodyBytes) {
    return Status::Corruption("manifest: bad envelope");
  }
  std::string_view stored = in.substr(kEnvelopeBytes, in.size() - kEnvelopeBytes - 8);
  Reader tail(in.substr(in.size() - 8));
  uint64_t sum = 0;
  tail.Fixed64(&sum);
  std::string body;
  if (flags & kFlagZstd) {
    body.resize(body_bytes);
    size_t n = ZSTD_decompress(body.data(), body.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != body_bytes) return Status::Corruption("manifest: bad compressed body");
  } else {
    if (stored.size() != body_bytes) return Status::Corruption("manifest: body size mismatch");
    body.assign(stored);
  }
  if (Checksum(body.data(), body.size()) != sum) return Status::Corruption("manifest: checksum mismatch");
  TPDE_RETURN_IF_ERROR(ParseBody(body, out));
  out->stored_bytes = in.size();
  return Status::OK();
}

namespace {

void SerializeBody(const Manifest& m, std::string* out) {
  out->clear();
  PutFixed8(out, static_cast<uint8_t>(m.kind));
  PutFixed8(out, m.lane);
  PutFixed64(out, m.object_id);
  PutFixed32(out, m.generation);
  PutFixed64(out, m.reference);
  PutFixed64(out, m.commit_seq);
  PutFixed64(out, m.file_bytes);
  PutFixed64(out, m.file_hash);
  PutFixed32(out, static_cast<uint32_t>(m.segments.size()));
  for (const auto& s : m.segments) {
    PutLengthPrefixed(out, s.name);
    PutFixed8(out, static_cast<uint8_t>(s.dtype));
    PutFixed8(out, s.width);
    PutFixed8(out, static_cast<uint8_t>(s.shape.size()));
    for (uint64_t d : s.shape) PutFixed64(out, d);
    PutFixed64(out, s.file_offset);
    PutFixed64(out, s.num_elements);
    PutFixed32(out, s.chunk_elems);
    PutFixed32(out, s.first_chunk);
    PutFixed32(out, s.ref_segment);
  }
  PutFixed32(out, static_cast<uint32_t>(m.chunks.size()));
  for (const auto& c : m.chunks) SerializeChunkRecord(c, out);
}

Status ParseBody(std::string_view body, Manifest* out) {
  auto corrupt = [](std::string_view what) { return Status::Corruption(fmt::format("manifest: {}", what)); };
  Reader r(body);
  Manifest m;
  uint8_t kind = 0;
  if (!r.Fixed8(&kind) || kind < 1 || kind > 3) return corrupt("bad file kind");
  if (!r.Fixed8(&m.lane) || m.lane >= kChunkLanes) return corrupt("bad chunk lane");
  m.kind = static_cast<FileKind>(kind);
  uint32_t nseg = 0;
  if (!r.Fixed64(&m.object_id) || !r.Fixed32(&m.generation) || !r.Fixed64(&m.reference) ||
      !r.Fixed64(&m.commit_seq) || !r.Fixed64(&m.file_bytes) || !r.Fixed64(&m.file_hash) || !r.Fixed32(&nseg)) {
    return corrupt("truncated header");
  }
  uint64_t expect_offset = 0;
  uint32_t expect_chunk = 0;
  for (uint32_t i = 0; i < nseg; ++i) {
    Segment s;
    uint8_t dtype = 0, ndims = 0;
    if (!r.LengthPrefixed(&s.name) || !r.Fixed8(&dtype) || !r.Fixed8(&s.width) || !r.Fixed8(&ndims)) {
      return corrupt("truncated segment");
    }
    s.dtype = static_cast<DType>(dtype);
    s.shape.resize(ndims);
    for (auto& d : s.shape) {
      if (!r.Fixed64(&d)) return corrupt("truncated segment shape");
    }
    if (!r.Fixed64(&s.file_offset) || !r.Fixed64(&s.num_elements) || !r.Fixed32(&s.chunk_elems) ||
        !r.Fixed32(&s.first_chunk) || !r.Fixed32(&s.ref_segment)) {
      return corrupt("truncated segment");
    }
    if ((s.width != 1 && s.width != 2 && s.width != 4 && s.width != 8) || s.chunk_elems == 0) {
      return corrupt(fmt::format("segment {}: bad width or chunk size", i));
    }
    if (s.file_offset != expect_offset || s.first_chunk != expect_chunk) {
      return corrupt(fmt::format("segment {} does not follow the previous one", i));
    }
    if (s.num_elements > (m.file_bytes - s.file_offset) / s.width) {
      return corrupt(fmt::format("segment {} runs past the end of the file", i));
    }
    expect_offset += s.num_bytes();
    expect_chunk += s.num_chunks();
    m.segments.push_back(std::move(s));
  }
  if (expect_offset != m.file_bytes) return corrupt("segments do not cover the file");
  uint32_t nchunks = 0;
  if (!r.Fixed32(&nchunks) || nchunks != expect_chunk) return corrupt("chunk count does not match the segments");
  if (r.remaining() != uint64_t{nchunks} * kChunkRecordBytes) return corrupt("chunk index size mismatch");
  m.chunks.resize(nchunks);
  uint64_t payload_offset = 0;
  for (uint32_t s = 0; s < nseg; ++s) {
    const Segment& seg = m.segments[s];
    for (uint32_t k = 0; k < seg.num_chunks(); ++k) {
      ChunkRecord& c = m.chunks[seg.first_chunk + k];
      TPDE_RETURN_IF_ERROR(ParseChunkRecord(r.Take(kChunkRecordBytes), &c).WithContext("manifest"));
      const uint64_t begin = uint64_t{k} * seg.chunk_elems;
      const uint64_t count = std::min<uint64_t>(seg.chunk_elems, seg.num_elements - begin);
      if (c.segment != s || c.elem_begin != begin || c.elem_count != count || c.width != seg.width ||
          c.payload_offset != payload_offset) {
        return corrupt(fmt::format("chunk {} does not match its segment", seg.first_chunk + k));
      }
      if (c.mode != ChunkMode::kKey && (m.reference == 0 || seg.ref_segment == kNoSegment)) {
        return corrupt(fmt::format("chunk {} is a delta without a reference", seg.first_chunk + k));
      }
      payload_offset += c.payload_bytes();
    }
  }
  *out = std::move(m);
  return Status::OK();
}

}  // namespace
}  // namespace tpde
